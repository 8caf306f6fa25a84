//! The ingest service's tables: upload sessions and evidence files with their ingest
//! stage state (the source of truth for the stage; the cases service holds the
//! analyst-facing file record, kept in sync with `status_sequence`).

use casescope_db::{Database, DbError, Migration, Migrations, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

pub const MIGRATIONS: Migrations = Migrations {
    service: "ingest",
    steps: &[
        Migration {
            version: 1,
            name: "uploads and evidence files",
            sql: "
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    declared_size BIGINT NOT NULL,
    declared_sha256 TEXT NOT NULL,
    timestamp_field TEXT,
    state TEXT NOT NULL,
    bytes_received BIGINT NOT NULL,
    file_id TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX uploads_by_sha ON uploads (case_id, declared_sha256, created_at);
CREATE INDEX uploads_by_age ON uploads (state, updated_at);
CREATE TABLE evidence_files (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    format TEXT NOT NULL,
    blob_path TEXT NOT NULL,
    timestamp_field TEXT,
    parent_id TEXT,
    stage_status TEXT NOT NULL,
    generation BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    records_read BIGINT NOT NULL DEFAULT 0,
    events_indexed BIGINT NOT NULL DEFAULT 0,
    records_rejected BIGINT NOT NULL DEFAULT 0,
    rejects_by_reason TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    registered BIGINT NOT NULL DEFAULT 0,
    status_sequence BIGINT NOT NULL DEFAULT 0,
    status_synced BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (case_id, sha256)
);
CREATE INDEX evidence_files_by_stage ON evidence_files (stage_status, updated_at);
CREATE INDEX evidence_files_unsynced ON evidence_files (status_synced);
",
        },
        Migration {
            version: 2,
            name: "per-case event de-duplication",
            sql: "
CREATE TABLE event_fingerprints (
    case_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    file_id TEXT NOT NULL,
    PRIMARY KEY (case_id, fingerprint)
);
CREATE INDEX event_fingerprints_by_file ON event_fingerprints (case_id, file_id);
ALTER TABLE evidence_files ADD COLUMN duplicates_skipped BIGINT NOT NULL DEFAULT 0;
",
        },
        Migration {
            version: 3,
            name: "case archives",
            sql: "
ALTER TABLE evidence_files ADD COLUMN archived_stage TEXT;
CREATE TABLE case_archives (
    case_id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    case_version BIGINT NOT NULL,
    state TEXT NOT NULL,
    files BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    report_pending BIGINT NOT NULL DEFAULT 0,
    swept BIGINT NOT NULL DEFAULT 0,
    requested_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX case_archives_due ON case_archives (target, state, report_pending);
",
        },
        Migration {
            version: 4,
            name: "uploaders",
            sql: "
ALTER TABLE uploads ADD COLUMN uploaded_by TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN uploaded_by_name TEXT NOT NULL DEFAULT '';
ALTER TABLE evidence_files ADD COLUMN uploaded_by TEXT NOT NULL DEFAULT '';
ALTER TABLE evidence_files ADD COLUMN uploaded_by_name TEXT NOT NULL DEFAULT '';
",
        },
    ],
};

/// Stage states of an evidence file.
pub mod stage {
    /// Waiting for a worker.
    pub const PENDING: &str = "pending";
    pub const RUNNING: &str = "running";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
    /// A ZIP: its members are files of their own; it is never parsed.
    pub const CONTAINER: &str = "container";
    /// In its case's archive: blob, events and findings left the hot stores.
    pub const ARCHIVED: &str = "archived";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub id: String,
    pub case_id: String,
    pub file_name: String,
    pub declared_size: i64,
    pub declared_sha256: String,
    pub timestamp_field: Option<String>,
    pub state: String,
    pub bytes_received: i64,
    pub file_id: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Who started the upload (user id and name; empty for a service or an old row).
    pub uploaded_by: String,
    pub uploaded_by_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: String,
    pub case_id: String,
    pub name: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub format: String,
    pub blob_path: String,
    pub timestamp_field: Option<String>,
    pub parent_id: Option<String>,
    pub stage_status: String,
    pub generation: i64,
    pub attempts: i64,
    pub records_read: i64,
    pub events_indexed: i64,
    pub records_rejected: i64,
    pub rejects_by_reason: String,
    pub duplicates_skipped: i64,
    pub error: Option<String>,
    pub registered: bool,
    pub status_sequence: i64,
    pub status_synced: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Who uploaded it (an archive member: the archive's uploader).
    pub uploaded_by: String,
    pub uploaded_by_name: String,
}

fn upload_from(row: &AnyRow) -> Result<UploadRow, DbError> {
    Ok(UploadRow {
        id: row.try_get("id")?,
        case_id: row.try_get("case_id")?,
        file_name: row.try_get("file_name")?,
        declared_size: row.try_get("declared_size")?,
        declared_sha256: row.try_get("declared_sha256")?,
        timestamp_field: row.try_get("timestamp_field")?,
        state: row.try_get("state")?,
        bytes_received: row.try_get("bytes_received")?,
        file_id: row.try_get("file_id")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        uploaded_by: row.try_get("uploaded_by")?,
        uploaded_by_name: row.try_get("uploaded_by_name")?,
    })
}

pub(crate) fn file_from(row: &AnyRow) -> Result<FileRow, DbError> {
    Ok(FileRow {
        id: row.try_get("id")?,
        case_id: row.try_get("case_id")?,
        name: row.try_get("name")?,
        sha256: row.try_get("sha256")?,
        size_bytes: row.try_get("size_bytes")?,
        format: row.try_get("format")?,
        blob_path: row.try_get("blob_path")?,
        timestamp_field: row.try_get("timestamp_field")?,
        parent_id: row.try_get("parent_id")?,
        stage_status: row.try_get("stage_status")?,
        generation: row.try_get("generation")?,
        attempts: row.try_get("attempts")?,
        records_read: row.try_get("records_read")?,
        events_indexed: row.try_get("events_indexed")?,
        records_rejected: row.try_get("records_rejected")?,
        rejects_by_reason: row.try_get("rejects_by_reason")?,
        duplicates_skipped: row.try_get("duplicates_skipped")?,
        error: row.try_get("error")?,
        registered: row.try_get::<i64, _>("registered")? != 0,
        status_sequence: row.try_get("status_sequence")?,
        status_synced: row.try_get::<i64, _>("status_synced")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        uploaded_by: row.try_get("uploaded_by")?,
        uploaded_by_name: row.try_get("uploaded_by_name")?,
    })
}

#[derive(Debug, Clone)]
pub struct IngestRepo {
    db: Database,
}

impl IngestRepo {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub async fn insert_upload(&self, upload: &UploadRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO uploads (id, case_id, file_name, declared_size, declared_sha256, timestamp_field, \
             state, bytes_received, file_id, error, created_at, updated_at, uploaded_by, \
             uploaded_by_name) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&upload.id)
        .bind(&upload.case_id)
        .bind(&upload.file_name)
        .bind(upload.declared_size)
        .bind(&upload.declared_sha256)
        .bind(&upload.timestamp_field)
        .bind(&upload.state)
        .bind(upload.bytes_received)
        .bind(&upload.file_id)
        .bind(&upload.error)
        .bind(upload.created_at)
        .bind(upload.updated_at)
        .bind(&upload.uploaded_by)
        .bind(&upload.uploaded_by_name)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>, DbError> {
        let row = sqlx::query("SELECT * FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(upload_from).transpose()
    }

    pub async fn latest_upload_by_sha(
        &self,
        case_id: &str,
        sha256: &str,
    ) -> Result<Option<UploadRow>, DbError> {
        let row = sqlx::query(
            "SELECT * FROM uploads WHERE case_id = $1 AND declared_sha256 = $2 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(case_id)
        .bind(sha256)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(upload_from).transpose()
    }

    pub async fn set_upload_progress(&self, id: &str, bytes: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE uploads SET bytes_received = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(bytes)
            .bind(casescope_db::now_micros())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    pub async fn finish_upload(
        &self,
        id: &str,
        state: &str,
        file_id: Option<&str>,
        error: Option<&str>,
        bytes: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE uploads SET state = $2, file_id = $3, error = $4, bytes_received = $5, updated_at = $6 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(file_id)
        .bind(error)
        .bind(bytes)
        .bind(casescope_db::now_micros())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Uploads still receiving whose last activity is older than `before` (µs).
    pub async fn stale_uploads(&self, before: i64, limit: i64) -> Result<Vec<UploadRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM uploads WHERE state = 'receiving' AND updated_at < $1 LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(upload_from).collect()
    }

    pub async fn insert_file(&self, tx: &mut Tx<'_>, file: &FileRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO evidence_files (id, case_id, name, sha256, size_bytes, format, blob_path, timestamp_field, \
             parent_id, stage_status, generation, created_at, updated_at, uploaded_by, \
             uploaded_by_name) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&file.id)
        .bind(&file.case_id)
        .bind(&file.name)
        .bind(&file.sha256)
        .bind(file.size_bytes)
        .bind(&file.format)
        .bind(&file.blob_path)
        .bind(&file.timestamp_field)
        .bind(&file.parent_id)
        .bind(&file.stage_status)
        .bind(file.generation)
        .bind(file.created_at)
        .bind(file.updated_at)
        .bind(&file.uploaded_by)
        .bind(&file.uploaded_by_name)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Every file of a case, oldest first.
    pub async fn files_of_case(&self, case_id: &str) -> Result<Vec<FileRow>, DbError> {
        let rows =
            sqlx::query("SELECT * FROM evidence_files WHERE case_id = $1 ORDER BY created_at, id")
                .bind(case_id)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter().map(file_from).collect()
    }

    pub async fn file(&self, id: &str) -> Result<Option<FileRow>, DbError> {
        let row = sqlx::query("SELECT * FROM evidence_files WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(file_from).transpose()
    }

    pub async fn file_by_sha(
        &self,
        case_id: &str,
        sha256: &str,
    ) -> Result<Option<FileRow>, DbError> {
        let row = sqlx::query("SELECT * FROM evidence_files WHERE case_id = $1 AND sha256 = $2")
            .bind(case_id)
            .bind(sha256)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(file_from).transpose()
    }

    pub async fn files_in_stage(
        &self,
        status: &str,
        updated_before: i64,
        limit: i64,
    ) -> Result<Vec<FileRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM evidence_files WHERE stage_status = $1 AND updated_at < $2 ORDER BY updated_at LIMIT $3",
        )
        .bind(status)
        .bind(updated_before)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(file_from).collect()
    }

    pub async fn unsynced_files(&self, limit: i64) -> Result<Vec<FileRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM evidence_files WHERE status_synced = 0 ORDER BY updated_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(file_from).collect()
    }

    pub async fn mark_registered(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE evidence_files SET registered = 1 WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Marks the status as delivered to the cases service, unless it changed since.
    pub async fn mark_synced(&self, id: &str, sequence: i64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE evidence_files SET status_synced = 1 WHERE id = $1 AND status_sequence = $2",
        )
        .bind(id)
        .bind(sequence)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Starts a stage run inside the lease-fenced `tx`: running, one more attempt, a new
    /// status sequence. Returns the updated row.
    pub async fn start_run(&self, tx: &mut Tx<'_>, id: &str) -> Result<FileRow, DbError> {
        sqlx::query(
            "UPDATE evidence_files SET stage_status = 'running', attempts = attempts + 1, error = NULL, \
             status_sequence = status_sequence + 1, status_synced = 0, updated_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(casescope_db::now_micros())
        .execute(&mut **tx)
        .await?;
        let row = sqlx::query("SELECT * FROM evidence_files WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
        file_from(&row)
    }

    /// Records the end of a run of `generation` inside the lease-fenced `tx`; `None`
    /// (nothing written) when a re-index asked for a newer generation meanwhile: that
    /// request runs next, and this run's outcome must not mark it done.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_run(
        &self,
        tx: &mut Tx<'_>,
        id: &str,
        generation: i64,
        status: &str,
        records_read: i64,
        events_indexed: i64,
        records_rejected: i64,
        duplicates_skipped: i64,
        rejects_by_reason: &str,
        error: Option<&str>,
    ) -> Result<Option<FileRow>, DbError> {
        let updated = sqlx::query(
            "UPDATE evidence_files SET stage_status = $2, records_read = $3, events_indexed = $4, \
             records_rejected = $5, rejects_by_reason = $6, error = $7, status_sequence = status_sequence + 1, \
             status_synced = 0, updated_at = $8, duplicates_skipped = $9 WHERE id = $1 AND generation = $10",
        )
        .bind(id)
        .bind(status)
        .bind(records_read)
        .bind(events_indexed)
        .bind(records_rejected)
        .bind(rejects_by_reason)
        .bind(error)
        .bind(casescope_db::now_micros())
        .bind(duplicates_skipped)
        .bind(generation)
        .execute(&mut **tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM evidence_files WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
        file_from(&row).map(Some)
    }

    /// Forgets the fingerprints a file contributed (at the start of each of its runs).
    pub async fn forget_fingerprints(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        file_id: &str,
    ) -> Result<(), DbError> {
        sqlx::query("DELETE FROM event_fingerprints WHERE case_id = $1 AND file_id = $2")
            .bind(case_id)
            .bind(file_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Claims each fingerprint for `file_id`; returns, per fingerprint, whether it was
    /// new (false = the case already holds an identical record from another claim).
    pub async fn claim_fingerprints(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        file_id: &str,
        fingerprints: &[String],
    ) -> Result<Vec<bool>, DbError> {
        let mut fresh = Vec::with_capacity(fingerprints.len());
        for fingerprint in fingerprints {
            let result = sqlx::query(
                "INSERT INTO event_fingerprints (case_id, fingerprint, file_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (case_id, fingerprint) DO NOTHING",
            )
            .bind(case_id)
            .bind(fingerprint)
            .bind(file_id)
            .execute(&mut **tx)
            .await?;
            fresh.push(result.rows_affected() == 1);
        }
        Ok(fresh)
    }

    /// Asks for a new run of a file (re-index): new generation, back to pending.
    pub async fn request_run(&self, tx: &mut Tx<'_>, id: &str) -> Result<Option<FileRow>, DbError> {
        sqlx::query(
            "UPDATE evidence_files SET stage_status = 'pending', generation = generation + 1, attempts = 0, \
             status_sequence = status_sequence + 1, status_synced = 0, updated_at = $2 \
             WHERE id = $1 AND stage_status <> 'container'",
        )
        .bind(id)
        .bind(casescope_db::now_micros())
        .execute(&mut **tx)
        .await?;
        let row = sqlx::query("SELECT * FROM evidence_files WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(file_from).transpose()
    }

    /// Keeps why a run of a file failed and will be retried (a full disk, a service
    /// away): shown with the file while it is retried, and kept in the reason if the
    /// reconciler gives up on it. The next run clears it.
    pub async fn note_attempt_error(&self, id: &str, error: &str) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE evidence_files SET error = $2 WHERE id = $1 AND stage_status IN ('pending', 'running')",
        )
        .bind(id)
        .bind(error)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Gives up on a file that failed too often (not under a lease: only when none is
    /// held), keeping the last attempt's error after `error`.
    /// Whether it gave up (false: the file was no longer pending or running).
    pub async fn give_up(&self, id: &str, error: &str) -> Result<bool, DbError> {
        let result = sqlx::query(
            "UPDATE evidence_files SET stage_status = 'failed', \
             error = CASE WHEN error IS NULL OR error = '' THEN $2 ELSE $2 || '; last attempt: ' || error END, \
             status_sequence = status_sequence + 1, \
             status_synced = 0, updated_at = $3 WHERE id = $1 AND stage_status IN ('pending', 'running')",
        )
        .bind(id)
        .bind(error)
        .bind(casescope_db::now_micros())
        .execute(self.db.pool())
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Touches a file so the reconciler waits a full period before looking at it again.
    pub async fn touch(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE evidence_files SET updated_at = $2 WHERE id = $1")
            .bind(id)
            .bind(casescope_db::now_micros())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casescope_db::DbOptions;

    #[tokio::test]
    async fn giving_up_keeps_the_last_attempts_error_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ingest.sqlite").display());
        giving_up_keeps_the_last_attempts_error(&url).await;
    }

    #[tokio::test]
    async fn giving_up_keeps_the_last_attempts_error_postgres() {
        giving_up_keeps_the_last_attempts_error(&casescope_testkit::postgres_url().await).await;
    }

    fn file(id: &str) -> FileRow {
        FileRow {
            id: id.into(),
            case_id: "case".into(),
            name: format!("{id}.evtx"),
            sha256: id.repeat(64 / id.len()),
            size_bytes: 1,
            format: "evtx".into(),
            blob_path: "/nowhere".into(),
            timestamp_field: None,
            parent_id: None,
            stage_status: stage::PENDING.into(),
            generation: 1,
            attempts: 0,
            records_read: 0,
            events_indexed: 0,
            records_rejected: 0,
            rejects_by_reason: "{}".into(),
            duplicates_skipped: 0,
            error: None,
            registered: false,
            status_sequence: 0,
            status_synced: false,
            created_at: 0,
            updated_at: 0,
            uploaded_by: String::new(),
            uploaded_by_name: String::new(),
        }
    }

    async fn repo(url: &str) -> IngestRepo {
        let db = Database::connect(url, &DbOptions::default()).await.unwrap();
        db.migrate(crate::ALL_MIGRATIONS).await.unwrap();
        IngestRepo::new(db)
    }

    #[tokio::test]
    async fn a_run_superseded_by_a_reindex_is_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ingest.sqlite").display());
        let repo = repo(&url).await;
        let mut tx = repo.db().begin().await.unwrap();
        repo.insert_file(&mut tx, &file("a")).await.unwrap();
        let started = repo.start_run(&mut tx, "a").await.unwrap();
        tx.commit().await.unwrap();
        // A re-index while the run goes on.
        let mut tx = repo.db().begin().await.unwrap();
        let requested = repo.request_run(&mut tx, "a").await.unwrap().unwrap();
        tx.commit().await.unwrap();
        assert_eq!(requested.generation, started.generation + 1);
        let mut tx = repo.db().begin().await.unwrap();
        assert!(
            repo.finish_run(
                &mut tx,
                "a",
                started.generation,
                stage::DONE,
                5,
                5,
                0,
                0,
                "{}",
                None
            )
            .await
            .unwrap()
            .is_none(),
            "the old run does not mark the newer request done"
        );
        tx.commit().await.unwrap();
        let row = repo.file("a").await.unwrap().unwrap();
        assert_eq!(row.stage_status, stage::PENDING);
        assert_eq!(row.events_indexed, 0);
        // The new generation's run is recorded.
        let mut tx = repo.db().begin().await.unwrap();
        let restarted = repo.start_run(&mut tx, "a").await.unwrap();
        let done = repo
            .finish_run(
                &mut tx,
                "a",
                restarted.generation,
                stage::DONE,
                5,
                5,
                0,
                0,
                "{}",
                None,
            )
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            (done.stage_status.as_str(), done.events_indexed),
            (stage::DONE, 5)
        );
    }

    async fn giving_up_keeps_the_last_attempts_error(url: &str) {
        let repo = repo(url).await;
        for id in ["a", "b"] {
            let mut tx = repo.db().begin().await.unwrap();
            repo.insert_file(&mut tx, &file(id)).await.unwrap();
            repo.start_run(&mut tx, id).await.unwrap();
            tx.commit().await.unwrap();
        }
        repo.note_attempt_error("a", "index: No space left on device (os error 28)")
            .await
            .unwrap();
        let noted = repo.file("a").await.unwrap().unwrap();
        assert_eq!(noted.stage_status, stage::RUNNING, "still retried");
        assert_eq!(
            noted.error.as_deref(),
            Some("index: No space left on device (os error 28)")
        );
        // The next run starts clean.
        let mut tx = repo.db().begin().await.unwrap();
        assert_eq!(repo.start_run(&mut tx, "a").await.unwrap().error, None);
        tx.commit().await.unwrap();
        repo.note_attempt_error("a", "cases service: unavailable")
            .await
            .unwrap();
        for id in ["a", "b"] {
            assert!(
                repo.give_up(id, "gave up after 8 ingest attempts")
                    .await
                    .unwrap()
            );
        }
        assert!(
            !repo.give_up("a", "again").await.unwrap(),
            "a failed file is given up once"
        );
        let a = repo.file("a").await.unwrap().unwrap();
        assert_eq!(a.stage_status, stage::FAILED);
        assert_eq!(
            a.error.as_deref(),
            Some("gave up after 8 ingest attempts; last attempt: cases service: unavailable")
        );
        let b = repo.file("b").await.unwrap().unwrap();
        assert_eq!(b.error.as_deref(), Some("gave up after 8 ingest attempts"));
    }
}
