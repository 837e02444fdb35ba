//! Members for staff: the list with filters, search and paging, its CSV export, and a
//! member's page (points, batches, coupons, level history, notes) with its forms.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::domain::{Level, Profile};
use crate::error::Error;
use crate::service::admin::MemberRow;
use crate::service::points::AdjustRequest;
use crate::web::error::{PageError, localized};
use crate::web::page::{Form, Query};
use crate::web::pages::member::{HistoryRows, PointsQuery};
use crate::web::view::PageCtx;

use super::{DoneQuery, StaffPage, csv_cell, parse_id};
use crate::web::pages::confirm::ConfirmPage;

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    pub(super) q: String,
    #[serde(default)]
    pub(super) level: String,
    #[serde(default)]
    pub(super) min_points: String,
    #[serde(default)]
    pub(super) max_points: String,
    /// first day joined (business time zone)
    #[serde(default)]
    pub(super) joined_from: String,
    /// last day joined
    #[serde(default)]
    pub(super) joined_to: String,
    pub(super) after: Option<String>,
}

impl SearchQuery {
    pub(super) fn filter(
        &self,
        ctx: &PageCtx,
    ) -> Result<crate::service::admin::MemberFilter, Error> {
        let number = |field: &'static str, s: &str| -> Result<Option<i64>, Error> {
            match s.trim() {
                "" => Ok(None),
                s => s
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(Some)
                    .ok_or_else(|| Error::validation(field, "a whole number of 0 or more")),
            }
        };
        let day = |field: &'static str, s: &str| -> Result<Option<time::Date>, Error> {
            match s.trim() {
                "" => Ok(None),
                s => {
                    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                        .map(Some)
                        .map_err(|_| Error::validation(field, "a date such as 2026-12-31"))
                }
            }
        };
        let at = |d: time::Date| d.with_time(time::Time::MIDNIGHT).assume_offset(ctx.offset);
        let q = self.q.trim();
        Ok(crate::service::admin::MemberFilter {
            q: (!q.is_empty()).then(|| q.chars().take(254).collect()),
            level_id: self.level.trim().parse().ok(),
            min_points: number("min_points_filter", &self.min_points)?,
            max_points: number("max_points", &self.max_points)?,
            joined_from: day("joined_from", &self.joined_from)?.map(at),
            joined_before: day("joined_to", &self.joined_to)?
                .and_then(time::Date::next_day)
                .map(at),
        })
    }

    /// This query with `after` set, for the next page.
    fn next_href(&self, after: i64) -> String {
        let pairs = [
            ("q", self.q.as_str()),
            ("level", self.level.as_str()),
            ("min_points", self.min_points.as_str()),
            ("max_points", self.max_points.as_str()),
            ("joined_from", self.joined_from.as_str()),
            ("joined_to", self.joined_to.as_str()),
        ];
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            out.append_pair(k, v);
        }
        out.append_pair("after", &after.to_string());
        format!("/admin/members?{}", out.finish())
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/members.html")]
pub struct MembersPage {
    pub ctx: PageCtx,
    pub q: String,
    pub level: String,
    pub min_points: String,
    pub max_points: String,
    pub joined_from: String,
    pub joined_to: String,
    pub found: Vec<MemberRow>,
    pub levels: Vec<Level>,
    pub next: Option<String>,
    pub error: Option<String>,
    /// the bulk grant form's key (a form sent twice starts one grant)
    pub grant_key: String,
    pub grant_error: Option<String>,
    pub grant_points: String,
    pub grant_reason: String,
}

impl MembersPage {
    pub fn level_name(&self, id: &i32) -> &str {
        self.levels
            .iter()
            .find(|l| l.id == *id)
            .map_or("?", |l| l.level_name.as_str())
    }

    pub fn is_level(&self, id: &i32) -> bool {
        self.level == id.to_string()
    }

