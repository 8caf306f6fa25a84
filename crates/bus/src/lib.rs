//! The CaseScope message bus: one [`Bus`] trait with two implementations — NATS
//! JetStream ([`JetStreamBus`], cluster mode) and in-process ([`InProcessBus`], embedded
//! mode) — and the consumer runner every service uses ([`run_consumer`]).
//!
//! Guarantees both implementations give (and the shared suite in `tests/` checks):
//! publishes carry a dedupe id and return only once the bus has stored the message;
//! job messages go to durable consumers with explicit acks, redelivery after `ack_wait`,
//! nak-with-delay and in-progress acks; the runner acks only after the handler's effects
//! committed and records a poison message as a dead letter after `max_deliver` tries.
//! The bus is a signal carrier, not the source of truth: job state lives in the owning
//! service's database (see `casescope-db` leases and inbox), because JetStream can lose
//! or redeliver acknowledged messages under faults.
//!
//! Not here: what any message means (payload types are in `casescope-proto`).

pub mod facts;
mod inprocess;
mod jetstream;
pub mod outbox;
mod runner;
pub mod subjects;
mod wildcard;

pub use inprocess::{InProcessBus, InProcessLimits};
pub use jetstream::{JetStreamBus, JetStreamOptions};
pub use outbox::{OUTBOX_MIGRATIONS, Outbox, OutboxError};
pub use runner::{Handler, HandlerError, run_consumer};
pub use wildcard::subject_matches;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::time::Duration;

/// A message to publish. `message_id` de-duplicates repeats within the bus's
/// duplicate window (JetStream `Nats-Msg-Id`).
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    pub subject: String,
    pub payload: Bytes,
    pub message_id: String,
    pub headers: Vec<(String, String)>,
}

impl OutboundMessage {
    /// A JSON message with the current trace context in its headers.
    pub fn json<T: serde::Serialize>(
        subject: impl Into<String>,
        message_id: impl Into<String>,
        payload: &T,
    ) -> Result<Self, BusError> {
        let payload =
            serde_json::to_vec(payload).map_err(|error| BusError::Encode(error.to_string()))?;
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        casescope_runtime::trace_context::inject_current(&mut headers);
        Ok(Self {
            subject: subject.into(),
            payload: Bytes::from(payload),
            message_id: message_id.into(),
            headers,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    pub sequence: u64,
    /// The bus already had a message with this id: nothing new was stored.
    pub duplicate: bool,
}

/// A message as received by a subscriber or consumer.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub subject: String,
    pub payload: Bytes,
    pub message_id: String,
    pub headers: Vec<(String, String)>,
    /// 1 for the first delivery to a durable consumer, then 2, 3, ...; 1 for subscribers.
    pub delivered: u64,
}

impl ReceivedMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A durable consumer: on the jobs stream (work queue: each job goes to one consumer),
/// or on the facts stream (each durable consumer gets its own copy of every matching
/// fact, from the oldest retained one on when it is first created).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Durable name, shared by every worker of the same role.
    pub name: String,
    /// Subject filter (wildcards `*` and `>`), within `casescope.v1.jobs.>` or within
    /// one subject family of the facts stream (e.g. `casescope.v1.cases.>`).
    pub filter_subject: String,
    /// Redelivered if not acked (or progress-acked) within this time.
    pub ack_wait: Duration,
    /// After this many failed deliveries the runner records a dead letter.
    pub max_deliver: u64,
    /// Messages in hand at once (the runner processes them concurrently, refilling a
    /// slot as soon as its message is settled).
    pub batch: usize,
}

impl ConsumerConfig {
    pub fn new(name: impl Into<String>, filter_subject: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            filter_subject: filter_subject.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            batch: 4,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("publish to {subject} failed: {message}")]
    Publish { subject: String, message: String },
    #[error("subject {0:?} belongs to no CaseScope stream")]
    UnknownSubject(String),
    #[error("bus is full: {0}")]
    Full(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("consumer {name}: {message}")]
    Consumer { name: String, message: String },
    #[error("acknowledgement failed: {0}")]
    Ack(String),
}

/// Settles one delivery. Exactly one of ack/nak/term should be called; progress any time.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> Result<(), BusError>;
    async fn nak(&self, delay: Duration) -> Result<(), BusError>;
    async fn progress(&self) -> Result<(), BusError>;
    async fn term(&self) -> Result<(), BusError>;
}

pub struct Delivery {
    pub message: ReceivedMessage,
    pub acker: Box<dyn Acker>,
}

#[async_trait]
pub trait Consumer: Send + Sync {
    /// Up to `max` messages, waiting at most `wait` for the first.
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;
    /// How many messages of its filter wait to be delivered (its lag): not counting
    /// those in hand or waiting for a redelivery.
    async fn pending(&self) -> Result<u64, BusError>;
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Stores the message (waiting for the server's ack) and returns its sequence.
    async fn publish(&self, message: OutboundMessage) -> Result<PublishAck, BusError>;
    /// Live messages on `subject_filter` from now on (like `nats sub`), at most once.
    async fn subscribe(
        &self,
        subject_filter: &str,
    ) -> Result<BoxStream<'static, ReceivedMessage>, BusError>;
    /// A durable consumer on the jobs or facts stream, chosen by the filter (created if
    /// missing, shared by name).
    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>, BusError>;
    /// The last `limit` retained messages on a fact or dead-letter subject filter.
    async fn recent(
        &self,
        subject_filter: &str,
        limit: usize,
    ) -> Result<Vec<ReceivedMessage>, BusError>;
    /// Whether the bus can take publishes now (readiness probes).
    async fn ready(&self) -> Result<(), BusError>;
}

pub type SharedBus = Arc<dyn Bus>;
