//! Context rules: a short message that only makes sense after an earlier turn ("那要多久"
//! after a refund request, "算了还是直接退了吧" after an exchange) is resolved to the intent
//! the dialogue gives it.
//!
//! Rules are operator configuration (`dialog.yaml`), matched like keyword rules: literal
//! cues on the folded text (full-width and case folded), one Aho-Corasick automaton per
//! rule. The first rule that applies wins, so specific rules go before general ones.

use aho_corasick::AhoCorasick;

use crate::config::{After, ContextConfig, FollowUpIntent};
use crate::intent::Intent;
use crate::text;

struct FollowUp {
    after: After,
    cues: AhoCorasick,
    intent: FollowUpIntent,
    max_chars: usize,
}

/// What the dialogue offers one message: the intents of its recent turns (newest first,
/// within the context window), the text of the newest of them (what the model stage reads
/// beside the message), and the order reference the message itself names (read once by the
/// caller, with the turn's other slots).
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub recent: &'a [Intent],
    pub previous_text: Option<&'a str>,
    pub order: Option<&'a str>,
    /// The previous answer handed the shopper to a person.
    pub handed_to_human: bool,
}

impl<'a> Context<'a> {
    /// No dialogue: the message is decided alone.
    pub const NONE: Context<'static> = Context {
        recent: &[],
        previous_text: None,
        order: None,
        handed_to_human: false,
    };

    /// The previous turn (intent and text), when there is one in the window.
    pub fn previous(&self) -> Option<(Intent, &'a str)> {
        Some((*self.recent.first()?, self.previous_text?))
    }

    /// The dialogue's topic: the newest request among the recent turns
    /// ([`Intent::is_request`]), which a follow-up most often goes on with.
    pub fn topic(&self) -> Option<Intent> {
        self.recent.iter().copied().find(|i| i.is_request())
    }
}

pub struct ContextRules {
    within_secs: i64,
    model_decides_follow_ups: bool,
    rules: Vec<FollowUp>,
}

