//! Rewards and coupons for integrations: the catalogue, redemptions for a member, and the
//! checkout side of a coupon (validate, consume, release, cancel).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{ApiKey, ApiQuery, JsonBody, MemberId};
use super::{ApiAmount, ErrorBody, PageQuery, TransactionView, parse_page};
use crate::domain::rewards::{Coupon, CouponStatus, Reward, RewardKind};
use crate::domain::{Money, Reference};
use crate::service::Services;
use crate::service::rewards::{Canceller, CouponChange, RedeemRequest};

#[derive(Serialize, ToSchema)]
pub struct RewardView {
    pub id: i32,
    pub name: String,
    pub description: String,
    pub kind: RewardKind,
    /// amount: yuan off; percent: percent off; item: null
    #[schema(value_type = Option<String>, example = "10.00")]
    pub value: Option<Decimal>,
    pub points_cost: i64,
    /// left to redeem; null: no limit
    pub stock: Option<i32>,
    /// how many coupons of it one member may hold (not cancelled); null: no limit
    pub per_member_limit: Option<i32>,
    /// the lowest level that may redeem it; null: every level
    pub min_level_id: Option<i32>,
    pub min_level_name: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<OffsetDateTime>,
    /// a coupon is valid this many days from its redemption
    pub coupon_valid_days: i32,
}

