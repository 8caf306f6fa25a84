//! The detect stage (per file, under the file's `detect` lease) and the correlation
//! pass (per case, under the case's `correlate` lease).
//!
//! A run reads the file's events from the ingest service in batches, evaluates them on
//! the blocking pool (batches overlap with the next read), and then, in one
//! lease-fenced transaction, replaces the file's detections and correlation inputs —
//! all of them (full run), or those of the changed rules only (delta run after a ruleset
//! change) — publishes the new detections through the outbox, and records the ruleset
//! version the file now reflects. A run that loses its lease writes nothing.

use crate::repo::{DetectRepo, DetectionRow, FileRow, InputRow, scope, status};
use crate::ruleset::{Compiled, RulesetCache};
use crate::{CORRELATE_STAGE, DetectSettings, STAGE};
use casescope_bus::{Handler, HandlerError, OutboundMessage, Outbox, ReceivedMessage, subjects};
use casescope_db::{DbError, Lease, LeaseError, LeaseKey, LeaseStore, Tx};
use casescope_proto::bus::v1::StageJob;
use casescope_proto::scan::EventsClient;
use casescope_sigma::BaseHit;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::Notify;

/// The durable consumer name of detect workers (detect's own jobs: re-runs, reconciler).
pub const DETECT_CONSUMER: &str = "detect-workers";
/// The durable consumer of `file.indexed` facts (`casescope.v1.files.*`).
pub const DETECT_INDEXED_CONSUMER: &str = "detect-indexed";

/// Longest matched-field value kept on a detection.
const MAX_MATCHED_VALUE_BYTES: usize = 1024;
mod correlate;
mod evaluate;
use evaluate::{BatchOutput, evaluate_batch, rule_db_id};

/// Most event ids listed on a correlation detection (the count is always exact).
const MAX_CORRELATION_EVENT_IDS: usize = 1000;

/// Runs of one file per call at most (each after a request that came during the
/// previous one); more wait for the reconciler.
const RUNS_PER_CALL: usize = 3;
/// Detections written (with their facts) per round of multi-row statements.
const WRITE_CHUNK: usize = 1000;

fn transient(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::transient(error)
}

/// hash(parts…) as 32 lowercase hex digits: detection ids.
pub fn detection_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..16])
}

pub fn level_number(level: &str) -> i64 {
    match level {
        "informational" => 1,
        "low" => 2,
        "medium" => 3,
        "high" => 4,
        "critical" => 5,
        _ => 0,
    }
}

fn comma_list(json: &str) -> String {
    let values: Vec<String> = serde_json::from_str(json).unwrap_or_default();
    if values.is_empty() {
        String::new()
    } else {
        format!(",{},", values.join(","))
    }
}

fn list_of(comma: &str) -> Vec<String> {
    comma
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The JSON fact published on `casescope.v1.detections.<case>` per new detection.
#[derive(Debug, Serialize)]
pub struct DetectionFact<'a> {
    pub kind: &'static str,
    pub case_id: &'a str,
    pub detection_id: &'a str,
    pub rule_id: &'a str,
    pub rule_title: &'a str,
    pub rule_content_sha256: &'a str,
    pub level: &'static str,
    pub file_id: &'a str,
    pub event_ids: Vec<String>,
    pub event_time: String,
    pub computer: &'a str,
    pub channel: &'a str,
    pub event_code: Option<i64>,
    pub record_id: Option<i64>,
    pub tactics: Vec<String>,
    pub techniques: Vec<String>,
    pub matched_fields: serde_json::Value,
    pub is_correlation: bool,
    pub correlated_event_count: i64,
    pub ruleset_version: i64,
}

pub fn level_name(level: i64) -> &'static str {
    match level {
        1 => "informational",
        2 => "low",
        3 => "medium",
        4 => "high",
        5 => "critical",
        _ => "unknown",
    }
}

