//! `kanade audit [--since 1h] [--actor a] [--action revoke] [--limit N | --all]`: who did what, from the backend,
//! newest first.
//!
//! `kanade audit verify [--since 7d]`: recomputes the audit trail's hash chain (`kanade_shared::audit_chain`) from
//! stream `AUDIT` and from the backend's database, compares the two, and prints what it checked and the first break
//! of each side.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use kanade_shared::api::{AuditChainRow, MAX_PAGE_LIMIT, Page};
use kanade_shared::audit_chain::{
    self, Anchor, Break, ChainReport, CrossReport, DatabaseCheck, Entry, StreamCopy, Verifier,
};
use serde::Serialize;

use crate::backend::{Backend, PageArgs, field};
use crate::output::{self, Format};
use crate::{Cli, EXIT_ERROR};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
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

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check that nobody edited the audit trail: recompute its hash chain from stream AUDIT and from the backend's
    /// database, compare the two, and print what was checked and the first break of each.
    ///
    /// Every audit event carries the hash of the one before it in the stream. An event changed, removed, reordered
    /// or inserted afterwards breaks the chain; a database row that differs from the stream's event, or is missing
    /// although the backend has projected it, breaks the database's side. Events from before the chain existed are
    /// reported as unchained, not as breaks. Needs NATS and the backend.
    ///
    /// Exit codes: 0 both chains intact and the database matches the stream, 1 a break found (or the check could
    /// not be made), 2 bad arguments.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Check from this time on: a duration back from now (`7d`) or an RFC 3339 time. Default: everything the stream
    /// still holds, and every row of the database.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
}

/// `--since`: a duration back from now or an RFC 3339 time.
fn parse_since(raw: &str) -> Result<DateTime<Utc>, String> {
    let shown: String = raw.chars().take(40).collect();
    if let Ok(ago) = humantime::parse_duration(raw) {
        return chrono::Duration::from_std(ago)
            .ok()
            .and_then(|ago| Utc::now().checked_sub_signed(ago))
            .ok_or_else(|| format!("`{shown}` reaches back further than a time can"));
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| format!("`{shown}` is neither a duration (`7d`) nor an RFC 3339 time"))
}

