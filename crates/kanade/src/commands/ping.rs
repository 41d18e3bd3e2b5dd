//! `kanade ping <pc_id>`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_nats::{Client, Request, RequestErrorKind};
use kanade_shared::PcId;
use kanade_shared::subject;
use kanade_shared::wire::Heartbeat;
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

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("no agent `{0}` is connected: nobody answered its ping")]
    NoAgent(PcId),
    #[error("agent `{0}` did not answer within {1}")]
    TimedOut(PcId, String),
    #[error("agent `{0}` answered with an unreadable heartbeat")]
    Malformed(PcId, #[source] serde_json::Error),
    #[error("ping to `{0}` failed")]
    Other(PcId, #[source] async_nats::RequestError),
}

/// Pings `pc` and returns its heartbeat and the round-trip time.
pub async fn ping(client: &Client, pc: &PcId, timeout: Duration) -> Result<(Heartbeat, Duration), PingError> {
    let started = Instant::now();
    let reply =
        client.send_request(subject::ping(pc), Request::new().timeout(Some(timeout))).await.map_err(|err| match err
            .kind()
        {
            RequestErrorKind::NoResponders => PingError::NoAgent(pc.clone()),
            RequestErrorKind::TimedOut => {
                PingError::TimedOut(pc.clone(), humantime::format_duration(timeout).to_string())
            }
            _ => PingError::Other(pc.clone(), err),
        })?;
    let rtt = started.elapsed();
    let heartbeat = serde_json::from_slice(&reply.payload).map_err(|err| PingError::Malformed(pc.clone(), err))?;
    Ok((heartbeat, rtt))
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
        Format::Table => output::table(
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
