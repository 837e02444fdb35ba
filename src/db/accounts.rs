//! What logging in reads and writes: credentials and the login attempt counts.

use sqlx::PgConnection;
use time::OffsetDateTime;

pub struct Credentials {
    pub id: i64,
    pub role: String,
    pub display_name: String,
    pub password_hash: String,
    pub disabled: bool,
}

pub async fn credentials(
    conn: &mut PgConnection,
    email: &str,
) -> sqlx::Result<Option<Credentials>> {
    sqlx::query_as!(
        Credentials,
        r#"select id, role, display_name, password_hash, disabled_at is not null as "disabled!"
             from users where lower(email) = lower($1)"#,
        email
    )
    .fetch_optional(conn)
    .await
}

/// Counts an attempt under each key (a window that has ended starts again) and returns,
/// per key in the order given, when its window started and how many attempts it holds now,
/// this one included. Concurrent attempts under one key are counted one after another.
pub async fn reserve_login_attempt(
    conn: &mut PgConnection,
    keys: &[String],
    now: OffsetDateTime,
    window_ends_before: OffsetDateTime,
) -> sqlx::Result<Vec<(OffsetDateTime, i32)>> {
    let rows = sqlx::query!(
        r#"insert into login_failures (throttle_key, window_start, attempts)
           select k, $2, 1 from unnest($1::text[]) k
           on conflict (throttle_key) do update
              set attempts = case when login_failures.window_start > $3
                                  then login_failures.attempts + 1 else 1 end,
                  window_start = case when login_failures.window_start > $3
                                      then login_failures.window_start else $2 end
           returning throttle_key as "key!", window_start as "start!", attempts as "attempts!""#,
        keys,
        now,
        window_ends_before
    )
    .fetch_all(conn)
    .await?;
    Ok(keys
        .iter()
        .map(|k| {
            rows.iter()
                .find(|r| &r.key == k)
                .map_or((now, 1), |r| (r.start, r.attempts))
        })
        .collect())
}

/// After a correct password: the account's count for this client is cleared and the
/// attempt reserved under the client's own key is given back.
pub async fn login_succeeded(
    conn: &mut PgConnection,
    account_key: &str,
    client_key: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "with cleared as (delete from login_failures where throttle_key = $1)
         update login_failures set attempts = greatest(attempts - 1, 0) where throttle_key = $2",
        account_key,
        client_key
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes counts whose window ended before `before` (hourly, with the session sweep).
pub async fn purge_login_attempts(
    conn: &mut PgConnection,
    before: OffsetDateTime,
) -> sqlx::Result<u64> {
    Ok(
        sqlx::query!("delete from login_failures where window_start < $1", before)
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

/// Deletes sessions past their expiry (they are never honoured anyway).
pub async fn delete_expired_sessions(
    conn: &mut PgConnection,
    now: OffsetDateTime,
) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "delete from tower_sessions.session where expiry_date < $1",
        now
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// Whether the user is a staff account that is not disabled (checked on every page a
/// staff session opens, so a change to the account takes effect at once).
pub async fn is_active_staff(conn: &mut PgConnection, user_id: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from users
                           where id = $1 and role = 'staff' and disabled_at is null) as "ok!""#,
        user_id
    )
    .fetch_one(conn)
    .await
}

pub struct StaffAccount {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub created_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
}

pub async fn staff_accounts(conn: &mut PgConnection) -> sqlx::Result<Vec<StaffAccount>> {
    sqlx::query_as!(
        StaffAccount,
        "select id, email, display_name, created_at, disabled_at
           from users where role = 'staff' order by id"
    )
    .fetch_all(conn)
    .await
}

/// Disables or enables a staff account; false if there is no such staff account.
pub async fn set_staff_disabled(
    conn: &mut PgConnection,
    user_id: i64,
    disabled: bool,
    now: OffsetDateTime,
) -> sqlx::Result<bool> {
    Ok(sqlx::query!(
        "update users
            set disabled_at = case when $2 then coalesce(disabled_at, $3) end, updated_at = $3
          where id = $1 and role = 'staff'",
        user_id,
        disabled,
        now
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}
