//! `kanade enroll create|list|revoke|approve`: enrolment tokens and the PCs waiting for approval, through the
//! backend, which keeps them and issues each agent its own NATS credential (DESIGN.md, Identity). `kanade agent
//! revoke` and `kanade agent groups` change an enrolled PC's credential (`commands::agent`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use kanade_shared::api::{CreatedEnrollToken, EnrollTokenBody, EnrollTokenView, EnrollmentView, ErrorCode, NoBody};
use kanade_shared::enroll::{MAX_TOKEN_TTL, MAX_TOKEN_USES, TOKEN_ID_LEN};
use kanade_shared::{GroupName, PcId};
use serde_json::Value;

use crate::backend::{Backend, PageArgs, Refused};
use crate::output::{self, Format};
use crate::{Cli, EXIT_USAGE};

const EXIT_CODES: &str = "Exit codes: 0 done; 1 kanade failed, the backend could not be reached or refused (enrolment \
not configured on it, no such token or PC, a PC not waiting for approval); 2 bad input: arguments, or a value the \
backend found invalid.";

#[derive(Debug, clap::Subcommand)]
pub enum EnrollCommand {
    /// Create an enrolment token and print it alone on stdout (`TOKEN=$(kanade enroll create)`), its details on
    /// stderr. The token is shown this once: the backend keeps only a hash of its secret.
    ///
    /// An agent's installer passes it to the agent (`KANADE_ENROLL_TOKEN`); the agent makes its own key and trades
    /// the token for a credential of its own. -o json: the token and its details.
    #[command(after_help = EXIT_CODES)]
    Create(CreateArgs),
    /// The enrolment tokens, newest first (id, state, groups, uses left, expiry, who made it, PCs it enrolled); with
    /// --pending the PCs waiting for approval instead.
    #[command(after_help = EXIT_CODES)]
    List(ListArgs),
    /// Revoke an enrolment token: it enrols no more PCs (those it enrolled stay enrolled).
    #[command(after_help = EXIT_CODES)]
    Revoke {
        /// The token's id: the part after `kanade_enroll_` (or the whole token).
        #[arg(value_parser = parse_token_id)]
        id: String,
    },
    /// Approve a PC waiting for approval (the backend's `approve_enrollments`): it gets its credential the next time
    /// it asks, within 30 s.
    #[command(after_help = EXIT_CODES)]
    Approve {
        /// The PC's id.
        pc: PcId,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Every PC the token enrols gets these groups (comma-separated), whatever its config asks for; none: each gets
    /// the groups its own config names.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<GroupName>,
    /// How many PCs it may enrol.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_TOKEN_USES)))]
    pub uses: u32,
    /// How long it may be used (1m to 90d).
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The PCs waiting for an operator's approval, instead of the tokens.
    #[arg(long)]
    pub pending: bool,
    #[command(flatten)]
    pub page: PageArgs,
}

fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(raw).map_err(|err| format!("not a duration ({err}); write e.g. 24h or 7d"))?;
    if ttl < Duration::from_secs(60) || ttl > MAX_TOKEN_TTL {
        return Err(format!("must be between 1m and {}", humantime::format_duration(MAX_TOKEN_TTL)));
    }
    Ok(ttl)
}

/// A token id, or a whole token (whose id is taken): checked here, before anything is sent.
fn parse_token_id(raw: &str) -> Result<String, String> {
    let id = match kanade_shared::enroll::Token::parse(raw) {
        Ok(token) => token.id,
        Err(_) => raw.trim().to_owned(),
    };
    if id.len() == TOKEN_ID_LEN && id.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)) {
        Ok(id)
    } else {
        Err(format!("not a token id: {TOKEN_ID_LEN} characters of a-z and 2-7 (the part after `kanade_enroll_`)"))
    }
}

pub async fn run(cli: &Cli, command: &EnrollCommand) -> anyhow::Result<ExitCode> {
    match command {
        EnrollCommand::Create(args) => create(cli, args).await,
        EnrollCommand::List(args) if args.pending => pending(cli, &args.page).await,
        EnrollCommand::List(args) => tokens(cli, &args.page).await,
        EnrollCommand::Revoke { id } => revoke(cli, id).await,
        EnrollCommand::Approve { pc } => approve(cli, pc).await,
    }
}

/// The backend's refusals of bad input exit as usage errors; anything else (not configured, not found, the backend
/// unreachable) is the error it is.
pub fn refused(err: anyhow::Error) -> anyhow::Result<ExitCode> {
    let bad_input = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidPcId,
        ErrorCode::InvalidTokenId,
        ErrorCode::InvalidQuery,
    ];
    match err.downcast_ref::<Refused>() {
        Some(r) if bad_input.iter().any(|code| r.code == code.as_str()) => {
            output::error(&err);
            Ok(ExitCode::from(EXIT_USAGE))
        }
        _ => Err(err),
    }
}

