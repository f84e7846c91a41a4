//! The remote backend: a version's model on a pool of KServe v2 / Triton inference servers,
//! spoken to with the open inference protocol over HTTP/JSON. The batcher, tokenizer,
//! deadline and fallback are the in-process backend's; each padded batch goes out as one
//! `POST /v2/models/{name}/infer` with the `input_ids` and `attention_mask` tensors.
//!
//! A server is asked only while it is ready: ready on `/v2/health/ready`, and serving the
//! version by name with the expected tensors (`/v2/models/{name}` metadata). Every server is
//! checked each `health_interval` by a thread that lives as long as the pool. Requests go
//! round robin over the ready servers; one that fails an infer request is taken out at once
//! (passive check) and the request is tried once more on the next ready one, so a server
//! that dies costs at most a slower answer or the fallback, never an error.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::ModelError;
use super::backend::{Backend, PaddedBatch};
use super::batcher::BatchMetrics;
use super::v2;
use crate::config::KserveConfig;

/// Answers larger than this are refused (a batch of 40 × 30 logits is ~1 KB of floats).
const MAX_ANSWER_BYTES: u64 = 4 << 20;

struct Server {
    base: String,
    infer_url: String,
    ready: AtomicBool,
    /// Why it is not ready, so that a change is logged once, not every check.
    last_problem: Mutex<Option<String>>,
}

/// The servers of one version and their readiness.
pub struct KservePool {
    version: String,
    model: String,
    labels: usize,
    servers: Vec<Server>,
    next: AtomicUsize,
    requests: AtomicUsize,
    /// The binary tensor extension rather than JSON lists.
    binary: bool,
    infer: ureq::Agent,
    health: ureq::Agent,
    metrics: BatchMetrics,
}

