//! Staff pages (role `staff`; a member gets 403): dashboard, levels, recalculation,
//! members, audit log, API keys.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::db::admin::RecalcOptions;
use crate::db::admin::{ApiKeyRow, MemberRow};
use crate::domain::{Level, Profile};
use crate::error::Error;
use crate::service::admin::{Dashboard, RecalcPreview};
use crate::service::levels::LevelInput;
use crate::service::points::AdjustRequest;
use crate::service::{Services, accounts};
use crate::web::error::{InLang, PageError, localized};
use crate::web::page::{Form, LoginRequired, PageCtx, Query, UserPage};
use crate::web::pages::member::{HistoryRows, PointsQuery};

mod audit;
mod campaigns;
mod finance;
mod grants;
mod imports;
mod rewards;

mod staff;
use super::confirm::{ConfirmPage, Confirmed};
pub use audit::audit;
pub use campaigns::{campaigns, create as create_campaign, end as end_campaign};
pub use finance::{finance, finance_csv, ledger_csv};
pub use grants::{create as create_grant, grant, grants};
pub use imports::{import, imports, upload as upload_import};
pub use rewards::{
    cancel as cancel_coupon, coupon, create as create_reward, edit as edit_reward,
    find as find_coupon, rewards, update as update_reward,
};
pub use staff::{
    disable as disable_staff, enable as enable_staff, set_role as set_staff_role, staff,
};

/// A page for staff only.
pub struct StaffPage {
    pub ctx: PageCtx,
    pub actor: i64,
    pub services: Services,
}

impl FromRequestParts<Services> for StaffPage {
    type Rejection = LoginRequired;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Services,
    ) -> Result<Self, Self::Rejection> {
        let page = UserPage::from_request_parts(parts, services).await?;
        if !page.user.is_staff() {
            return Err(LoginRequired::Forbidden(Box::new(page.ctx)));
        }
        // what the account's role allows, for every staff route in one place
        let role = page
            .user
            .staff_role
            .unwrap_or(crate::domain::StaffRole::Viewer);
        if !role.allows(parts.method.as_str(), parts.uri.path()) {
            return Err(LoginRequired::Forbidden(Box::new(page.ctx)));
        }
        Ok(StaffPage {
            ctx: page.ctx,
            actor: page.user.user_id,
            services: page.services,
        })
    }
}

pub(crate) fn parse_id<T: std::str::FromStr>(ctx: &PageCtx, raw: &str) -> Result<T, PageError> {
    raw.parse().map_err(|_| PageError {
        lang: ctx.lang,
        error: Error::NotFound { what: "page" },
    })
}

// ---------------------------------------------------------------- dashboard and charts

pub use crate::web::chart::{BarView, ChartView, TickView};
use crate::web::chart::{CHART_H, CHART_TOP, scale};

fn level_chart(levels: &[(Level, i64)]) -> ChartView {
    let max = levels.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let slot = 90;
    let bars = levels
        .iter()
        .enumerate()
        .map(|(i, (l, n))| {
            let h = scale(*n, max);
            BarView {
                x: 20 + i as i64 * slot,
                y: CHART_TOP + CHART_H - h,
                w: 56,
                h,
                class: if l.is_active {
                    "bar-level"
                } else {
                    "bar-inactive"
                },
                title: format!("{}: {n}", l.level_name),
            }
        })
        .collect();
    let ticks = levels
        .iter()
        .enumerate()
        .map(|(i, (l, _))| TickView {
            x: 48 + i as i64 * slot,
            label: l.level_name.clone(),
        })
        .collect();
    ChartView {
        width: 40 + levels.len() as i64 * slot,
        height: CHART_TOP + CHART_H + 24,
        bars,
        ticks,
        max,
    }
}

