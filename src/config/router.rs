//! `router.yaml`: the trained router behind the operator keyword rules: which model, the
//! confidence a fast intent needs to be answered from the rule cache, and the quality gate a
//! model's validation figures must pass before it may serve. Optionally a second model whose
//! agreement the fast path needs (`fast_path`); the first one alone places what is handed on.

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
    #[serde(default)]
    fast_path: Option<RawModelFiles>,
}

/// A model file and its manifest (default: `manifest.json` beside it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelFiles {
    model: PathBuf,
    manifest: Option<PathBuf>,
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
    /// A second router whose agreement the fast path needs (`Pipeline::second_opinion`);
    /// the thresholds and the quality gate apply to it.
    pub fast_path: Option<ModelFiles>,
}

/// A router model file and its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFiles {
    pub model: PathBuf,
    pub manifest: PathBuf,
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
    let files = |model: &PathBuf, manifest: &Option<PathBuf>| {
        let model = src.resolve(model);
        let manifest = match manifest {
            Some(m) => src.resolve(m),
            None => model.with_file_name("manifest.json"),
        };
        ModelFiles { model, manifest }
    };
    let main = files(&raw.model, &raw.manifest);
    let fast_path = raw.fast_path.as_ref().map(|f| files(&f.model, &f.manifest));
    if raw.enabled && src.check_models {
        let mut check = |prefix: &str, f: &ModelFiles| {
            for (key, path) in [("model", &f.model), ("manifest", &f.manifest)] {
                if !path.is_file() {
                    errors.push(src.error_at(
                        key,
                        format!("{prefix}{key}: `{}` is not a readable file", path.display()),
                    ));
                }
            }
        };
        check("", &main);
        if let Some(f) = &fast_path {
            check("fast_path.", f);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(RouterConfig {
        enabled: raw.enabled,
        model: main.model,
        manifest: main.manifest,
        threshold,
        thresholds: raw.thresholds,
        quality_gate: g,
        fast_path,
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
    fn a_fast_path_router_has_its_files_checked_and_resolved() {
        let e = check("model: m.bin\nfast_path: {model: fast/f.bin}\n").unwrap_err();
        let text: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("fast_path.model: `/nonexistent/fast/f.bin`")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("fast_path.manifest: `/nonexistent/fast/manifest.json`")),
            "{text:?}"
        );
        let c =
            check("enabled: false\nmodel: m.bin\nfast_path: {model: f.bin, manifest: g.json}\n")
                .unwrap();
        let f = c.fast_path.unwrap();
        assert_eq!(f.model, Path::new("/nonexistent/f.bin"));
        assert_eq!(f.manifest, Path::new("/nonexistent/g.json"));
        assert!(check("model: m.bin\nfast_path: {modle: f.bin}\n").is_err());
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
