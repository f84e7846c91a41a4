//! The admin listener (loopback by default): health, Prometheus metrics, reload status, and
//! a reload trigger for operators who prefer curl to `kill -HUP`.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::state::{ReloadStatus, Reloader};

pub struct AdminApp {
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<Metrics>,
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    pid: u32,
    version: &'a str,
    config: ReloadStatus,
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Vec<u8>> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    build(status, "application/json", body)
}

fn build(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let len = body.len();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, len)
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

impl AdminApp {
    fn health(&self) -> Response<Vec<u8>> {
        json_response(
            StatusCode::OK,
            &Health {
                status: "ok",
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION"),
                config: self.reloader.status(),
            },
        )
    }

    fn reload(&self) -> Response<Vec<u8>> {
        #[derive(Serialize)]
        struct Outcome {
            ok: bool,
            generation: Option<u64>,
            errors: Vec<String>,
        }
        match self.reloader.reload() {
            Ok(generation) => json_response(
                StatusCode::OK,
                &Outcome {
                    ok: true,
                    generation: Some(generation),
                    errors: vec![],
                },
            ),
            Err(errors) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &Outcome {
                    ok: false,
                    generation: None,
                    errors,
                },
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_owned();
        match (method, path.as_str()) {
            (Method::GET, "/healthz") => self.health(),
            (Method::GET, "/metrics") => build(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
            (Method::POST, "/reload") => {
                // Reloading reads files and compiles automata: keep it off the async worker.
                let reloader = Arc::clone(&self.reloader);
                let metrics = Arc::clone(&self.metrics);
                let app = AdminApp { reloader, metrics };
                tokio::task::spawn_blocking(move || app.reload())
                    .await
                    .unwrap_or_else(|_| {
                        build(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "text/plain",
                            b"reload panicked\n".to_vec(),
                        )
                    })
            }
            (_, "/healthz" | "/metrics" | "/reload") => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"error": {"code": "method_not_allowed", "message": "GET /healthz, GET /metrics, POST /reload"}}),
            ),
            _ => json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": {"code": "not_found", "message": "GET /healthz, GET /metrics, POST /reload"}}),
            ),
        }
    }
}
