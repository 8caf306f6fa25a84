//! Finding rule literals in an event's lower-cased values, in one place for all rules.
//!
//! Most literals belong to one field (`CommandLine|contains: …`): they can only make a
//! rule possible when they occur in that field's value. So there is one Aho-Corasick
//! automaton per field rules name, run only over the values of that field (and of the
//! fields a logsource's aliases read it from), and one for keyword literals, run over
//! every value. A value no rule scopes a literal to (GUIDs, times, process ids) is not
//! searched for field literals at all, and each value is searched only for its own
//! field's literals rather than all ~20,000 of the SigmaHQ set.

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use rustc_hash::FxHashMap;
use std::collections::HashMap;

/// Most literals a field's scanner searches with a DFA rather than an NFA.
const DFA_MAX_PATTERNS: usize = 16;

/// One automaton and, per pattern, the rule set's id of that literal.
struct Scanner {
    automaton: AhoCorasick,
    ids: Vec<u32>,
}

impl Scanner {
    /// `dfa`: search with a DFA, two to three times faster than an NFA while it is
    /// small (the keyword literals, over every value: 1.1 against 2.8 µs per event), but
    /// much slower to build: a field's scanner searches one short value, so it is an
    /// NFA unless tiny.
    fn build(mut patterns: Vec<(String, u32)>, dfa: bool) -> Result<Self, String> {
        patterns.sort();
        patterns.dedup();
        let kind = if dfa || patterns.len() <= DFA_MAX_PATTERNS {
            AhoCorasickKind::DFA
        } else {
            AhoCorasickKind::ContiguousNFA
        };
        let automaton = AhoCorasick::builder()
            .kind(Some(kind))
            .build(patterns.iter().map(|(text, _)| text))
            .map_err(|e| format!("literal automaton: {e}"))?;
        Ok(Scanner {
            automaton,
            ids: patterns.into_iter().map(|(_, id)| id).collect(),
        })
    }
}

/// A scanner's literals (lower-cased text, literal id).
type Patterns = Vec<(String, u32)>;

/// Builds the scanners of `fields` (in order) on every core: a few hundred independent
/// automata, most of the time a rule set takes to index.
fn build_all(fields: Vec<Patterns>) -> Result<Vec<Scanner>, String> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    // Interleaved, so each worker gets big and small fields alike.
    let mut shares: Vec<Vec<(usize, Patterns)>> = vec![Vec::new(); workers];
    for (index, patterns) in fields.into_iter().enumerate() {
        shares[index % workers].push((index, patterns));
    }
    let built: Vec<Result<Vec<(usize, Scanner)>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share
                        .into_iter()
                        .map(|(index, patterns)| Ok((index, Scanner::build(patterns, false)?)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err("literal automaton: a builder crashed".into()))
            })
            .collect()
    });
    let mut all = Vec::new();
    for share in built {
        all.extend(share?);
    }
    all.sort_by_key(|(index, _)| *index);
    Ok(all.into_iter().map(|(_, scanner)| scanner).collect())
}

/// One value of an event in the haystack: its byte range and its field's name.
pub(crate) struct Value<'a> {
    pub start: u32,
    pub end: u32,
    pub name: &'a str,
}

#[derive(Default)]
pub(crate) struct Scanners {
    /// One per field rules scope literals to.
    fields: Vec<Scanner>,
    /// An event's field name → the scanners to run over its values: the field's own,
    /// and those of rule fields a logsource alias reads from it.
    by_name: FxHashMap<Box<str>, Vec<u32>>,
    /// Keyword literals (no field): run over every value.
    keywords: Option<Scanner>,
}

impl Scanners {
    /// `literals`: (field as rules name it, or `None` for any value; lower-cased text;
    /// id). `aliases`: (rule field name, event field name) pairs of every logsource.
    pub fn build<'a>(
        literals: impl IntoIterator<Item = (Option<&'a str>, String, u32)>,
        aliases: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut keyword_patterns = Vec::new();
        let mut by_field: HashMap<&str, Vec<(String, u32)>> = HashMap::new();
        for (field, text, id) in literals {
            match field {
                Some(field) => by_field.entry(field).or_default().push((text, id)),
                None => keyword_patterns.push((text, id)),
            }
        }
        let mut scanners = Scanners::default();
        let mut index_of: HashMap<&str, u32> = HashMap::new();
        let mut fields: Vec<_> = by_field.into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let names: Vec<&str> = fields.iter().map(|(field, _)| *field).collect();
        let patterns = fields.into_iter().map(|(_, patterns)| patterns).collect();
        scanners.fields = build_all(patterns)?;
        for (index, field) in names.into_iter().enumerate() {
            index_of.insert(field, index as u32);
            scanners
                .by_name
                .entry(field.into())
                .or_default()
                .push(index as u32);
        }
        for (rule_name, event_name) in aliases {
            if let Some(index) = index_of.get(rule_name) {
                let list = scanners.by_name.entry(event_name.into()).or_default();
                if !list.contains(index) {
                    list.push(*index);
                }
            }
        }
        if !keyword_patterns.is_empty() {
            scanners.keywords = Some(Scanner::build(keyword_patterns, true)?);
        }
        Ok(scanners)
    }

    /// Adds to `found` every (literal id, value index) where a literal occurs in a value
    /// it may count in. `other_names`: also search each value for the literals of the
    /// other names rules may give its field (without spaces, or the last part of a
    /// dotted UserData path). Unsorted, possibly repeated.
    pub fn scan(
        &self,
        haystack: &str,
        values: &[Value<'_>],
        other_names: bool,
        found: &mut Vec<(u32, u32)>,
    ) {
        let mut run = |scanners: &[u32], text: &str, value: u32| {
            for index in scanners {
                let scanner = &self.fields[*index as usize];
                for occurrence in scanner.automaton.find_overlapping_iter(text) {
                    found.push((scanner.ids[occurrence.pattern().as_usize()], value));
                }
            }
        };
        for (position, value) in values.iter().enumerate() {
            let text = &haystack[value.start as usize..value.end as usize];
            if text.is_empty() {
                continue;
            }
            if let Some(scanners) = self.by_name.get(value.name) {
                run(scanners, text, position as u32);
            }
            if other_names {
                let leaf = value.name.rsplit('.').next().unwrap_or(value.name);
                for name in [
                    value.name.replace(' ', ""),
                    leaf.to_string(),
                    leaf.replace(' ', ""),
                ] {
                    if name != value.name
                        && let Some(scanners) = self.by_name.get(name.as_str())
                    {
                        run(scanners, text, position as u32);
                    }
                }
            }
        }
        if let Some(keywords) = &self.keywords {
            // One pass over every value; literals hold no separator, so each occurrence
            // lies inside one value.
            for occurrence in keywords.automaton.find_overlapping_iter(haystack) {
                let start = occurrence.start() as u32;
                let position = values.partition_point(|value| value.end <= start);
                found.push((
                    keywords.ids[occurrence.pattern().as_usize()],
                    position as u32,
                ));
            }
        }
    }
}
