//! `kanade security init`: creates a fleet's identities — the NATS operator, its accounts and signing keys, the
//! backend's, CLI's, bootstrap and simulator credentials — and the broker's private CA and TLS certificate, with
//! the nats-server include that puts the broker in operator mode with TLS. Nothing here talks to the network.

use std::path::PathBuf;
use std::process::ExitCode;

use kanade_ops::security::{self as ops, FILES, InitOptions};
use serde::Serialize;

use crate::output::{self, Format};
use crate::{Cli, EXIT_USAGE};

const EXIT_CODES: &str = "Exit codes: 0 created; 1 the folder already holds a fleet or a file cannot be written; \
2 bad arguments (a host that is not a name or address).";

#[derive(Debug, clap::Subcommand)]
pub enum SecurityCommand {
    /// Create a fleet's identities and the broker's TLS in a new folder, secrets readable by their owner only.
    ///
    /// Writes the operator, the system and fleet accounts, separate signing keys for agents (scoped: whatever it
    /// signs can only be an agent) and for the backend/CLI, their credentials, a private CA, the broker's
    /// certificate for --host names, and `nats-security.conf` to include from nats-server.conf. Prints every file
    /// with who needs it; the README's "Security model" says where each belongs. Refuses a folder that already
    /// holds a fleet.
    #[command(after_help = EXIT_CODES)]
    Init {
        /// The folder to create the files in (made owner-only).
        #[arg(long)]
        dir: PathBuf,
        /// A name or IP address clients reach the broker at (repeat for each); default: localhost, 127.0.0.1, ::1.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Where the broker will read its certificate and key, as the include names them (default: --dir).
        #[arg(long, value_name = "DIR")]
        broker_dir: Option<PathBuf>,
        /// Where the broker keeps the account JWTs it is sent (default: <broker-dir>/jwt).
        #[arg(long, value_name = "DIR")]
        resolver_dir: Option<PathBuf>,
    },
}

#[derive(Serialize)]
struct FileRow {
    file: String,
    secret: bool,
    holders: Vec<&'static str>,
    what: &'static str,
}

pub async fn run(cli: &Cli, command: &SecurityCommand) -> anyhow::Result<ExitCode> {
    let SecurityCommand::Init { dir, hosts, broker_dir, resolver_dir } = command;
    let hosts =
        if hosts.is_empty() { ops::DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect() } else { hosts.clone() };
    let options =
        InitOptions { dir: dir.clone(), hosts, broker_dir: broker_dir.clone(), resolver_dir: resolver_dir.clone() };
    match ops::init(&options, chrono::Utc::now().timestamp()) {
        Ok(()) => {}
        Err(err @ ops::SecurityError::Host(_)) => {
            output::error(&err.into());
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(err) => return Err(err.into()),
    }
    let rows: Vec<FileRow> = FILES
        .iter()
        .map(|f| FileRow {
            file: dir.join(f.name).display().to_string(),
            secret: f.secret,
            holders: f.holders.iter().map(|h| h.as_str()).collect(),
            what: f.what,
        })
        .collect();
    match cli.output {
        Format::Json => output::json(&rows)?,
        _ => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.file.clone(),
                        if r.secret { "secret".into() } else { "public".into() },
                        r.holders.join(", "),
                        r.what.to_owned(),
                    ]
                })
                .collect();
            output::table(&["FILE", "KIND", "FOR", "WHAT"], &table);
            output::note(&format!(
                "created a fleet in {}: include {} from nats-server.conf; secrets are mode 0600 — copy each to the \
                 machine it is for and keep the offline ones off the servers",
                dir.display(),
                dir.join(ops::SERVER_INCLUDE).display()
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
