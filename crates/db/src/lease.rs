//! Leases on units of work, with epoch fencing.
//!
//! A lease row exists per (resource, stage), e.g. (file id, "ingest"). Acquiring it
//! succeeds only when it is free or expired, and always increments its epoch. Every
//! write the holder makes runs in a transaction opened by [`LeaseStore::fenced`], which
//! first re-checks (and on PostgreSQL row-locks) the lease at the holder's epoch: a
//! paused or stale holder whose lease was taken over gets [`LeaseError::Fenced`] and
//! writes nothing. Single statements can carry the same check inline with
//! [`LeaseStore::FENCE_PREDICATE`].
//!
//! Expiry uses the callers' clocks (UTC microseconds); keep hosts NTP-synchronised and
//! TTLs well above any expected skew.

use crate::database::{Database, DbError, Tx};
use crate::now_micros;
use sqlx::Row;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A lease kept alive by [`LeaseStore::keep_alive`]; renewals stop when it is dropped.
pub struct KeepAlive {
    lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    /// Whether the lease was found taken over (or marked lost by the holder).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// The holder learnt another way (a fenced write) that the lease is gone.
    pub fn mark_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    pub resource: String,
    pub stage: String,
}

impl LeaseKey {
    pub fn new(resource: impl Into<String>, stage: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            stage: stage.into(),
        }
    }
}

