//! `server.yaml`: listeners, worker threads, shutdown timing and the chat API's input caps.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::access_log::{self, AccessLogConfig, RawAccessLog};
use super::source::Source;
use super::tls::{self, RawTls, TlsConfig};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    listen: RawListen,
    #[serde(default = "default_threads")]
    threads: usize,
    #[serde(default)]
    shutdown: RawShutdown,
    #[serde(default = "default_pid_file")]
    pid_file: String,
    #[serde(default = "default_upgrade_sock")]
    upgrade_sock: String,
    #[serde(default)]
    chat: RawChat,
    #[serde(default)]
    client: RawClient,
    /// A file holding the admin API's bearer token (relative to this directory).
    admin_token_file: Option<String>,
    access_log: Option<RawAccessLog>,
    /// The certificate of `listen.chat_tls`.
    tls: Option<RawTls>,
    /// Cleartext HTTP/2 with prior knowledge on `listen.chat` (nginx's `listen … http2`
    /// without `ssl`); HTTP/1.1 is still served there.
    #[serde(default)]
    h2c: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    chat: Vec<String>,
    /// HTTPS addresses of the chat API (nginx's `listen 443 ssl`), served with `tls`.
    #[serde(default)]
    chat_tls: Vec<String>,
    admin: Vec<String>,
}

/// The admin API's bearer token. Never printed: `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Whether an `Authorization` header value carries this token (`Bearer <token>`),
    /// compared in time that does not depend on where they differ.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|v| v.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let want = self.0.as_bytes();
        given.len() == want.len() && given.iter().zip(want).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminToken({} bytes)", self.0.len())
    }
}

/// The shortest token accepted: a guessable one protects nothing.
const MIN_TOKEN_BYTES: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawShutdown {
    grace_period_seconds: u64,
    graceful_shutdown_timeout_seconds: u64,
}

