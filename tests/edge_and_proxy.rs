//! Edge filter, token buckets and the reverse proxy against the real binary.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

fn chat_head(ua_line: &str, extra: &str) -> String {
    format!(
        "POST /v1/chat HTTP/1.1\nHost: t\n{ua_line}Content-Type: application/json\nContent-Length: {}\nConnection: close\n{extra}",
        chat_body("u", "我要退款").len()
    )
}

#[test]
fn denied_user_agents_get_403() {
    let conf = Conf::new();
    let server = Server::start(&conf);
    let body = chat_body("u", "我要退款");
    for ua in [
        "sqlmap/1.7.2#stable",
        "Mozilla/5.0 zgrab/0.x",
        "Nikto/2.5",
        "masscan/1.3",
        "NMAP scripting",
    ] {
        let r = request(
            server.chat,
            &chat_head(&format!("User-Agent: {ua}\n"), ""),
            &body,
        )
        .unwrap();
        assert_eq!(r.status, 403, "{ua}");
        assert_eq!(r.json()["error"]["code"], "forbidden");
    }
    let r = request(server.chat, &chat_head("", ""), &body).unwrap();
    assert_eq!(r.status, 403, "no user agent");
    let r = request(server.chat, &chat_head("User-Agent: \n", ""), &body).unwrap();
    assert_eq!(r.status, 403, "empty user agent");
    let r = request(
        server.chat,
        &chat_head("User-Agent: Mozilla/5.0 (iPhone)\n", ""),
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    // Proxied paths are filtered too.
    let r = request(
        server.chat,
        "GET / HTTP/1.1\nHost: t\nUser-Agent: sqlmap\nConnection: close\n",
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 403);
    server.assert_metrics(&[
        r#"kefu_edge_denied_total{reason="user_agent"} 6"#,
        r#"kefu_edge_denied_total{reason="empty_user_agent"} 2"#,
    ]);
}

#[test]
fn denied_networks_get_403_on_ipv4_and_ipv6() {
    let conf = Conf::new();
    let v6_port = free_port();
    conf.write_server(&format!(
        "\"127.0.0.1:{}\", \"[::1]:{v6_port}\"",
        conf.chat_port
    ));
    conf.patch(
        "edge.yaml",
        "  deny:\n",
        "  deny:\n    - 127.0.0.2/32\n    - ::1/128\n",
    );
    let server = Server::start(&conf);
    let body = chat_body("u", "我要退款");
    let head = chat_head(&format!("User-Agent: {UA}\n"), "");
    let local = |s: &str| s.parse::<IpAddr>().unwrap();
    let r = request_from(local("127.0.0.2"), server.chat, &head, &body).unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    let r = request_from(local("127.0.0.3"), server.chat, &head, &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v6: SocketAddr = format!("[::1]:{v6_port}").parse().unwrap();
    let r = request(v6, &head, &body).unwrap();
    assert_eq!(r.status, 403, "IPv6 client denied: {}", r.text());
}

#[test]
fn forwarded_for_counts_only_from_trusted_proxies() {
    // 203.0.113.0/24 is denied. A client that is not a trusted proxy cannot get itself
    // treated as someone else (or get someone else blocked) with a header.
    let conf = Conf::new();
    conf.patch("edge.yaml", "  deny:\n", "  deny:\n    - 203.0.113.0/24\n");
    let server = Server::start(&conf);
    let body = chat_body("u", "我要退款");
    let spoofed = chat_head(
        &format!("User-Agent: {UA}\n"),
        "X-Forwarded-For: 203.0.113.7\n",
    );
    assert_eq!(request(server.chat, &spoofed, &body).unwrap().status, 200);
    drop(server);

    // Once 127.0.0.1 is a trusted proxy, its X-Forwarded-For names the client.
    conf.patch(
        "edge.yaml",
        "trusted_proxies: []",
        "trusted_proxies: [127.0.0.1]",
    );
    let server = Server::start(&conf);
    assert_eq!(request(server.chat, &spoofed, &body).unwrap().status, 403);
    let through_chain = chat_head(
        &format!("User-Agent: {UA}\n"),
        "X-Forwarded-For: 203.0.113.7, 127.0.0.1\n",
    );
    assert_eq!(
        request(server.chat, &through_chain, &body).unwrap().status,
        403
    );
    let fine = chat_head(
        &format!("User-Agent: {UA}\n"),
        "X-Forwarded-For: 198.51.100.1\n",
    );
    assert_eq!(request(server.chat, &fine, &body).unwrap().status, 200);
}

#[test]
fn token_buckets_answer_429_with_retry_after() {
    let conf = Conf::new();
    conf.write(
        "limits.yaml",
        "per_user: {rate: 1r/m, burst: 3}\nper_ip: {rate: 1r/m, burst: 8}\n",
    );
    let server = Server::start(&conf);
    for i in 0..3 {
        assert_eq!(
            server.chat("alice", "在吗").status,
            200,
            "request {i} within the burst"
        );
    }
    assert_rate_limited(&server.chat("alice", "在吗"));
    // Another user has a bucket of their own ...
    assert_eq!(server.chat("bob", "在吗").status, 200);
    // ... until the per-address bucket (8) runs out for everyone on this address.
    let statuses: Vec<u16> = (0..6)
        .map(|i| server.chat(&format!("u{i}"), "在吗").status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    server.assert_metrics(&[
        r#"kefu_limits_rejected_total{limit="user"} 1"#,
        r#"kefu_limits_rejected_total{limit="client_ip"} 3"#,
    ]);
}

#[test]
fn other_paths_are_reverse_proxied_round_robin() {
    let a = Upstream::start("alpha", Duration::ZERO);
    let b = Upstream::start("beta", Duration::ZERO);
    let conf = Conf::new();
    conf.write(
        "upstreams.yaml",
        &format!(
            "pools:\n  web:\n    servers: [\"{}\", \"{}\"]\n    health_check: {{kind: tcp, interval: 1s}}\nroutes:\n  - {{prefix: /, pool: web}}\n",
            a.addr, b.addr
        ),
    );
    let server = Server::start(&conf);
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let r = get(server.chat, "/shop/item?id=7").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        bodies.push(r.text());
    }
    assert!(
        bodies
            .iter()
            .all(|b| b.contains("GET /shop/item?id=7 HTTP/1.1")),
        "{bodies:?}"
    );
    assert!(
        bodies.iter().all(|b| b.contains("xff=127.0.0.1")),
        "X-Forwarded-For added: {bodies:?}"
    );
    assert_eq!(a.hits.load(Ordering::Relaxed), 2, "round robin");
    assert_eq!(b.hits.load(Ordering::Relaxed), 2, "round robin");

    // One backend down: the health check takes it out, every request still succeeds.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ok_in_a_row = 0;
    while ok_in_a_row < 6 {
        assert!(
            Instant::now() < deadline,
            "health check never removed the dead backend"
        );
        let r = get(server.chat, "/x").unwrap();
        ok_in_a_row = if r.status == 200 { ok_in_a_row + 1 } else { 0 };
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_backend_down_at_start_is_out_before_the_first_request() {
    let alive = Upstream::start("alive", Duration::ZERO);
    // Accepts connections (the kernel completes them) but never answers: its HTTP check
    // takes the check's 1 s timeout to fail, longer than the server takes to start.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let conf = Conf::new();
    // An hour between checks: only the check at start can have taken it out.
    conf.write(
        "upstreams.yaml",
        &format!(
            "pools:\n  web:\n    servers: [\"{}\", \"{}\"]\n    health_check: {{kind: http, path: /, interval: 3600s}}\n    read_timeout: 3s\nroutes:\n  - {{prefix: /, pool: web}}\n",
            silent.local_addr().unwrap(),
            alive.addr
        ),
    );
    let server = Server::start(&conf);
    let statuses: Vec<u16> = (0..4)
        .map(|_| get(server.chat, "/x").unwrap().status)
        .collect();
    assert_eq!(
        statuses, [200; 4],
        "round robin never tried the silent backend"
    );
    // One line names the problem; no Debug dump of the peer's options.
    let log = server.log_text();
    let down = format!(
        "upstream pool web: {} is down",
        silent.local_addr().unwrap()
    );
    assert!(log.contains(&down), "{log}");
    assert!(!log.contains("PeerOptions"), "{log}");
    drop(silent);
}

#[test]
fn no_healthy_upstream_is_a_json_502() {
    let conf = Conf::new();
    let dead = free_port();
    conf.write(
        "upstreams.yaml",
        &format!("pools:\n  web:\n    servers: [\"127.0.0.1:{dead}\"]\nroutes:\n  - {{prefix: /api/, pool: web}}\n"),
    );
    let server = Server::start(&conf);
    for _ in 0..3 {
        let r = get(server.chat, "/api/orders").unwrap();
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "bad_gateway");
    }
    let r = get(server.chat, "/elsewhere").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    // The chat API does not depend on upstreams.
    assert_eq!(server.chat("u", "我要退款").status, 200);
}
