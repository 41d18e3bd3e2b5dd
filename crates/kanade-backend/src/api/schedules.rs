//! `GET|POST /api/schedules`, `GET|DELETE /api/schedules/{id}`, `POST /api/schedules/{id}/pause|resume|run-now`:
//! the schedules in KV `schedules`, checked as `kanade schedule create` checks them, each shown with its next
//! occurrences and its recent fires (from SQL, where the leader records them). Every change is audited.
//!
//! A schedule fires with the group scope of whoever created or last changed it (kept in SQL, `schedule_scopes`),
//! checked again at every fire; a caller scoped to groups may create only what its scope covers, and change, pause,
//! resume, delete or run now only a schedule whose targets its scope covers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SubsecRound, Utc};
use kanade_ops::catalogue::Catalogue;
use kanade_ops::schedules::ScheduleStore;
use kanade_shared::api::{
    ErrorBody, FireView, ManifestBody, NoBody, RunNowView, ScheduleBody, ScheduleStoredView, ScheduleView,
};
use kanade_shared::manifest::{ScriptSource, StoredJob};
use kanade_shared::schedule::{self, CheckedSchedule, ScheduleId, StoredSchedule, Timing, When};

use super::executions::exec_error;
use super::extract::PathIdKind;
use super::{ApiError, ApiJson, AppState, ErrorCode, OptionalJson, PathId, ops_error};
use crate::caller::Caller;
use crate::db::{ExecStatus, FireRow, NewFire};
use crate::engine::{self, Origin};
use crate::live::Topic;
use crate::rollout::ShownStatus;
use crate::scheduler::{self, Outcome};

/// The largest schedule file accepted: room for an inline job with a script at the script limit, while the stored
/// record (the file as written, and the checked schedule) stays under the broker's message limit.
pub const MAX_SCHEDULE_TEXT: usize = kanade_shared::wire::MAX_SCRIPT_BYTES + 128 * 1024;
/// Decisions shown with one schedule.
const FIRES_SHOWN: u32 = 50;
/// Occurrences shown ahead.
const NEXT_SHOWN: usize = 5;

impl PathIdKind for ScheduleId {
    const CODE: ErrorCode = ErrorCode::InvalidScheduleId;
    fn parse(raw: String) -> Result<Self, kanade_shared::IdError> {
        ScheduleId::new(raw)
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidSchedule, message)
}

fn not_found(id: &ScheduleId) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ScheduleNotFound, format!("no schedule `{id}`"))
}

/// Checks a schedule body: the file, its inline job (with an uploaded `script_file`), and that firing its job as
/// it says would be accepted (the job exists, has or is given targets, and its waves fit them). Returns the
/// checked schedule and the job it fires (the inline one, as it would be stored; else the catalogue's).
async fn check(
    state: &AppState,
    caller: &Caller,
    body: &ScheduleBody,
) -> Result<(CheckedSchedule, JobSource), ApiError> {
    if body.schedule.len() > MAX_SCHEDULE_TEXT {
        return Err(invalid(format!(
            "the schedule is {} bytes; the limit is {MAX_SCHEDULE_TEXT}",
            body.schedule.len()
        )));
    }
    let mut checked = CheckedSchedule::from_yaml(&body.schedule).map_err(|err| invalid(err.to_string()))?;
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    let source = match checked.inline_job.take() {
        Some(mut job) => {
            if let ScriptSource::File { path } = &job.source {
                // The same check and upload rule as `POST /api/jobs`.
                let manifest = ManifestBody { manifest: String::new(), files: body.files.clone(), version: None };
                let name = path.to_string_lossy().into_owned();
                let script = manifest.files.get(&name).ok_or_else(|| {
                    invalid(format!(
                        "job.execute.script_file: `{name}` was not sent with the schedule (put its text in `files`)"
                    ))
                })?;
                if script.len() > kanade_shared::wire::MAX_SCRIPT_BYTES {
                    return Err(invalid(format!("job.execute.script_file: `{name}` is too large")));
                }
                job.source = ScriptSource::Inline { script: script.clone() };
            }
            let manifest = format!(
                "# registered with schedule `{}`: the job is its `job:` block\n{}",
                checked.schedule.id, body.schedule
            );
            let record = catalogue.prepare(job, manifest, "").await.map_err(|err| match err {
                kanade_ops::OpsError::Invalid(message) => invalid(format!("job: {message}")),
                other => ops_error(other),
            })?;
            JobSource::Inline(record)
        }
        None => {
            let job = catalogue.get(&checked.schedule.job_id).await.map_err(ops_error)?.ok_or_else(|| {
                invalid(format!(
                    "job `{}` is not in the catalogue: create it first (`kanade job create`) or write the manifest \
                     under `job:`",
                    checked.schedule.job_id
                ))
            })?;
            JobSource::Catalogue(job)
        }
    };
    let (targets, waves) =
        engine::fired_at(&source.job().job, &scheduler::request_for(&checked.schedule)).map_err(|err| {
            invalid(format!("firing job `{}` as scheduled would be refused: {err}", checked.schedule.job_id))
        })?;
    // The fire's own scope check, now: what the caller could not fire, it cannot schedule either.
    state.engine.check_scope(&caller.scope, &targets, waves.iter().map(|w| &w.group)).await.map_err(exec_error)?;
    Ok((checked, source))
}

