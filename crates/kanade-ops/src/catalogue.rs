//! The job catalogue: KV bucket `jobs`, job id -> [`StoredJob`]. Written only through [`Catalogue::store`], which
//! pins a `script_object` to the SHA-256 it has now.

use async_nats::jetstream::kv::Store as KvStore;
use futures::StreamExt;
use kanade_shared::manifest::{Job, ScriptSource, StoredJob};
use kanade_shared::resources::KV_JOBS;
use kanade_shared::{JobId, wire::Command};

use crate::OpsError;
use crate::objects::{self, Store};

#[derive(Clone)]
pub struct Catalogue {
    client: async_nats::Client,
    kv: KvStore,
}

/// What [`Catalogue::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Created,
    Updated,
}

impl Stored {
    pub fn as_str(self) -> &'static str {
        match self {
            Stored::Created => "created",
            Stored::Updated => "updated",
        }
    }
}

impl Catalogue {
    pub async fn open(client: &async_nats::Client) -> Result<Self, OpsError> {
        let kv = async_nats::jetstream::new(client.clone())
            .get_key_value(KV_JOBS)
            .await
            .map_err(|_| OpsError::Missing { kind: "KV bucket", name: KV_JOBS })?;
        Ok(Self { client: client.clone(), kv })
    }

    /// Checks what only the broker can tell (a `script_object` exists; its SHA-256) and builds the record to store.
    pub async fn prepare(&self, job: Job, manifest: String, actor: &str) -> Result<StoredJob, OpsError> {
        let script_sha256 = match &job.source {
            ScriptSource::Object { name, version } => {
                let store = objects::open(&self.client, Store::Scripts).await?;
                let key = objects::key(name, version);
                match objects::find(&store, &key).await? {
                    Some(object) => Some(object.sha256),
                    None => {
                        return Err(OpsError::Invalid(format!(
                            "execute.script_object: `{key}` is not in the `scripts` object store (publish it with \
                             `kanade script publish {name} {version} <file>`)"
                        )));
                    }
                }
            }
            ScriptSource::File { path } => {
                return Err(OpsError::Invalid(format!(
                    "execute.script_file: `{}` must be inlined before the job is stored",
                    path.display()
                )));
            }
            ScriptSource::Inline { .. } => None,
        };
        Ok(StoredJob { job, manifest, script_sha256, created_at: chrono::Utc::now(), created_by: actor.to_owned() })
    }

    pub async fn store(&self, record: &StoredJob) -> Result<Stored, OpsError> {
        let id = record.job.id.as_str();
        let existed = self.get(&record.job.id).await?.is_some();
        let body = serde_json::to_vec(record).map_err(|source| OpsError::Encode { what: "job", source })?;
        self.kv.put(id, body.into()).await.map_err(|e| OpsError::nats(format!("cannot store job `{id}`"), e))?;
        Ok(if existed { Stored::Updated } else { Stored::Created })
    }

    pub async fn get(&self, id: &JobId) -> Result<Option<StoredJob>, OpsError> {
        let value = self.kv.get(id.as_str()).await.map_err(|e| OpsError::nats(format!("cannot read job `{id}`"), e))?;
        value
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|err| OpsError::Invalid(format!("job `{id}` in the catalogue is unreadable: {err}")))
            })
            .transpose()
    }

    /// Every readable job, sorted by id, and the keys of those that are not readable.
    pub async fn list(&self) -> Result<(Vec<StoredJob>, Vec<String>), OpsError> {
        let mut keys = self.kv.keys().await.map_err(|e| OpsError::nats("cannot list jobs", e))?;
        let (mut jobs, mut unreadable) = (Vec::new(), Vec::new());
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| OpsError::nats("cannot list jobs", e))?;
            let Ok(id) = JobId::new(key.clone()) else {
                unreadable.push(key);
                continue;
            };
            match self.get(&id).await {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) => {}
                Err(OpsError::Invalid(_)) => unreadable.push(key),
                Err(err) => return Err(err),
            }
        }
        jobs.sort_by(|a, b| a.job.id.cmp(&b.job.id));
        Ok((jobs, unreadable))
    }

    /// Removes `id`; false if it was not there.
    pub async fn delete(&self, id: &JobId) -> Result<bool, OpsError> {
        if self.get(id).await?.is_none() {
            return Ok(false);
        }
        self.kv.delete(id.as_str()).await.map_err(|e| OpsError::nats(format!("cannot delete job `{id}`"), e))?;
        Ok(true)
    }

    /// The script the job runs: inline as stored, or the `script_object`'s bytes, checked against the SHA-256
    /// recorded when the job was created.
    pub async fn script(&self, stored: &StoredJob) -> Result<String, OpsError> {
        match &stored.job.source {
            ScriptSource::Inline { script } => Ok(script.clone()),
            ScriptSource::File { path } => Err(OpsError::Invalid(format!(
                "job `{}` holds an un-inlined script_file `{}`",
                stored.job.id,
                path.display()
            ))),
            ScriptSource::Object { name, version } => {
                let key = objects::key(name, version);
                let expected = stored.script_sha256.as_deref().ok_or_else(|| {
                    OpsError::Invalid(format!("job `{}` has no SHA-256 recorded for `{key}`", stored.job.id))
                })?;
                let store = objects::open(&self.client, Store::Scripts).await?;
                let bytes = objects::read_verified(&store, Store::Scripts, &key, expected).await?;
                String::from_utf8(bytes).map_err(|_| OpsError::Invalid(format!("script object `{key}` is not UTF-8")))
            }
        }
    }
}

/// The command for one execution of `stored`, its script resolved; `issued_at`/`deadline` are set when it is sent.
pub fn command_for(
    stored: &StoredJob,
    exec_id: kanade_shared::ExecId,
    script: String,
    jitter: Option<std::time::Duration>,
) -> Command {
    let job = &stored.job;
    Command {
        exec_id,
        job_id: job.id.clone(),
        version: job.version.clone(),
        shell: job.shell.clone(),
        script,
        timeout: job.timeout,
        issued_at: chrono::Utc::now(),
        deadline: None,
        jitter: jitter.or(job.jitter),
        run_as: job.run_as.clone(),
        cwd: job.cwd.clone(),
        consent: consent_of(job),
    }
}

/// What a job's `client.consent` block asks of the PC's user, as the command carries it.
fn consent_of(job: &kanade_shared::manifest::Job) -> Option<kanade_shared::wire::Consent> {
    let client = job.client.as_ref()?;
    let consent = client.consent.as_ref()?;
    Some(kanade_shared::wire::Consent {
        title: client.title.trim().to_owned(),
        message: consent.message.trim().to_owned(),
        max_defer: consent.max_defer,
        deadline: consent.deadline.0,
        quiet_hours: consent.quiet_hours.clone(),
    })
}
