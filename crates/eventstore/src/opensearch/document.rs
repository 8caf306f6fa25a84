//! The index layout (settings and mappings) and the document each event becomes.
//!
//! What a document holds, and why:
//! - the event's own columns as keyword/long fields (`case_id` is also the routing key);
//! - `fields`, the flattened fields, as one `flat_object` (one mapping entry whatever
//!   the number of field names) for storage and for exact look-ups from Dashboards;
//! - `text`, every field value, analysed into lower-cased words (field-less terms),
//!   with `text.whole` holding each whole value lower-cased;
//! - `field_terms` and `field_words`, derived here, so that `Name:value` queries match
//!   the way they do on tantivy (case-insensitive, whole value or words, numbers as
//!   numbers), which `flat_object` alone cannot do: it indexes values as exact,
//!   case-sensitive strings, has no words, no phrases, no numeric ranges and no
//!   wildcards. Each entry is keyed by the field name: `<name>\x1e<type><value>` in
//!   `field_terms` (keyword: whole string values `s`, integers `i`/`u` and floats `f`
//!   in an order-preserving hex encoding, booleans `b`), and `<name>\x1e<word>` tokens,
//!   one array element per value so that phrases keep their positions, in
//!   `field_words` (text split on spaces only);
//! - `raw`, the original record, stored and never indexed (`enabled: false`);
//! - `fields_unindexed`, stored only: the fields `flat_object` cannot take safely
//!   (values too long for one term, and nulls, which some 2.x releases refuse or index
//!   as the string "null"). Reading merges them back into the event's fields.
//!
//! The derived fields are excluded from `_source` (they are rebuilt from the event on
//! every write), so stored documents stay the size of the event.

use crate::StoreError;
use crate::tokenizer::{MAX_WHOLE_VALUE_BYTES, words, words_are_indexed};
use casescope_evidence::{Event, RawJson};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};

/// Separates a field's key from the value in `field_terms` and `field_words`.
pub const KEY_SEPARATOR: char = '\u{1e}';
/// Longest field key (escaped name) indexed; longer names are cut at a character edge.
pub const MAX_FIELD_KEY_BYTES: usize = 256;
/// Longest word indexed per field; longer words are cut at a character edge (a
/// Lucene term may not exceed 32766 bytes, or the whole document is refused).
pub const MAX_WORD_BYTES: usize = 4096;
/// A field whose name plus longest string exceeds this is stored outside the
/// `flat_object` (in `fields_unindexed`), because `flat_object` indexes every value as
/// one term and would refuse the whole document. Its words are still searchable
/// through `text` and `field_words`.
pub const MAX_FLAT_VALUE_BYTES: usize = 16 * 1024;

/// Words longer than this (UTF-16 units) are cut by the `text` analyser.
const TEXT_MAX_TOKEN_CHARS: usize = 4096;
/// Keyword columns taken from evidence (channel, computer, …) longer than this are
/// kept in `_source` but not indexed.
const KEYWORD_IGNORE_ABOVE: usize = 8191;

