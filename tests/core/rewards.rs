//! Rewards and coupons (issue 13 §1): redemption as one transaction, its refusals, replays,
//! cancellation back into the original batches, checkout's consume and release, and the
//! sequences that could lose or double points.

use member_portal::clock::Clock;
use member_portal::domain::Reference;
use member_portal::domain::rewards::{
    CouponStatus, RewardFields, RewardInput, RewardKind, RewardRefusal,
};
use member_portal::error::Error;
use member_portal::service::points::{RefundRequest, ReverseRequest};
use member_portal::service::rewards::{Canceller, RedeemRequest};
use time::Duration;

use crate::harness::*;

pub fn reward_input(name: &str, cost: &str, stock: &str) -> RewardInput {
    RewardInput::parse(&RewardFields {
        name,
        kind: "amount",
        value: "10",
        points_cost: cost,
        stock,
        coupon_valid_days: "30",
        is_active: true,
        ..Default::default()
    })
    .unwrap()
}

fn redeem_req(user: i64, reward: i32, id: &str) -> RedeemRequest {
    RedeemRequest {
        user_id: user,
        reward_id: reward,
        redemption_id: Reference::parse("redemption_id", id).unwrap(),
    }
}

fn order(id: &str) -> Reference {
    Reference::parse("order_id", id).unwrap()
}

async fn stock_and_issued(h: &Harness, reward: i32) -> (Option<i32>, i32) {
    let r = h.s.rewards.get(reward).await.unwrap();
    (r.stock, r.issued)
}

