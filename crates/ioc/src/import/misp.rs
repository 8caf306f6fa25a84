//! MISP event JSON: `{"Event": {…}}`, a list of those, `{"response": […]}`, or a bare
//! event. Its `Attribute`s and the attributes of its `Object`s are read one at a time
//! (composite types such as `filename|sha256` split into one IOC per part); only those
//! marked `to_ids` unless asked otherwise. An event's records are handed over when the
//! event ends, with the event's TLP tag (which MISP writes after the attributes) and
//! title applied.

use super::{Entry, ImportError, Item, Options, Record, Summary, entry, parse_time, refused};
use crate::kind::{IocType, Tlp, composite};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;
use std::io::Read;
use std::ops::ControlFlow;

fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        Some(Value::String(s)) => matches!(s.as_str(), "1" | "true" | "True"),
        _ => false,
    }
}

/// (labels, TLP) of a `Tag` list.
fn tags(list: Option<&Value>) -> (Vec<String>, Option<Tlp>) {
    let mut labels = Vec::new();
    let mut tlp = None;
    for tag in list.and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = tag.get("name").and_then(Value::as_str) else {
            continue;
        };
        if name.to_ascii_lowercase().starts_with("tlp:") {
            if let Some(level) = Tlp::parse(name) {
                tlp = Some(level);
            }
        } else {
            labels.push(name.chars().take(128).collect());
        }
    }
    (labels, tlp)
}

fn attribute_entries(locator: String, attribute: &Value, options: &Options, out: &mut Vec<Entry>) {
    let kind = attribute.get("type").and_then(Value::as_str).unwrap_or("");
    let value = match attribute.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    if is_true(attribute.get("deleted")) {
        out.push(refused(locator, &value, "the attribute is deleted"));
        return;
    }
    if !options.misp_all_attributes && !is_true(attribute.get("to_ids")) {
        out.push(refused(locator, &value, "not marked to_ids (only attributes for detection are imported unless all are asked for)"));
        return;
    }
    let (labels, tlp) = tags(attribute.get("Tag"));
    let text = |key: &str| attribute.get(key).and_then(Value::as_str).unwrap_or("");
    let base = Record {
        description: text("comment").chars().take(4096).collect(),
        labels,
        tlp,
        first_seen: parse_time(text("first_seen")),
        last_seen: parse_time(text("last_seen")),
        source: Some(format!("misp:{}", text("category"))).filter(|s| s != "misp:"),
        ..Record::default()
    };
    if let Some(parts) = composite(kind) {
        let values: Vec<&str> = value.split('|').collect();
        if values.len() != parts.len() {
            out.push(refused(
                locator,
                &value,
                format!("type {kind} needs {} values separated by |", parts.len()),
            ));
            return;
        }
        let mut any = false;
        for (index, (part_kind, part)) in parts.iter().zip(values).enumerate() {
            if let Some(part_kind) = part_kind {
                any = true;
                out.push(entry(
                    format!("{locator}#{}", index + 1),
                    Some(*part_kind),
                    part,
                    base.clone(),
                ));
            }
        }
        if !any {
            out.push(refused(
                locator,
                &value,
                format!("MISP type {kind} has no IOC type here"),
            ));
        }
        return;
    }
    match IocType::from_name(kind) {
        Some(ioc_type) => out.push(entry(locator, Some(ioc_type), &value, base)),
        None => out.push(refused(
            locator,
            &value,
            format!("MISP type {kind:?} has no IOC type here"),
        )),
    }
}

struct Reader<'e> {
    emit: &'e mut dyn FnMut(Entry) -> ControlFlow<()>,
    options: Options,
    summary: Summary,
    events: u64,
    stopped: bool,
}

/// One event's state while it is read.
#[derive(Default)]
struct EventState {
    entries: Vec<Entry>,
    tlp: Option<Tlp>,
    labels: Vec<String>,
    info: String,
    is_event: bool,
}

