//! The member's rewards: the catalogue ("ways to redeem"), redeeming one after a
//! confirmation, and their coupons with a QR code to show at checkout. Works without
//! JavaScript; with htmx the confirmation opens inside the reward's card.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::confirm::{ConfirmPage, Confirmed};
use crate::domain::Reference;
use crate::domain::rewards::{Coupon, CouponStatus, qr_svg};
use crate::error::Error;
use crate::service::rewards::{Canceller, Offer, RedeemRequest};
use crate::web::error::{PageError, localized};
use crate::web::page::{Form, Query, UserPage};
use crate::web::view::PageCtx;

#[derive(Template, WebTemplate)]
#[template(path = "pages/member/rewards.html")]
pub struct RewardsPage {
    pub ctx: PageCtx,
    pub balance: i64,
    pub offers: Vec<Offer>,
    pub error: Option<String>,
}

impl RewardsPage {
    pub fn refusal(&self, o: &Offer) -> Option<String> {
        refusal_text(&self.ctx, o)
    }
}

/// A staff account has no member profile: its reward pages are the staff ones.
fn staff_redirect(page: &UserPage) -> Option<Response> {
    page.user
        .is_staff()
        .then(|| Redirect::to("/admin/rewards").into_response())
}

async fn catalogue(
    page: UserPage,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let p = page
        .services
        .members
        .get_member_profile(page.user.user_id)
        .await?;
    let offers = page
        .services
        .rewards
        .catalogue(p.user_id, p.level.level_order, p.points.available)
        .await?;
    Ok((
        status,
        RewardsPage {
            ctx: page.ctx,
            balance: p.points.available,
            offers,
            error,
        },
    )
        .into_response())
}

pub async fn rewards(page: UserPage) -> Result<Response, PageError> {
    if let Some(r) = staff_redirect(&page) {
        return Ok(r);
    }
    catalogue(page, None, StatusCode::OK).await
}

/// The confirmation of a redemption: what it costs and leaves. The form carries a new
/// redemption id, so sending it twice (a double click, a reload) redeems once.
#[derive(Template, WebTemplate)]
#[template(path = "partials/member/redeem_confirm.html")]
pub struct RedeemConfirm {
    pub ctx: PageCtx,
    pub offer: Offer,
    pub balance: i64,
    pub redemption_id: String,
}

impl RedeemConfirm {
    /// the balance once redeemed, as shown
    pub fn after(&self) -> String {
        self.ctx.n(&(self.balance - self.offer.reward.points_cost))
    }

    pub fn refusal(&self) -> Option<String> {
        refusal_text(&self.ctx, &self.offer)
    }
}

