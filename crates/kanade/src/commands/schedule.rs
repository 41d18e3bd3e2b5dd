//! `kanade schedule create|validate|schema|list|show|delete|pause|resume|run-now`: schedules (`schedules/*.yaml`)
//! through the backend, which keeps them in the `schedules` KV bucket and whose leader fires them. A schedule file
//! is checked here first (`validate` and `schema` need nothing else), so a bad one fails without the backend.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use kanade_shared::api::{
    ErrorCode, ExecutionView, FireView, NoBody, RunNowView, ScheduleBody, ScheduleStoredView, ScheduleView,
};
use kanade_shared::manifest::{Job, Targets};
use kanade_shared::schedule::{self, Schedule, ScheduleId, Timing, When};
use serde::Serialize;
use serde_json::Value;

use crate::backend::{Backend, Refused};
use crate::commands::exec;
use crate::output::{self, Format};
use crate::{Cli, EXIT_USAGE};

/// Occurrences `validate` shows ahead, as many as the backend shows.
const NEXT_SHOWN: usize = 5;

const EXIT_CODES: &str = "Exit codes: 0 done; 1 kanade failed, the backend could not be reached or refused, or \
there is no such schedule; 2 bad input: arguments, a schedule file or id that is not valid (found here or by the \
backend).";

