//! Sensitive words by sound: the evasions that swap a character for one read the same way
//! (薇信 and 威信 for 微信, 海落因 for 海洛因), spell the word in pinyin (`weixin`), or mix the
//! two (`wei信`, `zhuang阳`, `jue对`), and digits for numerals (`全网第1`, `0风险`).
//!
//! Two streams are read beside the characters themselves, each position one private-use
//! character standing for a reading, so one Aho-Corasick automaton per stream finds the
//! listed words in it:
//! - *toned*: every Chinese character (and digit) as its reading with the tone (`wei1`). The
//!   tone is kept on purpose: without it 维新 and 卫星 would read as 微信.
//! - *spoken*: the same without tones, and a run of Latin letters cut into pinyin syllables
//!   (`zhuangyang` → zhuang, yang). A match here counts only when it mixes spelled syllables
//!   with other readings or is spelled out alone, never when every position is a Chinese
//!   character (that is the toned stream's job, with its tones).
//!
//! A character with more than one reading is taken at its most common one (the `pinyin`
//! crate's first), on both sides, so a listed word and its evasion agree.

use std::collections::{HashMap, HashSet};

use pinyin::ToPinyin;

/// Readings that no listed word has map here; no pattern contains it.
const UNLISTED: char = '\u{E000}';
const FIRST: u32 = 0xE001;
const NUMERALS: [char; 10] = ['零', '一', '二', '三', '四', '五', '六', '七', '八', '九'];
const LONGEST_SYLLABLE: usize = 6;

/// The stand-in character of a digit (its numeral), else `c`.
fn numeral(c: char) -> char {
    c.to_digit(10).map_or(c, |d| NUMERALS[d as usize])
}

/// A position of the spoken stream: its reading, the stream characters it covers, and
/// whether it was spelled in Latin letters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spoken {
    pub sound: char,
    pub first: usize,
    pub last: usize,
    pub spelled: bool,
}

#[derive(Default)]
pub struct Readings {
    toned: HashMap<&'static str, char>,
    toneless: HashMap<&'static str, char>,
    syllables: HashSet<&'static str>,
    /// (toned, toneless) stand-in of every character of the common CJK block, filled by
    /// [`Readings::freeze`] once the words are in: a reply's characters are then looked up
    /// by index, not read aloud and hashed one by one (the filter runs on every reply made
    /// for a request).
    table: Vec<(char, char)>,
}

const BLOCK: std::ops::RangeInclusive<char> = '\u{4E00}'..='\u{9FFF}';

impl Readings {
    /// The stand-in of `reading` in `map`, a fresh one for a new reading (each stream has its
    /// own automaton, so the two maps may hand out the same characters).
    fn id(map: &mut HashMap<&'static str, char>, reading: &'static str) -> Option<char> {
        let fresh = char::from_u32(FIRST + map.len() as u32)?;
        Some(*map.entry(reading).or_insert(fresh))
    }

    /// The toned and spoken patterns of `word`: its Chinese characters (and digits) as
    /// readings, other characters as they are. `None` when fewer than two characters are
    /// Chinese (a single character read aloud matches far too much: 杀 is also 沙, 纱, 莎).
    pub fn patterns(&mut self, word: &str) -> Option<(String, String)> {
        let (mut toned, mut spoken, mut chinese) = (String::new(), String::new(), 0);
        for c in word.chars() {
            match numeral(c).to_pinyin() {
                Some(p) => {
                    chinese += 1;
                    toned.push(Self::id(&mut self.toned, p.with_tone_num_end())?);
                    spoken.push(Self::id(&mut self.toneless, p.plain())?);
                }
                None => {
                    toned.push(c);
                    spoken.push(c);
                }
            }
        }
        (chinese >= 2).then_some((toned, spoken))
    }

    /// Fill the lookup tables (characters, pinyin syllables); call after the last
    /// [`Readings::patterns`], before reading a reply.
    pub fn freeze(&mut self) {
        self.syllables = all_syllables();
        self.table = BLOCK
            .map(|c| self.read(c).unwrap_or((UNLISTED, UNLISTED)))
            .collect();
    }

    /// (toned, toneless) stand-ins of `c`, `None` for a character without a reading.
    fn read(&self, c: char) -> Option<(char, char)> {
        let p = numeral(c).to_pinyin()?;
        let toned = self.toned.get(p.with_tone_num_end()).copied();
        let toneless = self.toneless.get(p.plain()).copied();
        Some((toned.unwrap_or(UNLISTED), toneless.unwrap_or(UNLISTED)))
    }

