//! Settings from environment variables (SPEC §3.9). Every variable is optional; a value
//! that does not parse stops start-up with a message naming the variable and what it
//! accepts.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The default store of record when `DATABASE_URL` is unset: the local server, trust auth.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/member_portal";

#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    /// Whether `DATABASE_URL` was set; if not, a local or private PostgreSQL is found.
    pub database_url_from_env: bool,
    pub redis_url: Option<String>,
    pub bind_addr: SocketAddr,
    pub points_expiry_days: i64,
    pub max_points_per_transaction: i64,
    pub daily_points_limit: i64,
    pub level_upgrade_cooldown: Duration,
    pub auto_upgrade: bool,
    pub member_cache_ttl: Duration,
    pub points_cache_ttl: Duration,
    pub level_cache_ttl: Duration,
    pub db_query_timeout: Duration,
    pub redis_operation_timeout: Duration,
    pub batch_size: i64,
    pub points_expiry_reminder_days: i64,
    /// IANA time zone of the business day (daily limit, member codes).
    pub member_timezone: String,
    pub cookie_secure: bool,
    /// Where notifications are POSTed (besides showing in the portal), and the secret
    /// their HMAC-SHA256 signature is made with.
    pub notify_webhook: Option<Webhook>,
    /// `LOG_FORMAT=json` for machine-read logs.
    pub log_json: bool,
    /// Prepended to every Redis key, so several portals (or test runs) can share a Redis.
    pub redis_key_prefix: String,
    /// How long a points operation waits for the per-member lock.
    pub lock_wait: Duration,
    /// Lease of the per-member Redis lock.
    pub lock_ttl: Duration,
    /// With Redis, take the per-member Redis lock before a points change (the default).
    /// `REDIS_POINTS_LOCK=false` leaves instances to queue on PostgreSQL's row lock, which
    /// is what keeps the ledger right either way; an instance's own operations still queue
    /// on its in-process mutex.
    pub redis_points_lock: bool,
    /// Earns of different members that run at once on an instance before one that arrives
    /// waits to run with the others waiting, in one statement (group commit across
    /// members; see `service::earn_queue`). 0 (the default): each earn runs at once.
    pub earn_group_runners: usize,
    /// Proxies whose `X-Forwarded-For` names the client (login throttling counts per
    /// client address). Empty: the socket's peer is the client.
    pub trusted_proxies: Vec<crate::client_ip::IpRange>,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// A client that has not sent a request's headers within this is disconnected.
    pub header_read_timeout: Duration,
    /// The most points one staff adjustment may add or take.
    pub adjustment_max_points: i64,
    /// largest member file staff may upload on /admin/imports (IMPORT_MAX_MB)
    pub import_max_bytes: u64,
    /// Staff confirm an adjustment of more points than this before it is made.
    pub adjustment_confirm_above: i64,
    /// A listener of its own for `/metrics` (then the member-facing one does not serve it).
    pub metrics_bind_addr: Option<SocketAddr>,
    /// `Authorization: Bearer <token>` opens `/metrics` on the member-facing listener.
    pub metrics_token: Option<String>,
    /// PostgreSQL connections `serve` keeps at most.
    pub db_pool_size: u32,
    /// `MEMBER_POINTS_PER_YUAN` (1): base points of an earn sent with its order amount
    /// only, floor(amount × this).
    pub points_per_yuan: rust_decimal::Decimal,
    /// `PUBLIC_URL`: where members reach the portal, for the links it sends (password
    /// links); default `http://` + `BIND_ADDR`.
    pub public_url: String,
    /// `POINTS_PENDING_DAYS` (0): an earn's points are pending this many days (the return
    /// window) before they can be spent; 0 makes them spendable at once.
    pub points_pending_days: i64,
    /// `SMTP_URL` (`smtp://user:pass@host:587?tls=required`, `smtps://…`): password links
    /// also go by email. Unset: through the outbox (webhook) only.
    pub smtp_url: Option<String>,
    /// `SMTP_FROM`: the sender of those emails.
    pub smtp_from: String,
    /// The tier lifecycle: qualification window, retention, review (`MEMBER_TIER_*`).
    pub tiers: TierRules,
}

