//! Rewards members redeem points for, and the coupons a redemption issues.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Error;

/// What a coupon gives at checkout.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum RewardKind {
    /// `value` yuan off the order
    Amount,
    /// `value` percent off the order
    Percent,
    /// a free item (the reward's name and description say which)
    Item,
}

impl RewardKind {
    pub const ALL: [RewardKind; 3] = [Self::Amount, Self::Percent, Self::Item];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Amount => "amount",
            Self::Percent => "percent",
            Self::Item => "item",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reward {
    pub id: i32,
    pub name: String,
    pub description: String,
    pub kind: RewardKind,
    pub value: Option<Decimal>,
    pub points_cost: i64,
    /// left to redeem; `None` is no limit
    pub stock: Option<i32>,
    /// coupons issued and not cancelled
    pub issued: i32,
    pub per_member_limit: Option<i32>,
    pub min_level_id: Option<i32>,
    pub min_level_name: Option<String>,
    pub min_level_order: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub starts_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
    pub coupon_valid_days: i32,
    pub is_active: bool,
}

impl Reward {
    /// Whether it may be redeemed at `now` by anyone (active, inside its window, in stock).
    pub fn open_at(&self, now: OffsetDateTime) -> Result<(), RewardRefusal> {
        if !self.is_active {
            return Err(RewardRefusal::Inactive);
        }
        if self.starts_at.is_some_and(|s| now < s) {
            return Err(RewardRefusal::NotStarted);
        }
        if self.ends_at.is_some_and(|e| now >= e) {
            return Err(RewardRefusal::Ended);
        }
        if self.stock == Some(0) {
            return Err(RewardRefusal::OutOfStock);
        }
        Ok(())
    }
}

/// Why a reward cannot be redeemed (each is its own API code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardRefusal {
    Inactive,
    NotStarted,
    Ended,
    OutOfStock,
    /// the member has redeemed it as often as the reward allows
    LimitReached {
        limit: i32,
    },
    /// the member's level is below the reward's minimum
    LevelTooLow,
}

impl RewardRefusal {
    pub fn code(self) -> &'static str {
        match self {
            Self::Inactive | Self::NotStarted | Self::Ended => "REWARD_UNAVAILABLE",
            Self::OutOfStock => "REWARD_OUT_OF_STOCK",
            Self::LimitReached { .. } => "REWARD_LIMIT_REACHED",
            Self::LevelTooLow => "LEVEL_TOO_LOW",
        }
    }

    /// The key of its sentence in the UI text table.
    pub fn text_key(self) -> &'static str {
        match self {
            Self::Inactive => "reward.refused.inactive",
            Self::NotStarted => "reward.refused.not_started",
            Self::Ended => "reward.refused.ended",
            Self::OutOfStock => "reward.refused.out_of_stock",
            Self::LimitReached { .. } => "reward.refused.limit",
            Self::LevelTooLow => "reward.refused.level",
        }
    }
}

impl std::fmt::Display for RewardRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inactive => f.write_str("this reward is not offered at the moment"),
            Self::NotStarted => f.write_str("this reward cannot be redeemed yet"),
            Self::Ended => f.write_str("this reward can no longer be redeemed"),
            Self::OutOfStock => f.write_str("this reward is out of stock"),
            Self::LimitReached { limit } => {
                write!(f, "each member may redeem this reward {limit} time(s)")
            }
            Self::LevelTooLow => f.write_str("this reward needs a higher membership level"),
        }
    }
}

/// A coupon's state as anyone sees it: an issued coupon past its expiry is expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CouponStatus {
    /// can be used at checkout
    Issued,
    /// used on an order (`order_id`)
    Consumed,
    /// redemption cancelled, points refunded
    Cancelled,
    /// issued but not used before `expires_at`
    Expired,
}

