//! `_bulk` bodies and answers: NDJSON `index` actions with the event id as `_id` and
//! the case as routing, cut into requests of at most a byte limit, and the per-item
//! outcome of each answer (written, to retry, refused with a reason).

use super::client::describe_error_object;
use super::document::to_document;
use crate::StoreError;
use casescope_evidence::Event;
use serde_json::{Value, json};

/// One event as its two NDJSON lines.
pub struct BulkItem {
    pub event_id: String,
    pub lines: Vec<u8>,
}

pub fn item(event: &Event) -> Result<BulkItem, StoreError> {
    let action = json!({"index": {"_id": event.event_id, "routing": event.case_id}});
    let mut lines = serde_json::to_vec(&action)
        .map_err(|e| StoreError::Internal(format!("bulk action as JSON: {e}")))?;
    lines.push(b'\n');
    lines.extend_from_slice(&to_document(event)?);
    lines.push(b'\n');
    Ok(BulkItem {
        event_id: event.event_id.clone(),
        lines,
    })
}

/// Gathers items into requests of at most a byte limit (an item larger than that goes
/// alone), keeping their order; only one request's items are held at a time.
pub struct Chunk {
    items: Vec<BulkItem>,
    bytes: usize,
    max_bytes: usize,
}

impl Chunk {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            items: Vec::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Adds an item; returns the full chunk to send when this item does not fit in it.
    pub fn push(&mut self, item: BulkItem) -> Option<Vec<BulkItem>> {
        let full = if !self.items.is_empty() && self.bytes + item.lines.len() > self.max_bytes {
            self.bytes = 0;
            Some(std::mem::take(&mut self.items))
        } else {
            None
        };
        self.bytes += item.lines.len();
        self.items.push(item);
        full
    }

    /// What is left to send.
    pub fn finish(self) -> Option<Vec<BulkItem>> {
        (!self.items.is_empty()).then_some(self.items)
    }
}

pub fn body(items: &[BulkItem]) -> Vec<u8> {
    let mut body = Vec::with_capacity(items.iter().map(|i| i.lines.len()).sum());
    for item in items {
        body.extend_from_slice(&item.lines);
    }
    body
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// Refused for now (429: queue full; 502–504: a shard not available): send again.
    Retry(String),
    /// Refused for good, with OpenSearch's error type and reason.
    Rejected(String),
}

