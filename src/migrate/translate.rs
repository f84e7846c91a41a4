//! What an nginx configuration means for kefu-edge: real client addresses, allow/deny,
//! limit_req, user-agent blocks, upstream pools and proxied locations. Every directive is
//! either translated, translated with a note on how kefu-edge differs, or listed as not
//! translated with why; nothing is dropped silently.

use indexmap::IndexMap;

use super::source::{At, Node};

/// A directive that was not translated, or translated with a difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remark {
    pub at: At,
    pub directive: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// nginx notation, as limits.yaml takes it: `10r/s`.
    pub rate: String,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pool {
    /// `ip:port` and weight.
    pub servers: Vec<(String, u32)>,
    /// The largest `max_fails` of its servers: failed health checks before a server is down.
    pub max_fails: Option<u32>,
}

/// The translated configuration and the remarks on it.
#[derive(Debug, Default)]
pub struct Imported {
    pub trusted_proxies: Vec<String>,
    pub real_ip_header: Option<String>,
    pub real_ip_recursive: bool,
    pub deny_by_default: bool,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub ua_deny_empty: bool,
    pub ua_deny_regex: Vec<String>,
    pub global: Option<Bucket>,
    pub per_ip: Option<Bucket>,
    pub pools: IndexMap<String, Pool>,
    /// (prefix, pool, where) in file order.
    pub routes: Vec<(String, String, At)>,
    /// `ip:port` chat listeners.
    pub listen: Vec<String>,
    /// Translated, but kefu-edge behaves differently.
    pub notes: Vec<Remark>,
    /// Not translated.
    pub skipped: Vec<Remark>,
}

/// A `limit_req_zone`: its key and rate.
struct Zone {
    key: String,
    rate: String,
}

/// A `map` or `geo` variable: its source and entries (pattern or network, value).
struct Table {
    source: String,
    entries: Vec<(String, String, At)>,
}

#[derive(Default)]
struct Walk {
    out: Imported,
    zones: IndexMap<String, Zone>,
    tables: IndexMap<String, Table>,
    limit_status: Option<(String, At)>,
}

/// Translate the directives of one configuration.
pub fn translate(nodes: &[Node]) -> Imported {
    let mut w = Walk::default();
    // Zones and tables first: they may be declared after their use.
    collect(nodes, &mut w);
    w.visit(nodes, "main");
    // A route to an upstream that was not translated (or never defined) cannot be kept.
    let routes = std::mem::take(&mut w.out.routes);
    for (prefix, pool, at) in routes {
        if w.out.pools.contains_key(&pool) {
            w.out.routes.push((prefix, pool, at));
        } else {
            w.out.skipped.push(Remark {
                at,
                directive: format!("proxy_pass http://{pool} (location {prefix})"),
                why: format!("upstream `{pool}` was not translated or is not defined"),
            });
        }
    }
    if let Some((status, at)) = w.limit_status.take()
        && status != "429"
    {
        w.note(
            &at,
            "limit_req_status",
            format!("kefu-edge answers 429 with Retry-After, not {status}"),
        );
    }
    w.out
}

fn collect(nodes: &[Node], w: &mut Walk) {
    for n in nodes {
        match n.name.as_str() {
            "limit_req_zone" => {
                let zone = n.param("zone").unwrap_or("");
                let name = zone.split(':').next().unwrap_or("").to_owned();
                let rate = n.param("rate").unwrap_or("").to_owned();
                w.zones.insert(
                    name,
                    Zone {
                        key: n.arg(0).to_owned(),
                        rate,
                    },
                );
            }
            "map" | "geo" => {
                // geo's source is optional ($remote_addr by default).
                let (source, var) = match (n.name.as_str(), n.args.len()) {
                    ("geo", 1) => ("$remote_addr".to_owned(), n.arg(0)),
                    _ => (n.arg(0).to_owned(), n.arg(1)),
                };
                let entries = n
                    .children()
                    .iter()
                    .map(|e| (e.name.clone(), e.arg(0).to_owned(), e.at.clone()))
                    .collect();
                w.tables.insert(var.to_owned(), Table { source, entries });
            }
            _ => {}
        }
        collect(n.children(), w);
    }
}

