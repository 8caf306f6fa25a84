//! The in-process bus of embedded mode: the same contract as JetStream (dedupe window,
//! durable consumers with explicit ack, ack-wait redelivery, nak delay, progress,
//! retained facts, durable facts consumers that each get every matching fact) in
//! memory, with every queue bounded. Messages do not survive a
//! restart; that is safe because job state lives in the database and each service's
//! reconciler re-publishes lost work at start-up and periodically.

use crate::subjects::{StreamKind, stream_of, stream_of_filter};
use crate::{
    Acker, Bus, BusError, Consumer, ConsumerConfig, Delivery, OutboundMessage, PublishAck,
    ReceivedMessage, subject_matches,
};
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// Bounds of the in-process bus.
#[derive(Debug, Clone)]
pub struct InProcessLimits {
    /// Unacknowledged job messages per consumer (and unclaimed ones in the jobs stream).
    pub max_pending: usize,
    /// Fact and dead-letter messages kept for [`Bus::recent`].
    pub max_retained: usize,
    /// Publishes with a repeated message id inside this window are duplicates.
    pub duplicate_window: Duration,
    /// Buffered messages per live subscriber; a slow subscriber loses the overflow.
    pub subscriber_buffer: usize,
}

impl Default for InProcessLimits {
    fn default() -> Self {
        Self {
            max_pending: 100_000,
            max_retained: 10_000,
            duplicate_window: Duration::from_secs(120),
            subscriber_buffer: 1024,
        }
    }
}

struct Pending {
    seq: u64,
    not_before: Instant,
}

struct ConsumerState {
    filter: String,
    /// A consumer of the facts stream: every matching fact is copied to it.
    facts: bool,
    ack_wait: Duration,
    pending: VecDeque<Pending>,
    in_flight: HashMap<u64, Instant>,
    messages: HashMap<u64, ReceivedMessage>,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    dedupe: HashMap<String, u64>,
    dedupe_order: VecDeque<(Instant, String)>,
    unclaimed_jobs: VecDeque<(u64, ReceivedMessage)>,
    consumers: HashMap<String, ConsumerState>,
    /// Retained facts and dead letters with their sequence, oldest first.
    retained: VecDeque<(u64, ReceivedMessage)>,
    subscribers: Vec<(String, mpsc::Sender<ReceivedMessage>)>,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    limits: InProcessLimits,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Clone)]
pub struct InProcessBus {
    shared: Arc<Shared>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(InProcessLimits::default())
    }
}

impl InProcessBus {
    pub fn new(limits: InProcessLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                limits,
            }),
        }
    }
}

