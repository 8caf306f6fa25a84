//! Field values as rules see them, and the view of a normalised event's fields (with the
//! logsource's field aliases applied, e.g. `Image` read from `NewProcessName` in a
//! Security 4688 event).

use crate::matcher::EventFields;
use casescope_evidence::Fields;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// One field value of an event.
#[derive(Debug, Clone, Copy)]
pub enum FieldValue<'a> {
    Str(&'a str),
    Number(&'a serde_json::Number),
    Bool(bool),
    Array(&'a [Value]),
    /// An object (only in non-Windows records flattened past the depth limit).
    Object(&'a Map<String, Value>),
    Null,
}

impl<'a> FieldValue<'a> {
    pub fn of(value: &'a Value) -> Self {
        match value {
            Value::String(s) => FieldValue::Str(s),
            Value::Number(n) => FieldValue::Number(n),
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Array(items) => FieldValue::Array(items),
            Value::Object(map) => FieldValue::Object(map),
            Value::Null => FieldValue::Null,
        }
    }

    /// The value as text: strings as they are, numbers and booleans in decimal/words.
    pub fn text(&self) -> Option<Cow<'a, str>> {
        match self {
            FieldValue::Str(s) => Some(Cow::Borrowed(s)),
            FieldValue::Number(n) => Some(Cow::Owned(n.to_string())),
            FieldValue::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            FieldValue::Object(map) => Some(Cow::Owned(Value::Object((*map).clone()).to_string())),
            FieldValue::Array(_) | FieldValue::Null => None,
        }
    }

    /// Appends [`Self::text`] lower-cased to `out` without a string of its own (ASCII
    /// lower-cased in place, numbers written straight in); false when it has none.
    pub fn push_lowercase_text(&self, out: &mut String) -> bool {
        let start = out.len();
        match self {
            FieldValue::Str(text) => out.push_str(text),
            // Integers (most numbers in events) without the formatter; as written.
            FieldValue::Number(number) => {
                let mut buffer = itoa::Buffer::new();
                if let Some(n) = number.as_u64() {
                    out.push_str(buffer.format(n));
                } else if let Some(n) = number.as_i64() {
                    out.push_str(buffer.format(n));
                } else {
                    use std::fmt::Write as _;
                    let _ = write!(out, "{number}");
                }
                return true;
            }
            FieldValue::Bool(_) | FieldValue::Object(_) => match self.text() {
                Some(text) => out.push_str(&text),
                None => return false,
            },
            FieldValue::Array(_) | FieldValue::Null => return false,
        }
        if out[start..].is_ascii() {
            out[start..].make_ascii_lowercase();
        } else {
            let lower = out[start..].to_lowercase();
            out.truncate(start);
            out.push_str(&lower);
        }
        true
    }

    /// The value as a number: numbers, and strings holding a decimal or `0x` number.
    pub fn number(&self) -> Option<f64> {
        match self {
            FieldValue::Number(n) => n.as_f64(),
            FieldValue::Str(s) => {
                let s = s.trim();
                // Plain decimal digits, the usual case (event codes, logon types, ports
                // as text), without the float parser: exact below 10^15.
                if (1..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
                    let n = s.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
                    return Some(n as f64);
                }
                match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16).ok().map(|n| n as f64),
                    None => s.parse().ok(),
                }
            }
            _ => None,
        }
    }

    /// Absent, null, empty text or an empty list.
    pub fn is_empty(&self) -> bool {
        match self {
            FieldValue::Null => true,
            FieldValue::Str(s) => s.is_empty(),
            FieldValue::Array(items) => items.is_empty(),
            _ => false,
        }
    }

    /// Calls `test` on the value, or on each element of a list; true if any passes.
    pub fn any_element(&self, test: &mut dyn FnMut(FieldValue<'a>) -> bool) -> bool {
        match self {
            FieldValue::Array(items) if !items.is_empty() => {
                items.iter().any(|item| test(FieldValue::of(item)))
            }
            other => test(*other),
        }
    }
}

/// An event's flattened fields, read through a logsource's aliases.
pub struct FieldsView<'a> {
    pub fields: Fields<'a>,
    /// Sigma field name → the event's field name, for this event's logsource.
    pub aliases: Option<&'a crate::logsource::Aliases>,
    /// Other names of fields, as Sigma rules write them: `Threat Name` as `ThreatName`,
    /// and a UserData value `LogFileCleared.SubjectUserName` as `SubjectUserName`.
    pub other_names: Option<&'a HashMap<String, &'a Value>>,
    /// The event's fields indexed by name, single values lower-cased once: when
    /// given, it holds every field of `fields`.
    pub lowered: Option<&'a Lowered<'a>>,
}

