//! Staff pages for the rewards catalogue (create, edit, stock, window, active) and for
//! coupons (find one by its code, cancel a redemption with a reason).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::{Date, Time};

use super::{DoneQuery, StaffPage, parse_id};
use crate::domain::Level;
use crate::domain::rewards::{Coupon, CouponStatus, Reward, RewardFields, RewardInput, RewardKind};
use crate::error::Error;
use crate::service::rewards::Canceller;
use crate::web::error::{PageError, localized};
use crate::web::page::{Form, Query};
use crate::web::pages::confirm::{ConfirmPage, Confirmed};
use crate::web::view::PageCtx;

/// The reward form as typed (every field text, so a bad value is shown back as it was).
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct RewardForm {
    pub name: String,
    pub description: String,
    pub kind: String,
    pub value: String,
    pub points_cost: String,
    pub stock: String,
    pub per_member_limit: String,
    pub min_level_id: String,
    /// first day it may be redeemed (business time zone), empty: from now
    pub starts_on: String,
    /// last day it may be redeemed, empty: no end
    pub ends_on: String,
    pub coupon_valid_days: String,
    pub is_active: Option<String>,
    /// the stock when the edit form was opened (hidden)
    pub stock_was: String,
}

impl RewardForm {
    fn new_reward() -> Self {
        Self {
            kind: "amount".into(),
            coupon_valid_days: "30".into(),
            is_active: Some("on".into()),
            ..Default::default()
        }
    }

    fn of(r: &Reward, ctx: &PageCtx) -> Self {
        Self {
            name: r.name.clone(),
            description: r.description.clone(),
            kind: r.kind.as_str().into(),
            value: r
                .value
                .map(|v| v.normalize().to_string())
                .unwrap_or_default(),
            points_cost: r.points_cost.to_string(),
            stock: r.stock.map(|n| n.to_string()).unwrap_or_default(),
            per_member_limit: r
                .per_member_limit
                .map(|n| n.to_string())
                .unwrap_or_default(),
            min_level_id: r.min_level_id.map(|n| n.to_string()).unwrap_or_default(),
            starts_on: r.starts_at.map(|t| ctx.date(&t)).unwrap_or_default(),
            ends_on: r.ends_at.map(|t| ctx.last_day(&t)).unwrap_or_default(),
            coupon_valid_days: r.coupon_valid_days.to_string(),
            is_active: r.is_active.then(|| "on".into()),
            stock_was: r.stock.map(|n| n.to_string()).unwrap_or_default(),
        }
    }

