//! Live changes for the dashboard: whoever changes something (a projector after a commit, the exec engine, a job
//! API call) publishes a small [`Change`] on core subject `backend.changes`; every backend replica's [`Hub`] hears it
//! and fans it out to its own server-sent-event clients through a broadcast channel. So a client on any replica
//! learns of a change made by any other, and the read model stays written by projectors and the engine only: a
//! change note is never the data, just "refetch this".
//!
//! Each client's stream coalesces per topic (at most one message per topic every [`CLIENT_FLUSH`]) and caps the ids
//! it names; a client too slow for the broadcast channel is told `all` ("refetch everything") rather than dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures::{Stream, StreamExt};
pub use kanade_shared::api::ClientChange;
use kanade_shared::subject;
use kanade_shared::wire::Change;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

/// Server-sent-event streams (`/api/events` and output tails together) one replica serves at once.
pub const MAX_STREAMS: usize = 256;
/// Ids one change names at most; a change about more names none, which means "refetch this topic".
pub const MAX_IDS: usize = 100;
/// A client gets at most one message per topic this often.
pub const CLIENT_FLUSH: Duration = Duration::from_millis(250);
/// The heartbeat projector says "agents changed" at most this often per replica.
pub const AGENTS_EVERY: Duration = Duration::from_secs(1);
/// How long announcing a change may wait for room in the NATS client's outgoing buffer.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(1);
/// Changes buffered per client before it counts as lagging.
const CHANNEL: usize = 1024;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// ids: pc ids.
    Agents,
    /// ids: exec ids.
    Results,
    /// ids: exec ids.
    Executions,
    /// ids: none.
    Audit,
    /// ids: job ids.
    Jobs,
    /// ids: pc ids whose timeline has new entries.
    Timeline,
    /// ids: pc ids whose inventory was reported.
    Inventory,
    /// ids: pc ids with new performance rollups.
    Perf,
    /// ids: schedule ids created, changed, deleted or fired.
    Schedules,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Agents => "agents",
            Topic::Results => "results",
            Topic::Executions => "executions",
            Topic::Audit => "audit",
            Topic::Jobs => "jobs",
            Topic::Timeline => "timeline",
            Topic::Inventory => "inventory",
            Topic::Perf => "perf",
            Topic::Schedules => "schedules",
        }
    }
}

/// How often the hub looks whether its broker connection came back.
const RECONNECT_CHECK: Duration = Duration::from_millis(500);

/// The topic a lagging client is sent: it missed something, so it should refetch everything.
pub const TOPIC_ALL: &str = "all";

/// Announces changes to every replica. Cheap to clone; never fails the caller: a note lost while the broker is
/// unreachable is made up for by the refetch-everything every hub sends when its connection comes back.
#[derive(Clone)]
pub struct Publisher {
    nats: async_nats::Client,
}

impl Publisher {
    pub fn new(nats: async_nats::Client) -> Self {
        Self { nats }
    }

    /// Says that `ids` in `topic` changed; no ids means "something in `topic`".
    pub async fn changed<I, S>(&self, topic: Topic, ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ids: BTreeSet<String> = ids.into_iter().map(Into::into).collect();
        // A note about thousands of agents would be a large message to every replica for no gain: the client
        // refetches the list either way.
        let ids = if ids.len() > MAX_IDS { Vec::new() } else { ids.into_iter().collect() };
        let change = Change { topic: topic.as_str().to_owned(), ids };
        let body = match serde_json::to_vec(&change) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode a change note");
                return;
            }
        };
        // A publish waits only when the client's outgoing buffer is full (the broker away for a while); a note is
        // not worth holding up a projector or the engine for.
        match tokio::time::timeout(PUBLISH_PATIENCE, self.nats.publish(subject::backend_changes(), body.into())).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::debug!(error = %err, topic = topic.as_str(), "change note not sent"),
            Err(_) => {
                tracing::debug!(topic = topic.as_str(), "change note dropped: the broker connection is backed up")
            }
        }
    }
}

/// One replica's fan-out of `backend.changes` to its live clients, and the bound on its open streams.
pub struct Hub {
    sender: broadcast::Sender<Change>,
    streams: Arc<Semaphore>,
    max_streams: usize,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(MAX_STREAMS)
    }
}

impl Hub {
    pub fn new(max_streams: usize) -> Self {
        Self { sender: broadcast::channel(CHANNEL).0, streams: Arc::new(Semaphore::new(max_streams)), max_streams }
    }

    /// How many streams are open on this replica now.
    pub fn open_streams(&self) -> usize {
        self.max_streams.saturating_sub(self.streams.available_permits())
    }

    /// A slot for one more stream, held as long as the stream lives; `None` when every slot is taken.
    pub fn stream_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    /// Subscribes to `backend.changes`. Done before the server accepts requests, so a change made just after the
    /// backend is up reaches its clients; the subscription survives reconnects (the client re-subscribes).
    pub async fn subscribe_notes(
        nats: &async_nats::Client,
    ) -> Result<async_nats::Subscriber, async_nats::SubscribeError> {
        nats.subscribe(subject::backend_changes()).await
    }

