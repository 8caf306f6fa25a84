//! When to try an outbound call again, and after how long: exponential backoff with
//! full jitter (a random pause between zero and the doubling bound, so many workers
//! retrying one server do not come back together), the server's `Retry-After` honoured
//! when it gives one (seconds or an HTTP date), every pause capped.

use std::time::{Duration, SystemTime};

/// The retry policy of one integration.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// The bound of the first pause; doubles per retry.
    pub base: Duration,
    /// No pause is longer (a `Retry-After` beyond it too).
    pub max_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(500),
            max_pause: Duration::from_secs(30),
        }
    }
}

/// Whether an answer with this HTTP status may succeed if sent again.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// The `Retry-After` of an answer: delta-seconds or an HTTP date, as a pause from `now`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl RetryPolicy {
    /// The pause before retry `retry` (1 = the first retry): the server's `Retry-After`
    /// when given, else a random pause up to `base · 2^(retry-1)`; capped.
    pub fn pause(&self, retry: u32, server_asked: Option<Duration>) -> Duration {
        if let Some(asked) = server_asked {
            return asked.min(self.max_pause);
        }
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        let bound = self.base.saturating_mul(factor).min(self.max_pause);
        let millis = bound.as_millis() as u64;
        if millis == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::random_range(0..=millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(12)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(12));
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn pauses_grow_with_jitter_and_are_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max_pause: Duration::from_secs(1),
        };
        for retry in 1..=8 {
            let bound = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_secs(1));
            for _ in 0..50 {
                assert!(policy.pause(retry, None) <= bound);
            }
        }
        // Jitter: not always the same pause.
        let pauses: std::collections::HashSet<Duration> =
            (0..50).map(|_| policy.pause(4, None)).collect();
        assert!(pauses.len() > 5);
        assert_eq!(
            policy.pause(1, Some(Duration::from_secs(3))),
            Duration::from_secs(1)
        );
        assert_eq!(
            policy.pause(1, Some(Duration::from_millis(250))),
            Duration::from_millis(250)
        );
        assert!(retryable_status(429) && retryable_status(503) && !retryable_status(401));
    }
}
