//! The real sampler: the host's CPU, memory, disks, network and processes, read with `sysinfo` and the platform's
//! disk counters. CPU shares and rates are differences between two readings, so the sampler keeps the previous
//! ones; everything that turns counters into figures is a pure function tested here.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kanade_shared::PcId;
use kanade_shared::perf::{DiskRate, HostSample, IoScope, MAX_DEVICES, NetRate, ProcRow};
use sysinfo::{
    MINIMUM_CPU_UPDATE_INTERVAL, Networks, Pid, Process, ProcessRefreshKind, ProcessesToUpdate, System, ThreadKind,
    Uid, UpdateKind, Users,
};

use crate::platform;

/// Disks whose counters are kept between two samples; a host with more (a SAN head) has its busiest
/// [`MAX_DEVICES`] reported among the first this many the platform lists.
const MAX_TRACKED_DISKS: usize = 1024;
/// An account unknown to the last reading of the user list makes the sampler read the list again, but not more
/// often than this: a process may run as a uid that no list names, and re-reading it every sample would be waste.
const USERS_RETRY: Duration = Duration::from_secs(30);
/// The user list is read again this often even when every owner is known, so that a renamed account shows.
const USERS_MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// Seconds of slack when deciding whether a process started after the previous reading: start times are whole
/// seconds, and on Linux they are derived from the boot time, itself rounded.
const START_TIME_SLACK_SECS: u64 = 2;

/// One disk's I/O counters since boot, as the platform keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskCounters {
    /// `sda`, `nvme0n1`, `PhysicalDrive0`, or a volume's name on macOS.
    pub name: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Completed reads and writes, where the platform counts them.
    pub reads: Option<u64>,
    pub writes: Option<u64>,
}

/// Every process's use over one interval, as [`HostSampler::processes`] read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Processes {
    /// When the interval ended.
    pub at: DateTime<Utc>,
    pub span: Duration,
    /// What the rows' read and write figures count on this platform.
    pub io: IoScope,
    pub total: u32,
    /// Every process: pid, name, owner (empty if unknown), CPU as a share of the whole machine, resident memory,
    /// and bytes read and written per second over `span` (absent for a process whose earlier counters are unknown).
    pub list: Vec<ProcRow>,
}

/// Reads the host's figures; keeps the previous readings because CPU and rates are differences of two.
pub struct HostSampler {
    /// `None` only where sysinfo does not support the platform: every sample is then empty.
    readers: Option<Readers>,
    /// When `host()` last read memory, disks and network (or `new`).
    host_read_at: Instant,
    cpu: CpuReading,
    disks: Vec<DiskCounters>,
    /// When `processes()` last read the process list (or `new`), on the monotonic clock and as a Unix time.
    procs_read_at: Instant,
    procs_read_unix_secs: u64,
    /// Each process's counters at that reading.
    procs_previous: HashMap<Pid, ProcCounters>,
    accounts: AccountNames,
}

struct Readers {
    /// CPU and memory. Never asked for processes: a process refresh with CPU times also moves the global CPU
    /// counters of the `System` it is made on (sysinfo's Linux code computes process shares against them), which
    /// would cut the host's CPU interval short whenever `processes()` ran between two `host()` calls.
    host: System,
    /// The process list.
    procs: System,
    networks: Networks,
}

/// The latest CPU figures and when they were read.
struct CpuReading {
    at: Instant,
    /// `None` until a second reading gave figures that cover an interval.
    figures: Option<(f32, Vec<f32>)>,
    cores: usize,
}

/// One process's cumulative counters at a reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ProcCounters {
    /// Seconds since the Unix epoch; a pid with another start time is another process.
    start_time: u64,
    cpu_ms: u64,
    read_bytes: u64,
    written_bytes: u64,
}

