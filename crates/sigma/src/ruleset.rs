//! A set of loaded rules: every document of every file either becomes a rule or a
//! refusal with its reason; rules are indexed by (channel, event ID) so an event is only
//! tested against the rules of its logsource, and rules with literal requirements are
//! skipped when none of their literals occurs in the event.

use crate::compile::{Literal, Program, compile};
use crate::fields::FieldsView;
use crate::logsource::{LogsourceMapping, Scope, describe};
use casescope_evidence::{FieldName, Fields};
use rsigma_parser::{SigmaRule, parse_sigma_yaml};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type FxHashMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// Largest rule file read (SigmaHQ's largest is a few tens of KiB).
pub const MAX_RULE_FILE_BYTES: u64 = 1024 * 1024;

/// What an analyst sees of a rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleMeta {
    pub id: String,
    /// The rule's `name` (what correlation rules may reference it by).
    pub name: Option<String>,
    pub title: String,
    pub status: Option<String>,
    pub level: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub tags: Vec<String>,
    /// ATT&CK tactics (`attack.execution` → `execution`).
    pub tactics: Vec<String>,
    /// ATT&CK techniques (`attack.t1059.001` → `T1059.001`).
    pub techniques: Vec<String>,
    pub references: Vec<String>,
    pub falsepositives: Vec<String>,
    pub logsource: String,
    pub product: Option<String>,
    pub category: Option<String>,
    pub service: Option<String>,
    /// The Sigma `date` and `modified` fields as written.
    pub date: Option<String>,
    pub modified: Option<String>,
    /// Where the rule came from (file, and `#n` for the n-th document of a file).
    pub source: String,
    /// SHA-256 of the rule's YAML (of its file and document index when the file holds
    /// several): changes when the rule does.
    pub content_hash: String,
}

/// A document that did not become a rule, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub source: String,
    pub id: Option<String>,
    pub title: Option<String>,
    pub reason: String,
}

pub struct Rule {
    pub meta: RuleMeta,
    program: Program,
    scope: Scope,
    /// Per required detection item: literals one of which must occur in the event (in
    /// the value of its field, when it has one).
    literals: Vec<Vec<Literal>>,
    /// The same, as ids into the rule set's literal automaton.
    literal_ids: Vec<Vec<LiteralRef>>,
    /// Event IDs one of which the event's `EventID` field must hold for the rule to
    /// match, as its detection says (`None`: any).
    codes: Option<Vec<u32>>,
}

/// The field whose required values index rules next to their logsource.
const CODE_FIELD: &str = "EventID";

impl Rule {
    /// The event fields the rule's detection tests (Sigma names, before renames).
    pub fn field_names(&self) -> Vec<String> {
        self.program.field_names()
    }

    /// The fields of `fields` this rule tests, with their values as text (each at most
    /// `max_value_bytes`, cut on a character boundary): what made a match, for analysts.
    pub fn matched_fields(
        &self,
        fields: &serde_json::Map<String, serde_json::Value>,
        max_value_bytes: usize,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for name in self.program.field_names() {
            let mut candidates = vec![name.clone()];
            if let Scope::Targets(targets) = &self.scope {
                for target in targets {
                    if let Some(renamed) = target.aliases.get(&name)
                        && !candidates.contains(renamed)
                    {
                        candidates.push(renamed.clone());
                    }
                }
            }
            for candidate in candidates {
                let value = fields.get(&candidate).or_else(|| {
                    fields
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(&candidate))
                        .map(|(_, value)| value)
                });
                let Some(value) = value else { continue };
                let text = match crate::fields::FieldValue::of(value).text() {
                    Some(text) => text.into_owned(),
                    None => value.to_string(),
                };
                let mut cut = text.len().min(max_value_bytes);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                if !out.iter().any(|(field, _)| *field == candidate) {
                    out.push((candidate, text[..cut].to_string()));
                }
                break;
            }
        }
        out
    }

    /// How many literal sets prefilter this rule (0: evaluated on every event of its
    /// logsource).
    pub fn literal_groups_len(&self) -> usize {
        self.literals.len()
    }
}

/// An event as rules see it.
pub struct EventRef<'a> {
    pub channel: Option<&'a str>,
    pub event_code: Option<u32>,
    pub fields: Fields<'a>,
}

type Aliases = Arc<crate::logsource::Aliases>;

/// A rule literal as the automaton knows it, and the field (as the rule names it) whose
/// value must hold it; `None`: any value.
#[derive(Debug, Clone)]
struct LiteralRef {
    id: u32,
    field: Option<Arc<str>>,
}

/// The rules to test for one logsource key (a channel and event ID, a channel, or every
/// event), in rule order, each with the field renames of that logsource, and which of
/// them each literal can make possible.
#[derive(Default)]
struct Candidates {
    entries: Vec<(usize, Aliases)>,
    /// Per entry, the range of `requirements` holding its rule's literal groups.
    required: Vec<(u32, u32)>,
    /// The entries' literal groups, side by side (read for every candidate, so kept
    /// together rather than behind each rule's pointers): literal ids, the last of each
    /// group marked with [`GROUP_END`].
    requirements: Vec<u32>,
    /// Positions of entries whose rule has no literal requirement: tested on every event.
    unfiltered: Vec<u32>,
    /// Literal id → positions of the entries whose rule requires it (in its smallest
    /// group).
    by_literal: FxHashMap<u32, Vec<u32>>,
    /// Whether an event of this list needs the keyword scan (see [`KeywordGate`]).
    keywords: KeywordGate,
}

/// Whether the keyword literals (searched in every value) of a candidate list's rules
/// can occur in an event. The keyword automaton walks every byte of every value, yet
/// most events hold none of the few keywords their rules look for (SigmaHQ's
/// Mimikatz-keywords rule applies to every Windows event): a packed (SIMD) search for
/// the list's keywords tells, and the walk is skipped when it finds none.
#[derive(Default)]
enum KeywordGate {
    /// No rule of the list has keyword literals.
    #[default]
    None,
    /// The list's keyword literals, searched together.
    Gate(aho_corasick::packed::Searcher),
    /// Too many keywords (or no packed search on this CPU): always scanned.
    Always,
}

impl KeywordGate {
    fn new<'a>(keywords: impl IntoIterator<Item = &'a str>) -> KeywordGate {
        let mut keywords: Vec<&str> = keywords.into_iter().collect();
        if keywords.is_empty() {
            return KeywordGate::None;
        }
        keywords.sort_unstable();
        keywords.dedup();
        match aho_corasick::packed::Config::new()
            .builder()
            .extend(keywords)
            .build()
        {
            Some(searcher) => KeywordGate::Gate(searcher),
            None => KeywordGate::Always,
        }
    }

    /// False only if none of the list's keyword literals occurs in `haystack`.
    fn may_occur(&self, haystack: &str) -> bool {
        match self {
            KeywordGate::None => false,
            KeywordGate::Gate(searcher) => searcher.find(haystack).is_some(),
            KeywordGate::Always => true,
        }
    }
}

/// Marks the last literal id of a group in [`Candidates::requirements`].
const GROUP_END: u32 = 1 << 31;
use crate::scan::OWN_FIELD;

impl Candidates {
    fn push(&mut self, rule: usize, aliases: Aliases) {
        self.entries.push((rule, aliases));
    }

