//! Importing IOCs from a streamed file (CSV, plain list, STIX 2.1 bundle, MISP event)
//! and exporting them in the same formats.
//!
//! An import is all or nothing: the stream is parsed on the blocking pool as it arrives
//! (one record in memory at a time in the parser; the results, bounded by the record
//! limit, are kept), and only an input read to its end is written, in one transaction.
//! An input that cannot be read on (malformed JSON, no CSV header) is refused whole with
//! the place it went wrong, and nothing is created.

use super::convert::*;
use super::{ExportStream, IocApi, Via, db_error};
use crate::repo::{IocRow, Owner};
use casescope_ioc::import::{self, Entry, Format, Item, Options, Seen};
use casescope_ioc::{IocType, Tlp};
use casescope_proto::error::ApiError;
use casescope_proto::ioc::v1 as pb;
use casescope_proto::paging::MAX_PAGE_SIZE;
use std::io::Write;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

/// Chunks waiting for the parser.
const QUEUED_CHUNKS: usize = 8;
/// IOCs read per export page, and bytes per exported chunk.
const EXPORT_PAGE: i64 = 1000;
const EXPORT_CHUNK_BYTES: usize = 256 * 1024;

/// A `Read` over chunks sent from the async side.
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<bytes_chunk::Chunk>,
    current: Vec<u8>,
    at: usize,
}

mod bytes_chunk {
    pub type Chunk = Vec<u8>;
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.current = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn format_of(value: i32) -> Option<Format> {
    match pb::IocImportFormat::try_from(value).ok()? {
        pb::IocImportFormat::Csv => Some(Format::Csv),
        pb::IocImportFormat::Stix2Bundle => Some(Format::Stix),
        pb::IocImportFormat::TextLines => Some(Format::Text),
        pb::IocImportFormat::MispEvent => Some(Format::Misp),
        pb::IocImportFormat::Unspecified => None,
    }
}

/// What parsing an import gave.
struct Parsed {
    entries: Vec<Entry>,
    other_objects: u64,
}

impl IocApi {
    /// `ImportIocsFile`: the header and the whole file in one request, imported exactly
    /// as the stream of them would be.
    pub(super) async fn import_file(
        &self,
        via: Via,
        request: pb::ImportIocsFileRequest,
        author: &str,
    ) -> Result<pb::ImportIocsResponse, ApiError> {
        let header = request.header.ok_or_else(|| {
            ApiError::invalid_field("IMPORT_HEADER_MISSING", "header", "the header is required")
        })?;
        if request.data.len() > crate::MAX_FILE_IMPORT_BYTES {
            return Err(ApiError::invalid_field(
                "IMPORT_TOO_LARGE",
                "data",
                format!(
                    "{} bytes; one request takes at most {} (stream larger files with ImportIocs, e.g. `casescope ioc import`)",
                    request.data.len(),
                    crate::MAX_FILE_IMPORT_BYTES
                ),
            ));
        }
        if header.size_bytes != request.data.len() as u64 {
            return Err(ApiError::invalid_field(
                "IMPORT_SIZE_MISMATCH",
                "header.size_bytes",
                format!(
                    "{} declared, {} sent",
                    header.size_bytes,
                    request.data.len()
                ),
            ));
        }
        let chunk = self.settings.max_import_chunk_bytes.max(1);
        let mut messages = vec![Ok(pb::ImportIocsChunk {
            part: Some(pb::import_iocs_chunk::Part::Header(header)),
        })];
        messages.extend(request.data.chunks(chunk).map(|data| {
            Ok(pb::ImportIocsChunk {
                part: Some(pb::import_iocs_chunk::Part::Data(data.to_vec())),
            })
        }));
        self.import(via, tokio_stream::iter(messages), author).await
    }