/// Analysis settings and mappings for `PUT /<index>`.
pub fn index_body(shards: Option<u32>, replicas: Option<u32>) -> Value {
    let mut index_settings = Map::new();
    // Annotation filters send their events' tie-breakers as one `terms` query.
    index_settings.insert("max_terms_count".into(), json!(crate::MAX_SET_MEMBERS));
    if let Some(shards) = shards {
        index_settings.insert("number_of_shards".into(), json!(shards));
    }
    if let Some(replicas) = replicas {
        index_settings.insert("number_of_replicas".into(), json!(replicas));
    }
    let keyword = json!({"type": "keyword"});
    let lowercase_keyword = json!({
        "type": "keyword",
        "normalizer": "casescope_lowercase",
        "ignore_above": KEYWORD_IGNORE_ABOVE,
    });
    let mut body = json!({
        "settings": {
            "analysis": {
                "normalizer": {
                    "casescope_lowercase": {"type": "custom", "filter": ["lowercase"]}
                },
                "tokenizer": {
                    // Words as the tantivy backend cuts them: runs of letters, digits, `_`.
                    "casescope_words": {
                        "type": "pattern",
                        "pattern": "[^\\p{IsAlphabetic}\\p{N}_]+"
                    },
                    // `field_words` arrives tokenised: split on the spaces put between tokens.
                    "casescope_spaces": {"type": "pattern", "pattern": " "}
                },
                "filter": {
                    "casescope_truncate": {"type": "truncate", "length": TEXT_MAX_TOKEN_CHARS}
                },
                "analyzer": {
                    "casescope_words": {
                        "type": "custom",
                        "tokenizer": "casescope_words",
                        "filter": ["lowercase", "casescope_truncate"]
                    },
                    "casescope_field_words": {
                        "type": "custom",
                        "tokenizer": "casescope_spaces"
                    }
                }
            }
        },
        "mappings": {
            "dynamic": "strict",
            "_source": {"excludes": ["text", "field_terms", "field_words"]},
            "properties": {
                "event_id": keyword,
                "case_id": keyword,
                "file_id": keyword,
                "source": keyword,
                "locator": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE},
                "timestamp_micros": {"type": "long"},
                "@timestamp": {"type": "date", "format": "epoch_millis"},
                "tiebreak": {"type": "long"},
                "record_id": {"type": "long"},
                "line": {"type": "long"},
                "event_code": {"type": "long"},
                "level": {"type": "long"},
                "channel": lowercase_keyword,
                "provider": lowercase_keyword,
                "computer": lowercase_keyword,
                "fields": {"type": "flat_object"},
                "fields_unindexed": {"type": "object", "enabled": false},
                "text": {
                    "type": "text",
                    "analyzer": "casescope_words",
                    "norms": false,
                    "fields": {
                        "whole": {
                            "type": "keyword",
                            "normalizer": "casescope_lowercase",
                            "ignore_above": MAX_WHOLE_VALUE_BYTES,
                            "doc_values": false
                        }
                    }
                },
                // Doc values: facets aggregate whole values over a selection.
                "field_terms": {"type": "keyword"},
                "field_words": {
                    "type": "text",
                    "analyzer": "casescope_field_words",
                    "norms": false
                },
                "raw": {"type": "object", "enabled": false}
            }
        }
    });
    body["settings"]["index"] = Value::Object(index_settings);
    body
}

/// Checks that an existing index has the fields this version writes and queries, with
/// the same types, so a stale or foreign index fails at open rather than per event.
pub fn check_mapping(mapping_response: &Value) -> Result<(), StoreError> {
    let properties = mapping_response
        .as_object()
        .and_then(|indices| indices.values().next())
        .and_then(|index| index.pointer("/mappings/properties"))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            StoreError::Internal("the index mapping response has no properties".into())
        })?;
    let expected = index_body(None, None);
    let Some(wanted) = expected
        .pointer("/mappings/properties")
        .and_then(Value::as_object)
    else {
        return Ok(());
    };
    let mut problems = Vec::new();
    for (name, definition) in wanted {
        let wanted_type = definition.get("type").and_then(Value::as_str);
        let found_type = properties
            .get(name)
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or("object"));
        match found_type {
            None => problems.push(format!("{name} is missing")),
            Some(found) if Some(found) != wanted_type => problems.push(format!(
                "{name} is {found}, expected {}",
                wanted_type.unwrap_or("object")
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Internal(format!(
            "the index exists with another layout ({}); use another index name or remove it",
            problems.join("; ")
        )))
    }
}

/// The sort key stored for a tie-breaker: u64 order kept in a signed `long`.
pub fn sortable_tiebreak(tiebreak: u64) -> i64 {
    (tiebreak ^ (1 << 63)) as i64
}

/// Order-preserving text for an i64 (byte order of the hex = numeric order).
pub fn encode_i64(value: i64) -> String {
    format!("{:016x}", (value as u64) ^ (1 << 63))
}

pub fn encode_u64(value: u64) -> String {
    format!("{value:016x}")
}

/// Order-preserving text for a finite f64.
pub fn encode_f64(value: f64) -> String {
    let bits = value.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    format!("{ordered:016x}")
}

/// A field name as it appears in keys: `%`, whitespace and control characters
/// percent-encoded (so keys hold no separator and no space), cut to a bounded length.
pub fn field_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '%' || c.is_whitespace() || c.is_control() {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                key.push_str(&format!("%{byte:02X}"));
            }
        } else {
            key.push(c);
        }
    }
    truncate_at_char(&mut key, MAX_FIELD_KEY_BYTES);
    key
}

