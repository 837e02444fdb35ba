//! Queries behind the staff pages.

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use time::{Date, OffsetDateTime};

use super::tiers::Rules;

pub async fn members_per_level(conn: &mut PgConnection) -> sqlx::Result<Vec<(i32, i64)>> {
    Ok(sqlx::query!(
        r#"select l.id, count(p.user_id) as "members!"
             from member_levels l left join member_profiles p on p.level_id = l.id
            group by l.id order by l.level_order"#
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| (r.id, r.members))
    .collect())
}

pub struct DayRow {
    pub day: Date,
    pub earned: i64,
    pub used: i64,
    pub expired: i64,
}

/// Points earned, used and expired per business day since `since`.
pub async fn daily_points(
    conn: &mut PgConnection,
    since: OffsetDateTime,
    tz: &str,
) -> sqlx::Result<Vec<DayRow>> {
    sqlx::query_as!(
        DayRow,
        r#"select (created_at at time zone $2)::date as "day!",
                  coalesce(sum(points_change) filter (where transaction_type = 'earn'), 0)::bigint as "earned!",
                  coalesce(-sum(points_change) filter (where transaction_type = 'use'), 0)::bigint as "used!",
                  coalesce(-sum(points_change) filter (where transaction_type = 'expire'), 0)::bigint as "expired!"
             from point_transactions
            where created_at >= $1
            group by 1 order by 1"#,
        since,
        tz
    )
    .fetch_all(conn)
    .await
}

pub struct MemberRow {
    pub user_id: i64,
    pub member_code: String,
    pub email: String,
    pub display_name: String,
    pub level_id: i32,
    pub available_points: i64,
    pub phone: Option<String>,
    pub external_id: Option<String>,
    pub created_at: OffsetDateTime,
}

/// What staff narrow the member list by; every part optional. Kept with a bulk grant.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MemberFilter {
    /// exact member code, external id or phone, or part of the email or name
    pub q: Option<String>,
    pub level_id: Option<i32>,
    pub min_points: Option<i64>,
    pub max_points: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub joined_from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub joined_before: Option<OffsetDateTime>,
}

