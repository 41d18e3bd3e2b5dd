//! Every operator action the CLI performs is recorded on `audit.<actor>.<action>` in stream `AUDIT`, after the
//! action succeeded. The actor is `KANADE_OPERATOR`, else the login name, normalised to an id.

use async_nats::jetstream::{self, message::PublishMessage};
use kanade_shared::subject;
use kanade_shared::wire::AuditEvent;
use kanade_shared::{Action, Actor, ExecId};

use crate::output;

/// Who is acting: `KANADE_OPERATOR`, else the login name.
pub fn operator() -> String {
    ["KANADE_OPERATOR", "USER", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Records `action` on `target`. A failure to record does not undo the action; it is reported on stderr, since an
/// unaudited action is something an operator must know about.
pub async fn record(client: &async_nats::Client, action: &str, target: &str, details: serde_json::Value) {
    let Ok(action) = Action::new(action) else {
        output::note(&format!("warning: `{action}` is not a valid audit action; not recorded"));
        return;
    };
    let event = AuditEvent {
        event_id: ExecId::generate().to_string(),
        actor: Actor::from_login(&operator()),
        action,
        target: target.to_owned(),
        details,
        at: chrono::Utc::now(),
        source: "cli".into(),
    };
    let js = jetstream::new(client.clone());
    let published = async {
        let body = serde_json::to_vec(&event)?;
        js.send_publish(
            subject::audit(&event.actor, &event.action),
            PublishMessage::build().payload(body.into()).message_id(event.event_id.as_str()),
        )
        .await?
        .await?;
        Ok::<(), async_nats::Error>(())
    };
    if let Err(err) = published.await {
        output::note(&format!("warning: `{}` on `{target}` was done but could not be audited: {err}", event.action));
    }
}
