//! Token buckets: one for the whole node, one per client address, one per `user_id`.
//!
//! Local buckets are governor's GCRA (one atomic or one short critical section per check);
//! keyed buckets live in a [`BoundedStore`] so memory is fixed by configuration.
//!
//! A bucket with `shared: true` is also kept in Redis ([`shared`]), one bucket for every
//! node and for an OpenResty tier running `lua-compat/`. Its local bucket, with the same
//! quota, is checked first: it counts only this node's requests, so when it refuses the
//! shared one would too, and a client far over its limit costs no round trip. Then the
//! request's shared buckets are checked in one call. When Redis fails or is slow, the
//! [`Breaker`] opens and the shared buckets fall back to local ones with `rate / nodes` and
//! `burst / nodes` until a probe succeeds.

mod bounded_store;
mod breaker;
mod headroom;
mod shared;

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};

pub use bounded_store::BoundedStore;
pub use breaker::{Admit, Breaker, BreakerState};
pub use shared::{GCRA_SCRIPT, Outcome, RedisBuckets, SharedBucket, SharedError};

use crate::config::{BucketConfig, LimitsConfig, SharedLimitsConfig};

type Instant = <DefaultClock as Clock>::Instant;
type WallInstant = std::time::Instant;
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

/// What the shared limits report (prometheus handles; unregistered ones in tests).
#[derive(Clone)]
pub struct LimitMetrics {
    /// Redis checks by result: allowed, limited, error.
    pub shared_checks: IntCounterVec,
    /// Checks of shared buckets answered by their local fallback, by result.
    pub fallbacks: IntCounterVec,
    /// The breaker: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGauge,
}

impl LimitMetrics {
    pub fn unregistered() -> LimitMetrics {
        let vec = |name: &str| {
            IntCounterVec::new(Opts::new(name, name), &["result"])
                .unwrap_or_else(|_| unreachable!("static counter options are valid"))
        };
        LimitMetrics {
            shared_checks: vec("shared_checks"),
            fallbacks: vec("fallbacks"),
            breaker_state: IntGauge::new("breaker_state", "breaker_state")
                .unwrap_or_else(|_| unreachable!("static gauge options are valid")),
        }
    }
}

/// The local buckets of one set of quotas.
struct Local {
    global: Option<Direct>,
    per_ip: Option<Keyed<IpAddr>>,
    /// Keyed by a hash of the user id, so a check needs no owned string.
    per_user: Option<Keyed<u64>>,
}

impl Local {
    /// Buckets for the configured quotas, each divided by `nodes`; only those `pick` keeps.
    fn new(
        cfg: &LimitsConfig,
        nodes: u32,
        pick: fn(&BucketConfig) -> bool,
        clock: &DefaultClock,
    ) -> Local {
        fn keyed<K: std::hash::Hash + Eq + Clone>(
            b: &BucketConfig,
            nodes: u32,
            max_keys: usize,
            clock: &DefaultClock,
        ) -> Keyed<K> {
            RateLimiter::new(quota(b, nodes), BoundedStore::new(max_keys), clock.clone())
        }
        let max = cfg.max_tracked_keys;
        Local {
            global: cfg
                .global
                .as_ref()
                .filter(|b| pick(b))
                .map(|b| RateLimiter::direct_with_clock(quota(b, nodes), clock.clone())),
            per_ip: cfg
                .per_ip
                .as_ref()
                .filter(|b| pick(b))
                .map(|b| keyed(b, nodes, max, clock)),
            per_user: cfg
                .per_user
                .as_ref()
                .filter(|b| pick(b))
                .map(|b| keyed(b, nodes, max, clock)),
        }
    }
}

/// The handles of [`LimitMetrics`] a shared check touches, resolved once (not a label
/// lookup per request).
struct SharedCounters {
    allowed: IntCounter,
    allowed_ahead: IntCounter,
    limited: IntCounter,
    error: IntCounter,
    fallback_allowed: IntCounter,
    fallback_limited: IntCounter,
    breaker_state: IntGauge,
}

impl SharedCounters {
    fn of(m: &LimitMetrics) -> SharedCounters {
        SharedCounters {
            allowed: m.shared_checks.with_label_values(&["allowed"]),
            allowed_ahead: m.shared_checks.with_label_values(&["allowed_ahead"]),
            limited: m.shared_checks.with_label_values(&["limited"]),
            error: m.shared_checks.with_label_values(&["error"]),
            fallback_allowed: m.fallbacks.with_label_values(&["allowed"]),
            fallback_limited: m.fallbacks.with_label_values(&["limited"]),
            breaker_state: m.breaker_state.clone(),
        }
    }
}

