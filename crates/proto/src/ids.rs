//! Validation of the ids requests carry.

use crate::common::v1::CaseId;
use crate::error::ApiError;

/// A case id (a UUID, hyphenated lower-case) from a request field.
pub fn case_id(id: Option<&CaseId>, field: &str) -> Result<String, ApiError> {
    let value = id.map(|id| id.value.trim()).unwrap_or_default();
    uuid::Uuid::parse_str(value)
        .map(|uuid| uuid.hyphenated().to_string())
        .map_err(|_| {
            ApiError::invalid_field("CASE_ID_INVALID", field, "a case id (UUID) is required")
        })
}

/// A UUID-shaped id (IOC ids, file ids) from a request field, or `reason`.
pub fn uuid_id(value: &str, reason: &'static str, field: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(value.trim())
        .map(|uuid| uuid.hyphenated().to_string())
        .map_err(|_| ApiError::invalid_field(reason, field, "an id (UUID) is required"))
}

/// An id of letters, digits, '-', '_', '.' and ':' (at most 128 characters: rule,
/// file, event and IOC ids), or `reason`.
pub fn plain_id(value: &str, reason: &'static str, field: &str) -> Result<String, ApiError> {
    let value = value.trim();
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(ApiError::invalid_field(
            reason,
            field,
            "an id (letters, digits, '-', '_', '.', ':') is required",
        ))
    }
}
