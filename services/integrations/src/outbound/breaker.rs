//! A circuit breaker per integration: after `threshold` failures in a row the circuit
//! opens and calls are refused at once (no connection, no wait) for `cool_down`; then
//! one trial call is let through (half-open): its success closes the circuit, its
//! failure opens it again. A target that is down costs one failed call per cool-down
//! instead of a timeout per call, and recovers by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The circuit's state as reported (IntegrationHealth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    opened_at: Option<Instant>,
    trial: bool,
}

#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
    threshold: u32,
    cool_down: Duration,
}

/// A refused call: the circuit is open for this long still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open(pub Duration);

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                failures: 0,
                opened_at: None,
                trial: false,
            }),
            threshold: threshold.max(1),
            cool_down,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a call may go now (a half-open circuit lets one through).
    pub fn admit(&self) -> Result<(), Open> {
        let mut inner = self.lock();
        let Some(opened_at) = inner.opened_at else {
            return Ok(());
        };
        let open_for = opened_at.elapsed();
        if open_for < self.cool_down {
            return Err(Open(self.cool_down - open_for));
        }
        if inner.trial {
            // One trial at a time; the others wait for its outcome.
            return Err(Open(Duration::ZERO));
        }
        inner.trial = true;
        Ok(())
    }

    pub fn success(&self) {
        let mut inner = self.lock();
        inner.failures = 0;
        inner.opened_at = None;
        inner.trial = false;
    }

    pub fn failure(&self) {
        let mut inner = self.lock();
        inner.failures = inner.failures.saturating_add(1);
        if inner.trial || inner.failures >= self.threshold {
            inner.opened_at = Some(Instant::now());
        }
        inner.trial = false;
    }

    pub fn state(&self) -> (Circuit, u32) {
        let inner = self.lock();
        let state = match inner.opened_at {
            None => Circuit::Closed,
            Some(at) if at.elapsed() < self.cool_down => Circuit::Open,
            Some(_) => Circuit::HalfOpen,
        };
        (state, inner.failures)
    }
}

/// The breakers of a process, one per integration.
#[derive(Debug, Clone)]
pub struct Breakers {
    map: Arc<Mutex<HashMap<String, Arc<Breaker>>>>,
    threshold: u32,
    cool_down: Duration,
}

impl Breakers {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            map: Arc::default(),
            threshold,
            cool_down,
        }
    }

    pub fn of(&self, integration: &str) -> Arc<Breaker> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(integration.to_string())
            .or_insert_with(|| Arc::new(Breaker::new(self.threshold, self.cool_down)))
            .clone()
    }

    /// Forgets a deleted integration's breaker.
    pub fn forget(&self, integration: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(integration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_recovers_through_one_trial() {
        let breaker = Breaker::new(3, Duration::from_millis(100));
        for _ in 0..2 {
            assert!(breaker.admit().is_ok());
            breaker.failure();
        }
        assert_eq!(breaker.state(), (Circuit::Closed, 2));
        assert!(breaker.admit().is_ok());
        breaker.failure();
        assert_eq!(breaker.state().0, Circuit::Open);
        let Open(left) = breaker.admit().unwrap_err();
        assert!(left > Duration::ZERO && left <= Duration::from_millis(100));

        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(breaker.state().0, Circuit::HalfOpen);
        assert!(breaker.admit().is_ok(), "one trial");
        assert!(breaker.admit().is_err(), "only one");
        breaker.failure();
        assert_eq!(breaker.state().0, Circuit::Open, "a failed trial reopens");

        std::thread::sleep(Duration::from_millis(120));
        assert!(breaker.admit().is_ok());
        breaker.success();
        assert_eq!(breaker.state(), (Circuit::Closed, 0));
        assert!(breaker.admit().is_ok());
    }
}
