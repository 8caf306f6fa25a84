//! A record's fields read straight from its template's values, with no JSON in between.
//!
//! Nearly every EVTX record is one template instance: a definition shared by the chunk's
//! records of that event type, and the record's own substitution values. Rendering the
//! record as JSON and reading the text back ([`crate::normalize::normalize_windows_text`])
//! costs most of parsing. Here each definition is read once per chunk into a
//! [`Program`]: which value is the event id, the channel, … and which value is
//! `EventData`'s `Data Name="CommandLine"`. A record's fields are then its values, put
//! where the program says, through the same normalisation the JSON path uses
//! ([`windows_system_parts`], [`put_data_value`]).
//!
//! The fields are the ones the JSON path makes, value for value: the values are given
//! the form the `evtx` crate renders them in (numbers as numbers, times, GUIDs, SIDs
//! and hex values as its text). `EventData` may be in the template or, as Windows
//! writes most events, in one of its values (a BinXML fragment instancing a template of
//! its own). Anything else — `UserData`, unnamed or repeated `Data`, arrays, ANSI text,
//! floating-point values, literal values other than text, an empty value where the
//! element's form decides between `null` and `""` — is not programmed: such a record
//! returns `None` and goes through the JSON path
//! (`crates/evidence/tests/formats.rs` compares both paths record by record).

use crate::normalize::{
    FieldName, MAX_FIELDS, SYSTEM_FIELD_NAMES, SystemValues, WindowsParts, field_name,
    put_data_value, system_parts, windows_system_parts,
};
use evtx::EvtxRecord;
use evtx::binxml::value_variant::{FileTime, SysTime};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Programs of one chunk's template definitions, by definition offset (`None`: a
/// definition the JSON path reads). Offsets are chunk-relative: a cache is used for
/// one chunk only (the evtx crate clones the record closure, and so a new cache, for
/// each chunk).
#[derive(Clone, Default)]
pub(crate) struct Programs {
    /// Definitions of whole events (`Event` roots).
    events: HashMap<u32, Option<Arc<Program>>>,
    /// Definitions of data sections held in a value of the event (`EventData` roots).
    sections: HashMap<u32, Option<Arc<Vec<DataValue>>>>,
    /// Hand the fields over as pairs ([`WindowsParts::pairs`]) rather than a map.
    pairs: bool,
}

impl Programs {
    /// Programs whose records hand their fields over as pairs.
    pub(crate) fn giving_pairs() -> Programs {
        Programs {
            pairs: true,
            ..Programs::default()
        }
    }
}

/// Most template definitions compiled per chunk; later ones go through the JSON path.
const MAX_PROGRAMS: usize = 256;

/// The cached program for `offset`, compiling it on first use.
fn cached<T>(
    map: &mut HashMap<u32, Option<Arc<T>>>,
    offset: u32,
    compile: impl FnOnce() -> Option<Arc<T>>,
) -> Option<Arc<T>> {
    if let Some(program) = map.get(&offset) {
        return program.clone();
    }
    if map.len() >= MAX_PROGRAMS {
        return None;
    }
    let program = compile();
    map.insert(offset, program.clone());
    program
}

/// The program of the definition at `offset`: from the chunk's cache, else this
/// thread's ([`shared`]), else compiled.
fn program_at<T>(
    chunk_cache: &mut HashMap<u32, Option<Arc<T>>>,
    pick: fn(&mut Shared) -> &mut ByKey<T>,
    chunk: &[u8],
    offset: u32,
    compile: impl FnOnce() -> Option<T>,
) -> Option<Arc<T>> {
    cached(chunk_cache, offset, || shared(chunk, offset, pick, compile))
}

/// Programs compiled on this thread, by their definition's key ([`definition_key`]):
/// a chunk's first record of each event type carries its template, so each chunk
/// (~55 records of the synthetic logs) would compile the same programs again.
#[derive(Default)]
struct Shared {
    events: ByKey<Program>,
    sections: ByKey<Vec<DataValue>>,
    /// Key bytes held: both maps are emptied past [`MAX_SHARED_BYTES`] (or
    /// [`MAX_SHARED_PROGRAMS`] programs).
    bytes: usize,
}

/// Programs by definition key. Fx-hashed (keys are a few KiB): a crafted log could
/// make keys collide, which slows lookups in a map this size but changes no result
/// (keys are compared whole).
type ByKey<T> = HashMap<Vec<u8>, Option<Arc<T>>, rustc_hash::FxBuildHasher>;

/// Programs the per-thread cache holds at most (real logs have a few dozen templates;
/// a crafted one could have many tiny ones).
const MAX_SHARED_PROGRAMS: usize = 4096;

/// Key bytes the per-thread cache holds at most (its programs are smaller still).
const MAX_SHARED_BYTES: usize = 8 << 20;

thread_local! {
    static SHARED: std::cell::RefCell<Shared> = std::cell::RefCell::default();
}

/// The program of the definition at `offset` from this thread's cache, compiled by
/// `compile` when no definition with its key was; `pick` chooses the cache's map.
fn shared<T>(
    chunk: &[u8],
    offset: u32,
    pick: fn(&mut Shared) -> &mut ByKey<T>,
    compile: impl FnOnce() -> Option<T>,
) -> Option<Arc<T>> {
    let Some(key) = definition_key(chunk, offset) else {
        return compile().map(Arc::new);
    };
    let known = SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        pick(&mut shared).get(&key).cloned()
    });
    if let Some(program) = known {
        return program;
    }
    let program = compile().map(Arc::new);
    SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        let entries = shared.events.len() + shared.sections.len();
        if shared.bytes + key.len() > MAX_SHARED_BYTES || entries >= MAX_SHARED_PROGRAMS {
            *shared = Shared::default();
        }
        shared.bytes += key.len();
        pick(&mut shared).insert(key, program.clone());
    });
    program
}

