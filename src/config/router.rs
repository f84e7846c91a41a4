//! `router.yaml`: the trained router behind the operator keyword rules: which model, the
//! confidence a fast intent needs to be answered from the rule cache, and the quality gate a
//! model's validation figures must pass before it may serve.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::source::Source;
use crate::intent::{Intent, Tier};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouter {
    #[serde(default = "yes")]
    enabled: bool,
    model: PathBuf,
    manifest: Option<PathBuf>,
    #[serde(default)]
    threshold: RawThreshold,
    #[serde(default)]
    thresholds: BTreeMap<Intent, f32>,
    #[serde(default)]
    quality_gate: QualityGate,
}

fn yes() -> bool {
    true
}

/// `auto` (the manifest's thresholds, chosen on validation data) or a probability.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum RawThreshold {
    #[default]
    #[serde(skip)]
    Auto,
    Fixed(f32),
    Word(String),
}

/// Floors on the validation figures of the model's manifest (authored validation split).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityGate {
    pub min_fast_precision: f64,
    pub min_fast_coverage: f64,
    pub min_accuracy: f64,
}

impl Default for QualityGate {
    fn default() -> Self {
        QualityGate {
            min_fast_precision: 0.95,
            min_fast_coverage: 0.80,
            min_accuracy: 0.80,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    pub enabled: bool,
    pub model: PathBuf,
    pub manifest: PathBuf,
    /// `None`: use the thresholds of the manifest.
    pub threshold: Option<f32>,
    /// Per fast intent, overriding the global threshold.
    pub thresholds: BTreeMap<Intent, f32>,
    pub quality_gate: QualityGate,
}

pub fn validate(raw: RawRouter, src: &Source) -> Result<RouterConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let in_unit = |p: f32| (0.0..=1.0).contains(&p);
    let threshold = match raw.threshold {
        RawThreshold::Auto => None,
        RawThreshold::Word(w) if w == "auto" => None,
        RawThreshold::Word(w) => {
            errors.push(src.error_at(
                "threshold",
                format!("threshold must be `auto` or a probability, not `{w}`"),
            ));
            None
        }
        RawThreshold::Fixed(p) => {
            if !in_unit(p) {
                errors
                    .push(src.error_at("threshold", format!("threshold {p} is not within 0..=1")));
            }
            Some(p)
        }
    };
    for (intent, p) in &raw.thresholds {
        if intent.tier() != Tier::Fast {
            errors.push(src.error_at(
                intent.as_str(),
                format!("thresholds.{intent}: only fast intents are answered by the fast path"),
            ));
        }
        if !in_unit(*p) {
            errors.push(src.error_at(
                intent.as_str(),
                format!("thresholds.{intent}: {p} is not within 0..=1"),
            ));
        }
    }
    let g = raw.quality_gate;
    for (key, v) in [
        ("min_fast_precision", g.min_fast_precision),
        ("min_fast_coverage", g.min_fast_coverage),
        ("min_accuracy", g.min_accuracy),
    ] {
        if !(0.0..=1.0).contains(&v) {
            errors.push(src.error_at(key, format!("quality_gate.{key}: {v} is not within 0..=1")));
        }
    }
    let model = src.resolve(&raw.model);
    let manifest = match &raw.manifest {
        Some(m) => src.resolve(m),
        None => model.with_file_name("manifest.json"),
    };
    if raw.enabled && src.check_models {
        for (key, path) in [("model", &model), ("manifest", &manifest)] {
            if !path.is_file() {
                errors.push(src.error_at(
                    key,
                    format!("{key}: `{}` is not a readable file", path.display()),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(RouterConfig {
        enabled: raw.enabled,
        model,
        manifest,
        threshold,
        thresholds: raw.thresholds,
        quality_gate: g,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str) -> Result<RouterConfig, Vec<ConfigError>> {
        Source::check_text(Path::new("/nonexistent"), "router.yaml", text, validate)
    }

    #[test]
    fn thresholds_and_files_are_checked() {
        let e = check("model: m.bin\nthreshold: 1.5\nthresholds: {complaint: 0.5, coupon: 2}\n")
            .unwrap_err();
        let text: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("threshold 1.5")), "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.contains("thresholds.complaint: only fast")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("thresholds.coupon: 2")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("/nonexistent/m.bin")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("/nonexistent/manifest.json")),
            "{text:?}"
        );
    }

    #[test]
    fn auto_threshold_and_disabled_router() {
        let c = check("enabled: false\nmodel: m.bin\nthreshold: auto\n").unwrap();
        assert_eq!(c.threshold, None);
        assert!(!c.enabled);
        let e = check("enabled: false\nmodel: m.bin\nthreshold: high\n").unwrap_err();
        assert!(e[0].reason.contains("`auto` or a probability"), "{e:?}");
    }
}
