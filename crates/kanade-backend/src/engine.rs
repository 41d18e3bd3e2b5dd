//! The exec engine: creates executions from the job catalogue, holds those that need approval, sends commands,
//! and drives rollouts wave by wave.
//!
//! Everything it decides is in SQL before it acts, and every step is safe to repeat, so a backend killed at any
//! point picks up where it stopped: an execution left `starting` or a wave left `sending` is sent again on the next
//! tick, which the broker de-duplicates by message id (`<exec>:<subject>`) and the agents' run ledger would catch
//! anyway. A wave therefore reaches its agents exactly once however often the backend restarts.
//!
//! What to do is decided by [`crate::rollout`]'s pure functions over the rows read; this module performs the answer
//! (the compare-and-set, the send, the audit event, the change note) and decides nothing else.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kanade_ops::OpsError;
use kanade_ops::catalogue::{self, Catalogue};
use kanade_ops::control;
use kanade_shared::access::GroupScope;
use kanade_shared::manifest::{Job, StoredJob, Targets, Wave};
use kanade_shared::subject::Target;
use kanade_shared::waves::{self, WaveError, WaveSpec};
use kanade_shared::wire::Command;
use kanade_shared::{Actor, ExecId, GroupName, JobId};
use tokio_util::sync::CancellationToken;

use crate::caller::Caller;
use crate::db::{Db, DbError, ExecStatus, ExecutionRow, KnownAgent, NewExecution, NewWave, WaveState};
use crate::leader::Leadership;
use crate::live::{Publisher, Topic};
use crate::rollout::{self, Step, WaveCounts};

/// How often the engine looks at running rollouts.
pub const TICK: Duration = Duration::from_millis(250);

/// The identity the engine acts as when it decides on its own (halting a rollout).
pub const ENGINE_ACTOR: &str = "kanade-backend";

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no job `{0}` in the catalogue")]
    JobNotFound(JobId),
    #[error("no execution `{0}`")]
    NotFound(ExecId),
    #[error("job `{0}` is revoked; run `kanade unrevoke {0}` first")]
    Revoked(JobId),
    #[error("{0}")]
    Invalid(String),
    #[error("job `{0}` has no target of its own: name the pcs, groups or all to fire it at")]
    TargetsRequired(JobId),
    #[error("execution `{exec}` is {status}, not pending approval")]
    NotPending { exec: ExecId, status: ExecStatus },
    #[error("`{actor}` requested execution `{exec}` and cannot approve it: another operator must")]
    SelfApproval { exec: ExecId, actor: Actor },
    /// The caller's group scope does not cover the targets ([`crate::scope::check`]).
    #[error(transparent)]
    OutOfScope(#[from] crate::scope::ScopeError),
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What to fire: the job's own target and rollout unless the request names targets (which fires them all at once).
/// A job without a target of its own must be given targets; its rollout, if it has one, then runs over them.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub targets: Option<Targets>,
    /// A rollout of the request's own, over `targets` (which the request then names too).
    pub waves: Option<Vec<kanade_shared::manifest::Wave>>,
    pub jitter: Option<Duration>,
    pub deadline: Option<Duration>,
}

/// Who creates an execution, under which id, and for which schedule occurrence.
#[derive(Debug, Clone)]
pub struct Origin {
    pub caller: Caller,
    /// The execution's id: a schedule occurrence's; none, a fresh one.
    pub exec_id: Option<ExecId>,
    /// The schedule decision the execution carries out, recorded with it in one transaction.
    pub fire: Option<crate::db::NewFire>,
    /// A standing execution's end (once-per-PC): no send lets a run start after it.
    pub ends_at: Option<DateTime<Utc>>,
}

pub struct Engine {
    db: Db,
    nats: async_nats::Client,
    live: Publisher,
    /// One step at a time in this process: a request starting an execution and the tick never interleave.
    step: tokio::sync::Mutex<()>,
    /// The backend's own signing key: everything it sends to agents is signed with it (DESIGN.md, Authority).
    signer: std::sync::OnceLock<kanade_shared::authority::SigningKey>,
}

