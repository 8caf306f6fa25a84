//! From the shared [`Query`] language (plus filters, time range and page position) to a
//! tantivy query. Field names address the flattened event fields (case-sensitive, e.g.
//! `CommandLine`); `event_id`, `file_id`, `source`, `locator` and `timestamp` address
//! the event's own columns. Values match case-insensitively (see the tokenizer).

use super::event_set::EventSetQuery;
use super::paths::{Expansion, MAX_FIELD_NAMES};
use super::schema::Fields;
use crate::query::{Query, map_bound, parse_time};
use crate::tokenizer::words;
use crate::{EventQuery, SortOrder, StoreError};
use std::ops::Bound;
use std::sync::Arc;
use tantivy::Term;
use tantivy::query::{
    AllQuery, AutomatonWeight, BooleanQuery, EmptyQuery, EnableScoring, InvertedIndexRangeQuery,
    Occur, PhraseQuery, Query as TantivyQuery, RangeQuery, RegexQuery, TermQuery, TermSetQuery,
    Weight,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy_fst::Regex;

type Boxed = Box<dyn TantivyQuery>;

fn term_query(term: Term) -> Boxed {
    Box::new(TermQuery::new(
        term,
        IndexRecordOption::WithFreqsAndPositions,
    ))
}

fn any_of(queries: Vec<Boxed>) -> Boxed {
    match queries.len() {
        0 => Box::new(EmptyQuery),
        1 => queries
            .into_iter()
            .next()
            .unwrap_or_else(|| Box::new(EmptyQuery)),
        _ => Box::new(BooleanQuery::new(
            queries.into_iter().map(|q| (Occur::Should, q)).collect(),
        )),
    }
}

/// Where a query field points.
enum Target {
    Keyword(Field),
    Timestamp,
    Json(String),
    /// No field named: every flattened field.
    Any,
}

fn target(fields: &Fields, field: Option<&str>) -> Target {
    match field {
        None => Target::Any,
        Some("event_id") => Target::Keyword(fields.event_id),
        Some("file_id") => Target::Keyword(fields.file_id),
        Some("source") => Target::Keyword(fields.source),
        Some("locator") => Target::Keyword(fields.locator),
        Some("timestamp" | "@timestamp") => Target::Timestamp,
        Some(name) => Target::Json(name.to_string()),
    }
}

/// A JSON path term for `name` (dots in flattened names are literal, so escaped).
fn json_term(fields: &Fields, name: &str) -> Term {
    Term::from_field_json_path(fields.fields, &name.replace('.', "\\."), false)
}

/// The terms and phrases under which `value` matches in flattened field `name`: its
/// whole lower-cased text, its words (one word: a term; several: a phrase), and the
/// number it spells.
fn json_alternatives(
    fields: &Fields,
    name: &str,
    value: &str,
    terms: &mut Vec<Term>,
    phrases: &mut Vec<Boxed>,
) {
    let str_term = |token: &str| {
        let mut term = json_term(fields, name);
        term.append_type_and_str(token);
        term
    };
    let lowered = value.to_lowercase();
    terms.push(str_term(&lowered));
    let tokens: Vec<String> = words(value).map(|(_, _, word)| word).collect();
    match tokens.len() {
        0 => {}
        1 if tokens[0] == lowered => {}
        1 => terms.push(str_term(&tokens[0])),
        _ => phrases.push(Box::new(PhraseQuery::new(
            tokens.iter().map(|token| str_term(token)).collect(),
        ))),
    }
    if let Ok(number) = value.parse::<i64>() {
        let mut term = json_term(fields, name);
        term.append_type_and_fast_value(number);
        terms.push(term);
    } else if let Ok(number) = value.parse::<f64>()
        && number.is_finite()
    {
        let mut term = json_term(fields, name);
        term.append_type_and_fast_value(number);
        terms.push(term);
    }
}

fn too_many_names(value: &str) -> StoreError {
    StoreError::Invalid(format!(
        "a field-less search is unavailable here: the events hold more than \
         {MAX_FIELD_NAMES} distinct field names; name the field (e.g. CommandLine:{value})"
    ))
}

/// A word or value: the whole value, its words as a phrase, or the number it spells.
fn value_query(
    fields: &Fields,
    names: &Expansion,
    target: &Target,
    value: &str,
) -> Result<Boxed, StoreError> {
    let mut terms = Vec::new();
    let mut alternatives = Vec::new();
    match target {
        Target::Keyword(field) => return Ok(term_query(Term::from_field_text(*field, value))),
        Target::Timestamp => {
            let micros = parse_time(value)?;
            return Ok(Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(fields.timestamp, micros)),
                Bound::Included(Term::from_field_i64(fields.timestamp, micros)),
            )));
        }
        Target::Json(name) => json_alternatives(fields, name, value, &mut terms, &mut alternatives),
        Target::Any => {
            let Expansion::Names(names) = names else {
                return Err(too_many_names(value));
            };
            for name in names.iter() {
                json_alternatives(fields, name, value, &mut terms, &mut alternatives);
            }
        }
    }
    match terms.len() {
        0 => {}
        1 => alternatives.extend(terms.pop().map(term_query)),
        _ => alternatives.push(Box::new(TermSetQuery::new(terms))),
    }
    Ok(any_of(alternatives))
}

fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `*` and `?` wildcards as a regex over lower-cased tokens.
fn wildcard_regex(pattern: &str) -> String {
    let mut out = String::new();
    for c in pattern.to_lowercase().chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            other => out.push_str(&escape_regex(&other.to_string())),
        }
    }
    out
}

/// A regex over the terms of one JSON path (tantivy's RegexQuery has no JSON paths).
#[derive(Clone, Debug)]
struct JsonRegexQuery {
    field: Field,
    regex: Arc<Regex>,
    path_bytes: Vec<u8>,
}

impl TantivyQuery for JsonRegexQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AutomatonWeight::<Regex>::new_for_json_path(
            self.field,
            self.regex.clone(),
            &self.path_bytes,
        )))
    }
}

/// Matches the terms of path `name` whose value (after the type byte) matches
/// `value_regex`; `type_code` None = any type.
/// Automaton steps a field-less wildcard may take over the term dictionary (each byte
/// of each term it visits is a step): about a few hundred milliseconds of work.
pub const FIELDLESS_WILDCARD_STEPS: u64 = 50_000_000;

/// Marks a tantivy error that is the caller's (see [`super::store_error`]).
pub const INVALID_MARK: &str = "[casescope-invalid] ";

/// A regex that stops matching (and says so) after a number of steps: a field-less
/// wildcard walks the terms of every field, so its walk is bounded.
#[derive(Debug)]
struct BudgetedRegex {
    regex: Regex,
    steps_left: std::sync::atomic::AtomicU64,
    exhausted: std::sync::atomic::AtomicBool,
}

impl tantivy_fst::Automaton for BudgetedRegex {
    type State = Option<usize>;

    fn start(&self) -> Option<usize> {
        self.regex.start()
    }

    fn is_match(&self, state: &Option<usize>) -> bool {
        self.regex.is_match(state)
    }

    fn can_match(&self, state: &Option<usize>) -> bool {
        !self.exhausted.load(std::sync::atomic::Ordering::Relaxed) && self.regex.can_match(state)
    }

    fn accept(&self, state: &Option<usize>, byte: u8) -> Option<usize> {
        use std::sync::atomic::Ordering;
        let left = self.steps_left.load(Ordering::Relaxed);
        if left == 0 {
            self.exhausted.store(true, Ordering::Relaxed);
            return None;
        }
        self.steps_left.store(left - 1, Ordering::Relaxed);
        self.regex.accept(state, byte)
    }
}

/// A regex over the terms of every JSON path, bounded by a number of steps
/// ([`FIELDLESS_WILDCARD_STEPS`] unless the store's options say otherwise).
#[derive(Clone, Debug)]
struct AnyFieldRegexQuery {
    field: Field,
    pattern: String,
    /// The regex's source (a `Regex` cannot be cloned: each weight builds its own).
    regex: String,
    steps: u64,
}

struct AnyFieldRegexWeight {
    inner: AutomatonWeight<BudgetedRegex>,
    automaton: Arc<BudgetedRegex>,
    pattern: String,
}