fn agent(timeout: Duration, servers: usize) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        // A private pool: no proxy from the environment.
        .proxy(None)
        .max_idle_connections(64.max(servers * 8))
        .max_idle_connections_per_host(8)
        .user_agent(concat!("kefu-edge/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl KservePool {
    /// The pool serving manifest version `version` with `labels` outputs. Every server is
    /// checked once before this returns; a thread then checks them every
    /// `health_interval` until the pool is dropped.
    pub fn start(
        cfg: &KserveConfig,
        version: &str,
        labels: usize,
        metrics: BatchMetrics,
    ) -> Arc<KservePool> {
        let model = cfg.model_for(version);
        let servers = cfg
            .endpoints
            .iter()
            .map(|base| Server {
                base: base.clone(),
                infer_url: format!("{base}/v2/models/{model}/infer"),
                ready: AtomicBool::new(false),
                last_problem: Mutex::new(None),
            })
            .collect::<Vec<_>>();
        let health_timeout = cfg.health_interval.min(Duration::from_secs(1));
        let pool = Arc::new(KservePool {
            version: version.to_owned(),
            model,
            labels,
            infer: agent(cfg.timeout, servers.len()),
            health: agent(health_timeout, servers.len()),
            servers,
            next: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            binary: cfg.binary_tensors,
            metrics,
        });
        pool.check_all();
        let weak = Arc::downgrade(&pool);
        let interval = cfg.health_interval;
        let spawned = std::thread::Builder::new()
            .name("kefu-kserve-health".into())
            .spawn(move || health_loop(&weak, interval));
        if let Err(e) = spawned {
            log::error!("kserve: cannot start the health-check thread: {e}");
        }
        pool
    }

    /// Servers ready now.
    pub fn ready(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| s.ready.load(Ordering::Acquire))
            .count()
    }

    fn check_all(&self) {
        for s in &self.servers {
            let result = self.check(s);
            self.set(s, result);
        }
    }

    /// Ready, and serving this version with the tensors the edge sends and reads.
    fn check(&self, s: &Server) -> Result<(), String> {
        let ready = self.get(&format!("{}/v2/health/ready", s.base))?;
        if ready.0 != 200 {
            return Err(format!("/v2/health/ready answered {}", ready.0));
        }
        let (status, body) = self.get(&format!("{}/v2/models/{}", s.base, self.model))?;
        if status != 200 {
            return Err(format!("model {} not served ({status})", self.model));
        }
        let meta: Metadata =
            serde_json::from_slice(&body).map_err(|e| format!("model metadata: {e}"))?;
        meta.check(&self.model, self.labels)
    }

    fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        let mut answer = self.health.get(url).call().map_err(|e| e.to_string())?;
        Ok((answer.status().as_u16(), read_capped(&mut answer)?))
    }

    fn set(&self, s: &Server, result: Result<(), String>) {
        let mut last = s.last_problem.lock().unwrap_or_else(|e| e.into_inner());
        let was_ready = s.ready.swap(result.is_ok(), Ordering::AcqRel);
        self.metrics
            .remote_ready
            .with_label_values(&[self.version.as_str(), s.base.as_str()])
            .set(i64::from(result.is_ok()));
        match result {
            Ok(()) if !was_ready => {
                log::info!("kserve: {} serves {}: ready", s.base, self.model);
                *last = None;
            }
            Ok(()) => {}
            Err(problem) => {
                if was_ready || last.as_deref() != Some(problem.as_str()) {
                    log::warn!("kserve: {} not ready: {problem}", s.base);
                }
                *last = Some(problem);
            }
        }
    }

    /// The next ready server after the last one asked.
    fn pick(&self) -> Option<&Server> {
        let n = self.servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.servers[(start + i) % n])
            .find(|s| s.ready.load(Ordering::Acquire))
    }

    /// Logits of `batch`, `batch x labels`, from the next ready server, or from the one
    /// after it when that fails.
    pub fn infer(&self, batch: &PaddedBatch) -> Result<Vec<f32>, ModelError> {
        let id = self.requests.fetch_add(1, Ordering::Relaxed).to_string();
        let request = v2::encode_request(&id, batch, self.binary)
            .map_err(|e| ModelError::Inference(format!("kserve request: {e}")))?;
        let mut problem = String::from("no inference server ready");
        for _ in 0..2 {
            let Some(server) = self.pick() else { break };
            match self.post(server, &request, batch.batch) {
                Ok(logits) => return Ok(logits),
                Err(e) => {
                    self.metrics
                        .remote_failures
                        .with_label_values(&[server.base.as_str()])
                        .inc();
                    problem = format!("{}: {e}", server.base);
                    self.set(server, Err(format!("infer failed: {e}")));
                }
            }
        }
        Err(ModelError::Inference(format!("kserve: {problem}")))
    }

    fn post(&self, s: &Server, request: &v2::Request, rows: usize) -> Result<Vec<f32>, String> {
        let mut post = self.infer.post(&s.infer_url);
        post = match request.header_len {
            Some(n) => post
                .header("content-type", "application/octet-stream")
                .header(v2::HEADER_LENGTH, n.to_string()),
            None => post.header("content-type", "application/json"),
        };
        let mut answer = post.send(&request.body[..]).map_err(|e| e.to_string())?;
        let status = answer.status().as_u16();
        let header_len = answer
            .headers()
            .get(v2::HEADER_LENGTH)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|e| format!("{}: {e}", v2::HEADER_LENGTH))
            })
            .transpose()?;
        let bytes = read_capped(&mut answer)?;
        if status != 200 {
            let text = String::from_utf8_lossy(&bytes);
            return Err(format!(
                "status {status}: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
        v2::decode_answer(&bytes, header_len, rows, self.labels)
    }
}

impl Drop for KservePool {
    /// A version let go leaves no readiness behind in the metrics.
    fn drop(&mut self) {
        for s in &self.servers {
            let labels = [self.version.as_str(), s.base.as_str()];
            let _ = self.metrics.remote_ready.remove_label_values(&labels);
        }
    }
}

/// An answer's body, refused past [`MAX_ANSWER_BYTES`].
fn read_capped(answer: &mut http::Response<ureq::Body>) -> Result<Vec<u8>, String> {
    answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| e.to_string())
}