    pub(super) async fn import(
        &self,
        via: Via,
        stream: impl Stream<Item = Result<pb::ImportIocsChunk, Status>> + Send,
        author: &str,
    ) -> Result<pb::ImportIocsResponse, ApiError> {
        let mut stream = std::pin::pin!(stream);
        let first = stream.next().await.transpose().map_err(|status| {
            ApiError::invalid_field("IMPORT_STREAM", "stream", status.message().to_string())
        })?;
        let header = match first.and_then(|m| m.part) {
            Some(pb::import_iocs_chunk::Part::Header(header)) => header,
            _ => {
                return Err(ApiError::invalid_field(
                    "IMPORT_HEADER_MISSING",
                    "header",
                    "the first message must be the header",
                ));
            }
        };
        let owner = self
            .owner(via, header.case_id.as_ref(), &header.list_id, "header.")
            .await?;
        let format = format_of(header.format).ok_or_else(|| {
            ApiError::invalid_field(
                "IMPORT_FORMAT_INVALID",
                "header.format",
                "CSV, STIX2_BUNDLE, TEXT_LINES or MISP_EVENT",
            )
        })?;
        let max_bytes = self.settings.max_import_bytes;
        if header.size_bytes > max_bytes {
            return Err(ApiError::invalid_field(
                "IMPORT_TOO_LARGE",
                "header.size_bytes",
                format!(
                    "{} bytes; at most {max_bytes} are accepted",
                    header.size_bytes
                ),
            ));
        }
        let options = Options {
            misp_all_attributes: header.misp_all_attributes,
        };
        let max_records = self.settings.max_import_records;
        let (sender, receiver) = tokio::sync::mpsc::channel(QUEUED_CHUNKS);
        let parser = tokio::task::spawn_blocking(move || {
            let reader = ChunkReader {
                chunks: receiver,
                current: Vec::new(),
                at: 0,
            };
            let mut entries = Vec::new();
            let mut over = false;
            let summary = import::read(format, reader, &options, &mut |entry| {
                if entries.len() as u64 >= max_records {
                    over = true;
                    return ControlFlow::Break(());
                }
                entries.push(entry);
                ControlFlow::Continue(())
            });
            (summary, entries, over)
        });
        let max_chunk = self.settings.max_import_chunk_bytes;
        let mut received = 0u64;
        let mut stream_error: Option<ApiError> = None;
        loop {
            let message = match stream.next().await {
                Some(Ok(message)) => message,
                None => break,
                Some(Err(status)) => {
                    stream_error = Some(ApiError::invalid_field(
                        "IMPORT_STREAM",
                        "stream",
                        status.message().to_string(),
                    ));
                    break;
                }
            };
            let Some(pb::import_iocs_chunk::Part::Data(data)) = message.part else {
                stream_error = Some(ApiError::invalid_field(
                    "IMPORT_HEADER_REPEATED",
                    "header",
                    "only the first message is a header",
                ));
                break;
            };
            if data.len() > max_chunk {
                stream_error = Some(ApiError::invalid_field(
                    "IMPORT_CHUNK_TOO_LARGE",
                    "data",
                    format!("a chunk of {} bytes; at most {max_chunk}", data.len()),
                ));
                break;
            }
            received += data.len() as u64;
            if received > max_bytes {
                stream_error = Some(ApiError::invalid_field(
                    "IMPORT_TOO_LARGE",
                    "data",
                    format!("more than {max_bytes} bytes; split the file"),
                ));
                break;
            }
            if sender.send(data).await.is_err() {
                // The parser stopped (an unreadable input, or the record limit).
                break;
            }
        }
        drop(sender);
        let (summary, entries, over) = parser
            .await
            .map_err(|e| ApiError::internal_logged("IOC import parser", e))?;
        if let Some(error) = stream_error {
            return Err(error);
        }
        if over {
            return Err(ApiError::invalid_field(
                "IMPORT_TOO_MANY_RECORDS",
                "data",
                format!("more than {max_records} records; nothing was imported (split the file)"),
            ));
        }
        let summary = summary.map_err(|error| {
            ApiError::invalid_field(
                "IMPORT_UNREADABLE",
                "data",
                format!("{}; nothing was imported", error.message),
            )
        })?;
        let parsed = Parsed {
            entries,
            other_objects: summary.other_objects,
        };
        let source = match header.default_source.trim() {
            "" if header.file_name.trim().is_empty() => "import".to_string(),
            "" => format!("import:{}", clean_text(header.file_name.trim(), 200)),
            s => clean_text(s, MAX_SOURCE_CHARS),
        };
        let defaults = Defaults {
            source,
            tlp: tlp_of(header.default_tlp).unwrap_or(Tlp::Amber),
            confidence: header.default_confidence.unwrap_or(50).min(100),
        };
        self.write_import(&owner, parsed, &defaults, header.dry_run, author)
            .await
    }

