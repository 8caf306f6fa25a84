//! The hunt stage (per file, under the file's `ioc_hunt` lease).
//!
//! A run reads the file's events from the ingest service in batches, hunts each batch
//! on the blocking pool with every IOC of the run compiled into one
//! [`casescope_ioc::Hunter`] (batches overlap with the next read), and then, in one
//! lease-fenced transaction, replaces the file's matches — all of them (full run), or
//! those of the IOCs changed since the file's last run (delta run) — publishes the new
//! matches through the outbox, and records the case IOC version the file now reflects.
//! A run that loses its lease writes nothing.

use crate::repo::{FileRow, Hunted, IocRepo, MatchRow, Scope};
use crate::{IocSettings, STAGE};
use casescope_bus::facts::{FileIndexedInfo, StartsOnIndexed};
use casescope_bus::{Handler, HandlerError, OutboundMessage, Outbox, ReceivedMessage, subjects};
use casescope_db::{DbError, Lease, LeaseError, LeaseKey, LeaseStore, Tx};
use casescope_ioc::{Hunter, Indicator, IocType};
use casescope_proto::bus::v1::StageJob;
use casescope_proto::ingest::v1 as ingest_pb;
use casescope_proto::scan::EventsClient;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The durable consumer of hunt jobs (`casescope.v1.jobs.ioc_hunt`).
pub const IOC_CONSUMER: &str = "ioc-workers";
/// The durable consumer of `file.indexed` facts (`casescope.v1.files.*`).
pub const IOC_INDEXED_CONSUMER: &str = "ioc-indexed";

/// Longest matched text kept on a match.
const MAX_MATCHED_CHARS: usize = 1024;
/// Compiled IOC sets kept for reuse (each file of a case hunts the same set).
const CACHED_SETS: usize = 4;
/// How long a compiled set is reused (IOC expiry moves with time).
const CACHE_TTL: Duration = Duration::from_secs(60);

/// Runs of one file per call at most (each after a request that came during the
/// previous one); more wait for the reconciler.
const RUNS_PER_CALL: usize = 3;

fn transient(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::transient(error)
}

/// hash(IOC id, event id, field) as 32 lowercase hex digits: match ids.
pub fn match_id(ioc_id: &str, event_id: &str, field: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [ioc_id, event_id, field] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..16])
}

/// The JSON fact published on `casescope.v1.ioc_matches.<case>` per new match.
#[derive(Debug, Serialize)]
pub struct MatchFact<'a> {
    pub kind: &'static str,
    pub case_id: &'a str,
    pub match_id: &'a str,
    pub ioc_id: &'a str,
    pub ioc_type: &'a str,
    pub ioc_value: &'a str,
    pub file_id: &'a str,
    pub event_id: &'a str,
    pub event_time: String,
    pub field: &'a str,
    pub matched_value: &'a str,
}

fn fact_message(row: &MatchRow) -> Result<OutboundMessage, String> {
    let fact = MatchFact {
        kind: "ioc_match.created",
        case_id: &row.case_id,
        match_id: &row.id,
        ioc_id: &row.ioc_id,
        ioc_type: &row.ioc_type,
        ioc_value: &row.ioc_value,
        file_id: &row.file_id,
        event_id: &row.event_id,
        event_time: casescope_proto::time::micros_to_rfc3339(row.event_ts),
        field: &row.field,
        matched_value: &row.matched_value,
    };
    OutboundMessage::json(
        subjects::ioc_match_facts(&row.case_id),
        format!("ioc_match:{}:{}", row.case_id, row.id),
        &fact,
    )
    .map_err(|e| e.to_string())
}

/// Queues the hunt job of a file in `tx` (published by the outbox after commit).
pub async fn enqueue_job(
    outbox: &Outbox,
    tx: &mut Tx<'_>,
    file: &FileRow,
    tag: &str,
) -> Result<(), String> {
    let job = StageJob {
        case_id: file.case_id.clone(),
        file_id: file.file_id.clone(),
        stage: STAGE.into(),
        generation: file.generation,
        reason: tag.into(),
    };
    let id = format!("{}:{STAGE}:{}:{tag}", file.file_id, file.generation);
    let message =
        OutboundMessage::json(subjects::job(STAGE), id, &job).map_err(|e| e.to_string())?;
    outbox
        .enqueue(tx, &message)
        .await
        .map_err(|e| e.to_string())
}

