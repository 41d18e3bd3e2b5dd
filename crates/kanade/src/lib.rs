//! The `kanade` operator CLI, as a library: `main.rs` parses [`Cli`] and calls [`run`]; tests call the same.
//!
//! Data goes to stdout (`-o json` is stable and scriptable), messages to stderr.

pub mod audit;
pub mod backend;
pub mod commands;
pub mod output;
pub mod sse;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kanade_shared::config::NatsConfig;

use crate::output::Format;

/// Exit code for a failure of kanade itself (as opposed to a remote script's own exit code).
pub const EXIT_ERROR: u8 = 1;
/// Exit code for a command line kanade refuses (bad arguments, a change that needs `--yes`).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "kanade",
    version,
    about = "Operate a kanade fleet: run scripts, fire and roll out jobs, stop them, query agents"
)]
pub struct Cli {
    /// NATS server URL(s), comma-separated.
    #[arg(long, global = true, env = "KANADE_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Token for the NATS server, if it requires one.
    #[arg(long, global = true, env = "KANADE_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// The CLI's NATS credential (`cli.creds` from `kanade security init`).
    #[arg(long, global = true, env = "KANADE_NATS_CREDS")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// The fleet's CA certificate (`ca.pem`): TLS is required and the broker must present a certificate it signed.
    #[arg(long, global = true, env = "KANADE_NATS_CA")]
    pub nats_ca: Option<std::path::PathBuf>,
    /// Connect to NATS without TLS: only for a development broker that has none.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Your Ed25519 signing key (`kanade key create`): what `run`, `kill` and `revoke` send to agents is signed with
    /// it, and agents obey it as far as the trust list lets your key act. Default: `signing.key` in your kanade
    /// config folder (`~/.config/kanade`, `%APPDATA%\kanade`).
    #[arg(long, global = true, env = "KANADE_SIGNING_KEY")]
    pub signing_key: Option<std::path::PathBuf>,
    /// Backend HTTP URL.
    #[arg(long, global = true, env = "KANADE_BACKEND_URL", default_value = "http://127.0.0.1:8080")]
    pub backend_url: String,
    /// Bearer token for the backend API: an API token (`kanade token create`), or the static token (bootstrap and
    /// development). Without it, the session `kanade login` stored for this backend URL is used.
    #[arg(long, global = true, env = "KANADE_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a script on one PC now, print its output live, and exit with its exit code.
    Run(commands::run::RunArgs),
    /// Ask an agent for a fresh heartbeat: version, uptime and round-trip time.
    Ping(commands::ping::PingArgs),
    /// Print the tail of an agent's own log file (--lines, --since, --follow); asked of the agent, audited.
    ///
    /// Exit codes: 0 printed (--follow: stopped with Ctrl-C), 1 no agent answered or it could not (it logs to
    /// stderr only, its log is unreadable), 2 bad arguments.
    Logs(commands::logs::LogsArgs),
    /// Fire a job from the catalogue (through the backend); prints the execution id.
    Exec(commands::exec::ExecArgs),
    /// Store a manifest and fire it at its own targets with its rollout (`job create` + `exec`).
    Deploy(commands::exec::DeployArgs),
    /// Approve an execution that waits for a second operator; it is sent at once.
    Approve(commands::exec::DecideArgs),
    /// Reject an execution that waits for approval; nothing is sent.
    Reject(commands::exec::DecideArgs),
    /// List executions, or show one with its waves and progress.
    Executions(commands::exec::ExecutionsArgs),
    /// Results from the backend: list them a page at a time, or show one (`--full`: its whole output).
    #[command(subcommand)]
    Result(commands::result::ResultCommand),
    /// Kill the running and queued runs of an execution (or of every execution of a job) on every agent.
    Kill(commands::kill::KillArgs),
    /// Stop every not-yet-started run of a job, on every agent (works with the backend down).
    Revoke(commands::revoke::RevokeArgs),
    /// Tell the users of some PCs something, through kanade-client (kept for PCs that are off until it expires);
    /// `--acks <id>`: who acknowledged it.
    Notify(commands::notify::NotifyArgs),
    /// Allow a revoked job to run again.
    Unrevoke(commands::revoke::RevokeArgs),
    /// Who did what: the audit trail, from the backend; `verify` checks its hash chain for edits.
    Audit(commands::audit::AuditArgs),
    /// Agent releases: publish a binary, list them, roll a version out to PCs, groups or everyone; forget an agent.
    #[command(subcommand)]
    Agent(commands::agent::AgentCommand),
    /// The fleet as the backend knows it, by pc id: filter by status, group, OS, version or words; page through.
    Agents(commands::agent::AgentsArgs),
    /// Enrolment: create the tokens agents trade for a NATS credential of their own, list and revoke them, approve
    /// PCs that wait for it (through the backend).
    #[command(subcommand)]
    Enroll(commands::enroll::EnrollCommand),
    /// The layered agent config (global < groups < pc) that agents apply live.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Create and inspect kanade's JetStream streams, KV buckets and object stores; read and change any by hand.
    #[command(subcommand)]
    Jetstream(JetstreamCommand),
    /// Scripts in the `scripts` object store, referenced by manifests as `script_object: name/version`.
    #[command(subcommand)]
    Script(commands::objects::ObjectCommand),
    /// Application packages in the `app_packages` object store.
    #[command(subcommand)]
    App(commands::objects::ObjectCommand),
    /// The job catalogue: create from manifests, list, show, delete; validate and the schema.
    #[command(subcommand)]
    Job(commands::job::JobCommand),
    /// Schedules: when jobs fire on their own (cron, every, at, once per PC). Create, list, show, pause, resume,
    /// run now and delete through the backend; validate and the schema here.
    #[command(subcommand)]
    Schedule(commands::schedule::ScheduleCommand),
    /// The fleet's identities: `kanade security init` creates the NATS operator, accounts, signing keys and
    /// credentials, a private CA and the broker's TLS certificate.
    #[command(subcommand)]
    Security(commands::security::SecurityCommand),
    /// Your own signing key, which the commands you fire are signed with: create it, print its public half.
    #[command(subcommand)]
    Key(commands::key::KeyCommand),
    /// The root-signed trust list of keys agents obey: show it, push a signed one, add or revoke a key, or sync it from the backend's accounts.
    #[command(subcommand)]
    Trust(commands::trust::TrustCommand),
    /// What the PCs are and have: hardware, software and the change log, from the backend; ask agents to report
    /// now.
    #[command(subcommand)]
    Inventory(commands::inventory::InventoryCommand),
    /// One PC's performance, live, like top(1): CPU, memory, swap, disks, network and the busiest processes.
    ///
    /// A full screen on a terminal (q quits, c and m sort); plain lines to a pipe; a JSON object per event with
    /// -o json. Exit codes: 0 stopped (q, Ctrl-C, --count), 1 refused, unreachable or the stream lost, 2 bad
    /// arguments.
    Top(commands::top::TopArgs),
    /// One PC's performance history from its rollups: CPU, memory, disk and network averages and maxima per step,
    /// and what used the CPU.
    Perf(commands::perf::PerfArgs),
    /// Sign in to the backend as an operator account; the session is kept in your config folder (owner-only) and
    /// used by every command that talks to this backend URL, refreshed as it goes.
    Login(commands::login::LoginArgs),
    /// Sign out: end the stored session on the backend and remove it here.
    Logout,
    /// Who the backend takes you for: name, role, group scope and how it knows (session, API token, ...).
    Whoami,
    /// Operator accounts: add, list, change role or groups, disable, enable, remove, set passwords, TOTP and
    /// signing keys (admins); `user passwd` alone changes your own password.
    #[command(subcommand)]
    User(commands::user::UserCommand),
    /// Your long-lived API tokens for automation: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Print the shell completion script for bash, zsh, fish, powershell or elvish, e.g.
    /// `kanade completions bash > /etc/bash_completion.d/kanade`.
    Completions(commands::completions::CompletionsArgs),
}

