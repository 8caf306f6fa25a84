//! The hunt reconciler: queues the hunt job of every file whose matches are behind its
//! case's IOC version, or whose run was lost (its lease expired), and trims each case's
//! IOC change log. Woken early by a failed run.

use crate::stage::{HuntStage, enqueue_job};
use casescope_db::{DbError, LeaseKey};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Files queued per pass at most.
const FILES_PER_PASS: i64 = 500;

#[derive(Clone)]
pub struct Reconciler {
    pub(crate) stage: HuntStage,
}

impl Reconciler {
    /// One pass; returns how many files it (re)queued.
    pub async fn pass(&self) -> Result<usize, DbError> {
        let repo = &self.stage.repo;
        let trimmed = repo
            .trim_changes(self.stage.settings.change_log_versions)
            .await?;
        if trimmed > 0 {
            tracing::debug!(rows = trimmed, "trimmed the IOC change log");
        }
        let now = casescope_db::now_micros();
        let ttl = i64::try_from(self.stage.settings.lease_ttl.as_micros()).unwrap_or(i64::MAX);
        let files = repo
            .files_needing_run(now.saturating_sub(ttl), FILES_PER_PASS)
            .await?;
        let period = self.stage.settings.reconcile_period.as_micros().max(1) as i64;
        let mut queued = 0;
        for file in files {
            let held = self
                .stage
                .leases
                .current(&LeaseKey::new(&file.file_id, crate::STAGE))
                .await
                .map_err(|e| DbError::Query(e.to_string()))?
                .is_some_and(|(holder, _, expires)| holder.is_some() && expires > now);
            if held {
                continue;
            }
            // Re-sent at most once per few periods while the file waits.
            let tag = format!(
                "r{}a{}t{}",
                file.requested_version,
                file.attempts,
                now / (period * 4)
            );
            let mut tx = repo.db().begin().await?;
            enqueue_job(&self.stage.outbox, &mut tx, &file, &tag)
                .await
                .map_err(DbError::Query)?;
            tx.commit().await.map_err(DbError::from)?;
            queued += 1;
        }
        if queued > 0 {
            self.stage.outbox.nudge();
        }
        Ok(queued)
    }

    /// Runs passes every period, and soon after each wake-up, until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.stage.wake.clone();
        let period: Duration = self.stage.settings.reconcile_period;
        loop {
            match self.pass().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(reconciler = "ioc", restarted = n, "reconciler pass"),
                Err(error) => {
                    tracing::warn!(reconciler = "ioc", %error, "reconciler pass failed; retrying next period")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
                _ = wake.notified() => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
