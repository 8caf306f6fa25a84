//! The cases service: the lifecycle of cases (create, get, list, update, archive,
//! restore, delete), their settings, and the listing of a case's files with status and
//! counts. Every change commits together with its `casescope.v1.cases.<case>` fact in
//! the transactional outbox, so a fact is never lost nor published for a rolled-back
//! change.
//!
//! Annotations (tags, stars, comments on events) live here too ([`annotations`]), and
//! the case timeline joins them with the ingest service's events.
//! Saved searches, search history and case notes: [`searches`].

mod annotations;
mod context;
mod convert;
mod cursor;
mod export;
mod files;
mod jobs;
mod repo;
mod searches;
mod service;
mod sets;
mod stages;
mod timeline;
mod validate;

pub use repo::{CaseRow, CaseState, CasesRepo, FileRow, MIGRATIONS, Settings};
pub use service::CasesApi;
pub use stages::{CASES_FILE_STAGES_CONSUMER, DEFAULT_FILE_STAGES, StageFacts};

use casescope_bus::OUTBOX_MIGRATIONS;
use casescope_db::{CORE_MIGRATIONS, Migrations};

/// Largest request the cases service reads: a bulk tag of 100,000 event ids (about
/// 7 MB) with room to spare.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Everything this service needs in its database, in order.
pub const ALL_MIGRATIONS: &[Migrations] = &[CORE_MIGRATIONS, OUTBOX_MIGRATIONS, MIGRATIONS];
