//! Turns that carry no request: a shopper's 好的, 嗯嗯, 谢谢, 没有了, and what chat clients paste
//! to open a chat (an order card, a bare order number, a product link). Nearly half of the
//! shopper turns of real dialogues are like this; none of them needs a person. The answer
//! depends on the dialogue, which the caller says: an acknowledgement after an answer keeps
//! the conversation open, one after "anything else?" closes it, one after a hand-off stays
//! with the person; a card alone is asked back about.

use daachorse::{CharwiseDoubleArrayAhoCorasick, CharwiseDoubleArrayAhoCorasickBuilder, MatchKind};
use regex::Regex;

use crate::config::ConversationConfig;
use crate::text;

/// What a turn without a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnKind {
    /// 好的, 嗯, ok, 知道了.
    Acknowledgement,
    /// 谢谢, 没有了, 拜拜: an acknowledgement that ends the conversation.
    Closing,
    /// 是的, 对: a yes to the turn before; the dialogue's topic goes on.
    Confirmation,
    /// Only an order card, an order number or masked order reference.
    OrderCard,
    /// Only a product link.
    ProductLink,
}

const ACK: u32 = 0;
const CLOSING: u32 = 1;
const FILLER: u32 = 2;
const CONFIRMATION: u32 = 3;

pub struct Conversation {
    words: Option<CharwiseDoubleArrayAhoCorasick<u32>>,
    /// Every character of those words, sorted: a message with any other letter is not an
    /// acknowledgement, found without allocating (most messages, on the rule path).
    word_chars: Vec<char>,
    /// What chat clients paste: entity masks, card field names, links, long numbers.
    card: Regex,
    link: Regex,
    order: Regex,
}

impl Conversation {
    pub fn new(cfg: &ConversationConfig) -> anyhow::Result<Conversation> {
        let mut patterns: Vec<(String, u32)> = Vec::new();
        for (list, value) in [
            (&cfg.closings, CLOSING),
            (&cfg.confirmations, CONFIRMATION),
            (&cfg.acknowledgements, ACK),
            (&cfg.fillers, FILLER),
        ] {
            for w in list {
                let w = strip(w);
                if !w.is_empty() && !patterns.iter().any(|(p, _)| *p == w) {
                    patterns.push((w, value));
                }
            }
        }
        let mut word_chars: Vec<char> = patterns.iter().flat_map(|(w, _)| w.chars()).collect();
        word_chars.sort_unstable();
        word_chars.dedup();
        let words = if patterns.is_empty() {
            None
        } else {
            Some(
                CharwiseDoubleArrayAhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build_with_values(patterns)
                    .map_err(|e| anyhow::anyhow!("conversation words: {e}"))?,
            )
        };
        // The chat client's order card (`[订单编号:[订单x]，订单金额:[金额x]，下单时间:…]`,
        // `咨询订单号:… 订单金额:…`), masked entities, and the words around them.
        let card = Regex::new(
            r"\[[^\[\]]{1,8}x\]|https?://\S+|www\.\S+|[0-9a-z]{6,}|订单编号|订单金额|下单时间|咨询订单号|订单号|单号|订单|商品编号|商品链接|链接|顾客通过点击web咚咚|信息发送|你好|您好|在吗|亲|这个|这单|这笔|这款|商品",
        )?;
        Ok(Conversation {
            words,
            word_chars,
            card,
            link: Regex::new(r"\[链接x\]|https?://|www\.|商品链接")?,
            order: Regex::new(r"\[订单x\]|订单编号|咨询订单号|订单号|单号|[0-9]{10,}")?,
        })
    }

    /// What `message` is, when it carries no request. Cheap for the messages of the rule
    /// path (one pass, no allocation): only a short message made of the words' characters
    /// can be an acknowledgement, and only one with a bracket or six letters or digits in a
    /// row (a mask, an order number, a link; full width included) can be a card.
    pub fn kind(&self, message: &str) -> Option<TurnKind> {
        // One pass decides which of the two readings can apply at all.
        let (mut chars, mut foreign, mut card, mut run) = (0usize, false, false, 0usize);
        for c in message.chars().map(text::fold_char) {
            chars += 1;
            foreign |= c.is_alphanumeric() && self.word_chars.binary_search(&c).is_err();
            run = if c.is_ascii_alphanumeric() {
                run + 1
            } else {
                0
            };
            card |= c == '[' || run >= 6;
            if foreign && !card && chars > MAX_ACK_CHARS {
                return None;
            }
        }
        if !foreign
            && chars <= MAX_ACK_CHARS
            && let Some(kind) = self.acknowledgement(message)
        {
            return Some(kind);
        }
        if !card {
            return None;
        }
        let folded = text::fold(message);
        let rest = self.card.replace_all(&folded, "");
        if rest.chars().any(char::is_alphanumeric) {
            return None;
        }
        if self.order.is_match(&folded) {
            Some(TurnKind::OrderCard)
        } else if self.link.is_match(&folded) {
            Some(TurnKind::ProductLink)
        } else {
            None
        }
    }