#[tokio::test]
async fn a_redemption_spends_first_expiring_points_takes_stock_and_issues_a_coupon() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 200, "OLD").await.unwrap();
    h.clock.advance(Duration::days(10));
    h.earn(user, 500, "NEW").await.unwrap();
    let reward =
        h.s.rewards
            .create(None, reward_input("¥10 off", "300", "5"))
            .await
            .unwrap();

    let r =
        h.s.rewards
            .redeem(redeem_req(user, reward.id, "R1"))
            .await
            .unwrap();
    assert!(!r.replayed);
    assert_eq!(r.transaction.transaction_type, "use");
    assert_eq!(r.transaction.points_change, -300);
    assert_eq!(r.transaction.reference_type.as_deref(), Some("reward"));
    assert_eq!(r.coupon.status, CouponStatus::Issued);
    assert_eq!(r.coupon.points, 300);
    assert_eq!(r.coupon.kind, RewardKind::Amount);
    assert_eq!(r.coupon.code.len(), 16);
    assert_eq!(r.coupon.expires_at, h.clock.now() + Duration::days(30));
    assert_eq!(h.available(user).await, 400);
    assert_eq!(stock_and_issued(&h, reward.id).await, (Some(4), 1));
    // the older batch went first: all 200 of it, then 100 of the newer one
    let left: Vec<i64> = sqlx::query_scalar(
        "select available_points from point_batches where user_id = $1 order by expires_at",
    )
    .bind(user)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(left, vec![0, 400]);
    assert_eq!(
        h.count("select count(*) from notifications where kind = 'coupon.issued'")
            .await,
        1
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn the_same_redemption_id_again_returns_the_same_coupon_and_spends_nothing() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 1000, "SEED").await.unwrap();
    let a =
        h.s.rewards
            .create(None, reward_input("A", "100", ""))
            .await
            .unwrap();
    let b =
        h.s.rewards
            .create(None, reward_input("B", "100", ""))
            .await
            .unwrap();
    let first =
        h.s.rewards
            .redeem(redeem_req(user, a.id, "R1"))
            .await
            .unwrap();
    let again =
        h.s.rewards
            .redeem(redeem_req(user, a.id, "R1"))
            .await
            .unwrap();
    assert!(again.replayed);
    assert_eq!(again.coupon.code, first.coupon.code);
    assert_eq!(again.transaction.id, first.transaction.id);
    assert_eq!(h.available(user).await, 900);
    // the same key for another reward, or another member, is a conflict
    let other = h.member().await;
    h.earn(other, 1000, "SEED2").await.unwrap();
    for req in [redeem_req(user, b.id, "R1"), redeem_req(other, a.id, "R1")] {
        match h.s.rewards.redeem(req).await {
            Err(Error::IdempotencyConflict { .. }) => {}
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(h.count("select count(*) from coupons").await, 1);
    assert_eq!(h.available(other).await, 1000);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_refused_redemption_changes_nothing_and_says_why() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 150, "SEED").await.unwrap();
    let s = &h.s.rewards;
    let costly = s
        .create(None, reward_input("Costly", "500", "3"))
        .await
        .unwrap();
    let before = fingerprint(&h.pool).await;
    match s.redeem(redeem_req(user, costly.id, "R1")).await {
        Err(Error::InsufficientPoints {
            required: 500,
            available: 150,
        }) => {}
        r => panic!("{r:?}"),
    }
    assert_eq!(fingerprint(&h.pool).await, before);
    assert_eq!(stock_and_issued(&h, costly.id).await, (Some(3), 0));
    let empty = s
        .create(None, reward_input("Gone", "10", "0"))
        .await
        .unwrap();
    let mut once = reward_input("Once", "10", "");
    once.per_member_limit = Some(1);
    let once = s.create(None, once).await.unwrap();
    let mut gold = reward_input("Gold only", "10", "");
    gold.min_level_id = Some(3);
    let gold = s.create(None, gold).await.unwrap();
    let mut off = reward_input("Off", "10", "");
    off.is_active = false;
    let off = s.create(None, off).await.unwrap();
    let mut later = reward_input("Later", "10", "");
    later.starts_at = Some(h.clock.now() + Duration::days(1));
    let later = s.create(None, later).await.unwrap();
    let mut over = reward_input("Over", "10", "");
    over.ends_at = Some(h.clock.now());
    let over = s.create(None, over).await.unwrap();
    s.redeem(redeem_req(user, once.id, "ONCE-1")).await.unwrap();
    let after_one = fingerprint(&h.pool).await;
    for (reward, want, code) in [
        (empty.id, RewardRefusal::OutOfStock, "REWARD_OUT_OF_STOCK"),
        (
            once.id,
            RewardRefusal::LimitReached { limit: 1 },
            "REWARD_LIMIT_REACHED",
        ),
        (gold.id, RewardRefusal::LevelTooLow, "LEVEL_TOO_LOW"),
        (off.id, RewardRefusal::Inactive, "REWARD_UNAVAILABLE"),
        (later.id, RewardRefusal::NotStarted, "REWARD_UNAVAILABLE"),
        (over.id, RewardRefusal::Ended, "REWARD_UNAVAILABLE"),
    ] {
        match s
            .redeem(redeem_req(user, reward, &format!("X{reward}")))
            .await
        {
            Err(e @ Error::RewardRefused { reason }) => {
                assert_eq!(reason, want);
                assert_eq!(e.code(), code);
                assert_eq!(e.status(), 422);
            }
            r => panic!("{want:?}: {r:?}"),
        }
    }
    match s.redeem(redeem_req(user, 99_999, "NOPE")).await {
        Err(Error::RewardNotFound { reward_id: 99_999 }) => {}
        r => panic!("{r:?}"),
    }
    assert_eq!(fingerprint(&h.pool).await, after_one);
    // the level is what it is at the moment of redemption: a gold member may
    let rich = h.member_with_spent("6000").await;
    let mut conn = h.pool.acquire().await.unwrap();
    sqlx::query("update member_profiles set level_id = 3 where user_id = $1")
        .bind(rich)
        .execute(&mut *conn)
        .await
        .unwrap();
    h.s.ctx.cache.invalidate_members(&[rich]).await;
    h.earn(rich, 100, "RICH").await.unwrap();
    s.redeem(redeem_req(rich, gold.id, "GOLD-1")).await.unwrap();
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_cancelled_redemption_puts_the_points_back_into_their_batches_and_the_stock_back() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 100, "OLD").await.unwrap();
    h.clock.advance(Duration::days(100));
    h.earn(user, 300, "NEW").await.unwrap();
    let reward =
        h.s.rewards
            .create(None, reward_input("R", "250", "2"))
            .await
            .unwrap();
    let r =
        h.s.rewards
            .redeem(redeem_req(user, reward.id, "R1"))
            .await
            .unwrap();
    assert_eq!(h.available(user).await, 150);
    let expiries_before: Vec<(i64, time::OffsetDateTime)> = sqlx::query_as(
        "select earned_points, expires_at from point_batches where user_id = $1 order by id",
    )
    .bind(user)
    .fetch_all(&h.pool)
    .await
    .unwrap();

    let c =
        h.s.rewards
            .cancel(&r.coupon.code, Canceller::Member(user), None)
            .await
            .unwrap();
    assert!(!c.replayed);
    assert_eq!(c.coupon.status, CouponStatus::Cancelled);
    let refund = c.refund.unwrap();
    assert_eq!(
        (refund.transaction_type.as_str(), refund.points_change),
        ("refund", 250)
    );
    assert_eq!(h.available(user).await, 400);
    assert_eq!(stock_and_issued(&h, reward.id).await, (Some(2), 0));
    let batches: Vec<(i64, i64, time::OffsetDateTime)> = sqlx::query_as(
        "select earned_points, available_points, expires_at from point_batches where user_id = $1 order by id",
    )
    .bind(user)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    // each batch whole again, with its own expiry; no new batch
    assert_eq!(batches.len(), 2);
    for ((earned, left, exp), (e0, x0)) in batches.iter().zip(&expiries_before) {
        assert_eq!((earned, left, exp), (e0, e0, x0));
    }
    // again: nothing more; the coupon cannot be used any more
    let again =
        h.s.rewards
            .cancel(&r.coupon.code, Canceller::Integration, None)
            .await
            .unwrap();
    assert!(again.replayed);
    assert_eq!(again.refund.map(|t| t.id), Some(refund.id));
    assert_eq!(h.available(user).await, 400);
    match h.s.rewards.consume(&r.coupon.code, &order("O1")).await {
        Err(Error::CouponUnusable {
            status: CouponStatus::Cancelled,
            ..
        }) => {}
        x => panic!("{x:?}"),
    }
    // another member cannot cancel it (it is "not found" to them)
    let other = h.member().await;
    let r2 =
        h.s.rewards
            .redeem(redeem_req(user, reward.id, "R2"))
            .await
            .unwrap();
    match h
        .s
        .rewards
        .cancel(&r2.coupon.code, Canceller::Member(other), None)
        .await
    {
        Err(Error::CouponNotFound) => {}
        x => panic!("{x:?}"),
    }
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn checkout_consumes_a_coupon_once_per_order_and_releases_it_when_the_order_is_cancelled() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 500, "SEED").await.unwrap();
    let mut pct = RewardInput::parse(&RewardFields {
        name: "15% off",
        kind: "percent",
        value: "15",
        points_cost: "100",
        coupon_valid_days: "7",
        is_active: true,
        ..Default::default()
    })
    .unwrap();
    pct.stock = Some(10);
    let reward = h.s.rewards.create(None, pct).await.unwrap();
    let c =
        h.s.rewards
            .redeem(redeem_req(user, reward.id, "R1"))
            .await
            .unwrap()
            .coupon;
    // typed by a person: lower case, dashes
    let typed = c.display_code().to_lowercase();
    let check =
        h.s.rewards
            .validate(&typed, Some(dec("199.99")))
            .await
            .unwrap();
    assert!(check.usable);
    assert_eq!(check.discount, Some(dec("30.00")));

    let used = h.s.rewards.consume(&typed, &order("O1")).await.unwrap();
    assert!(!used.replayed);
    assert_eq!(used.coupon.status, CouponStatus::Consumed);
    assert_eq!(used.coupon.order_id.as_deref(), Some("O1"));
    assert!(
        h.s.rewards
            .consume(&c.code, &order("O1"))
            .await
            .unwrap()
            .replayed
    );
    for attempt in [
        h.s.rewards.consume(&c.code, &order("O2")).await,
        h.s.rewards.release(&c.code, &order("O2")).await,
    ] {
        match attempt {
            Err(
                e @ Error::CouponUnusable {
                    status: CouponStatus::Consumed,
                    ..
                },
            ) => {
                assert_eq!(e.code(), "COUPON_NOT_USABLE");
                assert_eq!(e.body()["status"], "consumed");
            }
            x => panic!("{x:?}"),
        }
    }
    assert!(!h.s.rewards.validate(&c.code, None).await.unwrap().usable);
    // a used coupon cannot be cancelled for its points
    match h
        .s
        .rewards
        .cancel(&c.code, Canceller::Integration, None)
        .await
    {
        Err(Error::CouponUnusable {
            status: CouponStatus::Consumed,
            ..
        }) => {}
        x => panic!("{x:?}"),
    }
    let back = h.s.rewards.release(&c.code, &order("O1")).await.unwrap();
    assert!(!back.replayed);
    assert_eq!(back.coupon.status, CouponStatus::Issued);
    assert_eq!(back.coupon.order_id, None);
    assert!(
        h.s.rewards
            .release(&c.code, &order("O1"))
            .await
            .unwrap()
            .replayed
    );
    // past its expiry it is expired: not usable, and the member cannot cancel it, but
    // staff can
    h.clock.advance(Duration::days(8));
    match h.s.rewards.consume(&c.code, &order("O3")).await {
        Err(Error::CouponUnusable {
            status: CouponStatus::Expired,
            ..
        }) => {}
        x => panic!("{x:?}"),
    }
    match h
        .s
        .rewards
        .cancel(&c.code, Canceller::Member(user), None)
        .await
    {
        Err(Error::CouponUnusable {
            status: CouponStatus::Expired,
            ..
        }) => {}
        x => panic!("{x:?}"),
    }
    let staff =
        h.s.rewards
            .cancel(&c.code, Canceller::Staff(user), Some("goodwill".into()))
            .await
            .unwrap();
    assert_eq!(staff.coupon.status, CouponStatus::Cancelled);
    assert_eq!(
        h.count("select count(*) from audit_log where action = 'coupon.cancel'")
            .await,
        1
    );
    assert_eq!(
        h.count("select count(*) from notifications where kind like 'coupon.%'")
            .await,
        4,
        "issued, consumed, released, cancelled"
    );
    for bad in ["", "ABCD", "ABCD-EFGH-JKMN-PQRU"] {
        match h.s.rewards.validate(bad, None).await {
            Err(Error::Validation { field: "code", .. }) => {}
            x => panic!("{bad}: {x:?}"),
        }
    }
    match h.s.rewards.validate("0000-0000-0000-0000", None).await {
        Err(Error::CouponNotFound) => {}
        x => panic!("{x:?}"),
    }
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn earn_redeem_reverse_cancel_loses_nothing_and_mints_nothing() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 500, "O1", Some("500")))
        .await
        .unwrap();
    let reward =
        h.s.rewards
            .create(None, reward_input("R", "300", ""))
            .await
            .unwrap();
    let c =
        h.s.rewards
            .redeem(redeem_req(user, reward.id, "R1"))
            .await
            .unwrap()
            .coupon;
    // the order is returned after the points were spent: 200 taken back, 300 unrecovered
    let rev =
        h.s.points
            .reverse_points(ReverseRequest {
                user_id: user,
                source_type: Reference::parse("source_type", "order_complete").unwrap(),
                source_id: Reference::parse("source_id", "O1").unwrap(),
                refund_id: None,
                amount: None,
            })
            .await
            .unwrap();
    assert_eq!(rev.transaction.points_change, -200);
    assert_eq!(rev.transaction.unrecovered, 300);
    // cancelling the coupon settles the shortfall instead of handing the points back
    let back =
        h.s.rewards
            .cancel(&c.code, Canceller::Integration, None)
            .await
            .unwrap();
    assert_eq!(back.refund.unwrap().unrecovered, 300);
    assert_eq!(h.available(user).await, 0);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn plain_uses_and_refunds_cannot_touch_a_redemption() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 500, "SEED").await.unwrap();
    let reward =
        h.s.rewards
            .create(None, reward_input("R", "100", ""))
            .await
            .unwrap();
    h.s.rewards
        .redeem(redeem_req(user, reward.id, "R1"))
        .await
        .unwrap();
    let mut plain = use_req(user, 10, "R2");
    plain.usage_type = Reference::parse("usage_type", "reward").unwrap();
    match h.s.points.use_points(plain).await {
        Err(Error::Validation {
            field: "usage_type",
            ..
        }) => {}
        x => panic!("{x:?}"),
    }
    let refund = RefundRequest {
        user_id: user,
        usage_type: Reference::parse("usage_type", "reward").unwrap(),
        reference_id: Reference::parse("reference_id", "R1").unwrap(),
    };
    match h.s.points.refund_points(refund).await {
        Err(Error::Validation {
            field: "usage_type",
            ..
        }) => {}
        x => panic!("{x:?}"),
    }
    assert_eq!(h.available(user).await, 400);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn verify_ledger_catches_a_coupon_without_its_redemption_and_a_drifted_issued_count() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 500, "SEED").await.unwrap();
    let reward =
        h.s.rewards
            .create(None, reward_input("R", "100", ""))
            .await
            .unwrap();
    h.s.rewards
        .redeem(redeem_req(user, reward.id, "R1"))
        .await
        .unwrap();
    h.assert_ledger_clean().await;
    sqlx::query("update rewards set issued = 5")
        .execute(&h.pool)
        .await
        .unwrap();
    sqlx::query("update coupons set points = 99")
        .execute(&h.pool)
        .await
        .unwrap();
    let v = member_portal::service::ledger::verify_ledger(&h.pool, None)
        .await
        .unwrap();
    let names: Vec<&str> = v.iter().map(|v| v.invariant).collect();
    assert!(names.iter().any(|n| n.contains("issued count")), "{v:#?}");
    assert!(
        names
            .iter()
            .any(|n| n.contains("a coupon is its redemption")),
        "{v:#?}"
    );
}