const RUN_NOW_EXIT_CODES: &str = "Exit codes: 0 fired (with --wait: every target answered ok); 1 kanade failed, \
the backend refused, no such schedule, or with --wait a target did not succeed; 2 bad arguments, or a schedule that \
cannot be run now (once per PC); 124 --wait-timeout passed first (the execution goes on).";

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Check a schedule file here, then store it through the backend: created, updated or unchanged.
    ///
    /// A job written inline under `job:` is registered in the catalogue with it, and the `script_file` it names is
    /// read relative to the schedule file and sent along. Prints the schedule (its job, when, state and next
    /// occurrences) on stdout; -o json: the backend's answer (the schedule, `action`, `job_action`).
    #[command(after_help = EXIT_CODES)]
    Create {
        /// The schedule file (YAML, at most 1 MiB).
        file: PathBuf,
    },
    /// Check a schedule file without storing anything (no backend needed); prints when it would fire next.
    #[command(after_help = EXIT_CODES)]
    Validate {
        /// The schedule file (YAML, at most 1 MiB).
        file: PathBuf,
    },
    /// Print the JSON schema of schedule files (for editors and CI).
    Schema,
    /// List the schedules: job, when, state, next occurrence and the latest fire.
    #[command(after_help = EXIT_CODES)]
    List,
    /// Show one schedule: its fields, next occurrences and its recent fires (newest first, up to 50).
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The schedule's id.
        #[arg(value_parser = parse_id)]
        id: ScheduleId,
    },
    /// Delete a schedule: nothing more fires (runs already going go on; its fires stay on record).
    #[command(after_help = EXIT_CODES)]
    Delete {
        /// The schedule's id.
        #[arg(value_parser = parse_id)]
        id: ScheduleId,
    },
    /// Pause a schedule: nothing fires until it is resumed. -o json: the schedule.
    #[command(after_help = EXIT_CODES)]
    Pause {
        /// The schedule's id.
        #[arg(value_parser = parse_id)]
        id: ScheduleId,
    },
    /// Resume a paused schedule: it fires again from now (what fell due while paused is not made up). -o json: the
    /// schedule.
    #[command(after_help = EXIT_CODES)]
    Resume {
        /// The schedule's id.
        #[arg(value_parser = parse_id)]
        id: ScheduleId,
    },
    /// Fire a schedule's job now, as the schedule would (its targets, waves, jitter, deadline), whatever its timing
    /// or pause say; prints the execution id.
    ///
    /// -o json: the backend's answer (`occurrence_id`, `exec_id`, `outcome`: `fired`, or `already_fired` when this
    /// second's occurrence was fired before); with --wait only the execution's last view, as `kanade exec --wait`.
    #[command(after_help = RUN_NOW_EXIT_CODES)]
    RunNow(RunNowArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunNowArgs {
    /// The schedule's id.
    #[arg(value_parser = parse_id)]
    pub id: ScheduleId,
    /// Show progress until every target has answered; exit 1 if any did not succeed.
    #[arg(long)]
    pub wait: bool,
    /// Stop waiting after this long and exit 124 (the execution goes on).
    #[arg(long, requires = "wait", value_parser = humantime::parse_duration)]
    pub wait_timeout: Option<Duration>,
}

/// A schedule id as the backend takes it: checked here, before anything is sent.
fn parse_id(raw: &str) -> Result<ScheduleId, String> {
    ScheduleId::new(raw).map_err(|err| err.to_string())
}

pub async fn run(cli: &Cli, command: &ScheduleCommand) -> anyhow::Result<ExitCode> {
    match command {
        ScheduleCommand::Schema => {
            output::raw(false, &schedule::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Validate { file } => validate(cli, file),
        ScheduleCommand::Create { file } => create(cli, file).await,
        ScheduleCommand::List => list(cli).await,
        ScheduleCommand::Show { id } => show(cli, id).await,
        ScheduleCommand::Delete { id } => delete(cli, id).await,
        ScheduleCommand::Pause { id } => set_enabled(cli, id, false).await,
        ScheduleCommand::Resume { id } => set_enabled(cli, id, true).await,
        ScheduleCommand::RunNow(args) => run_now(cli, args).await,
    }
}

/// A schedule file read and checked once (`schedule::read`), so the text sent is the text checked.
fn load(path: &Path) -> anyhow::Result<schedule::ScheduleText> {
    Ok(schedule::read(path)?)
}

/// Bad input is a usage error: says why and gives its exit code.
fn usage_error(err: &anyhow::Error) -> ExitCode {
    output::error(err);
    ExitCode::from(EXIT_USAGE)
}

/// The backend's refusals of bad input (a schedule or id that is not valid, a body it cannot take) exit as usage
/// errors; anything else (no such schedule, the backend unreachable) is the error it is.
fn refused(err: anyhow::Error) -> anyhow::Result<ExitCode> {
    let bad_input =
        [ErrorCode::InvalidSchedule, ErrorCode::InvalidScheduleId, ErrorCode::InvalidBody, ErrorCode::InvalidRequest];
    match err.downcast_ref::<Refused>() {
        Some(r) if bad_input.iter().any(|code| r.code == code.as_str()) => Ok(usage_error(&err)),
        _ => Err(err),
    }
}

/// A checked schedule file as `validate -o json` prints it.
#[derive(Serialize)]
struct Validated<'a> {
    file: String,
    schedule: &'a Schedule,
    #[serde(skip_serializing_if = "Option::is_none")]
    inline_job: Option<&'a Job>,
    next: Vec<DateTime<Utc>>,
}

fn validate(cli: &Cli, file: &Path) -> anyhow::Result<ExitCode> {
    let loaded = match load(file) {
        Ok(loaded) => loaded,
        Err(err) => return Ok(usage_error(&err)),
    };
    let schedule = &loaded.checked.schedule;
    let next = Timing::of(schedule).map(|t| t.upcoming(Utc::now(), NEXT_SHOWN)).unwrap_or_default();
    match cli.output {
        Format::Json => output::json(&Validated {
            file: file.display().to_string(),
            schedule,
            inline_job: loaded.checked.inline_job.as_ref(),
            next,
        })?,
        Format::Table | Format::Csv => {
            let row = vec![
                file.display().to_string(),
                schedule.id.to_string(),
                schedule.job_id.to_string(),
                when(schedule),
                next.first().map(time).unwrap_or_default(),
            ];
            output::table(&["FILE", "SCHEDULE", "JOB", "WHEN", "NEXT"], &[row]);
            if let Some(job) = &loaded.checked.inline_job {
                output::note(&format!(
                    "job `{}` {} is inline: it is registered with the schedule",
                    job.id, job.version
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn create(cli: &Cli, file: &Path) -> anyhow::Result<ExitCode> {
    let loaded = match load(file) {
        Ok(loaded) => loaded,
        Err(err) => return Ok(usage_error(&err)),
    };
    let body = ScheduleBody { schedule: loaded.text, files: loaded.script_file.into_iter().collect() };
    let raw = match Backend::new(cli)?.post("/api/schedules", &body).await {
        Ok(raw) => raw,
        Err(err) => return refused(err),
    };
    let stored: ScheduleStoredView = typed(raw.clone())?;
    let id = &stored.schedule.stored.schedule.id;
    output::note(&format!("{} schedule `{id}`", stored.action));
    if let Some(job_action) = &stored.job_action {
        let job = &stored.schedule.stored.schedule.job_id;
        output::note(&format!("{job_action} job `{job}` (inline in the schedule)"));
    }
    match cli.output {
        Format::Json => output::json(&raw)?,
        Format::Table | Format::Csv => print_fields(&stored.schedule),
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(cli: &Cli) -> anyhow::Result<ExitCode> {
    let raw = Backend::new(cli)?.get("/api/schedules", &[]).await?;
    if cli.output == Format::Json {
        output::json(&raw)?;
        return Ok(ExitCode::SUCCESS);
    }
    let views: Vec<ScheduleView> = typed(raw)?;
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            let schedule = &view.stored.schedule;
            vec![
                schedule.id.to_string(),
                schedule.job_id.to_string(),
                when(schedule),
                view.state.clone(),
                view.next.first().map(time).unwrap_or_default(),
                view.fires.first().map(last_fire).unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["ID", "JOB", "WHEN", "STATE", "NEXT", "LAST"];
    if cli.output == Format::Csv {
        output::csv(&header, &rows)?;
    } else {
        output::table(&header, &rows);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(cli: &Cli, id: &ScheduleId) -> anyhow::Result<ExitCode> {
    let raw = match Backend::new(cli)?.get(&format!("/api/schedules/{id}"), &[]).await {
        Ok(raw) => raw,
        Err(err) => return refused(err),
    };
    if cli.output == Format::Json {
        output::json(&raw)?;
        return Ok(ExitCode::SUCCESS);
    }
    let view: ScheduleView = typed(raw)?;
    print_fields(&view);
    if view.fires.is_empty() {
        output::note("no fires yet");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = view
        .fires
        .iter()
        .map(|fire| {
            vec![
                time(&fire.occurrence_at),
                outcome(fire),
                fire.exec_id.clone().unwrap_or_default(),
                fire.exec_status.clone().unwrap_or_default(),
                fire.decided_by.clone(),
                fire.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::raw(false, "\n");
    output::table(&["OCCURRENCE", "OUTCOME", "EXEC", "STATUS", "DECIDED BY", "REASON"], &rows);
    Ok(ExitCode::SUCCESS)
}

async fn delete(cli: &Cli, id: &ScheduleId) -> anyhow::Result<ExitCode> {
    if let Err(err) = Backend::new(cli)?.delete(&format!("/api/schedules/{id}"), &[]).await {
        return refused(err);
    }
    output::note(&format!("deleted schedule `{id}`: nothing more fires"));
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(cli: &Cli, id: &ScheduleId, enabled: bool) -> anyhow::Result<ExitCode> {
    let action = if enabled { "resume" } else { "pause" };
    let raw = match Backend::new(cli)?.post(&format!("/api/schedules/{id}/{action}"), &NoBody {}).await {
        Ok(raw) => raw,
        Err(err) => return refused(err),
    };
    let view: ScheduleView = typed(raw.clone())?;
    output::note(&match view.next.first() {
        _ if !enabled => format!("paused schedule `{id}`: nothing fires until `kanade schedule resume {id}`"),
        Some(next) => format!("resumed schedule `{id}` ({}): next at {}", view.state, time(next)),
        None => format!("resumed schedule `{id}` ({})", view.state),
    });
    if cli.output == Format::Json {
        output::json(&raw)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_now(cli: &Cli, args: &RunNowArgs) -> anyhow::Result<ExitCode> {
    let id = &args.id;
    let backend = Backend::new(cli)?;
    let raw = match backend.post(&format!("/api/schedules/{id}/run-now"), &NoBody {}).await {
        Ok(raw) => raw,
        Err(err) => return refused(err),
    };
    let fired: RunNowView = typed(raw.clone())?;
    let exec = &fired.exec_id;
    match cli.output {
        Format::Json if args.wait => {}
        Format::Json => output::json(&raw)?,
        Format::Table | Format::Csv => {
            output::raw(false, &format!("{exec}\n"));
            output::note(&match fired.outcome.as_str() {
                "fired" => format!("fired schedule `{id}` now: execution `{exec}`"),
                "already_fired" => format!("this second's run of schedule `{id}` was fired before: execution `{exec}`"),
                other => format!("schedule `{id}`: {other}, execution `{exec}`"),
            });
        }
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let view: ExecutionView = backend.get_as(&format!("/api/executions/{exec}"), &[]).await?;
    if cli.output != Format::Json {
        output::note(&exec::describe(&view));
    }
    exec::wait_for(cli, &backend, &view, args.wait_timeout).await
}

/// A backend answer read as one of the API's types (`-o json` prints it as it came instead).
fn typed<T: serde::de::DeserializeOwned>(raw: Value) -> anyhow::Result<T> {
    serde_json::from_value(raw).context("the backend's schedule is not what this CLI reads")
}

/// A time as the tables show it: RFC 3339 in UTC, to the second.
fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// When a schedule fires, in a few words: `cron */10 * * * * * (UTC)`, `every 10m`, `at ...`, `once per PC`.
fn when(schedule: &Schedule) -> String {
    match &schedule.when {
        When::Cron { pattern } => format!("cron {pattern} ({})", schedule.timezone),
        When::Every { every_ms } => {
            format!("every {}", humantime::format_duration(Duration::from_millis(*every_ms)))
        }
        When::At { at } => format!("at {}", time(at)),
        When::OncePerPc => "once per PC".to_owned(),
        When::OncePerVersion => "once per PC and job version".to_owned(),
    }
}

/// A fire's outcome, with how many occurrences a `missed` entry stands for.
fn outcome(fire: &FireView) -> String {
    match fire.count {
        Some(count) if count > 1 => format!("{} ({count})", fire.outcome),
        _ => fire.outcome.clone(),
    }
}

/// The latest fire in a list's row: outcome, time and the execution's status.
fn last_fire(fire: &FireView) -> String {
    let mut text = format!("{} {}", outcome(fire), time(&fire.occurrence_at));
    if let Some(status) = &fire.exec_status {
        text.push_str(&format!(" ({status})"));
    }
    text
}

fn targets(targets: &Option<Targets>) -> String {
    match targets {
        None => "the job's own".to_owned(),
        Some(t) if t.all => "all".to_owned(),
        Some(t) => {
            let mut parts: Vec<String> = t.groups.iter().map(|g| format!("group:{g}")).collect();
            parts.extend(t.pcs.iter().map(|p| format!("pc:{p}")));
            parts.join(",")
        }
    }
}

/// A schedule's fields and next occurrences, a `name: value` line each, on stdout.
fn print_fields(view: &ScheduleView) {
    let stored = &view.stored;
    let schedule = &stored.schedule;
    let duration = |d: &Duration| humantime::format_duration(*d).to_string();
    let mut lines: Vec<(&str, String)> = vec![("schedule", schedule.id.to_string())];
    if !schedule.description.is_empty() {
        lines.push(("description", schedule.description.clone()));
    }
    lines.push(("job", schedule.job_id.to_string()));
    lines.push(("when", when(schedule)));
    lines.push(("state", view.state.clone()));
    lines.push(("target", targets(&schedule.targets)));
    if let Some(waves) = &schedule.waves {
        let waves: Vec<String> = waves
            .iter()
            .map(|w| {
                let delay = if w.delay.is_zero() { String::new() } else { format!(" after {}", duration(&w.delay)) };
                format!("{}{delay} (halts over {}% failed)", w.group, w.max_failure_pct)
            })
            .collect();
        lines.push(("waves", waves.join(", ")));
    }
    lines.extend(schedule.jitter.as_ref().map(|j| ("jitter", duration(j))));
    lines.extend(schedule.deadline.as_ref().map(|d| ("deadline", duration(d))));
    lines.extend(schedule.not_before.as_ref().map(|t| ("not before", time(t))));
    lines.extend(schedule.not_after.as_ref().map(|t| ("not after", time(t))));
    if !schedule.when.is_once() {
        let misfire = match schedule.misfire {
            schedule::Misfire::RunOnce => format!("run_once (grace {})", duration(&schedule.grace)),
            other => other.as_str().to_owned(),
        };
        lines.push(("misfire", misfire));
        lines.push(("overlap", schedule.overlap.as_str().to_owned()));
    }
    lines.push(("created", format!("{} by {}", time(&stored.created_at), stored.created_by)));
    lines.push(("updated", format!("{} by {}", time(&stored.updated_at), stored.updated_by)));
    match view.next.split_first() {
        None => lines.push(("next", "none".to_owned())),
        Some((first, rest)) => {
            lines.push(("next", time(first)));
            lines.extend(rest.iter().map(|t| ("", time(t))));
        }
    }
    for (name, value) in lines {
        let label = if name.is_empty() { String::new() } else { format!("{name}:") };
        output::raw(false, &format!("{label:<13}{value}\n"));
    }
}
