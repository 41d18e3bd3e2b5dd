//! The scheduler: while this replica leads, fires every schedule's occurrences, each exactly once.
//!
//! A timed schedule (`cron`, `every`, `at`) is looked at every [`TICK`]: [`schedule::due`] (a pure function of
//! the schedule, its cursor in SQL and the time) says what is due, and each decision is recorded with the
//! occurrence id as its key — a fire in the same transaction as the execution it creates (whose exec id is the
//! occurrence id), a skip or a miss on its own — moving the cursor forward. So a retry, a backend killed
//! mid-fire or a new leader never fires an occurrence twice, and one that fell due while nobody led is fired late
//! (less than [`schedule::LATE_AFTER`] late) or handled as `misfire` says.
//!
//! A once-per-PC schedule has one standing execution (once per job version with `once_per_version`): its command
//! stays in `EXEC` on the targets' subjects, so a PC that was offline or joins later picks it up in its catch-up
//! and runs it once (its run ledger knows the exec id). Every [`STANDING_EVERY`] the leader adds the PCs that came
//! into the targets to the execution's target rows, and renews the command in `EXEC` when it is missing, has aged
//! for a week, or was replaced by another fire of the job more than an hour ago. That is a handful of reads per
//! schedule, never a fire at the fleet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use kanade_ops::catalogue::{self, Catalogue};
use kanade_ops::control;
use kanade_ops::schedules::ScheduleStore;
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::manifest::{StoredJob, Wave};
use kanade_shared::schedule::{self, Due, Overlap, ScheduleId, StoredSchedule, Timing, When};
use kanade_shared::subject::Target;
use kanade_shared::{Actor, ExecId};
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::caller::Caller;
use crate::db::{ExecStatus, ExecutionRow, NewFire};
use crate::engine::{ExecError, ExecRequest, Origin};
use crate::live::Topic;
use crate::rollout;

/// How often the leader looks at the schedules.
pub const TICK: Duration = Duration::from_secs(1);
/// How often a standing (once-per-PC) execution is looked after.
pub const STANDING_EVERY: Duration = Duration::from_secs(30);
/// A standing command is sent anew when the one in `EXEC` is this old (`EXEC` keeps a message 30 days).
pub const RENEW_AFTER: chrono::Duration = chrono::Duration::days(7);
/// A standing command another fire of the job replaced (the newest instruction per job and target wins) is put
/// back this long after that fire.
pub const REPLACED_FOR: chrono::Duration = chrono::Duration::hours(1);

/// What the scheduler records of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Fired,
    RunNow,
    SkippedOverlap,
    Missed,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fired => "fired",
            Self::RunNow => "run_now",
            Self::SkippedOverlap => "skipped_overlap",
            Self::Missed => "missed",
            Self::Failed => "failed",
        }
    }
}

/// Whether the previous fire of a schedule with `overlap: skip` holds the next one back: it is still being sent
/// (or waits for approval), or some target that can still answer has not.
pub fn unfinished(status: ExecStatus, running: i64, waiting_online: i64, deadline_passed: bool) -> bool {
    match status {
        ExecStatus::PendingApproval | ExecStatus::Starting | ExecStatus::RollingOut => true,
        ExecStatus::Running => running > 0 || (waiting_online > 0 && !deadline_passed),
        ExecStatus::Halted | ExecStatus::Superseded | ExecStatus::Rejected => running > 0,
    }
}

/// What to do with the standing command `EXEC` holds on one subject of a once-per-PC execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It is ours, current and young enough.
    Keep,
    /// Send ours again.
    Renew,
    /// Another fire of the job replaced it recently: the newest instruction wins for now.
    Yield,
}

