//! JSON API v1 (SPEC §4.2) for order systems and apps: `Authorization: Bearer <api key>`,
//! the same services as the pages. Replays of earn/use/reverse/refund answer 200 with the
//! original transaction; new ones 201.

pub mod error;
pub mod extract;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use self::error::ApiError;
use self::extract::{ApiKey, JsonBody, user_id};
use crate::domain::{
    Batch, Level, Money, Outcome, Points, PointsSummary, Profile, Reference, Transaction,
    UpgradeProgress, UpgradeResult,
};
use crate::error::Error;
use crate::service::Services;
use crate::service::members::NewMember;
use crate::service::points::{EarnRequest, RefundRequest, ReverseRequest, UseRequest};

/// The routes, relative to `/api/v1`.
pub fn router() -> Router<Services> {
    Router::new()
        .route("/members", post(create_member))
        .route("/members/{user_id}", get(member))
        .route("/members/{user_id}/points/earn", post(earn))
        .route("/members/{user_id}/points/use", post(spend))
        .route("/members/{user_id}/points/reverse", post(reverse))
        .route("/members/{user_id}/points/refund", post(refund))
        .route("/members/{user_id}/points/batches", get(batches))
        .route("/members/{user_id}/points/transactions", get(transactions))
        .route("/members/{user_id}/upgrade-progress", get(upgrade_progress))
        .route("/me/profile", get(me_profile))
        .route_layer(axum::middleware::from_fn(
            crate::web::metrics::response_time,
        ))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
}

// ---------------------------------------------------------------- views

#[derive(Serialize)]
pub struct LevelView {
    pub id: i32,
    pub level_name: String,
    pub level_order: i32,
    pub discount_rate: Decimal,
    pub point_multiplier: Decimal,
    pub benefits: Vec<String>,
}

#[derive(Serialize)]
pub struct PointsView {
    pub available: i64,
    pub total_earned: i64,
    pub total_used: i64,
    pub total_expired: i64,
    pub expiring_soon: Vec<crate::domain::ExpiringPoints>,
}

#[derive(Serialize)]
pub struct ProfileView {
    pub user_id: i64,
    pub member_code: String,
    pub email: String,
    pub display_name: String,
    pub total_spent: Decimal,
    pub level: LevelView,
    pub points: PointsView,
    pub upgrade_progress: UpgradeProgress,
}

impl From<Level> for LevelView {
    fn from(l: Level) -> Self {
        Self {
            id: l.id,
            level_name: l.level_name,
            level_order: l.level_order,
            discount_rate: l.discount_rate,
            point_multiplier: l.point_multiplier,
            benefits: l.benefits,
        }
    }
}

impl From<PointsSummary> for PointsView {
    fn from(p: PointsSummary) -> Self {
        Self {
            available: p.available,
            total_earned: p.total_earned,
            total_used: p.total_used,
            total_expired: p.total_expired,
            expiring_soon: p.expiring_soon,
        }
    }
}

impl From<Profile> for ProfileView {
    fn from(p: Profile) -> Self {
        Self {
            user_id: p.user_id,
            member_code: p.member_code,
            email: p.email,
            display_name: p.display_name,
            total_spent: p.total_spent,
            level: p.level.into(),
            points: p.points.into(),
            upgrade_progress: p.upgrade_progress,
        }
    }
}

#[derive(Serialize)]
pub struct TransactionView {
    pub id: i64,
    pub transaction_type: String,
    pub points_change: i64,
    pub balance_after: i64,
    pub reference_type: Option<String>,
    pub reference_id: Option<String>,
    pub description: String,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// reverse: points that could not be taken back
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecovered: Option<i64>,
    /// earn: the upgrade it caused, or null
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<Option<UpgradeResult>>,
}

impl From<Transaction> for TransactionView {
    fn from(t: Transaction) -> Self {
        Self {
            unrecovered: (t.transaction_type == "reverse").then_some(t.unrecovered),
            upgrade: (t.transaction_type == "earn").then_some(None),
            id: t.id,
            transaction_type: t.transaction_type,
            points_change: t.points_change,
            balance_after: t.balance_after,
            reference_type: t.reference_type,
            reference_id: t.reference_id,
            description: t.description,
            status: t.status,
            created_at: t.created_at,
        }
    }
}

/// 201 with a new transaction, 200 with the original one on a replay.
fn outcome(o: Outcome) -> Response {
    let status = if o.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut view = TransactionView::from(o.transaction);
    if view.upgrade.is_some() {
        view.upgrade = Some(o.upgrade);
    }
    (status, Json(view)).into_response()
}

// ---------------------------------------------------------------- members

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateMemberBody {
    email: String,
    display_name: String,
    password: Option<String>,
}

