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

/// One value of an event in the haystack: its byte range, its field's name, and its
/// field's scanner set ([`Scanners::set_of`]) when the caller knows it, else
/// [`SET_BY_NAME`].
pub(crate) struct Value<'a> {
    pub start: u32,
    pub end: u32,
    pub name: &'a str,
    pub set: u32,
}

/// A [`Value`]'s scanners are to be looked up by its name.
pub(crate) const SET_BY_NAME: u32 = u32::MAX;
/// No scanner searches a field of this name.
pub(crate) const NO_SET: u32 = u32::MAX - 1;

#[derive(Default)]
pub(crate) struct Scanners {
    /// One per field rules scope literals to.
    fields: Vec<Scanner>,
    /// An event's field name → the index in `sets` of the scanners to run over its
    /// values: the field's own, and those of rule fields a logsource alias reads from it.
    by_name: FxHashMap<Box<str>, u32>,
    sets: Vec<Vec<u32>>,
    /// Per set, the scanner of the field named as the set's name (if rules name it).
    own: Vec<Option<u32>>,
    /// Keyword literals (no field): run over every value.
    keywords: Option<Scanner>,
    /// Tells these scanners' results in a thread's [`ScanMemo`] from another set's.
    generation: u64,
}

/// Marks, in a found (literal id, value index), a value of the literal's own field.
pub(crate) const OWN_FIELD: u32 = 1 << 31;

/// Values longer than this are scanned every time, not remembered.
const MEMO_MAX_TEXT: usize = 512;
/// Values remembered per thread; the memo starts afresh when it is full.
const MEMO_ENTRIES: usize = 16 * 1024;
/// Bytes remembered per thread (texts, ids and an estimate of the map's own), at most.
const MEMO_MAX_BYTES: usize = 8 << 20;

/// What one thread's scans found in the values it saw last: logs repeat the same
/// images, command lines, registry keys and services over and over, and a value seen
/// before is looked up rather than walked through each of its field's automata again.
/// Bounded: [`MEMO_ENTRIES`] values of at most [`MEMO_MAX_TEXT`] bytes, and
/// [`MEMO_MAX_BYTES`] in all.
#[derive(Default)]
pub(crate) struct ScanMemo {
    generation: u64,
    /// Hash of (scanner set, text) → what was found.
    entries: FxHashMap<u64, Remembered>,
    /// What `entries` holds, estimated as [`MEMO_MAX_BYTES`] counts it.
    bytes: usize,
    /// Ids of the value being scanned.
    ids: Vec<u32>,
}

/// A scanned value, in one allocation (one cache line for most, read on every lookup):
/// its scanner set and id count (`u32`s, little-endian), the literal ids found in it,
/// then its text.
type Remembered = Box<[u8]>;

/// A remembered value's bytes besides its text and ids: the map's slot (key and box),
/// its control byte and the set and count, rounded up for the allocator.
const MEMO_ENTRY_BYTES: usize = 48;

/// `ids` found in `text` of scanner set `set`, as remembered.
fn remember(set: u32, text: &str, ids: &[u32]) -> Remembered {
    let mut entry = Vec::with_capacity(8 + 4 * ids.len() + text.len());
    entry.extend_from_slice(&set.to_le_bytes());
    entry.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        entry.extend_from_slice(&id.to_le_bytes());
    }
    entry.extend_from_slice(text.as_bytes());
    entry.into_boxed_slice()
}

/// The ids remembered for `text` of scanner set `set`, if `entry` is that value's.
fn recall<'e>(entry: &'e [u8], set: u32, text: &str) -> Option<&'e [[u8; 4]]> {
    let word = |at: usize| Some(u32::from_le_bytes(entry.get(at..at + 4)?.try_into().ok()?));
    if word(0)? != set {
        return None;
    }
    let ids_end = 8 + 4 * word(4)? as usize;
    (entry.get(ids_end..)? == text.as_bytes()).then_some(entry.get(8..ids_end)?.as_chunks().0)
}

impl ScanMemo {
    fn key(set: u32, text: &str) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut hasher = rustc_hash::FxBuildHasher.build_hasher();
        set.hash(&mut hasher);
        hasher.write(text.as_bytes());
        hasher.finish()
    }
}

