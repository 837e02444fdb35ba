//! Level configuration (SPEC §3.1): the ladder of active levels always rises strictly
//! with `level_order`, starts at exactly one entry level with `min_points = 0`, and a
//! level that still has members cannot be deactivated.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::json;

use super::{Ctx, run_to_completion};
use crate::db::levels::{self as db, LevelValues};
use crate::db::members as member_db;
use crate::domain::Level;
use crate::error::{Error, Result, on_constraint};

/// A level as staff typed it, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelInput {
    pub level_name: String,
    pub level_order: i32,
    pub min_points: i32,
    pub discount_rate: Decimal,
    pub point_multiplier: Decimal,
    pub benefits: Vec<String>,
    pub is_active: bool,
}

impl LevelInput {
    pub fn parse(
        level_name: &str,
        level_order: i64,
        min_points: i64,
        discount_rate: Decimal,
        point_multiplier: Decimal,
        benefits: Vec<String>,
        is_active: bool,
    ) -> Result<Self> {
        Self::parse_all(
            level_name,
            level_order,
            min_points,
            discount_rate,
            point_multiplier,
            benefits,
            is_active,
        )
        .map_err(|mut errors| errors.remove(0))
    }

    /// As [`Self::parse`], with every field's error at once (a form shows them all).
    pub fn parse_all(
        level_name: &str,
        level_order: i64,
        min_points: i64,
        discount_rate: Decimal,
        point_multiplier: Decimal,
        benefits: Vec<String>,
        is_active: bool,
    ) -> Result<Self, Vec<Error>> {
        let mut errors = Vec::new();
        let level_name = level_name.trim();
        let n = level_name.chars().count();
        if n == 0 || n > 50 || level_name.chars().any(char::is_control) {
            errors.push(Error::validation(
                "level_name",
                "level name must be 1 to 50 characters",
            ));
        }
        let level_order = i32::try_from(level_order).ok().filter(|o| *o >= 0);
        if level_order.is_none() {
            errors.push(Error::validation(
                "level_order",
                "level order must be a whole number from 0 to 2147483647",
            ));
        }
        let min_points = i32::try_from(min_points).ok().filter(|m| *m >= 0);
        if min_points.is_none() {
            errors.push(Error::validation(
                "min_points",
                "threshold must be a whole number from 0 to 2147483647",
            ));
        }
        if discount_rate <= Decimal::ZERO
            || discount_rate > Decimal::ONE
            || discount_rate.normalize().scale() > 3
        {
            errors.push(Error::validation(
                "discount_rate",
                "discount rate must be above 0 and at most 1, with up to 3 decimal places (0.95 = 5% off)",
            ));
        }
        if point_multiplier < Decimal::ONE
            || point_multiplier > Decimal::TEN
            || point_multiplier.normalize().scale() > 2
        {
            errors.push(Error::validation(
                "point_multiplier",
                "point multiplier must be from 1.00 to 10.00, with up to 2 decimal places",
            ));
        }
        let benefits: Vec<String> = benefits
            .iter()
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .collect();
        if benefits.len() > 20
            || benefits
                .iter()
                .any(|b| b.chars().count() > 100 || b.chars().any(char::is_control))
        {
            errors.push(Error::validation(
                "benefits",
                "at most 20 benefits of up to 100 characters each, one per line",
            ));
        }
        match (level_order, min_points) {
            (Some(level_order), Some(min_points)) if errors.is_empty() => Ok(Self {
                level_name: level_name.to_owned(),
                level_order,
                min_points,
                discount_rate: discount_rate.round_dp(3),
                point_multiplier: point_multiplier.round_dp(2),
                benefits,
                is_active,
            }),
            _ => Err(errors),
        }
    }

    fn values(&self) -> LevelValues<'_> {
        LevelValues {
            level_name: &self.level_name,
            level_order: self.level_order,
            min_points: self.min_points,
            discount_rate: self.discount_rate,
            point_multiplier: self.point_multiplier,
            benefits: &self.benefits,
            is_active: self.is_active,
        }
    }
}

/// Checks the ladder of active levels (sorted by level_order).
pub fn check_ladder(levels: &[Level]) -> Result<()> {
    let active: Vec<&Level> = levels.iter().filter(|l| l.is_active).collect();
    let entries = active.iter().filter(|l| l.min_points == 0).count();
    if entries != 1 {
        return Err(Error::invalid(
            "min_points",
            crate::error::Invalid::OneEntryLevel,
        ));
    }
    for pair in active.windows(2) {
        if pair[1].min_points <= pair[0].min_points {
            return Err(Error::validation(
                "min_points",
                format!(
                    "thresholds must rise with level order: {} (order {}) needs more than {} of {}",
                    pair[1].level_name, pair[1].level_order, pair[0].min_points, pair[0].level_name
                ),
            ));
        }
    }
    Ok(())
}

#[derive(Clone)]
pub struct LevelService {
    ctx: Ctx,
}

