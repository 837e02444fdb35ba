//! Finance for staff: what the program owes (by expiry month and level), the last twelve
//! months of the ledger with their breakage, as charts, tables and CSV; and the ledger
//! itself as a streamed CSV export.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{StaffPage, csv_cell};
use crate::service::finance::FinanceReport;
use crate::web::chart::{self, Bar, ChartView};
use crate::web::error::PageError;
use crate::web::page::Query;
use crate::web::view::PageCtx;

#[derive(Template, WebTemplate)]
#[template(path = "pages/admin/finance.html")]
pub struct FinancePage {
    pub ctx: PageCtx,
    pub r: FinanceReport,
    pub expiry_chart: ChartView,
    pub months_chart: ChartView,
    /// a bad ledger export range, with what the staff typed
    pub ledger_error: Option<String>,
    pub from: String,
    pub to: String,
}

impl FinancePage {
    /// `12.5%`, or a dash for a month that issued nothing.
    pub fn breakage(&self, m: &crate::service::finance::MonthFlow) -> String {
        match m.breakage_permille() {
            Some(p) => format!("{}.{}%", p / 10, p % 10),
            None => "—".to_owned(),
        }
    }
}

fn charts(ctx: &PageCtx, r: &FinanceReport) -> (ChartView, ChartView) {
    let expiry: Vec<(String, Vec<Bar>)> = r
        .by_expiry
        .iter()
        .map(|m| {
            (
                m.month.clone(),
                vec![Bar {
                    value: m.points,
                    class: "bar-level",
                    title: format!("{}: {}", m.month, ctx.n(&m.points)),
                }],
            )
        })
        .collect();
    let every = expiry.len().div_ceil(6).max(1);
    let months: Vec<(String, Vec<Bar>)> = r
        .months
        .iter()
        .map(|m| {
            let bar = |value: i64, class, key: &str| Bar {
                value,
                class,
                title: format!("{} {}: {}", m.month, ctx.t(key), ctx.n(&value)),
            };
            (
                m.month.clone(),
                vec![
                    bar(m.issued, "bar-earn", "finance.issued"),
                    bar(m.redeemed, "bar-use", "finance.redeemed"),
                    bar(m.expired, "bar-expire", "finance.expired"),
                ],
            )
        })
        .collect();
    let every_month = months.len().div_ceil(6).max(1);
    (
        chart::grouped(&expiry, every),
        chart::grouped(&months, every_month),
    )
}

#[derive(Deserialize, Default)]
pub struct LedgerQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

pub async fn finance(page: StaffPage) -> Result<Response, PageError> {
    render(page, None, String::new(), String::new()).await
}

async fn render(
    page: StaffPage,
    ledger_error: Option<String>,
    from: String,
    to: String,
) -> Result<Response, PageError> {
    let r = page.services.finance.report().await?;
    let (expiry_chart, months_chart) = charts(&page.ctx, &r);
    let status = if ledger_error.is_some() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    Ok((
        status,
        FinancePage {
            ctx: page.ctx,
            r,
            expiry_chart,
            months_chart,
            ledger_error,
            from,
            to,
        },
    )
        .into_response())
}

fn csv(name: &str, body: impl Into<axum::body::Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body.into(),
    )
        .into_response()
}

fn line(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
    cells.join(",") + "\n"
}

#[derive(Deserialize, Default)]
pub struct TableQuery {
    #[serde(default)]
    table: String,
}

/// One of the report's tables as CSV: `months` (default), `expiry` or `levels`.
pub async fn finance_csv(
    page: StaffPage,
    Query(q): Query<TableQuery>,
) -> Result<Response, PageError> {
    let r = page.services.finance.report().await?;
    let mut out = String::new();
    let name = match q.table.as_str() {
        "expiry" => {
            out.push_str("expiry_month,points\n");
            for m in &r.by_expiry {
                out.push_str(&line(&[m.month.clone(), m.points.to_string()]));
            }
            "liability-by-expiry.csv"
        }
        "levels" => {
            out.push_str("level,members,available_points,pending_points\n");
            for l in &r.by_level {
                out.push_str(&line(&[
                    l.level_name.clone(),
                    l.members.to_string(),
                    l.available.to_string(),
                    l.pending.to_string(),
                ]));
            }
            "liability-by-level.csv"
        }
        _ => {
            out.push_str("month,issued,redeemed,expired,reversed,adjusted,issued_then_expired,issued_still_owed,breakage_percent\n");
            for m in &r.months {
                let breakage = m
                    .breakage_permille()
                    .map(|p| format!("{}.{}", p / 10, p % 10))
                    .unwrap_or_default();
                out.push_str(&line(&[
                    m.month.clone(),
                    m.issued.to_string(),
                    m.redeemed.to_string(),
                    m.expired.to_string(),
                    m.reversed.to_string(),
                    m.adjusted.to_string(),
                    m.cohort_expired.to_string(),
                    m.cohort_outstanding.to_string(),
                    breakage,
                ]));
            }
            "points-by-month.csv"
        }
    };
    Ok(csv(name, out))
}

/// The ledger (every points transaction, with the member's code) as CSV, oldest first,
/// between two business days (either open), streamed 5000 lines at a time.
pub async fn ledger_csv(
    page: StaffPage,
    Query(q): Query<LedgerQuery>,
) -> Result<Response, PageError> {
    let range = match page.services.finance.ledger_range(&q.from, &q.to).await {
        Ok(r) => r,
        Err(e) if e.code() == "VALIDATION_ERROR" => {
            let message = crate::web::error::localized(&e, page.ctx.lang);
            return render(page, Some(message), q.from, q.to).await;
        }
        Err(e) => return Err(e.into()),
    };
    let offset = page.ctx.offset;
    let services = page.services.clone();
    let header = "id,created_at,member_code,user_id,type,status,points_change,balance_after,amount,reference_type,reference_id,refund_id,unrecovered,campaign_id,actor_user_id,description\n";
    let stream = futures_util::stream::unfold(Some((0i64, true)), move |state| {
        let services = services.clone();
        async move {
            let (after, first) = state?;
            let mut out = String::new();
            if first {
                out.push_str(header);
            }
            let rows = match services.finance.ledger_page(after, range, 5000).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "ledger export stopped");
                    return Some((Err(std::io::Error::other("export failed")), None));
                }
            };
            let next = (rows.len() == 5000)
                .then(|| rows.last().map(|r| (r.id, false)))
                .flatten();
            for t in rows {
                let at = t
                    .created_at
                    .to_offset(offset)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                out.push_str(&line(&[
                    t.id.to_string(),
                    at,
                    t.member_code,
                    t.user_id.to_string(),
                    t.transaction_type,
                    t.status,
                    t.points_change.to_string(),
                    t.balance_after.to_string(),
                    t.amount.map(|a| a.to_string()).unwrap_or_default(),
                    t.reference_type.unwrap_or_default(),
                    t.reference_id.unwrap_or_default(),
                    t.sub_reference.unwrap_or_default(),
                    t.unrecovered.to_string(),
                    t.campaign_id.map(|c| c.to_string()).unwrap_or_default(),
                    t.actor_user_id.map(|a| a.to_string()).unwrap_or_default(),
                    t.description,
                ]));
            }
            Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(out)), next))
        }
    });
    Ok(csv("ledger.csv", axum::body::Body::from_stream(stream)))
}
