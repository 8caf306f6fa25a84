//! The gRPC face of the cases service.

use crate::annotations::Actor;
use crate::convert::{case_to_pb, file_to_pb, settings_from, status_name};
use crate::cursor;
use crate::repo::{CaseRow, CaseState, CasesRepo, Position};
use crate::sets::SetCache;
use crate::timeline::Peers;
use crate::validate;
use casescope_bus::{OutboundMessage, Outbox, subjects};
use casescope_db::{Database, DbError, Tx};
use casescope_proto::bus::v1::{CaseFact, CaseSnapshot, FactHeader};
use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_server::CasesService;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{FileStatus, PageResponse};
use casescope_proto::detect::v1::detect_service_client::DetectServiceClient;
use casescope_proto::error::ApiError;
use casescope_proto::identity::Identity;
use casescope_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use casescope_proto::paging::validate_page;
use casescope_proto::time::micros_to_rfc3339;
use tonic::{Request, Response, Status};

type RpcResult<T> = Result<Response<T>, Status>;

/// Largest answer read from a peer: a page of 1,000 events with raw records.
const MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct CasesApi {
    pub(crate) repo: CasesRepo,
    pub(crate) outbox: Outbox,
    /// The ingest (events) and detect services, for the timeline.
    pub(crate) peers: Option<Peers>,
    pub(crate) sets: SetCache,
    /// Woken when an annotation job is recorded.
    pub(crate) jobs_wake: std::sync::Arc<tokio::sync::Notify>,
    /// The stages a file goes through after ingest (its status is `ready` when all are
    /// done).
    pub(crate) file_stages: std::sync::Arc<Vec<String>>,
}

fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::internal_logged(context, error)
}

