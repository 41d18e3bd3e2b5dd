//! The agent's main loop: every source it listens to — commands, kills, pings, job-state and `agent_config`
//! changes, the heartbeat timer, reconnects, and what its own tasks report back — becomes one [`Event`], and the
//! loop handles one event at a time until shutdown. A new feature adds a variant, not a branch to a `select!` that
//! grows forever. Every task the loop starts is tracked, and the loop returns only after all of them ended.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Message, Subscriber};
use futures::StreamExt as _;
use futures::stream::{Select, SelectAll};
use kanade_shared::PcId;
use kanade_shared::authority::Act;
use kanade_shared::config::AgentConfig;
use kanade_shared::wire::{KillAck, ObsKind};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catchup::{CatchUp, ReadBack};
use crate::connection::Connects;
use crate::heartbeat::{Counters, Heartbeats, Malformed};
use crate::inventory::Inventory;
use crate::liveconfig::{Applied, LiveConfig};
use crate::logtail::LogTail;
use crate::obs::{self, OutboxWatch};
use crate::outbox::Outbox;
use crate::perf::Perf;
use crate::pipeline::Pipeline;
use crate::running::KillTarget;
use crate::update::Updater;

/// How long running scripts get to finish when the agent is asked to stop, before they are killed and reported
/// as interrupted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything the main loop reacts to. Shutdown is the end of the stream of events.
pub enum Event {
    /// A command on one of the agent's command subjects.
    Command(Message),
    /// `kill.<exec>` or `kill.job.<job>`.
    Kill(Message),
    /// `agents.<pc>.ping`.
    Ping(Message),
    /// `agents.<pc>.logs`: a request for the tail of the agent's own log.
    Logs(Message),
    /// `agents.<pc>.inventory`: a request to report inventory now.
    InventoryRequest(Message),
    /// The inventory interval (plus its jitter) has passed.
    InventoryDue,
    /// `agents.<pc>.perf`: a viewer asking for (renewing, giving up) a live performance stream.
    PerfLease(Message),
    /// A change to `script_current` or `script_status`.
    JobStateChanged(Message),
    /// A change to one of this agent's `agent_config` layers.
    AgentConfigChanged(Message),
    /// A new version of the trust list in KV.
    TrustListChanged(Message),
    /// The heartbeat interval has passed.
    HeartbeatDue,
    /// `agents.<pc>.renew`: the backend changed this PC's groups; renew the credential now.
    RenewNow(Message),
    /// Halfway through the credential's life (or a retry after a failed renewal).
    RenewDue,
    /// The connection came (back) up.
    Reconnected,
    /// One of the loop's own tasks reported back.
    Report(Report),
}

/// What the loop's own tasks report back to it.
pub enum Report {
    /// A catch-up read back what was published while the agent was away.
    CaughtUp(ReadBack),
    /// A reload of the `agent_config` layers after a (re)connect finished.
    AgentConfigRead,
    /// A renewal of the agent's credential finished.
    Renewed(Result<crate::credential::Held, String>),
}

/// Why [`MainLoop::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Shutdown was asked for.
    Stopped,
    /// The renewed credential names other groups: the agent is to start again with their subscriptions (it waited
    /// until no run was in flight).
    Regroup,
}

/// The way back from the loop's tasks into the loop. A queue and a wake-up rather than a channel: a tokio
/// channel allocates a block of slots up front, which ten thousand simulated agents would each pay for, for a
/// report that comes once per (re)connect.
#[derive(Clone, Default)]
struct Reports(Arc<ReportQueue>);

#[derive(Default)]
struct ReportQueue {
    queue: std::sync::Mutex<std::collections::VecDeque<Report>>,
    ready: tokio::sync::Notify,
}

impl Reports {
    fn send(&self, report: Report) {
        if let Ok(mut queue) = self.0.queue.lock() {
            queue.push_back(report);
        }
        // Stores a permit when the loop is not waiting, so no report is left unseen.
        self.0.ready.notify_one();
    }

    /// The next report. Cancel-safe: nothing is taken from the queue until it is returned.
    async fn recv(&self) -> Report {
        loop {
            if let Some(report) = self.0.queue.lock().ok().and_then(|mut queue| queue.pop_front()) {
                return report;
            }
            self.0.ready.notified().await;
        }
    }
}

