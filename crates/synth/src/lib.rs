//! Synthetic Windows event logs made by the project itself.
//!
//! This crate WRITES valid EVTX files (the binary format of Windows event logs) so that tests
//! and benchmarks have fixtures of their own instead of third-party samples. [`EvtxWriter`]
//! streams [`SynthEvent`]s into 64 KiB chunks, one chunk in memory at a time, with the file
//! header, chunk headers and CRC32s the format defines; [`realistic_events`] (or a
//! [`Scenario`]) generates a deterministic, seeded mix of Security (4624, 4625, 4688, 4720,
//! 4732) and Sysmon (1, 3, 11, 13) events, a few of them suspicious, some with non-ASCII text.
//!
//! What it does not do: it reads nothing (the `evtx` crate is the reader, in its tests); it
//! writes no `RenderingInfo`, no `Correlation` IDs, and every `EventData` value is a string.
//!
//! Every record is a BinXML template instance, as in the logs Windows writes: the record holds
//! its values, and its template holds the rest. A template is one per record shape (whether
//! `Provider Guid` and `Security UserID` are there and written as GUID and SID or as text, and
//! the `EventData` names in order): the `System` elements with a substitution for each value,
//! the `Data` elements with their `Name` as literal text and a substitution for the value.
//! Templates are per chunk, like names: each is defined inline in the first record of its
//! shape in the chunk and linked from the chunk header's template table (bucket: template ID
//! modulo 32), and later records of that shape refer to it by offset. Template IDs and GUIDs
//! come from a hash of the shape, so a given shape has the same ones in every file. Element
//! names are defined inline at their first use in the chunk (and linked from the chunk's
//! string table). The `evtx` crate renders the records to the same JSON as a real log's
//! `System` section: numbers for `EventID`, `Version`, `Level`, `Task`, `Opcode`,
//! `EventRecordID` and `Execution`, a FILETIME for `TimeCreated`, a hexadecimal `Keywords`, a
//! GUID and a SID where real logs have them. The files are not a byte-for-byte imitation of
//! what Windows writes (its templates come from each provider's manifest, with optional
//! substitutions and dependency IDs), and only the `evtx` crate is tested as a reader.

mod binxml;
mod chunk;
mod generator;
mod profiles;
mod template;
mod values;
mod writer;

pub use generator::{Events, Scenario, realistic_events};
pub use writer::{EvtxWriter, write_evtx_file};

use chrono::{DateTime, Utc};

/// One event to write: the `System` section of a Windows event plus its `EventData`.
///
/// Empty `provider`, `channel` or `computer` text reads back as `null`: the `evtx` crate
/// renders empty elements so, and leaves out empty attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthEvent {
    /// `EventRecordID`. [`EvtxWriter::push`] assigns it (1, 2, 3, … in the file) and ignores
    /// this value; the generator sets the ID the writer will assign.
    pub record_id: u64,
    /// `TimeCreated SystemTime`, also the record header's timestamp. EVTX stores 100 ns
    /// ticks: anything finer is truncated.
    pub timestamp: DateTime<Utc>,
    /// `Provider Name`, e.g. `Microsoft-Windows-Security-Auditing`.
    pub provider: String,
    /// `Provider Guid`, e.g. `{54849625-5478-4994-a5ba-3e3b0328c30d}`. Written as a GUID
    /// value when it is in the form the `evtx` crate renders (braced, lowercase), otherwise as
    /// text, so that it always reads back as written.
    pub provider_guid: Option<String>,
    pub event_id: u16,
    pub version: u8,
    pub level: u8,
    pub task: u16,
    pub opcode: u8,
    /// Rendered as `0x…` in lowercase hexadecimal.
    pub keywords: u64,
    pub channel: String,
    pub computer: String,
    /// `Security UserID`: a SID value when it is a canonical `S-1-…` SID, otherwise text;
    /// `None` writes an empty `<Security/>`, as the Security log does.
    pub security_user_id: Option<String>,
    /// `Execution ProcessID`.
    pub process_id: u32,
    /// `Execution ThreadID`.
    pub thread_id: u32,
    /// `<EventData><Data Name="…">value</Data>…`, in order. An empty value reads back as `""`.
    pub data: Vec<(String, String)>,
}

/// Why an event or a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error writing EVTX: {0}")]
    Io(#[from] std::io::Error),
    /// The encoded record does not fit in an empty chunk (64 KiB less its 512-byte header).
    #[error(
        "event {event_id} of {provider} does not fit in one EVTX chunk \
         (a record can take at most {limit} bytes)"
    )]
    EventTooLarge {
        event_id: u16,
        provider: String,
        limit: usize,
    },
    /// BinXML strings end at a NUL, so text with one would read back truncated.
    #[error("{field} contains a NUL character, which EVTX text cannot hold")]
    NulInText { field: String },
    /// Outside what a FILETIME holds and the `evtx` crate reads back.
    #[error("timestamp {0} is outside 1601-01-01 ..= 9999-12-29, the range EVTX readers accept")]
    TimestampOutOfRange(DateTime<Utc>),
    /// Only after 2^64 - 1 records.
    #[error("record IDs exhausted")]
    RecordIdOverflow,
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
