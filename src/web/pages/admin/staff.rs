//! Staff accounts: who can use the staff pages, and disabling an account at once.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{StaffPage, parse_id};
use crate::service::admin::StaffAccount;
use crate::web::error::PageError;
use crate::web::error::localized;
use crate::web::page::{Form, Query};
use crate::web::pages::confirm::{ConfirmPage, Confirmed};
use crate::web::view::PageCtx;

#[derive(Deserialize)]
pub struct StaffQuery {
    done: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/staff.html")]
pub struct StaffListPage {
    pub ctx: PageCtx,
    pub accounts: Vec<StaffAccount>,
    pub roles: [&'static str; 3],
    pub me: i64,
    pub notice: Option<String>,
    pub error: Option<String>,
}

async fn list(
    page: StaffPage,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let accounts = page.services.staff.staff_accounts().await?;
    Ok((
        status,
        StaffListPage {
            roles: crate::domain::StaffRole::ALL.map(crate::domain::StaffRole::as_str),
            me: page.actor,
            ctx: page.ctx,
            accounts,
            notice,
            error,
        },
    )
        .into_response())
}

pub async fn staff(page: StaffPage, Query(q): Query<StaffQuery>) -> Result<Response, PageError> {
    let notice = match q.done.as_deref() {
        Some("disabled") => Some(page.ctx.t("staff.done_disabled").to_string()),
        Some("enabled") => Some(page.ctx.t("staff.done_enabled").to_string()),
        Some("role") => Some(page.ctx.t("staff.done_role").to_string()),
        _ => None,
    };
    list(page, notice, None, StatusCode::OK).await
}

async fn set(
    page: StaffPage,
    raw: &str,
    disabled: bool,
    confirmed: bool,
) -> Result<Response, PageError> {
    let id: i64 = parse_id(raw)?;
    if disabled && !confirmed {
        return Ok(ConfirmPage::new(
            page.ctx,
            "staff.confirm_disable",
            "staff.confirm_yes",
            format!("/admin/staff/{id}/disable"),
            "/admin/staff".into(),
        )
        .response());
    }
    match page
        .services
        .staff
        .set_staff_disabled(page.actor, id, disabled)
        .await
    {
        Ok(()) => {
            let done = if disabled { "disabled" } else { "enabled" };
            Ok(Redirect::to(&format!("/admin/staff?done={done}")).into_response())
        }
        Err(e @ crate::error::Error::Validation { .. }) => {
            let message = localized(&e, page.ctx.lang);
            list(page, None, Some(message), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn disable(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<Confirmed>,
) -> Result<Response, PageError> {
    set(page, &id, true, f.yes()).await
}

pub async fn enable(page: StaffPage, Path(id): Path<String>) -> Result<Response, PageError> {
    set(page, &id, false, true).await
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

/// An admin gives another staff account a role.
pub async fn set_role(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<RoleForm>,
) -> Result<Response, PageError> {
    let id: i64 = parse_id(&id)?;
    match page
        .services
        .staff
        .set_staff_role(page.actor, id, &f.role)
        .await
    {
        Ok(()) => Ok(Redirect::to("/admin/staff?done=role").into_response()),
        Err(e @ crate::error::Error::Validation { .. }) => {
            let message = localized(&e, page.ctx.lang);
            list(page, None, Some(message), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}
