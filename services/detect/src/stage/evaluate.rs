//! Evaluating one batch of a file's events against a compiled rule set: its
//! detections and correlation inputs, on the blocking pool.

use super::{MAX_MATCHED_VALUE_BYTES, comma_list, detection_id, level_number};
use crate::repo::{DetectionRow, InputRow, scope};
use crate::ruleset::Compiled;
use casescope_proto::ingest::v1 as ingest_pb;
use casescope_sigma::EventRef;
use std::collections::HashMap;

/// What evaluating one batch produced.
#[derive(Default)]
pub(super) struct BatchOutput {
    pub(super) detections: Vec<DetectionRow>,
    pub(super) inputs: Vec<InputRow>,
    pub(super) unreadable: u64,
}

/// The database id of each rule and correlation of a compiled set.
pub(super) fn rule_db_id(compiled: &Compiled, index: usize) -> String {
    let meta = &compiled.set.rules[index].meta;
    if meta.id.starts_with("title:") {
        crate::import::derived_id(&meta.content_hash)
    } else {
        meta.id.clone()
    }
}

/// The normalised header fields of an event, by their usual Sigma names.
fn header_field(event: &ingest_pb::Event, name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let text = match lower.as_str() {
        "computer" | "computername" | "hostname" => event.computer.clone(),
        "channel" => event.channel.clone(),
        "provider" | "provider_name" => event.provider.clone(),
        "eventid" | "event_id" => return event.event_code.map(|c| c.to_string()),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

pub(super) fn evaluate_batch(
    compiled: &Compiled,
    ids: &[String],
    events: Vec<ingest_pb::Event>,
    ruleset_version: i64,
    now: i64,
) -> BatchOutput {
    let mut out = BatchOutput::default();
    for event in events {
        let fields: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_str(&event.fields_json) {
                Ok(fields) => fields,
                Err(_) => {
                    out.unreadable += 1;
                    continue;
                }
            };
        let view = EventRef {
            channel: (!event.channel.is_empty()).then_some(event.channel.as_str()),
            event_code: event.event_code,
            fields: (&fields).into(),
        };
        let matched = compiled.set.evaluate(&view);
        if matched.is_empty() {
            continue;
        }
        let event_id = event
            .event_id
            .as_ref()
            .map(|e| e.value.clone())
            .unwrap_or_default();
        let case_id = event
            .case_id
            .as_ref()
            .map(|c| c.value.clone())
            .unwrap_or_default();
        let file_id = event
            .file_id
            .as_ref()
            .map(|f| f.value.clone())
            .unwrap_or_default();
        let ts = event
            .timestamp
            .as_ref()
            .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1000))
            .unwrap_or(0);
        let record_id = event.record_id.and_then(|r| i64::try_from(r).ok());
        for index in matched {
            let rule_id = &ids[index];
            if compiled.report[index] {
                let Some(meta) = compiled.meta.get(rule_id) else {
                    continue;
                };
                let matched_fields: Vec<[String; 2]> = compiled.set.rules[index]
                    .matched_fields(&fields, MAX_MATCHED_VALUE_BYTES)
                    .into_iter()
                    .map(|(f, v)| [f, v])
                    .collect();
                out.detections.push(DetectionRow {
                    id: detection_id(&[rule_id, &event_id]),
                    case_id: case_id.clone(),
                    file_id: file_id.clone(),
                    scope: scope::FILE.into(),
                    rule_id: rule_id.clone(),
                    rule_content_sha256: meta.content_sha256.clone(),
                    rule_title: meta.title.clone(),
                    level: level_number(&meta.level),
                    event_ts: ts,
                    computer: event.computer.clone(),
                    channel: event.channel.clone(),
                    event_code: event.event_code.map(i64::from),
                    record_id,
                    event_ids: serde_json::to_string(&[&event_id]).unwrap_or_default(),
                    tactics: comma_list(&meta.tactics),
                    techniques: comma_list(&meta.techniques),
                    matched_fields: serde_json::to_string(&matched_fields).unwrap_or_default(),
                    is_correlation: false,
                    correlated_event_count: 0,
                    first_ts: ts,
                    ruleset_version,
                    detected_at: now,
                });
            }
            if compiled.correlated[index] {
                let vals: HashMap<&str, String> = compiled.correlation_fields[index]
                    .iter()
                    .filter_map(|name| {
                        let Some(value) = fields.get(name) else {
                            // Group-by on the event's own header fields.
                            return header_field(&event, name).map(|v| (name.as_str(), v));
                        };
                        let text = casescope_sigma::FieldValue::of(value)
                            .text()
                            .map(|t| t.into_owned())
                            .unwrap_or_else(|| value.to_string());
                        Some((name.as_str(), text))
                    })
                    .collect();
                out.inputs.push(InputRow {
                    case_id: case_id.clone(),
                    file_id: file_id.clone(),
                    rule_id: rule_id.clone(),
                    event_id: event_id.clone(),
                    event_ts: ts,
                    computer: event.computer.clone(),
                    channel: event.channel.clone(),
                    event_code: event.event_code.map(i64::from),
                    record_id,
                    vals: serde_json::to_string(&vals).unwrap_or_else(|_| "{}".into()),
                });
            }
        }
    }
    out
}
