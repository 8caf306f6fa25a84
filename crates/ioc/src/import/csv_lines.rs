//! CSV (with a DFIR-IRIS, MISP or our header, or none) and plain lists.

use super::{Entry, ImportError, Record, Summary, entry, parse_time, refused, split_labels};
use crate::kind::{IocType, Tlp, composite};
use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;

/// Longest line of a plain list; a longer one is refused (and skipped to its end).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Where each column is, by header name.
#[derive(Debug, Default)]
struct Columns {
    value: usize,
    kind: Option<usize>,
    description: Option<usize>,
    labels: Option<usize>,
    tlp: Option<usize>,
    confidence: Option<usize>,
    source: Option<usize>,
    first_seen: Option<usize>,
    last_seen: Option<usize>,
    expires: Option<usize>,
    to_ids: Option<usize>,
}

impl Columns {
    /// The columns of a header row, if it is one.
    fn of(header: &[String]) -> Option<Columns> {
        let find = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
        let value = find(&["ioc_value", "value", "indicator", "ioc"])?;
        Some(Columns {
            value,
            kind: find(&["ioc_type", "type", "indicator_type", "ioc type"]),
            description: find(&["ioc_description", "description", "comment"]),
            labels: find(&["ioc_tags", "tags", "labels", "tag"]),
            tlp: find(&["ioc_tlp", "tlp"]),
            confidence: find(&["confidence", "ioc_confidence"]),
            source: find(&["source", "ioc_source"]),
            first_seen: find(&["first_seen", "valid_from", "first seen"]),
            last_seen: find(&["last_seen", "last seen"]),
            expires: find(&["expires_at", "expiry", "valid_until", "expires"]),
            to_ids: find(&["to_ids"]),
        })
    }
}

fn cell(row: &[String], index: Option<usize>) -> &str {
    index.and_then(|i| row.get(i)).map_or("", |s| s.trim())
}

/// The record a CSV row gives, or its refusal; several for a composite type.
fn row_entries(
    row: &[String],
    columns: &Columns,
    line: u64,
    emit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let locator = format!("line:{line}");
    let value = cell(row, Some(columns.value));
    let mut base = Record {
        description: cell(row, columns.description).chars().take(4096).collect(),
        labels: split_labels(cell(row, columns.labels)),
        source: Some(cell(row, columns.source).to_string()).filter(|s| !s.is_empty()),
        first_seen: parse_time(cell(row, columns.first_seen)),
        last_seen: parse_time(cell(row, columns.last_seen)),
        expires_at: parse_time(cell(row, columns.expires)),
        ..Record::default()
    };
    let tlp = cell(row, columns.tlp);
    if !tlp.is_empty() {
        match Tlp::parse(tlp) {
            Some(tlp) => base.tlp = Some(tlp),
            None => {
                return emit(refused(
                    locator,
                    value,
                    format!("unknown TLP {tlp:?} (clear, green, amber, amber+strict or red)"),
                ));
            }
        }
    }
    let confidence = cell(row, columns.confidence);
    if !confidence.is_empty() {
        match confidence.parse::<u32>() {
            Ok(c) if c <= 100 => base.confidence = Some(c),
            _ => {
                return emit(refused(
                    locator,
                    value,
                    format!("confidence {confidence:?} is not a number from 0 to 100"),
                ));
            }
        }
    }
    if columns.to_ids.is_some() {
        let to_ids = cell(row, columns.to_ids).to_ascii_lowercase();
        if matches!(to_ids.as_str(), "0" | "false" | "no") {
            base.enabled = Some(false);
        }
    }
    let type_name = cell(row, columns.kind);
    if columns.kind.is_none() || type_name.is_empty() {
        return emit(entry(locator, None, value, base));
    }
    if let Some(parts) = composite(type_name) {
        let values: Vec<&str> = value.split('|').collect();
        if values.len() != parts.len() {
            return emit(refused(
                locator,
                value,
                format!(
                    "type {type_name} needs {} values separated by |",
                    parts.len()
                ),
            ));
        }
        let mut any = false;
        for (index, (kind, part)) in parts.iter().zip(values).enumerate() {
            if let Some(kind) = kind {
                any = true;
                emit(entry(
                    format!("{locator}#{}", index + 1),
                    Some(*kind),
                    part,
                    base.clone(),
                ))?;
            }
        }
        if !any {
            return emit(refused(
                locator,
                value,
                format!("type {type_name} names no indicator type known here"),
            ));
        }
        return ControlFlow::Continue(());
    }
    match IocType::from_name(type_name) {
        Some(kind) => emit(entry(locator, Some(kind), value, base)),
        None => emit(refused(
            locator,
            value,
            format!("unknown IOC type {type_name:?}"),
        )),
    }
}

