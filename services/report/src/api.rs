//! The gRPC face of the report service.

use crate::ai::client::LlmClient;
use crate::job::{ReportWorker, enqueue};
use crate::peers::Peers;
use crate::reconcile::Reconciler;
use crate::repo::{ArtefactRow, ReportRepo, ReportRow, ai, status};
use crate::{CHUNK_BYTES, ReportSettings};
use casescope_bus::Outbox;
use casescope_db::{Database, DbError, LeaseStore};
use casescope_proto::common::v1::{CaseId, PageResponse, ReportId, UserId};
use casescope_proto::error::ApiError;
use casescope_proto::identity::Identity;
use casescope_proto::ids::{case_id, uuid_id};
use casescope_proto::paging::validate_page;
use casescope_proto::report::v1 as pb;
use casescope_proto::report::v1::report_service_server::ReportService;
use casescope_proto::time::micros_to_timestamp;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Notify;
use tonic::{Code, Request, Response, Status};

/// Longest report title (characters).
const MAX_TITLE_CHARS: usize = 200;
/// Tags a report's timeline may name.
const MAX_TIMELINE_TAGS: usize = 100;

#[derive(Clone)]
pub struct ReportApi {
    repo: ReportRepo,
    outbox: Outbox,
    worker: ReportWorker,
    settings: ReportSettings,
}

fn db_error(error: DbError) -> ApiError {
    match error {
        DbError::Unavailable(message) => {
            tracing::warn!(%message, "report database unavailable");
            ApiError::Unavailable {
                message: "the report database is unavailable; retry shortly".into(),
            }
        }
        other => ApiError::internal_logged("report database error", other),
    }
}

type ApiResult<T> = Result<Response<T>, Status>;
type ChunkStream =
    Pin<Box<dyn futures::Stream<Item = Result<pb::ReportChunk, Status>> + Send + 'static>>;

impl ReportApi {
    pub fn new(db: Database, settings: ReportSettings, outbox: Outbox, peers: Peers) -> Self {
        let repo = ReportRepo::new(db.clone());
        let worker = ReportWorker {
            repo: repo.clone(),
            leases: LeaseStore::new(db),
            outbox: outbox.clone(),
            peers,
            llm: settings.ai.endpoint.clone().and_then(|endpoint| {
                LlmClient::new(endpoint, settings.ai.timeouts)
                    .map_err(
                        |error| tracing::error!(%error, "no LLM client: AI summaries will fail"),
                    )
                    .ok()
            }),
            settings: settings.clone(),
            holder: format!("report-{}", uuid::Uuid::new_v4()),
            wake: Arc::new(Notify::new()),
        };
        Self {
            repo,
            outbox,
            worker,
            settings,
        }
    }

    pub fn worker(&self) -> ReportWorker {
        self.worker.clone()
    }

    pub fn reconciler(&self) -> Reconciler {
        Reconciler {
            worker: self.worker.clone(),
        }
    }

