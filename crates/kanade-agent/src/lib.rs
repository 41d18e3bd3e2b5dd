//! kanade's endpoint agent. `run` connects to NATS (outbound only), answers pings, publishes heartbeats, takes
//! commands addressed to all agents, to its groups and to itself, runs them through the gate and the executor,
//! and hands every result to the on-disk outbox, which publishes it to `RESULTS`.

pub mod catchup;
pub mod connection;
pub mod executor;
pub mod gate;
pub mod heartbeat;
pub mod jobstate;
pub mod ledger;
pub mod liveconfig;
pub mod outbox;
pub mod pipeline;
pub mod platform;
pub mod running;
pub mod simulate;
pub mod update;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::{Client, Message, jetstream};
use chrono::Utc;
use futures::StreamExt;
use kanade_shared::config::AgentConfig;
use kanade_shared::resources::{KV_SCRIPT_CURRENT, KV_SCRIPT_STATUS};
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Command, ExecResult, KillAck, OutputChunk, Reason, ResultStatus, RunStarted};
use kanade_shared::{ExecId, JobId, ResultId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::executor::{Executor, ScriptRunner};
use crate::heartbeat::{Counters, HeartbeatSource};
use crate::ledger::RunLedger;
use crate::outbox::Outbox;

/// The agent's version, as reported in heartbeats. A release build may set `KANADE_BUILD_VERSION`.
pub const VERSION: &str = match option_env!("KANADE_BUILD_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

use kanade_shared::release::MARKER_PREFIX;
const MARKER_LEN: usize = MARKER_PREFIX.len() + VERSION.len() + 1;

const fn marker() -> [u8; MARKER_LEN] {
    let mut out = [0u8; MARKER_LEN];
    let mut i = 0;
    while i < MARKER_PREFIX.len() {
        out[i] = MARKER_PREFIX[i];
        i += 1;
    }
    let version = VERSION.as_bytes();
    let mut j = 0;
    while j < version.len() {
        out[i + j] = version[j];
        j += 1;
    }
    out
}

/// `\0KANADE-AGENT-VERSION:<version>\0` in the binary itself, where `kanade agent publish` reads the version
/// from (on any OS, for any target); see `kanade_ops::release`. Kept by `#[used]`, and read once at start
/// ([`version_marker`]) so no linker drops it either.
#[used]
pub static VERSION_MARKER: [u8; MARKER_LEN] = marker();

/// The embedded marker, read through a black box so it stays in the binary.
pub fn version_marker() -> &'static [u8] {
    std::hint::black_box(&VERSION_MARKER)
}

/// How long an updated agent runs connected before it counts as healthy (and cannot be rolled back any more).
const PROVEN_AFTER: Duration = Duration::from_secs(5);

/// How long a stopping agent waits to hand what it sent to the broker.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// How long running scripts get to finish when the agent is asked to stop, before they are killed and reported
/// as interrupted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Live output chunks buffered per run before new ones are dropped (the result still carries all of it).
const OUTPUT_BUFFER: usize = 256;

/// The `agent_config` values in force.
struct Applied {
    heartbeat_interval: Duration,
    slots: usize,
}

struct Agent {
    config: AgentConfig,
    client: Client,
    outbox: Arc<Outbox>,
    ledger: RunLedger,
    executor: Executor,
    heartbeat: Arc<HeartbeatSource>,
    running: Mutex<HashMap<ExecId, (JobId, CancellationToken)>>,
    malformed: AtomicU64,
    stopping: AtomicBool,
    /// The subjects this agent takes commands on: all, its groups, itself.
    command_filters: Vec<String>,
    catch_up: catchup::Position,
    shutdown: CancellationToken,
    /// The KV state the gate reads.
    jobs: jobstate::JobStates,
    /// `max_local_concurrent` run slots; a tokio semaphore serves waiters in arrival order.
    slots: Arc<tokio::sync::Semaphore>,
    /// Wakes runs waiting on jitter or a slot when the job state changes.
    jobs_changed: tokio::sync::Notify,
    /// The layers of `agent_config` that apply to this agent, and what of them is in force.
    live: liveconfig::LiveConfig,
    applied: Mutex<Applied>,
    /// The heartbeat interval in force; the main loop re-arms its timer when it changes.
    heartbeat_every: tokio::sync::watch::Sender<Duration>,
    /// Self-update: the version being fetched now.
    updating: Mutex<Option<String>>,
}

/// Runs the agent until `shutdown` is cancelled: its own connection, real scripts.
pub async fn run(mut config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone().unwrap_or_else(|| kanade_shared::config::default_data_dir("agent"));
    config.data_dir = Some(data_dir.clone());
    let (client, connects) = connection::connect(&config.nats, &format!("kanade-agent {}", config.pc_id))
        .await
        .context("cannot set up the NATS connection")?;
    let executor = Executor::Script(ScriptRunner::new(data_dir.join("agent-scripts"), config.output_limit_bytes));
    let heartbeat = Arc::new(HeartbeatSource::new());
    let result = serve(config, executor, heartbeat, client.clone(), connects, shutdown, None).await;
    // Bounded: with the broker away a flush waits for a reconnect that may never come, and a stop must not hang.
    let _ = tokio::time::timeout(FINAL_FLUSH, client.flush()).await;
    result
}

/// Runs one agent over `client` until `shutdown`. The connection may be shared with other agents (the fleet
/// simulator); everything else — subscriptions, gate, ledger, outbox, heartbeats — is this agent's own.
pub async fn serve(
    config: AgentConfig,
    executor: Executor,
    heartbeat: Arc<HeartbeatSource>,
    client: Client,
    mut connects: connection::Connects,
    shutdown: CancellationToken,
    ready: Option<Arc<tokio::sync::Semaphore>>,
) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone().unwrap_or_else(|| kanade_shared::config::default_data_dir("agent"));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create data dir `{}`", data_dir.display()))?;
    let outbox = Arc::new(
        Outbox::open(data_dir.join("outbox"), config.outbox_max_bytes)
            .with_context(|| format!("cannot open outbox in `{}`", data_dir.display()))?,
    );
    let ledger = RunLedger::open(data_dir.join("runs"))
        .with_context(|| format!("cannot open run ledger in `{}`", data_dir.display()))?;
    let runs_dir = data_dir.join("runs");
    outbox.set_salvage(Box::new(move |result_id, why| RunLedger::lost_result(&runs_dir, result_id, why)));
    tracing::info!(
        pc_id = %config.pc_id,
        groups = ?config.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        data_dir = %data_dir.display(),
        nats = ?config.nats.urls,
        version = VERSION,
        pending_results = outbox.pending(),
        "kanade-agent starting"
    );
    let js = jetstream::new(client.clone());

    let config_slots = config.max_local_concurrent.max(1);
    let (config_pc, config_groups, config_heartbeat) =
        (config.pc_id.clone(), config.groups.clone(), config.heartbeat_interval);
    let mut command_filters =
        vec![subject::commands_for(&Target::All), subject::commands_for(&Target::Pc(config.pc_id.clone()))];
    command_filters.extend(config.groups.iter().map(|g| subject::commands_for(&Target::Group(g.clone()))));
    let agent = Arc::new(Agent {
        executor,
        config,
        client: client.clone(),
        outbox: outbox.clone(),
        ledger,
        heartbeat,
        running: Mutex::new(HashMap::new()),
        malformed: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        command_filters,
        catch_up: catchup::Position::new(&data_dir),
        shutdown: shutdown.clone(),
        jobs: jobstate::JobStates::default(),
        slots: Arc::new(tokio::sync::Semaphore::new(config_slots)),
        jobs_changed: tokio::sync::Notify::new(),
        live: liveconfig::LiveConfig::new(config_pc, config_groups),
        applied: Mutex::new(Applied { heartbeat_interval: config_heartbeat, slots: config_slots }),
        heartbeat_every: tokio::sync::watch::Sender::new(config_heartbeat),
        updating: Mutex::new(None),
    });
    agent.recover().await;
    let mut subscriptions = Vec::new();
    for filter in &agent.command_filters {
        subscriptions
            .push(client.subscribe(filter.clone()).await.with_context(|| format!("cannot subscribe to `{filter}`"))?);
    }
    let mut commands = futures::stream::select_all(subscriptions);
    let mut kills = futures::stream::select(
        client.subscribe(subject::KILL_ALL).await.context("cannot subscribe to kill requests")?,
        client.subscribe(subject::KILL_JOB_ALL).await.context("cannot subscribe to kill requests")?,
    );
    let mut pings = client.subscribe(subject::ping(&agent.config.pc_id)).await.context("cannot subscribe to pings")?;
    let mut config_changes = Vec::new();
    for filter in agent.live.subjects() {
        config_changes
            .push(client.subscribe(filter.clone()).await.with_context(|| format!("cannot subscribe to `{filter}`"))?);
    }
    let mut config_changes = futures::stream::select_all(config_changes);
    let mut heartbeat_every = agent.heartbeat_every.subscribe();
    let mut job_changes = futures::stream::select(
        client.subscribe(subject::kv_changes(KV_SCRIPT_CURRENT)).await.context("cannot subscribe to script_current")?,
        client.subscribe(subject::kv_changes(KV_SCRIPT_STATUS)).await.context("cannot subscribe to script_status")?,
    );

    let publisher_stop = CancellationToken::new();
    let publisher = tokio::spawn(outbox.clone().run_publisher(js, publisher_stop.clone()));
    let runs = TaskTracker::new();
    let mut heartbeat = tokio::time::interval(agent.config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    connects.mark_unchanged();
    if let Some(ready) = ready {
        // Subscriptions are queued on the connection; the caller confirms them with a round trip.
        ready.add_permits(1);
    }
    // Subscribed first, then read back: a command published in between arrives one way or the other (or both, and
    // the ledger runs it once).
    runs.spawn(agent.clone().catch_up(runs.clone()));
    if update::enabled() {
        // A new binary has proven itself once it has run connected, subscribed and answering a round trip, for a
        // while: then the boot sentinel is cleared, and what the start decided goes on the timeline.
        tokio::spawn({
            let (client, agent, shutdown) = (client.clone(), agent.clone(), shutdown.clone());
            async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(PROVEN_AFTER) => {}
                        () = shutdown.cancelled() => return,
                    }
                    if client.connection_state() == async_nats::connection::State::Connected
                        && tokio::time::timeout(Duration::from_secs(10), client.flush()).await.is_ok_and(|f| f.is_ok())
                    {
                        break;
                    }
                }
                update::healthy(VERSION);
                if let Some((event, details)) = update::take_pending_event() {
                    update::obs(&client, &agent.config.pc_id, &event, details).await;
                }
            }
        });
    }

    loop {
        tokio::select! {
            Some(message) = commands.next() => {
                runs.spawn(agent.clone().handle_command(message.subject.to_string(), message.payload));
            }
            Some(message) = kills.next() => agent.handle_kill(&message).await,
            Some(message) = pings.next() => agent.handle_ping(&message).await,
            Some(message) = job_changes.next() => {
                if agent.jobs.apply(&message.subject, message.headers.as_ref(), &message.payload) {
                    agent.jobs_changed.notify_waiters();
                } else {
                    agent.malformed(&message.subject, message.payload.len(), &"not a job state change");
                }
            }
            Some(message) = config_changes.next() => {
                match agent.live.apply(&message.subject, message.headers.as_ref(), &message.payload) {
                    Ok(()) => agent.reconfigure(),
                    Err(why) => agent.malformed(&message.subject, message.payload.len(), &why),
                }
            }
            Ok(()) = heartbeat_every.changed() => {
                let every = *heartbeat_every.borrow_and_update();
                heartbeat = tokio::time::interval(every);
                heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
            _ = heartbeat.tick() => agent.publish_heartbeat().await,
            Ok(()) = connects.changed() => {
                outbox.wake();
                agent.publish_heartbeat().await;
                runs.spawn(agent.clone().catch_up(runs.clone()));
            }
            () = shutdown.cancelled() => break,
        }
    }

    tracing::info!(running = agent.running_count(), "shutting down: no new commands taken");
    drop(commands);
    drop(kills);
    drop(pings);
    drop(job_changes);
    drop(config_changes);
    runs.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, runs.wait()).await.is_err() {
        tracing::warn!(running = agent.running_count(), "runs still going after the grace period; killing them");
        agent.stopping.store(true, Ordering::Relaxed);
        agent.kill_all();
        runs.wait().await;
    }
    publisher_stop.cancel();
    let _ = publisher.await;
    tracing::info!(pending_results = outbox.pending(), "kanade-agent stopped");
    Ok(())
}

