//! `post.yaml`: what happens to every reply before it leaves: sensitive-word masking (with a
//! whitelist that wins) and campaign text inside a time window.

use std::path::PathBuf;

use jiff::Timestamp;
use serde::Deserialize;

use super::ConfigError;
use super::source::Source;
use crate::text;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPost {
    sensitive: RawSensitive,
    #[serde(default)]
    campaigns: Vec<RawCampaign>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSensitive {
    words_file: PathBuf,
    compounds_file: Option<PathBuf>,
    whitelist_file: Option<PathBuf>,
    #[serde(default = "default_mask")]
    mask_char: char,
    #[serde(default = "default_ignore")]
    ignore_chars: String,
    #[serde(default = "default_true")]
    ignore_symbols: bool,
    #[serde(default = "default_true")]
    segmentation: bool,
    #[serde(default = "default_true")]
    homophones: bool,
    judge: Option<RawJudge>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    weights_file: PathBuf,
    exempt_below: f32,
}

fn default_true() -> bool {
    true
}

fn default_mask() -> char {
    '*'
}

fn default_ignore() -> String {
    " ·.-_|/\\".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    name: String,
    text: String,
    start: Timestamp,
    end: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostConfig {
    /// Folded, de-duplicated, without words that are also whitelisted.
    pub sensitive_words: Vec<String>,
    /// Folded; a sensitive hit inside a whitelist hit is never masked.
    pub whitelist: Vec<String>,
    pub mask_char: char,
    /// Characters skipped between the characters of a word, so `微 信` still matches `微信`.
    pub ignore_chars: Vec<char>,
    /// Also skip every other character that is neither a letter nor a digit (punctuation,
    /// symbols, emoji: `微❤信`, `微，信`).
    pub ignore_symbols: bool,
    /// A match that a dictionary word straddles is not masked (加厚大麻布袋, 权威信息).
    pub segmentation: bool,
    /// Words of two or more Chinese characters also match by sound (薇信 for 微信) and in
    /// pinyin (`weixin`).
    pub homophones: bool,
    /// The context model that leaves a plain match of ordinary text unmasked (爆炸头假发).
    pub judge: Option<JudgeConfig>,
    pub campaigns: Vec<CampaignConfig>,
}

/// The match judge's logistic model (`feature<TAB>weight` lines, `bias` among them) and the
/// probability below which a plain match stays unmasked.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    pub bias: f32,
    pub weights: Vec<(String, f32)>,
    pub exempt_below: f32,
}

/// Text spliced into `{campaign}` while `start <= now < end`.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignConfig {
    pub name: String,
    pub text: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

pub fn validate(raw: RawPost, src: &Source) -> Result<PostConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut read_list = |key: &str, path: &PathBuf| -> Vec<String> {
        let full = src.resolve(path);
        match std::fs::read_to_string(&full) {
            Ok(text) => parse_word_list(&text),
            Err(e) => {
                errors.push(src.error_at(
                    key,
                    format!("sensitive.{key}: cannot read `{}`: {e}", full.display()),
                ));
                Vec::new()
            }
        }
    };
    let mut words = read_list("words_file", &raw.sensitive.words_file);
    if let Some(p) = &raw.sensitive.compounds_file {
        for w in read_list("compounds_file", p) {
            if !words.contains(&w) {
                words.push(w);
            }
        }
    }
    let whitelist = match &raw.sensitive.whitelist_file {
        Some(p) => read_list("whitelist_file", p),
        None => Vec::new(),
    };
    let sensitive_words: Vec<String> = words
        .into_iter()
        .filter(|w| !whitelist.contains(w))
        .collect();
    let ignore_chars: Vec<char> = raw.sensitive.ignore_chars.chars().collect();
    if ignore_chars.contains(&raw.sensitive.mask_char) {
        errors.push(src.error_at(
            "mask_char",
            "sensitive.mask_char must not be an ignore_char",
        ));
    }
    for w in sensitive_words.iter().chain(&whitelist) {
        if w.starts_with(|c| ignore_chars.contains(&c))
            || w.ends_with(|c| ignore_chars.contains(&c))
        {
            errors.push(src.error_at(
                "words_file",
                format!("word `{w}` starts or ends with an ignored character"),
            ));
        }
    }
    let judge = raw.sensitive.judge.and_then(|j| {
        if !(0.0..=1.0).contains(&j.exempt_below) {
            errors.push(src.error_at(
                "exempt_below",
                "sensitive.judge.exempt_below must be a probability in [0, 1]",
            ));
        }
        let full = src.resolve(&j.weights_file);
        let parsed = std::fs::read_to_string(&full)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_judge_weights(&text));
        match parsed {
            Ok((bias, weights)) => Some(JudgeConfig {
                bias,
                weights,
                exempt_below: j.exempt_below,
            }),
            Err(e) => {
                errors.push(src.error_at(
                    "weights_file",
                    format!("sensitive.judge.weights_file `{}`: {e}", full.display()),
                ));
                None
            }
        }
    });
    let mut campaigns = Vec::with_capacity(raw.campaigns.len());
    for c in raw.campaigns {
        if c.end <= c.start {
            errors.push(src.error_at(
                "end",
                format!(
                    "campaign `{}`: end {} is not after start {}",
                    c.name, c.end, c.start
                ),
            ));
        }
        if c.text.contains(['{', '}']) {
            errors.push(src.error_at(
                "text",
                format!("campaign `{}`: text may not contain braces", c.name),
            ));
        }
        campaigns.push(CampaignConfig {
            name: c.name,
            text: c.text,
            start: c.start,
            end: c.end,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PostConfig {
        sensitive_words,
        whitelist,
        mask_char: raw.sensitive.mask_char,
        ignore_chars,
        ignore_symbols: raw.sensitive.ignore_symbols,
        segmentation: raw.sensitive.segmentation,
        homophones: raw.sensitive.homophones,
        judge,
        campaigns,
    })
}

/// `feature<TAB>weight` per line, `#` comments, one `bias` line: (bias, the other weights).
fn parse_judge_weights(text: &str) -> Result<(f32, Vec<(String, f32)>), String> {
    let mut bias = None;
    let mut weights = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parsed = line
            .split_once('\t')
            .and_then(|(f, w)| Some((f, w.trim().parse::<f32>().ok()?)))
            .filter(|(_, w)| w.is_finite());
        match parsed {
            Some(("bias", w)) => bias = Some(w),
            Some((f, w)) => weights.push((f.to_owned(), w)),
            None => return Err(format!("line {}: not `feature<TAB>weight`", n + 1)),
        }
    }
    Ok((bias.ok_or("no `bias` line")?, weights))
}

