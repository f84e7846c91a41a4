//! The answer upstream: a message the model stage cannot answer from templates (an intent
//! without replies, or a probability below the threshold) is asked of the shop's own bot,
//! a pool of `upstreams.yaml`. The request carries the message and what the edge made of
//! it (`X-Kefu-Intent`, `X-Kefu-Confidence`); the bot answers `{"reply": "..."}`. Any
//! failure (no healthy server, timeout, non-200, bad JSON) is returned as an error and the
//! caller answers with the fallback.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use serde::Deserialize;

use crate::intent::Intent;
use crate::upstream::Pool;

/// Replies longer than this are refused (a bot answering a chat message in 64 KiB is broken).
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// What is sent about one message.
pub struct Question<'a> {
    pub user_id: &'a str,
    pub text: &'a str,
    pub intent: Intent,
    pub confidence: f32,
    pub trace_id: &'a str,
    /// The dialogue so far: the previous turn's intent and the order the user spoke of.
    pub previous_intent: Option<Intent>,
    pub order: Option<&'a str>,
}

#[derive(Deserialize)]
struct BotAnswer {
    reply: String,
}

/// Ask `pool` at `path`; the reply text, or why there is none.
pub async fn ask(
    connector: &Connector,
    pool: &Pool,
    path: &str,
    timeout: Duration,
    q: &Question<'_>,
) -> Result<String, String> {
    let work = async {
        let peer = pool.select().ok_or("no healthy server")?;
        let body = serde_json::to_vec(&serde_json::json!({
            "user_id": q.user_id,
            "text": q.text,
            "intent": q.intent.as_str(),
            "confidence": q.confidence,
            "previous_intent": q.previous_intent.map(Intent::as_str),
            "order": q.order,
        }))
        .map_err(|e| e.to_string())?;
        let mut req =
            RequestHeader::build("POST", path.as_bytes(), None).map_err(|e| e.to_string())?;
        let headers = [
            ("host", pool.name.clone()),
            ("content-type", "application/json".to_owned()),
            ("content-length", body.len().to_string()),
            ("x-kefu-intent", q.intent.as_str().to_owned()),
            ("x-kefu-confidence", format!("{:.4}", q.confidence)),
            ("x-request-id", q.trace_id.to_owned()),
        ];
        for (name, value) in headers {
            req.insert_header(name, value).map_err(|e| e.to_string())?;
        }
        let (mut session, _reused) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        session.set_read_timeout(Some(timeout));
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| format!("write: {e}"))?;
        session
            .write_request_body(Bytes::from(body), true)
            .await
            .map_err(|e| format!("write: {e}"))?;
        session
            .finish_request_body()
            .await
            .map_err(|e| format!("write: {e}"))?;
        session
            .read_response_header()
            .await
            .map_err(|e| format!("read: {e}"))?;
        let status = session.response_header().map_or(0, |h| h.status.as_u16());
        let mut body = BytesMut::new();
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(|e| format!("read: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_REPLY_BYTES {
                return Err(format!("reply larger than {MAX_REPLY_BYTES} bytes"));
            }
        }
        if status != 200 {
            return Err(format!("status {status}"));
        }
        let answer: BotAnswer =
            serde_json::from_slice(&body).map_err(|e| format!("not {{\"reply\": str}}: {e}"))?;
        connector
            .release_http_session(session, &peer, Some(Duration::from_secs(60)))
            .await;
        if answer.reply.trim().is_empty() {
            return Err("empty reply".into());
        }
        Ok(answer.reply)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
