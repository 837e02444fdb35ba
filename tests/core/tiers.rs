//! The tier lifecycle (issue 13 §3): qualification windows, retention, the review with its
//! notice, levels set by hand with an end date.

use member_portal::config::{TierRetention, TierReview, TierWindow};
use member_portal::domain::{Money, Reference};
use member_portal::service::points::ReverseRequest;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::harness::*;

async fn level_of(h: &Harness, user: i64) -> String {
    sqlx::query_scalar(
        "select l.level_name from member_profiles p join member_levels l on l.id = p.level_id
          where p.user_id = $1",
    )
    .bind(user)
    .fetch_one(&h.pool)
    .await
    .unwrap()
}

async fn review_dates(h: &Harness, user: i64) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
    sqlx::query_as(
        "select level_kept_until, level_review_at from member_profiles where user_id = $1",
    )
    .bind(user)
    .fetch_one(&h.pool)
    .await
    .unwrap()
}

async fn notifications(h: &Harness, user: i64, kind: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar(
        "select payload from notifications where user_id = $1 and kind = $2 order by id",
    )
    .bind(user)
    .bind(kind)
    .fetch_all(&h.pool)
    .await
    .unwrap()
}

/// Spend by business month: the table's months and the profile's counter of its month.
async fn spend_by_month(h: &Harness, user: i64) -> Vec<(time::Date, rust_decimal::Decimal)> {
    sqlx::query_as(
        "select month, sum(spent) from (
             select month, spent from member_monthly_spend where user_id = $1
             union all
             select spend_month, month_spent from member_profiles
              where user_id = $1 and spend_month is not null) m
          group by month order by month",
    )
    .bind(user)
    .fetch_all(&h.pool)
    .await
    .unwrap()
}