    async fn write_import(
        &self,
        owner: &Owner,
        parsed: Parsed,
        defaults: &Defaults,
        dry_run: bool,
        author: &str,
    ) -> Result<pb::ImportIocsResponse, ApiError> {
        let now = casescope_db::now_micros();
        let case = &owner.key();
        let mut seen = Seen::default();
        let mut response = pb::ImportIocsResponse {
            records_read: parsed.entries.len() as u64,
            other_objects: parsed.other_objects,
            ..Default::default()
        };
        let mut rows = Vec::new();
        for entry in parsed.entries {
            match entry.item {
                Item::Ioc(record) => {
                    let kind = record.kind();
                    if !seen.first(kind, &record.normalized) {
                        response.duplicates += 1;
                        continue;
                    }
                    rows.push(row_of(case, &record, kind, defaults, author, now));
                }
                Item::Refused { value, reason } => {
                    response.rejected_count += 1;
                    if response.rejected.len() < MAX_PAGE_SIZE as usize {
                        response.rejected.push(pb::IocRejection {
                            locator: entry.locator,
                            value,
                            reason,
                        });
                    }
                }
            }
        }
        let existing = self.repo.count_iocs(case).await.map_err(db_error)? as u64;
        if existing + rows.len() as u64 > self.settings.max_iocs_per_case {
            return Err(ApiError::FailedPrecondition {
                reason: "IOC_LIMIT",
                message: format!(
                    "the {} holds {existing} IOCs and the import brings up to {} more; one case or list holds at most {} (nothing was imported)",
                    owner.describe(),
                    rows.len(),
                    self.settings.max_iocs_per_case
                ),
            });
        }
        if dry_run {
            for row in &rows {
                if self
                    .repo
                    .ioc_by_value(case, &row.ioc_type, &row.normalized)
                    .await
                    .map_err(db_error)?
                    .is_some()
                {
                    response.duplicates += 1;
                } else {
                    response.created += 1;
                }
            }
            return Ok(response);
        }
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        let mut hunted = Vec::new();
        for row in &rows {
            if self.repo.insert_ioc(&mut tx, row).await.map_err(db_error)? {
                response.created += 1;
                if row.hunted(now) {
                    hunted.push(row.id.clone());
                }
            } else {
                response.duplicates += 1;
            }
        }
        if !hunted.is_empty() {
            self.changed(&mut tx, owner, &hunted).await?;
        }
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        if !hunted.is_empty() {
            self.wake.notify_one();
        }
        Ok(response)
    }

