//! campaigns, and the bonus lines they pay (migration 0014).

use sqlx::PgConnection;
use time::{Date, OffsetDateTime};

use crate::domain::campaigns::{Campaign, CampaignInput, CampaignKind};
use crate::domain::{Transaction, TransactionType};

/// Every campaign, newest first (staff).
pub async fn all(conn: &mut PgConnection) -> sqlx::Result<Vec<Campaign>> {
    sqlx::query_as!(
        Campaign,
        r#"select id, name, kind as "kind: CampaignKind", source_type, category, multiplier,
                  bonus_points, min_amount, starts_at, ends_at
             from campaigns order by starts_at desc, id desc"#
    )
    .fetch_all(conn)
    .await
}

/// Campaigns not ended at `now` (live or scheduled), first to start first.
pub async fn not_ended(
    conn: &mut PgConnection,
    now: OffsetDateTime,
) -> sqlx::Result<Vec<Campaign>> {
    sqlx::query_as!(
        Campaign,
        r#"select id, name, kind as "kind: CampaignKind", source_type, category, multiplier,
                  bonus_points, min_amount, starts_at, ends_at
             from campaigns where ends_at > $1 order by starts_at, id"#,
        now
    )
    .fetch_all(conn)
    .await
}

pub async fn insert(
    conn: &mut PgConnection,
    c: &CampaignInput,
    now: OffsetDateTime,
) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        "insert into campaigns (name, kind, source_type, category, multiplier, bonus_points,
                                min_amount, starts_at, ends_at, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) returning id",
        c.name,
        c.kind.as_str(),
        c.source_type,
        c.category,
        c.multiplier,
        c.bonus_points,
        c.min_amount,
        c.starts_at,
        c.ends_at,
        now
    )
    .fetch_one(conn)
    .await
}

/// Ends a campaign now (a scheduled one never starts). The campaign as it was, if it had
/// not ended yet.
pub async fn end(
    conn: &mut PgConnection,
    id: i32,
    now: OffsetDateTime,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "update campaigns set ends_at = greatest($2, starts_at + interval '1 microsecond'),
                              updated_at = $2
          where id = $1 and ends_at > $2 returning name",
        id,
        now
    )
    .fetch_optional(conn)
    .await
}

pub struct NewBonus<'a> {
    pub user_id: i64,
    pub points: i64,
    pub balance_after: i64,
    pub campaign_id: i32,
    /// what it was paid for, unique with the campaign: "order:{source_type}/{source_id}",
    /// "signup:{user_id}", "birthday:2026:{user_id}"
    pub occasion: &'a str,
    /// the order's earn it belongs to
    pub parent_id: Option<i64>,
    pub description: &'a str,
    pub now: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub business_date: Date,
    /// pending with the order's points until then (`POINTS_PENDING_DAYS`)
    pub pending_until: Option<OffsetDateTime>,
}