/// The IOCs of one run, compiled; a hit's index is the IOC's in `iocs`.
pub struct Compiled {
    hunter: Hunter,
    iocs: Vec<Hunted>,
}

impl Compiled {
    pub fn new(iocs: Vec<Hunted>) -> Compiled {
        let indicators: Vec<Indicator> = iocs
            .iter()
            .map(|ioc| Indicator {
                ioc_type: IocType::from_name(&ioc.ioc_type).unwrap_or(IocType::Other),
                value: ioc.normalized.clone(),
            })
            .collect();
        Compiled {
            hunter: Hunter::new(&indicators),
            iocs,
        }
    }
}

/// What hunting one batch produced.
#[derive(Default)]
struct BatchOutput {
    matches: Vec<MatchRow>,
    unreadable: u64,
}

fn micros_of(event: &ingest_pb::Event) -> i64 {
    event
        .timestamp
        .as_ref()
        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1000))
        .unwrap_or(0)
}

/// Hunts a batch of events (on the blocking pool).
fn hunt_batch(compiled: &Compiled, events: Vec<ingest_pb::Event>, now: i64) -> BatchOutput {
    let mut out = BatchOutput::default();
    for event in events {
        let fields: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_str(&event.fields_json) {
                Ok(fields) => fields,
                Err(_) => {
                    out.unreadable += 1;
                    continue;
                }
            };
        let mut pairs: Vec<(&str, &str)> = fields
            .iter()
            .filter_map(|(name, value)| value.as_str().map(|text| (name.as_str(), text)))
            .collect();
        if !event.computer.is_empty() && !fields.contains_key("Computer") {
            pairs.push(("Computer", event.computer.as_str()));
        }
        let mut hits = Vec::new();
        compiled.hunter.hunt(&pairs, &mut hits);
        if hits.is_empty() {
            continue;
        }
        let event_id = event
            .event_id
            .as_ref()
            .map(|e| e.value.as_str())
            .unwrap_or("");
        let case_id = event
            .case_id
            .as_ref()
            .map(|c| c.value.as_str())
            .unwrap_or("");
        let file_id = event
            .file_id
            .as_ref()
            .map(|f| f.value.as_str())
            .unwrap_or("");
        let ts = micros_of(&event);
        for hit in &hits {
            let ioc = &compiled.iocs[hit.ioc as usize];
            out.matches.push(MatchRow {
                case_id: case_id.to_string(),
                id: match_id(&ioc.id, event_id, hit.field),
                ioc_id: ioc.id.clone(),
                file_id: file_id.to_string(),
                event_id: event_id.to_string(),
                field: hit.field.to_string(),
                matched_value: hit.matched.chars().take(MAX_MATCHED_CHARS).collect(),
                event_ts: ts,
                ioc_type: ioc.ioc_type.clone(),
                ioc_value: ioc.normalized.clone(),
                matched_at: now,
            });
        }
    }
    out
}

/// Compiled full sets of recent runs: (case, version) → set.
type SetCache = Mutex<Vec<((String, i64), Instant, Arc<Compiled>)>>;

#[derive(Clone)]
pub struct HuntStage {
    pub(crate) repo: IocRepo,
    pub(crate) leases: LeaseStore,
    pub(crate) events: EventsClient,
    pub(crate) settings: IocSettings,
    pub(crate) outbox: Outbox,
    pub(crate) holder: String,
    /// Wakes the reconciler (a run failed and waits for its retry).
    pub(crate) wake: Arc<Notify>,
    cache: Arc<SetCache>,
}

/// The outcome of scanning and hunting one file.
struct Hunted2 {
    matches: Vec<MatchRow>,
    events_scanned: u64,
}

