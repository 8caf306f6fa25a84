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
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

mod definition;
mod text;
use definition::{Element, Name, Piece, Reader, definition, definition_key, single};
use text::raw_json;
mod raw;
use raw::RawShape;

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
    /// Render each record's stored form too ([`WindowsParts::raw`], see [`raw`]); a
    /// record whose template has no [`RawShape`] is then left to the JSON path.
    raw: bool,
}

impl Programs {
    /// Programs whose records hand their fields over as pairs.
    pub(crate) fn giving_pairs() -> Programs {
        Programs {
            pairs: true,
            ..Programs::default()
        }
    }

    /// Programs whose records give their fields as a map and their stored form.
    pub(crate) fn rendering_raw() -> Programs {
        Programs {
            raw: true,
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
    /// How its records' stored form is rendered (`None`: by the evtx crate).
    raw: Option<RawShape>,
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
        let (names, data): (Arc<Vec<DataValue>>, Vec<Value>);
        let data_section = match &self.data {
            DataSection::None => None,
            DataSection::Inline(inline) => {
                data = data_values(inline, instance, chunk)?;
                Some((inline.as_slice(), data))
            }
            DataSection::Nested(slot) => {
                let (kind, bytes) = instance.value(chunk, *slot)?;
                match (kind, bytes.is_empty()) {
                    (0x00, _) | (0x21, true) => None,
                    (0x21, false) => {
                        let (_, at, size) = instance.values[usize::from(*slot)];
                        let nested = Instance::read(chunk, at, at + size)?;
                        let offset = nested.definition;
                        names = program_at(
                            &mut programs.sections,
                            |shared| &mut shared.sections,
                            chunk,
                            offset,
                            || compile_section(chunk, offset),
                        )?;
                        data = data_values(&names, &nested, chunk)?;
                        Some((names.as_slice(), data))
                    }
                    _ => return None,
                }
            }
        };
        let raw = match programs.raw {
            false => None,
            true => Some(
                self.raw.as_ref()?.render(
                    instance,
                    chunk,
                    data_section
                        .as_ref()
                        .map(|(names, data)| (*names, data.as_slice())),
                )?,
            ),
        };
        let mut parts = match data_section {
            None => finish(system, &[], Vec::new(), programs.pairs),
            Some((names, data)) => finish(system, names, data, programs.pairs),
        };
        parts.raw = raw;
        Some(parts)
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
fn program_of(elements: &[Element]) -> Option<Program> {
    let root = &elements[0];
    // The root's dependency is ignored: a template's root is always rendered.
    if !root.name.is("Event") {
        return None;
    }
    let mut program = Program {
        raw: None,
        system: Vec::new(),
        data: match root.content.as_slice() {
            [] => DataSection::None,
            // The data section as a value (its root element is checked per record).
            [Piece::Slot(slot)] => DataSection::Nested(*slot),
            _ => return None,
        },
    };
    let (mut system_seen, mut data_seen) = (false, false);
    let mut system = None;
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
            system = Some(section);
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
    program.raw = RawShape::of(elements, system);
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
