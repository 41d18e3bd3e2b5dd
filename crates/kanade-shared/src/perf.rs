//! Live performance on the wire (DESIGN.md, "Live perf").
//!
//! - **Live, only while watched.** A viewer asks an agent for a stream on `agents.<pc>.perf` with a [`LeaseRequest`]
//!   and renews it; while any lease is alive the agent samples every `perf_interval` and publishes a [`HostSample`]
//!   on core `perf.host.<pc>` and a [`ProcSample`] on core `perf.proc.<pc>`. The reply ([`LeaseReply`]) carries the
//!   last two minutes the agent kept, so a view opens with history drawn.
//! - **Always on, at a low rate.** Every `host_perf_interval` the agent sends a [`PerfRollup`] (average and maximum
//!   of each figure, and the top processes over the window) on `perf.rollup.<pc>`, captured by stream `PERF`.
//!
//! Everything here is lenient to decode (an agent is not trusted) and bounded by `bound()`: lists are cut to their
//! limit, text is cut and cleaned of control characters, and a figure that is not a finite, non-negative number
//! becomes 0, so a hostile sample costs a fixed amount and never reaches a chart or a table as `NaN`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::PcId;

/// A lease a viewer does not say the length of.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The longest lease granted: a viewer that disappears costs at most this long.
pub const MAX_LEASE: Duration = Duration::from_secs(120);
/// How much live history an agent keeps in memory and sends with a lease.
pub const HISTORY_SPAN: Duration = Duration::from_secs(120);
/// Distinct viewers one agent keeps leases for; more are refused (each browser tab of each backend is one).
pub const MAX_VIEWERS: usize = 64;
/// Longest viewer name, in characters.
pub const MAX_VIEWER_CHARS: usize = 64;

/// Processes in each top list of a live sample, unless the agent's config says otherwise.
pub const DEFAULT_TOP: usize = 20;
/// The most processes per top list.
pub const MAX_TOP: usize = 100;
/// Processes in each top list of a rollup.
pub const ROLLUP_TOP: usize = 5;
/// Cores, disks and network interfaces kept per sample; more are dropped.
pub const MAX_CORES: usize = 1024;
pub const MAX_DEVICES: usize = 64;
/// Samples of live history a lease reply carries at most (two minutes at the shortest interval).
pub const MAX_HISTORY: usize = 480;
/// Longest process, user, disk or interface name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// `agents.<pc>.perf`: a viewer asks for (or renews, or with `lease_ms: 0` gives up) a live stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// Who is watching. The same viewer renewing extends its own lease; a different one adds a lease. The backend
    /// uses one name per watched PC, shared by every browser watching it.
    pub viewer: String,
    /// How long the lease lasts from now; 0 gives it up. Cut to [`MAX_LEASE`].
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Send the live history the agent kept (and the latest process sample) with the reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub history: bool,
}

fn default_lease_ms() -> u64 {
    DEFAULT_LEASE.as_millis() as u64
}

/// The agent's answer to a [`LeaseRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseReply {
    #[schema(value_type = String)]
    pub pc_id: PcId,
    /// False when the agent refused: too many viewers, or a malformed request (`error` says which).
    pub accepted: bool,
    /// The lease granted, in milliseconds (0 when released or refused).
    #[serde(default)]
    pub lease_ms: u64,
    /// How often the agent samples while watched (its `perf_interval`).
    #[serde(default)]
    pub interval_ms: u64,
    /// Viewers holding a lease now.
    #[serde(default)]
    pub viewers: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The last [`HISTORY_SPAN`] of host samples, oldest first, when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HostSample>,
    /// The latest process sample, when asked for history and one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcSample>,
}

