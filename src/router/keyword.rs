//! Operator keyword rules: the override layer in front of the trained router.
//!
//! All keywords and exclude words of all intents go into one character-wise double-array
//! Aho-Corasick automaton (daachorse), fed the folded text one character at a time, so a
//! classification is one pass over the text with no allocation. The longest hit wins because
//! a longer phrase is the more specific rule (`退款进度` over `退款`); ties go to `priority`,
//! then to file order.
//!
//! Regex patterns are gated: at load time each pattern's necessary literals (see `gate`)
//! join the same automaton, and a pattern runs only on messages where one of its literals
//! occurred. Running all patterns as a `RegexSet` on every message cost more than the whole
//! keyword pass; gated, most messages run none. A pattern without necessary literals (say
//! `\d{11}`) runs on every message.

use std::borrow::Cow;

use daachorse::CharwiseDoubleArrayAhoCorasick;
use regex::Regex;

use super::gate::gate_literals;
use crate::config::IntentsConfig;
use crate::intent::Intent;
use crate::text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A keyword of the intent at this slot (file order).
    Keyword(usize),
    /// An exclude word of the intent at this slot.
    Exclude(usize),
    /// A necessary literal of the regex at this index.
    Gate(usize),
}

/// What a keyword rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeywordHit {
    pub intent: Intent,
    /// Length in characters of the hit that decided it.
    pub matched_chars: usize,
    /// The rule that decided it (see [`KeywordRouter::rule_name`]).
    pub rule: RuleId,
}

/// A keyword (index into the automaton's patterns) or a regex (index into the patterns of
/// intents.yaml, in file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    Keyword(u32),
    Regex(u32),
}

pub struct KeywordRouter {
    /// Value: index into `targets`.
    automaton: Option<CharwiseDoubleArrayAhoCorasick<u32>>,
    /// Per pattern: its length in characters and every target it belongs to.
    targets: Vec<(usize, Vec<Target>)>,
    /// The automaton's patterns, for naming rules.
    patterns: Vec<String>,
    /// (intent slot, regex, whether it is gated by literals).
    regexes: Vec<(usize, Regex, bool)>,
    /// In file order: (intent, priority).
    intents: Vec<(Intent, i32)>,
}

/// At most this many intents carry rules (the enum has 30).
const MAX_SLOTS: usize = 64;
/// Regexes beyond this many are not gated (they always run).
const MAX_GATED: usize = 256;

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
                add(k, Target::Keyword(slot));
            }
            for k in &rules.exclude {
                add(k, Target::Exclude(slot));
            }
            for p in &rules.patterns {
                let index = regexes.len();
                let gate = if index < MAX_GATED {
                    gate_literals(p.as_str())
                } else {
                    None
                };
                if let Some(literals) = &gate {
                    for l in literals {
                        add(l, Target::Gate(index));
                    }
                }
                regexes.push((slot, p.0.clone(), gate.is_some()));
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
        Ok(KeywordRouter {
            automaton,
            targets,
            patterns,
            regexes,
            intents: cfg.intents.iter().map(|r| (r.intent, r.priority)).collect(),
        })
    }

    /// The intent an operator rule assigns to `text`, if any.
    pub fn classify(&self, text: &str) -> Option<KeywordHit> {
        let mut best_len = [0usize; MAX_SLOTS];
        let mut best_rule = [RuleId::Keyword(0); MAX_SLOTS];
        let mut excluded = 0u64;
        let mut gates = [0u64; MAX_GATED / 64];
        if let Some(ac) = &self.automaton {
            let mut stepper = ac.find_overlapping_stepper();
            for c in text.chars() {
                stepper.consume(text::fold_char(c));
                for m in stepper.matches() {
                    let (len, targets) = &self.targets[m.value() as usize];
                    for t in targets {
                        match *t {
                            Target::Keyword(slot) if *len > best_len[slot] => {
                                best_len[slot] = *len;
                                best_rule[slot] = RuleId::Keyword(m.value());
                            }
                            Target::Keyword(_) => {}
                            Target::Exclude(slot) => excluded |= 1 << slot,
                            Target::Gate(i) => gates[i / 64] |= 1 << (i % 64),
                        }
                    }
                }
            }
        }
        let mut folded: Option<Cow<'_, str>> = None;
        for (i, (slot, re, gated)) in self.regexes.iter().enumerate() {
            if *gated && gates[i / 64] & (1 << (i % 64)) == 0 {
                continue;
            }
            let haystack = folded.get_or_insert_with(|| {
                if text::is_folded(text) {
                    Cow::Borrowed(text)
                } else {
                    Cow::Owned(text::fold(text))
                }
            });
            if let Some(m) = re.find(haystack) {
                let len = m.as_str().chars().count().max(1);
                if len > best_len[*slot] {
                    best_len[*slot] = len;
                    best_rule[*slot] = RuleId::Regex(i as u32);
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
            rule: best_rule[slot],
        })
    }

    /// A rule as written: the keyword, or the regex between slashes.
    pub fn rule_name(&self, rule: RuleId) -> String {
        match rule {
            RuleId::Keyword(i) => self.patterns.get(i as usize).cloned().unwrap_or_default(),
            RuleId::Regex(i) => self
                .regexes
                .get(i as usize)
                .map(|(_, re, _)| format!("/{}/", re.as_str()))
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IntentRules;
    use crate::config::types::Pattern;
    use crate::template::Template;

    fn rules(intent: Intent, keywords: &[&str], exclude: &[&str], priority: i32) -> IntentRules {
        IntentRules {
            intent,
            keywords: keywords.iter().map(|s| text::fold(s)).collect(),
            patterns: vec![],
            exclude: exclude.iter().map(|s| text::fold(s)).collect(),
            priority,
            answer: crate::config::AnswerPolicy::Template,
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
            conversation: Default::default(),
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
    fn gated_patterns_agree_with_ungated_ones() {
        // The same decisions with gating as with every pattern run on every message.
        let patterns = [
            (Intent::Coupon, "(券|劵)[^,]{0,4}(用不了|失效)"),
            (Intent::SizeAdvice, "[0-9]{2,3}(斤|kg)"),
            (Intent::Greeting, r"^\s*(亲+|在)\s*$"),
            (Intent::HumanAgent, r"\d{3}"),
        ];
        let build = |gated: bool| {
            let mut r = KeywordRouter::new(&IntentsConfig {
                fallback_reply: "f".into(),
                conversation: Default::default(),
                intents: patterns
                    .iter()
                    .map(|(i, p)| {
                        let mut rules = rules(*i, &[], &[], 0);
                        rules.patterns.push(Pattern(Regex::new(p).unwrap()));
                        rules
                    })
                    .collect(),
            })
            .unwrap();
            if !gated {
                r.regexes.iter_mut().for_each(|(_, _, g)| *g = false);
            }
            r
        };
        let (gated, ungated) = (build(true), build(false));
        assert_eq!(
            gated.regexes.iter().filter(|r| r.2).count(),
            3,
            "all but \\d{{3}}"
        );
        for text in [
            "优惠券用不了",
            "这个券失效了",
            "120斤穿多大",
            "亲",
            " 在 ",
            "ＫＧ",
            "55KG",
            "在吗",
            "券",
            "123",
        ] {
            assert_eq!(gated.classify(text), ungated.classify(text), "{text}");
        }
        assert_eq!(
            gated.classify("55KG").map(|h| h.intent),
            Some(Intent::SizeAdvice)
        );
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
