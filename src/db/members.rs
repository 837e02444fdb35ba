//! users, member_profiles, member_code_counters, level_change_records, notifications,
//! audit_log, api_keys.

use serde_json::Value;
use sqlx::PgConnection;
use time::{Date, OffsetDateTime};

use crate::domain::MemberRecord;

/// Takes the next member-code number of the business day. The counter row stays locked
/// until the caller's transaction ends, so numbers are gap-free: a sign-up that rolls back
/// gives its number back.
pub async fn next_member_seq(conn: &mut PgConnection, day: Date) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        "insert into member_code_counters (business_date, last_seq) values ($1, 1)
         on conflict (business_date)
         do update set last_seq = member_code_counters.last_seq + 1
         returning last_seq",
        day
    )
    .fetch_one(conn)
    .await
}

pub async fn business_date(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    tz: &str,
) -> sqlx::Result<Date> {
    sqlx::query_scalar!(
        r#"select ($1::timestamptz at time zone $2)::date as "day!""#,
        now,
        tz
    )
    .fetch_one(conn)
    .await
}

pub async fn insert_user(
    conn: &mut PgConnection,
    email: &str,
    password_hash: &str,
    role: &str,
    display_name: &str,
    now: OffsetDateTime,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "insert into users (email, password_hash, role, display_name, created_at, updated_at,
                            staff_role)
         values ($1, $2, $3, $4, $5, $5, case when $3 = 'staff' then 'admin' end)
         returning id",
        email,
        password_hash,
        role,
        display_name,
        now
    )
    .fetch_one(conn)
    .await
}

pub async fn entry_level_id(conn: &mut PgConnection) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        "select id from member_levels where is_active and min_points = 0
          order by level_order limit 1"
    )
    .fetch_one(conn)
    .await
}

pub async fn insert_profile(
    conn: &mut PgConnection,
    user_id: i64,
    member_code: &str,
    level_id: i32,
    phone: Option<&str>,
    external_id: Option<&str>,
    now: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into member_profiles (user_id, member_code, level_id, phone, external_id,
                                      created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $6)",
        user_id,
        member_code,
        level_id,
        phone,
        external_id,
        now
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The member with this external id (the integrator's customer id).
pub async fn by_external_id(
    conn: &mut PgConnection,
    external_id: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "select user_id from member_profiles where external_id = $1",
        external_id
    )
    .fetch_optional(conn)
    .await
}

pub async fn member_record(
    conn: &mut PgConnection,
    user_id: i64,
) -> sqlx::Result<Option<MemberRecord>> {
    let record = sqlx::query_as!(
        MemberRecord,
        "select p.user_id, p.member_code, u.email, u.display_name, u.role, p.level_id,
                p.total_spent, p.last_level_change_at, p.created_at, p.birthday, p.phone,
                p.external_id, p.total_spent as qualifying_spent
           from member_profiles p
           join users u on u.id = p.user_id
          where p.user_id = $1",
        user_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(record.map(|r| MemberRecord {
        total_spent: crate::domain::money(r.total_spent),
        qualifying_spent: crate::domain::money(r.qualifying_spent),
        ..r
    }))
}

pub struct LevelChange<'a> {
    pub user_id: i64,
    pub old_level_id: i32,
    pub new_level_id: i32,
    /// `auto_upgrade` or `manual`
    pub reason: &'a str,
    pub note: Option<&'a str>,
    pub actor_user_id: Option<i64>,
    pub now: OffsetDateTime,
    /// the new level's retention end and review (see `db::tiers::retention`)
    pub kept: Option<(OffsetDateTime, OffsetDateTime)>,
    /// set by hand by staff
    pub manual: bool,
}

/// Sets a member's level with its history row, in the caller's transaction.
pub async fn change_level(conn: &mut PgConnection, c: &LevelChange<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "with p as (
             update member_profiles
                set level_id = $3, last_level_change_at = $7, upgrade_due_at = null,
                    level_kept_until = $8, level_review_at = $9, level_manual = $10,
                    downgrade_notice_for = null, updated_at = $7
              where user_id = $1
         )
         insert into level_change_records
                (user_id, old_level_id, new_level_id, change_reason, note, actor_user_id, change_date)
         values ($1, $2, $3, $4, $5, $6, $7)",
        c.user_id,
        c.old_level_id,
        c.new_level_id,
        c.reason,
        c.note,
        c.actor_user_id,
        c.now,
        c.kept.map(|k| k.0),
        c.kept.map(|k| k.1),
        c.manual
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records when a deferred upgrade may be applied (or clears it with `None`).
pub async fn set_upgrade_due(
    conn: &mut PgConnection,
    user_id: i64,
    due: Option<OffsetDateTime>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update member_profiles set upgrade_due_at = $2 where user_id = $1",
        user_id,
        due
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn due_upgrades(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        "select user_id from member_profiles
          where upgrade_due_at <= $1
          order by upgrade_due_at
          limit $2",
        now,
        limit
    )
    .fetch_all(conn)
    .await
}

pub async fn upgrade_due_at(
    conn: &mut PgConnection,
    user_id: i64,
) -> sqlx::Result<Option<OffsetDateTime>> {
    Ok(sqlx::query_scalar!(
        "select upgrade_due_at from member_profiles where user_id = $1",
        user_id
    )
    .fetch_optional(conn)
    .await?
    .flatten())
}

pub async fn notify(
    conn: &mut PgConnection,
    user_id: i64,
    kind: &str,
    payload: &Value,
    now: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into notifications (user_id, kind, payload, created_at, next_attempt_at)
         values ($1, $2, $3, $4, $4)",
        user_id,
        kind,
        payload,
        now
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn audit(
    conn: &mut PgConnection,
    actor_user_id: Option<i64>,
    action: &str,
    target_type: &str,
    target_id: &str,
    details: &Value,
    now: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into audit_log (actor_user_id, action, target_type, target_id, details, created_at)
         values ($1, $2, $3, $4, $5, $6)",
        actor_user_id,
        action,
        target_type,
        target_id,
        details,
        now
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Sends one reminder per batch that expires within the window and has had none, as one
/// notification per member listing the points and dates. Returns the batches covered
/// and the members notified.
pub async fn send_expiry_reminders(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    until: OffsetDateTime,
    limit: i64,
) -> sqlx::Result<(i64, Vec<i64>)> {
    sqlx::query!(
        r#"with due as (
               update point_batches
                  set reminder_sent_at = $1
                where id in (select id from point_batches
                              where available_points > 0 and reminder_sent_at is null
                                and expires_at > $1 and expires_at <= $2
                              order by expires_at
                              limit $3
                              for update skip locked)
               returning user_id, available_points, expires_at
           ), n as (
               insert into notifications (user_id, kind, payload, created_at, next_attempt_at)
               select user_id, 'points_expiry_reminder',
                      jsonb_build_object(
                          'points', sum(available_points),
                          'batches', jsonb_agg(jsonb_build_object(
                              'points', available_points, 'expires_at', expires_at)
                              order by expires_at)),
                      $1, $1
                 from due
                group by user_id
           )
           select (select count(*) from due) as "batches!",
                  (select coalesce(array_agg(distinct user_id), '{}') from due) as "users!""#,
        now,
        until,
        limit
    )
    .fetch_one(conn)
    .await
    .map(|r| (r.batches, r.users))
}

pub async fn insert_api_key(
    conn: &mut PgConnection,
    name: &str,
    key_hash: &str,
    key_prefix: &str,
    scopes: &[String],
    created_by: Option<i64>,
    now: OffsetDateTime,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "insert into api_keys (name, key_hash, key_prefix, created_by, created_at, scopes)
         values ($1, $2, $3, $4, $5, $6) returning id",
        name,
        key_hash,
        key_prefix,
        created_by,
        now,
        scopes
    )
    .fetch_one(conn)
    .await
}

/// The key's id when it exists and is not revoked. `last_used_at` is refreshed at most
/// once a minute, so checking a key is a read, not a write (and a commit) per request.
pub async fn use_api_key(
    conn: &mut PgConnection,
    key_hash: &str,
    now: OffsetDateTime,
) -> sqlx::Result<Option<(i64, Vec<String>)>> {
    let row = sqlx::query!(
        r#"with k as (
               select id, last_used_at, scopes from api_keys
                where key_hash = $1 and revoked_at is null
           ), touched as (
               update api_keys set last_used_at = $2
                 from k
                where api_keys.id = k.id
                  and (k.last_used_at is null or k.last_used_at < $2::timestamptz - interval '1 minute')
           )
           select id as "id!", scopes as "scopes!" from k"#,
        key_hash,
        now
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.id, r.scopes)))
}

