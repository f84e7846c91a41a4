//! Is a match a word of the reply, or two words that happen to meet? 加厚大麻布袋 contains 大麻,
//! but it reads 加厚 / 大 / 麻布袋; 权威信息 contains 威信, but it reads 权威 / 信息. A dictionary
//! segmentation of the reply says which: a match whose first or last character shares a
//! dictionary word with a character outside the match (a word straddles its edge) is a
//! false alarm, and so is a match inside a longer word (爆炸头, 杀菌) — unless that longer word
//! is itself listed (`sensitive_compounds.txt`: 杀人, 爆炸物), which then matches on its own.
//!
//! The dictionary is jieba's (the `jieba-rs` crate bundles it: 349k words with frequencies,
//! MIT), segmented by maximum probability without the HMM for unknown words: the HMM would
//! glue an evasion such as 加薇信 into one new "word". Building it costs about 165 ms and 50 MB,
//! so it is built once per process, when the first filter that wants it is made (at start
//! or reload, never on a request), and shared by every later one.

use std::sync::OnceLock;

use jieba_rs::Jieba;

static DICTIONARY: OnceLock<Jieba> = OnceLock::new();

pub struct Segmenter {
    jieba: &'static Jieba,
}

impl Default for Segmenter {
    fn default() -> Segmenter {
        Segmenter::new()
    }
}

impl Segmenter {
    pub fn new() -> Segmenter {
        Segmenter {
            jieba: DICTIONARY.get_or_init(Jieba::new),
        }
    }

    /// `starts[i]`: whether a word of the segmentation of `chars` starts at `i`
    /// (`starts[chars.len()]` is true).
    pub fn word_starts(&self, chars: &[char]) -> Vec<bool> {
        let text: String = chars.iter().collect();
        let mut starts = vec![false; chars.len() + 1];
        let mut at = 0;
        for word in self.jieba.cut(&text, false) {
            starts[at] = true;
            at += word.chars().count();
        }
        starts[chars.len()] = true;
        starts
    }

    /// The segmentation of `chars` with jieba's part-of-speech tag of each word, as
    /// (first character, character count, tag).
    pub fn tagged(&self, chars: &[char]) -> Vec<(usize, usize, String)> {
        let text: String = chars.iter().collect();
        let mut at = 0;
        self.jieba
            .tag(&text, false)
            .into_iter()
            .map(|t| {
                let n = t.word.chars().count();
                let word = (at, n, t.tag.to_owned());
                at += n;
                word
            })
            .collect()
    }
}

/// Whether a match over `chars[start..=end]` has a dictionary word across its first or last
/// edge. Only an edge between two Chinese characters can be straddled: Latin text has its own
/// word edges (checked by the masker).
pub fn straddled(chars: &[char], starts: &[bool], start: usize, end: usize) -> bool {
    let chinese = |i: usize| chars.get(i).is_some_and(|&c| is_chinese(c));
    let at_start = start > 0 && chinese(start - 1) && chinese(start) && !starts[start];
    let at_end = chinese(end) && chinese(end + 1) && !starts[end + 1];
    at_start || at_end
}

pub fn is_chinese(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}')
}

/// A character of a listed word that the match judge may read as written: a Chinese
/// character, or an ASCII letter (folded to lower case). Capitals are how brands and models
/// are written (`WX390`, `QQ糖`, `SB系列`), not a way round the list; full width, digits for
/// numerals and separators are.
pub fn is_judged(c: char) -> bool {
    is_chinese(c) || c.is_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, word: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let w: Vec<char> = word.chars().collect();
        let start = chars
            .windows(w.len())
            .position(|x| x == w.as_slice())
            .unwrap();
        let starts = Segmenter::new().word_starts(&chars);
        straddled(&chars, &starts, start, start + w.len() - 1)
    }

    #[test]
    fn words_across_a_match_make_it_a_false_alarm() {
        assert!(check("加厚大麻布袋", "大麻"));
        assert!(check("权威信息", "威信"));
        assert!(check("轻微信号", "微信"));
        assert!(check("这么大麻烦", "大麻"));
        assert!(check("我们的杀菌喷雾", "杀"));
    }

    #[test]
    fn a_match_on_word_edges_stands() {
        assert!(!check("加我微信", "微信"));
        assert!(!check("本品不含大麻", "大麻"));
        assert!(!check("我杀了你", "杀"));
        assert!(!check("请加薇信", "薇信"));
    }
}
