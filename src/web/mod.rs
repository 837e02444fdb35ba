//! HTTP: routes and handlers. No SQL here; handlers call the services.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::service::Services;

pub fn router(services: Services) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(services)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when PostgreSQL answers; Redis is reported (the portal works without it).
async fn readyz(State(s): State<Services>) -> impl IntoResponse {
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
