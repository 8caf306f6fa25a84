//! The delivery RPCs: `PushCaseToIris` queues a delivery; `ListDeliveries`,
//! `GetDelivery` and `RetryDelivery` read and re-queue the log.

use super::{IntegrationsApi, db_error, id_of, not_found};
use crate::config::check_kind;
use crate::delivery::{DeliveryFilter, DeliveryRepo, DeliveryRow, status};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use casescope_proto::common::v1::{CaseId, IntegrationId, PageResponse};
use casescope_proto::error::ApiError;
use casescope_proto::identity::Identity;
use casescope_proto::ids::uuid_id;
use casescope_proto::integrations::v1 as pb;
use casescope_proto::paging::validate_page;
use prost::Message;

/// Deliveries of one case to one integration queued or running at once.
const MAX_ACTIVE_PER_CASE: i64 = 1;
/// IOCs an enrichment may name.
const MAX_IOC_IDS: usize = 1_000;

fn case_of(id: Option<&CaseId>, field: &str) -> Result<String, ApiError> {
    uuid_id(
        id.map(|c| c.value.as_str()).unwrap_or_default(),
        "CASE_ID_INVALID",
        field,
    )
}

fn delivery_of(id: Option<&pb::DeliveryId>) -> Result<String, ApiError> {
    uuid_id(
        id.map(|d| d.value.as_str()).unwrap_or_default(),
        "DELIVERY_ID_INVALID",
        "id",
    )
}

fn delivery_not_found(id: &str) -> ApiError {
    ApiError::not_found("DELIVERY_NOT_FOUND", format!("delivery {id} not found"))
}

impl IntegrationsApi {
    /// Queues a delivery of `kind` to integration `integration_id` (of `expected`
    /// kind) for `case_id`, carrying `request`.
    async fn queue(
        &self,
        identity: Option<&Identity>,
        case_id: String,
        integration_id: Option<&IntegrationId>,
        expected: pb::IntegrationKind,
        kind: pb::DeliveryKind,
        request: Vec<u8>,
    ) -> Result<pb::Delivery, ApiError> {
        let integration = self.find(integration_id).await?;
        if check_kind(integration.kind)? != expected {
            return Err(ApiError::invalid_field(
                "INTEGRATION_KIND_MISMATCH",
                "integration_id",
                format!(
                    "not a {} integration",
                    expected
                        .as_str_name()
                        .trim_start_matches("INTEGRATION_KIND_")
                ),
            ));
        }
        if !integration.enabled {
            return Err(ApiError::FailedPrecondition {
                reason: "INTEGRATION_DISABLED",
                message: format!("integration {:?} is disabled", integration.name),
            });
        }
        let active = self
            .deliveries
            .active(&integration.id, &case_id)
            .await
            .map_err(db_error)?;
        if active >= MAX_ACTIVE_PER_CASE {
            return Err(ApiError::FailedPrecondition {
                reason: "DELIVERY_ALREADY_QUEUED",
                message: format!(
                    "a delivery of this case to {:?} is already queued or running; wait for \
                     it (casescope deliveries list --case {case_id})",
                    integration.name
                ),
            });
        }
        let now = casescope_db::now_micros();
        let row = DeliveryRow {
            id: uuid::Uuid::now_v7().to_string(),
            integration_id: integration.id.clone(),
            integration_kind: integration.kind,
            kind: kind as i32,
            case_id: case_id.clone(),
            target: integration.base_url.clone(),
            status: status::QUEUED,
            attempts: 0,
            max_attempts: integration.max_attempts,
            last_error: String::new(),
            last_http_status: 0,
            items_total: 0,
            items_succeeded: 0,
            items_failed: 0,
            remote_reference: String::new(),
            requested_by: identity.map(|i| i.user_id.clone()).unwrap_or_default(),
            request: STANDARD.encode(request),
            created_at: now,
            updated_at: now,
            last_attempt_at: None,
            next_attempt_at: Some(now),
            completed_at: None,
        };
        let mut tx = self.deliveries.db().begin().await.map_err(db_error)?;
        DeliveryRepo::insert(&mut tx, &row)
            .await
            .map_err(db_error)?;
        tx.commit()
            .await
            .map_err(|e| db_error(casescope_db::DbError::from(e)))?;
        self.wake.notify_one();
        tracing::info!(delivery_id = %row.id, case_id = %case_id, integration_id = %integration.id, kind = crate::delivery::delivery_word(row.kind), "delivery queued");
        Ok(row.to_pb())
    }

