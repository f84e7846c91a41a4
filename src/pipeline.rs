//! The decision for one message: operator rules → (trained router) → rule cache or model →
//! fallback, then the reply filter. The Pingora service and the `classify` CLI both call
//! this, so what the CLI reports is what the server does. It knows nothing of HTTP.

use std::borrow::Cow;

use crate::config::{AnswerPolicy, Config};
use crate::conversation::{Conversation, TurnKind};
use crate::dialog::{Context, ContextRules, Slots};
use crate::intent::Intent;
use crate::model::{ModelInput, Prediction};
use crate::post::ReplyFilter;
use crate::router::{KeywordRouter, RouterModel};
use crate::rules::{CachedReply, RuleCache, Vars};
use crate::template::Template;

mod decide;
mod mix;

pub use decide::two_stage;

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

/// What the model stage made of a message (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelVerdict {
    Answered,
    BelowThreshold,
    NoTemplate,
    NoAnswer,
}

impl ModelVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelVerdict::Answered => "answered",
            ModelVerdict::BelowThreshold => "below_threshold",
            ModelVerdict::NoTemplate => "no_template",
            ModelVerdict::NoAnswer => "no_answer",
        }
    }
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

/// Why a person takes over (`handoff_reason` in the API). Only a hand-off uses the
/// fallback text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// The intent's answer policy is `human` (an explicit request for a person, a complaint).
    Policy,
    /// The model stage was not sure enough (below `threshold`).
    LowConfidence,
    /// The model stage gave no answer (overloaded, deadline, error, not loaded).
    ModelDown,
    /// The intent has no template and no bot answered.
    NothingFits,
    /// An acknowledgement after a hand-off: the person has the conversation.
    WithPerson,
}

impl Handoff {
    pub const ALL: [Handoff; 5] = [
        Handoff::Policy,
        Handoff::LowConfidence,
        Handoff::ModelDown,
        Handoff::NothingFits,
        Handoff::WithPerson,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Handoff::Policy => "policy",
            Handoff::LowConfidence => "low_confidence",
            Handoff::ModelDown => "model_down",
            Handoff::NothingFits => "nothing_fits",
            Handoff::WithPerson => "with_person",
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
    /// Set when a person must take over.
    pub handoff: Option<Handoff>,
}

/// What one message of a dialogue needs, once the steps before the model stage ran.
pub enum Step<'a> {
    /// Answered without the model: a turn with no request (`decision` `None`), or an
    /// intent decided by a keyword rule, the fast path or the dialogue (`by_context`).
    Answered {
        answer: Answer<'a>,
        decision: Option<Decision>,
        by_context: bool,
    },
    /// The model stage decides: ask it `input`, then [`Pipeline::after_model`].
    Model {
        decision: Decision,
        input: ModelInput,
        reading: Reading,
    },
}

/// What the model stage reads beside a message, for deciding on its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// The previous turn is read too (the router's weight is then `router_weight_in_context`).
    pub in_context: bool,
    /// The dialogue's topic ([`Context::topic`]), favoured by `topic_bonus`.
    pub topic: Option<Intent>,
}

pub struct Pipeline {
    keywords: KeywordRouter,
    context: ContextRules,
    router: Option<RouterModel>,
    /// `router.yaml`'s `fast_path`: a second router whose agreement the fast path needs
    /// ([`Pipeline::second_opinion`]); `router` still places (and mixes with the model) what
    /// is handed on.
    fast_router: Option<RouterModel>,
    rules: RuleCache<PreparedReply>,
    post: ReplyFilter,
    fallback: PreparedReply,
    /// Who answers each intent, by [`Intent::index`].
    policies: Vec<AnswerPolicy>,
    conversation: Conversation,
    replies: ConversationReplies,
}

/// The conversation replies, filtered at load time (the card's `{order}` per request).
struct ConversationReplies {
    keep_open: PreparedReply,
    closing: PreparedReply,
    with_person: PreparedReply,
    order_card: Template,
    product_link: PreparedReply,
}

fn filter(post: &ReplyFilter, reply: String) -> (String, bool) {
    match post.filter(&reply) {
        Cow::Borrowed(_) => (reply, false),
        Cow::Owned(masked) => (masked, true),
    }
}

