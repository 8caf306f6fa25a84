//! Deleting a case deletes its IOCs and matches here. As in the other services, the
//! `case.deleted` fact is a signal and the `case_purges` table the source of truth: the
//! purge is recorded, then run under a lease on the case while holding the hunt lease of
//! every file of the case, so no hunt can commit matches for it meanwhile; one fenced
//! transaction deletes the rows. The reconciler runs unfinished purges.

use crate::STAGE;
use crate::repo::IocRepo;
use crate::stage::HuntStage;
use async_trait::async_trait;
use casescope_bus::facts::PurgeCase;
use casescope_db::{CasePurges, DbError, LeaseKey, LeaseStore, PurgeLeases, PurgeLeasing};
use sqlx::Row;
use std::time::Duration;

/// The durable consumer of case facts in the ioc service.
pub const IOC_CASE_FACTS_CONSUMER: &str = "ioc-case-facts";
/// The lease stage of a case's purge.
const PURGE_STAGE: &str = "ioc-purge";

#[derive(Clone)]
pub struct CasePurger {
    repo: IocRepo,
    purges: CasePurges,
    leases: LeaseStore,
    lease_ttl: Duration,
    holder: String,
}

fn db(error: impl Into<DbError>) -> String {
    error.into().to_string()
}

impl CasePurger {
    pub fn new(stage: &HuntStage) -> Self {
        Self {
            repo: stage.repo.clone(),
            purges: CasePurges::new(stage.repo.db().clone()),
            leases: stage.leases.clone(),
            lease_ttl: stage.settings.lease_ttl,
            holder: format!("ioc-purge-{}", uuid::Uuid::new_v4()),
        }
    }

    async fn purge_case(&self, case_id: &str) -> Result<Option<String>, String> {
        let files = sqlx::query("SELECT file_id FROM ioc_files WHERE case_id = $1")
            .bind(case_id)
            .fetch_all(self.repo.db().pool())
            .await
            .map_err(db)?;
        let mut items = Vec::new();
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
            "DELETE FROM ioc_matches WHERE case_id = $1",
            "DELETE FROM ioc_changes WHERE case_id = $1",
            "DELETE FROM ioc_case_versions WHERE case_id = $1",
            "DELETE FROM ioc_files WHERE case_id = $1",
            "DELETE FROM iocs WHERE case_id = $1",
            "DELETE FROM ioc_list_cases WHERE case_id = $1",
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
        tracing::info!(case_id, rows = removed, "case data deleted from ioc");
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
}