impl HostSampler {
    /// Takes the first readings, so the first `host()` / `processes()` have something to compare with.
    // No `Default`: building a sampler reads every process on the host, which a `default()` should not hide.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let readers = match (System::new(), System::new(), Networks::new_with_refreshed_list()) {
            (Ok(mut host), Ok(procs), Ok(networks)) => {
                // The first CPU refresh also builds the list of cores.
                host.refresh_cpu_usage();
                Some(Readers { host, procs, networks })
            }
            _ => {
                tracing::warn!("cannot read this platform's performance counters; perf samples will be empty");
                None
            }
        };
        let cores = readers.as_ref().map_or(0, |r| r.host.cpus().len());
        let mut sampler = Self {
            readers,
            host_read_at: Instant::now(),
            cpu: CpuReading { at: Instant::now(), figures: None, cores },
            disks: tracked(platform::disk_counters()),
            procs_read_at: Instant::now(),
            procs_read_unix_secs: unix_secs(Utc::now()),
            procs_previous: HashMap::new(),
            accounts: AccountNames::default(),
        };
        if let Some(readers) = &mut sampler.readers {
            readers.procs.refresh_processes_specifics(ProcessesToUpdate::All, true, process_refresh());
            sampler.procs_previous = readers
                .procs
                .processes()
                .iter()
                .filter(|(_, process)| is_process(process))
                .map(|(pid, process)| (*pid, ProcCounters::of(process)))
                .collect();
        }
        sampler
    }

    /// The host over the time since the previous call (the first call: since `new`).
    ///
    /// CPU figures need two readings at least [`MINIMUM_CPU_UPDATE_INTERVAL`] apart (200 ms on Linux, macOS and
    /// Windows); called sooner than that after the previous reading, this returns the previous CPU figures (zeros
    /// if there are none yet) while every other figure covers the real interval, `span_ms`.
    pub fn host(&mut self, pc: &PcId) -> HostSample {
        let now = Instant::now();
        let span = now.saturating_duration_since(self.host_read_at);
        self.host_read_at = now;
        let mut sample = HostSample { at: Utc::now(), span_ms: millis(span), ..HostSample::empty(pc.clone()) };

        if let Some(readers) = &mut self.readers {
            let (cpu_percent, cores) = self.cpu.read(&mut readers.host);
            sample.cpu_percent = cpu_percent;
            sample.cores = cores;

            readers.host.refresh_memory();
            sample.mem_total_bytes = readers.host.total_memory();
            sample.mem_used_bytes = readers.host.used_memory();
            sample.mem_available_bytes = readers.host.available_memory();
            sample.swap_total_bytes = readers.host.total_swap();
            sample.swap_used_bytes = readers.host.used_swap();

            // Only the list (pids, names, start times) for the count: the usage counters stay as `processes()` left
            // them, since it computes its own differences from its own previous reading.
            let listed = ProcessRefreshKind::nothing().without_tasks();
            readers.procs.refresh_processes_specifics(ProcessesToUpdate::All, true, listed);
            let count = readers.procs.processes().values().filter(|p| is_process(p)).count();
            sample.processes = u32::try_from(count).unwrap_or(u32::MAX);

            readers.networks.refresh(true);
            let mut nets: Vec<NetRate> = readers
                .networks
                .iter()
                .map(|(name, data)| (name.to_string_lossy(), data))
                .filter(|(name, _)| !is_loopback(name))
                .map(|(name, data)| NetRate {
                    name: name.into_owned(),
                    rx_bytes_per_sec: per_second(0, data.received(), span),
                    tx_bytes_per_sec: per_second(0, data.transmitted(), span),
                })
                .collect();
            nets.sort_by(|a, b| a.name.cmp(&b.name));
            keep_busiest(&mut nets, MAX_DEVICES, |n| n.rx_bytes_per_sec + n.tx_bytes_per_sec);
            sample.nets = nets;
        }

        let current = tracked(platform::disk_counters());
        let mut disks = disk_rates(&self.disks, &current, span);
        keep_busiest(&mut disks, MAX_DEVICES, |d| d.read_bytes_per_sec + d.write_bytes_per_sec);
        sample.disks = disks;
        self.disks = current;

        sample.load = System::load_average().ok().and_then(|l| load([l.one, l.five, l.fifteen]));
        sample.uptime_secs = System::uptime().unwrap_or(0);
        let cuts = sample.bound();
        if cuts > 0 {
            tracing::debug!(cuts, "host sample cut to the wire limits");
        }
        sample
    }

    /// Every process's usage over the time since the previous `processes()` call (the first: since `new`).
    pub fn processes(&mut self) -> Processes {
        let now = Instant::now();
        let at = Utc::now();
        let span = now.saturating_duration_since(self.procs_read_at);
        let previous_unix_secs = self.procs_read_unix_secs;
        self.procs_read_at = now;
        self.procs_read_unix_secs = unix_secs(at);
        let mut result = Processes { at, span, io: platform::PROCESS_IO, total: 0, list: Vec::new() };
        let Some(readers) = &mut self.readers else { return result };

        readers.procs.refresh_processes_specifics(ProcessesToUpdate::All, true, process_refresh());
        let cores = self.cpu.cores.max(1);
        let running: Vec<(&Pid, &Process)> =
            readers.procs.processes().iter().filter(|(_, process)| is_process(process)).collect();
        self.accounts.refresh_if_needed(running.iter().filter_map(|(_, p)| p.user_id()), now);

        let mut counters = HashMap::with_capacity(running.len());
        result.list.reserve(running.len());
        for (pid, process) in running {
            let current = ProcCounters::of(process);
            let base = baseline(self.procs_previous.get(pid), &current, previous_unix_secs);
            result.list.push(ProcRow {
                pid: pid.as_u32(),
                name: process.name().to_string_lossy().into_owned(),
                user: self.accounts.name(process.user_id()),
                cpu_percent: base.map_or(0.0, |b| cpu_share(b.cpu_ms, current.cpu_ms, span, cores)),
                rss_bytes: process.memory(),
                read_bytes_per_sec: base.map(|b| per_second(b.read_bytes, current.read_bytes, span)),
                write_bytes_per_sec: base.map(|b| per_second(b.written_bytes, current.written_bytes, span)),
            });
            counters.insert(*pid, current);
        }
        // Replaced, not merged: the map holds the processes alive now and nothing more.
        self.procs_previous = counters;
        result.total = u32::try_from(result.list.len()).unwrap_or(u32::MAX);
        result
    }
}