pub(crate) fn db_error(error: DbError) -> ApiError {
    match error {
        DbError::Unavailable(message) => {
            tracing::warn!(%message, "database unavailable");
            ApiError::Unavailable {
                message: "the cases database is unavailable; retry shortly".into(),
            }
        }
        other => internal("cases database error", other),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("CASE_NOT_FOUND", format!("case {id} does not exist"))
}

/// FAILED_PRECONDITION naming the state of a case that is not open, for a change
/// (`what`: "adding evidence", "changing it", "tagging its events", …).
pub(crate) fn require_open(case: &CaseRow, what: &str) -> Result<(), ApiError> {
    match case.state {
        CaseState::Open => Ok(()),
        CaseState::Archived => Err(ApiError::failed_precondition(
            "CASE_ARCHIVED",
            format!("case {} is archived; restore it before {what}", case.id),
        )),
        CaseState::Restoring => Err(ApiError::failed_precondition(
            "CASE_RESTORING",
            format!(
                "case {} is being restored; wait until it is open before {what}",
                case.id
            ),
        )),
    }
}

impl CasesApi {
    pub fn new(db: Database, outbox: Outbox) -> Self {
        Self {
            repo: CasesRepo::new(db),
            outbox,
            peers: None,
            sets: SetCache::default(),
            jobs_wake: std::sync::Arc::new(tokio::sync::Notify::new()),
            // None until configured (`with_file_stages`): a file then shows ingest's
            // status; `casescope serve` names the stages it runs.
            file_stages: std::sync::Arc::new(Vec::new()),
        }
    }

    /// The stages a file goes through after ingest (`CASESCOPE_FILE_STAGES`).
    pub fn with_file_stages(mut self, stages: Vec<String>) -> Self {
        self.file_stages = std::sync::Arc::new(stages);
        self
    }

    /// Connects the timeline to the ingest service (events) and, when given, the
    /// detect service (detections shown on events).
    pub fn with_peers(mut self, events: GrpcChannel, detections: Option<GrpcChannel>) -> Self {
        self.peers = Some(Peers {
            events: IngestServiceClient::new(events).max_decoding_message_size(MAX_PEER_MESSAGE),
            detections: detections.map(|channel| {
                DetectServiceClient::new(channel).max_decoding_message_size(MAX_PEER_MESSAGE)
            }),
        });
        self
    }

    pub(crate) async fn begin(&self) -> Result<Tx<'static>, ApiError> {
        self.repo.db().begin().await.map_err(db_error)
    }

    /// Queues the fact describing `case` after a change of `kind`, in the change's tx.
    async fn record_fact(
        &self,
        tx: &mut Tx<'_>,
        kind: &str,
        case: &CaseRow,
        deleted: bool,
    ) -> Result<(), ApiError> {
        let now = casescope_db::now_micros();
        let fact_id = uuid::Uuid::now_v7().to_string();
        let fact = CaseFact {
            header: Some(FactHeader {
                fact_id: fact_id.clone(),
                kind: kind.to_string(),
                case_id: case.id.clone(),
                occurred_at: micros_to_rfc3339(now),
                producer: "cases".to_string(),
            }),
            case_snapshot: Some(CaseSnapshot {
                id: case.id.clone(),
                name: case.name.clone(),
                state: if deleted {
                    "deleted"
                } else {
                    case.state.as_str()
                }
                .to_string(),
                version: case.version,
                deduplicate_events: case.settings.deduplicate_events,
            }),
        };
        let message = OutboundMessage::json(subjects::case_facts(&case.id), fact_id, &fact)
            .map_err(|error| internal("encode case fact", error))?;
        self.outbox
            .enqueue(tx, &message)
            .await
            .map_err(|error| internal("queue case fact", error))
    }

    pub(crate) async fn commit_change(&self, tx: Tx<'_>) -> Result<(), ApiError> {
        self.commit(tx).await
    }

    /// NOT_FOUND unless case `id` exists.
    pub(crate) async fn require_case(&self, id: &str) -> Result<CaseRow, ApiError> {
        let mut tx = self.begin().await?;
        let case = self.load(&mut tx, id).await?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        Ok(case)
    }

    async fn commit(&self, tx: Tx<'_>) -> Result<(), ApiError> {
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        self.outbox.nudge();
        Ok(())
    }

    pub(crate) async fn load(&self, tx: &mut Tx<'_>, id: &str) -> Result<CaseRow, ApiError> {
        self.repo
            .get(tx, id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| not_found(id))
    }

    /// The ingest service's outcome of a restore (see `FinishRestore`).
    pub(crate) async fn conclude_restore(
        &self,
        id: &str,
        restored: bool,
        refusal: &str,
    ) -> Result<CaseRow, ApiError> {
        let kind = if restored {
            "case.restored"
        } else {
            "case.restore_refused"
        };
        self.mutate(id, kind, 0, |case| {
            if case.state != CaseState::Restoring {
                return Ok(false);
            }
            if restored {
                case.state = CaseState::Open;
                case.archived_at = None;
                case.restore_error = None;
            } else {
                case.state = CaseState::Archived;
                case.restore_error = Some(refusal.chars().take(2000).collect());
            }
            Ok(true)
        })
        .await
    }

    /// Applies `change` to the case `id` and commits it with a fact of `kind`.
    /// `change` returns false for a no-op (nothing written, no fact).
    async fn mutate(
        &self,
        id: &str,
        kind: &str,
        expected_version: i64,
        change: impl FnOnce(&mut CaseRow) -> Result<bool, ApiError>,
    ) -> Result<CaseRow, ApiError> {
        let mut tx = self.begin().await?;
        let mut case = self.load(&mut tx, id).await?;
        if expected_version != 0 && case.version != expected_version {
            return Err(ApiError::Aborted {
                reason: "VERSION_MISMATCH",
                message: format!(
                    "case {id} is at version {}, not {expected_version}; reload and retry",
                    case.version
                ),
            });
        }
        let stored_version = case.version;
        if !change(&mut case)? {
            return Ok(case);
        }
        case.version = stored_version + 1;
        case.updated_at = casescope_db::now_micros().max(case.updated_at);
        if !self
            .repo
            .update(&mut tx, &case, stored_version)
            .await
            .map_err(db_error)?
        {
            return Err(ApiError::Aborted {
                reason: "CONCURRENT_UPDATE",
                message: format!("case {id} was changed concurrently; retry"),
            });
        }
        self.record_fact(&mut tx, kind, &case, false).await?;
        self.commit(tx).await?;
        Ok(case)
    }
}

#[tonic::async_trait]
impl CasesService for CasesApi {
    async fn create_case(&self, request: Request<pb::CreateCaseRequest>) -> RpcResult<pb::Case> {
        let request = request.into_inner();
        let name = validate::name(&request.name, "name")?;
        let description = validate::description(&request.description, "description")?;
        let settings = settings_from(request.settings.as_ref(), "settings")?;
        let now = casescope_db::now_micros();
        let case = CaseRow {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            description,
            state: CaseState::Open,
            settings,
            created_at: now,
            updated_at: now,
            archived_at: None,
            version: 1,
            file_count: 0,
            restore_error: None,
        };
        let mut tx = self.begin().await?;
        self.repo.insert(&mut tx, &case).await.map_err(db_error)?;
        self.record_fact(&mut tx, "case.created", &case, false)
            .await?;
        self.commit(tx).await?;
        tracing::info!(case_id = %case.id, "case created");
        Ok(Response::new(case_to_pb(&case)))
    }