#[derive(Debug, Subcommand)]
pub enum JetstreamCommand {
    /// Create or update every stream, KV bucket and object store (idempotent).
    Setup {
        /// Copies of each resource; 3 on a 3-node cluster.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
        replicas: u8,
    },
    /// List every resource with its message count, bytes and replicas.
    Status,
    /// Any KV bucket by hand: list buckets or keys, get, put, delete (kanade's own need --yes to change).
    ///
    /// Exit codes: 0 done, 1 a missing bucket or key (or a value over the bucket's limit), 2 an invalid name or a
    /// change to one of kanade's own buckets without --yes.
    #[command(subcommand)]
    Kv(commands::jetstream::KvCommand),
    /// Any object store by hand: list, info, get (streamed), rm (kanade's own need --yes to delete).
    ///
    /// Exit codes: 0 done, 1 a missing store or object, 2 an invalid name, a removal from one of kanade's own
    /// stores without --yes, or a large object to a terminal.
    #[command(subcommand)]
    Object(commands::jetstream::ObjectCommand),
}

/// Runs one CLI invocation and returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Run(args) => commands::run::run(&cli, args).await,
        Command::Ping(args) => commands::ping::run(&cli, args).await,
        Command::Logs(args) => commands::logs::run(&cli, args).await,
        Command::Exec(args) => commands::exec::exec(&cli, args).await,
        Command::Deploy(args) => commands::exec::deploy(&cli, args).await,
        Command::Approve(args) => commands::exec::decide(&cli, args, true).await,
        Command::Reject(args) => commands::exec::decide(&cli, args, false).await,
        Command::Executions(args) => commands::exec::executions(&cli, args).await,
        Command::Result(command) => commands::result::run(&cli, command).await,
        Command::Kill(args) => commands::kill::run(&cli, args).await,
        Command::Revoke(args) => commands::revoke::run(&cli, args, true).await,
        Command::Notify(args) => commands::notify::run(&cli, args).await,
        Command::Unrevoke(args) => commands::revoke::run(&cli, args, false).await,
        Command::Audit(args) => commands::audit::run(&cli, args).await,
        Command::Jetstream(JetstreamCommand::Setup { replicas }) => {
            commands::jetstream::setup(&cli, usize::from(*replicas)).await
        }
        Command::Jetstream(JetstreamCommand::Status) => commands::jetstream::status(&cli).await,
        Command::Jetstream(JetstreamCommand::Kv(command)) => commands::jetstream::kv(&cli, command).await,
        Command::Jetstream(JetstreamCommand::Object(command)) => commands::jetstream::object(&cli, command).await,
        Command::Job(command) => commands::job::run(&cli, command).await,
        Command::Schedule(command) => commands::schedule::run(&cli, command).await,
        Command::Security(command) => commands::security::run(&cli, command).await,
        Command::Key(command) => commands::key::run(&cli, command),
        Command::Trust(command) => commands::trust::run(&cli, command).await,
        Command::Config(command) => commands::config::run(&cli, command).await,
        Command::Agent(command) => commands::agent::run(&cli, command).await,
        Command::Agents(args) => commands::agent::fleet(&cli, args).await,
        Command::Enroll(command) => commands::enroll::run(&cli, command).await,
        Command::Script(command) => commands::objects::run(&cli, kanade_ops::objects::Store::Scripts, command).await,
        Command::App(command) => commands::objects::run(&cli, kanade_ops::objects::Store::Apps, command).await,
        Command::Inventory(command) => commands::inventory::run(&cli, command).await,
        Command::Top(args) => commands::top::run(&cli, args).await,
        Command::Perf(args) => commands::perf::run(&cli, args).await,
        Command::Completions(args) => commands::completions::run(args),
        Command::Login(args) => commands::login::login(&cli, args).await,
        Command::Logout => commands::login::logout(&cli).await,
        Command::Whoami => commands::login::whoami(&cli).await,
        Command::User(command) => commands::user::run(&cli, command).await,
        Command::Token(command) => commands::token::run(&cli, command).await,
    }
}

