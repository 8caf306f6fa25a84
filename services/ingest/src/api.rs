//! The gRPC face of the ingest service.

use crate::IngestSettings;
use crate::cases_client::CasesClient;
use crate::convert::{cursor_from_pb, event_to_pb, query_from_pb, sort_from_pb};
use crate::repo::{IngestRepo, stage};
use crate::stage::FileFences;
use casescope_bus::Outbox;
use casescope_db::{Database, DbError};
use casescope_eventstore::{EventStore, SortOrder, StoreError};

/// Buckets of a histogram whose request names no maximum.
const DEFAULT_HISTOGRAM_BUCKETS: u32 = 200;
use casescope_proto::common::v1::{FileId, FileStatus, PageResponse};
use casescope_proto::error::ApiError;
use casescope_proto::ingest::v1 as pb;
use casescope_proto::ingest::v1::ingest_service_server::IngestService;
use casescope_proto::paging::validate_page;
use casescope_proto::time::micros_to_timestamp;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status, Streaming};

pub(crate) fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::internal_logged(context, error)
}

pub(crate) fn db_error(error: DbError) -> ApiError {
    match error {
        DbError::Unavailable(message) => {
            tracing::warn!(%message, "ingest database unavailable");
            ApiError::Unavailable {
                message: "the ingest database is unavailable; retry shortly".into(),
            }
        }
        other => internal("ingest database error", other),
    }
}

/// Most fields one Facets request may name.
const MAX_FACET_FIELDS: usize = 10;

pub(crate) fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Invalid(message) => ApiError::invalid_field("QUERY_INVALID", "query", message),
        StoreError::Query(error) => {
            ApiError::invalid_field("QUERY_INVALID", "query.query", error.to_string())
        }
        StoreError::Unavailable(message) => ApiError::Unavailable { message },
        StoreError::Internal(message) => internal("event store", message),
    }
}

pub(crate) use casescope_proto::ids::case_id;

fn plain_id(value: Option<&str>, reason: &'static str, field: &str) -> Result<String, ApiError> {
    value
        .map(str::trim)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::invalid_field(reason, field, "an id (letters, digits, '-') is required")
        })
}

fn file_id_of(id: Option<&FileId>) -> Result<String, ApiError> {
    plain_id(id.map(|f| f.value.as_str()), "FILE_ID_INVALID", "file_id")
}

/// Upload ids being received right now (one stream per upload).
#[derive(Default)]
pub(crate) struct ActiveUploads(Mutex<HashSet<String>>);

pub(crate) struct ActiveGuard<'a>(&'a ActiveUploads, String);

impl ActiveUploads {
    pub(crate) fn claim(&self, id: &str) -> Option<ActiveGuard<'_>> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_string())
            .then(|| ActiveGuard(self, id.to_string()))
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        let mut set = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.1);
    }
}

#[derive(Clone)]
pub struct IngestApi {
    pub(crate) repo: IngestRepo,
    pub(crate) settings: IngestSettings,
    pub(crate) cases: CasesClient,
    pub(crate) outbox: Outbox,
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) active_uploads: Arc<ActiveUploads>,
    pub(crate) fences: Arc<FileFences>,
}

impl IngestApi {
    pub fn new(
        db: Database,
        settings: IngestSettings,
        cases: CasesClient,
        outbox: Outbox,
        store: Arc<dyn EventStore>,
    ) -> Self {
        Self {
            repo: IngestRepo::new(db),
            settings,
            cases,
            outbox,
            store,
            active_uploads: Arc::default(),
            fences: Arc::default(),
        }
    }

    /// The stage worker sharing this API's store and write fences.
    pub fn stage(&self) -> crate::IngestStage {
        crate::IngestStage::new(
            self.repo.clone(),
            self.store.clone(),
            self.cases.clone(),
            self.settings.clone(),
            self.fences.clone(),
            self.outbox.clone(),
        )
    }

