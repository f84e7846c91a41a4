//! Operator keyword rules: the override layer in front of the trained router.
//!
//! All keywords and exclude words of all intents go into one character-wise double-array
//! Aho-Corasick automaton (daachorse), fed the folded text one character at a time, so a
//! classification is one pass over the text with no allocation. Regex patterns, rarer, run
//! as one `RegexSet` pass. The longest hit wins because a longer phrase is the more specific
//! rule (`退款进度` over `退款`); ties go to `priority`, then to file order.

use std::borrow::Cow;

use daachorse::CharwiseDoubleArrayAhoCorasick;
use regex::{Regex, RegexSet};

use crate::config::IntentsConfig;
use crate::intent::Intent;
use crate::text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Keyword,
    Exclude,
}

#[derive(Debug, Clone, Copy)]
struct Target {
    /// Index of the intent's entry in `intents` (file order).
    slot: usize,
    role: Role,
}

/// What a keyword rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeywordHit {
    pub intent: Intent,
    /// Length in characters of the hit that decided it.
    pub matched_chars: usize,
}

pub struct KeywordRouter {
    /// Value: index into `targets`.
    automaton: Option<CharwiseDoubleArrayAhoCorasick<u32>>,
    /// Per pattern: its length in characters and every (intent, role) it belongs to.
    targets: Vec<(usize, Vec<Target>)>,
    regex_set: Option<RegexSet>,
    /// Parallel to `regex_set`: the intent slot and the compiled regex, to measure a hit.
    regexes: Vec<(usize, Regex)>,
    /// In file order: (intent, priority).
    intents: Vec<(Intent, i32)>,
}

/// At most this many intents carry rules (the enum has 30).
const MAX_SLOTS: usize = 64;

impl KeywordRouter {
    pub fn new(cfg: &IntentsConfig) -> anyhow::Result<KeywordRouter> {
        anyhow::ensure!(cfg.intents.len() <= MAX_SLOTS, "too many intents");
        let mut patterns: Vec<String> = Vec::new();
        let mut targets: Vec<(usize, Vec<Target>)> = Vec::new();
        let mut add = |word: &str, target: Target| match patterns.iter().position(|p| p == word) {
            Some(i) => targets[i].1.push(target),
            None => {
                patterns.push(word.to_owned());
                targets.push((word.chars().count(), vec![target]));
            }
        };
        let mut regexes = Vec::new();
        for (slot, rules) in cfg.intents.iter().enumerate() {
            for k in &rules.keywords {
                add(
                    k,
                    Target {
                        slot,
                        role: Role::Keyword,
                    },
                );
            }
            for k in &rules.exclude {
                add(
                    k,
                    Target {
                        slot,
                        role: Role::Exclude,
                    },
                );
            }
            for p in &rules.patterns {
                regexes.push((slot, p.0.clone()));
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            let values = patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (p.as_str(), i as u32));
            Some(
                CharwiseDoubleArrayAhoCorasick::with_values(values)
                    .map_err(|e| anyhow::anyhow!("building keyword automaton: {e}"))?,
            )
        };
        let regex_set = if regexes.is_empty() {
            None
        } else {
            Some(RegexSet::new(regexes.iter().map(|(_, r)| r.as_str()))?)
        };
        Ok(KeywordRouter {
            automaton,
            targets,
            regex_set,
            regexes,
            intents: cfg.intents.iter().map(|r| (r.intent, r.priority)).collect(),
        })
    }

