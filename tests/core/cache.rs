use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::harness::*;
use crate::web_harness::PASSWORD;

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn ttl(key: &str) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query_async(&mut redis().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn redis_keys_and_ttls_follow_the_seed() {
    let h = Harness::with(Backend::Redis, |_| {}).await;
    let user = h.member().await;
    h.s.members.get_member_profile(user).await.unwrap();
    let keys = &h.s.ctx.cache.keys;
    let p = ttl(&keys.profile(user)).await;
    let pts = ttl(&keys.points(user)).await;
    let lv = ttl(&keys.levels()).await;
    assert!(
        keys.profile(user)
            .ends_with(&format!("member_system:profile:{user}"))
    );
    assert!((1790..=1800).contains(&p), "profile ttl {p}");
    assert!((590..=600).contains(&pts), "points ttl {pts}");
    assert!((7190..=7200).contains(&lv), "levels ttl {lv}");
    h.s.members.get_member_profile(user).await.unwrap();
    assert!(
        h.s.ctx.cache.stats.hits.load(Ordering::Relaxed) >= 3,
        "second read is served from Redis"
    );
}

#[tokio::test]
async fn a_read_after_a_write_never_shows_the_old_value() {
    for backend in [Backend::Redis, Backend::Local] {
        let h = Harness::with(backend, |_| {}).await;
        let user = h.member().await;
        assert_eq!(h.profile_available(user).await, 0);
        h.s.points
            .earn_points(earn_req(user, 10, "O1", Some("1000")))
            .await
            .unwrap();
        let p = h.s.members.get_member_profile(user).await.unwrap();
        assert_eq!(p.points.available, 10, "{backend:?}");
        assert_eq!(p.level.level_name, "银牌会员", "{backend:?}");
        assert_eq!(p.total_spent, dec("1000.00"), "{backend:?}");
        h.spend(user, 4, "PAY").await.unwrap();
        assert_eq!(h.profile_available(user).await, 6);
        // a level edit shows at once in profiles
        let silver = h.s.levels.list().await.unwrap()[1].clone();
        h.s.levels
            .update(
                silver.id,
                member_portal::service::levels::LevelInput::parse(
                    "Silver",
                    2,
                    1000,
                    dec("0.97"),
                    dec("1.2"),
                    vec![],
                    true,
                )
                .unwrap(),
                None,
            )
            .await
            .unwrap();
        let p = h.s.members.get_member_profile(user).await.unwrap();
        assert_eq!(
            (p.level.level_name.as_str(), p.level.discount_rate),
            ("Silver", dec("0.970"))
        );
    }
}

#[tokio::test]
async fn many_members_are_invalidated_in_one_pipeline() {
    let h = Harness::with(Backend::Redis, |_| {}).await;
    let mut users = Vec::new();
    for _ in 0..3 {
        let u = h.member().await;
        h.s.members.get_member_profile(u).await.unwrap();
        users.push(u);
    }
    let keys: Vec<String> = users
        .iter()
        .flat_map(|&u| [h.s.ctx.cache.keys.profile(u), h.s.ctx.cache.keys.points(u)])
        .collect();
    let exists = |keys: Vec<String>| async move {
        let n: i64 = redis::cmd("EXISTS")
            .arg(keys)
            .query_async(&mut redis().await)
            .await
            .unwrap();
        n
    };
    assert_eq!(exists(keys.clone()).await, 6);
    h.s.ctx.cache.invalidate_members(&users).await;
    assert_eq!(exists(keys).await, 0);
}

#[tokio::test]
async fn with_redis_unreachable_earn_use_and_profile_still_work_and_stay_correct() {
    let h = Harness::with(Backend::RedisDown, |_| {}).await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 300, "O1", Some("1200")))
        .await
        .unwrap();
    h.spend(user, 100, "PAY").await.unwrap();
    let p = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(p.points.available, 200);
    assert_eq!(p.level.level_name, "银牌会员");
    assert_eq!(
        h.spend(user, 201, "PAY2").await.unwrap_err().code(),
        "INSUFFICIENT_POINTS"
    );
    assert!(
        h.s.ctx.cache.stats.redis_fallbacks.load(Ordering::Relaxed) > 0,
        "fallbacks are counted"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_held_redis_lock_makes_others_wait_then_concurrent_operation() {
    let h = Harness::with(Backend::Redis, |c| c.lock_wait = Duration::from_millis(300)).await;
    let user = h.member().await;
    h.earn(user, 10, "O1").await.unwrap();
    let key = h.s.ctx.cache.keys.points_lock(user);
    assert_eq!(ttl(&key).await, -2, "released after the operation");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("someone-else")
        .arg("EX")
        .arg(30)
        .query_async(&mut redis().await)
        .await
        .unwrap();
    let e = h.spend(user, 1, "PAY").await.unwrap_err();
    assert_eq!(e.code(), "CONCURRENT_OPERATION");
    assert_eq!(e.status(), 409);
    // compare-and-delete: our release never removes another holder's lock
    let holder: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis().await)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("someone-else"));
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis().await)
        .await
        .unwrap();
    h.spend(user, 1, "PAY").await.unwrap();
}

