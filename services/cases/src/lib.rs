//! The cases service: the lifecycle of cases (create, get, list, update, archive,
//! restore, delete), their settings, and the listing of a case's files with status and
//! counts. Every change commits together with its `casescope.v1.cases.<case>` fact in
//! the transactional outbox, so a fact is never lost nor published for a rolled-back
//! change.
//!
//! Not here yet: tags, comments, saved searches, search history and the timeline
//! (their RPCs answer `UNIMPLEMENTED`), and writing file rows (ingestion will).

mod cursor;
mod files;
mod repo;
mod service;
mod validate;

pub use repo::{CaseRow, CaseState, CasesRepo, FileRow, MIGRATIONS, Settings};
pub use service::CasesApi;

use casescope_bus::OUTBOX_MIGRATIONS;
use casescope_db::{CORE_MIGRATIONS, Migrations};

/// Everything this service needs in its database, in order.
pub const ALL_MIGRATIONS: &[Migrations] = &[CORE_MIGRATIONS, OUTBOX_MIGRATIONS, MIGRATIONS];
