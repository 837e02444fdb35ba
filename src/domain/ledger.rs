//! What `verify-ledger` reports.

use serde::Serialize;

/// One broken invariant of the ledger: the member (none for a catalogue-wide one), the
/// invariant in words, and the figures that break it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub user_id: Option<i64>,
    pub invariant: &'static str,
    pub details: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.user_id {
            Some(u) => write!(f, "member {u}: {}: {}", self.invariant, self.details),
            None => write!(f, "{}: {}", self.invariant, self.details),
        }
    }
}
