//! The transactional outbox: a service writes the messages it must publish in the same
//! transaction as the state change they describe, and [`Outbox::relay`] publishes them
//! afterwards (at least once; the bus de-duplicates by message id). A crash between
//! commit and publish therefore delays a fact or job, never loses it.
//!
//! Rows are deleted once published and acknowledged, so the table holds only what is
//! in flight; [`Outbox::pending_count`] is exported for alerting.

use crate::{Bus, BusError, OutboundMessage};
use casescope_db::{Database, DbError, Migration, Migrations, Tx};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const OUTBOX_MIGRATIONS: Migrations = Migrations {
    service: "outbox",
    steps: &[Migration {
        version: 1,
        name: "bus outbox",
        sql: "
CREATE TABLE IF NOT EXISTS bus_outbox (
    position BIGINT NOT NULL,
    message_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    payload TEXT NOT NULL,
    headers TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS bus_outbox_by_position ON bus_outbox (position);
",
    }],
};

/// Rows published per relay round.
const RELAY_BATCH: i64 = 200;
/// Messages one INSERT of [`Outbox::enqueue_many`] writes.
const MESSAGES_PER_STATEMENT: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox payloads must be UTF-8 JSON (subject {0})")]
    NotText(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Clone)]
pub struct Outbox {
    db: Database,
    bus: Arc<dyn Bus>,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(db: Database, bus: Arc<dyn Bus>) -> Self {
        Self {
            db,
            bus,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Queues `message` in `tx`; it is published after the transaction commits.
    pub async fn enqueue(
        &self,
        tx: &mut Tx<'_>,
        message: &OutboundMessage,
    ) -> Result<(), OutboxError> {
        self.enqueue_many(tx, std::slice::from_ref(message)).await
    }

    /// [`Outbox::enqueue`] for many messages, many rows per statement (in order).
    pub async fn enqueue_many(
        &self,
        tx: &mut Tx<'_>,
        messages: &[OutboundMessage],
    ) -> Result<(), OutboxError> {
        const COLUMNS: usize = 6;
        for chunk in messages.chunks(MESSAGES_PER_STATEMENT) {
            let mut rows = Vec::with_capacity(chunk.len());
            for message in chunk {
                let payload = std::str::from_utf8(&message.payload)
                    .map_err(|_| OutboxError::NotText(message.subject.clone()))?;
                let headers =
                    serde_json::to_string(&message.headers).unwrap_or_else(|_| "[]".into());
                rows.push((message, payload, headers));
            }
            let values: Vec<String> = (0..rows.len())
                .map(|n| {
                    let marks: Vec<String> = (1..=COLUMNS)
                        .map(|c| format!("${}", n * COLUMNS + c))
                        .collect();
                    format!("({})", marks.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO bus_outbox (position, message_id, subject, payload, headers, created_at) \
                 VALUES {} ON CONFLICT (message_id) DO NOTHING",
                values.join(", ")
            );
            let now = casescope_db::now_micros();
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (message, payload, headers) in rows {
                query = query
                    .bind(position())
                    .bind(&message.message_id)
                    .bind(&message.subject)
                    .bind(payload)
                    .bind(headers)
                    .bind(now);
            }
            query.execute(&mut **tx).await.map_err(DbError::from)?;
        }
        Ok(())
    }

    /// Asks the relay to run now (call after committing a transaction that enqueued).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Publishes queued messages in order until none is left or the bus fails.
    /// Returns how many were published.
    pub async fn publish_pending(&self) -> Result<usize, BusError> {
        let mut published = 0;
        loop {
            let rows = sqlx::query(
                "SELECT message_id, subject, payload, headers FROM bus_outbox \
                 ORDER BY position LIMIT $1",
            )
            .bind(RELAY_BATCH)
            .fetch_all(self.db.pool())
            .await
            .map_err(|error| BusError::Unavailable(format!("read outbox: {error}")))?;
            if rows.is_empty() {
                return Ok(published);
            }
            for row in rows {
                let text = |name: &str| row.try_get::<String, _>(name).unwrap_or_default();
                let message_id = text("message_id");
                let headers: Vec<(String, String)> =
                    serde_json::from_str(&text("headers")).unwrap_or_default();
                let message = OutboundMessage {
                    subject: text("subject"),
                    payload: text("payload").into_bytes().into(),
                    message_id: message_id.clone(),
                    headers,
                };
                let subject = message.subject.clone();
                match self.bus.publish(message).await {
                    Ok(_) => {}
                    // Can never succeed (a subject outside every stream is a bug in the
                    // producer): drop it loudly rather than block every row behind it.
                    Err(error @ BusError::UnknownSubject(_)) => {
                        tracing::error!(%error, %subject, %message_id, "dropping unpublishable outbox message");
                    }
                    Err(error) => {
                        let _ = sqlx::query(
                            "UPDATE bus_outbox SET attempts = attempts + 1 WHERE message_id = $1",
                        )
                        .bind(&message_id)
                        .execute(self.db.pool())
                        .await;
                        return Err(error);
                    }
                }
                sqlx::query("DELETE FROM bus_outbox WHERE message_id = $1")
                    .bind(&message_id)
                    .execute(self.db.pool())
                    .await
                    .map_err(|error| BusError::Unavailable(format!("clear outbox row: {error}")))?;
                published += 1;
            }
        }
    }

    /// Messages waiting to be published.
    pub async fn pending_count(&self) -> Result<i64, DbError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM bus_outbox")
            .fetch_one(self.db.pool())
            .await?)
    }

    /// Relays until `shutdown`, on every nudge and at least every `period`; a last
    /// round runs at shutdown so committed facts are not left behind.
    pub async fn relay(self, period: Duration, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            match self.publish_pending().await {
                Ok(_) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "outbox relay could not publish; will retry");
                }
            }
            let wait = if failures == 0 {
                period
            } else {
                Duration::from_millis(200 * u64::from(failures.min(25)))
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if let Err(error) = self.publish_pending().await {
                        tracing::warn!(%error, "outbox left unpublished messages at shutdown; they go out at next start");
                    }
                    return;
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Monotonic-enough ordering key: microseconds plus a process-local counter, so rows
/// enqueued in the same microsecond keep their order.
fn position() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = casescope_db::now_micros().saturating_mul(16);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}
