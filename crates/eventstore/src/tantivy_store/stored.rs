//! Stored events read straight from the doc store into an [`Event`]: the flattened
//! fields become a JSON map as they are decoded, with no intermediate document (through
//! tantivy's `TantivyDocument` and an `OwnedValue`, every value was built three times,
//! most of an export's CPU).

use super::schema::{Fields, Layout};
use crate::StoreError;
use casescope_evidence::{Event, RawJson};
use serde_json::{Map, Value as Json};
use tantivy::schema::document::{
    ArrayAccess, DeserializeError, DocumentDeserialize, DocumentDeserializer, ObjectAccess,
    ValueDeserialize, ValueDeserializer, ValueVisitor,
};
use tantivy::schema::{Field, OwnedValue};

/// One stored field value.
enum Stored {
    Text(String),
    U64(u64),
    I64(i64),
    Json(Json),
}

/// A stored document: its fields in stored order.
pub struct StoredDoc(Vec<(Field, Stored)>);

impl DocumentDeserialize for StoredDoc {
    fn deserialize<'de, D>(mut deserializer: D) -> Result<Self, DeserializeError>
    where
        D: DocumentDeserializer<'de>,
    {
        let mut values = Vec::with_capacity(deserializer.size_hint());
        while let Some((field, value)) = deserializer.next_field::<Stored>()? {
            values.push((field, value));
        }
        Ok(StoredDoc(values))
    }
}

impl ValueDeserialize for Stored {
    fn deserialize<'de, D>(deserializer: D) -> Result<Self, DeserializeError>
    where
        D: ValueDeserializer<'de>,
    {
        deserializer.deserialize_any(StoredVisitor)
    }
}

struct StoredVisitor;

impl ValueVisitor for StoredVisitor {
    type Value = Stored;

    fn visit_string(&self, value: String) -> Result<Stored, DeserializeError> {
        Ok(Stored::Text(value))
    }

    fn visit_u64(&self, value: u64) -> Result<Stored, DeserializeError> {
        Ok(Stored::U64(value))
    }

    fn visit_i64(&self, value: i64) -> Result<Stored, DeserializeError> {
        Ok(Stored::I64(value))
    }

    fn visit_object<'de, A>(&self, access: A) -> Result<Stored, DeserializeError>
    where
        A: ObjectAccess<'de>,
    {
        JsonVisitor.visit_object(access).map(Stored::Json)
    }
}

/// A value inside the stored JSON object.
struct JsonValue(Json);

impl ValueDeserialize for JsonValue {
    fn deserialize<'de, D>(deserializer: D) -> Result<Self, DeserializeError>
    where
        D: ValueDeserializer<'de>,
    {
        deserializer.deserialize_any(JsonVisitor).map(JsonValue)
    }
}

struct JsonVisitor;

impl ValueVisitor for JsonVisitor {
    type Value = Json;

    fn visit_null(&self) -> Result<Json, DeserializeError> {
        Ok(Json::Null)
    }

    fn visit_string(&self, value: String) -> Result<Json, DeserializeError> {
        Ok(Json::String(value))
    }

    fn visit_u64(&self, value: u64) -> Result<Json, DeserializeError> {
        Ok(Json::from(value))
    }

    fn visit_i64(&self, value: i64) -> Result<Json, DeserializeError> {
        Ok(Json::from(value))
    }

    fn visit_f64(&self, value: f64) -> Result<Json, DeserializeError> {
        Ok(serde_json::Number::from_f64(value)
            .map(Json::Number)
            .unwrap_or(Json::Null))
    }

    fn visit_bool(&self, value: bool) -> Result<Json, DeserializeError> {
        Ok(Json::Bool(value))
    }

    /// tantivy stores JSON text that reads as an RFC 3339 time as a date; it comes back
    /// as its RFC 3339 text, as it always has.
    fn visit_datetime(&self, value: tantivy::DateTime) -> Result<Json, DeserializeError> {
        serde_json::to_value(OwnedValue::Date(value)).map_err(DeserializeError::custom)
    }

