//! The per-member points lock of SPEC §3.7. It spares PostgreSQL a queue of waiters on a
//! hot member row; it never replaces that row lock, which is what keeps the ledger right.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::{Cache, Keys, RedisConn, RedisFailure};
use crate::error::Error;

const RELEASE_SCRIPT: &str = r#"
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
else
    return 0
end
"#;

/// An instance's mutex of one member; it holds the Redis lease while one operation hands
/// it to the next queued behind it.
type Slot = Arc<tokio::sync::Mutex<Option<Lease>>>;
type Mutexes = Arc<Mutex<HashMap<i64, Slot>>>;

/// How long the lock leaves Redis alone after a failure.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long after taking the Redis lock an operation may still hand it to the next one
/// queued on this instance instead of giving it back: the hot member's operations then take
/// and release it once per window rather than each paying two round trips inside its
/// turn, and other instances get their turn at least this often.
const HANDOFF_WINDOW: Duration = Duration::from_millis(50);

#[derive(Clone)]
enum Backend {
    Redis(RedisConn),
    Local,
}

#[derive(Clone)]
pub struct Locker {
    backend: Backend,
    /// one mutex per member this instance is changing: its own operations on a member
    /// queue here, so with Redis only one of them at a time asks Redis for the lock (and
    /// is handed the member the moment the one before it is done, instead of polling)
    local: Mutexes,
    /// until when Redis is not asked again after it failed: the operations queued behind
    /// one that waited out a Redis timeout go on under the row lock at once
    redis_down_until: Arc<Mutex<Option<Instant>>>,
    keys: Keys,
    wait: Duration,
    ttl: Duration,
    release: Arc<redis::Script>,
}

/// Held while a member's points change; give it back with [`Locker::release`].
pub struct LockGuard {
    user_id: i64,
    local: OwnedMutexGuard<Option<Lease>>,
    redis: Held,
}

/// The Redis lock as taken: its key, the token only its holder knows, and when.
struct Lease {
    key: String,
    token: String,
    taken: Instant,
}

enum Held {
    Redis(Lease),
    /// no Redis, or Redis failed: the instance's own mutex and the row lock
    Nothing,
}

impl Locker {
    pub fn redis(conn: RedisConn, keys: Keys, wait: Duration, ttl: Duration) -> Self {
        Self::with_backend(Backend::Redis(conn), keys, wait, ttl)
    }

    pub fn local(keys: Keys, wait: Duration) -> Self {
        Self::with_backend(Backend::Local, keys, wait, Duration::ZERO)
    }