/// Writes a bonus line in one statement: its transaction, its batch, the member's totals
/// and today's count, and the order's earn's `bonus_points`. The idempotency key (earn,
/// campaign, id, occasion) makes a second payment for the same occasion fail.
pub async fn insert_bonus(conn: &mut PgConnection, b: &NewBonus<'_>) -> sqlx::Result<Transaction> {
    sqlx::query_as!(
        Transaction,
        r#"with t as (
               insert into point_transactions
                      (user_id, transaction_type, points_change, balance_after, requested_points,
                       reference_type, reference_id, sub_reference, campaign_id, parent_id,
                       description, created_at, status)
               values ($1, 'earn', $2, $3, $2, 'campaign', $4::integer::text, $5, $4, $6, $7, $8,
                       case when $11::timestamptz is null then 'completed' else 'pending' end)
               returning *
           ), b as (
               insert into point_batches
                      (user_id, transaction_id, earned_points, available_points, pending_points,
                       pending_until, expires_at, created_at)
               select $1, t.id, $2,
                      case when $11::timestamptz is null then $2 else 0 end,
                      case when $11::timestamptz is null then 0 else $2 end,
                      $11, $9, $8
                 from t
           ), p as (
               update member_profiles
                  set available_points = available_points
                          + case when $11::timestamptz is null then $2 else 0 end,
                      total_earned = total_earned
                          + case when $11::timestamptz is null then $2 else 0 end,
                      pending_points = pending_points
                          + case when $11::timestamptz is null then 0 else $2 end,
                      daily_earned_points = case when daily_earned_date = $10
                                                 then daily_earned_points + $2 else $2 end,
                      daily_earned_date = $10,
                      updated_at = $8
                where user_id = $1
           ), e as (
               update point_transactions set bonus_points = bonus_points + $2
                where id = $6
           )
           select id as "id!", user_id as "user_id!", transaction_type as "transaction_type!: TransactionType",
                  points_change as "points_change!", balance_after as "balance_after!",
                  reference_type, reference_id, description as "description!",
                  status as "status!", unrecovered as "unrecovered!", created_at as "created_at!"
             from t"#,
        b.user_id,
        b.points,
        b.balance_after,
        b.campaign_id,
        b.occasion,
        b.parent_id,
        b.description,
        b.now,
        b.expires_at,
        b.business_date,
        b.pending_until,
    )
    .fetch_one(conn)
    .await
}

/// The bonus lines of an earn, in the order they were written.
pub async fn bonuses_of(conn: &mut PgConnection, earn_id: i64) -> sqlx::Result<Vec<Transaction>> {
    sqlx::query_as!(
        Transaction,
        r#"select id, user_id, transaction_type as "transaction_type: TransactionType", points_change, balance_after, reference_type,
                  reference_id, description, status, unrecovered, created_at
             from point_transactions
            where parent_id = $1 and transaction_type = 'earn' order by id"#,
        earn_id
    )
    .fetch_all(conn)
    .await
}

/// Members whose birthday is `day` (29 February counts as 28 February in other years) and
/// who have not had `campaign`'s bonus for the occasion `prefix` + their id, after `after`
/// (keyset), at most `limit`.
pub async fn birthdays(
    conn: &mut PgConnection,
    day: Date,
    campaign: i32,
    occasion: &str,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    let leap_day_too =
        u8::from(day.month()) == 2 && day.day() == 28 && !time::util::is_leap_year(day.year());
    sqlx::query_scalar!(
        "select p.user_id from member_profiles p
          where p.birthday is not null and p.user_id > $6
            and ((extract(month from p.birthday) = $1 and extract(day from p.birthday) = $2)
                 or ($3 and extract(month from p.birthday) = 2 and extract(day from p.birthday) = 29))
            and not exists (select 1 from point_transactions t
                             where t.transaction_type = 'earn' and t.reference_type = 'campaign'
                               and t.reference_id = $4::integer::text
                               and coalesce(t.sub_reference, '') = $5 || p.user_id::text)
          order by p.user_id limit $7",
        rust_decimal::Decimal::from(u8::from(day.month())),
        rust_decimal::Decimal::from(day.day()),
        leap_day_too,
        campaign,
        occasion,
        after,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Sets the member's birthday if it is not set yet; false if it was.
pub async fn set_birthday(
    conn: &mut PgConnection,
    user_id: i64,
    day: Date,
    now: OffsetDateTime,
) -> sqlx::Result<bool> {
    Ok(sqlx::query!(
        "update member_profiles set birthday = $2, updated_at = $3
          where user_id = $1 and birthday is null",
        user_id,
        day,
        now
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

pub async fn birthday(conn: &mut PgConnection, user_id: i64) -> sqlx::Result<Option<Date>> {
    Ok(sqlx::query_scalar!(
        "select birthday from member_profiles where user_id = $1",
        user_id
    )
    .fetch_optional(conn)
    .await?
    .flatten())
}