pub(super) fn read_csv(
    input: impl Read,
    emit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> Result<Summary, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(None)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut columns: Option<Columns> = None;
    let mut plain = false;
    let mut first = true;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                match error.kind() {
                    csv::ErrorKind::Io(io) => {
                        return Err(ImportError::new(format!(
                            "reading line {line} failed: {io}"
                        )));
                    }
                    _ => {
                        if emit(refused(
                            format!("line:{line}"),
                            "",
                            format!("not a CSV record: {error}"),
                        ))
                        .is_break()
                        {
                            break;
                        }
                        continue;
                    }
                }
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let row: Result<Vec<String>, _> = record
            .iter()
            .map(|f| std::str::from_utf8(f).map(str::to_string))
            .collect();
        let Ok(row) = row else {
            if emit(refused(format!("line:{line}"), "", "not UTF-8 text")).is_break() {
                break;
            }
            continue;
        };
        if row.iter().all(|c| c.is_empty()) {
            continue;
        }
        if first {
            first = false;
            let header: Vec<String> = row
                .iter()
                .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
                .collect();
            if let Some(found) = Columns::of(&header) {
                columns = Some(found);
                continue;
            }
            if row.len() == 1 {
                plain = true;
            } else if IocType::from_name(&row[0]).is_some() || composite(&row[0]).is_some() {
                // `type,value` rows without a header.
                columns = Some(Columns {
                    value: 1,
                    kind: Some(0),
                    ..Columns::default()
                });
            } else {
                return Err(ImportError::new(
                    "line 1: no recognised header (ioc_value,ioc_type,… as DFIR-IRIS writes it, or type,value,…) and not a one-column list",
                ));
            }
        }
        if row[0].starts_with('#') && (plain || row.len() == 1) {
            continue;
        }
        let flow = if plain {
            emit(entry(
                format!("line:{line}"),
                None,
                &row.join(","),
                Record::default(),
            ))
        } else {
            let Some(columns) = &columns else { break };
            row_entries(&row, columns, line, emit)
        };
        if flow.is_break() {
            break;
        }
    }
    Ok(Summary::default())
}

pub(super) fn read_text(
    input: impl Read,
    emit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> Result<Summary, ImportError> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        number += 1;
        let (read, too_long) = read_line(&mut reader, &mut line)
            .map_err(|e| ImportError::new(format!("reading line {number} failed: {e}")))?;
        if read == 0 {
            break;
        }
        let locator = format!("line:{number}");
        if too_long {
            let start = String::from_utf8_lossy(&line[..line.len().min(512)]).into_owned();
            if emit(refused(
                locator,
                &start,
                format!("line longer than {MAX_LINE_BYTES} bytes"),
            ))
            .is_break()
            {
                break;
            }
            continue;
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            if emit(refused(locator, "", "not UTF-8 text")).is_break() {
                break;
            }
            continue;
        };
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if emit(entry(locator, None, text, Record::default())).is_break() {
            break;
        }
    }
    Ok(Summary::default())
}

/// Reads one line into `line` (without its end), keeping at most
/// [`MAX_LINE_BYTES`]; returns (bytes consumed, whether the line was longer).
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut too_long = false;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        let (chunk, done) = match memchr(buffer) {
            Some(end) => (&buffer[..end], Some(end + 1)),
            None => (buffer, None),
        };
        if line.len() + chunk.len() > MAX_LINE_BYTES {
            too_long = true;
            let room = MAX_LINE_BYTES.saturating_sub(line.len());
            line.extend_from_slice(&chunk[..room.min(chunk.len())]);
        } else {
            line.extend_from_slice(chunk);
        }
        let used = done.unwrap_or(buffer.len());
        reader.consume(used);
        consumed += used;
        if done.is_some() {
            break;
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok((consumed, too_long))
}

fn memchr(buffer: &[u8]) -> Option<usize> {
    buffer.iter().position(|b| *b == b'\n')
}