    fn lookup(&self, c: char) -> Option<(char, char)> {
        if BLOCK.contains(&c) && !self.table.is_empty() {
            return Some(self.table[(c as u32 - *BLOCK.start() as u32) as usize]);
        }
        self.read(c)
    }

    /// The toned stream of `chars`.
    pub fn toned(&self, chars: &[char]) -> Vec<char> {
        chars
            .iter()
            .map(|&c| self.lookup(c).map_or(c, |(toned, _)| toned))
            .collect()
    }

    /// The spoken stream of `chars`.
    pub fn spoken(&self, chars: &[char]) -> Vec<Spoken> {
        let mut out = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_ascii_alphabetic() {
                let end = (i..chars.len())
                    .find(|&j| !chars[j].is_ascii_alphabetic())
                    .unwrap_or(chars.len());
                self.spell(&chars[i..end], i, &mut out);
                i = end;
                continue;
            }
            let sound = self
                .lookup(chars[i])
                .map_or(chars[i], |(_, toneless)| toneless);
            out.push(Spoken {
                sound,
                first: i,
                last: i,
                spelled: false,
            });
            i += 1;
        }
        out
    }

    /// A run of Latin letters as pinyin syllables (longest first), or as itself when it
    /// is not pinyin.
    fn spell(&self, run: &[char], offset: usize, out: &mut Vec<Spoken>) {
        let mut parts = Vec::new();
        let mut i = 0;
        while i < run.len() {
            let found = (1..=LONGEST_SYLLABLE.min(run.len() - i))
                .rev()
                .find_map(|n| {
                    let s: String = run[i..i + n]
                        .iter()
                        .map(|c| c.to_ascii_lowercase())
                        .collect();
                    self.syllables.get(s.as_str()).map(|&syl| (syl, n))
                });
            match found {
                Some((syl, n)) => {
                    parts.push((syl, i, i + n - 1));
                    i += n;
                }
                None => {
                    parts.clear();
                    break;
                }
            }
        }
        if parts.is_empty() {
            out.extend(run.iter().enumerate().map(|(k, &c)| Spoken {
                sound: c,
                first: offset + k,
                last: offset + k,
                spelled: false,
            }));
            return;
        }
        for (syl, a, b) in parts {
            let sound = self.toneless.get(syl).copied().unwrap_or(UNLISTED);
            out.push(Spoken {
                sound,
                first: offset + a,
                last: offset + b,
                spelled: true,
            });
        }
    }
}

/// Every toneless pinyin syllable (about 400), read off the common CJK block.
fn all_syllables() -> HashSet<&'static str> {
    ('\u{4E00}'..='\u{9FFF}')
        .filter_map(|c| c.to_pinyin())
        .map(|p| p.plain())
        .filter(|s| s.is_ascii())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn homophones_with_the_same_tone_share_a_pattern() {
        let mut r = Readings::default();
        let (p, _) = r.patterns("微信").unwrap();
        assert_eq!(r.toned(&chars("薇信")).into_iter().collect::<String>(), p);
        assert_eq!(r.toned(&chars("威信")).into_iter().collect::<String>(), p);
        assert_ne!(
            r.toned(&chars("维新")).into_iter().collect::<String>(),
            p,
            "another tone"
        );
        assert_eq!(r.patterns("v信"), None, "one Chinese character");
        let (p, _) = r.patterns("全网第一").unwrap();
        assert_eq!(
            r.toned(&chars("全网第1")).into_iter().collect::<String>(),
            p
        );
    }

    #[test]
    fn latin_runs_are_read_as_syllables() {
        let mut r = Readings::default();
        let (_, spoken) = r.patterns("壮阳").unwrap();
        r.freeze();
        let s = r.spoken(&chars("zhuang阳的"));
        assert_eq!(
            s.iter().map(|p| p.sound).take(2).collect::<String>(),
            spoken
        );
        assert!(s[0].spelled && !s[1].spelled);
        assert_eq!((s[0].first, s[0].last), (0, 5));
        let s = r.spoken(&chars("wxga"));
        assert!(s.iter().all(|p| !p.spelled), "not pinyin: left as letters");
    }
}
