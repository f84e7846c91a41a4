//! The Pingora service of the public listener. It only wires stages: edge filter and token
//! buckets for every request; for the chat API, the body, the decision `pipeline` and the
//! answer; for every other path, an upstream pool. What is HTTP (statuses, headers, bodies)
//! lives here and in `respond`; what is a decision lives in the stages.

mod answer;
mod chat;
mod respond;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::access_log::{AccessLog, Record, Request};
use crate::api::{self, ApiError, TraceId, TraceIds};
use crate::edge::ClientAddr;
use crate::metrics::{Metrics, Route};
use crate::model::ModelStage;
use crate::state::Snapshot;
use crate::upstream::Pool;

pub struct KefuProxy {
    state: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    model: Arc<ModelStage>,
    shadow: chat::ShadowSampler,
    /// Connections to the answer upstream (pooled, reused).
    connector: pingora::connectors::http::Connector,
    trace_ids: TraceIds,
    log_throttle: LogThrottle,
    /// Set once at start (after the fork with --daemon) when server.yaml has `access_log`.
    access_log: Arc<OnceLock<AccessLog>>,
}

/// Per-request state.
pub struct RequestCtx {
    start: Instant,
    route: Route,
    client: Option<ClientAddr>,
    /// The snapshot a proxied request started with, kept across its phases.
    snapshot: Option<Arc<Snapshot>>,
    pool: Option<Arc<Pool>>,
    /// The request's trace id, once it has one (a chat answer, a request sent upstream).
    trace_id: Option<TraceId>,
    /// What the access log line will say; filled only when there is an access log.
    record: Option<Record>,
}

impl KefuProxy {
    pub fn new(
        state: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<Metrics>,
        model: Arc<ModelStage>,
        access_log: Arc<OnceLock<AccessLog>>,
    ) -> KefuProxy {
        KefuProxy {
            state,
            metrics,
            model,
            shadow: chat::ShadowSampler::default(),
            connector: pingora::connectors::http::Connector::new(None),
            trace_ids: TraceIds::default(),
            log_throttle: LogThrottle::new(),
            access_log,
        }
    }

