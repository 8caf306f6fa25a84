//! JSON evidence: JSONL/NDJSON (one object per line), a JSON array of objects, or — for
//! `.json` — a single pretty-printed object or a stream of them. Each record's size is
//! bounded: an over-long line is rejected without being buffered; an over-long array
//! element or streamed object stops the file with a clear error.

use crate::lines::{Line, read_line_bounded};
use crate::normalize::{
    Event, RawJson, WindowsParts, flatten_into, normalize_windows_record, promote_common_fields,
};
use crate::timestamp::{TIMESTAMP_FIELDS, find_timestamp};
use crate::{Context, Format, Outcome, ParseError, Reject, RejectReason, event_id, io_error};
use serde::de::{self, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::Path;
use std::rc::Rc;

type Sink<'a> = &'a mut dyn FnMut(Outcome) -> ControlFlow<()>;

/// Turns one JSON object (a JSON record, or a CSV row as strings) into an outcome.
pub(crate) fn object_to_outcome(
    object: Map<String, Value>,
    source: &'static str,
    locator: String,
    line: Option<u64>,
    context: &Context,
) -> Outcome {
    let timestamp_micros = match find_timestamp(&object, context.timestamp_field.as_deref()) {
        Ok(micros) => micros,
        Err(None) => {
            let tried = match &context.timestamp_field {
                Some(field) => format!("the configured field {field:?} is absent"),
                None => format!(
                    "none of the {} known time fields is present (e.g. @timestamp, timestamp, TimeCreated); \
                     name the field at upload",
                    TIMESTAMP_FIELDS.len()
                ),
            };
            return Outcome::Rejected(Reject::new(locator, RejectReason::MissingTimestamp, tried));
        }
        Err(Some(why)) => {
            return Outcome::Rejected(Reject::new(locator, RejectReason::InvalidTimestamp, why));
        }
    };
    let record = Value::Object(object);
    let mut parts = normalize_object(&record);
    let fields = std::mem::take(&mut parts.fields);
    Outcome::Event(Box::new(Event {
        event_id: event_id(&context.case_id, &context.evidence_sha256, &locator),
        case_id: context.case_id.clone(),
        file_id: context.file_id.clone(),
        source,
        timestamp_micros,
        locator,
        record_id: parts.record_id,
        line,
        event_code: parts.event_code,
        channel: parts.channel,
        provider: parts.provider,
        computer: parts.computer,
        level: parts.level,
        fields,
        raw: if context.keep_raw {
            RawJson::from_value(&record)
        } else {
            RawJson::default()
        },
        fields_from_raw: context.keep_raw,
    }))
}

/// The header values and flattened fields of one JSON record (or CSV row): a record in
/// the shape of a rendered EVTX record (`Event.System`) is normalised as one, any other
/// flattened (`a.b.c`) with the common fields promoted.
pub(crate) fn normalize_object(record: &Value) -> WindowsParts {
    if record.get("Event").and_then(|e| e.get("System")).is_some() {
        return normalize_windows_record(record);
    }
    let mut fields = Map::new();
    flatten_into(&mut fields, "", record, 0);
    let parts = promote_common_fields(&fields);
    WindowsParts { fields, ..parts }
}

fn value_to_outcome(
    value: Value,
    locator: String,
    line: Option<u64>,
    context: &Context,
) -> Outcome {
    match value {
        Value::Object(object) => object_to_outcome(object, "json", locator, line, context),
        other => Outcome::Rejected(Reject::new(
            locator,
            RejectReason::NotAnObject,
            format!(
                "a record must be a JSON object, found {}",
                short(&other.to_string())
            ),
        )),
    }
}

fn short(text: &str) -> String {
    let mut shown: String = text.chars().take(80).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

/// Stops reading once `remaining` bytes were read since the last reset.
struct Budgeted<R> {
    inner: R,
    remaining: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let remaining = self.remaining.get();
        if remaining == 0 {
            return Err(std::io::Error::other(
                "record exceeds the maximum record size",
            ));
        }
        let limit = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..limit])?;
        self.remaining.set(remaining - read as u64);
        Ok(read)
    }
}

pub fn parse(
    path: &Path,
    format: Format,
    context: &Context,
    sink: Sink<'_>,
) -> Result<bool, ParseError> {
    let open = || {
        std::fs::File::open(path)
            .map(|file| BufReader::with_capacity(256 * 1024, file))
            .map_err(|e| io_error(path, e))
    };
    let mut reader = open()?;
    skip_bom_and_space(&mut reader).map_err(|e| io_error(path, e))?;
    let first = reader
        .fill_buf()
        .map_err(|e| io_error(path, e))?
        .first()
        .copied();
    if format == Format::Json && first == Some(b'[') {
        return parse_array(reader, context, sink);
    }
    if format == Format::Json && first_line_is_incomplete(path, context)? {
        let mut reader = open()?;
        skip_bom_and_space(&mut reader).map_err(|e| io_error(path, e))?;
        return parse_stream(reader, context, sink);
    }
    parse_lines(open()?, context, sink)
}

