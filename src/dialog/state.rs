//! One user's dialogue state and its MessagePack encoding, capped in size.
//!
//! Encoded as positional MessagePack (`rmp_serde::to_vec`): field names are not repeated in
//! every turn, so a typical dialogue is a few hundred bytes. New fields go at the end with
//! `#[serde(default)]`, so a state written by an older build still decodes.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{Context, Slots};
use crate::intent::Intent;

/// Characters of a turn's text kept in the history (context for the shop's bot and for
/// people reading a dialogue, not for matching).
pub const TURN_TEXT_CHARS: usize = 48;

/// One past turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub intent: Intent,
    /// Unix seconds.
    pub at: i64,
    pub text: String,
}

/// What the edge remembers about one user between messages.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DialogState {
    /// Turns since the state was created (history may hold fewer: it is trimmed).
    pub turns: u32,
    /// Whether the last answer handed the user to a human agent.
    pub handed_to_human: bool,
    /// Slots still open: the order, size and colour the user spoke of.
    pub slots: Slots,
    /// The most recent turns, oldest first.
    pub history: VecDeque<Turn>,
}

/// The entry of the per-user latest-intent index: the last turn of one intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestTurn {
    pub intent: Intent,
    /// Unix seconds.
    pub at: i64,
    pub order: Option<String>,
    pub turn: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot encode dialogue state: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot decode dialogue state: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

impl DialogState {
    /// The intents of the last `n` turns not older than `within_secs`, newest first.
    pub fn recent(&self, now: i64, within_secs: i64, n: usize) -> Vec<Intent> {
        self.history
            .iter()
            .rev()
            .take(n)
            .take_while(|t| now - t.at <= within_secs)
            .map(|t| t.intent)
            .collect()
    }

    /// What the dialogue offers its next message: `recent` (what [`DialogState::recent`]
    /// gave for the same `now` and window), the text of the newest turn in the window,
    /// whether the last answer handed the shopper on, and the order the message names.
    pub fn context<'a>(
        &'a self,
        recent: &'a [Intent],
        now: i64,
        within_secs: i64,
        order: Option<&'a str>,
    ) -> Context<'a> {
        let previous_text = self
            .history
            .back()
            .filter(|t| now - t.at <= within_secs)
            .map(|t| t.text.as_str());
        Context {
            recent,
            previous_text,
            order,
            handed_to_human: self.handed_to_human,
        }
    }

    /// Record a turn: keep at most `history` turns, count it, take the slots it named.
    pub fn record(&mut self, turn: Turn, slots: &Slots, handed_to_human: bool, history: usize) {
        let mut turn = turn;
        if let Some((cut, _)) = turn.text.char_indices().nth(TURN_TEXT_CHARS) {
            turn.text.truncate(cut);
        }
        self.history.push_back(turn);
        while self.history.len() > history.max(1) {
            self.history.pop_front();
        }
        self.turns = self.turns.saturating_add(1);
        self.slots.update(slots);
        self.handed_to_human = handed_to_human;
    }

    /// The state's latest-index entry for its newest turn.
    pub fn latest(&self) -> Option<LatestTurn> {
        self.history.back().map(|t| LatestTurn {
            intent: t.intent,
            at: t.at,
            order: self.slots.order.clone(),
            turn: self.turns,
        })
    }

    /// Encode, dropping the oldest turns until the result fits in `max_bytes` (slots and
    /// counters are never dropped; the newest turn is dropped only if nothing else fits).
    pub fn encode_capped(&mut self, max_bytes: usize) -> Result<Vec<u8>, StateError> {
        loop {
            let bytes = rmp_serde::to_vec(self)?;
            if bytes.len() <= max_bytes || self.history.is_empty() {
                return Ok(bytes);
            }
            // Drop enough turns at once that a large history converges in a few rounds.
            let over = bytes.len() - max_bytes;
            let per_turn = bytes.len() / (self.history.len() + 1);
            let drop = over.div_ceil(per_turn.max(1)).clamp(1, self.history.len());
            self.history.drain(..drop);
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<DialogState, StateError> {
        Ok(rmp_serde::from_slice(bytes)?)
    }
}

impl LatestTurn {
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        Ok(rmp_serde::to_vec(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<LatestTurn, StateError> {
        Ok(rmp_serde::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(intent: Intent, at: i64, text: &str) -> Turn {
        Turn {
            intent,
            at,
            text: text.into(),
        }
    }

    #[test]
    fn round_trips_and_a_typical_dialogue_is_small() {
        let mut s = DialogState::default();
        let slots = Slots {
            order: Some("3012345678901234567".into()),
            ..Slots::default()
        };
        s.record(
            turn(Intent::ExchangeGoods, 100, "这件衣服小了想换大一码"),
            &slots,
            false,
            16,
        );
        s.record(
            turn(Intent::ReturnGoods, 160, "算了还是直接退了吧"),
            &Slots::default(),
            false,
            16,
        );
        let bytes = s.encode_capped(2048).unwrap();
        assert!(bytes.len() < 200, "{} bytes", bytes.len());
        let back = DialogState::decode(&bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.turns, 2);
        assert_eq!(back.slots.order.as_deref(), Some("3012345678901234567"));
        let latest = back.latest().unwrap();
        assert_eq!((latest.intent, latest.turn), (Intent::ReturnGoods, 2));
        assert_eq!(
            LatestTurn::decode(&latest.encode().unwrap()).unwrap(),
            latest
        );
    }

    #[test]
    fn state_is_capped_at_max_bytes_by_trimming_the_oldest_turns() {
        let mut s = DialogState::default();
        let long = "我想问一下这个订单的退款到底什么时候能到账啊已经等了好几天了真的很着急呀呀呀";
        for i in 0..200 {
            s.record(
                turn(Intent::RefundProgress, i, long),
                &Slots::default(),
                false,
                256,
            );
        }
        assert_eq!(s.history.len(), 200);
        let bytes = s.encode_capped(2048).unwrap();
        assert!(bytes.len() <= 2048, "{} bytes", bytes.len());
        assert!(s.history.len() > 5, "kept {} turns", s.history.len());
        assert_eq!(s.turns, 200, "the count is never trimmed");
        assert_eq!(s.history.back().unwrap().at, 199, "the newest turns stay");
        let next = s.clone().encode_capped(2048).unwrap();
        assert_eq!(next, bytes, "a state that fits is not trimmed again");
    }

    #[test]
    fn history_is_bounded_and_texts_are_cut() {
        let mut s = DialogState::default();
        let text: String = "退".repeat(100);
        for i in 0..5 {
            s.record(
                turn(Intent::RefundApply, i, &text),
                &Slots::default(),
                i == 4,
                3,
            );
        }
        assert_eq!(s.history.len(), 3);
        assert_eq!(s.history[0].at, 2);
        assert_eq!(s.history[0].text.chars().count(), TURN_TEXT_CHARS);
        assert!(s.handed_to_human);
        assert_eq!(s.recent(10, 60, 2), [Intent::RefundApply; 2]);
        assert!(s.recent(1000, 60, 2).is_empty(), "too old to be context");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(DialogState::decode(b"\xc1\xff garbage").is_err());
        assert!(DialogState::decode(b"").is_err());
    }
}
