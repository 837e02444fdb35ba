//! `/metrics` in Prometheus text: the seed's series (points transactions and amounts,
//! level upgrades, API response time) plus cache hits/misses, Redis fallbacks, lock waits
//! and database pool use.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::service::Services;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls share it).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let points = [1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0];
        let builder = PrometheusBuilder::new()
            .set_buckets(&buckets)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "member_system_points_amount".into(),
                    ),
                    &points,
                )
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (a test harness); ours still renders.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// Folds recorded histogram samples into their buckets every `period`. The recorder keeps
/// each sample (a value and an instant, 24 bytes) until a render or an upkeep drains it, so
/// a server nobody scrapes grew by that much per request, without bound (~60 MB over the
/// page benchmark's 2.5 million requests).
pub async fn upkeep(period: std::time::Duration) {
    let handle = install();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

fn describe() {
    metrics::describe_counter!(
        "member_system_points_transactions_total",
        "Points transactions by type"
    );
    metrics::describe_histogram!(
        "member_system_points_amount",
        "Points moved per transaction, by type"
    );
    metrics::describe_counter!(
        "member_system_level_upgrades_total",
        "Level upgrades by from/to level"
    );
    metrics::describe_histogram!(
        "member_system_api_response_time_seconds",
        metrics::Unit::Seconds,
        "API response time by route"
    );
    metrics::describe_counter!("member_system_cache_hits_total", "Cache hits");
    metrics::describe_counter!("member_system_cache_misses_total", "Cache misses");
    metrics::describe_counter!(
        "member_system_redis_fallbacks_total",
        "Redis failures answered from PostgreSQL"
    );
    metrics::describe_histogram!(
        "member_system_lock_wait_seconds",
        metrics::Unit::Seconds,
        "Wait for the per-member lock"
    );
    metrics::describe_gauge!(
        "member_system_db_pool_connections",
        "Database pool connections by state"
    );
    metrics::describe_counter!(
        "member_system_lock_timeouts_total",
        "Per-member lock waits that timed out"
    );
    metrics::describe_counter!(
        "member_system_webhook_deliveries_total",
        "Webhook deliveries by result"
    );
    metrics::describe_counter!("member_system_coupons_total", "Coupons by event");
    metrics::describe_counter!(
        "member_system_campaign_bonus_points_total",
        "Points given by campaign bonus lines"
    );
    metrics::describe_counter!("member_system_emails_total", "Password emails by result");
    metrics::describe_counter!(
        "member_system_level_reviews_total",
        "Members reviewed for their level, by outcome"
    );
    metrics::describe_counter!("member_system_bulk_grants_total", "Bulk grants finished");
    metrics::describe_counter!(
        "member_system_member_imports_total",
        "Member imports by result"
    );
    metrics::describe_counter!(
        "member_system_members_imported_total",
        "Members made by imports"
    );
}

/// Where `/metrics` is served (docs/operations.md, "Health and metrics").
pub fn served_on_main_listener(config: &crate::config::Config) -> MainListener {
    match (&config.metrics_token, config.metrics_bind_addr) {
        (Some(_), _) => MainListener::WithToken,
        (None, Some(_)) => MainListener::No,
        (None, None) if config.bind_addr.ip().is_loopback() => MainListener::Open,
        (None, None) => MainListener::No,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainListener {
    /// a loopback-only portal with no metrics settings: nobody else can reach it
    Open,
    WithToken,
    No,
}

/// `/metrics` on the member-facing listener: the text, or 404 where it is not served there,
/// or 401 without the token.
pub async fn render_guarded(State(s): State<Services>, headers: axum::http::HeaderMap) -> Response {
    let config = &s.ctx.config;
    match served_on_main_listener(config) {
        MainListener::Open => render(State(s)).await,
        MainListener::No => axum::http::StatusCode::NOT_FOUND.into_response(),
        MainListener::WithToken => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            let expected = config.metrics_token.as_deref().unwrap_or_default();
            // compared by digest, so the time taken says nothing about the token
            let digest = |t: &str| <sha2::Sha256 as sha2::Digest>::digest(t.as_bytes());
            if !expected.is_empty() && digest(given) == digest(expected) {
                render(State(s)).await
            } else {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                )
                    .into_response()
            }
        }
    }
}

pub async fn render(State(s): State<Services>) -> Response {
    let pool = &s.ctx.pool;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("member_system_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("member_system_db_pool_connections", "state" => "in_use")
        .set(f64::from(pool.size()) - idle);
    let text = install().render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Records `member_system_api_response_time_seconds{endpoint}` by route template (never
/// the raw path, so ids do not multiply the series).
pub async fn response_time(request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!("member_system_api_response_time_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    response
}
