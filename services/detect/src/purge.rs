//! Deleting a case deletes its detections here: every detection, correlation input and
//! detect-stage record of the case. The same consumer of case facts keeps the state of
//! each case (open, archived, restoring) that `RerunDetection` checks; an archived
//! case's detections leave through the detect jobs the ingest service queues when it
//! archives the case's files (their evaluation finds no events).
//!
//! As in the ingest service, the `case.deleted` fact is a signal and the `case_purges`
//! table the source of truth: the purge is recorded, then run under a lease on the case
//! while holding the detect lease of every file of the case and the case's correlation
//! lease, so no evaluation can commit detections for it meanwhile (their writes are
//! fenced transactions); one fenced transaction deletes the rows. The reconciler runs
//! unfinished purges, and each finished one once more after two lease TTLs.

use crate::repo::DetectRepo;
use crate::stage::DetectStage;
use crate::{CORRELATE_STAGE, STAGE};
use async_trait::async_trait;
use casescope_bus::facts::{CaseFactInfo, PurgeCase};
use casescope_db::{
    CasePurges, Database, DbError, LeaseKey, LeaseStore, Migration, Migrations, PurgeLeases,
    PurgeLeasing,
};
use sqlx::Row;
use std::time::Duration;

/// The state of each case as its facts tell it (the newest version wins).
pub const CASE_STATE_MIGRATIONS: Migrations = Migrations {
    service: "detect_case_states",
    steps: &[Migration {
        version: 1,
        name: "case states",
        sql: "
CREATE TABLE detect_case_states (
    case_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    version BIGINT NOT NULL
);
",
    }],
};

/// The state of `case_id` as its last fact said ("open", "archived", "restoring");
/// `None` when no fact of it arrived yet.
pub(crate) async fn case_state(db: &Database, case_id: &str) -> Result<Option<String>, DbError> {
    let row = sqlx::query("SELECT state FROM detect_case_states WHERE case_id = $1")
        .bind(case_id)
        .fetch_optional(db.pool())
        .await?;
    row.map(|row| row.try_get("state").map_err(DbError::from))
        .transpose()
}

/// The durable consumer of case facts in the detect service.
pub const DETECT_CASE_FACTS_CONSUMER: &str = "detect-case-facts";
/// The lease stage of a case's purge.
const PURGE_STAGE: &str = "detect-purge";

#[derive(Clone)]
pub struct CasePurger {
    repo: DetectRepo,
    purges: CasePurges,
    leases: LeaseStore,
    lease_ttl: Duration,
    holder: String,
}

fn db(error: impl Into<DbError>) -> String {
    error.into().to_string()
}

impl CasePurger {
    /// The purger of the detect service whose stage is `stage`.
    pub fn new(stage: &DetectStage) -> Self {
        Self {
            repo: stage.repo.clone(),
            purges: CasePurges::new(stage.repo.db().clone()),
            leases: stage.leases.clone(),
            lease_ttl: stage.settings.lease_ttl,
            holder: format!("detect-purge-{}", uuid::Uuid::new_v4()),
        }
    }

    async fn purge_case(&self, case_id: &str) -> Result<Option<String>, String> {
        let files = sqlx::query("SELECT file_id FROM detect_files WHERE case_id = $1")
            .bind(case_id)
            .fetch_all(self.repo.db().pool())
            .await
            .map_err(db)?;
        let mut items = vec![LeaseKey::new(case_id, CORRELATE_STAGE)];
        for row in &files {
            let file_id: String = row.try_get("file_id").map_err(db)?;
            items.push(LeaseKey::new(&file_id, STAGE));
        }
        let leasing = PurgeLeases::acquire(
            &self.leases,
            case_id,
            PURGE_STAGE,
            &items,
            &self.holder,
            self.lease_ttl,
        )
        .await
        .map_err(|e| e.to_string())?;
        let held = match leasing {
            PurgeLeasing::Held(held) => held,
            PurgeLeasing::Busy(reason) => return Ok(Some(reason)),
        };
        let outcome = self.delete_rows(case_id, &held).await;
        held.release().await;
        outcome
    }

    async fn delete_rows(
        &self,
        case_id: &str,
        held: &PurgeLeases,
    ) -> Result<Option<String>, String> {
        let mut tx = match held.fenced().await {
            Ok(tx) => tx,
            Err(error) => return Ok(Some(error.to_string())),
        };
        let mut removed = 0;
        for statement in [
            "DELETE FROM detection_events WHERE case_id = $1",
            "DELETE FROM detections WHERE case_id = $1",
            "DELETE FROM detect_correlation_inputs WHERE case_id = $1",
            "DELETE FROM detect_files WHERE case_id = $1",
            "DELETE FROM detect_cases WHERE case_id = $1",
            "DELETE FROM detect_case_states WHERE case_id = $1",
        ] {
            removed += sqlx::query(statement)
                .bind(case_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        }
        self.purges
            .finish_pass(&mut tx, case_id, removed)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(case_id, rows = removed, "case data deleted from detect");
        Ok(None)
    }
}

#[async_trait]
impl PurgeCase for CasePurger {
    fn purges(&self) -> &CasePurges {
        &self.purges
    }

    fn settle(&self) -> Duration {
        self.lease_ttl * 2
    }

    async fn purge(&self, case_id: &str) -> Result<Option<String>, String> {
        self.purge_case(case_id).await
    }

    async fn on_case_fact(&self, fact: &CaseFactInfo) -> Result<(), String> {
        let state = match fact.kind.as_str() {
            "case.created" | "case.restored" => "open",
            "case.archived" | "case.restore_refused" => "archived",
            "case.restore_requested" => "restoring",
            _ => return Ok(()),
        };
        sqlx::query(
            "INSERT INTO detect_case_states (case_id, state, version) VALUES ($1, $2, $3)              ON CONFLICT (case_id) DO UPDATE SET state = excluded.state, version = excluded.version              WHERE excluded.version > detect_case_states.version",
        )
        .bind(&fact.case_id)
        .bind(state)
        .bind(fact.version)
        .execute(self.repo.db().pool())
        .await
        .map_err(db)?;
        Ok(())
    }
}
