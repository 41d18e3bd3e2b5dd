//! kanade's benchmarks at fleet scale. `kanade-bench fanout` (`fanout`): fan-out through kanade against raw NATS
//! in the same run, reconnect storm, heartbeat load, memory and an idle agent (BENCHMARKS.md); `kanade-bench
//! sync` (`sync`): what `sync_interval: always` costs (docs/RELIABILITY.md); `kanade-bench lists` (`lists`): the
//! lists' pages at 10,000 agents, in the API and in Chromium (BENCHMARKS.md); `kanade-bench inventory`
//! (`inventory`): inventory ingest and queries at 10,000 agents (BENCHMARKS.md); `kanade-bench perf` (`perf`): live
//! performance at 10,000 agents — rollups, history, live streams and one real agent's cost (BENCHMARKS.md);
//! `kanade-bench schedules` (`schedules`): schedules at 10,000 agents — timed fires against firing by hand, the idle
//! leader, once-per-PC with PCs that join later (BENCHMARKS.md); `kanade-bench identities` (`identities`): what
//! every agent having its own NATS connection and credential costs the broker, against agents sharing the
//! simulator's (BENCHMARKS.md); `kanade-bench signatures` (`signatures`): what a signed command costs its signer and each
//! agent, per message (BENCHMARKS.md); `kanade-bench client` (`client`): what kanade-client's side of the agent
//! costs at 10,000 agents — notifications live and read back, runs held for consent (BENCHMARKS.md). This file parses the flags and dispatches.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod client;
mod database;
mod fanout;
mod identities;
mod inventory;
mod lists;
mod output;
mod perf;
mod procs;
mod raw;
mod schedules;
mod signatures;
mod stats;
mod sync;

use clap::Parser;

use crate::fanout::FanoutArgs;
use crate::sync::SyncArgs;

#[derive(Debug, Parser)]
#[command(name = "kanade-bench", about = "kanade's fleet-scale benchmarks")]
enum Cli {
    /// Fan-out, heartbeat load, memory and idle-agent figures for each fleet size.
    Fanout(FanoutArgs),
    /// What `sync_interval: always` costs: result publishes acknowledged by a server that syncs every write,
    /// against the same on a default server, in the same run.
    Sync(SyncArgs),
    /// The lists at fleet size: API page latency, and the Agents and an execution's pages in Chromium.
    Lists(lists::ListsArgs),
    /// Inventory at fleet size: first full reports, a change-only round and the queries, on SQLite and PostgreSQL.
    Inventory(inventory::InventoryArgs),
    /// Live performance at fleet size: rollups, history, live streams of watched PCs, and one real agent's cost.
    Perf(perf::PerfArgs),
    /// Schedules at fleet size: a 10 s cron's fires against the same fired by hand, the idle leader, and a
    /// once-per-PC schedule with PCs that join later, on SQLite and PostgreSQL.
    Schedules(schedules::SchedulesArgs),
    /// kanade-client's side of the agent at fleet scale: the idle fleet with and without it, a notification to
    /// every PC live and read back after a restart, and a job asking for consent fired at every PC.
    Client(client::ClientArgs),
    /// Per-agent NATS identities: N agents each on its own connection with its own credential, against the same
    /// agents sharing a few connections with the simulator's credential (connect time, broadcast, broker CPU and RSS).
    Identities(identities::IdentitiesArgs),
    /// Signed commands per message: signing, and an agent's read and check, against decoding the command's JSON.
    Signatures(signatures::SignaturesArgs),
    /// A script's output decoded as the agent decodes it (UTF-8, else the OEM code page), per MiB, against
    /// `String::from_utf8_lossy`.
    Output(output::OutputArgs),
    /// (Internal) the agents of `identities`, run as their own process.
    #[command(hide = true)]
    IdentityAgents(identities::AgentsArgs),
    /// (Internal) reads /proc once a second until killed: the reference of the perf benchmark's agent figures.
    #[command(hide = true)]
    ProcReader,
    /// (Internal) the raw-NATS reference agents, run as their own process.
    RawAgents {
        #[arg(long)]
        nats_url: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        connections: usize,
        /// The simulator's credential.
        #[arg(long)]
        nats_creds: std::path::PathBuf,
        /// The fleet's CA.
        #[arg(long)]
        nats_ca: std::path::PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KANADE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if matches!(cli, Cli::ProcReader) {
        perf::proc_reader();
    }
    if !matches!(cli, Cli::RawAgents { .. } | Cli::IdentityAgents(_) | Cli::Signatures(_)) {
        kanade_testkit::use_nats_server_binary(procs::obtain_nats_server()?);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    match cli {
        Cli::RawAgents { nats_url, count, connections, nats_creds, nats_ca } => {
            runtime.block_on(raw::agents(&nats_url, count, connections, &nats_creds, &nats_ca))
        }
        Cli::Sync(args) => runtime.block_on(sync::run(args)),
        Cli::Lists(args) => lists::main(args, &runtime),
        Cli::Inventory(args) => inventory::main(args, &runtime),
        Cli::Perf(args) => perf::main(args, &runtime),
        Cli::Schedules(args) => schedules::main(args, &runtime),
        Cli::Client(args) => client::main(args, &runtime),
        Cli::Identities(args) => identities::main(args, &runtime),
        Cli::Signatures(args) => signatures::main(args),
        Cli::Output(args) => output::main(args),
        Cli::IdentityAgents(args) => runtime.block_on(identities::agents(args)),
        Cli::ProcReader => unreachable!("handled before the runtime starts"),
        Cli::Fanout(args) => {
            let bin = procs::build_binaries()?;
            runtime.block_on(fanout::run(args, &bin))
        }
    }
}