/// Whose spend qualifies for a level (`MEMBER_TIER_WINDOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierWindow {
    /// all spend ever (a level is never lost on its own)
    Lifetime,
    /// the spend of the calendar year, in `MEMBER_TIMEZONE`
    CalendarYear,
    /// the spend of this business month and the N − 1 before it
    RollingMonths(i32),
}

/// How long a level reached is kept before it is reviewed (`MEMBER_TIER_RETENTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierRetention {
    /// to the end of the calendar year after the one it was reached in
    NextCalendarYear,
    Months(i32),
}

/// Where a member goes whose window spend no longer reaches their level at review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierReview {
    /// to the level the window spend reaches
    DropToWindow,
    /// one level down (or to the level the spend reaches, if that is higher)
    DropOne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierRules {
    pub window: TierWindow,
    pub retention: TierRetention,
    pub review: TierReview,
    /// the level is kept this long after its retention ends before the review
    pub grace: time::Duration,
    /// members are told this long before a downgrade
    pub notice: time::Duration,
}

impl TierRules {
    /// The window as migration 0018's functions take it: kind and months.
    pub fn window_sql(&self) -> (&'static str, i32) {
        match self.window {
            TierWindow::Lifetime => ("lifetime", 0),
            TierWindow::CalendarYear => ("calendar_year", 12),
            TierWindow::RollingMonths(n) => ("rolling", n),
        }
    }

    pub fn retention_sql(&self) -> (&'static str, i32) {
        match self.retention {
            TierRetention::NextCalendarYear => ("next_calendar_year", 0),
            TierRetention::Months(n) => ("months", n),
        }
    }

    pub fn review_sql(&self) -> &'static str {
        match self.review {
            TierReview::DropToWindow => "drop_to_window",
            TierReview::DropOne => "drop_one",
        }
    }

    pub fn is_lifetime(&self) -> bool {
        self.window == TierWindow::Lifetime
    }
}

#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

