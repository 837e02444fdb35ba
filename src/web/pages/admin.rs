//! Staff pages (role `staff`; a member gets 403), one file per resource under `admin/`.
//! Here: the staff extractor (which checks the account's role for every staff route), and
//! what the pages share (`?done=` notices, CSV cells, ids in paths).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Deserialize;

use crate::error::Error;
use crate::service::Services;
use crate::web::error::PageError;
use crate::web::page::{LoginRequired, UserPage};
use crate::web::view::PageCtx;

mod api_keys;
mod audit;
mod campaigns;
mod dashboard;
mod finance;
mod grants;
mod imports;
mod levels;
mod members;
mod rewards;
mod staff;

pub use api_keys::*;
pub use audit::audit;
pub use campaigns::{campaigns, create as create_campaign, end as end_campaign};
pub use dashboard::*;
pub use finance::{finance, finance_csv, ledger_csv};
pub use grants::{create as create_grant, grant, grants};
pub use imports::{import, imports, upload as upload_import};
pub use levels::*;
pub use members::*;
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

pub(crate) fn parse_id<T: std::str::FromStr>(raw: &str) -> Result<T, PageError> {
    raw.parse()
        .map_err(|_| PageError(Error::NotFound { what: "page" }))
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
