//! Whole operator actions, audit included: the CLI and the backend call these, so an action taken from either is
//! done the same way and recorded the same way (the same audit action name, target and details).

use std::time::Duration;

use kanade_shared::authority::SigningKey;
use kanade_shared::layered::Scope;
use kanade_shared::manifest::StoredJob;
use kanade_shared::resources::KV_AGENT_GROUPS;
use kanade_shared::wire::KillAck;
use kanade_shared::{ExecId, JobId, PcId};

use crate::OpsError;
use crate::agent_config::AgentConfigStore;
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
pub async fn set_revoked(audit: &Auditor, signer: &SigningKey, job: &JobId, revoked: bool) -> Result<(), OpsError> {
    control::set_revoked(audit.client(), signer, job, revoked).await?;
    audit.record(if revoked { "revoke" } else { "unrevoke" }, job.as_str(), serde_json::Value::Null).await;
    Ok(())
}

/// Kills `exec`'s running and queued runs on every agent, collecting confirmations for `wait`; audited as `kill`
/// with the agents that confirmed.
pub async fn kill(
    audit: &Auditor,
    signer: &SigningKey,
    exec: &ExecId,
    wait: Duration,
) -> Result<Vec<KillAck>, OpsError> {
    let killed = control::kill(audit.client(), signer, exec, wait).await?;
    audit.record("kill", exec.as_str(), killed_on(&killed)).await;
    Ok(killed)
}

/// Kills every execution of `job` on every agent; audited as `kill-job`.
pub async fn kill_job(
    audit: &Auditor,
    signer: &SigningKey,
    job: &JobId,
    wait: Duration,
) -> Result<Vec<KillAck>, OpsError> {
    let killed = control::kill_job(audit.client(), signer, job, wait).await?;
    audit.record("kill-job", job.as_str(), killed_on(&killed)).await;
    Ok(killed)
}

fn killed_on(killed: &[KillAck]) -> serde_json::Value {
    let on: Vec<String> = killed.iter().map(|ack| ack.pc_id.to_string()).collect();
    serde_json::json!({ "killed_on": on })
}

/// What [`purge_agent`] found and deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// The agent's own `agent_config` layer (`pcs.<pc>`).
    pub config: bool,
    /// Its `agent_groups` entry.
    pub groups: bool,
}

/// Deletes what the broker keeps for one agent alone: its `agent_config` layer and its `agent_groups` entry (each
/// only if there is one). Part of forgetting an agent, which its caller audits as one `agent-rm` once the agent is
/// out of the read model too; a running agent that is still there falls back to its global and group layers.
pub async fn purge_agent(client: &async_nats::Client, pc: &PcId) -> Result<Purged, OpsError> {
    let config = AgentConfigStore::open(client).await?.reset(&Scope::Pc(pc.clone())).await?;
    let groups_kv = async_nats::jetstream::new(client.clone())
        .get_key_value(KV_AGENT_GROUPS)
        .await
        .map_err(|_| OpsError::Missing { kind: "KV bucket", name: KV_AGENT_GROUPS })?;
    let key = pc.as_str();
    let groups = match groups_kv.entry(key).await.map_err(|e| OpsError::nats(format!("cannot read `{key}`"), e))? {
        Some(entry) if entry.operation == async_nats::jetstream::kv::Operation::Put => {
            groups_kv.delete(key).await.map_err(|e| OpsError::nats(format!("cannot remove `{key}`"), e))?;
            true
        }
        _ => false,
    };
    Ok(Purged { config, groups })
}
