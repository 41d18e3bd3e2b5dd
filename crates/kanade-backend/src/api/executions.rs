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
use chrono::Utc;
use kanade_ops::catalogue::Catalogue;
use kanade_shared::access::GroupScope;
use kanade_shared::api::{
    DecisionBody, ErrorBody, ExecBody, ExecutionResultsQuery, ExecutionView, ExecutionsQuery, KillView, ManifestBody,
    NoBody, Page, PreviewView, PreviewWave, ResultQuery, ResultRow, TargetRow, TargetsQuery, WaveView,
};
use kanade_shared::manifest::{MAX_DEADLINE, MAX_SPREAD, StoredJob, Targets, Wave};
use kanade_shared::waves::{self, MAX_WAVES, WaveError, WaveSpec};
use kanade_shared::{ExecId, GroupName, JobId, PcId};

use super::jobs;
use super::results::parse_filter;
use super::{ApiError, ApiJson, ApiQuery, AppState, ErrorCode, OptionalJson, PathId, paging};
use crate::caller::Caller;
use crate::db::{ExecutionFilter, ExecutionRow, ResultFilter, StatusFilter, TargetFilter, WaveState};
use crate::engine::{ExecError, ExecRequest};
use crate::rollout::{self, ShownStatus, ShownWaveState, WaveCounts};

/// The most PCs one request may name; a larger fleet is addressed by group.
pub const MAX_TARGET_PCS: usize = 10_000;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidRequest, message)
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

