//! The NATS JetStream bus of cluster mode.
//!
//! Streams (created or updated at connect): `<PREFIX>JOBS` (work-queue retention,
//! `casescope.v1.jobs.>`), `<PREFIX>FACTS` (limits retention, kept `facts_max_age`),
//! `<PREFIX>DEADLETTER` (limits, `deadletter_max_age`). An optional subject prefix
//! (`namespace`) lets several installations (or test runs) share one NATS account.
//! Consumers are durable pull consumers with explicit acks and no server-side
//! max_deliver: the runner counts deliveries and records dead letters itself, so a
//! message is never silently dropped after an advisory nobody reads.

use crate::subjects::{DEADLETTER_STREAM_SUBJECTS, FACTS_STREAM_SUBJECTS, JOBS_STREAM_SUBJECTS};
use crate::{
    Acker, Bus, BusError, Consumer, ConsumerConfig, Delivery, OutboundMessage, PublishAck,
    ReceivedMessage,
};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    pub url: String,
    /// Prepended (with a dot) to every subject and, upper-cased, to stream names.
    pub namespace: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub duplicate_window: Duration,
    pub facts_max_age: Duration,
    pub deadletter_max_age: Duration,
    pub replicas: usize,
}

impl JetStreamOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            namespace: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            duplicate_window: Duration::from_secs(120),
            facts_max_age: Duration::from_secs(7 * 24 * 3600),
            deadletter_max_age: Duration::from_secs(30 * 24 * 3600),
            replicas: 1,
        }
    }
}

#[derive(Clone)]
pub struct JetStreamBus {
    client: async_nats::Client,
    context: jetstream::Context,
    prefix: String,
    stream_prefix: String,
}

fn unavailable(error: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(error.to_string())
}

impl JetStreamBus {
    pub async fn connect(options: &JetStreamOptions) -> Result<Self, BusError> {
        // Credentials in the URL go to the server in CONNECT, and the URL the client
        // keeps (and logs) carries none.
        let (urls, credentials) = split_credentials(&options.url);
        let connect = match credentials {
            Some(Credentials::UserPassword(user, password)) => {
                async_nats::ConnectOptions::with_user_and_password(user, password)
            }
            Some(Credentials::Token(token)) => async_nats::ConnectOptions::with_token(token),
            None => async_nats::ConnectOptions::new(),
        };
        let client = connect
            .name("casescope")
            .connection_timeout(options.connect_timeout)
            .request_timeout(Some(options.request_timeout))
            .connect(urls.as_str())
            .await
            .map_err(|error| BusError::Unavailable(format!("connect to NATS: {error}")))?;
        let context = jetstream::new(client.clone());
        let (prefix, stream_prefix) = match &options.namespace {
            Some(ns) => (
                format!("{ns}."),
                format!("{}_", ns.to_uppercase().replace(['.', '-'], "_")),
            ),
            None => (String::new(), "CASESCOPE_".to_string()),
        };
        let bus = Self {
            client,
            context,
            prefix,
            stream_prefix,
        };
        bus.ensure_streams(options).await?;
        Ok(bus)
    }

    fn subjects(&self, subjects: &[&str]) -> Vec<String> {
        subjects
            .iter()
            .map(|s| format!("{}{s}", self.prefix))
            .collect()
    }

    fn wire_subject(&self, subject: &str) -> String {
        format!("{}{subject}", self.prefix)
    }

    fn local_subject(&self, wire: &str) -> String {
        wire.strip_prefix(&self.prefix).unwrap_or(wire).to_string()
    }

    fn jobs_stream(&self) -> String {
        format!("{}JOBS", self.stream_prefix)
    }

