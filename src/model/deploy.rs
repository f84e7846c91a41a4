//! The serving versions: an active one and an optional candidate that a sticky share of
//! users (by hash of the user id) is sent to. A change of `model.yaml` is loaded and warmed
//! on a background thread, then published with one atomic store; requests hold the version
//! they started with, so the old one drains (its inference threads finish what is queued
//! and exit when the last holder lets go). A version that fails to load or to pass its
//! quality gate is refused and the current ones keep serving.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde::Serialize;

use super::ModelError;
use super::backend::{Backend, Runtime};
use super::batcher::{BatchMetrics, Batcher, Prediction};
use super::kserve::{KserveBackend, KservePool};
use super::version::{ModelInput, ModelVersion};
use crate::config::{BatchConfig, ModelBackend, ModelConfig, RuntimeConfig};
use crate::text::fnv1a;

/// A loaded, warmed version with its batcher.
pub struct LoadedVersion {
    pub name: String,
    /// sha256 of its model file (a version replaced in place is loaded again).
    pub model_sha256: String,
    pub batch: BatchConfig,
    /// Where its model runs (a reload that changes it builds the version again).
    pub backend: ModelBackend,
    /// Threads, priority and provider its sessions were made with (a reload that changes
    /// them builds the version again).
    pub runtime: RuntimeConfig,
    pub load_time: Duration,
    batcher: Batcher,
}

/// What serves now.
pub struct Deployment {
    pub active: Arc<LoadedVersion>,
    pub candidate: Option<Arc<LoadedVersion>>,
    pub gray_percent: u8,
    pub deadline: Duration,
}

/// Which version answered a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    pub version: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub at: String,
    pub ok: bool,
    pub versions: Vec<String>,
    pub load_ms: Vec<u64>,
    pub error: Option<String>,
}

pub struct ModelStage {
    current: ArcSwapOption<Deployment>,
    /// Serialises loads; holds the last one's report.
    last_load: Mutex<Option<LoadReport>>,
    metrics: BatchMetrics,
}

/// Messages a new version answers before it serves: the first inferences of an ONNX
/// Runtime session are slow (allocation, kernel choice), and a broken file shows here.
const WARM_UP: [&str; 4] = [
    "在吗",
    "我想退款",
    "这个什么时候发货呀，急用",
    "亲 帮我看下[订单x]到哪了",
];

impl ModelStage {
    /// A stage with nothing loaded: every request goes to the fallback.
    pub fn disabled(metrics: BatchMetrics) -> ModelStage {
        ModelStage {
            current: ArcSwapOption::empty(),
            last_load: Mutex::new(None),
            metrics,
        }
    }

    /// Load what `cfg` names, synchronously (at start: a model that cannot load is a
    /// configuration error, as nginx refuses to start on one).
    pub fn start(cfg: &ModelConfig, metrics: BatchMetrics) -> Result<ModelStage, ModelError> {
        let stage = ModelStage::disabled(metrics);
        if cfg.enabled {
            stage.load(cfg)?;
        }
        Ok(stage)
    }

    /// Apply a reloaded `model.yaml` on a background thread; returns at once.
    pub fn apply(self: &Arc<Self>, cfg: &ModelConfig) {
        let stage = Arc::clone(self);
        let cfg = cfg.clone();
        let spawned = std::thread::Builder::new()
            .name("kefu-model-load".into())
            .spawn(move || {
                if let Err(e) = stage.load(&cfg) {
                    log::error!("model stage: {e}; the current versions keep serving");
                }
            });
        if let Err(e) = spawned {
            log::error!("model stage: cannot start the loading thread: {e}");
        }
    }

    /// Build the deployment `cfg` describes, reusing loaded versions that did not change,
    /// and publish it.
    pub fn load(&self, cfg: &ModelConfig) -> Result<(), ModelError> {
        let mut report_slot = self.last_load.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = LoadReport {
            at: jiff::Timestamp::now().to_string(),
            ..LoadReport::default()
        };
        let result = self.build(cfg, &mut report).map(|deployment| {
            if deployment.is_some() {
                log::info!("model stage serving {}", report.versions.join(", "));
                self.metrics.swaps.inc();
            }
            self.current.store(deployment.map(Arc::new));
        });
        match &result {
            Ok(()) => report.ok = true,
            Err(e) => report.error = Some(e.to_string()),
        }
        *report_slot = Some(report);
        result
    }