/// One change of a member's level, with the levels' names.
#[derive(Debug, Clone)]
pub struct LevelHistoryRow {
    pub old_level: Option<String>,
    pub new_level: String,
    /// auto_upgrade, manual, recalculate or review
    pub reason: String,
    pub note: Option<String>,
    pub change_date: OffsetDateTime,
}

/// The member's newest level changes first.
pub async fn level_history(
    conn: &mut PgConnection,
    user_id: i64,
    limit: i64,
) -> sqlx::Result<Vec<LevelHistoryRow>> {
    sqlx::query_as!(
        LevelHistoryRow,
        r#"select o.level_name as "old_level?", n.level_name as new_level,
                  r.change_reason as reason, r.note, r.change_date
             from level_change_records r
             join member_levels n on n.id = r.new_level_id
             left join member_levels o on o.id = r.old_level_id
            where r.user_id = $1
            order by r.id desc
            limit $2"#,
        user_id,
        limit
    )
    .fetch_all(conn)
    .await
}

/// A staff note on a member, with its author's email.
#[derive(Debug, Clone)]
pub struct MemberNote {
    pub id: i64,
    pub author: Option<String>,
    pub body: String,
    pub created_at: OffsetDateTime,
}

pub async fn add_note(
    conn: &mut PgConnection,
    user_id: i64,
    author: Option<i64>,
    body: &str,
    now: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into member_notes (user_id, author_user_id, body, created_at)
         values ($1, $2, $3, $4)",
        user_id,
        author,
        body,
        now
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The member's newest notes first.
pub async fn notes(
    conn: &mut PgConnection,
    user_id: i64,
    limit: i64,
) -> sqlx::Result<Vec<MemberNote>> {
    sqlx::query_as!(
        MemberNote,
        r#"select n.id, u.email as "author?", n.body, n.created_at
             from member_notes n left join users u on u.id = n.author_user_id
            where n.user_id = $1
            order by n.id desc
            limit $2"#,
        user_id,
        limit
    )
    .fetch_all(conn)
    .await
}