/// A variable whose value could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Connection strings may carry passwords.
        f.debug_struct("Config")
            .field("database_url", &"[redacted]")
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[redacted]"))
            .field("bind_addr", &self.bind_addr)
            .field("member_timezone", &self.member_timezone)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::from_vars(&HashMap::new()).expect("defaults are valid")
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads settings from a map of variables (the environment, or a test's own map).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let int =
            |name: &'static str, default: i64, min: i64, max: i64| -> Result<i64, ConfigError> {
                match get(name) {
                    None => Ok(default),
                    Some(raw) => raw
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (min..=max).contains(n))
                        .ok_or_else(|| ConfigError {
                            variable: name,
                            value: raw.to_owned(),
                            expected: leak_range(min, max),
                        }),
                }
            };
        let secs = |name: &'static str, default: i64, min: i64| -> Result<Duration, ConfigError> {
            int(name, default, min, 10 * 365 * 86_400).map(|s| Duration::from_secs(s as u64))
        };
        let boolean = |name: &'static str, default: bool| -> Result<bool, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(raw) => match raw.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => Ok(true),
                    "false" | "0" | "no" | "off" => Ok(false),
                    _ => Err(ConfigError {
                        variable: name,
                        value: raw.to_owned(),
                        expected: "true or false",
                    }),
                },
            }
        };

        let database_url = match get("DATABASE_URL") {
            None => DEFAULT_DATABASE_URL.to_owned(),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                url.to_owned()
            }
            Some(url) => {
                return Err(ConfigError {
                    variable: "DATABASE_URL",
                    value: redact_url(url),
                    expected: "a postgres:// or postgresql:// URL",
                });
            }
        };
        let redis_url = match get("REDIS_URL") {
            None => None,
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Some(url.to_owned())
            }
            Some(url) => {
                return Err(ConfigError {
                    variable: "REDIS_URL",
                    value: redact_url(url),
                    expected: "a redis:// URL, or unset for the in-process cache and lock",
                });
            }
        };
        let bind_addr = match get("BIND_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(raw) => raw.parse().map_err(|_| ConfigError {
                variable: "BIND_ADDR",
                value: raw.to_owned(),
                expected: "an address and port such as 127.0.0.1:3000",
            })?,
        };
        let metrics_bind_addr = match get("METRICS_BIND_ADDR") {
            None => None,
            Some(raw) => Some(raw.parse().map_err(|_| ConfigError {
                variable: "METRICS_BIND_ADDR",
                value: raw.to_owned(),
                expected: "an address and port such as 127.0.0.1:9464",
            })?),
        };
        let metrics_token = match get("METRICS_TOKEN") {
            None => None,
            Some(t) if t.len() >= 16 && !t.contains(char::is_whitespace) => Some(t.to_owned()),
            Some(_) => {
                return Err(ConfigError {
                    variable: "METRICS_TOKEN",
                    value: "[hidden]".into(),
                    expected: "a token of at least 16 characters without spaces",
                });
            }
        };
        let member_timezone = match get("MEMBER_TIMEZONE") {
            None => "Asia/Shanghai".to_owned(),
            Some(tz) if is_plausible_tz(tz) => tz.to_owned(),
            Some(tz) => {
                return Err(ConfigError {
                    variable: "MEMBER_TIMEZONE",
                    value: tz.to_owned(),
                    expected: "an IANA time zone name such as Asia/Shanghai or UTC",
                });
            }
        };
        let notify_webhook = match (get("NOTIFY_WEBHOOK_URL"), get("NOTIFY_WEBHOOK_SECRET")) {
            (None, _) => None,
            (Some(url), _) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(ConfigError {
                    variable: "NOTIFY_WEBHOOK_URL",
                    value: redact_url(url),
                    expected: "an http:// or https:// URL",
                });
            }
            (Some(url), Some(secret)) if secret.len() >= 16 => Some(Webhook {
                url: url.to_owned(),
                secret: secret.to_owned(),
            }),
            (Some(_), _) => {
                return Err(ConfigError {
                    variable: "NOTIFY_WEBHOOK_SECRET",
                    value: "[hidden]".into(),
                    expected: "a secret of at least 16 characters (it signs each delivery) when NOTIFY_WEBHOOK_URL is set",
                });
            }
        };
        let trusted_proxies = match get("TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(raw) => crate::client_ip::parse_ranges(raw).ok_or_else(|| ConfigError {
                variable: "TRUSTED_PROXIES",
                value: raw.to_owned(),
                expected: "comma-separated addresses or ranges, such as 127.0.0.1, 10.0.0.0/8",
            })?,
        };
        let points_per_yuan = match get("MEMBER_POINTS_PER_YUAN") {
            None => rust_decimal::Decimal::ONE,
            Some(raw) => raw
                .trim()
                .parse::<rust_decimal::Decimal>()
                .ok()
                .filter(|d| {
                    *d > rust_decimal::Decimal::ZERO
                        && *d <= rust_decimal::Decimal::ONE_HUNDRED
                        && d.normalize().scale() <= 2
                })
                .ok_or_else(|| ConfigError {
                    variable: "MEMBER_POINTS_PER_YUAN",
                    value: raw.to_owned(),
                    expected: "points per yuan of an order, more than 0 and at most 100 (up to 2 decimals), such as 1 or 0.5",
                })?,
        };
        let months = |name: &'static str| int(name, 12, 1, 120).map(|n| n as i32);
        let window = match get("MEMBER_TIER_WINDOW") {
            None | Some("lifetime") => TierWindow::Lifetime,
            Some("calendar_year") => TierWindow::CalendarYear,
            Some("rolling_months") => {
                TierWindow::RollingMonths(months("MEMBER_TIER_WINDOW_MONTHS")?)
            }
            Some(other) => {
                return Err(ConfigError {
                    variable: "MEMBER_TIER_WINDOW",
                    value: other.to_owned(),
                    expected: "lifetime, calendar_year or rolling_months (with MEMBER_TIER_WINDOW_MONTHS)",
                });
            }
        };
        let retention = match (get("MEMBER_TIER_RETENTION"), window) {
            (None, TierWindow::CalendarYear) | (Some("next_calendar_year"), _) => {
                TierRetention::NextCalendarYear
            }
            (None, _) | (Some("months"), _) => {
                TierRetention::Months(months("MEMBER_TIER_RETENTION_MONTHS")?)
            }
            (Some(other), _) => {
                return Err(ConfigError {
                    variable: "MEMBER_TIER_RETENTION",
                    value: other.to_owned(),
                    expected: "next_calendar_year or months (with MEMBER_TIER_RETENTION_MONTHS)",
                });
            }
        };
        let review = match get("MEMBER_TIER_REVIEW") {
            None | Some("drop_to_window") => TierReview::DropToWindow,
            Some("drop_one") => TierReview::DropOne,
            Some(other) => {
                return Err(ConfigError {
                    variable: "MEMBER_TIER_REVIEW",
                    value: other.to_owned(),
                    expected: "drop_to_window or drop_one",
                });
            }
        };
        let tiers = TierRules {
            window,
            retention,
            review,
            grace: time::Duration::days(int("MEMBER_TIER_GRACE_DAYS", 0, 0, 365)?),
            notice: time::Duration::days(int("MEMBER_TIER_NOTICE_DAYS", 14, 0, 365)?),
        };
        let public_url = match get("PUBLIC_URL") {
            None => format!("http://{bind_addr}"),
            Some(u)
                if (u.starts_with("http://") || u.starts_with("https://"))
                    && !u.contains(char::is_whitespace) =>
            {
                u.trim_end_matches('/').to_owned()
            }
            Some(u) => {
                return Err(ConfigError {
                    variable: "PUBLIC_URL",
                    value: u.to_owned(),
                    expected: "the portal's address as members reach it, such as https://members.example.com",
                });
            }
        };
        let smtp_url = match get("SMTP_URL") {
            None => None,
            Some(u) if u.starts_with("smtp://") || u.starts_with("smtps://") => Some(u.to_owned()),
            Some(u) => {
                return Err(ConfigError {
                    variable: "SMTP_URL",
                    value: redact_url(u),
                    expected: "an smtp:// or smtps:// URL, such as smtps://user:password@smtp.example.com",
                });
            }
        };
        let smtp_from = match get("SMTP_FROM") {
            None => "Member Portal <no-reply@localhost>".to_owned(),
            Some(f) if f.parse::<lettre::message::Mailbox>().is_ok() => f.to_owned(),
            Some(f) => {
                return Err(ConfigError {
                    variable: "SMTP_FROM",
                    value: f.to_owned(),
                    expected: "a sender such as Member Portal <no-reply@example.com>",
                });
            }
        };
        let redis_key_prefix = get("REDIS_KEY_PREFIX").unwrap_or("").to_owned();
        if redis_key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError {
                variable: "REDIS_KEY_PREFIX",
                value: redis_key_prefix,
                expected: "a key prefix without spaces",
            });
        }

        Ok(Self {
            database_url_from_env: get("DATABASE_URL").is_some(),
            database_url,
            redis_url,
            bind_addr,
            points_expiry_days: int("MEMBER_POINTS_EXPIRY_DAYS", 365, 1, 36_500)?,
            max_points_per_transaction: int(
                "MEMBER_MAX_POINTS_PER_TRANSACTION",
                10_000,
                1,
                1_000_000_000,
            )?,
            daily_points_limit: int("MEMBER_DAILY_POINTS_LIMIT", 5_000, 1, 1_000_000_000)?,
            level_upgrade_cooldown: secs("MEMBER_LEVEL_UPGRADE_COOLDOWN_SECS", 86_400, 0)?,
            auto_upgrade: boolean("MEMBER_AUTO_UPGRADE", true)?,
            member_cache_ttl: secs("MEMBER_CACHE_TTL_SECS", 1_800, 1)?,
            points_cache_ttl: secs("POINTS_CACHE_TTL_SECS", 600, 1)?,
            level_cache_ttl: secs("LEVEL_CACHE_TTL_SECS", 7_200, 1)?,
            db_query_timeout: secs("DB_QUERY_TIMEOUT_SECS", 30, 1)?,
            redis_operation_timeout: secs("REDIS_OPERATION_TIMEOUT_SECS", 5, 1)?,
            batch_size: int("BATCH_SIZE", 100, 1, 100_000)?,
            points_expiry_reminder_days: int("POINTS_EXPIRY_REMINDER_DAYS", 30, 1, 3_650)?,
            member_timezone,
            cookie_secure: boolean("COOKIE_SECURE", false)?,
            notify_webhook,
            log_json: match get("LOG_FORMAT") {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => {
                    return Err(ConfigError {
                        variable: "LOG_FORMAT",
                        value: other.to_owned(),
                        expected: "text or json",
                    });
                }
            },
            redis_key_prefix,
            lock_wait: Duration::from_secs(2),
            lock_ttl: Duration::from_secs(30),
            redis_points_lock: boolean("REDIS_POINTS_LOCK", true)?,
            earn_group_runners: int("EARN_GROUP_RUNNERS", 0, 0, 1_000)? as usize,
            trusted_proxies,
            max_connections: int("MAX_CONNECTIONS", 1024, 1, 1_000_000)? as usize,
            header_read_timeout: secs("HEADER_READ_TIMEOUT_SECS", 10, 1)?,
            adjustment_max_points: int("STAFF_ADJUSTMENT_MAX_POINTS", 100_000, 1, 1_000_000_000)?,
            import_max_bytes: int("IMPORT_MAX_MB", 256, 1, 100_000)? as u64 * 1024 * 1024,
            adjustment_confirm_above: int(
                "STAFF_ADJUSTMENT_CONFIRM_ABOVE",
                1_000,
                0,
                1_000_000_000,
            )?,
            metrics_bind_addr,
            metrics_token,
            db_pool_size: int("DB_POOL_SIZE", 20, 1, 1_000)? as u32,
            points_per_yuan,
            public_url,
            points_pending_days: int("POINTS_PENDING_DAYS", 0, 0, 365)?,
            smtp_url,
            smtp_from,
            tiers,
        })
    }
}

