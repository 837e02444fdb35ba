//! The domain error: every failure a caller can act on has a code of SPEC §4.2; anything
//! else is `Internal`, logged once and shown to nobody.

use serde_json::{Value, json};

use crate::domain::rewards::{CouponStatus, RewardRefusal};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Validation {
        field: &'static str,
        message: String,
        /// the reason by name, where it has one (its message in every language)
        reason: Option<Invalid>,
    },
    #[error("authentication required")]
    Unauthorized,
    #[error("you do not have access to this")]
    Forbidden,
    #[error("this API key may not {scope}: give the integration a key with the `{scope}` scope")]
    KeyScope { scope: &'static str },
    #[error("member {user_id} not found")]
    MemberNotFound { user_id: i64 },
    #[error("level {level_id} not found")]
    LevelNotFound { level_id: i32 },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("not enough points: {required} required, {available} available")]
    InsufficientPoints { required: i64, available: i64 },
    #[error("a single transaction may credit at most {max} points; this one would credit {actual}")]
    PointsPerTransactionExceeded { max: i64, actual: i64 },
    #[error(
        "the daily limit is {limit} points; {earned_today} already earned today, this would add {requested}"
    )]
    DailyPointsLimitExceeded {
        limit: i64,
        earned_today: i64,
        requested: i64,
    },
    #[error("{message}")]
    IdempotencyConflict { message: String },
    #[error("another points operation for this member is in progress; retry shortly")]
    ConcurrentOperation,
    #[error("level {level_id} still has {members} members; move them before deactivating it")]
    LevelInUse { level_id: i32, members: i64 },
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("reward {reward_id} not found")]
    RewardNotFound { reward_id: i32 },
    #[error("{reason}")]
    RewardRefused { reason: RewardRefusal },
    #[error("no coupon has this code")]
    CouponNotFound,
    /// The coupon cannot do what was asked in its state (used on another order,
    /// cancelled, expired, or not used on this order).
    #[error("{message}")]
    CouponUnusable {
        status: CouponStatus,
        message: String,
    },
    /// PostgreSQL cannot be reached (restarting, down, or no connection free in time).
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
            reason: None,
        }
    }

    /// A validation error for a reason known by name.
    pub fn invalid(field: &'static str, reason: Invalid) -> Self {
        Self::Validation {
            field,
            message: reason.message().to_owned(),
            reason: Some(reason),
        }
    }

    /// The stable code of SPEC §4.2.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "VALIDATION_ERROR",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden | Self::KeyScope { .. } => "FORBIDDEN",
            Self::MemberNotFound { .. } => "MEMBER_NOT_FOUND",
            Self::LevelNotFound { .. } => "LEVEL_NOT_FOUND",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::InsufficientPoints { .. } => "INSUFFICIENT_POINTS",
            Self::PointsPerTransactionExceeded { .. } => "POINTS_PER_TRANSACTION_EXCEEDED",
            Self::DailyPointsLimitExceeded { .. } => "DAILY_POINTS_LIMIT_EXCEEDED",
            Self::IdempotencyConflict { .. } => "IDEMPOTENCY_CONFLICT",
            Self::ConcurrentOperation => "CONCURRENT_OPERATION",
            Self::LevelInUse { .. } => "LEVEL_IN_USE",
            Self::EmailTaken => "EMAIL_TAKEN",
            Self::RewardNotFound { .. } => "REWARD_NOT_FOUND",
            Self::RewardRefused { reason } => reason.code(),
            Self::CouponNotFound => "COUPON_NOT_FOUND",
            Self::CouponUnusable { .. } => "COUPON_NOT_USABLE",
            Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status of SPEC §4.2.
    pub fn status(&self) -> u16 {
        match self {
            Self::Validation { .. } => 422,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::KeyScope { .. } => 403,
            Self::MemberNotFound { .. }
            | Self::LevelNotFound { .. }
            | Self::NotFound { .. }
            | Self::RewardNotFound { .. }
            | Self::CouponNotFound => 404,
            Self::InsufficientPoints { .. }
            | Self::RewardRefused { .. }
            | Self::PointsPerTransactionExceeded { .. }
            | Self::DailyPointsLimitExceeded { .. } => 422,
            Self::IdempotencyConflict { .. }
            | Self::ConcurrentOperation
            | Self::LevelInUse { .. }
            | Self::EmailTaken
            | Self::CouponUnusable { .. } => 409,
            Self::Unavailable(_) => 503,
            Self::Internal(_) => 500,
        }
    }

    /// `{"code","message",…}` with the figures a client can act on; never internals.
    pub fn body(&self) -> Value {
        let mut body = json!({ "code": self.code(), "message": self.to_string() });
        let extra = match self {
            Self::Validation { field, .. } => json!({ "field": field }),
            Self::InsufficientPoints {
                required,
                available,
            } => {
                json!({ "required": required, "available": available })
            }
            Self::PointsPerTransactionExceeded { max, actual } => {
                json!({ "max": max, "actual": actual })
            }
            Self::DailyPointsLimitExceeded {
                limit,
                earned_today,
                requested,
            } => json!({ "limit": limit, "earned_today": earned_today, "requested": requested }),
            Self::LevelInUse { members, .. } => json!({ "members": members }),
            Self::RewardRefused {
                reason: RewardRefusal::LimitReached { limit },
            } => json!({ "limit": limit }),
            Self::CouponUnusable { status, .. } => json!({ "status": status.as_str() }),
            _ => json!({}),
        };
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        body
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            Self::Unavailable(e.into())
        } else if is_out_of_range(&e) {
            // Points are bounded before they reach the database; money totals are the
            // only figures that can outgrow their column.
            Self::validation(
                "amount",
                "this would take the member's total spend past 9,999,999,999.99, the most it can hold",
            )
        } else {
            Self::Internal(e.into())
        }
    }
}

