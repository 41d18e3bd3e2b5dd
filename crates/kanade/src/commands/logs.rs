//! `kanade logs <pc> [--lines N] [--since 1h] [--follow]`: the tail of an agent's own log file, asked of the agent
//! over `agents.<pc>.logs` (core request/reply, works with the backend down). Each request is audited as `logs`.
//!
//! `--follow` asks again every second from the position the previous answer gave, across the agent's daily
//! rotation, until Ctrl-C; an agent that stops answering for a while is asked again, not given up on.

use std::process::ExitCode;
use std::time::Duration;

use kanade_ops::logs::{self, LogsError};
use kanade_shared::PcId;
use kanade_shared::wire::{DEFAULT_LOG_LINES, LogsReply, LogsRequest, MAX_LOG_LINES};
use serde_json::json;

use crate::output::{self, Format};
use crate::{Cli, EXIT_USAGE, connect};

/// How often `--follow` asks for what is new.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The agent's pc_id.
    pub pc_id: PcId,
    /// The newest N lines (default 100; with --since, every line in that time, up to 10000).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LOG_LINES)))]
    pub lines: Option<u32>,
    /// Only lines logged within this long (`30m`, `1h`, `2d`), by the agent's clock.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Keep printing new lines as the agent logs them, until Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
    /// How long to wait for each answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub async fn run(cli: &Cli, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let lines = args.lines.unwrap_or(if args.since.is_some() { MAX_LOG_LINES } else { DEFAULT_LOG_LINES });
    let first = LogsRequest { lines: Some(lines), since: args.since, after: None };
    if let Err(err) = first.validate() {
        output::note(&format!("error: {err}"));
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let client = connect(cli).await?;
    let answer = logs::request(&client, &args.pc_id, &first, args.timeout).await;
    if matches!(&answer, Ok(_) | Err(LogsError::Refused { .. })) {
        // The request reached the agent: it is on record whatever the agent answered.
        let since = args.since.map(|since| humantime::format_duration(since).to_string());
        let details = json!({"lines": lines, "since": since, "follow": args.follow});
        crate::audit::record(&client, "logs", args.pc_id.as_str(), details).await;
    }
    let reply = answer?;
    if !args.follow {
        match cli.output {
            Format::Json => output::json(&json!({
                "pc_id": args.pc_id, "lines": reply.lines, "position": reply.position, "truncated": reply.truncated,
            }))?,
            Format::Table | Format::Csv => print_lines(&reply),
        }
        if reply.truncated && cli.output != Format::Json {
            output::note("(cut: more was there than one answer carries; ask for fewer --lines or a shorter --since)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    follow(cli, args, &client, reply).await
}

async fn follow(cli: &Cli, args: &LogsArgs, client: &async_nats::Client, first: LogsReply) -> anyhow::Result<ExitCode> {
    let mut position = first.position.clone();
    emit(cli, &args.pc_id, &first);
    let mut silent = false;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
        let request = LogsRequest { lines: Some(MAX_LOG_LINES), since: None, after: position.clone() };
        match logs::request(client, &args.pc_id, &request, args.timeout).await {
            Ok(reply) => {
                if std::mem::take(&mut silent) {
                    output::note(&format!("`{}` answers again", args.pc_id));
                }
                emit(cli, &args.pc_id, &reply);
                position = reply.position.or(position);
            }
            // A restarting agent, a busy one, a moment without the broker: keep asking until Ctrl-C.
            Err(err @ (LogsError::NoAgent(_) | LogsError::TimedOut(..) | LogsError::Other(..))) => {
                if !std::mem::replace(&mut silent, true) {
                    output::note(&format!("warning: {err}; still asking"));
                }
            }
            Err(LogsError::Refused { code, .. }) if code == "busy" => {}
            Err(err) => return Err(err.into()),
        }
    }
}

fn emit(cli: &Cli, pc: &PcId, reply: &LogsReply) {
    match cli.output {
        // One JSON object per answer, on one line, so a script can read the stream as it comes.
        Format::Json => {
            if !reply.lines.is_empty() || reply.truncated {
                let line = json!({"pc_id": pc, "lines": reply.lines, "position": reply.position,
                    "truncated": reply.truncated});
                output::raw(false, &format!("{line}\n"));
            }
        }
        Format::Table | Format::Csv => {
            print_lines(reply);
            if reply.truncated {
                output::note("(some lines were cut or skipped: more was logged than one answer carries)");
            }
        }
    }
}

fn print_lines(reply: &LogsReply) {
    let text: String = reply.lines.iter().map(|line| format!("{line}\n")).collect();
    output::raw(false, &text);
}
