//! Synchronizer-token CSRF protection: every state-changing request must carry the
//! session's token, as the `csrf_token` form field or the `X-CSRF-Token` header (which
//! htmx sends from `hx-headers` on `<body>`). Otherwise 403, and nothing runs.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::error::error_page;
use super::request::request_lang;
use super::session::CSRF;

pub const FIELD: &str = "csrf_token";
pub const HEADER: &str = "x-csrf-token";
/// Forms are small; anything larger is refused before it is read.
pub const FORM_LIMIT: usize = 64 * 1024;

pub async fn require_token(session: Session, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let expected: Option<String> = session.get(CSRF).await.ok().flatten();
    let (parts, body) = request.into_parts();
    let from_header = parts
        .headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let (provided, body) = match from_header {
        Some(t) => (Some(t), body),
        None if is_form => match to_bytes(body, FORM_LIMIT).await {
            Ok(bytes) => {
                let token = form_urlencoded::parse(&bytes)
                    .find(|(k, _)| k == FIELD)
                    .map(|(_, v)| v.into_owned());
                (token, Body::from(bytes))
            }
            Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        },
        None => (None, body),
    };
    match (expected, provided) {
        (Some(e), Some(p)) if !e.is_empty() && constant_time_eq(e.as_bytes(), p.as_bytes()) => {
            next.run(Request::from_parts(parts, body)).await
        }
        _ => {
            let lang = request_lang(&parts).await;
            error_page(StatusCode::FORBIDDEN, lang, lang.t("error.csrf"), None)
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
