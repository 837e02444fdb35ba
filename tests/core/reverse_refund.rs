use member_portal::domain::{Money, Reference};
use member_portal::service::points::{RefundRequest, ReverseRequest};
use time::Duration;

use crate::harness::*;

fn reverse(
    user: i64,
    source: &str,
    refund_id: Option<&str>,
    amount: Option<&str>,
) -> ReverseRequest {
    ReverseRequest {
        user_id: user,
        source_type: Reference::parse("source_type", "order_complete").unwrap(),
        source_id: Reference::parse("source_id", source).unwrap(),
        refund_id: refund_id.map(|r| Reference::parse("refund_id", r).unwrap()),
        amount: amount.map(|a| Money::parse("amount", a.parse().unwrap()).unwrap()),
    }
}

fn refund(user: i64, reference: &str) -> RefundRequest {
    RefundRequest {
        user_id: user,
        usage_type: Reference::parse("usage_type", "checkout").unwrap(),
        reference_id: Reference::parse("reference_id", reference).unwrap(),
    }
}

#[tokio::test]
async fn full_reversal_takes_back_the_points_and_the_spend() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 300, "O1", Some("300")))
        .await
        .unwrap();
    h.s.points
        .earn_points(earn_req(user, 50, "O2", Some("50")))
        .await
        .unwrap();
    let out =
        h.s.points
            .reverse_points(reverse(user, "O1", None, None))
            .await
            .unwrap();
    assert_eq!(out.transaction.transaction_type, "reverse");
    assert_eq!(out.transaction.points_change, -300);
    assert_eq!(out.transaction.unrecovered, 0);
    let p = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(p.points.available, 50);
    assert_eq!(p.total_spent, dec("50.00"));
    // once, in full: a replay returns the same transaction
    let again =
        h.s.points
            .reverse_points(reverse(user, "O1", None, None))
            .await
            .unwrap();
    assert!(again.replayed);
    assert_eq!(again.transaction.id, out.transaction.id);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn partial_reversal_is_proportional_and_uses_the_rate_of_that_day() {
    let h = Harness::new().await;
    let user = h.member_with_spent("1000").await;
    h.s.members.check_level_upgrade(user).await.unwrap();
    // silver ×1.2: 250 → 300 points for an order of 250.00
    h.s.points
        .earn_points(earn_req(user, 250, "O1", Some("250")))
        .await
        .unwrap();
    // 70 of 250 returned: floor(300 × 70 / 250) = 84
    let a =
        h.s.points
            .reverse_points(reverse(user, "O1", Some("R1"), Some("70")))
            .await
            .unwrap();
    assert_eq!(a.transaction.points_change, -84);
    // the same refund id again is a replay; with another amount a conflict
    assert!(
        h.s.points
            .reverse_points(reverse(user, "O1", Some("R1"), Some("70")))
            .await
            .unwrap()
            .replayed
    );
    assert_eq!(
        h.s.points
            .reverse_points(reverse(user, "O1", Some("R1"), Some("71")))
            .await
            .unwrap_err()
            .code(),
        "IDEMPOTENCY_CONFLICT"
    );
    // more than is left of the order is refused
    let e =
        h.s.points
            .reverse_points(reverse(user, "O1", Some("R2"), Some("180.01")))
            .await
            .unwrap_err();
    assert_eq!(e.code(), "VALIDATION_ERROR");
    // the rest of the order takes the rest of the points, whatever the rounding
    let b =
        h.s.points
            .reverse_points(reverse(user, "O1", Some("R2"), Some("180")))
            .await
            .unwrap();
    assert_eq!(b.transaction.points_change, -216);
    let p = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(p.points.available, 0);
    assert_eq!(p.total_spent, dec("1000.00"));
    assert_eq!(p.level.level_name, "银牌会员", "no automatic downgrade");
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn reversal_takes_from_its_own_batch_first_then_fifo() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 100, "OLD").await.unwrap();
    h.clock.advance(Duration::days(1));
    let own = h.earn(user, 100, "NEW").await.unwrap().transaction;
    h.spend(user, 30, "PAY").await.unwrap(); // takes 30 from OLD (expires first)
    h.s.points
        .reverse_points(reverse(user, "NEW", None, None))
        .await
        .unwrap();
    let batches = h.s.points.batches(user).await.unwrap();
    assert_eq!(
        batches.len(),
        1,
        "NEW's own batch is emptied first: {batches:?}"
    );
    assert_eq!(batches[0].available_points, 70);
    let own_left: i64 =
        sqlx::query_scalar("select available_points from point_batches where transaction_id = $1")
            .bind(own.id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(own_left, 0);
}

#[tokio::test]
async fn reversal_never_makes_the_balance_negative_and_reports_unrecovered() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 100, "O1").await.unwrap();
    h.spend(user, 80, "PAY").await.unwrap();
    let out =
        h.s.points
            .reverse_points(reverse(user, "O1", None, None))
            .await
            .unwrap();
    assert_eq!(out.transaction.points_change, -20);
    assert_eq!(out.transaction.unrecovered, 80);
    assert_eq!(h.available(user).await, 0);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn reversal_of_an_unknown_or_foreign_source_is_not_found() {
    let h = Harness::new().await;
    let user = h.member().await;
    let other = h.member().await;
    h.earn(other, 10, "THEIRS").await.unwrap();
    for source in ["NOPE", "THEIRS"] {
        let e =
            h.s.points
                .reverse_points(reverse(user, source, None, None))
                .await
                .unwrap_err();
        assert_eq!(e.code(), "NOT_FOUND");
    }
    assert_eq!(h.available(other).await, 10);
}

