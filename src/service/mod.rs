//! The seed's services: rules and transactions. Pages, the JSON API, the CLI and the
//! background jobs all come through here.

pub mod accounts;
pub mod admin;
pub mod campaigns;
pub mod demo;
pub mod earn_queue;
pub mod email;
pub mod finance;
pub mod grants;
pub mod import;
pub mod ledger;
pub mod levels;
pub mod members;
pub mod notifications;
pub mod outbox;
pub mod passwords;
pub mod points;
pub mod rewards;
pub mod tiers;

use std::sync::Arc;

use sqlx::PgPool;

use crate::cache::{Cache, Keys, Locker, RedisConn};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};

pub use admin::StaffService;
pub use levels::LevelService;
pub use members::MemberService;
pub use notifications::NotificationService;
pub use points::PointService;
pub use rewards::RewardService;

/// What every service shares; cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    pub pool: PgPool,
    pub cache: Cache,
    pub locker: Locker,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    /// UTC offset of `MEMBER_TIMEZONE` for showing times (resolved by PostgreSQL's zone
    /// data at start-up; see `db::utc_offset`).
    pub display_offset: time::UtcOffset,
    /// this process's copy of the campaigns not ended (see `campaigns::CACHE_FOR`)
    pub campaign_cache: campaigns::CampaignCache,
    /// pages rendered lately, served again while what they show is unchanged
    pub rendered: crate::cache::Rendered,
    /// earns waiting for a member whose earn is running on this instance (group commit)
    pub earn_queue: Arc<earn_queue::EarnQueue>,
}

/// What `/readyz` reports: PostgreSQL must answer; Redis is optional.
pub struct Readiness {
    pub postgres: bool,
    /// "not configured", "up" or "down"
    pub redis: &'static str,
}

impl Ctx {
    pub async fn readiness(&self) -> Readiness {
        let postgres = crate::db::ping(&self.pool).await;
        let redis = match self.cache.redis_conn() {
            None => "not configured",
            Some(conn) if conn.ping().await => "up",
            Some(_) => "down",
        };
        Readiness { postgres, redis }
    }

    /// The tier lifecycle's rules with the business time zone, as the SQL functions take them.
    pub fn tier_rules(&self) -> crate::db::tiers::Rules<'_> {
        crate::db::tiers::Rules {
            tiers: &self.config.tiers,
            tz: &self.config.member_timezone,
        }
    }

    /// Redis cache and lock when `REDIS_URL` is set (connected lazily, so a Redis that is
    /// down does not stop start-up), in-process ones otherwise.
    pub fn new(pool: PgPool, config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        let keys = Keys::new(&config.redis_key_prefix);
        let longest_ttl = config
            .member_cache_ttl
            .max(config.points_cache_ttl)
            .max(config.level_cache_ttl);
        let (cache, locker) = match &config.redis_url {
            Some(url) => {
                let conn = RedisConn::new(url, config.redis_operation_timeout)?;
                let locker = if config.redis_points_lock {
                    Locker::redis(
                        conn.clone(),
                        keys.clone(),
                        config.lock_wait,
                        config.lock_ttl,
                    )
                } else {
                    Locker::local(keys.clone(), config.lock_wait)
                };
                (Cache::redis(conn, keys, longest_ttl), locker)
            }
            None => (
                Cache::local(keys.clone(), longest_ttl),
                Locker::local(keys, config.lock_wait),
            ),
        };
        let display_offset = match config.member_timezone.as_str() {
            "Asia/Shanghai" | "Asia/Hong_Kong" | "Asia/Taipei" | "Asia/Singapore" => {
                time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC)
            }
            _ => time::UtcOffset::UTC,
        };
        Ok(Self {
            pool,
            cache,
            locker,
            clock,
            config: Arc::new(config),
            display_offset,
            campaign_cache: campaigns::CampaignCache::default(),
            rendered: crate::cache::rendered(),
            earn_queue: Arc::default(),
        })
    }

    pub fn with_system_clock(pool: PgPool, config: Config) -> anyhow::Result<Self> {
        Self::new(pool, config, Arc::new(SystemClock))
    }

    /// Runs a points operation under the member's lock and drops the member's cached
    /// entries once it has committed.
    async fn guarded<T, F, Fut>(&self, user_id: i64, op: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let guard = self.locker.acquire(user_id).await?;
        let result = op().await;
        if result.is_ok() {
            self.locker
                .release_after_invalidating(guard, &self.cache, &[user_id])
                .await;
        } else {
            self.locker.release(guard).await;
        }
        result
    }
}

/// The services of the seed, over one shared context; cloned per request, so one `Arc`.
#[derive(Clone)]
pub struct Services(Arc<ServiceSet>);

impl std::ops::Deref for Services {
    type Target = ServiceSet;

    fn deref(&self) -> &ServiceSet {
        &self.0
    }
}

pub struct ServiceSet {
    pub ctx: Ctx,
    pub members: MemberService,
    pub points: PointService,
    pub rewards: RewardService,
    pub campaigns: campaigns::CampaignService,
    pub levels: LevelService,
    pub notifications: NotificationService,
    pub staff: StaffService,
    pub outbox: outbox::OutboxService,
    pub email: email::EmailService,
    pub tiers: tiers::TierService,
    pub finance: finance::FinanceService,
    pub grants: grants::GrantService,
}

impl Services {
    pub fn new(ctx: Ctx) -> Self {
        Self(Arc::new(ServiceSet {
            members: MemberService::new(ctx.clone()),
            points: PointService::new(ctx.clone()),
            rewards: RewardService::new(ctx.clone()),
            campaigns: campaigns::CampaignService::new(ctx.clone()),
            levels: LevelService::new(ctx.clone()),
            notifications: NotificationService::new(ctx.clone()),
            staff: StaffService::new(ctx.clone()),
            outbox: outbox::OutboxService::new(ctx.clone()),
            email: email::EmailService::new(ctx.clone()),
            tiers: tiers::TierService::new(ctx.clone()),
            finance: finance::FinanceService::new(ctx.clone()),
            grants: grants::GrantService::new(ctx.clone()),
            ctx,
        }))
    }
}

/// Runs `work` on its own task and waits for it. Dropping the caller (a client that
/// disconnects, a timeout) does not cancel the work: a transaction once begun runs to its
/// commit or rollback, and its connection goes back to the pool clean. This is what keeps
/// sqlx's non-cancel-safe `begin` (transact-rs/sqlx#4393) from ever being cancelled.
pub async fn run_to_completion<T, F>(work: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(work)
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("points operation task failed: {e}")))?
}
