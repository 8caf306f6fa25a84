//! Per-principal abuse limits, held in each gateway process: a request rate (token
//! bucket) and a bound on concurrent uploads. Both tables are bounded: idle entries are
//! dropped when a table reaches its size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits a deployment configures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSettings {
    /// Requests per second a principal may sustain.
    pub requests_per_second: f64,
    /// Requests a principal may make at once after being idle.
    pub burst: f64,
    /// Uploads one principal may have in flight.
    pub max_uploads: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 200.0,
            burst: 2000.0,
            max_uploads: 8,
        }
    }
}

/// Most principals tracked at once (beyond it, idle ones are forgotten first).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Request rates per principal.
#[derive(Clone)]
pub struct RateLimiter {
    settings: LimitSettings,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
    uploads: Arc<Mutex<HashMap<String, usize>>>,
}

impl RateLimiter {
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            settings,
            buckets: Arc::default(),
            uploads: Arc::default(),
        }
    }

    pub fn settings(&self) -> LimitSettings {
        self.settings
    }

    /// Takes one request from `principal`'s bucket; `Err(wait)` when it is empty.
    pub fn check(&self, principal: &str) -> Result<(), Duration> {
        self.check_at(principal, Instant::now())
    }

    fn check_at(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        let LimitSettings {
            requests_per_second: rate,
            burst,
            ..
        } = self.settings;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(principal) {
            // Forget the principals whose buckets have refilled (idle): they lose nothing.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(principal.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refilled =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if refilled >= 1.0 {
            bucket.tokens = refilled - 1.0;
            Ok(())
        } else {
            bucket.tokens = refilled;
            Err(Duration::from_secs_f64(
                (1.0 - refilled) / rate.max(f64::MIN_POSITIVE),
            ))
        }
    }

    /// A slot for one upload of `principal`, released when dropped; `None` when the
    /// principal already has its most uploads in flight.
    pub fn upload_slot(&self, principal: &str) -> Option<UploadSlot> {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let running = uploads.entry(principal.to_string()).or_insert(0);
        if *running >= self.settings.max_uploads {
            return None;
        }
        *running += 1;
        Some(UploadSlot {
            uploads: self.uploads.clone(),
            principal: principal.to_string(),
        })
    }
}

/// One upload in flight (see [`RateLimiter::upload_slot`]).
pub struct UploadSlot {
    uploads: Arc<Mutex<HashMap<String, usize>>>,
    principal: String,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = uploads.get_mut(&self.principal) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                uploads.remove(&self.principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limiter = RateLimiter::new(LimitSettings {
            requests_per_second: 10.0,
            burst: 5.0,
            max_uploads: 1,
        });
        let start = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check_at("a", start).is_ok());
        }
        let wait = limiter.check_at("a", start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another principal has its own bucket.
        assert!(limiter.check_at("b", start).is_ok());
        // 100 ms later one more request is allowed, and only one.
        let later = start + Duration::from_millis(100);
        assert!(limiter.check_at("a", later).is_ok());
        assert!(limiter.check_at("a", later).is_err());
    }

    #[test]
    fn uploads_are_bounded_per_principal_and_released() {
        let limiter = RateLimiter::new(LimitSettings {
            max_uploads: 2,
            ..LimitSettings::default()
        });
        let one = limiter.upload_slot("a").unwrap();
        let _two = limiter.upload_slot("a").unwrap();
        assert!(limiter.upload_slot("a").is_none());
        assert!(limiter.upload_slot("b").is_some());
        drop(one);
        assert!(limiter.upload_slot("a").is_some());
    }
}
