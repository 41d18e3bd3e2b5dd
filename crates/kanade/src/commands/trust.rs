//! `kanade trust show|push|add|revoke|sync`: the root-signed trust list in KV `trust_list` that agents take the
//! keys they obey from (DESIGN.md, Authority). `show` prints it checked against the fleet's root; `push` stores a
//! list signed elsewhere (as `security init` writes one); `add` and `revoke` read the stored list, change it, sign
//! the next version with the root key and store it — only if it is newer and nobody stored another meanwhile;
//! `sync` does the same with the changes the backend's operator accounts call for ([`sync::plan`]). A key is never
//! deleted from the list: a revoked one stays, marked, so no later version can quietly forget it.

pub mod sync;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use kanade_ops::security as files;
use kanade_ops::signing;
use kanade_shared::Actor;
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::api::UserView;
use kanade_shared::authority::{PublicKey, SignedTrustList, TrustError, TrustList, TrustedKey};
use kanade_shared::resources::{CONSUMER_AUDIT_PROJECTOR, KV_TRUST, STREAM_AUDIT, TRUST_KEY};
use serde::Serialize;
use serde_json::json;

use crate::backend::{Backend, PageArgs};
use crate::output::{self, Format};
use crate::{Cli, EXIT_ERROR, EXIT_USAGE, connect};

const SHOW_EXIT_CODES: &str = "Exit codes: 0 printed; 1 no trust list is stored, it is not signed by the root \
given, a root file cannot be read, or the broker cannot be reached; 2 bad arguments (no root given and no \
--unverified, a root that is not a public key).";
const PUSH_EXIT_CODES: &str = "Exit codes: 0 stored; 1 refused (not signed by the root given, not newer than the \
stored version, the stored list signed by another root, changed meanwhile), a file that cannot be read or is not a \
signed trust list, or the broker cannot be reached; 2 bad arguments.";
const CHANGE_EXIT_CODES: &str = "Exit codes: 0 stored (or nothing to change); 1 refused (the stored list does not \
open under this root key, a revoked key, a name not in the list, changed meanwhile: run it again), a root key file \
that cannot be read, or the broker cannot be reached; 2 bad arguments (a key, name, role or groups that cannot be, \
an admin limited to groups, the root's own key to add).";
const SYNC_EXIT_CODES: &str = "Exit codes: 0 stored, printed (--dry-run) or nothing to change — accounts skipped \
are listed with why, and do not change the code; 1 refused (the backend refused: not signed in, not an admin; no \
trust list stored; the stored list does not open under this root key; changed meanwhile: run it again; the \
backend's audit lagging behind the broker), a root key file that cannot be read, or the backend or the broker \
cannot be reached; 2 bad arguments.";