fn truncate_at_char(text: &mut String, max_bytes: usize) {
    if text.len() <= max_bytes {
        return;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

/// The words of a value as indexed per field (lower-cased, cut to [`MAX_WORD_BYTES`]).
pub fn value_words(text: &str) -> Vec<String> {
    words(text)
        .map(|(_, _, mut word)| {
            truncate_at_char(&mut word, MAX_WORD_BYTES);
            word
        })
        .collect()
}

/// `<key>\x1e<word>`: one token of `field_words`.
pub fn word_token(key: &str, word: &str) -> String {
    format!("{key}{KEY_SEPARATOR}{word}")
}

/// `<key>\x1e<type><value>`: one entry of `field_terms`.
pub fn term_entry(key: &str, kind: char, value: &str) -> String {
    format!("{key}{KEY_SEPARATOR}{kind}{value}")
}

/// A JSON number as the tantivy backend indexes it: integers as i64 where they fit,
/// integral floats as integers, the rest as f64 (non-finite values not at all).
fn number_entry(key: &str, number: &serde_json::Number) -> Option<String> {
    if let Some(value) = number.as_i64() {
        return Some(term_entry(key, 'i', &encode_i64(value)));
    }
    if let Some(value) = number.as_u64() {
        return Some(term_entry(key, 'u', &encode_u64(value)));
    }
    let value = number.as_f64()?;
    if !value.is_finite() {
        return None;
    }
    if value.fract() == 0.0 && value >= i64::MIN as f64 && value <= i64::MAX as f64 {
        return Some(term_entry(key, 'i', &encode_i64(value as i64)));
    }
    if value.fract() == 0.0 && value >= 0.0 && value <= u64::MAX as f64 {
        return Some(term_entry(key, 'u', &encode_u64(value as u64)));
    }
    Some(term_entry(key, 'f', &encode_f64(value)))
}

/// Adds the `field_terms` and `field_words` entries of one field value.
fn index_field_value(key: &str, value: &Value, terms: &mut Vec<String>, words: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => terms.push(term_entry(key, 'b', if *b { "true" } else { "false" })),
        Value::Number(number) => terms.extend(number_entry(key, number)),
        Value::String(text) => {
            if !text.is_empty() && text.len() <= MAX_WHOLE_VALUE_BYTES {
                terms.push(term_entry(key, 's', &text.to_lowercase()));
            }
            // As the tantivy store: a structured value is indexed whole only.
            let indexed = if words_are_indexed(text) {
                value_words(text)
            } else {
                Vec::new()
            };
            let tokens: Vec<String> = indexed.iter().map(|word| word_token(key, word)).collect();
            if !tokens.is_empty() {
                words.push(tokens.join(" "));
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| index_field_value(key, item, terms, words)),
        Value::Object(map) => {
            for (name, inner) in map {
                let inner_key = field_key(&format!("{key}.{name}"));
                index_field_value(&inner_key, inner, terms, words);
            }
        }
    }
}

/// Every scalar of the flattened fields, as text, for the catch-all field.
fn catch_all_values(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Array(items) => items.iter().for_each(|v| catch_all_values(v, out)),
        Value::Object(map) => map.values().for_each(|v| catch_all_values(v, out)),
        Value::Null => {}
    }
}

fn longest_string(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(longest_string).max().unwrap_or(0),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.len() + longest_string(v))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

fn contains_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.iter().any(contains_null),
        Value::Object(map) => map.values().any(contains_null),
        _ => false,
    }
}

/// Whether a field stays out of the `flat_object` (see `fields_unindexed`).
fn unindexable(name: &str, value: &Value) -> bool {
    name.len() + longest_string(value) > MAX_FLAT_VALUE_BYTES || contains_null(value)
}

/// Serialises the fields that go into (or stay out of) the `flat_object`, in their
/// order and uncopied.
struct FieldsPart<'a> {
    fields: &'a Map<String, Value>,
    unindexable: bool,
}

impl FieldsPart<'_> {
    fn is_empty(&self) -> bool {
        !self
            .fields
            .iter()
            .any(|(name, value)| unindexable(name, value) == self.unindexable)
    }
}

