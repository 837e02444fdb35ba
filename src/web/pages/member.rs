//! The member's own pages: profile, points, upgrade progress, notifications. Every page
//! shows the logged-in user's data only; no user id is taken from the URL.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::cache::Stamp;
use crate::config::TierWindow;
use crate::domain::{Batch, Level, Profile, Transaction, TransactionType};
use crate::error::Error;
use crate::service::notifications::Notification;
use crate::service::tiers::TierView;
use crate::web::error::PageError;
use crate::web::page::{Page, Query, UserPage};
use crate::web::view::PageCtx;

pub async fn home(page: Page) -> Response {
    match &page.user {
        None => Redirect::to("/login").into_response(),
        Some(u) if u.is_staff() => Redirect::to("/admin").into_response(),
        Some(_) => Redirect::to("/profile").into_response(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/member/profile.html")]
pub struct ProfilePage {
    pub ctx: PageCtx,
    pub p: Profile,
}

/// A staff account has no member profile: its member pages lead to the staff dashboard
/// rather than to "member not found".
fn staff_without_profile(page: &UserPage, e: &Error) -> bool {
    page.user.is_staff() && matches!(e, Error::MemberNotFound { .. })
}

fn to_dashboard() -> Result<Response, PageError> {
    Ok(Redirect::to("/admin").into_response())
}

/// A profile page as rendered, with what it was rendered from.
struct RenderedProfile {
    ctx: PageCtx,
    /// the member's and the levels' stamps, read before the entries the page shows
    member: Stamp,
    levels: Stamp,
    /// when the points summary it shows stops being true (a batch expires, one comes
    /// within the reminder window, pending points are released)
    valid_until: Option<OffsetDateTime>,
    body: Bytes,
}

pub async fn profile(page: UserPage) -> Result<Response, PageError> {
    let user_id = page.user.user_id;
    let ctx = &page.services.ctx;
    let cache = &ctx.cache;
    // A page rendered here from entries still current is served as it is: the stamps are
    // those the entries would be served with now (read ahead with the session, through
    // Redis), and each write to the member or the levels replaces them.
    let member = cache.stamp(&cache.keys.member_version(user_id)).await;
    let levels = cache.stamp(&cache.keys.levels_version()).await;
    let now = ctx.clock.now();
    let memo = ctx
        .rendered
        .get(&(user_id, "profile"))
        .and_then(|r| r.downcast::<RenderedProfile>().ok());
    if let Some(r) = memo.filter(|r| {
        r.member.matches(&member)
            && r.levels.matches(&levels)
            && r.valid_until.is_none_or(|t| t > now)
            && r.ctx == page.ctx
    }) {
        return Ok(html(r.body.clone()));
    }
    let p = match page.services.members.get_member_profile(user_id).await {
        Err(e) if staff_without_profile(&page, &e) => return to_dashboard(),
        r => r?,
    };
    let valid_until = p.points.valid_until;
    let rendered = ProfilePage {
        ctx: page.ctx.clone(),
        p,
    }
    .render()
    .map_err(|e| PageError::internal(format_args!("profile page: {e}")))?;
    let body = Bytes::from(rendered);
    if member.is_known() && levels.is_known() {
        let r = RenderedProfile {
            ctx: page.ctx,
            member,
            levels,
            valid_until,
            body: body.clone(),
        };
        ctx.rendered.insert((user_id, "profile"), Arc::new(r));
    }
    Ok(html(body))
}

/// A page as askama_web answers it.
fn html(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

const PAGE_SIZE: i64 = 20;

#[derive(Deserialize)]
pub struct PointsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    cursor: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/member/points.html")]
pub struct PointsPage {
    pub ctx: PageCtx,
    /// the first batches to expire
    pub batches: Vec<Batch>,
    /// more batches expire after those
    pub more_batches: bool,
    pub rows: HistoryRows,
}

/// Batches listed on the points page: the next to expire (the page stays the same size
/// however many batches a member has).
pub const BATCHES_SHOWN: usize = 10;

/// The rows of the history table and the "load more" link after them: the whole answer
/// to an htmx "load more", and part of the full page.
#[derive(Template, WebTemplate)]
#[template(path = "partials/member/history_rows.html")]
pub struct HistoryRows {
    pub ctx: PageCtx,
    /// the page these rows belong to (`/points`, or a member's page for staff)
    pub base: String,
    pub items: Vec<Transaction>,
    /// the type filter, if any
    pub kind: Option<TransactionType>,
    pub next_cursor: Option<i64>,
}

impl HistoryRows {
    /// Every type, for the filter.
    pub fn kinds(&self) -> [TransactionType; 7] {
        TransactionType::ALL
    }

    pub fn is_kind(&self, k: &TransactionType) -> bool {
        self.kind == Some(*k)
    }

    pub fn more_href(&self, cursor: &i64) -> String {
        match self.kind {
            None => format!("{}?cursor={cursor}", self.base),
            Some(kind) => format!("{}?type={kind}&cursor={cursor}", self.base),
        }
    }
}

impl PointsQuery {
    /// The type filter (unknown types show everything) and the cursor (a malformed one is
    /// a clear 422).
    pub fn parse(&self) -> Result<(Option<TransactionType>, Option<i64>), Error> {
        let kind = self.kind.as_deref().and_then(TransactionType::parse);
        let cursor = match self.cursor.as_deref().map(str::parse::<i64>) {
            None => None,
            Some(Ok(c)) if c > 0 => Some(c),
            Some(_) => return Err(Error::validation("cursor", "invalid cursor")),
        };
        Ok((kind, cursor))
    }
}

pub async fn points(page: UserPage, Query(q): Query<PointsQuery>) -> Result<Response, PageError> {
    let (kind, cursor) = q.parse()?;
    let user = page.user.user_id;
    let (items, next_cursor) = match page
        .services
        .points
        .history(user, kind, cursor, PAGE_SIZE)
        .await
    {
        Err(e) if staff_without_profile(&page, &e) => return to_dashboard(),
        r => r?,
    };
    let rows = HistoryRows {
        ctx: page.ctx.clone(),
        base: "/points".into(),
        items,
        kind,
        next_cursor,
    };
    // htmx asks for the rows alone: "load more" (with a cursor) and the type filter
    if page.ctx.htmx {
        return Ok(rows.into_response());
    }
    let (batches, more_batches) = page
        .services
        .points
        .first_batches(user, BATCHES_SHOWN)
        .await?;
    Ok(PointsPage {
        ctx: page.ctx,
        batches,
        more_batches,
        rows,
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/member/upgrade.html")]
pub struct UpgradePage {
    pub ctx: PageCtx,
    pub p: Profile,
    pub ladder: Vec<Level>,
    /// what the qualifying spend is ("this calendar year", "the last 12 months")
    pub spent_label: String,
    /// keeping the level: how long, what keeps it, a deferred upgrade
    pub tier_lines: Vec<TierLine>,
}

pub struct TierLine {
    pub id: &'static str,
    pub text: String,
    /// shown as a warning (a downgrade to come)
    pub warn: bool,
}

fn spent_label(ctx: &PageCtx, window: TierWindow) -> String {
    match window {
        TierWindow::Lifetime => ctx.t("upgrade.spent").to_string(),
        TierWindow::CalendarYear => ctx.t("upgrade.spent_year").to_string(),
        TierWindow::RollingMonths(n) => {
            ctx.t("upgrade.spent_months").replace("{n}", &n.to_string())
        }
    }
}

fn tier_lines(ctx: &PageCtx, level: &Level, view: &TierView) -> Vec<TierLine> {
    let mut lines = Vec::new();
    let name = level.level_name.as_str();
    match (view.kept_until, view.manual) {
        (Some(until), true) => lines.push(TierLine {
            id: "kept-until",
            text: ctx
                .t("upgrade.manual_until")
                .replace("{level}", name)
                .replace("{date}", &ctx.last_day(&until)),
            warn: false,
        }),
        (Some(until), false) => lines.push(TierLine {
            id: "kept-until",
            text: ctx
                .t("upgrade.kept_until")
                .replace("{level}", name)
                .replace("{date}", &ctx.last_day(&until)),
            warn: false,
        }),
        (None, _) => {}
    }
    if let Some(keep) = &view.keep {
        let by = ctx.last_day(&keep.by);
        let line = match &keep.drop_to {
            Some(to) if keep.needed > rust_decimal::Decimal::ZERO => TierLine {
                id: "keep-level",
                text: ctx
                    .t("upgrade.keep_needed")
                    .replace("{amount}", &ctx.money(&keep.needed))
                    .replace("{date}", &by)
                    .replace("{level}", name)
                    .replace("{lower}", to),
                warn: true,
            },
            _ => TierLine {
                id: "keep-level",
                text: ctx
                    .t("upgrade.keep_done")
                    .replace("{level}", name)
                    .replace("{date}", &by),
                warn: false,
            },
        };
        lines.push(line);
    }
    if let Some(due) = view.upgrade_due_at {
        lines.push(TierLine {
            id: "upgrade-due",
            text: ctx
                .t("upgrade.deferred")
                .replace("{date}", &ctx.datetime(&due)),
            warn: false,
        });
    }
    lines
}

pub async fn upgrade(page: UserPage) -> Result<Response, PageError> {
    let p = match page
        .services
        .members
        .get_member_profile(page.user.user_id)
        .await
    {
        Err(e) if staff_without_profile(&page, &e) => return to_dashboard(),
        r => r?,
    };
    let ladder = page.services.levels.active().await?;
    let view = page
        .services
        .tiers
        .view(page.user.user_id, &p.level)
        .await?;
    Ok(UpgradePage {
        spent_label: spent_label(&page.ctx, view.window),
        tier_lines: tier_lines(&page.ctx, &p.level, &view),
        ctx: page.ctx,
        p,
        ladder,
    }
    .into_response())
}

pub struct NotificationView {
    pub id: i64,
    pub text: String,
    pub created_at: time::OffsetDateTime,
    pub read: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/member/notifications.html")]
pub struct NotificationsPage {
    pub ctx: PageCtx,
    pub items: Vec<NotificationView>,
}

fn describe(ctx: &PageCtx, n: &Notification) -> String {
    let level = n.payload["new_level"].as_str().unwrap_or("");
    match n.kind.as_str() {
        "level_upgraded" => ctx.t("notify.level_upgraded").replace("{level}", level),
        "level_changed" => ctx.t("notify.level_changed").replace("{level}", level),
        "points_expiry_reminder" => {
            let first = n.payload["batches"][0]["expires_at"].as_str().unwrap_or("");
            ctx.t("notify.points_expiry_reminder")
                .replace("{points}", &n.payload["points"].to_string())
                .replace("{date}", first.get(..10).unwrap_or(first))
        }
        "member.password_reset" => ctx.t("notify.member_password_reset").to_string(),
        "level.will_downgrade" => {
            let on = n.payload["by"].as_str().unwrap_or("");
            ctx.t("notify.level_will_downgrade")
                .replace("{level}", n.payload["level"].as_str().unwrap_or(""))
                .replace("{lower}", level)
                .replace(
                    "{amount}",
                    &n.payload["needed"]
                        .as_str()
                        .and_then(|a| a.parse::<rust_decimal::Decimal>().ok())
                        .map(|a| ctx.money(&a))
                        .unwrap_or_default(),
                )
                .replace("{date}", on)
        }
        "level.downgraded" => ctx.t("notify.level_downgraded").replace("{level}", level),
        "points.granted" => ctx
            .t("notify.points_granted")
            .replace("{points}", &n.payload["points"].to_string())
            .replace("{reason}", n.payload["reason"].as_str().unwrap_or("")),
        "points.released" => ctx
            .t("notify.points_released")
            .replace("{points}", &n.payload["points"].to_string()),
        "coupon.issued" | "coupon.cancelled" | "coupon.consumed" | "coupon.released" => {
            let key = format!("notify.{}", n.kind.replace('.', "_"));
            let date = n.payload["expires_at"].as_str().unwrap_or("");
            ctx.t(&key)
                .replace("{title}", n.payload["title"].as_str().unwrap_or(""))
                .replace("{order}", n.payload["order_id"].as_str().unwrap_or(""))
                .replace("{date}", date.get(..10).unwrap_or(date))
        }
        other => other.to_owned(),
    }
}

pub async fn notifications(page: UserPage) -> Result<Response, PageError> {
    let list = page
        .services
        .notifications
        .list(page.user.user_id, 100)
        .await?;
    let items = list
        .iter()
        .map(|n| NotificationView {
            id: n.id,
            text: describe(&page.ctx, n),
            created_at: n.created_at,
            read: n.read,
        })
        .collect();
    Ok(NotificationsPage {
        ctx: page.ctx,
        items,
    }
    .into_response())
}

pub async fn mark_read(page: UserPage, Path(id): Path<String>) -> Result<Response, PageError> {
    let id: i64 = id.parse().map_err(|_| {
        PageError(Error::NotFound {
            what: "notification",
        })
    })?;
    page.services
        .notifications
        .mark_read(page.user.user_id, Some(id))
        .await?;
    Ok(Redirect::to("/notifications").into_response())
}

pub async fn mark_all_read(page: UserPage) -> Result<Response, PageError> {
    page.services
        .notifications
        .mark_read(page.user.user_id, None)
        .await?;
    Ok(Redirect::to("/notifications").into_response())
}
