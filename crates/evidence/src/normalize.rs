//! The one event model every format is normalised into, and the rules that fill it:
//! Windows records (EVTX, or evtx_dump-style JSON) expose their System values as
//! `EventID`, `Channel`, `Provider_Name`, … and every `EventData`/`UserData` value under
//! its own name (`CommandLine`, `TargetUserName`, …); other JSON/CSV records are
//! flattened with dotted names. Field counts and nesting are bounded.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Most flattened fields kept per event; the rest are counted in `_fields_truncated`.
pub const MAX_FIELDS: usize = 1024;
/// The System values a Windows record's fields hold at most.
const SYSTEM_FIELDS: usize = 16;
/// Deepest nesting flattened; deeper values are kept as JSON text.
pub const MAX_DEPTH: usize = 16;

/// A normalised event.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_id: String,
    pub case_id: String,
    pub file_id: String,
    /// "evtx", "json" or "csv".
    pub source: &'static str,
    /// UTC microseconds since the Unix epoch.
    pub timestamp_micros: i64,
    /// Where the record is in its file, e.g. `record:1234` or `line:56`.
    pub locator: String,
    /// EVTX EventRecordID.
    pub record_id: Option<u64>,
    /// JSON line / CSV line number (1-based).
    pub line: Option<u64>,
    pub event_code: Option<u32>,
    pub channel: Option<String>,
    pub provider: Option<String>,
    pub computer: Option<String>,
    pub level: Option<u32>,
    /// Flattened fields, names as described in the module docs.
    pub fields: Map<String, Value>,
    /// The original record as JSON.
    pub raw: RawJson,
    /// The header values and `fields` are exactly what [`crate::normalize_stored`]
    /// derives from `source` and `raw` (the parsers set it when they keep the record):
    /// an event store may then keep the record alone and derive the fields on read.
    /// False for an event built any other way, whose fields a store keeps as given.
    pub fields_from_raw: bool,
}

/// Events are equal when their contents are: how a store may keep the fields
/// (`fields_from_raw`) is not part of it.
impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.event_id == other.event_id
            && self.case_id == other.case_id
            && self.file_id == other.file_id
            && self.source == other.source
            && self.timestamp_micros == other.timestamp_micros
            && self.locator == other.locator
            && self.record_id == other.record_id
            && self.line == other.line
            && self.event_code == other.event_code
            && self.channel == other.channel
            && self.provider == other.provider
            && self.computer == other.computer
            && self.level == other.level
            && self.fields == other.fields
            && self.raw == other.raw
    }
}

/// A record as JSON text, always one valid JSON value, kept as text: stores and the
/// bus take it as it is, with no tree to build or serialise again.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// `text` if it is one JSON value, else the parse error.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(RawJson)
    }

    pub fn from_value(value: &Value) -> Self {
        // A `Value` always serialises; `null` stands in for the impossible failure.
        RawJson(serde_json::value::to_raw_value(value).unwrap_or_else(|_| Self::null()))
    }

    fn null() -> Box<RawValue> {
        RawValue::from_string("null".into()).expect("null is JSON")
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Whether this is `null`: no record kept.
    pub fn is_null(&self) -> bool {
        self.get() == "null"
    }

    /// The record as a JSON tree (parsed on demand).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }
}

impl Default for RawJson {
    fn default() -> Self {
        RawJson(Self::null())
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl<'de> Deserialize<'de> for RawJson {
    /// From any JSON value, through a tree: readers of stored documents only.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| RawJson::from_value(&value))
    }
}

/// The Windows header values of a record, and its flattened fields.
#[derive(Debug, Default)]
pub struct WindowsParts {
    pub event_code: Option<u32>,
    pub channel: Option<String>,
    pub provider: Option<String>,
    pub computer: Option<String>,
    pub level: Option<u32>,
    pub record_id: Option<u64>,
    pub time_created: Option<String>,
    pub fields: Map<String, Value>,
    /// The fields as name–value pairs instead of `fields` (which is then empty): how
    /// records read from their template values are handed to `inspect` callers, with
    /// no map built (see [`WindowsParts::all_fields`]).
    pub pairs: Option<Vec<(FieldName, Value)>>,
    /// The record's stored form, when it was rendered from its template values
    /// (`evtx_values`): compact JSON in the evtx crate's shape.
    pub(crate) raw: Option<String>,
}

impl WindowsParts {
    /// The record's fields, wherever they are.
    pub fn all_fields(&self) -> Fields<'_> {
        match &self.pairs {
            Some(pairs) => Fields::Pairs(pairs),
            None => Fields::Map(&self.fields),
        }
    }
}

/// A field name: a System field's, or one read from the record's template (shared by
/// every record of that template: naming a field costs no allocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldName {
    /// A System field's (one of `SYSTEM_FIELD_NAMES`), or a template's name kept for
    /// the life of the process ([`field_name`]): never with a space or a dot.
    Static(&'static str),
    Shared(std::sync::Arc<str>),
}

