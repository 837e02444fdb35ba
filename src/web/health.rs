use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::service::Services;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when PostgreSQL answers; Redis is reported (the portal works without it).
pub async fn readyz(State(s): State<Services>) -> impl IntoResponse {
    let crate::service::Readiness { postgres, redis } = s.ctx.readiness().await;
    let status = if postgres {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "postgres": if postgres { "up" } else { "down" }, "redis": redis })),
    )
}