/// How many members the filter finds (the member list's conditions, counted).
pub async fn count_members(conn: &mut PgConnection, f: &MemberFilter) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select count(*) as "n!"
             from member_profiles p join users u on u.id = p.user_id
            where u.closed_at is null
              and ($1::text is null
                   or p.member_code = upper($1) or p.external_id = $1 or p.phone = $1
                   or lower(u.email) like '%' || replace(replace(replace(lower($1), '\', '\\'), '%', '\%'), '_', '\_') || '%'
                   or lower(u.display_name) like '%' || replace(replace(replace(lower($1), '\', '\\'), '%', '\%'), '_', '\_') || '%')
              and ($2::integer is null or p.level_id = $2)
              and ($3::bigint is null or p.available_points >= $3)
              and ($4::bigint is null or p.available_points <= $4)
              and ($5::timestamptz is null or p.created_at >= $5)
              and ($6::timestamptz is null or p.created_at < $6)"#,
        f.q,
        f.level_id,
        f.min_points,
        f.max_points,
        f.joined_from,
        f.joined_before,
    )
    .fetch_one(conn)
    .await
}

/// A page of the member list, newest members first, after `after` (keyset on user_id).
/// Points are the stored balance (the filter), shown without points past their expiry.
pub async fn list_members(
    conn: &mut PgConnection,
    f: &MemberFilter,
    after: Option<i64>,
    limit: i64,
    now: OffsetDateTime,
) -> sqlx::Result<Vec<MemberRow>> {
    sqlx::query_as!(
        MemberRow,
        r#"select p.user_id, p.member_code, u.email, u.display_name, p.level_id,
                  p.available_points - (select coalesce(sum(b.available_points), 0)::bigint
                                          from point_batches b
                                         where b.user_id = p.user_id and b.available_points > 0
                                           and b.expires_at <= $9) as "available_points!",
                  p.phone, p.external_id, p.created_at
             from member_profiles p join users u on u.id = p.user_id
            where u.closed_at is null
              and ($1::text is null
                   or p.member_code = upper($1) or p.external_id = $1 or p.phone = $1
                   or lower(u.email) like '%' || replace(replace(replace(lower($1), '\', '\\'), '%', '\%'), '_', '\_') || '%'
                   or lower(u.display_name) like '%' || replace(replace(replace(lower($1), '\', '\\'), '%', '\%'), '_', '\_') || '%')
              and ($2::integer is null or p.level_id = $2)
              and ($3::bigint is null or p.available_points >= $3)
              and ($4::bigint is null or p.available_points <= $4)
              and ($5::timestamptz is null or p.created_at >= $5)
              and ($6::timestamptz is null or p.created_at < $6)
              and ($7::bigint is null or p.user_id < $7)
            order by p.user_id desc
            limit $8"#,
        f.q,
        f.level_id,
        f.min_points,
        f.max_points,
        f.joined_from,
        f.joined_before,
        after,
        limit,
        now
    )
    .fetch_all(conn)
    .await
}

pub struct AuditRow {
    pub id: i64,
    pub actor: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub details: Value,
    pub created_at: OffsetDateTime,
}

/// Which audit entries to show: each filter that is set must match.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// the acting staff user's email (any case)
    pub actor: Option<String>,
    pub action: Option<String>,
    /// the member the entry is about (entries whose target is that member)
    pub member: Option<i64>,
}

pub async fn audit_log(
    conn: &mut PgConnection,
    before: Option<i64>,
    limit: i64,
    filter: &AuditFilter,
) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as!(
        AuditRow,
        r#"select a.id, u.email as "actor?", a.action, a.target_type, a.target_id, a.details, a.created_at
             from audit_log a left join users u on u.id = a.actor_user_id
            where a.id < $1
              and ($3::text is null or lower(u.email) = lower($3))
              and ($4::text is null or a.action = $4)
              and ($5::text is null or (a.target_type = 'member' and a.target_id = $5))
            order by a.id desc
            limit $2"#,
        before.unwrap_or(i64::MAX),
        limit,
        filter.actor.as_deref(),
        filter.action.as_deref(),
        filter.member.map(|m| m.to_string()),
    )
    .fetch_all(conn)
    .await
}

pub struct ApiKeyRow {
    pub id: i64,
    pub name: String,
    pub key_prefix: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub scopes: Vec<String>,
}

pub async fn api_keys(conn: &mut PgConnection) -> sqlx::Result<Vec<ApiKeyRow>> {
    sqlx::query_as!(
        ApiKeyRow,
        "select id, name, key_prefix, created_at, last_used_at, revoked_at, scopes
           from api_keys order by id desc"
    )
    .fetch_all(conn)
    .await
}

pub async fn revoke_api_key(
    conn: &mut PgConnection,
    id: i64,
    now: OffsetDateTime,
) -> sqlx::Result<bool> {
    Ok(sqlx::query!(
        "update api_keys set revoked_at = $2 where id = $1 and revoked_at is null",
        id,
        now
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// How many members would move from which level to which: each member belongs on the
/// highest active level whose threshold their spend reaches.
/// Which members a recalculation moves (see `recalculation_candidates` in migration 0012).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecalcOptions {
    /// also move members down to the level their spend reaches
    pub move_down: bool,
    /// also move members whose level staff set by hand
    pub include_manual: bool,
}

/// Members who would move, by (from, to, up, manual, changed within the cooldown).
pub struct CandidateGroup {
    pub from_id: i32,
    pub to_id: i32,
    pub up: bool,
    pub manual: bool,
    pub recent: bool,
    pub members: i64,
}

pub async fn recalculation_groups(
    conn: &mut PgConnection,
    recent_after: OffsetDateTime,
    now: OffsetDateTime,
    rules: Rules<'_>,
) -> sqlx::Result<Vec<CandidateGroup>> {
    let (window, months) = rules.tiers.window_sql();
    sqlx::query_as!(
        CandidateGroup,
        r#"select from_id as "from_id!", to_id as "to_id!", up as "up!", manual as "manual!",
                  recent as "recent!", count(*) as "members!"
             from recalculation_candidates($1, $2, $3, $4, $5)
            group by 1, 2, 3, 4, 5 order by 1, 2, 3, 4, 5"#,
        recent_after,
        now,
        window,
        months,
        rules.tz
    )
    .fetch_all(conn)
    .await
}

/// One member a recalculation would move.
pub struct CandidateRow {
    pub user_id: i64,
    pub member_code: String,
    pub total_spent: Decimal,
    pub from_id: i32,
    pub to_id: i32,
    pub up: bool,
}

/// The first `limit` members this recalculation would move.
pub async fn recalculation_sample(
    conn: &mut PgConnection,
    recent_after: OffsetDateTime,
    now: OffsetDateTime,
    rules: Rules<'_>,
    options: RecalcOptions,
    limit: i64,
) -> sqlx::Result<Vec<CandidateRow>> {
    let (window, months) = rules.tiers.window_sql();
    sqlx::query_as!(
        CandidateRow,
        r#"select user_id as "user_id!", member_code as "member_code!",
                  total_spent as "total_spent!", from_id as "from_id!", to_id as "to_id!",
                  up as "up!"
             from recalculation_candidates($1, $5, $6, $7, $8)
            where (up or $2) and (not manual or $3) and not recent
            order by user_id
            limit $4"#,
        recent_after,
        options.move_down,
        options.include_manual,
        limit,
        now,
        window,
        months,
        rules.tz
    )
    .fetch_all(conn)
    .await
}

/// Moves up to `limit` members onto their level (rows locked, skipping members busy in
/// another transaction, which the next batch picks up), each with a history row that says
/// why and a notification. Returns the members moved.
pub async fn recalculate_batch(
    conn: &mut PgConnection,
    limit: i64,
    options: RecalcOptions,
    recent_after: OffsetDateTime,
    actor: Option<i64>,
    now: OffsetDateTime,
    rules: Rules<'_>,
) -> sqlx::Result<Vec<i64>> {
    let (window, months) = rules.tiers.window_sql();
    let (retention, retention_months) = rules.tiers.retention_sql();
    let grace = rules.tiers.grace.whole_seconds() as f64;
    sqlx::query_scalar!(
        r#"with todo as (
               select c.user_id, c.from_id, c.to_id, c.up, c.total_spent
                 from recalculation_candidates($4, $3, $7, $8, $9) c
                where (c.up or $5) and (not c.manual or $6) and not c.recent
                order by c.user_id
                limit $1
           ), locked as (
               -- still on the level the plan saw (an earn may have moved it meanwhile)
               select todo.* from member_profiles p join todo on todo.user_id = p.user_id
                where p.level_id = todo.from_id
                for update of p skip locked
           ), kept as (
               -- the new level's retention, as an upgrade gives (none on the entry level)
               select locked.user_id,
                      case when $7 = 'lifetime'
                                or nl.level_order = (select min(x.level_order) from member_levels x
                                                      where x.is_active)
                           then null else retention_end($3, $10, $11, $9) end as until
                 from locked join member_levels nl on nl.id = locked.to_id
           ), moved as (
               update member_profiles p
                  set level_id = locked.to_id, last_level_change_at = $3, upgrade_due_at = null,
                      level_kept_until = kept.until,
                      level_review_at = kept.until + make_interval(secs => $12),
                      level_manual = false, downgrade_notice_for = null, updated_at = $3
                 from locked join kept on kept.user_id = locked.user_id
                where p.user_id = locked.user_id
               returning p.user_id
           ), history as (
               insert into level_change_records
                      (user_id, old_level_id, new_level_id, change_reason, note, actor_user_id, change_date)
               select l.user_id, l.from_id, l.to_id, 'recalculate',
                      case when l.up
                           then format('spend %s reaches %s (%s)', l.total_spent, nl.level_name, nl.min_points)
                           else format('spend %s is below %s (%s)', l.total_spent, ol.level_name, ol.min_points)
                      end,
                      $2, $3
                 from locked l
                 join member_levels nl on nl.id = l.to_id
                 join member_levels ol on ol.id = l.from_id
           ), notified as (
               insert into notifications (user_id, kind, payload, created_at, next_attempt_at)
               select l.user_id, 'level_changed',
                      jsonb_build_object('new_level', nl.level_name, 'benefits', nl.benefits,
                                         'reason', 'recalculate',
                                         'direction', case when l.up then 'up' else 'down' end),
                      $3, $3
                 from locked l join member_levels nl on nl.id = l.to_id
           )
           select user_id as "user_id!" from moved"#,
        limit,
        actor,
        now,
        recent_after,
        options.move_down,
        options.include_manual,
        window,
        months,
        rules.tz,
        retention,
        retention_months,
        grace
    )
    .fetch_all(conn)
    .await
}

pub async fn staff_count(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"select count(*) as "n!" from users where role = 'staff'"#)
        .fetch_one(conn)
        .await
}
