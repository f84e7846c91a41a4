//! `limits.yaml`: token buckets (global, per client IP, per `user_id`), each local to the
//! node or, with `shared: true`, shared through Redis with the other nodes and with an
//! OpenResty tier running `lua-compat/` (the `shared` section).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::source::Source;
use super::types::Rate;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    global: Option<BucketConfig>,
    per_ip: Option<BucketConfig>,
    per_user: Option<BucketConfig>,
    #[serde(default = "default_max_keys")]
    max_tracked_keys: usize,
    shared: Option<RawShared>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShared {
    redis: Option<String>,
    #[serde(default)]
    cluster: Vec<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(default = "default_prefix")]
    key_prefix: String,
    #[serde(default = "default_hash_tag")]
    hash_tag: String,
    #[serde(default = "default_nodes")]
    nodes: u32,
    #[serde(default)]
    breaker: BreakerConfig,
    #[serde(default = "default_ahead")]
    ahead: f64,
    #[serde(default = "default_ahead_linger", with = "humantime_serde")]
    ahead_linger: Duration,
}

fn default_ahead() -> f64 {
    0.5
}

fn default_ahead_linger() -> Duration {
    Duration::from_millis(1)
}

fn default_timeout() -> Duration {
    Duration::from_millis(2)
}

fn default_connect_timeout() -> Duration {
    Duration::from_millis(200)
}

fn default_prefix() -> String {
    "kefu:rl:".into()
}

fn default_hash_tag() -> String {
    "rl".into()
}

fn default_nodes() -> u32 {
    1
}

fn default_max_keys() -> usize {
    100_000
}

/// A token bucket: `rate` tokens per unit of time, holding at most `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub rate: Rate,
    pub burst: u32,
    /// Kept in Redis (`shared`), one bucket for every node and tier.
    #[serde(default)]
    pub shared: bool,
}

/// When Redis fails, shared buckets fall back to local ones until a probe succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive errors or timeouts that open the breaker.
    pub failures: u32,
    /// How long it stays open before one request probes Redis again.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 3,
            open_for: Duration::from_secs(1),
        }
    }
}

/// Where shared buckets live and what happens when that place fails.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedLimitsConfig {
    /// One Redis (`redis`), or the seed nodes of a Redis Cluster (`cluster`).
    pub redis: Option<String>,
    pub cluster: Vec<String>,
    /// The most one check may wait for Redis (default 2 ms); then the local fallback answers.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Keys are `<key_prefix>{<hash_tag>}:<bucket>:<key>`: one hash tag, so the buckets of
    /// one request are checked by one script call on Redis Cluster too. The OpenResty
    /// module builds the same keys.
    pub key_prefix: String,
    pub hash_tag: String,
    /// Nodes sharing the buckets: the local fallback admits `rate / nodes`, `burst / nodes`.
    pub nodes: u32,
    pub breaker: BreakerConfig,
    /// A request is admitted before Redis answers when Redis's last answer for its buckets
    /// (under a second old) left more than this share of the smallest burst; 0: always wait.
    pub ahead: f64,
    /// How long checks of requests already admitted ahead may wait for company before they
    /// go to Redis (nobody waits for their answer; a check someone waits for goes at once).
    pub ahead_linger: Duration,
}

/// Absent buckets do not limit. Keyed buckets remember at most `max_tracked_keys` keys each.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    pub global: Option<BucketConfig>,
    pub per_ip: Option<BucketConfig>,
    pub per_user: Option<BucketConfig>,
    pub max_tracked_keys: usize,
    /// Required when a bucket is shared.
    pub shared: Option<SharedLimitsConfig>,
}

