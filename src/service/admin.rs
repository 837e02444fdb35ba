//! What staff see and do beyond levels and points: dashboard figures, member search,
//! the audit log, API keys, and recalculating everyone's level.

use std::collections::HashMap;

use serde_json::json;
use time::{Date, Duration};

use super::{Ctx, run_to_completion};
use crate::db::admin as db;
use crate::db::levels as level_db;
use crate::db::members as member_db;
use crate::domain::{Level, StaffRole};
use crate::error::{Error, Result};

/// Rows the staff pages show, as the data layer reads them.
pub use crate::db::accounts::StaffAccount;
pub use crate::db::admin::{
    ApiKeyRow, AuditFilter, AuditRow, MemberFilter, MemberRow, RecalcOptions,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayTotals {
    pub day: Date,
    pub earned: i64,
    pub used: i64,
    pub expired: i64,
}

pub struct Dashboard {
    pub members_per_level: Vec<(Level, i64)>,
    /// the last 30 business days, oldest first, days without activity included
    pub days: Vec<DayTotals>,
}

pub struct Move {
    pub from: Level,
    pub to: Level,
    pub members: i64,
    pub up: bool,
}

/// One member a recalculation would move, and why.
pub struct MoveSample {
    pub user_id: i64,
    pub member_code: String,
    pub total_spent: rust_decimal::Decimal,
    pub from: Level,
    pub to: Level,
    pub up: bool,
}

/// What a recalculation with these options would do, and whom it leaves alone.
pub struct RecalcPreview {
    pub moves: Vec<Move>,
    /// the first members to move (at most [`SAMPLE`])
    pub sample: Vec<MoveSample>,
    /// kept: their level was set by staff (unless the option says otherwise)
    pub kept_manual: i64,
    /// kept: their spend is below their level, and moving down was not chosen
    pub kept_down: i64,
    /// kept this time: their level changed within the cooldown
    pub in_cooldown: i64,
}

/// Members listed by name in a recalculation preview.
pub const SAMPLE: i64 = 50;

#[derive(Clone)]
pub struct StaffService {
    ctx: Ctx,
}

impl StaffService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    pub async fn dashboard(&self) -> Result<Dashboard> {
        let now = self.ctx.clock.now();
        let today = now.to_offset(self.ctx.display_offset).date();
        let first = today - Duration::days(29);
        let since = first.midnight().assume_offset(self.ctx.display_offset);
        let mut conn = self.ctx.pool.acquire().await?;
        let levels = level_db::all(&mut conn).await?;
        let counts: HashMap<i32, i64> = db::members_per_level(&mut conn)
            .await?
            .into_iter()
            .collect();
        let rows = db::daily_points(&mut conn, since, &self.ctx.config.member_timezone).await?;
        let by_day: HashMap<Date, &db::DayRow> = rows.iter().map(|r| (r.day, r)).collect();
        let days = (0..30)
            .map(|i| {
                let day = first + Duration::days(i);
                let r = by_day.get(&day);
                DayTotals {
                    day,
                    earned: r.map_or(0, |r| r.earned),
                    used: r.map_or(0, |r| r.used),
                    expired: r.map_or(0, |r| r.expired),
                }
            })
            .collect();
        let members_per_level = levels
            .into_iter()
            .map(|l| {
                let n = counts.get(&l.id).copied().unwrap_or(0);
                (l, n)
            })
            .collect();
        Ok(Dashboard {
            members_per_level,
            days,
        })
    }

    /// A staff session's power now: its account's role, None when the account is no
    /// longer staff or is disabled.
    pub async fn active_staff_role(&self, user_id: i64) -> Result<Option<StaffRole>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(crate::db::accounts::active_staff_role(&mut conn, user_id)
            .await?
            .as_deref()
            .and_then(StaffRole::parse))
    }

    /// Gives a staff account a role, audited; its sessions have it at their next request.
    /// Nobody changes their own (the last admin could lock everyone out).
    pub async fn set_staff_role(&self, actor: i64, user_id: i64, role: &str) -> Result<()> {
        let role = StaffRole::parse(role)
            .ok_or_else(|| Error::validation("role", "admin, operator or viewer"))?;
        if actor == user_id {
            return Err(Error::invalid("user_id", crate::error::Invalid::OwnRole));
        }
        let now = self.ctx.clock.now();
        let mut tx = self.ctx.pool.begin().await?;
        if !crate::db::accounts::set_staff_role(&mut tx, user_id, role.as_str(), now).await? {
            return Err(Error::NotFound {
                what: "staff account",
            });
        }
        member_db::audit(
            &mut tx,
            Some(actor),
            "staff.set_role",
            "user",
            &user_id.to_string(),
            &json!({ "role": role.as_str() }),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn staff_accounts(&self) -> Result<Vec<crate::db::accounts::StaffAccount>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(crate::db::accounts::staff_accounts(&mut conn).await?)
    }

    /// Disables or enables a staff account, audited. Its sessions lose staff power at
    /// their next request. Nobody disables their own account (the last staff login could
    /// lock everyone out).
    pub async fn set_staff_disabled(&self, actor: i64, user_id: i64, disabled: bool) -> Result<()> {
        if disabled && actor == user_id {
            return Err(Error::invalid("user_id", crate::error::Invalid::OwnAccount));
        }
        let now = self.ctx.clock.now();
        let mut tx = self.ctx.pool.begin().await?;
        if !crate::db::accounts::set_staff_disabled(&mut tx, user_id, disabled, now).await? {
            return Err(Error::NotFound {
                what: "staff account",
            });
        }
        member_db::audit(
            &mut tx,
            Some(actor),
            if disabled {
                "staff.disable"
            } else {
                "staff.enable"
            },
            "user",
            &user_id.to_string(),
            &json!({}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn staff_count(&self) -> Result<i64> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::staff_count(&mut conn).await?)
    }

    /// A page of members (50), newest first, narrowed by `filter`; `after` is the last id
    /// of the previous page. Returns the members and the cursor of the next page.
    pub async fn list_members(
        &self,
        filter: &db::MemberFilter,
        after: Option<i64>,
    ) -> Result<(Vec<MemberRow>, Option<i64>)> {
        self.list_members_page(filter, after, 50).await
    }

    /// As [`Self::list_members`], `page` at a time (exports).
    pub async fn list_members_page(
        &self,
        filter: &db::MemberFilter,
        after: Option<i64>,
        page: i64,
    ) -> Result<(Vec<MemberRow>, Option<i64>)> {
        let page = page.clamp(1, 10_000);
        let mut conn = self.ctx.pool.acquire().await?;
        let mut rows =
            db::list_members(&mut conn, filter, after, page + 1, self.ctx.clock.now()).await?;
        let next = if rows.len() as i64 > page {
            rows.truncate(page as usize);
            rows.last().map(|r| r.user_id)
        } else {
            None
        };
        Ok((rows, next))
    }

    /// The audit log, newest first; `before` is the last id of the previous page.
    pub async fn audit_log(
        &self,
        before: Option<i64>,
        filter: &db::AuditFilter,
    ) -> Result<(Vec<AuditRow>, Option<i64>)> {
        const PAGE: i64 = 50;
        let mut conn = self.ctx.pool.acquire().await?;
        let mut rows = db::audit_log(&mut conn, before, PAGE + 1, filter).await?;
        let next = if rows.len() as i64 > PAGE {
            rows.truncate(PAGE as usize);
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok((rows, next))
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::api_keys(&mut conn).await?)
    }

    pub async fn revoke_api_key(&self, id: i64, actor: Option<i64>) -> Result<()> {
        let now = self.ctx.clock.now();
        let mut tx = self.ctx.pool.begin().await?;
        if !db::revoke_api_key(&mut tx, id, now).await? {
            return Err(Error::NotFound {
                what: "an active API key with this id",
            });
        }
        member_db::audit(
            &mut tx,
            actor,
            "api_key.revoke",
            "api_key",
            &id.to_string(),
            &json!({}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Who would move where, and why, if levels were recalculated now with `options`.
    pub async fn recalculation_preview(&self, options: RecalcOptions) -> Result<RecalcPreview> {
        let now = self.ctx.clock.now();
        let recent_after = now - self.cooldown();
        let mut conn = self.ctx.pool.acquire().await?;
        let levels: HashMap<i32, Level> = level_db::all(&mut conn)
            .await?
            .into_iter()
            .map(|l| (l.id, l))
            .collect();
        let rules = self.ctx.tier_rules();
        let groups = db::recalculation_groups(&mut conn, recent_after, now, rules).await?;
        let sample =
            db::recalculation_sample(&mut conn, recent_after, now, rules, options, SAMPLE).await?;
        let mut preview = RecalcPreview {
            moves: Vec::new(),
            sample: Vec::new(),
            kept_manual: 0,
            kept_down: 0,
            in_cooldown: 0,
        };
        for g in groups {
            if g.manual && !options.include_manual {
                preview.kept_manual += g.members;
            } else if !g.up && !options.move_down {
                preview.kept_down += g.members;
            } else if g.recent {
                preview.in_cooldown += g.members;
            } else if let (Some(from), Some(to)) = (levels.get(&g.from_id), levels.get(&g.to_id)) {
                match preview
                    .moves
                    .iter_mut()
                    .find(|m| m.from.id == from.id && m.to.id == to.id)
                {
                    Some(m) => m.members += g.members,
                    None => preview.moves.push(Move {
                        from: from.clone(),
                        to: to.clone(),
                        members: g.members,
                        up: g.up,
                    }),
                }
            }
        }
        preview.sample = sample
            .into_iter()
            .filter_map(|c| {
                Some(MoveSample {
                    from: levels.get(&c.from_id)?.clone(),
                    to: levels.get(&c.to_id)?.clone(),
                    user_id: c.user_id,
                    member_code: c.member_code,
                    total_spent: c.total_spent,
                    up: c.up,
                })
            })
            .collect();
        Ok(preview)
    }

    fn cooldown(&self) -> Duration {
        Duration::try_from(self.ctx.config.level_upgrade_cooldown).unwrap_or(Duration::ZERO)
    }

    /// Puts members on the highest active level their spend reaches, in transactions of
    /// `BATCH_SIZE` members, each batch's caches dropped in one pipeline. Members whose
    /// level staff set by hand, members who would move down, and members whose level
    /// changed within the cooldown are left alone unless `options` say otherwise (the
    /// cooldown always holds). Each move is recorded with its reason and notified.
    pub async fn recalculate_levels(
        &self,
        options: RecalcOptions,
        actor: Option<i64>,
    ) -> Result<usize> {
        let this = self.clone();
        run_to_completion(async move {
            let now = this.ctx.clock.now();
            let recent_after = now - this.cooldown();
            let mut moved = 0;
            loop {
                let mut tx = this.ctx.pool.begin().await?;
                let ids = db::recalculate_batch(
                    &mut tx,
                    this.ctx.config.batch_size,
                    options,
                    recent_after,
                    actor,
                    now,
                    this.ctx.tier_rules(),
                )
                .await?;
                tx.commit().await?;
                if ids.is_empty() {
                    break;
                }
                this.ctx.cache.invalidate_members(&ids).await;
                moved += ids.len();
            }
            let mut conn = this.ctx.pool.acquire().await?;
            member_db::audit(
                &mut conn,
                actor,
                "levels.recalculate",
                "level",
                "*",
                &json!({
                    "members": moved,
                    "move_down": options.move_down,
                    "include_manual": options.include_manual,
                }),
                now,
            )
            .await?;
            Ok(moved)
        })
        .await
    }
}
