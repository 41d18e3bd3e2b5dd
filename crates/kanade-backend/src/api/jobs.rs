//! `GET|POST /api/jobs`, `GET|DELETE /api/jobs/{id}`: the job catalogue over HTTP, the same KV bucket and the same
//! checks as `kanade job`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kanade_ops::catalogue::Catalogue;
use kanade_shared::manifest::{Job, ScriptSource, StoredJob};
use kanade_shared::wire::MAX_SCRIPT_BYTES;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, AppState, Caller, PathId, ops_error};

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
    let action = catalogue.store(&record).await.map_err(ops_error)?;
    let details = serde_json::json!({ "version": record.job.version, "script_sha256": record.script_sha256 });
    state.audit(&caller.actor, "job-create", record.job.id.as_str(), details).await;
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

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<StoredJob>>, ApiError> {
    let (jobs, unreadable) = Catalogue::open(&state.nats).await.map_err(ops_error)?.list().await.map_err(ops_error)?;
    if !unreadable.is_empty() {
        tracing::warn!(?unreadable, "jobs in the catalogue that cannot be read");
    }
    Ok(Json(jobs))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    PathId(id): PathId<kanade_shared::JobId>,
) -> Result<Json<StoredJob>, ApiError> {
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    let job = catalogue.get(&id).await.map_err(ops_error)?;
    job.map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "job_not_found", format!("no job `{id}` in the catalogue")))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(id): PathId<kanade_shared::JobId>,
) -> Result<StatusCode, ApiError> {
    let catalogue = Catalogue::open(&state.nats).await.map_err(ops_error)?;
    if !catalogue.delete(&id).await.map_err(ops_error)? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "job_not_found", format!("no job `{id}` in the catalogue")));
    }
    state.audit(&caller.actor, "job-delete", id.as_str(), serde_json::Value::Null).await;
    Ok(StatusCode::NO_CONTENT)
}
