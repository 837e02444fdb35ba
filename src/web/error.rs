//! Errors as pages: a message a person can act on, and for anything unexpected a request
//! id that is also in the log. Internals are never shown.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::i18n::Lang;
use super::request;
use super::view::PageCtx;
use crate::error::Error;

#[derive(Template, WebTemplate)]
#[template(path = "pages/error.html")]
pub struct ErrorPage {
    pub ctx: PageCtx,
    pub message: String,
    pub request_id: Option<String>,
}

/// The same message for an htmx request, shown in the page's message area (`#flash` in
/// the layout) instead of replacing whatever the request meant to swap.
#[derive(Template)]
#[template(path = "partials/flash.html")]
struct Flash<'a> {
    ctx: &'a PageCtx,
    message: &'a str,
    request_id: Option<&'a str>,
}

pub fn error_page(
    status: StatusCode,
    lang: Lang,
    message: &str,
    request_id: Option<String>,
) -> Response {
    page_in(PageCtx::bare(lang), status, message.to_owned(), request_id)
}

/// An error page with a request's own context (its user's navigation); for an htmx
/// request, the message alone, retargeted to the message area.
pub fn page_in(
    ctx: PageCtx,
    status: StatusCode,
    message: String,
    request_id: Option<String>,
) -> Response {
    if ctx.htmx || request::htmx() {
        let flash = Flash {
            ctx: &ctx,
            message: &message,
            request_id: request_id.as_deref(),
        };
        return match flash.render() {
            Ok(html) => (
                status,
                [
                    ("hx-retarget", "#flash"),
                    ("hx-reswap", "innerHTML"),
                    ("hx-reselect", "#flash-message"),
                ],
                Html(html),
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "error fragment failed");
                status.into_response()
            }
        };
    }
    let page = ErrorPage {
        ctx,
        message,
        request_id,
    };
    (status, page).into_response()
}

/// An error on a page, rendered in the reader's language (the request's, see
/// [`request::lang`]): handlers return it with `?` on any service result.
#[derive(Debug)]
pub struct PageError(pub Error);

impl From<Error> for PageError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

impl PageError {
    pub fn internal(what: impl std::fmt::Display) -> Self {
        Self(Error::Internal(anyhow::anyhow!("{what}")))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let lang = request::lang();
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match &self.0 {
            Error::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                error_page(status, lang, lang.t("error.unavailable"), None)
            }
            Error::Internal(e) => {
                // the request's own id: the one in its x-request-id header and its span
                let id = request::id();
                tracing::error!(request_id = %id, error = ?e, "page failed");
                error_page(status, lang, lang.t("error.internal"), Some(id))
            }
            Error::Forbidden => error_page(status, lang, lang.t("error.forbidden"), None),
            Error::RewardNotFound { .. } | Error::CouponNotFound => {
                error_page(StatusCode::NOT_FOUND, lang, &localized(&self.0, lang), None)
            }
            Error::NotFound { .. } | Error::MemberNotFound { .. } | Error::LevelNotFound { .. } => {
                error_page(StatusCode::NOT_FOUND, lang, lang.t("error.not_found"), None)
            }
            other => error_page(status, lang, &localized(other, lang), None),
        }
    }
}

/// A domain error as a sentence in the reader's language, with its figures.
pub fn localized(err: &Error, lang: Lang) -> String {
    let t = |k: &str| lang.t(k).to_owned();
    match err {
        Error::Validation {
            field,
            message,
            reason,
        } => match lang {
            // the services explain themselves in English, with the specifics
            Lang::En => message.clone(),
            // a reason known by name, in Chinese
            Lang::Zh if reason.is_some() => {
                t(&format!("error.reason.{}", reason.map_or("", |r| r.key())))
            }
            Lang::Zh => {
                let key = format!("error.field.{field}");
                match field {
                    &"source_id" | &"source_type" | &"usage_type" | &"reference_id" | &"before" => {
                        t("error.field.other")
                    }
                    _ if super::i18n::ENTRIES.iter().any(|(k, _, _)| *k == key) => t(&key),
                    _ => t("error.field.other"),
                }
            }
        },
        Error::InsufficientPoints {
            required,
            available,
        } => t("error.insufficient_points")
            .replace("{required}", &required.to_string())
            .replace("{available}", &available.to_string()),
        Error::PointsPerTransactionExceeded { max, actual } => t("error.per_transaction")
            .replace("{max}", &max.to_string())
            .replace("{actual}", &actual.to_string()),
        Error::DailyPointsLimitExceeded {
            limit,
            earned_today,
            requested,
        } => t("error.daily_limit")
            .replace("{limit}", &limit.to_string())
            .replace("{earned}", &earned_today.to_string())
            .replace("{requested}", &requested.to_string()),
        Error::IdempotencyConflict { .. } => t("error.idempotency"),
        Error::ConcurrentOperation => t("error.concurrent"),
        Error::LevelInUse { members, .. } => {
            t("error.level_in_use").replace("{members}", &members.to_string())
        }
        Error::EmailTaken => t("register.taken"),
        Error::RewardRefused { reason } => match reason {
            crate::domain::rewards::RewardRefusal::LimitReached { limit } => {
                t(reason.text_key()).replace("{limit}", &limit.to_string())
            }
            _ => t(reason.text_key()),
        },
        Error::CouponUnusable { status, .. } => t(&format!("coupon.unusable.{}", status.as_str())),
        Error::RewardNotFound { .. } => t("error.reward_not_found"),
        Error::CouponNotFound => t("error.coupon_not_found"),
        Error::Unauthorized => t("login.expired"),
        Error::Forbidden | Error::KeyScope { .. } => t("error.forbidden"),
        Error::MemberNotFound { .. } | Error::LevelNotFound { .. } | Error::NotFound { .. } => {
            t("error.not_found")
        }
        Error::Unavailable(_) => t("error.unavailable"),
        Error::Internal(_) => t("error.internal"),
    }
}
