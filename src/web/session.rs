//! Sessions: stored in PostgreSQL, cycled at login, idle expiry 30 min and absolute 12 h.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use time::{Duration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_sqlx_store::PostgresStore;

use crate::error::Error;

pub const USER_ID: &str = "user_id";
pub const ROLE: &str = "role";
pub const AUTH_AT: &str = "auth_at";
pub const CSRF: &str = "csrf";
pub const LANG: &str = "lang";
pub const NAME: &str = "display_name";

pub const IDLE: Duration = Duration::minutes(30);
pub const ABSOLUTE: Duration = Duration::hours(12);

/// The PostgreSQL store with every call run on its own task: the session layer saves from
/// the response future, and a client that disconnects must not cancel a store call
/// half-way (sqlx's `begin` is not cancel-safe; see DEPENDENCIES.md).
#[derive(Debug, Clone)]
pub struct DetachedStore(PostgresStore);

impl DetachedStore {
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self(PostgresStore::new(pool))
    }
}

fn join_error(e: tokio::task::JoinError) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait::async_trait]
impl SessionStore for DetachedStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let (store, mut owned) = (self.0.clone(), record.clone());
        let created = tokio::spawn(async move { store.create(&mut owned).await.map(|_| owned) })
            .await
            .map_err(join_error)??;
        *record = created;
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (store, owned) = (self.0.clone(), record.clone());
        tokio::spawn(async move { store.save(&owned).await })
            .await
            .map_err(join_error)?
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let (store, id) = (self.0.clone(), *id);
        tokio::spawn(async move { store.load(&id).await })
            .await
            .map_err(join_error)?
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let (store, id) = (self.0.clone(), *id);
        tokio::spawn(async move { store.delete(&id).await })
            .await
            .map_err(join_error)?
    }
}

pub fn layer(pool: sqlx::PgPool, secure: bool) -> SessionManagerLayer<DetachedStore> {
    SessionManagerLayer::new(DetachedStore::new(pool))
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
    let role: String = session
        .get(ROLE)
        .await
        .map_err(internal)?
        .unwrap_or_default();
    Ok(Some(CurrentUser { user_id, role }))
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
    session
        .insert(AUTH_AT, now.unix_timestamp())
        .await
        .map_err(internal)?;
    session.insert(CSRF, new_token()).await.map_err(internal)?;
    Ok(())
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
