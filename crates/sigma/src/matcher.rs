//! One detection item (`CommandLine|contains|all: [...]`) compiled into a value test.
//!
//! Matching follows the Sigma specification: strings compare case-insensitively unless
//! `cased`; `*` and `?` are wildcards; `contains`/`startswith`/`endswith` add them;
//! encodings (`wide`/`utf16*`, `base64`, `base64offset`, `windash`) expand a value into
//! the alternatives it stands for before matching; `re` is case-sensitive unless its `i`
//! flag is set; numbers equal numbers or their decimal text. A list of values matches
//! when any does, or every one with `all`.

use crate::fields::FieldValue;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsigma_parser::{DetectionItem, Modifier, SigmaString, SigmaValue, SpecialChar, StringPart};
use rustc_hash::FxHashSet;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

/// Why an item could not be compiled (the rule is refused with this reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

fn unsupported(text: impl Into<String>) -> Unsupported {
    Unsupported(text.into())
}

/// A piece of a glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Glob {
    Text(Vec<char>),
    Any,
    One,
}

/// A string test on text already lower-cased when the test is case-insensitive.
#[derive(Debug, Clone)]
enum TextTest {
    Equals(String),
    /// The needle, and its searcher built once.
    Contains(String, Box<memchr::memmem::Finder<'static>>),
    StartsWith(String),
    EndsWith(String),
    /// The pattern's pieces, and its characters and wildcards one by one (as matched).
    Glob(Vec<Glob>, Box<[GlobChar]>),
}

impl TextTest {
    fn matches(&self, text: &str) -> bool {
        match self {
            TextTest::Equals(needle) => text == needle,
            TextTest::Contains(_, finder) => finder.find(text.as_bytes()).is_some(),
            TextTest::StartsWith(needle) => text.starts_with(needle.as_str()),
            TextTest::EndsWith(needle) => text.ends_with(needle.as_str()),
            TextTest::Glob(_, tokens) => glob_matches(tokens, text),
        }
    }

