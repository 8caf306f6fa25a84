//! A file's status follows all its stages. The ingest service reports its own
//! (`UpdateFileStatus`: uploaded, parsing, indexed, failed, archived, with the generation
//! of the file's events); the downstream stages (detect, ioc_hunt) publish
//! `file.stage_changed` facts (running, done, failed at a generation), which this
//! service's durable consumer `cases-file-stages` records. The status shown is:
//!
//! - ingest's, until the file is indexed (and when archived or failed in ingest);
//! - `failed` (with the stage and its error) when a configured stage failed on the
//!   file's current events;
//! - `detecting` while detect has not finished the current events, then `hunting`
//!   while the IOC hunt has not;
//! - `ready` when every configured stage is done (`CASESCOPE_FILE_STAGES`: in one
//!   process, `detect,ioc_hunt`; a cluster names the stages it deploys). With no stage
//!   configured the status stays ingest's (`indexed`): nothing further is tracked.
//!
//! Each change of the status shown is a `file.status_changed` fact.

use crate::repo::FileRow;
use crate::service::{CasesApi, db_error};
use casescope_bus::facts::{StageInfo, stage_changed_fact};
use casescope_bus::{Handler, HandlerError, OutboundMessage, ReceivedMessage, subjects};
use casescope_db::{DbError, Tx};
use casescope_proto::bus::v1::{FactHeader, FileFact};
use casescope_proto::time::micros_to_rfc3339;
use sqlx::Row;

pub(crate) const MIGRATION: &str = "
ALTER TABLE case_files ADD COLUMN ingest_status TEXT NOT NULL DEFAULT '';
ALTER TABLE case_files ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
CREATE TABLE case_file_stages (
    case_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    generation BIGINT NOT NULL,
    state TEXT NOT NULL,
    error TEXT NOT NULL,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (case_id, file_id, stage)
);
";

/// The durable consumer of `file.stage_changed` facts.
pub const CASES_FILE_STAGES_CONSUMER: &str = "cases-file-stages";

/// The stages a file goes through after ingest, by default.
pub const DEFAULT_FILE_STAGES: [&str; 2] = ["detect", "ioc_hunt"];

/// A downstream stage's last known state of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRow {
    pub stage: String,
    pub generation: i64,
    pub state: String,
    pub error: String,
}

/// (status, failed stage, error) shown for `file` given its stages' rows.
pub fn derive(
    file: &FileRow,
    stages: &[StageRow],
    expected: &[String],
) -> (String, Option<String>, Option<String>) {
    if file.ingest_status != "indexed" || expected.is_empty() {
        return (
            file.status.clone(),
            file.failed_stage.clone(),
            file.error.clone(),
        );
    }
    let current = |stage: &str| {
        stages
            .iter()
            .find(|row| row.stage == stage && row.generation == file.generation)
    };
    for stage in expected {
        if let Some(row) = current(stage)
            && row.state == "failed"
        {
            return (
                "failed".into(),
                Some(stage.clone()),
                Some(row.error.clone()),
            );
        }
    }
    for stage in expected {
        if current(stage).is_none_or(|row| row.state != "done") {
            let status = match stage.as_str() {
                "detect" => "detecting",
                "ioc_hunt" => "hunting",
                _ => "indexed",
            };
            return (status.into(), None, None);
        }
    }
    ("ready".into(), None, None)
}

async fn stage_rows(
    tx: &mut Tx<'_>,
    case_id: &str,
    file_id: &str,
) -> Result<Vec<StageRow>, DbError> {
    let rows = sqlx::query(
        "SELECT stage, generation, state, error FROM case_file_stages WHERE case_id = $1 AND file_id = $2",
    )
    .bind(case_id)
    .bind(file_id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StageRow {
                stage: r.try_get("stage")?,
                generation: r.try_get("generation")?,
                state: r.try_get("state")?,
                error: r.try_get("error")?,
            })
        })
        .collect()
}

/// Records `info` unless a newer state of that stage is stored; `true` when recorded.
async fn record(tx: &mut Tx<'_>, info: &StageInfo) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO case_file_stages (case_id, file_id, stage, generation, state, error, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (case_id, file_id, stage) DO UPDATE SET generation = excluded.generation, \
           state = excluded.state, error = excluded.error, changed_at = excluded.changed_at \
         WHERE excluded.generation > case_file_stages.generation \
            OR (excluded.generation = case_file_stages.generation \
                AND excluded.changed_at > case_file_stages.changed_at)",
    )
    .bind(&info.case_id)
    .bind(&info.file_id)
    .bind(&info.stage)
    .bind(info.generation)
    .bind(&info.state)
    .bind(&info.error)
    .bind(info.changed_at)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

impl CasesApi {
    /// The status shown for `file` (its `ingest_status` and `generation` as given), read
    /// with the stages' rows in `tx`.
    pub(crate) async fn derived_status(
        &self,
        tx: &mut Tx<'_>,
        file: &FileRow,
    ) -> Result<(String, Option<String>, Option<String>), DbError> {
        let stages = stage_rows(tx, &file.case_id, &file.id).await?;
        Ok(derive(file, &stages, &self.file_stages))
    }