    async fn ensure_streams(&self, options: &JetStreamOptions) -> Result<(), BusError> {
        let streams = [
            stream::Config {
                name: self.jobs_stream(),
                subjects: self.subjects(JOBS_STREAM_SUBJECTS),
                retention: stream::RetentionPolicy::WorkQueue,
                duplicate_window: options.duplicate_window,
                num_replicas: options.replicas,
                ..Default::default()
            },
            stream::Config {
                name: format!("{}FACTS", self.stream_prefix),
                subjects: self.subjects(FACTS_STREAM_SUBJECTS),
                retention: stream::RetentionPolicy::Limits,
                max_age: options.facts_max_age,
                duplicate_window: options.duplicate_window,
                num_replicas: options.replicas,
                ..Default::default()
            },
            stream::Config {
                name: format!("{}DEADLETTER", self.stream_prefix),
                subjects: self.subjects(DEADLETTER_STREAM_SUBJECTS),
                retention: stream::RetentionPolicy::Limits,
                max_age: options.deadletter_max_age,
                duplicate_window: options.duplicate_window,
                num_replicas: options.replicas,
                ..Default::default()
            },
        ];
        for config in streams {
            let name = config.name.clone();
            self.context
                .create_or_update_stream(config)
                .await
                .map_err(|error| BusError::Unavailable(format!("create stream {name}: {error}")))?;
        }
        Ok(())
    }

