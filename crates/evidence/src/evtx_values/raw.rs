//! A record's stored form rendered from its template values: compact JSON in the shape
//! the evtx crate gives a record (`{"Event":{"System":{…},"EventData":{…}}}`, attributes
//! under `#attributes`, an element's text beside them as `#text`), so that whatever
//! reads an EVTX record's JSON reads this one the same way, but without building the
//! record's tree or rendering it through the evtx crate. The `Event` element's
//! namespace (the same on every record) is left out. The same record always renders
//! to the same bytes.
//!
//! Every element of `System` is kept, not only the ones normalisation reads
//! (`Correlation`, `EventID`'s `Qualifiers`, …). A template whose event holds anything
//! else besides `System` and `EventData` (`RenderingInfo` of forwarded events, …) has
//! no shape: its records are rendered by the evtx crate, so nothing of a record is lost.

use super::definition::{Element, Name};
use super::text::{raw_json, utf16_text};
use super::{Emptiness, Instance, Source, emptiness, single};
use serde_json::Value;

/// What of a template's event is rendered besides the data section's values.
#[derive(Debug)]
pub(super) struct RawShape {
    /// `System`'s children, in document order.
    system: Vec<RawElement>,
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
    let mut key = serde_json::to_string(name).ok()?;
    key.push(':');
    Some(key)
}

fn name_text(name: Name<'_>) -> Option<String> {
    utf16_text(name.0)
}

impl RawShape {
    /// The shape of an event whose root is `elements[0]` and `System` is `system`
    /// (`None`: the evtx crate renders its records).
    pub(super) fn of(elements: &[Element], system: Option<&Element>) -> Option<RawShape> {
        let root = &elements[0];
        let mut shape = RawShape { system: Vec::new() };
        for &child in &root.children {
            let name = elements[child].name;
            if !name.is("EventData") && !name.is("System") {
                return None;
            }
        }
        let Some(system) = system else {
            return Some(shape);
        };
        if !system.attributes.is_empty() {
            return None;
        }
        let mut names: Vec<Name> = Vec::with_capacity(system.children.len());
        for &child in &system.children {
            let element = &elements[child];
            // Repeated names and nested elements take the evtx crate's rules.
            if !element.children.is_empty() || names.contains(&element.name) {
                return None;
            }
            names.push(element.name);
            let mut attributes = Vec::with_capacity(element.attributes.len());
            for (name, pieces) in &element.attributes {
                // An attribute without a value: left to the evtx crate.
                let source = single(pieces)??;
                attributes.push((key_of(&name_text(*name)?)?, source));
            }
            shape.system.push(RawElement {
                key: key_of(&name_text(element.name)?)?,
                dependency: element.dependency,
                attributes,
                content: single(&element.content)?,
            });
        }
        Some(shape)
    }

    /// The record's JSON; `data` is its data section as names and values (`None`: the
    /// event has none). `None` where a value is in a form this module does not render.
    pub(super) fn render(
        &self,
        instance: &Instance,
        chunk: &[u8],
        data: Option<(&[(super::FieldName, Option<Source>)], &[Value])>,
    ) -> Option<String> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(b"{\"Event\":{\"System\":{");
        let mut first = true;
        for element in &self.system {
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
            let mut attributes = Vec::with_capacity(element.attributes.len());
            for (key, source) in &element.attributes {
                if let Some(value) = value_of(source, instance, chunk, true)? {
                    attributes.push((key, value));
                }
            }
            if attributes.is_empty() {
                write(&mut out, content.as_ref().unwrap_or(&Value::Null))?;
                continue;
            }
            out.extend_from_slice(b"{\"#attributes\":{");
            for (i, (key, value)) in attributes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(key.as_bytes());
                write(&mut out, value)?;
            }
            out.push(b'}');
            if let Some(content) = &content {
                out.extend_from_slice(b",\"#text\":");
                write(&mut out, content)?;
            }
            out.push(b'}');
        }
        out.push(b'}');
        match data {
            // An `EventData` with no `Data` in it, as the evtx crate writes it.
            Some((names, _)) if names.is_empty() => out.extend_from_slice(b",\"EventData\":null"),
            Some((names, values)) => {
                out.extend_from_slice(b",\"EventData\":{");
                for (i, ((name, _), value)) in names.iter().zip(values).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, &**name).ok()?;
                    out.push(b':');
                    write(&mut out, value)?;
                }
                out.push(b'}');
            }
            None => {}
        }
        out.extend_from_slice(b"}}");
        String::from_utf8(out).ok()
    }
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

fn write(out: &mut Vec<u8>, value: &Value) -> Option<()> {
    serde_json::to_writer(out, value).ok()
}
