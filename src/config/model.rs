//! `model.yaml`: the model stage behind the fast path. Which ONNX Runtime library and
//! execution provider, which model versions serve (an active one and an optional candidate
//! for gray traffic), how requests are batched, and when an answer is trusted.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::kserve::{self, BackendKind, ModelBackend, RawKserve};
use super::source::Source;

/// The environment variable that overrides `runtime.library` (ort's own convention).
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    #[serde(default = "yes")]
    enabled: bool,
    runtime: RawRuntime,
    #[serde(default)]
    backend: BackendKind,
    #[serde(default)]
    kserve: Option<RawKserve>,
    models_dir: PathBuf,
    active: String,
    #[serde(default)]
    candidate: Option<String>,
    #[serde(default)]
    gray_percent: u8,
    #[serde(default)]
    batch: BatchConfig,
    #[serde(default = "default_deadline", with = "humantime_serde")]
    deadline: Duration,
    #[serde(default = "default_threshold")]
    threshold: f32,
    #[serde(default = "default_router_weight")]
    router_weight: f32,
    #[serde(default)]
    router_weight_in_context: f32,
    #[serde(default)]
    topic_bonus: f32,
    #[serde(default)]
    quality_gate: ModelGate,
    #[serde(default)]
    shadow: ShadowConfig,
    #[serde(default)]
    answer_upstream: Option<AnswerUpstream>,
}

fn yes() -> bool {
    true
}

fn default_deadline() -> Duration {
    Duration::from_millis(200)
}

fn default_threshold() -> f32 {
    0.5
}

fn default_router_weight() -> f32 {
    0.5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    library: PathBuf,
    #[serde(default)]
    provider: Provider,
    #[serde(default)]
    cuda_device: i32,
    #[serde(default = "one")]
    intra_threads: usize,
    #[serde(default = "one")]
    inference_threads: usize,
    #[serde(default = "default_nice")]
    inference_nice: i32,
}

/// The lowest priority: measured on bench/shedding.sh, nice 10 still took time slices from
/// the proxy (rule-path p99 4.5x under a saturated model), 19 did not (1.2x), and the model
/// path's capacity was the same.
fn default_nice() -> i32 {
    19
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// `libonnxruntime.so`: from `ORT_DYLIB_PATH` if set, else `runtime.library`.
    pub library: PathBuf,
    pub provider: Provider,
    pub cuda_device: i32,
    /// ONNX Runtime threads per inference thread.
    pub intra_threads: usize,
    /// Dedicated inference threads per model version, each with its own session.
    pub inference_threads: usize,
    /// The inference threads' nice value (Linux, per thread): above the proxy's 0, so that
    /// a saturated model stage does not take the CPU from the rule path (0: unchanged).
    pub inference_nice: i32,
}

/// How the batcher groups requests.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch closes when it has this many requests...
    pub max_batch: usize,
    /// ...or when its first request has waited this long (only under load: a request that
    /// finds the model idle goes at once).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Requests waiting beyond this are answered by the fallback at once.
    pub queue: usize,
    /// A request that can expect to wait longer than this (or than its deadline, when that
    /// is shorter) behind the queue is answered by the fallback at once (load shedding;
    /// `0s`: only `queue` bounds the wait).
    #[serde(with = "humantime_serde")]
    pub shed_wait: Duration,
    /// Sequences are truncated to this many tokens ([CLS] and [SEP] included).
    pub max_tokens: usize,
    /// A closed batch is run as groups of similar length, each padded to at most this
    /// many times its real tokens (1: equal lengths only; a large value: one inference).
    pub max_padding: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch: 40,
            max_wait: Duration::from_millis(30),
            queue: 1024,
            shed_wait: Duration::from_millis(100),
            max_tokens: 128,
            max_padding: 1.25,
        }
    }
}

/// Floors on a version's manifest figures: a version below them is refused.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelGate {
    /// Model-alone accuracy on the authored validation split.
    pub min_accuracy: f64,
}

impl Default for ModelGate {
    fn default() -> Self {
        ModelGate { min_accuracy: 0.80 }
    }
}

/// Shadow scoring: a share of fast-path answers is also classified by the model, off the
/// request path, to see where the router and the model disagree.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    pub sample: f64,
}

