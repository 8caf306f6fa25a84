//! From the shared [`Query`] language (plus filters, time range and sort) to the
//! OpenSearch query DSL, matching what the tantivy backend answers:
//! - a field's value matches case-insensitively as the whole value (`field_terms`, type
//!   `s`), as a word or a phrase of words (`field_words`), or as the number it spells
//!   (`field_terms`, types `i`/`f`);
//! - a field-less value matches the whole of any value (`text.whole`) or its words as
//!   a phrase (`text`, analysed like the tantivy tokenizer);
//! - wildcards apply, lower-cased, to whole values and words of strings;
//! - ranges compare numbers as numbers when both bounds are integers, else strings;
//! - `event_id`, `file_id`, `source`, `locator` and `timestamp` address the event's own
//!   columns, exactly as on tantivy.

use super::document::{
    KEY_SEPARATOR, encode_f64, encode_i64, field_key, sortable_tiebreak, term_entry, value_words,
    word_token,
};
use crate::query::{Query, map_bound, parse_time};
use crate::{Cursor, EventQuery, SortOrder, StoreError};
use serde_json::{Map, Value, json};
use std::ops::Bound;

/// Where a query field points.
enum Target<'a> {
    Keyword(&'static str),
    Timestamp,
    Field(&'a str),
    Text,
}

fn target(field: Option<&str>) -> Target<'_> {
    match field {
        None => Target::Text,
        Some("event_id") => Target::Keyword("event_id"),
        Some("file_id") => Target::Keyword("file_id"),
        Some("source") => Target::Keyword("source"),
        Some("locator") => Target::Keyword("locator"),
        Some("timestamp" | "@timestamp") => Target::Timestamp,
        Some(name) => Target::Field(name),
    }
}

fn match_all() -> Value {
    json!({"match_all": {}})
}

fn any_of(mut queries: Vec<Value>) -> Value {
    match queries.len() {
        0 => json!({"match_none": {}}),
        1 => queries.remove(0),
        _ => json!({"bool": {"should": queries, "minimum_should_match": 1}}),
    }
}

fn term(field: &str, value: impl Into<Value>) -> Value {
    json!({"term": {field: {"value": value.into()}}})
}

fn wildcard(field: &str, pattern: String) -> Value {
    json!({"wildcard": {field: {"value": pattern}}})
}

fn prefix(field: &str, value: String) -> Value {
    json!({"prefix": {field: {"value": value}}})
}

fn range(field: &str, lower: Bound<Value>, upper: Bound<Value>) -> Value {
    let mut bounds = Map::new();
    match lower {
        Bound::Included(v) => drop(bounds.insert("gte".into(), v)),
        Bound::Excluded(v) => drop(bounds.insert("gt".into(), v)),
        Bound::Unbounded => {}
    }
    match upper {
        Bound::Included(v) => drop(bounds.insert("lte".into(), v)),
        Bound::Excluded(v) => drop(bounds.insert("lt".into(), v)),
        Bound::Unbounded => {}
    }
    json!({"range": {field: bounds}})
}