/// Whether the caller's scope covers what `stored` fires at now (its targets, else its job's), for a change to it
/// or a run now. One whose targets cannot be told (its job is gone and it names none) needs the fleet.
async fn covered(state: &AppState, caller: &Caller, stored: &StoredSchedule) -> Result<(), ApiError> {
    if caller.scope.is_fleet() {
        return Ok(());
    }
    let request = scheduler::request_for(&stored.schedule);
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    let job = catalogue.get(&stored.schedule.job_id).await.map_err(ops_error)?;
    let reach = job
        .and_then(|job| engine::fired_at(&job.job, &request).ok())
        .or_else(|| request.targets.clone().map(|targets| (targets, request.waves.clone().unwrap_or_default())));
    let Some((targets, waves)) = reach else {
        let refused = crate::scope::fleet_only(&caller.scope, "a schedule whose targets cannot be told");
        return refused.map_err(|err| exec_error(err.into()));
    };
    state.engine.check_scope(&caller.scope, &targets, waves.iter().map(|w| &w.group)).await.map_err(exec_error)
}

/// The job a schedule fires: written inline (stored with the schedule), or from the catalogue.
enum JobSource {
    Inline(StoredJob),
    Catalogue(StoredJob),
}

impl JobSource {
    fn job(&self) -> &StoredJob {
        match self {
            Self::Inline(job) | Self::Catalogue(job) => job,
        }
    }
}

/// What a schedule is doing now.
fn state_of(stored: &StoredSchedule, fires: &[FireRow], now: DateTime<Utc>) -> &'static str {
    let schedule = &stored.schedule;
    if !schedule.enabled {
        return "paused";
    }
    if schedule.not_before.is_some_and(|t| now < t) {
        return "waiting";
    }
    if schedule.not_after.is_some_and(|t| now > t) {
        return "ended";
    }
    if let When::At { at } = schedule.when
        && (at <= now || fires.iter().any(|f| f.occurrence_at >= at && f.outcome != Outcome::RunNow.as_str()))
    {
        return "ended";
    }
    "active"
}

fn fire_view(row: FireRow) -> FireView {
    let exec_status = row
        .exec_status
        .as_deref()
        .and_then(ExecStatus::parse)
        .map(|status| ShownStatus::of(Some(status), i64::from(row.unanswered)).as_str().to_owned());
    FireView {
        occurrence_id: row.occurrence_id,
        occurrence_at: row.occurrence_at,
        outcome: row.outcome,
        exec_id: row.exec_id,
        reason: row.reason,
        count: row.missed_count,
        decided_by: row.decided_by,
        decided_at: row.decided_at,
        exec_status,
        target_count: row.target_count,
    }
}

