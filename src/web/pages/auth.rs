//! Login, sign-up, logout, language.

use askama::Template;
use askama_web::WebTemplate;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::error::Error;
use crate::service::accounts::{self, Login};
use crate::service::members::NewMember;
use crate::web::error::{PageError, localized};
use crate::web::i18n::Lang;
use crate::web::page::{Form, Page, Query, safe_next};
use crate::web::view::PageCtx;
use crate::web::{ClientIp, session};

#[derive(Template, WebTemplate)]
#[template(path = "pages/auth/login.html")]
pub struct LoginPage {
    pub ctx: PageCtx,
    pub email: String,
    pub next: String,
    pub error: Option<String>,
    /// after a password was set, or the account closed
    pub notice: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    done: Option<String>,
}

fn landing(user_role: &str) -> &'static str {
    if user_role == "staff" {
        "/admin"
    } else {
        "/profile"
    }
}

pub async fn login_form(page: Page, Query(q): Query<NextQuery>) -> Result<Response, PageError> {
    if let Some(u) = &page.user {
        return Ok(Redirect::to(landing(&u.role)).into_response());
    }
    let page = page.with_form_token().await?;
    let notice = match q.done.as_deref() {
        Some("password") => Some(page.ctx.t("reset.done").to_string()),
        Some("closed") => Some(page.ctx.t("account.closed").to_string()),
        _ => None,
    };
    Ok(LoginPage {
        ctx: page.ctx,
        email: String::new(),
        next: safe_next(q.next.as_deref()).unwrap_or_default(),
        error: None,
        notice,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn login(
    page: Page,
    ClientIp(client): ClientIp,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let outcome = accounts::login(&page.services.ctx, &form.email, &form.password, client).await?;
    let error = match outcome {
        Login::Ok {
            user_id,
            role,
            display_name,
        } => {
            let now = page.services.ctx.clock.now();
            session::log_in(&page.session, user_id, &role, &display_name, now).await?;
            let to = safe_next(form.next.as_deref()).unwrap_or_else(|| landing(&role).to_owned());
            return Ok(Redirect::to(&to).into_response());
        }
        Login::Invalid => lang.t("login.invalid").to_owned(),
        Login::Disabled => lang.t("login.disabled").to_owned(),
        Login::Throttled { minutes } => lang
            .t("login.throttled")
            .replace("{minutes}", &minutes.to_string()),
    };
    Ok((
        axum::http::StatusCode::UNAUTHORIZED,
        LoginPage {
            ctx: page.ctx,
            email: form.email.trim().to_owned(),
            next: safe_next(form.next.as_deref()).unwrap_or_default(),
            error: Some(error),
            notice: None,
        },
    )
        .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/auth/register.html")]
pub struct RegisterPage {
    pub ctx: PageCtx,
    pub email: String,
    pub display_name: String,
    pub errors: FieldErrors,
}

/// Messages next to their fields.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors {
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub password: Option<String>,
    pub confirm: Option<String>,
}

impl FieldErrors {
    pub fn any(&self) -> bool {
        self.email.is_some()
            || self.display_name.is_some()
            || self.password.is_some()
            || self.confirm.is_some()
    }
}

pub async fn register_form(page: Page) -> Result<Response, PageError> {
    if let Some(u) = &page.user {
        return Ok(Redirect::to(landing(&u.role)).into_response());
    }
    let page = page.with_form_token().await?;
    Ok(RegisterPage {
        ctx: page.ctx,
        email: String::new(),
        display_name: String::new(),
        errors: FieldErrors::default(),
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn register(page: Page, Form(form): Form<RegisterForm>) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let mut errors = FieldErrors::default();
    let field_error = |e: &Error| -> Option<(&'static str, String)> {
        match e {
            // the reason itself where it has a name (a common password, too short), else
            // what the field needs
            Error::Validation { field, .. } => Some((field, localized(e, lang))),
            _ => None,
        }
    };
    for (field, parsed) in [
        (
            "email",
            NewMember::parse(&form.email, "x", None).map(|_| ()),
        ),
        (
            "display_name",
            crate::domain::parse_display_name(&form.display_name).map(|_| ()),
        ),
        (
            "password",
            crate::domain::parse_password(&form.password, &form.email).map(|_| ()),
        ),
    ] {
        if let Err(e) = parsed {
            let msg = field_error(&e)
                .map(|(_, m)| m)
                .unwrap_or_else(|| e.to_string());
            match field {
                "email" => errors.email = Some(msg),
                "display_name" => errors.display_name = Some(msg),
                _ => errors.password = Some(msg),
            }
        }
    }
    if errors.password.is_none() && form.password != form.confirm {
        errors.confirm = Some(lang.t("register.mismatch").to_owned());
    }
    if !errors.any() {
        let new = NewMember::parse(&form.email, &form.display_name, Some(&form.password))?;
        match page.services.members.create_member(new).await {
            Ok(member) => {
                let now = page.services.ctx.clock.now();
                session::log_in(
                    &page.session,
                    member.user_id,
                    "member",
                    &member.display_name,
                    now,
                )
                .await?;
                return Ok(Redirect::to("/profile").into_response());
            }
            Err(Error::EmailTaken) => errors.email = Some(lang.t("register.taken").to_owned()),
            Err(e) => return Err(PageError(e)),
        }
    }
    Ok((
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        RegisterPage {
            ctx: page.ctx,
            email: form.email.trim().to_owned(),
            display_name: form.display_name.trim().to_owned(),
            errors,
        },
    )
        .into_response())
}

pub async fn logout(page: Page) -> Result<Response, PageError> {
    page.session
        .flush()
        .await
        .map_err(|e| PageError::internal(format_args!("logout: {e}")))?;
    Ok(Redirect::to("/login").into_response())
}

#[derive(Deserialize)]
pub struct LangForm {
    lang: String,
    next: Option<String>,
}

/// Switches the language for this session and goes back where the reader was.
pub async fn set_language(page: Page, Form(form): Form<LangForm>) -> Result<Response, PageError> {
    let lang = Lang::parse(&form.lang).unwrap_or(page.ctx.lang);
    let value = if lang == Lang::En { "en" } else { "zh" };
    page.session
        .insert(session::LANG, value)
        .await
        .map_err(|e| PageError::internal(format_args!("language: {e}")))?;
    let to = safe_next(form.next.as_deref()).unwrap_or_else(|| "/".into());
    Ok(Redirect::to(&to).into_response())
}