    /// The filters as a query string (for the export link).
    pub fn query(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &self.q),
            ("level", &self.level),
            ("min_points", &self.min_points),
            ("max_points", &self.max_points),
            ("joined_from", &self.joined_from),
            ("joined_to", &self.joined_to),
        ] {
            if !v.is_empty() {
                out.append_pair(k, v);
            }
        }
        out.finish()
    }
}

/// The member list as CSV, with the list's filters, streamed a page at a time (nothing
/// held in memory but the page being written).
pub async fn export_members(
    page: StaffPage,
    Query(q): Query<SearchQuery>,
) -> Result<Response, PageError> {
    let filter = q.filter(&page.ctx)?;
    let levels = page.services.levels.list().await?.to_vec();
    let offset = page.ctx.offset;
    let services = page.services.clone();
    let header = "user_id,member_code,email,display_name,level,available_points,phone,external_id,joined_at\n";
    let stream = futures_util::stream::unfold((Some(None::<i64>), true), move |(cursor, first)| {
        let (services, filter, levels) = (services.clone(), filter.clone(), levels.clone());
        async move {
            let after = cursor?;
            let mut out = String::new();
            if first {
                out.push_str(header);
            }
            let (rows, next) = match services.staff.list_members_page(&filter, after, 1000).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "member export stopped");
                    return Some((Err(std::io::Error::other("export failed")), (None, false)));
                }
            };
            for m in rows {
                let level = levels
                    .iter()
                    .find(|l| l.id == m.level_id)
                    .map_or("", |l| l.level_name.as_str());
                let joined = m
                    .created_at
                    .to_offset(offset)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let cells = [
                    m.user_id.to_string(),
                    m.member_code,
                    m.email,
                    m.display_name,
                    level.to_owned(),
                    m.available_points.to_string(),
                    m.phone.unwrap_or_default(),
                    m.external_id.unwrap_or_default(),
                    joined,
                ];
                let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
            Some((
                Ok::<_, std::io::Error>(axum::body::Bytes::from(out)),
                (next.map(Some), false),
            ))
        }
    });
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"members.csv\"",
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

pub async fn members(page: StaffPage, Query(q): Query<SearchQuery>) -> Result<Response, PageError> {
    members_page(page, q, None).await
}

