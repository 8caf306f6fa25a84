//! CSV evidence: a header row, then one record per row. Rows become objects of strings
//! (header → value) and are normalised like JSON records. A row with invalid UTF-8 or
//! the wrong number of fields is rejected; a physical line longer than the record bound
//! stops the file (the CSV reader would otherwise buffer it whole).

use crate::json_source::object_to_outcome;
use crate::{Context, FormatError, Outcome, ParseError, Reject, RejectReason, io_error};
use serde_json::{Map, Value};
use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;

/// Fails the read once a line runs longer than `max` bytes.
struct LineGuard<R> {
    inner: R,
    max: usize,
    current: usize,
}

impl<R: Read> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        for byte in &buf[..read] {
            if *byte == b'\n' {
                self.current = 0;
            } else {
                self.current += 1;
                if self.current > self.max {
                    return Err(std::io::Error::other(format!(
                        "a line exceeds the maximum record size of {} bytes",
                        self.max
                    )));
                }
            }
        }
        Ok(read)
    }
}

pub fn parse(
    path: &Path,
    context: &Context,
    sink: &mut dyn FnMut(Outcome) -> ControlFlow<()>,
) -> Result<bool, ParseError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(LineGuard {
            inner: file,
            max: context.limits.max_record_bytes,
            current: 0,
        });
    let name = path.display().to_string();
    let header = reader.byte_headers().map_err(|error| ParseError::Aborted {
        format: "csv",
        locator: "line:1".into(),
        message: error.to_string(),
    })?;
    let mut columns = Vec::with_capacity(header.len());
    for (index, raw) in header.iter().enumerate() {
        let text = std::str::from_utf8(raw).map_err(|_| {
            ParseError::Format(FormatError::ContentMismatch {
                name: name.clone(),
                format: "csv",
                reason: format!("header column {} is not valid UTF-8", index + 1),
            })
        })?;
        let text = text.trim().trim_start_matches('\u{feff}');
        let column = if text.is_empty() || columns.contains(&text.to_string()) {
            format!("column_{}", index + 1)
        } else {
            text.to_string()
        };
        columns.push(column);
    }
    let mut record = csv::ByteRecord::new();
    let mut row: u64 = 0;
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|error| ParseError::Aborted {
                format: "csv",
                locator: format!("row:{}", row + 1),
                message: error.to_string(),
            })?;
        if !more {
            return Ok(false);
        }
        row += 1;
        let line = record.position().map(|p| p.line());
        let locator = format!("row:{row}");
        let outcome = if record.len() != columns.len() {
            Outcome::Rejected(Reject::new(
                locator,
                RejectReason::CsvFieldCount,
                format!("{} fields, the header has {}", record.len(), columns.len()),
            ))
        } else {
            let mut object = Map::new();
            let mut bad_column = None;
            for (column, value) in columns.iter().zip(record.iter()) {
                match std::str::from_utf8(value) {
                    Ok(text) => {
                        object.insert(column.clone(), Value::String(text.to_string()));
                    }
                    Err(_) => {
                        bad_column = Some(column.clone());
                        break;
                    }
                }
            }
            match bad_column {
                Some(column) => Outcome::Rejected(Reject::new(
                    locator,
                    RejectReason::InvalidUtf8,
                    format!("column {column:?} is not valid UTF-8"),
                )),
                None => object_to_outcome(object, "csv", locator, line, context),
            }
        };
        if sink(outcome).is_break() {
            return Ok(true);
        }
    }
}