fn leak_range(min: i64, max: i64) -> &'static str {
    // Messages are built once at start-up; leaking the few bytes keeps ConfigError simple.
    Box::leak(format!("a whole number from {min} to {max}").into_boxed_str())
}

fn is_plausible_tz(tz: &str) -> bool {
    tz.len() <= 64
        && tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
}

/// Hides the password of a URL in messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://[redacted]@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(c.points_expiry_days, 365);
        assert_eq!(c.max_points_per_transaction, 10_000);
        assert_eq!(c.daily_points_limit, 5_000);
        assert_eq!(c.level_upgrade_cooldown, Duration::from_secs(86_400));
        assert!(c.auto_upgrade);
        assert_eq!(c.member_cache_ttl.as_secs(), 1_800);
        assert_eq!(c.points_cache_ttl.as_secs(), 600);
        assert_eq!(c.level_cache_ttl.as_secs(), 7_200);
        assert_eq!(c.batch_size, 100);
        assert_eq!(c.points_expiry_reminder_days, 30);
        assert_eq!(c.member_timezone, "Asia/Shanghai");
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:3000");
        assert!(c.redis_url.is_none());
        assert!(!c.cookie_secure);
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.max_connections, 1024);
        assert!(c.trusted_proxies.is_empty());
        assert!(c.tiers.is_lifetime());
        assert_eq!(c.tiers.notice, time::Duration::days(14));
    }

    #[test]
    fn tier_rules_read_their_variables() {
        let c = Config::from_vars(&vars(&[("MEMBER_TIER_WINDOW", "calendar_year")])).unwrap();
        assert_eq!(c.tiers.window_sql(), ("calendar_year", 12));
        assert_eq!(c.tiers.retention, TierRetention::NextCalendarYear);
        let c = Config::from_vars(&vars(&[
            ("MEMBER_TIER_WINDOW", "rolling_months"),
            ("MEMBER_TIER_WINDOW_MONTHS", "6"),
            ("MEMBER_TIER_RETENTION_MONTHS", "18"),
            ("MEMBER_TIER_REVIEW", "drop_one"),
            ("MEMBER_TIER_GRACE_DAYS", "30"),
        ]))
        .unwrap();
        assert_eq!(c.tiers.window, TierWindow::RollingMonths(6));
        assert_eq!(c.tiers.retention_sql(), ("months", 18));
        assert_eq!(c.tiers.review_sql(), "drop_one");
        assert_eq!(c.tiers.grace, time::Duration::days(30));
        let err = Config::from_vars(&vars(&[
            ("MEMBER_TIER_WINDOW", "rolling_months"),
            ("MEMBER_TIER_WINDOW_MONTHS", "0"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "MEMBER_TIER_WINDOW_MONTHS");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("MEMBER_DAILY_POINTS_LIMIT", "lots"),
            ("MEMBER_DAILY_POINTS_LIMIT", "-5"),
            ("MEMBER_AUTO_UPGRADE", "maybe"),
            ("REDIS_POINTS_LOCK", "sometimes"),
            ("EARN_GROUP_RUNNERS", "-1"),
            ("BIND_ADDR", "localhost"),
            ("MEMBER_TIMEZONE", "Asia Shanghai"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "http://x"),
            ("BATCH_SIZE", "0"),
            ("LOG_FORMAT", "xml"),
            ("NOTIFY_WEBHOOK_URL", "ftp://x"),
            ("TRUSTED_PROXIES", "10.0.0.0/40"),
            ("METRICS_BIND_ADDR", "localhost:9464"),
            ("METRICS_TOKEN", "short"),
            ("MEMBER_TIER_WINDOW", "yearly"),
            ("MEMBER_TIER_RETENTION", "forever"),
            ("MEMBER_TIER_REVIEW", "keep"),
            ("MEMBER_TIER_NOTICE_DAYS", "-1"),
        ] {
            let err = Config::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.variable, name);
            assert!(err.to_string().contains(name), "{err}");
            assert!(err.to_string().contains("expected"), "{err}");
        }
    }

    #[test]
    fn a_webhook_needs_a_secret() {
        let err = Config::from_vars(&vars(&[("NOTIFY_WEBHOOK_URL", "https://hooks.example/x")]))
            .unwrap_err();
        assert_eq!(err.variable, "NOTIFY_WEBHOOK_SECRET");
        let c = Config::from_vars(&vars(&[
            ("NOTIFY_WEBHOOK_URL", "https://hooks.example/x"),
            ("NOTIFY_WEBHOOK_SECRET", "0123456789abcdef"),
        ]))
        .unwrap();
        assert_eq!(c.notify_webhook.unwrap().url, "https://hooks.example/x");
    }

    #[test]
    fn values_are_read() {
        let c = Config::from_vars(&vars(&[
            ("MEMBER_DAILY_POINTS_LIMIT", "7000"),
            ("MEMBER_AUTO_UPGRADE", "false"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_POINTS_LOCK", "false"),
            ("MEMBER_TIMEZONE", "UTC"),
            ("EARN_GROUP_RUNNERS", "4"),
        ]))
        .unwrap();
        assert_eq!(c.daily_points_limit, 7000);
        assert!(!c.auto_upgrade);
        assert!(!c.redis_points_lock);
        assert_eq!(c.earn_group_runners, 4);
        assert!(
            Config::default().redis_points_lock,
            "the spec's lock by default"
        );
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(c.member_timezone, "UTC");
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://u:secret@host/db"),
            "postgres://[redacted]@host/db"
        );
        let c = Config::from_vars(&vars(&[("DATABASE_URL", "postgres://u:secret@h/db")])).unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }
}