fn view(stored: StoredSchedule, fires: Vec<FireRow>) -> ScheduleView {
    let now = Utc::now();
    let state = state_of(&stored, &fires, now).to_owned();
    let next = match (&state[..], Timing::of(&stored.schedule)) {
        ("active" | "waiting", Ok(timing)) => timing.upcoming(now, NEXT_SHOWN),
        _ => Vec::new(),
    };
    ScheduleView { stored, state, next, fires: fires.into_iter().map(fire_view).collect() }
}

async fn view_with_fires(state: &AppState, stored: StoredSchedule) -> Result<ScheduleView, ApiError> {
    let fires = state.db.schedule_fires(stored.schedule.id.as_str(), FIRES_SHOWN).await?;
    Ok(view(stored, fires))
}

async fn store(state: &AppState) -> Result<ScheduleStore, ApiError> {
    ScheduleStore::open(&state.nats).await.map_err(ops_error)
}

async fn existing(state: &AppState, id: &ScheduleId) -> Result<(StoredSchedule, u64), ApiError> {
    store(state).await?.get(id).await.map_err(ops_error)?.ok_or_else(|| not_found(id))
}

#[utoipa::path(post, path = "/api/schedules", tag = "schedules", operation_id = "schedules_create", request_body = ScheduleBody, responses((status = 201, description = "created", body = ScheduleStoredView), (status = 200, description = "updated or unchanged", body = ScheduleStoredView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> Result<Response, ApiError> {
    let (checked, job) = check(&state, &caller, &body).await?;
    let schedules = store(&state).await?;
    let id = checked.schedule.id.clone();
    let before = schedules.get(&id).await.map_err(ops_error)?;
    if let Some((old, _)) = &before {
        // Replacing a schedule is changing what it fires at: the old one must be the caller's to change too.
        covered(&state, &caller, old).await?;
    }
    let now = Utc::now();
    let action = match &before {
        Some((old, _)) if old.schedule == checked.schedule && old.source == body.schedule => "unchanged",
        Some(_) => "updated",
        None => "created",
    };
    if action != "unchanged"
        && let When::At { at } = checked.schedule.when
        && at < now - chrono::Duration::from_std(schedule::LATE_AFTER).unwrap_or_default()
    {
        return Err(invalid(format!("at: `{}` is in the past; it would never fire", at.to_rfc3339())));
    }
    let job_action = match job {
        JobSource::Catalogue(_) => None,
        JobSource::Inline(mut record) => {
            let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
            let current = catalogue.get(&record.job.id).await.map_err(ops_error)?;
            if current.as_ref().is_some_and(|c| c.job == record.job) {
                Some("unchanged".to_owned())
            } else {
                record.created_by = caller.actor.to_string();
                let action = kanade_ops::actions::store_job(&catalogue, &caller.auditor(&state.nats), &record)
                    .await
                    .map_err(ops_error)?;
                state.live.changed(Topic::Jobs, [record.job.id.as_str()]).await;
                Some(action.as_str().to_owned())
            }
        }
    };
    let stored = match before {
        Some((old, _)) if action == "unchanged" => old,
        before => {
            let (created_at, created_by, revision) = match &before {
                Some((old, revision)) => (old.created_at, old.created_by.clone(), Some(*revision)),
                None => (now, caller.actor.to_string(), None),
            };
            let stored = StoredSchedule {
                schedule: checked.schedule.clone(),
                source: body.schedule.clone(),
                created_at,
                created_by,
                updated_at: now,
                updated_by: caller.actor.to_string(),
            };
            // The scope first: a schedule in KV without its row would fire fleet-wide. A row left by a put that
            // failed names a scope that covers the schedule as it was too (checked above).
            state.db.set_schedule_scope(id.as_str(), &caller.scope, caller.actor.as_str(), now).await?;
            schedules.put(&stored, revision).await.map_err(ops_error)?;
            let details = serde_json::json!({
                "job_id": stored.schedule.job_id, "when": stored.schedule.when.to_string(),
                "enabled": stored.schedule.enabled, "identity": caller.identity(),
            });
            let audit = if action == "created" { "schedule-create" } else { "schedule-update" };
            caller.auditor(&state.nats).record(audit, id.as_str(), details).await;
            state.live.changed(Topic::Schedules, [id.as_str()]).await;
            stored
        }
    };
    let view = view_with_fires(&state, stored).await?;
    let status = if action == "created" { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(ScheduleStoredView { schedule: view, action: action.to_owned(), job_action })).into_response())
}

