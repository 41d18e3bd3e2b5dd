//! The run pipeline: one command from arrival to result. Check its signature (`crate::authority`: a command no key
//! in the trust list may send here is refused with a `skipped` result naming why, and never claimed, so a forgery
//! cannot use up a real exec id), claim it in the ledger (so it runs once), gate it, wait out its jitter and its turn for a `max_local_concurrent` slot (gated again on every change
//! of its job's KV state), gate it right before it starts, record the start durably, run it, and put the result in
//! the outbox; or, when the agent stops before the run started, hand it back. A command with nothing to wait for
//! (no jitter, a free slot, the gate's go) is claimed straight into `started`: one durable write instead of two.
//! A run still going after [`ANNOUNCE_AFTER`] announces itself (`events.started`, live output); a quicker one sends
//! only its result.
//!
//! What happens at each step is decided by the pure functions at the top of this file ([`on_arrival`],
//! [`on_wake`], [`finished_reason`]), tested without a broker; [`Pipeline`] does the I/O around them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use chrono::{DateTime, Utc};
use kanade_shared::authority::{Act, Refusal};
use kanade_shared::wire::{
    Command, Consent, ExecResult, FullOutput, HeldState, OutputChunk, OutputStream, Reason, ResultStatus, RunHeld,
    RunStarted,
};
use kanade_shared::{PcId, ResultId, resources, subject};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::authority::Authority;
use crate::catchup::Position;
use crate::client_ipc::ClientDesk;
use crate::consent::{self, ConsentBook, Hold};
use crate::executor::{Executor, Spooled};
use crate::gate::{self, JobView};
use crate::heartbeat::Malformed;
use crate::jobstate::JobStates;
use crate::ledger::{self, RunLedger};
use crate::outbox::Outbox;
use crate::running::{KillTarget, Running};

/// Live output chunks buffered per run before new ones are dropped (the result still carries all of it). They wait
/// here too while the run is not yet announced.
const OUTPUT_BUFFER: usize = 256;

/// How long a run goes before it announces itself with `events.started` and its live output. A run that ends sooner
/// (most runs of a fan-out) sends only its result, which carries its start and its output: two broker messages per
/// run fewer, one of them stored in `EVENTS`, for something nobody had the time to watch.
pub const ANNOUNCE_AFTER: Duration = Duration::from_secs(1);

/// What the ledger said when the command was claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This agent takes the run on now.
    Taken,
    /// It had already (a redelivery, or a read-back of a command seen live).
    AlreadyTaken,
    /// The claim could not be written.
    Failed,
}

/// What to do with an arriving command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// Handled before: nothing to do.
    AlreadyHandled,
    /// Without a durable claim the agent cannot promise to run it only once, so it does not run it.
    NotClaimed,
    /// It names another version than the mirror holds: re-read the job's state before calling it stale.
    Reread,
    /// Settled now, with this reason.
    Skip(Reason),
    /// On to wait for its jitter and a slot.
    Wait,
}

/// Decides what an arriving command gets, from the ledger's claim and the gate's view of its job. `reread` says
/// the view was re-read for this command already.
pub fn on_arrival(claim: Claim, command: &Command, now: DateTime<Utc>, view: &JobView, reread: bool) -> Arrival {
    match claim {
        Claim::Taken => {}
        Claim::AlreadyTaken => return Arrival::AlreadyHandled,
        Claim::Failed => return Arrival::NotClaimed,
    }
    // The operator sets `script_current` before sending a new version, but this agent may see the command first
    // (its subscriptions are polled in no fixed order): it reads the key itself before calling the command stale.
    if !reread && !command.version.is_empty() && view.current_version.as_ref().is_some_and(|v| *v != command.version) {
        return Arrival::Reread;
    }
    match gate::decide(command, now, view) {
        gate::Decision::Run => Arrival::Wait,
        gate::Decision::Skip(reason) => Arrival::Skip(reason),
    }
}

/// Whether an arriving command can be claimed straight into `started`, with no `claimed` write first: it has no
/// jitter to wait out and the gate lets it run now on the view as it is (one that wants its job re-read, or is
/// settled as skipped, takes the usual path). It also needs a slot free at once, which the caller takes.
pub fn starts_at_once(command: &Command, now: DateTime<Utc>, view: &JobView) -> bool {
    command.consent.is_none()
        && command.jitter.is_none_or(|jitter| jitter.is_zero())
        && on_arrival(Claim::Taken, command, now, view, false) == Arrival::Wait
}

/// What woke a run that waits to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Its jitter is over.
    JitterOver,
    /// It has a slot.
    SlotFree,
    /// The slots are gone (the semaphore was closed).
    SlotsClosed,
    /// Someone killed it.
    Killed,
    /// The agent is stopping.
    Stopping,
    /// Its job's KV state (current version, revocation) changed.
    JobChanged,
}

