//! What a template sees of the request: the page context (language, CSRF token, the
//! user in the navigation) and the formatting helpers the templates call.

use rust_decimal::Decimal;
use time::{OffsetDateTime, UtcOffset};

use super::i18n::{Lang, Text};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NavUser {
    pub display_name: String,
    pub is_staff: bool,
    /// a staff account whose role only reads (its forms would be refused)
    pub read_only: bool,
    pub unread: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCtx {
    pub lang: Lang,
    pub csrf: String,
    pub user: Option<NavUser>,
    /// path and query of this request, for "back here" links
    pub here: String,
    pub htmx: bool,
    pub offset: UtcOffset,
}

impl PageCtx {
    /// For pages rendered without a session (errors from middleware).
    pub fn bare(lang: Lang) -> Self {
        Self {
            lang,
            csrf: String::new(),
            user: None,
            here: "/".into(),
            htmx: false,
            offset: UtcOffset::UTC,
        }
    }

    pub fn t(&self, key: &str) -> Text {
        Text(self.lang.t(key))
    }

    pub fn lang_code(&self) -> &'static str {
        self.lang.code()
    }

    pub fn is_en(&self) -> bool {
        self.lang == Lang::En
    }

    pub fn css_version(&self) -> &'static str {
        super::asset_version()
    }

    /// `2025-09-18 10:00` in the business time zone.
    pub fn datetime(&self, t: &OffsetDateTime) -> String {
        let t = t.to_offset(self.offset);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        )
    }

    pub fn date(&self, t: &OffsetDateTime) -> String {
        self.datetime(t)[..10].to_owned()
    }

    /// The last day a period that ends at `t` (exclusive) covers.
    pub fn last_day(&self, t: &OffsetDateTime) -> String {
        self.date(&(*t - time::Duration::SECOND))
    }

    /// 0.900 → "9折", 0.950 → "9.5折" / "5% off"; 1 → "no discount".
    pub fn discount(&self, rate: &Decimal) -> String {
        let rate = *rate;
        if rate >= Decimal::ONE {
            return self.t("profile.no_discount").to_owned();
        }
        match self.lang {
            Lang::Zh => format!("{}折", (rate * Decimal::TEN).normalize()),
            Lang::En => format!(
                "{}% off",
                ((Decimal::ONE - rate) * Decimal::from(100)).normalize()
            ),
        }
    }

    /// What a reward or coupon gives: "¥10.00 off" / "立减 ¥10.00", "15% off" / "8.5折",
    /// "Free item" / "免费兑换".
    pub fn reward_value(
        &self,
        kind: &crate::domain::rewards::RewardKind,
        value: &Option<Decimal>,
    ) -> String {
        use crate::domain::rewards::RewardKind;
        match (kind, value, self.lang) {
            (RewardKind::Amount, Some(v), Lang::Zh) => format!("立减 ¥{}", self.money(v)),
            (RewardKind::Amount, Some(v), Lang::En) => format!("¥{} off", self.money(v)),
            (RewardKind::Percent, Some(v), Lang::Zh) => {
                format!(
                    "{}折",
                    ((Decimal::ONE_HUNDRED - v) / Decimal::TEN).normalize()
                )
            }
            (RewardKind::Percent, Some(v), Lang::En) => format!("{}% off", v.normalize()),
            _ => self.t("reward.kind.item").to_owned(),
        }
    }

    pub fn coupon_status(&self, s: &crate::domain::rewards::CouponStatus) -> Text {
        self.t(&format!("coupon.status.{}", s.as_str()))
    }

    pub fn type_label(&self, kind: &crate::domain::TransactionType) -> Text {
        self.t(&format!("type.{kind}"))
    }

    /// 99011009 → "99,011,009" (both languages group digits in threes).
    pub fn n<N: Copy + Into<i64>>(&self, n: &N) -> String {
        let n: i64 = (*n).into();
        group_digits(&n.unsigned_abs().to_string(), n < 0)
    }

    /// +1,200 / -30 / 0
    pub fn signed(&self, n: &i64) -> String {
        let n = *n;
        if n > 0 {
            format!("+{}", self.n(&n))
        } else {
            self.n(&n)
        }
    }

    /// 12345.6 → "12,345.60" (the currency sign is the template's).
    pub fn money(&self, d: &Decimal) -> String {
        let text = format!("{:.2}", d.abs());
        let (whole, cents) = text.split_once('.').unwrap_or((&text, "00"));
        format!(
            "{}.{cents}",
            group_digits(whole, d.is_sign_negative() && !d.is_zero())
        )
    }

    /// What a line of the points history was, in the reader's language: the order,
    /// checkout or staff reason it belongs to, never a raw code.
    pub fn describe(&self, t: &crate::domain::Transaction) -> String {
        let reference = t.reference_id.as_deref().unwrap_or_default();
        let source = t.reference_type.as_deref().unwrap_or_default();
        let (zh, en) = match source {
            "order_complete" | "order" | "purchase" => ("订单", "order"),
            "checkout" | "payment" | "order_payment" => ("结账", "checkout"),
            _ => ("", ""),
        };
        let what = |known: &str| {
            if known.is_empty() {
                format!("{} {reference}", source.replace('_', " "))
            } else {
                format!("{known} {reference}")
            }
        };
        match (t.transaction_type.as_str(), self.lang) {
            ("release", Lang::Zh) => "退货期结束，积分到账".to_owned(),
            ("release", Lang::En) => "Released: the return window has ended".to_owned(),
            ("reverse", Lang::Zh) if t.status != "completed" => {
                format!("{} 在退货期内退货，待到账积分取消", what(zh))
            }
            ("reverse", Lang::En) if t.status != "completed" => {
                format!(
                    "Returned within the window: pending points of {} cancelled",
                    what(en)
                )
            }
            ("earn", Lang::Zh) if source == "campaign" => format!("活动奖励：{}", t.description),
            ("earn", Lang::En) if source == "campaign" => {
                format!("Campaign bonus: {}", t.description)
            }
            ("use", Lang::Zh) if source == "reward" => format!("兑换 {}", t.description),
            ("use", Lang::En) if source == "reward" => format!("Redeemed: {}", t.description),
            ("refund", Lang::Zh) if source == "reward" => "兑换已取消，积分退回".to_owned(),
            ("refund", Lang::En) if source == "reward" => {
                "Returned: a reward redemption was cancelled".to_owned()
            }
            ("earn", Lang::Zh) => format!("{} 获得积分", what(zh)),
            ("earn", Lang::En) => format!("Earned on {}", what(en)),
            ("use", Lang::Zh) => format!("{} 使用积分", what(zh)),
            ("use", Lang::En) => format!("Spent at {}", what(en)),
            ("reverse", Lang::Zh) => format!("{} 退货，扣回积分", what(zh)),
            ("reverse", Lang::En) => format!("Taken back: {} returned", what(en)),
            ("refund", Lang::Zh) => format!("{} 已取消，积分退回", what(zh)),
            ("refund", Lang::En) => format!("Returned: {} cancelled", what(en)),
            ("expire", Lang::Zh) => "积分到期".to_owned(),
            ("expire", Lang::En) => "Points reached their expiry date".to_owned(),
            ("adjust", Lang::Zh) => format!("客服调整：{}", t.description),
            ("adjust", Lang::En) => format!("Adjusted by staff: {}", t.description),
            _ => t.description.clone(),
        }
    }
}

