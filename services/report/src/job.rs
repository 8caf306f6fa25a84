//! The report job: one attempt under the report's lease builds every requested format
//! in one pass over the case (docs/reports.md).

use crate::ai::client::LlmClient;
use crate::artefact::{ArtefactWriter, WriteError, describe, fenced_tx};
use crate::model::*;
use crate::peers::{PeerError, Peers, enum_word};
use crate::render::{JsonWriter, Part, PdfWriter, Renderer};
use crate::repo::{ReportRepo, ReportRow, ai, status};
use crate::{ReportSettings, STAGE};
use casescope_bus::{Handler, HandlerError, OutboundMessage, Outbox, ReceivedMessage, subjects};
use casescope_db::{KeepAlive, Lease, LeaseKey, LeaseStore, Tx};
use casescope_proto::bus::v1::{FactHeader, ReportArtefactInfo, ReportFact, ReportJob};
use casescope_proto::report::v1::{ReportFormat, ReportSection};
use casescope_proto::time::micros_to_rfc3339;
use std::sync::Arc;
use tokio::sync::Notify;

fn transient(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::transient(error)
}

mod summary;
mod timeline;

/// What the sections share, fetched once per report.
#[derive(Default)]
pub(crate) struct Gathered {
    detections: Option<Detections>,
    iocs: Option<IocMatches>,
    /// The case's files (the files section shows them all; the overview sums them).
    files: Option<Vec<FileEntry>>,
}

/// What `build` made: the artefacts, and the AI summary when asked for.
struct Built {
    artefacts: Vec<(ReportFormat, u64, String)>,
    summary: Option<AiSummary>,
}

/// The durable consumer of report jobs (`casescope.v1.jobs.report`).
pub const REPORT_CONSUMER: &str = "report-workers";

/// Why an attempt stopped.
#[derive(Debug)]
pub(crate) enum BuildError {
    /// Another attempt may succeed (a peer was down or slow, the database hiccuped).
    Transient(String),
    /// No attempt can succeed (the case is gone, an artefact is too large).
    Permanent(String),
    /// The lease was lost or the report deleted: stop, write nothing more.
    Stopped,
}

impl From<PeerError> for BuildError {
    fn from(error: PeerError) -> Self {
        if error.transient {
            BuildError::Transient(error.message)
        } else {
            BuildError::Permanent(error.message)
        }
    }
}

impl From<WriteError> for BuildError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Fenced | WriteError::Cancelled => BuildError::Stopped,
            WriteError::TooLarge(why) => BuildError::Permanent(why),
            WriteError::Db(why) => BuildError::Transient(format!("report database: {why}")),
        }
    }
}

/// The section key used by the templates and the JSON format.
pub(crate) fn section_key(section: ReportSection) -> &'static str {
    match section {
        ReportSection::Overview => "overview",
        ReportSection::Files => "files",
        ReportSection::DetectionsByRule => "detections_by_rule",
        ReportSection::DetectionsByTechnique => "detections_by_technique",
        ReportSection::IocMatches => "ioc_matches",
        ReportSection::TaggedTimeline => "timeline",
        ReportSection::Notes => "notes",
        ReportSection::Unspecified => "unspecified",
    }
}

/// Queues the job signal of `report_id` in `tx` (published by the outbox after commit).
pub async fn enqueue(
    outbox: &Outbox,
    tx: &mut Tx<'_>,
    case_id: &str,
    report_id: &str,
    reason: &str,
) -> Result<(), String> {
    let job = ReportJob {
        case_id: case_id.to_string(),
        report_id: report_id.to_string(),
        reason: reason.to_string(),
    };
    let message = OutboundMessage::json(
        subjects::job(STAGE),
        format!("{report_id}:{STAGE}:{reason}"),
        &job,
    )
    .map_err(|e| e.to_string())?;
    outbox
        .enqueue(tx, &message)
        .await
        .map_err(|e| e.to_string())
}

/// Runs report jobs.
#[derive(Clone)]
pub struct ReportWorker {
    pub(crate) repo: ReportRepo,
    pub(crate) leases: LeaseStore,
    pub(crate) outbox: Outbox,
    pub(crate) peers: Peers,
    pub(crate) settings: ReportSettings,
    /// The LLM client (when an endpoint is configured).
    pub(crate) llm: Option<LlmClient>,
    pub(crate) holder: String,
    /// Wakes the reconciler after a failed attempt.
    pub(crate) wake: Arc<Notify>,
}

