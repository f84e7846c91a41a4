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
    intents: IndexMap<Intent, RawIntentRules>,
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
    replies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntentsConfig {
    /// Answer when nothing fits (`source: fallback`).
    pub fallback_reply: String,
    /// In file order, which breaks ties between equally long keyword hits.
    pub intents: Vec<IntentRules>,
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
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(IntentsConfig {
        fallback_reply: raw.fallback_reply,
        intents,
    })
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