impl<'a> FieldsView<'a> {
    /// The event's value of the field named `name` (by the index when there is one).
    fn get(&self, name: &str) -> Option<&'a Value> {
        match self.lowered {
            Some(lowered) => lowered.value(name),
            None => self.fields.get(name),
        }
    }
}

/// One field of an event in [`Lowered`]: its value, and the byte range of its text
/// lower-cased (single values with a text).
#[derive(Clone, Copy)]
pub struct Slot<'a> {
    pub value: &'a Value,
    pub range: Option<(u32, u32)>,
}

/// Field name → position in an event's slots.
pub enum SlotIndex<'a> {
    /// Made for this one event.
    Event(&'a HashMap<&'a str, u32, rustc_hash::FxBuildHasher>),
    /// Shared by the events of one template, whose fields come in the same order.
    Layout(&'a HashMap<Box<str>, u32, rustc_hash::FxBuildHasher>),
}

/// Every field of an event by name (looked up by all the rules), with the single values
/// lower-cased: ranges of one text.
pub struct Lowered<'a> {
    text: &'a str,
    slots: &'a [Slot<'a>],
    index: SlotIndex<'a>,
}

impl<'a> Lowered<'a> {
    /// `slots`: every field of the event, with byte ranges of `text` (on character
    /// boundaries); `index`: where each is, by name.
    pub fn new(text: &'a str, slots: &'a [Slot<'a>], index: SlotIndex<'a>) -> Self {
        Lowered { text, slots, index }
    }

    fn find(&self, name: &str) -> Option<&'a Slot<'a>> {
        let position = match self.index {
            SlotIndex::Event(index) => index.get(name),
            SlotIndex::Layout(index) => index.get(name),
        }?;
        self.slots.get(*position as usize)
    }

    /// The lower-cased text of the field `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.text_of(self.find(name)?)
    }

    /// The value of the field `name`.
    pub fn value(&self, name: &str) -> Option<&'a Value> {
        self.find(name).map(|slot| slot.value)
    }

    /// The field `name`.
    pub fn slot(&self, name: &str) -> Option<Slot<'a>> {
        self.find(name).copied()
    }

    /// The lower-cased text of a field of this event.
    pub fn text_of(&self, slot: &Slot<'a>) -> Option<&'a str> {
        let (start, end) = slot.range?;
        self.text.get(start as usize..end as usize)
    }
}

/// Whether some field of the event has another name for rules ([`other_names`]).
pub fn has_other_names(fields: Fields<'_>) -> bool {
    match fields {
        // A static name (a System field's, or a template's kept for the process) has
        // neither.
        Fields::Pairs(pairs) => pairs.iter().any(|(name, _)| {
            matches!(name, casescope_evidence::FieldName::Shared(_))
                && has_space_or_dot(name.as_bytes())
        }),
        Fields::Map(_) => fields.iter().any(|(k, _)| has_space_or_dot(k.as_bytes())),
    }
}

/// Whether `bytes` holds a space or a dot, eight bytes at a time (every event's field
/// names are checked).
fn has_space_or_dot(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Exact: a byte of `word ^ pattern` is zero only where `word` holds the byte.
    let holds = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    };
    let (words, rest) = bytes.as_chunks::<8>();
    // The rest padded with NULs, which are neither.
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    words.iter().chain([&last]).any(|word| {
        let word = u64::from_le_bytes(*word);
        holds(word, b' ') || holds(word, b'.')
    })
}

/// The names Sigma rules use for fields whose event names hold spaces or a UserData
/// wrapper; `None` when the event has no such field (the common case).
pub fn other_names(fields: Fields<'_>) -> Option<HashMap<String, &Value>> {
    if !has_other_names(fields) {
        return None;
    }
    let mut names = HashMap::new();
    for (key, value) in fields.iter() {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        for candidate in [
            key.replace(' ', ""),
            leaf.to_string(),
            leaf.replace(' ', ""),
        ] {
            if candidate != key && !fields.contains_key(&candidate) {
                names.entry(candidate).or_insert(value);
            }
        }
    }
    Some(names)
}