impl Pipeline {
    /// Build every stage of `cfg`; a router model that `previous` already loaded (same
    /// file hash) is shared rather than loaded again.
    pub fn new(cfg: &Config, previous: Option<&Pipeline>) -> anyhow::Result<Pipeline> {
        let post = ReplyFilter::new(&cfg.post)?;
        let rules = RuleCache::new(&cfg.intents, &post.campaign_texts(), |reply| {
            Ok(PreparedReply::new(&post, reply))
        })?;
        let router = if cfg.router.enabled {
            let previous = previous.and_then(|p| p.router.as_ref());
            Some(RouterModel::load(&cfg.router, previous)?)
        } else {
            None
        };
        let fast_router = match &cfg.router.fast_path {
            Some(f) if cfg.router.enabled => {
                let previous = previous.and_then(|p| p.fast_router.as_ref());
                Some(RouterModel::load_files(
                    &f.model,
                    &f.manifest,
                    &cfg.router,
                    previous,
                )?)
            }
            _ => None,
        };
        let mut policies = vec![AnswerPolicy::Bot; Intent::ALL.len()];
        for r in &cfg.intents.intents {
            policies[r.intent.index()] = r.answer;
        }
        let c = &cfg.intents.conversation;
        let prepared = |t: &Template| PreparedReply::new(&post, t.render(&Vars::default()));
        let replies = ConversationReplies {
            keep_open: prepared(&c.keep_open),
            closing: prepared(&c.closing),
            with_person: prepared(&c.with_person),
            order_card: c.order_card.clone(),
            product_link: prepared(&c.product_link),
        };
        Ok(Pipeline {
            keywords: KeywordRouter::new(&cfg.intents)?,
            context: ContextRules::new(&cfg.dialog.context)?,
            router,
            fast_router,
            rules,
            fallback: PreparedReply::new(&post, cfg.intents.fallback_reply.clone()),
            policies,
            conversation: Conversation::new(c)?,
            replies,
            post,
        })
    }

    /// The steps before the model stage for a message of a dialogue, shared by the server
    /// and the CLI so that both answer alike: a turn with no request ([`Pipeline::converse`]),
    /// then the decision ([`Pipeline::decide_in_context`]); an intent decided here is
    /// answered by its policy (a context-decided intent without templates is not asked of
    /// the model: its text means nothing alone).
    pub fn step(&self, text: &str, context: &Context<'_>, slots: &Slots) -> Step<'_> {
        if let Some(answer) = self.converse(text, context, slots) {
            return Step::Answered {
                answer,
                decision: None,
                by_context: false,
            };
        }
        let (decision, by_context) = self.decide_in_context(text, context);
        if decision.stage == Stage::Rule || by_context {
            let answer =
                self.answer_intent(decision.intent, decision.confidence, Source::Rule, slots);
            return Step::Answered {
                answer,
                decision: Some(decision),
                by_context,
            };
        }
        let input = ModelInput {
            text: text.to_owned(),
            previous: context.previous().map(|(i, t)| (i, t.to_owned())),
        };
        let reading = Reading {
            in_context: input.previous.is_some(),
            topic: input.previous.as_ref().and(context.topic()),
        };
        Step::Model {
            decision,
            input,
            reading,
        }
    }

    /// The answer once the model stage spoke (`None`: it could not): its prediction mixed
    /// with the router's and tilted toward the dialogue's topic ([`Pipeline::model_intent`]),
    /// answered by its policy at `threshold` ([`Pipeline::answer_from_model`]).
    pub fn after_model(
        &self,
        decision: &Decision,
        text: &str,
        reading: Reading,
        prediction: Option<&Prediction>,
        model: &crate::config::ModelConfig,
        slots: &Slots,
    ) -> (Answer<'_>, ModelVerdict) {
        let p = prediction.map(|p| self.model_intent(text, p, reading, model));
        self.answer_from_model(decision, p.as_ref(), model.threshold, slots)
    }

    /// The follow-up rules.
    pub fn context(&self) -> &ContextRules {
        &self.context
    }

    /// A rule-cache reply for `intent` given the dialogue's `slots`, filtered.
    fn cached_reply(&self, intent: Intent, slots: &Slots) -> Option<Reply<'_>> {
        let vars = Vars {
            order: slots.order.as_deref(),
            size: slots.size.as_deref(),
            color: slots.color.as_deref(),
            ..Vars::default()
        };
        match self
            .rules
            .reply_with(intent, self.post.campaign_now(), &vars)?
        {
            CachedReply::Prepared(p) => Some(Reply::Prepared(p)),
            CachedReply::Rendered(text) => Some(self.finish(text)),
        }
    }

