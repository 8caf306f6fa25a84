//! The gRPC face of the ioc service.

use crate::IocSettings;
use crate::reconcile::Reconciler;
use crate::repo::IocRepo;
use crate::stage::HuntStage;
use casescope_bus::Outbox;
use casescope_db::{Database, DbError};
use casescope_proto::error::ApiError;
use casescope_proto::ioc::v1 as pb;
use casescope_proto::ioc::v1::ioc_service_server::IocService;
use casescope_proto::scan::EventsClient;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Notify;
use tonic::{Request, Response, Status, Streaming};

mod convert;
mod enrichment;
mod iocs;
mod lists;
mod matches;
mod transfer;

pub use lists::Via;

#[derive(Clone)]
pub struct IocApi {
    repo: IocRepo,
    settings: IocSettings,
    stage: HuntStage,
    wake: Arc<Notify>,
}

impl IocApi {
    pub fn new(db: Database, settings: IocSettings, outbox: Outbox, events: EventsClient) -> Self {
        let repo = IocRepo::new(db);
        let wake = Arc::new(Notify::new());
        let stage = HuntStage::new(repo.clone(), events, settings.clone(), outbox, wake.clone());
        Self {
            repo,
            settings,
            stage,
            wake,
        }
    }

    pub fn stage(&self) -> HuntStage {
        self.stage.clone()
    }

    pub fn reconciler(&self) -> Reconciler {
        Reconciler {
            stage: self.stage.clone(),
        }
    }
}

pub(crate) fn db_error(error: DbError) -> ApiError {
    match error {
        DbError::Unavailable(message) => {
            tracing::warn!(%message, "ioc database unavailable");
            ApiError::Unavailable {
                message: "the ioc database is unavailable; retry shortly".into(),
            }
        }
        other => ApiError::internal_logged("ioc database error", other),
    }
}

