//! Per-disk I/O counters on Linux (and any other Unix but macOS): `/proc/diskstats`, whole physical disks only.
//!
//! Partitions are left out because their I/O is their disk's; `loop`, `ram`, `zram` and `nbd` devices because they
//! are memory, files or the network rather than a disk; `dm-` and `md` devices because they are built on other
//! disks in the list, whose figures already count their I/O (totals would count it twice).

use std::collections::HashSet;
use std::io::Read;

use kanade_shared::perf::IoScope;

use crate::perf::sample::DiskCounters;

/// What sysinfo's per-process figures count here: `/proc/<pid>/io`'s `read_bytes` / `write_bytes`, the bytes the
/// process made the storage layer fetch or send (page-cache hits not included).
pub const PROCESS_IO: IoScope = IoScope::Disk;

const DISKSTATS: &str = "/proc/diskstats";
/// The kernel counts `/proc/diskstats` sectors in 512-byte units whatever the device's own sector size.
const SECTOR_BYTES: u64 = 512;
/// A few hundred devices take a few tens of KiB; more than this is not read.
const MAX_DISKSTATS_BYTES: u64 = 1024 * 1024;
/// Device-name prefixes followed by a number that are not disks of their own (see the module comment).
const NOT_DISKS: &[&str] = &["loop", "ram", "zram", "nbd", "dm-", "md"];

/// Each whole disk's counters since boot; empty where `/proc/diskstats` cannot be read (not Linux, no procfs).
pub fn disk_counters() -> Vec<DiskCounters> {
    let mut text = Vec::new();
    let read = std::fs::File::open(DISKSTATS).and_then(|file| file.take(MAX_DISKSTATS_BYTES).read_to_end(&mut text));
    match read {
        Ok(_) => parse_diskstats(&String::from_utf8_lossy(&text)),
        Err(err) => {
            // Called every sample: a platform without the file would fill the log at warn.
            tracing::debug!(error = %err, path = DISKSTATS, "no disk counters");
            Vec::new()
        }
    }
}

/// The whole disks in a `/proc/diskstats` text. Each line is `major minor name` followed by at least the reads
/// completed, reads merged, sectors read, time reading, writes completed, writes merged and sectors written
/// (kernel 4.18 adds discards, 5.5 flushes; both ignored). A line that does not have these, as numbers that fit,
/// is skipped.
pub fn parse_diskstats(text: &str) -> Vec<DiskCounters> {
    let rows: Vec<(&str, [u64; 7])> = text.lines().filter_map(parse_line).collect();
    let names: HashSet<&str> = rows.iter().map(|(name, _)| *name).collect();
    rows.iter()
        .filter(|(name, _)| !is_not_a_disk(name))
        .filter(|(name, _)| partition_of(name).is_none_or(|disk| !names.contains(disk)))
        .map(|(name, fields)| DiskCounters {
            name: (*name).to_owned(),
            read_bytes: fields[2].saturating_mul(SECTOR_BYTES),
            write_bytes: fields[6].saturating_mul(SECTOR_BYTES),
            reads: Some(fields[0]),
            writes: Some(fields[4]),
        })
        .collect()
}

fn parse_line(line: &str) -> Option<(&str, [u64; 7])> {
    let mut words = line.split_ascii_whitespace();
    words.next()?.parse::<u32>().ok()?;
    words.next()?.parse::<u32>().ok()?;
    let name = words.next()?;
    let mut fields = [0u64; 7];
    for field in &mut fields {
        *field = words.next()?.parse().ok()?;
    }
    Some((name, fields))
}

fn is_not_a_disk(name: &str) -> bool {
    NOT_DISKS
        .iter()
        .any(|prefix| name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())))
}

