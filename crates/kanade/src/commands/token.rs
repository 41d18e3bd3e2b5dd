//! `kanade token create|list|revoke`: long-lived API tokens of your own account, for automation (CI, scripts,
//! Prometheus). A token acts as you, with at most your role and within your group scope; pass it as `--token`
//! (`KANADE_AUTH_TOKEN`) or `Authorization: Bearer`. Made in a signed-in session (`kanade login`).

use std::process::ExitCode;
use std::time::Duration;

use kanade_shared::access::Role;
use kanade_shared::api::{ApiTokenBody, ApiTokenView, CreatedApiToken};

use super::enroll::{time, typed};
use crate::Cli;
use crate::backend::{Backend, PageArgs};
use crate::output::{self, Format};

const EXIT_CODES: &str = "Exit codes: 0 done; 1 kanade failed, the backend could not be reached or refused (not \
signed in, a role above your own, no such token); 2 bad input: arguments, or a value the backend found invalid.";

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it alone on stdout (`TOKEN=$(kanade token create --role operator)`), its
    /// details on stderr. Shown this once: the backend keeps only a hash. -o json: the token and its details.
    #[command(after_help = EXIT_CODES)]
    Create(CreateArgs),
    /// Your API tokens, newest first (id, name, role, state, expiry, last use); --everyone: every user's (admins).
    #[command(after_help = EXIT_CODES)]
    List {
        /// Every user's tokens, not only yours (admins only).
        #[arg(long)]
        everyone: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke an API token: it stops working at once. Yours, or anyone's for an admin.
    #[command(after_help = EXIT_CODES)]
    Revoke {
        /// The token's id (or the whole token, whose id is taken).
        #[arg(value_parser = parse_token_id)]
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// viewer, operator, approver or admin; at most your own (default: your own).
    #[arg(long)]
    pub role: Option<Role>,
    /// How long it works (1h to 366d).
    #[arg(long, default_value = "90d", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// A name to know it by.
    #[arg(long)]
    pub name: Option<String>,
}

/// A token id, or a whole token (whose id is taken, so the secret never goes into a URL): checked here.
fn parse_token_id(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let id = raw.strip_prefix("kanade_api_").and_then(|rest| rest.split('_').next()).unwrap_or(raw);
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)) {
        Ok(id.to_owned())
    } else {
        Err("not an API token id: 16 characters of a-z and 2-7 (the part after `kanade_api_`)".into())
    }
}

fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(raw).map_err(|err| format!("not a duration ({err}); write e.g. 90d or 12h"))?;
    if ttl < Duration::from_secs(3600) || ttl > Duration::from_secs(366 * 24 * 3600) {
        return Err("must be between 1h and 366d".into());
    }
    Ok(ttl)
}

pub async fn run(cli: &Cli, command: &TokenCommand) -> anyhow::Result<ExitCode> {
    let outcome = match command {
        TokenCommand::Create(args) => create(cli, args).await,
        TokenCommand::List { everyone, page } => list(cli, *everyone, page).await,
        TokenCommand::Revoke { id } => revoke(cli, id).await,
    };
    outcome.or_else(super::user::refused)
}

fn row(view: &ApiTokenView) -> Vec<String> {
    vec![
        view.id.clone(),
        view.name.clone(),
        view.user.clone(),
        view.role.to_string(),
        view.state.clone(),
        time(&view.expires_at),
        view.last_used_at.as_ref().map(time).unwrap_or_default(),
    ]
}

async fn create(cli: &Cli, args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let body = ApiTokenBody {
        role: args.role,
        ttl: Some(humantime::format_duration(args.ttl).to_string()),
        name: args.name.clone(),
    };
    let raw = Backend::new(cli)?.post("/api/tokens", &body).await?;
    let created: CreatedApiToken = typed(raw.clone())?;
    match cli.output {
        Format::Json => output::json(&raw)?,
        Format::Table | Format::Csv => {
            let view = &created.view;
            output::note(&format!(
                "API token `{}` (`{}`): role {}, acts as `{}`, expires {}; shown this once",
                view.id,
                view.name,
                view.role,
                view.user,
                time(&view.expires_at)
            ));
            output::raw(false, &format!("{}\n", created.token));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(cli: &Cli, all: bool, page: &PageArgs) -> anyhow::Result<ExitCode> {
    let query = if all { vec![("all", "true".to_owned())] } else { Vec::new() };
    let listed = Backend::new(cli)?.list("/api/tokens", &query, page).await?;
    let rows = listed.items.iter().map(|item| typed::<ApiTokenView>(item.clone()).map(|v| row(&v)));
    let rows: Vec<Vec<String>> = rows.collect::<anyhow::Result<_>>()?;
    listed.print_rows(cli.output, &["ID", "NAME", "USER", "ROLE", "STATE", "EXPIRES", "LAST USED"], rows)?;
    Ok(ExitCode::SUCCESS)
}

async fn revoke(cli: &Cli, id: &str) -> anyhow::Result<ExitCode> {
    let raw = Backend::new(cli)?.delete(&format!("/api/tokens/{id}"), &[]).await?;
    let view: ApiTokenView = typed(raw.clone())?;
    output::note(&format!("revoked API token `{}` of `{}`: it stops working at once", view.id, view.user));
    if cli.output == Format::Json {
        output::json(&raw)?;
    }
    Ok(ExitCode::SUCCESS)
}
