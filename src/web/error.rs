//! Errors as pages: a message a person can act on, and for anything unexpected a request
//! id that is also in the log. Internals are never shown.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::i18n::Lang;
use super::page::PageCtx;
use crate::error::Error;

#[derive(Template, WebTemplate)]
#[template(path = "pages/error.html")]
pub struct ErrorPage {
    pub ctx: PageCtx,
    pub message: String,
    pub request_id: Option<String>,
}

pub fn error_page(
    status: StatusCode,
    lang: Lang,
    message: &str,
    request_id: Option<String>,
) -> Response {
    page_in(PageCtx::bare(lang), status, message.to_owned(), request_id)
}

/// An error page with a request's own context (its user's navigation).
pub fn page_in(
    ctx: PageCtx,
    status: StatusCode,
    message: String,
    request_id: Option<String>,
) -> Response {
    let page = ErrorPage {
        ctx,
        message,
        request_id,
    };
    (status, page).into_response()
}

/// An error on a page, rendered in the reader's language.
pub struct PageError {
    pub lang: Lang,
    pub error: Error,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match &self.error {
            Error::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                error_page(status, self.lang, self.lang.t("err.unavailable"), None)
            }
            Error::Internal(e) => {
                let id = crate::random_uuid().simple().to_string();
                tracing::error!(request_id = %id, error = ?e, "page failed");
                error_page(status, self.lang, self.lang.t("error.internal"), Some(id))
            }
            Error::Forbidden => error_page(status, self.lang, self.lang.t("error.forbidden"), None),
            Error::NotFound { .. }
            | Error::MemberNotFound { .. }
            | Error::LevelNotFound { .. }
            | Error::RewardNotFound { .. }
            | Error::CouponNotFound => error_page(
                StatusCode::NOT_FOUND,
                self.lang,
                self.lang.t("error.not_found"),
                None,
            ),
            other => error_page(status, self.lang, &localized(other, self.lang), None),
        }
    }
}

/// A domain error as a sentence in the reader's language, with its figures.
pub fn localized(err: &Error, lang: Lang) -> String {
    let t = |k: &str| lang.t(k).to_owned();
    match err {
        Error::Validation { field, message } => match lang {
            // the services explain themselves in English, with the specifics
            Lang::En => message.clone(),
            Lang::Zh => {
                let key = format!("verr.{field}");
                match field {
                    &"email" | &"display_name" | &"password" => t(&format!("error.{field}")),
                    &"source_id" | &"source_type" | &"usage_type" | &"reference_id" | &"before" => {
                        t("verr.other")
                    }
                    _ if super::i18n::ENTRIES.iter().any(|(k, _, _)| *k == key) => t(&key),
                    _ => t("verr.other"),
                }
            }
        },
        Error::InsufficientPoints {
            required,
            available,
        } => t("err.insufficient_points")
            .replace("{required}", &required.to_string())
            .replace("{available}", &available.to_string()),
        Error::PointsPerTransactionExceeded { max, actual } => t("err.per_transaction")
            .replace("{max}", &max.to_string())
            .replace("{actual}", &actual.to_string()),
        Error::DailyPointsLimitExceeded {
            limit,
            earned_today,
            requested,
        } => t("err.daily_limit")
            .replace("{limit}", &limit.to_string())
            .replace("{earned}", &earned_today.to_string())
            .replace("{requested}", &requested.to_string()),
        Error::IdempotencyConflict { .. } => t("err.idempotency"),
        Error::ConcurrentOperation | Error::KeyRace => t("err.concurrent"),
        Error::LevelInUse { members, .. } => {
            t("err.level_in_use").replace("{members}", &members.to_string())
        }
        Error::EmailTaken => t("register.taken"),
        Error::RewardRefused { reason } => match reason {
            crate::domain::rewards::RewardRefusal::LimitReached { limit } => {
                t(reason.text_key()).replace("{limit}", &limit.to_string())
            }
            _ => t(reason.text_key()),
        },
        Error::CouponUnusable { status, .. } => t(&format!("coupon.unusable.{}", status.as_str())),
        Error::RewardNotFound { .. } | Error::CouponNotFound => t("error.not_found"),
        Error::Unauthorized => t("login.expired"),
        Error::Forbidden | Error::KeyScope { .. } => t("error.forbidden"),
        Error::MemberNotFound { .. } | Error::LevelNotFound { .. } | Error::NotFound { .. } => {
            t("error.not_found")
        }
        Error::Unavailable(_) => t("err.unavailable"),
        Error::Internal(_) => t("error.internal"),
    }
}

pub trait InLang<T> {
    fn in_lang(self, lang: Lang) -> Result<T, PageError>;
}

impl<T> InLang<T> for Result<T, Error> {
    fn in_lang(self, lang: Lang) -> Result<T, PageError> {
        self.map_err(|error| PageError { lang, error })
    }
}
