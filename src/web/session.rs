//! Sessions: stored in PostgreSQL and read through the cache, cycled at login, idle expiry
//! 30 min (moved on at most once a minute) and absolute 12 h.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use time::{Duration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_sqlx_store::PostgresStore;

use crate::cache::Cache;
use crate::error::Error;

pub const USER_ID: &str = "user_id";
pub const ROLE: &str = "role";
pub const AUTH_AT: &str = "auth_at";
pub const CSRF: &str = "csrf";
pub const LANG: &str = "lang";
pub const NAME: &str = "display_name";
/// When the session's idle expiry was last moved on (unix seconds).
pub const SEEN_AT: &str = "seen_at";

/// A request moves the idle expiry on (a write) only when the last move is this old.
const REFRESH_SECS: i64 = 60;
/// How long a session read from PostgreSQL is served from the cache. Each save and delete
/// replaces the session's version token, so through Redis a cached session is never
/// served after it changed; in-process, another instance's change (several instances
/// without Redis) shows within this time.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

pub const IDLE: Duration = Duration::minutes(30);
pub const ABSOLUTE: Duration = Duration::hours(12);

/// The PostgreSQL store with every call run on its own task: the session layer saves from
/// the response future, and a client that disconnects must not cancel a store call
/// half-way (sqlx's `begin` is not cancel-safe: transact-rs/sqlx#4393). A session made at a
/// login is recorded as its user's (`user_sessions`), so a password reset or a closed
/// account can end it on every browser.
#[derive(Debug, Clone)]
pub struct DetachedStore {
    store: PostgresStore,
    pool: sqlx::PgPool,
}

impl DetachedStore {
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self {
            store: PostgresStore::new(pool.clone()),
            pool,
        }
    }
}

fn join_error(e: tokio::task::JoinError) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait::async_trait]
impl SessionStore for DetachedStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let (store, pool, mut owned) = (self.store.clone(), self.pool.clone(), record.clone());
        let user_id = owned.data.get(USER_ID).and_then(|v| v.as_i64());
        let created = tokio::spawn(async move {
            store.create(&mut owned).await?;
            if let Some(user_id) = user_id {
                crate::service::accounts::record_session(&pool, &owned.id.to_string(), user_id)
                    .await
                    .map_err(|e| session_store::Error::Backend(e.to_string()))?;
            }
            Ok::<_, session_store::Error>(owned)
        })
        .await
        .map_err(join_error)??;
        *record = created;
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (store, owned) = (self.store.clone(), record.clone());
        tokio::spawn(async move { store.save(&owned).await })
            .await
            .map_err(join_error)?
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let (store, id) = (self.store.clone(), *id);
        tokio::spawn(async move { store.load(&id).await })
            .await
            .map_err(join_error)?
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let (store, id) = (self.store.clone(), *id);
        tokio::spawn(async move { store.delete(&id).await })
            .await
            .map_err(join_error)?
    }
}

/// Sessions read through the cache: a page view costs no PostgreSQL round trip for its
/// session while the session is unchanged.
#[derive(Clone)]
pub struct CachedStore {
    db: DetachedStore,
    cache: Cache,
    /// the members' sessions this instance has read (a session's user never changes: a
    /// login gets a new id), so that the next read fetches the member's page-view entries
    /// with the session, and no read works out the same keys again (a SHA-256 and a dozen
    /// strings were a tenth of a page view's instructions)
    known: moka::sync::Cache<Id, Arc<Known>, foldhash::fast::RandomState>,
}

/// A member's session, as [`CachedStore`] remembers it.
struct Known {
    user_id: i64,
    /// the session's cache entry and version key
    entry: (String, String),
    /// what the member's page view reads ([`crate::cache::Keys::page_view`]); with Redis
    /// only (the in-process cache reads nothing ahead)
    page_view: Vec<(String, String)>,
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore").finish_non_exhaustive()
    }
}