impl Programs {
    /// The record's System values and fields, or `None` if its template is not
    /// programmed or one of its values is not in a form this module renders.
    pub(crate) fn decode(&mut self, record: &EvtxRecord<'_>) -> Option<WindowsParts> {
        let start = usize::try_from(record.binxml_offset).ok()?;
        let end = start.checked_add(usize::try_from(record.binxml_size).ok()?)?;
        self.decode_at(record.chunk.data, start, end)
    }

    /// [`Self::decode`] for the record whose BinXML is `chunk[start..end]`.
    pub(crate) fn decode_at(
        &mut self,
        chunk: &[u8],
        start: usize,
        end: usize,
    ) -> Option<WindowsParts> {
        let instance = Instance::read(chunk, start, end)?;
        let offset = instance.definition;
        let program = program_at(
            &mut self.events,
            |shared| &mut shared.events,
            chunk,
            offset,
            || compile_event(chunk, offset),
        )?;
        program.run(&instance, chunk, self)
    }
}

/// A template instance: its definition's offset and its values (type, position and
/// size in the chunk), read from a BinXML fragment that holds nothing else.
struct Instance {
    definition: u32,
    values: Vec<(u8, usize, usize)>,
}

/// A value type of the BinXML format: scalars 0x00–0x15, handles, BinXML and XML,
/// and arrays of the scalars but null.
fn known_type(kind: u8) -> bool {
    matches!(kind, 0x00..=0x15 | 0x20 | 0x21 | 0x23 | 0x81..=0x95)
}

/// Most values one instance may have (real ones have a few dozen).
const MAX_VALUES: usize = 4096;

impl Instance {
    fn read(chunk: &[u8], start: usize, end: usize) -> Option<Instance> {
        let mut reader = Reader {
            data: chunk.get(..end)?,
            pos: start,
            names: 0,
        };
        let mut token = reader.u8()?;
        if token == 0x0f {
            reader.bytes(3)?; // fragment header
            token = reader.u8()?;
        }
        if token != 0x0c {
            return None;
        }
        reader.bytes(5)?; // unknown byte, template id
        let definition = reader.u32()?;
        if definition as usize == reader.pos {
            // The definition is here: skip it.
            reader.bytes(20)?;
            let size = reader.u32()? as usize;
            reader.bytes(size)?;
        }
        let count = reader.u32()? as usize;
        if count > MAX_VALUES {
            return None;
        }
        let descriptors = reader.bytes(count * 4)?;
        let mut values = Vec::with_capacity(count);
        for descriptor in descriptors.as_chunks::<4>().0 {
            // A type the evtx crate does not know makes it refuse the record.
            if !known_type(descriptor[2]) {
                return None;
            }
            let size = usize::from(u16::from_le_bytes([descriptor[0], descriptor[1]]));
            values.push((descriptor[2], reader.pos, size));
            reader.bytes(size)?;
        }
        // Nothing but the end of the fragment may follow.
        if reader.pos < end && reader.u8()? != 0x00 {
            return None;
        }
        Some(Instance { definition, values })
    }

    /// Value `slot`: its type and bytes.
    fn value<'c>(&self, chunk: &'c [u8], slot: u16) -> Option<(u8, &'c [u8])> {
        let (kind, at, size) = *self.values.get(usize::from(slot))?;
        Some((kind, chunk.get(at..at + size)?))
    }
}

/// Where a value of the record comes from: a substitution value, or the template's text.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Slot(u16),
    Text(String),
}

/// The System values normalisation reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SystemKey {
    EventId,
    Channel,
    Computer,
    Level,
    RecordId,
    Task,
    Opcode,
    Keywords,
    Version,
    ProviderName,
    ProviderGuid,
    ProcessId,
    ThreadId,
    UserId,
    SystemTime,
}

/// The System elements whose text normalisation reads.
const SYSTEM_TEXT: &[(&str, SystemKey)] = &[
    ("EventID", SystemKey::EventId),
    ("Channel", SystemKey::Channel),
    ("Computer", SystemKey::Computer),
    ("Level", SystemKey::Level),
    ("EventRecordID", SystemKey::RecordId),
    ("Task", SystemKey::Task),
    ("Opcode", SystemKey::Opcode),
    ("Keywords", SystemKey::Keywords),
    ("Version", SystemKey::Version),
];

/// The System elements whose attributes normalisation reads.
const SYSTEM_ATTRIBUTES: &[(&str, &[(&str, SystemKey)])] = &[
    (
        "Provider",
        &[
            ("Name", SystemKey::ProviderName),
            ("Guid", SystemKey::ProviderGuid),
        ],
    ),
    (
        "Execution",
        &[
            ("ProcessID", SystemKey::ProcessId),
            ("ThreadID", SystemKey::ThreadId),
        ],
    ),
    ("Security", &[("UserID", SystemKey::UserId)]),
    ("TimeCreated", &[("SystemTime", SystemKey::SystemTime)]),
];

#[derive(Debug)]
struct SystemValue {
    key: SystemKey,
    /// The value whose NULL leaves the element out (MS-EVEN6 2.2.12).
    dependency: Option<u16>,
    source: Source,
}

/// One `Data` value of `EventData`: its `Name`, and its value (none: empty).
type DataValue = (FieldName, Option<Source>);

/// Where an event's data section is.
#[derive(Debug)]
enum DataSection {
    None,
    /// In the template: `EventData`'s `Data` values, in document order.
    Inline(Vec<DataValue>),
    /// In a value of the event: a fragment instancing a template whose root is
    /// `EventData` (how Windows writes most events).
    Nested(u16),
}

/// What one template definition's records are made of.
#[derive(Debug)]
struct Program {
    system: Vec<SystemValue>,
    data: DataSection,
}

