//! `kanade jetstream setup|status`.

use std::process::ExitCode;

use crate::output::{self, Format};
use crate::{Cli, connect};
use kanade_ops::jetstream::Action;

pub async fn setup(cli: &Cli, replicas: usize) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let js = async_nats::jetstream::new(client);
    let changes = kanade_ops::jetstream::setup(&js, replicas).await?;
    match cli.output {
        Format::Json => output::json(&changes)?,
        Format::Table => {
            let rows: Vec<Vec<String>> = changes
                .iter()
                .map(|c| {
                    let action = match &c.action {
                        Action::Created => "created".to_owned(),
                        Action::Updated(fields) => format!("updated ({})", fields.join(", ")),
                        Action::Unchanged => "unchanged".to_owned(),
                    };
                    vec![c.kind.label().to_owned(), c.name.clone(), action]
                })
                .collect();
            output::table(&["KIND", "NAME", "ACTION"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(cli: &Cli) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let js = async_nats::jetstream::new(client);
    let statuses = kanade_ops::jetstream::status(&js).await?;
    let missing = statuses.iter().filter(|s| !s.exists).count();
    match cli.output {
        Format::Json => output::json(&statuses)?,
        Format::Table => {
            let rows: Vec<Vec<String>> = statuses
                .iter()
                .map(|s| {
                    if let Some(why) = &s.unavailable {
                        return vec![
                            s.kind.label().into(),
                            s.name.clone(),
                            format!("unavailable: {why}"),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                        ];
                    }
                    if !s.exists {
                        return vec![
                            s.kind.label().into(),
                            s.name.clone(),
                            "missing".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                        ];
                    }
                    let replicas = match s.current_replicas {
                        Some(current) => format!("{current}/{} current", s.replicas),
                        None => s.replicas.to_string(),
                    };
                    let state = if s.current_replicas.is_some_and(|c| c < s.replicas) { "degraded" } else { "ok" };
                    vec![
                        s.kind.label().into(),
                        s.name.clone(),
                        state.into(),
                        s.messages.to_string(),
                        s.bytes.to_string(),
                        replicas,
                        s.leader.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(&["KIND", "NAME", "STATE", "MESSAGES", "BYTES", "REPLICAS", "LEADER"], &rows);
            if let Some(cluster) = statuses.iter().find_map(|s| s.cluster.clone()) {
                let mut lagging: Vec<&str> =
                    statuses.iter().flat_map(|s| s.lagging.iter().map(String::as_str)).collect();
                lagging.sort_unstable();
                lagging.dedup();
                let degraded = statuses.iter().filter(|s| s.current_replicas.is_some_and(|c| c < s.replicas)).count();
                if lagging.is_empty() {
                    output::note(&format!("cluster `{cluster}`: every replica current"));
                } else {
                    output::note(&format!(
                        "cluster `{cluster}`: {degraded} resource(s) degraded; peers offline or behind: {}",
                        lagging.join(", ")
                    ));
                }
            }
            if missing > 0 {
                output::note(&format!("{missing} resource(s) missing: run `kanade jetstream setup`"));
            }
        }
    }
    let unavailable = statuses.iter().filter(|s| s.unavailable.is_some()).count();
    if unavailable > 0 && matches!(cli.output, Format::Table) {
        output::note(&format!("{unavailable} resource(s) did not answer"));
    }
    Ok(if missing + unavailable > 0 { ExitCode::from(crate::EXIT_ERROR) } else { ExitCode::SUCCESS })
}
