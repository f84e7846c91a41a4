//! The manifest written next to a trained router model: what it was trained from, with which
//! parameters, the thresholds chosen on validation data, and its validation figures. The
//! server refuses a model whose file does not match the manifest's hash or whose figures are
//! below the configured quality gate.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::QualityGate;
use crate::intent::Intent;

/// How the router is fitted (`offline::fit`); the defaults are the shipped model's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// Hash buckets for token and token-pair features.
    pub buckets: u32,
    /// A bucket needs this many training messages to get a row.
    pub min_count: u32,
    /// Inverse L2 penalty (scikit-learn's `C`): larger fits the training data more closely.
    pub c: f64,
    /// L-BFGS stops at this many iterations or when the gradient norm is below `tolerance`.
    pub max_iters: u64,
    pub tolerance: f64,
    /// Share of each training message's target taken from the served model's distribution
    /// for it (`offline::teacher`); 0: the labels alone.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub teacher_weight: f64,
    /// Also fit the JDDC questions that have no kefu counterpart, at the served model's
    /// distribution (training part only: they are in no evaluation).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub teacher_unmapped: bool,
    /// How much a real (JDDC) training question counts against one of the project's corpus
    /// in the loss; 1: the same.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub jddc_weight: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            buckets: 1 << 18,
            min_count: 2,
            c: 50.0,
            max_iters: 1000,
            tolerance: 1e-4,
            teacher_weight: 0.0,
            teacher_unmapped: false,
            jddc_weight: 1.0,
        }
    }
}

/// The headline figures of the two-stage decision on one labelled split, as stored in a
/// manifest (measured offline by `offline::eval::Evaluation`; read here by the quality gate).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub examples: usize,
    pub accuracy: f64,
    pub fast_coverage: f64,
    pub fast_precision: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// The lowest probability at which a fast intent is answered from the rule cache.
    pub global: f32,
    /// Raised thresholds for intents that need them.
    pub per_intent: BTreeMap<Intent, f32>,
    /// How they were chosen, for people.
    pub method: String,
    /// Whether the global threshold meets every target (if not, it is the highest tried).
    #[serde(default)]
    pub targets_met: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub model_file: String,
    pub model_sha256: String,
    pub model_bytes: u64,
    /// sha256 of the training lines (`<intent>\t<tokens>`), in training order.
    pub corpus_sha256: String,
    /// Training / development / test examples by origin.
    pub examples: BTreeMap<String, usize>,
    pub params: TrainParams,
    pub thresholds: Thresholds,
    /// Two-stage decision figures on the development split (`authored`, `jddc`), where the
    /// thresholds were chosen: they flatter; the quality gate reads them.
    pub validation: BTreeMap<String, Metrics>,
    /// The same figures on the test split, which no choice touched: the ones to report.
    #[serde(default)]
    pub test: BTreeMap<String, Metrics>,
    pub trained_with: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Manifest {
    pub fn read(path: &Path) -> anyhow::Result<Manifest> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// The model file's bytes must be the ones this manifest describes.
    pub fn verify_model(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let actual = sha256_hex(bytes);
        anyhow::ensure!(
            actual == self.model_sha256,
            "model file sha256 {actual} does not match the manifest ({}): corrupted or from another training run",
            self.model_sha256
        );
        Ok(())
    }

    /// The authored validation figures must meet the gate.
    pub fn check_gate(&self, gate: &QualityGate) -> anyhow::Result<()> {
        let m = self
            .validation
            .get("authored")
            .context("manifest has no `authored` validation figures")?;
        for (name, value, floor) in [
            (
                "fast-path precision",
                m.fast_precision,
                gate.min_fast_precision,
            ),
            (
                "fast-path coverage",
                m.fast_coverage,
                gate.min_fast_coverage,
            ),
            ("accuracy", m.accuracy, gate.min_accuracy),
        ] {
            anyhow::ensure!(
                value >= floor,
                "validation {name} {value:.4} is below the quality gate {floor:.4}"
            );
        }
        Ok(())
    }
}