/// Template names kept for the life of the process, at most.
const MAX_KEPT_NAMES: usize = 16_384;
/// Bytes of template names kept for the life of the process, at most.
const MAX_KEPT_NAME_BYTES: usize = 1 << 20;

/// The name of a template's field. Logs use a few hundred distinct names, and each is
/// kept once for the life of the process and shared by every template, record and
/// thread: naming a field in a record then touches no reference count (an `Arc` clone
/// and drop per field per record were ~2 % of `casescope analyze`). A name with a space
/// or a dot (which rules also read under other names, see `has_other_names` in the
/// sigma crate) and every name past [`MAX_KEPT_NAMES`] or [`MAX_KEPT_NAME_BYTES`] is
/// shared per template instead.
pub(crate) fn field_name(name: &str) -> FieldName {
    static KEPT: std::sync::LazyLock<std::sync::Mutex<KeptNames>> =
        std::sync::LazyLock::new(std::sync::Mutex::default);
    if name.contains([' ', '.']) {
        return FieldName::Shared(std::sync::Arc::from(name));
    }
    let mut kept = KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    keep_name(&mut kept, name)
}

/// Names kept for the life of the process, and their bytes.
type KeptNames = (
    std::collections::HashSet<&'static str, rustc_hash::FxBuildHasher>,
    usize,
);

/// `name` from `kept`, added to it while within its bounds.
fn keep_name(kept: &mut KeptNames, name: &str) -> FieldName {
    let (names, bytes) = kept;
    if let Some(known) = names.get(name) {
        return FieldName::Static(known);
    }
    if names.len() >= MAX_KEPT_NAMES || *bytes + name.len() > MAX_KEPT_NAME_BYTES {
        return FieldName::Shared(std::sync::Arc::from(name));
    }
    let known: &'static str = Box::leak(Box::from(name));
    names.insert(known);
    *bytes += name.len();
    FieldName::Static(known)
}

impl std::ops::Deref for FieldName {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            FieldName::Static(name) => name,
            FieldName::Shared(name) => name,
        }
    }
}

impl AsRef<str> for FieldName {
    fn as_ref(&self) -> &str {
        self
    }
}

impl PartialEq<str> for FieldName {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

/// An event's flattened fields: a map, or name–value pairs in which no name occurs
/// twice (looked up by a scan: a record has a few dozen).
#[derive(Debug, Clone, Copy)]
pub enum Fields<'a> {
    Map(&'a Map<String, Value>),
    Pairs(&'a [(FieldName, Value)]),
}

impl<'a> From<&'a Map<String, Value>> for Fields<'a> {
    fn from(map: &'a Map<String, Value>) -> Self {
        Fields::Map(map)
    }
}

impl<'a> Fields<'a> {
    pub fn len(&self) -> usize {
        match self {
            Fields::Map(map) => map.len(),
            Fields::Pairs(pairs) => pairs.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, name: &str) -> Option<&'a Value> {
        match self {
            Fields::Map(map) => map.get(name),
            Fields::Pairs(pairs) => pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        }
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every field, in order.
    pub fn iter(&self) -> FieldsIter<'a> {
        match self {
            Fields::Map(map) => FieldsIter::Map(map.iter()),
            Fields::Pairs(pairs) => FieldsIter::Pairs(pairs.iter()),
        }
    }

    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    }
}

/// The iterator of [`Fields::iter`].
pub enum FieldsIter<'a> {
    Map(serde_json::map::Iter<'a>),
    Pairs(std::slice::Iter<'a, (FieldName, Value)>),
}

impl<'a> Iterator for FieldsIter<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            FieldsIter::Map(iter) => iter.next().map(|(n, v)| (n.as_str(), v)),
            FieldsIter::Pairs(iter) => iter.next().map(|(n, v)| (n.as_ref(), v)),
        }
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(map) => map.get("#text").and_then(text_of),
        _ => None,
    }
}

/// [`text_of`], moving the text out rather than copying it.
fn into_text(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Object(mut map) => map.remove("#text").and_then(into_text),
        other => text_of(&other),
    }
}

fn number_of(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(map) => map.get("#text").and_then(number_of),
        _ => None,
    }
}

fn attribute<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.get("#attributes")?.get(name)
}

/// The System values normalisation reads. Picked out of a JSON tree
/// ([`SystemValues::of`]), or read straight from a record's JSON text: its
/// `Deserialize` builds no tree for the section and skips every other value, and reads
/// any shape the tree would (an odd shape gives no value, never an error).
#[derive(Debug, Default)]
pub struct SystemValues {
    pub(crate) event_id: Option<Value>,
    pub(crate) channel: Option<Value>,
    pub(crate) computer: Option<Value>,
    pub(crate) level: Option<Value>,
    pub(crate) record_id: Option<Value>,
    pub(crate) task: Option<Value>,
    pub(crate) opcode: Option<Value>,
    pub(crate) keywords: Option<Value>,
    pub(crate) version: Option<Value>,
    /// `Provider` attributes `Name`, `Guid`.
    pub(crate) provider: [Option<Value>; 2],
    /// `Execution` attributes `ProcessID`, `ThreadID`.
    pub(crate) execution: [Option<Value>; 2],
    /// `Security` attribute `UserID`.
    pub(crate) security: [Option<Value>; 2],
    /// `TimeCreated` attribute `SystemTime`.
    pub(crate) time_created: [Option<Value>; 2],
}