impl CpuReading {
    /// The whole machine's and each core's busy share, read anew unless the last reading is too recent to give
    /// a meaningful difference.
    fn read(&mut self, system: &mut System) -> (f32, Vec<f32>) {
        if self.at.elapsed() >= MINIMUM_CPU_UPDATE_INTERVAL {
            system.refresh_cpu_usage();
            // Taken after the refresh, so a reading this sampler thinks old enough is also one sysinfo (which keeps
            // its own timestamp from the start of its refresh) will not skip.
            self.at = Instant::now();
            let cores: Vec<f32> = system.cpus().iter().map(sysinfo::Cpu::usage).collect();
            self.cores = cores.len();
            self.figures = Some((system.global_cpu_usage(), cores));
        }
        match &self.figures {
            Some((total, cores)) => (*total, cores.clone()),
            None => (0.0, vec![0.0; self.cores]),
        }
    }
}

impl ProcCounters {
    fn of(process: &Process) -> Self {
        let disk = process.disk_usage();
        Self {
            start_time: process.start_time(),
            cpu_ms: process.accumulated_cpu_time(),
            read_bytes: disk.total_read_bytes,
            written_bytes: disk.total_written_bytes,
        }
    }
}

/// What sysinfo reads for each process in `processes()` (and in `new`, for the first differences): CPU time,
/// memory, I/O counters, and the owner once. Threads are not listed (Linux would list each as a process of its
/// own).
fn process_refresh() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing()
        .with_cpu()
        .with_memory()
        .with_disk_usage()
        .with_user(UpdateKind::OnlyIfNotSet)
        .without_tasks()
}

/// A process rather than one of its threads (which sysinfo lists only when asked for tasks, never here).
fn is_process(process: &Process) -> bool {
    process.thread_kind() != Some(ThreadKind::Userland)
}

fn tracked(mut disks: Vec<DiskCounters>) -> Vec<DiskCounters> {
    disks.truncate(MAX_TRACKED_DISKS);
    disks
}

fn millis(span: Duration) -> u64 {
    u64::try_from(span.as_millis()).unwrap_or(u64::MAX)
}

