use member_portal::service::points::AdjustRequest;
use time::Duration;

use crate::harness::*;

/// Earns `points` at the current clock time, then moves the clock by `then` days.
async fn batch(h: &Harness, user: i64, points: i64, key: &str, then: i64) -> i64 {
    let t = h.earn(user, points, key).await.unwrap().transaction;
    h.clock.advance(Duration::days(then));
    t.id
}

async fn deductions(h: &Harness, tx_id: i64) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "select b.earned_points, d.points from batch_deductions d join point_batches b on b.id = d.batch_id
          where d.transaction_id = $1 order by d.id",
    )
    .bind(tx_id)
    .fetch_all(&h.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_use_spanning_many_batches_walks_them_in_order_across_read_chunks() {
    // consume_fifo reads the FIFO index 32 batches at a time: cross two chunk boundaries
    let h = Harness::new().await;
    let user = h.member().await;
    for i in 0..70 {
        h.earn(user, 10, &format!("B{i}")).await.unwrap();
        h.clock.advance(Duration::minutes(1));
    }
    let out = h.spend(user, 655, "PAY-MANY").await.unwrap();
    let taken = deductions(&h, out.transaction.id).await;
    assert_eq!(taken.len(), 66);
    assert!(taken[..65].iter().all(|d| *d == (10, 10)));
    assert_eq!(taken[65], (10, 5));
    let left: Vec<i64> =
        h.s.points
            .batches(user)
            .await
            .unwrap()
            .iter()
            .map(|b| b.available_points)
            .collect();
    assert_eq!(left, vec![5, 10, 10, 10, 10]);
    let (first, more) = h.s.points.first_batches(user, 3).await.unwrap();
    assert_eq!(
        first.iter().map(|b| b.available_points).collect::<Vec<_>>(),
        vec![5, 10, 10]
    );
    assert!(more);
    assert!(!h.s.points.first_batches(user, 5).await.unwrap().1);
    assert!(matches!(
        h.spend(user, 46, "PAY-TOO-MUCH").await.unwrap_err().code(),
        "INSUFFICIENT_POINTS"
    ));
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn use_consumes_batches_first_expiring_first_and_records_each_deduction() {
    let h = Harness::new().await;
    let user = h.member().await;
    batch(&h, user, 100, "A", 1).await; // expires first
    batch(&h, user, 200, "B", 1).await;
    batch(&h, user, 300, "C", 0).await;
    let out = h.spend(user, 250, "PAY1").await.unwrap();
    assert_eq!(out.transaction.transaction_type, "use");
    assert_eq!(out.transaction.points_change, -250);
    assert_eq!(out.transaction.balance_after, 350);
    assert_eq!(
        deductions(&h, out.transaction.id).await,
        vec![(100, 100), (200, 150)]
    );
    let left: Vec<i64> =
        h.s.points
            .batches(user)
            .await
            .unwrap()
            .iter()
            .map(|b| b.available_points)
            .collect();
    assert_eq!(left, vec![50, 300]);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn fifo_orders_by_expiry_not_by_creation() {
    let h = Harness::new().await;
    let user = h.member().await;
    // a staff credit made later but expiring sooner is spent first
    h.earn(user, 100, "LATE_EXPIRY").await.unwrap();
    let mut c = h.s.ctx.config.as_ref().clone();
    c.points_expiry_days = 10;
    let short = member_portal::service::Services::new(
        member_portal::service::Ctx::new(h.pool.clone(), c, std::sync::Arc::new(h.clock.clone()))
            .unwrap(),
    );
    short
        .points
        .adjust_points(AdjustRequest::parse(user, 40, "goodwill", None).unwrap())
        .await
        .unwrap();
    let out = h.spend(user, 50, "PAY").await.unwrap();
    assert_eq!(
        deductions(&h, out.transaction.id).await,
        vec![(40, 40), (100, 10)]
    );
}

#[tokio::test]
async fn insufficient_points_reports_required_and_available_and_changes_nothing() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 20, "A").await.unwrap();
    let e = h.spend(user, 30, "PAY").await.unwrap_err();
    assert_eq!(e.code(), "INSUFFICIENT_POINTS");
    assert_eq!(e.status(), 422);
    assert_eq!(e.body()["required"], 30);
    assert_eq!(e.body()["available"], 20);
    assert_eq!(h.available(user).await, 20);
    assert_eq!(
        h.count("select count(*) from point_transactions where transaction_type = 'use'")
            .await,
        0
    );
    assert_eq!(h.count("select count(*) from batch_deductions").await, 0);
}

#[tokio::test]
async fn use_is_idempotent_and_conflicts_on_a_different_amount() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 100, "A").await.unwrap();
    let first = h.spend(user, 30, "PAY").await.unwrap();
    let again = h.spend(user, 30, "PAY").await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.transaction, first.transaction);
    assert_eq!(h.available(user).await, 70);
    assert_eq!(
        h.spend(user, 31, "PAY").await.unwrap_err().code(),
        "IDEMPOTENCY_CONFLICT"
    );
    assert_eq!(h.available(user).await, 70);
}

#[tokio::test]
async fn points_past_expiry_cannot_be_spent_even_before_the_sweep() {
    let h = Harness::with(Backend::Local, |c| c.points_expiry_days = 10).await;
    let user = h.member().await;
    h.earn(user, 100, "A").await.unwrap();
    h.clock.advance(Duration::days(10));
    assert_eq!(h.available(user).await, 0, "expired at expires_at exactly");
    let e = h.spend(user, 1, "PAY").await.unwrap_err();
    assert_eq!(e.body()["available"], 0);
}

#[tokio::test]
async fn staff_adjustment_needs_a_reason_credits_a_batch_and_is_audited() {
    let h = Harness::new().await;
    let user = h.member().await;
    assert_eq!(
        AdjustRequest::parse(user, 10, "  ", None)
            .unwrap_err()
            .code(),
        "VALIDATION_ERROR"
    );
    assert_eq!(
        AdjustRequest::parse(user, 0, "x", None).unwrap_err().code(),
        "VALIDATION_ERROR"
    );
    let t =
        h.s.points
            .adjust_points(AdjustRequest::parse(user, 70, "compensation", None).unwrap())
            .await
            .unwrap();
    assert_eq!(t.transaction_type, "adjust");
    assert_eq!(t.points_change, 70);
    assert_eq!(t.description, "compensation");
    assert_eq!(h.available(user).await, 70);
    assert_eq!(h.s.points.batches(user).await.unwrap().len(), 1);
    assert_eq!(
        h.count("select count(*) from audit_log where action = 'points.adjust'")
            .await,
        1
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn negative_adjustment_consumes_fifo_and_never_makes_the_balance_negative() {
    let h = Harness::new().await;
    let user = h.member().await;
    batch(&h, user, 50, "A", 1).await;
    batch(&h, user, 50, "B", 0).await;
    let e =
        h.s.points
            .adjust_points(AdjustRequest::parse(user, -101, "fraud", None).unwrap())
            .await
            .unwrap_err();
    assert_eq!(e.code(), "INSUFFICIENT_POINTS");
    assert_eq!(h.available(user).await, 100);
    let t =
        h.s.points
            .adjust_points(AdjustRequest::parse(user, -60, "fraud", None).unwrap())
            .await
            .unwrap();
    assert_eq!(t.points_change, -60);
    assert_eq!(deductions(&h, t.id).await, vec![(50, 50), (50, 10)]);
    assert_eq!(h.available(user).await, 40);
    h.assert_ledger_clean().await;
}
