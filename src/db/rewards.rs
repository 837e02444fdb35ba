//! rewards and coupons (migration 0013).

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::domain::rewards::{Coupon, CouponStatus, Reward, RewardInput, RewardKind};

/// Every reward (staff), or only the active ones (the catalogue), cheapest first.
pub async fn list(conn: &mut PgConnection, only_active: bool) -> sqlx::Result<Vec<Reward>> {
    sqlx::query_as!(
        Reward,
        r#"select r.id, r.name, r.description, r.kind as "kind: RewardKind", r.value,
                  r.points_cost, r.stock, r.issued, r.per_member_limit, r.min_level_id,
                  l.level_name as "min_level_name?", l.level_order as "min_level_order?",
                  r.starts_at, r.ends_at, r.coupon_valid_days, r.is_active
             from rewards r left join member_levels l on l.id = r.min_level_id
            where r.is_active or not $1
            order by r.points_cost, r.id"#,
        only_active
    )
    .fetch_all(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: i32) -> sqlx::Result<Option<Reward>> {
    sqlx::query_as!(
        Reward,
        r#"select r.id, r.name, r.description, r.kind as "kind: RewardKind", r.value,
                  r.points_cost, r.stock, r.issued, r.per_member_limit, r.min_level_id,
                  l.level_name as "min_level_name?", l.level_order as "min_level_order?",
                  r.starts_at, r.ends_at, r.coupon_valid_days, r.is_active
             from rewards r left join member_levels l on l.id = r.min_level_id
            where r.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// The reward, its row locked for this redemption (after the member's row), and how many
/// of its coupons the member holds (not cancelled).
pub async fn lock_for_redemption(
    conn: &mut PgConnection,
    id: i32,
    user_id: i64,
) -> sqlx::Result<Option<(Reward, i64)>> {
    let row = sqlx::query!(
        r#"select r.id, r.name, r.description, r.kind as "kind: RewardKind", r.value,
                  r.points_cost, r.stock, r.issued, r.per_member_limit, r.min_level_id,
                  l.level_name as "min_level_name?", l.level_order as "min_level_order?",
                  r.starts_at, r.ends_at, r.coupon_valid_days, r.is_active,
                  case when r.per_member_limit is null then 0
                       else (select count(*) from coupons c
                              where c.reward_id = r.id and c.user_id = $2
                                and c.status <> 'cancelled') end as "held!"
             from rewards r left join member_levels l on l.id = r.min_level_id
            where r.id = $1
              for update of r"#,
        id,
        user_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| {
        (
            Reward {
                id: r.id,
                name: r.name,
                description: r.description,
                kind: r.kind,
                value: r.value,
                points_cost: r.points_cost,
                stock: r.stock,
                issued: r.issued,
                per_member_limit: r.per_member_limit,
                min_level_id: r.min_level_id,
                min_level_name: r.min_level_name,
                min_level_order: r.min_level_order,
                starts_at: r.starts_at,
                ends_at: r.ends_at,
                coupon_valid_days: r.coupon_valid_days,
                is_active: r.is_active,
            },
            r.held,
        )
    }))
}

/// How many coupons (not cancelled) the member holds of each reward.
pub async fn held_by_member(
    conn: &mut PgConnection,
    user_id: i64,
) -> sqlx::Result<Vec<(i32, i64)>> {
    Ok(sqlx::query!(
        r#"select reward_id, count(*) as "n!" from coupons
            where user_id = $1 and status <> 'cancelled' group by reward_id"#,
        user_id
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| (r.reward_id, r.n))
    .collect())
}

pub async fn insert(
    conn: &mut PgConnection,
    r: &RewardInput,
    now: OffsetDateTime,
) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        "insert into rewards (name, description, kind, value, points_cost, stock,
                              per_member_limit, min_level_id, starts_at, ends_at,
                              coupon_valid_days, is_active, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
         returning id",
        r.name,
        r.description,
        r.kind.as_str(),
        r.value,
        r.points_cost,
        r.stock,
        r.per_member_limit,
        r.min_level_id,
        r.starts_at,
        r.ends_at,
        r.coupon_valid_days,
        r.is_active,
        now
    )
    .fetch_one(conn)
    .await
}

