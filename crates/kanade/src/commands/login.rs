//! `kanade login`, `kanade logout` and `kanade whoami`: signing in to the backend as an operator account. The
//! session (the backend URL, a short-lived session token and the refresh token that renews it) is kept in
//! `session.json` in the operator's config folder, readable by its owner only; every command that talks to that same
//! backend then uses it (unless `--token` says otherwise), refreshing it as it goes.

use std::io::{BufRead as _, IsTerminal as _, Read as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use kanade_shared::api::{ErrorCode, LoginBody, Session, SessionTokens};
use serde_json::json;

use crate::backend::{self, Backend, Refused, StoredSession};
use crate::output::{self, Format};
use crate::{Cli, EXIT_USAGE};

const EXIT_CODES: &str = "Exit codes: 0 done; 1 kanade failed, the backend could not be reached or refused (a wrong \
name, password or code, a disabled account, too many attempts); 2 bad input: no terminal to ask the password on and \
no --password-stdin.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct LoginArgs {
    /// The account's name (default: KANADE_OPERATOR, else your OS account name).
    #[arg(long)]
    pub name: Option<String>,
    /// Read the password from the first line of stdin instead of asking for it (for scripts; an API token from
    /// `kanade token create` is usually the better choice there).
    #[arg(long)]
    pub password_stdin: bool,
    /// The account's TOTP code, if it has one (asked for on a terminal when it is needed and not given).
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
}

/// Reads `lines` lines from stdin (a password each), bounded: a password is short.
pub fn stdin_lines(lines: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(lines);
    let stdin = std::io::stdin();
    let mut reader = stdin.lock().take(64 * 1024);
    for _ in 0..lines {
        let mut line = String::new();
        if reader.read_line(&mut line).context("cannot read stdin")? == 0 {
            bail!("stdin ended before the password{}", if lines > 1 { "s" } else { "" });
        }
        out.push(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    Ok(out)
}

/// Asks for a secret on the terminal without echoing it; `None` when there is no terminal to ask on.
pub fn prompt_secret(prompt: &str) -> anyhow::Result<Option<String>> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    rpassword::prompt_password(prompt).map(Some).context("cannot read the password from the terminal")
}

/// A new password: asked twice on the terminal (they must agree), or the given line of stdin.
pub fn new_password(what: &str, from_stdin: Option<String>) -> anyhow::Result<Option<String>> {
    if let Some(password) = from_stdin {
        return Ok(Some(password));
    }
    let Some(first) = prompt_secret(&format!("{what}: "))? else { return Ok(None) };
    let Some(again) = prompt_secret("again: ")? else { return Ok(None) };
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(Some(first))
}

/// The usage error for a password that cannot be asked for.
pub fn no_terminal() -> anyhow::Result<ExitCode> {
    output::note("error: no terminal to ask for the password on: pass --password-stdin and the password on stdin");
    Ok(ExitCode::from(EXIT_USAGE))
}

pub async fn login(cli: &Cli, args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.clone().unwrap_or_else(crate::audit::operator);
    // Anonymous: a stored session, even a broken one, has nothing to do with signing in anew.
    let backend = Backend::anonymous(&cli.backend_url)?;
    let password = if args.password_stdin {
        stdin_lines(1)?.remove(0)
    } else {
        match prompt_secret(&format!("password of `{name}` at {}: ", backend.base()))? {
            Some(password) => password,
            None => return no_terminal(),
        }
    };
    let mut body = LoginBody { name: name.clone(), password, totp: args.totp.clone(), cookie: false };
    let tokens: SessionTokens = match backend.post_public("/api/login", &body).await {
        Ok(tokens) => tokens,
        Err(err) if needs_totp(&err) && body.totp.is_none() => {
            let Some(code) = prompt_secret("TOTP code: ")? else {
                bail!("this account needs its TOTP code: pass --totp <code>");
            };
            body.totp = Some(code);
            backend.post_public("/api/login", &body).await?
        }
        Err(err) => return Err(err),
    };
    let session = StoredSession::from_tokens(backend.base(), &tokens)?;
    let path = backend::session_path()?;
    backend::write_session(&path, &session)?;
    let summary = json!({
        "backend_url": session.backend_url,
        "user": tokens.user,
        "role": tokens.role,
        "scope": tokens.scope,
        "expires_at": tokens.expires_at,
        "refresh_expires_at": tokens.refresh_expires_at,
        "session_file": path,
    });
    match cli.output {
        Format::Json => output::json(&summary)?,
        Format::Table | Format::Csv => output::note(&format!(
            "signed in to {} as `{}` ({}, {}); the session lasts until {} (kept in {})",
            session.backend_url,
            tokens.user,
            tokens.role,
            tokens.scope,
            super::enroll::time(&tokens.refresh_expires_at),
            path.display()
        )),
    }
    Ok(ExitCode::SUCCESS)
}

fn needs_totp(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Refused>().is_some_and(|r| r.code == ErrorCode::TotpRequired.as_str())
}

pub async fn logout(_cli: &Cli) -> anyhow::Result<ExitCode> {
    let path = backend::session_path()?;
    let Some(session) = backend::read_session(&path)? else {
        output::note("not signed in: there is no stored session");
        return Ok(ExitCode::SUCCESS);
    };
    // The session is ended where it was made, whatever --backend-url says now.
    let ended = Backend::anonymous(&session.backend_url)?.logout(&session.refresh_token).await;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove `{}`", path.display()))?;
    match ended {
        Ok(()) => output::note(&format!("signed out of {} (`{}`)", session.backend_url, session.user)),
        // Gone from here either way; a session the backend did not hear about ends at its expiry.
        Err(err) => output::note(&format!(
            "the stored session is removed, but the backend did not end it ({err:#}); it ends by itself at {}",
            super::enroll::time(&session.refresh_expires_at)
        )),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn whoami(cli: &Cli) -> anyhow::Result<ExitCode> {
    let raw = Backend::new(cli)?.get("/api/session", &[]).await?;
    let session: Session = super::enroll::typed(raw.clone())?;
    match cli.output {
        Format::Json => output::json(&raw)?,
        Format::Table | Format::Csv => {
            let expires = session.expires_at.map(|at| super::enroll::time(&at)).unwrap_or_default();
            output::table(
                &["ACTOR", "ROLE", "SCOPE", "METHOD", "VERIFIED", "EXPIRES"],
                &[vec![
                    session.actor,
                    session.role.to_string(),
                    session.scope.to_string(),
                    session.method,
                    session.verified.to_string(),
                    expires,
                ]],
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