type ApiResult<T> = Result<Response<T>, Status>;
type ExportStream =
    Pin<Box<dyn futures::Stream<Item = Result<pb::ExportIocsChunk, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl IocService for IocApi {
    async fn create_ioc(&self, request: Request<pb::CreateIocRequest>) -> ApiResult<pb::Ioc> {
        let author = convert::author(&request);
        Ok(Response::new(
            self.create(Via::Case, request.into_inner(), &author)
                .await?,
        ))
    }

    async fn get_ioc(&self, request: Request<pb::GetIocRequest>) -> ApiResult<pb::Ioc> {
        Ok(Response::new(
            self.get(Via::Case, request.into_inner()).await?,
        ))
    }

    async fn list_iocs(
        &self,
        request: Request<pb::ListIocsRequest>,
    ) -> ApiResult<pb::ListIocsResponse> {
        Ok(Response::new(
            self.list(Via::Case, request.into_inner()).await?,
        ))
    }

    async fn update_ioc(&self, request: Request<pb::UpdateIocRequest>) -> ApiResult<pb::Ioc> {
        Ok(Response::new(
            self.update(Via::Case, request.into_inner()).await?,
        ))
    }

    async fn delete_ioc(
        &self,
        request: Request<pb::DeleteIocRequest>,
    ) -> ApiResult<pb::DeleteIocResponse> {
        Ok(Response::new(
            self.delete(Via::Case, request.into_inner()).await?,
        ))
    }

    async fn import_iocs(
        &self,
        request: Request<Streaming<pb::ImportIocsChunk>>,
    ) -> ApiResult<pb::ImportIocsResponse> {
        let author = convert::author(&request);
        Ok(Response::new(
            self.import(Via::Case, request.into_inner(), &author)
                .await?,
        ))
    }

    async fn import_iocs_file(
        &self,
        request: Request<pb::ImportIocsFileRequest>,
    ) -> ApiResult<pb::ImportIocsResponse> {
        let author = convert::author(&request);
        Ok(Response::new(
            self.import_file(Via::Case, request.into_inner(), &author)
                .await?,
        ))
    }

    type ExportIocsStream = ExportStream;

    async fn export_iocs(
        &self,
        request: Request<pb::ExportIocsRequest>,
    ) -> ApiResult<Self::ExportIocsStream> {
        Ok(Response::new(
            self.export(Via::Case, request.into_inner()).await?,
        ))
    }

    async fn hunt_case(
        &self,
        request: Request<pb::HuntCaseRequest>,
    ) -> ApiResult<pb::HuntResponse> {
        let request = request.into_inner();
        Ok(Response::new(
            self.hunt(request.case_id.as_ref(), None).await?,
        ))
    }

    async fn hunt_files(
        &self,
        request: Request<pb::HuntFilesRequest>,
    ) -> ApiResult<pb::HuntResponse> {
        let request = request.into_inner();
        Ok(Response::new(
            self.hunt(request.case_id.as_ref(), Some(&request.file_ids))
                .await?,
        ))
    }

    async fn list_hunt_states(
        &self,
        request: Request<pb::ListHuntStatesRequest>,
    ) -> ApiResult<pb::ListHuntStatesResponse> {
        Ok(Response::new(self.hunt_states(request.into_inner()).await?))
    }

    async fn list_matches(
        &self,
        request: Request<pb::ListMatchesRequest>,
    ) -> ApiResult<pb::ListMatchesResponse> {
        Ok(Response::new(self.matches(request.into_inner()).await?))
    }

    async fn count_matches(
        &self,
        request: Request<pb::CountMatchesRequest>,
    ) -> ApiResult<pb::CountMatchesResponse> {
        Ok(Response::new(self.counts(request.into_inner()).await?))
    }

    async fn create_ioc_list(
        &self,
        request: Request<pb::CreateIocListRequest>,
    ) -> ApiResult<pb::IocList> {
        let author = convert::author(&request);
        Ok(Response::new(
            self.create_list(request.into_inner(), &author).await?,
        ))
    }

    async fn get_ioc_list(
        &self,
        request: Request<pb::GetIocListRequest>,
    ) -> ApiResult<pb::IocList> {
        Ok(Response::new(self.get_list(request.into_inner()).await?))
    }

    async fn list_ioc_lists(
        &self,
        request: Request<pb::ListIocListsRequest>,
    ) -> ApiResult<pb::ListIocListsResponse> {
        Ok(Response::new(self.lists(request.into_inner()).await?))
    }

    async fn update_ioc_list(
        &self,
        request: Request<pb::UpdateIocListRequest>,
    ) -> ApiResult<pb::IocList> {
        Ok(Response::new(self.update_list(request.into_inner()).await?))
    }

    async fn delete_ioc_list(
        &self,
        request: Request<pb::DeleteIocListRequest>,
    ) -> ApiResult<pb::DeleteIocListResponse> {
        Ok(Response::new(self.delete_list(request.into_inner()).await?))
    }

    async fn create_list_ioc(&self, request: Request<pb::CreateIocRequest>) -> ApiResult<pb::Ioc> {
        let author = convert::author(&request);
        Ok(Response::new(
            self.create(Via::List, request.into_inner(), &author)
                .await?,
        ))
    }

    async fn get_list_ioc(&self, request: Request<pb::GetIocRequest>) -> ApiResult<pb::Ioc> {
        Ok(Response::new(
            self.get(Via::List, request.into_inner()).await?,
        ))
    }

    async fn list_list_iocs(
        &self,
        request: Request<pb::ListIocsRequest>,
    ) -> ApiResult<pb::ListIocsResponse> {
        Ok(Response::new(
            self.list(Via::List, request.into_inner()).await?,
        ))
    }

    async fn update_list_ioc(&self, request: Request<pb::UpdateIocRequest>) -> ApiResult<pb::Ioc> {
        Ok(Response::new(
            self.update(Via::List, request.into_inner()).await?,
        ))
    }

    async fn delete_list_ioc(
        &self,
        request: Request<pb::DeleteIocRequest>,
    ) -> ApiResult<pb::DeleteIocResponse> {
        Ok(Response::new(
            self.delete(Via::List, request.into_inner()).await?,
        ))
    }

    async fn import_list_iocs(
        &self,
        request: Request<Streaming<pb::ImportIocsChunk>>,
    ) -> ApiResult<pb::ImportIocsResponse> {
        let author = convert::author(&request);
        Ok(Response::new(
            self.import(Via::List, request.into_inner(), &author)
                .await?,
        ))
    }

    async fn import_list_iocs_file(
        &self,
        request: Request<pb::ImportIocsFileRequest>,
    ) -> ApiResult<pb::ImportIocsResponse> {
        let author = convert::author(&request);
        Ok(Response::new(
            self.import_file(Via::List, request.into_inner(), &author)
                .await?,
        ))
    }

    type ExportListIocsStream = ExportStream;

    async fn export_list_iocs(
        &self,
        request: Request<pb::ExportIocsRequest>,
    ) -> ApiResult<Self::ExportListIocsStream> {
        Ok(Response::new(
            self.export(Via::List, request.into_inner()).await?,
        ))
    }
}
