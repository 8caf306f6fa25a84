//! Template definitions read into elements: names, attributes, text and slots.

use super::text::utf16_text;
use super::{Source, known_type};

// ---- Template definitions ----

/// Elements one definition may hold; a larger one goes through the JSON path.
pub(super) const MAX_ELEMENTS: usize = 4096;
/// Deepest nesting read.
pub(super) const MAX_DEPTH: usize = 32;
/// The template definition header: next offset, GUID, body size.
pub(super) const DEFINITION_HEADER: usize = 24;
pub(super) const NO_DEPENDENCY: u16 = 0xffff;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    Text(String),
    Slot(u16),
}

/// An element or attribute name as stored: UTF-16LE, compared with the few names
/// programs read without being decoded.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Name<'a>(pub(super) &'a [u8]);

impl Name<'_> {
    pub(super) fn is(&self, ascii: &str) -> bool {
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
pub(super) struct Element<'a> {
    pub(super) name: Name<'a>,
    pub(super) dependency: Option<u16>,
    pub(super) attributes: Vec<(Name<'a>, Vec<Piece>)>,
    /// Child elements, by index.
    pub(super) children: Vec<usize>,
    /// Text and values between the element's tags.
    pub(super) content: Vec<Piece>,
}

/// Reads a chunk's bytes, bounds-checked.
pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    /// Name bytes it may still read: a crafted definition could name thousands of
    /// elements with the chunk's longest name.
    pub(super) names: usize,
}

/// Name bytes one definition may read ([`Reader::names`]); real ones read a few KiB.
pub(super) const MAX_NAME_BYTES: usize = 64 * 1024;

impl<'a> Reader<'a> {
    pub(super) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let bytes = data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.bytes(2)?.try_into().ok()?))
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    /// A name reference: the offset of the name's definition, which follows right here
    /// when it is the first use in the chunk.
    pub(super) fn name(&mut self) -> Option<Name<'a>> {
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
pub(super) fn definition(chunk: &[u8], offset: u32) -> Option<Vec<Element<'_>>> {
    read_elements(body(chunk, offset)?)
}

/// A reader of the body of the template definition at `offset`.
pub(super) fn body(chunk: &[u8], offset: u32) -> Option<Reader<'_>> {
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
pub(super) fn definition_key(chunk: &[u8], offset: u32) -> Option<Vec<u8>> {
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
pub(super) enum Token<'a> {
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
pub(super) fn each_token<'a>(
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

/// The definition's elements; element 0 is the root.
pub(super) fn read_elements(mut reader: Reader<'_>) -> Option<Vec<Element<'_>>> {
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
pub(super) fn add_piece(
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
pub(super) fn single(pieces: &[Piece]) -> Option<Option<Source>> {
    match pieces {
        [] => Some(None),
        [Piece::Slot(slot)] => Some(Some(Source::Slot(*slot))),
        [Piece::Text(text)] if !text.is_empty() => Some(Some(Source::Text(text.clone()))),
        _ => None,
    }
}