    pub(super) async fn push_to_iris(
        &self,
        identity: Option<&Identity>,
        request: pb::PushCaseToIrisRequest,
    ) -> Result<pb::Delivery, ApiError> {
        let case_id = case_of(request.case_id.as_ref(), "case_id")?;
        if request.iris_case_id == Some(0) {
            return Err(ApiError::invalid_field(
                "IRIS_CASE_ID_INVALID",
                "iris_case_id",
                "an IRIS case id is a positive number",
            ));
        }
        for (i, tag) in request.timeline_tags.iter().enumerate() {
            if tag.trim().is_empty() || tag.chars().count() > 100 {
                return Err(ApiError::invalid_field(
                    "TAG_INVALID",
                    format!("timeline_tags[{i}]"),
                    "a tag has 1..=100 characters",
                ));
            }
        }
        if request.timeline_tags.len() > 100 {
            return Err(ApiError::invalid_field(
                "TOO_MANY_TAGS",
                "timeline_tags",
                "at most 100 tags",
            ));
        }
        let mut stored = request.clone();
        stored.case_id = None;
        stored.integration_id = None;
        self.queue(
            identity,
            case_id,
            request.integration_id.as_ref(),
            pb::IntegrationKind::DfirIris,
            pb::DeliveryKind::IrisPush,
            stored.encode_to_vec(),
        )
        .await
    }

    pub(super) async fn enrich_iocs(
        &self,
        identity: Option<&Identity>,
        request: pb::EnrichIocsRequest,
    ) -> Result<pb::Delivery, ApiError> {
        let case_id = case_of(request.case_id.as_ref(), "case_id")?;
        if request.ioc_ids.len() > MAX_IOC_IDS {
            return Err(ApiError::invalid_field(
                "TOO_MANY_IOCS",
                "ioc_ids",
                format!("at most {MAX_IOC_IDS} IOCs; leave it empty for every IOC of the case"),
            ));
        }
        for (i, id) in request.ioc_ids.iter().enumerate() {
            uuid_id(&id.value, "IOC_ID_INVALID", &format!("ioc_ids[{i}]"))?;
        }
        let mut stored = request.clone();
        stored.case_id = None;
        stored.integration_id = None;
        self.queue(
            identity,
            case_id,
            request.integration_id.as_ref(),
            pb::IntegrationKind::Opencti,
            pb::DeliveryKind::OpenctiEnrich,
            stored.encode_to_vec(),
        )
        .await
    }

    pub(super) async fn import_indicators(
        &self,
        identity: Option<&Identity>,
        request: pb::ImportOpenCtiIndicatorsRequest,
    ) -> Result<pb::Delivery, ApiError> {
        let case_id = case_of(request.case_id.as_ref(), "case_id")?;
        if request.min_confidence > 100 {
            return Err(ApiError::invalid_field(
                "CONFIDENCE_INVALID",
                "min_confidence",
                "0 to 100",
            ));
        }
        if request.max_indicators > crate::import::MAX_INDICATORS {
            return Err(ApiError::invalid_field(
                "TOO_MANY_INDICATORS",
                "max_indicators",
                format!("at most {}", crate::import::MAX_INDICATORS),
            ));
        }
        if request.search.len() > 1_000 {
            return Err(ApiError::invalid_field(
                "SEARCH_TOO_LONG",
                "search",
                "at most 1,000 bytes",
            ));
        }
        for (field, list) in [
            ("labels", &request.labels),
            ("observable_types", &request.observable_types),
        ] {
            if list.len() > 100 || list.iter().any(|v| v.trim().is_empty() || v.len() > 200) {
                return Err(ApiError::invalid_field(
                    "FILTER_INVALID",
                    field,
                    "at most 100 values of 1 to 200 bytes",
                ));
            }
        }
        let mut stored = request.clone();
        stored.case_id = None;
        stored.integration_id = None;
        self.queue(
            identity,
            case_id,
            request.integration_id.as_ref(),
            pb::IntegrationKind::Opencti,
            pb::DeliveryKind::OpenctiImport,
            stored.encode_to_vec(),
        )
        .await
    }

