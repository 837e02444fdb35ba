//! notifications (the outbox): as members read them, and as they are delivered.

use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;

pub struct NotificationRow {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    pub created_at: OffsetDateTime,
    pub read_at: Option<OffsetDateTime>,
}

/// The newest notifications of a member; the range and order keep the planner on
/// `notifications_user_idx` (see `points::history`).
pub async fn list(
    conn: &mut PgConnection,
    user_id: i64,
    limit: i64,
) -> sqlx::Result<Vec<NotificationRow>> {
    sqlx::query_as!(
        NotificationRow,
        "select id, kind, payload, created_at, read_at from notifications
          where user_id >= $1 and user_id <= $1 order by user_id, id desc limit $2",
        user_id,
        limit
    )
    .fetch_all(conn)
    .await
}

pub async fn unread_count(conn: &mut PgConnection, user_id: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select count(*) as "n!" from notifications where user_id = $1 and read_at is null"#,
        user_id
    )
    .fetch_one(conn)
    .await
}

/// Marks one (or, with `None`, every) unread notification of the user as read.
pub async fn mark_read(
    conn: &mut PgConnection,
    user_id: i64,
    id: Option<i64>,
    now: OffsetDateTime,
) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "update notifications set read_at = $3
          where user_id = $1 and read_at is null and ($2::bigint is null or id = $2)",
        user_id,
        id,
        now
    )
    .execute(conn)
    .await?
    .rows_affected())
}

pub struct OutboxRow {
    pub id: i64,
    pub user_id: i64,
    pub kind: String,
    pub payload: Value,
    pub created_at: OffsetDateTime,
    pub attempts: i32,
}

/// Claims undelivered notifications that are due, leasing them until `lease_until` (a
/// delivery that dies mid-way is retried after the lease). Rows claimed by another
/// instance are skipped.
pub async fn claim_due(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: i64,
) -> sqlx::Result<Vec<OutboxRow>> {
    sqlx::query_as!(
        OutboxRow,
        "update notifications set next_attempt_at = $2
          where id in (select id from notifications
                        where delivered_at is null and next_attempt_at <= $1
                        order by next_attempt_at, id
                        limit $3
                        for update skip locked)
          returning id, user_id, kind, payload, created_at, attempts",
        now,
        lease_until,
        limit
    )
    .fetch_all(conn)
    .await
}

pub async fn mark_delivered(
    conn: &mut PgConnection,
    id: i64,
    now: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update notifications set delivered_at = $2, attempts = attempts + 1 where id = $1",
        id,
        now
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn schedule_retry(
    conn: &mut PgConnection,
    id: i64,
    next: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update notifications set attempts = attempts + 1, next_attempt_at = $2 where id = $1",
        id,
        next
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub struct EmailRow {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub payload: Value,
}

/// Password links not emailed yet (the job runs in one instance at a time), with where to
/// send them; an account closed meanwhile gets none.
pub async fn emails_due(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<EmailRow>> {
    sqlx::query_as!(
        EmailRow,
        "select n.id, u.email, u.display_name, n.payload from notifications n
           join users u on u.id = n.user_id
          where n.kind = 'member.password_reset' and n.emailed_at is null
            and n.email_attempts < 10 and u.closed_at is null
          order by n.id limit $1",
        limit
    )
    .fetch_all(conn)
    .await
}

/// Records an email sent (`sent`), or one more failed attempt.
pub async fn mark_emailed(
    conn: &mut PgConnection,
    id: i64,
    sent: bool,
    now: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update notifications
            set emailed_at = case when $2 then $3 else emailed_at end,
                email_attempts = email_attempts + 1
          where id = $1",
        id,
        sent,
        now
    )
    .execute(conn)
    .await?;
    Ok(())
}
