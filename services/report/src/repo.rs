//! The report service's tables: report jobs, their artefacts and the artefacts' bytes
//! in chunks of [`crate::CHUNK_BYTES`] (SQL of the subset SQLite and PostgreSQL share;
//! `BYTEA` is a blob column on both).

use casescope_db::{Database, DbError, Migration, Migrations, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

pub const MIGRATIONS: Migrations = Migrations {
    service: "report",
    steps: &[Migration {
        version: 1,
        name: "report jobs, artefacts and their chunks",
        sql: "
CREATE TABLE reports (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL,
    title TEXT NOT NULL,
    formats TEXT NOT NULL,
    sections TEXT NOT NULL,
    timeline_tags TEXT NOT NULL,
    include_ai BIGINT NOT NULL,
    ai_status TEXT NOT NULL,
    ai_error TEXT NOT NULL,
    ai_model TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_by_name TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX reports_by_case ON reports (case_id, created_at, id);
CREATE INDEX reports_by_status ON reports (status, updated_at);
CREATE TABLE report_artefacts (
    report_id TEXT NOT NULL,
    format BIGINT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    chunks BIGINT NOT NULL,
    PRIMARY KEY (report_id, format)
);
CREATE TABLE report_chunks (
    report_id TEXT NOT NULL,
    format BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (report_id, format, seq)
);
",
    }],
};

/// Job states as stored.
pub mod status {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const READY: &str = "ready";
    pub const FAILED: &str = "failed";
}

/// AI summary states as stored.
pub mod ai {
    pub const NOT_REQUESTED: &str = "not_requested";
    pub const PENDING: &str = "pending";
    pub const INCLUDED: &str = "included";
    pub const FAILED: &str = "failed";
}

#[derive(Debug, Clone)]
pub struct ReportRow {
    pub id: String,
    pub case_id: String,
    pub status: String,
    pub error: String,
    pub title: String,
    /// `ReportFormat` numbers.
    pub formats: Vec<i32>,
    /// `ReportSection` numbers, in order.
    pub sections: Vec<i32>,
    pub timeline_tags: Vec<String>,
    pub include_ai: bool,
    pub ai_status: String,
    pub ai_error: String,
    pub ai_model: String,
    pub requested_by: String,
    pub requested_by_name: String,
    pub attempts: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ArtefactRow {
    pub format: i32,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub chunks: i64,
}

fn numbers(text: &str) -> Vec<i32> {
    text.split(',').filter_map(|n| n.parse().ok()).collect()
}

fn joined(values: &[i32]) -> String {
    values
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl ReportRow {
    fn from_row(row: &AnyRow) -> Result<Self, DbError> {
        let tags: String = row.try_get("timeline_tags")?;
        Ok(Self {
            id: row.try_get("id")?,
            case_id: row.try_get("case_id")?,
            status: row.try_get("status")?,
            error: row.try_get("error")?,
            title: row.try_get("title")?,
            formats: numbers(&row.try_get::<String, _>("formats")?),
            sections: numbers(&row.try_get::<String, _>("sections")?),
            timeline_tags: serde_json::from_str(&tags).unwrap_or_default(),
            include_ai: row.try_get::<i64, _>("include_ai")? != 0,
            ai_status: row.try_get("ai_status")?,
            ai_error: row.try_get("ai_error")?,
            ai_model: row.try_get("ai_model")?,
            requested_by: row.try_get("requested_by")?,
            requested_by_name: row.try_get("requested_by_name")?,
            attempts: row.try_get("attempts")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
        })
    }

    pub fn is_finished(&self) -> bool {
        self.status == status::READY || self.status == status::FAILED
    }
}

impl ArtefactRow {
    fn from_row(row: &AnyRow) -> Result<Self, DbError> {
        Ok(Self {
            format: i32::try_from(row.try_get::<i64, _>("format")?).unwrap_or_default(),
            file_name: row.try_get("file_name")?,
            content_type: row.try_get("content_type")?,
            size_bytes: row.try_get("size_bytes")?,
            sha256: row.try_get("sha256")?,
            chunks: row.try_get("chunks")?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ReportRepo {
    db: Database,
}

impl ReportRepo {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub async fn insert(&self, tx: &mut Tx<'_>, row: &ReportRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO reports (id, case_id, status, error, title, formats, sections, \
             timeline_tags, include_ai, ai_status, ai_error, ai_model, requested_by, \
             requested_by_name, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, '', $4, $5, $6, $7, $8, $9, '', '', $10, $11, 0, $12, $12)",
        )
        .bind(&row.id)
        .bind(&row.case_id)
        .bind(&row.status)
        .bind(&row.title)
        .bind(joined(&row.formats))
        .bind(joined(&row.sections))
        .bind(serde_json::to_string(&row.timeline_tags).unwrap_or_else(|_| "[]".into()))
        .bind(i64::from(row.include_ai))
        .bind(&row.ai_status)
        .bind(&row.requested_by)
        .bind(&row.requested_by_name)
        .bind(row.created_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn get(&self, case_id: &str, id: &str) -> Result<Option<ReportRow>, DbError> {
        let row = sqlx::query("SELECT * FROM reports WHERE id = $1 AND case_id = $2")
            .bind(id)
            .bind(case_id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(ReportRow::from_row).transpose()
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<ReportRow>, DbError> {
        let row = sqlx::query("SELECT * FROM reports WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(ReportRow::from_row).transpose()
    }

    /// Reports of a case, newest first, after the cursor `(created_at, id)`.
    pub async fn list(
        &self,
        case_id: &str,
        status: Option<&str>,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<ReportRow>, DbError> {
        let (before_at, before_id) = after.unwrap_or((i64::MAX, ""));
        let rows = sqlx::query(
            "SELECT * FROM reports WHERE case_id = $1 AND ($2 = '' OR status = $2) \
             AND (created_at < $3 OR (created_at = $3 AND ($4 = '' OR id < $4))) \
             ORDER BY created_at DESC, id DESC LIMIT $5",
        )
        .bind(case_id)
        .bind(status.unwrap_or(""))
        .bind(before_at)
        .bind(before_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(ReportRow::from_row).collect()
    }

    /// (reports of the case, of which queued or running).
    pub async fn counts(&self, tx: &mut Tx<'_>, case_id: &str) -> Result<(i64, i64), DbError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, \
             COALESCE(SUM(CASE WHEN status IN ('queued', 'running') THEN 1 ELSE 0 END), 0) AS active \
             FROM reports WHERE case_id = $1",
        )
        .bind(case_id)
        .fetch_one(&mut **tx)
        .await?;
        Ok((row.try_get("n")?, row.try_get("active")?))
    }

    pub async fn artefacts(&self, id: &str) -> Result<Vec<ArtefactRow>, DbError> {
        let rows =
            sqlx::query("SELECT * FROM report_artefacts WHERE report_id = $1 ORDER BY format")
                .bind(id)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter().map(ArtefactRow::from_row).collect()
    }

    /// The artefacts of several reports (one page of a list) in one query.
    pub async fn artefacts_of(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<ArtefactRow>>, DbError> {
        let mut found: std::collections::HashMap<String, Vec<ArtefactRow>> = Default::default();
        if ids.is_empty() {
            return Ok(found);
        }
        let marks: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let statement = format!(
            "SELECT * FROM report_artefacts WHERE report_id IN ({}) ORDER BY report_id, format",
            marks.join(", ")
        );
        // Only numbered placeholders are formatted in; the ids are bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        for id in ids {
            query = query.bind(*id);
        }
        for row in query.fetch_all(self.db.pool()).await? {
            let report: String = row.try_get("report_id")?;
            found
                .entry(report)
                .or_default()
                .push(ArtefactRow::from_row(&row)?);
        }
        Ok(found)
    }

    /// One stored chunk of an artefact.
    pub async fn chunk(&self, id: &str, format: i32, seq: i64) -> Result<Option<Vec<u8>>, DbError> {
        let row = sqlx::query(
            "SELECT data FROM report_chunks WHERE report_id = $1 AND format = $2 AND seq = $3",
        )
        .bind(id)
        .bind(i64::from(format))
        .bind(seq)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(match row {
            Some(row) => Some(row.try_get::<Vec<u8>, _>("data")?),
            None => None,
        })
    }

    /// Deletes a report with its artefacts; whether it existed.
    pub async fn delete(&self, case_id: &str, id: &str) -> Result<bool, DbError> {
        let mut tx = self.db.begin().await?;
        let gone = sqlx::query("DELETE FROM reports WHERE id = $1 AND case_id = $2")
            .bind(id)
            .bind(case_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone > 0 {
            Self::drop_output(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(gone > 0)
    }

    /// Removes whatever an attempt wrote of a report's artefacts.
    pub async fn drop_output(tx: &mut Tx<'_>, id: &str) -> Result<(), DbError> {
        for statement in [
            "DELETE FROM report_chunks WHERE report_id = $1",
            "DELETE FROM report_artefacts WHERE report_id = $1",
        ] {
            sqlx::query(statement).bind(id).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Chunks and artefacts whose report is gone (a job cancelled mid-write).
    pub async fn sweep_orphans(&self) -> Result<u64, DbError> {
        let mut removed = 0;
        for statement in [
            "DELETE FROM report_chunks WHERE NOT EXISTS \
             (SELECT 1 FROM reports r WHERE r.id = report_chunks.report_id)",
            "DELETE FROM report_artefacts WHERE NOT EXISTS \
             (SELECT 1 FROM reports r WHERE r.id = report_artefacts.report_id)",
        ] {
            removed += sqlx::query(statement)
                .execute(self.db.pool())
                .await?
                .rows_affected();
        }
        Ok(removed)
    }

    /// Reports queued or running whose last change is older than `before` (their signal
    /// or their worker may be lost), oldest first.
    pub async fn stalled(&self, before: i64, limit: i64) -> Result<Vec<ReportRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM reports WHERE status IN ('queued', 'running') AND updated_at < $1 \
             ORDER BY updated_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(ReportRow::from_row).collect()
    }

    /// Marks the row changed now (the reconciler re-sent its signal).
    /// Marks a report as just re-sent, in the transaction that queues its signal.
    pub async fn touch(tx: &mut Tx<'_>, id: &str, now: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE reports SET updated_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
