//! Facets on tantivy: the top values of one field over a selection, exact, from the
//! term dictionary and postings (no stored document is read). Per segment, the
//! selection becomes a bit set; every term of the field's path then counts the selected
//! documents in its postings. Values are whole values: a flattened field's path also
//! holds the words of its values (at positions 1 and up), so a term made of word
//! characters only counts a document only where it sits at position 0 (the whole
//! value). Bounded: at most [`MAX_FACET_DISTINCT`] distinct values and
//! [`MAX_FACET_POSTINGS`] postings read, else a clear refusal.

use super::schema::Fields;
use super::translate;
use crate::{EventQuery, Facet, FacetValue, StoreError};
use std::collections::HashMap;
use tantivy::postings::Postings;
use tantivy::query::{EnableScoring, Query};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{BitSet, DocSet, Searcher, TERMINATED, Term};

/// Most distinct values one facet may count.
pub const MAX_FACET_DISTINCT: usize = 1_000_000;
/// Most postings one facet may read (a field whose values are long texts over a large
/// selection is refused rather than walked without end).
pub const MAX_FACET_POSTINGS: u64 = 400_000_000;

/// Where the facet's terms are.
enum Source {
    /// A keyword column: every term is a whole (lower-cased) value.
    Keyword(Field),
    /// A flattened field: the terms under this JSON path prefix (path, end-of-path).
    Json(Vec<u8>),
}

fn source(fields: &Fields, field: &str) -> Result<Source, StoreError> {
    Ok(match field {
        "file_id" => Source::Keyword(fields.file_id),
        "source" => Source::Keyword(fields.source),
        "event_id" | "locator" | "timestamp" | "@timestamp" => {
            return Err(StoreError::Invalid(format!(
                "{field} has one value per event: facets need a field events share"
            )));
        }
        name => {
            let mut term =
                Term::from_field_json_path(fields.fields, &name.replace('.', "\\."), false);
            term.append_type_and_str("");
            let key = term.serialized_value_bytes().to_vec();
            // Path, end-of-path byte (without the type byte).
            Source::Json(key[..key.len().saturating_sub(1)].to_vec())
        }
    })
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The display text of a JSON term's value (type byte first), if a type facets count.
fn json_value(bytes: &[u8]) -> Option<(String, bool)> {
    let (&kind, value) = bytes.split_first()?;
    let number = || <[u8; 8]>::try_from(value).ok().map(u64::from_be_bytes);
    Some(match kind {
        b's' => {
            let text = std::str::from_utf8(value).ok()?;
            // A term of word characters only may be a word of a longer value.
            let maybe_word = !value.is_empty() && value.iter().all(|b| is_word_byte(*b));
            (text.to_string(), maybe_word)
        }
        b'i' => (tantivy::u64_to_i64(number()?).to_string(), false),
        b'u' => (number()?.to_string(), false),
        b'f' => (tantivy::u64_to_f64(number()?).to_string(), false),
        b'o' => ((number()? != 0).to_string(), false),
        _ => return None,
    })
}

/// Counts `count` more documents of `value` (none: nothing to count).
fn add(
    counts: &mut HashMap<String, u64>,
    field: &str,
    value: String,
    count: u64,
) -> Result<(), StoreError> {
    if count == 0 {
        return Ok(());
    }
    if !counts.contains_key(&value) && counts.len() >= MAX_FACET_DISTINCT {
        return Err(StoreError::Invalid(format!(
            "{field} has more than {MAX_FACET_DISTINCT} distinct values in this selection; \
             narrow it"
        )));
    }
    *counts.entry(value).or_default() += count;
    Ok(())
}

/// The top `top` values of `field` over the selection of `query`.
pub fn facet(
    searcher: &Searcher,
    fields: &Fields,
    names: &super::paths::Expansion,
    query: &EventQuery,
    field: &str,
    top: usize,
) -> Result<Facet, StoreError> {
    let internal = |e: &dyn std::fmt::Display| StoreError::Internal(e.to_string());
    let source = source(fields, field)?;
    let selection = translate::build(fields, names, query, false)?;
    let weight = selection
        .weight(EnableScoring::disabled_from_searcher(searcher))
        .map_err(|e| internal(&e))?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut selected_total = 0u64;
    let mut postings_read = 0u64;
    let mut positions = Vec::new();
    for reader in searcher.segment_readers() {
        let mut selected = BitSet::with_max_value(reader.max_doc().max(1));
        let mut scorer = weight.scorer(reader, 1.0).map_err(|e| internal(&e))?;
        let alive = reader.alive_bitset();
        let mut doc = scorer.doc();
        while doc != TERMINATED {
            if alive.is_none_or(|alive| alive.is_alive(doc)) {
                selected.insert(doc);
                selected_total += 1;
            }
            doc = scorer.advance();
        }
        if selected.len() == 0 {
            continue;
        }
        // The whole segment selected (and nothing deleted): a whole-value term counts
        // its document frequency, read from the dictionary without its postings.
        let everything = alive.is_none() && selected.len() == reader.max_doc() as usize;
        let (index_field, prefix) = match &source {
            Source::Keyword(field) => (*field, Vec::new()),
            Source::Json(prefix) => (fields.fields, prefix.clone()),
        };
        let inverted = reader
            .inverted_index(index_field)
            .map_err(|e| internal(&e))?;
        let mut range = inverted.terms().range();
        if !prefix.is_empty() {
            let mut end = prefix.clone();
            if let Some(last) = end.last_mut() {
                *last += 1;
            }
            range = range.ge(&prefix).lt(&end);
        }
        let mut terms = range.into_stream().map_err(|e| internal(&e))?;
        while terms.advance() {
            let key = terms.key();
            let (value, maybe_word) = match &source {
                Source::Keyword(_) => (String::from_utf8_lossy(key).to_string(), false),
                Source::Json(_) => match json_value(&key[prefix.len()..]) {
                    Some(found) => found,
                    None => continue,
                },
            };
            let info = terms.value();
            if everything && !maybe_word {
                add(&mut counts, field, value, u64::from(info.doc_freq))?;
                continue;
            }
            postings_read += u64::from(info.doc_freq);
            if postings_read > MAX_FACET_POSTINGS {
                return Err(StoreError::Invalid(format!(
                    "{field} holds too many words to count over this selection (more than \
                     {MAX_FACET_POSTINGS} postings); narrow the selection or pick a field of \
                     short values"
                )));
            }
            let option = if maybe_word {
                IndexRecordOption::WithFreqsAndPositions
            } else {
                IndexRecordOption::Basic
            };
            let mut postings = inverted
                .read_postings_from_terminfo(info, option)
                .map_err(|e| internal(&e))?;
            let mut count = 0u64;
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if everything || selected.contains(doc) {
                    let whole = if maybe_word {
                        positions.clear();
                        postings.positions(&mut positions);
                        positions.first() == Some(&0)
                    } else {
                        true
                    };
                    if whole {
                        count += 1;
                    }
                }
                doc = postings.advance();
            }
            add(&mut counts, field, value, count)?;
        }
    }
    let mut values: Vec<FacetValue> = counts
        .into_iter()
        .map(|(value, count)| FacetValue { value, count })
        .collect();
    let occurrences: u64 = values.iter().map(|v| v.count).sum();
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    values.truncate(top);
    let shown: u64 = values.iter().map(|v| v.count).sum();
    Ok(Facet {
        field: field.to_string(),
        values,
        other: occurrences - shown,
        selected: selected_total,
    })
}
