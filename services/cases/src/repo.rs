//! The cases service's tables and every SQL statement on them. Runs unchanged on SQLite
//! and PostgreSQL (see casescope-db for the dialect subset).

use casescope_db::{Database, DbError, Migration, Migrations, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

pub const MIGRATIONS: Migrations = Migrations {
    service: "cases",
    steps: &[
        Migration {
            version: 1,
            name: "cases and case files",
            sql: "
CREATE TABLE cases (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL,
    deduplicate_events BIGINT NOT NULL,
    search_history_retention_days BIGINT NOT NULL,
    evidence_retention_days BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    archived_at BIGINT,
    version BIGINT NOT NULL
);
CREATE INDEX cases_by_created ON cases (created_at, id);
CREATE TABLE case_files (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    format TEXT NOT NULL,
    status TEXT NOT NULL,
    failed_stage TEXT,
    error TEXT,
    records_read BIGINT NOT NULL DEFAULT 0,
    events_indexed BIGINT NOT NULL DEFAULT 0,
    records_rejected BIGINT NOT NULL DEFAULT 0,
    duplicates_skipped BIGINT NOT NULL DEFAULT 0,
    rejects_by_reason TEXT NOT NULL DEFAULT '{}',
    parent_archive_id TEXT,
    uploaded_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX case_files_by_case ON case_files (case_id, uploaded_at, id);
",
        },
        Migration {
            version: 2,
            name: "file status sequence",
            sql: "ALTER TABLE case_files ADD COLUMN status_sequence BIGINT NOT NULL DEFAULT 0;",
        },
        Migration {
            version: 3,
            name: "why a restore was refused",
            sql: "ALTER TABLE cases ADD COLUMN restore_error TEXT;",
        },
        Migration {
            version: 4,
            name: "annotations: tags, stars, comments",
            sql: crate::annotations::store::MIGRATION,
        },
        Migration {
            version: 5,
            name: "saved searches, search history, case notes",
            sql: crate::searches::MIGRATION,
        },
        Migration {
            version: 6,
            name: "annotation jobs",
            sql: crate::jobs::MIGRATION,
        },
        Migration {
            version: 7,
            name: "file status from every stage",
            sql: crate::stages::MIGRATION,
        },
        Migration {
            version: 8,
            name: "file uploaders",
            sql: "ALTER TABLE case_files ADD COLUMN uploaded_by TEXT NOT NULL DEFAULT '';
ALTER TABLE case_files ADD COLUMN uploaded_by_name TEXT NOT NULL DEFAULT '';",
        },
    ],
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseState {
    Open,
    Archived,
    /// A restore runs: still read-only, back to open (or archived) when it ends.
    Restoring,
}

impl CaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::Archived => "archived",
            CaseState::Restoring => "restoring",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "archived" => CaseState::Archived,
            "restoring" => CaseState::Restoring,
            _ => CaseState::Open,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    pub deduplicate_events: bool,
    pub search_history_retention_days: u32,
    pub evidence_retention_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub state: CaseState,
    pub settings: Settings,
    pub created_at: i64,
    pub updated_at: i64,
    pub archived_at: Option<i64>,
    pub version: i64,
    pub file_count: i64,
    /// Why the last restore was refused.
    pub restore_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: String,
    pub case_id: String,
    pub name: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub format: String,
    pub status: String,
    pub failed_stage: Option<String>,
    pub error: Option<String>,
    pub records_read: i64,
    pub events_indexed: i64,
    pub records_rejected: i64,
    pub duplicates_skipped: i64,
    pub rejects_by_reason: String,
    pub parent_archive_id: Option<String>,
    pub uploaded_at: i64,
    pub updated_at: i64,
    /// The status the ingest service reported (`status` is derived from it and the
    /// downstream stages); empty for rows written before stages were tracked.
    pub ingest_status: String,
    /// The ingest generation of the file's events.
    pub generation: i64,
    /// Who uploaded it (user id and name; empty when not recorded).
    pub uploaded_by: String,
    pub uploaded_by_name: String,
}

/// A position in a listing ordered by (time, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub at: i64,
    pub id: String,
}

const CASE_COLUMNS: &str = "c.id, c.name, c.description, c.state, c.deduplicate_events, \
    c.search_history_retention_days, c.evidence_retention_days, c.created_at, c.updated_at, \
    c.archived_at, c.version, c.restore_error, (SELECT COUNT(*) FROM case_files f WHERE f.case_id = c.id) AS file_count";

fn case_from_row(row: &AnyRow) -> Result<CaseRow, DbError> {
    let get_i64 = |name: &str| row.try_get::<i64, _>(name).map_err(DbError::from);
    let state: String = row.try_get("state").map_err(DbError::from)?;
    Ok(CaseRow {
        id: row.try_get("id").map_err(DbError::from)?,
        name: row.try_get("name").map_err(DbError::from)?,
        description: row.try_get("description").map_err(DbError::from)?,
        state: CaseState::parse(&state),
        settings: Settings {
            deduplicate_events: get_i64("deduplicate_events")? != 0,
            search_history_retention_days: u32::try_from(get_i64("search_history_retention_days")?)
                .unwrap_or_default(),
            evidence_retention_days: u32::try_from(get_i64("evidence_retention_days")?)
                .unwrap_or_default(),
        },
        created_at: get_i64("created_at")?,
        updated_at: get_i64("updated_at")?,
        archived_at: row.try_get("archived_at").map_err(DbError::from)?,
        version: get_i64("version")?,
        file_count: get_i64("file_count")?,
        restore_error: row.try_get("restore_error").map_err(DbError::from)?,
    })
}

fn file_from_row(row: &AnyRow) -> Result<FileRow, DbError> {
    let text = |name: &str| row.try_get::<String, _>(name).map_err(DbError::from);
    let opt = |name: &str| {
        row.try_get::<Option<String>, _>(name)
            .map_err(DbError::from)
    };
    let int = |name: &str| row.try_get::<i64, _>(name).map_err(DbError::from);
    Ok(FileRow {
        id: text("id")?,
        case_id: text("case_id")?,
        name: text("name")?,
        sha256: text("sha256")?,
        size_bytes: int("size_bytes")?,
        format: text("format")?,
        status: text("status")?,
        failed_stage: opt("failed_stage")?,
        error: opt("error")?,
        records_read: int("records_read")?,
        events_indexed: int("events_indexed")?,
        records_rejected: int("records_rejected")?,
        duplicates_skipped: int("duplicates_skipped")?,
        rejects_by_reason: text("rejects_by_reason")?,
        parent_archive_id: opt("parent_archive_id")?,
        uploaded_at: int("uploaded_at")?,
        updated_at: int("updated_at")?,
        ingest_status: text("ingest_status")?,
        generation: int("generation")?,
        uploaded_by: text("uploaded_by")?,
        uploaded_by_name: text("uploaded_by_name")?,
    })
}

#[derive(Debug, Clone)]
pub struct CasesRepo {
    db: Database,
}

impl CasesRepo {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub async fn insert(&self, tx: &mut Tx<'_>, case: &CaseRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO cases (id, name, description, state, deduplicate_events, \
             search_history_retention_days, evidence_retention_days, created_at, updated_at, \
             archived_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&case.id)
        .bind(&case.name)
        .bind(&case.description)
        .bind(case.state.as_str())
        .bind(i64::from(case.settings.deduplicate_events))
        .bind(i64::from(case.settings.search_history_retention_days))
        .bind(i64::from(case.settings.evidence_retention_days))
        .bind(case.created_at)
        .bind(case.updated_at)
        .bind(case.archived_at)
        .bind(case.version)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn get(&self, tx: &mut Tx<'_>, id: &str) -> Result<Option<CaseRow>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CASE_COLUMNS} FROM cases c WHERE c.id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        row.as_ref().map(case_from_row).transpose()
    }

    /// Newest first, `limit` rows strictly after `after` in that order.
    /// Cases newest first; `only`: among these ids (the caller's cases), else all.
    pub async fn list(
        &self,
        include_archived: bool,
        after: Option<&Position>,
        limit: u32,
        only: Option<&[String]>,
    ) -> Result<Vec<CaseRow>, DbError> {
        let (at, id) = match after {
            Some(position) => (position.at, position.id.clone()),
            None => (i64::MAX, String::new()),
        };
        let among = match only {
            None => String::new(),
            Some([]) => return Ok(Vec::new()),
            Some(ids) => format!(
                " AND c.id IN ({})",
                (0..ids.len())
                    .map(|i| format!("${}", i + 5))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let sql = format!(
            "SELECT {CASE_COLUMNS} FROM cases c \
             WHERE ($1 = 1 OR c.state <> 'archived') \
               AND (c.created_at < $2 OR (c.created_at = $2 AND ($3 = '' OR c.id < $3))){among} \
             ORDER BY c.created_at DESC, c.id DESC LIMIT $4"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(include_archived))
            .bind(at)
            .bind(id)
            .bind(i64::from(limit));
        for id in only.unwrap_or_default() {
            query = query.bind(id.clone());
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter().map(case_from_row).collect()
    }

    /// Writes every mutable column of `case` if its stored version is `expected_version`.
    /// Returns false if the row changed meanwhile (or is gone).
    pub async fn update(
        &self,
        tx: &mut Tx<'_>,
        case: &CaseRow,
        expected_version: i64,
    ) -> Result<bool, DbError> {
        let result = sqlx::query(
            "UPDATE cases SET name = $2, description = $3, state = $4, deduplicate_events = $5, \
             search_history_retention_days = $6, evidence_retention_days = $7, updated_at = $8, \
             archived_at = $9, version = $10, restore_error = $12 WHERE id = $1 AND version = $11",
        )
        .bind(&case.id)
        .bind(&case.name)
        .bind(&case.description)
        .bind(case.state.as_str())
        .bind(i64::from(case.settings.deduplicate_events))
        .bind(i64::from(case.settings.search_history_retention_days))
        .bind(i64::from(case.settings.evidence_retention_days))
        .bind(case.updated_at)
        .bind(case.archived_at)
        .bind(case.version)
        .bind(expected_version)
        .bind(&case.restore_error)
        .execute(&mut **tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn delete(&self, tx: &mut Tx<'_>, id: &str) -> Result<bool, DbError> {
        // Files first: SQLite enforces ON DELETE CASCADE only with foreign_keys on, and
        // being explicit keeps both backends identical.
        sqlx::query("DELETE FROM case_files WHERE case_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        crate::annotations::store::delete_case(tx, id).await?;
        crate::searches::delete_case(tx, id).await?;
        sqlx::query("DELETE FROM annotation_jobs WHERE case_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        let result = sqlx::query("DELETE FROM cases WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Oldest upload first, `limit` rows after `after`; `status` filters when set.
    pub async fn list_files(
        &self,
        case_id: &str,
        status: Option<&str>,
        after: Option<&Position>,
        limit: u32,
    ) -> Result<Vec<FileRow>, DbError> {
        let (at, id) = match after {
            Some(position) => (position.at, position.id.clone()),
            None => (i64::MIN, String::new()),
        };
        let rows = sqlx::query(
            "SELECT * FROM case_files WHERE case_id = $1 AND ($2 = '' OR status = $2) \
               AND (uploaded_at > $3 OR (uploaded_at = $3 AND id > $4)) \
             ORDER BY uploaded_at, id LIMIT $5",
        )
        .bind(case_id)
        .bind(status.unwrap_or_default())
        .bind(at)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    /// Inserts the file unless a file with its id exists; returns the stored row.
    pub async fn register_file(&self, file: &FileRow) -> Result<FileRow, DbError> {
        sqlx::query(
            "INSERT INTO case_files (id, case_id, name, sha256, size_bytes, format, status, \
             parent_archive_id, uploaded_at, updated_at, ingest_status, uploaded_by, \
             uploaded_by_name) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $7, $11, $12) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&file.id)
        .bind(&file.case_id)
        .bind(&file.name)
        .bind(&file.sha256)
        .bind(file.size_bytes)
        .bind(&file.format)
        .bind(&file.status)
        .bind(&file.parent_archive_id)
        .bind(file.uploaded_at)
        .bind(file.updated_at)
        .bind(&file.uploaded_by)
        .bind(&file.uploaded_by_name)
        .execute(self.db.pool())
        .await?;
        self.get_file(&file.case_id, &file.id)
            .await?
            .ok_or_else(|| DbError::Query(format!("file {} vanished after insert", file.id)))
    }

    /// Writes status and counts when `sequence` is newer than the stored one.
    pub async fn update_file_status_in(
        &self,
        tx: &mut Tx<'_>,
        file: &FileRow,
        sequence: i64,
    ) -> Result<bool, DbError> {
        let result = sqlx::query(
            "UPDATE case_files SET status = $3, failed_stage = $4, error = $5, records_read = $6, \
             events_indexed = $7, records_rejected = $8, duplicates_skipped = $9, rejects_by_reason = $10, \
             updated_at = $11, status_sequence = $12, ingest_status = $13, generation = $14 \
             WHERE case_id = $1 AND id = $2 AND status_sequence < $12",
        )
        .bind(&file.case_id)
        .bind(&file.id)
        .bind(&file.status)
        .bind(&file.failed_stage)
        .bind(&file.error)
        .bind(file.records_read)
        .bind(file.events_indexed)
        .bind(file.records_rejected)
        .bind(file.duplicates_skipped)
        .bind(&file.rejects_by_reason)
        .bind(file.updated_at)
        .bind(sequence)
        .bind(&file.ingest_status)
        .bind(file.generation)
        .execute(&mut **tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Locks the file's row until `tx` ends (a no-op update: a row lock in PostgreSQL,
    /// the write lock in SQLite), so that two writers of its status — ingest's report
    /// and a stage's fact — see each other's rows instead of deriving from stale ones.
    pub async fn lock_file(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        file_id: &str,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE case_files SET updated_at = updated_at WHERE case_id = $1 AND id = $2")
            .bind(case_id)
            .bind(file_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The file, read in `tx`.
    pub async fn file_in(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        file_id: &str,
    ) -> Result<Option<FileRow>, DbError> {
        let row = sqlx::query("SELECT * FROM case_files WHERE case_id = $1 AND id = $2")
            .bind(case_id)
            .bind(file_id)
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(file_from_row).transpose()
    }

    pub async fn get_file(&self, case_id: &str, file_id: &str) -> Result<Option<FileRow>, DbError> {
        let row = sqlx::query("SELECT * FROM case_files WHERE case_id = $1 AND id = $2")
            .bind(case_id)
            .bind(file_id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(file_from_row).transpose()
    }
}
