//! Tests of the core ledger (SPEC §3) against the real PostgreSQL and Redis.

mod harness;

mod accounts;
mod api;
mod api_rewards;
mod browser;
mod cache;
mod campaigns;
mod cancellation;
mod cli;
mod concurrency;
mod connections;
mod earn;
mod embedded;
mod expiry;
mod faults;
mod fuzz;
mod levels;
mod members;
mod model;
mod outbox;
mod pending;
mod plans;
mod reverse_refund;
mod rewards;
mod security;
mod serve_process;
mod use_points;
mod web_account;
mod web_admin;
mod web_auth;
mod web_campaigns;
mod web_harness;
mod web_pages;
mod web_rewards;
mod workers;
