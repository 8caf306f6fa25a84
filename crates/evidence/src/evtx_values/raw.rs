//! A record's stored form rendered from its template values: compact JSON in the shape
//! the evtx crate gives a record (`{"Event":{"System":{…},"EventData":{…}}}`, attributes
//! under `#attributes`, an element's text beside them as `#text`), so that whatever
//! reads an EVTX record's JSON reads this one the same way, but without building the
//! record's tree or rendering it through the evtx crate. It is the evtx crate's JSON
//! byte for byte (`crates/evidence/tests/evtx_raw.rs` compares every record of the
//! corpus), so a record's stored form, and the de-duplication fingerprint taken from it,
//! is what earlier versions stored; the same record always renders to the same bytes.
//!
//! Every element of `System` is kept, not only the ones normalisation reads
//! (`Correlation`, `EventID`'s `Qualifiers`, …). A template whose event holds anything
//! else besides `System` and `EventData` (`RenderingInfo` of forwarded events, …) has
//! no shape: its records are rendered by the evtx crate, so nothing of a record is lost.

use super::definition::{Element, Name};
use super::text::{raw_json, utf16_text};
use super::{DataValue, Emptiness, Instance, Source, emptiness, single};
use serde_json::Value;

/// What of a template's event is rendered besides the data section's values.
#[derive(Debug)]
pub(super) struct RawShape {
    /// The `Event` element's attributes (its namespace).
    root_attributes: Vec<(String, Source)>,
    /// `System`'s children, in document order (`None`: no `System`).
    system: Option<Vec<RawElement>>,
}

#[derive(Debug)]
struct RawElement {
    /// `"Name":`, escaped.
    key: String,
    /// The value whose NULL leaves the element out.
    dependency: Option<u16>,
    /// `"Name":` and the value of each attribute.
    attributes: Vec<(String, Source)>,
    content: Option<Source>,
}

/// `name` as a JSON object key followed by `:`.
fn key_of(name: &str) -> Option<String> {
    let mut key = Vec::with_capacity(name.len() + 3);
    write_str(&mut key, name);
    key.push(b':');
    String::from_utf8(key).ok()
}

fn name_text(name: Name<'_>) -> Option<String> {
    utf16_text(name.0)
}

/// An element's attributes as keys and sources (`None`: one has no value, which the
/// evtx crate's rules decide).
fn attributes_of(element: &Element) -> Option<Vec<(String, Source)>> {
    let mut attributes = Vec::with_capacity(element.attributes.len());
    for (name, pieces) in &element.attributes {
        let source = single(pieces)??;
        attributes.push((key_of(&name_text(*name)?)?, source));
    }
    Some(attributes)
}

impl RawShape {
    /// The shape of an event whose root is `elements[0]` and `System` is `system`
    /// (`None`: the evtx crate renders its records).
    pub(super) fn of(elements: &[Element], system: Option<&Element>) -> Option<RawShape> {
        let root = &elements[0];
        let mut seen_data = false;
        for &child in &root.children {
            let name = elements[child].name;
            if name.is("EventData") {
                seen_data = true;
            } else if !name.is("System") || seen_data {
                // Anything else, or `EventData` before `System`: the evtx crate's.
                return None;
            }
        }
        let mut shape = RawShape {
            root_attributes: attributes_of(root)?,
            system: None,
        };
        let Some(system) = system else {
            return Some(shape);
        };
        if !system.attributes.is_empty() {
            return None;
        }
        let mut names: Vec<Name> = Vec::with_capacity(system.children.len());
        let mut elements_of_system = Vec::with_capacity(system.children.len());
        for &child in &system.children {
            let element = &elements[child];
            // Repeated names and nested elements take the evtx crate's rules.
            if !element.children.is_empty() || names.contains(&element.name) {
                return None;
            }
            names.push(element.name);
            elements_of_system.push(RawElement {
                key: key_of(&name_text(element.name)?)?,
                dependency: element.dependency,
                attributes: attributes_of(element)?,
                content: single(&element.content)?,
            });
        }
        shape.system = Some(elements_of_system);
        Some(shape)
    }