impl HuntStage {
    pub(crate) fn new(
        repo: IocRepo,
        events: EventsClient,
        settings: IocSettings,
        outbox: Outbox,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            leases: LeaseStore::new(repo.db().clone()),
            repo,
            events,
            settings,
            outbox,
            holder: format!("ioc-{}", uuid::Uuid::new_v4()),
            wake,
            cache: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A request to hunt a file at an ingest generation (from a `file.indexed` fact or
    /// a job): records it, then runs the file.
    pub async fn on_request(
        &self,
        case_id: &str,
        file_id: &str,
        generation: i64,
    ) -> Result<(), HandlerError> {
        let (version, _) = self.repo.case_version(case_id).await.map_err(transient)?;
        let existing = self.repo.file(file_id).await.map_err(transient)?;
        let fresh = match &existing {
            None => true,
            Some(file) if file.generation > generation => return Ok(()), // superseded
            Some(file) => file.generation < generation,
        };
        if fresh {
            let mut tx = self.repo.db().begin().await.map_err(transient)?;
            if existing.is_none() {
                // A file new to the service may be its case's first: serialised with
                // list changes, which fan out to the cases known (repo/lists.rs).
                self.repo.lock_lists(&mut tx).await.map_err(transient)?;
            }
            self.repo
                .request_file(
                    &mut tx,
                    case_id,
                    file_id,
                    generation,
                    version,
                    casescope_db::now_micros(),
                )
                .await
                .map_err(transient)?;
            tx.commit().await.map_err(|e| transient(DbError::from(e)))?;
        }
        self.run(file_id).await
    }

    /// Runs the stage for `file_id` if it is behind what was requested. Idempotent. A
    /// request recorded while a run held the file (new events, a new version) is run
    /// right after it rather than at the reconciler's next pass.
    pub async fn run(&self, file_id: &str) -> Result<(), HandlerError> {
        for _ in 0..RUNS_PER_CALL {
            let Some(before) = self.run_once(file_id).await? else {
                return Ok(());
            };
            let Some(after) = self.repo.file(file_id).await.map_err(transient)? else {
                return Ok(());
            };
            if after.generation == before.generation
                && after.requested_version == before.requested_version
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One run if the file is behind; the file's row it started from, or `None` when
    /// nothing ran (current, or held by another worker).
    async fn run_once(&self, file_id: &str) -> Result<Option<FileRow>, HandlerError> {
        let Some(file) = self.repo.file(file_id).await.map_err(transient)? else {
            return Err(HandlerError::Poison(format!(
                "no hunt record of file {file_id}"
            )));
        };
        if file.is_current() {
            return Ok(None);
        }
        let key = LeaseKey::new(&file.file_id, STAGE);
        let Some(lease) = self
            .leases
            .acquire(&key, &self.holder, self.settings.lease_ttl)
            .await
            .map_err(transient)?
        else {
            // A live worker holds the file; should it die, its lease expires and the
            // reconciler sends the file again.
            tracing::debug!(
                file_id,
                "file is being hunted by another worker; duplicate job dropped"
            );
            return Ok(None);
        };
        let outcome = self.run_leased(&file, &lease).await;
        if let Err(error) = self.leases.release(&lease).await {
            tracing::warn!(%error, file_id, "cannot release the hunt lease; it expires by itself");
        }
        if outcome? {
            self.outbox.nudge();
        }
        Ok(Some(file))
    }

    /// The compiled full set of the case at `version`.
    async fn full_set(&self, case_id: &str, version: i64) -> Result<Arc<Compiled>, HandlerError> {
        let key = (case_id.to_string(), version);
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, _, set)) = cache
                .iter()
                .find(|(k, at, _)| *k == key && at.elapsed() < CACHE_TTL)
            {
                return Ok(set.clone());
            }
        }
        let iocs = self
            .repo
            .hunted_iocs(case_id, casescope_db::now_micros(), None)
            .await
            .map_err(transient)?;
        let set = Arc::new(
            tokio::task::spawn_blocking(move || Compiled::new(iocs))
                .await
                .map_err(transient)?,
        );
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(k, at, _)| *k != key && at.elapsed() < CACHE_TTL);
        if cache.len() >= CACHED_SETS {
            cache.remove(0);
        }
        cache.push((key, Instant::now(), set.clone()));
        Ok(set)
    }

