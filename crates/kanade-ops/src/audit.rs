//! Every operator action becomes an [`AuditEvent`] on `audit.<actor>.<action>` in stream `AUDIT`, published with
//! its event id as `Nats-Msg-Id` so a retried publish is stored once. An [`Auditor`] records the actions of one
//! operator from one place; the CLI and the backend differ only in how they report a record that could not be made.

use async_nats::jetstream::{self, message::PublishMessage};
use kanade_shared::subject;
use kanade_shared::wire::AuditEvent;
use kanade_shared::{Action, Actor, ExecId};

use crate::OpsError;

/// Where an action was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cli,
    Backend,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cli => "cli",
            Source::Backend => "backend",
        }
    }
}

/// Records `action` by `actor` on `target` and waits for the broker's ack.
pub async fn record(
    client: &async_nats::Client,
    source: Source,
    actor: &Actor,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<(), OpsError> {
    let action =
        Action::new(action).map_err(|err| OpsError::Invalid(format!("`{action}` is not an audit action: {err}")))?;
    let event = AuditEvent {
        event_id: ExecId::generate().to_string(),
        actor: actor.clone(),
        action,
        target: target.to_owned(),
        details,
        at: chrono::Utc::now(),
        source: source.as_str().into(),
    };
    let body = serde_json::to_vec(&event).map_err(|source| OpsError::Encode { what: "audit event", source })?;
    let what = || format!("`{}` on `{target}` could not be audited", event.action);
    jetstream::new(client.clone())
        .send_publish(
            subject::audit(&event.actor, &event.action),
            PublishMessage::build().payload(body.into()).message_id(event.event_id.as_str()),
        )
        .await
        .map_err(|e| OpsError::nats(what(), e))?
        .await
        .map_err(|e| OpsError::nats(what(), e))?;
    Ok(())
}

/// What to do when an action was done but could not be audited: `(action, target, why)`. The action is not undone;
/// the CLI warns on stderr, the backend logs an error.
pub type Unaudited = fn(&str, &str, &OpsError);

/// Records the actions of one operator (`actor`) taken through one `source`.
#[derive(Clone)]
pub struct Auditor {
    client: async_nats::Client,
    source: Source,
    actor: Actor,
    unaudited: Unaudited,
}

impl Auditor {
    pub fn new(client: async_nats::Client, source: Source, actor: Actor, unaudited: Unaudited) -> Self {
        Self { client, source, actor, unaudited }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Records `action` on `target`, after the action succeeded. Never fails: a record that cannot be made goes to
    /// the `unaudited` hook, since the action itself is done either way.
    pub async fn record(&self, action: &str, target: &str, details: serde_json::Value) {
        if let Err(err) = record(&self.client, self.source, &self.actor, action, target, details).await {
            (self.unaudited)(action, target, &err);
        }
    }
}
