//! Background jobs and shutdown.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use member_portal::service::{Ctx, Services};
use member_portal::worker::{Job, run_once};
use time::Duration;

use crate::harness::*;
use crate::web_harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_sweep_each_due_batch_once() {
    let h = Harness::with(Backend::Local, |c| {
        c.points_expiry_days = 10;
        c.batch_size = 7;
    })
    .await;
    // a second instance: its own services and pool on the same database
    let pool2 = member_portal::db::connect(&h.s.ctx.config, 5)
        .await
        .unwrap();
    let other = Services::new(
        Ctx::new(
            pool2,
            h.s.ctx.config.as_ref().clone(),
            Arc::new(h.clock.clone()),
        )
        .unwrap(),
    );
    let mut users = Vec::new();
    for i in 0..40 {
        let u = h.member().await;
        h.earn(u, 10 + i, &format!("A{u}")).await.unwrap();
        h.earn(u, 5, &format!("B{u}")).await.unwrap();
        users.push(u);
    }
    h.clock.advance(Duration::days(11));
    let (a, b) = tokio::join!(
        run_once(&h.s, Job::ExpirySweep),
        run_once(&other, Job::ExpirySweep)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_some() || b.is_some(), "one of them ran");
    // whichever ran second (or was skipped) found nothing more to do
    assert_eq!(run_once(&other, Job::ExpirySweep).await.unwrap(), Some(0));
    assert_eq!(
        h.count("select count(*) from point_transactions where transaction_type = 'expire'")
            .await,
        40
    );
    assert_eq!(
        h.count("select count(*) from point_batches where available_points > 0")
            .await,
        0
    );
    let expired: i64 = sqlx::query_scalar("select sum(total_expired)::bigint from member_profiles")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(expired, (0..40).map(|i| 15 + i).sum::<i64>());
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_job_held_by_another_instance_is_skipped() {
    let h = Harness::new().await;
    let mut holder = h.pool.acquire().await.unwrap();
    sqlx::query("select pg_advisory_lock(1836056577)")
        .execute(&mut *holder)
        .await
        .unwrap(); // 0x6d700001
    assert_eq!(run_once(&h.s, Job::ExpirySweep).await.unwrap(), None);
    sqlx::query("select pg_advisory_unlock(1836056577)")
        .execute(&mut *holder)
        .await
        .unwrap();
    assert_eq!(run_once(&h.s, Job::ExpirySweep).await.unwrap(), Some(0));
}

#[tokio::test]
async fn deferred_upgrades_and_reminders_run_as_jobs() {
    let h = Harness::with(Backend::Local, |c| c.points_expiry_days = 40).await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 10, "O1", Some("1000")))
        .await
        .unwrap();
    h.clock.advance(Duration::hours(1));
    h.s.points
        .earn_points(earn_req(user, 10, "O2", Some("4000")))
        .await
        .unwrap();
    assert_eq!(
        run_once(&h.s, Job::DeferredUpgrades).await.unwrap(),
        Some(0)
    );
    h.clock.advance(Duration::days(1));
    assert_eq!(
        run_once(&h.s, Job::DeferredUpgrades).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        h.s.members
            .get_member_profile(user)
            .await
            .unwrap()
            .level
            .level_name,
        "金牌会员"
    );
    h.clock.advance(Duration::days(10));
    assert_eq!(run_once(&h.s, Job::ExpiryReminders).await.unwrap(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_shutdown_completes() {
    let db = TestDb::new().await;
    let config = member_portal::config::Config {
        database_url: db.url.clone(),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let app = member_portal::app::Application::build(config)
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let s = app.services.clone();
    let key = member_portal::service::accounts::create_api_key(&s.ctx, "k", None)
        .await
        .unwrap();
    let user = s
        .members
        .create_member(
            member_portal::service::members::NewMember::parse("a@example.com", "A", None).unwrap(),
        )
        .await
        .unwrap()
        .user_id;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    // hold the member's lock so the request waits inside the server
    let guard = s.ctx.locker.acquire(user).await.unwrap();
    let request = tokio::spawn(
        client()
            .post(format!("{base}/api/v1/members/{user}/points/earn"))
            .bearer_auth(key)
            .json(&serde_json::json!({"base_points": 10, "source_type": "o", "source_id": "IN_FLIGHT"}))
            .send(),
    );
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    stop.send(()).unwrap(); // "SIGTERM"
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert!(!server.is_finished(), "waits for the request in flight");
    s.ctx.locker.release(guard).await;
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 201);
    tokio::time::timeout(StdDuration::from_secs(10), server)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    let n: i64 = sqlx::query_scalar("select count(*) from point_transactions")
        .fetch_one(
            &member_portal::db::connect(
                &member_portal::config::Config {
                    database_url: db.url.clone(),
                    ..Default::default()
                },
                1,
            )
            .await
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn readyz_reports_postgres_and_the_state_of_redis() {
    for (redis, expected) in [
        (Some(REDIS), "up"),
        (Some("redis://127.0.0.1:1"), "down"),
        (None, "not configured"),
    ] {
        let db = TestDb::new().await;
        let config = member_portal::config::Config {
            database_url: db.url.clone(),
            bind_addr: "127.0.0.1:0".parse().unwrap(),
            redis_url: redis.map(str::to_owned),
            redis_operation_timeout: StdDuration::from_millis(300),
            redis_key_prefix: format!("{}:", db.name),
            ..Default::default()
        };
        let app = member_portal::app::Application::build(config)
            .await
            .unwrap();
        let base = format!("http://{}", app.local_addr().unwrap());
        tokio::spawn(app.run_until(std::future::pending()));
        let r = client().get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "PostgreSQL is what readiness needs");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["postgres"], "up");
        assert_eq!(body["redis"], expected);
    }
}

/// A real `serve` process gets SIGTERM while a request is inside it: the request
/// completes, then the process exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_serve_process_lets_the_request_in_flight_complete() {
    let db = TestDb::new().await;
    let prefix = format!("{}:", db.name);
    let config = member_portal::config::Config {
        database_url: db.url.clone(),
        ..Default::default()
    };
    let pool = member_portal::db::connect(&config, 2).await.unwrap();
    member_portal::db::migrate(&pool).await.unwrap();
    let s = Services::new(Ctx::with_system_clock(pool.clone(), config).unwrap());
    let key = member_portal::service::accounts::create_api_key(&s.ctx, "k", None)
        .await
        .unwrap();
    let user = s
        .members
        .create_member(
            member_portal::service::members::NewMember::parse("a@example.com", "A", None).unwrap(),
        )
        .await
        .unwrap()
        .user_id;
    let mut serve = crate::serve_process::ServeProcess::start(
        &db.url,
        &[("REDIS_URL", REDIS), ("REDIS_KEY_PREFIX", &prefix)],
    )
    .await;
    let base = serve.base.clone();
    // someone else holds the member's lock: the request waits inside the server
    let lock = format!("{prefix}lock:points:{user}");
    let mut redis = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("held-by-test")
        .arg("EX")
        .arg(30)
        .query_async(&mut redis)
        .await
        .unwrap();
    let request = tokio::spawn(
        client()
            .post(format!("{base}/api/v1/members/{user}/points/earn"))
            .bearer_auth(key)
            .json(
                &serde_json::json!({"base_points": 10, "source_type": "o", "source_id": "SIGTERM"}),
            )
            .send(),
    );
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &serve.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(serve.try_wait().is_none(), "still finishing the request");
    let _: () = redis::cmd("DEL")
        .arg(&lock)
        .query_async(&mut redis)
        .await
        .unwrap();
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 201);
    let deadline = std::time::Instant::now() + StdDuration::from_secs(15);
    let status = loop {
        if let Some(status) = serve.try_wait() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit: {status}");
    let n: i64 = sqlx::query_scalar("select count(*) from point_transactions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}