    fn build(
        &self,
        cfg: &ModelConfig,
        report: &mut LoadReport,
    ) -> Result<Option<Deployment>, ModelError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let current = self.current.load_full();
        let mut loaded = |name: &str| -> Result<Arc<LoadedVersion>, ModelError> {
            let dir = cfg.version_dir(name);
            let sha = current_model_sha(&dir);
            let reusable = current.as_ref().and_then(|d| {
                std::iter::once(&d.active)
                    .chain(d.candidate.as_ref())
                    .find(|v| {
                        v.name == name
                            && v.batch == cfg.batch
                            && v.backend == cfg.backend
                            && v.runtime == cfg.runtime
                            && Some(&v.model_sha256) == sha.as_ref()
                    })
                    .cloned()
            });
            let v = match reusable {
                Some(v) => v,
                None => Arc::new(self.load_version(cfg, name)?),
            };
            report.versions.push(v.name.clone());
            report.load_ms.push(v.load_time.as_millis() as u64);
            Ok(v)
        };
        let active = loaded(&cfg.active)?;
        let candidate = cfg.candidate.as_deref().map(&mut loaded).transpose()?;
        Ok(Some(Deployment {
            active,
            candidate,
            gray_percent: cfg.gray_percent,
            deadline: cfg.deadline,
        }))
    }

    fn load_version(&self, cfg: &ModelConfig, name: &str) -> Result<LoadedVersion, ModelError> {
        let started = Instant::now();
        let version = ModelVersion::open(
            &cfg.version_dir(name),
            name,
            &cfg.quality_gate,
            cfg.batch.max_tokens,
        )?;
        let mut backends: Vec<Box<dyn Backend>> = Vec::new();
        // A remote pool with no server ready yet is not a load error (the edge must start
        // while its inference pool is down, as nginx starts with its upstreams down): its
        // requests get the fallback until a server passes the version check.
        let mut warm = true;
        match &cfg.backend {
            ModelBackend::Onnx => {
                let runtime = Runtime::process(&cfg.runtime)?;
                for _ in 0..cfg.runtime.inference_threads {
                    backends.push(Box::new(
                        runtime.session(&version.model_path(), &cfg.runtime)?,
                    ));
                }
            }
            ModelBackend::Kserve(k) => {
                let pool = KservePool::start(
                    k,
                    &version.manifest.version,
                    version.labels.len(),
                    self.metrics.clone(),
                );
                if pool.ready() == 0 {
                    log::warn!(
                        "model version {name}: no inference server ready yet; the fallback answers until one is"
                    );
                    warm = false;
                }
                for _ in 0..cfg.runtime.inference_threads {
                    backends.push(Box::new(KserveBackend::new(Arc::clone(&pool))));
                }
            }
        }
        let model_sha256 = version
            .manifest
            .files
            .get("model.onnx")
            .map(|f| f.sha256.clone())
            .unwrap_or_default();
        let batcher = Batcher::start(
            name,
            cfg.batch,
            Arc::new(version.encoder),
            version.labels.into(),
            backends,
            cfg.runtime.inference_nice,
            self.metrics.clone(),
        )?;
        if warm {
            for text in WARM_UP {
                batcher
                    .submit(ModelInput::alone(text), Duration::from_secs(30))?
                    .wait_blocking()
                    .map_err(|e| ModelError::Load(format!("version {name}: warm-up: {e}")))?;
            }
        }
        let load_time = started.elapsed();
        log::info!(
            "model version {name} loaded and warmed in {} ms",
            load_time.as_millis()
        );
        Ok(LoadedVersion {
            name: name.to_owned(),
            model_sha256,
            batch: cfg.batch,
            backend: cfg.backend.clone(),
            runtime: cfg.runtime.clone(),
            load_time,
            batcher,
        })
    }

    /// The deployment now serving, if any.
    pub fn deployment(&self) -> Option<Arc<Deployment>> {
        self.current.load_full()
    }

    pub fn last_load(&self) -> Option<LoadReport> {
        self.last_load
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Classify one message of `user_id` on the version that user is served by.
    pub async fn classify(
        &self,
        user_id: &str,
        input: ModelInput,
    ) -> Result<(Prediction, ServedBy), ModelError> {
        let d = self.current.load_full().ok_or(ModelError::Disabled)?;
        let version = d.pick(user_id);
        let pending = version.batcher.submit(input, d.deadline)?;
        let served = ServedBy {
            version: version.name.clone(),
        };
        // `d` (and so `version`) is held until the answer: a swap meanwhile drains it.
        let prediction = pending.wait().await?;
        Ok((prediction, served))
    }

    /// The same on a plain thread (the CLI), on the active version.
    pub fn classify_blocking(&self, input: ModelInput) -> Result<Prediction, ModelError> {
        let d = self.current.load_full().ok_or(ModelError::Disabled)?;
        d.active
            .batcher
            .submit(input, d.deadline.max(Duration::from_secs(10)))?
            .wait_blocking()
    }
}

impl Deployment {
    /// Sticky gray traffic: a user is in the candidate's share or not, whatever the request.
    pub fn pick(&self, user_id: &str) -> &Arc<LoadedVersion> {
        match &self.candidate {
            Some(c) if (fnv1a(user_id) % 100) < u64::from(self.gray_percent) => c,
            _ => &self.active,
        }
    }

    /// Requests waiting in the active version's queue.
    pub fn queued(&self) -> usize {
        self.active.batcher.queued()
    }
}

/// The sha256 the manifest of `dir` gives its model file, read fresh.
fn current_model_sha(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
    let m: super::version::VersionManifest = serde_json::from_str(&text).ok()?;
    m.files.get("model.onnx").map(|f| f.sha256.clone())
}
