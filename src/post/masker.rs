//! Sensitive-word masking with a whitelist that wins and no false alarms on ordinary words.
//!
//! A reply is read as a stream of folded characters (full width, case; see `text`) with the
//! separators skipped (`ignore_chars`, and with `ignore_symbols` any punctuation, symbol or
//! emoji), so `ＶＸ`, `v x` and `微❤信` all match. Three kinds of match feed one decision:
//! - the listed words and the whitelist, in one character-wise double-array Aho-Corasick
//!   automaton (daachorse);
//! - with `homophones`, listed words by sound (`sound`: 薇信 for 微信, `weixin`, `wei信`);
//! - a sensitive match is then kept only if it is a word of the reply: not inside a
//!   whitelist match (爆款, 秒杀), not straddled by a dictionary word (`segment`: 加厚大麻布袋,
//!   权威信息, 爆炸头), and for Latin letters not part of a longer Latin word (`usb` is not
//!   `sb`, `WXGA` is not `wx`).
//!
//! The common case, a reply with no sensitive match, costs one pass over the stream.

use daachorse::CharwiseDoubleArrayAhoCorasick;

use super::judge::MatchJudge;
use super::segment::{self, Segmenter};
use super::sound::Readings;
use crate::text;

/// How the masker reads a reply (from `post.yaml`).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub ignore_chars: Vec<char>,
    pub ignore_symbols: bool,
    pub segmentation: bool,
    pub homophones: bool,
    pub mask: char,
}

impl Settings {
    /// Whether `c` is skipped inside a word: a listed separator, or with `ignore_symbols`
    /// anything that is not a letter or digit.
    fn skips(&self, c: char) -> bool {
        self.ignore_chars.contains(&c) || (self.ignore_symbols && !c.is_alphanumeric())
    }
}

pub struct SensitiveMasker {
    /// Value: `chars << 1 | is_whitelist`.
    exact: Option<CharwiseDoubleArrayAhoCorasick<u32>>,
    /// The listed words by sound: toned and spoken patterns (value: positions).
    sound: Option<Sound>,
    segmenter: Option<Segmenter>,
    judge: Option<MatchJudge>,
    settings: Settings,
}

struct Sound {
    readings: Readings,
    toned: CharwiseDoubleArrayAhoCorasick<u32>,
    spoken: CharwiseDoubleArrayAhoCorasick<u32>,
}

/// Fewest Latin letters a match spelled out entirely in pinyin needs (`laji`, `weixin`).
const MIN_SPELLED_LETTERS: usize = 4;

/// A match over stream positions `start..=end`.
#[derive(Clone, Copy, Debug)]
struct Hit {
    start: usize,
    end: usize,
    whitelist: bool,
    /// Found by spelling, not by sound.
    exact: bool,
}

/// The reply as the automata read it.
struct Stream {
    /// Folded characters that were not skipped.
    chars: Vec<char>,
    /// For each of them, its index among the reply's characters.
    at: Vec<usize>,
    /// The reply's characters, folded.
    all: Vec<char>,
    /// ... and as they were.
    raw: Vec<char>,
}

fn build(patterns: Vec<(String, u32)>) -> anyhow::Result<CharwiseDoubleArrayAhoCorasick<u32>> {
    CharwiseDoubleArrayAhoCorasick::with_values(patterns)
        .map_err(|e| anyhow::anyhow!("building sensitive-word automaton: {e}"))
}

