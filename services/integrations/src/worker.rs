//! The delivery workers: they take due deliveries from the log (queued, scheduled for
//! a retry whose time came, or in progress under an expired lease — their worker died),
//! each under its lease (epoch-fenced, kept alive while it runs), run one attempt and
//! record its outcome with an `integrations` fact in the same transaction.

use crate::IntegrationsSettings;
use crate::config::{connect, decode_settings};
use crate::delivery::{
    DeliveryRepo, DeliveryRow, Items, STAGE, delivery_word, status, status_word,
};
use crate::iris::client::IrisClient;
use crate::iris::links::Links;
use crate::iris::{Progress, Push, PushError, PushLimits};
use crate::outbound::breaker::Breakers;
use crate::repo::IntegrationRepo;
use crate::source::CaseSource;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use casescope_bus::{OutboundMessage, Outbox, subjects};
use casescope_db::{KeepAlive, Lease, LeaseError, LeaseKey, LeaseStore};
use casescope_proto::bus::v1::{FactHeader, IntegrationFact};
use casescope_proto::integrations::v1 as pb;
use casescope_proto::time::micros_to_rfc3339;
use prost::Message;
use rand::Rng;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Deliveries looked at per poll.
const DUE_PER_POLL: i64 = 16;

/// How deliveries run.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub lease_ttl: Duration,
    /// How often the log is polled for due deliveries (a new one wakes the workers).
    pub poll: Duration,
    /// Deliveries running at once in this process.
    pub concurrency: usize,
    /// The pause before the first retry; doubled per attempt (with jitter), at most
    /// `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub push: PushLimits,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            poll: Duration::from_secs(2),
            concurrency: 4,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(15 * 60),
            push: PushLimits::default(),
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    http_status: u32,
    transient: bool,
}

impl From<PushError> for Failure {
    fn from(error: PushError) -> Self {
        Self {
            message: error.message,
            http_status: error.http_status,
            transient: error.transient,
        }
    }
}

fn permanent(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        http_status: 0,
        transient: false,
    }
}

fn transient(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        http_status: 0,
        transient: true,
    }
}

/// What a finished attempt did.
struct Done {
    items: Items,
    remote_reference: String,
    /// Items refused (the delivery fails, saying which), items left out.
    notes: Vec<String>,
    /// Refused items are part of the outcome, not a failure (an import's patterns the
    /// IOC import cannot read).
    refusals_expected: bool,
}

/// Runs deliveries.
#[derive(Clone)]
pub struct DeliveryWorker {
    pub(crate) repo: DeliveryRepo,
    pub(crate) integrations: IntegrationRepo,
    pub(crate) leases: LeaseStore,
    pub(crate) outbox: Outbox,
    pub(crate) settings: IntegrationsSettings,
    pub(crate) breakers: Breakers,
    pub(crate) source: Arc<dyn CaseSource>,
    pub(crate) worker: WorkerSettings,
    pub(crate) holder: String,
    /// Wakes the loop (a delivery was queued).
    pub(crate) wake: Arc<Notify>,
    running: Arc<Mutex<HashSet<String>>>,
}

/// Marks a delivery as running here until dropped (also when its task is aborted).
struct Running<'a>(&'a Mutex<HashSet<String>>, &'a str);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(self.1);
        }
    }
}

/// Writes a push's progress under its lease.
struct Fenced<'a> {
    leases: &'a LeaseStore,
    lease: &'a Lease,
    keep: &'a KeepAlive,
    id: &'a str,
}

#[async_trait::async_trait]
impl Progress for Fenced<'_> {
    async fn report(&self, items: Items, remote_reference: &str) -> Result<(), String> {
        let mut tx = self.leases.fenced(self.lease).await.map_err(|e| {
            self.keep.mark_lost();
            e.to_string()
        })?;
        DeliveryRepo::progress(
            &mut tx,
            self.id,
            items,
            remote_reference,
            casescope_db::now_micros(),
        )
        .await
        .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())
    }

    fn stopped(&self) -> bool {
        self.keep.is_lost()
    }
}