/// The whole machine over one interval: `perf.host.<pc>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostSample {
    #[schema(value_type = String)]
    pub pc_id: PcId,
    /// When the interval ended.
    #[serde(default)]
    pub at: DateTime<Utc>,
    /// How long the interval the rates and percentages cover was, in milliseconds.
    #[serde(default)]
    pub span_ms: u64,
    /// Busy time of all cores, 0-100.
    #[serde(default)]
    pub cpu_percent: f32,
    /// Busy time of each logical core, 0-100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cores: Vec<f32>,
    /// 1-, 5- and 15-minute load averages; absent where the platform has none (Windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<[f64; 3]>,
    #[serde(default)]
    pub mem_total_bytes: u64,
    #[serde(default)]
    pub mem_used_bytes: u64,
    #[serde(default)]
    pub mem_available_bytes: u64,
    #[serde(default)]
    pub swap_total_bytes: u64,
    #[serde(default)]
    pub swap_used_bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<NetRate>,
    /// Processes running on the host.
    #[serde(default)]
    pub processes: u32,
    /// Seconds since the host booted.
    #[serde(default)]
    pub uptime_secs: u64,
}

/// One disk's transfer over a sample's interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DiskRate {
    /// `sda`, `nvme0n1`, `PhysicalDrive0`, `disk0`.
    pub name: String,
    pub read_bytes_per_sec: f64,
    pub write_bytes_per_sec: f64,
    /// Completed reads and writes per second, where the platform counts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_iops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_iops: Option<f64>,
}

/// One network interface's traffic over a sample's interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct NetRate {
    pub name: String,
    pub rx_bytes_per_sec: f64,
    pub tx_bytes_per_sec: f64,
}

/// What a process's disk figures count on the platform that measured them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IoScope {
    /// Bytes the process read from and wrote to storage (Linux `/proc/<pid>/io`, macOS).
    #[default]
    Disk,
    /// Every read and write the process made, including files, network and devices (Windows'
    /// `GetProcessIoCounters`): not only disk.
    AllIo,
    /// The platform gives no per-process I/O figures.
    None,
    /// A value a newer agent sends that this version does not know.
    #[serde(other)]
    Unknown,
}

/// The busiest processes over one interval: `perf.proc.<pc>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcSample {
    #[schema(value_type = String)]
    pub pc_id: PcId,
    #[serde(default)]
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub span_ms: u64,
    /// What `read_bytes_per_sec` / `write_bytes_per_sec` count here.
    #[serde(default)]
    pub io: IoScope,
    /// Processes running on the host.
    #[serde(default)]
    pub total: u32,
    /// The top N by CPU and the top N by memory, each process once, busiest first.
    #[serde(default)]
    pub processes: Vec<ProcRow>,
}

/// One process in a [`ProcSample`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ProcRow {
    pub pid: u32,
    pub name: String,
    /// The account it runs as, where readable.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Share of the whole machine's CPU, 0-100 (as Task Manager counts it: one busy core of four is 25).
    pub cpu_percent: f32,
    pub rss_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_bytes_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_bytes_per_sec: Option<f64>,
}

/// Average and maximum of one figure over a rollup's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Stat {
    pub avg: f64,
    pub max: f64,
}

/// One process in a rollup: its CPU averaged over the window, its largest memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ProcSummary {
    pub pid: u32,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Share of the whole machine's CPU over the window, 0-100.
    pub cpu_percent: f32,
    pub rss_bytes: u64,
}

/// The machine over one `host_perf_interval`: `perf.rollup.<pc>`, stream `PERF`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerfRollup {
    #[schema(value_type = String)]
    pub pc_id: PcId,
    /// The window: from `start` up to `end`.
    #[serde(default)]
    pub start: DateTime<Utc>,
    #[serde(default)]
    pub end: DateTime<Utc>,
    /// Host samples the window's figures come from.
    #[serde(default)]
    pub samples: u32,
    /// All cores' busy time, 0-100.
    #[serde(default)]
    pub cpu_percent: Stat,
    #[serde(default)]
    pub mem_used_bytes: Stat,
    #[serde(default)]
    pub mem_total_bytes: u64,
    /// All disks together, bytes per second.
    #[serde(default)]
    pub disk_read_bytes_per_sec: Stat,
    #[serde(default)]
    pub disk_write_bytes_per_sec: Stat,
    /// All interfaces together, bytes per second.
    #[serde(default)]
    pub net_rx_bytes_per_sec: Stat,
    #[serde(default)]
    pub net_tx_bytes_per_sec: Stat,
    /// The [`ROLLUP_TOP`] processes by average CPU, and by largest memory, over the window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_cpu: Vec<ProcSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_memory: Vec<ProcSummary>,
}

