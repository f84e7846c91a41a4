//! Value types that validate themselves while they are deserialised, so that a bad value is
//! reported by the YAML parser with its line.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de};

/// An IPv4 or IPv6 network; a bare address means a host route (/32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            // `10.1.2.3/8` is almost always a typo for `10.0.0.0/8`; say so instead of guessing.
            if net.trunc() != net {
                return Err(format!(
                    "invalid CIDR `{s}`: host bits set (did you mean `{}`?)",
                    net.trunc()
                ));
            }
            return Ok(Cidr(net));
        }
        match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(Cidr(IpNet::from(ip))),
            Err(_) => Err(format!("invalid CIDR `{s}`")),
        }
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A request rate in nginx notation: `10r/s`, `600r/m`, `3600r/h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub requests: u32,
    pub per: Duration,
}

impl Rate {
    /// The time between two tokens.
    pub fn period(&self) -> Duration {
        self.per / self.requests
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid rate `{s}`: expected e.g. `10r/s`, `600r/m` or `3600r/h`");
        let (n, unit) = s.trim().split_once("r/").ok_or_else(bad)?;
        let requests: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if requests == 0 {
            return Err(format!("invalid rate `{s}`: must be at least 1 request"));
        }
        Ok(Rate { requests, per })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A compiled regular expression; equal when the source text is equal.
#[derive(Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::RegexBuilder::new(&s)
            .size_limit(1 << 20)
            .build()
            .map(Pattern)
            .map_err(|e| de::Error::custom(format!("invalid regex `{s}`: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().0.prefix_len(), 8);
        assert_eq!("2001:db8::/32".parse::<Cidr>().unwrap().0.prefix_len(), 32);
        assert_eq!("127.0.0.1".parse::<Cidr>().unwrap().0.prefix_len(), 32);
        assert_eq!("::1".parse::<Cidr>().unwrap().0.prefix_len(), 128);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!(
            "10.1.2.3/8"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!("banana".parse::<Cidr>().is_err());
    }

    #[test]
    fn rates() {
        let r: Rate = "10r/s".parse().unwrap();
        assert_eq!(r.period(), Duration::from_millis(100));
        let r: Rate = "120r/m".parse().unwrap();
        assert_eq!(r.period(), Duration::from_millis(500));
        assert!("0r/s".parse::<Rate>().is_err());
        assert!("10/s".parse::<Rate>().is_err());
        assert!("10r/d".parse::<Rate>().is_err());
    }

    #[test]
    fn patterns_compile_or_explain() {
        let p: Pattern = serde_yaml_ng::from_str("'退.{0,3}款'").unwrap();
        assert!(p.0.is_match("退了款"));
        let e = serde_yaml_ng::from_str::<Pattern>("'(unclosed'").unwrap_err();
        assert!(e.to_string().contains("invalid regex"));
    }
}
