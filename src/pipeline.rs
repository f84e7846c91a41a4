//! The decision for one message: operator rules → (trained router) → rule cache or model →
//! fallback, then the reply filter. The Pingora service and the `classify` CLI both call
//! this, so what the CLI reports is what the server does. It knows nothing of HTTP.

use std::borrow::Cow;

use crate::config::Config;
use crate::intent::Intent;
use crate::post::ReplyFilter;
use crate::router::KeywordRouter;
use crate::rules::RuleCache;

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

/// A reply that has passed the reply filter, also kept JSON-escaped so the answer body is
/// written without escaping it again.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedReply {
    text: String,
    json: String,
    masked: bool,
}

impl PreparedReply {
    fn new(post: &ReplyFilter, reply: String) -> PreparedReply {
        let (text, masked) = filter(post, reply);
        // Serialising a string cannot fail.
        let json = serde_json::to_string(&text).unwrap_or_else(|_| "\"\"".into());
        PreparedReply { text, json, masked }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text as a JSON string literal, quotes included.
    pub fn json(&self) -> &str {
        &self.json
    }
}

/// The reply of an answer: prepared at load time (rule cache, fallback) or made for this
/// request (model, upstream: filtered as it was made).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<'a> {
    Prepared(&'a PreparedReply),
    Made { text: String, masked: bool },
}

impl Reply<'_> {
    pub fn text(&self) -> &str {
        match self {
            Reply::Prepared(p) => p.text(),
            Reply::Made { text, .. } => text,
        }
    }

    /// Whether the reply filter masked anything in it.
    pub fn masked(&self) -> bool {
        match self {
            Reply::Prepared(p) => p.masked,
            Reply::Made { masked, .. } => *masked,
        }
    }
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<'a> {
    pub intent: Intent,
    pub confidence: f32,
    pub source: Source,
    pub reply: Reply<'a>,
}

pub struct Pipeline {
    keywords: KeywordRouter,
    rules: RuleCache<PreparedReply>,
    post: ReplyFilter,
    fallback: PreparedReply,
}

fn filter(post: &ReplyFilter, reply: String) -> (String, bool) {
    match post.filter(&reply) {
        Cow::Borrowed(_) => (reply, false),
        Cow::Owned(masked) => (masked, true),
    }
}

impl Pipeline {
    pub fn new(cfg: &Config) -> anyhow::Result<Pipeline> {
        let post = ReplyFilter::new(&cfg.post)?;
        let rules = RuleCache::new(&cfg.intents, &post.campaign_texts(), |reply| {
            Ok(PreparedReply::new(&post, reply))
        })?;
        Ok(Pipeline {
            keywords: KeywordRouter::new(&cfg.intents)?,
            rules,
            fallback: PreparedReply::new(&post, cfg.intents.fallback_reply.clone()),
            post,
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
    pub fn answer(&self, text: &str) -> Answer<'_> {
        let decision = self.decide(text);
        let cached = match decision.stage {
            Stage::Rule => self.rules.reply(decision.intent, self.post.campaign_now()),
            Stage::Model => None,
        };
        let (source, reply) = match cached {
            Some(reply) => (Source::Rule, reply),
            None => (Source::Fallback, &self.fallback),
        };
        Answer {
            intent: decision.intent,
            confidence: decision.confidence,
            source,
            reply: Reply::Prepared(reply),
        }
    }

    /// Pass a reply made for one request (model, upstream) through the reply filter.
    pub fn finish(&self, reply: String) -> Reply<'static> {
        let (text, masked) = filter(&self.post, reply);
        Reply::Made { text, masked }
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
                assert_eq!(a.reply.text(), "亲,转人工客服哦~");
            } else {
                assert_eq!(a.intent.as_str(), want, "{text}");
                assert_eq!(a.source, Source::Rule, "{text}");
                assert!(
                    !a.reply.text().contains('{'),
                    "unrendered template: {}",
                    a.reply.text()
                );
            }
            checked += 1;
        }
        assert!(checked >= 75, "only {checked} samples");
    }

    #[test]
    fn made_replies_are_filtered_and_prepared_ones_escaped() {
        let p = shipped();
        let r = p.finish("请加微信联系".into());
        assert!(r.masked() && !r.text().contains("微信"), "{}", r.text());
        let a = p.answer("我要退款");
        let Reply::Prepared(prepared) = a.reply else {
            panic!("rule replies are prepared")
        };
        assert_eq!(
            serde_json::from_str::<String>(prepared.json()).unwrap(),
            prepared.text()
        );
    }

    #[test]
    fn fallback_when_nothing_fits() {
        let p = shipped();
        let a = p.answer("今天天气怎么样");
        assert_eq!(a.source, Source::Fallback);
        assert_eq!(a.intent, Intent::Other);
        assert_eq!(a.confidence, 0.0);
    }
}
