//! Sensitive-word masking with a whitelist that wins.
//!
//! Sensitive words and whitelisted words share one character-wise double-array Aho-Corasick
//! automaton (daachorse), fed folded characters (full width, case; see `text`) with the
//! configured separator characters skipped, so `ＶＸ`, `Vx` and `v x` all match `vx`. A
//! sensitive hit is masked unless it lies inside a whitelist hit: `杀` is masked in `杀人`
//! but not in `杀菌`, and `爆款` is never touched. The common case, a reply with no
//! sensitive word, costs one pass and no allocation.

use daachorse::CharwiseDoubleArrayAhoCorasick;

use crate::text;

pub struct SensitiveMasker {
    /// Value: `chars << 1 | is_whitelist`.
    automaton: Option<CharwiseDoubleArrayAhoCorasick<u32>>,
    ignore: IgnoreSet,
    mask: char,
}

/// The separator characters skipped inside words: a bitmap for ASCII (the usual case, one
/// test per character) and a short list for the rest.
struct IgnoreSet {
    ascii: u128,
    other: Vec<char>,
}

impl IgnoreSet {
    fn new(chars: &[char]) -> IgnoreSet {
        let mut set = IgnoreSet {
            ascii: 0,
            other: Vec::new(),
        };
        for &c in chars {
            if c.is_ascii() {
                set.ascii |= 1 << (c as u32);
            } else {
                set.other.push(c);
            }
        }
        set
    }

    #[inline]
    fn contains(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii & (1 << (c as u32)) != 0
        } else {
            self.other.contains(&c)
        }
    }
}

/// A hit in "consumed" positions (characters fed to the automaton), end inclusive.
#[derive(Clone, Copy)]
struct Hit {
    start: usize,
    end: usize,
    whitelist: bool,
}

impl SensitiveMasker {
    /// `sensitive` and `whitelist` must already be folded; a word in both is whitelisted.
    pub fn new(
        sensitive: &[String],
        whitelist: &[String],
        ignore: &[char],
        mask: char,
    ) -> anyhow::Result<SensitiveMasker> {
        let strip = |w: &String| -> String { w.chars().filter(|c| !ignore.contains(c)).collect() };
        let mut patterns: Vec<(String, u32)> = Vec::new();
        for w in whitelist {
            let w = strip(w);
            if !w.is_empty() && !patterns.iter().any(|(p, _)| *p == w) {
                patterns.push((w.clone(), (w.chars().count() as u32) << 1 | 1));
            }
        }
        for w in sensitive {
            let w = strip(w);
            if !w.is_empty() && !patterns.iter().any(|(p, _)| *p == w) {
                patterns.push((w.clone(), (w.chars().count() as u32) << 1));
            }
        }
        let automaton = if patterns.iter().any(|(_, v)| v & 1 == 0) {
            Some(
                CharwiseDoubleArrayAhoCorasick::with_values(patterns)
                    .map_err(|e| anyhow::anyhow!("building sensitive-word automaton: {e}"))?,
            )
        } else {
            None
        };
        Ok(SensitiveMasker {
            automaton,
            ignore: IgnoreSet::new(ignore),
            mask,
        })
    }

    /// Walk the folded, separator-free characters of `text`, calling `on_hit` for every
    /// match with its consumed end position, and `on_char` for every original character
    /// with its consumed position (`None` when skipped).
    fn scan(
        &self,
        ac: &CharwiseDoubleArrayAhoCorasick<u32>,
        text: &str,
        mut on_char: impl FnMut(Option<usize>),
        mut on_hit: impl FnMut(Hit) -> bool,
    ) {
        let mut stepper = ac.find_overlapping_stepper();
        let mut consumed = 0usize;
        for c in text.chars() {
            let f = text::fold_char(c);
            if self.ignore.contains(f) {
                on_char(None);
                continue;
            }
            on_char(Some(consumed));
            stepper.consume(f);
            for m in stepper.matches() {
                let v = m.value();
                let len = (v >> 1) as usize;
                let hit = Hit {
                    start: consumed + 1 - len,
                    end: consumed,
                    whitelist: v & 1 == 1,
                };
                if !on_hit(hit) {
                    return;
                }
            }
            consumed += 1;
        }
    }

    /// The masked text, or `None` when nothing needs masking.
    pub fn mask(&self, text: &str) -> Option<String> {
        let ac = self.automaton.as_ref()?;
        // Pass 1, allocation-free: is there any sensitive hit at all?
        let mut any = false;
        self.scan(
            ac,
            text,
            |_| {},
            |h| {
                any |= !h.whitelist;
                !any
            },
        );
        if !any {
            return None;
        }
        // Pass 2: collect hits and the consumed position of every original character.
        let mut hits = Vec::new();
        let mut positions = Vec::with_capacity(text.len());
        self.scan(
            ac,
            text,
            |p| positions.push(p),
            |h| {
                hits.push(h);
                true
            },
        );
        let white: Vec<Hit> = hits.iter().copied().filter(|h| h.whitelist).collect();
        let mut masked = vec![false; positions.len()];
        for h in hits.iter().filter(|h| !h.whitelist) {
            if white.iter().any(|w| w.start <= h.start && h.end <= w.end) {
                continue;
            }
            // Mask from the first to the last character of the hit, separators included.
            let first = positions.iter().position(|p| *p == Some(h.start));
            let last = positions.iter().rposition(|p| *p == Some(h.end));
            if let (Some(first), Some(last)) = (first, last) {
                masked[first..=last].iter_mut().for_each(|m| *m = true);
            }
        }
        if !masked.contains(&true) {
            return None;
        }
        Some(
            text.chars()
                .zip(masked)
                .map(|(c, m)| if m { self.mask } else { c })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker() -> SensitiveMasker {
        let words: Vec<String> = ["杀", "爆", "vx", "加微信", "第一", "傻逼"]
            .map(String::from)
            .into();
        let white: Vec<String> = ["杀菌", "秒杀", "爆款", "第一时间"]
            .map(String::from)
            .into();
        SensitiveMasker::new(&words, &white, &[' ', '.', '-'], '*').unwrap()
    }

    #[test]
    fn whitelist_first() {
        let m = masker();
        assert_eq!(m.mask("这款爆款杀菌洗衣液正在秒杀"), None);
        assert_eq!(m.mask("我们会第一时间发货"), None);
        assert_eq!(m.mask("杀人游戏"), Some("*人游戏".into()));
        assert_eq!(m.mask("爆款要爆了"), Some("爆款要*了".into()));
        assert_eq!(m.mask("全网第一"), Some("全网**".into()));
    }

    #[test]
    fn folds_width_and_case_and_skips_separators() {
        let m = masker();
        assert_eq!(m.mask("加我ＶＸ"), Some("加我**".into()));
        assert_eq!(m.mask("加我Vx吧"), Some("加我**吧".into()));
        assert_eq!(m.mask("加微 信聊"), Some("****聊".into()));
        assert_eq!(m.mask("v.x: abc"), Some("***: abc".into()));
        assert_eq!(m.mask("普通的回复"), None);
    }

    #[test]
    fn overlapping_sensitive_words_are_all_masked() {
        let m = masker();
        assert_eq!(m.mask("傻逼杀"), Some("***".into()));
    }

    #[test]
    fn no_sensitive_words_means_no_automaton() {
        let m = SensitiveMasker::new(&[], &["爆款".into()], &[], '*').unwrap();
        assert_eq!(m.mask("爆款"), None);
    }
}
