use member_portal::service::points::EarnRequest;
use time::Duration;

use crate::harness::*;

#[tokio::test]
async fn seed_example_spent_800_order_300_earns_300_and_becomes_silver() {
    let h = Harness::new().await;
    let user = h.member_with_spent("800").await;
    let out =
        h.s.points
            .earn_points(earn_req(user, 300, "ORDER_001", Some("300")))
            .await
            .unwrap();
    assert_eq!(out.transaction.points_change, 300);
    assert_eq!(out.transaction.transaction_type, "earn");
    let up = out.upgrade.expect("the order crosses the 1000 threshold");
    assert!(up.upgraded);
    assert_eq!(up.old_level, "普通会员");
    assert_eq!(up.new_level, "银牌会员");
    assert!(!up.upgrade_benefits.is_empty());
    let p = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(p.level.level_name, "银牌会员");
    assert_eq!(p.total_spent, dec("1100.00"));
    assert_eq!(p.points.available, 300);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn earn_multiplies_by_the_level_rate_and_rounds_down() {
    let h = Harness::new().await;
    let user = h.member_with_spent("1000").await;
    h.s.members
        .check_level_upgrade(user)
        .await
        .unwrap()
        .expect("silver");
    // silver ×1.20: 7 × 1.2 = 8.4 → 8
    let out = h.earn(user, 7, "O1").await.unwrap();
    assert_eq!(out.transaction.points_change, 8);
    let m: rust_decimal::Decimal =
        sqlx::query_scalar("select multiplier from point_transactions where id = $1")
            .bind(out.transaction.id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(m, dec("1.20"), "the rate of the day is kept for reversals");
}

#[tokio::test]
async fn earn_creates_a_batch_expiring_after_points_expiry_days() {
    let h = Harness::with(Backend::Local, |c| c.points_expiry_days = 30).await;
    let user = h.member().await;
    h.earn(user, 50, "O1").await.unwrap();
    let batches = h.s.points.batches(user).await.unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].earned_points, 50);
    assert_eq!(batches[0].available_points, 50);
    assert_eq!(batches[0].expires_at, START + Duration::days(30));
}

#[tokio::test]
async fn a_total_spend_past_what_it_can_hold_is_a_clear_422_that_changes_nothing() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 10, "BIG1", Some("9999999999.99")))
        .await
        .unwrap();
    let before = fingerprint(&h.pool).await;
    for (source, amount) in [("BIG2", "9999999999.99"), ("SMALL", "0.01")] {
        let e =
            h.s.points
                .earn_points(earn_req(user, 10, source, Some(amount)))
                .await
                .unwrap_err();
        assert_eq!((e.code(), e.status()), ("VALIDATION_ERROR", 422), "{e:?}");
        assert_eq!(e.body()["field"], "amount");
        assert!(e.to_string().contains("9,999,999,999.99"), "{e}");
    }
    assert_eq!(fingerprint(&h.pool).await, before);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn points_per_transaction_exceeded_is_rejected_and_writes_nothing() {
    let h = Harness::with(Backend::Local, |c| c.max_points_per_transaction = 100).await;
    let user = h.member().await;
    let e = h.earn(user, 101, "O1").await.unwrap_err();
    assert_eq!(e.code(), "POINTS_PER_TRANSACTION_EXCEEDED");
    assert_eq!(e.status(), 422);
    assert_eq!(e.body()["actual"], 101);
    assert_eq!(h.count("select count(*) from point_transactions").await, 0);
    assert_eq!(h.count("select count(*) from point_batches").await, 0);
    assert_eq!(h.available(user).await, 0);
    // the same key can then be used with a valid amount
    assert_eq!(
        h.earn(user, 100, "O1")
            .await
            .unwrap()
            .transaction
            .points_change,
        100
    );
}