/// The shared buckets: Redis, its breaker, and the local fallbacks.
struct Shared {
    redis: RedisBuckets,
    breaker: Breaker,
    fallback: Local,
    /// The script's quota (emission interval in µs, burst) of each shared bucket.
    global: Option<(u64, u32)>,
    per_ip: Option<(u64, u32)>,
    per_user: Option<(u64, u32)>,
    counters: SharedCounters,
}

/// The buckets of one `limits.yaml`. Kept across reloads that do not change it, so counts
/// (and the Redis connection) survive a SIGHUP.
pub struct Limiters {
    clock: DefaultClock,
    /// Every configured bucket; for a shared one, the pre-check.
    local: Local,
    shared: Option<Shared>,
    user_hasher: RandomState,
}

/// The quota of `b`, with rate and burst divided by `nodes` (at least one token).
fn quota(b: &BucketConfig, nodes: u32) -> Quota {
    let burst = NonZeroU32::new(b.burst / nodes.max(1)).unwrap_or(NonZeroU32::MIN);
    // A period of zero is impossible (rate >= 1 per >= 1 s), but fall back to 1 ns rather
    // than panic if it ever were.
    Quota::with_period(b.rate.period() * nodes.max(1))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

/// The script's quota of a shared bucket.
fn script_quota(b: &Option<BucketConfig>) -> Option<(u64, u32)> {
    let b = b.as_ref().filter(|b| b.shared)?;
    let interval = u64::try_from(b.rate.period().as_micros()).unwrap_or(u64::MAX);
    Some((interval.max(1), b.burst))
}

impl Limiters {
    pub fn new(cfg: &LimitsConfig, metrics: LimitMetrics) -> anyhow::Result<Limiters> {
        let clock = DefaultClock::default();
        let shared = match &cfg.shared {
            Some(s) => Some(Self::shared(cfg, s, metrics, &clock)?),
            None => None,
        };
        Ok(Limiters {
            local: Local::new(cfg, 1, |_| true, &clock),
            shared,
            user_hasher: RandomState::new(),
            clock,
        })
    }

    fn shared(
        cfg: &LimitsConfig,
        s: &SharedLimitsConfig,
        metrics: LimitMetrics,
        clock: &DefaultClock,
    ) -> anyhow::Result<Shared> {
        let redis =
            RedisBuckets::new(s).map_err(|e| anyhow::anyhow!("limits.yaml: shared: {e}"))?;
        metrics.breaker_state.set(BreakerState::Closed as i64);
        Ok(Shared {
            redis,
            breaker: Breaker::new(&s.breaker),
            fallback: Local::new(cfg, s.nodes, |b| b.shared, clock),
            global: script_quota(&cfg.global),
            per_ip: script_quota(&cfg.per_ip),
            per_user: script_quota(&cfg.per_user),
            counters: SharedCounters::of(&metrics),
        })
    }

    fn refused(&self, kind: LimitKind, not_until: NotUntil<Instant>) -> Limited {
        Limited {
            kind,
            retry_after: not_until.wait_time_from(self.clock.now()),
        }
    }

    /// The node-wide and per-address buckets, checked locally for every request.
    pub fn check_client(&self, ip: IpAddr) -> Result<(), Limited> {
        self.check_local_client(&self.local, ip)
    }

    /// The per-user bucket, checked locally once the chat body names the user.
    pub fn check_user(&self, user_id: &str) -> Result<(), Limited> {
        self.check_local_user(&self.local, user_id)
    }

    fn check_local_client(&self, local: &Local, ip: IpAddr) -> Result<(), Limited> {
        if let Some(l) = &local.global {
            l.check().map_err(|n| self.refused(LimitKind::Global, n))?;
        }
        if let Some(l) = &local.per_ip {
            l.check_key(&ip.to_canonical())
                .map_err(|n| self.refused(LimitKind::ClientIp, n))?;
        }
        Ok(())
    }

    fn check_local_user(&self, local: &Local, user_id: &str) -> Result<(), Limited> {
        if let Some(l) = &local.per_user {
            l.check_key(&self.user_hasher.hash_one(user_id))
                .map_err(|n| self.refused(LimitKind::User, n))?;
        }
        Ok(())
    }

    /// Whether any bucket is shared.
    pub fn has_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The shared buckets of a request (after its local checks passed): the node-wide and
    /// per-address ones, and the per-user one when `user_id` is given, in one Redis call.
    /// Without an answer in time, their local fallbacks decide.
    pub async fn check_shared(&self, ip: IpAddr, user_id: Option<&str>) -> Result<(), Limited> {
        let Some(sh) = &self.shared else {
            return Ok(());
        };
        let ip_text = ip.to_canonical().to_string();
        let bucket = |kind, key, (interval_us, burst)| SharedBucket {
            kind,
            key,
            interval_us,
            burst,
        };
        let buckets: Vec<SharedBucket<'_>> = [
            sh.global.map(|q| bucket(LimitKind::Global, "all", q)),
            sh.per_ip.map(|q| bucket(LimitKind::ClientIp, &ip_text, q)),
            user_id.and_then(|u| sh.per_user.map(|q| bucket(LimitKind::User, u, q))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if buckets.is_empty() {
            return Ok(());
        }
        let now = WallInstant::now();
        let admit = sh.breaker.admit(now);
        if admit != Admit::Fallback {
            // A probe of a half-open breaker must reach Redis: never answered ahead.
            match sh.redis.check(&buckets, admit != Admit::Probe).await {
                // Not an answer from Redis: the breaker is not told.
                Ok(Outcome::AllowedAhead) => {
                    sh.counters.allowed_ahead.inc();
                    return Ok(());
                }
                Ok(outcome) => {
                    if admit == Admit::Probe {
                        log::info!("shared limits: Redis answers again; breaker closed");
                    }
                    sh.breaker.success();
                    sh.counters.breaker_state.set(BreakerState::Closed as i64);
                    return match outcome {
                        Outcome::Allowed | Outcome::AllowedAhead => {
                            sh.counters.allowed.inc();
                            Ok(())
                        }
                        Outcome::Limited { kind, retry_after } => {
                            sh.counters.limited.inc();
                            Err(Limited { kind, retry_after })
                        }
                    };
                }
                // No connection yet: no time was lost, and the breaker is not told.
                Err(SharedError::NotConnected) => {}
                Err(SharedError::Failed(why)) => {
                    sh.counters.error.inc();
                    if sh.breaker.failure(now, admit == Admit::Probe) {
                        log::warn!(
                            "shared limits: Redis failed ({why}); local buckets until it answers again"
                        );
                    }
                    sh.counters.breaker_state.set(sh.breaker.state(now) as i64);
                }
            }
        }
        let verdict = self
            .check_local_client(&sh.fallback, ip)
            .and_then(|()| match user_id {
                Some(u) => self.check_local_user(&sh.fallback, u),
                None => Ok(()),
            });
        match verdict {
            Ok(()) => sh.counters.fallback_allowed.inc(),
            Err(_) => sh.counters.fallback_limited.inc(),
        }
        verdict
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
            shared: None,
        }
    }

    fn limiters(text: &str) -> Limiters {
        Limiters::new(&cfg(text), LimitMetrics::unregistered()).unwrap()
    }

    #[test]
    fn per_ip_burst_then_refusal_with_retry_after() {
        let l = limiters("-|{rate: 1r/m, burst: 2}|-");
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
        let l = limiters("{rate: 1r/h, burst: 3}|-|{rate: 1r/h, burst: 1}");
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
        let l = limiters("-|-|-");
        for i in 0..10_000 {
            assert!(l.check_client("1.1.1.1".parse().unwrap()).is_ok());
            assert!(l.check_user(if i % 2 == 0 { "a" } else { "b" }).is_ok());
        }
    }

    /// Redis out of reach: shared buckets answer from their fallback (burst / nodes) at
    /// once, and local buckets are untouched by it.
    #[tokio::test]
    async fn shared_buckets_fall_back_to_their_node_share_without_redis() {
        let mut c = cfg("-|{rate: 1r/h, burst: 9, shared: true}|{rate: 1r/h, burst: 5}");
        c.shared = Some(SharedLimitsConfig {
            redis: Some("redis://127.0.0.1:1".into()),
            cluster: vec![],
            timeout: Duration::from_millis(2),
            connect_timeout: Duration::from_millis(50),
            key_prefix: "kefu:test:".into(),
            hash_tag: "rl".into(),
            nodes: 3,
            breaker: Default::default(),
            ahead: 0.5,
            ahead_linger: Duration::from_millis(1),
        });
        let metrics = LimitMetrics::unregistered();
        let l = Limiters::new(&c, metrics.clone()).unwrap();
        assert!(l.has_shared());
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        let started = WallInstant::now();
        let mut admitted = 0;
        for _ in 0..10 {
            if l.check_client(ip).is_ok() && l.check_shared(ip, Some("u")).await.is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 3, "9 / 3 nodes");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(metrics.fallbacks.with_label_values(&["allowed"]).get(), 3);
        // The per-user bucket is local: its own 5.
        assert_eq!((0..10).filter(|_| l.check_user("u").is_ok()).count(), 5);
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