    fn with_backend(backend: Backend, keys: Keys, wait: Duration, ttl: Duration) -> Self {
        Self {
            backend,
            local: Arc::default(),
            redis_down_until: Arc::default(),
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
        let deadline = started + self.wait;
        let result = async {
            let mut local = self.acquire_local(user_id).await?;
            let redis = match (&self.backend, local.take()) {
                (Backend::Local, _) => Held::Nothing,
                // handed over by the operation before, with time left on its lease
                (Backend::Redis(_), Some(lease)) if lease.taken.elapsed() < self.ttl / 2 => {
                    Held::Redis(lease)
                }
                (Backend::Redis(conn), stale) => {
                    if let Some(lease) = stale {
                        self.give_back(lease).await;
                    }
                    match self.acquire_redis(conn, user_id, deadline).await {
                        Ok(held) => held,
                        Err(e) => {
                            self.forget_local(user_id, local);
                            return Err(e);
                        }
                    }
                }
            };
            Ok(LockGuard {
                user_id,
                local,
                redis,
            })
        }
        .await;
        let waited = started.elapsed().as_secs_f64();
        metrics::histogram!("member_system_lock_wait_seconds").record(waited);
        if result.is_err() {
            metrics::counter!("member_system_lock_timeouts_total").increment(1);
        }
        result
    }

    async fn acquire_local(&self, user_id: i64) -> Result<OwnedMutexGuard<Option<Lease>>, Error> {
        let mutex = {
            let mut map = self.local.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(user_id).or_default().clone()
        };
        match tokio::time::timeout(self.wait, mutex.clone().lock_owned()).await {
            Ok(guard) => Ok(guard),
            Err(_) => {
                // a lease handed to this waiter as it gave up is given back, not left to
                // run out
                self.give_back_orphan(&mutex).await;
                Err(Error::ConcurrentOperation)
            }
        }
    }

    /// Drops the instance's mutex of a member, forgetting it when nobody else holds or
    /// waits for it.
    fn forget_local(&self, user_id: i64, guard: OwnedMutexGuard<Option<Lease>>) {
        drop(guard);
        let mut map = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&user_id).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&user_id);
        }
    }

    /// Whether another operation of this instance waits for the member (the map and the
    /// holder each keep one reference to the mutex; every waiter one more).
    fn others_waiting(guard: &OwnedMutexGuard<Option<Lease>>) -> bool {
        Arc::strong_count(OwnedMutexGuard::mutex(guard)) > 2
    }

    /// A lease left in a member's mutex with nobody to take it: given back.
    async fn give_back_orphan(&self, mutex: &Slot) {
        let lease = match mutex.clone().try_lock_owned() {
            Ok(mut g) => g.take(),
            Err(_) => None, // its holder (or the next waiter) uses it
        };
        if let Some(lease) = lease {
            self.give_back(lease).await;
        }
    }

    /// Compare-and-delete of the Redis lock: a lease that ran out and was taken by
    /// someone else is left alone.
    async fn give_back(&self, lease: Lease) {
        let Backend::Redis(conn) = &self.backend else {
            return;
        };
        let script = self.release.clone();
        let Lease { key, token, .. } = lease;
        let result = conn
            .run(
                |mut c| async move { script.key(key).arg(token).invoke_async::<i64>(&mut c).await },
            )
            .await;
        if let Err(e) = result {
            // The lease runs out by itself.
            warn_fallback(&e);
        }
    }

    async fn acquire_redis(
        &self,
        conn: &RedisConn,
        user_id: i64,
        deadline: Instant,
    ) -> Result<Held, Error> {
        if self.redis_is_down() {
            return Ok(Held::Nothing);
        }
        let key = self.keys.points_lock(user_id);
        let token = crate::random_uuid().to_string();
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
                Ok(Some(_)) => {
                    return Ok(Held::Redis(Lease {
                        key,
                        token,
                        taken: Instant::now(),
                    }));
                }
                Ok(None) => {}
                Err(e) => {
                    warn_fallback(&e);
                    self.mark_redis_down();
                    return Ok(Held::Nothing);
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

    /// After a change to these members: drops their cache entries, then gives the lock
    /// back, with Redis in one round trip (the release rides in the invalidation's
    /// pipeline).
    pub async fn release_after_invalidating(
        &self,
        guard: LockGuard,
        cache: &Cache,
        user_ids: &[i64],
    ) {
        let LockGuard {
            user_id,
            mut local,
            redis,
        } = guard;
        match redis {
            // another operation of this instance waits: it is handed the lease with the
            // member, and the invalidation goes after (nothing in its turn reads the cache)
            Held::Redis(lease)
                if lease.taken.elapsed() < HANDOFF_WINDOW && Self::others_waiting(&local) =>
            {
                *local = Some(lease);
                let mutex = OwnedMutexGuard::mutex(&local).clone();
                self.forget_local(user_id, local);
                cache.invalidate_members(user_ids).await;
                // the waiter may have given up in between
                if Arc::strong_count(&mutex) <= 2 {
                    self.give_back_orphan(&mutex).await;
                }
            }
            Held::Redis(lease) => {
                if !cache
                    .invalidate_members_then(user_ids, vec![release_cmd(&lease)])
                    .await
                {
                    self.give_back(lease).await;
                }
                self.forget_local(user_id, local);
            }
            // Without the Redis lock nothing waits on the invalidation (nor on a Redis
            // that is down): the member is handed on first.
            Held::Nothing => {
                self.forget_local(user_id, local);
                cache.invalidate_members(user_ids).await;
            }
        }
    }

    /// The locks of several members (a batch of their earns), each taken at once or not at
    /// all: with Redis, one round trip for all of them. One answer per member, in order;
    /// `None` for a member another operation holds (its earn then waits for the lock as it
    /// would alone), and for a member named twice.
    pub async fn try_acquire_many(&self, user_ids: &[i64]) -> Vec<Option<LockGuard>> {
        let mut locals: Vec<Option<OwnedMutexGuard<Option<Lease>>>> = user_ids
            .iter()
            .map(|&user_id| {
                let mutex = {
                    let mut map = self.local.lock().unwrap_or_else(|e| e.into_inner());
                    map.entry(user_id).or_default().clone()
                };
                mutex.try_lock_owned().ok()
            })
            .collect();
        let conn = match &self.backend {
            Backend::Redis(conn) if !self.redis_is_down() => conn,
            _ => {
                return self.guards(user_ids, locals, |_| Some(Held::Nothing));
            }
        };
        // leases handed over with time left are kept; stale ones given back
        let mut handed: Vec<Option<Lease>> = Vec::with_capacity(user_ids.len());
        for local in &mut locals {
            match local.as_mut().and_then(|g| g.take()) {
                Some(lease) if lease.taken.elapsed() < self.ttl / 2 => handed.push(Some(lease)),
                Some(stale) => {
                    self.give_back(stale).await;
                    handed.push(None);
                }
                None => handed.push(None),
            }
        }
        let asks: Vec<(usize, String, String)> = locals
            .iter()
            .zip(&handed)
            .enumerate()
            .filter(|(_, (local, lease))| local.is_some() && lease.is_none())
            .map(|(i, _)| {
                let key = self.keys.points_lock(user_ids[i]);
                (i, key, crate::random_uuid().to_string())
            })
            .collect();
        let ttl = self.ttl.as_secs().max(1);
        let pairs: Vec<(String, String)> = asks
            .iter()
            .map(|(_, k, t)| (k.clone(), t.clone()))
            .collect();
        let taken = if pairs.is_empty() {
            Ok(Vec::new())
        } else {
            conn.run(|mut c| async move {
                let mut pipe = redis::pipe();
                for (key, token) in &pairs {
                    pipe.cmd("SET")
                        .arg(key)
                        .arg(token)
                        .arg("NX")
                        .arg("EX")
                        .arg(ttl);
                }
                pipe.query_async::<Vec<Option<String>>>(&mut c).await
            })
            .await
        };
        let taken = match taken {
            Ok(taken) if taken.len() == asks.len() => taken,
            Ok(_) => {
                for lease in handed.into_iter().flatten() {
                    self.give_back(lease).await;
                }
                return self.guards(user_ids, locals, |_| None);
            }
            Err(e) => {
                warn_fallback(&e);
                self.mark_redis_down();
                // a lease handed over is still held; the rest go on under the row lock
                let mut handed = handed;
                return self.guards(user_ids, locals, |i| {
                    Some(handed[i].take().map_or(Held::Nothing, Held::Redis))
                });
            }
        };
        let now = Instant::now();
        let mut held: Vec<Option<Held>> = handed
            .into_iter()
            .map(|lease| lease.map(Held::Redis))
            .collect();
        for ((i, key, token), got) in asks.into_iter().zip(taken) {
            if got.is_some() {
                held[i] = Some(Held::Redis(Lease {
                    key,
                    token,
                    taken: now,
                }));
            }
        }
        self.guards(user_ids, locals, |i| held[i].take())
    }

    /// The guards of [`Self::try_acquire_many`]: a member whose instance mutex or lock was
    /// not had gets `None`, and its mutex is let go.
    fn guards(
        &self,
        user_ids: &[i64],
        locals: Vec<Option<OwnedMutexGuard<Option<Lease>>>>,
        mut held: impl FnMut(usize) -> Option<Held>,
    ) -> Vec<Option<LockGuard>> {
        locals
            .into_iter()
            .enumerate()
            .map(|(i, local)| {
                let local = local?;
                match held(i) {
                    Some(redis) => Some(LockGuard {
                        user_id: user_ids[i],
                        local,
                        redis,
                    }),
                    None => {
                        self.forget_local(user_ids[i], local);
                        None
                    }
                }
            })
            .collect()
    }

    fn redis_is_down(&self) -> bool {
        let down = *self
            .redis_down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        down.is_some_and(|until| Instant::now() < until)
    }

    fn mark_redis_down(&self) {
        *self
            .redis_down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + REDIS_RETRY_AFTER);
    }

    /// After a batch of changes to these members: drops their cache entries and gives all
    /// their locks back, with Redis in one round trip.
    pub async fn release_many_after_invalidating(&self, guards: Vec<LockGuard>, cache: &Cache) {
        let user_ids: Vec<i64> = guards.iter().map(|g| g.user_id).collect();
        let mut leases = Vec::new();
        let mut locals = Vec::new();
        for LockGuard {
            user_id,
            local,
            redis,
        } in guards
        {
            if let Held::Redis(lease) = redis {
                leases.push(lease);
            }
            locals.push((user_id, local));
        }
        let releases = leases.iter().map(release_cmd).collect();
        if !cache.invalidate_members_then(&user_ids, releases).await {
            for lease in leases {
                self.give_back(lease).await;
            }
        }
        for (user_id, local) in locals {
            self.forget_local(user_id, local);
        }
    }

    /// Gives the lock back: compare-and-delete in Redis, so a lease that ran out and was
    /// taken by someone else is left alone.
    pub async fn release(&self, guard: LockGuard) {
        let LockGuard {
            user_id,
            local,
            redis,
        } = guard;
        if let Held::Redis(lease) = redis {
            self.give_back(lease).await;
        }
        self.forget_local(user_id, local);
    }
}