#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// Print the stored trust list, checked against the fleet's root: its version, when it was issued, and each
    /// key with its name, role, group scope and whether it is revoked.
    ///
    /// Name the root with --root-file trust-root.pub (or --root ed25519:...); --unverified prints the list
    /// without checking it, with a warning, for when the root is not at hand: do not rely on what it says.
    #[command(after_help = SHOW_EXIT_CODES)]
    #[command(group = clap::ArgGroup::new("root_source").args(["root", "root_file", "unverified"]).required(true))]
    Show {
        #[command(flatten)]
        root: RootArgs,
        /// Print the list without checking that the root signed it.
        #[arg(long)]
        unverified: bool,
    },
    /// Store a signed trust list file (as `kanade security init` writes `trust-list.json`), if the root given
    /// signed it and it is newer than the stored one.
    #[command(after_help = PUSH_EXIT_CODES)]
    #[command(group = clap::ArgGroup::new("root_source").args(["root", "root_file"]).required(true))]
    Push {
        /// The signed trust list file.
        file: PathBuf,
        #[command(flatten)]
        root: RootArgs,
    },
    /// Trust a key (an operator's, from `kanade key create`) with a role and a group scope, or change the role and
    /// scope of a key already trusted: signs the next version with the root key and stores it.
    ///
    /// Run it where the root key is (offline); the machine needs to reach the broker only for this command. When
    /// no list is stored yet, the new one is version 1.
    #[command(after_help = CHANGE_EXIT_CODES)]
    Add {
        /// Whose key it is: an operator's name (lowercase a-z, 0-9, `_`, `-`).
        name: Actor,
        /// The public key, `ed25519:...`.
        #[arg(long, value_name = "KEY")]
        key: PublicKey,
        /// viewer, operator, approver or admin.
        #[arg(long)]
        role: Role,
        /// The groups it may command (comma-separated); left out, the whole fleet. An admin is always fleet-wide.
        #[arg(long, value_name = "G,H", value_parser = parse_scope)]
        groups: Option<GroupScope>,
        /// The trust root's private key (`trust-root.key`).
        #[arg(long, value_name = "FILE")]
        root_key: PathBuf,
    },
    /// Revoke every key of a name, or one key: they stay in the list, marked revoked, and agents stop obeying them
    /// as soon as they have the new version.
    #[command(after_help = CHANGE_EXIT_CODES)]
    Revoke {
        /// A name (every key it has) or one key (`ed25519:...`).
        #[arg(value_name = "NAME|KEY", value_parser = parse_target)]
        target: Target,
        /// The trust root's private key (`trust-root.key`).
        #[arg(long, value_name = "FILE")]
        root_key: PathBuf,
    },
    /// Build the next version from the backend's operator accounts (`kanade user`), sign it with the root key and
    /// store it: run it after registering a key (`kanade user key`), changing a role or groups, or disabling or
    /// removing an account.
    ///
    /// Each enabled account with a registered key has that key trusted under its name with its role and group
    /// scope (added, or its role and scope replaced); every other key of its name is revoked. The keys of a
    /// disabled account, of an account with no key registered, and of a removed account (as the backend's audit
    /// says) are revoked. Names that are not accounts — `backend`, keys added by hand with `trust add` — are left as
    /// they are. Nothing is deleted. An account whose key cannot be trusted (revoked already, listed under another
    /// name, registered by two accounts, the root's own key) is skipped and listed with why.
    ///
    /// Needs the backend as an admin (--token / KANADE_AUTH_TOKEN, or `kanade login`) and the broker. Prints the
    /// changes (a row each: add, update, revoke, skip); --dry-run stops there.
    #[command(after_help = SYNC_EXIT_CODES)]
    Sync {
        /// The trust root's private key (`trust-root.key`).
        #[arg(long, value_name = "FILE")]
        root_key: PathBuf,
        /// Print the changes; sign and store nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The fleet's root public key, given as text or as a file.
#[derive(Debug, clap::Args)]
pub struct RootArgs {
    /// The fleet's trust root, `ed25519:...`.
    #[arg(long, value_name = "KEY", conflicts_with = "root_file")]
    root: Option<PublicKey>,
    /// The fleet's trust root as a file (`trust-root.pub` from `kanade security init`).
    #[arg(long, value_name = "FILE")]
    root_file: Option<PathBuf>,
}

impl RootArgs {
    /// The root named, if one is.
    fn public_key(&self) -> anyhow::Result<Option<PublicKey>> {
        match (&self.root, &self.root_file) {
            (Some(key), _) => Ok(Some(*key)),
            (None, Some(path)) => Ok(Some(files::read_public_key(path).context("cannot read the fleet's trust root")?)),
            (None, None) => Ok(None),
        }
    }
}

/// What `revoke` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Name(Actor),
    Key(PublicKey),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Name(name) => name.fmt(f),
            Target::Key(key) => key.fmt(f),
        }
    }
}

fn parse_target(raw: &str) -> Result<Target, String> {
    if raw.starts_with(kanade_shared::authority::keys::PUBLIC_KEY_PREFIX) {
        raw.parse().map(Target::Key).map_err(|err: kanade_shared::authority::KeyError| err.to_string())
    } else {
        Actor::new(raw).map(Target::Name).map_err(|err| err.to_string())
    }
}

