//! Pending points (issue 13 §4): with POINTS_PENDING_DAYS an earn's points wait out the
//! return window; a return inside it cancels them without loss; the release job makes them
//! spendable, and they expire counting from then.

use member_portal::clock::Clock;
use member_portal::domain::{Money, Reference};
use member_portal::error::Error;
use member_portal::service::points::ReverseRequest;
use time::Duration;

use crate::harness::*;

async fn pending_harness() -> Harness {
    Harness::with(Backend::Local, |c| c.points_pending_days = 7).await
}

fn reverse(user: i64, order: &str, refund: Option<&str>, amount: Option<&str>) -> ReverseRequest {
    ReverseRequest {
        user_id: user,
        source_type: Reference::parse("source_type", "order_complete").unwrap(),
        source_id: Reference::parse("source_id", order).unwrap(),
        refund_id: refund.map(|r| Reference::parse("refund_id", r).unwrap()),
        amount: amount.map(|a| Money::parse("amount", dec(a)).unwrap()),
    }
}

#[tokio::test]
async fn pending_points_cannot_be_spent_until_the_window_ends_then_are_released_once() {
    let h = pending_harness().await;
    let user = h.member().await;
    let o = h.earn(user, 300, "O1").await.unwrap();
    assert_eq!(o.transaction.status, "pending");
    assert_eq!(o.transaction.balance_after, 0);
    let s = h.s.points.summary(user).await.unwrap();
    assert_eq!((s.available, s.pending), (0, 300));
    assert_eq!(
        s.pending_release[0].expires_at,
        h.clock.now() + Duration::days(7)
    );
    match h.spend(user, 1, "P1").await {
        Err(Error::InsufficientPoints { available: 0, .. }) => {}
        x => panic!("{x:?}"),
    }
    h.assert_ledger_clean().await;
    assert_eq!(h.s.points.release_pending().await.unwrap(), 0, "not yet");
    h.clock.advance(Duration::days(7));
    assert_eq!(h.s.points.release_pending().await.unwrap(), 1);
    assert_eq!(h.s.points.release_pending().await.unwrap(), 0, "once");
    let s = h.s.points.summary(user).await.unwrap();
    assert_eq!((s.available, s.pending, s.total_earned), (300, 0, 300));
    let (status, kinds): (String, Vec<String>) = sqlx::query_as(
        "select (select status from point_transactions where id = $2),
                array_agg(transaction_type order by id) from point_transactions where user_id = $1",
    )
    .bind(user)
    .bind(o.transaction.id)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(status, "settled");
    assert_eq!(kinds, ["earn", "release"]);
    assert_eq!(
        h.count("select count(*) from notifications where kind = 'points.released'")
            .await,
        1
    );
    h.spend(user, 100, "P2").await.unwrap();
    // expiry counts from the end of the window: 365 days after it, not after the order
    h.clock.advance(Duration::days(364));
    assert_eq!(h.available(user).await, 200);
    h.clock.advance(Duration::days(1));
    assert_eq!(h.available(user).await, 0);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_return_inside_the_window_cancels_the_pending_points_and_loses_nothing() {
    let h = pending_harness().await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 400, "O1", Some("400")))
        .await
        .unwrap();
    // a quarter returned, then the rest: all from the pending points
    let part =
        h.s.points
            .reverse_points(reverse(user, "O1", Some("R1"), Some("100")))
            .await
            .unwrap();
    assert_eq!(part.transaction.points_change, -100);
    assert_eq!(part.transaction.unrecovered, 0);
    assert_eq!(part.transaction.status, "pending");
    let s = h.s.points.summary(user).await.unwrap();
    assert_eq!((s.available, s.pending), (0, 300));
    h.assert_ledger_clean().await;
    let rest =
        h.s.points
            .reverse_points(reverse(user, "O1", None, None))
            .await
            .unwrap();
    assert_eq!(rest.transaction.points_change, -300);
    let profile = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(profile.total_spent, dec("0.00"));
    assert_eq!(profile.points.pending, 0);
    h.clock.advance(Duration::days(8));
    h.s.points.release_pending().await.unwrap();
    assert_eq!(h.available(user).await, 0, "nothing to release");
    assert_eq!(
        h.count("select count(*) from point_transactions where transaction_type = 'release'")
            .await,
        0
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_return_after_the_release_takes_spendable_points_as_before() {
    let h = pending_harness().await;
    let user = h.member().await;
    h.earn(user, 200, "O1").await.unwrap();
    // released, partly spent, then the order comes back
    h.clock.advance(Duration::days(7));
    h.s.points.release_pending().await.unwrap();
    assert_eq!(h.available(user).await, 200);
    h.spend(user, 150, "P1").await.unwrap();
    let r =
        h.s.points
            .reverse_points(reverse(user, "O1", None, None))
            .await
            .unwrap();
    assert_eq!(
        (r.transaction.points_change, r.transaction.unrecovered),
        (-50, 150)
    );
    assert_eq!(h.available(user).await, 0);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_campaign_bonus_waits_with_its_order_and_goes_with_its_return() {
    let h = pending_harness().await;
    let now = h.clock.now();
    h.s.campaigns
        .create(
            None,
            member_portal::domain::campaigns::CampaignInput::parse(
                &member_portal::domain::campaigns::CampaignFields {
                    name: "双倍",
                    kind: "multiplier",
                    multiplier: "2",
                    starts_at: Some(now - Duration::days(1)),
                    ends_at: Some(now + Duration::days(30)),
                    ..Default::default()
                },
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let user = h.member().await;
    let o = h.earn(user, 100, "O1").await.unwrap();
    assert_eq!(o.bonuses[0].status, "pending");
    assert_eq!(h.s.points.summary(user).await.unwrap().pending, 200);
    let r =
        h.s.points
            .reverse_points(reverse(user, "O1", None, None))
            .await
            .unwrap();
    assert_eq!(
        r.transaction.points_change, -200,
        "the bonus goes back with the order"
    );
    h.assert_ledger_clean().await;
    let other = h.earn(user, 50, "O2").await.unwrap();
    assert_eq!(other.bonuses.len(), 1);
    h.clock.advance(Duration::days(7));
    h.s.points.release_pending().await.unwrap();
    assert_eq!(
        h.available(user).await,
        100,
        "the order and its bonus, released together"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn many_releases_and_returns_racing_keep_both_ledgers_right() {
    let h = Harness::with_pool_size(Backend::Local, 12, |c| c.points_pending_days = 1).await;
    let user = h.member().await;
    for i in 0..20 {
        h.earn(user, 10, &format!("O{i}")).await.unwrap();
    }
    h.clock.advance(Duration::days(1));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = h.s.clone();
        tasks.push(tokio::spawn(async move {
            s.points
                .reverse_points(reverse(user, &format!("O{i}"), None, None))
                .await
        }));
    }
    let s = h.s.clone();
    let release = tokio::spawn(async move { s.points.release_pending().await });
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    release.await.unwrap().unwrap();
    h.s.points.release_pending().await.unwrap();
    let s = h.s.points.summary(user).await.unwrap();
    assert_eq!(
        (s.available, s.pending),
        (0, 0),
        "every order returned, whenever it was released"
    );
    h.assert_ledger_clean().await;
}