impl TantivyQuery for AnyFieldRegexQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let regex = Regex::new(&self.regex)
            .map_err(|e| tantivy::TantivyError::InvalidArgument(format!("{INVALID_MARK}{e}")))?;
        let automaton = Arc::new(BudgetedRegex {
            regex,
            steps_left: std::sync::atomic::AtomicU64::new(self.steps),
            exhausted: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(Box::new(AnyFieldRegexWeight {
            inner: AutomatonWeight::new(self.field, automaton.clone()),
            automaton,
            pattern: self.pattern.clone(),
        }))
    }
}

impl AnyFieldRegexWeight {
    fn check(&self) -> tantivy::Result<()> {
        if self
            .automaton
            .exhausted
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "{INVALID_MARK}the pattern {:?} without a field would walk too many values of \
                 every field; name the field (e.g. CommandLine:{}) or search for a word",
                self.pattern, self.pattern
            )));
        }
        Ok(())
    }
}

impl Weight for AnyFieldRegexWeight {
    fn scorer(
        &self,
        reader: &tantivy::SegmentReader,
        boost: tantivy::Score,
    ) -> tantivy::Result<Box<dyn tantivy::query::Scorer>> {
        let scorer = self.inner.scorer(reader, boost)?;
        self.check()?;
        Ok(scorer)
    }

    fn explain(
        &self,
        reader: &tantivy::SegmentReader,
        doc: tantivy::DocId,
    ) -> tantivy::Result<tantivy::query::Explanation> {
        self.inner.explain(reader, doc)
    }
}

fn json_regex(fields: &Fields, name: &str, value_regex: &str) -> Result<Boxed, StoreError> {
    let mut term = json_term(fields, name);
    term.append_type_and_str("");
    // Term dictionary keys of a JSON field: path, end-of-path byte, type byte, value.
    let key = term.serialized_value_bytes().to_vec();
    let path_with_end = key
        .get(..key.len().saturating_sub(1))
        .unwrap_or_default()
        .to_vec();
    let path_text =
        String::from_utf8_lossy(&path_with_end[..path_with_end.len().saturating_sub(1)])
            .to_string();
    let pattern = format!("{}\\x00{value_regex}", escape_regex(&path_text));
    let regex = Regex::new(&pattern)
        .map_err(|e| StoreError::Invalid(format!("pattern too complex: {e}")))?;
    Ok(Box::new(JsonRegexQuery {
        field: fields.fields,
        regex: Arc::new(regex),
        path_bytes: path_with_end,
    }))
}

fn wildcard_query(fields: &Fields, target: &Target, pattern: &str) -> Result<Boxed, StoreError> {
    let regex = wildcard_regex(pattern);
    match target {
        // One automaton over every field's string terms: any path, end of path, the
        // string type byte, then the pattern.
        Target::Any => {
            let source = format!("(?s)[^\\x00]*\\x00s{regex}");
            Regex::new(&source)
                .map_err(|e| StoreError::Invalid(format!("pattern too complex: {e}")))?;
            Ok(Box::new(AnyFieldRegexQuery {
                field: fields.fields,
                pattern: pattern.to_string(),
                regex: source,
                steps: fields.wildcard_steps,
            }))
        }
        Target::Json(name) => json_regex(fields, name, &format!("s{regex}")),
        Target::Keyword(field) => RegexQuery::from_pattern(&regex, *field)
            .map(|q| Box::new(q) as Boxed)
            .map_err(|e| StoreError::Invalid(format!("pattern too complex: {e}"))),
        Target::Timestamp => Err(StoreError::Invalid(
            "wildcards do not apply to timestamp; use a range".into(),
        )),
    }
}

