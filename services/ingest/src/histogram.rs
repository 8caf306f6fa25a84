//! The interval of a histogram asked for without one: the smallest round width (1 s …
//! 1 day … years) that covers the selection's first to last event in at most the
//! buckets asked for. The span is read with two one-event searches (oldest, newest).

use casescope_eventstore::{EventQuery, EventStore, MAX_HISTOGRAM_BUCKETS, SortOrder, StoreError};

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const YEAR: i64 = 365 * DAY;

/// Round widths, smallest first.
const ROUND: [i64; 33] = [
    SECOND,
    2 * SECOND,
    5 * SECOND,
    10 * SECOND,
    15 * SECOND,
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
    30 * DAY,
    90 * DAY,
    180 * DAY,
    YEAR,
    2 * YEAR,
    5 * YEAR,
    10 * YEAR,
    20 * YEAR,
    50 * YEAR,
    100 * YEAR,
    200 * YEAR,
    500 * YEAR,
];

/// The buckets asked for, within the store's limit (0: `default`).
pub fn bucket_limit(asked: u32, default: u32) -> i64 {
    let asked = if asked == 0 { default } else { asked };
    i64::from(asked).clamp(1, MAX_HISTOGRAM_BUCKETS as i64)
}

/// The smallest round width giving at most `max_buckets` buckets from `first` to `last`
/// (buckets are aligned to the width: one more may be needed than the span divides into).
pub fn round_interval(first: i64, last: i64, max_buckets: i64) -> i64 {
    let max_buckets = max_buckets.max(1);
    for width in ROUND {
        let start = first - first.rem_euclid(width);
        let buckets = last.saturating_sub(start) / width + 1;
        if buckets <= max_buckets {
            return width;
        }
    }
    // Beyond every round width (a span of millennia): the span in equal parts.
    (last.saturating_sub(first) / max_buckets)
        .saturating_add(1)
        .max(ROUND[ROUND.len() - 1])
}

/// The interval for `query`'s selection in at most `max_buckets` buckets.
pub async fn auto_interval(
    store: &dyn EventStore,
    query: &EventQuery,
    max_buckets: i64,
) -> Result<i64, StoreError> {
    let mut probe = query.clone();
    probe.page_size = 1;
    probe.after = None;
    probe.skip_total = true;
    probe.skip_raw = true;
    probe.sort = SortOrder::Ascending;
    let first = store
        .search(&probe)
        .await?
        .events
        .first()
        .map(|e| e.timestamp_micros);
    probe.sort = SortOrder::Descending;
    let last = store
        .search(&probe)
        .await?
        .events
        .first()
        .map(|e| e.timestamp_micros);
    Ok(match (first, last) {
        (Some(first), Some(last)) => round_interval(first, last, max_buckets),
        // No event: any width gives no bucket.
        _ => HOUR,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_width_is_the_smallest_round_one_that_fits() {
        // One hour of events in 200 buckets: 30 s (120 buckets); 15 s would need 240.
        assert_eq!(round_interval(0, HOUR - 1, 200), 30 * SECOND);
        // 23 years in 120 buckets: 30 days would need 280, 90 days needs 94.
        let span = 23 * YEAR;
        let width = round_interval(0, span, 120);
        assert_eq!(width, 90 * DAY);
        assert!(span / width < 120);
        // Alignment can add a bucket: with 10 s, 5 s to 14 s spans two buckets.
        assert_eq!(round_interval(5 * SECOND, 14 * SECOND, 1), 15 * SECOND);
        // A single instant: the smallest width, one bucket.
        assert_eq!(round_interval(42, 42, 1), SECOND);
        // Past every round width: equal parts, never less than the largest.
        let huge = round_interval(0, i64::MAX / 2, 10);
        assert!(huge >= 500 * YEAR && (i64::MAX / 2) / huge < 10);
        assert_eq!(bucket_limit(0, 200), 200);
        assert_eq!(bucket_limit(50_000, 200), MAX_HISTOGRAM_BUCKETS as i64);
    }
}