fn unix_secs(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or(0)
}

/// The increase from `previous` to `current` per second of `elapsed`: 0 when the counter went backwards (the
/// device was replaced, or a counter of the platform's wrapped) or no time passed, never negative or infinite.
pub fn per_second(previous: u64, current: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if current < previous || seconds <= 0.0 { 0.0 } else { (current - previous) as f64 / seconds }
}

/// One disk's transfer between two readings of its counters `elapsed` apart. Operations per second only where
/// both readings counted them.
pub fn disk_rate(previous: &DiskCounters, current: &DiskCounters, elapsed: Duration) -> DiskRate {
    let ops = |before: Option<u64>, after: Option<u64>| Some(per_second(before?, after?, elapsed));
    DiskRate {
        name: current.name.clone(),
        read_bytes_per_sec: per_second(previous.read_bytes, current.read_bytes, elapsed),
        write_bytes_per_sec: per_second(previous.write_bytes, current.write_bytes, elapsed),
        read_iops: ops(previous.reads, current.reads),
        write_iops: ops(previous.writes, current.writes),
    }
}

/// The rates of every disk in `current` that was also in `previous`. A disk seen for the first time has nothing
/// to compare with and is reported from the next sample on.
pub fn disk_rates(previous: &[DiskCounters], current: &[DiskCounters], elapsed: Duration) -> Vec<DiskRate> {
    let before: HashMap<&str, &DiskCounters> = previous.iter().map(|d| (d.name.as_str(), d)).collect();
    current.iter().filter_map(|disk| Some(disk_rate(before.get(disk.name.as_str())?, disk, elapsed))).collect()
}

/// A process's CPU time between two readings as a share of the whole machine, 0-100: sysinfo counts time on all
/// cores together, so one busy core of four is 25, as Task Manager shows it.
fn cpu_share(previous_ms: u64, current_ms: u64, elapsed: Duration, cores: usize) -> f32 {
    let busy_seconds = per_second(previous_ms, current_ms, elapsed) / 1000.0;
    let share = busy_seconds / cores.max(1) as f64 * 100.0;
    share.clamp(0.0, 100.0) as f32
}

/// What a process's counters are compared with: its previous reading if it is the same process; zero if it
/// started since that reading, so everything it counted falls in the interval; nothing if it is older but was
/// not read then (its counters reach back before the interval, and a rate from them would be wrong).
fn baseline(previous: Option<&ProcCounters>, current: &ProcCounters, previous_unix_secs: u64) -> Option<ProcCounters> {
    match previous {
        Some(previous) if previous.start_time == current.start_time => Some(*previous),
        _ if current.start_time.saturating_add(START_TIME_SLACK_SECS) >= previous_unix_secs => {
            Some(ProcCounters { start_time: current.start_time, ..ProcCounters::default() })
        }
        _ => None,
    }
}

/// The load averages, unless the platform has none: Windows reports an error, and an all-zero triple is a
/// platform that does not count (a load of exactly 0.00 over fifteen minutes does not happen on a running host).
fn load(values: [f64; 3]) -> Option<[f64; 3]> {
    values.iter().any(|v| *v != 0.0).then_some(values)
}

/// The loopback interface (`lo` on Linux, `lo0` on macOS) carries traffic that never leaves the host. Windows'
/// loopback is not among the interfaces sysinfo lists there.
fn is_loopback(name: &str) -> bool {
    name.strip_prefix("lo").is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()))
}

/// Cuts `devices` to the `max` with the most traffic, keeping their order, so that a host with hundreds of
/// virtual interfaces still reports the ones that carry data.
fn keep_busiest<T>(devices: &mut Vec<T>, max: usize, traffic: impl Fn(&T) -> f64) {
    if devices.len() <= max {
        return;
    }
    let mut order: Vec<usize> = (0..devices.len()).collect();
    order.sort_by(|a, b| traffic(&devices[*b]).total_cmp(&traffic(&devices[*a])));
    let keep: HashSet<usize> = order.into_iter().take(max).collect();
    let mut index = 0;
    devices.retain(|_| {
        let kept = keep.contains(&index);
        index += 1;
        kept
    });
}

