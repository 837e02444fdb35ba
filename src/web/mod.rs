//! HTTP: routes, extractors, view structs. No SQL here; handlers call the services.

pub mod api;
pub mod chart;
pub mod csrf;
pub mod error;
pub mod health;
pub mod i18n;
pub mod metrics;
pub mod page;
pub mod pages;
pub mod request;
pub mod session;
pub mod view;

use axum::Router;
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware;
use axum::routing::{MethodRouter, get};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
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
    let cache = services.ctx.cache.clone();
    let pages = page_routes()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handlers))
        .fallback(pages::not_found)
        // One stack, outermost first: axum wraps every route in each `layer` separately
        // and clones the wrappers for every request, one allocation per layer.
        .layer(
            tower::ServiceBuilder::new()
                .layer(session::layer(pool, cache.clone(), secure))
                .layer(middleware::from_fn(csrf::require_token))
                // a page may answer an htmx request with a fragment of itself
                .layer(SetResponseHeaderLayer::appending(
                    header::VARY,
                    HeaderValue::from_static("HX-Request"),
                )),
        );
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render_guarded))
        .nest_service(
            "/static",
            tower::ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    header::CACHE_CONTROL,
                    // a file that exists; a 404 is not kept for a year
                    |r: &axum::http::Response<_>| {
                        r.status().is_success().then(|| {
                            HeaderValue::from_static("public, max-age=31536000, immutable")
                        })
                    },
                ))
                .service(ServeDir::new(static_dir())),
        )
        .nest(
            "/api/v1",
            api::router().layer(session::layer(services.ctx.pool.clone(), cache, secure)),
        )
        .merge(pages)
        .with_state(services)
        // One stack, outermost first (see the pages' stack above).
        .layer(
            tower::ServiceBuilder::new()
                // Pages, API answers and health are about one session or member, or of
                // the moment: no browser or proxy keeps them (static files say otherwise).
                .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
                .layer(header_layer(header::REFERRER_POLICY, "same-origin"))
                .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(header_layer(header::CONTENT_SECURITY_POLICY, CSP))
                .layer(header_layer(header::CACHE_CONTROL, "no-store"))
                .layer(middleware::map_request(drop_unsafe_request_id))
                .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|r: &Request| {
                            let id = r
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok());
                            // the route, not the path: ids and tokens stay out of span names
                            let route =
                                r.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
                            tracing::info_span!("request", method = %r.method(),
                                route = route.unwrap_or("(no route)"),
                                request_id = id.unwrap_or(""))
                        })
                        // an error is logged once, where it is turned into a response
                        .on_failure(()),
                )
                // errors know the request (id, htmx, language) from here on
                .layer(middleware::from_fn(request::scope))
                .layer(CompressionLayer::new())
                // a request that takes longer gets 503; work it started (points
                // operations) runs to its end regardless
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Duration::from_secs(30),
                )),
        )
}

/// The metrics listener's routes (`METRICS_BIND_ADDR`): `/metrics` and nothing else.
pub fn metrics_router(services: Services) -> Router {
    Router::new()
        .route("/metrics", get(metrics::render))
        .with_state(services)
}

/// Who may use a page route. The security tests read [`page_routes`] and check that each
/// route refuses everyone its access excludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// anyone, logged in or not
    Public,
    /// a logged-in member or staff user; others go to the login page
    User,
    /// staff only: members get 403, others go to the login page
    Staff,
}

/// One page route: its path, who may use it, and which methods it answers.
pub struct PageRoute {
    pub path: &'static str,
    pub access: Access,
    pub get: bool,
    pub post: bool,
    handlers: MethodRouter<Services>,
}

impl PageRoute {
    fn new(path: &'static str, access: Access) -> Self {
        Self {
            path,
            access,
            get: false,
            post: false,
            handlers: MethodRouter::new(),
        }
    }

    fn get<H: Handler<T, Services>, T: 'static>(mut self, handler: H) -> Self {
        self.handlers = self.handlers.get(handler);
        self.get = true;
        self
    }

    fn post<H: Handler<T, Services>, T: 'static>(mut self, handler: H) -> Self {
        self.handlers = self.handlers.post(handler);
        self.post = true;
        self
    }

    fn without_body_limit(mut self) -> Self {
        self.handlers = self
            .handlers
            .layer(axum::extract::DefaultBodyLimit::disable());
        self
    }
}

