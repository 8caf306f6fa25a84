//! Reads a file's events from the ingest service, which owns the event store, over a
//! [`GrpcChannel`] (a socket in cluster mode, an in-process call in all-in-one mode).
//! Every wait has a deadline.

use crate::channel::GrpcChannel;
use crate::common::v1::{CaseId, FileId};
use crate::ingest::v1 as pb;
use crate::ingest::v1::ingest_service_client::IngestServiceClient;
use std::time::Duration;
use tonic::Status;

/// Adds the caller's trace context to a request (the runtime's, given by the service
/// that makes the client: this crate has no telemetry of its own).
pub type TraceInjector = fn(&mut tonic::Request<pb::ScanFileEventsRequest>);

/// Longest wait for one batch of a scan.
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct EventsClient {
    ingest: IngestServiceClient<GrpcChannel>,
    inject: TraceInjector,
}

/// An open scan of one file's events, in locator order.
pub struct Scan {
    stream: tonic::Streaming<pb::ScanFileEventsResponse>,
}

impl Scan {
    /// The next batch, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Vec<pb::Event>>, Status> {
        match tokio::time::timeout(BATCH_TIMEOUT, self.stream.message()).await {
            Ok(Ok(Some(batch))) => Ok(Some(batch.events)),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no event batch from the ingest service within {BATCH_TIMEOUT:?}"
            ))),
        }
    }
}

impl EventsClient {
    pub fn new(channel: GrpcChannel, inject: TraceInjector) -> Self {
        Self {
            ingest: IngestServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
            inject,
        }
    }

    pub async fn scan(&self, case_id: &str, file_id: &str, batch: u32) -> Result<Scan, Status> {
        let mut client = self.ingest.clone();
        let mut request = tonic::Request::new(pb::ScanFileEventsRequest {
            case_id: Some(CaseId {
                value: case_id.to_string(),
            }),
            file_id: Some(FileId {
                value: file_id.to_string(),
            }),
            batch_size: batch,
            resume_cursor: String::new(),
            include_raw: false,
        });
        (self.inject)(&mut request);
        let response = tokio::time::timeout(BATCH_TIMEOUT, client.scan_file_events(request))
            .await
            .map_err(|_| {
                Status::deadline_exceeded("the ingest service did not start the scan")
            })??;
        Ok(Scan {
            stream: response.into_inner(),
        })
    }
}