/// A backend answer read as one of the API's types (`-o json` prints it as it came instead).
pub fn typed<T: serde::de::DeserializeOwned>(raw: Value) -> anyhow::Result<T> {
    serde_json::from_value(raw).context("the backend's answer is not what this CLI reads")
}

/// A time as the tables show it: RFC 3339 in UTC, to the second.
pub fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn create(cli: &Cli, args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let body = EnrollTokenBody {
        groups: args.groups.iter().map(ToString::to_string).collect(),
        uses: Some(args.uses),
        ttl: Some(humantime::format_duration(args.ttl).to_string()),
    };
    let raw = match Backend::new(cli)?.post("/api/enroll/tokens", &body).await {
        Ok(raw) => raw,
        Err(err) => return refused(err),
    };
    let created: CreatedEnrollToken = typed(raw.clone())?;
    match cli.output {
        Format::Json => output::json(&raw)?,
        Format::Table | Format::Csv => {
            let view = &created.view;
            let groups = if view.groups.is_empty() { "each PC's own".to_owned() } else { view.groups.join(",") };
            output::note(&format!(
                "enrolment token `{}`: {} use(s), groups {groups}, expires {}; shown this once",
                view.id,
                view.uses,
                time(&view.expires_at)
            ));
            output::raw(false, &format!("{}\n", created.token));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn token_row(view: &EnrollTokenView) -> Vec<String> {
    vec![
        view.id.clone(),
        view.state.clone(),
        view.groups.join(","),
        format!("{}/{}", view.uses_left, view.uses),
        time(&view.expires_at),
        view.created_by.clone(),
        view.enrolled.join(","),
    ]
}

async fn tokens(cli: &Cli, page: &PageArgs) -> anyhow::Result<ExitCode> {
    let listed = match Backend::new(cli)?.list("/api/enroll/tokens", &[], page).await {
        Ok(listed) => listed,
        Err(err) => return refused(err),
    };
    let rows = listed.items.iter().map(|item| typed::<EnrollTokenView>(item.clone()).map(|v| token_row(&v)));
    let rows: Vec<Vec<String>> = rows.collect::<anyhow::Result<_>>()?;
    listed.print_rows(
        cli.output,
        &["ID", "STATE", "GROUPS", "USES LEFT", "EXPIRES", "CREATED BY", "ENROLLED"],
        rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn pending(cli: &Cli, page: &PageArgs) -> anyhow::Result<ExitCode> {
    let query = [("status", "pending".to_owned())];
    let listed = match Backend::new(cli)?.list("/api/enrollments", &query, page).await {
        Ok(listed) => listed,
        Err(err) => return refused(err),
    };
    let rows = listed.items.iter().map(|item| {
        typed::<EnrollmentView>(item.clone()).map(|v| {
            vec![v.pc_id, v.hostname, v.os, v.groups.join(","), v.token_id, time(&v.requested_at), v.public_key]
        })
    });
    let rows: Vec<Vec<String>> = rows.collect::<anyhow::Result<_>>()?;
    listed.print_rows(cli.output, &["PC", "HOSTNAME", "OS", "GROUPS", "TOKEN", "REQUESTED", "KEY"], rows)?;
    Ok(ExitCode::SUCCESS)
}

async fn revoke(cli: &Cli, id: &str) -> anyhow::Result<ExitCode> {
    let raw = match Backend::new(cli)?.delete(&format!("/api/enroll/tokens/{id}"), &[]).await {
        Ok(raw) => raw,
        Err(err) => return refused(err),
    };
    let view: EnrollTokenView = typed(raw.clone())?;
    output::note(&format!(
        "revoked enrolment token `{id}`: it enrols no more PCs ({} it enrolled stay enrolled)",
        view.uses - view.uses_left
    ));
    if cli.output == Format::Json {
        output::json(&raw)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn approve(cli: &Cli, pc: &PcId) -> anyhow::Result<ExitCode> {
    let raw = match Backend::new(cli)?.post(&format!("/api/enrollments/{pc}/approve"), &NoBody {}).await {
        Ok(raw) => raw,
        Err(err) => return refused(err),
    };
    let view: EnrollmentView = typed(raw.clone())?;
    output::note(&format!(
        "approved `{pc}` (key {}, groups {}): it gets its credential the next time it asks",
        view.public_key,
        if view.groups.is_empty() { "none".to_owned() } else { view.groups.join(",") }
    ));
    if cli.output == Format::Json {
        output::json(&raw)?;
    }
    Ok(ExitCode::SUCCESS)
}
