//! RewardService: the catalogue staff keep, redemptions members and integrations make,
//! and the coupons they issue, as checkout validates, consumes and releases them.
//!
//! A redemption is one PostgreSQL transaction: the member's row locked first, then the
//! reward's (stock and the per-member limit cannot race), the points spent first-expiring
//! first as a `use` (reference_type `reward`, the redemption id as its key), one of the
//! stock taken and the coupon issued. Cancelling the coupon refunds that use into its
//! original batches and puts the stock back, in one transaction locked the same way.

use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::points::{REWARD_USAGE, debit_use, lock_member, record, refund_use};
use super::{Ctx, run_to_completion};
use crate::db::members as member_db;
use crate::db::points as points_db;
use crate::db::rewards::{self as db, CouponRow, NewCoupon};
use crate::domain::rewards::{
    Coupon, CouponStatus, Reward, RewardInput, RewardRefusal, new_coupon_code,
};
use crate::domain::{Reference, Transaction};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct RedeemRequest {
    pub user_id: i64,
    pub reward_id: i32,
    /// the idempotency key: the same id again returns the same coupon
    pub redemption_id: Reference,
}

/// What a redemption did.
#[derive(Debug, Clone)]
pub struct Redemption {
    pub coupon: Coupon,
    pub transaction: Transaction,
    /// an earlier identical request already redeemed it
    pub replayed: bool,
}

/// A reward as one member sees it in the catalogue.
#[derive(Debug, Clone)]
pub struct Offer {
    pub reward: Reward,
    /// why this member cannot redeem it now, if not
    pub refusal: Option<RewardRefusal>,
    /// points the member still lacks (0 when the balance covers it)
    pub short_by: i64,
}

impl Offer {
    pub fn redeemable(&self) -> bool {
        self.refusal.is_none() && self.short_by == 0
    }
}

/// A coupon as checkout sees it before using it.
#[derive(Debug, Clone)]
pub struct CouponCheck {
    pub coupon: Coupon,
    pub usable: bool,
    /// what it takes off the order amount sent (amount and percent coupons)
    pub discount: Option<rust_decimal::Decimal>,
}

/// A consume, release or cancel: the coupon after it, and whether it had been done before.
#[derive(Debug, Clone)]
pub struct CouponChange {
    pub coupon: Coupon,
    pub replayed: bool,
    /// cancel: the refund of the coupon's points
    pub refund: Option<Transaction>,
}

#[derive(Clone)]
pub struct RewardService {
    ctx: Ctx,
}

