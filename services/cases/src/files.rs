//! The internal FileRecordsService: the ingest (and later detect/ioc) services register
//! files and report their status here; each status change is published as a
//! `casescope.v1.files.<case>` fact through the outbox.

use crate::convert::{case_to_pb, file_to_pb, status_name};
use crate::repo::FileRow;
use crate::service::{CasesApi, db_error, require_open};
use crate::validate;
use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::file_records_service_server::FileRecordsService;
use casescope_proto::common::v1::{FileId, FileStatus, Stage};
use casescope_proto::error::ApiError;
use tonic::{Request, Response, Status};

fn file_id(id: Option<&FileId>) -> Result<String, ApiError> {
    id.map(|id| id.value.trim().to_string())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .ok_or_else(|| {
            ApiError::invalid_field(
                "FILE_ID_INVALID",
                "file_id",
                "a file id (letters, digits, '-') is required",
            )
        })
}

fn stage_name(stage: Stage) -> Option<&'static str> {
    match stage {
        Stage::Unspecified => None,
        Stage::Ingest => Some("ingest"),
        Stage::Detect => Some("detect"),
        Stage::IocHunt => Some("ioc_hunt"),
    }
}

#[tonic::async_trait]
impl FileRecordsService for CasesApi {
    async fn register_file(
        &self,
        request: Request<pb::RegisterFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let request = request.into_inner();
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let id = file_id(request.file_id.as_ref())?;
        let name = validate::name(&request.name, "name")?;
        let mut tx = self.begin().await?;
        let case = self.load(&mut tx, &case_id).await?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        require_open(&case, "adding evidence")?;
        let now = casescope_db::now_micros();
        let row = FileRow {
            id,
            case_id,
            name,
            sha256: request.sha256,
            size_bytes: i64::try_from(request.size_bytes).unwrap_or(i64::MAX),
            format: request.format,
            status: "uploaded".into(),
            failed_stage: None,
            error: None,
            records_read: 0,
            events_indexed: 0,
            records_rejected: 0,
            duplicates_skipped: 0,
            rejects_by_reason: "{}".into(),
            parent_archive_id: request.parent_archive_id.map(|id| id.value),
            uploaded_at: now,
            updated_at: now,
            ingest_status: "uploaded".into(),
            generation: 0,
            uploaded_by: request.uploaded_by.map(|u| u.value).unwrap_or_default(),
            uploaded_by_name: request.uploaded_by_name,
        };
        let stored = self.repo.register_file(&row).await.map_err(db_error)?;
        Ok(Response::new(file_to_pb(&stored)))
    }

    async fn update_file_status(
        &self,
        request: Request<pb::UpdateFileStatusRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let request = request.into_inner();
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let id = file_id(request.file_id.as_ref())?;
        let status = FileStatus::try_from(request.status)
            .ok()
            .and_then(status_name)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "FILE_STATUS_INVALID",
                    "status",
                    "a file status is required",
                )
            })?;
        let failed_stage = Stage::try_from(request.failed_stage)
            .ok()
            .and_then(stage_name);
        let stored = self
            .repo
            .get_file(&case_id, &id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "FILE_NOT_FOUND",
                    format!("file {id} does not exist in case {case_id}"),
                )
            })?;
        let rejects: std::collections::BTreeMap<String, u64> = request
            .rejects_by_reason
            .iter()
            .map(|r| (r.reason.clone(), r.count))
            .collect();
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut updated = FileRow {
            status: status.to_string(),
            failed_stage: failed_stage.map(str::to_string),
            error: (!request.error.is_empty()).then(|| request.error.chars().take(2000).collect()),
            records_read: count(request.records_read),
            events_indexed: count(request.events_indexed),
            records_rejected: count(request.records_rejected),
            duplicates_skipped: count(request.duplicates_skipped),
            rejects_by_reason: serde_json::to_string(&rejects).unwrap_or_else(|_| "{}".into()),
            updated_at: casescope_db::now_micros(),
            ingest_status: status.to_string(),
            generation: request.generation,
            ..stored.clone()
        };
        let mut tx = self.begin().await?;
        self.repo
            .lock_file(&mut tx, &case_id, &id)
            .await
            .map_err(db_error)?;
        // What is shown follows the downstream stages too (stages.rs), read under the
        // file's lock so that a stage's fact handled meanwhile is seen.
        let (shown, failed_stage, error) = self
            .derived_status(&mut tx, &updated)
            .await
            .map_err(db_error)?;
        updated.status = shown;
        updated.failed_stage = failed_stage;
        updated.error = error;
        let applied = self
            .repo
            .update_file_status_in(&mut tx, &updated, request.sequence)
            .await
            .map_err(db_error)?;
        if applied {
            self.status_fact(&mut tx, &updated)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        self.outbox.nudge();
        let current = if applied { updated } else { stored };
        Ok(Response::new(file_to_pb(&current)))
    }

    async fn finish_restore(
        &self,
        request: Request<pb::FinishRestoreRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let request = request.into_inner();
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let case = self
            .conclude_restore(&case_id, request.restored, &request.refusal)
            .await?;
        tracing::info!(case_id, restored = request.restored, refusal = %request.refusal, "restore finished");
        Ok(Response::new(case_to_pb(&case)))
    }
}