impl Program {
    fn run(
        &self,
        instance: &Instance,
        chunk: &[u8],
        programs: &mut Programs,
    ) -> Option<WindowsParts> {
        let mut system = SystemValues::default();
        for value in &self.system {
            if let Some(dependency) = value.dependency {
                // A dependency past the values is none (as the evtx crate reads it).
                if let Some((kind, bytes)) = instance.value(chunk, dependency) {
                    match emptiness(kind, bytes) {
                        Emptiness::Null => continue,
                        Emptiness::Blank => return None,
                        Emptiness::Filled => {}
                    }
                }
            }
            let json = match &value.source {
                Source::Text(text) => Some(Value::String(text.clone())),
                Source::Slot(slot) => {
                    let (kind, bytes) = instance.value(chunk, *slot)?;
                    match emptiness(kind, bytes) {
                        Emptiness::Null => None,
                        // Rendered as `""` or `null` depending on the element's form.
                        Emptiness::Blank => return None,
                        Emptiness::Filled => Some(raw_json(kind, bytes)?),
                    }
                }
            };
            let slot = match value.key {
                SystemKey::EventId => &mut system.event_id,
                SystemKey::Channel => &mut system.channel,
                SystemKey::Computer => &mut system.computer,
                SystemKey::Level => &mut system.level,
                SystemKey::RecordId => &mut system.record_id,
                SystemKey::Task => &mut system.task,
                SystemKey::Opcode => &mut system.opcode,
                SystemKey::Keywords => &mut system.keywords,
                SystemKey::Version => &mut system.version,
                SystemKey::ProviderName => &mut system.provider[0],
                SystemKey::ProviderGuid => &mut system.provider[1],
                SystemKey::ProcessId => &mut system.execution[0],
                SystemKey::ThreadId => &mut system.execution[1],
                SystemKey::UserId => &mut system.security[0],
                SystemKey::SystemTime => &mut system.time_created[0],
            };
            *slot = json;
        }
        // Every value is rendered before any field is made, so a value this module does
        // not render leaves nothing half done.
        match &self.data {
            DataSection::None => Some(finish(system, &[], Vec::new(), programs.pairs)),
            DataSection::Inline(names) => {
                let data = data_values(names, instance, chunk)?;
                Some(finish(system, names, data, programs.pairs))
            }
            DataSection::Nested(slot) => {
                let (kind, bytes) = instance.value(chunk, *slot)?;
                match (kind, bytes.is_empty()) {
                    (0x00, _) | (0x21, true) => {
                        Some(finish(system, &[], Vec::new(), programs.pairs))
                    }
                    (0x21, false) => {
                        let (_, at, size) = instance.values[usize::from(*slot)];
                        let nested = Instance::read(chunk, at, at + size)?;
                        let offset = nested.definition;
                        let names = program_at(
                            &mut programs.sections,
                            |shared| &mut shared.sections,
                            chunk,
                            offset,
                            || compile_section(chunk, offset),
                        )?;
                        let data = data_values(&names, &nested, chunk)?;
                        Some(finish(system, &names, data, programs.pairs))
                    }
                    _ => None,
                }
            }
        }
    }
}

/// The `Data` values of `names` from `instance`, `""` for an empty one.
fn data_values(names: &[DataValue], instance: &Instance, chunk: &[u8]) -> Option<Vec<Value>> {
    let mut data = Vec::with_capacity(names.len());
    for (_, source) in names {
        data.push(match source {
            None => Value::String(String::new()),
            Some(Source::Text(text)) => Value::String(text.clone()),
            Some(Source::Slot(slot)) => {
                let (kind, bytes) = instance.value(chunk, *slot)?;
                match emptiness(kind, bytes) {
                    Emptiness::Null | Emptiness::Blank => Value::String(String::new()),
                    Emptiness::Filled => raw_json(kind, bytes)?,
                }
            }
        });
    }
    Some(data)
}

/// Whether a value is NULL, empty (rendered as `null` or `""` by the element's form),
/// or neither.
#[derive(PartialEq)]
enum Emptiness {
    Null,
    Blank,
    Filled,
}

fn emptiness(kind: u8, bytes: &[u8]) -> Emptiness {
    match kind {
        0x00 => Emptiness::Null,
        // Text up to its first NUL; binary; BinXML.
        0x01 if bytes.is_empty() || bytes.starts_with(&[0, 0]) => Emptiness::Blank,
        0x0e | 0x21 if bytes.is_empty() => Emptiness::Blank,
        _ => Emptiness::Filled,
    }
}

/// The fields of `system` and the named data values: as pairs when `pairs` and no
/// data name is a System field's, as a map otherwise (`put_data_value` renames such a
/// value).
fn finish(
    system: SystemValues,
    names: &[DataValue],
    data: Vec<Value>,
    pairs: bool,
) -> WindowsParts {
    if pairs && data.len() <= MAX_FIELDS - SYSTEM_FIELD_NAMES.len() {
        let clash = names
            .iter()
            .any(|(name, _)| SYSTEM_FIELD_NAMES.contains(&&**name));
        if !clash {
            let mut list: Vec<(FieldName, Value)> =
                Vec::with_capacity(SYSTEM_FIELD_NAMES.len() + data.len());
            let mut parts = system_parts(system, &mut |name, value| {
                list.push((FieldName::Static(name), value));
            });
            // Names are unique within a programmed template.
            for ((name, _), value) in names.iter().zip(data) {
                list.push((name.clone(), value));
            }
            parts.pairs = Some(list);
            return parts;
        }
    }
    let mut parts = windows_system_parts(Some(system), data.len());
    for ((name, _), value) in names.iter().zip(data) {
        put_data_value(&mut parts.fields, name.to_string(), value);
    }
    parts
}

