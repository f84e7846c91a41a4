//! Tokens the trained router sees: the same function turns a message into fastText input at
//! training time and at prediction time, so the two can never disagree.
//!
//! Chinese has no spaces, so every CJK character is a token and the model's word bigrams
//! (`wordNgrams 2`) are character bigrams. Runs of ASCII letters are one token (`tk`, `xl`,
//! `iphone`). Numbers are reduced to their shape (`#1`, `#2`, `#3`, `#4`, `#long`), so an
//! order number is "a long number" rather than an unseen word, and the masked entities of the
//! JDDC chat log (`[订单x]`, `[数字x]`, `[金额x]` …) become the same shapes. Question marks are
//! kept (a question is a different request from a statement); other punctuation, spaces and
//! control characters only separate tokens. Text is folded first like everything else.

use crate::text;

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
        if c == '?' {
            push(out, "?");
        } else if c.is_alphanumeric() || is_symbol(c) {
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

/// Emoji and other pictographs carry tone (😡, 🙏); ASCII and CJK punctuation do not.
fn is_symbol(c: char) -> bool {
    !c.is_ascii() && !c.is_whitespace() && !c.is_control() && !is_cjk_punctuation(c)
}

fn is_cjk_punctuation(c: char) -> bool {
    matches!(c, '\u{3000}'..='\u{303F}' | '\u{FF00}'..='\u{FFEF}' | '\u{2000}'..='\u{206F}' | '·')
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
        assert_eq!(tokens("亲，我要退款！"), "亲 我 要 退 款");
        assert_eq!(tokens("TK进度查下"), "tk 进 度 查 下");
        assert_eq!(
            tokens("订单号2023110812345678还没到？？"),
            "订 单 号 #long 还 没 到 ? ?"
        );
        assert_eq!(tokens("XL码 175cm 130斤"), "xl 码 #3 cm #3 斤");
        assert_eq!(tokens("iPhone15Pro 256G"), "iphone #2 pro #3 g");
        assert_eq!(tokens("气死了😡😡"), "气 死 了 😡 😡");
        assert_eq!(tokens("退貨"), "退 貨");
        assert_eq!(tokens(""), "");
        assert_eq!(tokens("，。！"), "");
    }

    #[test]
    fn masked_entities_become_shapes() {
        assert_eq!(tokens("订单[订单x]退款"), "订 单 #long 退 款");
        assert_eq!(tokens("[数字x]号到"), "#4 号 到");
        assert_eq!(tokens("[日期x] [时间x]"), "#date #date");
        assert_eq!(tokens("[普通]"), "普 通");
    }
}