/// The operator's signing key, for what the CLI sends to agents itself (run, kill, revoke): `--signing-key`, else
/// the default file; a clear error when there is none.
pub fn signing_key(cli: &Cli) -> anyhow::Result<kanade_shared::authority::SigningKey> {
    let path = match &cli.signing_key {
        Some(path) => path.clone(),
        None => kanade_ops::signing::default_key_path()
            .context("no signing key: pass --signing-key (or set KANADE_SIGNING_KEY); there is no config folder")?,
    };
    if !path.exists() {
        anyhow::bail!(
            "no signing key at `{}`: create one with `kanade key create` and have it added to the trust list, or \
             pass --signing-key (KANADE_SIGNING_KEY)",
            path.display()
        );
    }
    Ok(kanade_ops::signing::read_key(&path)?)
}

/// Connects to NATS for one command: fails fast with the URL in the message rather than retrying forever.
pub async fn connect(cli: &Cli) -> anyhow::Result<async_nats::Client> {
    let urls: Vec<String> =
        cli.nats_url.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
    let nats = match &cli.nats_ca {
        Some(ca) => NatsConfig::secure(urls.clone(), cli.nats_creds.clone(), ca.clone()),
        None if cli.insecure => NatsConfig { creds: cli.nats_creds.clone(), ..NatsConfig::insecure(urls.clone()) },
        None => anyhow::bail!(
            "cannot connect to NATS: no CA; pass --nats-ca (or set KANADE_NATS_CA) to the fleet's ca.pem from `kanade \
             security init`, or --insecure for a development broker without TLS"
        ),
    };
    let nats = NatsConfig { token: cli.nats_token.clone(), ..nats };
    let options =
        kanade_ops::nats::options(&nats, "kanade-cli").connection_timeout(Duration::from_secs(3)).max_reconnects(3);
    options.connect(urls.as_slice()).await.with_context(|| format!("cannot connect to NATS at `{}`", cli.nats_url))
}
