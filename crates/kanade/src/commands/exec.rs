//! `kanade exec`, `kanade deploy`, `kanade approve|reject` and `kanade executions`: firing jobs through the backend,
//! which stores each execution, holds it for approval when the job asks, and drives its rollout.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use kanade_shared::manifest::{Job, ScriptSource};
use kanade_shared::{ExecId, GroupName, JobId, PcId};
use serde_json::Value;

use crate::backend::Backend;
use crate::output::{self, Format};
use crate::{Cli, EXIT_ERROR};

/// How often `--wait` asks the backend for progress.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The job to fire, from the catalogue.
    pub job: JobId,
    /// Fire at these PCs (comma-separated) instead of the job's own targets.
    #[arg(long, value_delimiter = ',')]
    pub pcs: Vec<PcId>,
    /// Fire at these groups (comma-separated) instead of the job's own targets.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<GroupName>,
    /// Fire at every agent instead of the job's own targets.
    #[arg(long)]
    pub all: bool,
    /// Roll out in waves of your own instead of the job's, one flag per wave in order:
    /// `--wave canary --wave lab:1h:10` (a group, how long after the previous wave, the failure percentage that
    /// halts the rollout). Without --groups or --all, the waves' groups are the targets.
    #[arg(long = "wave", value_name = "GROUP[:DELAY[:MAX_FAILURE_PCT]]", value_parser = parse_wave)]
    pub waves: Vec<WaveArg>,
    /// Each agent waits a random time up to this before it starts (overrides the job's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub jitter: Option<Duration>,
    /// A run that has not started this long after it was sent is skipped as expired (overrides the job's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub deadline: Option<Duration>,
    /// Show progress until every target has answered; exit 1 if any did not succeed.
    #[arg(long)]
    pub wait: bool,
    /// Stop waiting after this long and exit 124 (the execution goes on).
    #[arg(long, requires = "wait", value_parser = humantime::parse_duration)]
    pub wait_timeout: Option<Duration>,
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// A job manifest: stored in the catalogue, then fired at its own targets with its rollout.
    pub manifest: PathBuf,
    /// Show progress until every target has answered; exit 1 if any did not succeed.
    #[arg(long)]
    pub wait: bool,
    /// Stop waiting after this long and exit 124 (the execution goes on).
    #[arg(long, requires = "wait", value_parser = humantime::parse_duration)]
    pub wait_timeout: Option<Duration>,
}

#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    pub exec_id: ExecId,
    /// Why (kept in the execution and the audit trail).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExecutionsArgs {
    /// Show this execution with its waves and its results.
    pub exec_id: Option<ExecId>,
    #[arg(long)]
    pub job: Option<JobId>,
    /// pending_approval, rejected, starting, rolling_out, running, completed, halted or superseded.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

/// One `--wave`, as `POST /api/exec` takes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WaveArg {
    group: GroupName,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_failure_pct: Option<f64>,
}

fn parse_wave(raw: &str) -> Result<WaveArg, String> {
    let mut parts = raw.splitn(3, ':');
    let group = GroupName::new(parts.next().unwrap_or_default()).map_err(|e| e.to_string())?;
    let delay = match parts.next().filter(|d| !d.is_empty()) {
        Some(d) => Some(humantime::parse_duration(d).map(|_| d.to_owned()).map_err(|e| format!("delay `{d}`: {e}"))?),
        None => None,
    };
    let max_failure_pct = match parts.next() {
        Some(p) => match p.parse::<f64>() {
            Ok(pct) if (0.0..=100.0).contains(&pct) => Some(pct),
            _ => return Err(format!("max failure percentage `{p}` is not a number from 0 to 100")),
        },
        None => None,
    };
    Ok(WaveArg { group, delay, max_failure_pct })
}

