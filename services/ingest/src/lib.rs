//! The ingest service: evidence upload (chunked, SHA-256 verified, resumable, de-duplicated
//! per case), ZIP member extraction, the ingest stage — parse, normalise and index every
//! record of a file exactly once under a per-file lease — and every query over the event
//! store (search, count, get, histogram, scan).
//!
//! It owns the evidence blobs, its `uploads`/`evidence_files` tables and the event store.
//! File records shown to analysts belong to the cases service: this service registers
//! files and reports their status through `FileRecordsService` (gRPC, in-process in
//! all-in-one mode), retrying until delivered.

mod api;
mod blobs;
mod cases_client;
mod convert;
mod histogram;
mod lifecycle;
mod purge;
mod reconcile;
mod repo;
mod stage;
mod streams;
mod upload;

pub use api::IngestApi;
pub use blobs::{BlobError, BlobStore};
pub use cases_client::CasesClient;
pub use lifecycle::CaseArchiver;
pub use purge::{CasePurger, INGEST_CASE_FACTS_CONSUMER};
pub use reconcile::Reconciler;
pub use repo::MIGRATIONS;
pub use stage::{INGEST_CONSUMER, IngestStage};

use casescope_bus::OUTBOX_MIGRATIONS;
use casescope_db::{CORE_MIGRATIONS, Migrations, PURGE_MIGRATIONS};
use std::path::PathBuf;
use std::time::Duration;

/// Everything this service needs in its database, in order.
pub const ALL_MIGRATIONS: &[Migrations] = &[
    CORE_MIGRATIONS,
    OUTBOX_MIGRATIONS,
    MIGRATIONS,
    PURGE_MIGRATIONS,
];

/// The lease stage name of ingestion.
pub const STAGE: &str = "ingest";

/// The largest request the ingest service decodes besides upload chunks: an event query
/// carries the annotation sets of the timeline, at most 1,000,000 tie-breakers of 8
/// bytes in all, plus the query.
pub const MAX_QUERY_REQUEST_BYTES: usize = 9 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Evidence blobs (`evidence/<case>/<sha256>.<ext>`), partial uploads (`uploads/`)
    /// and archived cases (`archives/<case>.zip`).
    pub data_dir: PathBuf,
    pub max_upload_bytes: u64,
    pub max_chunk_bytes: usize,
    pub lease_ttl: Duration,
    pub reconcile_period: Duration,
    /// Unfinished uploads are discarded after this long without activity.
    pub upload_retention: Duration,
    /// Runs of one file before it is marked failed.
    pub max_attempts: i64,
    /// Events per write to the event store.
    pub batch_size: usize,
    pub parse_limits: casescope_evidence::Limits,
    /// How long parsing one file may take: this, plus [`Self::parse_time_per_mib`] for
    /// each MiB of the file. A file that takes longer (crafted to make a parser spin, or
    /// far slower than any real log) fails with that said, and the next file goes on.
    pub parse_time_base: Duration,
    /// See [`Self::parse_time_base`]; real files parse at tens of MiB a second.
    pub parse_time_per_mib: Duration,
    pub archive_limits: casescope_evidence::archive::ArchiveLimits,
    /// Where evidence blobs and case archives live (files under `data_dir`, or S3).
    pub blobs: BlobStore,
}

impl IngestSettings {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            blobs: BlobStore::local(data_dir.clone()),
            data_dir,
            max_upload_bytes: 64 * 1024 * 1024 * 1024,
            max_chunk_bytes: 4 * 1024 * 1024,
            lease_ttl: Duration::from_secs(30),
            reconcile_period: Duration::from_secs(15),
            upload_retention: Duration::from_secs(24 * 3600),
            max_attempts: 5,
            batch_size: 2000,
            parse_limits: casescope_evidence::Limits::default(),
            parse_time_base: Duration::from_secs(300),
            parse_time_per_mib: Duration::from_secs(1),
            archive_limits: casescope_evidence::archive::ArchiveLimits::default(),
        }
    }

    /// The longest parse of a file of `bytes` ([`Self::parse_time_base`]).
    pub fn parse_time_limit(&self, bytes: u64) -> Duration {
        let mib = u32::try_from(bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX);
        self.parse_time_base
            .saturating_add(self.parse_time_per_mib.saturating_mul(mib))
    }

    fn uploads_dir(&self) -> PathBuf {
        self.data_dir.join("uploads")
    }

    fn evidence_dir(&self, case_id: &str) -> PathBuf {
        self.data_dir.join("evidence").join(case_id)
    }

    /// The local path of a blob from its `evidence_files.blob_path`: stored relative to
    /// the data directory (so replicas that mount storage at different paths, or reach
    /// it through S3, agree on it); an absolute path is a row written before that.
    pub(crate) fn blob_file(&self, stored: &str) -> PathBuf {
        let path = std::path::Path::new(stored);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.data_dir.join(path)
        }
    }

    /// What `evidence_files.blob_path` records of the blob at `path` (see
    /// [`Self::blob_file`]).
    pub(crate) fn stored_blob_path(&self, path: &std::path::Path) -> String {
        path.strip_prefix(&self.data_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The archive of an archived case (beside the blobs, on the same storage).
    fn archive_path(&self, case_id: &str) -> PathBuf {
        self.data_dir
            .join("archives")
            .join(format!("{case_id}.zip"))
    }
}