/// Escapes text that must match literally inside a Lucene wildcard pattern.
fn wildcard_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '?') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The analyst's pattern, lower-cased, with `*` and `?` as wildcards and every other
/// character literal (a backslash included).
fn wildcard_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.to_lowercase().chars() {
        if c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A word or value: the whole value, its words (as a phrase), or the number it spells.
fn value_query(target: &Target, value: &str) -> Result<Value, StoreError> {
    let lowered = value.to_lowercase();
    Ok(match target {
        Target::Keyword(field) => term(field, value),
        Target::Timestamp => {
            let micros = parse_time(value)?;
            range(
                "timestamp_micros",
                Bound::Included(json!(micros)),
                Bound::Included(json!(micros)),
            )
        }
        Target::Text => any_of(vec![
            term("text.whole", lowered),
            json!({"match_phrase": {"text": {"query": value}}}),
        ]),
        Target::Field(name) => {
            let key = field_key(name);
            let mut alternatives = vec![term("field_terms", term_entry(&key, 's', &lowered))];
            let words = value_words(value);
            match words.as_slice() {
                [] => {}
                [word] => alternatives.push(term("field_words", word_token(&key, word))),
                _ => {
                    let phrase: Vec<String> = words.iter().map(|w| word_token(&key, w)).collect();
                    alternatives.push(json!({
                        "match_phrase": {"field_words": {"query": phrase.join(" ")}}
                    }));
                }
            }
            if let Ok(number) = value.parse::<i64>() {
                alternatives.push(term(
                    "field_terms",
                    term_entry(&key, 'i', &encode_i64(number)),
                ));
            } else if let Ok(number) = value.parse::<f64>()
                && number.is_finite()
            {
                alternatives.push(term(
                    "field_terms",
                    term_entry(&key, 'f', &encode_f64(number)),
                ));
            }
            any_of(alternatives)
        }
    })
}

fn wildcard_query(target: &Target, pattern: &str) -> Result<Value, StoreError> {
    let pattern = wildcard_pattern(pattern);
    Ok(match target {
        Target::Keyword(field) => wildcard(field, pattern),
        Target::Timestamp => {
            return Err(StoreError::Invalid(
                "wildcards do not apply to timestamp; use a range".into(),
            ));
        }
        Target::Text => any_of(vec![
            wildcard("text.whole", pattern.clone()),
            wildcard("text", pattern),
        ]),
        Target::Field(name) => {
            let key = wildcard_literal(&format!("{}{KEY_SEPARATOR}", field_key(name)));
            any_of(vec![
                wildcard("field_terms", format!("{key}s{pattern}")),
                wildcard("field_words", format!("{key}{pattern}")),
            ])
        }
    })
}

fn range_query(
    field: &str,
    lower: &Bound<String>,
    upper: &Bound<String>,
) -> Result<Value, StoreError> {
    match target(Some(field)) {
        Target::Timestamp => {
            let micros = |bound: &Bound<String>| -> Result<Bound<i64>, StoreError> {
                Ok(match bound {
                    Bound::Included(v) => Bound::Included(parse_time(v)?),
                    Bound::Excluded(v) => Bound::Excluded(parse_time(v)?),
                    Bound::Unbounded => Bound::Unbounded,
                })
            };
            let (lower, upper) = (micros(lower)?, micros(upper)?);
            if matches!((&lower, &upper), (Bound::Unbounded, Bound::Unbounded)) {
                return Ok(match_all());
            }
            Ok(range(
                "timestamp_micros",
                lower.map(|v| json!(v)),
                upper.map(|v| json!(v)),
            ))
        }
        Target::Field(name) => {
            let key = field_key(name);
            // Integers compare as numbers (over integer values only, as on tantivy);
            // open ends become the type's extremes so the range stays on this key.
            if let (Some(lower), Some(upper)) = (
                map_bound(lower, |v| v.parse::<i64>().ok()),
                map_bound(upper, |v| v.parse::<i64>().ok()),
            ) {
                let entry = |n: i64| json!(term_entry(&key, 'i', &encode_i64(n)));
                let lower = match lower {
                    Bound::Unbounded => Bound::Included(entry(i64::MIN)),
                    other => other.map(entry),
                };
                let upper = match upper {
                    Bound::Unbounded => Bound::Included(entry(i64::MAX)),
                    other => other.map(entry),
                };
                return Ok(range("field_terms", lower, upper));
            }
            // Strings compare lower-cased, over whole values and words alike.
            let whole = |v: &String| json!(term_entry(&key, 's', &v.to_lowercase()));
            let word = |v: &String| json!(word_token(&key, &v.to_lowercase()));
            let whole_range = range(
                "field_terms",
                match lower {
                    Bound::Unbounded => Bound::Included(json!(term_entry(&key, 's', ""))),
                    other => other.as_ref().map(whole),
                },
                match upper {
                    Bound::Unbounded => Bound::Excluded(json!(term_entry(&key, 't', ""))),
                    other => other.as_ref().map(whole),
                },
            );
            let word_range = range(
                "field_words",
                match lower {
                    Bound::Unbounded => Bound::Included(json!(word_token(&key, ""))),
                    other => other.as_ref().map(word),
                },
                match upper {
                    Bound::Unbounded => Bound::Excluded(json!(format!("{key}\u{1f}"))),
                    other => other.as_ref().map(word),
                },
            );
            Ok(any_of(vec![whole_range, word_range]))
        }
        _ => Err(StoreError::Invalid(format!(
            "ranges do not apply to {field}"
        ))),
    }
}

/// The members of an event set as a `terms` filter on the tie-breaker (the index's
/// `max_terms_count` is raised to [`crate::MAX_SET_MEMBERS`] when it is created).
fn in_set(set: &crate::EventSet) -> Value {
    if set.is_empty() {
        return json!({"match_none": {}});
    }
    let members: Vec<i64> = set
        .members()
        .iter()
        .map(|t| sortable_tiebreak(*t))
        .collect();
    json!({"terms": {"tiebreak": members}})
}

/// The analyst's query as OpenSearch query DSL (`request` gives the annotation sets).
pub fn translate(query: &Query, request: &EventQuery) -> Result<Value, StoreError> {
    let translate = |query: &Query| translate(query, request);
    Ok(match query {
        Query::All => match_all(),
        Query::And(parts) => {
            let mut filter = Vec::with_capacity(parts.len());
            let mut must_not = Vec::new();
            for part in parts {
                match part {
                    Query::Not(inner) => must_not.push(translate(inner)?),
                    other => filter.push(translate(other)?),
                }
            }
            // A bool with only must_not clauses matches everything else, like
            // tantivy's AllQuery + MustNot.
            let mut bool = Map::new();
            if !filter.is_empty() {
                bool.insert("filter".into(), Value::Array(filter));
            }
            if !must_not.is_empty() {
                bool.insert("must_not".into(), Value::Array(must_not));
            }
            json!({"bool": bool})
        }
        Query::Or(parts) => any_of(parts.iter().map(translate).collect::<Result<_, _>>()?),
        Query::Not(inner) => json!({"bool": {"must_not": [translate(inner)?]}}),
        Query::Term { field, value } | Query::Phrase { field, value } => {
            value_query(&target(field.as_deref()), value)?
        }
        Query::Wildcard { field, pattern } => wildcard_query(&target(field.as_deref()), pattern)?,
        Query::Range {
            field,
            lower,
            upper,
        } => range_query(field, lower, upper)?,
        Query::Exists { field } => match target(Some(field)) {
            Target::Field(name) => {
                let key = word_token(&field_key(name), "");
                any_of(vec![
                    prefix("field_terms", key.clone()),
                    prefix("field_words", key),
                ])
            }
            _ => match_all(),
        },
        Query::Annotation(annotation) => in_set(crate::event_set::set_for(request, annotation)?),
    })
}

/// The case, the analyst's query, the filters and the time range, as one query.
pub fn build(query: &EventQuery) -> Result<Value, StoreError> {
    let mut filter = vec![term("case_id", query.case_id.as_str())];
    if query.query != Query::All {
        filter.push(translate(&query.query, query)?);
    }
    crate::check_sets(query)?;
    for set in crate::event_set::required(query)? {
        filter.push(in_set(set));
    }
    if !query.file_ids.is_empty() {
        filter.push(json!({"terms": {"file_id": query.file_ids}}));
    }
    if !query.channels.is_empty() {
        let lowered: Vec<String> = query.channels.iter().map(|c| c.to_lowercase()).collect();
        filter.push(json!({"terms": {"channel": lowered}}));
    }
    if !query.computers.is_empty() {
        let lowered: Vec<String> = query.computers.iter().map(|c| c.to_lowercase()).collect();
        filter.push(json!({"terms": {"computer": lowered}}));
    }
    if !query.event_codes.is_empty() {
        filter.push(json!({"terms": {"event_code": query.event_codes}}));
    }
    if query.start_micros.is_some() || query.end_micros.is_some() {
        filter.push(range(
            "timestamp_micros",
            query
                .start_micros
                .map_or(Bound::Unbounded, |t| Bound::Included(json!(t))),
            query
                .end_micros
                .map_or(Bound::Unbounded, |t| Bound::Excluded(json!(t))),
        ));
    }
    Ok(json!({"bool": {"filter": filter}}))
}

/// Events of one file of one case.
pub fn case_and_file(case_id: &str, file_id: &str) -> Value {
    json!({"bool": {"filter": [term("case_id", case_id), term("file_id", file_id)]}})
}

pub fn case_only(case_id: &str) -> Value {
    json!({"bool": {"filter": [term("case_id", case_id)]}})
}

/// The page order: timestamp, then the event id's tie-breaker.
pub fn sort(order: SortOrder) -> Value {
    let order = match order {
        SortOrder::Ascending => "asc",
        SortOrder::Descending => "desc",
    };
    json!([
        {"timestamp_micros": {"order": order}},
        {"tiebreak": {"order": order}}
    ])
}

/// `search_after` values for a cursor (the stored, sortable tie-breaker).
pub fn search_after(cursor: Cursor) -> Value {
    json!([cursor.timestamp_micros, sortable_tiebreak(cursor.tiebreak)])
}

/// The body of one search page: `size` is one more than the page so that `next` is
/// only set when more events follow.
pub fn search_body(query: &EventQuery) -> Result<Value, StoreError> {
    let mut body = json!({
        "query": build(query)?,
        "sort": sort(query.sort),
        "size": query.page_size + 1,
        "track_total_hits": !query.skip_total,
    });
    if let Some(cursor) = query.after {
        body["search_after"] = search_after(cursor);
    }
    if query.skip_raw {
        body["_source"] = json!({"excludes": ["raw"]});
    }
    Ok(body)
}

/// First and last matching timestamps (aggregations answer in doubles, exact for
/// timestamps within ±2^53 µs, about ±285 years around 1970).
pub fn edges_body(query: &EventQuery) -> Result<Value, StoreError> {
    Ok(json!({
        "size": 0,
        "track_total_hits": false,
        "query": build(query)?,
        "aggs": {
            "first": {"min": {"field": "timestamp_micros"}},
            "last": {"max": {"field": "timestamp_micros"}}
        }
    }))
}

pub fn histogram_body(
    query: &EventQuery,
    interval_micros: i64,
    first_bucket: i64,
    last: i64,
) -> Result<Value, StoreError> {
    Ok(json!({
        "size": 0,
        "track_total_hits": false,
        "query": build(query)?,
        "aggs": {
            "buckets": {
                "histogram": {
                    "field": "timestamp_micros",
                    "interval": interval_micros,
                    "min_doc_count": 0,
                    "extended_bounds": {"min": first_bucket, "max": last}
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_query;

    fn dsl(text: &str) -> Value {
        translate(
            &parse_query(text).unwrap(),
            &EventQuery::new("c", Query::All),
        )
        .unwrap()
    }

    fn sep(rest: &str) -> String {
        format!("{KEY_SEPARATOR}{rest}")
    }

    #[test]
    fn a_field_value_is_whole_value_word_or_number() {
        assert_eq!(
            dsl("EventID:4624"),
            json!({"bool": {"minimum_should_match": 1, "should": [
                {"term": {"field_terms": {"value": format!("EventID{}", sep("s4624"))}}},
                {"term": {"field_words": {"value": format!("EventID{}", sep("4624"))}}},
                {"term": {"field_terms": {"value": format!("EventID{}", sep(&format!("i{}", encode_i64(4624))))}}},
            ]}})
        );
        assert_eq!(
            dsl(r#"CommandLine:"Whoami /ALL""#),
            json!({"bool": {"minimum_should_match": 1, "should": [
                {"term": {"field_terms": {"value": format!("CommandLine{}", sep("swhoami /all"))}}},
                {"match_phrase": {"field_words": {"query": format!(
                    "CommandLine{} CommandLine{}", sep("whoami"), sep("all")
                )}}},
            ]}})
        );
        assert_eq!(
            dsl("Score:2.5")["bool"]["should"][2],
            json!({"term": {"field_terms": {"value": format!("Score{}", sep(&format!("f{}", encode_f64(2.5))))}}})
        );
    }

    #[test]
    fn field_less_values_search_the_catch_all() {
        assert_eq!(
            dsl("Mimikatz"),
            json!({"bool": {"minimum_should_match": 1, "should": [
                {"term": {"text.whole": {"value": "mimikatz"}}},
                {"match_phrase": {"text": {"query": "Mimikatz"}}},
            ]}})
        );
        assert_eq!(
            dsl("*Katz"),
            json!({"bool": {"minimum_should_match": 1, "should": [
                {"wildcard": {"text.whole": {"value": "*katz"}}},
                {"wildcard": {"text": {"value": "*katz"}}},
            ]}})
        );
    }

    #[test]
    fn wildcards_escape_the_key_and_backslashes() {
        assert_eq!(
            dsl(r"Image:*\\PowerShell.exe"),
            json!({"bool": {"minimum_should_match": 1, "should": [
                {"wildcard": {"field_terms": {"value": format!("Image{}", sep(r"s*\\powershell.exe"))}}},
                {"wildcard": {"field_words": {"value": format!("Image{}", sep(r"*\\powershell.exe"))}}},
            ]}})
        );
        assert_eq!(
            dsl(r"file_id:AB*"),
            json!({"wildcard": {"file_id": {"value": "ab*"}}})
        );
        assert!(matches!(
            translate(
                &parse_query("timestamp:2023*").unwrap(),
                &EventQuery::new("c", Query::All)
            ),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn ranges_are_numeric_for_integers_and_textual_otherwise() {
        assert_eq!(
            dsl("LogonType:{3 TO *]"),
            json!({"range": {"field_terms": {
                "gt": format!("LogonType{}", sep(&format!("i{}", encode_i64(3)))),
                "lte": format!("LogonType{}", sep(&format!("i{}", encode_i64(i64::MAX)))),
            }}})
        );
        assert_eq!(
            dsl("User:[A TO m}"),
            json!({"bool": {"minimum_should_match": 1, "should": [
                {"range": {"field_terms": {"gte": format!("User{}", sep("sa")), "lt": format!("User{}", sep("sm"))}}},
                {"range": {"field_words": {"gte": format!("User{}", sep("a")), "lt": format!("User{}", sep("m"))}}},
            ]}})
        );
        assert_eq!(
            dsl(r#"timestamp:["2023-11-14T22:13:22Z" TO *]"#),
            json!({"range": {"timestamp_micros": {"gte": 1_700_000_002_000_000i64}}})
        );
        assert_eq!(dsl("timestamp:[* TO *]"), json!({"match_all": {}}));
        assert!(matches!(
            translate(
                &parse_query("file_id:[a TO b]").unwrap(),
                &EventQuery::new("c", Query::All)
            ),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn boolean_structure_and_exists() {
        assert_eq!(
            dsl("event_id:abc -source:csv ParentImage:*"),
            json!({"bool": {
                "filter": [
                    {"term": {"event_id": {"value": "abc"}}},
                    {"bool": {"minimum_should_match": 1, "should": [
                        {"prefix": {"field_terms": {"value": format!("ParentImage{}", sep(""))}}},
                        {"prefix": {"field_words": {"value": format!("ParentImage{}", sep(""))}}},
                    ]}},
                ],
                "must_not": [{"term": {"source": {"value": "csv"}}}],
            }})
        );
        assert_eq!(
            dsl("NOT locator:x"),
            json!({"bool": {"must_not": [{"term": {"locator": {"value": "x"}}}]}})
        );
        assert_eq!(
            dsl("Odd\\ Name:x")["bool"]["should"][0],
            json!({"term": {"field_terms": {"value": format!("Odd%20Name{}", sep("sx"))}}})
        );
    }

    #[test]
    fn the_search_body_has_filters_sort_and_cursor() {
        let mut request = EventQuery::new("case-1", parse_query("").unwrap());
        request.file_ids = vec!["file-b".into()];
        request.channels = vec!["Security".into()];
        request.computers = vec!["WS01".into()];
        request.event_codes = vec![4624, 4625];
        request.start_micros = Some(10);
        request.end_micros = Some(20);
        request.sort = SortOrder::Descending;
        request.page_size = 40;
        request.after = Some(Cursor {
            timestamp_micros: 15,
            tiebreak: 0,
        });
        assert_eq!(
            search_body(&request).unwrap(),
            json!({
                "query": {"bool": {"filter": [
                    {"term": {"case_id": {"value": "case-1"}}},
                    {"terms": {"file_id": ["file-b"]}},
                    {"terms": {"channel": ["security"]}},
                    {"terms": {"computer": ["ws01"]}},
                    {"terms": {"event_code": [4624, 4625]}},
                    {"range": {"timestamp_micros": {"gte": 10, "lt": 20}}},
                ]}},
                "sort": [
                    {"timestamp_micros": {"order": "desc"}},
                    {"tiebreak": {"order": "desc"}}
                ],
                "size": 41,
                "track_total_hits": true,
                "search_after": [15, i64::MIN],
            })
        );
    }

    #[test]
    fn histogram_bodies() {
        let request = EventQuery::new("c", parse_query("EventID:1").unwrap());
        let edges = edges_body(&request).unwrap();
        assert_eq!(edges["size"], 0);
        assert_eq!(
            edges["aggs"]["first"],
            json!({"min": {"field": "timestamp_micros"}})
        );
        let body = histogram_body(
            &request,
            2_000_000,
            1_700_000_000_000_000,
            1_700_000_005_000_000,
        )
        .unwrap();
        assert_eq!(
            body["aggs"]["buckets"],
            json!({"histogram": {
                "field": "timestamp_micros",
                "interval": 2_000_000,
                "min_doc_count": 0,
                "extended_bounds": {"min": 1_700_000_000_000_000i64, "max": 1_700_000_005_000_000i64}
            }})
        );
    }
}
