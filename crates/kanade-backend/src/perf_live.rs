//! Live performance relay: the backend's side of "live only while watched". A PC watched from any number of
//! browsers is one [`Watch`] on this replica — one lease it keeps renewing with the agent (as the viewer
//! `backend-<replica>`), one pair of core subscriptions (`perf.host.<pc>`, `perf.proc.<pc>`), and the last two minutes
//! of samples for a browser that joins — shared by every server-sent-event stream open on that PC. When the last
//! stream closes the watch gives its lease up and unsubscribes, so a forgotten tab costs nothing once closed, and
//! the agent stops within its lease even if the give-up is lost. At most `perf_max_watches` PCs are watched at once.
//!
//! A broker restart does not end the streams: the NATS client resubscribes on reconnect, the renewal that failed
//! meanwhile is tried again, and the browsers see `unreachable` and then `live` again without reconnecting.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt as _;
use kanade_shared::PcId;
use kanade_shared::api::PerfLiveState;
use kanade_shared::perf::{HISTORY_SPAN, HostSample, LeaseReply, LeaseRequest, MAX_HISTORY, ProcSample};
use kanade_shared::subject;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The lease the backend asks for, and how often it renews it (three times a lease, so one lost renewal does not
/// interrupt the stream).
pub const LEASE: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// After a failed lease request, the next try comes this soon.
const RETRY_EVERY: Duration = Duration::from_secs(3);
/// How long the agent has to answer a lease request.
const LEASE_TIMEOUT: Duration = Duration::from_secs(3);
/// Events a slow browser may fall behind by before it skips ahead (it is told to, and catches up from the next).
const CHANNEL: usize = 64;

/// What a watch sends its streams.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    State(PerfLiveState),
    /// Samples the agent kept before this watch began (or while it was unreachable), oldest first.
    History(Arc<Vec<HostSample>>, Option<Arc<ProcSample>>),
    Host(Arc<HostSample>),
    Proc(Arc<ProcSample>),
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("this backend already relays {0} live performance streams; close one or try later")]
    TooMany(usize),
    #[error("cannot subscribe to the agent's samples: {0}")]
    Broker(String),
}

/// This replica's watches, by PC.
pub struct Watches {
    nats: async_nats::Client,
    /// This replica's name as a viewer: every watch it keeps is one lease under it, per PC.
    viewer: String,
    max: usize,
    by_pc: Mutex<HashMap<PcId, Weak<Watch>>>,
    /// Live samples that were not what they claimed (malformed, or another PC's): counted and dropped.
    malformed: AtomicU64,
    shutdown: CancellationToken,
}

/// One watched PC: what its streams share. Dropped with the last stream, which ends its task.
pub struct Watch {
    sender: broadcast::Sender<LiveEvent>,
    kept: Arc<Mutex<Kept>>,
    stop: CancellationToken,
}

#[derive(Default)]
struct Kept {
    state: Option<PerfLiveState>,
    history: VecDeque<Arc<HostSample>>,
    processes: Option<Arc<ProcSample>>,
}