#[tokio::test]
async fn partial_return_without_refund_id_is_refused() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 100, "O1", Some("100")))
        .await
        .unwrap();
    let e =
        h.s.points
            .reverse_points(reverse(user, "O1", None, Some("40")))
            .await
            .unwrap_err();
    assert_eq!(e.code(), "VALIDATION_ERROR");
    assert_eq!(e.body()["field"], "refund_id");
    assert_eq!(h.available(user).await, 100);
}

#[tokio::test]
async fn refund_of_a_use_returns_points_to_their_original_batches_and_expiry() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 50, "A").await.unwrap();
    h.clock.advance(Duration::days(1));
    h.earn(user, 50, "B").await.unwrap();
    h.spend(user, 70, "PAY").await.unwrap();
    h.earn(user, 10, "C").await.unwrap();
    let before: Vec<_> = h.s.points.batches(user).await.unwrap();
    assert_eq!(
        before
            .iter()
            .map(|b| b.available_points)
            .collect::<Vec<_>>(),
        vec![30, 10]
    );
    let out = h.s.points.refund_points(refund(user, "PAY")).await.unwrap();
    assert_eq!(out.transaction.transaction_type, "refund");
    assert_eq!(out.transaction.points_change, 70);
    let after = h.s.points.batches(user).await.unwrap();
    assert_eq!(
        after
            .iter()
            .map(|b| (b.available_points, b.expires_at))
            .collect::<Vec<_>>(),
        vec![
            (50, START + Duration::days(365)),
            (50, START + Duration::days(366)),
            (10, START + Duration::days(366)),
        ]
    );
    assert!(
        h.s.points
            .refund_points(refund(user, "PAY"))
            .await
            .unwrap()
            .replayed
    );
    assert_eq!(h.available(user).await, 110);
    assert_eq!(
        h.s.points
            .refund_points(refund(user, "NOPE"))
            .await
            .unwrap_err()
            .code(),
        "NOT_FOUND"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn refunded_points_of_an_expired_batch_expire_at_the_next_sweep() {
    let h = Harness::with(Backend::Local, |c| c.points_expiry_days = 10).await;
    let user = h.member().await;
    h.earn(user, 40, "A").await.unwrap();
    h.spend(user, 40, "PAY").await.unwrap();
    h.clock.advance(Duration::days(11));
    h.s.points.refund_points(refund(user, "PAY")).await.unwrap();
    assert_eq!(h.available(user).await, 0, "never shown once past expiry");
    let report = h.s.points.expire_points().await.unwrap();
    assert_eq!(report.points, 40);
    assert_eq!(h.s.points.summary(user).await.unwrap().total_expired, 40);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn many_small_returns_take_back_the_share_of_everything_returned() {
    let h = Harness::with(Backend::Local, |c| c.daily_points_limit = 100_000).await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 99, "O1", Some("999.00")))
        .await
        .unwrap();
    h.earn(user, 1000, "OTHER").await.unwrap();
    let mut taken = 0;
    for i in 1..=99 {
        let out =
            h.s.points
                .reverse_points(reverse(user, "O1", Some(&format!("R{i}")), Some("9.99")))
                .await
                .unwrap();
        taken -= out.transaction.points_change;
        // floor(99 × returned so far / 999.00) = floor(99 × 9.99 i / 999)
        assert_eq!(taken, 99 * i / 100, "after return {i}");
    }
    assert_eq!(taken, 98);
    let last =
        h.s.points
            .reverse_points(reverse(user, "O1", Some("R100"), Some("9.99")))
            .await
            .unwrap();
    assert_eq!(last.transaction.points_change, -1, "the rest of the order");
    assert_eq!(h.available(user).await, 1000);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_refund_after_an_unrecovered_reversal_does_not_restore_the_returned_orders_points() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 500, "A").await.unwrap();
    h.spend(user, 500, "B").await.unwrap();
    let reversed =
        h.s.points
            .reverse_points(reverse(user, "A", None, None))
            .await
            .unwrap();
    assert_eq!(reversed.transaction.points_change, 0);
    assert_eq!(reversed.transaction.unrecovered, 500);
    let refunded = h.s.points.refund_points(refund(user, "B")).await.unwrap();
    assert_eq!(
        refunded.transaction.points_change, 0,
        "all of it settles order A"
    );
    assert_eq!(refunded.transaction.unrecovered, 500);
    assert_eq!(h.available(user).await, 0);
    // a replay answers the same, and a second refund is not possible
    let again = h.s.points.refund_points(refund(user, "B")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.transaction.id, refunded.transaction.id);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_refund_returns_what_is_left_after_settling_a_partial_shortfall() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 500, "A").await.unwrap();
    h.spend(user, 500, "B").await.unwrap(); // all from A's batch
    h.earn(user, 300, "C").await.unwrap();
    let reversed =
        h.s.points
            .reverse_points(reverse(user, "A", None, None))
            .await
            .unwrap();
    assert_eq!(reversed.transaction.points_change, -300, "C's points, FIFO");
    assert_eq!(reversed.transaction.unrecovered, 200);
    let refunded = h.s.points.refund_points(refund(user, "B")).await.unwrap();
    assert_eq!(refunded.transaction.points_change, 300);
    assert_eq!(refunded.transaction.unrecovered, 200);
    assert_eq!(h.available(user).await, 300, "what order C earned");
    // once the shortfall is settled, a refund (here again from A's batch) returns it all
    h.earn(user, 100, "D").await.unwrap();
    h.spend(user, 400, "E").await.unwrap();
    let refunded = h.s.points.refund_points(refund(user, "E")).await.unwrap();
    assert_eq!(refunded.transaction.points_change, 400);
    assert_eq!(h.available(user).await, 400);
    h.assert_ledger_clean().await;
}
