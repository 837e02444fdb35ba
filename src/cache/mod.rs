//! Cache and per-member lock (SPEC §3.7–3.8): Redis when `REDIS_URL` is set, in-process
//! otherwise. Redis is never needed for correctness: every Redis failure or timeout is
//! logged, counted, and answered as a cache miss (reads go to PostgreSQL) or as "no
//! advisory lock" (the member's row lock still serialises the operation).

mod lock;

pub use lock::{LockGuard, Locker};

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

    pub fn levels(&self) -> String {
        format!("{}member_system:levels", self.prefix)
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
        Ok(Self { manager, timeout })
    }

    /// Runs one Redis interaction under the operation deadline.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, f(self.manager.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisFailure::Error(e)),
            Err(_) => Err(RedisFailure::Timeout),
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
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub redis_fallbacks: AtomicU64,
}

#[derive(Clone)]
enum Backend {
    Redis(RedisConn),
    /// Values with their own deadline (entries of different kinds have different TTLs).
    Local(moka::future::Cache<String, (Arc<str>, Instant)>),
}

#[derive(Clone)]
pub struct Cache {
    backend: Backend,
    pub keys: Keys,
    pub stats: Arc<CacheStats>,
}

impl Cache {
    pub fn redis(conn: RedisConn, keys: Keys) -> Self {
        Self {
            backend: Backend::Redis(conn),
            keys,
            stats: Arc::default(),
        }
    }

    pub fn local(keys: Keys) -> Self {
        let store = moka::future::Cache::builder()
            .max_capacity(200_000)
            .time_to_live(Duration::from_secs(24 * 3600))
            .build();
        Self {
            backend: Backend::Local(store),
            keys,
            stats: Arc::default(),
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

    /// A cached value; `None` on a miss, on a value that no longer parses, or when Redis
    /// fails (then a warning and a fallback are recorded and the caller reads PostgreSQL).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let raw: Option<Arc<str>> = match &self.backend {
            Backend::Local(store) => match store.get(key).await {
                Some((v, deadline)) if deadline > Instant::now() => Some(v),
                _ => None,
            },
            Backend::Redis(conn) => {
                let k = key.to_owned();
                match conn
                    .run(|mut c| async move {
                        redis::cmd("GET")
                            .arg(k)
                            .query_async::<Option<String>>(&mut c)
                            .await
                    })
                    .await
                {
                    Ok(v) => v.map(Arc::from),
                    Err(e) => {
                        self.fallback("get", &e);
                        None
                    }
                }
            }
        };
        let value = raw.and_then(|r| serde_json::from_str(&r).ok());
        let counter = if value.is_some() {
            metrics::counter!("member_system_cache_hits_total").increment(1);
            &self.stats.hits
        } else {
            metrics::counter!("member_system_cache_misses_total").increment(1);
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        value
    }

    pub async fn set<T: Serialize>(&self, key: &str, value: &T, ttl: Duration) {
        let Ok(raw) = serde_json::to_string(value) else {
            return;
        };
        match &self.backend {
            Backend::Local(store) => {
                store
                    .insert(key.to_owned(), (Arc::from(raw), Instant::now() + ttl))
                    .await;
            }
            Backend::Redis(conn) => {
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

    /// Deletes keys in one pipeline (one round trip however many members).
    pub async fn invalidate(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        match &self.backend {
            Backend::Local(store) => {
                for k in keys {
                    store.invalidate(&k).await;
                }
            }
            Backend::Redis(conn) => {
                let result = conn
                    .run(|mut c| async move {
                        let mut pipe = redis::pipe();
                        for k in &keys {
                            pipe.del(k).ignore();
                        }
                        pipe.query_async::<()>(&mut c).await
                    })
                    .await;
                if let Err(e) = result {
                    // The entries may now outlive the change; their TTL bounds how long.
                    self.fallback("invalidate", &e);
                }
            }
        }
    }

    /// Drops the profile and points entries of these members.
    pub async fn invalidate_members(&self, user_ids: &[i64]) {
        let keys = user_ids
            .iter()
            .flat_map(|&u| [self.keys.profile(u), self.keys.points(u)])
            .collect();
        self.invalidate(keys).await;
    }

    fn fallback(&self, op: &'static str, e: &RedisFailure) {
        self.stats.redis_fallbacks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("member_system_redis_fallbacks_total", "op" => op).increment(1);
        tracing::warn!(op, error = %e, "redis unavailable; falling back to PostgreSQL");
    }
}
