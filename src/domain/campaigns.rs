//! Earning campaigns: double-points weeks, fixed bonuses on orders, sign-up and birthday
//! bonuses; and the rule for how their bonuses meet the caps.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum CampaignKind {
    /// an order's points × `multiplier` (the part above ×1 is the bonus line)
    Multiplier,
    /// `bonus_points` on each order it applies to (at least `min_amount`, if set)
    Bonus,
    /// `bonus_points` once, when the member signs up
    Signup,
    /// `bonus_points` once a year, on the member's birthday
    Birthday,
}

impl CampaignKind {
    pub const ALL: [CampaignKind; 4] =
        [Self::Multiplier, Self::Bonus, Self::Signup, Self::Birthday];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Multiplier => "multiplier",
            Self::Bonus => "bonus",
            Self::Signup => "signup",
            Self::Birthday => "birthday",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }

    /// Whether it applies to an order's earn (rather than to a member's event).
    pub fn on_orders(self) -> bool {
        matches!(self, Self::Multiplier | Self::Bonus)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: i32,
    pub name: String,
    pub kind: CampaignKind,
    pub source_type: Option<String>,
    pub category: Option<String>,
    pub multiplier: Option<Decimal>,
    pub bonus_points: Option<i64>,
    pub min_amount: Option<Decimal>,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

/// Where a campaign stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignState {
    Scheduled,
    Live,
    Ended,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Live => "live",
            Self::Ended => "ended",
        }
    }
}

impl Campaign {
    pub fn state_at(&self, now: OffsetDateTime) -> CampaignState {
        if now < self.starts_at {
            CampaignState::Scheduled
        } else if now < self.ends_at {
            CampaignState::Live
        } else {
            CampaignState::Ended
        }
    }

    /// Whether it pays a bonus on an earn from `source_type` (and `category`) of `amount`
    /// at `now`.
    pub fn applies_to(
        &self,
        source_type: &str,
        category: Option<&str>,
        amount: Option<Decimal>,
        now: OffsetDateTime,
    ) -> bool {
        self.kind.on_orders()
            && self.state_at(now) == CampaignState::Live
            && self.source_type.as_deref().is_none_or(|s| s == source_type)
            && self.category.as_deref().is_none_or(|c| Some(c) == category)
            && self
                .min_amount
                .is_none_or(|min| amount.is_some_and(|a| a >= min))
    }

    /// The bonus it adds to an earn of `earned` points (before the caps).
    pub fn bonus_for(&self, earned: i64) -> i64 {
        match (self.kind, self.multiplier, self.bonus_points) {
            (CampaignKind::Multiplier, Some(m), _) => (Decimal::from(earned) * (m - Decimal::ONE))
                .floor()
                .to_i64()
                .unwrap_or(0),
            (_, _, Some(b)) => b,
            _ => 0,
        }
    }
}

/// One bonus line an earn (or sign-up, or birthday) gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedBonus {
    pub campaign_id: i32,
    pub name: String,
    pub points: i64,
    /// what the caps took off it
    pub trimmed: i64,
}

/// The bonuses of `campaigns` on an event of `earned` points, after the caps: each bonus
/// line is at most `max_per_tx`, and the day's points (`earned_today`, which already
/// counts the earn itself) never pass `daily_limit`. A bonus is trimmed to what is left
/// rather than refusing the order, whose own points are checked against the caps as
/// always; one trimmed to nothing is not written.
pub fn plan_bonuses(
    campaigns: &[&Campaign],
    earned: i64,
    earned_today: i64,
    max_per_tx: i64,
    daily_limit: i64,
) -> Vec<PlannedBonus> {
    let mut today = earned_today;
    let mut out = Vec::new();
    for c in campaigns {
        let wanted = c.bonus_for(earned).max(0);
        let points = wanted.min(max_per_tx).min((daily_limit - today).max(0));
        if points > 0 {
            today += points;
            out.push(PlannedBonus {
                campaign_id: c.id,
                name: c.name.clone(),
                points,
                trimmed: wanted - points,
            });
        }
    }
    out
}

/// A campaign as staff enter it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignInput {
    pub name: String,
    pub kind: CampaignKind,
    pub source_type: Option<String>,
    pub category: Option<String>,
    pub multiplier: Option<Decimal>,
    pub bonus_points: Option<i64>,
    pub min_amount: Option<Decimal>,
    pub starts_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default)]
pub struct CampaignFields<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub source_type: &'a str,
    pub category: &'a str,
    pub multiplier: &'a str,
    pub bonus_points: &'a str,
    pub min_amount: &'a str,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
}

