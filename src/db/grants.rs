//! Bulk grants (migration 0019): the grant row and its batches.

use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct Grant {
    pub id: i64,
    pub idempotency_key: String,
    pub points: i64,
    pub reason: String,
    pub filter: Value,
    pub members_expected: i64,
    pub members_done: i64,
    pub cursor_user_id: Option<i64>,
    /// running or done
    pub status: String,
    pub actor: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

pub struct NewGrant<'a> {
    pub key: &'a str,
    pub points: i64,
    pub reason: &'a str,
    pub filter: &'a Value,
    pub members_expected: i64,
    pub actor_user_id: Option<i64>,
    pub now: OffsetDateTime,
}

/// The new grant's id; None when a grant with this key exists already.
pub async fn insert(conn: &mut PgConnection, g: &NewGrant<'_>) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "insert into bulk_grants
                (idempotency_key, points, reason, filter, members_expected, actor_user_id,
                 created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $7)
         on conflict (idempotency_key) do nothing
         returning id",
        g.key,
        g.points,
        g.reason,
        g.filter,
        g.members_expected,
        g.actor_user_id,
        g.now
    )
    .fetch_optional(conn)
    .await
}

/// The grant with this key.
pub async fn by_key(conn: &mut PgConnection, key: &str) -> sqlx::Result<Option<Grant>> {
    find(conn, None, Some(key)).await
}

pub async fn by_id(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<Grant>> {
    find(conn, Some(id), None).await
}

async fn find(
    conn: &mut PgConnection,
    id: Option<i64>,
    key: Option<&str>,
) -> sqlx::Result<Option<Grant>> {
    sqlx::query_as!(
        Grant,
        r#"select g.id, g.idempotency_key, g.points, g.reason, g.filter, g.members_expected,
                  g.members_done, g.cursor_user_id, g.status, u.email as "actor?", g.created_at,
                  g.updated_at, g.finished_at
             from bulk_grants g left join users u on u.id = g.actor_user_id
            where g.id = $1 or g.idempotency_key = $2"#,
        id,
        key
    )
    .fetch_optional(conn)
    .await
}

/// The newest grants first.
pub async fn recent(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Grant>> {
    sqlx::query_as!(
        Grant,
        r#"select g.id, g.idempotency_key, g.points, g.reason, g.filter, g.members_expected,
                  g.members_done, g.cursor_user_id, g.status, u.email as "actor?", g.created_at,
                  g.updated_at, g.finished_at
             from bulk_grants g left join users u on u.id = g.actor_user_id
            order by g.id desc
            limit $1"#,
        limit
    )
    .fetch_all(conn)
    .await
}

pub struct Batch<'a> {
    pub grant_id: i64,
    pub users: &'a [i64],
    /// the list's cursor after this batch
    pub cursor: i64,
    pub points: i64,
    pub reason: &'a str,
    pub actor_user_id: Option<i64>,
    pub now: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Grants one batch of members (see `bulk_grant_batch` in migration 0019); how many were
/// granted.
pub async fn grant_batch(conn: &mut PgConnection, b: &Batch<'_>) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        r#"select bulk_grant_batch($1, $2, $3, $4, $5, $6, $7, $8) as "n!""#,
        b.grant_id,
        b.users,
        b.cursor,
        b.points,
        b.reason,
        b.actor_user_id,
        b.now,
        b.expires_at
    )
    .fetch_one(conn)
    .await
}

pub async fn finish(conn: &mut PgConnection, id: i64, now: OffsetDateTime) -> sqlx::Result<()> {
    sqlx::query!(
        "update bulk_grants set status = 'done', finished_at = $2, updated_at = $2 where id = $1",
        id,
        now
    )
    .execute(conn)
    .await?;
    Ok(())
}
