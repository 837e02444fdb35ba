//! JSON API v1 (SPEC §4.2) for order systems and apps: `Authorization: Bearer <api key>`,
//! the same services as the pages. Replays of earn/use/reverse/refund answer 200 with the
//! original transaction; new ones 201.

pub mod error;
pub mod extract;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::openapi::security::{
    ApiKey as ApiKeyScheme, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::ApiError;
use self::extract::{ApiKey, ApiQuery, BearerKey, JsonBody, MemberId};
use crate::domain::{
    Batch, Level, Money, Outcome, Points, PointsSummary, Profile, Reference, Transaction,
    UpgradeProgress, UpgradeResult,
};
use crate::error::Error;
use crate::service::Services;
use crate::service::members::NewMember;
use crate::service::points::{EarnRequest, RefundRequest, ReverseRequest, UseRequest};

pub const PREFIX: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Member Portal API",
        version = "1",
        description = "Members, points and levels for order systems and apps. Authenticate with \
                       `Authorization: Bearer <api key>` (staff create keys at /admin/api-keys or with \
                       `member-portal create-api-key`). Every error is `{\"code\", \"message\", ...}`. \
                       Earn, use, reverse and refund are idempotent on their references: a replay \
                       answers 200 with the original transaction, a new operation 201."
    ),
    modifiers(&Security),
    tags((name = "members"), (name = "points"))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKeyScheme::Cookie(ApiKeyValue::new("mp_session"))),
        );
    }
}

/// Every route with its description, generated from the handlers' annotations.
fn api_routes() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_member))
        .routes(routes!(member))
        .routes(routes!(earn))
        .routes(routes!(spend))
        .routes(routes!(reverse))
        .routes(routes!(refund))
        .routes(routes!(batches))
        .routes(routes!(transactions))
        .routes(routes!(upgrade_progress))
        .routes(routes!(me_profile))
}

/// The routes, relative to [`PREFIX`], with the description at `/openapi.json`.
pub fn router() -> Router<Services> {
    let (router, doc) = api_routes().split_for_parts();
    let doc = Arc::new(absolute(doc));
    router
        .route_layer(axum::middleware::from_fn(
            crate::web::metrics::response_time,
        ))
        .route(
            "/openapi.json",
            get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::map_response(error::json_errors))
}

/// The OpenAPI 3.1 description, each path as a client calls it (`/api/v1/...`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    absolute(api_routes().split_for_parts().1)
}

fn absolute(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(p, item)| (format!("{PREFIX}{p}"), item))
        .collect();
    doc
}

/// The error body of every failure.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// VALIDATION_ERROR, UNAUTHORIZED, FORBIDDEN, MEMBER_NOT_FOUND, NOT_FOUND,
    /// INSUFFICIENT_POINTS, POINTS_PER_TRANSACTION_EXCEEDED, DAILY_POINTS_LIMIT_EXCEEDED,
    /// IDEMPOTENCY_CONFLICT, CONCURRENT_OPERATION, EMAIL_TAKEN, INTERNAL_ERROR
    pub code: String,
    pub message: String,
    /// VALIDATION_ERROR: the field at fault
    pub field: Option<String>,
    /// INSUFFICIENT_POINTS
    pub required: Option<i64>,
    /// INSUFFICIENT_POINTS
    pub available: Option<i64>,
    /// INTERNAL_ERROR: quote it when reporting the problem
    pub request_id: Option<String>,
}

// ---------------------------------------------------------------- views

