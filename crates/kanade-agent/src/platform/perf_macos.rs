//! Per-disk I/O counters on macOS: the bytes sysinfo reads from IOKit's block-storage driver statistics, through
//! the mounted volumes. macOS counts no operations there, so read and write IOPS are absent.
//!
//! This file cannot be compiled on the Linux machines the project is built on; it uses only sysinfo's
//! platform-neutral `Disks` API.
//!
//! sysinfo finds each volume's figures by walking up to the physical disk's driver, so every volume of one disk
//! (an APFS container has several) reports that disk's counters. Only the root volume and those under `/Volumes`
//! are taken (not `/System/Volumes/*`, which share the root's disk), and a volume reporting the same counters as
//! one already taken is left out, so that a disk is not counted twice.

use std::collections::HashSet;
use std::path::Path;

use kanade_shared::perf::IoScope;
use sysinfo::{DiskRefreshKind, Disks};

use crate::perf::sample::DiskCounters;

/// What sysinfo's per-process figures count here: `proc_pid_rusage`'s disk bytes read and written.
pub const PROCESS_IO: IoScope = IoScope::Disk;

/// Each reported volume's disk counters since boot, named after the volume (`Macintosh HD`).
pub fn disk_counters() -> Vec<DiskCounters> {
    let Ok(disks) = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_io_usage()) else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    disks
        .iter()
        .filter(|disk| is_reported(disk.mount_point()))
        .map(|disk| (disk.name().to_string_lossy().into_owned(), disk.usage()))
        .filter(|(_, usage)| seen.insert((usage.total_read_bytes, usage.total_written_bytes)))
        .map(|(name, usage)| DiskCounters {
            name,
            read_bytes: usage.total_read_bytes,
            write_bytes: usage.total_written_bytes,
            reads: None,
            writes: None,
        })
        .collect()
}

fn is_reported(mount_point: &Path) -> bool {
    mount_point == Path::new("/") || mount_point.starts_with("/Volumes")
}
