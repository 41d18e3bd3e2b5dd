//! `kanade run <pc_id> [--shell sh] [--timeout 60s] -- <script>`: an ad-hoc command to one PC, its output shown
//! live, and the remote exit code as our own.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use kanade_shared::resources::STREAM_RESULTS;
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Command, ExecResult, OutputChunk, OutputStream, ResultStatus, Shell};
use kanade_shared::{ExecId, JobId, PcId};

use crate::output::{self, Format};
use crate::{Cli, connect};

/// Exit code when the run timed out (as coreutils `timeout`).
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code when the agent skipped the run (unsupported shell, expired, ...).
pub const EXIT_SKIPPED: u8 = 125;
/// Exit code when the run was killed (128 + SIGKILL).
pub const EXIT_KILLED: u8 = 137;
/// Exit code when kanade itself could not get the script run or its result back (as ssh does).
pub const EXIT_RUN_ERROR: u8 = 255;
/// Exit code for bad command-line input.
pub const EXIT_USAGE: u8 = 2;

/// How long the target agent has to answer the liveness ping before the run is refused.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How long after the script's timeout we keep waiting for its result (the agent must kill, collect and publish).
const RESULT_GRACE: Duration = Duration::from_secs(30);
/// A run that has not started by then is skipped as expired, should it reach the agent late.
const START_DEADLINE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: the script's own exit code (1 when it has none that fits); 124 timed out; \
    125 skipped by the agent; 137 killed; 2 bad arguments; 255 kanade could not run the script or get its result \
    (agent offline, NATS unreachable).\n\nExample: kanade run pc-1 -- 'echo hello'")]
pub struct RunArgs {
    /// The target agent's pc_id.
    pub pc_id: PcId,
    /// Shell to run the script with [default: powershell on Windows agents, sh elsewhere].
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Shell::KNOWN))]
    pub shell: Option<String>,
    /// Kill the script's whole process tree after this long.
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// The script, after `--`.
    #[arg(last = true, value_name = "SCRIPT")]
    pub script: Vec<String>,
}

fn parse_timeout(raw: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(raw).map_err(|e| format!("{e}; write e.g. `30s` or `5m`"))?;
    if timeout.is_zero() {
        return Err("must be greater than zero".into());
    }
    if timeout > kanade_shared::wire::MAX_TIMEOUT {
        return Err(format!("must be at most {}", humantime::format_duration(kanade_shared::wire::MAX_TIMEOUT)));
    }
    Ok(timeout)
}

