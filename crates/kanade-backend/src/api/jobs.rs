//! `GET|POST /api/jobs`, `GET|DELETE /api/jobs/{id}`, `POST /api/jobs/{id}/revoke|unrevoke`: the job catalogue
//! over HTTP, the same KV bucket and the same checks as `kanade job`, `kanade revoke` and `kanade unrevoke`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kanade_ops::catalogue::Catalogue;
use kanade_shared::JobId;
use kanade_shared::api::{ErrorBody, JobView, ManifestBody, NoBody, RevokeView, StoredView};
use kanade_shared::manifest::{Job, ScriptSource, Version};
use kanade_shared::wire::MAX_SCRIPT_BYTES;

use super::{ApiError, ApiJson, AppState, ErrorCode, OptionalJson, PathId, ops_error};
use crate::caller::Caller;
use crate::live::Topic;

/// Checks a manifest body as `kanade job validate` would, inlining an uploaded `script_file`, and puts the body's
/// `version` (when it gives one) in place of the manifest's.
pub fn check(body: &ManifestBody) -> Result<Job, ApiError> {
    let mut job = Job::from_yaml(&body.manifest)
        .map_err(|err| ApiError::bad_request(ErrorCode::InvalidManifest, err.to_string()))?;
    if let ScriptSource::File { path } = &job.source {
        let name = path.to_string_lossy().into_owned();
        let script = body.files.get(&name).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidManifest,
                format!("execute.script_file: `{name}` was not sent with the manifest (put its text in `files`)"),
            )
        })?;
        if script.len() > MAX_SCRIPT_BYTES {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidManifest,
                format!("execute.script_file: `{name}` is {} bytes; the limit is {MAX_SCRIPT_BYTES}", script.len()),
            ));
        }
        job.source = ScriptSource::Inline { script: script.clone() };
    }
    if let Some(version) = &body.version {
        let version = Version::new(version)
            .map_err(|err| ApiError::bad_request(ErrorCode::InvalidRequest, format!("version: {err}")))?;
        job.version = version.as_str().to_owned();
    }
    Ok(job)
}

/// Refuses a caller scoped to groups `action` on a job the catalogue already holds: a stored job is not anyone's,
/// and fleet-wide schedules fire whatever it holds, so only a fleet-wide caller may replace or delete one. A scoped
/// operator creates jobs of its own ids.
async fn may_change(catalogue: &Catalogue, caller: &Caller, id: &JobId, action: &'static str) -> Result<(), ApiError> {
    if caller.scope.is_fleet() || catalogue.get(id).await.map_err(ops_error)?.is_none() {
        return Ok(());
    }
    super::fleet_wide(caller, action)
}

/// Checks, pins and stores a manifest; audited as `job-create`.
pub async fn store(state: &AppState, caller: &Caller, body: &ManifestBody) -> Result<StoredView, ApiError> {
    let job = check(body)?;
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    may_change(&catalogue, caller, &job.id, "replacing a job").await?;
    let record =
        catalogue.prepare(job, body.manifest.clone(), caller.actor.as_str()).await.map_err(|err| match err {
            kanade_ops::OpsError::Invalid(message) => ApiError::bad_request(ErrorCode::InvalidManifest, message),
            other => ops_error(other),
        })?;
    let action =
        kanade_ops::actions::store_job(&catalogue, &caller.auditor(&state.nats), &record).await.map_err(ops_error)?;
    state.live.changed(Topic::Jobs, [record.job.id.as_str()]).await;
    Ok(StoredView { job: record, action: action.as_str().to_owned() })
}

#[utoipa::path(post, path = "/api/jobs", tag = "jobs", operation_id = "jobs_create", request_body = ManifestBody, responses((status = 201, description = "created", body = StoredView), (status = 200, description = "updated or unchanged", body = StoredView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<ManifestBody>,
) -> Result<Response, ApiError> {
    let stored = store(&state, &caller, &body).await?;
    let status = if stored.action == "created" { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(stored)).into_response())
}

