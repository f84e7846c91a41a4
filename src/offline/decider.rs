//! The decision of a configuration directory as the offline commands make it: the server's
//! `pipeline`, and with `--with-model` the model stage on what the fast path hands on, so
//! that `classify` and `eval-dialogues` report what the server does.

use std::path::Path;

use crate::cli::{Failure, load_config};
use crate::dialog::Context;
use crate::model::{BatchMetrics, ModelInput, ModelStage};
use crate::pipeline::{Decision, Pipeline, Stage};

/// The decision stages of a configuration directory for the CLI (the pipeline, and the
/// model stage when asked for).
pub struct Decider {
    pipeline: Pipeline,
    model: Option<ModelStage>,
    router_weight: f32,
}

impl Decider {
    pub fn open(dir: &Path, with_model: bool) -> Result<Decider, Failure> {
        let config = load_config(dir)?;
        let pipeline = Pipeline::new(&config, None)?;
        let model = if with_model {
            match ModelStage::start(&config.model, BatchMetrics::unregistered()) {
                Ok(m) => Some(m),
                Err(e) => return Err(anyhow::anyhow!("model stage: {e}").into()),
            }
        } else {
            None
        };
        Ok(Decider {
            pipeline,
            model,
            router_weight: config.model.router_weight,
        })
    }

    /// The fast-path decision; for a message it hands on, the model's intent when the
    /// model stage runs (a model failure leaves the router's guess).
    pub fn decide(&self, text: &str) -> Decision {
        self.decide_in_context(text, &Context::NONE).0
    }

    /// [`Decider::decide`] for a message of a dialogue; the flag says whether the context
    /// decided (then no model is asked).
    pub fn decide_in_context(&self, text: &str, context: &Context<'_>) -> (Decision, bool) {
        let (d, by_context) = self.pipeline.decide_in_context(text, context);
        if by_context {
            return (d, true);
        }
        let d = match (&self.model, d.stage) {
            (Some(model), Stage::Model) => match model.classify_blocking(ModelInput {
                text: text.to_owned(),
                previous: context.previous().map(|(i, t)| (i, t.to_owned())),
            }) {
                Ok(p) => {
                    let p = self.pipeline.model_intent(text, &p, self.router_weight);
                    Decision {
                        intent: p.intent,
                        confidence: p.prob,
                        stage: Stage::Model,
                    }
                }
                Err(e) => {
                    eprintln!("kefu-edge: model stage: {e}");
                    d
                }
            },
            _ => d,
        };
        (d, false)
    }
}
