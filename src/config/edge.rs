//! `edge.yaml`: who may talk to us at all (client IP rules, user-agent rules) and which
//! peers are trusted to tell us the client IP (nginx's realip module, same semantics).

use serde::Deserialize;

use super::ConfigError;
use super::source::Source;
use super::types::{Cidr, Pattern};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    #[serde(default)]
    real_ip: RawRealIp,
    #[serde(default)]
    ip_rules: RawIpRules,
    #[serde(default)]
    user_agent: RawUserAgent,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawRealIp {
    trusted_proxies: Vec<Cidr>,
    header: RealIpHeader,
    recursive: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawIpRules {
    default: IpDefault,
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawUserAgent {
    deny_empty: bool,
    deny_contains: Vec<String>,
    deny_regex: Vec<Pattern>,
}

/// Which header carries the client address when the peer is a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum RealIpHeader {
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    #[serde(rename = "x-real-ip")]
    XRealIp,
}

/// What happens to an address no rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpDefault {
    #[default]
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EdgeConfig {
    pub real_ip: RealIpConfig,
    /// The most specific matching network decides; `default` applies when none matches.
    pub ip_default: IpDefault,
    pub ip_allow: Vec<Cidr>,
    pub ip_deny: Vec<Cidr>,
    pub user_agent: UserAgentConfig,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RealIpConfig {
    pub trusted_proxies: Vec<Cidr>,
    pub header: RealIpHeader,
    /// Walk X-Forwarded-For from the right past trusted proxies (nginx `real_ip_recursive`).
    pub recursive: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserAgentConfig {
    pub deny_empty: bool,
    /// Case-insensitive substrings, lower-cased here.
    pub deny_contains: Vec<String>,
    pub deny_regex: Vec<Pattern>,
}

pub fn validate(raw: RawEdge, src: &Source) -> Result<EdgeConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    for cidr in &raw.ip_rules.allow {
        if raw.ip_rules.deny.contains(cidr) {
            errors.push(src.error_at(
                "allow",
                format!("ip_rules: `{}` is both allowed and denied", cidr.0),
            ));
        }
    }
    let mut deny_contains = Vec::with_capacity(raw.user_agent.deny_contains.len());
    for s in raw.user_agent.deny_contains {
        if s.trim().is_empty() {
            errors.push(src.error_at(
                "deny_contains",
                "user_agent.deny_contains: an empty pattern would deny everyone (use deny_empty)",
            ));
        }
        deny_contains.push(s.to_ascii_lowercase());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(EdgeConfig {
        real_ip: RealIpConfig {
            trusted_proxies: raw.real_ip.trusted_proxies,
            header: raw.real_ip.header,
            recursive: raw.real_ip.recursive,
        },
        ip_default: raw.ip_rules.default,
        ip_allow: raw.ip_rules.allow,
        ip_deny: raw.ip_rules.deny,
        user_agent: UserAgentConfig {
            deny_empty: raw.user_agent.deny_empty,
            deny_contains,
            deny_regex: raw.user_agent.deny_regex,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str) -> Result<EdgeConfig, Vec<ConfigError>> {
        Source::check_text(Path::new("conf"), "edge.yaml", text, validate)
    }

    #[test]
    fn bad_cidr_is_reported_with_its_line() {
        let e = check("ip_rules:\n  deny:\n    - 10.0.0.0/8\n    - 300.1.1.1/32\n").unwrap_err();
        assert_eq!(e[0].line, Some(4), "{e:?}");
        assert!(e[0].reason.contains("invalid CIDR `300.1.1.1/32`"), "{e:?}");
    }

    #[test]
    fn bad_regex_and_unknown_keys_are_errors() {
        let e = check("user_agent:\n  deny_regex: ['(']\n").unwrap_err();
        assert!(e[0].reason.contains("invalid regex"), "{e:?}");
        let e = check("user_agnet: {}\n").unwrap_err();
        assert!(e[0].reason.contains("unknown field `user_agnet`"), "{e:?}");
    }

    #[test]
    fn user_agent_substrings_are_lower_cased() {
        let c = check("user_agent:\n  deny_contains: [SQLMap]\n").unwrap();
        assert_eq!(c.user_agent.deny_contains, vec!["sqlmap"]);
    }
}