/// The formats being written, each with its renderer.
struct Outputs {
    list: Vec<(Renderer, ArtefactWriter)>,
}

impl ReportWorker {
    /// One attempt at `report_id` if it is not finished and no one else works on it.
    pub async fn run(&self, report_id: &str) -> Result<(), HandlerError> {
        let Some(row) = self.repo.by_id(report_id).await.map_err(transient)? else {
            return Ok(()); // deleted
        };
        if row.is_finished() {
            return Ok(());
        }
        let key = LeaseKey::new(report_id, STAGE);
        let Some(lease) = self
            .leases
            .acquire(&key, &self.holder, self.settings.lease_ttl)
            .await
            .map_err(transient)?
        else {
            tracing::debug!(report_id, "report is being built by another worker");
            return Ok(());
        };
        let outcome = self.attempt(row, &lease).await;
        if let Err(error) = self.leases.release(&lease).await {
            tracing::warn!(%error, report_id, "cannot release the report lease; it expires by itself");
        }
        self.outbox.nudge();
        outcome
    }

    async fn attempt(&self, row: ReportRow, lease: &Lease) -> Result<(), HandlerError> {
        if row.attempts >= self.settings.max_attempts {
            let why = if row.error.is_empty() {
                format!("gave up after {} attempts", row.attempts)
            } else {
                format!("gave up after {} attempts: {}", row.attempts, row.error)
            };
            return self.finish_failed(&row, lease, &why).await;
        }
        // Start: RUNNING, one more attempt, nothing left of an earlier one.
        let now = casescope_db::now_micros();
        match fenced_tx(&self.leases, lease, &row.id).await {
            Ok(mut tx) => {
                sqlx::query(
                    "UPDATE reports SET status = $2, attempts = attempts + 1, started_at = $3, \
                     updated_at = $3 WHERE id = $1",
                )
                .bind(&row.id)
                .bind(status::RUNNING)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(transient)?;
                ReportRepo::drop_output(&mut tx, &row.id)
                    .await
                    .map_err(transient)?;
                tx.commit().await.map_err(transient)?;
            }
            Err(WriteError::Db(why)) => return Err(transient(why)),
            Err(_) => return Ok(()),
        }
        let keep = self
            .leases
            .keep_alive(lease, self.settings.lease_ttl, || {});
        let started = std::time::Instant::now();
        match self.build(&row, lease, &keep).await {
            Ok(built) => {
                self.finish_ready(&row, lease, built).await?;
                tracing::info!(report_id = %row.id, case_id = %row.case_id, seconds = started.elapsed().as_secs_f64(), "report ready");
                Ok(())
            }
            Err(BuildError::Stopped) => {
                tracing::info!(report_id = %row.id, "report job stopped (deleted, or taken over)");
                Ok(())
            }
            Err(BuildError::Permanent(why)) => self.finish_failed(&row, lease, &why).await,
            Err(BuildError::Transient(why)) => {
                tracing::warn!(report_id = %row.id, error = %why, "report attempt failed; it will be retried");
                if let Ok(mut tx) = fenced_tx(&self.leases, lease, &row.id).await {
                    let _ = sqlx::query(
                        "UPDATE reports SET status = $2, error = $3, updated_at = $4 WHERE id = $1",
                    )
                    .bind(&row.id)
                    .bind(status::QUEUED)
                    .bind(&why)
                    .bind(casescope_db::now_micros())
                    .execute(&mut *tx)
                    .await;
                    let _ = tx.commit().await;
                }
                self.wake.notify_one();
                Ok(())
            }
        }
    }

    fn fact(
        &self,
        row: &ReportRow,
        kind: &str,
        error: &str,
        artefacts: Vec<ReportArtefactInfo>,
        ai_summary: &str,
    ) -> Result<OutboundMessage, String> {
        let fact = ReportFact {
            header: Some(FactHeader {
                fact_id: format!("{kind}:{}", row.id),
                kind: kind.to_string(),
                case_id: row.case_id.clone(),
                occurred_at: micros_to_rfc3339(casescope_db::now_micros()),
                producer: "report".into(),
            }),
            report_id: row.id.clone(),
            title: row.title.clone(),
            requested_by: row.requested_by.clone(),
            error: error.to_string(),
            artefacts,
            ai_summary: ai_summary.to_string(),
        };
        OutboundMessage::json(
            subjects::report_facts(&row.case_id),
            format!("{kind}:{}", row.id),
            &fact,
        )
        .map_err(|e| e.to_string())
    }

