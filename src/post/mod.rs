//! Post filter: the last stage every reply passes, whatever produced it (rule cache, model,
//! upstream bot, fallback). It masks sensitive words and provides the campaign text that
//! templates splice in while a campaign's window is open.

mod judge;
mod masker;
mod segment;
mod sound;

use std::borrow::Cow;

use jiff::Timestamp;

pub use judge::{MatchJudge, features as judge_features};
pub use masker::{SensitiveMasker, Settings};
pub use segment::{Segmenter, is_chinese, is_judged};

use crate::config::PostConfig;

/// Campaign texts with their windows, checked against the clock on every request so a
/// campaign opens and closes on time without a reload.
pub struct Campaigns {
    /// (start, end, text) in Unix seconds, in file order: the first open one wins.
    windows: Vec<(i64, i64, String)>,
}

impl Campaigns {
    pub fn new(cfg: &PostConfig) -> Campaigns {
        Campaigns {
            windows: cfg
                .campaigns
                .iter()
                .map(|c| (c.start.as_second(), c.end.as_second(), c.text.clone()))
                .collect(),
        }
    }

    /// The index of the first campaign open at `now`.
    pub fn active_at(&self, now: Timestamp) -> Option<usize> {
        let now = now.as_second();
        self.windows
            .iter()
            .position(|(start, end, _)| *start <= now && now < *end)
    }

    /// Every campaign's text, in file order (indexes match `active_at`).
    pub fn texts(&self) -> Vec<&str> {
        self.windows
            .iter()
            .map(|(_, _, text)| text.as_str())
            .collect()
    }
}

/// Everything `post.yaml` configures, compiled.
pub struct ReplyFilter {
    masker: SensitiveMasker,
    campaigns: Campaigns,
}

impl ReplyFilter {
    pub fn new(cfg: &PostConfig) -> anyhow::Result<ReplyFilter> {
        let masker = SensitiveMasker::new(
            &cfg.sensitive_words,
            &cfg.whitelist,
            Settings {
                ignore_chars: cfg.ignore_chars.clone(),
                ignore_symbols: cfg.ignore_symbols,
                segmentation: cfg.segmentation,
                homophones: cfg.homophones,
                mask: cfg.mask_char,
            },
        )?;
        Ok(ReplyFilter {
            masker: match &cfg.judge {
                Some(j) => masker.with_judge(MatchJudge::new(j)),
                None => masker,
            },
            campaigns: Campaigns::new(cfg),
        })
    }

    /// The campaign open now, as an index into [`Self::campaign_texts`].
    pub fn campaign_now(&self) -> Option<usize> {
        self.campaigns.active_at(Timestamp::now())
    }

    pub fn campaign_texts(&self) -> Vec<&str> {
        self.campaigns.texts()
    }

    /// The reply as it may leave: masked where needed, borrowed when nothing changed.
    pub fn filter<'a>(&self, reply: &'a str) -> Cow<'a, str> {
        match self.masker.mask(reply) {
            Some(masked) => Cow::Owned(masked),
            None => Cow::Borrowed(reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CampaignConfig;

    fn cfg(campaigns: Vec<CampaignConfig>) -> PostConfig {
        PostConfig {
            sensitive_words: vec!["加微信".into()],
            whitelist: vec![],
            mask_char: '#',
            ignore_chars: vec![],
            ignore_symbols: false,
            segmentation: false,
            homophones: false,
            judge: None,
            campaigns,
        }
    }

    fn campaign(name: &str, start: &str, end: &str) -> CampaignConfig {
        CampaignConfig {
            name: name.into(),
            text: format!("{name}!"),
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
        }
    }

    #[test]
    fn campaign_windows_are_half_open_and_first_wins() {
        let c = Campaigns::new(&cfg(vec![
            campaign(
                "a",
                "2026-11-11T00:00:00+08:00",
                "2026-11-12T00:00:00+08:00",
            ),
            campaign("b", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        ]));
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(c.active_at(at("2026-11-11T00:00:00+08:00")), Some(0));
        assert_eq!(c.active_at(at("2026-11-11T23:59:59+08:00")), Some(0));
        assert_eq!(c.active_at(at("2026-11-12T00:00:00+08:00")), Some(1));
        assert_eq!(c.active_at(at("2026-12-01T00:00:00Z")), None);
        assert_eq!(c.texts(), ["a!", "b!"]);
    }

    #[test]
    fn filter_borrows_clean_replies() {
        let f = ReplyFilter::new(&cfg(vec![])).unwrap();
        assert!(matches!(f.filter("亲，好的"), Cow::Borrowed(_)));
        assert_eq!(f.filter("请加微信"), "请###");
        assert_eq!(f.campaign_now(), None);
    }
}