async fn create_member(
    State(s): State<Services>,
    _key: ApiKey,
    JsonBody(b): JsonBody<CreateMemberBody>,
) -> Result<Response, ApiError> {
    let new = NewMember::parse(&b.email, &b.display_name, b.password.as_deref())?;
    let member = s.members.create_member(new).await?;
    let profile = s.members.get_member_profile(member.user_id).await?;
    Ok((StatusCode::CREATED, Json(ProfileView::from(profile))).into_response())
}

async fn member(
    State(s): State<Services>,
    _key: ApiKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let profile = s.members.get_member_profile(user_id(&id)?).await?;
    Ok(Json(ProfileView::from(profile)).into_response())
}

/// The profile of the member logged in to this browser session (no API key).
pub async fn me_profile(
    State(s): State<Services>,
    session: tower_sessions::Session,
) -> Result<Response, ApiError> {
    let user = crate::web::session::current_user(&session, s.ctx.clock.now())
        .await?
        .ok_or(Error::Unauthorized)?;
    let profile = s.members.get_member_profile(user.user_id).await?;
    Ok(Json(ProfileView::from(profile)).into_response())
}

async fn upgrade_progress(
    State(s): State<Services>,
    _key: ApiKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let progress = s.members.upgrade_progress(user_id(&id)?).await?;
    Ok(Json(progress).into_response())
}

// ---------------------------------------------------------------- points

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarnBody {
    base_points: i64,
    source_type: String,
    source_id: String,
    amount: Option<Decimal>,
}

async fn earn(
    State(s): State<Services>,
    _key: ApiKey,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<EarnBody>,
) -> Result<Response, ApiError> {
    let req = EarnRequest {
        user_id: user_id(&id)?,
        base_points: Points::parse("base_points", b.base_points)?,
        source_type: Reference::parse("source_type", &b.source_type)?,
        source_id: Reference::parse("source_id", &b.source_id)?,
        amount: b.amount.map(|a| Money::parse("amount", a)).transpose()?,
    };
    Ok(outcome(s.points.earn_points(req).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UseBody {
    points: i64,
    usage_type: String,
    reference_id: String,
}

async fn spend(
    State(s): State<Services>,
    _key: ApiKey,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<UseBody>,
) -> Result<Response, ApiError> {
    let req = UseRequest {
        user_id: user_id(&id)?,
        points: Points::parse("points", b.points)?,
        usage_type: Reference::parse("usage_type", &b.usage_type)?,
        reference_id: Reference::parse("reference_id", &b.reference_id)?,
    };
    Ok(outcome(s.points.use_points(req).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseBody {
    source_type: String,
    source_id: String,
    refund_id: Option<String>,
    amount: Option<Decimal>,
}

async fn reverse(
    State(s): State<Services>,
    _key: ApiKey,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ReverseBody>,
) -> Result<Response, ApiError> {
    let req = ReverseRequest {
        user_id: user_id(&id)?,
        source_type: Reference::parse("source_type", &b.source_type)?,
        source_id: Reference::parse("source_id", &b.source_id)?,
        refund_id: b
            .refund_id
            .map(|r| Reference::parse("refund_id", &r))
            .transpose()?,
        amount: b.amount.map(|a| Money::parse("amount", a)).transpose()?,
    };
    Ok(outcome(s.points.reverse_points(req).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    usage_type: String,
    reference_id: String,
}

async fn refund(
    State(s): State<Services>,
    _key: ApiKey,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<RefundBody>,
) -> Result<Response, ApiError> {
    let req = RefundRequest {
        user_id: user_id(&id)?,
        usage_type: Reference::parse("usage_type", &b.usage_type)?,
        reference_id: Reference::parse("reference_id", &b.reference_id)?,
    };
    Ok(outcome(s.points.refund_points(req).await?))
}

async fn batches(
    State(s): State<Services>,
    _key: ApiKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let batches: Vec<Batch> = s.points.batches(user_id(&id)?).await?;
    Ok(Json(batches).into_response())
}

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct TransactionPage {
    items: Vec<TransactionView>,
    /// pass back as `cursor` for the next page; null on the last
    next_cursor: Option<String>,
}

async fn transactions(
    State(s): State<Services>,
    _key: ApiKey,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let user = user_id(&id)?;
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                Error::validation("limit", "limit must be a whole number from 1 to 100")
            })?,
    };
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            Error::validation(
                "cursor",
                "cursor must be a next_cursor from an earlier page",
            )
        })?),
    };
    let (items, next) = s.points.history(user, None, cursor, limit).await?;
    Ok(Json(TransactionPage {
        items: items.into_iter().map(TransactionView::from).collect(),
        next_cursor: next.map(|n| n.to_string()),
    })
    .into_response())
}
