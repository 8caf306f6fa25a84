//! The detect service: Sigma rules (import, validation, enable/disable, a versioned
//! ruleset), the per-file detect stage, correlation over a whole case, and the
//! detections analysts query.
//!
//! How it runs (docs/detection.md, "The detect service"):
//! - The ingest service publishes a `file.indexed` fact when a file is indexed (and
//!   `file.archived` when its events leave the store); this service's own durable
//!   consumer of those facts starts the file's detect stage (ingest knows none of its
//!   downstream stages; detect's own jobs carry re-runs and the reconciler's). The stage
//!   runs under the file's lease (epoch-fenced), scans the file's events from the ingest
//!   service (`ScanFileEvents`, a bounded stream), evaluates the enabled rules on the
//!   blocking pool, and replaces that file's detections in one transaction. Detection
//!   id = hash(rule id, event id): a re-run never duplicates.
//! - Matches of rules that correlation rules reference are kept as correlation inputs
//!   per file; after a file changes, the case's correlations are re-evaluated on event
//!   time over the inputs of every file of the case, under a per-case lease.
//! - Every ruleset change (import, enable/disable) bumps the ruleset version and logs
//!   which rules changed; files evaluated at an older version are re-evaluated by the
//!   reconciler for the changed rules only (a full run when the log no longer reaches
//!   back that far).
//! - New detections are published as JSON on `casescope.v1.detections.<case>` through
//!   the outbox, in the same transaction that stores them.
//!
//! It owns its `detect_*` tables and `detections`; events belong to the ingest service.

mod api;
mod import;
mod purge;
mod reconcile;
mod repo;
mod ruleset;
mod stage;

pub use api::DetectApi;
pub use casescope_proto::scan::EventsClient;
pub use import::{ImportFile, ImportOptions, Planned, Refused};
pub use purge::{CASE_STATE_MIGRATIONS, CasePurger, DETECT_CASE_FACTS_CONSUMER};
pub use reconcile::Reconciler;
pub use repo::MIGRATIONS;
pub use stage::{DETECT_CONSUMER, DETECT_INDEXED_CONSUMER, DetectStage};

use casescope_bus::OUTBOX_MIGRATIONS;
use casescope_db::{CORE_MIGRATIONS, Migrations, PURGE_MIGRATIONS};
use std::sync::Arc;
use std::time::Duration;

/// Everything this service needs in its database, in order.
pub const ALL_MIGRATIONS: &[Migrations] = &[
    CORE_MIGRATIONS,
    OUTBOX_MIGRATIONS,
    MIGRATIONS,
    PURGE_MIGRATIONS,
    CASE_STATE_MIGRATIONS,
];

/// The lease stage name of per-file detection (also the job subject suffix).
pub const STAGE: &str = "detect";
/// The lease stage name of per-case correlation.
pub const CORRELATE_STAGE: &str = "correlate";

#[derive(Debug, Clone)]
pub struct DetectSettings {
    pub lease_ttl: Duration,
    pub reconcile_period: Duration,
    /// Runs of one file before it is marked failed.
    pub max_attempts: i64,
    /// Events per scan batch read from the ingest service.
    pub scan_batch: u32,
    /// A file producing more detections than this fails with that reason (raise it or
    /// disable the noisy rules); bounds the memory of one run.
    pub max_detections_per_file: usize,
    /// Correlation inputs read for one case; above it the case's correlation fails
    /// with that reason.
    pub max_correlation_inputs: usize,
    /// Largest rule file accepted by ImportRules (zips: total uncompressed).
    pub max_rule_file_bytes: u64,
    /// Largest chunk of an ImportRules stream.
    pub max_import_chunk_bytes: usize,
    /// Largest whole import (all files of one stream).
    pub max_import_bytes: u64,
    /// Ruleset change log entries kept; files further behind get a full run.
    pub change_log_versions: i64,
    /// Load the built-in rule pack into an empty rule store at start-up.
    pub seed_builtin_rules: bool,
    /// How rules' logsources, fields and `expand` placeholders are read (the built-in
    /// mapping unless `CASESCOPE_LOGSOURCE_MAPPING` names a file).
    pub mapping: Arc<casescope_sigma::LogsourceMapping>,
}

impl Default for DetectSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            reconcile_period: Duration::from_secs(15),
            max_attempts: 5,
            scan_batch: 1000,
            max_detections_per_file: 1_000_000,
            max_correlation_inputs: 2_000_000,
            max_rule_file_bytes: 32 * 1024 * 1024,
            max_import_chunk_bytes: 1024 * 1024,
            max_import_bytes: 256 * 1024 * 1024,
            change_log_versions: 1000,
            seed_builtin_rules: true,
            mapping: Arc::new(casescope_sigma::LogsourceMapping::built_in()),
        }
    }
}
