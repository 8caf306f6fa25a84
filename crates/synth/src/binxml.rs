//! BinXML encoding of one event record, written in place into its chunk.
//!
//! Every record is a template instance, as Windows writes them: a fragment header, then a
//! `TemplateInstance` naming the template of the record's [`Shape`] by the chunk offset of its
//! definition, then the record's values. A chunk defines each template inline, in the first
//! record of that shape it holds (the definition offset then points just past itself), and
//! later records refer to it (see [`crate::template`]). A template body is the `Event` element
//! with a substitution (an index into the instance's values) wherever a value goes, and
//! literal text for the `xmlns` attribute and the `Data` names.
//!
//! Element and attribute names are a fixed set ([`XmlName`]); each is defined inline at its
//! first use in a chunk (its offset pointing right past the reference, which is how readers
//! tell an inline definition from a back reference) and referenced by offset after that, as
//! Windows does. Readers resolve names and templates by chunk offset, so encoding depends on
//! where the record lands in its chunk and is done in place rather than into a separate
//! buffer.

use crate::SynthEvent;
use crate::template::{self, Form, Shape, TemplateTable};
use crate::values::{MAX_SID_LEN, parse_guid, parse_sid};

/// `**\0\0`, the start of every record.
const RECORD_MAGIC: [u8; 4] = [0x2a, 0x2a, 0x00, 0x00];

mod token {
    pub(super) const EOF: u8 = 0x00;
    pub(super) const OPEN_START: u8 = 0x01;
    pub(super) const CLOSE_START: u8 = 0x02;
    pub(super) const CLOSE_EMPTY: u8 = 0x03;
    pub(super) const END_ELEMENT: u8 = 0x04;
    pub(super) const VALUE: u8 = 0x05;
    pub(super) const ATTRIBUTE: u8 = 0x06;
    pub(super) const TEMPLATE_INSTANCE: u8 = 0x0c;
    /// A (non-optional) substitution: a value of the template instance goes here.
    pub(super) const SUBSTITUTION: u8 = 0x0d;
    /// Set on `OPEN_START` when attributes follow, and on `ATTRIBUTE` when more follow.
    pub(super) const MORE: u8 = 0x40;
    /// Fragment header: token, major version 1, minor version 1, flags 0.
    pub(super) const FRAGMENT_HEADER: [u8; 4] = [0x0f, 0x01, 0x01, 0x00];
}

mod value_type {
    pub(super) const STRING: u8 = 0x01;
    pub(super) const UINT8: u8 = 0x04;
    pub(super) const UINT16: u8 = 0x06;
    pub(super) const UINT32: u8 = 0x08;
    pub(super) const UINT64: u8 = 0x0a;
    pub(super) const GUID: u8 = 0x0f;
    pub(super) const FILETIME: u8 = 0x11;
    pub(super) const SID: u8 = 0x13;
    pub(super) const HEX_INT64: u8 = 0x15;
}

/// Why a record could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unfit {
    /// It does not fit in what is left of the chunk.
    Full,
    /// Some text holds a NUL, where readers would cut it short.
    Nul,
}

use Unfit::{Full, Nul};

type Fits<T = ()> = Result<T, Unfit>;

/// Every element and attribute name a record uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XmlName {
    Event,
    Xmlns,
    System,
    Provider,
    Name,
    Guid,
    EventId,
    Version,
    Level,
    Task,
    Opcode,
    Keywords,
    TimeCreated,
    SystemTime,
    EventRecordId,
    Correlation,
    Execution,
    ProcessId,
    ThreadId,
    Channel,
    Computer,
    Security,
    UserId,
    EventData,
    Data,
}

/// The text of each [`XmlName`], in declaration order. ASCII only (see [`name_hash`]).
const NAMES: [&str; 25] = [
    "Event",
    "xmlns",
    "System",
    "Provider",
    "Name",
    "Guid",
    "EventID",
    "Version",
    "Level",
    "Task",
    "Opcode",
    "Keywords",
    "TimeCreated",
    "SystemTime",
    "EventRecordID",
    "Correlation",
    "Execution",
    "ProcessID",
    "ThreadID",
    "Channel",
    "Computer",
    "Security",
    "UserID",
    "EventData",
    "Data",
];

const EVENT_XMLNS: &str = "http://schemas.microsoft.com/win/2004/08/events/event";

