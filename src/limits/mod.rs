//! Local token buckets: one for the whole node, one per client address, one per `user_id`.
//!
//! The bucket arithmetic is governor's GCRA (one atomic or one short critical section per
//! check); keyed buckets live in a [`BoundedStore`] so memory is fixed by configuration.
//! Limits shared across nodes (Redis) will sit beside these, not replace them.

mod bounded_store;

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};

pub use bounded_store::BoundedStore;

use crate::config::{BucketConfig, LimitsConfig};

type Instant = <DefaultClock as Clock>::Instant;
type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock, NoOpMiddleware<Instant>>;
type Keyed<K> = RateLimiter<K, BoundedStore<K>, DefaultClock, NoOpMiddleware<Instant>>;

/// Which bucket refused a request (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Global,
    ClientIp,
    User,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Global => "global",
            LimitKind::ClientIp => "client_ip",
            LimitKind::User => "user",
        }
    }
}

/// A refusal, with how long until the bucket has a token again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub kind: LimitKind,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// The buckets of one `limits.yaml`. Kept across reloads that do not change it, so counts
/// survive a SIGHUP.
pub struct Limiters {
    clock: DefaultClock,
    global: Option<Direct>,
    per_ip: Option<Keyed<IpAddr>>,
    /// Keyed by a hash of the user id, so a check needs no owned string.
    per_user: Option<Keyed<u64>>,
    user_hasher: RandomState,
}

fn quota(b: &BucketConfig) -> Quota {
    let burst = NonZeroU32::new(b.burst).unwrap_or(NonZeroU32::MIN);
    // A period of zero is impossible (rate >= 1 per >= 1 s), but fall back to 1 ns rather
    // than panic if it ever were.
    Quota::with_period(b.rate.period())
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

impl Limiters {
    pub fn new(cfg: &LimitsConfig) -> Limiters {
        let clock = DefaultClock::default();
        fn keyed<K: std::hash::Hash>(
            b: &BucketConfig,
            max_keys: usize,
            clock: &DefaultClock,
        ) -> Keyed<K> {
            RateLimiter::new(quota(b), BoundedStore::new(max_keys), clock.clone())
        }
        let max = cfg.max_tracked_keys;
        Limiters {
            global: cfg
                .global
                .as_ref()
                .map(|b| RateLimiter::direct_with_clock(quota(b), clock.clone())),
            per_ip: cfg.per_ip.as_ref().map(|b| keyed(b, max, &clock)),
            per_user: cfg.per_user.as_ref().map(|b| keyed(b, max, &clock)),
            user_hasher: RandomState::new(),
            clock,
        }
    }

    fn refused(&self, kind: LimitKind, not_until: NotUntil<Instant>) -> Limited {
        Limited {
            kind,
            retry_after: not_until.wait_time_from(self.clock.now()),
        }
    }

    /// The node-wide and per-address buckets, checked for every request.
    pub fn check_client(&self, ip: IpAddr) -> Result<(), Limited> {
        if let Some(l) = &self.global {
            l.check().map_err(|n| self.refused(LimitKind::Global, n))?;
        }
        if let Some(l) = &self.per_ip {
            l.check_key(&ip.to_canonical())
                .map_err(|n| self.refused(LimitKind::ClientIp, n))?;
        }
        Ok(())
    }

    /// The per-user bucket, checked once the chat body names the user.
    pub fn check_user(&self, user_id: &str) -> Result<(), Limited> {
        if let Some(l) = &self.per_user {
            l.check_key(&self.user_hasher.hash_one(user_id))
                .map_err(|n| self.refused(LimitKind::User, n))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> LimitsConfig {
        let b = |s: &str| -> Option<BucketConfig> { serde_yaml_ng::from_str(s).ok() };
        let mut parts = text.split('|');
        LimitsConfig {
            global: parts.next().and_then(b),
            per_ip: parts.next().and_then(b),
            per_user: parts.next().and_then(b),
            max_tracked_keys: 1000,
        }
    }

    #[test]
    fn per_ip_burst_then_refusal_with_retry_after() {
        let l = Limiters::new(&cfg("-|{rate: 1r/m, burst: 2}|-"));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.check_client(a).is_ok());
        assert!(l.check_client(a).is_ok());
        let refused = l.check_client(a).unwrap_err();
        assert_eq!(refused.kind, LimitKind::ClientIp);
        assert!(refused.retry_after_secs() > 1 && refused.retry_after_secs() <= 60);
        assert!(
            l.check_client(b).is_ok(),
            "another address has its own bucket"
        );
    }

    #[test]
    fn global_and_user_buckets() {
        let l = Limiters::new(&cfg("{rate: 1r/h, burst: 3}|-|{rate: 1r/h, burst: 1}"));
        let ip: IpAddr = "::1".parse().unwrap();
        assert!(l.check_user("u1").is_ok());
        assert_eq!(l.check_user("u1").unwrap_err().kind, LimitKind::User);
        assert!(l.check_user("u2").is_ok());
        for _ in 0..3 {
            assert!(l.check_client(ip).is_ok());
        }
        assert_eq!(l.check_client(ip).unwrap_err().kind, LimitKind::Global);
    }

    #[test]
    fn absent_buckets_do_not_limit() {
        let l = Limiters::new(&cfg("-|-|-"));
        for i in 0..10_000 {
            assert!(l.check_client("1.1.1.1".parse().unwrap()).is_ok());
            assert!(l.check_user(if i % 2 == 0 { "a" } else { "b" }).is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        let l = |ms| Limited {
            kind: LimitKind::User,
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(l(0).retry_after_secs(), 1);
        assert_eq!(l(1001).retry_after_secs(), 2);
        assert_eq!(l(3000).retry_after_secs(), 3);
    }
}
