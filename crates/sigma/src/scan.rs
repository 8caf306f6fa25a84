//! Finding rule literals in an event's lower-cased values, in one place for all rules.
//!
//! Most literals belong to one field (`CommandLine|contains: …`): they can only make a
//! rule possible when they occur in that field's value. So there is one Aho-Corasick
//! automaton per field rules name, run only over the values of that field (and of the
//! fields a logsource's aliases read it from), and one for keyword literals, run over
//! every value. A value no rule scopes a literal to (GUIDs, times, process ids) is not
//! searched for field literals at all, and each value is searched only for its own
//! field's literals rather than all ~20,000 of the SigmaHQ set.

use aho_corasick::automaton::Automaton;
use aho_corasick::{Anchored, MatchKind, StartKind, dfa, nfa};
use rustc_hash::FxHashMap;
use std::collections::HashMap;

/// Most literals a field's scanner searches with a DFA rather than an NFA.
const DFA_MAX_PATTERNS: usize = 16;

/// One automaton and, per pattern, the rule set's id of that literal.
struct Scanner {
    automaton: Walker,
    ids: Vec<u32>,
}

/// An automaton walked a byte at a time here: most values are a few dozen bytes, for
/// which the library's search (its set-up per call) cost more than the walk (a fifth
/// of the scanners' instructions); over all of an event's values at once (the keyword
/// scanner) the walk was also the faster, measured.
enum Walker {
    Dfa(dfa::DFA),
    Nfa(nfa::contiguous::NFA),
}

impl Scanner {
    /// `dfa`: search with a DFA, two to three times faster than an NFA while it is
    /// small (the keyword literals, over every value: 1.1 against 2.8 µs per event), but
    /// much slower to build: a field's scanner searches one short value, so it is an
    /// NFA unless tiny.
    fn build(mut patterns: Vec<(String, u32)>, dfa: bool) -> Result<Self, String> {
        patterns.sort();
        patterns.dedup();
        let texts = patterns.iter().map(|(text, _)| text);
        let error = |e: aho_corasick::BuildError| format!("literal automaton: {e}");
        let automaton = if dfa || patterns.len() <= DFA_MAX_PATTERNS {
            Walker::Dfa(
                dfa::DFA::builder()
                    .match_kind(MatchKind::Standard)
                    .start_kind(StartKind::Unanchored)
                    .prefilter(false)
                    .build(texts)
                    .map_err(error)?,
            )
        } else {
            Walker::Nfa(
                nfa::contiguous::NFA::builder()
                    .match_kind(MatchKind::Standard)
                    .prefilter(false)
                    .build(texts)
                    .map_err(error)?,
            )
        };
        Ok(Scanner {
            automaton,
            ids: patterns.into_iter().map(|(_, id)| id).collect(),
        })
    }

    /// Calls `hit` with the literal id and the end of every occurrence of a literal in
    /// `text` (overlapping ones too), in order of their ends.
    fn each(&self, text: &[u8], hit: &mut impl FnMut(u32, usize)) {
        match &self.automaton {
            Walker::Dfa(automaton) => walk(automaton, &self.ids, text, hit),
            Walker::Nfa(automaton) => walk(automaton, &self.ids, text, hit),
        }
    }
}

fn walk<A: Automaton>(automaton: &A, ids: &[u32], text: &[u8], hit: &mut impl FnMut(u32, usize)) {
    let Ok(mut state) = automaton.start_state(Anchored::No) else {
        return;
    };
    for (at, byte) in text.iter().enumerate() {
        state = automaton.next_state(Anchored::No, state, *byte);
        if automaton.is_special(state) {
            if automaton.is_dead(state) {
                return;
            }
            if automaton.is_match(state) {
                for index in 0..automaton.match_len(state) {
                    let pattern = automaton.match_pattern(state, index);
                    hit(ids[pattern.as_usize()], at + 1);
                }
            }
        }
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
    /// dotted UserData path). `keywords`: also search every value for the keyword
    /// literals (else the caller knows none occurs). Unsorted, possibly repeated.
    pub fn scan(
        &self,
        haystack: &str,
        values: &[Value<'_>],
        other_names: bool,
        keywords: bool,
        found: &mut Vec<(u32, u32)>,
    ) {
        let mut run = |scanners: &[u32], text: &str, value: u32| {
            for index in scanners {
                self.fields[*index as usize]
                    .each(text.as_bytes(), &mut |id, _| found.push((id, value)));
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
        if let Some(keywords) = self.keywords.as_ref().filter(|_| keywords) {
            // One pass over every value; literals hold no separator, so each occurrence
            // lies inside one value.
            keywords.each(haystack.as_bytes(), &mut |id, end| {
                // The occurrence's last byte is in the value it lies in.
                let last = end as u32 - 1;
                let position = values.partition_point(|value| value.end <= last);
                found.push((id, position as u32));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk finds what the library's overlapping search finds, DFA and NFA alike.
    #[test]
    fn the_walk_finds_every_occurrence_the_library_finds() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let alphabet = b"abc\\\\.e -";
        for round in 0..200 {
            let count = 1 + next(40) as usize;
            let patterns: Vec<(String, u32)> = (0..count)
                .map(|i| {
                    let len = 1 + next(5) as usize;
                    let text: String = (0..len)
                        .map(|_| char::from(alphabet[next(alphabet.len() as u64) as usize]))
                        .collect();
                    (text, 1000 + i as u32)
                })
                .collect();
            let text: String = (0..next(120))
                .map(|_| char::from(alphabet[next(alphabet.len() as u64) as usize]))
                .collect();
            for dfa in [true, false] {
                let scanner = Scanner::build(patterns.clone(), dfa).unwrap();
                let mut walked = Vec::new();
                scanner.each(text.as_bytes(), &mut |id, end| walked.push((id, end)));
                let mut sorted = patterns.clone();
                sorted.sort();
                sorted.dedup();
                let library =
                    aho_corasick::AhoCorasick::new(sorted.iter().map(|(t, _)| t)).unwrap();
                let mut expected: Vec<(u32, usize)> = library
                    .find_overlapping_iter(&text)
                    .map(|m| (sorted[m.pattern().as_usize()].1, m.end()))
                    .collect();
                expected.sort_by_key(|(id, end)| (*end, *id));
                walked.sort_by_key(|(id, end)| (*end, *id));
                assert_eq!(walked, expected, "round {round}, dfa {dfa}: {text:?}");
            }
        }
    }
}
