//! Extractors that turn anything a client can send into a typed value or a clear error.

use axum::body::to_bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::error::Error;
use crate::service::{Services, accounts};

/// Request bodies are small; anything larger is refused before it is parsed.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON body, parsed into `T` (which denies unknown fields), with the path of the first
/// field that does not fit named in the error.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::request(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = to_bytes(req.into_body(), BODY_LIMIT).await.map_err(|_| {
            ApiError::request(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body",
                format!("the body must be at most {BODY_LIMIT} bytes"),
            )
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| body_error(&e))?;
        de.end().map_err(|e| {
            ApiError::request(
                StatusCode::BAD_REQUEST,
                "body",
                format!("invalid JSON: {e}"),
            )
        })?;
        Ok(JsonBody(value))
    }
}

fn body_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    let path = e.path().to_string();
    let message = inner.to_string();
    // syntax errors are 400; well-formed JSON that does not fit is 422 naming the field
    if matches!(
        inner.classify(),
        serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io
    ) {
        return ApiError::request(
            StatusCode::BAD_REQUEST,
            "body",
            format!("invalid JSON: {message}"),
        );
    }
    let field = if let Some(rest) = message.strip_prefix("unknown field `") {
        rest.split('`').next().unwrap_or("body").to_owned()
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        rest.split('`').next().unwrap_or("body").to_owned()
    } else if path != "." {
        path
    } else {
        "body".to_owned()
    };
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    let field: String = field.chars().take(100).collect();
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error: Error::Validation {
            field: "body",
            message: format!("{field}: {message}"),
            reason: None,
        },
        field: Some(field),
    }
}

/// A valid API key in `Authorization: Bearer <key>`.
pub struct ApiKey(pub i64);

impl FromRequestParts<Services> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &Services) -> Result<Self, Self::Rejection> {
        let key = BearerKey::from_request_parts(parts, s).await?;
        let scope = accounts::Scope::for_request(parts.method.as_str(), parts.uri.path());
        Ok(ApiKey(key.verify(s, scope).await?))
    }
}

/// An API key as sent, not yet checked: for a route that checks it in the same round trip
/// as its work (earn). Anything that route refuses before that work must call
/// [`BearerKey::verify`] first, so a caller without a valid key only ever learns 401.
pub struct BearerKey {
    /// SHA-256 of the key, as stored
    pub hash: String,
}

impl BearerKey {
    pub async fn verify(&self, s: &Services, scope: accounts::Scope) -> Result<i64, Error> {
        accounts::authenticate_api_key_hash(&s.ctx, &self.hash, scope).await
    }
}

impl FromRequestParts<Services> for BearerKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Services) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 200)
            .ok_or(Error::Unauthorized)?;
        Ok(BearerKey {
            hash: accounts::api_key_hash(key),
        })
    }
}

/// The `{user_id}` of the path: a positive integer. A segment that is not even text (such
/// as `%FF`) gets the same error as any other bad id.
pub struct MemberId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for MemberId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| p.0)
            .unwrap_or_default();
        user_id(&raw).map(MemberId)
    }
}

/// A query string parsed into `T`; one that does not fit (a repeated or malformed
/// parameter) is a JSON error naming the problem.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| {
                let text = e.body_text();
                let why = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError::request(
                    StatusCode::BAD_REQUEST,
                    "query",
                    format!("the query string cannot be read: {why}"),
                )
            })
    }
}

/// A member id from the path: a positive integer.
pub fn user_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::request(
            StatusCode::BAD_REQUEST,
            "user_id",
            "user_id must be a positive integer",
        )
    })
}
