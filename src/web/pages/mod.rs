pub mod account;
pub mod admin;
pub mod auth;
pub mod confirm;
pub mod earn;
pub mod member;
pub mod rewards;

use axum::http::StatusCode;
use axum::response::Response;

use super::error::error_page;
use super::page::Page;

pub async fn not_found(page: Page) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        page.ctx.lang,
        &page.ctx.t("error.not_found"),
        None,
    )
}
