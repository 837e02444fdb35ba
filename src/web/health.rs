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
    let postgres = crate::db::ping(&s.ctx.pool).await;
    let redis = match s.ctx.cache.redis_conn() {
        None => "not configured",
        Some(conn) if conn.ping().await => "up",
        Some(_) => "down",
    };
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
