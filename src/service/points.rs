//! PointService of the seed: earn, use, reverse, refund, adjust, expire (SPEC §3.3–3.5).
//! Each operation is one PostgreSQL transaction that starts by locking the member's row
//! (`lock_member`, which also expires what is due), runs on its own task to the end, and
//! drops the member's cache entries after commit.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::json;
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};

use super::campaigns::{pay_bonuses, record_bonuses};
use super::earn_queue::{Answer, Turn, Waiting};
use super::{Ctx, accounts, members, run_to_completion};
use crate::db::campaigns as campaign_db;
use crate::db::members as member_db;
use crate::db::points::{self as db, Earned, Keyed, LockedMember, NewCredit, NewDebit};
use crate::domain::campaigns::Campaign;
use crate::domain::{
    Batch, Money, Outcome, Points, PointsSummary, Reference, Transaction, parse_reason,
};
use crate::error::{Error, Result, on_constraint};

pub use crate::db::points::BatchRow;

const IDEMPOTENCY_KEY: &str = "point_transactions_idempotency_key";

/// The most queued earns of one member run in one statement (each is a few writes in the
/// batch's one transaction).
const EARN_BATCH: usize = 32;

/// The campaigns among `campaigns` that pay a bonus on `req` at `now`.
fn in_play<'c>(
    campaigns: &'c [Campaign],
    req: &EarnRequest,
    now: OffsetDateTime,
) -> Vec<&'c Campaign> {
    campaigns
        .iter()
        .filter(|c| {
            c.applies_to(
                req.source_type.as_str(),
                category(req),
                req.amount.map(Money::get),
                now,
            )
        })
        .collect()
}

/// Starts the member's queued earns when dropped: after the earn that ran, however it ended.
struct QueueNext<'a> {
    points: &'a PointService,
    user_id: i64,
}

impl Drop for QueueNext<'_> {
    fn drop(&mut self) {
        self.points.run_queue(self.user_id);
    }
}

/// Makes the runner that ran an earn take the earns waiting for company, when dropped.
struct CompanyNext<'a> {
    points: &'a PointService,
}

impl Drop for CompanyNext<'_> {
    fn drop(&mut self) {
        self.points.run_company();
    }
}

/// A runner of the company that stops before it has finished.
struct RunnerLost {
    queue: std::sync::Arc<super::earn_queue::EarnQueue>,
    armed: bool,
}

impl Drop for RunnerLost {
    fn drop(&mut self) {
        if self.armed {
            self.queue.runner_lost();
        }
    }
}

/// A queued earn's answer, sent once the locks it ran under are given back (and the
/// members' cache entries dropped), so its caller reads what it wrote.
type Reply = (tokio::sync::oneshot::Sender<Answer>, Answer);

fn send_all(replies: Vec<Reply>) {
    for (to, answer) in replies {
        let _ = to.send(answer);
    }
}

/// Frees a member's queue whose runner stops before it is empty.
struct Abandon {
    queue: std::sync::Arc<super::earn_queue::EarnQueue>,
    user_id: i64,
    armed: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if self.armed {
            self.queue.abandon(self.user_id);
        }
    }
}

/// The outcome of a new earn the statement made alone (no bonuses, no upgrade).
fn created(transaction: Transaction) -> Outcome {
    Outcome {
        transaction,
        replayed: false,
        upgrade: None,
        bonuses: Vec::new(),
    }
}

/// The usage type of reward redemptions (see `service::rewards`): their points are spent
/// and given back with the coupon, never through a plain use or refund.
pub const REWARD_USAGE: &str = "reward";