/// nginx's `limit_req_zone` rate (`10r/s`, `30r/m`) as limits.yaml takes it.
fn rate(r: &str) -> Option<String> {
    let (n, unit) = r.split_once("r/")?;
    let n: u32 = n.parse().ok()?;
    (n > 0 && matches!(unit, "s" | "m")).then(|| format!("{n}r/{unit}"))
}

/// A listen address as kefu-edge takes it (`80` is every IPv4 address).
fn listen_addr(a: &str) -> Option<String> {
    if a.parse::<u16>().is_ok() {
        return Some(format!("0.0.0.0:{a}"));
    }
    a.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.to_string())
}

/// An upstream server as `ip:port` (80 when nginx's default applies).
fn server_addr(a: &str) -> Option<String> {
    if let Ok(s) = a.parse::<std::net::SocketAddr>() {
        return Some(s.to_string());
    }
    a.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| std::net::SocketAddr::new(ip, 80).to_string())
}

/// A CIDR or address as edge.yaml takes it.
fn network(a: &str) -> Option<String> {
    if a.parse::<ipnet::IpNet>().is_ok() {
        return Some(a.to_owned());
    }
    a.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ipnet::IpNet::from(ip).to_string())
}

/// Why a directive with no counterpart is not translated.
fn no_counterpart(name: &str) -> &'static str {
    match name {
        "user"
        | "worker_processes"
        | "worker_rlimit_nofile"
        | "worker_cpu_affinity"
        | "pid"
        | "daemon"
        | "master_process"
        | "load_module"
        | "events"
        | "worker_connections"
        | "multi_accept"
        | "use"
        | "accept_mutex"
        | "thread_pool" => "process setting: kefu-edge's threads and pid file are in server.yaml",
        "access_log" | "error_log" | "log_format" | "log_not_found" => {
            "logging: kefu-edge logs to stderr (journald) and exports /metrics"
        }
        "server_name" => "kefu-edge serves one site per listener: server names are not matched",
        "ssl_certificate" | "ssl_certificate_key" | "ssl_protocols" | "ssl_ciphers" => {
            "TLS is not imported: put the HTTPS addresses in server.yaml's listen.chat_tls and the files in its tls section (certificate, certificate_key); rustls offers TLS 1.2 and 1.3 with its own cipher suites"
        }
        "client_max_body_size" => "set server.yaml chat.max_body_bytes for the chat API body",
        "proxy_set_header" | "proxy_http_version" | "proxy_buffering" | "proxy_buffers"
        | "proxy_buffer_size" | "proxy_redirect" | "proxy_hide_header" | "add_header" => {
            "kefu-edge proxies with its own headers (X-Forwarded-For appended)"
        }
        "proxy_connect_timeout" | "proxy_read_timeout" | "proxy_send_timeout" => {
            "set connect_timeout / read_timeout of the pool in upstreams.yaml"
        }
        "return" | "rewrite" | "root" | "index" | "try_files" | "error_page" | "alias" => {
            "content and rewrites: kefu-edge answers the chat API and proxies the rest"
        }
        n if n.contains("_by_lua") || n.starts_with("lua_") => {
            "Lua code: kefu-edge's pipeline replaces it (intents.yaml rules; lua-compat/ for shared limits)"
        }
        _ => "no kefu-edge counterpart",
    }
}

impl Walk {
    fn note(&mut self, at: &At, directive: &str, why: impl Into<String>) {
        self.out.notes.push(Remark {
            at: at.clone(),
            directive: directive.to_owned(),
            why: why.into(),
        });
    }

