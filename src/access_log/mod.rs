//! The access log (`server.yaml` `access_log`): one JSON line per request, like nginx's
//! `access_log` with a JSON `log_format`, but with no personal data in clear:
//! - the client address truncated to a prefix (/24 and /48 by default);
//! - the user id as a keyed hash (SHA-256 of the key and the id, 16 hex digits), so lines of
//!   one shopper can be joined without naming them;
//! - the shopper's text never, or with `log_text: masked` with phone, ID, order numbers and
//!   addresses masked (`personal`).
//!
//! The proxy fills a [`Record`] as the request goes and hands it over when it is done;
//! [`AccessLog::log`] turns it into a line and queues it for the writer thread (`writer`).

mod personal;
mod writer;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ipnet::IpNet;
use prometheus::IntCounter;
use sha2::{Digest, Sha256};

use crate::config::{AccessLogConfig, LogText};
use writer::LogWriter;

/// What one request leaves for its log line, filled by the stages it went through.
#[derive(Debug, Default)]
pub struct Record {
    pub user_id: Option<String>,
    pub text: Option<String>,
    pub source: Option<&'static str>,
    pub intent: Option<&'static str>,
    pub confidence: Option<f32>,
    pub handoff: Option<&'static str>,
    /// The error code of a refused request (`rate_limited`, `bad_json`, …).
    pub error: Option<&'static str>,
    /// Milliseconds per stage, in the order they ran.
    pub stages: Vec<(&'static str, f64)>,
}

/// What the request was, as the proxy saw it at the end.
pub struct Request<'a> {
    pub trace_id: Option<crate::api::TraceId>,
    /// The pool a proxied request was sent to.
    pub upstream: Option<&'a str>,
    pub client: Option<IpAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub total_ms: f64,
}

pub struct AccessLog {
    writer: LogWriter,
    /// Used when no `user_key_file` is configured: user hashes join within one run only.
    process_key: [u8; 32],
}

thread_local! {
    /// Each request thread's line, reused: formatting a line allocates nothing.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// The last millisecond formatted and its text (nginx caches its time strings too).
    static CLOCK: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

impl AccessLog {
    pub fn start(
        cfg: &AccessLogConfig,
        reopen: Arc<AtomicBool>,
        dropped: IntCounter,
    ) -> std::io::Result<AccessLog> {
        let mut process_key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut process_key)?;
        Ok(AccessLog {
            writer: LogWriter::start(&cfg.target, cfg.buffer_bytes, reopen, dropped)?,
            process_key,
        })
    }

    /// Append the line of a finished request (`cfg`: the settings of the request's snapshot).
    pub fn log(&self, cfg: &AccessLogConfig, req: &Request<'_>, rec: &Record) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            self.format(line, cfg, req, rec);
            self.writer.write(line);
        });
    }

    /// The line as JSON, field by field: every value but the path and the text is written by
    /// this code from a closed set (hex, digits, addresses, the stages' own names), so only
    /// those two go through JSON string escaping.
    fn format(&self, out: &mut Vec<u8>, cfg: &AccessLogConfig, req: &Request<'_>, rec: &Record) {
        out.extend_from_slice(b"{\"time\":\"");
        now_millis(out);
        out.push(b'"');
        if let Some(t) = &req.trace_id {
            let _ = write!(out, ",\"trace_id\":\"{}\"", t.as_str());
        }
        out.extend_from_slice(b",\"client\":\"");
        match req.client {
            Some(ip) => client(out, ip, cfg),
            None => out.push(b'-'),
        }
        let _ = write!(out, "\",\"method\":\"{}\",\"path\":", req.method);
        let _ = serde_json::to_writer(&mut *out, req.path);
        out.extend_from_slice(b",\"route\":\"");
        out.extend_from_slice(req.route.as_bytes());
        out.extend_from_slice(b"\",\"status\":");
        digits(out, u32::from(req.status));
        out.push(b',');
        if let Some(u) = &rec.user_id {
            let key: &[u8] = cfg.user_key.as_ref().map_or(&self.process_key, |k| &k.0);
            out.extend_from_slice(b"\"user\":\"");
            user_hash(out, key, u);
            out.extend_from_slice(b"\",");
        }
        for (name, value) in [
            ("source", rec.source),
            ("intent", rec.intent),
            ("handoff", rec.handoff),
            ("error", rec.error),
            ("upstream", req.upstream),
        ] {
            if let Some(v) = value {
                let _ = write!(out, "\"{name}\":");
                let _ = serde_json::to_writer(&mut *out, v);
                out.push(b',');
            }
        }
        if let Some(c) = rec.confidence {
            // Four decimals by integer arithmetic: float formatting was the line's costliest part.
            let c = (f64::from(c).clamp(0.0, 1.0) * 10_000.0).round() as u32;
            out.extend_from_slice(b"\"confidence\":");
            digits(out, c / 10_000);
            out.push(b'.');
            pad4(out, c % 10_000);
            out.push(b',');
        }
        out.extend_from_slice(b"\"ms\":{\"total\":");
        millis(out, req.total_ms);
        for (stage, v) in &rec.stages {
            let _ = write!(out, ",\"{stage}\":");
            millis(out, *v);
        }
        out.push(b'}');
        if let (LogText::Masked, Some(text)) = (cfg.log_text, &rec.text) {
            out.extend_from_slice(b",\"text\":");
            let _ = serde_json::to_writer(&mut *out, personal::mask(text).as_ref());
        }
        out.push(b'}');
    }
}