impl HostSample {
    /// A sample of `pc_id` with every figure zero and every list empty.
    pub fn empty(pc_id: PcId) -> Self {
        Self {
            pc_id,
            at: DateTime::default(),
            span_ms: 0,
            cpu_percent: 0.0,
            cores: Vec::new(),
            load: None,
            mem_total_bytes: 0,
            mem_used_bytes: 0,
            mem_available_bytes: 0,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
            disks: Vec::new(),
            nets: Vec::new(),
            processes: 0,
            uptime_secs: 0,
        }
    }

    /// Memory in use, as a share of the total, 0-100.
    pub fn mem_percent(&self) -> f32 {
        percent(self.mem_used_bytes, self.mem_total_bytes)
    }

    pub fn disk_read_bytes_per_sec(&self) -> f64 {
        self.disks.iter().map(|d| d.read_bytes_per_sec).sum()
    }

    pub fn disk_write_bytes_per_sec(&self) -> f64 {
        self.disks.iter().map(|d| d.write_bytes_per_sec).sum()
    }

    pub fn net_rx_bytes_per_sec(&self) -> f64 {
        self.nets.iter().map(|n| n.rx_bytes_per_sec).sum()
    }

    pub fn net_tx_bytes_per_sec(&self) -> f64 {
        self.nets.iter().map(|n| n.tx_bytes_per_sec).sum()
    }
}

/// `part` of `whole` in percent, 0 when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> f32 {
    if whole == 0 { 0.0 } else { ((part.min(whole) as f64 / whole as f64) * 100.0) as f32 }
}

/// A finite, non-negative figure: anything else becomes 0 (and counts as a cut).
fn figure(value: &mut f64, cuts: &mut u64) {
    if !value.is_finite() || *value < 0.0 {
        *value = 0.0;
        *cuts += 1;
    }
}

/// A percentage within 0-100.
fn share(value: &mut f32, cuts: &mut u64) {
    if !value.is_finite() || *value < 0.0 {
        *value = 0.0;
        *cuts += 1;
    } else if *value > 100.0 {
        *value = 100.0;
        *cuts += 1;
    }
}

fn name(value: &mut String, cuts: &mut u64) {
    if value.chars().count() <= MAX_NAME_CHARS && !value.chars().any(char::is_control) {
        return;
    }
    *value = value.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
    *cuts += 1;
}

fn list<T>(items: &mut Vec<T>, max: usize, cuts: &mut u64) {
    if items.len() > max {
        *cuts += (items.len() - max) as u64;
        items.truncate(max);
    }
}

impl HostSample {
    /// Cuts the sample to the limits; returns how many fields and entries it had to change.
    pub fn bound(&mut self) -> u64 {
        let mut cuts = 0;
        share(&mut self.cpu_percent, &mut cuts);
        list(&mut self.cores, MAX_CORES, &mut cuts);
        for core in &mut self.cores {
            share(core, &mut cuts);
        }
        if let Some(load) = &mut self.load {
            for value in load.iter_mut() {
                figure(value, &mut cuts);
            }
        }
        list(&mut self.disks, MAX_DEVICES, &mut cuts);
        for disk in &mut self.disks {
            name(&mut disk.name, &mut cuts);
            figure(&mut disk.read_bytes_per_sec, &mut cuts);
            figure(&mut disk.write_bytes_per_sec, &mut cuts);
            for iops in [&mut disk.read_iops, &mut disk.write_iops].into_iter().flatten() {
                figure(iops, &mut cuts);
            }
        }
        list(&mut self.nets, MAX_DEVICES, &mut cuts);
        for net in &mut self.nets {
            name(&mut net.name, &mut cuts);
            figure(&mut net.rx_bytes_per_sec, &mut cuts);
            figure(&mut net.tx_bytes_per_sec, &mut cuts);
        }
        cuts
    }
}