fn range_query(
    fields: &Fields,
    field: &str,
    lower: &Bound<String>,
    upper: &Bound<String>,
) -> Result<Boxed, StoreError> {
    match target(fields, Some(field)) {
        Target::Timestamp => {
            let bound = |b: &Bound<String>| -> Result<Bound<Term>, StoreError> {
                Ok(match b {
                    Bound::Included(v) => {
                        Bound::Included(Term::from_field_i64(fields.timestamp, parse_time(v)?))
                    }
                    Bound::Excluded(v) => {
                        Bound::Excluded(Term::from_field_i64(fields.timestamp, parse_time(v)?))
                    }
                    Bound::Unbounded => Bound::Unbounded,
                })
            };
            let (lower, upper) = (bound(lower)?, bound(upper)?);
            if matches!((&lower, &upper), (Bound::Unbounded, Bound::Unbounded)) {
                return Ok(Box::new(AllQuery));
            }
            Ok(Box::new(RangeQuery::new(lower, upper)))
        }
        Target::Json(name) => {
            let make = |value: Term| value;
            // Integers, then floats; open ends become the type's extremes so the term
            // range never leaves this path and type.
            if let (Some(lo), Some(hi)) = (
                map_bound(lower, |v| v.parse::<i64>().ok()),
                map_bound(upper, |v| v.parse::<i64>().ok()),
            ) {
                let term = |n: i64| {
                    let mut t = json_term(fields, &name);
                    t.append_type_and_fast_value(n);
                    make(t)
                };
                let lo = match lo {
                    Bound::Unbounded => Bound::Included(term(i64::MIN)),
                    other => other.map(term),
                };
                let hi = match hi {
                    Bound::Unbounded => Bound::Included(term(i64::MAX)),
                    other => other.map(term),
                };
                return Ok(Box::new(InvertedIndexRangeQuery::new(lo, hi)));
            }
            let term = |s: &str| {
                let mut t = json_term(fields, &name);
                t.append_type_and_str(s);
                t
            };
            let lo = match lower {
                Bound::Unbounded => Bound::Included(term("")),
                Bound::Included(v) => Bound::Included(term(&v.to_lowercase())),
                Bound::Excluded(v) => Bound::Excluded(term(&v.to_lowercase())),
            };
            let hi = match upper {
                Bound::Unbounded => Bound::Included(term("\u{10ffff}")),
                Bound::Included(v) => Bound::Included(term(&v.to_lowercase())),
                Bound::Excluded(v) => Bound::Excluded(term(&v.to_lowercase())),
            };
            Ok(Box::new(InvertedIndexRangeQuery::new(lo, hi)))
        }
        _ => Err(StoreError::Invalid(format!(
            "ranges do not apply to {field}"
        ))),
    }
}

fn translate(
    fields: &Fields,
    names: &Expansion,
    query: &Query,
    request: &EventQuery,
) -> Result<Boxed, StoreError> {
    Ok(match query {
        Query::All => Box::new(AllQuery),
        Query::And(parts) => {
            let mut clauses = Vec::with_capacity(parts.len() + 1);
            let mut positive = false;
            for part in parts {
                match part {
                    Query::Not(inner) => {
                        clauses.push((Occur::MustNot, translate(fields, names, inner, request)?))
                    }
                    other => {
                        positive = true;
                        clauses.push((Occur::Must, translate(fields, names, other, request)?));
                    }
                }
            }
            if !positive {
                clauses.push((Occur::Must, Box::new(AllQuery)));
            }
            Box::new(BooleanQuery::new(clauses))
        }
        Query::Or(parts) => any_of(
            parts
                .iter()
                .map(|p| translate(fields, names, p, request))
                .collect::<Result<_, _>>()?,
        ),
        Query::Not(inner) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(AllQuery)),
            (Occur::MustNot, translate(fields, names, inner, request)?),
        ])),
        Query::Term { field, value } | Query::Phrase { field, value } => {
            value_query(fields, names, &target(fields, field.as_deref()), value)?
        }
        Query::Wildcard { field, pattern } => {
            wildcard_query(fields, &target(fields, field.as_deref()), pattern)?
        }
        Query::Range {
            field,
            lower,
            upper,
        } => range_query(fields, field, lower, upper)?,
        Query::Exists { field } => match target(fields, Some(field)) {
            Target::Json(name) => json_regex(fields, &name, ".*")?,
            _ => Box::new(AllQuery),
        },
        Query::Annotation(annotation) => Box::new(EventSetQuery::new(
            crate::event_set::set_for(request, annotation)?.clone(),
        )),
    })
}

fn keyword_terms(field: Field, values: &[String], lowercase: bool) -> Boxed {
    any_of(
        values
            .iter()
            .map(|v| {
                let v = if lowercase {
                    v.to_lowercase()
                } else {
                    v.clone()
                };
                Box::new(TermQuery::new(
                    Term::from_field_text(field, &v),
                    IndexRecordOption::Basic,
                )) as Boxed
            })
            .collect(),
    )
}