    /// `Ok(true)` when the file's rows were replaced.
    async fn run_leased(&self, file: &FileRow, lease: &Lease) -> Result<bool, HandlerError> {
        let started = match self.leases.fenced(lease).await {
            Ok(mut tx) => {
                let row = self
                    .repo
                    .start_run(&mut tx, &file.file_id)
                    .await
                    .map_err(transient)?;
                self.stage_changed(&mut tx, &row, "running", "")
                    .await
                    .map_err(transient)?;
                tx.commit().await.map_err(|e| transient(DbError::from(e)))?;
                row
            }
            Err(LeaseError::Fenced { .. }) => return Ok(false),
            Err(error) => return Err(transient(error)),
        };
        let (target, log_floor) = self
            .repo
            .case_version(&file.case_id)
            .await
            .map_err(transient)?;
        let delta = started.hunted_version >= 0 && started.hunted_version + 1 >= log_floor;
        let (compiled, scope, mode) = if delta {
            let iocs = self
                .repo
                .hunted_iocs(
                    &file.case_id,
                    casescope_db::now_micros(),
                    Some((started.hunted_version, target)),
                )
                .await
                .map_err(transient)?;
            let set = tokio::task::spawn_blocking(move || Compiled::new(iocs))
                .await
                .map_err(transient)?;
            (
                Arc::new(set),
                Scope::Changed(started.hunted_version, target),
                "delta",
            )
        } else {
            (
                self.full_set(&file.case_id, target).await?,
                Scope::All,
                "full",
            )
        };
        tracing::info!(
            file_id = %file.file_id, mode, case_version = target, iocs = compiled.iocs.len(),
            attempt = started.attempts, "ioc hunt started"
        );
        let hunted = match self.hunt_file(&started, lease, &compiled).await {
            Ok(Some(hunted)) => hunted,
            Ok(None) => return Ok(false), // lease lost: the new holder finishes
            Err(error) => {
                tracing::warn!(file_id = %file.file_id, %error, "ioc hunt failed");
                casescope_runtime::metrics::metrics()
                    .ioc_hunts
                    .add(1, &casescope_runtime::metrics::attr("outcome", "failed"));
                if let Ok(mut tx) = self.leases.fenced(lease).await {
                    self.repo
                        .fail_run(&mut tx, &file.file_id, &error, self.settings.max_attempts)
                        .await
                        .map_err(transient)?;
                    if started.attempts >= self.settings.max_attempts {
                        self.stage_changed(&mut tx, &started, "failed", &error)
                            .await
                            .map_err(transient)?;
                    }
                    tx.commit().await.map_err(|e| transient(DbError::from(e)))?;
                }
                self.wake.notify_one();
                return Ok(false);
            }
        };
        let mut tx = match self.leases.fenced(lease).await {
            Ok(tx) => tx,
            Err(LeaseError::Fenced { .. }) => return Ok(false),
            Err(error) => return Err(transient(error)),
        };
        let new = self
            .replace_file_rows(&mut tx, &started, scope, &hunted.matches)
            .await
            .map_err(transient)?;
        self.repo
            .finish_run(
                &mut tx,
                &started,
                target,
                mode,
                hunted.events_scanned as i64,
            )
            .await
            .map_err(transient)?;
        self.stage_changed(&mut tx, &started, "done", "")
            .await
            .map_err(transient)?;
        tx.commit().await.map_err(|e| transient(DbError::from(e)))?;
        let metrics = casescope_runtime::metrics::metrics();
        metrics
            .ioc_hunts
            .add(1, &casescope_runtime::metrics::attr("outcome", "done"));
        metrics.ioc_matches.add(new as u64, &[]);
        tracing::info!(
            file_id = %file.file_id, mode, events = hunted.events_scanned,
            matches = hunted.matches.len(), new_matches = new, "ioc hunt finished"
        );
        Ok(true)
    }

    /// Tells the cases service, in `tx`, how the file's hunt stage stands.
    async fn stage_changed(
        &self,
        tx: &mut Tx<'_>,
        file: &FileRow,
        state: &str,
        error: &str,
    ) -> Result<(), String> {
        let message = casescope_bus::facts::stage_fact(
            &file.case_id,
            &file.file_id,
            STAGE,
            file.generation,
            state,
            error,
        )?;
        self.outbox
            .enqueue(tx, &message)
            .await
            .map_err(|e| e.to_string())
    }