/// The chunk string table's hash of a name: MS-EVEN6's NameHash, `hash * 65599 + unit` over
/// the UTF-16 code units, low 16 bits. Byte by byte, which equals the units for ASCII names.
const fn name_hash(name: &str) -> u16 {
    let bytes = name.as_bytes();
    let mut hash: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        hash = hash.wrapping_mul(65599).wrapping_add(bytes[i] as u32);
        i += 1;
    }
    (hash & 0xffff) as u16
}

const NAME_HASHES: [u16; NAMES.len()] = {
    let mut hashes = [0; NAMES.len()];
    let mut i = 0;
    while i < NAMES.len() {
        hashes[i] = name_hash(NAMES[i]);
        i += 1;
    }
    hashes
};

/// Buckets in the chunk header's string table.
pub(crate) const STRING_BUCKETS: usize = 64;

/// Where a chunk defines each name, and its string table. `Copy` so that a record that does
/// not fit can be undone by restoring a copy taken before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameTable {
    /// Chunk offset of each [`XmlName`]'s definition; 0 while the chunk has none.
    offsets: [u32; NAMES.len()],
    /// Head of each bucket's chain (the name defined last in it), as the chunk header stores.
    pub(crate) buckets: [u32; STRING_BUCKETS],
}

impl Default for NameTable {
    fn default() -> Self {
        NameTable {
            offsets: [0; NAMES.len()],
            buckets: [0; STRING_BUCKETS],
        }
    }
}

/// A cursor writing into a chunk, failing with [`Unfit::Full`] at its end. It may write
/// past its position before failing: the chunk zeroes what is past its records when sealed.
pub(crate) struct Out<'a> {
    buf: &'a mut [u8],
    pub(crate) pos: usize,
}

impl<'a> Out<'a> {
    pub(crate) fn new(buf: &'a mut [u8], pos: usize) -> Self {
        Out { buf, pos }
    }

    /// The next `n` bytes, which the caller fills.
    fn take(&mut self, n: usize) -> Fits<&mut [u8]> {
        let end = self.pos.checked_add(n).ok_or(Full)?;
        let slice = self.buf.get_mut(self.pos..end).ok_or(Full)?;
        self.pos = end;
        Ok(slice)
    }

    fn put(&mut self, bytes: &[u8]) -> Fits {
        self.take(bytes.len())?.copy_from_slice(bytes);
        Ok(())
    }

    fn u8(&mut self, v: u8) -> Fits {
        self.put(&[v])
    }

    fn u16(&mut self, v: u16) -> Fits {
        self.put(&v.to_le_bytes())
    }

