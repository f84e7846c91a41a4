//! The chat API's wire format: parsing `POST /v1/chat` bodies straight from the request
//! buffer (strings are borrowed unless they contain escapes), the answer and error JSON, and
//! trace ids. No HTTP here: the proxy maps [`ApiError`] to a status and headers.

mod request;

use std::borrow::Cow;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

pub use request::{ChatRequest, Limits, check_head, parse_chat};

use crate::pipeline::{Answer, Reply};

/// An error answer: status, a stable machine-readable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// Seconds for `Retry-After` (429 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, code, message)
    }

    /// Whether the connection must close after this answer: the body's framing could not be
    /// trusted, so whatever follows on the connection cannot be read as a next request.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self.code,
            "ambiguous_length" | "unsupported_transfer_encoding" | "malformed_body"
        )
    }

    /// `{"error":{"code":..,"message":..}}`
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"error":{"code":"internal"}}"#.to_vec())
    }
}

/// The 200 answer body. Written by hand: ids are plain ASCII, and a prepared reply is
/// already a JSON string literal, so only a reply made for this request needs escaping.
pub fn answer_json(answer: &Answer<'_>, trace_id: &TraceId) -> Vec<u8> {
    let reply = answer.reply.text();
    let mut out = Vec::with_capacity(reply.len() + 128);
    out.extend_from_slice(b"{\"reply\":");
    match &answer.reply {
        Reply::Prepared(p) => out.extend_from_slice(p.json().as_bytes()),
        // Writing a string into a Vec cannot fail.
        Reply::Made { text, .. } => {
            let _ = serde_json::to_writer(&mut out, text);
        }
    }
    out.extend_from_slice(b",\"intent\":\"");
    out.extend_from_slice(answer.intent.as_str().as_bytes());
    out.extend_from_slice(b"\",\"confidence\":");
    let _ = serde_json::to_writer(&mut out, &answer.confidence);
    out.extend_from_slice(b",\"source\":\"");
    out.extend_from_slice(answer.source.as_str().as_bytes());
    out.push(b'"');
    // Whether a person must take over now, and why (the reply is then the fallback text,
    // or for a `human` policy the intent's own "connecting you" template).
    match answer.handoff {
        Some(reason) => {
            out.extend_from_slice(b",\"handoff\":true,\"handoff_reason\":\"");
            out.extend_from_slice(reason.as_str().as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b",\"handoff\":false"),
    }
    out.extend_from_slice(b",\"trace_id\":\"");
    out.extend_from_slice(trace_id.as_str().as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// A request's trace id: 16 hex digits, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 16]);

impl TraceId {
    pub fn as_str(&self) -> &str {
        // Only hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or("0000000000000000")
    }
}

impl std::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Trace ids unique within a process and, with a random prefix, across restarts and nodes.
pub struct TraceIds {
    prefix: u64,
    counter: AtomicU64,
}

impl Default for TraceIds {
    fn default() -> Self {
        TraceIds {
            prefix: RandomState::new().hash_one(std::process::id()) << 32,
            counter: AtomicU64::new(0),
        }
    }
}

impl TraceIds {
    pub fn next(&self) -> TraceId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff;
        let v = self.prefix | n;
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = b"0123456789abcdef"[(v >> (60 - 4 * i) & 0xf) as usize];
        }
        TraceId(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::Intent;
    use crate::pipeline::Source;

    #[test]
    fn answer_and_error_bodies() {
        let a = Answer {
            intent: Intent::Coupon,
            confidence: 1.0,
            source: Source::Rule,
            reply: Reply::Made {
                text: "亲，\"券\"在这里".into(),
                masked: false,
            },
            handoff: None,
        };
        let t = TraceIds::default().next();
        let v: serde_json::Value = serde_json::from_slice(&answer_json(&a, &t)).unwrap();
        assert_eq!(v["reply"], "亲，\"券\"在这里");
        assert_eq!(v["intent"], "coupon");
        assert_eq!(v["confidence"], 1.0);
        assert_eq!(v["source"], "rule");
        assert_eq!(v["handoff"], false);
        assert_eq!(v["trace_id"], t.as_str());
        let handed = Answer {
            handoff: Some(crate::pipeline::Handoff::LowConfidence),
            ..a
        };
        let v: serde_json::Value = serde_json::from_slice(&answer_json(&handed, &t)).unwrap();
        assert_eq!(v["handoff"], true);
        assert_eq!(v["handoff_reason"], "low_confidence");
        let e = ApiError::bad_request("invalid_field", "field `text` is missing");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["error"]["code"], "invalid_field");
        assert_eq!(v["error"]["message"], "field `text` is missing");
    }

    #[test]
    fn trace_ids_are_distinct() {
        let t = TraceIds::default();
        let a = t.next();
        let b = t.next();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 16);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(&a.as_str()[..8], &b.as_str()[..8], "same process prefix");
    }
}
