//! "Ways to earn": the program's rate, the member's level multiplier, the campaigns live or
//! coming, and the birthday a member may enter once for the birthday bonus.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::domain::Profile;
use crate::domain::campaigns::{Campaign, CampaignKind, CampaignState};
use crate::error::Error;
use crate::web::error::{PageError, localized};
use crate::web::page::{Form, Query, UserPage};
use crate::web::view::PageCtx;

#[derive(Template, WebTemplate)]
#[template(path = "pages/member/earn.html")]
pub struct EarnPage {
    pub ctx: PageCtx,
    pub p: Profile,
    pub rate: Decimal,
    pub campaigns: Vec<Campaign>,
    pub now: time::OffsetDateTime,
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl EarnPage {
    pub fn is_live(&self, c: &Campaign) -> bool {
        c.state_at(self.now) == CampaignState::Live
    }

    pub fn has_birthday_campaign(&self) -> bool {
        self.campaigns
            .iter()
            .any(|c| c.kind == CampaignKind::Birthday)
    }

    /// What a campaign gives, in a phrase: "双倍积分" / "×2 points", "+50 积分".
    pub fn gives(&self, c: &Campaign) -> String {
        campaign_gives(&self.ctx, c)
    }

    /// Which earns it applies to.
    pub fn applies(&self, c: &Campaign) -> String {
        campaign_applies(&self.ctx, c)
    }
}

pub fn campaign_gives(ctx: &PageCtx, c: &Campaign) -> String {
    match (c.kind, c.multiplier, c.bonus_points) {
        (CampaignKind::Multiplier, Some(m), _) => ctx
            .t("campaign.gives_multiplier")
            .replace("{m}", &m.normalize().to_string()),
        (_, _, Some(b)) => ctx.t("campaign.gives_bonus").replace("{n}", &ctx.n(&b)),
        _ => String::new(),
    }
}

pub fn campaign_applies(ctx: &PageCtx, c: &Campaign) -> String {
    match c.kind {
        CampaignKind::Signup => ctx.t("campaign.kind.signup").to_string(),
        CampaignKind::Birthday => ctx.t("campaign.kind.birthday").to_string(),
        _ => {
            let mut parts = vec![match &c.source_type {
                Some(s) => ctx.t("campaign.on_source").replace("{source}", s),
                None => ctx.t("campaign.on_every_order").to_string(),
            }];
            if let Some(cat) = &c.category {
                parts.push(ctx.t("campaign.in_category").replace("{category}", cat));
            }
            if let Some(min) = &c.min_amount {
                parts.push(
                    ctx.t("campaign.from_amount")
                        .replace("{amount}", &ctx.money(min)),
                );
            }
            parts.join(ctx.t("campaign.joiner").0)
        }
    }
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

async fn page(
    page: UserPage,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let p = page
        .services
        .members
        .get_member_profile(page.user.user_id)
        .await?;
    let campaigns = page.services.campaigns.current().await?;
    Ok((
        status,
        EarnPage {
            rate: page.services.ctx.config.points_per_yuan,
            now: page.services.ctx.clock.now(),
            ctx: page.ctx,
            p,
            campaigns,
            notice,
            error,
        },
    )
        .into_response())
}

pub async fn earn(user: UserPage, Query(q): Query<DoneQuery>) -> Result<Response, PageError> {
    if user.user.is_staff() {
        return Ok(Redirect::to("/admin/campaigns").into_response());
    }
    let notice = (q.done.as_deref() == Some("birthday"))
        .then(|| user.ctx.t("earn.birthday_saved").to_string());
    page(user, notice, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct BirthdayForm {
    #[serde(default)]
    birthday: String,
}

pub async fn set_birthday(
    user: UserPage,
    Form(f): Form<BirthdayForm>,
) -> Result<Response, PageError> {
    if user.user.is_staff() {
        return Ok(Redirect::to("/admin/campaigns").into_response());
    }
    match user
        .services
        .members
        .set_birthday(user.user.user_id, &f.birthday)
        .await
    {
        Ok(()) => Ok(Redirect::to("/earn?done=birthday").into_response()),
        Err(e @ Error::Validation { .. }) => {
            let message = localized(&e, user.ctx.lang);
            page(user, None, Some(message), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}
