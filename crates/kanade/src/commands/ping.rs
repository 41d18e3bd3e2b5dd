//! `kanade ping <pc_id>`.

use std::process::ExitCode;
use std::time::Duration;

// The ping itself lives in kanade-ops so the backend's `POST /api/agents/{pc}/ping` is the same request.
use kanade_ops::agents::ping;
use kanade_shared::PcId;
use serde::Serialize;

use crate::output::{self, Format};
use crate::{Cli, connect};

#[derive(Debug, clap::Args)]
pub struct PingArgs {
    /// The agent's pc_id.
    pub pc_id: PcId,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Serialize)]
struct PingOutput<'a> {
    pc_id: &'a PcId,
    hostname: &'a str,
    os: &'a str,
    agent_version: &'a str,
    uptime_secs: u64,
    rtt_ms: f64,
}

pub async fn run(cli: &Cli, args: &PingArgs) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let (hb, rtt) = ping(&client, &args.pc_id, args.timeout).await?;
    let rtt_ms = rtt.as_secs_f64() * 1000.0;
    match cli.output {
        Format::Json => output::json(&PingOutput {
            pc_id: &hb.pc_id,
            hostname: &hb.hostname,
            os: &hb.os,
            agent_version: &hb.agent_version,
            uptime_secs: hb.uptime_secs,
            rtt_ms,
        })?,
        Format::Table | Format::Csv => output::table(
            &["PC", "VERSION", "OS", "UPTIME", "RTT"],
            &[vec![
                hb.pc_id.to_string(),
                hb.agent_version.clone(),
                hb.os.clone(),
                humantime::format_duration(Duration::from_secs(hb.uptime_secs)).to_string(),
                format!("{rtt_ms:.1}ms"),
            ]],
        ),
    }
    Ok(ExitCode::SUCCESS)
}
