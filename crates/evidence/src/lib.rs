//! Evidence parsing and normalisation, shared by every service that reads evidence.
//!
//! Turns an evidence file — Windows EVTX, JSON/JSONL/NDJSON, or CSV — into a stream of
//! [`Outcome`]s: a normalised [`Event`] per readable record, or a [`Reject`] saying which
//! record (locator) could not be read and why. Every record read yields exactly one
//! outcome, so `read = events + rejected` by construction ([`Summary`]).
//!
//! Event ids are deterministic: a hash of (case, evidence SHA-256, record locator), so
//! ingesting the same evidence again yields the same ids and a retry overwrites instead
//! of duplicating ([`event_id`]).
//!
//! Parsing is bounded: JSON lines and CSV rows over [`Limits::max_record_bytes`] are
//! rejected (JSON) or fail the file (CSV) without being buffered whole. This crate does
//! not decide where events go (that is the event store), nor isolate the EVTX parser in
//! another process (the ingest stage does); ZIP extraction is in [`archive`].

pub mod archive;
pub mod case_archive;
mod csv_source;
mod evtx_chunks;
mod evtx_source;
pub use evtx_source::{Decoding, RecordView, inspect as inspect_evtx, inspect_decoded};
mod evtx_values;
mod format;
mod json_source;
mod lines;
mod normalize;
mod timestamp;

pub use format::{Format, FormatError, sniff_format};
pub use normalize::{
    Event, FieldName, Fields, FieldsIter, RawJson, SystemValues, WindowsParts,
    normalize_windows_record, normalize_windows_sections, normalize_windows_text,
    normalize_windows_values,
};
pub use timestamp::{TIMESTAMP_FIELDS, parse_timestamp};

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

/// Bounds applied while parsing one file.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest JSON line / CSV row accepted.
    pub max_record_bytes: usize,
    /// Threads the EVTX parser may use (0 = all cores).
    pub evtx_threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: 16 * 1024 * 1024,
            evtx_threads: 0,
        }
    }
}

/// What is being parsed: identifies the evidence so event ids are deterministic.
#[derive(Debug, Clone)]
pub struct Context {
    pub case_id: String,
    pub file_id: String,
    /// Lowercase hex SHA-256 of the evidence file's bytes.
    pub evidence_sha256: String,
    /// JSON/CSV: the field holding the event time; `None` = try [`TIMESTAMP_FIELDS`].
    pub timestamp_field: Option<String>,
    pub limits: Limits,
    /// Keep each record's original JSON in [`Event::raw`]; `false` leaves it `null`
    /// (one-shot analysis, which never shows it, saves checking and holding the text).
    pub keep_raw: bool,
}

/// Why a record was not turned into an event. Stable names (`as_str`) are stored and
/// shown to analysts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// The EVTX parser could not decode the record.
    EvtxRecord,
    /// A whole EVTX chunk could not be decoded (its records are not counted individually).
    EvtxChunk,
    InvalidJson,
    /// The line or row holds JSON that is not an object (e.g. a bare number).
    NotAnObject,
    RecordTooLarge,
    InvalidUtf8,
    MissingTimestamp,
    InvalidTimestamp,
    CsvFieldCount,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::EvtxRecord => "evtx_record_unreadable",
            RejectReason::EvtxChunk => "evtx_chunk_unreadable",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "json_not_an_object",
            RejectReason::RecordTooLarge => "record_too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::MissingTimestamp => "timestamp_missing",
            RejectReason::InvalidTimestamp => "timestamp_invalid",
            RejectReason::CsvFieldCount => "csv_field_count",
        }
    }
}

/// A record that could not be read: where, why, and the parser's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// e.g. `record:1234`, `chunk:3`, `line:56`, `row:7`.
    pub locator: String,
    pub reason: RejectReason,
    /// Human-readable detail, at most 500 characters.
    pub detail: String,
}

impl Reject {
    fn new(locator: String, reason: RejectReason, detail: impl std::fmt::Display) -> Self {
        let mut detail = detail.to_string();
        if detail.len() > 500 {
            let cut = (0..=500)
                .rev()
                .find(|i| detail.is_char_boundary(*i))
                .unwrap_or(0);
            detail.truncate(cut);
            detail.push('…');
        }
        Self {
            locator,
            reason,
            detail,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Event(Box<Event>),
    Rejected(Reject),
}

/// Counts for one parsed file. Invariant: `records_read == events + rejected`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub records_read: u64,
    pub events: u64,
    pub rejected: u64,
    pub rejects_by_reason: BTreeMap<&'static str, u64>,
    /// True when the sink asked to stop before the end of the file.
    pub stopped_early: bool,
}

impl Summary {
    fn count(&mut self, outcome: &Outcome) {
        self.records_read += 1;
        match outcome {
            Outcome::Event(_) => self.events += 1,
            Outcome::Rejected(reject) => {
                self.rejected += 1;
                *self
                    .rejects_by_reason
                    .entry(reject.reason.as_str())
                    .or_default() += 1;
            }
        }
    }
}

/// A failure of the whole file (as opposed to one record).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("not a readable EVTX file: {0}")]
    Evtx(String),
    #[error("{format} parse stopped at {locator}: {message}")]
    Aborted {
        format: &'static str,
        locator: String,
        message: String,
    },
}

