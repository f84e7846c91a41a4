//! The Grafana dashboard (`systemd/grafana-kefu-edge.json`) queries only metrics the real
//! binary exports: every `kefu_*` name in its expressions has a `# TYPE` line in `/metrics`
//! once the server has seen a little traffic of each kind.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{Conf, Server, free_port, get, post};

/// Every metric family a PromQL expression names (`_bucket`, `_sum`, `_count` are a
/// histogram's series: its family is the name without them).
fn families(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("kefu_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        out.push(family.to_owned());
    }
    out
}

#[test]
fn every_metric_the_dashboard_queries_exists() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/grafana-kefu-edge.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("json");
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queried.extend(families(target["expr"].as_str().expect("expr")));
        }
    }
    assert!(queried.len() >= 20, "{queried:?}");

    let conf = Conf::new();
    // The answer bot's pool points at a closed port, so a proxied request fails upstream.
    conf.patch(
        "upstreams.yaml",
        "127.0.0.1:8081",
        &format!("127.0.0.1:{}", free_port()),
    );
    let server = Server::start(&conf);
    // A little of each kind of traffic: a rule answer, a model-path message, a bad request,
    // a proxied request whose upstream is down.
    assert_eq!(server.chat("d1", "怎么申请退款").status, 200);
    assert_eq!(server.chat("d2", "这个耳机能连电脑用吗").status, 200);
    assert_eq!(
        post(server.chat, "/v1/chat", "", b"{")
            .expect("post")
            .status,
        400
    );
    assert_eq!(get(server.chat, "/shop").expect("get").status, 502);

    let text = get(server.admin, "/metrics").expect("metrics").text();
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|m| !exported.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not export:\n{text}"
    );
}
