//! The tier lifecycle of issue 13 §3: the review that keeps or lowers levels whose
//! retention has ended (with notice first), and what a member is told about keeping theirs.
//! The rules are `MEMBER_TIER_*` (config::TierRules); the work is `review_levels` in
//! migration 0018, in batches that lock each member's row.

use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::{Ctx, levels::LevelService, run_to_completion};
use crate::config::{TierReview, TierWindow};
use crate::db::tiers as db;
use crate::domain::{Level, money};
use crate::error::{Error, Result};

/// What one review run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReviewReport {
    /// members whose review was due and who kept their level
    pub kept: usize,
    /// downgrade notices sent
    pub noticed: usize,
    pub dropped: usize,
    /// members read whose review is not due yet
    pub passed: usize,
}

/// What the member's upgrade page says about keeping their level.
#[derive(Debug, Clone)]
pub struct TierView {
    pub window: TierWindow,
    /// qualifying spend now
    pub window_spent: Decimal,
    /// the level is kept until then (None: for good)
    pub kept_until: Option<OffsetDateTime>,
    pub manual: bool,
    /// when there is a review to come: what keeps the level
    pub keep: Option<KeepAdvice>,
    /// a deferred upgrade waits for the cooldown until then
    pub upgrade_due_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct KeepAdvice {
    /// spend before then adds up to keep the level: the review, or with the calendar-year
    /// window the end of the retention year (later spend starts a new year)
    pub by: OffsetDateTime,
    /// still to spend to keep the level (0: it is kept)
    pub needed: Decimal,
    /// where the member goes at the review if they do not
    pub drop_to: Option<String>,
    /// the downgrade notice went out
    pub noticed: bool,
}

#[derive(Clone)]
pub struct TierService {
    ctx: Ctx,
}

impl TierService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    /// Reviews every member whose review is due (and sends the notices of those within
    /// `MEMBER_TIER_NOTICE_DAYS` of theirs), in batches of `BATCH_SIZE` × 10, each its own
    /// transaction. The background job runs it under its advisory lock.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn review(&self) -> Result<ReviewReport> {
        let this = self.clone();
        run_to_completion(async move {
            let now = this.ctx.clock.now();
            let limit = (this.ctx.config.batch_size * 10).clamp(1, 10_000) as i32;
            let mut after = (OffsetDateTime::UNIX_EPOCH, 0i64);
            let mut report = ReviewReport::default();
            loop {
                let mut tx = this.ctx.pool.begin().await?;
                let rows =
                    db::review_batch(&mut tx, now, after, limit, this.ctx.tier_rules()).await?;
                tx.commit().await?;
                let Some(last) = rows.last() else { break };
                after = (last.review_at, last.user_id);
                let mut touched = Vec::new();
                for r in &rows {
                    match r.outcome.as_str() {
                        "kept" => report.kept += 1,
                        "noticed" => report.noticed += 1,
                        "dropped" => report.dropped += 1,
                        _ => {
                            report.passed += 1;
                            continue;
                        }
                    }
                    touched.push(r.user_id);
                }
                this.ctx.cache.invalidate_members(&touched).await;
                if rows.len() < limit as usize {
                    break;
                }
            }
            for (outcome, n) in [
                ("kept", report.kept),
                ("noticed", report.noticed),
                ("dropped", report.dropped),
            ] {
                metrics::counter!("member_system_level_reviews_total", "outcome" => outcome)
                    .increment(n as u64);
            }
            Ok(report)
        })
        .await
    }

    /// Where the member stands with their level: window spend, how long it is kept, what
    /// keeps it at the review, a deferred upgrade.
    pub async fn view(&self, user_id: i64, level: &Level) -> Result<TierView> {
        let now = self.ctx.clock.now();
        let status = {
            let mut conn = self.ctx.pool.acquire().await?;
            db::status(&mut conn, user_id, now, self.ctx.tier_rules())
                .await?
                .ok_or(Error::MemberNotFound { user_id })?
        };
        let keep = match status.review_at {
            None => None,
            Some(review_at) => {
                let levels = LevelService::new(self.ctx.clone()).active().await?;
                let spent = status.review_spent;
                let reach = levels
                    .iter()
                    .filter(|l| Decimal::from(l.min_points) <= spent)
                    .max_by_key(|l| l.level_order);
                let below = levels
                    .iter()
                    .filter(|l| l.level_order < level.level_order)
                    .max_by_key(|l| l.level_order);
                let target = match self.ctx.config.tiers.review {
                    TierReview::DropToWindow => reach,
                    TierReview::DropOne => match (below, reach) {
                        (Some(b), Some(r)) if r.level_order > b.level_order => Some(r),
                        (b, r) => b.or(r),
                    },
                };
                let needed = (Decimal::from(level.min_points) - spent).max(Decimal::ZERO);
                let by = match (self.ctx.config.tiers.window, status.kept_until) {
                    (TierWindow::CalendarYear, Some(until)) => until.min(review_at),
                    _ => review_at,
                };
                Some(KeepAdvice {
                    by,
                    needed: money(needed),
                    drop_to: target
                        .filter(|t| t.level_order < level.level_order)
                        .map(|t| t.level_name.clone()),
                    noticed: status.noticed,
                })
            }
        };
        Ok(TierView {
            window: self.ctx.config.tiers.window,
            window_spent: money(status.window_spent),
            kept_until: status.kept_until,
            manual: status.manual,
            keep,
            upgrade_due_at: status.upgrade_due_at,
        })
    }
}