/// The agent's subscriptions, made before the first catch-up reads anything back, so a command published in
/// between arrives one way or the other (or both, and the ledger runs it once).
pub struct Subscriptions {
    pub commands: SelectAll<Subscriber>,
    pub kills: Select<Subscriber, Subscriber>,
    pub pings: Subscriber,
    pub logs: Subscriber,
    pub inventory: Subscriber,
    pub perf: Subscriber,
    pub job_changes: Select<Subscriber, Subscriber>,
    pub config_changes: SelectAll<Subscriber>,
    /// The trust list's KV subject.
    pub trust: Subscriber,
    /// `agents.<pc>.renew`.
    pub renew: Subscriber,
}

/// The sources of [`Event`]s, merged by [`Sources::next`].
struct Sources {
    subscriptions: Subscriptions,
    heartbeat: Interval,
    /// When the next scheduled inventory is due.
    inventory_due: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// When the credential is to be renewed ([`NEVER`] without one).
    renew_due: std::pin::Pin<Box<tokio::time::Sleep>>,
    connects: Connects,
    /// What the loop's own tasks send back (catch-up, config reload).
    reports: Reports,
    shutdown: CancellationToken,
}

/// A wait that never ends in practice (a disabled inventory's timer), short enough to add to `Instant::now()`.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn random_up_to(max: Duration) -> Duration {
    if max.is_zero() { Duration::ZERO } else { rand::random_range(Duration::ZERO..=max) }
}

