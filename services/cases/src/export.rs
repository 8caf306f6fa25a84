//! Exports: a timeline selection as CSV, JSON lines or Timesketch's JSONL import format
//! (tags, star and comments as columns), and a case's annotations as one JSON
//! document. Both stream: a task reads the ingest service's event stream (or the
//! annotation tables) a batch at a time, renders rows into chunks of about
//! [`CHUNK_BYTES`] that end on a row boundary, and hands them to a channel two deep —
//! memory stays bounded whatever the row count, and a slow reader slows the export.

use crate::annotations::store::{self, EventAnnotations};
use crate::service::{CasesApi, db_error};
use crate::sets::SetError;
use crate::timeline::{call, peer_error, position};
use casescope_proto::cases::v1 as pb;
use casescope_proto::common::v1::{CaseId, SortOrder};
use casescope_proto::error::ApiError;
use casescope_proto::ingest::v1 as ingest;
use casescope_query::Annotation;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::pin::Pin;
use tokio::sync::mpsc::Sender;
use tonic::Status;

/// Target size of one chunk of an export.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Events read from the ingest service per batch.
const BATCH: u32 = 2_000;
/// Longest `message` of a Timesketch row.
const MESSAGE_CHARS: usize = 1_000;

pub type ChunkStream = Pin<Box<dyn futures::Stream<Item = Result<pb::ExportChunk, Status>> + Send>>;

const CSV_HEADER: [&str; 14] = [
    "datetime",
    "timestamp_desc",
    "event_id",
    "file_id",
    "source",
    "computer",
    "channel",
    "provider",
    "event_code",
    "record_id",
    "tags",
    "starred",
    "comments",
    "fields",
];

fn rfc3339(event: &ingest::Event) -> String {
    event
        .timestamp
        .as_ref()
        .and_then(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        })
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

fn source_name(source: i32) -> String {
    ingest::EvidenceFormat::try_from(source)
        .map(|f| {
            f.as_str_name()
                .trim_start_matches("EVIDENCE_FORMAT_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

/// What a row says of its time: the record's own time.
fn timestamp_desc(event: &ingest::Event) -> &'static str {
    if event.source == ingest::EvidenceFormat::Evtx as i32 {
        "Event Recorded"
    } else {
        "Event Time"
    }
}

/// One line of text summing the event up (Timesketch's `message`).
fn message(event: &ingest::Event, fields: &Map<String, Value>) -> String {
    let mut text = format!(
        "[{}] {} on {}:",
        event.event_code.map(|c| c.to_string()).unwrap_or_default(),
        event.channel,
        event.computer
    );
    for (key, value) in fields {
        if text.chars().count() >= MESSAGE_CHARS {
            break;
        }
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push(' ');
        text.push_str(key);
        text.push('=');
        text.push_str(&value);
    }
    text.chars().take(MESSAGE_CHARS).collect()
}

/// A JSON lines row.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    datetime: String,
    event_id: &'a str,
    file_id: &'a str,
    source: String,
    computer: &'a str,
    channel: &'a str,
    provider: &'a str,
    event_code: Option<u32>,
    record_id: Option<u64>,
    tags: &'a [String],
    starred: bool,
    comments: Vec<JsonComment<'a>>,
    fields: &'a RawValue,
}

#[derive(serde::Serialize)]
struct JsonComment<'a> {
    author: &'a str,
    body: &'a str,
}

fn empty_object() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("{}".into()).unwrap_or_default())
}