impl EventFields for FieldsView<'_> {
    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        if let Some(value) = self.get(name) {
            return Some(FieldValue::of(value));
        }
        if let Some(value) = self
            .aliases
            .and_then(|aliases| aliases.get(name))
            .and_then(|alias| self.get(alias))
        {
            return Some(FieldValue::of(value));
        }
        self.other_names?
            .get(name)
            .map(|value| FieldValue::of(value))
    }

    fn each_value(&self, visit: &mut dyn FnMut(FieldValue<'_>, Option<&str>) -> bool) -> bool {
        self.fields.iter().any(|(name, value)| {
            let lower = self.lowered.and_then(|l| l.get(name));
            visit(FieldValue::of(value), lower)
        })
    }

    /// The field as [`Self::field`] finds it (the event's own name first, then the
    /// logsource's alias, then the other names), with its lower-cased text when the
    /// event lowered it.
    fn field_lowered(&self, name: &str) -> Option<(FieldValue<'_>, Option<&str>)> {
        let Some(lowered) = self.lowered else {
            return self.field(name).map(|value| (value, None));
        };
        let slot = lowered.slot(name).or_else(|| {
            self.aliases
                .and_then(|aliases| aliases.get(name))
                .and_then(|alias| lowered.slot(alias))
        });
        if let Some(slot) = slot {
            return Some((FieldValue::of(slot.value), lowered.text_of(&slot)));
        }
        self.other_names?
            .get(name)
            .map(|value| (FieldValue::of(value), None))
    }
}

#[cfg(test)]
mod tests {
    use super::FieldValue;

    /// The haystack's text of a value is its text lower-cased, numbers included.
    #[test]
    fn pushed_lowercase_text_is_the_text_lower_cased() {
        let values: Vec<serde_json::Value> = serde_json::from_str(
            r#"[0, 7, -1, 4624, 18446744073709551615, -9223372036854775808, 1.5, -0.0,
                1e300, 2.5e-8, "MiXeD", "ÄÖÜ ß İ", "", true, false, {"A": "B"}]"#,
        )
        .unwrap();
        for value in &values {
            let value = FieldValue::of(value);
            let mut out = String::from("prefix");
            assert!(value.push_lowercase_text(&mut out), "{value:?}");
            let expected = format!("prefix{}", value.text().unwrap().to_lowercase());
            assert_eq!(out, expected, "{value:?}");
        }
        let mut out = String::new();
        assert!(!FieldValue::Null.push_lowercase_text(&mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn decimal_text_reads_as_the_float_parser_reads_it() {
        for text in [
            "0",
            "7",
            "007",
            "4624",
            " 3 ",
            "65535",
            "999999999999999",
            "1000000000000000",
            "18446744073709551615",
            "",
            "-1",
            "+1",
            "1.5",
            "1e3",
            "0x10",
            "12a",
            "٣",
        ] {
            let parsed = text.trim().parse::<f64>().ok().or_else(|| {
                u64::from_str_radix(text.trim().strip_prefix("0x")?, 16)
                    .ok()
                    .map(|n| n as f64)
            });
            assert_eq!(super::FieldValue::Str(text).number(), parsed, "{text:?}");
        }
    }

    #[test]
    fn spaces_and_dots_are_found_wherever_they_are() {
        let naive = |bytes: &[u8]| bytes.iter().any(|&b| b == b' ' || b == b'.');
        let mut texts: Vec<Vec<u8>> = Vec::new();
        for len in 0..40 {
            for at in 0..len {
                for mark in [b' ', b'.', b'!', b'-', b'/', 0x80, 0xff, 0x00, 0x21, 0x2f] {
                    let mut text = vec![b'a'; len];
                    text[at] = mark;
                    texts.push(text);
                }
            }
            texts.push(vec![b'a'; len]);
            texts.push(vec![0xaeu8; len]);
        }
        for text in &texts {
            assert_eq!(super::has_space_or_dot(text), naive(text), "{text:?}");
        }
    }
}