#[utoipa::path(get, path = "/api/jobs", tag = "jobs", operation_id = "jobs_list", responses((status = 200, body = [JobView]), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<JobView>>, ApiError> {
    let (jobs, unreadable) = Catalogue::open(&state.nats).await.map_err(ops_error)?.list().await.map_err(ops_error)?;
    if !unreadable.is_empty() {
        tracing::warn!(?unreadable, "jobs in the catalogue that cannot be read");
    }
    // One status read per job, at once; a catalogue is tens to hundreds of jobs.
    let statuses =
        futures::future::join_all(jobs.iter().map(|job| kanade_ops::control::is_revoked(&state.nats, &job.job.id)))
            .await;
    let mut views = Vec::with_capacity(jobs.len());
    for (job, revoked) in jobs.into_iter().zip(statuses) {
        views.push(JobView { job, revoked: revoked.map_err(ops_error)? });
    }
    Ok(Json(views))
}

fn not_found(id: &JobId) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::JobNotFound, format!("no job `{id}` in the catalogue"))
}

#[utoipa::path(get, path = "/api/jobs/{job_id}", tag = "jobs", operation_id = "jobs_get", params(("job_id" = String, Path, description = "the job id")), responses((status = 200, body = JobView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn get(State(state): State<Arc<AppState>>, PathId(id): PathId<JobId>) -> Result<Json<JobView>, ApiError> {
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    let job = catalogue.get(&id).await.map_err(ops_error)?.ok_or_else(|| not_found(&id))?;
    let revoked = kanade_ops::control::is_revoked(&state.nats, &id).await.map_err(ops_error)?;
    Ok(Json(JobView { job, revoked }))
}

/// `POST /api/jobs/{id}/revoke`: what `kanade revoke` does: runs that have not started are skipped on every agent,
/// and the job cannot be fired until it is unrevoked.
#[utoipa::path(post, path = "/api/jobs/{job_id}/revoke", tag = "jobs", operation_id = "jobs_revoke", params(("job_id" = String, Path, description = "the job id")), request_body(content = Option<NoBody>), responses((status = 200, body = RevokeView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn revoke(
    state: State<Arc<AppState>>,
    caller: Caller,
    id: PathId<JobId>,
    _body: OptionalJson<NoBody>,
) -> Result<Json<RevokeView>, ApiError> {
    set_revoked(state, caller, id, true).await
}

#[utoipa::path(post, path = "/api/jobs/{job_id}/unrevoke", tag = "jobs", operation_id = "jobs_unrevoke", params(("job_id" = String, Path, description = "the job id")), request_body(content = Option<NoBody>), responses((status = 200, body = RevokeView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn unrevoke(
    state: State<Arc<AppState>>,
    caller: Caller,
    id: PathId<JobId>,
    _body: OptionalJson<NoBody>,
) -> Result<Json<RevokeView>, ApiError> {
    set_revoked(state, caller, id, false).await
}

async fn set_revoked(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(id): PathId<JobId>,
    revoked: bool,
) -> Result<Json<RevokeView>, ApiError> {
    // A revocation stops the job on every PC, whoever fired it where: a caller scoped to groups may not.
    super::fleet_wide(&caller, if revoked { "revoking a job" } else { "unrevoking a job" })?;
    // `kanade revoke` can stop a job that is not in the catalogue (fired by `kanade run`); the dashboard only shows
    // catalogue jobs, so a name that is not there is more likely a mistake.
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    if catalogue.get(&id).await.map_err(ops_error)?.is_none() {
        return Err(not_found(&id));
    }
    let signer = state.engine.signer().map_err(ops_error)?;
    kanade_ops::actions::set_revoked(&caller.auditor(&state.nats), signer, &id, revoked).await.map_err(ops_error)?;
    state.live.changed(Topic::Jobs, [id.as_str()]).await;
    Ok(Json(RevokeView { job_id: id.to_string(), revoked }))
}

#[utoipa::path(delete, path = "/api/jobs/{job_id}", tag = "jobs", operation_id = "jobs_delete", params(("job_id" = String, Path, description = "the job id")), responses((status = 204, description = "deleted"), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(id): PathId<JobId>,
) -> Result<StatusCode, ApiError> {
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    may_change(&catalogue, &caller, &id, "deleting a job").await?;
    if !kanade_ops::actions::delete_job(&catalogue, &caller.auditor(&state.nats), &id).await.map_err(ops_error)? {
        return Err(not_found(&id));
    }
    state.live.changed(Topic::Jobs, [id.as_str()]).await;
    Ok(StatusCode::NO_CONTENT)
}