    async fn get_case(&self, request: Request<pb::GetCaseRequest>) -> RpcResult<pb::Case> {
        let id = validate::case_id(request.get_ref().id.as_ref(), "id")?;
        let mut tx = self.begin().await?;
        let case = self.load(&mut tx, &id).await?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        Ok(Response::new(case_to_pb(&case)))
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> RpcResult<pb::ListCasesResponse> {
        // The gateway names the caller's cases (none: every case, e.g. an admin).
        let only = Identity::of(&request).and_then(|identity| identity.cases.clone());
        let request = request.into_inner();
        let page = validate_page(request.page.as_ref(), "page")?;
        let after = page
            .cursor
            .as_deref()
            .map(|c| cursor::decode(c, "page.cursor"))
            .transpose()?;
        let mut cases = self
            .repo
            .list(
                request.include_archived,
                after.as_ref(),
                page.size + 1,
                only.as_deref(),
            )
            .await
            .map_err(db_error)?;
        let more = cases.len() > page.size as usize;
        cases.truncate(page.size as usize);
        let next_cursor = match cases.last() {
            Some(last) if more => cursor::encode(&Position {
                at: last.created_at,
                id: last.id.clone(),
            }),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCasesResponse {
            cases: cases.iter().map(case_to_pb).collect(),
            page: Some(PageResponse { next_cursor }),
        }))
    }

