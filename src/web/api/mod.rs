//! JSON API v1 (SPEC §4.2) for order systems and apps: `Authorization: Bearer <api key>`,
//! the same services as the pages. Replays of earn/use/reverse/refund answer 200 with the
//! original transaction; new ones 201.

pub mod error;
pub mod extract;
pub mod rewards;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
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
use crate::service::members::NewMember;
use crate::service::points::{EarnRequest, RefundRequest, ReverseRequest, UseRequest};
use crate::service::{Services, accounts};

pub const PREFIX: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Member Portal API",
        version = "1",
        contact(name = "the operator of this portal"),
        description = "Members, points and levels for order systems and apps. Authenticate with \
                       `Authorization: Bearer <api key>` (staff create keys at /admin/api-keys or with \
                       `member-portal create-api-key`). Every error is `{\"code\", \"message\", ...}`. \
                       Earn, use, reverse and refund are idempotent on their references: a replay \
                       answers 200 with the original transaction, a new operation 201."
    ),
    modifiers(&Security),
    tags((name = "members"), (name = "points"), (name = "rewards"))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`member-portal create-api-key`, or /admin/api-keys). A key has scopes: \
                         `earn` (create members, earn, reverse), `use` (use, refund), `read` (every GET), \
                         `coupons` (redemptions and coupons); a request its key's scopes do not cover \
                         is answered 403 FORBIDDEN.",
                    ))
                    .build(),
            ),
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
        .routes(routes!(member_by_external_id))
        .routes(routes!(earn))
        .routes(routes!(spend))
        .routes(routes!(reverse))
        .routes(routes!(refund))
        .routes(routes!(batches))
        .routes(routes!(transactions))
        .routes(routes!(upgrade_progress))
        .routes(routes!(level_status))
        .routes(routes!(me_profile))
        .routes(routes!(rewards::rewards))
        .routes(routes!(rewards::redeem))
        .routes(routes!(rewards::coupons))
        .routes(routes!(rewards::validate))
        .routes(routes!(rewards::consume))
        .routes(routes!(rewards::release))
        .routes(routes!(rewards::cancel))
}

/// The routes, relative to [`PREFIX`], with the description at `/openapi.json`.
pub fn router() -> Router<Services> {
    let (router, doc) = api_routes().split_for_parts();
    let doc = Arc::new(described(absolute(doc)));
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

/// The description as served: [`openapi`] with what utoipa cannot say (a password that is
/// not one of the most common, nor one character repeated).
pub fn openapi_json() -> serde_json::Value {
    described(openapi())
}

fn described(doc: utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    let mut common: Vec<String> = crate::domain::COMMON_PASSWORDS
        .split_whitespace()
        .flat_map(|p| [p.to_owned(), p.to_uppercase()])
        .collect();
    common.sort();
    common.dedup();
    doc["servers"] = serde_json::json!([{ "url": "/", "description": "this portal" }]);
    for body in ["EarnBody", "ReverseBody", "ValidateBody"] {
        if let Some(amount) =
            doc.pointer_mut(&format!("/components/schemas/{body}/properties/amount"))
        {
            let description = amount["description"].clone();
            *amount = serde_json::json!({
                "description": description,
                "anyOf": [
                    { "type": "string", "example": "300.00",
                      "pattern": "^(0\\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,9}(\\.[0-9]{1,2})?)$" },
                    { "type": "integer", "minimum": 1, "maximum": 9_999_999_999i64 },
                    { "type": "null" },
                ],
            });
        }
    }
    if let Some(password) =
        doc.pointer_mut("/components/schemas/CreateMemberBody/properties/password")
    {
        password["not"] = serde_json::json!({
            "anyOf": [
                { "enum": common },
                { "type": "string", "pattern": "^\\s*(\\S)\\1*\\s*$" },
            ]
        });
    }
    doc
}

fn absolute(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    complete(&mut doc);
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(p, item)| (format!("{PREFIX}{p}"), item))
        .collect();
    doc
}