#[tokio::test]
async fn with_redis_hanging_reads_and_writes_time_out_and_fall_back_to_postgres() {
    // A server that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let h = Harness::with(Backend::Local, |c| {
        c.redis_url = Some(format!("redis://{addr}"));
        c.redis_operation_timeout = Duration::from_millis(100);
    })
    .await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 50, "O1", Some("50")))
        .await
        .unwrap();
    h.spend(user, 20, "PAY").await.unwrap();
    let p = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(p.points.available, 30);
    assert_eq!(p.total_spent, dec("50.00"));
    assert!(h.s.ctx.cache.stats.redis_fallbacks.load(Ordering::Relaxed) >= 3);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_value_read_before_a_write_but_stored_after_it_is_never_served() {
    for backend in [Backend::Redis, Backend::Local] {
        let h = Harness::with(backend, |_| {}).await;
        let user = h.member().await;
        let cache = &h.s.ctx.cache;
        let (key, version) = (cache.keys.points(user), cache.keys.member_version(user));
        // a slow reader looks in the cache and reads PostgreSQL: 0 points...
        let (miss, stamp) = cache.get::<i64>(&key, &version).await;
        assert_eq!(miss, None);
        // ...meanwhile an earn commits and drops the member's entries...
        h.earn(user, 10, "O1").await.unwrap();
        // ...then the reader stores what it read, which is already old
        cache
            .set(&key, &stamp, &0i64, Duration::from_secs(600))
            .await;
        let (served, fresh) = cache.get::<i64>(&key, &version).await;
        assert_eq!(
            served, None,
            "{backend:?}: the old value must not be served"
        );
        assert_eq!(h.available(user).await, 10);
        // a value stored with the current stamp is served
        cache
            .set(&key, &fresh, &42i64, Duration::from_secs(600))
            .await;
        assert_eq!(
            cache.get::<i64>(&key, &version).await.0,
            Some(42),
            "{backend:?}"
        );
        // read as another type, the entry is a miss (JSON in Redis, the value in process)
        assert_eq!(
            cache.get::<String>(&key, &version).await.0,
            None,
            "{backend:?}"
        );
    }
}

/// An app with Redis and a member logged in whose `/profile` was viewed twice: the
/// entries are stored and the instance knows whose the session is.
async fn warm_page_view_with_redis() -> (crate::web_harness::TestApp, i64) {
    use crate::web_harness::spawn_app_with;
    let app = spawn_app_with(|c| c.redis_url = Some(REDIS.to_owned())).await;
    let user = app.member("ann@example.com").await;
    app.login("ann@example.com", PASSWORD).await;
    for _ in 0..2 {
        assert_eq!(app.get("/profile").await.status(), 200);
    }
    (app, user)
}

#[tokio::test]
async fn a_warm_page_view_with_redis_is_one_round_trip_and_no_postgres() {
    let (app, user) = warm_page_view_with_redis().await;
    let conn = app.s.ctx.cache.redis_conn().expect("redis");
    let before = conn.round_trips();
    let page = app.text("/profile").await;
    assert!(page.contains("id=\"member-code\""), "{page}");
    assert_eq!(
        conn.round_trips() - before,
        1,
        "one MGET: session, member record, points, unread count, levels"
    );
    // and nothing from PostgreSQL: the tables the page reads are gone, the page is not
    let pool = &app.s.ctx.pool;
    let rename = |from: &str, to: &str| format!("alter table {from} rename to {to}");
    for t in [
        "member_profiles",
        "member_levels",
        "point_batches",
        "notifications",
    ] {
        sqlx::query(&rename(t, &format!("{t}_away")))
            .execute(pool)
            .await
            .unwrap();
    }
    let r = app.get("/profile").await;
    assert_eq!(r.status(), 200, "served from Redis alone");
    for t in [
        "member_profiles",
        "member_levels",
        "point_batches",
        "notifications",
    ] {
        sqlx::query(&rename(&format!("{t}_away"), t))
            .execute(pool)
            .await
            .unwrap();
    }
    // a change made elsewhere shows at the next view
    app.s
        .points
        .earn_points(earn_req(user, 1234, "O1", None))
        .await
        .unwrap();
    let page = app.text("/profile").await;
    assert!(page.contains("1,234"), "{page}");
}

