//! Is a plain match the listed word, or ordinary text that happens to contain its characters?
//! Segmentation settles the matches that a dictionary word straddles (加厚大麻布袋), but not
//! the ones where the listed word is itself a dictionary word used in another sense: 爆炸头假发
//! (a wig), 第一泡茶 (an ordinal), 最佳赏味期 (a fact), 沐浴炸弹 (a bath bomb). What decides
//! is the context: the characters and words right before and after the match and their parts
//! of speech, and which listed word it is.
//!
//! `MatchJudge` is a logistic model over those features, trained offline on written examples
//! (`kefu-edge train-filter-judge`, `models/data/filter_train/`) and shipped as a weights file.
//! It only ever judges a *plain* match: written contiguously and as listed, Chinese characters
//! as they are and ASCII letters in either case (`WX390`, `QQ糖`: capitals are how models and
//! brands are written). A match that needed full width folded, skipped separators or sound
//! (`微 信`, `ＶＸ`, `薇信`) is an evasion, and an evasion is always masked.

use std::collections::HashMap;

use super::segment::{self, Segmenter};
use crate::config::JudgeConfig;

pub struct MatchJudge {
    weights: HashMap<String, f32>,
    bias: f32,
    /// A plain match whose probability of being the listed word is below this is left.
    exempt_below: f32,
    segmenter: Segmenter,
}

impl MatchJudge {
    pub fn new(cfg: &JudgeConfig) -> MatchJudge {
        MatchJudge {
            weights: cfg.weights.iter().cloned().collect(),
            bias: cfg.bias,
            exempt_below: cfg.exempt_below,
            segmenter: Segmenter::new(),
        }
    }

    /// The reply's words with their parts of speech, for every match of the reply
    /// (`Segmenter::tagged`): segmented once, however many matches it has.
    pub fn words(&self, all: &[char]) -> Vec<(usize, usize, String)> {
        self.segmenter.tagged(all)
    }

    /// The probability that `all[start..=end]` (a reply's folded characters, segmented into
    /// `words`) is the listed word.
    pub fn probability(
        &self,
        all: &[char],
        words: &[(usize, usize, String)],
        start: usize,
        end: usize,
    ) -> f32 {
        let score = features(all, words, start, end)
            .iter()
            .filter_map(|f| self.weights.get(f))
            .sum::<f32>()
            + self.bias;
        1.0 / (1.0 + (-score).exp())
    }

    /// Whether the match is ordinary text and stays unmasked.
    pub fn exempts(
        &self,
        all: &[char],
        words: &[(usize, usize, String)],
        start: usize,
        end: usize,
    ) -> bool {
        self.probability(all, words, start, end) < self.exempt_below
    }
}

/// A character of the context as the model sees it: Chinese characters themselves, any digit
/// `0`, any other letter `a`, anything else `|`, and `^`/`$` before the start or after the end.
fn class(c: Option<&char>, edge: char) -> char {
    match c {
        None => edge,
        Some(&c) if segment::is_chinese(c) => c,
        Some(c) if c.is_numeric() => '0',
        Some(c) if c.is_alphabetic() => 'a',
        Some(_) => '|',
    }
}

/// The features of the match `all[start..=end]`, with `words` the segmentation of `all`;
/// training and serving share this function.
pub fn features(
    all: &[char],
    words: &[(usize, usize, String)],
    start: usize,
    end: usize,
) -> Vec<String> {
    let word: String = all[start..=end].iter().collect();
    let before = |k: usize| class(start.checked_sub(k).and_then(|i| all.get(i)), '^');
    let after = |k: usize| class(all.get(end + k), '$');
    let (l1, l2, r1, r2) = (before(1), before(2), after(1), after(2));
    let containing = |i: usize| words.iter().find(|(s, n, _)| *s <= i && i < s + n);
    let text = |(s, n, _): &(usize, usize, String)| -> String { all[*s..s + n].iter().collect() };
    let (lt, lp) = match start.checked_sub(1).and_then(containing) {
        Some(t) => (text(t), t.2.clone()),
        None => ("^".into(), "^".into()),
    };
    let (rt, rp) = match containing(end + 1) {
        Some(t) => (text(t), t.2.clone()),
        None => ("$".into(), "$".into()),
    };
    let shape = match containing(start) {
        Some((s, n, _)) if *s == start && s + n == end + 1 => "whole",
        Some((s, n, _)) if *s <= start && end < s + n => "inside",
        _ => "split",
    };
    vec![
        format!("w={word}"),
        format!("L1={l1}"),
        format!("L2={l2}{l1}"),
        format!("R1={r1}"),
        format!("R2={r1}{r2}"),
        format!("w={word}|L1={l1}"),
        format!("w={word}|R1={r1}"),
        format!("LT={lt}"),
        format!("LP={lp}"),
        format!("RT={rt}"),
        format!("RP={rp}"),
        format!("w={word}|LP={lp}"),
        format!("w={word}|RP={rp}"),
        format!("M={shape}"),
        format!("w={word}|M={shape}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn features_read_the_context_of_the_match() {
        let seg = Segmenter::new();
        let all = chars("亲，这款爆炸头假发");
        let f = features(&all, &seg.tagged(&all), 4, 5);
        assert!(f.contains(&"w=爆炸".to_string()));
        assert!(f.contains(&"L1=款".to_string()));
        assert!(f.contains(&"R1=头".to_string()));
        assert!(f.contains(&"R2=头假".to_string()));
        let all = chars("爆炸");
        let f = features(&all, &seg.tagged(&all), 0, 1);
        assert!(f.contains(&"L2=^^".to_string()));
        assert!(f.contains(&"RT=$".to_string()));
        assert!(f.contains(&"M=whole".to_string()));
    }

    #[test]
    fn weights_decide_and_unknown_features_weigh_nothing() {
        let judge = MatchJudge::new(&JudgeConfig {
            bias: 1.0,
            weights: vec![("w=爆炸|R1=头".into(), -5.0)],
            exempt_below: 0.5,
        });
        let exempts = |text: &str, start, end| {
            let all = chars(text);
            judge.exempts(&all, &judge.words(&all), start, end)
        };
        assert!(exempts("爆炸头假发", 0, 1));
        assert!(!exempts("小心爆炸", 2, 3));
        let all = chars("小心爆炸");
        let p = judge.probability(&all, &judge.words(&all), 2, 3);
        assert!((p - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6);
    }
}
