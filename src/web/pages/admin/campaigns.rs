//! Staff pages for campaigns: the list (scheduled, live, ended), a new campaign, ending
//! one, and a preview of what an order would earn with the campaigns as they are.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rust_decimal::Decimal;
use serde::Deserialize;
use time::{Date, Time};

use super::{DoneQuery, StaffPage, parse_id};
use crate::domain::Level;
use crate::domain::campaigns::{
    Campaign, CampaignFields, CampaignInput, CampaignKind, CampaignState, EarnPreview, preview,
};
use crate::error::Error;
use crate::web::error::{PageError, localized};
use crate::web::page::{Form, Query};
use crate::web::pages::confirm::{ConfirmPage, Confirmed};
use crate::web::pages::earn::{campaign_applies, campaign_gives};
use crate::web::view::PageCtx;

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct CampaignForm {
    pub name: String,
    pub kind: String,
    pub source_type: String,
    pub category: String,
    pub multiplier: String,
    pub bonus_points: String,
    pub min_amount: String,
    pub starts_on: String,
    pub ends_on: String,
}

impl CampaignForm {
    fn parse(&self, ctx: &PageCtx) -> Result<CampaignInput, Error> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let day = |field: &'static str, s: &str| -> Result<Option<Date>, Error> {
            match s.trim() {
                "" => Ok(None),
                s => Date::parse(s, format)
                    .map(Some)
                    .map_err(|_| Error::validation(field, "a date such as 2026-12-31")),
            }
        };
        let at = |d: Date| d.with_time(Time::MIDNIGHT).assume_offset(ctx.offset);
        let starts = day("starts_on", &self.starts_on)?.map(at);
        let ends = day("ends_on", &self.ends_on)?
            .and_then(Date::next_day)
            .map(at);
        CampaignInput::parse(&CampaignFields {
            name: &self.name,
            kind: &self.kind,
            source_type: &self.source_type,
            category: &self.category,
            multiplier: &self.multiplier,
            bonus_points: &self.bonus_points,
            min_amount: &self.min_amount,
            starts_at: starts,
            ends_at: ends,
        })
        .map_err(|e| match e {
            Error::Validation {
                field: "starts_at",
                message,
                reason,
            } => Error::Validation {
                field: "starts_on",
                message,
                reason,
            },
            Error::Validation {
                field: "ends_at", ..
            } => Error::invalid("ends_on", crate::error::Invalid::LastDayBeforeFirst),
            e => e,
        })
    }
}

/// The preview's question: an order of this amount (or these base points) for a member
/// of this level, from this source and category.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct PreviewQuery {
    pub level_id: String,
    pub amount: String,
    pub base_points: String,
    pub source_type: String,
    pub category: String,
    pub done: Option<String>,
}

pub struct PreviewView {
    pub level: String,
    pub amount: Option<Decimal>,
    pub result: EarnPreview,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/campaigns.html")]
pub struct CampaignsPage {
    pub ctx: PageCtx,
    pub campaigns: Vec<Campaign>,
    pub now: time::OffsetDateTime,
    pub form: CampaignForm,
    pub error: Option<(String, String)>,
    pub notice: Option<String>,
    pub levels: Vec<Level>,
    pub q: PreviewQuery,
    pub preview: Option<PreviewView>,
    pub preview_error: Option<String>,
}

impl CampaignsPage {
    pub fn state(&self, c: &Campaign) -> crate::web::i18n::Text {
        self.ctx
            .t(&format!("campaign.state.{}", c.state_at(self.now).as_str()))
    }

    pub fn endable(&self, c: &Campaign) -> bool {
        c.state_at(self.now) != CampaignState::Ended
    }

    pub fn gives(&self, c: &Campaign) -> String {
        campaign_gives(&self.ctx, c)
    }

    pub fn applies(&self, c: &Campaign) -> String {
        campaign_applies(&self.ctx, c)
    }