#[tokio::test]
async fn daily_points_limit_counts_the_business_day_and_resets_the_next() {
    let h = Harness::new().await; // limit 5000, Asia/Shanghai
    let user = h.member().await;
    h.earn(user, 3000, "O1").await.unwrap();
    h.earn(user, 2000, "O2").await.unwrap();
    let e = h.earn(user, 1, "O3").await.unwrap_err();
    assert_eq!(e.code(), "DAILY_POINTS_LIMIT_EXCEEDED");
    assert_eq!(e.body()["earned_today"], 5000);
    assert_eq!(
        h.count("select count(*) from point_transactions").await,
        2,
        "a rejected earn writes nothing"
    );
    // 02:00 UTC + 14h = 16:00 UTC = 00:00 the next day in Shanghai
    h.clock.advance(Duration::hours(13) + Duration::minutes(59));
    assert_eq!(
        h.earn(user, 1, "O3").await.unwrap_err().code(),
        "DAILY_POINTS_LIMIT_EXCEEDED"
    );
    h.clock.advance(Duration::minutes(1));
    assert_eq!(
        h.earn(user, 5000, "O3")
            .await
            .unwrap()
            .transaction
            .points_change,
        5000
    );
    assert_eq!(h.available(user).await, 10_000);
}

#[tokio::test]
async fn earn_is_idempotent_a_replay_returns_the_original_and_credits_nothing() {
    let h = Harness::new().await;
    let user = h.member().await;
    let first =
        h.s.points
            .earn_points(earn_req(user, 100, "O1", Some("100.50")))
            .await
            .unwrap();
    let again =
        h.s.points
            .earn_points(earn_req(user, 100, "O1", Some("100.50")))
            .await
            .unwrap();
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.transaction, first.transaction);
    assert_eq!(h.available(user).await, 100);
    let p = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(p.total_spent, dec("100.50"));
}

#[tokio::test]
async fn idempotency_conflict_when_the_same_key_carries_a_different_payload() {
    let h = Harness::new().await;
    let user = h.member().await;
    let other = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 100, "O1", Some("100")))
        .await
        .unwrap();
    for req in [
        earn_req(user, 101, "O1", Some("100")),
        earn_req(user, 100, "O1", Some("99")),
        earn_req(user, 100, "O1", None),
        earn_req(other, 100, "O1", Some("100")),
    ] {
        let e = h.s.points.earn_points(req).await.unwrap_err();
        assert_eq!(e.code(), "IDEMPOTENCY_CONFLICT");
        assert_eq!(e.status(), 409);
    }
    assert_eq!(h.available(user).await, 100);
    assert_eq!(h.available(other).await, 0);
}

#[tokio::test]
async fn earn_with_amount_adds_to_total_spent_without_amount_does_not() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 10, "O1", Some("12.34")))
        .await
        .unwrap();
    h.s.points
        .earn_points(earn_req(user, 10, "SIGNUP", None))
        .await
        .unwrap();
    let p = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(p.total_spent, dec("12.34"));
    assert_eq!(p.points.total_earned, 20);
}

#[tokio::test]
async fn earn_input_is_validated_before_the_service_sees_it() {
    use member_portal::domain::{Money, Points, Reference};
    assert_eq!(
        Points::parse("base_points", 0).unwrap_err().code(),
        "VALIDATION_ERROR"
    );
    assert_eq!(
        Points::parse("base_points", -5).unwrap_err().code(),
        "VALIDATION_ERROR"
    );
    assert_eq!(
        Money::parse("amount", dec("0.001")).unwrap_err().code(),
        "VALIDATION_ERROR"
    );
    assert_eq!(
        Reference::parse("source_id", "").unwrap_err().code(),
        "VALIDATION_ERROR"
    );
    // and a well-formed request for a member goes through
    let h = Harness::new().await;
    let user = h.member().await;
    let req = EarnRequest {
        ..earn_req(user, 1, "OK", Some("0.01"))
    };
    assert_eq!(
        h.s.points
            .earn_points(req)
            .await
            .unwrap()
            .transaction
            .points_change,
        1
    );
}

#[tokio::test]
async fn a_replayed_earn_answers_with_the_upgrade_of_its_first_reply() {
    let h = Harness::new().await;
    let user = h.member().await;
    let first =
        h.s.points
            .earn_points(earn_req(user, 10, "UP1", Some("1500")))
            .await
            .unwrap();
    let up = first.upgrade.clone().expect("upgraded");
    assert_eq!(up.new_level, "银牌会员");
    // the level is renamed afterwards: the replay still says what the first reply said
    sqlx::query("update member_levels set level_name = 'Silver' where level_name = '银牌会员'")
        .execute(&h.pool)
        .await
        .unwrap();
    let again =
        h.s.points
            .earn_points(earn_req(user, 10, "UP1", Some("1500")))
            .await
            .unwrap();
    assert!(again.replayed);
    assert_eq!(again.transaction.id, first.transaction.id);
    assert_eq!(again.upgrade, Some(up));
    // an earn that upgraded nobody replays without one
    let plain = h.earn(user, 5, "PLAIN").await.unwrap();
    assert_eq!(plain.upgrade, None);
    assert_eq!(h.earn(user, 5, "PLAIN").await.unwrap().upgrade, None);
}

