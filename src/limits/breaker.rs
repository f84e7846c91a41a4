//! A circuit breaker in front of Redis: after `failures` consecutive errors or timeouts it
//! opens, and shared buckets are answered by their local fallback without a round trip;
//! after `open_for` one request probes Redis (half-open) while the others still fall back;
//! the probe's success closes it, its failure opens it again. So a dead or frozen Redis
//! costs at most `failures` requests, and then one probe per `open_for`, its timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

/// What a request does about Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: ask Redis.
    Call,
    /// Half-open: this request is the one probe.
    Probe,
    /// Open (or another request is probing): use the local fallback.
    Fallback,
}

/// For the `kefu_limit_breaker_state` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    /// `Some` while open (or half-open once passed).
    open_until: Option<Instant>,
    probing: bool,
}

#[derive(Debug)]
pub struct Breaker {
    failures_to_open: u32,
    open_for: Duration,
    // One short critical section per shared check; never held across an await.
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(cfg: &BreakerConfig) -> Breaker {
        Breaker {
            failures_to_open: cfg.failures.max(1),
            open_for: cfg.open_for,
            inner: Mutex::new(Inner {
                failures: 0,
                open_until: None,
                probing: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn admit(&self, now: Instant) -> Admit {
        let mut s = self.lock();
        match s.open_until {
            None => Admit::Call,
            Some(until) if now < until => Admit::Fallback,
            Some(_) if s.probing => Admit::Fallback,
            Some(_) => {
                s.probing = true;
                Admit::Probe
            }
        }
    }

    /// Redis answered.
    pub fn success(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.open_until = None;
        s.probing = false;
    }

    /// Redis failed or timed out (`probe`: the request was the probe). True when this
    /// failure opened the breaker.
    pub fn failure(&self, now: Instant, probe: bool) -> bool {
        let mut s = self.lock();
        if probe {
            s.probing = false;
            s.open_until = Some(now + self.open_for);
            return false;
        }
        s.failures = s.failures.saturating_add(1);
        if s.open_until.is_none() && s.failures >= self.failures_to_open {
            s.open_until = Some(now + self.open_for);
            return true;
        }
        false
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        let s = self.lock();
        match s.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until && !s.probing => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(&BreakerConfig {
            failures: 2,
            open_for: Duration::from_secs(1),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_once_when_due() {
        let b = breaker();
        let t0 = Instant::now();
        assert_eq!(b.admit(t0), Admit::Call);
        assert!(!b.failure(t0, false));
        b.success();
        assert!(!b.failure(t0, false), "a success resets the count");
        assert!(b.failure(t0, false), "the second in a row opens it");
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.admit(t0 + Duration::from_millis(999)), Admit::Fallback);
        let due = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(due), Admit::Probe);
        assert_eq!(b.admit(due), Admit::Fallback, "one probe at a time");
        assert_eq!(b.state(due), BreakerState::HalfOpen);
        // The probe fails: open for another period.
        b.failure(due, true);
        assert_eq!(b.admit(due + Duration::from_millis(500)), Admit::Fallback);
        let later = due + Duration::from_secs(1);
        assert_eq!(b.admit(later), Admit::Probe);
        b.success();
        assert_eq!(b.admit(later), Admit::Call);
        assert_eq!(b.state(later), BreakerState::Closed);
    }
}