    pub fn error_for(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    pub fn kinds(&self) -> [CampaignKind; 4] {
        CampaignKind::ALL
    }

    pub fn kind_label(&self, k: &CampaignKind) -> crate::web::i18n::Text {
        self.ctx.t(&format!("campaign.kind.{}", k.as_str()))
    }

    pub fn is_kind(&self, k: &CampaignKind) -> bool {
        self.form.kind == k.as_str()
    }

    pub fn is_level(&self, id: &i32) -> bool {
        self.q.level_id == id.to_string()
    }

    /// "300 × 1.2 = 360 积分"
    pub fn preview_sum(&self, p: &PreviewView) -> String {
        self.ctx
            .t("campaign.preview_result")
            .replace("{base}", &self.ctx.n(&p.result.base_points))
            .replace("{points}", &self.ctx.n(&p.result.points))
            .replace("{total}", &self.ctx.n(&p.result.total()))
            .replace("{level}", &p.level)
    }
}

async fn render(
    page: StaffPage,
    form: CampaignForm,
    error: Option<Error>,
    q: PreviewQuery,
) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let campaigns = page.services.campaigns.all().await?;
    let levels = page.services.levels.active().await?;
    let now = page.services.ctx.clock.now();
    let (preview_view, preview_error) =
        if q.level_id.is_empty() && q.amount.is_empty() && q.base_points.is_empty() {
            (None, None)
        } else {
            match run_preview(&page, &q, &campaigns, &levels, now) {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(localized(&e, lang))),
            }
        };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let notice = q
        .done
        .as_ref()
        .map(|_| DoneQuery {
            done: q.done.clone(),
            batches_before: None,
        })
        .and_then(|d| {
            d.notice(
                &page.ctx,
                &[
                    ("created", "campaign.done_created"),
                    ("ended", "campaign.done_ended"),
                ],
            )
        });
    let error = error.map(|e| {
        let field = match &e {
            Error::Validation { field, .. } => (*field).to_owned(),
            _ => "form".to_owned(),
        };
        (field, localized(&e, lang))
    });
    Ok((
        status,
        CampaignsPage {
            ctx: page.ctx,
            campaigns,
            now,
            form,
            error,
            notice,
            levels,
            q,
            preview: preview_view,
            preview_error,
        },
    )
        .into_response())
}

fn run_preview(
    page: &StaffPage,
    q: &PreviewQuery,
    campaigns: &[Campaign],
    levels: &[Level],
    now: time::OffsetDateTime,
) -> Result<PreviewView, Error> {
    let level = levels
        .iter()
        .find(|l| l.id.to_string() == q.level_id)
        .ok_or_else(|| Error::validation("level_id", "choose a level"))?;
    let amount = match q.amount.trim() {
        "" => None,
        a => Some(
            a.parse::<Decimal>()
                .ok()
                .and_then(|d| crate::domain::Money::parse("amount", d).ok())
                .ok_or_else(|| Error::validation("amount", "an amount such as 300 or 299.90"))?
                .get(),
        ),
    };
    let base = match q.base_points.trim() {
        "" => None,
        b => Some(
            b.parse::<i64>()
                .ok()
                .filter(|n| (1..=1_000_000_000).contains(n))
                .ok_or_else(|| {
                    Error::validation("base_points", "base points are a whole number from 1")
                })?,
        ),
    };
    if amount.is_none() && base.is_none() {
        return Err(Error::validation(
            "amount",
            "enter an order amount or base points",
        ));
    }
    let source = match q.source_type.trim() {
        "" => "order_complete",
        s => s,
    };
    let category = Some(q.category.trim()).filter(|c| !c.is_empty());
    let cfg = &page.services.ctx.config;
    let result = preview(
        campaigns,
        level.point_multiplier,
        base,
        amount,
        cfg.points_per_yuan,
        source,
        category,
        now,
        cfg.max_points_per_transaction,
    );
    Ok(PreviewView {
        level: level.level_name.clone(),
        amount,
        result,
    })
}

pub async fn campaigns(
    page: StaffPage,
    Query(q): Query<PreviewQuery>,
) -> Result<Response, PageError> {
    let form = CampaignForm {
        kind: "multiplier".into(),
        multiplier: "2".into(),
        ..Default::default()
    };
    render(page, form, None, q).await
}

pub async fn create(page: StaffPage, Form(f): Form<CampaignForm>) -> Result<Response, PageError> {
    let input = match f.parse(&page.ctx) {
        Ok(i) => i,
        Err(e) => return render(page, f, Some(e), PreviewQuery::default()).await,
    };
    page.services
        .campaigns
        .create(Some(page.actor), input)
        .await?;
    Ok(Redirect::to("/admin/campaigns?done=created").into_response())
}

pub async fn end(
    page: StaffPage,
    Path(id): Path<String>,
    Form(f): Form<Confirmed>,
) -> Result<Response, PageError> {
    let id: i32 = parse_id(&id)?;
    if !f.yes() {
        return Ok(ConfirmPage::new(
            page.ctx,
            "campaign.confirm_end",
            "campaign.end",
            format!("/admin/campaigns/{id}/end"),
            "/admin/campaigns".into(),
        )
        .response());
    }
    page.services.campaigns.end(Some(page.actor), id).await?;
    Ok(Redirect::to("/admin/campaigns?done=ended").into_response())
}
