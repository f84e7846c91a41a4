//! The admin listener (loopback by default): health, Prometheus metrics, reload status, and
//! a reload trigger for operators who prefer curl to `kill -HUP`. With `admin_token_file`
//! (required off loopback) every route but `GET /healthz` needs `Authorization: Bearer`.

mod model;
mod users;

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Serialize;

use crate::api::ApiError;
use crate::metrics::Metrics;
use crate::model::ModelStage;
use crate::model::deploy::{LoadReport, LoadedVersion};
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
    model: ModelStatus,
    dialog: DialogStatus,
}

/// Where dialogue state lives.
#[derive(Serialize)]
struct DialogStatus {
    enabled: bool,
    store: &'static str,
}

/// What the model stage serves, and how its last load went.
#[derive(Serialize)]
pub(crate) struct ModelStatus {
    active: Option<ServedVersion>,
    candidate: Option<ServedVersion>,
    gray_percent: u8,
    queued: usize,
    last_load: Option<LoadReport>,
}

#[derive(Serialize)]
struct ServedVersion {
    version: String,
    load_ms: u64,
}

impl ModelStatus {
    pub(crate) fn of(stage: &ModelStage) -> ModelStatus {
        let d = stage.deployment();
        let served = |v: &LoadedVersion| ServedVersion {
            version: v.name.clone(),
            load_ms: v.load_time.as_millis() as u64,
        };
        ModelStatus {
            active: d.as_ref().map(|d| served(&d.active)),
            candidate: d.as_ref().and_then(|d| d.candidate.as_deref().map(served)),
            gray_percent: d.as_ref().map_or(0, |d| d.gray_percent),
            queued: d.as_ref().map_or(0, |d| d.queued()),
            last_load: stage.last_load(),
        }
    }
}

/// The request body of an admin route, at most 4 KiB.
async fn read_small_body(session: &mut ServerSession) -> Result<Vec<u8>, ApiError> {
    const CAP: usize = 4096;
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > CAP {
                    return Err(ApiError::new(
                        413,
                        "body_too_large",
                        "admin bodies are at most 4 KiB",
                    ));
                }
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(ApiError::bad_request("bad_body", e.to_string())),
        }
    }
}

pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Vec<u8>> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    build(status, "application/json", body)
}

/// An error answer in the chat API's shape (`{"error":{"code","message"}}`).
pub(crate) fn error_response(e: &ApiError) -> Response<Vec<u8>> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    build(status, "application/json", e.to_json())
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
                model: ModelStatus::of(&self.reloader.model),
                dialog: {
                    let snapshot = self.reloader.current.load();
                    DialogStatus {
                        enabled: snapshot.dialog.enabled,
                        store: snapshot.dialog.store().kind().as_str(),
                    }
                },
            },
        )
    }

    /// Which configuration runs: version, generation, directory and its sha256.
    fn config(&self) -> Response<Vec<u8>> {
        let snapshot = self.reloader.current.load();
        json_response(
            StatusCode::OK,
            &serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "generation": snapshot.generation,
                "dir": snapshot.config.dir.display().to_string(),
                "sha256": snapshot.config.sha256,
            }),
        )
    }

    /// Answers per intent since start, by source.
    fn intents(&self) -> Response<Vec<u8>> {
        let mut body = serde_json::Map::new();
        for (intent, counts) in self.metrics.intent_counts() {
            let mut by_source = serde_json::Map::new();
            for (source, n) in crate::pipeline::Source::ALL.iter().zip(counts) {
                by_source.insert(source.as_str().to_owned(), n.into());
            }
            by_source.insert("total".into(), counts.iter().sum::<u64>().into());
            body.insert(intent.as_str().to_owned(), by_source.into());
        }
        json_response(StatusCode::OK, &body)
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
        // Every route but the health check needs the token, when one is configured.
        if !(method == Method::GET && path == "/healthz") {
            let snapshot = self.reloader.current.load();
            if let Some(token) = &snapshot.config.server.admin_token {
                let given = session
                    .req_header()
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .map(|v| v.as_bytes());
                if !token.admits(given) {
                    let e = ApiError::new(
                        401,
                        "unauthorized",
                        "this admin route needs `Authorization: Bearer <token>` (server.yaml admin_token_file)",
                    );
                    let mut r = error_response(&e);
                    r.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer"),
                    );
                    return r;
                }
            }
        }
        if let Some(user) = users::route(&path) {
            if method != Method::GET {
                return error_response(&ApiError::new(
                    405,
                    "method_not_allowed",
                    "GET /admin/users/{user_id}/latest?intent=<id>",
                ));
            }
            let query = session.req_header().uri.query().map(str::to_owned);
            let snapshot = self.reloader.current.load_full();
            return users::latest(&snapshot.dialog, user, query.as_deref()).await;
        }
        if let Some(route) = model::route(&path) {
            let body = match read_small_body(session).await {
                Ok(b) => b,
                Err(e) => return error_response(&e),
            };
            let reloader = Arc::clone(&self.reloader);
            // A step reloads the directory: off the async worker, like POST /reload.
            return tokio::task::spawn_blocking(move || {
                model::serve(&reloader, route, &method, &body)
            })
            .await
            .unwrap_or_else(|_| {
                build(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    b"model step panicked\n".to_vec(),
                )
            });
        }
        match (method, path.as_str()) {
            (Method::GET, "/healthz") => self.health(),
            (Method::GET, "/admin/config") => self.config(),
            (Method::GET, "/admin/intents") => self.intents(),
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
            (_, "/healthz" | "/metrics" | "/reload") => error_response(&ApiError::new(
                405,
                "method_not_allowed",
                "GET /healthz, GET /metrics, POST /reload",
            )),
            _ => error_response(&ApiError::new(
                404,
                "not_found",
                "GET /healthz, GET /metrics, POST /reload, GET /admin/config, GET /admin/intents, GET /admin/model, POST /admin/model/{promote,gray,rollback}, GET /admin/users/{user_id}/latest?intent=<id>",
            )),
        }
    }
}