    async fn finish_ready(
        &self,
        row: &ReportRow,
        lease: &Lease,
        built: Built,
    ) -> Result<(), HandlerError> {
        let info = built
            .artefacts
            .iter()
            .map(|(format, size, sha256)| ReportArtefactInfo {
                format: describe(*format).0.to_string(),
                size_bytes: *size,
                sha256: sha256.clone(),
            })
            .collect();
        let ai = match &built.summary {
            Some(summary) => (
                summary.status.as_str(),
                summary.error.as_str(),
                summary.model.as_str(),
            ),
            None => (ai::NOT_REQUESTED, "", ""),
        };
        let message = self
            .fact(row, "report.ready", "", info, ai.0)
            .map_err(transient)?;
        self.finish(row, lease, status::READY, "", ai, message)
            .await
    }

    async fn finish_failed(
        &self,
        row: &ReportRow,
        lease: &Lease,
        why: &str,
    ) -> Result<(), HandlerError> {
        tracing::warn!(report_id = %row.id, case_id = %row.case_id, error = why, "report failed");
        let ai = if row.include_ai {
            (ai::FAILED, "the report failed", row.ai_model.as_str())
        } else {
            (ai::NOT_REQUESTED, "", "")
        };
        let message = self
            .fact(row, "report.failed", why, Vec::new(), ai.0)
            .map_err(transient)?;
        self.finish(row, lease, status::FAILED, why, ai, message)
            .await
    }

    /// Records how the job ended (a failed one without its output) and queues its fact,
    /// in one transaction fenced by the lease.
    async fn finish(
        &self,
        row: &ReportRow,
        lease: &Lease,
        end: &str,
        why: &str,
        (ai_status, ai_error, ai_model): (&str, &str, &str),
        message: OutboundMessage,
    ) -> Result<(), HandlerError> {
        let mut tx = match fenced_tx(&self.leases, lease, &row.id).await {
            Ok(tx) => tx,
            Err(WriteError::Db(why)) => return Err(transient(why)),
            Err(_) => return Ok(()),
        };
        let now = casescope_db::now_micros();
        sqlx::query(
            "UPDATE reports SET status = $2, error = $3, ai_status = $4, ai_error = $5, \
             ai_model = $6, finished_at = $7, updated_at = $7 WHERE id = $1",
        )
        .bind(&row.id)
        .bind(end)
        .bind(why)
        .bind(ai_status)
        .bind(ai_error)
        .bind(ai_model)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(transient)?;
        if end == status::FAILED {
            ReportRepo::drop_output(&mut tx, &row.id)
                .await
                .map_err(transient)?;
        }
        self.outbox
            .enqueue(&mut tx, &message)
            .await
            .map_err(transient)?;
        tx.commit().await.map_err(transient)?;
        Ok(())
    }

    /// Renders `parts` into every format (on the blocking pool) and stores what filled
    /// whole chunks.
    async fn emit(
        &self,
        outputs: &mut Outputs,
        parts: Vec<Part>,
        lease: &Lease,
        keep: &KeepAlive,
        report_id: &str,
    ) -> Result<(), BuildError> {
        if keep.is_lost() {
            return Err(BuildError::Stopped);
        }
        let mut list = std::mem::take(&mut outputs.list);
        let (list, rendered) = tokio::task::spawn_blocking(move || {
            let mut result = Ok(());
            for (renderer, writer) in list.iter_mut() {
                if let Err(why) = renderer.render(&parts, &mut writer.pending) {
                    result = Err(why);
                    break;
                }
            }
            (list, result)
        })
        .await
        .map_err(|e| BuildError::Transient(format!("rendering stopped: {e}")))?;
        outputs.list = list;
        rendered.map_err(BuildError::Permanent)?;
        for (_, writer) in outputs.list.iter_mut() {
            writer.flush(&self.leases, lease, report_id).await?;
        }
        Ok(())
    }

