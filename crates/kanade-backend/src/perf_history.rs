//! The history view's pure parts: reading a query's range (`since`, `until`, `step`) and merging the stored rollups
//! into one point per step ("downsampled for long ranges": a week is 168 hourly points, not 10,080 minutes).

use std::time::Duration;

use chrono::{DateTime, Utc};
use kanade_shared::api::{PERF_DEFAULT_POINTS, PERF_MAX_POINTS, PerfPoint};
use kanade_shared::perf::Stat;

use crate::db::StoredRollup;

/// The longest range one request may ask for.
pub const MAX_RANGE: Duration = Duration::from_secs(400 * 24 * 3600);
/// The steps a range without one gets: the shortest that keeps it within [`PERF_DEFAULT_POINTS`].
const STEPS: &[u64] = &[60, 5 * 60, 15 * 60, 3600, 6 * 3600, 24 * 3600];

/// A checked range: points start at `since` (a multiple of `step`), every `step`, up to `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub step: Duration,
}

/// `raw` as a time: RFC 3339, or a duration back from `now` (`1h`, `7d`).
fn time(key: &str, raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let shown: String = raw.chars().take(40).collect();
    if let Ok(at) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(at.with_timezone(&Utc));
    }
    let back = humantime::parse_duration(raw.trim())
        .map_err(|_| format!("{key} `{shown}` is neither an RFC 3339 time nor a duration like `1h`"))?;
    if back > MAX_RANGE {
        return Err(format!("{key} `{shown}` is further back than {}", humantime::format_duration(MAX_RANGE)));
    }
    Ok(now - chrono::Duration::from_std(back).map_err(|e| e.to_string())?)
}

/// Reads a query's range; every problem is a message for a 400.
pub fn range(
    since: Option<&str>,
    until: Option<&str>,
    step: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Range, String> {
    let nonempty = |v: Option<&str>| v.filter(|v| !v.trim().is_empty()).map(str::to_owned);
    let since = time("since", &nonempty(since).unwrap_or_else(|| "1h".into()), now)?;
    let until = match nonempty(until) {
        Some(raw) => time("until", &raw, now)?,
        None => now,
    };
    if since >= until {
        return Err(format!("since ({}) is not before until ({})", since.to_rfc3339(), until.to_rfc3339()));
    }
    let span = (until - since).to_std().unwrap_or_default();
    if span > MAX_RANGE {
        return Err(format!("the range is longer than {}", humantime::format_duration(MAX_RANGE)));
    }
    let step = match nonempty(step) {
        Some(raw) => {
            let shown: String = raw.chars().take(40).collect();
            let step = humantime::parse_duration(raw.trim())
                .map_err(|_| format!("step `{shown}` is not a duration like `5m`"))?;
            if step < Duration::from_secs(1) || step > MAX_RANGE {
                return Err(format!("step `{shown}` is not between 1s and {}", humantime::format_duration(MAX_RANGE)));
            }
            step
        }
        None => {
            let fits = |s: &&u64| span.as_secs().div_ceil(**s) <= PERF_DEFAULT_POINTS;
            Duration::from_secs(*STEPS.iter().find(fits).unwrap_or(&STEPS[STEPS.len() - 1]))
        }
    };
    // Points on the step's multiples, so the same range asked twice a minute apart gives the same points.
    let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX).max(1);
    let since =
        DateTime::from_timestamp_millis(since.timestamp_millis().div_euclid(step_ms) * step_ms).unwrap_or(since);
    let points = u64::try_from((until - since).num_milliseconds()).unwrap_or(0).div_ceil(step_ms as u64);
    if points > PERF_MAX_POINTS {
        return Err(format!(
            "{points} points of {} is more than {PERF_MAX_POINTS}; ask for a longer step",
            humantime::format_duration(step)
        ));
    }
    Ok(Range { since, until, step })
}

#[derive(Default)]
struct Merge {
    sum: f64,
    weight: f64,
    max: f64,
}