    /// Answer with an error and log it (throttled: bad traffic must not flood the log).
    /// The caller has counted it under its own metric.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        e: &ApiError,
    ) -> Result<bool> {
        if let Some(r) = ctx.record.as_mut() {
            r.error = Some(e.code);
        }
        respond::error(session, e).await?;
        if self.log_throttle.allow() {
            let ip = ctx
                .client
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.ip);
            log::info!(
                "refused {} {} from {ip}: {} {}: {}",
                session.req_header().method,
                session.req_header().uri.path(),
                e.status,
                e.code,
                e.message
            );
        }
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for KefuProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            route: Route::Proxy,
            client: None,
            snapshot: None,
            pool: None,
            trace_id: None,
            record: self.access_log.get().map(|_| Record::default()),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snap = self.state.load_full();
        let head = session.req_header();
        if let Err(e) = api::check_head(head.raw_path(), &head.headers, &snap.config.server.client)
        {
            self.metrics.bad_request(e.code);
            return self.refuse(session, ctx, &e).await;
        }
        // Bound an idle keep-alive connection (on only where the client keeps it alive), a
        // slow body and a client that does not read its answer.
        let caps = &snap.config.server.client;
        let downstream = session.as_downstream_mut();
        if downstream.get_keepalive().is_some() {
            downstream.set_keepalive(Some(caps.keepalive_timeout_secs));
        }
        downstream.set_read_timeout(Some(caps.body_timeout));
        downstream.set_write_timeout(Some(caps.send_timeout));
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip());
        let forwarded = snap
            .edge
            .real_ip_header()
            .and_then(|h| session.req_header().headers.get(h))
            .map(|v| v.as_bytes());
        let client = snap.edge.client_addr(peer, forwarded);
        ctx.client = Some(client);
        if session.req_header().uri.path() == snap.config.server.chat.path {
            ctx.route = Route::Chat;
        }

        let user_agent = session.req_header().headers.get(http::header::USER_AGENT);
        let verdict = snap
            .edge
            .check_ip(client.ip)
            .and_then(|()| snap.edge.check_user_agent(user_agent.map(|v| v.as_bytes())));
        if let Err(reason) = verdict {
            self.metrics.edge_denied(reason.as_str());
            return self.refuse(session, ctx, &ApiError::from(reason)).await;
        }
        if let Err(limited) = snap.limits.check_client(client.ip) {
            self.metrics.limited(limited.kind.as_str());
            return self.refuse(session, ctx, &ApiError::from(limited)).await;
        }
        // A chat request's shared buckets are checked with its user's, in one call.
        if ctx.route == Route::Proxy
            && snap.limits.has_shared()
            && let Err(limited) = snap.limits.check_shared(client.ip, None).await
        {
            self.metrics.limited(limited.kind.as_str());
            return self.refuse(session, ctx, &ApiError::from(limited)).await;
        }
        match ctx.route {
            Route::Chat => self.serve_chat(session, ctx, &snap).await,
            Route::Proxy => {
                ctx.snapshot = Some(snap);
                Ok(false)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let snap = ctx.snapshot.get_or_insert_with(|| self.state.load_full());
        let Some(pool) = snap.upstreams.route(session.req_header().uri.path()) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(404),
                "no route for this path",
            ));
        };
        ctx.pool = Some(Arc::clone(pool));
        match pool.select() {
            Some(peer) => Ok(Box::new(peer)),
            None => Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "no healthy upstream",
            )),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // nginx's $proxy_add_x_forwarded_for: the incoming list plus our peer.
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(peer) = peer {
            let value = match session.req_header().headers.get("x-forwarded-for") {
                Some(prev) => format!("{}, {peer}", String::from_utf8_lossy(prev.as_bytes())),
                None => peer.to_string(),
            };
            upstream_request.insert_header("x-forwarded-for", value)?;
        }
        if let Some(client) = ctx.client {
            upstream_request.insert_header("x-real-ip", client.ip.to_string())?;
        }
        let trace_id = self.trace_ids.next();
        upstream_request.insert_header("x-request-id", trace_id.as_str())?;
        ctx.trace_id = Some(trace_id);
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let api = respond::proxy_failure(e);
        if let Some(pool) = &ctx.pool {
            self.metrics.upstream_failure(&pool.name);
        }
        if self.log_throttle.allow() {
            log::warn!(
                "{} {}: {e}",
                session.req_header().method,
                session.req_header().uri.path()
            );
        }
        let code = if session.response_written().is_none() {
            match respond::error(session, &api).await {
                Ok(()) => api.status,
                Err(_) => 0,
            }
        } else {
            0
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Proxy failures are logged once, throttled, by `fail_to_proxy`.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        // 499 like nginx: the client went away before any response was written.
        let status = session
            .response_written()
            .map_or(499, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed().as_secs_f64();
        self.metrics.observe_request(ctx.route, status, elapsed);
        if let (Some(log), Some(record)) = (self.access_log.get(), &ctx.record) {
            let snap = ctx.snapshot.get_or_insert_with(|| self.state.load_full());
            if let Some(cfg) = &snap.config.server.access_log {
                let head = session.req_header();
                let req = Request {
                    trace_id: ctx.trace_id,
                    // A proxied request has its trace id once it is on its way upstream.
                    upstream: ctx
                        .trace_id
                        .and(ctx.pool.as_deref())
                        .map(|p| p.name.as_str()),
                    client: ctx.client.map(|c| c.ip),
                    method: head.method.as_str(),
                    path: head.uri.path(),
                    route: ctx.route.as_str(),
                    status,
                    total_ms: elapsed * 1000.0,
                };
                log.log(cfg, &req, record);
            }
        }
    }
}

/// At most a few log lines a second for per-request events, so bad traffic cannot turn
/// into a disk-filling log. Lines over the budget are dropped (the metrics still count).
struct LogThrottle(governor::DefaultDirectRateLimiter);

impl LogThrottle {
    fn new() -> LogThrottle {
        let per_second = std::num::NonZeroU32::new(20).unwrap_or(std::num::NonZeroU32::MIN);
        LogThrottle(governor::RateLimiter::direct(governor::Quota::per_second(
            per_second,
        )))
    }

    fn allow(&self) -> bool {
        self.0.check().is_ok()
    }
}