    /// Fills `unfiltered`, `by_literal` and `keywords` from the rules' literal ids
    /// (`texts`: each literal id's text).
    fn index_literals(&mut self, rules: &[Rule], texts: &[String]) {
        self.unfiltered.clear();
        self.by_literal.clear();
        self.required.clear();
        self.requirements.clear();
        for (rule, _) in &self.entries {
            let start = self.requirements.len() as u32;
            for group in &rules[*rule].literal_ids {
                let ids = group.iter().map(|literal| literal.id);
                self.requirements.extend(ids);
                if let Some(last) = self.requirements.last_mut()
                    && !group.is_empty()
                {
                    *last |= GROUP_END;
                }
            }
            self.required.push((start, self.requirements.len() as u32));
        }
        self.keywords = KeywordGate::new(self.entries.iter().flat_map(|(rule, _)| {
            rules[*rule]
                .literal_ids
                .iter()
                .flatten()
                .filter(|literal| literal.field.is_none())
                .map(|literal| texts[literal.id as usize].as_str())
        }));
        for (position, (rule, _)) in self.entries.iter().enumerate() {
            let position = position as u32;
            let rule = &rules[*rule];
            if rule.literal_ids.is_empty() {
                self.unfiltered.push(position);
                continue;
            }
            // A rule can only match when each of its groups has a literal present: it
            // is looked at when one of its most selective group's literals is.
            let best = (0..rule.literal_ids.len()).min_by_key(|group| {
                crate::compile::unselectiveness(&rule.literals[*group], |(_, text)| {
                    literal_piece(text).len()
                })
            });
            for literal in best.into_iter().flat_map(|group| &rule.literal_ids[group]) {
                let positions = self.by_literal.entry(literal.id).or_default();
                if positions.last() != Some(&position) {
                    positions.push(position);
                }
            }
        }
    }
}

/// Whether a literal occurs in an event's values.
#[derive(Clone, Copy, PartialEq, Default)]
enum Presence {
    #[default]
    Absent,
    /// In a value of the literal's own field (or anywhere, for a keyword literal).
    OwnField,
    /// Only in values of other names (a field some logsource reads the literal's from).
    Elsewhere,
}

/// Per-thread buffers of [`RuleSet::evaluate`], reused from event to event.
#[derive(Default)]
struct Scratch {
    /// The event's values, lower-cased, each followed by `\u{1}`.
    haystack: String,
    /// Whether each literal occurs in the haystack; only the ids in `hits` are set.
    present: Vec<Presence>,
    hits: Vec<u32>,
    /// Every occurrence: (literal id, index of the value it is in), sorted.
    found: Vec<(u32, u32)>,
    /// Entry positions of one candidate list to test.
    positions: Vec<u32>,
    /// The values this thread scanned before, and what was found in them.
    memo: crate::scan::ScanMemo,
}

/// Layouts kept per thread; all are dropped when one more is met.
const MAX_LAYOUTS: usize = 64;

/// The field orders of the templates a thread met last, each with its names indexed:
/// the records of one template name the same fields in the same order (the very same
/// name strings, which the layout holds), so the index is made once, not per event.
#[derive(Default)]
struct Layouts {
    entries: Vec<Layout>,
}

/// What a template's field names tell, worked out once: the names (held, so they stay
/// the same strings), their positions, whether one has other names for rules, and
/// each one's literal scanners in the rule set of `generation`.
struct Layout {
    names: Vec<FieldName>,
    index: FxHashMap<Box<str>, u32>,
    other_names: bool,
    sets: Vec<u32>,
    generation: u64,
}

impl Layouts {
    /// The layout of `pairs`, with its scanners those of `scanners`.
    fn get(
        &mut self,
        pairs: &[(FieldName, serde_json::Value)],
        scanners: Option<&crate::scan::Scanners>,
    ) -> &Layout {
        // The same strings: templates differ in their data names, which come last.
        let same = |names: &[FieldName]| {
            names.len() == pairs.len()
                && names.iter().zip(pairs).rev().all(|(known, (name, _))| {
                    std::ptr::eq(known.as_ptr(), name.as_ptr()) && known.len() == name.len()
                })
        };
        let found = self.entries.iter().position(|layout| same(&layout.names));
        let position = match found {
            Some(position) => position,
            None => {
                if self.entries.len() >= MAX_LAYOUTS {
                    self.entries.clear();
                }
                let names: Vec<FieldName> = pairs.iter().map(|(name, _)| name.clone()).collect();
                let mut index = FxHashMap::default();
                for (position, name) in names.iter().enumerate() {
                    index.entry(Box::from(&**name)).or_insert(position as u32);
                }
                self.entries.push(Layout {
                    other_names: crate::fields::has_other_names(Fields::Pairs(pairs)),
                    names,
                    index,
                    sets: Vec::new(),
                    generation: 0,
                });
                self.entries.len() - 1
            }
        };
        let layout = &mut self.entries[position];
        if let Some(scanners) = scanners
            && layout.generation != scanners.generation()
        {
            layout.sets = layout
                .names
                .iter()
                .map(|name| scanners.set_of(name))
                .collect();
            layout.generation = scanners.generation();
        }
        layout
    }
}

thread_local! {
    static LAYOUTS: std::cell::RefCell<Layouts> = std::cell::RefCell::new(Layouts::default());
}

impl Scratch {
    fn reset(&mut self, literal_count: usize) {
        for id in self.hits.drain(..) {
            if let Some(slot) = self.present.get_mut(id as usize) {
                *slot = Presence::Absent;
            }
        }
        if self.present.len() < literal_count {
            self.present.resize(literal_count, Presence::Absent);
        }
        self.haystack.clear();
        self.positions.clear();
        self.found.clear();
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Longest prefix of a literal the automaton searches for (bytes).
const MAX_LITERAL_PIECE: usize = 16;

/// The end of `literal`, at most [`MAX_LITERAL_PIECE`] bytes, cut on a character
/// boundary: the end is the telling part of paths (`c:\windows\system32\tasks\`,
/// `…\service.exe`), whose starts many values share.
fn literal_piece(literal: &str) -> &str {
    let mut start = literal.len().saturating_sub(MAX_LITERAL_PIECE);
    while !literal.is_char_boundary(start) {
        start += 1;
    }
    &literal[start..]
}

#[derive(Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Each literal id's field as rules name it (`None`: a keyword literal).
    literal_fields: Vec<Option<Arc<str>>>,
    pub refused: Vec<Refusal>,
    /// lower-case channel → event ID → (rule, aliases).
    /// (The channel maps are keyed by the rules' channels and looked up once per event
    /// each: a fast hash.)
    by_event: FxHashMap<String, FxHashMap<u32, Candidates>>,
    /// lower-case channel → rules for every event of the channel.
    by_channel: FxHashMap<String, Candidates>,
    /// lower-case channel → `EventID` field value → rules for every event of the
    /// channel whose detection requires that event ID.
    by_channel_code: FxHashMap<String, FxHashMap<u32, Candidates>>,
    /// Rules for every event (no aliases).
    everywhere: Candidates,
    /// `EventID` field value → rules for every event whose detection requires it.
    everywhere_by_code: FxHashMap<u32, Candidates>,
    /// Correlation rules, resolved against `rules`.
    pub correlations: Vec<crate::correlation::Correlation>,
    /// Correlation documents waiting for every rule to load.
    pending_correlations: Vec<(String, rsigma_parser::CorrelationRule)>,
    /// Every rule literal, found in the values it may count in.
    scanners: Option<crate::scan::Scanners>,
    literal_count: usize,
}

/// A rule source's YAML: its text, or the file to read it from.
enum Body {
    Text(String),
    File(PathBuf),
}

/// A rule file's text, bounded by [`MAX_RULE_FILE_BYTES`]; why not, as a refusal says it.
fn read_rule_file(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|error| format!("cannot read: {error}"))?;
    let size = file
        .metadata()
        .map_err(|error| format!("cannot read: {error}"))?
        .len();
    if size > MAX_RULE_FILE_BYTES {
        return Err(format!(
            "{size} bytes; rule files are at most {MAX_RULE_FILE_BYTES}"
        ));
    }
    let mut text = String::with_capacity(size as usize);
    file.take(MAX_RULE_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|error| format!("cannot read as UTF-8 text: {error}"))?;
    Ok(text)
}