/// The member list; `grant` is a bulk grant form sent back with its message.
pub(super) async fn members_page(
    page: StaffPage,
    q: SearchQuery,
    grant: Option<(String, String, String)>,
) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let levels = page.services.levels.list().await?.to_vec();
    let after = q
        .after
        .as_deref()
        .and_then(|a| a.parse::<i64>().ok())
        .filter(|a| *a > 0);
    let (found, next, error) = match q.filter(&page.ctx) {
        Ok(f) => {
            let (found, next) = page.services.staff.list_members(&f, after).await?;
            (found, next.map(|n| q.next_href(n)), None)
        }
        Err(e) => (Vec::new(), None, Some(localized(&e, lang))),
    };
    let status = if error.is_some() || grant.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let (grant_error, grant_points, grant_reason) = match grant {
        Some((e, p, r)) => (Some(e), p, r),
        None => (None, String::new(), String::new()),
    };
    Ok((
        status,
        MembersPage {
            ctx: page.ctx,
            q: q.q.trim().to_owned(),
            level: q.level,
            min_points: q.min_points,
            max_points: q.max_points,
            joined_from: q.joined_from,
            joined_to: q.joined_to,
            found,
            levels,
            next,
            error,
            grant_key: uuid::Uuid::new_v4().simple().to_string(),
            grant_error,
            grant_points,
            grant_reason,
        },
    )
        .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/member.html")]
pub struct MemberPage {
    pub ctx: PageCtx,
    pub p: Profile,
    pub levels: Vec<Level>,
    pub rows: HistoryRows,
    /// the newest coupons
    pub coupons: Vec<crate::domain::rewards::Coupon>,
    /// the newest level changes
    pub level_history: Vec<crate::service::members::LevelHistoryRow>,
    /// staff notes, newest first
    pub notes: Vec<crate::service::members::MemberNote>,
    pub note_error: Option<String>,
    /// a page of the member's batches, and the link to the older ones
    pub batches: Vec<crate::service::points::BatchRow>,
    pub older_batches: Option<String>,
    pub now: time::OffsetDateTime,
    /// how long the level is kept and what the review will do
    pub tier: crate::service::tiers::TierView,
    pub adjust_error: Option<String>,
    pub level_error: Option<String>,
    pub notice: Option<String>,
}

/// Messages next to the member page's forms, and where its batch list starts.
#[derive(Default)]
struct Messages {
    adjust_error: Option<String>,
    level_error: Option<String>,
    note_error: Option<String>,
    notice: Option<String>,
    batches_before: Option<i64>,
}

async fn ledger(
    page: &StaffPage,
    user_id: i64,
    cursor: Option<i64>,
) -> Result<HistoryRows, PageError> {
    let (items, next_cursor) = page
        .services
        .points
        .history(user_id, None, cursor, 50)
        .await?;
    Ok(HistoryRows {
        ctx: page.ctx.clone(),
        base: format!("/admin/members/{user_id}"),
        items,
        kind: None,
        next_cursor,
    })
}

async fn member_page(
    page: StaffPage,
    user_id: i64,
    cursor: Option<i64>,
    m: Messages,
) -> Result<Response, PageError> {
    let p = page.services.members.get_member_profile(user_id).await?;
    let levels = page.services.levels.active().await?;
    let rows = ledger(&page, user_id, cursor).await?;
    let (coupons, _) = page
        .services
        .rewards
        .member_coupons(user_id, None, 10)
        .await?;
    let level_history = page.services.members.level_history(user_id, 20).await?;
    let (batches, next_batches) = page
        .services
        .points
        .batch_page(user_id, m.batches_before)
        .await?;
    let notes = page.services.members.notes(user_id).await?;
    let older_batches =
        next_batches.map(|n| format!("/admin/members/{user_id}?batches_before={n}#batches"));
    let tier = page.services.tiers.view(user_id, &p.level).await?;
    let status = if m.adjust_error.is_some() || m.level_error.is_some() || m.note_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let view = MemberPage {
        ctx: page.ctx,
        p,
        levels,
        rows,
        coupons,
        level_history,
        notes,
        note_error: m.note_error,
        batches,
        older_batches,
        now: page.services.ctx.clock.now(),
        tier,
        adjust_error: m.adjust_error,
        level_error: m.level_error,
        notice: m.notice,
    };
    Ok((status, view).into_response())
}

pub async fn member(
    page: StaffPage,
    Path(id): Path<String>,
    Query(q): Query<PointsQuery>,
    Query(done): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let id: i64 = parse_id(&id)?;
    let (_, cursor) = q.parse()?;
    if cursor.is_some() && page.ctx.htmx {
        return Ok(ledger(&page, id, cursor).await?.into_response());
    }
    let notice = done.notice(
        &page.ctx,
        &[
            ("adjusted", "member.done_adjusted"),
            ("level", "member.done_level"),
            ("note", "member.done_note"),
        ],
    );
    let messages = Messages {
        notice,
        batches_before: done
            .batches_before
            .as_deref()
            .and_then(|b| b.parse::<i64>().ok())
            .filter(|b| *b > 0),
        ..Default::default()
    };
    // without JavaScript, "load more" is this page with the next page of the ledger
    member_page(page, id, cursor, messages).await
}

#[derive(Deserialize)]
pub struct AdjustForm {
    #[serde(default)]
    points: String,
    #[serde(default)]
    reason: String,
    /// "yes" once a large adjustment is confirmed
    #[serde(default)]
    confirm: String,
}

pub async fn adjust(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<AdjustForm>,
) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let id: i64 = parse_id(&id)?;
    let request = f
        .points
        .trim()
        .parse::<i64>()
        .map_err(|_| Error::validation("points", lang.t("level.whole_number")))
        .and_then(|n| AdjustRequest::parse(id, n, &f.reason, Some(page.actor)));
    // a large adjustment is made only once it is confirmed
    if let Ok(r) = &request {
        let above = page.services.ctx.config.adjustment_confirm_above;
        if r.points.unsigned_abs() > above.unsigned_abs() && f.confirm != "yes" {
            let back = format!("/admin/members/{id}");
            let confirm = ConfirmPage::new(
                page.ctx.clone(),
                "member.confirm_adjust_text",
                "member.confirm_yes",
                format!("{back}/adjust"),
                back,
            )
            .detail(
                page.ctx.t("member.adjust_points").as_ref(),
                page.ctx.signed(&r.points),
            )
            .detail(page.ctx.t("member.reason").as_ref(), r.reason.clone())
            .field("points", &r.points.to_string())
            .field("reason", &r.reason);
            return Ok(confirm.response());
        }
    }
    let outcome = match request {
        Ok(r) => page.services.points.adjust_points(r).await.map(|_| ()),
        Err(e) => Err(e),
    };
    after_member_form(page, id, outcome, MemberForm::Adjust).await
}

