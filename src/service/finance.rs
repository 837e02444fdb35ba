//! Finance for staff (issue 13 §5): the points liability, the months of the ledger with
//! their breakage, and the ledger itself as an export.

use time::{Date, OffsetDateTime};

use super::Ctx;
use crate::db::finance::{self as db, ExpiryMonth, LedgerLine, LevelLiability};
use crate::error::{Error, Result};

pub use crate::db::finance::MonthFlow;

/// Months of the ledger the report covers (this one and the eleven before).
pub const REPORT_MONTHS: i64 = 12;

#[derive(Debug, Clone)]
pub struct FinanceReport {
    /// live points by the month they expire
    pub by_expiry: Vec<ExpiryMonth>,
    pub by_level: Vec<LevelLiability>,
    pub months: Vec<MonthFlow>,
    /// all live points (what the program owes) and the pending ones
    pub available: i64,
    pub pending: i64,
}

impl MonthFlow {
    /// Of the points issued this month, the share expired so far, in tenths of a percent
    /// (None before anything was issued).
    pub fn breakage_permille(&self) -> Option<i64> {
        let issued = self.issued.max(0);
        (issued > 0).then(|| self.cohort_expired * 1000 / issued)
    }
}

#[derive(Clone)]
pub struct FinanceService {
    ctx: Ctx,
}

impl FinanceService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    pub async fn report(&self) -> Result<FinanceReport> {
        let tz = self.ctx.config.member_timezone.as_str();
        let from = self.first_report_day();
        let from = self.start_of(from).await?;
        let mut conn = self.ctx.pool.acquire().await?;
        let by_expiry = db::liability_by_expiry(&mut conn, tz).await?;
        let by_level = db::liability_by_level(&mut conn).await?;
        let months = db::monthly_flows(&mut conn, from, tz).await?;
        Ok(FinanceReport {
            available: by_level.iter().map(|l| l.available).sum(),
            pending: by_level.iter().map(|l| l.pending).sum(),
            by_expiry,
            by_level,
            months,
        })
    }

    /// The first day of the oldest month of the report, in the business time zone.
    fn first_report_day(&self) -> Date {
        let today = self
            .ctx
            .clock
            .now()
            .to_offset(self.ctx.display_offset)
            .date();
        let mut year = today.year();
        let mut month = u8::from(today.month()) as i64 - (REPORT_MONTHS - 1);
        while month < 1 {
            month += 12;
            year -= 1;
        }
        let month = time::Month::try_from(month as u8).unwrap_or(time::Month::January);
        Date::from_calendar_date(year, month, 1).unwrap_or(today)
    }

    /// The instant a business day starts.
    pub async fn start_of(&self, day: Date) -> Result<OffsetDateTime> {
        let mut conn = self.ctx.pool.acquire().await?;
        let before = day.previous_day().unwrap_or(day);
        Ok(
            crate::db::tiers::end_of_day(&mut conn, before, &self.ctx.config.member_timezone)
                .await?,
        )
    }

    /// Up to `limit` ledger lines after `after` within [from, to) (business days, `to`
    /// included), for the export.
    pub async fn ledger_page(
        &self,
        after: i64,
        range: (Option<OffsetDateTime>, Option<OffsetDateTime>),
        limit: i64,
    ) -> Result<Vec<LedgerLine>> {
        let mut conn = self.ctx.pool.acquire().await?;
        Ok(db::ledger_page(&mut conn, after, range.0, range.1, limit.clamp(1, 10_000)).await?)
    }

    /// The export's range from `YYYY-MM-DD` days (either may be empty): the start of the
    /// first, the end of the last.
    pub async fn ledger_range(
        &self,
        from: &str,
        to: &str,
    ) -> Result<(Option<OffsetDateTime>, Option<OffsetDateTime>)> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let parse = |field: &'static str, raw: &str| -> Result<Option<Date>> {
            match raw.trim() {
                "" => Ok(None),
                s => Date::parse(s, format)
                    .map(Some)
                    .map_err(|_| Error::validation(field, "a date such as 2026-01-31, or empty")),
            }
        };
        let (from, to) = (parse("from", from)?, parse("to", to)?);
        if matches!((from, to), (Some(f), Some(t)) if f > t) {
            return Err(Error::validation(
                "to",
                "the last day comes before the first",
            ));
        }
        let start = match from {
            Some(d) => Some(self.start_of(d).await?),
            None => None,
        };
        let end = match to {
            Some(d) => {
                let mut conn = self.ctx.pool.acquire().await?;
                Some(
                    crate::db::tiers::end_of_day(&mut conn, d, &self.ctx.config.member_timezone)
                        .await?,
                )
            }
            None => None,
        };
        Ok((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(issued: i64, expired: i64) -> MonthFlow {
        MonthFlow {
            month: "2026-01".into(),
            issued,
            redeemed: 0,
            expired: 0,
            reversed: 0,
            adjusted: 0,
            cohort_expired: expired,
            cohort_outstanding: 0,
        }
    }

    #[test]
    fn breakage_is_the_expired_share_of_what_was_issued() {
        assert_eq!(month(1000, 125).breakage_permille(), Some(125));
        assert_eq!(month(3, 1).breakage_permille(), Some(333));
        assert_eq!(month(0, 0).breakage_permille(), None);
    }
}