fn not_a_redemption(usage_type: &Reference) -> Result<()> {
    if usage_type.as_str() == REWARD_USAGE {
        return Err(Error::validation(
            "usage_type",
            "usage_type \"reward\" is kept for reward redemptions: redeem a reward, and cancel its coupon to give the points back",
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct EarnRequest {
    pub user_id: i64,
    pub base_points: Points,
    pub source_type: Reference,
    pub source_id: Reference,
    pub amount: Option<Money>,
    /// what was bought, for campaigns that apply to one category only
    pub category: Option<Reference>,
}

#[derive(Debug, Clone)]
pub struct UseRequest {
    pub user_id: i64,
    pub points: Points,
    pub usage_type: Reference,
    pub reference_id: Reference,
}

#[derive(Debug, Clone)]
pub struct ReverseRequest {
    pub user_id: i64,
    pub source_type: Reference,
    pub source_id: Reference,
    pub refund_id: Option<Reference>,
    pub amount: Option<Money>,
}

#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub user_id: i64,
    pub usage_type: Reference,
    pub reference_id: Reference,
}

#[derive(Debug, Clone)]
pub struct AdjustRequest {
    pub user_id: i64,
    /// positive credits a new batch, negative takes points first-expiring-first
    pub points: i64,
    pub reason: String,
    pub actor_user_id: Option<i64>,
}

impl AdjustRequest {
    pub fn parse(user_id: i64, points: i64, reason: &str, actor: Option<i64>) -> Result<Self> {
        if points == 0 || points.unsigned_abs() > Points::MAX.unsigned_abs() {
            return Err(Error::validation(
                "points",
                format!(
                    "points must be a non-zero whole number between -{0} and {0}",
                    Points::MAX
                ),
            ));
        }
        Ok(Self {
            user_id,
            points,
            reason: parse_reason("reason", reason)?,
            actor_user_id: actor,
        })
    }
}

/// What an expiry sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub members: usize,
    pub points: i64,
}

/// The earn statement's answer, read: what is left for the caller to do.
enum Settled {
    Created(Transaction),
    /// a replay (or an error the caller returns)
    Done(Outcome),
    UpgradeDue,
}

#[derive(Clone)]
pub struct PointService {
    ctx: Ctx,
}

impl PointService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    fn now(&self) -> OffsetDateTime {
        self.ctx.clock.now()
    }

    async fn lock(
        &self,
        conn: &mut PgConnection,
        user_id: i64,
        now: OffsetDateTime,
    ) -> Result<LockedMember> {
        lock_member(&self.ctx, conn, user_id, now).await
    }

    /// Credits points for an order or other source (seed: `earn_points`).
    pub async fn earn_points(&self, req: EarnRequest) -> Result<Outcome> {
        self.earn_points_as(None, req).await
    }

    /// An earn for an API caller whose key (its SHA-256 hash) is checked in the same
    /// statement as the earn; `None` for trusted callers.
    #[tracing::instrument(skip_all, err(level = "info"), fields(user_id = req.user_id))]
    pub async fn earn_points_as(
        &self,
        key_hash: Option<String>,
        req: EarnRequest,
    ) -> Result<Outcome> {
        let this = self.clone();
        run_to_completion(async move {
            let outcome = match this.earn_in_turn(&req, key_hash.as_deref()).await {
                Err(e) if e.is_key_race() => {
                    // Another member's earn with this key committed first.
                    this.replay_after_race("earn", &req.source_type, &req.source_id, "", |k| {
                        same_earn(k, &req)
                    })
                    .await?
                }
                other => other?,
            };
            if !outcome.replayed {
                record("earn", outcome.transaction.points_change);
                if let Some(up) = &outcome.upgrade {
                    metrics::counter!("member_system_level_upgrades_total",
                        "from_level" => up.old_level.clone(), "to_level" => up.new_level.clone())
                    .increment(1);
                }
            }
            Ok(outcome)
        })
        .await
    }

    /// The earn is one statement (`earn_points`, migration 0026). It runs alone, committing
    /// on its own, unless campaigns pay bonuses on it or its order amount moves the member
    /// up a level: then [`Self::earn_tx`] runs the same statement in a transaction with
    /// the bonuses and the upgrade.
    async fn earn_one(&self, req: &EarnRequest, key_hash: Option<&str>) -> Result<Outcome> {
        let now = self.now();
        let campaigns = self.ctx.campaigns().await?;
        let in_play = in_play(&campaigns, req, now);
        if in_play.is_empty() {
            let mut conn = self.ctx.pool.acquire().await?;
            let call = self.earn_call(req, key_hash, true, now);
            match self.settle(&mut conn, req, &call).await? {
                Settled::Done(outcome) => return Ok(outcome),
                Settled::Created(transaction) => return Ok(created(transaction)),
                Settled::UpgradeDue => {}
            }
        }
        self.earn_tx(req, key_hash, &in_play, now).await
    }

    /// The earn under the member's lock, as [`Self::earn_one`] runs it, unless another earn
    /// of the member is running on this instance: then it waits in the member's queue, and
    /// whoever takes the lock next runs everything queued in one statement (group commit,
    /// see `earn_queue`). The same answers either way; the lock's wait bounds the queue's.
    async fn earn_in_turn(&self, req: &EarnRequest, key_hash: Option<&str>) -> Result<Outcome> {
        let user_id = req.user_id;
        let alone = || self.ctx.guarded(user_id, || self.earn_one(req, key_hash));
        let (id, mut rx) = match self.ctx.earn_queue.join(req, key_hash) {
            Turn::Run => {
                // the queue's turn comes after this earn, even if it panicked
                let _next = QueueNext {
                    points: self,
                    user_id,
                };
                return self.earn_in_company(req, key_hash).await;
            }
            Turn::Queued(id, rx) => (id, rx),
        };
        let answer = match tokio::time::timeout(self.ctx.config.lock_wait, &mut rx).await {
            Ok(answer) => answer,
            Err(_) if self.ctx.earn_queue.withdraw(user_id, id) => {
                return Err(Error::ConcurrentOperation);
            }
            // taken to be run just now: its answer is coming
            Err(_) => rx.await,
        };
        match answer {
            Ok(Some(result)) => result,
            // not run (its runner stopped): it runs alone, its key keeps that from crediting twice
            Ok(None) | Err(_) => alone().await,
        }
    }

    /// The earn of a member whose turn it is on this instance: it runs at once if
    /// `EARN_GROUP_RUNNERS` is 0 (the default) or fewer than that many earns run;
    /// otherwise it waits for the next runner to finish and take it, with every other earn
    /// waiting, into one statement ([`Self::run_together`]). Not taken within the lock's
    /// wait, it runs alone.
    async fn earn_in_company(&self, req: &EarnRequest, key_hash: Option<&str>) -> Result<Outcome> {
        let alone = || {
            self.ctx
                .guarded(req.user_id, || self.earn_one(req, key_hash))
        };
        let runners = self.ctx.config.earn_group_runners;
        if runners == 0 {
            return alone().await;
        }
        let (id, mut rx) = match self.ctx.earn_queue.keep_company(runners, req, key_hash) {
            Turn::Run => {
                // what waits meanwhile is this runner's to take next, even if it panicked
                let _next = CompanyNext { points: self };
                return alone().await;
            }
            Turn::Queued(id, rx) => (id, rx),
        };
        let answer = match tokio::time::timeout(self.ctx.config.lock_wait, &mut rx).await {
            Ok(answer) => answer,
            Err(_) if self.ctx.earn_queue.withdraw_company(id) => return alone().await,
            // taken to be run just now: its answer is coming
            Err(_) => rx.await,
        };
        match answer {
            Ok(Some(result)) => result,
            // not run (its member's lock was held, or its runner stopped): it runs alone
            Ok(None) | Err(_) => alone().await,
        }
    }

    /// A runner that has run its earn takes the earns waiting for company, on a task of its
    /// own, batch after batch until none waits.
    fn run_company(&self) {
        if self.ctx.earn_queue.runner_done() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            // should this task stop early (a panic), what waits runs alone
            let mut lost = RunnerLost {
                queue: this.ctx.earn_queue.clone(),
                armed: true,
            };
            loop {
                let batch = this.ctx.earn_queue.take_company(EARN_BATCH);
                this.run_together(batch).await;
                if this.ctx.earn_queue.runner_done() {
                    lost.armed = false;
                    break;
                }
            }
        });
    }

    /// Earns of different members, in one statement under all their locks, taken in one
    /// go (one Redis round trip) and in member order, the order every batch locks their
    /// rows in; each member's earns queued behind its own (see [`Self::earn_in_turn`]) go
    /// along. An earn whose member's lock another operation holds is answered `None`: its
    /// caller waits for the lock and runs it alone.
    async fn run_together(&self, mut batch: Vec<Waiting>) {
        batch.sort_by_key(|w| w.req.user_id);
        let users: Vec<i64> = batch.iter().map(|w| w.req.user_id).collect();
        let guards = self.ctx.locker.try_acquire_many(&users).await;
        let mut held = Vec::with_capacity(guards.len());
        let mut locked = Vec::with_capacity(batch.len());
        for (w, guard) in batch.into_iter().zip(guards) {
            match guard {
                Some(g) => {
                    // the member's earns queued behind this one come along, after it, while
                    // the batch has room (the rest run after, in the member's own turn)
                    let room = (2 * EARN_BATCH).saturating_sub(locked.len() + 1);
                    let queued = self.ctx.earn_queue.take(w.req.user_id, room);
                    held.push(g);
                    locked.push(w);
                    locked.extend(queued);
                }
                None => {
                    let _ = w.answer.send(None);
                }
            }
        }
        let replies = self.run_batch(locked).await;
        self.ctx
            .locker
            .release_many_after_invalidating(held, &self.ctx.cache)
            .await;
        send_all(replies);
    }

    /// Runs the member's queued earns, on a task of its own, once the earn that ran has
    /// finished: batch after batch under the member's lock until none is left.
    fn run_queue(&self, user_id: i64) {
        if self.ctx.earn_queue.finish(user_id) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            // should this task stop early (a panic), the queued earns run alone
            let mut abandon = Abandon {
                queue: this.ctx.earn_queue.clone(),
                user_id,
                armed: true,
            };
            loop {
                let batch = || async {
                    let batch = this.ctx.earn_queue.take(user_id, EARN_BATCH);
                    Ok(this.run_batch(batch).await)
                };
                match this.ctx.guarded(user_id, batch).await {
                    Ok(replies) => send_all(replies),
                    Err(e) => {
                        // the lock was not had: the queued earns get what they would have got
                        // waiting for it (CONCURRENT_OPERATION), or run alone
                        let busy = matches!(e, Error::ConcurrentOperation);
                        for w in this.ctx.earn_queue.take(user_id, usize::MAX) {
                            let answer = busy.then(|| Err(Error::ConcurrentOperation));
                            let _ = w.answer.send(answer);
                        }
                    }
                }
                if this.ctx.earn_queue.finish(user_id) {
                    abandon.armed = false;
                    break;
                }
            }
        });
    }

    /// Queued earns, under their members' locks (one member's queue, or the company of
    /// several, in member order): those campaigns pay on (and a lone one) as
    /// [`Self::earn_one`] runs them, the rest in one statement. If that statement fails
    /// (another member's earn with the same key committed first, say), nothing of it was
    /// written and each earn runs alone, as it would have without the queue. The answers
    /// are sent by the caller once it has given the locks back.
    async fn run_batch(&self, batch: Vec<Waiting>) -> Vec<Reply> {
        let now = self.now();
        let campaigns = match self.ctx.campaigns().await {
            Ok(c) => c,
            Err(_) => return batch.into_iter().map(|w| (w.answer, None)).collect(),
        };
        let (mut alone, together): (Vec<Waiting>, Vec<Waiting>) = batch
            .into_iter()
            .partition(|w| !in_play(&campaigns, &w.req, now).is_empty());
        let together = if together.len() > 1 {
            together
        } else {
            alone.extend(together);
            Vec::new()
        };
        let mut replies = self.run_each_alone(alone).await;
        if together.is_empty() {
            return replies;
        }
        let ran = {
            let calls: Vec<db::EarnCall> = together
                .iter()
                .map(|w| self.earn_call(&w.req, w.key_hash.as_deref(), true, now))
                .collect();
            match self.ctx.pool.acquire().await {
                Ok(mut conn) => match db::earn_many(&mut conn, &calls).await {
                    Ok(earned) => Some((conn, earned)),
                    Err(_) => None,
                },
                Err(_) => None,
            }
        };
        let Some((mut conn, earned)) = ran else {
            replies.extend(self.run_each_alone(together).await);
            return replies;
        };
        let mut upgrades = Vec::new();
        for (w, e) in together.into_iter().zip(earned) {
            let result = match self.settled(&mut conn, &w.req, Ok(e)).await {
                Ok(Settled::Created(transaction)) => Ok(created(transaction)),
                Ok(Settled::Done(outcome)) => Ok(outcome),
                Ok(Settled::UpgradeDue) => {
                    upgrades.push(w);
                    continue;
                }
                Err(e) => Err(e),
            };
            replies.push((w.answer, Some(result)));
        }
        drop(conn);
        // nothing was written for these: each goes on as earn_one would, with the upgrade
        for w in upgrades {
            let result = self.earn_tx(&w.req, w.key_hash.as_deref(), &[], now).await;
            replies.push((w.answer, Some(result)));
        }
        replies
    }

    /// Queued earns run one by one as [`Self::earn_one`] runs them.
    async fn run_each_alone(&self, earns: Vec<Waiting>) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(earns.len());
        for w in earns {
            let result = self.earn_one(&w.req, w.key_hash.as_deref()).await;
            replies.push((w.answer, Some(result)));
        }
        replies
    }

    /// The earn statement's arguments for `req`.
    fn earn_call<'a>(
        &'a self,
        req: &'a EarnRequest,
        key_hash: Option<&'a str>,
        check_upgrade: bool,
        now: OffsetDateTime,
    ) -> db::EarnCall<'a> {
        let cfg = &self.ctx.config;
        // the return window: points wait it out before they can be spent, and expire
        // counting from its end
        let pending_until =
            (cfg.points_pending_days > 0).then(|| now + Duration::days(cfg.points_pending_days));
        db::EarnCall {
            user_id: req.user_id,
            base_points: req.base_points.get(),
            amount: req.amount.map(Money::get),
            source_type: req.source_type.as_str(),
            source_id: req.source_id.as_str(),
            now,
            tz: &cfg.member_timezone,
            expires_at: pending_until.unwrap_or(now) + Duration::days(cfg.points_expiry_days),
            pending_until,
            max_per_transaction: cfg.max_points_per_transaction,
            daily_limit: cfg.daily_points_limit,
            check_upgrade: check_upgrade && cfg.auto_upgrade,
            key_hash,
        }
    }

    /// Runs the earn statement and reads its answer: a new earn, a finished outcome (a
    /// replay, with its bonuses and upgrade), or an error.
    async fn settle(
        &self,
        conn: &mut PgConnection,
        req: &EarnRequest,
        call: &db::EarnCall<'_>,
    ) -> Result<Settled> {
        let earned = db::earn(conn, call).await;
        self.settled(conn, req, earned).await
    }

    /// The earn statement's answer for `req`, read (see [`Self::settle`]).
    async fn settled(
        &self,
        conn: &mut PgConnection,
        req: &EarnRequest,
        earned: sqlx::Result<Earned>,
    ) -> Result<Settled> {
        let cfg = &self.ctx.config;
        match earned {
            Ok(Earned::Created(transaction)) => Ok(Settled::Created(transaction)),
            Ok(Earned::UpgradeDue) => Ok(Settled::UpgradeDue),
            Ok(Earned::Replay(mut k)) => {
                let same = same_earn(&k, req);
                if same && k.amount.is_some() {
                    k.upgrade = db::earn_upgrade(conn, k.tx.id).await?;
                }
                let mut outcome = replay_or_conflict(k, same)?;
                outcome.bonuses = campaign_db::bonuses_of(conn, outcome.transaction.id).await?;
                Ok(Settled::Done(outcome))
            }
            Ok(Earned::Unauthorized) => Err(Error::Unauthorized),
            Ok(Earned::Forbidden) => Err(Error::KeyScope { scope: "earn" }),
            Ok(Earned::NotFound) => Err(Error::MemberNotFound {
                user_id: req.user_id,
            }),
            Ok(Earned::PerTransaction { actual }) => Err(Error::PointsPerTransactionExceeded {
                max: cfg.max_points_per_transaction,
                actual,
            }),
            Ok(Earned::Daily {
                actual,
                earned_today,
            }) => Err(Error::DailyPointsLimitExceeded {
                limit: cfg.daily_points_limit,
                earned_today,
                requested: actual,
            }),
            Err(e) => Err(key_race(e)),
        }
    }

    /// The earn statement in a transaction that locked the member first, with what it
    /// cannot do alone: the bonus lines of the campaigns in play (`campaigns`) and the
    /// level upgrade the order amount earns.
    async fn earn_tx(
        &self,
        req: &EarnRequest,
        key_hash: Option<&str>,
        campaigns: &[&Campaign],
        now: OffsetDateTime,
    ) -> Result<Outcome> {
        if let Some(hash) = key_hash {
            // before the lock, so a caller without a valid key learns nothing of the member
            accounts::authenticate_api_key_hash(&self.ctx, hash, accounts::Scope::Earn).await?;
        }
        let mut tx = self.ctx.pool.begin().await?;
        let m = self.lock(&mut tx, req.user_id, now).await?;
        let call = self.earn_call(req, None, false, now);
        let transaction = match self.settle(&mut tx, req, &call).await? {
            Settled::Created(t) => t,
            Settled::Done(outcome) => return Ok(outcome),
            Settled::UpgradeDue => {
                return Err(Error::Internal(anyhow::anyhow!(
                    "earn_points asked for an upgrade it was told not to check"
                )));
            }
        };
        let amount = req.amount.map(Money::get);
        let occasion = format!(
            "order:{}/{}",
            req.source_type.as_str(),
            req.source_id.as_str()
        );
        let bonuses = pay_bonuses(
            &self.ctx,
            &mut tx,
            &m,
            campaigns,
            transaction.points_change,
            &occasion,
            Some((transaction.id, transaction.balance_after)),
            call.pending_until,
            now,
        )
        .await?;
        let spent = m.total_spent + amount.unwrap_or_default();
        let upgrade =
            if amount.is_some() && m.next_min_points.is_some_and(|n| spent >= Decimal::from(n)) {
                members::upgrade_locked(&self.ctx, &mut tx, &m, spent, now).await?
            } else {
                None
            };
        if let Some(up) = &upgrade {
            let reply = serde_json::to_value(up).map_err(|e| Error::Internal(e.into()))?;
            db::record_earn_upgrade(&mut tx, transaction.id, &reply).await?;
        }
        tx.commit().await?;
        record_bonuses(&bonuses);
        Ok(Outcome {
            transaction,
            replayed: false,
            upgrade,
            bonuses,
        })
    }

    /// Spends points, first-expiring first (seed: `use_points`).
    #[tracing::instrument(skip_all, err(level = "info"), fields(user_id = req.user_id))]
    pub async fn use_points(&self, req: UseRequest) -> Result<Outcome> {
        not_a_redemption(&req.usage_type)?;
        let this = self.clone();
        run_to_completion(async move {
            let outcome = match this.ctx.guarded(req.user_id, || this.use_tx(&req)).await {
                Err(e) if e.is_key_race() => {
                    this.replay_after_race("use", &req.usage_type, &req.reference_id, "", |k| {
                        k.tx.user_id == req.user_id && k.requested_points == Some(req.points.get())
                    })
                    .await?
                }
                other => other?,
            };
            if !outcome.replayed {
                record("use", -outcome.transaction.points_change);
            }
            Ok(outcome)
        })
        .await
    }

    async fn use_tx(&self, req: &UseRequest) -> Result<Outcome> {
        let now = self.now();
        let points = req.points.get();
        let mut tx = self.ctx.pool.begin().await?;
        let m = self.lock(&mut tx, req.user_id, now).await?;
        if let Some(k) = db::find_keyed(
            &mut tx,
            "use",
            req.usage_type.as_str(),
            req.reference_id.as_str(),
            "",
        )
        .await?
        {
            let same = k.tx.user_id == req.user_id && k.requested_points == Some(points);
            return replay_or_conflict(k, same);
        }
        let description = format!("{} {}", req.usage_type.as_str(), req.reference_id.as_str());
        let transaction = debit_use(
            &mut tx,
            &m,
            req.usage_type.as_str(),
            req.reference_id.as_str(),
            points,
            &description,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Outcome {
            transaction,
            replayed: false,
            upgrade: None,
            bonuses: Vec::new(),
        })
    }

    /// Takes back the points of a returned order, in full or in proportion to the amount
    /// returned; never below a zero balance (what is missing is `unrecovered`).
    #[tracing::instrument(skip_all, err(level = "info"), fields(user_id = req.user_id))]
    pub async fn reverse_points(&self, req: ReverseRequest) -> Result<Outcome> {
        let this = self.clone();
        run_to_completion(async move {
            let outcome = this
                .ctx
                .guarded(req.user_id, || this.reverse_tx(&req))
                .await?;
            if !outcome.replayed {
                record("reverse", -outcome.transaction.points_change);
            }
            Ok(outcome)
        })
        .await
    }

    async fn reverse_tx(&self, req: &ReverseRequest) -> Result<Outcome> {
        let now = self.now();
        let mut tx = self.ctx.pool.begin().await?;
        let m = self.lock(&mut tx, req.user_id, now).await?;
        let (st, sid) = (req.source_type.as_str(), req.source_id.as_str());
        let earn = match db::find_keyed(&mut tx, "earn", st, sid, "").await? {
            Some(e) if e.tx.user_id == req.user_id => e,
            _ => {
                return Err(Error::NotFound {
                    what: "an earn of this member for this source",
                });
            }
        };
        let sub = req.refund_id.as_ref().map(Reference::as_str);
        let asked = req.amount.map(Money::get);
        if let Some(k) = db::find_keyed(&mut tx, "reverse", st, sid, sub.unwrap_or("")).await? {
            let same = k.tx.user_id == req.user_id && (asked.is_none() || k.amount == asked);
            return replay_or_conflict(k, same);
        }

        // the order's own points and the campaigns' bonus lines on it
        let earned = earn.tx.points_change + earn.bonus_points;
        let points_left = earned - earn.reversed_points;
        let amount_left = earn.amount.map(|a| a - earn.reversed_amount);
        let (take, returned) = match (sub, asked) {
            (None, Some(a)) if Some(a) != amount_left => {
                return Err(Error::validation(
                    "refund_id",
                    "a partial return needs a refund_id; without one the whole order is reversed",
                ));
            }
            (None, _) | (Some(_), None) => {
                (points_left, amount_left.filter(|a| *a > Decimal::ZERO))
            }
            (Some(_), Some(a)) => {
                let (Some(order), Some(left)) = (earn.amount, amount_left) else {
                    return Err(Error::validation(
                        "amount",
                        "this earn has no order amount, so it can only be reversed in full",
                    ));
                };
                if a > left {
                    return Err(Error::validation(
                        "amount",
                        format!("amount exceeds what is left of the order ({left})"),
                    ));
                }
                // The share of everything returned so far, less what earlier partial
                // returns took: rounding down each return on its own would let many
                // small returns take back nothing.
                let share = if a == left {
                    points_left
                } else {
                    let returned_so_far = earn.reversed_amount + a;
                    (Decimal::from(earned) * returned_so_far / order)
                        .floor()
                        .to_i64()
                        .unwrap_or(0)
                        .saturating_sub(earn.reversed_points)
                        .clamp(0, points_left)
                };
                (share, Some(a))
            }
        };
        if take == 0 && returned.is_none() {
            return Err(Error::invalid(
                "source_id",
                crate::error::Invalid::AlreadyReversed,
            ));
        }
        let description = format!("reversal of {st} {sid}");
        if earn.tx.status == "pending" {
            // inside the return window: the points come back from the order's pending
            // batches, which hold all of them; nothing was spendable, nothing is lost
            let transaction = db::insert_pending_reversal(
                &mut tx,
                req.user_id,
                earn.tx.id,
                take,
                m.available_points,
                returned,
                st,
                sid,
                sub,
                &description,
                now,
            )
            .await?;
            let taken = db::take_pending(&mut tx, earn.tx.id, take, transaction.id, now).await?;
            if taken != take {
                return Err(Error::Internal(anyhow::anyhow!(
                    "pending ledger mismatch for member {}: {take} pending points to take back, batches gave {taken}",
                    req.user_id
                )));
            }
            db::mark_reversed(&mut tx, earn.tx.id, take, returned, 0).await?;
            tx.commit().await?;
            return Ok(Outcome {
                transaction,
                replayed: false,
                upgrade: None,
                bonuses: Vec::new(),
            });
        }
        let recovered = take.min(m.available_points);
        let transaction = db::insert_debit(
            &mut tx,
            &NewDebit {
                user_id: req.user_id,
                kind: "reverse",
                points: recovered,
                balance_after: m.available_points - recovered,
                requested_points: Some(take),
                amount: returned,
                reference_type: Some(st),
                reference_id: Some(sid),
                sub_reference: sub,
                unrecovered: take - recovered,
                description: &description,
                actor_user_id: None,
                now,
                spent_returned: returned,
            },
        )
        .await?;
        if recovered > 0 {
            take_exactly(
                &mut tx,
                req.user_id,
                recovered,
                now,
                transaction.id,
                earn.batch_id,
            )
            .await?;
        }
        db::mark_reversed(&mut tx, earn.tx.id, take, returned, take - recovered).await?;
        tx.commit().await?;
        Ok(Outcome {
            transaction,
            replayed: false,
            upgrade: None,
            bonuses: Vec::new(),
        })
    }

    /// Cancels a use: its points go back into the batches they came from, with those
    /// batches' own expiry dates.
    #[tracing::instrument(skip_all, err(level = "info"), fields(user_id = req.user_id))]
    pub async fn refund_points(&self, req: RefundRequest) -> Result<Outcome> {
        not_a_redemption(&req.usage_type)?;
        let this = self.clone();
        run_to_completion(async move {
            let outcome = this
                .ctx
                .guarded(req.user_id, || this.refund_tx(&req))
                .await?;
            if !outcome.replayed {
                record("refund", outcome.transaction.points_change);
            }
            Ok(outcome)
        })
        .await
    }

    async fn refund_tx(&self, req: &RefundRequest) -> Result<Outcome> {
        let now = self.now();
        let mut tx = self.ctx.pool.begin().await?;
        let m = self.lock(&mut tx, req.user_id, now).await?;
        let (ut, rid) = (req.usage_type.as_str(), req.reference_id.as_str());
        if let Some(k) = db::find_keyed(&mut tx, "refund", ut, rid, "").await? {
            let same = k.tx.user_id == req.user_id;
            return replay_or_conflict(k, same);
        }
        let used = match db::find_keyed(&mut tx, "use", ut, rid, "").await? {
            Some(u) if u.tx.user_id == req.user_id => u,
            _ => {
                return Err(Error::NotFound {
                    what: "a use of this member for this reference",
                });
            }
        };
        let transaction = refund_use(&mut tx, &m, &used, ut, rid, now).await?;
        tx.commit().await?;
        Ok(Outcome {
            transaction,
            replayed: false,
            upgrade: None,
            bonuses: Vec::new(),
        })
    }

    /// A staff adjustment: credits a new batch, or takes points first-expiring first and
    /// never below zero. Audited in the same transaction.
    #[tracing::instrument(skip_all, err(level = "info"), fields(user_id = req.user_id))]
    pub async fn adjust_points(&self, req: AdjustRequest) -> Result<Transaction> {
        let max = self.ctx.config.adjustment_max_points;
        if req.points.unsigned_abs() > max.unsigned_abs() {
            return Err(Error::validation(
                "adjustment",
                format!(
                    "one adjustment may add or take at most {max} points (STAFF_ADJUSTMENT_MAX_POINTS)"
                ),
            ));
        }
        let this = self.clone();
        run_to_completion(async move {
            let t = this
                .ctx
                .guarded(req.user_id, || this.adjust_tx(&req))
                .await?;
            record("adjust", t.points_change.abs());
            Ok(t)
        })
        .await
    }

    async fn adjust_tx(&self, req: &AdjustRequest) -> Result<Transaction> {
        let now = self.now();
        let mut tx = self.ctx.pool.begin().await?;
        let m = self.lock(&mut tx, req.user_id, now).await?;
        let transaction = if req.points > 0 {
            let expires_at = now + Duration::days(self.ctx.config.points_expiry_days);
            db::insert_credit_adjustment(
                &mut tx,
                &NewCredit {
                    user_id: req.user_id,
                    points: req.points,
                    balance_after: m.available_points + req.points,
                    description: &req.reason,
                    actor_user_id: req.actor_user_id,
                    now,
                    expires_at,
                },
            )
            .await?
        } else {
            let points = -req.points;
            if m.available_points < points {
                return Err(Error::InsufficientPoints {
                    required: points,
                    available: m.available_points,
                });
            }
            let t = db::insert_debit(
                &mut tx,
                &NewDebit {
                    user_id: req.user_id,
                    kind: "adjust",
                    points,
                    balance_after: m.available_points - points,
                    requested_points: Some(points),
                    amount: None,
                    reference_type: None,
                    reference_id: None,
                    sub_reference: None,
                    unrecovered: 0,
                    description: &req.reason,
                    actor_user_id: req.actor_user_id,
                    now,
                    spent_returned: None,
                },
            )
            .await?;
            take_exactly(&mut tx, req.user_id, points, now, t.id, None).await?;
            t
        };
        member_db::audit(
            &mut tx,
            req.actor_user_id,
            "points.adjust",
            "member",
            &req.user_id.to_string(),
            &json!({ "points": req.points, "reason": req.reason, "transaction_id": transaction.id }),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(transaction)
    }

    /// Expires every batch past its expiry: one `expire` transaction per member, in
    /// transactions of `BATCH_SIZE` batches' members, caches dropped per chunk.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn expire_points(&self) -> Result<SweepReport> {
        let this = self.clone();
        run_to_completion(async move {
            let now = this.now();
            let mut report = SweepReport::default();
            loop {
                let mut tx = this.ctx.pool.begin().await?;
                let ids =
                    db::members_with_due_batches(&mut tx, now, this.ctx.config.batch_size).await?;
                if ids.is_empty() {
                    break;
                }
                let points = db::expire_members(&mut tx, &ids, now).await?;
                tx.commit().await?;
                this.ctx.cache.invalidate_members(&ids).await;
                report.members += ids.len();
                report.points += points;
                record("expire", points);
            }
            Ok(report)
        })
        .await
    }

    /// Makes pending points whose return window has ended spendable: one `release`
    /// transaction per member, each member in its own transaction. Returns the members.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn release_pending(&self) -> Result<i64> {
        let this = self.clone();
        run_to_completion(async move {
            let mut released = 0;
            loop {
                let now = this.now();
                let ids = {
                    let mut conn = this.ctx.pool.acquire().await?;
                    db::members_with_due_pending(&mut conn, now, this.ctx.config.batch_size).await?
                };
                if ids.is_empty() {
                    return Ok(released);
                }
                for user in ids {
                    let t = this
                        .ctx
                        .guarded(user, || async {
                            let mut tx = this.ctx.pool.begin().await?;
                            let m = this.lock(&mut tx, user, now).await?;
                            let t =
                                db::release_member(&mut tx, user, m.available_points, now).await?;
                            tx.commit().await?;
                            Ok(t)
                        })
                        .await?;
                    if let Some(t) = t {
                        record("release", t.points_change);
                    }
                    released += 1;
                }
            }
        })
        .await
    }

    /// Queues one reminder per batch expiring within `POINTS_EXPIRY_REMINDER_DAYS`.
    pub async fn send_expiry_reminders(&self) -> Result<i64> {
        let this = self.clone();
        run_to_completion(async move {
            let now = this.now();
            let until = now + Duration::days(this.ctx.config.points_expiry_reminder_days);
            let mut total = 0;
            loop {
                let mut conn = this.ctx.pool.acquire().await?;
                let (n, users) = member_db::send_expiry_reminders(
                    &mut conn,
                    now,
                    until,
                    this.ctx.config.batch_size,
                )
                .await?;
                drop(conn);
                // their unread counts changed
                this.ctx.cache.invalidate_members(&users).await;
                total += n;
                if n < this.ctx.config.batch_size {
                    return Ok(total);
                }
            }
        })
        .await
    }

    /// The member's points as anyone may see them (cached under `member_system:points`).
    pub async fn summary(&self, user_id: i64) -> Result<PointsSummary> {
        let now = self.now();
        let cache = &self.ctx.cache;
        let key = cache.keys.points(user_id);
        let (cached, stamp) = cache
            .get::<PointsSummary>(&key, &cache.keys.member_version(user_id))
            .await;
        if let Some(s) = cached.filter(|s| s.valid_until.is_none_or(|t| t > now)) {
            return Ok(s);
        }
        let window = Duration::days(self.ctx.config.points_expiry_reminder_days);
        let soon = now + window;
        let mut conn = self.ctx.pool.acquire().await?;
        let row = db::points_row(&mut conn, user_id, now, soon)
            .await?
            .ok_or(Error::MemberNotFound { user_id })?;
        let expiring_soon = db::expiring_soon(&mut conn, user_id, now, soon).await?;
        let pending_release = if row.pending_points > 0 {
            db::pending_by_release(&mut conn, user_id).await?
        } else {
            Vec::new()
        };
        drop(conn);
        let summary = PointsSummary {
            available: row.available_points - row.unswept_expired,
            total_earned: row.total_earned,
            total_used: row.total_used,
            total_expired: row.total_expired + row.unswept_expired,
            total_adjusted: row.total_adjusted,
            total_reversed: row.total_reversed,
            total_refunded: row.total_refunded,
            pending: row.pending_points,
            pending_release,
            expiring_soon,
            // stale when a batch expires or another one enters the window
            valid_until: [row.next_expiry, row.entering_window.map(|t| t - window)]
                .into_iter()
                .flatten()
                .min(),
        };
        self.ctx
            .cache
            .set(&key, &stamp, &summary, self.ctx.config.points_cache_ttl)
            .await;
        Ok(summary)
    }

    /// Live batches, first-expiring first.
    pub async fn batches(&self, user_id: i64) -> Result<Vec<Batch>> {
        let mut conn = self.ctx.pool.acquire().await?;
        member_exists(&mut conn, user_id).await?;
        Ok(db::live_batches(&mut conn, user_id, self.now(), None).await?)
    }

    /// Every batch of the member (live, pending, used up, expired), 20 at a time newest
    /// first; `before` is the last id of the previous page. Returns the next page's cursor.
    pub async fn batch_page(
        &self,
        user_id: i64,
        before: Option<i64>,
    ) -> Result<(Vec<db::BatchRow>, Option<i64>)> {
        const PAGE: i64 = 20;
        let mut conn = self.ctx.pool.acquire().await?;
        let mut rows = db::batch_page(&mut conn, user_id, before, PAGE + 1).await?;
        let next = if rows.len() as i64 > PAGE {
            rows.truncate(PAGE as usize);
            rows.last().map(|b| b.id)
        } else {
            None
        };
        Ok((rows, next))
    }

    /// The first `n` live batches to expire, and whether more follow.
    pub async fn first_batches(&self, user_id: i64, n: usize) -> Result<(Vec<Batch>, bool)> {
        let mut conn = self.ctx.pool.acquire().await?;
        let limit = i64::try_from(n).unwrap_or(i64::MAX - 1) + 1;
        let mut batches = db::live_batches(&mut conn, user_id, self.now(), Some(limit)).await?;
        let more = batches.len() > n;
        batches.truncate(n);
        Ok((batches, more))
    }

    /// History newest first; `cursor` is the id of the last item of the previous page.
    pub async fn history(
        &self,
        user_id: i64,
        kind: Option<crate::domain::TransactionType>,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<Transaction>, Option<i64>)> {
        let limit = limit.clamp(1, 100);
        let mut conn = self.ctx.pool.acquire().await?;
        let mut items = db::history(&mut conn, user_id, kind, cursor, limit + 1).await?;
        if items.is_empty() {
            member_exists(&mut conn, user_id).await?;
        }
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|t| t.id)
        } else {
            None
        };
        Ok((items, next))
    }

    /// After a unique-key race with another member's transaction: the winner is committed,
    /// so it is either the same request (a replay) or a conflict.
    async fn replay_after_race(
        &self,
        kind: &str,
        reference_type: &Reference,
        reference_id: &Reference,
        sub: &str,
        same: impl FnOnce(&Keyed) -> bool,
    ) -> Result<Outcome> {
        let mut conn = self.ctx.pool.acquire().await?;
        match db::find_keyed(
            &mut conn,
            kind,
            reference_type.as_str(),
            reference_id.as_str(),
            sub,
        )
        .await?
        {
            Some(k) => {
                let s = same(&k);
                replay_or_conflict(k, s)
            }
            None => Err(Error::ConcurrentOperation),
        }
    }
}