#[utoipa::path(get, path = "/api/schedules", tag = "schedules", operation_id = "schedules_list", responses((status = 200, body = [ScheduleView]), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<ScheduleView>>, ApiError> {
    let (schedules, unreadable) = store(&state).await?.list().await.map_err(ops_error)?;
    if !unreadable.is_empty() {
        tracing::warn!(?unreadable, "schedules that cannot be read");
    }
    let mut latest: std::collections::HashMap<String, FireRow> =
        state.db.latest_fires().await?.into_iter().map(|f| (f.schedule_id.clone(), f)).collect();
    let views = schedules
        .into_iter()
        .map(|stored| {
            let fires = latest.remove(stored.schedule.id.as_str()).into_iter().collect();
            view(stored, fires)
        })
        .collect();
    Ok(Json(views))
}

#[utoipa::path(get, path = "/api/schedules/{schedule_id}", tag = "schedules", operation_id = "schedules_get", params(("schedule_id" = String, Path, description = "the schedule id")), responses((status = 200, body = ScheduleView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    PathId(id): PathId<ScheduleId>,
) -> Result<Json<ScheduleView>, ApiError> {
    let (stored, _) = existing(&state, &id).await?;
    Ok(Json(view_with_fires(&state, stored).await?))
}

/// `DELETE /api/schedules/{id}`: nothing more fires. A once-per-PC schedule's standing command is taken out of
/// `EXEC`, so PCs that had not run it never will; runs already going go on. Its decisions stay, for the record.
#[utoipa::path(delete, path = "/api/schedules/{schedule_id}", tag = "schedules", operation_id = "schedules_delete", params(("schedule_id" = String, Path, description = "the schedule id")), responses((status = 204, description = "deleted"), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(id): PathId<ScheduleId>,
) -> Result<StatusCode, ApiError> {
    let (stored, _) = existing(&state, &id).await?;
    covered(&state, &caller, &stored).await?;
    // A once-per-PC schedule's standing execution stops first: the leader renews a standing command only while
    // its execution runs, and looks again after it finds the command gone, so it cannot put back what is
    // withdrawn below.
    let reason = format!("schedule `{id}` was deleted by `{}`", caller.actor);
    let standing = scheduler::halt_standing(&state, &stored, &reason).await.map_err(exec_error)?;
    if !store(&state).await?.delete(&id).await.map_err(ops_error)? {
        return Err(not_found(&id));
    }
    let withdrawn = match standing {
        Some(exec) => scheduler::withdraw_standing(&state, &exec).await.map_err(exec_error)?,
        None => Vec::new(),
    };
    scheduler::forget(&state, &id).await.map_err(exec_error)?;
    let details =
        serde_json::json!({ "job_id": stored.schedule.job_id, "withdrawn": withdrawn, "identity": caller.identity() });
    caller.auditor(&state.nats).record("schedule-delete", id.as_str(), details).await;
    state.live.changed(Topic::Schedules, [id.as_str()]).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_enabled(
    state: &AppState,
    caller: &Caller,
    id: &ScheduleId,
    enabled: bool,
) -> Result<ScheduleView, ApiError> {
    let schedules = store(state).await?;
    let (mut stored, revision) = schedules.get(id).await.map_err(ops_error)?.ok_or_else(|| not_found(id))?;
    covered(state, caller, &stored).await?;
    if stored.schedule.enabled != enabled {
        // A resumed schedule counts from `updated_at` (the scheduler's cursor is at least that): what fell due
        // while it was paused is not made up.
        let now = Utc::now();
        stored.schedule.enabled = enabled;
        stored.updated_at = now;
        stored.updated_by = caller.actor.to_string();
        schedules.put(&stored, Some(revision)).await.map_err(ops_error)?;
        let action = if enabled { "schedule-resume" } else { "schedule-pause" };
        caller
            .auditor(&state.nats)
            .record(action, id.as_str(), serde_json::json!({ "identity": caller.identity() }))
            .await;
        state.live.changed(Topic::Schedules, [id.as_str()]).await;
    }
    view_with_fires(state, stored).await
}

/// `POST /api/schedules/{id}/pause`: nothing fires until it is resumed.
#[utoipa::path(post, path = "/api/schedules/{schedule_id}/pause", tag = "schedules", operation_id = "schedules_pause", params(("schedule_id" = String, Path, description = "the schedule id")), request_body(content = Option<NoBody>), responses((status = 200, body = ScheduleView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(id): PathId<ScheduleId>,
    _body: OptionalJson<NoBody>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(set_enabled(&state, &caller, &id, false).await?))
}