const PROVIDER_ATTRIBUTES: &[&str] = &["Name", "Guid"];
const EXECUTION_ATTRIBUTES: &[&str] = &["ProcessID", "ThreadID"];
const SECURITY_ATTRIBUTES: &[&str] = &["UserID"];
const TIME_ATTRIBUTES: &[&str] = &["SystemTime"];

impl SystemValues {
    /// From a System section as a JSON tree.
    pub fn of(system: &Value) -> Self {
        let get = |name: &str| system.get(name).cloned();
        let attributes = |section: &str, names: &[&str]| {
            let mut out: [Option<Value>; 2] = [None, None];
            for (slot, name) in out.iter_mut().zip(names) {
                *slot = system
                    .get(section)
                    .and_then(|s| attribute(s, name))
                    .cloned();
            }
            out
        };
        SystemValues {
            event_id: get("EventID"),
            channel: get("Channel"),
            computer: get("Computer"),
            level: get("Level"),
            record_id: get("EventRecordID"),
            task: get("Task"),
            opcode: get("Opcode"),
            keywords: get("Keywords"),
            version: get("Version"),
            provider: attributes("Provider", PROVIDER_ATTRIBUTES),
            execution: attributes("Execution", EXECUTION_ATTRIBUTES),
            security: attributes("Security", SECURITY_ATTRIBUTES),
            time_created: attributes("TimeCreated", TIME_ATTRIBUTES),
        }
    }
}

impl<'de> Deserialize<'de> for SystemValues {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(SystemEntries))
    }
}

/// Visits anything: a map's wanted entries are read by `on_entry`; any other shape is
/// skipped and gives the default.
trait Lenient<'de>: Sized {
    type Out: Default;
    fn on_entry<A: serde::de::MapAccess<'de>>(
        &self,
        out: &mut Self::Out,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error>;
}

struct LenientVisitor<L>(L);

/// Reads one value (of any shape) with `L`, as a seed: `next_value_seed(LenientVisitor(…))`.
impl<'de, L: Lenient<'de>> serde::de::DeserializeSeed<'de> for LenientVisitor<L> {
    type Value = L::Out;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<L::Out, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A map key, borrowed from the text unless it holds escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(key)))
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(key.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

macro_rules! skip_scalars {
    ($($method:ident($ty:ty)),*) => {
        $(fn $method<E: serde::de::Error>(self, _: $ty) -> Result<Self::Value, E> {
            Ok(Default::default())
        })*
    };
}

impl<'de, L: Lenient<'de>> serde::de::Visitor<'de> for LenientVisitor<L> {
    type Value = L::Out;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    skip_scalars!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str)
    );

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Default::default())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Default::default())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Default::default())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = L::Out::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            self.0.on_entry(&mut out, &key, &mut map)?;
        }
        Ok(out)
    }
}

struct SystemEntries;

impl<'de> Lenient<'de> for SystemEntries {
    type Out = SystemValues;

    fn on_entry<A: serde::de::MapAccess<'de>>(
        &self,
        out: &mut SystemValues,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let attributes = |names| LenientVisitor(AttributesOf(names));
        match key {
            "EventID" => out.event_id = Some(map.next_value()?),
            "Channel" => out.channel = Some(map.next_value()?),
            "Computer" => out.computer = Some(map.next_value()?),
            "Level" => out.level = Some(map.next_value()?),
            "EventRecordID" => out.record_id = Some(map.next_value()?),
            "Task" => out.task = Some(map.next_value()?),
            "Opcode" => out.opcode = Some(map.next_value()?),
            "Keywords" => out.keywords = Some(map.next_value()?),
            "Version" => out.version = Some(map.next_value()?),
            "Provider" => out.provider = map.next_value_seed(attributes(PROVIDER_ATTRIBUTES))?,
            "Execution" => {
                out.execution = map.next_value_seed(attributes(EXECUTION_ATTRIBUTES))?;
            }
            "Security" => out.security = map.next_value_seed(attributes(SECURITY_ATTRIBUTES))?,
            "TimeCreated" => {
                out.time_created = map.next_value_seed(attributes(TIME_ATTRIBUTES))?;
            }
            _ => {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A section's `#attributes` values of the given names (at most two).
#[derive(Clone, Copy)]
struct AttributesOf(&'static [&'static str]);

impl<'de> Lenient<'de> for AttributesOf {
    type Out = [Option<Value>; 2];

    fn on_entry<A: serde::de::MapAccess<'de>>(
        &self,
        out: &mut Self::Out,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        if key == "#attributes" {
            // A later `#attributes` replaces an earlier one, as in a tree.
            *out = map.next_value_seed(LenientVisitor(Named(self.0)))?;
        } else {
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(())
    }
}

/// The values of the given names in a map (at most two).
#[derive(Clone, Copy)]
struct Named(&'static [&'static str]);

impl<'de> Lenient<'de> for Named {
    type Out = [Option<Value>; 2];