/// A use of points by a member whose row `m` is locked: the transaction, then the points
/// taken first-expiring first. Never overdraws.
pub(super) async fn debit_use(
    conn: &mut PgConnection,
    m: &LockedMember,
    usage_type: &str,
    reference_id: &str,
    points: i64,
    description: &str,
    now: OffsetDateTime,
) -> Result<Transaction> {
    if m.available_points < points {
        return Err(Error::InsufficientPoints {
            required: points,
            available: m.available_points,
        });
    }
    let debit = NewDebit {
        user_id: m.user_id,
        kind: "use",
        points,
        balance_after: m.available_points - points,
        requested_points: Some(points),
        amount: None,
        reference_type: Some(usage_type),
        reference_id: Some(reference_id),
        sub_reference: None,
        unrecovered: 0,
        description,
        actor_user_id: None,
        now,
        spent_returned: None,
    };
    let transaction = match db::insert_debit(conn, &debit).await {
        Ok(t) => t,
        Err(e) => return Err(key_race(e)),
    };
    take_exactly(conn, m.user_id, points, now, transaction.id, None).await?;
    Ok(transaction)
}

/// Cancels the use `used` of a member whose row `m` is locked: its points go back into the
/// batches they came from. The caller has checked that it is not refunded already.
pub(super) async fn refund_use(
    conn: &mut PgConnection,
    m: &LockedMember,
    used: &Keyed,
    usage_type: &str,
    reference_id: &str,
    now: OffsetDateTime,
) -> Result<Transaction> {
    let points = -used.tx.points_change;
    let parts = db::refund_plan(conn, used.tx.id).await?;
    let kept: i64 = parts.iter().map(|p| p.settled).sum();
    let transaction = db::insert_refund(
        conn,
        m.user_id,
        points,
        kept,
        m.available_points + points - kept,
        usage_type,
        reference_id,
        now,
    )
    .await?;
    db::restore_use(conn, used.tx.id, transaction.id, &parts, now).await?;
    Ok(transaction)
}

