//! Input validation: every rule says what was wrong and where.

use casescope_proto::common::v1::CaseId;
use casescope_proto::error::ApiError;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// A case id: present and a UUID (the only ids this service issues).
pub fn case_id(id: Option<&CaseId>, field: &str) -> Result<String, ApiError> {
    let Some(id) = id.map(|id| id.value.trim()).filter(|v| !v.is_empty()) else {
        return Err(ApiError::invalid_field(
            "CASE_ID_MISSING",
            field,
            "a case id is required",
        ));
    };
    let parsed = uuid::Uuid::parse_str(id).map_err(|_| {
        ApiError::invalid_field(
            "CASE_ID_INVALID",
            field,
            format!("{:?} is not a case id (a UUID)", truncate(id, 80)),
        )
    })?;
    Ok(parsed.hyphenated().to_string())
}

pub fn name(value: &str, field: &str) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid_field(
            "NAME_EMPTY",
            field,
            "must not be empty",
        ));
    }
    let chars = trimmed.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(ApiError::invalid_field(
            "NAME_TOO_LONG",
            field,
            format!("is {chars} characters; the maximum is {MAX_NAME_CHARS}"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "NAME_CONTROL_CHARACTERS",
            field,
            "must not contain control characters (newlines, tabs, escapes)",
        ));
    }
    Ok(trimmed.to_string())
}

pub fn description(value: &str, field: &str) -> Result<String, ApiError> {
    let chars = value.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::invalid_field(
            "DESCRIPTION_TOO_LONG",
            field,
            format!("is {chars} characters; the maximum is {MAX_DESCRIPTION_CHARS}"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ApiError::invalid_field(
            "DESCRIPTION_CONTROL_CHARACTERS",
            field,
            "must not contain control characters other than newlines and tabs",
        ));
    }
    Ok(value.to_string())
}

pub fn retention_days(value: u32, field: &str) -> Result<u32, ApiError> {
    if value > MAX_RETENTION_DAYS {
        return Err(ApiError::invalid_field(
            "RETENTION_TOO_LONG",
            field,
            format!("{value} days is above the maximum of {MAX_RETENTION_DAYS}"),
        ));
    }
    Ok(value)
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}
