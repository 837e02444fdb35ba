//! Cache and per-member lock (SPEC §3.7–3.8): Redis when `REDIS_URL` is set, in-process
//! otherwise. Redis is never needed for correctness: every Redis failure or timeout is
//! logged, counted, and answered as a cache miss (reads go to PostgreSQL) or as "no
//! advisory lock" (the member's row lock still serialises the operation).

mod lock;

pub use lock::{LockGuard, Locker};

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Serialize, de::DeserializeOwned};

/// Keys of the seed's CacheManager, behind an optional prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn profile(&self, user_id: i64) -> String {
        format!("{}member_system:profile:{user_id}", self.prefix)
    }

    pub fn points(&self, user_id: i64) -> String {
        format!("{}member_system:points:{user_id}", self.prefix)
    }

    /// The member's count of unread notifications (for the navigation of every page).
    pub fn unread(&self, user_id: i64) -> String {
        format!("{}member_system:unread:{user_id}", self.prefix)
    }

    pub fn levels(&self) -> String {
        format!("{}member_system:levels", self.prefix)
    }

    /// The token every cached entry of the member is stamped with; replaced on each write.
    pub fn member_version(&self, user_id: i64) -> String {
        format!("{}member_system:version:{user_id}", self.prefix)
    }

    /// Bumped by an instance that failed to reach Redis, once it reaches it again: every
    /// entry is stamped with the epoch too, so entries that a failed invalidation should
    /// have dropped are never served after the outage.
    pub fn epoch(&self) -> String {
        format!("{}member_system:epoch", self.prefix)
    }

    pub fn levels_version(&self) -> String {
        format!("{}member_system:levels:version", self.prefix)
    }

    /// A browser session, by a digest of its id (the id itself is a secret).
    pub fn session(&self, digest: &str) -> String {
        format!("{}member_system:session:{digest}", self.prefix)
    }

    pub fn session_version(&self, digest: &str) -> String {
        format!("{}member_system:session:version:{digest}", self.prefix)
    }

    /// The cache entry and version token of the session with this id.
    pub fn session_entry(&self, id: &tower_sessions::session::Id) -> (String, String) {
        let digest = <sha2::Sha256 as sha2::Digest>::digest(id.0.to_le_bytes());
        let digest = hex::encode(&digest[..16]);
        (self.session(&digest), self.session_version(&digest))
    }

    /// What a member's page view reads (entry, version key): the session (its
    /// [`Self::session_entry`]), the member's record, points summary and unread count, and
    /// the levels.
    pub fn page_view(
        &self,
        session_entry: &(String, String),
        user_id: i64,
    ) -> Vec<(String, String)> {
        let version = self.member_version(user_id);
        vec![
            session_entry.clone(),
            (self.profile(user_id), version.clone()),
            (self.points(user_id), version.clone()),
            (self.unread(user_id), version),
            (self.levels(), self.levels_version()),
        ]
    }

    pub fn points_lock(&self, user_id: i64) -> String {
        format!("{}lock:points:{user_id}", self.prefix)
    }
}

/// A Redis connection that is made lazily and whose every operation has a deadline.
#[derive(Clone)]
pub struct RedisConn {
    manager: ConnectionManager,
    timeout: Duration,
    /// interactions so far (a pipeline is one): what a request costs, for tests and benches
    round_trips: Arc<AtomicU64>,
}