impl RewardService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    fn now(&self) -> OffsetDateTime {
        self.ctx.clock.now()
    }

    /// Every reward, for staff.
    pub async fn all(&self) -> Result<Vec<Reward>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::list(&mut conn, false).await?)
    }

    pub async fn get(&self, id: i32) -> Result<Reward> {
        let mut conn = self.ctx.pool.acquire().await?;
        db::get(&mut conn, id)
            .await?
            .ok_or(Error::RewardNotFound { reward_id: id })
    }

    /// The active rewards, each with whether this member can redeem it now.
    pub async fn catalogue(
        &self,
        user_id: i64,
        level_order: i32,
        available: i64,
    ) -> Result<Vec<Offer>> {
        let now = self.now();
        let mut conn = self.ctx.pool.acquire().await?;
        let rewards = db::list(&mut conn, true).await?;
        let held = if rewards.iter().any(|r| r.per_member_limit.is_some()) {
            db::held_by_member(&mut conn, user_id).await?
        } else {
            Vec::new()
        };
        Ok(rewards
            .into_iter()
            .map(|reward| {
                let held = held
                    .iter()
                    .find(|(id, _)| *id == reward.id)
                    .map_or(0, |(_, n)| *n);
                let refusal = refusal_for(&reward, level_order, held, now).err();
                Offer {
                    short_by: (reward.points_cost - available).max(0),
                    reward,
                    refusal,
                }
            })
            .collect())
    }

    /// The active rewards for an integration (no member's view).
    pub async fn active(&self) -> Result<Vec<Reward>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::list(&mut conn, true).await?)
    }

    #[tracing::instrument(skip_all, err(level = "info"), fields(reward_id))]
    pub async fn create(&self, actor: Option<i64>, input: RewardInput) -> Result<Reward> {
        let now = self.now();
        let mut tx = self.ctx.pool.begin().await?;
        self.check_level(&mut tx, input.min_level_id).await?;
        let id = db::insert(&mut tx, &input, now).await?;
        tracing::Span::current().record("reward_id", id);
        member_db::audit(
            &mut tx,
            actor,
            "reward.create",
            "reward",
            &id.to_string(),
            &audit_details(&input),
            now,
        )
        .await?;
        let reward = db::get(&mut tx, id)
            .await?
            .ok_or(Error::RewardNotFound { reward_id: id })?;
        tx.commit().await?;
        Ok(reward)
    }

    #[tracing::instrument(skip_all, err(level = "info"), fields(reward_id = id))]
    /// Changes a reward; `stock_seen` is the stock the editor saw, so redemptions made
    /// while they edited are kept (the new stock less what went since).
    pub async fn update(
        &self,
        actor: Option<i64>,
        id: i32,
        input: RewardInput,
        stock_seen: Option<i32>,
    ) -> Result<Reward> {
        let now = self.now();
        let mut tx = self.ctx.pool.begin().await?;
        self.check_level(&mut tx, input.min_level_id).await?;
        if !db::update(&mut tx, id, &input, stock_seen, now).await? {
            return Err(Error::RewardNotFound { reward_id: id });
        }
        member_db::audit(
            &mut tx,
            actor,
            "reward.update",
            "reward",
            &id.to_string(),
            &audit_details(&input),
            now,
        )
        .await?;
        let reward = db::get(&mut tx, id)
            .await?
            .ok_or(Error::RewardNotFound { reward_id: id })?;
        tx.commit().await?;
        Ok(reward)
    }

    async fn check_level(&self, conn: &mut sqlx::PgConnection, id: Option<i32>) -> Result<()> {
        let Some(id) = id else { return Ok(()) };
        let exists = crate::db::levels::by_id(conn, id).await?.is_some();
        if exists {
            Ok(())
        } else {
            Err(Error::invalid(
                "min_level_id",
                crate::error::Invalid::ChooseListedLevel,
            ))
        }
    }

    /// Redeems a reward for points: the coupon it issues, or the same coupon again for
    /// the same redemption id.
    #[tracing::instrument(skip_all, err(level = "info"), fields(user_id = req.user_id, reward_id = req.reward_id))]
    pub async fn redeem(&self, req: RedeemRequest) -> Result<Redemption> {
        let this = self.clone();
        run_to_completion(async move {
            let redemption = match this.ctx.guarded(req.user_id, || this.redeem_tx(&req)).await {
                Err(e) if e.is_key_race() => this.redemption_after_race(&req).await?,
                other => other?,
            };
            if !redemption.replayed {
                record("use", redemption.coupon.points);
                metrics::counter!("member_system_coupons_total", "event" => "issued").increment(1);
            }
            Ok(redemption)
        })
        .await
    }

    async fn redeem_tx(&self, req: &RedeemRequest) -> Result<Redemption> {
        let now = self.now();
        let key = req.redemption_id.as_str();
        let mut tx = self.ctx.pool.begin().await?;
        let m = lock_member(&self.ctx, &mut tx, req.user_id, now).await?;
        if let Some(k) = points_db::find_keyed(&mut tx, "use", REWARD_USAGE, key, "").await? {
            let coupon = db::by_transaction(&mut tx, k.tx.id).await?;
            return replay(req, k.tx, coupon, now);
        }
        let (reward, held) = db::lock_for_redemption(&mut tx, req.reward_id, req.user_id)
            .await?
            .ok_or(Error::RewardNotFound {
                reward_id: req.reward_id,
            })?;
        refusal_for(&reward, m.level_order, held, now)
            .map_err(|reason| Error::RewardRefused { reason })?;
        let transaction = debit_use(
            &mut tx,
            &m,
            REWARD_USAGE,
            key,
            reward.points_cost,
            &reward.name,
            now,
        )
        .await?;
        let code = new_coupon_code();
        let expires_at = now + Duration::days(i64::from(reward.coupon_valid_days));
        let notice = json!({
            "reward_id": reward.id,
            "title": reward.name,
            "code": code,
            "points": reward.points_cost,
            "expires_at": rfc3339(expires_at),
            "redemption_id": key,
        });
        let coupon = db::issue(
            &mut tx,
            &NewCoupon {
                code: &code,
                reward: &reward,
                user_id: req.user_id,
                redemption_id: key,
                transaction_id: transaction.id,
                expires_at,
                now,
                notice: &notice,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Redemption {
            coupon: coupon.at(now),
            transaction,
            replayed: false,
        })
    }

    /// The same redemption id committed by another member's request first.
    async fn redemption_after_race(&self, req: &RedeemRequest) -> Result<Redemption> {
        let now = self.now();
        let mut conn = self.ctx.pool.acquire().await?;
        let key = req.redemption_id.as_str();
        match points_db::find_keyed(&mut conn, "use", REWARD_USAGE, key, "").await? {
            Some(k) => {
                let coupon = db::by_transaction(&mut conn, k.tx.id).await?;
                replay(req, k.tx, coupon, now)
            }
            None => Err(Error::ConcurrentOperation),
        }
    }

    /// A coupon by its code as anyone holding it may see it.
    pub async fn coupon(&self, code: &str) -> Result<Coupon> {
        let code = parse_code(code)?;
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::by_code(&mut conn, &code, false)
            .await?
            .ok_or(Error::CouponNotFound)?
            .at(self.now()))
    }

    /// One of the member's own coupons (another member's code is "not found").
    pub async fn member_coupon(&self, user_id: i64, code: &str) -> Result<Coupon> {
        match self.coupon(code).await {
            Ok(c) if c.user_id == user_id => Ok(c),
            Ok(_) | Err(Error::Validation { .. }) => Err(Error::CouponNotFound),
            Err(e) => Err(e),
        }
    }

    /// A coupon by id: for staff, or (with `owner`) one of the member's own, another
    /// member's being "not found".
    pub async fn coupon_by_id(&self, owner: Option<i64>, id: i64) -> Result<Coupon> {
        let mut conn = self.ctx.pool.acquire().await?;
        match db::by_id(&mut conn, id).await? {
            Some(c) if owner.is_none_or(|u| u == c.user_id) => Ok(c.at(self.now())),
            _ => Err(Error::CouponNotFound),
        }
    }

    /// One of the member's own coupons by id.
    pub async fn member_coupon_by_id(&self, user_id: i64, id: i64) -> Result<Coupon> {
        self.coupon_by_id(Some(user_id), id).await
    }

    /// A member's coupons, newest first; `before` is the id of the last of the previous page.
    pub async fn member_coupons(
        &self,
        user_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<Coupon>, Option<i64>)> {
        let limit = limit.clamp(1, 100);
        let now = self.now();
        let mut conn = self.ctx.pool.acquire().await?;
        let mut rows = db::of_member(&mut conn, user_id, before, limit + 1).await?;
        if rows.is_empty()
            && member_db::member_record(&mut conn, user_id)
                .await?
                .is_none()
        {
            return Err(Error::MemberNotFound { user_id });
        }
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|c| c.id)
        } else {
            None
        };
        Ok((rows.into_iter().map(|c| c.at(now)).collect(), next))
    }

    /// Whether checkout may take this coupon, and what it takes off `amount`.
    pub async fn validate(
        &self,
        code: &str,
        amount: Option<rust_decimal::Decimal>,
    ) -> Result<CouponCheck> {
        let coupon = self.coupon(code).await?;
        Ok(CouponCheck {
            usable: coupon.status == CouponStatus::Issued,
            discount: amount.and_then(|a| coupon.discount_on(a)),
            coupon,
        })
    }

    /// Uses the coupon on an order. The same order again changes nothing; another order,
    /// or a coupon cancelled or expired, is refused.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn consume(&self, code: &str, order_id: &Reference) -> Result<CouponChange> {
        let code = parse_code(code)?;
        let order = order_id.as_str().to_owned();
        let this = self.clone();
        run_to_completion(async move {
            let now = this.now();
            let mut tx = this.ctx.pool.begin().await?;
            let c = db::by_code(&mut tx, &code, true)
                .await?
                .ok_or(Error::CouponNotFound)?;
            let status = CouponStatus::of(&c.status, c.expires_at, now);
            match status {
                CouponStatus::Consumed if c.order_id.as_deref() == Some(order.as_str()) => {
                    return Ok(CouponChange {
                        coupon: c.at(now),
                        replayed: true,
                        refund: None,
                    });
                }
                CouponStatus::Issued => {}
                other => return Err(unusable(other, &c)),
            }
            let event = coupon_event(&c, Some(&order));
            let row = db::set_consumed(&mut tx, &c, Some(&order), now, &event).await?;
            tx.commit().await?;
            metrics::counter!("member_system_coupons_total", "event" => "consumed").increment(1);
            Ok(CouponChange {
                coupon: row.at(now),
                replayed: false,
                refund: None,
            })
        })
        .await
    }

    /// Gives the coupon back after its order was cancelled: usable again until its expiry.
    /// A coupon that is not in use already is left as it is.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn release(&self, code: &str, order_id: &Reference) -> Result<CouponChange> {
        let code = parse_code(code)?;
        let order = order_id.as_str().to_owned();
        let this = self.clone();
        run_to_completion(async move {
            let now = this.now();
            let mut tx = this.ctx.pool.begin().await?;
            let c = db::by_code(&mut tx, &code, true)
                .await?
                .ok_or(Error::CouponNotFound)?;
            match CouponStatus::of(&c.status, c.expires_at, now) {
                CouponStatus::Consumed if c.order_id.as_deref() == Some(order.as_str()) => {}
                CouponStatus::Consumed => return Err(unusable(CouponStatus::Consumed, &c)),
                CouponStatus::Cancelled => return Err(unusable(CouponStatus::Cancelled, &c)),
                CouponStatus::Issued | CouponStatus::Expired => {
                    return Ok(CouponChange {
                        coupon: c.at(now),
                        replayed: true,
                        refund: None,
                    });
                }
            }
            let event = coupon_event(&c, None);
            let row = db::set_consumed(&mut tx, &c, None, now, &event).await?;
            tx.commit().await?;
            metrics::counter!("member_system_coupons_total", "event" => "released").increment(1);
            Ok(CouponChange {
                coupon: row.at(now),
                replayed: false,
                refund: None,
            })
        })
        .await
    }
}

