//! Between the cases service's rows and its wire messages.

use crate::repo::{CaseRow, CaseState, FileRow, Settings};
use crate::validate;
use casescope_proto::cases::v1 as pb;
use casescope_proto::common::v1::{CaseId, FileId, FileStatus, Stage, UserId};
use casescope_proto::error::ApiError;
use casescope_proto::time::micros_to_timestamp;

pub(crate) fn case_to_pb(case: &CaseRow) -> pb::Case {
    pb::Case {
        id: Some(CaseId {
            value: case.id.clone(),
        }),
        name: case.name.clone(),
        description: case.description.clone(),
        state: match case.state {
            CaseState::Open => pb::CaseState::Open as i32,
            CaseState::Archived => pb::CaseState::Archived as i32,
            CaseState::Restoring => pb::CaseState::Restoring as i32,
        },
        settings: Some(pb::CaseSettings {
            deduplicate_events: case.settings.deduplicate_events,
            search_history_retention_days: case.settings.search_history_retention_days,
            evidence_retention_days: case.settings.evidence_retention_days,
        }),
        created_at: Some(micros_to_timestamp(case.created_at)),
        updated_at: Some(micros_to_timestamp(case.updated_at)),
        archived_at: case.archived_at.map(micros_to_timestamp),
        version: case.version,
        file_count: u64::try_from(case.file_count).unwrap_or_default(),
        restore_error: case.restore_error.clone().unwrap_or_default(),
    }
}

pub(crate) fn status_name(status: FileStatus) -> Option<&'static str> {
    Some(match status {
        FileStatus::Unspecified => return None,
        FileStatus::Uploaded => "uploaded",
        FileStatus::Parsing => "parsing",
        FileStatus::Indexed => "indexed",
        FileStatus::Detecting => "detecting",
        FileStatus::Hunting => "hunting",
        FileStatus::Ready => "ready",
        FileStatus::Failed => "failed",
        FileStatus::Archived => "archived",
    })
}

pub(crate) fn status_from_name(name: &str) -> FileStatus {
    [
        FileStatus::Uploaded,
        FileStatus::Parsing,
        FileStatus::Indexed,
        FileStatus::Detecting,
        FileStatus::Hunting,
        FileStatus::Ready,
        FileStatus::Failed,
        FileStatus::Archived,
    ]
    .into_iter()
    .find(|status| status_name(*status) == Some(name))
    .unwrap_or(FileStatus::Unspecified)
}

pub(crate) fn stage_from_name(name: Option<&str>) -> Stage {
    match name {
        Some("ingest") => Stage::Ingest,
        Some("detect") => Stage::Detect,
        Some("ioc_hunt") => Stage::IocHunt,
        _ => Stage::Unspecified,
    }
}

pub(crate) fn file_to_pb(file: &FileRow) -> pb::File {
    let count = |n: i64| u64::try_from(n).unwrap_or_default();
    let rejects: std::collections::BTreeMap<String, u64> =
        serde_json::from_str(&file.rejects_by_reason).unwrap_or_default();
    pb::File {
        id: Some(FileId {
            value: file.id.clone(),
        }),
        case_id: Some(CaseId {
            value: file.case_id.clone(),
        }),
        name: file.name.clone(),
        sha256: file.sha256.clone(),
        size_bytes: count(file.size_bytes),
        format: file.format.clone(),
        status: status_from_name(&file.status) as i32,
        failed_stage: stage_from_name(file.failed_stage.as_deref()) as i32,
        error: file.error.clone().unwrap_or_default(),
        records_read: count(file.records_read),
        events_indexed: count(file.events_indexed),
        records_rejected: count(file.records_rejected),
        duplicates_skipped: count(file.duplicates_skipped),
        rejects_by_reason: rejects
            .into_iter()
            .map(|(reason, count)| pb::RejectCount { reason, count })
            .collect(),
        uploaded_at: Some(micros_to_timestamp(file.uploaded_at)),
        updated_at: Some(micros_to_timestamp(file.updated_at)),
        parent_archive_id: file.parent_archive_id.clone().map(|value| FileId { value }),
        uploaded_by: (!file.uploaded_by.is_empty()).then(|| UserId {
            value: file.uploaded_by.clone(),
        }),
        uploaded_by_name: file.uploaded_by_name.clone(),
    }
}

pub(crate) fn settings_from(
    settings: Option<&pb::CaseSettings>,
    field: &str,
) -> Result<Settings, ApiError> {
    let settings = settings.cloned().unwrap_or_default();
    Ok(Settings {
        deduplicate_events: settings.deduplicate_events,
        search_history_retention_days: validate::retention_days(
            settings.search_history_retention_days,
            &format!("{field}.search_history_retention_days"),
        )?,
        evidence_retention_days: validate::retention_days(
            settings.evidence_retention_days,
            &format!("{field}.evidence_retention_days"),
        )?,
    })
}
