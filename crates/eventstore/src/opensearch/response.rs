//! Reading OpenSearch 2.x answers: search hits and totals, counts, documents by id,
//! aggregations, tasks and point-in-time ids. A missing or mistyped part is a
//! [`StoreError::Internal`] naming what was missing, never a panic.

use super::client::describe_error_object;
use super::document::from_source;
use crate::{Bucket, StoreError};
use casescope_evidence::Event;
use serde_json::Value;

fn malformed(what: &str) -> StoreError {
    StoreError::Internal(format!("OpenSearch's answer {what}"))
}

/// `hits.total` (an object with `value` since 7.0, a number with
/// `rest_total_hits_as_int`).
pub fn total(answer: &Value) -> Result<u64, StoreError> {
    let total = answer
        .pointer("/hits/total")
        .ok_or_else(|| malformed("has no hits.total"))?;
    total
        .get("value")
        .unwrap_or(total)
        .as_u64()
        .ok_or_else(|| malformed("has a hits.total that is not a count"))
}

pub struct Hit {
    pub event: Event,
    /// The hit's sort values, as given back in `search_after`.
    pub sort: Option<Value>,
}

pub fn hits(answer: &Value) -> Result<Vec<Hit>, StoreError> {
    let hits = answer
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("has no hits.hits"))?;
    hits.iter()
        .map(|hit| {
            let source = hit
                .get("_source")
                .ok_or_else(|| malformed("has a hit without _source"))?;
            Ok(Hit {
                event: from_source(source)?,
                sort: hit.get("sort").cloned(),
            })
        })
        .collect()
}

/// Shard failures in a 200 answer mean a partial result: refuse it rather than
/// answering with events missing.
pub fn require_all_shards(answer: &Value) -> Result<(), StoreError> {
    let failed = answer
        .pointer("/_shards/failed")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if failed == 0 {
        return Ok(());
    }
    let reason = answer
        .pointer("/_shards/failures/0/reason")
        .map(describe_error_object)
        .unwrap_or_else(|| "no reason given".into());
    Err(StoreError::Unavailable(format!(
        "{failed} shard(s) failed to answer: {reason}"
    )))
}

pub fn count(answer: &Value) -> Result<u64, StoreError> {
    require_all_shards(answer)?;
    answer
        .get("count")
        .and_then(Value::as_u64)
        .ok_or_else(|| malformed("has no count"))
}

/// The event of a `GET /<index>/_doc/<id>` answer, if found.
pub fn document(answer: &Value) -> Result<Option<Event>, StoreError> {
    let found = answer
        .get("found")
        .and_then(Value::as_bool)
        .ok_or_else(|| malformed("has no found flag"))?;
    if !found {
        return Ok(None);
    }
    let source = answer
        .get("_source")
        .ok_or_else(|| malformed("has a found document without _source"))?;
    from_source(source).map(Some)
}

/// An aggregation value in µs (aggregations answer in doubles).
fn micros(value: &Value) -> Result<Option<i64>, StoreError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => {
            let double = n
                .as_f64()
                .filter(|d| d.is_finite() && d.abs() < 9.2e18)
                .ok_or_else(|| malformed("has a timestamp out of range"))?;
            Ok(Some(double.round() as i64))
        }
        _ => Err(malformed("has a timestamp that is not a number")),
    }
}

/// First and last matching timestamps, `None` when nothing matched.
pub fn edges(answer: &Value) -> Result<Option<(i64, i64)>, StoreError> {
    require_all_shards(answer)?;
    let value = |name: &str| {
        answer
            .pointer(&format!("/aggregations/{name}/value"))
            .ok_or_else(|| malformed(&format!("has no {name} aggregation")))
            .and_then(micros)
    };
    Ok(match (value("first")?, value("last")?) {
        (Some(first), Some(last)) => Some((first, last)),
        _ => None,
    })
}

/// `buckets` buckets of `interval_micros` from `start`, counts from the histogram
/// aggregation (buckets it leaves out count zero).
pub fn histogram(
    answer: &Value,
    start: i64,
    interval_micros: i64,
    buckets: usize,
) -> Result<Vec<Bucket>, StoreError> {
    require_all_shards(answer)?;
    let listed = answer
        .pointer("/aggregations/buckets/buckets")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("has no histogram buckets"))?;
    let mut counts = vec![0u64; buckets];
    for bucket in listed {
        let key = bucket
            .get("key")
            .ok_or_else(|| malformed("has a bucket without a key"))
            .and_then(micros)?
            .ok_or_else(|| malformed("has a bucket without a key"))?;
        let count = bucket
            .get("doc_count")
            .and_then(Value::as_u64)
            .ok_or_else(|| malformed("has a bucket without doc_count"))?;
        let offset = key.saturating_sub(start);
        if offset < 0 || offset % interval_micros != 0 {
            return Err(malformed(&format!(
                "has a bucket at {key}, off the {interval_micros} µs grid from {start}"
            )));
        }
        if let Some(slot) = usize::try_from(offset / interval_micros)
            .ok()
            .and_then(|index| counts.get_mut(index))
        {
            *slot += count;
        }
    }
    Ok(crate::grid_buckets(start, interval_micros, counts))
}

