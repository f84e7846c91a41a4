//! The chat API's wire format: parsing `POST /v1/chat` bodies straight from the request
//! buffer (strings are borrowed unless they contain escapes), the answer and error JSON, and
//! trace ids. No HTTP here: the proxy maps [`ApiError`] to a status and headers.

mod request;

use std::borrow::Cow;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

pub use request::{ChatRequest, Limits, parse_chat};

use crate::pipeline::Answer;

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

/// The 200 answer body.
pub fn answer_json(answer: &Answer, trace_id: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        reply: &'a str,
        intent: &'a str,
        confidence: f32,
        source: &'a str,
        trace_id: &'a str,
    }
    let body = Body {
        reply: &answer.reply,
        intent: answer.intent.as_str(),
        confidence: answer.confidence,
        source: answer.source.as_str(),
        trace_id,
    };
    let mut out = Vec::with_capacity(answer.reply.len() + 128);
    // Writing plain strings and a float into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &body);
    out
}

/// Trace ids unique within a process and, with a random prefix, across restarts and nodes:
/// 16 hex digits, no allocation beyond the returned string.
pub struct TraceIds {
    prefix: u64,
    counter: AtomicU64,
}

impl Default for TraceIds {
    fn default() -> Self {
        TraceIds {
            prefix: RandomState::new().hash_one(std::process::id()) & 0xffff_ffff,
            counter: AtomicU64::new(0),
        }
    }
}

impl TraceIds {
    pub fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}{:08x}", self.prefix, n & 0xffff_ffff)
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
            reply: "亲，\"券\"在这里".into(),
            masked: false,
        };
        let v: serde_json::Value = serde_json::from_slice(&answer_json(&a, "t1")).unwrap();
        assert_eq!(v["reply"], "亲，\"券\"在这里");
        assert_eq!(v["intent"], "coupon");
        assert_eq!(v["confidence"], 1.0);
        assert_eq!(v["source"], "rule");
        assert_eq!(v["trace_id"], "t1");
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
        assert_eq!(a.len(), 16);
    }
}
