//! Test harness: a fresh PostgreSQL database per test, cloned from a template migrated
//! once per migration set; services on a manual clock; real Redis with per-test keys.

use std::sync::Arc;

use member_portal::clock::ManualClock;
use member_portal::config::Config;
use member_portal::db::MIGRATOR;
use member_portal::domain::{Money, Points, Reference};
use member_portal::service::members::NewMember;
use member_portal::service::points::{EarnRequest, UseRequest};
use member_portal::service::{Ctx, Services, ledger};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use time::OffsetDateTime;
use time::macros::datetime;

pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";
pub const REDIS: &str = "redis://127.0.0.1:6379";

/// 2025-09-18 10:00 in Shanghai: the seed's date.
pub const START: OffsetDateTime = datetime!(2025-09-18 02:00 UTC);

fn server() -> String {
    std::env::var("TEST_POSTGRES_SERVER").unwrap_or_else(|_| SERVER.to_owned())
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    /// dropped by its owner, not by this handle
    borrowed: bool,
}

impl TestDb {
    pub async fn new() -> Self {
        let mut admin = PgConnection::connect(&format!("{}/postgres", server()))
            .await
            .expect("PostgreSQL must run on 127.0.0.1:5432 (see README)");
        let template = template_name();
        // One process at a time builds the template; the others wait, then clone it.
        sqlx::query("select pg_advisory_lock(7201)")
            .execute(&mut admin)
            .await
            .unwrap();
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                .bind(&template)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        if !exists {
            // Templates of earlier migration sets are of no further use.
            let old: Vec<String> = sqlx::query_scalar(
                "select datname from pg_database where datname like 'mp\\_template\\_%'",
            )
            .fetch_all(&mut admin)
            .await
            .unwrap();
            for db in old {
                sqlx::query(&format!("drop database if exists {db} with (force)"))
                    .execute(&mut admin)
                    .await
                    .ok();
            }
            let building = format!("{template}_building");
            sqlx::query(&format!("drop database if exists {building}"))
                .execute(&mut admin)
                .await
                .unwrap();
            sqlx::query(&format!("create database {building}"))
                .execute(&mut admin)
                .await
                .unwrap();
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(&format!("{}/{building}", server()))
                .await
                .unwrap();
            MIGRATOR.run(&pool).await.unwrap();
            pool.close().await;
            // the closed connection's backend may not have exited yet: wait for it
            let rename = format!("alter database {building} rename to {template}");
            let mut tries = 0;
            while let Err(e) = sqlx::query(&rename).execute(&mut admin).await {
                // nothing else may use the database being built (the advisory lock is ours)
                sqlx::query(
                    "select pg_terminate_backend(pid) from pg_stat_activity
                      where datname = $1 and pid <> pg_backend_pid()",
                )
                .bind(&building)
                .execute(&mut admin)
                .await
                .ok();
                tries += 1;
                assert!(tries < 100, "the template cannot be renamed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        sqlx::query("select pg_advisory_unlock(7201)")
            .execute(&mut admin)
            .await
            .unwrap();
        let name = format!("mp_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("create database {name} template {template}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.ok();
        let url = format!("{}/{name}", server());
        Self {
            name,
            url,
            borrowed: false,
        }
    }

    /// A handle on another test's database that leaves it in place when dropped.
    pub fn borrowed(other: &TestDb) -> Self {
        Self {
            name: other.name.clone(),
            url: other.url.clone(),
            borrowed: true,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.borrowed {
            return;
        }
        let name = self.name.clone();
        // Drop runs outside async; a short-lived runtime on its own thread does the work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let mut admin = PgConnection::connect(&format!("{}/postgres", server()))
                    .await
                    .ok()?;
                sqlx::query(&format!("drop database if exists {name} with (force)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Template per migration set, so a changed migration gets a fresh template.
fn template_name() -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for m in MIGRATOR.iter() {
        for b in m.checksum.iter() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
        }
    }
    format!("mp_template_{h:016x}")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Local,
    Redis,
    /// REDIS_URL points at a port where nothing listens.
    RedisDown,
}

pub struct Harness {
    pub db: TestDb,
    pub clock: ManualClock,
    pub s: Services,
    pub pool: PgPool,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with(Backend::Local, |_| {}).await
    }

    pub async fn with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        // small pools: the suite runs tests in parallel against one PostgreSQL, which may
        // serve others too (the suite stays well under max_connections = 100)
        Self::with_pool_size(backend, 5, tweak).await
    }

    pub async fn with_pool_size(
        backend: Backend,
        size: u32,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let db = TestDb::new().await;
        let mut config = Config {
            database_url: db.url.clone(),
            redis_key_prefix: format!("{}:", db.name),
            redis_url: match backend {
                Backend::Local => None,
                Backend::Redis => Some(REDIS.to_owned()),
                Backend::RedisDown => Some("redis://127.0.0.1:1".to_owned()),
            },
            ..Default::default()
        };
        if backend == Backend::RedisDown {
            config.redis_operation_timeout = std::time::Duration::from_millis(300);
        }
        tweak(&mut config);
        let pool = member_portal::db::connect(&config, size).await.unwrap();
        let clock = ManualClock::new(START);
        let s =
            Services::new(Ctx::new(pool.clone(), config.clone(), Arc::new(clock.clone())).unwrap());
        Self { db, clock, s, pool }
    }

    /// A new member with a unique email.
    pub async fn member(&self) -> i64 {
        let email = format!("m{}@example.com", uuid::Uuid::new_v4().simple());
        self.s
            .members
            .create_member(NewMember::parse(&email, "Member", None).unwrap())
            .await
            .unwrap()
            .user_id
    }

    /// A member with `total_spent` already at `spent` (as the seed's test helper).
    pub async fn member_with_spent(&self, spent: &str) -> i64 {
        let id = self.member().await;
        set_total_spent(&self.pool, id, spent).await;
        self.s.ctx.cache.invalidate_members(&[id]).await;
        id
    }

    pub async fn earn(
        &self,
        user: i64,
        base: i64,
        source_id: &str,
    ) -> member_portal::error::Result<member_portal::domain::Outcome> {
        self.s
            .points
            .earn_points(earn_req(user, base, source_id, None))
            .await
    }

    pub async fn spend(
        &self,
        user: i64,
        points: i64,
        reference: &str,
    ) -> member_portal::error::Result<member_portal::domain::Outcome> {
        self.s
            .points
            .use_points(use_req(user, points, reference))
            .await
    }

    pub async fn available(&self, user: i64) -> i64 {
        self.s.points.summary(user).await.unwrap().available
    }

    /// The points available as the member's profile shows them (its own cache entry).
    pub async fn profile_available(&self, user: i64) -> i64 {
        self.s
            .members
            .get_member_profile(user)
            .await
            .unwrap()
            .points
            .available
    }

    /// Fails the test with the report when any ledger invariant is broken.
    pub async fn assert_ledger_clean(&self) {
        let v = ledger::verify_ledger(&self.pool, None).await.unwrap();
        assert!(v.is_empty(), "ledger violations: {v:#?}");
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

pub fn earn_req(user: i64, base: i64, source_id: &str, amount: Option<&str>) -> EarnRequest {
    EarnRequest {
        user_id: user,
        base_points: Points::parse("base_points", base).unwrap(),
        source_type: Reference::parse("source_type", "order_complete").unwrap(),
        source_id: Reference::parse("source_id", source_id).unwrap(),
        amount: amount.map(|a| Money::parse("amount", a.parse().unwrap()).unwrap()),
        category: None,
    }
}

pub fn use_req(user: i64, points: i64, reference: &str) -> UseRequest {
    UseRequest {
        user_id: user,
        points: Points::parse("points", points).unwrap(),
        usage_type: Reference::parse("usage_type", "checkout").unwrap(),
        reference_id: Reference::parse("reference_id", reference).unwrap(),
    }
}

pub fn dec(s: &str) -> rust_decimal::Decimal {
    s.parse().unwrap()
}

/// Everything a refused request must not change: counts and sums of the ledger, and a hash
/// of every row staff or members can edit.
pub async fn fingerprint(pool: &sqlx::PgPool) -> Vec<i64> {
    sqlx::query_scalar::<_, i64>(
        "select unnest(array[
            (select count(*) from users),
            (select hashtext(coalesce(string_agg(concat_ws('|', id, email, display_name, role, password_hash, disabled_at), ',' order by id), '')) from users)::bigint,
            (select count(*) from member_profiles),
            (select hashtext(coalesce(string_agg(concat_ws('|', user_id, level_id, member_code), ',' order by user_id), '')) from member_profiles)::bigint,
            (select coalesce(sum(available_points), 0) from member_profiles)::bigint,
            (select coalesce(sum(total_spent * 100), 0) from member_profiles)::bigint,
            (select count(*) from point_transactions),
            (select coalesce(sum(reversed_points), 0) from point_transactions)::bigint,
            (select count(*) from point_transactions where refunded),
            (select count(*) from point_batches),
            (select coalesce(sum(available_points), 0) from point_batches)::bigint,
            (select count(*) from batch_deductions),
            (select count(*) from level_change_records),
            (select hashtext(coalesce(string_agg(l::text, ',' order by id), '')) from member_levels l)::bigint,
            (select count(*) from notifications),
            (select count(*) from notifications where read_at is null),
            (select count(*) from audit_log),
            (select count(*) from api_keys),
            (select count(*) from api_keys where revoked_at is not null)
         ])",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Sets a member's `total_spent` behind the services' back (the seed's test helper).
pub async fn set_total_spent(pool: &sqlx::PgPool, user_id: i64, spent: &str) {
    sqlx::query("update member_profiles set total_spent = $2::numeric where user_id = $1")
        .bind(user_id)
        .bind(spent)
        .execute(pool)
        .await
        .unwrap();
}