/// What every operation can answer besides its own responses, so a client generated from
/// the description knows every status the server sends: an unreadable request (400), a
/// body too large (413) or not JSON (415), a method the route does not have (405), and
/// PostgreSQL away (503). A `user_id` in the path is a positive integer.
fn complete(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post].into_iter().flatten() {
            let mut add = |status: &str, description: &str| {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description));
            };
            add(
                "400",
                "VALIDATION_ERROR: the request cannot be read (path, query or JSON syntax)",
            );
            add(
                "405",
                "VALIDATION_ERROR: this route does not take this method",
            );
            add(
                "503",
                "SERVICE_UNAVAILABLE: retry shortly with the same request",
            );
            if op.request_body.is_some() {
                add("413", "VALIDATION_ERROR: the body is larger than 64 KiB");
                add(
                    "415",
                    "VALIDATION_ERROR: the body is not sent as application/json",
                );
                add(
                    "422",
                    "VALIDATION_ERROR: a field does not fit (see `field`)",
                );
            }
            for p in op.parameters.iter_mut().flatten() {
                if p.name == "user_id" {
                    p.schema = Some(RefOr::T(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                            .minimum(Some(1))
                            .build()
                            .into(),
                    ));
                }
            }
        }
    }
}

/// A positive whole number written plainly: digits only, no sign, no leading zero.
fn strict_positive(s: &str) -> Option<i64> {
    let plain =
        (1..=18).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    plain.then(|| s.parse().ok()).flatten()
}

/// An amount of money as a client sends it: a string with up to two decimals ("300.50")
/// or a whole number (300). A JSON number with a fraction is refused, since a float cannot
/// say 300.10 exactly.
#[derive(Debug, Clone, Copy)]
pub struct ApiAmount(pub Decimal);

impl<'de> Deserialize<'de> for ApiAmount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ApiAmount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an amount such as \"300.50\" (a string, up to 2 decimals) or 300")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ApiAmount, E> {
                let (whole, cents) = v.split_once('.').unwrap_or((v, ""));
                let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                let ok = (1..=10).contains(&whole.len())
                    && digits(whole)
                    && (whole == "0" || !whole.starts_with('0'))
                    && (cents.len() <= 2 && digits(cents))
                    && (!v.contains('.') || !cents.is_empty());
                ok.then(|| v.parse::<Decimal>().ok())
                    .flatten()
                    .map(ApiAmount)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ApiAmount, E> {
                Ok(ApiAmount(Decimal::from(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ApiAmount, E> {
                Ok(ApiAmount(Decimal::from(v)))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ApiAmount, E> {
                Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The error body of every failure.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// VALIDATION_ERROR, UNAUTHORIZED, FORBIDDEN, MEMBER_NOT_FOUND, NOT_FOUND,
    /// INSUFFICIENT_POINTS, POINTS_PER_TRANSACTION_EXCEEDED, DAILY_POINTS_LIMIT_EXCEEDED,
    /// IDEMPOTENCY_CONFLICT, CONCURRENT_OPERATION, EMAIL_TAKEN, LEVEL_IN_USE, LEVEL_NOT_FOUND,
    /// REWARD_NOT_FOUND, REWARD_UNAVAILABLE, REWARD_OUT_OF_STOCK, REWARD_LIMIT_REACHED,
    /// LEVEL_TOO_LOW, COUPON_NOT_FOUND, COUPON_NOT_USABLE, SERVICE_UNAVAILABLE,
    /// INTERNAL_ERROR
    pub code: String,
    pub message: String,
    /// VALIDATION_ERROR: the field at fault
    pub field: Option<String>,
    /// INSUFFICIENT_POINTS
    pub required: Option<i64>,
    /// INSUFFICIENT_POINTS
    pub available: Option<i64>,
    /// DAILY_POINTS_LIMIT_EXCEEDED: the daily limit; REWARD_LIMIT_REACHED: coupons of the
    /// reward one member may hold
    pub limit: Option<i64>,
    /// COUPON_NOT_USABLE: the coupon's status (consumed, cancelled, expired, issued)
    pub status: Option<String>,
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
    /// earned, waiting out the return window (POINTS_PENDING_DAYS); not spendable yet
    pub pending: i64,
    /// the pending points by the moment they become spendable (in `expires_at`)
    pub pending_release: Vec<crate::domain::ExpiringPoints>,
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
    pub phone: Option<String>,
    /// the integrator's own customer id
    pub external_id: Option<String>,
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
            pending: p.pending,
            pending_release: p.pending_release,
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
            phone: p.phone,
            external_id: p.external_id,
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
    pub transaction_type: crate::domain::TransactionType,
    pub points_change: i64,
    pub balance_after: i64,
    pub reference_type: Option<String>,
    pub reference_id: Option<String>,
    pub description: String,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// reverse: points that could not be taken back; refund: points kept to settle what
    /// a reversal of the order they came from could not take back
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecovered: Option<i64>,
    /// earn: the upgrade it caused, or null
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<UpgradeResult>)]
    pub upgrade: Option<Option<UpgradeResult>>,
    /// earn: the campaigns' bonus lines it brought (each its own transaction, reference_type
    /// "campaign" and the campaign's id as reference_id)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<BonusView>>)]
    pub bonuses: Option<Vec<BonusView>>,
}

#[derive(Serialize, ToSchema)]
pub struct BonusView {
    pub id: i64,
    /// the campaign's id
    pub campaign_id: String,
    /// the campaign's name
    pub description: String,
    pub points_change: i64,
    pub balance_after: i64,
}

impl From<Transaction> for BonusView {
    fn from(t: Transaction) -> Self {
        Self {
            id: t.id,
            campaign_id: t.reference_id.unwrap_or_default(),
            description: t.description,
            points_change: t.points_change,
            balance_after: t.balance_after,
        }
    }
}

impl From<Transaction> for TransactionView {
    fn from(t: Transaction) -> Self {
        Self {
            unrecovered: t.transaction_type.undoes().then_some(t.unrecovered),
            upgrade: (t.transaction_type == crate::domain::TransactionType::Earn).then_some(None),
            bonuses: None,
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
        view.bonuses = Some(o.bonuses.into_iter().map(BonusView::from).collect());
    }
    (status, Json(view)).into_response()
}

// ---------------------------------------------------------------- members

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMemberBody {
    /// name@example.com: one @, a domain with a dot inside, no spaces or control
    /// characters (spaces around it are trimmed); unique whatever its case
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = "^\\s*[^@\\s\\x00-\\x1f\\x7f-\\u009f]+@[^@\\s.\\x00-\\x1f\\x7f-\\u009f][^@\\s\\x00-\\x1f\\x7f-\\u009f]*\\.[^@\\s\\x00-\\x1f\\x7f-\\u009f]*[^@\\s.\\x00-\\x1f\\x7f-\\u009f]\\s*$"
    )]
    email: String,
    /// 1 to 100 characters
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    display_name: String,
    /// 8 to 128 characters (8 besides surrounding spaces), not one of the most common
    /// passwords, not one character repeated, not the email or its name part; without
    /// one, a "set your password" link (valid 7 days) goes to the member through the outbox
    /// (webhook `member.password_reset`, purpose `set`)
    #[schema(
        min_length = 8,
        max_length = 128,
        pattern = "^\\s*\\S[\\s\\S]{6,}\\S\\s*$"
    )]
    password: Option<String>,
    /// 4 to 32 digits, spaces or dashes, with an optional leading +
    #[schema(
        min_length = 4,
        max_length = 32,
        pattern = "^\\s*\\+?[0-9][0-9 -]{3,30}\\s*$"
    )]
    phone: Option<String>,
    /// your own customer id for the member (unique); GET /members/by-external-id/{external_id}
    /// finds the member by it
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    external_id: Option<String>,
}

