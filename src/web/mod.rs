//! HTTP: routes, extractors, view structs. No SQL here; handlers call the services.

pub mod api;
pub mod csrf;
pub mod error;
pub mod health;
pub mod i18n;
pub mod metrics;
pub mod page;
pub mod pages;
pub mod session;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware;
use axum::routing::{get, post};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::service::Services;

const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'self'";

pub fn router(services: Services) -> Router {
    let pool = services.ctx.pool.clone();
    let secure = services.ctx.config.cookie_secure;
    let pages = Router::new()
        .route("/", get(pages::member::home))
        .route(
            "/login",
            get(pages::auth::login_form).post(pages::auth::login),
        )
        .route(
            "/register",
            get(pages::auth::register_form).post(pages::auth::register),
        )
        .route("/logout", post(pages::auth::logout))
        .route("/lang", post(pages::auth::set_language))
        .route("/profile", get(pages::member::profile))
        .route("/points", get(pages::member::points))
        .route("/upgrade", get(pages::member::upgrade))
        .route("/notifications", get(pages::member::notifications))
        .route(
            "/notifications/read-all",
            post(pages::member::mark_all_read),
        )
        .route("/notifications/{id}/read", post(pages::member::mark_read))
        .route("/admin", get(pages::admin::dashboard))
        .route(
            "/admin/levels",
            get(pages::admin::levels).post(pages::admin::create_level),
        )
        .route(
            "/admin/levels/recalculate",
            get(pages::admin::recalculate_preview).post(pages::admin::recalculate_apply),
        )
        .route(
            "/admin/levels/{id}",
            get(pages::admin::edit_level).post(pages::admin::update_level),
        )
        .route(
            "/admin/levels/{id}/active",
            post(pages::admin::set_level_active),
        )
        .route("/admin/members", get(pages::admin::members))
        .route("/admin/members/{id}", get(pages::admin::member))
        .route("/admin/members/{id}/adjust", post(pages::admin::adjust))
        .route("/admin/members/{id}/level", post(pages::admin::set_level))
        .route("/admin/audit", get(pages::admin::audit))
        .route(
            "/admin/api-keys",
            get(pages::admin::api_keys).post(pages::admin::create_api_key),
        )
        .route(
            "/admin/api-keys/{id}/revoke",
            post(pages::admin::revoke_api_key),
        )
        .fallback(pages::not_found)
        .layer(middleware::from_fn(csrf::require_token))
        .layer(session::layer(pool, secure));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .nest_service(
            "/static",
            tower::ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ))
                .service(ServeDir::new(static_dir())),
        )
        .nest(
            "/api/v1",
            api::router().layer(session::layer(services.ctx.pool.clone(), secure)),
        )
        .merge(pages)
        .with_state(services)
        // a request that takes longer gets 503; work it started (points operations) runs
        // to its end regardless
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http().make_span_with(|r: &Request| {
            let id = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %r.method(), path = %r.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(header_layer(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::REFERRER_POLICY, "same-origin"))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
}

fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// `static/` next to the binary's crate (a checkout), or `STATIC_DIR`.
fn static_dir() -> std::path::PathBuf {
    std::env::var_os("STATIC_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static"))
}

/// `?v=` for a stylesheet URL: changes whenever the file does.
pub fn asset_version() -> &'static str {
    static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let css = std::fs::read(static_dir().join("app.css")).unwrap_or_default();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&css);
        hex::encode(&digest[..4])
    });
    &VERSION
}
