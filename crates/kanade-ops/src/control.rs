//! Firing and stopping jobs straight over the broker: the `script_current` / `script_status` KV the agents gate
//! on, command publication into `EXEC`, and kills. Everything an agent acts on is signed with the caller's key
//! (`kanade_ops::signing`): agents obey only what a key in the trust list signed (DESIGN.md, Authority).

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use kanade_shared::authority::SigningKey;
use kanade_shared::resources::{KV_SCRIPT_CURRENT, KV_SCRIPT_STATUS, STREAM_EXEC};
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Command, KillAck};
use kanade_shared::{ExecId, JobId};

use crate::OpsError;
use crate::signing::{self, COMMAND_LIFETIME, KILL_LIFETIME, STATE_LIFETIME};

/// The values of `script_status`.
pub const REVOKED: &str = "REVOKED";
pub const ACTIVE: &str = "ACTIVE";

async fn bucket(client: &async_nats::Client, name: &'static str) -> Result<jetstream::kv::Store, OpsError> {
    jetstream::new(client.clone()).get_key_value(name).await.map_err(|_| OpsError::Missing { kind: "KV bucket", name })
}

/// Puts `value` under `job` in job-state bucket `name`, signed by `signer` (a KV put is a publish on the key's
/// subject; the async-nats KV API cannot add headers, so it is published as one).
async fn put_signed(
    client: &async_nats::Client,
    signer: &SigningKey,
    name: &'static str,
    job: &JobId,
    value: &str,
) -> Result<(), OpsError> {
    bucket(client, name).await?;
    let subject = subject::kv_entry(name, job.as_str());
    let headers = signing::signed_headers(signer, &subject, value.as_bytes(), STATE_LIFETIME);
    let what = || format!("cannot set `{job}` to `{value}` in `{name}`");
    jetstream::new(client.clone())
        .send_publish(subject.clone(), PublishMessage::build().payload(value.to_owned().into()).headers(headers))
        .await
        .map_err(|e| OpsError::nats(what(), e))?
        .await
        .map_err(|e| OpsError::nats(what(), e))?;
    Ok(())
}

/// Sets `job`'s status; `revoked` true stops its runs that have not started, on every agent `signer` may reach.
pub async fn set_revoked(
    client: &async_nats::Client,
    signer: &SigningKey,
    job: &JobId,
    revoked: bool,
) -> Result<(), OpsError> {
    put_signed(client, signer, KV_SCRIPT_STATUS, job, if revoked { REVOKED } else { ACTIVE }).await
}

/// Whether `job` is revoked now.
pub async fn is_revoked(client: &async_nats::Client, job: &JobId) -> Result<bool, OpsError> {
    let value = bucket(client, KV_SCRIPT_STATUS)
        .await?
        .get(job.as_str())
        .await
        .map_err(|e| OpsError::nats(format!("cannot read the status of `{job}`"), e))?;
    Ok(value.is_some_and(|v| v.as_ref() == REVOKED.as_bytes()))
}

/// Makes `version` the one version of `job` that may run: agents skip any other as `superseded`.
pub async fn set_current(
    client: &async_nats::Client,
    signer: &SigningKey,
    job: &JobId,
    version: &str,
) -> Result<(), OpsError> {
    put_signed(client, signer, KV_SCRIPT_CURRENT, job, version).await
}

/// Publishes `command` to `target` and waits for `EXEC`'s ack. The message id is the exec id and the target, so
/// publishing the same command to the same target again (a retry, a backend restarted mid-wave) is stored once.
pub async fn publish(
    client: &async_nats::Client,
    signer: &SigningKey,
    target: &Target,
    command: &Command,
) -> Result<(), OpsError> {
    publish_as(client, signer, target, command, None).await
}

/// Publishes `command` to `target` again under a message id of its own (`<exec>:<subject>@<issued_at>`), so a
/// standing command sent anew (renewed before `EXEC` ages it out, or with a new version's script) is stored even
/// within the duplicate window. The agents' run ledger keeps a PC that ran the exec id from running it again.
pub async fn republish(
    client: &async_nats::Client,
    signer: &SigningKey,
    target: &Target,
    command: &Command,
) -> Result<(), OpsError> {
    publish_as(client, signer, target, command, Some(command.issued_at.timestamp_millis())).await
}