    async fn create(
        &self,
        identity: Option<&Identity>,
        request: pb::CreateReportRequest,
    ) -> Result<pb::Report, ApiError> {
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let formats = validate_formats(&request.formats)?;
        let sections = validate_sections(&request.sections)?;
        let title = validate_title(&request.title)?;
        let tags = validate_tags(&request.timeline_tags)?;
        if formats.contains(&(pb::ReportFormat::Pdf as i32)) && self.settings.pdf_fonts.is_none() {
            return Err(ApiError::failed_precondition(
                "PDF_FONT_MISSING",
                "PDF reports need a TrueType font and none was found: set \
                 CASESCOPE_REPORT_PDF_FONT (e.g. fonts-dejavu-core's DejaVuSans.ttf), or ask for \
                 html, markdown or json",
            ));
        }
        if request.include_ai_summary
            && let Some(why) = self.settings.ai.refusal()
        {
            return Err(ApiError::failed_precondition("AI_NOT_AVAILABLE", why));
        }
        let found = match self.worker.peers.case(&case).await {
            Ok(found) => found,
            Err(error) if error.code == Some(Code::NotFound) => {
                return Err(ApiError::not_found(
                    "CASE_NOT_FOUND",
                    format!("case {case} not found"),
                ));
            }
            Err(error) if error.transient => {
                return Err(ApiError::Unavailable {
                    message: error.message,
                });
            }
            Err(error) => {
                return Err(ApiError::failed_precondition(
                    "CASE_UNREADABLE",
                    error.message,
                ));
            }
        };
        if found.state != casescope_proto::cases::v1::CaseState::Open as i32 {
            return Err(ApiError::failed_precondition(
                "CASE_NOT_OPEN",
                format!("case {case} is archived; restore it to report on its events"),
            ));
        }
        let now = casescope_db::now_micros();
        let (requested_by, requested_by_name) = match identity {
            Some(identity) => (identity.user_id.clone(), identity.username.clone()),
            None => (String::new(), String::new()),
        };
        let row = ReportRow {
            id: uuid::Uuid::now_v7().to_string(),
            case_id: case.clone(),
            status: status::QUEUED.into(),
            error: String::new(),
            title: if title.is_empty() { found.name } else { title },
            formats,
            sections,
            timeline_tags: tags,
            include_ai: request.include_ai_summary,
            ai_status: if request.include_ai_summary {
                ai::PENDING
            } else {
                ai::NOT_REQUESTED
            }
            .into(),
            ai_error: String::new(),
            ai_model: match (&self.settings.ai.endpoint, request.include_ai_summary) {
                (Some(endpoint), true) => endpoint.model.clone(),
                _ => String::new(),
            },
            requested_by,
            requested_by_name,
            attempts: 0,
            created_at: now,
            started_at: None,
            finished_at: None,
        };
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        let (held, active) = self.repo.counts(&mut tx, &case).await.map_err(db_error)?;
        if held >= self.settings.max_reports_per_case {
            return Err(ApiError::failed_precondition(
                "TOO_MANY_REPORTS",
                format!(
                    "case {case} holds {held} reports, the most allowed ({}); delete old ones first",
                    self.settings.max_reports_per_case
                ),
            ));
        }
        if active >= self.settings.max_active_per_case {
            return Err(ApiError::failed_precondition(
                "TOO_MANY_ACTIVE_REPORTS",
                format!(
                    "case {case} has {active} reports queued or being built, the most allowed \
                     ({}); wait for one to finish",
                    self.settings.max_active_per_case
                ),
            ));
        }
        self.repo.insert(&mut tx, &row).await.map_err(db_error)?;
        enqueue(&self.outbox, &mut tx, &case, &row.id, "created")
            .await
            .map_err(|e| ApiError::internal_logged("queue a report job", e))?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        self.outbox.nudge();
        Ok(to_pb(&row, &[]))
    }

