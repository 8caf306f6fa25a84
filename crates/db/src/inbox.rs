//! The inbox of an idempotent bus consumer: a handler claims the message id inside the
//! same transaction as its effects, so a redelivered message (NATS redelivers after
//! AckWait, and after a crash between commit and ack) commits its effects once.
//! Rows are pruned by age ([`Inbox::prune`]) so the table stays bounded; the retention
//! must exceed the longest redelivery horizon (JetStream's duplicate window and
//! max_deliver × backoff).

use crate::database::{Database, DbError, Tx};
use crate::now_micros;

#[derive(Debug, Clone)]
pub struct Inbox {
    db: Database,
    consumer: String,
}

impl Inbox {
    pub fn new(db: Database, consumer: impl Into<String>) -> Self {
        Self {
            db,
            consumer: consumer.into(),
        }
    }

    /// Records `message_id` as processed in `tx`. Returns false if it already was (the
    /// caller then skips its effects and just acks).
    pub async fn claim(&self, tx: &mut Tx<'_>, message_id: &str) -> Result<bool, DbError> {
        let result = sqlx::query(
            "INSERT INTO bus_inbox (consumer, message_id, processed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer, message_id) DO NOTHING",
        )
        .bind(&self.consumer)
        .bind(message_id)
        .bind(now_micros())
        .execute(&mut **tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes entries older than `retention`; returns how many.
    pub async fn prune(&self, retention: std::time::Duration) -> Result<u64, DbError> {
        let cutoff = now_micros() - i64::try_from(retention.as_micros()).unwrap_or(i64::MAX / 2);
        let result = sqlx::query("DELETE FROM bus_inbox WHERE consumer = $1 AND processed_at < $2")
            .bind(&self.consumer)
            .bind(cutoff)
            .execute(self.db.pool())
            .await?;
        Ok(result.rows_affected())
    }
}