/// SQLSTATE 22003: a value does not fit its column (`numeric(12, 2)` totals).
fn is_out_of_range(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "22003")
}

/// Whether a database error means "PostgreSQL is not there right now" rather than a bug:
/// no connection in time, a broken connection, or the server shutting down or starting
/// (SQLSTATE classes 08 and 57P). Nothing was committed by the failed statement, so the
/// client may retry with the same idempotency key.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A validation failure whose reason is known by name, so every reader gets it in their
/// language (`error.reason.*` in the i18n table); [`Error::invalid`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    LevelNameTaken,
    LevelOrderTaken,
    ExternalIdTaken,
    PasswordCommon,
    PasswordIsEmail,
    PasswordTooShort,
    PasswordLength,
    EndBeforeStart,
    LastDayBeforeFirst,
    OwnAccount,
    OwnRole,
    BirthdayRecorded,
    LinkExpired,
    OneEntryLevel,
    AlreadyReversed,
    AlreadyOnLevel,
    ChooseActiveLevel,
    ChooseListedLevel,
    EmailFormat,
}

impl Invalid {
    pub const ALL: &[Invalid] = &[
        Invalid::LevelNameTaken,
        Invalid::LevelOrderTaken,
        Invalid::ExternalIdTaken,
        Invalid::PasswordCommon,
        Invalid::PasswordIsEmail,
        Invalid::PasswordTooShort,
        Invalid::PasswordLength,
        Invalid::EndBeforeStart,
        Invalid::LastDayBeforeFirst,
        Invalid::OwnAccount,
        Invalid::OwnRole,
        Invalid::BirthdayRecorded,
        Invalid::LinkExpired,
        Invalid::OneEntryLevel,
        Invalid::AlreadyReversed,
        Invalid::AlreadyOnLevel,
        Invalid::ChooseActiveLevel,
        Invalid::ChooseListedLevel,
        Invalid::EmailFormat,
    ];