    /// The record's JSON; `data` is its data section as names and values (`None`: the
    /// event has none). `None` where a value is in a form this module does not render.
    pub(super) fn render(
        &self,
        instance: &Instance,
        chunk: &[u8],
        data: Option<(&[DataValue], &[Value])>,
    ) -> Option<String> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(b"{\"Event\":{");
        let mut members = 0;
        if write_attributes(&mut out, &self.root_attributes, instance, chunk)? {
            members += 1;
        }
        if let Some(system) = &self.system {
            if members > 0 {
                out.push(b',');
            }
            members += 1;
            out.extend_from_slice(b"\"System\":{");
            let mut first = true;
            for element in system {
                if let Some(dependency) = element.dependency
                    && let Some((kind, bytes)) = instance.value(chunk, dependency)
                {
                    match emptiness(kind, bytes) {
                        Emptiness::Null => continue,
                        Emptiness::Blank => return None,
                        Emptiness::Filled => {}
                    }
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(element.key.as_bytes());
                let content = match &element.content {
                    None => None,
                    Some(source) => value_of(source, instance, chunk, false)?,
                };
                let mut inner = Vec::new();
                if !write_attributes(&mut inner, &element.attributes, instance, chunk)? {
                    write(&mut out, content.as_ref().unwrap_or(&Value::Null))?;
                    continue;
                }
                out.push(b'{');
                out.extend_from_slice(&inner);
                if let Some(content) = &content {
                    out.extend_from_slice(b",\"#text\":");
                    write(&mut out, content)?;
                }
                out.push(b'}');
            }
            out.push(b'}');
        }
        if let Some(section) = data {
            if members > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"\"EventData\":");
            match section {
                // An `EventData` with no `Data` in it, as the evtx crate writes it.
                ([], _) => out.extend_from_slice(b"null"),
                (names, values) => {
                    out.push(b'{');
                    for (i, ((name, _), value)) in names.iter().zip(values).enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        write_str(&mut out, name);
                        out.push(b':');
                        write(&mut out, value)?;
                    }
                    out.push(b'}');
                }
            }
        }
        out.extend_from_slice(b"}}");
        String::from_utf8(out).ok()
    }
}

/// Writes `"#attributes":{…}` with the attributes that have a value; `Some(false)`
/// (nothing written) when none has.
fn write_attributes(
    out: &mut Vec<u8>,
    attributes: &[(String, Source)],
    instance: &Instance,
    chunk: &[u8],
) -> Option<bool> {
    let mut written = false;
    for (key, source) in attributes {
        if let Some(value) = value_of(source, instance, chunk, true)? {
            out.extend_from_slice(if written {
                b","
            } else {
                b"\"#attributes\":{" as &[u8]
            });
            written = true;
            out.extend_from_slice(key.as_bytes());
            write(out, &value)?;
        }
    }
    if written {
        out.push(b'}');
    }
    Some(written)
}

/// The value of `source`: `None` when it is NULL (or, for an attribute, empty), as
/// the evtx crate leaves those out; `Err`-like `None` of the outer option when its
/// form is not rendered here (an empty element's text, whose rendering depends on
/// the element's form).
fn value_of(
    source: &Source,
    instance: &Instance,
    chunk: &[u8],
    attribute: bool,
) -> Option<Option<Value>> {
    match source {
        Source::Text(text) => Some(Some(Value::String(text.clone()))),
        Source::Slot(slot) => {
            let Some((kind, bytes)) = instance.value(chunk, *slot) else {
                // A slot past the values is none, as the evtx crate reads it.
                return Some(None);
            };
            match emptiness(kind, bytes) {
                Emptiness::Null => Some(None),
                Emptiness::Blank if attribute => Some(None),
                Emptiness::Blank => None,
                Emptiness::Filled => Some(Some(raw_json(kind, bytes)?)),
            }
        }
    }
}

/// A scalar as the evtx crate writes it (strings through [`write_str`]).
fn write(out: &mut Vec<u8>, value: &Value) -> Option<()> {
    match value {
        Value::String(text) => {
            write_str(out, text);
            Some(())
        }
        other => serde_json::to_writer(out, other).ok(),
    }
}

/// `text` as a JSON string, escaped as the evtx crate escapes it: `\"`, `\\`, the
/// short forms of `\b \f \n \r \t`, other controls as `\u00XX` in upper-case hex
/// (serde_json writes lower case), everything else as it is.
fn write_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0x0f)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}
