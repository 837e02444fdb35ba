use member_portal::error::Error;
use member_portal::service::members::NewMember;
use time::macros::datetime;

use crate::harness::*;

#[tokio::test]
async fn new_member_starts_on_entry_level_with_zero_points() {
    let h = Harness::new().await;
    let id = h.member().await;
    let p = h.s.members.get_member_profile(id).await.unwrap();
    assert_eq!(p.level.level_name, "普通会员");
    assert_eq!(p.level.min_points, 0);
    assert_eq!(p.total_spent, dec("0.00"));
    assert_eq!(p.points.available, 0);
    assert_eq!(p.points.total_earned, 0);
    assert_eq!(p.upgrade_progress.next_level.as_deref(), Some("银牌会员"));
}

#[tokio::test]
async fn member_code_is_m_business_date_and_daily_sequence_in_member_timezone() {
    let h = Harness::new().await;
    // 17:00 UTC on the 17th is already the 18th in Shanghai.
    h.clock.set(datetime!(2025-09-17 17:00 UTC));
    let a = h.s.members.record(h.member().await).await.unwrap();
    let b = h.s.members.record(h.member().await).await.unwrap();
    assert_eq!(a.member_code, "M2025091800001");
    assert_eq!(b.member_code, "M2025091800002");
    // A new business day starts again at 1.
    h.clock.set(datetime!(2025-09-18 16:30 UTC));
    let c = h.s.members.record(h.member().await).await.unwrap();
    assert_eq!(c.member_code, "M2025091900001");
}

#[tokio::test]
async fn the_100000th_sign_up_of_a_day_gets_a_six_digit_sequence() {
    let h = Harness::new().await;
    sqlx::query(
        "insert into member_code_counters (business_date, last_seq) values ('2025-09-18', 99999)",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    let a = h.s.members.record(h.member().await).await.unwrap();
    assert_eq!(a.member_code, "M20250918100000");
    let b = h.s.members.record(h.member().await).await.unwrap();
    assert_eq!(b.member_code, "M20250918100001");
}

#[tokio::test]
async fn member_codes_are_gap_free_under_concurrent_sign_ups() {
    let h = Harness::new().await;
    let taken = format!("taken{}@example.com", h.db.name);
    h.s.members
        .create_member(NewMember::parse(&taken, "First", None).unwrap())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let s = h.s.clone();
        // every third sign-up fails (email taken) after the code could have been drawn
        let email = if i % 3 == 0 {
            taken.clone()
        } else {
            format!("c{i}@example.com")
        };
        tasks.push(tokio::spawn(async move {
            s.members
                .create_member(NewMember::parse(&email, "Concurrent", None).unwrap())
                .await
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(m) => codes.push(m.member_code),
            Err(e) => assert!(matches!(e, Error::EmailTaken), "{e:?}"),
        }
    }
    assert_eq!(codes.len(), 20);
    codes.push("M2025091800001".into());
    codes.sort();
    let expected: Vec<String> = (1..=21).map(|n| format!("M20250918{n:05}")).collect();
    assert_eq!(codes, expected, "codes must be unique and without gaps");
}

#[tokio::test]
async fn email_is_unique_whatever_its_case() {
    let h = Harness::new().await;
    h.s.members
        .create_member(NewMember::parse("Ann@Example.com", "Ann", None).unwrap())
        .await
        .unwrap();
    let err =
        h.s.members
            .create_member(NewMember::parse("ann@example.COM", "Ann", None).unwrap())
            .await
            .unwrap_err();
    assert_eq!(err.code(), "EMAIL_TAKEN");
    assert_eq!(err.status(), 409);
}

#[tokio::test]
async fn sign_up_input_is_validated() {
    assert_eq!(
        NewMember::parse("not-an-email", "A", None)
            .unwrap_err()
            .code(),
        "VALIDATION_ERROR"
    );
    assert_eq!(
        NewMember::parse("a@b.co", " ", None).unwrap_err().code(),
        "VALIDATION_ERROR"
    );
    assert_eq!(
        NewMember::parse("a@b.co", "A", Some("short"))
            .unwrap_err()
            .code(),
        "VALIDATION_ERROR"
    );
}

#[tokio::test]
async fn unknown_member_is_member_not_found() {
    let h = Harness::new().await;
    let e = h.s.members.get_member_profile(999_999).await.unwrap_err();
    assert_eq!(e.code(), "MEMBER_NOT_FOUND");
    assert_eq!(e.status(), 404);
    assert_eq!(
        h.earn(999_999, 10, "X").await.unwrap_err().code(),
        "MEMBER_NOT_FOUND"
    );
    assert_eq!(
        h.spend(999_999, 10, "X").await.unwrap_err().code(),
        "MEMBER_NOT_FOUND"
    );
    assert_eq!(
        h.s.points
            .history(999_999, None, None, 10)
            .await
            .unwrap_err()
            .code(),
        "MEMBER_NOT_FOUND"
    );
}
