//! kanade's contract between components: validated ids, every subject and resource name, the wire types, and
//! config loading. This crate does no network I/O; it reads a config file and creates a default data dir only when
//! asked to.

pub mod access;
pub mod api;
pub mod audit_chain;
pub mod authority;
pub mod client_ipc;
pub mod config;
pub mod enroll;
pub mod file_version;
pub mod ids;
pub mod inventory;
pub mod layered;
pub mod manifest;
pub mod perf;
pub mod release;
pub mod resources;
pub mod schedule;
pub mod security;
pub mod subject;
pub mod waves;
pub mod wire;

pub use ids::{Action, Actor, ExecId, GroupName, IdError, InventoryKind, JobId, NoticeId, PcId, ResultId};
