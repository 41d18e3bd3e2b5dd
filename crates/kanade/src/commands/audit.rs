//! `kanade audit [--since 1h] [--actor a] [--action revoke] [--limit N]`: who did what, from the backend.

use std::process::ExitCode;

use crate::Cli;
use crate::output::{self, Format};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// How far back: a duration (`1h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    pub since: String,
    #[arg(long)]
    pub actor: Option<String>,
    #[arg(long)]
    pub action: Option<String>,
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

pub async fn run(cli: &Cli, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let mut query = vec![("since", args.since.clone()), ("limit", args.limit.to_string())];
    query.extend(args.actor.clone().map(|a| ("actor", a)));
    query.extend(args.action.clone().map(|a| ("action", a)));
    let body = crate::backend::Backend::new(cli)?.get("/api/audit", &query).await?;
    match cli.output {
        Format::Json => output::json(&body)?,
        Format::Table => {
            let rows: Vec<Vec<String>> = body
                .as_array()
                .map(|events| {
                    events
                        .iter()
                        .map(|e| {
                            ["at", "actor", "action", "target"]
                                .iter()
                                .map(|k| e[*k].as_str().unwrap_or_default().to_owned())
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default();
            output::table(&["AT", "ACTOR", "ACTION", "TARGET"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}
