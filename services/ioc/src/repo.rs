//! The ioc service's tables: the IOCs of each case and of each global list (an IOC's
//! `case_id` column holds its owner: a case id, or `list:<list id>`), the lists and
//! the cases they apply to, each case's IOC version with its change log, the hunt stage
//! state per file, and the matches. SQL is the common subset
//! of SQLite and PostgreSQL.

use casescope_db::{Database, Migration, Migrations};

pub const MIGRATIONS: Migrations = Migrations {
    service: "ioc",
    steps: &[
        Migration {
            version: 1,
            name: "iocs, case versions and change log, hunt stage, matches",
            sql: "
CREATE TABLE iocs (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    ioc_type TEXT NOT NULL,
    value TEXT NOT NULL,
    normalized TEXT NOT NULL,
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    tlp TEXT NOT NULL,
    confidence BIGINT NOT NULL,
    enabled BIGINT NOT NULL,
    labels TEXT NOT NULL,
    first_seen BIGINT,
    last_seen BIGINT,
    expires_at BIGINT,
    enrichment_json TEXT NOT NULL,
    enriched_at BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE UNIQUE INDEX iocs_by_value ON iocs (case_id, ioc_type, normalized);
CREATE INDEX iocs_by_case ON iocs (case_id, created_at, id);
CREATE TABLE ioc_case_versions (
    case_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    log_floor BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE ioc_changes (
    case_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    ioc_id TEXT NOT NULL,
    PRIMARY KEY (case_id, version, ioc_id)
);
CREATE TABLE ioc_files (
    file_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    generation BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    requested_version BIGINT NOT NULL DEFAULT 0,
    hunted_version BIGINT NOT NULL DEFAULT -1,
    last_mode TEXT NOT NULL DEFAULT '',
    events_scanned BIGINT NOT NULL DEFAULT 0,
    matches BIGINT NOT NULL DEFAULT 0,
    completed_runs BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX ioc_files_by_case ON ioc_files (case_id, file_id);
CREATE INDEX ioc_files_by_status ON ioc_files (status, updated_at);
CREATE TABLE ioc_matches (
    case_id TEXT NOT NULL,
    id TEXT NOT NULL,
    ioc_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    field TEXT NOT NULL,
    matched_value TEXT NOT NULL,
    event_ts BIGINT NOT NULL,
    ioc_type TEXT NOT NULL,
    ioc_value TEXT NOT NULL,
    matched_at BIGINT NOT NULL,
    PRIMARY KEY (case_id, id)
);
CREATE INDEX ioc_matches_by_time ON ioc_matches (case_id, event_ts, id);
CREATE INDEX ioc_matches_by_file ON ioc_matches (case_id, file_id, ioc_id);
CREATE INDEX ioc_matches_by_ioc ON ioc_matches (case_id, ioc_id);
CREATE INDEX ioc_matches_by_event ON ioc_matches (case_id, event_id);
",
        },
        Migration {
            version: 2,
            name: "global IOC lists",
            sql: lists::MIGRATION,
        },
    ],
};

/// Hunt stage states of a file.
pub mod status {
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
}

mod files;
mod iocs;
mod lists;
mod matches;

pub use casescope_db::filter::{Filter, Param, bind_all};
pub use files::FileRow;
pub use iocs::{Hunted, IocRow};
pub use lists::{ListRow, Owner, name_key as list_name_key};
pub use matches::{MatchRow, Scope};

#[derive(Debug, Clone)]
pub struct IocRepo {
    db: Database,
}

impl IocRepo {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }
}

fn flag(row: &sqlx::any::AnyRow, column: &str) -> Result<bool, casescope_db::DbError> {
    use sqlx::Row;
    Ok(row.try_get::<i64, _>(column)? != 0)
}