/// The shop's own bot, asked what the model stage cannot answer from templates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerUpstream {
    /// A pool of upstreams.yaml.
    pub pool: String,
    /// `POST` here with `{"user_id","text","intent","confidence"}`; answers `{"reply"}`.
    pub path: String,
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_upstream_timeout() -> Duration {
    Duration::from_millis(800)
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub enabled: bool,
    pub runtime: RuntimeConfig,
    /// Where the versions' models run: here (ONNX Runtime) or on a KServe v2 pool.
    pub backend: ModelBackend,
    pub models_dir: PathBuf,
    pub active: String,
    pub candidate: Option<String>,
    pub gray_percent: u8,
    pub batch: BatchConfig,
    /// A request not answered by the model within this is answered by the fallback.
    pub deadline: Duration,
    /// The model's probability an answer needs; below it the message goes on (upstream or
    /// fallback).
    pub threshold: f32,
    /// Weight of the router's probabilities mixed with the model's (0: the model alone).
    pub router_weight: f32,
    /// The same for a message read with its previous turn: the router reads the text alone,
    /// which is what a follow-up does not mean (0, the default: the model alone).
    pub router_weight_in_context: f32,
    /// Log-odds added to the dialogue's topic for a message read with its previous turn
    /// (0: none): a follow-up on a real chat most often goes on with the topic.
    pub topic_bonus: f32,
    pub quality_gate: ModelGate,
    pub shadow: ShadowConfig,
    pub answer_upstream: Option<AnswerUpstream>,
}

impl ModelConfig {
    /// The directory of one version.
    pub fn version_dir(&self, version: &str) -> PathBuf {
        self.models_dir.join(version)
    }
}

fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && v != "."
        && v != ".."
}