/// One word per line; `#` starts a comment; words are folded and de-duplicated.
fn parse_word_list(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for line in text.lines() {
        let word = line.split('#').next().unwrap_or("").trim();
        if word.is_empty() {
            continue;
        }
        let folded = text::fold(word);
        if !words.contains(&folded) {
            words.push(folded);
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(dir: &Path, text: &str) -> Result<PostConfig, Vec<ConfigError>> {
        Source::check_text(dir, "post.yaml", text, validate)
    }

    #[test]
    fn word_lists_fold_dedupe_and_skip_comments() {
        assert_eq!(
            parse_word_list("# list\nＶＸ\nvx\n加微信 # diversion\n\n"),
            vec!["vx", "加微信"]
        );
    }

    #[test]
    fn judge_weights_need_a_bias_and_numbers() {
        let (bias, w) = parse_judge_weights("# model\nbias\t-0.5\nw=第一\t1.25\n").unwrap();
        assert_eq!(bias, -0.5);
        assert_eq!(w, vec![("w=第一".to_string(), 1.25)]);
        assert!(
            parse_judge_weights("w=第一\t1\n")
                .unwrap_err()
                .contains("bias")
        );
        assert!(
            parse_judge_weights("bias\tNaN\n")
                .unwrap_err()
                .contains("line 1")
        );
    }

    #[test]
    fn missing_word_file_names_file_and_key() {
        let e = check(
            Path::new("/nonexistent"),
            "sensitive:\n  words_file: words.txt\n",
        )
        .unwrap_err();
        assert_eq!(e[0].line, Some(2));
        assert!(e[0].reason.contains("/nonexistent/words.txt"), "{e:?}");
    }

    #[test]
    fn campaign_window_must_be_ordered() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
        let e = check(
            &dir,
            "sensitive: {words_file: words/sensitive.txt}\ncampaigns:\n  - name: a\n    text: t\n    start: 2026-11-12T00:00:00+08:00\n    end: 2026-11-11T00:00:00+08:00\n",
        )
        .unwrap_err();
        assert!(e[0].reason.contains("is not after start"), "{e:?}");
        let e = check(
            &dir,
            "sensitive: {words_file: words/sensitive.txt}\ncampaigns:\n  - name: a\n    text: t\n    start: yesterday\n    end: 2026-11-11T00:00:00+08:00\n",
        )
        .unwrap_err();
        assert_eq!(e[0].line, Some(5), "{e:?}");
    }
}
