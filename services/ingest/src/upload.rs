//! The Upload RPC (and its unary form for browsers, `parts`): a header, then chunks at
//! strictly increasing offsets, written to a partial file; verified against the declared size and SHA-256; placed in the case's
//! evidence directory under its hash; registered (ZIPs: each member) and queued for the
//! ingest stage. Interrupted uploads resume from the bytes already on disk.

use crate::api::IngestApi;
use crate::convert::format_of;
use crate::repo::{FileRow, UploadRow, stage};
use casescope_evidence::archive::{self, Extraction};
use casescope_evidence::{Format, sniff_format};
use casescope_proto::common::v1::{CaseId, FileId, UploadId};
use casescope_proto::error::ApiError;
use casescope_proto::ingest::v1 as pb;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::PathBuf;
use tonic::Streaming;

mod parts;
mod uploader;

pub(crate) use uploader::Uploader;

/// Progress is written to the database every this many bytes.
const PROGRESS_EVERY: u64 = 16 * 1024 * 1024;

fn invalid(reason: &'static str, field: &str, description: impl Into<String>) -> ApiError {
    ApiError::invalid_field(reason, field, description)
}

fn stream_error(status: tonic::Status) -> ApiError {
    ApiError::Unavailable {
        message: format!("the upload stream broke: {}", status.message()),
    }
}

pub fn validate_file_name(name: &str) -> Result<String, ApiError> {
    let field = "header.file_name";
    let name = name.trim();
    if name.is_empty() || name == "." || name == ".." {
        return Err(invalid(
            "FILE_NAME_INVALID",
            field,
            "a file name is required",
        ));
    }
    if name.len() > 255 {
        return Err(invalid("FILE_NAME_INVALID", field, "longer than 255 bytes"));
    }
    if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err(invalid(
            "FILE_NAME_INVALID",
            field,
            "a base name only: no directories, no control characters",
        ));
    }
    Ok(name.to_string())
}

fn validate_sha256(text: &str) -> Result<String, ApiError> {
    let lower = text.trim().to_ascii_lowercase();
    if lower.len() != 64 || !lower.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid(
            "SHA256_INVALID",
            "header.declared_sha256",
            "64 hexadecimal characters expected",
        ));
    }
    Ok(lower)
}

/// How many received chunks may wait for the part writer: the memory one upload holds
/// (at most this many times the maximum chunk size).
const WRITER_QUEUE: usize = 4;

/// The first bytes of an upload kept for the format check.
pub(crate) const HEAD_BYTES: usize = 64 * 1024;

/// What the part writer saw: the SHA-256 of the whole part file (bytes already on disk
/// when a resumed upload started, then every chunk), its first bytes and its size.
pub(crate) struct Written {
    sha256: String,
    head: Vec<u8>,
    size: u64,
}

/// How an upload starts: the case already holds the content, or bytes are to come.
pub(crate) enum Begun {
    Present(pb::UploadResult),
    Receiving {
        upload: UploadRow,
        /// Bytes its part file holds (a resumed upload's).
        on_disk: u64,
        format: Format,
    },
}

/// Writes an upload's chunks to its part file and hashes them, on two blocking threads,
/// so receiving, writing and hashing overlap and the file is not read back to be
/// verified. A resumed upload's bytes already on disk are hashed first.
struct PartWriter {
    to_file: tokio::sync::mpsc::Sender<std::sync::Arc<Vec<u8>>>,
    to_hash: tokio::sync::mpsc::Sender<std::sync::Arc<Vec<u8>>>,
    /// Bytes in the part file so far (what a resume starts from).
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    writer: tokio::task::JoinHandle<std::io::Result<u64>>,
    hasher: tokio::task::JoinHandle<std::io::Result<(String, Vec<u8>)>>,
}