/// What firing a job would do, worked out exactly as firing works it out; nothing is sent or stored.
pub struct Plan {
    pub stored: StoredJob,
    pub revoked: bool,
    pub targets: Targets,
    /// The rollout: the request's own waves; else the job's when the request names no targets or the job has no
    /// target of its own; else none.
    pub waves: Vec<Wave>,
    /// Known agents the targets reach, each with the 1-based wave that reaches it first (0 without waves).
    pub reached: Vec<(String, i64)>,
    /// Every known agent, as the targets were resolved against.
    pub agents: Vec<KnownAgent>,
}

impl Plan {
    /// An execution must name someone, even if no known agent matches yet.
    pub fn check_targets(&self) -> Result<(), ExecError> {
        let targets = &self.targets;
        if !targets.all && targets.groups.is_empty() && targets.pcs.is_empty() {
            return Err(ExecError::Invalid("no targets: name pcs, groups or all".into()));
        }
        Ok(())
    }
}

/// Whom a fire of `job` reaches and in which waves, as [`Engine::plan`] works it out: the request's targets (with
/// its own waves) replace the job's; a job with no target of its own needs the request's, and runs its own rollout
/// over them, checked by the one waves rule ([`waves::check`]) against the groups named.
pub fn fired_at(job: &Job, request: &ExecRequest) -> Result<(Targets, Vec<Wave>), ExecError> {
    let Some(targets) = &request.targets else {
        let own = job.targets.clone().ok_or_else(|| ExecError::TargetsRequired(job.id.clone()))?;
        return Ok((own, job.waves.clone()));
    };
    if let Some(waves) = &request.waves {
        return Ok((targets.clone(), waves.clone()));
    }
    if job.targets.is_some() || job.waves.is_empty() {
        return Ok((targets.clone(), Vec::new()));
    }
    if !targets.pcs.is_empty() {
        return Err(ExecError::Invalid(format!(
            "job `{}` rolls out in waves, which reach groups: name groups or all, not pcs (or give waves of your own)",
            job.id
        )));
    }
    let specs = job
        .waves
        .iter()
        .map(|w| WaveSpec { group: w.group.clone(), delay: Some(w.delay), max_failure_pct: Some(w.max_failure_pct) })
        .collect();
    let within = (!targets.all).then_some(targets.groups.as_slice());
    let waves = waves::check(specs, within).map_err(|err| {
        let field = format!("job `{}`: rollout.waves{}", job.id, err.field());
        match err {
            WaveError::NotTargeted { group, .. } => {
                ExecError::Invalid(format!("{field}: group `{group}` is not among the groups named"))
            }
            other => ExecError::Invalid(format!("{field}: {other}")),
        }
    })?;
    Ok((targets.clone(), waves))
}

impl Engine {
    pub fn new(db: Db, nats: async_nats::Client, live: Publisher) -> Arc<Self> {
        Arc::new(Self { db, nats, live, step: tokio::sync::Mutex::new(()), signer: std::sync::OnceLock::new() })
    }

    /// Gives the engine the backend's signing key (once; a second is ignored and returns false).
    pub fn set_signer(&self, key: kanade_shared::authority::SigningKey) -> bool {
        self.signer.set(key).is_ok()
    }

    /// The key the backend signs with; an error when it has none, rather than sending what every agent refuses.
    pub fn signer(&self) -> Result<&kanade_shared::authority::SigningKey, kanade_ops::OpsError> {
        self.signer.get().ok_or_else(|| {
            kanade_ops::OpsError::Invalid(
                "this backend has no signing key (`[security] signing_key`, `KANADE_BACKEND_SIGNING_KEY`, or \
                 `backend-signing.key` in the `[security]` folder): agents would refuse what it sends"
                    .into(),
            )
        })
    }

