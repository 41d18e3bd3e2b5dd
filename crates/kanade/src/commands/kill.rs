//! `kanade kill <exec_id>`: works with the backend down, straight over NATS.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::ExecId;
use kanade_shared::subject;
use kanade_shared::wire::KillAck;
use serde::Serialize;

use crate::output::{self, Format};
use crate::{Cli, connect};

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The execution to kill.
    pub exec_id: ExecId,
    /// How long to collect confirmations from agents.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

#[derive(Serialize)]
struct KillOutput {
    exec_id: ExecId,
    killed_on: Vec<String>,
}

/// Sends the kill and collects the agents' confirmations for `wait`.
pub async fn kill(client: &async_nats::Client, exec: &ExecId, wait: Duration) -> anyhow::Result<Vec<String>> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    client.publish_with_reply(subject::kill(exec), inbox, bytes::Bytes::new()).await?;
    client.flush().await?;
    let mut killed_on = Vec::new();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            Some(message) = replies.next() => {
                if let Ok(ack) = serde_json::from_slice::<KillAck>(&message.payload) {
                    killed_on.push(ack.pc_id.to_string());
                }
            }
            () = &mut deadline => break,
        }
    }
    killed_on.sort();
    Ok(killed_on)
}

pub async fn run(cli: &Cli, args: &KillArgs) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let killed_on = kill(&client, &args.exec_id, args.wait).await?;
    crate::audit::record(&client, "kill", args.exec_id.as_str(), serde_json::json!({ "killed_on": killed_on })).await;
    match cli.output {
        Format::Json => output::json(&KillOutput { exec_id: args.exec_id.clone(), killed_on })?,
        Format::Table => {
            if killed_on.is_empty() {
                output::note(&format!("kill sent for `{}`; no agent reported a running copy", args.exec_id));
            } else {
                output::note(&format!("killed `{}` on {} agent(s)", args.exec_id, killed_on.len()));
                output::table(&["PC"], &killed_on.into_iter().map(|pc| vec![pc]).collect::<Vec<_>>());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
