//! `kanade result`: results from the backend. `ls` lists them newest first, filtered by pc, exec, job and status, a
//! page at a time; `show <result_id>` prints one's fields and its inline output; `--full` streams the whole output
//! instead (`GET /api/results/{id}/output`), checked against its SHA-256.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use kanade_shared::api::{FullOutputInfo, OUTPUT_COMPLETE_HEADER, OUTPUT_SOURCE_HEADER, Page, ResultRow};
use kanade_shared::{ExecId, JobId, PcId, ResultId};
use sha2::{Digest, Sha256};

use crate::Cli;
use crate::backend::{Backend, PageArgs, field};
use crate::output::{self, Format};

#[derive(Debug, clap::Subcommand)]
pub enum ResultCommand {
    /// List results, newest first.
    Ls(LsArgs),
    /// Show one run's result: status, exit code, times and its inline output (`--full`: the whole output).
    ///
    /// Exit codes: 0 shown, 1 no such result, the backend refused, or the whole output did not arrive intact.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[arg(long)]
    pub pc: Option<PcId>,
    #[arg(long)]
    pub exec: Option<ExecId>,
    #[arg(long)]
    pub job: Option<JobId>,
    /// ok, failed, timeout, killed or skipped.
    #[arg(long, value_parser = ["ok", "failed", "timeout", "killed", "skipped"])]
    pub status: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The result id, `<exec_id>.<pc_id>`.
    #[arg(value_parser = parse_result_id)]
    pub result_id: ResultId,
    /// Stream the whole output as the script wrote it (beyond the inline part a result carries): stdout to stdout
    /// and stderr to stderr, or only `--stream` to stdout. Raw bytes; not with `-o json`.
    #[arg(long)]
    pub full: bool,
    /// With `--full`: only this stream, to stdout.
    #[arg(long, value_enum, requires = "full")]
    pub stream: Option<Stream>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

fn parse_result_id(raw: &str) -> Result<ResultId, String> {
    ResultId::parse(raw).map_err(|err| err.to_string())
}

pub async fn run(cli: &Cli, command: &ResultCommand) -> anyhow::Result<ExitCode> {
    match command {
        ResultCommand::Ls(args) => ls(cli, args).await,
        ResultCommand::Show(args) => show(cli, args).await,
    }
}

async fn ls(cli: &Cli, args: &LsArgs) -> anyhow::Result<ExitCode> {
    let mut query: Vec<(&str, String)> = Vec::new();
    query.extend(args.pc.as_ref().map(|v| ("pc_id", v.to_string())));
    query.extend(args.exec.as_ref().map(|v| ("exec_id", v.to_string())));
    query.extend(args.job.as_ref().map(|v| ("job_id", v.to_string())));
    query.extend(args.status.clone().map(|v| ("status", v)));
    let listed = Backend::new(cli)?.list("/api/results", &query, &args.page).await?;
    listed.print(cli.output, &["FINISHED", "PC", "EXEC", "JOB", "STATUS", "EXIT", "REASON"], |r| {
        ["finished_at", "pc_id", "exec_id", "job_id", "status", "exit_code", "reason"]
            .iter()
            .map(|k| field(r, k))
            .collect()
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn show(cli: &Cli, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    if args.full && cli.output == Format::Json {
        bail!("`--full` writes the raw output; it does not combine with `-o json`");
    }
    let backend = Backend::new(cli)?;
    let row = find(&backend, &args.result_id).await?;
    if !args.full {
        match cli.output {
            Format::Json => output::json(&row)?,
            Format::Table | Format::Csv => print_row(&row),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let streams: Vec<(Stream, bool)> = match args.stream {
        Some(stream) => vec![(stream, false)],
        None => vec![(Stream::Stdout, false), (Stream::Stderr, true)],
    };
    for (stream, to_stderr) in streams {
        let full = match stream {
            Stream::Stdout => row.stdout_full.as_ref(),
            Stream::Stderr => row.stderr_full.as_ref(),
        };
        fetch(&backend, &row.result_id, stream, full, to_stderr).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The result with this id (`GET /api/results?exec_id=&pc_id=`).
async fn find(backend: &Backend, id: &ResultId) -> anyhow::Result<ResultRow> {
    let (exec, pc) = id.as_str().split_once('.').context("a result id is `<exec_id>.<pc_id>`")?;
    let query = [("exec_id", exec.to_owned()), ("pc_id", pc.to_owned()), ("limit", "1".to_owned())];
    let page: Page<ResultRow> = backend.get_as("/api/results", &query).await?;
    page.items.into_iter().find(|r| r.result_id == id.as_str()).with_context(|| format!("no result `{id}` is stored"))
}

/// Streams one output to stdout (or stderr), checking the whole against its SHA-256 when it came from the store.
async fn fetch(
    backend: &Backend,
    id: &str,
    stream: Stream,
    full: Option<&FullOutputInfo>,
    to_stderr: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    let path = format!("/api/results/{id}/output");
    let mut response = backend.get_raw(&path, &[("stream", stream.as_str().to_owned())]).await?;
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let from_object = header(OUTPUT_SOURCE_HEADER).as_deref() == Some("object");
    let complete = header(OUTPUT_COMPLETE_HEADER).as_deref() != Some("false");
    let mut hash = Sha256::new();
    let mut written = 0u64;
    {
        let mut out: Box<dyn Write> =
            if to_stderr { Box::new(std::io::stderr().lock()) } else { Box::new(std::io::stdout().lock()) };
        while let Some(chunk) = response.chunk().await.with_context(|| format!("the {} broke off", stream.as_str()))? {
            hash.update(&chunk);
            written += chunk.len() as u64;
            // A closed pipe (`| head`) is the reader's choice, not an error.
            if out.write_all(&chunk).is_err() {
                return Ok(());
            }
        }
        let _ = out.flush();
    }
    if from_object
        && let Some(full) = full
        && (written != full.size || format!("{:x}", hash.finalize()) != full.sha256)
    {
        bail!(
            "the whole {} of `{id}` did not arrive intact ({written} of {} bytes, or another SHA-256)",
            stream.as_str(),
            full.size
        );
    }
    if !complete {
        let why = match full {
            Some(FullOutputInfo { unavailable: Some(why), .. }) => format!("only its inline part exists: {why}"),
            Some(info) if info.capped => "the agent kept only its beginning (`output_max_bytes`)".to_owned(),
            _ => "it was cut at the agent's limit".to_owned(),
        };
        output::note(&format!("note: the {} shown is not whole; {why}", stream.as_str()));
    }
    Ok(())
}

fn print_row(row: &ResultRow) {
    let mut lines = vec![
        format!("result:    {}", row.result_id),
        format!("job:       {} {}", row.job_id, row.version).trim_end().to_owned(),
        format!("pc:        {}", row.pc_id),
        match (row.exit_code, &row.reason) {
            (Some(code), _) => format!("status:    {} (exit {code})", row.status),
            (None, Some(reason)) => format!("status:    {} ({reason})", row.status),
            (None, None) => format!("status:    {}", row.status),
        },
    ];
    if let Some(started) = row.started_at {
        lines.push(format!("started:   {}", started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
    }
    lines.push(format!("finished:  {}", row.finished_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
    for line in lines {
        output::raw(false, &format!("{line}\n"));
    }
    for (name, text, cut, full) in [
        ("stdout", &row.stdout, row.stdout_truncated, row.stdout_full.as_ref()),
        ("stderr", &row.stderr, row.stderr_truncated, row.stderr_full.as_ref()),
    ] {
        output::raw(false, &format!("--- {name}{} ---\n", describe(text.len(), cut, full, &row.result_id)));
        output::raw(false, text);
        if !text.is_empty() && !text.ends_with('\n') {
            output::raw(false, "\n");
        }
    }
}

/// What the inline part of a stream is, next to its header: whole, or the beginning of how much, and how to get the
/// rest.
pub fn describe(inline: usize, cut: bool, full: Option<&FullOutputInfo>, id: &str) -> String {
    match full {
        Some(FullOutputInfo { unavailable: Some(why), size, .. }) => {
            format!(" (first {} of {}; the whole is unavailable: {why})", bytes(inline as u64), bytes(*size))
        }
        Some(info) => format!(
            " (first {} of {}{}; all of it: kanade result show {id} --full)",
            bytes(inline as u64),
            bytes(info.size),
            if info.capped { ", cut at the agent's output_max_bytes" } else { "" }
        ),
        None if cut => format!(" (first {}; the rest was not kept)", bytes(inline as u64)),
        None => String::new(),
    }
}

/// Bytes for people: `512 B`, `256.0 KiB`, `1.0 MiB`.
pub fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    match n {
        n if n < 1024 => format!("{n} B"),
        n if (n as f64) < KIB * KIB => format!("{:.1} KiB", n as f64 / KIB),
        n if (n as f64) < KIB * KIB * KIB => format!("{:.1} MiB", n as f64 / (KIB * KIB)),
        n => format!("{:.1} GiB", n as f64 / (KIB * KIB * KIB)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_descriptions_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(256 * 1024), "256.0 KiB");
        assert_eq!(bytes(1024 * 1024), "1.0 MiB");
        let info = FullOutputInfo { size: 1024 * 1024, sha256: String::new(), capped: false, unavailable: None };
        assert_eq!(describe(10, false, None, "r"), "");
        assert_eq!(describe(10, true, None, "r"), " (first 10 B; the rest was not kept)");
        assert_eq!(
            describe(10, true, Some(&info), "r"),
            " (first 10 B of 1.0 MiB; all of it: kanade result show r --full)"
        );
        let lost = FullOutputInfo { unavailable: Some("the agent's outbox was full".into()), ..info };
        assert!(describe(10, true, Some(&lost), "r").contains("unavailable: the agent's outbox was full"));
    }
}