fn group_digits(digits: &str, negative: bool) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if negative {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_money_group_digits_in_threes() {
        let zh = PageCtx::bare(Lang::Zh);
        assert_eq!(zh.n(&99011009), "99,011,009");
        assert_eq!(zh.n(&999), "999");
        assert_eq!(zh.n(&-1000), "-1,000");
        assert_eq!(zh.n(&0), "0");
        assert_eq!(zh.signed(&1200), "+1,200");
        assert_eq!(zh.signed(&-30), "-30");
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(zh.money(&d("12345.6")), "12,345.60");
        assert_eq!(zh.money(&d("9999999999.99")), "9,999,999,999.99");
        assert_eq!(zh.money(&d("0")), "0.00");
        assert_eq!(zh.money(&d("800")), "800.00");
    }

    #[test]
    fn history_lines_are_described_in_the_readers_language() {
        let t = |kind: &str, source: &str, reference: &str, description: &str| {
            crate::domain::Transaction {
                id: 1,
                user_id: 1,
                transaction_type: crate::domain::TransactionType::parse(kind).unwrap(),
                points_change: 1,
                balance_after: 1,
                reference_type: Some(source.into()),
                reference_id: Some(reference.into()),
                description: description.into(),
                status: "completed".into(),
                unrecovered: 0,
                created_at: OffsetDateTime::UNIX_EPOCH,
            }
        };
        let (zh, en) = (PageCtx::bare(Lang::Zh), PageCtx::bare(Lang::En));
        let earn = t(
            "earn",
            "order_complete",
            "DEMO-4-R2",
            "order_complete DEMO-4-R2",
        );
        assert_eq!(zh.describe(&earn), "订单 DEMO-4-R2 获得积分");
        assert_eq!(en.describe(&earn), "Earned on order DEMO-4-R2");
        let other = t("earn", "sign_up_bonus", "S1", "x");
        assert_eq!(en.describe(&other), "Earned on sign up bonus S1");
        let adjust = t("adjust", "", "", "goodwill for a late parcel");
        assert_eq!(zh.describe(&adjust), "客服调整：goodwill for a late parcel");
        assert_eq!(
            en.describe(&t("refund", "checkout", "PAY_1", "")),
            "Returned: checkout PAY_1 cancelled"
        );
    }

    #[test]
    fn discounts_read_naturally_in_both_languages() {
        let zh = PageCtx::bare(Lang::Zh);
        let en = PageCtx::bare(Lang::En);
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(zh.discount(&d("0.950")), "9.5折");
        assert_eq!(zh.discount(&d("0.900")), "9折");
        assert_eq!(zh.discount(&d("0.980")), "9.8折");
        assert_eq!(zh.discount(&d("0.885")), "8.85折");
        assert_eq!(en.discount(&d("0.900")), "10% off");
        assert_eq!(en.discount(&d("0.950")), "5% off");
        assert_eq!(en.discount(&d("0.980")), "2% off");
        assert_eq!(zh.discount(&d("1.000")), "无折扣");
    }

    #[test]
    fn what_a_coupon_gives_reads_naturally_in_both_languages() {
        use crate::domain::rewards::RewardKind::{Amount, Item, Percent};
        let zh = PageCtx::bare(Lang::Zh);
        let en = PageCtx::bare(Lang::En);
        let d = |s: &str| Some(s.parse::<Decimal>().unwrap());
        assert_eq!(zh.reward_value(&Percent, &d("15.00")), "8.5折");
        assert_eq!(zh.reward_value(&Percent, &d("10")), "9折");
        assert_eq!(en.reward_value(&Percent, &d("15.00")), "15% off");
        assert_eq!(zh.reward_value(&Amount, &d("10")), "立减 ¥10.00");
        assert_eq!(en.reward_value(&Amount, &d("1200.5")), "¥1,200.50 off");
        assert_eq!(en.reward_value(&Item, &None), "Free item");
        assert_eq!(zh.reward_value(&Item, &None), "免费兑换");
    }
}
