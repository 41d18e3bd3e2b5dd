//! `kanade exec`, `kanade deploy`, `kanade approve|reject` and `kanade executions`: firing jobs through the backend,
//! which stores each execution, holds it for approval when the job asks, and drives its rollout.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use kanade_shared::api::{DecisionBody, ErrorCode, ExecBody, ExecutionView, ManifestBody, WaveBody};
use kanade_shared::manifest::{Job, ScriptSource, Version};
use kanade_shared::waves::{self, WaveError, WaveSpec};
use kanade_shared::{ExecId, GroupName, JobId, PcId};
use serde_json::Value;

use crate::backend::{Backend, Refused, field};
use crate::output::{self, Format};
use crate::{Cli, EXIT_ERROR};

/// How often `--wait` asks the backend for progress.
const POLL: Duration = Duration::from_millis(500);

/// Exit code of `exec` and `deploy` for a job without a target fired without `--pcs`, `--groups` or `--all` (the
/// same code as any other bad arguments).
pub const EXIT_TARGETS_REQUIRED: u8 = 2;

const EXEC_EXIT_CODES: &str = "Exit codes: 0 fired (with --wait: every target answered ok); 1 kanade failed, or with \
--wait a target did not succeed; 2 bad arguments, or a job without a target of its own fired without --pcs, --groups \
or --all; 124 --wait-timeout passed first (the execution goes on).";

