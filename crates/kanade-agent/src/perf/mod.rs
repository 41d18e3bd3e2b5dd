//! The agent's performance reporting (DESIGN.md, "Live perf"): one task that samples the host — every
//! `perf_interval` while a viewer holds a lease, publishing each host and process sample on core NATS; otherwise only
//! as often as the always-on rollup needs — and sends a [`PerfRollup`] to stream `PERF` every `host_perf_interval`.
//! Nothing samples at the live rate when nobody watches. The main loop hands it lease requests and reads its latest
//! figures for heartbeats.

pub mod history;
pub mod leases;
pub mod rollup;
pub mod sample;
pub mod synthetic;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::Client;
use chrono::{DateTime, Utc};
use kanade_shared::PcId;
use kanade_shared::config::PerfConfig;
use kanade_shared::perf::{HostSample, LeaseReply, LeaseRequest, PerfRollup, ProcSample};
use kanade_shared::subject;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::liveconfig::PerfSchedule;
use history::History;
use leases::{Grant, Leases};
use rollup::Rollup;
use sample::{HostSampler, Processes};
use synthetic::SyntheticHost;

/// How often an unwatched agent samples its host for the rollup's averages and maxima (and its heartbeat's CPU
/// and memory). A host sample reads a few counters and counts the processes (pids only, 4-8 ms with ~100 of them
/// here); their CPU, memory and I/O are read once per rollup.
pub const IDLE_STEP: Duration = Duration::from_secs(5);
/// Rollups kept while the broker does not take them, to send when it does again; older ones are dropped.
const MAX_UNSENT_ROLLUPS: usize = 120;
/// A lease reply this large is cut (oldest history first) to stay below the broker's message size.
const MAX_REPLY_BYTES: usize = 900 * 1024;
/// Longest wait between a rollup's window ending and its send. Every agent's window ends on the clock's multiples, so
/// without a spread the whole fleet would publish at the same instant (10,000 syncing writes took the broker 3.5-5 s,
/// BENCHMARKS.md); each agent waits its own random part of this (at most half the interval) instead.
const MAX_SEND_SPREAD: Duration = Duration::from_secs(30);
/// How long a rollup's publish may wait for the broker's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// A wait that never ends in practice, short enough to add to `Instant::now()`.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Where the figures come from.
pub enum Source {
    /// This machine's counters.
    Host(Box<HostSampler>),
    /// Made-up figures (the fleet simulator).
    Synthetic(SyntheticHost),
}

impl Source {
    /// The interval between two samples of an unwatched agent that sends rollups.
    fn idle_step(&self, rollup_interval: Duration) -> Duration {
        match self {
            Self::Host(_) => IDLE_STEP.min(rollup_interval),
            // One made-up sample per rollup: ten thousand simulated agents waking every 5 s would measure the
            // simulator, not the backend.
            Self::Synthetic(_) => rollup_interval,
        }
    }

    /// A host sample, and the processes when asked. The real counters are read on a blocking thread.
    async fn take(self, pc: &PcId, with_processes: bool) -> (Self, HostSample, Option<Processes>) {
        match self {
            Self::Synthetic(mut host) => {
                let sample = host.host(pc);
                let processes = with_processes.then(|| host.processes());
                (Self::Synthetic(host), sample, processes)
            }
            Self::Host(mut sampler) => {
                let owned_pc = pc.clone();
                let taken = tokio::task::spawn_blocking(move || {
                    let sample = sampler.host(&owned_pc);
                    let processes = with_processes.then(|| sampler.processes());
                    (sampler, sample, processes)
                })
                .await;
                match taken {
                    Ok((sampler, sample, processes)) => (Self::Host(sampler), sample, processes),
                    Err(err) => {
                        // A panic inside the counters' code costs one sample, not the agent: start over.
                        tracing::error!(error = %err, "performance sampling failed; starting a new sampler");
                        let fresh = Box::new(HostSampler::new());
                        (Self::Host(fresh), HostSample::empty(pc.clone()), None)
                    }
                }
            }
        }
    }
}

/// What the sampling task and the main loop share.
struct State {
    leases: Leases,
    history: History,
    /// The latest live process sample, for a viewer that joins.
    processes: Option<ProcSample>,
    schedule: PerfSchedule,
}

pub struct Perf {
    pc: PcId,
    client: Client,
    /// Processes in each top list of a live sample.
    top: usize,
    state: Mutex<State>,
    /// Wakes the task: a viewer arrived, or the schedule changed.
    wake: Notify,
}

impl Perf {
    pub fn new(pc: PcId, client: Client, config: &PerfConfig) -> Self {
        let schedule = PerfSchedule { interval: config.interval, rollup_interval: config.rollup_interval };
        Self {
            pc,
            client,
            top: config.top,
            state: Mutex::new(State {
                leases: Leases::default(),
                history: History::default(),
                processes: None,
                schedule,
            }),
            wake: Notify::new(),
        }
    }