pub async fn exec(cli: &Cli, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({
        "pcs": args.pcs,
        "groups": args.groups,
        "all": args.all,
        "waves": args.waves,
        "jitter": args.jitter.map(|d| humantime::format_duration(d).to_string()),
        "deadline": args.deadline.map(|d| humantime::format_duration(d).to_string()),
    });
    let backend = Backend::new(cli)?;
    let view = backend.post(&format!("/api/exec/{}", args.job), &body).await?;
    fired(cli, &backend, view, args.wait.then_some(args.wait_timeout)).await
}

pub async fn deploy(cli: &Cli, args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let body = manifest_body(&args.manifest)?;
    let backend = Backend::new(cli)?;
    let view = backend.post("/api/deploy", &body).await?;
    fired(cli, &backend, view, args.wait.then_some(args.wait_timeout)).await
}

/// The manifest as `POST /api/jobs|deploy` take it: its text, and the text of the `script_file` it names.
pub fn manifest_body(path: &Path) -> anyhow::Result<Value> {
    // Checked here first, for the file-and-line errors a local check gives.
    Job::load(path)?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut files = BTreeMap::new();
    if let ScriptSource::File { path: relative } = Job::from_yaml(&text)?.source {
        let file = path.parent().unwrap_or_else(|| Path::new(".")).join(&relative);
        let script = std::fs::read_to_string(&file).with_context(|| format!("cannot read `{}`", file.display()))?;
        files.insert(relative.to_string_lossy().into_owned(), script);
    }
    Ok(serde_json::json!({ "manifest": text, "files": files }))
}

/// Exit code of `--wait` when `--wait-timeout` passed first.
pub const EXIT_WAIT_TIMEOUT: u8 = 124;

/// Prints the new execution's id at once (stdout), then follows it if asked (`wait`: `Some(limit)`).
async fn fired(cli: &Cli, backend: &Backend, view: Value, wait: Option<Option<Duration>>) -> anyhow::Result<ExitCode> {
    let exec = view["exec_id"].as_str().unwrap_or_default().to_owned();
    match cli.output {
        Format::Json if wait.is_none() => output::json(&view)?,
        Format::Json => {}
        Format::Table => {
            output::raw(false, &format!("{exec}\n"));
            output::note(&describe(&view));
        }
    }
    let Some(limit) = wait else { return Ok(ExitCode::SUCCESS) };
    if view["status"] == "pending_approval" {
        output::note(&format!("waiting for another operator: `kanade approve {exec}` (or `kanade reject {exec}`)"));
    }
    let (last, timed_out) = follow(backend, &exec, limit).await?;
    if cli.output == Format::Json {
        output::json(&last)?;
    } else {
        output::note(&summary(&last));
    }
    if timed_out {
        output::note(&format!("stopped waiting; `{exec}` goes on (`kanade executions {exec}`)"));
        return Ok(ExitCode::from(EXIT_WAIT_TIMEOUT));
    }
    Ok(if succeeded(&last) { ExitCode::SUCCESS } else { ExitCode::from(EXIT_ERROR) })
}

fn describe(view: &Value) -> String {
    let waves = view["waves"].as_array().map_or(0, Vec::len);
    format!(
        "execution `{}` of `{}` {}: {} target(s){}, {}",
        view["exec_id"].as_str().unwrap_or_default(),
        view["job_id"].as_str().unwrap_or_default(),
        view["version"].as_str().unwrap_or_default(),
        view["target_count"],
        if waves > 0 { format!(" in {waves} wave(s)") } else { String::new() },
        view["status"].as_str().unwrap_or_default().replace('_', " "),
    )
}

fn count(view: &Value, status: &str) -> i64 {
    view["by_status"][status].as_i64().unwrap_or(0)
}

fn progress_line(view: &Value) -> String {
    let total = view["target_count"].as_i64().unwrap_or(0);
    // `pending` counts targets that have not started; running ones are not done either.
    let done = total - view["pending"].as_i64().unwrap_or(0) - count(view, "running");
    let failed: i64 = ["failed", "timeout", "killed"].iter().map(|s| count(view, s)).sum();
    let mut line = format!("{done}/{total} done, {} ok, {failed} failed", count(view, "ok"));
    let skipped = count(view, "skipped");
    if skipped > 0 {
        line.push_str(&format!(", {skipped} skipped"));
    }
    line.push_str(&format!(" [{}]", view["status"].as_str().unwrap_or_default()));
    if let Some(waves) = view["waves"].as_array().filter(|w| !w.is_empty()) {
        let sent = waves.iter().filter(|w| w["state"] == "sent").count();
        line.push_str(&format!(" wave {sent}/{}", waves.len()));
    }
    line
}

