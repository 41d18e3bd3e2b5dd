//! `kanade perf <pc> [--since 1h] [--until T] [--step 5m]`: one PC's performance history, from the rollups its
//! agent sends every `host_perf_interval` (`GET /api/agents/{pc}/perf`). A table of points (averages and maxima,
//! and what used the CPU), the history as the API gives it with `-o json`, or the API's CSV with `-o csv`.

use std::process::ExitCode;

use anyhow::Context as _;
use kanade_shared::PcId;
use kanade_shared::api::{PerfHistory, PerfPoint};
use kanade_shared::perf::Stat;

use crate::Cli;
use crate::backend::Backend;
use crate::output::{self, Format, size};

#[derive(Debug, clap::Args)]
#[command(after_help = "Each point merges the rollups that started within its step: averages are averaged, maxima \
    kept. TOP CPU is the busiest process of the point's busiest rollup. -o json prints the history as the API \
    gives it; -o csv the API's CSV (the dashboard's download), a row per point.\n\nExit codes: 0 printed (also when the range \
    has no points); 1 the backend refused (no such agent, a range too long for the step) or could not be reached; \
    2 bad arguments.\n\nExample: kanade perf pc-1 --since 24h --step 15m")]
pub struct PerfArgs {
    /// The agent's pc_id.
    pub pc_id: PcId,
    /// Where the range starts: a duration back from now (`1h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "1h", value_parser = time_or_duration)]
    pub since: String,
    /// Where it ends: a duration back from now or an RFC 3339 time [default: now].
    #[arg(long, value_parser = time_or_duration)]
    pub until: Option<String>,
    /// The length of one point (`1m`, `5m`, `1h`) [default: the shortest of 1m, 5m, 15m, 1h, 6h, 1d that gives at
    /// most 400 points].
    #[arg(long, value_parser = step)]
    pub step: Option<String>,
}

/// `--since` and `--until`: what the backend reads (a duration back from now, or an RFC 3339 time), checked here so
/// a typo is a usage error with the reason rather than a round trip.
fn time_or_duration(raw: &str) -> Result<String, String> {
    if humantime::parse_duration(raw).is_ok() || chrono::DateTime::parse_from_rfc3339(raw).is_ok() {
        Ok(raw.to_owned())
    } else {
        Err("neither a duration back from now (`1h`, `7d`) nor an RFC 3339 time (`2026-05-04T12:00:00Z`)".into())
    }
}

fn step(raw: &str) -> Result<String, String> {
    match humantime::parse_duration(raw) {
        Ok(step) if step.as_secs() >= 1 => Ok(raw.to_owned()),
        Ok(_) => Err("must be at least 1s".into()),
        Err(err) => Err(format!("{err}; write e.g. `1m` or `1h`")),
    }
}

pub async fn run(cli: &Cli, args: &PerfArgs) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(cli)?;
    let path = format!("/api/agents/{}/perf", args.pc_id);
    let mut query = vec![("since", args.since.clone())];
    query.extend(args.until.clone().map(|until| ("until", until)));
    query.extend(args.step.clone().map(|step| ("step", step)));
    if cli.output == Format::Csv {
        // The API's own CSV, the one the dashboard downloads: one definition of the columns.
        query.push(("format", "csv".to_owned()));
        let mut response = backend.get_raw(&path, &query).await?;
        while let Some(chunk) = response.chunk().await.context("cannot read the backend's answer")? {
            output::bytes(&chunk);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let body = backend.get(&path, &query).await?;
    let history: PerfHistory = serde_json::from_value(body.clone())
        .with_context(|| format!("the backend's answer to `{path}` is not what this CLI reads"))?;
    match cli.output {
        Format::Json => output::json(&body)?,
        Format::Table | Format::Csv => {
            let rows: Vec<Vec<String>> = history.points.iter().map(row).collect();
            output::table(
                &["AT", "CPU AVG", "CPU MAX", "MEM AVG", "MEM MAX", "DISK R", "DISK W", "NET RX", "NET TX", "TOP CPU"],
                &rows,
            );
            let step = humantime::format_duration(std::time::Duration::from_secs(history.step_secs));
            output::note(&format!(
                "{} point(s) of {step} from {} to {}{}",
                history.points.len(),
                history.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                history.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                if history.points.is_empty() {
                    "; the agent sends a rollup every agent.host_perf_interval (0s sends none)"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A point as a table row: percentages, sizes and rates as people read them; the busiest process by name.
fn row(point: &PerfPoint) -> Vec<String> {
    let percent = |value: f64| format!("{:.1}%", figure(value).min(100.0));
    let bytes = |value: f64| size(figure(value) as u64);
    let rate = |stat: Stat| format!("{}/s", bytes(stat.avg));
    let top = point.top_cpu.first().map_or_else(String::new, |p| {
        let name: String = p.name.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
        format!("{name} ({}) {:.1}%", p.pid, figure(f64::from(p.cpu_percent)).min(100.0))
    });
    vec![
        point.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        percent(point.cpu_percent.avg),
        percent(point.cpu_percent.max),
        bytes(point.mem_used_bytes.avg),
        bytes(point.mem_used_bytes.max),
        rate(point.disk_read_bytes_per_sec),
        rate(point.disk_write_bytes_per_sec),
        rate(point.net_rx_bytes_per_sec),
        rate(point.net_tx_bytes_per_sec),
        top,
    ]
}

/// A finite, non-negative figure.
fn figure(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 { value } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use kanade_shared::perf::ProcSummary;

    use super::*;

    #[test]
    fn ranges_are_durations_or_rfc3339_times_and_steps_durations() {
        assert!(time_or_duration("1h").is_ok() && time_or_duration("7d").is_ok());
        assert!(time_or_duration("2026-05-04T12:00:00+09:00").is_ok());
        assert!(time_or_duration("garbage").unwrap_err().contains("neither a duration"));
        assert!(step("5m").is_ok());
        assert_eq!(step("0s").unwrap_err(), "must be at least 1s");
        assert!(step("often").unwrap_err().contains("write e.g."));
    }

    #[test]
    fn a_point_reads_as_a_row_without_nan() {
        let point = PerfPoint {
            at: Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 0).unwrap(),
            rollups: 3,
            cpu_percent: Stat { avg: 37.25, max: 99.0 },
            mem_used_bytes: Stat { avg: (4u64 << 30) as f64, max: f64::NAN },
            mem_total_bytes: 16 << 30,
            disk_read_bytes_per_sec: Stat { avg: 1_572_864.0, max: 2e6 },
            disk_write_bytes_per_sec: Stat { avg: -1.0, max: 0.0 },
            net_rx_bytes_per_sec: Stat { avg: f64::INFINITY, max: 0.0 },
            net_tx_bytes_per_sec: Stat::default(),
            top_cpu: vec![ProcSummary {
                pid: 4242,
                name: "burn\u{1b}".into(),
                cpu_percent: 98.5,
                ..Default::default()
            }],
            top_memory: vec![],
        };
        insta::assert_snapshot!(row(&point).join(" | "), @"2026-05-04T12:00:00Z | 37.2% | 99.0% | 4.0 GiB | 0 B | 1.5 MiB/s | 0 B/s | 0 B/s | 0 B/s | burn? (4242) 98.5%");
    }
}
