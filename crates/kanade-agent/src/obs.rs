//! The agent's timeline: events worth an entry on `obs.<pc>` (stream `OBS`) — its start, self-update's outcomes,
//! the outbox filling and draining — each published with its own id as `Nats-Msg-Id`, so a retry is stored once.
//! The kinds are `kanade_shared::wire::ObsKind`'s; the backend projects them into the agent's timeline.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use kanade_shared::PcId;
use kanade_shared::subject;
use kanade_shared::wire::{ObsEvent, ObsKind};

/// How long a publish may wait for the broker's ack; a timeline event is worth a short wait, never a stalled agent.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(5);

/// Records an event on the agent's timeline and waits (briefly) for the broker to store it. A failure is logged:
/// the timeline is an account of the agent's life, not something the agent's work depends on.
pub async fn record(client: &async_nats::Client, pc: &PcId, kind: &str, details: serde_json::Value) {
    let event = ObsEvent::new(pc.clone(), kind, details);
    let Ok(body) = serde_json::to_vec(&event) else { return };
    let sent = async {
        let message = PublishMessage::build().payload(body.into()).message_id(event.event_id.as_str());
        jetstream::new(client.clone()).send_publish(subject::obs(pc), message).await?.await?;
        Ok::<(), async_nats::Error>(())
    };
    match tokio::time::timeout(PUBLISH_PATIENCE, sent).await {
        Ok(Ok(())) => tracing::debug!(kind, event_id = %event.event_id, "timeline event recorded"),
        Ok(Err(err)) => tracing::warn!(kind, error = %err, "timeline event not recorded"),
        Err(_) => tracing::warn!(kind, "timeline event not recorded in time"),
    }
}

/// What an agent says about its own start: its version and, when it is a new binary's first start after a
/// self-update, the version it came from.
pub fn started(version: &str, updated_from: Option<&str>) -> serde_json::Value {
    match updated_from {
        Some(from) => serde_json::json!({ "version": version, "after_update": true, "from": from }),
        None => serde_json::json!({ "version": version, "after_update": false }),
    }
}

/// Whether the outbox's fullness changed since the last heartbeat looked: an entry on the transition into full and
/// one on the way back, never one per heartbeat. The first look only remembers (an agent that starts with a full
/// outbox reports it, since "not full" is what every agent starts assuming).
#[derive(Debug, Default)]
pub struct OutboxWatch {
    full: bool,
}

impl OutboxWatch {
    pub fn observe(&mut self, full: bool) -> Option<ObsKind> {
        let was = std::mem::replace(&mut self.full, full);
        match (was, full) {
            (false, true) => Some(ObsKind::OutboxFull),
            (true, false) => Some(ObsKind::OutboxRecovered),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_is_reported_on_its_transitions_only() {
        let mut watch = OutboxWatch::default();
        assert_eq!(watch.observe(false), None);
        assert_eq!(watch.observe(true), Some(ObsKind::OutboxFull));
        assert_eq!(watch.observe(true), None, "not again with every heartbeat");
        assert_eq!(watch.observe(true), None);
        assert_eq!(watch.observe(false), Some(ObsKind::OutboxRecovered));
        assert_eq!(watch.observe(false), None);
        let mut full_at_start = OutboxWatch::default();
        assert_eq!(full_at_start.observe(true), Some(ObsKind::OutboxFull));
    }

    #[test]
    fn a_start_says_whether_it_followed_an_update() {
        assert_eq!(started("1.2.0", None), serde_json::json!({ "version": "1.2.0", "after_update": false }));
        assert_eq!(
            started("1.2.0", Some("1.1.0")),
            serde_json::json!({ "version": "1.2.0", "after_update": true, "from": "1.1.0" })
        );
    }
}