    async fn build(
        &self,
        row: &ReportRow,
        lease: &Lease,
        keep: &KeepAlive,
    ) -> Result<Built, BuildError> {
        let case = self.peers.case(&row.case_id).await?;
        let mut gathered = Gathered::default();
        let sections: Vec<ReportSection> = row
            .sections
            .iter()
            .filter_map(|s| ReportSection::try_from(*s).ok())
            .collect();
        let state = casescope_proto::cases::v1::CaseState::try_from(case.state)
            .map(|s| enum_word(s.as_str_name(), "CASE_STATE_"))
            .unwrap_or_default();
        let (members, members_unavailable) = match self.peers.members(&row.case_id).await {
            Ok(found) => found,
            Err(error) if error.transient => return Err(error.into()),
            Err(error) => (Vec::new(), error.message),
        };
        let meta = Box::new(Meta {
            id: row.id.clone(),
            title: row.title.clone(),
            case_id: row.case_id.clone(),
            case_name: case.name.clone(),
            case_description: case.description.clone(),
            case_state: state,
            case_created_at: case
                .created_at
                .as_ref()
                .map(|ts| micros_to_rfc3339(casescope_proto::time::timestamp_to_micros(ts)))
                .unwrap_or_default(),
            generated_at: micros_to_rfc3339(casescope_db::now_micros()),
            requested_by: row.requested_by_name.clone(),
            members,
            members_unavailable,
            sections: sections.iter().map(|s| section_key(*s)).collect(),
            timeline_tags: row.timeline_tags.clone(),
            version: env!("CARGO_PKG_VERSION"),
        });
        let mut outputs = Outputs {
            list: row
                .formats
                .iter()
                .filter_map(|f| ReportFormat::try_from(*f).ok())
                .map(|format| {
                    let renderer = match (format, &self.settings.pdf_fonts) {
                        (ReportFormat::Markdown, _) => {
                            Renderer::Markdown(self.settings.templates.clone())
                        }
                        (ReportFormat::Json, _) => Renderer::Json(JsonWriter::default()),
                        (ReportFormat::Pdf, Some(fonts)) => {
                            Renderer::Pdf(Box::new(PdfWriter::new(fonts.clone())))
                        }
                        (ReportFormat::Pdf, None) => {
                            return Err(BuildError::Permanent(
                                "PDF reports need a font: set CASESCOPE_REPORT_PDF_FONT".into(),
                            ));
                        }
                        _ => Renderer::Html(self.settings.templates.clone()),
                    };
                    Ok((
                        renderer,
                        ArtefactWriter::new(format, self.settings.max_artefact_bytes),
                    ))
                })
                .collect::<Result<_, _>>()?,
        };
        let id = row.id.as_str();
        self.emit(
            &mut outputs,
            vec![Part::Begin(meta.clone())],
            lease,
            keep,
            id,
        )
        .await?;
        let query = timeline::selection(row);
        let summary = if row.include_ai {
            let summary = self
                .ai_summary(row, &query, &case.name, &mut gathered, keep)
                .await?;
            self.emit(
                &mut outputs,
                vec![Part::AiSummary(Box::new(summary.clone()))],
                lease,
                keep,
                id,
            )
            .await?;
            Some(summary)
        } else {
            None
        };
        for section in sections {
            let parts = match section {
                ReportSection::Overview => {
                    vec![Part::Overview(
                        meta.clone(),
                        Box::new(self.overview(row, &query, &mut gathered).await?),
                    )]
                }
                ReportSection::Files => {
                    self.emit(&mut outputs, vec![Part::FilesBegin], lease, keep, id)
                        .await?;
                    let files = self.gathered_files(row, &mut gathered).await?;
                    let mut batch: Vec<Part> = files
                        .iter()
                        .map(|file| Part::File(Box::new(file.clone())))
                        .collect();
                    batch.push(Part::FilesEnd(files.len() as u64));
                    batch
                }
                ReportSection::DetectionsByRule => {
                    vec![Part::DetectionsByRule(Box::new(
                        self.gathered_detections(row, &mut gathered).await?.clone(),
                    ))]
                }
                ReportSection::DetectionsByTechnique => {
                    vec![Part::DetectionsByTechnique(Box::new(
                        self.gathered_detections(row, &mut gathered).await?.clone(),
                    ))]
                }
                ReportSection::IocMatches => {
                    vec![Part::IocMatches(Box::new(
                        self.gathered_iocs(row, &mut gathered).await?.clone(),
                    ))]
                }
                ReportSection::TaggedTimeline => {
                    self.timeline(row, &query, &mut outputs, lease, keep)
                        .await?;
                    Vec::new()
                }
                ReportSection::Notes => vec![Part::Notes(Box::new(self.notes(row).await?))],
                ReportSection::Unspecified => Vec::new(),
            };
            if !parts.is_empty() {
                self.emit(&mut outputs, parts, lease, keep, id).await?;
            }
        }
        self.emit(&mut outputs, vec![Part::End(meta)], lease, keep, id)
            .await?;
        let mut artefacts = Vec::new();
        for (_, writer) in outputs.list {
            let format = writer.format;
            let (size, sha256) = writer.finish(&self.leases, lease, id).await?;
            artefacts.push((format, size, sha256));
        }
        Ok(Built { artefacts, summary })
    }

