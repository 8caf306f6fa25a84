//! The ingest stage: one run parses one evidence file and indexes its events, under the
//! file's lease. Every state change is written in a lease-fenced transaction; store
//! writes are fenced in-process by the lease epoch (tantivy has a single writer per
//! process; OpenSearch writes are idempotent by event id). The file is "indexed" only if
//! the store holds exactly the events parsed; otherwise it is failed with the gap.

use crate::cases_client::{CasesClient, file_id};
use crate::repo::{FileRow, IngestRepo, stage};
use crate::{IngestSettings, STAGE};
use casescope_bus::{Handler, HandlerError, OutboundMessage, Outbox, ReceivedMessage, subjects};
use casescope_db::{DbError, Lease, LeaseError, LeaseKey, LeaseStore, Tx};
use casescope_eventstore::{Event, EventStore};
use casescope_evidence::{Context, Format, Outcome, parse_file};
use casescope_proto::bus::v1::StageJob;
use casescope_proto::cases::v1::{RegisterFileRequest, RejectCount, UpdateFileStatusRequest};
use casescope_proto::common::v1::{CaseId, FileStatus, Stage, UserId};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Mutex, mpsc};

/// A progress line is logged every this many events.
const PROGRESS_EVERY: u64 = 50_000;

/// The durable consumer name of ingest workers.
pub const INGEST_CONSUMER: &str = "ingest-workers";

/// Queues the ingest job of `file` in `tx` (published by the outbox after commit).
pub async fn enqueue_job(
    outbox: &Outbox,
    tx: &mut Tx<'_>,
    file: &FileRow,
    reason: &str,
    attempt_tag: Option<&str>,
) -> Result<(), String> {
    let job = StageJob {
        case_id: file.case_id.clone(),
        file_id: file.id.clone(),
        stage: STAGE.into(),
        generation: file.generation,
        reason: reason.into(),
    };
    let mut id = format!("{}:{STAGE}:{}", file.id, file.generation);
    if let Some(tag) = attempt_tag {
        id.push(':');
        id.push_str(tag);
    }
    let message =
        OutboundMessage::json(subjects::job(STAGE), id, &job).map_err(|e| e.to_string())?;
    outbox
        .enqueue(tx, &message)
        .await
        .map_err(|e| e.to_string())
}

/// Publishes, in `tx`, that a file's events are in the store (`file.indexed`) or left
/// it (`file.archived`) at its generation: the downstream stages (detect, ioc) start
/// from this fact with their own durable consumers.
pub(crate) async fn publish_indexed_fact(
    outbox: &Outbox,
    tx: &mut Tx<'_>,
    file: &FileRow,
    kind: &str,
) -> Result<(), String> {
    let fact_id = format!("{kind}:{}:{}", file.id, file.generation);
    let fact = casescope_proto::bus::v1::FileIndexedFact {
        header: Some(casescope_proto::bus::v1::FactHeader {
            fact_id: fact_id.clone(),
            kind: kind.into(),
            case_id: file.case_id.clone(),
            occurred_at: casescope_proto::time::micros_to_rfc3339(casescope_db::now_micros()),
            producer: "ingest".into(),
        }),
        file_id: file.id.clone(),
        generation: file.generation,
        events_indexed: u64::try_from(file.events_indexed).unwrap_or_default(),
    };
    let message = OutboundMessage::json(subjects::file_facts(&file.case_id), fact_id, &fact)
        .map_err(|e| e.to_string())?;
    outbox
        .enqueue(tx, &message)
        .await
        .map_err(|e| e.to_string())
}

fn wire_status(file: &FileRow) -> (FileStatus, Stage) {
    match file.stage_status.as_str() {
        stage::RUNNING => (FileStatus::Parsing, Stage::Unspecified),
        stage::DONE => (FileStatus::Indexed, Stage::Unspecified),
        stage::FAILED => (FileStatus::Failed, Stage::Ingest),
        stage::CONTAINER => (FileStatus::Ready, Stage::Unspecified),
        stage::ARCHIVED => (FileStatus::Archived, Stage::Unspecified),
        _ => (FileStatus::Uploaded, Stage::Unspecified),
    }
}