/// The member's row, locked (which also expires what is due): the first statement of
/// every change to a member's points.
pub(super) async fn lock_member(
    ctx: &Ctx,
    conn: &mut PgConnection,
    user_id: i64,
    now: OffsetDateTime,
) -> Result<LockedMember> {
    db::lock_member(conn, user_id, now, &ctx.config.member_timezone)
        .await?
        .ok_or(Error::MemberNotFound { user_id })
}

async fn member_exists(conn: &mut PgConnection, user_id: i64) -> Result<()> {
    member_db::member_record(conn, user_id)
        .await?
        .map(|_| ())
        .ok_or(Error::MemberNotFound { user_id })
}

fn category(req: &EarnRequest) -> Option<&str> {
    req.category.as_ref().map(Reference::as_str)
}

fn same_earn(k: &Keyed, req: &EarnRequest) -> bool {
    k.tx.user_id == req.user_id
        && k.requested_points == Some(req.base_points.get())
        && k.amount == req.amount.map(Money::get)
}

/// The same key again: the original transaction if the request is the same, else a
/// conflict that names the key.
fn replay_or_conflict(k: Keyed, same: bool) -> Result<Outcome> {
    if same {
        Ok(Outcome {
            transaction: k.tx,
            replayed: true,
            upgrade: k.upgrade.and_then(|u| serde_json::from_value(u).ok()),
            bonuses: Vec::new(),
        })
    } else {
        Err(Error::IdempotencyConflict {
            message: format!(
                "{} {} {} was already recorded with different details",
                k.tx.transaction_type,
                k.tx.reference_type.as_deref().unwrap_or(""),
                k.tx.reference_id.as_deref().unwrap_or("")
            ),
        })
    }
}

