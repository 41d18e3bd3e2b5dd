//! `kanade-agent`: parses flags, sets up logging, loads the config and runs the agent (or the fleet simulator)
//! until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kanade_agent::simulate::{SimulateArgs, Simulation};
use kanade_shared::config::{AgentConfig, ProcessEnv};
use tokio_util::sync::CancellationToken;

/// kanade's endpoint agent: connects outbound to NATS, runs the commands addressed to this PC and reports results.
///
/// Environment overrides: KANADE_AGENT_ID, KANADE_AGENT_GROUPS (comma list), KANADE_AGENT_DATA_DIR,
/// KANADE_NATS_URL (comma list), KANADE_NATS_TOKEN. Logging: KANADE_LOG (e.g. `info`, `kanade_agent=debug`).
#[derive(Debug, Parser)]
#[command(name = "kanade-agent", version = kanade_agent::VERSION)]
struct Flags {
    /// A TOML config file (optional; the agent runs with no file at all).
    #[arg(long, short, env = "KANADE_AGENT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run many emulated agents in this process over the real agent code, to measure the system at fleet scale.
    ///
    /// Prints one JSON line on stdout once every agent is subscribed, then runs until Ctrl-C or SIGTERM.
    Simulate(SimulateArgs),
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    // Keeps the version marker in the binary for `kanade agent publish` (it costs one pointer read).
    let _ = kanade_agent::version_marker().len();
    init_tracing(if flags.command.is_some() { "warn" } else { "info" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match flags.command {
        Some(Command::Simulate(args)) => runtime.block_on(simulate(args)),
        None => {
            // Self-update first: a new binary's start is counted (and a failing one rolled back) before its
            // config is read, so a release that rejects the config file is rolled back like one that crashes.
            match std::env::current_exe() {
                Ok(exe) => kanade_agent::update::enable(exe),
                Err(err) => tracing::warn!(error = %err, "cannot locate this executable; self-update is off"),
            }
            if kanade_agent::update::on_start(kanade_agent::VERSION) == kanade_agent::update::Start::RestartIntoOld {
                return ExitCode::from(kanade_agent::update::EXIT_UPDATED);
            }
            // A fault-injection build for the self-update test (`KANADE_BUILD_BROKEN=1` at build time): a release
            // that fails as soon as it starts, the way one that rejects the existing config file would.
            if option_env!("KANADE_BUILD_BROKEN").is_some() {
                tracing::error!("this build is broken on purpose (KANADE_BUILD_BROKEN)");
                return ExitCode::FAILURE;
            }
            let hostname = sysinfo::System::host_name().unwrap_or_default();
            let config = match AgentConfig::load(flags.config.as_deref(), &ProcessEnv, &hostname) {
                Ok(config) => config,
                Err(err) => {
                    tracing::error!(error = %err, "invalid configuration");
                    return ExitCode::from(2);
                }
            };
            runtime.block_on(agent(config))
        }
    }
}

fn shutdown_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            kanade_agent::platform::shutdown_signal().await;
            tracing::info!("shutdown requested");
            shutdown.cancel();
        }
    });
    shutdown
}

async fn agent(config: AgentConfig) -> ExitCode {
    match kanade_agent::run(config, shutdown_on_signal()).await {
        Ok(()) if kanade_agent::update::updated() => ExitCode::from(kanade_agent::update::EXIT_UPDATED),
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "agent failed");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
async fn simulate(args: SimulateArgs) -> ExitCode {
    let shutdown = shutdown_on_signal();
    let simulation = match Simulation::start(&args).await {
        Ok(simulation) => simulation,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "simulation failed to start");
            return ExitCode::FAILURE;
        }
    };
    let ready = serde_json::json!({
        "ready": simulation.count,
        "connections": simulation.connections,
        "data_dir": simulation.data_dir,
        "pid": std::process::id(),
    });
    println!("{ready}");
    shutdown.cancelled().await;
    simulation.stop().await;
    ExitCode::SUCCESS
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KANADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