    fn on_entry<A: serde::de::MapAccess<'de>>(
        &self,
        out: &mut Self::Out,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match self.0.iter().position(|name| *name == key) {
            Some(index) if index < out.len() => out[index] = Some(map.next_value()?),
            _ => {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Normalises an EVTX record rendered as JSON (`{"Event": {"System": …, "EventData": …}}`).
pub fn normalize_windows_record(record: &Value) -> WindowsParts {
    let Some(event) = record.get("Event") else {
        return WindowsParts::default();
    };
    normalize_windows_sections(
        event.get("System"),
        event.get("EventData").cloned(),
        event.get("UserData").cloned(),
    )
}

/// The sections of an EVTX record a reader picked out of its JSON: the same as
/// [`normalize_windows_record`], with the data sections' values moved, not copied.
pub fn normalize_windows_sections(
    system: Option<&Value>,
    event_data: Option<Value>,
    user_data: Option<Value>,
) -> WindowsParts {
    normalize_windows_values(system.map(SystemValues::of), event_data, user_data)
}

/// The same as [`normalize_windows_sections`], from System values already picked out.
pub fn normalize_windows_values(
    system: Option<SystemValues>,
    event_data: Option<Value>,
    user_data: Option<Value>,
) -> WindowsParts {
    // Sized once: the System values plus the data sections' (no regrowth per event).
    let data_len = [&event_data, &user_data]
        .into_iter()
        .filter_map(|data| data.as_ref()?.as_object().map(Map::len))
        .sum::<usize>();
    let mut parts = windows_system_parts(system, data_len);
    for data in [event_data, user_data].into_iter().flatten() {
        flatten_event_data(data, &mut parts.fields);
    }
    parts
}

/// The parts of a record's System values, with room in the fields for `data_len` more.
pub(crate) fn windows_system_parts(system: Option<SystemValues>, data_len: usize) -> WindowsParts {
    let mut fields = Map::with_capacity(SYSTEM_FIELDS + data_len.min(MAX_FIELDS));
    let mut parts = match system {
        Some(system) => system_parts(system, &mut |name, value| {
            fields.insert(name.to_string(), value);
        }),
        None => WindowsParts::default(),
    };
    parts.fields = fields;
    parts
}

/// The names of the fields [`system_parts`] makes.
pub(crate) const SYSTEM_FIELD_NAMES: [&str; 14] = [
    "EventID",
    "Provider_Name",
    "Provider_Guid",
    "Channel",
    "Computer",
    "Level",
    "EventRecordID",
    "Task",
    "Opcode",
    "Keywords",
    "Version",
    "Execution_ProcessID",
    "Execution_ThreadID",
    "Security_UserID",
];

/// The System values as a record's header values, each System field handed to `field`
/// in order (the parts' `fields` left empty).
pub(crate) fn system_parts(
    system: SystemValues,
    field: &mut dyn FnMut(&'static str, Value),
) -> WindowsParts {
    let mut parts = WindowsParts::default();
    {
        let mut put = |name: &'static str, value: Option<Value>| {
            if let Some(value) = value {
                field(name, value);
            }
        };
        parts.event_code = system
            .event_id
            .as_ref()
            .and_then(number_of)
            .and_then(|n| u32::try_from(n).ok());
        put("EventID", parts.event_code.map(Value::from));
        let [provider_name, provider_guid] = system.provider;
        parts.provider = provider_name.and_then(into_text);
        put("Provider_Name", parts.provider.clone().map(Value::from));
        put(
            "Provider_Guid",
            provider_guid.and_then(into_text).map(Value::from),
        );
        parts.channel = system.channel.and_then(into_text);
        put("Channel", parts.channel.clone().map(Value::from));
        parts.computer = system.computer.and_then(into_text);
        put("Computer", parts.computer.clone().map(Value::from));
        parts.level = system
            .level
            .as_ref()
            .and_then(number_of)
            .and_then(|n| u32::try_from(n).ok());
        put("Level", parts.level.map(Value::from));
        parts.record_id = system.record_id.as_ref().and_then(number_of);
        put("EventRecordID", parts.record_id.map(Value::from));
        for (name, value) in [
            ("Task", system.task),
            ("Opcode", system.opcode),
            ("Keywords", system.keywords),
            ("Version", system.version),
        ] {
            put(name, value.and_then(into_text).map(Value::from));
        }
        let [process_id, thread_id] = &system.execution;
        for (field, value) in [
            ("Execution_ProcessID", process_id),
            ("Execution_ThreadID", thread_id),
        ] {
            put(field, value.as_ref().and_then(number_of).map(Value::from));
        }
        let [user_id, _] = system.security;
        put(
            "Security_UserID",
            user_id.and_then(into_text).map(Value::from),
        );
        let [system_time, _] = system.time_created;
        parts.time_created = system_time.and_then(into_text);
    }
    parts
}

/// EventData/UserData: named values under their own names; a name that collides with a
/// System field gets the `EventData_` prefix; unnamed `Data` values stay an array.
fn flatten_event_data(data: Value, fields: &mut Map<String, Value>) {
    let Value::Object(map) = data else {
        if !data.is_null() {
            insert_bounded(fields, "EventData".to_string(), data);
        }
        return;
    };
    for (name, value) in map {
        if name == "#attributes" {
            continue;
        }
        put_data_value(fields, name, value);
    }
}

/// One named value of EventData/UserData into the fields.
pub(crate) fn put_data_value(fields: &mut Map<String, Value>, name: String, value: Value) {
    match value {
        // UserData wraps its values in one element named after the event type.
        Value::Object(inner) if !inner.contains_key("#text") => {
            flatten_into(fields, &name, &Value::Object(inner), 1);
        }
        value => {
            let key = if fields.len() < MAX_FIELDS {
                // One lookup for the usual case, a name not taken yet.
                match fields.entry(name) {
                    serde_json::map::Entry::Vacant(slot) => {
                        slot.insert(scalar_or_text(value));
                        return;
                    }
                    serde_json::map::Entry::Occupied(taken) => format!("EventData_{}", taken.key()),
                }
            } else if fields.contains_key(&name) {
                format!("EventData_{name}")
            } else {
                name
            };
            insert_bounded(fields, key, scalar_or_text(value));
        }
    }
}

/// Normalises a rendered EVTX record's JSON text (`{"Event": {"System": …, …}}`), as
/// [`normalize_windows_record`] does its tree. In the usual shape (System, then one
/// data section, no name twice in it) the values go straight from the text into the
/// fields with no tree for any section; any other shape is read again through trees.
pub fn normalize_windows_text(text: &str) -> Result<WindowsParts, serde_json::Error> {
    #[derive(Deserialize)]
    struct Record {
        #[serde(rename = "Event")]
        event: Option<Direct>,
    }
    #[derive(Deserialize)]
    struct TreeRecord {
        #[serde(rename = "Event")]
        event: Option<TreeEvent>,
    }
    #[derive(Deserialize)]
    struct TreeEvent {
        #[serde(rename = "System")]
        system: Option<SystemValues>,
        #[serde(rename = "EventData")]
        event_data: Option<Value>,
        #[serde(rename = "UserData")]
        user_data: Option<Value>,
    }
    match serde_json::from_str::<Record>(text)?.event {
        None => Ok(WindowsParts::default()),
        Some(Direct(Some(parts))) => Ok(parts),
        Some(Direct(None)) => Ok(match serde_json::from_str::<TreeRecord>(text)?.event {
            Some(event) => {
                normalize_windows_values(event.system, event.event_data, event.user_data)
            }
            None => WindowsParts::default(),
        }),
    }
}

/// An `Event` object normalised straight from the text; `None`: not in the usual shape.
struct Direct(Option<WindowsParts>);

impl<'de> Deserialize<'de> for Direct {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DirectVisitor)
    }
}

struct DirectVisitor;

impl<'de> serde::de::Visitor<'de> for DirectVisitor {
    type Value = Direct;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an Event object")
    }

