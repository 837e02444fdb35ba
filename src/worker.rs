//! Background work inside `serve`: the expiry sweep, expiry reminders, deferred upgrades,
//! webhook delivery, session cleanup, birthday bonuses, password emails, the release of
//! pending points and the level review. Each run takes a PostgreSQL advisory lock first, so with several `serve`
//! instances on one database a job runs in one of them at a time (a lock held by a
//! process that dies is released with its connection).

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db;
use crate::error::Result;
use crate::service::Services;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    ExpirySweep,
    ExpiryReminders,
    DeferredUpgrades,
    WebhookDelivery,
    /// Expired sessions and ended login-throttle windows.
    SessionCleanup,
    /// Today's birthday bonuses (once a year per member and campaign).
    BirthdayBonuses,
    /// Password links by email (only with `SMTP_URL`).
    EmailDelivery,
    /// Pending points whose return window has ended become spendable.
    PointsRelease,
    /// The tier review: levels whose retention has ended are kept or lowered, with notice.
    LevelReview,
}

impl Job {
    /// Every job `serve` runs (webhook delivery only where a webhook is configured).
    pub const ALL: [Job; 9] = [
        Job::ExpirySweep,
        Job::ExpiryReminders,
        Job::DeferredUpgrades,
        Job::WebhookDelivery,
        Job::SessionCleanup,
        Job::BirthdayBonuses,
        Job::EmailDelivery,
        Job::PointsRelease,
        Job::LevelReview,
    ];

    fn lock_key(self) -> i64 {
        // "mp" jobs: a fixed range of advisory lock keys
        0x6d70_0000
            + match self {
                Job::ExpirySweep => 1,
                Job::ExpiryReminders => 2,
                Job::DeferredUpgrades => 3,
                Job::WebhookDelivery => 4,
                Job::SessionCleanup => 5,
                Job::BirthdayBonuses => 6,
                Job::EmailDelivery => 7,
                Job::PointsRelease => 8,
                Job::LevelReview => 9,
            }
    }

    pub fn period(self) -> Duration {
        match self {
            Job::ExpirySweep
            | Job::ExpiryReminders
            | Job::SessionCleanup
            | Job::BirthdayBonuses => Duration::from_secs(3600),
            Job::DeferredUpgrades | Job::PointsRelease => Duration::from_secs(60),
            // reviews fall due at day boundaries; a few runs a day catch each soon after
            Job::LevelReview => Duration::from_secs(6 * 3600),
            Job::WebhookDelivery | Job::EmailDelivery => Duration::from_secs(10),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Job::ExpirySweep => "expiry_sweep",
            Job::ExpiryReminders => "expiry_reminders",
            Job::DeferredUpgrades => "deferred_upgrades",
            Job::WebhookDelivery => "webhook_delivery",
            Job::SessionCleanup => "session_cleanup",
            Job::BirthdayBonuses => "birthday_bonuses",
            Job::EmailDelivery => "email_delivery",
            Job::PointsRelease => "points_release",
            Job::LevelReview => "level_review",
        }
    }
}

/// Runs a job now unless another instance is running it. Returns whether it ran and what
/// it did (members swept, reminders queued, upgrades applied).
pub async fn run_once(services: &Services, job: Job) -> Result<Option<i64>> {
    let pool: &PgPool = &services.ctx.pool;
    let mut guard = pool.acquire().await?;
    if !db::try_advisory_lock(&mut guard, job.lock_key()).await? {
        return Ok(None);
    }
    let result = match job {
        Job::ExpirySweep => services
            .points
            .expire_points()
            .await
            .map(|r| r.members as i64),
        Job::ExpiryReminders => services.points.send_expiry_reminders().await,
        Job::WebhookDelivery => services
            .outbox
            .deliver_due()
            .await
            .map(|r| r.delivered as i64),
        Job::SessionCleanup => crate::service::accounts::clean_up_sessions(&services.ctx)
            .await
            .map(|n| n as i64),
        Job::DeferredUpgrades => services
            .members
            .apply_due_upgrades()
            .await
            .map(|n| n as i64),
        Job::BirthdayBonuses => services.campaigns.pay_birthdays().await,
        Job::EmailDelivery => services.email.deliver_due().await,
        Job::PointsRelease => services.points.release_pending().await,
        Job::LevelReview => services
            .tiers
            .review()
            .await
            .map(|r| (r.kept + r.noticed + r.dropped) as i64),
    };
    db::advisory_unlock(&mut guard, job.lock_key()).await?;
    result.map(Some)
}

/// How soon a job that failed runs again.
const RETRY_AFTER: Duration = Duration::from_secs(15);

/// Jobs running at once: each holds a connection for its advisory lock besides the ones it
/// works with, so a few at a time leave the pool to the requests.
const JOBS_AT_ONCE: usize = 2;

/// Starts one task per job; they stop when `stop` changes.
pub fn spawn(services: Services, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let running = std::sync::Arc::new(tokio::sync::Semaphore::new(JOBS_AT_ONCE));
    Job::ALL
        .into_iter()
        .filter(|job| *job != Job::WebhookDelivery || services.outbox.is_configured())
        .filter(|job| *job != Job::EmailDelivery || services.email.is_configured())
        .map(|job| {
            let (services, mut stop, running) = (services.clone(), stop.clone(), running.clone());
            tokio::spawn(async move {
                loop {
                    let permit = tokio::select! {
                        p = running.acquire() => p,
                        _ = stop.changed() => return,
                    };
                    let outcome = run_once(&services, job).await;
                    drop(permit);
                    let wait = match outcome {
                        Ok(Some(n)) => {
                            tracing::info!(job = job.name(), done = n, "background job ran");
                            job.period()
                        }
                        Ok(None) => {
                            tracing::debug!(job = job.name(), "job is running in another instance");
                            job.period()
                        }
                        Err(e) => {
                            // PostgreSQL busy or away: try again soon rather than a period later
                            tracing::error!(job = job.name(), error = %e, "background job failed; retrying");
                            job.period().min(RETRY_AFTER)
                        }
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                }
            })
        })
        .collect()
}
