//! The intent ids of `intents.tsv`, as a closed enum.
//!
//! Ids are part of the public contract (API answers, metrics labels, evaluation files), so
//! they are spelled here exactly once and everything else converts through this table.

use std::fmt;
use std::str::FromStr;

/// Which stage may answer an intent: the rule cache (`fast`) or the model stage (`model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Fast,
    Model,
}

macro_rules! intents {
    ($($variant:ident => $id:literal, $tier:ident;)+) => {
        /// One of the 30 intent ids of `intents.tsv`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Intent { $($variant),+ }

        impl Intent {
            /// Every intent, in `intents.tsv` order.
            pub const ALL: &'static [Intent] = &[$(Intent::$variant),+];

            /// The id as written in `intents.tsv`.
            pub const fn as_str(self) -> &'static str {
                match self { $(Intent::$variant => $id),+ }
            }

            /// Which stage answers this intent.
            pub const fn tier(self) -> Tier {
                match self { $(Intent::$variant => Tier::$tier),+ }
            }
        }

        impl FromStr for Intent {
            type Err = UnknownIntent;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($id => Ok(Intent::$variant),)+
                    _ => Err(UnknownIntent(s.to_owned())),
                }
            }
        }
    };
}

intents! {
    RefundApply => "refund_apply", Fast;
    RefundProgress => "refund_progress", Fast;
    ReturnGoods => "return_goods", Fast;
    ExchangeGoods => "exchange_goods", Fast;
    Coupon => "coupon", Fast;
    LogisticsTrack => "logistics_track", Fast;
    UrgeDelivery => "urge_delivery", Fast;
    ShipTime => "ship_time", Fast;
    ChangeAddress => "change_address", Fast;
    CancelOrder => "cancel_order", Fast;
    Invoice => "invoice", Fast;
    PriceProtect => "price_protect", Fast;
    SizeAdvice => "size_advice", Fast;
    QualityIssue => "quality_issue", Fast;
    MissingItem => "missing_item", Fast;
    PaymentIssue => "payment_issue", Fast;
    PromotionRules => "promotion_rules", Fast;
    StockInquiry => "stock_inquiry", Fast;
    Greeting => "greeting", Fast;
    HumanAgent => "human_agent", Fast;
    Complaint => "complaint", Model;
    ProductDetail => "product_detail", Model;
    ProductRecommend => "product_recommend", Model;
    MembershipPoints => "membership_points", Model;
    WarrantyRepair => "warranty_repair", Model;
    ModifyOrder => "modify_order", Model;
    DeliveryOptions => "delivery_options", Model;
    AccountIssue => "account_issue", Model;
    ThanksBye => "thanks_bye", Model;
    Other => "other", Model;
}

impl Intent {
    /// Dense index in `ALL`, for per-intent tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A request about the shop's business: not a greeting, a thanks, a call for a person or
    /// something out of scope. The dialogue's topic is the newest of these.
    pub fn is_request(self) -> bool {
        !matches!(
            self,
            Intent::Greeting | Intent::ThanksBye | Intent::HumanAgent | Intent::Other
        )
    }

    /// The intents the rule cache answers.
    pub fn fast() -> impl Iterator<Item = Intent> {
        Self::ALL.iter().copied().filter(|i| i.tier() == Tier::Fast)
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Intent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Intent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An id that is not in `intents.tsv`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown intent id `{0}` (see intents.tsv)")]
pub struct UnknownIntent(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_tiers_match_intents_tsv() {
        assert_eq!(Intent::ALL.len(), 30);
        assert_eq!(Intent::fast().count(), 20);
        for (i, intent) in Intent::ALL.iter().enumerate() {
            assert_eq!(intent.index(), i);
            assert_eq!(intent.as_str().parse::<Intent>(), Ok(*intent));
        }
        assert_eq!(Intent::Other.tier(), Tier::Model);
        assert!("refund".parse::<Intent>().is_err());
    }

    /// The enum must stay identical to the shipped copy of intents.tsv (ids, order, tiers).
    #[test]
    fn matches_the_shipped_intents_tsv() {
        let tsv = include_str!("../models/intents.tsv");
        let rows: Vec<(&str, &str)> = tsv
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let mut cols = l.split('\t');
                (cols.next().unwrap_or(""), cols.next().unwrap_or(""))
            })
            .collect();
        assert_eq!(rows.len(), Intent::ALL.len());
        for ((id, tier), intent) in rows.iter().zip(Intent::ALL) {
            assert_eq!(*id, intent.as_str());
            let want = if *tier == "fast" {
                Tier::Fast
            } else {
                Tier::Model
            };
            assert_eq!(want, intent.tier(), "{id}");
        }
    }
}