    /// Puts a new schedule (from `agent_config`) in force.
    pub fn set_schedule(&self, schedule: PerfSchedule) {
        if let Ok(mut state) = self.state.lock() {
            state.schedule = schedule;
        }
        self.wake.notify_one();
    }

    /// The host's CPU and memory percentages in the latest sample, for heartbeats.
    pub fn figures(&self) -> (Option<f32>, Option<f32>) {
        let Ok(state) = self.state.lock() else { return (None, None) };
        match state.history.latest() {
            Some(sample) => (Some(sample.cpu_percent), Some(sample.mem_percent())),
            None => (None, None),
        }
    }

    /// Answers a lease request (`agents.<pc>.perf`): the reply, and for a request that is not one, why (the
    /// caller counts it as malformed, and still answers with the refusal).
    pub fn lease(&self, payload: &[u8]) -> (LeaseReply, Option<String>) {
        let request = match serde_json::from_slice::<LeaseRequest>(payload) {
            Ok(request) => request,
            Err(err) => {
                let why = format!("not a lease request: {err}");
                return (self.refusal(why.clone()), Some(why));
            }
        };
        let now = Instant::now();
        let Ok(mut state) = self.state.lock() else { return (self.refusal("perf state unavailable".into()), None) };
        let lease = Duration::from_millis(request.lease_ms);
        let grant = state.leases.request(&request.viewer, lease, now);
        let mut reply = LeaseReply {
            pc_id: self.pc.clone(),
            accepted: !matches!(grant, Grant::Refused(_)),
            lease_ms: 0,
            interval_ms: u64::try_from(state.schedule.interval.as_millis()).unwrap_or(u64::MAX),
            viewers: u32::try_from(state.leases.viewers(now)).unwrap_or(u32::MAX),
            error: String::new(),
            history: Vec::new(),
            processes: None,
        };
        let granted = matches!(grant, Grant::Granted { .. });
        match grant {
            Grant::Granted { lease } => reply.lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
            Grant::Released => {}
            Grant::Refused(why) => reply.error = why,
        }
        if request.history && reply.accepted {
            reply.history = state.history.samples();
            reply.processes = state.processes.clone();
        }
        drop(state);
        if granted {
            self.wake.notify_one();
        }
        (fit(reply), None)
    }

    fn refusal(&self, error: String) -> LeaseReply {
        LeaseReply {
            pc_id: self.pc.clone(),
            accepted: false,
            lease_ms: 0,
            interval_ms: 0,
            viewers: 0,
            error,
            history: Vec::new(),
            processes: None,
        }
    }