    /// Works out whom firing `job` with `request` reaches, and in which waves, for a caller in `scope` (refused when
    /// the scope does not cover it: [`Engine::check_scope`]). `exec` fires exactly this plan, so a preview (`POST
    /// /api/jobs/{id}/preview`) and a fire right after it count the same targets and refuse the same way.
    pub async fn plan(&self, stored: StoredJob, request: &ExecRequest, scope: &GroupScope) -> Result<Plan, ExecError> {
        let (targets, waves) = fired_at(&stored.job, request)?;
        self.check_scope(scope, &targets, waves.iter().map(|w| &w.group)).await?;
        let revoked = control::is_revoked(&self.nats, &stored.job.id).await?;
        let agents = self.db.known_agents().await?;
        let reached =
            rollout::resolve(&targets, &waves, agents.iter().map(|a| (a.pc_id.as_str(), a.groups.as_slice())));
        Ok(Plan { stored, revoked, targets, waves, reached, agents })
    }

    /// Whether `scope` covers firing at `targets` with waves over `wave_groups` ([`crate::scope::check`]), with the
    /// named PCs' groups as the backend knows them ([`Db::pc_groups`], read only for a group scope naming PCs). The
    /// one check behind every fire, preview, approval, kill, schedule and inventory refresh.
    pub async fn check_scope<'a>(
        &self,
        scope: &GroupScope,
        targets: &Targets,
        wave_groups: impl IntoIterator<Item = &'a GroupName>,
    ) -> Result<(), ExecError> {
        if scope.is_fleet() {
            return Ok(());
        }
        let groups = if targets.pcs.is_empty() { Default::default() } else { self.db.pc_groups(&targets.pcs).await? };
        crate::scope::check(scope, targets, wave_groups, |pc| groups.get(pc).map(Vec::as_slice))?;
        Ok(())
    }

    /// Creates an execution of `stored` (as the catalogue holds it) and, unless the job needs approval, sends it.
    pub async fn exec(&self, stored: StoredJob, request: ExecRequest, caller: &Caller) -> Result<ExecId, ExecError> {
        let origin = Origin { caller: caller.clone(), exec_id: None, fire: None, ends_at: None };
        Ok(self.create(stored, request, origin).await?.0)
    }

    /// Creates an execution as `origin` says (its id, the schedule decision it carries out) and, unless the job
    /// needs approval, sends it. Returns its id and whether it is new: an execution with the id that exists
    /// already (an occurrence fired before, by this backend or another) is left as it is.
    pub async fn create(
        &self,
        stored: StoredJob,
        request: ExecRequest,
        origin: Origin,
    ) -> Result<(ExecId, bool), ExecError> {
        let job = &stored.job.id.clone();
        let caller = &origin.caller;
        let clock = std::time::Instant::now();
        let plan = self.plan(stored, &request, &caller.scope).await?;
        let planned = clock.elapsed();
        if plan.revoked {
            return Err(ExecError::Revoked(job.clone()));
        }
        let stored = &plan.stored;
        // Resolved now, so what an approver approves is exactly what will run (a script object is pinned by its
        // SHA-256 and checked here).
        let script = Catalogue::open(&self.nats).await?.script(stored).await?;
        let exec_id = origin.exec_id.clone().unwrap_or_else(ExecId::generate);
        let command = catalogue::command_for(stored, exec_id.clone(), script, request.jitter);
        command.validate().map_err(|err| ExecError::Invalid(format!("job `{job}`: {err}")))?;
        plan.check_targets()?;
        let Plan { targets, waves, reached, .. } = &plan;
        let deadline = request.deadline.or(stored.job.deadline);
        let status = if stored.job.require_approval { ExecStatus::PendingApproval } else { ExecStatus::Starting };
        let now = Utc::now();
        let encode = |what, value: serde_json::Result<String>| {
            value.map_err(|e| ExecError::Invalid(format!("cannot encode the {what}: {e}")))
        };
        let created = self
            .db
            .insert_execution(&NewExecution {
                exec_id: &exec_id,
                job_id: job,
                version: &stored.job.version,
                status,
                targets_json: encode("targets", serde_json::to_string(&targets))?,
                command_json: encode("command", serde_json::to_string(&command))?,
                deadline_ms: deadline.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                ends_at: origin.ends_at,
                requested_by: caller.actor.as_str(),
                now,
                targets: reached.clone(),
                waves: waves
                    .iter()
                    .map(|w| NewWave {
                        group: w.group.to_string(),
                        delay_ms: i64::try_from(w.delay.as_millis()).unwrap_or(i64::MAX),
                        max_failure_pct: w.max_failure_pct,
                    })
                    .collect(),
                fire: origin.fire.clone(),
            })
            .await?;
        if !created {
            tracing::info!(exec_id = %exec_id, "execution exists already; not fired again");
            return Ok((exec_id, false));
        }
        let recorded = clock.elapsed();
        let mut details = serde_json::json!({
            "job_id": job, "version": stored.job.version, "target_count": reached.len(), "waves": waves.len(),
            "status": status.as_str(), "identity": caller.identity(),
        });
        if let Some(fire) = &origin.fire {
            details["schedule_id"] = fire.schedule_id.clone().into();
            details["occurrence_at"] = fire.occurrence_at.to_rfc3339().into();
        }
        self.audit(&caller.actor, "exec", exec_id.as_str(), details).await;
        self.changed(&exec_id).await;
        if status == ExecStatus::Starting {
            self.start_now(&exec_id).await;
        }
        tracing::debug!(exec_id = %exec_id, targets = reached.len(), planned = ?planned, recorded = ?recorded, sent = ?clock.elapsed(), "execution created");
        Ok((exec_id, true))
    }

    /// A second operator's approval: the execution is sent now.
    pub async fn approve(&self, exec: &ExecId, caller: &Caller) -> Result<(), ExecError> {
        let row = self.pending(exec).await?;
        if row.requested_by == caller.actor.as_str() {
            self.audit(
                &caller.actor,
                "approve-refused",
                exec.as_str(),
                serde_json::json!({ "reason": "self-approval" }),
            )
            .await;
            return Err(ExecError::SelfApproval { exec: exec.clone(), actor: caller.actor.clone() });
        }
        if !self.db.decide(exec, ExecStatus::Starting, caller.actor.as_str(), None, Utc::now()).await? {
            return Err(self.not_pending(exec).await);
        }
        let details = serde_json::json!({ "job_id": row.job_id, "requested_by": row.requested_by, "identity": caller.identity() });
        self.audit(&caller.actor, "approve", exec.as_str(), details).await;
        self.changed(exec).await;
        self.start_now(exec).await;
        Ok(())
    }

    /// Refuses a pending execution; nothing is ever sent. The requester may withdraw their own request this way.
    pub async fn reject(&self, exec: &ExecId, caller: &Caller, reason: Option<&str>) -> Result<(), ExecError> {
        let row = self.pending(exec).await?;
        let reason = format!("rejected by `{}`{}", caller.actor, reason.map(|r| format!(": {r}")).unwrap_or_default());
        if !self.db.decide(exec, ExecStatus::Rejected, caller.actor.as_str(), Some(&reason), Utc::now()).await? {
            return Err(self.not_pending(exec).await);
        }
        let details = serde_json::json!({ "job_id": row.job_id, "requested_by": row.requested_by, "reason": reason });
        self.audit(&caller.actor, "reject", exec.as_str(), details).await;
        self.changed(exec).await;
        Ok(())
    }

    /// Sends a just-recorded execution at once rather than on the next tick. It is recorded either way: if sending
    /// fails (the broker is away), the tick retries it, so the caller is told it was fired, with status `starting`.
    async fn start_now(&self, exec: &ExecId) {
        let _step = self.step.lock().await;
        let started = match self.db.get_execution(exec).await {
            Ok(Some(row)) if row.status == ExecStatus::Starting => self.start(&row).await,
            Ok(_) => Ok(()),
            Err(err) => Err(err.into()),
        };
        if let Err(err) = started {
            tracing::warn!(exec_id = %exec, error = %err, "cannot send the execution yet; retrying on the next tick");
        }
    }

    async fn pending(&self, exec: &ExecId) -> Result<ExecutionRow, ExecError> {
        let row = self.db.get_execution(exec).await?.ok_or_else(|| ExecError::NotFound(exec.clone()))?;
        if row.status != ExecStatus::PendingApproval {
            return Err(ExecError::NotPending { exec: exec.clone(), status: row.status });
        }
        Ok(row)
    }

    async fn not_pending(&self, exec: &ExecId) -> ExecError {
        match self.db.get_execution(exec).await {
            Ok(Some(row)) => ExecError::NotPending { exec: exec.clone(), status: row.status },
            Ok(None) => ExecError::NotFound(exec.clone()),
            Err(err) => err.into(),
        }
    }

    /// Drives every unfinished execution until `shutdown`, while this replica leads (`leadership`): one backend
    /// ticks rollouts at a time. A fire made through this replica's API is still sent at once ([`Engine::exec`]).
    pub async fn run(self: Arc<Self>, leadership: Arc<Leadership>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if !leadership.leading() {
                        continue;
                    }
                    if let Err(err) = self.tick().await {
                        tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "exec engine step failed; retrying");
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// One pass over the executions that still have something to send.
    pub async fn tick(&self) -> Result<(), ExecError> {
        let _step = self.step.lock().await;
        for row in self.db.executions_in(&[ExecStatus::Starting, ExecStatus::RollingOut]).await? {
            let step = if row.status == ExecStatus::Starting { self.start(&row).await } else { self.drive(&row).await };
            if let Err(err) = step {
                tracing::warn!(exec_id = %row.exec_id, error = %err, "cannot advance execution; retrying");
            }
        }
        Ok(())
    }

    /// `starting` -> `rolling_out` or `running`: makes this version the current one and sends (the first wave).
    async fn start(&self, row: &ExecutionRow) -> Result<(), ExecError> {
        let (exec, job) = (&row.exec_id, &row.job_id);
        control::set_current(&self.nats, self.signer()?, job, &row.version).await?;
        let now = Utc::now();
        self.supersede_older(row, now).await?;
        let waves = self.db.waves(exec).await?;
        if !waves.is_empty() {
            if self.db.transition(exec, ExecStatus::Starting, ExecStatus::RollingOut, None, now).await? {
                self.changed(exec).await;
                let row = self.db.get_execution(exec).await?.ok_or_else(|| ExecError::NotFound(exec.clone()))?;
                self.drive(&row).await?;
            }
            return Ok(());
        }
        let targets: Targets = serde_json::from_value(row.targets.clone())
            .map_err(|e| ExecError::Invalid(format!("execution `{exec}` has unreadable targets: {e}")))?;
        for target in rollout::subjects(&targets) {
            self.send(row, &target).await?;
        }
        if self.db.transition(exec, ExecStatus::Starting, ExecStatus::Running, None, Utc::now()).await? {
            self.changed(exec).await;
        }
        tracing::info!(exec_id = %exec, job_id = %job, targets = row.target_count, "execution sent");
        Ok(())
    }

    /// Stops the executions of another version of this job that still have something to send
    /// ([`rollout::supersedes`]), each with a compare-and-set, so one that moved on meanwhile is left alone.
    async fn supersede_older(&self, newer: &ExecutionRow, now: DateTime<Utc>) -> Result<(), ExecError> {
        let reason = rollout::superseded_reason(newer);
        let mut superseded = Vec::new();
        for older in self.db.job_executions_in(&newer.job_id, rollout::SUPERSEDABLE).await? {
            if !rollout::supersedes(newer, &older) {
                continue;
            }
            let (exec, to) = (&older.exec_id, ExecStatus::Superseded);
            if self.db.transition_from(exec, rollout::SUPERSEDABLE, to, Some(&reason), now).await? {
                tracing::info!(exec_id = %exec, newer = %newer.exec_id, "rollout superseded by a newer version");
                superseded.push(older.exec_id);
            }
        }
        if !superseded.is_empty() {
            self.live.changed(Topic::Executions, superseded.iter().map(ExecId::as_str)).await;
        }
        Ok(())
    }

    /// One step of a rollout, as [`rollout::next_step`] decides it from the rows: halt it, finish it, or send the
    /// next wave when it is due.
    async fn drive(&self, row: &ExecutionRow) -> Result<(), ExecError> {
        let exec = &row.exec_id;
        let waves = self.db.waves(exec).await?;
        let counts = WaveCounts::from_rows(self.db.target_counts(exec).await?);
        let now = Utc::now();
        match rollout::next_step(&row.into(), &waves, &counts, now) {
            Step::Nothing | Step::Wait { .. } => {}
            Step::Halt { reason } => {
                if self.db.transition(exec, ExecStatus::RollingOut, ExecStatus::Halted, Some(&reason), now).await? {
                    tracing::warn!(exec_id = %exec, %reason, "rollout halted");
                    let actor = Actor::from_login(ENGINE_ACTOR);
                    self.audit(&actor, "rollout-halt", exec.as_str(), serde_json::json!({ "reason": reason })).await;
                    self.changed(exec).await;
                }
            }
            Step::Finish => {
                if self.db.transition(exec, ExecStatus::RollingOut, ExecStatus::Running, None, now).await? {
                    self.changed(exec).await;
                }
            }
            // Claimed before it is sent, so a backend that stops mid-send leaves it `sending` for the next tick; a
            // claim another engine won first is its to send.
            Step::SendWave { wave, group } => {
                if self.db.wave_transition(exec, wave, WaveState::Pending, WaveState::Sending, now).await? {
                    self.send_wave(row, wave, &group, now).await?;
                }
            }
            // Left `sending` by a backend that stopped mid-send. Sending again is harmless.
            Step::ResumeSending { wave, group } => self.send_wave(row, wave, &group, now).await?,
        }
        Ok(())
    }

    /// Sends a claimed (`sending`) wave and marks it `sent`.
    async fn send_wave(
        &self,
        row: &ExecutionRow,
        wave: i64,
        group: &GroupName,
        now: DateTime<Utc>,
    ) -> Result<(), ExecError> {
        let exec = &row.exec_id;
        self.send(row, &Target::Group(group.clone())).await?;
        if self.db.wave_transition(exec, wave, WaveState::Sending, WaveState::Sent, now).await? {
            self.changed(exec).await;
        }
        tracing::info!(exec_id = %exec, wave, group = %group, "wave sent");
        Ok(())
    }

    /// Publishes the execution's command to one target, stamped now, with its deadline counted from now.
    async fn send(&self, row: &ExecutionRow, target: &Target) -> Result<(), ExecError> {
        let mut command: Command = serde_json::from_str(&row.command_json)
            .map_err(|e| ExecError::Invalid(format!("execution `{}` has an unreadable command: {e}", row.exec_id)))?;
        let now = Utc::now();
        command.issued_at = now;
        command.deadline = send_deadline(row, now);
        control::publish(&self.nats, self.signer()?, target, &command).await?;
        Ok(())
    }

    /// Sends a standing execution's command to `target` again, stamped now (`control::republish`: a message id of
    /// its own, so it is stored even within the duplicate window).
    pub async fn resend(&self, row: &ExecutionRow, target: &Target) -> Result<(), ExecError> {
        let mut command: Command = serde_json::from_str(&row.command_json)
            .map_err(|e| ExecError::Invalid(format!("execution `{}` has an unreadable command: {e}", row.exec_id)))?;
        let now = Utc::now();
        command.issued_at = now;
        command.deadline = send_deadline(row, now);
        control::republish(&self.nats, self.signer()?, target, &command).await?;
        Ok(())
    }

    /// Tells live dashboards that `exec`'s status or one of its waves changed.
    async fn changed(&self, exec: &ExecId) {
        self.live.changed(Topic::Executions, [exec.as_str()]).await;
    }

    async fn audit(&self, actor: &Actor, action: &str, target: &str, details: serde_json::Value) {
        crate::caller::auditor(&self.nats, actor).record(action, target, details).await;
    }
}