impl CampaignInput {
    pub fn parse(f: &CampaignFields<'_>) -> Result<Self, Error> {
        let name = f.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Error::validation(
                "name",
                "name must be 1 to 100 characters without control characters",
            ));
        }
        let kind = CampaignKind::parse(f.kind).ok_or_else(|| {
            Error::validation(
                "kind",
                "kind must be one of multiplier, bonus, signup, birthday",
            )
        })?;
        let text = |field: &'static str, s: &str| -> Result<Option<String>, Error> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if !kind.on_orders() {
                return Err(Error::validation(
                    field,
                    format!("{field} applies to order campaigns only (multiplier, bonus)"),
                ));
            }
            if s.chars().count() > 100 || s.chars().any(char::is_control) {
                return Err(Error::validation(
                    field,
                    format!("{field} must be at most 100 characters"),
                ));
            }
            Ok(Some(s.to_owned()))
        };
        let source_type = text("source_type", f.source_type)?;
        let category = text("category", f.category)?;
        let (multiplier, bonus_points) = if kind == CampaignKind::Multiplier {
            let m = crate::domain::plain_decimal(f.multiplier)
                .filter(|m| *m > Decimal::ONE && *m <= Decimal::TEN && m.scale() <= 2)
                .ok_or_else(|| {
                    Error::validation(
                        "multiplier",
                        "the multiplier must be more than 1 and at most 10, e.g. 2 for double points",
                    )
                })?;
            (Some(m), None)
        } else {
            let b = f
                .bonus_points
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|b| (1..=1_000_000).contains(b))
                .ok_or_else(|| {
                    Error::validation(
                        "bonus_points",
                        "the bonus must be a whole number of points from 1 to 1000000",
                    )
                })?;
            (None, Some(b))
        };
        let min_amount = match f.min_amount.trim() {
            "" => None,
            _ if kind != CampaignKind::Bonus => {
                return Err(Error::validation(
                    "min_amount",
                    "a least order amount applies to bonus campaigns only",
                ));
            }
            s => Some(
                crate::domain::plain_decimal(s)
                    .filter(|a| {
                        *a > Decimal::ZERO
                            && a.scale() <= 2
                            && *a < Decimal::from(10_000_000_000i64)
                    })
                    .ok_or_else(|| {
                        Error::validation(
                            "min_amount",
                            "the least order amount is a sum such as 100 or 99.90",
                        )
                    })?,
            ),
        };
        let starts_at = f
            .starts_at
            .ok_or_else(|| Error::validation("starts_at", "a campaign needs its first day"))?;
        let ends_at = f
            .ends_at
            .ok_or_else(|| Error::validation("ends_at", "a campaign needs its last day"))?;
        if ends_at <= starts_at {
            return Err(Error::invalid(
                "ends_at",
                crate::error::Invalid::EndBeforeStart,
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            kind,
            source_type,
            category,
            multiplier: multiplier.map(|m| m.round_dp(2)),
            bonus_points,
            min_amount: min_amount.map(crate::domain::money),
            starts_at,
            ends_at,
        })
    }
}

/// What an earn would give, for staff to try a campaign before it runs: the order's points
/// (base × the level's multiplier, rounded down) and each bonus, before the daily limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarnPreview {
    pub base_points: i64,
    pub points: i64,
    pub bonuses: Vec<PlannedBonus>,
}

impl EarnPreview {
    pub fn total(&self) -> i64 {
        self.points + self.bonuses.iter().map(|b| b.points).sum::<i64>()
    }
}

