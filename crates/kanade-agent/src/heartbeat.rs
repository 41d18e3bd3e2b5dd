//! Heartbeats: what the agent reports about itself every interval and in answer to a ping, and the count of
//! malformed messages it reports.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use kanade_shared::config::AgentConfig;
use kanade_shared::subject;
use kanade_shared::wire::Heartbeat;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// Messages the agent could not use: logged and counted, never fatal (one bad message cannot stop the daemon).
#[derive(Debug, Default)]
pub struct Malformed(AtomicU64);

impl Malformed {
    pub fn record(&self, subject: &str, bytes: usize, error: &dyn std::fmt::Display) {
        let total = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(subject, bytes, error = %error, total, "ignoring malformed message");
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The agent's live counters at the moment a heartbeat is built.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub running: u32,
    pub outbox_pending: u64,
    pub outbox_bytes: u64,
    pub outbox_full: bool,
    pub malformed_messages: u64,
    /// Commands, kills and job-state values refused for their signature since the agent started.
    pub refused_messages: u64,
    pub heartbeat_interval: Duration,
    pub max_local_concurrent: u32,
    /// The host's CPU and memory percentages from the latest performance sample, if one was taken.
    pub host_cpu_percent: Option<f32>,
    pub host_mem_percent: Option<f32>,
}

/// A process sample is reused for this long, so many agents in one process (the simulator) do not each re-read
/// the same numbers.
const SAMPLE_TTL: Duration = Duration::from_secs(1);

/// Builds heartbeats; keeps the process sampler between calls because CPU use is a difference of two samples.
pub struct HeartbeatSource {
    started: Instant,
    os_version: String,
    sampler: Mutex<Option<Sampler>>,
}

struct Sampler {
    system: System,
    pid: Pid,
    last: Option<(Instant, u64, f32)>,
}

impl Default for HeartbeatSource {
    fn default() -> Self {
        Self::new()
    }
}

impl HeartbeatSource {
    pub fn new() -> Self {
        let sampler = match (System::new(), sysinfo::get_current_pid()) {
            (Ok(system), Ok(pid)) => Some(Sampler { system, pid, last: None }),
            _ => {
                tracing::warn!("cannot sample the agent's own memory and CPU; heartbeats report zero");
                None
            }
        };
        Self { started: Instant::now(), os_version: crate::platform::os_version(), sampler: Mutex::new(sampler) }
    }

    fn sample(&self) -> (u64, f32) {
        let Ok(mut guard) = self.sampler.lock() else { return (0, 0.0) };
        let Some(sampler) = guard.as_mut() else { return (0, 0.0) };
        if let Some((at, rss, cpu)) = sampler.last
            && at.elapsed() < SAMPLE_TTL
        {
            return (rss, cpu);
        }
        sampler.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[sampler.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        let (rss, cpu) = sampler.system.process(sampler.pid).map_or((0, 0.0), |p| (p.memory(), p.cpu_usage()));
        sampler.last = Some((Instant::now(), rss, cpu));
        (rss, cpu)
    }

    pub fn build(&self, config: &AgentConfig, counters: Counters) -> Heartbeat {
        let (rss_bytes, cpu_percent) = self.sample();
        Heartbeat {
            pc_id: config.pc_id.clone(),
            hostname: config.hostname.clone(),
            os: crate::platform::os_name().to_owned(),
            os_version: self.os_version.clone(),
            arch: std::env::consts::ARCH.to_owned(),
            agent_version: crate::version().to_owned(),
            groups: config.groups.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            host_uptime_secs: System::uptime().unwrap_or_default(),
            rss_bytes,
            cpu_percent,
            running: counters.running,
            outbox_pending: counters.outbox_pending,
            outbox_bytes: counters.outbox_bytes,
            outbox_full: counters.outbox_full,
            malformed_messages: counters.malformed_messages,
            refused_messages: counters.refused_messages,
            heartbeat_interval_ms: u64::try_from(counters.heartbeat_interval.as_millis()).unwrap_or(u64::MAX),
            max_local_concurrent: counters.max_local_concurrent,
            host_cpu_percent: counters.host_cpu_percent,
            host_mem_percent: counters.host_mem_percent,
            sent_at: Utc::now(),
        }
    }
}

/// Sends one agent's heartbeats: every interval on `heartbeat.<pc>`, and in answer to a ping.
pub struct Heartbeats {
    source: std::sync::Arc<HeartbeatSource>,
    client: async_nats::Client,
    config: AgentConfig,
}

impl Heartbeats {
    pub fn new(source: std::sync::Arc<HeartbeatSource>, client: async_nats::Client, config: AgentConfig) -> Self {
        Self { source, client, config }
    }

    /// Publishes a heartbeat now (best effort: the next one follows an interval later).
    pub async fn publish(&self, counters: Counters) {
        let heartbeat = self.source.build(&self.config, counters);
        match serde_json::to_vec(&heartbeat) {
            Ok(body) => {
                if let Err(err) = self.client.publish(subject::heartbeat(&self.config.pc_id), body.into()).await {
                    tracing::debug!(error = %err, "heartbeat not sent");
                }
            }
            Err(err) => tracing::error!(error = %err, "cannot encode heartbeat"),
        }
    }

    /// Answers a ping with a fresh heartbeat.
    pub async fn answer(&self, ping: &async_nats::Message, counters: Counters) {
        let Some(reply) = &ping.reply else { return };
        let heartbeat = self.source.build(&self.config, counters);
        if let Ok(body) = serde_json::to_vec(&heartbeat) {
            let _ = self.client.publish(reply.clone(), body.into()).await;
        }
    }
}