impl Reader<'_> {
    fn finish(&mut self, state: EventState) {
        if !state.is_event {
            return;
        }
        self.events += 1;
        for mut entry in state.entries {
            if self.stopped {
                return;
            }
            if let Item::Ioc(record) = &mut entry.item {
                if record.tlp.is_none() {
                    record.tlp = state.tlp;
                }
                for label in &state.labels {
                    if !record.labels.contains(label) {
                        record.labels.push(label.clone());
                    }
                }
                if record.description.is_empty() && !state.info.is_empty() {
                    record.description = format!(
                        "MISP event: {}",
                        state.info.chars().take(512).collect::<String>()
                    );
                }
            }
            if (self.emit)(entry).is_break() {
                self.stopped = true;
            }
        }
    }
}

/// A JSON value that is an event, a wrapper of one, or a list of them.
struct Node<'r, 'e>(&'r mut Reader<'e>);

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a MISP event")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Node(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let reader = self.0;
        let mut state = EventState::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "Event" | "response" => map.next_value_seed(Node(&mut *reader))?,
                "Attribute" => {
                    state.is_event = true;
                    map.next_value_seed(Attributes {
                        reader: &mut *reader,
                        state: &mut state,
                        prefix: String::new(),
                    })?;
                }
                "Object" => {
                    state.is_event = true;
                    map.next_value_seed(Objects {
                        reader: &mut *reader,
                        state: &mut state,
                    })?;
                }
                "Tag" => {
                    let list: Value = map.next_value()?;
                    let (labels, tlp) = tags(Some(&list));
                    state.labels = labels;
                    state.tlp = tlp;
                }
                "info" => {
                    state.info = match map.next_value::<Value>()? {
                        Value::String(s) => s,
                        _ => String::new(),
                    };
                    state.is_event = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        reader.finish(state);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

struct Attributes<'r, 'e, 's> {
    reader: &'r mut Reader<'e>,
    state: &'s mut EventState,
    prefix: String,
}

impl<'de> DeserializeSeed<'de> for Attributes<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Attributes<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of MISP attributes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(attribute) = seq.next_element::<Value>()? {
            let locator = format!("{}Attribute[{index}]", self.prefix);
            attribute_entries(
                locator,
                &attribute,
                &self.reader.options,
                &mut self.state.entries,
            );
            index += 1;
        }
        Ok(())
    }
}

struct Objects<'r, 'e, 's> {
    reader: &'r mut Reader<'e>,
    state: &'s mut EventState,
}

impl<'de> DeserializeSeed<'de> for Objects<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Objects<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of MISP objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(object) = seq.next_element::<Value>()? {
            match object.get("Attribute").and_then(Value::as_array) {
                Some(attributes) => {
                    for (k, attribute) in attributes.iter().enumerate() {
                        let locator = format!("Object[{index}].Attribute[{k}]");
                        attribute_entries(
                            locator,
                            attribute,
                            &self.reader.options,
                            &mut self.state.entries,
                        );
                    }
                }
                None => self.reader.summary.other_objects += 1,
            }
            index += 1;
        }
        Ok(())
    }
}

pub(super) fn read(
    input: impl Read,
    options: &Options,
    emit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> Result<Summary, ImportError> {
    let mut reader = Reader {
        emit,
        options: options.clone(),
        summary: Summary::default(),
        events: 0,
        stopped: false,
    };
    let mut deserializer =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(64 * 1024, input));
    Node(&mut reader)
        .deserialize(&mut deserializer)
        .map_err(|e| ImportError::new(format!("not readable MISP JSON: {e}")))?;
    deserializer
        .end()
        .map_err(|e| ImportError::new(format!("text after the MISP JSON: {e}")))?;
    if reader.events == 0 {
        return Err(ImportError::new(
            "no MISP event (an object with Attribute, Object or info) in the JSON",
        ));
    }
    Ok(reader.summary)
}