/// The disk `name` would be a partition of, by the kernel's naming rule: the disk's name and the partition
/// number, with a `p` between them when the disk's name ends in a digit (`sda1`, `nvme0n1p1`, `mmcblk0p2`).
/// `nvme0n1` itself would be a partition of `nvme0n`, a name no device has, so it stays a disk.
fn partition_of(name: &str) -> Option<&str> {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if base.len() == name.len() || base.is_empty() {
        return None;
    }
    match base.strip_suffix('p') {
        Some(disk) if disk.ends_with(|c: char| c.is_ascii_digit()) => Some(disk),
        _ => Some(base),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from a workstation (NVMe with partitions, SATA disk with partitions, LVM, software RAID, loop and
    /// zram devices, an optical drive, an eMMC card) on kernel 6.8, with a few lines broken on purpose.
    const RECORDED: &str = "\
 259       0 nvme0n1 392841 101218 40931402 61833 1208376 611923 96271536 1530211 0 786448 1638740 0 0 0 0 94633 46695
 259       1 nvme0n1p1 412 1012 30614 88 2 0 2 0 0 120 88 0 0 0 0 0 0
 259       2 nvme0n1p2 392300 100206 40896596 61732 1208374 611923 96271534 1530211 0 786360 1591943 0 0 0 0 0 0
   8       0 sda 12012 3301 1201234 9012 4401 1033 880224 30120 0 25010 39132 0 0 0 0 0 0
   8       1 sda1 11900 3301 1199002 8990 4401 1033 880224 30120 0 24990 39110 0 0 0 0 0 0
   8      16 sdb 10 0 80 1 0 0 0 0 0 4 1
   8      17 sdb1 2 0 16
 253       0 dm-0 380012 0 40000000 70000 1800000 0 96000000 2400000 0 790000 2470000 0 0 0 0 0 0
   9       0 md0 1000 0 8000 0 2000 0 16000 0 0 0 0 0 0 0 0 0 0
   7       0 loop0 77 0 2244 12 0 0 0 0 0 40 12 0 0 0 0 0 0
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 252       0 zram0 120 0 960 0 4000 0 32000 20 0 30 20 0 0 0 0 0 0
  43       0 nbd0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
  11       0 sr0 33 0 2112 40 0 0 0 0 0 52 40 0 0 0 0 0 0
 179       0 mmcblk0 800 12 51200 300 20 0 160 10 0 200 310 0 0 0 0 0 0
 179       1 mmcblk0p1 790 12 51000 290 20 0 160 10 0 190 300 0 0 0 0 0 0
   8      32 sdc 5 oops 40 1 0 0 0 0 0 1 1
   8      48 sdd 1 2 3 4 5
   8      64 sde 1 0 99999999999999999999999 1 0 0 0 0 0 0 0
   8      80 sdf 1 0 36028797018963968 1 2 0 36028797018963969 1 0 0 0
 259       3 nvme0n10 1 0 8 0 1 0 8 0 0 0 0
";

    fn names(disks: &[DiskCounters]) -> Vec<&str> {
        disks.iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn perf_diskstats_keeps_whole_disks_only() {
        let disks = parse_diskstats(RECORDED);
        assert_eq!(names(&disks), ["nvme0n1", "sda", "sdb", "sr0", "mmcblk0", "sdf", "nvme0n10"]);
        let nvme = &disks[0];
        assert_eq!(
            nvme,
            &DiskCounters {
                name: "nvme0n1".into(),
                read_bytes: 40_931_402 * 512,
                write_bytes: 96_271_536 * 512,
                reads: Some(392_841),
                writes: Some(1_208_376),
            }
        );
        // The old four-field partition line (`sdb1 2 0 16`) is too short to be read, and a partition anyway.
        assert_eq!(disks[2].read_bytes, 80 * 512);
    }

    #[test]
    fn perf_diskstats_survives_hostile_input() {
        // `sdc` has a word for a number, `sdd` is cut short and `sde`'s sector count does not fit 64 bits: all
        // skipped. `sdf`'s counts fit but their byte counts do not, and saturate.
        let disks = parse_diskstats(RECORDED);
        let sdf = disks.iter().find(|d| d.name == "sdf").unwrap();
        assert_eq!((sdf.read_bytes, sdf.write_bytes), (u64::MAX, u64::MAX));
        assert!(parse_diskstats("").is_empty());
        assert!(parse_diskstats("\n\n   \n").is_empty());
        assert!(parse_diskstats("garbage\n8 0\n8 0 sda\n-1 0 sda 1 2 3 4 5 6 7\n").is_empty());
        assert_eq!(names(&parse_diskstats("8 0 sda 1 2 3 4 5 6 7")), ["sda"], "no trailing newline");
        assert_eq!(names(&parse_diskstats("8 0 ümlaut 1 2 3 4 5 6 7\n\u{0}\u{7f}")), ["ümlaut"]);
    }

    #[test]
    fn perf_partitions_follow_the_kernel_naming_rule() {
        assert_eq!(partition_of("sda1"), Some("sda"));
        assert_eq!(partition_of("nvme0n1p12"), Some("nvme0n1"));
        assert_eq!(partition_of("mmcblk0p1"), Some("mmcblk0"));
        assert_eq!(partition_of("sdp3"), Some("sdp"), "a disk whose name ends in p");
        assert_eq!(partition_of("nvme0n1"), Some("nvme0n"));
        assert_eq!(partition_of("sda"), None);
        assert_eq!(partition_of("7"), None);
        assert!(is_not_a_disk("loop12") && is_not_a_disk("dm-3") && is_not_a_disk("md127"));
        assert!(!is_not_a_disk("mdisk") && !is_not_a_disk("ramdisk") && !is_not_a_disk("sda"));
    }

    #[test]
    fn perf_diskstats_of_this_machine_parses() {
        // Whatever this machine has (the counters move between the two reads; the devices do not).
        let disks = disk_counters();
        let text = std::fs::read_to_string(DISKSTATS).unwrap_or_default();
        assert_eq!(names(&disks), names(&parse_diskstats(&text)));
        assert!(disks.iter().all(|d| !is_not_a_disk(&d.name) && d.reads.is_some()));
    }
}
