//! `kanade user add|list|set|disable|enable|rm|passwd|totp|key`: operator accounts, through the backend (an admin's
//! work, but `passwd` without a name, which changes your own). The first admin is made with the setup token a
//! backend with no user prints: `kanade user add <name> --role admin --setup-token <token>`.

use std::process::ExitCode;

use kanade_shared::access::{GroupScope, Role};
use kanade_shared::api::{
    ErrorCode, OwnPasswordBody, PasswordBody, SetupBody, SigningKeyBody, TotpView, UserBody, UserPatch, UserView,
};
use kanade_shared::{Actor, GroupName};
use serde_json::Value;

use super::enroll::{time, typed};
use super::login::{new_password, no_terminal, prompt_secret, stdin_lines};
use crate::backend::{Backend, PageArgs, Refused};
use crate::output::{self, Format};
use crate::{Cli, EXIT_USAGE};

const EXIT_CODES: &str = "Exit codes: 0 done; 1 kanade failed, the backend could not be reached or refused (not \
signed in, a role below admin, no such user, the last admin, a wrong setup token); 2 bad input: arguments, or a value \
the backend found invalid (a short password, a malformed key), or no terminal to ask a password on and no \
--password-stdin.";

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add an operator account. The password is asked for twice (or read from stdin with --password-stdin).
    ///
    /// Roles: viewer reads everything; operator runs and kills jobs, publishes scripts and packages, manages
    /// schedules, within its groups; approver may also approve others' executions; admin manages users, enrolment,
    /// agent releases and configuration, always fleet-wide. With --setup-token (printed by a backend that has no
    /// user yet) this makes the first admin without signing in.
    #[command(after_help = EXIT_CODES)]
    Add(AddArgs),
    /// The accounts, by name: role, scope, state, TOTP, registered signing key.
    #[command(after_help = EXIT_CODES)]
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change an account's role or group scope.
    #[command(after_help = EXIT_CODES)]
    Set(SetArgs),
    /// Disable an account: it cannot sign in, and its sessions and API tokens stop working at once.
    #[command(after_help = EXIT_CODES)]
    Disable { name: Actor },
    /// Enable a disabled account again (its API tokens work again; it signs in anew).
    #[command(after_help = EXIT_CODES)]
    Enable { name: Actor },
    /// Remove an account with its sessions and API tokens.
    #[command(after_help = EXIT_CODES)]
    Rm { name: Actor },
    /// Set an account's password (an admin), or with no name change your own (asks for the current one first).
    /// Every other session of the account ends.
    ///
    /// With --password-stdin: the new password on the first line; for your own, the current one first and the new
    /// one on the second line.
    #[command(after_help = EXIT_CODES)]
    Passwd {
        /// The account; none: your own.
        name: Option<Actor>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Turn on TOTP for an account and print the otpauth:// URL for its authenticator app (shown this once);
    /// sign-in then needs a code. --disable turns it off.
    #[command(after_help = EXIT_CODES)]
    Totp {
        name: Actor,
        #[arg(long)]
        disable: bool,
    },
    /// Register an operator's Ed25519 public key (`ed25519:...`, as `kanade key` prints it), which the trust list is
    /// built from; --clear removes it.
    #[command(after_help = EXIT_CODES)]
    Key {
        name: Actor,
        /// The public key; leave it out with --clear.
        #[arg(required_unless_present = "clear")]
        public_key: Option<String>,
        #[arg(long, conflicts_with = "public_key")]
        clear: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Lowercase letters, digits, `-` and `_`, 1 to 64.
    pub name: Actor,
    /// viewer, operator, approver or admin.
    #[arg(long)]
    pub role: Role,
    /// The groups whose PCs it reaches (comma-separated); none: the whole fleet. Not for an admin.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<GroupName>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// The setup token a backend with no user printed: makes this first admin (with --role admin).
    #[arg(long, value_name = "TOKEN")]
    pub setup_token: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    pub name: Actor,
    /// The new role.
    #[arg(long)]
    pub role: Option<Role>,
    /// The new scope's groups (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "fleet")]
    pub groups: Option<Vec<GroupName>>,
    /// The new scope is the whole fleet.
    #[arg(long)]
    pub fleet: bool,
}

pub async fn run(cli: &Cli, command: &UserCommand) -> anyhow::Result<ExitCode> {
    let outcome = match command {
        UserCommand::Add(args) => add(cli, args).await,
        UserCommand::List { page } => list(cli, page).await,
        UserCommand::Set(args) => set(cli, args).await,
        UserCommand::Disable { name } => {
            patch(cli, name, UserPatch { disabled: Some(true), ..Default::default() }).await
        }
        UserCommand::Enable { name } => {
            patch(cli, name, UserPatch { disabled: Some(false), ..Default::default() }).await
        }
        UserCommand::Rm { name } => remove(cli, name).await,
        UserCommand::Passwd { name, password_stdin } => passwd(cli, name.as_ref(), *password_stdin).await,
        UserCommand::Totp { name, disable } => totp(cli, name, *disable).await,
        UserCommand::Key { name, public_key, clear } => key(cli, name, public_key.as_deref(), *clear).await,
    };
    outcome.or_else(refused)
}

/// The backend's refusals of bad input exit as usage errors; anything else is the error it is.
pub fn refused(err: anyhow::Error) -> anyhow::Result<ExitCode> {
    let bad_input =
        [ErrorCode::InvalidRequest, ErrorCode::InvalidBody, ErrorCode::InvalidQuery, ErrorCode::InvalidTokenId];
    match err.downcast_ref::<Refused>() {
        Some(r) if bad_input.iter().any(|code| r.code == code.as_str()) => {
            output::error(&err);
            Ok(ExitCode::from(EXIT_USAGE))
        }
        _ => Err(err),
    }
}

fn user_row(view: &UserView) -> Vec<String> {
    vec![
        view.name.clone(),
        view.role.to_string(),
        view.scope.to_string(),
        if view.disabled { "disabled" } else { "enabled" }.to_owned(),
        if view.totp { "yes" } else { "no" }.to_owned(),
        view.signing_key.clone().unwrap_or_default(),
        time(&view.created_at),
        view.created_by.clone(),
    ]
}

const HEADER: [&str; 8] = ["NAME", "ROLE", "SCOPE", "STATE", "TOTP", "SIGNING KEY", "CREATED", "BY"];

/// Prints one account: its row (or the JSON as it came), and `note` on stderr.
fn print_user(cli: &Cli, raw: Value, note: &str) -> anyhow::Result<ExitCode> {
    let view: UserView = typed(raw.clone())?;
    output::note(note);
    match cli.output {
        Format::Json => output::json(&raw)?,
        Format::Table | Format::Csv => output::table(&HEADER, &[user_row(&view)]),
    }
    Ok(ExitCode::SUCCESS)
}

async fn add(cli: &Cli, args: &AddArgs) -> anyhow::Result<ExitCode> {
    let stdin = if args.password_stdin { Some(stdin_lines(1)?.remove(0)) } else { None };
    let Some(password) = new_password(&format!("password for `{}`", args.name), stdin)? else { return no_terminal() };
    let groups: Vec<String> = args.groups.iter().map(ToString::to_string).collect();
    let (raw, how) = match &args.setup_token {
        Some(token) => {
            if args.role != Role::Admin || !groups.is_empty() {
                output::note("error: the setup token makes the first admin: pass --role admin and no --groups");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            let body = SetupBody { setup_token: token.trim().to_owned(), name: args.name.to_string(), password };
            let raw: Value = Backend::anonymous(&cli.backend_url)?.post_public("/api/setup", &body).await?;
            (raw, "the first admin; sign in with `kanade login`")
        }
        None => {
            let body = UserBody { name: args.name.to_string(), role: args.role, groups, password };
            (Backend::new(cli)?.post("/api/users", &body).await?, "added")
        }
    };
    print_user(cli, raw, &format!("user `{}`: {how}", args.name))
}

async fn list(cli: &Cli, page: &PageArgs) -> anyhow::Result<ExitCode> {
    let listed = Backend::new(cli)?.list("/api/users", &[], page).await?;
    let rows = listed.items.iter().map(|item| typed::<UserView>(item.clone()).map(|v| user_row(&v)));
    let rows: Vec<Vec<String>> = rows.collect::<anyhow::Result<_>>()?;
    listed.print_rows(cli.output, &HEADER, rows)?;
    Ok(ExitCode::SUCCESS)
}

async fn patch(cli: &Cli, name: &Actor, body: UserPatch) -> anyhow::Result<ExitCode> {
    let raw = Backend::new(cli)?.send_json(reqwest::Method::PATCH, &format!("/api/users/{name}"), &body).await?;
    let what = match body.disabled {
        Some(true) => "disabled: its sessions and API tokens stopped working",
        Some(false) => "enabled",
        None => "changed",
    };
    print_user(cli, raw, &format!("user `{name}`: {what}"))
}

async fn set(cli: &Cli, args: &SetArgs) -> anyhow::Result<ExitCode> {
    let groups = match (&args.groups, args.fleet) {
        (Some(groups), _) => Some(groups.iter().map(ToString::to_string).collect()),
        (None, true) => Some(Vec::new()),
        (None, false) => None,
    };
    if args.role.is_none() && groups.is_none() {
        output::note("error: nothing to change: pass --role, --groups or --fleet");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    // A scope that cannot be is refused here, before anything is sent.
    if let (Some(role), Some(groups)) = (args.role, &groups) {
        let names: Vec<GroupName> = groups.iter().filter_map(|g: &String| GroupName::new(g.as_str()).ok()).collect();
        if let Err(err) = GroupScope::from_groups(names).and_then(|s| s.check_role(role)) {
            output::note(&format!("error: {err}"));
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    }
    patch(cli, &args.name, UserPatch { role: args.role, groups, disabled: None }).await
}

async fn remove(cli: &Cli, name: &Actor) -> anyhow::Result<ExitCode> {
    let raw = Backend::new(cli)?.delete(&format!("/api/users/{name}"), &[]).await?;
    print_user(cli, raw, &format!("user `{name}`: removed, with its sessions and API tokens"))
}

async fn passwd(cli: &Cli, name: Option<&Actor>, password_stdin: bool) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    match name {
        Some(name) => {
            let stdin = if password_stdin { Some(stdin_lines(1)?.remove(0)) } else { None };
            let Some(password) = new_password(&format!("new password for `{name}`"), stdin)? else {
                return no_terminal();
            };
            let raw = backend.post(&format!("/api/users/{name}/password"), &PasswordBody { password }).await?;
            print_user(cli, raw, &format!("user `{name}`: password set; every session of it ended"))
        }
        None => {
            let (current, stdin) = if password_stdin {
                let mut lines = stdin_lines(2)?;
                let new = lines.pop();
                (lines.pop(), new)
            } else {
                (prompt_secret("current password: ")?, None)
            };
            let Some(current_password) = current else { return no_terminal() };
            let Some(password) = new_password("new password", stdin)? else { return no_terminal() };
            backend.post("/api/session/password", &OwnPasswordBody { current_password, password }).await?;
            output::note("your password is changed; your other sessions ended");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn totp(cli: &Cli, name: &Actor, disable: bool) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    if disable {
        let raw = backend.delete(&format!("/api/users/{name}/totp"), &[]).await?;
        return print_user(cli, raw, &format!("user `{name}`: TOTP off; sign-in needs no code"));
    }
    let raw = backend.post(&format!("/api/users/{name}/totp"), &kanade_shared::api::NoBody {}).await?;
    let view: TotpView = typed(raw.clone())?;
    match cli.output {
        Format::Json => output::json(&raw)?,
        Format::Table | Format::Csv => {
            output::note(&format!(
                "user `{name}`: TOTP on; add this to the authenticator app (shown this once; secret {}):",
                view.secret
            ));
            output::raw(false, &format!("{}\n", view.otpauth_url));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn key(cli: &Cli, name: &Actor, public_key: Option<&str>, clear: bool) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    let raw = match (public_key, clear) {
        (Some(key), false) => {
            if let Err(err) = key.parse::<kanade_shared::authority::PublicKey>() {
                output::note(&format!("error: {err}"));
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            let body = SigningKeyBody { public_key: key.to_owned() };
            backend.send_json(reqwest::Method::PUT, &format!("/api/users/{name}/key"), &body).await?
        }
        _ => backend.delete(&format!("/api/users/{name}/key"), &[]).await?,
    };
    let what = if clear { "signing key removed" } else { "signing key registered" };
    print_user(cli, raw, &format!("user `{name}`: {what}"))
}