impl LevelService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    /// Every level by level_order (cached under `member_system:levels`), shared: every page
    /// view of a member reads it, and an `Arc` is cheaper to hand out than a copy.
    pub async fn list(&self) -> Result<Arc<Vec<Level>>> {
        let cache = &self.ctx.cache;
        let ttl = self.ctx.config.level_cache_ttl;
        cache
            .get_or_load(
                &cache.keys.levels(),
                &cache.keys.levels_version(),
                ttl,
                || async {
                    let mut conn = self.ctx.pool.acquire().await?;
                    Ok(Arc::new(db::all(&mut conn).await?))
                },
            )
            .await
    }

    /// The active levels, the ladder members climb, by level_order.
    pub async fn active(&self) -> Result<Vec<Level>> {
        Ok(self
            .list()
            .await?
            .iter()
            .filter(|l| l.is_active)
            .cloned()
            .collect())
    }

    pub async fn get(&self, id: i32) -> Result<Level> {
        self.list()
            .await?
            .iter()
            .find(|l| l.id == id)
            .cloned()
            .ok_or(Error::LevelNotFound { level_id: id })
    }

    pub async fn create(&self, input: LevelInput, actor: Option<i64>) -> Result<Level> {
        self.change(None, input, actor).await
    }

    pub async fn update(&self, id: i32, input: LevelInput, actor: Option<i64>) -> Result<Level> {
        self.change(Some(id), input, actor).await
    }

    pub async fn set_active(&self, id: i32, active: bool, actor: Option<i64>) -> Result<Level> {
        let current = self.get(id).await?;
        let input = LevelInput {
            level_name: current.level_name,
            level_order: current.level_order,
            min_points: current.min_points,
            discount_rate: current.discount_rate,
            point_multiplier: current.point_multiplier,
            benefits: current.benefits,
            is_active: active,
        };
        self.change(Some(id), input, actor).await
    }

    /// Writes a level and checks the whole ladder in the same transaction; anything wrong
    /// rolls it back.
    async fn change(
        &self,
        id: Option<i32>,
        input: LevelInput,
        actor: Option<i64>,
    ) -> Result<Level> {
        let this = self.clone();
        let level = run_to_completion(async move {
            let now = this.ctx.clock.now();
            let action = if id.is_none() {
                "level.create"
            } else {
                "level.update"
            };
            let mut tx = this.ctx.pool.begin().await?;
            db::lock_for_change(&mut tx).await?;
            let written = match id {
                None => db::insert(&mut tx, &input.values(), now).await.map(Some),
                Some(id) => db::update(&mut tx, id, &input.values(), now)
                    .await
                    .map(|found| found.then_some(id)),
            };
            let id = match written {
                Ok(Some(id)) => id,
                Ok(None) => {
                    return Err(Error::LevelNotFound {
                        level_id: id.unwrap_or_default(),
                    });
                }
                Err(e) => {
                    return Err(on_constraint(e, |c| match c {
                        "member_levels_level_name_key" => Some(Error::invalid(
                            "level_name",
                            crate::error::Invalid::LevelNameTaken,
                        )),
                        "member_levels_level_order_key" => Some(Error::invalid(
                            "level_order",
                            crate::error::Invalid::LevelOrderTaken,
                        )),
                        _ => None,
                    }));
                }
            };
            if !input.is_active {
                let members = db::member_count(&mut tx, id).await?;
                if members > 0 {
                    return Err(Error::LevelInUse {
                        level_id: id,
                        members,
                    });
                }
            }
            let levels = db::all(&mut tx).await?;
            check_ladder(&levels)?;
            member_db::audit(
                &mut tx,
                actor,
                action,
                "level",
                &id.to_string(),
                &json!({
                    "level_name": input.level_name, "level_order": input.level_order,
                    "min_points": input.min_points, "discount_rate": input.discount_rate,
                    "point_multiplier": input.point_multiplier, "is_active": input.is_active,
                }),
                now,
            )
            .await?;
            tx.commit().await?;
            levels
                .into_iter()
                .find(|l| l.id == id)
                .ok_or(Error::LevelNotFound { level_id: id })
        })
        .await?;
        self.ctx.cache.invalidate_levels().await;
        Ok(level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn level(order: i32, min: i32, active: bool) -> Level {
        Level {
            id: order,
            level_name: format!("L{order}"),
            level_order: order,
            min_points: min,
            discount_rate: Decimal::ONE,
            point_multiplier: Decimal::ONE,
            benefits: vec![],
            is_active: active,
        }
    }

    #[test]
    fn level_input_rejects_out_of_range_values() {
        let ok = |name: &str, rate: &str, mult: &str, min: i64| {
            LevelInput::parse(name, 5, min, d(rate), d(mult), vec![], true)
        };
        assert!(ok("Gold", "0.95", "1.5", 5000).is_ok());
        assert_eq!(
            ok("", "0.95", "1.5", 1).unwrap_err().code(),
            "VALIDATION_ERROR"
        );
        assert!(ok(&"x".repeat(51), "0.95", "1.5", 1).is_err());
        assert!(ok("a", "0", "1.5", 1).is_err());
        assert!(ok("a", "1.001", "1.5", 1).is_err());
        assert!(ok("a", "0.9555", "1.5", 1).is_err());
        assert!(ok("a", "0.9", "0.99", 1).is_err());
        assert!(ok("a", "0.9", "10.01", 1).is_err());
        assert!(ok("a", "0.9", "1.555", 1).is_err());
        assert!(ok("a", "0.9", "1.5", -1).is_err());
    }

    #[test]
    fn ladder_needs_one_entry_level_and_rising_thresholds() {
        assert!(check_ladder(&[level(1, 0, true), level(2, 1000, true)]).is_ok());
        // an inactive level is outside the ladder
        assert!(check_ladder(&[level(1, 0, true), level(2, 0, false), level(3, 10, true)]).is_ok());
        assert!(check_ladder(&[level(1, 5, true), level(2, 1000, true)]).is_err());
        assert!(check_ladder(&[level(1, 0, true), level(2, 0, true)]).is_err());
        assert!(
            check_ladder(&[
                level(1, 0, true),
                level(2, 1000, true),
                level(3, 1000, true)
            ])
            .is_err()
        );
        assert!(
            check_ladder(&[
                level(1, 0, true),
                level(2, 5000, true),
                level(3, 1000, true)
            ])
            .is_err()
        );
        assert!(check_ladder(&[level(1, 0, false)]).is_err());
    }
}