pub fn validate(raw: RawModel, src: &Source) -> Result<ModelConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let library = match std::env::var_os(ORT_DYLIB_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => src.resolve(&raw.runtime.library),
    };
    let rt = &raw.runtime;
    if rt.intra_threads == 0 || rt.inference_threads == 0 {
        errors.push(src.error_at(
            "runtime",
            "runtime: intra_threads and inference_threads must be at least 1",
        ));
    }
    if !(0..=19).contains(&rt.inference_nice) {
        errors.push(src.error_at(
            "inference_nice",
            "runtime.inference_nice must be within 0..=19 (a thread may only lower its priority)",
        ));
    }
    let b = raw.batch;
    if b.max_batch == 0 || b.queue == 0 {
        errors.push(src.error_at("batch", "batch: max_batch and queue must be at least 1"));
    }
    if b.max_padding.is_nan() || b.max_padding < 1.0 {
        errors.push(src.error_at("max_padding", "batch.max_padding must be at least 1"));
    }
    if !(3..=512).contains(&b.max_tokens) {
        errors.push(src.error_at("max_tokens", "batch.max_tokens must be within 3..=512"));
    }
    if raw.deadline.is_zero() {
        errors.push(src.error_at("deadline", "deadline must be more than 0"));
    }
    if !(0.0..=1.0).contains(&raw.router_weight) {
        errors.push(src.error_at("router_weight", "router_weight must be within 0..=1"));
    }
    if !(0.0..=1.0).contains(&raw.router_weight_in_context) {
        errors.push(src.error_at(
            "router_weight_in_context",
            "router_weight_in_context must be within 0..=1",
        ));
    }
    if !(0.0..=10.0).contains(&raw.topic_bonus) {
        errors.push(src.error_at("topic_bonus", "topic_bonus must be within 0..=10"));
    }
    if !(0.0..=1.0).contains(&raw.threshold) {
        errors.push(src.error_at("threshold", "threshold must be within 0..=1"));
    }
    if !(0.0..=1.0).contains(&raw.quality_gate.min_accuracy) {
        errors.push(src.error_at(
            "min_accuracy",
            "quality_gate.min_accuracy must be within 0..=1",
        ));
    }
    if !(0.0..=1.0).contains(&raw.shadow.sample) {
        errors.push(src.error_at("sample", "shadow.sample must be within 0..=1"));
    }
    if let Some(up) = &raw.answer_upstream {
        if !up.path.starts_with('/') {
            errors.push(src.error_at("path", "answer_upstream.path must start with /"));
        }
        if up.timeout.is_zero() {
            errors.push(src.error_at("timeout", "answer_upstream.timeout must be more than 0"));
        }
    }
    if raw.gray_percent > 100 {
        errors.push(src.error_at("gray_percent", "gray_percent must be within 0..=100"));
    }
    let models_dir = src.resolve(&raw.models_dir);
    let versions = std::iter::once(("active", &raw.active))
        .chain(raw.candidate.as_ref().map(|c| ("candidate", c)));
    for (key, v) in versions {
        if !valid_version(v) {
            errors.push(src.error_at(
                key,
                format!("{key}: `{v}` is not a version name (letters, digits, . _ -)"),
            ));
        } else if raw.enabled && src.check_models && !models_dir.join(v).is_dir() {
            errors.push(src.error_at(
                key,
                format!("{key}: no directory `{}`", models_dir.join(v).display()),
            ));
        }
    }
    if raw.candidate.is_none() && raw.gray_percent > 0 {
        errors.push(src.error_at("gray_percent", "gray_percent needs a candidate"));
    }
    let backend = kserve::validate(raw.backend, raw.kserve, src, &mut errors);
    let onnx = backend == ModelBackend::Onnx;
    if raw.enabled && onnx && src.check_models && !library.is_file() {
        errors.push(src.error_at(
            "library",
            format!(
                "runtime.library: `{}` is not a readable file (scripts/setup.sh installs ONNX Runtime there; {ORT_DYLIB_ENV} overrides it)",
                library.display()
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ModelConfig {
        enabled: raw.enabled,
        runtime: RuntimeConfig {
            library,
            provider: rt.provider,
            cuda_device: rt.cuda_device,
            intra_threads: rt.intra_threads,
            inference_threads: rt.inference_threads,
            inference_nice: rt.inference_nice,
        },
        backend,
        models_dir,
        active: raw.active,
        candidate: raw.candidate,
        gray_percent: raw.gray_percent,
        batch: b,
        deadline: raw.deadline,
        threshold: raw.threshold,
        router_weight: raw.router_weight,
        router_weight_in_context: raw.router_weight_in_context,
        topic_bonus: raw.topic_bonus,
        quality_gate: raw.quality_gate,
        shadow: raw.shadow,
        answer_upstream: raw.answer_upstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str) -> Result<ModelConfig, Vec<ConfigError>> {
        let mut src = Source::from_text(Path::new("conf"), "model.yaml", text);
        src.check_models = false;
        let raw = src.parse().map_err(|e| vec![e])?;
        validate(raw, &src)
    }

    const MINIMAL: &str =
        "runtime: {library: lib/libonnxruntime.so}\nmodels_dir: ../models/intent\nactive: v1\n";

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = check(MINIMAL).unwrap();
        assert_eq!(c.batch.max_batch, 40);
        assert_eq!(c.batch.max_wait, Duration::from_millis(30));
        assert_eq!(c.runtime.provider, Provider::Cpu);
        assert_eq!(c.version_dir("v1"), Path::new("conf/../models/intent/v1"));
        assert_eq!(c.topic_bonus, 0.0, "no topic bonus unless asked for");
    }

    #[test]
    fn bad_values_are_reported_with_their_key() {
        let text = format!(
            "{MINIMAL}gray_percent: 10\nthreshold: 1.5\nbatch: {{max_batch: 0}}\nruntime2: 1\n"
        );
        assert!(check(&text).is_err(), "unknown key");
        let text = format!(
            "{MINIMAL}gray_percent: 10\nthreshold: 1.5\nbatch: {{max_batch: 0}}\ntopic_bonus: -1\n"
        );
        let errors = check(&text).unwrap_err();
        let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{all:?}");
        assert!(all.iter().any(|e| e.contains("topic_bonus must be")));
        assert!(all.iter().any(|e| e.contains("needs a candidate")));
        let bad = check(&MINIMAL.replace("active: v1", "active: ../x")).unwrap_err();
        assert!(bad[0].to_string().contains("not a version name"));
        let cuda = check(&MINIMAL.replace("}", ", provider: cuda}")).unwrap();
        assert_eq!(cuda.runtime.provider, Provider::Cuda);
    }

    #[test]
    fn a_kserve_backend_needs_its_section_and_the_section_its_backend() {
        let pool = "kserve: {endpoints: ['127.0.0.1:8500', 'http://10.0.0.2:8500/']}\n";
        let c = check(&format!("{MINIMAL}backend: kserve\n{pool}")).unwrap();
        let ModelBackend::Kserve(k) = &c.backend else {
            panic!("{:?}", c.backend)
        };
        assert_eq!(
            k.endpoints,
            ["http://127.0.0.1:8500", "http://10.0.0.2:8500"]
        );
        assert_eq!(k.timeout, Duration::from_millis(150));
        assert_eq!(check(MINIMAL).unwrap().backend, ModelBackend::Onnx);
        let lone = check(&format!("{MINIMAL}{pool}")).unwrap_err();
        assert!(
            lone[0].to_string().contains("needs backend: kserve"),
            "{lone:?}"
        );
        let bare = check(&format!("{MINIMAL}backend: kserve\n")).unwrap_err();
        assert!(bare[0].to_string().contains("needs a kserve section"));
        let bad = "backend: kserve\nkserve: {endpoints: ['https://a:1'], model_name: 'a b'}\n";
        let errors = check(&format!("{MINIMAL}{bad}")).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