    /// Relays change notes into the broadcast channel until `shutdown`.
    ///
    /// Notes are core NATS: any sent while this replica's connection was down are gone. So when the connection
    /// comes back, this replica's clients are told to refetch everything, and so are every other replica's (this
    /// replica's own notes from the gap were not delivered either).
    pub async fn run(
        self: Arc<Self>,
        nats: async_nats::Client,
        mut notes: async_nats::Subscriber,
        shutdown: CancellationToken,
    ) {
        let mut check = tokio::time::interval(RECONNECT_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connected = true;
        loop {
            let note = tokio::select! {
                note = notes.next() => note,
                _ = check.tick() => {
                    let now = matches!(nats.connection_state(), async_nats::connection::State::Connected);
                    if now && !connected {
                        tracing::info!("broker connection back: live clients refetch everything");
                        let all = Change { topic: TOPIC_ALL.to_owned(), ids: Vec::new() };
                        drop(self.sender.send(all.clone()));
                        if let Ok(body) = serde_json::to_vec(&all) {
                            let publish = nats.publish(subject::backend_changes(), body.into());
                            let _ = tokio::time::timeout(PUBLISH_PATIENCE, publish).await;
                        }
                    }
                    connected = now;
                    continue;
                }
                () = shutdown.cancelled() => return,
            };
            let Some(note) = note else { return };
            match serde_json::from_slice::<Change>(&note.payload) {
                // No receiver is fine: nobody is watching.
                Ok(change) => drop(self.sender.send(change)),
                Err(err) => tracing::debug!(error = %err, "malformed change note ignored"),
            }
        }
    }
}

/// One client's pending changes, merged per topic until the next flush.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: BTreeMap<String, Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    ids: BTreeSet<String>,
    /// Something without ids, or more than [`MAX_IDS`]: the client refetches the whole topic.
    everything: bool,
}

impl Coalescer {
    pub fn add(&mut self, change: Change) {
        let pending = self.pending.entry(change.topic).or_default();
        if pending.everything {
            return;
        }
        if change.ids.is_empty() {
            pending.everything = true;
            pending.ids.clear();
            return;
        }
        pending.ids.extend(change.ids);
        if pending.ids.len() > MAX_IDS {
            pending.everything = true;
            pending.ids.clear();
        }
    }

    /// The client missed changes: whatever was pending, it must refetch everything.
    pub fn lagged(&mut self) {
        self.pending.clear();
        self.pending.insert(TOPIC_ALL.to_owned(), Pending { ids: BTreeSet::new(), everything: true });
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Everything pending, one change per topic, and forgets it.
    pub fn drain(&mut self) -> Vec<ClientChange> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(topic, pending)| ClientChange { topic, ids: pending.ids.into_iter().collect() })
            .collect()
    }
}

struct ChangeStream {
    changes: broadcast::Receiver<Change>,
    coalescer: Coalescer,
    flush: tokio::time::Interval,
    ready: VecDeque<ClientChange>,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
}

/// The `event: change` stream of one client, until it goes away or the backend stops.
pub fn change_events(
    changes: broadcast::Receiver<Change>,
    slot: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let mut flush = tokio::time::interval(CLIENT_FLUSH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state =
        ChangeStream { changes, coalescer: Coalescer::default(), flush, ready: VecDeque::new(), shutdown, _slot: slot };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(change) = state.ready.pop_front() {
                let event = Event::default().event("change").json_data(&change).unwrap_or_default();
                return Some((Ok(event), state));
            }
            tokio::select! {
                received = state.changes.recv() => match received {
                    Ok(change) => state.coalescer.add(change),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "a live client lagged; telling it to refetch everything");
                        state.coalescer.lagged();
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = state.flush.tick(), if !state.coalescer.is_empty() => {
                    let drained = state.coalescer.drain();
                    state.ready.extend(drained);
                }
                () = state.shutdown.cancelled() => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(topic: &str, ids: &[&str]) -> Change {
        Change { topic: topic.into(), ids: ids.iter().map(|s| (*s).to_owned()).collect() }
    }

    #[test]
    fn changes_merge_per_topic_until_drained() {
        let mut c = Coalescer::default();
        c.add(change("results", &["e2", "e1"]));
        c.add(change("results", &["e1", "e3"]));
        c.add(change("agents", &["pc-1"]));
        let drained = c.drain();
        assert_eq!(
            drained,
            vec![
                ClientChange { topic: "agents".into(), ids: vec!["pc-1".into()] },
                ClientChange { topic: "results".into(), ids: vec!["e1".into(), "e2".into(), "e3".into()] },
            ]
        );
        assert!(c.is_empty());
        assert!(c.drain().is_empty());
    }

    #[test]
    fn a_change_without_ids_or_with_too_many_means_the_whole_topic() {
        let mut c = Coalescer::default();
        c.add(change("jobs", &["a"]));
        c.add(change("jobs", &[]));
        c.add(change("jobs", &["b"]));
        let many: Vec<String> = (0..=MAX_IDS).map(|i| format!("pc-{i}")).collect();
        c.add(Change { topic: "agents".into(), ids: many });
        let drained = c.drain();
        assert!(drained.iter().all(|d| d.ids.is_empty()), "{drained:?}");
        assert_eq!(drained.len(), 2);
    }

    #[test]
    fn a_lagging_client_is_told_to_refetch_everything() {
        let mut c = Coalescer::default();
        c.add(change("results", &["e1"]));
        c.lagged();
        c.add(change("agents", &["pc-1"]));
        let topics: Vec<String> = c.drain().into_iter().map(|d| d.topic).collect();
        assert_eq!(topics, ["agents", "all"]);
    }
}