/// Every page route. A POST is a state change and needs the CSRF token.
pub fn page_routes() -> Vec<PageRoute> {
    use Access::{Public, Staff, User};
    use pages::{account, admin, auth, earn, member, rewards};
    let r = PageRoute::new;
    vec![
        r("/", Public).get(member::home),
        r("/login", Public).get(auth::login_form).post(auth::login),
        r("/register", Public)
            .get(auth::register_form)
            .post(auth::register),
        r("/logout", Public).post(auth::logout),
        r("/password/forgot", Public)
            .get(account::forgot_form)
            .post(account::forgot),
        r("/password/reset", Public)
            .get(account::reset_form)
            .post(account::reset),
        r("/lang", Public).post(auth::set_language),
        r("/profile", User).get(member::profile),
        r("/points", User).get(member::points),
        r("/upgrade", User).get(member::upgrade),
        r("/account", User).get(account::account),
        r("/account/export", User).get(account::export),
        r("/account/close", User).post(account::close),
        r("/earn", User).get(earn::earn),
        r("/profile/birthday", User).post(earn::set_birthday),
        r("/rewards", User).get(rewards::rewards),
        r("/rewards/{id}/redeem", User)
            .get(rewards::redeem_confirm)
            .post(rewards::redeem),
        r("/coupons", User).get(rewards::coupons),
        r("/coupons/{id}", User).get(rewards::coupon),
        r("/coupons/{id}/cancel", User).post(rewards::cancel_coupon),
        r("/notifications", User).get(member::notifications),
        r("/notifications/read-all", User).post(member::mark_all_read),
        r("/notifications/{id}/read", User).post(member::mark_read),
        r("/admin", Staff).get(admin::dashboard),
        r("/admin/levels", Staff)
            .get(admin::levels)
            .post(admin::create_level),
        r("/admin/levels/recalculate", Staff)
            .get(admin::recalculate_preview)
            .post(admin::recalculate_apply),
        r("/admin/levels/{id}", Staff)
            .get(admin::edit_level)
            .post(admin::update_level),
        r("/admin/levels/{id}/active", Staff).post(admin::set_level_active),
        r("/admin/members", Staff).get(admin::members),
        r("/admin/members/export.csv", Staff).get(admin::export_members),
        r("/admin/members/{id}", Staff).get(admin::member),
        r("/admin/members/{id}/adjust", Staff).post(admin::adjust),
        r("/admin/members/{id}/level", Staff).post(admin::set_level),
        r("/admin/members/{id}/notes", Staff).post(admin::add_note),
        r("/admin/campaigns", Staff)
            .get(admin::campaigns)
            .post(admin::create_campaign),
        r("/admin/campaigns/{id}/end", Staff).post(admin::end_campaign),
        r("/admin/rewards", Staff)
            .get(admin::rewards)
            .post(admin::create_reward),
        r("/admin/rewards/{id}", Staff)
            .get(admin::edit_reward)
            .post(admin::update_reward),
        r("/admin/coupons", Staff).get(admin::find_coupon),
        r("/admin/coupons/{id}", Staff).get(admin::coupon),
        r("/admin/coupons/{id}/cancel", Staff).post(admin::cancel_coupon),
        r("/admin/grants", Staff)
            .get(admin::grants)
            .post(admin::create_grant),
        r("/admin/grants/{id}", Staff).get(admin::grant),
        // an upload is streamed to disk under IMPORT_MAX_MB, counted by the handler
        r("/admin/imports", Staff)
            .get(admin::imports)
            .post(admin::upload_import)
            .without_body_limit(),
        r("/admin/imports/{id}", Staff).get(admin::import),
        r("/admin/audit", Staff).get(admin::audit),
        r("/admin/finance", Staff).get(admin::finance),
        r("/admin/finance.csv", Staff).get(admin::finance_csv),
        r("/admin/ledger.csv", Staff).get(admin::ledger_csv),
        r("/admin/staff", Staff).get(admin::staff),
        r("/admin/staff/{id}/disable", Staff).post(admin::disable_staff),
        r("/admin/staff/{id}/enable", Staff).post(admin::enable_staff),
        r("/admin/staff/{id}/role", Staff).post(admin::set_staff_role),
        r("/admin/api-keys", Staff)
            .get(admin::api_keys)
            .post(admin::create_api_key),
        r("/admin/api-keys/{id}/revoke", Staff).post(admin::revoke_api_key),
    ]
}

/// The client's address (see [`crate::client_ip`]); unspecified where the server was
/// started without connection info.
pub struct ClientIp(pub std::net::IpAddr);

impl axum::extract::FromRequestParts<Services> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        services: &Services,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(Self(crate::client_ip::client_ip(
            peer,
            forwarded,
            &services.ctx.config.trusted_proxies,
        )))
    }
}

/// A caller's `x-request-id` is kept only if it is at most 64 characters of
/// `[A-Za-z0-9._-]`; anything else (too long, spaces, line breaks that would forge log
/// lines) is dropped and replaced by one of ours.
pub fn is_safe_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn drop_unsafe_request_id(mut req: Request) -> Request {
    if req
        .headers()
        .get_all("x-request-id")
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || !is_safe_request_id(v.as_bytes()))
    {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// Request ids from [`crate::random_uuid`] (tower-http's `MakeRequestUuid` makes a system
/// call per request).
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = crate::random_uuid();
        HeaderValue::from_str(
            id.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        )
        .ok()
        .map(RequestId::new)
    }
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