#[tokio::test]
async fn an_earn_with_redis_takes_the_lock_and_gives_it_back_with_the_invalidation() {
    let h = Harness::with(Backend::Redis, |_| {}).await;
    let user = h.member().await;
    h.earn(user, 10, "FIRST").await.unwrap();
    h.s.members.get_member_profile(user).await.unwrap();
    let conn = h.s.ctx.cache.redis_conn().expect("redis");
    let before = conn.round_trips();
    h.earn(user, 10, "SECOND").await.unwrap();
    assert_eq!(
        conn.round_trips() - before,
        2,
        "SET NX for the lock; then one pipeline: new version, entries dropped, lock released"
    );
    let lock: Option<String> = redis::cmd("GET")
        .arg(h.s.ctx.cache.keys.points_lock(user))
        .query_async(&mut redis().await)
        .await
        .unwrap();
    assert_eq!(lock, None, "released");
    assert_eq!(
        h.profile_available(user).await,
        20,
        "the entry read before the earn is not served after it"
    );
}

#[tokio::test]
async fn the_redis_lock_is_handed_to_the_next_operation_queued_on_the_instance() {
    let h = Harness::with(Backend::Redis, |_| {}).await;
    let user = h.member().await;
    let (locker, cache) = (&h.s.ctx.locker, &h.s.ctx.cache);
    let conn = cache.redis_conn().expect("redis");
    let lock_key = cache.keys.points_lock(user);
    let token = || async {
        redis::cmd("GET")
            .arg(&lock_key)
            .query_async::<Option<String>>(&mut redis().await)
            .await
            .unwrap()
    };
    let first = locker.acquire(user).await.unwrap();
    let taken = token()
        .await
        .expect("the first operation holds the Redis lock");
    let next = tokio::spawn({
        let locker = locker.clone();
        async move { locker.acquire(user).await }
    });
    // the spawned operation runs until it queues on the instance's mutex
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    let before = conn.round_trips();
    locker
        .release_after_invalidating(first, cache, &[user])
        .await;
    let second = next.await.unwrap().unwrap();
    assert_eq!(
        conn.round_trips() - before,
        1,
        "the invalidation only: the next operation neither asks for the lock nor waits for its release"
    );
    assert_eq!(
        token().await.as_deref(),
        Some(taken.as_str()),
        "the same lease, handed on"
    );
    locker
        .release_after_invalidating(second, cache, &[user])
        .await;
    assert_eq!(token().await, None, "the last one gives it back");
    // a waiter that gives up while the lease is handed to it does not keep it
    let first = locker.acquire(user).await.unwrap();
    let waiter = tokio::spawn({
        let locker = locker.clone();
        async move { locker.acquire(user).await.map(|_| ()) }
    });
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    waiter.abort();
    let _ = waiter.await;
    locker
        .release_after_invalidating(first, cache, &[user])
        .await;
    assert_eq!(token().await, None, "nobody left to hand it to");
}

#[tokio::test]
async fn an_earn_with_redis_but_no_redis_lock_makes_one_round_trip() {
    let h = Harness::with(Backend::Redis, |c| c.redis_points_lock = false).await;
    let user = h.member().await;
    h.earn(user, 10, "FIRST").await.unwrap();
    h.s.members.get_member_profile(user).await.unwrap();
    let conn = h.s.ctx.cache.redis_conn().expect("redis");
    let before = conn.round_trips();
    // one after the other: earns racing on one member are committed together, one
    // pipeline for each batch
    for i in 0..8 {
        h.earn(user, 10, &format!("E{i}")).await.unwrap();
    }
    assert_eq!(
        conn.round_trips() - before,
        8,
        "one pipeline per earn (new version, entries dropped), no SET NX and no release"
    );
    assert_eq!(
        h.profile_available(user).await,
        90,
        "each earn made stale what was read before it"
    );
}

