//! `kanade agent publish|list|rollout|current`: agent releases in the `agent_releases` object store, and which
//! version each scope should run (`target_version` in `agent_config`), straight over NATS. `kanade agent rm` (forget
//! an agent) and `kanade agents` (the fleet, filtered on the server, a page at a time) go through the backend,
//! whose read model they change and read. `kanade agent events`: an agent's timeline, or the fleet's, from the backend.
//! `kanade agent revoke` and `kanade agent groups` change a PC's NATS credential through the backend, which issued
//! it (`kanade enroll` makes the tokens agents enrol with).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kanade_ops::agent_config::AgentConfigStore;
use kanade_ops::objects::{self, Store};
use kanade_ops::release;
use kanade_shared::api::{AgentGroupsBody, EnrollmentView, ErrorCode, NoBody};
use kanade_shared::layered::{self, Scope};
use kanade_shared::manifest::Version;
use kanade_shared::{GroupName, PcId};
use serde_json::json;

use crate::output::{self, Format};
use crate::{Cli, connect};

#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Upload an agent binary as `<version>/<os>-<arch>`, all three read from the binary itself.
    Publish {
        binary: PathBuf,
        /// Only to confirm: publishing fails if the binary says otherwise.
        #[arg(long, value_parser = |v: &str| Version::new(v))]
        version: Option<Version>,
    },
    /// The published agent releases.
    List,
    /// Set the version agents should run, for some PCs, groups, or everyone.
    Rollout {
        #[arg(value_parser = |v: &str| Version::new(v))]
        version: Version,
        #[arg(long, value_delimiter = ',', required_unless_present_any = ["groups", "global"])]
        pcs: Vec<PcId>,
        #[arg(long, value_delimiter = ',')]
        groups: Vec<GroupName>,
        #[arg(long, conflicts_with_all = ["pcs", "groups"])]
        global: bool,
        /// Each agent waits a random time up to this before it updates (none: at once, unless a wider scope
        /// sets `target_version_jitter`).
        #[arg(long, value_parser = humantime::parse_duration)]
        jitter: Option<Duration>,
    },
    /// The target version per scope.
    Current,
    /// Forget an agent (after undeploying it): it leaves the backend's lists and target counts; its results stay.
    /// If it heartbeats again it comes back as a new agent.
    Rm {
        pc: PcId,
        /// Also delete its own `agent_config` layer (`pcs.<pc>`) and its `agent_groups` entry.
        #[arg(long)]
        purge: bool,
    },
    /// An agent's timeline (starts, updates, rollbacks, a full outbox), newest first, from the backend; with
    /// `--all` the fleet's, e.g. `--all --kind agent_update_rolled_back --since 7d --distinct`.
    Events(EventsArgs),
    /// Revoke a PC's NATS credential (needs --yes): the broker closes its connections at once and refuses it from
    /// then on, and it cannot renew. To use the PC again it enrols anew, with a new key and a new token.
    ///
    /// -o json: the PC's credential as the backend keeps it.
    #[command(after_help = REVOKE_EXIT_CODES)]
    Revoke {
        pc: PcId,
        /// Confirms the revocation: the agent is cut off until it enrols again.
        #[arg(long)]
        yes: bool,
    },
    /// Set the groups a PC's credential carries (the whole list, comma-separated): the agent is told to renew at
    /// once, and its new credential carries them.
    ///
    /// -o json: the PC's credential as the backend keeps it.
    #[command(after_help = GROUPS_EXIT_CODES)]
    Groups {
        pc: PcId,
        /// The groups, e.g. `office,lab`.
        #[arg(value_delimiter = ',', required_unless_present = "none")]
        groups: Vec<GroupName>,
        /// No groups at all.
        #[arg(long, conflicts_with = "groups")]
        none: bool,
    },
}

const REVOKE_EXIT_CODES: &str = "Exit codes: 0 revoked, and the broker has taken it; 1 kanade failed, the backend \
could not be reached or refused (enrolment not configured on it, no such PC); 2 bad arguments, or no --yes; 3 the \
revocation is stored but the broker has not taken it yet (the backend tells it again every 30 s).";