#[derive(Debug, clap::Args)]
#[command(after_help = EXEC_EXIT_CODES)]
pub struct ExecArgs {
    /// The job to fire, from the catalogue.
    pub job: JobId,
    /// Fire at these PCs (comma-separated) instead of the job's own targets. A job without a target of its own
    /// must be given --pcs, --groups or --all.
    #[arg(long, value_delimiter = ',')]
    pub pcs: Vec<PcId>,
    /// Fire at these groups (comma-separated) instead of the job's own targets; a job without a target of its own
    /// rolls out its waves over them.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<GroupName>,
    /// Fire at every agent instead of the job's own targets.
    #[arg(long, conflicts_with_all = ["pcs", "groups"])]
    pub all: bool,
    /// Roll out in waves of your own instead of the job's, one flag per wave in order:
    /// `--wave canary --wave lab:1h:10` (a group, how long after the previous wave, the failure percentage that
    /// halts the rollout). Without --groups or --all, the waves' groups are the targets.
    #[arg(long = "wave", value_name = "GROUP[:DELAY[:MAX_FAILURE_PCT]]", value_parser = parse_wave)]
    pub waves: Vec<WaveBody>,
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
#[command(after_help = EXEC_EXIT_CODES)]
pub struct DeployArgs {
    /// A job manifest: stored in the catalogue, then fired at its own targets with its rollout. A manifest without
    /// a target is refused (exit 2) and not stored: `kanade job create` it and `kanade exec <job> --pcs ...`.
    pub manifest: PathBuf,
    /// Store and fire the job as this version instead of the manifest's own (1-64 of A-Z a-z 0-9 . _ + -).
    #[arg(long, value_parser = parse_version)]
    pub version: Option<String>,
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
    /// pending_approval, rejected, starting, rolling_out, running, completed, halted or superseded; with an exec id,
    /// the targets in this state: pending, running, ok, failed, timeout, killed or skipped.
    #[arg(long)]
    pub status: Option<String>,
    /// Pages the executions, or with an exec id its targets (by pc id).
    #[command(flatten)]
    pub page: crate::backend::PageArgs,
}

/// Parses one `--wave` and checks it by the rollout rule the backend applies (`kanade_shared::waves`), so a
/// bad delay or percentage is refused before anything is sent; the backend checks the waves together.
fn parse_wave(raw: &str) -> Result<WaveBody, String> {
    let mut parts = raw.splitn(3, ':');
    let group = GroupName::new(parts.next().unwrap_or_default()).map_err(|e| e.to_string())?;
    let delay = match parts.next().filter(|d| !d.is_empty()) {
        Some(d) => Some((d, humantime::parse_duration(d).map_err(|e| format!("delay `{d}`: {e}"))?)),
        None => None,
    };
    let pct = parts.next();
    let bad_pct = || format!("max failure percentage `{}` is not a number from 0 to 100", pct.unwrap_or_default());
    let max_failure_pct = pct.map(|p| p.parse::<f64>().map_err(|_| bad_pct())).transpose()?;
    let spec = WaveSpec { group: group.clone(), delay: delay.map(|(_, d)| d), max_failure_pct };
    match waves::check_one(0, spec) {
        Ok(_) => {}
        Err(WaveError::FailurePct { .. }) => return Err(bad_pct()),
        Err(err) => return Err(format!("delay: {err}")),
    }
    Ok(WaveBody { group: group.to_string(), delay: delay.map(|(d, _)| d.to_owned()), max_failure_pct })
}

/// A version as a manifest's is checked.
fn parse_version(raw: &str) -> Result<String, String> {
    Version::new(raw).map(|v| v.as_str().to_owned())
}

/// Says that `job` needs targets named, in the flags' own words, and gives the exit code for it.
fn targets_required(job: &str) -> ExitCode {
    output::note(&format!(
        "error: job `{job}` has no target of its own: name them with --pcs <pc,...>, --groups <group,...> or --all"
    ));
    ExitCode::from(EXIT_TARGETS_REQUIRED)
}

/// The backend's refusal of a fire because the job has no target and none were named.
fn is_targets_required(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Refused>().is_some_and(|r| r.code == ErrorCode::TargetsRequired.as_str())
}

pub async fn exec(cli: &Cli, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let body = ExecBody {
        pcs: args.pcs.iter().map(ToString::to_string).collect(),
        groups: args.groups.iter().map(ToString::to_string).collect(),
        all: args.all,
        waves: args.waves.clone(),
        jitter: args.jitter.map(|d| humantime::format_duration(d).to_string()),
        deadline: args.deadline.map(|d| humantime::format_duration(d).to_string()),
    };
    let backend = Backend::new(cli)?;
    let view = match backend.post(&format!("/api/exec/{}", args.job), &body).await {
        Err(err) if is_targets_required(&err) => return Ok(targets_required(args.job.as_str())),
        other => other?,
    };
    fired(cli, &backend, view, args.wait.then_some(args.wait_timeout)).await
}

pub async fn deploy(cli: &Cli, args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let job = Job::load(&args.manifest)?;
    if job.targets.is_none() {
        // Refused before anything is stored or sent.
        let code = targets_required(job.id.as_str());
        output::note(&format!(
            "`kanade deploy` fires a manifest at its own target: add `target:` to `{}`, or `kanade job create` it \
             and `kanade exec {} --pcs ...`",
            args.manifest.display(),
            job.id
        ));
        return Ok(code);
    }
    let body = ManifestBody { version: args.version.clone(), ..manifest_body(&args.manifest)? };
    let backend = Backend::new(cli)?;
    let view = match backend.post("/api/deploy", &body).await {
        Err(err) if is_targets_required(&err) => return Ok(targets_required(job.id.as_str())),
        other => other?,
    };
    fired(cli, &backend, view, args.wait.then_some(args.wait_timeout)).await
}

/// The manifest as `POST /api/jobs|deploy` take it: its text, and the text of the `script_file` it names.
pub fn manifest_body(path: &Path) -> anyhow::Result<ManifestBody> {
    // Checked here first, for the file-and-line errors a local check gives.
    Job::load(path)?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut files = BTreeMap::new();
    if let ScriptSource::File { path: relative } = Job::from_yaml(&text)?.source {
        let file = path.parent().unwrap_or_else(|| Path::new(".")).join(&relative);
        let script = std::fs::read_to_string(&file).with_context(|| format!("cannot read `{}`", file.display()))?;
        files.insert(relative.to_string_lossy().into_owned(), script);
    }
    Ok(ManifestBody { manifest: text, files, version: None })
}

/// Exit code of `--wait` when `--wait-timeout` passed first.
pub const EXIT_WAIT_TIMEOUT: u8 = 124;

/// Prints the new execution's id at once (stdout), then follows it if asked (`wait`: `Some(limit)`).
/// `-o json` prints the backend's answer as it came, so a newer backend's fields reach scripts too.
async fn fired(cli: &Cli, backend: &Backend, raw: Value, wait: Option<Option<Duration>>) -> anyhow::Result<ExitCode> {
    let view = execution(raw.clone())?;
    let exec = view.exec_id.clone();
    match cli.output {
        Format::Json if wait.is_none() => output::json(&raw)?,
        Format::Json => {}
        Format::Table | Format::Csv => {
            output::raw(false, &format!("{exec}\n"));
            output::note(&describe(&view));
        }
    }
    let Some(limit) = wait else { return Ok(ExitCode::SUCCESS) };
    wait_for(cli, backend, &view, limit).await
}

/// Follows a fired execution as `--wait` does (progress on stderr; with `-o json` its last view on stdout) until
/// it has finished or `limit` passed, and gives `--wait`'s exit code: 0 every target ok, 1 not, 124 timed out.
pub(crate) async fn wait_for(
    cli: &Cli,
    backend: &Backend,
    view: &ExecutionView,
    limit: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let exec = &view.exec_id;
    if view.status == "pending_approval" {
        output::note(&format!("waiting for another operator: `kanade approve {exec}` (or `kanade reject {exec}`)"));
    }
    let (last_raw, last, timed_out) = follow(backend, exec, limit).await?;
    if cli.output == Format::Json {
        output::json(&last_raw)?;
    } else {
        output::note(&summary(&last));
    }
    if timed_out {
        output::note(&format!("stopped waiting; `{exec}` goes on (`kanade executions {exec}`)"));
        return Ok(ExitCode::from(EXIT_WAIT_TIMEOUT));
    }
    Ok(if succeeded(&last) { ExitCode::SUCCESS } else { ExitCode::from(EXIT_ERROR) })
}

/// An execution as the API shows it, read from the backend's answer.
fn execution(raw: Value) -> anyhow::Result<ExecutionView> {
    serde_json::from_value(raw).context("the backend's execution is not what this CLI reads")
}

pub(crate) fn describe(view: &ExecutionView) -> String {
    let waves = view.waves.len();
    format!(
        "execution `{}` of `{}` {}: {} target(s){}, {}",
        view.exec_id,
        view.job_id,
        view.version,
        view.target_count,
        if waves > 0 { format!(" in {waves} wave(s)") } else { String::new() },
        view.status.replace('_', " "),
    )
}

fn count(view: &ExecutionView, status: &str) -> i64 {
    view.by_status.get(status).copied().unwrap_or(0)
}

fn progress_line(view: &ExecutionView) -> String {
    let total = view.target_count;
    // `pending` counts targets that have not started; running ones are not done either.
    let done = total - view.pending - count(view, "running");
    let failed: i64 = ["failed", "timeout", "killed"].iter().map(|s| count(view, s)).sum();
    let mut line = format!("{done}/{total} done, {} ok, {failed} failed", count(view, "ok"));
    let skipped = count(view, "skipped");
    if skipped > 0 {
        line.push_str(&format!(", {skipped} skipped"));
    }
    line.push_str(&format!(" [{}]", view.status));
    if !view.waves.is_empty() {
        let sent = view.waves.iter().filter(|w| w.state == "sent").count();
        line.push_str(&format!(" wave {sent}/{}", view.waves.len()));
    }
    line
}

/// Whether `--wait` is done with the execution: the backend says when it is settled, so the CLI, the dashboard and
/// the `status` filter cannot each decide it their own way.
fn finished(view: &ExecutionView) -> bool {
    view.settled
}

fn succeeded(view: &ExecutionView) -> bool {
    view.status == "completed" && view.by_status.iter().all(|(s, n)| s == "ok" || *n == 0)
}

fn summary(view: &ExecutionView) -> String {
    let mut text = progress_line(view);
    if let Some(reason) = &view.status_reason {
        text.push_str(&format!("\n{reason}"));
    }
    text
}

/// Polls the execution until it has finished (or `limit` passed: then `true`), showing progress on stderr; the
/// last answer as it came and as read.
async fn follow(
    backend: &Backend,
    exec: &str,
    limit: Option<Duration>,
) -> anyhow::Result<(Value, ExecutionView, bool)> {
    let started = tokio::time::Instant::now();
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut last_line = String::new();
    loop {
        let raw = backend.get(&format!("/api/executions/{exec}"), &[]).await?;
        let view = execution(raw.clone())?;
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
            return Ok((raw, view, false));
        }
        if limit.is_some_and(|limit| started.elapsed() >= limit) {
            bar.finish_and_clear();
            return Ok((raw, view, true));
        }
        bar.tick();
        tokio::time::sleep(POLL).await;
    }
}

