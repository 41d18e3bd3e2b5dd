//! `kanade notify --pcs|--groups|--all "text" [--level] [--ttl]`: a notification for the users of those PCs,
//! shown by kanade-client, kept in `NOTIFICATIONS` until it expires so a PC that is off gets it when it is back.
//! Straight over NATS, signed with the operator's key (agents show only what a key in the trust list may send to
//! them), audited. `kanade notify --acks <id>` lists who acknowledged one.

use std::process::ExitCode;
use std::time::Duration;

use kanade_shared::subject::Target;
use kanade_shared::wire::{MAX_NOTICE_TTL, Notice, NoticeAck, NoticeLevel};
use kanade_shared::{Actor, GroupName, NoticeId, PcId};
use serde::Serialize;

use crate::output::{self, Format};
use crate::{Cli, connect};

const NOTIFY_EXIT_CODES: &str = "Exit codes: 0 sent (--acks: listed); 1 kanade failed; 2 bad arguments.";

#[derive(Debug, clap::Args)]
#[command(after_help = NOTIFY_EXIT_CODES)]
#[command(group = clap::ArgGroup::new("to").args(["pcs", "groups", "all"]).multiple(true))]
pub struct NotifyArgs {
    /// What the users read: plain text, at most 2,000 characters; line breaks are kept.
    #[arg(required_unless_present = "acks", conflicts_with = "acks")]
    pub text: Option<String>,
    /// Tell these PCs' users (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub pcs: Vec<PcId>,
    /// Tell the users of these groups' PCs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<GroupName>,
    /// Tell every PC's user.
    #[arg(long, conflicts_with_all = ["pcs", "groups"])]
    pub all: bool,
    /// info, warning or critical: how the app shows it.
    #[arg(long, default_value = "info")]
    pub level: NoticeLevel,
    /// How long it is shown, and kept for PCs that are off (at most 30 days).
    #[arg(long, default_value = "7d", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// List who acknowledged notification ID instead of sending one.
    #[arg(long, value_name = "ID", conflicts_with_all = ["pcs", "groups", "all"])]
    pub acks: Option<NoticeId>,
}

fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(raw).map_err(|err| format!("`{raw}` is not a duration ({err})"))?;
    if ttl.is_zero() || ttl > MAX_NOTICE_TTL {
        return Err(format!("must be more than 0s and at most {}", humantime::format_duration(MAX_NOTICE_TTL)));
    }
    Ok(ttl)
}

#[derive(Serialize)]
struct Sent {
    id: NoticeId,
    targets: Vec<String>,
    expires_at: chrono::DateTime<chrono::Utc>,
}

pub async fn run(cli: &Cli, args: &NotifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(id) = &args.acks {
        return acks(cli, id).await;
    }
    let text = args.text.clone().unwrap_or_default();
    let mut targets: Vec<Target> = args.pcs.iter().cloned().map(Target::Pc).collect();
    targets.extend(args.groups.iter().cloned().map(Target::Group));
    if args.all {
        targets.push(Target::All);
    }
    if targets.is_empty() {
        output::note("name who to tell: --pcs, --groups or --all");
        return Ok(ExitCode::from(2));
    }
    let sent_at = chrono::Utc::now();
    let notice = Notice {
        id: NoticeId::generate(),
        level: args.level,
        text,
        from: Actor::from_login(&crate::audit::operator()),
        sent_at,
        expires_at: sent_at + chrono::Duration::from_std(args.ttl)?,
    };
    if let Err(err) = notice.validate() {
        output::note(&format!("cannot send this notification: {err}"));
        return Ok(ExitCode::from(2));
    }
    let signer = crate::signing_key(cli)?;
    let client = connect(cli).await?;
    let mut named = Vec::with_capacity(targets.len());
    for target in &targets {
        kanade_ops::notify::publish(&client, &signer, target, &notice).await?;
        named.push(target_name(target));
    }
    let details = serde_json::json!({
        "targets": named,
        "level": notice.level.as_str(),
        "chars": notice.text.chars().count(),
        "expires_at": notice.expires_at,
    });
    crate::audit::record(&client, "notify", notice.id.as_str(), details).await;
    let sent = Sent { id: notice.id.clone(), targets: named, expires_at: notice.expires_at };
    match cli.output {
        Format::Json => output::json(&sent)?,
        Format::Table | Format::Csv => {
            output::raw(false, &format!("{}\n", sent.id));
            output::note(&format!(
                "notification sent to {}; shown until {} (`kanade notify --acks {}` lists who read it)",
                sent.targets.join(", "),
                sent.expires_at.format("%Y-%m-%d %H:%M UTC"),
                sent.id
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn target_name(target: &Target) -> String {
    match target {
        Target::All => "all".to_owned(),
        Target::Group(group) => format!("group {group}"),
        Target::Pc(pc) => format!("pc {pc}"),
    }
}

async fn acks(cli: &Cli, id: &NoticeId) -> anyhow::Result<ExitCode> {
    let client = connect(cli).await?;
    let acks: Vec<NoticeAck> = kanade_ops::notify::acks(&client, id).await?;
    match cli.output {
        Format::Json => output::json(&acks)?,
        Format::Table | Format::Csv => {
            if acks.is_empty() {
                output::note(&format!("nobody has acknowledged `{id}` yet"));
            } else {
                let rows: Vec<Vec<String>> = acks
                    .iter()
                    .map(|a| vec![a.pc_id.to_string(), a.user.clone(), a.acknowledged_at.to_rfc3339()])
                    .collect();
                output::table(&["PC", "USER", "ACKNOWLEDGED"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
