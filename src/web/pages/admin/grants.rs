//! Bulk grants for staff: from the member list's filter, confirmed with the number of
//! members it reaches, then followed on their own page while they run.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{SearchQuery, StaffPage, members_page, parse_id};
use crate::service::grants::Grant;
use crate::web::error::{PageError, localized};
use crate::web::page::Form;
use crate::web::pages::confirm::{ConfirmPage, Confirmed};
use crate::web::view::PageCtx;

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(flatten)]
    search: SearchQuery,
    #[serde(default)]
    points: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    key: String,
    #[serde(flatten)]
    confirmed: Confirmed,
}

pub async fn create(page: StaffPage, Form(f): Form<GrantForm>) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let back = |page: StaffPage, f: GrantForm, message: String| {
        members_page(page, f.search, Some((message, f.points, f.reason)))
    };
    let filter = match f.search.filter(&page.ctx) {
        Ok(filter) => filter,
        Err(e) => {
            let m = localized(&e, lang);
            return back(page, f, m).await;
        }
    };
    let points: i64 = match f.points.trim().parse() {
        Ok(p) => p,
        Err(_) => {
            let m = page.ctx.t("grant.points_needed").to_string();
            return back(page, f, m).await;
        }
    };
    if !f.confirmed.yes() {
        let members = page.services.grants.count(&filter).await?;
        if members == 0 || points <= 0 || f.reason.trim().is_empty() {
            let m = if members == 0 {
                page.ctx.t("grant.nobody").to_string()
            } else if points <= 0 {
                page.ctx.t("grant.points_needed").to_string()
            } else {
                page.ctx.t("grant.reason_needed").to_string()
            };
            return back(page, f, m).await;
        }
        let ctx = page.ctx.clone();
        let mut confirm = ConfirmPage::new(
            page.ctx,
            "grant.confirm_text",
            "grant.confirm_yes",
            "/admin/grants".into(),
            "/admin/members".into(),
        )
        .detail(ctx.t("grant.members").as_ref(), ctx.n(&members))
        .detail(ctx.t("grant.points_each").as_ref(), ctx.n(&points))
        .detail(
            ctx.t("grant.points_total").as_ref(),
            ctx.n(&members.saturating_mul(points)),
        )
        .detail(ctx.t("member.reason").as_ref(), f.reason.trim().to_owned());
        for (name, value) in [
            ("q", &f.search.q),
            ("level", &f.search.level),
            ("min_points", &f.search.min_points),
            ("max_points", &f.search.max_points),
            ("joined_from", &f.search.joined_from),
            ("joined_to", &f.search.joined_to),
            ("points", &f.points),
            ("reason", &f.reason),
            ("key", &f.key),
        ] {
            confirm = confirm.field(name, value);
        }
        return Ok(confirm.response());
    }
    let started = match page
        .services
        .grants
        .start(&filter, points, &f.reason, &f.key, Some(page.actor))
        .await
    {
        Ok(s) => s,
        Err(e) if e.code() == "VALIDATION_ERROR" => {
            let m = localized(&e, lang);
            return back(page, f, m).await;
        }
        Err(e) => return Err(e.into()),
    };
    if started.run {
        let grants = page.services.grants.clone();
        // runs to its end whatever happens to this request; progress on the grant's page
        tokio::spawn(async move {
            if let Err(e) = grants.run(started.id).await {
                tracing::error!(grant = started.id, error = %e, "bulk grant stopped; send its form again to resume");
            }
        });
    }
    Ok(Redirect::to(&format!("/admin/grants/{}", started.id)).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/grants.html")]
pub struct GrantsPage {
    pub ctx: PageCtx,
    pub grants: Vec<Grant>,
}

pub async fn grants(page: StaffPage) -> Result<Response, PageError> {
    let grants = page.services.grants.recent().await?;
    Ok(GrantsPage {
        ctx: page.ctx,
        grants,
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/grant.html")]
pub struct GrantPage {
    pub ctx: PageCtx,
    pub g: Grant,
}

impl GrantPage {
    /// 0–100: members granted of those the filter found at the start.
    pub fn percent(&self) -> i64 {
        if self.g.status == "done" || self.g.members_expected <= 0 {
            100
        } else {
            (self.g.members_done * 100 / self.g.members_expected).clamp(0, 99)
        }
    }
}

pub async fn grant(page: StaffPage, Path(id): Path<String>) -> Result<Response, PageError> {
    let id: i64 = parse_id(&id)?;
    let g = page.services.grants.get(id).await?;
    Ok(GrantPage { ctx: page.ctx, g }.into_response())
}