/// Renders one event as a row of `format` into `out`.
fn render(
    format: pb::ExportFormat,
    event: &ingest::Event,
    notes: &EventAnnotations,
    comments: &[(String, String)],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let id = event
        .event_id
        .as_ref()
        .map(|i| i.value.as_str())
        .unwrap_or("");
    let file = event
        .file_id
        .as_ref()
        .map(|i| i.value.as_str())
        .unwrap_or("");
    let comment_texts: Vec<String> = comments
        .iter()
        .map(|(author, body)| format!("{author}: {body}"))
        .collect();
    match format {
        pb::ExportFormat::Csv | pb::ExportFormat::Unspecified => {
            let mut writer = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut *out);
            writer
                .write_record([
                    rfc3339(event).as_str(),
                    timestamp_desc(event),
                    id,
                    file,
                    &source_name(event.source),
                    &event.computer,
                    &event.channel,
                    &event.provider,
                    &event.event_code.map(|c| c.to_string()).unwrap_or_default(),
                    &event.record_id.map(|r| r.to_string()).unwrap_or_default(),
                    &notes.tags.join("; "),
                    if notes.starred { "true" } else { "false" },
                    &comment_texts.join(" | "),
                    &event.fields_json,
                ])
                .map_err(|e| e.to_string())?;
            writer.flush().map_err(|e| e.to_string())?;
        }
        pb::ExportFormat::Jsonl => {
            // The event's fields go out as the ingest service sent them (one JSON
            // object), checked but never rebuilt.
            let fields = serde_json::from_str::<&RawValue>(&event.fields_json)
                .ok()
                .filter(|raw| raw.get().starts_with('{'))
                .unwrap_or_else(|| empty_object());
            let row = JsonRow {
                datetime: rfc3339(event),
                event_id: id,
                file_id: file,
                source: source_name(event.source),
                computer: &event.computer,
                channel: &event.channel,
                provider: &event.provider,
                event_code: event.event_code,
                record_id: event.record_id,
                tags: &notes.tags,
                starred: notes.starred,
                comments: comments
                    .iter()
                    .map(|(author, body)| JsonComment { author, body })
                    .collect(),
                fields,
            };
            serde_json::to_writer(&mut *out, &row).map_err(|e| e.to_string())?;
            out.push(b'\n');
        }
        pb::ExportFormat::Timesketch => {
            let fields: Map<String, Value> =
                serde_json::from_str(&event.fields_json).unwrap_or_default();
            let micros = event
                .timestamp
                .as_ref()
                .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1_000))
                .unwrap_or_default();
            let mut row = Map::new();
            row.insert("message".into(), json!(message(event, &fields)));
            row.insert("datetime".into(), json!(rfc3339(event)));
            row.insert("timestamp".into(), json!(micros));
            row.insert("timestamp_desc".into(), json!(timestamp_desc(event)));
            row.insert("tag".into(), json!(notes.tags));
            row.insert("starred".into(), json!(notes.starred));
            row.insert("comment".into(), json!(comment_texts));
            row.insert("event_id".into(), json!(id));
            row.insert("file_id".into(), json!(file));
            row.insert("computer".into(), json!(event.computer));
            row.insert("channel".into(), json!(event.channel));
            row.insert("event_code".into(), json!(event.event_code));
            for (key, value) in fields {
                // The event's own fields never overwrite the row's.
                let key = if row.contains_key(&key) || key.starts_with("__ts") {
                    format!("field_{key}")
                } else {
                    key
                };
                row.insert(key, value);
            }
            serde_json::to_writer(&mut *out, &Value::Object(row)).map_err(|e| e.to_string())?;
            out.push(b'\n');
        }
    }
    Ok(())
}

/// One rendered batch: the chunks it filled (data, cursor of its last row, rows so
/// far), what is left for the next chunk, the rows so far and the last row's cursor.
struct Rendered {
    full: Vec<(Vec<u8>, String, u64)>,
    rest: Vec<u8>,
    rows: u64,
    cursor: String,
}

/// Renders `events` after what `data` already holds, cutting chunks of about
/// [`CHUNK_BYTES`] at row boundaries.
fn render_batch(
    format: pb::ExportFormat,
    events: &[ingest::Event],
    ids: &[String],
    notes: &HashMap<String, EventAnnotations>,
    comments: &HashMap<String, Vec<(String, String)>>,
    mut data: Vec<u8>,
    mut rows: u64,
) -> Result<Rendered, String> {
    let empty = EventAnnotations::default();
    let mut full = Vec::new();
    let mut cursor = String::new();
    for (event, id) in events.iter().zip(ids) {
        render(
            format,
            event,
            notes.get(id).unwrap_or(&empty),
            comments.get(id).map(Vec::as_slice).unwrap_or_default(),
            &mut data,
        )?;
        rows += 1;
        cursor = position(event).unwrap_or_default();
        if data.len() >= CHUNK_BYTES {
            full.push((std::mem::take(&mut data), cursor.clone(), rows));
        }
    }
    Ok(Rendered {
        full,
        rest: data,
        rows,
        cursor,
    })
}

