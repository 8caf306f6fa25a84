//! The ioc service: a case's indicators of compromise (typed, canonical, imported from
//! CSV, STIX 2.1 and MISP, exported in the same formats), the per-file hunt stage, and
//! the matches analysts query.
//!
//! How it runs (docs/iocs.md):
//! - The ingest service publishes a `file.indexed` fact when a file's events are in the
//!   store (and `file.archived` when they leave it). This service's own durable
//!   consumer of those facts records the file and runs its hunt stage under the file's
//!   `ioc_hunt` lease (epoch-fenced): one scan of the file's events from the ingest
//!   service evaluates every enabled IOC of the case together ([`casescope_ioc::Hunter`]),
//!   and one fenced transaction replaces that file's matches. Match id =
//!   hash(IOC id, event id, field): a re-run never duplicates.
//! - Every change of a case's hunted IOCs (created, enabled/disabled, expiry changed,
//!   deleted, imported) bumps the case's IOC version and logs which IOCs changed; files
//!   hunted at an older version are re-hunted for the changed IOCs only (a full hunt
//!   when the log no longer reaches back). A deleted or disabled IOC's matches go in the
//!   same transaction, and only those.
//! - New matches are published as JSON on `casescope.v1.ioc_matches.<case>` through the
//!   outbox, in the same transaction that stores them.
//!
//! It owns the `ioc*` tables; events belong to the ingest service.

mod api;
mod purge;
mod reconcile;
mod repo;
mod stage;

pub use api::IocApi;
pub use casescope_proto::scan::EventsClient;
pub use purge::{CasePurger, IOC_CASE_FACTS_CONSUMER};
pub use reconcile::Reconciler;
pub use repo::MIGRATIONS;
pub use stage::{HuntStage, IOC_CONSUMER, IOC_INDEXED_CONSUMER, match_id};

use casescope_bus::OUTBOX_MIGRATIONS;
use casescope_db::{CORE_MIGRATIONS, Migrations, PURGE_MIGRATIONS};
use std::time::Duration;

/// Everything this service needs in its database, in order.
pub const ALL_MIGRATIONS: &[Migrations] = &[
    CORE_MIGRATIONS,
    OUTBOX_MIGRATIONS,
    MIGRATIONS,
    PURGE_MIGRATIONS,
];

/// The lease stage name of a file's hunt (also the job subject suffix).
pub const STAGE: &str = "ioc_hunt";

/// The largest file `ImportIocsFile` (one unary request, for browsers) takes; the
/// service decodes requests up to this size plus room for the header (the gateway reads
/// at most 16 MiB of a first message).
pub const MAX_FILE_IMPORT_BYTES: usize = 15 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct IocSettings {
    pub lease_ttl: Duration,
    pub reconcile_period: Duration,
    /// Runs of one file before it is marked failed.
    pub max_attempts: i64,
    /// Events per scan batch read from the ingest service.
    pub scan_batch: u32,
    /// A file with more matches than this fails with that reason (bounds one run's
    /// memory; the noisiest IOCs are the ones to disable).
    pub max_matches_per_file: usize,
    /// Largest ImportIocs stream (bytes).
    pub max_import_bytes: u64,
    /// Largest chunk of an ImportIocs stream.
    pub max_import_chunk_bytes: usize,
    /// Records (IOCs, duplicates and refusals) read from one import at most.
    pub max_import_records: u64,
    /// IOCs one case may hold.
    pub max_iocs_per_case: u64,
    /// IOC change-log versions kept per case; files further behind get a full hunt.
    pub change_log_versions: i64,
}

impl Default for IocSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            reconcile_period: Duration::from_secs(15),
            max_attempts: 5,
            scan_batch: 1000,
            max_matches_per_file: 1_000_000,
            max_import_bytes: 256 * 1024 * 1024,
            max_import_chunk_bytes: 1024 * 1024,
            max_import_records: 2_000_000,
            max_iocs_per_case: 1_000_000,
            change_log_versions: 1000,
        }
    }
}