fn parse_scope(raw: &str) -> Result<GroupScope, String> {
    GroupScope::parse_list(raw).map_err(|err| err.to_string())
}

/// Why a change to the list is refused. Keys are held as text: a parsed key is large, and so would every `Result`
/// carrying this be.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("key `{0}` is revoked, and a revoked key is never trusted again: make a new one with `kanade key create`")]
    Revoked(String),
    #[error("key `{key}` is trusted as `{listed}`, not `{asked}`: a key keeps its name (revoke it, add a new key)")]
    OtherName { key: String, listed: Actor, asked: Actor },
    #[error("`{0}` is not in the trust list")]
    NotListed(String),
    #[error(transparent)]
    List(Box<TrustError>),
}

impl From<TrustError> for ChangeError {
    fn from(err: TrustError) -> Self {
        ChangeError::List(Box::new(err))
    }
}

/// The next version with `name`'s `key` trusted as `role` within `scope`: added, or its role and scope replaced.
/// `None` when the list already says exactly that.
pub fn add(
    current: &TrustList,
    name: &Actor,
    key: PublicKey,
    role: Role,
    scope: &GroupScope,
    now: DateTime<Utc>,
) -> Result<Option<TrustList>, ChangeError> {
    if let Some(listed) = current.find(&key) {
        if listed.revoked {
            return Err(ChangeError::Revoked(key.to_string()));
        }
        if listed.name != *name {
            let (listed, asked) = (listed.name.clone(), name.clone());
            return Err(ChangeError::OtherName { key: key.to_string(), listed, asked });
        }
        if listed.role == role && listed.scope == *scope {
            return Ok(None);
        }
    }
    let next = current.next(now, |keys| match keys.iter_mut().find(|k| k.key == key) {
        Some(listed) => {
            listed.role = role;
            listed.scope = scope.clone();
        }
        None => keys.push(TrustedKey::new(name.clone(), key, role, scope.clone(), now)),
    })?;
    Ok(Some(next))
}

/// The next version with every key `target` names revoked, and those keys. `None` when each is revoked already.
pub fn revoke(
    current: &TrustList,
    target: &Target,
    now: DateTime<Utc>,
) -> Result<Option<(TrustList, Vec<PublicKey>)>, ChangeError> {
    let named = |k: &TrustedKey| match target {
        Target::Name(name) => k.name == *name,
        Target::Key(key) => k.key == *key,
    };
    if !current.keys.iter().any(named) {
        return Err(ChangeError::NotListed(target.to_string()));
    }
    let revoked: Vec<PublicKey> = current.keys.iter().filter(|k| named(k) && !k.revoked).map(|k| k.key).collect();
    if revoked.is_empty() {
        return Ok(None);
    }
    let next = current.next(now, |keys| {
        for k in keys.iter_mut().filter(|k| named(k)) {
            k.revoked = true;
        }
    })?;
    Ok(Some((next, revoked)))
}

#[derive(Serialize)]
struct KeyRow<'a> {
    name: &'a Actor,
    key: PublicKey,
    role: Role,
    scope: &'a GroupScope,
    revoked: bool,
    added_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct ShowOutput<'a> {
    version: u64,
    issued_at: DateTime<Utc>,
    root: PublicKey,
    /// Whether the list was checked against the root the operator named (false only with --unverified).
    verified: bool,
    keys: Vec<KeyRow<'a>>,
}

