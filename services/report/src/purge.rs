//! Deleting a case deletes its reports here. As in the other services, the
//! `case.deleted` fact is a signal and the `case_purges` table the source of truth; the
//! reconciler runs unfinished purges. A report job of the deleted case that still runs
//! finds its report gone at its next write and stops (the orphan sweep removes what it
//! wrote meanwhile).

use crate::repo::ReportRepo;
use async_trait::async_trait;
use casescope_bus::facts::PurgeCase;
use casescope_db::{CasePurges, DbError};
use std::time::Duration;

/// The durable consumer of case facts in the report service.
pub const REPORT_CASE_FACTS_CONSUMER: &str = "report-case-facts";

#[derive(Clone)]
pub struct CasePurger {
    repo: ReportRepo,
    purges: CasePurges,
    lease_ttl: Duration,
}

fn db(error: impl Into<DbError>) -> String {
    error.into().to_string()
}

impl CasePurger {
    pub fn new(api: &crate::ReportApi) -> Self {
        let worker = api.worker();
        Self {
            repo: worker.repo.clone(),
            purges: CasePurges::new(worker.repo.db().clone()),
            lease_ttl: worker.settings.lease_ttl,
        }
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
            "DELETE FROM report_chunks WHERE report_id IN (SELECT id FROM reports WHERE case_id = $1)",
            "DELETE FROM report_artefacts WHERE report_id IN (SELECT id FROM reports WHERE case_id = $1)",
            "DELETE FROM reports WHERE case_id = $1",
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
        tracing::info!(case_id, rows = removed, "case data deleted from report");
        Ok(None)
    }
}
