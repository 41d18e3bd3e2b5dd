//! `kanade-agent`: parses flags, sets up logging, loads the config and runs the agent (or the fleet simulator)
//! until Ctrl-C, SIGTERM or a stop from the service manager.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use kanade_agent::logtail::LogFiles;
use kanade_agent::platform;
use kanade_agent::simulate::{SimulateArgs, Simulation};
use kanade_agent::update::{self, SelfUpdate};
use kanade_shared::config::{AgentConfig, ConfigError, EnvWithFallback, LogConfig, LogFile, ProcessEnv};
use tokio_util::sync::CancellationToken;

/// kanade's endpoint agent: connects outbound to NATS, runs the commands addressed to this PC and reports results.
///
/// The config file has `[agent]`, `[log]`, `[inventory]` and `[nats]` (see `deploy/agent.example.toml`).
/// Environment overrides: KANADE_AGENT_ID, KANADE_AGENT_GROUPS (comma list), KANADE_AGENT_DATA_DIR,
/// KANADE_NATS_URL (comma list), KANADE_NATS_TOKEN. Logging: KANADE_LOG, else RUST_LOG, else `[log] level` (e.g.
/// `info`, `info,kanade_agent=debug`).
///
/// Exit codes: 0 stopped as asked, 1 failed, 2 invalid configuration, 64 a new version of the agent is in place
/// and wants to be started (the service manager restarts it: `deploy/kanade-agent.service`,
/// `deploy/install-agent.ps1`).
#[derive(Debug, Parser)]
#[command(name = "kanade-agent", version = kanade_agent::version())]
struct Flags {
    /// A TOML config file (optional; the agent runs with no file at all).
    #[arg(long, short, env = "KANADE_AGENT_CONFIG", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Write the log to daily files `kanade-agent.<date>.log` in this folder (the last 14 are kept) instead of
    /// stderr; over the file's `[log] file`. For a service that has no console, such as a Windows service. `kanade logs <pc>` reads them.
    #[arg(long, env = "KANADE_LOG_DIR", value_name = "DIR", global = true)]
    log_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run as a Windows service, under the service control manager (`deploy/install-agent.ps1` registers it so).
    ///
    /// A stop from the SCM stops the agent like SIGTERM; after a self-update the process ends without reporting a
    /// stop, which the SCM takes as a crash and answers with its restart action (the new binary). Elsewhere the same
    /// as no subcommand: systemd and launchd run services in the foreground. As a service it also reads the
    /// installer's secrets: on Windows the REG_SZ values of HKLM\SOFTWARE\Kanade\agent named like the environment
    /// variables (KANADE_ENROLL_TOKEN, KANADE_NATS_TOKEN, ...), for the variables the environment leaves unset.
    Service,
    /// Run many emulated agents in this process over the real agent code, to measure the system at fleet scale.
    ///
    /// Prints one JSON line on stdout once every agent is subscribed, then runs until Ctrl-C or SIGTERM.
    Simulate(Box<SimulateArgs>),
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    if let Some(Command::Simulate(args)) = flags.command {
        let log = match LogConfig::resolve(&ProcessEnv, LogFile::default(), "warn") {
            Ok(log) => with_log_dir(log, flags.log_dir.as_deref()),
            Err(err) => return refuse(&err.to_string()),
        };
        if let Err(err) = log.init_tracing() {
            return refuse(&err);
        }
        return match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(simulate(*args)),
            Err(err) => {
                tracing::error!(error = %err, "cannot start the async runtime");
                ExitCode::FAILURE
            }
        };
    }
    // The config says where to log, so it is read first. An error in it is logged once logging is up (to
    // `--log-dir` or stderr), and only after self-update has counted this start: a release that rejects the config
    // file must be rolled back like one that crashes.
    let hostname = sysinfo::System::host_name().unwrap_or_default();
    // As a service, the installer's secrets (Windows: HKLM\SOFTWARE\Kanade\agent) fill unset variables.
    let secrets = match flags.command {
        Some(Command::Service) => kanade_service::secrets::machine_secrets("agent"),
        _ => kanade_service::secrets::Secrets::default(),
    };
    let env = EnvWithFallback { fallback: secrets.values.iter().cloned().collect() };
    let config = AgentConfig::load(flags.config.as_deref(), &env, &hostname).map(|mut config| {
        config.log = with_log_dir(config.log, flags.log_dir.as_deref());
        config
    });
    let log = match &config {
        Ok(config) => config.log.clone(),
        Err(_) => {
            let log = LogConfig::resolve(&ProcessEnv, LogFile::default(), "info").unwrap_or_default();
            with_log_dir(log, flags.log_dir.as_deref())
        }
    };
    // A Windows service also writes its warnings, errors, start and stop to the Application Event Log.
    let event_log = match flags.command {
        Some(Command::Service) => kanade_service::event_log_layer(platform::SERVICE_NAME),
        _ => None,
    };
    if let Err(err) = log.init_tracing_with(event_log) {
        return refuse(&err);
    }
    for (name, reason) in &secrets.refused {
        tracing::warn!(name, reason, "an installer's secret is left out");
    }
    match flags.command {
        Some(Command::Service) => ExitCode::from(platform::run_service(Box::new(move |stop| agent(config, stop)))),
        _ => ExitCode::from(agent(config, CancellationToken::new())),
    }
}