pub async fn run(cli: &Cli, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    if let Some(AuditCommand::Verify(verify_args)) = &args.command {
        return verify(cli, verify_args).await;
    }
    let mut query = vec![("since", args.since.clone())];
    query.extend(args.actor.clone().map(|a| ("actor", a)));
    query.extend(args.action.clone().map(|a| ("action", a)));
    let listed = Backend::new(cli)?.list("/api/audit", &query, &args.page).await?;
    listed.print(cli.output, &["AT", "ACTOR", "ACTION", "TARGET"], |e| {
        ["at", "actor", "action", "target"].iter().map(|k| field(e, k)).collect()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What `kanade audit verify` found: `-o json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub intact: bool,
    pub since: Option<DateTime<Utc>>,
    /// The stream's own chain, and any event the database proves the stream lost.
    pub stream: ChainReport,
    /// The database's own chain and its comparison with the stream.
    pub database: DatabaseReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseReport {
    #[serde(flatten)]
    pub chain: ChainReport,
    /// Rows compared with the stream's event at their sequence.
    pub compared: u64,
    /// Rows not compared: older than the stream holds (or than `--since`), or written while checking.
    pub not_compared: u64,
    /// Events of the stream the backend has not projected yet.
    pub unprojected: u64,
}

/// One report from the three checks: the first break of a side is the earliest its checks found.
pub fn combine(
    since: Option<DateTime<Utc>>,
    mut stream: ChainReport,
    mut database: ChainReport,
    cross: CrossReport,
) -> VerifyReport {
    stream.breaks += cross.stream_breaks;
    stream.first_break = audit_chain::earliest(stream.first_break, cross.stream_break);
    database.breaks += cross.breaks;
    database.first_break = audit_chain::earliest(database.first_break, cross.first_break);
    VerifyReport {
        intact: stream.intact() && database.intact(),
        since,
        stream,
        database: DatabaseReport {
            chain: database,
            compared: cross.compared,
            not_compared: cross.not_compared,
            unprojected: cross.unprojected,
        },
    }
}

async fn verify(cli: &Cli, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    let client = crate::connect(cli).await?;
    // The stream drops an event only once it is older than its max age; a day's margin for writers' clocks.
    let keep_for = audit_chain::stream_max_age().saturating_sub(std::time::Duration::from_secs(24 * 60 * 60));
    let keep_from_ms = Utc::now().timestamp_millis() - i64::try_from(keep_for.as_millis()).unwrap_or(i64::MAX);

    let mut stream_check = Verifier::new();
    let mut copy = StreamCopy::default();
    let read = kanade_ops::audit::read_stream(&client, args.since, |seq, entry| {
        copy.add(seq, &entry);
        stream_check.push(seq, &entry);
    })
    .await?;
    copy.first_seq = read.first_seq;
    copy.from_seq = read.from_seq;
    copy.last_seq = read.last_seq;

    // The database from where the read of the stream began, or from its own first row since `--since` if that is
    // earlier (the stream may have lost what the database still has).
    let mut from_seq = if args.since.is_some() { read.from_seq } else { 0 };
    if let Some(since) = args.since {
        let query = [("since", since.to_rfc3339()), ("limit", "1".to_owned())];
        let first: Page<AuditChainRow> = backend.get_as("/api/audit/chain", &query).await?;
        if let Some(row) = first.items.first() {
            from_seq = from_seq.min(row.stream_seq);
        }
    }
    let mut database = DatabaseCheck::new(copy, read.projected_to, keep_from_ms);
    let mut cursor: Option<String> = None;
    let mut cursors = std::collections::HashSet::new();
    loop {
        let mut query = vec![("from_seq", from_seq.to_string()), ("limit", MAX_PAGE_LIMIT.to_string())];
        query.extend(cursor.clone().map(|c| ("cursor", c)));
        let page: Page<AuditChainRow> =
            backend.get_as("/api/audit/chain", &query).await.context("cannot read the audit trail from the backend")?;
        for row in &page.items {
            database.push(row.stream_seq, &Entry::from(row));
        }
        match page.next {
            Some(next) if !cursors.insert(next.clone()) => bail!("the backend handed out the same cursor twice"),
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let end_seq = kanade_ops::audit::last_sequence(&client).await?;
    let (database_chain, cross) = database.finish(end_seq);
    let report = combine(args.since, stream_check.finish(), database_chain, cross);
    match cli.output {
        Format::Json => output::json(&report)?,
        Format::Table | Format::Csv => output::raw(false, &render(&report)),
    }
    Ok(if report.intact { ExitCode::SUCCESS } else { ExitCode::from(EXIT_ERROR) })
}

/// The report for people: one paragraph per side.
pub fn render(report: &VerifyReport) -> String {
    let mut out = String::new();
    let db = &report.database;
    side(&mut out, "stream AUDIT", "events", &report.stream, &[]);
    let mut extra = vec![format!("{} compared with the stream", db.compared)];
    if db.not_compared > 0 {
        extra.push(format!(
            "{} not compared (older than the stream holds or the check covers, or written meanwhile)",
            db.not_compared
        ));
    }
    if db.unprojected > 0 {
        extra.push(format!("{} newest events of the stream not projected yet", db.unprojected));
    }
    side(&mut out, "database", "rows", &db.chain, &extra);
    out.push_str(if report.intact { "intact\n" } else { "BROKEN\n" });
    out
}

fn side(out: &mut String, name: &str, what: &str, chain: &ChainReport, extra: &[String]) {
    let span = match (chain.first_seq, chain.last_seq) {
        (Some(first), Some(last)) => format!(", seq {first}-{last}"),
        _ => String::new(),
    };
    out.push_str(&format!("{name}: {} {what} checked{span}\n", chain.checked));
    match &chain.anchor {
        Some(Anchor::Genesis) => out.push_str("  from the chain's start\n"),
        Some(Anchor::Trusted { prev_hash }) => out.push_str(&format!(
            "  from the middle of the chain: the first event's link ({}) is taken on trust\n",
            short(prev_hash)
        )),
        None => {}
    }
    if chain.unchained > 0 {
        out.push_str(&format!("  {} unchained, from before the chain began\n", chain.unchained));
    }
    if chain.restarts > 0 {
        out.push_str(&format!("  the chain started over {} times after a year without events\n", chain.restarts));
    }
    for line in extra {
        out.push_str(&format!("  {line}\n"));
    }
    match &chain.first_break {
        None => out.push_str("  intact\n"),
        Some(found) => {
            out.push_str(&describe(found));
            if chain.breaks > 1 {
                out.push_str(&format!("  ({} breaks in all)\n", chain.breaks));
            }
        }
    }
}

fn describe(found: &Break) -> String {
    let event = found.event_id.as_deref().map(|id| format!(", event `{id}`")).unwrap_or_default();
    format!(
        "  FIRST BREAK at seq {}{event}: {}\n    expected: {}\n    found:    {}\n",
        found.seq,
        found.kind.describe(),
        found.expected,
        found.found.chars().take(300).collect::<String>()
    )
}

/// The first 12 hex digits of a hash, for a line a person reads (JSON has them whole).
fn short(hash: &str) -> String {
    let cut: String = hash.chars().take(12).collect();
    if cut.len() < hash.len() { format!("{cut}...") } else { cut }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanade_shared::audit_chain::BreakKind;

    #[test]
    fn since_is_a_duration_or_a_time_and_nothing_else() {
        let week = parse_since("7d").unwrap();
        let expected = Utc::now() - chrono::Duration::days(7);
        assert!((week - expected).num_seconds().abs() < 5);
        assert_eq!(parse_since("2026-01-02T03:04:05+01:00").unwrap().to_rfc3339(), "2026-01-02T02:04:05+00:00");
        for bad in ["", "yesterday", "7", "-1d", "2026-13-01T00:00:00Z", "999999999999y", &"x".repeat(10_000)] {
            let err = parse_since(bad).unwrap_err();
            assert!(err.len() < 120, "{err}");
        }
    }

    fn chain(checked: u64, first_break: Option<Break>) -> ChainReport {
        ChainReport {
            checked,
            first_seq: Some(1),
            last_seq: Some(checked),
            anchor: Some(Anchor::Genesis),
            breaks: u64::from(first_break.is_some()),
            first_break,
            ..Default::default()
        }
    }

    fn at(seq: u64, kind: BreakKind) -> Break {
        Break { seq, event_id: Some(format!("e-{seq}")), kind, expected: "a".repeat(64), found: "b".repeat(64) }
    }

    #[test]
    fn the_database_side_breaks_first_where_either_of_its_checks_does() {
        let cross =
            CrossReport { compared: 9, breaks: 1, first_break: Some(at(4, BreakKind::Differs)), ..Default::default() };
        let report = combine(None, chain(9, None), chain(9, Some(at(7, BreakKind::Altered))), cross);
        assert!(!report.intact);
        assert!(report.stream.intact());
        let first = report.database.chain.first_break.clone().unwrap();
        assert_eq!((first.seq, first.kind, report.database.chain.breaks), (4, BreakKind::Differs, 2));
        let text = render(&report);
        assert!(
            text.contains("stream AUDIT: 9 events checked, seq 1-9\n  from the chain's start\n  intact\n"),
            "{text}"
        );
        assert!(text.contains("FIRST BREAK at seq 4, event `e-4`: differs from the stream"), "{text}");
        assert!(text.contains("(2 breaks in all)"), "{text}");
        assert!(text.ends_with("BROKEN\n"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["database"]["first_break"]["kind"], "differs");
        assert_eq!(json["database"]["compared"], 9);
        assert_eq!(json["intact"], false);
    }

    #[test]
    fn a_stream_that_lost_what_the_database_has_is_broken() {
        let cross = CrossReport {
            stream_break: Some(at(1, BreakKind::LostFromStream)),
            stream_breaks: 1,
            ..Default::default()
        };
        let report = combine(None, chain(3, None), chain(5, None), cross);
        assert!(!report.intact);
        assert_eq!(report.stream.first_break.map(|b| b.kind), Some(BreakKind::LostFromStream));
        assert!(report.database.chain.intact());
    }

    #[test]
    fn an_intact_trail_says_so() {
        let cross = CrossReport { compared: 3, ..Default::default() };
        let report = combine(None, chain(3, None), chain(3, None), cross);
        assert!(report.intact);
        assert!(render(&report).ends_with("  intact\nintact\n"));
    }
}