/// Changes a reward's terms; coupons already issued keep theirs. False if there is no
/// such reward. `stock_seen` is the stock the staff's form showed: redemptions (and
/// cancellations) since then are applied to the new stock rather than overwritten.
pub async fn update(
    conn: &mut PgConnection,
    id: i32,
    r: &RewardInput,
    stock_seen: Option<i32>,
    now: OffsetDateTime,
) -> sqlx::Result<bool> {
    Ok(sqlx::query!(
        "update rewards set name = $2, description = $3, kind = $4, value = $5,
                points_cost = $6,
                stock = case when $7::integer is not null and $15::integer is not null
                                  and stock is not null
                             then greatest($7 + (stock - $15), 0)
                             else $7 end,
                per_member_limit = $8, min_level_id = $9,
                starts_at = $10, ends_at = $11, coupon_valid_days = $12, is_active = $13,
                updated_at = $14
          where id = $1",
        id,
        r.name,
        r.description,
        r.kind.as_str(),
        r.value,
        r.points_cost,
        r.stock,
        r.per_member_limit,
        r.min_level_id,
        r.starts_at,
        r.ends_at,
        r.coupon_valid_days,
        r.is_active,
        now,
        stock_seen
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// A coupon as stored; [`CouponRow::at`] gives its state at a moment.
pub struct CouponRow {
    pub id: i64,
    pub code: String,
    pub reward_id: i32,
    pub user_id: i64,
    pub title: String,
    pub kind: RewardKind,
    pub value: Option<Decimal>,
    pub points: i64,
    pub redemption_id: String,
    pub transaction_id: i64,
    pub status: String,
    pub expires_at: OffsetDateTime,
    pub order_id: Option<String>,
    pub consumed_at: Option<OffsetDateTime>,
    pub cancelled_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

impl CouponRow {
    pub fn at(self, now: OffsetDateTime) -> Coupon {
        Coupon {
            status: CouponStatus::of(&self.status, self.expires_at, now),
            id: self.id,
            code: self.code,
            reward_id: self.reward_id,
            user_id: self.user_id,
            title: self.title,
            kind: self.kind,
            value: self.value,
            points: self.points,
            redemption_id: self.redemption_id,
            expires_at: self.expires_at,
            order_id: self.order_id,
            consumed_at: self.consumed_at,
            cancelled_at: self.cancelled_at,
            created_at: self.created_at,
        }
    }
}

pub struct NewCoupon<'a> {
    pub code: &'a str,
    pub reward: &'a Reward,
    pub user_id: i64,
    pub redemption_id: &'a str,
    pub transaction_id: i64,
    pub expires_at: OffsetDateTime,
    pub now: OffsetDateTime,
    /// the `coupon.issued` notification (and webhook)
    pub notice: &'a Value,
}

/// Takes one of the reward's stock, issues the coupon and queues its notification, in one
/// statement. A code that collides with another (80 random bits: never in practice)
/// fails on `coupons_code_key` and rolls the redemption back.
pub async fn issue(conn: &mut PgConnection, c: &NewCoupon<'_>) -> sqlx::Result<CouponRow> {
    sqlx::query_as!(
        CouponRow,
        r#"with r as (
               update rewards set stock = stock - 1, issued = issued + 1
                where id = $2
           ), n as (
               insert into notifications (user_id, kind, payload, created_at, next_attempt_at)
               values ($4, 'coupon.issued', $11, $10, $10)
           )
           insert into coupons (code, reward_id, user_id, title, kind, value, points,
                                redemption_id, transaction_id, status, expires_at,
                                created_at, updated_at)
           values ($1, $2, $4, $3, $5, $6, $7, $8, $9, 'issued', $12, $10, $10)
           returning id, code, reward_id, user_id, title, kind as "kind: RewardKind", value,
                     points, redemption_id, transaction_id, status, expires_at, order_id,
                     consumed_at, cancelled_at, created_at"#,
        c.code,
        c.reward.id,
        c.reward.name,
        c.user_id,
        c.reward.kind.as_str(),
        c.reward.value,
        c.reward.points_cost,
        c.redemption_id,
        c.transaction_id,
        c.now,
        c.notice,
        c.expires_at,
    )
    .fetch_one(conn)
    .await
}

pub async fn by_transaction(
    conn: &mut PgConnection,
    tx_id: i64,
) -> sqlx::Result<Option<CouponRow>> {
    sqlx::query_as!(
        CouponRow,
        r#"select id, code, reward_id, user_id, title, kind as "kind: RewardKind", value,
                  points, redemption_id, transaction_id, status, expires_at, order_id,
                  consumed_at, cancelled_at, created_at
             from coupons where transaction_id = $1"#,
        tx_id
    )
    .fetch_optional(conn)
    .await
}

/// The coupon with this code; `lock` takes its row for an update in this transaction.
pub async fn by_code(
    conn: &mut PgConnection,
    code: &str,
    lock: bool,
) -> sqlx::Result<Option<CouponRow>> {
    if lock {
        sqlx::query_as!(
            CouponRow,
            r#"select id, code, reward_id, user_id, title, kind as "kind: RewardKind", value,
                      points, redemption_id, transaction_id, status, expires_at, order_id,
                      consumed_at, cancelled_at, created_at
                 from coupons where code = $1 for update"#,
            code
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            CouponRow,
            r#"select id, code, reward_id, user_id, title, kind as "kind: RewardKind", value,
                      points, redemption_id, transaction_id, status, expires_at, order_id,
                      consumed_at, cancelled_at, created_at
                 from coupons where code = $1"#,
            code
        )
        .fetch_optional(conn)
        .await
    }
}

pub async fn by_id(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<CouponRow>> {
    sqlx::query_as!(
        CouponRow,
        r#"select id, code, reward_id, user_id, title, kind as "kind: RewardKind", value,
                  points, redemption_id, transaction_id, status, expires_at, order_id,
                  consumed_at, cancelled_at, created_at
             from coupons where id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// A member's coupons, newest first, keyset on id.
pub async fn of_member(
    conn: &mut PgConnection,
    user_id: i64,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<CouponRow>> {
    sqlx::query_as!(
        CouponRow,
        r#"select id, code, reward_id, user_id, title, kind as "kind: RewardKind", value,
                  points, redemption_id, transaction_id, status, expires_at, order_id,
                  consumed_at, cancelled_at, created_at
             from coupons
            where user_id = $1 and ($2::bigint is null or id < $2)
            order by user_id, id desc limit $3"#,
        user_id,
        before,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Marks the (locked) coupon used on `order_id`, or, with `None`, back to issued; queues
/// the event for the webhook (read already: the member did it at checkout). Returns the
/// coupon as it is now.
pub async fn set_consumed(
    conn: &mut PgConnection,
    c: &CouponRow,
    order_id: Option<&str>,
    now: OffsetDateTime,
    event: &Value,
) -> sqlx::Result<CouponRow> {
    let kind = if order_id.is_some() {
        "coupon.consumed"
    } else {
        "coupon.released"
    };
    sqlx::query_as!(
        CouponRow,
        r#"with n as (
             insert into notifications (user_id, kind, payload, created_at, read_at, next_attempt_at)
             values ($4, $5, $6, $3, $3, $3)
         )
         update coupons
            set status = case when $2::text is null then 'issued' else 'consumed' end,
                order_id = $2, consumed_at = case when $2::text is null then null else $3 end,
                updated_at = $3
          where id = $1
          returning id, code, reward_id, user_id, title, kind as "kind: RewardKind", value,
                    points, redemption_id, transaction_id, status, expires_at, order_id,
                    consumed_at, cancelled_at, created_at"#,
        c.id,
        order_id,
        now,
        c.user_id,
        kind,
        event
    )
    .fetch_one(conn)
    .await
}

/// Marks the (locked) coupon cancelled with the refund of its points, puts the stock
/// back and queues the `coupon.cancelled` notification. Returns the coupon as it is now.
pub async fn set_cancelled(
    conn: &mut PgConnection,
    c: &CouponRow,
    refund_tx: i64,
    now: OffsetDateTime,
    event: &Value,
) -> sqlx::Result<CouponRow> {
    sqlx::query_as!(
        CouponRow,
        r#"with r as (
             update rewards set stock = stock + 1, issued = issued - 1 where id = $2
         ), n as (
             insert into notifications (user_id, kind, payload, created_at, next_attempt_at)
             values ($5, 'coupon.cancelled', $6, $4, $4)
         )
         update coupons set status = 'cancelled', refund_transaction_id = $3,
                cancelled_at = $4, updated_at = $4
          where id = $1
          returning id, code, reward_id, user_id, title, kind as "kind: RewardKind", value,
                    points, redemption_id, transaction_id, status, expires_at, order_id,
                    consumed_at, cancelled_at, created_at"#,
        c.id,
        c.reward_id,
        refund_tx,
        now,
        c.user_id,
        event
    )
    .fetch_one(conn)
    .await
}
