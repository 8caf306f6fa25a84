//! The tagged timeline of a report: the cases service's streamed JSON lines export of
//! the selection (tagged events — of the chosen tags, or any tag or starred), read
//! chunk by chunk (each ends on a row), each chunk parsed and rendered on the blocking
//! pool, values cut to the report's limits.

use super::{BuildError, Outputs, ReportWorker};
use crate::ReportSettings;
use crate::model::{Comment, Field, TimelineEnd, TimelineEntry};
use crate::peers::PeerError;
use crate::render::{Part, clip};
use crate::repo::ReportRow;
use casescope_db::{KeepAlive, Lease};
use casescope_proto::cases::v1 as cases;
use casescope_proto::common::v1::{CaseId, SortOrder};
use serde::Deserialize;

/// The timeline selection of a report.
pub(crate) fn selection(row: &ReportRow) -> cases::TimelineQuery {
    let mut query = cases::TimelineQuery {
        sort: SortOrder::Ascending as i32,
        ..Default::default()
    };
    if row.timeline_tags.is_empty() {
        query.query = "tag:* OR starred:true".into();
    } else {
        query.tags = row.timeline_tags.clone();
    }
    query
}

/// One row of the export's JSON lines format (docs/investigation.md).
#[derive(Deserialize)]
struct Row {
    #[serde(default)]
    datetime: String,
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    computer: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    event_code: Option<u32>,
    #[serde(default)]
    record_id: Option<u64>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    starred: bool,
    #[serde(default)]
    comments: Vec<RowComment>,
    #[serde(default)]
    fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RowComment {
    #[serde(default)]
    author: String,
    #[serde(default)]
    body: String,
}

fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The entry shown for one exported row.
fn entry(row: Row, settings: &ReportSettings) -> TimelineEntry {
    let max = settings.max_value_chars;
    let more_fields = row
        .fields
        .len()
        .saturating_sub(settings.max_fields_per_event);
    let fields = row
        .fields
        .iter()
        .take(settings.max_fields_per_event)
        .map(|(name, value)| {
            let (value, cut) = clip(&value_text(value), max);
            Field {
                name: clip(name, 200).0,
                value: if cut { format!("{value}…") } else { value },
            }
        })
        .collect();
    TimelineEntry {
        datetime: row.datetime,
        event_id: row.event_id,
        computer: clip(&row.computer, max).0,
        channel: clip(&row.channel, max).0,
        provider: clip(&row.provider, max).0,
        event_code: row.event_code,
        record_id: row.record_id,
        tags: row.tags,
        starred: row.starred,
        comments: row
            .comments
            .into_iter()
            .map(|c| {
                let (body, truncated) = clip(&c.body, max);
                Comment {
                    author: clip(&c.author, 200).0,
                    body,
                    truncated,
                }
            })
            .collect(),
        fields,
        more_fields,
    }
}

/// Parses the rows of one export chunk (at most `room` of them).
pub(super) fn parse(
    data: &[u8],
    room: u64,
    settings: &ReportSettings,
) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if parts.len() as u64 >= room {
            break;
        }
        let row: Row = serde_json::from_slice(line)
            .map_err(|e| format!("the timeline export sent a row that is not JSON: {e}"))?;
        parts.push(Part::TimelineEvent(Box::new(entry(row, settings))));
    }
    Ok(parts)
}

/// The open export of a report's selection.
pub(super) type Export = tonic::Streaming<cases::ExportChunk>;

impl ReportWorker {
    /// Opens the streamed JSON lines export of `query`.
    pub(super) async fn open_export(
        &self,
        row: &ReportRow,
        query: &cases::TimelineQuery,
    ) -> Result<Export, BuildError> {
        let mut client = self.peers.cases.clone();
        let opened = self
            .peers
            .bounded(
                "cases",
                "export the tagged events",
                client.export_timeline(cases::ExportTimelineRequest {
                    case_id: Some(CaseId {
                        value: row.case_id.clone(),
                    }),
                    query: Some(query.clone()),
                    format: cases::ExportFormat::Jsonl as i32,
                    resume_cursor: String::new(),
                }),
            )
            .await;
        Ok(opened?)
    }

    /// The next chunk of an export (`None` at its end), within the peer timeout.
    pub(super) async fn next_chunk(
        &self,
        stream: &mut Export,
    ) -> Result<Option<cases::ExportChunk>, BuildError> {
        match tokio::time::timeout(self.peers.timeout, stream.message()).await {
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(status)) => {
                Err(PeerError::from_status("cases", "export the tagged events", &status).into())
            }
            Err(_) => Err(BuildError::Transient(format!(
                "the cases service sent nothing of the tagged events' export for {} s",
                self.peers.timeout.as_secs()
            ))),
        }
    }

    pub(super) async fn timeline(
        &self,
        row: &ReportRow,
        query: &cases::TimelineQuery,
        outputs: &mut Outputs,
        lease: &Lease,
        keep: &KeepAlive,
    ) -> Result<(), BuildError> {
        let id = row.id.as_str();
        let mut stream = self.open_export(row, query).await?;
        let mut end = TimelineEnd::default();
        let mut selected = None;
        let limit = self.settings.max_timeline_events;
        while let Some(chunk) = self.next_chunk(&mut stream).await? {
            if selected.is_none() {
                let total = chunk.total;
                selected = Some(total);
                self.emit(
                    outputs,
                    vec![Part::TimelineBegin(total, row.timeline_tags.clone())],
                    lease,
                    keep,
                    id,
                )
                .await?;
            }
            let room = limit.saturating_sub(end.shown);
            if room == 0 {
                break;
            }
            let settings = self.settings.clone();
            let parts = tokio::task::spawn_blocking(move || parse(&chunk.data, room, &settings))
                .await
                .map_err(|e| BuildError::Transient(format!("parsing stopped: {e}")))?
                .map_err(BuildError::Transient)?;
            end.shown += parts.len() as u64;
            self.emit(outputs, parts, lease, keep, id).await?;
        }
        let selected = match selected {
            Some(total) => total,
            None => {
                self.emit(
                    outputs,
                    vec![Part::TimelineBegin(0, row.timeline_tags.clone())],
                    lease,
                    keep,
                    id,
                )
                .await?;
                0
            }
        };
        end.left_out = selected.saturating_sub(end.shown);
        self.emit(outputs, vec![Part::TimelineEnd(end)], lease, keep, id)
            .await
    }
}