impl Default for RawShutdown {
    fn default() -> Self {
        RawShutdown {
            grace_period_seconds: 3,
            graceful_shutdown_timeout_seconds: 5,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawChat {
    path: String,
    max_body_bytes: usize,
    max_text_chars: usize,
    max_user_id_bytes: usize,
}

impl Default for RawChat {
    fn default() -> Self {
        RawChat {
            path: "/v1/chat".into(),
            max_body_bytes: 16 * 1024,
            max_text_chars: 500,
            max_user_id_bytes: 128,
        }
    }
}

/// Caps on what any client sends before its body (nginx: large_client_header_buffers).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawClient {
    max_header_line_bytes: usize,
    max_header_bytes: usize,
    #[serde(with = "humantime_serde")]
    keepalive_timeout: Duration,
    #[serde(with = "humantime_serde")]
    header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    body_timeout: Duration,
    #[serde(with = "humantime_serde")]
    send_timeout: Duration,
    max_connections: usize,
    max_connections_per_client: usize,
}

impl Default for RawClient {
    fn default() -> Self {
        RawClient {
            max_header_line_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            keepalive_timeout: Duration::from_secs(75),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_client: 0,
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn default_pid_file() -> String {
    "/tmp/kefu-edge.pid".into()
}

fn default_upgrade_sock() -> String {
    "/tmp/kefu-edge-upgrade.sock".into()
}

/// Process-level settings. Listeners, threads and paths are read at start-up; a reload that
/// changes them is accepted but logs that a restart (or a SIGQUIT upgrade) is needed.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub chat_listen: Vec<String>,
    /// Chat addresses served over TLS with `tls`'s certificate.
    pub chat_tls_listen: Vec<String>,
    /// Present exactly when `chat_tls_listen` is not empty; its certificate is reloadable.
    pub tls: Option<TlsConfig>,
    /// Cleartext HTTP/2 (prior knowledge) on `chat_listen`.
    pub h2c: bool,
    pub admin_listen: Vec<String>,
    pub threads: usize,
    /// Seconds pingora keeps serving in-flight requests after SIGTERM before stopping runtimes.
    pub grace_period_seconds: u64,
    /// Seconds pingora waits for runtimes to stop after the grace period.
    pub graceful_shutdown_timeout_seconds: u64,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub chat: ChatApiConfig,
    pub client: ClientCaps,
    /// Required by every admin route but `/healthz` when set; a non-loopback admin
    /// listener needs one.
    pub admin_token: Option<AdminToken>,
    /// One JSON line per request; none when absent.
    pub access_log: Option<AccessLogConfig>,
}

/// Caps on what `POST /v1/chat` accepts; they apply from the next request after a reload.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatApiConfig {
    pub path: String,
    pub max_body_bytes: usize,
    pub max_text_chars: usize,
    pub max_user_id_bytes: usize,
}

/// What any request may send before its body, checked first on every request (nginx's
/// `large_client_header_buffers 4 8k`): a longer request target gets 414, a longer header
/// line or more header bytes in all 431, both as JSON. Reloadable.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCaps {
    /// The request target, and each header's name and value together.
    pub max_header_line_bytes: usize,
    /// The request target and every header's name and value.
    pub max_header_bytes: usize,
    /// Whole seconds an idle keep-alive connection is kept (nginx's keepalive_timeout, 75 s);
    /// Pingora's own default keeps it for ever.
    pub keepalive_timeout_secs: u64,
    /// From a new connection, or the first byte of a kept-alive one's next request, to the
    /// end of the request head (nginx's client_header_timeout); then the connection is cut.
    pub header_timeout: Duration,
    /// Longest wait for the next bytes of a request body (nginx's client_body_timeout).
    pub body_timeout: Duration,
    /// Longest wait for the client to take the next bytes of a response (send_timeout).
    pub send_timeout: Duration,
    /// Open connections on the chat listener (0: no limit); beyond, 503 and closed.
    pub max_connections: usize,
    /// Open connections from one peer address (0: no limit; nginx's limit_conn).
    pub max_connections_per_client: usize,
}

impl ServerConfig {
    /// Whether `other` differs in a setting that is only read at start-up.
    pub fn needs_restart(&self, other: &ServerConfig) -> bool {
        self.chat_listen != other.chat_listen
            || self.chat_tls_listen != other.chat_tls_listen
            || self.h2c != other.h2c
            || self.tls.as_ref().map(|t| t.http2) != other.tls.as_ref().map(|t| t.http2)
            || self.admin_listen != other.admin_listen
            || self.threads != other.threads
            || self.grace_period_seconds != other.grace_period_seconds
            || self.graceful_shutdown_timeout_seconds != other.graceful_shutdown_timeout_seconds
            || self.pid_file != other.pid_file
            || self.upgrade_sock != other.upgrade_sock
            || AccessLogConfig::needs_restart(self.access_log.as_ref(), other.access_log.as_ref())
    }
}

pub fn validate(raw: RawServer, src: &Source) -> Result<ServerConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    for (key, addrs) in [
        ("chat", &raw.listen.chat),
        ("chat_tls", &raw.listen.chat_tls),
        ("admin", &raw.listen.admin),
    ] {
        if addrs.is_empty() && key != "chat_tls" {
            errors.push(src.error_at(key, format!("listen.{key}: at least one address is needed")));
        }
        for a in addrs {
            if a.parse::<SocketAddr>().is_err() {
                errors.push(src.error_at(
                    key,
                    format!("listen.{key}: `{a}` is not an IP:port address"),
                ));
            }
        }
    }
    let admin_token = raw.admin_token_file.as_ref().and_then(|f| {
        let key = "admin_token_file";
        let token = src
            .read_secret(key, key, "token", std::path::Path::new(f), MIN_TOKEN_BYTES)
            .and_then(|t| {
                String::from_utf8(t)
                    .map_err(|_| src.error_at(key, format!("{key}: the token in {f} is not UTF-8")))
            });
        token.map(AdminToken).map_err(|e| errors.push(e)).ok()
    });
    let exposed = raw
        .listen
        .admin
        .iter()
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .find(|a| !a.ip().is_loopback());
    if let (Some(addr), None) = (exposed, &raw.admin_token_file) {
        errors.push(src.error_at(
            "admin",
            format!("listen.admin: {addr} is not on loopback; set admin_token_file so the admin API needs a token"),
        ));
    }
    if raw.threads == 0 || raw.threads > 1024 {
        errors.push(src.error_at("threads", "threads must be between 1 and 1024"));
    }
    let chat = raw.chat;
    if !chat.path.starts_with('/') {
        errors.push(src.error_at("path", "chat.path must start with `/`"));
    }
    if chat.max_body_bytes < 64 || chat.max_body_bytes > 16 * 1024 * 1024 {
        errors.push(src.error_at(
            "max_body_bytes",
            "chat.max_body_bytes must be 64..=16777216",
        ));
    }
    if chat.max_text_chars == 0 || chat.max_text_chars > chat.max_body_bytes {
        errors.push(src.error_at(
            "max_text_chars",
            "chat.max_text_chars must be at least 1 and at most max_body_bytes",
        ));
    }
    if chat.max_user_id_bytes == 0 || chat.max_user_id_bytes > 1024 {
        errors.push(src.error_at(
            "max_user_id_bytes",
            "chat.max_user_id_bytes must be 1..=1024",
        ));
    }
    let client = raw.client;
    if client.max_header_line_bytes < 256 || client.max_header_line_bytes > client.max_header_bytes
    {
        errors.push(src.error_at(
            "max_header_line_bytes",
            "client.max_header_line_bytes must be at least 256 and at most max_header_bytes",
        ));
    }
    if client.keepalive_timeout.as_secs() == 0 || client.keepalive_timeout.as_secs() > 3600 {
        errors.push(src.error_at(
            "keepalive_timeout",
            "client.keepalive_timeout must be 1s..=1h (whole seconds)",
        ));
    }
    for (key, value) in [
        ("header_timeout", client.header_timeout),
        ("body_timeout", client.body_timeout),
        ("send_timeout", client.send_timeout),
    ] {
        if value < Duration::from_millis(100) || value > Duration::from_secs(3600) {
            errors.push(src.error_at(key, format!("client.{key} must be 100ms..=1h")));
        }
    }
    if client.max_connections_per_client > client.max_connections && client.max_connections > 0 {
        errors.push(src.error_at(
            "max_connections_per_client",
            "client.max_connections_per_client must be at most max_connections (0: no limit)",
        ));
    }
    if client.max_header_bytes > 1024 * 1024 {
        errors.push(src.error_at(
            "max_header_bytes",
            "client.max_header_bytes must be at most 1048576 (pingora reads no more)",
        ));
    }
    let tls = match (raw.tls, raw.listen.chat_tls.is_empty()) {
        (Some(t), false) => tls::validate(t, src).map_err(|e| errors.push(e)).ok(),
        (None, false) => {
            errors.push(src.error_at(
                "chat_tls",
                "listen.chat_tls needs a `tls` section with the certificate and its key",
            ));
            None
        }
        (Some(_), true) => {
            errors.push(src.error_at(
                "tls",
                "tls is set but listen.chat_tls is empty: add the HTTPS addresses there",
            ));
            None
        }
        (None, true) => None,
    };
    let access_log = raw
        .access_log
        .map(|a| access_log::validate(a, src, &mut errors));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ServerConfig {
        access_log,
        chat_listen: raw.listen.chat,
        chat_tls_listen: raw.listen.chat_tls,
        tls,
        h2c: raw.h2c,
        admin_listen: raw.listen.admin,
        threads: raw.threads,
        grace_period_seconds: raw.shutdown.grace_period_seconds,
        graceful_shutdown_timeout_seconds: raw.shutdown.graceful_shutdown_timeout_seconds,
        pid_file: raw.pid_file,
        upgrade_sock: raw.upgrade_sock,
        admin_token,
        client: ClientCaps {
            max_header_line_bytes: client.max_header_line_bytes,
            max_header_bytes: client.max_header_bytes,
            keepalive_timeout_secs: client.keepalive_timeout.as_secs(),
            header_timeout: client.header_timeout,
            body_timeout: client.body_timeout,
            send_timeout: client.send_timeout,
            max_connections: client.max_connections,
            max_connections_per_client: client.max_connections_per_client,
        },
        chat: ChatApiConfig {
            path: chat.path,
            max_body_bytes: chat.max_body_bytes,
            max_text_chars: chat.max_text_chars,
            max_user_id_bytes: chat.max_user_id_bytes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str) -> Result<ServerConfig, Vec<ConfigError>> {
        Source::check_text(Path::new("conf"), "server.yaml", text, validate)
    }

    #[test]
    fn an_exposed_admin_listener_needs_a_token_file() {
        let e = check("listen: {chat: ['0.0.0.0:8080'], admin: ['0.0.0.0:9901']}\n").unwrap_err();
        assert!(e[0].reason.contains("not on loopback"), "{e:?}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short"), "abc\n").unwrap();
        std::fs::write(dir.path().join("token"), "0123456789abcdef0123\n").unwrap();
        let at = |f: &str| {
            format!(
                "listen: {{chat: ['0.0.0.0:8080'], admin: ['0.0.0.0:9901']}}\nadmin_token_file: {}\n",
                dir.path().join(f).display()
            )
        };
        let e = check(&at("short")).unwrap_err();
        assert!(e[0].reason.contains("shorter than"), "{e:?}");
        assert!(
            check(&at("missing")).unwrap_err()[0]
                .reason
                .contains("cannot read")
        );
        let c = check(&at("token")).unwrap();
        let token = c.admin_token.unwrap();
        assert!(token.admits(Some(b"Bearer 0123456789abcdef0123")));
        assert!(!token.admits(Some(b"Bearer 0123456789abcdef0124")));
        assert!(!token.admits(Some(b"0123456789abcdef0123")));
        assert!(!token.admits(None));
        assert_eq!(
            format!("{token:?}"),
            "AdminToken(20 bytes)",
            "never printed"
        );
    }

    #[test]
    fn defaults_fill_in() {
        let c = check("listen: {chat: ['0.0.0.0:8080'], admin: ['127.0.0.1:9901']}\n").unwrap();
        assert_eq!(c.chat.max_body_bytes, 16384);
        assert_eq!(c.chat.max_text_chars, 500);
        assert!(c.threads >= 1);
    }

    #[test]
    fn impossible_values_are_named() {
        let errors = check(
            "listen:\n  chat: ['nope']\n  admin: []\nthreads: 0\nchat:\n  max_body_bytes: 1\n",
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter().any(|e| e.contains("`nope` is not an IP:port")),
            "{text:?}"
        );
        assert!(text.iter().any(|e| e.contains("listen.admin")), "{text:?}");
        assert!(
            text.iter()
                .any(|e| e.starts_with("conf/server.yaml:4: threads")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|e| e.contains("max_body_bytes")),
            "{text:?}"
        );
    }
}