impl RedisConn {
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let manager = client.get_connection_manager_lazy(config)?;
        Ok(Self {
            manager,
            timeout,
            round_trips: Arc::default(),
        })
    }

    /// Round trips made so far on this connection (a pipeline counts once).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Runs one Redis interaction under the operation deadline.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, f(self.manager.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisFailure::Error(e)),
            Err(_) => Err(RedisFailure::Timeout),
        }
    }

    /// `MGET` of `keys`: one answer per key, in order.
    async fn mget(&self, keys: &[String]) -> Result<Vec<Option<String>>, RedisFailure> {
        let values = self
            .run(|mut c| async move {
                redis::cmd("MGET")
                    .arg(keys)
                    .query_async::<Vec<Option<String>>>(&mut c)
                    .await
            })
            .await?;
        if values.len() == keys.len() {
            Ok(values)
        } else {
            Err(RedisFailure::Error(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "MGET answered a different number of values",
            ))))
        }
    }

    pub async fn ping(&self) -> bool {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .is_ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("redis error: {0}")]
    Error(redis::RedisError),
    #[error("redis operation timed out")]
    Timeout,
}

/// Counters of how the cache is doing, also exported as metrics.
#[derive(Debug)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub redis_fallbacks: AtomicU64,
    /// Redis hits served from this instance's parsed copy (no entry read, no JSON parsed).
    pub copy_hits: AtomicU64,
    /// The exported series, looked up once: `counter!` finds its series by name on every
    /// call, and a page view counts five cache reads.
    hits_metric: metrics::Counter,
    misses_metric: metrics::Counter,
}

impl Default for CacheStats {
    fn default() -> Self {
        Self {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            redis_fallbacks: AtomicU64::new(0),
            copy_hits: AtomicU64::new(0),
            hits_metric: metrics::counter!("member_system_cache_hits_total"),
            misses_metric: metrics::counter!("member_system_cache_misses_total"),
        }
    }
}