/// Process owners' account names, read from the OS's user list and kept between samples.
#[derive(Default)]
struct AccountNames {
    names: HashMap<Uid, String>,
    read_at: Option<Instant>,
}

impl AccountNames {
    /// Reads the user list again when an owner in `owners` is unknown or the names are old, at most as often as
    /// [`should_read_users`] allows. Keeps only the owners' names, so a domain controller's thousands of accounts
    /// do not stay in memory.
    fn refresh_if_needed<'a>(&mut self, owners: impl Iterator<Item = &'a Uid> + Clone, now: Instant) {
        let unknown = owners.clone().any(|uid| !self.names.contains_key(uid));
        let age = self.read_at.map(|at| now.saturating_duration_since(at));
        if !should_read_users(age, unknown) {
            return;
        }
        self.read_at = Some(now);
        let Ok(users) = Users::new_with_refreshed_list() else {
            self.names.clear();
            return;
        };
        let wanted: HashSet<&Uid> = owners.collect();
        self.names = users
            .iter()
            .filter(|user| wanted.contains(user.id()))
            .map(|user| (user.id().clone(), user.name().to_owned()))
            .collect();
    }

    fn name(&self, uid: Option<&Uid>) -> String {
        uid.and_then(|uid| self.names.get(uid)).cloned().unwrap_or_default()
    }
}

