//! The imported configuration as kefu-edge's YAML files, and the report. Strings are
//! written as JSON strings, which YAML reads as double-quoted scalars.

use std::fmt::Write as _;

use super::translate::{Bucket, Imported, Remark};

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn header(file: &str) -> String {
    format!(
        "# Written by `kefu-edge import-nginx` from {file}; IMPORT.txt lists what was not translated.\n"
    )
}

pub fn edge(i: &Imported, file: &str) -> String {
    let mut s = header(file);
    let _ = writeln!(s, "real_ip:");
    let _ = writeln!(s, "  trusted_proxies: {}", list(&i.trusted_proxies));
    let _ = writeln!(
        s,
        "  header: {}",
        i.real_ip_header.as_deref().unwrap_or("x-forwarded-for")
    );
    let _ = writeln!(s, "  recursive: {}", i.real_ip_recursive);
    let _ = writeln!(s, "ip_rules:");
    let _ = writeln!(
        s,
        "  default: {}",
        if i.deny_by_default { "deny" } else { "allow" }
    );
    let _ = writeln!(s, "  allow: {}", list(&i.allow));
    let _ = writeln!(s, "  deny: {}", list(&i.deny));
    let _ = writeln!(s, "user_agent:");
    let _ = writeln!(s, "  deny_empty: {}", i.ua_deny_empty);
    let _ = writeln!(s, "  deny_contains: []");
    let _ = writeln!(s, "  deny_regex: {}", list(&i.ua_deny_regex));
    s
}

fn bucket(name: &str, b: &Bucket) -> String {
    format!("{name}: {{rate: {}, burst: {}}}\n", b.rate, b.burst)
}

/// The imported buckets; nginx has no per-user limit, so the base's `per_user` is kept.
pub fn limits(i: &Imported, file: &str, base: &str) -> String {
    let mut s = header(file);
    if let Some(b) = &i.global {
        s += &bucket("global", b);
    }
    if let Some(b) = &i.per_ip {
        s += &bucket("per_ip", b);
    }
    let base: serde_yaml_ng::Value = serde_yaml_ng::from_str(base).unwrap_or_default();
    let per_user = &base["per_user"];
    if let (Some(rate), Some(burst)) = (per_user["rate"].as_str(), per_user["burst"].as_u64()) {
        s += "# kept from the base configuration: nginx limits nothing per user_id\n";
        let _ = writeln!(s, "per_user: {{rate: {rate}, burst: {burst}}}");
    }
    s
}

pub fn upstreams(i: &Imported, file: &str) -> String {
    let mut s = header(file);
    if i.pools.is_empty() {
        s += "pools: {}\n";
    } else {
        s += "pools:\n";
    }
    for (name, pool) in &i.pools {
        let servers: Vec<String> = pool
            .servers
            .iter()
            .map(|(addr, w)| match w {
                1 => q(addr),
                w => format!("{{addr: {}, weight: {w}}}", q(addr)),
            })
            .collect();
        let _ = writeln!(s, "  {}:", q(name));
        let _ = writeln!(s, "    servers: [{}]", servers.join(", "));
        if let Some(f) = pool.max_fails {
            let _ = writeln!(s, "    health_check: {{failures: {f}}}");
        }
    }
    if i.routes.is_empty() {
        s += "routes: []\n";
    } else {
        s += "routes:\n";
    }
    for (prefix, pool, _) in &i.routes {
        let _ = writeln!(s, "  - {{prefix: {}, pool: {}}}", q(prefix), q(pool));
    }
    s
}

/// The base server.yaml with the imported listeners as the chat listeners.
pub fn server(i: &Imported, base: &str) -> String {
    if i.listen.is_empty() {
        return base.to_owned();
    }
    let chat = regex::Regex::new(r"(?m)^(\s+chat:\s*)\[[^\]]*\]")
        .unwrap_or_else(|_| unreachable!("static regex"));
    let listen = list(&i.listen);
    chat.replace(base, |c: &regex::Captures<'_>| format!("{}{listen}", &c[1]))
        .into_owned()
}

fn remarks(s: &mut String, title: &str, items: &[Remark]) {
    let _ = writeln!(s, "\n## {title} ({})\n", items.len());
    for r in items {
        let _ = writeln!(s, "{}  {}: {}", r.at, r.directive, r.why);
    }
}

pub fn report(i: &Imported, file: &str) -> String {
    let mut s = format!("# kefu-edge import-nginx {file}\n");
    let _ = writeln!(
        s,
        "\nTranslated: {} trusted proxies, {} allow and {} deny rules, {} user-agent rules, {} buckets, {} pools, {} routes, {} listeners.",
        i.trusted_proxies.len(),
        i.allow.len(),
        i.deny.len(),
        i.ua_deny_regex.len() + usize::from(i.ua_deny_empty),
        usize::from(i.global.is_some()) + usize::from(i.per_ip.is_some()),
        i.pools.len(),
        i.routes.len(),
        i.listen.len()
    );
    remarks(&mut s, "Translated with a difference", &i.notes);
    remarks(&mut s, "Not translated", &i.skipped);
    s
}