/// Create a member
///
/// A member on the entry level with 0 points and 0.00 spent, and a member code of the
/// business day. Without a password, a one-time "set your password" link goes out through the
/// outbox (webhook `member.password_reset`).
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
    let new = NewMember::parse(&b.email, &b.display_name, b.password.as_deref())?
        .with_identity(b.phone.as_deref(), b.external_id.as_deref())?;
    let without_password = new.password.is_none();
    let member = s.members.create_member(new).await?;
    if without_password {
        // the member sets one with a link sent through the outbox
        let mut conn = s
            .ctx
            .pool
            .acquire()
            .await
            .map_err(crate::error::Error::from)?;
        accounts::send_password_link(
            &s.ctx,
            &mut conn,
            member.user_id,
            accounts::LinkPurpose::Set,
            s.ctx.clock.now(),
        )
        .await?;
    }
    let profile = s.members.get_member_profile(member.user_id).await?;
    Ok((StatusCode::CREATED, Json(ProfileView::from(profile))).into_response())
}

/// A member's profile
///
/// Level, discount, benefits, points (never counting points past their expiry) and
/// upgrade progress.
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

/// A member by your customer id
///
/// The profile of the member created with this `external_id`.
#[utoipa::path(get, path = "/members/by-external-id/{external_id}", tag = "members", security(("api_key" = [])),
    params(("external_id" = String, Path, description = "the external_id the member was created with")),
    responses((status = 200, body = ProfileView), (status = 404, description = "NOT_FOUND", body = ErrorBody),
              (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn member_by_external_id(
    State(s): State<Services>,
    _key: ApiKey,
    axum::extract::Path(external_id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let user = s.members.by_external_id(&external_id).await?;
    let profile = s.members.get_member_profile(user).await?;
    Ok(Json(ProfileView::from(profile)).into_response())
}

/// The profile of the member logged in to this browser session (no API key).
///
/// For the portal's own pages and apps in the same browser: the session cookie
/// authenticates, not an API key.
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

/// Upgrade progress
///
/// The next level, its spend threshold, what the member has spent, what is left, and the
/// percentage.
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

/// How long the member keeps their level, and what keeps it at the review.
#[derive(Serialize, ToSchema)]
pub struct LevelStatusView {
    pub level: LevelView,
    /// the qualification window: lifetime, calendar_year or rolling
    pub window: &'static str,
    /// months of a rolling window (12 for a calendar year, 0 for lifetime)
    pub window_months: i32,
    /// spend of the window now, a string with two decimals
    #[schema(value_type = String, example = "1200.00")]
    pub qualifying_spent: Decimal,
    /// the level is kept until then; null: for good
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub kept_until: Option<OffsetDateTime>,
    /// set by hand by staff
    pub manual: bool,
    /// the coming review, if the level has one
    pub review: Option<ReviewView>,
    /// a deferred upgrade (the cooldown) is applied then
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub upgrade_due_at: Option<OffsetDateTime>,
}

#[derive(Serialize, ToSchema)]
pub struct ReviewView {
    /// spend before then adds up to keep the level
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub spend_by: OffsetDateTime,
    /// still to spend to keep the level ("0.00": kept)
    #[schema(value_type = String, example = "3800.00")]
    pub needed: Decimal,
    /// the level the review gives if the member does not
    pub drop_to: Option<String>,
    /// the member has been told (notification and webhook `level.will_downgrade`)
    pub noticed: bool,
}

/// Level status
///
/// The tier lifecycle of the program (`MEMBER_TIER_*`): the qualifying spend of its window,
/// how long the level is kept, what the member must spend by when to keep it, and a
/// deferred upgrade waiting for the cooldown.
#[utoipa::path(get, path = "/members/{user_id}/level-status", tag = "members", security(("api_key" = [])), params(("user_id" = i64, Path, description = "the member's user id")),
    responses((status = 200, body = LevelStatusView), (status = 404, body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn level_status(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
) -> Result<Response, ApiError> {
    let profile = s.members.get_member_profile(user).await?;
    let view = s.tiers.view(user, &profile.level).await?;
    let (window, window_months) = s.ctx.config.tiers.window_sql();
    Ok(Json(LevelStatusView {
        level: profile.level.into(),
        window,
        window_months,
        qualifying_spent: view.window_spent,
        kept_until: view.kept_until,
        manual: view.manual,
        review: view.keep.map(|k| ReviewView {
            spend_by: k.by,
            needed: k.needed,
            drop_to: k.drop_to,
            noticed: k.noticed,
        }),
        upgrade_due_at: view.upgrade_due_at,
    })
    .into_response())
}

// ---------------------------------------------------------------- points

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EarnBody {
    /// points before the level multiplier (the result is capped per transaction and per
    /// day: MEMBER_MAX_POINTS_PER_TRANSACTION, MEMBER_DAILY_POINTS_LIMIT); without it,
    /// floor(amount × MEMBER_POINTS_PER_YUAN)
    #[schema(minimum = 1, maximum = 1000000000)]
    base_points: Option<i64>,
    /// with source_id, the idempotency key, e.g. "order_complete"
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    source_type: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    source_id: String,
    /// order amount (> 0, 2 decimals): adds to total_spent, which decides the level
    #[schema(value_type = Option<String>, pattern = "^(0\\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,9}(\\.[0-9]{1,2})?)$", example = "300.00")]
    amount: Option<ApiAmount>,
    /// what was bought, for campaigns limited to one category
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    category: Option<String>,
}

/// Earn points for an order
///
/// Credits floor(base_points × the level's multiplier) as a new batch that expires after
/// MEMBER_POINTS_EXPIRY_DAYS, adds `amount` to the member's spend and upgrades the level
/// when the spend reaches the next threshold. Idempotent on (source_type, source_id).
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
        let amount = b.amount.map(|a| Money::parse("amount", a.0)).transpose()?;
        let base_points = match (b.base_points, amount) {
            (Some(base), _) => Points::parse("base_points", base)?,
            (None, Some(a)) => {
                let rate = s.ctx.config.points_per_yuan;
                let base = (a.get() * rate).floor().to_i64().unwrap_or(0);
                Points::parse("base_points", base).map_err(|_| {
                    Error::validation(
                        "amount",
                        format!("an order of {} earns no points at {rate} point(s) per yuan; send base_points", a.get()),
                    )
                })?
            }
            (None, None) => {
                return Err(Error::validation(
                    "base_points",
                    "send base_points, or the order amount to earn MEMBER_POINTS_PER_YUAN points per yuan",
                )
                .into());
            }
        };
        Ok(EarnRequest {
            user_id: user,
            base_points,
            source_type: Reference::parse("source_type", &b.source_type)?,
            source_id: Reference::parse("source_id", &b.source_id)?,
            amount,
            category: b.category.map(|c| Reference::parse("category", &c)).transpose()?,
        })
    });
    match parsed {
        Ok(req) => Ok(outcome(s.points.earn_points_as(Some(key.hash), req).await?)),
        Err(e) => {
            key.verify(&s, crate::service::accounts::Scope::Earn)
                .await?;
            Err(e)
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UseBody {
    #[schema(minimum = 1, maximum = 1000000000)]
    points: i64,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    usage_type: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    reference_id: String,
}

/// Spend points
///
/// Takes the points from the batches that expire first. Idempotent on (usage_type,
/// reference_id); never overdraws.
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
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    source_type: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    source_id: String,
    /// tells partial returns apart; without it the source is reversed once, in full
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    refund_id: Option<String>,
    /// amount returned (with refund_id): the share of everything returned so far,
    /// floor(earned × Σ returned / order amount), less what earlier returns took
    #[schema(value_type = Option<String>, pattern = "^(0\\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,9}(\\.[0-9]{1,2})?)$", example = "100.00")]
    amount: Option<ApiAmount>,
}

/// Take back the points of a returned order
///
/// In full, or for a partial return (with refund_id and amount) the share of everything
/// returned so far. Never makes the balance negative: what cannot be taken back is
/// `unrecovered`. Idempotent on (source_type, source_id, refund_id).
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
        amount: b.amount.map(|a| Money::parse("amount", a.0)).transpose()?,
    };
    Ok(outcome(s.points.reverse_points(req).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    usage_type: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    reference_id: String,
}

/// Cancel a use of points
///
/// Puts the points back into the batches they came from, with those batches' expiry
/// dates; points of an order whose reversal could not take them back are kept
/// (`unrecovered`). Idempotent on (usage_type, reference_id).
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

/// Live batches of points
///
/// Each batch with points left, first-expiring first.
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
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 100, default 20
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page
    #[param(pattern = "^([1-9][0-9]{0,17})?$")]
    pub cursor: Option<String>,
}

/// `limit` (1–100, default 20) and `cursor` of a page query, each refused clearly.
pub fn parse_page(q: &PageQuery) -> Result<(i64, Option<i64>), Error> {
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
        Some(c) => Some(strict_positive(c).ok_or_else(|| {
            Error::validation(
                "cursor",
                "cursor must be a next_cursor from an earlier page",
            )
        })?),
    };
    Ok((limit, cursor))
}

#[derive(Serialize, ToSchema)]
pub struct TransactionPage {
    items: Vec<TransactionView>,
    /// pass back as `cursor` for the next page; null on the last
    next_cursor: Option<String>,
}

/// Points history
///
/// Newest first, `limit` at a time; pass `next_cursor` back as `cursor` for the next page.
#[utoipa::path(get, path = "/members/{user_id}/points/transactions", tag = "points", security(("api_key" = [])),
    params(("user_id" = i64, Path, description = "the member's user id"), PageQuery),
    responses((status = 200, description = "newest first", body = TransactionPage), (status = 422, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
async fn transactions(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let (limit, cursor) = parse_page(&q)?;
    let (items, next) = s.points.history(user, None, cursor, limit).await?;
    Ok(Json(TransactionPage {
        items: items.into_iter().map(TransactionView::from).collect(),
        next_cursor: next.map(|n| n.to_string()),
    })
    .into_response())
}
