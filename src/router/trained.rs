//! The trained router: a supervised fastText model (the pure-Rust `fasttext` crate) over the
//! tokens of `features`, with every label mapped to an intent id at load time.

use std::cell::RefCell;
use std::sync::Arc;

use anyhow::Context;
use fasttext::FastText;
use fasttext::matrix::Matrix;

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
    /// Label index → intent, resolved once.
    labels: Vec<Intent>,
    eos: Option<i32>,
}

/// Per-thread buffers, so a classification allocates nothing of its own.
#[derive(Default)]
struct Scratch {
    tokens: String,
    words: Vec<i32>,
    labels: Vec<i32>,
    hidden: Vec<f32>,
    scores: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

pub const LABEL_PREFIX: &str = "__label__";

impl TrainedRouter {
    /// Wrap a trained model. Quantized models are refused: the forward pass below reads the
    /// dense matrices (a 32-wide model with 20k buckets is under 3 MB anyway).
    pub fn from_model(model: FastText) -> anyhow::Result<TrainedRouter> {
        anyhow::ensure!(
            !model.is_quant(),
            "quantized router models are not supported"
        );
        let (names, _) = model.get_labels();
        anyhow::ensure!(!names.is_empty(), "router model has no labels");
        let labels = names
            .iter()
            .map(|label| {
                let id = label.strip_prefix(LABEL_PREFIX).unwrap_or(label);
                id.parse::<Intent>()
                    .with_context(|| format!("router model label `{label}`"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(
            model.output_matrix().rows() as usize == labels.len(),
            "router model output rows do not match its labels"
        );
        let eos = model.dict().get_id(fasttext::dictionary::EOS);
        Ok(TrainedRouter { model, labels, eos })
    }

    /// The most probable intent of `message` (`None` for a message without any token).
    ///
    /// fastText's supervised forward pass, done here on the model's matrices: the average of
    /// the input rows of the message's tokens and token bigrams (and end-of-sentence, as
    /// fastText's own prediction does), one dot product per label, softmax.
    pub fn classify(&self, message: &str) -> Option<RouterGuess> {
        SCRATCH.with(|cell| {
            let mut s = cell.borrow_mut();
            let s = &mut *s;
            s.tokens.clear();
            features::tokens_into(message, &mut s.tokens);
            self.model
                .dict()
                .get_line_from_str(&s.tokens, &mut s.words, &mut s.labels);
            if s.words.is_empty() {
                return None;
            }
            if let Some(eos) = self.eos {
                s.words.push(eos);
            }
            let input = self.model.input_matrix();
            let dim = input.cols() as usize;
            s.hidden.clear();
            s.hidden.resize(dim, 0.0);
            for &id in &s.words {
                for (h, v) in s.hidden.iter_mut().zip(input.row(i64::from(id))) {
                    *h += v;
                }
            }
            let scale = 1.0 / s.words.len() as f32;
            s.hidden.iter_mut().for_each(|h| *h *= scale);
            let output = self.model.output_matrix();
            s.scores.clear();
            s.scores.extend((0..self.labels.len()).map(|j| {
                output
                    .row(j as i64)
                    .iter()
                    .zip(&s.hidden)
                    .map(|(w, h)| w * h)
                    .sum::<f32>()
            }));
            let max = s.scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0.0f32;
            let mut best = (0usize, f32::NEG_INFINITY);
            for (j, score) in s.scores.iter_mut().enumerate() {
                if *score > best.1 {
                    best = (j, *score);
                }
                *score = (*score - max).exp();
                total += *score;
            }
            let prob = (s.scores[best.0] / total).clamp(0.0, 1.0);
            Some(RouterGuess {
                intent: self.labels[best.0],
                prob,
            })
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written forward pass gives what the crate's own `predict` gives.
    #[test]
    fn forward_pass_matches_fasttext_predict() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/router_fixture");
        let examples = crate::router::corpus::load_authored(&dir).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let params = crate::router::manifest::TrainParams {
            dim: 16,
            epoch: 20,
            bucket: 10_000,
            ..Default::default()
        };
        let (bytes, _) =
            crate::router::train::train_model(&examples, &params, scratch.path()).unwrap();
        let model = FastText::load(&mut std::io::Cursor::new(&bytes)).unwrap();
        let reference = FastText::load(&mut std::io::Cursor::new(&bytes)).unwrap();
        let router = TrainedRouter::from_model(model).unwrap();
        for text in [
            "我要退款",
            "发票抬头",
            "在吗",
            "今天天气不错",
            "tk 123456 ?",
        ] {
            let ours = router.classify(text).unwrap();
            let theirs = reference.predict(&features::tokens(text), 1, 0.0);
            let id = theirs[0].label.strip_prefix(LABEL_PREFIX).unwrap();
            assert_eq!(ours.intent.as_str(), id, "{text}");
            assert!(
                (ours.prob - theirs[0].prob).abs() < 1e-4,
                "{text}: {} vs {}",
                ours.prob,
                theirs[0].prob
            );
        }
        assert_eq!(router.classify("，。！"), None);
    }
}