    fn skip(&mut self, n: &Node, why: impl Into<String>) {
        let mut shown = n.name.clone();
        for a in &n.args {
            shown.push(' ');
            // One line per remark: control characters (`\r\n` in check_http_send) escaped.
            shown.extend(a.chars().flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            }));
        }
        self.out.skipped.push(Remark {
            at: n.at.clone(),
            directive: shown,
            why: why.into(),
        });
    }

    fn visit(&mut self, nodes: &[Node], ctx: &str) {
        for n in nodes {
            match n.name.as_str() {
                "http" | "server" => self.visit(n.children(), &n.name),
                "events" => self.skip(n, no_counterpart("events")),
                "location" => self.location(n),
                "upstream" => self.upstream(n),
                "limit_req_zone" | "map" | "geo" => {} // read by `collect`, applied by their users
                "listen" => self.listen(n),
                "set_real_ip_from" => match network(n.arg(0)) {
                    Some(net) => self.out.trusted_proxies.push(net),
                    None => self.skip(n, "only IP networks are trusted proxies"),
                },
                "real_ip_header" => match n.arg(0).to_ascii_lowercase().as_str() {
                    h @ ("x-forwarded-for" | "x-real-ip") => {
                        self.out.real_ip_header = Some(h.into())
                    }
                    _ => self.skip(n, "kefu-edge reads X-Forwarded-For or X-Real-IP"),
                },
                "real_ip_recursive" => self.out.real_ip_recursive = n.arg(0) == "on",
                "allow" | "deny" => self.access(n, ctx),
                "limit_req" => self.limit_req(n, ctx),
                "limit_req_status" => self.limit_status = Some((n.arg(0).to_owned(), n.at.clone())),
                "if" => self.condition(n),
                "proxy_pass" => self.skip(n, "proxy_pass outside a location"),
                name => self.skip(n, no_counterpart(name)),
            }
        }
    }

    fn listen(&mut self, n: &Node) {
        if n.has_flag("ssl") || n.has_flag("http2") {
            return self.skip(n, no_counterpart("ssl_certificate"));
        }
        match listen_addr(n.arg(0)) {
            Some(a) if !self.out.listen.contains(&a) => self.out.listen.push(a),
            Some(_) => {}
            None => self.skip(n, "kefu-edge listens on ip:port or a port"),
        }
    }

    fn access(&mut self, n: &Node, ctx: &str) {
        if ctx == "location" {
            // edge.yaml's ip_rules apply to every path: `allow office; deny all;` on an admin
            // location would lock the chat API too.
            return self.skip(
                n,
                "per-location access rules: kefu-edge's ip_rules apply to every path",
            );
        }
        let deny = n.name == "deny";
        if n.arg(0) == "all" {
            // nginx stops at the first match, so `all` is the default for what came before.
            self.out.deny_by_default = deny;
            return;
        }
        match network(n.arg(0)) {
            Some(net) if deny => self.out.deny.push(net),
            Some(net) => self.out.allow.push(net),
            None => self.skip(n, "only IP networks and `all` are translated"),
        }
    }

    fn limit_req(&mut self, n: &Node, ctx: &str) {
        let name = n.param("zone").unwrap_or("");
        let Some(zone) = self.zones.get(name) else {
            return self.skip(n, format!("no limit_req_zone `{name}`"));
        };
        let Some(rate) = rate(&zone.rate) else {
            return self.skip(n, format!("rate `{}` is not Nr/s or Nr/m", zone.rate));
        };
        let burst = n
            .param("burst")
            .and_then(|b| b.parse::<u32>().ok())
            .unwrap_or(0);
        // nginx admits burst + 1 at once with nodelay.
        let bucket = Bucket {
            rate,
            burst: burst + 1,
        };
        let mut key = zone.key.clone();
        // A map to one constant (`map $server_port $k { default "all"; }`) keys one bucket.
        if let Some(t) = self.tables.get(&key)
            && t.entries.len() == 1
            && t.entries[0].0 == "default"
        {
            key = "all".into();
        }
        let slot = match key.as_str() {
            "$binary_remote_addr" | "$remote_addr" | "$realip_remote_addr" => &mut self.out.per_ip,
            "$server_name" | "$host" | "$server_port" | "all" | "1" => &mut self.out.global,
            _ => {
                return self.skip(
                    n,
                    format!("zone key {key}: kefu-edge keys buckets by client address, user_id or the node"),
                );
            }
        };
        if slot.as_ref().is_some_and(|b| *b != bucket) {
            return self.skip(
                n,
                "another limit_req already sets this bucket; kefu-edge has one per kind",
            );
        }
        *slot = Some(bucket);
        if !n.has_flag("nodelay") {
            self.note(
                &n.at,
                "limit_req",
                "nginx delays requests over the rate; kefu-edge refuses them (429)",
            );
        }
        if ctx == "location" {
            self.note(
                &n.at,
                "limit_req",
                "applies to every path in kefu-edge, not this location alone",
            );
        }
    }

    /// `if (...) { return 403; }` on the user agent, or on a `map`/`geo` variable of it.
    fn condition(&mut self, n: &Node) {
        let returns_403 = n.children().len() == 1
            && n.children()[0].name == "return"
            && n.children()[0].arg(0) == "403";
        if !returns_403 {
            return self.skip(
                n,
                "only `if (...) { return 403; }` on the user agent or client address is translated",
            );
        }
        // The arguments inside the parentheses, `(` and `)` taken off the ends only (a
        // regex keeps its own).
        let mut inner: Vec<&str> = n.args.iter().map(String::as_str).collect();
        match inner.first().copied() {
            Some("(") => {
                inner.remove(0);
            }
            Some(first) => inner[0] = first.strip_prefix('(').unwrap_or(first),
            None => {}
        }
        match inner.last().copied() {
            Some(")") => {
                inner.pop();
            }
            Some(last) => {
                let i = inner.len() - 1;
                inner[i] = last.strip_suffix(')').unwrap_or(last);
            }
            None => {}
        }
        match inner.as_slice() {
            ["$http_user_agent", op @ ("~" | "~*"), re] => {
                let re = if *op == "~*" {
                    format!("(?i){re}")
                } else {
                    (*re).to_owned()
                };
                self.ua_regex(n, re);
            }
            ["$http_user_agent", "=", ""] | ["!$http_user_agent"] => self.out.ua_deny_empty = true,
            [var] if var.starts_with('$') => self.table(n, var),
            _ => self.skip(n, "condition kefu-edge cannot express"),
        }
    }

    fn ua_regex(&mut self, n: &Node, re: String) {
        match regex::Regex::new(&re) {
            Ok(_) => self.out.ua_deny_regex.push(re),
            Err(_) => self.skip(n, format!("`{re}` is not a regex kefu-edge understands")),
        }
    }

    /// `if ($var) { return 403; }`: the entries of `$var`'s map or geo that are not "" or 0.
    fn table(&mut self, n: &Node, var: &str) {
        let Some(table) = self.tables.shift_remove(var) else {
            return self.skip(n, format!("{var} is not a map or geo this file defines"));
        };
        let denies = |v: &str| !v.is_empty() && v != "0";
        for (pattern, value, at) in &table.entries {
            if pattern == "default" {
                if denies(value) {
                    self.note(at, "default", "a default that denies is not translated: kefu-edge allows what no rule denies");
                }
                continue;
            }
            if !denies(value) {
                continue;
            }
            match table.source.as_str() {
                "$http_user_agent" => {
                    if pattern.is_empty() {
                        self.out.ua_deny_empty = true;
                    } else if let Some(re) = pattern.strip_prefix("~*") {
                        self.ua_regex(n, format!("(?i){re}"));
                    } else if let Some(re) = pattern.strip_prefix('~') {
                        self.ua_regex(n, re.to_owned());
                    } else {
                        self.ua_regex(n, format!("^{}$", regex::escape(pattern)));
                    }
                }
                "$remote_addr" | "$binary_remote_addr" => match network(pattern) {
                    Some(net) => self.out.deny.push(net),
                    None => self.note(at, pattern, "not a network; not translated"),
                },
                other => {
                    return self.skip(
                        n,
                        format!("{var} maps {other}; kefu-edge blocks by user agent or address"),
                    );
                }
            }
        }
    }

    fn upstream(&mut self, n: &Node) {
        let mut pool = Pool::default();
        for s in n.children() {
            if s.name != "server" {
                self.skip(s, "upstream settings other than servers are not translated");
                continue;
            }
            if s.has_flag("backup") || s.has_flag("down") {
                self.skip(s, "backup and down servers are not translated");
                continue;
            }
            let Some(addr) = server_addr(s.arg(0)) else {
                self.skip(s, "kefu-edge pools take ip:port: resolve the name");
                continue;
            };
            let weight = s.param("weight").and_then(|w| w.parse().ok()).unwrap_or(1);
            if let Some(f) = s.param("max_fails").and_then(|f| f.parse::<u32>().ok()) {
                pool.max_fails = Some(pool.max_fails.map_or(f, |m: u32| m.max(f)));
                self.note(
                    &s.at,
                    "max_fails",
                    "becomes the pool's health check failures (failed checks, not failed requests)",
                );
            }
            pool.servers.push((addr, weight));
        }
        if pool.servers.is_empty() {
            return self.skip(n, "no server kefu-edge can use");
        }
        self.out.pools.insert(n.arg(0).to_owned(), pool);
    }

    fn location(&mut self, n: &Node) {
        let (modifier, path) = match n.args.as_slice() {
            [path] => ("", path.as_str()),
            [m, path] => (m.as_str(), path.as_str()),
            _ => return self.skip(n, "unexpected location arguments"),
        };
        if matches!(modifier, "~" | "~*") || path.starts_with('@') {
            return self.skip(n, "regex and named locations have no kefu-edge counterpart");
        }
        for c in n.children() {
            match c.name.as_str() {
                "proxy_pass" => {
                    if modifier == "=" {
                        self.note(&n.at, "location =", "becomes a prefix route");
                    }
                    self.proxy_pass(c, path)
                }
                "allow" | "deny" => self.access(c, "location"),
                "limit_req" => self.limit_req(c, "location"),
                "limit_req_status" => self.limit_status = Some((c.arg(0).to_owned(), c.at.clone())),
                "if" => self.condition(c),
                name => self.skip(c, no_counterpart(name)),
            }
        }
    }

    fn proxy_pass(&mut self, n: &Node, prefix: &str) {
        let target = n.arg(0);
        let Some(rest) = target.strip_prefix("http://") else {
            return self.skip(n, "kefu-edge proxies to http:// upstreams");
        };
        let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        if !path.is_empty() {
            self.note(
                &n.at,
                "proxy_pass",
                "the URI part is not translated: paths are passed on unchanged",
            );
        }
        let pool = if self.out.pools.contains_key(host) || !host.contains([':', '.']) {
            host.to_owned()
        } else if let Some(addr) = server_addr(host) {
            let name = format!("pool_{}", addr.replace(['.', ':', '[', ']'], "_"));
            self.out.pools.entry(name.clone()).or_insert_with(|| Pool {
                servers: vec![(addr, 1)],
                max_fails: None,
            });
            name
        } else {
            return self.skip(n, "kefu-edge pools take ip:port: resolve the name");
        };
        self.out
            .routes
            .push((prefix.to_owned(), pool, n.at.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str) -> Imported {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, text).unwrap();
        translate(&super::super::source::load(&path).unwrap())
    }

    #[test]
    fn access_rules_limits_and_user_agents() {
        let i = import(
            "http {\n\
             limit_req_zone $binary_remote_addr zone=a:10m rate=5r/s;\n\
             server {\n\
               allow 10.0.0.0/8;\n\
               deny all;\n\
               if ($http_user_agent ~* \"(bot|spider)\") { return 403; }\n\
               location /x/ { limit_req zone=a burst=4; allow 1.2.3.4; proxy_pass http://nowhere; }\n\
             }\n}\n",
        );
        assert!(i.deny_by_default);
        assert_eq!(i.allow, ["10.0.0.0/8"]);
        assert_eq!(
            i.ua_deny_regex,
            ["(?i)(bot|spider)"],
            "the regex keeps its parentheses"
        );
        // nginx admits burst + 1 at once; without nodelay it delays, which is noted.
        assert_eq!(
            i.per_ip,
            Some(Bucket {
                rate: "5r/s".into(),
                burst: 5
            })
        );
        assert!(i.notes.iter().any(|r| r.why.contains("delays")));
        // Per-location access rules and routes to undefined upstreams are listed, not kept.
        let why = |d: &str| {
            i.skipped
                .iter()
                .find(|r| r.directive.starts_with(d))
                .map(|r| r.at.line)
        };
        assert_eq!(why("allow 1.2.3.4"), Some(7));
        assert_eq!(why("proxy_pass http://nowhere"), Some(7));
        assert!(i.routes.is_empty());
    }
}
