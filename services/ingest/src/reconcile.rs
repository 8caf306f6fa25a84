//! The ingest reconciler: no file stays "uploaded" or "parsing" forever, no status stays
//! undelivered, no abandoned upload keeps its bytes. Each pass:
//! 1. re-queues pending/running files whose lease is free or expired (lost or stalled
//!    jobs), or marks them failed after `max_attempts` runs;
//! 2. re-delivers registrations and statuses the cases service has not acknowledged;
//! 3. expires uploads idle past the retention and deletes their partial files.

use crate::cases_client::CasesClient;
use crate::repo::{IngestRepo, stage};
use crate::{IngestSettings, STAGE};
use casescope_bus::Outbox;
use casescope_db::{LeaseKey, LeaseStore};

const BATCH: i64 = 200;

#[derive(Clone)]
pub struct Reconciler {
    /// The first pass after start-up re-queues every waiting file (an in-process bus
    /// loses its queue with the process); later passes leave queued files alone longer.
    started: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(crate) repo: IngestRepo,
    pub(crate) leases: LeaseStore,
    pub(crate) outbox: Outbox,
    pub(crate) cases: CasesClient,
    pub(crate) settings: IngestSettings,
}

fn micros(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX / 2)
}

impl Reconciler {
    pub fn new(
        repo: IngestRepo,
        outbox: Outbox,
        cases: CasesClient,
        settings: IngestSettings,
    ) -> Self {
        Self {
            started: Default::default(),
            leases: LeaseStore::new(repo.db().clone()),
            repo,
            outbox,
            cases,
            settings,
        }
    }

    /// One pass; returns how many things it repaired.
    pub async fn pass(&self) -> Result<usize, String> {
        let mut repaired = 0;
        let now = casescope_db::now_micros();
        let quiet_since = now - micros(self.settings.lease_ttl);
        let first_pass = !self.started.swap(true, std::sync::atomic::Ordering::SeqCst);
        // A pending file normally has its job in the queue behind others: re-queue it
        // only when it has waited much longer than any run should take to start.
        let waiting_since = if first_pass {
            now
        } else {
            now - micros((self.settings.lease_ttl * 10).max(std::time::Duration::from_secs(300)))
        };
        for status in [stage::PENDING, stage::RUNNING] {
            let before = if status == stage::PENDING {
                waiting_since
            } else {
                quiet_since
            };
            let files = self
                .repo
                .files_in_stage(status, before, BATCH)
                .await
                .map_err(|e| e.to_string())?;
            for file in files {
                let lease = self
                    .leases
                    .current(&LeaseKey::new(&file.id, STAGE))
                    .await
                    .map_err(|e| e.to_string())?;
                let held = matches!(lease, Some((Some(_), _, expires_at)) if expires_at > now);
                if held {
                    continue;
                }
                if file.attempts >= self.settings.max_attempts {
                    let error = format!("gave up after {} ingest attempts", file.attempts);
                    let gave_up = self
                        .repo
                        .give_up(&file.id, &error)
                        .await
                        .map_err(|e| e.to_string())?;
                    if gave_up {
                        casescope_runtime::metrics::metrics()
                            .ingest_files
                            .add(1, &casescope_runtime::metrics::attr("outcome", "failed"));
                    }
                    if let Some(updated) =
                        self.repo.file(&file.id).await.map_err(|e| e.to_string())?
                    {
                        crate::stage::sync_status(&self.repo, &self.cases, &updated).await;
                    }
                    repaired += 1;
                    continue;
                }
                let mut tx = self.repo.db().begin().await.map_err(|e| e.to_string())?;
                crate::stage::enqueue_job(
                    &self.outbox,
                    &mut tx,
                    &file,
                    "reconciler",
                    Some(&format!("r{now}")),
                )
                .await?;
                tx.commit().await.map_err(|e| e.to_string())?;
                self.repo.touch(&file.id).await.map_err(|e| e.to_string())?;
                tracing::info!(file_id = %file.id, status, "re-queued ingest job");
                repaired += 1;
            }
        }
        self.outbox.nudge();
        for file in self
            .repo
            .unsynced_files(BATCH)
            .await
            .map_err(|e| e.to_string())?
        {
            // Only what a run is not about to deliver itself.
            if file.updated_at < quiet_since || file.stage_status != stage::RUNNING {
                crate::stage::sync_status(&self.repo, &self.cases, &file).await;
                repaired += 1;
            }
        }
        let expired_before = now - micros(self.settings.upload_retention);
        for upload in self
            .repo
            .stale_uploads(expired_before, BATCH)
            .await
            .map_err(|e| e.to_string())?
        {
            let part = self
                .settings
                .uploads_dir()
                .join(format!("{}.part", upload.id));
            let _ = tokio::fs::remove_file(&part).await;
            self.repo
                .finish_upload(
                    &upload.id,
                    "expired",
                    None,
                    Some("abandoned past the upload retention"),
                    upload.bytes_received,
                )
                .await
                .map_err(|e| e.to_string())?;
            repaired += 1;
        }
        Ok(repaired)
    }
}