    /// The operator keyword layer.
    pub fn keywords(&self) -> &KeywordRouter {
        &self.keywords
    }

    /// Whether the rule cache has replies for `intent`.
    pub fn answers(&self, intent: Intent) -> bool {
        self.rules.answers(intent)
    }

    /// The loaded router, if `router.yaml` enables one.
    pub fn router(&self) -> Option<&RouterModel> {
        self.router.as_ref()
    }

    /// The second router whose agreement the fast path needs, when `router.yaml` names one.
    pub fn fast_path_router(&self) -> Option<&RouterModel> {
        self.fast_router.as_ref()
    }

    /// Answer one message without the model stage (what the fast path alone does).
    pub fn answer(&self, text: &str) -> Answer<'_> {
        self.answer_decided(&self.decide(text), &Slots::default())
    }

    /// Who answers `intent` (`answer` in intents.yaml).
    pub fn policy(&self, intent: Intent) -> AnswerPolicy {
        self.policies[intent.index()]
    }

    /// A person takes over: the fallback text.
    pub fn handoff(&self, intent: Intent, confidence: f32, reason: Handoff) -> Answer<'_> {
        Answer {
            intent,
            confidence,
            source: Source::Fallback,
            reply: Reply::Prepared(&self.fallback),
            handoff: Some(reason),
        }
    }

    /// The answer to a decided intent by its policy: its template (`source`: rule or model),
    /// with the hand-off when the policy is `human` (a complaint is apologised for, then
    /// passed on); the fallback when it has no template (the caller asks the shop's bot
    /// first when there is one).
    pub fn answer_intent(
        &self,
        intent: Intent,
        confidence: f32,
        source: Source,
        slots: &Slots,
    ) -> Answer<'_> {
        let human = self.policy(intent) == AnswerPolicy::Human;
        match self.cached_reply(intent, slots) {
            Some(reply) => Answer {
                intent,
                confidence,
                source,
                reply,
                handoff: human.then_some(Handoff::Policy),
            },
            None if human => self.handoff(intent, confidence, Handoff::Policy),
            None => self.handoff(intent, confidence, Handoff::NothingFits),
        }
    }

    /// The answer of a fast-path decision: the intent by its policy, or a hand-off for a
    /// message handed on to a model stage that is not there.
    pub fn answer_decided(&self, decision: &Decision, slots: &Slots) -> Answer<'_> {
        match decision.stage {
            Stage::Rule => {
                self.answer_intent(decision.intent, decision.confidence, Source::Rule, slots)
            }
            Stage::Model => self.handoff(decision.intent, decision.confidence, Handoff::ModelDown),
        }
    }

    /// A turn that carries no request (`conversation`), answered with the dialogue: an
    /// acknowledgement keeps the conversation open, or closes it after an acknowledgement
    /// or with a closing word, and stays with the person after a hand-off; a card or link
    /// that opens a chat is asked back about (later in a dialogue the context rules place
    /// it). `None`: the message has a request.
    pub fn converse(&self, text: &str, context: &Context<'_>, slots: &Slots) -> Option<Answer<'_>> {
        let kind = self.conversation.kind(text)?;
        let answer = |intent, reply| Answer {
            intent,
            confidence: 1.0,
            source: Source::Rule,
            reply,
            handoff: None,
        };
        let after_acknowledgement = context.recent.first() == Some(&Intent::ThanksBye);
        // A yes stays on the topic it answers (with none, it is an acknowledgement); the
        // other turns without a request are thanks.
        let topic = match kind {
            TurnKind::Confirmation => context.topic(),
            _ => None,
        };
        let intent = topic.unwrap_or(Intent::ThanksBye);
        Some(match kind {
            TurnKind::Acknowledgement | TurnKind::Closing | TurnKind::Confirmation
                if context.handed_to_human =>
            {
                Answer {
                    handoff: Some(Handoff::WithPerson),
                    ..answer(intent, Reply::Prepared(&self.replies.with_person))
                }
            }
            TurnKind::Confirmation if topic.is_some() => {
                answer(intent, Reply::Prepared(&self.replies.keep_open))
            }
            TurnKind::Acknowledgement | TurnKind::Confirmation if !after_acknowledgement => {
                answer(intent, Reply::Prepared(&self.replies.keep_open))
            }
            TurnKind::Acknowledgement | TurnKind::Closing | TurnKind::Confirmation => {
                answer(intent, Reply::Prepared(&self.replies.closing))
            }
            _ if context.previous().is_some() => return None,
            TurnKind::OrderCard => {
                let vars = Vars {
                    order: slots.order.as_deref(),
                    ..Vars::default()
                };
                let text = self.replies.order_card.render(&vars);
                answer(Intent::Greeting, self.finish(text))
            }
            TurnKind::ProductLink => answer(
                Intent::Greeting,
                Reply::Prepared(&self.replies.product_link),
            ),
        })
    }

    /// The router's probability of every intent of `text`, indexed by [`Intent::index`].
    pub fn router_probabilities(&self, text: &str) -> Option<Vec<f32>> {
        let model = self.router.as_ref()?;
        let probs = model.router.probabilities(text)?;
        let mut by_intent = vec![0.0f32; Intent::ALL.len()];
        for (label, p) in model.router.labels().iter().zip(probs) {
            by_intent[label.index()] = p;
        }
        Some(by_intent)
    }

    /// The model stage's intent for `text`: the model's probabilities, mixed with the
    /// router's ([`mix::fuse`]; `router_weight`, or `router_weight_in_context` for a message
    /// read with its previous turn), then with `topic_bonus` on the dialogue's topic
    /// ([`mix::favour`]).
    pub fn model_intent(
        &self,
        text: &str,
        p: &Prediction,
        reading: Reading,
        model: &crate::config::ModelConfig,
    ) -> Prediction {
        let weight = if reading.in_context {
            model.router_weight_in_context
        } else {
            model.router_weight
        };
        let mut probs = if weight > 0.0 {
            self.router_probabilities(text)
                .and_then(|r| mix::fuse(&r, &p.probs, weight))
                .unwrap_or_else(|| p.probs.clone())
        } else {
            p.probs.clone()
        };
        if let Some(topic) = reading.topic {
            mix::favour(&mut probs, topic, model.topic_bonus);
        }
        match mix::best(&probs) {
            Some((intent, prob)) if probs.len() == Intent::ALL.len() => Prediction {
                intent,
                prob,
                probs,
                batch_size: p.batch_size,
            },
            _ => p.clone(),
        }
    }

    /// The answer of the model stage for a message the fast path handed on: the model's
    /// intent by its policy when the model is at least `threshold` sure; otherwise a
    /// hand-off. `None`: the model gave no answer (queue full, deadline, error), so the
    /// router's guess is reported with the hand-off.
    pub fn answer_from_model(
        &self,
        decision: &Decision,
        prediction: Option<&Prediction>,
        threshold: f32,
        slots: &Slots,
    ) -> (Answer<'_>, ModelVerdict) {
        let Some(p) = prediction else {
            let answer = self.handoff(decision.intent, decision.confidence, Handoff::ModelDown);
            return (answer, ModelVerdict::NoAnswer);
        };
        if p.prob < threshold {
            let answer = self.handoff(p.intent, p.prob, Handoff::LowConfidence);
            return (answer, ModelVerdict::BelowThreshold);
        }
        let answer = self.answer_intent(p.intent, p.prob, Source::Model, slots);
        let verdict = if answer.handoff == Some(Handoff::NothingFits) {
            ModelVerdict::NoTemplate
        } else {
            ModelVerdict::Answered
        };
        (answer, verdict)
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

    fn shipped_config() -> Config {
        Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conf")).unwrap()
    }

    fn samples() -> Vec<(&'static str, &'static str)> {
        include_str!("../tests/data/intent_samples.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_once('\t').expect("text<TAB>intent"))
            .collect()
    }

    #[test]
    fn keyword_answers_are_right_and_fallback_samples_are_not_answered() {
        let mut cfg = shipped_config();
        cfg.router.enabled = false;
        let p = Pipeline::new(&cfg, None).unwrap();
        for (text, want) in samples() {
            let a = p.answer(text);
            if want == "fallback" {
                assert_eq!(a.source, Source::Fallback, "{text}");
                assert_eq!(a.reply.text(), "亲,转人工客服哦~");
            } else if a.source == Source::Rule {
                assert_eq!(a.intent.as_str(), want, "{text}");
                assert_eq!(a.confidence, 1.0, "keyword answers are certain");
                assert!(
                    !a.reply.text().contains('{'),
                    "unrendered template: {}",
                    a.reply.text()
                );
            }
        }
    }

    #[test]
    fn two_stage_decision_answers_every_fast_intent() {
        let p = Pipeline::new(&shipped_config(), None).unwrap();
        let mut answered = std::collections::BTreeSet::new();
        for (text, want) in samples().into_iter().filter(|(_, w)| *w != "fallback") {
            let a = p.answer(text);
            if a.source == Source::Rule {
                assert_eq!(a.intent.as_str(), want, "{text}");
                answered.insert(want);
            }
        }
        assert_eq!(
            answered.len(),
            20,
            "a rule answer for every fast intent: {answered:?}"
        );
    }

    #[test]
    fn made_replies_are_filtered_and_prepared_ones_escaped() {
        let p = Pipeline::new(&shipped_config(), None).unwrap();
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
    fn model_answers_come_from_templates_above_the_threshold() {
        let p = Pipeline::new(&shipped_config(), None).unwrap();
        let d = p.decide("今天天气怎么样");
        let sure = Prediction {
            intent: Intent::Coupon,
            prob: 0.9,
            probs: vec![],
            batch_size: 1,
        };
        let (a, v) = p.answer_from_model(&d, Some(&sure), 0.5, &Slots::default());
        assert_eq!(
            (a.source, a.intent, v),
            (Source::Model, Intent::Coupon, ModelVerdict::Answered)
        );
        assert!(a.reply.text().contains("券"), "{}", a.reply.text());
        let (a, v) = p.answer_from_model(&d, Some(&sure), 0.95, &Slots::default());
        assert_eq!(
            (a.source, v),
            (Source::Fallback, ModelVerdict::BelowThreshold)
        );
        assert_eq!(a.reply.text(), "亲,转人工客服哦~");
        assert_eq!(a.handoff, Some(Handoff::LowConfidence));
        // Out of scope: a redirect, not a person.
        let other = Prediction {
            intent: Intent::Other,
            ..sure.clone()
        };
        let (a, v) = p.answer_from_model(&d, Some(&other), 0.5, &Slots::default());
        assert_eq!(
            (a.source, v, a.handoff),
            (Source::Model, ModelVerdict::Answered, None)
        );
        // A complaint is apologised for, then handed on (`answer: human`).
        let angry = Prediction {
            intent: Intent::Complaint,
            ..sure.clone()
        };
        let (a, _) = p.answer_from_model(&d, Some(&angry), 0.5, &Slots::default());
        assert_eq!(a.handoff, Some(Handoff::Policy));
        assert!(a.reply.text().contains("抱歉"), "{}", a.reply.text());
        let (a, v) = p.answer_from_model(&d, None, 0.5, &Slots::default());
        assert_eq!((a.source, v), (Source::Fallback, ModelVerdict::NoAnswer));
        assert_eq!(a.handoff, Some(Handoff::ModelDown));
    }

    #[test]
    fn turns_without_a_request_are_answered_with_the_dialogue() {
        let p = Pipeline::new(&shipped_config(), None).unwrap();
        let none = Slots::default();
        let after = |recent: &'static [Intent], handed| Context {
            recent,
            previous_text: Some("x"),
            order: None,
            handed_to_human: handed,
        };
        // After an answer: keep the conversation open; after that question: close.
        let a = p
            .converse("好的", &after(&[Intent::RefundApply], false), &none)
            .unwrap();
        assert_eq!((a.intent, a.handoff), (Intent::ThanksBye, None));
        assert!(a.reply.text().contains("还有其他"), "{}", a.reply.text());
        let a = p
            .converse("嗯嗯", &after(&[Intent::ThanksBye], false), &none)
            .unwrap();
        assert!(a.reply.text().contains("不客气"), "{}", a.reply.text());
        let a = p
            .converse(
                "没有了，谢谢！",
                &after(&[Intent::RefundApply], false),
                &none,
            )
            .unwrap();
        assert!(a.reply.text().contains("不客气"), "{}", a.reply.text());
        // After a hand-off it stays with the person.
        let a = p
            .converse("好的", &after(&[Intent::Complaint], true), &none)
            .unwrap();
        assert_eq!(a.handoff, Some(Handoff::WithPerson));
        // Never a hand-off for a bare 好的 otherwise, even alone.
        assert_eq!(
            p.converse("好的", &Context::NONE, &none).unwrap().handoff,
            None
        );
        // A card opening a chat is asked back about, with its order.
        let slots = Slots::extract("订单号 4410298736651207");
        let a = p
            .converse("订单号 4410298736651207", &Context::NONE, &slots)
            .unwrap();
        assert!(
            a.reply.text().contains("4410298736651207"),
            "{}",
            a.reply.text()
        );
        assert_eq!(a.handoff, None);
        // Later in a dialogue the context rules place it; a question is not a turn without one.
        assert!(
            p.converse(
                "订单号 4410298736651207",
                &after(&[Intent::Invoice], false),
                &slots
            )
            .is_none()
        );
        assert!(
            p.converse("好的，什么时候发货", &Context::NONE, &none)
                .is_none()
        );
        // 你好 is a greeting, not 你 + 好.
        assert!(p.converse("你好", &Context::NONE, &none).is_none());
        assert!(p.converse("您好！", &Context::NONE, &none).is_none());
        // A yes stays on the dialogue's topic (the newest request), past an acknowledgement.
        let a = p
            .converse(
                "是的",
                &after(&[Intent::ThanksBye, Intent::Invoice], false),
                &none,
            )
            .unwrap();
        assert_eq!((a.intent, a.handoff), (Intent::Invoice, None));
        assert!(a.reply.text().contains("还有其他"), "{}", a.reply.text());
        let a = p
            .converse("对的", &after(&[Intent::Invoice], true), &none)
            .unwrap();
        assert_eq!(
            (a.intent, a.handoff),
            (Intent::Invoice, Some(Handoff::WithPerson))
        );
        let a = p.converse("是的", &Context::NONE, &none).unwrap();
        assert_eq!((a.intent, a.handoff), (Intent::ThanksBye, None));
    }

    #[test]
    fn a_follow_up_leans_toward_the_dialogue_topic() {
        let mut cfg = shipped_config();
        // The model alone, so that only the topic moves the answer.
        cfg.model.router_weight = 0.0;
        cfg.model.router_weight_in_context = 0.0;
        cfg.model.topic_bonus = 2.0;
        let p = Pipeline::new(&cfg, None).unwrap();
        let mut probs = vec![0.0; Intent::ALL.len()];
        probs[Intent::Coupon.index()] = 0.6;
        probs[Intent::PromotionRules.index()] = 0.4;
        let pred = Prediction {
            intent: Intent::Coupon,
            prob: 0.6,
            probs,
            batch_size: 1,
        };
        let alone = Reading::default();
        let m = p.model_intent("满300减50是每满吗", &pred, alone, &cfg.model);
        assert_eq!(m.intent, Intent::Coupon, "no topic, no change");
        let follow_up = Reading {
            in_context: true,
            topic: Some(Intent::PromotionRules),
        };
        let m = p.model_intent("满300减50是每满吗", &pred, follow_up, &cfg.model);
        assert_eq!(m.intent, Intent::PromotionRules);
        // 0.4·e² against 0.6: the topic's share is 0.831.
        assert!((m.prob - 0.831).abs() < 1e-3, "{}", m.prob);
        cfg.model.topic_bonus = 0.0;
        let m = p.model_intent("满300减50是每满吗", &pred, follow_up, &cfg.model);
        assert_eq!((m.intent, m.prob), (Intent::Coupon, 0.6));
    }

    #[test]
    fn fallback_when_nothing_fits() {
        let p = Pipeline::new(&shipped_config(), None).unwrap();
        let a = p.answer("今天天气怎么样");
        assert_eq!(a.source, Source::Fallback);
        assert_eq!(a.reply.text(), "亲,转人工客服哦~");
        assert_eq!(p.decide("今天天气怎么样").stage, Stage::Model);
    }
}
