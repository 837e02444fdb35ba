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

/// The role of a staff account that is not disabled; None for anyone else (checked on
/// every page a staff session opens, so a change to the account takes effect at once).
pub async fn active_staff_role(
    conn: &mut PgConnection,
    user_id: i64,
) -> sqlx::Result<Option<String>> {
    Ok(sqlx::query_scalar!(
        "select staff_role from users
          where id = $1 and role = 'staff' and disabled_at is null",
        user_id
    )
    .fetch_optional(conn)
    .await?
    .flatten())
}

/// Gives a staff account a role; false if there is no such staff account.
pub async fn set_staff_role(
    conn: &mut PgConnection,
    user_id: i64,
    role: &str,
    now: OffsetDateTime,
) -> sqlx::Result<bool> {
    Ok(sqlx::query!(
        "update users set staff_role = $2, updated_at = $3 where id = $1 and role = 'staff'",
        user_id,
        role,
        now
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

pub struct StaffAccount {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    /// admin, operator or viewer
    pub staff_role: String,
    pub created_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
}

pub async fn staff_accounts(conn: &mut PgConnection) -> sqlx::Result<Vec<StaffAccount>> {
    sqlx::query_as!(
        StaffAccount,
        r#"select id, email, display_name, staff_role as "staff_role!", created_at, disabled_at
             from users where role = 'staff' order by id"#
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

/// A new one-time token (its hash) for `user_id`, and the outbox message that carries its
/// link (marked read: the member asked for it, and the link is not shown in the portal).
#[allow(clippy::too_many_arguments)]
pub async fn insert_token(
    conn: &mut PgConnection,
    user_id: i64,
    token_hash: &str,
    purpose: &str,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
    message: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query!(
        "with n as (
             insert into notifications (user_id, kind, payload, created_at, read_at, next_attempt_at)
             values ($1, 'member.password_reset', $6, $4, $4, $4)
         )
         insert into account_tokens (user_id, token_hash, purpose, created_at, expires_at)
         values ($1, $2, $3, $4, $5)",
        user_id,
        token_hash,
        purpose,
        now,
        expires_at,
        message
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How many links were sent to the account since `since`.
pub async fn tokens_since(
    conn: &mut PgConnection,
    user_id: i64,
    since: OffsetDateTime,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select count(*) as "n!" from account_tokens where user_id = $1 and created_at >= $2"#,
        user_id,
        since
    )
    .fetch_one(conn)
    .await
}

pub struct TokenOwner {
    pub user_id: i64,
    pub email: String,
    pub purpose: String,
}

/// The account a usable token (not used, not expired, account open) belongs to, the token
/// locked for this transaction.
pub async fn take_token(
    conn: &mut PgConnection,
    token_hash: &str,
    now: OffsetDateTime,
) -> sqlx::Result<Option<TokenOwner>> {
    sqlx::query_as!(
        TokenOwner,
        "select u.id as user_id, u.email, t.purpose
           from account_tokens t join users u on u.id = t.user_id
          where t.token_hash = $1 and t.used_at is null and t.expires_at > $2
            and u.closed_at is null and u.disabled_at is null
            for update of t",
        token_hash,
        now
    )
    .fetch_optional(conn)
    .await
}

/// Records a browser session as the user's (made at a login).
pub async fn record_session(
    pool: &sqlx::PgPool,
    session_id: &str,
    user_id: i64,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into user_sessions (session_id, user_id) values ($1, $2)
         on conflict (session_id) do update set user_id = excluded.user_id",
        session_id,
        user_id
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The new password, every open token of the account spent and every session of the
/// account ended. Returns the ended sessions' ids (for the cache).
pub async fn set_password(
    conn: &mut PgConnection,
    user_id: i64,
    hash: &str,
    now: OffsetDateTime,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"with t as (
             update account_tokens set used_at = $3 where user_id = $1 and used_at is null
         ), s as (
             delete from tower_sessions.session
              where id in (select session_id from user_sessions where user_id = $1)
             returning id
         )
         update users set password_hash = $2, updated_at = $3 where id = $1
         returning coalesce((select array_agg(id) from s), '{}') as "ended!""#,
        user_id,
        hash,
        now
    )
    .fetch_optional(conn)
    .await
    .map(Option::unwrap_or_default)
}

/// An open account by its email (any case), for a password link.
pub async fn open_account(conn: &mut PgConnection, email: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "select id from users
          where lower(email) = lower($1) and closed_at is null and disabled_at is null",
        email
    )
    .fetch_optional(conn)
    .await
}

pub async fn password_hash(conn: &mut PgConnection, user_id: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "select password_hash from users where id = $1 and closed_at is null",
        user_id
    )
    .fetch_optional(conn)
    .await
}

/// Closes the account: the user row anonymised (email, name, password; the profile's
/// birthday, phone and external id), staff notes on it deleted, its tokens spent, its
/// sessions ended, its `member.closed` message queued. The ledger keeps its rows. Returns
/// the ended sessions' ids, or None when there was no open account to close.
pub async fn close_account(
    conn: &mut PgConnection,
    user_id: i64,
    now: OffsetDateTime,
) -> sqlx::Result<Option<Vec<String>>> {
    sqlx::query_scalar!(
        r#"with s as (
             delete from tower_sessions.session
              where id in (select session_id from user_sessions where user_id = $1)
             returning id
         ), t as (
             update account_tokens set used_at = $2 where user_id = $1 and used_at is null
         ), p as (
             update member_profiles
                set birthday = null, phone = null, external_id = null, updated_at = $2
              where user_id = $1
         ), d as (
             delete from member_notes where user_id = $1
         ), n as (
             insert into notifications (user_id, kind, payload, created_at, read_at, next_attempt_at)
             values ($1, 'member.closed', jsonb_build_object('user_id', $1::bigint), $2, $2, $2)
         )
         update users
            set email = 'closed-' || id || '@closed.invalid', display_name = 'closed',
                password_hash = '!', closed_at = $2, updated_at = $2
          where id = $1 and closed_at is null
         returning coalesce((select array_agg(id) from s), '{}') as "ended!""#,
        user_id,
        now
    )
    .fetch_optional(conn)
    .await
}