/// The compare-and-delete of a lease, to ride in a pipeline.
fn release_cmd(lease: &Lease) -> redis::Cmd {
    let mut release = redis::cmd("EVAL");
    release
        .arg(RELEASE_SCRIPT)
        .arg(1)
        .arg(&lease.key)
        .arg(&lease.token);
    release
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
        assert!(
            locker.local.lock().unwrap().is_empty(),
            "released mutexes are forgotten"
        );
    }

    #[tokio::test]
    async fn many_locks_are_taken_at_once_except_those_held_or_named_twice() {
        let locker = Locker::local(Keys::new(""), Duration::from_millis(50));
        let held = locker.acquire(2).await.unwrap();
        let got = locker.try_acquire_many(&[1, 2, 3, 3]).await;
        let taken: Vec<bool> = got.iter().map(Option::is_some).collect();
        assert_eq!(taken, [true, false, true, false]);
        // what was taken is held: another operation on member 1 waits, then gives up
        let err = locker.acquire(1).await.err().expect("held by the batch");
        assert_eq!(err.code(), "CONCURRENT_OPERATION");
        let cache = Cache::local(Keys::new(""), Duration::from_secs(1));
        locker
            .release_many_after_invalidating(got.into_iter().flatten().collect(), &cache)
            .await;
        locker.release(held).await;
        assert!(
            locker.local.lock().unwrap().is_empty(),
            "released mutexes are forgotten"
        );
        let again = locker.acquire(1).await.unwrap();
        locker.release(again).await;
    }
}