    /// The form checked: dates are whole days in the business time zone, the end day
    /// included.
    fn parse(&self, ctx: &PageCtx) -> Result<RewardInput, Error> {
        let day = |field: &'static str, s: &str| -> Result<Option<Date>, Error> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            let format = time::macros::format_description!("[year]-[month]-[day]");
            Date::parse(s, format)
                .map(Some)
                .map_err(|_| Error::validation(field, "a date such as 2026-12-31"))
        };
        let start = day("starts_on", &self.starts_on)?
            .map(|d| d.with_time(Time::MIDNIGHT).assume_offset(ctx.offset));
        let end = day("ends_on", &self.ends_on)?
            .and_then(Date::next_day)
            .map(|d| d.with_time(Time::MIDNIGHT).assume_offset(ctx.offset));
        RewardInput::parse(&RewardFields {
            name: &self.name,
            description: &self.description,
            kind: &self.kind,
            value: &self.value,
            points_cost: &self.points_cost,
            stock: &self.stock,
            per_member_limit: &self.per_member_limit,
            min_level_id: &self.min_level_id,
            starts_at: start,
            ends_at: end,
            coupon_valid_days: &self.coupon_valid_days,
            is_active: self.is_active.is_some(),
        })
        .map_err(|e| match e {
            // the end is a day on this form
            Error::Validation {
                field: "ends_at", ..
            } => Error::invalid("ends_on", crate::error::Invalid::LastDayBeforeFirst),
            e => e,
        })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/admin/reward_form.html")]
pub struct RewardFormView {
    pub ctx: PageCtx,
    pub form: RewardForm,
    pub action: String,
    pub levels: Vec<Level>,
    /// the field at fault and what to do about it
    pub error: Option<(String, String)>,
    pub save_key: &'static str,
}

impl RewardFormView {
    pub fn error_for(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    pub fn kinds(&self) -> [RewardKind; 3] {
        RewardKind::ALL
    }

    pub fn kind_label(&self, k: &RewardKind) -> crate::web::i18n::Text {
        self.ctx.t(&format!("reward.kind.{}", k.as_str()))
    }

    pub fn is_kind(&self, k: &RewardKind) -> bool {
        self.form.kind == k.as_str()
    }

    pub fn is_level(&self, id: &i32) -> bool {
        self.form.min_level_id == id.to_string()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/rewards.html")]
pub struct RewardsAdminPage {
    pub ctx: PageCtx,
    pub rewards: Vec<Reward>,
    pub form: RewardFormView,
    pub notice: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/reward_edit.html")]
pub struct RewardEditPage {
    pub ctx: PageCtx,
    pub reward: Reward,
    pub form: RewardFormView,
}

async fn form_view(
    page: &StaffPage,
    form: RewardForm,
    action: String,
    error: Option<&Error>,
    save_key: &'static str,
) -> Result<RewardFormView, PageError> {
    let levels = page.services.levels.active().await?;
    let error = error.map(|e| {
        let field = match e {
            Error::Validation { field, .. } => (*field).to_owned(),
            _ => "form".to_owned(),
        };
        (field, localized(e, page.ctx.lang))
    });
    Ok(RewardFormView {
        ctx: page.ctx.clone(),
        form,
        action,
        levels,
        error,
        save_key,
    })
}

async fn list_page(
    page: StaffPage,
    form: RewardForm,
    error: Option<Error>,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let rewards = page.services.rewards.all().await?;
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let form = form_view(
        &page,
        form,
        "/admin/rewards".into(),
        error.as_ref(),
        "reward.create",
    )
    .await?;
    Ok((
        status,
        RewardsAdminPage {
            ctx: page.ctx,
            rewards,
            form,
            notice,
        },
    )
        .into_response())
}

pub async fn rewards(
    page: StaffPage,
    Query(done): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let notice = done.notice(
        &page.ctx,
        &[
            ("created", "reward.done_created"),
            ("saved", "reward.done_saved"),
        ],
    );
    list_page(page, RewardForm::new_reward(), None, notice).await
}

pub async fn create(page: StaffPage, Form(f): Form<RewardForm>) -> Result<Response, PageError> {
    let input = match f.parse(&page.ctx) {
        Ok(i) => i,
        Err(e) => return list_page(page, f, Some(e), None).await,
    };
    match page.services.rewards.create(Some(page.actor), input).await {
        Ok(_) => Ok(Redirect::to("/admin/rewards?done=created").into_response()),
        Err(e @ Error::Validation { .. }) => list_page(page, f, Some(e), None).await,
        Err(e) => Err(e.into()),
    }
}

async fn edit_page(
    page: StaffPage,
    reward: Reward,
    form: RewardForm,
    error: Option<Error>,
) -> Result<Response, PageError> {
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let action = format!("/admin/rewards/{}", reward.id);
    let form = form_view(&page, form, action, error.as_ref(), "reward.save").await?;
    Ok((
        status,
        RewardEditPage {
            ctx: page.ctx,
            reward,
            form,
        },
    )
        .into_response())
}

pub async fn edit(page: StaffPage, Path(id): Path<String>) -> Result<Response, PageError> {
    let id: i32 = parse_id(&id)?;
    let reward = page.services.rewards.get(id).await?;
    let form = RewardForm::of(&reward, &page.ctx);
    edit_page(page, reward, form, None).await
}

pub async fn update(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<RewardForm>,
) -> Result<Response, PageError> {
    let id: i32 = parse_id(&id)?;
    let reward = page.services.rewards.get(id).await?;
    let input = match f.parse(&page.ctx) {
        Ok(i) => i,
        Err(e) => return edit_page(page, reward, f, Some(e)).await,
    };
    match page
        .services
        .rewards
        .update(
            Some(page.actor),
            id,
            input,
            f.stock_was.trim().parse::<i32>().ok(),
        )
        .await
    {
        Ok(_) => Ok(Redirect::to("/admin/rewards?done=saved").into_response()),
        Err(e @ Error::Validation { .. }) => edit_page(page, reward, f, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------- coupons

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/coupon_find.html")]
pub struct CouponFindPage {
    pub ctx: PageCtx,
    pub code: String,
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub struct CodeQuery {
    #[serde(default)]
    code: String,
}

pub async fn find(page: StaffPage, Query(q): Query<CodeQuery>) -> Result<Response, PageError> {
    if q.code.trim().is_empty() {
        return Ok(CouponFindPage {
            ctx: page.ctx,
            code: String::new(),
            error: None,
        }
        .into_response());
    }
    match page.services.rewards.coupon(&q.code).await {
        Ok(c) => Ok(Redirect::to(&format!("/admin/coupons/{}", c.id)).into_response()),
        Err(e @ (Error::CouponNotFound | Error::Validation { .. })) => {
            let error = match e {
                Error::CouponNotFound => page.ctx.t("coupon.not_found").to_string(),
                e => localized(&e, page.ctx.lang),
            };
            Ok((
                StatusCode::NOT_FOUND,
                CouponFindPage {
                    ctx: page.ctx,
                    code: q.code,
                    error: Some(error),
                },
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/coupon.html")]
pub struct CouponAdminPage {
    pub ctx: PageCtx,
    pub c: Coupon,
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl CouponAdminPage {
    pub fn cancellable(&self) -> bool {
        matches!(self.c.status, CouponStatus::Issued | CouponStatus::Expired)
    }
}

pub async fn coupon(
    page: StaffPage,
    Path(id): Path<String>,
    Query(done): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let id: i64 = parse_id(&id)?;
    let c = page.services.rewards.coupon_by_id(None, id).await?;
    let notice = done.notice(&page.ctx, &[("cancelled", "coupon.done_cancelled")]);
    Ok(CouponAdminPage {
        ctx: page.ctx,
        c,
        notice,
        error: None,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct CancelForm {
    #[serde(default)]
    reason: String,
    #[serde(flatten)]
    confirmed: Confirmed,
}

pub async fn cancel(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<CancelForm>,
) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let id: i64 = parse_id(&id)?;
    let c = page.services.rewards.coupon_by_id(None, id).await?;
    let reason = match crate::domain::parse_reason("reason", &f.reason) {
        Ok(r) => r,
        Err(e) => {
            let error = Some(localized(&e, lang));
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                CouponAdminPage {
                    ctx: page.ctx,
                    c,
                    notice: None,
                    error,
                },
            )
                .into_response());
        }
    };
    if !f.confirmed.yes() {
        let details = [
            ("coupon.reward", c.title.clone()),
            ("coupon.code", c.display_code()),
            ("coupon.points_back", page.ctx.n(&c.points)),
            ("member.reason", reason.clone()),
        ]
        .map(|(k, v)| (page.ctx.t(k).to_string(), v));
        let mut confirm = ConfirmPage::new(
            page.ctx,
            "coupon.confirm_cancel_staff",
            "coupon.cancel_yes",
            format!("/admin/coupons/{id}/cancel"),
            format!("/admin/coupons/{id}"),
        )
        .field("reason", &reason);
        for (k, v) in details {
            confirm = confirm.detail(&k, v);
        }
        return Ok(confirm.response());
    }
    match page
        .services
        .rewards
        .cancel(&c.code, Canceller::Staff(page.actor), Some(reason))
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/admin/coupons/{id}?done=cancelled")).into_response()),
        Err(e @ Error::CouponUnusable { .. }) => {
            let error = Some(localized(&e, lang));
            Ok((
                StatusCode::CONFLICT,
                CouponAdminPage {
                    ctx: page.ctx,
                    c,
                    notice: None,
                    error,
                },
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}