fn fact_message(row: &DetectionRow) -> Result<OutboundMessage, String> {
    let fact = DetectionFact {
        kind: "detection.created",
        case_id: &row.case_id,
        detection_id: &row.id,
        rule_id: &row.rule_id,
        rule_title: &row.rule_title,
        rule_content_sha256: &row.rule_content_sha256,
        level: level_name(row.level),
        file_id: &row.file_id,
        event_ids: serde_json::from_str(&row.event_ids).unwrap_or_default(),
        event_time: casescope_proto::time::micros_to_rfc3339(row.event_ts),
        computer: &row.computer,
        channel: &row.channel,
        event_code: row.event_code,
        record_id: row.record_id,
        tactics: list_of(&row.tactics),
        techniques: list_of(&row.techniques),
        matched_fields: serde_json::from_str(&row.matched_fields)
            .unwrap_or(serde_json::Value::Null),
        is_correlation: row.is_correlation,
        correlated_event_count: row.correlated_event_count,
        ruleset_version: row.ruleset_version,
    };
    OutboundMessage::json(
        subjects::detection_facts(&row.case_id),
        format!(
            "detection:{}:{}:{}",
            row.case_id, row.id, row.rule_content_sha256
        ),
        &fact,
    )
    .map_err(|e| e.to_string())
}

/// Queues the detect job of a file in `tx` (published by the outbox after commit).
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

#[derive(Clone)]
pub struct DetectStage {
    pub(crate) repo: DetectRepo,
    pub(crate) leases: LeaseStore,
    pub(crate) events: EventsClient,
    pub(crate) rules: Arc<RulesetCache>,
    pub(crate) settings: DetectSettings,
    pub(crate) outbox: Outbox,
    pub(crate) holder: String,
    /// Wakes the reconciler (e.g. a correlation pass could not take its lease).
    pub(crate) wake: Arc<Notify>,
}

/// The outcome of scanning and evaluating one file.
struct Evaluated {
    detections: Vec<DetectionRow>,
    inputs: Vec<InputRow>,
    events_scanned: u64,
}