    fn u32(&mut self, v: u32) -> Fits {
        self.put(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> Fits {
        self.put(&v.to_le_bytes())
    }

    /// Room for a `u32` patched later; returns where it is.
    fn u32_later(&mut self) -> Fits<usize> {
        let at = self.pos;
        self.u32(0)?;
        Ok(at)
    }

    /// Patch the `u32` at `at` (written already, so in bounds) with the bytes since its end.
    fn patch_len_since(&mut self, at: usize) -> Fits {
        let len = self.pos - (at + 4);
        let len = u32::try_from(len).map_err(|_| Full)?;
        let slot = self.buf.get_mut(at..at + 4).ok_or(Full)?;
        slot.copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    /// A chunk offset as BinXML stores it. Chunks are 64 KiB, so it always fits.
    fn offset(&self) -> Fits<u32> {
        u32::try_from(self.pos).map_err(|_| Full)
    }

    /// Text as BinXML strings store it: a `u16` count of UTF-16 code units, then the units.
    fn utf16_counted(&mut self, text: &str) -> Fits {
        let count_at = self.pos;
        self.u16(0)?;
        let units = self.utf16(text)?;
        let count = u16::try_from(units).map_err(|_| Full)?;
        self.buf[count_at..count_at + 2].copy_from_slice(&count.to_le_bytes());
        Ok(())
    }

    /// Text as UTF-16LE code units, without a count or NUL (as substitution values store
    /// it); returns how many units. Text with a NUL is refused: readers would stop there.
    /// Checking here, in the one pass over the text, costs less than a separate scan.
    fn utf16(&mut self, text: &str) -> Fits<usize> {
        let bytes = text.as_bytes();
        let start = self.pos;
        // Most text is ASCII, one code unit a byte: widen it and check it in the same pass (a
        // loop the compiler vectorises), and redo it the general way if it was not ASCII.
        if let Some(end) = start.checked_add(2 * bytes.len())
            && let Some(dst) = self.buf.get_mut(start..end)
        {
            let (units, _) = dst.as_chunks_mut::<2>();
            let (mut high, mut nul) = (0u8, false);
            for (unit, &byte) in units.iter_mut().zip(bytes) {
                *unit = [byte, 0];
                high |= byte;
                nul |= byte == 0;
            }
            if high < 0x80 {
                self.pos = end;
                return if nul { Err(Nul) } else { Ok(bytes.len()) };
            }
        }
        let mut slots = self.buf[start..].as_chunks_mut::<2>().0.iter_mut();
        let mut count = 0usize;
        for unit in text.encode_utf16() {
            if unit == 0 {
                return Err(Nul);
            }
            *slots.next().ok_or(Full)? = unit.to_le_bytes();
            count += 1;
        }
        self.pos += 2 * count;
        Ok(count)
    }
}

/// An element whose start is written, with where its sizes go.
struct Open {
    size_at: usize,
    attributes_size_at: Option<usize>,
}

/// Writes a template body through `out`, defining names in `names`, numbering its
/// substitutions in the order they are written.
struct Body<'o, 'b> {
    out: &'o mut Out<'b>,
    names: &'o mut NameTable,
    substitutions: u16,
}

impl Body<'_, '_> {
    /// A name reference: the offset of its definition, defining it right here if the chunk
    /// has none yet (the offset then points just past itself).
    fn name(&mut self, name: XmlName) -> Fits {
        let index = name as usize;
        let known = self.names.offsets[index];
        if known != 0 {
            return self.out.u32(known);
        }
        let at = self.out.offset()? + 4;
        self.out.u32(at)?;
        let hash = NAME_HASHES[index];
        let bucket = usize::from(hash) % STRING_BUCKETS;
        // Prepend to the bucket's chain: the new name links to the previous head.
        self.out.u32(self.names.buckets[bucket])?;
        self.out.u16(hash)?;
        self.out.utf16_counted(NAMES[index])?;
        self.out.u16(0)?;
        // Only a complete definition joins the table, so it never points at a partial one.
        self.names.offsets[index] = at;
        self.names.buckets[bucket] = at;
        Ok(())
    }

    /// An element start. In a template every one has a dependency ID, the index of the value
    /// whose NULL would leave it out; none here depends on one.
    fn open(&mut self, name: XmlName, has_attributes: bool) -> Fits<Open> {
        let flag = if has_attributes { token::MORE } else { 0 };
        self.out.u8(token::OPEN_START | flag)?;
        self.out.u16(NO_DEPENDENCY)?;
        let size_at = self.out.u32_later()?;
        self.name(name)?;
        let attributes_size_at = if has_attributes {
            Some(self.out.u32_later()?)
        } else {
            None
        };
        Ok(Open {
            size_at,
            attributes_size_at,
        })
    }

    /// An attribute's name; its value follows. `more`: another attribute follows it.
    fn attribute(&mut self, name: XmlName, more: bool) -> Fits {
        let flag = if more { token::MORE } else { 0 };
        self.out.u8(token::ATTRIBUTE | flag)?;
        self.name(name)
    }

    fn end_attributes(&mut self, open: &Open) -> Fits {
        match open.attributes_size_at {
            Some(at) => self.out.patch_len_since(at),
            None => Ok(()),
        }
    }

    fn close_start(&mut self, open: &Open) -> Fits {
        self.end_attributes(open)?;
        self.out.u8(token::CLOSE_START)
    }

    fn end(&mut self, open: Open) -> Fits {
        self.out.u8(token::END_ELEMENT)?;
        self.out.patch_len_since(open.size_at)
    }

    fn close_empty(&mut self, open: Open) -> Fits {
        self.end_attributes(&open)?;
        self.out.u8(token::CLOSE_EMPTY)?;
        self.out.patch_len_since(open.size_at)
    }

    /// Literal text. Always written, even empty: an attribute without a value token is
    /// dropped by readers.
    fn text(&mut self, text: &str) -> Fits {
        self.out.put(&[token::VALUE, value_type::STRING])?;
        self.out.utf16_counted(text)
    }

    /// Where the instance's next value goes, of type `value_type`.
    fn substitution(&mut self, value_type: u8) -> Fits {
        let index = self.substitutions;
        self.substitutions = index.checked_add(1).ok_or(Full)?;
        self.out.u8(token::SUBSTITUTION)?;
        self.out.u16(index)?;
        self.out.u8(value_type)
    }

    /// `<name>%n</name>`.
    fn value_element(&mut self, name: XmlName, value_type: u8) -> Fits {
        let open = self.open(name, false)?;
        self.close_start(&open)?;
        self.substitution(value_type)?;
        self.end(open)
    }

    /// The template of `shape`: fragment header, `Event` element, EOF. Substitutions are
    /// numbered in document order, the order [`write_values`] writes the values in.
    fn template(&mut self, shape: &Shape<'_>) -> Fits {
        self.out.put(&token::FRAGMENT_HEADER)?;
        let root = self.open(XmlName::Event, true)?;
        self.attribute(XmlName::Xmlns, false)?;
        self.text(EVENT_XMLNS)?;
        self.close_start(&root)?;

        let system = self.open(XmlName::System, false)?;
        self.close_start(&system)?;

        let provider = self.open(XmlName::Provider, true)?;
        let guid = typed_or_text(shape.provider_guid, value_type::GUID);
        self.attribute(XmlName::Name, guid.is_some())?;
        self.substitution(value_type::STRING)?;
        if let Some(guid) = guid {
            self.attribute(XmlName::Guid, false)?;
            self.substitution(guid)?;
        }
        self.close_empty(provider)?;

        self.value_element(XmlName::EventId, value_type::UINT16)?;
        self.value_element(XmlName::Version, value_type::UINT8)?;
        self.value_element(XmlName::Level, value_type::UINT8)?;
        self.value_element(XmlName::Task, value_type::UINT16)?;
        self.value_element(XmlName::Opcode, value_type::UINT8)?;
        self.value_element(XmlName::Keywords, value_type::HEX_INT64)?;

        let time = self.open(XmlName::TimeCreated, true)?;
        self.attribute(XmlName::SystemTime, false)?;
        self.substitution(value_type::FILETIME)?;
        self.close_empty(time)?;

        self.value_element(XmlName::EventRecordId, value_type::UINT64)?;
        let correlation = self.open(XmlName::Correlation, false)?;
        self.close_empty(correlation)?;

        let execution = self.open(XmlName::Execution, true)?;
        self.attribute(XmlName::ProcessId, true)?;
        self.substitution(value_type::UINT32)?;
        self.attribute(XmlName::ThreadId, false)?;
        self.substitution(value_type::UINT32)?;
        self.close_empty(execution)?;

        self.value_element(XmlName::Channel, value_type::STRING)?;
        self.value_element(XmlName::Computer, value_type::STRING)?;
        match typed_or_text(shape.user_id, value_type::SID) {
            Some(user) => {
                let security = self.open(XmlName::Security, true)?;
                self.attribute(XmlName::UserId, false)?;
                self.substitution(user)?;
                self.close_empty(security)?;
            }
            None => {
                let security = self.open(XmlName::Security, false)?;
                self.close_empty(security)?;
            }
        }
        self.end(system)?;

        let event_data = self.open(XmlName::EventData, false)?;
        if shape.data.is_empty() {
            self.close_empty(event_data)?;
        } else {
            self.close_start(&event_data)?;
            for (name, _) in shape.data {
                let data = self.open(XmlName::Data, true)?;
                self.attribute(XmlName::Name, false)?;
                self.text(name)?;
                self.close_start(&data)?;
                self.substitution(value_type::STRING)?;
                self.end(data)?;
            }
            self.end(event_data)?;
        }

        self.end(root)?;
        self.out.u8(token::EOF)
    }
}

/// The DependencyId of an element that depends on no value.
const NO_DEPENDENCY: u16 = 0xffff;

/// The value type of an optional `System` value written as `form`: `typed` (GUID, SID) or a
/// string, or none when the event has no such value.
fn typed_or_text(form: Form, typed: u8) -> Option<u8> {
    match form {
        Form::Absent => None,
        Form::Typed => Some(typed),
        Form::Text => Some(value_type::STRING),
    }
}

/// Writes a template instance's values after their descriptors, which it fills in as it goes:
/// a value's size is only known once it is written (UTF-16 text).
struct Values<'o, 'b> {
    out: &'o mut Out<'b>,
    /// Where the next value's descriptor goes.
    descriptor_at: usize,
}

impl Values<'_, '_> {
    /// Room for `count` descriptors, then the values' writer.
    fn new<'o, 'b>(out: &'o mut Out<'b>, count: usize) -> Fits<Values<'o, 'b>> {
        let count_u32 = u32::try_from(count).map_err(|_| Full)?;
        out.u32(count_u32)?;
        let descriptor_at = out.pos;
        out.take(4 * count)?;
        Ok(Values { out, descriptor_at })
    }

    fn describe(&mut self, size: usize, value_type: u8) -> Fits {
        let [lo, hi] = u16::try_from(size).map_err(|_| Full)?.to_le_bytes();
        // The descriptors were written already, so this is in bounds.
        let at = self.descriptor_at;
        self.out.buf[at..at + 4].copy_from_slice(&[lo, hi, value_type, 0]);
        self.descriptor_at += 4;
        Ok(())
    }

    fn value(&mut self, value_type: u8, bytes: &[u8]) -> Fits {
        self.out.put(bytes)?;
        self.describe(bytes.len(), value_type)
    }

    /// Text, without a count or NUL: its size says how long it is. Empty text is a string of
    /// size 0, which the `evtx` crate renders as any empty string value (`""` as a `Data`
    /// value, `null` as an element's content, an attribute left out), as [`SynthEvent`] says.
    fn text(&mut self, text: &str) -> Fits {
        let units = self.out.utf16(text)?;
        self.describe(2 * units, value_type::STRING)
    }
}

/// The values of `event`, in the order [`Body::template`] numbers its substitutions.
fn write_values(
    out: &mut Out<'_>,
    shape: &Shape<'_>,
    record_id: u64,
    filetime: u64,
    event: &SynthEvent,
    guid: Option<[u8; 16]>,
    sid: Option<&[u8]>,
) -> Fits {
    let optional = [shape.provider_guid, shape.user_id]
        .iter()
        .filter(|&&form| form != Form::Absent)
        .count();
    let mut values = Values::new(out, SYSTEM_VALUES + optional + event.data.len())?;
    values.text(&event.provider)?;
    match (guid, &event.provider_guid) {
        (Some(bytes), _) => values.value(value_type::GUID, &bytes)?,
        (None, Some(text)) => values.text(text)?,
        (None, None) => {}
    }
    values.value(value_type::UINT16, &event.event_id.to_le_bytes())?;
    values.value(value_type::UINT8, &[event.version])?;
    values.value(value_type::UINT8, &[event.level])?;
    values.value(value_type::UINT16, &event.task.to_le_bytes())?;
    values.value(value_type::UINT8, &[event.opcode])?;
    values.value(value_type::HEX_INT64, &event.keywords.to_le_bytes())?;
    values.value(value_type::FILETIME, &filetime.to_le_bytes())?;
    values.value(value_type::UINT64, &record_id.to_le_bytes())?;
    values.value(value_type::UINT32, &event.process_id.to_le_bytes())?;
    values.value(value_type::UINT32, &event.thread_id.to_le_bytes())?;
    values.text(&event.channel)?;
    values.text(&event.computer)?;
    match (sid, &event.security_user_id) {
        (Some(bytes), _) => values.value(value_type::SID, bytes)?,
        (None, Some(text)) => values.text(text)?,
        (None, None) => {}
    }
    for (_, value) in &event.data {
        values.text(value)?;
    }
    Ok(())
}

/// The `System` values every record has: provider name, EventID, Version, Level, Task,
/// Opcode, Keywords, SystemTime, EventRecordID, ProcessID, ThreadID, Channel, Computer.
const SYSTEM_VALUES: usize = 13;

/// Write a whole record (header, BinXML, size copy) at `out`'s position: a template instance,
/// with the template's definition if the chunk has none yet (added to `templates` once
/// complete).
pub(crate) fn encode_record(
    out: &mut Out<'_>,
    names: &mut NameTable,
    templates: &mut TemplateTable,
    record_id: u64,
    filetime: u64,
    event: &SynthEvent,
) -> Fits {
    let guid = event.provider_guid.as_deref().map(parse_guid);
    let mut sid = [0u8; MAX_SID_LEN];
    let sid_len = event
        .security_user_id
        .as_deref()
        .map(|text| parse_sid(text, &mut sid));
    let form = |parsed: Option<bool>| match parsed {
        None => Form::Absent,
        Some(true) => Form::Typed,
        Some(false) => Form::Text,
    };
    let shape = Shape {
        provider_guid: form(guid.map(|g| g.is_some())),
        user_id: form(sid_len.map(|len| len.is_some())),
        data: &event.data,
    };
    let hash = shape.hash();

    let start = out.pos;
    out.put(&RECORD_MAGIC)?;
    let size_at = out.u32_later()?;
    out.u64(record_id)?;
    out.u64(filetime)?;

    out.put(&token::FRAGMENT_HEADER)?;
    out.put(&[token::TEMPLATE_INSTANCE, 0x01])?;
    let id = template::template_id(hash);
    out.u32(id)?;
    match templates.find(&shape, hash) {
        Some(offset) => out.u32(offset)?,
        None => {
            // Defined right here: the offset points just past itself, at the definition's
            // header (next template in the bucket, GUID, body size), then its body.
            let offset = out.offset()? + 4;
            out.u32(offset)?;
            out.u32(templates.buckets[template::bucket(id)])?;
            out.put(&template::template_guid(hash))?;
            let body_size_at = out.u32_later()?;
            Body {
                out: &mut *out,
                names,
                substitutions: 0,
            }
            .template(&shape)?;
            out.patch_len_since(body_size_at)?;
            templates.add(&shape, hash, offset);
        }
    }
    let guid = guid.flatten();
    let sid = sid_len.flatten().map(|len| &sid[..len]);
    write_values(out, &shape, record_id, filetime, event, guid, sid)?;
    out.u8(token::EOF)?;

    // The size counts the header, the BinXML and the trailing copy of the size itself.
    let size = u32::try_from(out.pos - start + 4).map_err(|_| Full)?;
    out.u32(size)?;
    if let Some(slot) = out.buf.get_mut(size_at..size_at + 4) {
        slot.copy_from_slice(&size.to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_hash_matches_ms_even6() {
        // hash = hash * 65599 + unit, over "Data": 68, 97, 116, 97.
        let expected = [68u32, 97, 116, 97]
            .iter()
            .fold(0u32, |h, &c| h.wrapping_mul(65599).wrapping_add(c));
        assert_eq!(name_hash("Data"), (expected & 0xffff) as u16);
        assert!(NAMES.iter().all(|n| n.is_ascii()));
    }

    #[test]
    fn names_are_defined_once_per_table() {
        let mut buf = vec![0u8; 256];
        let mut names = NameTable::default();
        let mut out = Out::new(&mut buf, 16);
        let mut enc = Body {
            out: &mut out,
            names: &mut names,
            substitutions: 0,
        };
        enc.name(XmlName::Data).unwrap();
        enc.name(XmlName::Data).unwrap();
        let end = enc.out.pos;
        // Reference (4) + link (4) + hash (2) + count (2) + "Data" (8) + NUL (2), then 4.
        assert_eq!(end, 16 + 4 + 18 + 4);
        assert_eq!(&buf[16..20], &20u32.to_le_bytes());
        assert_eq!(&buf[38..42], &20u32.to_le_bytes());
        let bucket = usize::from(name_hash("Data")) % STRING_BUCKETS;
        assert_eq!(names.buckets[bucket], 20);
    }

    #[test]
    fn out_reports_full_at_the_end() {
        let mut buf = [0u8; 8];
        let mut out = Out::new(&mut buf, 0);
        assert_eq!(out.utf16_counted("abc"), Ok(()));
        assert_eq!(out.utf16_counted("x"), Err(Full));
        assert_eq!(&buf[..8], &[3, 0, b'a', 0, b'b', 0, b'c', 0]);
        let mut buf = [0u8; 64];
        let mut out = Out::new(&mut buf, 0);
        assert_eq!(out.utf16_counted("a\0b"), Err(Nul));
        assert_eq!(out.utf16_counted("é\0"), Err(Nul));
        let mut out = Out::new(&mut buf, 0);
        assert_eq!(out.utf16_counted("é🦀"), Ok(()));
        assert_eq!(out.pos, 2 + 2 * 3);
        assert_eq!(&buf[..8], &[3, 0, 0xe9, 0, 0x3e, 0xd8, 0x80, 0xdd]);
        let mut out = Out::new(&mut buf[..6], 0);
        assert_eq!(out.utf16_counted("éé"), Ok(()));
        assert_eq!(out.utf16_counted("é"), Err(Full));
    }
}
