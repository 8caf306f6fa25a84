//! The record of deleted cases whose data a service still has to delete, or deleted.
//!
//! Every service that keeps data per case (ingest: events, blobs, uploads; detect:
//! detections) records a purge when it learns a case was deleted, and its reconciler
//! runs unfinished purges until they are done — the `case.deleted` fact is only the
//! signal. A finished purge is run once more after a settling time (a stalled worker's
//! last write, an upload completing as the case went), then forgotten after the
//! retention. What a purge removes is the service's own business; this table only says
//! which cases are due.

use crate::{
    Database, DbError, KeepAlive, Lease, LeaseError, LeaseKey, LeaseStore, Migration, Migrations,
    Tx, now_micros,
};
use sqlx::Row;
use std::time::Duration;

pub const PURGE_MIGRATIONS: Migrations = Migrations {
    service: "case_purges",
    steps: &[Migration {
        version: 1,
        name: "case purges",
        sql: "
CREATE TABLE IF NOT EXISTS case_purges (
    case_id TEXT PRIMARY KEY,
    requested_at BIGINT NOT NULL,
    completed_at BIGINT,
    verified_at BIGINT,
    passes BIGINT NOT NULL DEFAULT 0,
    items_removed BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS case_purges_due ON case_purges (completed_at, verified_at);
",
    }],
};

/// Finished purges are remembered this long after their last pass (a redelivered
/// `case.deleted` then finds nothing to do either way).
pub const PURGE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX / 2)
}

#[derive(Debug, Clone)]
pub struct CasePurges {
    db: Database,
}

impl CasePurges {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records that `case_id` was deleted (idempotent).
    pub async fn record(&self, case_id: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO case_purges (case_id, requested_at) VALUES ($1, $2) \
             ON CONFLICT (case_id) DO NOTHING",
        )
        .bind(case_id)
        .bind(now_micros())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Whether `case_id` was deleted (its data is gone or going).
    pub async fn is_recorded(&self, case_id: &str) -> Result<bool, DbError> {
        let row = sqlx::query("SELECT 1 AS found FROM case_purges WHERE case_id = $1")
            .bind(case_id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Cases due for a pass: unfinished, or finished more than `settle` ago and not run
    /// again since. Oldest request first, at most `limit`.
    pub async fn due(&self, settle: Duration, limit: i64) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query(
            "SELECT case_id FROM case_purges WHERE completed_at IS NULL \
             OR (verified_at IS NULL AND completed_at <= $1) ORDER BY requested_at LIMIT $2",
        )
        .bind(now_micros() - micros(settle))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| row.try_get("case_id").map_err(DbError::from))
            .collect()
    }

