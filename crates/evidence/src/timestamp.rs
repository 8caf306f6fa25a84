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
    if let Some(micros) = utc_text_micros(text) {
        return Ok(micros);
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

/// `YYYY-MM-DDTHH:MM:SS[.f…]Z` (1–9 fraction digits), the form EVTX times are written
/// in, read without the general RFC 3339 parser (every EVTX record's time goes through
/// here); `None` for anything else, including an impossible date, which the general
/// parsers then judge.
fn utc_text_micros(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (head, rest) = bytes.split_at_checked(19)?;
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        head[range].iter().try_fold(0i64, |value, byte| {
            byte.is_ascii_digit()
                .then(|| value * 10 + i64::from(byte - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|(at, byte)| head[*at] != *byte) {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let fraction = match rest {
        [b'Z'] => &[][..],
        [b'.', digits @ .., b'Z'] if (1..=9).contains(&digits.len()) => digits,
        _ => return None,
    };
    let mut micros = 0i64;
    for (place, byte) in fraction.iter().enumerate() {
        if !byte.is_ascii_digit() {
            return None;
        }
        if place < 6 {
            micros = micros * 10 + i64::from(byte - b'0');
        }
    }
    micros *= 10i64.pow(6u32.saturating_sub(fraction.len() as u32));
    // Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + micros)
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

    /// The EVTX form is read as the RFC 3339 parser reads it, on random times from
    /// year 0 to 9999 (impossible dates, hours and fraction lengths included, which the
    /// short path leaves to the parser).
    #[test]
    fn evtx_times_read_as_rfc3339_reads_them() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let (mut short, mut total) = (0, 0);
        for _ in 0..100_000 {
            let digits = next(11) as usize;
            let fraction: String = (0..digits)
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect();
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{fraction}Z",
                if next(4) == 0 {
                    next(10_000)
                } else {
                    1900 + next(200)
                },
                next(14),
                next(33),
                next(26),
                next(61),
                next(61),
                if digits > 0 { "." } else { "" },
            );
            let general = DateTime::parse_from_rfc3339(&text)
                .ok()
                .map(|dt| dt.with_timezone(&Utc).timestamp_micros());
            if let Some(micros) = utc_text_micros(&text) {
                assert_eq!(Some(micros), general, "{text}");
                short += 1;
            } else if digits <= 9 && general.is_some() {
                // Only a leap second (:60) is the parser's alone.
                assert!(text[17..19] == *"60", "{text} left to the parser");
            }
            total += 1;
        }
        assert!(short > total / 4, "{short} of {total} read the short way");
        for text in [
            "2024-02-29T23:59:59Z",
            "1601-01-01T00:00:00.0000000Z",
            "1969-12-31T23:59:59.9999999Z",
        ] {
            let general = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_micros();
            assert_eq!(utc_text_micros(text), Some(general), "{text}");
        }
        for text in [
            "2023-02-29T00:00:00Z",
            "2024-01-01t00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+00:00",
            "２024-01-01T00:00:00Z",
        ] {
            assert_eq!(utc_text_micros(text), None, "{text}");
        }
    }

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