impl Agent {
    fn running_count(&self) -> u32 {
        self.running.lock().map(|r| u32::try_from(r.len()).unwrap_or(u32::MAX)).unwrap_or(0)
    }

    fn counters(&self) -> Counters {
        let (heartbeat_interval, slots) = self
            .applied
            .lock()
            .map(|a| (a.heartbeat_interval, a.slots))
            .unwrap_or((self.config.heartbeat_interval, self.config.max_local_concurrent));
        Counters {
            running: self.running_count(),
            outbox_pending: self.outbox.pending(),
            outbox_bytes: self.outbox.bytes(),
            outbox_full: self.outbox.is_full(),
            malformed_messages: self.malformed.load(Ordering::Relaxed),
            heartbeat_interval,
            max_local_concurrent: u32::try_from(slots).unwrap_or(u32::MAX),
        }
    }

    fn malformed(&self, subject: &str, bytes: usize, error: &dyn std::fmt::Display) {
        let total = self.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(subject, bytes, error = %error, total, "ignoring malformed message");
    }

    /// Reads back the commands missed while away and handles each like a live one, oldest first.
    async fn catch_up(self: Arc<Self>, runs: TaskTracker) {
        // A stop does not wait for a read-back in flight (with the broker away, each request waits out its
        // timeout). Cut short, it is simply done again after the restart: the position only moves at its end, and
        // the ledger keeps what it already handed on from running twice.
        let shutdown = self.shutdown.clone();
        tokio::select! {
            () = self.catch_up_now(runs) => {}
            () = shutdown.cancelled() => {}
        }
    }