/// Sends `chunk` (taking its bytes); false when the reader went away.
async fn send(
    sender: &Sender<Result<pb::ExportChunk, Status>>,
    data: &mut Vec<u8>,
    cursor: String,
    rows: u64,
    total: &mut u64,
) -> bool {
    let chunk = pb::ExportChunk {
        data: std::mem::take(data),
        cursor,
        rows,
        total: std::mem::take(total),
    };
    sender.send(Ok(chunk)).await.is_ok()
}

impl CasesApi {
    pub(crate) async fn export_timeline_now(
        &self,
        request: pb::ExportTimelineRequest,
    ) -> Result<ChunkStream, ApiError> {
        let format = pb::ExportFormat::try_from(request.format).map_err(|_| {
            ApiError::invalid_field("FORMAT_INVALID", "format", "csv, jsonl or timesketch")
        })?;
        let format = match format {
            pb::ExportFormat::Unspecified => pb::ExportFormat::Csv,
            other => other,
        };
        let sort = request
            .query
            .as_ref()
            .map_or(SortOrder::Ascending, |q| q.sort());
        let selection = self
            .selection(request.case_id.as_ref(), request.query.as_ref(), "query")
            .await?;
        let mut events = self.peers()?.events.clone();
        let mut stream = events
            .stream_events(call(ingest::StreamEventsRequest {
                case_id: Some(CaseId {
                    value: selection.case_id.clone(),
                }),
                query: Some(selection.query),
                sort: sort as i32,
                resume_cursor: request.resume_cursor.clone(),
                batch_size: BATCH,
                include_raw: false,
            }))
            .await
            .map_err(|status| peer_error("ingest", status))?
            .into_inner();
        let annotated = self.annotated_events(&selection.case_id).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let api = self.clone();
        let case_id = selection.case_id;
        let resuming = !request.resume_cursor.is_empty();
        tokio::spawn(async move {
            let mut data = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
            if format == pb::ExportFormat::Csv && !resuming {
                let mut writer = csv::Writer::from_writer(&mut data);
                let _ = writer.write_record(CSV_HEADER);
                let _ = writer.flush();
            }
            let (mut rows, mut total) = (0u64, 0u64);
            let mut last_cursor = String::new();
            loop {
                let batch = match stream.message().await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = sender.send(Err(peer_error("ingest", status).into())).await;
                        return;
                    }
                };
                if batch.total_hits > 0 {
                    total = batch.total_hits;
                }
                let ids: Vec<String> = batch
                    .events
                    .iter()
                    .filter_map(|e| e.event_id.as_ref().map(|i| i.value.clone()))
                    .collect();
                // Only events annotated when the export started are looked up.
                let lookup: Vec<String> = match &annotated {
                    Some(annotated) => ids
                        .iter()
                        .filter(|id| annotated.contains(&casescope_query::tiebreak_of(id)))
                        .cloned()
                        .collect(),
                    None => ids.clone(),
                };
                let (notes, comments) = match api.annotations_for_export(&case_id, &lookup).await {
                    Ok(found) => found,
                    Err(error) => {
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                };
                // Rendering is CPU work: off the async runtime, one batch at a time.
                let rows_before = rows;
                let buffer = std::mem::take(&mut data);
                let rendered = tokio::task::spawn_blocking(move || {
                    render_batch(
                        format,
                        &batch.events,
                        &ids,
                        &notes,
                        &comments,
                        buffer,
                        rows_before,
                    )
                })
                .await;
                let batch = match rendered {
                    Ok(Ok(batch)) => batch,
                    Ok(Err(error)) => {
                        let _ = sender
                            .send(Err(ApiError::internal_logged(
                                "render an export row",
                                error,
                            )
                            .into()))
                            .await;
                        return;
                    }
                    Err(error) => {
                        let _ = sender
                            .send(Err(ApiError::internal_logged(
                                "render an export batch",
                                error,
                            )
                            .into()))
                            .await;
                        return;
                    }
                };
                for (mut chunk, cursor, at) in batch.full {
                    if !send(&sender, &mut chunk, cursor, at, &mut total).await {
                        return;
                    }
                }
                data = batch.rest;
                rows = batch.rows;
                if !batch.cursor.is_empty() {
                    last_cursor = batch.cursor;
                }
            }
            if (!data.is_empty() || rows == 0)
                && !send(&sender, &mut data, last_cursor, rows, &mut total).await
            {
                tracing::debug!("the export's reader went away");
            }
        });
        Ok(Box::pin(futures::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
        )))
    }

    /// The tie-breakers of every event of the case with a tag, a star or a comment (from
    /// the set cache), so an export looks up only those; `None` when there are more
    /// than a query's sets may hold (then every event is looked up).
    async fn annotated_events(
        &self,
        case_id: &str,
    ) -> Result<Option<std::collections::HashSet<u64>>, ApiError> {
        let version = store::version(self.repo.db(), case_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ApiError::not_found("CASE_NOT_FOUND", format!("case {case_id} does not exist"))
            })?;
        let mut sets = Vec::with_capacity(3);
        for annotation in [
            Annotation::TagLike("*".into()),
            Annotation::Starred,
            Annotation::Commented,
        ] {
            match self
                .sets
                .members(self.repo.db(), case_id, &annotation, version)
                .await
            {
                Ok(members) => sets.push(members),
                Err(SetError::TooLarge { .. }) => return Ok(None),
                Err(SetError::Db(error)) => return Err(db_error(error)),
            }
        }
        // Up to millions of members: hashed off the async runtime.
        tokio::task::spawn_blocking(move || {
            Some(sets.iter().flat_map(|set| set.iter().copied()).collect())
        })
        .await
        .map_err(|error| ApiError::internal_logged("collect the annotated events", error))
    }

    /// The annotations and comment texts of one batch of events.
    async fn annotations_for_export(
        &self,
        case_id: &str,
        ids: &[String],
    ) -> Result<
        (
            HashMap<String, EventAnnotations>,
            HashMap<String, Vec<(String, String)>>,
        ),
        ApiError,
    > {
        let notes = store::of_events(self.repo.db(), case_id, ids)
            .await
            .map_err(db_error)?;
        let commented: Vec<String> = ids
            .iter()
            .filter(|id| notes.get(*id).is_some_and(|n| n.comment_count > 0))
            .cloned()
            .collect();
        let comments = store::comment_texts(self.repo.db(), case_id, &commented)
            .await
            .map_err(db_error)?;
        Ok((notes, comments))
    }
}