    fn visit_array<'de, A>(&self, mut access: A) -> Result<Json, DeserializeError>
    where
        A: ArrayAccess<'de>,
    {
        let mut items = Vec::with_capacity(access.size_hint());
        while let Some(JsonValue(item)) = access.next_element::<JsonValue>()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_object<'de, A>(&self, mut access: A) -> Result<Json, DeserializeError>
    where
        A: ObjectAccess<'de>,
    {
        let mut map = Map::with_capacity(access.size_hint());
        while let Some((key, JsonValue(value))) = access.next_entry::<JsonValue>()? {
            map.insert(key, value);
        }
        Ok(Json::Object(map))
    }
}

/// The event of a stored document; its raw record left empty when `skip_raw`. Its
/// fields are the stored ones ([`Layout::FieldsStored`], or an event stored without a
/// record), else derived from the stored record.
pub fn to_event(fields: &Fields, document: StoredDoc, skip_raw: bool) -> Result<Event, StoreError> {
    let corrupt = |what: &str| StoreError::Internal(format!("stored event lacks {what}"));
    let mut event = Event {
        event_id: String::new(),
        case_id: String::new(),
        file_id: String::new(),
        source: "unknown",
        timestamp_micros: 0,
        locator: String::new(),
        record_id: None,
        line: None,
        event_code: None,
        channel: None,
        provider: None,
        computer: None,
        level: None,
        fields: Map::new(),
        raw: RawJson::default(),
        fields_from_raw: false,
    };
    let (mut has_id, mut has_file, mut has_time) = (false, false, false);
    let mut has_fields = false;
    let mut raw_text = None;
    // Only the first value of each field counts (as `get_first` read it).
    let mut seen: Vec<Field> = Vec::with_capacity(document.0.len());
    for (field, value) in document.0 {
        if seen.contains(&field) {
            continue;
        }
        seen.push(field);
        match value {
            Stored::Text(text) => {
                if field == fields.event_id {
                    event.event_id = text;
                    has_id = true;
                } else if field == fields.file_id {
                    event.file_id = text;
                    has_file = true;
                } else if field == fields.source {
                    event.source = match text.as_str() {
                        "evtx" => "evtx",
                        "json" => "json",
                        "csv" => "csv",
                        _ => "unknown",
                    };
                } else if field == fields.locator {
                    event.locator = text;
                } else if field == fields.channel {
                    event.channel = Some(text);
                } else if field == fields.provider {
                    event.provider = Some(text);
                } else if field == fields.computer {
                    event.computer = Some(text);
                } else if field == fields.raw {
                    raw_text = Some(text);
                }
            }
            Stored::U64(number) => {
                if field == fields.record_id {
                    event.record_id = Some(number);
                } else if field == fields.line {
                    event.line = Some(number);
                } else if field == fields.event_code {
                    event.event_code = u32::try_from(number).ok();
                } else if field == fields.level {
                    event.level = u32::try_from(number).ok();
                }
            }
            Stored::I64(number) => {
                if field == fields.timestamp {
                    event.timestamp_micros = number;
                    has_time = true;
                }
            }
            Stored::Json(Json::Object(map)) => {
                let stored_fields = match fields.layout {
                    Layout::RecordOnce { stored_fields } => stored_fields,
                    Layout::FieldsStored => fields.fields,
                };
                if field == stored_fields {
                    event.fields = map;
                    has_fields = true;
                }
            }
            Stored::Json(_) => {}
        }
    }
    if !has_id {
        return Err(corrupt("event_id"));
    }
    if !has_file {
        return Err(corrupt("file_id"));
    }
    if !has_time {
        return Err(corrupt("timestamp"));
    }
    if let Some(text) = raw_text {
        if !has_fields && fields.layout != Layout::FieldsStored {
            let parts =
                casescope_evidence::normalize_stored(event.source, &text).map_err(|error| {
                    StoreError::Internal(format!(
                        "the stored record of event {} does not read as {} ({error})",
                        event.event_id, event.source
                    ))
                })?;
            event.fields = parts.fields;
            event.fields_from_raw = true;
        }
        if !skip_raw {
            event.raw = RawJson::from_text(text).unwrap_or_default();
        }
    }
    Ok(event)
}