impl Kept {
    fn push(&mut self, sample: Arc<HostSample>) {
        let oldest = sample.at - chrono::Duration::from_std(HISTORY_SPAN).unwrap_or_default();
        // A sample already kept (the agent's history overlapping what was streamed) is not kept twice.
        if self.history.iter().any(|s| s.at == sample.at) {
            return;
        }
        let at = self.history.partition_point(|s| s.at < sample.at);
        self.history.insert(at, sample);
        while self.history.front().is_some_and(|s| s.at < oldest) || self.history.len() > MAX_HISTORY {
            self.history.pop_front();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Watch {
    /// A receiver of what happens from now on, and what a joining stream is sent first: the state and the kept
    /// history. Subscribed before the snapshot is taken, so nothing falls between (a sample may come twice).
    pub fn join(&self) -> (broadcast::Receiver<LiveEvent>, Vec<LiveEvent>) {
        let receiver = self.sender.subscribe();
        let Ok(kept) = self.kept.lock() else { return (receiver, Vec::new()) };
        let mut first = Vec::new();
        if let Some(state) = &kept.state {
            first.push(LiveEvent::State(state.clone()));
        }
        // Nothing kept yet (the watch's first lease is on its way): the lease's reply brings the history, once.
        if !kept.history.is_empty() || kept.processes.is_some() {
            let history: Vec<HostSample> = kept.history.iter().map(|s| (**s).clone()).collect();
            first.push(LiveEvent::History(Arc::new(history), kept.processes.clone()));
        }
        (receiver, first)
    }
}

impl Watches {
    pub fn new(nats: async_nats::Client, max: usize, shutdown: CancellationToken) -> Self {
        let viewer = format!("backend-{:08x}", rand::random::<u32>());
        Self { nats, viewer, max, by_pc: Mutex::new(HashMap::new()), malformed: AtomicU64::new(0), shutdown }
    }

    /// PCs watched on this replica now.
    pub fn watched(&self) -> usize {
        self.by_pc.lock().map(|m| m.values().filter(|w| w.strong_count() > 0).count()).unwrap_or(0)
    }

    /// Live samples dropped as malformed since the backend started.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// The watch of `pc`, shared with every other stream on it; started when it is the first.
    pub async fn watch(self: &Arc<Self>, pc: &PcId) -> Result<Arc<Watch>, WatchError> {
        {
            let Ok(mut by_pc) = self.by_pc.lock() else {
                return Err(WatchError::Broker("watch table poisoned".into()));
            };
            if let Some(watch) = by_pc.get(pc).and_then(Weak::upgrade) {
                return Ok(watch);
            }
            by_pc.retain(|_, w| w.strong_count() > 0);
            if by_pc.len() >= self.max {
                return Err(WatchError::TooMany(self.max));
            }
        }
        // Subscribed before the first lease, so the first sample the lease brings is not missed.
        let host = self.nats.subscribe(subject::perf_host(pc)).await.map_err(|e| WatchError::Broker(e.to_string()))?;
        let procs = self.nats.subscribe(subject::perf_proc(pc)).await.map_err(|e| WatchError::Broker(e.to_string()))?;
        let Ok(mut by_pc) = self.by_pc.lock() else { return Err(WatchError::Broker("watch table poisoned".into())) };
        // Another stream may have started the same watch while this one subscribed: use it (these subscriptions
        // are dropped).
        if let Some(watch) = by_pc.get(pc).and_then(Weak::upgrade) {
            return Ok(watch);
        }
        let stop = self.shutdown.child_token();
        let watch = Arc::new(Watch {
            sender: broadcast::channel(CHANNEL).0,
            kept: Arc::new(Mutex::new(Kept::default())),
            stop: stop.clone(),
        });
        by_pc.insert(pc.clone(), Arc::downgrade(&watch));
        drop(by_pc);
        let relay =
            Relay { watches: self.clone(), pc: pc.clone(), sender: watch.sender.clone(), kept: watch.kept.clone() };
        tokio::spawn(relay.run(host, procs, stop));
        Ok(watch)
    }
}

/// The task behind one watch.
struct Relay {
    watches: Arc<Watches>,
    pc: PcId,
    sender: broadcast::Sender<LiveEvent>,
    kept: Arc<Mutex<Kept>>,
}

impl Relay {
    async fn run(self, mut host: async_nats::Subscriber, mut procs: async_nats::Subscriber, stop: CancellationToken) {
        let mut live = false;
        let renewal = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(renewal);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = &mut renewal => {
                    live = self.renew(!live).await;
                    let next = if live { RENEW_EVERY } else { RETRY_EVERY };
                    renewal.as_mut().reset(tokio::time::Instant::now() + next);
                }
                Some(message) = host.next() => self.host(&message.payload),
                Some(message) = procs.next() => self.procs(&message.payload),
            }
        }
        // Give the lease up at once rather than let it run out; the agent stops within its lease either way.
        let release = LeaseRequest { viewer: self.watches.viewer.clone(), lease_ms: 0, history: false };
        if let Ok(body) = serde_json::to_vec(&release) {
            let _ = tokio::time::timeout(
                LEASE_TIMEOUT,
                self.watches.nats.request(subject::perf_lease(&self.pc), body.into()),
            )
            .await;
        }
        let _ = host.unsubscribe().await;
        let _ = procs.unsubscribe().await;
    }

    fn announce(&self, state: PerfLiveState) {
        let changed = match self.kept.lock() {
            Ok(mut kept) => {
                let changed = kept.state.as_ref() != Some(&state);
                kept.state = Some(state.clone());
                changed
            }
            Err(_) => false,
        };
        if changed {
            let _ = self.sender.send(LiveEvent::State(state));
        }
    }

    /// Asks for (or renews) the lease, with the agent's kept history when the stream was not live. True when the
    /// agent granted it.
    async fn renew(&self, with_history: bool) -> bool {
        let request = LeaseRequest {
            viewer: self.watches.viewer.clone(),
            lease_ms: u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX),
            history: with_history,
        };
        let Ok(body) = serde_json::to_vec(&request) else { return false };
        let asked =
            tokio::time::timeout(LEASE_TIMEOUT, self.watches.nats.request(subject::perf_lease(&self.pc), body.into()))
                .await;
        let reply = match asked {
            Ok(Ok(message)) => serde_json::from_slice::<LeaseReply>(&message.payload),
            Ok(Err(err)) => {
                let message = match err.kind() {
                    async_nats::RequestErrorKind::NoResponders => "the agent is not connected".to_owned(),
                    _ => format!("cannot reach the agent: {err}"),
                };
                self.announce(PerfLiveState { state: "unreachable".into(), interval_ms: 0, message });
                return false;
            }
            Err(_) => {
                let message = "the agent did not answer in time".to_owned();
                self.announce(PerfLiveState { state: "unreachable".into(), interval_ms: 0, message });
                return false;
            }
        };
        let mut reply = match reply {
            Ok(reply) if reply.pc_id == self.pc => reply,
            _ => {
                self.watches.malformed.fetch_add(1, Ordering::Relaxed);
                let message = "the agent's answer was not a lease reply".to_owned();
                self.announce(PerfLiveState { state: "unreachable".into(), interval_ms: 0, message });
                return false;
            }
        };
        reply.bound();
        if !reply.accepted {
            let message = format!("the agent refused: {}", reply.error);
            self.announce(PerfLiveState { state: "unreachable".into(), interval_ms: 0, message });
            return false;
        }
        if with_history {
            let history: Vec<Arc<HostSample>> = reply.history.into_iter().map(Arc::new).collect();
            let processes = reply.processes.map(Arc::new);
            if let Ok(mut kept) = self.kept.lock() {
                for sample in &history {
                    kept.push(sample.clone());
                }
                if kept.processes.is_none() {
                    kept.processes = processes.clone();
                }
            }
            let samples: Vec<HostSample> = history.iter().map(|s| (**s).clone()).collect();
            let _ = self.sender.send(LiveEvent::History(Arc::new(samples), processes));
        }
        self.announce(PerfLiveState { state: "live".into(), interval_ms: reply.interval_ms, message: String::new() });
        true
    }