/// Whether `query` has a clause without a field (searched under every field name).
pub fn has_fieldless(query: &Query) -> bool {
    match query {
        Query::And(parts) | Query::Or(parts) => parts.iter().any(has_fieldless),
        Query::Not(inner) => has_fieldless(inner),
        Query::Term { field, .. } | Query::Phrase { field, .. } => field.is_none(),
        Query::Wildcard { field, .. } => field.is_none(),
        Query::All | Query::Range { .. } | Query::Exists { .. } | Query::Annotation(_) => false,
    }
}

/// The full query: the analyst's query, the case, filters, time range and cursor.
pub fn build(
    fields: &Fields,
    names: &Expansion,
    query: &EventQuery,
    with_cursor: bool,
) -> Result<Boxed, StoreError> {
    let mut clauses: Vec<(Occur, Boxed)> = vec![(
        Occur::Must,
        Box::new(TermQuery::new(
            Term::from_field_text(fields.case_id, &query.case_id),
            IndexRecordOption::Basic,
        )),
    )];
    // The empty query adds nothing to the case's term (alone, a term query is counted
    // from its document frequency).
    if query.query != Query::All {
        clauses.push((Occur::Must, translate(fields, names, &query.query, query)?));
    }
    crate::check_sets(query)?;
    for set in crate::event_set::required(query)? {
        clauses.push((Occur::Must, Box::new(EventSetQuery::new(set.clone()))));
    }
    if !query.file_ids.is_empty() {
        clauses.push((
            Occur::Must,
            keyword_terms(fields.file_id, &query.file_ids, false),
        ));
    }
    if !query.channels.is_empty() {
        clauses.push((
            Occur::Must,
            keyword_terms(fields.channel, &query.channels, true),
        ));
    }
    if !query.computers.is_empty() {
        clauses.push((
            Occur::Must,
            keyword_terms(fields.computer, &query.computers, true),
        ));
    }
    if !query.event_codes.is_empty() {
        clauses.push((
            Occur::Must,
            any_of(
                query
                    .event_codes
                    .iter()
                    .map(|code| {
                        Box::new(TermQuery::new(
                            Term::from_field_u64(fields.event_code, u64::from(*code)),
                            IndexRecordOption::Basic,
                        )) as Boxed
                    })
                    .collect(),
            ),
        ));
    }
    if query.start_micros.is_some() || query.end_micros.is_some() {
        let lower = query.start_micros.map_or(Bound::Unbounded, |t| {
            Bound::Included(Term::from_field_i64(fields.timestamp, t))
        });
        let upper = query.end_micros.map_or(Bound::Unbounded, |t| {
            Bound::Excluded(Term::from_field_i64(fields.timestamp, t))
        });
        clauses.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
    }
    if with_cursor && let Some(cursor) = query.after {
        clauses.push((Occur::Must, after_cursor(fields, query.sort, cursor)));
    }
    if clauses.len() == 1
        && let Some((_, only)) = clauses.pop()
    {
        return Ok(only);
    }
    Ok(Box::new(BooleanQuery::new(clauses)))
}

/// Events strictly after `cursor` in the page order (timestamp, then tie-breaker).
pub fn after_cursor(fields: &Fields, sort: SortOrder, cursor: crate::Cursor) -> Boxed {
    let ts = |t: i64| Term::from_field_i64(fields.timestamp, t);
    let tb = |t: u64| Term::from_field_u64(fields.tiebreak, t);
    let (later, same_and_later): (Boxed, Boxed) = match sort {
        SortOrder::Ascending => (
            Box::new(RangeQuery::new(
                Bound::Excluded(ts(cursor.timestamp_micros)),
                Bound::Unbounded,
            )),
            Box::new(RangeQuery::new(
                Bound::Excluded(tb(cursor.tiebreak)),
                Bound::Unbounded,
            )),
        ),
        SortOrder::Descending => (
            Box::new(RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(ts(cursor.timestamp_micros)),
            )),
            Box::new(RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(tb(cursor.tiebreak)),
            )),
        ),
    };
    let same_time: Boxed = Box::new(RangeQuery::new(
        Bound::Included(ts(cursor.timestamp_micros)),
        Bound::Included(ts(cursor.timestamp_micros)),
    ));
    any_of(vec![
        later,
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, same_time),
            (Occur::Must, same_and_later),
        ])),
    ])
}
