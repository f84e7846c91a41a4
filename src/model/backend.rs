//! The model backend: an ONNX Runtime session that turns a padded batch of token ids into
//! logits. It knows nothing of queues or requests (the `batcher` does); tests replace it
//! with a fake through the [`Backend`] trait.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::ep;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::ModelError;
use crate::config::{Provider, RuntimeConfig};

/// Token ids and attention mask of a batch, `batch x seq`, row-major, padded to the longest
/// sequence with id 0 and mask 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PaddedBatch {
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
    pub batch: usize,
    pub seq: usize,
}

impl PaddedBatch {
    pub fn new(sequences: &[Vec<u32>]) -> PaddedBatch {
        let seq = sequences.iter().map(Vec::len).max().unwrap_or(0);
        let batch = sequences.len();
        let mut ids = vec![0i64; batch * seq];
        let mut mask = vec![0i64; batch * seq];
        for (row, s) in sequences.iter().enumerate() {
            for (col, id) in s.iter().enumerate() {
                ids[row * seq + col] = i64::from(*id);
                mask[row * seq + col] = 1;
            }
        }
        PaddedBatch {
            ids,
            mask,
            batch,
            seq,
        }
    }
}

/// What runs a batch. `Send`: each inference thread owns one.
pub trait Backend: Send {
    /// Logits, `batch x labels` row-major.
    fn run(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, ModelError>;
}

/// ONNX Runtime for this process: the shared library is loaded once (ort keeps it for the
/// life of the process, so changing `runtime.library` needs a restart) and one environment
/// makes every session. The other runtime settings are per session: a reload that changes
/// them builds new sessions with them.
pub struct Runtime {
    env: Environment,
    library: PathBuf,
}

impl Runtime {
    fn load(cfg: &RuntimeConfig) -> Result<Runtime, ModelError> {
        // ort panics at first use when the library is missing rather than returning an
        // error, so check before it is asked.
        if !cfg.library.is_file() {
            return Err(ModelError::Load(format!(
                "ONNX Runtime library `{}` not found (scripts/setup.sh installs it; ORT_DYLIB_PATH overrides)",
                cfg.library.display()
            )));
        }
        let env = ort::init_from(&cfg.library)
            .map_err(|e| ModelError::Load(format!("{}: {e}", cfg.library.display())))?
            .with_name("kefu-edge")
            .build()
            .map_err(|e| ModelError::Load(format!("ONNX Runtime environment: {e}")))?;
        Ok(Runtime {
            env,
            library: cfg.library.clone(),
        })
    }

    /// The process's runtime, loaded on first use. ONNX Runtime allows one environment per
    /// process, so every model stage (and every test in one binary) shares it.
    pub fn process(cfg: &RuntimeConfig) -> Result<Arc<Runtime>, ModelError> {
        static PROCESS: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);
        let mut slot = PROCESS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rt) = slot.as_ref() {
            if rt.library != cfg.library {
                log::warn!(
                    "runtime.library changed to {}: ONNX Runtime stays {} until a restart",
                    cfg.library.display(),
                    rt.library.display()
                );
            }
            return Ok(Arc::clone(rt));
        }
        let rt = Arc::new(Runtime::load(cfg)?);
        *slot = Some(Arc::clone(&rt));
        Ok(rt)
    }

    /// A session of `model` on the configured execution provider. CUDA must work when it
    /// is asked for: a silent fall back to the CPU would hide a broken GPU set-up.
    pub fn session(&self, model: &Path, cfg: &RuntimeConfig) -> Result<OrtBackend, ModelError> {
        let err =
            |what: &str, e: String| ModelError::Load(format!("{}: {what}: {e}", model.display()));
        let mut builder = Session::builder(&self.env)
            .map_err(|e| err("session", e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| err("optimisation level", e.to_string()))?
            .with_intra_threads(cfg.intra_threads)
            .map_err(|e| err("threads", e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| err("threads", e.to_string()))?;
        if cfg.provider == Provider::Cuda {
            builder = builder
                .with_execution_providers([ep::CUDA::default()
                    .with_device_id(cfg.cuda_device)
                    .build()
                    .error_on_failure()])
                .map_err(|e| err("CUDA execution provider", e.to_string()))?;
        }
        let session = builder
            .commit_from_file(model)
            .map_err(|e| err("load", e.to_string()))?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if names != ["input_ids", "attention_mask"] {
            return Err(err(
                "inputs",
                format!("expected [input_ids, attention_mask], found {names:?}"),
            ));
        }
        Ok(OrtBackend { session })
    }
}

pub struct OrtBackend {
    session: Session,
}

impl Backend for OrtBackend {
    fn run(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, ModelError> {
        let shape = [batch.batch, batch.seq];
        let fail = |e: ort::Error| ModelError::Inference(e.to_string());
        let ids = TensorRef::from_array_view((shape, batch.ids.as_slice())).map_err(fail)?;
        let mask = TensorRef::from_array_view((shape, batch.mask.as_slice())).map_err(fail)?;
        let outputs = self
            .session
            .run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])
            .map_err(fail)?;
        let (out_shape, logits) = outputs["logits"]
            .try_extract_tensor::<f32>()
            .map_err(fail)?;
        if out_shape.first().copied() != Some(batch.batch as i64) {
            return Err(ModelError::Inference(format!(
                "logits of shape {out_shape:?} for a batch of {}",
                batch.batch
            )));
        }
        Ok(logits.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_pad_to_the_longest_sequence() {
        let b = PaddedBatch::new(&[vec![2, 7, 3], vec![2, 3]]);
        assert_eq!((b.batch, b.seq), (2, 3));
        assert_eq!(b.ids, vec![2, 7, 3, 2, 3, 0]);
        assert_eq!(b.mask, vec![1, 1, 1, 1, 1, 0]);
    }
}
