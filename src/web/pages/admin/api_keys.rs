//! API keys for staff: created with their scopes, shown once, revoked.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::error::Error;
use crate::service::accounts;
use crate::service::admin::ApiKeyRow;
use crate::web::error::{PageError, localized};
use crate::web::page::{Form, Query};
use crate::web::view::PageCtx;

use super::{DoneQuery, StaffPage, parse_id};
use crate::web::pages::confirm::{ConfirmPage, Confirmed};

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/api_keys.html")]
pub struct ApiKeysPage {
    pub ctx: PageCtx,
    pub keys: Vec<ApiKeyRow>,
    pub created: Option<String>,
    pub error: Option<String>,
    pub notice: Option<String>,
}

async fn api_keys_page(
    page: StaffPage,
    created: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    api_keys_page_with(page, created, error, None, status).await
}

async fn api_keys_page_with(
    page: StaffPage,
    created: Option<String>,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let keys = page.services.staff.api_keys().await?;
    Ok((
        status,
        ApiKeysPage {
            ctx: page.ctx,
            keys,
            created,
            error,
            notice,
        },
    )
        .into_response())
}

pub async fn api_keys(
    page: StaffPage,
    Query(done): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let notice = done.notice(&page.ctx, &[("revoked", "keys.done_revoked")]);
    api_keys_page_with(page, None, None, notice, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    name: String,
    /// `given` when the form had the scope boxes (a form without them gives every scope)
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    scope_earn: String,
    #[serde(default)]
    scope_use: String,
    #[serde(default)]
    scope_read: String,
    #[serde(default)]
    scope_coupons: String,
}

impl KeyForm {
    fn scopes(&self) -> Vec<accounts::Scope> {
        use accounts::Scope;
        if self.scopes != "given" {
            return Scope::ALL.to_vec();
        }
        [
            (&self.scope_earn, Scope::Earn),
            (&self.scope_use, Scope::Use),
            (&self.scope_read, Scope::Read),
            (&self.scope_coupons, Scope::Coupons),
        ]
        .into_iter()
        .filter(|(v, _)| !v.is_empty())
        .map(|(_, s)| s)
        .collect()
    }
}

pub async fn create_api_key(
    page: StaffPage,
    Form(f): Form<KeyForm>,
) -> Result<Response, PageError> {
    match accounts::create_api_key_scoped(
        &page.services.ctx,
        &f.name,
        &f.scopes(),
        Some(page.actor),
    )
    .await
    {
        Ok(key) => api_keys_page(page, Some(key), None, StatusCode::CREATED).await,
        Err(e @ Error::Validation { .. }) => {
            let msg = localized(&e, page.ctx.lang);
            api_keys_page(page, None, Some(msg), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(PageError(e)),
    }
}

pub async fn revoke_api_key(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<Confirmed>,
) -> Result<Response, PageError> {
    let id: i64 = parse_id(&id)?;
    if !f.yes() {
        return Ok(ConfirmPage::new(
            page.ctx,
            "keys.confirm_revoke",
            "keys.confirm_yes",
            format!("/admin/api-keys/{id}/revoke"),
            "/admin/api-keys".into(),
        )
        .response());
    }
    page.services
        .staff
        .revoke_api_key(id, Some(page.actor))
        .await?;
    Ok(Redirect::to("/admin/api-keys?done=revoked").into_response())
}