/// Delivers the file's registration and current status to the cases service; on
/// failure the row stays unsynced and the reconciler retries.
pub fn sync_status<'a>(
    repo: &'a IngestRepo,
    cases: &'a CasesClient,
    file: &'a FileRow,
) -> futures::future::BoxFuture<'a, ()> {
    Box::pin(sync_status_inner(repo, cases, file))
}

async fn sync_status_inner(repo: &IngestRepo, cases: &CasesClient, file: &FileRow) {
    if !file.registered {
        let registered = cases
            .register_file(RegisterFileRequest {
                case_id: Some(CaseId {
                    value: file.case_id.clone(),
                }),
                file_id: file_id(&file.id),
                name: file.name.clone(),
                sha256: file.sha256.clone(),
                size_bytes: u64::try_from(file.size_bytes).unwrap_or_default(),
                format: file.format.clone(),
                parent_archive_id: file.parent_id.as_deref().and_then(file_id),
                uploaded_by: (!file.uploaded_by.is_empty()).then(|| UserId {
                    value: file.uploaded_by.clone(),
                }),
                uploaded_by_name: file.uploaded_by_name.clone(),
            })
            .await;
        match registered {
            Ok(_) => {
                if let Err(error) = repo.mark_registered(&file.id).await {
                    tracing::warn!(%error, file_id = %file.id, "cannot record the registration");
                }
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), file_id = %file.id, "cannot register the file with the cases service; will retry");
                return;
            }
        }
    }
    let (status, failed_stage) = wire_status(file);
    let rejects: BTreeMap<String, u64> =
        serde_json::from_str(&file.rejects_by_reason).unwrap_or_default();
    let count = |n: i64| u64::try_from(n).unwrap_or_default();
    let update = UpdateFileStatusRequest {
        case_id: Some(CaseId {
            value: file.case_id.clone(),
        }),
        file_id: file_id(&file.id),
        status: status as i32,
        failed_stage: failed_stage as i32,
        error: file.error.clone().unwrap_or_default(),
        records_read: count(file.records_read),
        events_indexed: count(file.events_indexed),
        records_rejected: count(file.records_rejected),
        duplicates_skipped: count(file.duplicates_skipped),
        generation: file.generation,
        rejects_by_reason: rejects
            .into_iter()
            .map(|(reason, count)| RejectCount { reason, count })
            .collect(),
        // Registration is sequence 0; every later state change is higher.
        sequence: file.status_sequence + 1,
    };
    match cases.update_file_status(update).await {
        Ok(_) => {
            if let Err(error) = repo.mark_synced(&file.id, file.status_sequence).await {
                tracing::warn!(%error, file_id = %file.id, "cannot record the status delivery");
            }
        }
        Err(status) => {
            tracing::warn!(error = %status.message(), file_id = %file.id, "cannot deliver the file status; will retry")
        }
    }
}

/// In-process write fence for the event store: a file's events are written only by the
/// run holding its current lease epoch.
#[derive(Default)]
pub struct FileFences {
    epochs: Mutex<HashMap<String, i64>>,
}

impl FileFences {
    async fn begin<T>(
        &self,
        file: &str,
        epoch: i64,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let mut epochs = self.epochs.lock().await;
        epochs.insert(file.to_string(), epoch);
        work.await
    }

    async fn write<T>(
        &self,
        file: &str,
        epoch: i64,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let epochs = self.epochs.lock().await;
        if epochs.get(file) != Some(&epoch) {
            return None;
        }
        Some(work.await)
    }

    async fn end(&self, file: &str, epoch: i64) {
        let mut epochs = self.epochs.lock().await;
        if epochs.get(file) == Some(&epoch) {
            epochs.remove(file);
        }
    }
}

