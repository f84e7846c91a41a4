//! The bad-input matrix against the real binary: each hostile or broken request gets its
//! documented status (README, "The chat API": errors), as JSON where kefu-edge answers it, and
//! the process keeps serving afterwards.

mod common;

use common::{Conf, Server, UA, request};

/// A raw POST to /v1/chat with these extra header lines and this body.
fn post_raw(server: &Server, extra: &str, body: &[u8]) -> std::io::Result<common::Response> {
    request(
        server.chat,
        &format!(
            "POST /v1/chat HTTP/1.1\nHost: t\nUser-Agent: {UA}\nContent-Length: {}\nConnection: close\n{extra}",
            body.len()
        ),
        body,
    )
}

/// The status and, for a JSON error, its code.
fn outcome(r: &common::Response) -> (u16, String) {
    let code = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (r.status, code)
}

#[test]
fn every_bad_input_gets_its_status_and_the_process_lives_on() {
    let conf = Conf::new();
    let server = Server::start(&conf);
    let json = "Content-Type: application/json\n";
    let deep = format!(
        "{{\"user_id\":\"u\",\"text\":\"在吗\",\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let long_text = format!(
        "{{\"user_id\":\"u\",\"text\":\"{}\"}}",
        "退".repeat(100_000)
    );
    let mut invalid_utf8 = br#"{"user_id":"u","text":"#.to_vec();
    invalid_utf8.extend_from_slice(b"\"\xff\xfe\xc3\x28\"}");
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            json.into(),
            b"{not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "truncated JSON",
            json.into(),
            br#"{"user_id":"u","te"#.to_vec(),
            400,
            "malformed_json",
        ),
        (
            "deeply nested JSON",
            json.into(),
            deep.into_bytes(),
            413,
            "body_too_large",
        ),
        // Unknown fields are skipped without recursion, however deep: answered.
        (
            "deeply nested unknown field, under the body cap",
            json.into(),
            format!(
                "{{\"user_id\":\"u\",\"text\":\"在吗\",\"x\":{}{}}}",
                "[".repeat(4_000),
                "]".repeat(4_000)
            )
            .into_bytes(),
            200,
            "",
        ),
        (
            "invalid UTF-8",
            json.into(),
            invalid_utf8,
            400,
            "invalid_utf8",
        ),
        (
            "NUL and control characters",
            json.into(),
            r#"{"user_id":"u","text":"\u0000\u0007退款\u001b"}"#
                .as_bytes()
                .to_vec(),
            200,
            "",
        ),
        (
            "100k-character text",
            json.into(),
            long_text.into_bytes(),
            413,
            "body_too_large",
        ),
        (
            "wrong content type, JSON body",
            "Content-Type: text/plain\n".into(),
            r#"{"user_id":"u","text":"怎么退款"}"#.as_bytes().to_vec(),
            200,
            "",
        ),
        (
            "wrong content type, form body",
            "Content-Type: application/x-www-form-urlencoded\n".into(),
            b"user_id=u&text=hi".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "64 KB header",
            format!("X-Big: {}\n", "a".repeat(64 * 1024)),
            r#"{"user_id":"u","text":"在吗"}"#.as_bytes().to_vec(),
            431,
            "header_too_large",
        ),
        (
            "200 headers of 1 KB (each fine, too many bytes in all)",
            (0..200)
                .map(|i| format!("X-H{i}: {}\n", "b".repeat(1000)))
                .collect(),
            r#"{"user_id":"u","text":"在吗"}"#.as_bytes().to_vec(),
            431,
            "headers_too_large",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, extra, body, status, code) in &cases {
        match post_raw(&server, extra, body) {
            Ok(r) if outcome(&r) == (*status, code.to_string()) => {}
            Ok(r) => wrong.push(format!(
                "{name}: got {:?}, want ({status}, {code:?})",
                outcome(&r)
            )),
            Err(e) => wrong.push(format!("{name}: {e}")),
        }
        assert_eq!(
            server.health()["status"],
            "ok",
            "{name} took the server down"
        );
    }

    // A 10 MB body is refused by its declared length, before it is read.
    let big = request(
        server.chat,
        &format!(
            "POST /v1/chat HTTP/1.1\nHost: t\nUser-Agent: {UA}\nContent-Length: 10485760\nConnection: close\n"
        ),
        b"{",
    );
    match big {
        Ok(r) if outcome(&r) == (413, "body_too_large".into()) => {}
        other => wrong.push(format!("10 MB body: {other:?}")),
    }
    // A 16 KB URL: 414 as JSON. A 64 KB one is past what the http crate parses as a URI
    // (65,534 bytes): pingora answers 400 itself, with no body.
    for (len, want) in [(16 * 1024, (414, "uri_too_long")), (64 * 1024, (400, ""))] {
        let url = request(
            server.chat,
            &format!(
                "GET /{} HTTP/1.1\nHost: t\nUser-Agent: {UA}\nConnection: close\n",
                "u".repeat(len)
            ),
            b"",
        );
        match url {
            Ok(r) if outcome(&r) == (want.0, want.1.into()) => {}
            other => wrong.push(format!("{len}-byte URL: {other:?}")),
        }
    }
    // 1,000 headers: more than pingora parses (256); it answers 400 itself, or closes.
    let many = request(
        server.chat,
        &format!(
            "GET /v1/chat HTTP/1.1\nHost: t\nUser-Agent: {UA}\nConnection: close\n{}",
            (0..1000).map(|i| format!("X-{i}: 1\n")).collect::<String>()
        ),
        b"",
    );
    if let Ok(r) = &many
        && r.status != 400
    {
        wrong.push(format!("1,000 headers: status {}", r.status));
    }

    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(server.health()["status"], "ok");
    let r = server.chat("after", "怎么申请退款");
    assert_eq!(r.status, 200, "the server still answers");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    use std::io::{BufReader, Read, Write};
    use std::time::{Duration, Instant};

    let conf = Conf::new();
    let server_yaml = conf.read("server.yaml");
    conf.write(
        "server.yaml",
        &format!("{server_yaml}client:\n  keepalive_timeout: 1s\n"),
    );
    let server = Server::start(&conf);
    let body = common::chat_body("ka", "在吗");
    let head = format!(
        "POST /v1/chat HTTP/1.1\r\nHost: t\r\nUser-Agent: {UA}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(server.chat).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..2 {
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        let r = common::read_response(&mut reader).expect("kept alive");
        assert_eq!(r.status, 200);
    }
    // Idle past the timeout: the server closes its end (the read sees end of file).
    let idle = Instant::now();
    let mut rest = Vec::new();
    let n = reader
        .read_to_end(&mut rest)
        .expect("closed, not timed out");
    assert_eq!(n, 0);
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
}

