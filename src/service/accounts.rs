//! Logins, staff accounts and API keys (password hashing is [`super::passwords`]).

use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

use super::passwords::{NO_PASSWORD, hash_password, verify_password};
use super::{Ctx, members::insert_user};
use crate::db::accounts as login_db;
use crate::db::members as db;
use crate::domain::{Email, parse_display_name, parse_password};
use crate::error::{Error, Result};

/// Login attempts one client may make on one account within [`LOGIN_WINDOW`] (OWASP ASVS
/// allows at most 100 an hour; this is far stricter). Counted per client, so a stranger's
/// guesses do not lock the owner out.
pub const MAX_LOGIN_FAILURES: i32 = 5;
/// Failed login attempts one client address may make on all accounts together within
/// [`LOGIN_WINDOW`]: one client cannot try a few passwords on many accounts.
pub const MAX_CLIENT_LOGIN_FAILURES: i32 = 20;
pub const LOGIN_WINDOW: time::Duration = time::Duration::minutes(15);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Ok {
        user_id: i64,
        role: String,
        display_name: String,
    },
    /// Unknown email and wrong password look the same.
    Invalid,
    /// the right password for an account staff have disabled
    Disabled,
    Throttled {
        minutes: i64,
    },
}

/// A real argon2id hash of nothing in particular: checking a password against it for an
/// unknown email takes as long as for a real account.
static DUMMY_HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// Checks a login from the client at `client`. The attempt is counted before the password
/// is checked, per (email, client) and per client, whether or not the account exists; a
/// client past either limit is refused without a check until its window ends.
pub async fn login(ctx: &Ctx, email: &str, password: &str, client: IpAddr) -> Result<Login> {
    let email = email.trim().to_lowercase();
    // No account has a longer email; a longer one is counted under its digest.
    let too_long = email.len() > 254;
    let account = if too_long {
        format!("#{}", api_key_hash(&email))
    } else {
        email.clone()
    };
    let keys = [format!("a:{account}|{client}"), format!("c:{client}")];
    let now = ctx.clock.now();
    let mut conn = ctx.pool.acquire().await?;
    let counts = login_db::reserve_login_attempt(&mut conn, &keys, now, now - LOGIN_WINDOW).await?;
    let over = counts
        .iter()
        .zip([MAX_LOGIN_FAILURES, MAX_CLIENT_LOGIN_FAILURES])
        .filter(|((_, attempts), limit)| attempts > limit)
        .map(|((start, _), _)| *start + LOGIN_WINDOW)
        .max();
    if let Some(ends) = over {
        let minutes = ((ends - now).whole_seconds() + 59) / 60;
        return Ok(Login::Throttled {
            minutes: minutes.max(1),
        });
    }
    let account = if too_long {
        None
    } else {
        login_db::credentials(&mut conn, &email).await?
    };
    drop(conn);
    let hash = match &account {
        Some(a) if a.password_hash != NO_PASSWORD => a.password_hash.clone(),
        _ => DUMMY_HASH
            .get_or_try_init(|| hash_password("dummy password for timing".into()))
            .await?
            .clone(),
    };
    let verified = verify_password(password.to_owned(), hash).await?;
    match account {
        Some(a) if verified && a.disabled => Ok(Login::Disabled),
        Some(a) if verified => {
            let mut conn = ctx.pool.acquire().await?;
            login_db::login_succeeded(&mut conn, &keys[0], &keys[1]).await?;
            Ok(Login::Ok {
                user_id: a.id,
                role: a.role,
                display_name: a.display_name,
            })
        }
        // the reserved attempt stays counted
        _ => Ok(Login::Invalid),
    }
}

/// Deletes expired sessions and login attempt counts whose window has ended; returns how
/// many rows went.
pub async fn clean_up_sessions(ctx: &Ctx) -> Result<u64> {
    let now = ctx.clock.now();
    let mut conn = ctx.pool.acquire().await?;
    let sessions = login_db::delete_expired_sessions(&mut conn, now).await?;
    let attempts = login_db::purge_login_attempts(&mut conn, now - LOGIN_WINDOW).await?;
    Ok(sessions + attempts)
}

/// The hex SHA-256 under which an API key is stored (keys are 256 random bits, so a fast
/// hash is enough; the key itself is never stored).
pub fn api_key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a staff user (CLI `create-staff`).
pub async fn create_staff(
    ctx: &Ctx,
    email: &str,
    password: &str,
    display_name: Option<&str>,
) -> Result<i64> {
    create_staff_as(
        ctx,
        email,
        password,
        display_name,
        crate::domain::StaffRole::Admin,
    )
    .await
}

