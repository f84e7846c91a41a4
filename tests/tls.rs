//! TLS and HTTP/2 on the chat listener, against the real binary: a CA and certificates made
//! here at run time (rcgen), HTTPS with HTTP/1.1 and HTTP/2 (ALPN) from curl and from a Rust
//! client (rustls, h2), cleartext HTTP/2 (h2c), the certificate replaced by a SIGHUP (a bad one
//! refused while the old one keeps serving), and handshakes that fail or stall.

mod common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

/// A test CA that issues server certificates for localhost and 127.0.0.1.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: OpenSSL takes a leaf named like its issuer for self-signed.
        params
            .distinguished_name
            .push(DnType::CommonName, "kefu-edge test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.as_ref().der().clone()
    }

    /// Write a new server certificate and its key to `dir/tls/`; its DER.
    fn issue(&self, dir: &Path) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        std::fs::write(dir.join("tls/chat.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls/chat.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("tls/ca.pem"), self.issuer.as_ref().pem()).unwrap();
        cert.der().clone()
    }
}

/// A configuration with HTTPS on `tls_port` and h2c on the cleartext chat port.
fn tls_conf(header_timeout: &str) -> (Conf, u16) {
    let conf = Conf::new();
    let tls_port = free_port();
    let server = conf.read("server.yaml");
    conf.write(
        "server.yaml",
        &format!(
            "{}tls:\n  certificate: tls/chat.crt\n  certificate_key: tls/chat.key\nh2c: true\nclient:\n  header_timeout: {header_timeout}\n",
            server.replacen(
                "  admin:",
                &format!("  chat_tls: [\"127.0.0.1:{tls_port}\"]\n  admin:"),
                1
            )
        ),
    );
    (conf, tls_port)
}

#[allow(deprecated)] // ring's provider, the one the server uses (pingora-rustls)
fn client_config(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// One chat request over HTTPS with HTTP/1.1 (blocking rustls); the response and the
/// certificate the server presented.
fn https1_chat(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    text: &str,
) -> (Response, CertificateDer<'static>) {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(client_config(ca, &[b"http/1.1"]), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
    let body = chat_body("tls-user", text);
    write!(
        tls,
        "POST /v1/chat HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {UA}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    tls.write_all(&body).unwrap();
    let mut reader = BufReader::new(tls);
    let response = read_response(&mut reader).unwrap();
    let tls = reader.into_inner();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let presented = tls.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    (response, presented)
}

/// An HTTP/2 connection (over TLS with ALPN h2, or cleartext): chat requests on it.
struct H2 {
    send: h2::client::SendRequest<bytes::Bytes>,
    scheme: &'static str,
}

impl H2 {
    async fn tls(addr: SocketAddr, ca: &CertificateDer<'static>) -> (H2, CertificateDer<'static>) {
        let connector = tokio_rustls::TlsConnector::from(client_config(ca, &[b"h2"]));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let (_, session) = tls.get_ref();
        assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]), "ALPN chose h2");
        let presented = session.peer_certificates().unwrap()[0].clone().into_owned();
        (H2::handshake(tls, "https").await, presented)
    }

    async fn cleartext(addr: SocketAddr) -> H2 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        H2::handshake(tcp, "http").await
    }

    async fn handshake<T>(io: T, scheme: &'static str) -> H2
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = h2::client::handshake(io).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        H2 { send, scheme }
    }

    async fn chat(&mut self, text: &str) -> (u16, serde_json::Value) {
        let request = http::Request::post(format!("{}://localhost/v1/chat", self.scheme))
            .header("content-type", "application/json")
            .header("user-agent", UA)
            .body(())
            .unwrap();
        let mut send = self.send.clone().ready().await.unwrap();
        let (response, mut body_out) = send.send_request(request, false).unwrap();
        body_out
            .send_data(chat_body("h2-user", text).into(), true)
            .unwrap();
        let response = response.await.unwrap();
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// curl's answer: the HTTP version it used, then the body.
fn curl(args: &[&str]) -> Option<(String, serde_json::Value)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_version}"])
        .args(["-H", "content-type: application/json", "-A", UA])
        .args(args)
        .output()
        .ok()?;
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, version) = text.rsplit_once('\n').unwrap();
    Some((version.to_string(), serde_json::from_str(body).unwrap()))
}

