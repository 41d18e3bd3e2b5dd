//! `kanade job create|list|show|delete|validate|schema`: the job catalogue in the `jobs` KV bucket, kept straight
//! over NATS so it works with the backend down.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use async_nats::jetstream::kv::Store as KvStore;
use futures::StreamExt;
use kanade_shared::JobId;
use kanade_shared::manifest::{self, Job, ScriptSource, StoredJob};
use kanade_shared::resources::KV_JOBS;

use crate::commands::objects::{self, Store};
use crate::output::{self, Format};
use crate::{Cli, EXIT_ERROR, connect};

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Validate manifests (a file, or every *.yaml in a directory) and store them; all or nothing.
    Create {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List the stored jobs.
    List,
    /// Show one stored job: its manifest (or everything, with -o json).
    Show { id: JobId },
    /// Remove a job from the catalogue.
    Delete { id: JobId },
    /// Print the JSON schema of job manifests (for editors and CI).
    Schema,
    /// Check manifests (a file, or every *.yaml in a directory) without storing anything.
    Validate {
        /// Manifest files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

pub async fn run(cli: &Cli, command: &JobCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobCommand::Schema => {
            output::raw(false, &manifest::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Validate { paths } => validate(cli, paths),
        JobCommand::Create { paths } => create(cli, paths).await,
        JobCommand::List => list(cli).await,
        JobCommand::Show { id } => show(cli, id).await,
        JobCommand::Delete { id } => delete(cli, id).await,
    }
}

async fn catalogue(client: &async_nats::Client) -> anyhow::Result<KvStore> {
    async_nats::jetstream::new(client.clone())
        .get_key_value(KV_JOBS)
        .await
        .with_context(|| format!("KV bucket `{KV_JOBS}` is missing: run `kanade jetstream setup`"))
}

async fn create(cli: &Cli, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let files = manifest_files(paths)?;
    // Everything is checked before anything is stored.
    let mut jobs = Vec::new();
    let mut failed = 0;
    for file in &files {
        match Job::load(file) {
            Ok(job) => jobs.push((file, job)),
            Err(err) => {
                failed += 1;
                output::note(&format!("error: {err}"));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} manifest(s) invalid; nothing was stored", files.len());
    }
    let client = connect(cli).await?;
    let kv = catalogue(&client).await?;
    let mut stored = Vec::new();
    for (file, job) in &jobs {
        let script_sha256 = match &job.source {
            ScriptSource::Object { name, version } => {
                let store = objects::open(&client, Store::Scripts).await?;
                let key = objects::key(name, version);
                match objects::find(&store, &key).await? {
                    Some(object) => Some(object.sha256),
                    None => bail!(
                        "{}: execute.script_object: `{key}` is not in the `scripts` object store (publish it with \
                         `kanade script publish {name} {version} <file>`); nothing was stored",
                        file.display()
                    ),
                }
            }
            _ => None,
        };
        let record = StoredJob {
            job: job.clone(),
            manifest: std::fs::read_to_string(file).unwrap_or_default(),
            script_sha256,
            created_at: chrono::Utc::now(),
            created_by: crate::audit::operator(),
        };
        stored.push(record);
    }
    let mut rows = Vec::new();
    for record in &stored {
        let existed = kv.get(record.job.id.as_str()).await.ok().flatten().is_some();
        kv.put(record.job.id.as_str(), serde_json::to_vec(record)?.into())
            .await
            .with_context(|| format!("cannot store job `{}`", record.job.id))?;
        let details = serde_json::json!({ "version": record.job.version, "script_sha256": record.script_sha256 });
        crate::audit::record(&client, "job-create", record.job.id.as_str(), details).await;
        rows.push(vec![
            record.job.id.to_string(),
            record.job.version.clone(),
            if existed { "updated".into() } else { "created".into() },
        ]);
    }
    match cli.output {
        Format::Json => output::json(&stored)?,
        Format::Table => output::table(&["JOB", "VERSION", "ACTION"], &rows),
    }
    Ok(ExitCode::SUCCESS)
}

async fn load_all(kv: &KvStore) -> anyhow::Result<Vec<StoredJob>> {
    let mut keys = kv.keys().await?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key?;
        if let Some(value) = kv.get(&key).await? {
            match serde_json::from_slice::<StoredJob>(&value) {
                Ok(job) => out.push(job),
                Err(err) => output::note(&format!("warning: job `{key}` in the catalogue is unreadable: {err}")),
            }
        }
    }
    out.sort_by(|a, b| a.job.id.cmp(&b.job.id));
    Ok(out)
}

async fn list(cli: &Cli) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let jobs = load_all(&catalogue(&client).await?).await?;
    match cli.output {
        Format::Json => output::json(&jobs)?,
        Format::Table => {
            let rows: Vec<Vec<String>> = jobs
                .iter()
                .map(|s| {
                    let mut row = summary(Path::new(""), &s.job);
                    row.remove(0);
                    row.push(s.job.description.clone());
                    row
                })
                .collect();
            output::table(&["JOB", "VERSION", "TARGET", "WAVES", "DESCRIPTION"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(cli: &Cli, id: &JobId) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let kv = catalogue(&client).await?;
    let Some(value) = kv.get(id.as_str()).await? else { bail!("no job `{id}` in the catalogue") };
    let stored: StoredJob = serde_json::from_slice(&value).with_context(|| format!("job `{id}` is unreadable"))?;
    match cli.output {
        Format::Json => output::json(&stored)?,
        Format::Table => output::raw(false, &stored.manifest),
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(cli: &Cli, id: &JobId) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let kv = catalogue(&client).await?;
    if kv.get(id.as_str()).await?.is_none() {
        bail!("no job `{id}` in the catalogue");
    }
    kv.delete(id.as_str()).await.with_context(|| format!("cannot delete job `{id}`"))?;
    crate::audit::record(&client, "job-delete", id.as_str(), serde_json::Value::Null).await;
    output::note(&format!("deleted job `{id}`"));
    Ok(ExitCode::SUCCESS)
}

/// The manifest files named by `paths`: files as given, directories' `*.yaml`/`*.yml` in name order.
pub fn manifest_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            found.sort();
            if found.is_empty() {
                anyhow::bail!("`{}` holds no *.yaml manifests", path.display());
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn validate(cli: &Cli, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let files = manifest_files(paths)?;
    let mut valid = Vec::new();
    let mut failed = 0;
    for file in &files {
        match Job::load(file) {
            Ok(job) => valid.push((file.as_path(), job)),
            Err(err) => {
                failed += 1;
                output::note(&format!("error: {err}"));
            }
        }
    }
    match cli.output {
        Format::Json => output::json(&valid.iter().map(|(_, job)| job).collect::<Vec<_>>())?,
        Format::Table => {
            let rows: Vec<Vec<String>> = valid.iter().map(|(file, job)| summary(file, job)).collect();
            output::table(&["FILE", "JOB", "VERSION", "TARGET", "WAVES"], &rows);
        }
    }
    if failed > 0 {
        output::note(&format!("{failed} of {} manifest(s) invalid", files.len()));
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(file: &Path, job: &Job) -> Vec<String> {
    let target = if job.targets.all {
        "all".to_owned()
    } else {
        let mut parts: Vec<String> = job.targets.groups.iter().map(|g| format!("group:{g}")).collect();
        parts.extend(job.targets.pcs.iter().map(|p| format!("pc:{p}")));
        parts.join(",")
    };
    vec![file.display().to_string(), job.id.to_string(), job.version.clone(), target, job.waves.len().to_string()]
}