    /// The message is nothing but acknowledgement, confirmation, closing and filler words
    /// (at least one that is not a filler), once punctuation, emoji and spaces are gone. A
    /// closing word makes it a closing; otherwise a confirmation word (是的, 嗯嗯是的) makes
    /// it a confirmation.
    fn acknowledgement(&self, message: &str) -> Option<TurnKind> {
        let words = self.words.as_ref()?;
        let stripped = strip(message);
        if stripped.is_empty() {
            return None;
        }
        let (mut covered, mut ack, mut closing, mut yes) = (0, false, false, false);
        for m in words.leftmost_find_iter(&stripped) {
            if m.start() != covered {
                return None;
            }
            covered = m.end();
            ack |= m.value() == ACK;
            closing |= m.value() == CLOSING;
            yes |= m.value() == CONFIRMATION;
        }
        if covered != stripped.len() {
            return None;
        }
        match (closing, yes, ack) {
            (true, _, _) => Some(TurnKind::Closing),
            (false, true, _) => Some(TurnKind::Confirmation),
            (false, false, true) => Some(TurnKind::Acknowledgement),
            _ => None,
        }
    }
}

/// The longest message read as an acknowledgement (好的好的，谢谢亲，辛苦了 is 11).
const MAX_ACK_CHARS: usize = 24;

/// Letters and digits only, folded: `好的！！` and `好的～` are `好的`.
fn strip(message: &str) -> String {
    message
        .chars()
        .map(text::fold_char)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    fn conversation() -> Conversation {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect();
        let t = |s: &str| Template::parse(s).unwrap();
        Conversation::new(&ConversationConfig {
            acknowledgements: words(&["好的", "好", "嗯", "嗯嗯", "ok", "知道了", "哦"]),
            closings: words(&["谢谢", "没有了", "没了", "拜拜"]),
            confirmations: words(&["是的", "对", "对的"]),
            fillers: words(&["亲", "啊", "呀"]),
            keep_open: t("亲，还有其他可以帮您的吗~"),
            closing: t("不客气亲~"),
            with_person: t("人工马上来~"),
            order_card: t("亲，订单{order}有什么可以帮您的呢？"),
            product_link: t("亲，这款商品有什么可以帮您的呢？"),
        })
        .unwrap()
    }

    #[test]
    fn acknowledgements_and_closings_are_whole_messages() {
        let c = conversation();
        assert_eq!(c.kind("好的"), Some(TurnKind::Acknowledgement));
        assert_eq!(c.kind("嗯嗯嗯！"), Some(TurnKind::Acknowledgement));
        assert_eq!(c.kind("OK啊"), Some(TurnKind::Acknowledgement));
        assert_eq!(c.kind("好的谢谢~"), Some(TurnKind::Closing));
        assert_eq!(c.kind("没有了，拜拜"), Some(TurnKind::Closing));
        assert_eq!(c.kind("好的，那什么时候发货"), None);
        assert_eq!(
            c.kind("亲"),
            None,
            "fillers alone are not an acknowledgement"
        );
        assert_eq!(c.kind("不好"), None);
        assert_eq!(c.kind("是的！"), Some(TurnKind::Confirmation));
        assert_eq!(c.kind("嗯嗯 对的"), Some(TurnKind::Confirmation));
        assert_eq!(c.kind("对的，谢谢"), Some(TurnKind::Closing));
    }

    #[test]
    fn pasted_cards_and_links_alone() {
        let c = conversation();
        let card = "[订单编号:[订单x]，订单金额:[金额x]，下单时间:[日期x] [时间x]]";
        assert_eq!(c.kind(card), Some(TurnKind::OrderCard));
        assert_eq!(c.kind("订单号 4410298736651207"), Some(TurnKind::OrderCard));
        assert_eq!(c.kind("[链接x]"), Some(TurnKind::ProductLink));
        assert_eq!(c.kind("你好 [链接x]"), Some(TurnKind::ProductLink));
        assert_eq!(c.kind("[链接x] 这个有货吗"), None, "a question with it");
        assert_eq!(c.kind(&format!("{card} 怎么还没发货")), None);
    }
}