impl DetectStage {
    /// Handles a job: records the request, then runs the file.
    pub async fn on_job(&self, job: &StageJob) -> Result<(), HandlerError> {
        let (version, _) = self.repo.ruleset_version().await.map_err(transient)?;
        let existing = self.repo.file(&job.file_id).await.map_err(transient)?;
        let fresh_request = match &existing {
            None => true,
            Some(file) if file.generation > job.generation => return Ok(()), // superseded
            Some(file) => file.generation < job.generation,
        };
        if fresh_request {
            let mut tx = self.repo.db().begin().await.map_err(transient)?;
            self.repo
                .request_file(
                    &mut tx,
                    &job.case_id,
                    &job.file_id,
                    job.generation,
                    version,
                    casescope_db::now_micros(),
                )
                .await
                .map_err(transient)?;
            tx.commit().await.map_err(|e| transient(DbError::from(e)))?;
        }
        self.run(&job.file_id).await
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
                "no detect record of file {file_id}"
            )));
        };
        if file.status == status::FAILED
            || (file.status == status::DONE && file.evaluated_version >= file.requested_version)
        {
            return Ok(None);
        }
        let key = LeaseKey::new(&file.file_id, STAGE);
        let Some(lease) = self
            .leases
            .acquire(&key, &self.holder, self.settings.lease_ttl)
            .await
            .map_err(transient)?
        else {
            // A live worker holds the file: this job duplicates the work in hand. Should
            // that worker die, its lease expires and the reconciler sends the file again
            // (it re-sends every file behind its requested version with no live lease).
            tracing::debug!(
                file_id,
                "file is being evaluated by another worker; duplicate job dropped"
            );
            return Ok(None);
        };
        let outcome = self.run_leased(&file, &lease).await;
        if let Err(error) = self.leases.release(&lease).await {
            tracing::warn!(%error, file_id, "cannot release the detect lease; it expires by itself");
        }
        let changed = outcome?;
        if changed {
            self.outbox.nudge();
            if let Err(error) = self.correlate(&file.case_id).await {
                tracing::warn!(%error, case_id = %file.case_id, "correlation pass failed; the reconciler retries");
            }
        }
        Ok(Some(file))
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
        let full = self.rules.current().await.map_err(transient)?;
        let target = full.version;
        // Full run, or only the rules changed since the file's last evaluation.
        let changed = if started.evaluated_version == 0 {
            None
        } else {
            self.repo
                .changes_between(started.evaluated_version, target)
                .await
                .map_err(transient)?
        };
        let (compiled, scope_rules, mode) = match changed {
            None => (full, None, "full"),
            Some(ids) => {
                let only: HashSet<String> = ids.iter().cloned().collect();
                let mut subset = self.rules.subset(&only).await.map_err(transient)?;
                subset.version = target;
                (Arc::new(subset), Some(ids), "delta")
            }
        };
        tracing::info!(
            file_id = %file.file_id, mode, ruleset_version = target,
            rules = compiled.set.rules.len(), attempt = started.attempts, "detect run started"
        );
        let evaluating = std::time::Instant::now();
        let evaluated = match self.evaluate_file(file, lease, &compiled, target).await {
            Ok(Some(evaluated)) => evaluated,
            Ok(None) => return Ok(false), // lease lost: the new holder finishes
            Err(error) => {
                tracing::warn!(file_id = %file.file_id, %error, "detect run failed");
                casescope_runtime::metrics::metrics()
                    .detect_runs
                    .add(1, &casescope_runtime::metrics::attr("outcome", "failed"));
                if let Ok(mut tx) = self.leases.fenced(lease).await {
                    self.repo
                        .finish_run(
                            &mut tx,
                            &file.file_id,
                            None,
                            mode,
                            0,
                            Some(&error),
                            self.settings.max_attempts,
                        )
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
        let mut evaluated = evaluated;
        // A delta replaces the detections of the changed rules, and the correlation
        // inputs of every rule the subset evaluated for correlations (changed
        // correlations read rules that did not change).
        let input_rules: Option<Vec<String>> = scope_rules.as_ref().map(|rules| {
            let mut ids: Vec<String> = rules.clone();
            ids.extend(
                (0..compiled.set.rules.len())
                    .filter(|i| compiled.correlated[*i])
                    .map(|i| rule_db_id(&compiled, i)),
            );
            ids.sort();
            ids.dedup();
            ids
        });
        if let (Some(rules), Some(inputs)) = (&scope_rules, &input_rules) {
            let keep: HashSet<&str> = rules.iter().map(String::as_str).collect();
            evaluated
                .detections
                .retain(|d| keep.contains(d.rule_id.as_str()));
            let keep: HashSet<&str> = inputs.iter().map(String::as_str).collect();
            evaluated
                .inputs
                .retain(|i| keep.contains(i.rule_id.as_str()));
        }
        let evaluate_ms = evaluating.elapsed().as_millis() as u64;
        let writing = std::time::Instant::now();
        let new = self
            .replace_file_rows(
                &mut tx,
                file,
                scope_rules.as_deref(),
                input_rules.as_deref(),
                &evaluated,
            )
            .await
            .map_err(transient)?;
        self.repo
            .finish_run(
                &mut tx,
                &file.file_id,
                Some((target, started.generation)),
                mode,
                evaluated.events_scanned as i64,
                None,
                self.settings.max_attempts,
            )
            .await
            .map_err(transient)?;
        self.repo
            .touch_case(&mut tx, &file.case_id)
            .await
            .map_err(transient)?;
        self.stage_changed(&mut tx, &started, "done", "")
            .await
            .map_err(transient)?;
        tx.commit().await.map_err(|e| transient(DbError::from(e)))?;
        let metrics = casescope_runtime::metrics::metrics();
        metrics
            .detect_runs
            .add(1, &casescope_runtime::metrics::attr("outcome", "done"));
        metrics.detections.add(new as u64, &[]);
        tracing::info!(
            file_id = %file.file_id, mode, events = evaluated.events_scanned,
            detections = evaluated.detections.len(), new_detections = new,
            evaluate_ms, write_ms = writing.elapsed().as_millis() as u64,
            correlation_inputs = evaluated.inputs.len(), "detect run finished"
        );
        Ok(true)
    }

    /// Tells the cases service, in `tx`, how the file's detect stage stands.
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

    /// Replaces the file's rows in scope; returns how many detections are new.
    async fn replace_file_rows(
        &self,
        tx: &mut Tx<'_>,
        file: &FileRow,
        rules: Option<&[String]>,
        input_rules: Option<&[String]>,
        evaluated: &Evaluated,
    ) -> Result<usize, String> {
        let before: HashSet<String> = self
            .repo
            .file_detection_ids(tx, &file.case_id, &file.file_id, rules)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        self.repo
            .delete_file_rows(tx, &file.case_id, &file.file_id, rules, input_rules)
            .await
            .map_err(|e| e.to_string())?;
        let mut new = 0;
        for chunk in evaluated.detections.chunks(WRITE_CHUNK) {
            self.repo
                .insert_detections(tx, chunk)
                .await
                .map_err(|e| e.to_string())?;
            let facts = chunk
                .iter()
                .filter(|row| !before.contains(&row.id))
                .map(fact_message)
                .collect::<Result<Vec<_>, _>>()?;
            new += facts.len();
            self.outbox
                .enqueue_many(tx, &facts)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.repo
            .insert_inputs(tx, &evaluated.inputs)
            .await
            .map_err(|e| e.to_string())?;
        Ok(new)
    }

    /// Scans and evaluates the file; `Ok(None)` when the lease was lost.
    async fn evaluate_file(
        &self,
        file: &FileRow,
        lease: &Lease,
        compiled: &Arc<Compiled>,
        ruleset_version: i64,
    ) -> Result<Option<Evaluated>, String> {
        let keep_alive = self
            .leases
            .keep_alive(lease, self.settings.lease_ttl, || {});
        let mut evaluated = Evaluated {
            detections: Vec::new(),
            inputs: Vec::new(),
            events_scanned: 0,
        };
        if compiled.set.rules.is_empty() {
            // Nothing to evaluate (e.g. a delta that only disabled rules).
            return Ok(Some(evaluated));
        }
        let ids: Arc<Vec<String>> = Arc::new(
            (0..compiled.set.rules.len())
                .map(|i| rule_db_id(compiled, i))
                .collect(),
        );
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
        let mut collect = |output: BatchOutput, evaluated: &mut Evaluated| -> Result<(), String> {
            unreadable += output.unreadable;
            evaluated.detections.extend(output.detections);
            evaluated.inputs.extend(output.inputs);
            if evaluated.detections.len() > self.settings.max_detections_per_file {
                return Err(format!(
                    "more than {} detections in this file (the per-file limit); disable the noisiest rules or raise the limit",
                    self.settings.max_detections_per_file
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
            evaluated.events_scanned += events.len() as u64;
            let compiled = compiled.clone();
            let ids = ids.clone();
            running.push_back(tokio::task::spawn_blocking(move || {
                evaluate_batch(&compiled, &ids, events, ruleset_version, now)
            }));
            while running.len() >= workers {
                let Some(first) = running.pop_front() else {
                    break;
                };
                let output = first
                    .await
                    .map_err(|e| format!("evaluation crashed: {e}"))?;
                collect(output, &mut evaluated)?;
            }
        }
        while let Some(first) = running.pop_front() {
            let output = first
                .await
                .map_err(|e| format!("evaluation crashed: {e}"))?;
            collect(output, &mut evaluated)?;
        }
        if unreadable > 0 {
            return Err(format!(
                "{unreadable} events of this file have unreadable fields; re-index the file"
            ));
        }
        if keep_alive.is_lost() {
            return Ok(None);
        }
        Ok(Some(evaluated))
    }
}

/// `file.indexed` and `file.archived` facts start the detect stage of that file at its
/// generation (an archived file's run finds no events and so drops its detections).
#[async_trait::async_trait]
impl casescope_bus::facts::StartsOnIndexed for DetectStage {
    async fn start(
        &self,
        fact: &casescope_bus::facts::FileIndexedInfo,
    ) -> Result<(), HandlerError> {
        self.on_job(&StageJob {
            case_id: fact.case_id.clone(),
            file_id: fact.file_id.clone(),
            stage: STAGE.into(),
            generation: fact.generation,
            reason: fact.kind.clone(),
        })
        .await
    }
}

#[async_trait::async_trait]
impl Handler for DetectStage {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let job: StageJob = serde_json::from_slice(&message.payload)
            .map_err(|error| HandlerError::Poison(format!("not a detect job: {error}")))?;
        if job.case_id.is_empty() || job.file_id.is_empty() {
            return Err(HandlerError::Poison(
                "a detect job needs case_id and file_id".into(),
            ));
        }
        self.on_job(&job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_ids_are_stable_and_unambiguous() {
        assert_eq!(detection_id(&["r", "e"]), detection_id(&["r", "e"]));
        assert_ne!(detection_id(&["r", "e"]), detection_id(&["re", ""]));
        assert_eq!(detection_id(&["a", "b"]).len(), 32);
    }

    #[test]
    fn comma_lists_round_trip() {
        assert_eq!(
            comma_list(r#"["execution","persistence"]"#),
            ",execution,persistence,"
        );
        assert_eq!(
            list_of(",execution,persistence,"),
            vec!["execution", "persistence"]
        );
        assert_eq!(comma_list("[]"), "");
        assert!(list_of("").is_empty());
    }
}
