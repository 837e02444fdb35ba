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

/// Earns racing on one member queue behind the one that runs and go to PostgreSQL
/// together (group commit): each is answered as if it had run alone, in some order.
#[tokio::test]
async fn concurrent_earns_of_one_member_are_committed_together_and_each_answered_as_alone() {
    for backend in [Backend::Local, Backend::Redis] {
        let h = Harness::with_pool_size(backend, 20, |_| {}).await;
        let user = h.member().await;
        let mut tasks = Vec::new();
        // thirty orders, and ten of them sent a second time
        for i in 0..40 {
            let s = h.s.clone();
            let order = format!("ORDER{}", i % 30);
            tasks.push(tokio::spawn(async move {
                s.points.earn_points(earn_req(user, 10, &order, None)).await
            }));
        }
        let mut fresh = Vec::new();
        let mut replays = Vec::new();
        for t in tasks {
            let out = t.await.unwrap().unwrap();
            assert_eq!(out.transaction.points_change, 10, "{backend:?}");
            if out.replayed {
                replays.push(out.transaction);
            } else {
                fresh.push(out.transaction);
            }
        }
        assert_eq!((fresh.len(), replays.len()), (30, 10), "{backend:?}");
        // each new earn saw every one before it: balances 10, 20, … 300, each once
        let mut balances: Vec<i64> = fresh.iter().map(|t| t.balance_after).collect();
        balances.sort_unstable();
        assert_eq!(
            balances,
            (1..=30).map(|n| n * 10).collect::<Vec<_>>(),
            "{backend:?}"
        );
        for r in &replays {
            assert!(
                fresh
                    .iter()
                    .any(|t| t.id == r.id && t.reference_id == r.reference_id),
                "{backend:?}: a replay answers with its order's earn"
            );
        }
        assert_eq!(h.available(user).await, 300, "{backend:?}");
        let sql = format!("select count(*) from point_transactions where user_id = {user}");
        assert_eq!(h.count(&sql).await, 30, "{backend:?}");
        // fewer transactions than earns: some of them were committed together
        let sql = format!(
            "select count(distinct xmin::text)::bigint from point_transactions where user_id = {user}"
        );
        let commits = h.count(&sql).await;
        assert!(
            commits < 30,
            "{backend:?}: {commits} transactions for 30 earns"
        );
        h.assert_ledger_clean().await;
    }
}

/// Earns of different members that arrive while the instance's runners are busy wait for
/// company and go to PostgreSQL together, in one statement under all their locks: each is
/// answered as if it had run alone; a member whose lock another instance (or operation)
/// holds waits for it and runs alone; a member that does not exist gets its own error and
/// holds up nobody.
#[tokio::test]
async fn concurrent_earns_of_different_members_are_committed_together_and_each_answered_as_alone() {
    for backend in [Backend::Local, Backend::Redis] {
        let h = Harness::with_pool_size(backend, 20, |c| c.earn_group_runners = 1).await;
        let mut users = Vec::new();
        for _ in 0..24 {
            users.push(h.member().await);
        }
        // the last member's lock is held: in Redis by another instance, or in-process
        let held_user = users[23];
        let lock_key = h.s.ctx.cache.keys.points_lock(held_user);
        let mut r = redis::Client::open(REDIS)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let held = match backend {
            Backend::Redis => {
                let _: () = redis::cmd("SET")
                    .arg(&lock_key)
                    .arg("another-instance")
                    .arg("EX")
                    .arg(30)
                    .query_async(&mut r)
                    .await
                    .unwrap();
                None
            }
            _ => Some(h.s.ctx.locker.acquire(held_user).await.unwrap()),
        };
        let mut tasks = Vec::new();
        // each member's order, four of them sent twice, and an earn for nobody
        let mut earns: Vec<(i64, i64, String)> = users
            .iter()
            .enumerate()
            .map(|(i, &u)| (u, i as i64 + 1, format!("ORDER{i}")))
            .collect();
        earns.extend((0..4).map(|i| (users[i], i as i64 + 1, format!("ORDER{i}"))));
        earns.push((i64::MAX - 7, 5, "NOBODY".to_owned()));
        for (user, points, order) in earns.clone() {
            let s = h.s.clone();
            tasks.push(tokio::spawn(async move {
                s.points
                    .earn_points(earn_req(user, points, &order, None))
                    .await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        match held {
            Some(guard) => h.s.ctx.locker.release(guard).await,
            None => {
                let _: () = redis::cmd("DEL")
                    .arg(&lock_key)
                    .query_async(&mut r)
                    .await
                    .unwrap();
            }
        }
        let mut replays = 0;
        for ((user, points, order), t) in earns.iter().zip(tasks) {
            let result = t.await.unwrap();
            if order == "NOBODY" {
                let e = result.unwrap_err();
                assert_eq!(e.code(), "MEMBER_NOT_FOUND", "{backend:?}");
                continue;
            }
            let out = result.unwrap_or_else(|e| panic!("{backend:?} {order}: {e:?}"));
            let t = &out.transaction;
            assert_eq!(
                (t.user_id, t.points_change, t.balance_after),
                (*user, *points, *points),
                "{backend:?} {order}"
            );
            assert_eq!(t.reference_id.as_deref(), Some(order.as_str()));
            replays += usize::from(out.replayed);
        }
        assert_eq!(replays, 4, "{backend:?}");
        for (i, &u) in users.iter().enumerate() {
            assert_eq!(h.available(u).await, i as i64 + 1, "{backend:?}");
        }
        let sql = "select count(*) from point_transactions where transaction_type = 'earn'";
        assert_eq!(h.count(sql).await, 24, "{backend:?}");
        // fewer transactions than earns: members' earns were committed together
        let sql = "select count(distinct xmin::text)::bigint from point_transactions";
        let commits = h.count(sql).await;
        assert!(
            commits < 12,
            "{backend:?}: {commits} transactions for 24 members' earns"
        );
        if backend == Backend::Redis {
            let keys: Vec<Option<String>> = redis::cmd("MGET")
                .arg(
                    users
                        .iter()
                        .map(|&u| h.s.ctx.cache.keys.points_lock(u))
                        .collect::<Vec<_>>(),
                )
                .query_async(&mut r)
                .await
                .unwrap();
            assert!(keys.iter().all(Option::is_none), "every lock given back");
        }
        h.assert_ledger_clean().await;
    }
}

/// Earns queued behind a member whose lock is held elsewhere wait no longer than the lock's
/// wait, write nothing, and leave the member's queue free for the earns after them.
#[tokio::test]
async fn queued_earns_of_a_member_whose_lock_is_held_answer_concurrent_operation_in_time() {
    let wait = std::time::Duration::from_secs(1);
    let h = Harness::with_pool_size(Backend::Local, 20, |c| c.lock_wait = wait).await;
    let user = h.member().await;
    let held = h.s.ctx.locker.acquire(user).await.unwrap();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = h.s.clone();
        tasks.push(tokio::spawn(async move {
            s.points
                .earn_points(earn_req(user, 10, &format!("HELD{i}"), None))
                .await
        }));
    }
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(e.code(), "CONCURRENT_OPERATION");
    }
    // the first waits for the lock, the queued ones for as long: none twice as long
    assert!(
        started.elapsed() < wait * 19 / 10,
        "{:?}",
        started.elapsed()
    );
    let sql = format!("select count(*) from point_transactions where user_id = {user}");
    assert_eq!(h.count(&sql).await, 0);
    h.s.ctx.locker.release(held).await;
    let out = h.earn(user, 10, "AFTER").await.unwrap();
    assert_eq!(out.transaction.balance_after, 10);
}