    /// Samples until `shutdown`: at the live rate while watched, at the idle rate for rollups, not at all when
    /// neither is wanted (until woken).
    pub async fn run(self: Arc<Self>, mut source: Source, shutdown: CancellationToken) {
        let mut rollup = Rollup::new(Utc::now());
        let mut rollup_every = Duration::ZERO;
        let mut rollup_end: Option<DateTime<Utc>> = None;
        let mut unsent: VecDeque<PerfRollup> = VecDeque::new();
        // This agent's wait after each window's end before it sends, and when the finished rollups go.
        let mut send_spread = Duration::ZERO;
        let mut send_at: Option<Instant> = None;
        let mut last_sample = Instant::now();
        loop {
            let now = Instant::now();
            let (live_until, schedule) = match self.state.lock() {
                Ok(state) => (state.leases.live_until(now), state.schedule),
                Err(_) => return,
            };
            if schedule.rollup_interval != rollup_every {
                // A new rollup interval starts a window on the new boundaries; what was summed so far goes into it.
                rollup_every = schedule.rollup_interval;
                rollup_end = (!rollup_every.is_zero()).then(|| rollup::window_end(Utc::now(), rollup_every));
                send_spread = random_up_to((rollup_every / 2).min(MAX_SEND_SPREAD));
            }
            if send_at.is_some_and(|at| at <= now) {
                send_at = None;
                self.send_rollups(&mut unsent).await;
                continue;
            }
            let live = live_until.is_some();
            let step = match (live, rollup_end) {
                (true, _) => schedule.interval,
                (false, Some(_)) => source.idle_step(rollup_every),
                (false, None) => NEVER,
            };
            let sample_at = last_sample + step;
            let rollup_at =
                rollup_end.map_or(now + NEVER, |end| now + (end - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            // Also wake when the last lease lapses, to drop to the idle rate at once.
            let wake_at =
                sample_at.min(rollup_at).min(live_until.unwrap_or(now + NEVER)).min(send_at.unwrap_or(now + NEVER));
            if wake_at > now {
                tokio::select! {
                    () = tokio::time::sleep_until(wake_at.into()) => {}
                    () = self.wake.notified() => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            let now = Instant::now();
            let rollup_due = rollup_end.is_some_and(|end| Utc::now() >= end);
            let sample_due = now >= sample_at;
            if !sample_due && !rollup_due {
                continue;
            }
            let live = self.state.lock().map(|s| s.leases.live_until(now).is_some()).unwrap_or(false);
            let (back, host, processes) = source.take(&self.pc, live || rollup_due).await;
            source = back;
            // The next sample is one step after this one was due, not after it was done, so "every second" stays
            // every second rather than every second plus the sampling time; a sample that came late (or early, for
            // a rollup) starts the count afresh.
            let taken = Instant::now();
            last_sample = if sample_due && taken.duration_since(sample_at) < step { sample_at } else { taken };
            if live {
                self.publish_live(&host, processes.as_ref()).await;
            }
            rollup.add_host(&host);
            if let Some(processes) = &processes {
                rollup.add_processes(processes.span, &processes.list);
            }
            if let Ok(mut state) = self.state.lock() {
                state.history.push(host);
            }
            if let Some(end) = rollup_end.filter(|_| rollup_due) {
                unsent.push_back(rollup.finish(&self.pc, end));
                while unsent.len() > MAX_UNSENT_ROLLUPS {
                    unsent.pop_front();
                    tracing::warn!("the broker has not taken this agent's rollups for a while; dropping the oldest");
                }
                rollup_end = Some(rollup::window_end(Utc::now(), rollup_every));
                send_at = Some(Instant::now() + send_spread);
            }
        }
    }

    async fn publish_live(&self, host: &HostSample, processes: Option<&Processes>) {
        if let Ok(body) = serde_json::to_vec(host)
            && let Err(err) = self.client.publish(subject::perf_host(&self.pc), body.into()).await
        {
            tracing::debug!(error = %err, "live host sample not sent");
        }
        let Some(processes) = processes else { return };
        let mut sample = ProcSample {
            at: processes.at,
            span_ms: u64::try_from(processes.span.as_millis()).unwrap_or(u64::MAX),
            io: processes.io,
            total: processes.total,
            processes: rollup::top(&processes.list, self.top),
            ..ProcSample::empty(self.pc.clone())
        };
        sample.bound();
        if let Ok(body) = serde_json::to_vec(&sample)
            && let Err(err) = self.client.publish(subject::perf_proc(&self.pc), body.into()).await
        {
            tracing::debug!(error = %err, "live process sample not sent");
        }
        if let Ok(mut state) = self.state.lock() {
            state.processes = Some(sample);
        }
    }

    /// Sends the rollups the broker has not taken yet, oldest first; stops at the first it refuses. Each carries
    /// a message id of its window, so one sent twice (an ack lost on the way) is kept once.
    async fn send_rollups(&self, unsent: &mut VecDeque<PerfRollup>) {
        let js = async_nats::jetstream::new(self.client.clone());
        while let Some(rollup) = unsent.front() {
            let Ok(body) = serde_json::to_vec(rollup) else {
                unsent.pop_front();
                continue;
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{}.{}", self.pc, rollup.start.timestamp_millis()).as_str());
            let sent = tokio::time::timeout(PUBLISH_TIMEOUT, async {
                js.publish_with_headers(subject::perf_rollup(&self.pc), headers, body.into()).await?.await
            })
            .await;
            match sent {
                Ok(Ok(_)) => {
                    unsent.pop_front();
                }
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, unsent = unsent.len(), "rollup not taken; sent with the next one");
                    return;
                }
                Err(_) => {
                    tracing::debug!(unsent = unsent.len(), "rollup not acknowledged in time; sent with the next one");
                    return;
                }
            }
        }
    }
}

fn random_up_to(max: Duration) -> Duration {
    if max.is_zero() { Duration::ZERO } else { rand::random_range(Duration::ZERO..=max) }
}

/// Cuts a reply's history (oldest first) until it fits one message.
fn fit(mut reply: LeaseReply) -> LeaseReply {
    reply.bound();
    while !reply.history.is_empty() && serde_json::to_vec(&reply).map_or(0, |b| b.len()) > MAX_REPLY_BYTES {
        let drop = reply.history.len().div_ceil(2);
        reply.history.drain(..drop);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_too_large_for_one_message_loses_its_oldest_history() {
        let pc = PcId::new("pc-1").unwrap();
        let sample = HostSample { cores: vec![55.5; 1024], ..HostSample::empty(pc.clone()) };
        let reply = LeaseReply {
            pc_id: pc,
            accepted: true,
            lease_ms: 30_000,
            interval_ms: 250,
            viewers: 1,
            error: String::new(),
            history: vec![sample; 480],
            processes: None,
        };
        let fitted = fit(reply);
        assert!(!fitted.history.is_empty());
        assert!(serde_json::to_vec(&fitted).unwrap().len() <= MAX_REPLY_BYTES);
    }
}