/// A task started with `wait_for_completion=false`.
pub fn task_id(answer: &Value) -> Result<String, StoreError> {
    answer
        .get("task")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| malformed("has no task id"))
}

#[derive(Debug, PartialEq, Eq)]
pub enum TaskState {
    Running,
    /// A delete-by-query finished; how many documents it deleted.
    Deleted(u64),
}

/// The state of a `_delete_by_query` task (`GET /_tasks/<id>`); a task that ended in
/// an error, or with per-document failures, is an error.
pub fn delete_task(answer: &Value) -> Result<TaskState, StoreError> {
    let completed = answer
        .get("completed")
        .and_then(Value::as_bool)
        .ok_or_else(|| malformed("has no completed flag"))?;
    if !completed {
        return Ok(TaskState::Running);
    }
    if let Some(error) = answer.get("error") {
        return Err(StoreError::Unavailable(format!(
            "deleting the file's events failed: {}",
            describe_error_object(error)
        )));
    }
    let response = answer
        .get("response")
        .ok_or_else(|| malformed("has a completed task without response"))?;
    if let Some(failure) = response
        .get("failures")
        .and_then(Value::as_array)
        .and_then(|failures| failures.first())
    {
        let reason = failure
            .get("cause")
            .map(describe_error_object)
            .unwrap_or_else(|| failure.to_string());
        return Err(StoreError::Unavailable(format!(
            "deleting the file's events partly failed: {reason}"
        )));
    }
    Ok(TaskState::Deleted(
        response.get("deleted").and_then(Value::as_u64).unwrap_or(0),
    ))
}

