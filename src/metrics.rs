//! Prometheus metrics, exported as text on the admin listener.
//!
//! Names follow `kefu_<stage>_<what>`; histograms end in `_seconds`. Label values are all
//! from closed sets (routes, sources, intents, reasons, HTTP statuses), so cardinality is
//! bounded. Handles for the hot path are resolved once, here, not per request.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::connections::ConnectionMetrics;
use crate::intent::Intent;
use crate::limits::LimitMetrics;
use crate::model::BatchMetrics;
use crate::pipeline::{Handoff, Source};

/// Which part of the public listener served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Chat,
    Proxy,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Chat => "chat",
            Route::Proxy => "proxy",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    answers: [IntCounter; 4],
    /// `[source][intent]`.
    intents: Vec<Vec<IntCounter>>,
    handoffs: Vec<IntCounter>,
    edge_denied: IntCounterVec,
    limited: IntCounterVec,
    bad_requests: IntCounterVec,
    pub replies_masked: IntCounter,
    pub access_log_dropped: IntCounter,
    upstream_failures: IntCounterVec,
    pub reloads_ok: IntCounter,
    pub reloads_failed: IntCounter,
    pub config_generation: IntGauge,
    pub last_reload_success: IntGauge,
    model_requests: IntCounterVec,
    shadow: IntCounterVec,
    /// The batcher's histograms (batch size, inference and queue time).
    pub model_batch: BatchMetrics,
    /// The shared rate limits' counters and breaker state.
    pub limits: LimitMetrics,
    /// The chat listener's open, refused and timed-out connections.
    pub connections: ConnectionMetrics,
    dialog_errors: IntCounterVec,
    dialog_seconds: HistogramVec,
    follow_ups: IntCounterVec,
    pub dialog_state_bytes: Histogram,
}