/// A JSON document written piece by piece into chunks.
struct Document {
    sender: Sender<Result<pb::ExportChunk, Status>>,
    data: Vec<u8>,
    rows: u64,
}

impl Document {
    /// Appends `text`; sends a chunk when large enough. False when the reader left.
    async fn push(&mut self, text: &str) -> bool {
        self.data.extend_from_slice(text.as_bytes());
        if self.data.len() >= CHUNK_BYTES {
            return send(
                &self.sender,
                &mut self.data,
                String::new(),
                self.rows,
                &mut 0,
            )
            .await;
        }
        true
    }

    async fn value(&mut self, first: &mut bool, value: &Value) -> bool {
        let separator = if std::mem::take(first) { "" } else { "," };
        self.rows += 1;
        self.push(&format!("{separator}{value}")).await
    }
}

impl CasesApi {
    pub(crate) async fn export_annotations_now(
        &self,
        actor: crate::annotations::Actor,
        request: pb::ExportAnnotationsRequest,
    ) -> Result<ChunkStream, ApiError> {
        let case_id = crate::validate::case_id(request.case_id.as_ref(), "case_id")?;
        self.require_case(&case_id).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let api = self.clone();
        tokio::spawn(async move {
            let mut doc = Document {
                sender: sender.clone(),
                data: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
                rows: 0,
            };
            if let Err(error) = api.write_annotations(&mut doc, &case_id, &actor).await {
                let _ = sender.send(Err(error.into())).await;
                return;
            }
            let rows = doc.rows;
            let _ = send(&sender, &mut doc.data, String::new(), rows, &mut 0).await;
        });
        Ok(Box::pin(futures::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
        )))
    }

    async fn write_annotations(
        &self,
        doc: &mut Document,
        case_id: &str,
        actor: &crate::annotations::Actor,
    ) -> Result<(), ApiError> {
        let db = self.repo.db();
        let gone = || ApiError::Unavailable {
            message: "the reader went away".into(),
        };
        let head = json!({"case_id": case_id, "exported_at": casescope_proto::time::micros_to_rfc3339(casescope_db::now_micros())});
        let head = head.to_string();
        if !doc
            .push(&format!("{},\"tags\":[", &head[..head.len() - 1]))
            .await
        {
            return Err(gone());
        }
        let mut after = String::new();
        let mut first_tag = true;
        loop {
            let tags = store::list_tags(db, case_id, &after, 1000)
                .await
                .map_err(db_error)?;
            let Some(last) = tags.last() else { break };
            after = last.name.clone();
            for tag in &tags {
                let prefix = if std::mem::take(&mut first_tag) {
                    ""
                } else {
                    ","
                };
                let open =
                    json!({"name": tag.name, "colour": tag.colour, "description": tag.description})
                        .to_string();
                if !doc
                    .push(&format!("{prefix}{},\"events\":[", &open[..open.len() - 1]))
                    .await
                {
                    return Err(gone());
                }
                self.write_ids(doc, case_id, Some(&tag.name)).await?;
                if !doc.push("]}").await {
                    return Err(gone());
                }
            }
        }
        if !doc.push("],\"stars\":[").await {
            return Err(gone());
        }
        self.write_ids(doc, case_id, None).await?;
        if !doc.push("],\"comments\":[").await {
            return Err(gone());
        }
        let mut position = None;
        let mut first = true;
        loop {
            let comments = store::list_comments(db, case_id, "", position.clone(), 1000, false)
                .await
                .map_err(db_error)?;
            let Some(last) = comments.last() else { break };
            position = Some((last.created_at, last.id.clone()));
            for comment in &comments {
                let revisions = store::list_revisions(db, &comment.id)
                    .await
                    .map_err(db_error)?;
                let value = json!({
                    "id": comment.id, "event_id": comment.event_id, "parent_id": comment.parent_id,
                    "author_id": comment.author_id, "author_name": comment.author_name,
                    "body": comment.body, "created_at": comment.created_at,
                    "edited_at": comment.edited_at, "revision": comment.revision,
                    "deleted": comment.deleted,
                    "revisions": revisions.iter().map(|r| json!({
                        "revision": r.revision, "body": r.body, "editor_id": r.editor_id,
                        "written_at": r.written_at,
                    })).collect::<Vec<_>>(),
                });
                if !doc.value(&mut first, &value).await {
                    return Err(gone());
                }
            }
        }
        if !doc.push("],\"saved_searches\":[").await {
            return Err(gone());
        }
        let searches = self
            .list_saved_searches_now(
                crate::annotations::Actor {
                    id: actor.id.clone(),
                    name: actor.name.clone(),
                },
                pb::ListSavedSearchesRequest {
                    case_id: Some(CaseId {
                        value: case_id.to_string(),
                    }),
                    page: Some(casescope_proto::common::v1::PageRequest {
                        page_size: 1000,
                        cursor: String::new(),
                    }),
                },
            )
            .await?;
        let mut first = true;
        for search in &searches.searches {
            let value = json!({
                "name": search.name, "owner": search.owner_name, "shared": search.shared,
                "query": search.query.as_ref().map(|q| q.query.clone()),
            });
            if !doc.value(&mut first, &value).await {
                return Err(gone());
            }
        }
        let notes = self
            .get_notes_now(pb::GetCaseNotesRequest {
                case_id: Some(CaseId {
                    value: case_id.to_string(),
                }),
            })
            .await?;
        let notes = json!({"version": notes.version, "body": notes.body, "updated_by": notes.updated_by_name});
        if !doc.push(&format!("],\"notes\":{notes}}}\n")).await {
            return Err(gone());
        }
        Ok(())
    }

    /// The ids of a tag's events (or the starred ones), as JSON strings.
    async fn write_ids(
        &self,
        doc: &mut Document,
        case_id: &str,
        tag: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut after = String::new();
        let mut first = true;
        loop {
            let ids = store::event_ids_page(self.repo.db(), case_id, tag, &after, 10_000)
                .await
                .map_err(db_error)?;
            let Some(last) = ids.last() else {
                return Ok(());
            };
            after = last.clone();
            for id in &ids {
                if !doc.value(&mut first, &json!(id)).await {
                    return Err(ApiError::Unavailable {
                        message: "the reader went away".into(),
                    });
                }
            }
        }
    }
}