/// Milliseconds with three decimals, from the microseconds (no float formatting).
fn millis(out: &mut Vec<u8>, ms: f64) {
    let us = (ms * 1000.0).round().clamp(0.0, f64::from(u32::MAX)) as u32;
    digits(out, us / 1000);
    out.push(b'.');
    let frac = us % 1000;
    out.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

fn digits(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` < 10000 as four digits.
fn pad4(out: &mut Vec<u8>, n: u32) {
    for d in [1000, 100, 10, 1] {
        out.push(b'0' + (n / d % 10) as u8);
    }
}

/// The current time, RFC 3339 in UTC to the millisecond, formatted once per millisecond.
fn now_millis(out: &mut Vec<u8>) {
    let now = jiff::Timestamp::now();
    let ms = now.as_millisecond();
    CLOCK.with_borrow_mut(|(last, text)| {
        if *last != ms {
            *last = ms;
            *text = jiff::Timestamp::from_millisecond(ms)
                .map_or_else(|_| now.to_string(), |t| t.to_string());
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// The client address cut to the configured prefix (`203.0.113.0/24`), whole at /32 or /128.
fn client(out: &mut Vec<u8>, ip: IpAddr, cfg: &AccessLogConfig) {
    match ip {
        IpAddr::V4(v4) if cfg.client_prefix_v4 < 32 => {
            let p = cfg.client_prefix_v4;
            let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
            let [a, b, c, d] = (u32::from(v4) & mask).to_be_bytes();
            let _ = write!(out, "{a}.{b}.{c}.{d}/{p}");
        }
        IpAddr::V6(_) if cfg.client_prefix_v6 < 128 => {
            if let Ok(net) = IpNet::new(ip, cfg.client_prefix_v6) {
                let _ = write!(out, "{}", net.trunc());
            }
        }
        _ => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// 16 hex digits of SHA-256(key, 0, user): stable per key, not reversible without it.
fn user_hash(out: &mut Vec<u8>, key: &[u8], user: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = Sha256::new();
    h.update(key);
    h.update([0u8]);
    h.update(user.as_bytes());
    for b in &h.finalize()[..8] {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LogTarget, UserKey};

    fn cfg(log_text: LogText) -> AccessLogConfig {
        AccessLogConfig {
            target: LogTarget::Stdout,
            buffer_bytes: 4096,
            client_prefix_v4: 24,
            client_prefix_v6: 48,
            user_key: Some(UserKey(b"0123456789abcdef".to_vec())),
            log_text,
        }
    }

    fn client_of(ip: &str, c: &AccessLogConfig) -> String {
        let mut out = Vec::new();
        client(&mut out, ip.parse().unwrap(), c);
        String::from_utf8(out).unwrap()
    }

    fn hash(key: &[u8], user: &str) -> String {
        let mut out = Vec::new();
        user_hash(&mut out, key, user);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn addresses_are_truncated_and_users_hashed() {
        let c = cfg(LogText::Off);
        assert_eq!(client_of("203.0.113.77", &c), "203.0.113.0/24");
        assert_eq!(client_of("2001:db8:1:2::9", &c), "2001:db8:1::/48");
        let whole = AccessLogConfig {
            client_prefix_v4: 32,
            ..c.clone()
        };
        assert_eq!(client_of("203.0.113.77", &whole), "203.0.113.77");
        let zero = AccessLogConfig {
            client_prefix_v4: 0,
            ..c
        };
        assert_eq!(client_of("203.0.113.77", &zero), "0.0.0.0/0");
        let a = hash(b"key-one-0123456789", "u1");
        assert_eq!(a.len(), 16);
        assert_eq!(a, hash(b"key-one-0123456789", "u1"));
        assert_ne!(a, hash(b"key-two-0123456789", "u1"), "keyed");
    }

    #[test]
    fn a_line_is_one_json_object_with_escaped_path_and_masked_text() {
        let log = AccessLog {
            writer: LogWriter::start(
                &LogTarget::File(std::env::temp_dir().join("kefu-access-test.log")),
                4096,
                Arc::new(AtomicBool::new(false)),
                IntCounter::new("d", "d").unwrap(),
            )
            .unwrap(),
            process_key: [7; 32],
        };
        let rec = Record {
            user_id: Some("shopper".into()),
            text: Some("电话13812345678".into()),
            source: Some("rule"),
            intent: Some("refund_apply"),
            confidence: Some(0.5),
            stages: vec![("answer", 0.0123)],
            ..Record::default()
        };
        let req = Request {
            trace_id: None,
            upstream: None,
            client: Some("10.1.2.3".parse().unwrap()),
            method: "POST",
            path: "/v1/\"chat\"",
            route: "chat",
            status: 200,
            total_ms: 1.5,
        };
        let mut out = Vec::new();
        log.format(&mut out, &cfg(LogText::Masked), &req, &rec);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["path"], "/v1/\"chat\"");
        assert_eq!(v["client"], "10.1.2.0/24");
        assert_eq!(v["text"], "电话[phone]");
        assert_eq!(v["ms"]["total"], 1.5);
        assert_eq!(v["ms"]["answer"], 0.012);
        assert_eq!(v["confidence"], 0.5);
        assert_eq!(v["user"].as_str().unwrap().len(), 16);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("trace_id").is_none() && v.get("error").is_none());
        out.clear();
        log.format(&mut out, &cfg(LogText::Off), &req, &rec);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("text").is_none());
    }
}
