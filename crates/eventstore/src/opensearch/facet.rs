//! Facets on OpenSearch: a `terms` aggregation over the selection. A flattened field's
//! whole values are the `field_terms` entries under its key (`<key>\x1e<type><value>`,
//! see `document`), picked out with an `include` pattern and decoded back; keyword
//! columns are aggregated directly. Counts are OpenSearch's (exact for a one-shard
//! index; with more shards, `shard_size` is raised to keep them close).

use super::document::{KEY_SEPARATOR, field_key};
use super::translate;
use crate::{EventQuery, Facet, FacetValue, StoreError};
use serde_json::{Value, json};

/// Escapes `text` for a Lucene regular expression.
fn regex_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if !c.is_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The search body and the prefix of the terms to decode (empty for a column).
pub fn body(query: &EventQuery, field: &str, top: usize) -> Result<(Value, String), StoreError> {
    let (column, prefix) = match field {
        "file_id" | "source" => (field.to_string(), String::new()),
        "event_id" | "locator" | "timestamp" | "@timestamp" => {
            return Err(StoreError::Invalid(format!(
                "{field} has one value per event: facets need a field events share"
            )));
        }
        name => (
            "field_terms".to_string(),
            format!("{}{KEY_SEPARATOR}", field_key(name)),
        ),
    };
    let mut terms = json!({"field": column, "size": top, "shard_size": top * 10 + 100});
    if !prefix.is_empty() {
        terms["include"] = json!(format!("{}.*", regex_literal(&prefix)));
    }
    let body = json!({
        "query": translate::build(query)?,
        "size": 0,
        "track_total_hits": true,
        "aggs": {"facet": {"terms": terms}},
    });
    Ok((body, prefix))
}

/// A `field_terms` value (type letter, then the encoded value) as display text.
fn decode(entry: &str) -> Option<String> {
    let mut chars = entry.chars();
    let kind = chars.next()?;
    let value = chars.as_str();
    let number = || u64::from_str_radix(value, 16).ok();
    Some(match kind {
        's' => value.to_string(),
        'b' => value.to_string(),
        'i' => ((number()? ^ (1 << 63)) as i64).to_string(),
        'u' => number()?.to_string(),
        'f' => {
            let ordered = number()?;
            let bits = if ordered >> 63 == 1 {
                ordered ^ (1 << 63)
            } else {
                !ordered
            };
            f64::from_bits(bits).to_string()
        }
        _ => return None,
    })
}

pub fn read(answer: &Value, field: &str, prefix: &str) -> Result<Facet, StoreError> {
    let malformed =
        || StoreError::Internal("OpenSearch answered a facet without its buckets".into());
    let aggregation = answer
        .pointer("/aggregations/facet")
        .ok_or_else(malformed)?;
    let buckets = aggregation["buckets"].as_array().ok_or_else(malformed)?;
    let mut values = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let key = bucket["key"]
            .as_str()
            .map(str::to_string)
            .or_else(|| bucket["key"].as_i64().map(|n| n.to_string()))
            .ok_or_else(malformed)?;
        let count = bucket["doc_count"].as_u64().ok_or_else(malformed)?;
        let value = if prefix.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(prefix).and_then(decode)
        };
        if let Some(value) = value {
            values.push(FacetValue { value, count });
        }
    }
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    Ok(Facet {
        field: field.to_string(),
        values,
        other: aggregation["sum_other_doc_count"].as_u64().unwrap_or(0),
        selected: answer
            .pointer("/hits/total/value")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opensearch::document::{encode_f64, encode_i64};

    #[test]
    fn entries_decode_to_their_values() {
        assert_eq!(decode(&format!("i{}", encode_i64(-42))).unwrap(), "-42");
        assert_eq!(decode(&format!("i{}", encode_i64(4624))).unwrap(), "4624");
        assert_eq!(decode(&format!("f{}", encode_f64(-1.5))).unwrap(), "-1.5");
        assert_eq!(decode(&format!("f{}", encode_f64(2.25))).unwrap(), "2.25");
        assert_eq!(decode("sadmin").unwrap(), "admin");
        assert_eq!(regex_literal("a.b\u{1e}"), "a\\.b\\\u{1e}");
    }
}
