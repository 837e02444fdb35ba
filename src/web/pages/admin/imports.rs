//! Importing members from the staff pages: a CSV file uploaded (streamed to a temporary
//! file, never held in memory), imported in the background by the same code as
//! `member-portal import-members`, and followed on the import's own page while it runs.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Multipart, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

use super::{StaffPage, parse_id};
use crate::error::Error;
use crate::service::import::{self, ImportView, Source};
use crate::web::error::{PageError, localized};
use crate::web::page::go_to;
use crate::web::view::PageCtx;

/// Imports listed on the page.
const LISTED: i64 = 20;

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/imports.html")]
pub struct ImportsPage {
    pub ctx: PageCtx,
    pub imports: Vec<ImportView>,
    pub columns: [&'static str; 7],
    pub max_mb: i64,
    pub error: Option<String>,
}

async fn list(
    page: StaffPage,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    // an error keeps its status for htmx too: the layout tells htmx to swap 4xx answers
    let imports = import::recent(&page.services.ctx, LISTED).await?;
    Ok((
        status,
        ImportsPage {
            max_mb: (page.services.ctx.config.import_max_bytes / (1024 * 1024)) as i64,
            columns: import::COLUMNS,
            ctx: page.ctx,
            imports,
            error,
        },
    )
        .into_response())
}

impl ImportsPage {
    pub fn status(&self, i: &ImportView) -> &'static str {
        let status = if i.interrupted { "failed" } else { &i.status };
        self.ctx.lang.t(&format!("import.status.{status}"))
    }
}

pub async fn imports(page: StaffPage) -> Result<Response, PageError> {
    list(page, None, StatusCode::OK).await
}

/// An uploaded file on disk, removed when the import is done with it (or is dropped).
struct Upload(std::path::PathBuf);

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What is wrong with an upload, for the form.
enum Refused {
    TooLarge,
    NoFile,
    Broken(String),
}

/// Reads the form: the file streamed to disk (at most `max` bytes), and the mode.
async fn receive(mut form: Multipart, max: u64) -> Result<(Upload, String, bool), Refused> {
    let dir = std::env::temp_dir().join("member-portal-imports");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Refused::Broken(e.to_string()))?;
    let upload = Upload(dir.join(format!("{}.csv", crate::random_uuid().simple())));
    let (mut name, mut skip, mut size) = (String::new(), false, 0u64);
    let broken = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Refused::TooLarge
        } else {
            Refused::Broken(e.body_text())
        }
    };
    while let Some(mut field) = form.next_field().await.map_err(broken)? {
        match field.name() {
            Some("skip_bad_rows") => skip = field.text().await.map_err(broken)? == "yes",
            Some("file") => {
                name = field
                    .file_name()
                    .map(|n| n.chars().filter(|c| !c.is_control()).take(200).collect())
                    .unwrap_or_default();
                let mut out = tokio::fs::File::create(&upload.0)
                    .await
                    .map_err(|e| Refused::Broken(e.to_string()))?;
                while let Some(chunk) = field.chunk().await.map_err(broken)? {
                    size += chunk.len() as u64;
                    if size > max {
                        return Err(Refused::TooLarge);
                    }
                    out.write_all(&chunk)
                        .await
                        .map_err(|e| Refused::Broken(e.to_string()))?;
                }
                out.flush()
                    .await
                    .map_err(|e| Refused::Broken(e.to_string()))?;
            }
            _ => {}
        }
    }
    if size == 0 {
        return Err(Refused::NoFile);
    }
    if name.trim().is_empty() {
        name = "members.csv".into();
    }
    Ok((upload, name, skip))
}

pub async fn upload(
    page: StaffPage,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, PageError> {
    let lang = page.ctx.lang;
    let max = page.services.ctx.config.import_max_bytes;
    let received = match form {
        Ok(form) => receive(form, max).await,
        Err(e) => Err(Refused::Broken(e.body_text())),
    };
    let (file, name, skip) = match received {
        Ok(r) => r,
        Err(refused) => {
            let (status, message) = match refused {
                Refused::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    page.ctx
                        .t("import.too_large")
                        .replace("{n}", &(max / (1024 * 1024)).to_string()),
                ),
                Refused::NoFile => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    page.ctx.t("import.no_file").to_string(),
                ),
                Refused::Broken(why) => (
                    StatusCode::BAD_REQUEST,
                    format!("{} ({why})", page.ctx.t("import.broken")),
                ),
            };
            return list(page, Some(message), status).await;
        }
    };
    let (started, id) = tokio::sync::oneshot::channel();
    let ctx = page.services.ctx.clone();
    let actor = page.actor;
    // runs to its end whatever happens to this request; progress on the import's page
    let task = tokio::spawn(async move {
        let source = Source {
            path: &file.0,
            file_name: &name,
            actor: Some(actor),
        };
        let result = import::import_members(&ctx, source, skip, Some(started)).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "member import did not finish");
        }
        drop(file);
        result
    });
    let id = match id.await {
        Ok(id) => id,
        // it ended before its row was written: say why
        Err(_) => {
            let e = match task.await {
                Ok(Err(e)) => e,
                _ => Error::Internal(anyhow::anyhow!("the import task stopped")),
            };
            if e.code() == "VALIDATION_ERROR" {
                let m = localized(&e, lang);
                return list(page, Some(m), StatusCode::UNPROCESSABLE_ENTITY).await;
            }
            return Err(e.into());
        }
    };
    Ok(go_to(page.ctx.htmx, &format!("/admin/imports/{id}")))
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/import.html")]
pub struct ImportPage {
    pub ctx: PageCtx,
    pub i: ImportView,
}

impl ImportPage {
    /// What the import is doing or how it ended, with {n} {bad} {made} to fill.
    pub fn says(&self) -> &'static str {
        self.ctx.lang.t(&format!("import.says.{}", self.i.status))
    }

    pub fn mode(&self) -> &'static str {
        self.ctx.lang.t(&format!("import.mode.{}", self.i.mode))
    }

    /// 0–100 of the file read (the checks and the members' making follow).
    pub fn percent(&self) -> i64 {
        match self.i.file_bytes {
            _ if self.i.status != "reading" => 100,
            Some(total) if total > 0 => (self.i.bytes_read * 100 / total).clamp(0, 99),
            _ => 0,
        }
    }
}

pub async fn import(page: StaffPage, Path(id): Path<String>) -> Result<Response, PageError> {
    let id: i64 = parse_id(&id)?;
    let i = import::get(&page.services.ctx, id).await?;
    Ok(ImportPage { ctx: page.ctx, i }.into_response())
}
