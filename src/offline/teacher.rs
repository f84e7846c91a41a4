//! The served model as the router's teacher (knowledge distillation into the fast path).
//!
//! The router answers without the model, so its thresholds decide how much traffic the fast
//! path takes. It is fitted on labels, and the JDDC labels are noisy (a blind reader disagrees
//! with about a third of them); the model, distilled from a pre-trained encoder, has a view of
//! each message that is softer and often more right. With `TrainParams::teacher_weight` w a
//! training message's target is `(1 − w)·label + w·p_model(message)`; with
//! `teacher_unmapped` the JDDC questions that have no label of ours (in no split, so in no
//! evaluation) are fitted at the model's distribution alone, so the router also sees what
//! real messages outside its labels look like.
//!
//! The model is the one `model.yaml` serves, on each message alone (no previous turn).

use std::collections::HashMap;

use anyhow::Context;

use super::fit::Target;
use crate::config::ModelConfig;
use crate::intent::Intent;
use crate::model::{BatchMetrics, ModelInput, ModelStage};

/// Masses below this are dropped from a target (and the rest scaled back to 1): they carry
/// nothing the fit could use and would make every target as long as the intent list.
const MIN_MASS: f64 = 1e-3;

/// The served model's distribution for each message it was asked about.
pub struct Teacher {
    /// Indexed by [`Intent::index`].
    probs: HashMap<String, Vec<f32>>,
    /// The model's version and the sha256 of its file, for the router's manifest.
    pub model: String,
}

impl Teacher {
    /// Ask the model `cfg` serves about every text of `texts`.
    pub fn label<'a>(
        cfg: &ModelConfig,
        texts: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Teacher> {
        // Training loads model.yaml with the stage off (`Config::load_for_training`).
        let cfg = ModelConfig {
            enabled: true,
            ..cfg.clone()
        };
        let stage = ModelStage::start(&cfg, BatchMetrics::unregistered())
            .map_err(|e| anyhow::anyhow!("the teacher (model stage): {e}"))?;
        let model = stage
            .deployment()
            .map(|d| format!("{} {}", d.active.name, d.active.model_sha256))
            .context("the teacher: no model version is served (model.yaml)")?;
        let mut probs = HashMap::new();
        for text in texts {
            if probs.contains_key(text) {
                continue;
            }
            let p = stage
                .classify_blocking(ModelInput::alone(text))
                .map_err(|e| anyhow::anyhow!("the teacher on `{text}`: {e}"))?;
            probs.insert(text.to_owned(), p.probs);
        }
        Ok(Teacher { probs, model })
    }

    /// A teacher that answers `probs` (by [`Intent::index`]) for each text (tests).
    #[cfg(test)]
    pub fn from_probs(probs: HashMap<String, Vec<f32>>) -> Teacher {
        Teacher {
            probs,
            model: "test".into(),
        }
    }

    /// The target of `text`: its label `gold` mixed with the model's distribution at
    /// `weight`, or the model's alone without a label. `None` when the model was not asked.
    pub fn target(&self, text: &str, gold: Option<Intent>, weight: f64) -> Option<Target> {
        let probs = self.probs.get(text)?;
        let weight = if gold.is_some() { weight } else { 1.0 };
        let mut mass = vec![0.0f64; Intent::ALL.len()];
        for (m, &p) in mass.iter_mut().zip(probs) {
            *m = weight * f64::from(p);
        }
        if let Some(g) = gold {
            mass[g.index()] += 1.0 - weight;
        }
        Some(normalised(&mass))
    }
}

/// `(intent, mass)` for the masses of at least [`MIN_MASS`], scaled to sum to 1.
fn normalised(mass: &[f64]) -> Target {
    let kept: Target = Intent::ALL
        .iter()
        .zip(mass)
        .filter(|&(_, &m)| m >= MIN_MASS)
        .map(|(&i, &m)| (i, m))
        .collect();
    let total: f64 = kept.iter().map(|(_, m)| m).sum();
    kept.into_iter().map(|(i, m)| (i, m / total)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn teacher(text: &str, pairs: &[(Intent, f32)]) -> Teacher {
        let mut p = vec![0.0f32; Intent::ALL.len()];
        for &(i, v) in pairs {
            p[i.index()] = v;
        }
        Teacher::from_probs(HashMap::from([(text.to_owned(), p)]))
    }

    fn mass(t: &Target, i: Intent) -> f64 {
        t.iter().find(|(j, _)| *j == i).map_or(0.0, |(_, m)| *m)
    }

    #[test]
    fn a_label_is_mixed_with_the_model_at_the_weight() {
        let t = teacher(
            "钱退到哪",
            &[(Intent::RefundProgress, 0.8), (Intent::RefundApply, 0.2)],
        );
        let target = t
            .target("钱退到哪", Some(Intent::RefundApply), 0.5)
            .unwrap();
        assert!((mass(&target, Intent::RefundApply) - 0.6).abs() < 1e-6);
        assert!((mass(&target, Intent::RefundProgress) - 0.4).abs() < 1e-6);
        let sum: f64 = target.iter().map(|(_, m)| m).sum();
        assert!((sum - 1.0).abs() < 1e-9);
        // Weight 0 is the label alone.
        let target = t.target("钱退到哪", Some(Intent::Coupon), 0.0).unwrap();
        assert_eq!(target, vec![(Intent::Coupon, 1.0)]);
    }

    #[test]
    fn without_a_label_the_model_alone_and_tiny_masses_dropped() {
        let t = teacher(
            "在吗",
            &[(Intent::Greeting, 0.9995), (Intent::Other, 0.0005)],
        );
        let target = t.target("在吗", None, 0.3).unwrap();
        assert_eq!(target, vec![(Intent::Greeting, 1.0)]);
        assert!(t.target("没问过", None, 0.3).is_none());
    }
}
