//! The decision for one message: operator rules → (trained router) → rule cache or model →
//! fallback, then the reply filter. The Pingora service and the `classify` CLI both call
//! this, so what the CLI reports is what the server does. It knows nothing of HTTP.

use std::borrow::Cow;

use crate::config::Config;
use crate::intent::Intent;
use crate::post::ReplyFilter;
use crate::router::KeywordRouter;
use crate::rules::{RuleCache, Vars};

/// Which stage produced a reply (the `source` field of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Rule,
    Model,
    Upstream,
    Fallback,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Rule,
        Source::Model,
        Source::Upstream,
        Source::Fallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Rule => "rule",
            Source::Model => "model",
            Source::Upstream => "upstream",
            Source::Fallback => "fallback",
        }
    }
}

/// Which stage the fast-path decision hands a message to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Answered from the rule cache.
    Rule,
    /// Not answered by the fast path: the model stage (or, without one, the fallback).
    Model,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Rule => "rule",
            Stage::Model => "model",
        }
    }
}

/// The fast-path decision for one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub intent: Intent,
    pub confidence: f32,
    pub stage: Stage,
}

/// A finished answer: the reply has passed the reply filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub intent: Intent,
    pub confidence: f32,
    pub source: Source,
    pub reply: String,
    /// Whether the reply filter masked anything.
    pub masked: bool,
}

pub struct Pipeline {
    keywords: KeywordRouter,
    rules: RuleCache,
    post: ReplyFilter,
    fallback_reply: String,
}

impl Pipeline {
    pub fn new(cfg: &Config) -> anyhow::Result<Pipeline> {
        Ok(Pipeline {
            keywords: KeywordRouter::new(&cfg.intents)?,
            rules: RuleCache::new(&cfg.intents),
            post: ReplyFilter::new(&cfg.post)?,
            fallback_reply: cfg.intents.fallback_reply.clone(),
        })
    }

    /// The fast-path decision: an operator rule whose intent the rule cache answers.
    pub fn decide(&self, text: &str) -> Decision {
        if let Some(hit) = self.keywords.classify(text)
            && self.rules.answers(hit.intent)
        {
            return Decision {
                intent: hit.intent,
                confidence: 1.0,
                stage: Stage::Rule,
            };
        }
        Decision {
            intent: Intent::Other,
            confidence: 0.0,
            stage: Stage::Model,
        }
    }

    /// Answer one message.
    pub fn answer(&self, text: &str) -> Answer {
        let decision = self.decide(text);
        let mut reply = String::with_capacity(256);
        let source = match decision.stage {
            Stage::Rule => {
                let vars = Vars {
                    campaign: self.post.campaign_now(),
                };
                // `decide` only picks intents the cache answers.
                self.rules.render_into(decision.intent, &vars, &mut reply);
                Source::Rule
            }
            Stage::Model => {
                reply.push_str(&self.fallback_reply);
                Source::Fallback
            }
        };
        let (reply, masked) = self.finish(reply);
        Answer {
            intent: decision.intent,
            confidence: decision.confidence,
            source,
            reply,
            masked,
        }
    }

    /// Pass a reply from any source through the reply filter; `true` if it masked.
    pub fn finish(&self, reply: String) -> (String, bool) {
        match self.post.filter(&reply) {
            Cow::Borrowed(_) => (reply, false),
            Cow::Owned(masked) => (masked, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn shipped() -> Pipeline {
        let cfg = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conf")).unwrap();
        Pipeline::new(&cfg).unwrap()
    }

    #[test]
    fn every_shipped_sample_gets_its_intent() {
        let p = shipped();
        let samples = include_str!("../tests/data/intent_samples.tsv");
        let mut checked = 0;
        for line in samples
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (text, want) = line.split_once('\t').expect("text<TAB>intent");
            let a = p.answer(text);
            if want == "fallback" {
                assert_eq!(a.source, Source::Fallback, "{text}");
                assert_eq!(a.reply, "亲,转人工客服哦~");
            } else {
                assert_eq!(a.intent.as_str(), want, "{text}");
                assert_eq!(a.source, Source::Rule, "{text}");
                assert!(!a.reply.contains('{'), "unrendered template: {}", a.reply);
            }
            checked += 1;
        }
        assert!(checked >= 75, "only {checked} samples");
    }

    #[test]
    fn fallback_when_nothing_fits() {
        let a = shipped().answer("今天天气怎么样");
        assert_eq!(a.source, Source::Fallback);
        assert_eq!(a.intent, Intent::Other);
        assert_eq!(a.confidence, 0.0);
    }
}