fn is_latin(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

impl SensitiveMasker {
    /// `sensitive` and `whitelist` must already be folded; a word in both is whitelisted.
    pub fn new(
        sensitive: &[String],
        whitelist: &[String],
        settings: Settings,
    ) -> anyhow::Result<SensitiveMasker> {
        let strip = |w: &String| -> String { w.chars().filter(|&c| !settings.skips(c)).collect() };
        let mut exact: Vec<(String, u32)> = Vec::new();
        let mut add = |w: String, whitelist: bool| {
            if !w.is_empty() && !exact.iter().any(|(p, _)| *p == w) {
                let value = (w.chars().count() as u32) << 1 | u32::from(whitelist);
                exact.push((w, value));
            }
        };
        for w in whitelist {
            add(strip(w), true);
        }
        let words: Vec<String> = sensitive.iter().map(strip).collect();
        for w in &words {
            add(w.clone(), false);
        }
        let mut readings = Readings::default();
        let mut toned: Vec<(String, u32)> = Vec::new();
        let mut spoken: Vec<(String, u32)> = Vec::new();
        if settings.homophones {
            for w in &words {
                if let Some((t, s)) = readings.patterns(w) {
                    for (list, p) in [(&mut toned, t), (&mut spoken, s)] {
                        if !list.iter().any(|(q, _)| *q == p) {
                            let n = p.chars().count() as u32;
                            list.push((p, n));
                        }
                    }
                }
            }
        }
        let any_sensitive = exact.iter().any(|(_, v)| v & 1 == 0);
        let sound = if toned.is_empty() {
            None
        } else {
            readings.freeze();
            Some(Sound {
                readings,
                toned: build(toned)?,
                spoken: build(spoken)?,
            })
        };
        Ok(SensitiveMasker {
            exact: if any_sensitive {
                Some(build(exact)?)
            } else {
                None
            },
            sound,
            segmenter: (settings.segmentation && any_sensitive).then(Segmenter::new),
            judge: None,
            settings,
        })
    }

    /// Plain matches are then masked only when `judge` reads them as the listed word.
    pub fn with_judge(mut self, judge: MatchJudge) -> SensitiveMasker {
        self.judge = Some(judge);
        self
    }

    /// A match spelled out as listed: found by spelling, written one after the other, every
    /// character a Chinese one as written or an ASCII letter in either case. Anything else
    /// (full width, separators, sound) is an evasion.
    fn plain(s: &Stream, h: &Hit) -> bool {
        let (first, last) = (s.at[h.start], s.at[h.end]);
        h.exact
            && last - first == h.end - h.start
            && (first..=last)
                .all(|i| segment::is_judged(s.all[i]) && s.raw[i].to_ascii_lowercase() == s.all[i])
    }

    fn stream(&self, text: &str) -> Stream {
        let raw: Vec<char> = text.chars().collect();
        let all: Vec<char> = raw.iter().map(|&c| text::fold_char(c)).collect();
        let mut s = Stream {
            chars: Vec::with_capacity(all.len()),
            at: Vec::with_capacity(all.len()),
            all: Vec::new(),
            raw,
        };
        for (i, &c) in all.iter().enumerate() {
            if !self.settings.skips(c) {
                s.chars.push(c);
                s.at.push(i);
            }
        }
        s.all = all;
        s
    }

    /// Every match of `ac` over `chars` (value: `len << 1 | whitelist`, or `len` alone with
    /// `whitelist_bit` false).
    fn hits(
        ac: &CharwiseDoubleArrayAhoCorasick<u32>,
        chars: &[char],
        whitelist_bit: bool,
        out: &mut Vec<Hit>,
    ) {
        let mut stepper = ac.find_overlapping_stepper();
        for (i, &c) in chars.iter().enumerate() {
            stepper.consume(c);
            for m in stepper.matches() {
                let v = m.value();
                let (len, whitelist) = if whitelist_bit {
                    ((v >> 1) as usize, v & 1 == 1)
                } else {
                    (v as usize, false)
                };
                out.push(Hit {
                    start: i + 1 - len,
                    end: i,
                    whitelist,
                    exact: whitelist_bit,
                });
            }
        }
    }

    /// A Latin match must be a whole Latin word of the reply: no letter or digit right before
    /// it, no letter right after it (`vx123` is a contact, `WXGA` and `1.5Vx2` are not), and
    /// no skipped non-ASCII character inside it (`S，B款` is a size and a style).
    fn latin_word(&self, s: &Stream, h: &Hit) -> bool {
        let (first, last) = (s.chars[h.start], s.chars[h.end]);
        if is_latin(first) {
            let before = s.at[h.start].checked_sub(1).map(|i| s.all[i]);
            if before.is_some_and(is_latin) {
                return false;
            }
        }
        if is_latin(last)
            && s.all
                .get(s.at[h.end] + 1)
                .is_some_and(|c| c.is_ascii_alphabetic())
        {
            return false;
        }
        let all_latin = s.chars[h.start..=h.end].iter().all(|&c| is_latin(c));
        // A listed separator (`ignore_chars`, such as `·`) joins letters; any other wide
        // punctuation (`，`) ends a Latin word.
        let wide_separator = (s.at[h.start]..=s.at[h.end]).any(|i| {
            self.settings.skips(s.all[i])
                && !self.settings.ignore_chars.contains(&s.all[i])
                && !s.raw[i].is_ascii()
        });
        !(all_latin && wide_separator)
    }

    /// The masked text, or `None` when nothing needs masking.
    pub fn mask(&self, text: &str) -> Option<String> {
        if self.exact.is_none() && self.sound.is_none() {
            return None;
        }
        let s = self.stream(text);
        let mut hits = Vec::new();
        if let Some(ac) = &self.exact {
            Self::hits(ac, &s.chars, true, &mut hits);
        }
        if let Some(sound) = &self.sound {
            Self::hits(
                &sound.toned,
                &sound.readings.toned(&s.chars),
                false,
                &mut hits,
            );
            let spoken = sound.readings.spoken(&s.chars);
            let sounds: Vec<char> = spoken.iter().map(|p| p.sound).collect();
            let mut by_ear = Vec::new();
            Self::hits(&sound.spoken, &sounds, false, &mut by_ear);
            // Only what was (partly) spelled in Latin letters: the toned stream judges
            // Chinese characters, with their tones.
            for h in by_ear {
                let part = &spoken[h.start..=h.end];
                let letters = part
                    .iter()
                    .filter(|p| p.spelled)
                    .map(|p| p.last + 1 - p.first)
                    .sum::<usize>();
                let mixed = part.iter().any(|p| !p.spelled);
                if letters > 0 && (mixed || letters >= MIN_SPELLED_LETTERS) {
                    hits.push(Hit {
                        start: spoken[h.start].first,
                        end: spoken[h.end].last,
                        whitelist: false,
                        exact: false,
                    });
                }
            }
        }
        if !hits.iter().any(|h| !h.whitelist) {
            return None;
        }
        let white: Vec<Hit> = hits.iter().copied().filter(|h| h.whitelist).collect();
        let mut starts: Option<Vec<bool>> = None;
        let mut words = None;
        let mut masked = vec![false; s.all.len()];
        // Spans the judge left: a match by sound over the same characters is the same word.
        let mut exempt: Vec<(usize, usize)> = Vec::new();
        for h in hits.iter().filter(|h| !h.whitelist) {
            if white.iter().any(|w| w.start <= h.start && h.end <= w.end)
                || !self.latin_word(&s, h)
                || exempt.contains(&(h.start, h.end))
            {
                continue;
            }
            if let Some(seg) = &self.segmenter
                && segment::is_chinese(s.chars[h.start]) | segment::is_chinese(s.chars[h.end])
            {
                let starts = starts.get_or_insert_with(|| seg.word_starts(&s.chars));
                if segment::straddled(&s.chars, starts, h.start, h.end) {
                    continue;
                }
            }
            if let Some(judge) = &self.judge
                && Self::plain(&s, h)
                && judge.exempts(
                    &s.all,
                    words.get_or_insert_with(|| judge.words(&s.all)),
                    s.at[h.start],
                    s.at[h.end],
                )
            {
                exempt.push((h.start, h.end));
                continue;
            }
            // Mask from the first to the last character of the match, separators included.
            masked[s.at[h.start]..=s.at[h.end]]
                .iter_mut()
                .for_each(|m| *m = true);
        }
        if !masked.contains(&true) {
            return None;
        }
        Some(
            text.chars()
                .zip(masked)
                .map(|(c, m)| if m { self.settings.mask } else { c })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests;
