//! Password links by email where `SMTP_URL` is set (lettre over rustls); they also go
//! through the outbox as `member.password_reset` either way. Tried up to 10 times.

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Ctx;
use crate::db::notifications as db;
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct EmailService {
    ctx: Ctx,
    transport: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

impl EmailService {
    pub fn new(ctx: Ctx) -> Self {
        let transport = ctx.config.smtp_url.as_deref().and_then(|url| {
            super::outbox::install_crypto();
            let from = ctx.config.smtp_from.parse::<Mailbox>().ok()?;
            match AsyncSmtpTransport::<Tokio1Executor>::from_url(url) {
                Ok(b) => Some((b.build(), from)),
                Err(e) => {
                    tracing::error!(error = %e, "SMTP_URL cannot be used; password links go by webhook only");
                    None
                }
            }
        });
        Self { ctx, transport }
    }

    pub fn is_configured(&self) -> bool {
        self.transport.is_some()
    }

    /// Emails the password links not sent yet; returns how many went.
    pub async fn deliver_due(&self) -> Result<i64> {
        let Some((transport, from)) = &self.transport else {
            return Ok(0);
        };
        let due = {
            let mut conn = self.ctx.pool.acquire().await?;
            db::emails_due(&mut conn, self.ctx.config.batch_size).await?
        };
        let mut sent = 0;
        for row in due {
            let ok = match message(from, &row) {
                Some(m) => match transport.send(m).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(notification = row.id, error = %e, "password email not sent; will retry");
                        false
                    }
                },
                None => {
                    tracing::warn!(
                        notification = row.id,
                        "password email has no usable address"
                    );
                    false
                }
            };
            let mut conn = self.ctx.pool.acquire().await?;
            db::mark_emailed(&mut conn, row.id, ok, self.ctx.clock.now()).await?;
            sent += i64::from(ok);
            let result = if ok { "sent" } else { "failed" };
            metrics::counter!("member_system_emails_total", "result" => result).increment(1);
        }
        Ok(sent)
    }
}

/// The email of a password link, in both languages (the portal does not know which one a
/// member reads outside it).
fn message(from: &Mailbox, row: &db::EmailRow) -> Option<Message> {
    let to: Mailbox = row.email.parse().ok()?;
    let link = row.payload["link"].as_str()?;
    let set = row.payload["purpose"] == "set";
    let (subject, zh, en) = if set {
        (
            "设置会员中心密码 / Set your Member Portal password",
            "请点击下面的链接设置密码（7 天内有效，只能使用一次）：",
            "Open this link to set your password (it works once, for 7 days):",
        )
    } else {
        (
            "重设会员中心密码 / Reset your Member Portal password",
            "请点击下面的链接设置新密码（30 分钟内有效，只能使用一次）：",
            "Open this link to set a new password (it works once, for 30 minutes):",
        )
    };
    let body = format!(
        "{name}：\n\n{zh}\n{link}\n\n{en}\n{link}\n\n如果这不是你本人的操作，请忽略本邮件。\nIf you did not ask for this, ignore this email.\n",
        name = row.display_name
    );
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| Error::Internal(e.into()))
        .ok()
}
