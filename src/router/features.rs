//! Tokens the trained router sees: the same function turns a message into fastText input at
//! training time and at prediction time, so the two can never disagree.
//!
//! Chinese has no spaces, so every CJK character is a token and the model's word bigrams
//! (`wordNgrams 2`) are character bigrams. Runs of ASCII letters are one token (`tk`, `xl`,
//! `iphone`). Numbers are reduced to their shape (`#1`, `#2`, `#3`, `#4`, `#long`), so an
//! order number is "a long number" rather than an unseen word, and the masked entities of the
//! JDDC chat log (`[订单x]`, `[数字x]`, `[金额x]` …) become the same shapes. Punctuation and
//! emoji are tokens too (`？` makes a question, `!!!` and 😡 carry tone); spaces and control
//! characters only separate tokens. Text is folded first like everything else.
//!
//! The classifier's features are the tokens and the bigrams of adjacent tokens, with a start
//! and an end marker around the message (so `在吗` alone differs from `在吗` inside a longer
//! message), hashed (FNV-1a) into a fixed number of buckets, each counted once per message: a
//! bag of character unigrams and bigrams, as fastText's `wordNgrams 2` over characters sees it.

use crate::text::{self, FNV_OFFSET, fnv1a_bytes};

/// Append the tokens of `message` to `out`, separated by single spaces.
pub fn tokens_into(message: &str, out: &mut String) {
    let mut digits = 0usize;
    let mut in_word = false;
    let mut chars = message.chars().peekable();
    while let Some(raw) = chars.next() {
        let c = text::fold_char(raw);
        if c.is_ascii_digit() {
            if in_word {
                in_word = false;
            }
            digits += 1;
            continue;
        }
        if digits > 0 {
            push(out, number_shape(digits));
            digits = 0;
        }
        if c == '['
            && let Some(shape) = entity(&mut chars)
        {
            in_word = false;
            push(out, shape);
            continue;
        }
        if c.is_ascii_alphabetic() {
            if !in_word {
                sep(out);
                in_word = true;
            }
            out.push(c);
            continue;
        }
        in_word = false;
        if !c.is_whitespace() && !c.is_control() {
            sep(out);
            out.push(c);
        }
    }
    if digits > 0 {
        push(out, number_shape(digits));
    }
}

/// The tokens of `message` as one string.
pub fn tokens(message: &str) -> String {
    let mut out = String::with_capacity(message.len() * 2);
    tokens_into(message, &mut out);
    out
}

/// The start and end markers: bytes that cannot occur in UTF-8, so no token hashes like them.
const START: &[u8] = &[0xfe];
const END: &[u8] = &[0xfd];

/// Fill `out` with the feature buckets of `tokens` (the output of [`tokens_into`]): one per
/// token, one per pair of adjacent tokens (the markers included), sorted, without repeats.
/// Empty for a message without tokens.
pub fn hashed_into(tokens: &str, buckets: u32, out: &mut Vec<u32>) {
    out.clear();
    let buckets = u64::from(buckets.max(1));
    let mut words = tokens.split(' ').filter(|t| !t.is_empty()).peekable();
    if words.peek().is_none() {
        return;
    }
    let mut previous = fnv1a_bytes(FNV_OFFSET, START);
    for (i, token) in words
        .map(str::as_bytes)
        .chain(std::iter::once(END))
        .enumerate()
    {
        let h = fnv1a_bytes(FNV_OFFSET, token);
        if token != END {
            out.push((h % buckets) as u32);
        }
        // The separator byte cannot occur in UTF-8, so `ab`+`c` never hashes as `a`+`bc`.
        let pair = fnv1a_bytes(fnv1a_bytes(previous, &[0xff]), token);
        if i > 0 || token != END {
            out.push((pair % buckets) as u32);
        }
        previous = h;
    }
    out.sort_unstable();
    out.dedup();
}

fn sep(out: &mut String) {
    if !out.is_empty() {
        out.push(' ');
    }
}

fn push(out: &mut String, token: &str) {
    sep(out);
    out.push_str(token);
}

fn number_shape(digits: usize) -> &'static str {
    match digits {
        1 => "#1",
        2 => "#2",
        3 => "#3",
        4..=6 => "#4",
        _ => "#long",
    }
}

/// A masked JDDC entity after `[`: `订单x]` and friends. Consumes it and returns its shape.
fn entity(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<&'static str> {
    let mut lookahead = chars.clone();
    let mut name = String::new();
    for c in lookahead.by_ref() {
        if c == ']' {
            break;
        }
        name.push(c);
        if name.chars().count() > 4 {
            return None;
        }
    }
    let shape = match name.as_str() {
        "订单x" => "#long",
        "数字x" | "金额x" => "#4",
        "日期x" | "时间x" => "#date",
        "姓名x" => "#name",
        "地址x" => "#addr",
        "站点x" => "#site",
        _ => return None,
    };
    *chars = lookahead;
    Some(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_characters_words_and_number_shapes() {
        assert_eq!(tokens("亲，我要退款！"), "亲 , 我 要 退 款 !");
        assert_eq!(tokens("TK进度查下"), "tk 进 度 查 下");
        assert_eq!(
            tokens("订单号2023110812345678还没到？？"),
            "订 单 号 #long 还 没 到 ? ?"
        );
        assert_eq!(tokens("在吗。。"), "在 吗 。 。");
        assert_eq!(tokens("XL码 175cm 130斤"), "xl 码 #3 cm #3 斤");
        assert_eq!(tokens("iPhone15Pro 256G"), "iphone #2 pro #3 g");
        assert_eq!(tokens("气死了😡😡"), "气 死 了 😡 😡");
        assert_eq!(tokens("退貨"), "退 貨");
        assert_eq!(tokens(""), "");
        assert_eq!(tokens("，。！"), ", 。 !");
        assert_eq!(tokens(" \t\n"), "");
    }

    #[test]
    fn features_are_tokens_and_adjacent_pairs_counted_once() {
        let mut f = Vec::new();
        hashed_into("退 款", 1 << 20, &mut f);
        assert_eq!(f.len(), 5, "退, 款, ^退, 退款, 款$: {f:?}");
        let mut g = Vec::new();
        hashed_into("退 款 退 款", 1 << 20, &mut g);
        // All of those again, plus the new pair 款退.
        assert_eq!(g.len(), 6, "{g:?}");
        assert!(f.iter().all(|b| g.contains(b)));
        assert!(g.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        let mut h = Vec::new();
        hashed_into("款 退", 1 << 20, &mut h);
        assert_ne!(f, h, "order matters for pairs");
        let mut e = vec![7];
        hashed_into("", 1 << 20, &mut e);
        assert!(e.is_empty(), "filled, not appended to");
        hashed_into("a b c d e f", 4, &mut e);
        assert!(e.iter().all(|&b| b < 4));
    }

    #[test]
    fn masked_entities_become_shapes() {
        assert_eq!(tokens("订单[订单x]退款"), "订 单 #long 退 款");
        assert_eq!(tokens("[数字x]号到"), "#4 号 到");
        assert_eq!(tokens("[日期x] [时间x]"), "#date #date");
        assert_eq!(tokens("[普通]"), "[ 普 通 ]");
    }
}