/// The decision over one subject: `held` is (exec id, version, issued_at) of what `EXEC` holds, if anything.
pub fn standing_step(
    exec: &ExecId,
    version: &str,
    held: Option<(&ExecId, &str, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Standing {
    match held {
        None => Standing::Renew,
        Some((id, held_version, issued)) if id == exec => {
            if held_version != version || now - issued >= RENEW_AFTER {
                Standing::Renew
            } else {
                Standing::Keep
            }
        }
        Some((_, _, issued)) => {
            if now - issued >= REPLACED_FOR {
                Standing::Renew
            } else {
                Standing::Yield
            }
        }
    }
}

/// The caller a schedule fires as: `schedule-<id>` in the audit trail and as the executions' requester, within the
/// scope it was given (its creator's, or whoever changed it last: `api::schedules`), so every fire is checked
/// against that scope again. Fleet-wide it fires as an admin, as every schedule did before scopes; scoped, as an
/// operator (an admin is never scoped).
pub fn caller_for(id: &ScheduleId, scope: GroupScope) -> Caller {
    let actor = Actor::from_login(&format!("schedule-{id}"));
    match scope {
        GroupScope::Fleet => Caller::admin(actor, true),
        scope => Caller { actor, verified: true, role: Role::Operator, scope },
    }
}

/// What firing `schedule` asks of the engine: its targets, waves, jitter and deadline where it gives them.
pub fn request_for(schedule: &kanade_shared::schedule::Schedule) -> ExecRequest {
    ExecRequest {
        targets: schedule.targets.clone(),
        waves: schedule.waves.clone(),
        jitter: schedule.jitter,
        deadline: schedule.deadline,
    }
}

/// Where a schedule's occurrences are counted from at the earliest: its last change (its creation, an update, a
/// pause or resume), to the second.
pub fn first_cursor(stored: &StoredSchedule) -> DateTime<Utc> {
    stored.updated_at.max(stored.created_at).trunc_subsecs(0)
}

/// The standing occurrence of a once-per-PC schedule: its `not_before`, else its creation.
pub fn standing_at(stored: &StoredSchedule) -> DateTime<Utc> {
    stored.schedule.not_before.unwrap_or(stored.created_at).trunc_subsecs(0)
}

/// The occurrence a once-per-version schedule fires a new version of its job at: the second the version was
/// stored, or the second after the schedule's last decided occurrence if that is not earlier. Two versions stored
/// within one second would otherwise share an occurrence id, and the second would never run.
pub fn version_occurrence(stored_at: DateTime<Utc>, cursor: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let at = stored_at.trunc_subsecs(0);
    match cursor {
        Some(last) if last >= at => last + chrono::Duration::seconds(1),
        _ => at,
    }
}

struct Entry {
    stored: StoredSchedule,
    timing: Option<Timing>,
    /// The last occurrence decided, as this leader knows it (read from SQL when it took over).
    cursor: Option<DateTime<Utc>>,
    standing_checked: Option<tokio::time::Instant>,
}

pub struct Scheduler {
    state: Arc<AppState>,
    standing_every: Duration,
    entries: HashMap<ScheduleId, Entry>,
    sequence: Option<u64>,
    was_leading: bool,
}

impl Scheduler {
    pub fn new(state: Arc<AppState>, standing_every: Duration) -> Self {
        Self { state, standing_every, entries: HashMap::new(), sequence: None, was_leading: false }
    }

    /// Fires schedules while this replica leads, until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut store: Option<ScheduleStore> = None;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let leading = self.state.leadership.leading();
            if !leading {
                if self.was_leading {
                    // Another leader may decide meanwhile: what this one knew of the cursors is stale.
                    self.entries.clear();
                    self.sequence = None;
                    tracing::info!("scheduler stopped: this backend no longer leads");
                }
                self.was_leading = false;
                continue;
            }
            self.was_leading = true;
            if store.is_none() {
                match ScheduleStore::open(&self.state.nats).await {
                    Ok(opened) => store = Some(opened),
                    Err(err) => {
                        tracing::warn!(error = %err, "schedules unavailable; retrying");
                        continue;
                    }
                }
            }
            if let Some(store) = &mut store
                && let Err(err) = self.reload(store).await
            {
                tracing::warn!(error = %err, "cannot read the schedules; retrying");
                continue;
            }
            let ids: Vec<ScheduleId> = self.entries.keys().cloned().collect();
            for id in ids {
                if !self.state.leadership.leading() || shutdown.is_cancelled() {
                    break;
                }
                if let Err(err) = self.step(&id).await {
                    tracing::warn!(schedule = %id, error = %err, "cannot decide on a schedule; retrying");
                }
            }
        }
    }

    /// Reads the schedules again when the bucket changed.
    async fn reload(&mut self, store: &mut ScheduleStore) -> Result<(), kanade_ops::OpsError> {
        let sequence = store.sequence().await?;
        if self.sequence == Some(sequence) {
            return Ok(());
        }
        let (list, unreadable) = store.list().await?;
        if !unreadable.is_empty() {
            tracing::warn!(?unreadable, "schedules that cannot be read are left alone");
        }
        let mut entries = HashMap::new();
        for stored in list {
            let id = stored.schedule.id.clone();
            let previous = self.entries.remove(&id);
            let timing = match Timing::of(&stored.schedule) {
                Ok(timing) => Some(timing),
                Err(err) => {
                    tracing::warn!(schedule = %id, error = %err, "schedule cannot be timed; left alone");
                    None
                }
            };
            let (cursor, standing_checked) = match previous {
                // A changed schedule keeps its cursor: what was decided stays decided.
                Some(old) => (old.cursor, None),
                None => (None, None),
            };
            entries.insert(id, Entry { stored, timing, cursor, standing_checked });
        }
        self.entries = entries;
        self.sequence = Some(sequence);
        Ok(())
    }

    async fn step(&mut self, id: &ScheduleId) -> Result<(), ExecError> {
        let Some(entry) = self.entries.get(id) else { return Ok(()) };
        if !entry.stored.schedule.enabled {
            return Ok(());
        }
        if entry.stored.schedule.when.is_once() {
            let due = entry.standing_checked.is_none_or(|at| at.elapsed() >= self.standing_every);
            if due {
                let stored = entry.stored.clone();
                self.standing(&stored).await?;
                if let Some(entry) = self.entries.get_mut(id) {
                    entry.standing_checked = Some(tokio::time::Instant::now());
                }
            }
            return Ok(());
        }
        let Some(timing) = entry.timing.clone() else { return Ok(()) };
        let stored = entry.stored.clone();
        let cursor = match entry.cursor {
            Some(cursor) => cursor,
            None => self.state.db.schedule_cursor(id.as_str()).await?.unwrap_or_else(|| first_cursor(&stored)),
        };
        // A schedule counts from its last change: a new timing does not reach back to before it was given, and a
        // resumed one does not make up for its pause.
        let cursor = cursor.max(first_cursor(&stored));
        let now = Utc::now();
        let found = schedule::due(&timing, cursor, now, stored.schedule.misfire, stored.schedule.grace);
        let mut cursor = cursor;
        for due in found {
            if !self.state.leadership.leading() {
                break;
            }
            self.decide(&stored, &due, now).await?;
            cursor = due.cursor();
            if let Some(entry) = self.entries.get_mut(id) {
                entry.cursor = Some(cursor);
            }
        }
        if let Some(entry) = self.entries.get_mut(id) {
            entry.cursor = Some(cursor);
        }
        Ok(())
    }

    fn fire_row(&self, stored: &StoredSchedule, at: DateTime<Utc>, outcome: Outcome) -> NewFire {
        let id = &stored.schedule.id;
        NewFire {
            occurrence_id: schedule::occurrence_id(id, at),
            schedule_id: id.to_string(),
            occurrence_at: at,
            outcome: outcome.as_str(),
            exec_id: None,
            reason: None,
            missed_count: None,
            decided_by: self.state.leadership.instance().to_owned(),
            decided_at: Utc::now(),
            cursor: Some(at),
        }
    }

    /// Records one decision (and for a fire, creates its execution in the same transaction).
    async fn decide(&self, stored: &StoredSchedule, due: &Due, now: DateTime<Utc>) -> Result<(), ExecError> {
        let id = &stored.schedule.id;
        match *due {
            Due::Missed { first, last, count, at_least } => {
                let mut row = self.fire_row(stored, first, Outcome::Missed);
                row.cursor = Some(last);
                row.missed_count = Some(i64::try_from(count).unwrap_or(i64::MAX));
                let counted = if at_least { format!("at least {count}") } else { count.to_string() };
                row.reason = Some(format!(
                    "{counted} occurrence(s) from {} to {} were due while no backend led (misfire: {})",
                    first.to_rfc3339(),
                    last.to_rfc3339(),
                    stored.schedule.misfire.as_str()
                ));
                if self.state.db.record_decision(&row).await? {
                    tracing::warn!(schedule = %id, count, first = %first, last = %last, "schedule occurrences missed");
                    self.changed(id).await;
                }
            }
            Due::Fire(at) => {
                if stored.schedule.overlap == Overlap::Skip
                    && let Some(previous) = self.unfinished_previous(stored, now).await?
                {
                    let mut row = self.fire_row(stored, at, Outcome::SkippedOverlap);
                    row.reason = Some(format!("the previous fire `{previous}` is unfinished (overlap: skip)"));
                    if self.state.db.record_decision(&row).await? {
                        tracing::info!(schedule = %id, occurrence = %at, previous = %previous, "occurrence skipped: the previous fire is unfinished");
                        self.changed(id).await;
                    }
                    return Ok(());
                }
                self.fire(stored, at, Outcome::Fired).await?;
            }
        }
        Ok(())
    }

    /// The previous execution of `stored`, if it is unfinished ([`unfinished`]).
    async fn unfinished_previous(
        &self,
        stored: &StoredSchedule,
        now: DateTime<Utc>,
    ) -> Result<Option<ExecId>, ExecError> {
        let db = &self.state.db;
        let Some(previous) = db.last_fired_execution(stored.schedule.id.as_str()).await? else { return Ok(None) };
        let Some(row) = db.get_execution(&previous).await? else { return Ok(None) };
        let online_since = now - chrono::Duration::from_std(self.state.offline_after).unwrap_or_default();
        let (running, waiting) = db.reachable_unanswered(&previous, online_since).await?;
        let deadline_passed =
            row.started_at.zip(row.deadline_ms).is_some_and(|(at, ms)| at + chrono::Duration::milliseconds(ms) < now);
        Ok(unfinished(row.status, running, waiting, deadline_passed).then_some(previous))
    }

    /// Fires one occurrence of `stored` at `at`: an execution whose id is the occurrence id. A failure that firing
    /// again would not mend (no such job, revoked, no targets) is recorded as `failed`; one that might (the
    /// database or the broker away) is returned, and the occurrence is tried again on the next tick.
    pub async fn fire(&self, stored: &StoredSchedule, at: DateTime<Utc>, outcome: Outcome) -> Result<bool, ExecError> {
        fire(&self.state, stored, at, outcome).await
    }

    /// Looks after a once-per-PC schedule's standing execution: creates it, follows the job's version, adds the
    /// PCs that came into its targets, and keeps its command in `EXEC`.
    async fn standing(&self, stored: &StoredSchedule) -> Result<(), ExecError> {
        let schedule = &stored.schedule;
        let now = Utc::now();
        if schedule.not_before.is_some_and(|t| now < t) || schedule.not_after.is_some_and(|t| now > t) {
            return Ok(());
        }
        let catalogue = Catalogue::open(&self.state.nats).await?;
        let Some(job) = catalogue.get(&schedule.job_id).await? else {
            tracing::warn!(schedule = %schedule.id, job = %schedule.job_id, "the schedule's job is not in the catalogue");
            return Ok(());
        };
        // Once per PC: one occurrence, the schedule's start. Once per version: one per version of the job, at the
        // time that version was stored in the catalogue (the same on every backend); an execution of this version
        // fired before (the version stored again later) counts.
        let fired = match schedule.when {
            When::OncePerVersion => self.state.db.fired_version(schedule.id.as_str(), &job.job.version).await?,
            _ => None,
        };
        let at = match schedule.when {
            When::OncePerVersion => {
                let cursor = self.state.db.schedule_cursor(schedule.id.as_str()).await?;
                version_occurrence(job.created_at, cursor)
            }
            _ => standing_at(stored),
        };
        let exec = fired.unwrap_or_else(|| schedule::occurrence_id(&schedule.id, at));
        let Some(row) = self.state.db.get_execution(&exec).await? else {
            fire(&self.state, stored, at, Outcome::Fired).await?;
            return Ok(());
        };
        if row.status != ExecStatus::Running {
            // Awaiting approval, still rolling out (the engine's), or stopped for good.
            return Ok(());
        }
        let row = if schedule.when == When::OncePerPc && row.version != job.job.version {
            self.restate(&row, &job, &catalogue).await?
        } else {
            row
        };
        self.add_targets(&row).await?;
        for target in standing_subjects(&self.state, &row).await? {
            let held = control::standing(&self.state.nats, &target, &row.job_id).await?;
            let held = held.as_ref().map(|c| (&c.exec_id, c.version.as_str(), c.issued_at));
            if standing_step(&exec, &row.version, held, now) == Standing::Renew {
                // Looked at again after the command was found gone: a delete stops the execution before it
                // withdraws the command, so a withdrawn command is never put back.
                let still = self.state.db.get_execution(&exec).await?;
                if still.is_none_or(|r| r.status != ExecStatus::Running) {
                    return Ok(());
                }
                self.state.engine.resend(&row, &target).await?;
                tracing::info!(schedule = %schedule.id, exec_id = %exec, ?target, "standing command sent anew");
            }
        }
        Ok(())
    }

    /// Gives a once-per-PC execution the job's new version: PCs that ran it do not run it again; the rest run the
    /// new version.
    async fn restate(
        &self,
        row: &ExecutionRow,
        job: &StoredJob,
        catalogue: &Catalogue,
    ) -> Result<ExecutionRow, ExecError> {
        let script = catalogue.script(job).await?;
        let old: kanade_shared::wire::Command = serde_json::from_str(&row.command_json)
            .map_err(|e| ExecError::Invalid(format!("execution `{}` has an unreadable command: {e}", row.exec_id)))?;
        let command = catalogue::command_for(job, row.exec_id.clone(), script, old.jitter);
        command.validate().map_err(|err| ExecError::Invalid(format!("job `{}`: {err}", job.job.id)))?;
        let json = serde_json::to_string(&command).map_err(|e| ExecError::Invalid(e.to_string()))?;
        if self.state.db.restate_command(&row.exec_id, &job.job.version, &json, Utc::now()).await? {
            control::set_current(&self.state.nats, self.state.engine.signer()?, &job.job.id, &job.job.version).await?;
            tracing::info!(exec_id = %row.exec_id, version = %job.job.version, "once-per-PC schedule follows the job's new version");
            self.state.live.changed(Topic::Executions, [row.exec_id.as_str()]).await;
        }
        self.state.db.get_execution(&row.exec_id).await?.ok_or_else(|| ExecError::NotFound(row.exec_id.clone()))
    }

    /// Adds the known agents that came into a standing execution's targets since it was created.
    async fn add_targets(&self, row: &ExecutionRow) -> Result<(), ExecError> {
        let db = &self.state.db;
        let targets: kanade_shared::manifest::Targets = serde_json::from_value(row.targets.clone())
            .map_err(|e| ExecError::Invalid(format!("execution `{}` has unreadable targets: {e}", row.exec_id)))?;
        let waves: Vec<Wave> = db
            .waves(&row.exec_id)
            .await?
            .into_iter()
            .map(|w| Wave { group: w.group, delay: Duration::ZERO, max_failure_pct: w.max_failure_pct })
            .collect();
        let agents = db.known_agents().await?;
        let reached =
            rollout::resolve(&targets, &waves, agents.iter().map(|a| (a.pc_id.as_str(), a.groups.as_slice())));
        let have = db.target_pcs(&row.exec_id).await?;
        let new: Vec<(String, i64)> = reached.into_iter().filter(|(pc, _)| !have.contains(pc)).collect();
        let added = db.add_targets(&row.exec_id, &new).await?;
        db.repair_targets(&row.exec_id).await?;
        if added > 0 {
            tracing::info!(exec_id = %row.exec_id, added, "PCs that came into a once-per-PC schedule's targets");
            self.state.live.changed(Topic::Executions, [row.exec_id.as_str()]).await;
        }
        Ok(())
    }

    async fn changed(&self, id: &ScheduleId) {
        self.state.live.changed(Topic::Schedules, [id.as_str()]).await;
    }
}

