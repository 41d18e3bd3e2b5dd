//! `kanade inventory ...`: what the PCs are and have, from the backend. `show <pc>` (one PC's hardware, status and
//! software), `software <name> [--version RANGE]` (which PCs have a title, with their versions), `titles [WORDS]`
//! (the fleet's titles), `changes [--since 7d]` (the change log), `hardware [filters]` (hardware by PC), and
//! `refresh <pc>... | --groups g | --all` (ask agents to report now). Every list prints as a table, `-o json` or
//! `-o csv`.

use std::process::ExitCode;

use kanade_shared::api::{AgentInventory, RefreshBody, RefreshView};

use crate::Cli;
use crate::backend::{Backend, PageArgs, field};
use crate::output::{self, Format, size};

#[derive(Debug, clap::Subcommand)]
pub enum InventoryCommand {
    /// One PC's inventory: hardware, status and every installed item.
    Show { pc: String },
    /// The PCs that have a software title, with their versions.
    Software(SoftwareArgs),
    /// The fleet's software titles with their versions and installs.
    Titles(TitlesArgs),
    /// The change log, newest first: installs, removals, version changes, hardware changes.
    Changes(ChangesArgs),
    /// Each PC's hardware, filtered.
    Hardware(HardwareArgs),
    /// Ask agents to collect and report now (only what changed, or everything with --full).
    Refresh(RefreshArgs),
}

#[derive(Debug, clap::Args)]
pub struct SoftwareArgs {
    /// The title, case-insensitively; `*` matches any run of characters (`'7-Zip*'`).
    pub name: String,
    /// A version range, every clause of which must hold: `'<2.0'`, `'>=1.4.2,<1.5'`, `'=1.2.3'`, `'!=1.0'`.
    /// Versions compare by their source's rules (dpkg's, rpm's, or dotted numbers).
    #[arg(long)]
    pub version: Option<String>,
    /// Only items from this source (`dpkg`, `rpm`, `registry`, `msi`, `snap`, `flatpak`, `app`).
    #[arg(long)]
    pub source: Option<String>,
    /// Only this PC.
    #[arg(long)]
    pub pc: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, clap::Args)]
pub struct TitlesArgs {
    /// Words, each found in the title's name (case-insensitively).
    pub search: Vec<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, clap::Args)]
pub struct ChangesArgs {
    /// How far back: a duration (`1h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Only this PC.
    #[arg(long)]
    pub pc: Option<String>,
    /// Only this software title or hardware field (`os.build`); `*` matches any run of characters.
    #[arg(long)]
    pub name: Option<String>,
    /// `software` or `hardware`.
    #[arg(long)]
    pub kind: Option<String>,
    /// `installed`, `removed`, `version_changed`, `changed` or `first_report`.
    #[arg(long)]
    pub change: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, clap::Args)]
pub struct HardwareArgs {
    /// OS name, exactly.
    #[arg(long)]
    pub os: Option<String>,
    /// OS build, exactly.
    #[arg(long)]
    pub os_build: Option<String>,
    #[arg(long)]
    pub manufacturer: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// Memory strictly below this (`16GiB`, `8 GB`, bytes).
    #[arg(long)]
    pub memory_below: Option<String>,
    /// Memory at least this.
    #[arg(long)]
    pub memory_at_least: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// PCs to ask.
    #[arg(required_unless_present_any = ["groups", "all"])]
    pub pcs: Vec<String>,
    /// Every known agent in these groups (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Every known agent.
    #[arg(long, conflicts_with_all = ["pcs", "groups"])]
    pub all: bool,
    /// Report every kind, changed or not.
    #[arg(long)]
    pub full: bool,
}

