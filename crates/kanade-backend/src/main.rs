//! `kanade-backend`: parses flags, sets up logging, loads the config and serves until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kanade_backend::config::{BackendConfig, SecurityConfig};
use kanade_shared::config::ProcessEnv;
use tokio_util::sync::CancellationToken;

/// kanade's backend: projects JetStream into SQL and serves the HTTP API.
///
/// The config file has `[backend]`, `[auth]`, `[log]`, `[nats]` and `[security]` (see
/// `deploy/backend.example.toml`).
/// Environment overrides: KANADE_LISTEN_ADDR (or KANADE_BIND_ADDR), KANADE_NATS_URL (comma list), KANADE_NATS_TOKEN,
/// KANADE_DATABASE_URL, else DATABASE_URL (sqlite://FILE, sqlite:FILE or postgres://...; default: the SQLite file
/// backend.db in the data dir, else in the working directory; a SQLite file is created when missing),
/// KANADE_BACKEND_DATA_DIR, KANADE_BACKEND_INSTANCE (this backend's name among replicas; default
/// <hostname>-<random>), KANADE_AUTH_STATIC_TOKEN, KANADE_AUTH_DISABLE=1 (loopback only), KANADE_SECURITY_DIR (the
/// `kanade security init` folder: enrolment on). Logging: KANADE_LOG,
/// else RUST_LOG, else `[log] level`; `[log] file` for daily rolling files instead of stderr.
#[derive(Debug, Parser)]
#[command(name = "kanade-backend", version)]
struct Flags {
    /// A TOML config file (optional).
    #[arg(long, short, env = "KANADE_BACKEND_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    // The config says where to log, so it is read before logging starts and its errors go to stderr.
    let config = match BackendConfig::load(flags.config.as_deref(), &ProcessEnv) {
        Ok(config) => config,
        Err(err) => return refuse(&format!("invalid configuration: {err}")),
    };
    let security = match SecurityConfig::load(flags.config.as_deref(), &ProcessEnv) {
        Ok(security) => security,
        Err(err) => return refuse(&format!("invalid configuration: {err}")),
    };
    let signing_key = match kanade_backend::config::signing_key_path(flags.config.as_deref(), &ProcessEnv) {
        Ok(key) => key,
        Err(err) => return refuse(&format!("invalid configuration: {err}")),
    };
    if let Err(err) = config.log.init_tracing() {
        return refuse(&err);
    }
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
        match kanade_backend::run(config, security, signing_key, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "backend failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// Exit 2 with `message` on stderr, for errors found before there is a log to write them to.
fn refuse(message: &str) -> ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("kanade-backend: {message}");
    }
    ExitCode::from(2)
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
