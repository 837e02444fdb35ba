//! What members read of the notification outbox.

use serde_json::Value;
use time::OffsetDateTime;

use super::Ctx;
use crate::db::notifications as db;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    pub created_at: OffsetDateTime,
    pub read: bool,
}

#[derive(Clone)]
pub struct NotificationService {
    ctx: Ctx,
}

impl NotificationService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    pub async fn list(&self, user_id: i64, limit: i64) -> Result<Vec<Notification>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::list(&mut conn, user_id, limit.clamp(1, 200))
            .await?
            .into_iter()
            .map(|r| Notification {
                id: r.id,
                kind: r.kind,
                payload: r.payload,
                created_at: r.created_at,
                read: r.read_at.is_some(),
            })
            .collect())
    }

    /// How many of the user's notifications are unread (cached with the member's other
    /// entries: whatever adds a notification or marks one read drops it).
    pub async fn unread_count(&self, user_id: i64) -> Result<i64> {
        let cache = &self.ctx.cache;
        let version = cache.keys.member_version(user_id);
        let ttl = self.ctx.config.points_cache_ttl;
        cache
            .get_or_load(&cache.keys.unread(user_id), &version, ttl, || async {
                let mut conn = self.ctx.pool.acquire().await?;
                Ok(db::unread_count(&mut conn, user_id).await?)
            })
            .await
    }

    /// Marks one of the user's notifications (or all with `None`) read; another user's
    /// id changes nothing.
    pub async fn mark_read(&self, user_id: i64, id: Option<i64>) -> Result<u64> {
        let mut conn = self.ctx.pool.acquire().await?;
        let n = db::mark_read(&mut conn, user_id, id, self.ctx.clock.now()).await?;
        drop(conn);
        if n > 0 {
            self.ctx.cache.invalidate_members(&[user_id]).await;
        }
        Ok(n)
    }
}
