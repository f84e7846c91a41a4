//! `upstreams.yaml`: pools of backends for every path that is not the chat API, and which
//! path prefix goes to which pool (longest prefix wins, like nginx prefix locations).

use std::net::SocketAddr;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use super::ConfigError;
use super::source::Source;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreams {
    #[serde(default)]
    pools: IndexMap<String, RawPool>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    servers: Vec<RawServer>,
    #[serde(default)]
    health_check: RawHealthCheck,
    #[serde(default = "default_connect", with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(default = "default_read", with = "humantime_serde")]
    read_timeout: Duration,
}

/// `"10.0.0.1:80"`, or `{addr: "10.0.0.1:80", weight: 3}` (nginx's `server … weight=3`).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawServer {
    Addr(SocketAddr),
    Weighted { addr: SocketAddr, weight: u32 },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHealthCheck {
    kind: HealthCheckKind,
    path: String,
    host: String,
    #[serde(with = "humantime_serde")]
    interval: Duration,
    failures: u32,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        RawHealthCheck {
            kind: HealthCheckKind::Tcp,
            path: "/".into(),
            host: "localhost".into(),
            interval: Duration::from_secs(5),
            failures: 1,
        }
    }
}

fn default_connect() -> Duration {
    Duration::from_secs(2)
}

fn default_read() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckKind {
    /// A TCP connect.
    Tcp,
    /// `GET path` answered with 200.
    Http,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamsConfig {
    pub pools: IndexMap<String, PoolConfig>,
    /// Sorted longest prefix first.
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub servers: Vec<BackendConfig>,
    pub health_check: HealthCheckConfig,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// One backend and its share of the pool's requests (weighted round robin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    pub addr: SocketAddr,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    pub kind: HealthCheckKind,
    pub path: String,
    pub host: String,
    pub interval: Duration,
    /// Failed checks in a row before a server is taken out (nginx's max_fails, counted on
    /// health checks rather than requests).
    pub failures: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    pub pool: String,
}

pub fn validate(raw: RawUpstreams, src: &Source) -> Result<UpstreamsConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut pools = IndexMap::with_capacity(raw.pools.len());
    for (name, p) in raw.pools {
        if p.servers.is_empty() {
            errors.push(src.error_at(&name, format!("pool `{name}` has no servers")));
        }
        if p.health_check.interval < Duration::from_millis(100) {
            errors.push(src.error_at(
                &name,
                format!("pool `{name}`: health_check.interval below 100ms"),
            ));
        }
        if !p.health_check.path.starts_with('/') {
            errors.push(src.error_at(
                &name,
                format!("pool `{name}`: health_check.path must start with `/`"),
            ));
        }
        if p.health_check.failures == 0 {
            errors.push(src.error_at(
                &name,
                format!("pool `{name}`: health_check.failures must be at least 1"),
            ));
        }
        let servers: Vec<BackendConfig> = p
            .servers
            .iter()
            .map(|s| match *s {
                RawServer::Addr(addr) => BackendConfig { addr, weight: 1 },
                RawServer::Weighted { addr, weight } => BackendConfig { addr, weight },
            })
            .collect();
        if servers.iter().any(|s| s.weight == 0 || s.weight > 1000) {
            errors.push(src.error_at(&name, format!("pool `{name}`: weights must be 1..=1000")));
        }
        if p.connect_timeout.is_zero() || p.read_timeout.is_zero() {
            errors.push(src.error_at(&name, format!("pool `{name}`: timeouts must be above zero")));
        }
        pools.insert(
            name,
            PoolConfig {
                servers,
                health_check: HealthCheckConfig {
                    kind: p.health_check.kind,
                    path: p.health_check.path,
                    host: p.health_check.host,
                    interval: p.health_check.interval,
                    failures: p.health_check.failures,
                },
                connect_timeout: p.connect_timeout,
                read_timeout: p.read_timeout,
            },
        );
    }
    let mut routes = raw.routes;
    for r in &routes {
        if !r.prefix.starts_with('/') {
            errors.push(src.error_at(
                "prefix",
                format!("route prefix `{}` must start with `/`", r.prefix),
            ));
        }
        if !pools.contains_key(&r.pool) {
            errors.push(src.error_at(
                "pool",
                format!("route `{}` names unknown pool `{}`", r.prefix, r.pool),
            ));
        }
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(UpstreamsConfig { pools, routes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str) -> Result<UpstreamsConfig, Vec<ConfigError>> {
        Source::check_text(Path::new("conf"), "upstreams.yaml", text, validate)
    }

    #[test]
    fn routes_sort_longest_prefix_first() {
        let c = check(
            "pools:\n  web: {servers: ['127.0.0.1:1']}\n  api: {servers: ['127.0.0.1:2']}\nroutes:\n  - {prefix: /, pool: web}\n  - {prefix: /api/, pool: api}\n",
        )
        .unwrap();
        assert_eq!(c.routes[0].prefix, "/api/");
        assert_eq!(c.pools["web"].health_check.interval, Duration::from_secs(5));
        assert_eq!(c.pools["web"].servers[0].weight, 1);
    }

    #[test]
    fn servers_take_weights_and_checks_take_failures() {
        let c = check(
            "pools:\n  bot:\n    servers: ['127.0.0.1:1', {addr: '127.0.0.1:2', weight: 3}]\n    health_check: {failures: 2}\n",
        )
        .unwrap();
        let weights: Vec<u32> = c.pools["bot"].servers.iter().map(|s| s.weight).collect();
        assert_eq!(weights, [1, 3]);
        assert_eq!(c.pools["bot"].health_check.failures, 2);
        let e =
            check("pools:\n  bot: {servers: [{addr: '127.0.0.1:2', weight: 0}]}\n").unwrap_err();
        assert!(e[0].reason.contains("weights"), "{e:?}");
    }

    #[test]
    fn unknown_pool_and_bad_address_are_errors() {
        let e = check("routes:\n  - {prefix: /, pool: nope}\n").unwrap_err();
        assert!(e[0].reason.contains("unknown pool `nope`"), "{e:?}");
        let e = check("pools:\n  web:\n    servers: ['localhost:80']\n").unwrap_err();
        assert_eq!(e[0].line, Some(3), "{e:?}");
    }
}
