//! The staff dashboard: members per level and thirty days of points, as charts.

use askama::Template;
use askama_web::WebTemplate;
use axum::response::{IntoResponse, Response};

use crate::domain::Level;
use crate::service::admin::Dashboard;
use crate::web::error::PageError;
use crate::web::view::PageCtx;

use super::StaffPage;

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
    let d = page.services.staff.dashboard().await?;
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
