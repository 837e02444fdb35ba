//! member_levels.

use rust_decimal::Decimal;
use sqlx::PgConnection;
use sqlx::types::Json;
use time::OffsetDateTime;

use crate::domain::Level;

struct LevelRow {
    id: i32,
    level_name: String,
    level_order: i32,
    min_points: i32,
    discount_rate: Decimal,
    point_multiplier: Decimal,
    benefits: Json<Vec<String>>,
    is_active: bool,
}

impl From<LevelRow> for Level {
    fn from(r: LevelRow) -> Self {
        Self {
            id: r.id,
            level_name: r.level_name,
            level_order: r.level_order,
            min_points: r.min_points,
            discount_rate: r.discount_rate,
            point_multiplier: r.point_multiplier,
            benefits: r.benefits.0,
            is_active: r.is_active,
        }
    }
}

/// Every level, active or not, by level_order.
pub async fn all(conn: &mut PgConnection) -> sqlx::Result<Vec<Level>> {
    let rows = sqlx::query_as!(
        LevelRow,
        r#"select id, level_name, level_order, min_points, discount_rate, point_multiplier,
                  benefits as "benefits: Json<Vec<String>>", is_active
             from member_levels order by level_order"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Level::from).collect())
}

pub async fn by_id(conn: &mut PgConnection, id: i32) -> sqlx::Result<Option<Level>> {
    let row = sqlx::query_as!(
        LevelRow,
        r#"select id, level_name, level_order, min_points, discount_rate, point_multiplier,
                  benefits as "benefits: Json<Vec<String>>", is_active
             from member_levels where id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Level::from))
}

/// The highest active level the spend qualifies for above `current_order`. The row is
/// share-locked so it cannot be deactivated before the caller's transaction ends.
pub async fn upgrade_target(
    conn: &mut PgConnection,
    spent: Decimal,
    current_order: i32,
) -> sqlx::Result<Option<Level>> {
    let row = sqlx::query_as!(
        LevelRow,
        r#"select id, level_name, level_order, min_points, discount_rate, point_multiplier,
                  benefits as "benefits: Json<Vec<String>>", is_active
             from member_levels
            where is_active and min_points <= $1::numeric and level_order > $2
            order by level_order desc
            limit 1
            for share"#,
        spent,
        current_order
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Level::from))
}

/// Serialises changes to the level configuration (readers are not blocked).
pub async fn lock_for_change(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("lock table member_levels in share row exclusive mode")
        .execute(conn)
        .await?;
    Ok(())
}

pub struct LevelValues<'a> {
    pub level_name: &'a str,
    pub level_order: i32,
    pub min_points: i32,
    pub discount_rate: Decimal,
    pub point_multiplier: Decimal,
    pub benefits: &'a [String],
    pub is_active: bool,
}

pub async fn insert(
    conn: &mut PgConnection,
    v: &LevelValues<'_>,
    now: OffsetDateTime,
) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        "insert into member_levels
                (level_name, level_order, min_points, discount_rate, point_multiplier, benefits,
                 is_active, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         returning id",
        v.level_name,
        v.level_order,
        v.min_points,
        v.discount_rate,
        v.point_multiplier,
        Json(v.benefits) as _,
        v.is_active,
        now
    )
    .fetch_one(conn)
    .await
}

pub async fn update(
    conn: &mut PgConnection,
    id: i32,
    v: &LevelValues<'_>,
    now: OffsetDateTime,
) -> sqlx::Result<bool> {
    let n = sqlx::query!(
        "update member_levels
            set level_name = $2, level_order = $3, min_points = $4, discount_rate = $5,
                point_multiplier = $6, benefits = $7, is_active = $8, updated_at = $9
          where id = $1",
        id,
        v.level_name,
        v.level_order,
        v.min_points,
        v.discount_rate,
        v.point_multiplier,
        Json(v.benefits) as _,
        v.is_active,
        now
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn member_count(conn: &mut PgConnection, level_id: i32) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select count(*) as "n!" from member_profiles where level_id = $1"#,
        level_id
    )
    .fetch_one(conn)
    .await
}
