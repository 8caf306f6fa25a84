//! The gRPC face of the integrations service: configurations (create, get, list,
//! update, delete, test). Secrets are write-only: no answer, log or error holds one.

use crate::IntegrationsSettings;
use crate::config::{
    check_attempts, check_ca, check_kind, check_name, check_secret, check_settings, check_timeout,
    check_url, connect, decode_settings, kind_word,
};
use crate::delivery::DeliveryRepo;
use crate::outbound::Outbound;
use crate::outbound::breaker::{Breakers, Circuit};
use crate::probe::{Probe, probe};
use crate::repo::{IntegrationRepo, IntegrationRow};
use crate::source::CaseSource;
use crate::worker::{DeliveryWorker, WorkerSettings};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use casescope_bus::Outbox;
use casescope_db::{Database, DbError};
use casescope_proto::common::v1::{IntegrationId, PageResponse};
use casescope_proto::error::ApiError;
use casescope_proto::identity::Identity;
use casescope_proto::ids::uuid_id;
use casescope_proto::integrations::v1 as pb;
use casescope_proto::integrations::v1::integrations_service_server::IntegrationsService;
use casescope_proto::paging::{mask_paths, validate_page};
use casescope_proto::time::micros_to_timestamp;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

fn db_error(error: DbError) -> ApiError {
    match error {
        DbError::Unavailable(message) => {
            tracing::warn!(%message, "integrations database unavailable");
            ApiError::Unavailable {
                message: "the integrations database is unavailable; retry shortly".into(),
            }
        }
        other => ApiError::internal_logged("integrations database error", other),
    }
}

fn id_of(id: Option<&IntegrationId>) -> Result<String, ApiError> {
    uuid_id(
        id.map(|i| i.value.as_str()).unwrap_or_default(),
        "INTEGRATION_ID_INVALID",
        "id",
    )
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "INTEGRATION_NOT_FOUND",
        format!("integration {id} not found"),
    )
}

type ApiResult<T> = Result<Response<T>, Status>;

mod deliveries;

#[derive(Clone)]
pub struct IntegrationsApi {
    repo: IntegrationRepo,
    pub(crate) deliveries: DeliveryRepo,
    settings: IntegrationsSettings,
    breakers: Breakers,
    /// Wakes the delivery workers when a delivery is queued.
    wake: Arc<Notify>,
}

