//! `kanade job schema|validate`: the manifest format, and checking manifests before they go anywhere.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kanade_shared::manifest::{self, Job};

use crate::output::{self, Format};
use crate::{Cli, EXIT_ERROR};

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
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
    }
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
