//! `GET|POST /api/jobs`, `GET|DELETE /api/jobs/{id}`, `POST /api/jobs/{id}/revoke|unrevoke`: the job catalogue
//! over HTTP, the same KV bucket and the same checks as `kanade job`, `kanade revoke` and `kanade unrevoke`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kanade_ops::catalogue::Catalogue;
use kanade_shared::JobId;
use kanade_shared::manifest::{Job, ScriptSource, StoredJob};
use kanade_shared::wire::MAX_SCRIPT_BYTES;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, AppState, NoBody, OptionalJson, PathId, ops_error};
use crate::caller::Caller;
use crate::live::Topic;

/// A manifest as the API takes it: the YAML text, and the files its `script_file` names (a client cannot make the
/// server read its disk).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestBody {
    pub manifest: String,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub struct StoredView {
    #[serde(flatten)]
    pub job: StoredJob,
    pub action: &'static str,
}

/// Checks a manifest body as `kanade job validate` would, inlining an uploaded `script_file`.
pub fn check(body: &ManifestBody) -> Result<Job, ApiError> {
    let mut job =
        Job::from_yaml(&body.manifest).map_err(|err| ApiError::bad_request("invalid_manifest", err.to_string()))?;
    if let ScriptSource::File { path } = &job.source {
        let name = path.to_string_lossy().into_owned();
        let script = body.files.get(&name).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_manifest",
                format!("execute.script_file: `{name}` was not sent with the manifest (put its text in `files`)"),
            )
        })?;
        if script.len() > MAX_SCRIPT_BYTES {
            return Err(ApiError::bad_request(
                "invalid_manifest",
                format!("execute.script_file: `{name}` is {} bytes; the limit is {MAX_SCRIPT_BYTES}", script.len()),
            ));
        }
        job.source = ScriptSource::Inline { script: script.clone() };
    }
    Ok(job)
}

/// Checks, pins and stores a manifest; audited as `job-create`.
pub async fn store(state: &AppState, caller: &Caller, body: &ManifestBody) -> Result<StoredView, ApiError> {
    let job = check(body)?;
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    let record =
        catalogue.prepare(job, body.manifest.clone(), caller.actor.as_str()).await.map_err(|err| match err {
            kanade_ops::OpsError::Invalid(message) => ApiError::bad_request("invalid_manifest", message),
            other => ops_error(other),
        })?;
    let action =
        kanade_ops::actions::store_job(&catalogue, &caller.auditor(&state.nats), &record).await.map_err(ops_error)?;
    state.live.changed(Topic::Jobs, [record.job.id.as_str()]).await;
    Ok(StoredView { job: record, action: action.as_str() })
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<ManifestBody>,
) -> Result<Response, ApiError> {
    let stored = store(&state, &caller, &body).await?;
    let status = if stored.action == "created" { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(stored)).into_response())
}

/// A job as the API shows it: the stored job, and whether it is revoked now.
#[derive(Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub job: StoredJob,
    pub revoked: bool,
}

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
    ApiError::new(StatusCode::NOT_FOUND, "job_not_found", format!("no job `{id}` in the catalogue"))
}

pub async fn get(State(state): State<Arc<AppState>>, PathId(id): PathId<JobId>) -> Result<Json<JobView>, ApiError> {
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    let job = catalogue.get(&id).await.map_err(ops_error)?.ok_or_else(|| not_found(&id))?;
    let revoked = kanade_ops::control::is_revoked(&state.nats, &id).await.map_err(ops_error)?;
    Ok(Json(JobView { job, revoked }))
}

/// `POST /api/jobs/{id}/revoke` and `/unrevoke`: the job's status now.
#[derive(Debug, Serialize)]
pub struct RevokeView {
    pub job_id: String,
    pub revoked: bool,
}

/// `POST /api/jobs/{id}/revoke`: what `kanade revoke` does: runs that have not started are skipped on every agent,
/// and the job cannot be fired until it is unrevoked.
pub async fn revoke(
    state: State<Arc<AppState>>,
    caller: Caller,
    id: PathId<JobId>,
    _body: OptionalJson<NoBody>,
) -> Result<Json<RevokeView>, ApiError> {
    set_revoked(state, caller, id, true).await
}

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
    // `kanade revoke` can stop a job that is not in the catalogue (fired by `kanade run`); the dashboard only shows
    // catalogue jobs, so a name that is not there is more likely a mistake.
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    if catalogue.get(&id).await.map_err(ops_error)?.is_none() {
        return Err(not_found(&id));
    }
    kanade_ops::actions::set_revoked(&caller.auditor(&state.nats), &id, revoked).await.map_err(ops_error)?;
    state.live.changed(Topic::Jobs, [id.as_str()]).await;
    Ok(Json(RevokeView { job_id: id.to_string(), revoked }))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(id): PathId<JobId>,
) -> Result<StatusCode, ApiError> {
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    if !kanade_ops::actions::delete_job(&catalogue, &caller.auditor(&state.nats), &id).await.map_err(ops_error)? {
        return Err(not_found(&id));
    }
    state.live.changed(Topic::Jobs, [id.as_str()]).await;
    Ok(StatusCode::NO_CONTENT)
}
