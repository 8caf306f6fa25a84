//! Calls to the cases service (which owns cases and file records), over a
//! [`GrpcChannel`]: a socket in cluster mode, an in-process call in all-in-one mode.
//! Every call has a deadline.

use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::cases::v1::file_records_service_client::FileRecordsServiceClient;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{CaseId, FileId};
use std::time::Duration;
use tonic::Status;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct CasesClient {
    cases: CasesServiceClient<GrpcChannel>,
    files: FileRecordsServiceClient<GrpcChannel>,
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    casescope_runtime::trace_context::inject_into_request(&mut request);
    request
}

impl CasesClient {
    pub fn new(channel: GrpcChannel) -> Self {
        Self {
            cases: CasesServiceClient::new(channel.clone()),
            files: FileRecordsServiceClient::new(channel),
        }
    }

    pub async fn get_case(&self, case_id: &str) -> Result<pb::Case, Status> {
        let mut client = self.cases.clone();
        let response = client
            .get_case(request(pb::GetCaseRequest {
                id: Some(CaseId {
                    value: case_id.to_string(),
                }),
            }))
            .await?;
        Ok(response.into_inner())
    }

    pub async fn register_file(
        &self,
        message: pb::RegisterFileRequest,
    ) -> Result<pb::File, Status> {
        let mut client = self.files.clone();
        Ok(client.register_file(request(message)).await?.into_inner())
    }

    pub async fn update_file_status(
        &self,
        message: pb::UpdateFileStatusRequest,
    ) -> Result<pb::File, Status> {
        let mut client = self.files.clone();
        Ok(client
            .update_file_status(request(message))
            .await?
            .into_inner())
    }

    /// Tells the cases service how a restore ended.
    pub async fn finish_restore(
        &self,
        case_id: &str,
        restored: bool,
        refusal: &str,
    ) -> Result<pb::Case, Status> {
        let mut client = self.files.clone();
        Ok(client
            .finish_restore(request(pb::FinishRestoreRequest {
                case_id: Some(CaseId {
                    value: case_id.to_string(),
                }),
                restored,
                refusal: refusal.to_string(),
            }))
            .await?
            .into_inner())
    }

    pub async fn list_files(
        &self,
        case_id: &str,
        page: casescope_proto::common::v1::PageRequest,
    ) -> Result<pb::ListFilesResponse, Status> {
        let mut client = self.cases.clone();
        Ok(client
            .list_files(request(pb::ListFilesRequest {
                case_id: Some(CaseId {
                    value: case_id.to_string(),
                }),
                page: Some(page),
                status: 0,
            }))
            .await?
            .into_inner())
    }
}

pub fn file_id(id: &str) -> Option<FileId> {
    Some(FileId {
        value: id.to_string(),
    })
}