/// What the engine is asked to fire, from a request's body.
fn request(body: &ExecBody) -> Result<ExecRequest, ApiError> {
    if body.pcs.len() > MAX_TARGET_PCS {
        return Err(invalid(format!("{} pcs named; the limit is {MAX_TARGET_PCS} (target a group)", body.pcs.len())));
    }
    let pcs = body
        .pcs
        .iter()
        .map(|p| PcId::new(p.clone()).map_err(|e| invalid(format!("pcs: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let groups = body
        .groups
        .iter()
        .map(|g| GroupName::new(g.clone()).map_err(|e| invalid(format!("groups: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if body.all && !(pcs.is_empty() && groups.is_empty()) {
        return Err(invalid("`all` cannot be combined with pcs or groups: it reaches every agent already"));
    }
    let waves = waves_of(body, &groups)?;
    let named = body.all || !pcs.is_empty() || !groups.is_empty() || waves.is_some();
    // Waves alone reach their own groups, as a manifest's rollout over exactly those groups would.
    let groups = match (&waves, groups.is_empty() && !body.all) {
        (Some(waves), true) => waves.iter().map(|w| w.group.clone()).collect(),
        _ => groups,
    };
    Ok(ExecRequest {
        targets: named.then_some(Targets { all: body.all, groups, pcs }),
        waves,
        jitter: duration("jitter", body.jitter.as_deref(), MAX_SPREAD)?,
        deadline: duration("deadline", body.deadline.as_deref(), MAX_DEADLINE)?,
    })
}

/// The request's own rollout, checked as a manifest's is.
fn waves_of(body: &ExecBody, groups: &[GroupName]) -> Result<Option<Vec<Wave>>, ApiError> {
    if body.waves.is_empty() {
        return Ok(None);
    }
    if body.waves.len() > MAX_WAVES {
        // The rule's own limit, checked before any wave is parsed, so an oversized body costs nothing more.
        return Err(invalid(WaveError::TooMany(body.waves.len()).to_string()));
    }
    if !body.pcs.is_empty() {
        return Err(invalid("waves reach groups: name groups (or all) with them, not pcs"));
    }
    let mut specs = Vec::with_capacity(body.waves.len());
    for (index, wave) in body.waves.iter().enumerate() {
        let field = format!("waves[{index}]");
        let group = GroupName::new(wave.group.clone()).map_err(|e| invalid(format!("{field}.group: {e}")))?;
        // Parsed here (the body carries text); how long a delay may be is the rule's.
        let delay = duration(&format!("{field}.delay"), wave.delay.as_deref(), Duration::MAX)?;
        specs.push(WaveSpec { group, delay, max_failure_pct: wave.max_failure_pct });
    }
    let within = (!body.all && !groups.is_empty()).then_some(groups);
    let waves = waves::check(specs, within).map_err(|err| {
        let field = format!("waves{}", err.field());
        match err {
            WaveError::NotTargeted { group, .. } => {
                invalid(format!("{field}: group `{group}` is not among the groups named"))
            }
            other => invalid(format!("{field}: {other}")),
        }
    })?;
    Ok(Some(waves))
}

pub fn exec_error(err: ExecError) -> ApiError {
    match err {
        ExecError::JobNotFound(_) => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::JobNotFound, err.to_string()),
        ExecError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ExecutionNotFound, err.to_string()),
        ExecError::Revoked(_) => ApiError::new(StatusCode::CONFLICT, ErrorCode::JobRevoked, err.to_string()),
        ExecError::NotPending { .. } => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::NotPendingApproval, err.to_string())
        }
        ExecError::SelfApproval { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, ErrorCode::SelfApproval, err.to_string())
        }
        ExecError::Invalid(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::CannotExec, err.to_string())
        }
        ExecError::TargetsRequired(_) => ApiError::bad_request(ErrorCode::TargetsRequired, err.to_string()),
        ExecError::OutOfScope(_) => ApiError::new(StatusCode::FORBIDDEN, ErrorCode::OutOfScope, err.to_string()),
        ExecError::Ops(err) => super::ops_error(err),
        ExecError::Db(err) => ApiError::from(err),
    }
}

/// The job as the catalogue holds it now.
async fn catalogued(state: &AppState, job: &JobId) -> Result<StoredJob, ApiError> {
    let catalogue = Catalogue::open(&state.nats).await.map_err(super::ops_error)?;
    let stored = catalogue.get(job).await.map_err(super::ops_error)?;
    stored.ok_or_else(|| exec_error(ExecError::JobNotFound(job.clone())))
}

async fn fire(state: &AppState, job: StoredJob, request: ExecRequest, caller: &Caller) -> Result<Response, ApiError> {
    let exec = state.engine.exec(job, request, caller).await.map_err(exec_error)?;
    let view = view_of(state, &exec).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(post, path = "/api/exec/{job_id}", tag = "executions", operation_id = "executions_exec", params(("job_id" = String, Path, description = "the job id")), request_body(content = Option<ExecBody>), responses((status = 201, body = ExecutionView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn exec(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(job): PathId<JobId>,
    OptionalJson(body): OptionalJson<ExecBody>,
) -> Result<Response, ApiError> {
    let request = request(&body)?;
    fire(&state, catalogued(&state, &job).await?, request, &caller).await
}

/// How many pc ids a preview lists; the count covers them all.
pub const PREVIEW_PCS: usize = 200;

#[utoipa::path(post, path = "/api/jobs/{job_id}/preview", tag = "executions", operation_id = "executions_preview", params(("job_id" = String, Path, description = "the job id")), request_body(content = Option<ExecBody>), responses((status = 200, body = PreviewView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn preview(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(job): PathId<JobId>,
    OptionalJson(body): OptionalJson<ExecBody>,
) -> Result<Json<PreviewView>, ApiError> {
    let request = request(&body)?;
    // The plan a fire makes, so a fire refuses exactly what the preview refused (`out_of_scope` included).
    let plan = state.engine.plan(catalogued(&state, &job).await?, &request, &caller.scope).await.map_err(exec_error)?;
    plan.check_targets().map_err(exec_error)?;
    let now = Utc::now();
    let online_now: std::collections::HashSet<&str> = plan
        .agents
        .iter()
        .filter(|a| super::agents::is_online(a.last_seen, now, state.offline_after))
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

/// `POST /api/deploy`: store the manifest, then fire it at its own targets with its rollout. A manifest without a
/// target is refused (`targets_required`) and not stored: create it and fire it at named targets instead.
#[utoipa::path(post, path = "/api/deploy", tag = "executions", operation_id = "executions_deploy", request_body = ManifestBody, responses((status = 201, body = ExecutionView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn deploy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<ManifestBody>,
) -> Result<Response, ApiError> {
    // Refused before anything is stored: a deploy either stores and fires, or does neither.
    let job = jobs::check(&body)?;
    if job.targets.is_none() {
        return Err(exec_error(ExecError::TargetsRequired(job.id)));
    }
    // The fire's own scope check, before anything is stored.
    let (targets, waves) = crate::engine::fired_at(&job, &ExecRequest::default()).map_err(exec_error)?;
    state.engine.check_scope(&caller.scope, &targets, waves.iter().map(|w| &w.group)).await.map_err(exec_error)?;
    // The engine fires exactly what was stored, not what the catalogue holds a moment later.
    let stored = jobs::store(&state, &caller, &body).await?;
    fire(&state, stored.job, ExecRequest::default(), &caller).await
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
    let pending = total.pending_given_running(by_status.get("running").copied().unwrap_or(0));
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
    let first = state
        .db
        .list_results(&ResultFilter { exec_id: Some(exec.clone()), limit: 1, ..Default::default() }, &GroupScope::Fleet)
        .await?
        .items;
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
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ExecutionNotFound, format!("no execution `{exec}`"))
}

/// An execution the caller's scope does not show answers as one that does not exist.
async fn shown(state: &AppState, caller: &Caller, exec: &ExecId) -> Result<(), ApiError> {
    if state.db.execution_in_scope(exec, &caller.scope).await? { Ok(()) } else { Err(not_found(exec)) }
}

/// Whether the caller's scope covers what `exec` reaches, for an action on it (approve, reject, kill): the
/// execution's targets and waves as recorded, checked as a fire is; for one the engine did not record, the PCs that
/// reported it. One the scope does not show at all is not found.
async fn covered(state: &AppState, caller: &Caller, exec: &ExecId) -> Result<(), ApiError> {
    if caller.scope.is_fleet() {
        return Ok(());
    }
    shown(state, caller, exec).await?;
    let Some(row) = state.db.get_execution(exec).await? else {
        let outside = state.db.reported_outside(exec, &caller.scope, 1_000).await?;
        let pcs: Vec<PcId> = outside.into_iter().filter_map(|pc| PcId::new(pc).ok()).collect();
        let reached = Targets { all: false, groups: Vec::new(), pcs };
        // Every PC named here is outside the scope already; the one check words the refusal.
        return state.engine.check_scope(&caller.scope, &reached, []).await.map_err(exec_error);
    };
    let targets: Targets = serde_json::from_value(row.targets.clone())
        .map_err(|err| exec_error(ExecError::Invalid(format!("execution `{exec}` has unreadable targets: {err}"))))?;
    let waves = state.db.waves(exec).await?;
    state.engine.check_scope(&caller.scope, &targets, waves.iter().map(|w| &w.group)).await.map_err(exec_error)
}

#[utoipa::path(get, path = "/api/executions/{exec_id}", tag = "executions", operation_id = "executions_get", params(("exec_id" = String, Path, description = "the execution id")), responses((status = 200, body = ExecutionView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(exec): PathId<ExecId>,
) -> Result<Json<ExecutionView>, ApiError> {
    shown(&state, &caller, &exec).await?;
    Ok(Json(view_of(&state, &exec).await?))
}

#[utoipa::path(get, path = "/api/executions", tag = "executions", operation_id = "executions_list", params(ExecutionsQuery), responses((status = 200, description = "one page, newest first: by created_at, then exec_id", body = Page<ExecutionView>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExecutionsQuery>,
) -> Result<Json<Page<ExecutionView>>, ApiError> {
    let bad = |m: String| ApiError::bad_request(ErrorCode::InvalidQuery, m);
    let limit = paging::limit(query.limit)?;
    let before = paging::before_time_id(paging::EXECUTIONS, query.cursor.as_deref(), ExecId::new)?;
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
    let filter = ExecutionFilter { job_id, status, before, limit };
    let page = state.db.list_executions_within(&filter, &caller.scope).await?;
    let mut views = Vec::with_capacity(page.items.len());
    for row in page.items {
        views.push(build(&state, row).await?);
    }
    Ok(Json(Page { items: views, next: paging::next_time_id(paging::EXECUTIONS, page.next) }))
}

#[utoipa::path(get, path = "/api/executions/{exec_id}/results", tag = "executions", operation_id = "executions_results", params(("exec_id" = String, Path, description = "the execution id"), ExecutionResultsQuery), responses((status = 200, description = "one page, newest first", body = Page<ResultRow>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn results(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(exec): PathId<ExecId>,
    ApiQuery(query): ApiQuery<ExecutionResultsQuery>,
) -> Result<Json<Page<ResultRow>>, ApiError> {
    let filter = parse_filter(ResultQuery {
        pc_id: None,
        exec_id: Some(exec.to_string()),
        job_id: None,
        status: query.status,
        limit: query.limit,
        cursor: query.cursor,
    })?;
    shown(&state, &caller, &exec).await?;
    Ok(Json(super::results::page(state.db.list_results(&filter, &caller.scope).await?)))
}