fn forget_old_ids(state: &mut State, window: Duration, now: Instant) {
    while let Some((at, _)) = state.dedupe_order.front() {
        if now.duration_since(*at) < window {
            break;
        }
        if let Some((_, id)) = state.dedupe_order.pop_front() {
            state.dedupe.remove(&id);
        }
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, message: OutboundMessage) -> Result<PublishAck, BusError> {
        let kind =
            stream_of(&message.subject).ok_or(BusError::UnknownSubject(message.subject.clone()))?;
        let limits = &self.shared.limits;
        let now = Instant::now();
        let mut state = self.shared.lock();
        forget_old_ids(&mut state, limits.duplicate_window, now);
        if let Some(&sequence) = state.dedupe.get(&message.message_id) {
            return Ok(PublishAck {
                sequence,
                duplicate: true,
            });
        }
        let received = ReceivedMessage {
            subject: message.subject,
            payload: message.payload,
            message_id: message.message_id,
            headers: message.headers,
            delivered: 1,
        };
        if kind == StreamKind::Jobs {
            let target = state
                .consumers
                .iter()
                .find(|(_, c)| !c.facts && subject_matches(&c.filter, &received.subject))
                .map(|(name, c)| (name.clone(), c.messages.len()));
            let depth = match &target {
                Some((_, depth)) => *depth,
                None => state.unclaimed_jobs.len(),
            };
            if depth >= limits.max_pending {
                return Err(BusError::Full(format!(
                    "{} unacknowledged jobs queued for {}",
                    depth, received.subject
                )));
            }
        }
        state.next_seq += 1;
        let sequence = state.next_seq;
        state.dedupe.insert(received.message_id.clone(), sequence);
        state
            .dedupe_order
            .push_back((now, received.message_id.clone()));
        state.subscribers.retain(|(filter, sender)| {
            if subject_matches(filter, &received.subject) {
                // At most once, like core NATS: a full or closed subscriber loses the message.
                let _ = sender.try_send(received.clone());
            }
            !sender.is_closed()
        });
        match kind {
            StreamKind::Jobs => {
                let consumer = state
                    .consumers
                    .values_mut()
                    .find(|c| !c.facts && subject_matches(&c.filter, &received.subject));
                match consumer {
                    Some(consumer) => {
                        consumer.pending.push_back(Pending {
                            seq: sequence,
                            not_before: now,
                        });
                        consumer.messages.insert(sequence, received);
                    }
                    None => state.unclaimed_jobs.push_back((sequence, received)),
                }
                drop(state);
                self.shared.wake.notify_waiters();
            }
            StreamKind::Facts | StreamKind::DeadLetter => {
                // Each facts consumer gets its own copy; a full one refuses the publish
                // (the outbox retries it) rather than lose a fact.
                let full = state.consumers.iter().find(|(_, c)| {
                    c.facts
                        && subject_matches(&c.filter, &received.subject)
                        && c.messages.len() >= limits.max_pending
                });
                if let Some((name, _)) = full {
                    return Err(BusError::Full(format!(
                        "{} unacknowledged facts queued for consumer {name}",
                        limits.max_pending
                    )));
                }
                let mut delivered_to_consumer = false;
                for consumer in state.consumers.values_mut() {
                    if consumer.facts && subject_matches(&consumer.filter, &received.subject) {
                        consumer.pending.push_back(Pending {
                            seq: sequence,
                            not_before: now,
                        });
                        consumer.messages.insert(sequence, received.clone());
                        delivered_to_consumer = true;
                    }
                }
                if state.retained.len() >= limits.max_retained {
                    state.retained.pop_front();
                }
                state.retained.push_back((sequence, received));
                if delivered_to_consumer {
                    drop(state);
                    self.shared.wake.notify_waiters();
                }
            }
        }
        Ok(PublishAck {
            sequence,
            duplicate: false,
        })
    }

    async fn subscribe(
        &self,
        subject_filter: &str,
    ) -> Result<BoxStream<'static, ReceivedMessage>, BusError> {
        let (sender, receiver) = mpsc::channel(self.shared.limits.subscriber_buffer);
        self.shared
            .lock()
            .subscribers
            .push((subject_filter.to_string(), sender));
        Ok(
            futures::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|message| (message, receiver))
            })
            .boxed(),
        )
    }

    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>, BusError> {
        let mut state = self.shared.lock();
        if !state.consumers.contains_key(&config.name) {
            let facts = stream_of_filter(&config.filter_subject) == Some(StreamKind::Facts);
            let mut consumer = ConsumerState {
                facts,
                filter: config.filter_subject.clone(),
                ack_wait: config.ack_wait,
                pending: VecDeque::new(),
                in_flight: HashMap::new(),
                messages: HashMap::new(),
            };
            let now = Instant::now();
            if facts {
                // Like JetStream's deliver-all: a new facts consumer starts at the oldest
                // retained fact.
                for (seq, message) in &state.retained {
                    if subject_matches(&consumer.filter, &message.subject) {
                        consumer.pending.push_back(Pending {
                            seq: *seq,
                            not_before: now,
                        });
                        consumer.messages.insert(*seq, message.clone());
                    }
                }
                state.consumers.insert(config.name.clone(), consumer);
                drop(state);
                self.shared.wake.notify_waiters();
                return Ok(Box::new(InProcessConsumer {
                    shared: self.shared.clone(),
                    name: config.name.clone(),
                }));
            }
            let unclaimed = std::mem::take(&mut state.unclaimed_jobs);
            for (seq, message) in unclaimed {
                if subject_matches(&consumer.filter, &message.subject) {
                    consumer.pending.push_back(Pending {
                        seq,
                        not_before: now,
                    });
                    consumer.messages.insert(seq, message);
                } else {
                    state.unclaimed_jobs.push_back((seq, message));
                }
            }
            state.consumers.insert(config.name.clone(), consumer);
        }
        Ok(Box::new(InProcessConsumer {
            shared: self.shared.clone(),
            name: config.name.clone(),
        }))
    }

    async fn recent(
        &self,
        subject_filter: &str,
        limit: usize,
    ) -> Result<Vec<ReceivedMessage>, BusError> {
        let state = self.shared.lock();
        let mut matching: Vec<ReceivedMessage> = state
            .retained
            .iter()
            .rev()
            .map(|(_, message)| message)
            .filter(|m| subject_matches(subject_filter, &m.subject))
            .take(limit)
            .cloned()
            .collect();
        matching.reverse();
        Ok(matching)
    }

    async fn ready(&self) -> Result<(), BusError> {
        Ok(())
    }
}