pub async fn run(cli: &Cli, command: &TrustCommand) -> anyhow::Result<ExitCode> {
    match command {
        TrustCommand::Show { root, unverified } => show(cli, root, *unverified).await,
        TrustCommand::Push { file, root } => push(cli, file, root).await,
        TrustCommand::Add { name, key, role, groups, root_key } => {
            let scope = groups.clone().unwrap_or(GroupScope::Fleet);
            if let Err(err) = scope.check_role(*role) {
                output::error(&anyhow::anyhow!("`{name}` as {role} on `{scope}`: {err}"));
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            add_key(cli, name, *key, *role, &scope, root_key).await
        }
        TrustCommand::Revoke { target, root_key } => revoke_keys(cli, target, root_key).await,
        TrustCommand::Sync { root_key, dry_run } => sync_accounts(cli, root_key, *dry_run).await,
    }
}

fn no_list() -> ExitCode {
    output::error(&anyhow::anyhow!(
        "no trust list is stored in KV `{KV_TRUST}`: store the first with `kanade trust push trust-list.json \
         --root-file trust-root.pub` (from `kanade security init`)"
    ));
    ExitCode::from(EXIT_ERROR)
}

async fn show(cli: &Cli, root: &RootArgs, unverified: bool) -> anyhow::Result<ExitCode> {
    let root = root.public_key()?;
    let client = connect(cli).await?;
    let Some((signed, _)) = signing::fetch_trust(&client).await? else {
        return Ok(no_list());
    };
    let (list, verified) = match root {
        Some(root) => (signed.open(&root).context("the stored trust list is not the fleet's")?, true),
        None if !unverified => {
            output::error(&anyhow::anyhow!(
                "name the fleet's root (--root-file trust-root.pub or --root ed25519:...), or pass --unverified"
            ));
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        None => {
            let list = match signed.open(&signed.root) {
                Ok(list) => {
                    output::note(&format!(
                        "warning: NOT verified: the list is signed by the root it names, `{}`, which was not checked \
                         against the fleet's (pass --root-file trust-root.pub)",
                        signed.root
                    ));
                    list
                }
                Err(err) => {
                    output::note(&format!("warning: NOT verified, and its signature does not verify either: {err}"));
                    serde_json::from_str::<TrustList>(&signed.list)
                        .map_err(|err| TrustError::Malformed(err.to_string()))
                        .context("the stored trust list")?
                }
            };
            (list, false)
        }
    };
    let shown = ShowOutput {
        version: list.version,
        issued_at: list.issued_at,
        root: signed.root,
        verified,
        keys: list
            .keys
            .iter()
            .map(|k| KeyRow {
                name: &k.name,
                key: k.key,
                role: k.role,
                scope: &k.scope,
                revoked: k.revoked,
                added_at: k.added_at,
            })
            .collect(),
    };
    let rows: Vec<Vec<String>> = shown
        .keys
        .iter()
        .map(|k| {
            vec![
                k.name.to_string(),
                k.key.to_string(),
                k.role.to_string(),
                k.scope.to_string(),
                if k.revoked { "revoked".into() } else { "-".into() },
                k.added_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ]
        })
        .collect();
    const HEADER: [&str; 6] = ["NAME", "KEY", "ROLE", "SCOPE", "REVOKED", "ADDED"];
    let summary = format!(
        "trust list version {}, issued {}, signed by root {} ({})",
        shown.version,
        shown.issued_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        shown.root,
        if verified { "verified" } else { "NOT verified" }
    );
    match cli.output {
        Format::Json => output::json(&shown)?,
        Format::Csv => {
            output::note(&summary);
            output::csv(&HEADER, &rows)?;
        }
        Format::Table => {
            output::raw(false, &format!("{summary}\n"));
            output::table(&HEADER, &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn push(cli: &Cli, file: &Path, root: &RootArgs) -> anyhow::Result<ExitCode> {
    let root = root.public_key()?.context("name the fleet's root: --root-file trust-root.pub or --root ed25519:...")?;
    let signed = files::read_trust_list(file)?;
    let list = signed.open(&root).with_context(|| format!("`{}` is refused", file.display()))?;
    let client = connect(cli).await?;
    let held = signing::fetch_trust(&client).await.context(
        "the stored trust list cannot be read; if it is damaged, delete it (`kanade jetstream kv del trust_list \
         current --yes`) and push again",
    )?;
    // The broker would take a list under another root in place of the stored one (no agent ever trusted a list it
    // cannot open), but a root mistyped here must not replace the fleet's list: that is a deliberate deletion.
    if let Some((held, _)) = &held
        && held.root != root
    {
        anyhow::bail!(
            "the stored trust list is signed by another root, `{}`; if the fleet's root really changed, delete it \
             first (`kanade jetstream kv del {KV_TRUST} {TRUST_KEY} --yes`)",
            held.root
        );
    }
    let version = signing::push_trust(&client, &signed, &root).await?;
    crate::audit::record(
        &client,
        "trust-push",
        &format!("{KV_TRUST}/{TRUST_KEY}"),
        json!({ "version": version, "root": root.to_string(), "keys": list.keys.len() }),
    )
    .await;
    output::note(&format!("stored trust list version {version} ({} keys)", list.keys.len()));
    if cli.output == Format::Json {
        output::json(&json!({ "version": version }))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The root key, a connection, and the stored list opened under the root (an empty version 0 when none is
/// stored and `may_be_empty`).
async fn open_for_change(
    cli: &Cli,
    root_key: &Path,
    may_be_empty: bool,
) -> anyhow::Result<Option<(kanade_shared::authority::SigningKey, async_nats::Client, TrustList)>> {
    let root = files::read_signing_key(root_key).context("cannot read the trust root's key")?;
    let client = connect(cli).await?;
    let current = match signing::fetch_trust(&client).await? {
        Some((signed, _)) => signed.open(&root.public_key()).with_context(|| {
            format!("the stored trust list does not open under this root key (`{}`)", root.public_key())
        })?,
        None if may_be_empty => {
            output::note(&format!(
                "no trust list is stored yet: this makes version 1 with only this key (the backend's key is in \
                 `{}` from `kanade security init`: push that first, or add the backend's key too)",
                files::TRUST_LIST
            ));
            TrustList { version: 0, issued_at: Utc::now(), keys: Vec::new() }
        }
        None => return Ok(None),
    };
    Ok(Some((root, client, current)))
}

/// Signs `next` with the root and stores it (compare-and-set); returns its version.
async fn sign_and_store(
    client: &async_nats::Client,
    root: &kanade_shared::authority::SigningKey,
    next: &TrustList,
) -> anyhow::Result<u64> {
    let signed = SignedTrustList::sign(next, root)?;
    Ok(signing::push_trust(client, &signed, &root.public_key()).await?)
}

async fn add_key(
    cli: &Cli,
    name: &Actor,
    key: PublicKey,
    role: Role,
    scope: &GroupScope,
    root_key: &Path,
) -> anyhow::Result<ExitCode> {
    let Some((root, client, current)) = open_for_change(cli, root_key, true).await? else {
        return Ok(no_list());
    };
    if key == root.public_key() {
        output::error(&anyhow::anyhow!("`{key}` is the trust root's own key: it signs trust lists, never commands"));
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let version = match add(&current, name, key, role, scope, Utc::now()) {
        Ok(None) => {
            output::note(&format!(
                "`{name}` ({key}) is already trusted as {role} on `{scope}`: nothing changed (version {})",
                current.version
            ));
            current.version
        }
        Ok(Some(next)) => {
            let version = sign_and_store(&client, &root, &next).await?;
            crate::audit::record(
                &client,
                "trust-add",
                name.as_str(),
                json!({ "version": version, "key": key.to_string(), "role": role, "scope": scope }),
            )
            .await;
            output::note(&format!("trusted `{name}` ({key}) as {role} on `{scope}`: trust list version {version}"));
            version
        }
        Err(err) => return Err(err.into()),
    };
    if cli.output == Format::Json {
        output::json(&json!({ "version": version, "name": name, "key": key, "role": role, "scope": scope }))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke_keys(cli: &Cli, target: &Target, root_key: &Path) -> anyhow::Result<ExitCode> {
    let Some((root, client, current)) = open_for_change(cli, root_key, false).await? else {
        return Ok(no_list());
    };
    let (version, revoked) = match revoke(&current, target, Utc::now())? {
        None => {
            output::note(&format!("`{target}` is revoked already: nothing changed (version {})", current.version));
            (current.version, Vec::new())
        }
        Some((next, revoked)) => {
            let version = sign_and_store(&client, &root, &next).await?;
            let keys: Vec<String> = revoked.iter().map(ToString::to_string).collect();
            crate::audit::record(
                &client,
                "trust-revoke",
                &target.to_string(),
                json!({ "version": version, "keys": keys }),
            )
            .await;
            output::note(&format!(
                "revoked {} key(s) of `{target}`: trust list version {version}; agents stop obeying them once they \
                 have it",
                revoked.len()
            ));
            (version, revoked)
        }
    };
    if cli.output == Format::Json {
        output::json(&json!({ "version": version, "revoked": revoked }))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The audit action the backend records when an account is removed (`kanade-backend/src/api/users.rs`): how `sync`
/// tells a removed account's name from one that never was an account.
const USER_REMOVED: &str = "user-remove";
/// How long `sync` waits for the backend to have recorded every audit event the broker held when it looked.
const AUDIT_PATIENCE: Duration = Duration::from_secs(10);

/// Every page of a backend list.
fn every_page() -> PageArgs {
    PageArgs { limit: kanade_shared::api::MAX_PAGE_LIMIT, all: true, cursor: None }
}

/// Waits until the backend's audit projector has stored every event `AUDIT` held when this was called, so that an
/// account removed just before (`kanade user rm` returns once its audit event is on the broker) is in what
/// `GET /api/audit` answers next.
async fn audit_recorded(client: &async_nats::Client) -> anyhow::Result<()> {
    let last = kanade_ops::audit::last_sequence(client).await?;
    if last == 0 {
        return Ok(());
    }
    let stream = async_nats::jetstream::new(client.clone())
        .get_stream_no_info(STREAM_AUDIT)
        .await
        .with_context(|| format!("cannot read stream `{STREAM_AUDIT}`"))?;
    let deadline = tokio::time::Instant::now() + AUDIT_PATIENCE;
    loop {
        let floor = stream
            .consumer_info(CONSUMER_AUDIT_PROJECTOR)
            .await
            .map(|info| info.ack_floor.stream_sequence)
            .with_context(|| format!("cannot read the backend's audit projector (`{CONSUMER_AUDIT_PROJECTOR}`)"))?;
        if floor >= last {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the backend has not recorded the latest audit events (its projector is at {floor} of {last} after \
                 {}s), so an account removed just now could be missed: try again in a moment",
                AUDIT_PATIENCE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The names the backend's audit says were removed accounts.
async fn removed_accounts(backend: &Backend, client: &async_nats::Client) -> anyhow::Result<BTreeSet<Actor>> {
    audit_recorded(client).await?;
    let listed = backend
        .list("/api/audit", &[("action", USER_REMOVED.to_owned())], &every_page())
        .await
        .context("cannot read the backend's audit of removed accounts")?;
    // A target that is not a name cannot be in the trust list either.
    Ok(listed.items.iter().filter_map(|row| row["target"].as_str().and_then(|t| Actor::new(t).ok())).collect())
}

#[derive(Serialize)]
struct SyncOutput<'a> {
    /// The version stored; with --dry-run the one that would be; with nothing to change the one held.
    version: u64,
    /// The version read.
    from_version: u64,
    stored: bool,
    dry_run: bool,
    #[serde(flatten)]
    changes: &'a sync::Changes,
}

/// A row per change, for the table and CSV.
fn sync_rows(changes: &sync::Changes) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for a in &changes.added {
        rows.push(vec![
            "add".into(),
            a.name.to_string(),
            a.key.to_string(),
            a.role.to_string(),
            a.scope.to_string(),
            String::new(),
        ]);
    }
    for u in &changes.updated {
        let was = format!("was {} on `{}`", u.was_role, u.was_scope);
        rows.push(vec![
            "update".into(),
            u.name.to_string(),
            u.key.to_string(),
            u.role.to_string(),
            u.scope.to_string(),
            was,
        ]);
    }
    for r in &changes.revoked {
        rows.push(vec![
            "revoke".into(),
            r.name.to_string(),
            r.key.to_string(),
            String::new(),
            String::new(),
            r.reason.to_string(),
        ]);
    }
    for s in &changes.skipped {
        let key = s.key.clone().unwrap_or_default();
        rows.push(vec!["skip".into(), s.name.clone(), key, String::new(), String::new(), s.reason.clone()]);
    }
    rows
}

async fn sync_accounts(cli: &Cli, root_key: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let Some((root, client, current)) = open_for_change(cli, root_key, false).await? else {
        return Ok(no_list());
    };
    let backend = Backend::new(cli)?;
    let listed = backend.list("/api/users", &[], &every_page()).await.context("cannot read the accounts")?;
    let users: Vec<UserView> = listed
        .items
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .context("the backend's accounts are not what this CLI reads")?;
    let removed = removed_accounts(&backend, &client).await?;
    let plan = sync::plan(&current, &users, &removed, &root.public_key(), Utc::now())?;
    let changes = &plan.changes;
    let counts =
        format!("{} added, {} updated, {} revoked", changes.added.len(), changes.updated.len(), changes.revoked.len());
    let (version, stored) = match &plan.next {
        None => {
            output::note(&format!("nothing to change: trust list version {} matches the accounts", current.version));
            (current.version, false)
        }
        Some(next) if dry_run => {
            output::note(&format!(
                "dry run: version {} would have {counts}; nothing stored (version {} stays)",
                next.version, current.version
            ));
            (next.version, false)
        }
        Some(next) => {
            let version = sign_and_store(&client, &root, next).await?;
            let added: Vec<String> = changes.added.iter().map(|a| a.key.to_string()).collect();
            let updated: Vec<String> = changes.updated.iter().map(|u| u.key.to_string()).collect();
            let revoked: Vec<String> = changes.revoked.iter().map(|r| r.key.to_string()).collect();
            crate::audit::record(
                &client,
                "trust-sync",
                &format!("{KV_TRUST}/{TRUST_KEY}"),
                json!({ "version": version, "added": added, "updated": updated, "revoked": revoked }),
            )
            .await;
            output::note(&format!(
                "stored trust list version {version}: {counts}; agents follow it as soon as they have it"
            ));
            (version, true)
        }
    };
    if !changes.skipped.is_empty() {
        output::note(&format!(
            "warning: {} account(s) skipped, their keys not trusted: see the `skip` rows (`skipped` in JSON)",
            changes.skipped.len()
        ));
    }
    const HEADER: [&str; 6] = ["CHANGE", "NAME", "KEY", "ROLE", "SCOPE", "WHY"];
    let rows = sync_rows(changes);
    match cli.output {
        Format::Json => output::json(&SyncOutput { version, from_version: current.version, stored, dry_run, changes })?,
        Format::Csv => output::csv(&HEADER, &rows)?,
        Format::Table if rows.is_empty() => {}
        Format::Table => output::table(&HEADER, &rows),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanade_shared::authority::SigningKey;

    fn name(n: &str) -> Actor {
        Actor::new(n).unwrap()
    }

    fn empty() -> TrustList {
        TrustList { version: 0, issued_at: Utc::now(), keys: Vec::new() }
    }

    #[test]
    fn add_appends_a_key_then_replaces_only_its_role_and_scope() {
        let alice = SigningKey::generate().public_key();
        let office = GroupScope::parse_list("office").unwrap();
        let v1 = add(&empty(), &name("alice"), alice, Role::Operator, &office, Utc::now()).unwrap().unwrap();
        assert_eq!(v1.version, 1);
        assert_eq!(v1.keys.len(), 1);
        assert_eq!(add(&v1, &name("alice"), alice, Role::Operator, &office, Utc::now()).unwrap(), None);
        let v2 = add(&v1, &name("alice"), alice, Role::Approver, &GroupScope::Fleet, Utc::now()).unwrap().unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(v2.keys.len(), 1);
        assert_eq!((v2.keys[0].role, &v2.keys[0].scope), (Role::Approver, &GroupScope::Fleet));
        assert_eq!(v2.keys[0].added_at, v1.keys[0].added_at, "replacing the role keeps when it was added");
        let err = add(&v2, &name("mallory"), alice, Role::Admin, &GroupScope::Fleet, Utc::now()).unwrap_err();
        assert!(matches!(err, ChangeError::OtherName { .. }), "{err}");
    }

    #[test]
    fn an_admin_limited_to_groups_is_refused_by_the_list() {
        let key = SigningKey::generate().public_key();
        let office = GroupScope::parse_list("office").unwrap();
        let err = add(&empty(), &name("root"), key, Role::Admin, &office, Utc::now()).unwrap_err();
        assert!(matches!(&err, ChangeError::List(list) if matches!(**list, TrustError::Scope { .. })), "{err}");
    }

    #[test]
    fn revoke_marks_every_key_of_a_name_and_never_deletes_or_restores() {
        let (a1, a2, bob) = (
            SigningKey::generate().public_key(),
            SigningKey::generate().public_key(),
            SigningKey::generate().public_key(),
        );
        let mut list = empty();
        for (who, key) in [("alice", a1), ("alice", a2), ("bob", bob)] {
            list = add(&list, &name(who), key, Role::Operator, &GroupScope::Fleet, Utc::now()).unwrap().unwrap();
        }
        let (next, revoked) = revoke(&list, &Target::Name(name("alice")), Utc::now()).unwrap().unwrap();
        assert_eq!(next.version, list.version + 1);
        assert_eq!(revoked, vec![a1, a2]);
        assert_eq!(next.keys.len(), 3, "revoked keys stay listed");
        assert!(next.find(&a1).unwrap().revoked && next.find(&a2).unwrap().revoked);
        assert!(!next.find(&bob).unwrap().revoked);
        assert_eq!(revoke(&next, &Target::Name(name("alice")), Utc::now()).unwrap(), None);
        assert_eq!(revoke(&next, &Target::Key(a1), Utc::now()).unwrap(), None);
        let err = add(&next, &name("alice"), a1, Role::Operator, &GroupScope::Fleet, Utc::now()).unwrap_err();
        assert_eq!(err, ChangeError::Revoked(a1.to_string()));
        let (by_key, revoked) = revoke(&next, &Target::Key(bob), Utc::now()).unwrap().unwrap();
        assert_eq!(revoked, vec![bob]);
        assert!(by_key.keys.iter().all(|k| k.revoked));
        let nobody = revoke(&next, &Target::Name(name("carol")), Utc::now()).unwrap_err();
        assert!(matches!(nobody, ChangeError::NotListed(_)), "{nobody}");
    }

    #[test]
    fn a_revoke_target_is_a_key_when_it_looks_like_one_and_a_name_otherwise() {
        let key = SigningKey::generate().public_key();
        assert_eq!(parse_target(&key.to_string()).unwrap(), Target::Key(key));
        assert_eq!(parse_target("alice").unwrap(), Target::Name(name("alice")));
        assert!(parse_target("ed25519:garbage").unwrap_err().contains("is not a public key"));
        assert!(parse_target("Alice Smith").is_err());
        assert!(parse_target(&"a".repeat(100_000)).unwrap_err().len() < 300);
    }
}