/// `POST /api/schedules/{id}/resume`: it fires again from now; occurrences that fell due while it was paused are
/// not made up.
#[utoipa::path(post, path = "/api/schedules/{schedule_id}/resume", tag = "schedules", operation_id = "schedules_resume", params(("schedule_id" = String, Path, description = "the schedule id")), request_body(content = Option<NoBody>), responses((status = 200, body = ScheduleView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(id): PathId<ScheduleId>,
    _body: OptionalJson<NoBody>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(set_enabled(&state, &caller, &id, true).await?))
}

/// `POST /api/schedules/{id}/run-now`: fires the schedule's job now, as the schedule would (its targets, waves,
/// jitter and deadline), whatever its timing, pause or overlap say; the occurrence is this second.
#[utoipa::path(post, path = "/api/schedules/{schedule_id}/run-now", tag = "schedules", operation_id = "schedules_run_now", params(("schedule_id" = String, Path, description = "the schedule id")), request_body(content = Option<NoBody>), responses((status = 201, body = RunNowView), (status = 200, description = "this second's occurrence was fired before", body = RunNowView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn run_now(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(id): PathId<ScheduleId>,
    _body: OptionalJson<NoBody>,
) -> Result<Response, ApiError> {
    let (stored, _) = existing(&state, &id).await?;
    if stored.schedule.when.is_once() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            format!("`{id}` fires once per PC: its one standing fire reaches every PC on its own"),
        ));
    }
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    let job = catalogue
        .get(&stored.schedule.job_id)
        .await
        .map_err(ops_error)?
        .ok_or_else(|| exec_error(crate::engine::ExecError::JobNotFound(stored.schedule.job_id.clone())))?;
    let now = Utc::now().trunc_subsecs(0);
    let occurrence = schedule::occurrence_id(&id, now);
    let fire = NewFire {
        occurrence_id: occurrence.clone(),
        schedule_id: id.to_string(),
        occurrence_at: now,
        outcome: Outcome::RunNow.as_str(),
        exec_id: Some(occurrence.clone()),
        reason: Some(format!("run now by `{}`", caller.actor)),
        missed_count: None,
        decided_by: state.leadership.instance().to_owned(),
        decided_at: Utc::now(),
        cursor: None,
    };
    let origin = Origin { caller: caller.clone(), exec_id: Some(occurrence.clone()), fire: Some(fire), ends_at: None };
    let (exec, created) =
        state.engine.create(job, scheduler::request_for(&stored.schedule), origin).await.map_err(exec_error)?;
    let outcome = if created { "fired" } else { "already_fired" };
    if created {
        let details = serde_json::json!({ "exec_id": exec, "identity": caller.identity() });
        caller.auditor(&state.nats).record("schedule-run-now", id.as_str(), details).await;
        state.live.changed(Topic::Schedules, [id.as_str()]).await;
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let view =
        RunNowView { occurrence_id: occurrence.to_string(), exec_id: exec.to_string(), outcome: outcome.to_owned() };
    Ok((status, Json(view)).into_response())
}
