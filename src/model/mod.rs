//! The model stage: messages the fast path does not answer go to a distilled transformer
//! classifier (ONNX Runtime) behind a dynamic batcher.
//!
//! Split as text-embeddings-inference splits its router and backends: `version` opens and
//! checks a model directory, `backend` runs a padded batch, `batcher` queues and groups
//! requests on dedicated threads (`shed` sheds what would only wait), `kserve` runs a batch on
//! a pool of KServe v2 / Triton servers instead, and `deploy` holds the serving versions
//! (active, gray candidate) and swaps them without dropping a request.

pub mod backend;
pub mod batcher;
pub mod deploy;
pub mod kserve;
pub mod shed;
pub mod v2;
pub mod version;

pub use backend::{Backend, OrtBackend, PaddedBatch, Runtime};
pub use batcher::{BatchMetrics, Batcher, Pending, Prediction};
pub use deploy::{Deployment, ModelStage, ServedBy};
pub use version::{ModelInput, ModelVersion, TextEncoder};

/// Why the model gave no answer. On a request path every one of these ends in the fallback
/// reply, never an error status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("model stage disabled")]
    Disabled,
    #[error("model queue full")]
    Overloaded,
    #[error("model queue wait expected beyond batch.shed_wait")]
    Shed,
    #[error("model deadline passed")]
    DeadlinePassed,
    #[error("model stopped")]
    Closed,
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("{0}")]
    Load(String),
}

impl ModelError {
    /// Label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelError::Disabled => "disabled",
            ModelError::Overloaded => "overloaded",
            ModelError::Shed => "shed",
            ModelError::DeadlinePassed => "deadline",
            ModelError::Closed => "closed",
            ModelError::Inference(_) => "error",
            ModelError::Load(_) => "load",
        }
    }
}
