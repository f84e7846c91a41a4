//! `POST /v1/chat` inside the proxy: read the body under its cap, parse, per-user bucket,
//! the decision pipeline, the JSON answer. Everything the shopper gets back is either the
//! answer or an [`ApiError`]; nothing here panics on input.

use std::net::{IpAddr, Ipv4Addr};

use bytes::{Bytes, BytesMut};
use http::Method;
use pingora::Result;
use pingora::proxy::Session;

use super::answer;
use super::{KefuProxy, RequestCtx, respond};
use crate::api::{self, ApiError, ChatRequest, Limits, TraceId};
use crate::config::AnswerUpstream;
use crate::config::{AnswerPolicy, LogText};
use crate::dialog::{self, Dialog, DialogState, Slots};
use crate::intent::Intent;
use crate::model::{ModelError, ModelInput};
use crate::pipeline::{Answer, Handoff, Source, Step};
use crate::state::Snapshot;

enum Body {
    Ok(Bytes),
    /// Too large, stopped arriving for longer than `client.body_timeout`, or badly framed.
    Refused(ApiError),
}

/// 413 for a body over `max_body_bytes`, whether declared or found while reading.
fn too_large(max_body_bytes: usize) -> ApiError {
    ApiError::new(
        413,
        "body_too_large",
        format!("body is larger than {max_body_bytes} bytes"),
    )
}

impl KefuProxy {
    pub(super) async fn serve_chat(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snap: &Snapshot,
    ) -> Result<bool> {
        let caps = &snap.config.server.chat;
        if session.req_header().method != Method::POST {
            let e = ApiError::new(405, "method_not_allowed", format!("use POST {}", caps.path));
            self.metrics.bad_request(e.code);
            return self.refuse(session, ctx, &e).await;
        }
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > caps.max_body_bytes) {
            let e = too_large(caps.max_body_bytes);
            self.metrics.bad_request(e.code);
            return self.refuse(session, ctx, &e).await;
        }
        let expects_continue = session
            .req_header()
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue {
            session
                .as_downstream_mut()
                .write_continue_response()
                .await?;
        }
        let body_timeout = snap.config.server.client.body_timeout;
        let body = match read_body(session, caps.max_body_bytes, body_timeout).await? {
            Body::Ok(b) => b,
            Body::Refused(e) => {
                self.metrics.bad_request(e.code);
                return self.refuse(session, ctx, &e).await;
            }
        };
        let limits = Limits {
            max_text_chars: caps.max_text_chars,
            max_user_id_bytes: caps.max_user_id_bytes,
        };
        let request = match api::parse_chat(&body, limits) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.bad_request(e.code);
                return self.refuse(session, ctx, &e).await;
            }
        };
        let ip = ctx.client.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.ip);
        let limited = match snap.limits.check_user(&request.user_id) {
            Ok(()) if snap.limits.has_shared() => {
                snap.limits.check_shared(ip, Some(&request.user_id)).await
            }
            verdict => verdict,
        };
        if let Err(limited) = limited {
            self.metrics.limited(limited.kind.as_str());
            return self.refuse(session, ctx, &ApiError::from(limited)).await;
        }
        let trace_id = self.trace_ids.next();
        ctx.trace_id = Some(trace_id);
        if let Some(r) = ctx.record.as_mut() {
            r.user_id = Some(request.user_id.to_string());
            let log_text = snap.config.server.access_log.as_ref().map(|c| c.log_text);
            if log_text == Some(LogText::Masked) {
                r.text = Some(request.text.to_string());
            }
        }
        let mut timer = StageTimer::start(ctx.record.is_some());
        let dialog = &snap.dialog;
        let now = jiff::Timestamp::now().as_second();
        // A state that could not be read is not written either: saving a fresh one would
        // erase the dialogue the store still holds.
        let mut state = if dialog.enabled {
            self.load_state(dialog, &request.user_id).await
        } else {
            None
        };
        timer.lap("load");
        let turn_slots = Slots::extract(&request.text);
        let within = snap.pipeline.context().within_secs();
        let (recent, slots) = match &state {
            Some(s) => {
                let mut slots = s.slots.clone();
                slots.update(&turn_slots);
                (s.recent(now, within, dialog::CONTEXT_TURNS), slots)
            }
            None => (Vec::new(), turn_slots.clone()),
        };
        let order = turn_slots.order.as_deref();
        let context = match &state {
            Some(s) => s.context(&recent, now, within, order),
            None => dialog::Context {
                order,
                ..dialog::Context::NONE
            },
        };
        let turn = TurnContext {
            context,
            slots: &slots,
        };
        let answer = self.answer_message(snap, &request, &trace_id, &turn).await;
        timer.lap("answer");
        self.metrics
            .answered(answer.source, answer.intent, answer.handoff);
        if answer.reply.masked() {
            self.metrics.replies_masked.inc();
        }
        let mut acknowledged = None;
        if let Some(state) = state.as_mut() {
            state.record(
                dialog::Turn {
                    intent: answer.intent,
                    at: now,
                    text: request.text.to_string(),
                },
                &turn_slots,
                answer.handoff.is_some(),
                dialog.history,
            );
            if self.save_state(dialog, &request.user_id, state).await {
                acknowledged = Some(state.turns);
            }
            timer.lap("save");
        }
        if let Some(r) = ctx.record.as_mut() {
            r.source = Some(answer.source.as_str());
            r.intent = Some(answer.intent.as_str());
            r.confidence = Some(answer.confidence);
            r.handoff = answer.handoff.map(|h| h.as_str());
            r.stages = timer.laps;
        }
        let header = acknowledged.map(|n| (TURN_HEADER, http::HeaderValue::from(n)));
        respond::json(session, 200, api::answer_json(&answer, &trace_id), header).await?;
        Ok(true)
    }
}

