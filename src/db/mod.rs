//! Data access: one file per table family. Functions take a connection or transaction
//! from the caller, which owns the transaction boundaries (the services).
//!
//! Some reads and writes are SQL functions; each one's live body is in the last migration
//! that (re)creates it: `lock_member`, `expire_member_batches` (0002); `consume_fifo` (0006);
//! `member_timezone`, `record_return_spend` (the trigger's), `roll_spend_month`,
//! `qualifying_months`, `window_spend`, `retention_end`, `review_levels`,
//! `recalculation_candidates` (0018); `bulk_grant_batch` (0019); `api_key_check` (0021);
//! `import_members_check`, `import_members_finish` (0022); `earn_points_many` (0029);
//! `earn_points_for_key` and the tables' CHECK guards `guard_failed`,
//! `point_transaction_types`, `point_transactions_guard`, `member_profiles_guard`,
//! `point_batches_guard` (0030). A test holds this list to the migrations.

pub mod accounts;
pub mod admin;
pub mod campaigns;
pub mod finance;
pub mod grants;
pub mod ledger;
pub mod levels;
pub mod members;
pub mod notifications;
pub mod points;
pub mod rewards;
pub mod tiers;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::config::{Config, redact_url};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connection options with the query timeout of `DB_QUERY_TIMEOUT_SECS` and the business
/// time zone.
pub fn connect_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    let timeout_ms = config.db_query_timeout.as_millis().to_string();
    Ok(PgConnectOptions::from_str(&config.database_url)
        .with_context(|| {
            format!(
                "DATABASE_URL {} is not a valid PostgreSQL URL",
                redact_url(&config.database_url)
            )
        })?
        // member.timezone: the business month of the spend counters (migration 0018)
        .options([
            ("statement_timeout", timeout_ms.as_str()),
            ("member.timezone", config.member_timezone.as_str()),
        ])
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// How long a request waits for a connection (or for PostgreSQL to accept one) before it
/// fails with 503 SERVICE_UNAVAILABLE: long enough to ride out a restart, short enough that
/// a client is not left hanging while the database is down.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The pool of the application. A pooled connection is only ever used by a task that is
/// not cancelled mid-transaction (see `service::run_to_completion`).
pub async fn connect(config: &Config, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = connect_options(config)?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        // No ping before each checkout: it is a round trip per request. A connection
        // broken under the pool (PostgreSQL restarted) fails its next query, which the
        // caller sees as 503 SERVICE_UNAVAILABLE, and is then dropped from the pool.
        .test_before_acquire(false)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {}",
                redact_url(&config.database_url)
            )
        })
}

/// Creates the database named in `DATABASE_URL` when it does not exist yet.
pub async fn create_database_if_missing(config: &Config) -> anyhow::Result<()> {
    let options = connect_options(config)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let admin = options.clone().database("postgres");
    let mut conn = PgConnection::connect_with(&admin).await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {} to create database {name}",
            redact_url(&config.database_url)
        )
    })?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let sql = format!("create database \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&sql).execute(&mut conn).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another process created it at the same moment.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create database {name}")),
        }
    }
    conn.close().await.ok();
    Ok(())
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")
}

/// Checks that PostgreSQL knows `MEMBER_TIMEZONE`.
pub async fn check_timezone(pool: &PgPool, tz: &str) -> anyhow::Result<()> {
    let known: bool = sqlx::query_scalar!(
        r#"select exists (select 1 from pg_timezone_names where name = $1) as "known!""#,
        tz
    )
    .fetch_one(pool)
    .await?;
    anyhow::ensure!(
        known,
        "invalid MEMBER_TIMEZONE={tz:?}: expected an IANA time zone name such as Asia/Shanghai or UTC"
    );
    Ok(())
}

/// Whether PostgreSQL answers.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query_scalar!(r#"select 1 as "one!""#)
        .fetch_one(pool)
        .await
        .is_ok()
}

/// The current UTC offset of a time zone, from PostgreSQL's zone data.
pub async fn utc_offset(pool: &PgPool, tz: &str) -> anyhow::Result<time::UtcOffset> {
    let secs: i32 = sqlx::query_scalar!(
        r#"select extract(epoch from (now() at time zone $1) - (now() at time zone 'UTC'))::int as "secs!""#,
        tz
    )
    .fetch_one(pool)
    .await?;
    Ok(time::UtcOffset::from_whole_seconds(secs)?)
}

/// A session-level advisory lock on this connection, if free.
pub async fn try_advisory_lock(conn: &mut PgConnection, key: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"select pg_try_advisory_lock($1) as "locked!""#, key)
        .fetch_one(conn)
        .await
}

pub async fn advisory_unlock(conn: &mut PgConnection, key: i64) -> sqlx::Result<()> {
    sqlx::query_scalar!(r#"select pg_advisory_unlock($1) as "unlocked!""#, key)
        .fetch_one(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// The module comment names, for every SQL function, the migration with its live body
    /// (none for a function a later migration drops).
    #[test]
    fn the_module_comment_says_where_every_sql_function_body_lives() {
        let mut live = BTreeMap::new();
        let mut files: Vec<_> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .expect("migrations/")
                .map(|e| e.expect("entry").path())
                .collect();
        files.sort();
        for path in files {
            let number = path.file_name().and_then(|n| n.to_str()).expect("name")[..4].to_string();
            let sql = std::fs::read_to_string(&path)
                .expect("migration")
                .to_lowercase();
            for (at, _) in sql.match_indices("function ") {
                let before = sql[..at].trim_end();
                let name: String = sql[at + "function ".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if before.ends_with("create") || before.ends_with("or replace") {
                    live.insert(name, number.clone());
                } else if before.ends_with("drop") {
                    live.remove(&name);
                }
            }
        }
        let doc: String = include_str!("mod.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut said = BTreeMap::new();
        for group in doc.split(';') {
            // the group's migration: its last "(NNNN)"
            let Some(number) = group
                .rsplit('(')
                .map(|n| n.chars().take(4).collect::<String>())
                .find(|n| n.len() == 4 && n.chars().all(|c| c.is_ascii_digit()))
            else {
                continue;
            };
            for name in group.split('`').skip(1).step_by(2) {
                said.insert(name.to_string(), number.clone());
            }
        }
        assert!(live.len() > 10, "read the migrations: {live:?}");
        assert_eq!(said, live);
    }
}
