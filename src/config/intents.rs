//! `intents.yaml`: reply templates per intent (the rule cache) and the operator keyword
//! rules that override the trained router.

use indexmap::IndexMap;
use serde::Deserialize;

use super::ConfigError;
use super::source::Source;
use super::types::Pattern;
use crate::intent::{Intent, Tier};
use crate::template::Template;
use crate::text;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntents {
    fallback_reply: String,
    #[serde(default)]
    conversation: Option<RawConversation>,
    intents: IndexMap<Intent, RawIntentRules>,
}

/// Turns that carry no request: acknowledgements, closings, a pasted card or link.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConversation {
    acknowledgements: Vec<String>,
    closings: Vec<String>,
    #[serde(default)]
    confirmations: Vec<String>,
    #[serde(default)]
    fillers: Vec<String>,
    keep_open: String,
    closing: String,
    with_person: String,
    order_card: String,
    product_link: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntentRules {
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    patterns: Vec<Pattern>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    answer: Option<AnswerPolicy>,
    #[serde(default)]
    replies: Vec<String>,
}

/// Who answers an intent once it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerPolicy {
    /// The intent's reply templates (the rule cache).
    Template,
    /// The shop's bot (`model.yaml` `answer_upstream`); its templates, or a person, when
    /// there is none or it fails.
    Bot,
    /// A person: the intent's template (an apology, a "connecting you") with the hand-off.
    Human,
}

impl AnswerPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerPolicy::Template => "template",
            AnswerPolicy::Bot => "bot",
            AnswerPolicy::Human => "human",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntentsConfig {
    /// The hand-off to a person (`handoff: true`); used for nothing else.
    pub fallback_reply: String,
    /// In file order, which breaks ties between equally long keyword hits.
    pub intents: Vec<IntentRules>,
    pub conversation: ConversationConfig,
}

/// Turns that carry no request (`conversation` in intents.yaml), folded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConversationConfig {
    /// 好的, 嗯, ok …: the message is one of these (or several, with `fillers`).
    pub acknowledgements: Vec<String>,
    /// 谢谢, 没了, 拜拜 …: an acknowledgement that ends the conversation.
    pub closings: Vec<String>,
    /// 是的, 对 …: a yes to the turn before, which stays on that turn's topic.
    pub confirmations: Vec<String>,
    /// Words that may stand around them (亲, 啊, 呀).
    pub fillers: Vec<String>,
    /// The reply to an acknowledgement after an answer.
    pub keep_open: Template,
    /// The reply to a closing.
    pub closing: Template,
    /// The reply to an acknowledgement after a hand-off (the person has the chat; the
    /// answer still says `handoff`, but a bare 好的 never gets the hand-off text again).
    pub with_person: Template,
    /// The reply to an order card or bare order number that opens a chat (`{order}`).
    pub order_card: Template,
    /// The reply to a product link that opens a chat.
    pub product_link: Template,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntentRules {
    pub intent: Intent,
    /// Folded with [`text::fold`], like the text they are matched against.
    pub keywords: Vec<String>,
    pub patterns: Vec<Pattern>,
    /// Folded substrings that veto this intent.
    pub exclude: Vec<String>,
    pub priority: i32,
    pub answer: AnswerPolicy,
    pub replies: Vec<Template>,
}