fn heartbeat_timer(every: Duration) -> Interval {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

impl Sources {
    /// The next event, or `None` once the agent is to stop.
    async fn next(&mut self) -> Option<Event> {
        let subscriptions = &mut self.subscriptions;
        tokio::select! {
            Some(message) = subscriptions.commands.next() => Some(Event::Command(message)),
            Some(message) = subscriptions.kills.next() => Some(Event::Kill(message)),
            Some(message) = subscriptions.pings.next() => Some(Event::Ping(message)),
            Some(message) = subscriptions.logs.next() => Some(Event::Logs(message)),
            Some(message) = subscriptions.inventory.next() => Some(Event::InventoryRequest(message)),
            () = &mut self.inventory_due => Some(Event::InventoryDue),
            Some(message) = subscriptions.renew.next() => Some(Event::RenewNow(message)),
            () = &mut self.renew_due => Some(Event::RenewDue),
            Some(message) = subscriptions.perf.next() => Some(Event::PerfLease(message)),
            Some(message) = subscriptions.job_changes.next() => Some(Event::JobStateChanged(message)),
            Some(message) = subscriptions.config_changes.next() => Some(Event::AgentConfigChanged(message)),
            Some(message) = subscriptions.trust.next() => Some(Event::TrustListChanged(message)),
            _ = self.heartbeat.tick() => Some(Event::HeartbeatDue),
            Ok(()) = self.connects.changed() => Some(Event::Reconnected),
            report = self.reports.recv() => Some(Event::Report(report)),
            () = self.shutdown.cancelled() => None,
        }
    }
}

/// What the main loop is built from.
pub struct Parts {
    pub config: AgentConfig,
    pub client: Client,
    pub pipeline: Arc<Pipeline>,
    pub outbox: Arc<Outbox>,
    pub heartbeats: Heartbeats,
    pub malformed: Arc<Malformed>,
    pub live: Arc<LiveConfig>,
    pub catch_up: Arc<CatchUp>,
    pub updater: Option<Updater>,
    pub log_tail: LogTail,
    pub inventory: Arc<Inventory>,
    pub perf: Arc<Perf>,
    pub subscriptions: Subscriptions,
    pub connects: Connects,
    pub background: TaskTracker,
    pub shutdown: CancellationToken,
    /// The agent's own credential, renewed by the loop; `None` for an agent without one (a development broker,
    /// the fleet simulator).
    pub renewal: Option<crate::credential::Renewal>,
}

pub struct MainLoop {
    pc: PcId,
    /// The config file's values, which the `agent_config` layers override.
    defaults: Applied,
    client: Client,
    pipeline: Arc<Pipeline>,
    outbox: Arc<Outbox>,
    heartbeats: Heartbeats,
    malformed: Arc<Malformed>,
    live: Arc<LiveConfig>,
    /// The `agent_config` values in force.
    applied: Applied,
    catch_up: Arc<CatchUp>,
    /// Cancels the catch-up in flight: a reconnect starts a fresh one instead, so one that keeps retrying against a
    /// broker that is down never piles up behind the next.
    catch_up_cancel: CancellationToken,
    updater: Option<Updater>,
    log_tail: LogTail,
    inventory: Arc<Inventory>,
    perf: Arc<Perf>,
    /// Whether the outbox was full when the last heartbeat looked, for the timeline's transitions.
    outbox_watch: OutboxWatch,
    sources: Sources,
    reports: Reports,
    /// Runs, and the catch-ups that hand runs on.
    runs: TaskTracker,
    /// Everything else the agent starts: config reloads, self-update, slot changes, log reads.
    background: TaskTracker,
    shutdown: CancellationToken,
    renewal: Option<crate::credential::Renewal>,
    /// A renewal changed the groups: leave for [`Exit::Regroup`] once no run is in flight.
    regroup_pending: bool,
    /// The loop stopped itself (its `shutdown` is this agent's own, a child of the process's) to regroup.
    regrouping: bool,
}

impl MainLoop {
    pub fn new(parts: Parts) -> Self {
        let Parts {
            config,
            client,
            pipeline,
            outbox,
            heartbeats,
            malformed,
            live,
            catch_up,
            updater,
            log_tail,
            inventory,
            perf,
            subscriptions,
            mut connects,
            background,
            shutdown,
            renewal,
        } = parts;
        // Only reconnects from here on: the first catch-up is started by `run` itself.
        connects.mark_unchanged();
        let reports = Reports::default();
        // The first inventory after a random wait up to the jitter, so a fleet started together spreads its reports.
        let first_inventory = match config.inventory.enabled {
            true => random_up_to(config.inventory.jitter),
            false => NEVER,
        };
        let sources = Sources {
            subscriptions,
            heartbeat: heartbeat_timer(config.heartbeat_interval),
            inventory_due: Box::pin(tokio::time::sleep(first_inventory)),
            renew_due: Box::pin(tokio::time::sleep(
                renewal.as_ref().map_or(NEVER, |r| r.wait(chrono::Utc::now().timestamp()).min(NEVER)),
            )),
            connects,
            reports: reports.clone(),
            shutdown: shutdown.clone(),
        };
        Self {
            pc: config.pc_id.clone(),
            defaults: Applied::from_config(&config),
            applied: Applied::from_config(&config),
            client,
            pipeline,
            outbox,
            heartbeats,
            malformed,
            live,
            catch_up,
            catch_up_cancel: shutdown.child_token(),
            updater,
            log_tail,
            inventory,
            perf,
            outbox_watch: OutboxWatch::default(),
            sources,
            reports,
            runs: TaskTracker::new(),
            background,
            shutdown,
            renewal,
            regroup_pending: false,
            regrouping: false,
        }
    }

    /// Handles events until shutdown, then stops as DESIGN.md says: no new commands, runs not yet started handed
    /// back, started ones given [`SHUTDOWN_GRACE`] and then killed (reported `interrupted`), and every task ended.
    pub async fn run(mut self) -> Exit {
        self.start_catch_up();
        if let Some(updater) = &self.updater {
            updater.prove_healthy();
        }
        let updated_from = self.updater.as_ref().and_then(Updater::updated_from);
        self.record(ObsKind::AgentStarted, obs::started(crate::version(), updated_from.as_deref()));
        while let Some(event) = self.sources.next().await {
            self.handle(event).await;
            if self.regroup_pending && self.pipeline.busy() == 0 && !self.regrouping {
                // Stops this agent's tasks (perf, reloads, ...) as a shutdown would; nothing is running.
                self.regrouping = true;
                self.shutdown.cancel();
            }
        }
        let exit = if self.regrouping { Exit::Regroup } else { Exit::Stopped };

        let Self { sources, pipeline, runs, background, .. } = self;
        tracing::info!(running = pipeline.running(), "shutting down: no new commands taken");
        drop(sources);
        runs.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, runs.wait()).await.is_err() {
            tracing::warn!(running = pipeline.running(), "runs still going after the grace period; killing them");
            pipeline.kill_remaining();
            runs.wait().await;
        }
        background.close();
        background.wait().await;
        exit
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Command(message) => {
                let pipeline = self.pipeline.clone();
                self.runs.spawn(pipeline.handle_command(message.subject.to_string(), message.headers, message.payload));
            }
            Event::Kill(message) => self.kill(&message).await,
            Event::Ping(message) => self.heartbeats.answer(&message, self.counters()).await,
            Event::Logs(message) => {
                self.log_tail.answer(message, &self.client, &self.background, &self.malformed).await;
            }
            Event::JobStateChanged(message) => {
                if !self.pipeline.job_state_changed(&message) {
                    self.malformed.record(&message.subject, message.payload.len(), &"not a job state change");
                }
            }
            Event::AgentConfigChanged(message) => {
                match self.live.apply(&message.subject, message.headers.as_ref(), &message.payload) {
                    Ok(()) => self.reconfigure(),
                    Err(why) => self.malformed.record(&message.subject, message.payload.len(), &why),
                }
            }
            Event::TrustListChanged(message) => {
                match self.pipeline.authority().changed(message.headers.as_ref(), &message.payload) {
                    // A key the new list trusts may have set job state the old one made this agent ignore.
                    Ok(Some(_)) => self.reload_job_state(),
                    Ok(None) => {}
                    Err(why) => tracing::warn!(error = %why, "ignoring a trust list"),
                }
            }
            Event::InventoryRequest(message) => self.inventory_requested(&message).await,
            Event::InventoryDue => {
                self.start_inventory(false);
                self.schedule_inventory();
            }
            Event::PerfLease(message) => self.perf_lease(&message).await,
            Event::HeartbeatDue => self.heartbeat().await,
            Event::Reconnected => {
                self.outbox.wake();
                self.heartbeat().await;
                self.start_catch_up();
                if self.inventory.take_unsent() {
                    self.start_inventory(false);
                }
            }
            Event::Report(Report::CaughtUp(read)) => {
                // Handed on oldest first; the position moves only now that every one of them is.
                for command in &read.commands {
                    let pipeline = self.pipeline.clone();
                    let (subject_name, headers) = (command.subject.clone(), command.headers.clone());
                    self.runs.spawn(pipeline.handle_command(subject_name, headers, command.payload.clone()));
                }
                self.catch_up.handed_on(&read);
            }
            Event::Report(Report::AgentConfigRead) => self.reconfigure(),
            Event::RenewNow(_) => self.start_renewal(),
            Event::RenewDue => {
                // An elapsed timer stays ready: park it until the renewal it starts has finished.
                self.sources.renew_due.as_mut().reset(tokio::time::Instant::now() + NEVER);
                self.start_renewal();
            }
            Event::Report(Report::Renewed(result)) => self.renewed(result).await,
        }
    }

    /// Asks for a new credential in the background (one at a time).
    fn start_renewal(&mut self) {
        let Some(renewal) = self.renewal.as_mut() else { return };
        if let Some(renew) = renewal.start(&self.client) {
            let reports = self.reports.clone();
            self.background.spawn(async move { reports.send(Report::Renewed(renew.await)) });
        }
    }

    /// A renewal finished: reconnect with the new credential, and schedule the next.
    async fn renewed(&mut self, result: Result<crate::credential::Held, String>) {
        let now = chrono::Utc::now().timestamp();
        let Some(renewal) = self.renewal.as_mut() else { return };
        if let crate::credential::Renewed::Fresh { regroup } = renewal.finished(result, now) {
            // The broker checks a credential when a connection is made: reconnect so it sees the new one.
            if let Err(err) = self.client.force_reconnect().await {
                tracing::warn!(error = %err, "cannot reconnect with the renewed credential; the next reconnect will");
            }
            if regroup {
                tracing::info!(
                    running = self.pipeline.running(),
                    "the credential names other groups; restarting once idle"
                );
                self.regroup_pending = true;
            }
        }
        let wait = renewal.wait(now).min(NEVER);
        self.sources.renew_due.as_mut().reset(tokio::time::Instant::now() + wait);
    }

    /// Answers a viewer's lease request; the perf task starts (or keeps) streaming.
    async fn perf_lease(&self, message: &Message) {
        let (reply, malformed) = self.perf.lease(&message.payload);
        if let Some(why) = malformed {
            self.malformed.record(&message.subject, message.payload.len(), &why);
        }
        if let Some(to) = &message.reply
            && let Ok(body) = serde_json::to_vec(&reply)
            && let Err(err) = self.client.publish(to.clone(), body.into()).await
        {
            tracing::debug!(error = %err, "perf lease reply not sent");
        }
    }

    /// Answers an inventory request, and starts the collection it asks for.
    async fn inventory_requested(&self, message: &Message) {
        let (ack, start) = self.inventory.request(&message.payload);
        if let Some(reply) = &message.reply
            && let Ok(body) = serde_json::to_vec(&ack)
        {
            let _ = self.client.publish(reply.clone(), body.into()).await;
        }
        if let Some(full) = start {
            self.start_inventory(full);
        }
    }

    /// Collects and reports inventory in the background: never in the way of commands.
    fn start_inventory(&self, full: bool) {
        let (inventory, shutdown) = (self.inventory.clone(), self.shutdown.clone());
        self.background.spawn(async move { inventory.report(full, &shutdown).await });
    }

    /// The next scheduled inventory: one interval from now plus a random part of the jitter.
    fn schedule_inventory(&mut self) {
        let schedule = self.applied.inventory;
        let wait = match self.inventory.enabled() {
            true => schedule.interval + random_up_to(schedule.jitter),
            false => NEVER,
        };
        self.sources.inventory_due.as_mut().reset(tokio::time::Instant::now() + wait);
    }

    /// Sends a heartbeat, and puts the outbox filling up or draining on the timeline when that changed since the
    /// last one.
    async fn heartbeat(&mut self) {
        let counters = self.counters();
        self.heartbeats.publish(counters).await;
        if let Some(kind) = self.outbox_watch.observe(counters.outbox_full) {
            let details = serde_json::json!({ "bytes": counters.outbox_bytes, "pending": counters.outbox_pending });
            self.record(kind, details);
        }
    }

    /// Publishes a timeline event without holding up the loop (the publish waits for the broker's ack).
    fn record(&self, kind: ObsKind, details: serde_json::Value) {
        let (client, pc) = (self.client.clone(), self.pc.clone());
        self.background.spawn(async move { obs::record(&client, &pc, kind.as_str(), details).await });
    }

    fn counters(&self) -> Counters {
        let (host_cpu_percent, host_mem_percent) = self.perf.figures();
        Counters {
            running: self.pipeline.running(),
            outbox_pending: self.outbox.pending(),
            outbox_bytes: self.outbox.bytes(),
            outbox_full: self.outbox.is_full(),
            malformed_messages: self.malformed.count(),
            refused_messages: self.pipeline.authority().refused(),
            heartbeat_interval: self.applied.heartbeat_interval,
            max_local_concurrent: u32::try_from(self.applied.slots).unwrap_or(u32::MAX),
            host_cpu_percent,
            host_mem_percent,
        }
    }

    /// Kills what the request names, queued or running, and confirms each to the requester: if a key that may
    /// act on this PC signed it, and this kill was not obeyed before (a forged or replayed kill stops nothing).
    async fn kill(&self, message: &Message) {
        let Some(target) = KillTarget::of_subject(&message.subject) else {
            let why = "kill subject does not end in a valid exec or job id";
            return self.malformed.record(&message.subject, message.payload.len(), &why);
        };
        let authority = self.pipeline.authority();
        match authority.check(Act::Kill, &message.subject, message.headers.as_ref(), &message.payload) {
            Ok(authorised) if authority.first_kill(&authorised) => {
                tracing::info!(subject = %message.subject, by = %authorised.name, "kill requested");
            }
            Ok(_) => return tracing::warn!(subject = %message.subject, "ignoring a kill already obeyed (replayed)"),
            Err(refusal) => return authority.refuse(Act::Kill, &message.subject, &refusal),
        }
        for exec in self.pipeline.kill(&target) {
            if let Some(reply) = &message.reply {
                let ack = KillAck { pc_id: self.pc.clone(), exec_id: exec };
                if let Ok(body) = serde_json::to_vec(&ack) {
                    let _ = self.client.publish(reply.clone(), body.into()).await;
                }
            }
        }
    }

    /// Re-reads the job state in the background (after the trust list changed).
    fn reload_job_state(&self) {
        let (pipeline, client, shutdown) = (self.pipeline.clone(), self.client.clone(), self.shutdown.clone());
        self.background.spawn(async move {
            tokio::select! {
                read = pipeline.jobs().reload(&client) => {
                    if let Err(err) = read {
                        tracing::warn!(error = %err, "cannot re-read job state; live updates still apply");
                    }
                    pipeline.job_state_reloaded();
                }
                () = shutdown.cancelled() => {}
            }
        });
    }

    /// Reads back what was missed (in a task of `runs`), after a jitter; the agent_config layers are re-read
    /// beside it once the job state is, apart so a bucket not there yet delays nothing else.
    fn start_catch_up(&mut self) {
        self.catch_up_cancel.cancel();
        self.catch_up_cancel = self.shutdown.child_token();
        let (catch_up, pipeline, client, shutdown) =
            (self.catch_up.clone(), self.pipeline.clone(), self.client.clone(), self.shutdown.clone());
        let superseded = self.catch_up_cancel.clone();
        let (reports, background, live) = (self.reports.clone(), self.background.clone(), self.live.clone());
        self.runs.spawn(async move {
            let reload_config = || {
                let (live, client, reports, shutdown) = (live, client.clone(), reports.clone(), shutdown.clone());
                background.spawn(async move {
                    // A stop does not wait for a read in flight (with the broker away it waits out its timeout).
                    tokio::select! {
                        () = live.reload_until_read(&client) => { reports.send(Report::AgentConfigRead); }
                        () = shutdown.cancelled() => {}
                    }
                });
            };
            // Nor for a read-back: cut short, it is done again after the restart (or by the reconnect's own).
            let read = tokio::select! {
                read = catch_up.read_back(&client, pipeline.jobs(), &superseded, reload_config) => read,
                () = superseded.cancelled() => None,
            };
            if let Some(read) = read {
                reports.send(Report::CaughtUp(read));
            }
        });
    }

    /// Puts the effective `agent_config` in force: the heartbeat interval, the number of run slots, and the target
    /// version.
    fn reconfigure(&mut self) {
        let (settings, conflicts) = self.live.settings();
        for conflict in conflicts {
            tracing::warn!(%conflict, "agent_config: two of this agent's groups disagree");
        }
        for rejected in &settings.rejected {
            tracing::warn!(value = %rejected, "agent_config: ignoring a value this agent cannot use");
        }
        let changes = self.applied.update(&settings, self.defaults);
        if let Some((from, to)) = changes.heartbeat_interval {
            tracing::info!(from = ?from, to = ?to, "heartbeat interval changed");
            self.sources.heartbeat = heartbeat_timer(to);
        }
        if let Some((from, to)) = changes.inventory {
            tracing::info!(from = ?from, to = ?to, "inventory schedule changed");
            self.schedule_inventory();
        }
        if let Some((from, to)) = changes.perf {
            tracing::info!(from = ?from, to = ?to, "perf schedule changed");
            self.perf.set_schedule(to);
        }
        if let Some((from, to)) = changes.slots {
            tracing::info!(from, to, "max_local_concurrent changed");
            self.pipeline.resize_slots(from, to, &self.background);
        }
        match &self.updater {
            Some(updater) => updater.consider(&settings),
            None => {
                if let Some(target) = settings.target_version.as_deref().filter(|target| *target != crate::version()) {
                    tracing::debug!(target, "target version differs, but this process does not update itself");
                }
            }
        }
    }
}