#[derive(Clone)]
pub struct IngestStage {
    pub(crate) repo: IngestRepo,
    pub(crate) leases: LeaseStore,
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) cases: CasesClient,
    pub(crate) settings: IngestSettings,
    pub(crate) holder: String,
    pub(crate) fences: Arc<FileFences>,
    pub(crate) outbox: Outbox,
}

fn transient(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::transient(error)
}

/// What a run found, before it is recorded.
struct RunResult {
    records_read: u64,
    events_indexed: u64,
    records_rejected: u64,
    duplicates_skipped: u64,
    rejects: BTreeMap<String, u64>,
    error: Option<String>,
}

impl IngestStage {
    pub fn new(
        repo: IngestRepo,
        store: Arc<dyn EventStore>,
        cases: CasesClient,
        settings: IngestSettings,
        fences: Arc<FileFences>,
        outbox: Outbox,
    ) -> Self {
        Self {
            outbox,
            leases: LeaseStore::new(repo.db().clone()),
            repo,
            store,
            cases,
            settings,
            holder: format!("ingest-{}", uuid::Uuid::new_v4()),
            fences,
        }
    }

    /// Runs the stage for `file_id` at `generation` (a job). Idempotent.
    pub async fn run(&self, file_id: &str, generation: i64) -> Result<(), HandlerError> {
        let Some(file) = self.repo.file(file_id).await.map_err(transient)? else {
            return Err(HandlerError::Poison(format!("no evidence file {file_id}")));
        };
        if file.generation > generation {
            return Ok(()); // superseded by a newer request (re-index)
        }
        if matches!(
            file.stage_status.as_str(),
            stage::DONE | stage::FAILED | stage::CONTAINER | stage::ARCHIVED
        ) {
            return Ok(()); // already finished (or archived): a duplicate or late message
        }
        let key = LeaseKey::new(&file.id, STAGE);
        let Some(lease) = self
            .leases
            .acquire(&key, &self.holder, self.settings.lease_ttl)
            .await
            .map_err(transient)?
        else {
            if file.stage_status == stage::PENDING {
                // Held, yet pending: a re-index asked for a new run while the holder's
                // run was going (or the holder is just starting). This job is that new
                // run: wait for the lease.
                return Err(HandlerError::Transient {
                    error: format!("file {file_id} is being ingested by another worker"),
                    retry_after: self.settings.lease_ttl / 2,
                });
            }
            // A live worker is running the file: this job is a duplicate of the work in
            // hand (a redelivery, or the reconciler's re-queue racing a take-over). Done
            // with it: should that worker die, its lease expires and the reconciler
            // queues the file again. Retrying here would only end in a dead letter.
            tracing::debug!(
                file_id,
                "file is being ingested by another worker; duplicate job dropped"
            );
            return Ok(());
        };
        let outcome = self.run_leased(&file, &lease).await;
        if let Err(HandlerError::Transient { error, .. }) = &outcome
            && let Err(note) = self.repo.note_attempt_error(&file.id, error).await
        {
            tracing::warn!(%note, file_id, "cannot record why the ingest run failed");
        }
        self.fences.end(&file.id, lease.epoch).await;
        if let Err(error) = self.leases.release(&lease).await {
            tracing::warn!(%error, file_id, "cannot release the ingest lease; it expires by itself");
        }
        outcome
    }