/// The deterministic id of the event at `locator` in the evidence: the first 128 bits of
/// SHA-256(case NUL evidence-sha256 NUL locator), as 32 lowercase hex characters.
pub fn event_id(case_id: &str, evidence_sha256: &str, locator: &str) -> String {
    EventIds::new(case_id, evidence_sha256).id(locator)
}

/// [`event_id`] for the events of one evidence file: the hash of the shared prefix
/// (case, evidence SHA-256) is taken once, so each event hashes its locator only.
#[derive(Clone)]
pub struct EventIds(Sha256);

impl EventIds {
    pub fn new(case_id: &str, evidence_sha256: &str) -> EventIds {
        let mut hasher = Sha256::new();
        hasher.update(case_id.as_bytes());
        hasher.update([0]);
        hasher.update(evidence_sha256.as_bytes());
        hasher.update([0]);
        EventIds(hasher)
    }

    pub fn id(&self, locator: &str) -> String {
        let mut hasher = self.0.clone();
        hasher.update(locator.as_bytes());
        hex::encode(&hasher.finalize()[..16])
    }
}

/// Parses `path` as `format`, handing every outcome to `sink` in file order. `sink`
/// returns `Break` to stop early (e.g. shutdown); the summary then says so.
pub fn parse_file(
    path: &Path,
    format: Format,
    context: &Context,
    sink: &mut dyn FnMut(Outcome) -> ControlFlow<()>,
) -> Result<Summary, ParseError> {
    let mut summary = Summary::default();
    let mut counted = |outcome: Outcome| {
        summary.count(&outcome);
        sink(outcome)
    };
    let stopped = match format {
        Format::Evtx => evtx_source::parse(path, context, Decoding::default(), &mut counted)?,
        Format::Json | Format::Jsonl => json_source::parse(path, format, context, &mut counted)?,
        Format::Csv => csv_source::parse(path, context, &mut counted)?,
        Format::Zip => {
            return Err(ParseError::Format(FormatError::NotParseable {
                format: "zip",
                hint: "extract the archive's members first (casescope_evidence::archive)",
            }));
        }
    };
    summary.stopped_early = stopped;
    Ok(summary)
}

/// [`parse_file`] for an EVTX file, decoding its records as `decoding` says (tests
/// compare both ways).
pub fn parse_evtx_decoded(
    path: &Path,
    context: &Context,
    decoding: Decoding,
    sink: &mut dyn FnMut(Outcome) -> ControlFlow<()>,
) -> Result<Summary, ParseError> {
    let mut summary = Summary::default();
    let stopped = evtx_source::parse(path, context, decoding, &mut |outcome| {
        summary.count(&outcome);
        sink(outcome)
    })?;
    summary.stopped_early = stopped;
    Ok(summary)
}

/// An event's header values and fields derived again from its stored record
/// ([`Event::raw`]) and its source, exactly as ingest derived them: how an event store
/// that keeps the record once (not the fields beside it) reads the fields back. An EVTX
/// record read from its template values has the same fields as its rendered record
/// (`tests/evtx_raw.rs` checks it on every record of the corpus).
pub fn normalize_stored(source: &str, raw: &str) -> Result<WindowsParts, serde_json::Error> {
    let mut parts = match source {
        "evtx" => normalize_windows_text(raw)?,
        _ => json_source::normalize_object(&serde_json::from_str(raw)?),
    };
    if let Some(pairs) = parts.pairs.take() {
        parts.fields = pairs
            .into_iter()
            .map(|(name, value)| (name.as_ref().to_string(), value))
            .collect();
    }
    Ok(parts)
}

/// Reads a file's metadata errors into [`ParseError::Io`].
fn io_error(path: &Path, error: impl std::fmt::Display) -> ParseError {
    ParseError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_deterministic_and_distinct() {
        let a = event_id("case", "abc", "record:1");
        assert_eq!(a, event_id("case", "abc", "record:1"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, event_id("case", "abc", "record:2"));
        assert_ne!(a, event_id("case2", "abc", "record:1"));
        assert_ne!(a, event_id("case", "abd", "record:1"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(event_id("ab", "c", "x"), event_id("a", "bc", "x"));
        // The one-prefix form gives the same ids, and stays the same after many uses.
        let ids = EventIds::new("case", "abc");
        for n in 0..3 {
            assert_eq!(
                ids.id(&format!("record:{n}")),
                event_id("case", "abc", &format!("record:{n}"))
            );
        }
        // The ids are SHA-256(case NUL sha NUL locator), as documented.
        let mut hasher = Sha256::new();
        hasher.update(b"case\0abc\0record:1");
        assert_eq!(a, hex::encode(&hasher.finalize()[..16]));
    }
}
