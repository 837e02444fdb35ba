//! The audit log for staff: who did what to which member or setting, in the reader's
//! language, filtered by actor, action or member.

use askama::Template;
use askama_web::WebTemplate;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::StaffPage;
use crate::domain::Level;
use crate::error::Error;
use crate::service::admin::{AuditFilter, AuditRow};
use crate::web::error::PageError;
use crate::web::i18n::Lang;
use crate::web::page::Query;
use crate::web::view::PageCtx;

/// Every action the services record, in the order the filter offers them.
pub const ACTIONS: [&str; 20] = [
    "points.adjust",
    "points.bulk_grant",
    "members.import",
    "member.set_level",
    "levels.recalculate",
    "level.create",
    "level.update",
    "api_key.create",
    "api_key.revoke",
    "staff.create",
    "staff.disable",
    "staff.enable",
    "staff.set_role",
    "reward.create",
    "reward.update",
    "coupon.cancel",
    "campaign.create",
    "campaign.end",
    "member.password_set",
    "member.close",
];

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    member: Option<String>,
}

/// One entry as staff read it.
pub struct AuditEntry {
    pub when: OffsetDateTime,
    pub actor: Option<String>,
    pub action: String,
    pub target: String,
    pub target_href: Option<String>,
    pub details: Vec<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/audit.html")]
pub struct AuditPage {
    pub ctx: PageCtx,
    pub entries: Vec<AuditEntry>,
    pub actions: Vec<(&'static str, String)>,
    pub actor: String,
    pub action: String,
    pub member: String,
    /// the query of the next (older) page, filters kept
    pub older: Option<String>,
}

impl AuditPage {
    pub fn is_action(&self, code: &&str) -> bool {
        self.action == *code
    }
}

pub async fn audit(page: StaffPage, Query(q): Query<AuditQuery>) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let refuse = |field: &'static str, message: &str| PageError(Error::validation(field, message));
    let before = match q.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => Some(
            b.parse::<i64>()
                .map_err(|_| refuse("before", "invalid cursor"))?,
        ),
    };
    let text = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or_default().to_owned();
    let (actor, action, member) = (text(&q.actor), text(&q.action), text(&q.member));
    if !action.is_empty() && !ACTIONS.contains(&action.as_str()) {
        return Err(refuse("action", "choose an action from the list"));
    }
    let member_id = match member.as_str() {
        "" => None,
        m => Some(
            m.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| refuse("member", "a member is given by their user id"))?,
        ),
    };
    let filter = AuditFilter {
        actor: (!actor.is_empty()).then(|| actor.clone()),
        action: (!action.is_empty()).then(|| action.clone()),
        member: member_id,
    };
    let (rows, next) = page.services.staff.audit_log(before, &filter).await?;
    let levels = page.services.levels.list().await?;
    let entries = rows.into_iter().map(|r| entry(r, lang, &levels)).collect();
    let older = next.map(|n| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("before", &n.to_string());
        for (k, v) in [("actor", &actor), ("action", &action), ("member", &member)] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    });
    Ok(AuditPage {
        actions: ACTIONS
            .iter()
            .map(|a| (*a, label(lang, "audit.action.", a)))
            .collect(),
        ctx: page.ctx,
        entries,
        actor,
        action,
        member,
        older,
    }
    .into_response())
}

/// The text under `prefix` + `code`, or the code itself for one this build does not know.
fn label(lang: Lang, prefix: &str, code: &str) -> String {
    lang.try_t(&format!("{prefix}{code}"))
        .unwrap_or(code)
        .to_owned()
}

fn entry(r: AuditRow, lang: Lang, levels: &[Level]) -> AuditEntry {
    let target_id = r.target_id.unwrap_or_default();
    let target_type = r.target_type.unwrap_or_default();
    let level_name = |id: &Value| {
        id.as_i64()
            .and_then(|id| levels.iter().find(|l| i64::from(l.id) == id))
            .map(|l| l.level_name.clone())
    };
    let target = match target_type.as_str() {
        "level" => target_id
            .parse::<i64>()
            .ok()
            .and_then(|id| level_name(&Value::from(id)))
            .unwrap_or_else(|| target_id.clone()),
        _ => target_id.clone(),
    };
    let target = format!("{} {target}", label(lang, "audit.target.", &target_type));
    let target_href = match target_type.as_str() {
        "member" => Some(format!("/admin/members/{target_id}")),
        "level" => Some(format!("/admin/levels/{target_id}")),
        "bulk_grant" => Some(format!("/admin/grants/{target_id}")),
        "import" => Some(format!("/admin/imports/{target_id}")),
        _ => None,
    };
    let details = match &r.details {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let value = match (k.as_str(), v) {
                    ("old_level_id" | "new_level_id", id) => {
                        level_name(id).unwrap_or_else(|| id.to_string())
                    }
                    (_, Value::String(s)) => s.clone(),
                    (_, Value::Bool(b)) => lang
                        .t(if *b { "common.yes" } else { "common.no" })
                        .to_owned(),
                    (_, other) => other.to_string(),
                };
                (label(lang, "audit.field.", k), value)
            })
            .collect(),
        _ => Vec::new(),
    };
    AuditEntry {
        when: r.created_at,
        actor: r.actor,
        action: label(lang, "audit.action.", &r.action),
        target,
        target_href,
        details,
    }
}
