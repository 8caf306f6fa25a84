//! The detect service's tables: rules and the ruleset version with its change log, the
//! detect stage state per file, correlation inputs, per-case correlation state and the
//! detections themselves. SQL is the common subset of SQLite and PostgreSQL.

use casescope_db::{Database, Migration, Migrations};

pub const MIGRATIONS: Migrations = Migrations {
    service: "detect",
    steps: &[
        Migration {
            version: 1,
            name: "rules, ruleset, detect stage, detections",
            sql: "
CREATE TABLE detect_rules (
    id TEXT PRIMARY KEY,
    name TEXT,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    level TEXT NOT NULL,
    tags TEXT NOT NULL,
    tactics TEXT NOT NULL,
    techniques TEXT NOT NULL,
    author TEXT NOT NULL,
    refs TEXT NOT NULL,
    falsepositives TEXT NOT NULL,
    ls_product TEXT NOT NULL,
    ls_category TEXT NOT NULL,
    ls_service TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    refusal_reason TEXT NOT NULL,
    is_correlation BIGINT NOT NULL,
    correlation_type TEXT NOT NULL,
    correlated TEXT NOT NULL,
    source_path TEXT NOT NULL,
    source_label TEXT NOT NULL,
    rule_date TEXT NOT NULL,
    rule_modified TEXT NOT NULL,
    yaml TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX detect_rules_by_title ON detect_rules (title, id);
CREATE TABLE detect_ruleset (
    singleton BIGINT PRIMARY KEY,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO detect_ruleset (singleton, version, updated_at) VALUES (1, 0, 0);
CREATE TABLE detect_rule_changes (
    version BIGINT NOT NULL,
    rule_id TEXT NOT NULL,
    PRIMARY KEY (version, rule_id)
);
CREATE TABLE detect_files (
    file_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    generation BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    requested_version BIGINT NOT NULL DEFAULT 0,
    evaluated_version BIGINT NOT NULL DEFAULT 0,
    last_mode TEXT NOT NULL DEFAULT '',
    events_scanned BIGINT NOT NULL DEFAULT 0,
    detections BIGINT NOT NULL DEFAULT 0,
    completed_runs BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX detect_files_by_case ON detect_files (case_id, file_id);
CREATE INDEX detect_files_by_status ON detect_files (status, updated_at);
CREATE TABLE detect_cases (
    case_id TEXT PRIMARY KEY,
    generation BIGINT NOT NULL,
    correlated_generation BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    updated_at BIGINT NOT NULL
);
CREATE TABLE detect_correlation_inputs (
    case_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_ts BIGINT NOT NULL,
    computer TEXT NOT NULL,
    channel TEXT NOT NULL,
    event_code BIGINT,
    record_id BIGINT,
    vals TEXT NOT NULL,
    PRIMARY KEY (case_id, file_id, rule_id, event_id)
);
CREATE TABLE detections (
    id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    rule_content_sha256 TEXT NOT NULL,
    rule_title TEXT NOT NULL,
    level BIGINT NOT NULL,
    event_ts BIGINT NOT NULL,
    computer TEXT NOT NULL,
    channel TEXT NOT NULL,
    event_code BIGINT,
    record_id BIGINT,
    event_ids TEXT NOT NULL,
    tactics TEXT NOT NULL,
    techniques TEXT NOT NULL,
    matched_fields TEXT NOT NULL,
    is_correlation BIGINT NOT NULL,
    correlated_event_count BIGINT NOT NULL,
    first_ts BIGINT NOT NULL,
    ruleset_version BIGINT NOT NULL,
    detected_at BIGINT NOT NULL,
    PRIMARY KEY (case_id, id)
);
CREATE INDEX detections_by_time ON detections (case_id, event_ts, id);
CREATE INDEX detections_by_file ON detections (case_id, file_id, rule_id);
CREATE INDEX detections_by_rule ON detections (case_id, rule_id);
",
        },
        Migration {
            version: 2,
            name: "the events of each detection, indexed",
            // Filled for existing detections by the reconciler (`backfill_detection_events`):
            // splitting the JSON lists is not in the SQL subset both databases share.
            sql: "
CREATE TABLE detection_events (
    case_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    detection_id TEXT NOT NULL,
    PRIMARY KEY (case_id, event_id, detection_id)
);
CREATE INDEX detection_events_by_detection ON detection_events (case_id, detection_id);
CREATE TABLE detect_maintenance (
    task TEXT PRIMARY KEY,
    cursor_case TEXT NOT NULL,
    cursor_id TEXT NOT NULL
);
INSERT INTO detect_maintenance (task, cursor_case, cursor_id) VALUES ('detection_events', '', '');
",
        },
    ],
};

/// Detect stage states of a file.
pub mod status {
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
}

/// Where a detection row belongs: a file's run, or the case's correlation pass.
pub mod scope {
    pub const FILE: &str = "file";
    pub const CASE: &str = "case";
}

mod detections;
mod files;
mod rules;

pub use detections::{DetectionRow, InputRow};
pub use files::FileRow;
pub use rules::RuleRow;

pub use casescope_db::filter::{Filter, Param, bind_all};

#[derive(Debug, Clone)]
pub struct DetectRepo {
    db: Database,
}

impl DetectRepo {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }
}