/// The subjects a standing execution's command stands on: its targets' (all, each group, each pc), or with waves
/// each wave's group.
pub async fn standing_subjects(state: &AppState, row: &ExecutionRow) -> Result<Vec<Target>, ExecError> {
    let targets: kanade_shared::manifest::Targets = serde_json::from_value(row.targets.clone())
        .map_err(|e| ExecError::Invalid(format!("execution `{}` has unreadable targets: {e}", row.exec_id)))?;
    let waves = state.db.waves(&row.exec_id).await?;
    Ok(if waves.is_empty() {
        rollout::subjects(&targets)
    } else {
        waves.iter().map(|w| Target::Group(w.group.clone())).collect()
    })
}

/// A deleted once-per-PC schedule's first step: its standing execution is halted (with `reason`), so the leader
/// stops renewing its command. Returns the execution, if there is one.
pub async fn halt_standing(
    state: &AppState,
    stored: &StoredSchedule,
    reason: &str,
) -> Result<Option<ExecId>, ExecError> {
    if !stored.schedule.when.is_once() {
        return Ok(None);
    }
    let Some(exec) = state.db.last_fired_execution(stored.schedule.id.as_str()).await? else { return Ok(None) };
    let live = [ExecStatus::Running, ExecStatus::RollingOut, ExecStatus::Starting, ExecStatus::PendingApproval];
    if state.db.transition_from(&exec, &live, ExecStatus::Halted, Some(reason), Utc::now()).await? {
        state.live.changed(Topic::Executions, [exec.as_str()]).await;
    }
    Ok(Some(exec))
}