/// Request smuggling probes on a kept-alive connection, each with a second request hidden
/// behind its body: the connection closes after the answer, so that request is never read.
/// `Content-Length` beside `Transfer-Encoding` is read as chunked (RFC 9112 6.3: the coding
/// wins, and the connection closes); two lengths, another coding or a bad chunk size are
/// refused.
#[test]
fn badly_framed_bodies_are_refused_and_the_connection_closes() {
    let conf = Conf::new();
    let server = Server::start(&conf);
    let body = r#"{"user_id":"u","text":"在吗"}"#.as_bytes();
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut bad_chunk = b"zz\r\n".to_vec();
    bad_chunk.extend_from_slice(body);
    bad_chunk.extend_from_slice(b"\r\n0\r\n\r\n");
    let head = format!("POST /v1/chat HTTP/1.1\nHost: t\nUser-Agent: {UA}\n");
    let cl = format!("Content-Length: {}\n", chunked.len());
    let cases: Vec<(&str, String, &[u8], u16, &str)> = vec![
        (
            "CL+TE",
            format!("{head}{cl}Transfer-Encoding: chunked\n"),
            &chunked,
            200,
            "",
        ),
        (
            "TE+CL",
            format!("{head}Transfer-Encoding: chunked\nContent-Length: 4\n"),
            &chunked,
            200,
            "",
        ),
        (
            "two Content-Length",
            format!("{head}{cl}{cl}"),
            &chunked,
            400,
            "ambiguous_length",
        ),
        (
            "Transfer-Encoding other than chunked",
            format!("{head}Transfer-Encoding: gzip, chunked\n"),
            &chunked,
            501,
            "unsupported_transfer_encoding",
        ),
        (
            "bad chunk size",
            format!("{head}Transfer-Encoding: chunked\n"),
            &bad_chunk,
            400,
            "malformed_body",
        ),
    ];
    let smuggled = format!(
        "POST /v1/chat HTTP/1.1\r\nHost: t\r\nUser-Agent: {UA}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut wrong = Vec::new();
    for (name, head, body_bytes, status, code) in &cases {
        let mut stream = std::net::TcpStream::connect(server.chat).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("timeout");
        let mut raw = head.replace('\n', "\r\n").into_bytes();
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(body_bytes);
        raw.extend_from_slice(smuggled.as_bytes());
        raw.extend_from_slice(body);
        std::io::Write::write_all(&mut stream, &raw).expect("send");
        let mut reader = std::io::BufReader::new(stream);
        match common::read_response(&mut reader) {
            Ok(r) if outcome(&r) == (*status, code.to_string()) => {
                if r.header("connection") != Some("close") {
                    wrong.push(format!("{name}: no `Connection: close`"));
                }
            }
            other => wrong.push(format!("{name}: got {other:?}, want ({status}, {code:?})")),
        }
        if let Ok(r) = common::read_response(&mut reader) {
            wrong.push(format!(
                "{name}: the smuggled request was answered: {}",
                r.status
            ));
        }
        assert_eq!(
            server.health()["status"],
            "ok",
            "{name} took the server down"
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(server.chat("after", "怎么申请退款").status, 200);
}

/// Spoofed `X-Forwarded-For` chains behind a trusted proxy: the address the proxy saw wins
/// over whatever the client wrote before it, and entries that are not addresses cost nothing.
#[test]
fn spoofed_forwarded_for_chains_name_the_address_the_proxy_saw() {
    let conf = Conf::new();
    conf.patch("edge.yaml", "  deny:\n", "  deny:\n    - 203.0.113.0/24\n");
    conf.patch(
        "edge.yaml",
        "trusted_proxies: []",
        "trusted_proxies: [127.0.0.1]",
    );
    let server = Server::start(&conf);
    let body = r#"{"user_id":"u","text":"我要退款"}"#.as_bytes();
    let long_chain = (0..200)
        .map(|i| format!("203.0.113.{}", i % 250))
        .collect::<Vec<_>>()
        .join(", ");
    let cases = [
        // The client wrote a denied address; the proxy appended the client's own.
        ("203.0.113.7, 198.51.100.1".to_string(), 200),
        ("unknown, 999.1.1.1, ::::, 198.51.100.1".to_string(), 200),
        (format!("{long_chain}, 198.51.100.1"), 200),
        // The proxy itself says the client is in the denied network.
        ("198.51.100.1, 203.0.113.7".to_string(), 403),
    ];
    for (chain, want) in cases {
        let r = post_raw(&server, &format!("X-Forwarded-For: {chain}\n"), body).expect("answer");
        assert_eq!(r.status, want, "X-Forwarded-For: {chain:.80}");
    }
    assert_eq!(server.health()["status"], "ok");
}