/// `base` points (or, without them, `amount` at `rate` points per yuan, rounded down) for
/// a member on a level with `level_multiplier`, with the campaigns live at `now`.
#[allow(clippy::too_many_arguments)]
pub fn preview(
    campaigns: &[Campaign],
    level_multiplier: Decimal,
    base: Option<i64>,
    amount: Option<Decimal>,
    rate: Decimal,
    source_type: &str,
    category: Option<&str>,
    now: OffsetDateTime,
    max_per_tx: i64,
) -> EarnPreview {
    let base_points = base.unwrap_or_else(|| {
        amount
            .map(|a| (a * rate).floor().to_i64().unwrap_or(0))
            .unwrap_or(0)
    });
    let points = (Decimal::from(base_points) * level_multiplier)
        .floor()
        .to_i64()
        .unwrap_or(0);
    let live: Vec<&Campaign> = campaigns
        .iter()
        .filter(|c| c.applies_to(source_type, category, amount, now))
        .collect();
    EarnPreview {
        base_points,
        points,
        bonuses: plan_bonuses(&live, points, 0, max_per_tx, i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn campaign(kind: CampaignKind, m: Option<&str>, b: Option<i64>) -> Campaign {
        Campaign {
            id: 1,
            name: "c".into(),
            kind,
            source_type: None,
            category: None,
            multiplier: m.map(|m| m.parse().unwrap()),
            bonus_points: b,
            min_amount: None,
            starts_at: datetime!(2025-09-01 00:00 +8),
            ends_at: datetime!(2025-10-01 00:00 +8),
        }
    }

    #[test]
    fn double_points_adds_a_line_as_large_as_the_order_and_rounds_down() {
        let double = campaign(CampaignKind::Multiplier, Some("2"), None);
        assert_eq!(double.bonus_for(360), 360);
        let half = campaign(CampaignKind::Multiplier, Some("1.5"), None);
        assert_eq!(half.bonus_for(301), 150);
        assert_eq!(
            campaign(CampaignKind::Bonus, None, Some(50)).bonus_for(1),
            50
        );
    }

    #[test]
    fn a_campaign_applies_inside_its_window_to_its_source_category_and_least_amount() {
        let mut c = campaign(CampaignKind::Bonus, None, Some(50));
        c.source_type = Some("order_complete".into());
        c.category = Some("shoes".into());
        c.min_amount = Some("100".parse().unwrap());
        let now = datetime!(2025-09-18 10:00 +8);
        let hundred = Some("100".parse().unwrap());
        assert!(c.applies_to("order_complete", Some("shoes"), hundred, now));
        assert!(!c.applies_to("order_complete", Some("hats"), hundred, now));
        assert!(!c.applies_to("order_complete", None, hundred, now));
        assert!(!c.applies_to("review", Some("shoes"), hundred, now));
        assert!(!c.applies_to(
            "order_complete",
            Some("shoes"),
            Some("99.99".parse().unwrap()),
            now
        ));
        assert!(!c.applies_to("order_complete", Some("shoes"), None, now));
        assert!(!c.applies_to("order_complete", Some("shoes"), hundred, c.ends_at));
        assert!(c.applies_to("order_complete", Some("shoes"), hundred, c.starts_at));
        assert!(!c.applies_to(
            "order_complete",
            Some("shoes"),
            hundred,
            c.starts_at - time::Duration::SECOND
        ));
        let signup = campaign(CampaignKind::Signup, None, Some(100));
        assert!(
            !signup.applies_to("order_complete", None, None, now),
            "not on orders"
        );
    }

    #[test]
    fn bonuses_are_trimmed_to_the_caps_never_refusing_the_order() {
        let a = campaign(CampaignKind::Multiplier, Some("3"), None);
        let mut b = campaign(CampaignKind::Bonus, None, Some(500));
        b.id = 2;
        // 1000 earned, ×3 wants 2000 more: at most 1500 per line, and the day (4000 so
        // far, the earn included) has 1000 left: 1000, then nothing for b
        let plan = plan_bonuses(&[&a, &b], 1000, 4000, 1500, 5000);
        assert_eq!(plan.len(), 1);
        assert_eq!((plan[0].points, plan[0].trimmed), (1000, 1000));
        let plan = plan_bonuses(&[&a, &b], 100, 100, 1500, 5000);
        assert_eq!(
            plan.iter().map(|p| p.points).collect::<Vec<_>>(),
            vec![200, 500]
        );
        assert!(plan_bonuses(&[&a], 100, 5000, 1500, 5000).is_empty());
    }

    #[test]
    fn the_preview_reads_amount_at_the_program_rate_and_applies_the_level_and_campaigns() {
        let double = campaign(CampaignKind::Multiplier, Some("2"), None);
        let p = preview(
            &[double],
            "1.20".parse().unwrap(),
            None,
            Some("300.90".parse().unwrap()),
            Decimal::ONE,
            "order_complete",
            None,
            datetime!(2025-09-18 10:00 +8),
            10_000,
        );
        assert_eq!((p.base_points, p.points, p.total()), (300, 360, 720));
    }

    #[test]
    fn a_campaign_form_is_checked_field_by_field() {
        let start = Some(datetime!(2025-09-01 00:00 +8));
        let end = Some(datetime!(2025-09-08 00:00 +8));
        let ok = CampaignFields {
            name: "双倍积分周",
            kind: "multiplier",
            multiplier: "2",
            starts_at: start,
            ends_at: end,
            ..Default::default()
        };
        let c = CampaignInput::parse(&ok).unwrap();
        assert_eq!(c.multiplier, Some(Decimal::TWO));
        let field = |f: CampaignFields<'_>| match CampaignInput::parse(&f) {
            Err(Error::Validation { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(CampaignFields {
                multiplier: "1",
                ..ok.clone()
            }),
            "multiplier"
        );
        assert_eq!(
            field(CampaignFields {
                multiplier: "10.5",
                ..ok.clone()
            }),
            "multiplier"
        );
        assert_eq!(
            field(CampaignFields {
                kind: "bonus",
                ..ok.clone()
            }),
            "bonus_points"
        );
        assert_eq!(
            field(CampaignFields {
                kind: "signup",
                bonus_points: "100",
                source_type: "x",
                ..ok.clone()
            }),
            "source_type"
        );
        assert_eq!(
            field(CampaignFields {
                min_amount: "100",
                ..ok.clone()
            }),
            "min_amount"
        );
        assert_eq!(
            field(CampaignFields {
                ends_at: start,
                ..ok.clone()
            }),
            "ends_at"
        );
        assert_eq!(
            field(CampaignFields {
                starts_at: None,
                ..ok.clone()
            }),
            "starts_at"
        );
        assert_eq!(
            field(CampaignFields {
                kind: "raffle",
                ..ok.clone()
            }),
            "kind"
        );
        let bonus = CampaignInput::parse(&CampaignFields {
            kind: "bonus",
            bonus_points: "50",
            min_amount: "99.9",
            ..ok
        })
        .unwrap();
        assert_eq!(bonus.min_amount, Some("99.90".parse().unwrap()));
    }
}