#[tokio::test]
async fn an_edit_of_the_stock_keeps_the_redemptions_made_while_staff_edited() {
    let h = Harness::new().await;
    let reward =
        h.s.rewards
            .create(None, reward_input("¥10 off", "100", "50"))
            .await
            .unwrap();
    // staff open the form at stock 50; meanwhile three members redeem
    let seen = h.s.rewards.get(reward.id).await.unwrap().stock;
    for i in 0..3 {
        let user = h.member().await;
        h.earn(user, 100, &format!("O{i}")).await.unwrap();
        h.s.rewards
            .redeem(redeem_req(user, reward.id, &format!("r{i}")))
            .await
            .unwrap();
    }
    assert_eq!(stock_and_issued(&h, reward.id).await, (Some(47), 3));
    // staff add ten: 60 as they saw it, 57 after the three that went meanwhile
    h.s.rewards
        .update(None, reward.id, reward_input("¥10 off", "100", "60"), seen)
        .await
        .unwrap();
    assert_eq!(stock_and_issued(&h, reward.id).await, (Some(57), 3));
    // without what the form showed (an old form), the number typed is the stock
    h.s.rewards
        .update(None, reward.id, reward_input("¥10 off", "100", "40"), None)
        .await
        .unwrap();
    assert_eq!(stock_and_issued(&h, reward.id).await, (Some(40), 3));
    // lowering below what went meanwhile stops at 0
    h.s.rewards
        .update(
            None,
            reward.id,
            reward_input("¥10 off", "100", "1"),
            Some(45),
        )
        .await
        .unwrap();
    assert_eq!(stock_and_issued(&h, reward.id).await, (Some(0), 3));
    h.assert_ledger_clean().await;
}