enum MemberForm {
    Adjust,
    Level,
    Note,
}

/// Back to the member's page: on success as a fresh page, otherwise with the message
/// next to the form that failed.
async fn after_member_form(
    page: StaffPage,
    id: i64,
    outcome: Result<(), Error>,
    form: MemberForm,
) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    match outcome {
        Ok(()) => {
            let done = match form {
                MemberForm::Adjust => "adjusted",
                MemberForm::Level => "level",
                MemberForm::Note => "note",
            };
            Ok(Redirect::to(&format!("/admin/members/{id}?done={done}")).into_response())
        }
        Err(e @ (Error::Internal(_) | Error::MemberNotFound { .. })) => Err(PageError(e)),
        Err(e) => {
            let message = Some(localized(&e, lang));
            let messages = match form {
                MemberForm::Adjust => Messages {
                    adjust_error: message,
                    ..Default::default()
                },
                MemberForm::Level => Messages {
                    level_error: message,
                    ..Default::default()
                },
                MemberForm::Note => Messages {
                    note_error: message,
                    ..Default::default()
                },
            };
            member_page(page, id, None, messages).await
        }
    }
}

#[derive(Deserialize)]
pub struct NoteForm {
    #[serde(default)]
    note: String,
}

/// Staff leave a note on the member.
pub async fn add_note(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Result<Response, PageError> {
    let id: i64 = parse_id(&id)?;
    let outcome = page
        .services
        .members
        .add_note(id, &f.note, Some(page.actor))
        .await;
    after_member_form(page, id, outcome, MemberForm::Note).await
}

#[derive(Deserialize)]
pub struct SetLevelForm {
    #[serde(default)]
    level_id: String,
    #[serde(default)]
    note: String,
    /// `YYYY-MM-DD`, the last day of a level set by hand; empty: for good
    #[serde(default)]
    until: String,
}

pub async fn set_level(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<SetLevelForm>,
) -> Result<Response, PageError> {
    let id: i64 = parse_id(&id)?;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let until = match f.until.trim() {
        "" => Ok(None),
        raw => time::Date::parse(raw, format)
            .map(Some)
            .map_err(|_| Error::validation("until", "a date such as 2027-06-30, or empty")),
    };
    let outcome = match (f.level_id.trim().parse::<i32>(), until) {
        (Ok(level), Ok(until)) => {
            page.services
                .members
                .set_level_until(id, level, &f.note, until, Some(page.actor))
                .await
        }
        (Err(_), _) => Err(Error::invalid(
            "level_id",
            crate::error::Invalid::ChooseActiveLevel,
        )),
        (_, Err(e)) => Err(e),
    };
    after_member_form(page, id, outcome, MemberForm::Level).await
}
