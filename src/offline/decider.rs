//! The decision of a configuration directory as the offline commands make it: the server's
//! `pipeline` steps ([`Pipeline::step`]), and with `--with-model` the model stage on what the
//! fast path hands on, so that `classify` and `eval-dialogues` report what the server does.

use std::path::Path;

use crate::cli::{Failure, load_config};
use crate::config::ModelConfig;
use crate::dialog::{Context, Slots};
use crate::model::{BatchMetrics, ModelStage};
use crate::pipeline::{Answer, Decision, Pipeline, Stage, Step};

/// The decision stages of a configuration directory for the CLI (the pipeline, and the
/// model stage when asked for).
pub struct Decider {
    pipeline: Pipeline,
    model: Option<ModelStage>,
    model_config: ModelConfig,
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
            model_config: config.model,
        })
    }

    /// The decision for a message alone; for a message the fast path hands on, the model's
    /// intent when the model stage runs (a model failure leaves the router's guess).
    pub fn decide(&self, text: &str) -> Decision {
        self.decide_in_context(text, &Context::NONE).0
    }

    /// [`Decider::decide`] for a message of a dialogue; the flag says whether the context
    /// decided (then no model is asked).
    pub fn decide_in_context(&self, text: &str, context: &Context<'_>) -> (Decision, bool) {
        let (answer, decision, by_context) = self.respond(text, context, &Slots::default());
        let decision = match decision {
            Some(d) if d.stage == Stage::Model && self.model.is_some() => Decision {
                intent: answer.intent,
                confidence: answer.confidence,
                stage: Stage::Model,
            },
            Some(d) => d,
            // A turn with no request, answered by the conversation replies.
            None => Decision {
                intent: answer.intent,
                confidence: answer.confidence,
                stage: Stage::Rule,
            },
        };
        (decision, by_context)
    }

    /// The server's answer to a message of a dialogue (without the shop's bot, which only a
    /// running server asks); also the decision before the model stage, and whether the
    /// context decided.
    pub fn answer(&self, text: &str, context: &Context<'_>, slots: &Slots) -> Answer<'_> {
        self.respond(text, context, slots).0
    }

    fn respond(
        &self,
        text: &str,
        context: &Context<'_>,
        slots: &Slots,
    ) -> (Answer<'_>, Option<Decision>, bool) {
        match self.pipeline.step(text, context, slots) {
            Step::Answered {
                answer,
                decision,
                by_context,
            } => (answer, decision, by_context),
            Step::Model {
                decision,
                input,
                reading,
            } => {
                let prediction = self.model.as_ref().map(|m| m.classify_blocking(input));
                let prediction = match prediction {
                    Some(Ok(p)) => Some(p),
                    Some(Err(e)) => {
                        eprintln!("kefu-edge: model stage: {e}");
                        None
                    }
                    None => None,
                };
                let (answer, _) = self.pipeline.after_model(
                    &decision,
                    text,
                    reading,
                    prediction.as_ref(),
                    &self.model_config,
                    slots,
                );
                (answer, Some(decision), false)
            }
        }
    }
}
