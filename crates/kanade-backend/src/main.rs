//! `kanade-backend`: parses flags, sets up logging, loads the config and serves until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kanade_backend::config::BackendConfig;
use kanade_shared::config::ProcessEnv;
use tokio_util::sync::CancellationToken;

/// kanade's backend: projects JetStream into SQL and serves the HTTP API.
///
/// Environment overrides: KANADE_BIND_ADDR, KANADE_NATS_URL (comma list), KANADE_NATS_TOKEN, KANADE_DATABASE_URL
/// (sqlite://... or postgres://...; default: a SQLite file in the data dir), KANADE_BACKEND_DATA_DIR,
/// KANADE_AUTH_STATIC_TOKEN, KANADE_AUTH_DISABLE=1 (loopback only). Logging: KANADE_LOG.
#[derive(Debug, Parser)]
#[command(name = "kanade-backend", version)]
struct Flags {
    /// A TOML config file (optional).
    #[arg(long, short, env = "KANADE_BACKEND_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KANADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match BackendConfig::load(flags.config.as_deref(), &ProcessEnv) {
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
                shutdown_signal().await;
                tracing::info!("shutdown requested");
                shutdown.cancel();
            }
        });
        match kanade_backend::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "backend failed");
                ExitCode::FAILURE
            }
        }
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