#[tokio::test]
async fn a_warm_page_view_with_redis_parses_nothing_yet_shows_what_another_instance_wrote() {
    use member_portal::service::{Ctx, Services};
    let (app, user) = warm_page_view_with_redis().await;
    let stats = &app.s.ctx.cache.stats;
    let conn = app.s.ctx.cache.redis_conn().expect("redis");
    let (copies, trips) = (stats.copy_hits.load(Ordering::Relaxed), conn.round_trips());
    let page = app.text("/profile").await;
    assert!(page.contains("id=\"member-code\""), "{page}");
    assert_eq!(conn.round_trips() - trips, 1, "one MGET of the versions");
    assert_eq!(
        stats.copy_hits.load(Ordering::Relaxed) - copies,
        2,
        "the session and the unread count from the parsed copies; the page itself kept as \
         rendered (member record, points and levels not read)"
    );

    // a second instance on the same Redis and database: its write reaches this one only
    // through the version keys, which the copies are checked against
    let other = Services::new(
        Ctx::new(
            app.s.ctx.pool.clone(),
            app.config.clone(),
            std::sync::Arc::new(app.clock.clone()),
        )
        .unwrap(),
    );
    other
        .points
        .earn_points(earn_req(user, 1234, "ELSEWHERE", None))
        .await
        .unwrap();
    let page = app.text("/profile").await;
    assert!(
        page.contains("1,234"),
        "the other instance's earn shows: {page}"
    );
}

/// The profile page is kept as rendered and served again, but never once anything it
/// shows has changed: the member's points, the levels, the session (its CSRF token, its
/// language), or the time its points summary stops being true.
#[tokio::test]
async fn a_rendered_profile_is_served_again_only_while_all_it_shows_is_unchanged() {
    use crate::web_harness::{spawn_app, token_in};
    let app = spawn_app().await;
    let user = app.member("ann@example.com").await;
    app.login("ann@example.com", PASSWORD).await;
    let first = app.text("/profile").await;
    let stats = &app.s.ctx.cache.stats;
    let hits = stats.hits.load(Ordering::Relaxed);
    assert_eq!(app.text("/profile").await, first);
    assert_eq!(
        stats.hits.load(Ordering::Relaxed) - hits,
        2,
        "the session and the unread count read; the member's record, points and the levels \
         not: the page was kept"
    );

    // a points change shows at once
    app.s
        .points
        .earn_points(earn_req(user, 1234, "O1", None))
        .await
        .unwrap();
    let page = app.text("/profile").await;
    assert!(page.contains(r#"id="points-available">1,234<"#), "{page}");

    // a level edit too
    let base = app.s.levels.list().await.unwrap()[0].clone();
    let input = member_portal::service::levels::LevelInput::parse(
        "Basic",
        1,
        0,
        dec("1.000"),
        dec("1.00"),
        vec![],
        true,
    )
    .unwrap();
    app.s.levels.update(base.id, input, None).await.unwrap();
    let page = app.text("/profile").await;
    assert!(page.contains(r#"id="level-name">Basic<"#), "{page}");

    // another browser of the same member gets its own session's token, never this one's
    let other = app.another_browser();
    other.login("ann@example.com", PASSWORD).await;
    let theirs = other.text("/profile").await;
    let mine = app.text("/profile").await;
    let (their_token, my_token) = (token_in(&theirs).unwrap(), token_in(&mine).unwrap());
    assert_ne!(their_token, my_token);
    assert_eq!(their_token, other.csrf().await);
    assert_eq!(my_token, app.csrf().await);
    assert_eq!(token_in(&app.text("/profile").await).unwrap(), my_token);

    // the reader's language
    assert!(
        app.text_in("en", "/profile")
            .await
            .contains(r#"<html lang="en""#)
    );
    assert!(
        app.text_in("zh-CN", "/profile")
            .await
            .contains(r#"<html lang="zh-CN""#)
    );

    // and the time: the page is not served once its points summary stops being true
    use member_portal::clock::Clock;
    sqlx::query("update point_batches set expires_at = $2 where user_id = $1")
        .bind(user)
        .bind(app.clock.now() + time::Duration::hours(1))
        .execute(&app.s.ctx.pool)
        .await
        .unwrap();
    app.s.ctx.cache.invalidate_members(&[user]).await;
    for _ in 0..2 {
        let page = app.text("/profile").await;
        assert!(page.contains(r#"id="points-available">1,234<"#), "{page}");
    }
    app.clock.advance(time::Duration::hours(2));
    let page = app.text("/profile").await;
    assert!(page.contains(r#"id="points-available">0<"#), "{page}");
}
