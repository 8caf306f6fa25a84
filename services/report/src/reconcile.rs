//! The report reconciler: re-sends the job of every report queued or running whose
//! signal or worker was lost (nothing changed for two lease periods, and no live
//! lease), and sweeps the chunks of reports deleted while they were being written.

use crate::job::{ReportWorker, enqueue};
use crate::repo::ReportRepo;
use casescope_db::{DbError, LeaseKey};
use tokio_util::sync::CancellationToken;

/// Reports re-sent per pass at most.
const REPORTS_PER_PASS: i64 = 200;

#[derive(Clone)]
pub struct Reconciler {
    pub(crate) worker: ReportWorker,
}

impl Reconciler {
    /// One pass; returns how many reports it re-sent.
    pub async fn pass(&self) -> Result<usize, DbError> {
        let worker = &self.worker;
        let now = casescope_db::now_micros();
        let ttl = i64::try_from(worker.settings.lease_ttl.as_micros()).unwrap_or(i64::MAX);
        let stalled = worker
            .repo
            .stalled(now.saturating_sub(ttl.saturating_mul(2)), REPORTS_PER_PASS)
            .await?;
        let mut sent = 0;
        for report in stalled {
            let held = worker
                .leases
                .current(&LeaseKey::new(&report.id, crate::STAGE))
                .await
                .map_err(|e| DbError::Query(e.to_string()))?
                .is_some_and(|(holder, _, expires)| holder.is_some() && expires > now);
            if held {
                continue;
            }
            let period = worker.settings.reconcile_period.as_micros().max(1) as i64;
            let reason = format!("r{}t{}", report.attempts, now / (period * 4));
            let mut tx = worker.repo.db().begin().await?;
            enqueue(
                &worker.outbox,
                &mut tx,
                &report.case_id,
                &report.id,
                &reason,
            )
            .await
            .map_err(DbError::Query)?;
            ReportRepo::touch(&mut tx, &report.id, now).await?;
            tx.commit().await.map_err(DbError::from)?;
            sent += 1;
        }
        if sent > 0 {
            worker.outbox.nudge();
        }
        let swept = worker.repo.sweep_orphans().await?;
        if swept > 0 {
            tracing::debug!(rows = swept, "removed the chunks of deleted reports");
        }
        Ok(sent)
    }

    /// Runs passes every period, and soon after a failed attempt, until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.worker.wake.clone();
        let period = self.worker.settings.reconcile_period;
        loop {
            match self.pass().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(reconciler = "report", resent = n, "reconciler pass"),
                Err(error) => {
                    tracing::warn!(reconciler = "report", %error, "reconciler pass failed; retrying next period")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
                _ = wake.notified() => {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }
}
