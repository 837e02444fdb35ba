//! Delivery of the notification outbox to `NOTIFY_WEBHOOK_URL` (notifications always show
//! in the portal as well): at least once, retried with exponential backoff, each POST
//! signed with HMAC-SHA256 of its body so the receiver can check it came from us.

use std::sync::Once;
use std::time::Duration as StdDuration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use time::Duration;

use super::Ctx;
use crate::config::Webhook;
use crate::db::notifications as db;
use crate::error::{Error, Result};

pub const SIGNATURE_HEADER: &str = "x-member-portal-signature";
pub const DELIVERY_HEADER: &str = "x-member-portal-delivery";

/// How long a claimed notification is reserved for one delivery attempt.
const LEASE: Duration = Duration::minutes(5);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub retrying: usize,
}

#[derive(Clone)]
pub struct OutboxService {
    ctx: Ctx,
    target: Option<(Webhook, reqwest::Client)>,
}

/// `sha256=<hex>` of the body under the secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256>>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// 30 s, 1 min, 2 min, … at most 6 h between attempts.
pub fn backoff(attempts: i32) -> Duration {
    let secs = 30i64.saturating_mul(1i64 << attempts.clamp(0, 20));
    Duration::seconds(secs.min(6 * 3600))
}

/// Installs ring as rustls's crypto provider (once; reqwest is built without one).
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // another part of the process may have installed one already; either serves
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl OutboxService {
    pub fn new(ctx: Ctx) -> Self {
        let target = ctx.config.notify_webhook.clone().and_then(|hook| {
            install_crypto();
            let client = reqwest::Client::builder()
                .timeout(StdDuration::from_secs(10))
                .user_agent("member-portal")
                .build()
                .map_err(|e| tracing::error!(error = %e, "webhook client could not be built"))
                .ok()?;
            Some((hook, client))
        });
        Self { ctx, target }
    }

    pub fn is_configured(&self) -> bool {
        self.target.is_some()
    }

    /// Posts the notifications that are due; failures are retried later.
    pub async fn deliver_due(&self) -> Result<DeliveryReport> {
        let Some((hook, client)) = &self.target else {
            return Ok(DeliveryReport::default());
        };
        let now = self.ctx.clock.now();
        let claimed = {
            let mut conn = self.ctx.pool.acquire().await?;
            db::claim_due(&mut conn, now, now + LEASE, self.ctx.config.batch_size).await?
        };
        let mut report = DeliveryReport::default();
        for n in claimed {
            let body = serde_json::to_vec(&json!({
                "id": n.id,
                "user_id": n.user_id,
                "kind": n.kind,
                "payload": n.payload,
                "created_at": n.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            }))
            .map_err(|e| Error::Internal(e.into()))?;
            let sent = client
                .post(&hook.url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, signature(&hook.secret, &body))
                .header(DELIVERY_HEADER, n.id.to_string())
                .body(body)
                .send()
                .await;
            let ok = matches!(&sent, Ok(r) if r.status().is_success());
            let mut conn = self.ctx.pool.acquire().await?;
            if ok {
                db::mark_delivered(&mut conn, n.id, self.ctx.clock.now()).await?;
                report.delivered += 1;
            } else {
                let why = match &sent {
                    Ok(r) => r.status().to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(notification = n.id, attempts = n.attempts + 1, %why, "webhook delivery failed; will retry");
                db::schedule_retry(&mut conn, n.id, self.ctx.clock.now() + backoff(n.attempts))
                    .await?;
                report.retrying += 1;
            }
            let result = if ok { "delivered" } else { "failed" };
            metrics::counter!("member_system_webhook_deliveries_total", "result" => result)
                .increment(1);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_six_hours() {
        assert_eq!(backoff(0), Duration::seconds(30));
        assert_eq!(backoff(1), Duration::seconds(60));
        assert_eq!(backoff(5), Duration::seconds(960));
        assert_eq!(backoff(30), Duration::hours(6));
    }

    #[test]
    fn signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