    /// Queues the `file.status_changed` fact of `file` in `tx`.
    pub(crate) async fn status_fact(&self, tx: &mut Tx<'_>, file: &FileRow) -> Result<(), DbError> {
        let fact_id = uuid::Uuid::now_v7().to_string();
        let n = |v: i64| u64::try_from(v).unwrap_or_default();
        let fact = FileFact {
            header: Some(FactHeader {
                fact_id: fact_id.clone(),
                kind: "file.status_changed".into(),
                case_id: file.case_id.clone(),
                occurred_at: micros_to_rfc3339(file.updated_at),
                producer: "cases".into(),
            }),
            file_id: file.id.clone(),
            file_name: file.name.clone(),
            status: file.status.clone(),
            failed_stage: file.failed_stage.clone().unwrap_or_default(),
            error: file.error.clone().unwrap_or_default(),
            records_read: n(file.records_read),
            events_indexed: n(file.events_indexed),
            records_rejected: n(file.records_rejected),
            duplicates_skipped: n(file.duplicates_skipped),
        };
        let message = OutboundMessage::json(subjects::file_facts(&file.case_id), fact_id, &fact)
            .map_err(|e| DbError::Query(e.to_string()))?;
        self.outbox
            .enqueue(tx, &message)
            .await
            .map_err(|e| DbError::Query(e.to_string()))
    }

    /// Records a stage's state of a file and, when the status shown changes, writes it
    /// and publishes it.
    async fn on_stage(&self, info: &StageInfo) -> Result<(), DbError> {
        let mut tx = self.repo.db().begin().await?;
        // First the file's lock: ingest's report of the file (files.rs) takes it too, so
        // whichever of the two comes second derives from the other's rows.
        self.repo
            .lock_file(&mut tx, &info.case_id, &info.file_id)
            .await?;
        if !record(&mut tx, info).await? {
            return Ok(()); // an older state, delivered late or again
        }
        let Some(mut file) = self
            .repo
            .file_in(&mut tx, &info.case_id, &info.file_id)
            .await?
        else {
            tx.commit().await.map_err(DbError::from)?;
            return Ok(());
        };
        let (status, failed_stage, error) = self.derived_status(&mut tx, &file).await?;
        if file.ingest_status.is_empty()
            || (status == file.status && failed_stage == file.failed_stage && error == file.error)
        {
            tx.commit().await.map_err(DbError::from)?;
            return Ok(());
        }
        file.status = status;
        file.failed_stage = failed_stage;
        file.error = error;
        file.updated_at = casescope_db::now_micros();
        sqlx::query(
            "UPDATE case_files SET status = $3, failed_stage = $4, error = $5, updated_at = $6 \
             WHERE case_id = $1 AND id = $2",
        )
        .bind(&file.case_id)
        .bind(&file.id)
        .bind(&file.status)
        .bind(&file.failed_stage)
        .bind(&file.error)
        .bind(file.updated_at)
        .execute(&mut *tx)
        .await?;
        self.status_fact(&mut tx, &file).await?;
        tx.commit().await.map_err(DbError::from)?;
        self.outbox.nudge();
        Ok(())
    }
}

/// The consumer of `file.stage_changed` facts (other file facts are acknowledged and
/// ignored).
pub struct StageFacts(pub CasesApi);

#[async_trait::async_trait]
impl Handler for StageFacts {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let Some(info) = stage_changed_fact(&message.payload).map_err(HandlerError::Poison)? else {
            return Ok(());
        };
        self.0
            .on_stage(&info)
            .await
            .map_err(|e| HandlerError::transient(db_error(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ingest: &str, generation: i64) -> FileRow {
        FileRow {
            id: "f".into(),
            case_id: "c".into(),
            name: "n".into(),
            sha256: String::new(),
            size_bytes: 0,
            format: "evtx".into(),
            status: ingest.into(),
            failed_stage: None,
            error: None,
            records_read: 0,
            events_indexed: 0,
            records_rejected: 0,
            duplicates_skipped: 0,
            rejects_by_reason: "{}".into(),
            parent_archive_id: None,
            uploaded_at: 0,
            updated_at: 0,
            ingest_status: ingest.into(),
            generation,
            uploaded_by: String::new(),
            uploaded_by_name: String::new(),
        }
    }

    fn row(stage: &str, generation: i64, state: &str) -> StageRow {
        StageRow {
            stage: stage.into(),
            generation,
            state: state.into(),
            error: if state == "failed" {
                "boom".into()
            } else {
                String::new()
            },
        }
    }

    #[test]
    fn the_status_follows_every_stage_of_the_current_events() {
        let both: Vec<String> = DEFAULT_FILE_STAGES.iter().map(|s| s.to_string()).collect();
        let status = |f: &FileRow, rows: &[StageRow]| derive(f, rows, &both).0;
        assert_eq!(status(&file("parsing", 1), &[]), "parsing");
        assert_eq!(status(&file("indexed", 1), &[]), "detecting");
        assert_eq!(
            status(&file("indexed", 1), &[row("detect", 1, "running")]),
            "detecting"
        );
        assert_eq!(
            status(&file("indexed", 1), &[row("detect", 1, "done")]),
            "hunting"
        );
        assert_eq!(
            status(
                &file("indexed", 1),
                &[row("detect", 1, "done"), row("ioc_hunt", 1, "done")]
            ),
            "ready"
        );
        // A stage's state of older events does not count.
        assert_eq!(
            status(
                &file("indexed", 2),
                &[row("detect", 1, "done"), row("ioc_hunt", 1, "done")]
            ),
            "detecting"
        );
        let failed = derive(
            &file("indexed", 1),
            &[row("detect", 1, "done"), row("ioc_hunt", 1, "failed")],
            &both,
        );
        assert_eq!(
            failed,
            (
                "failed".into(),
                Some("ioc_hunt".into()),
                Some("boom".into())
            )
        );
        assert_eq!(
            status(&file("archived", 3), &[row("detect", 3, "running")]),
            "archived"
        );
        // No downstream stage tracked: ingest's status stands.
        assert_eq!(derive(&file("indexed", 1), &[], &[]).0, "indexed");
        let detect_only = vec!["detect".to_string()];
        assert_eq!(
            derive(
                &file("indexed", 1),
                &[row("detect", 1, "done")],
                &detect_only
            )
            .0,
            "ready"
        );
    }
}