/// Milliseconds per stage of a chat request, for the access log; reads no clock without one.
struct StageTimer {
    last: Option<std::time::Instant>,
    laps: Vec<(&'static str, f64)>,
}

impl StageTimer {
    fn start(enabled: bool) -> StageTimer {
        StageTimer {
            last: enabled.then(std::time::Instant::now),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, stage: &'static str) {
        if let Some(last) = self.last {
            let now = std::time::Instant::now();
            self.laps
                .push((stage, now.duration_since(last).as_secs_f64() * 1000.0));
            self.last = Some(now);
        }
    }
}

/// Present on an answer whose turn the dialogue store acknowledged (with replication, when
/// configured): the user's turn count. Absent: answered without a saved turn.
const TURN_HEADER: http::HeaderName = http::HeaderName::from_static("x-kefu-turn");

/// What the dialogue gives one message.
struct TurnContext<'a> {
    context: dialog::Context<'a>,
    /// The dialogue's slots with this message's own taken in.
    slots: &'a Slots,
}

impl KefuProxy {
    async fn load_state(&self, dialog: &Dialog, user: &str) -> Option<DialogState> {
        let store = dialog.store().kind().as_str();
        let started = std::time::Instant::now();
        let loaded = dialog.load(user).await;
        self.metrics
            .dialog_op("load", store, started.elapsed().as_secs_f64());
        match loaded {
            Ok(state) => Some(state),
            Err(e) => {
                self.metrics.dialog_error("load", store, e.as_str());
                if self.log_throttle.allow() {
                    log::warn!("dialogue store ({store}): load: {e}; answered without context");
                }
                None
            }
        }
    }

    async fn save_state(&self, dialog: &Dialog, user: &str, state: &mut DialogState) -> bool {
        let store = dialog.store().kind().as_str();
        let started = std::time::Instant::now();
        let saved = dialog.save(user, state).await;
        self.metrics
            .dialog_op("save", store, started.elapsed().as_secs_f64());
        match saved {
            Ok(bytes) => {
                self.metrics.dialog_state_bytes.observe(bytes as f64);
                true
            }
            Err(e) => {
                self.metrics.dialog_error("save", store, e.as_str());
                if self.log_throttle.allow() {
                    log::warn!("dialogue store ({store}): save: {e}; turn not acknowledged");
                }
                false
            }
        }
    }

    /// The decision pipeline for one message of a dialogue ([`Pipeline::step`]): a turn
    /// without a request, the context and fast path, then the model stage; each decided
    /// intent answered by its policy (templates, the shop's bot, a person).
    async fn answer_message<'s>(
        &self,
        snap: &'s Snapshot,
        request: &ChatRequest<'_>,
        trace_id: &TraceId,
        turn: &TurnContext<'_>,
    ) -> Answer<'s> {
        let pipeline = &snap.pipeline;
        let answer = match pipeline.step(&request.text, &turn.context, turn.slots) {
            Step::Answered {
                answer,
                decision,
                by_context,
            } => {
                if by_context {
                    self.metrics.follow_up(answer.intent);
                }
                if decision.is_some()
                    && answer.source == Source::Rule
                    && !by_context
                    && self.shadow.take(snap.config.model.shadow.sample)
                {
                    self.shadow_score(&request.user_id, &request.text, answer.intent);
                }
                answer
            }
            Step::Model {
                decision,
                input,
                reading,
            } => {
                let model = &snap.config.model;
                match self.model.classify(&request.user_id, input).await {
                    Ok((prediction, served)) => {
                        let (answer, verdict) = pipeline.after_model(
                            &decision,
                            &request.text,
                            reading,
                            Some(&prediction),
                            model,
                            turn.slots,
                        );
                        self.metrics
                            .model_outcome(verdict.as_str(), &served.version);
                        answer
                    }
                    Err(e) => {
                        self.metrics.model_outcome(e.as_str(), "");
                        if !matches!(e, ModelError::Disabled) && self.log_throttle.allow() {
                            log::warn!("model stage: {e}; handed to a person");
                        }
                        pipeline
                            .after_model(&decision, &request.text, reading, None, model, turn.slots)
                            .0
                    }
                }
            }
        };
        // The shop's bot answers what its policy gives it, and what nothing else could; a
        // `human` policy and a conversation turn never reach it.
        let to_bot = match answer.handoff {
            Some(Handoff::LowConfidence | Handoff::NothingFits) => true,
            Some(Handoff::Policy | Handoff::WithPerson | Handoff::ModelDown) => false,
            None => pipeline.policy(answer.intent) == AnswerPolicy::Bot,
        };
        match &snap.config.model.answer_upstream {
            Some(up) if to_bot => {
                let asked = (answer.intent, answer.confidence);
                self.ask_bot(snap, up, request, asked, trace_id, turn)
                    .await
                    .unwrap_or(answer)
            }
            _ => answer,
        }
    }
}

