//! The fast path's decision for one message: operator keyword rules, the dialogue's context
//! rules, then the trained router (with `router.yaml` `fast_path`, two routers that must
//! agree); what it does not answer goes to the model stage carrying the main router's guess.

use super::{Decision, Pipeline, Stage};
use crate::dialog::Context;
use crate::intent::{Intent, Tier};
use crate::router::{RouterGuess, RouterModel};

/// Whether the fast path may answer `intent` at all: a fast intent the rule cache answers.
fn fast_answerable(intent: Intent, answers: impl Fn(Intent) -> bool) -> bool {
    intent.tier() == Tier::Fast && answers(intent)
}

/// The two-stage rule on what the layers said, shared by [`Pipeline::decide`] and the
/// threshold search of `train-router` so both apply the same rule. `guess` is asked only when
/// no keyword rule answers.
pub fn two_stage(
    keyword: Option<Intent>,
    guess: impl FnOnce() -> Option<RouterGuess>,
    threshold: impl Fn(Intent) -> f32,
    answers: impl Fn(Intent) -> bool,
) -> Decision {
    if let Some(intent) = keyword
        && answers(intent)
    {
        return Decision {
            intent,
            confidence: 1.0,
            stage: Stage::Rule,
        };
    }
    match guess() {
        Some(g) => {
            let fast = fast_answerable(g.intent, &answers) && g.prob >= threshold(g.intent);
            Decision {
                intent: g.intent,
                confidence: g.prob,
                stage: if fast { Stage::Rule } else { Stage::Model },
            }
        }
        None => Decision {
            intent: Intent::Other,
            confidence: 0.0,
            stage: Stage::Model,
        },
    }
}

impl Pipeline {
    /// The two-stage fast-path decision. An operator keyword rule whose intent the rule
    /// cache answers wins (confidence 1). Otherwise the trained router's best intent is
    /// answered from the rule cache if it is a fast intent with a reply and its probability
    /// reaches that intent's threshold; anything else goes to the model stage, carrying the
    /// router's guess. With a fast-path router (`router.yaml` `fast_path`) the fast path also
    /// needs that router's agreement ([`Pipeline::second_opinion`]).
    pub fn decide(&self, text: &str) -> Decision {
        self.decide_in_context(text, &Context::NONE).0
    }

    /// The fast-path decision for a message of a dialogue. An operator keyword rule still
    /// wins: it names the question outright. Next, the dialogue's `context` (a follow-up
    /// rule of `dialog.yaml` that fits a recent intent, or a bare order number) decides with
    /// confidence 1, like a keyword rule; these are the short messages ("那要多久") the
    /// router cannot place alone. Otherwise the router's two-stage decision, as for a
    /// message alone, except that with a previous turn in the window the router does not
    /// answer (`context.model_decides_follow_ups`): the model stage reads the message with
    /// that turn. The flag says whether the context decided.
    pub fn decide_in_context(&self, text: &str, context: &Context<'_>) -> (Decision, bool) {
        let keyword = self.keywords.classify(text).map(|hit| hit.intent);
        let keyword_answers = keyword.is_some_and(|k| self.rules.answers(k));
        if !keyword_answers && let Some(intent) = self.context.resolve(text, context) {
            // An intent without replies is still decided: the caller passes it on (to the
            // shop's bot or the fallback) instead of asking the model about a message that
            // means nothing alone.
            let stage = if self.rules.answers(intent) {
                Stage::Rule
            } else {
                Stage::Model
            };
            let decision = Decision {
                intent,
                confidence: 1.0,
                stage,
            };
            return (decision, true);
        }
        let router = self.router.as_ref();
        let mut decision = two_stage(
            keyword,
            || router.and_then(|r| r.router.classify(text)),
            |intent| router.map_or(1.0, |r| r.threshold(intent)),
            |intent| self.rules.answers(intent),
        );
        if !keyword_answers && let Some(second) = &self.fast_router {
            self.second_opinion(text, second, &mut decision);
        }
        // A follow-up means what it means after the previous turn, which only the model
        // stage reads: the router's fast path does not answer it (a keyword rule still does).
        if decision.stage == Stage::Rule
            && !keyword_answers
            && context.previous().is_some()
            && self.context.model_decides_follow_ups()
        {
            decision.stage = Stage::Model;
        }
        (decision, false)
    }

    /// The fast-path router's part (`router.yaml` `fast_path`): a second opinion on the main
    /// router's `decision`. The fast path answers only when both routers name the same intent
    /// and at least one of them reaches its own threshold for it; when they disagree the
    /// message goes to the model stage, even if the main router alone was sure. Either way
    /// what goes on carries the main router's guess, which the model stage mixes with.
    fn second_opinion(&self, text: &str, second: &RouterModel, decision: &mut Decision) {
        if decision.stage == Stage::Model
            && !fast_answerable(decision.intent, |i| self.rules.answers(i))
        {
            // Going to the model stage whatever the second router says: agreeing, it names
            // an intent the fast path does not answer.
            return;
        }
        let agreed = second
            .router
            .classify(text)
            .filter(|g| g.intent == decision.intent);
        match agreed {
            None => decision.stage = Stage::Model,
            Some(g) if decision.stage == Stage::Model && g.prob >= second.threshold(g.intent) => {
                decision.stage = Stage::Rule;
                decision.confidence = g.prob;
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    /// The shipped configuration names a second router: a message the two routers place
    /// differently goes to the model stage with the main router's guess, even where one of
    /// them alone is sure; where they agree and one is sure, the fast path answers.
    #[test]
    fn the_fast_path_answers_only_what_both_routers_agree_on() {
        let cfg = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conf")).unwrap();
        let p = Pipeline::new(&cfg, None).unwrap();
        let (main, second) = (p.router().unwrap(), p.fast_path_router().unwrap());
        // A product question no rule fits: the second router says human_agent, surely; the
        // main router product_detail.
        let text = "有真人实拍图吗";
        let (m, s) = (
            main.router.classify(text).unwrap(),
            second.router.classify(text).unwrap(),
        );
        assert_ne!(m.intent, s.intent);
        assert!(s.prob >= second.threshold(s.intent), "{s:?}");
        let d = p.decide(text);
        assert_eq!((d.stage, d.intent), (Stage::Model, m.intent));

        let text = "我要退款";
        assert!(
            p.keywords().classify(text).is_none(),
            "no keyword rule decides it"
        );
        assert_eq!(
            main.router.classify(text).unwrap().intent,
            Intent::RefundApply
        );
        assert_eq!(
            second.router.classify(text).unwrap().intent,
            Intent::RefundApply
        );
        let d = p.decide(text);
        assert_eq!((d.stage, d.intent), (Stage::Rule, Intent::RefundApply));
    }
}
