//! The application as a value: built from a config, served on a listener until a
//! shutdown signal. `main` and the tests start it the same way.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::db;
use crate::service::{Ctx, Services};

pub struct Application {
    pub services: Services,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
}

impl Application {
    /// Creates the database if it is missing, applies migrations, binds the address.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As `build`, with a clock of the caller's (tests move it to expire sessions).
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        crate::web::metrics::install();
        db::create_database_if_missing(&config).await?;
        let pool = db::connect(&config, config.db_pool_size).await?;
        db::migrate(&pool).await?;
        db::check_timezone(&pool, &config.member_timezone).await?;
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("cannot listen on BIND_ADDR={}", config.bind_addr))?;
        let metrics_listener = match config.metrics_bind_addr {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on METRICS_BIND_ADDR={addr}"))?,
            ),
        };
        if crate::web::metrics::served_on_main_listener(&config)
            == crate::web::metrics::MainListener::No
            && metrics_listener.is_none()
        {
            tracing::warn!(
                "/metrics is not served: BIND_ADDR is not a loopback address; set METRICS_BIND_ADDR or METRICS_TOKEN"
            );
        }
        let offset = db::utc_offset(&pool, &config.member_timezone).await?;
        let mut ctx = Ctx::new(pool, config, clock)?;
        ctx.display_offset = offset;
        let services = Services::new(ctx);
        Ok(Self {
            services,
            listener,
            metrics_listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The metrics listener's address, when `METRICS_BIND_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = crate::web::router(self.services.clone());
        let upkeep = tokio::spawn(crate::web::metrics::upkeep(std::time::Duration::from_secs(
            5,
        )));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let metrics = self.metrics_listener.map(|listener| {
            let mut stopped = stopped.clone();
            let router = crate::web::metrics_router(self.services.clone());
            tokio::spawn(serve(
                listener,
                router,
                64,
                std::time::Duration::from_secs(10),
                async move {
                    let _ = stopped.changed().await;
                },
            ))
        });
        let workers = crate::worker::spawn(self.services.clone(), stopped);
        // Graceful: stop accepting, let requests in flight finish, then stop the workers
        // (a job in progress finishes its current transaction) and close the pool.
        let config = &self.services.ctx.config;
        serve(
            self.listener,
            app,
            config.max_connections,
            config.header_read_timeout,
            shutdown,
        )
        .await;
        let _ = stop.send(true);
        for w in workers {
            let _ = w.await;
        }
        if let Some(m) = metrics {
            let _ = m.await;
        }
        upkeep.abort();
        self.services.ctx.pool.close().await;
        Ok(())
    }
}

/// Accepts connections until `shutdown`, then waits for the requests in flight. At most
/// `max_connections` are served at once (the rest wait in the kernel's backlog), and a
/// client that takes longer than `header_read_timeout` to send a request's headers is
/// disconnected, so slow or idle clients cannot hold the server's connections.
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    max_connections: usize,
    header_read_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors and the like: wait rather than spin
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), req)
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