/// Who asks to cancel a coupon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canceller {
    /// the member it belongs to, from the portal: only a coupon still usable
    Member(i64),
    /// staff (audited) or an integration: an expired coupon too
    Staff(i64),
    Integration,
}

impl RewardService {
    /// Cancels the redemption of a coupon not used: its points go back into the batches
    /// they came from and the reward's stock is put back. Cancelling again changes nothing.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn cancel(
        &self,
        code: &str,
        by: Canceller,
        reason: Option<String>,
    ) -> Result<CouponChange> {
        let code = parse_code(code)?;
        let owner = {
            let mut conn = self.ctx.pool.acquire().await?;
            db::by_code(&mut conn, &code, false)
                .await?
                .ok_or(Error::CouponNotFound)?
                .user_id
        };
        if matches!(by, Canceller::Member(u) if u != owner) {
            return Err(Error::CouponNotFound);
        }
        let this = self.clone();
        run_to_completion(async move {
            let change = this
                .ctx
                .guarded(owner, || {
                    this.cancel_tx(&code, owner, by, reason.as_deref())
                })
                .await?;
            if !change.replayed {
                if let Some(r) = &change.refund {
                    record("refund", r.points_change);
                }
                metrics::counter!("member_system_coupons_total", "event" => "cancelled")
                    .increment(1);
            }
            Ok(change)
        })
        .await
    }

    async fn cancel_tx(
        &self,
        code: &str,
        owner: i64,
        by: Canceller,
        reason: Option<&str>,
    ) -> Result<CouponChange> {
        let now = self.now();
        let mut tx = self.ctx.pool.begin().await?;
        let m = lock_member(&self.ctx, &mut tx, owner, now).await?;
        let c = db::by_code(&mut tx, code, true)
            .await?
            .ok_or(Error::CouponNotFound)?;
        let status = CouponStatus::of(&c.status, c.expires_at, now);
        match status {
            CouponStatus::Cancelled => {
                let refund =
                    points_db::find_keyed(&mut tx, "refund", REWARD_USAGE, &c.redemption_id, "")
                        .await?
                        .map(|k| k.tx);
                return Ok(CouponChange {
                    coupon: c.at(now),
                    replayed: true,
                    refund,
                });
            }
            CouponStatus::Consumed => return Err(unusable(status, &c)),
            CouponStatus::Expired if matches!(by, Canceller::Member(_)) => {
                return Err(unusable(status, &c));
            }
            CouponStatus::Issued | CouponStatus::Expired => {}
        }
        let used = points_db::find_keyed(&mut tx, "use", REWARD_USAGE, &c.redemption_id, "")
            .await?
            .ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "coupon {} has no redemption in the ledger",
                    c.id
                ))
            })?;
        let refund = refund_use(&mut tx, &m, &used, REWARD_USAGE, &c.redemption_id, now).await?;
        let event = coupon_event(&c, None);
        let row = db::set_cancelled(&mut tx, &c, refund.id, now, &event).await?;
        if let Canceller::Staff(actor) = by {
            member_db::audit(
                &mut tx,
                Some(actor),
                "coupon.cancel",
                "member",
                &owner.to_string(),
                &json!({ "coupon_id": c.id, "code": c.code, "points": c.points,
                         "reason": reason, "transaction_id": refund.id }),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(CouponChange {
            coupon: row.at(now),
            replayed: false,
            refund: Some(refund),
        })
    }
}

