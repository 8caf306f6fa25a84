//! The ingest service in process, as all-in-one mode wires it (SQLite, tantivy, the
//! in-process bus, the cases service over an in-process gRPC channel), and helpers to
//! upload evidence through the real Upload protocol and follow its file record.
#![allow(dead_code)]

use casescope_bus::{Bus, ConsumerConfig, InProcessBus, Outbox, run_consumer, subjects};
use casescope_cases::CasesApi;
use casescope_db::{Database, DbOptions};
use casescope_eventstore::{EventStore, TantivyOptions, TantivyStore};
use casescope_ingest::{CasesClient, INGEST_CONSUMER, IngestApi, IngestSettings};
use casescope_proto::cases::v1 as cases_pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::cases::v1::cases_service_server::CasesServiceServer;
use casescope_proto::cases::v1::file_records_service_server::FileRecordsServiceServer;
use casescope_proto::channel::{GrpcChannel, in_process};
use casescope_proto::common::v1::{CaseId, FileId};
use casescope_proto::ingest::v1 as pb;
use casescope_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use casescope_proto::ingest::v1::ingest_service_server::IngestServiceServer;
use sha2::Digest;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub ingest: IngestServiceClient<GrpcChannel>,
    pub cases: CasesServiceClient<GrpcChannel>,
    pub store: Arc<dyn EventStore>,
    pub case_id: String,
    pub root: tempfile::TempDir,
    pub stop: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn harness(tune: impl FnOnce(&mut IngestSettings)) -> Harness {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let stop = CancellationToken::new();
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::default());
    let open = |name: &str| format!("sqlite://{}", data.join(format!("{name}.sqlite")).display());
    let cases_db = Database::connect(&open("cases"), &DbOptions::default())
        .await
        .unwrap();
    cases_db
        .migrate(casescope_cases::ALL_MIGRATIONS)
        .await
        .unwrap();
    let cases_outbox = Outbox::new(cases_db.clone(), bus.clone());
    tokio::spawn(
        cases_outbox
            .clone()
            .relay(Duration::from_millis(200), stop.clone()),
    );
    let cases_api = CasesApi::new(cases_db, cases_outbox);
    let cases_channel = in_process(
        tonic::service::Routes::new(CasesServiceServer::new(cases_api.clone()))
            .add_service(FileRecordsServiceServer::new(cases_api))
            .prepare(),
    );
    let ingest_db = Database::connect(&open("ingest"), &DbOptions::default())
        .await
        .unwrap();
    ingest_db
        .migrate(casescope_ingest::ALL_MIGRATIONS)
        .await
        .unwrap();
    let ingest_outbox = Outbox::new(ingest_db.clone(), bus.clone());
    tokio::spawn(
        ingest_outbox
            .clone()
            .relay(Duration::from_millis(200), stop.clone()),
    );
    let store: Arc<dyn EventStore> = Arc::new(
        TantivyStore::open(
            &data.join("index"),
            &TantivyOptions {
                writer_memory_bytes: 64 * 1024 * 1024,
                writer_threads: 1,
                ..TantivyOptions::default()
            },
        )
        .unwrap(),
    );
    let mut settings = IngestSettings::new(data.join("ingest"));
    settings.lease_ttl = Duration::from_secs(5);
    settings.max_chunk_bytes = 256 * 1024;
    tune(&mut settings);
    let api = IngestApi::new(
        ingest_db,
        settings.clone(),
        CasesClient::new(cases_channel.clone()),
        ingest_outbox,
        store.clone(),
    );
    let consumer = ConsumerConfig {
        ack_wait: settings.lease_ttl,
        batch: 2,
        ..ConsumerConfig::new(INGEST_CONSUMER, subjects::job("ingest"))
    };
    tokio::spawn(run_consumer(
        bus.clone(),
        consumer,
        Arc::new(api.stage()),
        stop.clone(),
    ));
    let ingest = IngestServiceClient::new(in_process(
        tonic::service::Routes::new(IngestServiceServer::new(api)).prepare(),
    ));
    let mut cases = CasesServiceClient::new(cases_channel);
    let case_id = cases
        .create_case(cases_pb::CreateCaseRequest {
            name: "ingest suite".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
        .unwrap()
        .value;
    Harness {
        ingest,
        cases,
        store,
        case_id,
        root,
        stop,
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn header(h: &Harness, name: &str, bytes: &[u8]) -> pb::UploadHeader {
    pb::UploadHeader {
        case_id: Some(CaseId {
            value: h.case_id.clone(),
        }),
        file_name: name.into(),
        declared_size_bytes: bytes.len() as u64,
        declared_sha256: sha256(bytes),
        timestamp_field: None,
        resume_upload_id: None,
    }
}

pub fn chunks(
    header: pb::UploadHeader,
    bytes: &[u8],
    from: usize,
    chunk: usize,
) -> Vec<pb::UploadChunk> {
    let mut messages = vec![pb::UploadChunk {
        payload: Some(pb::upload_chunk::Payload::Header(header)),
    }];
    let mut offset = from;
    while offset < bytes.len() {
        let end = (offset + chunk).min(bytes.len());
        messages.push(pb::UploadChunk {
            payload: Some(pb::upload_chunk::Payload::Data(pb::UploadData {
                offset: offset as u64,
                data: bytes[offset..end].to_vec(),
            })),
        });
        offset = end;
    }
    messages
}

pub async fn upload(
    h: &mut Harness,
    name: &str,
    bytes: &[u8],
) -> Result<pb::UploadResult, tonic::Status> {
    let messages = chunks(header(h, name, bytes), bytes, 0, 100 * 1024);
    h.ingest
        .upload(futures::stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

pub async fn file(h: &mut Harness, file_id: &str) -> cases_pb::File {
    h.cases
        .get_file(cases_pb::GetFileRequest {
            case_id: Some(CaseId {
                value: h.case_id.clone(),
            }),
            file_id: Some(FileId {
                value: file_id.into(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until the file leaves uploaded/parsing; returns its record.
pub async fn processed(h: &mut Harness, file_id: &str) -> cases_pb::File {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let record = file(h, file_id).await;
        let status = casescope_proto::common::v1::FileStatus::try_from(record.status).unwrap();
        use casescope_proto::common::v1::FileStatus::*;
        if !matches!(status, Uploaded | Parsing) {
            return record;
        }
        assert!(Instant::now() < deadline, "file {file_id} still {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn synth_evtx(dir: &Path, events: u64, seed: u64) -> Vec<u8> {
    let path = dir.join(format!("synth-{seed}.evtx"));
    casescope_synth::write_evtx_file(&path, casescope_synth::realistic_events(events, seed))
        .unwrap();
    std::fs::read(path).unwrap()
}

pub fn status_of(record: &cases_pb::File) -> casescope_proto::common::v1::FileStatus {
    casescope_proto::common::v1::FileStatus::try_from(record.status).unwrap()
}

pub fn assert_counts_add_up(record: &cases_pb::File) {
    assert_eq!(
        record.records_read,
        record.events_indexed + record.records_rejected + record.duplicates_skipped,
        "{record:?}"
    );
}