/// SHA-256 of a rule's YAML; with the document index when its text holds several.
fn document_hash(text: &str, index: Option<usize>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    if let Some(index) = index {
        hasher.update(index.to_le_bytes());
    }
    hex::encode(hasher.finalize())
}

/// What one YAML document holds, as a rule store records it before compiling a set.
#[derive(Debug, Clone)]
pub enum Inspected {
    /// A detection rule that compiles.
    Rule(RuleMeta),
    /// A correlation rule; whether its references resolve depends on the other rules.
    Correlation {
        meta: RuleMeta,
        kind: crate::correlation::Kind,
        /// Referenced rule ids or names, as written.
        references: Vec<String>,
    },
    Refused(Refusal),
}

/// Splits a YAML text into its documents (separated by `---` lines), dropping empty
/// ones, so each can be stored, hashed and replaced on its own.
pub fn split_documents(text: &str) -> Vec<String> {
    let mut documents = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            if !current.trim().is_empty() {
                documents.push(std::mem::take(&mut current));
            }
            current.clear();
            continue;
        }
        if bare == "..." {
            continue;
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        documents.push(current);
    }
    documents
}

/// Inspects one document (see [`split_documents`]): its metadata, or why it is refused.
pub fn inspect_document(source: &str, yaml: &str, mapping: &LogsourceMapping) -> Vec<Inspected> {
    let collection = match parse_sigma_yaml(yaml) {
        Ok(collection) => collection,
        Err(error) => {
            return vec![Inspected::Refused(Refusal {
                source: source.into(),
                id: None,
                title: None,
                reason: format!("not a Sigma rule: {error}"),
            })];
        }
    };
    let mut out = Vec::new();
    for error in &collection.errors {
        out.push(Inspected::Refused(Refusal {
            source: source.into(),
            id: None,
            title: None,
            reason: format!("not a Sigma rule: {error}"),
        }));
    }
    for filter in &collection.filters {
        out.push(Inspected::Refused(Refusal {
            source: source.into(),
            id: filter.id.clone(),
            title: Some(filter.title.clone()),
            reason: "filter rules are not applied yet".into(),
        }));
    }
    let many = collection.rules.len() + collection.correlations.len() > 1;
    for (index, rule) in collection.rules.iter().enumerate() {
        let hash = document_hash(yaml, many.then_some(index));
        out.push(match RuleSet::build(rule, source, hash, mapping) {
            Ok(rule) => Inspected::Rule(rule.meta),
            Err(reason) => Inspected::Refused(Refusal {
                source: source.into(),
                id: rule.id.clone(),
                title: Some(rule.title.clone()),
                reason,
            }),
        });
    }
    for (index, rule) in collection.correlations.iter().enumerate() {
        let hash = document_hash(yaml, many.then_some(collection.rules.len() + index));
        let kind = match rule.correlation_type {
            rsigma_parser::CorrelationType::EventCount => crate::correlation::Kind::EventCount,
            rsigma_parser::CorrelationType::ValueCount => crate::correlation::Kind::ValueCount,
            rsigma_parser::CorrelationType::Temporal => crate::correlation::Kind::Temporal,
            rsigma_parser::CorrelationType::TemporalOrdered => {
                crate::correlation::Kind::TemporalOrdered
            }
            other => {
                out.push(Inspected::Refused(Refusal {
                    source: source.into(),
                    id: rule.id.clone(),
                    title: Some(rule.title.clone()),
                    reason: format!("correlation type {} is not supported", other.as_str()),
                }));
                continue;
            }
        };
        let (tactics, techniques) = tactic_and_technique(&rule.tags);
        out.push(Inspected::Correlation {
            meta: RuleMeta {
                id: rule
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("title:{}", rule.title)),
                name: rule.name.clone(),
                title: rule.title.clone(),
                status: rule.status.map(|s| format!("{s:?}").to_lowercase()),
                level: rule.level.map(|l| l.as_str().to_string()),
                description: rule.description.clone(),
                author: rule.author.clone(),
                tags: rule.tags.clone(),
                tactics,
                techniques,
                references: rule.references.clone(),
                falsepositives: rule.falsepositives.clone(),
                logsource: String::new(),
                product: None,
                category: None,
                service: None,
                date: rule.date.clone(),
                modified: rule.modified.clone(),
                source: source.into(),
                content_hash: hash,
            },
            kind,
            references: rule.rules.clone(),
        });
    }
    out
}

fn tactic_and_technique(tags: &[String]) -> (Vec<String>, Vec<String>) {
    let mut tactics = Vec::new();
    let mut techniques = Vec::new();
    for tag in tags {
        let Some(rest) = tag.strip_prefix("attack.") else {
            continue;
        };
        let is_technique = rest.len() >= 5
            && rest.as_bytes()[0].eq_ignore_ascii_case(&b't')
            && rest[1..5].bytes().all(|b| b.is_ascii_digit());
        if is_technique {
            techniques.push(rest.to_uppercase());
        } else if !rest.starts_with('g') && !rest.starts_with('s') || rest.contains('_') {
            tactics.push(rest.replace('_', "-"));
        }
    }
    (tactics, techniques)
}

/// CaseScope's own small rule pack (crates/sigma/rules), for the embedded demo and
/// one-shot analysis without a rules folder.
const BUILT_IN_RULES: &[(&str, &str)] = &[
    (
        "builtin:proc_creation_whoami.yml",
        include_str!("../rules/proc_creation_whoami.yml"),
    ),
    (
        "builtin:proc_creation_encoded_powershell.yml",
        include_str!("../rules/proc_creation_encoded_powershell.yml"),
    ),
    (
        "builtin:proc_access_lsass.yml",
        include_str!("../rules/proc_access_lsass.yml"),
    ),
    (
        "builtin:security_log_cleared.yml",
        include_str!("../rules/security_log_cleared.yml"),
    ),
    (
        "builtin:system_service_installed.yml",
        include_str!("../rules/system_service_installed.yml"),
    ),
    (
        "builtin:security_rdp_logon.yml",
        include_str!("../rules/security_rdp_logon.yml"),
    ),
];

/// The built-in rule pack as `(source, YAML)` texts (for a rule store to import).
pub fn built_in_texts() -> Vec<(String, String)> {
    BUILT_IN_RULES
        .iter()
        .map(|(source, text)| (source.to_string(), text.to_string()))
        .collect()
}

impl RuleSet {
    /// The built-in rule pack.
    pub fn built_in(mapping: &LogsourceMapping) -> RuleSet {
        let mut set = RuleSet::default();
        for (source, text) in BUILT_IN_RULES {
            set.load_text(source, text, mapping);
        }
        set.resolve_correlations();
        set.index();
        set
    }

    /// Loads every `.yml`/`.yaml` file under `paths` (files, directories, `.zip`s).
    /// Files are read in order, then parsed and compiled on every core (each file is
    /// independent); rules and refusals keep file order.
    pub fn load(paths: &[PathBuf], mapping: &LogsourceMapping) -> RuleSet {
        let mut set = RuleSet::default();
        let mut texts = Vec::new();
        for path in paths {
            set.load_path(path, &mut texts);
        }
        set.add_sources(&texts, mapping);
        set
    }

    /// Builds a rule set from YAML texts (`(source, text)`, one or more documents each),
    /// e.g. the enabled rules a service stored.
    pub fn from_documents(texts: &[(String, String)], mapping: &LogsourceMapping) -> RuleSet {
        let mut set = RuleSet::default();
        let texts: Vec<(String, Body)> = texts
            .iter()
            .map(|(source, text)| (source.clone(), Body::Text(text.clone())))
            .collect();
        set.add_sources(&texts, mapping);
        set
    }