fn points_chart(d: &Dashboard, ctx: &PageCtx) -> ChartView {
    let max = d
        .days
        .iter()
        .flat_map(|t| [t.earned, t.used, t.expired])
        .max()
        .unwrap_or(0);
    let slot = 24;
    let mut bars = Vec::new();
    for (i, t) in d.days.iter().enumerate() {
        for (j, (v, class, key)) in [
            (t.earned, "bar-earn", "admin.earned"),
            (t.used, "bar-use", "admin.used"),
            (t.expired, "bar-expire", "admin.expired"),
        ]
        .into_iter()
        .enumerate()
        {
            let h = scale(v, max);
            bars.push(BarView {
                x: 10 + i as i64 * slot + j as i64 * 6,
                y: CHART_TOP + CHART_H - h,
                w: 6,
                h,
                class,
                title: format!("{} {}: {v}", t.day, ctx.t(key)),
            });
        }
    }
    let ticks = [0usize, 10, 20, 29]
        .iter()
        .filter_map(|&i| d.days.get(i).map(|t| (i, t)))
        .map(|(i, t)| TickView {
            x: 19 + i as i64 * slot,
            label: format!("{:02}-{:02}", u8::from(t.day.month()), t.day.day()),
        })
        .collect();
    ChartView {
        width: 20 + 30 * slot,
        height: CHART_TOP + CHART_H + 24,
        bars,
        ticks,
        max,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/dashboard.html")]
pub struct DashboardPage {
    pub ctx: PageCtx,
    pub d: Dashboard,
    pub levels_chart: ChartView,
    pub points_chart: ChartView,
}

pub async fn dashboard(page: StaffPage) -> Result<Response, PageError> {
    let d = page
        .services
        .staff
        .dashboard()
        .await
        .in_lang(page.ctx.lang)?;
    let levels_chart = level_chart(&d.members_per_level);
    let points_chart = points_chart(&d, &page.ctx);
    Ok(DashboardPage {
        ctx: page.ctx,
        d,
        levels_chart,
        points_chart,
    }
    .into_response())
}

// ---------------------------------------------------------------- levels

/// The level form as typed, with a message next to each field that needs one.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LevelForm {
    #[serde(default)]
    pub level_name: String,
    #[serde(default)]
    pub level_order: String,
    #[serde(default)]
    pub min_points: String,
    #[serde(default)]
    pub discount_rate: String,
    #[serde(default)]
    pub point_multiplier: String,
    #[serde(default)]
    pub benefits: String,
    pub is_active: Option<String>,
}

#[derive(Debug, Default)]
pub struct LevelErrors {
    pub level_name: Option<String>,
    pub level_order: Option<String>,
    pub min_points: Option<String>,
    pub discount_rate: Option<String>,
    pub point_multiplier: Option<String>,
    pub benefits: Option<String>,
    pub form: Option<String>,
}

impl LevelForm {
    fn from_level(l: &Level) -> Self {
        Self {
            level_name: l.level_name.clone(),
            level_order: l.level_order.to_string(),
            min_points: l.min_points.to_string(),
            discount_rate: l.discount_rate.to_string(),
            point_multiplier: l.point_multiplier.to_string(),
            benefits: l.benefits.join("\n"),
            is_active: l.is_active.then(|| "on".into()),
        }
    }

    fn checked(&self) -> bool {
        self.is_active.is_some()
    }

    /// Every field's error at once, each its own message in the reader's language.
    fn parse(&self, ctx: &PageCtx) -> Result<LevelInput, Box<LevelErrors>> {
        let mut e = LevelErrors::default();
        let whole = |s: &str, slot: &mut Option<String>| match s.trim().parse::<i64>() {
            Ok(n) if n < 0 => {
                *slot = Some(ctx.t("level.not_negative").into());
                None
            }
            Ok(n) if n > i64::from(i32::MAX) => {
                *slot = Some(ctx.t("level.whole_number").into());
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                *slot = Some(ctx.t("level.whole_number").into());
                None
            }
        };
        let decimal = |s: &str, slot: &mut Option<String>| {
            s.trim()
                .parse::<Decimal>()
                .map_err(|_| *slot = Some(ctx.t("level.decimal").into()))
                .ok()
        };
        let order = whole(&self.level_order, &mut e.level_order);
        let min = whole(&self.min_points, &mut e.min_points);
        let rate = decimal(&self.discount_rate, &mut e.discount_rate);
        let mult = decimal(&self.point_multiplier, &mut e.point_multiplier);
        let benefits = self.benefits.lines().map(str::to_owned).collect();
        // the service judges every field it can, stand-ins where a field did not parse
        let parsed = LevelInput::parse_all(
            &self.level_name,
            order.unwrap_or(0),
            min.unwrap_or(0),
            rate.unwrap_or(Decimal::ONE),
            mult.unwrap_or(Decimal::ONE),
            benefits,
            self.checked(),
        );
        let errors = match parsed {
            Ok(input) if order.is_some() && min.is_some() && rate.is_some() && mult.is_some() => {
                return Ok(input);
            }
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        };
        for err in errors {
            let field_error = level_error(err, ctx);
            for (slot, found) in [
                (&mut e.level_name, field_error.level_name),
                (&mut e.level_order, field_error.level_order),
                (&mut e.min_points, field_error.min_points),
                (&mut e.discount_rate, field_error.discount_rate),
                (&mut e.point_multiplier, field_error.point_multiplier),
                (&mut e.benefits, field_error.benefits),
                (&mut e.form, field_error.form),
            ] {
                if slot.is_none() {
                    *slot = found;
                }
            }
        }
        Err(Box::new(e))
    }
}

/// A service error shown next to the field it is about.
fn level_error(err: Error, ctx: &PageCtx) -> LevelErrors {
    let mut e = LevelErrors::default();
    let msg = localized(&err, ctx.lang);
    match &err {
        Error::Validation {
            field: "level_name",
            ..
        } => e.level_name = Some(msg),
        Error::Validation {
            field: "level_order",
            ..
        } => e.level_order = Some(msg),
        Error::Validation {
            field: "min_points",
            ..
        } => e.min_points = Some(msg),
        Error::Validation {
            field: "discount_rate",
            ..
        } => e.discount_rate = Some(msg),
        Error::Validation {
            field: "point_multiplier",
            ..
        } => e.point_multiplier = Some(msg),
        Error::Validation {
            field: "benefits", ..
        } => e.benefits = Some(msg),
        _ => e.form = Some(msg),
    }
    e
}

/// The create/edit form, as a page part and as the whole answer to an htmx submit.
#[derive(Template, WebTemplate)]
#[template(path = "partials/admin/level_form.html")]
pub struct LevelFormView {
    pub ctx: PageCtx,
    /// None: a new level
    pub id: Option<i32>,
    pub form: LevelForm,
    pub errors: LevelErrors,
}

impl LevelFormView {
    pub fn action(&self) -> String {
        match self.id {
            Some(id) => format!("/admin/levels/{id}"),
            None => "/admin/levels".into(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/levels.html")]
pub struct LevelsPage {
    pub ctx: PageCtx,
    pub levels: Vec<(Level, i64)>,
    pub form: LevelFormView,
    pub notice: Option<String>,
    /// what the last form did
    pub done: Option<String>,
}

async fn levels_page(
    page: StaffPage,
    form: LevelFormView,
    notice: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    levels_page_with(page, form, notice, None, status).await
}

async fn levels_page_with(
    page: StaffPage,
    form: LevelFormView,
    notice: Option<String>,
    done: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let d = page
        .services
        .staff
        .dashboard()
        .await
        .in_lang(page.ctx.lang)?;
    Ok((
        status,
        LevelsPage {
            ctx: page.ctx,
            levels: d.members_per_level,
            form,
            notice,
            done,
        },
    )
        .into_response())
}

pub async fn levels(page: StaffPage, Query(q): Query<DoneQuery>) -> Result<Response, PageError> {
    let done = q.notice(
        &page.ctx,
        &[
            ("saved", "level.done_saved"),
            ("active", "level.done_active"),
        ],
    );
    let form = LevelFormView {
        ctx: page.ctx.clone(),
        id: None,
        form: LevelForm {
            is_active: Some("on".into()),
            ..Default::default()
        },
        errors: LevelErrors::default(),
    };
    levels_page_with(page, form, None, done, StatusCode::OK).await
}

/// Answers a level form: success goes back to the list; errors come back next to their
/// fields (htmx swaps the form in place; without JavaScript the page is shown again).
async fn level_form_result(
    page: StaffPage,
    id: Option<i32>,
    form: LevelForm,
) -> Result<Response, PageError> {
    let input = form.parse(&page.ctx);
    let result = match input {
        Err(errors) => Err(errors),
        Ok(input) => {
            let s = &page.services.levels;
            let done = match id {
                None => s.create(input, Some(page.actor)).await,
                Some(id) => s.update(id, input, Some(page.actor)).await,
            };
            match done {
                Ok(_) => Ok(()),
                Err(e @ Error::Internal(_)) => {
                    return Err(PageError {
                        lang: page.ctx.lang,
                        error: e,
                    });
                }
                Err(e) => Err(Box::new(level_error(e, &page.ctx))),
            }
        }
    };
    match result {
        Ok(()) if page.ctx.htmx => {
            let mut r = StatusCode::OK.into_response();
            r.headers_mut().insert(
                "hx-redirect",
                HeaderValue::from_static("/admin/levels?done=saved"),
            );
            Ok(r)
        }
        Ok(()) => Ok(Redirect::to("/admin/levels?done=saved").into_response()),
        Err(errors) => {
            let view = LevelFormView {
                ctx: page.ctx.clone(),
                id,
                form,
                errors: *errors,
            };
            if page.ctx.htmx {
                // 200 so htmx swaps the form with its messages in place
                Ok(view.into_response())
            } else if let Some(id) = id {
                Ok((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    LevelEditPage {
                        ctx: page.ctx,
                        id,
                        form: view,
                    },
                )
                    .into_response())
            } else {
                levels_page(page, view, None, StatusCode::UNPROCESSABLE_ENTITY).await
            }
        }
    }
}

pub async fn create_level(
    page: StaffPage,
    Form(form): Form<LevelForm>,
) -> Result<Response, PageError> {
    level_form_result(page, None, form).await
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/level_edit.html")]
pub struct LevelEditPage {
    pub ctx: PageCtx,
    pub id: i32,
    pub form: LevelFormView,
}

pub async fn edit_level(page: StaffPage, Path(id): Path<String>) -> Result<Response, PageError> {
    let id: i32 = parse_id(&page.ctx, &id)?;
    let level = page.services.levels.get(id).await.in_lang(page.ctx.lang)?;
    let form = LevelFormView {
        ctx: page.ctx.clone(),
        id: Some(id),
        form: LevelForm::from_level(&level),
        errors: LevelErrors::default(),
    };
    Ok(LevelEditPage {
        ctx: page.ctx,
        id,
        form,
    }
    .into_response())
}

pub async fn update_level(
    page: StaffPage,
    Path(id): Path<String>,
    Form(form): Form<LevelForm>,
) -> Result<Response, PageError> {
    let id: i32 = parse_id(&page.ctx, &id)?;
    level_form_result(page, Some(id), form).await
}

#[derive(Deserialize)]
pub struct ActiveForm {
    active: String,
    #[serde(default)]
    confirm: String,
}

pub async fn set_level_active(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<ActiveForm>,
) -> Result<Response, PageError> {
    let id: i32 = parse_id(&page.ctx, &id)?;
    let active = f.active == "true";
    if !active && f.confirm != "yes" {
        return Ok(ConfirmPage::new(
            page.ctx,
            "level.confirm_deactivate",
            "level.confirm_yes",
            format!("/admin/levels/{id}/active"),
            "/admin/levels".into(),
        )
        .field("active", "false")
        .response());
    }
    match page
        .services
        .levels
        .set_active(id, active, Some(page.actor))
        .await
    {
        Ok(_) => Ok(Redirect::to("/admin/levels?done=active").into_response()),
        Err(e @ (Error::Internal(_) | Error::LevelNotFound { .. })) => Err(PageError {
            lang: page.ctx.lang,
            error: e,
        }),
        Err(e) => {
            let msg = Some(localized(&e, page.ctx.lang));
            let form = LevelFormView {
                ctx: page.ctx.clone(),
                id: None,
                form: LevelForm {
                    is_active: Some("on".into()),
                    ..Default::default()
                },
                errors: LevelErrors::default(),
            };
            levels_page(page, form, msg, StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

/// The recalculation's options, as the preview's form and the apply form send them.
#[derive(Deserialize, Default)]
pub struct RecalcForm {
    /// "on": also move members down
    #[serde(default)]
    down: Option<String>,
    /// "on": also move members whose level staff set by hand
    #[serde(default)]
    manual: Option<String>,
}

impl RecalcForm {
    fn options(&self) -> RecalcOptions {
        RecalcOptions {
            move_down: self.down.is_some(),
            include_manual: self.manual.is_some(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/recalculate.html")]
pub struct RecalculatePage {
    pub ctx: PageCtx,
    pub preview: RecalcPreview,
    pub options: RecalcOptions,
    pub done: Option<usize>,
}

async fn recalculate_page(
    page: StaffPage,
    options: RecalcOptions,
    done: Option<usize>,
) -> Result<Response, PageError> {
    let preview = page
        .services
        .staff
        .recalculation_preview(options)
        .await
        .in_lang(page.ctx.lang)?;
    Ok(RecalculatePage {
        ctx: page.ctx,
        preview,
        options,
        done,
    }
    .into_response())
}

pub async fn recalculate_preview(
    page: StaffPage,
    Query(f): Query<RecalcForm>,
) -> Result<Response, PageError> {
    recalculate_page(page, f.options(), None).await
}

pub async fn recalculate_apply(
    page: StaffPage,
    Form(f): Form<RecalcForm>,
) -> Result<Response, PageError> {
    let options = f.options();
    let done = page
        .services
        .staff
        .recalculate_levels(options, Some(page.actor))
        .await
        .in_lang(page.ctx.lang)?;
    recalculate_page(page, options, Some(done)).await
}

// ---------------------------------------------------------------- members

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    level: String,
    #[serde(default)]
    min_points: String,
    #[serde(default)]
    max_points: String,
    /// first day joined (business time zone)
    #[serde(default)]
    joined_from: String,
    /// last day joined
    #[serde(default)]
    joined_to: String,
    after: Option<String>,
}

impl SearchQuery {
    pub(super) fn filter(&self, ctx: &PageCtx) -> Result<crate::db::admin::MemberFilter, Error> {
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
        Ok(crate::db::admin::MemberFilter {
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

/// A CSV cell: quoted when it holds a separator, a quote or a line break; a leading
/// `= + - @` (a formula to a spreadsheet) is defused with a `'`.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The member list as CSV, with the list's filters, streamed a page at a time (nothing
/// held in memory but the page being written).
pub async fn export_members(
    page: StaffPage,
    Query(q): Query<SearchQuery>,
) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let filter = q.filter(&page.ctx).in_lang(lang)?;
    let levels = page.services.levels.list().await.in_lang(lang)?.to_vec();
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
    let levels = page.services.levels.list().await.in_lang(lang)?.to_vec();
    let after = q
        .after
        .as_deref()
        .and_then(|a| a.parse::<i64>().ok())
        .filter(|a| *a > 0);
    let (found, next, error) = match q.filter(&page.ctx) {
        Ok(f) => {
            let (found, next) = page
                .services
                .staff
                .list_members(&f, after)
                .await
                .in_lang(lang)?;
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
    pub level_history: Vec<crate::db::members::LevelHistoryRow>,
    /// staff notes, newest first
    pub notes: Vec<crate::db::members::MemberNote>,
    pub note_error: Option<String>,
    /// a page of the member's batches, and the link to the older ones
    pub batches: Vec<crate::db::points::BatchRow>,
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

/// `?done=` after a staff form succeeded (post, redirect, get): which message to show.
#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
    /// the member page's batch list from this id down
    batches_before: Option<String>,
}

impl DoneQuery {
    /// The notice for `done`, from the keys a page knows.
    fn notice(&self, ctx: &PageCtx, known: &[(&str, &str)]) -> Option<String> {
        let done = self.done.as_deref()?;
        known
            .iter()
            .find(|(code, _)| *code == done)
            .map(|(_, key)| ctx.t(key).to_string())
    }
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
        .await
        .in_lang(page.ctx.lang)?;
    Ok(HistoryRows {
        ctx: page.ctx.clone(),
        base: format!("/admin/members/{user_id}"),
        items,
        kind: String::new(),
        next_cursor,
    })
}

async fn member_page(
    page: StaffPage,
    user_id: i64,
    cursor: Option<i64>,
    m: Messages,
) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let p = page
        .services
        .members
        .get_member_profile(user_id)
        .await
        .in_lang(lang)?;
    let levels = page.services.levels.active().await.in_lang(lang)?;
    let rows = ledger(&page, user_id, cursor).await?;
    let (coupons, _) = page
        .services
        .rewards
        .member_coupons(user_id, None, 10)
        .await
        .in_lang(lang)?;
    let level_history = page
        .services
        .members
        .level_history(user_id, 20)
        .await
        .in_lang(lang)?;
    let (batches, next_batches) = page
        .services
        .points
        .batch_page(user_id, m.batches_before)
        .await
        .in_lang(lang)?;
    let notes = page.services.members.notes(user_id).await.in_lang(lang)?;
    let older_batches =
        next_batches.map(|n| format!("/admin/members/{user_id}?batches_before={n}#batches"));
    let tier = page
        .services
        .tiers
        .view(user_id, &p.level)
        .await
        .in_lang(lang)?;
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
    let id: i64 = parse_id(&page.ctx, &id)?;
    let (_, cursor) = q.parse().in_lang(page.ctx.lang)?;
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
    let id: i64 = parse_id(&page.ctx, &id)?;
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
        Err(e @ (Error::Internal(_) | Error::MemberNotFound { .. })) => {
            Err(PageError { lang, error: e })
        }
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
    let id: i64 = parse_id(&page.ctx, &id)?;
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
    let id: i64 = parse_id(&page.ctx, &id)?;
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
        (Err(_), _) => Err(Error::validation("level_id", "choose an active level")),
        (_, Err(e)) => Err(e),
    };
    after_member_form(page, id, outcome, MemberForm::Level).await
}

// ---------------------------------------------------------------- audit log and API keys

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/api_keys.html")]
pub struct ApiKeysPage {
    pub ctx: PageCtx,
    pub keys: Vec<ApiKeyRow>,
    pub created: Option<String>,
    pub error: Option<String>,
    pub notice: Option<String>,
}

async fn api_keys_page(
    page: StaffPage,
    created: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    api_keys_page_with(page, created, error, None, status).await
}

async fn api_keys_page_with(
    page: StaffPage,
    created: Option<String>,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let keys = page
        .services
        .staff
        .api_keys()
        .await
        .in_lang(page.ctx.lang)?;
    Ok((
        status,
        ApiKeysPage {
            ctx: page.ctx,
            keys,
            created,
            error,
            notice,
        },
    )
        .into_response())
}

pub async fn api_keys(
    page: StaffPage,
    Query(done): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let notice = done.notice(&page.ctx, &[("revoked", "keys.done_revoked")]);
    api_keys_page_with(page, None, None, notice, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    name: String,
    /// `given` when the form had the scope boxes (a form without them gives every scope)
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    scope_earn: String,
    #[serde(default)]
    scope_use: String,
    #[serde(default)]
    scope_read: String,
    #[serde(default)]
    scope_coupons: String,
}

impl KeyForm {
    fn scopes(&self) -> Vec<accounts::Scope> {
        use accounts::Scope;
        if self.scopes != "given" {
            return Scope::ALL.to_vec();
        }
        [
            (&self.scope_earn, Scope::Earn),
            (&self.scope_use, Scope::Use),
            (&self.scope_read, Scope::Read),
            (&self.scope_coupons, Scope::Coupons),
        ]
        .into_iter()
        .filter(|(v, _)| !v.is_empty())
        .map(|(_, s)| s)
        .collect()
    }
}

pub async fn create_api_key(
    page: StaffPage,
    Form(f): Form<KeyForm>,
) -> Result<Response, PageError> {
    match accounts::create_api_key_scoped(
        &page.services.ctx,
        &f.name,
        &f.scopes(),
        Some(page.actor),
    )
    .await
    {
        Ok(key) => api_keys_page(page, Some(key), None, StatusCode::CREATED).await,
        Err(e @ Error::Validation { .. }) => {
            let msg = localized(&e, page.ctx.lang);
            api_keys_page(page, None, Some(msg), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(PageError {
            lang: page.ctx.lang,
            error: e,
        }),
    }
}

pub async fn revoke_api_key(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<Confirmed>,
) -> Result<Response, PageError> {
    let id: i64 = parse_id(&page.ctx, &id)?;
    if !f.yes() {
        return Ok(ConfirmPage::new(
            page.ctx,
            "keys.confirm_revoke",
            "keys.confirm_yes",
            format!("/admin/api-keys/{id}/revoke"),
            "/admin/api-keys".into(),
        )
        .response());
    }
    page.services
        .staff
        .revoke_api_key(id, Some(page.actor))
        .await
        .in_lang(page.ctx.lang)?;
    Ok(Redirect::to("/admin/api-keys?done=revoked").into_response())
}