fn bound_row(row: &mut ProcRow, cuts: &mut u64) {
    name(&mut row.name, cuts);
    name(&mut row.user, cuts);
    share(&mut row.cpu_percent, cuts);
    for io in [&mut row.read_bytes_per_sec, &mut row.write_bytes_per_sec].into_iter().flatten() {
        figure(io, cuts);
    }
}

impl ProcSample {
    pub fn empty(pc_id: PcId) -> Self {
        Self { pc_id, at: DateTime::default(), span_ms: 0, io: IoScope::default(), total: 0, processes: Vec::new() }
    }

    pub fn bound(&mut self) -> u64 {
        let mut cuts = 0;
        list(&mut self.processes, 2 * MAX_TOP, &mut cuts);
        for row in &mut self.processes {
            bound_row(row, &mut cuts);
        }
        cuts
    }
}

fn bound_summary(summary: &mut ProcSummary, cuts: &mut u64) {
    name(&mut summary.name, cuts);
    name(&mut summary.user, cuts);
    share(&mut summary.cpu_percent, cuts);
}

fn bound_stat(stat: &mut Stat, cuts: &mut u64) {
    figure(&mut stat.avg, cuts);
    figure(&mut stat.max, cuts);
    if stat.avg > stat.max {
        stat.max = stat.avg;
        *cuts += 1;
    }
}

impl PerfRollup {
    pub fn empty(pc_id: PcId) -> Self {
        Self {
            pc_id,
            start: DateTime::default(),
            end: DateTime::default(),
            samples: 0,
            cpu_percent: Stat::default(),
            mem_used_bytes: Stat::default(),
            mem_total_bytes: 0,
            disk_read_bytes_per_sec: Stat::default(),
            disk_write_bytes_per_sec: Stat::default(),
            net_rx_bytes_per_sec: Stat::default(),
            net_tx_bytes_per_sec: Stat::default(),
            top_cpu: Vec::new(),
            top_memory: Vec::new(),
        }
    }

    pub fn bound(&mut self) -> u64 {
        let mut cuts = 0;
        bound_stat(&mut self.cpu_percent, &mut cuts);
        for value in [&mut self.cpu_percent.avg, &mut self.cpu_percent.max] {
            if *value > 100.0 {
                *value = 100.0;
                cuts += 1;
            }
        }
        for stat in [
            &mut self.mem_used_bytes,
            &mut self.disk_read_bytes_per_sec,
            &mut self.disk_write_bytes_per_sec,
            &mut self.net_rx_bytes_per_sec,
            &mut self.net_tx_bytes_per_sec,
        ] {
            bound_stat(stat, &mut cuts);
        }
        for top in [&mut self.top_cpu, &mut self.top_memory] {
            list(top, ROLLUP_TOP, &mut cuts);
            for summary in top.iter_mut() {
                bound_summary(summary, &mut cuts);
            }
        }
        cuts
    }
}