/// A staff login with a role (admin, operator or viewer).
pub async fn create_staff_as(
    ctx: &Ctx,
    email: &str,
    password: &str,
    display_name: Option<&str>,
    role: crate::domain::StaffRole,
) -> Result<i64> {
    let email = Email::parse(email)?;
    let password = parse_password(password, email.as_str())?;
    let name = parse_display_name(
        display_name.unwrap_or_else(|| email.as_str().split('@').next().unwrap_or("staff")),
    )?;
    let hash = hash_password(password).await?;
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let id = insert_user(&mut tx, &email, &hash, "staff", &name, now).await?;
    login_db::set_staff_role(&mut tx, id, role.as_str(), now).await?;
    db::audit(
        &mut tx,
        None,
        "staff.create",
        "user",
        &id.to_string(),
        &json!({ "email": email.as_str(), "role": role.as_str() }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Creates an API key with every scope and returns it; only its hash is kept.
pub async fn create_api_key(ctx: &Ctx, name: &str, created_by: Option<i64>) -> Result<String> {
    create_api_key_scoped(ctx, name, &Scope::ALL, created_by).await
}

/// Creates an API key that may do what `scopes` name (at least one).
pub async fn create_api_key_scoped(
    ctx: &Ctx,
    name: &str,
    scopes: &[Scope],
    created_by: Option<i64>,
) -> Result<String> {
    if scopes.is_empty() {
        return Err(Error::validation(
            "scopes",
            "choose at least one scope: earn, use, read or coupons",
        ));
    }
    let scope_names: Vec<String> = Scope::ALL
        .iter()
        .filter(|s| scopes.contains(s))
        .map(|s| s.as_str().to_owned())
        .collect();
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::validation(
            "name",
            "key name must be 1 to 100 characters on one line",
        ));
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("mp_{}", hex::encode(secret));
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let id = db::insert_api_key(
        &mut tx,
        name,
        &api_key_hash(&key),
        &key[..11],
        &scope_names,
        created_by,
        now,
    )
    .await?;
    db::audit(
        &mut tx,
        created_by,
        "api_key.create",
        "api_key",
        &id.to_string(),
        &json!({ "name": name, "scopes": scope_names }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(key)
}

/// The id of a valid (unrevoked) key with the scope.
pub async fn authenticate_api_key(ctx: &Ctx, key: &str, scope: Scope) -> Result<i64> {
    authenticate_api_key_hash(ctx, &api_key_hash(key), scope).await
}

/// As [`authenticate_api_key`], from the key's hash.
pub async fn authenticate_api_key_hash(ctx: &Ctx, key_hash: &str, scope: Scope) -> Result<i64> {
    let mut conn = ctx.pool.acquire().await?;
    let (id, scopes) = db::use_api_key(&mut conn, key_hash, ctx.clock.now())
        .await?
        .ok_or(Error::Unauthorized)?;
    if !scopes.iter().any(|s| s == scope.as_str()) {
        return Err(Error::KeyScope {
            scope: scope.as_str(),
        });
    }
    Ok(id)
}

/// What an API key may do (migration 0021).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// create members, earn points, reverse earns
    Earn,
    /// use points, refund uses
    Use,
    /// every GET
    Read,
    /// redeem rewards; validate, consume, release and cancel coupons
    Coupons,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Earn, Scope::Use, Scope::Read, Scope::Coupons];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earn => "earn",
            Self::Use => "use",
            Self::Read => "read",
            Self::Coupons => "coupons",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw.trim())
    }

    /// The scope an API request needs, by its method and path.
    pub fn for_request(method: &str, path: &str) -> Self {
        let path = path.trim_end_matches('/');
        if matches!(method, "GET" | "HEAD") {
            Self::Read
        } else if path.ends_with("/points/use") || path.ends_with("/points/refund") {
            Self::Use
        } else if path.ends_with("/redemptions") || path.contains("/coupons/") {
            Self::Coupons
        } else {
            // earn, reverse, and creating members
            Self::Earn
        }
    }
}

/// How long a password link works.
pub const RESET_LINK_LIFE: time::Duration = time::Duration::minutes(30);
/// A "set your password" link for a member created without one lasts longer: it arrives
/// with the welcome, not on request.
pub const SET_LINK_LIFE: time::Duration = time::Duration::days(7);
/// Links one account may be sent in an hour (a stranger cannot flood a mailbox).
pub const LINKS_PER_HOUR: i64 = 3;

