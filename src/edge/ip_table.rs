//! Longest-prefix lookup over IPv4 and IPv6 networks.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// Networks mapped to values; a lookup returns the value of the most specific network that
/// contains the address. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, seen on dual-stack
/// listeners) are looked up as IPv4.
#[derive(Clone, Default)]
pub struct IpTable<V> {
    v4: PrefixMap<Ipv4Net, V>,
    v6: PrefixMap<Ipv6Net, V>,
    len: usize,
}

impl<V: Clone> IpTable<V> {
    pub fn new() -> Self {
        IpTable {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
            len: 0,
        }
    }

    /// Insert a network; a later insert of the same network replaces the value.
    pub fn insert(&mut self, net: IpNet, value: V) {
        let replaced = match net {
            IpNet::V4(n) => self.v4.insert(n, value),
            IpNet::V6(n) => self.v6.insert(n, value),
        };
        if replaced.is_none() {
            self.len += 1;
        }
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&V> {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, v)| v),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, v)| v),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.lookup(ip).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn most_specific_network_wins() {
        let mut t = IpTable::new();
        t.insert("10.0.0.0/8".parse().unwrap(), "deny");
        t.insert("10.1.2.0/24".parse().unwrap(), "allow");
        t.insert("2001:db8::/32".parse().unwrap(), "deny6");
        assert_eq!(t.lookup(ip("10.9.9.9")), Some(&"deny"));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&"allow"));
        assert_eq!(t.lookup(ip("11.0.0.1")), None);
        assert_eq!(t.lookup(ip("2001:db8::1")), Some(&"deny6"));
        assert_eq!(t.lookup(ip("2001:db9::1")), None);
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_networks() {
        let mut t = IpTable::new();
        t.insert("192.0.2.0/24".parse().unwrap(), ());
        assert!(t.contains(ip("::ffff:192.0.2.7")));
        assert!(!t.is_empty());
    }
}
