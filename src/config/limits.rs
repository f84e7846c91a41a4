//! `limits.yaml`: local token buckets (global, per client IP, per `user_id`).

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
}

/// Absent buckets do not limit. Keyed buckets remember at most `max_tracked_keys` keys each.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    pub global: Option<BucketConfig>,
    pub per_ip: Option<BucketConfig>,
    pub per_user: Option<BucketConfig>,
    pub max_tracked_keys: usize,
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
    })
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
}
