//! The always-on summary: every host and process sample of a window folded into one [`PerfRollup`] (averages
//! weighted by each sample's span, maxima, the top processes by average CPU and by largest memory), and the choice
//! of a live sample's top processes. Pure: the sampling loop feeds it, tests feed it by hand.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kanade_shared::PcId;
use kanade_shared::perf::{HostSample, PerfRollup, ProcRow, ProcSummary, ROLLUP_TOP, Stat};

/// Processes of each sample a rollup follows: its busiest by CPU and by memory. The rest cannot reach a top five.
const FOLLOWED_PER_SAMPLE: usize = 64;
/// Distinct processes one window follows at most, however fast they come and go.
const MAX_FOLLOWED: usize = 4096;

/// The top `n` processes by CPU and the top `n` by memory, each once, busiest by CPU first.
pub fn top(rows: &[ProcRow], n: usize) -> Vec<ProcRow> {
    let mut by_cpu: Vec<&ProcRow> = rows.iter().collect();
    by_cpu.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent).then(a.pid.cmp(&b.pid)));
    let mut by_memory: Vec<&ProcRow> = rows.iter().collect();
    by_memory.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
    let mut chosen: Vec<&ProcRow> = by_cpu.iter().take(n).copied().collect();
    for row in by_memory.into_iter().take(n) {
        if !chosen.iter().any(|c| std::ptr::eq(*c, row)) {
            chosen.push(row);
        }
    }
    chosen.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent).then(b.rss_bytes.cmp(&a.rss_bytes)));
    chosen.into_iter().cloned().collect()
}

/// One figure's running weighted average and maximum.
#[derive(Debug, Default, Clone, Copy)]
struct Figure {
    sum: f64,
    weight: f64,
    max: f64,
}

impl Figure {
    fn add(&mut self, value: f64, weight: f64) {
        if value.is_finite() && value >= 0.0 {
            self.sum += value * weight;
            self.weight += weight;
            self.max = self.max.max(value);
        }
    }

    fn stat(&self) -> Stat {
        let avg = if self.weight > 0.0 { self.sum / self.weight } else { 0.0 };
        Stat { avg, max: self.max.max(avg) }
    }
}

#[derive(Debug, Clone)]
struct Followed {
    name: String,
    user: String,
    /// Share of the machine times seconds: divided by the window's length, its average share.
    cpu_seconds: f64,
    rss_max: u64,
}

/// The window being summed up.
#[derive(Debug)]
pub struct Rollup {
    start: DateTime<Utc>,
    samples: u32,
    cpu: Figure,
    mem_used: Figure,
    mem_total: u64,
    disk_read: Figure,
    disk_write: Figure,
    net_rx: Figure,
    net_tx: Figure,
    processes: HashMap<(u32, String), Followed>,
}