    async fn update_case(&self, request: Request<pb::UpdateCaseRequest>) -> RpcResult<pb::Case> {
        let request = request.into_inner();
        let id = validate::case_id(request.id.as_ref(), "id")?;
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(ApiError::invalid_field(
                "UPDATE_MASK_EMPTY",
                "update_mask",
                "name at least one field to update: name, description, settings",
            )
            .into());
        }
        let mut name = None;
        let mut description = None;
        let mut settings = None;
        for path in &paths {
            match path.as_str() {
                "name" => name = Some(validate::name(&request.name, "name")?),
                "description" => {
                    description = Some(validate::description(&request.description, "description")?)
                }
                "settings" => {
                    settings = Some(settings_from(request.settings.as_ref(), "settings")?)
                }
                other => {
                    return Err(ApiError::invalid_field(
                        "UPDATE_MASK_UNKNOWN_FIELD",
                        "update_mask",
                        format!("{other:?} cannot be updated; use name, description or settings"),
                    )
                    .into());
                }
            }
        }
        let case = self
            .mutate(&id, "case.updated", request.expected_version, |case| {
                require_open(case, "changing it")?;
                let before = case.clone();
                if let Some(name) = name {
                    case.name = name;
                }
                if let Some(description) = description {
                    case.description = description;
                }
                if let Some(settings) = settings {
                    case.settings = settings;
                }
                Ok(*case != before)
            })
            .await?;
        Ok(Response::new(case_to_pb(&case)))
    }

    async fn archive_case(&self, request: Request<pb::ArchiveCaseRequest>) -> RpcResult<pb::Case> {
        let id = validate::case_id(request.get_ref().id.as_ref(), "id")?;
        let case = self
            .mutate(&id, "case.archived", 0, |case| match case.state {
                CaseState::Archived => Ok(false), // idempotent: a retried archive succeeds
                CaseState::Restoring => Err(ApiError::failed_precondition(
                    "CASE_RESTORING",
                    format!(
                        "case {} is being restored; archive it again once it is open",
                        case.id
                    ),
                )),
                CaseState::Open => {
                    case.state = CaseState::Archived;
                    case.archived_at = Some(casescope_db::now_micros());
                    case.restore_error = None;
                    Ok(true)
                }
            })
            .await?;
        Ok(Response::new(case_to_pb(&case)))
    }

    async fn restore_case(&self, request: Request<pb::RestoreCaseRequest>) -> RpcResult<pb::Case> {
        let id = validate::case_id(request.get_ref().id.as_ref(), "id")?;
        let case = self
            .mutate(&id, "case.restore_requested", 0, |case| {
                if case.state != CaseState::Archived {
                    return Ok(false); // open, or a restore already runs
                }
                case.state = CaseState::Restoring;
                case.restore_error = None;
                Ok(true)
            })
            .await?;
        Ok(Response::new(case_to_pb(&case)))
    }

    async fn delete_case(
        &self,
        request: Request<pb::DeleteCaseRequest>,
    ) -> RpcResult<pb::DeleteCaseResponse> {
        let id = validate::case_id(request.get_ref().id.as_ref(), "id")?;
        let mut tx = self.begin().await?;
        let case = self.load(&mut tx, &id).await?;
        if !self.repo.delete(&mut tx, &id).await.map_err(db_error)? {
            return Err(not_found(&id).into());
        }
        self.record_fact(&mut tx, "case.deleted", &case, true)
            .await?;
        self.commit(tx).await?;
        tracing::info!(case_id = %id, "case deleted");
        Ok(Response::new(pb::DeleteCaseResponse {}))
    }

    async fn list_files(
        &self,
        request: Request<pb::ListFilesRequest>,
    ) -> RpcResult<pb::ListFilesResponse> {
        let request = request.into_inner();
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let after = page
            .cursor
            .as_deref()
            .map(|c| cursor::decode(c, "page.cursor"))
            .transpose()?;
        let status = FileStatus::try_from(request.status).map_err(|_| {
            ApiError::invalid_field(
                "FILE_STATUS_INVALID",
                "status",
                format!("{} is not a file status", request.status),
            )
        })?;
        let mut tx = self.begin().await?;
        self.load(&mut tx, &case_id).await?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        let mut files = self
            .repo
            .list_files(&case_id, status_name(status), after.as_ref(), page.size + 1)
            .await
            .map_err(db_error)?;
        let more = files.len() > page.size as usize;
        files.truncate(page.size as usize);
        let next_cursor = match files.last() {
            Some(last) if more => cursor::encode(&Position {
                at: last.uploaded_at,
                id: last.id.clone(),
            }),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListFilesResponse {
            files: files.iter().map(file_to_pb).collect(),
            page: Some(PageResponse { next_cursor }),
        }))
    }

    async fn get_file(&self, request: Request<pb::GetFileRequest>) -> RpcResult<pb::File> {
        let request = request.into_inner();
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let file_id = request
            .file_id
            .map(|id| id.value)
            .filter(|id| !id.is_empty() && id.len() <= 64)
            .ok_or_else(|| {
                ApiError::invalid_field("FILE_ID_INVALID", "file_id", "a file id is required")
            })?;
        let file = self
            .repo
            .get_file(&case_id, &file_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "FILE_NOT_FOUND",
                    format!("file {file_id} does not exist in case {case_id}"),
                )
            })?;
        Ok(Response::new(file_to_pb(&file)))
    }

    async fn tag_events(
        &self,
        request: Request<pb::TagEventsRequest>,
    ) -> RpcResult<pb::TagEventsResponse> {
        Ok(Response::new(self.tag_events_now(request, true).await?))
    }

    async fn untag_events(
        &self,
        request: Request<pb::UntagEventsRequest>,
    ) -> RpcResult<pb::TagEventsResponse> {
        let (metadata, extensions, message) = request.into_parts();
        let request = Request::from_parts(
            metadata,
            extensions,
            pb::TagEventsRequest {
                case_id: message.case_id,
                event_ids: message.event_ids,
                tag: message.tag,
                matching: message.matching,
            },
        );
        Ok(Response::new(self.tag_events_now(request, false).await?))
    }

    async fn get_annotation_job(
        &self,
        request: Request<pb::GetAnnotationJobRequest>,
    ) -> RpcResult<pb::AnnotationJob> {
        Ok(Response::new(self.get_job_now(request.into_inner()).await?))
    }

    async fn update_tag(&self, request: Request<pb::UpdateTagRequest>) -> RpcResult<pb::Tag> {
        Ok(Response::new(self.update_tag_now(request).await?))
    }

    async fn list_tags(
        &self,
        request: Request<pb::ListTagsRequest>,
    ) -> RpcResult<pb::ListTagsResponse> {
        Ok(Response::new(
            self.list_tags_now(request.into_inner()).await?,
        ))
    }

    async fn star_events(
        &self,
        request: Request<pb::StarEventsRequest>,
    ) -> RpcResult<pb::TagEventsResponse> {
        Ok(Response::new(self.star_events_now(request).await?))
    }

    async fn add_comment(&self, request: Request<pb::AddCommentRequest>) -> RpcResult<pb::Comment> {
        Ok(Response::new(self.add_comment_now(request).await?))
    }

    async fn edit_comment(
        &self,
        request: Request<pb::EditCommentRequest>,
    ) -> RpcResult<pb::Comment> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let comment = self
            .rewrite_comment_now(
                actor,
                request.case_id.as_ref(),
                request.id.as_ref(),
                Some(request.body),
                request.expected_revision,
            )
            .await?;
        Ok(Response::new(comment))
    }

    async fn delete_comment(
        &self,
        request: Request<pb::DeleteCommentRequest>,
    ) -> RpcResult<pb::Comment> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let comment = self
            .rewrite_comment_now(
                actor,
                request.case_id.as_ref(),
                request.id.as_ref(),
                None,
                0,
            )
            .await?;
        Ok(Response::new(comment))
    }

    async fn list_comments(
        &self,
        request: Request<pb::ListCommentsRequest>,
    ) -> RpcResult<pb::ListCommentsResponse> {
        Ok(Response::new(
            self.list_comments_now(request.into_inner()).await?,
        ))
    }

    async fn list_comment_revisions(
        &self,
        request: Request<pb::ListCommentRevisionsRequest>,
    ) -> RpcResult<pb::ListCommentRevisionsResponse> {
        Ok(Response::new(
            self.list_revisions_now(request.into_inner()).await?,
        ))
    }

    async fn get_annotations(
        &self,
        request: Request<pb::GetAnnotationsRequest>,
    ) -> RpcResult<pb::GetAnnotationsResponse> {
        Ok(Response::new(
            self.get_annotations_now(request.into_inner()).await?,
        ))
    }

    async fn save_search(
        &self,
        request: Request<pb::SaveSearchRequest>,
    ) -> RpcResult<pb::SavedSearch> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            self.save_search_now(actor, request.into_inner()).await?,
        ))
    }

    async fn list_saved_searches(
        &self,
        request: Request<pb::ListSavedSearchesRequest>,
    ) -> RpcResult<pb::ListSavedSearchesResponse> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            self.list_saved_searches_now(actor, request.into_inner())
                .await?,
        ))
    }

    async fn delete_saved_search(
        &self,
        request: Request<pb::DeleteSavedSearchRequest>,
    ) -> RpcResult<pb::DeleteSavedSearchResponse> {
        let actor = Actor::of(&request);
        self.delete_saved_search_now(actor, request.into_inner())
            .await?;
        Ok(Response::new(pb::DeleteSavedSearchResponse {}))
    }

    async fn list_search_history(
        &self,
        request: Request<pb::ListSearchHistoryRequest>,
    ) -> RpcResult<pb::ListSearchHistoryResponse> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            self.list_history_now(actor, request.into_inner()).await?,
        ))
    }

    async fn get_case_notes(
        &self,
        request: Request<pb::GetCaseNotesRequest>,
    ) -> RpcResult<pb::CaseNotes> {
        Ok(Response::new(
            self.get_notes_now(request.into_inner()).await?,
        ))
    }

    async fn update_case_notes(
        &self,
        request: Request<pb::UpdateCaseNotesRequest>,
    ) -> RpcResult<pb::CaseNotes> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            self.update_notes_now(actor, request.into_inner()).await?,
        ))
    }

    async fn list_case_notes_versions(
        &self,
        request: Request<pb::ListCaseNotesVersionsRequest>,
    ) -> RpcResult<pb::ListCaseNotesVersionsResponse> {
        Ok(Response::new(
            self.list_note_versions_now(request.into_inner()).await?,
        ))
    }

    async fn timeline_histogram(
        &self,
        request: Request<pb::TimelineHistogramRequest>,
    ) -> RpcResult<pb::TimelineHistogramResponse> {
        Ok(Response::new(
            self.timeline_histogram_now(request.into_inner()).await?,
        ))
    }

    async fn timeline_facets(
        &self,
        request: Request<pb::TimelineFacetsRequest>,
    ) -> RpcResult<casescope_proto::ingest::v1::FacetsResponse> {
        Ok(Response::new(
            self.timeline_facets_now(request.into_inner()).await?,
        ))
    }

    async fn get_event_context(
        &self,
        request: Request<pb::GetEventContextRequest>,
    ) -> RpcResult<pb::GetEventContextResponse> {
        Ok(Response::new(
            self.event_context_now(request.into_inner()).await?,
        ))
    }

    type ExportTimelineStream = crate::export::ChunkStream;

    async fn export_timeline(
        &self,
        request: Request<pb::ExportTimelineRequest>,
    ) -> RpcResult<Self::ExportTimelineStream> {
        Ok(Response::new(
            self.export_timeline_now(request.into_inner()).await?,
        ))
    }

    type ExportAnnotationsStream = crate::export::ChunkStream;

    async fn export_annotations(
        &self,
        request: Request<pb::ExportAnnotationsRequest>,
    ) -> RpcResult<Self::ExportAnnotationsStream> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            self.export_annotations_now(actor, request.into_inner())
                .await?,
        ))
    }

    async fn search_timeline(
        &self,
        request: Request<pb::SearchTimelineRequest>,
    ) -> RpcResult<pb::SearchTimelineResponse> {
        let actor = Actor::of(&request);
        Ok(Response::new(
            self.search_timeline_now(actor, request.into_inner())
                .await?,
        ))
    }
}