    /// A literal text every match must contain (for prefiltering): the needle, or a
    /// glob's longest fixed piece.
    fn required_literal(&self) -> Option<String> {
        match self {
            TextTest::Equals(s)
            | TextTest::Contains(s, _)
            | TextTest::StartsWith(s)
            | TextTest::EndsWith(s) => Some(s.clone()),
            TextTest::Glob(parts, _) => parts
                .iter()
                .filter_map(|part| match part {
                    Glob::Text(chars) => Some(chars.iter().collect::<String>()),
                    _ => None,
                })
                .max_by_key(String::len),
        }
    }
}

/// A glob's characters and wildcards one by one.
fn glob_tokens(parts: &[Glob]) -> Box<[GlobChar]> {
    parts
        .iter()
        .flat_map(|part| match part {
            Glob::Text(chars) => chars.iter().map(|c| GlobChar::Char(*c)).collect::<Vec<_>>(),
            Glob::Any => vec![GlobChar::Any],
            Glob::One => vec![GlobChar::One],
        })
        .collect()
}

/// Glob matching with `*` (any run) and `?` (one character), by backtracking to the
/// last `*` (linear in practice; no exponential blow-up). `tokens` are made once per
/// pattern ([`glob_tokens`]) and the text is walked by byte offset, one character at a
/// time: nothing is allocated per call.
fn glob_matches(tokens: &[GlobChar], text: &str) -> bool {
    let char_at = |at: usize| text.get(at..).and_then(|rest| rest.chars().next());
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = char_at(t) {
        match tokens.get(p) {
            Some(GlobChar::Char(expected)) if *expected == c => {
                p += 1;
                t += c.len_utf8();
            }
            Some(GlobChar::One) => {
                p += 1;
                t += c.len_utf8();
            }
            Some(GlobChar::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    // The star takes one more character.
                    let next = star_t + char_at(star_t).map_or(1, char::len_utf8);
                    p = star_p + 1;
                    t = next;
                    star = Some((star_p, next));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|t| matches!(t, GlobChar::Any))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobChar {
    Char(char),
    Any,
    One,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// One value test.
#[derive(Debug, Clone)]
enum Test {
    Text {
        test: TextTest,
        cased: bool,
    },
    /// The expression, and texts (lower-cased) one of which every match starts with,
    /// when the expression says so.
    Regex(regex_automata::meta::Regex, Option<Vec<String>>),
    /// A regular expression that is only `.{n,}` (or `.{n}`, `.{n,m}`), unanchored: the
    /// value holds `min` characters in a row, line breaks among them only when
    /// `newline_too` (the `s` flag). Its automaton grows with n (`.{1000,}` in SigmaHQ's
    /// long PowerShell command line rule) and the regex engine searched it at ~150,000
    /// instructions per value; counted, it costs one pass over the value.
    CharRun {
        min: usize,
        newline_too: bool,
    },
    Cidr {
        network: IpAddr,
        prefix: u8,
    },
    /// Any of several `cidr` networks: the value read as an address once, not once per
    /// network (SigmaHQ's filters list up to a dozen private ranges).
    Networks(Vec<(IpAddr, u8)>),
    Number(f64),
    Bool(bool),
    Compare(Comparison, f64),
    NotEqual(Box<Test>),
    /// Any of the alternatives one value expanded into (windash, base64offset).
    Any(Vec<Test>),
    /// The field is absent, null or empty.
    Null,
}

impl Test {
    /// `lower`: the value's text already lower-cased, when the caller has it.
    fn matches(&self, value: &FieldValue<'_>, lower: Option<&str>) -> bool {
        match self {
            Test::Text { test, cased: false } if lower.is_some() => {
                test.matches(lower.unwrap_or_default())
            }
            Test::Text { test, cased } => match value.text() {
                Some(text) if *cased => test.matches(&text),
                Some(text) => test.matches(&text.to_lowercase()),
                None => false,
            },
            Test::Regex(regex, _) => value
                .text()
                .is_some_and(|text| regex.is_match(text.as_bytes())),
            Test::CharRun { min, newline_too } => value
                .text()
                .is_some_and(|text| has_char_run(&text, *min, *newline_too)),
            Test::Cidr { network, prefix } => value
                .text()
                .and_then(|text| text.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| in_network(ip, *network, *prefix)),
            Test::Networks(networks) => value
                .text()
                .and_then(|text| text.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| {
                    networks
                        .iter()
                        .any(|(network, prefix)| in_network(ip, *network, *prefix))
                }),
            Test::Number(expected) => value.number().is_some_and(|n| n == *expected),
            Test::Bool(expected) => match value {
                FieldValue::Bool(b) => b == expected,
                other => other.text().is_some_and(|t| {
                    t.eq_ignore_ascii_case(if *expected { "true" } else { "false" })
                }),
            },
            Test::Compare(op, bound) => value.number().is_some_and(|n| match op {
                Comparison::Gt => n > *bound,
                Comparison::Gte => n >= *bound,
                Comparison::Lt => n < *bound,
                Comparison::Lte => n <= *bound,
            }),
            Test::NotEqual(inner) => !inner.matches(value, lower),
            Test::Any(tests) => tests.iter().any(|t| t.matches(value, lower)),
            Test::Null => value.is_empty(),
        }
    }
}

/// Whether `text` holds `min` characters in a row (none of them a line feed unless
/// `newline_too`): what `.{min,}` matches.
fn has_char_run(text: &str, min: usize, newline_too: bool) -> bool {
    let long_enough = |piece: &str| piece.len() >= min && piece.chars().count() >= min;
    if newline_too {
        long_enough(text)
    } else {
        text.split('\n').any(long_enough)
    }
}

fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// What an item tests the field for.
#[derive(Debug, Clone)]
enum Shape {
    /// Any (or, with `all`, every) of the tests matches a value of the field.
    Values {
        tests: Vec<Test>,
        all: bool,
        /// For a long list of alternatives: its plain equalities looked up at once.
        index: Option<Box<AnyIndex>>,
    },
    /// `exists: true|false`.
    Exists(bool),
    /// `fieldref`: the field equals (or contains/starts/ends with) another field.
    FieldRef {
        other: Vec<String>,
        position: Position,
        cased: bool,
    },
}

/// A field item's alternatives (`all` unset) split for matching a value once against
/// many: case-insensitive text equalities in a set of lower-cased texts, number
/// equalities in a set of numbers (the value read as a number once, not once per
/// alternative: SigmaHQ lists a hundred destination ports), and the other tests.
#[derive(Debug, Clone)]
struct AnyIndex {
    texts: FxHashSet<String>,
    numbers: FxHashSet<u64>,
    rest: Vec<Test>,
}

/// Lists shorter than this are tested one by one.
const INDEX_MIN_TESTS: usize = 4;

/// The set key of a number: its bits, with 0 and -0 one key (they compare equal).
fn number_key(n: f64) -> u64 {
    if n == 0.0 { 0 } else { n.to_bits() }
}

impl AnyIndex {
    fn of(tests: &[Test]) -> Option<Box<AnyIndex>> {
        if tests.len() < INDEX_MIN_TESTS {
            return None;
        }
        let mut index = AnyIndex {
            texts: FxHashSet::default(),
            numbers: FxHashSet::default(),
            rest: Vec::new(),
        };
        for test in tests {
            match test {
                Test::Text {
                    test: TextTest::Equals(text),
                    cased: false,
                } => {
                    index.texts.insert(text.clone());
                }
                // NaN equals nothing: left to the test itself.
                Test::Number(n) if !n.is_nan() => {
                    index.numbers.insert(number_key(*n));
                }
                other => index.rest.push(other.clone()),
            }
        }
        (index.texts.len() + index.numbers.len() >= INDEX_MIN_TESTS).then(|| Box::new(index))
    }

    /// Whether one of the alternatives matches `value` (not a list), whose lower-cased
    /// text is `lower` when known: what `tests.iter().any(|t| t.matches(value, lower))`
    /// gives.
    fn matches(&self, value: &FieldValue<'_>, lower: Option<&str>) -> bool {
        if !self.texts.is_empty() {
            let found = match lower {
                Some(lower) => self.texts.contains(lower),
                None => value
                    .text()
                    .is_some_and(|text| self.texts.contains(text.to_lowercase().as_str())),
            };
            if found {
                return true;
            }
        }
        if !self.numbers.is_empty()
            && value
                .number()
                .is_some_and(|n| self.numbers.contains(&number_key(n)))
        {
            return true;
        }
        self.rest.iter().any(|test| test.matches(value, lower))
    }
}

#[derive(Debug, Clone, Copy)]
enum Position {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

/// A compiled detection item: a field (or every field, for keywords) and its test.
#[derive(Debug, Clone)]
pub struct ItemMatcher {
    /// `None` = keyword item: any field of the event.
    pub field: Option<String>,
    shape: Shape,
}

/// Read access to an event's fields, by (mapped) name.
pub trait EventFields {
    fn field(&self, name: &str) -> Option<FieldValue<'_>>;
    /// Every value of the event (for keyword items), with its lower-cased text when
    /// the event computed it.
    fn each_value(&self, visit: &mut dyn FnMut(FieldValue<'_>, Option<&str>) -> bool) -> bool;
    /// [`Self::field`], with the value's lower-cased text when the event computed it
    /// (one lookup for both).
    fn field_lowered(&self, name: &str) -> Option<(FieldValue<'_>, Option<&str>)> {
        self.field(name).map(|value| (value, None))
    }
}

impl ItemMatcher {
    pub fn matches(&self, event: &dyn EventFields) -> bool {
        match &self.shape {
            Shape::Exists(expected) => {
                let present = self
                    .field
                    .as_deref()
                    .and_then(|f| event.field(f))
                    .is_some_and(|v| !matches!(v, FieldValue::Null));
                present == *expected
            }
            Shape::FieldRef {
                other,
                position,
                cased,
            } => {
                // A field's text as compared: as is when cased, else lower-cased (the
                // event's own lower-cased text when it has one: no copy per event).
                let text_of = |name: &str| -> Option<Cow<'_, str>> {
                    let (value, lowered) = event.field_lowered(name)?;
                    if *cased {
                        return value.text();
                    }
                    match (value, lowered) {
                        (FieldValue::Array(_) | FieldValue::Null, _) => None,
                        (_, Some(lower)) => Some(Cow::Borrowed(lower)),
                        (value, None) => value.text().map(|text| Cow::Owned(text.to_lowercase())),
                    }
                };
                let Some(text) = self.field.as_deref().and_then(text_of) else {
                    return false;
                };
                other.iter().any(|name| {
                    let Some(reference) = text_of(name) else {
                        return false;
                    };
                    let reference = reference.as_ref();
                    match position {
                        Position::Equals => text == reference,
                        Position::Contains => text.contains(reference),
                        Position::StartsWith => text.starts_with(reference),
                        Position::EndsWith => text.ends_with(reference),
                    }
                })
            }
            Shape::Values { tests, all, index } => match self.field.as_deref() {
                Some(name) => {
                    let (value, lowered) = event
                        .field_lowered(name)
                        .unwrap_or((FieldValue::Null, None));
                    // Lower-cased once for every test of the item: by the event when it
                    // has it, here otherwise.
                    let computed: Option<String>;
                    let lower = match value {
                        FieldValue::Array(_) | FieldValue::Null => None,
                        _ => match lowered {
                            Some(lower) => Some(lower),
                            None => {
                                computed = value.text().map(|text| text.to_lowercase());
                                computed.as_deref()
                            }
                        },
                    };
                    if let Some(index) = index {
                        return value.any_element(&mut |v| index.matches(&v, lower));
                    }
                    let one = |test: &Test| value.any_element(&mut |v| test.matches(&v, lower));
                    if *all {
                        tests.iter().all(one)
                    } else {
                        tests.iter().any(one)
                    }
                }
                None => {
                    let one = |test: &Test| {
                        event.each_value(&mut |v, lower| match v {
                            FieldValue::Array(_) => v.any_element(&mut |e| test.matches(&e, None)),
                            single => test.matches(&single, lower),
                        })
                    };
                    if *all {
                        tests.iter().all(one)
                    } else {
                        tests.iter().any(one)
                    }
                }
            },
        }
    }

    /// Literal texts (lower-cased) one of which any match must contain, if known: the
    /// engine uses them to skip rules whose literals do not occur in the event at all.
    pub fn required_literals(&self) -> Option<Vec<String>> {
        let Shape::Values { tests, all, .. } = &self.shape else {
            return None;
        };
        if *all {
            // Every test must match, so any one test's literals are required: the
            // most selective (fewest alternatives, longest text).
            return tests
                .iter()
                .filter_map(test_literals)
                .min_by_key(|set| crate::compile::unselectiveness(set, String::len));
        }
        let mut out = Vec::with_capacity(tests.len());
        for test in tests {
            out.extend(test_literals(test)?);
        }
        Some(out)
    }

    /// Whole numbers one of which the value of `field` must equal for this item to
    /// match (e.g. `EventID: [4624, 4625]`), if the item says so; `None` otherwise.
    pub fn required_codes(&self, field: &str) -> Option<Vec<u32>> {
        if self.field.as_deref() != Some(field) {
            return None;
        }
        let Shape::Values {
            tests, all: false, ..
        } = &self.shape
        else {
            return None;
        };
        let mut out = Vec::with_capacity(tests.len());
        for test in tests {
            out.extend(test_codes(test)?);
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }
}

/// Whole numbers one of which a field's value must equal (as
/// [`FieldValue::number`] reads it) to pass `test`; `None` when the test accepts others.
fn test_codes(test: &Test) -> Option<Vec<u32>> {
    match test {
        Test::Number(n) if n.fract() == 0.0 && *n >= 0.0 && *n <= f64::from(u32::MAX) => {
            Some(vec![*n as u32])
        }
        // Digits only: a value equal to this text reads as this number.
        Test::Text {
            test: TextTest::Equals(text),
            ..
        } if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse::<u32>().ok().map(|n| vec![n])
        }
        Test::Any(alternatives) => {
            let mut out = Vec::new();
            for alternative in alternatives {
                out.extend(test_codes(alternative)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Literals one of which a value must contain to pass `test` (case-insensitive tests).
fn test_literals(test: &Test) -> Option<Vec<String>> {
    match test {
        Test::Text { test, cased: false } => Some(vec![test.required_literal()?]),
        Test::Regex(_, literals) => literals.clone(),
        Test::Any(alternatives) => {
            let mut out = Vec::new();
            for alternative in alternatives {
                out.extend(test_literals(alternative)?);
            }
            Some(out)
        }
        _ => None,
    }
}

fn has(item: &DetectionItem, modifier: Modifier) -> bool {
    item.field.modifiers.contains(&modifier)
}

fn plain_text(value: &SigmaString) -> String {
    value
        .parts
        .iter()
        .map(|part| match part {
            StringPart::Plain(text) => text.clone(),
            StringPart::Special(SpecialChar::WildcardMulti) => "*".into(),
            StringPart::Special(SpecialChar::WildcardSingle) => "?".into(),
        })
        .collect()
}

/// The pattern pieces of a string value, lower-cased unless `cased`.
fn glob_parts(parts: &[StringPart], cased: bool) -> Vec<Glob> {
    let mut out: Vec<Glob> = Vec::new();
    for part in parts {
        match part {
            StringPart::Plain(text) => {
                let text = if cased {
                    text.clone()
                } else {
                    text.to_lowercase()
                };
                match out.last_mut() {
                    Some(Glob::Text(chars)) => chars.extend(text.chars()),
                    _ => out.push(Glob::Text(text.chars().collect())),
                }
            }
            StringPart::Special(SpecialChar::WildcardMulti) => {
                if out.last() != Some(&Glob::Any) {
                    out.push(Glob::Any);
                }
            }
            StringPart::Special(SpecialChar::WildcardSingle) => out.push(Glob::One),
        }
    }
    out
}

/// The simplest text test for a glob: equality, substring, prefix, suffix or a glob.
fn text_test(mut parts: Vec<Glob>) -> TextTest {
    let text_of = |g: &Glob| match g {
        Glob::Text(chars) => Some(chars.iter().collect::<String>()),
        _ => None,
    };
    match parts.as_slice() {
        [] => TextTest::Equals(String::new()),
        [only] if text_of(only).is_some() => TextTest::Equals(text_of(only).unwrap_or_default()),
        [Glob::Any] => {
            let tokens = glob_tokens(&parts);
            TextTest::Glob(parts, tokens)
        }
        [Glob::Any, middle, Glob::Any] if text_of(middle).is_some() => {
            let needle = text_of(middle).unwrap_or_default();
            let finder = Box::new(memchr::memmem::Finder::new(needle.as_bytes()).into_owned());
            TextTest::Contains(needle, finder)
        }
        [first, Glob::Any] if text_of(first).is_some() => {
            TextTest::StartsWith(text_of(first).unwrap_or_default())
        }
        [Glob::Any, last] if text_of(last).is_some() => {
            TextTest::EndsWith(text_of(last).unwrap_or_default())
        }
        _ => {
            parts.shrink_to_fit();
            let tokens = glob_tokens(&parts);
            TextTest::Glob(parts, tokens)
        }
    }
}

/// `windash`: the value with each dash/slash that starts an option replaced by every
/// dash Windows accepts (`-`, `/`, en dash, em dash, horizontal bar).
fn windash_variants(parts: &[StringPart]) -> Vec<Vec<StringPart>> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    DASHES
        .iter()
        .map(|dash| {
            parts
                .iter()
                .map(|part| match part {
                    StringPart::Plain(text) => {
                        let chars: Vec<char> = text.chars().collect();
                        let replaced: String = chars
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                let previous = if i == 0 { None } else { Some(chars[i - 1]) };
                                if (*c == '-' || *c == '/')
                                    && !word(previous)
                                    && word(chars.get(i + 1).copied())
                                {
                                    *dash
                                } else {
                                    *c
                                }
                            })
                            .collect();
                        StringPart::Plain(replaced)
                    }
                    other => other.clone(),
                })
                .collect()
        })
        .fold(Vec::new(), |mut all: Vec<Vec<StringPart>>, variant| {
            if !all.contains(&variant) {
                all.push(variant);
            }
            all
        })
}

fn encode_utf16(text: &str, item: &DetectionItem) -> Option<Vec<u8>> {
    if has(item, Modifier::Wide) {
        Some(text.encode_utf16().flat_map(u16::to_le_bytes).collect())
    } else if has(item, Modifier::Utf16be) {
        Some(text.encode_utf16().flat_map(u16::to_be_bytes).collect())
    } else if has(item, Modifier::Utf16) {
        let mut bytes = vec![0xff, 0xfe];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        Some(bytes)
    } else {
        None
    }
}

/// `base64offset`: the three encodings of `bytes` at offsets 0, 1 and 2 of a base64
/// group, with the characters that depend on neighbouring bytes cut off both ends.
pub fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut padded = vec![b' '; i];
            padded.extend_from_slice(bytes);
            let encoded = STANDARD.encode(&padded);
            let trim = END_TRIM[(bytes.len() + i) % 3];
            let end = encoded.len().saturating_sub(trim);
            encoded.get(START[i]..end).unwrap_or_default().to_string()
        })
        .collect()
}

/// Values of `expand` placeholders (`%name%`) by name, from the logsource mapping's
/// `[placeholders]` table.
pub type Placeholders = HashMap<String, Vec<String>>;

/// Most alternatives one value may expand into (placeholders multiply).
const MAX_EXPANSIONS: usize = 4096;

/// `text` with each placeholder `%name%` (letters, digits, `_`) replaced by each of its
/// configured values, every combination; a `%` that opens no placeholder is text. The
/// values are Sigma strings themselves (`*` and `?` are wildcards).
fn substitute_placeholders(
    text: &str,
    placeholders: &Placeholders,
) -> Result<Vec<String>, Unsupported> {
    let mut out = vec![String::new()];
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let length = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if length == 0 || !after[length..].starts_with('%') {
            for text in &mut out {
                text.push_str(&rest[..=start]);
            }
            rest = after;
            continue;
        }
        let name = &after[..length];
        let values = placeholders
            .get(name)
            .filter(|values| !values.is_empty())
            .ok_or_else(|| {
                unsupported(format!(
                    "the expand modifier needs values for placeholder %{name}%; none are \
                     configured (the [placeholders] table of the logsource mapping)"
                ))
            })?;
        if out.len().saturating_mul(values.len()) > MAX_EXPANSIONS {
            return Err(unsupported(format!(
                "placeholders expand {:?} into more than {MAX_EXPANSIONS} values",
                text
            )));
        }
        let before = &rest[..start];
        out = out
            .iter()
            .flat_map(|text| {
                values
                    .iter()
                    .map(move |value| format!("{text}{before}{value}"))
            })
            .collect();
        rest = &after[length + 1..];
    }
    for text in &mut out {
        text.push_str(rest);
    }
    Ok(out)
}

/// The string alternatives a string value stands for after its placeholders (`expand`)
/// and encodings.
fn expand_string(
    value: &SigmaString,
    item: &DetectionItem,
    placeholders: &Placeholders,
) -> Result<Vec<Vec<StringPart>>, Unsupported> {
    if has(item, Modifier::Expand) {
        let mut alternatives = Vec::new();
        for text in substitute_placeholders(&value.original, placeholders)? {
            alternatives.extend(encoded_string(&SigmaString::new(&text), item)?);
        }
        return Ok(alternatives);
    }
    encoded_string(value, item)
}

/// The string alternatives a string value stands for after encodings.
fn encoded_string(
    value: &SigmaString,
    item: &DetectionItem,
) -> Result<Vec<Vec<StringPart>>, Unsupported> {
    let encoded = has(item, Modifier::Base64) || has(item, Modifier::Base64Offset);
    if !encoded {
        if encode_utf16("", item).is_some() {
            return Err(unsupported(
                "utf16/wide without base64 cannot be matched on decoded text",
            ));
        }
        return Ok(if has(item, Modifier::WindAsh) {
            windash_variants(&value.parts)
        } else {
            vec![value.parts.clone()]
        });
    }
    if value.contains_wildcards() {
        return Err(unsupported(format!(
            "a base64 value with wildcards cannot be encoded: {:?}",
            value.original
        )));
    }
    let texts: Vec<String> = if has(item, Modifier::WindAsh) {
        windash_variants(&value.parts)
            .iter()
            .map(|parts| {
                plain_text(&SigmaString {
                    parts: parts.clone(),
                    original: String::new(),
                })
            })
            .collect()
    } else {
        vec![plain_text(value)]
    };
    let mut out = Vec::new();
    for text in texts {
        let bytes = encode_utf16(&text, item).unwrap_or_else(|| text.into_bytes());
        let alternatives = if has(item, Modifier::Base64Offset) {
            base64_offsets(&bytes)
        } else {
            vec![STANDARD.encode(&bytes)]
        };
        out.extend(alternatives.into_iter().map(|a| vec![StringPart::Plain(a)]));
    }
    Ok(out)
}

fn number_of(value: &SigmaValue) -> Option<f64> {
    match value {
        SigmaValue::Integer(n) => Some(*n as f64),
        SigmaValue::Float(f) => Some(*f),
        SigmaValue::String(s) => s.as_plain()?.trim().parse().ok(),
        _ => None,
    }
}

fn regex_test(value: &SigmaValue, item: &DetectionItem) -> Result<Test, Unsupported> {
    let SigmaValue::String(pattern) = value else {
        return Err(unsupported("the re modifier needs a string"));
    };
    let source = &pattern.original;
    let hir = parse_regex(
        source,
        has(item, Modifier::IgnoreCase),
        has(item, Modifier::Multiline),
        has(item, Modifier::DotAll),
    )
    .map_err(|e| unsupported(format!("invalid regular expression {source:?}: {e}")))?;
    if let Some(run) = char_run_of(&hir) {
        return Ok(run);
    }
    let literals = regex_literals(&hir);
    // Searched for whether it matches at all, so an expression with the same matches
    // or none (see `match_equivalent`) is searched instead when it is smaller; built
    // from the parsed expression, parsed once for all of this. Only `is_match` is
    // asked, so no capture groups; and no full DFA: building one for each small
    // expression was 3 % of rule loading (81M instructions) and evaluation took the same
    // with the lazy DFA alone (callgrind, 20,000 synthetic events).
    let searched = match_equivalent(&hir);
    let regex = regex_automata::meta::Regex::builder()
        .configure(
            regex_automata::meta::Regex::config()
                .nfa_size_limit(Some(4 << 20))
                .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
                .dfa(false),
        )
        .build_from_hir(searched.as_ref().unwrap_or(&hir))
        .map_err(|e| unsupported(format!("invalid regular expression {source:?}: {e}")))?;
    Ok(Test::Regex(regex, literals))
}

/// An expression that matches somewhere in a text exactly when `source` does (an
/// unanchored search for whether it matches, not where), smaller when its ends repeat:
/// at either end of the sequence, a part that may be absent (`(?:…)?`, `x*`) is
/// dropped, and a part repeated `{m,n}` times is kept `m` times; any match of the
/// original holds a match of the result, and the reverse. `-k\s\w{1,64}(?:\s?-p)?`
/// (a SigmaHQ svchost rule) becomes `-k\s\w`, whose Unicode `\w{1,64}` the engine
/// searched by backtracking, at ~150,000 instructions per command line. `None` when
/// nothing changes. Anchors, look-arounds and what lies between the ends are kept.
fn match_equivalent(hir: &regex_syntax::hir::Hir) -> Option<regex_syntax::hir::Hir> {
    use regex_syntax::hir::{Hir, HirKind, Repetition};
    /// `hir` without what either end of its sequence may repeat or leave out.
    fn trimmed(hir: &Hir) -> Option<Hir> {
        match hir.kind() {
            HirKind::Alternation(branches) => {
                let mut changed = false;
                let branches: Vec<Hir> = branches
                    .iter()
                    .map(|branch| match trimmed(branch) {
                        Some(branch) => {
                            changed = true;
                            branch
                        }
                        None => branch.clone(),
                    })
                    .collect();
                changed.then(|| Hir::alternation(branches))
            }
            HirKind::Capture(capture) => trimmed(&capture.sub),
            HirKind::Concat(items) => {
                let mut items = items.clone();
                let changed = trim_end(&mut items, true) | trim_end(&mut items, false);
                // Everything left out: the empty expression, which matches any text.
                changed.then(|| Hir::concat(items))
            }
            HirKind::Repetition(_) => {
                let mut items = vec![hir.clone()];
                trim_end(&mut items, false).then(|| Hir::concat(items))
            }
            _ => None,
        }
    }
    /// Trims the last (or, with `first`, the first) items of a sequence.
    fn trim_end(items: &mut Vec<Hir>, first: bool) -> bool {
        let mut changed = false;
        loop {
            let end = if first { items.first() } else { items.last() };
            let Some(HirKind::Repetition(repetition)) = end.map(Hir::kind) else {
                return changed;
            };
            // A look-around inside would make the count matter.
            if !repetition.sub.properties().look_set().is_empty() {
                return changed;
            }
            if repetition.min == 0 {
                if first {
                    items.remove(0);
                } else {
                    items.pop();
                }
                changed = true;
                continue;
            }
            if repetition.max == Some(repetition.min) {
                return changed;
            }
            let kept = Hir::repetition(Repetition {
                min: repetition.min,
                max: Some(repetition.min),
                greedy: repetition.greedy,
                sub: repetition.sub.clone(),
            });
            if first {
                items[0] = kept;
            } else if let Some(last) = items.last_mut() {
                *last = kept;
            }
            return true;
        }
    }
    trimmed(hir)
}

/// `source` parsed as the regex engine parses it with these flags.
fn parse_regex(
    source: &str,
    case_insensitive: bool,
    multi_line: bool,
    dot_matches_new_line: bool,
) -> Result<regex_syntax::hir::Hir, String> {
    regex_syntax::ParserBuilder::new()
        .case_insensitive(case_insensitive)
        .multi_line(multi_line)
        .dot_matches_new_line(dot_matches_new_line)
        .build()
        .parse(source)
        .map_err(|error| error.to_string())
}

/// [`Test::CharRun`] when the expression is only a repetition of `.`.
#[cfg(test)]
fn char_run(source: &str, case_insensitive: bool, dot_matches_new_line: bool) -> Option<Test> {
    char_run_of(&parse_regex(source, case_insensitive, false, dot_matches_new_line).ok()?)
}

/// [`Test::CharRun`] when the parsed expression is only a repetition of `.`.
fn char_run_of(hir: &regex_syntax::hir::Hir) -> Option<Test> {
    use regex_syntax::hir::{Class, HirKind};
    let HirKind::Repetition(repetition) = hir.kind() else {
        return None;
    };
    let HirKind::Class(Class::Unicode(class)) = repetition.sub.kind() else {
        return None;
    };
    let ranges: Vec<(char, char)> = class
        .ranges()
        .iter()
        .map(|range| (range.start(), range.end()))
        .collect();
    let newline_too = match ranges.as_slice() {
        [('\0', '\u{10ffff}')] => true,
        [('\0', '\u{9}'), ('\u{b}', '\u{10ffff}')] => false,
        _ => return None,
    };
    // `.*` and the like match every value: left to the regex.
    let min = usize::try_from(repetition.min)
        .ok()
        .filter(|min| *min > 0)?;
    Some(Test::CharRun { min, newline_too })
}

/// Texts one of which every match of the expression contains, lower-cased (so one of
/// them occurs in the lower-cased value whenever the expression matches), for
/// prefiltering: its prefixes ([`regex_prefixes`]) or a run of plain text the match
/// must hold further in ([`regex_inner_text`]), whichever is the more selective. A
/// prefix alone lets `\.exe\s+…werfaultsecure\.exe` be tried on every command line
/// naming an executable, and finds nothing at all in `\w+`…`.
fn regex_literals(hir: &regex_syntax::hir::Hir) -> Option<Vec<String>> {
    match (regex_prefixes(hir), regex_inner_text(hir)) {
        (Some(prefixes), Some(inner)) => Some(
            if crate::compile::unselectiveness(&inner, String::len)
                < crate::compile::unselectiveness(&prefixes, String::len)
            {
                inner
            } else {
                prefixes
            },
        ),
        (prefixes, inner) => prefixes.or(inner),
    }
}

/// The longest run of plain text (lower-cased) in the sequence every match of the
/// expression consists of; with alternatives at the top, one run per alternative. A
/// character class stands for its character when all its members lower-case to it
/// (`[Kk\u{212A}]` under `(?i)`); anything else (`[Ss\u{17F}]`, a capital sigma, a
/// repetition) ends the run.
fn regex_inner_text(hir: &regex_syntax::hir::Hir) -> Option<Vec<String>> {
    use regex_syntax::hir::{Class, Hir, HirKind};
    fn lowered(c: char) -> Option<String> {
        (c != 'Σ').then(|| c.to_lowercase().collect())
    }
    /// The lower-cased text `hir` always matches exactly, if it is one such piece.
    fn piece(hir: &Hir) -> Option<String> {
        match hir.kind() {
            HirKind::Literal(literal) => {
                let text = std::str::from_utf8(&literal.0).ok()?;
                text.chars().map(lowered).collect()
            }
            HirKind::Class(Class::Unicode(class)) => {
                let mut members = Vec::new();
                for range in class.ranges() {
                    for c in range.start()..=range.end() {
                        members.push(c);
                        if members.len() > 4 {
                            return None;
                        }
                    }
                }
                let first = lowered(*members.first()?)?;
                members
                    .iter()
                    .all(|c| lowered(*c).as_deref() == Some(first.as_str()))
                    .then_some(first)
            }
            HirKind::Capture(capture) => piece(&capture.sub),
            _ => None,
        }
    }
    fn longest_run(hir: &Hir) -> Option<String> {
        let items: &[Hir] = match hir.kind() {
            HirKind::Concat(items) => items,
            HirKind::Capture(capture) => return longest_run(&capture.sub),
            _ => std::slice::from_ref(hir),
        };
        let mut best = String::new();
        let mut run = String::new();
        for item in items {
            match piece(item) {
                Some(text) => run.push_str(&text),
                None => run.clear(),
            }
            if run.chars().count() > best.chars().count() {
                best.clone_from(&run);
            }
        }
        (!best.is_empty()).then_some(best)
    }
    let mut out: Vec<String> = match hir.kind() {
        HirKind::Alternation(branches) => {
            branches.iter().map(longest_run).collect::<Option<_>>()?
        }
        _ => vec![longest_run(hir)?],
    };
    out.sort();
    out.dedup();
    Some(out)
}

/// Texts one of which every match of the expression starts with, lower-cased (so one
/// of them occurs in the lower-cased value whenever the expression matches); `None`
/// when there is no such finite set. Case-insensitive expressions give every case
/// variant (`ſ` for `s` too).
fn regex_prefixes(hir: &regex_syntax::hir::Hir) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Prefix);
    let prefixes = extractor.extract(hir);
    let mut out = Vec::new();
    for literal in prefixes.literals()? {
        let text = std::str::from_utf8(literal.as_bytes()).ok()?;
        // An empty prefix allows any value. A piece of text lower-cases as it does
        // inside the whole value but for a capital sigma (final or not, by context).
        if text.is_empty() || text.contains('Σ') {
            return None;
        }
        out.push(text.to_lowercase());
    }
    out.sort();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

fn cidr_test(value: &SigmaValue) -> Result<Test, Unsupported> {
    let text = match value {
        SigmaValue::String(s) => s.original.clone(),
        _ => return Err(unsupported("the cidr modifier needs a string")),
    };
    let (address, prefix) = text.split_once('/').unwrap_or((text.as_str(), ""));
    let network: IpAddr = address
        .trim()
        .parse()
        .map_err(|_| unsupported(format!("invalid CIDR network {text:?}")))?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = if prefix.is_empty() {
        max
    } else {
        prefix
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| unsupported(format!("invalid CIDR prefix in {text:?}")))?
    };
    Ok(Test::Cidr { network, prefix })
}

fn value_tests(
    value: &SigmaValue,
    item: &DetectionItem,
    placeholders: &Placeholders,
) -> Result<Vec<Test>, Unsupported> {
    let cased = has(item, Modifier::Cased);
    if has(item, Modifier::Re) {
        return Ok(vec![regex_test(value, item)?]);
    }
    if has(item, Modifier::Cidr) {
        return Ok(vec![cidr_test(value)?]);
    }
    for (modifier, comparison) in [
        (Modifier::Gt, Comparison::Gt),
        (Modifier::Gte, Comparison::Gte),
        (Modifier::Lt, Comparison::Lt),
        (Modifier::Lte, Comparison::Lte),
    ] {
        if has(item, modifier) {
            let bound = number_of(value)
                .ok_or_else(|| unsupported(format!("{modifier:?} needs a number")))?;
            return Ok(vec![Test::Compare(comparison, bound)]);
        }
    }
    for part_modifier in [
        Modifier::Minute,
        Modifier::Hour,
        Modifier::Day,
        Modifier::Week,
        Modifier::Month,
        Modifier::Year,
    ] {
        if has(item, part_modifier) {
            return Err(unsupported(format!(
                "the timestamp-part modifier {part_modifier:?} is not supported"
            )));
        }
    }
    let string_modified = has(item, Modifier::Contains)
        || has(item, Modifier::StartsWith)
        || has(item, Modifier::EndsWith)
        || has(item, Modifier::Base64)
        || has(item, Modifier::Base64Offset)
        || has(item, Modifier::WindAsh);
    let tests = match value {
        SigmaValue::Null => vec![Test::Null],
        SigmaValue::Bool(b) if !string_modified => vec![Test::Bool(*b)],
        SigmaValue::Integer(_) | SigmaValue::Float(_) if !string_modified => {
            let number = number_of(value).unwrap_or_default();
            let text = match value {
                SigmaValue::Integer(n) => n.to_string(),
                SigmaValue::Float(f) => f.to_string(),
                _ => String::new(),
            };
            vec![
                Test::Number(number),
                Test::Text {
                    test: TextTest::Equals(text),
                    cased: true,
                },
            ]
        }
        other => {
            let string = match other {
                SigmaValue::String(s) => s.clone(),
                SigmaValue::Integer(n) => SigmaString::new(&n.to_string()),
                SigmaValue::Float(f) => SigmaString::new(&f.to_string()),
                SigmaValue::Bool(b) => SigmaString::new(&b.to_string()),
                SigmaValue::Null => SigmaString::new(""),
            };
            let mut tests = Vec::new();
            for mut parts in expand_string(&string, item, placeholders)? {
                let any = StringPart::Special(SpecialChar::WildcardMulti);
                let base64offset = has(item, Modifier::Base64Offset);
                if has(item, Modifier::Contains) || base64offset {
                    parts.insert(0, any.clone());
                    parts.push(any);
                } else if has(item, Modifier::StartsWith) {
                    parts.push(any);
                } else if has(item, Modifier::EndsWith) {
                    parts.insert(0, any);
                }
                tests.push(Test::Text {
                    test: text_test(glob_parts(&parts, cased)),
                    cased,
                });
            }
            tests
        }
    };
    if has(item, Modifier::Neq) {
        return Ok(vec![Test::NotEqual(Box::new(Test::Any(tests)))]);
    }
    Ok(tests)
}

/// Compiles one detection item with no placeholder values.
#[cfg(test)]
pub fn compile_item(
    item: &DetectionItem,
    field: Option<String>,
) -> Result<ItemMatcher, Unsupported> {
    compile_item_with(item, field, &Placeholders::new())
}

/// Compiles one detection item; `field` is the name after logsource field mapping,
/// `placeholders` the values `expand` puts in.
pub fn compile_item_with(
    item: &DetectionItem,
    field: Option<String>,
    placeholders: &Placeholders,
) -> Result<ItemMatcher, Unsupported> {
    if has(item, Modifier::Exists) {
        let expected = match item.values.as_slice() {
            [SigmaValue::Bool(b)] => *b,
            [SigmaValue::String(s)] if s.original.eq_ignore_ascii_case("true") => true,
            [SigmaValue::String(s)] if s.original.eq_ignore_ascii_case("false") => false,
            _ => return Err(unsupported("exists needs true or false")),
        };
        return Ok(ItemMatcher {
            field,
            shape: Shape::Exists(expected),
        });
    }
    if has(item, Modifier::FieldRef) {
        let other = item
            .values
            .iter()
            .map(|v| match v {
                SigmaValue::String(s) => Ok(s.original.clone()),
                _ => Err(unsupported("fieldref needs field names")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let position = if has(item, Modifier::Contains) {
            Position::Contains
        } else if has(item, Modifier::StartsWith) {
            Position::StartsWith
        } else if has(item, Modifier::EndsWith) {
            Position::EndsWith
        } else {
            Position::Equals
        };
        return Ok(ItemMatcher {
            field,
            shape: Shape::FieldRef {
                other,
                position,
                cased: has(item, Modifier::Cased),
            },
        });
    }
    let all = has(item, Modifier::All) || has(item, Modifier::Neq);
    let mut tests = Vec::new();
    if all {
        // Every value must match; a value that expanded into alternatives (windash,
        // base64offset) matches when one of them does.
        for value in &item.values {
            let mut alternatives = value_tests(value, item, placeholders)?;
            tests.push(if alternatives.len() == 1 {
                alternatives.remove(0)
            } else {
                Test::Any(alternatives)
            });
        }
    } else {
        for value in &item.values {
            tests.extend(value_tests(value, item, placeholders)?);
        }
    }
    if tests.is_empty() {
        return Err(unsupported("a detection item without values"));
    }
    if !all {
        merge_networks(&mut tests);
    }
    // Keyword items (no field) search every value: left to the tests one by one.
    let index = if all || field.is_none() {
        None
    } else {
        AnyIndex::of(&tests)
    };
    Ok(ItemMatcher {
        field,
        shape: Shape::Values { tests, all, index },
    })
}

/// Alternatives that are `cidr` networks, as one test where the first was (the item
/// matches when any alternative does, so their order is free).
fn merge_networks(tests: &mut Vec<Test>) {
    let networks: Vec<(IpAddr, u8)> = tests
        .iter()
        .filter_map(|test| match test {
            Test::Cidr { network, prefix } => Some((*network, *prefix)),
            _ => None,
        })
        .collect();
    if networks.len() < 2 {
        return;
    }
    let first = tests
        .iter()
        .position(|test| matches!(test, Test::Cidr { .. }))
        .unwrap_or(0);
    tests.retain(|test| !matches!(test, Test::Cidr { .. }));
    tests.insert(first.min(tests.len()), Test::Networks(networks));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::FieldsView;
    use rsigma_parser::parse_field_spec;
    use serde_json::json;

    fn item(key: &str, values: &[&str]) -> DetectionItem {
        DetectionItem {
            field: parse_field_spec(key).expect("field spec"),
            values: values
                .iter()
                .map(|v| SigmaValue::String(SigmaString::new(v)))
                .collect(),
        }
    }

    fn matches(key: &str, values: &[&str], event: serde_json::Value) -> bool {
        let item = item(key, values);
        let matcher = compile_item(&item, item.field.name.clone()).expect("compiles");
        let fields = event.as_object().cloned().unwrap_or_default();
        matcher.matches(&FieldsView {
            fields: (&fields).into(),
            aliases: None,
            other_names: None,
            lowered: None,
        })
    }

    /// The expression searched in place of a regex matches exactly the texts the
    /// regex matches, on texts built from the pieces the expressions are about.
    #[test]
    fn trimmed_regexes_match_the_same_texts() {
        let patterns = [
            (r"-k\s\w{1,64}(?:\s?(?:-p|-s))?", false, false, true),
            (r"\w+`(?:\w+|-|.)`[\w+|\s]", false, false, true),
            (r"^\w{1,3}$", false, false, false),
            (r"(?m)^a{2,4}", false, true, true),
            (r"a\B\w{2,5}", false, false, true),
            (r"(?:ab)*c+|x{1,3}y?", false, false, true),
            (r"\bfoo\w*", true, false, true),
            (r"(a|b{1,9})", false, false, true),
            (r"\s[a-fA-F0-9]{4}\s[a-fA-F0-9]{2}", false, false, false),
            (r"(?s)k.{1,3}", true, false, true),
        ];
        let pieces = [
            "-k", " ", "\t", "\n", "a", "b", "ab", "c", "x", "y", "é", "1", "f0", "-p", "-s", "`",
            "foo", "FOO", "K", "\u{212A}", "_", "-", "\"",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for (source, case_insensitive, multi_line, trims) in patterns {
            let simpler = trimmed_of(source, case_insensitive, multi_line);
            assert_eq!(simpler.is_some(), trims, "{source} -> {simpler:?}");
            let Some(simpler) = simpler else { continue };
            let original = regex::RegexBuilder::new(source)
                .case_insensitive(case_insensitive)
                .multi_line(multi_line)
                .build()
                .expect("valid");
            let simpler = regex::Regex::new(&simpler).expect("the trimmed expression compiles");
            let (mut matched, mut unmatched) = (0, 0);
            for _ in 0..3000 {
                let text: String = (0..next(9)).map(|_| pieces[next(pieces.len())]).collect();
                let expected = original.is_match(&text);
                assert_eq!(simpler.is_match(&text), expected, "{source} on {text:?}");
                if expected {
                    matched += 1
                } else {
                    unmatched += 1
                }
            }
            assert!(
                matched > 0 && unmatched > 0,
                "{source}: {matched} matched, {unmatched} not"
            );
        }
        assert_eq!(
            trimmed_of(r"-k\s\w{1,64}(?:\s?(?:-p|-s))?", false, false)
                .map(|simpler| regex::Regex::new(&simpler).map(|r| r.is_match("-k x")).ok()),
            Some(Some(true))
        );
    }

    fn literals_of(source: &str, case_insensitive: bool) -> Option<Vec<String>> {
        regex_literals(&parse_regex(source, case_insensitive, false, false).expect("valid"))
    }

    /// `source` as searched for whether it matches (see `match_equivalent`), if smaller.
    fn trimmed_of(source: &str, case_insensitive: bool, multi_line: bool) -> Option<String> {
        let hir = parse_regex(source, case_insensitive, multi_line, false).expect("valid");
        match_equivalent(&hir).map(|hir| hir.to_string())
    }

    /// A regex's prefilter texts: one of them is in the lower-cased value whenever the
    /// expression matches it, whatever case or look-alike letters the value uses; and
    /// a plain run further in is preferred to a short prefix.
    #[test]
    fn regex_prefilter_texts_occur_in_every_match() {
        let wsass = r#"(?i)\.exe[\"\']?\s+[^\"]{0,64}werfaultsecure\.exe[\"\']?\s+\d{2,10}"#;
        assert_eq!(
            literals_of(wsass, false),
            Some(vec!["ecure.exe".to_string()])
        );
        assert_eq!(
            literals_of(r"\w+`(?:\w+|-|.)`[\w+|\s]", false),
            Some(vec!["`".to_string()])
        );
        assert_eq!(
            literals_of(r"(?i)mimi(?:katz|lib)\.dll|Invoke-Kerb", false).map(|v| v.len()),
            Some(2)
        );
        let cases: Vec<(&str, bool, Vec<String>)> = vec![
            (
                wsass,
                false,
                vec![
                    "wsass.exe \"C:\\Windows\\WerFaultSecure.exe\" 1234".into(),
                    "x.EXE  WERFAULTSECURE.EXE 99".into(),
                    "a.exe werfault\u{17F}ecure.exe 12".into(),
                ],
            ),
            (
                r"\w+`(?:\w+|-|.)`[\w+|\s]",
                false,
                vec!["IN`V`o`Ke".into(), "a`-`b".into()],
            ),
            (
                r"ask\s+task",
                true,
                vec!["ASK TASK".into(), "a\u{212A}SK tas\u{212A}".into()],
            ),
            (r"(?i)Σημα", false, vec!["σημα".into(), "ΣΗΜΑ".into()]),
            (
                r"(?i)net\s+user\s+",
                false,
                vec!["NET USER x".into(), "ne\u{0130} user ".into()],
            ),
            (
                r"^(?:a|bc)\d+xyz",
                false,
                vec!["a1xyz".into(), "bc22XYZ".into()],
            ),
            (r"(abc|abd)ef", false, vec!["abdef".into()]),
        ];
        for (source, case_insensitive, texts) in cases {
            let literals = literals_of(source, case_insensitive);
            let regex = regex::RegexBuilder::new(source)
                .case_insensitive(case_insensitive)
                .build()
                .expect("valid");
            let mut matched = 0;
            for text in texts {
                if !regex.is_match(&text) {
                    continue;
                }
                matched += 1;
                if let Some(literals) = &literals {
                    let lower = text.to_lowercase();
                    assert!(
                        literals.iter().any(|l| lower.contains(l.as_str())),
                        "{source} matches {text:?} holding none of {literals:?}"
                    );
                }
            }
            assert!(matched > 0, "no text matches {source}");
        }
    }

    /// A long list of alternatives, matched through its index (text and number sets),
    /// gives what testing each alternative in turn gives, for any kind of value.
    #[test]
    fn indexed_alternatives_match_as_the_tests_one_by_one() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let texts = [
            "443", "Admin", "ADMIN", "0x1bb", "4.5e2", "-0", "0", "true", "Ab*", "?dmin",
        ];
        let numbers = [443.0, 0.0, -0.0, 450.0, 1e300, f64::NAN];
        let values = [
            json!("443"),
            json!(443),
            json!(443.0),
            json!("admin"),
            json!("Admin"),
            json!("aDMIN"),
            json!("0x1bb"),
            json!(450),
            json!("4.5e2"),
            json!(0),
            json!(-0.0),
            json!("-0"),
            json!(true),
            json!("true"),
            json!(null),
            json!(""),
            json!(["x", "443"]),
            json!([]),
            json!(["ADMIN"]),
            json!("abc"),
            json!("Abz"),
            json!({"a": 1}),
        ];
        let mut indexed_lists = 0;
        for round in 0..400 {
            let count = 1 + next(9) as usize;
            let item = DetectionItem {
                field: parse_field_spec(if round % 3 == 0 { "F|cased" } else { "F" })
                    .expect("field spec"),
                values: (0..count)
                    .map(|_| match next(3) {
                        0 => SigmaValue::Float(numbers[next(numbers.len() as u64) as usize]),
                        1 => SigmaValue::Integer(next(500) as i64),
                        _ => SigmaValue::String(SigmaString::new(
                            texts[next(texts.len() as u64) as usize],
                        )),
                    })
                    .collect(),
            };
            let Ok(matcher) = compile_item(&item, item.field.name.clone()) else {
                continue;
            };
            let mut plain = matcher.clone();
            if let Shape::Values { index, .. } = &mut plain.shape {
                indexed_lists += usize::from(index.is_some());
                *index = None;
            }
            for value in &values {
                let fields = json!({"F": value}).as_object().cloned().unwrap_or_default();
                // As the rule set computes them: single values with a text lower-cased.
                let mut text = String::new();
                let mut index: std::collections::HashMap<&str, u32, rustc_hash::FxBuildHasher> =
                    Default::default();
                let value_ref = &fields["F"];
                let start = text.len() as u32;
                let range = (!value_ref.is_array()
                    && FieldValue::of(value_ref).push_lowercase_text(&mut text))
                .then_some((start, text.len() as u32));
                index.insert("F", 0);
                let slots = [crate::fields::Slot {
                    value: value_ref,
                    range,
                }];
                let lowered_fields = crate::fields::Lowered::new(
                    &text,
                    &slots,
                    crate::fields::SlotIndex::Event(&index),
                );
                for lowered in [false, true] {
                    let view = FieldsView {
                        fields: (&fields).into(),
                        aliases: None,
                        other_names: None,
                        lowered: lowered.then_some(&lowered_fields),
                    };
                    assert_eq!(
                        matcher.matches(&view),
                        plain.matches(&view),
                        "{:?} on {value}",
                        item.values
                    );
                }
            }
        }
        assert!(
            indexed_lists > 50,
            "only {indexed_lists} lists were indexed"
        );
    }

    #[test]
    fn globs_and_positions_are_case_insensitive_unless_cased() {
        let event = json!({"CommandLine": "C:\\Windows\\System32\\CMD.exe /c Whoami", "n": 4624});
        assert!(matches("CommandLine|contains", &["whoami"], event.clone()));
        assert!(matches("CommandLine|endswith", &["WHOAMI"], event.clone()));
        assert!(matches(
            "CommandLine|startswith",
            &["c:\\windows"],
            event.clone()
        ));
        assert!(matches(
            "CommandLine",
            &["*system32\\cmd.exe /c ?hoami"],
            event.clone()
        ));
        assert!(!matches("CommandLine", &["cmd.exe"], event.clone()));
        assert!(!matches(
            "CommandLine|contains|cased",
            &["whoami"],
            event.clone()
        ));
        assert!(matches(
            "CommandLine|contains|cased",
            &["Whoami"],
            event.clone()
        ));
        assert!(matches(
            "CommandLine|contains|all",
            &["cmd", "whoami"],
            event.clone()
        ));
        assert!(!matches(
            "CommandLine|contains|all",
            &["cmd", "net1"],
            event.clone()
        ));
        assert!(
            matches("n", &["4624"], event.clone()),
            "a number equals its text"
        );
        assert!(matches("n|gte", &["4000"], event.clone()));
        assert!(!matches("n|lt", &["4000"], event));
    }

    #[test]
    fn glob_matching_backtracks() {
        let parts = glob_tokens(&glob_parts(&SigmaString::new("*a*b?c*").parts, false));
        assert!(glob_matches(&parts, "xxaxxbycxx"));
        assert!(glob_matches(&parts, "abxc"));
        assert!(!glob_matches(&parts, "abc"));
        assert!(!glob_matches(&parts, "xbyca"));
    }

    /// Placeholders are replaced by each of their values, every combination, and a `%`
    /// that opens none is text; an unknown placeholder and too many combinations are
    /// refused by name.
    #[test]
    fn placeholders_are_replaced_by_every_combination_of_their_values() {
        let placeholders: Placeholders = [
            ("hosts".to_string(), vec!["a".to_string(), "b*".to_string()]),
            (
                "dirs".to_string(),
                vec!["x".to_string(), "y".to_string(), "z".to_string()],
            ),
            (
                "many".to_string(),
                (0..100).map(|i| i.to_string()).collect(),
            ),
        ]
        .into_iter()
        .collect();
        let texts = |text: &str| substitute_placeholders(text, &placeholders);
        assert_eq!(
            texts("\\\\%hosts%\\c$").unwrap(),
            ["\\\\a\\c$", "\\\\b*\\c$"]
        );
        assert_eq!(
            texts("%hosts%/%dirs%").unwrap(),
            ["a/x", "a/y", "a/z", "b*/x", "b*/y", "b*/z"]
        );
        assert_eq!(
            texts("100% %not a name% %").unwrap(),
            ["100% %not a name% %"]
        );
        assert_eq!(texts("no placeholder").unwrap(), ["no placeholder"]);
        let unknown = texts("%hosts%-%nope%").unwrap_err();
        assert!(unknown.0.contains("%nope%"), "{unknown:?}");
        let huge = texts("%many%%many%").unwrap_err();
        assert!(huge.0.contains("more than"), "{huge:?}");
        // Through an item: the values are Sigma strings (the wildcard is one).
        let matcher = compile_item_with(
            &item("Host|expand", &["%hosts%"]),
            Some("Host".into()),
            &placeholders,
        )
        .unwrap();
        let event = |host: &str| {
            let fields = json!({ "Host": host })
                .as_object()
                .cloned()
                .unwrap_or_default();
            matcher.matches(&FieldsView {
                fields: (&fields).into(),
                aliases: None,
                other_names: None,
                lowered: None,
            })
        };
        assert!(event("A") && event("b") && event("bcd"));
        assert!(!event("c") && !event("ab"));
    }

    /// Globs match by character, not byte, in any text: as a walk over the text's
    /// characters collected into a list does (the former way, kept here as the
    /// reference), on random patterns and texts of ASCII and multi-byte characters.
    #[test]
    fn globs_match_by_character_as_over_a_character_list() {
        fn reference(tokens: &[GlobChar], text: &str) -> bool {
            let chars: Vec<char> = text.chars().collect();
            let (mut p, mut t) = (0usize, 0usize);
            let mut star: Option<(usize, usize)> = None;
            while t < chars.len() {
                match tokens.get(p) {
                    Some(GlobChar::Char(c)) if *c == chars[t] => (p, t) = (p + 1, t + 1),
                    Some(GlobChar::One) => (p, t) = (p + 1, t + 1),
                    Some(GlobChar::Any) => {
                        star = Some((p, t));
                        p += 1;
                    }
                    _ => match star {
                        Some((sp, st)) => {
                            (p, t) = (sp + 1, st + 1);
                            star = Some((sp, st + 1));
                        }
                        None => return false,
                    },
                }
            }
            tokens[p..].iter().all(|t| matches!(t, GlobChar::Any))
        }
        let alphabet = ['a', 'b', 'é', '€', '𝄞'];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut matched, mut total) = (0, 0);
        for _ in 0..20_000 {
            let tokens: Vec<GlobChar> = (0..next(6))
                .map(|_| match next(7) {
                    0 => GlobChar::Any,
                    1 => GlobChar::One,
                    _ => GlobChar::Char(alphabet[next(alphabet.len())]),
                })
                .collect();
            let text: String = (0..next(8))
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            let expected = reference(&tokens, &text);
            assert_eq!(
                glob_matches(&tokens, &text),
                expected,
                "{tokens:?} on {text:?}"
            );
            matched += usize::from(expected);
            total += 1;
        }
        // Both outcomes were tried often.
        assert!(
            matched > total / 20 && matched < total - total / 20,
            "{matched} of {total}"
        );
    }

    #[test]
    fn character_runs_match_as_their_regex_does() {
        let patterns = [
            (".{3,}", false, true),
            (".{3}", false, true),
            (".{2,5}", false, true),
            (".{3,}", true, true),
            ("(?s).{3,}", false, true),
            ("(?i).{4,}", false, true),
            (".{1000,}", false, true),
            (".*", false, false),
            ("a{3,}", false, false),
            ("^.{3,}$", false, false),
            (".{3,}x", false, false),
        ];
        let texts = [
            "",
            "ab",
            "abc",
            "ab\nc",
            "ab\ncd",
            "abc\n",
            "\nabc",
            "é✓𝄞",
            "é✓",
            "éé\néé",
            "a\r\nb",
            "a\n\nbcd",
            "x\u{85}y",
        ];
        let long = "a".repeat(999) + "\n" + &"b".repeat(1000);
        for (pattern, dot_all, special) in patterns {
            let run = char_run(pattern, false, dot_all);
            assert_eq!(run.is_some(), special, "{pattern}");
            let Some(run) = run else { continue };
            let regex = regex::RegexBuilder::new(pattern)
                .dot_matches_new_line(dot_all)
                .size_limit(4 << 20)
                .build()
                .expect("valid");
            for text in texts.iter().copied().chain([long.as_str(), &long[..1500]]) {
                let value = FieldValue::Str(text);
                assert_eq!(
                    run.matches(&value, None),
                    regex.is_match(text),
                    "{pattern} (s: {dot_all}) on {text:?}"
                );
            }
        }
    }

    /// A list of networks is one test that reads the address once: it matches exactly
    /// when one of the networks, tested alone, does.
    #[test]
    fn a_list_of_networks_matches_as_its_networks_one_by_one() {
        let networks = ["10.0.0.0/8", "192.168.0.0/16", "fe80::/10", "::1/128"];
        let merged = compile_item(&item("Ip|cidr", &networks), None).unwrap();
        let Shape::Values { tests, .. } = &merged.shape else {
            panic!("not a list of values");
        };
        assert!(matches!(tests.as_slice(), [Test::Networks(list)] if list.len() == 4));
        let alone: Vec<ItemMatcher> = networks
            .iter()
            .map(|network| compile_item(&item("Ip|cidr", &[network]), None).unwrap())
            .collect();
        let addresses = [
            json!("10.1.2.3"),
            json!(" 192.168.200.1 "),
            json!("192.169.0.1"),
            json!("fe80::1"),
            json!("::1"),
            json!("8.8.8.8"),
            json!("not an address"),
            json!(10),
            json!(["8.8.8.8", "10.0.0.1"]),
            json!(null),
        ];
        let mut matched = 0;
        for address in addresses {
            let fields = json!({ "Ip": address }).as_object().cloned().unwrap();
            let view = FieldsView {
                fields: (&fields).into(),
                aliases: None,
                other_names: None,
                lowered: None,
            };
            let expected = alone.iter().any(|one| one.matches(&view));
            assert_eq!(merged.matches(&view), expected, "{address}");
            matched += usize::from(expected);
        }
        assert_eq!(matched, 5);
    }

    #[test]
    fn windash_regex_cidr_exists_and_fieldref() {
        let event =
            json!({"CommandLine": "ping \u{2014}n 1 host", "Ip": "10.1.2.3", "A": "x", "B": "X"});
        assert!(matches(
            "CommandLine|windash|contains",
            &[" -n "],
            event.clone()
        ));
        assert!(!matches("CommandLine|contains", &[" -n "], event.clone()));
        assert!(matches("CommandLine|re", &["p[iI]ng .n"], event.clone()));
        assert!(
            !matches("CommandLine|re", &["PING"], event.clone()),
            "re is case-sensitive"
        );
        assert!(matches("CommandLine|re|i", &["PING"], event.clone()));
        assert!(matches("Ip|cidr", &["10.0.0.0/8"], event.clone()));
        assert!(!matches("Ip|cidr", &["192.168.0.0/16"], event.clone()));
        assert!(matches("Missing|exists", &["false"], event.clone()));
        assert!(matches("Ip|exists", &["true"], event.clone()));
        assert!(matches("A|fieldref", &["B"], event.clone()));
        assert!(!matches("A|fieldref|cased", &["B"], event));
    }

    /// Each base64offset alternative occurs in the encoding of the value behind any
    /// prefix whose length has that offset, whatever follows.
    #[test]
    fn base64offset_alternatives_occur_at_every_alignment() {
        for value in ["IEX", "Invoke-Mimikatz", "ab", "/c ping 10.0.0.1"] {
            let alternatives = base64_offsets(value.as_bytes());
            for prefix_len in 0..9 {
                for suffix in ["", "x", "yz", " tail"] {
                    let mut bytes = vec![b'Q'; prefix_len];
                    bytes.extend_from_slice(value.as_bytes());
                    bytes.extend_from_slice(suffix.as_bytes());
                    let encoded = STANDARD.encode(&bytes);
                    assert!(
                        alternatives.iter().any(|a| encoded.contains(a.as_str())),
                        "{value:?} after {prefix_len} bytes then {suffix:?}: {encoded} lacks all of {alternatives:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn utf16_then_base64_matches_encoded_powershell() {
        let script = "IEX (New-Object Net.WebClient)";
        let encoded = STANDARD.encode(
            script
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>(),
        );
        let event = json!({"CommandLine": format!("powershell -enc {encoded}")});
        assert!(matches(
            "CommandLine|wide|base64offset|contains",
            &["New-Object Net.WebClient"],
            event.clone()
        ));
        assert!(!matches(
            "CommandLine|base64offset|contains",
            &["New-Object Net.WebClient"],
            event
        ));
    }

    #[test]
    fn unsupported_items_say_why() {
        let refused = compile_item(&item("CommandLine|expand", &["%x%"]), None).unwrap_err();
        assert!(refused.0.contains("expand"), "{refused:?}");
        let refused = compile_item(&item("CommandLine|re", &["("]), None).unwrap_err();
        assert!(refused.0.contains("regular expression"), "{refused:?}");
        let refused = compile_item(&item("Ip|cidr", &["10.0.0.0/40"]), None).unwrap_err();
        assert!(refused.0.contains("CIDR"), "{refused:?}");
    }
}
