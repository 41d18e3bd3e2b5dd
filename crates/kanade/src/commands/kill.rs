//! `kanade kill <exec_id>` and `kanade kill --job <job>`: kill running and queued runs on every agent, straight
//! over NATS, so it works with the backend down. The kill is signed with the operator's key: agents outside what
//! the trust list lets that key reach ignore it.

use std::process::ExitCode;
use std::time::Duration;

use kanade_shared::wire::KillAck;
use kanade_shared::{ExecId, JobId};
use serde::Serialize;

use crate::output::{self, Format};
use crate::{Cli, connect};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["exec_id", "job"]))]
pub struct KillArgs {
    /// The execution to kill.
    pub exec_id: Option<ExecId>,
    /// Kill every execution of this job instead.
    #[arg(long, conflicts_with = "exec_id")]
    pub job: Option<JobId>,
    /// How long to collect confirmations from agents.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

#[derive(Serialize)]
struct KillOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    exec_id: Option<ExecId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<JobId>,
    killed: Vec<KillAck>,
}

pub async fn run(cli: &Cli, args: &KillArgs) -> anyhow::Result<ExitCode> {
    let signer = crate::signing_key(cli)?;
    let client = connect(cli).await?;
    let audit = crate::audit::auditor(&client);
    let (killed, target) = match (&args.exec_id, &args.job) {
        (Some(exec), _) => (kanade_ops::actions::kill(&audit, &signer, exec, args.wait).await?, exec.to_string()),
        (None, Some(job)) => (kanade_ops::actions::kill_job(&audit, &signer, job, args.wait).await?, job.to_string()),
        (None, None) => anyhow::bail!("name an execution to kill, or --job"),
    };
    match cli.output {
        Format::Json => output::json(&KillOutput { exec_id: args.exec_id.clone(), job_id: args.job.clone(), killed })?,
        Format::Table | Format::Csv => {
            if killed.is_empty() {
                output::note(&format!("kill sent for `{target}`; no agent reported a running or queued run"));
            } else {
                output::note(&format!("killed {} run(s) of `{target}`", killed.len()));
                let rows: Vec<Vec<String>> =
                    killed.iter().map(|ack| vec![ack.pc_id.to_string(), ack.exec_id.to_string()]).collect();
                output::table(&["PC", "EXEC"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
