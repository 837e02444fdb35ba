//! What logging in reads and writes: credentials and login_failures.

use sqlx::PgConnection;
use time::OffsetDateTime;

pub struct Credentials {
    pub id: i64,
    pub role: String,
    pub display_name: String,
    pub password_hash: String,
}

pub async fn credentials(
    conn: &mut PgConnection,
    email: &str,
) -> sqlx::Result<Option<Credentials>> {
    sqlx::query_as!(
        Credentials,
        "select id, role, display_name, password_hash from users where lower(email) = lower($1)",
        email
    )
    .fetch_optional(conn)
    .await
}

/// (window start, failures) for this email key.
pub async fn login_failures(
    conn: &mut PgConnection,
    key: &str,
) -> sqlx::Result<Option<(OffsetDateTime, i32)>> {
    Ok(sqlx::query!(
        "select window_start, failures from login_failures where email_key = $1",
        key
    )
    .fetch_optional(conn)
    .await?
    .map(|r| (r.window_start, r.failures)))
}

/// Counts a failure; a window that has ended starts again.
pub async fn record_login_failure(
    conn: &mut PgConnection,
    key: &str,
    now: OffsetDateTime,
    window_ends_before: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into login_failures (email_key, window_start, failures) values ($1, $2, 1)
         on conflict (email_key) do update
            set failures = case when login_failures.window_start > $3
                                then login_failures.failures + 1 else 1 end,
                window_start = case when login_failures.window_start > $3
                                    then login_failures.window_start else $2 end",
        key,
        now,
        window_ends_before
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn clear_login_failures(conn: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query!("delete from login_failures where email_key = $1", key)
        .execute(conn)
        .await?;
    Ok(())
}
