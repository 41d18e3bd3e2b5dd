//! Helpers the backend's integration tests share: `accounts` (a backend's first admin, users signed in), `browser`
//! (a run of a `web/e2e` script in Chromium), `http` (a knobbed backend, requests, server-sent events) and `postgres`
//! (a throwaway PostgreSQL database per test). Each test binary declares `mod support;` and uses what it needs.

// Every test file is its own crate and compiles all of `support`, but none uses every helper (static_dashboard.rs
// needs no database, projection.rs no HTTP), so the helpers a given binary leaves unused are not dead code.
#![allow(dead_code)]

pub mod accounts;
pub mod browser;
pub mod http;
pub mod postgres;