    async fn catch_up_now(self: Arc<Self>, runs: TaskTracker) {
        let jitter = self.config.catch_up_jitter.mul_f64(rand::random_range(0.0..=1.0));
        tokio::select! {
            () = tokio::time::sleep(jitter) => {}
            () = self.shutdown.cancelled() => return,
        }
        // The gate's view first, so the commands read back next are judged against the current state.
        if let Err(err) = self.jobs.reload(&self.client).await {
            tracing::warn!(error = %err, "cannot re-read job state; live updates still apply");
        }
        // Apart, so a bucket not there yet delays nothing else.
        tokio::spawn({
            let agent = self.clone();
            async move { agent.reload_config().await }
        });
        let from = self.catch_up.load() + 1;
        let mut fetched = Vec::new();
        let mut complete_to = Some(u64::MAX);
        for filter in &self.command_filters {
            let mut backoff = Duration::from_millis(500);
            let read = loop {
                match catchup::fetch(&self.client, filter, from).await {
                    Ok(read) => break read,
                    Err(err) if backoff < Duration::from_secs(30) => {
                        tracing::warn!(filter, error = %err, retry_in = ?backoff, "catch-up failed");
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = self.shutdown.cancelled() => return,
                        }
                        backoff *= 2;
                    }
                    Err(err) => {
                        tracing::error!(filter, error = %err, "catch-up gave up; missed commands wait for the next reconnect");
                        return;
                    }
                }
            };
            complete_to = complete_to.zip(read.complete_to).map(|(a, b)| a.min(b));
            fetched.extend(read.commands);
        }
        fetched.sort_by_key(|f| f.seq);
        if !fetched.is_empty() {
            tracing::info!(commands = fetched.len(), from, "caught up on commands published while away");
        }
        for command in fetched {
            if self.shutdown.is_cancelled() {
                return;
            }
            runs.spawn(self.clone().handle_command(command.subject, command.payload));
        }
        if let Some(seq) = complete_to.filter(|s| *s != u64::MAX) {
            self.catch_up.save(seq);
        }
    }

    async fn publish_heartbeat(&self) {
        let heartbeat = self.heartbeat.build(&self.config, self.counters());
        match serde_json::to_vec(&heartbeat) {
            Ok(body) => {
                if let Err(err) = self.client.publish(subject::heartbeat(&self.config.pc_id), body.into()).await {
                    tracing::debug!(error = %err, "heartbeat not sent");
                }
            }
            Err(err) => tracing::error!(error = %err, "cannot encode heartbeat"),
        }
    }

    async fn handle_ping(&self, message: &Message) {
        let Some(reply) = &message.reply else { return };
        let heartbeat = self.heartbeat.build(&self.config, self.counters());
        if let Ok(body) = serde_json::to_vec(&heartbeat) {
            let _ = self.client.publish(reply.clone(), body.into()).await;
        }
    }

    async fn handle_kill(&self, message: &Message) {
        // `kill.job.<job>` kills every run of the job; `kill.<exec>` one execution.
        let matches: Vec<(ExecId, CancellationToken)> = if let Some(job) = subject::job_of_kill(&message.subject) {
            let running = self.running.lock().map(|r| r.clone()).unwrap_or_default();
            running.into_iter().filter(|(_, (j, _))| *j == job).map(|(exec, (_, token))| (exec, token)).collect()
        } else if let Some(exec) = subject::exec_of_kill(&message.subject) {
            let token = self.running.lock().ok().and_then(|running| running.get(&exec).map(|(_, t)| t.clone()));
            token.map(|token| (exec, token)).into_iter().collect()
        } else {
            let why = "kill subject does not end in a valid exec or job id";
            return self.malformed(&message.subject, message.payload.len(), &why);
        };
        for (exec, token) in matches {
            tracing::info!(exec_id = %exec, "kill requested");
            token.cancel();
            if let Some(reply) = &message.reply {
                let ack = KillAck { pc_id: self.config.pc_id.clone(), exec_id: exec };
                if let Ok(body) = serde_json::to_vec(&ack) {
                    let _ = self.client.publish(reply.clone(), body.into()).await;
                }
            }
        }
    }

    /// Re-reads the agent's `agent_config` layers and applies them, retrying with backoff while the bucket is not
    /// there (a broker set up after the agent started) or the broker does not answer.
    async fn reload_config(self: &Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.live.reload(&self.client).await {
                Ok(()) => return self.reconfigure(),
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "cannot read agent_config yet; live changes still apply");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// Puts the effective `agent_config` in force: the heartbeat interval and the number of run slots. The local
    /// config file's values are the defaults the layers override.
    fn reconfigure(self: &Arc<Self>) {
        let (settings, conflicts) = self.live.settings();
        for conflict in conflicts {
            tracing::warn!(%conflict, "agent_config: two of this agent's groups disagree");
        }
        for rejected in &settings.rejected {
            tracing::warn!(value = %rejected, "agent_config: ignoring a value this agent cannot use");
        }
        let heartbeat_interval = settings.heartbeat_interval.unwrap_or(self.config.heartbeat_interval);
        let slots = settings.max_local_concurrent.unwrap_or(self.config.max_local_concurrent).max(1);
        let Ok(mut applied) = self.applied.lock() else { return };
        if applied.heartbeat_interval != heartbeat_interval {
            tracing::info!(from = ?applied.heartbeat_interval, to = ?heartbeat_interval, "heartbeat interval changed");
            applied.heartbeat_interval = heartbeat_interval;
            self.heartbeat_every.send_replace(heartbeat_interval);
        }
        if applied.slots != slots {
            tracing::info!(from = applied.slots, to = slots, "max_local_concurrent changed");
            if slots > applied.slots {
                self.slots.add_permits(slots - applied.slots);
            } else {
                // Taken in turn like any run's slot, so runs under way finish and the queue keeps its order.
                let (slots_sem, fewer) = (self.slots.clone(), u32::try_from(applied.slots - slots).unwrap_or(u32::MAX));
                tokio::spawn(async move {
                    if let Ok(permits) = slots_sem.acquire_many_owned(fewer).await {
                        permits.forget();
                    }
                });
            }
            applied.slots = slots;
        }
        drop(applied);
        self.consider_update(&settings);
    }

    /// Starts fetching the target version when it differs from this agent's own (once per target).
    fn consider_update(self: &Arc<Self>, settings: &kanade_shared::layered::Settings) {
        let Some(target) = settings.target_version.clone() else { return };
        if target == VERSION {
            return;
        }
        if !update::enabled() {
            tracing::debug!(target = %target, "target version differs, but this process does not update itself");
            return;
        }
        if update::blocked().as_deref() == Some(target.as_str()) {
            return;
        }
        let Ok(mut updating) = self.updating.lock() else { return };
        if updating.as_deref() == Some(target.as_str()) {
            return;
        }
        *updating = Some(target.clone());
        let jitter = settings.target_version_jitter.unwrap_or_default();
        tokio::spawn(self.clone().update_to(target, jitter));
    }

    /// Waits out the jitter, then fetches, checks and swaps in `target` and stops the agent for the restart;
    /// retries what may pass (the broker away, the release not there yet) and gives up on what cannot (a
    /// corrupt or mislabelled release) until the target changes.
    async fn update_to(self: Arc<Self>, target: String, jitter: Duration) {
        let wait = jitter.mul_f64(rand::random_range(0.0..=1.0));
        tracing::info!(from = VERSION, to = %target, wait = ?wait, "agent update scheduled");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.shutdown.cancelled() => return,
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            let one_at_a_time = tokio::select! {
                guard = update::UPDATING.lock() => guard,
                () = self.shutdown.cancelled() => return,
            };
            if self.live.settings().0.target_version.as_deref() != Some(target.as_str()) {
                tracing::info!(to = %target, "target version changed before the update; not updating to it");
                break;
            }
            let swapped = self.fetch_and_swap(&target).await;
            drop(one_at_a_time);
            match swapped {
                Ok(()) => {
                    tracing::info!(from = VERSION, to = %target, "new agent binary in place; restarting into it");
                    let details = serde_json::json!({ "from": VERSION, "to": target });
                    update::obs(&self.client, &self.config.pc_id, "agent_update", details).await;
                    self.shutdown.cancel();
                    return;
                }
                Err(err) if err.is_final() => {
                    update::block(&target, &err.to_string());
                    let details = serde_json::json!({ "to": target, "error": err.to_string() });
                    update::obs(&self.client, &self.config.pc_id, "agent_update_refused", details).await;
                    break;
                }
                Err(err) => {
                    tracing::warn!(to = %target, error = %err, retry_in = ?backoff, "agent update failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
            }
        }
        if let Ok(mut updating) = self.updating.lock()
            && updating.as_deref() == Some(target.as_str())
        {
            *updating = None;
        }
    }

    /// Downloads and checks `target`, stages it as `<exe>.new`, makes sure it runs here, and swaps it in.
    async fn fetch_and_swap(&self, target: &str) -> Result<(), update::UpdateError> {
        let bytes = update::download(&self.client, target).await?;
        let staged = update::stage(&bytes)?;
        drop(bytes);
        if let Err(err) = update::probe(&staged, &format!("{target}/{}", update::platform()), target).await {
            let _ = std::fs::remove_file(&staged);
            return Err(err);
        }
        update::swap(VERSION, target)
    }

    fn kill_all(&self) {
        if let Ok(running) = self.running.lock() {
            running.values().for_each(|(_, token)| token.cancel());
        }
    }

    async fn handle_command(self: Arc<Self>, subject_name: String, payload: bytes::Bytes) {
        let command: Command = match serde_json::from_slice(&payload) {
            Ok(command) => command,
            Err(err) => return self.malformed(&subject_name, payload.len(), &err),
        };
        if subject::job_of_command(&subject_name).as_ref() != Some(&command.job_id) {
            let why = format!("job id `{}` does not match the subject", command.job_id);
            return self.malformed(&subject_name, payload.len(), &why);
        }
        match self.ledger.claim(&command.exec_id) {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(exec_id = %command.exec_id, "already handled; ignoring redelivery");
                return;
            }
            Err(err) => {
                // Without a durable claim the agent cannot promise to run this only once, so it does not run it.
                tracing::error!(exec_id = %command.exec_id, error = %err, "cannot record the run; command not run");
                return;
            }
        }
        let view = self.jobs.view(&command.job_id);
        if !command.version.is_empty() && view.current_version.as_ref().is_some_and(|v| *v != command.version) {
            // The operator sets `script_current` before sending a new version, but this agent may see the command
            // first (its subscriptions are polled in no fixed order): read the key itself before calling it stale.
            if let Err(err) = self.jobs.refresh(&self.client, &command.job_id).await {
                tracing::warn!(job_id = %command.job_id, error = %err, "cannot re-read the job's current version");
            }
        }
        let result = match gate::decide(&command, Utc::now(), &self.jobs.view(&command.job_id)) {
            gate::Decision::Skip(reason) => {
                tracing::info!(exec_id = %command.exec_id, job_id = %command.job_id, %reason, "command skipped");
                ExecResult::skipped(&command, &self.config.pc_id, reason, Utc::now())
            }
            gate::Decision::Run => match self.execute(&command).await {
                Some(result) => result,
                None => return,
            },
        };
        self.record(&result).await;
    }

    /// Puts a run's result in the outbox and marks the run finished in the ledger.
    async fn record(&self, result: &ExecResult) {
        if let Err(err) = self.outbox.put(result).await {
            // Left `started` (or `claimed`) in the ledger, the run is reported `interrupted` at the next start.
            tracing::error!(result_id = %result.result_id, error = %err, "cannot write result to the outbox");
            return;
        }
        if let Err(err) = self.ledger.finished(&ledger::Started::finished(result)) {
            tracing::warn!(exec_id = %result.exec_id, error = %err, "cannot mark the run finished");
        }
    }

    /// What a previous life of this agent left unfinished (it was killed, or the machine lost power): a run that
    /// had not started is handed back to the catch-up, which runs it (within its deadline); a run whose script was
    /// running is reported `failed` with reason `interrupted` and never run again, since what it did is unknown.
    async fn recover(&self) {
        let unfinished = match self.ledger.unfinished() {
            Ok(unfinished) => unfinished,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the run ledger; unfinished runs are not reported");
                return;
            }
        };
        for exec in &unfinished.not_started {
            tracing::info!(exec_id = %exec, "a run taken on before a crash never started; it runs after all");
            if let Err(err) = self.ledger.release(exec) {
                tracing::error!(exec_id = %exec, error = %err, "cannot release the run; it will not run");
            }
        }
        if !unfinished.not_started.is_empty() {
            self.catch_up.reset();
        }
        let pc = &self.config.pc_id;
        for run in unfinished.interrupted {
            let result_id = ResultId::for_run(&run.exec_id, pc);
            if self.outbox.holds(&result_id) {
                // Its result was written; only the ledger's mark was lost.
                let _ = self.ledger.finished(&ledger::Started { finished_at: Some(Utc::now()), ..run });
                continue;
            }
            tracing::warn!(exec_id = %run.exec_id, job_id = %run.job_id, "the agent stopped while this run's script ran; reporting it interrupted");
            let result = ExecResult {
                result_id,
                exec_id: run.exec_id,
                job_id: run.job_id,
                version: run.version,
                pc_id: pc.clone(),
                status: ResultStatus::Failed,
                exit_code: None,
                stdout: String::new(),
                stderr: "the agent stopped while this script ran (killed, crashed or the machine lost power); \
                         what the script did is unknown, and it is not run again"
                    .into(),
                stdout_truncated: false,
                stderr_truncated: false,
                started_at: Some(run.started_at),
                finished_at: Utc::now(),
                reason: Some(Reason::Interrupted),
            };
            self.record(&result).await;
        }
    }

    /// Waits out the command's jitter and its turn in the local queue (either can be cut short by a kill), checks
    /// the gate again, and runs it.
    async fn execute(&self, command: &Command) -> Option<ExecResult> {
        let cancel = CancellationToken::new();
        if let Ok(mut running) = self.running.lock() {
            running.insert(command.exec_id.clone(), (command.job_id.clone(), cancel.clone()));
        }
        let result = match self.wait_turn(command, &cancel).await {
            Ok(permit) => {
                let result = self.run_now(command, cancel).await;
                drop(permit);
                Some(result)
            }
            Err(NotStarted::Finished(result)) => Some(*result),
            Err(NotStarted::Released) => {
                self.release(command);
                None
            }
        };
        if let Ok(mut running) = self.running.lock() {
            running.remove(&command.exec_id);
        }
        result
    }

    /// Gives back a run that never started because the agent is stopping: its claim is dropped and the next
    /// catch-up reads `EXEC` from the start, so the run happens after the restart (within its deadline) instead of
    /// being lost.
    fn release(&self, command: &Command) {
        tracing::info!(exec_id = %command.exec_id, "stopping before the run started; it runs after the restart");
        if let Err(err) = self.ledger.release(&command.exec_id) {
            tracing::error!(exec_id = %command.exec_id, error = %err, "cannot release the run; it will not run again");
        }
        self.catch_up.reset();
    }

    async fn wait_turn(
        &self,
        command: &Command,
        cancel: &CancellationToken,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, NotStarted> {
        let killed = || {
            tracing::info!(exec_id = %command.exec_id, "killed before it started");
            let result = ExecResult::not_started(command, &self.config.pc_id, ResultStatus::Killed, None, Utc::now());
            NotStarted::Finished(Box::new(result))
        };
        let skipped = |reason: Reason| {
            tracing::info!(exec_id = %command.exec_id, %reason, "skipped while waiting to start");
            NotStarted::Finished(Box::new(ExecResult::skipped(command, &self.config.pc_id, reason, Utc::now())))
        };
        // While it waits, every change to the job's KV state is checked at once: a revocation or a newer version
        // stops the run now, not when the wait would have ended.
        let recheck = || match gate::decide(command, Utc::now(), &self.jobs.view(&command.job_id)) {
            gate::Decision::Run => None,
            gate::Decision::Skip(reason) => Some(reason),
        };
        if let Some(jitter) = command.jitter.filter(|j| !j.is_zero()) {
            let until = tokio::time::Instant::now() + jitter.mul_f64(rand::random_range(0.0..=1.0));
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    () = cancel.cancelled() => return Err(killed()),
                    () = self.shutdown.cancelled() => return Err(NotStarted::Released),
                    () = self.jobs_changed.notified() => {
                        if let Some(reason) = recheck() {
                            return Err(skipped(reason));
                        }
                    }
                }
            }
        }
        let acquire = self.slots.clone().acquire_owned();
        tokio::pin!(acquire);
        let permit = loop {
            tokio::select! {
                permit = &mut acquire => break permit.map_err(|_| killed())?,
                () = cancel.cancelled() => return Err(killed()),
                () = self.shutdown.cancelled() => return Err(NotStarted::Released),
                () = self.jobs_changed.notified() => {
                    if let Some(reason) = recheck() {
                        return Err(skipped(reason));
                    }
                }
            }
        };
        // The deadline may have passed while this run waited, and a change may have slipped between two checks.
        match recheck() {
            None => Ok(permit),
            Some(reason) => Err(skipped(reason)),
        }
    }

    async fn run_now(&self, command: &Command, cancel: CancellationToken) -> ExecResult {
        let pc = &self.config.pc_id;
        tracing::info!(exec_id = %command.exec_id, job_id = %command.job_id, shell = %command.shell, "run started");
        let started = RunStarted {
            exec_id: command.exec_id.clone(),
            job_id: command.job_id.clone(),
            version: command.version.clone(),
            pc_id: pc.clone(),
            started_at: Utc::now(),
        };
        // Best effort: the event tells watchers a run is under way; the result is what must not be lost.
        if let Ok(body) = serde_json::to_vec(&started)
            && let Err(err) = self.client.publish(subject::event_started(pc, &command.exec_id), body.into()).await
        {
            tracing::debug!(error = %err, "started event not sent");
        }

        let record = ledger::Started {
            exec_id: command.exec_id.clone(),
            job_id: command.job_id.clone(),
            version: command.version.clone(),
            started_at: started.started_at,
            finished_at: None,
        };
        if let Err(err) = self.ledger.started(&record) {
            // Without the mark a crash during the script would hand the run back to run again: do not start it.
            tracing::error!(exec_id = %command.exec_id, error = %err, "cannot record the run's start; not running it");
            let mut result = ExecResult::not_started(command, pc, ResultStatus::Failed, None, Utc::now());
            result.stderr = format!("the agent could not record the run's start in its ledger: {err}");
            return result;
        }
        let (tx, rx) = mpsc::channel(OUTPUT_BUFFER);
        let forward = tokio::spawn(forward_output(self.client.clone(), subject::output(pc, &command.exec_id), rx));
        let outcome = self.executor.run(command, Some(tx), cancel).await;
        let _ = forward.await;
        tracing::info!(exec_id = %command.exec_id, status = %outcome.status, exit_code = ?outcome.exit_code, "run finished");

        ExecResult {
            result_id: ResultId::for_run(&command.exec_id, pc),
            exec_id: command.exec_id.clone(),
            job_id: command.job_id.clone(),
            version: command.version.clone(),
            pc_id: pc.clone(),
            status: outcome.status,
            exit_code: outcome.exit_code,
            stdout: outcome.stdout.text,
            stderr: outcome.stderr.text,
            stdout_truncated: outcome.stdout.truncated,
            stderr_truncated: outcome.stderr.truncated,
            started_at: outcome.started_at,
            finished_at: outcome.finished_at,
            // A run killed because the agent itself is stopping says so, so nobody mistakes it for an operator's kill.
            reason: outcome.reason.or_else(|| {
                (outcome.status == ResultStatus::Killed && self.stopping.load(Ordering::Relaxed))
                    .then_some(Reason::Interrupted)
            }),
        }
    }
}

/// Why a run did not reach its script.
enum NotStarted {
    /// It ended before it started (killed, revoked, superseded, expired) and has its result.
    Finished(Box<ExecResult>),
    /// The agent is stopping; the run is handed back to run after the restart.
    Released,
}

async fn forward_output(client: Client, subject: String, mut rx: mpsc::Receiver<OutputChunk>) {
    while let Some(chunk) = rx.recv().await {
        if let Ok(body) = serde_json::to_vec(&chunk) {
            let _ = client.publish(subject.clone(), body.into()).await;
        }
    }
}
