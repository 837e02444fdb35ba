//! The tier lifecycle's data (migration 0018): qualifying spend by business month, the
//! retention of a level, and the review in batches.

use rust_decimal::Decimal;
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::config::TierRules;

/// The program's rules as the SQL functions take them, with the business time zone.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub tiers: &'a TierRules,
    pub tz: &'a str,
}

impl Rules<'_> {
    fn window(&self) -> (&'static str, i32) {
        self.tiers.window_sql()
    }
}

/// The member's qualifying spend at an instant (lifetime: total spent).
pub async fn window_spend(
    conn: &mut PgConnection,
    user_id: i64,
    at: OffsetDateTime,
    rules: Rules<'_>,
) -> sqlx::Result<Decimal> {
    let (window, months) = rules.window();
    sqlx::query_scalar!(
        r#"select window_spend($1, $2, $3, $4, $5) as "spent!""#,
        user_id,
        at,
        window,
        months,
        rules.tz
    )
    .fetch_one(conn)
    .await
}

/// When a level reached at `reached` is reviewed: its retention end, and that plus grace.
/// None with the lifetime window (a level is then kept for good).
pub async fn retention(
    conn: &mut PgConnection,
    reached: OffsetDateTime,
    rules: Rules<'_>,
) -> sqlx::Result<Option<(OffsetDateTime, OffsetDateTime)>> {
    if rules.tiers.is_lifetime() {
        return Ok(None);
    }
    let (retention, months) = rules.tiers.retention_sql();
    let end = sqlx::query_scalar!(
        r#"select retention_end($1, $2, $3, $4) as "end!""#,
        reached,
        retention,
        months,
        rules.tz
    )
    .fetch_one(conn)
    .await?;
    Ok(Some((end, end + rules.tiers.grace)))
}

/// The start of the day after `date` in the business time zone: a level set by hand "until
/// 2027-06-30" ends as that day does.
pub async fn end_of_day(
    conn: &mut PgConnection,
    date: time::Date,
    tz: &str,
) -> sqlx::Result<OffsetDateTime> {
    sqlx::query_scalar!(
        r#"select (($1::date + 1)::timestamp at time zone $2) as "at!""#,
        date,
        tz
    )
    .fetch_one(conn)
    .await
}

/// One member read by a review batch (see `review_levels` in migration 0018).
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub user_id: i64,
    /// the review time it was read at: the cursor of the next batch
    pub review_at: OffsetDateTime,
    /// kept, noticed, dropped or passed
    pub outcome: String,
}

pub async fn review_batch(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    after: (OffsetDateTime, i64),
    limit: i32,
    rules: Rules<'_>,
) -> sqlx::Result<Vec<Reviewed>> {
    let (window, window_months) = rules.window();
    let (retention, retention_months) = rules.tiers.retention_sql();
    let grace = pg_interval(rules.tiers.grace);
    let notice = pg_interval(rules.tiers.notice);
    sqlx::query_as!(
        Reviewed,
        r#"select user_id as "user_id!", review_at as "review_at!", outcome as "outcome!"
             from review_levels($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"#,
        now,
        after.0,
        after.1,
        limit,
        window,
        window_months,
        retention,
        retention_months,
        rules.tiers.review_sql(),
        grace,
        notice,
        rules.tz
    )
    .fetch_all(conn)
    .await
}

fn pg_interval(d: time::Duration) -> sqlx::postgres::types::PgInterval {
    sqlx::postgres::types::PgInterval {
        months: 0,
        days: 0,
        microseconds: d.whole_microseconds().clamp(0, i64::MAX as i128) as i64,
    }
}

/// What the member's upgrade page says about keeping their level.
#[derive(Debug, Clone)]
pub struct TierStatus {
    /// qualifying spend now (lifetime: total spent)
    pub window_spent: Decimal,
    /// the spend that will count at the review (see `review_levels`)
    pub review_spent: Decimal,
    pub kept_until: Option<OffsetDateTime>,
    pub review_at: Option<OffsetDateTime>,
    pub manual: bool,
    /// a downgrade notice went out for the coming review
    pub noticed: bool,
    /// a deferred upgrade waits for the cooldown to end
    pub upgrade_due_at: Option<OffsetDateTime>,
}

pub async fn status(
    conn: &mut PgConnection,
    user_id: i64,
    now: OffsetDateTime,
    rules: Rules<'_>,
) -> sqlx::Result<Option<TierStatus>> {
    let (window, months) = rules.window();
    sqlx::query_as!(
        TierStatus,
        r#"select window_spend(p.user_id, $2, $3, $4, $5) as "window_spent!",
                  case when p.level_review_at is null then 0
                       else greatest(
                           window_spend(p.user_id,
                                        coalesce(p.level_kept_until, p.level_review_at)
                                            - interval '1 microsecond', $3, $4, $5),
                           window_spend(p.user_id, p.level_review_at, $3, $4, $5))
                  end as "review_spent!",
                  p.level_kept_until as kept_until, p.level_review_at as review_at,
                  p.level_manual as manual,
                  coalesce(p.downgrade_notice_for = p.level_review_at, false) as "noticed!",
                  p.upgrade_due_at
             from member_profiles p where p.user_id = $1"#,
        user_id,
        now,
        window,
        months,
        rules.tz
    )
    .fetch_optional(conn)
    .await
}