impl Rollup {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            start,
            samples: 0,
            cpu: Figure::default(),
            mem_used: Figure::default(),
            mem_total: 0,
            disk_read: Figure::default(),
            disk_write: Figure::default(),
            net_rx: Figure::default(),
            net_tx: Figure::default(),
            processes: HashMap::new(),
        }
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn add_host(&mut self, sample: &HostSample) {
        // Each sample counts for the time it covers; one of no length still counts a little.
        let weight = (sample.span_ms as f64 / 1000.0).max(0.001);
        self.samples = self.samples.saturating_add(1);
        self.cpu.add(f64::from(sample.cpu_percent), weight);
        self.mem_used.add(sample.mem_used_bytes as f64, weight);
        self.mem_total = self.mem_total.max(sample.mem_total_bytes);
        self.disk_read.add(sample.disk_read_bytes_per_sec(), weight);
        self.disk_write.add(sample.disk_write_bytes_per_sec(), weight);
        self.net_rx.add(sample.net_rx_bytes_per_sec(), weight);
        self.net_tx.add(sample.net_tx_bytes_per_sec(), weight);
    }

    /// Adds every process's use over `span` (its CPU share held for that long, its memory at the end of it).
    pub fn add_processes(&mut self, span: Duration, rows: &[ProcRow]) {
        let seconds = span.as_secs_f64();
        for row in top(rows, FOLLOWED_PER_SAMPLE) {
            let key = (row.pid, row.name);
            let known = self.processes.contains_key(&key);
            if !known && self.processes.len() >= MAX_FOLLOWED {
                continue;
            }
            let cpu = f64::from(row.cpu_percent);
            let followed = self.processes.entry(key.clone()).or_insert_with(|| Followed {
                name: key.1.clone(),
                user: row.user.clone(),
                cpu_seconds: 0.0,
                rss_max: 0,
            });
            if cpu.is_finite() && cpu > 0.0 {
                followed.cpu_seconds += cpu * seconds;
            }
            followed.rss_max = followed.rss_max.max(row.rss_bytes);
        }
    }

    /// The window from its start up to `end`, and a fresh one beginning there.
    pub fn finish(&mut self, pc_id: &PcId, end: DateTime<Utc>) -> PerfRollup {
        let done = std::mem::replace(self, Self::new(end));
        let window = (end - done.start).to_std().unwrap_or_default().as_secs_f64().max(0.001);
        let summaries: Vec<ProcSummary> = done
            .processes
            .into_iter()
            .map(|((pid, _), p)| ProcSummary {
                pid,
                name: p.name,
                user: p.user,
                cpu_percent: (p.cpu_seconds / window).clamp(0.0, 100.0) as f32,
                rss_bytes: p.rss_max,
            })
            .collect();
        let mut top_cpu: Vec<ProcSummary> = summaries.iter().filter(|p| p.cpu_percent > 0.0).cloned().collect();
        top_cpu.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent).then(a.pid.cmp(&b.pid)));
        top_cpu.truncate(ROLLUP_TOP);
        let mut top_memory = summaries;
        top_memory.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
        top_memory.truncate(ROLLUP_TOP);
        let mut rollup = PerfRollup {
            start: done.start,
            end,
            samples: done.samples,
            cpu_percent: done.cpu.stat(),
            mem_used_bytes: done.mem_used.stat(),
            mem_total_bytes: done.mem_total,
            disk_read_bytes_per_sec: done.disk_read.stat(),
            disk_write_bytes_per_sec: done.disk_write.stat(),
            net_rx_bytes_per_sec: done.net_rx.stat(),
            net_tx_bytes_per_sec: done.net_tx.stat(),
            top_cpu,
            top_memory,
            ..PerfRollup::empty(pc_id.clone())
        };
        rollup.bound();
        rollup
    }
}

