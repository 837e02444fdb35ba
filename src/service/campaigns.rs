//! CampaignService: staff create, schedule and end campaigns; earns, sign-ups and the
//! birthday job pay their bonuses (see `domain::campaigns::plan_bonuses` for the caps).
//!
//! Earns read the campaigns that have not ended from a copy each process keeps for up to
//! [`CACHE_FOR`] (an earn with no campaign in play costs nothing more): a campaign's own
//! start and end are exact, while one created or ended by staff reaches other instances
//! within that time.

use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::points::{lock_member, record};

use super::{Ctx, run_to_completion};
use crate::db::campaigns::{self as db, NewBonus};
use crate::db::members as member_db;
use crate::domain::Transaction;
use crate::domain::campaigns::{Campaign, CampaignInput, CampaignKind, plan_bonuses};
use crate::error::{Error, Result};

pub const CACHE_FOR: StdDuration = StdDuration::from_secs(10);

/// The process's copy of the campaigns not ended.
#[derive(Clone, Default)]
pub struct CampaignCache(Arc<Mutex<Option<CachedCampaigns>>>);

/// When the list was read, and the list.
type CachedCampaigns = (Instant, Arc<Vec<Campaign>>);

impl CampaignCache {
    fn fresh(&self) -> Option<Arc<Vec<Campaign>>> {
        let guard = self.0.lock().ok()?;
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, list)| list.clone())
    }

    fn put(&self, list: Arc<Vec<Campaign>>) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some((Instant::now(), list));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut g) = self.0.lock() {
            *g = None;
        }
    }
}

impl Ctx {
    /// The campaigns not ended, from this process's copy when it is fresh.
    pub async fn campaigns(&self) -> Result<Arc<Vec<Campaign>>> {
        if let Some(list) = self.campaign_cache.fresh() {
            return Ok(list);
        }
        let mut conn = self.pool.acquire().await?;
        let list = Arc::new(db::not_ended(&mut conn, self.clock.now()).await?);
        self.campaign_cache.put(list.clone());
        Ok(list)
    }
}

#[derive(Clone)]
pub struct CampaignService {
    ctx: Ctx,
}