#[tokio::test]
async fn the_table_takes_exactly_the_transaction_types_the_code_knows() {
    let h = Harness::new().await;
    let allowed: Vec<String> = sqlx::query_scalar("select unnest(point_transaction_types())")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    let known: Vec<&str> = member_portal::domain::TransactionType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(allowed, known);
}

/// Migration 0030 folded the ledger tables' CHECK constraints into one guard function per
/// table: each old condition must still stop a bad row, under its old constraint's name,
/// and leave the row as it was.
#[tokio::test]
async fn every_ledger_check_still_refuses_its_bad_row_by_name() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 100, "G1").await.unwrap();
    h.spend(user, 30, "G2").await.unwrap();
    let (earn, spend): (i64, i64) = sqlx::query_as(
        "select max(id) filter (where transaction_type = 'earn'),
                max(id) filter (where transaction_type = 'use')
           from point_transactions where user_id = $1",
    )
    .bind(user)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    let before = fingerprint(&h.pool).await;
    // the row each case breaks (the member, the earn, the use, or the earn's batch), how,
    // and the rule, named after its table
    let cases = "
        member | available_points = -1 | available_points_check
        member | pending_points = -1 | pending_points_check
        member | total_earned = -1 | total_earned_check
        member | total_spent = -0.01 | total_spent_check
        member | total_used = -1 | total_used_check
        member | total_expired = -1 | total_expired_check
        member | total_reversed = -1 | total_reversed_check
        member | total_refunded = -1 | total_refunded_check
        member | daily_earned_points = -1 | daily_earned_points_check
        member | phone = 'call me' | phone_check
        member | external_id = '  ' | external_id_check
        member | spend_month = '2026-01-02' | spend_month_check
        earn | transaction_type = 'gift' | transaction_type_check
        earn | status = 'lost' | status_check
        earn | status = 'pending', transaction_type = 'adjust' | pending_kinds
        earn | points_change = 0 | earn_positive
        earn | transaction_type = 'release', points_change = -1 | release_positive
        earn | transaction_type = 'refund', points_change = -1 | refund_not_negative
        earn | transaction_type = 'expire', points_change = 1 | check1
        use | points_change = 0 | check2
        earn | balance_after = -1 | balance_after_check
        earn | amount = 0 | amount_check
        earn | unrecovered = -1 | unrecovered_check
        earn | reversed_points = -1 | reversed_points_check
        earn | reversed_amount = -0.01 | reversed_amount_check
        earn | reversal_shortfall = -1 | reversal_shortfall_check
        earn | bonus_points = -1 | bonus_points_check
        batch | earned_points = 0, available_points = 0 | earned_points_check
        batch | available_points = earned_points + 1 | check
        batch | pending_points = -1 | pending_points_check
        batch | pending_points = earned_points, pending_until = now() | held_within_earned
        batch | available_points = 0, pending_points = 1, pending_until = null | pending_has_date";
    for case in cases.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let [row, set, rule] = case.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("{case}: row | set | rule");
        };
        let (table, whose) = match row {
            "member" => ("member_profiles", format!("user_id = {user}")),
            "earn" => ("point_transactions", format!("id = {earn}")),
            "use" => ("point_transactions", format!("id = {spend}")),
            _ => ("point_batches", format!("transaction_id = {earn}")),
        };
        let sql = format!("update {table} set {set} where {whose}");
        let e = sqlx::query(&sql).execute(&h.pool).await.expect_err(&sql);
        let db = e.as_database_error().expect("a database error");
        assert_eq!(db.code().as_deref(), Some("23514"), "{sql}: {e}");
        assert_eq!(
            db.constraint(),
            Some(format!("{table}_{rule}").as_str()),
            "{sql}: {e}"
        );
    }
    // rows that keep every rule still pass: nulls pass as in a CHECK
    sqlx::query("update member_profiles set phone = null, external_id = null where user_id = $1")
        .bind(user)
        .execute(&h.pool)
        .await
        .unwrap();
    assert_eq!(fingerprint(&h.pool).await, before);
    h.assert_ledger_clean().await;
}
