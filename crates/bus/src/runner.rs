//! The consumer loop every service runs: fetch, hand each message to the handler with
//! in-progress acks while it works, ack only after it returns Ok (its effects are
//! committed), nak with backoff on transient errors, and record a dead letter — then
//! terminate the message — when it is poison or has failed `max_deliver` times.

use crate::{Bus, BusError, ConsumerConfig, Delivery, OutboundMessage, ReceivedMessage, subjects};
use async_trait::async_trait;
use base64::Engine;
use casescope_proto::bus::v1::DeadLetter;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (database or downstream unavailable, lease held elsewhere, ...).
    #[error("transient: {error}")]
    Transient {
        error: String,
        retry_after: Duration,
    },
    /// Will never succeed (undecodable payload, unknown case, ...).
    #[error("poison: {0}")]
    Poison(String),
}

impl HandlerError {
    pub fn transient(error: impl std::fmt::Display) -> Self {
        HandlerError::Transient {
            error: error.to_string(),
            retry_after: Duration::from_secs(1),
        }
    }
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Processes one message. Must be idempotent: the same message may arrive again
    /// after a crash between commit and ack (use `casescope_db::Inbox`).
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError>;
}

/// Runs `handler` on the durable consumer `config` until `shutdown` is cancelled; the
/// messages in hand are finished first.
///
/// At most `config.batch` messages are in hand at once, each on its own task: a slot
/// freed by one message is refilled at once, so one long message (a large file) does not
/// hold back the others, and small ones keep flowing past it.
pub async fn run_consumer(
    bus: Arc<dyn Bus>,
    config: ConsumerConfig,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let consumer: Arc<dyn crate::Consumer> = Arc::from(bus.consumer(&config).await?);
    let sampler = tokio::spawn(sample_lag(
        consumer.clone(),
        config.name.clone(),
        shutdown.clone(),
    ));
    let slots = config.batch.max(1);
    let config = Arc::new(config);
    let mut running = tokio::task::JoinSet::new();
    let mut failures: u32 = 0;
    while !shutdown.is_cancelled() {
        while let Some(done) = running.try_join_next() {
            report_panic(&config, done);
        }
        if running.len() >= slots {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                done = running.join_next() => {
                    if let Some(done) = done {
                        report_panic(&config, done);
                    }
                    continue;
                }
            }
        }
        // Idle: wait up to a second for work. Busy: look briefly, then reap again.
        let wait = if running.is_empty() {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(50)
        };
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => break,
            fetched = consumer.fetch(slots - running.len(), wait) => fetched,
        };
        let deliveries = match fetched {
            Ok(deliveries) => {
                failures = 0;
                deliveries
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let backoff = Duration::from_millis(200 * u64::from(failures.min(25)));
                tracing::warn!(consumer = %config.name, %error, ?backoff, "fetch failed");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        for delivery in deliveries {
            let (bus, config, handler) = (bus.clone(), config.clone(), handler.clone());
            running.spawn(async move {
                process(bus.as_ref(), &config, handler.as_ref(), delivery).await;
            });
        }
    }
    while let Some(done) = running.join_next().await {
        report_panic(&config, done);
    }
    sampler.abort();
    Ok(())
}

/// How often each process samples the lag of the consumers it runs.
const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// Records the consumer's lag (`casescope.bus.consumer.pending`) every
/// [`LAG_SAMPLE_EVERY`] until shutdown; a failed sample is skipped (the bus being down
/// is reported by readiness, not here).
async fn sample_lag(consumer: Arc<dyn crate::Consumer>, name: String, shutdown: CancellationToken) {
    let attributes = casescope_runtime::metrics::attr("consumer", name);
    // Zero first, so that an alert on increase() sees the first dead letter.
    casescope_runtime::metrics::metrics()
        .dead_letters
        .add(0, &attributes);
    let mut every = tokio::time::interval(LAG_SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let sample = tokio::time::timeout(Duration::from_secs(5), consumer.pending()).await;
        if let Ok(Ok(pending)) = sample {
            casescope_runtime::metrics::metrics()
                .consumer_pending
                .record(pending, &attributes);
        }
    }
}