async fn order(h: &Harness, user: i64, id: &str, amount: &str) {
    h.s.points
        .earn_points(earn_req(user, 10, id, Some(amount)))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_calendar_year_level_is_kept_through_the_next_year_then_lowered_after_notice() {
    let h = Harness::with(Backend::Local, |c| {
        c.tiers.window = TierWindow::CalendarYear;
        c.tiers.retention = TierRetention::NextCalendarYear;
    })
    .await;
    let user = h.member().await;
    order(&h, user, "O-2025", "6000").await; // 2025-09-18: 金牌
    assert_eq!(level_of(&h, user).await, "金牌会员");
    // kept to the end of 2026 in Asia/Shanghai
    let end = datetime!(2026-12-31 16:00 UTC);
    assert_eq!(review_dates(&h, user).await, (Some(end), Some(end)));

    // 2026: only ¥1200, enough for 银牌
    h.clock.set(datetime!(2026-03-01 04:00 UTC));
    order(&h, user, "O-2026", "1200").await;
    let profile = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(
        profile.upgrade_progress.current,
        dec("1200.00"),
        "this year's spend"
    );
    let view = h.s.tiers.view(user, &profile.level).await.unwrap();
    let keep = view.keep.expect("a review to come");
    assert_eq!(keep.needed, dec("3800.00"));
    assert_eq!(keep.drop_to.as_deref(), Some("银牌会员"));
    assert!(!keep.noticed);

    // 15 days before: nothing yet; 14 days before: told once
    h.clock.set(end - Duration::days(15));
    assert_eq!(h.s.tiers.review().await.unwrap().noticed, 0);
    h.clock.set(end - Duration::days(14));
    let r = h.s.tiers.review().await.unwrap();
    assert_eq!((r.noticed, r.dropped), (1, 0));
    assert_eq!(h.s.tiers.review().await.unwrap().noticed, 0, "told once");
    let told = notifications(&h, user, "level.will_downgrade").await;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["new_level"], "银牌会员");
    assert_eq!(told[0]["needed"], "3800.00");
    assert_eq!(
        level_of(&h, user).await,
        "金牌会员",
        "kept until the review"
    );

    // the review, just after the year ends: 银牌, kept through 2027 on 2026's spend
    h.clock.set(end + Duration::hours(1));
    let r = h.s.tiers.review().await.unwrap();
    assert_eq!((r.dropped, r.kept), (1, 0));
    assert_eq!(level_of(&h, user).await, "银牌会员");
    let end_2027 = datetime!(2027-12-31 16:00 UTC);
    assert_eq!(
        review_dates(&h, user).await,
        (Some(end_2027), Some(end_2027))
    );
    assert_eq!(
        h.count("select count(*) from level_change_records where change_reason = 'review'")
            .await,
        1
    );
    assert_eq!(notifications(&h, user, "level.downgraded").await.len(), 1);
    let p = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(
        p.level.level_name, "银牌会员",
        "the cached profile was dropped"
    );
    assert_eq!(h.s.tiers.review().await.unwrap(), Default::default());
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_return_lowers_the_spend_of_the_month_the_order_was_placed() {
    let h = Harness::with(Backend::Local, |c| {
        c.tiers.window = TierWindow::CalendarYear;
    })
    .await;
    let user = h.member().await;
    order(&h, user, "DEC", "1500").await;
    h.clock.set(datetime!(2026-01-05 04:00 UTC));
    h.s.points
        .reverse_points(ReverseRequest {
            user_id: user,
            source_type: Reference::parse("source_type", "order_complete").unwrap(),
            source_id: Reference::parse("source_id", "DEC").unwrap(),
            refund_id: Some(Reference::parse("refund_id", "REF1").unwrap()),
            amount: Some(Money::parse("amount", dec("500")).unwrap()),
        })
        .await
        .unwrap();
    assert_eq!(
        spend_by_month(&h, user).await,
        [(time::macros::date!(2025 - 09 - 01), dec("1000.00"))]
    );

    // New Year's night in Shanghai is still 2025 in UTC: the business month counts, and
    // September's counter moves from the profile to the table
    h.clock.set(datetime!(2025-12-31 17:00 UTC));
    order(&h, user, "NEWYEAR", "300").await;
    assert_eq!(
        spend_by_month(&h, user).await,
        [
            (time::macros::date!(2025 - 09 - 01), dec("1000.00")),
            (time::macros::date!(2026 - 01 - 01), dec("300.00"))
        ]
    );
    let in_table: i64 =
        sqlx::query_scalar("select count(*) from member_monthly_spend where user_id = $1")
            .bind(user)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        in_table, 1,
        "the current month is counted on the profile row"
    );
}

#[tokio::test]
async fn a_member_who_spends_again_in_the_window_keeps_the_level() {
    let h = Harness::with(Backend::Local, |c| {
        c.tiers.window = TierWindow::RollingMonths(12);
        c.tiers.retention = TierRetention::Months(12);
        c.tiers.grace = Duration::days(30);
    })
    .await;
    let user = h.member().await;
    order(&h, user, "FIRST", "1000").await;
    assert_eq!(level_of(&h, user).await, "银牌会员");
    let kept = START + Duration::days(365); // 12 months later (2026-09-18)
    assert_eq!(
        review_dates(&h, user).await,
        (Some(kept), Some(kept + Duration::days(30)))
    );
    // six months on, ¥1000 again: the first order rolls out of the window by the review,
    // the second still counts
    h.clock.set(datetime!(2026-03-10 04:00 UTC));
    order(&h, user, "SECOND", "1000").await;
    h.clock.set(kept + Duration::days(31));
    let r = h.s.tiers.review().await.unwrap();
    assert_eq!((r.kept, r.noticed, r.dropped), (1, 0, 0));
    assert_eq!(level_of(&h, user).await, "银牌会员");
    let next = datetime!(2027-09-18 02:00 UTC) - Duration::microseconds(1);
    let (until, review) = review_dates(&h, user).await;
    assert_eq!(until, Some(next));
    assert_eq!(review, Some(next + Duration::days(30)));
}

