//! Every failure of the JSON API is `{"code","message",…}` with SPEC §4.2's codes, including
//! what axum would otherwise answer in plain text (bad JSON, wrong content type, too large,
//! unknown route or method). Internals are logged with a request id, never returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: Error,
    /// The field as the client named it (an unknown field has no name of ours).
    pub field: Option<String>,
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            error,
            field: None,
        }
    }
}

impl ApiError {
    /// A request the API cannot even read (status other than the code's usual one).
    pub fn request(status: StatusCode, field: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: Error::validation(field, message),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.error.body();
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        if let Error::Unavailable(e) = &self.error {
            tracing::warn!(error = %e, "database unavailable");
        }
        if let Error::Internal(e) = &self.error {
            // the request's own id: the one in its x-request-id header and its span
            let id = crate::web::request::id();
            tracing::error!(request_id = %id, error = ?e, "api request failed");
            body["request_id"] = json!(id);
        }
        (self.status, Json(body)).into_response()
    }
}

/// The safety net under every API route: an error response that is not JSON (a rejection
/// answered in plain text by axum or a layer) is answered as the error body instead.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let error = match status {
        StatusCode::UNAUTHORIZED => ApiError::from(Error::Unauthorized),
        StatusCode::FORBIDDEN => ApiError::from(Error::Forbidden),
        StatusCode::NOT_FOUND => ApiError::from(Error::NotFound {
            what: "this API route",
        }),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => ApiError {
            status,
            error: Error::Unavailable(anyhow::anyhow!("{status}: {text}")),
            field: None,
        },
        s if s.is_server_error() => ApiError {
            status,
            error: Error::Internal(anyhow::anyhow!("{status}: {text}")),
            field: None,
        },
        _ => ApiError::request(
            status,
            "request",
            if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("bad request")
                    .to_owned()
            } else {
                text
            },
        ),
    };
    error.into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::from(Error::NotFound {
        what: "this API route",
    })
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::request(
        StatusCode::METHOD_NOT_ALLOWED,
        "method",
        "this method is not allowed on this route",
    )
}