/// Why `reward` cannot be redeemed now by a member of `level_order` holding `held` of its
/// coupons; points are checked by the use itself.
fn refusal_for(
    reward: &Reward,
    level_order: i32,
    held: i64,
    now: OffsetDateTime,
) -> Result<(), RewardRefusal> {
    reward.open_at(now)?;
    if reward.min_level_order.is_some_and(|min| level_order < min) {
        return Err(RewardRefusal::LevelTooLow);
    }
    if let Some(limit) = reward.per_member_limit {
        if held >= i64::from(limit) {
            return Err(RewardRefusal::LimitReached { limit });
        }
    }
    Ok(())
}

fn replay(
    req: &RedeemRequest,
    tx: Transaction,
    coupon: Option<CouponRow>,
    now: OffsetDateTime,
) -> Result<Redemption> {
    match coupon {
        Some(c) if c.user_id == req.user_id && c.reward_id == req.reward_id => Ok(Redemption {
            coupon: c.at(now),
            transaction: tx,
            replayed: true,
        }),
        _ => Err(Error::IdempotencyConflict {
            message: format!(
                "redemption {} was already made with different details",
                req.redemption_id.as_str()
            ),
        }),
    }
}

fn parse_code(code: &str) -> Result<String> {
    crate::domain::rewards::normalize_code(code).ok_or_else(|| {
        Error::validation(
            "code",
            "a coupon code is 16 letters and digits, e.g. ABCD-EFGH-JKMN-PQRS",
        )
    })
}