/// The deadline of a send at `now`: its `deadline` after the send, and never past a standing execution's end.
pub fn send_deadline(row: &ExecutionRow, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let relative = row.deadline_ms.map(|ms| now + chrono::Duration::milliseconds(ms));
    let ends = row.ends_at_ms.and_then(DateTime::<Utc>::from_timestamp_millis);
    match (relative, ends) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(yaml_tail: &str) -> Job {
        let text = format!("id: j\nversion: 1\nexecute: {{shell: sh, script: x}}\n{yaml_tail}");
        Job::from_yaml(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn targets(all: bool, groups: &[&str], pcs: &[&str]) -> Targets {
        Targets {
            all,
            groups: groups.iter().map(|g| GroupName::new(*g).unwrap()).collect(),
            pcs: pcs.iter().map(|p| kanade_shared::PcId::new(*p).unwrap()).collect(),
        }
    }

    fn asked(targets: Targets) -> ExecRequest {
        ExecRequest { targets: Some(targets), ..ExecRequest::default() }
    }

    fn groups_of(waves: &[Wave]) -> Vec<&str> {
        waves.iter().map(|w| w.group.as_str()).collect()
    }

    const WAVES: &str = "rollout:\n  strategy: wave\n  waves:\n  - group: canary\n  - group: rest\n    delay: 1h\n";

    #[test]
    fn a_job_without_a_target_needs_the_request_s() {
        let loose = job("");
        let err = fired_at(&loose, &ExecRequest::default()).unwrap_err();
        assert!(matches!(&err, ExecError::TargetsRequired(id) if id.as_str() == "j"), "{err}");
        assert!(err.to_string().contains("name the pcs, groups or all"), "{err}");
        let named = targets(false, &[], &["host-1"]);
        assert_eq!(fired_at(&loose, &asked(named.clone())).unwrap(), (named, vec![]));
    }

    #[test]
    fn a_job_with_a_target_fires_at_its_own_or_at_the_request_s_at_once() {
        let own = job(&format!("target:\n  groups: [canary, rest]\n{WAVES}"));
        let (t, waves) = fired_at(&own, &ExecRequest::default()).unwrap();
        assert_eq!((t, groups_of(&waves)), (targets(false, &["canary", "rest"], &[]), vec!["canary", "rest"]));
        // Targets named replace the job's and its rollout, as they always have.
        let (t, waves) = fired_at(&own, &asked(targets(false, &[], &["pc-1"]))).unwrap();
        assert_eq!((t, waves.len()), (targets(false, &[], &["pc-1"]), 0));
    }

    #[test]
    fn a_job_without_a_target_rolls_its_waves_out_over_the_groups_named() {
        let loose = job(WAVES);
        let (_, waves) = fired_at(&loose, &asked(targets(false, &["rest", "canary"], &[]))).unwrap();
        assert_eq!(groups_of(&waves), ["canary", "rest"], "the job's order");
        assert_eq!(waves[1].delay, Duration::from_secs(3600));
        let (_, waves) = fired_at(&loose, &asked(targets(true, &[], &[]))).unwrap();
        assert_eq!(waves.len(), 2, "all: any group");

        let err = fired_at(&loose, &asked(targets(false, &["canary"], &[]))).unwrap_err().to_string();
        assert!(err.contains("job `j`: rollout.waves[1]: group `rest` is not among the groups named"), "{err}");
        let err = fired_at(&loose, &asked(targets(false, &["canary", "rest"], &["pc-1"]))).unwrap_err().to_string();
        assert!(err.contains("name groups or all, not pcs"), "{err}");

        // The request's own waves win over the job's.
        let own = vec![Wave { group: GroupName::new("lab").unwrap(), delay: Duration::ZERO, max_failure_pct: 5.0 }];
        let request = ExecRequest { waves: Some(own.clone()), ..asked(targets(false, &["lab"], &[])) };
        assert_eq!(fired_at(&loose, &request).unwrap().1, own);
    }
}
