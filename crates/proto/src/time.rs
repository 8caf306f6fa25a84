//! Timestamp conversions at the edge: the database stores UTC microseconds since the
//! epoch, the wire carries `google.protobuf.Timestamp`, facts carry RFC 3339 text.

use chrono::{DateTime, SecondsFormat, Utc};

/// Current UTC time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

pub fn micros_to_timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// A wire timestamp as microseconds (saturating at the ends of the range).
pub fn timestamp_to_micros(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(ts.nanos / 1000))
}

/// RFC 3339 text, UTC, microsecond precision (e.g. `2026-11-22T21:44:31.123456Z`).
pub fn micros_to_rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_micros_convert_without_negative_nanos() {
        let ts = micros_to_timestamp(-1);
        assert_eq!((ts.seconds, ts.nanos), (-1, 999_999_000));
        assert_eq!(micros_to_rfc3339(0), "1970-01-01T00:00:00.000000Z");
    }
}