impl PartWriter {
    /// Starts the threads for the part file at `path`, which holds `on_disk` bytes.
    fn start(path: PathBuf, on_disk: u64) -> PartWriter {
        use std::sync::atomic::Ordering;
        let (to_file, mut file_chunks) =
            tokio::sync::mpsc::channel::<std::sync::Arc<Vec<u8>>>(WRITER_QUEUE);
        let (to_hash, mut hash_chunks) =
            tokio::sync::mpsc::channel::<std::sync::Arc<Vec<u8>>>(WRITER_QUEUE);
        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(on_disk));
        let counter = written.clone();
        let file_path = path.clone();
        let writer = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().append(true).open(&file_path)?;
            let mut size = on_disk;
            while let Some(chunk) = file_chunks.blocking_recv() {
                file.write_all(&chunk)?;
                size += chunk.len() as u64;
                counter.store(size, Ordering::Release);
            }
            file.sync_all()?;
            Ok(size)
        });
        let hasher = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            let mut head = Vec::new();
            let mut take = |bytes: &[u8], hasher: &mut Sha256| {
                if head.len() < HEAD_BYTES {
                    let room = (HEAD_BYTES - head.len()).min(bytes.len());
                    head.extend_from_slice(&bytes[..room]);
                }
                hasher.update(bytes);
            };
            // Only the bytes there before this stream: the writer appends meanwhile.
            let mut existing = std::fs::File::open(&path)?.take(on_disk);
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                let read = existing.read(&mut buf)?;
                if read == 0 {
                    break;
                }
                take(&buf[..read], &mut hasher);
            }
            drop((existing, buf));
            while let Some(chunk) = hash_chunks.blocking_recv() {
                take(&chunk, &mut hasher);
            }
            Ok((hex::encode(hasher.finalize()), head))
        });
        PartWriter {
            to_file,
            to_hash,
            written,
            writer,
            hasher,
        }
    }

    fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Hands one chunk to the threads (waits while a queue is full). `Err`: a thread
    /// stopped (its error is what [`PartWriter::finish`] returns).
    async fn write(&self, chunk: Vec<u8>) -> Result<(), ()> {
        let chunk = std::sync::Arc::new(chunk);
        self.to_hash.send(chunk.clone()).await.map_err(|_| ())?;
        self.to_file.send(chunk).await.map_err(|_| ())
    }

    /// Waits until every chunk handed over is written, synced and hashed.
    async fn finish(self) -> Result<Written, ApiError> {
        drop((self.to_file, self.to_hash));
        let io = |e: std::io::Error| ApiError::io_logged("write upload", &e);
        let size = self
            .writer
            .await
            .map_err(|e| crate::api::internal("upload writer task", e))?
            .map_err(io)?;
        let (sha256, head) = self
            .hasher
            .await
            .map_err(|e| crate::api::internal("upload hash task", e))?
            .map_err(io)?;
        Ok(Written { sha256, head, size })
    }
}

/// The evidence store failed (S3 unreachable, …): retry later, nothing was recorded.
fn blob_error(error: crate::BlobError) -> ApiError {
    tracing::warn!(%error, "evidence store failed");
    ApiError::Unavailable {
        message: format!("cannot store the evidence now ({error}); retry the upload"),
    }
}

fn extension(format: Format) -> &'static str {
    match format {
        Format::Evtx => "evtx",
        Format::Json => "json",
        Format::Jsonl => "jsonl",
        Format::Csv => "csv",
        Format::Zip => "zip",
    }
}

pub fn refusal_code(reason: &str) -> &'static str {
    match reason {
        "unsafe_path" => "PATH_TRAVERSAL",
        "link" => "LINK_MEMBER",
        "encrypted" => "ENCRYPTED_MEMBER",
        "nested_archive" => "NESTED_ARCHIVE",
        "unsupported_format" => "UNSUPPORTED_FORMAT",
        "compression_ratio" => "COMPRESSION_RATIO_EXCEEDED",
        "too_large" => "MEMBER_TOO_LARGE",
        "size_mismatch" => "SIZE_MISMATCH",
        _ => "UNREADABLE_MEMBER",
    }
}

impl IngestApi {
    pub(crate) async fn handle_upload(
        &self,
        mut stream: Streaming<pb::UploadChunk>,
        uploader: &Uploader,
    ) -> Result<pb::UploadResult, ApiError> {
        let first = stream
            .message()
            .await
            .map_err(stream_error)?
            .ok_or_else(|| invalid("UPLOAD_EMPTY", "header", "the stream carried no message"))?;
        let Some(pb::upload_chunk::Payload::Header(header)) = first.payload else {
            return Err(invalid(
                "UPLOAD_HEADER_MISSING",
                "header",
                "the first message must be the header",
            ));
        };
        let (upload, mut offset, format) = match self.begin(&header, "header.", uploader).await? {
            Begun::Present(result) => return Ok(result),
            Begun::Receiving {
                upload,
                on_disk,
                format,
            } => (upload, on_disk, format),
        };
        let _active = self.active_uploads.claim(&upload.id).ok_or_else(|| {
            ApiError::failed_precondition(
                "UPLOAD_IN_PROGRESS",
                format!("upload {} is being received on another stream", upload.id),
            )
        })?;
        let declared_size = u64::try_from(upload.declared_size).unwrap_or_default();
        let part = self.part_path(&upload.id);
        let writer = PartWriter::start(part.clone(), offset);
        let counter = writer.written.clone();
        let received = self
            .receive_chunks(&mut stream, &writer, &upload, declared_size, &mut offset)
            .await;
        // Whatever ended the stream, what was received is written before answering, so
        // the offset a client resumes from is on disk.
        let finished = writer.finish().await;
        let written = counter.load(std::sync::atomic::Ordering::Acquire);
        self.repo
            .set_upload_progress(&upload.id, written as i64)
            .await
            .map_err(crate::api::db_error)?;
        received?;
        let written = finished?;
        if offset < declared_size {
            return Err(ApiError::FailedPrecondition {
                reason: "UPLOAD_INCOMPLETE",
                message: format!(
                    "received {offset} of {declared_size} bytes; resume upload {} from offset {offset}",
                    upload.id
                ),
            });
        }
        self.complete(&upload, format, written).await
    }

