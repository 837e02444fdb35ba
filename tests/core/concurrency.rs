use member_portal::error::Error;

use crate::harness::*;

async fn fifty_uses_of_ten_against_two_hundred(backend: Backend) {
    let h = Harness::with_pool_size(backend, 20, |_| {}).await;
    let user = h.member().await;
    h.earn(user, 200, "SEED").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = h.s.clone();
        tasks.push(tokio::spawn(async move {
            s.points
                .use_points(use_req(user, 10, &format!("PAY{i}")))
                .await
        }));
    }
    let (mut ok, mut insufficient) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::InsufficientPoints { .. }) => insufficient += 1,
            Err(e) => panic!("{backend:?}: unexpected {e:?}"),
        }
    }
    assert_eq!((ok, insufficient), (20, 30), "{backend:?}");
    assert_eq!(h.available(user).await, 0);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn fifty_concurrent_uses_exactly_twenty_succeed_with_the_in_process_lock() {
    fifty_uses_of_ten_against_two_hundred(Backend::Local).await;
}

#[tokio::test]
async fn fifty_concurrent_uses_exactly_twenty_succeed_with_the_redis_lock() {
    fifty_uses_of_ten_against_two_hundred(Backend::Redis).await;
}

#[tokio::test]
async fn fifty_concurrent_uses_exactly_twenty_succeed_on_the_row_lock_alone_when_redis_is_down() {
    fifty_uses_of_ten_against_two_hundred(Backend::RedisDown).await;
}

#[tokio::test]
async fn twenty_concurrent_duplicate_earns_credit_once() {
    for backend in [Backend::Redis, Backend::Local] {
        let h = Harness::with_pool_size(backend, 20, |_| {}).await;
        let user = h.member().await;
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let s = h.s.clone();
            tasks.push(tokio::spawn(async move {
                s.points
                    .earn_points(earn_req(user, 100, "ORDER", Some("100")))
                    .await
            }));
        }
        let mut ids = Vec::new();
        let mut fresh = 0;
        for t in tasks {
            let out = t.await.unwrap().unwrap();
            fresh += usize::from(!out.replayed);
            ids.push(out.transaction.id);
        }
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "{backend:?}: every reply carries the same transaction"
        );
        assert_eq!(fresh, 1, "{backend:?}");
        assert_eq!(h.available(user).await, 100);
        assert_eq!(h.count("select count(*) from point_transactions").await, 1);
    }
}

#[tokio::test]
async fn concurrent_duplicate_earns_for_two_members_credit_one_and_conflict_the_other() {
    let h = Harness::with_pool_size(Backend::Local, 20, |_| {}).await;
    let (a, b) = (h.member().await, h.member().await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = h.s.clone();
        let user = if i % 2 == 0 { a } else { b };
        tasks.push(tokio::spawn(async move {
            s.points
                .earn_points(earn_req(user, 100, "SHARED", None))
                .await
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            codes.push(e.code());
        }
    }
    assert_eq!(codes.len(), 10, "{codes:?}");
    assert!(
        codes.iter().all(|c| *c == "IDEMPOTENCY_CONFLICT"),
        "{codes:?}"
    );
    assert_eq!(h.available(a).await + h.available(b).await, 100);
    h.assert_ledger_clean().await;
}
