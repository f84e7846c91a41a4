//! One model version on disk, `models/intent/<version>/`: `model.onnx`, `tokenizer.json`,
//! `labels.txt` and `manifest.json`. Opening a version checks every file against the
//! manifest's sha256, maps the labels to intent ids, and applies the quality gate, so a
//! half-copied or weaker version is refused before it is asked anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::Tokenizer;

use super::ModelError;
use crate::config::ModelGate;
use crate::intent::Intent;
use crate::router::manifest::sha256_hex;

#[derive(Debug, Clone, Deserialize)]
pub struct VersionManifest {
    pub version: String,
    pub files: BTreeMap<String, FileEntry>,
    pub max_len: usize,
    /// Validation accuracy by origin (`authored`, `jddc`): the model alone and the
    /// two-stage decision.
    pub metrics: BTreeMap<String, SplitAccuracy>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
pub struct SplitAccuracy {
    pub model: f64,
    pub two_stage: f64,
}

/// Text to token ids, as the training pipeline encoded it.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    sep: u32,
    max_tokens: usize,
}

impl TextEncoder {
    pub fn open(path: &Path, max_tokens: usize) -> Result<TextEncoder, ModelError> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))?;
        TextEncoder::new(tokenizer, max_tokens)
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))
    }

    pub fn new(tokenizer: Tokenizer, max_tokens: usize) -> Result<TextEncoder, ModelError> {
        let sep = tokenizer
            .token_to_id("[SEP]")
            .ok_or_else(|| ModelError::Load("the tokenizer has no [SEP] token".into()))?;
        Ok(TextEncoder {
            tokenizer,
            sep,
            max_tokens,
        })
    }

    /// `[CLS] … [SEP]`, at most `max_tokens` ids (the end is cut, [SEP] kept).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelError::Inference(format!("tokenizer: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() > self.max_tokens {
            ids.truncate(self.max_tokens - 1);
            ids.push(self.sep);
        }
        Ok(ids)
    }
}

/// A version that passed its checks.
pub struct ModelVersion {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: VersionManifest,
    /// Intent of each output of the model, in order.
    pub labels: Vec<Intent>,
    pub encoder: TextEncoder,
}

fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let bytes =
        std::fs::read(path).map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))?;
    Ok(sha256_hex(&bytes))
}

impl ModelVersion {
    pub fn open(
        dir: &Path,
        name: &str,
        gate: &ModelGate,
        max_tokens: usize,
    ) -> Result<ModelVersion, ModelError> {
        let load = |m: String| ModelError::Load(format!("version {name}: {m}"));
        let manifest_path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| load(format!("{}: {e}", manifest_path.display())))?;
        let manifest: VersionManifest = serde_json::from_str(&text)
            .map_err(|e| load(format!("{}: {e}", manifest_path.display())))?;
        if manifest.version != name {
            return Err(load(format!(
                "the manifest says version `{}`",
                manifest.version
            )));
        }
        for file in ["model.onnx", "tokenizer.json", "labels.txt"] {
            let entry = manifest
                .files
                .get(file)
                .ok_or_else(|| load(format!("the manifest lists no {file}")))?;
            let got = sha256_file(&dir.join(file))?;
            if got != entry.sha256 {
                return Err(load(format!(
                    "{file}: sha256 {got}, the manifest says {}",
                    entry.sha256
                )));
            }
        }
        let labels_path = dir.join("labels.txt");
        let labels = std::fs::read_to_string(&labels_path)
            .map_err(|e| load(format!("{}: {e}", labels_path.display())))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim()
                    .parse::<Intent>()
                    .map_err(|e| load(format!("labels.txt: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if labels.is_empty() {
            return Err(load("labels.txt is empty".into()));
        }
        let accuracy = manifest.metrics.get("authored").map_or(0.0, |m| m.model);
        if accuracy < gate.min_accuracy {
            return Err(load(format!(
                "validation accuracy {accuracy:.4} is below the quality gate {:.4}",
                gate.min_accuracy
            )));
        }
        let encoder = TextEncoder::open(
            &dir.join("tokenizer.json"),
            max_tokens.min(manifest.max_len),
        )?;
        Ok(ModelVersion {
            name: name.to_owned(),
            dir: dir.to_path_buf(),
            manifest,
            labels,
            encoder,
        })
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join("model.onnx")
    }
}