/// A value, as its type and bytes (a template instance's substitution), rendered as
/// the evtx crate renders it in JSON (numbers as numbers; times, GUIDs, SIDs and hex
/// values as its text); `None` for the forms left to the JSON path (ANSI text,
/// floating point, arrays, BinXML, …) and for sizes the type does not have.
fn raw_json(kind: u8, bytes: &[u8]) -> Option<Value> {
    let int = |n: usize| -> Option<[u8; 8]> {
        let mut out = [0u8; 8];
        (bytes.len() == n).then(|| out[..n].copy_from_slice(bytes))?;
        Some(out)
    };
    Some(match kind {
        0x00 => Value::String(String::new()),
        0x01 => {
            // Up to the first NUL, as the evtx crate reads it.
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let (units, _) = bytes.as_chunks::<2>();
            if let Some(text) = ascii_text(units) {
                return Some(Value::String(text));
            }
            let len = units
                .iter()
                .position(|unit| *unit == [0, 0])
                .unwrap_or(units.len());
            Value::String(utf16_text(&bytes[..len * 2])?)
        }
        0x03 => Value::from(i8::from_le_bytes([int(1)?[0]])),
        0x04 => Value::from(int(1)?[0]),
        0x05 => Value::from(i16::from_le_bytes(int(2)?[..2].try_into().ok()?)),
        0x06 => Value::from(u16::from_le_bytes(int(2)?[..2].try_into().ok()?)),
        0x07 => Value::from(i32::from_le_bytes(int(4)?[..4].try_into().ok()?)),
        0x08 => Value::from(u32::from_le_bytes(int(4)?[..4].try_into().ok()?)),
        0x09 => Value::from(i64::from_le_bytes(int(8)?)),
        0x0a => Value::from(u64::from_le_bytes(int(8)?)),
        // Windows writes bitmasks into some bool slots: the evtx crate keeps those as
        // the integer.
        0x0d => match i32::from_le_bytes(int(4)?[..4].try_into().ok()?) {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            other => Value::from(other),
        },
        0x0e => {
            let mut text = String::with_capacity(bytes.len() * 2);
            for byte in bytes {
                text.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
                text.push(char::from(HEX_UPPER[usize::from(byte & 0x0f)]));
            }
            Value::String(text)
        }
        0x0f => Value::String(guid_text(bytes.try_into().ok()?)),
        0x11 => Value::String(filetime_text(FileTime(u64::from_le_bytes(int(8)?)))?),
        0x12 => Value::String(systime_text(&SysTime::from_bytes(bytes.try_into().ok()?))?),
        0x13 => Value::String(sid_text(bytes)?),
        // SizeT is a HexInt of its width.
        0x10 | 0x14 if bytes.len() == 4 => Value::String(hex_text(u64::from(u32::from_le_bytes(
            int(4)?[..4].try_into().ok()?,
        )))),
        0x10 | 0x15 if bytes.len() == 8 => Value::String(hex_text(u64::from_le_bytes(int(8)?))),
        _ => return None,
    })
}

/// `value` as `format!("{value:#x}")` writes it (`0x` and lower-case digits, no
/// leading zeros), without the formatting machinery: a keyword mask or handle per
/// record.
fn hex_text(value: u64) -> String {
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    let digits = (16 - value.leading_zeros() as usize / 4).max(1);
    let mut text = String::with_capacity(2 + digits);
    text.push_str("0x");
    for place in (0..digits).rev() {
        text.push(char::from(
            HEX_LOWER[(value >> (place * 4)) as usize & 0x0f],
        ));
    }
    text
}

/// `S-R-A-S1-…`: revision, 48-bit big-endian authority, little-endian sub-authorities.
fn sid_text(bytes: &[u8]) -> Option<String> {
    let [revision, count, authority @ ..] = bytes.get(..8)? else {
        return None;
    };
    let subs = bytes.get(8..8 + 4 * usize::from(*count))?;
    let mut wide = [0u8; 8];
    wide[2..].copy_from_slice(authority);
    let mut text = format!("S-{revision}-{}", u64::from_be_bytes(wide));
    for sub in subs.as_chunks::<4>().0 {
        text.push('-');
        text.push_str(&u32::from_le_bytes(*sub).to_string());
    }
    Some(text)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// UTF-16LE units that are all ASCII but NUL (the usual case) as text, a byte per
/// unit; `None` otherwise. Checked four units at a time as one word, without a branch
/// per word, then narrowed in one pass the compiler vectorises.
fn ascii_text(units: &[[u8; 2]]) -> Option<String> {
    // Per 16-bit lane: the high byte and bit 7 of the low byte are clear (ASCII), and
    // the lane plus 0x7f reaches bit 7 (not NUL; no carry leaves an ASCII lane).
    const NOT_ASCII: u64 = 0xff80_ff80_ff80_ff80;
    const SEVEN_F: u64 = 0x007f_007f_007f_007f;
    const BIT_7: u64 = 0x0080_0080_0080_0080;
    let (words, tail) = units.as_flattened().as_chunks::<8>();
    let mut wrong = 0u64;
    for word in words {
        let word = u64::from_le_bytes(*word);
        wrong |= (word & NOT_ASCII) | (!word.wrapping_add(SEVEN_F) & BIT_7);
    }
    if wrong != 0 {
        return None;
    }
    for unit in tail.as_chunks::<2>().0 {
        if unit[1] != 0 || unit[0].wrapping_sub(1) >= 0x7f {
            return None;
        }
    }
    String::from_utf8(units.iter().map(|unit| unit[0]).collect()).ok()
}

/// UTF-16LE text; `None` for an unpaired surrogate or a NUL (the JSON path's cases).
fn utf16_text(bytes: &[u8]) -> Option<String> {
    let (units, rest) = bytes.as_chunks::<2>();
    if !rest.is_empty() {
        return None;
    }
    if let Some(text) = ascii_text(units) {
        return Some(text);
    }
    let mut text = String::with_capacity(units.len() * 2);
    for ch in char::decode_utf16(units.iter().map(|unit| u16::from_le_bytes(*unit))) {
        match ch.ok()? {
            '\0' => return None,
            ch => text.push(ch),
        }
    }
    Some(text)
}

/// `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`, lower case, the first three groups
/// little-endian (as Windows renders a GUID).
fn guid_text(bytes: &[u8; 16]) -> String {
    const ORDER: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(38);
    text.push('{');
    for (i, index) in ORDER.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        let byte = bytes[*index];
        text.push(char::from(HEX_LOWER[usize::from(byte >> 4)]));
        text.push(char::from(HEX_LOWER[usize::from(byte & 0x0f)]));
    }
    text.push('}');
    text
}