/// A lease held by `holder` at `epoch` until `expires_at` (UTC microseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: LeaseKey,
    pub holder: String,
    pub epoch: i64,
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {resource}/{stage} at epoch {epoch} is no longer held by {holder}")]
    Fenced {
        resource: String,
        stage: String,
        holder: String,
        epoch: i64,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl LeaseError {
    fn fenced(lease: &Lease) -> Self {
        LeaseError::Fenced {
            resource: lease.key.resource.clone(),
            stage: lease.key.stage.clone(),
            holder: lease.holder.clone(),
            epoch: lease.epoch,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LeaseStore {
    db: Database,
}

fn ttl_micros(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX / 2)
}

impl LeaseStore {
    /// SQL predicate true while the lease identified by parameters
    /// `$1` resource, `$2` stage, `$3` holder, `$4` epoch, `$5` now is still held.
    /// Append it with `AND EXISTS (...)` to a single-statement write to fence it.
    pub const FENCE_PREDICATE: &'static str = "SELECT 1 FROM leases WHERE resource = $1 AND stage = $2 \
         AND holder = $3 AND epoch = $4 AND expires_at > $5";

    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Takes the lease if it is free or expired; `None` if someone else holds it.
    pub async fn acquire(
        &self,
        key: &LeaseKey,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let now = now_micros();
        let expires_at = now.saturating_add(ttl_micros(ttl));
        // Whether this takes the lease from a holder that let it expire (died or
        // stalled): counted below when the take succeeds. Read first; a race with
        // another taker can only make the count miss, never invent a take-over.
        let expired_holder = matches!(
            self.current(key).await?,
            Some((Some(_), _, previous_expiry)) if previous_expiry <= now
        );
        let row = sqlx::query(
            "INSERT INTO leases (resource, stage, holder, epoch, expires_at, acquired_at) \
             VALUES ($1, $2, $3, 1, $4, $5) \
             ON CONFLICT (resource, stage) DO UPDATE SET holder = excluded.holder, \
                 epoch = leases.epoch + 1, expires_at = excluded.expires_at, \
                 acquired_at = excluded.acquired_at \
             WHERE leases.holder IS NULL OR leases.expires_at <= $5 \
             RETURNING epoch",
        )
        .bind(&key.resource)
        .bind(&key.stage)
        .bind(holder)
        .bind(expires_at)
        .bind(now)
        .fetch_optional(self.db.pool())
        .await
        .map_err(DbError::from)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let epoch: i64 = row.try_get("epoch").map_err(DbError::from)?;
        if expired_holder {
            casescope_runtime::metrics::metrics().leases_expired.add(
                1,
                &casescope_runtime::metrics::attr("stage", key.stage.clone()),
            );
        }
        Ok(Some(Lease {
            key: key.clone(),
            holder: holder.to_string(),
            epoch,
            expires_at,
        }))
    }

    /// Keeps `lease` alive while the returned guard lives: a task renews it every
    /// `ttl / 3` (so a slow step of the holder never lets it lapse), retrying failed
    /// renewals, until it finds the lease taken over — then it marks the guard lost and
    /// calls `on_lost` once. Dropping the guard stops the renewals.
    pub fn keep_alive(
        &self,
        lease: &Lease,
        ttl: Duration,
        on_lost: impl FnOnce() + Send + 'static,
    ) -> KeepAlive {
        let lost = Arc::new(AtomicBool::new(false));
        let task = {
            let leases = self.clone();
            let lost = lost.clone();
            let mut lease = lease.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    match leases.renew(&lease, ttl).await {
                        Ok(renewed) => lease = renewed,
                        Err(LeaseError::Fenced { .. }) => {
                            lost.store(true, Ordering::SeqCst);
                            on_lost();
                            return;
                        }
                        Err(error) => tracing::warn!(
                            resource = %lease.key.resource,
                            stage = %lease.key.stage,
                            %error,
                            "lease renewal failed; retrying"
                        ),
                    }
                }
            })
        };
        KeepAlive { lost, task }
    }

    /// Extends a lease that is still held; `Fenced` if it expired or was taken over.
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, LeaseError> {
        let now = now_micros();
        let expires_at = now.saturating_add(ttl_micros(ttl));
        let result = sqlx::query(
            "UPDATE leases SET expires_at = $6 WHERE resource = $1 AND stage = $2 \
             AND holder = $3 AND epoch = $4 AND expires_at > $5",
        )
        .bind(&lease.key.resource)
        .bind(&lease.key.stage)
        .bind(&lease.holder)
        .bind(lease.epoch)
        .bind(now)
        .bind(expires_at)
        .execute(self.db.pool())
        .await
        .map_err(DbError::from)?;
        if result.rows_affected() != 1 {
            return Err(LeaseError::fenced(lease));
        }
        Ok(Lease {
            expires_at,
            ..lease.clone()
        })
    }

    /// Gives the lease up (keeping its epoch). Returns false if it was no longer held.
    pub async fn release(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let result = sqlx::query(
            "UPDATE leases SET holder = NULL, expires_at = 0 WHERE resource = $1 AND stage = $2 \
             AND holder = $3 AND epoch = $4",
        )
        .bind(&lease.key.resource)
        .bind(&lease.key.stage)
        .bind(&lease.holder)
        .bind(lease.epoch)
        .execute(self.db.pool())
        .await
        .map_err(DbError::from)?;
        Ok(result.rows_affected() == 1)
    }

    /// Opens a transaction in which the lease is verified (and, on PostgreSQL, its row
    /// locked until commit, so no one can take it over mid-write). All of the holder's
    /// writes go in this transaction.
    pub async fn fenced(&self, lease: &Lease) -> Result<Tx<'static>, LeaseError> {
        let mut tx = self.db.begin().await?;
        let result = sqlx::query(
            "UPDATE leases SET expires_at = expires_at WHERE resource = $1 AND stage = $2 \
             AND holder = $3 AND epoch = $4 AND expires_at > $5",
        )
        .bind(&lease.key.resource)
        .bind(&lease.key.stage)
        .bind(&lease.holder)
        .bind(lease.epoch)
        .bind(now_micros())
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
        if result.rows_affected() != 1 {
            tx.rollback().await.map_err(DbError::from)?;
            return Err(LeaseError::fenced(lease));
        }
        Ok(tx)
    }

    /// The current row for a key, if any (holder `None` when released).
    pub async fn current(
        &self,
        key: &LeaseKey,
    ) -> Result<Option<(Option<String>, i64, i64)>, LeaseError> {
        let row = sqlx::query(
            "SELECT holder, epoch, expires_at FROM leases WHERE resource = $1 AND stage = $2",
        )
        .bind(&key.resource)
        .bind(&key.stage)
        .fetch_optional(self.db.pool())
        .await
        .map_err(DbError::from)?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some((
            row.try_get("holder").map_err(DbError::from)?,
            row.try_get("epoch").map_err(DbError::from)?,
            row.try_get("expires_at").map_err(DbError::from)?,
        )))
    }

    /// Leases of `stage` that are held but expired: work whose holder died or stalled.
    /// Reconcilers re-publish these. At most `limit` rows, oldest expiry first.
    pub async fn expired(&self, stage: &str, limit: u32) -> Result<Vec<LeaseKey>, LeaseError> {
        let rows = sqlx::query(
            "SELECT resource, stage FROM leases WHERE stage = $1 AND holder IS NOT NULL \
             AND expires_at <= $2 ORDER BY expires_at LIMIT $3",
        )
        .bind(stage)
        .bind(now_micros())
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await
        .map_err(DbError::from)?;
        rows.iter()
            .map(|row| {
                Ok(LeaseKey {
                    resource: row.try_get("resource").map_err(DbError::from)?,
                    stage: row.try_get("stage").map_err(DbError::from)?,
                })
            })
            .collect()
    }
}
