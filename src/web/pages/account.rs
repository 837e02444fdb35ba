//! A member's account: a forgotten password (a one-time link), the data the portal holds
//! about them (JSON download), and closing the account.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::error::Error;
use crate::service::accounts;
use crate::web::error::{PageError, localized};
use crate::web::page::{Form, Page, Query, UserPage};
use crate::web::view::PageCtx;

#[derive(Template, WebTemplate)]
#[template(path = "pages/auth/forgot.html")]
pub struct ForgotPage {
    pub ctx: PageCtx,
    pub sent: bool,
}

pub async fn forgot_form(page: Page) -> Result<Response, PageError> {
    let page = page.with_form_token().await?;
    Ok(ForgotPage {
        ctx: page.ctx,
        sent: false,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    email: String,
}

/// The same answer whether or not the email has an account.
pub async fn forgot(page: Page, Form(f): Form<ForgotForm>) -> Result<Response, PageError> {
    accounts::request_password_link(&page.services.ctx, &f.email).await?;
    Ok(ForgotPage {
        ctx: page.ctx,
        sent: true,
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/auth/reset.html")]
pub struct ResetPage {
    pub ctx: PageCtx,
    pub token: String,
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn reset_form(page: Page, Query(q): Query<TokenQuery>) -> Result<Response, PageError> {
    let page = page.with_form_token().await?;
    Ok(ResetPage {
        ctx: page.ctx,
        token: q.token,
        error: None,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

pub async fn reset(page: Page, Form(f): Form<ResetForm>) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    match accounts::reset_password(&page.services.ctx, &f.token, &f.password).await {
        Ok(_) => {
            // the account's sessions are ended; this browser's too, whoever it was
            // logged in as, so it logs in again with the new password
            page.session
                .flush()
                .await
                .map_err(|e| Error::Internal(anyhow::anyhow!("session: {e}")))?;
            Ok(Redirect::to("/login?done=password").into_response())
        }
        Err(e @ Error::Validation { .. }) => {
            let error = match &e {
                Error::Validation { field: "token", .. } => lang.t("reset.bad_link").to_owned(),
                e => localized(e, lang),
            };
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                ResetPage {
                    ctx: page.ctx,
                    token: f.token,
                    error: Some(error),
                },
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/member/account.html")]
pub struct AccountPage {
    pub ctx: PageCtx,
    pub error: Option<String>,
}

pub async fn account(page: UserPage) -> Result<Response, PageError> {
    Ok(AccountPage {
        ctx: page.ctx,
        error: None,
    }
    .into_response())
}

/// Everything the portal holds about the member, as one JSON file.
pub async fn export(page: UserPage) -> Result<Response, PageError> {
    let data = page.services.members.export(page.user.user_id).await?;
    let body = serde_json::to_vec_pretty(&data).map_err(|e| Error::Internal(e.into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"member-data.json\"",
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct CloseForm {
    #[serde(default)]
    password: String,
    /// the box that says the points lapse: a form without it closes nothing
    #[serde(default)]
    understood: String,
}

pub async fn close(page: UserPage, Form(f): Form<CloseForm>) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    if page.user.is_staff() {
        return Err(Error::Forbidden.into());
    }
    if f.understood != "yes" {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            AccountPage {
                error: Some(page.ctx.t("account.close_tick").to_string()),
                ctx: page.ctx,
            },
        )
            .into_response());
    }
    match accounts::close_account(&page.services.ctx, page.user.user_id, &f.password).await {
        Ok(()) => {
            page.session
                .flush()
                .await
                .map_err(|e| Error::Internal(anyhow::anyhow!("session: {e}")))?;
            Ok(Redirect::to("/login?done=closed").into_response())
        }
        Err(e @ Error::Validation { .. }) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            AccountPage {
                error: Some(localized(&e, lang)),
                ctx: page.ctx,
            },
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}
