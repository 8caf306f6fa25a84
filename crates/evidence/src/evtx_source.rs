//! EVTX via the `evtx` crate (chunks parsed on all cores), normalised per record.
//!
//! Locators are `record:<EventRecordID>`; a record id seen twice in one file (damaged
//! or stitched logs) gets `#<n>` appended so both records keep distinct event ids.

use crate::evtx_values::Programs;
use crate::normalize::{Event, RawJson, WindowsParts, normalize_windows_text};
use crate::{Context, Outcome, ParseError, Reject, RejectReason, io_error};
use evtx::err::EvtxError;
use evtx::{EvtxParser, ParserSettings};
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::Path;

/// Record ids already seen in this file: a bitmap over a window of ids (they are
/// nearly contiguous in real logs), with a set for ids outside it.
struct SeenIds {
    base: Option<u64>,
    bits: Vec<u64>,
    outside: HashSet<u64>,
    repeats: HashMap<u64, u32>,
}

/// Ids within this distance of the first one use the bitmap (8 MiB at most).
const BITMAP_SPAN: u64 = 64 * 1024 * 1024;

impl SeenIds {
    fn new() -> Self {
        Self {
            base: None,
            bits: Vec::new(),
            outside: HashSet::new(),
            repeats: HashMap::new(),
        }
    }

    /// Records `id`; returns how many times it was seen before.
    fn occurrence(&mut self, id: u64) -> u32 {
        // Ids run upwards from the oldest chunk: the first id starts the window.
        let base = *self.base.get_or_insert(id);
        let seen_before = match id.checked_sub(base).filter(|offset| *offset < BITMAP_SPAN) {
            Some(offset) => {
                let word = (offset / 64) as usize;
                if self.bits.len() <= word {
                    self.bits.resize(word + 1, 0);
                }
                let mask = 1u64 << (offset % 64);
                let seen = self.bits[word] & mask != 0;
                self.bits[word] |= mask;
                seen
            }
            None => !self.outside.insert(id),
        };
        if !seen_before {
            return 0;
        }
        let count = self.repeats.entry(id).or_insert(0);
        *count += 1;
        *count
    }
}

fn reject_for(error: &EvtxError, ordinal: u64) -> Reject {
    let (locator, reason) = match error {
        EvtxError::FailedToParseRecord { record_id, .. } => {
            (format!("record:{record_id}"), RejectReason::EvtxRecord)
        }
        EvtxError::FailedToParseChunk { chunk_id, .. } => {
            (format!("chunk:{chunk_id}"), RejectReason::EvtxChunk)
        }
        EvtxError::FailedToReadRecordAt { chunk, offset, .. } => (
            match chunk {
                Some(chunk) => format!("chunk:{chunk}/offset:{offset:#x}"),
                None => format!("item:{ordinal}/offset:{offset:#x}"),
            },
            RejectReason::EvtxRecord,
        ),
        _ => (format!("item:{ordinal}"), RejectReason::EvtxRecord),
    };
    Reject::new(locator, reason, error_chain(error))
}

/// The error and its sources, so the reason names the actual defect.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// What a parser thread makes of one record: everything but the locator, which needs
/// the file-order view of record ids ([`SeenIds`]).
pub(crate) struct Decoded {
    record_id: u64,
    timestamp_micros: i64,
    parts: WindowsParts,
    raw: RawJson,
    from_template: bool,
}

/// Runs on the evtx crate's chunk threads: decode and normalise one record, so the
/// per-record work is spread over every parser thread rather than the consumer. The
/// fields come from the record's template values when its template is programmed
/// ([`Programs`]), else from its rendered JSON ([`normalize_windows_text`]); the raw
/// record, when kept, is the rendered JSON text.
pub(crate) fn decode(
    record: evtx::EvtxRecord<'_>,
    keep_raw: bool,
    programs: &mut Option<Programs>,
) -> evtx::err::Result<Decoded> {
    let (record_id, header_time) = (record.event_record_id, record.timestamp);
    let invalid =
        |error: serde_json::Error| EvtxError::from(evtx::err::SerializationError::from(error));
    let fast = programs
        .as_mut()
        .and_then(|programs| programs.decode(&record));
    let from_template = fast.is_some();
    let (raw, parts) = match (fast, keep_raw) {
        (Some(parts), false) => (RawJson::default(), parts),
        (Some(mut parts), true) => {
            let text = match parts.raw.take() {
                Some(text) => text,
                None => record.into_json()?.data,
            };
            (RawJson::from_text(text).map_err(invalid)?, parts)
        }
        (None, true) => {
            let raw = RawJson::from_text(record.into_json()?.data).map_err(invalid)?;
            let parts = normalize_windows_text(raw.get()).map_err(invalid)?;
            (raw, parts)
        }
        (None, false) => {
            let parts = normalize_windows_text(&record.into_json()?.data).map_err(invalid)?;
            (RawJson::default(), parts)
        }
    };
    Ok(Decoded::new(
        record_id,
        header_time.as_microsecond(),
        parts,
        raw,
        from_template,
    ))
}

