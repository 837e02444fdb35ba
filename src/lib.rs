//! Member Portal: membership levels, a points ledger and the upgrade engine of the seed
//! design, on PostgreSQL (store of record) and Redis (cache and per-member lock).
//!
//! Layers: `web` (HTTP) → `service` (rules, transactions) → `db` (SQL), with `cache` for
//! Redis or the in-process fallback.

pub mod app;
pub mod cache;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod embedded;
pub mod error;
pub mod service;
pub mod web;
pub mod worker;

/// A random (v4) UUID from the thread's CSPRNG, which the OS seeds once: `Uuid::new_v4`
/// asks the kernel for 16 bytes each time, a system call per request id or cache token.
pub fn random_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let (a, b) = (super::random_uuid(), super::random_uuid());
        assert_eq!(a.get_version(), Some(uuid::Version::Random));
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
    }
}
