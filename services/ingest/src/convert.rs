//! Between the wire types and the event store's.

use casescope_eventstore::{
    Cursor, Event, EventQuery, EventSet, MAX_SET_MEMBERS, SortOrder, parse_query,
};
use casescope_proto::common::v1::{CaseId, EventId, FileId, SortOrder as PbSort};
use casescope_proto::error::ApiError;
use casescope_proto::ingest::v1 as pb;
use casescope_proto::time::micros_to_timestamp;
use std::sync::Arc;

pub fn format_of(source: &str) -> pb::EvidenceFormat {
    match source {
        "evtx" => pb::EvidenceFormat::Evtx,
        "json" => pb::EvidenceFormat::Json,
        "jsonl" => pb::EvidenceFormat::Jsonl,
        "csv" => pb::EvidenceFormat::Csv,
        "zip" => pb::EvidenceFormat::Zip,
        _ => pb::EvidenceFormat::Unspecified,
    }
}

pub fn event_to_pb(event: Event, include_raw: bool) -> pb::Event {
    pb::Event {
        event_id: Some(EventId {
            value: event.event_id,
        }),
        case_id: Some(CaseId {
            value: event.case_id,
        }),
        file_id: Some(FileId {
            value: event.file_id,
        }),
        source: format_of(event.source) as i32,
        timestamp: Some(micros_to_timestamp(event.timestamp_micros)),
        record_id: event.record_id,
        line_number: event.line,
        locator: event.locator,
        event_code: event.event_code,
        channel: event.channel.unwrap_or_default(),
        provider: event.provider.unwrap_or_default(),
        computer: event.computer.unwrap_or_default(),
        level: event.level,
        fields_json: serde_json::Value::Object(event.fields).to_string(),
        raw_json: if include_raw {
            event.raw.get().to_string()
        } else {
            String::new()
        },
    }
}

/// Validates and converts a wire query; `field` names the request field for errors.
pub fn query_from_pb(
    case_id: &str,
    query: Option<pb::EventQuery>,
    field: &str,
) -> Result<EventQuery, ApiError> {
    let query = query.unwrap_or_default();
    let parsed = parse_query(&query.query).map_err(|error| {
        ApiError::invalid_field("QUERY_INVALID", format!("{field}.query"), error.to_string())
    })?;
    let mut out = EventQuery::new(case_id, parsed);
    if let Some(range) = query.time_range {
        out.start_micros = range.start_unix_micros;
        out.end_micros = range.end_unix_micros;
        if let (Some(start), Some(end)) = (out.start_micros, out.end_micros)
            && start >= end
        {
            return Err(ApiError::invalid_field(
                "TIME_RANGE_INVALID",
                format!("{field}.time_range"),
                "the range ends before it starts",
            ));
        }
    }
    if query.file_ids.len() > 1000
        || query.channels.len() > 100
        || query.event_codes.len() > 1000
        || query.computers.len() > 1000
    {
        return Err(ApiError::invalid_field(
            "FILTER_TOO_LARGE",
            field.to_string(),
            "too many filter values",
        ));
    }
    let members: usize = query.sets.iter().map(|set| set.tiebreaks.len()).sum();
    if members > MAX_SET_MEMBERS {
        return Err(ApiError::invalid_field(
            "SETS_TOO_LARGE",
            format!("{field}.sets"),
            format!("{members} set members; at most {MAX_SET_MEMBERS} in all"),
        ));
    }
    for set in query.sets {
        out.sets
            .insert(set.key, Arc::new(EventSet::new(set.tiebreaks)));
    }
    for key in &query.required_sets {
        if !out.sets.contains_key(key) {
            return Err(ApiError::invalid_field(
                "SET_MISSING",
                format!("{field}.required_sets"),
                format!("set {key:?} is required but not given in sets"),
            ));
        }
    }
    out.required_sets = query.required_sets;
    out.file_ids = query.file_ids.into_iter().map(|id| id.value).collect();
    out.channels = query.channels;
    out.event_codes = query.event_codes;
    out.computers = query.computers;
    Ok(out)
}

pub fn sort_from_pb(sort: i32) -> SortOrder {
    match PbSort::try_from(sort) {
        Ok(PbSort::Descending) => SortOrder::Descending,
        _ => SortOrder::Ascending,
    }
}

pub fn cursor_from_pb(cursor: Option<&str>, field: &str) -> Result<Option<Cursor>, ApiError> {
    match cursor {
        None => Ok(None),
        Some(text) => Cursor::decode(text).map(Some).ok_or_else(|| {
            ApiError::invalid_field(
                "CURSOR_INVALID",
                field.to_string(),
                "not a cursor this server issued; pass next_cursor from the previous page unchanged",
            )
        }),
    }
}