/// Debits exactly `points` from live batches; anything else means the ledger and the
/// member's balance disagree, and the transaction is rolled back.
async fn take_exactly(
    conn: &mut PgConnection,
    user_id: i64,
    points: i64,
    now: OffsetDateTime,
    tx_id: i64,
    first_batch: Option<i64>,
) -> Result<()> {
    let taken = db::consume_fifo(conn, user_id, points, now, tx_id, first_batch).await?;
    if taken != points {
        return Err(Error::Internal(anyhow::anyhow!(
            "ledger mismatch for member {user_id}: balance covers {points} points but batches gave {taken}"
        )));
    }
    Ok(())
}

/// A write that lost the race for its idempotency key to another transaction: the caller
/// answers with what that one committed.
fn key_race(e: sqlx::Error) -> Error {
    on_constraint(e, |c| (c == IDEMPOTENCY_KEY).then(Error::key_race))
}

pub(super) fn record(kind: &'static str, points: i64) {
    metrics::counter!("member_system_points_transactions_total", "type" => kind).increment(1);
    metrics::histogram!("member_system_points_amount", "type" => kind).record(points as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustment_outside_the_points_range_is_refused_at_every_extreme() {
        for points in [
            0,
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            -Points::MAX - 1,
            Points::MAX + 1,
        ] {
            assert!(
                AdjustRequest::parse(1, points, "reason", None).is_err(),
                "{points}"
            );
        }
        for points in [-Points::MAX, -1, 1, Points::MAX] {
            assert!(
                AdjustRequest::parse(1, points, "reason", None).is_ok(),
                "{points}"
            );
        }
    }
}