    fn to_received(&self, message: &async_nats::Message, delivered: u64) -> ReceivedMessage {
        let headers: Vec<(String, String)> = message
            .headers
            .as_ref()
            .map(|headers| {
                headers
                    .iter()
                    .flat_map(|(name, values)| {
                        values
                            .iter()
                            .map(move |value| (name.to_string(), value.as_str().to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message_id = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("Nats-Msg-Id"))
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        ReceivedMessage {
            subject: self.local_subject(message.subject.as_str()),
            payload: message.payload.clone(),
            message_id,
            headers,
            delivered,
        }
    }
}

#[async_trait]
impl Bus for JetStreamBus {
    async fn publish(&self, message: OutboundMessage) -> Result<PublishAck, BusError> {
        let subject = message.subject.clone();
        let failed = |error: String| BusError::Publish {
            subject: subject.clone(),
            message: error,
        };
        if crate::subjects::stream_of(&message.subject).is_none() {
            return Err(BusError::UnknownSubject(message.subject));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &message.headers {
            headers.insert(name.as_str(), value.as_str());
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(message.payload)
            .headers(headers)
            .message_id(&message.message_id);
        let ack = self
            .context
            .send_publish(self.wire_subject(&message.subject), publish)
            .await
            .map_err(|error| failed(error.to_string()))?
            .await
            .map_err(|error| failed(error.to_string()))?;
        Ok(PublishAck {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    async fn subscribe(
        &self,
        subject_filter: &str,
    ) -> Result<BoxStream<'static, ReceivedMessage>, BusError> {
        let subscriber = self
            .client
            .subscribe(self.wire_subject(subject_filter))
            .await
            .map_err(unavailable)?;
        let bus = self.clone();
        Ok(subscriber
            .map(move |message| bus.to_received(&message, 1))
            .boxed())
    }

    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>, BusError> {
        let failed = |error: String| BusError::Consumer {
            name: config.name.clone(),
            message: error,
        };
        let stream_name = match crate::subjects::stream_of_filter(&config.filter_subject) {
            Some(crate::subjects::StreamKind::Jobs) => self.jobs_stream(),
            Some(crate::subjects::StreamKind::Facts) => format!("{}FACTS", self.stream_prefix),
            _ => {
                return Err(failed(format!(
                    "filter {:?} is neither in the jobs nor in the facts stream",
                    config.filter_subject
                )));
            }
        };
        let stream = self
            .context
            .get_stream(&stream_name)
            .await
            .map_err(|error| failed(error.to_string()))?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &config.name,
                consumer::pull::Config {
                    durable_name: Some(config.name.clone()),
                    filter_subject: self.wire_subject(&config.filter_subject),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| failed(error.to_string()))?;
        Ok(Box::new(JetStreamConsumer {
            bus: self.clone(),
            consumer,
            name: config.name.clone(),
        }))
    }

    async fn recent(
        &self,
        subject_filter: &str,
        limit: usize,
    ) -> Result<Vec<ReceivedMessage>, BusError> {
        let stream_name = match crate::subjects::stream_of(subject_filter.trim_end_matches(".>")) {
            Some(crate::subjects::StreamKind::DeadLetter) => {
                format!("{}DEADLETTER", self.stream_prefix)
            }
            _ => format!("{}FACTS", self.stream_prefix),
        };
        let stream = self
            .context
            .get_stream(&stream_name)
            .await
            .map_err(unavailable)?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.wire_subject(subject_filter),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let pending = consumer.cached_info().num_pending as usize;
        let mut messages = consumer
            .messages()
            .await
            .map_err(unavailable)?
            .take(pending);
        let mut kept = std::collections::VecDeque::with_capacity(limit.min(pending));
        while let Some(message) = messages.next().await {
            let message = message.map_err(unavailable)?;
            if kept.len() == limit {
                kept.pop_front();
            }
            if limit > 0 {
                kept.push_back(self.to_received(&message.message, 1));
            }
        }
        Ok(kept.into())
    }

    async fn ready(&self) -> Result<(), BusError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(BusError::Unavailable("not connected to NATS".into()));
        }
        self.context
            .query_account()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

struct JetStreamConsumer {
    bus: JetStreamBus,
    consumer: consumer::PullConsumer,
    name: String,
}

#[async_trait]
impl Consumer for JetStreamConsumer {
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let failed = |error: String| BusError::Consumer {
            name: self.name.clone(),
            message: error,
        };
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max.max(1))
            .expires(wait.max(Duration::from_millis(100)))
            .messages()
            .await
            .map_err(|error| failed(error.to_string()))?;
        let mut deliveries = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|error| failed(error.to_string()))?;
            let delivered = message
                .info()
                .map(|info| u64::try_from(info.delivered).unwrap_or(1))
                .unwrap_or(1);
            let (message, acker) = message.split();
            deliveries.push(Delivery {
                message: self.bus.to_received(&message, delivered),
                acker: Box::new(JetStreamAcker(acker)),
            });
        }
        Ok(deliveries)
    }

    async fn pending(&self) -> Result<u64, BusError> {
        let info = self
            .consumer
            .get_info()
            .await
            .map_err(|error| BusError::Consumer {
                name: self.name.clone(),
                message: error.to_string(),
            })?;
        Ok(info.num_pending)
    }
}

struct JetStreamAcker(jetstream::message::Acker);

fn ack_error(error: impl std::fmt::Display) -> BusError {
    BusError::Ack(error.to_string())
}

#[async_trait]
impl Acker for JetStreamAcker {
    async fn ack(&self) -> Result<(), BusError> {
        // Double ack: returns only once the server has recorded the ack.
        self.0.double_ack().await.map_err(ack_error)
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(ack_error)
    }

    async fn progress(&self) -> Result<(), BusError> {
        self.0.ack_with(AckKind::Progress).await.map_err(ack_error)
    }

    async fn term(&self) -> Result<(), BusError> {
        self.0
            .double_ack_with(AckKind::Term)
            .await
            .map_err(ack_error)
    }
}

/// Credentials carried in a NATS URL (`nats://user:password@host`, `nats://token@host`).
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// The comma-separated `urls` without their credentials, and the first credentials.
fn split_credentials(urls: &str) -> (String, Option<Credentials>) {
    use casescope_runtime::percent::decode;
    let mut found = None;
    let stripped: Vec<String> = urls
        .split(',')
        .map(|url| {
            let url = url.trim();
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let Some(at) = rest[..authority_end].rfind('@') else {
                return url.to_string();
            };
            let userinfo = &rest[..at];
            if found.is_none() {
                found = Some(match userinfo.split_once(':') {
                    Some((user, password)) => {
                        Credentials::UserPassword(decode(user, false), decode(password, false))
                    }
                    None => Credentials::Token(decode(userinfo, false)),
                });
            }
            let host = &rest[at + 1..];
            if scheme.is_empty() {
                host.to_string()
            } else {
                format!("{scheme}://{host}")
            }
        })
        .collect();
    (stripped.join(","), found)
}

#[cfg(test)]
mod credential_tests {
    use super::{Credentials, split_credentials};

    #[test]
    fn credentials_leave_the_url() {
        assert_eq!(
            split_credentials("nats://127.0.0.1:4222"),
            ("nats://127.0.0.1:4222".into(), None)
        );
        assert_eq!(
            split_credentials("nats://casescope:p%40ss@n1:4222, nats://casescope:p%40ss@n2:4222"),
            (
                "nats://n1:4222,nats://n2:4222".into(),
                Some(Credentials::UserPassword("casescope".into(), "p@ss".into()))
            )
        );
        assert_eq!(
            split_credentials("tls://s3cr3t@nats.example:4222"),
            (
                "tls://nats.example:4222".into(),
                Some(Credentials::Token("s3cr3t".into()))
            )
        );
    }
}
