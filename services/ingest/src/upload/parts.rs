//! The same upload in unary calls, for browsers (gRPC-web has no client streaming):
//! `BeginUpload` checks the header and starts (or resumes) the upload exactly as the
//! stream's header does; each `UploadPart` appends one chunk at the offset the part file
//! ends at, durably; the part that reaches the declared size hashes the file once and
//! completes the upload as the stream does (SHA-256 and format verified, evidence placed,
//! file registered). A lost answer is recovered with `GetUploadStatus` (next_offset).

use super::{Begun, Written, invalid};
use crate::api::IngestApi;
use crate::repo::UploadRow;
use casescope_evidence::Format;
use casescope_proto::common::v1::{CaseId, FileId, UploadId};
use casescope_proto::error::ApiError;
use casescope_proto::ingest::v1 as pb;
use casescope_proto::time::micros_to_timestamp;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why a part was not appended.
enum Refused {
    /// The part file holds this many bytes: the part must start there.
    Offset(u64),
    /// The part would pass the declared size.
    TooLong,
    Io(std::io::Error),
}

/// Appends `data` to the part file at `offset` (which must be its length) and syncs it;
/// the new length.
fn append(path: &Path, offset: u64, data: &[u8], declared: u64) -> Result<u64, Refused> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(Refused::Io)?;
    let length = file.metadata().map_err(Refused::Io)?.len();
    if offset != length {
        return Err(Refused::Offset(length));
    }
    if length + data.len() as u64 > declared {
        return Err(Refused::TooLong);
    }
    file.write_all(data).map_err(Refused::Io)?;
    file.sync_data().map_err(Refused::Io)?;
    Ok(length + data.len() as u64)
}

/// The SHA-256, first bytes and size of a complete part file (read once).
fn hash_file(path: &PathBuf) -> std::io::Result<Written> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let read = file.read(&mut buf)?;
        if read == 0 {
            break;
        }
        if head.len() < super::HEAD_BYTES {
            let room = (super::HEAD_BYTES - head.len()).min(read);
            head.extend_from_slice(&buf[..room]);
        }
        hasher.update(&buf[..read]);
        size += read as u64;
    }
    Ok(Written {
        sha256: hex::encode(hasher.finalize()),
        head,
        size,
    })
}

impl IngestApi {
    /// An upload's status as `GetUploadStatus` gives it, with `on_disk` bytes received.
    pub(crate) fn upload_status(&self, upload: &UploadRow, on_disk: u64) -> pb::UploadStatus {
        let state = match upload.state.as_str() {
            "receiving" => pb::UploadState::Receiving,
            "complete" => pb::UploadState::Complete,
            "failed" => pb::UploadState::Failed,
            _ => pb::UploadState::Expired,
        };
        let retention =
            i64::try_from(self.settings.upload_retention.as_micros()).unwrap_or(i64::MAX / 2);
        pb::UploadStatus {
            upload_id: Some(UploadId {
                value: upload.id.clone(),
            }),
            case_id: Some(CaseId {
                value: upload.case_id.clone(),
            }),
            file_name: upload.file_name.clone(),
            declared_size_bytes: u64::try_from(upload.declared_size).unwrap_or_default(),
            declared_sha256: upload.declared_sha256.clone(),
            state: state as i32,
            next_offset: on_disk,
            bytes_received: on_disk,
            file_id: upload.file_id.clone().map(|value| FileId { value }),
            error: upload.error.clone().unwrap_or_default(),
            created_at: Some(micros_to_timestamp(upload.created_at)),
            updated_at: Some(micros_to_timestamp(upload.updated_at)),
            expires_at: Some(micros_to_timestamp(
                upload.updated_at.saturating_add(retention),
            )),
        }
    }

    pub(crate) async fn begin_upload(
        &self,
        header: pb::UploadHeader,
        uploader: &super::Uploader,
    ) -> Result<pb::BeginUploadResponse, ApiError> {
        Ok(match self.begin(&header, "", uploader).await? {
            Begun::Present(result) => pb::BeginUploadResponse {
                status: None,
                already_present: Some(result),
            },
            Begun::Receiving {
                upload, on_disk, ..
            } => pb::BeginUploadResponse {
                status: Some(self.upload_status(&upload, on_disk)),
                already_present: None,
            },
        })
    }

    pub(crate) async fn upload_part(
        &self,
        request: pb::UploadPartRequest,
    ) -> Result<pb::UploadPartResponse, ApiError> {
        let case_id = crate::api::case_id(request.case_id.as_ref(), "case_id")?;
        let upload_id = request
            .upload_id
            .as_ref()
            .map(|id| id.value.clone())
            .unwrap_or_default();
        if upload_id.is_empty() {
            return Err(invalid(
                "UPLOAD_ID_MISSING",
                "upload_id",
                "the upload id BeginUpload answered is required",
            ));
        }
        let max_chunk_bytes = self.settings.max_chunk_bytes;
        if request.data.len() > max_chunk_bytes {
            return Err(invalid(
                "CHUNK_TOO_LARGE",
                "data",
                format!(
                    "{} bytes; at most {max_chunk_bytes} per part",
                    request.data.len()
                ),
            ));
        }
        self.require_open_case(&case_id, "adding evidence").await?;
        let upload = self.receiving_upload(&case_id, &upload_id).await?;
        let format = Format::from_file_name(&upload.file_name).ok_or_else(|| {
            invalid(
                "EXTENSION_NOT_ALLOWED",
                "file_name",
                "not an evidence file name",
            )
        })?;
        let _active = self.active_uploads.claim(&upload.id).ok_or_else(|| {
            ApiError::failed_precondition(
                "UPLOAD_IN_PROGRESS",
                format!("upload {} is receiving another part; retry", upload.id),
            )
        })?;
        let declared = u64::try_from(upload.declared_size).unwrap_or_default();
        let part = self.part_path(&upload.id);
        let offset = request.offset;
        let data = request.data;
        let path = part.clone();
        let appended = tokio::task::spawn_blocking(move || append(&path, offset, &data, declared))
            .await
            .map_err(|e| crate::api::internal("upload part task", e))?;
        let on_disk = match appended {
            Ok(length) => length,
            Err(Refused::Offset(length)) => {
                return Err(ApiError::FailedPrecondition {
                    reason: "UPLOAD_OFFSET_MISMATCH",
                    message: format!(
                        "part offset {offset} but the server holds {length} bytes of upload {}; resume from {length}",
                        upload.id
                    ),
                });
            }
            Err(Refused::TooLong) => {
                return Err(invalid(
                    "UPLOAD_TOO_LONG",
                    "data",
                    format!("more bytes than the declared {declared}"),
                ));
            }
            Err(Refused::Io(error)) => {
                return Err(ApiError::io_logged("write upload part", &error));
            }
        };
        self.repo
            .set_upload_progress(&upload.id, on_disk as i64)
            .await
            .map_err(crate::api::db_error)?;
        if on_disk < declared {
            return Ok(pb::UploadPartResponse {
                next_offset: on_disk,
                result: None,
            });
        }
        let written = tokio::task::spawn_blocking(move || hash_file(&part))
            .await
            .map_err(|e| crate::api::internal("upload hash task", e))?
            .map_err(|e| ApiError::io_logged("hash upload", &e))?;
        let result = self.complete(&upload, format, written).await?;
        Ok(pb::UploadPartResponse {
            next_offset: on_disk,
            result: Some(result),
        })
    }
}
