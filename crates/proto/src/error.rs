//! The error model at the edge: a small set of codes, each mapped to a gRPC status with
//! a stable machine-readable reason and per-field violations in the binary trailer
//! `casescope-error-bin` (an encoded `common.v1.ErrorDetail`). Internal details are
//! logged by the caller, never returned.

use crate::common::v1::{ErrorDetail, FieldViolation};
use prost::Message;

/// Metadata key of the encoded [`ErrorDetail`] attached to every non-OK status.
pub const ERROR_DETAIL_METADATA_KEY: &str = "casescope-error-bin";

/// What a service returns to a caller. Messages are for humans and must not contain
/// secrets or internal errors (those are logged where they happen).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidArgument {
        reason: &'static str,
        message: String,
        violations: Vec<(String, String)>,
    },
    #[error("{message}")]
    NotFound {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    Aborted {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    Unavailable { message: String },
    #[error("{message}")]
    DataLoss {
        reason: &'static str,
        message: String,
    },
    /// The server is out of a resource the caller cannot fix by retrying at once
    /// (storage): the operator must act.
    #[error("{message}")]
    ResourceExhausted {
        reason: &'static str,
        message: String,
    },
    /// No valid credentials (the message never says which part was wrong).
    #[error("{message}")]
    Unauthenticated {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
    },
    /// Too many requests or attempts: retry after `retry_after_secs` (also sent as
    /// `retry-after` metadata).
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    #[error("internal error (see server logs, reference {reference})")]
    Internal { reference: String },
    #[error("{message}")]
    Unimplemented { message: String },
}

impl ApiError {
    /// One invalid field: `field` is the dotted request path, `description` says what is wrong.
    pub fn invalid_field(
        reason: &'static str,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let field = field.into();
        let description = description.into();
        ApiError::InvalidArgument {
            reason,
            message: format!("invalid {field}: {description}"),
            violations: vec![(field, description)],
        }
    }

    pub fn not_found(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::NotFound {
            reason,
            message: message.into(),
        }
    }

    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    /// An internal failure whose cause is logged here, with the reference the caller
    /// sees; the cause itself never reaches the caller.
    pub fn internal_logged(context: &str, cause: impl std::fmt::Display) -> Self {
        let error = Self::internal();
        if let ApiError::Internal { reference } = &error {
            tracing::error!(%cause, reference, "{context}");
        }
        error
    }

    /// A file-system failure while `context` (e.g. "write upload"): a full disk or
    /// quota is said as such, since an operator must free space (the cause is logged);
    /// anything else is an internal failure.
    pub fn io_logged(context: &str, error: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        if matches!(
            error.kind(),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded
        ) {
            tracing::error!(%error, "{context}: out of storage");
            return ApiError::ResourceExhausted {
                reason: "STORAGE_FULL",
                message: format!(
                    "the server is out of storage ({context}: {error}); free space in its \
                     data directory and try again"
                ),
            };
        }
        Self::internal_logged(context, error)
    }

    /// An internal failure: logs nothing itself; the caller logs `reference` with the cause.
    pub fn internal() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        ApiError::Internal {
            reference: format!("{nanos:x}"),
        }
    }

    fn code_and_reason(&self) -> (tonic::Code, &'static str) {
        match self {
            ApiError::InvalidArgument { reason, .. } => (tonic::Code::InvalidArgument, reason),
            ApiError::NotFound { reason, .. } => (tonic::Code::NotFound, reason),
            ApiError::AlreadyExists { reason, .. } => (tonic::Code::AlreadyExists, reason),
            ApiError::FailedPrecondition { reason, .. } => {
                (tonic::Code::FailedPrecondition, reason)
            }
            ApiError::Aborted { reason, .. } => (tonic::Code::Aborted, reason),
            ApiError::Unavailable { .. } => (tonic::Code::Unavailable, "UNAVAILABLE"),
            ApiError::DataLoss { reason, .. } => (tonic::Code::DataLoss, reason),
            ApiError::ResourceExhausted { reason, .. } => (tonic::Code::ResourceExhausted, reason),
            ApiError::Unauthenticated { reason, .. } => (tonic::Code::Unauthenticated, reason),
            ApiError::PermissionDenied { reason, .. } => (tonic::Code::PermissionDenied, reason),
            ApiError::RateLimited { .. } => (tonic::Code::ResourceExhausted, "RATE_LIMITED"),
            ApiError::Internal { .. } => (tonic::Code::Internal, "INTERNAL"),
            ApiError::Unimplemented { .. } => (tonic::Code::Unimplemented, "UNIMPLEMENTED"),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let (code, reason) = error.code_and_reason();
        let violations = match &error {
            ApiError::InvalidArgument { violations, .. } => violations
                .iter()
                .map(|(field, description)| FieldViolation {
                    field: field.clone(),
                    description: description.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let detail = ErrorDetail {
            reason: reason.to_string(),
            violations,
        };
        let mut status = tonic::Status::new(code, error.to_string());
        status.metadata_mut().insert_bin(
            ERROR_DETAIL_METADATA_KEY,
            tonic::metadata::MetadataValue::from_bytes(&detail.encode_to_vec()),
        );
        if let ApiError::RateLimited {
            retry_after_secs, ..
        } = &error
            && let Ok(value) = retry_after_secs.to_string().parse()
        {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

/// Reads the [`ErrorDetail`] a CaseScope server attached to a status, if any.
pub fn error_detail(status: &tonic::Status) -> Option<ErrorDetail> {
    let value = status.metadata().get_bin(ERROR_DETAIL_METADATA_KEY)?;
    let bytes = value.to_bytes().ok()?;
    ErrorDetail::decode(bytes.as_ref()).ok()
}

/// The answer for an RPC that is part of the contract but not implemented yet.
pub fn unimplemented_status(grpc_path: &str) -> tonic::Status {
    ApiError::Unimplemented {
        message: format!(
            "{grpc_path} is part of the CaseScope API but not implemented in this version ({})",
            env!("CARGO_PKG_VERSION")
        ),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_round_trips_its_detail() {
        let status: tonic::Status =
            ApiError::invalid_field("NAME_EMPTY", "name", "must not be empty").into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "invalid name: must not be empty");
        let detail = error_detail(&status).expect("detail attached");
        assert_eq!(detail.reason, "NAME_EMPTY");
        assert_eq!(detail.violations.len(), 1);
        assert_eq!(detail.violations[0].field, "name");
    }

    #[test]
    fn a_full_disk_is_said_as_such_and_other_io_failures_stay_internal() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let status: tonic::Status = ApiError::io_logged("write upload", &full).into();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status
                .message()
                .starts_with("the server is out of storage (write upload: "),
            "{}",
            status.message()
        );
        assert_eq!(error_detail(&status).unwrap().reason, "STORAGE_FULL");
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let status: tonic::Status = ApiError::io_logged("write upload", &denied).into();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("denied"), "{}", status.message());
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let status: tonic::Status = ApiError::internal().into();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            status
                .message()
                .starts_with("internal error (see server logs")
        );
    }
}
