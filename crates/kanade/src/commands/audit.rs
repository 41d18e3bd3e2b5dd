//! `kanade audit [--since 1h] [--actor a] [--action revoke] [--limit N | --all]`: who did what, from the backend,
//! newest first.

use std::process::ExitCode;

use crate::Cli;
use crate::backend::{Backend, PageArgs, field};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// How far back: a duration (`1h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    pub since: String,
    #[arg(long)]
    pub actor: Option<String>,
    #[arg(long)]
    pub action: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

pub async fn run(cli: &Cli, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let mut query = vec![("since", args.since.clone())];
    query.extend(args.actor.clone().map(|a| ("actor", a)));
    query.extend(args.action.clone().map(|a| ("action", a)));
    let listed = Backend::new(cli)?.list("/api/audit", &query, &args.page).await?;
    listed.print(cli.output, &["AT", "ACTOR", "ACTION", "TARGET"], |e| {
        ["at", "actor", "action", "target"].iter().map(|k| field(e, k)).collect()
    })?;
    Ok(ExitCode::SUCCESS)
}
