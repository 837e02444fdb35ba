//! MemberService of the seed: sign-up, profile, and the level engine
//! (`check_level_upgrade`, deferred upgrades, manual level changes) of SPEC §3.2 and §3.6.

use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};

use super::{Ctx, levels, passwords, run_to_completion};
use crate::db::levels as level_db;
use crate::db::members::{self as db, LevelChange};
use crate::db::points::{self as points_db, LockedMember};
use crate::db::tiers as tier_db;
use crate::domain::campaigns::{Campaign, CampaignKind, CampaignState};
use crate::domain::{
    Email, MemberRecord, Profile, Reference, UpgradeProgress, UpgradeResult, parse_display_name,
    parse_reason, upgrade_progress,
};
use crate::error::{Error, Result, on_constraint};

pub use crate::db::members::{LevelHistoryRow, MemberNote};

#[derive(Debug, Clone)]
pub struct NewMember {
    pub email: Email,
    pub display_name: String,
    /// `None`: the member cannot log in until a password is set (API sign-ups).
    pub password: Option<String>,
    pub phone: Option<String>,
    /// the integrator's own customer id, unique
    pub external_id: Option<Reference>,
}

impl NewMember {
    pub fn parse(email: &str, display_name: &str, password: Option<&str>) -> Result<Self> {
        Ok(Self {
            email: Email::parse(email)?,
            display_name: parse_display_name(display_name)?,
            password: password
                .map(|p| crate::domain::parse_password(p, email))
                .transpose()?,
            phone: None,
            external_id: None,
        })
    }

    /// With the phone and the integrator's customer id, each checked.
    pub fn with_identity(mut self, phone: Option<&str>, external_id: Option<&str>) -> Result<Self> {
        self.phone = phone.map(crate::domain::parse_phone).transpose()?;
        self.external_id = external_id
            .map(|e| Reference::parse("external_id", e))
            .transpose()?;
        Ok(self)
    }
}

#[derive(Clone)]
pub struct MemberService {
    ctx: Ctx,
}

