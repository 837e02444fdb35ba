//! `verify_ledger`: every invariant of SPEC §3.7, checked over the whole database (the
//! queries are in [`crate::db::ledger`]).

use sqlx::PgPool;

pub use crate::domain::ledger::Violation;
use crate::error::Result;

/// Checks the ledger of every member, or of one; an empty list means every invariant holds.
pub async fn verify_ledger(pool: &PgPool, only: Option<i64>) -> Result<Vec<Violation>> {
    let mut conn = pool.acquire().await?;
    Ok(crate::db::ledger::violations(&mut conn, only).await?)
}
