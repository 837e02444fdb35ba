use std::time::Duration;

use member_portal::error::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, PgConnection};

use crate::harness::*;

/// Whether the pool's next borrower finds itself inside a transaction someone else began
/// (simple protocol: in an implicit transaction now() is the statement's own start time).
async fn in_stale_transaction(pool: &sqlx::PgPool) -> bool {
    let row = sqlx::raw_sql("select now() = statement_timestamp()")
        .fetch_one(pool)
        .await
        .unwrap();
    !sqlx::Row::get::<bool, _>(&row, 0)
}

/// Polls `fut` until it finishes or `after` has passed, then drops it. Unlike
/// `tokio::time::timeout`, whose timer rounds up to whole milliseconds, this drops at
/// microsecond precision, so drops land inside short windows such as a BEGIN round trip.
async fn drop_after<F: Future>(after: Duration, fut: F) -> Result<F::Output, ()> {
    let deadline = std::time::Instant::now() + after;
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| match fut.as_mut().poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Ok(v)),
        std::task::Poll::Pending if std::time::Instant::now() >= deadline => {
            std::task::Poll::Ready(Err(()))
        }
        std::task::Poll::Pending => {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// A thousand points operations dropped at random moments (as a client that disconnects
/// or a timeout would), on a pool of ONE connection: afterwards no connection is inside a
/// transaction, every acknowledged operation is in the ledger, and the ledger is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_dropped_at_random_moments_leave_no_open_transaction_and_lose_nothing() {
    let h =
        Harness::with_pool_size(Backend::Local, 1, |c| c.daily_points_limit = 1_000_000_000).await;
    let mut users = Vec::new();
    for n in 0..4 {
        let user = h.member().await;
        h.earn(user, 2000, &format!("SEED{n}")).await.unwrap();
        users.push(user);
    }
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let (mut acknowledged, mut dropped, mut stale) = (Vec::new(), 0, 0);
    for i in 0..1000 {
        let user = users[i % users.len()];
        // Most drops early in the operation, where BEGIN's round trip is (a window of a few
        // microseconds), the rest anywhere in it.
        let deadline = Duration::from_micros(if rng.random_bool(0.6) {
            rng.random_range(0..150)
        } else {
            rng.random_range(0..8000)
        });
        let result = if rng.random_bool(0.5) {
            drop_after(
                deadline,
                h.earn(user, rng.random_range(1..20), &format!("E{i}")),
            )
            .await
        } else {
            drop_after(
                deadline,
                h.spend(user, rng.random_range(1..20), &format!("U{i}")),
            )
            .await
        };
        match result {
            Ok(Ok(out)) => acknowledged.push(out.transaction.id),
            Ok(Err(Error::InsufficientPoints { .. })) => {}
            Ok(Err(e)) => panic!("unexpected error {e:?}"),
            Err(_) => {
                dropped += 1;
                if in_stale_transaction(&h.pool).await {
                    stale += 1;
                }
            }
        }
    }
    assert_eq!(
        stale, 0,
        "{stale} of {dropped} drops left the pooled connection inside a transaction"
    );
    assert!(
        dropped > 300,
        "the test must actually drop operations (dropped {dropped})"
    );
    assert!(
        acknowledged.len() > 20,
        "and some must complete ({} did)",
        acknowledged.len()
    );

    // Detached work finishes by itself; wait until the pool is idle.
    let settle = tokio::time::Instant::now();
    while h.pool.num_idle() != h.pool.size() as usize {
        assert!(
            settle.elapsed() < Duration::from_secs(60),
            "operations never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut admin = PgConnection::connect(&h.db.url).await.unwrap();
    let in_tx: i64 = sqlx::query_scalar(
        "select count(*) from pg_stat_activity where datname = current_database()
            and pid <> pg_backend_pid() and state like 'idle in transaction%'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        in_tx, 0,
        "a pooled connection was left inside a transaction"
    );
    let row = sqlx::raw_sql("select now() = statement_timestamp()")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let fresh: bool = sqlx::Row::get(&row, 0);
    assert!(fresh, "the pooled connection is inside a stale transaction");

    let found: i64 =
        sqlx::query_scalar("select count(*) from point_transactions where id = any($1)")
            .bind(&acknowledged)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(
        found as usize,
        acknowledged.len(),
        "an acknowledged operation is missing"
    );
    h.assert_ledger_clean().await;
    eprintln!(
        "cancellation: {} acknowledged, {dropped} dropped",
        acknowledged.len()
    );
}

/// Counts, over a sweep of drop moments through a short transaction, how often the one
/// pooled connection is left inside a transaction for its next borrower.
async fn stale_after_drops<F, Fut>(h: &Harness, work: F) -> (usize, usize)
where
    F: Fn(sqlx::PgPool) -> Fut,
    Fut: Future<Output = ()>,
{
    let (mut dropped, mut stale) = (0, 0);
    for step in 0..1200u64 {
        if drop_after(Duration::from_nanos(step * 250), work(h.pool.clone()))
            .await
            .is_err()
        {
            dropped += 1;
            if in_stale_transaction(&h.pool).await {
                stale += 1;
                sqlx::raw_sql("rollback").execute(&h.pool).await.unwrap();
            }
        }
    }
    (dropped, stale)
}

/// sqlx 0.8's `Pool::begin` is not cancel-safe (DEPENDENCIES.md); the same transaction
/// run through `run_to_completion` never leaves its connection inside a transaction,
/// however precisely it is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_to_completion_keeps_a_dropped_begin_from_leaking_its_transaction() {
    let h = Harness::with_pool_size(Backend::Local, 1, |_| {}).await;
    let bare = stale_after_drops(&h, |pool| async move {
        if let Ok(mut tx) = pool.begin().await {
            sqlx::query("select 1").execute(&mut *tx).await.ok();
            tx.commit().await.ok();
        }
    })
    .await;
    let guarded = stale_after_drops(&h, |pool| async move {
        let _ = member_portal::service::run_to_completion(async move {
            let mut tx = pool.begin().await?;
            sqlx::query("select 1").execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
        .await;
    })
    .await;
    eprintln!(
        "cancellation sweep: bare begin {bare:?} (dropped, stale); run_to_completion {guarded:?}"
    );
    assert!(
        guarded.0 > 200,
        "the sweep must drop most runs ({guarded:?})"
    );
    assert_eq!(
        guarded.1, 0,
        "run_to_completion left a connection inside a transaction"
    );
}