/// Whether to read the user list again, given how long ago it was read (`None`: never) and whether an owner is
/// missing from it.
fn should_read_users(age: Option<Duration>, unknown_owner: bool) -> bool {
    match age {
        None => true,
        Some(age) => age >= USERS_MAX_AGE || (unknown_owner && age >= USERS_RETRY),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn disk(name: &str, read: u64, write: u64, reads: Option<u64>, writes: Option<u64>) -> DiskCounters {
        DiskCounters { name: name.into(), read_bytes: read, write_bytes: write, reads, writes }
    }

    #[test]
    fn perf_disk_rate_divides_each_counter_by_the_elapsed_time() {
        let before = disk("sda", 1_000, 2_000, Some(10), Some(20));
        let after = disk("sda", 3_000, 2_500, Some(30), Some(21));
        let rate = disk_rate(&before, &after, Duration::from_millis(500));
        assert_eq!(
            rate,
            DiskRate {
                name: "sda".into(),
                read_bytes_per_sec: 4_000.0,
                write_bytes_per_sec: 1_000.0,
                read_iops: Some(40.0),
                write_iops: Some(2.0),
            }
        );
    }

    #[test]
    fn perf_disk_rate_of_a_counter_that_went_backwards_is_zero() {
        // A replaced device, or Windows' 32-bit operation counts wrapping.
        let before = disk("PhysicalDrive0", u64::MAX, 5_000, Some(u64::from(u32::MAX)), Some(7));
        let after = disk("PhysicalDrive0", 10, 6_000, Some(3), Some(9));
        let rate = disk_rate(&before, &after, Duration::from_secs(2));
        assert_eq!((rate.read_bytes_per_sec, rate.write_bytes_per_sec), (0.0, 500.0));
        assert_eq!((rate.read_iops, rate.write_iops), (Some(0.0), Some(1.0)));
    }

    #[test]
    fn perf_disk_rate_over_no_time_is_zero_and_operations_need_both_readings() {
        let before = disk("disk0", 0, 0, None, Some(1));
        let after = disk("disk0", u64::MAX, u64::MAX, Some(5), Some(9));
        let rate = disk_rate(&before, &after, Duration::ZERO);
        assert_eq!((rate.read_bytes_per_sec, rate.write_bytes_per_sec), (0.0, 0.0));
        assert_eq!((rate.read_iops, rate.write_iops), (None, Some(0.0)));
        let rate = disk_rate(&before, &after, Duration::from_nanos(1));
        assert!(rate.read_bytes_per_sec.is_finite() && rate.read_bytes_per_sec > 0.0);
    }

    #[test]
    fn perf_a_disk_seen_for_the_first_time_waits_for_the_next_sample() {
        let before = [disk("sda", 0, 0, None, None)];
        let after = [disk("sdb", 9, 9, None, None), disk("sda", 100, 0, None, None)];
        let rates = disk_rates(&before, &after, Duration::from_secs(1));
        assert_eq!(rates.len(), 1);
        assert_eq!((rates[0].name.as_str(), rates[0].read_bytes_per_sec), ("sda", 100.0));
    }

    #[test]
    fn perf_process_cpu_is_a_share_of_the_whole_machine() {
        // 500 ms of CPU time in one second on four cores: half a core, an eighth of the machine.
        assert_eq!(cpu_share(1_000, 1_500, Duration::from_secs(1), 4), 12.5);
        assert_eq!(cpu_share(0, 10_000, Duration::from_secs(1), 2), 100.0, "clamped");
        assert_eq!(cpu_share(5, 1, Duration::from_secs(1), 2), 0.0, "backwards");
        assert_eq!(cpu_share(0, 10, Duration::ZERO, 2), 0.0);
        assert_eq!(cpu_share(0, 500, Duration::from_secs(1), 0), 50.0, "no core count: one core");
    }

    #[test]
    fn perf_a_process_is_compared_with_itself_or_with_zero_only_when_it_is_new() {
        let old = ProcCounters { start_time: 100, cpu_ms: 50, read_bytes: 7, written_bytes: 8 };
        let now = ProcCounters { start_time: 100, cpu_ms: 90, read_bytes: 9, written_bytes: 9 };
        assert_eq!(baseline(Some(&old), &now, 1_000), Some(old));
        // The pid was reused by a process started after the previous reading.
        let reused = ProcCounters { start_time: 1_005, ..now };
        assert_eq!(
            baseline(Some(&old), &reused, 1_000),
            Some(ProcCounters { start_time: 1_005, ..Default::default() })
        );
        // Not read last time but running long before it: no baseline, no rates.
        assert_eq!(baseline(None, &now, 1_000), None);
        assert_eq!(baseline(None, &ProcCounters { start_time: 999, ..now }, 1_000).map(|b| b.cpu_ms), Some(0));
    }

    #[test]
    fn perf_load_and_loopback_rules() {
        assert_eq!(load([0.0, 0.0, 0.0]), None);
        assert_eq!(load([0.0, 0.01, 0.0]), Some([0.0, 0.01, 0.0]));
        assert!(is_loopback("lo") && is_loopback("lo0"));
        assert!(!is_loopback("eth0") && !is_loopback("lowpan0") && !is_loopback("Ethernet"));
    }

    #[test]
    fn perf_only_the_busiest_devices_are_kept_in_their_order() {
        let mut devices = vec![("a", 1.0), ("b", 9.0), ("c", 0.0), ("d", 5.0)];
        keep_busiest(&mut devices, 2, |d| d.1);
        assert_eq!(devices, vec![("b", 9.0), ("d", 5.0)]);
        keep_busiest(&mut devices, 5, |d| d.1);
        assert_eq!(devices.len(), 2);
    }

    #[test]
    fn perf_the_user_list_is_read_when_needed_and_not_more() {
        assert!(should_read_users(None, false));
        assert!(!should_read_users(Some(Duration::from_secs(1)), true), "an unknown uid waits for the retry");
        assert!(should_read_users(Some(USERS_RETRY), true));
        assert!(!should_read_users(Some(USERS_RETRY), false));
        assert!(should_read_users(Some(USERS_MAX_AGE), false));
    }

    #[test]
    fn perf_the_sampler_can_move_to_a_blocking_thread() {
        fn sendable<T: Send + 'static>() {}
        sendable::<HostSampler>();
        sendable::<Processes>();
    }

    #[test]
    fn perf_host_samples_this_machine() {
        let pc = PcId::new("pc-1").unwrap();
        let mut sampler = HostSampler::new();
        std::thread::sleep(Duration::from_millis(300));
        let first = sampler.host(&pc);
        // Sooner than sysinfo's minimum: the CPU figures are the previous ones, not a difference over nothing.
        let again = sampler.host(&pc);
        assert_eq!((again.cpu_percent, &again.cores), (first.cpu_percent, &first.cores));
        std::thread::sleep(Duration::from_millis(300));
        let sample = sampler.host(&pc);

        assert!(sample.mem_total_bytes > 0 && sample.mem_used_bytes <= sample.mem_total_bytes, "{sample:?}");
        assert!(!sample.cores.is_empty());
        assert!((0.0..=100.0).contains(&sample.cpu_percent), "{}", sample.cpu_percent);
        assert!(sample.cores.iter().all(|c| (0.0..=100.0).contains(c)));
        assert!((300..1_000).contains(&sample.span_ms), "span {} ms", sample.span_ms);
        assert!(sample.load.is_some(), "Linux has load averages");
        assert!(sample.processes > 0 && sample.uptime_secs > 0);
        assert!(sample.nets.iter().all(|n| n.name != "lo"));
        assert_eq!(sample.pc_id, pc);
    }

    /// Kills and reaps the child when the test ends, whether it passes or not.
    struct Child(std::process::Child);

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// This process's real uid, from `/proc/self/status`.
    fn own_uid() -> Option<String> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Uid:"))?;
        line.split_whitespace().nth(1).map(str::to_owned)
    }

    /// The name `/etc/passwd` gives `uid`, where sysinfo's user list would have it (it leaves out accounts whose
    /// shell ends in `/false`).
    fn passwd_name(uid: &str) -> Option<String> {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find_map(|fields| {
            (fields.len() >= 7 && fields[2] == uid && !fields[6].ends_with("/false")).then(|| fields[0].to_owned())
        })
    }

    #[test]
    fn perf_processes_shows_a_busy_child_and_its_owner() {
        let child =
            Child(std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("spawn sh"));
        let pid = child.0.id();
        let mut sampler = HostSampler::new();
        std::thread::sleep(Duration::from_millis(500));
        let processes = sampler.processes();

        assert_eq!(processes.io, IoScope::Disk);
        assert!(processes.span >= Duration::from_millis(500));
        assert_eq!(processes.total as usize, processes.list.len());
        let row = processes.list.iter().find(|r| r.pid == pid).expect("the child is listed");
        assert!(row.cpu_percent > 0.0 && row.cpu_percent <= 100.0, "{row:?}");
        assert!(!row.name.is_empty() && row.rss_bytes > 0, "{row:?}");
        assert!(row.read_bytes_per_sec.is_some(), "the child was read by `new`: {row:?}");
        assert!(processes.list.iter().all(|r| (0.0..=100.0).contains(&r.cpu_percent)));

        let own = processes.list.iter().find(|r| r.pid == std::process::id()).expect("this test is listed");
        if let Some(name) = own_uid().as_deref().and_then(passwd_name) {
            assert_eq!(own.user, name);
            assert_eq!(row.user, name, "the child runs as this test does");
        }
        drop(child);
    }

    #[test]
    fn perf_a_write_shows_on_a_disk() {
        // /proc/diskstats on the machine this was written on lists `vda` (a virtio disk holding /), eight idle
        // `loop` devices and a `zram0`: one whole disk to see the write on. Where the platform lists no disk at
        // all (a container without block devices) there is nothing to assert.
        if platform::disk_counters().is_empty() {
            return;
        }
        // Next to the test binary rather than in the temp dir, which may be a tmpfs that never reaches a disk.
        let dir = std::env::current_exe().ok().and_then(|exe| exe.parent().map(std::path::Path::to_path_buf));
        let dir = tempfile::tempdir_in(dir.unwrap_or_else(std::env::temp_dir)).unwrap();
        let pc = PcId::new("pc-1").unwrap();
        let mut sampler = HostSampler::new();
        let mut file = std::fs::File::create(dir.path().join("perf-write")).unwrap();
        let block = vec![0x5au8; 1024 * 1024];
        for _ in 0..20 {
            file.write_all(&block).unwrap();
        }
        file.sync_all().unwrap();
        let sample = sampler.host(&pc);
        assert!(!sample.disks.is_empty());
        assert!(sample.disks.iter().any(|d| d.write_bytes_per_sec > 0.0), "{:?}", sample.disks);
        assert!(sample.disks.iter().all(|d| d.write_iops.is_some()), "Linux counts operations: {:?}", sample.disks);
    }
}
