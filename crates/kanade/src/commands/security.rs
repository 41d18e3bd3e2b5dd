//! `kanade security init`: creates a fleet's identities — the NATS operator, its accounts and signing keys, the
//! backend's, CLI's, bootstrap and simulator credentials — and the broker's private CA and TLS certificate, with
//! the nats-server include that puts the broker in operator mode with TLS; and the authority of signed commands:
//! the offline trust root, the backend's signing key and the first root-signed trust list. Nothing here talks to
//! the network.

use std::path::PathBuf;
use std::process::ExitCode;

use kanade_ops::security::{self as ops, FILES, FirstAdmin, InitOptions};
use kanade_shared::Actor;
use kanade_shared::authority::PublicKey;
use serde::Serialize;

use crate::output::{self, Format};
use crate::{Cli, EXIT_USAGE};

const EXIT_CODES: &str = "Exit codes: 0 created; 1 the folder already holds a fleet or a file cannot be written; \
2 bad arguments (a host that is not a name or address, an --admin-key that is not a public key, an --admin-name \
that is not a name).";

#[derive(Debug, clap::Subcommand)]
pub enum SecurityCommand {
    /// Create a fleet's identities and the broker's TLS in a new folder, secrets readable by their owner only.
    ///
    /// Writes the operator, the system and fleet accounts, separate signing keys for agents (scoped: whatever it
    /// signs can only be an agent) and for the backend/CLI, their credentials, a private CA, the broker's
    /// certificate for --host names, and `nats-security.conf` to include from nats-server.conf. Prints every file
    /// with who needs it; the README's "Security model" says where each belongs. Refuses a folder that already
    /// holds a fleet.
    ///
    /// For signed commands it also writes the trust root (`trust-root.key`: keep it offline, on the one machine
    /// where trust lists are signed; `trust-root.pub` goes to agents, CLI and backend), the backend's signing key,
    /// and `trust-list.json`, version 1 of the trust list (the backend's key as an operator of the whole fleet, and
    /// --admin-key as an admin), to store with `kanade trust push`.
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
        /// An operator's public key (`ed25519:...`, from `kanade key create`) to trust as an admin of the whole
        /// fleet in the first trust list.
        #[arg(long, value_name = "KEY")]
        admin_key: Option<PublicKey>,
        /// The name that key has in the trust list.
        #[arg(long, value_name = "NAME", default_value = "admin", requires = "admin_key")]
        admin_name: Actor,
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
    let SecurityCommand::Init { dir, hosts, broker_dir, resolver_dir, admin_key, admin_name } = command;
    let hosts =
        if hosts.is_empty() { ops::DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect() } else { hosts.clone() };
    let options =
        InitOptions { dir: dir.clone(), hosts, broker_dir: broker_dir.clone(), resolver_dir: resolver_dir.clone() };
    let admin = admin_key.map(|key| FirstAdmin { name: admin_name.clone(), key });
    match ops::init_with(&options, admin.as_ref(), chrono::Utc::now().timestamp()) {
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
            output::note(&format!(
                "move {} to the offline machine where trust lists are signed (a USB key, a vault) and delete it \
                 here; after `kanade jetstream setup`, store the first trust list: kanade trust push {} --root-file {}",
                dir.join(ops::TRUST_ROOT_KEY).display(),
                dir.join(ops::TRUST_LIST).display(),
                dir.join(ops::TRUST_ROOT_PUB).display()
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
