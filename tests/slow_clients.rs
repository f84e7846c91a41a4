//! Slow and greedy clients against the real binary (server.yaml `client`): a request head
//! that trickles in is cut at `header_timeout` while other clients are served, a kept-alive
//! connection may idle between requests for longer than that, and connections over
//! `max_connections` or `max_connections_per_client` get a 503 JSON answer before their
//! request is read.

mod common;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Conf, Server, chat, connect_from, metric_sum, read_response};

/// The shipped server.yaml for `conf` with these `client` settings instead of the defaults.
fn with_client_settings(conf: &Conf, settings: &str) {
    let server = conf.read("server.yaml");
    conf.write("server.yaml", &format!("{server}client:\n{settings}"));
}

/// The value of a metric without labels on the server's /metrics.
fn unlabelled_metric(server: &Server, name: &str) -> Option<u64> {
    let metrics = common::get(server.admin, "/metrics")
        .expect("metrics")
        .text();
    let prefix = format!("{name} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Whether the server has closed `stream` (a read sees the end, or the connection reset).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn slow_request_heads_are_cut_while_other_clients_are_served() {
    let conf = Conf::new();
    with_client_settings(&conf, "  header_timeout: 1s\n  body_timeout: 1s\n");
    let server = Server::start(&conf);
    const SLOW: usize = 200;
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect(server.chat).expect("connect");
            s.write_all(b"POST /v1/chat HTTP/1.1\r\nHost: t\r\n")
                .expect("first line");
            s
        })
        .collect();
    let started = Instant::now();
    // Every slow client sends one more header byte every 100 ms; the others are answered.
    let mut served = 0;
    let mut open = SLOW;
    while open > 0 && started.elapsed() < Duration::from_secs(15) {
        open = 0;
        for s in &mut slow {
            if s.write_all(b"X").is_ok() && !closed_by_server(s) {
                open += 1;
            }
        }
        let r = chat(server.chat, "fast-client", "怎么申请退款");
        assert_eq!(r.status, 200, "{}", r.text());
        served += 1;
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(open, 0, "slow clients still open after 15 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut before the timeout: {:?}",
        started.elapsed()
    );
    assert!(served > 0);
    let cut = unlabelled_metric(&server, "kefu_connections_header_timeouts_total")
        .expect("header timeout counter");
    assert!(cut >= SLOW as u64, "{cut} cut of {SLOW}");

    // A body that stops half-way is given up after body_timeout.
    let mut stalled = TcpStream::connect(server.chat).expect("connect");
    stalled
        .write_all(b"POST /v1/chat HTTP/1.1\r\nHost: t\r\nUser-Agent: t\r\nContent-Length: 100\r\n\r\n{\"user_id\":")
        .expect("partial body");
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let waited = Instant::now();
    let mut answer = Vec::new();
    let _ = stalled.read_to_end(&mut answer);
    assert!(
        waited.elapsed() < Duration::from_secs(8),
        "stalled body held for {:?}",
        waited.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    // A kept-alive connection idles for longer than the head timeout between requests.
    let mut client = Client::connect(server.chat);
    assert_eq!(client.chat("idle", "在吗").expect("first").status, 200);
    thread::sleep(Duration::from_millis(1_500));
    assert_eq!(client.chat("idle", "在吗").expect("second").status, 200);
}

/// Wait until the server counts `n` open connections on the chat listener.
fn wait_open(server: &Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = unlabelled_metric(server, "kefu_connections_open").map(|v| v as usize);
        if open == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "open connections: {open:?}, want {n}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Read the early answer to a refused connection.
fn refused(stream: TcpStream) -> common::Response {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    read_response(&mut BufReader::new(stream)).expect("503 answer")
}

#[test]
fn connections_over_the_limits_get_503_before_their_request_is_read() {
    let conf = Conf::new();
    with_client_settings(
        &conf,
        "  header_timeout: 60s\n  max_connections: 5\n  max_connections_per_client: 3\n",
    );
    let server = Server::start(&conf);
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let (a, b, c) = (ip("127.0.0.1"), ip("127.0.0.2"), ip("127.0.0.3"));
    // Three idle connections from one address, sent nothing yet. Each is taken by the server
    // before the next one opens: accepted connections are admitted in whatever order their
    // tasks run.
    let mut held: Vec<TcpStream> = Vec::new();
    let hold = |from: IpAddr, held: &mut Vec<TcpStream>| {
        held.push(connect_from(from, server.chat).expect("connect"));
        wait_open(&server, held.len());
    };
    for _ in 0..3 {
        hold(a, &mut held);
    }
    let r = refused(connect_from(a, server.chat).expect("connect"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_many_connections");
    // Other addresses until the listener is full.
    hold(b, &mut held);
    hold(b, &mut held);
    let r = refused(connect_from(c, server.chat).expect("connect"));
    assert_eq!(r.status, 503, "{}", r.text());

    // A closed connection gives its place back.
    drop(held.remove(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = common::request_from(
            a,
            server.chat,
            &format!(
                "GET /healthz HTTP/1.1\nHost: t\nUser-Agent: {}\nConnection: close\n",
                common::UA
            ),
            b"",
        )
        .expect("request");
        if r.status != 503 {
            break;
        }
        assert!(Instant::now() < deadline, "place not given back");
        thread::sleep(Duration::from_millis(50));
    }
    let metrics = common::get(server.admin, "/metrics")
        .expect("metrics")
        .text();
    assert!(metric_sum(&metrics, "kefu_connections_refused_total", "per_client") >= 1);
    assert!(metric_sum(&metrics, "kefu_connections_refused_total", "\"total\"") >= 1);
    assert!(server.log_text().contains("connection limit reached"));
    drop(held);
}