impl DeliveryWorker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        repo: DeliveryRepo,
        integrations: IntegrationRepo,
        outbox: Outbox,
        settings: IntegrationsSettings,
        breakers: Breakers,
        source: Arc<dyn CaseSource>,
        worker: WorkerSettings,
        wake: Arc<Notify>,
    ) -> Self {
        let leases = LeaseStore::new(repo.db().clone());
        Self {
            repo,
            integrations,
            leases,
            outbox,
            settings,
            breakers,
            source,
            worker,
            holder: format!("integrations-{}", uuid::Uuid::now_v7()),
            wake,
            running: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Polls for due deliveries and runs them until shutdown. The attempts running
    /// belong to this future: when it stops (or is dropped) they stop where they are,
    /// and their leases expire for another worker to resume them — as if the process
    /// had died, which a delivery must survive anyway.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks: JoinSet<()> = JoinSet::new();
        let concurrency = self.worker.concurrency.max(1);
        loop {
            while tasks.try_join_next().is_some() {}
            if tasks.len() < concurrency {
                match self
                    .repo
                    .due(casescope_db::now_micros(), DUE_PER_POLL)
                    .await
                {
                    Ok(ids) => {
                        for id in ids {
                            if tasks.len() >= concurrency {
                                break;
                            }
                            if !self.running.lock().expect("running set").insert(id.clone()) {
                                continue;
                            }
                            let worker = self.clone();
                            tasks.spawn(async move {
                                let _running = Running(&worker.running, &id);
                                if let Err(error) = worker.attempt(&id).await {
                                    tracing::warn!(delivery_id = %id, %error, "delivery attempt stopped; retried later");
                                }
                            });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot read due deliveries; retrying"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.worker.poll) => {}
                _ = self.wake.notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
    }

    /// One attempt at `id` if it is due and no one else runs it.
    pub async fn attempt(&self, id: &str) -> Result<(), String> {
        let key = LeaseKey::new(id, STAGE);
        let Some(lease) = self
            .leases
            .acquire(&key, &self.holder, self.worker.lease_ttl)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let outcome = self.attempt_held(id, &lease).await;
        if let Err(error) = self.leases.release(&lease).await {
            tracing::warn!(%error, delivery_id = id, "cannot release the delivery lease; it expires by itself");
        }
        self.outbox.nudge();
        outcome
    }

    async fn attempt_held(&self, id: &str, lease: &Lease) -> Result<(), String> {
        let Some(row) = self.repo.get(id).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let now = casescope_db::now_micros();
        if row.is_finished() || row.next_attempt_at.is_some_and(|at| at > now) {
            return Ok(());
        }
        if row.attempts >= row.max_attempts {
            let why = format!(
                "gave up after {} attempts: {}",
                row.attempts, row.last_error
            );
            return self
                .finish(&row, lease, Err(permanent(why)), row.attempts)
                .await;
        }
        let mut tx = self.leases.fenced(lease).await.map_err(lease_error)?;
        DeliveryRepo::start(&mut tx, id, now)
            .await
            .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        let attempts = row.attempts + 1;
        let keep = self.leases.keep_alive(lease, self.worker.lease_ttl, || {});
        tracing::info!(delivery_id = id, kind = delivery_word(row.kind), case_id = %row.case_id, attempt = attempts, "delivery attempt");
        let outcome = self.execute(&row, lease, &keep).await;
        if keep.is_lost() {
            return Err("the delivery's lease was lost; its next holder finishes it".into());
        }
        drop(keep);
        self.finish(&row, lease, outcome, attempts).await
    }

    async fn execute(
        &self,
        row: &DeliveryRow,
        lease: &Lease,
        keep: &KeepAlive,
    ) -> Result<Done, Failure> {
        let integration = self
            .integrations
            .get(&row.integration_id)
            .await
            .map_err(|e| transient(format!("integrations database: {e}")))?
            .ok_or_else(|| permanent("the integration was deleted"))?;
        if !integration.enabled {
            return Err(permanent(
                "the integration is disabled; enable it and retry the delivery",
            ));
        }
        let (outbound, secret) =
            connect(&integration, &self.settings, &self.breakers).map_err(permanent)?;
        match pb::DeliveryKind::try_from(row.kind) {
            Ok(pb::DeliveryKind::IrisPush) => {
                let request = STANDARD
                    .decode(&row.request)
                    .ok()
                    .and_then(|b| pb::PushCaseToIrisRequest::decode(b.as_slice()).ok())
                    .ok_or_else(|| permanent("the delivery's request is unreadable"))?;
                let settings = match decode_settings(&integration.settings).kind_settings {
                    Some(pb::integration_settings::KindSettings::Iris(iris)) => iris,
                    _ => pb::IrisSettings::default(),
                };
                // One push of a case to an instance at a time.
                let case_key = LeaseKey::new(
                    format!("{}:{}", row.integration_id, row.case_id),
                    "iris_push",
                );
                let case_lease = self
                    .leases
                    .acquire(&case_key, &self.holder, self.worker.lease_ttl)
                    .await
                    .map_err(|e| transient(e.to_string()))?
                    .ok_or_else(|| transient("another push of this case is running"))?;
                let case_keep = self
                    .leases
                    .keep_alive(&case_lease, self.worker.lease_ttl, || {});
                let links = Links::load(
                    self.leases.clone(),
                    lease.clone(),
                    self.repo.db(),
                    &row.integration_id,
                    &row.case_id,
                )
                .await
                .map_err(|e| transient(format!("integrations database: {e}")))?;
                let progress = Fenced {
                    leases: &self.leases,
                    lease,
                    keep,
                    id: &row.id,
                };
                let outcome = Push::new(
                    IrisClient::new(outbound, &integration.base_url),
                    links,
                    self.source.as_ref(),
                    &progress,
                    self.worker.push.clone(),
                    row.case_id.clone(),
                    request,
                    settings,
                )
                .run()
                .await;
                drop(case_keep);
                let _ = self.leases.release(&case_lease).await;
                let outcome = outcome?;
                Ok(Done {
                    items: outcome.items,
                    remote_reference: outcome.iris_case_id.to_string(),
                    notes: outcome.notes,
                    refusals_expected: false,
                })
            }
            Ok(pb::DeliveryKind::OpenctiEnrich) => {
                let request = STANDARD
                    .decode(&row.request)
                    .ok()
                    .and_then(|b| pb::EnrichIocsRequest::decode(b.as_slice()).ok())
                    .ok_or_else(|| permanent("the delivery's request is unreadable"))?;
                let progress = Fenced {
                    leases: &self.leases,
                    lease,
                    keep,
                    id: &row.id,
                };
                let done = crate::enrich::enrich(
                    &outbound,
                    &integration.base_url,
                    &integration.name,
                    self.source.as_ref(),
                    &progress,
                    &row.case_id,
                    &request,
                )
                .await?;
                Ok(Done {
                    items: done.items,
                    remote_reference: String::new(),
                    notes: done.notes,
                    refusals_expected: false,
                })
            }
            Ok(pb::DeliveryKind::OpenctiImport) => {
                let request = STANDARD
                    .decode(&row.request)
                    .ok()
                    .and_then(|b| pb::ImportOpenCtiIndicatorsRequest::decode(b.as_slice()).ok())
                    .ok_or_else(|| permanent("the delivery's request is unreadable"))?;
                let min_confidence = match request.min_confidence {
                    0 => match decode_settings(&integration.settings).kind_settings {
                        Some(pb::integration_settings::KindSettings::Opencti(o)) => {
                            o.min_import_confidence
                        }
                        _ => 0,
                    },
                    n => n,
                };
                let progress = Fenced {
                    leases: &self.leases,
                    lease,
                    keep,
                    id: &row.id,
                };
                let done = crate::import::import(
                    &outbound,
                    &integration.base_url,
                    self.source.as_ref(),
                    &progress,
                    &row.case_id,
                    &request,
                    min_confidence,
                )
                .await?;
                Ok(Done {
                    items: done.items,
                    remote_reference: String::new(),
                    notes: done.notes,
                    refusals_expected: true,
                })
            }
            Ok(pb::DeliveryKind::Webhook) => {
                let body: serde_json::Value = STANDARD
                    .decode(&row.request)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or_else(|| permanent("the delivery's message is unreadable"))?;
                let header = match decode_settings(&integration.settings).kind_settings {
                    Some(pb::integration_settings::KindSettings::Webhook(w))
                        if !w.signature_header.is_empty() =>
                    {
                        w.signature_header
                    }
                    _ => "X-CaseScope-Signature".to_string(),
                };
                let url = reqwest::Url::parse(&integration.base_url)
                    .map_err(|e| permanent(format!("the webhook URL: {e}")))?;
                let request =
                    crate::webhook::signed_request(url, &body, secret.as_deref(), &header);
                let answer = outbound.send(&request).await.map_err(|error| Failure {
                    http_status: match &error {
                        crate::outbound::OutboundError::Status { status, .. } => u32::from(*status),
                        _ => 0,
                    },
                    transient: error.transient(),
                    message: format!("webhook: {error}"),
                })?;
                if !(200..300).contains(&answer.status) {
                    return Err(Failure {
                        message: format!(
                            "webhook: HTTP {}: {}",
                            answer.status,
                            crate::outbound::excerpt(&answer.body, 200)
                        ),
                        http_status: u32::from(answer.status),
                        transient: false,
                    });
                }
                Ok(Done {
                    items: Items {
                        total: 1,
                        succeeded: 1,
                        failed: 0,
                    },
                    remote_reference: format!("HTTP {}", answer.status),
                    notes: Vec::new(),
                    refusals_expected: false,
                })
            }
            _ => Err(permanent(format!(
                "{} deliveries are not run by this version",
                delivery_word(row.kind)
            ))),
        }
    }

    /// The pause before attempt `attempts + 1`.
    fn backoff(&self, attempts: i64) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(20);
        let pause = self
            .worker
            .retry_base
            .saturating_mul(1u32 << exponent)
            .min(self.worker.retry_max);
        // Half fixed, half random: spread, never immediate.
        let jitter = rand::rng().random_range(0.5..=1.0);
        pause.mul_f64(jitter)
    }

    async fn finish(
        &self,
        row: &DeliveryRow,
        lease: &Lease,
        outcome: Result<Done, Failure>,
        attempts: i64,
    ) -> Result<(), String> {
        let now = casescope_db::now_micros();
        let (state, error, http_status, next, done) = match outcome {
            Ok(done) if done.items.failed == 0 || done.refusals_expected => {
                let note = done.notes.join("; ");
                (status::SUCCEEDED, note, 0, None, Some(done))
            }
            Ok(done) => {
                let why = format!(
                    "{} of {} items were refused: {}",
                    done.items.failed,
                    done.items.total,
                    done.notes.join("; ")
                );
                (status::FAILED, why, 0, None, Some(done))
            }
            Err(failure) if failure.transient && attempts < row.max_attempts => {
                let at = now.saturating_add(self.backoff(attempts).as_micros() as i64);
                (
                    status::RETRY_SCHEDULED,
                    failure.message,
                    failure.http_status,
                    Some(at),
                    None,
                )
            }
            Err(failure) => (
                status::FAILED,
                failure.message,
                failure.http_status,
                None,
                None,
            ),
        };
        let mut tx = self.leases.fenced(lease).await.map_err(lease_error)?;
        let mut reference = row.remote_reference.clone();
        let mut items = Items {
            total: row.items_total,
            succeeded: row.items_succeeded,
            failed: row.items_failed,
        };
        if let Some(done) = &done {
            reference = done.remote_reference.clone();
            items = done.items;
            DeliveryRepo::progress(&mut tx, &row.id, items, &reference, now)
                .await
                .map_err(|e| e.to_string())?;
        }
        DeliveryRepo::finish(&mut tx, &row.id, state, &error, http_status, next, now)
            .await
            .map_err(|e| e.to_string())?;
        if !row.case_id.is_empty() {
            let fact = IntegrationFact {
                header: Some(FactHeader {
                    fact_id: format!("delivery.{}:{}:{attempts}", status_word(state), row.id),
                    kind: format!("delivery.{}", status_word(state)),
                    case_id: row.case_id.clone(),
                    occurred_at: micros_to_rfc3339(now),
                    producer: "integrations".into(),
                }),
                delivery_id: row.id.clone(),
                integration_id: row.integration_id.clone(),
                integration_kind: integration_word(row.integration_kind).into(),
                delivery_kind: delivery_word(row.kind).into(),
                status: status_word(state).into(),
                attempts: attempts as u32,
                max_attempts: row.max_attempts as u32,
                error: error.clone(),
                items_total: items.total as u64,
                items_succeeded: items.succeeded as u64,
                items_failed: items.failed as u64,
                remote_reference: reference.clone(),
                requested_by: row.requested_by.clone(),
                next_attempt_at: next.map(micros_to_rfc3339).unwrap_or_default(),
            };
            let message = OutboundMessage::json(
                subjects::integration_facts(&row.case_id),
                fact.header
                    .as_ref()
                    .map(|h| h.fact_id.clone())
                    .unwrap_or_default(),
                &fact,
            )
            .map_err(|e| e.to_string())?;
            self.outbox
                .enqueue(&mut tx, &message)
                .await
                .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        let health = (state != status::SUCCEEDED).then_some(error.as_str());
        if let Err(e) = self
            .integrations
            .record_health(&row.integration_id, health, now)
            .await
        {
            tracing::warn!(error = %e, "cannot record the integration's health");
        }
        casescope_runtime::metrics::metrics()
            .integration_deliveries
            .add(
                1,
                &[
                    casescope_runtime::metrics::KeyValue::new("kind", delivery_word(row.kind)),
                    casescope_runtime::metrics::KeyValue::new("outcome", status_word(state)),
                ],
            );
        tracing::info!(
            delivery_id = %row.id,
            kind = delivery_word(row.kind),
            status = status_word(state),
            attempt = attempts,
            items_total = items.total,
            items_failed = items.failed,
            error = %error,
            "delivery attempt finished"
        );
        Ok(())
    }
}

fn lease_error(error: LeaseError) -> String {
    match error {
        LeaseError::Fenced { .. } => "the delivery's lease was lost".into(),
        LeaseError::Db(error) => format!("integrations database: {error}"),
    }
}

/// `kind` as a word of facts.
pub fn integration_word(kind: i32) -> &'static str {
    match pb::IntegrationKind::try_from(kind) {
        Ok(pb::IntegrationKind::DfirIris) => "dfir_iris",
        Ok(pb::IntegrationKind::Opencti) => "opencti",
        Ok(pb::IntegrationKind::Webhook) => "webhook",
        Ok(pb::IntegrationKind::NatsExport) => "nats_export",
        _ => "unknown",
    }
}