impl IntegrationsApi {
    pub fn new(db: Database, settings: IntegrationsSettings) -> Self {
        let breakers = Breakers::new(settings.breaker_threshold, settings.breaker_cool_down);
        Self {
            repo: IntegrationRepo::new(db.clone()),
            deliveries: DeliveryRepo::new(db),
            settings,
            breakers,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The handler that makes webhook deliveries of facts (one durable consumer per
    /// topic family: [`crate::fanout::TOPICS`]).
    pub fn fanout(&self) -> crate::fanout::Fanout {
        crate::fanout::Fanout::new(
            self.deliveries.clone(),
            self.repo.clone(),
            self.wake.clone(),
        )
    }

    /// The worker that runs this API's deliveries (its facts go out through `outbox`;
    /// what a push reads of a case comes from `source`).
    pub fn worker(
        &self,
        outbox: Outbox,
        source: Arc<dyn CaseSource>,
        settings: WorkerSettings,
    ) -> DeliveryWorker {
        DeliveryWorker::new(
            self.deliveries.clone(),
            self.repo.clone(),
            outbox,
            self.settings.clone(),
            self.breakers.clone(),
            source,
            settings,
            self.wake.clone(),
        )
    }

    fn to_pb(&self, row: &IntegrationRow) -> pb::Integration {
        let (circuit, _) = self.breakers.of(&row.id).state();
        pb::Integration {
            id: Some(IntegrationId {
                value: row.id.clone(),
            }),
            kind: row.kind,
            name: row.name.clone(),
            base_url: row.base_url.clone(),
            secret_set: row.secret_set(),
            timeout: prost_types::Duration::try_from(Duration::from_millis(row.timeout_ms as u64))
                .ok(),
            max_attempts: row.max_attempts as u32,
            enabled: row.enabled,
            ca_certificate_pem: row.ca_pem.clone(),
            settings: Some(decode_settings(&row.settings)),
            health: Some(pb::IntegrationHealth {
                circuit_state: match circuit {
                    Circuit::Closed => pb::CircuitState::Closed,
                    Circuit::Open => pb::CircuitState::Open,
                    Circuit::HalfOpen => pb::CircuitState::HalfOpen,
                } as i32,
                consecutive_failures: row.consecutive_failures as u32,
                last_success_at: row.last_success_at.map(micros_to_timestamp),
                last_failure_at: row.last_failure_at.map(micros_to_timestamp),
                last_error: row.last_error.clone(),
            }),
            created_at: Some(micros_to_timestamp(row.created_at)),
            updated_at: Some(micros_to_timestamp(row.updated_at)),
            version: row.version,
        }
    }

    async fn find(&self, id: Option<&IntegrationId>) -> Result<IntegrationRow, ApiError> {
        let id = id_of(id)?;
        self.repo
            .get(&id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| not_found(&id))
    }

    /// The outbound client of `row`, and its secret.
    pub(crate) fn outbound(
        &self,
        row: &IntegrationRow,
    ) -> Result<(Outbound, Option<String>), String> {
        connect(row, &self.settings, &self.breakers)
    }

    async fn create(
        &self,
        request: pb::CreateIntegrationRequest,
    ) -> Result<pb::Integration, ApiError> {
        let kind = check_kind(request.kind)?;
        let id = uuid::Uuid::now_v7().to_string();
        let (secret_sealed, secret_reference) =
            check_secret(&id, request.secret.as_ref(), &self.settings)?;
        let now = casescope_db::now_micros();
        let row = IntegrationRow {
            name: check_name(&request.name)?,
            base_url: check_url(&request.base_url, &self.settings)?,
            secret_sealed,
            secret_reference,
            timeout_ms: check_timeout(request.timeout.as_ref(), &self.settings)?.as_millis() as i64,
            max_attempts: i64::from(check_attempts(request.max_attempts, &self.settings)?),
            enabled: request.enabled.unwrap_or(true),
            ca_pem: check_ca(&request.ca_certificate_pem)?,
            settings: check_settings(kind, request.settings.as_ref())?,
            id,
            kind: kind as i32,
            consecutive_failures: 0,
            last_success_at: None,
            last_failure_at: None,
            last_error: String::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        if !self.repo.insert(&row).await.map_err(db_error)? {
            return Err(ApiError::AlreadyExists {
                reason: "INTEGRATION_NAME_TAKEN",
                message: format!("an integration is already named {:?}", row.name),
            });
        }
        tracing::info!(integration_id = %row.id, kind = kind_word(row.kind), name = %row.name, "integration created");
        Ok(self.to_pb(&row))
    }

    async fn list(
        &self,
        request: pb::ListIntegrationsRequest,
    ) -> Result<pb::ListIntegrationsResponse, ApiError> {
        let page = validate_page(request.page.as_ref(), "page")?;
        let after: Option<(String, String)> = match &page.cursor {
            None => None,
            Some(cursor) => Some(
                URL_SAFE_NO_PAD
                    .decode(cursor)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .ok_or_else(|| {
                        ApiError::invalid_field(
                            "CURSOR_INVALID",
                            "page.cursor",
                            "not a cursor of this list; pass next_cursor unchanged",
                        )
                    })?,
            ),
        };
        if request.kind != 0 && pb::IntegrationKind::try_from(request.kind).is_err() {
            return Err(ApiError::invalid_field(
                "KIND_INVALID",
                "kind",
                "not an integration kind",
            ));
        }
        let limit = i64::from(page.size);
        let mut rows = self
            .repo
            .list(
                request.kind,
                after.as_ref().map(|(n, i)| (n.as_str(), i.as_str())),
                limit + 1,
            )
            .await
            .map_err(db_error)?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(page.size as usize);
            rows.last()
                .map(|r| URL_SAFE_NO_PAD.encode(serde_json::json!([r.name, r.id]).to_string()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListIntegrationsResponse {
            integrations: rows.iter().map(|r| self.to_pb(r)).collect(),
            page: Some(PageResponse { next_cursor: next }),
        })
    }

    async fn update(
        &self,
        request: pb::UpdateIntegrationRequest,
    ) -> Result<pb::Integration, ApiError> {
        let current = self.find(request.id.as_ref()).await?;
        if request.expected_version != 0 && request.expected_version != current.version {
            return Err(ApiError::Aborted {
                reason: "VERSION_MISMATCH",
                message: format!(
                    "the integration is at version {}, not {}; read it again",
                    current.version, request.expected_version
                ),
            });
        }
        let paths = mask_paths(request.update_mask.as_ref())?;
        let kind = check_kind(current.kind)?;
        let mut row = current.clone();
        for path in &paths {
            match path.as_str() {
                "name" => row.name = check_name(&request.name)?,
                "base_url" => row.base_url = check_url(&request.base_url, &self.settings)?,
                "secret" => {
                    (row.secret_sealed, row.secret_reference) =
                        check_secret(&row.id, request.secret.as_ref(), &self.settings)?;
                }
                "timeout" => {
                    row.timeout_ms =
                        check_timeout(request.timeout.as_ref(), &self.settings)?.as_millis() as i64;
                }
                "max_attempts" => {
                    row.max_attempts =
                        i64::from(check_attempts(request.max_attempts, &self.settings)?);
                }
                "enabled" => row.enabled = request.enabled,
                "ca_certificate_pem" => row.ca_pem = check_ca(&request.ca_certificate_pem)?,
                "settings" => row.settings = check_settings(kind, request.settings.as_ref())?,
                other => {
                    return Err(ApiError::invalid_field(
                        "UPDATE_MASK_INVALID",
                        "update_mask",
                        format!(
                            "{other:?} is not one of name, base_url, secret, timeout, \
                             max_attempts, enabled, ca_certificate_pem, settings"
                        ),
                    ));
                }
            }
        }
        row.version = current.version + 1;
        row.updated_at = casescope_db::now_micros();
        match self.repo.update(&row).await.map_err(db_error)? {
            Some(true) => {
                tracing::info!(integration_id = %row.id, fields = ?paths, "integration updated");
                Ok(self.to_pb(&row))
            }
            Some(false) => Err(ApiError::AlreadyExists {
                reason: "INTEGRATION_NAME_TAKEN",
                message: format!("an integration is already named {:?}", row.name),
            }),
            None => Err(ApiError::Aborted {
                reason: "VERSION_MISMATCH",
                message: "the integration changed meanwhile; read it again".into(),
            }),
        }
    }

    async fn test(
        &self,
        request: pb::TestIntegrationRequest,
    ) -> Result<pb::TestIntegrationResponse, ApiError> {
        let row = self.find(request.id.as_ref()).await?;
        let kind = check_kind(row.kind)?;
        let started = Instant::now();
        let outcome = match self.outbound(&row) {
            Err(message) => Probe {
                message,
                ..Default::default()
            },
            Ok((outbound, secret)) => {
                let header = match decode_settings(&row.settings).kind_settings {
                    Some(pb::integration_settings::KindSettings::Webhook(w)) => w.signature_header,
                    _ => String::new(),
                };
                probe(kind, &row.base_url, &outbound, secret.as_deref(), &header).await
            }
        };
        let latency = started.elapsed();
        let error = (!outcome.ok).then_some(outcome.message.as_str());
        self.repo
            .record_health(&row.id, error, casescope_db::now_micros())
            .await
            .map_err(db_error)?;
        tracing::info!(integration_id = %row.id, ok = outcome.ok, http_status = outcome.http_status, "integration tested");
        Ok(pb::TestIntegrationResponse {
            ok: outcome.ok,
            latency: prost_types::Duration::try_from(latency).ok(),
            http_status: outcome.http_status,
            message: outcome.message,
            remote_version: outcome.remote_version,
        })
    }
}

#[tonic::async_trait]
impl IntegrationsService for IntegrationsApi {
    async fn create_integration(
        &self,
        request: Request<pb::CreateIntegrationRequest>,
    ) -> ApiResult<pb::Integration> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn get_integration(
        &self,
        request: Request<pb::GetIntegrationRequest>,
    ) -> ApiResult<pb::Integration> {
        let row = self.find(request.get_ref().id.as_ref()).await?;
        Ok(Response::new(self.to_pb(&row)))
    }

    async fn list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> ApiResult<pb::ListIntegrationsResponse> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    async fn update_integration(
        &self,
        request: Request<pb::UpdateIntegrationRequest>,
    ) -> ApiResult<pb::Integration> {
        Ok(Response::new(self.update(request.into_inner()).await?))
    }

    async fn delete_integration(
        &self,
        request: Request<pb::DeleteIntegrationRequest>,
    ) -> ApiResult<pb::DeleteIntegrationResponse> {
        let id = id_of(request.get_ref().id.as_ref())?;
        if !self.repo.delete(&id).await.map_err(db_error)? {
            return Err(not_found(&id).into());
        }
        self.breakers.forget(&id);
        tracing::info!(integration_id = %id, "integration deleted");
        Ok(Response::new(pb::DeleteIntegrationResponse {}))
    }

    async fn test_integration(
        &self,
        request: Request<pb::TestIntegrationRequest>,
    ) -> ApiResult<pb::TestIntegrationResponse> {
        Ok(Response::new(self.test(request.into_inner()).await?))
    }

    async fn push_case_to_iris(
        &self,
        request: Request<pb::PushCaseToIrisRequest>,
    ) -> ApiResult<pb::Delivery> {
        let identity = Identity::of(&request).cloned();
        Ok(Response::new(
            self.push_to_iris(identity.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn enrich_iocs(
        &self,
        request: Request<pb::EnrichIocsRequest>,
    ) -> ApiResult<pb::Delivery> {
        let identity = Identity::of(&request).cloned();
        Ok(Response::new(
            self.enrich_iocs(identity.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn import_open_cti_indicators(
        &self,
        request: Request<pb::ImportOpenCtiIndicatorsRequest>,
    ) -> ApiResult<pb::Delivery> {
        let identity = Identity::of(&request).cloned();
        Ok(Response::new(
            self.import_indicators(identity.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> ApiResult<pb::ListDeliveriesResponse> {
        let identity = Identity::of(&request).cloned();
        Ok(Response::new(
            self.list_deliveries(identity.as_ref(), request.into_inner())
                .await?,
        ))
    }

    async fn get_delivery(
        &self,
        request: Request<pb::GetDeliveryRequest>,
    ) -> ApiResult<pb::Delivery> {
        Ok(Response::new(
            self.get_delivery(request.into_inner()).await?,
        ))
    }

    async fn retry_delivery(
        &self,
        request: Request<pb::RetryDeliveryRequest>,
    ) -> ApiResult<pb::Delivery> {
        Ok(Response::new(
            self.retry_delivery(request.into_inner()).await?,
        ))
    }
}