impl CachedStore {
    pub fn new(pool: sqlx::PgPool, cache: Cache) -> Self {
        Self {
            db: DetachedStore::new(pool),
            cache,
            known: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_idle(std::time::Duration::from_secs(IDLE.whole_seconds() as u64))
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// The session's cache entry and version key.
    fn entry(&self, id: &Id, known: Option<&Known>) -> (String, String) {
        match known {
            Some(k) => k.entry.clone(),
            None => self.cache.keys.session_entry(id),
        }
    }

    /// Remembers a member's session the first time it is read (and again should its user
    /// ever differ).
    fn remember_user(&self, record: &Record, known: Option<&Known>, entry: (String, String)) {
        let Some(user_id) = record.data.get(USER_ID).and_then(|v| v.as_i64()) else {
            return;
        };
        if known.is_some_and(|k| k.user_id == user_id) {
            return;
        }
        let page_view = if self.cache.is_redis() {
            self.cache.keys.page_view(&entry, user_id)
        } else {
            Vec::new()
        };
        let known = Known {
            user_id,
            entry,
            page_view,
        };
        self.known.insert(record.id, Arc::new(known));
    }

    async fn forget(&self, id: &Id) {
        let (key, version) = self.entry(id, self.known.get(id).as_deref());
        self.cache.invalidate(vec![key], vec![version]).await;
    }
}

#[async_trait::async_trait]
impl SessionStore for CachedStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.db.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.db.save(record).await?;
        self.forget(&record.id).await;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let known = self.known.get(id);
        // A member's session we have seen: the session and what the page will show of the
        // member, in one round trip (with Redis; the in-process cache needs none).
        if let Some(k) = known.as_deref().filter(|k| !k.page_view.is_empty()) {
            self.cache.read_ahead(&k.page_view).await;
        }
        let entry = self.entry(id, known.as_deref());
        let (cached, stamp) = self.cache.get::<Record>(&entry.0, &entry.1).await;
        if let Some(record) = cached.filter(|r| r.id == *id) {
            if record.expiry_date > OffsetDateTime::now_utc() {
                self.remember_user(&record, known.as_deref(), entry);
                return Ok(Some(record));
            }
        }
        let record = self.db.load(id).await?;
        if let Some(r) = &record {
            self.cache.set(&entry.0, &stamp, r, CACHE_TTL).await;
            self.remember_user(r, known.as_deref(), entry);
        }
        Ok(record)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.db.delete(id).await?;
        self.forget(id).await;
        Ok(())
    }
}

pub fn layer(pool: sqlx::PgPool, cache: Cache, secure: bool) -> SessionManagerLayer<CachedStore> {
    SessionManagerLayer::new(CachedStore::new(pool, cache))
        .with_name("mp_session")
        .with_http_only(true)
        .with_same_site(tower_sessions::cookie::SameSite::Lax)
        .with_secure(secure)
        .with_expiry(Expiry::OnInactivity(IDLE))
}

/// Who is logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    pub user_id: i64,
    pub role: String,
    /// a staff account's role, as the account has it now (read on each staff request)
    pub staff_role: Option<crate::domain::StaffRole>,
}

impl CurrentUser {
    pub fn is_staff(&self) -> bool {
        self.role == "staff"
    }
}

/// The logged-in user of this session, if any and if the login is under 12 hours old.
pub async fn current_user(
    session: &Session,
    now: OffsetDateTime,
) -> Result<Option<CurrentUser>, Error> {
    let user_id: Option<i64> = session.get(USER_ID).await.map_err(internal)?;
    let Some(user_id) = user_id else {
        return Ok(None);
    };
    let auth_at: Option<i64> = session.get(AUTH_AT).await.map_err(internal)?;
    let fresh = auth_at.is_some_and(|t| now.unix_timestamp() - t < ABSOLUTE.whole_seconds());
    if !fresh {
        session.flush().await.map_err(internal)?;
        return Ok(None);
    }
    // activity keeps the session alive: its idle expiry moves on with a save, at most
    // once a minute
    let seen: Option<i64> = session.get(SEEN_AT).await.map_err(internal)?;
    if seen.is_none_or(|t| now.unix_timestamp() - t >= REFRESH_SECS) {
        session
            .insert(SEEN_AT, now.unix_timestamp())
            .await
            .map_err(internal)?;
    }
    let role: String = session
        .get(ROLE)
        .await
        .map_err(internal)?
        .unwrap_or_default();
    Ok(Some(CurrentUser {
        user_id,
        role,
        staff_role: None,
    }))
}

/// Logs the user in: a new session id (no fixation), a new CSRF token.
pub async fn log_in(
    session: &Session,
    user_id: i64,
    role: &str,
    display_name: &str,
    now: OffsetDateTime,
) -> Result<(), Error> {
    session.cycle_id().await.map_err(internal)?;
    session.insert(USER_ID, user_id).await.map_err(internal)?;
    session.insert(ROLE, role).await.map_err(internal)?;
    session.insert(NAME, display_name).await.map_err(internal)?;
    for key in [AUTH_AT, SEEN_AT] {
        session
            .insert(key, now.unix_timestamp())
            .await
            .map_err(internal)?;
    }
    session.insert(CSRF, new_token()).await.map_err(internal)?;
    Ok(())
}

/// The session's CSRF token, if it has one.
pub async fn existing_csrf(session: &Session) -> Result<Option<String>, Error> {
    session.get::<String>(CSRF).await.map_err(internal)
}

/// The session's CSRF token, created on first use.
pub async fn csrf_token(session: &Session) -> Result<String, Error> {
    if let Some(t) = session.get::<String>(CSRF).await.map_err(internal)? {
        return Ok(t);
    }
    let t = new_token();
    session.insert(CSRF, &t).await.map_err(internal)?;
    Ok(t)
}

pub fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn internal(e: tower_sessions::session::Error) -> Error {
    Error::Internal(anyhow::anyhow!("session: {e}"))
}

/// The request's session (the session layer always provides one).
pub async fn from_parts<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<Session, Error> {
    Session::from_request_parts(parts, state)
        .await
        .map_err(|(_, msg)| Error::Internal(anyhow::anyhow!("no session: {msg}")))
}
