//! `kanade result ls`: results from the backend, newest first, filtered by pc, exec, job and status, a page at a
//! time.

use std::process::ExitCode;

use kanade_shared::{ExecId, JobId, PcId};

use crate::Cli;
use crate::backend::{Backend, PageArgs, field};

#[derive(Debug, clap::Subcommand)]
pub enum ResultCommand {
    /// List results, newest first.
    Ls(LsArgs),
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

pub async fn run(cli: &Cli, command: &ResultCommand) -> anyhow::Result<ExitCode> {
    match command {
        ResultCommand::Ls(args) => ls(cli, args).await,
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