fn skip_bom_and_space<R: BufRead>(reader: &mut R) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.starts_with(b"\xef\xbb\xbf") {
            reader.consume(3);
            continue;
        }
        let spaces = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if spaces == 0 {
            return Ok(());
        }
        reader.consume(spaces);
    }
}

/// True when the first non-empty line is the start of a multi-line JSON value.
fn first_line_is_incomplete(path: &Path, context: &Context) -> Result<bool, ParseError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut reader = BufReader::new(file);
    skip_bom_and_space(&mut reader).map_err(|e| io_error(path, e))?;
    let mut buf = Vec::new();
    match read_line_bounded(&mut reader, &mut buf, context.limits.max_record_bytes) {
        Ok(Line::Text) => Ok(matches!(
            serde_json::from_slice::<Value>(&buf),
            Err(error) if error.is_eof()
        )),
        Ok(_) => Ok(false),
        Err(error) => Err(io_error(path, error)),
    }
}

fn parse_lines<R: BufRead>(
    mut reader: R,
    context: &Context,
    sink: Sink<'_>,
) -> Result<bool, ParseError> {
    let mut buf = Vec::new();
    let mut line_number: u64 = 0;
    loop {
        let line = read_line_bounded(&mut reader, &mut buf, context.limits.max_record_bytes)
            .map_err(|error| ParseError::Aborted {
                format: "jsonl",
                locator: format!("line:{}", line_number + 1),
                message: error.to_string(),
            })?;
        line_number += 1;
        let locator = format!("line:{line_number}");
        let outcome = match line {
            Line::Eof => return Ok(false),
            Line::TooLong { bytes } => Outcome::Rejected(Reject::new(
                locator,
                RejectReason::RecordTooLarge,
                format!(
                    "line of {bytes} bytes exceeds the maximum record size of {} bytes",
                    context.limits.max_record_bytes
                ),
            )),
            Line::Text if buf.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Text => match std::str::from_utf8(&buf) {
                Err(error) => Outcome::Rejected(Reject::new(
                    locator,
                    RejectReason::InvalidUtf8,
                    format!("invalid UTF-8 at byte {} of the line", error.valid_up_to()),
                )),
                Ok(text) => {
                    match serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}')) {
                        Err(error) => Outcome::Rejected(Reject::new(
                            locator,
                            RejectReason::InvalidJson,
                            error,
                        )),
                        Ok(value) => value_to_outcome(value, locator, Some(line_number), context),
                    }
                }
            },
        };
        if sink(outcome).is_break() {
            return Ok(true);
        }
    }
}

const STOP: &str = "casescope: stopped by the sink";

struct ArrayVisitor<'a, 'b> {
    context: &'a Context,
    sink: &'a mut Sink<'b>,
    budget: Rc<Cell<u64>>,
    elements: &'a Cell<u64>,
}

impl<'de> Visitor<'de> for ArrayVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            self.budget.set(self.context.limits.max_record_bytes as u64);
            let Some(value) = seq.next_element::<Value>()? else {
                return Ok(());
            };
            let n = self.elements.get() + 1;
            self.elements.set(n);
            let outcome = value_to_outcome(value, format!("element:{n}"), None, self.context);
            if (self.sink)(outcome).is_break() {
                return Err(de::Error::custom(STOP));
            }
        }
    }
}

fn parse_array<R: Read>(
    reader: R,
    context: &Context,
    mut sink: Sink<'_>,
) -> Result<bool, ParseError> {
    let budget = Rc::new(Cell::new(context.limits.max_record_bytes as u64));
    let elements = Cell::new(0);
    let mut deserializer = serde_json::Deserializer::from_reader(Budgeted {
        inner: reader,
        remaining: budget.clone(),
    });
    let visitor = ArrayVisitor {
        context,
        sink: &mut sink,
        budget: budget.clone(),
        elements: &elements,
    };
    let result = de::Deserializer::deserialize_seq(&mut deserializer, visitor).and_then(|()| {
        budget.set(u64::MAX);
        deserializer.end()
    });
    match result {
        Ok(()) => Ok(false),
        Err(error) if error.to_string().starts_with(STOP) => Ok(true),
        Err(error) => Err(ParseError::Aborted {
            format: "json",
            locator: format!("element:{}", elements.get() + 1),
            message: error.to_string(),
        }),
    }
}

fn parse_stream<R: Read>(reader: R, context: &Context, sink: Sink<'_>) -> Result<bool, ParseError> {
    let budget = Rc::new(Cell::new(context.limits.max_record_bytes as u64));
    let deserializer = serde_json::Deserializer::from_reader(Budgeted {
        inner: reader,
        remaining: budget.clone(),
    });
    let mut values = deserializer.into_iter::<Value>();
    let mut n: u64 = 0;
    loop {
        budget.set(context.limits.max_record_bytes as u64);
        let Some(next) = values.next() else {
            return Ok(false);
        };
        n += 1;
        let value = next.map_err(|error| ParseError::Aborted {
            format: "json",
            locator: format!("value:{n}"),
            message: error.to_string(),
        })?;
        if sink(value_to_outcome(value, format!("value:{n}"), None, context)).is_break() {
            return Ok(true);
        }
    }
}