    /// The intent an operator rule assigns to `text`, if any.
    pub fn classify(&self, text: &str) -> Option<KeywordHit> {
        let mut best_len = [0usize; MAX_SLOTS];
        let mut excluded = 0u64;
        if let Some(ac) = &self.automaton {
            let mut stepper = ac.find_overlapping_stepper();
            for c in text.chars() {
                stepper.consume(text::fold_char(c));
                for m in stepper.matches() {
                    let (len, targets) = &self.targets[m.value() as usize];
                    for t in targets {
                        match t.role {
                            Role::Keyword => best_len[t.slot] = best_len[t.slot].max(*len),
                            Role::Exclude => excluded |= 1 << t.slot,
                        }
                    }
                }
            }
        }
        if let Some(set) = &self.regex_set {
            let folded: Cow<'_, str> = if text::is_folded(text) {
                Cow::Borrowed(text)
            } else {
                Cow::Owned(text::fold(text))
            };
            for i in set.matches(&folded).iter() {
                let (slot, re) = &self.regexes[i];
                if let Some(m) = re.find(&folded) {
                    best_len[*slot] = best_len[*slot].max(m.as_str().chars().count().max(1));
                }
            }
        }
        let mut winner: Option<(usize, usize)> = None; // (slot, len)
        for (slot, &len) in best_len.iter().enumerate().take(self.intents.len()) {
            if len == 0 || excluded & (1 << slot) != 0 {
                continue;
            }
            let better = match winner {
                None => true,
                Some((w, wlen)) => {
                    len > wlen || (len == wlen && self.intents[slot].1 > self.intents[w].1)
                }
            };
            if better {
                winner = Some((slot, len));
            }
        }
        winner.map(|(slot, len)| KeywordHit {
            intent: self.intents[slot].0,
            matched_chars: len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IntentRules;
    use crate::config::types::Pattern;
    use crate::rules::Template;

    fn rules(intent: Intent, keywords: &[&str], exclude: &[&str], priority: i32) -> IntentRules {
        IntentRules {
            intent,
            keywords: keywords.iter().map(|s| text::fold(s)).collect(),
            patterns: vec![],
            exclude: exclude.iter().map(|s| text::fold(s)).collect(),
            priority,
            replies: vec![Template::parse("r").unwrap()],
        }
    }

    fn router(mut intents: Vec<IntentRules>, pattern: Option<(Intent, &str)>) -> KeywordRouter {
        if let Some((intent, p)) = pattern {
            let mut r = rules(intent, &[], &[], 0);
            r.patterns.push(Pattern(Regex::new(p).unwrap()));
            intents.push(r);
        }
        KeywordRouter::new(&IntentsConfig {
            fallback_reply: "f".into(),
            intents,
        })
        .unwrap()
    }

    fn intent(r: &KeywordRouter, text: &str) -> Option<Intent> {
        r.classify(text).map(|h| h.intent)
    }

    #[test]
    fn longest_hit_wins_and_excludes_veto() {
        let r = router(
            vec![
                rules(Intent::RefundApply, &["退款", "我要退款"], &["退款进度"], 0),
                rules(Intent::RefundProgress, &["退款进度", "钱什么时候"], &[], 0),
                rules(Intent::ReturnGoods, &["退货"], &[], 0),
            ],
            None,
        );
        assert_eq!(intent(&r, "亲，我要退款"), Some(Intent::RefundApply));
        assert_eq!(intent(&r, "退款进度到哪了"), Some(Intent::RefundProgress));
        assert_eq!(
            intent(&r, "查下退款进度，我要退款的那个"),
            Some(Intent::RefundProgress)
        );
        assert_eq!(intent(&r, "在吗"), None);
    }

    #[test]
    fn ties_go_to_priority_then_file_order() {
        let r = router(
            vec![
                rules(Intent::ReturnGoods, &["退货"], &[], 0),
                rules(Intent::RefundApply, &["退款"], &[], 0),
            ],
            None,
        );
        assert_eq!(intent(&r, "退款退货"), Some(Intent::ReturnGoods));
        let r = router(
            vec![
                rules(Intent::ReturnGoods, &["退货"], &[], 0),
                rules(Intent::RefundApply, &["退款"], &[], 5),
            ],
            None,
        );
        assert_eq!(intent(&r, "退款退货"), Some(Intent::RefundApply));
    }

    #[test]
    fn matching_is_on_folded_text_and_regexes_count_their_length() {
        let r = router(
            vec![rules(Intent::Coupon, &["yhq", "优惠券"], &[], 0)],
            Some((Intent::Invoice, "开.{0,4}发票")),
        );
        assert_eq!(intent(&r, "ＹＨＱ怎么用"), Some(Intent::Coupon));
        assert_eq!(intent(&r, "YHQ"), Some(Intent::Coupon));
        assert_eq!(intent(&r, "能开个增值税发票吗"), Some(Intent::Invoice));
        let hit = r.classify("能开个发票吗").unwrap();
        assert_eq!(hit.matched_chars, 4);
    }

    #[test]
    fn the_same_word_may_serve_several_intents() {
        let r = router(
            vec![
                rules(Intent::Greeting, &["在吗"], &[], 0),
                rules(Intent::HumanAgent, &["人工"], &["在吗"], 0),
            ],
            None,
        );
        assert_eq!(intent(&r, "在吗 人工"), Some(Intent::Greeting));
        assert_eq!(intent(&r, "人工"), Some(Intent::HumanAgent));
    }
}