impl CampaignService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    pub async fn all(&self) -> Result<Vec<Campaign>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::all(&mut conn).await?)
    }

    /// Campaigns live now or scheduled, as members see them ("ways to earn").
    pub async fn current(&self) -> Result<Vec<Campaign>> {
        let now = self.ctx.clock.now();
        Ok(self
            .ctx
            .campaigns()
            .await?
            .iter()
            .filter(|c| c.ends_at > now)
            .cloned()
            .collect())
    }

    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn create(&self, actor: Option<i64>, input: CampaignInput) -> Result<i32> {
        let now = self.ctx.clock.now();
        let mut tx = self.ctx.pool.begin().await?;
        let id = db::insert(&mut tx, &input, now).await?;
        member_db::audit(
            &mut tx,
            actor,
            "campaign.create",
            "campaign",
            &id.to_string(),
            &json!({
                "name": input.name, "kind": input.kind.as_str(), "source_type": input.source_type,
                "category": input.category, "multiplier": input.multiplier,
                "bonus_points": input.bonus_points, "min_amount": input.min_amount,
                "starts_at": rfc3339(input.starts_at), "ends_at": rfc3339(input.ends_at),
            }),
            now,
        )
        .await?;
        tx.commit().await?;
        self.ctx.campaign_cache.clear();
        Ok(id)
    }

    /// Ends a live campaign now, or calls off a scheduled one.
    #[tracing::instrument(skip_all, err(level = "info"), fields(campaign_id = id))]
    pub async fn end(&self, actor: Option<i64>, id: i32) -> Result<()> {
        let now = self.ctx.clock.now();
        let mut tx = self.ctx.pool.begin().await?;
        let Some(name) = db::end(&mut tx, id, now).await? else {
            return Err(Error::NotFound {
                what: "a campaign that has not ended",
            });
        };
        member_db::audit(
            &mut tx,
            actor,
            "campaign.end",
            "campaign",
            &id.to_string(),
            &json!({ "name": name }),
            now,
        )
        .await?;
        tx.commit().await?;
        self.ctx.campaign_cache.clear();
        Ok(())
    }

    /// Pays today's birthday bonuses (business day of `MEMBER_TIMEZONE`): once a year per
    /// member and campaign, in transactions of one member each.
    pub async fn pay_birthdays(&self) -> Result<i64> {
        let this = self.clone();
        run_to_completion(async move {
            let now = this.ctx.clock.now();
            let live: Vec<Campaign> = this
                .ctx
                .campaigns()
                .await?
                .iter()
                .filter(|c| c.kind == CampaignKind::Birthday && c.starts_at <= now && now < c.ends_at)
                .cloned()
                .collect();
            if live.is_empty() {
                return Ok(0);
            }
            let today = {
                let mut conn = this.ctx.pool.acquire().await?;
                member_db::business_date(&mut conn, now, &this.ctx.config.member_timezone).await?
            };
            let mut paid = 0;
            for c in &live {
                let prefix = format!("birthday:{}:", today.year());
                let mut after = 0;
                loop {
                    let ids = {
                        let mut conn = this.ctx.pool.acquire().await?;
                        db::birthdays(&mut conn, today, c.id, &prefix, after, this.ctx.config.batch_size).await?
                    };
                    let Some(last) = ids.last() else { break };
                    after = *last;
                    for user in ids {
                        let occasion = format!("{prefix}{user}");
                        let c = c.clone();
                        let done = this
                            .ctx
                            .guarded(user, || this.pay_event(user, c, occasion))
                            .await;
                        match done {
                            Ok(Some(t)) => {
                                record_bonuses(std::slice::from_ref(&t));
                                paid += 1;
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!(user, error = %e, "birthday bonus not paid; retried at the next run"),
                        }
                    }
                }
            }
            Ok(paid)
        })
        .await
    }

    /// One event bonus (birthday) for a member, in its own transaction.
    async fn pay_event(
        &self,
        user: i64,
        c: Campaign,
        occasion: String,
    ) -> Result<Option<Transaction>> {
        let now = self.ctx.clock.now();
        let mut tx = self.ctx.pool.begin().await?;
        let m = lock_member(&self.ctx, &mut tx, user, now).await?;
        let t = pay_bonuses(&self.ctx, &mut tx, &m, &[&c], 0, &occasion, None, None, now)
            .await?
            .pop();
        tx.commit().await?;
        Ok(t)
    }
}

/// Writes the bonus lines `campaigns` pay a locked member for an event worth `earned`
/// points (what an order earned; 0 for sign-up and birthday), after the caps. `occasion`
/// keys each line with its campaign, so the same occasion is never paid twice.
#[allow(clippy::too_many_arguments)]
pub(super) async fn pay_bonuses(
    ctx: &Ctx,
    conn: &mut sqlx::PgConnection,
    m: &crate::db::points::LockedMember,
    campaigns: &[&Campaign],
    earned: i64,
    occasion: &str,
    parent: Option<(i64, i64)>,
    pending_until: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<Vec<Transaction>> {
    let cfg = &ctx.config;
    // parent: the order's earn and the balance after it
    let (parent_id, mut balance) = match parent {
        Some((id, balance)) => (Some(id), balance),
        None => (None, m.available_points),
    };
    let earned_today = m.earned_today + earned;
    let plan = plan_bonuses(
        campaigns,
        earned,
        earned_today,
        cfg.max_points_per_transaction,
        cfg.daily_points_limit,
    );
    let mut lines = Vec::with_capacity(plan.len());
    for b in plan {
        if pending_until.is_none() {
            balance += b.points;
        }
        let t = db::insert_bonus(
            conn,
            &NewBonus {
                user_id: m.user_id,
                points: b.points,
                balance_after: balance,
                campaign_id: b.campaign_id,
                occasion,
                parent_id,
                description: &b.name,
                now,
                expires_at: pending_until.unwrap_or(now) + Duration::days(cfg.points_expiry_days),
                business_date: m.business_date,
                pending_until,
            },
        )
        .await?;
        lines.push(t);
    }
    Ok(lines)
}

/// Metrics for bonus lines once they have committed.
pub(super) fn record_bonuses(lines: &[Transaction]) {
    for t in lines {
        record("earn", t.points_change);
        metrics::counter!("member_system_campaign_bonus_points_total")
            .increment(t.points_change as u64);
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
