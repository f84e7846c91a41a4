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
    servers: Vec<SocketAddr>,
    #[serde(default)]
    health_check: RawHealthCheck,
    #[serde(default = "default_connect", with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(default = "default_read", with = "humantime_serde")]
    read_timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHealthCheck {
    kind: HealthCheckKind,
    path: String,
    host: String,
    #[serde(with = "humantime_serde")]
    interval: Duration,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        RawHealthCheck {
            kind: HealthCheckKind::Tcp,
            path: "/".into(),
            host: "localhost".into(),
            interval: Duration::from_secs(5),
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
    pub servers: Vec<SocketAddr>,
    pub health_check: HealthCheckConfig,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    pub kind: HealthCheckKind,
    pub path: String,
    pub host: String,
    pub interval: Duration,
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
        if p.connect_timeout.is_zero() || p.read_timeout.is_zero() {
            errors.push(src.error_at(&name, format!("pool `{name}`: timeouts must be above zero")));
        }
        pools.insert(
            name,
            PoolConfig {
                servers: p.servers,
                health_check: HealthCheckConfig {
                    kind: p.health_check.kind,
                    path: p.health_check.path,
                    host: p.health_check.host,
                    interval: p.health_check.interval,
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
    }

    #[test]
    fn unknown_pool_and_bad_address_are_errors() {
        let e = check("routes:\n  - {prefix: /, pool: nope}\n").unwrap_err();
        assert!(e[0].reason.contains("unknown pool `nope`"), "{e:?}");
        let e = check("pools:\n  web:\n    servers: ['localhost:80']\n").unwrap_err();
        assert_eq!(e[0].line, Some(3), "{e:?}");
    }
}