/// A handler that panicked leaves its message unacked: it is redelivered after
/// `ack_wait`, and given up after `max_deliver` deliveries.
fn report_panic(config: &ConsumerConfig, done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        tracing::error!(consumer = %config.name, %error, "a message handler panicked");
    }
}

async fn process(
    bus: &dyn Bus,
    config: &ConsumerConfig,
    handler: &dyn Handler,
    delivery: Delivery,
) {
    let Delivery { message, acker } = delivery;
    let span = tracing::info_span!(
        "bus.handle",
        consumer = %config.name,
        subject = %message.subject,
        message_id = %message.message_id,
        delivered = message.delivered,
    );
    casescope_runtime::trace_context::set_parent_from_headers(&span, &message.headers);
    async {
        if message.delivered > config.max_deliver {
            let error = format!(
                "delivered {} times (max_deliver {}) without completing",
                message.delivered, config.max_deliver
            );
            give_up(bus, config, &message, &error, acker.as_ref()).await;
            return;
        }
        let heartbeat = (config.ack_wait / 3).max(Duration::from_millis(50));
        let outcome = {
            let work = handler.handle(&message);
            tokio::pin!(work);
            loop {
                tokio::select! {
                    outcome = &mut work => break outcome,
                    _ = tokio::time::sleep(heartbeat) => settle("progress", acker.progress().await),
                }
            }
        };
        match outcome {
            Ok(()) => settle("ack", acker.ack().await),
            Err(HandlerError::Poison(error)) => {
                tracing::warn!(%error, "poison message");
                give_up(bus, config, &message, &error, acker.as_ref()).await;
            }
            Err(HandlerError::Transient { error, retry_after }) => {
                if message.delivered >= config.max_deliver {
                    tracing::warn!(%error, "giving up after max_deliver attempts");
                    give_up(bus, config, &message, &error, acker.as_ref()).await;
                } else {
                    let factor = u32::try_from(message.delivered).unwrap_or(u32::MAX).min(10);
                    let delay = retry_after.saturating_mul(factor);
                    tracing::info!(%error, ?delay, "transient failure; will retry");
                    settle("nak", acker.nak(delay).await);
                }
            }
        }
    }
    .instrument(span)
    .await
}

fn settle(what: &str, result: Result<(), BusError>) {
    if let Err(error) = result {
        // The message will be redelivered after ack_wait; handlers are idempotent.
        tracing::warn!(%error, "{what} failed");
    }
}

/// Records the dead letter, then terminates the message. If the record cannot be
/// published, the message is nak'ed instead so that it is not lost without a trace.
async fn give_up(
    bus: &dyn Bus,
    config: &ConsumerConfig,
    message: &ReceivedMessage,
    error: &str,
    acker: &dyn crate::Acker,
) {
    if dead_letter(bus, config, message, error).await {
        settle("term", acker.term().await);
    } else {
        settle("nak", acker.nak(Duration::from_secs(5)).await);
    }
}

async fn dead_letter(
    bus: &dyn Bus,
    config: &ConsumerConfig,
    message: &ReceivedMessage,
    error: &str,
) -> bool {
    let (payload, payload_encoding) = match std::str::from_utf8(&message.payload) {
        Ok(text) => (text.to_string(), "utf8".to_string()),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&message.payload),
            "base64".to_string(),
        ),
    };
    let record = DeadLetter {
        consumer: config.name.clone(),
        subject: message.subject.clone(),
        message_id: message.message_id.clone(),
        deliveries: message.delivered,
        error: error.to_string(),
        payload,
        payload_encoding,
        dead_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    };
    let id = format!("deadletter:{}:{}", config.name, message.message_id);
    let published = match OutboundMessage::json(subjects::deadletter(&config.name), id, &record) {
        Ok(outbound) => bus.publish(outbound).await.map(|_| ()),
        Err(error) => Err(error),
    };
    match published {
        Ok(()) => {
            tracing::error!(consumer = %config.name, subject = %message.subject, %error, "message dead-lettered");
            casescope_runtime::metrics::metrics().dead_letters.add(
                1,
                &casescope_runtime::metrics::attr("consumer", config.name.clone()),
            );
            true
        }
        Err(publish_error) => {
            tracing::error!(
                consumer = %config.name, subject = %message.subject, %error, %publish_error,
                "cannot publish the dead-letter record; the message will be retried"
            );
            false
        }
    }
}
