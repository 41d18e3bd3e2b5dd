//! `kanade-agent`: parses flags, sets up logging, loads the config and runs the agent until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
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
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    init_tracing();
    let hostname = gethostname_lossy();
    let config = match AgentConfig::load(flags.config.as_deref(), &ProcessEnv, &hostname) {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %err, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                kanade_agent::platform::shutdown_signal().await;
                tracing::info!("shutdown requested");
                shutdown.cancel();
            }
        });
        match kanade_agent::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "agent failed");
                ExitCode::FAILURE
            }
        }
    })
}

fn gethostname_lossy() -> String {
    sysinfo::System::host_name().unwrap_or_default()
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KANADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