impl Decoded {
    pub(crate) fn new(
        record_id: u64,
        header_micros: i64,
        mut parts: WindowsParts,
        raw: RawJson,
        from_template: bool,
    ) -> Decoded {
        // The event's own time (System/TimeCreated); the record header's FILETIME is
        // zero in some exported logs.
        let timestamp_micros = parts
            .time_created
            .take()
            .and_then(|t| crate::parse_timestamp(&serde_json::Value::String(t)).ok())
            .unwrap_or(header_micros);
        Decoded {
            record_id,
            timestamp_micros,
            parts,
            raw,
            from_template,
        }
    }

    pub(crate) fn view(&self) -> RecordView<'_> {
        RecordView {
            record_id: self.parts.record_id.unwrap_or(self.record_id),
            timestamp_micros: self.timestamp_micros,
            parts: &self.parts,
            from_template: self.from_template,
        }
    }
}

/// The file's parser: `threads` chunk threads (0: all cores), JSON rendering as
/// [`decode`] reads it.
fn open(
    path: &Path,
    threads: usize,
) -> Result<EvtxParser<std::io::BufReader<std::fs::File>>, ParseError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    Ok(EvtxParser::from_read_seek(std::io::BufReader::new(file))
        .map_err(|error| ParseError::Evtx(error_chain(&error)))?
        .with_configuration(settings(threads)))
}

fn settings(threads: usize) -> ParserSettings {
    ParserSettings::new()
        .num_threads(threads)
        .separate_json_attributes(false)
        .indent(false)
}

/// One record as a parser thread decoded it, before it becomes an [`Event`].
pub struct RecordView<'a> {
    /// System/EventRecordID, or the record header's number when the record has none
    /// (as [`Event::record_id`]).
    pub record_id: u64,
    /// UTC microseconds (as [`Event::timestamp_micros`]).
    pub timestamp_micros: i64,
    /// The header values, and the fields: read them with
    /// [`WindowsParts::all_fields`] (a record read from its template values has them as
    /// pairs, with `parts.fields` empty).
    pub parts: &'a WindowsParts,
    /// Read from the record's template values rather than its JSON rendering (the same
    /// fields either way; see `evtx_values`).
    pub from_template: bool,
}

/// How records are read: from their template values where the template allows it
/// (the default), or always through their JSON rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoding {
    #[default]
    TemplateValues,
    JsonOnly,
}

/// Reads every record of the EVTX file at `path` on `threads` parser threads (0: all
/// cores), calling `inspect` on each record on the thread that decoded it, and hands
/// `sink`, in file order, what `inspect` returned or the reject of a record that could
/// not be read. For callers that only look at each record (`casescope analyze`): the
/// record is examined while it is in that thread's cache, and no [`Event`] is built or
/// sent to another thread. Returns whether `sink` stopped early.
pub fn inspect<T: Send + 'static>(
    path: &Path,
    threads: usize,
    inspect: impl Fn(RecordView<'_>) -> T + Send + Sync + Clone + 'static,
    sink: &mut dyn FnMut(Result<T, Reject>) -> ControlFlow<()>,
) -> Result<bool, ParseError> {
    inspect_decoded(path, threads, Decoding::default(), inspect, sink)
}