impl KefuProxy {
    /// Ask the shop's bot what the model stage could not answer from templates; `None`
    /// (counted, logged at a bounded rate) leaves the fallback.
    async fn ask_bot<'s>(
        &self,
        snap: &'s Snapshot,
        up: &AnswerUpstream,
        request: &ChatRequest<'_>,
        (intent, confidence): (Intent, f32),
        trace_id: &TraceId,
        turn: &TurnContext<'_>,
    ) -> Option<Answer<'s>> {
        let question = answer::Question {
            user_id: &request.user_id,
            text: &request.text,
            intent,
            confidence,
            trace_id: trace_id.as_str(),
            previous_intent: turn.context.recent.first().copied(),
            order: turn.slots.order.as_deref(),
        };
        let result = match snap.upstreams.pool(&up.pool) {
            Some(pool) => answer::ask(&self.connector, pool, &up.path, up.timeout, &question).await,
            None => Err(format!("no pool `{}`", up.pool)),
        };
        match result {
            Ok(reply) => Some(Answer {
                intent,
                confidence,
                source: Source::Upstream,
                reply: snap.pipeline.finish(reply),
                handoff: None,
            }),
            Err(e) => {
                self.metrics.upstream_failure(&up.pool);
                if self.log_throttle.allow() {
                    log::warn!("answer upstream {}: {e}; answered by the fallback", up.pool);
                }
                None
            }
        }
    }

    /// Score a fast-path answer with the model too, off the request path.
    fn shadow_score(&self, user_id: &str, text: &str, fast: Intent) {
        let model = std::sync::Arc::clone(&self.model);
        let metrics = std::sync::Arc::clone(&self.metrics);
        let (user_id, text) = (user_id.to_owned(), text.to_owned());
        tokio::spawn(async move {
            if let Ok((p, served)) = model.classify(&user_id, ModelInput::alone(&text)).await {
                metrics.shadow(fast, p.intent == fast, &served.version);
            }
        });
    }
}

/// Picks a share of requests by counting, not by chance: every n-th for a share of 1/n, so
/// tests and operators see exactly the configured share.
#[derive(Default)]
pub(super) struct ShadowSampler(std::sync::atomic::AtomicU64);

impl ShadowSampler {
    pub(super) fn take(&self, share: f64) -> bool {
        if share <= 0.0 {
            return false;
        }
        let every = (1.0 / share).round().max(1.0) as u64;
        self.0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(every)
    }
}

/// Read the whole body, stopping as soon as it exceeds `cap`. One chunk (the usual case for
/// a small JSON body) is returned without a copy. Each read waits at most `timeout`
/// (`client.body_timeout`): on HTTP/1 the request filter set it as the session's read timeout,
/// which Pingora applies itself; Pingora's HTTP/2 session has no read timeout of its own, so
/// there a tokio timer bounds each read (on HTTP/1 it would only add two timer entries to
/// every request).
async fn read_body(
    session: &mut Session,
    cap: usize,
    timeout: std::time::Duration,
) -> Result<Body> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    let own_timer = session.as_downstream().is_http2();
    loop {
        let read = if own_timer {
            tokio::time::timeout(timeout, session.read_request_body()).await
        } else {
            Ok(session.read_request_body().await)
        };
        let chunk = match read {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(e)) if e.etype() == &pingora::ErrorType::ReadTimedout => {
                return Ok(Body::Refused(respond::request_timeout_error()));
            }
            Ok(Err(e)) if respond::malformed_body(&e) => {
                return Ok(Body::Refused(respond::malformed_body_error()));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(Body::Refused(respond::request_timeout_error())),
        };
        total += chunk.len();
        if total > cap {
            return Ok(Body::Refused(too_large(cap)));
        }
        if let Some(j) = joined.as_mut() {
            j.extend_from_slice(&chunk);
        } else if let Some(f) = first.take() {
            let mut j = BytesMut::with_capacity(total.max(1024));
            j.extend_from_slice(&f);
            j.extend_from_slice(&chunk);
            joined = Some(j);
        } else {
            first = Some(chunk);
        }
    }
    Ok(Body::Ok(match joined {
        Some(j) => j.freeze(),
        None => first.unwrap_or_default(),
    }))
}