pub fn validate(raw: RawLimits, src: &Source) -> Result<LimitsConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    for (key, bucket) in [
        ("global", &raw.global),
        ("per_ip", &raw.per_ip),
        ("per_user", &raw.per_user),
    ] {
        if let Some(b) = bucket
            && b.burst == 0
        {
            errors.push(src.error_at(key, format!("{key}.burst must be at least 1")));
        }
    }
    let any_shared = [&raw.global, &raw.per_ip, &raw.per_user]
        .into_iter()
        .any(|b| b.is_some_and(|b| b.shared));
    let shared = raw.shared.map(|s| validate_shared(s, src, &mut errors));
    if any_shared && shared.is_none() {
        errors.push(src.error_at(
            "shared: true",
            "a bucket is `shared: true` but there is no `shared` section (redis or cluster)",
        ));
    }
    if raw.max_tracked_keys < 64 || raw.max_tracked_keys > 100_000_000 {
        errors.push(src.error_at(
            "max_tracked_keys",
            "max_tracked_keys must be 64..=100000000",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(LimitsConfig {
        global: raw.global,
        per_ip: raw.per_ip,
        per_user: raw.per_user,
        max_tracked_keys: raw.max_tracked_keys,
        shared,
    })
}

fn validate_shared(
    raw: RawShared,
    src: &Source,
    errors: &mut Vec<ConfigError>,
) -> SharedLimitsConfig {
    let mut bad = |key: &str, why: &str| errors.push(src.error_at(key, why));
    match (&raw.redis, raw.cluster.is_empty()) {
        (Some(_), false) => bad("cluster", "shared: give `redis` or `cluster`, not both"),
        (None, true) => bad(
            "shared",
            "shared: give `redis` (a URL) or `cluster` (node URLs)",
        ),
        _ => {}
    }
    for url in raw.redis.iter().chain(&raw.cluster) {
        let schemes = ["redis://", "rediss://", "unix://", "redis+unix://"];
        if !schemes.iter().any(|s| url.starts_with(s)) {
            bad(
                "redis",
                &format!("shared: `{url}` is not a redis:// or unix:// URL"),
            );
        }
    }
    if raw.timeout.is_zero() || raw.timeout > Duration::from_secs(1) {
        bad(
            "timeout",
            "shared.timeout must be more than 0 and at most 1s",
        );
    }
    if raw.connect_timeout.is_zero() {
        bad(
            "connect_timeout",
            "shared.connect_timeout must be more than 0",
        );
    }
    if raw.nodes == 0 {
        bad("nodes", "shared.nodes must be at least 1");
    }
    if raw.breaker.failures == 0 || raw.breaker.open_for.is_zero() {
        bad(
            "breaker",
            "shared.breaker needs failures >= 1 and open_for > 0",
        );
    }
    if !(0.0..=1.0).contains(&raw.ahead) {
        bad(
            "ahead",
            "shared.ahead must be between 0 and 1 (0: always wait for Redis)",
        );
    }
    if raw.ahead_linger > Duration::from_millis(100) {
        bad(
            "ahead_linger",
            "shared.ahead_linger must be at most 100ms (it delays the charge of admitted requests)",
        );
    }
    if raw.hash_tag.is_empty() || raw.hash_tag.contains(['{', '}']) {
        bad(
            "hash_tag",
            "shared.hash_tag must be non-empty and without braces",
        );
    }
    SharedLimitsConfig {
        redis: raw.redis,
        cluster: raw.cluster,
        timeout: raw.timeout,
        connect_timeout: raw.connect_timeout,
        key_prefix: raw.key_prefix,
        hash_tag: raw.hash_tag,
        nodes: raw.nodes.max(1),
        breaker: raw.breaker,
        ahead: raw.ahead,
        ahead_linger: raw.ahead_linger,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str) -> Result<LimitsConfig, Vec<ConfigError>> {
        Source::check_text(Path::new("conf"), "limits.yaml", text, validate)
    }

    #[test]
    fn buckets_parse() {
        let c = check("per_ip: {rate: 20r/s, burst: 40}\n").unwrap();
        assert_eq!(c.per_ip.unwrap().burst, 40);
        assert!(c.global.is_none());
    }

    #[test]
    fn zero_burst_and_bad_rate_are_errors() {
        let e = check("global:\n  rate: 5r/s\n  burst: 0\n").unwrap_err();
        assert_eq!(e[0].line, Some(1));
        assert!(e[0].reason.contains("global.burst"));
        let e = check("per_user: {rate: fast, burst: 3}\n").unwrap_err();
        assert!(e[0].reason.contains("invalid rate `fast`"), "{e:?}");
    }

    #[test]
    fn shared_buckets_need_a_shared_section() {
        let e = check("per_user: {rate: 2r/s, burst: 10, shared: true}\n").unwrap_err();
        assert!(e[0].reason.contains("no `shared` section"), "{e:?}");
        let c = check(
            "per_user: {rate: 2r/s, burst: 10, shared: true}\n\
             shared: {redis: 'redis://127.0.0.1:6379', nodes: 3}\n",
        )
        .unwrap();
        let s = c.shared.unwrap();
        assert_eq!(s.timeout, Duration::from_millis(2), "the default timeout");
        assert_eq!(
            s.ahead_linger,
            Duration::from_millis(1),
            "the default linger"
        );
        assert_eq!((s.nodes, s.breaker.failures), (3, 3));
        assert!(c.per_user.unwrap().shared);
        let e = check(
            "shared: {redis: 'redis://a', cluster: ['redis://b'], timeout: 0ms, hash_tag: '{x}', ahead_linger: 1s}\n",
        )
        .unwrap_err();
        let all: Vec<_> = e.iter().map(|e| e.reason.clone()).collect();
        assert_eq!(e.len(), 4, "{all:?}");
        assert!(all.iter().any(|r| r.contains("ahead_linger")), "{all:?}");
    }
}