impl MemberService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    /// Creates a user with a member profile on the entry level, 0 points, 0.00 spent. The
    /// member code is `M` + business date + the day's gap-free sequence.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn create_member(&self, new: NewMember) -> Result<MemberRecord> {
        let hash = match &new.password {
            Some(p) => passwords::hash_password(p.clone()).await?,
            None => passwords::NO_PASSWORD.to_owned(),
        };
        let this = self.clone();
        run_to_completion(async move {
            // read before the transaction: it may need a connection of its own
            let campaigns = this.ctx.campaigns().await?;
            let now = this.ctx.clock.now();
            let mut tx = this.ctx.pool.begin().await?;
            let user_id =
                insert_user(&mut tx, &new.email, &hash, "member", &new.display_name, now).await?;
            let day = db::business_date(&mut tx, now, &this.ctx.config.member_timezone).await?;
            let seq = db::next_member_seq(&mut tx, day).await?;
            let code = format!(
                "M{:04}{:02}{:02}{seq:05}",
                day.year(),
                u8::from(day.month()),
                day.day()
            );
            let level_id = db::entry_level_id(&mut tx).await?;
            match db::insert_profile(
                &mut tx,
                user_id,
                &code,
                level_id,
                new.phone.as_deref(),
                new.external_id.as_ref().map(Reference::as_str),
                now,
            )
            .await
            {
                Err(e) => {
                    return Err(on_constraint(e, |c| {
                        (c == "member_profiles_external_id_key").then(|| {
                            Error::invalid("external_id", crate::error::Invalid::ExternalIdTaken)
                        })
                    }));
                }
                Ok(r) => r,
            }
            // sign-up bonuses, in the same transaction: a member never exists without them
            let signup: Vec<&Campaign> = campaigns
                .iter()
                .filter(|c| {
                    c.kind == CampaignKind::Signup && c.state_at(now) == CampaignState::Live
                })
                .collect();
            let bonuses = if signup.is_empty() {
                Vec::new()
            } else {
                let m = super::points::lock_member(&this.ctx, &mut tx, user_id, now).await?;
                let occasion = format!("signup:{user_id}");
                super::campaigns::pay_bonuses(
                    &this.ctx, &mut tx, &m, &signup, 0, &occasion, None, None, now,
                )
                .await?
            };
            let record = db::member_record(&mut tx, user_id)
                .await?
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("profile vanished after insert")))?;
            tx.commit().await?;
            super::campaigns::record_bonuses(&bonuses);
            Ok(record)
        })
        .await
    }

    /// Records the member's birthday, once (for the birthday bonus): a date in the past,
    /// `YYYY-MM-DD`. Changing it later is for staff.
    pub async fn set_birthday(&self, user_id: i64, raw: &str) -> Result<()> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let now = self.ctx.clock.now();
        let today = now.to_offset(self.ctx.display_offset).date();
        let day = time::Date::parse(raw.trim(), format)
            .ok()
            .filter(|d| *d <= today && d.year() >= 1900)
            .ok_or_else(|| {
                Error::validation("birthday", "a date in the past such as 1990-05-20")
            })?;
        let mut conn = self.ctx.pool.acquire().await?;
        if !crate::db::campaigns::set_birthday(&mut conn, user_id, day, now).await? {
            return Err(Error::invalid(
                "birthday",
                crate::error::Invalid::BirthdayRecorded,
            ));
        }
        drop(conn);
        self.ctx.cache.invalidate_members(&[user_id]).await;
        Ok(())
    }

    /// Everything the portal holds about the member, for their own download: profile,
    /// every points transaction, live batches, coupons and notifications (password links
    /// left out).
    pub async fn export(&self, user_id: i64) -> Result<serde_json::Value> {
        let rfc = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let profile = self.get_member_profile(user_id).await?;
        let points = super::PointService::new(self.ctx.clone());
        let mut transactions = Vec::new();
        let mut cursor = None;
        loop {
            let (items, next) = points.history(user_id, None, cursor, 100).await?;
            transactions.extend(items);
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let batches = points.batches(user_id).await?;
        let rewards = super::RewardService::new(self.ctx.clone());
        let mut coupons = Vec::new();
        let mut before = None;
        loop {
            let (items, next) = rewards.member_coupons(user_id, before, 100).await?;
            coupons.extend(items.into_iter().map(|c| {
                json!({
                    "code": c.display_code(), "title": c.title, "kind": c.kind, "value": c.value,
                    "points": c.points, "status": c.status, "expires_at": rfc(c.expires_at),
                    "order_id": c.order_id, "created_at": rfc(c.created_at),
                })
            }));
            match next {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        let notes = super::NotificationService::new(self.ctx.clone())
            .list(user_id, 200)
            .await?
            .into_iter()
            .map(|n| {
                let mut payload = n.payload;
                if let Some(p) = payload.as_object_mut() {
                    p.remove("link");
                }
                json!({ "kind": n.kind, "payload": payload, "created_at": rfc(n.created_at), "read": n.read })
            })
            .collect::<Vec<_>>();
        Ok(json!({
            "exported_at": rfc(self.ctx.clock.now()),
            "member": {
                "user_id": profile.user_id,
                "member_code": profile.member_code,
                "email": profile.email,
                "display_name": profile.display_name,
                "birthday": profile.birthday.map(|b| b.to_string()),
                "total_spent": profile.total_spent,
                "level": profile.level.level_name,
            },
            "points": profile.points,
            "transactions": transactions,
            "batches": batches,
            "coupons": coupons,
            "notifications": notes,
        }))
    }

    /// The member an integration knows by its own customer id.
    pub async fn by_external_id(&self, external_id: &str) -> Result<i64> {
        let mut conn = self.ctx.pool.acquire().await?;
        db::by_external_id(&mut conn, external_id)
            .await?
            .ok_or(Error::NotFound {
                what: "a member with this external_id",
            })
    }

    /// The member row (cached under `member_system:profile:{user_id}`).
    pub async fn record(&self, user_id: i64) -> Result<MemberRecord> {
        let cache = &self.ctx.cache;
        let version = cache.keys.member_version(user_id);
        let ttl = self.ctx.config.member_cache_ttl;
        cache
            .get_or_load(&cache.keys.profile(user_id), &version, ttl, || async {
                let mut conn = self.ctx.pool.acquire().await?;
                let mut record = db::member_record(&mut conn, user_id)
                    .await?
                    .ok_or(Error::MemberNotFound { user_id })?;
                if !self.ctx.config.tiers.is_lifetime() {
                    let now = self.ctx.clock.now();
                    let spent =
                        tier_db::window_spend(&mut conn, user_id, now, self.ctx.tier_rules())
                            .await?;
                    record.qualifying_spent = crate::domain::money(spent);
                }
                Ok(record)
            })
            .await
    }

    /// Everything a member's page or the API shows about them (seed: `get_member_profile`).
    pub async fn get_member_profile(&self, user_id: i64) -> Result<Profile> {
        let record = self.record(user_id).await?;
        let levels = levels::LevelService::new(self.ctx.clone()).list().await?;
        let points = super::PointService::new(self.ctx.clone())
            .summary(user_id)
            .await?;
        let level = levels
            .iter()
            .find(|l| l.id == record.level_id)
            .cloned()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("level {} missing", record.level_id)))?;
        let upgrade_progress = upgrade_progress(&levels, &level, record.qualifying_spent);
        Ok(Profile {
            user_id: record.user_id,
            birthday: record.birthday,
            phone: record.phone,
            external_id: record.external_id,
            member_code: record.member_code,
            email: record.email,
            display_name: record.display_name,
            total_spent: record.total_spent,
            level,
            points,
            upgrade_progress,
        })
    }

    pub async fn upgrade_progress(&self, user_id: i64) -> Result<UpgradeProgress> {
        Ok(self.get_member_profile(user_id).await?.upgrade_progress)
    }

    /// Upgrades the member to the highest active level their spend qualifies for, unless the
    /// cooldown since their last level change defers it (seed: `check_level_upgrade`).
    #[tracing::instrument(skip_all, err(level = "info"), fields(user_id))]
    pub async fn check_level_upgrade(&self, user_id: i64) -> Result<Option<UpgradeResult>> {
        let this = self.clone();
        run_to_completion(async move {
            let result = this
                .ctx
                .guarded(user_id, || async {
                    let now = this.ctx.clock.now();
                    let mut tx = this.ctx.pool.begin().await?;
                    let m = points_db::lock_member(
                        &mut tx,
                        user_id,
                        now,
                        &this.ctx.config.member_timezone,
                    )
                    .await?
                    .ok_or(Error::MemberNotFound { user_id })?;
                    let spent = m.total_spent;
                    let result = upgrade_locked(&this.ctx, &mut tx, &m, spent, now).await?;
                    tx.commit().await?;
                    Ok(result)
                })
                .await?;
            if let Some(up) = &result {
                metrics::counter!("member_system_level_upgrades_total",
                    "from_level" => up.old_level.clone(), "to_level" => up.new_level.clone())
                .increment(1);
            }
            Ok(result)
        })
        .await
    }

    /// Applies the upgrades whose cooldown has ended (the background job).
    pub async fn apply_due_upgrades(&self) -> Result<usize> {
        let now = self.ctx.clock.now();
        let mut applied = 0;
        loop {
            let ids = {
                let mut conn = self.ctx.pool.acquire().await?;
                db::due_upgrades(&mut conn, now, self.ctx.config.batch_size).await?
            };
            if ids.is_empty() {
                return Ok(applied);
            }
            for id in &ids {
                if self.check_level_upgrade(*id).await?.is_some() {
                    applied += 1;
                }
            }
            if (ids.len() as i64) < self.ctx.config.batch_size {
                return Ok(applied);
            }
        }
    }

    /// When a deferred upgrade of this member becomes due, if one is pending.
    pub async fn upgrade_due_at(&self, user_id: i64) -> Result<Option<OffsetDateTime>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::upgrade_due_at(&mut conn, user_id).await?)
    }

    /// Staff leave a note on a member (1 to 1000 characters).
    pub async fn add_note(&self, user_id: i64, body: &str, author: Option<i64>) -> Result<()> {
        let body = body.trim();
        if body.is_empty() || body.chars().count() > 1000 {
            return Err(Error::validation("note", "a note of 1 to 1000 characters"));
        }
        let mut conn = self.ctx.pool.acquire().await?;
        match db::add_note(&mut conn, user_id, author, body, self.ctx.clock.now()).await {
            Err(e) => Err(on_constraint(e, |c| {
                (c == "member_notes_user_id_fkey").then_some(Error::MemberNotFound { user_id })
            })),
            Ok(r) => Ok(r),
        }
    }

    /// The member's newest staff notes.
    pub async fn notes(&self, user_id: i64) -> Result<Vec<db::MemberNote>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::notes(&mut conn, user_id, 50).await?)
    }

    /// The member's newest level changes, for staff.
    pub async fn level_history(
        &self,
        user_id: i64,
        limit: i64,
    ) -> Result<Vec<db::LevelHistoryRow>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::level_history(&mut conn, user_id, limit.clamp(1, 100)).await?)
    }

    /// A staff member sets a level by hand (reason `manual`, note required), audited.
    #[tracing::instrument(skip_all, err(level = "info"), fields(user_id))]
    pub async fn set_level(
        &self,
        user_id: i64,
        level_id: i32,
        note: &str,
        actor_user_id: Option<i64>,
    ) -> Result<()> {
        self.set_level_until(user_id, level_id, note, None, actor_user_id)
            .await
    }

    /// A staff member sets a level by hand, kept until the end of `until` (then reviewed,
    /// with notice, like any level) or for good. Neither the review nor a recalculation
    /// moves it before then; an upgrade the member earns still applies.
    #[tracing::instrument(skip_all, err(level = "info"), fields(user_id))]
    pub async fn set_level_until(
        &self,
        user_id: i64,
        level_id: i32,
        note: &str,
        until: Option<time::Date>,
        actor_user_id: Option<i64>,
    ) -> Result<()> {
        let note = parse_reason("note", note)?;
        let today = self
            .ctx
            .clock
            .now()
            .to_offset(self.ctx.display_offset)
            .date();
        if until.is_some_and(|d| d < today) {
            return Err(Error::validation(
                "until",
                "the end date is in the past; leave it empty to keep the level for good",
            ));
        }
        let this = self.clone();
        run_to_completion(async move {
            this.ctx
                .guarded(user_id, || async {
                    let now = this.ctx.clock.now();
                    let mut tx = this.ctx.pool.begin().await?;
                    let m = points_db::lock_member(
                        &mut tx,
                        user_id,
                        now,
                        &this.ctx.config.member_timezone,
                    )
                    .await?
                    .ok_or(Error::MemberNotFound { user_id })?;
                    let level = level_db::by_id(&mut tx, level_id)
                        .await?
                        .filter(|l| l.is_active)
                        .ok_or_else(|| {
                            Error::invalid("level_id", crate::error::Invalid::ChooseActiveLevel)
                        })?;
                    if level.id == m.level_id && until.is_none() {
                        return Err(Error::invalid(
                            "level_id",
                            crate::error::Invalid::AlreadyOnLevel,
                        ));
                    }
                    let kept = match until {
                        Some(d) => {
                            let end =
                                tier_db::end_of_day(&mut tx, d, &this.ctx.config.member_timezone)
                                    .await?;
                            Some((end, end))
                        }
                        None => None,
                    };
                    db::change_level(
                        &mut tx,
                        &LevelChange {
                            user_id,
                            old_level_id: m.level_id,
                            new_level_id: level.id,
                            reason: "manual",
                            note: Some(&note),
                            actor_user_id,
                            now,
                            kept,
                            manual: true,
                        },
                    )
                    .await?;
                    db::notify(
                        &mut tx,
                        user_id,
                        "level_changed",
                        &json!({ "new_level": level.level_name, "benefits": level.benefits }),
                        now,
                    )
                    .await?;
                    db::audit(
                        &mut tx,
                        actor_user_id,
                        "member.set_level",
                        "member",
                        &user_id.to_string(),
                        &json!({ "old_level_id": m.level_id, "new_level_id": level.id, "note": note,
                                 "until": until.map(|d| d.to_string()) }),
                        now,
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(())
                })
                .await
        })
        .await
    }
}

