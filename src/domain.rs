//! Typed values the services work with. Input is parsed into these before a service sees
//! it ("parse, don't validate"); outputs are what pages, the API and the CLI show.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Error;

pub mod campaigns;
pub mod ledger;
pub mod rewards;

/// A positive number of points, at most `MAX` (keeps every sum far from i64 overflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Points(i64);

impl Points {
    pub const MAX: i64 = 1_000_000_000;

    pub fn parse(field: &'static str, n: i64) -> Result<Self, Error> {
        if n <= 0 {
            return Err(Error::validation(
                field,
                format!("{field} must be greater than 0"),
            ));
        }
        if n > Self::MAX {
            return Err(Error::validation(
                field,
                format!("{field} must be at most {}", Self::MAX),
            ));
        }
        Ok(Self(n))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// An order amount: positive, two decimal places at most, fits NUMERIC(12,2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Money(Decimal);

impl Money {
    pub fn parse(field: &'static str, d: Decimal) -> Result<Self, Error> {
        if d <= Decimal::ZERO {
            return Err(Error::validation(
                field,
                format!("{field} must be greater than 0"),
            ));
        }
        if d.normalize().scale() > 2 {
            return Err(Error::validation(
                field,
                format!("{field} may have at most 2 decimal places"),
            ));
        }
        if d >= Decimal::from(10_000_000_000i64) {
            return Err(Error::validation(
                field,
                format!("{field} must be less than 10000000000"),
            ));
        }
        Ok(Self(d.round_dp(2)))
    }

    pub fn get(self) -> Decimal {
        self.0
    }
}

/// An idempotency reference such as an order number: 1–100 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Reference(String);

impl Reference {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, Error> {
        let sent = s.chars().count();
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::validation(field, format!("{field} is required")));
        }
        if sent > 100 {
            return Err(Error::validation(
                field,
                format!("{field} must be at most 100 characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(Error::validation(
                field,
                format!("{field} must not contain control characters"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A decimal as a person types it into a form: digits with at most one point inside, no
/// sign, no exponent, at most 14 characters; normalised (`10.50` → `10.5`).
pub fn plain_decimal(s: &str) -> Option<Decimal> {
    let s = s.trim();
    let plain = !s.is_empty()
        && s.len() <= 14
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.bytes().filter(|b| *b == b'.').count() <= 1
        && !s.starts_with('.')
        && !s.ends_with('.');
    plain
        .then(|| s.parse::<Decimal>().ok())
        .flatten()
        .map(|d| d.normalize())
}

/// A phone number as people write it: digits, spaces and dashes, an optional leading +;
/// 4 to 32 characters.
pub fn parse_phone(s: &str) -> Result<String, Error> {
    let sent = s.chars().count();
    let s = s.trim();
    let ok = sent <= 32
        && (4..=32).contains(&s.len())
        && s.strip_prefix('+')
            .unwrap_or(s)
            .starts_with(|c: char| c.is_ascii_digit())
        && s.strip_prefix('+')
            .unwrap_or(s)
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Error::validation(
            "phone",
            "a phone number is 4 to 32 digits, spaces or dashes, with an optional leading +",
        ))
    }
}

/// A reason or note a person typed: required, at most 500 characters.
pub fn parse_reason(field: &'static str, s: &str) -> Result<String, Error> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Error::validation(field, format!("{field} is required")));
    }
    if s.chars().count() > 500 {
        return Err(Error::validation(
            field,
            format!("{field} must be at most 500 characters"),
        ));
    }
    Ok(s.to_owned())
}

/// An email address, kept as typed but compared case-insensitively by the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, Error> {
        // the limit counts what was sent, spaces around it included (as the API says)
        let sent = s.chars().count();
        let s = s.trim();
        let valid = sent <= 254
            && s.chars().all(|c| !c.is_whitespace() && !c.is_control())
            && matches!(s.split_once('@'), Some((local, domain))
                if !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
                    && !domain.ends_with('.') && !domain.contains('@'));
        if !valid {
            return Err(Error::invalid("email", crate::error::Invalid::EmailFormat));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn parse_display_name(s: &str) -> Result<String, Error> {
    let sent = s.chars().count();
    let s = s.trim();
    let n = s.chars().count();
    if n == 0 || sent > 100 || s.chars().any(char::is_control) {
        return Err(Error::validation(
            "display_name",
            "display name must be 1 to 100 characters",
        ));
    }
    Ok(s.to_owned())
}

/// A password a person chose: 8–128 characters (NIST SP 800-63B lengths).
/// Passwords of 8 or more characters that lists of leaked passwords put at the top, and
/// that guessing tools try first (lowercase; compared without case).
/// (Also in the OpenAPI description, so a client can tell a refused password in advance.)
pub const COMMON_PASSWORDS: &str = "\
password password1 password12 password123 passw0rd p@ssw0rd p@ssword 12345678 123456789 \
1234567890 0123456789 12341234 11223344 123123123 87654321 987654321 147258369 11111111 \
00000000 88888888 66666666 99999999 12121212 123456abc abc12345 abcd1234 a1234567 \
aa123456 qwerty12 qwerty123 qwertyuiop qwer1234 qwe12345 asdfghjk asdf1234 asdfghjkl \
zxcvbnm1 1q2w3e4r 1q2w3e4r5t 1qaz2wsx zaq12wsx q1w2e3r4 iloveyou iloveyou1 sunshine \
princess football baseball basketball welcome1 welcome123 letmein1 trustno1 superman \
whatever starwars computer internet changeme administrator admin123 admin1234 master123 \
dragon123 monkey123 shadow123 michelle jennifer charlie1 freedom1 1234qwer woaini1314 \
5201314520 woaini520 a123456789 qq123456 member123 loyalty1 password! secret123 test1234 \
testtest letmein123";

/// A password for the account with `email`: 8 to 128 characters, not only spaces, not one
/// of the most common passwords, not the email or its name part.
pub fn parse_password(s: &str, email: &str) -> Result<String, Error> {
    let n = s.chars().count();
    if !(8..=128).contains(&n) {
        return Err(Error::invalid(
            "password",
            crate::error::Invalid::PasswordLength,
        ));
    }
    if s.trim().chars().count() < 8 {
        return Err(Error::invalid(
            "password",
            crate::error::Invalid::PasswordTooShort,
        ));
    }
    let lower = s.trim().to_lowercase();
    let email = email.trim().to_lowercase();
    let name = email.split('@').next().unwrap_or_default();
    if lower == email || lower == name {
        return Err(Error::invalid(
            "password",
            crate::error::Invalid::PasswordIsEmail,
        ));
    }
    let one_char = lower.chars().all(|c| lower.starts_with(c));
    if one_char || COMMON_PASSWORDS.split_whitespace().any(|p| p == lower) {
        return Err(Error::invalid(
            "password",
            crate::error::Invalid::PasswordCommon,
        ));
    }
    Ok(s.to_owned())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub id: i32,
    pub level_name: String,
    pub level_order: i32,
    pub min_points: i32,
    pub discount_rate: Decimal,
    pub point_multiplier: Decimal,
    pub benefits: Vec<String>,
    pub is_active: bool,
}

/// What a points transaction is (the `transaction_type` column, checked by the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransactionType {
    Earn,
    Use,
    Expire,
    Adjust,
    Reverse,
    Refund,
    Release,
}

impl TransactionType {
    /// In the order the member's history filter lists them.
    pub const ALL: [Self; 7] = [
        Self::Earn,
        Self::Use,
        Self::Expire,
        Self::Adjust,
        Self::Reverse,
        Self::Refund,
        Self::Release,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earn => "earn",
            Self::Use => "use",
            Self::Expire => "expire",
            Self::Adjust => "adjust",
            Self::Reverse => "reverse",
            Self::Refund => "refund",
            Self::Release => "release",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// A reversal or refund: it gives back or takes back what an earlier one did.
    pub fn undoes(self) -> bool {
        matches!(self, Self::Reverse | Self::Refund)
    }
}

impl PartialEq<&str> for TransactionType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for TransactionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// stored as the column's text
impl sqlx::Type<sqlx::Postgres> for TransactionType {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl sqlx::Decode<'_, sqlx::Postgres> for TransactionType {
    fn decode(value: sqlx::postgres::PgValueRef<'_>) -> Result<Self, sqlx::error::BoxDynError> {
        let s = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Self::parse(s).ok_or_else(|| format!("unknown transaction type {s:?}").into())
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for TransactionType {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: i64,
    pub user_id: i64,
    pub transaction_type: TransactionType,
    pub points_change: i64,
    pub balance_after: i64,
    pub reference_type: Option<String>,
    pub reference_id: Option<String>,
    pub description: String,
    pub status: String,
    /// reverse: points that could not be taken back
    pub unrecovered: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpgradeResult {
    pub upgraded: bool,
    pub old_level: String,
    pub new_level: String,
    pub upgrade_benefits: Vec<String>,
}

/// What a points operation did. `replayed` is true when an earlier identical request
/// already did it (nothing new was written).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub transaction: Transaction,
    pub replayed: bool,
    pub upgrade: Option<UpgradeResult>,
    /// earn: the campaigns' bonus lines it brought, each its own transaction
    pub bonuses: Vec<Transaction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExpiringPoints {
    pub points: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// The member's points as anyone sees them: only unexpired points count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsSummary {
    pub available: i64,
    pub total_earned: i64,
    pub total_used: i64,
    pub total_expired: i64,
    pub total_adjusted: i64,
    pub total_reversed: i64,
    pub total_refunded: i64,
    /// earned, waiting out the return window (`POINTS_PENDING_DAYS`)
    #[serde(default)]
    pub pending: i64,
    /// the pending points by the moment they become spendable (in `expires_at`)
    #[serde(default)]
    pub pending_release: Vec<ExpiringPoints>,
    pub expiring_soon: Vec<ExpiringPoints>,
    /// The earliest expiry among live batches: a cached summary is stale from then on.
    #[serde(with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpgradeProgress {
    pub next_level: Option<String>,
    /// the next level's spend threshold
    pub required: Option<i32>,
    /// total spent, a string with two decimals
    #[schema(value_type = String, example = "800.00")]
    pub current: Decimal,
    #[schema(value_type = String, example = "200.00")]
    pub remaining: Decimal,
    /// 0–100, rounded down
    pub percent: u8,
}

/// The member row as cached under `member_system:profile:{user_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub user_id: i64,
    pub member_code: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub level_id: i32,
    pub total_spent: Decimal,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_level_change_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// entered once by the member, for the birthday bonus
    #[serde(default)]
    pub birthday: Option<time::Date>,
    #[serde(default)]
    pub phone: Option<String>,
    /// the integrator's own customer id
    #[serde(default)]
    pub external_id: Option<String>,
    /// the spend of the program's qualification window now (lifetime: total_spent)
    #[serde(default)]
    pub qualifying_spent: Decimal,
}

/// What a staff account may do (issue 13 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffRole {
    /// everything
    Admin,
    /// members, points, rewards, campaigns, bulk grants; reads the rest
    Operator,
    /// reads only
    Viewer,
}

impl StaffRole {
    pub const ALL: [StaffRole; 3] = [StaffRole::Admin, StaffRole::Operator, StaffRole::Viewer];

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }

    /// Whether the role may send this request to a staff page: every role reads; an
    /// operator changes anything but levels, staff accounts and API keys; an admin all.
    pub fn allows(self, method: &str, path: &str) -> bool {
        if matches!(method, "GET" | "HEAD") {
            return true;
        }
        match self {
            Self::Admin => true,
            Self::Viewer => false,
            Self::Operator => !["/admin/levels", "/admin/staff", "/admin/api-keys"]
                .iter()
                .any(|p| path == *p || path.starts_with(&format!("{p}/"))),
        }
    }

    /// Whether the role may change anything at all (forms are shown only then).
    pub fn writes(self) -> bool {
        self != Self::Viewer
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub user_id: i64,
    pub member_code: String,
    pub birthday: Option<time::Date>,
    pub phone: Option<String>,
    pub external_id: Option<String>,
    pub email: String,
    pub display_name: String,
    pub total_spent: Decimal,
    pub level: Level,
    pub points: PointsSummary,
    pub upgrade_progress: UpgradeProgress,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Batch {
    pub id: i64,
    pub earned_points: i64,
    pub available_points: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// Money with its two places, whatever scale it arrived with (`0` → `0.00`).
pub fn money(d: Decimal) -> Decimal {
    let mut d = d;
    d.rescale(2);
    d
}

/// The progress towards `next`, from the levels above the member's current one.
pub fn upgrade_progress(levels: &[Level], current: &Level, spent: Decimal) -> UpgradeProgress {
    let next = levels
        .iter()
        .filter(|l| l.is_active && l.level_order > current.level_order)
        .min_by_key(|l| l.level_order);
    match next {
        None => UpgradeProgress {
            next_level: None,
            required: None,
            current: money(spent),
            remaining: Decimal::ZERO,
            percent: 100,
        },
        Some(next) => {
            let required = Decimal::from(next.min_points);
            let remaining = (required - spent).max(Decimal::ZERO);
            let percent = if required <= Decimal::ZERO || spent >= required {
                100
            } else {
                (spent * Decimal::from(100) / required)
                    .floor()
                    .try_into()
                    .unwrap_or(0u8)
                    .min(100)
            };
            UpgradeProgress {
                next_level: Some(next.level_name.clone()),
                required: Some(next.min_points),
                current: money(spent),
                remaining: money(remaining),
                percent,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_types_read_back_as_written_in_the_table_and_in_json() {
        for t in TransactionType::ALL {
            assert_eq!(TransactionType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
            assert_eq!(t, t.as_str());
        }
        assert_eq!(TransactionType::parse("EARN"), None);
        assert_eq!(TransactionType::parse("gift"), None);
        assert!(TransactionType::Refund.undoes() && !TransactionType::Use.undoes());
    }

    #[test]
    fn staff_roles_allow_what_they_name() {
        use StaffRole::*;
        for role in StaffRole::ALL {
            assert!(role.allows("GET", "/admin/levels"), "{role:?} reads");
            assert_eq!(StaffRole::parse(role.as_str()), Some(role));
        }
        assert!(Admin.allows("POST", "/admin/api-keys"));
        assert!(Operator.allows("POST", "/admin/members/7/adjust"));
        assert!(Operator.allows("POST", "/admin/grants"));
        assert!(Operator.allows("POST", "/admin/campaigns"));
        assert!(!Operator.allows("POST", "/admin/levels"));
        assert!(!Operator.allows("POST", "/admin/levels/3/active"));
        assert!(!Operator.allows("POST", "/admin/staff/2/disable"));
        assert!(!Operator.allows("POST", "/admin/api-keys/1/revoke"));
        assert!(
            Operator.allows("POST", "/admin/levelsx"),
            "a prefix is a path segment"
        );
        assert!(!Viewer.allows("POST", "/admin/members/7/adjust"));
        assert!(!Viewer.allows("DELETE", "/admin/grants"));
        assert_eq!(StaffRole::parse("root"), None);
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn level(id: i32, order: i32, min: i32, name: &str) -> Level {
        Level {
            id,
            level_name: name.into(),
            level_order: order,
            min_points: min,
            discount_rate: Decimal::ONE,
            point_multiplier: Decimal::ONE,
            benefits: vec![],
            is_active: true,
        }
    }

    #[test]
    fn points_must_be_positive_and_bounded() {
        assert!(Points::parse("points", 0).is_err());
        assert!(Points::parse("points", -3).is_err());
        assert!(Points::parse("points", Points::MAX + 1).is_err());
        assert_eq!(Points::parse("points", 10).unwrap().get(), 10);
    }

    #[test]
    fn money_has_two_places_at_most() {
        assert!(Money::parse("amount", dec("0")).is_err());
        assert!(Money::parse("amount", dec("-1.00")).is_err());
        assert!(Money::parse("amount", dec("1.001")).is_err());
        assert!(Money::parse("amount", dec("10000000000")).is_err());
        assert_eq!(
            Money::parse("amount", dec("300.50")).unwrap().get(),
            dec("300.50")
        );
        assert_eq!(
            Money::parse("amount", dec("1.100")).unwrap().get(),
            dec("1.10")
        );
    }

    #[test]
    fn references_and_emails_are_checked() {
        assert!(Reference::parse("source_id", "  ").is_err());
        assert!(Reference::parse("source_id", &"x".repeat(101)).is_err());
        assert!(Reference::parse("source_id", "a\u{0}b").is_err());
        assert_eq!(
            Reference::parse("source_id", " ORDER_1 ").unwrap().as_str(),
            "ORDER_1"
        );
        assert!(Email::parse("nobody").is_err());
        assert!(Email::parse("a@b").is_err());
        assert!(Email::parse("a b@c.d").is_err());
        assert!(Email::parse("A@Example.com").is_ok());
        assert!(parse_reason("reason", "   ").is_err());
        assert!(parse_password("short", "a@b.co").is_err());
        for weak in [
            "        ",
            "password",
            "12345678",
            "PassWord1",
            "ann@example.com",
            "ANN@example.com ",
            "annannann",
            "aaaaaaaa",
        ] {
            let email = if weak == "annannann" {
                "annannann@example.com"
            } else {
                "ann@example.com"
            };
            assert!(parse_password(weak, email).is_err(), "{weak:?} refused");
        }
        assert!(parse_password("correct horse battery", "ann@example.com").is_ok());
        assert!(parse_password("  spaces around ok  ", "ann@example.com").is_ok());
    }

    #[test]
    fn upgrade_progress_counts_towards_the_next_level() {
        let levels = vec![
            level(1, 1, 0, "普通会员"),
            level(2, 2, 1000, "银牌会员"),
            level(3, 3, 5000, "金牌会员"),
        ];
        let p = upgrade_progress(&levels, &levels[0], dec("800"));
        assert_eq!(p.next_level.as_deref(), Some("银牌会员"));
        assert_eq!(p.required, Some(1000));
        assert_eq!(p.remaining, dec("200"));
        assert_eq!(p.percent, 80);
        let top = upgrade_progress(&levels, &levels[2], dec("9000"));
        assert_eq!(top.next_level, None);
        assert_eq!(top.percent, 100);
    }
}

#[cfg(test)]
mod phone_tests {
    use super::parse_phone;

    #[test]
    fn phone_numbers_are_digits_spaces_and_dashes_within_32_characters_as_sent() {
        assert_eq!(
            parse_phone(" +86 138-0000-0000 ").unwrap(),
            "+86 138-0000-0000"
        );
        for bad in [
            "",
            "123",
            "call me",
            "+-1234",
            "++861380000",
            &format!(" +0000{}", " ".repeat(28)),
            &"1".repeat(33),
        ] {
            assert!(parse_phone(bad).is_err(), "{bad:?}");
        }
    }
}