pub async fn decide(cli: &Cli, args: &DecideArgs, approve: bool) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    let path = format!("/api/executions/{}/{}", args.exec_id, if approve { "approve" } else { "reject" });
    let raw = backend.post(&path, &DecisionBody { reason: args.reason.clone() }).await?;
    match cli.output {
        Format::Json => output::json(&raw)?,
        Format::Table | Format::Csv => output::note(&describe(&execution(raw)?)),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn executions(cli: &Cli, args: &ExecutionsArgs) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    if let Some(exec) = &args.exec_id {
        let raw = backend.get(&format!("/api/executions/{exec}"), &[]).await?;
        match cli.output {
            Format::Json => output::json(&raw)?,
            Format::Table | Format::Csv => {
                let view = execution(raw)?;
                output::note(&describe(&view));
                output::note(&summary(&view));
                let rows: Vec<Vec<String>> = view
                    .waves
                    .iter()
                    .map(|w| {
                        vec![
                            w.wave.to_string(),
                            w.group.clone(),
                            w.state.clone(),
                            w.targets.to_string(),
                            format!("{:.1}%", w.failure_pct),
                            w.sent_at.or(w.due_at).map(|t| rfc3339(&t)).unwrap_or_default(),
                        ]
                    })
                    .collect();
                if !rows.is_empty() {
                    output::table(&["WAVE", "GROUP", "STATE", "TARGETS", "FAILED", "SENT/DUE"], &rows);
                }
                let query: Vec<(&str, String)> = args.status.clone().map(|s| ("status", s)).into_iter().collect();
                let targets = backend.list(&format!("/api/executions/{exec}/targets"), &query, &args.page).await?;
                targets.print(cli.output, &["PC", "WAVE", "STATE", "EXIT", "FINISHED", "REASON"], |t| {
                    ["pc_id", "wave", "state", "exit_code", "finished_at", "reason"]
                        .iter()
                        .map(|k| field(t, k))
                        .collect()
                })?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut query = Vec::new();
    query.extend(args.job.as_ref().map(|j| ("job_id", j.to_string())));
    query.extend(args.status.clone().map(|s| ("status", s)));
    let listed = backend.list("/api/executions", &query, &args.page).await?;
    let views: Vec<ExecutionView> = listed
        .items
        .iter()
        .map(|v| serde_json::from_value(v.clone()))
        .collect::<Result<_, _>>()
        .context("the backend's executions are not what this CLI reads")?;
    let rows = views
        .iter()
        .map(|v| {
            vec![
                v.exec_id.clone(),
                v.job_id.clone(),
                v.version.clone(),
                v.status.clone(),
                progress_line(v),
                v.requested_by.clone().unwrap_or_default(),
            ]
        })
        .collect();
    listed.print_rows(cli.output, &["EXEC", "JOB", "VERSION", "STATUS", "PROGRESS", "BY"], rows)?;
    Ok(ExitCode::SUCCESS)
}

/// A time as the API wrote it (RFC 3339, UTC, `Z`), for tables that showed the API's text before it was typed.
fn rfc3339(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
