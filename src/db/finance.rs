//! The finance report's figures (issue 13 §5): the points still owed to members, and what
//! was issued, redeemed and expired month by month. Months are business months
//! (`MEMBER_TIMEZONE`), written `YYYY-MM`.

use sqlx::PgConnection;
use time::OffsetDateTime;

/// Points still owed that expire in one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryMonth {
    pub month: String,
    pub points: i64,
}

/// Points still owed to the members of one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelLiability {
    pub level_name: String,
    pub members: i64,
    pub available: i64,
    pub pending: i64,
}

/// One month of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthFlow {
    pub month: String,
    /// earned (orders, campaign bonuses; pending ones too)
    pub issued: i64,
    /// used, less the uses refunded that month
    pub redeemed: i64,
    pub expired: i64,
    /// taken back on returns
    pub reversed: i64,
    /// staff adjustments, net
    pub adjusted: i64,
    /// of the points issued that month: how many have expired since (breakage) and how
    /// many are still owed
    pub cohort_expired: i64,
    pub cohort_outstanding: i64,
}

/// Live points by the month they expire (pending points are not counted: they expire
/// only once released).
pub async fn liability_by_expiry(
    conn: &mut PgConnection,
    tz: &str,
) -> sqlx::Result<Vec<ExpiryMonth>> {
    sqlx::query_as!(
        ExpiryMonth,
        r#"select to_char(date_trunc('month', expires_at at time zone $1), 'YYYY-MM') as "month!",
                  sum(available_points)::bigint as "points!"
             from point_batches
            where available_points > 0
            group by 1 order by 1"#,
        tz
    )
    .fetch_all(conn)
    .await
}

pub async fn liability_by_level(conn: &mut PgConnection) -> sqlx::Result<Vec<LevelLiability>> {
    sqlx::query_as!(
        LevelLiability,
        r#"select l.level_name, count(p.user_id) as "members!",
                  coalesce(sum(p.available_points), 0)::bigint as "available!",
                  coalesce(sum(p.pending_points), 0)::bigint as "pending!"
             from member_levels l
             left join member_profiles p on p.level_id = l.id
            group by l.id, l.level_name, l.level_order
            order by l.level_order"#
    )
    .fetch_all(conn)
    .await
}

/// The months from `from` on, oldest first (months without transactions are left out).
pub async fn monthly_flows(
    conn: &mut PgConnection,
    from: OffsetDateTime,
    tz: &str,
) -> sqlx::Result<Vec<MonthFlow>> {
    sqlx::query_as!(
        MonthFlow,
        r#"with flows as (
               select to_char(date_trunc('month', created_at at time zone $2), 'YYYY-MM') as month,
                      coalesce(sum(points_change) filter (where transaction_type = 'earn'), 0) as issued,
                      coalesce(-sum(points_change) filter (where transaction_type = 'use'), 0)
                        - coalesce(sum(points_change) filter (where transaction_type = 'refund'), 0) as redeemed,
                      coalesce(-sum(points_change) filter (where transaction_type = 'expire'), 0) as expired,
                      coalesce(-sum(points_change) filter (where transaction_type = 'reverse'), 0) as reversed,
                      coalesce(sum(points_change) filter (where transaction_type = 'adjust'), 0) as adjusted
                 from point_transactions
                where created_at >= $1
                group by 1
           ), cohorts as (
               select to_char(date_trunc('month', b.created_at at time zone $2), 'YYYY-MM') as month,
                      coalesce(sum(x.expired), 0) as expired,
                      sum(b.available_points + b.pending_points) as outstanding
                 from point_batches b
                 left join lateral (
                     select sum(d.points) as expired
                       from batch_deductions d
                       join point_transactions t on t.id = d.transaction_id
                      where d.batch_id = b.id and t.transaction_type = 'expire'
                 ) x on true
                where b.created_at >= $1
                group by 1
           )
           select f.month as "month!", f.issued::bigint as "issued!", f.redeemed::bigint as "redeemed!",
                  f.expired::bigint as "expired!", f.reversed::bigint as "reversed!",
                  f.adjusted::bigint as "adjusted!",
                  coalesce(c.expired, 0)::bigint as "cohort_expired!",
                  coalesce(c.outstanding, 0)::bigint as "cohort_outstanding!"
             from flows f left join cohorts c on c.month = f.month
            order by f.month"#,
        from,
        tz
    )
    .fetch_all(conn)
    .await
}

/// One ledger line of the export, with the member's code.
#[derive(Debug, Clone)]
pub struct LedgerLine {
    pub id: i64,
    pub created_at: OffsetDateTime,
    pub user_id: i64,
    pub member_code: String,
    pub transaction_type: String,
    pub status: String,
    pub points_change: i64,
    pub balance_after: i64,
    pub amount: Option<rust_decimal::Decimal>,
    pub reference_type: Option<String>,
    pub reference_id: Option<String>,
    pub sub_reference: Option<String>,
    pub unrecovered: i64,
    pub campaign_id: Option<i64>,
    pub actor_user_id: Option<i64>,
    pub description: String,
}

/// Up to `limit` ledger lines after id `after` in [from, to), by id.
pub async fn ledger_page(
    conn: &mut PgConnection,
    after: i64,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    limit: i64,
) -> sqlx::Result<Vec<LedgerLine>> {
    sqlx::query_as!(
        LedgerLine,
        r#"select t.id, t.created_at, t.user_id, p.member_code, t.transaction_type, t.status,
                  t.points_change, t.balance_after, t.amount, t.reference_type, t.reference_id,
                  t.sub_reference, t.unrecovered, t.campaign_id::bigint as campaign_id,
                  t.actor_user_id, t.description
             from point_transactions t
             join member_profiles p on p.user_id = t.user_id
            where t.id > $1
              and ($2::timestamptz is null or t.created_at >= $2)
              and ($3::timestamptz is null or t.created_at < $3)
            order by t.id
            limit $4"#,
        after,
        from,
        to,
        limit
    )
    .fetch_all(conn)
    .await
}