/// Why a password link is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    Reset,
    Set,
}

impl LinkPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Set => "set",
        }
    }
}

/// Sends a one-time password link for the account with this email, if there is an open
/// one: the token is stored hashed, and the link goes out through the outbox (webhook
/// `member.password_reset`). The caller says the same thing whether or not the account
/// exists.
pub async fn request_password_link(ctx: &Ctx, email: &str) -> Result<()> {
    let now = ctx.clock.now();
    let mut conn = ctx.pool.acquire().await?;
    let Some(user_id) = login_db::open_account(&mut conn, email.trim()).await? else {
        return Ok(());
    };
    if login_db::tokens_since(&mut conn, user_id, now - time::Duration::hours(1)).await?
        >= LINKS_PER_HOUR
    {
        tracing::info!(user_id, "password link not sent: too many this hour");
        return Ok(());
    }
    send_password_link(ctx, &mut conn, user_id, LinkPurpose::Reset, now).await
}

/// Writes a password link for `user_id` (in the caller's transaction, if any).
pub async fn send_password_link(
    ctx: &Ctx,
    conn: &mut sqlx::PgConnection,
    user_id: i64,
    purpose: LinkPurpose,
    now: time::OffsetDateTime,
) -> Result<()> {
    let token = {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        hex::encode(b)
    };
    let life = match purpose {
        LinkPurpose::Reset => RESET_LINK_LIFE,
        LinkPurpose::Set => SET_LINK_LIFE,
    };
    let expires_at = now + life;
    let link = format!("{}/password/reset?token={token}", ctx.config.public_url);
    let message = json!({
        "purpose": purpose.as_str(),
        "link": link,
        "expires_at": expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    });
    login_db::insert_token(
        conn,
        user_id,
        &api_key_hash(&token),
        purpose.as_str(),
        now,
        expires_at,
        &message,
    )
    .await?;
    Ok(())
}

/// Sets a new password with a link's token: the token and every other open one of the
/// account are spent. Returns the account.
pub async fn reset_password(ctx: &Ctx, token: &str, password: &str) -> Result<i64> {
    let now = ctx.clock.now();
    let hash_of = api_key_hash(token.trim());
    let mut tx = ctx.pool.begin().await?;
    let owner = login_db::take_token(&mut tx, &hash_of, now)
        .await?
        .ok_or_else(|| Error::invalid("token", crate::error::Invalid::LinkExpired))?;
    let password = parse_password(password, &owner.email)?;
    // hashed while the token's row is locked: a second use of the link waits, then finds
    // it spent
    let hash = hash_password(password).await?;
    let ended = login_db::set_password(&mut tx, owner.user_id, &hash, now).await?;
    db::audit(
        &mut tx,
        Some(owner.user_id),
        "member.password_set",
        "user",
        &owner.user_id.to_string(),
        &json!({ "purpose": owner.purpose, "sessions_ended": ended.len() }),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.cache.invalidate_sessions(&ended).await;
    Ok(owner.user_id)
}

/// Closes the member's own account after checking their password: the user row is
/// anonymised and can never log in again; the points ledger keeps its rows.
pub async fn close_account(ctx: &Ctx, user_id: i64, password: &str) -> Result<()> {
    let hash = {
        let mut conn = ctx.pool.acquire().await?;
        login_db::password_hash(&mut conn, user_id)
            .await?
            .ok_or(Error::MemberNotFound { user_id })?
    };
    if !verify_password(password.to_owned(), hash).await? {
        return Err(Error::validation("password", "the password is not right"));
    }
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let Some(ended) = login_db::close_account(&mut tx, user_id, now).await? else {
        return Err(Error::MemberNotFound { user_id });
    };
    db::audit(
        &mut tx,
        Some(user_id),
        "member.close",
        "member",
        &user_id.to_string(),
        &json!({}),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.cache.invalidate_members(&[user_id]).await;
    ctx.cache.invalidate_sessions(&ended).await;
    Ok(())
}

/// Records a session made at a login as the user's, so it can be ended with the others
/// (called by the session store).
pub async fn record_session(pool: &sqlx::PgPool, session_id: &str, user_id: i64) -> Result<()> {
    login_db::record_session(pool, session_id, user_id).await?;
    Ok(())
}
