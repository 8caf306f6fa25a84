//! The hunt stage's state per file.

use super::{IocRepo, status};
use casescope_db::{DbError, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub file_id: String,
    pub case_id: String,
    pub generation: i64,
    pub status: String,
    pub attempts: i64,
    /// The case IOC version the next run must reach.
    pub requested_version: i64,
    /// The version the file's matches reflect (-1: never hunted).
    pub hunted_version: i64,
    pub last_mode: String,
    pub events_scanned: i64,
    pub matches: i64,
    pub completed_runs: i64,
    pub error: Option<String>,
    pub updated_at: i64,
}

fn file_from(row: &AnyRow) -> Result<FileRow, DbError> {
    Ok(FileRow {
        file_id: row.try_get("file_id")?,
        case_id: row.try_get("case_id")?,
        generation: row.try_get("generation")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        requested_version: row.try_get("requested_version")?,
        hunted_version: row.try_get("hunted_version")?,
        last_mode: row.try_get("last_mode")?,
        events_scanned: row.try_get("events_scanned")?,
        matches: row.try_get("matches")?,
        completed_runs: row.try_get("completed_runs")?,
        error: row.try_get("error")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl FileRow {
    /// Whether the file's matches are as requested.
    pub fn is_current(&self) -> bool {
        self.status == status::FAILED
            || (self.status == status::DONE && self.hunted_version >= self.requested_version)
    }
}

impl IocRepo {
    pub async fn file(&self, file_id: &str) -> Result<Option<FileRow>, DbError> {
        let row = sqlx::query("SELECT * FROM ioc_files WHERE file_id = $1")
            .bind(file_id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(file_from).transpose()
    }

    /// Records that `file_id` needs hunting at `version` for ingest `generation`: inserts
    /// it, or raises its request (a newer generation means a new set of events: a full
    /// hunt, attempts reset).
    pub async fn request_file(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        file_id: &str,
        generation: i64,
        version: i64,
        now: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO ioc_files (file_id, case_id, generation, status, requested_version, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5) \
             ON CONFLICT (file_id) DO UPDATE SET \
               attempts = CASE WHEN excluded.generation > ioc_files.generation THEN 0 ELSE ioc_files.attempts END, \
               hunted_version = CASE WHEN excluded.generation > ioc_files.generation THEN -1 \
                                ELSE ioc_files.hunted_version END, \
               generation = CASE WHEN excluded.generation > ioc_files.generation THEN excluded.generation \
                            ELSE ioc_files.generation END, \
               requested_version = CASE WHEN excluded.requested_version > ioc_files.requested_version \
                                   THEN excluded.requested_version ELSE ioc_files.requested_version END, \
               status = 'pending', updated_at = excluded.updated_at",
        )
        .bind(file_id)
        .bind(case_id)
        .bind(generation)
        .bind(version)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Forces a full hunt of `file_id` at `version` or later (a re-hunt on request).
    pub async fn request_full_hunt(
        &self,
        tx: &mut Tx<'_>,
        file_id: &str,
        version: i64,
        now: i64,
    ) -> Result<Option<FileRow>, DbError> {
        let row = sqlx::query(
            "UPDATE ioc_files SET hunted_version = -1, attempts = 0, status = 'pending', error = NULL, \
             requested_version = CASE WHEN requested_version > $2 THEN requested_version ELSE $2 END, \
             updated_at = $3 WHERE file_id = $1 RETURNING *",
        )
        .bind(file_id)
        .bind(version)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        row.as_ref().map(file_from).transpose()
    }

    pub async fn start_run(&self, tx: &mut Tx<'_>, file_id: &str) -> Result<FileRow, DbError> {
        let row = sqlx::query(
            "UPDATE ioc_files SET status = 'running', attempts = attempts + 1, error = NULL, updated_at = $2 \
             WHERE file_id = $1 RETURNING *",
        )
        .bind(file_id)
        .bind(casescope_db::now_micros())
        .fetch_one(&mut **tx)
        .await?;
        file_from(&row)
    }

    /// Ends a successful run at `version`; the file stays pending when a newer version
    /// was requested meanwhile.
    pub async fn finish_run(
        &self,
        tx: &mut Tx<'_>,
        file: &FileRow,
        version: i64,
        mode: &str,
        events_scanned: i64,
    ) -> Result<(), DbError> {
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM ioc_matches WHERE case_id = $1 AND file_id = $2",
        )
        .bind(&file.case_id)
        .bind(&file.file_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
        // `file` is the row the run started from: when the file's generation moved on
        // meanwhile (re-ingested, archived), the run hunted stale events and the file
        // stays pending for a run on the new ones.
        sqlx::query(
            "UPDATE ioc_files SET hunted_version = CASE WHEN generation = $7 THEN $2 ELSE hunted_version END, \
             last_mode = $3, events_scanned = $4, matches = $5, \
             error = NULL, attempts = 0, updated_at = $6, completed_runs = completed_runs + 1, \
             status = CASE WHEN requested_version > $2 OR generation <> $7 THEN 'pending' ELSE 'done' END \
             WHERE file_id = $1",
        )
        .bind(&file.file_id)
        .bind(version)
        .bind(mode)
        .bind(events_scanned)
        .bind(count)
        .bind(casescope_db::now_micros())
        .bind(file.generation)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Ends a failed run: pending for another attempt, or failed after `max_attempts`.
    pub async fn fail_run(
        &self,
        tx: &mut Tx<'_>,
        file_id: &str,
        error: &str,
        max_attempts: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE ioc_files SET error = $2, updated_at = $3, \
             status = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'pending' END WHERE file_id = $1",
        )
        .bind(file_id)
        .bind(error)
        .bind(casescope_db::now_micros())
        .bind(max_attempts)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Files whose matches are behind their request, or whose run was lost, oldest first.
    pub async fn files_needing_run(
        &self,
        running_before: i64,
        limit: i64,
    ) -> Result<Vec<FileRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM ioc_files WHERE status <> 'failed' AND \
             (status = 'pending' OR hunted_version < requested_version OR (status = 'running' AND updated_at < $1)) \
             ORDER BY updated_at LIMIT $2",
        )
        .bind(running_before)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(file_from).collect()
    }

    /// Files of a case by id, after `after`.
    pub async fn case_files(
        &self,
        case_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<FileRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM ioc_files WHERE case_id = $1 AND file_id > $2 ORDER BY file_id LIMIT $3",
        )
        .bind(case_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(file_from).collect()
    }
}
