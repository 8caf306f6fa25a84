//! `IocEnrichmentService` (internal): what OpenCTI knows of a case's IOCs, written by
//! the integrations service.

use super::{IocApi, db_error};
use casescope_proto::error::ApiError;
use casescope_proto::ids::uuid_id;
use casescope_proto::ioc::v1 as pb;
use casescope_proto::ioc::v1::ioc_enrichment_service_server::IocEnrichmentService;
use tonic::{Request, Response, Status};

/// IOCs per call at most, and bytes of one enrichment.
pub const MAX_ENRICHMENTS: usize = 1_000;
pub const MAX_ENRICHMENT_BYTES: usize = 64 * 1024;

impl IocApi {
    async fn set_enrichments(
        &self,
        request: pb::SetEnrichmentsRequest,
    ) -> Result<pb::SetEnrichmentsResponse, ApiError> {
        let case_id = uuid_id(
            request
                .case_id
                .as_ref()
                .map(|c| c.value.as_str())
                .unwrap_or_default(),
            "CASE_ID_INVALID",
            "case_id",
        )?;
        if request.enrichments.len() > MAX_ENRICHMENTS {
            return Err(ApiError::invalid_field(
                "TOO_MANY_ENRICHMENTS",
                "enrichments",
                format!("at most {MAX_ENRICHMENTS} per call"),
            ));
        }
        let mut rows = Vec::with_capacity(request.enrichments.len());
        for (i, enrichment) in request.enrichments.iter().enumerate() {
            let id = uuid_id(
                enrichment
                    .id
                    .as_ref()
                    .map(|v| v.value.as_str())
                    .unwrap_or_default(),
                "IOC_ID_INVALID",
                &format!("enrichments[{i}].id"),
            )?;
            if enrichment.enrichment_json.len() > MAX_ENRICHMENT_BYTES
                || !serde_json::from_str::<serde_json::Value>(&enrichment.enrichment_json)
                    .is_ok_and(|v| v.is_object())
            {
                return Err(ApiError::invalid_field(
                    "ENRICHMENT_INVALID",
                    format!("enrichments[{i}].enrichment_json"),
                    format!("a JSON object of at most {MAX_ENRICHMENT_BYTES} bytes"),
                ));
            }
            rows.push((id, enrichment.enrichment_json.as_str()));
        }
        let now = casescope_db::now_micros();
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        let mut updated = 0u32;
        for (id, json) in &rows {
            let done = sqlx::query(
                "UPDATE iocs SET enrichment_json = $3, enriched_at = $4 \
                 WHERE case_id = $1 AND id = $2",
            )
            .bind(&case_id)
            .bind(id)
            .bind(*json)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(e.into()))?;
            updated += done.rows_affected() as u32;
        }
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        Ok(pb::SetEnrichmentsResponse {
            updated,
            not_found: rows.len() as u32 - updated,
        })
    }
}

#[tonic::async_trait]
impl IocEnrichmentService for IocApi {
    async fn set_enrichments(
        &self,
        request: Request<pb::SetEnrichmentsRequest>,
    ) -> Result<Response<pb::SetEnrichmentsResponse>, Status> {
        Ok(Response::new(
            IocApi::set_enrichments(self, request.into_inner()).await?,
        ))
    }
}