impl CouponStatus {
    pub fn of(stored: &str, expires_at: OffsetDateTime, now: OffsetDateTime) -> Self {
        match stored {
            "consumed" => Self::Consumed,
            "cancelled" => Self::Cancelled,
            _ if expires_at <= now => Self::Expired,
            _ => Self::Issued,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Consumed => "consumed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coupon {
    pub id: i64,
    pub code: String,
    pub reward_id: i32,
    pub user_id: i64,
    pub title: String,
    pub kind: RewardKind,
    pub value: Option<Decimal>,
    pub points: i64,
    pub redemption_id: String,
    pub status: CouponStatus,
    pub expires_at: OffsetDateTime,
    pub order_id: Option<String>,
    pub consumed_at: Option<OffsetDateTime>,
    pub cancelled_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

impl Coupon {
    /// `XXXX-XXXX-XXXX-XXXX`, as printed for people.
    pub fn display_code(&self) -> String {
        display_code(&self.code)
    }

    /// What this coupon takes off an order of `amount` (never more than the order).
    pub fn discount_on(&self, amount: Decimal) -> Option<Decimal> {
        discount_on(self.kind, self.value, amount)
    }
}

/// What a coupon of `kind` and `value` takes off an order of `amount`, to the cent
/// (percentages round half up); `None` for a free item.
pub fn discount_on(kind: RewardKind, value: Option<Decimal>, amount: Decimal) -> Option<Decimal> {
    let value = value?;
    let off = match kind {
        RewardKind::Amount => value.min(amount),
        RewardKind::Percent => (amount * value / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero),
        RewardKind::Item => return None,
    };
    Some(crate::domain::money(off))
}

/// Crockford's base32 alphabet: no I, L, O or U, so a code read aloud or typed from a
/// screen cannot be mistaken.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new coupon code: 16 characters, 80 bits from the operating system's generator by way
/// of rand's thread RNG (ChaCha, reseeded), so codes cannot be guessed from one another.
pub fn new_coupon_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..32)]))
        .collect()
}

/// A code as a person may type it: any case, with spaces or dashes, O for 0 and I or L for
/// 1. `None` if it cannot be a code.
pub fn normalize_code(s: &str) -> Option<String> {
    let mut out = String::with_capacity(16);
    for c in s.chars() {
        let c = match c.to_ascii_uppercase() {
            ' ' | '-' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) || out.len() == 16 {
            return None;
        }
        out.push(c);
    }
    (out.len() == 16).then_some(out)
}

pub fn display_code(code: &str) -> String {
    code.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("-")
}

/// A QR code of `text` as an inline SVG: one path of unit squares on a white square with
/// the standard four-module quiet zone, scaled by the page.
pub fn qr_svg(text: &str, label: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 8;
    let mut path = String::with_capacity(colors.len() * 4);
    for (i, c) in colors.iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (x, y) = (i % width + 4, i / width + 4);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    let label = label
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         class=\"qr\" role=\"img\" aria-label=\"{label}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

/// A reward as staff enter it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardInput {
    pub name: String,
    pub description: String,
    pub kind: RewardKind,
    pub value: Option<Decimal>,
    pub points_cost: i64,
    pub stock: Option<i32>,
    pub per_member_limit: Option<i32>,
    pub min_level_id: Option<i32>,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
    pub coupon_valid_days: i32,
    pub is_active: bool,
}

/// The fields of a reward form or API body, as sent.
#[derive(Debug, Clone, Default)]
pub struct RewardFields<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub points_cost: &'a str,
    pub stock: &'a str,
    pub per_member_limit: &'a str,
    pub min_level_id: &'a str,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
    pub coupon_valid_days: &'a str,
    pub is_active: bool,
}

