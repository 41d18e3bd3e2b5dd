//! Whole operator actions, audit included: the CLI and the backend call these, so an action taken from either is
//! done the same way and recorded the same way (the same audit action name, target and details).

use std::time::Duration;

use kanade_shared::manifest::StoredJob;
use kanade_shared::wire::KillAck;
use kanade_shared::{ExecId, JobId};

use crate::OpsError;
use crate::audit::Auditor;
use crate::catalogue::{Catalogue, Stored};
use crate::control;

/// Stores a job [`Catalogue::prepare`]d before (checked and pinned), audited as `job-create`.
pub async fn store_job(catalogue: &Catalogue, audit: &Auditor, record: &StoredJob) -> Result<Stored, OpsError> {
    let stored = catalogue.store(record).await?;
    let details = serde_json::json!({ "version": record.job.version, "script_sha256": record.script_sha256 });
    audit.record("job-create", record.job.id.as_str(), details).await;
    Ok(stored)
}

/// Removes `job` from the catalogue, audited as `job-delete`; false when there was no such job (nothing audited).
pub async fn delete_job(catalogue: &Catalogue, audit: &Auditor, job: &JobId) -> Result<bool, OpsError> {
    if !catalogue.delete(job).await? {
        return Ok(false);
    }
    audit.record("job-delete", job.as_str(), serde_json::Value::Null).await;
    Ok(true)
}

/// Revokes `job` (its runs that have not started are skipped on every agent) or allows it again; audited as
/// `revoke` / `unrevoke`.
pub async fn set_revoked(audit: &Auditor, job: &JobId, revoked: bool) -> Result<(), OpsError> {
    control::set_revoked(audit.client(), job, revoked).await?;
    audit.record(if revoked { "revoke" } else { "unrevoke" }, job.as_str(), serde_json::Value::Null).await;
    Ok(())
}

/// Kills `exec`'s running and queued runs on every agent, collecting confirmations for `wait`; audited as `kill`
/// with the agents that confirmed.
pub async fn kill(audit: &Auditor, exec: &ExecId, wait: Duration) -> Result<Vec<KillAck>, OpsError> {
    let killed = control::kill(audit.client(), exec, wait).await?;
    audit.record("kill", exec.as_str(), killed_on(&killed)).await;
    Ok(killed)
}

/// Kills every execution of `job` on every agent; audited as `kill-job`.
pub async fn kill_job(audit: &Auditor, job: &JobId, wait: Duration) -> Result<Vec<KillAck>, OpsError> {
    let killed = control::kill_job(audit.client(), job, wait).await?;
    audit.record("kill-job", job.as_str(), killed_on(&killed)).await;
    Ok(killed)
}

fn killed_on(killed: &[KillAck]) -> serde_json::Value {
    let on: Vec<String> = killed.iter().map(|ack| ack.pc_id.to_string()).collect();
    serde_json::json!({ "killed_on": on })
}