impl LeaseReply {
    pub fn bound(&mut self) -> u64 {
        let mut cuts = 0;
        list(&mut self.history, MAX_HISTORY, &mut cuts);
        for sample in &mut self.history {
            cuts += sample.bound();
        }
        if let Some(processes) = &mut self.processes {
            cuts += processes.bound();
        }
        let error_chars = self.error.chars().count();
        if error_chars > 200 {
            self.error = self.error.chars().take(200).collect();
            cuts += 1;
        }
        cuts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc() -> PcId {
        PcId::new("pc-1").unwrap()
    }

    #[test]
    fn a_lease_request_defaults_to_thirty_seconds_without_history() {
        let request: LeaseRequest = serde_json::from_str(r#"{"viewer":"backend"}"#).unwrap();
        assert_eq!(request, LeaseRequest { viewer: "backend".into(), lease_ms: 30_000, history: false });
        assert!(serde_json::from_str::<LeaseRequest>(r#"{"lease_ms":5}"#).is_err(), "a viewer is required");
    }

    #[test]
    fn a_hostile_host_sample_is_bounded() {
        let mut sample = HostSample {
            pc_id: pc(),
            cpu_percent: f32::NAN,
            cores: vec![250.0; MAX_CORES + 10],
            load: Some([f64::INFINITY, -1.0, 0.5]),
            disks: vec![
                DiskRate {
                    name: "x\u{0}".repeat(500),
                    read_bytes_per_sec: -5.0,
                    write_bytes_per_sec: f64::NAN,
                    read_iops: Some(f64::NEG_INFINITY),
                    write_iops: None,
                };
                MAX_DEVICES + 1
            ],
            ..HostSample::empty(pc())
        };
        assert!(sample.bound() > 0);
        assert_eq!(sample.cpu_percent, 0.0);
        assert_eq!(sample.cores.len(), MAX_CORES);
        assert!(sample.cores.iter().all(|c| *c == 100.0));
        assert_eq!(sample.load, Some([0.0, 0.0, 0.5]));
        assert_eq!(sample.disks.len(), MAX_DEVICES);
        let disk = &sample.disks[0];
        assert_eq!(disk.name, "x".repeat(MAX_NAME_CHARS));
        assert_eq!((disk.read_bytes_per_sec, disk.write_bytes_per_sec, disk.read_iops), (0.0, 0.0, Some(0.0)));
        assert_eq!(sample.bound(), 0, "a bounded sample is left alone");
    }

    #[test]
    fn a_rollup_keeps_its_average_within_its_maximum_and_five_processes() {
        let mut rollup = PerfRollup {
            pc_id: pc(),
            cpu_percent: Stat { avg: 150.0, max: 20.0 },
            mem_used_bytes: Stat { avg: 10.0, max: f64::NAN },
            top_cpu: vec![ProcSummary { name: "burn".into(), cpu_percent: 99.0, ..ProcSummary::default() }; 9],
            ..PerfRollup::empty(pc())
        };
        assert!(rollup.bound() > 0);
        assert_eq!(rollup.cpu_percent, Stat { avg: 100.0, max: 100.0 });
        assert_eq!(rollup.mem_used_bytes, Stat { avg: 10.0, max: 10.0 });
        assert_eq!(rollup.top_cpu.len(), ROLLUP_TOP);
    }

    #[test]
    fn samples_decode_leniently_and_skip_what_is_empty() {
        let sample: HostSample = serde_json::from_str(r#"{"pc_id":"pc-1","cpu_percent":12.5,"new_field":1}"#).unwrap();
        assert_eq!(sample.cpu_percent, 12.5);
        let json = serde_json::to_value(&sample).unwrap();
        assert!(json.get("disks").is_none() && json.get("load").is_none(), "{json}");
        let sample: ProcSample = serde_json::from_str(r#"{"pc_id":"pc-1","io":"something_new"}"#).unwrap();
        assert_eq!(sample.io, IoScope::Unknown);
        assert!(serde_json::from_str::<HostSample>(r#"{"pc_id":"../x"}"#).is_err(), "pc ids stay validated");
    }

    #[test]
    fn totals_add_every_disk_and_interface() {
        let sample = HostSample {
            mem_total_bytes: 8,
            mem_used_bytes: 2,
            disks: vec![
                DiskRate { read_bytes_per_sec: 1.0, write_bytes_per_sec: 2.0, ..DiskRate::default() },
                DiskRate { read_bytes_per_sec: 3.0, write_bytes_per_sec: 4.0, ..DiskRate::default() },
            ],
            nets: vec![NetRate { name: "eth0".into(), rx_bytes_per_sec: 5.0, tx_bytes_per_sec: 6.0 }],
            ..HostSample::empty(pc())
        };
        assert_eq!((sample.disk_read_bytes_per_sec(), sample.disk_write_bytes_per_sec()), (4.0, 6.0));
        assert_eq!((sample.net_rx_bytes_per_sec(), sample.net_tx_bytes_per_sec()), (5.0, 6.0));
        assert_eq!(sample.mem_percent(), 25.0);
        assert_eq!(percent(1, 0), 0.0);
    }
}
