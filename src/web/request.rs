//! What the error → response layer needs to know about the request being answered, kept
//! for the request's task: its `x-request-id` (the one in the response header and the
//! log), whether htmx sent it, and the reader's language once a page has read it.
//!
//! [`scope`] runs inside `SetRequestIdLayer`, so the id is the request's own; errors
//! converted with `?` anywhere in a handler ([`super::error::PageError`],
//! [`super::api::error::ApiError`]) read it from here instead of being told.

use std::cell::Cell;

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_sessions::Session;

use super::i18n::Lang;

pub struct RequestInfo {
    pub id: String,
    pub htmx: bool,
    lang: Cell<Lang>,
}

tokio::task_local! {
    static REQUEST: RequestInfo;
}

/// Middleware: the request's information, for everything that runs while it is answered.
pub async fn scope(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let info = RequestInfo {
        id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        htmx: is_htmx(headers),
        lang: Cell::new(Lang::from_accept_language(
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )),
    };
    REQUEST
        .scope(info, crate::cache::with_read_ahead(next.run(request)))
        .await
}

/// An htmx request that swaps part of a page. A history restore (back button after a
/// pushed URL, page not in htmx's cache) needs the whole page, so it does not count.
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
        && !headers.contains_key("hx-history-restore-request")
}

/// The request's id; a fresh one outside a request (a test calling a handler's parts).
pub fn id() -> String {
    REQUEST
        .try_with(|r| r.id.clone())
        .ok()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| crate::random_uuid().hyphenated().to_string())
}

pub fn htmx() -> bool {
    REQUEST.try_with(|r| r.htmx).unwrap_or(false)
}

/// The reader's language: the session's choice once a page has read it, else
/// Accept-Language.
pub fn lang() -> Lang {
    REQUEST.try_with(|r| r.lang.get()).unwrap_or_default()
}

/// Called where a page learns the reader's language (the session's choice).
pub fn set_lang(lang: Lang) {
    let _ = REQUEST.try_with(|r| r.lang.set(lang));
}

/// The reader's language: the session's choice, else Accept-Language. Remembered for the
/// request, so an error answered later in it is in the same language.
pub async fn request_lang(parts: &Parts) -> Lang {
    let chosen: Option<String> = match parts.extensions.get::<Session>() {
        Some(session) => session.get(super::session::LANG).await.ok().flatten(),
        None => None,
    };
    let lang = chosen.as_deref().and_then(Lang::parse).unwrap_or_else(|| {
        Lang::from_accept_language(
            parts
                .headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )
    });
    set_lang(lang);
    lang
}