    /// The case's detection counts (asked once per report).
    async fn gathered_detections<'a>(
        &self,
        row: &ReportRow,
        gathered: &'a mut Gathered,
    ) -> Result<&'a Detections, BuildError> {
        let found = match gathered.detections.take() {
            Some(found) => found,
            None => self.peers.detections(&row.case_id).await?,
        };
        Ok(gathered.detections.insert(found))
    }

    /// The case's files (paged once per report).
    async fn gathered_files<'a>(
        &self,
        row: &ReportRow,
        gathered: &'a mut Gathered,
    ) -> Result<&'a [FileEntry], BuildError> {
        let found = match gathered.files.take() {
            Some(found) => found,
            None => {
                let mut files = Vec::new();
                self.peers
                    .files(&row.case_id, |file| files.push(file))
                    .await?;
                files
            }
        };
        Ok(gathered.files.insert(found))
    }

    /// The case's IOC match counts (asked once per report).
    async fn gathered_iocs<'a>(
        &self,
        row: &ReportRow,
        gathered: &'a mut Gathered,
    ) -> Result<&'a IocMatches, BuildError> {
        let found = match gathered.iocs.take() {
            Some(found) => found,
            None => self.peers.ioc_matches(&row.case_id).await?,
        };
        Ok(gathered.iocs.insert(found))
    }

    async fn overview(
        &self,
        row: &ReportRow,
        query: &casescope_proto::cases::v1::TimelineQuery,
        gathered: &mut Gathered,
    ) -> Result<Overview, BuildError> {
        let mut overview = Overview::default();
        for file in self.gathered_files(row, gathered).await? {
            overview.files += 1;
            overview.files_failed += u64::from(file.status == "failed");
            overview.bytes += file.size_bytes;
            overview.records_read += file.records_read;
            overview.events_indexed += file.events_indexed;
            overview.records_rejected += file.records_rejected;
            overview.duplicates_skipped += file.duplicates_skipped;
        }
        overview.first_event = self.peers.event_bound(&row.case_id, false).await?;
        overview.last_event = self.peers.event_bound(&row.case_id, true).await?;
        let detections = self.gathered_detections(row, gathered).await?;
        overview.detections = detections
            .unavailable
            .is_empty()
            .then_some(detections.total);
        let matches = self.gathered_iocs(row, gathered).await?;
        overview.ioc_matches = matches.unavailable.is_empty().then_some(matches.total);
        overview.tagged_events = Some(self.peers.count_selection(&row.case_id, query).await?);
        Ok(overview)
    }

    async fn notes(&self, row: &ReportRow) -> Result<Notes, BuildError> {
        let notes = self.peers.notes(&row.case_id).await?;
        Ok(Notes {
            unavailable: String::new(),
            text: notes.body,
            version: notes.version,
            updated_at: notes
                .updated_at
                .as_ref()
                .map(|ts| micros_to_rfc3339(casescope_proto::time::timestamp_to_micros(ts)))
                .unwrap_or_default(),
        })
    }
}

#[async_trait::async_trait]
impl Handler for ReportWorker {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let job: ReportJob = serde_json::from_slice(&message.payload)
            .map_err(|error| HandlerError::Poison(format!("not a report job: {error}")))?;
        if job.report_id.is_empty() {
            return Err(HandlerError::Poison("a report job needs report_id".into()));
        }
        self.run(&job.report_id).await
    }
}
