//! The per-member points lock of SPEC §3.7. It spares PostgreSQL a queue of waiters on a
//! hot member row; it never replaces that row lock, which is what keeps the ledger right.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::{Keys, RedisConn, RedisFailure};
use crate::error::Error;

const RELEASE_SCRIPT: &str = r#"
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
else
    return 0
end
"#;

#[derive(Clone)]
enum Backend {
    Redis(RedisConn),
    Local(Arc<Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>),
}

#[derive(Clone)]
pub struct Locker {
    backend: Backend,
    keys: Keys,
    wait: Duration,
    ttl: Duration,
    release: Arc<redis::Script>,
}

/// Held while a member's points change; give it back with [`Locker::release`].
pub enum LockGuard {
    Redis {
        key: String,
        token: String,
    },
    Local {
        user_id: i64,
        _guard: OwnedMutexGuard<()>,
    },
    /// Redis failed: the operation goes on under the row lock alone.
    None,
}

impl Locker {
    pub fn redis(conn: RedisConn, keys: Keys, wait: Duration, ttl: Duration) -> Self {
        Self::with_backend(Backend::Redis(conn), keys, wait, ttl)
    }

    pub fn local(keys: Keys, wait: Duration) -> Self {
        Self::with_backend(Backend::Local(Arc::default()), keys, wait, Duration::ZERO)
    }

    fn with_backend(backend: Backend, keys: Keys, wait: Duration, ttl: Duration) -> Self {
        Self {
            backend,
            keys,
            wait,
            ttl,
            release: Arc::new(redis::Script::new(RELEASE_SCRIPT)),
        }
    }

    /// Takes the member's lock, waiting up to the configured time before
    /// `CONCURRENT_OPERATION`.
    pub async fn acquire(&self, user_id: i64) -> Result<LockGuard, Error> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Local(map) => self.acquire_local(map, user_id).await,
            Backend::Redis(conn) => self.acquire_redis(conn, user_id).await,
        };
        let waited = started.elapsed().as_secs_f64();
        metrics::histogram!("member_system_lock_wait_seconds").record(waited);
        if result.is_err() {
            metrics::counter!("member_system_lock_timeouts_total").increment(1);
        }
        result
    }

    async fn acquire_local(
        &self,
        map: &Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
        user_id: i64,
    ) -> Result<LockGuard, Error> {
        let mutex = {
            let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(user_id).or_default().clone()
        };
        match tokio::time::timeout(self.wait, mutex.lock_owned()).await {
            Ok(guard) => Ok(LockGuard::Local {
                user_id,
                _guard: guard,
            }),
            Err(_) => Err(Error::ConcurrentOperation),
        }
    }

    async fn acquire_redis(&self, conn: &RedisConn, user_id: i64) -> Result<LockGuard, Error> {
        let key = self.keys.points_lock(user_id);
        let token = crate::random_uuid().to_string();
        let deadline = Instant::now() + self.wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let (k, t, ttl) = (key.clone(), token.clone(), self.ttl.as_secs().max(1));
            let taken = conn
                .run(|mut c| async move {
                    redis::cmd("SET")
                        .arg(k)
                        .arg(t)
                        .arg("NX")
                        .arg("EX")
                        .arg(ttl)
                        .query_async::<Option<String>>(&mut c)
                        .await
                })
                .await;
            match taken {
                Ok(Some(_)) => return Ok(LockGuard::Redis { key, token }),
                Ok(None) => {}
                Err(e) => {
                    warn_fallback(&e);
                    return Ok(LockGuard::None);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::ConcurrentOperation);
            }
            // Jittered backoff so waiters do not poll in lockstep.
            let jitter = Duration::from_micros(rand::random::<u64>() % 2_000);
            tokio::time::sleep((pause + jitter).min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }

    /// Gives the lock back: compare-and-delete in Redis, so a lease that ran out and was
    /// taken by someone else is left alone.
    pub async fn release(&self, guard: LockGuard) {
        match (guard, &self.backend) {
            (LockGuard::Redis { key, token }, Backend::Redis(conn)) => {
                let script = self.release.clone();
                let result = conn
                    .run(|mut c| async move {
                        script.key(key).arg(token).invoke_async::<i64>(&mut c).await
                    })
                    .await;
                if let Err(e) = result {
                    // The lease runs out by itself.
                    warn_fallback(&e);
                }
            }
            (LockGuard::Local { user_id, _guard }, Backend::Local(map)) => {
                drop(_guard);
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                // Forget the mutex when nobody else holds or waits for it.
                if map.get(&user_id).is_some_and(|m| Arc::strong_count(m) == 1) {
                    map.remove(&user_id);
                }
            }
            _ => {}
        }
    }
}

fn warn_fallback(e: &RedisFailure) {
    metrics::counter!("member_system_redis_fallbacks_total", "op" => "lock").increment(1);
    tracing::warn!(error = %e, "redis lock unavailable; relying on the row lock");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_process_lock_serialises_one_member_and_times_out() {
        let locker = Locker::local(Keys::new(""), Duration::from_millis(50));
        let held = locker.acquire(7).await.unwrap();
        // another member is not held up
        let other = locker.acquire(8).await.unwrap();
        let err = locker.acquire(7).await.err().expect("held");
        assert_eq!(err.code(), "CONCURRENT_OPERATION");
        locker.release(held).await;
        locker.release(other).await;
        let again = locker.acquire(7).await.unwrap();
        locker.release(again).await;
        let Backend::Local(map) = &locker.backend else {
            unreachable!()
        };
        assert!(
            map.lock().unwrap().is_empty(),
            "released mutexes are forgotten"
        );
    }
}