/// Why the member cannot redeem it, as the refusal would say it.
fn refusal_text(ctx: &PageCtx, o: &Offer) -> Option<String> {
    o.refusal
        .map(|reason| localized(&Error::RewardRefused { reason }, ctx.lang))
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/member/redeem.html")]
pub struct RedeemPage {
    pub ctx: PageCtx,
    pub confirm: RedeemConfirm,
}

pub async fn redeem_confirm(page: UserPage, Path(id): Path<String>) -> Result<Response, PageError> {
    if let Some(r) = staff_redirect(&page) {
        return Ok(r);
    }
    let id = reward_id(&id)?;
    let p = page
        .services
        .members
        .get_member_profile(page.user.user_id)
        .await?;
    let offer = page
        .services
        .rewards
        .catalogue(p.user_id, p.level.level_order, p.points.available)
        .await?
        .into_iter()
        .find(|o| o.reward.id == id)
        .ok_or(Error::RewardNotFound { reward_id: id })?;
    let confirm = RedeemConfirm {
        ctx: page.ctx.clone(),
        offer,
        balance: p.points.available,
        redemption_id: format!("web-{}", crate::random_uuid().simple()),
    };
    if page.ctx.htmx {
        return Ok(confirm.into_response());
    }
    Ok(RedeemPage {
        ctx: page.ctx,
        confirm,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct RedeemForm {
    #[serde(default)]
    redemption_id: String,
}

pub async fn redeem(
    page: UserPage,
    Path(id): Path<String>,
    Form(f): Form<RedeemForm>,
) -> Result<Response, PageError> {
    if let Some(r) = staff_redirect(&page) {
        return Ok(r);
    }
    let lang = page.ctx.lang;
    let reward_id = reward_id(&id)?;
    let req =
        Reference::parse("redemption_id", &f.redemption_id).map(|redemption_id| RedeemRequest {
            user_id: page.user.user_id,
            reward_id,
            redemption_id,
        })?;
    match page.services.rewards.redeem(req).await {
        Ok(r) => {
            Ok(Redirect::to(&format!("/coupons/{}?done=redeemed", r.coupon.id)).into_response())
        }
        Err(
            e @ (Error::RewardRefused { .. }
            | Error::InsufficientPoints { .. }
            | Error::IdempotencyConflict { .. }
            | Error::ConcurrentOperation),
        ) => {
            let message = localized(&e, lang);
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::CONFLICT);
            catalogue(page, Some(message), status).await
        }
        Err(e) => Err(e.into()),
    }
}

fn reward_id(raw: &str) -> Result<i32, PageError> {
    raw.parse::<i32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(PageError(Error::NotFound { what: "reward" }))
}

fn coupon_id(raw: &str) -> Result<i64, PageError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(PageError(Error::CouponNotFound))
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/member/coupons.html")]
pub struct CouponsPage {
    pub ctx: PageCtx,
    pub coupons: Vec<Coupon>,
    pub next: Option<i64>,
}

#[derive(Deserialize)]
pub struct CouponsQuery {
    before: Option<String>,
}

const COUPONS_PER_PAGE: i64 = 30;

pub async fn coupons(page: UserPage, Query(q): Query<CouponsQuery>) -> Result<Response, PageError> {
    if let Some(r) = staff_redirect(&page) {
        return Ok(r);
    }
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(b) => Some(
            b.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::validation("cursor", "invalid cursor"))?,
        ),
    };
    let (coupons, next) = page
        .services
        .rewards
        .member_coupons(page.user.user_id, before, COUPONS_PER_PAGE)
        .await?;
    Ok(CouponsPage {
        ctx: page.ctx,
        coupons,
        next,
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/member/coupon.html")]
pub struct CouponPage {
    pub ctx: PageCtx,
    pub c: Coupon,
    /// the code as a QR code, for checkout to scan
    pub qr: String,
    pub notice: Option<String>,
}

impl CouponPage {
    pub fn usable(&self) -> bool {
        self.c.status == CouponStatus::Issued
    }
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

pub async fn coupon(
    page: UserPage,
    Path(id): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, PageError> {
    if let Some(r) = staff_redirect(&page) {
        return Ok(r);
    }
    let id = coupon_id(&id)?;
    let c = page
        .services
        .rewards
        .member_coupon_by_id(page.user.user_id, id)
        .await?;
    let label = format!("{} {}", page.ctx.t("coupon.qr_label"), c.display_code());
    let qr = qr_svg(&c.code, &label).unwrap_or_default();
    let notice = match q.done.as_deref() {
        Some("redeemed") => Some(page.ctx.t("coupon.done_redeemed").to_string()),
        Some("cancelled") => Some(page.ctx.t("coupon.done_cancelled").to_string()),
        _ => None,
    };
    Ok(CouponPage {
        ctx: page.ctx,
        c,
        qr,
        notice,
    }
    .into_response())
}

pub async fn cancel_coupon(
    page: UserPage,
    Path(id): Path<String>,
    Form(f): Form<Confirmed>,
) -> Result<Response, PageError> {
    if let Some(r) = staff_redirect(&page) {
        return Ok(r);
    }
    let id = coupon_id(&id)?;
    let user = page.user.user_id;
    let c = page.services.rewards.member_coupon_by_id(user, id).await?;
    if !f.yes() {
        let details = [
            ("coupon.reward", c.title.clone()),
            ("coupon.code", c.display_code()),
            ("coupon.points_back", page.ctx.n(&c.points)),
        ]
        .map(|(k, v)| (page.ctx.t(k).to_string(), v));
        let mut confirm = ConfirmPage::new(
            page.ctx,
            "coupon.confirm_cancel",
            "coupon.cancel_yes",
            format!("/coupons/{id}/cancel"),
            format!("/coupons/{id}"),
        );
        for (k, v) in details {
            confirm = confirm.detail(&k, v);
        }
        return Ok(confirm.response());
    }
    page.services
        .rewards
        .cancel(&c.code, Canceller::Member(user), None)
        .await?;
    Ok(Redirect::to(&format!("/coupons/{id}?done=cancelled")).into_response())
}