#[test]
fn https_and_http2_serve_chat_and_a_sighup_replaces_the_certificate() {
    let (conf, tls_port) = tls_conf("10s");
    let ca = Ca::new();
    let first = ca.issue(conf.path());
    let server = Server::start(&conf);
    let https = SocketAddr::from(([127, 0, 0, 1], tls_port));

    // curl: HTTP/2 by ALPN, HTTP/1.1 when asked, h2c with prior knowledge.
    let ca_file = conf.path().join("tls/ca.pem");
    let ca_file = ca_file.to_str().unwrap();
    let url = format!("https://localhost:{tls_port}/v1/chat");
    let resolve = format!("localhost:{tls_port}:127.0.0.1");
    let body = String::from_utf8(chat_body("curl-user", "怎么申请退款")).unwrap();
    let tls_args = ["--cacert", ca_file, "--resolve", &resolve, "-d", &body];
    match curl(&[&tls_args[..], &["--http2", &url]].concat()) {
        None => println!("skipping the curl checks: curl is not installed"),
        Some((version, json)) => {
            assert_eq!(version, "2", "{json}");
            assert_eq!(json["intent"], "refund_apply", "{json}");
            let (version, json) = curl(&[&tls_args[..], &["--http1.1", &url]].concat()).unwrap();
            assert_eq!(version, "1.1");
            assert!(
                json["reply"].as_str().is_some_and(|r| !r.is_empty()),
                "{json}"
            );
            let plain = format!("http://127.0.0.1:{}/v1/chat", conf.chat_port);
            let (version, json) = curl(&["--http2-prior-knowledge", "-d", &body, &plain]).unwrap();
            assert_eq!(version, "2", "h2c: {json}");
            let (version, _) = curl(&["-d", &body, &plain]).unwrap();
            assert_eq!(version, "1.1", "HTTP/1.1 still served beside h2c");
        }
    }

    // The Rust client: HTTP/1.1 and HTTP/2 over TLS, HTTP/2 in clear.
    let (response, presented) = https1_chat(https, &ca.der(), "优惠券怎么用");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["intent"], "coupon", "{}", response.text());
    assert_eq!(presented, first);
    let rt = runtime();
    rt.block_on(async {
        let (mut h2, presented) = H2::tls(https, &ca.der()).await;
        assert_eq!(presented, first);
        for _ in 0..3 {
            let (status, json) = h2.chat("我的快递到哪了").await;
            assert_eq!(status, 200, "{json}");
            assert_eq!(json["intent"], "logistics_track", "{json}");
        }
        let (status, json) = H2::cleartext(server.chat).await.chat("怎么申请退款").await;
        assert_eq!((status, &json["intent"]), (200, &"refund_apply".into()));
    });

    // A new certificate, then SIGHUP: new connections get it.
    let second = ca.issue(conf.path());
    assert_ne!(second, first);
    server.signal("HUP");
    server.wait_reload(|c| c["generation"] == 2);
    let (response, presented) = https1_chat(https, &ca.der(), "优惠券怎么用");
    assert_eq!(response.status, 200);
    assert_eq!(presented, second, "the reloaded certificate is served");

    // A key that does not load: the reload is refused and the last good certificate stays.
    std::fs::write(conf.path().join("tls/chat.key"), "not a key\n").unwrap();
    server.signal("HUP");
    let h = server.wait_reload(|c| c["reloads_failed"] == 1);
    assert!(
        h["config"]["last"]["errors"]
            .to_string()
            .contains("chat.key"),
        "{h}"
    );
    let (_, presented) = https1_chat(https, &ca.der(), "优惠券怎么用");
    assert_eq!(presented, second);

    // Plain HTTP on the HTTPS port: a failed handshake, counted, and the server serves on.
    let mut plain = TcpStream::connect(https).unwrap();
    plain
        .write_all(b"GET /v1/chat HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let _ = std::io::Read::read(&mut plain, &mut [0u8; 64]);
    let (response, _) = https1_chat(https, &ca.der(), "优惠券怎么用");
    assert_eq!(response.status, 200);
    let metrics = get(server.admin, "/metrics").unwrap().text();
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kefu_connections_tls_failures_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(failures >= Some(1), "{metrics}");
    assert!(
        server
            .log_text()
            .contains("TLS handshake with 127.0.0.1 failed"),
        "{}",
        server.log_text()
    );
}

#[test]
fn a_stalled_handshake_is_cut_but_an_idle_http2_connection_is_not() {
    let (conf, tls_port) = tls_conf("1s");
    let ca = Ca::new();
    ca.issue(conf.path());
    let server = Server::start(&conf);
    let https = SocketAddr::from(([127, 0, 0, 1], tls_port));

    // A client that connects and never says hello is closed at the header timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(https).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let n = std::io::Read::read(&mut silent, &mut [0u8; 16]).unwrap_or(0);
    let took = started.elapsed();
    assert_eq!(n, 0, "closed without an answer");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    server.assert_metrics(&["kefu_connections_header_timeouts_total 1"]);

    // HTTP/2 frames are not request heads: an HTTP/2 connection quiet for longer than the
    // header timeout, over TLS or in clear, still serves its next request.
    runtime().block_on(async {
        let (mut secure, _) = H2::tls(https, &ca.der()).await;
        let mut clear = H2::cleartext(server.chat).await;
        for round in 0..2 {
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(2500)).await;
            }
            let (status, json) = secure.chat("我的快递到哪了").await;
            assert_eq!(status, 200, "{json}");
            let (status, json) = clear.chat("我的快递到哪了").await;
            assert_eq!(status, 200, "{json}");
        }
    });
    server.assert_metrics(&["kefu_connections_header_timeouts_total 1"]);
}
