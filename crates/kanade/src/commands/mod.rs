//! One module per CLI command.

pub mod agent;
pub mod audit;
pub mod completions;
pub mod config;
pub mod enroll;
pub mod exec;
pub mod inventory;
pub mod jetstream;
pub mod job;
pub mod key;
pub mod kill;
pub mod login;
pub mod logs;
pub mod notify;
pub mod objects;
pub mod perf;
pub mod ping;
pub mod result;
pub mod revoke;
pub mod run;
pub mod schedule;
pub mod security;
pub mod token;
pub mod top;
pub mod trust;
pub mod user;
