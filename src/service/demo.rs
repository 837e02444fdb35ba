//! `seed-demo`: a handful of members across the levels with months of history and some
//! points expiring soon, written through the real services on a clock that walks forward
//! from about eleven months ago to today.

use std::sync::Arc;

use rust_decimal::Decimal;
use sqlx::PgPool;
use time::Duration;

use super::members::NewMember;
use super::points::{EarnRequest, UseRequest};
use super::{Ctx, Services};
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::config::Config;
use crate::domain::{Money, Points, Reference};
use crate::error::{Error, Result};

pub const DEMO_PASSWORD: &str = "demo-password";

/// (email, display name, order amounts spread over the months)
const MEMBERS: &[(&str, &str, &[i64])] = &[
    ("li.na@example.com", "李娜", &[120, 80, 95, 60]),
    ("wang.wei@example.com", "王伟", &[300, 250, 280, 320, 150]),
    (
        "zhang.min@example.com",
        "张敏",
        &[900, 1200, 800, 1100, 1300],
    ),
    (
        "chen.jie@example.com",
        "陈杰",
        &[2500, 3000, 2800, 2600, 3100, 2900, 3400, 2200],
    ),
    ("alice@example.com", "Alice Smith", &[450, 700, 380, 520]),
    ("bob@example.com", "Bob Jones", &[60, 40]),
];

/// Creates the demo members; returns their emails. Members that already exist are kept.
pub async fn seed_demo(pool: PgPool, config: Config) -> Result<Vec<String>> {
    let today = SystemClock.now();
    let clock = ManualClock::new(today - Duration::days(340));
    let services = Services::new(Ctx::new(pool, config, Arc::new(clock.clone()))?);
    let mut created = Vec::new();
    for (i, (email, name, orders)) in MEMBERS.iter().enumerate() {
        clock.set(today - Duration::days(340) + Duration::hours(i as i64));
        let member = match services
            .members
            .create_member(NewMember::parse(email, name, Some(DEMO_PASSWORD))?)
            .await
        {
            Ok(m) => m,
            Err(Error::EmailTaken) => continue,
            Err(e) => return Err(e),
        };
        let step = 330 / orders.len() as i64;
        for (n, amount) in orders.iter().enumerate() {
            if n > 0 {
                clock.advance(Duration::days(step));
            }
            let order = format!("DEMO-{}-{n}", member.user_id);
            let earn = services
                .points
                .earn_points(EarnRequest {
                    user_id: member.user_id,
                    base_points: Points::parse("base_points", (*amount).min(3000))?,
                    source_type: Reference::parse("source_type", "order_complete")?,
                    source_id: Reference::parse("source_id", &order)?,
                    amount: Some(Money::parse("amount", Decimal::from(*amount))?),
                    category: None,
                })
                .await;
            if let Err(e) = earn {
                tracing::warn!(%email, error = %e, "demo earn skipped");
            }
            if n % 2 == 1 {
                let spend = (*amount / 4).max(1);
                let _ = services
                    .points
                    .use_points(UseRequest {
                        user_id: member.user_id,
                        points: Points::parse("points", spend)?,
                        usage_type: Reference::parse("usage_type", "checkout")?,
                        reference_id: Reference::parse("reference_id", &format!("{order}-PAY"))?,
                    })
                    .await;
            }
        }
        // and something in the last month, so the staff dashboard has a recent picture
        for (n, days_ago) in [(0i64, 20i64), (1, 9), (2, 2)] {
            clock.set(today - Duration::days(days_ago + i as i64) + Duration::hours(n));
            let order = format!("DEMO-{}-R{n}", member.user_id);
            let amount = 40 + 35 * (i as i64 + n);
            let earned = services
                .points
                .earn_points(EarnRequest {
                    user_id: member.user_id,
                    base_points: Points::parse("base_points", amount)?,
                    source_type: Reference::parse("source_type", "order_complete")?,
                    source_id: Reference::parse("source_id", &order)?,
                    amount: Some(Money::parse("amount", Decimal::from(amount))?),
                    category: None,
                })
                .await;
            if earned.is_ok() && n == 1 {
                let _ = services
                    .points
                    .use_points(UseRequest {
                        user_id: member.user_id,
                        points: Points::parse("points", amount / 2)?,
                        usage_type: Reference::parse("usage_type", "checkout")?,
                        reference_id: Reference::parse("reference_id", &format!("{order}-PAY"))?,
                    })
                    .await;
            }
        }
        created.push((*email).to_owned());
    }
    Ok(created)
}