impl Serialize for FieldsPart<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.fields {
            if unindexable(name, value) == self.unindexable {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Document<'a> {
    event_id: &'a str,
    case_id: &'a str,
    file_id: &'a str,
    source: &'a str,
    timestamp_micros: i64,
    #[serde(rename = "@timestamp")]
    timestamp_millis: i64,
    tiebreak: i64,
    locator: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_code: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    computer: Option<&'a str>,
    #[serde(skip_serializing_if = "FieldsPart::is_empty")]
    fields: FieldsPart<'a>,
    #[serde(skip_serializing_if = "FieldsPart::is_empty")]
    fields_unindexed: FieldsPart<'a>,
    text: Vec<String>,
    field_terms: Vec<String>,
    field_words: Vec<String>,
    raw: &'a RawJson,
}

/// The JSON document of one event (one line of a `_bulk` body, without the newline).
pub fn to_document(event: &Event) -> Result<Vec<u8>, StoreError> {
    let mut text = Vec::new();
    let mut field_terms = Vec::new();
    let mut field_words = Vec::new();
    for (name, value) in &event.fields {
        catch_all_values(value, &mut text);
        index_field_value(&field_key(name), value, &mut field_terms, &mut field_words);
    }
    let document = Document {
        event_id: &event.event_id,
        case_id: &event.case_id,
        file_id: &event.file_id,
        source: event.source,
        timestamp_micros: event.timestamp_micros,
        timestamp_millis: event.timestamp_micros.div_euclid(1000),
        tiebreak: sortable_tiebreak(crate::tiebreak_of(&event.event_id)),
        locator: &event.locator,
        record_id: event.record_id,
        line: event.line,
        event_code: event.event_code,
        level: event.level,
        channel: event.channel.as_deref(),
        provider: event.provider.as_deref(),
        computer: event.computer.as_deref(),
        fields: FieldsPart {
            fields: &event.fields,
            unindexable: false,
        },
        fields_unindexed: FieldsPart {
            fields: &event.fields,
            unindexable: true,
        },
        text,
        field_terms,
        field_words,
        raw: &event.raw,
    };
    serde_json::to_vec(&document)
        .map_err(|e| StoreError::Internal(format!("event {} as JSON: {e}", event.event_id)))
}

/// `_source` as stored (derived fields excluded by the mapping; ignored if present).
#[derive(Deserialize)]
struct StoredSource {
    event_id: String,
    case_id: String,
    file_id: String,
    #[serde(default)]
    source: String,
    timestamp_micros: i64,
    #[serde(default)]
    locator: String,
    record_id: Option<u64>,
    line: Option<u64>,
    event_code: Option<u32>,
    level: Option<u32>,
    channel: Option<String>,
    provider: Option<String>,
    computer: Option<String>,
    #[serde(default)]
    fields: Map<String, Value>,
    #[serde(default)]
    fields_unindexed: Map<String, Value>,
    #[serde(default)]
    raw: RawJson,
}

/// The event of a hit's or a document's `_source`.
pub fn from_source(source: &Value) -> Result<Event, StoreError> {
    let stored = StoredSource::deserialize(source)
        .map_err(|e| StoreError::Internal(format!("a stored event is malformed: {e}")))?;
    let mut fields = stored.fields;
    fields.extend(stored.fields_unindexed);
    Ok(Event {
        event_id: stored.event_id,
        case_id: stored.case_id,
        file_id: stored.file_id,
        source: match stored.source.as_str() {
            "evtx" => "evtx",
            "json" => "json",
            "csv" => "csv",
            _ => "unknown",
        },
        timestamp_micros: stored.timestamp_micros,
        locator: stored.locator,
        record_id: stored.record_id,
        line: stored.line,
        event_code: stored.event_code,
        channel: stored.channel,
        provider: stored.provider,
        computer: stored.computer,
        level: stored.level,
        fields,
        raw: stored.raw,
        // Stored beside the record here, whatever the writer said.
        fields_from_raw: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiebreak_from_sortable(stored: i64) -> u64 {
        (stored as u64) ^ (1 << 63)
    }

    fn sample_event() -> Event {
        let fields = json!({
            "EventID": 4688,
            "CommandLine": "cmd.exe /c WHOAMI /all",
            "Score": 2.5,
            "Whole": 5.0,
            "Elevated": true,
            "Empty": null,
            "Tags": ["a b", "C"],
            "Odd Name%": "x",
        });
        Event {
            event_id: "00000000000000ff0000000000000000".into(),
            case_id: "case-1".into(),
            file_id: "file-1".into(),
            source: "evtx",
            timestamp_micros: 1_700_000_000_123_456,
            locator: "record:7".into(),
            record_id: Some(7),
            line: None,
            event_code: Some(4688),
            channel: Some("Security".into()),
            provider: None,
            computer: Some("WS01".into()),
            level: Some(0),
            fields: fields.as_object().cloned().unwrap_or_default(),
            raw: casescope_evidence::RawJson::from_value(
                &json!({"Event": {"System": {"EventRecordID": 7}}}),
            ),
            fields_from_raw: false,
        }
    }

    #[test]
    fn a_document_holds_columns_fields_and_derived_terms() {
        let event = sample_event();
        let document: Value = serde_json::from_slice(&to_document(&event).unwrap()).unwrap();
        assert_eq!(document["case_id"], "case-1");
        assert_eq!(document["@timestamp"], 1_700_000_000_123i64);
        assert_eq!(document["tiebreak"], sortable_tiebreak(0xff));
        assert!(document.get("line").is_none());
        assert_eq!(document["fields_unindexed"], json!({"Empty": null}));
        assert!(document["fields"].get("Empty").is_none());
        assert_eq!(document["fields"]["CommandLine"], "cmd.exe /c WHOAMI /all");
        let terms: Vec<&str> = document["field_terms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let sep = KEY_SEPARATOR;
        for expected in [
            format!("CommandLine{sep}scmd.exe /c whoami /all"),
            format!("EventID{sep}i{}", encode_i64(4688)),
            format!("Score{sep}f{}", encode_f64(2.5)),
            format!("Whole{sep}i{}", encode_i64(5)),
            format!("Elevated{sep}btrue"),
            format!("Tags{sep}sa b"),
            format!("Tags{sep}sc"),
            format!("Odd%20Name%25{sep}sx"),
        ] {
            assert!(
                terms.contains(&expected.as_str()),
                "{expected:?} in {terms:?}"
            );
        }
        assert!(!terms.iter().any(|t| t.starts_with("Empty")));
        let words: Vec<&str> = document["field_words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(words.contains(
            &format!("CommandLine{sep}cmd CommandLine{sep}exe CommandLine{sep}c CommandLine{sep}whoami CommandLine{sep}all").as_str()
        ));
        assert!(words.contains(&format!("Tags{sep}a Tags{sep}b").as_str()));
        let text: Vec<&str> = document["text"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(text.contains(&"4688") && text.contains(&"true") && text.contains(&"C"));
    }

    #[test]
    fn an_event_survives_the_document_round_trip() {
        let mut event = sample_event();
        event
            .fields
            .insert("ScriptBlockText".into(), json!("x".repeat(40_000)));
        let mut document: Value = serde_json::from_slice(&to_document(&event).unwrap()).unwrap();
        assert!(document["fields"].get("ScriptBlockText").is_none());
        assert_eq!(
            document["fields_unindexed"]["ScriptBlockText"]
                .as_str()
                .map(str::len),
            Some(40_000)
        );
        // What the mapping's `_source.excludes` leaves out.
        for derived in ["text", "field_terms", "field_words"] {
            document.as_object_mut().unwrap().remove(derived);
        }
        assert_eq!(from_source(&document).unwrap(), event);
    }

    #[test]
    fn encodings_keep_numeric_order() {
        let ints = [i64::MIN, -5, -1, 0, 1, 3, 10, 4624, i64::MAX];
        let encoded: Vec<String> = ints.iter().map(|n| encode_i64(*n)).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]), "{encoded:?}");
        let floats = [f64::MIN, -2.5, -0.5, 0.0, 0.25, 1.5, 1e300];
        let encoded: Vec<String> = floats.iter().map(|n| encode_f64(*n)).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]), "{encoded:?}");
        for tiebreak in [0, 1, 1 << 63, u64::MAX] {
            assert_eq!(
                tiebreak_from_sortable(sortable_tiebreak(tiebreak)),
                tiebreak
            );
        }
        assert!(sortable_tiebreak(0) < sortable_tiebreak(1 << 63));
        assert!(sortable_tiebreak(1 << 63) < sortable_tiebreak(u64::MAX));
    }

    #[test]
    fn an_event_without_fields_sends_no_flat_object() {
        let mut event = sample_event();
        event.fields.clear();
        let document: Value = serde_json::from_slice(&to_document(&event).unwrap()).unwrap();
        assert!(document.get("fields").is_none() && document.get("fields_unindexed").is_none());
        assert_eq!(from_source(&document).unwrap(), event);
    }

    #[test]
    fn malformed_sources_are_errors() {
        assert!(from_source(&json!({"event_id": 5})).is_err());
        assert!(from_source(&json!("text")).is_err());
    }

    #[test]
    fn an_existing_index_is_checked() {
        let good = json!({"casescope-events-000001": {"mappings": index_body(None, None)["mappings"].clone()}});
        assert!(check_mapping(&good).is_ok());
        let stale = json!({"casescope-events": {"mappings": {"properties": {
            "event_id": {"type": "keyword"},
            "fields": {"type": "object"}
        }}}});
        let error = check_mapping(&stale).unwrap_err().to_string();
        assert!(
            error.contains("fields is object, expected flat_object"),
            "{error}"
        );
        assert!(error.contains("field_terms is missing"), "{error}");
        assert!(check_mapping(&json!({})).is_err());
    }
}