    pub(super) async fn list_deliveries(
        &self,
        identity: Option<&Identity>,
        request: pb::ListDeliveriesRequest,
    ) -> Result<pb::ListDeliveriesResponse, ApiError> {
        let page = validate_page(request.page.as_ref(), "page")?;
        let mut filter = DeliveryFilter::default();
        if request
            .case_id
            .as_ref()
            .is_some_and(|c| !c.value.is_empty())
        {
            filter.case_id = Some(case_of(request.case_id.as_ref(), "case_id")?);
        } else if identity.is_some_and(|i| i.cases.is_some()) {
            return Err(ApiError::invalid_field(
                "CASE_ID_REQUIRED",
                "case_id",
                "name the case (only administrators list every case's deliveries)",
            ));
        }
        if request
            .integration_id
            .as_ref()
            .is_some_and(|i| !i.value.is_empty())
        {
            filter.integration_id = Some(id_of(request.integration_id.as_ref())?);
        }
        for (i, value) in request.statuses.iter().enumerate() {
            match pb::DeliveryStatus::try_from(*value) {
                Ok(s) if s != pb::DeliveryStatus::Unspecified => {
                    filter.statuses.push(i64::from(*value))
                }
                _ => {
                    return Err(ApiError::invalid_field(
                        "STATUS_INVALID",
                        format!("statuses[{i}]"),
                        "not a delivery status",
                    ));
                }
            }
        }
        for (i, value) in request.kinds.iter().enumerate() {
            match pb::DeliveryKind::try_from(*value) {
                Ok(k) if k != pb::DeliveryKind::Unspecified => filter.kinds.push(i64::from(*value)),
                _ => {
                    return Err(ApiError::invalid_field(
                        "KIND_INVALID",
                        format!("kinds[{i}]"),
                        "not a delivery kind",
                    ));
                }
            }
        }
        if let Some(range) = &request.time_range {
            filter.from = range.start_unix_micros;
            filter.to = range.end_unix_micros;
        }
        let after: Option<(i64, String)> = match &page.cursor {
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
        let limit = i64::from(page.size);
        let mut rows = self
            .deliveries
            .list(
                &filter,
                after.as_ref().map(|(at, id)| (*at, id.as_str())),
                limit + 1,
            )
            .await
            .map_err(db_error)?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(page.size as usize);
            rows.last()
                .map(|r| {
                    URL_SAFE_NO_PAD.encode(serde_json::json!([r.created_at, r.id]).to_string())
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListDeliveriesResponse {
            deliveries: rows.iter().map(DeliveryRow::to_pb).collect(),
            page: Some(PageResponse { next_cursor: next }),
        })
    }

    /// The delivery `id`, of `case` when one is named.
    async fn delivery(&self, id: &str, case: Option<&CaseId>) -> Result<DeliveryRow, ApiError> {
        let row = self
            .deliveries
            .get(id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| delivery_not_found(id))?;
        if let Some(case) = case.filter(|c| !c.value.is_empty())
            && case.value != row.case_id
        {
            return Err(delivery_not_found(id));
        }
        Ok(row)
    }

    pub(super) async fn get_delivery(
        &self,
        request: pb::GetDeliveryRequest,
    ) -> Result<pb::Delivery, ApiError> {
        let id = delivery_of(request.id.as_ref())?;
        Ok(self.delivery(&id, request.case_id.as_ref()).await?.to_pb())
    }

    pub(super) async fn retry_delivery(
        &self,
        request: pb::RetryDeliveryRequest,
    ) -> Result<pb::Delivery, ApiError> {
        let id = delivery_of(request.id.as_ref())?;
        let row = self.delivery(&id, request.case_id.as_ref()).await?;
        if self
            .repo
            .get(&row.integration_id)
            .await
            .map_err(db_error)?
            .is_none()
        {
            return Err(not_found(&row.integration_id));
        }
        if !self
            .deliveries
            .requeue(&id, casescope_db::now_micros())
            .await
            .map_err(db_error)?
        {
            return Err(ApiError::FailedPrecondition {
                reason: "DELIVERY_NOT_FAILED",
                message: format!(
                    "delivery {id} is {}; only a failed delivery is retried",
                    crate::delivery::status_word(row.status)
                ),
            });
        }
        self.wake.notify_one();
        tracing::info!(delivery_id = %id, "delivery re-queued by hand");
        Ok(self.delivery(&id, None).await?.to_pb())
    }
}
