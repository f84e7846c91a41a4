//! `dialog.yaml`: where multi-turn dialogue state lives (in memory, Redis, Redis Cluster),
//! how long it lasts and how large it may grow, and the context rules that resolve
//! follow-ups ("那要多久" after a refund request).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::source::Source;
use crate::intent::Intent;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDialog {
    #[serde(default = "yes")]
    enabled: bool,
    store: StoreKind,
    #[serde(default = "default_ttl", with = "humantime_serde")]
    ttl: Duration,
    #[serde(default = "default_max_state_bytes")]
    max_state_bytes: usize,
    #[serde(default = "default_history")]
    history: usize,
    #[serde(default)]
    memory: MemoryStoreConfig,
    #[serde(default)]
    redis: Option<RedisConfig>,
    #[serde(default)]
    cluster: Option<ClusterConfig>,
    #[serde(default)]
    context: RawContext,
}

fn yes() -> bool {
    true
}

fn default_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_max_state_bytes() -> usize {
    2048
}

fn default_history() -> usize {
    16
}

/// Which [`crate::dialog::DialogStore`] keeps the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Memory,
    Redis,
    Cluster,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
            StoreKind::Cluster => "cluster",
        }
    }
}

/// The embedded store: bounded by entries and by bytes, least recently used first out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryStoreConfig {
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig {
            max_entries: 200_000,
            max_bytes: 256 << 20,
        }
    }
}

/// What the Redis stores (standalone and cluster) share.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisOptions {
    /// Every key starts with this, then `{user_id}` as the hash tag.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// One command (or pipeline) waits at most this long for its answer.
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Total time spent sleeping between retries of one operation.
    #[serde(default = "default_retry_budget", with = "humantime_serde")]
    pub retry_budget: Duration,
    /// A save is acknowledged only once this many replicas have it (`WAIT`); 0 does not
    /// wait. With 1, a turn the server acknowledged survives the loss of its master.
    #[serde(default)]
    pub wait_replicas: u32,
    #[serde(default = "default_wait_timeout", with = "humantime_serde")]
    pub wait_timeout: Duration,
}

fn default_prefix() -> String {
    "kefu:".into()
}

fn default_command_timeout() -> Duration {
    Duration::from_millis(50)
}

fn default_connect_timeout() -> Duration {
    Duration::from_millis(200)
}

fn default_retry_budget() -> Duration {
    Duration::from_millis(10)
}

fn default_wait_timeout() -> Duration {
    Duration::from_millis(20)
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    #[serde(flatten)]
    pub options: RedisOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Seed nodes, `redis://host:port`; the client learns the rest of the cluster.
    pub nodes: Vec<String>,
    #[serde(flatten)]
    pub options: RedisOptions,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawContext {
    #[serde(default = "default_within", with = "humantime_serde")]
    within: Duration,
    #[serde(default = "default_true")]
    model_decides_follow_ups: bool,
    #[serde(default)]
    follow_ups: Vec<RawFollowUp>,
}

fn default_true() -> bool {
    true
}

fn default_within() -> Duration {
    Duration::from_secs(10 * 60)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFollowUp {
    after: Vec<String>,
    cues: Vec<String>,
    intent: String,
    #[serde(default = "default_max_chars")]
    max_chars: usize,
}

fn default_max_chars() -> usize {
    16
}

/// Which previous intents a follow-up rule applies after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Any,
    Intents(Vec<Intent>),
}

/// What a follow-up resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpIntent {
    /// The previous turn's intent again ("还是那个单子").
    Previous,
    Intent(Intent),
}

/// A short message that only makes sense after one of `after`: when it contains one of
/// `cues` and has at most `max_chars` characters, it means `intent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpRule {
    pub after: After,
    pub cues: Vec<String>,
    pub intent: FollowUpIntent,
    pub max_chars: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextConfig {
    /// A previous turn older than this is no longer context.
    pub within: Duration,
    /// With a previous turn in the window, the router's fast path does not answer: the
    /// model stage reads the message with that turn (keyword rules and follow-ups still win).
    pub model_decides_follow_ups: bool,
    pub follow_ups: Vec<FollowUpRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Memory(MemoryStoreConfig),
    Redis(RedisConfig),
    Cluster(ClusterConfig),
}