pub(super) async fn insert_user(
    conn: &mut PgConnection,
    email: &Email,
    password_hash: &str,
    role: &str,
    display_name: &str,
    now: OffsetDateTime,
) -> Result<i64> {
    db::insert_user(conn, email.as_str(), password_hash, role, display_name, now)
        .await
        .map_err(|e| on_constraint(e, |c| (c == "users_email_key").then_some(Error::EmailTaken)))
}

/// The level engine inside a points transaction that holds the member's row lock: jump to
/// the highest qualifying active level, or defer until the cooldown ends.
pub(super) async fn upgrade_locked(
    ctx: &Ctx,
    conn: &mut PgConnection,
    m: &LockedMember,
    spent: Decimal,
    now: OffsetDateTime,
) -> Result<Option<UpgradeResult>> {
    if !ctx.config.auto_upgrade {
        return Ok(None);
    }
    let spent = if ctx.config.tiers.is_lifetime() {
        spent
    } else {
        tier_db::window_spend(conn, m.user_id, now, ctx.tier_rules()).await?
    };
    let Some(target) = level_db::upgrade_target(conn, spent, m.level_order).await? else {
        db::set_upgrade_due(conn, m.user_id, None).await?;
        return Ok(None);
    };
    let cooldown = Duration::try_from(ctx.config.level_upgrade_cooldown).unwrap_or(Duration::MAX);
    if let Some(last) = m.last_level_change_at {
        let ready = last.saturating_add(cooldown);
        if ready > now {
            db::set_upgrade_due(conn, m.user_id, Some(ready)).await?;
            return Ok(None);
        }
    }
    let old = level_db::by_id(conn, m.level_id)
        .await?
        .ok_or(Error::LevelNotFound {
            level_id: m.level_id,
        })?;
    let kept = tier_db::retention(conn, now, ctx.tier_rules()).await?;
    db::change_level(
        conn,
        &LevelChange {
            user_id: m.user_id,
            old_level_id: m.level_id,
            new_level_id: target.id,
            reason: "auto_upgrade",
            note: None,
            actor_user_id: None,
            now,
            kept,
            manual: false,
        },
    )
    .await?;
    let result = UpgradeResult {
        upgraded: true,
        old_level: old.level_name,
        new_level: target.level_name,
        upgrade_benefits: target.benefits,
    };
    db::notify(conn, m.user_id, "level_upgraded", &json!(result), now).await?;
    Ok(Some(result))
}
