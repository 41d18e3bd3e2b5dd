//! Firing jobs and following them: `POST /api/exec/{job}`, `POST /api/jobs/{job}/preview`, `POST /api/deploy`,
//! `GET /api/executions[/{id}]`, `GET /api/executions/{id}/results|targets`,
//! `POST /api/executions/{id}/approve|reject|kill`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use kanade_shared::manifest::{MAX_DEADLINE, MAX_SPREAD, Targets, Wave};
use kanade_shared::{ExecId, GroupName, JobId, PcId};
use serde::{Deserialize, Serialize};

use super::jobs::{self, ManifestBody};
use super::{
    ApiError, ApiJson, ApiQuery, AppState, Caller, DEFAULT_RESULT_LIMIT, MAX_RESULT_LIMIT, NoBody, OptionalJson, PathId,
};
use crate::db::{
    ExecutionFilter, ExecutionRow, ResultFilter, ResultRow, StatusFilter, TargetFilter, TargetRow, WaveState,
};
use crate::engine::{ExecError, ExecRequest};
use crate::rollout::{self, ShownStatus, ShownWaveState, WaveCounts};

/// The most PCs one request may name; a larger fleet is addressed by group.
pub const MAX_TARGET_PCS: usize = 10_000;

/// The most waves one request may give.
pub const MAX_WAVES: usize = 50;

/// `POST /api/exec/{job}`: targets default to the job's own (with its rollout); naming any fires them all at once,
/// unless `waves` gives a rollout of its own (over the groups named, or over the waves' groups when none are).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    #[serde(default)]
    pub waves: Vec<WaveBody>,
    #[serde(default)]
    pub pcs: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub all: bool,
    /// A duration: `5m`.
    pub jitter: Option<String>,
    /// A duration after sending: `24h`.
    pub deadline: Option<String>,
}

/// One wave of a request's own rollout, with a manifest's wave fields and defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveBody {
    pub group: String,
    /// How long after the previous wave this one is sent: `1h` (default: at once).
    pub delay: Option<String>,
    /// Halt the rollout when more than this percentage of the wave's targets fail (default 100: never).
    pub max_failure_pct: Option<f64>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

fn duration(field: &str, raw: Option<&str>, max: Duration) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(None) };
    let shown: String = raw.chars().take(40).collect();
    let value =
        humantime::parse_duration(raw).map_err(|e| invalid(format!("{field}: `{shown}` is not a duration: {e}")))?;
    if value > max {
        return Err(invalid(format!("{field}: `{shown}` is longer than {}", humantime::format_duration(max))));
    }
    Ok(Some(value))
}