    /// Replaces the file's matches in `scope`; returns how many are new.
    async fn replace_file_rows(
        &self,
        tx: &mut Tx<'_>,
        file: &FileRow,
        scope: Scope,
        matches: &[MatchRow],
    ) -> Result<usize, String> {
        let before = self
            .repo
            .file_match_ids(tx, &file.case_id, &file.file_id, scope)
            .await
            .map_err(|e| e.to_string())?;
        self.repo
            .delete_file_matches(tx, &file.case_id, &file.file_id, scope)
            .await
            .map_err(|e| e.to_string())?;
        self.repo
            .insert_matches(tx, matches)
            .await
            .map_err(|e| e.to_string())?;
        let mut new = 0;
        let mut published = std::collections::HashSet::new();
        for row in matches {
            if !before.contains(&row.id) && published.insert(row.id.as_str()) {
                new += 1;
                self.outbox
                    .enqueue(tx, &fact_message(row)?)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(new)
    }

    /// Scans and hunts the file; `Ok(None)` when the lease was lost.
    async fn hunt_file(
        &self,
        file: &FileRow,
        lease: &Lease,
        compiled: &Arc<Compiled>,
    ) -> Result<Option<Hunted2>, String> {
        let keep_alive = self
            .leases
            .keep_alive(lease, self.settings.lease_ttl, || {});
        let mut hunted = Hunted2 {
            matches: Vec::new(),
            events_scanned: 0,
        };
        if compiled.iocs.is_empty() {
            // Nothing to hunt (no IOCs, or a delta that only removed some).
            return Ok(Some(hunted));
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mut scan = self
            .events
            .scan(&file.case_id, &file.file_id, self.settings.scan_batch)
            .await
            .map_err(|status| format!("cannot scan the file's events: {}", status.message()))?;
        let mut running: VecDeque<tokio::task::JoinHandle<BatchOutput>> = VecDeque::new();
        let mut unreadable = 0u64;
        let now = casescope_db::now_micros();
        let limit = self.settings.max_matches_per_file;
        let mut collect = |output: BatchOutput, hunted: &mut Hunted2| -> Result<(), String> {
            unreadable += output.unreadable;
            hunted.matches.extend(output.matches);
            if hunted.matches.len() > limit {
                return Err(format!(
                    "more than {limit} IOC matches in this file (the per-file limit); disable the IOCs that match everywhere or raise the limit"
                ));
            }
            Ok(())
        };
        loop {
            if keep_alive.is_lost() {
                return Ok(None);
            }
            let batch = scan
                .next()
                .await
                .map_err(|status| format!("event scan failed: {}", status.message()))?;
            let Some(events) = batch else { break };
            hunted.events_scanned += events.len() as u64;
            let compiled = compiled.clone();
            running.push_back(tokio::task::spawn_blocking(move || {
                hunt_batch(&compiled, events, now)
            }));
            while running.len() >= workers {
                let Some(first) = running.pop_front() else {
                    break;
                };
                let output = first.await.map_err(|e| format!("the hunt crashed: {e}"))?;
                collect(output, &mut hunted)?;
            }
        }
        while let Some(first) = running.pop_front() {
            let output = first.await.map_err(|e| format!("the hunt crashed: {e}"))?;
            collect(output, &mut hunted)?;
        }
        if unreadable > 0 {
            return Err(format!(
                "{unreadable} events of this file have unreadable fields; re-index the file"
            ));
        }
        if keep_alive.is_lost() {
            return Ok(None);
        }
        Ok(Some(hunted))
    }
}

#[async_trait::async_trait]
impl Handler for HuntStage {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let job: StageJob = serde_json::from_slice(&message.payload)
            .map_err(|error| HandlerError::Poison(format!("not a hunt job: {error}")))?;
        if job.case_id.is_empty() || job.file_id.is_empty() {
            return Err(HandlerError::Poison(
                "a hunt job needs case_id and file_id".into(),
            ));
        }
        self.on_request(&job.case_id, &job.file_id, job.generation)
            .await
    }
}

/// `file.indexed` and `file.archived` facts start the hunt of that file at its
/// generation (an archived file's hunt finds no events and so drops its matches).
#[async_trait::async_trait]
impl StartsOnIndexed for HuntStage {
    async fn start(&self, fact: &FileIndexedInfo) -> Result<(), HandlerError> {
        self.on_request(&fact.case_id, &fact.file_id, fact.generation)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_ids_are_stable_and_unambiguous() {
        assert_eq!(match_id("i", "e", "f"), match_id("i", "e", "f"));
        assert_ne!(match_id("i", "e", "f"), match_id("ie", "", "f"));
        assert_ne!(match_id("i", "e", "f"), match_id("i", "e", "g"));
        assert_eq!(match_id("a", "b", "c").len(), 32);
    }
}