pub async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let script = args.script.join(" ");
    if script.trim().is_empty() {
        output::note("error: missing script: put it after `--`, e.g. `kanade run pc-1 -- 'echo hello'`");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    if script.len() > kanade_shared::wire::MAX_SCRIPT_BYTES {
        output::note(&format!(
            "error: script is {} bytes; the limit is {}",
            script.len(),
            kanade_shared::wire::MAX_SCRIPT_BYTES
        ));
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    match execute(cli, args, script).await {
        Ok(code) => Ok(code),
        Err(err) => {
            output::error(&err);
            Ok(ExitCode::from(EXIT_RUN_ERROR))
        }
    }
}

fn default_shell(os: &str) -> Shell {
    if os == "windows" { Shell::Powershell } else { Shell::Sh }
}

async fn execute(cli: &Cli, args: &RunArgs, script: String) -> anyhow::Result<ExitCode> {
    let signer = crate::signing_key(cli)?;
    let client = connect(cli).await?;
    let pc = &args.pc_id;
    let (heartbeat, _) = kanade_ops::agents::ping(&client, pc, PING_TIMEOUT).await?;

    let exec = ExecId::generate();
    let job = JobId::adhoc(&exec);
    let now = Utc::now();
    let command = Command {
        exec_id: exec.clone(),
        job_id: job.clone(),
        version: String::new(),
        shell: args.shell.as_deref().map_or_else(|| default_shell(&heartbeat.os), Shell::parse),
        script,
        timeout: args.timeout,
        issued_at: now,
        deadline: chrono::Duration::from_std(START_DEADLINE).ok().map(|d| now + d),
        jitter: None,
        run_as: Default::default(),
        cwd: None,
        consent: None,
    };
    command.validate()?;

    // Subscribe before publishing, so not even the first chunk can be missed.
    let mut chunks = client.subscribe(subject::output(pc, &exec)).await?;
    let mut results = client.subscribe(subject::result(pc, &exec)).await?;
    client.flush().await?;

    // Published as every command is (`Nats-Msg-Id` `<exec>:<subject>`), so a retry is stored once.
    kanade_ops::control::publish(&client, &signer, &Target::Pc(pc.clone()), &command)
        .await
        .context("the broker did not store the command (has `kanade jetstream setup` run?)")?;
    let js = jetstream::new(client.clone());
    crate::audit::record(
        &client,
        "run",
        pc.as_str(),
        serde_json::json!({ "exec_id": exec, "shell": command.shell, "timeout_ms": command.timeout.as_millis() as u64 }),
    )
    .await;
    if std::io::stderr().is_terminal() && cli.output != Format::Json {
        output::note(&format!("kanade: exec {exec} on {pc} (stop it with `kanade kill {exec}`)"));
    }

    let live = cli.output != Format::Json;
    let mut shown = Shown::default();
    let patience = tokio::time::sleep(args.timeout + RESULT_GRACE);
    tokio::pin!(patience);
    let mut kill_sent = false;
    let result = loop {
        tokio::select! {
            Some(message) = chunks.next() => shown.take(&message.payload, live),
            Some(message) = results.next() => {
                match serde_json::from_slice::<ExecResult>(&message.payload) {
                    Ok(result) => break result,
                    Err(err) => tracing::warn!(error = %err, "unreadable result message"),
                }
            }
            _ = tokio::signal::ctrl_c(), if !kill_sent => {
                kill_sent = true;
                output::note(&format!("kanade: killing exec {exec} (Ctrl-C again to stop waiting)"));
                kanade_ops::control::kill(&client, &signer, &exec, Duration::from_millis(200)).await?;
            }
            _ = tokio::signal::ctrl_c(), if kill_sent => {
                anyhow::bail!("stopped waiting for exec `{exec}`; its result will still reach the backend");
            }
            () = &mut patience => {
                // The live message may have been missed (a reconnect); the stream has it if it was published.
                match stored_result(&js, pc, &exec).await {
                    Some(result) => break result,
                    None => anyhow::bail!(
                        "no result from `{pc}` within {}; the run may still finish: look for exec `{exec}` in the backend's /api/results",
                        humantime::format_duration(args.timeout + RESULT_GRACE)
                    ),
                }
            }
        }
    };
    // Chunks already received but not yet handled come before the result.
    while let Some(Some(message)) = chunks.next().now_or_never() {
        shown.take(&message.payload, live);
    }

    match cli.output {
        Format::Json => output::json(&result)?,
        Format::Table | Format::Csv => {
            shown.complete(OutputStream::Stdout, &result.stdout);
            shown.complete(OutputStream::Stderr, &result.stderr);
            let kept_whole =
                |full: &Option<kanade_shared::wire::FullOutput>| full.as_ref().is_some_and(|f| f.unavailable.is_none());
            if kept_whole(&result.stdout_full) || kept_whole(&result.stderr_full) {
                output::note(&format!(
                    "kanade: output was cut at the agent's output limit; all of it: kanade result show {} --full",
                    result.result_id
                ));
            } else if result.stdout_truncated || result.stderr_truncated {
                output::note("kanade: output was cut at the agent's output limit");
            }
            if let Some(message) = summary(&result, args.timeout) {
                output::note(&message);
            }
        }
    }
    Ok(ExitCode::from(exit_code(&result)))
}

async fn stored_result(js: &jetstream::Context, pc: &PcId, exec: &ExecId) -> Option<ExecResult> {
    let stream = js.get_stream(STREAM_RESULTS).await.ok()?;
    let message = stream.direct_get_last_for_subject(subject::result(pc, exec)).await.ok()?;
    serde_json::from_slice(&message.payload).ok()
}

/// What has been printed live so far, to complete it from the result if chunks were lost.
#[derive(Default)]
struct Shown {
    stdout: String,
    stderr: String,
    next_seq: u64,
    gap: bool,
}

impl Shown {
    fn take(&mut self, payload: &[u8], live: bool) {
        let Ok(chunk) = serde_json::from_slice::<OutputChunk>(payload) else { return };
        if chunk.seq != self.next_seq {
            self.gap = true;
        }
        self.next_seq = chunk.seq + 1;
        if !live {
            return;
        }
        let to_stderr = chunk.stream == OutputStream::Stderr;
        output::raw(to_stderr, &chunk.data);
        if to_stderr { self.stderr.push_str(&chunk.data) } else { self.stdout.push_str(&chunk.data) }
    }

    /// Prints whatever of the final output did not arrive live.
    fn complete(&self, stream: OutputStream, full: &str) {
        let (printed, to_stderr) = match stream {
            OutputStream::Stdout => (&self.stdout, false),
            OutputStream::Stderr => (&self.stderr, true),
        };
        if printed == full {
            return;
        }
        match full.strip_prefix(printed.as_str()) {
            Some(rest) if !self.gap => output::raw(to_stderr, rest),
            _ => {
                output::note("kanade: live output was incomplete; the full captured output follows");
                output::raw(to_stderr, full);
            }
        }
    }
}

fn summary(result: &ExecResult, timeout: Duration) -> Option<String> {
    let reason = result.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
    match result.status {
        ResultStatus::Ok => None,
        ResultStatus::Failed => match result.exit_code {
            Some(code) => (!(0..=255).contains(&code)).then(|| format!("kanade: script failed with exit code {code}")),
            None => Some(format!("kanade: script failed{reason}")),
        },
        ResultStatus::Timeout => Some(format!(
            "kanade: timed out after {}; its process tree was killed",
            humantime::format_duration(timeout)
        )),
        ResultStatus::Killed => Some(format!("kanade: killed{reason}")),
        ResultStatus::Skipped => Some(format!("kanade: the agent skipped the run{reason}")),
        ResultStatus::Unknown => Some("kanade: the agent reported a status this CLI does not know".into()),
    }
}

/// The process exit code for a result.
pub fn exit_code(result: &ExecResult) -> u8 {
    match result.status {
        ResultStatus::Ok => 0,
        ResultStatus::Failed => result.exit_code.and_then(|c| u8::try_from(c).ok()).filter(|c| *c != 0).unwrap_or(1),
        ResultStatus::Timeout => EXIT_TIMEOUT,
        ResultStatus::Killed => EXIT_KILLED,
        ResultStatus::Skipped => EXIT_SKIPPED,
        ResultStatus::Unknown => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_validated() {
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_timeout("0s").unwrap_err().contains("greater than zero"));
        assert!(parse_timeout("8days").unwrap_err().contains("at most"));
        assert!(parse_timeout("soon").unwrap_err().contains("write e.g."));
    }

    #[test]
    fn windows_agents_default_to_powershell() {
        assert_eq!(default_shell("windows"), Shell::Powershell);
        assert_eq!(default_shell("linux"), Shell::Sh);
    }
}