    /// A struct may be written as an array: the tree reads that.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Direct, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Direct(None))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Direct, A::Error> {
        use serde::de::Error;
        let mut system: Option<Option<SystemValues>> = None;
        let mut parts: Option<WindowsParts> = None;
        let (mut event_data, mut user_data, mut usual) = (false, false, true);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match &*key {
                "System" => {
                    if system.is_some() {
                        return Err(A::Error::duplicate_field("System"));
                    }
                    usual &= parts.is_none() && !event_data && !user_data;
                    system = Some(map.next_value()?);
                }
                "EventData" | "UserData" => {
                    let seen = if key == "EventData" {
                        &mut event_data
                    } else {
                        &mut user_data
                    };
                    if *seen {
                        return Err(A::Error::duplicate_field(if key == "EventData" {
                            "EventData"
                        } else {
                            "UserData"
                        }));
                    }
                    *seen = true;
                    match (usual, &system, &mut parts) {
                        (true, Some(_), None) => {
                            let mut new =
                                normalize_windows_values(system.take().flatten(), None, None);
                            system = Some(None);
                            usual = map.next_value_seed(DataInto(&mut new.fields))?;
                            parts = Some(new);
                        }
                        _ => {
                            usual = false;
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if !usual {
            return Ok(Direct(None));
        }
        Ok(Direct(Some(match parts {
            Some(parts) => parts,
            None => normalize_windows_values(system.flatten(), None, None),
        })))
    }
}

/// Hashes of the names seen in a data section (FNV-1a): a list while short, a set when
/// a section is large.
#[derive(Default)]
struct NameHashes {
    list: Vec<u64>,
    set: std::collections::HashSet<u64>,
}

impl NameHashes {
    /// False if the hash of `name` was seen before.
    fn insert(&mut self, name: &str) -> bool {
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        if self.list.len() < 64 {
            if self.list.contains(&hash) {
                return false;
            }
            self.list.push(hash);
            return true;
        }
        !self.list.contains(&hash) && self.set.insert(hash)
    }
}

/// A data section's values put into the fields as [`flatten_event_data`] does; `false`
/// when a name repeats (a tree keeps only its last value: read it that way instead).
struct DataInto<'a>(&'a mut Map<String, Value>);

impl<'de> serde::de::DeserializeSeed<'de> for DataInto<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        let value = deserializer.deserialize_any(DataVisitor(self.0))?;
        Ok(value)
    }
}

struct DataVisitor<'a>(&'a mut Map<String, Value>);

