//! `kanade job create|list|show|delete|validate|schema`: the job catalogue in the `jobs` KV bucket, kept straight
//! over NATS so it works with the backend down.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use kanade_ops::catalogue::{Catalogue, Stored};
use kanade_shared::JobId;
use kanade_shared::manifest::{self, Job, StoredJob};

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

async fn catalogue(cli: &Cli) -> anyhow::Result<Catalogue> {
    Ok(Catalogue::open(&connect(cli).await?).await?)
}

/// Loads every manifest under `paths`; all must be valid, or none is returned.
pub fn load_all(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, Job)>> {
    let files = manifest_files(paths)?;
    let mut jobs = Vec::new();
    let mut failed = 0;
    for file in files.iter() {
        match Job::load(file) {
            Ok(job) => jobs.push((file.clone(), job)),
            Err(err) => {
                failed += 1;
                output::note(&format!("error: {err}"));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} manifest(s) invalid; nothing was stored", files.len());
    }
    Ok(jobs)
}

/// Checks every manifest, then stores them all (straight into the `jobs` KV bucket, so it works with the backend
/// down) and audits each; returns what was stored.
pub async fn store_all(cli: &Cli, paths: &[PathBuf]) -> anyhow::Result<Vec<(StoredJob, Stored)>> {
    let jobs = load_all(paths)?;
    let client = connect(cli).await?;
    let catalogue = Catalogue::open(&client).await?;
    let mut records = Vec::new();
    for (file, job) in jobs {
        let manifest = std::fs::read_to_string(&file).with_context(|| format!("cannot read `{}`", file.display()))?;
        let record = catalogue
            .prepare(job, manifest, &crate::audit::operator())
            .await
            .map_err(|err| anyhow::anyhow!("{}: {err}; nothing was stored", file.display()))?;
        records.push(record);
    }
    let audit = crate::audit::auditor(&client);
    let mut stored = Vec::new();
    for record in records {
        let action = kanade_ops::actions::store_job(&catalogue, &audit, &record).await?;
        stored.push((record, action));
    }
    Ok(stored)
}

async fn create(cli: &Cli, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let stored = store_all(cli, paths).await?;
    match cli.output {
        Format::Json => output::json(&stored.iter().map(|(record, _)| record).collect::<Vec<_>>())?,
        Format::Table | Format::Csv => {
            let rows: Vec<Vec<String>> = stored
                .iter()
                .map(|(record, action)| {
                    vec![record.job.id.to_string(), record.job.version.clone(), action.as_str().to_owned()]
                })
                .collect();
            output::table(&["JOB", "VERSION", "ACTION"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(cli: &Cli) -> anyhow::Result<ExitCode> {
    let (jobs, unreadable) = catalogue(cli).await?.list().await?;
    for key in unreadable {
        output::note(&format!("warning: job `{key}` in the catalogue is unreadable"));
    }
    match cli.output {
        Format::Json => output::json(&jobs)?,
        Format::Table | Format::Csv => {
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
    let Some(stored) = catalogue(cli).await?.get(id).await? else { bail!("no job `{id}` in the catalogue") };
    match cli.output {
        Format::Json => output::json(&stored)?,
        Format::Table | Format::Csv => {
            output::raw(false, &stored.manifest);
            if stored.job.targets.is_none() {
                output::note(&format!("target: {NO_TARGET} (`kanade exec {id} --pcs|--groups|--all`)"));
            }
            let written = Job::from_yaml(&stored.manifest).map(|job| job.version).unwrap_or_default();
            if written != stored.job.version {
                output::note(&format!("stored as version `{}` (the manifest says `{written}`)", stored.job.version));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(cli: &Cli, id: &JobId) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let catalogue = Catalogue::open(&client).await?;
    if !kanade_ops::actions::delete_job(&catalogue, &crate::audit::auditor(&client), id).await? {
        bail!("no job `{id}` in the catalogue");
    }
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
        Format::Table | Format::Csv => {
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

/// What `TARGET` says of a job without a target of its own.
pub const NO_TARGET: &str = "none: choose at fire time";

fn summary(file: &Path, job: &Job) -> Vec<String> {
    let target = match &job.targets {
        None => NO_TARGET.to_owned(),
        Some(targets) if targets.all => "all".to_owned(),
        Some(targets) => {
            let mut parts: Vec<String> = targets.groups.iter().map(|g| format!("group:{g}")).collect();
            parts.extend(targets.pcs.iter().map(|p| format!("pc:{p}")));
            parts.join(",")
        }
    };
    vec![file.display().to_string(), job.id.to_string(), job.version.clone(), target, job.waves.len().to_string()]
}
