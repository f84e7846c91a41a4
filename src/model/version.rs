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
    /// How a message and its previous turn become ids (v2 on); absent: `[CLS] text [SEP]`
    /// of a BERT tokenizer, the message alone (v1).
    #[serde(default)]
    pub input_format: Option<InputFormat>,
}

/// The input layout of a model that reads the previous turn: `<s> message </s>` or
/// `<s> message </s></s> context </s>`, the context being `context` with `{intent_name}`
/// and `{text}` filled in; the message cut to `message_tokens`, the context to
/// `context_tokens` (the training pipeline's `inputs.py` builds the same).
#[derive(Debug, Clone, Deserialize)]
pub struct InputFormat {
    pub bos: u32,
    pub eos: u32,
    pub message_tokens: usize,
    pub context_tokens: usize,
    pub context: String,
    pub intent_names: BTreeMap<String, String>,
    /// Inputs with the ids the training pipeline gave them: what [`TextEncoder`] must give
    /// too (tests/model.rs checks every shipped version).
    #[serde(default)]
    pub examples: Vec<EncodedExample>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EncodedExample {
    pub text: String,
    /// (intent id, text) of the previous turn.
    pub previous: Option<(String, String)>,
    pub ids: Vec<u32>,
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

/// What the model is asked about: a message, and the dialogue's previous turn when there is
/// one (its decided intent and its text).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    pub text: String,
    pub previous: Option<(Intent, String)>,
}

impl ModelInput {
    pub fn alone(text: &str) -> ModelInput {
        ModelInput {
            text: text.to_owned(),
            previous: None,
        }
    }
}

/// Text to token ids, as the training pipeline encoded it.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    layout: Layout,
}

enum Layout {
    /// `[CLS] text [SEP]` by the tokenizer's own template, at most `max_tokens` (v1).
    Single { sep: u32, max_tokens: usize },
    /// [`InputFormat`], with the context template split at its two fields.
    Pair {
        format: InputFormat,
        names: BTreeMap<Intent, String>,
    },
}

impl TextEncoder {
    pub fn open(
        path: &Path,
        max_tokens: usize,
        format: Option<&InputFormat>,
    ) -> Result<TextEncoder, ModelError> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))?;
        TextEncoder::new(tokenizer, max_tokens, format)
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))
    }

    pub fn new(
        tokenizer: Tokenizer,
        max_tokens: usize,
        format: Option<&InputFormat>,
    ) -> Result<TextEncoder, ModelError> {
        let layout = match format {
            None => Layout::Single {
                sep: tokenizer
                    .token_to_id("[SEP]")
                    .ok_or_else(|| ModelError::Load("the tokenizer has no [SEP] token".into()))?,
                max_tokens,
            },
            Some(f) => {
                let mut names = BTreeMap::new();
                for (id, name) in &f.intent_names {
                    let intent = id
                        .parse::<Intent>()
                        .map_err(|e| ModelError::Load(format!("input_format: {e}")))?;
                    names.insert(intent, name.clone());
                }
                Layout::Pair {
                    format: f.clone(),
                    names,
                }
            }
        };
        Ok(TextEncoder { tokenizer, layout })
    }

    fn pieces(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Inference(format!("tokenizer: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The ids of `input` (a v1 model reads the message alone).
    pub fn encode(&self, input: &ModelInput) -> Result<Vec<u32>, ModelError> {
        match &self.layout {
            Layout::Single { sep, max_tokens } => {
                let encoding = self
                    .tokenizer
                    .encode(input.text.as_str(), true)
                    .map_err(|e| ModelError::Inference(format!("tokenizer: {e}")))?;
                let mut ids = encoding.get_ids().to_vec();
                if ids.len() > *max_tokens {
                    ids.truncate(max_tokens - 1);
                    ids.push(*sep);
                }
                Ok(ids)
            }
            Layout::Pair { format, names } => {
                let mut ids = vec![format.bos];
                let mut message = self.pieces(&input.text)?;
                message.truncate(format.message_tokens);
                ids.extend(message);
                ids.push(format.eos);
                if let Some((intent, text)) = &input.previous {
                    let name = names.get(intent).map_or(intent.as_str(), String::as_str);
                    let context = format
                        .context
                        .replace("{intent_name}", name)
                        .replace("{text}", text);
                    let mut pieces = self.pieces(&context)?;
                    pieces.truncate(format.context_tokens);
                    ids.push(format.eos);
                    ids.extend(pieces);
                    ids.push(format.eos);
                }
                Ok(ids)
            }
        }
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
            manifest.input_format.as_ref(),
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
