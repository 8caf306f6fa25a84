//! Reading IOCs from CSV (DFIR-IRIS or MISP headers, or ours), plain lists, STIX 2.1
//! bundles and MISP event JSON.
//!
//! Every reader streams: it hands each record to a callback as soon as it is read (an
//! [`Entry`]: an IOC, or a refusal with its reason), with a locator saying where it was
//! (`line:12`, `objects[3]`, `Attribute[7]`). One bad record never stops a read; an
//! input that cannot be read on (malformed JSON, a CSV without a recognisable header)
//! ends it with an [`ImportError`] naming the place — the records handed over before it
//! are the caller's to keep or drop (the ioc service drops them: an import is all or
//! nothing). Duplicates are the caller's to count ([`Seen`]).

mod csv_lines;
mod misp;
mod stix;

use crate::canon::{canonicalize, detect};
use crate::kind::{IocType, Tlp};
use std::collections::HashSet;
use std::io::Read;
use std::ops::ControlFlow;

pub use stix::parse_pattern;

/// A refused value is shown with at most this many characters.
const SHOWN_VALUE_CHARS: usize = 256;

/// The formats [`read`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// With a header row: DFIR-IRIS's `ioc_value,ioc_type,…`, or `type,value,…` (ours
    /// and MISP's CSV export); or without one: one value per line, types detected.
    Csv,
    /// One value per line (`#` comments and blank lines skipped), types detected.
    Text,
    /// A STIX 2.1 bundle.
    Stix,
    /// A MISP event (`{"Event": …}`), a list of them, or a `{"response": […]}`.
    Misp,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        Some(match name.to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "text" | "txt" | "lines" | "list" => Format::Text,
            "stix" | "stix2" | "stix21" => Format::Stix,
            "misp" => Format::Misp,
            _ => return None,
        })
    }

    /// The format a file's name suggests, looking into JSON to tell STIX from MISP.
    pub fn guess(file_name: &str, head: &[u8]) -> Option<Format> {
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            return Some(Format::Csv);
        }
        if lower.ends_with(".txt") || lower.ends_with(".list") {
            return Some(Format::Text);
        }
        if lower.ends_with(".json") || lower.ends_with(".stix") {
            let text = String::from_utf8_lossy(head);
            if text.contains("\"bundle\"") || text.contains("\"spec_version\"") {
                return Some(Format::Stix);
            }
            if text.contains("\"Event\"")
                || text.contains("\"Attribute\"")
                || text.contains("\"response\"")
            {
                return Some(Format::Misp);
            }
        }
        None
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// MISP: also attributes not marked `to_ids` (by default they are refused with that
    /// reason).
    pub misp_all_attributes: bool,
}

/// One IOC read from an input, canonical.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub ioc_type: Option<IocType>,
    /// As written in the input (trimmed).
    pub value: String,
    pub normalized: String,
    pub description: String,
    pub labels: Vec<String>,
    pub tlp: Option<Tlp>,
    pub confidence: Option<u32>,
    pub source: Option<String>,
    /// Microseconds since the epoch.
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    pub expires_at: Option<i64>,
    /// `Some(false)` when the input marks it as not for detection.
    pub enabled: Option<bool>,
}

impl Record {
    pub fn kind(&self) -> IocType {
        self.ioc_type.unwrap_or(IocType::Other)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Ioc(Box<Record>),
    Refused { value: String, reason: String },
}

/// One record of an input and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub locator: String,
    pub item: Item,
}

/// What a read saw besides its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Objects of a STIX bundle or MISP event that are not indicators (identities,
    /// relationships, reports, …): not records, only counted.
    pub other_objects: u64,
}

/// An input that could not be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ImportError {
    pub message: String,
}

impl ImportError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ImportError {
            message: message.into(),
        }
    }
}

/// Reads `input` as `format`, calling `on_entry` per record; `on_entry` may stop the
/// read with `Break` (e.g. a record limit).
pub fn read(
    format: Format,
    input: impl Read,
    options: &Options,
    on_entry: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> Result<Summary, ImportError> {
    match format {
        Format::Csv => csv_lines::read_csv(input, on_entry),
        Format::Text => csv_lines::read_text(input, on_entry),
        Format::Stix => stix::read(input, on_entry),
        Format::Misp => misp::read(input, options, on_entry),
    }
}

/// A value shown in a refusal: at most [`SHOWN_VALUE_CHARS`] characters.
pub fn shown(value: &str) -> String {
    let value = value.trim();
    match value.char_indices().nth(SHOWN_VALUE_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

fn refused(locator: String, value: &str, reason: impl Into<String>) -> Entry {
    Entry {
        locator,
        item: Item::Refused {
            value: shown(value),
            reason: reason.into(),
        },
    }
}

/// The entry of `value` as `kind` (or of a detected type when `kind` is `None`), with
/// the type refined where the input's type is loose: an address with a prefix is a
/// CIDR, a file name with a directory is a path.
pub(crate) fn entry(
    locator: String,
    kind: Option<IocType>,
    value: &str,
    mut record: Record,
) -> Entry {
    let result = match kind {
        None => detect(value),
        Some(kind) => {
            let trimmed = value.trim();
            let kind = match kind {
                IocType::Ip if trimmed.contains('/') => IocType::Cidr,
                IocType::FileName | IocType::ProcessName if trimmed.contains(['\\', '/']) => {
                    IocType::FilePath
                }
                other => other,
            };
            canonicalize(kind, trimmed).map(|c| (kind, c))
        }
    };
    match result {
        Ok((kind, normalized)) => {
            record.ioc_type = Some(kind);
            record.value = value.trim().to_string();
            record.normalized = normalized;
            Entry {
                locator,
                item: Item::Ioc(Box::new(record)),
            }
        }
        Err(reason) => refused(locator, value, reason),
    }
}

/// RFC 3339 text, a date (`2024-03-11`) or seconds since the epoch → microseconds.
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_micros());
    }
    if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Some(time.and_utc().timestamp_micros());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_micros());
    }
    if let Ok(seconds) = text.parse::<i64>() {
        return seconds.checked_mul(1_000_000);
    }
    None
}

/// Labels from a comma- or semicolon-separated list, trimmed, without empties.
pub(crate) fn split_labels(text: &str) -> Vec<String> {
    text.split([',', ';'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.chars().take(128).collect())
        .collect()
}

/// Counts repeats of (type, normalised value) within one input. Bounded by the
/// caller's record limit.
#[derive(Debug, Default)]
pub struct Seen(HashSet<(IocType, String)>);

impl Seen {
    /// `true` the first time a (type, value) is offered.
    pub fn first(&mut self, kind: IocType, normalized: &str) -> bool {
        self.0.insert((kind, normalized.to_string()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests;

/// The STIX pattern an IOC is exported as.
pub fn stix_pattern(kind: IocType, value: &str) -> String {
    stix::pattern_of(kind, value)
}
