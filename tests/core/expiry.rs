use time::Duration;

use crate::harness::*;

#[tokio::test]
async fn expiry_sweep_writes_one_expire_transaction_per_member_and_empties_the_batches() {
    let h = Harness::with(Backend::Local, |c| {
        c.points_expiry_days = 10;
        c.batch_size = 2; // several chunks
    })
    .await;
    let mut users = Vec::new();
    for _ in 0..3 {
        let u = h.member().await;
        h.earn(u, 10, &format!("A{u}")).await.unwrap();
        h.earn(u, 20, &format!("B{u}")).await.unwrap();
        users.push(u);
    }
    h.clock.advance(Duration::days(9));
    assert_eq!(
        h.s.points.expire_points().await.unwrap().points,
        0,
        "nothing due yet"
    );
    h.clock.advance(Duration::days(1));
    let report = h.s.points.expire_points().await.unwrap();
    assert_eq!(report.points, 90);
    assert_eq!(
        h.count("select count(*) from point_transactions where transaction_type = 'expire'")
            .await,
        3
    );
    assert_eq!(
        h.count("select count(*) from point_batches where available_points > 0")
            .await,
        0
    );
    for u in users {
        let s = h.s.points.summary(u).await.unwrap();
        assert_eq!(s.available, 0);
        assert_eq!(s.total_expired, 30);
    }
    assert_eq!(
        h.s.points.expire_points().await.unwrap().points,
        0,
        "a second sweep finds nothing"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn balances_never_include_points_past_their_expiry_swept_or_not() {
    let h = Harness::with(Backend::Redis, |c| c.points_expiry_days = 10).await;
    let user = h.member().await;
    h.earn(user, 10, "A").await.unwrap();
    h.clock.advance(Duration::days(5));
    h.earn(user, 20, "B").await.unwrap();
    assert_eq!(h.available(user).await, 30); // cached now
    h.clock.advance(Duration::days(5));
    // the first batch is past its expiry; no sweep ran and the summary was cached
    let s = h.s.points.summary(user).await.unwrap();
    assert_eq!(s.available, 20);
    assert_eq!(s.total_expired, 10);
    let p = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(p.points.available, 20);
}

#[tokio::test]
async fn expiring_soon_lists_points_within_30_days_with_their_dates() {
    let h = Harness::with(Backend::Local, |c| c.points_expiry_days = 40).await;
    let user = h.member().await;
    h.earn(user, 10, "A").await.unwrap();
    h.clock.advance(Duration::days(5));
    h.earn(user, 20, "B").await.unwrap();
    assert!(
        h.s.points
            .summary(user)
            .await
            .unwrap()
            .expiring_soon
            .is_empty()
    );
    h.clock.advance(Duration::days(6)); // A expires in 29 days, B in 34
    let soon = h.s.points.summary(user).await.unwrap().expiring_soon;
    assert_eq!(soon.len(), 1);
    assert_eq!(soon[0].points, 10);
    assert_eq!(soon[0].expires_at, START + Duration::days(40));
}

#[tokio::test]
async fn expiry_reminder_is_sent_once_per_batch() {
    let h = Harness::with(Backend::Local, |c| c.points_expiry_days = 40).await;
    let user = h.member().await;
    h.earn(user, 10, "A").await.unwrap();
    h.earn(user, 15, "B").await.unwrap();
    assert_eq!(h.s.points.send_expiry_reminders().await.unwrap(), 0);
    h.clock.advance(Duration::days(10)); // 30 days left
    assert_eq!(h.s.points.send_expiry_reminders().await.unwrap(), 2);
    assert_eq!(
        h.s.points.send_expiry_reminders().await.unwrap(),
        0,
        "once per batch"
    );
    let payload: serde_json::Value = sqlx::query_scalar(
        "select payload from notifications where user_id = $1 and kind = 'points_expiry_reminder'",
    )
    .bind(user)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(payload["points"], 25);
    assert_eq!(payload["batches"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn staff_member_search_shows_the_balance_without_points_past_their_expiry() {
    let h = Harness::with(Backend::Local, |c| c.points_expiry_days = 10).await;
    let user = h.member().await;
    h.earn(user, 100, "OLD").await.unwrap();
    h.clock.advance(Duration::days(5));
    h.earn(user, 30, "NEW").await.unwrap();
    let email: String = sqlx::query_scalar("select email from users where id = $1")
        .bind(user)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let found = |h: &Harness| {
        let (s, email) = (h.s.clone(), email.clone());
        async move {
            let f = member_portal::db::admin::MemberFilter {
                q: Some(email),
                ..Default::default()
            };
            s.staff.list_members(&f, None).await.unwrap().0[0].available_points
        }
    };
    assert_eq!(found(&h).await, 130);
    h.clock.advance(Duration::days(6)); // OLD is due, not yet swept
    assert_eq!(found(&h).await, 30);
    assert_eq!(h.available(user).await, 30, "as the member sees it");
}
