//! Deleting a case deletes its deliveries and its DFIR-IRIS links here (what was pushed
//! to IRIS stays there: it is IRIS's). As in the other services, the `case.deleted` fact
//! is a signal and the `case_purges` table the source of truth. Finished deliveries are
//! also kept for a bounded time only ([`retention_pass`]).

use crate::delivery::DeliveryRepo;
use async_trait::async_trait;
use casescope_bus::facts::PurgeCase;
use casescope_db::{CasePurges, DbError};
use std::time::Duration;

/// The durable consumer of case facts in the integrations service.
pub const INTEGRATIONS_CASE_FACTS_CONSUMER: &str = "integrations-case-facts";

/// Finished deliveries deleted per retention pass at most.
const RETENTION_BATCH: i64 = 5_000;

#[derive(Clone)]
pub struct CasePurger {
    repo: DeliveryRepo,
    purges: CasePurges,
    lease_ttl: Duration,
}

fn db(error: impl Into<DbError>) -> String {
    error.into().to_string()
}

impl CasePurger {
    pub fn new(api: &crate::IntegrationsApi, lease_ttl: Duration) -> Self {
        let repo = api.deliveries.clone();
        Self {
            purges: CasePurges::new(repo.db().clone()),
            repo,
            lease_ttl,
        }
    }

    /// Deletes finished deliveries completed more than `keep` ago; how many.
    pub async fn retention_pass(&self, keep: Duration) -> Result<u64, String> {
        let before = casescope_db::now_micros()
            .saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX));
        let removed = self
            .repo
            .purge_finished(before, RETENTION_BATCH)
            .await
            .map_err(db)?;
        if removed > 0 {
            tracing::info!(
                rows = removed,
                "finished deliveries past their retention deleted"
            );
        }
        Ok(removed)
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
        let mut tx = self.repo.db().begin().await.map_err(db)?;
        let mut removed = 0;
        for statement in [
            "DELETE FROM integration_deliveries WHERE case_id = $1",
            "DELETE FROM iris_links WHERE case_id = $1",
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
        tracing::info!(
            case_id,
            rows = removed,
            "case data deleted from integrations"
        );
        Ok(None)
    }
}