    /// Parses and compiles `texts` on every core (each text is independent; rules and
    /// refusals keep text order), then resolves correlations and indexes. Workers take
    /// small runs of texts in turn, so one slow part of a rule tree does not leave the
    /// other cores idle.
    /// Loads the texts (read here for files, on every core) and indexes the rules.
    fn add_sources(&mut self, texts: &[(String, Body)], mapping: &LogsourceMapping) {
        const RUN: usize = 32;
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 16)
            .min(texts.len().div_ceil(RUN).max(1));
        let runs: Vec<&[(String, Body)]> = texts.chunks(RUN).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut parts: Vec<(usize, RuleSet)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(run) = runs.get(index) else {
                                break;
                            };
                            // Each run separately, so a parser panic loses no other run.
                            let part = std::panic::catch_unwind(|| {
                                let mut part = RuleSet::default();
                                for (source, body) in *run {
                                    match body {
                                        Body::Text(text) => part.load_text(source, text, mapping),
                                        Body::File(path) => match read_rule_file(path) {
                                            Ok(text) => part.load_text(source, &text, mapping),
                                            Err(reason) => part.refuse(source, None, None, reason),
                                        },
                                    }
                                }
                                part
                            })
                            .unwrap_or_else(|_| {
                                // A parser panic must not lose rules silently: name the files.
                                let mut part = RuleSet::default();
                                for (source, _) in *run {
                                    part.refuse(
                                        source,
                                        None,
                                        None,
                                        "the rule parser crashed on this group of files".into(),
                                    );
                                }
                                part
                            });
                            done.push((index, part));
                        }
                        done
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().unwrap_or_default())
                .collect()
        });
        parts.sort_by_key(|(index, _)| *index);
        for (_, part) in parts {
            self.rules.extend(part.rules);
            self.refused.extend(part.refused);
            self.pending_correlations.extend(part.pending_correlations);
        }
        self.resolve_correlations();
        self.index();
    }

    /// Resolves correlation rules against the loaded rules (by id or name).
    fn resolve_correlations(&mut self) {
        let mut names: HashMap<String, usize> = HashMap::new();
        for (index, rule) in self.rules.iter().enumerate() {
            names.insert(rule.meta.id.clone(), index);
            if let Some(name) = &rule.meta.name {
                names.insert(name.clone(), index);
            }
        }
        for (source, rule) in std::mem::take(&mut self.pending_correlations) {
            match crate::correlation::Correlation::resolve(&rule, &names) {
                Ok(correlation) => self.correlations.push(correlation),
                Err(reason) => {
                    self.refuse(&source, rule.id.clone(), Some(rule.title.clone()), reason)
                }
            }
        }
    }

    /// Correlation hits over the matches of a whole case (any order).
    pub fn correlate(
        &self,
        hits: &[crate::correlation::BaseHit],
    ) -> Vec<crate::correlation::CorrelationHit> {
        self.correlations
            .iter()
            .enumerate()
            .flat_map(|(index, correlation)| correlation.evaluate(index, hits))
            .collect()
    }

    /// Whether `rule`'s own matches are reported: not when every correlation that
    /// references it says `generate: false` (the Sigma default).
    pub fn reports_matches(&self, rule: usize) -> bool {
        let referencing: Vec<_> = self
            .correlations
            .iter()
            .filter(|c| c.rules.contains(&rule))
            .collect();
        referencing.is_empty() || referencing.iter().any(|c| c.generate)
    }

    /// Whether a correlation rule references `rule`.
    pub fn is_correlated(&self, rule: usize) -> bool {
        self.correlations.iter().any(|c| c.rules.contains(&rule))
    }

    /// Event fields the correlations read from matches of `rule`.
    pub fn correlation_fields(&self, rule: usize) -> Vec<String> {
        let mut fields: Vec<String> = self
            .correlations
            .iter()
            .filter(|c| c.rules.contains(&rule))
            .flat_map(|c| c.fields_read(rule))
            .collect();
        fields.sort();
        fields.dedup();
        fields
    }

    /// Gathers the rule files under `path` (read later, by [`Self::add_sources`]) and
    /// the texts of zip members.
    fn load_path(&mut self, path: &Path, texts: &mut Vec<(String, Body)>) {
        self.gather(path, None, texts);
    }

    /// `is_dir`: known from the directory listing (`None`: look).
    fn gather(&mut self, path: &Path, is_dir: Option<bool>, texts: &mut Vec<(String, Body)>) {
        let display = path.display().to_string();
        if is_dir.unwrap_or_else(|| path.is_dir()) {
            let mut entries: Vec<(PathBuf, Option<bool>)> = match std::fs::read_dir(path) {
                // The listing's type, but a link is looked through.
                Ok(entries) => entries
                    .flatten()
                    .map(|e| {
                        let kind = e.file_type().ok().filter(|kind| !kind.is_symlink());
                        (e.path(), kind.map(|kind| kind.is_dir()))
                    })
                    .collect(),
                Err(error) => {
                    return self.refuse(
                        &display,
                        None,
                        None,
                        format!("cannot read directory: {error}"),
                    );
                }
            };
            entries.sort();
            for (entry, is_dir) in entries {
                let is_rule = entry.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    e.eq_ignore_ascii_case("yml")
                        || e.eq_ignore_ascii_case("yaml")
                        || e.eq_ignore_ascii_case("zip")
                });
                let is_dir = is_dir.unwrap_or_else(|| entry.is_dir());
                if is_dir || is_rule {
                    self.gather(&entry, Some(is_dir), texts);
                }
            }
            return;
        }
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
        {
            return self.load_zip(path, texts);
        }
        texts.push((display, Body::File(path.to_path_buf())));
    }

    fn load_zip(&mut self, path: &Path, texts: &mut Vec<(String, Body)>) {
        let display = path.display().to_string();
        let archive = std::fs::File::open(path)
            .map_err(|e| e.to_string())
            .and_then(|f| zip::ZipArchive::new(f).map_err(|e| e.to_string()));
        let mut archive = match archive {
            Ok(archive) => archive,
            Err(error) => {
                return self.refuse(&display, None, None, format!("not a readable zip: {error}"));
            }
        };
        for index in 0..archive.len() {
            let Ok(mut member) = archive.by_index(index) else {
                self.refuse(
                    &format!("{display}#member{index}"),
                    None,
                    None,
                    "unreadable zip member".into(),
                );
                continue;
            };
            let name = member.name().to_string();
            let lower = name.to_lowercase();
            if member.is_dir() || !(lower.ends_with(".yml") || lower.ends_with(".yaml")) {
                continue;
            }
            let source = format!("{display}!{name}");
            if member.size() > MAX_RULE_FILE_BYTES {
                self.refuse(
                    &source,
                    None,
                    None,
                    format!(
                        "{} bytes; rule files are at most {MAX_RULE_FILE_BYTES}",
                        member.size()
                    ),
                );
                continue;
            }
            let mut text = String::new();
            match (&mut member)
                .take(MAX_RULE_FILE_BYTES)
                .read_to_string(&mut text)
            {
                Ok(_) => texts.push((source, Body::Text(text))),
                Err(error) => self.refuse(
                    &source,
                    None,
                    None,
                    format!("cannot read as UTF-8 text: {error}"),
                ),
            }
        }
    }

    fn refuse(&mut self, source: &str, id: Option<String>, title: Option<String>, reason: String) {
        self.refused.push(Refusal {
            source: source.to_string(),
            id,
            title,
            reason,
        });
    }

    /// Loads the rules of one YAML text (one or more documents); the caller resolves
    /// correlations and indexes afterwards.
    fn load_text(&mut self, source: &str, text: &str, mapping: &LogsourceMapping) {
        let collection = match parse_sigma_yaml(text) {
            Ok(collection) => collection,
            Err(error) => {
                return self.refuse(source, None, None, format!("not a Sigma rule: {error}"));
            }
        };
        for error in &collection.errors {
            self.refuse(source, None, None, format!("not a Sigma rule: {error}"));
        }
        for correlation in &collection.correlations {
            self.pending_correlations
                .push((source.to_string(), correlation.clone()));
        }
        for filter in &collection.filters {
            self.refuse(
                source,
                filter.id.clone(),
                Some(filter.title.clone()),
                "filter rules are not applied yet".into(),
            );
        }
        let many = collection.rules.len() > 1;
        for (index, rule) in collection.rules.iter().enumerate() {
            let source = if many {
                format!("{source}#{}", index + 1)
            } else {
                source.to_string()
            };
            let content_hash = document_hash(text, many.then_some(index));
            match Self::build(rule, &source, content_hash, mapping) {
                Ok(rule) => self.rules.push(rule),
                Err(reason) => {
                    self.refuse(&source, rule.id.clone(), Some(rule.title.clone()), reason)
                }
            }
        }
    }

    fn build(
        rule: &SigmaRule,
        source: &str,
        content_hash: String,
        mapping: &LogsourceMapping,
    ) -> Result<Rule, String> {
        let scope = mapping.scope(&rule.logsource)?;
        let program = compile(
            &rule.detection,
            &|name: &str| name.to_string(),
            mapping.placeholders(),
        )
        .map_err(|e| e.0)?;
        let literals = program.required_literals();
        let codes = program.required_codes(CODE_FIELD);
        let (tactics, techniques) = tactic_and_technique(&rule.tags);
        let id = rule
            .id
            .clone()
            .unwrap_or_else(|| format!("title:{}", rule.title));
        Ok(Rule {
            meta: RuleMeta {
                id,
                name: rule.name.clone(),
                title: rule.title.clone(),
                status: rule.status.map(|s| format!("{s:?}").to_lowercase()),
                level: rule.level.map(|l| l.as_str().to_string()),
                description: rule.description.clone(),
                author: rule.author.clone(),
                tags: rule.tags.clone(),
                tactics,
                techniques,
                references: rule.references.clone(),
                falsepositives: rule.falsepositives.clone(),
                logsource: describe(&rule.logsource),
                product: rule.logsource.product.clone(),
                category: rule.logsource.category.clone(),
                service: rule.logsource.service.clone(),
                date: rule.date.clone(),
                modified: rule.modified.clone(),
                source: source.to_string(),
                content_hash,
            },
            program,
            scope,
            literals,
            literal_ids: Vec::new(),
            codes,
        })
    }

    /// Keeps only the rules `keep` accepts (e.g. a minimum level), re-indexing.
    pub fn retain(&mut self, keep: impl Fn(&RuleMeta) -> bool) {
        self.rules.retain(|rule| keep(&rule.meta));
        self.index();
    }

    fn index(&mut self) {
        self.by_event.clear();
        self.by_channel.clear();
        self.by_channel_code.clear();
        self.everywhere = Candidates::default();
        self.everywhere_by_code.clear();
        // One id per (field, text): an occurrence found by a field's automaton is then
        // known to be that field's literal. Numbered with keys borrowed from the rules
        // (some 40,000 references to 20,000 literals), then handed to the rules.
        let mut literals: Vec<String> = Vec::new();
        let mut literal_fields: Vec<Option<Arc<str>>> = Vec::new();
        let numbered: Vec<Vec<Vec<u32>>> = {
            let mut ids: FxHashMap<(Option<&str>, &str), u32> = FxHashMap::default();
            self.rules
                .iter()
                .map(|rule| {
                    rule.literals
                        .iter()
                        .map(|group| {
                            group
                                .iter()
                                .map(|(field, literal)| {
                                    // Any piece of a required literal is required too: long
                                    // ones are searched by their end, which keeps the
                                    // automaton small.
                                    let piece = literal_piece(literal);
                                    *ids.entry((field.as_deref(), piece)).or_insert_with(|| {
                                        literals.push(piece.to_string());
                                        literal_fields.push(field.as_deref().map(Arc::from));
                                        (literals.len() - 1) as u32
                                    })
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect()
        };
        for (rule, groups) in self.rules.iter_mut().zip(numbered) {
            rule.literal_ids = groups
                .into_iter()
                .map(|group| {
                    group
                        .into_iter()
                        .map(|id| LiteralRef {
                            id,
                            field: literal_fields[id as usize].clone(),
                        })
                        .collect()
                })
                .collect();
        }
        self.literal_count = literals.len();
        self.literal_fields = literal_fields;
        // Each literal is searched in the values of its field (and of the event fields
        // logsource aliases read that field from); keyword literals in every value.
        let scoped = self.rules.iter().flat_map(|rule| {
            rule.literal_ids.iter().flatten().map(|literal| {
                (
                    literal.field.as_deref(),
                    literals[literal.id as usize].clone(),
                    literal.id,
                )
            })
        });
        let aliases = self.rules.iter().flat_map(|rule| match &rule.scope {
            Scope::Targets(targets) => targets
                .iter()
                .flat_map(|target| target.aliases.iter())
                .map(|(rule_name, event_name)| (rule_name.as_str(), event_name.as_str()))
                .collect::<Vec<_>>(),
            Scope::Everywhere => Vec::new(),
        });
        // Literals are some 20,000 short strings (most from hash rules); should an
        // automaton be refused (none is at this size), rules are not prefiltered.
        self.scanners = if literals.is_empty() {
            None
        } else {
            crate::scan::Scanners::build(scoped, aliases).ok()
        };
        if self.scanners.is_none() {
            // Without the automaton nothing is prefiltered: every rule is tested.
            self.literal_count = 0;
            for rule in &mut self.rules {
                rule.literal_ids.clear();
            }
        }
        let no_aliases: Aliases = Arc::default();
        for (index, rule) in self.rules.iter().enumerate() {
            match &rule.scope {
                Scope::Everywhere => match &rule.codes {
                    // Looked at only for events whose EventID is one the rule requires.
                    Some(codes) => {
                        for code in codes {
                            self.everywhere_by_code
                                .entry(*code)
                                .or_default()
                                .push(index, no_aliases.clone());
                        }
                    }
                    None => self.everywhere.push(index, no_aliases.clone()),
                },
                Scope::Targets(targets) => {
                    for target in targets {
                        let channel = target.channel.to_lowercase();
                        let codes = rule
                            .codes
                            .as_ref()
                            .filter(|_| !target.aliases.contains_key(CODE_FIELD));
                        if let (true, Some(codes)) = (target.event_ids.is_empty(), codes) {
                            let by_code = self.by_channel_code.entry(channel).or_default();
                            for code in codes {
                                by_code
                                    .entry(*code)
                                    .or_default()
                                    .push(index, target.aliases.clone());
                            }
                        } else if target.event_ids.is_empty() {
                            self.by_channel
                                .entry(channel)
                                .or_default()
                                .push(index, target.aliases.clone());
                        } else {
                            let by_id = self.by_event.entry(channel).or_default();
                            for id in &target.event_ids {
                                by_id
                                    .entry(*id)
                                    .or_default()
                                    .push(index, target.aliases.clone());
                            }
                        }
                    }
                }
            }
        }
        let rules = &self.rules;
        self.everywhere.index_literals(rules, &literals);
        for list in self.by_channel.values_mut() {
            list.index_literals(rules, &literals);
        }
        for list in self
            .by_event
            .values_mut()
            .chain(self.by_channel_code.values_mut())
            .flat_map(|ids| ids.values_mut())
            .chain(self.everywhere_by_code.values_mut())
        {
            list.index_literals(rules, &literals);
        }
    }

    /// Indices of the rules `event` matches, in rule order.
    ///
    /// Each event's values are lower-cased once into one text, in which a single
    /// Aho-Corasick pass finds every rule literal; only the rules of the event's logsource
    /// that one of those literals (or no literal requirement) makes possible are looked
    /// at, and only those whose every literal group is present are evaluated.
    pub fn evaluate(&self, event: &EventRef<'_>) -> Vec<usize> {
        if let Fields::Pairs(pairs) = event.fields {
            return LAYOUTS.with(|cell| match cell.try_borrow_mut() {
                Ok(mut layouts) => {
                    let layout = layouts.get(pairs, self.scanners.as_ref());
                    self.evaluate_with(event, Some(layout))
                }
                // Only if a rule's evaluation re-entered this (it does not).
                Err(_) => self.evaluate_with(event, None),
            });
        }
        self.evaluate_with(event, None)
    }

    /// `layout`: what the event's field names tell, when known (`Fields::Pairs`).
    fn evaluate_with(&self, event: &EventRef<'_>, layout: Option<&Layout>) -> Vec<usize> {
        let mut matched = Vec::new();
        let channel = event.channel.map(str::to_lowercase).unwrap_or_default();
        let by_event = event
            .event_code
            .and_then(|code| self.by_event.get(&channel)?.get(&code));
        let other_names = match layout {
            Some(layout) if !layout.other_names => None,
            _ => crate::fields::other_names(event.fields),
        };
        // Rules indexed by the event IDs their detection requires: looked up by the
        // event's EventID field, read as the rules read it.
        let mut lists: Vec<&Candidates> = Vec::with_capacity(6);
        lists.extend(by_event);
        lists.extend(self.by_channel.get(&channel));
        lists.push(&self.everywhere);
        let by_channel_code = self.by_channel_code.get(&channel);
        if by_channel_code.is_some() || !self.everywhere_by_code.is_empty() {
            let value = event
                .fields
                .get(CODE_FIELD)
                .or_else(|| other_names.as_ref()?.get(CODE_FIELD).copied());
            if let Some(value) = value {
                crate::fields::FieldValue::of(value).any_element(&mut |element| {
                    if let Some(code) = element
                        .number()
                        .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= f64::from(u32::MAX))
                        .map(|n| n as u32)
                    {
                        lists.extend(by_channel_code.and_then(|codes| codes.get(&code)));
                        lists.extend(self.everywhere_by_code.get(&code));
                    }
                    false
                });
            }
        }
        if lists.iter().all(|list| list.entries.is_empty()) {
            return matched;
        }
        let other_names = other_names.as_ref();
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.evaluate_in(
                event,
                &lists,
                other_names,
                layout,
                &mut scratch,
                &mut matched,
            ),
            // Only if a rule's evaluation re-entered this (it does not): fresh buffers.
            Err(_) => self.evaluate_in(
                event,
                &lists,
                other_names,
                layout,
                &mut Scratch::default(),
                &mut matched,
            ),
        });
        matched.sort_unstable();
        matched.dedup();
        matched
    }

    fn evaluate_in<'a>(
        &self,
        event: &EventRef<'a>,
        lists: &[&Candidates],
        other_names: Option<&HashMap<String, &serde_json::Value>>,
        layout: Option<&Layout>,
        scratch: &mut Scratch,
        matched: &mut Vec<usize>,
    ) {
        scratch.reset(self.literal_count);
        let Scratch {
            haystack,
            present,
            hits,
            found,
            positions,
            memo,
        } = scratch;
        // Every single value lower-cased once (shared by all rules) into the haystack,
        // each value followed by a separator, its range and field name in `values`; and
        // every field in `slots`, found by name through its template's index (or one
        // made for the event).
        let mut slots: Vec<crate::fields::Slot<'a>> = Vec::with_capacity(event.fields.len());
        let mut values: Vec<crate::scan::Value> = Vec::with_capacity(event.fields.len() + 8);
        let mut push =
            |haystack: &mut String, name: &'a str, set: u32, value: &serde_json::Value| {
                let start = haystack.len() as u32;
                if !crate::fields::FieldValue::of(value).push_lowercase_text(haystack) {
                    return None;
                }
                let end = haystack.len() as u32;
                haystack.push('\u{1}');
                values.push(crate::scan::Value {
                    start,
                    end,
                    name,
                    set,
                });
                Some((start, end))
            };
        // Each field's scanners: from its layout, else looked up by name in the scan.
        let sets = layout
            .filter(|layout| layout.sets.len() == event.fields.len())
            .map(|layout| layout.sets.as_slice());
        for (position, (name, value)) in event.fields.iter().enumerate() {
            let set = sets.map_or(crate::scan::SET_BY_NAME, |sets| sets[position]);
            let range = if let serde_json::Value::Array(items) = value {
                for item in items {
                    push(haystack, name, set, item);
                }
                None
            } else {
                push(haystack, name, set, value)
            };
            slots.push(crate::fields::Slot { value, range });
        }
        let event_index: FxHashMap<&str, u32>;
        let index = match layout {
            Some(layout) => crate::fields::SlotIndex::Layout(&layout.index),
            None => {
                event_index = event
                    .fields
                    .iter()
                    .enumerate()
                    .map(|(position, (name, _))| (name, position as u32))
                    .collect();
                crate::fields::SlotIndex::Event(&event_index)
            }
        };
        // Fields found under other names (spaces, UserData paths) are not tied to one
        // value here: their literals count wherever they occur.
        let unscoped = other_names.is_some();
        if let Some(scanners) = &self.scanners {
            let keywords = lists.iter().any(|list| list.keywords.may_occur(haystack));
            scanners.scan(haystack, &values, unscoped, keywords, memo, found);
            found.sort_unstable();
            found.dedup();
            for (id, value) in found.iter() {
                if let Some(slot) = present.get_mut(*id as usize)
                    && *slot == Presence::Absent
                {
                    hits.push(*id);
                    *slot = Presence::Elsewhere;
                }
                if value & OWN_FIELD != 0
                    && let Some(slot) = present.get_mut(*id as usize)
                {
                    *slot = Presence::OwnField;
                }
            }
        }
        // A literal counts when it occurs in its field's value: found there by its own
        // name, or (rarely) only under a name this rule's logsource reads the field from.
        let in_field = |id: u32, aliases: &crate::logsource::Aliases| -> bool {
            match present[id as usize] {
                Presence::Absent => return false,
                Presence::OwnField => return true,
                Presence::Elsewhere => {}
            }
            let Some(field) = self.literal_fields[id as usize].as_deref() else {
                return true;
            };
            if unscoped {
                return true;
            }
            let Some(alias) = aliases.get(field) else {
                return false;
            };
            let first = found.partition_point(|(found, _)| *found < id);
            found[first..]
                .iter()
                .take_while(|(found, _)| *found == id)
                .any(|(_, value)| values[(value & !OWN_FIELD) as usize].name == alias)
        };
        let lowered = crate::fields::Lowered::new(haystack, &slots, index);
        for list in lists {
            positions.clear();
            positions.extend_from_slice(&list.unfiltered);
            for id in hits.iter() {
                if let Some(found) = list.by_literal.get(id) {
                    positions.extend_from_slice(found);
                }
            }
            positions.sort_unstable();
            positions.dedup();
            for position in positions.iter() {
                let (index, aliases) = &list.entries[*position as usize];
                let (start, end) = list.required[*position as usize];
                // Every group has a literal in its field: scanned group by group.
                let mut possible = true;
                let mut group_met = false;
                for id in &list.requirements[start as usize..end as usize] {
                    group_met = group_met || in_field(id & !GROUP_END, aliases);
                    if id & GROUP_END != 0 {
                        if !group_met {
                            possible = false;
                            break;
                        }
                        group_met = false;
                    }
                }
                if !possible {
                    continue;
                }
                let rule = &self.rules[*index];
                let view = FieldsView {
                    fields: event.fields,
                    aliases: Some(aliases),
                    other_names,
                    lowered: Some(&lowered),
                };
                if rule.program.matches(&view) {
                    matched.push(*index);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fired(set: &RuleSet, channel: &str, code: u32, fields: serde_json::Value) -> Vec<String> {
        let mut fields = fields.as_object().cloned().unwrap_or_default();
        // As the normaliser does for every Windows event.
        fields.insert("EventID".into(), json!(code));
        fields.insert("Channel".into(), json!(channel));
        let event = EventRef {
            channel: Some(channel),
            event_code: Some(code),
            fields: (&fields).into(),
        };
        set.evaluate(&event)
            .into_iter()
            .map(|i| set.rules[i].meta.title.clone())
            .collect()
    }

    /// Records handed over as name–value pairs are evaluated through their template's
    /// index: templates that share name strings in another order, and a name string
    /// that is equal but not the same, find what the same fields as a map find.
    #[test]
    fn pairs_of_interleaved_templates_fire_as_their_maps_do() {
        let yaml = r#"
title: Whoami all
logsource: {product: windows, category: process_creation}
detection:
    image:
        Image|endswith: '\whoami.exe'
    command:
        CommandLine|contains: '/all'
    condition: image and command
"#;
        let set = RuleSet::from_documents(
            &[("t.yml".to_string(), yaml.to_string())],
            &LogsourceMapping::built_in(),
        );
        assert_eq!(set.rules.len(), 1, "{:?}", set.refused);
        let sysmon = "Microsoft-Windows-Sysmon/Operational";
        let image: Arc<str> = Arc::from("Image");
        let command: Arc<str> = Arc::from("CommandLine");
        let image_again: Arc<str> = Arc::from("Image");
        let layouts: [Vec<Arc<str>>; 3] = [
            vec![image.clone(), command.clone()],
            vec![command.clone(), image.clone()],
            vec![image_again.clone(), command.clone()],
        ];
        let texts = [
            ("c:\\windows\\whoami.exe", "whoami /all"),
            ("c:\\windows\\cmd.exe", "whoami /all"),
            ("c:\\windows\\whoami.exe", "whoami /groups"),
            ("whoami /all", "c:\\windows\\whoami.exe"),
        ];
        let mut fired = 0;
        for round in 0..3 {
            for (l, layout) in layouts.iter().enumerate() {
                for (t, (image_text, command_text)) in texts.iter().enumerate() {
                    let mut pairs = vec![
                        (FieldName::Static("EventID"), json!(1)),
                        (FieldName::Static("Channel"), json!(sysmon)),
                    ];
                    for name in layout {
                        let text = if **name == *"Image" {
                            image_text
                        } else {
                            command_text
                        };
                        pairs.push((FieldName::Shared(name.clone()), json!(text)));
                    }
                    let map = Fields::Pairs(&pairs).to_map();
                    let as_pairs = EventRef {
                        channel: Some(sysmon),
                        event_code: Some(1),
                        fields: Fields::Pairs(&pairs),
                    };
                    let as_map = EventRef {
                        channel: Some(sysmon),
                        event_code: Some(1),
                        fields: (&map).into(),
                    };
                    let expected = set.evaluate(&as_map);
                    assert_eq!(set.evaluate(&as_pairs), expected, "{round} {l} {t}");
                    fired += expected.len();
                }
            }
        }
        // The first text fires, in each layout and round; the others do not.
        assert_eq!(fired, 9);
        // Another rule set on this thread: the layouts' scanners are its own.
        let other = RuleSet::from_documents(
            &[(
                "u.yml".to_string(),
                yaml.replace("'\\whoami.exe'", "'\\cmd.exe'"),
            )],
            &LogsourceMapping::built_in(),
        );
        let pairs = vec![
            (FieldName::Static("EventID"), json!(1)),
            (FieldName::Static("Channel"), json!(sysmon)),
            (
                FieldName::Shared(image.clone()),
                json!("c:\\windows\\cmd.exe"),
            ),
            (FieldName::Shared(command.clone()), json!("whoami /all")),
        ];
        let event = EventRef {
            channel: Some(sysmon),
            event_code: Some(1),
            fields: Fields::Pairs(&pairs),
        };
        assert!(set.evaluate(&event).is_empty());
        assert_eq!(other.evaluate(&event), [0]);
    }

    /// `expand` puts in the values the mapping's `[placeholders]` table gives (every
    /// one an alternative, wildcards included); without values the rule is refused
    /// with the placeholder named.
    #[test]
    fn expand_takes_the_configured_placeholder_values() {
        let rule = r#"
title: Certificate request from an unknown CDC
logsource: {product: windows, service: security}
detection:
    selection:
        EventID: 4886
        Attributes|contains: 'cdc:'
    filter_main_known_cdc:
        Attributes|contains|expand: 'cdc:%known_cdcs%'
    condition: selection and not 1 of filter_main_*
"#;
        let documents = [("cdc.yml".to_string(), rule.to_string())];
        let refused = RuleSet::from_documents(&documents, &LogsourceMapping::built_in());
        assert!(refused.rules.is_empty());
        assert!(
            refused.refused[0].reason.contains("%known_cdcs%"),
            "{:?}",
            refused.refused
        );
        let mapping = LogsourceMapping::parse(&format!(
            "{}\n[placeholders]\nknown_cdcs = [\"DC01.corp.local\", \"10.0.0.*\"]\n",
            include_str!("../logsources.toml")
        ))
        .unwrap();
        let set = RuleSet::from_documents(&documents, &mapping);
        assert_eq!(set.rules.len(), 1, "{:?}", set.refused);
        let fires = |attributes: &str| {
            !fired(&set, "Security", 4886, json!({"Attributes": attributes})).is_empty()
        };
        assert!(
            !fires("cdc:dc01.CORP.local\nrmd:x"),
            "a known CDC, any case"
        );
        assert!(!fires("cdc:10.0.0.7"), "a known CDC by a wildcard value");
        assert!(fires("cdc:evil.example"), "an unknown CDC");
        assert!(fires("cdc:10.0.1.7"));
    }

    /// `fieldref` compares the two fields' texts, case-insensitively unless `cased`,
    /// through the event's lower-cased values (numbers by their text, arrays never).
    #[test]
    fn field_references_compare_the_fields_texts() {
        let rule = |name: &str, modifiers: &str| {
            format!(
                "title: {name}\nlogsource: {{product: windows, category: process_creation}}\n\
                 detection:\n    same:\n        Image{modifiers}: ParentImage\n    \
                 condition: same\n"
            )
        };
        let documents = [
            ("equal", "|fieldref"),
            ("equal cased", "|fieldref|cased"),
            ("ends", "|fieldref|endswith"),
            ("contains", "|fieldref|contains"),
        ]
        .map(|(name, modifiers)| (format!("{name}.yml"), rule(name, modifiers)));
        let set = RuleSet::from_documents(&documents, &LogsourceMapping::built_in());
        assert_eq!(set.rules.len(), 4, "{:?}", set.refused);
        let sysmon = "Microsoft-Windows-Sysmon/Operational";
        let fire = |image: serde_json::Value, parent: serde_json::Value| {
            let mut titles = fired(
                &set,
                sysmon,
                1,
                json!({"Image": image, "ParentImage": parent}),
            );
            titles.sort();
            titles.join(",")
        };
        let same = r"C:\Windows\cmd.exe";
        assert_eq!(
            fire(json!(same), json!(same)),
            "contains,ends,equal,equal cased"
        );
        assert_eq!(
            fire(json!(same), json!(r"c:\windows\CMD.EXE")),
            "contains,ends,equal"
        );
        assert_eq!(fire(json!(same), json!("CMD.exe")), "contains,ends");
        assert_eq!(fire(json!(same), json!(r"\Windows\")), "contains");
        assert_eq!(fire(json!(same), json!("powershell.exe")), "");
        assert_eq!(
            fire(json!(4624), json!("4624")),
            "contains,ends,equal,equal cased"
        );
        assert_eq!(fire(json!([same]), json!(same)), "");
        assert_eq!(fire(json!(same), json!(null)), "");
    }

    /// A template's layout gives each field the scanners of the rule set evaluating
    /// it, also when one thread evaluates with several rule sets in turn.
    #[test]
    fn a_layout_takes_each_rule_sets_scanners() {
        let rules = |detection: &str| {
            let yaml = format!(
                "title: T\nlogsource: {{product: windows, category: process_creation}}\n\
                 detection:\n{detection}  condition: sel\n"
            );
            RuleSet::from_documents(&[("t.yml".into(), yaml)], &LogsourceMapping::built_in())
        };
        let both =
            rules("  sel:\n    Image|endswith: '\\x.exe'\n    CommandLine|contains: ' -y'\n");
        let command = rules("  sel:\n    CommandLine|contains: ' -z'\n");
        let pairs = vec![
            (FieldName::Static("EventID"), json!(1)),
            (FieldName::Shared(Arc::from("Image")), json!("c:\\x.exe")),
            (
                FieldName::Shared(Arc::from("CommandLine")),
                json!("x -y -z"),
            ),
        ];
        let mut layouts = Layouts::default();
        for set in [&both, &command, &both] {
            let scanners = set.scanners.as_ref().expect("literals");
            let layout = layouts.get(&pairs, Some(scanners));
            let expected: Vec<u32> = pairs
                .iter()
                .map(|(name, _)| scanners.set_of(name))
                .collect();
            assert_eq!(layout.sets, expected);
        }
        assert_eq!(layouts.entries.len(), 1);
        assert_ne!(
            both.scanners.as_ref().unwrap().set_of("Image"),
            command.scanners.as_ref().unwrap().set_of("Image")
        );
    }

    /// Rule files are read on the loading threads: every readable rule of a tree loads
    /// (a linked folder included), and a file too large or not UTF-8 is refused by name.
    #[test]
    fn a_rule_tree_loads_and_unreadable_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let rule = |title: &str| {
            format!(
                "title: {title}\nlogsource: {{product: windows, service: security}}\n\
                 detection:\n  sel:\n    EventID: 4624\n  condition: sel\n"
            )
        };
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(dir.path().join("top.yml"), rule("Top")).unwrap();
        std::fs::write(nested.join("deep.YAML"), rule("Deep")).unwrap();
        std::fs::write(nested.join("notes.txt"), "not a rule").unwrap();
        std::fs::write(dir.path().join("latin1.yml"), b"title: caf\xe9\n").unwrap();
        let large = "#".repeat(MAX_RULE_FILE_BYTES as usize + 1);
        std::fs::write(dir.path().join("large.yml"), large).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("linked.yml"), rule("Linked")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("link")).unwrap();

        let set = RuleSet::load(&[dir.path().to_path_buf()], &LogsourceMapping::built_in());
        let mut titles: Vec<&str> = set.rules.iter().map(|r| r.meta.title.as_str()).collect();
        titles.sort();
        assert_eq!(titles, ["Deep", "Linked", "Top"]);
        let refused: Vec<(String, &str)> = set
            .refused
            .iter()
            .map(|r| {
                let name = Path::new(&r.source).file_name().unwrap();
                (name.to_string_lossy().into_owned(), r.reason.as_str())
            })
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert_eq!(refused[0].0, "large.yml");
        assert!(
            refused[0].1.contains("rule files are at most"),
            "{refused:?}"
        );
        assert_eq!(refused[1].0, "latin1.yml");
        assert!(refused[1].1.contains("cannot read as UTF-8"), "{refused:?}");
    }

    #[test]
    fn the_built_in_pack_loads_whole_and_each_rule_fires_only_on_its_events() {
        let set = RuleSet::built_in(&LogsourceMapping::built_in());
        assert!(set.refused.is_empty(), "{:?}", set.refused);
        assert_eq!(set.rules.len(), BUILT_IN_RULES.len());
        let sysmon = "Microsoft-Windows-Sysmon/Operational";
        let cases: Vec<(&str, u32, serde_json::Value, Vec<&str>)> = vec![
            (
                sysmon,
                1,
                json!({"Image": "C:\\Windows\\System32\\whoami.exe", "CommandLine": "whoami /priv"}),
                vec!["Account Discovery With whoami"],
            ),
            // Security 4688 names the image NewProcessName: the mapping renames it.
            (
                "Security",
                4688,
                json!({"NewProcessName": "C:\\Windows\\System32\\WHOAMI.EXE"}),
                vec!["Account Discovery With whoami"],
            ),
            (
                "Security",
                4624,
                json!({"NewProcessName": "C:\\Windows\\System32\\whoami.exe"}),
                vec![],
            ),
            (
                sysmon,
                1,
                json!({"Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "CommandLine": "powershell.exe \u{2013}enc SQBFAFgA"}),
                vec!["PowerShell With An Encoded Command"],
            ),
            (
                sysmon,
                1,
                json!({"Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "CommandLine": "powershell.exe -File a.ps1"}),
                vec![],
            ),
            (
                sysmon,
                10,
                json!({"TargetImage": "C:\\Windows\\system32\\lsass.exe", "GrantedAccess": "0x1010", "SourceImage": "C:\\Users\\bob\\m.exe"}),
                vec!["LSASS Memory Read By An Uncommon Process"],
            ),
            (
                sysmon,
                10,
                json!({"TargetImage": "C:\\Windows\\system32\\lsass.exe", "GrantedAccess": "0x1010", "SourceImage": "C:\\Windows\\System32\\svchost.exe"}),
                vec![],
            ),
            (
                "Security",
                1102,
                json!({"SubjectUserName": "bob"}),
                vec!["Security Event Log Cleared"],
            ),
            (
                "System",
                7045,
                json!({"ImagePath": "C:\\Users\\bob\\AppData\\Local\\Temp\\svc.exe"}),
                vec!["Service Installed From A User-Writable Path"],
            ),
            (
                "System",
                7045,
                json!({"ImagePath": "C:\\Windows\\System32\\svc.exe"}),
                vec![],
            ),
            (
                "Security",
                4624,
                json!({"LogonType": "10", "IpAddress": "203.0.113.9"}),
                vec!["Remote Interactive Logon From A Public Address"],
            ),
            (
                "Security",
                4624,
                json!({"LogonType": 10, "IpAddress": "192.168.1.20"}),
                vec![],
            ),
            (
                "Security",
                4624,
                json!({"LogonType": "3", "IpAddress": "203.0.113.9"}),
                vec![],
            ),
        ];
        for (channel, code, fields, expected) in cases {
            assert_eq!(
                fired(&set, channel, code, fields.clone()),
                expected,
                "{channel} {code} {fields}"
            );
        }
    }

    #[test]
    fn tags_give_tactics_and_techniques() {
        let (tactics, techniques) = tactic_and_technique(&[
            "attack.execution".to_string(),
            "attack.t1059.001".to_string(),
            "attack.defense_evasion".to_string(),
            "cve.2021-1234".to_string(),
        ]);
        assert_eq!(tactics, ["execution", "defense-evasion"]);
        assert_eq!(techniques, ["T1059.001"]);
    }
}
