//! Executions, their targets and their waves: written by the exec engine, read by the API.
//!
//! Every state change is a compare-and-set (`UPDATE ... WHERE status = <expected>`), so two engines (two backend
//! replicas, or a tick racing a request) never both make the same transition.

use std::fmt;

use chrono::{DateTime, Utc};
use kanade_shared::access::GroupScope;
use kanade_shared::manifest::Targets;
use kanade_shared::{ExecId, GroupName, JobId};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, Paged, TargetRow, and_equals, millis, pcs_in};
use kanade_shared::PcId;

/// An execution's lifecycle, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Waiting for a second operator; nothing has been sent.
    PendingApproval,
    /// Refused by an operator; nothing was sent.
    Rejected,
    /// Approved or fired; its commands are being sent.
    Starting,
    /// Sending wave after wave.
    RollingOut,
    /// Everything is sent; results are coming in.
    Running,
    /// A wave failed more than it may; later waves are not sent.
    Halted,
    /// A newer version of the job was fired; later waves are not sent.
    Superseded,
}

impl ExecStatus {
    pub const ALL: [Self; 7] = [
        Self::PendingApproval,
        Self::Rejected,
        Self::Starting,
        Self::RollingOut,
        Self::Running,
        Self::Halted,
        Self::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending_approval",
            Self::Rejected => "rejected",
            Self::Starting => "starting",
            Self::RollingOut => "rolling_out",
            Self::Running => "running",
            Self::Halted => "halted",
            Self::Superseded => "superseded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl fmt::Display for ExecStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rollout wave's progress, as stored: claimed (`sending`) before its command is published, so a backend that
/// stops mid-send finds it and sends it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveState {
    /// Not sent yet; due its delay after the previous wave was sent.
    Pending,
    /// Claimed for sending, and stamped with the send time; its command may or may not be out.
    Sending,
    /// Its command is out.
    Sent,
}

impl WaveState {
    pub const ALL: [Self; 3] = [Self::Pending, Self::Sending, Self::Sent];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl fmt::Display for WaveState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a typed value from its stored text. Anything unreadable is an error rather than a guess, because the
/// engine acts on these values: a status it does not know (a newer backend's, or a hand edit) must stop it.
fn stored<T>(what: &'static str, raw: String, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, DbError> {
    parse(&raw).ok_or(DbError::Unreadable { what, value: raw })
}

fn stored_exec_id(raw: String) -> Result<ExecId, DbError> {
    stored("exec id", raw, |r| ExecId::new(r).ok())
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecutionRow {
    pub exec_id: ExecId,
    pub job_id: JobId,
    pub version: String,
    pub status: ExecStatus,
    pub status_reason: Option<String>,
    pub targets: serde_json::Value,
    #[serde(skip)]
    pub command_json: String,
    #[serde(skip)]
    pub deadline_ms: Option<i64>,
    /// A standing (once-per-PC) execution's end: no send lets a run start after it.
    #[serde(skip)]
    pub ends_at_ms: Option<i64>,
    pub target_count: i64,
    pub requested_by: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl ExecutionRow {
    fn from_row(row: &AnyRow) -> Result<Self, DbError> {
        let targets: String = row.try_get("targets_json")?;
        Ok(Self {
            exec_id: stored_exec_id(row.try_get("exec_id")?)?,
            job_id: stored("job id", row.try_get("job_id")?, |r| JobId::new(r).ok())?,
            version: row.try_get("version")?,
            status: stored("execution status", row.try_get("status")?, ExecStatus::parse)?,
            status_reason: row.try_get("status_reason")?,
            targets: serde_json::from_str(&targets).unwrap_or(serde_json::Value::Null),
            command_json: row.try_get("command_json")?,
            deadline_ms: row.try_get("deadline_ms")?,
            ends_at_ms: row.try_get("ends_at_ms")?,
            target_count: row.try_get("target_count")?,
            requested_by: row.try_get("requested_by")?,
            decided_by: row.try_get("decided_by")?,
            decided_at: row.try_get::<Option<i64>, _>("decided_at_ms")?.map(millis),
            created_at: millis(row.try_get("created_at_ms")?),
            started_at: row.try_get::<Option<i64>, _>("started_at_ms")?.map(millis),
            updated_at: millis(row.try_get("updated_at_ms")?),
        })
    }
}

const EXECUTION_COLUMNS: &str = "exec_id, job_id, version, status, status_reason, targets_json, command_json, \
    deadline_ms, target_count, requested_by, decided_by, decided_at_ms, created_at_ms, started_at_ms, updated_at_ms, \
    ends_at_ms";

/// A new execution, as the engine creates it.
pub struct NewExecution<'a> {
    pub exec_id: &'a ExecId,
    pub job_id: &'a JobId,
    pub version: &'a str,
    pub status: ExecStatus,
    pub targets_json: String,
    pub command_json: String,
    pub deadline_ms: Option<i64>,
    /// A standing execution's end (once-per-PC schedules).
    pub ends_at: Option<DateTime<Utc>>,
    pub requested_by: &'a str,
    pub now: DateTime<Utc>,
    /// The schedule occurrence this execution fires, recorded in the same transaction.
    pub fire: Option<super::schedules::NewFire>,
    /// Known agents it reaches, each with the (1-based) wave that reaches it first, 0 without waves.
    pub targets: Vec<(String, i64)>,
    pub waves: Vec<NewWave>,
}

pub struct NewWave {
    pub group: String,
    pub delay_ms: i64,
    pub max_failure_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaveRow {
    pub wave: i64,
    pub group: GroupName,
    pub delay_ms: i64,
    pub max_failure_pct: f64,
    pub state: WaveState,
    pub fired_at: Option<DateTime<Utc>>,
}

/// Which of an execution's targets to list.
#[derive(Debug, Clone, Default)]
pub struct TargetFilter {
    /// `pending`, `running`, or a result status.
    pub state: Option<String>,
    /// The page starts after this pc id.
    pub after: Option<PcId>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub job_id: Option<JobId>,
    pub status: Option<StatusFilter>,
    /// The page starts after (older than) this (created_at_ms, exec_id).
    pub before: Option<(i64, ExecId)>,
    pub limit: u32,
}

/// A status to list by: a stored one, or `completed` (stored `running`, every target answered), which the API
/// shows in place of `running` once it is true. The filter is the SQL side of `rollout::ShownStatus::of`: a
/// target is unanswered when it has no result row (`HAS_PENDING` here, `Tally::unanswered` there), so
/// `status=completed` lists exactly the executions shown `completed` and `status=running` exactly those shown
/// `running` (`tests/executions.rs` checks both on SQLite and PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Stored(ExecStatus),
    Completed,
}

impl StatusFilter {
    pub fn parse(raw: &str) -> Option<Self> {
        if raw == "completed" { Some(Self::Completed) } else { ExecStatus::parse(raw).map(Self::Stored) }
    }
}

/// `count` numbered placeholders from `$first`: `$5, $6`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// The SQL form of [`crate::scope::shows_execution`] for a group scope, over table alias `e` of `executions`: it
/// fired at all agents, named one of `groups` (targets or waves), or one of its targets is a PC in the scope. The
/// patterns are numbered from `$first`; returns the condition and the values to bind in that order.
fn execution_in_scope(groups: &std::collections::BTreeSet<GroupName>, first: usize) -> (String, Vec<String>) {
    let named: Vec<String> = groups.iter().map(|g| format!("%\"{}\"%", super::like_escape(g.as_str()))).collect();
    let named_any = (first..first + named.len())
        .map(|n| format!("e.target_groups_json LIKE ${n} ESCAPE '\\'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let (pcs, patterns) = pcs_in("t.pc_id", groups, first + named.len());
    let sql = format!(
        "(e.targets_all = 1 OR {named_any} OR EXISTS (SELECT 1 FROM execution_targets t WHERE t.exec_id = e.exec_id \
         AND {pcs}))"
    );
    (sql, named.into_iter().chain(patterns).collect())
}

/// What an execution named, as stored for scopes: whether it fired at all agents, and its groups as JSON. Read from
/// its targets as the engine encoded them (anything else names nothing) and its waves.
fn named(targets_json: &str, waves: &[NewWave]) -> (bool, String) {
    let targets: Option<Targets> = serde_json::from_str(targets_json).ok();
    let wave_groups: Vec<GroupName> = waves.iter().filter_map(|w| GroupName::new(w.group.as_str()).ok()).collect();
    let (all, groups) = match &targets {
        Some(targets) => (targets.all, crate::scope::named_groups(targets, &wave_groups)),
        None => {
            let mut groups = wave_groups.clone();
            groups.sort();
            groups.dedup();
            (false, groups)
        }
    };
    (all, serde_json::to_string(&groups).unwrap_or_else(|_| "[]".to_owned()))
}

/// Some target of the execution has no result yet (a run that began and has not finished counts too; a result from
/// an agent that is not a target does not answer for one).
const HAS_PENDING: &str = "EXISTS (SELECT 1 FROM execution_targets t WHERE t.exec_id = e.exec_id AND t.status IS NULL)";

impl Db {
    /// Stores a new execution with its targets and waves (and the schedule decision it carries out), in one
    /// transaction. False, with nothing written, when an execution with its id exists: an occurrence fired before.
    pub async fn insert_execution(&self, new: &NewExecution<'_>) -> Result<bool, DbError> {
        let now = new.now.timestamp_millis();
        let (all, groups) = named(&new.targets_json, &new.waves);
        let mut tx = self.begin_read_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO executions (exec_id, job_id, version, status, targets_json, command_json, deadline_ms,
                target_count, requested_by, created_at_ms, updated_at_ms, started_at_ms, ends_at_ms, targets_all,
                target_groups_json)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14)
             ON CONFLICT (exec_id) DO NOTHING RETURNING exec_id",
        )
        .bind(new.exec_id.as_str())
        .bind(new.job_id.as_str())
        .bind(new.version)
        .bind(new.status.as_str())
        .bind(new.targets_json.as_str())
        .bind(new.command_json.as_str())
        .bind(new.deadline_ms)
        .bind(i64::try_from(new.targets.len()).unwrap_or(i64::MAX))
        .bind(new.requested_by)
        .bind(now)
        .bind((new.status == ExecStatus::Starting).then_some(now))
        .bind(new.ends_at.map(|t| t.timestamp_millis()))
        .bind(i64::from(all))
        .bind(groups)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            return Ok(false);
        }
        if let Some(fire) = &new.fire {
            Self::insert_fire_over_failure(&mut tx, fire).await?;
            Self::move_cursor(&mut tx, fire).await?;
        }
        // Many rows per statement: one statement per row made a 10,000-agent exec spend ~300 ms here. 300 rows x 3
        // parameters stays under SQLite's oldest limit of 999 bound parameters.
        for chunk in new.targets.chunks(300) {
            let sql = format!(
                "INSERT INTO execution_targets (exec_id, pc_id, wave) VALUES {}",
                self.dialect.rows(chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for (pc, wave) in chunk {
                query = query.bind(new.exec_id.as_str()).bind(pc.as_str()).bind(*wave);
            }
            query.execute(&mut *tx).await?;
        }
        let mut pending = super::Tallies::default();
        for (_, wave) in &new.targets {
            pending.add(new.exec_id.as_str(), *wave, "pending", 1);
        }
        self.apply_tallies(&mut tx, pending).await?;
        for (index, wave) in new.waves.iter().enumerate() {
            sqlx::query(
                "INSERT INTO execution_waves (exec_id, wave, group_name, delay_ms, max_failure_pct, state)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(new.exec_id.as_str())
            .bind(i64::try_from(index + 1).unwrap_or(i64::MAX))
            .bind(wave.group.as_str())
            .bind(wave.delay_ms)
            .bind(wave.max_failure_pct)
            .bind(WaveState::Pending.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn get_execution(&self, exec: &ExecId) -> Result<Option<ExecutionRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE exec_id = $1"))
            .bind(exec.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(ExecutionRow::from_row).transpose()
    }

    /// One page of the executions matching `filter`, newest first: (created_at, exec_id) descending.
    pub async fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Paged<ExecutionRow, (i64, ExecId)>, DbError> {
        self.list_executions_within(filter, &GroupScope::Fleet).await
    }

    /// [`Db::list_executions`] of the executions `scope` shows ([`crate::scope::shows_execution`]).
    pub async fn list_executions_within(
        &self,
        filter: &ExecutionFilter,
        scope: &GroupScope,
    ) -> Result<Paged<ExecutionRow, (i64, ExecId)>, DbError> {
        let mut sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions e WHERE 1 = 1");
        let stored = match filter.status {
            Some(StatusFilter::Stored(status)) => Some(status),
            Some(StatusFilter::Completed) => Some(ExecStatus::Running),
            None => None,
        };
        let binds = and_equals(
            &mut sql,
            0,
            &[("job_id", filter.job_id.as_ref().map(JobId::as_str)), ("status", stored.map(ExecStatus::as_str))],
        );
        match filter.status {
            Some(StatusFilter::Completed) => sql.push_str(&format!(" AND NOT {HAS_PENDING}")),
            Some(StatusFilter::Stored(ExecStatus::Running)) => sql.push_str(&format!(" AND {HAS_PENDING}")),
            _ => {}
        }
        if filter.before.is_some() {
            let n = binds.len() + 2;
            sql.push_str(&format!(" AND (created_at_ms, exec_id) < (${}, ${n})", n - 1));
        }
        let mut scoped = Vec::new();
        if let Some(groups) = scope.groups() {
            let first = binds.len() + if filter.before.is_some() { 3 } else { 1 };
            let (condition, values) = execution_in_scope(groups, first);
            sql.push_str(&format!(" AND {condition}"));
            scoped = values;
        }
        sql.push_str(&format!(" ORDER BY created_at_ms DESC, exec_id DESC LIMIT {}", filter.limit + 1));
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        if let Some((created, exec)) = &filter.before {
            query = query.bind(*created).bind(exec.as_str().to_owned());
        }
        for value in scoped {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let rows: Vec<ExecutionRow> = rows.iter().map(ExecutionRow::from_row).collect::<Result<_, _>>()?;
        Ok(Paged::of(rows, filter.limit, |e| (e.created_at.timestamp_millis(), e.exec_id.clone())))
    }

    /// Whether `scope` shows execution `exec` ([`crate::scope::shows_execution`]): for one the engine recorded, by what
    /// it named and its targets; for one it did not (`kanade run`), when a PC in the scope reported a start or a
    /// result of it. False when there is no such execution either way.
    pub async fn execution_in_scope(&self, exec: &ExecId, scope: &GroupScope) -> Result<bool, DbError> {
        let Some(groups) = scope.groups() else { return Ok(true) };
        let recorded = sqlx::query("SELECT 1 FROM executions WHERE exec_id = $1")
            .bind(exec.as_str())
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        let (condition, values) = if recorded {
            let (condition, values) = execution_in_scope(groups, 2);
            (format!("SELECT 1 FROM executions e WHERE e.exec_id = $1 AND {condition}"), values)
        } else {
            let (condition, values) = pcs_in("r.pc_id", groups, 2);
            let sql = format!(
                "SELECT 1 FROM (SELECT pc_id FROM results WHERE exec_id = $1
                    UNION SELECT pc_id FROM runs_started WHERE exec_id = $1) r WHERE {condition}"
            );
            (sql, values)
        };
        let mut query = sqlx::query(&condition).bind(exec.as_str());
        for value in values {
            query = query.bind(value);
        }
        Ok(query.fetch_optional(&self.pool).await?.is_some())
    }

    /// Up to `limit` of the PCs that reported a start or a result of `exec` and that `scope` does not reach: what an
    /// execution the engine did not record reached, as far as the backend knows.
    pub async fn reported_outside(
        &self,
        exec: &ExecId,
        scope: &GroupScope,
        limit: u32,
    ) -> Result<Vec<String>, DbError> {
        let Some(groups) = scope.groups() else { return Ok(Vec::new()) };
        let (condition, values) = pcs_in("r.pc_id", groups, 2);
        let sql = format!(
            "SELECT r.pc_id FROM (SELECT pc_id FROM results WHERE exec_id = $1
                UNION SELECT pc_id FROM runs_started WHERE exec_id = $1) r WHERE NOT {condition}
             ORDER BY r.pc_id LIMIT {limit}"
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(exec.as_str());
        for value in values {
            query = query.bind(value);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// Every execution in one of `statuses`, oldest first: the engine's work list.
    pub async fn executions_in(&self, statuses: &[ExecStatus]) -> Result<Vec<ExecutionRow>, DbError> {
        self.executions_where(None, statuses).await
    }

    /// The executions of `job` in one of `statuses`, oldest first.
    pub async fn job_executions_in(&self, job: &JobId, statuses: &[ExecStatus]) -> Result<Vec<ExecutionRow>, DbError> {
        self.executions_where(Some(job), statuses).await
    }

    async fn executions_where(
        &self,
        job: Option<&JobId>,
        statuses: &[ExecStatus],
    ) -> Result<Vec<ExecutionRow>, DbError> {
        let mut sql =
            format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE status IN ({})", placeholders(1, statuses.len()));
        if job.is_some() {
            sql.push_str(&format!(" AND job_id = ${}", statuses.len() + 1));
        }
        sql.push_str(" ORDER BY created_at_ms, exec_id");
        let mut query = sqlx::query(&sql);
        for status in statuses {
            query = query.bind(status.as_str());
        }
        if let Some(job) = job {
            query = query.bind(job.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(ExecutionRow::from_row).collect()
    }

    /// Moves `exec` from `from` to `to`; false if it was not in `from` (someone else moved it first).
    pub async fn transition(
        &self,
        exec: &ExecId,
        from: ExecStatus,
        to: ExecStatus,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        self.transition_from(exec, &[from], to, reason, now).await
    }

    /// Moves `exec` from any of `from` to `to`; false if it was in none of them (someone else moved it first).
    pub async fn transition_from(
        &self,
        exec: &ExecId,
        from: &[ExecStatus],
        to: ExecStatus,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let sql = format!(
            "UPDATE executions SET status = $1, status_reason = COALESCE($2, status_reason), updated_at_ms = $3,
                started_at_ms = CASE WHEN $1 = 'starting' THEN $3 ELSE started_at_ms END
             WHERE exec_id = $4 AND status IN ({})",
            placeholders(5, from.len())
        );
        let mut query =
            sqlx::query(&sql).bind(to.as_str()).bind(reason).bind(now.timestamp_millis()).bind(exec.as_str());
        for status in from {
            query = query.bind(status.as_str());
        }
        let done = query.execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// An operator's decision on a pending execution; false if it was no longer pending.
    pub async fn decide(
        &self,
        exec: &ExecId,
        to: ExecStatus,
        by: &str,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE executions SET status = $1, decided_by = $2, decided_at_ms = $3, updated_at_ms = $3,
                status_reason = $4, started_at_ms = CASE WHEN $1 = 'starting' THEN $3 ELSE started_at_ms END
             WHERE exec_id = $5 AND status = 'pending_approval'",
        )
        .bind(to.as_str())
        .bind(by)
        .bind(now.timestamp_millis())
        .bind(reason)
        .bind(exec.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn waves(&self, exec: &ExecId) -> Result<Vec<WaveRow>, DbError> {
        let rows = sqlx::query(
            "SELECT wave, group_name, delay_ms, max_failure_pct, state, fired_at_ms FROM execution_waves
             WHERE exec_id = $1 ORDER BY wave",
        )
        .bind(exec.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WaveRow {
                    wave: row.try_get("wave")?,
                    group: stored("wave group", row.try_get("group_name")?, |r| GroupName::new(r).ok())?,
                    delay_ms: row.try_get("delay_ms")?,
                    max_failure_pct: row.try_get("max_failure_pct")?,
                    state: stored("wave state", row.try_get("state")?, WaveState::parse)?,
                    fired_at: row.try_get::<Option<i64>, _>("fired_at_ms")?.map(millis),
                })
            })
            .collect()
    }

    /// Moves a wave from state `from` to `to` (stamping the send time on `sending`); false if it was not in `from`.
    pub async fn wave_transition(
        &self,
        exec: &ExecId,
        wave: i64,
        from: WaveState,
        to: WaveState,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE execution_waves SET state = $1,
                fired_at_ms = CASE WHEN $1 = 'sending' THEN $2 ELSE fired_at_ms END
             WHERE exec_id = $3 AND wave = $4 AND state = $5",
        )
        .bind(to.as_str())
        .bind(now.timestamp_millis())
        .bind(exec.as_str())
        .bind(wave)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Per wave (0 without waves), how many of the execution's targets have a result of each status; `running`
    /// counts targets whose run began and has no result yet, `None` those with neither.
    pub async fn target_counts(&self, exec: &ExecId) -> Result<Vec<(i64, Option<String>, i64)>, DbError> {
        // The tallies the projectors keep with the targets' state (migration 20261201000005): a few rows.
        let rows = sqlx::query(
            "SELECT wave, state, n FROM execution_tallies WHERE exec_id = $1 AND n <> 0 ORDER BY wave, state",
        )
        .bind(exec.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                Ok((row.try_get("wave")?, (state != "pending").then_some(state), row.try_get("n")?))
            })
            .collect()
    }

    /// One page of the targets of `exec` with their state, by pc id. `recorded` says whether the engine recorded the execution:
    /// then its targets are the ones it stored; otherwise (`kanade run`, an external fire) they are the agents that
    /// reported a start or a result for it.
    pub async fn targets(
        &self,
        exec: &ExecId,
        recorded: bool,
        filter: &TargetFilter,
        scope: &GroupScope,
    ) -> Result<Paged<TargetRow, String>, DbError> {
        let source = if recorded {
            "SELECT pc_id, wave FROM execution_targets WHERE exec_id = $1"
        } else {
            "SELECT pc_id, CAST(NULL AS BIGINT) AS wave FROM results WHERE exec_id = $1
             UNION SELECT pc_id, CAST(NULL AS BIGINT) AS wave FROM runs_started WHERE exec_id = $1"
        };
        let mut condition = match filter.state.as_deref() {
            None => String::new(),
            Some("pending") => " AND r.status IS NULL AND s.pc_id IS NULL".to_owned(),
            Some("running") => " AND r.status IS NULL AND s.pc_id IS NOT NULL".to_owned(),
            Some(_) => " AND r.status = $2".to_owned(),
        };
        let by_status = filter.state.as_deref().filter(|s| !matches!(*s, "pending" | "running"));
        let mut next = if by_status.is_some() { 3 } else { 2 };
        if filter.after.is_some() {
            condition.push_str(&format!(" AND t.pc_id > ${next}"));
            next += 1;
        }
        let mut scoped = Vec::new();
        if let Some(groups) = scope.groups() {
            let (within, values) = pcs_in("t.pc_id", groups, next);
            condition.push_str(&format!(" AND {within}"));
            scoped = values;
        }
        let sql = format!(
            "SELECT t.pc_id AS pc_id, t.wave AS wave, r.status AS status, r.exit_code AS exit_code,
                r.started_at_ms AS result_started_ms, s.started_at_ms AS started_ms, r.finished_at_ms AS finished_ms,
                r.reason AS reason, h.state AS held_state, h.until_ms AS held_until_ms,
                h.deadline_ms AS held_deadline_ms, h.by_user AS held_by, h.deferrals AS held_deferrals,
                h.at_ms AS held_at_ms
             FROM ({source}) t
             LEFT JOIN results r ON r.exec_id = $1 AND r.pc_id = t.pc_id
             LEFT JOIN runs_started s ON s.exec_id = $1 AND s.pc_id = t.pc_id
             LEFT JOIN runs_held h ON h.exec_id = $1 AND h.pc_id = t.pc_id
             WHERE 1 = 1{condition}
             ORDER BY t.pc_id LIMIT {}",
            filter.limit + 1
        );
        let mut query = sqlx::query(&sql).bind(exec.as_str());
        if let Some(state) = by_status {
            query = query.bind(state.to_owned());
        }
        if let Some(after) = &filter.after {
            query = query.bind(after.as_str().to_owned());
        }
        for value in scoped {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let rows: Vec<TargetRow> = rows
            .iter()
            .map(|row| {
                let status: Option<String> = row.try_get("status")?;
                let started: Option<i64> = row.try_get("started_ms")?;
                let result_started: Option<i64> = row.try_get("result_started_ms")?;
                let state = match (&status, started) {
                    (Some(status), _) => status.clone(),
                    (None, Some(_)) => "running".to_owned(),
                    (None, None) => "pending".to_owned(),
                };
                // Shown only while the run has not begun: after that its start and result tell the story.
                let held_state: Option<String> = row.try_get("held_state")?;
                let held = match held_state {
                    Some(held_state) if state == "pending" => Some(kanade_shared::api::HeldView {
                        state: held_state,
                        until: millis(row.try_get("held_until_ms")?),
                        deadline: millis(row.try_get("held_deadline_ms")?),
                        by: row.try_get("held_by")?,
                        deferrals: row.try_get("held_deferrals")?,
                        at: millis(row.try_get("held_at_ms")?),
                    }),
                    _ => None,
                };
                Ok(TargetRow {
                    pc_id: row.try_get("pc_id")?,
                    wave: row.try_get("wave")?,
                    state,
                    // The result's own start time when there is one; else when the agent said it began.
                    started_at: result_started.or(started).map(millis),
                    finished_at: row.try_get::<Option<i64>, _>("finished_ms")?.map(millis),
                    exit_code: row.try_get("exit_code")?,
                    reason: row.try_get("reason")?,
                    held,
                })
            })
            .collect::<Result<_, DbError>>()?;
        Ok(Paged::of(rows, filter.limit, |t| t.pc_id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_decodes_or_is_an_error() {
        for status in ExecStatus::ALL {
            assert_eq!(stored("execution status", status.as_str().to_owned(), ExecStatus::parse).ok(), Some(status));
        }
        for state in WaveState::ALL {
            assert_eq!(stored("wave state", state.as_str().to_owned(), WaveState::parse).ok(), Some(state));
        }
        // `completed` and `cancelled` are what the API shows, never what is stored.
        for (what, raw) in [("execution status", "completed"), ("execution status", "Running")] {
            let err = stored(what, raw.to_owned(), ExecStatus::parse).expect_err(raw);
            assert_eq!(err.to_string(), format!("the database holds {what} `{raw}`, which this backend cannot read"));
        }
        assert!(stored("wave state", "cancelled".to_owned(), WaveState::parse).is_err());
        assert!(stored_exec_id("Not An Id".to_owned()).is_err());
    }

    /// An execution or wave in a state this backend does not know (a newer backend's, a hand edit) must stop the
    /// engine with an error, not be read as something else or panic.
    #[tokio::test]
    async fn an_unknown_status_in_the_database_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::connect(&super::super::default_url(dir.path())).await.expect("open sqlite");
        let exec = ExecId::generate();
        let job = JobId::new("patch").expect("job id");
        db.insert_execution(&NewExecution {
            exec_id: &exec,
            job_id: &job,
            version: "1.0",
            status: ExecStatus::Starting,
            targets_json: "{}".into(),
            command_json: "{}".into(),
            deadline_ms: None,
            ends_at: None,
            requested_by: "alice",
            now: Utc::now(),
            targets: vec![],
            waves: vec![NewWave { group: "canary".into(), delay_ms: 0, max_failure_pct: 100.0 }],
            fire: None,
        })
        .await
        .expect("insert");
        let row = db.get_execution(&exec).await.expect("readable").expect("stored");
        assert_eq!((row.exec_id.clone(), row.job_id.clone(), row.status), (exec.clone(), job, ExecStatus::Starting));
        assert_eq!(db.waves(&exec).await.expect("readable")[0].state, WaveState::Pending);

        sqlx::query("UPDATE executions SET status = 'paused'").execute(&db.pool).await.expect("edit");
        let err = db.get_execution(&exec).await.expect_err("unknown status");
        assert!(matches!(&err, DbError::Unreadable { value, .. } if value == "paused"), "{err}");
        assert!(db.executions_in(&[ExecStatus::Starting]).await.expect("nothing matches").is_empty());
        sqlx::query("UPDATE execution_waves SET state = 'paused'").execute(&db.pool).await.expect("edit");
        assert!(matches!(db.waves(&exec).await, Err(DbError::Unreadable { what: "wave state", .. })));
        db.close().await;
    }
}