pub fn pit_id(answer: &Value) -> Result<String, StoreError> {
    answer
        .get("pit_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| malformed("has no pit_id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(id: &str, timestamp: i64) -> Value {
        json!({
            "event_id": id, "case_id": "case-1", "file_id": "file-a", "source": "evtx",
            "timestamp_micros": timestamp, "@timestamp": timestamp / 1000,
            "tiebreak": 0, "locator": "record:1", "record_id": 1, "event_code": 4624,
            "level": 4, "channel": "Security", "computer": "WS01",
            "fields": {"EventID": 4624, "TargetUserName": "Administrator"},
            "raw": {"Event": {"System": {"EventRecordID": 1}}}
        })
    }

    /// A `_search` answer as OpenSearch 2.x gives it (sorted, so no scores).
    #[test]
    fn search_hits_totals_and_sort_values() {
        let answer = json!({
            "took": 5,
            "timed_out": false,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {
                "total": {"value": 250, "relation": "eq"},
                "max_score": null,
                "hits": [
                    {"_index": "casescope-events", "_id": "aa", "_score": null, "_routing": "case-1",
                     "_source": source("aa", 1_700_000_000_000_000), "sort": [1_700_000_000_000_000i64, -9_223_372_036_854_775_808i64]},
                    {"_index": "casescope-events", "_id": "bb", "_score": null, "_routing": "case-1",
                     "_source": source("bb", 1_700_000_001_000_000), "sort": [1_700_000_001_000_000i64, 12]}
                ]
            }
        });
        assert_eq!(total(&answer).unwrap(), 250);
        let hits = hits(&answer).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].event.event_id, "aa");
        assert_eq!(hits[0].event.channel.as_deref(), Some("Security"));
        assert_eq!(hits[0].event.fields["TargetUserName"], "Administrator");
        assert_eq!(hits[1].sort, Some(json!([1_700_000_001_000_000i64, 12])));
        assert_eq!(
            total(&json!({"hits": {"total": 7, "hits": []}})).unwrap(),
            7
        );
        assert!(total(&json!({"hits": {}})).is_err());
        assert!(hits_of(&json!({"hits": {"hits": [{"_id": "x"}]}})).is_err());
    }

    fn hits_of(answer: &Value) -> Result<Vec<Hit>, StoreError> {
        hits(answer)
    }

    #[test]
    fn partial_answers_are_refused() {
        let answer = json!({
            "count": 3,
            "_shards": {"total": 2, "successful": 1, "skipped": 0, "failed": 1,
                "failures": [{"shard": 1, "index": "casescope-events", "node": "n1",
                    "reason": {"type": "node_not_connected_exception", "reason": "[n2] Node not connected"}}]}
        });
        assert!(matches!(
            count(&answer),
            Err(StoreError::Unavailable(m)) if m.contains("node_not_connected_exception")
        ));
        let ok = json!({"count": 3, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}});
        assert_eq!(count(&ok).unwrap(), 3);
        assert!(count(&json!({"counted": 3})).is_err());
    }

    #[test]
    fn documents_by_id() {
        let found = json!({"_index": "casescope-events", "_id": "aa", "_version": 1, "_seq_no": 0,
            "_primary_term": 1, "_routing": "case-1", "found": true, "_source": source("aa", 5)});
        assert_eq!(document(&found).unwrap().unwrap().timestamp_micros, 5);
        let missing = json!({"_index": "casescope-events", "_id": "zz", "_routing": "case-1", "found": false});
        assert!(document(&missing).unwrap().is_none());
        assert!(document(&json!({"_id": "aa"})).is_err());
    }

    #[test]
    fn aggregations_in_doubles() {
        let answer = json!({
            "took": 3, "timed_out": false,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": 6, "relation": "eq"}, "max_score": null, "hits": []},
            "aggregations": {
                "first": {"value": 1.700000001E15, "value_as_string": "1700000001000000"},
                "last": {"value": 1.700000006E15}
            }
        });
        assert_eq!(
            edges(&answer).unwrap(),
            Some((1_700_000_001_000_000, 1_700_000_006_000_000))
        );
        let empty = json!({"aggregations": {"first": {"value": null}, "last": {"value": null}}});
        assert_eq!(edges(&empty).unwrap(), None);
        let histogram_answer = json!({
            "took": 3, "timed_out": false,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": 6, "relation": "eq"}, "max_score": null, "hits": []},
            "aggregations": {"buckets": {"buckets": [
                {"key": 1.7E15, "doc_count": 1},
                {"key": 1.700000002E15, "doc_count": 2},
                {"key": 1.700000006E15, "doc_count": 3}
            ]}}
        });
        let buckets = histogram(&histogram_answer, 1_700_000_000_000_000, 2_000_000, 4).unwrap();
        assert_eq!(
            buckets.iter().map(|b| b.count).collect::<Vec<_>>(),
            [1, 2, 0, 3]
        );
        assert_eq!(buckets[3].start_micros, 1_700_000_006_000_000);
        let off_grid =
            json!({"aggregations": {"buckets": {"buckets": [{"key": 3.0, "doc_count": 1}]}}});
        assert!(histogram(&off_grid, 0, 2, 4).is_err());
    }

    #[test]
    fn delete_by_query_tasks() {
        assert_eq!(
            task_id(&json!({"task": "oTUltX4IQMOUUVeiohTt8A:12345"})).unwrap(),
            "oTUltX4IQMOUUVeiohTt8A:12345"
        );
        let running = json!({"completed": false, "task": {"node": "n", "id": 12345, "type": "transport",
            "action": "indices:data/write/delete/byquery", "status": {"total": 3, "deleted": 1}}});
        assert_eq!(delete_task(&running).unwrap(), TaskState::Running);
        let done = json!({"completed": true, "task": {"node": "n", "id": 12345},
            "response": {"took": 12, "timed_out": false, "total": 3, "deleted": 3, "batches": 1,
                "version_conflicts": 0, "noops": 0, "retries": {"bulk": 0, "search": 0},
                "throttled_millis": 0, "requests_per_second": -1.0, "throttled_until_millis": 0, "failures": []}});
        assert_eq!(delete_task(&done).unwrap(), TaskState::Deleted(3));
        let failed = json!({"completed": true, "response": {"deleted": 1, "failures": [
            {"index": "casescope-events", "id": "x", "status": 429,
             "cause": {"type": "es_rejected_execution_exception", "reason": "queue full"}}]}});
        assert!(
            matches!(delete_task(&failed), Err(StoreError::Unavailable(m)) if m.contains("queue full"))
        );
        let errored = json!({"completed": true, "error": {"type": "search_phase_execution_exception", "reason": "all shards failed"}});
        assert!(delete_task(&errored).is_err());
    }

    #[test]
    fn point_in_time_ids() {
        let answer = json!({"pit_id": "o463QQEPbG9jYWxob3N0AAA=", "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}, "creation_time": 1658146050064i64});
        assert_eq!(pit_id(&answer).unwrap(), "o463QQEPbG9jYWxob3N0AAA=");
        assert!(pit_id(&json!({})).is_err());
    }
}
