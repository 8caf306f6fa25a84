//! Deleting a case deletes its data here: its events (from the event store), its
//! evidence blobs and upload parts (from storage every replica reaches), and its rows.
//!
//! The `case.deleted` fact of the cases service is a signal; the `case_purges` table is
//! the source of truth. A purge is recorded first, then run under a lease on the case
//! (one replica at a time) while holding the ingest lease of every file of the case, so
//! no worker can be parsing one of them: a file still being parsed makes the purge wait
//! (the reconciler runs it again), never race it. A finished purge is run once more a
//! little later (two lease TTLs), which sweeps up the last batch a stalled worker could
//! still have written before it noticed its lease was gone, and an upload that was
//! completing while the case was deleted. Every step is idempotent.

use crate::lifecycle::{CaseArchiver, remove_file};
use crate::repo::IngestRepo;
use crate::{IngestSettings, STAGE};
use async_trait::async_trait;
use casescope_bus::facts::{CaseFactInfo, PurgeCase};
use casescope_db::{CasePurges, DbError, LeaseKey, LeaseStore, PurgeLeases, PurgeLeasing};
use casescope_eventstore::{EventQuery, EventStore, parse_query};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;

/// The durable consumer of case facts in the ingest service.
pub const INGEST_CASE_FACTS_CONSUMER: &str = "ingest-case-facts";
/// The lease stage of a case's purge.
const PURGE_STAGE: &str = "ingest-purge";

#[derive(Clone)]
pub struct CasePurger {
    repo: IngestRepo,
    purges: CasePurges,
    leases: LeaseStore,
    store: Arc<dyn EventStore>,
    settings: IngestSettings,
    holder: String,
    archiver: CaseArchiver,
}

fn db(error: impl Into<DbError>) -> String {
    error.into().to_string()
}

impl CasePurger {
    /// The archiver of the case facts this purger's consumer also reads.
    pub fn archiver(&self) -> &CaseArchiver {
        &self.archiver
    }

    pub(crate) fn new(
        repo: IngestRepo,
        store: Arc<dyn EventStore>,
        settings: IngestSettings,
        archiver: CaseArchiver,
    ) -> Self {
        Self {
            archiver,
            leases: LeaseStore::new(repo.db().clone()),
            purges: CasePurges::new(repo.db().clone()),
            repo,
            store,
            settings,
            holder: format!("ingest-purge-{}", uuid::Uuid::new_v4()),
        }
    }

    async fn purge_case(&self, case_id: &str) -> Result<Option<String>, String> {
        let files = sqlx::query("SELECT id, blob_path FROM evidence_files WHERE case_id = $1")
            .bind(case_id)
            .fetch_all(self.repo.db().pool())
            .await
            .map_err(db)?;
        let mut blobs = Vec::with_capacity(files.len());
        let mut items = Vec::with_capacity(files.len());
        for row in &files {
            let file_id: String = row.try_get("id").map_err(db)?;
            blobs.push(
                self.settings
                    .blob_file(&row.try_get::<String, _>("blob_path").map_err(db)?),
            );
            // Holding the file's ingest lease fences out every worker that parses it.
            items.push(LeaseKey::new(&file_id, STAGE));
        }
        let leasing = PurgeLeases::acquire(
            &self.leases,
            case_id,
            PURGE_STAGE,
            &items,
            &self.holder,
            self.settings.lease_ttl,
        )
        .await
        .map_err(|e| e.to_string())?;
        let held = match leasing {
            PurgeLeasing::Held(held) => held,
            PurgeLeasing::Busy(reason) => return Ok(Some(reason)),
        };
        let outcome = self.purge_leased(case_id, &held, &blobs).await;
        held.release().await;
        outcome
    }

    async fn purge_leased(
        &self,
        case_id: &str,
        held: &PurgeLeases,
        blobs: &[std::path::PathBuf],
    ) -> Result<Option<String>, String> {
        self.store
            .delete_case(case_id)
            .await
            .map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        let everything = EventQuery::new(case_id, parse_query("").map_err(|e| e.to_string())?);
        let left = self
            .store
            .count(&everything)
            .await
            .map_err(|e| e.to_string())?;
        if left != 0 {
            return Ok(Some(format!(
                "{left} events of the case are still searchable"
            )));
        }

        let store = &self.settings.blobs;
        let failed = |e: crate::BlobError| e.to_string();
        for blob in blobs {
            store.remove(blob).await.map_err(failed)?;
        }
        store
            .remove_dir(&self.settings.evidence_dir(case_id))
            .await
            .map_err(failed)?;
        store
            .remove(&self.settings.archive_path(case_id))
            .await
            .map_err(failed)?;
        remove_file(
            &self
                .settings
                .archive_path(case_id)
                .with_extension("partial"),
        )
        .await?;
        let uploads = sqlx::query("SELECT id FROM uploads WHERE case_id = $1")
            .bind(case_id)
            .fetch_all(self.repo.db().pool())
            .await
            .map_err(db)?;
        for row in &uploads {
            let id: String = row.try_get("id").map_err(db)?;
            remove_file(&self.settings.uploads_dir().join(format!("{id}.part"))).await?;
        }

        let mut tx = match held.fenced().await {
            Ok(tx) => tx,
            Err(error) => return Ok(Some(error.to_string())),
        };
        for statement in [
            "DELETE FROM event_fingerprints WHERE case_id = $1",
            "DELETE FROM evidence_files WHERE case_id = $1",
            "DELETE FROM uploads WHERE case_id = $1",
            "DELETE FROM case_archives WHERE case_id = $1",
        ] {
            sqlx::query(statement)
                .bind(case_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let removed = u64::try_from(blobs.len() + uploads.len()).unwrap_or(u64::MAX);
        self.purges
            .finish_pass(&mut tx, case_id, removed)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(
            case_id,
            files = blobs.len(),
            uploads = uploads.len(),
            "case data deleted from ingest"
        );
        Ok(None)
    }
}

#[async_trait]
impl PurgeCase for CasePurger {
    fn purges(&self) -> &CasePurges {
        &self.purges
    }

    fn settle(&self) -> Duration {
        self.settings.lease_ttl * 2
    }

    async fn purge(&self, case_id: &str) -> Result<Option<String>, String> {
        self.purge_case(case_id).await
    }

    /// `case.archived` and `case.restore_requested` move the case's data.
    async fn on_case_fact(&self, fact: &CaseFactInfo) -> Result<(), String> {
        self.archiver.on_fact(fact).await
    }
}
