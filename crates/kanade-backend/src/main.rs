//! `kanade-backend`: parses flags, sets up logging, loads the config and serves until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kanade_backend::config::{BackendConfig, SecurityConfig};
use kanade_shared::config::EnvWithFallback;
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
#[command(name = "kanade-backend", version = kanade_backend::version::version())]
struct Flags {
    /// A TOML config file (optional).
    #[arg(long, short, env = "KANADE_BACKEND_CONFIG", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run as a Windows service named `kanade-backend`, under the service control manager: its stop and shutdown
    /// requests stop the backend as SIGTERM does. Elsewhere the same as no subcommand (systemd runs it in the
    /// foreground: deploy/kanade-backend.service). As a service it also reads the installer's secrets: on Windows
    /// the REG_SZ values of HKLM\SOFTWARE\Kanade\backend named like the variables above (KANADE_AUTH_STATIC_TOKEN,
    /// KANADE_NATS_TOKEN, ...), for the variables the environment leaves unset.
    Service,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    // As a service, the installer's secrets (Windows: HKLM\SOFTWARE\Kanade\backend) fill unset variables.
    let secrets = match flags.command {
        Some(Command::Service) => kanade_service::secrets::machine_secrets("backend"),
        None => kanade_service::secrets::Secrets::default(),
    };
    let env = EnvWithFallback { fallback: secrets.values.iter().cloned().collect() };
    // The config says where to log, so it is read before logging starts and its errors go to stderr.
    let config = match BackendConfig::load(flags.config.as_deref(), &env) {
        Ok(config) => config,
        Err(err) => return refuse(&format!("invalid configuration: {err}")),
    };
    let security = match SecurityConfig::load(flags.config.as_deref(), &env) {
        Ok(security) => security,
        Err(err) => return refuse(&format!("invalid configuration: {err}")),
    };
    let signing_key = match kanade_backend::config::signing_key_path(flags.config.as_deref(), &env) {
        Ok(key) => key,
        Err(err) => return refuse(&format!("invalid configuration: {err}")),
    };
    // A Windows service also writes its warnings, errors, start and stop to the Application Event Log.
    let event_log = match flags.command {
        Some(Command::Service) => kanade_service::event_log_layer("kanade-backend"),
        None => None,
    };
    if let Err(err) = config.log.init_tracing_with(event_log) {
        return refuse(&err);
    }
    for (name, reason) in &secrets.refused {
        tracing::warn!(name, reason, "an installer's secret is left out");
    }
    let serve = move |shutdown: CancellationToken| -> u8 {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(err) => {
                tracing::error!(error = %err, "cannot start the async runtime");
                return 1;
            }
        };
        runtime.block_on(async {
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move {
                    shutdown_signal().await;
                    tracing::info!("shutdown requested");
                    shutdown.cancel();
                }
            });
            match kanade_backend::run(config, security, signing_key, shutdown).await {
                Ok(()) => 0,
                Err(err) => {
                    tracing::error!(error = format!("{err:#}"), "backend failed");
                    1
                }
            }
        })
    };
    ExitCode::from(match flags.command {
        Some(Command::Service) => kanade_service::run("kanade-backend", None, Box::new(serve)),
        None => serve(CancellationToken::new()),
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