const TICKS_PER_SECOND: u64 = 10_000_000;

/// `YYYY-MM-DDTHH:MM:SS.fffffffZ`, for years up to 9999 (the evtx crate renders later
/// ones with their last four digits: left to it).
fn filetime_text(time: FileTime) -> Option<String> {
    // 10000-01-01T00:00:00Z in FILETIME ticks.
    const YEAR_10000: u64 = 2_650_467_744_000_000_000;
    if time.0 >= YEAR_10000 {
        return None;
    }
    let days = time.0 / (86_400 * TICKS_PER_SECOND);
    let ticks = time.0 % (86_400 * TICKS_PER_SECOND);
    let (year, month, day) = civil_from_days_since_1601(days);
    let seconds = ticks / TICKS_PER_SECOND;
    Some(datetime_text(
        year,
        month,
        day,
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60,
        ticks % TICKS_PER_SECOND,
    ))
}

/// A valid SYSTEMTIME as [`filetime_text`] writes a FILETIME (an invalid one is
/// rendered as 1601-01-01 by the evtx crate: left to it).
fn systime_text(time: &SysTime) -> Option<String> {
    if !time.is_valid() || time.year > 9999 {
        return None;
    }
    Some(datetime_text(
        u64::from(time.year),
        u64::from(time.month),
        u64::from(time.day),
        u64::from(time.hour),
        u64::from(time.minute),
        u64::from(time.second),
        u64::from(time.milliseconds) * 10_000,
    ))
}

fn datetime_text(
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    ticks: u64,
) -> String {
    let mut text = *b"0000-00-00T00:00:00.0000000Z";
    for (range, value) in [
        (0..4, year),
        (5..7, month),
        (8..10, day),
        (11..13, hour),
        (14..16, minute),
        (17..19, second),
        (20..27, ticks),
    ] {
        let mut value = value;
        for digit in text[range].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    // Digits and separators only: ASCII.
    String::from_utf8(text.to_vec()).unwrap_or_default()
}

/// The proleptic Gregorian date `days` after 1601-01-01 (Howard Hinnant's
/// `civil_from_days`, counted from 0000-03-01, 584,694 days earlier).
fn civil_from_days_since_1601(days: u64) -> (u64, u64, u64) {
    let z = days + 584_694;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (era * 400 + yoe + u64::from(month <= 2), month, day)
}

// ---- Template definitions ----

/// Elements one definition may hold; a larger one goes through the JSON path.
const MAX_ELEMENTS: usize = 4096;
/// Deepest nesting read.
const MAX_DEPTH: usize = 32;
/// The template definition header: next offset, GUID, body size.
const DEFINITION_HEADER: usize = 24;
const NO_DEPENDENCY: u16 = 0xffff;

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Slot(u16),
}

/// An element or attribute name as stored: UTF-16LE, compared with the few names
/// programs read without being decoded.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Name<'a>(&'a [u8]);

impl Name<'_> {
    fn is(&self, ascii: &str) -> bool {
        self.0.len() == ascii.len() * 2
            && self
                .0
                .as_chunks::<2>()
                .0
                .iter()
                .zip(ascii.bytes())
                .all(|(unit, byte)| *unit == [byte, 0])
    }
}

#[derive(Debug, Default)]
struct Element<'a> {
    name: Name<'a>,
    dependency: Option<u16>,
    attributes: Vec<(Name<'a>, Vec<Piece>)>,
    /// Child elements, by index.
    children: Vec<usize>,
    /// Text and values between the element's tags.
    content: Vec<Piece>,
}

/// Reads a chunk's bytes, bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Name bytes it may still read: a crafted definition could name thousands of
    /// elements with the chunk's longest name.
    names: usize,
}

/// Name bytes one definition may read ([`Reader::names`]); real ones read a few KiB.
const MAX_NAME_BYTES: usize = 64 * 1024;

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let bytes = data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.bytes(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    /// A name reference: the offset of the name's definition, which follows right here
    /// when it is the first use in the chunk.
    fn name(&mut self) -> Option<Name<'a>> {
        let offset = self.u32()? as usize;
        let mut at = Reader {
            data: self.data,
            pos: offset,
            names: 0,
        };
        at.bytes(6)?; // next name in the bucket, hash
        let count = usize::from(at.u16()?);
        self.names = self.names.checked_sub(count * 2)?;
        // Up to the first NUL, as the evtx crate reads a name; one with a surrogate
        // (never a name programs read) leaves the definition to the JSON path.
        let units = at.bytes(count * 2)?;
        let mut len = 0;
        for unit in units.as_chunks::<2>().0 {
            match u16::from_le_bytes(*unit) {
                0 => break,
                0xd800..=0xdfff => return None,
                _ => len += 2,
            }
        }
        let name = Name(&units[..len]);
        if offset == self.pos {
            // Defined inline: skip it and its NUL.
            self.pos = at.pos;
            self.bytes(2)?;
        }
        Some(name)
    }
}