impl RewardInput {
    /// Every field checked; the first that does not fit is the error, named.
    pub fn parse(f: &RewardFields<'_>) -> Result<Self, Error> {
        let name = f.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Error::validation(
                "name",
                "name must be 1 to 100 characters without control characters",
            ));
        }
        let description = f.description.trim();
        if description.chars().count() > 500 {
            return Err(Error::validation(
                "description",
                "description must be at most 500 characters",
            ));
        }
        let kind = RewardKind::parse(f.kind).ok_or_else(|| {
            Error::validation("kind", "kind must be one of amount, percent, item")
        })?;
        let value = match kind {
            RewardKind::Item => None,
            RewardKind::Amount => Some(
                crate::domain::plain_decimal(f.value)
                    .filter(|v| *v > Decimal::ZERO && v.scale() <= 2 && *v < Decimal::from(10_000_000_000i64))
                    .ok_or_else(|| {
                        Error::validation(
                            "value",
                            "an amount coupon needs the yuan it takes off, e.g. 10 or 9.90",
                        )
                    })?,
            ),
            RewardKind::Percent => Some(
                crate::domain::plain_decimal(f.value)
                    .filter(|v| *v > Decimal::ZERO && *v < Decimal::ONE_HUNDRED && v.scale() <= 2)
                    .ok_or_else(|| {
                        Error::validation(
                            "value",
                            "a percentage coupon needs the percent it takes off, more than 0 and less than 100, e.g. 15",
                        )
                    })?,
            ),
        };
        let points_cost = whole(f.points_cost, 1, 1_000_000_000).ok_or_else(|| {
            Error::validation(
                "points_cost",
                "points cost must be a whole number from 1 to 1000000000",
            )
        })?;
        let stock = optional_whole(f.stock, 0, i64::from(i32::MAX)).ok_or_else(|| {
            Error::validation(
                "stock",
                "stock must be empty (no limit) or a whole number of 0 or more",
            )
        })?;
        let per_member_limit = optional_whole(f.per_member_limit, 1, i64::from(i32::MAX))
            .ok_or_else(|| {
                Error::validation(
                    "per_member_limit",
                    "the limit per member must be empty (no limit) or a whole number of 1 or more",
                )
            })?;
        let min_level_id =
            optional_whole(f.min_level_id, 1, i64::from(i32::MAX)).ok_or_else(|| {
                Error::invalid("min_level_id", crate::error::Invalid::ChooseListedLevel)
            })?;
        if let (Some(s), Some(e)) = (f.starts_at, f.ends_at) {
            if e <= s {
                return Err(Error::invalid(
                    "ends_at",
                    crate::error::Invalid::EndBeforeStart,
                ));
            }
        }
        let coupon_valid_days = whole(f.coupon_valid_days, 1, 3650).ok_or_else(|| {
            Error::validation(
                "coupon_valid_days",
                "coupons must be valid for a whole number of days from 1 to 3650",
            )
        })?;
        Ok(Self {
            name: name.to_owned(),
            description: description.to_owned(),
            kind,
            value: value.map(crate::domain::money),
            points_cost,
            stock: stock.map(|n| n as i32),
            per_member_limit: per_member_limit.map(|n| n as i32),
            min_level_id: min_level_id.map(|n| n as i32),
            starts_at: f.starts_at,
            ends_at: f.ends_at,
            coupon_valid_days: coupon_valid_days as i32,
            is_active: f.is_active,
        })
    }
}

fn whole(s: &str, min: i64, max: i64) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().filter(|n| (min..=max).contains(n))
}