fn unusable(status: CouponStatus, c: &CouponRow) -> Error {
    let message = match status {
        CouponStatus::Consumed => format!(
            "this coupon was used on order {}; release it from that order first",
            c.order_id.as_deref().unwrap_or("")
        ),
        CouponStatus::Cancelled => "this coupon was cancelled and its points returned".to_owned(),
        CouponStatus::Expired => format!("this coupon expired at {}", rfc3339(c.expires_at)),
        CouponStatus::Issued => "this coupon has not been used on an order".to_owned(),
    };
    Error::CouponUnusable { status, message }
}

fn coupon_event(c: &CouponRow, order_id: Option<&str>) -> serde_json::Value {
    json!({
        "coupon_id": c.id,
        "code": c.code,
        "reward_id": c.reward_id,
        "title": c.title,
        "order_id": order_id.or(c.order_id.as_deref()),
    })
}

fn audit_details(r: &RewardInput) -> serde_json::Value {
    json!({
        "name": r.name,
        "kind": r.kind.as_str(),
        "value": r.value,
        "points_cost": r.points_cost,
        "stock": r.stock,
        "per_member_limit": r.per_member_limit,
        "min_level_id": r.min_level_id,
        "starts_at": r.starts_at.map(rfc3339),
        "ends_at": r.ends_at.map(rfc3339),
        "coupon_valid_days": r.coupon_valid_days,
        "is_active": r.is_active,
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
