//! Webhooks: the facts a webhook asked for (detections, IOC matches, file status,
//! reports, cases), each made a delivery to each webhook whose topics and cases take
//! it. Durable consumers of the facts stream hand the facts over; a delivery's id is
//! derived from the webhook and the fact's message id, so a redelivered fact makes no
//! second delivery. The worker POSTs the fact signed with the webhook's key
//! ([`crate::webhook`]).

use crate::config::decode_settings;
use crate::delivery::{DeliveryRepo, DeliveryRow, status};
use crate::repo::{IntegrationRepo, IntegrationRow};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use casescope_bus::{Handler, HandlerError, ReceivedMessage};
use casescope_proto::integrations::v1 as pb;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long the list of webhooks is reused before it is read again.
const CACHE: Duration = Duration::from_secs(5);
/// Bytes of one fact forwarded at most (a larger one is forwarded as a reference).
const MAX_FACT_BYTES: usize = 256 * 1024;

/// The topics and the subject family each comes from.
pub const TOPICS: &[(pb::ExportTopic, &str)] = &[
    (pb::ExportTopic::Detections, "detections"),
    (pb::ExportTopic::IocMatches, "ioc_matches"),
    (pb::ExportTopic::FileStatus, "files"),
    (pb::ExportTopic::Reports, "reports"),
    (pb::ExportTopic::Cases, "cases"),
];

/// The durable consumer name of a topic's family.
pub fn consumer_name(family: &str) -> String {
    format!("integrations-webhooks-{family}")
}

/// The subject filter of a topic's family (docs/bus.md).
pub fn filter(family: &str) -> String {
    format!("casescope.v1.{family}.*")
}

/// `casescope.v1.<family>.<case>` → (topic, case id).
fn topic_of(subject: &str) -> Option<(pb::ExportTopic, &str)> {
    let rest = subject.strip_prefix("casescope.v1.")?;
    let (family, case) = rest.split_once('.')?;
    TOPICS
        .iter()
        .find(|(_, f)| *f == family)
        .map(|(topic, _)| (*topic, case))
}

/// A deterministic delivery id of (webhook, fact).
fn delivery_id(integration_id: &str, message_id: &str) -> String {
    let digest = Sha256::digest(format!("{integration_id}\n{message_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The enabled webhooks with their settings.
type Webhooks = Arc<Vec<(IntegrationRow, pb::WebhookSettings)>>;

/// Hands facts over to the webhooks that want them.
#[derive(Clone)]
pub struct Fanout {
    repo: DeliveryRepo,
    integrations: IntegrationRepo,
    wake: Arc<Notify>,
    cache: Arc<Mutex<Option<(Instant, Webhooks)>>>,
}

impl Fanout {
    pub(crate) fn new(
        repo: DeliveryRepo,
        integrations: IntegrationRepo,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            repo,
            integrations,
            wake,
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// The enabled webhooks (read at most every [`CACHE`]).
    async fn webhooks(&self) -> Result<Webhooks, String> {
        if let Some((at, list)) = self.cache.lock().expect("cache").as_ref()
            && at.elapsed() < CACHE
        {
            return Ok(list.clone());
        }
        let mut found = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self
                .integrations
                .list(
                    pb::IntegrationKind::Webhook as i32,
                    after.as_ref().map(|(n, i)| (n.as_str(), i.as_str())),
                    500,
                )
                .await
                .map_err(|e| e.to_string())?;
            let last = page.last().map(|r| (r.name.clone(), r.id.clone()));
            for row in page {
                if !row.enabled {
                    continue;
                }
                if let Some(pb::integration_settings::KindSettings::Webhook(settings)) =
                    decode_settings(&row.settings).kind_settings
                {
                    found.push((row, settings));
                }
            }
            match last {
                Some(last) if found.len() < 10_000 => after = Some(last),
                _ => break,
            }
        }
        let list = Arc::new(found);
        *self.cache.lock().expect("cache") = Some((Instant::now(), list.clone()));
        Ok(list)
    }
}

#[async_trait]
impl Handler for Fanout {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let Some((topic, case_id)) = topic_of(&message.subject) else {
            return Ok(());
        };
        let webhooks = self.webhooks().await.map_err(HandlerError::transient)?;
        let wanted: Vec<&IntegrationRow> = webhooks
            .iter()
            .filter(|(_, s)| s.topics.contains(&(topic as i32)))
            .filter(|(_, s)| s.case_ids.is_empty() || s.case_ids.iter().any(|c| c.value == case_id))
            .map(|(row, _)| row)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let fact: Value = if message.payload.len() > MAX_FACT_BYTES {
            json!({"truncated": true, "size_bytes": message.payload.len()})
        } else {
            serde_json::from_slice(&message.payload).unwrap_or_else(|_| json!({"unreadable": true}))
        };
        let topic_word = TOPICS
            .iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, f)| *f)
            .unwrap_or("");
        let body = json!({
            "kind": "casescope.fact",
            "topic": topic_word,
            "subject": message.subject,
            "message_id": message.message_id,
            "case_id": case_id,
            "fact": fact,
        })
        .to_string();
        let now = casescope_db::now_micros();
        let mut tx = self
            .repo
            .db()
            .begin()
            .await
            .map_err(HandlerError::transient)?;
        for webhook in wanted {
            let row = DeliveryRow {
                id: delivery_id(&webhook.id, &message.message_id),
                integration_id: webhook.id.clone(),
                integration_kind: webhook.kind,
                kind: pb::DeliveryKind::Webhook as i32,
                case_id: case_id.to_string(),
                target: webhook.base_url.clone(),
                status: status::QUEUED,
                attempts: 0,
                max_attempts: webhook.max_attempts,
                last_error: String::new(),
                last_http_status: 0,
                items_total: 0,
                items_succeeded: 0,
                items_failed: 0,
                remote_reference: String::new(),
                requested_by: String::new(),
                request: STANDARD.encode(body.as_bytes()),
                created_at: now,
                updated_at: now,
                last_attempt_at: None,
                next_attempt_at: Some(now),
                completed_at: None,
            };
            DeliveryRepo::insert(&mut tx, &row)
                .await
                .map_err(HandlerError::transient)?;
        }
        tx.commit().await.map_err(HandlerError::transient)?;
        self.wake.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_map_to_topics() {
        assert_eq!(
            topic_of("casescope.v1.detections.c1"),
            Some((pb::ExportTopic::Detections, "c1"))
        );
        assert_eq!(
            topic_of("casescope.v1.files.c2"),
            Some((pb::ExportTopic::FileStatus, "c2"))
        );
        assert_eq!(topic_of("casescope.v1.annotations.c3"), None);
        assert_eq!(delivery_id("a", "m"), delivery_id("a", "m"));
        assert_ne!(delivery_id("a", "m"), delivery_id("b", "m"));
    }
}