impl From<Reward> for RewardView {
    fn from(r: Reward) -> Self {
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            kind: r.kind,
            value: r.value,
            points_cost: r.points_cost,
            stock: r.stock,
            per_member_limit: r.per_member_limit,
            min_level_id: r.min_level_id,
            min_level_name: r.min_level_name,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            coupon_valid_days: r.coupon_valid_days,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CouponView {
    /// 16 characters; checkout may send it with or without the dashes, in any case
    #[schema(example = "7K3M-Q9XT-2HVD-R4NP")]
    pub code: String,
    pub user_id: i64,
    pub reward_id: i32,
    /// the reward's name when it was redeemed
    pub title: String,
    pub kind: RewardKind,
    #[schema(value_type = Option<String>, example = "10.00")]
    pub value: Option<Decimal>,
    /// points it cost
    pub points: i64,
    pub redemption_id: String,
    pub status: CouponStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// the order it was used on (status consumed)
    pub order_id: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub consumed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cancelled_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<Coupon> for CouponView {
    fn from(c: Coupon) -> Self {
        Self {
            code: c.display_code(),
            user_id: c.user_id,
            reward_id: c.reward_id,
            title: c.title,
            kind: c.kind,
            value: c.value,
            points: c.points,
            redemption_id: c.redemption_id,
            status: c.status,
            expires_at: c.expires_at,
            order_id: c.order_id,
            consumed_at: c.consumed_at,
            cancelled_at: c.cancelled_at,
            created_at: c.created_at,
        }
    }
}

/// The active rewards
///
/// Cheapest first. Whether a given member may redeem one also depends on their level,
/// their points and the coupons of it they hold.
#[utoipa::path(get, path = "/rewards", tag = "rewards", security(("api_key" = [])),
    responses((status = 200, description = "active rewards, cheapest first", body = Vec<RewardView>),
              (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
pub async fn rewards(State(s): State<Services>, _key: ApiKey) -> Result<Response, ApiError> {
    let list = s.rewards.active().await?;
    Ok(Json(list.into_iter().map(RewardView::from).collect::<Vec<_>>()).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemBody {
    #[schema(minimum = 1, maximum = 2147483647)]
    reward_id: i64,
    /// the idempotency key of this redemption (e.g. the app's request id): the same id
    /// again answers 200 with the same coupon
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    redemption_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct RedemptionView {
    pub coupon: CouponView,
    /// the use of points it made (reference_type "reward")
    pub transaction: TransactionView,
}

/// Redeem a reward for a member
///
/// Spends the reward's points (first-expiring first), takes one of its stock and issues a
/// coupon, in one transaction. Idempotent on redemption_id.
#[utoipa::path(post, path = "/members/{user_id}/redemptions", tag = "rewards", security(("api_key" = [])),
    params(("user_id" = i64, Path, description = "the member's user id")),
    request_body = RedeemBody,
    responses((status = 201, description = "redeemed: the new coupon", body = RedemptionView),
              (status = 200, description = "a replay: the coupon of the first request", body = RedemptionView),
              (status = 404, description = "MEMBER_NOT_FOUND or REWARD_NOT_FOUND", body = ErrorBody),
              (status = 409, description = "IDEMPOTENCY_CONFLICT or CONCURRENT_OPERATION", body = ErrorBody),
              (status = 422, description = "INSUFFICIENT_POINTS, REWARD_UNAVAILABLE, REWARD_OUT_OF_STOCK, REWARD_LIMIT_REACHED, LEVEL_TOO_LOW or VALIDATION_ERROR", body = ErrorBody),
              (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
pub async fn redeem(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
    JsonBody(b): JsonBody<RedeemBody>,
) -> Result<Response, ApiError> {
    let reward_id = i32::try_from(b.reward_id)
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            crate::error::Error::validation("reward_id", "reward_id must be a positive integer")
        })?;
    let req = RedeemRequest {
        user_id: user,
        reward_id,
        redemption_id: Reference::parse("redemption_id", &b.redemption_id)?,
    };
    let r = s.rewards.redeem(req).await?;
    let status = if r.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(RedemptionView {
            coupon: r.coupon.into(),
            transaction: r.transaction.into(),
        }),
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct CouponPage {
    items: Vec<CouponView>,
    /// pass back as `cursor` for the next page; null on the last
    next_cursor: Option<String>,
}

/// A member's coupons
///
/// Newest first, `limit` at a time, every status.
#[utoipa::path(get, path = "/members/{user_id}/coupons", tag = "rewards", security(("api_key" = [])),
    params(("user_id" = i64, Path, description = "the member's user id"), PageQuery),
    responses((status = 200, description = "newest first", body = CouponPage), (status = 422, body = ErrorBody),
              (status = 404, description = "MEMBER_NOT_FOUND", body = ErrorBody),
              (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
pub async fn coupons(
    State(s): State<Services>,
    _key: ApiKey,
    MemberId(user): MemberId,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let (limit, cursor) = parse_page(&q)?;
    let (items, next) = s.rewards.member_coupons(user, cursor, limit).await?;
    Ok(Json(CouponPage {
        items: items.into_iter().map(CouponView::from).collect(),
        next_cursor: next.map(|n| n.to_string()),
    })
    .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// the coupon code, with or without dashes, any case
    #[schema(
        min_length = 16,
        max_length = 40,
        pattern = "^[ -]*([0-9A-HJ-NP-TV-Za-hj-np-tv-z][ -]*){16}$",
        example = "7K3M-Q9XT-2HVD-R4NP"
    )]
    code: String,
    /// the order amount, to be told the discount
    #[schema(value_type = Option<String>, pattern = "^(0\\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,9}(\\.[0-9]{1,2})?)$", example = "300.00")]
    amount: Option<ApiAmount>,
}

#[derive(Serialize, ToSchema)]
pub struct CouponCheckView {
    /// whether checkout may consume it now (status issued)
    pub usable: bool,
    /// what it takes off `amount` (amount and percent coupons, when an amount was sent)
    #[schema(value_type = Option<String>, example = "10.00")]
    pub discount: Option<Decimal>,
    pub coupon: CouponView,
}

/// Check a coupon at checkout
///
/// Whether the coupon can be used now, and what it takes off the order amount. Changes
/// nothing.
#[utoipa::path(post, path = "/coupons/validate", tag = "rewards", security(("api_key" = [])),
    request_body = ValidateBody,
    responses((status = 200, description = "the coupon and whether it can be used", body = CouponCheckView),
              (status = 404, description = "COUPON_NOT_FOUND", body = ErrorBody),
              (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
pub async fn validate(
    State(s): State<Services>,
    _key: ApiKey,
    JsonBody(b): JsonBody<ValidateBody>,
) -> Result<Response, ApiError> {
    let amount = b.amount.map(|a| Money::parse("amount", a.0)).transpose()?;
    let check = s.rewards.validate(&b.code, amount.map(Money::get)).await?;
    Ok(Json(CouponCheckView {
        usable: check.usable,
        discount: check.discount,
        coupon: check.coupon.into(),
    })
    .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CouponOrderBody {
    /// the coupon code, with or without dashes, any case
    #[schema(
        min_length = 16,
        max_length = 40,
        pattern = "^[ -]*([0-9A-HJ-NP-TV-Za-hj-np-tv-z][ -]*){16}$",
        example = "7K3M-Q9XT-2HVD-R4NP"
    )]
    code: String,
    /// the order the coupon is used on (the idempotency key)
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\u009f]*[^\\s\\x00-\\x1f\\x7f-\\u009f][^\\x00-\\x1f\\x7f-\\u009f]*$"
    )]
    order_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct CouponChangeView {
    /// true when this had been done already (nothing changed)
    pub replayed: bool,
    pub coupon: CouponView,
    /// cancel: the refund of the coupon's points into their original batches
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund: Option<TransactionView>,
}

fn change(c: CouponChange) -> Response {
    Json(CouponChangeView {
        replayed: c.replayed,
        coupon: c.coupon.into(),
        refund: c.refund.map(TransactionView::from),
    })
    .into_response()
}

/// Use a coupon on an order
///
/// Idempotent on order_id: the same order again answers with `replayed` true. A coupon used
/// on another order, cancelled or expired is refused with COUPON_NOT_USABLE and its `status`.
#[utoipa::path(post, path = "/coupons/consume", tag = "rewards", security(("api_key" = [])),
    request_body = CouponOrderBody,
    responses((status = 200, description = "used on this order", body = CouponChangeView),
              (status = 404, description = "COUPON_NOT_FOUND", body = ErrorBody),
              (status = 409, description = "COUPON_NOT_USABLE (with status)", body = ErrorBody),
              (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
pub async fn consume(
    State(s): State<Services>,
    _key: ApiKey,
    JsonBody(b): JsonBody<CouponOrderBody>,
) -> Result<Response, ApiError> {
    let order = Reference::parse("order_id", &b.order_id)?;
    Ok(change(s.rewards.consume(&b.code, &order).await?))
}

/// Give a coupon back when its order is cancelled
///
/// A coupon used on this order is usable again (until its expiry). One not in use is left
/// as it is (`replayed` true); one used on another order is refused.
#[utoipa::path(post, path = "/coupons/release", tag = "rewards", security(("api_key" = [])),
    request_body = CouponOrderBody,
    responses((status = 200, description = "usable again", body = CouponChangeView),
              (status = 404, description = "COUPON_NOT_FOUND", body = ErrorBody),
              (status = 409, description = "COUPON_NOT_USABLE: used on another order, or cancelled", body = ErrorBody),
              (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
pub async fn release(
    State(s): State<Services>,
    _key: ApiKey,
    JsonBody(b): JsonBody<CouponOrderBody>,
) -> Result<Response, ApiError> {
    let order = Reference::parse("order_id", &b.order_id)?;
    Ok(change(s.rewards.release(&b.code, &order).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// the coupon code, with or without dashes, any case
    #[schema(
        min_length = 16,
        max_length = 40,
        pattern = "^[ -]*([0-9A-HJ-NP-TV-Za-hj-np-tv-z][ -]*){16}$",
        example = "7K3M-Q9XT-2HVD-R4NP"
    )]
    code: String,
}

/// Cancel a redemption
///
/// For a coupon not used (issued or expired): its points go back into the batches they came
/// from, with those batches' expiry dates, and the reward's stock is put back. Cancelling
/// again answers with `replayed` true.
#[utoipa::path(post, path = "/coupons/cancel", tag = "rewards", security(("api_key" = [])),
    request_body = CancelBody,
    responses((status = 200, description = "cancelled, points refunded", body = CouponChangeView),
              (status = 404, description = "COUPON_NOT_FOUND", body = ErrorBody),
              (status = 409, description = "COUPON_NOT_USABLE: used on an order (release it first)", body = ErrorBody),
              (status = 401, description = "missing, unknown or revoked API key", body = ErrorBody)))]
pub async fn cancel(
    State(s): State<Services>,
    _key: ApiKey,
    JsonBody(b): JsonBody<CancelBody>,
) -> Result<Response, ApiError> {
    Ok(change(
        s.rewards
            .cancel(&b.code, Canceller::Integration, None)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    const CODE_PATTERN: &str = "^[ -]*([0-9A-HJ-NP-TV-Za-hj-np-tv-z][ -]*){16}$";

    #[test]
    fn every_code_the_schema_allows_is_read_as_a_code() {
        // the pattern is repeated in the attributes (utoipa takes literals)
        let source = include_str!("rewards.rs");
        assert_eq!(
            source.matches(CODE_PATTERN).count(),
            4,
            "this test + 3 bodies"
        );
        for s in [
            "abcd-efgh-jkmn-pqrs",
            "0000 1111 2222 3333",
            "--ABCDEFGHJKMNPQRS--",
            "zzzzzzzzzzzzzzzz",
        ] {
            assert!(crate::domain::rewards::normalize_code(s).is_some(), "{s}");
        }
    }
}