    async fn find(
        &self,
        case: Option<&CaseId>,
        id: Option<&ReportId>,
    ) -> Result<ReportRow, ApiError> {
        let case = case_id(case, "case_id")?;
        let id = uuid_id(
            id.map(|id| id.value.as_str()).unwrap_or_default(),
            "REPORT_ID_INVALID",
            "id",
        )?;
        self.repo
            .get(&case, &id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "REPORT_NOT_FOUND",
                    format!("report {id} not found in case {case}"),
                )
            })
    }

    async fn list(
        &self,
        request: pb::ListReportsRequest,
    ) -> Result<pb::ListReportsResponse, ApiError> {
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let after = match &page.cursor {
            Some(cursor) => {
                let (at, id) = cursor
                    .split_once(':')
                    .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
                    .ok_or_else(|| {
                        ApiError::invalid_field(
                            "CURSOR_INVALID",
                            "page.cursor",
                            "not a cursor of this list; pass next_cursor unchanged",
                        )
                    })?;
                Some((at, id))
            }
            None => None,
        };
        let wanted = match pb::ReportStatus::try_from(request.status) {
            Ok(pb::ReportStatus::Unspecified) => None,
            Ok(pb::ReportStatus::Queued) => Some(status::QUEUED),
            Ok(pb::ReportStatus::Running) => Some(status::RUNNING),
            Ok(pb::ReportStatus::Ready) => Some(status::READY),
            Ok(pb::ReportStatus::Failed) => Some(status::FAILED),
            Err(_) => {
                return Err(ApiError::invalid_field(
                    "STATUS_INVALID",
                    "status",
                    format!("{} is not a report status", request.status),
                ));
            }
        };
        let limit = i64::from(page.size);
        let mut rows = self
            .repo
            .list(
                &case,
                wanted,
                after.as_ref().map(|(at, id)| (*at, id.as_str())),
                limit + 1,
            )
            .await
            .map_err(db_error)?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(page.size as usize);
            rows.last()
                .map(|r| format!("{}:{}", r.created_at, r.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let artefacts = self.repo.artefacts_of(&ids).await.map_err(db_error)?;
        let reports = rows
            .iter()
            .map(|row| to_pb(row, artefacts.get(&row.id).map_or(&[][..], Vec::as_slice)))
            .collect();
        Ok(pb::ListReportsResponse {
            reports,
            page: Some(PageResponse { next_cursor: next }),
        })
    }

    async fn download(&self, request: pb::DownloadReportRequest) -> Result<ChunkStream, ApiError> {
        let row = self
            .find(request.case_id.as_ref(), request.id.as_ref())
            .await?;
        if row.status != status::READY {
            return Err(ApiError::failed_precondition(
                "REPORT_NOT_READY",
                format!("report {} is {}, not ready", row.id, row.status),
            ));
        }
        let artefacts = self.repo.artefacts(&row.id).await.map_err(db_error)?;
        let artefact = match pb::ReportFormat::try_from(request.format) {
            Ok(pb::ReportFormat::Unspecified) if artefacts.len() == 1 => artefacts[0].clone(),
            Ok(pb::ReportFormat::Unspecified) => {
                return Err(ApiError::invalid_field(
                    "FORMAT_REQUIRED",
                    "format",
                    "the report has several formats; name the one to download",
                ));
            }
            Ok(format) => artefacts
                .iter()
                .find(|a| a.format == format as i32)
                .cloned()
                .ok_or_else(|| {
                    ApiError::not_found(
                        "ARTEFACT_NOT_FOUND",
                        format!("report {} has no {} artefact", row.id, format.as_str_name()),
                    )
                })?,
            Err(_) => {
                return Err(ApiError::invalid_field(
                    "FORMAT_INVALID",
                    "format",
                    format!("{} is not a report format", request.format),
                ));
            }
        };
        let size = u64::try_from(artefact.size_bytes).unwrap_or(0);
        if request.offset > size {
            return Err(ApiError::InvalidArgument {
                reason: "OFFSET_OUT_OF_RANGE",
                message: format!(
                    "offset {} is beyond the artefact's {size} bytes",
                    request.offset
                ),
                violations: vec![("offset".into(), format!("at most {size}"))],
            });
        }
        let repo = self.repo.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let offset = request.offset;
        tokio::spawn(async move {
            let chunk = CHUNK_BYTES as u64;
            let mut seq = (offset / chunk) as i64;
            let mut skip = (offset % chunk) as usize;
            while seq < artefact.chunks {
                let data = match repo.chunk(&row.id, artefact.format, seq).await {
                    Ok(Some(data)) => data,
                    Ok(None) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "chunk {seq} of report {} is missing (was it deleted meanwhile?)",
                                row.id
                            ))))
                            .await;
                        return;
                    }
                    Err(error) => {
                        let _ = tx.send(Err(db_error(error).into())).await;
                        return;
                    }
                };
                let start = (seq as u64) * chunk + skip as u64;
                let data = data.get(skip..).unwrap_or_default().to_vec();
                skip = 0;
                seq += 1;
                if tx
                    .send(Ok(pb::ReportChunk {
                        offset: start,
                        data,
                    }))
                    .await
                    .is_err()
                {
                    return; // the client went away
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

fn validate_formats(formats: &[i32]) -> Result<Vec<i32>, ApiError> {
    if formats.is_empty() {
        return Err(ApiError::invalid_field(
            "FORMAT_REQUIRED",
            "formats",
            "name at least one format (html, markdown, json, pdf)",
        ));
    }
    let mut seen = Vec::new();
    for (i, format) in formats.iter().enumerate() {
        match pb::ReportFormat::try_from(*format) {
            Ok(pb::ReportFormat::Unspecified) | Err(_) => {
                return Err(ApiError::invalid_field(
                    "FORMAT_INVALID",
                    format!("formats[{i}]"),
                    format!("{format} is not a report format (html, markdown, json, pdf)"),
                ));
            }
            Ok(_) if seen.contains(format) => {
                return Err(ApiError::invalid_field(
                    "FORMAT_DUPLICATE",
                    format!("formats[{i}]"),
                    "this format is already asked for",
                ));
            }
            Ok(_) => seen.push(*format),
        }
    }
    Ok(seen)
}

fn validate_sections(sections: &[i32]) -> Result<Vec<i32>, ApiError> {
    if sections.is_empty() {
        return Ok((1..=7).collect());
    }
    let mut seen = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        match pb::ReportSection::try_from(*section) {
            Ok(pb::ReportSection::Unspecified) | Err(_) => {
                return Err(ApiError::invalid_field(
                    "SECTION_INVALID",
                    format!("sections[{i}]"),
                    format!("{section} is not a report section"),
                ));
            }
            Ok(_) if seen.contains(section) => {
                return Err(ApiError::invalid_field(
                    "SECTION_DUPLICATE",
                    format!("sections[{i}]"),
                    "this section is already asked for",
                ));
            }
            Ok(_) => seen.push(*section),
        }
    }
    Ok(seen)
}

fn validate_title(title: &str) -> Result<String, ApiError> {
    let title = title.trim();
    let length = title.chars().count();
    if length > MAX_TITLE_CHARS {
        return Err(ApiError::invalid_field(
            "TITLE_TOO_LONG",
            "title",
            format!("at most {MAX_TITLE_CHARS} characters (this one has {length})"),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "TITLE_INVALID",
            "title",
            "a title cannot hold control characters (line breaks, tabs, …)",
        ));
    }
    Ok(title.to_string())
}

fn validate_tags(tags: &[String]) -> Result<Vec<String>, ApiError> {
    if tags.len() > MAX_TIMELINE_TAGS {
        return Err(ApiError::invalid_field(
            "TOO_MANY_TAGS",
            "timeline_tags",
            format!(
                "at most {MAX_TIMELINE_TAGS} tags (this request has {})",
                tags.len()
            ),
        ));
    }
    let mut normal = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        let tag = casescope_query::normalise_tag(tag).map_err(|why| {
            ApiError::invalid_field("TAG_INVALID", format!("timeline_tags[{i}]"), why)
        })?;
        if !normal.contains(&tag) {
            normal.push(tag);
        }
    }
    Ok(normal)
}