impl ContextRules {
    pub fn new(cfg: &ContextConfig) -> anyhow::Result<ContextRules> {
        let rules = cfg
            .follow_ups
            .iter()
            .map(|r| {
                let cues: Vec<String> = r.cues.iter().map(|c| text::fold(c)).collect();
                Ok(FollowUp {
                    after: r.after.clone(),
                    cues: AhoCorasick::new(&cues)?,
                    intent: r.intent,
                    max_chars: r.max_chars,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(ContextRules {
            within_secs: i64::try_from(cfg.within.as_secs()).unwrap_or(i64::MAX),
            model_decides_follow_ups: cfg.model_decides_follow_ups,
            rules,
        })
    }

    /// Whether a message with a previous turn goes to the model stage rather than the
    /// router's fast path: on the written training dialogues the fast path answered 290 of
    /// the turns after the first and got 97 wrong (the message alone reads otherwise); at
    /// a router threshold of 0.98 it still got 36 of 183 wrong (models/README.md).
    pub fn model_decides_follow_ups(&self) -> bool {
        self.model_decides_follow_ups
    }

    /// How old a previous turn may be and still count as context, in seconds.
    pub fn within_secs(&self) -> i64 {
        self.within_secs
    }

    /// The intent `text` has as a follow-up in `context`, if a rule says so. A rule
    /// applies after any of the recent intents, so a side question ("S码还有吗") does not
    /// end the topic it interrupted.
    pub fn resolve(&self, text: &str, context: &Context<'_>) -> Option<Intent> {
        let recent = context.recent;
        let previous = *recent.first()?;
        if context.order.is_some_and(|order| order_only(text, order)) {
            return Some(previous);
        }
        if self.rules.is_empty() {
            return None;
        }
        let chars = text.chars().filter(|c| !c.is_whitespace()).count();
        let folded;
        let haystack = if text::is_folded(text) {
            text
        } else {
            folded = text::fold(text);
            &folded
        };
        self.rules
            .iter()
            .filter(|r| chars <= r.max_chars)
            .filter(|r| match &r.after {
                After::Any => true,
                After::Intents(intents) => recent.iter().any(|i| intents.contains(i)),
            })
            .find(|r| r.cues.is_match(haystack))
            .map(|r| match r.intent {
                FollowUpIntent::Previous => previous,
                FollowUpIntent::Intent(i) => i,
            })
    }
}

/// Whether `text`, which names the order reference `order`, only gives it ("订单号 3012…",
/// "就那个单 3012…"): the answer to "which order?", so it continues the question before it.
fn order_only(text: &str, order: &str) -> bool {
    const FILLER: &[&str] = &[
        "订单号",
        "订单",
        "单号",
        "就是",
        "这个",
        "那个",
        "是",
        "的",
        "单",
        "号",
        "我的",
        "了",
        "呢",
        "哦",
        "啊",
        "吧",
    ];
    let mut rest = text.replacen(order, "", 1);
    for f in FILLER {
        rest = rest.replace(f, "");
    }
    rest.chars()
        .filter(|c| !c.is_whitespace() && !c.is_ascii_punctuation() && !"，。：！？、".contains(*c))
        .count()
        <= 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FollowUpRule;
    use crate::dialog::Slots;
    use std::time::Duration;

    /// Resolve as the callers do: the order reference read from the text itself.
    fn resolve(r: &ContextRules, text: &str, recent: &[Intent]) -> Option<Intent> {
        let order = Slots::extract(text).order;
        let context = Context {
            recent,
            previous_text: None,
            order: order.as_deref(),
            handed_to_human: false,
        };
        r.resolve(text, &context)
    }

    fn rules() -> ContextRules {
        let rule = |after: After, cues: &[&str], intent, max_chars| FollowUpRule {
            after,
            cues: cues.iter().map(|c| c.to_string()).collect(),
            intent,
            max_chars,
        };
        ContextRules::new(&ContextConfig {
            within: Duration::from_secs(600),
            model_decides_follow_ups: true,
            follow_ups: vec![
                rule(
                    After::Intents(vec![Intent::RefundApply]),
                    &["多久", "几天"],
                    FollowUpIntent::Intent(Intent::RefundProgress),
                    10,
                ),
                rule(
                    After::Intents(vec![Intent::ExchangeGoods]),
                    &["直接退", "不换了"],
                    FollowUpIntent::Intent(Intent::ReturnGoods),
                    16,
                ),
                rule(After::Any, &["那个单子"], FollowUpIntent::Previous, 12),
            ],
        })
        .unwrap()
    }

    #[test]
    fn follow_ups_resolve_only_after_their_intents() {
        let r = rules();
        use Intent::*;
        assert_eq!(
            resolve(&r, "那要多久", &[RefundApply]),
            Some(RefundProgress)
        );
        assert_eq!(resolve(&r, "那要多久", &[Coupon]), None);
        assert_eq!(
            resolve(&r, "那要多久", &[]),
            None,
            "no dialogue, no follow-up"
        );
        assert_eq!(
            resolve(&r, "算了还是直接退了吧", &[StockInquiry, ExchangeGoods]),
            Some(ReturnGoods),
            "a side question does not end the exchange"
        );
        assert_eq!(
            resolve(&r, "还是那个单子", &[LogisticsTrack]),
            Some(LogisticsTrack)
        );
        assert_eq!(r.within_secs(), 600);
    }

    #[test]
    fn a_bare_order_number_answers_the_previous_question() {
        let r = rules();
        use Intent::*;
        assert_eq!(
            resolve(&r, "订单号 3012345678901234", &[RefundProgress]),
            Some(RefundProgress)
        );
        assert_eq!(
            resolve(&r, "就是这个 3012345678901234。", &[Invoice]),
            Some(Invoice)
        );
        assert_eq!(
            resolve(&r, "3012345678901234 这个要开发票", &[Coupon]),
            None
        );
        assert!(!order_only(
            "订单号3012345678901234 怎么还没发货",
            "3012345678901234"
        ));
    }

    #[test]
    fn long_messages_are_questions_of_their_own() {
        let r = rules();
        assert_eq!(
            resolve(&r, "我想问问你们家优惠券多久过期啊", &[Intent::RefundApply]),
            None,
            "over max_chars"
        );
        assert_eq!(
            resolve(&r, "那要几天啊", &[Intent::RefundApply]),
            Some(Intent::RefundProgress)
        );
    }
}