    fn dropped(&self, what: &str, error: &dyn std::fmt::Display) {
        let total = self.watches.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(pc_id = %self.pc, what, error = %error, total, "malformed live performance sample dropped");
    }

    fn host(&self, payload: &[u8]) {
        let mut sample = match serde_json::from_slice::<HostSample>(payload) {
            Ok(sample) if sample.pc_id == self.pc => sample,
            Ok(sample) => return self.dropped("host", &format!("a sample of `{}`", sample.pc_id)),
            Err(err) => return self.dropped("host", &err),
        };
        sample.bound();
        let sample = Arc::new(sample);
        if let Ok(mut kept) = self.kept.lock() {
            kept.push(sample.clone());
        }
        let _ = self.sender.send(LiveEvent::Host(sample));
    }

    fn procs(&self, payload: &[u8]) {
        let mut sample = match serde_json::from_slice::<ProcSample>(payload) {
            Ok(sample) if sample.pc_id == self.pc => sample,
            Ok(sample) => return self.dropped("processes", &format!("a sample of `{}`", sample.pc_id)),
            Err(err) => return self.dropped("processes", &err),
        };
        sample.bound();
        let sample = Arc::new(sample);
        if let Ok(mut kept) = self.kept.lock() {
            kept.processes = Some(sample.clone());
        }
        let _ = self.sender.send(LiveEvent::Proc(sample));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: i64) -> Arc<HostSample> {
        let mut sample = HostSample::empty(PcId::new("pc-1").unwrap());
        sample.at = chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        Arc::new(sample)
    }

    #[test]
    fn kept_history_is_ordered_without_repeats_and_two_minutes_long() {
        let mut kept = Kept::default();
        for secs in [5, 1, 3, 3, 2, 4] {
            kept.push(sample(secs));
        }
        let order: Vec<i64> = kept.history.iter().map(|s| s.at.timestamp() - 1_800_000_000).collect();
        assert_eq!(order, [1, 2, 3, 4, 5]);
        kept.push(sample(200));
        assert_eq!(kept.history.len(), 1, "older than two minutes before the newest");
    }
}
