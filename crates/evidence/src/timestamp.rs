//! Finding and parsing event times in JSON and CSV records. Times without an offset are
//! taken as UTC (documented in docs/ingestion.md); numbers are Unix epoch times whose
//! unit (s, ms, µs, ns) is inferred from their magnitude.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

/// Field names tried, in order, when an upload does not name its timestamp field.
/// Dotted names address nested objects.
pub const TIMESTAMP_FIELDS: &[&str] = &[
    "@timestamp",
    "timestamp",
    "Timestamp",
    "TimeCreated",
    "Event.System.TimeCreated.#attributes.SystemTime",
    "Event.System.TimeCreated.SystemTime",
    "TimeGenerated",
    "UtcTime",
    "EventTime",
    "eventTime",
    "event_time",
    "time",
    "Time",
    "datetime",
    "DateTime",
    "date",
    "Date",
    "_time",
    "ts",
    "created_at",
];

const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%d %H:%M:%S%.fZ",
    "%Y-%m-%d %H:%M:%S%.f UTC",
];

/// Parses a time value into UTC microseconds since the epoch.
pub fn parse_timestamp(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(number) => number
            .as_f64()
            .and_then(epoch_to_micros)
            .ok_or_else(|| format!("{number} is not a plausible Unix time")),
        Value::String(text) => parse_text(text.trim()),
        other => Err(format!("{} is not a time", kind(other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
    }
}

fn parse_text(text: &str) -> Result<i64, String> {
    if text.is_empty() {
        return Err("empty time".into());
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Ok(dt.with_timezone(&Utc).timestamp_micros());
    }
    if let Ok(dt) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f %z") {
        return Ok(dt.with_timezone(&Utc).timestamp_micros());
    }
    for format in NAIVE_FORMATS {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(naive.and_utc().timestamp_micros());
        }
    }
    if let Ok(number) = text.parse::<f64>()
        && let Some(micros) = epoch_to_micros(number)
    {
        return Ok(micros);
    }
    let shown: String = text.chars().take(60).collect();
    Err(format!(
        "{shown:?} is not a recognised time format (use RFC 3339)"
    ))
}

/// Epoch seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude;
/// anything outside 1970..2200 is refused.
fn epoch_to_micros(value: f64) -> Option<i64> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let micros = if value < 1e10 {
        value * 1e6
    } else if value < 1e13 {
        value * 1e3
    } else if value < 1e16 {
        value
    } else {
        value / 1e3
    };
    (micros < 7.26e15).then_some(micros as i64)
}

/// Looks up `path` (dotted for nested objects) in `object`.
pub fn lookup<'a>(object: &'a serde_json::Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = object.get(path) {
        return Some(value);
    }
    let (head, rest) = path.split_once('.')?;
    match object.get(head)? {
        Value::Object(inner) => lookup(inner, rest),
        _ => None,
    }
}

/// The record's time: from `configured` if given, else the first of [`TIMESTAMP_FIELDS`]
/// present. `Err(None)` = no such field; `Err(Some(why))` = present but unparseable.
pub fn find_timestamp(
    object: &serde_json::Map<String, Value>,
    configured: Option<&str>,
) -> Result<i64, Option<String>> {
    let candidates: Vec<&str> = match configured {
        Some(field) => vec![field],
        None => TIMESTAMP_FIELDS.to_vec(),
    };
    for field in candidates {
        if let Some(value) = lookup(object, field) {
            return parse_timestamp(value).map_err(|why| Some(format!("{field}: {why}")));
        }
    }
    Err(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn common_time_shapes_parse_to_utc_micros() {
        let expected = 1_552_779_472_123_456;
        for value in [
            json!("2019-03-16T23:37:52.123456Z"),
            json!("2019-03-17T00:37:52.123456+01:00"),
            json!("2019-03-16 23:37:52.123456"),
            json!("2019-03-16T23:37:52.123456"),
            json!("2019-03-16 23:37:52.123456 UTC"),
            json!(1_552_779_472.123_456),
            json!(1_552_779_472_123_456_i64),
            json!("1552779472123456"),
        ] {
            assert_eq!(parse_timestamp(&value), Ok(expected), "{value}");
        }
        assert_eq!(
            parse_timestamp(&json!(1_552_779_472_123_i64)),
            Ok(1_552_779_472_123_000)
        );
        assert!(parse_timestamp(&json!("yesterday")).is_err());
        assert!(parse_timestamp(&json!(-5)).is_err());
        assert!(parse_timestamp(&json!(null)).is_err());
    }

    #[test]
    fn nested_and_configured_fields_are_found() {
        let record = json!({"Event": {"System": {"TimeCreated": {"#attributes": {"SystemTime": "2019-03-16T23:37:52Z"}}}}, "when": "2020-01-01T00:00:00Z"});
        let object = record.as_object().unwrap();
        assert_eq!(find_timestamp(object, None), Ok(1_552_779_472_000_000));
        assert_eq!(
            find_timestamp(object, Some("when")),
            Ok(1_577_836_800_000_000)
        );
        assert_eq!(find_timestamp(object, Some("missing")), Err(None));
    }
}