fn to_pb(row: &ReportRow, artefacts: &[ArtefactRow]) -> pb::Report {
    let status = match row.status.as_str() {
        status::QUEUED => pb::ReportStatus::Queued,
        status::RUNNING => pb::ReportStatus::Running,
        status::READY => pb::ReportStatus::Ready,
        status::FAILED => pb::ReportStatus::Failed,
        _ => pb::ReportStatus::Unspecified,
    };
    let ai_status = match row.ai_status.as_str() {
        ai::NOT_REQUESTED => pb::AiSummaryStatus::NotRequested,
        ai::PENDING => pb::AiSummaryStatus::Pending,
        ai::INCLUDED => pb::AiSummaryStatus::Included,
        ai::FAILED => pb::AiSummaryStatus::Failed,
        _ => pb::AiSummaryStatus::Unspecified,
    };
    pb::Report {
        id: Some(ReportId {
            value: row.id.clone(),
        }),
        case_id: Some(CaseId {
            value: row.case_id.clone(),
        }),
        status: status as i32,
        // A queued report shows why its last attempt failed (it is retried).
        error: row.error.clone(),
        title: row.title.clone(),
        formats: row.formats.clone(),
        sections: row.sections.clone(),
        include_ai_summary: row.include_ai,
        ai_summary_status: ai_status as i32,
        ai_summary_error: row.ai_error.clone(),
        ai_model: row.ai_model.clone(),
        artefacts: artefacts
            .iter()
            .map(|a| pb::Artefact {
                format: a.format,
                file_name: a.file_name.clone(),
                content_type: a.content_type.clone(),
                size_bytes: u64::try_from(a.size_bytes).unwrap_or(0),
                sha256: a.sha256.clone(),
            })
            .collect(),
        requested_by: (!row.requested_by.is_empty()).then(|| UserId {
            value: row.requested_by.clone(),
        }),
        created_at: Some(micros_to_timestamp(row.created_at)),
        started_at: row.started_at.map(micros_to_timestamp),
        finished_at: row.finished_at.map(micros_to_timestamp),
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        timeline_tags: row.timeline_tags.clone(),
    }
}

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn create_report(
        &self,
        request: Request<pb::CreateReportRequest>,
    ) -> ApiResult<pb::Report> {
        let identity = Identity::of(&request).cloned();
        Ok(Response::new(
            self.create(identity.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn get_report(&self, request: Request<pb::GetReportRequest>) -> ApiResult<pb::Report> {
        let request = request.into_inner();
        let row = self
            .find(request.case_id.as_ref(), request.id.as_ref())
            .await?;
        let artefacts = self.repo.artefacts(&row.id).await.map_err(db_error)?;
        Ok(Response::new(to_pb(&row, &artefacts)))
    }

    async fn list_reports(
        &self,
        request: Request<pb::ListReportsRequest>,
    ) -> ApiResult<pb::ListReportsResponse> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    type DownloadReportStream = ChunkStream;

    async fn download_report(
        &self,
        request: Request<pb::DownloadReportRequest>,
    ) -> ApiResult<Self::DownloadReportStream> {
        Ok(Response::new(self.download(request.into_inner()).await?))
    }

    async fn delete_report(
        &self,
        request: Request<pb::DeleteReportRequest>,
    ) -> ApiResult<pb::DeleteReportResponse> {
        let request = request.into_inner();
        let row = self
            .find(request.case_id.as_ref(), request.id.as_ref())
            .await?;
        if !self
            .repo
            .delete(&row.case_id, &row.id)
            .await
            .map_err(db_error)?
        {
            return Err(Status::new(
                Code::NotFound,
                format!("report {} not found", row.id),
            ));
        }
        tracing::info!(report_id = %row.id, case_id = %row.case_id, status = %row.status, "report deleted");
        Ok(Response::new(pb::DeleteReportResponse {}))
    }
}