/// The elements of the template definition at `offset` in `chunk`, or `None` if its
/// shape is left to the JSON path (or it cannot be read: the JSON path says why).
fn definition(chunk: &[u8], offset: u32) -> Option<Vec<Element<'_>>> {
    read_elements(body(chunk, offset)?)
}

/// A reader of the body of the template definition at `offset`.
fn body(chunk: &[u8], offset: u32) -> Option<Reader<'_>> {
    let mut header = Reader {
        data: chunk,
        pos: offset as usize,
        names: 0,
    };
    header.bytes(20)?; // next definition, GUID
    let size = header.u32()? as usize;
    let start = (offset as usize).checked_add(DEFINITION_HEADER)?;
    Some(Reader {
        data: chunk.get(..start.checked_add(size)?)?,
        pos: start,
        names: MAX_NAME_BYTES,
    })
}

/// What a definition's program depends on: its tokens, with names and texts as read
/// rather than where they are (`None` if they cannot be read). A template recurs in
/// every chunk of a log, each time at another offset with its names elsewhere, and
/// has the same key each time.
fn definition_key(chunk: &[u8], offset: u32) -> Option<Vec<u8>> {
    let mut reader = body(chunk, offset)?;
    let mut key = Vec::with_capacity(reader.data.len().saturating_sub(reader.pos));
    let text = |key: &mut Vec<u8>, tag: u8, bytes: &[u8]| {
        key.push(tag);
        key.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        key.extend_from_slice(bytes);
    };
    each_token(&mut reader, &mut |token| {
        match token {
            Token::Open { dependency, name } => {
                text(&mut key, 0x01, name.0);
                key.extend_from_slice(&dependency.to_le_bytes());
            }
            Token::Attribute(name) => text(&mut key, 0x06, name.0),
            Token::StartEnd => key.push(0x02),
            Token::Close(token) => key.push(token),
            Token::Text(units) => text(&mut key, 0x05, units),
            Token::Slot(slot) => {
                key.push(0x0d);
                key.extend_from_slice(&slot.to_le_bytes());
            }
        }
        Some(())
    })?;
    Some(key)
}

