//! Rule cache: the ready answers for intents the edge answers itself.
//!
//! Templates are parsed at load time; answering is picking one and rendering it into the
//! caller's buffer. Several templates per intent rotate, so a shopper who asks twice does not
//! get a robot's identical sentence.

mod template;

use std::sync::atomic::{AtomicUsize, Ordering};

pub use template::{Template, TemplateError, Var, Vars};

use crate::config::IntentsConfig;
use crate::intent::Intent;

pub struct RuleCache {
    /// Indexed by `Intent::index()`; empty for intents without replies.
    replies: Vec<Vec<Template>>,
    next: Vec<AtomicUsize>,
}

impl RuleCache {
    pub fn new(cfg: &IntentsConfig) -> RuleCache {
        let mut replies = vec![Vec::new(); Intent::ALL.len()];
        for r in &cfg.intents {
            replies[r.intent.index()] = r.replies.clone();
        }
        RuleCache {
            next: (0..replies.len()).map(|_| AtomicUsize::new(0)).collect(),
            replies,
        }
    }

    /// Whether the cache can answer `intent`.
    pub fn answers(&self, intent: Intent) -> bool {
        !self.replies[intent.index()].is_empty()
    }

    /// Render a reply for `intent` into `out`; `false` (and `out` untouched) if there is none.
    pub fn render_into(&self, intent: Intent, vars: &Vars<'_>, out: &mut String) -> bool {
        let templates = &self.replies[intent.index()];
        if templates.is_empty() {
            return false;
        }
        let i = self.next[intent.index()].fetch_add(1, Ordering::Relaxed) % templates.len();
        templates[i].render_into(vars, out);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IntentRules;

    #[test]
    fn rotates_templates_and_knows_what_it_answers() {
        let cfg = IntentsConfig {
            fallback_reply: "f".into(),
            intents: vec![IntentRules {
                intent: Intent::Coupon,
                keywords: vec![],
                patterns: vec![],
                exclude: vec![],
                priority: 0,
                replies: vec![
                    Template::parse("a{campaign}").unwrap(),
                    Template::parse("b").unwrap(),
                ],
            }],
        };
        let cache = RuleCache::new(&cfg);
        assert!(cache.answers(Intent::Coupon));
        assert!(!cache.answers(Intent::Invoice));
        let vars = Vars { campaign: "!" };
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut out = String::new();
            assert!(cache.render_into(Intent::Coupon, &vars, &mut out));
            seen.push(out);
        }
        assert_eq!(seen, ["a!", "b", "a!", "b"]);
        let mut out = String::new();
        assert!(!cache.render_into(Intent::Invoice, &vars, &mut out));
        assert!(out.is_empty());
    }
}
