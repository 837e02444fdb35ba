//! Levels for staff: the list, the create and edit forms with every field's error at
//! once, (de)activation, and recalculating members' levels with a preview.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::domain::Level;
use crate::error::Error;
use crate::service::admin::RecalcOptions;
use crate::service::admin::RecalcPreview;
use crate::service::levels::LevelInput;
use crate::web::error::{PageError, localized};
use crate::web::page::{Form, Query, go_to};
use crate::web::view::PageCtx;

use super::{DoneQuery, StaffPage, parse_id};
use crate::web::pages::confirm::ConfirmPage;

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
    let d = page.services.staff.dashboard().await?;
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
                    return Err(PageError(e));
                }
                Err(e) => Err(Box::new(level_error(e, &page.ctx))),
            }
        }
    };
    match result {
        Ok(()) => Ok(go_to(page.ctx.htmx, "/admin/levels?done=saved")),
        Err(errors) => {
            let view = LevelFormView {
                ctx: page.ctx.clone(),
                id,
                form,
                errors: *errors,
            };
            if page.ctx.htmx {
                // htmx swaps the form with its messages in place (the layout has it swap 4xx)
                Ok((StatusCode::UNPROCESSABLE_ENTITY, view).into_response())
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
    let id: i32 = parse_id(&id)?;
    let level = page.services.levels.get(id).await?;
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
    let id: i32 = parse_id(&id)?;
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
    let id: i32 = parse_id(&id)?;
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
        Err(e @ (Error::Internal(_) | Error::LevelNotFound { .. })) => Err(PageError(e)),
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
    let preview = page.services.staff.recalculation_preview(options).await?;
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
        .await?;
    recalculate_page(page, options, Some(done)).await
}
