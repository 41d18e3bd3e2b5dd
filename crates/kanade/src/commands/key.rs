//! `kanade key create` / `kanade key show`: the operator's own Ed25519 signing key, the one the commands they fire
//! are signed with (DESIGN.md, Authority). It lives in the operator's config folder, readable by them only; only its
//! public half ever leaves the machine, to an admin who adds it to the trust list (`kanade trust add`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use kanade_ops::signing;
use kanade_shared::Actor;
use kanade_shared::authority::{PublicKey, SigningKey};
use serde::Serialize;

use crate::output::{self, Format};
use crate::{Cli, EXIT_USAGE};

const CREATE_EXIT_CODES: &str = "Exit codes: 0 created (the public key on stdout); 1 the key cannot be written; 2 a \
key is already there and --force was not given, or no place for it is known (set KANADE_CONFIG_DIR or \
KANADE_SIGNING_KEY, or pass --out).";
const SHOW_EXIT_CODES: &str = "Exit codes: 0 printed; 1 no key there, or the file is not an Ed25519 signing key \
(PKCS#8 PEM); 2 no place for it is known (set KANADE_CONFIG_DIR or KANADE_SIGNING_KEY, or pass --key).";

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Create your signing key and print its public half (`ed25519:...`) on stdout.
    ///
    /// The key is written readable by you only, to --out, else --signing-key (`KANADE_SIGNING_KEY`), else
    /// `signing.key` in your kanade config folder (`KANADE_CONFIG_DIR`, else `~/.config/kanade` or `%APPDATA%\kanade`). Nothing is sent
    /// anywhere: hand the public key to an admin, who trusts it with `kanade trust add`. An existing key is never
    /// replaced without --force.
    #[command(after_help = CREATE_EXIT_CODES)]
    Create {
        /// Where to write the key (default: --signing-key, else `signing.key` in your config folder).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Replace a key that is already there (it is lost: revoke it with `kanade trust revoke`).
        #[arg(long)]
        force: bool,
    },
    /// Print the public half of your signing key (or of --key).
    #[command(after_help = SHOW_EXIT_CODES)]
    Show {
        /// The key file (default: --signing-key, else `signing.key` in your config folder).
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
    },
}

#[derive(Serialize)]
struct KeyOutput {
    key: PublicKey,
    path: String,
}

pub fn run(cli: &Cli, command: &KeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeyCommand::Create { out, force } => create(cli, out.as_deref(), *force),
        KeyCommand::Show { key } => show(cli, key.as_deref()),
    }
}

/// The key file named, else `--signing-key` (`KANADE_SIGNING_KEY`), else the default; `None` (after saying why)
/// when there is no default either.
fn key_path(cli: &Cli, given: Option<&Path>, flag: &str) -> Option<PathBuf> {
    let path = given.or(cli.signing_key.as_deref()).map(Path::to_owned).or_else(signing::default_key_path);
    if path.is_none() {
        output::error(&anyhow::anyhow!(
            "no place for your signing key is known: set KANADE_CONFIG_DIR or KANADE_SIGNING_KEY, or pass {flag}"
        ));
    }
    path
}

fn create(cli: &Cli, out: Option<&Path>, force: bool) -> anyhow::Result<ExitCode> {
    let Some(path) = key_path(cli, out, "--out") else {
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    // `symlink_metadata`: a dangling link or anything else already there counts as taken.
    if !force && std::fs::symlink_metadata(&path).is_ok() {
        output::error(&anyhow::anyhow!(
            "`{}` already exists; refusing to replace a signing key (pass --force to: the old key is lost, and should \
             be revoked with `kanade trust revoke`)",
            path.display()
        ));
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let key = SigningKey::generate();
    signing::write_key(&path, &key)?;
    let public = key.public_key();
    print_key(cli, public, &path)?;
    let you = Actor::from_login(&crate::audit::operator());
    output::note(&format!("wrote your signing key to {} (readable by you only)", path.display()));
    output::note(&format!(
        "ask an admin to register it: kanade trust add {you} --key {public} --role operator [--groups g,h] \
         --root-key trust-root.key"
    ));
    Ok(ExitCode::SUCCESS)
}

fn show(cli: &Cli, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let Some(path) = key_path(cli, key, "--key") else {
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    if !path.exists() {
        anyhow::bail!("there is no signing key at `{}`: create one with `kanade key create`", path.display());
    }
    let key = kanade_ops::security::read_signing_key(&path).context("cannot read your signing key")?;
    print_key(cli, key.public_key(), &path)?;
    Ok(ExitCode::SUCCESS)
}

fn print_key(cli: &Cli, key: PublicKey, path: &Path) -> anyhow::Result<()> {
    match cli.output {
        Format::Json => output::json(&KeyOutput { key, path: path.display().to_string() }),
        Format::Table | Format::Csv => {
            output::raw(false, &format!("{key}\n"));
            Ok(())
        }
    }
}