struct InProcessConsumer {
    shared: Arc<Shared>,
    name: String,
}

impl InProcessConsumer {
    /// Hands out up to `max` ready messages; otherwise says when to look again.
    fn take_ready(&self, max: usize) -> Result<(Vec<Delivery>, Option<Instant>), BusError> {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let consumer = state
            .consumers
            .get_mut(&self.name)
            .ok_or_else(|| BusError::Consumer {
                name: self.name.clone(),
                message: "consumer was removed".into(),
            })?;
        let expired: Vec<u64> = consumer
            .in_flight
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            consumer.in_flight.remove(&seq);
            consumer.pending.push_back(Pending {
                seq,
                not_before: now,
            });
        }
        let mut deliveries = Vec::new();
        let mut next_wake: Option<Instant> = consumer.in_flight.values().min().copied();
        let mut waiting = VecDeque::new();
        while let Some(pending) = consumer.pending.pop_front() {
            if deliveries.len() >= max || pending.not_before > now {
                next_wake =
                    Some(next_wake.map_or(pending.not_before, |t| t.min(pending.not_before)));
                waiting.push_back(pending);
                continue;
            }
            let Some(message) = consumer.messages.get_mut(&pending.seq) else {
                continue; // acked or terminated meanwhile
            };
            let delivered = message.delivered;
            message.delivered += 1;
            let mut handed = message.clone();
            handed.delivered = delivered;
            consumer
                .in_flight
                .insert(pending.seq, now + consumer.ack_wait);
            deliveries.push(Delivery {
                message: handed,
                acker: Box::new(InProcessAcker {
                    shared: self.shared.clone(),
                    consumer: self.name.clone(),
                    seq: pending.seq,
                }),
            });
        }
        consumer.pending = waiting;
        Ok((deliveries, next_wake))
    }
}

#[async_trait]
impl Consumer for InProcessConsumer {
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (deliveries, next_wake) = self.take_ready(max.max(1))?;
            if !deliveries.is_empty() || Instant::now() >= deadline {
                return Ok(deliveries);
            }
            let until = next_wake.map_or(deadline, |t| t.min(deadline));
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    async fn pending(&self) -> Result<u64, BusError> {
        let now = Instant::now();
        let state = self.shared.lock();
        let consumer = state
            .consumers
            .get(&self.name)
            .ok_or_else(|| BusError::Consumer {
                name: self.name.clone(),
                message: "consumer was removed".into(),
            })?;
        let waiting = consumer
            .pending
            .iter()
            .filter(|pending| pending.not_before <= now)
            .count();
        Ok(u64::try_from(waiting).unwrap_or(u64::MAX))
    }
}

struct InProcessAcker {
    shared: Arc<Shared>,
    consumer: String,
    seq: u64,
}

impl InProcessAcker {
    fn with_consumer(&self, f: impl FnOnce(&mut ConsumerState, u64)) {
        let mut state = self.shared.lock();
        if let Some(consumer) = state.consumers.get_mut(&self.consumer) {
            f(consumer, self.seq);
        }
    }
}

#[async_trait]
impl Acker for InProcessAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.with_consumer(|c, seq| {
            c.in_flight.remove(&seq);
            c.messages.remove(&seq);
        });
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.with_consumer(|c, seq| {
            if c.in_flight.remove(&seq).is_some() {
                c.pending.push_back(Pending {
                    seq,
                    not_before: Instant::now() + delay,
                });
            }
        });
        self.shared.wake.notify_waiters();
        Ok(())
    }

    async fn progress(&self) -> Result<(), BusError> {
        self.with_consumer(|c, seq| {
            let ack_wait = c.ack_wait;
            if let Some(deadline) = c.in_flight.get_mut(&seq) {
                *deadline = Instant::now() + ack_wait;
            }
        });
        Ok(())
    }

    async fn term(&self) -> Result<(), BusError> {
        self.ack().await
    }
}