/// The end of the rollup window that `now` is in: windows are aligned to multiples of `every` since the Unix epoch,
/// so every agent's minutes are the clock's minutes.
pub fn window_end(now: DateTime<Utc>, every: Duration) -> DateTime<Utc> {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
    let now_ms = now.timestamp_millis();
    let end_ms = (now_ms.div_euclid(every_ms) + 1).saturating_mul(every_ms);
    DateTime::from_timestamp_millis(end_ms).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanade_shared::perf::DiskRate;

    fn pc() -> PcId {
        PcId::new("pc-1").unwrap()
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn host(cpu: f32, span_ms: u64, write: f64) -> HostSample {
        HostSample {
            cpu_percent: cpu,
            span_ms,
            mem_total_bytes: 1000,
            mem_used_bytes: 400,
            disks: vec![DiskRate { name: "sda".into(), write_bytes_per_sec: write, ..DiskRate::default() }],
            ..HostSample::empty(pc())
        }
    }

    fn row(pid: u32, name: &str, cpu: f32, rss: u64) -> ProcRow {
        ProcRow { pid, name: name.into(), cpu_percent: cpu, rss_bytes: rss, ..ProcRow::default() }
    }

    #[test]
    fn averages_are_weighted_by_the_time_each_sample_covers() {
        let mut rollup = Rollup::new(t(0));
        rollup.add_host(&host(10.0, 50_000, 0.0));
        rollup.add_host(&host(70.0, 10_000, 600.0));
        let done = rollup.finish(&pc(), t(60));
        assert_eq!(done.samples, 2);
        assert_eq!(done.cpu_percent, Stat { avg: 20.0, max: 70.0 });
        assert_eq!(done.disk_write_bytes_per_sec, Stat { avg: 100.0, max: 600.0 });
        assert_eq!((done.mem_used_bytes.avg, done.mem_total_bytes), (400.0, 1000));
        assert_eq!((done.start, done.end), (t(0), t(60)));
        assert_eq!(rollup.start(), t(60), "the next window begins where this one ended");
        assert_eq!(rollup.finish(&pc(), t(120)).samples, 0);
    }

    #[test]
    fn the_top_processes_are_those_busiest_over_the_whole_window() {
        let mut rollup = Rollup::new(t(0));
        // A short burst at 90 % for 6 s, and a steady 20 % for the whole minute: the steady one used more.
        rollup.add_processes(Duration::from_secs(6), &[row(1, "burst", 90.0, 10), row(2, "steady", 20.0, 500)]);
        rollup.add_processes(Duration::from_secs(54), &[row(1, "burst", 0.0, 10), row(2, "steady", 20.0, 700)]);
        let done = rollup.finish(&pc(), t(60));
        let names: Vec<&str> = done.top_cpu.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["steady", "burst"]);
        assert!((done.top_cpu[0].cpu_percent - 20.0).abs() < 0.01);
        assert!((done.top_cpu[1].cpu_percent - 9.0).abs() < 0.01);
        assert_eq!((done.top_memory[0].name.as_str(), done.top_memory[0].rss_bytes), ("steady", 700));
    }

    #[test]
    fn a_reused_pid_is_another_process_and_idle_ones_are_not_in_the_cpu_list() {
        let mut rollup = Rollup::new(t(0));
        rollup.add_processes(Duration::from_secs(30), &[row(7, "old", 10.0, 1), row(8, "idle", 0.0, 1)]);
        rollup.add_processes(Duration::from_secs(30), &[row(7, "new", 30.0, 1)]);
        let done = rollup.finish(&pc(), t(60));
        let cpu: Vec<(&str, f32)> = done.top_cpu.iter().map(|p| (p.name.as_str(), p.cpu_percent)).collect();
        assert_eq!(cpu, [("new", 15.0), ("old", 5.0)]);
        assert_eq!(done.top_memory.len(), 3);
    }

    #[test]
    fn hostile_figures_do_not_poison_the_window() {
        let mut rollup = Rollup::new(t(0));
        rollup.add_host(&host(f32::NAN, 1000, f64::INFINITY));
        rollup.add_host(&host(50.0, 1000, -3.0));
        rollup.add_processes(Duration::from_secs(60), &[row(1, "nan", f32::NAN, 5)]);
        // Thousands of processes, each a new one every sample: followed up to a bound, never all.
        for round in 0..100u32 {
            let rows: Vec<ProcRow> = (0..1000).map(|n| row(round * 1000 + n, "churn", 1.0, u64::from(n))).collect();
            rollup.add_processes(Duration::from_millis(600), &rows);
        }
        assert!(rollup.processes.len() <= MAX_FOLLOWED);
        let done = rollup.finish(&pc(), t(60));
        assert_eq!(done.cpu_percent, Stat { avg: 50.0, max: 50.0 });
        assert_eq!(done.disk_write_bytes_per_sec, Stat { avg: 0.0, max: 0.0 });
        assert_eq!(done.top_cpu.len(), ROLLUP_TOP);
        assert!(done.top_cpu.iter().all(|p| p.cpu_percent.is_finite()));
    }

    #[test]
    fn live_samples_carry_the_top_by_cpu_and_by_memory_once_each() {
        let rows = [row(1, "a", 50.0, 1), row(2, "b", 1.0, 900), row(3, "c", 40.0, 800), row(4, "d", 0.0, 2)];
        let chosen: Vec<u32> = top(&rows, 2).iter().map(|r| r.pid).collect();
        assert_eq!(chosen, [1, 3, 2], "a and c by CPU, b (and c again) by memory");
        assert_eq!(top(&rows, 10).len(), 4);
        assert!(top(&[], 20).is_empty());
    }

    #[test]
    fn windows_end_on_the_clocks_multiples_of_the_interval() {
        let minute = Duration::from_secs(60);
        let at = DateTime::parse_from_rfc3339("2026-12-06T03:12:41Z").unwrap().with_timezone(&Utc);
        assert_eq!(window_end(at, minute).to_rfc3339(), "2026-12-06T03:13:00+00:00");
        let on = DateTime::parse_from_rfc3339("2026-12-06T03:13:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(window_end(on, minute).to_rfc3339(), "2026-12-06T03:14:00+00:00", "a boundary starts a window");
        assert_eq!(window_end(at, Duration::ZERO), window_end(at, Duration::from_millis(1)));
    }
}
