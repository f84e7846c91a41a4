//! Edge filter: the first stage of every request. Finds the real client address (trusting
//! forwarding headers only from configured proxies), then drops traffic by client network
//! and by user agent. Everything is compiled once per configuration; a check is a trie
//! lookup and one Aho-Corasick scan.

mod ip_table;

use std::net::IpAddr;

use aho_corasick::AhoCorasick;
use regex::bytes::{RegexSet, RegexSetBuilder};

pub use ip_table::IpTable;

use crate::config::{EdgeConfig, IpDefault, RealIpHeader};

/// Why a request was refused at the edge (a metric label and a log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    ClientIp,
    UserAgent,
    EmptyUserAgent,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::ClientIp => "client_ip",
            DenyReason::UserAgent => "user_agent",
            DenyReason::EmptyUserAgent => "empty_user_agent",
        }
    }
}

/// The compiled edge rules of one configuration.
pub struct EdgeFilter {
    trusted: IpTable<()>,
    header: RealIpHeader,
    recursive: bool,
    /// `true` = allow, `false` = deny, for the most specific matching network.
    ip_rules: IpTable<bool>,
    ip_default_allow: bool,
    deny_empty_ua: bool,
    ua_contains: Option<AhoCorasick>,
    ua_regex: Option<RegexSet>,
}

/// The client address and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// Whether `ip` was taken from a forwarding header of a trusted proxy.
    pub forwarded: bool,
}