#[derive(Serialize, ToSchema)]
pub struct LevelView {
    pub id: i32,
    pub level_name: String,
    pub level_order: i32,
    #[schema(value_type = String, example = "0.980")]
    pub discount_rate: Decimal,
    #[schema(value_type = String, example = "1.20")]
    pub point_multiplier: Decimal,
    pub benefits: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PointsView {
    pub available: i64,
    pub total_earned: i64,
    pub total_used: i64,
    pub total_expired: i64,
    pub expiring_soon: Vec<crate::domain::ExpiringPoints>,
}

#[derive(Serialize, ToSchema)]
pub struct ProfileView {
    pub user_id: i64,
    pub member_code: String,
    pub email: String,
    pub display_name: String,
    /// money, a string with two decimals
    #[schema(value_type = String, example = "1100.00")]
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

#[derive(Serialize, ToSchema)]
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
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// reverse: points that could not be taken back
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecovered: Option<i64>,
    /// earn: the upgrade it caused, or null
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<UpgradeResult>)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMemberBody {
    email: String,
    display_name: String,
    password: Option<String>,
}

#[utoipa::path(post, path = "/members", tag = "members", security(("api_key" = [])),
    request_body = CreateMemberBody,
    responses((status = 201, description = "the new member's profile", body = ProfileView),
              (status = 409, description = "EMAIL_TAKEN", body = ErrorBody),
              (status = 422, description = "VALIDATION_ERROR", body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
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

#[utoipa::path(get, path = "/members/{user_id}", tag = "members", security(("api_key" = [])), params(("user_id" = i64, Path, description = "the member's user id")),
    responses((status = 200, body = ProfileView), (status = 404, description = "MEMBER_NOT_FOUND", body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn member(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
) -> Result<Response, ApiError> {
    let profile = s.members.get_member_profile(user).await?;
    Ok(Json(ProfileView::from(profile)).into_response())
}

/// The profile of the member logged in to this browser session (no API key).
#[utoipa::path(get, path = "/me/profile", tag = "members", security(("session" = [])),
    responses((status = 200, description = "the profile of the member logged in to this browser session", body = ProfileView),
              (status = 401, description = "not logged in", body = ErrorBody)))]
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

#[utoipa::path(get, path = "/members/{user_id}/upgrade-progress", tag = "members", security(("api_key" = [])), params(("user_id" = i64, Path, description = "the member's user id")),
    responses((status = 200, body = UpgradeProgress), (status = 404, body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn upgrade_progress(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
) -> Result<Response, ApiError> {
    let progress = s.members.upgrade_progress(user).await?;
    Ok(Json(progress).into_response())
}

// ---------------------------------------------------------------- points

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EarnBody {
    /// points before the level multiplier, > 0
    base_points: i64,
    /// with source_id, the idempotency key, e.g. "order_complete"
    source_type: String,
    source_id: String,
    /// order amount (> 0, 2 decimals): adds to total_spent, which decides the level
    #[schema(value_type = Option<String>, example = "300.00")]
    amount: Option<Decimal>,
}

#[utoipa::path(post, path = "/members/{user_id}/points/earn", tag = "points", security(("api_key" = [])), params(("user_id" = i64, Path, description = "the member's user id")),
    request_body = EarnBody,
    responses((status = 201, description = "credited; `upgrade` tells whether the level went up", body = TransactionView),
              (status = 200, description = "a replay: the original transaction, nothing credited", body = TransactionView),
              (status = 409, description = "IDEMPOTENCY_CONFLICT or CONCURRENT_OPERATION", body = ErrorBody),
              (status = 422, description = "VALIDATION_ERROR, POINTS_PER_TRANSACTION_EXCEEDED or DAILY_POINTS_LIMIT_EXCEEDED", body = ErrorBody),
              (status = 404, description = "MEMBER_NOT_FOUND", body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn earn(
    State(s): State<Services>,
    key: BearerKey,
    user: Result<MemberId, ApiError>,
    body: Result<JsonBody<EarnBody>, ApiError>,
) -> Result<Response, ApiError> {
    // The key is checked by the earn's own statement; a request refused before it gets
    // its key checked first, so without a valid key the answer is always 401.
    let parsed = user.and_then(|MemberId(user)| {
        let JsonBody(b) = body?;
        Ok(EarnRequest {
            user_id: user,
            base_points: Points::parse("base_points", b.base_points)?,
            source_type: Reference::parse("source_type", &b.source_type)?,
            source_id: Reference::parse("source_id", &b.source_id)?,
            amount: b.amount.map(|a| Money::parse("amount", a)).transpose()?,
        })
    });
    match parsed {
        Ok(req) => Ok(outcome(s.points.earn_points_as(Some(key.hash), req).await?)),
        Err(e) => {
            key.verify(&s).await?;
            Err(e)
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UseBody {
    points: i64,
    usage_type: String,
    reference_id: String,
}

#[utoipa::path(post, path = "/members/{user_id}/points/use", tag = "points", security(("api_key" = [])), params(("user_id" = i64, Path, description = "the member's user id")),
    request_body = UseBody,
    responses((status = 201, description = "spent, first-expiring points first", body = TransactionView),
              (status = 200, description = "a replay", body = TransactionView),
              (status = 409, description = "IDEMPOTENCY_CONFLICT or CONCURRENT_OPERATION", body = ErrorBody),
              (status = 422, description = "INSUFFICIENT_POINTS (with required, available) or VALIDATION_ERROR", body = ErrorBody),
              (status = 404, description = "MEMBER_NOT_FOUND", body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn spend(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
    JsonBody(b): JsonBody<UseBody>,
) -> Result<Response, ApiError> {
    let req = UseRequest {
        user_id: user,
        points: Points::parse("points", b.points)?,
        usage_type: Reference::parse("usage_type", &b.usage_type)?,
        reference_id: Reference::parse("reference_id", &b.reference_id)?,
    };
    Ok(outcome(s.points.use_points(req).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseBody {
    source_type: String,
    source_id: String,
    /// tells partial returns apart; without it the source is reversed once, in full
    refund_id: Option<String>,
    /// amount returned (with refund_id): floor(earned × amount / order amount) points
    #[schema(value_type = Option<String>, example = "100.00")]
    amount: Option<Decimal>,
}

#[utoipa::path(post, path = "/members/{user_id}/points/reverse", tag = "points", security(("api_key" = [])), params(("user_id" = i64, Path, description = "the member's user id")),
    request_body = ReverseBody,
    responses((status = 201, description = "taken back; `unrecovered` is what the balance could not cover", body = TransactionView),
              (status = 200, description = "a replay", body = TransactionView),
              (status = 404, description = "no such earn for this member", body = ErrorBody),
              (status = 409, description = "IDEMPOTENCY_CONFLICT", body = ErrorBody),
              (status = 422, description = "VALIDATION_ERROR", body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn reverse(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
    JsonBody(b): JsonBody<ReverseBody>,
) -> Result<Response, ApiError> {
    let req = ReverseRequest {
        user_id: user,
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    usage_type: String,
    reference_id: String,
}

#[utoipa::path(post, path = "/members/{user_id}/points/refund", tag = "points", security(("api_key" = [])), params(("user_id" = i64, Path, description = "the member's user id")),
    request_body = RefundBody,
    responses((status = 201, description = "the points of the use, back in their original batches", body = TransactionView),
              (status = 200, description = "a replay", body = TransactionView),
              (status = 404, description = "no such use for this member", body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn refund(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
    JsonBody(b): JsonBody<RefundBody>,
) -> Result<Response, ApiError> {
    let req = RefundRequest {
        user_id: user,
        usage_type: Reference::parse("usage_type", &b.usage_type)?,
        reference_id: Reference::parse("reference_id", &b.reference_id)?,
    };
    Ok(outcome(s.points.refund_points(req).await?))
}

#[utoipa::path(get, path = "/members/{user_id}/points/batches", tag = "points", security(("api_key" = [])), params(("user_id" = i64, Path, description = "the member's user id")),
    responses((status = 200, description = "live batches, first-expiring first", body = Vec<Batch>), (status = 404, body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn batches(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
) -> Result<Response, ApiError> {
    let batches: Vec<Batch> = s.points.batches(user).await?;
    Ok(Json(batches).into_response())
}

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// 1 to 100, default 20
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// `next_cursor` of the previous page
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TransactionPage {
    items: Vec<TransactionView>,
    /// pass back as `cursor` for the next page; null on the last
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/members/{user_id}/points/transactions", tag = "points", security(("api_key" = [])),
    params(("user_id" = i64, Path, description = "the member's user id"), PageQuery),
    responses((status = 200, description = "newest first", body = TransactionPage), (status = 422, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn transactions(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
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
