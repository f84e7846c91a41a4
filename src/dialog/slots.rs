//! Slots: the order, size and colour a shopper names, taken from the text so that a later
//! "还是那个单子" or a reply template can use them.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The open slots of a dialogue. Each is at most a few dozen bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Slots {
    /// An order reference: the digits of an order number, or a masked `[订单x]` token.
    pub order: Option<String>,
    pub size: Option<String>,
    pub color: Option<String>,
}

// An order number is a long run of digits; shorter runs count only after 订单/单号.
static ORDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:订单号?|单号|order)\s*(?:是|为|:|：|#)?\s*([0-9]{6,24})|(?:^|[^0-9])([0-9]{12,24})(?:$|[^0-9])|(\[订单[^\]]{0,8}\])")
        .expect("order pattern")
});

static SIZE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)([0-9]{2,3}(?:码|号)|(?:[0-9]x|x{1,3})?[sml](?:码|号)?|[大小](?:一|1|两|2|半)(?:码|号)|均码|加大码)",
    )
    .expect("size pattern")
});

static COLOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(黑|白|红|蓝|绿|黄|灰|粉|紫|棕|橙|咖啡|卡其|米|藏青|酒红|军绿|杏|银|金)色")
        .expect("colour pattern")
});

/// Letters next to an ASCII size letter make it a word ("ms", "ok"), not a size.
fn ascii_word_at(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    before.is_some_and(|c| c.is_ascii_alphabetic())
        || after.is_some_and(|c| c.is_ascii_alphabetic())
}

impl Slots {
    /// The slots `text` names.
    pub fn extract(text: &str) -> Slots {
        let order = ORDER.captures(text).and_then(|c| {
            (1..=3)
                .find_map(|i| c.get(i))
                .map(|m| m.as_str().to_owned())
        });
        let size = SIZE
            .find_iter(text)
            .find(|m| !ascii_word_at(text, m.start(), m.end()))
            .map(|m| {
                let size = m.as_str();
                if size.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    size.trim_end_matches(['码', '号']).to_ascii_uppercase()
                } else {
                    size.to_owned()
                }
            });
        let color = COLOR.find(text).map(|m| m.as_str().to_owned());
        Slots { order, size, color }
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_none() && self.size.is_none() && self.color.is_none()
    }

    /// Take every slot `newer` names; keep the rest.
    pub fn update(&mut self, newer: &Slots) {
        for (mine, theirs) in [
            (&mut self.order, &newer.order),
            (&mut self.size, &newer.size),
            (&mut self.color, &newer.color),
        ] {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_order_numbers_sizes_and_colours() {
        let s = Slots::extract("订单号3012345678901234567的衣服想换成黑色XL");
        assert_eq!(s.order.as_deref(), Some("3012345678901234567"));
        assert_eq!(s.size.as_deref(), Some("XL"));
        assert_eq!(s.color.as_deref(), Some("黑色"));
        assert_eq!(
            Slots::extract("单号：88812345 还没到").order.as_deref(),
            Some("88812345")
        );
        assert_eq!(
            Slots::extract("[订单x]这个什么时候发").order.as_deref(),
            Some("[订单x]")
        );
        assert_eq!(Slots::extract("换大一码吧").size.as_deref(), Some("大一码"));
        assert_eq!(Slots::extract("能换38码吗").size.as_deref(), Some("38码"));
    }

    #[test]
    fn short_numbers_and_words_are_not_slots() {
        let s = Slots::extract("买了3件花了199块，ok吗 sms");
        assert!(s.is_empty(), "{s:?}");
        assert!(
            Slots::extract("电话13812345678").order.is_none(),
            "11 digits is a phone"
        );
    }

    #[test]
    fn newer_slots_replace_older_ones_and_others_stay() {
        let mut s = Slots::extract("订单1234567890123 要红色");
        s.update(&Slots::extract("换M码"));
        assert_eq!(s.order.as_deref(), Some("1234567890123"));
        assert_eq!(s.color.as_deref(), Some("红色"));
        assert_eq!(s.size.as_deref(), Some("M"));
        s.update(&Slots::extract("不对，是订单号9876543210987"));
        assert_eq!(s.order.as_deref(), Some("9876543210987"));
    }
}
