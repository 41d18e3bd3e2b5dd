//! `kanade config get|set|unset|list|effective`: the layered agent config in KV `agent_config`, straight over NATS.
//! Agents watch it and apply a change without a restart.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kanade_ops::agent_config::AgentConfigStore;
use kanade_shared::layered::{self, Scope};
use kanade_shared::{GroupName, PcId};
use serde_json::{Value, json};

use crate::output::{self, Format};
use crate::{Cli, connect};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("scope").required(true).args(["global", "group", "pc"]))]
pub struct ScopeArgs {
    /// Every agent.
    #[arg(long)]
    pub global: bool,
    /// Agents in this group.
    #[arg(long)]
    pub group: Option<GroupName>,
    /// One agent.
    #[arg(long)]
    pub pc: Option<PcId>,
}

impl ScopeArgs {
    fn scope(&self) -> Scope {
        match (&self.group, &self.pc) {
            (Some(group), _) => Scope::Group(group.clone()),
            (None, Some(pc)) => Scope::Pc(pc.clone()),
            (None, None) => Scope::Global,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Show one scope's settings, or one key of it.
    Get {
        #[command(flatten)]
        scope: ScopeArgs,
        key: Option<String>,
    },
    /// Set KEY=VALUE at one scope (keys: target_version, target_version_jitter, heartbeat_interval,
    /// inventory_interval, inventory_jitter, max_local_concurrent).
    Set {
        #[command(flatten)]
        scope: ScopeArgs,
        /// KEY=VALUE, e.g. heartbeat_interval=60s
        assignment: String,
    },
    /// Remove KEY from one scope, so a wider scope (or the built-in default) applies again.
    Unset {
        #[command(flatten)]
        scope: ScopeArgs,
        key: String,
    },
    /// Remove a whole scope's settings (also ones that cannot be read).
    Reset {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Every scope that sets anything.
    List,
    /// What applies to one agent, each value with the scope it came from.
    Effective {
        pc: PcId,
        /// The agent's groups; by default asked from the agent itself (a ping).
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<GroupName>>,
    },
}

pub async fn run(cli: &Cli, command: &ConfigCommand) -> anyhow::Result<ExitCode> {
    // Checked before anything is sent, so a typo never reaches the broker.
    match command {
        ConfigCommand::Set { assignment, .. } => {
            let (key, value) = split(assignment)?;
            layered::parse(key, value)?;
        }
        ConfigCommand::Unset { key, .. } | ConfigCommand::Get { key: Some(key), .. } => layered::known(key)?,
        _ => {}
    }
    let client = connect(cli).await?;
    let store = AgentConfigStore::open(&client).await?;
    match command {
        ConfigCommand::Get { scope, key } => {
            let layer = store.get(&scope.scope()).await?;
            match key {
                Some(key) => {
                    let Some(value) = layer.get(key) else {
                        bail!("`{key}` is not set at {}", scope.scope());
                    };
                    match cli.output {
                        Format::Json => output::json(value)?,
                        Format::Table | Format::Csv => output::raw(false, &format!("{}\n", shown(value))),
                    }
                }
                None => print_layer(cli, &layer)?,
            }
        }
        ConfigCommand::Set { scope, assignment } => {
            let (key, raw) = split(assignment)?;
            let value = layered::parse(key, raw)?;
            let layer = store.change(&scope.scope(), key, Some(value.clone())).await?;
            let details = json!({ "key": key, "value": value });
            crate::audit::record(&client, "config-set", &scope.scope().key(), details).await;
            output::note(&format!("{key} = {} at {}", shown(&value), scope.scope()));
            print_layer(cli, &layer)?;
        }
        ConfigCommand::Unset { scope, key } => {
            let layer = store.change(&scope.scope(), key, None).await?;
            crate::audit::record(&client, "config-unset", &scope.scope().key(), json!({ "key": key })).await;
            output::note(&format!("{key} unset at {}", scope.scope()));
            print_layer(cli, &layer)?;
        }
        ConfigCommand::Reset { scope } => {
            if store.reset(&scope.scope()).await? {
                crate::audit::record(&client, "config-reset", &scope.scope().key(), Value::Null).await;
                output::note(&format!("{} has no settings now", scope.scope()));
            } else {
                output::note(&format!("{} had no settings", scope.scope()));
            }
        }
        ConfigCommand::List => {
            let all = store.all().await?;
            match cli.output {
                Format::Json => {
                    let doc: serde_json::Map<String, Value> =
                        all.iter().map(|(scope, layer)| (scope.key(), json!(layer))).collect();
                    output::json(&doc)?;
                }
                Format::Table | Format::Csv => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .flat_map(|(scope, layer)| {
                            layer.iter().map(move |(k, v)| vec![scope.to_string(), k.clone(), shown(v)])
                        })
                        .collect();
                    output::table(&["SCOPE", "KEY", "VALUE"], &rows);
                }
            }
        }
        ConfigCommand::Effective { pc, groups } => {
            let groups = match groups {
                Some(groups) => groups.clone(),
                None => {
                    let (heartbeat, _) = kanade_ops::agents::ping(&client, pc, Duration::from_secs(3))
                        .await
                        .with_context(|| format!("cannot ask `{pc}` for its groups; name them with --groups"))?;
                    heartbeat.groups
                }
            };
            let effective = store.effective(pc, &groups).await?;
            for conflict in &effective.conflicts {
                output::note(&format!("conflict: {conflict}"));
            }
            match cli.output {
                Format::Json => {
                    let doc: serde_json::Map<String, Value> = effective
                        .values
                        .iter()
                        .map(|(k, s)| (k.clone(), json!({ "value": s.value, "from": s.from.key() })))
                        .collect();
                    output::json(
                        &json!({ "pc_id": pc, "groups": groups, "values": doc, "conflicts": effective.conflicts }),
                    )?;
                }
                Format::Table | Format::Csv => {
                    let mut rows = Vec::new();
                    for spec in layered::KEYS {
                        let (value, from) = match effective.values.get(spec.name) {
                            Some(s) => (shown(&s.value), s.from.to_string()),
                            None => ("-".to_owned(), "built-in default".to_owned()),
                        };
                        rows.push(vec![spec.name.to_owned(), value, from]);
                    }
                    output::table(&["KEY", "VALUE", "FROM"], &rows);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn split(assignment: &str) -> anyhow::Result<(&str, &str)> {
    match assignment.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim(), value.trim())),
        _ => bail!("expected KEY=VALUE, got `{}`", assignment.chars().take(80).collect::<String>()),
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_layer(cli: &Cli, layer: &layered::Layer) -> anyhow::Result<()> {
    match cli.output {
        Format::Json => output::json(layer)?,
        Format::Table | Format::Csv => {
            let rows: Vec<Vec<String>> = layer.iter().map(|(k, v)| vec![k.clone(), shown(v)]).collect();
            output::table(&["KEY", "VALUE"], &rows);
        }
    }
    Ok(())
}
