//! A confirmation step for actions that are large or hard to undo: the same form
//! again with `confirm=yes`, or a way back. Works without JavaScript.

use askama::Template;
use askama_web::WebTemplate;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::web::view::PageCtx;

/// The `confirm` field of a form that may need confirming.
#[derive(Deserialize, Default)]
pub struct Confirmed {
    #[serde(default)]
    confirm: String,
}

impl Confirmed {
    pub fn yes(&self) -> bool {
        self.confirm == "yes"
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/confirm.html")]
pub struct ConfirmPage {
    pub ctx: PageCtx,
    pub message: String,
    /// what will happen, as label and value
    pub details: Vec<(String, String)>,
    /// where the confirmed form goes, with its fields
    pub action: String,
    pub fields: Vec<(String, String)>,
    pub yes: String,
    pub back: String,
}

impl ConfirmPage {
    pub fn new(
        ctx: PageCtx,
        message_key: &str,
        yes_key: &str,
        action: String,
        back: String,
    ) -> Self {
        Self {
            message: ctx.t(message_key).to_string(),
            yes: ctx.t(yes_key).to_string(),
            ctx,
            details: Vec::new(),
            action,
            fields: Vec::new(),
            back,
        }
    }

    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.fields.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn detail(mut self, label: &str, value: String) -> Self {
        self.details.push((label.to_owned(), value));
        self
    }
}

impl ConfirmPage {
    pub fn response(self) -> Response {
        self.into_response()
    }
}
