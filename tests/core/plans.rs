//! Query plans that must not depend on how the data is spread: a member's pages read the
//! member's own index, even when one member holds most of a table (scripts/bench-pages
//! found the planner walking the primary key there).

use member_portal::db;
use sqlx::Connection;

use crate::harness::Harness;

/// Index entries this transaction has read so far from the indexes of `table` (planning
/// reads a few too: it probes an index for the true end of a range past its histogram).
async fn index_entries_read(conn: &mut sqlx::PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(
        "select sum(pg_stat_get_xact_tuples_returned(indexrelid))::bigint
           from pg_index where indrelid = $1::regclass",
    )
    .bind(table)
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn history_and_notifications_read_the_members_index_when_one_member_holds_most_rows() {
    let h = Harness::new().await;
    let (whale, other) = (h.member().await, h.member().await);
    // The whale's 20k rows first, then 2k newer rows of someone else: the newest end of the
    // primary key holds none of the whale's rows, while the statistics say 90 % are theirs.
    sqlx::raw_sql(&format!(
        "insert into point_transactions (user_id, transaction_type, points_change, balance_after,
                reference_type, reference_id, created_at)
         select u, 'earn', 1, s, 'seed', u || '-' || s, now()
           from (values ({whale}, 20000), ({other}, 2000)) v(u, n), generate_series(1, n) s;
         insert into notifications (user_id, kind, payload, created_at)
         select u, 'seed', '{{}}', now()
           from (values ({whale}, 20000), ({other}, 2000)) v(u, n), generate_series(1, n) s;
         analyze point_transactions; analyze notifications;"
    ))
    .execute(&h.pool)
    .await
    .unwrap();

    let mut conn = h.pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let page = db::points::history(&mut tx, whale, None, None, 21)
        .await
        .unwrap();
    let earns = db::points::history(
        &mut tx,
        whale,
        Some(member_portal::domain::TransactionType::Earn),
        None,
        21,
    )
    .await
    .unwrap();
    let next = db::points::history(&mut tx, whale, None, Some(page[20].id), 21)
        .await
        .unwrap();
    let notes = db::notifications::list(&mut tx, whale, 21).await.unwrap();

    for rows in [&page, &earns, &next] {
        assert_eq!(rows.len(), 21);
        assert!(rows.iter().all(|t| t.user_id == whale));
        assert!(rows.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    }
    assert!(
        next[0].id < page[20].id,
        "the next page starts after the cursor"
    );
    assert_eq!(notes.len(), 21);
    assert!(notes.windows(2).all(|w| w[0].id > w[1].id), "newest first");

    // Three pages of 21 rows and one of 21 notifications: reading the member's index costs
    // about that many entries; walking the primary key would read past the 2000 newer rows.
    let read = index_entries_read(&mut tx, "point_transactions").await;
    assert!(
        read <= 3 * 22 + 10,
        "{read} index entries read for three history pages"
    );
    let read = index_entries_read(&mut tx, "notifications").await;
    assert!(
        read <= 22 + 10,
        "{read} index entries read for one notification page"
    );
}

#[tokio::test]
async fn an_earn_updates_the_members_profile_in_place_without_new_index_entries() {
    // Every earn updates the profile row; an index on a column it changes would make that
    // update write an entry in each of the table's indexes (migration 0027).
    let h = Harness::new().await;
    let member = h.member().await;
    let now = time::OffsetDateTime::now_utc();
    let mut conn = h.pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    for n in 0..3 {
        let id = format!("hot-{n}");
        let earned = db::points::earn(
            &mut tx,
            &db::points::EarnCall {
                user_id: member,
                base_points: 10,
                amount: Some(rust_decimal::Decimal::new(1999, 2)),
                source_type: "order",
                source_id: &id,
                now,
                tz: "UTC",
                expires_at: now + time::Duration::days(365),
                pending_until: None,
                max_per_transaction: 1_000_000,
                daily_limit: 1_000_000,
                check_upgrade: false,
                key_hash: None,
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(earned, db::points::Earned::Created(_)),
            "{earned:?}"
        );
    }
    let (updated, hot): (i64, i64) = sqlx::query_as(
        "select pg_stat_get_xact_tuples_updated('member_profiles'::regclass),
                pg_stat_get_xact_tuples_hot_updated('member_profiles'::regclass)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((updated, hot), (3, 3));
}