/// `--log-dir` (or `KANADE_LOG_DIR`) over the file's `[log] file`: daily `kanade-agent.<date>.log` in that folder.
fn with_log_dir(log: LogConfig, log_dir: Option<&Path>) -> LogConfig {
    match log_dir {
        Some(dir) => LogConfig { file: Some(LogConfig::file_in_dir(dir, "kanade-agent")), ..log },
        None => log,
    }
}

/// Exit 2 with `message` on stderr, for errors found before there is a log to write them to.
fn refuse(message: &str) -> ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("kanade-agent: {message}");
    }
    ExitCode::from(2)
}

/// The agent process from start to exit code; `stop` ends it (as do Ctrl-C and SIGTERM).
fn agent(config: Result<AgentConfig, ConfigError>, stop: CancellationToken) -> u8 {
    // Self-update first: a new binary's start is counted (and a failing one rolled back) before its config is
    // read, so a release that rejects the config file is rolled back like one that crashes.
    let update = match std::env::current_exe() {
        Ok(exe) => Some(Arc::new(SelfUpdate::new(exe))),
        Err(err) => {
            tracing::warn!(error = %err, "cannot locate this executable; self-update is off");
            None
        }
    };
    if update.as_ref().is_some_and(|update| update.on_start(kanade_agent::version()) == update::Start::RestartIntoOld) {
        return update::EXIT_UPDATED;
    }
    // Fault injection for the self-update test (`version::FAULT_FLAG`): a release that fails as soon as it starts.
    if kanade_agent::broken_on_purpose() {
        tracing::error!("this copy of the agent is broken on purpose (its fault flag is set)");
        return 1;
    }
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %err, "invalid configuration");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return 1;
        }
    };
    // The files `[log] file` (or `--log-dir`) makes, which the agent serves on `agents.<pc>.logs`.
    let log_files =
        config.log.rolling().map(|files| LogFiles { dir: files.dir, prefix: files.prefix, suffix: files.suffix });
    runtime.block_on(async move {
        stop_on_signal(stop.clone());
        match kanade_agent::run_logging_to(config, stop, update.clone(), log_files).await {
            Ok(()) if update.as_ref().is_some_and(|update| update.updated()) => update::EXIT_UPDATED,
            Ok(()) => {
                if let Some(update) = &update {
                    update.stopped_cleanly(kanade_agent::version());
                }
                0
            }
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "agent failed");
                1
            }
        }
    })
}

fn stop_on_signal(stop: CancellationToken) {
    tokio::spawn(async move {
        tokio::select! {
            () = platform::shutdown_signal() => {
                tracing::info!("shutdown requested");
                stop.cancel();
            }
            () = stop.cancelled() => {}
        }
    });
}

#[allow(clippy::print_stdout)]
async fn simulate(args: SimulateArgs) -> ExitCode {
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone());
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