    async fn run_leased(&self, file: &FileRow, lease: &Lease) -> Result<(), HandlerError> {
        // The case setting, read once per run: skip records identical to one already
        // in the case (counted as duplicates_skipped, never dropped silently).
        let deduplicate = match self.cases.get_case(&file.case_id).await {
            Ok(case) => case.settings.is_some_and(|s| s.deduplicate_events),
            Err(status) if status.code() == tonic::Code::NotFound => {
                return Err(HandlerError::Poison(format!(
                    "case {} no longer exists",
                    file.case_id
                )));
            }
            Err(status) => {
                return Err(transient(format!("cases service: {}", status.message())));
            }
        };
        let started = match self.leases.fenced(lease).await {
            Ok(mut tx) => {
                self.repo
                    .forget_fingerprints(&mut tx, &file.case_id, &file.id)
                    .await
                    .map_err(transient)?;
                let row = self
                    .repo
                    .start_run(&mut tx, &file.id)
                    .await
                    .map_err(transient)?;
                tx.commit().await.map_err(|e| transient(DbError::from(e)))?;
                row
            }
            Err(LeaseError::Fenced { .. }) => return Ok(()),
            Err(error) => return Err(transient(error)),
        };
        tracing::info!(file_id = %file.id, attempt = started.attempts, epoch = lease.epoch, "ingest run started");
        sync_status(&self.repo, &self.cases, &started).await;

        let result = match self.parse_and_index(&started, lease, deduplicate).await? {
            Some(result) => result,
            None => return Ok(()), // the lease was lost: the new holder finishes the file
        };
        let status = if result.error.is_some() {
            stage::FAILED
        } else {
            stage::DONE
        };
        let rejects = serde_json::to_string(&result.rejects).unwrap_or_else(|_| "{}".into());
        let finished = match self.leases.fenced(lease).await {
            Ok(mut tx) => {
                let row = self
                    .repo
                    .finish_run(
                        &mut tx,
                        &file.id,
                        started.generation,
                        status,
                        result.records_read as i64,
                        result.events_indexed as i64,
                        result.records_rejected as i64,
                        result.duplicates_skipped as i64,
                        &rejects,
                        result.error.as_deref(),
                    )
                    .await
                    .map_err(transient)?;
                let Some(row) = row else {
                    // A re-index asked for a newer generation during this run: its job
                    // (waiting while this lease was held) runs the file again.
                    tracing::info!(
                        file_id = %file.id, generation = started.generation,
                        "ingest run superseded by a re-index; not recorded"
                    );
                    return Ok(());
                };
                if status == stage::DONE {
                    publish_indexed_fact(&self.outbox, &mut tx, &row, "file.indexed")
                        .await
                        .map_err(transient)?;
                }
                tx.commit().await.map_err(|e| transient(DbError::from(e)))?;
                row
            }
            Err(LeaseError::Fenced { .. }) => return Ok(()),
            Err(error) => return Err(transient(error)),
        };
        if status == stage::DONE {
            self.outbox.nudge();
        }
        record_run_metrics(status, &result);
        tracing::info!(
            file_id = %file.id, status, records_read = result.records_read,
            events_indexed = result.events_indexed, records_rejected = result.records_rejected,
            error = result.error.as_deref().unwrap_or(""), "ingest run finished"
        );
        sync_status(&self.repo, &self.cases, &finished).await;
        Ok(())
    }

    /// Parses on the blocking pool and writes batches to the store, renewing the lease.
    /// `None` when the lease was lost midway.
    /// Drops from `batch` the events whose record the case already holds.
    async fn skip_duplicates(
        &self,
        file: &FileRow,
        lease: &Lease,
        batch: Vec<Event>,
    ) -> Result<(Vec<Event>, u64), HandlerError> {
        use sha2::Digest;
        let fingerprints: Vec<String> = batch
            .iter()
            .map(|event| hex::encode(sha2::Sha256::digest(event.raw.get().as_bytes())))
            .collect();
        let mut tx = match self.leases.fenced(lease).await {
            Ok(tx) => tx,
            Err(LeaseError::Fenced { .. }) => return Ok((Vec::new(), 0)),
            Err(error) => return Err(transient(error)),
        };
        let fresh = self
            .repo
            .claim_fingerprints(&mut tx, &file.case_id, &file.id, &fingerprints)
            .await
            .map_err(transient)?;
        tx.commit().await.map_err(|e| transient(DbError::from(e)))?;
        let before = batch.len() as u64;
        let kept: Vec<Event> = batch
            .into_iter()
            .zip(fresh)
            .filter_map(|(event, new)| new.then_some(event))
            .collect();
        let skipped = before - kept.len() as u64;
        Ok((kept, skipped))
    }