    /// Checks an upload's header (`prefix`: where its fields are in the request) and
    /// starts or resumes it: the upload and the bytes its part file holds — or the case's
    /// file with this content, when it already has it.
    pub(crate) async fn begin(
        &self,
        header: &pb::UploadHeader,
        prefix: &str,
        uploader: &Uploader,
    ) -> Result<Begun, ApiError> {
        let field = |name: &str| format!("{prefix}{name}");
        let case_id = crate::api::case_id(header.case_id.as_ref(), &field("case_id"))?;
        let name = validate_file_name(&header.file_name)?;
        let format = Format::from_file_name(&name).ok_or_else(|| {
            invalid(
                "EXTENSION_NOT_ALLOWED",
                &field("file_name"),
                format!(
                    "{name:?}: allowed extensions are .evtx, .json, .jsonl, .ndjson, .csv, .zip"
                ),
            )
        })?;
        let settings = &self.settings;
        if header.declared_size_bytes > settings.max_upload_bytes {
            return Err(invalid(
                "UPLOAD_TOO_LARGE",
                &field("declared_size_bytes"),
                format!(
                    "{} bytes is above the maximum of {} bytes",
                    header.declared_size_bytes, settings.max_upload_bytes
                ),
            ));
        }
        let declared_sha = validate_sha256(&header.declared_sha256)?;
        let declared_size = header.declared_size_bytes;
        let timestamp_field = header
            .timestamp_field
            .clone()
            .filter(|f| !f.trim().is_empty());
        self.require_open_case(&case_id, "adding evidence").await?;

        if let Some(existing) = self
            .repo
            .file_by_sha(&case_id, &declared_sha)
            .await
            .map_err(crate::api::db_error)?
        {
            return Ok(Begun::Present(self.already_present(&existing)));
        }

        let (upload, on_disk) = match header.resume_upload_id.as_ref().map(|id| id.value.clone()) {
            Some(upload_id) => {
                let upload = self.receiving_upload(&case_id, &upload_id).await?;
                if upload.file_name != name
                    || upload.declared_sha256 != declared_sha
                    || upload.declared_size != declared_size as i64
                {
                    return Err(ApiError::failed_precondition(
                        "UPLOAD_HEADER_MISMATCH",
                        "a resumed upload must repeat the original file name, size and SHA-256",
                    ));
                }
                let on_disk = tokio::fs::metadata(self.part_path(&upload.id))
                    .await
                    .map(|m| m.len())
                    .unwrap_or(0);
                (upload, on_disk)
            }
            None => {
                let now = casescope_db::now_micros();
                let upload = UploadRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    case_id: case_id.clone(),
                    file_name: name.clone(),
                    declared_size: i64::try_from(declared_size).unwrap_or(i64::MAX),
                    declared_sha256: declared_sha.clone(),
                    timestamp_field: timestamp_field.clone(),
                    state: "receiving".into(),
                    bytes_received: 0,
                    file_id: None,
                    error: None,
                    created_at: now,
                    updated_at: now,
                    uploaded_by: uploader.id.clone(),
                    uploaded_by_name: uploader.name.clone(),
                };
                tokio::fs::create_dir_all(settings.uploads_dir())
                    .await
                    .map_err(|e| ApiError::io_logged("create uploads dir", &e))?;
                tokio::fs::File::create(self.part_path(&upload.id))
                    .await
                    .map_err(|e| ApiError::io_logged("create partial upload", &e))?;
                self.repo
                    .insert_upload(&upload)
                    .await
                    .map_err(crate::api::db_error)?;
                (upload, 0)
            }
        };
        Ok(Begun::Receiving {
            upload,
            on_disk,
            format,
        })
    }

    /// The upload `upload_id` of the case, still receiving.
    pub(crate) async fn receiving_upload(
        &self,
        case_id: &str,
        upload_id: &str,
    ) -> Result<UploadRow, ApiError> {
        let upload = self
            .repo
            .upload(upload_id)
            .await
            .map_err(crate::api::db_error)?
            .filter(|u| u.case_id == case_id)
            .ok_or_else(|| {
                ApiError::not_found(
                    "UPLOAD_NOT_FOUND",
                    format!("upload {upload_id} does not exist in case {case_id}"),
                )
            })?;
        if upload.state != "receiving" {
            return Err(ApiError::failed_precondition(
                "UPLOAD_NOT_RESUMABLE",
                format!("upload {upload_id} is {}; start a new upload", upload.state),
            ));
        }
        Ok(upload)
    }

    /// Ends an upload whose part file holds all its bytes (`written`): verified against
    /// the declared SHA-256 and format, placed in the case's evidence under its hash,
    /// registered (a ZIP's members too) and queued for ingest.
    pub(crate) async fn complete(
        &self,
        upload: &UploadRow,
        format: Format,
        written: Written,
    ) -> Result<pb::UploadResult, ApiError> {
        let settings = &self.settings;
        let case_id = upload.case_id.clone();
        let name = upload.file_name.clone();
        let declared_sha = upload.declared_sha256.clone();
        let declared_size = u64::try_from(upload.declared_size).unwrap_or_default();
        let timestamp_field = upload.timestamp_field.clone();
        let offset = written.size;
        let part = self.part_path(&upload.id);
        let Written { sha256, head, size } = written;
        if sha256 != declared_sha || size != declared_size {
            let message =
                format!("received content has SHA-256 {sha256}, not the declared {declared_sha}");
            self.fail_upload(upload, &message, offset).await;
            return Err(ApiError::DataLoss {
                reason: "UPLOAD_SHA256_MISMATCH",
                message,
            });
        }
        if let Err(error) = sniff_format(&name, &head) {
            self.fail_upload(upload, &error.to_string(), offset).await;
            return Err(invalid("CONTENT_MISMATCH", "data", error.to_string()));
        }

        let evidence_dir = settings.evidence_dir(&case_id);
        tokio::fs::create_dir_all(&evidence_dir)
            .await
            .map_err(|e| ApiError::io_logged("create evidence dir", &e))?;
        let blob = evidence_dir.join(format!("{sha256}.{}", extension(format)));
        tokio::fs::rename(&part, &blob)
            .await
            .map_err(|e| ApiError::io_logged("place evidence", &e))?;
        // Reachable by every replica before any job names it (a ZIP is read below).
        settings
            .blobs
            .place(&blob, format == Format::Zip)
            .await
            .map_err(blob_error)?;

        let new_file = NewFile {
            case_id: case_id.clone(),
            name: name.clone(),
            sha256: sha256.clone(),
            size: size as i64,
            format,
            blob: blob.clone(),
            timestamp_field: timestamp_field.clone(),
            parent_id: None,
            uploaded_by: upload.uploaded_by.clone(),
            uploaded_by_name: upload.uploaded_by_name.clone(),
        };
        let (file_row, already_present) = self.create_file(new_file).await?;
        let mut result = pb::UploadResult {
            upload_id: Some(UploadId {
                value: upload.id.clone(),
            }),
            case_id: Some(CaseId {
                value: case_id.clone(),
            }),
            file_id: Some(FileId {
                value: file_row.id.clone(),
            }),
            sha256,
            size_bytes: size,
            format: format_of(format.as_str()) as i32,
            already_present,
            members: Vec::new(),
            refused_members: Vec::new(),
        };
        if format == Format::Zip {
            if !already_present {
                self.expand_archive(&file_row, upload, timestamp_field, &mut result)
                    .await?;
            }
            settings.blobs.drop_local(&blob).await;
        }
        self.repo
            .finish_upload(
                &upload.id,
                "complete",
                Some(&file_row.id),
                None,
                offset as i64,
            )
            .await
            .map_err(crate::api::db_error)?;
        tracing::info!(case_id = %case_id, file_id = %file_row.id, size, format = format.as_str(), "evidence uploaded");
        Ok(result)
    }

    /// Receives the data messages of an upload stream into `writer`, checking each
    /// chunk's size and offset; `offset` ends at the bytes received.
    async fn receive_chunks(
        &self,
        stream: &mut Streaming<pb::UploadChunk>,
        writer: &PartWriter,
        upload: &UploadRow,
        declared_size: u64,
        offset: &mut u64,
    ) -> Result<(), ApiError> {
        let max_chunk_bytes = self.settings.max_chunk_bytes;
        let mut progress_at = *offset;
        while let Some(message) = stream.message().await.map_err(stream_error)? {
            let data = match message.payload {
                Some(pb::upload_chunk::Payload::Data(data)) => data,
                _ => {
                    return Err(invalid(
                        "UPLOAD_HEADER_REPEATED",
                        "header",
                        "the header may only be sent first",
                    ));
                }
            };
            if data.data.len() > max_chunk_bytes {
                return Err(invalid(
                    "CHUNK_TOO_LARGE",
                    "data.data",
                    format!(
                        "{} bytes; at most {max_chunk_bytes} per chunk",
                        data.data.len(),
                    ),
                ));
            }
            if data.offset != *offset {
                return Err(ApiError::FailedPrecondition {
                    reason: "UPLOAD_OFFSET_MISMATCH",
                    message: format!(
                        "chunk offset {} but the server holds {offset} bytes of upload {}; resume from {offset}",
                        data.offset, upload.id
                    ),
                });
            }
            if *offset + data.data.len() as u64 > declared_size {
                return Err(invalid(
                    "UPLOAD_TOO_LONG",
                    "data",
                    format!("more bytes than the declared {declared_size}"),
                ));
            }
            let length = data.data.len() as u64;
            if writer.write(data.data).await.is_err() {
                // The writer stopped on an I/O error, which finishing it reports.
                return Ok(());
            }
            *offset += length;
            let written = writer.written();
            if written >= progress_at + PROGRESS_EVERY {
                progress_at = written;
                self.repo
                    .set_upload_progress(&upload.id, written as i64)
                    .await
                    .map_err(crate::api::db_error)?;
            }
        }
        Ok(())
    }

    fn part_path(&self, upload_id: &str) -> PathBuf {
        self.settings
            .uploads_dir()
            .join(format!("{upload_id}.part"))
    }

    async fn fail_upload(&self, upload: &UploadRow, error: &str, bytes: u64) {
        let _ = tokio::fs::remove_file(self.part_path(&upload.id)).await;
        if let Err(db) = self
            .repo
            .finish_upload(&upload.id, "failed", None, Some(error), bytes as i64)
            .await
        {
            tracing::warn!(error = %db, "cannot record the failed upload");
        }
    }

    fn already_present(&self, existing: &FileRow) -> pb::UploadResult {
        pb::UploadResult {
            upload_id: None,
            case_id: Some(CaseId {
                value: existing.case_id.clone(),
            }),
            file_id: Some(FileId {
                value: existing.id.clone(),
            }),
            sha256: existing.sha256.clone(),
            size_bytes: u64::try_from(existing.size_bytes).unwrap_or_default(),
            format: format_of(&existing.format) as i32,
            already_present: true,
            members: Vec::new(),
            refused_members: Vec::new(),
        }
    }

    /// Extracts a ZIP's members into files of the case; the archive itself is kept as a
    /// container record.
    async fn expand_archive(
        &self,
        archive_row: &FileRow,
        upload: &UploadRow,
        timestamp_field: Option<String>,
        result: &mut pb::UploadResult,
    ) -> Result<(), ApiError> {
        let staging = self
            .settings
            .evidence_dir(&archive_row.case_id)
            .join(format!("extract-{}", upload.id));
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(|e| ApiError::io_logged("create extraction dir", &e))?;
        let zip_path = self.settings.blob_file(&archive_row.blob_path);
        let limits = self.settings.archive_limits.clone();
        let destination = staging.clone();
        let extraction: Result<Extraction, _> =
            tokio::task::spawn_blocking(move || archive::extract(&zip_path, &destination, &limits))
                .await
                .map_err(|e| crate::api::internal("extract task", e))?;
        let extraction = match extraction {
            Ok(extraction) => extraction,
            Err(error) => {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                return Err(invalid("ARCHIVE_REFUSED", "data", error.to_string()));
            }
        };
        for member in extraction.members {
            let blob = self
                .settings
                .evidence_dir(&archive_row.case_id)
                .join(format!("{}.{}", member.sha256, extension(member.format)));
            let already = self
                .repo
                .file_by_sha(&archive_row.case_id, &member.sha256)
                .await
                .map_err(crate::api::db_error)?;
            let (row, already_present) = match already {
                Some(row) => (row, true),
                None => {
                    tokio::fs::rename(&member.path, &blob)
                        .await
                        .map_err(|e| ApiError::io_logged("place member", &e))?;
                    self.settings
                        .blobs
                        .place(&blob, false)
                        .await
                        .map_err(blob_error)?;
                    let base = member
                        .name
                        .rsplit(['/', '\\'])
                        .next()
                        .unwrap_or("member")
                        .to_string();
                    self.create_file(NewFile {
                        case_id: archive_row.case_id.clone(),
                        name: validate_file_name(&base)
                            .unwrap_or_else(|_| format!("member.{}", extension(member.format))),
                        sha256: member.sha256.clone(),
                        size: member.size as i64,
                        format: member.format,
                        blob,
                        timestamp_field: timestamp_field.clone(),
                        parent_id: Some(archive_row.id.clone()),
                        uploaded_by: archive_row.uploaded_by.clone(),
                        uploaded_by_name: archive_row.uploaded_by_name.clone(),
                    })
                    .await?
                }
            };
            result.members.push(pb::ArchiveMember {
                file_id: Some(FileId { value: row.id }),
                archive_path: member.name,
                sha256: member.sha256,
                size_bytes: member.size,
                format: format_of(member.format.as_str()) as i32,
                already_present,
            });
        }
        for refused in extraction.refused {
            result.refused_members.push(pb::ArchiveMemberRefusal {
                archive_path: refused.name,
                reason: refusal_code(refused.reason).to_string(),
                detail: refused.detail,
            });
        }
        let _ = tokio::fs::remove_dir_all(&staging).await;
        Ok(())
    }

    /// Records a new evidence file and queues its ingest job (one transaction), then
    /// registers it with the cases service. Returns the stored row and whether the case
    /// already had this content.
    pub(crate) async fn create_file(&self, new: NewFile) -> Result<(FileRow, bool), ApiError> {
        let now = casescope_db::now_micros();
        let container = new.format == Format::Zip;
        let row = FileRow {
            id: uuid::Uuid::now_v7().to_string(),
            case_id: new.case_id.clone(),
            name: new.name,
            sha256: new.sha256.clone(),
            size_bytes: new.size,
            format: new.format.as_str().to_string(),
            blob_path: self.settings.stored_blob_path(&new.blob),
            timestamp_field: new.timestamp_field,
            parent_id: new.parent_id,
            stage_status: if container {
                stage::CONTAINER
            } else {
                stage::PENDING
            }
            .to_string(),
            generation: 1,
            attempts: 0,
            records_read: 0,
            events_indexed: 0,
            records_rejected: 0,
            rejects_by_reason: "{}".into(),
            duplicates_skipped: 0,
            error: None,
            registered: false,
            status_sequence: 0,
            status_synced: false,
            created_at: now,
            updated_at: now,
            uploaded_by: new.uploaded_by,
            uploaded_by_name: new.uploaded_by_name,
        };
        let mut tx = self.repo.db().begin().await.map_err(crate::api::db_error)?;
        match self.repo.insert_file(&mut tx, &row).await {
            Ok(()) => {}
            Err(casescope_db::DbError::Conflict(_)) => {
                drop(tx);
                let existing = self
                    .repo
                    .file_by_sha(&new.case_id, &new.sha256)
                    .await
                    .map_err(crate::api::db_error)?
                    .ok_or_else(|| crate::api::internal("file vanished after conflict", &row.id))?;
                return Ok((existing, true));
            }
            Err(error) => return Err(crate::api::db_error(error)),
        }
        if !container {
            crate::stage::enqueue_job(&self.outbox, &mut tx, &row, "upload", None)
                .await
                .map_err(|e| crate::api::internal("queue ingest job", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| crate::api::db_error(e.into()))?;
        self.outbox.nudge();
        crate::stage::sync_status(&self.repo, &self.cases, &row).await;
        Ok((row, false))
    }
}

pub(crate) struct NewFile {
    pub case_id: String,
    pub name: String,
    pub sha256: String,
    pub size: i64,
    pub format: Format,
    pub blob: PathBuf,
    pub timestamp_field: Option<String>,
    pub parent_id: Option<String>,
    pub uploaded_by: String,
    pub uploaded_by_name: String,
}