impl DataVisitor<'_> {
    /// A section that is not an object, as [`flatten_event_data`] takes it.
    fn other(self, value: Value) -> bool {
        flatten_event_data(value, self.0);
        true
    }
}

impl<'de> serde::de::Visitor<'de> for DataVisitor<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a data section")
    }

    fn visit_bool<E>(self, v: bool) -> Result<bool, E> {
        Ok(self.other(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<bool, E> {
        Ok(self.other(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<bool, E> {
        Ok(self.other(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<bool, E> {
        Ok(self.other(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(self.other(Value::String(v.to_string())))
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(self.other(Value::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(self.other(Value::Array(items)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let fields = self.0;
        let mut names = NameHashes::default();
        let mut usual = true;
        while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
            if !usual || name == "#attributes" {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            // A repeated name (or a false alarm of the hash: then the tree reads the
            // section, to the same result).
            if !names.insert(&name) {
                usual = false;
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            let value: Value = map.next_value()?;
            put_data_value(fields, name.into_owned(), value);
        }
        Ok(usual)
    }
}

fn scalar_or_text(value: Value) -> Value {
    match value {
        Value::Object(mut map) => match map.remove("#text") {
            Some(text) => text,
            None => Value::String(Value::Object(map).to_string()),
        },
        other => other,
    }
}

fn insert_bounded(fields: &mut Map<String, Value>, key: String, value: Value) {
    if fields.len() < MAX_FIELDS {
        fields.insert(key, value);
        return;
    }
    let truncated = fields
        .get("_fields_truncated")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    fields.insert("_fields_truncated".to_string(), Value::from(truncated + 1));
}

/// Flattens `value` under `prefix` with dotted names; arrays of scalars stay arrays.
pub fn flatten_into(fields: &mut Map<String, Value>, prefix: &str, value: &Value, depth: usize) {
    match value {
        Value::Object(map) if depth < MAX_DEPTH => {
            for (key, inner) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(fields, &name, inner, depth + 1);
            }
        }
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            insert_bounded(fields, prefix.to_string(), value.clone());
        }
        Value::Object(_) | Value::Array(_) => {
            insert_bounded(fields, prefix.to_string(), Value::String(value.to_string()));
        }
        scalar => insert_bounded(fields, prefix.to_string(), scalar.clone()),
    }
}

/// Common Windows-ish names in flat JSON/CSV records, promoted to the event's header.
pub fn promote_common_fields(fields: &Map<String, Value>) -> WindowsParts {
    let find = |names: &[&str]| names.iter().find_map(|name| fields.get(*name));
    WindowsParts {
        event_code: find(&["EventID", "event_id", "EventCode", "event.code"])
            .and_then(number_of)
            .and_then(|n| u32::try_from(n).ok()),
        channel: find(&["Channel", "channel", "winlog.channel"]).and_then(text_of),
        provider: find(&[
            "Provider_Name",
            "Provider",
            "provider",
            "SourceName",
            "winlog.provider_name",
        ])
        .and_then(text_of),
        computer: find(&[
            "Computer",
            "computer",
            "Hostname",
            "hostname",
            "host.name",
            "ComputerName",
        ])
        .and_then(text_of),
        level: find(&["Level", "level"])
            .and_then(number_of)
            .and_then(|n| u32::try_from(n).ok()),
        ..WindowsParts::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Template names are kept once and shared (the same string for equal names), a
    /// name with a space or a dot never is, and the kept names stay within their bounds.
    #[test]
    fn template_names_are_kept_once_within_bounds() {
        let static_of = |name: FieldName| match name {
            FieldName::Static(name) => Some(name),
            FieldName::Shared(_) => None,
        };
        let first = static_of(field_name("CommandLine")).expect("kept");
        let again = static_of(field_name("CommandLine")).expect("kept");
        assert!(std::ptr::eq(first, again));
        for name in ["Threat Name", "LogFileCleared.SubjectUserName"] {
            assert_eq!(
                field_name(name),
                FieldName::Shared(std::sync::Arc::from(name))
            );
        }
        let mut kept = KeptNames::default();
        for i in 0..MAX_KEPT_NAMES + 10 {
            let name = format!("n{i}");
            let expected_kept = i < MAX_KEPT_NAMES;
            assert_eq!(
                static_of(keep_name(&mut kept, &name)).is_some(),
                expected_kept,
                "{i}"
            );
        }
        assert_eq!(kept.0.len(), MAX_KEPT_NAMES);
        assert!(
            static_of(keep_name(&mut kept, "n7")).is_some(),
            "a kept name is still found"
        );
        let mut kept = KeptNames::default();
        let long = "x".repeat(MAX_KEPT_NAME_BYTES / 2);
        assert!(static_of(keep_name(&mut kept, &long)).is_some());
        assert!(static_of(keep_name(&mut kept, &format!("{long}y"))).is_none());
        assert!(kept.1 <= MAX_KEPT_NAME_BYTES);
    }

    #[test]
    fn the_system_field_names_are_those_system_parts_makes() {
        let some = |v: Value| Some(v);
        let system = SystemValues {
            event_id: some(json!(4624)),
            channel: some(json!("Security")),
            computer: some(json!("host")),
            level: some(json!(0)),
            record_id: some(json!(7)),
            task: some(json!(12544)),
            opcode: some(json!(0)),
            keywords: some(json!("0x8020000000000000")),
            version: some(json!(2)),
            provider: [some(json!("P")), some(json!("{guid}"))],
            execution: [some(json!(4)), some(json!(8))],
            security: [some(json!("S-1-5-18")), None],
            time_created: [some(json!("2024-01-01T00:00:00.0000000Z")), None],
        };
        let mut names = Vec::new();
        system_parts(system, &mut |name, _| names.push(name));
        assert_eq!(names, SYSTEM_FIELD_NAMES);
        // Rules read fields whose names hold a space or a dot under other names too; the
        // System fields' (`FieldName::Static`) are known to have neither.
        for name in SYSTEM_FIELD_NAMES {
            assert!(!name.contains([' ', '.']), "{name}");
        }
    }

    #[test]
    fn windows_records_expose_system_and_event_data() {
        let record = json!({"Event": {
            "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing", "Guid": "54849625-5478-4994-A5BA-3E3B0328C30D"}},
                "EventID": 4624, "Level": 0, "Task": 12544, "Channel": "Security",
                "Computer": "WS01.acme.local", "EventRecordID": 1187,
                "TimeCreated": {"#attributes": {"SystemTime": "2019-03-16T23:37:52.123456Z"}},
                "Execution": {"#attributes": {"ProcessID": 612, "ThreadID": 2108}},
                "Security": null
            },
            "EventData": {"TargetUserName": "admin", "LogonType": 3, "Channel": "odd"}
        }});
        let parts = normalize_windows_record(&record);
        assert_eq!(parts.event_code, Some(4624));
        assert_eq!(parts.channel.as_deref(), Some("Security"));
        assert_eq!(parts.computer.as_deref(), Some("WS01.acme.local"));
        assert_eq!(parts.record_id, Some(1187));
        assert_eq!(parts.fields["TargetUserName"], "admin");
        assert_eq!(parts.fields["LogonType"], 3);
        assert_eq!(
            parts.fields["Provider_Name"],
            "Microsoft-Windows-Security-Auditing"
        );
        assert_eq!(parts.fields["Execution_ProcessID"], 612);
        assert_eq!(
            parts.fields["EventData_Channel"], "odd",
            "collisions are prefixed, not lost"
        );
        assert_eq!(parts.fields["Channel"], "Security");
    }

    #[test]
    fn event_id_with_qualifiers_and_user_data() {
        let record = json!({"Event": {"System": {"EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 7045}},
            "UserData": {"LogFileCleared": {"SubjectUserName": "bob"}}}});
        let parts = normalize_windows_record(&record);
        assert_eq!(parts.event_code, Some(7045));
        assert_eq!(parts.fields["LogFileCleared.SubjectUserName"], "bob");
    }

    #[test]
    fn system_values_read_from_text_equal_those_of_a_tree() {
        let systems = [
            r##"{"Provider": {"#attributes": {"Name": "P", "Guid": "{G}"}}, "EventID": 4624,
                "Version": 2, "Level": 0, "Task": 12544, "Opcode": 0, "Keywords": "0x8020",
                "TimeCreated": {"#attributes": {"SystemTime": "2019-03-16T23:37:52.1Z"}},
                "EventRecordID": 1187, "Correlation": {"#attributes": {"ActivityID": "{A}"}},
                "Execution": {"#attributes": {"ProcessID": 612, "ThreadID": 2108}},
                "Channel": "Security", "Computer": "WS01", "Security": {"#attributes": {"UserID": "S-1-5-18"}}}"##,
            // Odd shapes: text where objects are expected, objects with #text, nulls,
            // arrays, repeated keys (the last wins), escaped keys, unknown keys.
            r##"{"Provider": "P", "EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 7045},
                "Execution": null, "Security": [1, {"a": 2}], "TimeCreated": {"#attributes": "x"},
                "Level": "4", "Channel": {"#text": "System"}, "Computer": 12, "Task": true}"##,
            r##"{"Channel": "A", "Channel": "B", "Provider": {"#attributes": {"Name": "X"}},
                "Provider": {"#attributes": {"Guid": "Y"}, "#attributes": {"Name": "Z", "Name": "W"}},
                "Event\u0049D": 5, "Extra": {"deep": [[[]]]}, "EventRecordID": -1}"##,
            r##"null"##,
            r##""text""##,
            r##"[{"EventID": 1}]"##,
            r##"{}"##,
        ];
        for text in systems {
            let tree: Value = serde_json::from_str(text).unwrap();
            let direct: SystemValues = serde_json::from_str(text).unwrap();
            let data = Some(json!({"X": "y"}));
            assert_eq!(
                format!(
                    "{:?}",
                    normalize_windows_values(Some(direct), data.clone(), None)
                ),
                format!("{:?}", normalize_windows_sections(Some(&tree), data, None)),
                "{text}"
            );
        }
    }

    #[test]
    fn records_read_from_text_equal_those_read_through_a_tree() {
        let system = r##"{"EventID": 4688, "Channel": "Security", "Computer": "PC",
            "Provider": {"#attributes": {"Name": "P"}}}"##;
        let records = [
            format!(r##"{{"Event": {{"System": {system}, "EventData": {{"A": "1", "B": 2}}}}}}"##),
            format!(
                r##"{{"Event": {{"System": {system}, "UserData": {{"W": {{"X": "y", "Z": {{"#text": "t"}}}}}}}}}}"##
            ),
            format!(r##"{{"Event": {{"EventData": {{"A": "1"}}, "System": {system}}}}}"##),
            format!(
                r##"{{"Event": {{"System": {system}, "EventData": {{"A": 1}}, "UserData": {{"W": {{"A": 2}}}}}}}}"##
            ),
            format!(
                r##"{{"Event": {{"System": {system}, "UserData": {{"W": {{"A": 2}}}}, "EventData": {{"A": 1}}}}}}"##
            ),
            format!(r##"{{"Event": {{"System": {system}, "EventData": {{"A": 1, "A": 2}}}}}}"##),
            format!(
                r##"{{"Event": {{"System": {system}, "EventData": {{"A": 1, "B": {{"x": 1}}, "A": {{"y": 2}}}}}}}}"##
            ),
            format!(
                r##"{{"Event": {{"System": {system}, "EventData": {{"Channel": "odd", "EventID": 1, "#attributes": {{"n": 1}}}}}}}}"##
            ),
            format!(r##"{{"Event": {{"System": {system}, "EventData": "text"}}}}"##),
            format!(r##"{{"Event": {{"System": {system}, "EventData": 5}}}}"##),
            format!(r##"{{"Event": {{"System": {system}, "EventData": null}}}}"##),
            format!(r##"{{"Event": {{"System": {system}, "EventData": [1, {{"a": 2}}]}}}}"##),
            format!(
                r##"{{"Event": {{"System": {system}, "EventData": {{"A\u0042": "esc", "Data": [1, 2]}}}}}}"##
            ),
            format!(
                r##"{{"Event": {{"System": {system}}}, "RenderingInfo": {{"Message": "m"}}}}"##
            ),
            r##"{"Event": {"EventData": {"A": "1"}}}"##.to_string(),
            r##"{"Event": {"System": null, "EventData": {"A": "1"}}}"##.to_string(),
            r##"{"Event": null}"##.to_string(),
            r##"{"Other": 1}"##.to_string(),
        ];
        for text in &records {
            let direct = normalize_windows_text(text).unwrap();
            let tree = normalize_windows_record(&serde_json::from_str(text).unwrap());
            assert_eq!(format!("{direct:?}"), format!("{tree:?}"), "{text}");
        }
        // What the tree reader did not accept either.
        for text in [
            format!(r##"{{"Event": {{"System": {system}, "System": {system}}}}}"##),
            format!(
                r##"{{"Event": {{"System": {system}, "EventData": {{}}, "EventData": {{}}}}}}"##
            ),
            r##"{"Event": "text"}"##.to_string(),
        ] {
            assert!(normalize_windows_text(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn flattening_is_bounded() {
        let mut fields = Map::new();
        let mut wide = Map::new();
        for n in 0..(MAX_FIELDS + 10) {
            wide.insert(format!("f{n}"), json!(n));
        }
        flatten_into(&mut fields, "", &Value::Object(wide), 0);
        assert_eq!(fields.len(), MAX_FIELDS + 1);
        assert_eq!(fields["_fields_truncated"], 10);
        let mut deep = json!("leaf");
        for _ in 0..40 {
            deep = json!({ "d": deep });
        }
        let mut fields = Map::new();
        flatten_into(&mut fields, "", &deep, 0);
        assert_eq!(fields.len(), 1, "{fields:?}");
    }
}