/// One token of a template definition.
enum Token<'a> {
    /// An element's start, `<name`.
    Open {
        dependency: u16,
        name: Name<'a>,
    },
    Attribute(Name<'a>),
    /// The `>` after an element's attributes.
    StartEnd,
    /// `/>` (0x03) or `</name>` (0x04).
    Close(u8),
    /// Literal text, as UTF-16LE.
    Text(&'a [u8]),
    /// A substitution: the instance's value `slot`.
    Slot(u16),
}

/// Reads a definition's tokens up to its end, handing each to `visit`; `None` at a
/// token, text type or value type this module does not read (or that `visit` refuses).
fn each_token<'a>(
    reader: &mut Reader<'a>,
    visit: &mut impl FnMut(Token<'a>) -> Option<()>,
) -> Option<()> {
    loop {
        let token = reader.u8()?;
        let token = match token {
            0x00 => return Some(()),
            0x0f => {
                reader.bytes(3)?;
                continue;
            }
            0x01 | 0x41 => {
                let dependency = reader.u16()?;
                reader.u32()?; // size
                let name = reader.name()?;
                if token & 0x40 != 0 {
                    reader.u32()?; // attribute list size
                }
                Token::Open { dependency, name }
            }
            0x06 | 0x46 => Token::Attribute(reader.name()?),
            0x02 => Token::StartEnd,
            0x03 | 0x04 => Token::Close(token),
            0x05 | 0x45 => {
                // Literal text; other literal types are left to the JSON path.
                if reader.u8()? != 0x01 {
                    return None;
                }
                let count = usize::from(reader.u16()?);
                Token::Text(reader.bytes(count * 2)?)
            }
            0x0d | 0x0e => {
                let slot = reader.u16()?;
                // The declared type: the record's value says its own, but the evtx
                // crate refuses a template whose type is not one.
                if !known_type(reader.u8()?) {
                    return None;
                }
                Token::Slot(slot)
            }
            // CDATA, character and entity references, processing instructions, nested
            // instances: left to the JSON path.
            _ => return None,
        };
        visit(token)?;
    }
}

/// The program of an event's template definition.
fn compile_event(chunk: &[u8], offset: u32) -> Option<Program> {
    program_of(&definition(chunk, offset)?)
}

/// The `Data` values of a data section's template definition (an `EventData` root).
fn compile_section(chunk: &[u8], offset: u32) -> Option<Vec<DataValue>> {
    let elements = definition(chunk, offset)?;
    let root = &elements[0];
    if !root.name.is("EventData") || !root.content.is_empty() {
        return None;
    }
    data_of(&elements, root)
}

/// The definition's elements; element 0 is the root.
fn read_elements(mut reader: Reader<'_>) -> Option<Vec<Element<'_>>> {
    // An element takes at least 11 bytes of the body (start, end, name offset); sized
    // once rather than grown (and its elements moved) several times.
    let body = reader.data.len().saturating_sub(reader.pos);
    let mut elements: Vec<Element<'_>> = Vec::with_capacity((body / 16).clamp(4, MAX_ELEMENTS));
    let mut open: Vec<usize> = Vec::with_capacity(MAX_DEPTH);
    // Attributes are being read (between an element's start and its `>`).
    let mut in_start = false;
    each_token(&mut reader, &mut |token| {
        match token {
            Token::Open { dependency, name } => {
                if elements.len() >= MAX_ELEMENTS || open.len() >= MAX_DEPTH || in_start {
                    return None;
                }
                let index = elements.len();
                match open.last() {
                    Some(&parent) => elements[parent].children.push(index),
                    None if index != 0 => return None, // a second root
                    None => {}
                }
                elements.push(Element {
                    name,
                    dependency: (dependency != NO_DEPENDENCY).then_some(dependency),
                    ..Element::default()
                });
                open.push(index);
                in_start = true;
            }
            Token::Attribute(name) => {
                if !in_start {
                    return None;
                }
                elements[*open.last()?].attributes.push((name, Vec::new()));
            }
            Token::StartEnd => {
                if !in_start {
                    return None;
                }
                in_start = false;
            }
            Token::Close(token) => {
                if (token == 0x03) != in_start {
                    return None;
                }
                in_start = false;
                open.pop()?;
            }
            Token::Text(units) => {
                add_piece(
                    &mut elements,
                    &open,
                    in_start,
                    Piece::Text(utf16_text(units)?),
                )?;
            }
            Token::Slot(slot) => add_piece(&mut elements, &open, in_start, Piece::Slot(slot))?,
        }
        Some(())
    })?;
    if !open.is_empty() || elements.is_empty() {
        return None;
    }
    Some(elements)
}

/// Adds `piece` to the open element: to its last attribute while its start is being
/// read, else to its content.
fn add_piece(
    elements: &mut [Element<'_>],
    open: &[usize],
    in_start: bool,
    piece: Piece,
) -> Option<()> {
    let element = &mut elements[*open.last()?];
    if in_start {
        element.attributes.last_mut()?.1.push(piece);
    } else {
        element.content.push(piece);
    }
    Some(())
}

/// One piece or none: the value of an attribute or a leaf element.
fn single(pieces: &[Piece]) -> Option<Option<Source>> {
    match pieces {
        [] => Some(None),
        [Piece::Slot(slot)] => Some(Some(Source::Slot(*slot))),
        [Piece::Text(text)] if !text.is_empty() => Some(Some(Source::Text(text.clone()))),
        _ => None,
    }
}

fn program_of(elements: &[Element]) -> Option<Program> {
    let root = &elements[0];
    // The root's dependency is ignored: a template's root is always rendered.
    if !root.name.is("Event") {
        return None;
    }
    let mut program = Program {
        system: Vec::new(),
        data: match root.content.as_slice() {
            [] => DataSection::None,
            // The data section as a value (its root element is checked per record).
            [Piece::Slot(slot)] => DataSection::Nested(*slot),
            _ => return None,
        },
    };
    let (mut system_seen, mut data_seen) = (false, false);
    for &child in &root.children {
        let section = &elements[child];
        let name = section.name;
        if name.is("System") {
            if std::mem::replace(&mut system_seen, true)
                || section.dependency.is_some()
                || !section.content.is_empty()
            {
                return None;
            }
            system_of(elements, section, &mut program)?;
        } else if name.is("EventData") {
            if std::mem::replace(&mut data_seen, true)
                || section.dependency.is_some()
                || !section.content.is_empty()
                || !matches!(program.data, DataSection::None)
            {
                return None;
            }
            program.data = DataSection::Inline(data_of(elements, section)?);
        } else if name.is("UserData") {
            return None;
        }
        // Anything else is read by nothing (RenderingInfo, …).
    }
    Some(program)
}

fn system_of(elements: &[Element], system: &Element, program: &mut Program) -> Option<()> {
    let mut seen: Vec<Name> = Vec::new();
    for &child in &system.children {
        let element = &elements[child];
        let name = element.name;
        let text_key = SYSTEM_TEXT
            .iter()
            .find(|(n, _)| name.is(n))
            .map(|(_, k)| *k);
        let attributes = SYSTEM_ATTRIBUTES
            .iter()
            .find(|(n, _)| name.is(n))
            .map(|(_, a)| *a);
        if text_key.is_none() && attributes.is_none() {
            continue;
        }
        // A repeated element, or one with elements inside: left to the JSON path.
        if seen.contains(&name) || !element.children.is_empty() {
            return None;
        }
        seen.push(name);
        let mut push = |key, source: Option<Source>| {
            if let Some(source) = source {
                program.system.push(SystemValue {
                    key,
                    dependency: element.dependency,
                    source,
                });
            }
        };
        if let Some(key) = text_key {
            push(key, single(&element.content)?);
        }
        for (attribute, key) in attributes.unwrap_or_default() {
            let mut matching = element.attributes.iter().filter(|(n, _)| n.is(attribute));
            let Some((_, pieces)) = matching.next() else {
                continue;
            };
            if matching.next().is_some() {
                return None;
            }
            push(*key, single(pieces)?);
        }
    }
    Some(())
}

fn data_of(elements: &[Element], data: &Element) -> Option<Vec<DataValue>> {
    if !data.attributes.is_empty() {
        return None;
    }
    let mut values: Vec<DataValue> = Vec::with_capacity(data.children.len());
    for &child in &data.children {
        let element = &elements[child];
        let [(attribute, name)] = element.attributes.as_slice() else {
            return None;
        };
        let [Piece::Text(name)] = name.as_slice() else {
            return None;
        };
        if !element.name.is("Data")
            || !attribute.is("Name")
            || name.is_empty()
            || element.dependency.is_some()
            || !element.children.is_empty()
            || values.iter().any(|(taken, _)| **taken == **name)
        {
            return None;
        }
        values.push((field_name(name), single(&element.content)?));
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_the_evtx_crate_writes_them() {
        // 2019-03-19T23:34:25.1234567Z
        let ticks = 131_975_120_651_234_567;
        assert_eq!(
            filetime_text(FileTime(ticks)).as_deref(),
            Some("2019-03-19T23:34:25.1234567Z")
        );
        assert_eq!(
            filetime_text(FileTime(0)).as_deref(),
            Some("1601-01-01T00:00:00.0000000Z")
        );
        assert_eq!(filetime_text(FileTime(u64::MAX)), None);
        let mut bytes = [0u8; 16];
        for (i, v) in [2024u16, 2, 4, 29, 23, 59, 58, 999].iter().enumerate() {
            bytes[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            systime_text(&SysTime::from_bytes(&bytes)).as_deref(),
            Some("2024-02-29T23:59:58.9990000Z")
        );
    }

    #[test]
    fn hex_values_are_written_as_the_formatter_writes_them() {
        let mut values = vec![0, 1, 0xf, 0x10, 0xff, 0x100, u64::from(u32::MAX), u64::MAX];
        values.extend((0..64).map(|shift| 1u64 << shift));
        values.extend((0..64).map(|shift| (1u64 << shift) - 1));
        values.extend((0..64).map(|shift| 0x8000_0000_0000_0000_u64 >> shift | 0x5a));
        for value in values {
            assert_eq!(hex_text(value), format!("{value:#x}"), "{value}");
        }
    }

    #[test]
    fn guids_and_text() {
        let bytes = [
            0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        assert_eq!(guid_text(&bytes), "{12345678-9abc-def0-0102-030405060708}");
        let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        assert_eq!(
            utf16_text(&utf16("cmd.exe /c")).as_deref(),
            Some("cmd.exe /c")
        );
        assert_eq!(
            utf16_text(&utf16("Ünïcödé ✓ 𝄞")).as_deref(),
            Some("Ünïcödé ✓ 𝄞")
        );
        assert_eq!(utf16_text(&utf16("a\0b")), None);
        assert_eq!(utf16_text(&[0x00, 0xd8]), None); // unpaired surrogate
        assert_eq!(utf16_text(&[0x41]), None); // odd length
        // Every position of a non-ASCII unit, a NUL and a DEL in a long value: the
        // many-units-at-a-time check misses none.
        let longest = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe -nop";
        for long in [
            longest,
            &longest[..longest.len() - 1],
            &longest[..longest.len() - 2],
        ] {
            for (i, _) in long.char_indices() {
                for odd in ["é", "\u{7f}", "\u{100}"] {
                    let text = format!("{}{odd}{}", &long[..i], &long[i + 1..]);
                    assert_eq!(utf16_text(&utf16(&text)).as_deref(), Some(text.as_str()));
                }
                let with_nul = format!("{}\0{}", &long[..i], &long[i + 1..]);
                assert_eq!(utf16_text(&utf16(&with_nul)), None);
                // A string value is read up to its first NUL.
                assert_eq!(
                    raw_json(0x01, &utf16(&with_nul)),
                    Some(Value::String(long[..i].to_string()))
                );
            }
            assert_eq!(
                raw_json(0x01, &utf16(long)),
                Some(Value::String(long.to_string()))
            );
        }
    }

    #[test]
    fn a_template_has_one_key_in_every_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synthetic.evtx");
        casescope_synth::write_evtx_file(&path, casescope_synth::realistic_events(3_000, 5))
            .unwrap();
        let mut parser = evtx::EvtxParser::from_path(&path).unwrap();
        // Key → the (chunk, offset) places of definitions with it.
        let mut places: HashMap<Vec<u8>, Vec<(usize, u32)>> = HashMap::new();
        let settings = Arc::new(evtx::ParserSettings::new());
        for (number, data) in parser.chunks().enumerate() {
            let mut data = data.unwrap();
            let mut chunk = data.parse(Arc::clone(&settings)).unwrap();
            let bytes = chunk.data;
            for record in chunk.iter() {
                let record = record.unwrap();
                let start = record.binxml_offset as usize;
                let instance =
                    Instance::read(bytes, start, start + record.binxml_size as usize).unwrap();
                let key = definition_key(bytes, instance.definition).unwrap();
                let place = (number, instance.definition);
                let seen = places.entry(key).or_default();
                if !seen.contains(&place) {
                    seen.push(place);
                }
            }
        }
        // Templates recur across chunks at other offsets, under one key.
        let moved = places.values().filter(|places| {
            places
                .iter()
                .any(|(chunk, offset)| places.iter().any(|(c, o)| c != chunk && o != offset))
        });
        assert!(
            moved.count() >= 2,
            "{:?}",
            places.values().collect::<Vec<_>>()
        );
        // Different templates, different keys: no chunk has two definitions under one.
        for places in places.values() {
            let mut chunks: Vec<usize> = places.iter().map(|(chunk, _)| *chunk).collect();
            chunks.sort_unstable();
            let all = chunks.len();
            chunks.dedup();
            assert_eq!(chunks.len(), all, "{places:?}");
        }
    }

    #[test]
    fn random_bytes_never_panic_and_compile_nothing_bounded() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut programs = Programs::default();
        for round in 0..200 {
            let mut chunk: Vec<u8> = (0..65_536).map(|_| next() as u8).collect();
            // Some rounds look like definitions: a fragment header and an element start.
            if round % 2 == 0 {
                chunk[24..32].copy_from_slice(&[0x0f, 1, 1, 0, 0x41, 0xff, 0xff, 0]);
            }
            for _ in 0..64 {
                let offset = (next() % 65_536) as u32;
                let _ = compile_event(&chunk, offset);
                let _ = compile_section(&chunk, offset);
                let start = (next() % 65_536) as usize;
                let end = start + (next() % 4_096) as usize;
                if let Some(instance) = Instance::read(&chunk, start, end)
                    && let Some(program) = compile_event(&chunk, instance.definition)
                {
                    let _ = program.run(&instance, &chunk, &mut programs);
                }
            }
            let _ = compile_event(&chunk, 0);
        }
        assert!(programs.sections.len() <= MAX_PROGRAMS);
        assert!(programs.events.is_empty());
    }
}
