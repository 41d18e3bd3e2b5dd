//! `kanade audit [--since 1h] [--actor a] [--action revoke] [--limit N]`: who did what, from the backend.

use std::process::ExitCode;

use anyhow::{Context as _, bail};

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
    let url = format!("{}/api/audit", cli.backend_url.trim_end_matches('/'));
    let mut request = reqwest::Client::new().get(&url).query(&query);
    if let Some(token) = &cli.token {
        request = request.bearer_auth(token);
    }
    let response =
        request.send().await.with_context(|| format!("cannot reach the backend at `{}`", cli.backend_url))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("the backend answered something that is not JSON")?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        bail!("the backend refused: {status}: {message}");
    }
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