pub async fn run(cli: &Cli, command: &InventoryCommand) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    match command {
        InventoryCommand::Show { pc } => show(cli, &backend, pc).await,
        InventoryCommand::Software(args) => {
            let mut query = vec![("name", args.name.clone())];
            query.extend(args.version.clone().map(|v| ("version", v)));
            query.extend(args.source.clone().map(|v| ("source", v)));
            query.extend(args.pc.clone().map(|v| ("pc_id", v)));
            let listed = backend.list("/api/inventory/software", &query, &args.page).await?;
            listed.print(cli.output, &["PC", "NAME", "VERSION", "SOURCE", "ARCH", "SCOPE", "SINCE"], |r| {
                ["pc_id", "name", "version", "source", "arch", "scope", "since"].iter().map(|k| field(r, k)).collect()
            })?;
            Ok(ExitCode::SUCCESS)
        }
        InventoryCommand::Titles(args) => {
            let query = vec![("search", args.search.join(" "))];
            let listed = backend.list("/api/inventory/titles", &query, &args.page).await?;
            listed.print(cli.output, &["NAME", "INSTALLS", "VERSIONS"], |r| {
                let versions: Vec<String> = r["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| format!("{} ({})", field(v, "version"), field(v, "installs")))
                    .collect();
                vec![field(r, "name"), field(r, "installs"), versions.join(", ")]
            })?;
            Ok(ExitCode::SUCCESS)
        }
        InventoryCommand::Changes(args) => {
            let mut query = vec![("since", args.since.clone())];
            query.extend(args.pc.clone().map(|v| ("pc_id", v)));
            query.extend(args.name.clone().map(|v| ("name", v)));
            query.extend(args.kind.clone().map(|v| ("kind", v)));
            query.extend(args.change.clone().map(|v| ("change", v)));
            let listed = backend.list("/api/inventory/changes", &query, &args.page).await?;
            listed.print(cli.output, &["AT", "PC", "KIND", "CHANGE", "NAME", "OLD", "NEW"], |r| {
                ["at", "pc_id", "kind", "change", "name", "old", "new"].iter().map(|k| field(r, k)).collect()
            })?;
            Ok(ExitCode::SUCCESS)
        }
        InventoryCommand::Hardware(args) => {
            let mut query = Vec::new();
            for (key, value) in [
                ("os", &args.os),
                ("os_build", &args.os_build),
                ("manufacturer", &args.manufacturer),
                ("model", &args.model),
                ("memory_below", &args.memory_below),
                ("memory_at_least", &args.memory_at_least),
            ] {
                query.extend(value.clone().map(|v| (key, v)));
            }
            let listed = backend.list("/api/inventory/hardware", &query, &args.page).await?;
            listed.print(cli.output, &["PC", "OS", "BUILD", "MANUFACTURER", "MODEL", "CPU", "MEMORY"], |r| {
                let mut row: Vec<String> = ["pc_id", "os_name", "os_build", "manufacturer", "model", "cpu_model"]
                    .iter()
                    .map(|k| field(r, k))
                    .collect();
                row.push(size(r["memory_bytes"].as_u64().unwrap_or_default()));
                row
            })?;
            Ok(ExitCode::SUCCESS)
        }
        InventoryCommand::Refresh(args) => {
            let body =
                RefreshBody { pcs: args.pcs.clone(), groups: args.groups.clone(), all: args.all, full: args.full };
            let view: RefreshView = backend.post_as("/api/inventory/refresh", &body).await?;
            match cli.output {
                Format::Json => output::json(&view)?,
                Format::Table | Format::Csv => output::note(&format!(
                    "asked {} agent(s) to report {}; an agent that is away reports at its next start",
                    view.asked,
                    if view.full { "everything" } else { "what changed" }
                )),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn show(cli: &Cli, backend: &Backend, pc: &str) -> anyhow::Result<ExitCode> {
    let path = format!("/api/agents/{pc}/inventory");
    let inventory: AgentInventory = backend.get_as(&path, &[]).await?;
    match cli.output {
        Format::Json => output::json(&inventory)?,
        Format::Csv => {
            let rows: Vec<Vec<String>> = inventory
                .software
                .iter()
                .map(|s| vec![s.name.clone(), s.version.clone(), s.source.clone(), s.arch.clone(), s.publisher.clone()])
                .collect();
            output::csv(&["NAME", "VERSION", "SOURCE", "ARCH", "PUBLISHER"], &rows)?;
        }
        Format::Table => {
            let mut facts: Vec<Vec<String>> = Vec::new();
            if let Some(hw) = &inventory.hardware {
                let os = [hw.os.name.as_str(), hw.os.version.as_str(), hw.os.edition.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ");
                let cpu = format!("{} ({} cores, {} threads)", hw.cpu.model, hw.cpu.cores, hw.cpu.threads);
                let system = format!("{} {}", hw.system.manufacturer, hw.system.model);
                let disks: Vec<String> =
                    hw.disks.iter().map(|d| format!("{} {}", d.model, size(d.size_bytes))).collect();
                for (name, value) in [
                    ("hostname", hw.hostname.clone()),
                    ("os", os),
                    ("build", hw.os.build.clone()),
                    ("system", system),
                    ("serial", hw.system.serial.clone()),
                    ("bios", format!("{} {} {}", hw.bios.vendor, hw.bios.version, hw.bios.date)),
                    ("cpu", cpu),
                    ("memory", size(hw.memory.total_bytes)),
                    ("disks", disks.join(", ")),
                    ("timezone", hw.timezone.clone()),
                ] {
                    facts.push(vec![name.to_owned(), value.trim().to_owned()]);
                }
            }
            if let Some(status) = &inventory.status {
                let users: Vec<&str> = status.users.iter().map(|u| u.name.as_str()).collect();
                facts.push(vec!["boot time".into(), status.boot_time.map(|t| t.to_rfc3339()).unwrap_or_default()]);
                facts.push(vec!["users".into(), users.join(", ")]);
            }
            for report in &inventory.reports {
                let mut note = format!("collected {}", report.collected_at.to_rfc3339());
                if !report.errors.is_empty() {
                    note.push_str(&format!("; could not read: {}", report.errors.join("; ")));
                }
                if report.dropped > 0 {
                    note.push_str(&format!("; {} items left out over the limits", report.dropped));
                }
                facts.push(vec![format!("{} report", report.kind), note]);
            }
            output::table(&["FIELD", "VALUE"], &facts);
            output::note("");
            let rows: Vec<Vec<String>> = inventory
                .software
                .iter()
                .map(|s| vec![s.name.clone(), s.version.clone(), s.source.clone(), s.arch.clone(), s.publisher.clone()])
                .collect();
            output::table(&["NAME", "VERSION", "SOURCE", "ARCH", "PUBLISHER"], &rows);
            output::note(&format!("{} software items", rows.len()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