    /// Its i18n key: `error.reason.{key}`.
    pub fn key(self) -> &'static str {
        match self {
            Invalid::LevelNameTaken => "level_name_taken",
            Invalid::LevelOrderTaken => "level_order_taken",
            Invalid::ExternalIdTaken => "external_id_taken",
            Invalid::PasswordCommon => "password_common",
            Invalid::PasswordIsEmail => "password_is_email",
            Invalid::PasswordTooShort => "password_too_short",
            Invalid::PasswordLength => "password_length",
            Invalid::EndBeforeStart => "end_before_start",
            Invalid::LastDayBeforeFirst => "last_day_before_first",
            Invalid::OwnAccount => "own_account",
            Invalid::OwnRole => "own_role",
            Invalid::BirthdayRecorded => "birthday_recorded",
            Invalid::LinkExpired => "link_expired",
            Invalid::OneEntryLevel => "one_entry_level",
            Invalid::AlreadyReversed => "already_reversed",
            Invalid::AlreadyOnLevel => "already_on_level",
            Invalid::ChooseActiveLevel => "choose_active_level",
            Invalid::ChooseListedLevel => "choose_listed_level",
            Invalid::EmailFormat => "email_format",
        }
    }

    /// What the API answers, in English.
    pub fn message(self) -> &'static str {
        match self {
            Invalid::LevelNameTaken => "a level with this name already exists",
            Invalid::LevelOrderTaken => "another level already has this order",
            Invalid::ExternalIdTaken => "another member already has this external_id",
            Invalid::PasswordCommon => {
                "this password is among the first that attackers try; choose another"
            }
            Invalid::PasswordIsEmail => "password must not be your email address",
            Invalid::PasswordTooShort => "password must have at least 8 characters besides spaces",
            Invalid::PasswordLength => "password must be 8 to 128 characters",
            Invalid::EndBeforeStart => "the end must be after the start",
            Invalid::LastDayBeforeFirst => "the last day must not be before the first",
            Invalid::OwnAccount => "you cannot disable your own account; ask another staff member",
            Invalid::OwnRole => "you cannot change your own role; ask another admin",
            Invalid::BirthdayRecorded => {
                "your birthday is already recorded; customer service can correct it"
            }
            Invalid::LinkExpired => "this link has expired or was used already; ask for a new one",
            Invalid::OneEntryLevel => {
                "exactly one active level must have threshold 0 (the entry level)"
            }
            Invalid::AlreadyReversed => "this earn has already been reversed in full",
            Invalid::AlreadyOnLevel => "the member is already on this level",
            Invalid::ChooseActiveLevel => "choose an active level",
            Invalid::ChooseListedLevel => "choose a level from the list",
            Invalid::EmailFormat => "enter an email address such as name@example.com",
        }
    }
}

/// A keyed insert lost a unique-key race to another transaction, which has committed: the
/// service that wrote it reads the winner to replay or report a conflict. It travels as an
/// internal error and never leaves the service layer.
#[derive(Debug, thiserror::Error)]
#[error("a keyed write lost its race to another transaction")]
pub(crate) struct KeyRace;

impl Error {
    pub(crate) fn key_race() -> Self {
        Self::Internal(KeyRace.into())
    }

    pub(crate) fn is_key_race(&self) -> bool {
        matches!(self, Self::Internal(e) if e.is::<KeyRace>())
    }
}

/// The name of the constraint a database error violated, if any.
pub fn violated_constraint(e: &sqlx::Error) -> Option<&str> {
    e.as_database_error().and_then(|d| d.constraint())
}

/// A database error as the domain error its violated constraint means (`means` answers
/// for the constraints the caller knows by name); any other error as it is. For example
/// `on_constraint(e, |c| (c == "users_email_key").then_some(Error::EmailTaken))`.
pub fn on_constraint(e: sqlx::Error, means: impl FnOnce(&str) -> Option<Error>) -> Error {
    match violated_constraint(&e).and_then(means) {
        Some(meant) => meant,
        None => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insufficient_points_carries_the_figures() {
        let e = Error::InsufficientPoints {
            required: 30,
            available: 20,
        };
        assert_eq!(e.code(), "INSUFFICIENT_POINTS");
        assert_eq!(e.status(), 422);
        let body = e.body();
        assert_eq!(body["required"], 30);
        assert_eq!(body["available"], 20);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = Error::Internal(anyhow::anyhow!("connection refused to 10.0.0.3"));
        assert_eq!(e.status(), 500);
        assert!(!e.body().to_string().contains("10.0.0.3"));
    }
}