/// Empty is `Some(None)` (no limit); a number in range `Some(Some(n))`; anything else `None`.
fn optional_whole(s: &str, min: i64, max: i64) -> Option<Option<i64>> {
    if s.trim().is_empty() {
        Some(None)
    } else {
        whole(s, min, max).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> RewardFields<'static> {
        RewardFields {
            name: "¥10 off",
            kind: "amount",
            value: "10",
            points_cost: "500",
            coupon_valid_days: "30",
            is_active: true,
            ..Default::default()
        }
    }

    #[test]
    fn codes_are_sixteen_unambiguous_characters_and_differ() {
        let a = new_coupon_code();
        let b = new_coupon_code();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)), "{a}");
        assert!(!a.contains(['I', 'L', 'O', 'U']));
    }

    #[test]
    fn a_typed_code_is_read_the_way_a_person_means_it() {
        assert_eq!(
            normalize_code(" abcd-efgh-jkmn-pq0o ").as_deref(),
            Some("ABCDEFGHJKMNPQ00")
        );
        assert_eq!(
            normalize_code("1ili-2222-3333-4444").as_deref(),
            Some("1111222233334444")
        );
        for bad in [
            "",
            "ABCD",
            "ABCDEFGHJKMNPQRSTV",
            "ABCDEFGHJKMNPQRU",
            "ÄBCDEFGHJKMNPQRS",
            "ABCD_EFGH_JKMN_PQ",
        ] {
            assert_eq!(normalize_code(bad), None, "{bad}");
        }
        assert_eq!(display_code("ABCDEFGHJKMNPQRS"), "ABCD-EFGH-JKMN-PQRS");
    }

    #[test]
    fn discounts_never_exceed_the_order_and_round_to_the_cent() {
        let d = |k, v: &str, a: &str| discount_on(k, Some(v.parse().unwrap()), a.parse().unwrap());
        assert_eq!(
            d(RewardKind::Amount, "10", "300"),
            Some("10.00".parse().unwrap())
        );
        assert_eq!(
            d(RewardKind::Amount, "10", "6.50"),
            Some("6.50".parse().unwrap())
        );
        assert_eq!(
            d(RewardKind::Percent, "15", "99.99"),
            Some("15.00".parse().unwrap())
        );
        assert_eq!(
            d(RewardKind::Percent, "12.5", "0.04"),
            Some("0.01".parse().unwrap())
        );
        assert_eq!(discount_on(RewardKind::Item, None, Decimal::TEN), None);
    }

    #[test]
    fn a_reward_form_is_checked_field_by_field() {
        let ok = RewardInput::parse(&fields()).unwrap();
        assert_eq!(ok.value, Some("10.00".parse().unwrap()));
        assert_eq!(ok.stock, None);
        let field = |f: RewardFields<'_>| match RewardInput::parse(&f) {
            Err(Error::Validation { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(RewardFields {
                name: "  ",
                ..fields()
            }),
            "name"
        );
        assert_eq!(
            field(RewardFields {
                kind: "cash",
                ..fields()
            }),
            "kind"
        );
        assert_eq!(
            field(RewardFields {
                value: "-1",
                ..fields()
            }),
            "value"
        );
        assert_eq!(
            field(RewardFields {
                value: "1.001",
                ..fields()
            }),
            "value"
        );
        assert_eq!(
            field(RewardFields {
                kind: "percent",
                value: "100",
                ..fields()
            }),
            "value"
        );
        assert_eq!(
            field(RewardFields {
                points_cost: "0",
                ..fields()
            }),
            "points_cost"
        );
        assert_eq!(
            field(RewardFields {
                points_cost: "1e3",
                ..fields()
            }),
            "points_cost"
        );
        assert_eq!(
            field(RewardFields {
                stock: "-1",
                ..fields()
            }),
            "stock"
        );
        assert_eq!(
            field(RewardFields {
                per_member_limit: "0",
                ..fields()
            }),
            "per_member_limit"
        );
        assert_eq!(
            field(RewardFields {
                coupon_valid_days: "3651",
                ..fields()
            }),
            "coupon_valid_days"
        );
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            field(RewardFields {
                starts_at: Some(now),
                ends_at: Some(now),
                ..fields()
            }),
            "ends_at"
        );
        let item = RewardInput::parse(&RewardFields {
            kind: "item",
            value: "ignored",
            ..fields()
        })
        .unwrap();
        assert_eq!(item.value, None);
    }

    #[test]
    fn the_qr_code_is_an_svg_of_square_modules_with_a_quiet_zone() {
        let svg = qr_svg("ABCDEFGHJKMNPQRS", "coupon <code>").unwrap();
        assert!(svg.starts_with("<svg "), "{svg}");
        // version 1 (21 modules) + 2 × 4 quiet zone
        assert!(svg.contains("viewBox=\"0 0 29 29\""), "{svg}");
        assert!(svg.contains("aria-label=\"coupon &lt;code&gt;\""));
        // the top-left finder pattern starts at the quiet zone's edge
        assert!(svg.contains("M4 4h1v1h-1z"));
        assert!(!svg.contains("M3 3h1"));
    }
}