impl ExecBody {
    fn request(&self) -> Result<ExecRequest, ApiError> {
        if self.pcs.len() > MAX_TARGET_PCS {
            return Err(invalid(format!(
                "{} pcs named; the limit is {MAX_TARGET_PCS} (target a group)",
                self.pcs.len()
            )));
        }
        let pcs = self
            .pcs
            .iter()
            .map(|p| PcId::new(p.clone()).map_err(|e| invalid(format!("pcs: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let groups = self
            .groups
            .iter()
            .map(|g| GroupName::new(g.clone()).map_err(|e| invalid(format!("groups: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let waves = self.waves(&groups)?;
        let named = self.all || !pcs.is_empty() || !groups.is_empty() || waves.is_some();
        // Waves alone reach their own groups, as a manifest's rollout over exactly those groups would.
        let groups = match (&waves, groups.is_empty() && !self.all) {
            (Some(waves), true) => waves.iter().map(|w| w.group.clone()).collect(),
            _ => groups,
        };
        Ok(ExecRequest {
            targets: named.then_some(Targets { all: self.all, groups, pcs }),
            waves,
            jitter: duration("jitter", self.jitter.as_deref(), MAX_SPREAD)?,
            deadline: duration("deadline", self.deadline.as_deref(), MAX_DEADLINE)?,
        })
    }
}

impl ExecBody {
    /// The request's own rollout, checked as a manifest's is.
    fn waves(&self, groups: &[GroupName]) -> Result<Option<Vec<Wave>>, ApiError> {
        if self.waves.is_empty() {
            return Ok(None);
        }
        if self.waves.len() > MAX_WAVES {
            return Err(invalid(format!("{} waves given; the limit is {MAX_WAVES}", self.waves.len())));
        }
        if !self.pcs.is_empty() {
            return Err(invalid("waves reach groups: name groups (or all) with them, not pcs"));
        }
        let mut waves: Vec<Wave> = Vec::with_capacity(self.waves.len());
        for (index, wave) in self.waves.iter().enumerate() {
            let field = format!("waves[{index}]");
            let group = GroupName::new(wave.group.clone()).map_err(|e| invalid(format!("{field}.group: {e}")))?;
            if waves.iter().any(|w| w.group == group) {
                return Err(invalid(format!("{field}: group `{group}` has a wave already")));
            }
            if !self.all && !groups.is_empty() && !groups.contains(&group) {
                return Err(invalid(format!("{field}: group `{group}` is not among the groups named")));
            }
            let delay = duration(&format!("{field}.delay"), wave.delay.as_deref(), MAX_SPREAD)?.unwrap_or_default();
            let max_failure_pct = wave.max_failure_pct.unwrap_or(100.0);
            if !(0.0..=100.0).contains(&max_failure_pct) {
                return Err(invalid(format!("{field}.max_failure_pct: must be between 0 and 100")));
            }
            waves.push(Wave { group, delay, max_failure_pct });
        }
        Ok(Some(waves))
    }
}

pub fn exec_error(err: ExecError) -> ApiError {
    match err {
        ExecError::JobNotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "job_not_found", err.to_string()),
        ExecError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "execution_not_found", err.to_string()),
        ExecError::Revoked(_) => ApiError::new(StatusCode::CONFLICT, "job_revoked", err.to_string()),
        ExecError::NotPending { .. } => ApiError::new(StatusCode::CONFLICT, "not_pending_approval", err.to_string()),
        ExecError::SelfApproval { .. } => ApiError::new(StatusCode::FORBIDDEN, "self_approval", err.to_string()),
        ExecError::Invalid(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_exec", err.to_string()),
        ExecError::Ops(err) => super::ops_error(err),
        ExecError::Db(err) => ApiError::from(err),
    }
}

async fn fire(state: &AppState, job: &JobId, request: ExecRequest, caller: &Caller) -> Result<Response, ApiError> {
    let exec = state.engine.exec(job, request, caller).await.map_err(exec_error)?;
    let view = view_of(state, &exec).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn exec(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(job): PathId<JobId>,
    OptionalJson(body): OptionalJson<ExecBody>,
) -> Result<Response, ApiError> {
    fire(&state, &job, body.request()?, &caller).await
}

/// How many pc ids a preview lists; the count covers them all.
pub const PREVIEW_PCS: usize = 200;

/// `POST /api/jobs/{job}/preview`: what `POST /api/exec/{job}` with the same body would fire at, worked out by the
/// same code at this moment; nothing is sent or stored.
#[derive(Debug, Serialize)]
pub struct PreviewView {
    pub job_id: String,
    pub version: String,
    pub require_approval: bool,
    /// A revoked job cannot be fired until it is unrevoked.
    pub revoked: bool,
    /// Known agents the targets match: the `target_count` a fire right now would report.
    pub target_count: usize,
    /// How many of those are online now.
    pub online: usize,
    /// Per rollout wave, how many of the targets it reaches first; empty without a rollout.
    pub waves: Vec<PreviewWave>,
    /// The first [`PREVIEW_PCS`] targets, sorted.
    pub pcs: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PreviewWave {
    pub wave: i64,
    pub group: String,
    pub targets: usize,
}

pub async fn preview(
    State(state): State<Arc<AppState>>,
    PathId(job): PathId<JobId>,
    OptionalJson(body): OptionalJson<ExecBody>,
) -> Result<Json<PreviewView>, ApiError> {
    let request = body.request()?;
    let catalogue = kanade_ops::catalogue::Catalogue::open(&state.nats).await.map_err(super::ops_error)?;
    let plan = state.engine.plan(&catalogue, &job, &request).await.map_err(exec_error)?;
    plan.check_targets().map_err(exec_error)?;
    let now = Utc::now();
    let online_now: std::collections::HashSet<&str> = plan
        .agents
        .iter()
        .filter(|a| super::is_online(a.last_seen, now, state.offline_after))
        .map(|a| a.pc_id.as_str())
        .collect();
    let mut pcs: Vec<&str> = plan.reached.iter().map(|(pc, _)| pc.as_str()).collect();
    pcs.sort_unstable();
    let waves = plan
        .waves
        .iter()
        .zip(1..)
        .map(|(w, wave)| PreviewWave {
            wave,
            group: w.group.to_string(),
            targets: plan.reached.iter().filter(|(_, reached_in)| *reached_in == wave).count(),
        })
        .collect();
    Ok(Json(PreviewView {
        job_id: job.to_string(),
        version: plan.stored.job.version.to_string(),
        require_approval: plan.stored.job.require_approval,
        revoked: plan.revoked,
        target_count: plan.reached.len(),
        online: pcs.iter().filter(|pc| online_now.contains(**pc)).count(),
        waves,
        pcs: pcs.iter().take(PREVIEW_PCS).map(|pc| (*pc).to_owned()).collect(),
    }))
}

/// `POST /api/deploy`: store the manifest, then fire it at its own targets with its rollout.
pub async fn deploy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<ManifestBody>,
) -> Result<Response, ApiError> {
    let stored = jobs::store(&state, &caller, &body).await?;
    fire(&state, &stored.job.job.id, ExecRequest::default(), &caller).await
}

/// An execution as the API shows it: what was fired, its state, and its progress overall and per wave.
#[derive(Debug, Serialize)]
pub struct ExecutionView {
    pub exec_id: String,
    pub job_id: String,
    pub version: String,
    /// `pending_approval`, `rejected`, `starting`, `rolling_out`, `running`, `completed` (every target answered),
    /// `halted`, `superseded`; `external` for a run fired straight over NATS (`kanade run`).
    pub status: String,
    /// Whether nothing the backend sends or waits for is left: `completed`, `halted`, `rejected`, `superseded` or
    /// `external` (`rollout::ShownStatus::settled`). Runs a halted or superseded rollout already sent may still be
    /// going (`by_status.running`). Clients stop following an execution when this is true rather than deciding
    /// from `status` themselves.
    pub settled: bool,
    pub status_reason: Option<String>,
    pub targets: serde_json::Value,
    /// Known agents the targets matched when it was created.
    pub target_count: i64,
    /// Results received (from targets, and from agents that joined a targeted group later).
    pub results: i64,
    /// Targets whose run has neither begun nor reported a result.
    pub pending: i64,
    /// Results per status, and `running`: runs that began and have no result yet.
    pub by_status: BTreeMap<String, i64>,
    pub requested_by: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub waves: Vec<WaveView>,
}

#[derive(Debug, Serialize)]
pub struct WaveView {
    pub wave: i64,
    pub group: String,
    pub delay_ms: i64,
    pub max_failure_pct: f64,
    /// `pending`, `sending`, `sent`, or `cancelled` when the rollout stopped before it.
    pub state: String,
    pub sent_at: Option<DateTime<Utc>>,
    /// When a pending wave will be sent.
    pub due_at: Option<DateTime<Utc>>,
    pub targets: i64,
    pub by_status: BTreeMap<String, i64>,
    pub failure_pct: f64,
}

async fn build(state: &AppState, row: ExecutionRow) -> Result<ExecutionView, ApiError> {
    let exec = &row.exec_id;
    let counts = WaveCounts::from_rows(state.db.target_counts(exec).await?);
    let total = counts.total();
    // Read after the targets: a result that lands in between is then counted in `by_status` rather than missed,
    // and `completed` (from the targets) never shows before its last result does. `running` counts targets only,
    // like `completed`: an agent that joined a targeted group after the fire may run it too, and its result is
    // shown, but it is not waited for.
    let (by_status, results) = status_counts(state, exec, true).await?;
    let pending = total.pending();
    let stopped = rollout::stopped(row.status);
    let waves_rows = state.db.waves(exec).await?;
    let next_pending = waves_rows.iter().find(|w| w.state == WaveState::Pending).map(|w| w.wave);
    let waves = waves_rows
        .iter()
        .map(|w| {
            let tally = counts.wave(w.wave);
            WaveView {
                wave: w.wave,
                group: w.group.to_string(),
                delay_ms: w.delay_ms,
                max_failure_pct: w.max_failure_pct,
                state: ShownWaveState::of(row.status, w.state).as_str().to_owned(),
                sent_at: w.fired_at,
                due_at: (!stopped && Some(w.wave) == next_pending)
                    .then(|| rollout::due_at(row.started_at, &waves_rows, w))
                    .flatten(),
                failure_pct: tally.failure_pct(),
                targets: tally.targets,
                by_status: tally.by_status.into_iter().filter(|(s, _)| s != "pending").collect(),
            }
        })
        .collect();
    let status = ShownStatus::of(Some(row.status), total.unanswered());
    Ok(ExecutionView {
        exec_id: row.exec_id.to_string(),
        job_id: row.job_id.to_string(),
        version: row.version,
        status: status.as_str().to_owned(),
        settled: status.settled(),
        status_reason: row.status_reason,
        targets: row.targets,
        target_count: row.target_count,
        results,
        pending,
        by_status,
        requested_by: Some(row.requested_by),
        decided_by: row.decided_by,
        decided_at: row.decided_at,
        created_at: Some(row.created_at),
        started_at: row.started_at,
        waves,
    })
}

/// Results per status plus `running` (begun, no result yet), and how many results there are.
async fn status_counts(
    state: &AppState,
    exec: &ExecId,
    targets_only: bool,
) -> Result<(BTreeMap<String, i64>, i64), ApiError> {
    let mut by_status: BTreeMap<String, i64> = state.db.exec_status_counts(exec).await?.into_iter().collect();
    let results = by_status.values().sum();
    // After the results: a run whose result lands in between is then missed for one look, never counted twice.
    let running = state.db.exec_running_count(exec, targets_only).await?;
    if running > 0 {
        by_status.insert("running".into(), running);
    }
    Ok((by_status, results))
}

async fn view_of(state: &AppState, exec: &ExecId) -> Result<ExecutionView, ApiError> {
    if let Some(row) = state.db.get_execution(exec).await? {
        return build(state, row).await;
    }
    // Fired straight over NATS (`kanade run`, scripts): the runs that began and the results are all there is.
    let (by_status, results) = status_counts(state, exec, false).await?;
    if by_status.is_empty() {
        return Err(not_found(exec));
    }
    let first =
        state.db.list_results(&ResultFilter { exec_id: Some(exec.clone()), limit: 1, ..Default::default() }).await?;
    let job_id = match first.first() {
        Some(result) => result.job_id.clone(),
        None => state.db.started_job(exec).await?.unwrap_or_default(),
    };
    Ok(ExecutionView {
        exec_id: exec.to_string(),
        job_id,
        version: first.first().map(|r| r.version.clone()).unwrap_or_default(),
        status: ShownStatus::External.as_str().to_owned(),
        settled: ShownStatus::External.settled(),
        status_reason: None,
        targets: serde_json::Value::Null,
        target_count: by_status.values().sum(),
        results,
        pending: 0,
        by_status,
        requested_by: None,
        decided_by: None,
        decided_at: None,
        created_at: None,
        started_at: None,
        waves: Vec::new(),
    })
}

fn not_found(exec: &ExecId) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "execution_not_found", format!("no execution `{exec}`"))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    PathId(exec): PathId<ExecId>,
) -> Result<Json<ExecutionView>, ApiError> {
    Ok(Json(view_of(&state, &exec).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    job_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<ExecutionView>>, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_query", m);
    let limit = query.limit.unwrap_or(DEFAULT_RESULT_LIMIT);
    if !(1..=MAX_RESULT_LIMIT).contains(&limit) {
        return Err(bad(format!("limit must be between 1 and {MAX_RESULT_LIMIT}")));
    }
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(StatusFilter::parse(raw).ok_or_else(|| {
            bad(format!(
                "status `{}` is not one of pending_approval, rejected, starting, rolling_out, running, completed, \
                 halted, superseded",
                raw.chars().take(40).collect::<String>()
            ))
        })?),
    };
    let job_id = query.job_id.filter(|j| !j.is_empty()).map(JobId::new).transpose().map_err(|e| bad(e.to_string()))?;
    let rows = state.db.list_executions(&ExecutionFilter { job_id, status, limit }).await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        views.push(build(&state, row).await?);
    }
    Ok(Json(views))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsQuery {
    status: Option<String>,
    limit: Option<u32>,
}

pub async fn results(
    State(state): State<Arc<AppState>>,
    PathId(exec): PathId<ExecId>,
    ApiQuery(query): ApiQuery<ResultsQuery>,
) -> Result<Json<Vec<ResultRow>>, ApiError> {
    let filter = super::parse_filter(super::ResultQuery {
        pc_id: None,
        exec_id: Some(exec.to_string()),
        job_id: None,
        status: query.status,
        limit: query.limit,
    })?;
    Ok(Json(state.db.list_results(&filter).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub reason: Option<String>,
}

pub async fn approve(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(exec): PathId<ExecId>,
) -> Result<Json<ExecutionView>, ApiError> {
    state.engine.approve(&exec, &caller).await.map_err(exec_error)?;
    Ok(Json(view_of(&state, &exec).await?))
}

pub async fn reject(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(exec): PathId<ExecId>,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> Result<Json<ExecutionView>, ApiError> {
    let reason = body.reason.map(|r| r.chars().take(500).collect::<String>());
    state.engine.reject(&exec, &caller, reason.as_deref()).await.map_err(exec_error)?;
    Ok(Json(view_of(&state, &exec).await?))
}

/// The default and the largest `limit` of `GET /api/executions/{id}/targets`.
pub const DEFAULT_TARGET_LIMIT: u32 = 1000;
pub const MAX_TARGET_LIMIT: u32 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsQuery {
    /// `pending`, `running`, or a result status.
    status: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/executions/{id}/targets`: every target and where its run is, by pc id. For an execution the backend
/// did not record (`external`), the targets are the agents that reported a start or a result.
pub async fn targets(
    State(state): State<Arc<AppState>>,
    PathId(exec): PathId<ExecId>,
    ApiQuery(query): ApiQuery<TargetsQuery>,
) -> Result<Json<Vec<TargetRow>>, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_query", m);
    let limit = query.limit.unwrap_or(DEFAULT_TARGET_LIMIT);
    if !(1..=MAX_TARGET_LIMIT).contains(&limit) {
        return Err(bad(format!("limit must be between 1 and {MAX_TARGET_LIMIT}")));
    }
    let wanted = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw @ ("pending" | "running")) => Some(raw.to_owned()),
        Some(raw) => {
            Some(kanade_shared::wire::ResultStatus::parse(raw).map(|status| status.as_str().to_owned()).ok_or_else(
                || {
                    bad(format!(
                        "status `{}` is not one of pending, running, ok, failed, timeout, killed, skipped",
                        raw.chars().take(40).collect::<String>()
                    ))
                },
            )?)
        }
    };
    let recorded = state.db.get_execution(&exec).await?.is_some();
    if !recorded && status_counts(&state, &exec, false).await?.0.is_empty() {
        return Err(not_found(&exec));
    }
    Ok(Json(state.db.targets(&exec, recorded, &TargetFilter { state: wanted, limit }).await?))
}

/// `POST /api/executions/{id}/kill`: what `kanade kill <exec_id>` does, audited the same way.
#[derive(Debug, Serialize)]
pub struct KillView {
    pub exec_id: String,
    /// The agents that had a running or queued run of it, as they confirmed within the wait.
    pub killed: Vec<kanade_shared::wire::KillAck>,
}

/// How long a kill collects the agents' confirmations, as `kanade kill` does by default.
pub const KILL_WAIT: Duration = Duration::from_secs(2);

pub async fn kill(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(exec): PathId<ExecId>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<Json<KillView>, ApiError> {
    let killed = kanade_ops::control::kill(&state.nats, &exec, KILL_WAIT).await.map_err(super::ops_error)?;
    let on: Vec<String> = killed.iter().map(|ack| ack.pc_id.to_string()).collect();
    state.audit(&caller.actor, "kill", exec.as_str(), serde_json::json!({ "killed_on": on })).await;
    Ok(Json(KillView { exec_id: exec.to_string(), killed }))
}