impl CacheStats {
    fn hit(&self) {
        self.hits_metric.increment(1);
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    fn miss(&self) {
        self.misses_metric.increment(1);
        self.misses.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
enum Backend {
    Redis(RedisConn),
    /// Values with their own deadline (entries of different kinds have different TTLs).
    /// The synchronous cache: a read neither waits nor yields, so it needs no future of its
    /// own (each read of the `future` cache was a state machine to build and poll).
    Local(LocalStore),
}

type LocalStore = moka::sync::Cache<String, (Local, Instant), foldhash::fast::RandomState>;

/// What the in-process cache holds: version tokens, and values as they are (no JSON: a
/// hit clones the value instead of parsing text, the biggest item a cached page paid).
#[derive(Clone)]
enum Local {
    Token(Arc<str>),
    Value {
        version: Arc<str>,
        data: Arc<dyn std::any::Any + Send + Sync>,
    },
}

/// Types the cache holds: JSON for Redis, the value itself in process.
pub trait Cacheable: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Cacheable for T {}

/// Redis failures this instance has seen, and how many of them a bump of the epoch has
/// covered. While `failures > fenced`, Redis entries are not trusted: the next operation
/// (or the background probe) bumps the epoch first.
#[derive(Debug, Default)]
struct Fence {
    failures: AtomicU64,
    fenced: AtomicU64,
    probing: std::sync::atomic::AtomicBool,
}

impl Fence {
    /// The failure count an epoch bump must cover, or None when all are covered.
    fn pending(&self) -> Option<u64> {
        let failures = self.failures.load(Ordering::SeqCst);
        (failures > self.fenced.load(Ordering::SeqCst)).then_some(failures)
    }
}

/// With Redis, the values this instance last read or stored, parsed, each with the stamp
/// (version token @ epoch) it was stored under and a deadline. A copy is served only when
/// the version and epoch just read from Redis still give that stamp, so it is exactly as
/// fresh as the Redis entry it stands for; a warm page view then reads only version keys
/// and parses nothing.
type Copies = moka::sync::Cache<
    String,
    (Arc<str>, Arc<dyn std::any::Any + Send + Sync>, Instant),
    foldhash::fast::RandomState,
>;

/// How long a parsed copy lives at most (entries' own TTLs are longer; a copy is
/// re-validated on every read, the bound only keeps the map small).
const COPY_TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Cache {
    backend: Backend,
    copies: Copies,
    pub keys: Keys,
    pub stats: Arc<CacheStats>,
    fence: Arc<Fence>,
    /// How long version tokens live: longer than any entry, so an entry never outlives
    /// the token it was checked against.
    version_ttl: Duration,
}

/// The version token (and epoch) a read saw. An entry is stored with the token that was
/// current *before* its data was read from PostgreSQL; a write that commits in between
/// replaces the token, so that entry is never served (the race where a slow reader stores
/// a value older than the latest write). `None`: Redis could not be read, store nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Option<Arc<str>>);

impl Stamp {
    /// Whether this stamp vouches for something stored under `other`: both known and the
    /// same (an unknown stamp, Redis having failed, vouches for nothing).
    pub fn matches(&self, other: &Stamp) -> bool {
        self.is_known() && self == other
    }

    /// Whether the version token could be read (not when Redis failed).
    pub fn is_known(&self) -> bool {
        self.0.is_some()
    }
}

/// Pages this instance rendered lately, by member and page, each with what it was rendered
/// from (the web layer checks that before serving one again). Seconds at most.
pub type Rendered = moka::sync::Cache<
    (i64, &'static str),
    Arc<dyn std::any::Any + Send + Sync>,
    foldhash::fast::RandomState,
>;

/// How long a rendered page is kept at most. Its entries' version tokens vouch for it, as
/// for the entries themselves; this bounds what they do not cover, as the entries' own
/// TTLs do (a rolling tier window moving on without a write).
pub const RENDERED_TTL: Duration = Duration::from_secs(5);

pub fn rendered() -> Rendered {
    moka::sync::Cache::builder()
        .max_capacity(5_000)
        .time_to_live(RENDERED_TTL)
        .build_with_hasher(foldhash::fast::RandomState::default())
}

#[derive(serde::Serialize)]
struct EnvelopeOut<'a, T> {
    v: &'a str,
    d: &'a T,
}

#[derive(serde::Deserialize)]
struct EnvelopeIn<T> {
    v: String,
    d: T,
}

tokio::task_local! {
    /// Redis answers read ahead for the request being answered ([`Cache::read_ahead`]):
    /// key → value, each read in the same `MGET` as its version key and the epoch.
    static AHEAD: RefCell<HashMap<String, Option<String>>>;
}

/// Runs a request with room for the answers [`Cache::read_ahead`] fetches for it (the web
/// layer wraps every request).
pub async fn with_read_ahead<F: Future>(f: F) -> F::Output {
    AHEAD.scope(RefCell::new(HashMap::new()), f).await
}

/// The in-process version token under `version_key` (empty when there is none yet).
fn local_token(store: &LocalStore, version_key: &str, now: Instant) -> Arc<str> {
    match store.get(version_key) {
        Some((Local::Token(t), deadline)) if deadline > now => t,
        _ => Arc::from(""),
    }
}

/// The stamp of a version token and epoch as Redis answered them.
fn stamp_of(version: Option<String>, epoch: Option<String>) -> Stamp {
    let (version, epoch) = (version.unwrap_or_default(), epoch.unwrap_or_default());
    Stamp(Some(Arc::from(format!("{version}@{epoch}"))))
}

/// What was read ahead for an entry: the entry itself (None when it was not read, because
/// a parsed copy stood for it) and the stamp its version and the epoch give; None unless
/// both of those were read ahead.
fn ahead_entry(
    key: &str,
    version_key: &str,
    epoch_key: &str,
) -> Option<(Option<Option<String>>, Stamp)> {
    AHEAD
        .try_with(|m| {
            let m = m.borrow();
            let version = m.get(version_key)?.clone();
            let epoch = m.get(epoch_key)?.clone();
            Some((m.get(key).cloned(), stamp_of(version, epoch)))
        })
        .ok()
        .flatten()
}

/// Read-ahead answers that a write of this request has made stale.
fn forget_ahead<'a>(keys: impl IntoIterator<Item = &'a String>) {
    let _ = AHEAD.try_with(|m| {
        let mut m = m.borrow_mut();
        for k in keys {
            m.remove(k);
        }
    });
}

impl Cache {
    /// Reads `pairs` (entry key, version key) and the epoch in one `MGET`, for the
    /// [`Self::get`]s of this request that follow: a page view reads everything it shows
    /// in one round trip. An entry this instance holds a parsed copy of is not read, only
    /// its version (the copy is served if the version still matches). Nothing with the
    /// in-process cache, outside a request, or when Redis fails (each `get` then asks for
    /// itself, as without it).
    pub async fn read_ahead(&self, pairs: &[(String, String)]) {
        let Backend::Redis(conn) = &self.backend else {
            return;
        };
        if AHEAD.try_with(|_| ()).is_err() || !self.fenced(conn).await {
            return;
        }
        let mut keys: Vec<String> = Vec::with_capacity(pairs.len() * 2 + 1);
        for (k, v) in pairs {
            let entry = (!self.copies.contains_key(k)).then_some(k);
            for key in entry.into_iter().chain([v]) {
                if !keys.contains(key) {
                    keys.push(key.clone());
                }
            }
        }
        keys.push(self.keys.epoch());
        match conn.mget(&keys).await {
            Ok(values) => {
                let _ = AHEAD.try_with(|m| m.borrow_mut().extend(keys.into_iter().zip(values)));
            }
            Err(e) => self.fallback("get", &e),
        }
    }

    /// `longest_ttl`: the longest TTL any entry is given.
    pub fn redis(conn: RedisConn, keys: Keys, longest_ttl: Duration) -> Self {
        Self {
            backend: Backend::Redis(conn),
            copies: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(COPY_TTL)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            keys,
            stats: Arc::default(),
            fence: Arc::default(),
            version_ttl: longest_ttl + Duration::from_secs(3600),
        }
    }

    pub fn local(keys: Keys, longest_ttl: Duration) -> Self {
        let store = moka::sync::Cache::builder()
            .max_capacity(200_000)
            // bounds entries and version tokens alike, so tokens still outlive entries
            .time_to_live(Duration::from_secs(24 * 3600))
            // keys are this program's own (ids, digests); foldhash, seeded per process,
            // hashes them in a fraction of SipHash's time
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            backend: Backend::Local(store),
            // the in-process cache holds values as they are; it needs no copies
            copies: moka::sync::Cache::builder()
                .max_capacity(0)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            keys,
            stats: Arc::default(),
            fence: Arc::default(),
            version_ttl: longest_ttl + Duration::from_secs(3600),
        }
    }

    pub fn is_redis(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    pub fn redis_conn(&self) -> Option<&RedisConn> {
        match &self.backend {
            Backend::Redis(c) => Some(c),
            Backend::Local(_) => None,
        }
    }

    /// A cached value if it was stored under the current version token, and the token to
    /// store a fresh value with (one round trip: `MGET key version`). `None` on a miss, a
    /// stale or unreadable entry, or when Redis fails (then a warning and a fallback are
    /// recorded and the caller reads PostgreSQL).
    pub async fn get<T: Cacheable>(&self, key: &str, version_key: &str) -> (Option<T>, Stamp) {
        let (value, stamp) = match &self.backend {
            Backend::Local(store) => {
                let now = Instant::now();
                let live =
                    |e: Option<(Local, Instant)>| e.filter(|(_, d)| *d > now).map(|(v, _)| v);
                let version = local_token(store, version_key, now);
                let value = match live(store.get(key)) {
                    Some(Local::Value { version: v, data }) if v == version => {
                        data.downcast_ref::<T>().cloned()
                    }
                    _ => None,
                };
                (value, Stamp(Some(version)))
            }
            Backend::Redis(conn) => {
                if !self.fenced(conn).await {
                    return self.miss(Stamp(None));
                }
                let epoch_key = self.keys.epoch();
                // the version and epoch read ahead: a copy that still matches needs no more
                if let Some((raw, stamp)) = ahead_entry(key, version_key, &epoch_key) {
                    if let Some(v) = self.copy::<T>(key, &stamp) {
                        return self.copy_hit(v, stamp);
                    }
                    if let Some(raw) = raw {
                        return self.parsed(key, raw, stamp);
                    }
                }
                let keys = [key.to_owned(), version_key.to_owned(), epoch_key];
                return match conn.mget(&keys).await {
                    Ok(v) => {
                        let mut v = v.into_iter();
                        let raw = v.next().flatten();
                        let stamp = stamp_of(v.next().flatten(), v.next().flatten());
                        match self.copy::<T>(key, &stamp) {
                            Some(value) => self.copy_hit(value, stamp),
                            None => self.parsed(key, raw, stamp),
                        }
                    }
                    Err(e) => {
                        self.fallback("get", &e);
                        self.miss(Stamp(None))
                    }
                };
            }
        };
        match value {
            Some(v) => {
                self.stats.hit();
                (Some(v), stamp)
            }
            None => self.miss(stamp),
        }
    }

    /// The stamp an entry checked against `version_key` is served and stored with now,
    /// without reading any entry: what something worked out from cached entries (a page
    /// rendered from them) is checked against. With Redis, from what the request read ahead
    /// when it has it (no round trip), else one `MGET`; unknown when Redis fails.
    pub async fn stamp(&self, version_key: &str) -> Stamp {
        match &self.backend {
            Backend::Local(store) => Stamp(Some(local_token(store, version_key, Instant::now()))),
            Backend::Redis(conn) => {
                if !self.fenced(conn).await {
                    return Stamp(None);
                }
                let epoch_key = self.keys.epoch();
                if let Some((_, stamp)) = ahead_entry(version_key, version_key, &epoch_key) {
                    return stamp;
                }
                match conn.mget(&[version_key.to_owned(), epoch_key]).await {
                    Ok(v) => {
                        let mut v = v.into_iter();
                        stamp_of(v.next().flatten(), v.next().flatten())
                    }
                    Err(e) => {
                        self.fallback("get", &e);
                        Stamp(None)
                    }
                }
            }
        }
    }

    /// The cached value, else `load`'s, stored with the stamp read before loading (so a
    /// write that commits meanwhile keeps it from being served).
    pub async fn get_or_load<T, E, Fut>(
        &self,
        key: &str,
        version_key: &str,
        ttl: Duration,
        load: impl FnOnce() -> Fut,
    ) -> Result<T, E>
    where
        T: Cacheable,
        Fut: Future<Output = Result<T, E>>,
    {
        let (cached, stamp) = self.get::<T>(key, version_key).await;
        if let Some(v) = cached {
            return Ok(v);
        }
        let v = load().await?;
        self.set(key, &stamp, &v, ttl).await;
        Ok(v)
    }

    /// This instance's parsed copy of `key`, if it was stored under `stamp`.
    fn copy<T: Cacheable>(&self, key: &str, stamp: &Stamp) -> Option<T> {
        let want = stamp.0.as_deref()?;
        let (have, data, deadline) = self.copies.get(key)?;
        (*have == *want && deadline > Instant::now())
            .then(|| data.downcast_ref::<T>().cloned())
            .flatten()
    }

    fn keep_copy<T: Cacheable>(&self, key: &str, stamp: &Stamp, value: &T, ttl: Duration) {
        if let Some(v) = &stamp.0 {
            let deadline = Instant::now() + ttl.min(COPY_TTL);
            self.copies.insert(
                key.to_owned(),
                (v.clone(), Arc::new(value.clone()), deadline),
            );
        }
    }

    fn copy_hit<T>(&self, value: T, stamp: Stamp) -> (Option<T>, Stamp) {
        self.stats.copy_hits.fetch_add(1, Ordering::Relaxed);
        self.stats.hit();
        (Some(value), stamp)
    }

    /// A Redis entry as read: served (and kept as a copy) if it carries `stamp`.
    fn parsed<T: Cacheable>(
        &self,
        key: &str,
        raw: Option<String>,
        stamp: Stamp,
    ) -> (Option<T>, Stamp) {
        let value = raw
            .and_then(|r| serde_json::from_str::<EnvelopeIn<T>>(&r).ok())
            .filter(|e| stamp.0.as_deref() == Some(e.v.as_str()))
            .map(|e| e.d);
        match value {
            Some(v) => {
                self.keep_copy(key, &stamp, &v, COPY_TTL);
                self.stats.hit();
                (Some(v), stamp)
            }
            None => self.miss(stamp),
        }
    }

    fn miss<T>(&self, stamp: Stamp) -> (Option<T>, Stamp) {
        self.stats.miss();
        (None, stamp)
    }

    /// Whether Redis entries may be trusted: after a failure, only once this instance has
    /// bumped the epoch (which voids every entry stored before it).
    async fn fenced(&self, conn: &RedisConn) -> bool {
        let Some(failures) = self.fence.pending() else {
            return true;
        };
        match self.bump_epoch(conn, failures).await {
            Ok(()) => true,
            Err(e) => {
                self.fallback("get", &e);
                false
            }
        }
    }

    /// `INCR` of the epoch; on success the failures up to `failures` count as fenced.
    async fn bump_epoch(&self, conn: &RedisConn, failures: u64) -> Result<(), RedisFailure> {
        let key = self.keys.epoch();
        conn.run(
            |mut c| async move { redis::cmd("INCR").arg(key).query_async::<i64>(&mut c).await },
        )
        .await?;
        // covers the failures seen before the INCR, not any that came after
        self.fence.fenced.fetch_max(failures, Ordering::SeqCst);
        // every answer read ahead carries the old epoch
        let _ = AHEAD.try_with(|m| m.borrow_mut().clear());
        tracing::info!("redis reachable again; cache epoch bumped");
        Ok(())
    }

    /// Stores a value read after `get` returned `stamp`.
    pub async fn set<T: Cacheable>(&self, key: &str, stamp: &Stamp, value: &T, ttl: Duration) {
        let Some(v) = &stamp.0 else {
            return;
        };
        match &self.backend {
            Backend::Local(store) => {
                let entry = Local::Value {
                    version: v.clone(),
                    data: Arc::new(value.clone()),
                };
                store.insert(key.to_owned(), (entry, Instant::now() + ttl));
            }
            Backend::Redis(conn) => {
                let Ok(raw) = serde_json::to_string(&EnvelopeOut { v, d: value }) else {
                    return;
                };
                self.keep_copy(key, stamp, value, ttl);
                let k = key.to_owned();
                let secs = ttl.as_secs().max(1);
                if let Err(e) = conn
                    .run(|mut c| async move {
                        redis::cmd("SET")
                            .arg(k)
                            .arg(raw)
                            .arg("EX")
                            .arg(secs)
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await
                {
                    self.fallback("set", &e);
                }
            }
        }
    }

    /// Deletes entries and replaces version tokens, in one pipeline (one round trip
    /// however many members).
    pub async fn invalidate(&self, keys: Vec<String>, version_keys: Vec<String>) {
        self.invalidate_then(keys, version_keys, Vec::new()).await;
    }

    /// As [`Self::invalidate`], with Redis running `then` last in the same pipeline;
    /// whether it was sent (not with the in-process cache).
    async fn invalidate_then(
        &self,
        keys: Vec<String>,
        version_keys: Vec<String>,
        then: Vec<redis::Cmd>,
    ) -> bool {
        if keys.is_empty() && version_keys.is_empty() && then.is_empty() {
            return false;
        }
        forget_ahead(keys.iter().chain(&version_keys));
        for k in &keys {
            self.copies.invalidate(k);
        }
        let tokens: Vec<(String, String)> = version_keys
            .into_iter()
            .map(|k| (k, crate::random_uuid().simple().to_string()))
            .collect();
        match &self.backend {
            Backend::Local(store) => {
                let deadline = Instant::now() + self.version_ttl;
                for (k, token) in tokens {
                    store.insert(k, (Local::Token(Arc::from(token)), deadline));
                }
                for k in keys {
                    store.invalidate(&k);
                }
                false
            }
            Backend::Redis(conn) => {
                let secs = self.version_ttl.as_secs().max(1);
                let result = conn
                    .run(|mut c| async move {
                        let mut pipe = redis::pipe();
                        for (k, token) in &tokens {
                            pipe.cmd("SET")
                                .arg(k)
                                .arg(token)
                                .arg("EX")
                                .arg(secs)
                                .ignore();
                        }
                        for k in &keys {
                            pipe.del(k).ignore();
                        }
                        for cmd in &then {
                            pipe.add_command(cmd.clone()).ignore();
                        }
                        pipe.query_async::<()>(&mut c).await
                    })
                    .await;
                if let Err(e) = result {
                    // The entries may now outlive the change; their TTL bounds how long.
                    self.fallback("invalidate", &e);
                }
                true
            }
        }
    }

    /// Drops the profile, points and unread-count entries of these members.
    pub async fn invalidate_members(&self, user_ids: &[i64]) {
        self.invalidate_members_then(user_ids, Vec::new()).await;
    }

    /// As [`Self::invalidate_members`], with Redis running `then` in the same round trip
    /// (the points locks' release); whether it was sent.
    pub(crate) async fn invalidate_members_then(
        &self,
        user_ids: &[i64],
        then: Vec<redis::Cmd>,
    ) -> bool {
        let keys = user_ids
            .iter()
            .flat_map(|&u| {
                [
                    self.keys.profile(u),
                    self.keys.points(u),
                    self.keys.unread(u),
                ]
            })
            .collect();
        let versions = user_ids
            .iter()
            .map(|&u| self.keys.member_version(u))
            .collect();
        self.invalidate_then(keys, versions, then).await
    }

    /// Drops the cached copies of these sessions (by their ids as stored), so an ended
    /// session is not served from the cache.
    pub async fn invalidate_sessions(&self, ids: &[String]) {
        let (keys, versions) = ids
            .iter()
            .filter_map(|s| s.parse::<tower_sessions::session::Id>().ok())
            .map(|id| self.keys.session_entry(&id))
            .unzip();
        self.invalidate(keys, versions).await;
    }

    /// After a failure, bumps the epoch as soon as Redis answers again, even if no request
    /// comes (one probe task at a time, every 100 ms).
    fn probe_until_fenced(&self) {
        let Backend::Redis(conn) = &self.backend else {
            return;
        };
        if self.fence.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.fence.probing.store(false, Ordering::SeqCst);
            return;
        };
        let (this, conn) = (self.clone(), conn.clone());
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(failures) = this.fence.pending() else {
                    break;
                };
                if this.bump_epoch(&conn, failures).await.is_ok() {
                    break;
                }
            }
            this.fence.probing.store(false, Ordering::SeqCst);
            // a failure that came while this probe was finishing gets a probe of its own
            if this.fence.pending().is_some() {
                this.probe_until_fenced();
            }
        });
    }

    pub async fn invalidate_levels(&self) {
        self.invalidate(vec![self.keys.levels()], vec![self.keys.levels_version()])
            .await;
    }

    fn fallback(&self, op: &'static str, e: &RedisFailure) {
        self.fence.failures.fetch_add(1, Ordering::SeqCst);
        self.probe_until_fenced();
        self.stats.redis_fallbacks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("member_system_redis_fallbacks_total", "op" => op).increment(1);
        tracing::warn!(op, error = %e, "redis unavailable; falling back to PostgreSQL");
    }
}