/// Whether `--wait` is done with the execution: the backend says when it is settled, so the CLI, the dashboard and
/// the `status` filter cannot each decide it their own way.
fn finished(view: &Value) -> bool {
    view["settled"] == true
}

fn succeeded(view: &Value) -> bool {
    view["status"] == "completed"
        && view["by_status"].as_object().is_none_or(|counts| counts.iter().all(|(s, n)| s == "ok" || n == 0))
}

fn summary(view: &Value) -> String {
    let mut text = progress_line(view);
    if let Some(reason) = view["status_reason"].as_str() {
        text.push_str(&format!("\n{reason}"));
    }
    text
}

/// Polls the execution until it has finished (or `limit` passed: then `true`), showing progress on stderr.
async fn follow(backend: &Backend, exec: &str, limit: Option<Duration>) -> anyhow::Result<(Value, bool)> {
    let started = tokio::time::Instant::now();
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut last_line = String::new();
    loop {
        let view = backend.get(&format!("/api/executions/{exec}"), &[]).await?;
        let line = progress_line(&view);
        if line != last_line {
            if bar.is_hidden() {
                output::note(&line);
            } else {
                bar.set_message(line.clone());
            }
            last_line = line;
        }
        if finished(&view) {
            bar.finish_and_clear();
            return Ok((view, false));
        }
        if limit.is_some_and(|limit| started.elapsed() >= limit) {
            bar.finish_and_clear();
            return Ok((view, true));
        }
        bar.tick();
        tokio::time::sleep(POLL).await;
    }
}

pub async fn decide(cli: &Cli, args: &DecideArgs, approve: bool) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    let path = format!("/api/executions/{}/{}", args.exec_id, if approve { "approve" } else { "reject" });
    let view = backend.post(&path, &serde_json::json!({ "reason": args.reason })).await?;
    match cli.output {
        Format::Json => output::json(&view)?,
        Format::Table => output::note(&describe(&view)),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn executions(cli: &Cli, args: &ExecutionsArgs) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    if let Some(exec) = &args.exec_id {
        let view = backend.get(&format!("/api/executions/{exec}"), &[]).await?;
        match cli.output {
            Format::Json => output::json(&view)?,
            Format::Table => {
                output::note(&describe(&view));
                output::note(&summary(&view));
                let rows: Vec<Vec<String>> = view["waves"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|w| {
                        vec![
                            w["wave"].to_string(),
                            w["group"].as_str().unwrap_or_default().to_owned(),
                            w["state"].as_str().unwrap_or_default().to_owned(),
                            w["targets"].to_string(),
                            format!("{:.1}%", w["failure_pct"].as_f64().unwrap_or(0.0)),
                            w["sent_at"].as_str().or(w["due_at"].as_str()).unwrap_or_default().to_owned(),
                        ]
                    })
                    .collect();
                if !rows.is_empty() {
                    output::table(&["WAVE", "GROUP", "STATE", "TARGETS", "FAILED", "SENT/DUE"], &rows);
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut query = vec![("limit", args.limit.to_string())];
    query.extend(args.job.as_ref().map(|j| ("job_id", j.to_string())));
    query.extend(args.status.clone().map(|s| ("status", s)));
    let list = backend.get("/api/executions", &query).await?;
    match cli.output {
        Format::Json => output::json(&list)?,
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                    vec![
                        text("exec_id"),
                        text("job_id"),
                        text("version"),
                        text("status"),
                        progress_line(v),
                        text("requested_by"),
                    ]
                })
                .collect();
            output::table(&["EXEC", "JOB", "VERSION", "STATUS", "PROGRESS", "BY"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}