pub fn validate(raw: RawIntents, src: &Source) -> Result<IntentsConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if raw.fallback_reply.trim().is_empty() {
        errors.push(src.error_at("fallback_reply", "fallback_reply must not be empty"));
    }
    let mut intents = Vec::with_capacity(raw.intents.len());
    for (intent, r) in raw.intents {
        let id = intent.as_str();
        let mut replies = Vec::with_capacity(r.replies.len());
        for reply in &r.replies {
            match Template::parse(reply) {
                Ok(t) => replies.push(t),
                Err(e) => errors.push(src.error_at(id, format!("{id}: reply `{reply}`: {e}"))),
            }
        }
        if !replies.is_empty() && replies.iter().all(Template::uses_slots) {
            errors.push(src.error_at(
                id,
                format!("{id}: needs a reply without {{order}}/{{size}}/{{color}}, for dialogues that lack them"),
            ));
        }
        let has_rules = !r.keywords.is_empty() || !r.patterns.is_empty();
        if r.replies.is_empty() && (has_rules || intent.tier() == Tier::Fast) {
            errors.push(src.error_at(id, format!("{id}: needs at least one reply")));
        }
        // Unsaid: templates when there are some, else the shop's bot.
        let answer = r.answer.unwrap_or(if r.replies.is_empty() {
            AnswerPolicy::Bot
        } else {
            AnswerPolicy::Template
        });
        if answer == AnswerPolicy::Template && r.replies.is_empty() {
            errors.push(src.error_at(
                id,
                format!("{id}: `answer: template` needs at least one reply"),
            ));
        }
        let mut keywords: Vec<String> = Vec::with_capacity(r.keywords.len());
        for k in &r.keywords {
            let folded = text::fold(k.trim());
            if folded.is_empty() {
                errors.push(src.error_at(id, format!("{id}: empty keyword")));
            } else if keywords.contains(&folded) {
                errors.push(src.error_at(id, format!("{id}: keyword `{k}` listed twice")));
            } else {
                keywords.push(folded);
            }
        }
        let mut exclude = Vec::with_capacity(r.exclude.len());
        for k in &r.exclude {
            let folded = text::fold(k.trim());
            if folded.is_empty() {
                errors.push(src.error_at(id, format!("{id}: empty exclude entry")));
            } else {
                exclude.push(folded);
            }
        }
        intents.push(IntentRules {
            intent,
            keywords,
            patterns: r.patterns,
            exclude,
            priority: r.priority,
            answer,
            replies,
        });
    }
    for fast in Intent::fast() {
        if !intents.iter().any(|r| r.intent == fast) {
            errors.push(src.error_at(
                "intents",
                format!(
                    "fast intent `{fast}` has no entry (the rule cache answers every fast intent)"
                ),
            ));
        }
    }
    let conversation = match raw.conversation {
        Some(c) => conversation(c, src, &mut errors),
        None => ConversationConfig::default(),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(IntentsConfig {
        fallback_reply: raw.fallback_reply,
        intents,
        conversation,
    })
}

fn conversation(
    c: RawConversation,
    src: &Source,
    errors: &mut Vec<ConfigError>,
) -> ConversationConfig {
    let mut template = |key: &str, text: &str| match Template::parse(text) {
        Ok(t) => t,
        Err(e) => {
            errors.push(src.error_at(key, format!("conversation.{key}: `{text}`: {e}")));
            Template::default()
        }
    };
    let words = |list: Vec<String>| -> Vec<String> {
        list.iter()
            .map(|w| text::fold(w.trim()))
            .filter(|w| !w.is_empty())
            .collect()
    };
    ConversationConfig {
        keep_open: template("keep_open", &c.keep_open),
        closing: template("closing", &c.closing),
        with_person: template("with_person", &c.with_person),
        order_card: template("order_card", &c.order_card),
        product_link: template("product_link", &c.product_link),
        acknowledgements: words(c.acknowledgements),
        closings: words(c.closings),
        confirmations: words(c.confirmations),
        fillers: words(c.fillers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str) -> Result<IntentsConfig, Vec<ConfigError>> {
        Source::check_text(Path::new("conf"), "intents.yaml", text, validate)
    }

    #[test]
    fn unknown_intent_ids_are_reported_with_their_line() {
        let e = check("fallback_reply: x\nintents:\n  refund: {replies: [a]}\n").unwrap_err();
        assert_eq!(e[0].line, Some(3), "{e:?}");
        assert!(e[0].reason.contains("unknown intent id `refund`"), "{e:?}");
    }

    #[test]
    fn every_fast_intent_needs_replies_and_templates_must_parse() {
        let e = check(
            "fallback_reply: x\nintents:\n  coupon:\n    keywords: [优惠券]\n    replies: ['亲{coupon_code}']\n",
        )
        .unwrap_err();
        let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("unknown variable `{coupon_code}`")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("fast intent `refund_apply` has no entry"))
        );
        assert_eq!(
            e.iter()
                .filter(|e| e.reason.contains("has no entry"))
                .count(),
            19
        );
    }

    #[test]
    fn keywords_are_folded() {
        let mut text = String::from("fallback_reply: x\nintents:\n");
        for i in Intent::fast() {
            text.push_str(&format!("  {i}: {{replies: [r]}}\n"));
        }
        text.push_str("  complaint: {keywords: ['ＴＳ投诉'], replies: [r]}\n");
        let c = check(&text).unwrap();
        assert_eq!(c.intents.last().unwrap().keywords, vec!["ts投诉"]);
    }
}