const GROUPS_EXIT_CODES: &str = "Exit codes: 0 set; 1 kanade failed, the backend could not be reached or refused \
(enrolment not configured on it, no such PC, its credential revoked); 2 bad arguments, or groups the backend refused.";

/// Exit code of `kanade agent revoke` when the revocation is stored but not yet in force at the broker.
pub const EXIT_REVOCATION_PENDING: u8 = 3;

/// `kanade agents`: the fleet as the backend knows it, by pc id.
#[derive(Debug, clap::Args)]
pub struct AgentsArgs {
    /// online, offline (silent longer than the backend's offline_after) or stale (longer than its stale_after).
    #[arg(long, value_parser = ["online", "offline", "stale"])]
    pub status: Option<String>,
    #[arg(long)]
    pub group: Option<GroupName>,
    /// windows, linux, macos, exactly as agents report it.
    #[arg(long)]
    pub os: Option<String>,
    /// An agent version, exactly.
    #[arg(long)]
    pub version: Option<String>,
    /// Words each found in some field (pc id, hostname, OS, version, a group) or naming the status.
    #[arg(long)]
    pub search: Option<String>,
    #[command(flatten)]
    pub page: crate::backend::PageArgs,
}

pub async fn fleet(cli: &Cli, args: &AgentsArgs) -> anyhow::Result<ExitCode> {
    let mut query: Vec<(&str, String)> = Vec::new();
    query.extend(args.status.clone().map(|v| ("status", v)));
    query.extend(args.group.as_ref().map(|v| ("group", v.to_string())));
    query.extend(args.os.clone().map(|v| ("os", v)));
    query.extend(args.version.clone().map(|v| ("version", v)));
    query.extend(args.search.clone().map(|v| ("search", v)));
    let listed = crate::backend::Backend::new(cli)?.list("/api/agents", &query, &args.page).await?;
    listed.print(cli.output, &["PC", "HOSTNAME", "OS", "VERSION", "GROUPS", "STATUS", "LAST SEEN"], |a| {
        ["pc_id", "hostname", "os", "agent_version", "groups", "status", "last_seen"]
            .iter()
            .map(|k| crate::backend::field(a, k))
            .collect()
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn remove(cli: &Cli, pc: &PcId, purge: bool) -> anyhow::Result<ExitCode> {
    let query = if purge { vec![("purge", "true".to_owned())] } else { Vec::new() };
    let body = crate::backend::Backend::new(cli)?.delete(&format!("/api/agents/{pc}"), &query).await?;
    match cli.output {
        Format::Json => output::json(&body)?,
        Format::Table | Format::Csv if purge => {
            output::note(&format!("forgot `{pc}`, its agent_config layer and agent_groups entry"))
        }
        Format::Table | Format::Csv => output::note(&format!("forgot `{pc}`")),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The agent whose timeline to show.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub pc: Option<PcId>,
    /// Every agent's entries instead of one's.
    #[arg(long)]
    pub all: bool,
    /// Only this kind: agent_started, agent_update, agent_update_refused, agent_update_rolled_back, outbox_full,
    /// outbox_recovered (or a newer agent's).
    #[arg(long)]
    pub kind: Option<String>,
    /// How far back: a duration (`1h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// With `--all`: each agent's newest matching entry only ("which agents rolled back").
    #[arg(long)]
    pub distinct: bool,
    /// At most this many entries (fetched a page of up to 500 at a time).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
}

pub async fn run(cli: &Cli, command: &AgentCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentCommand::Publish { binary, version } => publish(cli, binary, version.as_ref()).await,
        AgentCommand::List => list(cli).await,
        AgentCommand::Rollout { version, pcs, groups, global, jitter } => {
            let mut scopes: Vec<Scope> = pcs.iter().cloned().map(Scope::Pc).collect();
            scopes.extend(groups.iter().cloned().map(Scope::Group));
            if *global {
                scopes.push(Scope::Global);
            }
            rollout(cli, version, &scopes, *jitter).await
        }
        AgentCommand::Current => current(cli).await,
        AgentCommand::Rm { pc, purge } => remove(cli, pc, *purge).await,
        AgentCommand::Events(args) => events(cli, args).await,
        AgentCommand::Revoke { pc, yes } => revoke(cli, pc, *yes).await,
        AgentCommand::Groups { pc, groups, none: _ } => set_groups(cli, pc, groups).await,
    }
}

async fn revoke(cli: &Cli, pc: &PcId, yes: bool) -> anyhow::Result<ExitCode> {
    if !yes {
        output::note(&format!(
            "error: revoking `{pc}` cuts it off from the broker until it enrols again with a new key and token; add \
             --yes to do it"
        ));
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    let raw = match crate::backend::Backend::new(cli)?.post(&format!("/api/agents/{pc}/revoke"), &NoBody {}).await {
        Ok(raw) => raw,
        Err(err) => {
            if let Some(refused) = err.downcast_ref::<crate::backend::Refused>()
                && refused.code == ErrorCode::RevocationPending.as_str()
            {
                output::error(&err);
                return Ok(ExitCode::from(EXIT_REVOCATION_PENDING));
            }
            return super::enroll::refused(err);
        }
    };
    let view: EnrollmentView = super::enroll::typed(raw.clone())?;
    output::note(&format!("revoked `{pc}` (key {}): the broker refuses it from now on", view.public_key));
    if cli.output == Format::Json {
        output::json(&raw)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_groups(cli: &Cli, pc: &PcId, groups: &[GroupName]) -> anyhow::Result<ExitCode> {
    let body = AgentGroupsBody { groups: groups.iter().map(ToString::to_string).collect() };
    let raw = match crate::backend::Backend::new(cli)?.put(&format!("/api/agents/{pc}/groups"), &body).await {
        Ok(raw) => raw,
        Err(err) => return super::enroll::refused(err),
    };
    let view: EnrollmentView = super::enroll::typed(raw.clone())?;
    let shown = if view.groups.is_empty() { "no groups".to_owned() } else { view.groups.join(",") };
    output::note(&match view.status.as_str() {
        "active" => format!("`{pc}` is in {shown}; its agent was told to renew its credential now"),
        status => format!("`{pc}` ({status}) is in {shown}; its credential carries them once it is issued"),
    });
    if cli.output == Format::Json {
        output::json(&raw)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn events(cli: &Cli, args: &EventsArgs) -> anyhow::Result<ExitCode> {
    if args.distinct && !args.all {
        bail!("--distinct goes with --all: one agent's timeline is that agent's only");
    }
    let backend = crate::backend::Backend::new(cli)?;
    let path = match &args.pc {
        Some(pc) => format!("/api/agents/{pc}/events"),
        None => "/api/agent-events".to_owned(),
    };
    let mut entries: Vec<kanade_shared::api::AgentEventRow> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let wanted = args.limit as usize - entries.len();
        let mut query = vec![("limit", wanted.min(500).to_string())];
        query.extend(args.kind.clone().map(|k| ("kind", k)));
        query.extend(args.since.clone().map(|s| ("since", s)));
        query.extend(args.distinct.then(|| ("distinct", "pc".to_owned())));
        query.extend(cursor.take().map(|c| ("cursor", c)));
        let page: kanade_shared::api::AgentEventPage = backend.get_as(&path, &query).await?;
        entries.extend(page.items);
        match page.next {
            Some(next) if entries.len() < args.limit as usize => cursor = Some(next),
            _ => break,
        }
    }
    match cli.output {
        Format::Json => output::json(&entries)?,
        Format::Table | Format::Csv => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    let mut details = e.details.to_string();
                    if details.len() > 80 {
                        details.truncate(details.floor_char_boundary(79));
                        details.push('…');
                    }
                    vec![
                        e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        e.pc_id.clone(),
                        e.kind.clone(),
                        details,
                    ]
                })
                .collect();
            output::table(&["AT", "PC", "KIND", "DETAILS"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn publish(cli: &Cli, binary: &std::path::Path, confirm: Option<&Version>) -> anyhow::Result<ExitCode> {
    let size = std::fs::metadata(binary).with_context(|| format!("cannot read `{}`", binary.display()))?.len();
    if size > Store::Agents.max_bytes() {
        bail!("`{}` is {size} bytes; the limit for agent binaries is {}", binary.display(), Store::Agents.max_bytes());
    }
    let bytes = std::fs::read(binary).with_context(|| format!("cannot read `{}`", binary.display()))?;
    let info = release::inspect(&bytes).map_err(|e| anyhow::anyhow!("`{}`: {e}", binary.display()))?;
    drop(bytes);
    if let Some(confirm) = confirm
        && confirm.as_str() != info.version
    {
        bail!(
            "`{}` is version {} by its own account, not {}; --version only confirms, it never overrides",
            binary.display(),
            info.version,
            confirm.as_str()
        );
    }
    let client = connect(cli).await?;
    let store = objects::open(&client, Store::Agents).await?;
    let platform = info.platform();
    let published = super::objects::publish(&store, Store::Agents, &info.version, &platform, binary).await?;
    if published.action.is_none() {
        let details = json!({ "sha256": published.sha256, "size": published.size });
        crate::audit::record(&client, "agent-publish", &format!("{}/{platform}", info.version), details).await;
    }
    match cli.output {
        Format::Json => output::json(&json!({
            "version": info.version, "os": info.os, "arch": info.arch, "size": published.size,
            "sha256": published.sha256, "unchanged": published.action == Some("unchanged"),
        }))?,
        Format::Table | Format::Csv => {
            output::note(&format!("kanade-agent {} for {platform}", info.version));
            output::raw(false, &format!("{}\n", published.sha256));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(cli: &Cli) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let all = objects::list(&objects::open(&client, Store::Agents).await?).await?;
    match cli.output {
        Format::Json => output::json(
            &all.iter()
                .map(|p| json!({ "version": p.name, "platform": p.version, "size": p.size, "sha256": p.sha256 }))
                .collect::<Vec<_>>(),
        )?,
        Format::Table | Format::Csv => {
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|p| vec![p.name.clone(), p.version.clone(), p.size.to_string(), p.sha256.clone()])
                .collect();
            output::table(&["VERSION", "PLATFORM", "BYTES", "SHA256"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn rollout(cli: &Cli, version: &Version, scopes: &[Scope], jitter: Option<Duration>) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let releases = objects::list(&objects::open(&client, Store::Agents).await?).await?;
    let platforms: Vec<&str> =
        releases.iter().filter(|p| p.name == version.as_str()).map(|p| p.version.as_str()).collect();
    if platforms.is_empty() {
        bail!(
            "agent version {} is not published; publish it first with `kanade agent publish <binary>` \
             (`kanade agent list` shows what is)",
            version.as_str()
        );
    }
    let store = AgentConfigStore::open(&client).await?;
    let jitter = jitter.map(|j| layered::parse("target_version_jitter", &humantime::format_duration(j).to_string()));
    let jitter = jitter.transpose()?;
    let target = layered::parse("target_version", version.as_str())?;
    for scope in scopes {
        // One write: an agent must never see the new target without its jitter (it would update at once).
        let changes = [("target_version", Some(target.clone())), ("target_version_jitter", jitter.clone())];
        store.change_many(scope, &changes).await?;
        let details = json!({ "version": version.as_str(), "jitter": jitter });
        crate::audit::record(&client, "agent-rollout", &scope.key(), details).await;
        output::note(&format!("{scope}: target_version = {}", version.as_str()));
    }
    output::note(&format!("published for: {}", platforms.join(", ")));
    Ok(ExitCode::SUCCESS)
}

async fn current(cli: &Cli) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let all = AgentConfigStore::open(&client).await?.all().await?;
    let targets: Vec<(String, String, String)> = all
        .iter()
        .filter_map(|(scope, layer)| {
            let version = layer.get("target_version")?.as_str()?.to_owned();
            let jitter = layer.get("target_version_jitter").and_then(|j| j.as_str()).unwrap_or("-").to_owned();
            Some((scope.to_string(), version, jitter))
        })
        .collect();
    match cli.output {
        Format::Json => output::json(
            &targets
                .iter()
                .map(|(s, v, j)| json!({ "scope": s, "target_version": v, "jitter": j }))
                .collect::<Vec<_>>(),
        )?,
        Format::Table | Format::Csv => {
            let rows: Vec<Vec<String>> = targets.into_iter().map(|(s, v, j)| vec![s, v, j]).collect();
            output::table(&["SCOPE", "TARGET VERSION", "JITTER"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}
