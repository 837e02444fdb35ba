//! Bulk grants (issue 13 §5): points for every member a filter of the member list finds,
//! with a reason, as one audited operation. Starting is idempotent by the form's key; the
//! work runs in batches of 500 members (each batch one transaction that locks its members'
//! rows) and can be resumed where it stopped: a member is granted at most once per grant.

use serde_json::json;
use time::Duration;

use super::{Ctx, run_to_completion};
use crate::db::admin::{self as admin_db, MemberFilter};
use crate::db::grants::{self as db, Batch, NewGrant};
use crate::db::members as member_db;
use crate::domain::parse_reason;
use crate::error::{Error, Result};

pub use crate::db::grants::Grant;

/// Members per batch.
const BATCH: i64 = 500;

/// A running grant that has not moved for this long is taken up again when its form is
/// sent again (the process running it stopped).
const STALLED_AFTER: Duration = Duration::minutes(2);

#[derive(Clone)]
pub struct GrantService {
    ctx: Ctx,
}

/// A grant asked for: its id, and whether this call should run it (new, or stalled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub id: i64,
    pub run: bool,
}

impl GrantService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    /// How many members the filter finds (what a grant would reach).
    pub async fn count(&self, filter: &MemberFilter) -> Result<i64> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(admin_db::count_members(&mut conn, filter).await?)
    }

    /// Checks the grant and records it (audited), or finds the one with this key.
    pub async fn start(
        &self,
        filter: &MemberFilter,
        points: i64,
        reason: &str,
        key: &str,
        actor_user_id: Option<i64>,
    ) -> Result<Started> {
        let max = self.ctx.config.adjustment_max_points;
        if !(1..=max).contains(&points) {
            return Err(Error::validation(
                "points",
                format!("a whole number from 1 to {max} (STAFF_ADJUSTMENT_MAX_POINTS)"),
            ));
        }
        let reason = parse_reason("reason", reason)?;
        let key = key.trim();
        if !(8..=100).contains(&key.len()) {
            return Err(Error::validation(
                "key",
                "the form's key is missing; open the member list again",
            ));
        }
        let now = self.ctx.clock.now();
        let mut tx = self.ctx.pool.begin().await?;
        if let Some(g) = db::by_key(&mut tx, key).await? {
            let stalled = g.status == "running" && g.updated_at < now - STALLED_AFTER;
            return Ok(Started {
                id: g.id,
                run: stalled,
            });
        }
        let members = admin_db::count_members(&mut tx, filter).await?;
        if members == 0 {
            return Err(Error::validation("filter", "the filter finds no members"));
        }
        let filter_json = serde_json::to_value(filter).map_err(|e| Error::Internal(e.into()))?;
        let Some(id) = db::insert(
            &mut tx,
            &NewGrant {
                key,
                points,
                reason: &reason,
                filter: &filter_json,
                members_expected: members,
                actor_user_id,
                now,
            },
        )
        .await?
        else {
            // the same form sent twice at once: the other one started it
            tx.rollback().await?;
            let mut conn = self.ctx.pool.acquire().await?;
            let g = db::by_key(&mut conn, key)
                .await?
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("grant {key} vanished")))?;
            return Ok(Started {
                id: g.id,
                run: false,
            });
        };
        member_db::audit(
            &mut tx,
            actor_user_id,
            "points.bulk_grant",
            "bulk_grant",
            &id.to_string(),
            &json!({ "points": points, "reason": reason, "members": members, "filter": filter_json }),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Started { id, run: true })
    }

    /// Grants to the members not reached yet, batch by batch, to the end. Returns the
    /// members granted by this run.
    #[tracing::instrument(skip(self), err(level = "info"))]
    pub async fn run(&self, id: i64) -> Result<i64> {
        let this = self.clone();
        run_to_completion(async move {
            let mut granted = 0i64;
            loop {
                let g = this.get(id).await?;
                if g.status == "done" {
                    return Ok(granted);
                }
                let filter: MemberFilter = serde_json::from_value(g.filter.clone())
                    .map_err(|e| Error::Internal(e.into()))?;
                let now = this.ctx.clock.now();
                let users: Vec<i64> = {
                    let mut conn = this.ctx.pool.acquire().await?;
                    admin_db::list_members(&mut conn, &filter, g.cursor_user_id, BATCH, now)
                        .await?
                        .into_iter()
                        .map(|m| m.user_id)
                        .collect()
                };
                let mut tx = this.ctx.pool.begin().await?;
                let Some(&cursor) = users.last() else {
                    db::finish(&mut tx, id, now).await?;
                    tx.commit().await?;
                    metrics::counter!("member_system_bulk_grants_total").increment(1);
                    return Ok(granted);
                };
                let n = db::grant_batch(
                    &mut tx,
                    &Batch {
                        grant_id: id,
                        users: &users,
                        cursor,
                        points: g.points,
                        reason: &g.reason,
                        actor_user_id: None,
                        now,
                        expires_at: now + Duration::days(this.ctx.config.points_expiry_days),
                    },
                )
                .await?;
                if (users.len() as i64) < BATCH {
                    db::finish(&mut tx, id, now).await?;
                }
                tx.commit().await?;
                this.ctx.cache.invalidate_members(&users).await;
                granted += i64::from(n);
                metrics::counter!("member_system_points_transactions_total", "type" => "adjust")
                    .increment(n.max(0) as u64);
            }
        })
        .await
    }

    pub async fn get(&self, id: i64) -> Result<Grant> {
        let mut conn = self.ctx.pool.acquire().await?;
        db::by_id(&mut conn, id)
            .await?
            .ok_or(Error::NotFound { what: "grant" })
    }

    pub async fn recent(&self) -> Result<Vec<Grant>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::recent(&mut conn, 50).await?)
    }
}