/// Item statuses worth sending the same item again.
fn retryable_item(status: u64) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// The outcome of every item of a `_bulk` answer, in request order. The answer must
/// list exactly the items sent, with the ids sent.
pub fn outcomes(answer: &Value, sent: &[BulkItem]) -> Result<Vec<Outcome>, StoreError> {
    let malformed = |why: &str| StoreError::Internal(format!("the _bulk answer {why}"));
    let items = answer
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("has no items"))?;
    if items.len() != sent.len() {
        return Err(malformed(&format!(
            "lists {} items for {} sent",
            items.len(),
            sent.len()
        )));
    }
    items
        .iter()
        .zip(sent)
        .map(|(entry, item)| {
            let result = entry
                .as_object()
                .and_then(|actions| actions.values().next())
                .ok_or_else(|| malformed("has an item that is not an action result"))?;
            if let Some(id) = result.get("_id").and_then(Value::as_str)
                && id != item.event_id
            {
                return Err(malformed(&format!(
                    "answers for id {id} where {} was sent",
                    item.event_id
                )));
            }
            let status = result
                .get("status")
                .and_then(Value::as_u64)
                .ok_or_else(|| malformed("has an item without a status"))?;
            let reason = || {
                result
                    .get("error")
                    .map(describe_error_object)
                    .unwrap_or_else(|| format!("status {status}"))
            };
            Ok(match status {
                200..=299 => Outcome::Written,
                s if retryable_item(s) => Outcome::Retry(reason()),
                _ => Outcome::Rejected(reason()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(id: &str, size: usize) -> BulkItem {
        BulkItem {
            event_id: id.into(),
            lines: vec![b'x'; size],
        }
    }

    #[test]
    fn chunks_respect_the_byte_limit_and_order() {
        let items = vec![
            fake("a", 40),
            fake("b", 40),
            fake("c", 40),
            fake("d", 150),
            fake("e", 10),
        ];
        let mut chunk = Chunk::new(100);
        let mut chunks: Vec<Vec<BulkItem>> =
            items.into_iter().filter_map(|i| chunk.push(i)).collect();
        chunks.extend(chunk.finish());
        let ids: Vec<Vec<&str>> = chunks
            .iter()
            .map(|c| c.iter().map(|i| i.event_id.as_str()).collect())
            .collect();
        assert_eq!(ids, [vec!["a", "b"], vec!["c"], vec!["d"], vec!["e"]]);
    }

    #[test]
    fn an_item_is_an_action_line_and_a_document_line() {
        let event = Event {
            event_id: "0123456789abcdef0123456789abcdef".into(),
            case_id: "case-7".into(),
            file_id: "file-1".into(),
            source: "json",
            timestamp_micros: 1,
            locator: "line:1".into(),
            record_id: None,
            line: Some(1),
            event_code: None,
            channel: None,
            provider: None,
            computer: None,
            level: None,
            fields: serde_json::Map::new(),
            raw: casescope_evidence::RawJson::from_value(&json!({"a": 1})),
            fields_from_raw: false,
        };
        let item = item(&event).unwrap();
        let text = String::from_utf8(item.lines).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            serde_json::from_str::<Value>(lines[0]).unwrap(),
            json!({"index": {"_id": "0123456789abcdef0123456789abcdef", "routing": "case-7"}})
        );
        let document: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(document["file_id"], "file-1");
        assert!(text.ends_with('\n'));
    }

    /// An OpenSearch 2.x `_bulk` answer with created, updated, throttled and refused
    /// items (as returned with `filter_path` unset).
    #[test]
    fn a_mixed_bulk_answer_is_read_item_by_item() {
        let answer = json!({
            "took": 30,
            "errors": true,
            "items": [
                {"index": {"_index": "casescope-events", "_id": "a", "_version": 1, "result": "created",
                    "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": 0, "_primary_term": 1, "status": 201}},
                {"index": {"_index": "casescope-events", "_id": "b", "_version": 2, "result": "updated",
                    "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": 1, "_primary_term": 1, "status": 200}},
                {"index": {"_index": "casescope-events", "_id": "c", "status": 429,
                    "error": {"type": "es_rejected_execution_exception",
                        "reason": "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=104857600, max_coordinating_and_primary_bytes=53687091]"}}},
                {"index": {"_index": "casescope-events", "_id": "d", "status": 400,
                    "error": {"type": "mapper_parsing_exception",
                        "reason": "failed to parse field [timestamp_micros] of type [long] in document with id 'd'. Preview of field's value: 'soon'",
                        "caused_by": {"type": "illegal_argument_exception", "reason": "For input string: \"soon\""}}}},
                {"index": {"_index": "casescope-events", "_id": "e", "status": 503,
                    "error": {"type": "unavailable_shards_exception", "reason": "[casescope-events][0] primary shard is not active Timeout: [1m]"}}}
            ]
        });
        let sent: Vec<BulkItem> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|id| fake(id, 1))
            .collect();
        let outcomes = outcomes(&answer, &sent).unwrap();
        assert_eq!(outcomes[0], Outcome::Written);
        assert_eq!(outcomes[1], Outcome::Written);
        assert!(
            matches!(&outcomes[2], Outcome::Retry(r) if r.starts_with("es_rejected_execution_exception: rejected execution"))
        );
        assert_eq!(
            outcomes[3],
            Outcome::Rejected(
                "mapper_parsing_exception: failed to parse field [timestamp_micros] of type [long] \
                 in document with id 'd'. Preview of field's value: 'soon' \
                 (caused by: illegal_argument_exception: For input string: \"soon\")"
                    .into()
            )
        );
        assert!(
            matches!(&outcomes[4], Outcome::Retry(r) if r.starts_with("unavailable_shards_exception"))
        );
    }

    #[test]
    fn a_bulk_answer_that_does_not_fit_the_request_is_an_error() {
        let sent = vec![fake("a", 1), fake("b", 1)];
        for answer in [
            json!({"took": 1, "errors": false}),
            json!({"items": [{"index": {"_id": "a", "status": 201}}]}),
            json!({"items": [{"index": {"_id": "a", "status": 201}}, {"index": {"_id": "x", "status": 201}}]}),
            json!({"items": [{"index": {"_id": "a", "status": 201}}, {"index": {"_id": "b"}}]}),
            json!({"items": [{"index": {"_id": "a", "status": 201}}, 7]}),
        ] {
            assert!(
                matches!(outcomes(&answer, &sent), Err(StoreError::Internal(_))),
                "{answer}"
            );
        }
    }
}
