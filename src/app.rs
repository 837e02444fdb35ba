//! The application as a value: built from a config, served on a listener until a
//! shutdown signal. `main` and the tests start it the same way.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::db;
use crate::service::{Ctx, Services};

pub struct Application {
    pub services: Services,
    listener: TcpListener,
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
        let pool = db::connect(&config, 20).await?;
        db::migrate(&pool).await?;
        db::check_timezone(&pool, &config.member_timezone).await?;
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("cannot listen on BIND_ADDR={}", config.bind_addr))?;
        let offset = db::utc_offset(&pool, &config.member_timezone).await?;
        let mut ctx = Ctx::new(pool, config, clock)?;
        ctx.display_offset = offset;
        let services = Services::new(ctx);
        Ok(Self { services, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
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
        let workers = crate::worker::spawn(self.services.clone(), stopped);
        // Graceful: stop accepting, let requests in flight finish, then stop the workers
        // (a job in progress finishes its current transaction) and close the pool.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        let _ = stop.send(true);
        for w in workers {
            let _ = w.await;
        }
        upkeep.abort();
        self.services.ctx.pool.close().await;
        Ok(())
    }
}