impl EdgeFilter {
    pub fn new(cfg: &EdgeConfig) -> anyhow::Result<EdgeFilter> {
        let mut trusted = IpTable::new();
        for c in &cfg.real_ip.trusted_proxies {
            trusted.insert(c.0, ());
        }
        let mut ip_rules = IpTable::new();
        for c in &cfg.ip_deny {
            ip_rules.insert(c.0, false);
        }
        for c in &cfg.ip_allow {
            ip_rules.insert(c.0, true);
        }
        let ua = &cfg.user_agent;
        let ua_contains = if ua.deny_contains.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&ua.deny_contains)?,
            )
        };
        let ua_regex = if ua.deny_regex.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(ua.deny_regex.iter().map(|p| p.as_str()))
                    .case_insensitive(true)
                    .build()?,
            )
        };
        Ok(EdgeFilter {
            trusted,
            header: cfg.real_ip.header,
            recursive: cfg.real_ip.recursive,
            ip_rules,
            ip_default_allow: cfg.ip_default == IpDefault::Allow,
            deny_empty_ua: ua.deny_empty,
            ua_contains,
            ua_regex,
        })
    }

    /// Which forwarding header this filter reads, if any proxy is trusted at all.
    pub fn real_ip_header(&self) -> Option<&'static str> {
        if self.trusted.is_empty() {
            return None;
        }
        Some(match self.header {
            RealIpHeader::XForwardedFor => "x-forwarded-for",
            RealIpHeader::XRealIp => "x-real-ip",
        })
    }

    /// The client address: the peer, unless the peer is a trusted proxy and its forwarding
    /// header (`header_value`, the configured header) names a valid address.
    pub fn client_addr(&self, peer: IpAddr, header_value: Option<&[u8]>) -> ClientAddr {
        let direct = ClientAddr {
            ip: peer,
            forwarded: false,
        };
        if !self.trusted.contains(peer) {
            return direct;
        }
        let Some(value) = header_value.and_then(|v| std::str::from_utf8(v).ok()) else {
            return direct;
        };
        let found = match self.header {
            RealIpHeader::XRealIp => value.trim().parse().ok(),
            RealIpHeader::XForwardedFor => self.walk_forwarded_for(value),
        };
        match found {
            Some(ip) => ClientAddr {
                ip,
                forwarded: true,
            },
            None => direct,
        }
    }

    /// nginx's realip semantics: the rightmost address, or with `recursive` the rightmost
    /// one that is not a trusted proxy (the leftmost if all are trusted). An unparsable
    /// entry where an address is needed makes the whole header untrusted.
    fn walk_forwarded_for(&self, value: &str) -> Option<IpAddr> {
        let mut last = None;
        for entry in value.rsplit(',') {
            let ip: IpAddr = entry.trim().parse().ok()?;
            if !self.recursive || !self.trusted.contains(ip) {
                return Some(ip);
            }
            last = Some(ip);
        }
        last
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), DenyReason> {
        let allow = self
            .ip_rules
            .lookup(ip)
            .copied()
            .unwrap_or(self.ip_default_allow);
        if allow {
            Ok(())
        } else {
            Err(DenyReason::ClientIp)
        }
    }

    pub fn check_user_agent(&self, ua: Option<&[u8]>) -> Result<(), DenyReason> {
        let ua = ua.unwrap_or_default();
        if ua.iter().all(u8::is_ascii_whitespace) {
            return if self.deny_empty_ua {
                Err(DenyReason::EmptyUserAgent)
            } else {
                Ok(())
            };
        }
        if self.ua_contains.as_ref().is_some_and(|ac| ac.is_match(ua))
            || self.ua_regex.as_ref().is_some_and(|set| set.is_match(ua))
        {
            return Err(DenyReason::UserAgent);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::{Cidr, Pattern};
    use crate::config::{RealIpConfig, UserAgentConfig};

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn filter(trusted: &[&str], recursive: bool) -> EdgeFilter {
        EdgeFilter::new(&EdgeConfig {
            real_ip: RealIpConfig {
                trusted_proxies: cidrs(trusted),
                header: RealIpHeader::XForwardedFor,
                recursive,
            },
            ip_default: IpDefault::Allow,
            ip_allow: cidrs(&["10.1.0.0/16"]),
            ip_deny: cidrs(&["10.0.0.0/8", "2001:db8:dead::/48"]),
            user_agent: UserAgentConfig {
                deny_empty: true,
                deny_contains: vec!["sqlmap".into(), "zgrab".into()],
                deny_regex: vec![serde_yaml_ng::from_str::<Pattern>("'^curl/7\\.1\\.'").unwrap()],
            },
        })
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let f = filter(&["192.168.0.0/16"], true);
        let c = f.client_addr(ip("203.0.113.9"), Some(b"10.0.0.1"));
        assert_eq!(
            c,
            ClientAddr {
                ip: ip("203.0.113.9"),
                forwarded: false
            }
        );
    }

    #[test]
    fn forwarded_for_walks_past_trusted_proxies() {
        let f = filter(&["192.168.0.0/16"], true);
        let c = f.client_addr(ip("192.168.1.1"), Some(b"1.2.3.4, 5.6.7.8, 192.168.3.3"));
        assert_eq!(c.ip, ip("5.6.7.8"));
        assert!(c.forwarded);
        let f = filter(&["192.168.0.0/16"], false);
        let c = f.client_addr(ip("192.168.1.1"), Some(b"1.2.3.4, 192.168.3.3"));
        assert_eq!(c.ip, ip("192.168.3.3"));
        let f = filter(&["192.168.0.0/16"], true);
        let c = f.client_addr(ip("192.168.1.1"), Some(b"garbage, 192.168.3.3"));
        assert_eq!(
            c.ip,
            ip("192.168.1.1"),
            "garbage where an address is needed"
        );
    }

    #[test]
    fn ip_rules_most_specific_wins() {
        let f = filter(&[], true);
        assert_eq!(f.check_ip(ip("10.2.3.4")), Err(DenyReason::ClientIp));
        assert_eq!(f.check_ip(ip("10.1.3.4")), Ok(()));
        assert_eq!(f.check_ip(ip("8.8.8.8")), Ok(()));
        assert_eq!(
            f.check_ip(ip("2001:db8:dead::1")),
            Err(DenyReason::ClientIp)
        );
        assert_eq!(f.check_ip(ip("::ffff:10.2.3.4")), Err(DenyReason::ClientIp));
    }

    #[test]
    fn user_agents() {
        let f = filter(&[], true);
        assert_eq!(f.check_user_agent(None), Err(DenyReason::EmptyUserAgent));
        assert_eq!(
            f.check_user_agent(Some(b"  ")),
            Err(DenyReason::EmptyUserAgent)
        );
        assert_eq!(
            f.check_user_agent(Some(b"SQLMap/1.7")),
            Err(DenyReason::UserAgent)
        );
        assert_eq!(
            f.check_user_agent(Some(b"Mozilla zgrab/0.x")),
            Err(DenyReason::UserAgent)
        );
        assert_eq!(
            f.check_user_agent(Some(b"CURL/7.1.2")),
            Err(DenyReason::UserAgent)
        );
        assert_eq!(f.check_user_agent(Some(b"curl/8.5.0")), Ok(()));
        assert_eq!(f.check_user_agent(Some(b"Mozilla/5.0 \xff")), Ok(()));
    }
}