#[utoipa::path(post, path = "/api/executions/{exec_id}/approve", tag = "executions", operation_id = "executions_approve", params(("exec_id" = String, Path, description = "the execution id")), responses((status = 200, body = ExecutionView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn approve(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(exec): PathId<ExecId>,
) -> Result<Json<ExecutionView>, ApiError> {
    covered(&state, &caller, &exec).await?;
    state.engine.approve(&exec, &caller).await.map_err(exec_error)?;
    Ok(Json(view_of(&state, &exec).await?))
}

#[utoipa::path(post, path = "/api/executions/{exec_id}/reject", tag = "executions", operation_id = "executions_reject", params(("exec_id" = String, Path, description = "the execution id")), request_body(content = Option<DecisionBody>), responses((status = 200, body = ExecutionView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn reject(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(exec): PathId<ExecId>,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> Result<Json<ExecutionView>, ApiError> {
    let reason = body.reason.map(|r| r.chars().take(500).collect::<String>());
    covered(&state, &caller, &exec).await?;
    state.engine.reject(&exec, &caller, reason.as_deref()).await.map_err(exec_error)?;
    Ok(Json(view_of(&state, &exec).await?))
}

/// `GET /api/executions/{id}/targets`: one page of the targets and where each one's run is, by pc id. For an execution the backend
/// did not record (`external`), the targets are the agents that reported a start or a result.
#[utoipa::path(get, path = "/api/executions/{exec_id}/targets", tag = "executions", operation_id = "executions_targets", params(("exec_id" = String, Path, description = "the execution id"), TargetsQuery), responses((status = 200, description = "one page, by pc_id", body = Page<TargetRow>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn targets(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(exec): PathId<ExecId>,
    ApiQuery(query): ApiQuery<TargetsQuery>,
) -> Result<Json<Page<TargetRow>>, ApiError> {
    let bad = |m: String| ApiError::bad_request(ErrorCode::InvalidQuery, m);
    let limit = paging::limit(query.limit)?;
    let after = paging::after_id(paging::TARGETS, query.cursor.as_deref(), PcId::new)?;
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
    shown(&state, &caller, &exec).await?;
    let filter = TargetFilter { state: wanted, after, limit };
    let page = state.db.targets(&exec, recorded, &filter, &caller.scope).await?;
    Ok(Json(Page { items: page.items, next: paging::next_id(paging::TARGETS, page.next) }))
}

/// How long a kill collects the agents' confirmations, as `kanade kill` does by default.
pub const KILL_WAIT: Duration = Duration::from_secs(2);

#[utoipa::path(post, path = "/api/executions/{exec_id}/kill", tag = "executions", operation_id = "executions_kill", params(("exec_id" = String, Path, description = "the execution id")), request_body(content = Option<NoBody>), responses((status = 200, body = KillView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn kill(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(exec): PathId<ExecId>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<Json<KillView>, ApiError> {
    // A kill reaches whichever agent runs the execution; a scoped caller may kill only what its scope covers.
    covered(&state, &caller, &exec).await?;
    let killed = kanade_ops::actions::kill(
        &caller.auditor(&state.nats),
        state.engine.signer().map_err(super::ops_error)?,
        &exec,
        KILL_WAIT,
    )
    .await
    .map_err(super::ops_error)?;
    Ok(Json(KillView { exec_id: exec.to_string(), killed }))
}
