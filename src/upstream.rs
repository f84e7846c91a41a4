//! Upstream pools for the reverse-proxied paths (and the chat API's answer upstream):
//! pingora's `LoadBalancer` (round robin over healthy backends) per pool, health-checked by
//! one background service that follows reloads (`server`). A pool whose configuration did
//! not change is carried over by a reload with its health state, so a SIGHUP never sends
//! traffic to a backend already known to be down.
//!
//! A stage of its own, below `state` (which builds the pools of each snapshot) and `proxy`
//! (which sends requests to them), so neither has to import the other.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt as _;

use indexmap::IndexMap;
use pingora::http::RequestHeader;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::{Backend, Backends, LoadBalancer, selection::RoundRobin};
use pingora::upstreams::peer::HttpPeer;

use crate::config::{HealthCheckKind, PoolConfig, UpstreamsConfig};

pub struct Pool {
    pub name: String,
    config: PoolConfig,
    lb: LoadBalancer<RoundRobin>,
    next_check: std::sync::Mutex<Instant>,
}

impl Pool {
    fn new(name: &str, config: &PoolConfig) -> anyhow::Result<Pool> {
        // Weighted round robin over the configured servers (a fixed set: no discovery).
        let backends = config
            .servers
            .iter()
            .map(|s| {
                let weight = usize::try_from(s.weight).unwrap_or(1);
                Backend::new_with_weight(&s.addr.to_string(), weight)
            })
            .collect::<Result<BTreeSet<Backend>, _>>()?;
        let mut lb =
            LoadBalancer::<RoundRobin>::from_backends(Backends::new(Static::new(backends)));
        lb.update()
            .now_or_never()
            .ok_or_else(|| anyhow::anyhow!("static discovery blocked"))??;
        let failures = usize::try_from(config.health_check.failures).unwrap_or(1);
        let check: Box<dyn HealthCheck + Send + Sync> = match config.health_check.kind {
            HealthCheckKind::Tcp => {
                let mut hc = TcpHealthCheck::new();
                hc.consecutive_failure = failures;
                hc
            }
            HealthCheckKind::Http => {
                let mut hc = HttpHealthCheck::new(&config.health_check.host, false);
                let mut req =
                    RequestHeader::build("GET", config.health_check.path.as_bytes(), None)?;
                req.append_header("Host", config.health_check.host.as_str())?;
                hc.req = req;
                hc.consecutive_failure = failures;
                Box::new(hc)
            }
        };
        lb.set_health_check(check);
        Ok(Pool {
            name: name.to_owned(),
            config: config.clone(),
            lb,
            next_check: std::sync::Mutex::new(Instant::now()),
        })
    }

    /// A healthy backend, round robin; `None` when every backend is down.
    pub fn select(&self) -> Option<HttpPeer> {
        let backend = self.lb.select(b"", 256)?;
        let mut peer = HttpPeer::new(backend.addr, false, String::new());
        peer.options.connection_timeout = Some(self.config.connect_timeout);
        peer.options.read_timeout = Some(self.config.read_timeout);
        Some(peer)
    }

    /// Run the health check if its interval has passed (called by the health-check service
    /// on every tick).
    pub async fn check_if_due(&self, now: Instant) {
        {
            let mut next = self.next_check.lock().unwrap_or_else(|e| e.into_inner());
            if *next > now {
                return;
            }
            *next = now + self.config.health_check.interval;
        }
        let backends = self.lb.backends();
        let before: Vec<(Backend, bool)> = backends
            .get_backend()
            .iter()
            .map(|b| (b.clone(), backends.ready(b)))
            .collect();
        backends.run_health_check(true).await;
        // One line per change (pingora's own line, silenced in `main`, dumps the peer's
        // options with Debug).
        for (b, was) in before {
            match (was, backends.ready(&b)) {
                (true, false) => log::warn!("upstream pool {}: {} is down", self.name, b.addr),
                (false, true) => log::info!("upstream pool {}: {} is up", self.name, b.addr),
                _ => {}
            }
        }
    }
}

/// All pools and the prefix routes onto them.
pub struct Upstreams {
    pools: IndexMap<String, Arc<Pool>>,
    /// Longest prefix first.
    routes: Vec<(String, Arc<Pool>)>,
}

impl Upstreams {
    /// Build from configuration, reusing pools of `previous` whose configuration is equal.
    pub fn new(cfg: &UpstreamsConfig, previous: Option<&Upstreams>) -> anyhow::Result<Upstreams> {
        let mut pools = IndexMap::with_capacity(cfg.pools.len());
        for (name, pc) in &cfg.pools {
            let reused = previous
                .and_then(|p| p.pools.get(name))
                .filter(|p| p.config == *pc)
                .cloned();
            let pool = match reused {
                Some(p) => p,
                None => Arc::new(Pool::new(name, pc)?),
            };
            pools.insert(name.clone(), pool);
        }
        let routes = cfg
            .routes
            .iter()
            .filter_map(|r| {
                pools
                    .get(&r.pool)
                    .map(|p| (r.prefix.clone(), Arc::clone(p)))
            })
            .collect();
        Ok(Upstreams { pools, routes })
    }

    /// The pool serving `path`, by longest prefix.
    pub fn route(&self, path: &str) -> Option<&Arc<Pool>> {
        self.routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, pool)| pool)
    }

    /// The pool of that name.
    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.get(name)
    }

    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> UpstreamsConfig {
        crate::config::upstreams_from_str(yaml).unwrap()
    }

    #[test]
    fn routes_by_longest_prefix_and_reuses_unchanged_pools() {
        let c = cfg(
            "pools:\n  a: {servers: ['127.0.0.1:1']}\n  b: {servers: ['127.0.0.1:2']}\nroutes:\n  - {prefix: /, pool: a}\n  - {prefix: /api/, pool: b}\n",
        );
        let u = Upstreams::new(&c, None).unwrap();
        assert_eq!(u.route("/api/x").unwrap().name, "b");
        assert_eq!(u.route("/index.html").unwrap().name, "a");
        let peer = u.route("/").unwrap().select().unwrap();
        assert_eq!(peer._address.to_string(), "127.0.0.1:1");

        let c2 = cfg(
            "pools:\n  a: {servers: ['127.0.0.1:1']}\n  b: {servers: ['127.0.0.1:3']}\nroutes:\n  - {prefix: /, pool: a}\n",
        );
        let u2 = Upstreams::new(&c2, Some(&u)).unwrap();
        assert!(Arc::ptr_eq(&u.pools["a"], &u2.pools["a"]));
        assert!(!Arc::ptr_eq(&u.pools["b"], &u2.pools["b"]));
        assert!(u2.route("/api/x").unwrap().name == "a");
    }

    #[test]
    fn no_route_means_no_pool() {
        let u = Upstreams::new(&cfg("{}"), None).unwrap();
        assert!(u.route("/").is_none());
    }
}