    pub(super) async fn export(
        &self,
        via: Via,
        request: pb::ExportIocsRequest,
    ) -> Result<ExportStream, ApiError> {
        let owner = self
            .owner(via, request.case_id.as_ref(), &request.list_id, "")
            .await?;
        let case = owner.key();
        let format = match format_of(request.format) {
            Some(Format::Text) | None => {
                return Err(ApiError::invalid_field(
                    "EXPORT_FORMAT_INVALID",
                    "format",
                    "CSV, STIX2_BUNDLE or MISP_EVENT",
                ));
            }
            Some(format) => format,
        };
        let filter = super::iocs::ioc_filter(&case, &request.ioc_types, request.enabled, "", "")?;
        let repo = self.repo.clone();
        let (sender, receiver) =
            tokio::sync::mpsc::channel::<Result<pb::ExportIocsChunk, Status>>(4);
        tokio::spawn(async move {
            let buffer = Shared::default();
            let outcome: Result<(), String> = async {
                let now = casescope_db::now_micros();
                let mut writer =
                    Writer::open(format, buffer.clone(), &owner, now).map_err(|e| e.to_string())?;
                let mut after = String::new();
                loop {
                    let page = repo
                        .iocs_page(&filter, &after, EXPORT_PAGE)
                        .await
                        .map_err(|e| e.to_string())?;
                    let Some(last) = page.last() else { break };
                    after = last.id.clone();
                    for row in &page {
                        writer.write(row).map_err(|e| e.to_string())?;
                    }
                    if buffer.len() >= EXPORT_CHUNK_BYTES
                        && sender
                            .send(Ok(pb::ExportIocsChunk {
                                data: buffer.take(),
                            }))
                            .await
                            .is_err()
                    {
                        return Ok(()); // the caller went away
                    }
                }
                writer.finish().map_err(|e| e.to_string())?;
                Ok(())
            }
            .await;
            match outcome {
                Ok(()) => {
                    let rest = buffer.take();
                    if !rest.is_empty() {
                        let _ = sender.send(Ok(pb::ExportIocsChunk { data: rest })).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "IOC export failed");
                    let _ = sender
                        .send(Err(Status::unavailable(format!(
                            "the export stopped: {error}"
                        ))))
                        .await;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }
}

/// Values a record without its own gets.
struct Defaults {
    source: String,
    tlp: Tlp,
    confidence: u32,
}

fn row_of(
    case: &str,
    record: &import::Record,
    kind: IocType,
    defaults: &Defaults,
    author: &str,
    now: i64,
) -> IocRow {
    let labels: Vec<String> = record
        .labels
        .iter()
        .take(MAX_LABELS)
        .map(|l| clean_text(l, MAX_LABEL_CHARS))
        .collect();
    IocRow {
        id: uuid::Uuid::now_v7().to_string(),
        case_id: case.to_string(),
        ioc_type: kind.name().to_string(),
        value: record.value.clone(),
        normalized: record.normalized.clone(),
        description: clean_text(&record.description, MAX_DESCRIPTION_CHARS),
        source: record
            .source
            .as_deref()
            .map(|s| clean_text(s, MAX_SOURCE_CHARS))
            .unwrap_or_else(|| defaults.source.clone()),
        tlp: record.tlp.unwrap_or(defaults.tlp).name().to_string(),
        confidence: i64::from(record.confidence.unwrap_or(defaults.confidence)),
        enabled: record.enabled.unwrap_or(true),
        labels: serde_json::to_string(&labels).unwrap_or_else(|_| "[]".into()),
        first_seen: record.first_seen,
        last_seen: record.last_seen,
        expires_at: record.expires_at,
        enrichment_json: String::new(),
        enriched_at: None,
        created_by: author.to_string(),
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// An export's output buffer, drained into chunks between pages.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Write for Shared {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Writer {
    Csv(Box<casescope_ioc::export::CsvWriter<Shared>>),
    Stix(casescope_ioc::export::StixWriter<Shared>),
    Misp(casescope_ioc::export::MispWriter<Shared>),
}

impl Writer {
    fn open(format: Format, out: Shared, owner: &Owner, now: i64) -> std::io::Result<Writer> {
        let case = owner.key();
        Ok(match format {
            Format::Csv | Format::Text => {
                Writer::Csv(Box::new(casescope_ioc::export::CsvWriter::new(out)?))
            }
            Format::Stix => Writer::Stix(casescope_ioc::export::StixWriter::new(
                out,
                &format!("{case}:{now}"),
                now,
            )?),
            Format::Misp => {
                let date = casescope_proto::time::micros_to_rfc3339(now);
                Writer::Misp(casescope_ioc::export::MispWriter::new(
                    out,
                    &format!("CaseScope {} IOCs", owner.describe()),
                    &format!("{case}:{now}"),
                    date.get(..10).unwrap_or(""),
                )?)
            }
        })
    }

    fn write(&mut self, row: &IocRow) -> std::io::Result<()> {
        let record = record_of(row);
        match self {
            Writer::Csv(w) => w.write(&record),
            Writer::Stix(w) => w.write(&record),
            Writer::Misp(w) => w.write(&record, row.enabled),
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Writer::Csv(w) => w.finish().map(|_| ()),
            Writer::Stix(w) => w.finish().map(|_| ()),
            Writer::Misp(w) => w.finish().map(|_| ()),
        }
    }
}