/// What a waiting run does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// Keep waiting in the same stage.
    Wait,
    /// This stage is over: after the jitter, wait for a slot; with a slot, start.
    Go,
    /// It will not start.
    Stop(Stop),
}

/// Why a run does not reach its script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Killed before it started: a `killed` result.
    Killed,
    /// Revoked, superseded or expired while it waited: a `skipped` result.
    Skip(Reason),
    /// The agent is stopping: the run is handed back, to run after the restart, and has no result.
    Release,
}

/// Decides what a waiting run does on `wake`. Every change to its job's state is judged at once, so a revocation
/// or a newer version stops the run now rather than when the wait would have ended; and the gate is asked once more
/// with the slot in hand, since the deadline may have passed during the wait and a change may have slipped between
/// two checks.
pub fn on_wake(wake: Wake, command: &Command, now: DateTime<Utc>, view: &JobView) -> Turn {
    let gate = || match gate::decide(command, now, view) {
        gate::Decision::Run => None,
        gate::Decision::Skip(reason) => Some(reason),
    };
    match wake {
        Wake::JitterOver => Turn::Go,
        Wake::Killed | Wake::SlotsClosed => Turn::Stop(Stop::Killed),
        Wake::Stopping => Turn::Stop(Stop::Release),
        Wake::JobChanged => gate().map_or(Turn::Wait, |reason| Turn::Stop(Stop::Skip(reason))),
        Wake::SlotFree => gate().map_or(Turn::Go, |reason| Turn::Stop(Stop::Skip(reason))),
    }
}

/// The reason a finished run's result carries: the executor's own, or `interrupted` for a run killed because the
/// agent itself is stopping, so nobody mistakes it for an operator's kill.
pub fn finished_reason(status: ResultStatus, reason: Option<Reason>, stopping: bool) -> Option<Reason> {
    reason.or_else(|| (status == ResultStatus::Killed && stopping).then_some(Reason::Interrupted))
}

/// Counts a run waiting for its user for as long as it lives.
struct HeldCount(Arc<std::sync::atomic::AtomicU32>);

