//! Operator actions over NATS, shared by the `kanade` CLI and `kanade-backend` so the two never disagree on how a
//! job is stored, a script object verified, a command published, a job stopped or an action audited.
//!
//! Everything here talks to the broker only; nothing needs the backend, which is what lets `kanade revoke` and
//! `kanade kill` work with it down.

pub mod actions;
pub mod agent_config;
pub mod agents;
pub mod audit;
pub mod catalogue;
pub mod control;
pub mod jetstream;
pub mod logs;
pub mod nats;
pub mod notify;
pub mod objects;
pub mod release;
pub mod schedules;
pub mod security;
pub mod signing;
pub mod store;

/// What can go wrong talking to the broker on an operator's behalf.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{kind} `{name}` is missing: run `kanade jetstream setup`")]
    Missing { kind: &'static str, name: &'static str },
    #[error("{what}")]
    Nats {
        what: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot encode {what}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl OpsError {
    pub(crate) fn nats(what: impl Into<String>, source: impl Into<async_nats::Error>) -> Self {
        Self::Nats { what: what.into(), source: source.into() }
    }
}
