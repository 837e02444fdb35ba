//! Member Portal: membership levels, a points ledger and the upgrade engine of the seed
//! design, on PostgreSQL (store of record) and Redis (cache and per-member lock).
//!
//! Layers: `web` (HTTP) → `service` (rules, transactions) → `db` (SQL), with `cache` for
//! Redis or the in-process fallback.

pub mod app;
pub mod cache;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod embedded;
pub mod error;
pub mod service;
pub mod web;
pub mod worker;
