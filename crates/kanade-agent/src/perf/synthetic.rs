//! Made-up performance figures for the fleet simulator: thousands of agents in one process cannot each read the
//! host's counters (they would all read the same machine, at a cost that is the simulator's, not the fleet's), so
//! each one makes plausible figures of its own that wander over time.

use std::time::{Duration, Instant};

use chrono::Utc;
use kanade_shared::PcId;
use kanade_shared::perf::{DiskRate, HostSample, IoScope, NetRate, ProcRow};

use super::sample::Processes;

const CORES: usize = 4;
const MEMORY: u64 = 16 * 1024 * 1024 * 1024;
const NAMES: &[&str] = &[
    "explorer.exe",
    "chrome.exe",
    "Teams.exe",
    "OUTLOOK.EXE",
    "MsMpEng.exe",
    "svchost.exe",
    "code.exe",
    "SearchIndexer.exe",
    "dwm.exe",
    "OneDrive.exe",
    "WINWORD.EXE",
    "EXCEL.EXE",
];

/// One simulated PC's figures.
pub struct SyntheticHost {
    cpu: f32,
    memory: f64,
    last_host: Instant,
    last_processes: Instant,
}

impl Default for SyntheticHost {
    fn default() -> Self {
        Self::new()
    }
}

impl SyntheticHost {
    pub fn new() -> Self {
        Self {
            cpu: rand::random_range(2.0..40.0),
            memory: rand::random_range(0.3..0.8),
            last_host: Instant::now(),
            last_processes: Instant::now(),
        }
    }

    pub fn host(&mut self, pc: &PcId) -> HostSample {
        let span = self.last_host.elapsed();
        self.last_host = Instant::now();
        self.cpu = (self.cpu + rand::random_range(-8.0..8.0)).clamp(0.5, 100.0);
        self.memory = (self.memory + rand::random_range(-0.02..0.02)).clamp(0.1, 0.98);
        let used = (MEMORY as f64 * self.memory) as u64;
        HostSample {
            at: Utc::now(),
            span_ms: u64::try_from(span.as_millis()).unwrap_or(u64::MAX),
            cpu_percent: self.cpu,
            cores: (0..CORES).map(|_| (self.cpu + rand::random_range(-10.0..10.0)).clamp(0.0, 100.0)).collect(),
            load: None,
            mem_total_bytes: MEMORY,
            mem_used_bytes: used,
            mem_available_bytes: MEMORY - used,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
            disks: vec![DiskRate {
                name: "PhysicalDrive0".into(),
                read_bytes_per_sec: rand::random_range(0.0..5e6),
                write_bytes_per_sec: rand::random_range(0.0..2e6),
                read_iops: Some(rand::random_range(0.0..200.0)),
                write_iops: Some(rand::random_range(0.0..100.0)),
            }],
            nets: vec![NetRate {
                name: "Ethernet".into(),
                rx_bytes_per_sec: rand::random_range(0.0..1e6),
                tx_bytes_per_sec: rand::random_range(0.0..2e5),
            }],
            processes: 180,
            uptime_secs: 86_400,
            ..HostSample::empty(pc.clone())
        }
    }

    pub fn processes(&mut self) -> Processes {
        let span: Duration = self.last_processes.elapsed();
        self.last_processes = Instant::now();
        let list = NAMES
            .iter()
            .enumerate()
            .map(|(n, name)| ProcRow {
                pid: 1000 + n as u32 * 4,
                name: (*name).to_owned(),
                user: if n % 3 == 0 { "SYSTEM".into() } else { "user".into() },
                cpu_percent: rand::random_range(0.0..(self.cpu / 3.0).max(0.1)),
                rss_bytes: rand::random_range(10_000_000..900_000_000),
                read_bytes_per_sec: Some(rand::random_range(0.0..1e5)),
                write_bytes_per_sec: Some(rand::random_range(0.0..1e5)),
            })
            .collect();
        Processes { at: Utc::now(), span, io: IoScope::AllIo, total: 180, list }
    }
}