    async fn parse_and_index(
        &self,
        file: &FileRow,
        lease: &Lease,
        deduplicate: bool,
    ) -> Result<Option<RunResult>, HandlerError> {
        let format = Format::from_file_name(&format!("x.{}", file.format))
            .ok_or_else(|| HandlerError::Poison(format!("unknown format {}", file.format)))?;
        let deleted = self
            .fences
            .begin(
                &file.id,
                lease.epoch,
                self.store.delete_file(&file.case_id, &file.id),
            )
            .await;
        deleted.map_err(transient)?;

        let context = Context {
            case_id: file.case_id.clone(),
            file_id: file.id.clone(),
            evidence_sha256: file.sha256.clone(),
            timestamp_field: file.timestamp_field.clone(),
            keep_raw: true,
            limits: self.settings.parse_limits.clone(),
        };
        let (sender, mut receiver) = mpsc::channel::<Vec<Event>>(4);
        let stop = Arc::new(AtomicBool::new(false));
        let batch_size = self.settings.batch_size.max(1);
        // A local file to parse: the blob, or (S3) a scratch copy removed when the
        // parser is done. A blob that is gone fails the run like an unreadable file.
        let blob = self.settings.blob_file(&file.blob_path);
        let local = match self.settings.blobs.fetch(&blob).await {
            Ok(local) => Some(local),
            Err(crate::BlobError::NotFound(_)) => None,
            Err(error) => return Err(transient(error)),
        };
        let parser_stop = stop.clone();
        let time_limit = self
            .settings
            .parse_time_limit(u64::try_from(file.size_bytes).unwrap_or(0));
        let (settings_base, settings_per_mib) = (
            self.settings.parse_time_base,
            self.settings.parse_time_per_mib,
        );
        let parser = tokio::task::spawn_blocking(move || {
            let path = local.as_ref().map_or(blob.as_path(), |l| l.path());
            let mut batch = Vec::with_capacity(batch_size);
            // Counted here too, so a file that fails midway still reports what was read.
            let mut seen = casescope_evidence::Summary::default();
            // Parsing time only: the time spent waiting for the event store to take a
            // batch (a slow cluster) does not count.
            let started = std::time::Instant::now();
            let mut waited = std::time::Duration::ZERO;
            let mut timed_out = false;
            let mut sink = |outcome: Outcome| {
                if parser_stop.load(Ordering::Relaxed) {
                    return ControlFlow::Break(());
                }
                seen.records_read += 1;
                if let Outcome::Rejected(reject) = &outcome {
                    seen.rejected += 1;
                    *seen
                        .rejects_by_reason
                        .entry(reject.reason.as_str())
                        .or_default() += 1;
                }
                if let Outcome::Event(event) = outcome {
                    seen.events += 1;
                    batch.push(*event);
                    if batch.len() >= batch_size {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                        let sending = std::time::Instant::now();
                        let sent = sender.blocking_send(full);
                        waited += sending.elapsed();
                        if sent.is_err() {
                            return ControlFlow::Break(());
                        }
                    }
                }
                // After the record is kept, so what was read is counted and indexed.
                if started.elapsed().saturating_sub(waited) > time_limit {
                    timed_out = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            };
            let summary = parse_file(path, format, &context, &mut sink);
            if !batch.is_empty() {
                let _ = sender.blocking_send(batch);
            }
            match summary {
                Ok(summary) if timed_out => (
                    summary,
                    Some(format!(
                        "parsing stopped after {} s, the most a file of this size may take \
                         ({} s + {} s per MiB); the records read until then are counted \
                         (a crafted file can make a parser spin)",
                        time_limit.as_secs(),
                        settings_base.as_secs(),
                        settings_per_mib.as_secs()
                    )),
                ),
                Ok(summary) => (summary, None),
                Err(error) => (seen, Some(error.to_string())),
            }
        });

        // The lease is renewed by its own task, so a slow store write never lets it lapse.
        let keep_alive = {
            let stop = stop.clone();
            let file_id = file.id.clone();
            self.leases
                .keep_alive(lease, self.settings.lease_ttl, move || {
                    tracing::warn!(%file_id, "ingest lease lost; stopping this run");
                    stop.store(true, Ordering::SeqCst);
                })
        };
        let mut written: u64 = 0;
        let mut store_rejects: u64 = 0;
        let mut skipped: u64 = 0;
        let mut store_error: Option<String> = None;
        while let Some(batch) = receiver.recv().await {
            if store_error.is_some() || keep_alive.is_lost() {
                continue; // drain: the run is ending anyway
            }
            let batch = if deduplicate {
                match self.skip_duplicates(file, lease, batch).await {
                    Ok((kept, duplicates)) => {
                        skipped += duplicates;
                        kept
                    }
                    Err(error) => {
                        stop.store(true, Ordering::Relaxed);
                        store_error = Some(format!("de-duplication failed: {error}"));
                        continue;
                    }
                }
            } else {
                batch
            };
            if batch.is_empty() {
                continue;
            }
            match self
                .fences
                .write(&file.id, lease.epoch, self.store.write(batch))
                .await
            {
                None => {
                    stop.store(true, Ordering::Relaxed);
                    keep_alive.mark_lost();
                }
                Some(Ok(report)) => {
                    let before = written;
                    written += report.written;
                    store_rejects += report.rejected.len() as u64;
                    if written / PROGRESS_EVERY != before / PROGRESS_EVERY {
                        tracing::info!(file_id = %file.id, written, "ingest progress");
                    }
                }
                Some(Err(error)) => {
                    stop.store(true, Ordering::Relaxed);
                    store_error = Some(format!("event store refused a batch: {error}"));
                }
            }
        }
        if keep_alive.is_lost() {
            let _ = parser.await;
            return Ok(None);
        }
        let summary = parser
            .await
            .map_err(|e| transient(format!("parser task failed: {e}")))?;
        if let Some(error) = store_error {
            // Nothing of a failed write is trusted: the retry re-indexes the whole file.
            return Err(transient(error));
        }
        self.store.flush().await.map_err(transient)?;
        let indexed = self
            .store
            .count_file(&file.case_id, &file.id)
            .await
            .map_err(transient)?;
        let (summary, parse_error) = summary;
        let result = {
            {
                let mut rejects: BTreeMap<String, u64> = summary
                    .rejects_by_reason
                    .iter()
                    .map(|(reason, count)| (reason.to_string(), *count))
                    .collect();
                if store_rejects > 0 {
                    rejects.insert("store_rejected".into(), store_rejects);
                }
                let expected = summary.events - store_rejects - skipped;
                let error = if let Some(error) = parse_error {
                    Some(error)
                } else if summary.stopped_early {
                    Some("parsing stopped before the end of the file".to_string())
                } else if indexed != expected || written != expected {
                    Some(format!(
                        "the event store holds {indexed} events of this file but {expected} were parsed and accepted"
                    ))
                } else {
                    None
                };
                RunResult {
                    records_read: summary.records_read,
                    events_indexed: indexed,
                    records_rejected: summary.rejected + store_rejects,
                    duplicates_skipped: skipped,
                    rejects,
                    error,
                }
            }
        };
        Ok(Some(result))
    }
}

#[async_trait::async_trait]
impl Handler for IngestStage {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let job: StageJob = serde_json::from_slice(&message.payload)
            .map_err(|error| HandlerError::Poison(format!("not an ingest job: {error}")))?;
        self.run(&job.file_id, job.generation).await
    }
}

/// Counts a committed run: the file's outcome and its events.
fn record_run_metrics(status: &str, result: &RunResult) {
    use casescope_runtime::metrics::{attr, metrics};
    let outcome = if status == stage::DONE {
        "indexed"
    } else {
        "failed"
    };
    let metrics = metrics();
    metrics.ingest_files.add(1, &attr("outcome", outcome));
    metrics
        .ingest_events
        .add(result.events_indexed, &attr("outcome", "indexed"));
    metrics
        .ingest_events
        .add(result.records_rejected, &attr("outcome", "rejected"));
}
