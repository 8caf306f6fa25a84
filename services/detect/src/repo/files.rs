//! The detect stage's state per file and the per-case correlation state.

use super::DetectRepo;
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
    /// The ruleset version the next run must reach.
    pub requested_version: i64,
    /// The ruleset version the file's detections reflect (0: never evaluated).
    pub evaluated_version: i64,
    pub last_mode: String,
    pub events_scanned: i64,
    pub detections: i64,
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
        evaluated_version: row.try_get("evaluated_version")?,
        last_mode: row.try_get("last_mode")?,
        events_scanned: row.try_get("events_scanned")?,
        detections: row.try_get("detections")?,
        completed_runs: row.try_get("completed_runs")?,
        error: row.try_get("error")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl DetectRepo {
    pub async fn file(&self, file_id: &str) -> Result<Option<FileRow>, DbError> {
        let row = sqlx::query("SELECT * FROM detect_files WHERE file_id = $1")
            .bind(file_id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(file_from).transpose()
    }

    /// Records that `file` needs evaluation at `version` for ingest `generation`:
    /// inserts it, or raises its request (a newer generation resets attempts).
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
            "INSERT INTO detect_files (file_id, case_id, generation, status, requested_version, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5) \
             ON CONFLICT (file_id) DO UPDATE SET \
               attempts = CASE WHEN excluded.generation > detect_files.generation THEN 0 ELSE detect_files.attempts END, \
               evaluated_version = CASE WHEN excluded.generation > detect_files.generation THEN 0 \
                                   ELSE detect_files.evaluated_version END, \
               generation = CASE WHEN excluded.generation > detect_files.generation THEN excluded.generation \
                            ELSE detect_files.generation END, \
               requested_version = CASE WHEN excluded.requested_version > detect_files.requested_version \
                                   THEN excluded.requested_version ELSE detect_files.requested_version END, \
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

    /// Forces a full evaluation of `file_id` (a re-run on request) at `version`.
    pub async fn request_full_rerun(
        &self,
        tx: &mut Tx<'_>,
        file_id: &str,
        version: i64,
        now: i64,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE detect_files SET evaluated_version = 0, attempts = 0, status = 'pending', \
             requested_version = CASE WHEN requested_version > $2 THEN requested_version ELSE $2 END, \
             updated_at = $3 WHERE file_id = $1",
        )
        .bind(file_id)
        .bind(version)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn start_run(&self, tx: &mut Tx<'_>, file_id: &str) -> Result<FileRow, DbError> {
        let row = sqlx::query(
            "UPDATE detect_files SET status = 'running', attempts = attempts + 1, error = NULL, updated_at = $2 \
             WHERE file_id = $1 RETURNING *",
        )
        .bind(file_id)
        .bind(casescope_db::now_micros())
        .fetch_one(&mut **tx)
        .await?;
        file_from(&row)
    }

    /// Ends a run. `done` keeps the file pending when a newer version was requested in
    /// the meantime (the reconciler runs it again).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_run(
        &self,
        tx: &mut Tx<'_>,
        file_id: &str,
        // The ruleset version evaluated and the generation of the events evaluated; when
        // the file's generation moved on during the run (re-ingested, archived), the
        // result is of stale events: the file stays pending for a run on the new ones.
        evaluated: Option<(i64, i64)>,
        mode: &str,
        events_scanned: i64,
        error: Option<&str>,
        max_attempts: i64,
    ) -> Result<(), DbError> {
        let now = casescope_db::now_micros();
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM detections WHERE case_id = (SELECT case_id FROM detect_files WHERE file_id = $1) \
             AND file_id = $1 AND scope = 'file'",
        )
        .bind(file_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
        match evaluated {
            Some((version, generation)) => {
                sqlx::query(
                    "UPDATE detect_files SET \
                     evaluated_version = CASE WHEN generation = $7 THEN $2 ELSE evaluated_version END, \
                     last_mode = $3, events_scanned = $4, \
                     detections = $5, error = NULL, attempts = 0, updated_at = $6, completed_runs = completed_runs + 1, \
                     status = CASE WHEN requested_version > $2 OR generation <> $7 THEN 'pending' ELSE 'done' END \
                     WHERE file_id = $1",
                )
                .bind(file_id)
                .bind(version)
                .bind(mode)
                .bind(events_scanned)
                .bind(count)
                .bind(now)
                .bind(generation)
                .execute(&mut **tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE detect_files SET error = $2, updated_at = $3, \
                     status = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'pending' END WHERE file_id = $1",
                )
                .bind(file_id)
                .bind(error)
                .bind(now)
                .bind(max_attempts)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }

    /// Files whose detections are behind `version` or still pending, oldest first.
    pub async fn files_needing_run(
        &self,
        version: i64,
        updated_before: i64,
        limit: i64,
    ) -> Result<Vec<FileRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM detect_files WHERE status <> 'failed' AND \
             (status = 'pending' OR evaluated_version < $1 OR (status = 'running' AND updated_at < $2)) \
             ORDER BY updated_at LIMIT $3",
        )
        .bind(version)
        .bind(updated_before)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(file_from).collect()
    }

    /// Marks every file behind `version` as requested at it.
    pub async fn request_all(
        &self,
        tx: &mut Tx<'_>,
        version: i64,
        now: i64,
    ) -> Result<u64, DbError> {
        let done = sqlx::query(
            "UPDATE detect_files SET requested_version = $1, status = CASE WHEN status = 'running' THEN status \
             ELSE 'pending' END, attempts = 0, updated_at = $2 WHERE requested_version < $1",
        )
        .bind(version)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected())
    }

    /// Files of a case by id, after `after`.
    pub async fn case_files(
        &self,
        case_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<FileRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM detect_files WHERE case_id = $1 AND file_id > $2 ORDER BY file_id LIMIT $3",
        )
        .bind(case_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(file_from).collect()
    }

    /// Notes that the case's correlation inputs changed.
    pub async fn touch_case(&self, tx: &mut Tx<'_>, case_id: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO detect_cases (case_id, generation, updated_at) VALUES ($1, 1, $2) \
             ON CONFLICT (case_id) DO UPDATE SET generation = detect_cases.generation + 1, updated_at = $2",
        )
        .bind(case_id)
        .bind(casescope_db::now_micros())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Every case whose correlation is behind its inputs.
    pub async fn cases_to_correlate(&self, limit: i64) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query(
            "SELECT case_id, generation FROM detect_cases WHERE correlated_generation < generation \
             ORDER BY updated_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("case_id")?, r.try_get("generation")?)))
            .collect()
    }

    pub async fn case_generation(&self, case_id: &str) -> Result<Option<i64>, DbError> {
        let row = sqlx::query("SELECT generation FROM detect_cases WHERE case_id = $1")
            .bind(case_id)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|r| r.try_get("generation").map_err(DbError::from))
            .transpose()
    }

    pub async fn mark_correlated(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        generation: i64,
        error: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE detect_cases SET correlated_generation = CASE WHEN correlated_generation > $2 \
             THEN correlated_generation ELSE $2 END, error = $3, updated_at = $4 WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(generation)
        .bind(error)
        .bind(casescope_db::now_micros())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Marks every case with correlation state for a new pass (a ruleset change that
    /// touched correlations).
    pub async fn touch_all_cases(&self, tx: &mut Tx<'_>) -> Result<(), DbError> {
        sqlx::query("UPDATE detect_cases SET generation = generation + 1, updated_at = $1")
            .bind(casescope_db::now_micros())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
