//! The trained router: a supervised fastText model (the pure-Rust `fasttext` crate) over the
//! tokens of `features`, with every label mapped to an intent id at load time.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use fasttext::FastText;

use super::features;
use super::manifest::Manifest;
use crate::config::RouterConfig;
use crate::intent::Intent;

/// The router's best guess for one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouterGuess {
    pub intent: Intent,
    /// Softmax probability of `intent`.
    pub prob: f32,
}

pub struct TrainedRouter {
    model: FastText,
}

pub const LABEL_PREFIX: &str = "__label__";

impl TrainedRouter {
    /// Load a model file; every label must be an intent id.
    pub fn load(path: &Path) -> anyhow::Result<TrainedRouter> {
        let model = FastText::load_model(path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("loading router model {}", path.display()))?;
        Self::from_model(model)
    }

    pub fn from_model(model: FastText) -> anyhow::Result<TrainedRouter> {
        let (labels, _) = model.get_labels();
        anyhow::ensure!(!labels.is_empty(), "router model has no labels");
        for label in &labels {
            let id = label.strip_prefix(LABEL_PREFIX).unwrap_or(label);
            id.parse::<Intent>()
                .with_context(|| format!("router model label `{label}`"))?;
        }
        Ok(TrainedRouter { model })
    }

    /// The most probable intent of `message` (`None` for a message without any token).
    pub fn classify(&self, message: &str) -> Option<RouterGuess> {
        let tokens = features::tokens(message);
        let best = self.model.predict(&tokens, 1, 0.0).into_iter().next()?;
        let id = best.label.strip_prefix(LABEL_PREFIX).unwrap_or(&best.label);
        Some(RouterGuess {
            intent: id.parse().ok()?,
            // exp(log p) of a quantized model can land a hair above 1.
            prob: best.prob.clamp(0.0, 1.0),
        })
    }

    pub fn model(&self) -> &FastText {
        &self.model
    }
}

/// A router as configured: the verified model, its manifest and the resolved thresholds.
pub struct RouterModel {
    pub router: Arc<TrainedRouter>,
    pub manifest: Manifest,
    /// Per intent (`Intent::index()`): the probability a fast answer needs.
    thresholds: Vec<f32>,
}

impl RouterModel {
    /// Load and check a router: the manifest, the model file against the manifest's hash, the
    /// quality gate, then the model itself. A model with the same hash as `previous` is not
    /// loaded again.
    pub fn load(cfg: &RouterConfig, previous: Option<&RouterModel>) -> anyhow::Result<RouterModel> {
        let manifest = Manifest::read(&cfg.manifest)?;
        let bytes = std::fs::read(&cfg.model)
            .with_context(|| format!("reading {}", cfg.model.display()))?;
        manifest
            .verify_model(&bytes)
            .with_context(|| format!("{}", cfg.model.display()))?;
        manifest.check_gate(&cfg.quality_gate).with_context(|| {
            format!(
                "{}: refused by router.yaml quality_gate",
                cfg.manifest.display()
            )
        })?;
        let router = match previous {
            Some(p) if p.manifest.model_sha256 == manifest.model_sha256 => Arc::clone(&p.router),
            _ => {
                let model = FastText::load(&mut std::io::Cursor::new(&bytes))
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("loading router model {}", cfg.model.display()))?;
                Arc::new(TrainedRouter::from_model(model)?)
            }
        };
        let global = cfg.threshold.unwrap_or(manifest.thresholds.global);
        let thresholds = Intent::ALL
            .iter()
            .map(|i| {
                cfg.thresholds
                    .get(i)
                    .copied()
                    .unwrap_or_else(|| match cfg.threshold {
                        Some(fixed) => fixed,
                        None => manifest
                            .thresholds
                            .per_intent
                            .get(i)
                            .copied()
                            .unwrap_or(global),
                    })
            })
            .collect();
        Ok(RouterModel {
            router,
            manifest,
            thresholds,
        })
    }

    /// The probability `intent` needs to be answered by the fast path.
    pub fn threshold(&self, intent: Intent) -> f32 {
        self.thresholds[intent.index()]
    }
}