impl Scanners {
    /// Which rule set these scanners belong to (no two share one).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The scanner set for values of the field `name`, or [`NO_SET`].
    pub fn set_of(&self, name: &str) -> u32 {
        self.by_name.get(name).copied().unwrap_or(NO_SET)
    }

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
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut scanners = Scanners {
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ..Scanners::default()
        };
        let mut by_name: FxHashMap<Box<str>, Vec<u32>> = FxHashMap::default();
        let mut index_of: HashMap<&str, u32> = HashMap::new();
        let mut fields: Vec<_> = by_field.into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let names: Vec<&str> = fields.iter().map(|(field, _)| *field).collect();
        let patterns = fields.into_iter().map(|(_, patterns)| patterns).collect();
        scanners.fields = build_all(patterns)?;
        for (index, field) in names.into_iter().enumerate() {
            index_of.insert(field, index as u32);
            by_name.entry(field.into()).or_default().push(index as u32);
        }
        for (rule_name, event_name) in aliases {
            if let Some(index) = index_of.get(rule_name) {
                let list = by_name.entry(event_name.into()).or_default();
                if !list.contains(index) {
                    list.push(*index);
                }
            }
        }
        for (name, set) in by_name {
            scanners
                .by_name
                .insert(name.clone(), scanners.sets.len() as u32);
            scanners.own.push(index_of.get(&*name).copied());
            scanners.sets.push(set);
        }
        if !keyword_patterns.is_empty() {
            scanners.keywords = Some(Scanner::build(keyword_patterns, true)?);
        }
        Ok(scanners)
    }

    /// Adds to `found` every (literal id, value index) where a literal occurs in a value
    /// it may count in; the index has [`OWN_FIELD`] set when the value's name is the
    /// literal's field (or the literal is a keyword). `other_names`: also search each value for the literals of the
    /// other names rules may give its field (without spaces, or the last part of a
    /// dotted UserData path). `keywords`: also search every value for the keyword
    /// literals (else the caller knows none occurs). Unsorted, possibly repeated.
    /// `memo`: this thread's values seen before.
    pub fn scan(
        &self,
        haystack: &str,
        values: &[Value<'_>],
        other_names: bool,
        keywords: bool,
        memo: &mut ScanMemo,
        found: &mut Vec<(u32, u32)>,
    ) {
        if memo.generation != self.generation {
            memo.entries.clear();
            memo.bytes = 0;
            memo.generation = self.generation;
        }
        // `own`: the set is the value's own name's (not another name of its field), so
        // its own field's literals are marked. Ids carry that mark in the memo.
        let mut run = |set: u32, text: &str, value: u32, own: bool| {
            let scanners = &self.sets[set as usize];
            let own_scanner = self.own[set as usize];
            let walk = |hit: &mut dyn FnMut(u32)| {
                for index in scanners {
                    let mark = if Some(*index) == own_scanner {
                        OWN_FIELD
                    } else {
                        0
                    };
                    self.fields[*index as usize].each(text.as_bytes(), &mut |id, _| hit(id | mark));
                }
            };
            let emit = |id: u32| {
                let mark = if own { id & OWN_FIELD } else { 0 };
                (id & !OWN_FIELD, value | mark)
            };
            if text.len() > MEMO_MAX_TEXT {
                return walk(&mut |id| found.push(emit(id)));
            }
            let key = ScanMemo::key(set, text);
            if let Some(ids) = memo
                .entries
                .get(&key)
                .and_then(|entry| recall(entry, set, text))
            {
                found.extend(ids.iter().map(|id| emit(u32::from_le_bytes(*id))));
                return;
            }
            memo.ids.clear();
            walk(&mut |id| memo.ids.push(id));
            memo.ids.sort_unstable();
            memo.ids.dedup();
            found.extend(memo.ids.iter().map(|id| emit(*id)));
            let bytes = text.len() + 4 * memo.ids.len() + MEMO_ENTRY_BYTES;
            if memo.entries.len() >= MEMO_ENTRIES || memo.bytes + bytes > MEMO_MAX_BYTES {
                memo.entries.clear();
                memo.bytes = 0;
            }
            memo.bytes += bytes;
            memo.entries.insert(key, remember(set, text, &memo.ids));
        };
        for (position, value) in values.iter().enumerate() {
            let text = &haystack[value.start as usize..value.end as usize];
            if text.is_empty() {
                continue;
            }
            let set = match value.set {
                SET_BY_NAME => self.set_of(value.name),
                set => set,
            };
            if set != NO_SET {
                run(set, text, position as u32, true);
            }
            if other_names {
                let leaf = value.name.rsplit('.').next().unwrap_or(value.name);
                for name in [
                    value.name.replace(' ', ""),
                    leaf.to_string(),
                    leaf.replace(' ', ""),
                ] {
                    if name != value.name
                        && let Some(set) = self.by_name.get(name.as_str())
                    {
                        run(*set, text, position as u32, false);
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
                found.push((id, position as u32 | OWN_FIELD));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a thread remembers changes nothing: the same values scanned again, under
    /// another field, or by another rule set through the same memo, find what a fresh
    /// memo (a walk through the automata) finds.
    #[test]
    fn remembered_values_find_what_a_walk_finds() {
        let build = |texts: &[(&'static str, &'static str, u32)]| {
            Scanners::build(
                texts.iter().map(|(field, text, id)| {
                    let field = (!field.is_empty()).then_some(*field);
                    (field, text.to_string(), *id)
                }),
                [("Image", "NewProcessName")],
            )
            .unwrap()
        };
        let first = build(&[
            ("Image", "\\cmd.exe", 1),
            ("Image", "cmd", 2),
            ("CommandLine", "cmd", 3),
            ("CommandLine", "/c whoami", 4),
        ]);
        let second = build(&[("Image", "whoami", 7), ("CommandLine", "cmd", 8)]);
        let events: [&[(&str, &str)]; 4] = [
            &[("Image", "c:\\cmd.exe"), ("CommandLine", "cmd /c whoami")],
            &[
                ("CommandLine", "c:\\cmd.exe"),
                ("NewProcessName", "c:\\cmd.exe"),
            ],
            &[
                ("Image", "c:\\cmd.exe"),
                ("Image", "whoami.exe"),
                ("User", "cmd"),
            ],
            &[("CommandLine", "cmd /c whoami"), ("Image", "c:\\cmd.exe")],
        ];
        let scan = |scanners: &Scanners, event: &[(&str, &str)], memo: &mut ScanMemo| {
            let mut haystack = String::new();
            let mut values = Vec::new();
            for (at, (name, text)) in event.iter().enumerate() {
                let start = haystack.len() as u32;
                haystack.push_str(text);
                // Scanners looked up by name, or given as a template's layout gives them.
                let set = if at % 2 == 0 {
                    SET_BY_NAME
                } else {
                    scanners.set_of(name)
                };
                values.push(Value {
                    start,
                    end: haystack.len() as u32,
                    name,
                    set,
                });
                haystack.push('\u{1}');
            }
            let mut found = Vec::new();
            scanners.scan(&haystack, &values, false, false, memo, &mut found);
            found.sort_unstable();
            found.dedup();
            found
        };
        let mut memo = ScanMemo::default();
        for round in 0..3 {
            for (index, event) in events.iter().enumerate() {
                for scanners in [&first, &second] {
                    // Each value on its own, with nothing remembered.
                    let mut fresh: Vec<(u32, u32)> = (0..event.len())
                        .flat_map(|at| {
                            scan(scanners, &event[at..=at], &mut ScanMemo::default())
                                .into_iter()
                                .map(move |(id, value)| (id, at as u32 | (value & OWN_FIELD)))
                        })
                        .collect();
                    fresh.sort_unstable();
                    let remembered = scan(scanners, event, &mut memo);
                    assert_eq!(remembered, fresh, "round {round}, event {index}");
                }
            }
        }
        // The walk itself: both ends of `cmd.exe` and the command, in their own fields;
        // `cmd.exe` under a name `Image` is read from, not marked as its own field.
        let found = scan(&first, events[0], &mut memo);
        let own = OWN_FIELD;
        assert_eq!(found, vec![(1, own), (2, own), (3, 1 | own), (4, 1 | own)]);
        let found = scan(&first, events[1], &mut memo);
        assert_eq!(found, vec![(1, 1), (2, 1), (3, own)]);
    }

    /// A remembered value gives its ids back only for its own set and very text.
    #[test]
    fn a_remembered_value_is_recalled_only_for_its_set_and_text() {
        let entry = remember(3, "cmd.exe /c", &[5, 1 << 31 | 7]);
        let ids = |found: Option<&[[u8; 4]]>| {
            found.map(|ids| {
                ids.iter()
                    .map(|id| u32::from_le_bytes(*id))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            ids(recall(&entry, 3, "cmd.exe /c")),
            Some(vec![5, 1 << 31 | 7])
        );
        for (set, text) in [
            (4, "cmd.exe /c"),
            (3, "cmd.exe /C"),
            (3, "cmd.exe"),
            (3, "cmd.exe /c "),
        ] {
            assert_eq!(recall(&entry, set, text), None, "{set} {text:?}");
        }
        let empty = remember(0, "", &[]);
        assert_eq!(ids(recall(&empty, 0, "")), Some(vec![]));
        assert_eq!(recall(&empty, 0, "x"), None);
        assert_eq!(recall(&entry[..6], 3, ""), None, "a cut entry is no entry");
    }

    /// The memo stays within its bounds however many distinct values it meets, and
    /// what it finds does not change when it starts afresh.
    #[test]
    fn the_memo_stays_bounded_and_right_when_it_starts_afresh() {
        let scanners = Scanners::build(
            [(Some("CommandLine"), "needle".to_string(), 1)],
            std::iter::empty(),
        )
        .unwrap();
        let mut memo = ScanMemo::default();
        let filler = "x".repeat(480);
        let mut cleared = false;
        for i in 0..20_000u32 {
            let text = if i % 3 == 0 {
                format!("{i} needle {filler}")
            } else {
                format!("{i} {filler}")
            };
            let values = [Value {
                start: 0,
                end: text.len() as u32,
                name: "CommandLine",
                set: SET_BY_NAME,
            }];
            let before = memo.entries.len();
            let mut found = Vec::new();
            scanners.scan(&text, &values, false, false, &mut memo, &mut found);
            // Emptied before it held its most values: by the byte bound.
            cleared |= memo.entries.len() < before && before < MEMO_ENTRIES - 1;
            let expected = if i % 3 == 0 {
                vec![(1, OWN_FIELD)]
            } else {
                vec![]
            };
            assert_eq!(found, expected, "value {i}");
            assert!(memo.bytes <= MEMO_MAX_BYTES && memo.entries.len() <= MEMO_ENTRIES);
        }
        assert!(cleared, "16,000 values of ~500 bytes exceed the byte bound");
    }

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