#[tokio::test]
async fn drop_one_lowers_a_level_at_a_time() {
    let h = Harness::with(Backend::Local, |c| {
        c.tiers.window = TierWindow::RollingMonths(12);
        c.tiers.review = TierReview::DropOne;
        c.tiers.notice = Duration::ZERO;
    })
    .await;
    let user = h.member().await;
    order(&h, user, "BIG", "20000").await;
    assert_eq!(level_of(&h, user).await, "钻石会员");
    h.clock.set(START + Duration::days(800));
    let r = h.s.tiers.review().await.unwrap();
    assert_eq!(
        (r.noticed, r.dropped),
        (0, 1),
        "no notice with MEMBER_TIER_NOTICE_DAYS=0"
    );
    assert_eq!(
        level_of(&h, user).await,
        "金牌会员",
        "one level, although nothing was spent"
    );
}

#[tokio::test]
async fn a_level_set_by_hand_holds_to_its_end_date_and_is_then_reviewed_with_notice() {
    let h = Harness::new().await; // lifetime window: levels reached are kept for good
    let kept = h.member().await;
    order(&h, kept, "K", "1000").await;
    assert_eq!(
        review_dates(&h, kept).await,
        (None, None),
        "lifetime: never reviewed"
    );

    let vip = h.member().await;
    let gold = 3;
    // the business day of START is 2025-09-18 (Asia/Shanghai)
    let err =
        h.s.members
            .set_level_until(
                vip,
                gold,
                "launch guest",
                Some(time::macros::date!(2025 - 09 - 17)),
                None,
            )
            .await
            .unwrap_err();
    assert_eq!(err.code(), "VALIDATION_ERROR");
    h.s.members
        .set_level_until(
            vip,
            gold,
            "launch guest",
            Some(time::macros::date!(2025 - 09 - 30)),
            None,
        )
        .await
        .unwrap();
    let end = datetime!(2025-09-30 16:00 UTC);
    assert_eq!(review_dates(&h, vip).await, (Some(end), Some(end)));
    // recalculation leaves a level set by hand alone
    h.s.staff
        .recalculate_levels(
            member_portal::db::admin::RecalcOptions {
                move_down: true,
                include_manual: false,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(level_of(&h, vip).await, "金牌会员");

    // the review is due and nobody was told (the job did not run before): told now, and
    // the drop waits out the notice period
    h.clock.set(end + Duration::hours(2));
    let r = h.s.tiers.review().await.unwrap();
    assert_eq!((r.noticed, r.dropped), (1, 0));
    assert_eq!(level_of(&h, vip).await, "金牌会员");
    let (_, review) = review_dates(&h, vip).await;
    assert_eq!(review, Some(end + Duration::hours(2) + Duration::days(14)));
    h.clock.set(end + Duration::days(15));
    let r = h.s.tiers.review().await.unwrap();
    assert_eq!(r.dropped, 1);
    assert_eq!(
        level_of(&h, vip).await,
        "普通会员",
        "to what the spend reaches"
    );
    assert_eq!(review_dates(&h, vip).await, (None, None));
    assert_eq!(level_of(&h, kept).await, "银牌会员");
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn two_reviews_at_once_lower_each_member_once() {
    let h = Harness::with(Backend::Local, |c| {
        c.tiers.window = TierWindow::CalendarYear;
        c.tiers.notice = Duration::ZERO;
    })
    .await;
    let mut users = Vec::new();
    for i in 0..30 {
        let u = h.member().await;
        order(&h, u, &format!("O{i}"), "1000").await;
        users.push(u);
    }
    h.clock.set(datetime!(2027-01-02 00:00 UTC));
    let other = h.s.clone();
    let (a, b) = tokio::join!(h.s.tiers.review(), other.tiers.review());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.dropped + b.dropped, 30);
    assert_eq!(
        h.count("select count(*) from level_change_records where change_reason = 'review'")
            .await,
        30
    );
    assert_eq!(
        h.count("select count(*) from notifications where kind = 'level.downgraded'")
            .await,
        30
    );
}