impl StoreConfig {
    pub fn kind(&self) -> StoreKind {
        match self {
            StoreConfig::Memory(_) => StoreKind::Memory,
            StoreConfig::Redis(_) => StoreKind::Redis,
            StoreConfig::Cluster(_) => StoreKind::Cluster,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogConfig {
    /// Off: every message is answered on its own, nothing is stored.
    pub enabled: bool,
    pub store: StoreConfig,
    /// Every read and write of a user's state extends its life to this (sliding expiry).
    pub ttl: Duration,
    /// The encoded state is trimmed (oldest turns first) to at most this many bytes.
    pub max_state_bytes: usize,
    /// At most this many past turns are kept.
    pub history: usize,
    pub context: ContextConfig,
}

pub fn validate(raw: RawDialog, src: &Source) -> Result<DialogConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if raw.ttl < Duration::from_secs(1) {
        errors.push(src.error_at("ttl", "ttl must be at least 1s"));
    }
    if !(256..=65_536).contains(&raw.max_state_bytes) {
        errors.push(src.error_at("max_state_bytes", "max_state_bytes must be 256..=65536"));
    }
    if !(1..=256).contains(&raw.history) {
        errors.push(src.error_at("history", "history must be 1..=256"));
    }
    if raw.memory.max_entries == 0 || raw.memory.max_bytes < 4096 {
        errors.push(src.error_at(
            "memory",
            "memory.max_entries must be at least 1 and memory.max_bytes at least 4096",
        ));
    }
    let check_options = |o: &RedisOptions, key: &str, errors: &mut Vec<ConfigError>| {
        if o.command_timeout.is_zero() || o.connect_timeout.is_zero() {
            errors.push(src.error_at(key, format!("{key}: timeouts must be above 0")));
        }
        if o.retry_budget > Duration::from_millis(100) {
            errors.push(src.error_at(key, format!("{key}.retry_budget must be at most 100ms")));
        }
        if o.key_prefix.contains(['{', '}']) {
            errors.push(src.error_at(
                key,
                format!("{key}.key_prefix must not contain braces (they make the hash tag)"),
            ));
        }
    };
    let check_url = |url: &str, key: &str, what: &str, errors: &mut Vec<ConfigError>| {
        if redis::parse_redis_url(url).is_none() {
            errors.push(src.error_at(key, format!("{what} `{url}` is not a redis:// URL")));
        }
    };
    let store = match raw.store {
        StoreKind::Memory => Some(StoreConfig::Memory(raw.memory)),
        StoreKind::Redis => match raw.redis {
            Some(r) => {
                check_options(&r.options, "redis", &mut errors);
                check_url(&r.url, "url", "redis.url", &mut errors);
                Some(StoreConfig::Redis(r))
            }
            None => {
                errors.push(src.error_at("store", "store: redis needs a `redis:` section"));
                None
            }
        },
        StoreKind::Cluster => match raw.cluster {
            Some(c) => {
                check_options(&c.options, "cluster", &mut errors);
                if c.nodes.is_empty() {
                    errors.push(src.error_at("nodes", "cluster.nodes must name a node"));
                }
                for n in &c.nodes {
                    check_url(n, "nodes", "cluster node", &mut errors);
                }
                Some(StoreConfig::Cluster(c))
            }
            None => {
                errors.push(src.error_at("store", "store: cluster needs a `cluster:` section"));
                None
            }
        },
    };
    let mut follow_ups = Vec::new();
    for (i, f) in raw.context.follow_ups.into_iter().enumerate() {
        let at = |reason: String| src.error_at("follow_ups", format!("follow_ups[{i}]: {reason}"));
        let after = if f.after.iter().any(|a| a == "any") {
            After::Any
        } else {
            let mut intents = Vec::new();
            for a in &f.after {
                match a.parse::<Intent>() {
                    Ok(intent) => intents.push(intent),
                    Err(e) => errors.push(at(format!("after: {e}"))),
                }
            }
            After::Intents(intents)
        };
        if f.after.is_empty() {
            errors.push(at("after must name an intent (or `any`)".into()));
        }
        let intent = if f.intent == "previous" {
            FollowUpIntent::Previous
        } else {
            match f.intent.parse::<Intent>() {
                Ok(intent) => FollowUpIntent::Intent(intent),
                Err(e) => {
                    errors.push(at(format!("intent: {e}")));
                    continue;
                }
            }
        };
        if f.cues.is_empty() || f.cues.iter().any(|c| c.trim().is_empty()) {
            errors.push(at("cues must be non-empty strings".into()));
        }
        if f.max_chars == 0 {
            errors.push(at("max_chars must be at least 1".into()));
        }
        follow_ups.push(FollowUpRule {
            after,
            cues: f.cues,
            intent,
            max_chars: f.max_chars,
        });
    }
    match store {
        Some(store) if errors.is_empty() => Ok(DialogConfig {
            enabled: raw.enabled,
            store,
            ttl: raw.ttl,
            max_state_bytes: raw.max_state_bytes,
            history: raw.history,
            context: ContextConfig {
                within: raw.context.within,
                model_decides_follow_ups: raw.context.model_decides_follow_ups,
                follow_ups,
            },
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str) -> Result<DialogConfig, Vec<ConfigError>> {
        Source::check_text(Path::new("conf"), "dialog.yaml", text, validate)
    }

    #[test]
    fn defaults_are_the_issue_s_numbers() {
        let c = check("store: memory\n").unwrap();
        assert_eq!(c.ttl, Duration::from_secs(1800));
        assert_eq!(c.max_state_bytes, 2048);
        assert_eq!(c.store.kind(), StoreKind::Memory);
        let c = check("store: redis\nredis: {url: 'redis://127.0.0.1:6379/'}\n").unwrap();
        let StoreConfig::Redis(r) = c.store else {
            panic!("redis")
        };
        assert_eq!(r.options.retry_budget, Duration::from_millis(10));
        assert_eq!(r.options.key_prefix, "kefu:");
    }

    #[test]
    fn errors_name_the_key() {
        let errs = check("store: redis\n").unwrap_err();
        assert!(
            errs[0].reason.contains("needs a `redis:` section"),
            "{errs:?}"
        );
        let errs = check("store: cluster\ncluster:\n  nodes: ['http://x']\n  key_prefix: 'a{b'\n")
            .unwrap_err();
        let all: Vec<_> = errs.iter().map(|e| e.reason.as_str()).collect();
        assert!(all.iter().any(|r| r.contains("braces")), "{all:?}");
        assert!(
            all.iter().any(|r| r.contains("not a redis:// URL")),
            "{all:?}"
        );
        let errs = check(
            "store: memory\ncontext:\n  follow_ups:\n    - {after: [refnd], cues: [多久], intent: refund_progress}\n",
        )
        .unwrap_err();
        assert!(errs[0].reason.contains("follow_ups[0]: after"), "{errs:?}");
        assert_eq!(errs[0].line, Some(3));
    }
}
