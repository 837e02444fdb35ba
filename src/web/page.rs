//! What every page needs: language, CSRF token, the logged-in user for the navigation,
//! and helpers the templates call.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use tower_sessions::Session;

use super::error::{PageError, error_page};
use super::request::request_lang;
use super::session::{self, CurrentUser};
use super::view::{NavUser, PageCtx};
use crate::service::Services;

/// A page for anyone: the session, the user if logged in, and the page context.
pub struct Page {
    pub ctx: PageCtx,
    pub session: Session,
    pub user: Option<CurrentUser>,
    pub services: Services,
}

impl FromRequestParts<Services> for Page {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Services,
    ) -> Result<Self, Self::Rejection> {
        let lang = request_lang(parts).await;
        let session = session::from_parts(parts, services).await?;
        let now = services.ctx.clock.now();
        let mut user = session::current_user(&session, now).await?;
        // A staff session's power is the account's, not what the session remembers: an
        // account disabled or no longer staff is logged out at its next request.
        if let Some(u) = user.as_mut().filter(|u| u.is_staff()) {
            match services.staff.active_staff_role(u.user_id).await? {
                Some(role) => u.staff_role = Some(role),
                None => {
                    session
                        .flush()
                        .await
                        .map_err(|e| PageError::internal(format_args!("session: {e}")))?;
                    user = None;
                }
            }
        }
        // Read, not created: a session is stored only once something is put in it (the
        // token of a form page, a login, a language), so a visitor's 404 writes nothing.
        let csrf = session::existing_csrf(&session).await?.unwrap_or_default();
        let nav = match &user {
            None => None,
            Some(u) => {
                let name: Option<String> = session.get(session::NAME).await.ok().flatten();
                Some(NavUser {
                    display_name: name.unwrap_or_default(),
                    is_staff: u.is_staff(),
                    read_only: u.staff_role.is_some_and(|r| !r.writes()),
                    unread: services.notifications.unread_count(u.user_id).await?,
                })
            }
        };
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        Ok(Page {
            ctx: PageCtx {
                lang,
                csrf,
                user: nav,
                here,
                htmx: super::request::is_htmx(&parts.headers),
                offset: services.ctx.display_offset,
            },
            session,
            user,
            services: services.clone(),
        })
    }
}

impl Page {
    /// For a page with a form that a visitor without a session may see (login, sign-up):
    /// the session's CSRF token, created now if there is none.
    pub async fn with_form_token(mut self) -> Result<Self, PageError> {
        if self.ctx.csrf.is_empty() {
            self.ctx.csrf = session::csrf_token(&self.session).await?;
        }
        Ok(self)
    }
}

/// An answer that sends an htmx request's page to `to` (htmx follows `HX-Redirect`).
pub fn htmx_redirect(status: StatusCode, to: &str) -> Response {
    let mut r = status.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert("hx-redirect", v);
    }
    r
}

/// After a form succeeded: the browser goes to `to` (by `HX-Redirect` for htmx, which
/// would otherwise follow a redirect inside its swap).
pub fn go_to(htmx: bool, to: &str) -> Response {
    if htmx {
        htmx_redirect(StatusCode::OK, to)
    } else {
        Redirect::to(to).into_response()
    }
}

/// A page that needs a logged-in user: others go to the login page (htmx requests are
/// told to go there with `HX-Redirect`).
pub struct UserPage {
    pub ctx: PageCtx,
    pub session: Session,
    pub user: CurrentUser,
    pub services: Services,
}

pub enum LoginRequired {
    Error(PageError),
    Redirect {
        htmx: bool,
        next: String,
    },
    /// logged in, but not allowed here: the 403 page, with this user's navigation
    Forbidden(Box<PageCtx>),
}

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        match self {
            LoginRequired::Error(e) => e.into_response(),
            LoginRequired::Forbidden(ctx) => {
                let message = ctx.t("error.forbidden").to_owned();
                crate::web::error::page_in(*ctx, StatusCode::FORBIDDEN, message, None)
            }
            LoginRequired::Redirect { htmx, next } => {
                let target = format!("/login?next={}", encode(&next));
                if htmx {
                    htmx_redirect(StatusCode::UNAUTHORIZED, &target)
                } else {
                    Redirect::to(&target).into_response()
                }
            }
        }
    }
}

impl FromRequestParts<Services> for UserPage {
    type Rejection = LoginRequired;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Services,
    ) -> Result<Self, Self::Rejection> {
        let page = Page::from_request_parts(parts, services)
            .await
            .map_err(LoginRequired::Error)?;
        match page.user {
            Some(user) => Ok(UserPage {
                ctx: page.ctx,
                session: page.session,
                user,
                services: page.services,
            }),
            None => Err(LoginRequired::Redirect {
                htmx: page.ctx.htmx,
                next: page.ctx.here,
            }),
        }
    }
}

/// A form body for a page: one that cannot be read gets an error page in the reader's
/// language (axum's own rejection is plain text).
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let lang = request_lang(&parts).await;
        let refuse = |status| error_page(status, lang, lang.t("error.bad_form"), None);
        let bytes = axum::body::to_bytes(body, super::csrf::FORM_LIMIT)
            .await
            .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE))?;
        if has_nul(&bytes) {
            return Err(refuse(StatusCode::BAD_REQUEST));
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(Self(value)),
            Err(rejection) => Err(refuse(rejection.status())),
        }
    }
}

/// Whether a form or query string carries a NUL character, which no text field may hold
/// (PostgreSQL cannot store it).
fn has_nul(encoded: &[u8]) -> bool {
    form_urlencoded::parse(encoded).any(|(k, v)| k.contains('\0') || v.contains('\0'))
}

/// Query parameters for a page, with the same kind of error page as [`Form`].
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let nul = has_nul(parts.uri.query().unwrap_or("").as_bytes());
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) if !nul => Ok(Self(value)),
            result => {
                let status = match result {
                    Err(rejection) => rejection.status(),
                    Ok(_) => StatusCode::BAD_REQUEST,
                };
                let lang = request_lang(parts).await;
                Err(error_page(status, lang, lang.t("error.bad_query"), None))
            }
        }
    }
}

pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Only a path on this site: `/x`, never `//host`, `/\host` or a scheme.
pub fn safe_next(next: Option<&str>) -> Option<String> {
    let n = next?.trim();
    let ok = n.starts_with('/')
        && !n.starts_with("//")
        && !n.starts_with("/\\")
        && !n.chars().any(|c| c.is_control() || c == '\\');
    ok.then(|| n.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_after_login_stay_on_this_site() {
        assert_eq!(
            safe_next(Some("/points?type=use")).as_deref(),
            Some("/points?type=use")
        );
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "evil",
            "",
            "/a\\b",
            "/\r\nx",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(safe_next(None), None);
    }
}