    /// Records a finished pass over `case_id` that removed `items`, in `tx` (with the
    /// deletions it made): the first pass completes the purge, the next verifies it.
    pub async fn finish_pass(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        items: u64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE case_purges SET \
               verified_at = CASE WHEN completed_at IS NULL THEN NULL ELSE $2 END, \
               completed_at = COALESCE(completed_at, $2), \
               passes = passes + 1, items_removed = items_removed + $3 \
             WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(now_micros())
        .bind(i64::try_from(items).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Forgets purges verified longer than [`PURGE_RETENTION`] ago; returns how many.
    pub async fn forget_old(&self) -> Result<u64, DbError> {
        let result = sqlx::query(
            "DELETE FROM case_purges WHERE verified_at IS NOT NULL AND verified_at < $1",
        )
        .bind(now_micros() - micros(PURGE_RETENTION))
        .execute(self.db.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// One reconciler pass: runs `purge` (which answers `Some(reason)` when it has to
    /// wait) on every due case — unfinished ones, and finished ones once more after
    /// `settle` — then forgets old purges. Returns how many passes finished.
    pub async fn run_due<F, Fut>(
        &self,
        settle: Duration,
        limit: i64,
        mut purge: F,
    ) -> Result<usize, String>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, String>>,
    {
        let mut finished = 0;
        for case_id in self.due(settle, limit).await.map_err(|e| e.to_string())? {
            match purge(case_id.clone()).await? {
                None => finished += 1,
                Some(reason) => tracing::info!(case_id, reason, "case purge waiting"),
            }
        }
        self.forget_old().await.map_err(|e| e.to_string())?;
        Ok(finished)
    }

    /// (completed, verified) of a case's purge; `None` if none was recorded.
    pub async fn state(&self, case_id: &str) -> Result<Option<(bool, bool)>, DbError> {
        let row =
            sqlx::query("SELECT completed_at, verified_at FROM case_purges WHERE case_id = $1")
                .bind(case_id)
                .fetch_optional(self.db.pool())
                .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let completed: Option<i64> = row.try_get("completed_at")?;
        let verified: Option<i64> = row.try_get("verified_at")?;
        Ok(Some((completed.is_some(), verified.is_some())))
    }
}

/// A case's purge lease (kept alive) and the leases of every work item of the case that
/// a worker could be writing for (files being ingested or evaluated): while it is held,
/// no worker of those items can commit a fenced write.
pub struct PurgeLeases {
    leases: LeaseStore,
    purge: Lease,
    items: Vec<Lease>,
    holder: String,
    ttl: Duration,
    _alive: KeepAlive,
}

/// Taking the leases of a purge: held, or why not now.
pub enum PurgeLeasing {
    Held(PurgeLeases),
    /// Another replica purges the case, or a worker holds one of the items.
    Busy(String),
}

impl PurgeLeases {
    /// Takes the lease `(case_id, purge_stage)`, then the lease of every item; gives
    /// everything back and answers `Busy` if any is held by someone else.
    pub async fn acquire(
        leases: &LeaseStore,
        case_id: &str,
        purge_stage: &str,
        items: &[LeaseKey],
        holder: &str,
        ttl: Duration,
    ) -> Result<PurgeLeasing, LeaseError> {
        let key = LeaseKey::new(case_id, purge_stage);
        let Some(purge) = leases.acquire(&key, holder, ttl).await? else {
            return Ok(PurgeLeasing::Busy(
                "another replica is purging the case".into(),
            ));
        };
        let alive = leases.keep_alive(&purge, ttl, || {});
        let mut held = PurgeLeases {
            leases: leases.clone(),
            purge,
            items: Vec::with_capacity(items.len()),
            holder: holder.to_string(),
            ttl,
            _alive: alive,
        };
        match held.also(items).await {
            Ok(None) => Ok(PurgeLeasing::Held(held)),
            Ok(Some(reason)) => {
                held.release().await;
                Ok(PurgeLeasing::Busy(reason))
            }
            Err(error) => {
                held.release().await;
                Err(error)
            }
        }
    }

    /// Takes the lease of every item too (for work that needs the items only for its
    /// last part); `Some(reason)` if one is held by someone else (what was taken stays
    /// held until [`Self::release`]).
    pub async fn also(&mut self, items: &[LeaseKey]) -> Result<Option<String>, LeaseError> {
        for item in items {
            match self.leases.acquire(item, &self.holder, self.ttl).await? {
                Some(lease) => self.items.push(lease),
                None => {
                    return Ok(Some(format!(
                        "{} {} is being worked on",
                        item.stage, item.resource
                    )));
                }
            }
        }
        Ok(None)
    }

    /// A transaction fenced by the purge lease: the purge's row deletions go in it.
    pub async fn fenced(&self) -> Result<Tx<'static>, LeaseError> {
        self.leases.fenced(&self.purge).await
    }

    /// Gives every lease back (best effort: an unreleased lease expires by itself).
    pub async fn release(self) {
        for lease in self.items.iter().chain(std::iter::once(&self.purge)) {
            if let Err(error) = self.leases.release(lease).await {
                tracing::debug!(%error, "purge lease not released; it expires by itself");
            }
        }
    }
}