/// Publishes `command`, signed over its exact bytes and subject for as long as `EXEC` may hold it.
async fn publish_as(
    client: &async_nats::Client,
    signer: &SigningKey,
    target: &Target,
    command: &Command,
    sent_at: Option<i64>,
) -> Result<(), OpsError> {
    command.validate().map_err(|err| OpsError::Invalid(format!("command for `{}`: {err}", command.job_id)))?;
    let subject = subject::command(target, &command.job_id);
    let body = serde_json::to_vec(command).map_err(|source| OpsError::Encode { what: "command", source })?;
    let message_id = match sent_at {
        None => format!("{}:{subject}", command.exec_id),
        Some(at) => format!("{}:{subject}@{at}", command.exec_id),
    };
    let what = || format!("cannot publish `{subject}`");
    let headers = signing::signed_headers(signer, &subject, &body, COMMAND_LIFETIME);
    jetstream::new(client.clone())
        .send_publish(
            subject.clone(),
            PublishMessage::build().payload(body.into()).headers(headers).message_id(message_id.as_str()),
        )
        .await
        .map_err(|e| OpsError::nats(what(), e))?
        .await
        .map_err(|e| OpsError::nats(what(), e))?;
    Ok(())
}

/// The command `EXEC` holds for `job` at `target` now (it keeps the newest per subject), if it holds one that
/// reads as a command.
pub async fn standing(client: &async_nats::Client, target: &Target, job: &JobId) -> Result<Option<Command>, OpsError> {
    let subject = subject::command(target, job);
    let stream = jetstream::new(client.clone())
        .get_stream(STREAM_EXEC)
        .await
        .map_err(|_| OpsError::Missing { kind: "stream", name: STREAM_EXEC })?;
    match stream.direct_get_last_for_subject(subject.clone()).await {
        Ok(message) => Ok(serde_json::from_slice(&message.payload).ok()),
        Err(err) if err.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
        Err(err) => Err(OpsError::nats(format!("cannot read `{subject}`"), err)),
    }
}

/// Takes `exec`'s command for `job` at `target` out of `EXEC`, if it is the one held there: agents that had not
/// picked it up never will (a deleted once-per-PC schedule). A newer command on the subject is left alone.
pub async fn withdraw(
    client: &async_nats::Client,
    target: &Target,
    job: &JobId,
    exec: &ExecId,
) -> Result<bool, OpsError> {
    let held = standing(client, target, job).await?;
    if held.is_none_or(|command| command.exec_id != *exec) {
        return Ok(false);
    }
    let subject = subject::command(target, job);
    let stream = jetstream::new(client.clone())
        .get_stream(STREAM_EXEC)
        .await
        .map_err(|_| OpsError::Missing { kind: "stream", name: STREAM_EXEC })?;
    stream
        .purge()
        .filter(subject.clone())
        .await
        .map_err(|e| OpsError::nats(format!("cannot withdraw `{subject}`"), e))?;
    Ok(true)
}

/// Sends a kill, signed, to `subject` and collects the agents' confirmations for `wait`.
async fn kill_on(
    client: &async_nats::Client,
    signer: &SigningKey,
    subject: String,
    wait: Duration,
) -> Result<Vec<KillAck>, OpsError> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| OpsError::nats("cannot subscribe", e))?;
    let headers = signing::signed_headers(signer, &subject, b"", KILL_LIFETIME);
    client
        .publish_with_reply_and_headers(subject.clone(), inbox, headers, bytes::Bytes::new())
        .await
        .map_err(|e| OpsError::nats(format!("cannot send `{subject}`"), e))?;
    client.flush().await.map_err(|e| OpsError::nats(format!("cannot send `{subject}`"), e))?;
    let mut acks = Vec::new();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            Some(message) = replies.next() => {
                if let Ok(ack) = serde_json::from_slice::<KillAck>(&message.payload) {
                    acks.push(ack);
                }
            }
            () = &mut deadline => break,
        }
    }
    acks.sort_by(|a, b| (&a.pc_id, &a.exec_id).cmp(&(&b.pc_id, &b.exec_id)));
    Ok(acks)
}

/// Kills `exec`'s running and queued runs on every agent `signer` may reach.
pub async fn kill(
    client: &async_nats::Client,
    signer: &SigningKey,
    exec: &ExecId,
    wait: Duration,
) -> Result<Vec<KillAck>, OpsError> {
    kill_on(client, signer, subject::kill(exec), wait).await
}

/// Kills the running and queued runs of every execution of `job`, on every agent `signer` may reach.
pub async fn kill_job(
    client: &async_nats::Client,
    signer: &SigningKey,
    job: &JobId,
    wait: Duration,
) -> Result<Vec<KillAck>, OpsError> {
    kill_on(client, signer, subject::kill_job(job), wait).await
}
