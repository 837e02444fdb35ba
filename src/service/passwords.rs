//! Passwords: argon2id hashing and verification, a bounded number at once, off the async
//! threads.

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Stored for accounts that have no password: no argon2 hash ever verifies against it.
pub const NO_PASSWORD: &str = "!";

/// argon2id with the crate's defaults, which are OWASP's (m=19 MiB, t=2, p=1), computed
/// off the async threads.
pub async fn hash_password(password: String) -> Result<String> {
    with_argon2(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(anyhow::anyhow!("hashing password: {e}")))
    })
    .await
}

pub async fn verify_password(password: String, hash: String) -> Result<bool> {
    with_argon2(move || {
        Ok(PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false))
    })
    .await
}

/// argon2 computations running now, and the most there have been at once.
static ARGON2_RUNNING: AtomicUsize = AtomicUsize::new(0);
static ARGON2_PEAK: AtomicUsize = AtomicUsize::new(0);

/// How many argon2 computations may run at once: one per core. Each takes 19 MiB and a
/// core for tens of milliseconds, so more at once only queue for the CPU, and a flood of
/// logins would otherwise hold 19 MiB per request (up to the blocking pool's 512 threads).
pub fn argon2_permits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The most argon2 computations this process has run at once.
pub fn argon2_peak() -> usize {
    ARGON2_PEAK.load(Ordering::SeqCst)
}

/// Runs `f` on the blocking pool once one of [`argon2_permits`] is free.
async fn with_argon2<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    let permit = PERMITS
        .get_or_init(|| Arc::new(Semaphore::new(argon2_permits())))
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    // The permit goes with the computation: a caller that gives up does not free it early.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let now = ARGON2_RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        ARGON2_PEAK.fetch_max(now, Ordering::SeqCst);
        let result = f();
        ARGON2_RUNNING.fetch_sub(1, Ordering::SeqCst);
        result
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_with_argon2id_owasp_parameters() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            verify_password("correct horse".into(), hash.clone())
                .await
                .unwrap()
        );
        assert!(!verify_password("wrong horse".into(), hash).await.unwrap());
        assert!(
            !verify_password("anything".into(), NO_PASSWORD.into())
                .await
                .unwrap()
        );
    }
}