/// Batch sizes up to the default `max_batch` of 40 and beyond.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 24.0, 32.0, 40.0, 64.0, 128.0];

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Metrics {
    pub fn new() -> anyhow::Result<Metrics> {
        let registry = Registry::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> anyhow::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let counter = |name: &str, help: &str| -> anyhow::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> anyhow::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let requests = counter_vec(
            "kefu_http_requests_total",
            "Requests on the public listener by route and status",
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "kefu_http_request_duration_seconds",
                "Time from request headers to the end of the response, by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        let answers_vec = counter_vec(
            "kefu_chat_answers_total",
            "Chat answers by the stage that produced them",
            &["source"],
        )?;
        let answers = Source::ALL.map(|s| answers_vec.with_label_values(&[s.as_str()]));
        let intents_vec = counter_vec(
            "kefu_chat_intents_total",
            "Chat answers by the stage that produced them and intent",
            &["source", "intent"],
        )?;
        let intents = Source::ALL
            .iter()
            .map(|s| {
                Intent::ALL
                    .iter()
                    .map(|i| intents_vec.with_label_values(&[s.as_str(), i.as_str()]))
                    .collect()
            })
            .collect();
        let handoffs_vec = counter_vec(
            "kefu_chat_handoffs_total",
            "Answers that hand the shopper to a person, by reason (policy, low_confidence, model_down, nothing_fits, with_person)",
            &["reason"],
        )?;
        let handoffs = Handoff::ALL
            .iter()
            .map(|r| handoffs_vec.with_label_values(&[r.as_str()]))
            .collect();
        let histogram = |name: &str, help: &str, buckets: &[f64]| -> anyhow::Result<Histogram> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let model_batch = BatchMetrics {
            batch_size: histogram(
                "kefu_model_batch_size",
                "Requests per model inference",
                BATCH_BUCKETS,
            )?,
            inference_seconds: histogram(
                "kefu_model_inference_seconds",
                "Time of one model inference (one batch)",
                LATENCY_BUCKETS,
            )?,
            queue_seconds: histogram(
                "kefu_model_queue_seconds",
                "Time a request waited for its batch to start",
                LATENCY_BUCKETS,
            )?,
            swaps: counter(
                "kefu_model_swaps_total",
                "Model deployments published (versions loaded, swapped, promoted or rolled back)",
            )?,
            remote_ready: {
                let g = prometheus::IntGaugeVec::new(
                    Opts::new(
                        "kefu_model_remote_ready",
                        "Remote model backend: 1 while an inference server is ready for a version (health, model name and tensors checked)",
                    ),
                    &["version", "server"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            remote_failures: counter_vec(
                "kefu_model_remote_failures_total",
                "Remote model backend: infer requests that failed, by server (it is asked again after its next good health check)",
                &["server"],
            )?,
        };
        let dialog_seconds = HistogramVec::new(
            HistogramOpts::new(
                "kefu_dialog_store_seconds",
                "Time of one dialogue-state operation (load, save), by store",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["op", "store"],
        )?;
        registry.register(Box::new(dialog_seconds.clone()))?;
        let m = Metrics {
            dialog_errors: counter_vec(
                "kefu_dialog_store_errors_total",
                "Dialogue-state operations that failed (the message was answered without context, or its turn not acknowledged), by operation, store and reason",
                &["op", "store", "reason"],
            )?,
            dialog_seconds,
            follow_ups: counter_vec(
                "kefu_dialog_follow_ups_total",
                "Messages whose intent the dialogue's context decided, by that intent",
                &["intent"],
            )?,
            dialog_state_bytes: histogram(
                "kefu_dialog_state_bytes",
                "Encoded size of a saved dialogue state",
                &[64.0, 128.0, 256.0, 512.0, 1024.0, 1536.0, 2048.0, 4096.0],
            )?,
            model_requests: counter_vec(
                "kefu_model_requests_total",
                "Messages sent to the model stage by outcome (answered, below_threshold, no_template, overloaded, shed, deadline, error, closed, disabled)",
                &["outcome", "version"],
            )?,
            shadow: counter_vec(
                "kefu_model_shadow_total",
                "Fast-path answers also scored by the model, by fast-path intent, whether the model agreed, and the model version that scored (a candidate on gray traffic is compared with the active one this way)",
                &["intent", "agree", "version"],
            )?,
            model_batch,
            limits: LimitMetrics {
                shared_checks: counter_vec(
                    "kefu_limits_shared_checks_total",
                    "Checks of shared buckets answered by Redis, by result (allowed, allowed_ahead: admitted before its answer, limited, error)",
                    &["result"],
                )?,
                fallbacks: counter_vec(
                    "kefu_limits_local_fallbacks_total",
                    "Checks of shared buckets answered by their local fallback (Redis failed, slow or not connected; breaker open), by result",
                    &["result"],
                )?,
                breaker_state: gauge(
                    "kefu_limits_breaker_state",
                    "The shared limits' circuit breaker: 0 closed, 1 open, 2 half-open",
                )?,
            },
            connections: ConnectionMetrics {
                open: gauge(
                    "kefu_connections_open",
                    "Connections open on the chat listener",
                )?,
                refused: counter_vec(
                    "kefu_connections_refused_total",
                    "Connections refused with 503 before their request was read, by limit (total, per_client)",
                    &["reason"],
                )?,
                header_timeouts: counter(
                    "kefu_connections_header_timeouts_total",
                    "Connections cut because a request head (or a TLS handshake) did not arrive within client.header_timeout",
                )?,
                tls_failures: counter(
                    "kefu_connections_tls_failures_total",
                    "TLS handshakes on listen.chat_tls that failed (a client without TLS, no shared cipher or protocol)",
                )?,
            },
            requests,
            latency,
            answers,
            intents,
            handoffs,
            edge_denied: counter_vec(
                "kefu_edge_denied_total",
                "Requests refused by the edge filter (403) by reason",
                &["reason"],
            )?,
            limited: counter_vec(
                "kefu_limits_rejected_total",
                "Requests refused by a token bucket (429) by bucket",
                &["limit"],
            )?,
            bad_requests: counter_vec(
                "kefu_chat_bad_requests_total",
                "Chat requests refused as invalid (400/405/413) by error code",
                &["code"],
            )?,
            replies_masked: counter(
                "kefu_post_replies_masked_total",
                "Replies in which the reply filter masked sensitive words",
            )?,
            access_log_dropped: counter(
                "kefu_access_log_dropped_total",
                "Access log lines dropped because the writer was behind (never waited for)",
            )?,
            upstream_failures: counter_vec(
                "kefu_upstream_failures_total",
                "Proxied requests that failed (502/504) by pool",
                &["pool"],
            )?,
            reloads_ok: counter(
                "kefu_config_reloads_ok_total",
                "Configuration reloads that took effect",
            )?,
            reloads_failed: counter(
                "kefu_config_reloads_failed_total",
                "Configuration reloads refused; the previous configuration kept serving",
            )?,
            config_generation: gauge(
                "kefu_config_generation",
                "Generation of the configuration now serving (1 at start-up)",
            )?,
            last_reload_success: gauge(
                "kefu_config_last_reload_success",
                "1 if the last reload attempt succeeded (or none was made), 0 if it was refused",
            )?,
            registry,
        };
        m.zero_known_series();
        Ok(m)
    }

    /// Series whose labels are known in advance start at 0, so a dashboard shows "none yet"
    /// instead of "no data" (and a test can check that the dashboard's metrics exist).
    fn zero_known_series(&self) {
        use crate::edge::DenyReason;
        use crate::limits::LimitKind;
        for r in [
            DenyReason::ClientIp,
            DenyReason::UserAgent,
            DenyReason::EmptyUserAgent,
        ] {
            self.edge_denied.with_label_values(&[r.as_str()]);
        }
        for k in [LimitKind::Global, LimitKind::ClientIp, LimitKind::User] {
            self.limited.with_label_values(&[k.as_str()]);
        }
        for result in ["allowed", "limited", "error"] {
            self.limits.shared_checks.with_label_values(&[result]);
        }
        for result in ["allowed", "limited"] {
            self.limits.fallbacks.with_label_values(&[result]);
        }
        for op in ["load", "save"] {
            for store in ["memory", "redis", "cluster"] {
                for reason in ["unavailable", "not_replicated", "corrupt"] {
                    self.dialog_errors.with_label_values(&[op, store, reason]);
                }
            }
        }
    }

    pub fn observe_request(&self, route: Route, status: u16, seconds: f64) {
        let buf = itoa_status(status);
        let status = std::str::from_utf8(&buf).unwrap_or("0");
        self.requests
            .with_label_values(&[route.as_str(), status])
            .inc();
        self.latency
            .with_label_values(&[route.as_str()])
            .observe(seconds);
    }

    pub fn answered(&self, source: Source, intent: Intent, handoff: Option<Handoff>) {
        self.answers[source as usize].inc();
        self.intents[source as usize][intent.index()].inc();
        if let Some(reason) = handoff {
            self.handoffs[reason as usize].inc();
        }
    }

    /// Answers so far for each intent, by source (`[rule, model, upstream, fallback]`, in
    /// [`Source::ALL`]'s order), for `GET /admin/intents`.
    pub fn intent_counts(&self) -> Vec<(Intent, [u64; 4])> {
        Intent::ALL
            .iter()
            .map(|&intent| {
                let mut by_source = [0u64; 4];
                for (slot, counters) in by_source.iter_mut().zip(&self.intents) {
                    *slot = counters[intent.index()].get();
                }
                (intent, by_source)
            })
            .collect()
    }

    pub fn edge_denied(&self, reason: &str) {
        self.edge_denied.with_label_values(&[reason]).inc();
    }

    pub fn limited(&self, limit: &str) {
        self.limited.with_label_values(&[limit]).inc();
    }

    pub fn bad_request(&self, code: &str) {
        self.bad_requests.with_label_values(&[code]).inc();
    }

    /// One message through the model stage; `version` is empty when none answered.
    pub fn model_outcome(&self, outcome: &str, version: &str) {
        self.model_requests
            .with_label_values(&[outcome, version])
            .inc();
    }

    pub fn shadow(&self, intent: Intent, agree: bool, version: &str) {
        self.shadow
            .with_label_values(&[intent.as_str(), if agree { "yes" } else { "no" }, version])
            .inc();
    }

    pub fn dialog_error(&self, op: &str, store: &str, reason: &str) {
        self.dialog_errors
            .with_label_values(&[op, store, reason])
            .inc();
    }

    pub fn dialog_op(&self, op: &str, store: &str, seconds: f64) {
        self.dialog_seconds
            .with_label_values(&[op, store])
            .observe(seconds);
    }

    pub fn follow_up(&self, intent: Intent) {
        self.follow_ups.with_label_values(&[intent.as_str()]).inc();
    }

    pub fn upstream_failure(&self, pool: &str) {
        self.upstream_failures.with_label_values(&[pool]).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec only fails on metric families that cannot exist here.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Three ASCII digits of an HTTP status, without allocating.
fn itoa_status(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new().unwrap();
        m.observe_request(Route::Chat, 200, 0.0004);
        m.observe_request(Route::Chat, 429, 0.0001);
        m.answered(Source::Rule, Intent::Coupon, None);
        m.edge_denied("user_agent");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"kefu_http_requests_total{route="chat",status="200"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"kefu_http_requests_total{route="chat",status="429"} 1"#));
        assert!(text.contains(r#"kefu_chat_answers_total{source="rule"} 1"#));
        assert!(text.contains(r#"kefu_chat_intents_total{intent="coupon",source="rule"} 1"#));
        assert!(text.contains(r#"kefu_edge_denied_total{reason="user_agent"} 1"#));
        assert!(text.contains("kefu_http_request_duration_seconds_bucket"));
    }

    #[test]
    fn status_digits() {
        assert_eq!(&itoa_status(200), b"200");
        assert_eq!(&itoa_status(5), b"005");
    }
}