/// A deleted once-per-PC schedule's second step, after the schedule is gone: its command is taken out of `EXEC`
/// on every subject where it still stands (a newer command of the job is left alone). Returns those subjects.
pub async fn withdraw_standing(state: &AppState, exec: &ExecId) -> Result<Vec<String>, ExecError> {
    let Some(row) = state.db.get_execution(exec).await? else { return Ok(Vec::new()) };
    let mut withdrawn = Vec::new();
    for target in standing_subjects(state, &row).await? {
        if control::withdraw(&state.nats, &target, &row.job_id, exec).await? {
            withdrawn.push(kanade_shared::subject::command(&target, &row.job_id));
        }
    }
    Ok(withdrawn)
}

/// Forgets where a deleted schedule stopped, and its scope; one created again with its id counts from its creation
/// and fires with its new creator's scope.
pub async fn forget(state: &AppState, id: &ScheduleId) -> Result<(), ExecError> {
    state.db.forget_schedule_cursor(id.as_str()).await?;
    Ok(state.db.forget_schedule_scope(id.as_str()).await?)
}

/// Fires the occurrence of `stored` at `at` (see [`Scheduler::fire`]); shared with the API's run-now. Returns
/// whether this call fired it (false: it was decided before).
pub async fn fire(
    state: &AppState,
    stored: &StoredSchedule,
    at: DateTime<Utc>,
    outcome: Outcome,
) -> Result<bool, ExecError> {
    let schedule = &stored.schedule;
    let occurrence = schedule::occurrence_id(&schedule.id, at);
    let mut row = NewFire {
        occurrence_id: occurrence.clone(),
        schedule_id: schedule.id.to_string(),
        occurrence_at: at,
        outcome: outcome.as_str(),
        exec_id: Some(occurrence.clone()),
        reason: None,
        missed_count: None,
        decided_by: state.leadership.instance().to_owned(),
        decided_at: Utc::now(),
        cursor: (outcome != Outcome::RunNow).then_some(at),
    };
    let failed = |reason: String| {
        let mut failed = row.clone();
        failed.outcome = Outcome::Failed.as_str();
        failed.exec_id = None;
        failed.reason = Some(reason);
        failed
    };
    let catalogue = Catalogue::open(&state.nats).await?;
    let Some(job) = catalogue.get(&schedule.job_id).await? else {
        let reason = format!("job `{}` is not in the catalogue", schedule.job_id);
        state.db.record_decision(&failed(reason.clone())).await?;
        tracing::warn!(schedule = %schedule.id, %reason, "occurrence not fired");
        state.live.changed(Topic::Schedules, [schedule.id.as_str()]).await;
        return Ok(false);
    };
    // Read at every fire: a schedule changed by someone else since fires with their scope.
    let scope = state.db.schedule_scope(schedule.id.as_str()).await?.unwrap_or(GroupScope::Fleet);
    let origin = Origin {
        caller: caller_for(&schedule.id, scope),
        exec_id: Some(occurrence.clone()),
        fire: Some(row.clone()),
        ends_at: if schedule.when.is_once() { schedule.not_after } else { None },
    };
    match state.engine.create(job, request_for(&stored.schedule), origin).await {
        Ok((_, created)) => {
            if created {
                tracing::info!(schedule = %schedule.id, exec_id = %occurrence, "schedule fired");
                state.live.changed(Topic::Schedules, [schedule.id.as_str()]).await;
            }
            Ok(created)
        }
        Err(err @ (ExecError::Db(_) | ExecError::Ops(_))) => Err(err),
        Err(err) => {
            row = failed(err.to_string());
            let recorded = state.db.record_decision(&row).await?;
            if recorded {
                tracing::warn!(schedule = %schedule.id, occurrence = %at, error = %err, "occurrence not fired");
                state.live.changed(Topic::Schedules, [schedule.id.as_str()]).await;
            }
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).single().expect("time")
    }

    #[test]
    fn an_execution_still_sending_or_with_a_reachable_target_unanswered_is_unfinished() {
        for status in [ExecStatus::PendingApproval, ExecStatus::Starting, ExecStatus::RollingOut] {
            assert!(unfinished(status, 0, 0, true), "{status}");
        }
        assert!(unfinished(ExecStatus::Running, 1, 0, true), "a run is going, whatever the deadline");
        assert!(unfinished(ExecStatus::Running, 0, 3, false), "online agents will pick it up");
        assert!(!unfinished(ExecStatus::Running, 0, 3, true), "past its deadline nobody will start it");
        assert!(!unfinished(ExecStatus::Running, 0, 0, false), "only offline agents are left: they catch up later");
        assert!(!unfinished(ExecStatus::Halted, 0, 5, false));
        assert!(unfinished(ExecStatus::Superseded, 2, 0, false), "what it sent is still running");
    }

    #[test]
    fn versions_stored_within_one_second_get_occurrences_of_their_own() {
        let stored = at(10) + chrono::Duration::milliseconds(300);
        assert_eq!(version_occurrence(stored, None), at(10), "the first version: the second it was stored");
        assert_eq!(version_occurrence(stored, Some(at(4))), at(10), "an older decision does not move it");
        assert_eq!(version_occurrence(stored, Some(at(10))), at(11), "the first version fired at this second");
        assert_eq!(version_occurrence(stored, Some(at(11))), at(12), "and a third within it");
    }

    #[test]
    fn a_standing_command_is_kept_renewed_or_yields_to_a_newer_fire() {
        let ours = ExecId::new("s-20260101t000000z").unwrap();
        let theirs = ExecId::generate();
        let now = at(1_000_000);
        assert_eq!(standing_step(&ours, "1", None, now), Standing::Renew, "aged out or never stored");
        assert_eq!(standing_step(&ours, "1", Some((&ours, "1", now - chrono::Duration::days(1))), now), Standing::Keep);
        assert_eq!(
            standing_step(&ours, "1", Some((&ours, "1", now - chrono::Duration::days(8))), now),
            Standing::Renew
        );
        assert_eq!(standing_step(&ours, "2", Some((&ours, "1", now)), now), Standing::Renew, "a new version");
        let recent = Some((&theirs, "1", now - chrono::Duration::minutes(5)));
        assert_eq!(standing_step(&ours, "1", recent, now), Standing::Yield);
        let old = Some((&theirs, "1", now - chrono::Duration::hours(2)));
        assert_eq!(standing_step(&ours, "1", old, now), Standing::Renew);
    }

    #[test]
    fn a_schedule_fires_as_itself_within_its_scope() {
        let caller = caller_for(&ScheduleId::new("nightly").unwrap(), GroupScope::Fleet);
        assert_eq!(caller.actor.as_str(), "schedule-nightly");
        assert_eq!((caller.role, caller.scope), (Role::Admin, GroupScope::Fleet));
        let long = caller_for(&ScheduleId::new("a".repeat(40)).unwrap(), GroupScope::Fleet);
        assert!(long.actor.as_str().starts_with("schedule-aaaa"));
        let office = GroupScope::parse_list("office").unwrap();
        let scoped = caller_for(&ScheduleId::new("office-patch").unwrap(), office.clone());
        assert_eq!((scoped.role, &scoped.scope), (Role::Operator, &office));
        assert!(scoped.scope.check_role(scoped.role).is_ok());
    }
}