impl HeldCount {
    fn new(count: &Arc<std::sync::atomic::AtomicU32>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for HeldCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long telling the operator where a held run stands may take.
const TELL_PATIENCE: Duration = Duration::from_secs(5);

/// How long before a command's own deadline (after which it is skipped as expired) a held run starts at the latest.
const START_BEFORE_EXPIRY: Duration = Duration::from_secs(30);

/// How long a run may be held for its user: the consent's deadline, ending a little before the command's own.
pub fn consent_deadline(command: &Command, consent: &Consent) -> Duration {
    let Some(expires) = command.deadline else { return consent.deadline };
    let left = (expires - Utc::now()).to_std().unwrap_or_default().saturating_sub(START_BEFORE_EXPIRY);
    consent.deadline.min(left)
}

/// Everything a run needs, shared by all runs of one agent.
pub struct Pipeline {
    pc: PcId,
    client: Client,
    outbox: Arc<Outbox>,
    ledger: RunLedger,
    executor: Executor,
    /// The KV state the gate reads, and a wake-up for runs waiting on it.
    jobs: JobStates,
    jobs_changed: Notify,
    /// `max_local_concurrent` run slots; a tokio semaphore serves waiters in arrival order.
    slots: Arc<Semaphore>,
    running: Running,
    /// Set once the grace period of a stop ran out and the remaining runs are being killed.
    stopping: AtomicBool,
    /// Reset when a run is handed back, so the next catch-up reads it again.
    position: Position,
    shutdown: CancellationToken,
    malformed: Arc<Malformed>,
    /// Commands already refused, by message (exec id and subject): a catch-up reads a refused command again on every
    /// reconnect, and it is reported once.
    refused: Mutex<HashSet<String>>,
    /// Runs held for their user's consent.
    consents: Arc<ConsentBook>,
    /// How many of the runs held are waiting for their user.
    held: Arc<std::sync::atomic::AtomicU32>,
    /// What kanade-client is shown; told of every result.
    desk: Option<Arc<ClientDesk>>,
}

/// Refused commands remembered at most; beyond, the set starts again (a repeat is then reported twice, no worse).
const MAX_REFUSED_REMEMBERED: usize = 10_000;

/// What a [`Pipeline`] is built from.
pub struct PipelineParts {
    pub pc: PcId,
    /// What this agent obeys.
    pub authority: Arc<Authority>,
    pub client: Client,
    pub outbox: Arc<Outbox>,
    pub ledger: RunLedger,
    pub executor: Executor,
    pub slots: usize,
    pub position: Position,
    pub shutdown: CancellationToken,
    pub malformed: Arc<Malformed>,
    /// kanade-client's view of the agent, with the runs held for consent; `None`: nobody to ask, and such runs run
    /// at once.
    pub desk: Option<Arc<ClientDesk>>,
}

impl Pipeline {
    pub fn new(parts: PipelineParts) -> Self {
        let PipelineParts {
            pc,
            authority,
            client,
            outbox,
            ledger,
            executor,
            slots,
            position,
            shutdown,
            malformed,
            desk,
        } = parts;
        let consents = desk
            .as_ref()
            .map_or_else(|| ConsentBook::open(None, crate::consent::Presence::Nobody), |desk| desk.consents().clone());
        Self {
            pc,
            client,
            outbox,
            ledger,
            executor,
            jobs: JobStates::new(authority),
            jobs_changed: Notify::new(),
            slots: Arc::new(Semaphore::new(slots)),
            running: Running::default(),
            stopping: AtomicBool::new(false),
            position,
            shutdown,
            malformed,
            refused: Mutex::new(HashSet::new()),
            consents,
            held: Arc::new(std::sync::atomic::AtomicU32::new(0)),
            desk,
        }
    }

    /// How many runs are held and not waiting for their user (queued or running): what a regroup waits for. A run
    /// waiting for its user may wait for days, and handing it back loses nothing.
    pub fn busy(&self) -> u32 {
        self.running.count().saturating_sub(self.held.load(Ordering::Relaxed))
    }

    /// What this agent obeys.
    pub fn authority(&self) -> &Arc<Authority> {
        self.jobs.authority()
    }

    /// The gate's copy of the job state (re-read by the catch-up).
    pub fn jobs(&self) -> &JobStates {
        &self.jobs
    }

    /// Applies a live job-state change and wakes the waiting runs to judge it. False for a message that is not one.
    pub fn job_state_changed(&self, message: &async_nats::Message) -> bool {
        let applied = self.jobs.apply(&message.subject, message.headers.as_ref(), &message.payload);
        if applied {
            self.jobs_changed.notify_waiters();
        }
        applied
    }

    /// The job state was read again: wakes the waiting runs to judge it.
    pub fn job_state_reloaded(&self) {
        self.jobs_changed.notify_waiters();
    }

    /// How many runs are held (waiting or running).
    pub fn running(&self) -> u32 {
        self.running.count()
    }

    /// The runs held (waiting or running), oldest first.
    pub fn running_list(&self) -> Vec<(kanade_shared::ExecId, kanade_shared::JobId)> {
        self.running.list()
    }

    /// Kills the held runs `target` names, queued or running, and says which.
    pub fn kill(&self, target: &KillTarget) -> Vec<kanade_shared::ExecId> {
        let killed = self.running.kill(target);
        for exec in &killed {
            tracing::info!(exec_id = %exec, "kill requested");
        }
        killed
    }

    /// The grace period of a stop is over: the runs still going are killed and reported `interrupted`.
    pub fn kill_remaining(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.running.kill_all();
    }

    /// Changes the number of run slots from `from` to `to`. Fewer slots are taken in turn like any run's slot (in
    /// a task of `tasks`), so runs under way finish and the queue keeps its order.
    pub fn resize_slots(&self, from: usize, to: usize, tasks: &TaskTracker) {
        if to > from {
            self.slots.add_permits(to - from);
        } else if to < from {
            let (slots, fewer) = (self.slots.clone(), u32::try_from(from - to).unwrap_or(u32::MAX));
            let shutdown = self.shutdown.clone();
            tasks.spawn(async move {
                tokio::select! {
                    permits = slots.acquire_many_owned(fewer) => {
                        if let Ok(permits) = permits {
                            permits.forget();
                        }
                    }
                    // Nothing starts after a stop, so the slots need not be taken any more.
                    () = shutdown.cancelled() => {}
                }
            });
        }
    }

    /// What a previous life of this agent left unfinished (see [`RunLedger::recover`]): runs that never started
    /// are handed back to the catch-up, runs whose script was running are reported.
    pub async fn recover(&self) {
        let recovery = match self.ledger.recover(&self.pc, |result_id| self.outbox.holds(result_id), Utc::now()) {
            Ok(recovery) => recovery,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the run ledger; unfinished runs are not reported");
                return;
            }
        };
        if !recovery.handed_back.is_empty() {
            self.position.reset();
        }
        for result in &recovery.interrupted {
            self.record(result).await;
        }
    }

    /// Takes one command (live or read back) through the whole pipeline.
    pub async fn handle_command(
        self: Arc<Self>,
        subject_name: String,
        headers: Option<HeaderMap>,
        payload: bytes::Bytes,
    ) {
        let command: Command = match serde_json::from_slice(&payload) {
            Ok(command) => command,
            Err(err) => return self.malformed.record(&subject_name, payload.len(), &err),
        };
        if subject::job_of_command(&subject_name).as_ref() != Some(&command.job_id) {
            let why = format!("job id `{}` does not match the subject", command.job_id);
            return self.malformed.record(&subject_name, payload.len(), &why);
        }
        // A command this PC has taken on before is a redelivery (every catch-up reads the stream again): nothing to
        // check, and its signature is not verified again for nothing.
        if self.ledger.is_claimed(&command.exec_id) {
            tracing::debug!(exec_id = %command.exec_id, "already handled; ignoring redelivery");
            return;
        }
        if let Err(refusal) = self.authorise(&subject_name, headers.as_ref(), &payload).await {
            return self.refuse(&command, &subject_name, &refusal).await;
        }
        if let Some(slot) = self.slot_at_once(&command) {
            let record = ledger::Started::begun(&command, Utc::now());
            match self.ledger.claim_started(&record) {
                Ok(true) => {
                    if let Some(result) = self.execute(&command, Some((slot, record))).await {
                        self.record(&result).await;
                    }
                }
                Ok(false) => tracing::debug!(exec_id = %command.exec_id, "already handled; ignoring redelivery"),
                Err(err) => {
                    tracing::error!(exec_id = %command.exec_id, error = %err, "cannot record the run; command not run");
                }
            }
            return;
        }
        let claim = match self.ledger.claim(&command.exec_id) {
            Ok(true) => Claim::Taken,
            Ok(false) => Claim::AlreadyTaken,
            Err(err) => {
                tracing::error!(exec_id = %command.exec_id, error = %err, "cannot record the run; command not run");
                Claim::Failed
            }
        };
        let mut reread = false;
        let result = loop {
            match on_arrival(claim, &command, Utc::now(), &self.jobs.view(&command.job_id), reread) {
                Arrival::AlreadyHandled => {
                    tracing::debug!(exec_id = %command.exec_id, "already handled; ignoring redelivery");
                    return;
                }
                Arrival::NotClaimed => return,
                Arrival::Reread => {
                    if let Err(err) = self.jobs.refresh(&self.client, &command.job_id).await {
                        tracing::warn!(job_id = %command.job_id, error = %err, "cannot re-read the job's current version");
                    }
                    reread = true;
                }
                Arrival::Skip(reason) => {
                    tracing::info!(exec_id = %command.exec_id, job_id = %command.job_id, %reason, "command skipped");
                    break ExecResult::skipped(&command, &self.pc, reason, Utc::now());
                }
                Arrival::Wait => match self.execute(&command, None).await {
                    Some(result) => break result,
                    None => return,
                },
            }
        };
        self.record(&result).await;
    }

    /// Checks the command's signature; when a newer trust list could change the answer (an unknown key: one added
    /// a moment ago), the list is read again once first.
    async fn authorise(&self, subject_name: &str, headers: Option<&HeaderMap>, payload: &[u8]) -> Result<(), Refusal> {
        let authority = self.authority();
        match authority.check(Act::Command, subject_name, headers, payload) {
            Err(refusal) if refusal.may_be_stale() => {
                if let Err(err) = authority.reload(&self.client).await {
                    tracing::warn!(error = %err, "cannot re-read the trust list");
                }
                authority.check(Act::Command, subject_name, headers, payload).map(|_| ())
            }
            checked => checked.map(|_| ()),
        }
    }

    /// Reports a refused command as `skipped` with the refusal's reason (`bad_signature`, `not_authorised`) and its
    /// words in stderr, once per message. The ledger is left alone: the exec id is not this message's to use up.
    async fn refuse(&self, command: &Command, subject_name: &str, refusal: &Refusal) {
        self.authority().refuse(Act::Command, subject_name, refusal);
        let first = self.refused.lock().is_ok_and(|mut seen| {
            if seen.len() >= MAX_REFUSED_REMEMBERED {
                seen.clear();
            }
            seen.insert(format!("{}:{subject_name}", command.exec_id))
        });
        if !first {
            return;
        }
        let mut result = ExecResult::skipped(command, &self.pc, refusal.reason(), Utc::now());
        result.stderr = format!("refused: {refusal}");
        if let Err(err) = self.outbox.put(&result).await {
            tracing::error!(result_id = %result.result_id, error = %err, "cannot write the refusal to the outbox");
        }
    }

    /// Puts a run's result in the outbox and marks the run finished in the ledger; kanade-client is told, and the
    /// run is no longer held for consent (one handed back at a stop and settled on its return without running,
    /// expired or replaced, ends here too).
    async fn record(&self, result: &ExecResult) {
        self.consents.forget(&result.exec_id);
        if let Some(desk) = &self.desk {
            desk.run_finished(result);
        }
        if let Err(err) = self.outbox.put(result).await {
            // Left `started` (or `claimed`) in the ledger, the run is reported `interrupted` at the next start.
            tracing::error!(result_id = %result.result_id, error = %err, "cannot write result to the outbox");
            return;
        }
        if let Err(err) = self.ledger.finished(&ledger::Started::finished(result)) {
            tracing::warn!(exec_id = %result.exec_id, error = %err, "cannot mark the run finished");
        }
    }

    /// A run slot for `command` if it can start at once (see [`starts_at_once`]): nothing to wait for, no stop
    /// under way, and a slot free now. A tokio semaphore grants no permit past queued waiters, so this never jumps the
    /// queue.
    fn slot_at_once(&self, command: &Command) -> Option<OwnedSemaphorePermit> {
        if self.shutdown.is_cancelled() || !starts_at_once(command, Utc::now(), &self.jobs.view(&command.job_id)) {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Waits out the command's jitter and its turn in the local queue (either can be cut short by a kill), and
    /// runs it; or, for a run claimed straight into `started` (`at_once`: its slot and its record), runs it now.
    /// `None` when the run was handed back because the agent is stopping.
    async fn execute(
        &self,
        command: &Command,
        at_once: Option<(OwnedSemaphorePermit, ledger::Started)>,
    ) -> Option<ExecResult> {
        let cancel = self.running.hold(&command.exec_id, &command.job_id);
        let turn = match at_once {
            Some((permit, record)) => Ok((permit, Some(record))),
            None => match self.hold_for_consent(command, &cancel).await {
                // A run held for its user starts without its jitter: the users' answers spread it already, and at
                // its deadline the jitter could take it past the command's own expiry.
                Ok(held) => self.wait_turn(command, &cancel, held).await.map(|permit| (permit, None)),
                Err(stop) => Err(stop),
            },
        };
        if matches!(turn, Err(Stop::Release)) {
            // Handed back: what its user said is kept for when it comes back after the restart.
            self.consents.let_go(&command.exec_id);
        } else {
            self.consents.forget(&command.exec_id);
        }
        let result = match turn {
            Ok((permit, recorded)) => {
                let result = self.run_now(command, cancel, recorded).await;
                drop(permit);
                Some(result)
            }
            Err(Stop::Killed) => {
                tracing::info!(exec_id = %command.exec_id, "killed before it started");
                Some(ExecResult::not_started(command, &self.pc, ResultStatus::Killed, None, Utc::now()))
            }
            Err(Stop::Skip(reason)) => {
                tracing::info!(exec_id = %command.exec_id, %reason, "skipped while waiting to start");
                Some(ExecResult::skipped(command, &self.pc, reason, Utc::now()))
            }
            Err(Stop::Release) => {
                self.release(command);
                None
            }
        };
        self.running.forget(&command.exec_id);
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
        self.position.reset();
    }

    /// Holds a run whose command asks its user first ([`crate::consent`]) until it may start: its user said so,
    /// its deadline came, or nobody is there to ask. An answer, a change of its job's state, a kill or a stop is
    /// judged at once; the operator is told where it stands (`events.consent`) whenever that changes. True when
    /// the run was held.
    async fn hold_for_consent(&self, command: &Command, cancel: &CancellationToken) -> Result<bool, Stop> {
        let Some(consent) = &command.consent else { return Ok(false) };
        if !self.consents.may_ask() {
            tracing::info!(exec_id = %command.exec_id, "nobody to ask for consent here (no kanade-client): it runs now");
            return Ok(false);
        }
        let mut changes = self.consents.watch();
        let asked = Consent { deadline: consent_deadline(command, consent), ..consent.clone() };
        let Some(mut held) = self.consents.hold(command, &asked, Utc::now()) else {
            tracing::warn!(exec_id = %command.exec_id, held = consent::MAX_HELD, "too many runs held for consent; this one runs without asking");
            return Ok(false);
        };
        let _counted = HeldCount::new(&self.held);
        let mut told = None;
        loop {
            // The job's state is judged on every pass: a change announced while this task was busy telling the
            // operator is not missed.
            if let Turn::Stop(stop) = on_wake(Wake::JobChanged, command, Utc::now(), &self.jobs.view(&command.job_id)) {
                return Err(stop);
            }
            let someone = self.consents.someone_to_ask().await;
            let now = Utc::now();
            let (state, until) = match consent::decide(&held, now, consent::local_offset(), someone) {
                Hold::Run(because) => {
                    tracing::info!(exec_id = %command.exec_id, ?because, "a run held for consent starts");
                    return Ok(true);
                }
                Hold::Wait { state, until } => (state, until),
            };
            let word = (state, until, held.deferrals);
            if told != Some(word) && self.tell_held(command, &held, state, until, now).await {
                told = Some(word);
            }
            let sleep = (until - now).to_std().unwrap_or_default().min(consent::LOOK_AGAIN_AFTER);
            let wake = tokio::select! {
                () = tokio::time::sleep(sleep) => None,
                _ = changes.changed() => None,
                () = cancel.cancelled() => Some(Wake::Killed),
                () = self.shutdown.cancelled() => Some(Wake::Stopping),
                () = self.jobs_changed.notified() => Some(Wake::JobChanged),
            };
            if let Some(wake) = wake
                && let Turn::Stop(stop) = on_wake(wake, command, Utc::now(), &self.jobs.view(&command.job_id))
            {
                return Err(stop);
            }
            held = self.consents.get(&command.exec_id).unwrap_or(held);
        }
    }

    /// Tells the operator where a held run stands (`events.consent.<pc>.<exec>`, stored in `EVENTS`); false when
    /// the broker did not take it, so it is told again at the next look.
    async fn tell_held(
        &self,
        command: &Command,
        held: &consent::Held,
        state: HeldState,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        let word = RunHeld {
            exec_id: command.exec_id.clone(),
            job_id: command.job_id.clone(),
            pc_id: self.pc.clone(),
            state,
            until,
            deadline: held.deadline(),
            by: (state == HeldState::Deferred).then(|| held.deferred_by.clone()).flatten(),
            deferrals: held.deferrals,
            at: now,
        };
        let Ok(body) = serde_json::to_vec(&word) else { return false };
        let stored = async {
            async_nats::jetstream::new(self.client.clone())
                .publish(subject::event_consent(&self.pc, &command.exec_id), body.into())
                .await?
                .await
                .map_err(async_nats::Error::from)
        };
        match tokio::time::timeout(TELL_PATIENCE, stored).await {
            Ok(Ok(_)) => true,
            Ok(Err(err)) => {
                tracing::debug!(exec_id = %command.exec_id, error = %err, "where a held run stands was not stored");
                false
            }
            Err(_) => false,
        }
    }

    /// The jitter (unless `no_jitter`), then a slot; each wake-up judged by [`on_wake`].
    async fn wait_turn(
        &self,
        command: &Command,
        cancel: &CancellationToken,
        no_jitter: bool,
    ) -> Result<OwnedSemaphorePermit, Stop> {
        let judge = |wake| on_wake(wake, command, Utc::now(), &self.jobs.view(&command.job_id));
        if let Some(jitter) = command.jitter.filter(|j| !j.is_zero() && !no_jitter) {
            let until = tokio::time::Instant::now() + jitter.mul_f64(rand::random_range(0.0..=1.0));
            loop {
                let wake = tokio::select! {
                    () = tokio::time::sleep_until(until) => Wake::JitterOver,
                    () = cancel.cancelled() => Wake::Killed,
                    () = self.shutdown.cancelled() => Wake::Stopping,
                    () = self.jobs_changed.notified() => Wake::JobChanged,
                };
                match judge(wake) {
                    Turn::Wait => {}
                    Turn::Go => break,
                    Turn::Stop(stop) => return Err(stop),
                }
            }
        }
        let acquire = self.slots.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            let (wake, permit) = tokio::select! {
                permit = &mut acquire => match permit {
                    Ok(permit) => (Wake::SlotFree, Some(permit)),
                    Err(_) => (Wake::SlotsClosed, None),
                },
                () = cancel.cancelled() => (Wake::Killed, None),
                () = self.shutdown.cancelled() => (Wake::Stopping, None),
                () = self.jobs_changed.notified() => (Wake::JobChanged, None),
            };
            match (judge(wake), permit) {
                (Turn::Go, Some(permit)) => return Ok(permit),
                (Turn::Stop(stop), _) => return Err(stop),
                // Only a granted slot says go in this stage.
                (Turn::Wait | Turn::Go, _) => {}
            }
        }
    }

    /// Records the start durably, unless the claim already did (`recorded`), and runs the script.
    async fn run_now(
        &self,
        command: &Command,
        cancel: CancellationToken,
        recorded: Option<ledger::Started>,
    ) -> ExecResult {
        let pc = &self.pc;
        tracing::info!(exec_id = %command.exec_id, job_id = %command.job_id, shell = %command.shell, "run started");
        let record = match recorded {
            Some(record) => record,
            None => {
                let record = ledger::Started::begun(command, Utc::now());
                if let Err(err) = self.ledger.started(&record) {
                    // Without the mark a crash during the script would hand the run back to run again: do not
                    // start it.
                    tracing::error!(exec_id = %command.exec_id, error = %err, "cannot record the run's start; not running it");
                    let mut result = ExecResult::not_started(command, pc, ResultStatus::Failed, None, Utc::now());
                    result.stderr = format!("the agent could not record the run's start in its ledger: {err}");
                    return result;
                }
                record
            }
        };
        let started = RunStarted {
            exec_id: command.exec_id.clone(),
            job_id: command.job_id.clone(),
            version: command.version.clone(),
            pc_id: pc.clone(),
            started_at: record.started_at,
        };
        let (tx, rx) = mpsc::channel(OUTPUT_BUFFER);
        let finished = CancellationToken::new();
        let run = async {
            let outcome = self.executor.run(command, Some(tx), cancel).await;
            finished.cancel();
            outcome
        };
        // Announced beside the run in this same task: the chunks end when the executor drops its sender.
        let (outcome, ()) = tokio::join!(run, announce(&self.client, started, rx, &finished));
        tracing::info!(exec_id = %command.exec_id, status = %outcome.status, exit_code = ?outcome.exit_code, "run finished");

        let result_id = ResultId::for_run(&command.exec_id, pc);
        let stdout_full = full_output(&result_id, OutputStream::Stdout, outcome.stdout.spooled.as_ref());
        let stderr_full = full_output(&result_id, OutputStream::Stderr, outcome.stderr.spooled.as_ref());
        ExecResult {
            result_id,
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
            reason: finished_reason(outcome.status, outcome.reason, self.stopping.load(Ordering::Relaxed)),
            stdout_full,
            stderr_full,
        }
    }
}

/// Where a result says its whole `stream` is, from what the executor spooled: its name, size, hash and the chunks the
/// outbox will publish it as, the ceiling flag, and why it is unavailable when spooling failed.
pub fn full_output(result: &ResultId, stream: OutputStream, spooled: Option<&Spooled>) -> Option<FullOutput> {
    let spooled = spooled?;
    Some(FullOutput {
        object: resources::result_output_object(result, stream),
        size: spooled.size,
        sha256: spooled.sha256.clone(),
        capped: spooled.capped,
        unavailable: spooled.failed.clone(),
        chunks: crate::outbox::chunks_for(spooled.size),
    })
}

/// Announces a run still going after [`ANNOUNCE_AFTER`]: its `events.started` (with its true start), then its
/// output, the chunks held in the channel meanwhile first and in order, the rest as they come. Nothing, when the run
/// is `finished` sooner.
async fn announce(
    client: &Client,
    started: RunStarted,
    mut rx: mpsc::Receiver<OutputChunk>,
    finished: &CancellationToken,
) {
    tokio::select! {
        biased;
        () = finished.cancelled() => return,
        () = tokio::time::sleep(ANNOUNCE_AFTER) => {}
    }
    // Best effort: the event tells watchers a run is under way; the result is what must not be lost.
    if let Ok(body) = serde_json::to_vec(&started)
        && let Err(err) = client.publish(subject::event_started(&started.pc_id, &started.exec_id), body.into()).await
    {
        tracing::debug!(error = %err, "started event not sent");
    }
    let output = subject::output(&started.pc_id, &started.exec_id);
    while let Some(chunk) = rx.recv().await {
        if let Ok(body) = serde_json::to_vec(&chunk) {
            let _ = client.publish(output.clone(), body.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kanade_shared::wire::{RunAs, Shell};
    use kanade_shared::{ExecId, JobId};

    use super::*;

    fn command(version: &str) -> Command {
        Command {
            exec_id: ExecId::new("e").unwrap(),
            job_id: JobId::new("j").unwrap(),
            version: version.into(),
            shell: Shell::Sh,
            script: "true".into(),
            timeout: Duration::from_secs(1),
            issued_at: Utc::now(),
            deadline: None,
            jitter: Some(Duration::from_secs(60)),
            run_as: RunAs::System,
            cwd: None,
            consent: None,
        }
    }

    fn current(version: &str) -> JobView {
        JobView { current_version: Some(version.into()), revoked: false }
    }

    #[test]
    fn an_arrival_is_claimed_before_anything_else() {
        let (cmd, now) = (command("1"), Utc::now());
        // Even a command the gate would refuse is ignored when the ledger had it, or could not record it.
        let revoked = JobView { revoked: true, ..current("1") };
        assert_eq!(on_arrival(Claim::AlreadyTaken, &cmd, now, &revoked, false), Arrival::AlreadyHandled);
        assert_eq!(on_arrival(Claim::Failed, &cmd, now, &current("1"), false), Arrival::NotClaimed);
        assert_eq!(on_arrival(Claim::Taken, &cmd, now, &current("1"), false), Arrival::Wait);
        assert_eq!(on_arrival(Claim::Taken, &cmd, now, &revoked, false), Arrival::Skip(Reason::Revoked));
    }

    #[test]
    fn another_version_than_the_mirror_is_reread_once_before_it_is_superseded() {
        let (cmd, now) = (command("2"), Utc::now());
        assert_eq!(on_arrival(Claim::Taken, &cmd, now, &current("1"), false), Arrival::Reread);
        // The re-read found the command's version: it runs.
        assert_eq!(on_arrival(Claim::Taken, &cmd, now, &current("2"), true), Arrival::Wait);
        // The re-read still says another one: stale.
        assert_eq!(on_arrival(Claim::Taken, &cmd, now, &current("1"), true), Arrival::Skip(Reason::Superseded));
        // Ad-hoc runs carry no version, and a job with no current version has nothing to compare.
        assert_eq!(on_arrival(Claim::Taken, &command(""), now, &current("1"), false), Arrival::Wait);
        assert_eq!(on_arrival(Claim::Taken, &cmd, now, &JobView::default(), false), Arrival::Wait);
    }

    #[test]
    fn only_a_command_with_nothing_to_wait_for_starts_at_once() {
        let now = Utc::now();
        let plain = Command { jitter: None, ..command("1") };
        assert!(starts_at_once(&plain, now, &current("1")));
        assert!(starts_at_once(&Command { jitter: Some(Duration::ZERO), ..command("1") }, now, &current("1")));
        assert!(!starts_at_once(&command("1"), now, &current("1")), "jitter to wait out");
        assert!(!starts_at_once(&plain, now, &current("2")), "its job's version is re-read first");
        assert!(!starts_at_once(&plain, now, &JobView { revoked: true, ..current("1") }), "skipped");
    }

    #[test]
    fn revoked_while_queued_stops_at_once() {
        let (cmd, now) = (command("1"), Utc::now());
        assert_eq!(on_wake(Wake::JobChanged, &cmd, now, &current("1")), Turn::Wait, "a change that leaves it runnable");
        let revoked = JobView { revoked: true, ..current("1") };
        assert_eq!(on_wake(Wake::JobChanged, &cmd, now, &revoked), Turn::Stop(Stop::Skip(Reason::Revoked)));
    }

    #[test]
    fn superseded_while_queued_stops_at_once() {
        let (cmd, now) = (command("1"), Utc::now());
        assert_eq!(on_wake(Wake::JobChanged, &cmd, now, &current("2")), Turn::Stop(Stop::Skip(Reason::Superseded)));
    }

    #[test]
    fn expired_while_waiting_is_caught_with_the_slot_in_hand() {
        let now = Utc::now();
        let mut cmd = command("1");
        cmd.deadline = Some(now + chrono::Duration::seconds(1));
        assert_eq!(on_wake(Wake::SlotFree, &cmd, now, &current("1")), Turn::Go);
        // The jitter and the queue took longer than the deadline allowed.
        let later = now + chrono::Duration::seconds(2);
        assert_eq!(on_wake(Wake::JitterOver, &cmd, later, &current("1")), Turn::Go, "on to the slot, checked there");
        assert_eq!(on_wake(Wake::SlotFree, &cmd, later, &current("1")), Turn::Stop(Stop::Skip(Reason::Expired)));
        assert_eq!(on_wake(Wake::JobChanged, &cmd, later, &current("1")), Turn::Stop(Stop::Skip(Reason::Expired)));
    }

    #[test]
    fn killed_before_start_is_killed_whatever_the_gate_says() {
        let (cmd, now) = (command("1"), Utc::now());
        for view in [current("1"), JobView { revoked: true, ..current("1") }] {
            assert_eq!(on_wake(Wake::Killed, &cmd, now, &view), Turn::Stop(Stop::Killed));
        }
        assert_eq!(on_wake(Wake::SlotsClosed, &cmd, now, &current("1")), Turn::Stop(Stop::Killed));
    }

    #[test]
    fn released_on_shutdown_before_start() {
        let (cmd, now) = (command("1"), Utc::now());
        assert_eq!(on_wake(Wake::Stopping, &cmd, now, &current("1")), Turn::Stop(Stop::Release));
        // Not a skip either: a run handed back has no result, and runs after the restart.
        assert_eq!(on_wake(Wake::Stopping, &cmd, now, &current("2")), Turn::Stop(Stop::Release));
    }

    #[test]
    fn interrupted_when_stopping() {
        assert_eq!(finished_reason(ResultStatus::Killed, None, true), Some(Reason::Interrupted));
        assert_eq!(finished_reason(ResultStatus::Killed, None, false), None, "an operator's kill says nothing");
        assert_eq!(finished_reason(ResultStatus::Ok, None, true), None, "a run that finished in the grace period");
        assert_eq!(
            finished_reason(ResultStatus::Skipped, Some(Reason::UnsupportedShell), true),
            Some(Reason::UnsupportedShell),
            "the executor's own reason stays"
        );
    }
}