impl Merge {
    fn add(&mut self, stat: Stat, weight: f64) {
        self.sum += stat.avg * weight;
        self.weight += weight;
        self.max = self.max.max(stat.max);
    }

    fn stat(&self) -> Stat {
        let avg = if self.weight > 0.0 { self.sum / self.weight } else { 0.0 };
        Stat { avg, max: self.max.max(avg) }
    }
}

/// Merges rollups (oldest first, as stored) into one point per step that has any: averages weighted by each
/// rollup's samples, maxima the largest, and the top processes of the busiest rollup (by average CPU) and of the
/// one with the most memory in use.
pub fn downsample(rows: &[StoredRollup], range: &Range) -> Vec<PerfPoint> {
    let step_ms = i64::try_from(range.step.as_millis()).unwrap_or(i64::MAX).max(1);
    let since_ms = range.since.timestamp_millis();
    let mut points: Vec<PerfPoint> = Vec::new();
    let mut group: Vec<&StoredRollup> = Vec::new();
    let mut group_at: Option<i64> = None;
    let flush = |at: i64, group: &[&StoredRollup], points: &mut Vec<PerfPoint>| {
        if group.is_empty() {
            return;
        }
        let (mut cpu, mut mem, mut read, mut write, mut rx, mut tx) = Default::default();
        let merges: [&mut Merge; 6] = [&mut cpu, &mut mem, &mut read, &mut write, &mut rx, &mut tx];
        let [cpu, mem, read, write, rx, tx] = merges;
        for row in group {
            let weight = f64::from(row.samples.max(1));
            cpu.add(row.cpu_percent, weight);
            mem.add(row.mem_used_bytes, weight);
            read.add(row.disk_read_bytes_per_sec, weight);
            write.add(row.disk_write_bytes_per_sec, weight);
            rx.add(row.net_rx_bytes_per_sec, weight);
            tx.add(row.net_tx_bytes_per_sec, weight);
        }
        let busiest = group.iter().max_by(|a, b| a.cpu_percent.avg.total_cmp(&b.cpu_percent.avg));
        let fullest = group.iter().max_by(|a, b| a.mem_used_bytes.avg.total_cmp(&b.mem_used_bytes.avg));
        points.push(PerfPoint {
            at: DateTime::from_timestamp_millis(at).unwrap_or_default(),
            rollups: u32::try_from(group.len()).unwrap_or(u32::MAX),
            cpu_percent: cpu.stat(),
            mem_used_bytes: mem.stat(),
            mem_total_bytes: group.iter().map(|r| r.mem_total_bytes).max().unwrap_or(0),
            disk_read_bytes_per_sec: read.stat(),
            disk_write_bytes_per_sec: write.stat(),
            net_rx_bytes_per_sec: rx.stat(),
            net_tx_bytes_per_sec: tx.stat(),
            top_cpu: busiest.map(|r| r.top_cpu.clone()).unwrap_or_default(),
            top_memory: fullest.map(|r| r.top_memory.clone()).unwrap_or_default(),
        });
    };
    for row in rows {
        let offset = row.start.timestamp_millis() - since_ms;
        if offset < 0 || row.start >= range.until {
            continue;
        }
        let at = since_ms + offset.div_euclid(step_ms) * step_ms;
        if group_at != Some(at) {
            if let Some(previous) = group_at {
                flush(previous, &group, &mut points);
            }
            group.clear();
            group_at = Some(at);
        }
        group.push(row);
    }
    if let Some(at) = group_at {
        flush(at, &group, &mut points);
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanade_shared::perf::ProcSummary;

    fn t(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw).unwrap().with_timezone(&Utc)
    }

    const NOW: &str = "2026-12-06T03:30:20Z";

    fn rollup(start: &str, cpu: f64, samples: u32, top: &str) -> StoredRollup {
        StoredRollup {
            start: t(start),
            end: t(start) + chrono::Duration::minutes(1),
            samples,
            cpu_percent: Stat { avg: cpu, max: cpu + 10.0 },
            mem_used_bytes: Stat { avg: 100.0, max: 150.0 },
            mem_total_bytes: 1000,
            disk_read_bytes_per_sec: Stat::default(),
            disk_write_bytes_per_sec: Stat { avg: 5.0, max: 9.0 },
            net_rx_bytes_per_sec: Stat::default(),
            net_tx_bytes_per_sec: Stat::default(),
            top_cpu: vec![ProcSummary { name: top.into(), cpu_percent: cpu as f32, ..ProcSummary::default() }],
            top_memory: Vec::new(),
        }
    }

    #[test]
    fn a_range_defaults_to_the_last_hour_in_minutes() {
        let r = range(None, None, None, t(NOW)).unwrap();
        assert_eq!(r.step, Duration::from_secs(60));
        assert_eq!((r.since, r.until), (t("2026-12-06T02:30:00Z"), t(NOW)), "since on a whole minute");
        let day = range(Some("24h"), Some(""), None, t(NOW)).unwrap();
        assert_eq!(day.step, Duration::from_secs(300), "288 five-minute points");
        let week = range(Some("7d"), None, None, t(NOW)).unwrap();
        assert_eq!(week.step, Duration::from_secs(3600), "168 hourly points");
        let exact = range(Some("2026-12-06T03:00:00Z"), Some("2026-12-06T03:20:00+00:00"), Some("10s"), t(NOW));
        assert_eq!(exact.unwrap().step, Duration::from_secs(10));
    }

    #[test]
    fn bad_ranges_are_clear_errors() {
        let now = t(NOW);
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str);
        let cases: &[Case<'_>] = &[
            (Some("yesterday"), None, None, "since `yesterday` is neither"),
            (Some("1h"), Some("2h"), None, "is not before until"),
            (Some("500d"), None, None, "further back than"),
            (Some("1000000000y"), None, None, "since `1000000000y`"),
            (Some("1h"), None, Some("0s"), "step `0s` is not between"),
            (Some("1h"), None, Some("fast"), "step `fast` is not a duration"),
            (Some("30d"), None, Some("1s"), "more than 5000; ask for a longer step"),
            (Some(&"9".repeat(10_000)), None, None, "since `9999"),
        ];
        for (since, until, step, want) in cases {
            let err = range(*since, *until, *step, now).unwrap_err();
            assert!(err.contains(want), "{since:?} {until:?} {step:?}: {err}");
            assert!(err.len() < 300, "the message quotes at most a little of the input: {err}");
        }
    }

    #[test]
    fn rollups_merge_into_points_weighted_by_their_samples() {
        let r = range(Some("2026-12-06T03:00:00Z"), Some("2026-12-06T03:30:00Z"), Some("5m"), t(NOW)).unwrap();
        let rows = [
            rollup("2026-12-06T03:00:00Z", 10.0, 12, "quiet"),
            rollup("2026-12-06T03:01:00Z", 70.0, 6, "burn"),
            rollup("2026-12-06T03:12:00Z", 40.0, 12, "backup"),
            rollup("2026-12-06T03:40:00Z", 99.0, 12, "outside"),
        ];
        let points = downsample(&rows, &r);
        assert_eq!(points.len(), 2, "steps with no rollup have no point");
        assert_eq!((points[0].at, points[0].rollups), (t("2026-12-06T03:00:00Z"), 2));
        assert!((points[0].cpu_percent.avg - 30.0).abs() < 1e-9, "(10*12 + 70*6) / 18");
        assert_eq!(points[0].cpu_percent.max, 80.0);
        assert_eq!(points[0].top_cpu[0].name, "burn", "the busiest rollup's processes");
        assert_eq!(points[0].disk_write_bytes_per_sec, Stat { avg: 5.0, max: 9.0 });
        assert_eq!(points[1].at, t("2026-12-06T03:10:00Z"));
        assert_eq!(points[1].top_cpu[0].name, "backup");
        assert!(downsample(&[], &r).is_empty());
    }
}
