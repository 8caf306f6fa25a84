//! The detect reconciler: queues the detect job of every file that is behind the
//! ruleset or whose run was lost (its lease expired), and runs the correlation pass of
//! every case whose inputs changed since its last pass. Woken early by rule changes.

use crate::repo::DetectRepo;
use crate::stage::{DetectStage, enqueue_job};
use casescope_db::{DbError, LeaseKey, LeaseStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Files queued per pass at most.
const FILES_PER_PASS: i64 = 500;
/// Cases correlated per pass at most.
const CASES_PER_PASS: i64 = 50;

#[derive(Clone)]
pub struct Reconciler {
    pub(crate) stage: DetectStage,
}

impl Reconciler {
    fn repo(&self) -> &DetectRepo {
        &self.stage.repo
    }

    /// One pass; returns how many files and cases it (re)started.
    pub async fn pass(&self) -> Result<usize, DbError> {
        let repo = self.repo();
        let backfilled = repo.backfill_detection_events().await?;
        if backfilled > 0 {
            tracing::info!(
                detections = backfilled,
                "indexed the events of stored detections"
            );
        }
        let now = casescope_db::now_micros();
        let (version, _) = repo.ruleset_version().await?;
        // Files recorded while the version moved are raised to it too.
        let mut tx = repo.db().begin().await?;
        repo.request_all(&mut tx, version, now).await?;
        tx.commit().await.map_err(DbError::from)?;
        let ttl = i64::try_from(self.stage.settings.lease_ttl.as_micros()).unwrap_or(i64::MAX);
        let files = repo
            .files_needing_run(version, now.saturating_sub(ttl), FILES_PER_PASS)
            .await?;
        let leases = LeaseStore::new(repo.db().clone());
        let period = self.stage.settings.reconcile_period.as_micros().max(1) as i64;
        let mut queued = 0;
        for file in files {
            let held = leases
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
                file.requested_version.max(version),
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
        let cases = repo.cases_to_correlate(CASES_PER_PASS).await?;
        let correlated = cases.len();
        for (case_id, _) in cases {
            if let Err(error) = self.stage.correlate(&case_id).await {
                tracing::warn!(case_id, %error, "correlation pass failed; retrying next period");
            }
        }
        Ok(queued + correlated)
    }

    /// Runs passes every period, and soon after each wake-up, until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let wake: Arc<Notify> = self.stage.wake.clone();
        let period: Duration = self.stage.settings.reconcile_period;
        loop {
            match self.pass().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(reconciler = "detect", restarted = n, "reconciler pass"),
                Err(error) => {
                    tracing::warn!(reconciler = "detect", %error, "reconciler pass failed; retrying next period")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
                _ = wake.notified() => {
                    // Let a burst of changes settle into one pass.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