/// [`inspect`], decoding as `decoding` says (tests compare both ways).
pub fn inspect_decoded<T: Send + 'static>(
    path: &Path,
    threads: usize,
    decoding: Decoding,
    inspect: impl Fn(RecordView<'_>) -> T + Send + Sync + Clone + 'static,
    sink: &mut dyn FnMut(Result<T, Reject>) -> ControlFlow<()>,
) -> Result<bool, ParseError> {
    let mut parser = open(path, threads)?;
    let mut ordinal = 0u64;
    let mut sink = |item: evtx::err::Result<T>| {
        let item = item.map_err(|error| reject_for(&error, ordinal));
        ordinal += 1;
        sink(item)
    };
    if decoding == Decoding::JsonOnly {
        let records = parser.serialized_records(move |record| {
            let decoded = record.and_then(|record| decode(record, false, &mut None))?;
            Ok(inspect(decoded.view()))
        });
        for item in records {
            if sink(item).is_break() {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let settings = std::sync::Arc::new(settings(threads));
    Ok(crate::evtx_chunks::pipeline(
        parser.chunks(),
        workers(threads),
        |data| crate::evtx_chunks::inspect_chunk(data, &settings, &inspect),
        &mut sink,
    ))
}

/// Reads every record of the EVTX file at `path` into [`Outcome`]s, in file order:
/// records whose template is programmed are read from their values and their stored
/// form rendered from them (`evtx_values`), on the chunk pipeline; the rest through
/// the evtx crate's JSON. `Decoding::JsonOnly` reads every record the second way.
pub(crate) fn parse(
    path: &Path,
    context: &Context,
    decoding: Decoding,
    sink: &mut dyn FnMut(Outcome) -> ControlFlow<()>,
) -> Result<bool, ParseError> {
    let mut parser = open(path, context.limits.evtx_threads)?;
    let mut seen = SeenIds::new();
    let ids = crate::EventIds::new(&context.case_id, &context.evidence_sha256);
    let keep_raw = context.keep_raw;
    let mut ordinal = 0u64;
    let mut sink = |item: evtx::err::Result<Decoded>| {
        let outcome = match item {
            Err(error) => Outcome::Rejected(reject_for(&error, ordinal)),
            Ok(decoded) => Outcome::Event(Box::new(decoded.into_event(context, &ids, &mut seen))),
        };
        ordinal += 1;
        sink(outcome)
    };
    if decoding == Decoding::JsonOnly {
        let records = parser.serialized_records(move |record| {
            record.and_then(|record| decode(record, keep_raw, &mut None))
        });
        for item in records {
            if sink(item).is_break() {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let settings = std::sync::Arc::new(settings(context.limits.evtx_threads));
    let programs = match keep_raw {
        true => Programs::rendering_raw(),
        false => Programs::default(),
    };
    Ok(crate::evtx_chunks::pipeline(
        parser.chunks(),
        workers(context.limits.evtx_threads),
        |data| crate::evtx_chunks::decode_chunk(data, &settings, &programs, keep_raw, &|d| d),
        &mut sink,
    ))
}

/// Threads for `threads` (0: all cores).
fn workers(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

impl Decoded {
    /// The event of this record; `seen` numbers repeated record ids (the locator).
    fn into_event(self, context: &Context, ids: &crate::EventIds, seen: &mut SeenIds) -> Event {
        let Decoded {
            record_id,
            timestamp_micros,
            parts,
            raw,
            from_template: _,
        } = self;
        let locator = match seen.occurrence(record_id) {
            0 => format!("record:{record_id}"),
            n => format!("record:{record_id}#{}", n + 1),
        };
        Event {
            event_id: ids.id(&locator),
            case_id: context.case_id.clone(),
            file_id: context.file_id.clone(),
            source: "evtx",
            timestamp_micros,
            locator,
            // As Event Viewer shows it (System/EventRecordID); the header's number
            // differs in exported or filtered logs and stays in the locator.
            record_id: Some(parts.record_id.unwrap_or(record_id)),
            line: None,
            event_code: parts.event_code,
            channel: parts.channel,
            provider: parts.provider,
            computer: parts.computer,
            level: parts.level,
            fields: parts.fields,
            fields_from_raw: !raw.is_null(),
            raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SeenIds;

    #[test]
    fn repeated_record_ids_are_numbered() {
        let mut seen = SeenIds::new();
        assert_eq!(seen.occurrence(100), 0);
        assert_eq!(seen.occurrence(101), 0);
        assert_eq!(seen.occurrence(100), 1);
        assert_eq!(seen.occurrence(100), 2);
        assert_eq!(seen.occurrence(u64::MAX), 0);
        assert_eq!(seen.occurrence(u64::MAX), 1);
        assert_eq!(seen.occurrence(0), 0);
    }
}
