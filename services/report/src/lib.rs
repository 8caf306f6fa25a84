//! The report service: case reports for people who will not open the timeline.
//!
//! How it runs (docs/reports.md):
//! - `CreateReport` records a job (status QUEUED) and, in the same transaction, queues
//!   its signal on `casescope.v1.jobs.report` through the outbox.
//! - A worker takes the report's `report` lease (epoch-fenced, kept alive while it
//!   works) and builds every requested format in one pass over the case, section by
//!   section, from the other services' RPCs: the case and its files (cases), the
//!   detection counts (detect), the IOC match counts (ioc), the tagged and starred
//!   events with their comments (the cases service's streamed timeline export) and the
//!   case notes. Nothing is loaded whole: the timeline arrives in chunks of rows, each
//!   batch is rendered on the blocking pool, and each format's output is stored in
//!   1 MiB chunks (fenced writes) as it grows, its SHA-256 computed on the way.
//! - HTML and Markdown come from templates (`templates/`, replaceable by a deployment
//!   with `CASESCOPE_REPORT_TEMPLATE_DIR`) whose every value is escaped for its format;
//!   JSON is written by the service.
//! - A failed attempt is retried (a lost worker's job by the reconciler once its lease
//!   expires) up to `max_attempts`, then the report is FAILED with the reason. Deleting
//!   a report cancels its job. `report.ready` / `report.failed` facts go out on
//!   `casescope.v1.reports.<case>`.
//!
//! - An AI summary, when asked for and allowed by the deployment, is written by the
//!   configured LLM from a bounded selection and checked for citations ([`ai`]).
//!
//! It owns the `report*` tables; everything it reports on belongs to other services.

mod ai;
mod api;
mod artefact;
mod job;
mod model;
mod peers;
mod purge;
mod reconcile;
mod render;
mod repo;

pub use ai::{AiSettings, LlmApi, LlmEndpoint, LlmTimeouts};
pub use api::ReportApi;
pub use job::{REPORT_CONSUMER, ReportWorker};
pub use peers::Peers;
pub use purge::{CasePurger, REPORT_CASE_FACTS_CONSUMER};
pub use reconcile::Reconciler;
pub use render::{PdfFonts, TemplateError, Templates};
pub use repo::MIGRATIONS;

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

/// The lease stage of a report job (also the job subject suffix).
pub const STAGE: &str = "report";

/// Bytes per stored chunk of an artefact, and per `DownloadReport` message.
pub const CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ReportSettings {
    pub lease_ttl: Duration,
    pub reconcile_period: Duration,
    /// Attempts of one job before the report is FAILED.
    pub max_attempts: i64,
    /// Reports one case may hold (older ones must be deleted first).
    pub max_reports_per_case: i64,
    /// Reports of one case queued or running at once.
    pub max_active_per_case: i64,
    /// Largest artefact (bytes); a bigger one fails the report with that reason.
    pub max_artefact_bytes: u64,
    /// Events of the tagged timeline one report carries at most (the rest are counted
    /// and said to be left out).
    pub max_timeline_events: u64,
    /// Characters of one value (a comment, a field) shown at most.
    pub max_value_chars: usize,
    /// Event fields shown per timeline event at most.
    pub max_fields_per_event: usize,
    /// Timeout of each call to another service (a streamed export: between two chunks).
    pub peer_timeout: Duration,
    /// The templates (built in, or a deployment's).
    pub templates: Templates,
    /// The fonts of PDF reports (`None`: PDF is refused, naming the setting).
    pub pdf_fonts: Option<PdfFonts>,
    /// The optional AI summary.
    pub ai: AiSettings,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            reconcile_period: Duration::from_secs(15),
            max_attempts: 3,
            max_reports_per_case: 200,
            max_active_per_case: 4,
            max_artefact_bytes: 2 * 1024 * 1024 * 1024,
            max_timeline_events: 1_000_000,
            max_value_chars: 2_000,
            max_fields_per_event: 40,
            peer_timeout: Duration::from_secs(60),
            templates: Templates::builtin(),
            pdf_fonts: None,
            ai: AiSettings::default(),
        }
    }
}