fn health_loop(pool: &Weak<KservePool>, interval: Duration) {
    let step = Duration::from_millis(50).min(interval);
    let mut next = Instant::now() + interval;
    loop {
        std::thread::sleep(step);
        // The pool's version was let go: its last backend is gone.
        let Some(pool) = pool.upgrade() else { return };
        if Instant::now() >= next {
            pool.check_all();
            next = Instant::now() + interval;
        }
    }
}

/// What runs a batch on the pool: one per inference thread, all sharing the pool.
pub struct KserveBackend {
    pool: Arc<KservePool>,
}

impl KserveBackend {
    pub fn new(pool: Arc<KservePool>) -> KserveBackend {
        KserveBackend { pool }
    }
}

impl Backend for KserveBackend {
    fn run(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, ModelError> {
        self.pool.infer(batch)
    }
}

#[derive(Deserialize)]
struct TensorMeta {
    name: String,
    datatype: String,
    #[serde(default)]
    shape: Vec<i64>,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    inputs: Vec<TensorMeta>,
    #[serde(default)]
    outputs: Vec<TensorMeta>,
}

impl Metadata {
    /// The version's name, both inputs as INT64, and FP32 logits of `labels` columns (or
    /// of a variable number).
    fn check(&self, model: &str, labels: usize) -> Result<(), String> {
        if self.name != model {
            return Err(format!("metadata names model {}, not {model}", self.name));
        }
        for input in ["input_ids", "attention_mask"] {
            match self.inputs.iter().find(|t| t.name == input) {
                Some(t) if t.datatype == "INT64" => {}
                Some(t) => return Err(format!("input {input} is {}, not INT64", t.datatype)),
                None => return Err(format!("no input {input}")),
            }
        }
        let Some(out) = self.outputs.iter().find(|t| t.name == "logits") else {
            return Err("no output logits".into());
        };
        let columns = out.shape.last().copied().unwrap_or(-1);
        if out.datatype != "FP32" || (columns != -1 && columns != labels as i64) {
            return Err(format!(
                "output logits {} {:?}, expected FP32 [-1, {labels}]",
                out.datatype, out.shape
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_must_name_the_version_and_its_tensors() {
        let meta = |name: &str, out: &str| -> Metadata {
            serde_json::from_str(&format!(
                r#"{{"name":"{name}","versions":["1"],"platform":"onnxruntime_onnx",
                "inputs":[{{"name":"input_ids","datatype":"INT64","shape":[-1,-1]}},
                          {{"name":"attention_mask","datatype":"INT64","shape":[-1,-1]}}],
                "outputs":[{{"name":"logits","datatype":"{out}","shape":[-1,30]}}]}}"#
            ))
            .unwrap()
        };
        assert!(
            meta("kefu-intent-v2", "FP32")
                .check("kefu-intent-v2", 30)
                .is_ok()
        );
        let other = meta("kefu-intent-v1", "FP32").check("kefu-intent-v2", 30);
        assert!(other.unwrap_err().contains("kefu-intent-v1"));
        assert!(
            meta("kefu-intent-v2", "FP32")
                .check("kefu-intent-v2", 31)
                .is_err()
        );
        assert!(
            meta("kefu-intent-v2", "FP16")
                .check("kefu-intent-v2", 30)
                .is_err()
        );
    }

    #[test]
    fn a_pool_with_no_server_ready_fails_fast() {
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        let cfg = KserveConfig {
            endpoints: vec!["http://127.0.0.1:9".into()],
            model_name: "kefu-intent-{version}".into(),
            timeout: Duration::from_millis(100),
            health_interval: Duration::from_millis(100),
            binary_tensors: true,
        };
        let pool = KservePool::start(&cfg, "v2", 30, BatchMetrics::unregistered());
        assert_eq!(pool.ready(), 0);
        let started = Instant::now();
        let err = pool.infer(&PaddedBatch::new(&[vec![0, 2]])).unwrap_err();
        assert!(
            err.to_string().contains("no inference server ready"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}
