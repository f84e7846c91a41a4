//! Rule cache: the ready answers for intents the edge answers itself.
//!
//! Every template's variables are known at load time (today: the campaign text, one of a
//! handful), so the cache renders each template once per campaign state and hands the
//! result to a `prepare` step chosen by the caller (the pipeline runs the reply filter and
//! JSON-escapes it). Answering is then picking a prepared reply: no rendering, masking or
//! escaping per request. Several templates per intent rotate, so a shopper who asks twice
//! does not get a robot's identical sentence.
//!
//! Templates that use a dialogue slot (`{order}`, `{size}`, `{color}`) cannot be rendered
//! ahead: they are kept parsed and rendered per request, and chosen only when the dialogue
//! has their slots (then in preference to the generic ones, since they say more).

use std::sync::atomic::{AtomicUsize, Ordering};

pub use crate::template::{Template, TemplateError, Var, Vars};

use crate::config::IntentsConfig;
use crate::intent::Intent;

/// Prepared replies of type `R` per intent, template and campaign state.
pub struct RuleCache<R> {
    /// `[intent][template][campaign]`: campaign 0 is "no campaign open", `i + 1` is
    /// campaign `i`. Empty for intents without replies.
    replies: Vec<Vec<Vec<R>>>,
    /// `[intent]`: the templates that use slots.
    slotted: Vec<Vec<Template>>,
    campaigns: Vec<String>,
    next: Vec<AtomicUsize>,
}

/// A reply of the cache: prepared at load time, or rendered for this request from a slot
/// template (the caller filters it).
#[derive(Debug, PartialEq)]
pub enum CachedReply<'a, R> {
    Prepared(&'a R),
    Rendered(String),
}

impl<R> RuleCache<R> {
    /// Render every template with no campaign and with each of `campaigns`, and keep what
    /// `prepare` makes of each rendering.
    pub fn new(
        cfg: &IntentsConfig,
        campaigns: &[&str],
        mut prepare: impl FnMut(String) -> anyhow::Result<R>,
    ) -> anyhow::Result<RuleCache<R>> {
        let mut replies: Vec<Vec<Vec<R>>> = (0..Intent::ALL.len()).map(|_| Vec::new()).collect();
        let mut slotted: Vec<Vec<Template>> = (0..Intent::ALL.len()).map(|_| Vec::new()).collect();
        for rules in &cfg.intents {
            let mut templates = Vec::with_capacity(rules.replies.len());
            for t in &rules.replies {
                if t.uses_slots() {
                    slotted[rules.intent.index()].push(t.clone());
                    continue;
                }
                let variants = std::iter::once("")
                    .chain(campaigns.iter().copied())
                    .map(|campaign| {
                        prepare(t.render(&Vars {
                            campaign,
                            ..Vars::default()
                        }))
                    })
                    .collect::<anyhow::Result<Vec<R>>>()?;
                templates.push(variants);
            }
            replies[rules.intent.index()] = templates;
        }
        Ok(RuleCache {
            next: (0..replies.len()).map(|_| AtomicUsize::new(0)).collect(),
            replies,
            slotted,
            campaigns: campaigns.iter().map(|c| c.to_string()).collect(),
        })
    }

    /// A reply for `intent` given the dialogue's slots in `slots` (its campaign field is
    /// ignored: `campaign` is used, as in [`RuleCache::reply`]). A slot template whose
    /// slots are all known is preferred; otherwise a prepared reply.
    pub fn reply_with(
        &self,
        intent: Intent,
        campaign: Option<usize>,
        slots: &Vars<'_>,
    ) -> Option<CachedReply<'_, R>> {
        let fitting: Vec<&Template> = self.slotted[intent.index()]
            .iter()
            .filter(|t| t.fits(slots))
            .collect();
        if fitting.is_empty() {
            return self.reply(intent, campaign).map(CachedReply::Prepared);
        }
        let i = self.next[intent.index()].fetch_add(1, Ordering::Relaxed) % fitting.len();
        let vars = Vars {
            campaign: campaign
                .and_then(|c| self.campaigns.get(c))
                .map_or("", String::as_str),
            ..*slots
        };
        Some(CachedReply::Rendered(fitting[i].render(&vars)))
    }

    /// Whether the cache can answer `intent`.
    pub fn answers(&self, intent: Intent) -> bool {
        !self.replies[intent.index()].is_empty()
    }

    /// A reply for `intent` with campaign `campaign` (an index into the `campaigns` given
    /// to `new`) open, or `None` if the intent has no templates.
    pub fn reply(&self, intent: Intent, campaign: Option<usize>) -> Option<&R> {
        let templates = &self.replies[intent.index()];
        if templates.is_empty() {
            return None;
        }
        let i = self.next[intent.index()].fetch_add(1, Ordering::Relaxed) % templates.len();
        let variants = &templates[i];
        variants
            .get(campaign.map_or(0, |c| c + 1))
            .or(variants.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IntentRules;

    #[test]
    fn prepares_every_template_for_every_campaign_and_rotates() {
        let cfg = IntentsConfig {
            fallback_reply: "f".into(),
            conversation: Default::default(),
            intents: vec![IntentRules {
                intent: Intent::Coupon,
                keywords: vec![],
                patterns: vec![],
                exclude: vec![],
                priority: 0,
                answer: crate::config::AnswerPolicy::Template,
                replies: vec![
                    Template::parse("a{campaign}").unwrap(),
                    Template::parse("b").unwrap(),
                ],
            }],
        };
        let mut prepared = 0;
        let cache = RuleCache::new(&cfg, &["!", "?"], |s| {
            prepared += 1;
            Ok(s.to_uppercase())
        })
        .unwrap();
        assert_eq!(prepared, 6, "2 templates x (no campaign + 2 campaigns)");
        assert!(cache.answers(Intent::Coupon));
        assert!(!cache.answers(Intent::Invoice));
        let seen: Vec<&str> = (0..4)
            .map(|_| cache.reply(Intent::Coupon, Some(1)).unwrap().as_str())
            .collect();
        assert_eq!(seen, ["A?", "B", "A?", "B"]);
        assert_eq!(cache.reply(Intent::Coupon, None).unwrap(), "A");
        assert_eq!(cache.reply(Intent::Invoice, None), None);
    }

    #[test]
    fn slot_templates_are_rendered_per_request_when_their_slots_are_known() {
        let cfg = IntentsConfig {
            fallback_reply: "f".into(),
            conversation: Default::default(),
            intents: vec![IntentRules {
                intent: Intent::ReturnGoods,
                keywords: vec![],
                patterns: vec![],
                exclude: vec![],
                priority: 0,
                answer: crate::config::AnswerPolicy::Template,
                replies: vec![
                    Template::parse("generic{campaign}").unwrap(),
                    Template::parse("order {order}{campaign}").unwrap(),
                ],
            }],
        };
        let cache = RuleCache::new(&cfg, &["!"], Ok).unwrap();
        let none = Vars::default();
        for _ in 0..3 {
            assert_eq!(
                cache.reply_with(Intent::ReturnGoods, None, &none),
                Some(CachedReply::Prepared(&"generic".to_string()))
            );
        }
        let known = Vars {
            order: Some("123"),
            campaign: "ignored",
            ..Vars::default()
        };
        assert_eq!(
            cache.reply_with(Intent::ReturnGoods, Some(0), &known),
            Some(CachedReply::Rendered("order 123!".into()))
        );
        assert_eq!(cache.reply(Intent::ReturnGoods, None).unwrap(), "generic");
    }
}