    pub fn reconciler(&self) -> crate::Reconciler {
        crate::Reconciler::new(
            self.repo.clone(),
            self.outbox.clone(),
            self.cases.clone(),
            self.settings.clone(),
        )
    }

    /// Deletes the data of deleted cases (the `case.deleted` handler and its reconciler).
    /// Deletes the data of deleted cases and archives/restores archived ones (the
    /// case-facts handler and its reconciler).
    pub fn purger(&self) -> crate::CasePurger {
        let archiver = crate::CaseArchiver::new(
            self.repo.clone(),
            self.store.clone(),
            self.settings.clone(),
            self.outbox.clone(),
            self.cases.clone(),
        );
        crate::CasePurger::new(
            self.repo.clone(),
            self.store.clone(),
            self.settings.clone(),
            archiver,
        )
    }

    /// Ok if the case is open; FAILED_PRECONDITION naming its state otherwise (`what`:
    /// the change refused, e.g. "adding evidence").
    pub(crate) async fn require_open_case(
        &self,
        case_id: &str,
        what: &str,
    ) -> Result<(), ApiError> {
        use casescope_proto::cases::v1::CaseState;
        match self.cases.get_case(case_id).await {
            Ok(case) if case.state == CaseState::Archived as i32 => {
                Err(ApiError::failed_precondition(
                    "CASE_ARCHIVED",
                    format!("case {case_id} is archived; restore it before {what}"),
                ))
            }
            Ok(case) if case.state == CaseState::Restoring as i32 => {
                Err(ApiError::failed_precondition(
                    "CASE_RESTORING",
                    format!(
                        "case {case_id} is being restored; wait until it is open before {what}"
                    ),
                ))
            }
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => Err(ApiError::not_found(
                "CASE_NOT_FOUND",
                format!("case {case_id} does not exist"),
            )),
            Err(status) => {
                tracing::warn!(error = %status.message(), "cases service call failed");
                Err(ApiError::Unavailable {
                    message: "the cases service is unavailable; retry shortly".into(),
                })
            }
        }
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn upload(
        &self,
        request: Request<Streaming<pb::UploadChunk>>,
    ) -> RpcResult<pb::UploadResult> {
        let uploader = crate::upload::Uploader::of(&request);
        Ok(Response::new(
            self.handle_upload(request.into_inner(), &uploader).await?,
        ))
    }

    async fn get_upload_status(
        &self,
        request: Request<pb::GetUploadStatusRequest>,
    ) -> RpcResult<pb::UploadStatus> {
        let request = request.into_inner();
        let case_id = case_id(request.case_id.as_ref(), "case_id")?;
        let upload = match request.lookup {
            Some(pb::get_upload_status_request::Lookup::UploadId(id)) => {
                self.repo.upload(&id.value).await
            }
            Some(pb::get_upload_status_request::Lookup::DeclaredSha256(sha)) => {
                self.repo
                    .latest_upload_by_sha(&case_id, &sha.to_ascii_lowercase())
                    .await
            }
            None => {
                return Err(ApiError::invalid_field(
                    "LOOKUP_MISSING",
                    "lookup",
                    "give an upload id or the declared SHA-256",
                )
                .into());
            }
        }
        .map_err(db_error)?
        .filter(|upload| upload.case_id == case_id)
        .ok_or_else(|| {
            ApiError::not_found(
                "UPLOAD_NOT_FOUND",
                format!("no such upload in case {case_id}"),
            )
        })?;
        let on_disk = if upload.state == "receiving" {
            tokio::fs::metadata(
                self.settings
                    .uploads_dir()
                    .join(format!("{}.part", upload.id)),
            )
            .await
            .map(|m| m.len())
            .unwrap_or(0)
        } else {
            u64::try_from(upload.bytes_received).unwrap_or_default()
        };
        Ok(Response::new(self.upload_status(&upload, on_disk)))
    }

    async fn begin_upload(
        &self,
        request: Request<pb::UploadHeader>,
    ) -> RpcResult<pb::BeginUploadResponse> {
        let uploader = crate::upload::Uploader::of(&request);
        Ok(Response::new(
            self.begin_upload(request.into_inner(), &uploader).await?,
        ))
    }

    async fn upload_part(
        &self,
        request: Request<pb::UploadPartRequest>,
    ) -> RpcResult<pb::UploadPartResponse> {
        Ok(Response::new(self.upload_part(request.into_inner()).await?))
    }

    async fn search_events(
        &self,
        request: Request<pb::SearchEventsRequest>,
    ) -> RpcResult<pb::SearchEventsResponse> {
        let mut request = request.into_inner();
        let case_id = case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let mut query = query_from_pb(&case_id, request.query.take(), "query")?;
        query.sort = sort_from_pb(request.sort);
        query.page_size = page.size as usize;
        query.after = cursor_from_pb(page.cursor.as_deref(), "page.cursor")?;
        query.skip_raw = !request.include_raw;
        let result = self.store.search(&query).await.map_err(store_error)?;
        Ok(Response::new(pb::SearchEventsResponse {
            events: result
                .events
                .into_iter()
                .map(|event| event_to_pb(event, request.include_raw))
                .collect(),
            total_hits: result.total,
            total_hits_is_lower_bound: false,
            page: Some(PageResponse {
                next_cursor: result.next.map(|c| c.encode()).unwrap_or_default(),
            }),
        }))
    }

    async fn count_events(
        &self,
        request: Request<pb::CountEventsRequest>,
    ) -> RpcResult<pb::CountEventsResponse> {
        let mut request = request.into_inner();
        let case_id = case_id(request.case_id.as_ref(), "case_id")?;
        let query = query_from_pb(&case_id, request.query.take(), "query")?;
        let count = self.store.count(&query).await.map_err(store_error)?;
        Ok(Response::new(pb::CountEventsResponse { count }))
    }

    async fn get_event(&self, request: Request<pb::GetEventRequest>) -> RpcResult<pb::Event> {
        let request = request.into_inner();
        let case_id = case_id(request.case_id.as_ref(), "case_id")?;
        let event_id = plain_id(
            request.event_id.as_ref().map(|e| e.value.as_str()),
            "EVENT_ID_INVALID",
            "event_id",
        )?;
        let event = self
            .store
            .get(&case_id, &event_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "EVENT_NOT_FOUND",
                    format!("event {event_id} does not exist in case {case_id}"),
                )
            })?;
        Ok(Response::new(event_to_pb(event, true)))
    }

    async fn batch_get_events(
        &self,
        request: Request<pb::BatchGetEventsRequest>,
    ) -> RpcResult<pb::BatchGetEventsResponse> {
        let request = request.into_inner();
        let case_id = case_id(request.case_id.as_ref(), "case_id")?;
        if request.event_ids.len() > casescope_proto::paging::MAX_PAGE_SIZE as usize {
            return Err(ApiError::invalid_field(
                "TOO_MANY_IDS",
                "event_ids",
                "at most 1000 ids per call",
            )
            .into());
        }
        let mut response = pb::BatchGetEventsResponse::default();
        for id in request.event_ids {
            let event_id = plain_id(Some(&id.value), "EVENT_ID_INVALID", "event_ids")?;
            match self
                .store
                .get(&case_id, &event_id)
                .await
                .map_err(store_error)?
            {
                Some(event) => response
                    .events
                    .push(event_to_pb(event, request.include_raw)),
                None => response.missing_event_ids.push(id),
            }
        }
        Ok(Response::new(response))
    }

    type ScanFileEventsStream = crate::streams::EventStream<pb::ScanFileEventsResponse>;

    async fn scan_file_events(
        &self,
        request: Request<pb::ScanFileEventsRequest>,
    ) -> RpcResult<Self::ScanFileEventsStream> {
        let request = request.into_inner();
        let case_id = case_id(request.case_id.as_ref(), "case_id")?;
        let file_id = file_id_of(request.file_id.as_ref())?;
        let batch = match request.batch_size {
            0 => 500,
            n if n as usize > casescope_eventstore::MAX_PAGE_SIZE => {
                return Err(ApiError::invalid_field(
                    "BATCH_TOO_LARGE",
                    "batch_size",
                    "at most 1000",
                )
                .into());
            }
            n => n as usize,
        };
        let mut query =
            casescope_eventstore::EventQuery::new(&case_id, casescope_eventstore::Query::All);
        query.file_ids = vec![file_id];
        query.sort = SortOrder::Ascending;
        query.page_size = batch;
        query.after = cursor_from_pb(
            (!request.resume_cursor.is_empty()).then_some(request.resume_cursor.as_str()),
            "resume_cursor",
        )?;
        let wrap: fn(Vec<pb::Event>, String, u64) -> pb::ScanFileEventsResponse =
            |events, cursor, _| pb::ScanFileEventsResponse { events, cursor };
        Ok(Response::new(crate::streams::walk(
            self.store.clone(),
            query,
            request.include_raw,
            false,
            wrap,
        )))
    }

    async fn facets(&self, request: Request<pb::FacetsRequest>) -> RpcResult<pb::FacetsResponse> {
        let mut request = request.into_inner();
        let case_id = case_id(request.case_id.as_ref(), "case_id")?;
        if request.fields.is_empty() || request.fields.len() > MAX_FACET_FIELDS {
            return Err(ApiError::invalid_field(
                "FACET_FIELDS",
                "fields",
                format!("name 1..={MAX_FACET_FIELDS} fields"),
            )
            .into());
        }
        let top = match request.top {
            0 => 10,
            n if n as usize > casescope_eventstore::MAX_FACET_TOP => {
                return Err(ApiError::invalid_field(
                    "FACET_TOP",
                    "top",
                    format!(
                        "at most {} values per field",
                        casescope_eventstore::MAX_FACET_TOP
                    ),
                )
                .into());
            }
            n => n as usize,
        };
        let query = query_from_pb(&case_id, request.query.take(), "query")?;
        let mut facets = Vec::with_capacity(request.fields.len());
        let mut selected = 0;
        for (n, field) in request.fields.iter().enumerate() {
            let facet =
                self.store
                    .facet(&query, field, top)
                    .await
                    .map_err(|error| match error {
                        StoreError::Invalid(why) => {
                            ApiError::invalid_field("FACET_INVALID", format!("fields[{n}]"), why)
                        }
                        other => store_error(other),
                    })?;
            selected = facet.selected;
            facets.push(pb::Facet {
                field: facet.field,
                values: facet
                    .values
                    .into_iter()
                    .map(|v| pb::FacetValue {
                        value: v.value,
                        count: v.count,
                    })
                    .collect(),
                other: facet.other,
            });
        }
        Ok(Response::new(pb::FacetsResponse { facets, selected }))
    }

    type StreamEventsStream = crate::streams::EventStream<pb::StreamEventsResponse>;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> RpcResult<Self::StreamEventsStream> {
        let mut request = request.into_inner();
        let case_id = case_id(request.case_id.as_ref(), "case_id")?;
        let batch = match request.batch_size {
            0 => 2_000,
            n if n as usize > casescope_eventstore::MAX_STREAM_BATCH => {
                return Err(ApiError::invalid_field(
                    "BATCH_TOO_LARGE",
                    "batch_size",
                    format!("at most {}", casescope_eventstore::MAX_STREAM_BATCH),
                )
                .into());
            }
            n => n as usize,
        };
        let mut query = query_from_pb(&case_id, request.query.take(), "query")?;
        query.sort = sort_from_pb(request.sort);
        query.page_size = batch;
        query.after = cursor_from_pb(
            (!request.resume_cursor.is_empty()).then_some(request.resume_cursor.as_str()),
            "resume_cursor",
        )?;
        let wrap: fn(Vec<pb::Event>, String, u64) -> pb::StreamEventsResponse =
            |events, cursor, total_hits| pb::StreamEventsResponse {
                events,
                cursor,
                total_hits,
            };
        Ok(Response::new(crate::streams::walk(
            self.store.clone(),
            query,
            request.include_raw,
            true,
            wrap,
        )))
    }

    async fn histogram(
        &self,
        request: Request<pb::HistogramRequest>,
    ) -> RpcResult<pb::HistogramResponse> {
        let mut request = request.into_inner();
        let case_id = case_id(request.case_id.as_ref(), "case_id")?;
        let query = query_from_pb(&case_id, request.query.take(), "query")?;
        let interval = request
            .interval
            .map(|d| {
                d.seconds
                    .saturating_mul(1_000_000)
                    .saturating_add(i64::from(d.nanos) / 1000)
            })
            .unwrap_or(0);
        let interval = if interval > 0 {
            interval
        } else {
            let max_buckets =
                crate::histogram::bucket_limit(request.max_buckets, DEFAULT_HISTOGRAM_BUCKETS);
            crate::histogram::auto_interval(self.store.as_ref(), &query, max_buckets)
                .await
                .map_err(store_error)?
        };
        let buckets = self
            .store
            .histogram(&query, interval)
            .await
            .map_err(store_error)?;
        let total_count = buckets.iter().map(|b| b.count).sum();
        Ok(Response::new(pb::HistogramResponse {
            interval: Some(prost_types::Duration {
                seconds: interval / 1_000_000,
                nanos: ((interval % 1_000_000) * 1000) as i32,
            }),
            buckets: buckets
                .into_iter()
                .map(|b| pb::HistogramBucket {
                    start: Some(micros_to_timestamp(b.start_micros)),
                    count: b.count,
                })
                .collect(),
            total_count,
        }))
    }

    async fn reindex_file(
        &self,
        request: Request<pb::ReindexFileRequest>,
    ) -> RpcResult<pb::ReindexFileResponse> {
        let request = request.into_inner();
        let case_id = case_id(request.case_id.as_ref(), "case_id")?;
        let file_id = file_id_of(request.file_id.as_ref())?;
        let existing = self
            .repo
            .file(&file_id)
            .await
            .map_err(db_error)?
            .filter(|f| f.case_id == case_id)
            .ok_or_else(|| {
                ApiError::not_found(
                    "FILE_NOT_FOUND",
                    format!("file {file_id} does not exist in case {case_id}"),
                )
            })?;
        if existing.stage_status == stage::CONTAINER {
            return Err(ApiError::failed_precondition(
                "FILE_IS_ARCHIVE",
                "an archive is not indexed; re-index its members",
            )
            .into());
        }
        self.require_open_case(&case_id, "re-indexing its files")
            .await?;
        if existing.stage_status == stage::ARCHIVED {
            return Err(ApiError::failed_precondition(
                "FILE_ARCHIVED",
                format!("file {file_id} is archived; restore its case first"),
            )
            .into());
        }
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        let row = self
            .repo
            .request_run(&mut tx, &file_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ApiError::not_found("FILE_NOT_FOUND", format!("file {file_id} does not exist"))
            })?;
        crate::stage::enqueue_job(&self.outbox, &mut tx, &row, "reindex", None)
            .await
            .map_err(|e| internal("queue reindex", e))?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        self.outbox.nudge();
        crate::stage::sync_status(&self.repo, &self.cases, &row).await;
        Ok(Response::new(pb::ReindexFileResponse {
            file_id: Some(FileId { value: file_id }),
            status: FileStatus::Uploaded as i32,
        }))
    }
}
