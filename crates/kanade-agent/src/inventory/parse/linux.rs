//! Parsers of what a Linux host keeps in `/etc`, `/proc`, `/sys` and `/run`: `os-release`, `cpuinfo`, `meminfo`,
//! the mount table, the routing tables, `resolv.conf`, SMBIOS memory-device entries, `utmp` records, logind
//! session files and `pci.ids`. Each takes the text (or bytes) as read and returns plain data; none fails, since
//! a half-readable file still says something worth reporting.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, NaiveDate, Utc};
use kanade_shared::inventory::{CpuInfo, LoggedOnUser, MemoryModule, OsInfo};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// `KEY=value` lines of `os-release` (shell-style quoting, comments skipped) as a map.
pub fn os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (key, value) = line.split_once('=')?;
            let valid_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            (valid_key && !line.starts_with('#')).then(|| (key.to_owned(), unquote_shell(value.trim())))
        })
        .collect()
}

/// A shell-quoted `os-release` value without its quotes; inside double quotes a backslash escapes the next
/// character.
fn unquote_shell(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
        return out;
    }
    match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(inner) => inner.to_owned(),
        None => value.to_owned(),
    }
}

/// The OS as `os-release` names it (`NAME`, falling back to `PRETTY_NAME`, then `Linux` as the specification
/// says), `VERSION_ID` as its version, the kernel release as the build (what changes with every update) and
/// `VARIANT` (`Server`, `Workstation`) as the edition.
pub fn os_info(release: &BTreeMap<String, String>, kernel_release: &str, arch: &str) -> OsInfo {
    let field = |key: &str| release.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    OsInfo {
        name: field("NAME").or_else(|| field("PRETTY_NAME")).unwrap_or("Linux").to_owned(),
        version: field("VERSION_ID").unwrap_or_default().to_owned(),
        build: kernel_release.trim().to_owned(),
        edition: field("VARIANT").unwrap_or_default().to_owned(),
        arch: arch.trim().to_owned(),
    }
}

/// Placeholders firmware vendors leave in SMBIOS strings: reporting them would make every such PC look alike.
const DMI_PLACEHOLDERS: &[&str] = &[
    "to be filled by o.e.m.",
    "default string",
    "not specified",
    "not applicable",
    "not available",
    "system serial number",
    "system product name",
    "system manufacturer",
    "chassis serial number",
    "0123456789",
    "none",
    "n/a",
    "unknown",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "03000200-0400-0500-0006-000700080009",
];

/// An SMBIOS string as sysfs shows it, trimmed, and empty when it is a vendor's placeholder.
pub fn dmi_text(raw: &str) -> String {
    let value = raw.trim().trim_matches('\0').trim();
    if DMI_PLACEHOLDERS.iter().any(|p| value.eq_ignore_ascii_case(p)) {
        return String::new();
    }
    value.to_owned()
}

/// A BIOS release date as SMBIOS states it (`MM/DD/YYYY`) as `YYYY-MM-DD`; anything else is kept as stated.
pub fn dmi_date(raw: &str) -> String {
    let value = dmi_text(raw);
    let mut parts = value.split('/').map(|p| p.trim().parse::<u32>().ok());
    let (Some(Some(month)), Some(Some(day)), Some(Some(year)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return value;
    };
    let four_digit_year = value.rsplit('/').next().is_some_and(|y| y.trim().len() == 4);
    match i32::try_from(year).ok().filter(|_| four_digit_year).and_then(|y| NaiveDate::from_ymd_opt(y, month, day)) {
        Some(date) => date.format("%Y-%m-%d").to_string(),
        None => value,
    }
}

/// The blank-line separated `key : value` stanzas of `/proc/cpuinfo`, one map per stanza.
fn cpuinfo_stanzas(text: &str) -> Vec<BTreeMap<&str, &str>> {
    let mut stanzas = Vec::new();
    let mut current = BTreeMap::new();
    for line in text.lines() {
        match line.split_once(':') {
            Some((key, value)) => {
                current.insert(key.trim(), value.trim());
            }
            None if line.trim().is_empty() && !current.is_empty() => stanzas.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        stanzas.push(current);
    }
    stanzas
}

/// ARM's `CPU implementer` codes for the vendors one meets in PCs and servers.
fn arm_implementer(code: &str) -> &'static str {
    match code.trim().to_ascii_lowercase().as_str() {
        "0x41" => "ARM",
        "0x42" => "Broadcom",
        "0x43" => "Cavium",
        "0x46" => "Fujitsu",
        "0x48" => "HiSilicon",
        "0x4e" => "NVIDIA",
        "0x51" => "Qualcomm",
        "0x61" => "Apple",
        "0xc0" => "Ampere",
        _ => "",
    }
}

/// The processor as `/proc/cpuinfo` describes it: model and vendor from the first processor, logical processors
/// counted, sockets from distinct `physical id`s, cores from distinct (`physical id`, `core id`) pairs (or `cpu
/// cores` per socket), and the highest `cpu MHz` seen as a stand-in for the maximum when cpufreq says nothing.
/// Counts it cannot tell stay 0 for the caller to fill from elsewhere.
pub fn cpu_info(text: &str) -> CpuInfo {
    let stanzas = cpuinfo_stanzas(text);
    let processors: Vec<_> =
        stanzas.iter().filter(|s| s.get("processor").is_some_and(|p| p.parse::<u32>().is_ok())).collect();
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|key| stanzas.iter().find_map(|s| s.get(key).copied().filter(|v| !v.is_empty())))
            .unwrap_or_default()
            .to_owned()
    };
    let vendor = match first(&["vendor_id", "vendor"]) {
        vendor if vendor.is_empty() => arm_implementer(&first(&["CPU implementer"])).to_owned(),
        vendor => vendor,
    };
    let sockets: BTreeSet<&str> = processors.iter().filter_map(|s| s.get("physical id").copied()).collect();
    let cores: BTreeSet<(&str, &str)> = processors
        .iter()
        .filter_map(|s| Some((s.get("physical id").copied().unwrap_or("0"), *s.get("core id")?)))
        .collect();
    let cores_per_socket = processors.iter().find_map(|s| s.get("cpu cores")?.parse::<usize>().ok()).unwrap_or(0);
    let core_count = if cores.is_empty() { cores_per_socket * sockets.len().max(1) } else { cores.len() };
    let max_mhz = processors.iter().filter_map(|s| s.get("cpu MHz")?.parse::<f64>().ok()).fold(0.0_f64, f64::max);
    CpuInfo {
        model: first(&["model name", "cpu model", "uarch", "cpu", "Processor"]),
        vendor,
        sockets: count(if sockets.is_empty() && !processors.is_empty() { 1 } else { sockets.len() }),
        cores: count(if processors.is_empty() { 0 } else { core_count }),
        threads: count(processors.len()),
        max_mhz: mhz(max_mhz),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn mhz(value: f64) -> u32 {
    // `as` saturates on overflow and maps NaN to 0, which is what a nonsense frequency deserves.
    value.round() as u32
}

/// `cpuinfo_max_freq` (kHz) in MHz.
pub fn khz_to_mhz(text: &str) -> Option<u32> {
    let khz = text.trim().parse::<u64>().ok().filter(|&khz| khz > 0)?;
    u32::try_from(khz / 1000).ok()
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn mem_total_bytes(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|line| line.strip_prefix("MemTotal:"))?;
    let mut words = line.split_whitespace();
    let value = words.next()?.parse::<u64>().ok()?;
    match words.next() {
        Some(unit) if unit.eq_ignore_ascii_case("kb") => value.checked_mul(KIB),
        Some(_) => None,
        None => Some(value),
    }
}

/// `btime` of `/proc/stat`: when the host booted.
pub fn boot_time(proc_stat: &str) -> Option<DateTime<Utc>> {
    let secs = proc_stat.lines().find_map(|line| line.strip_prefix("btime "))?.trim().parse::<i64>().ok()?;
    DateTime::from_timestamp(secs, 0).filter(|_| secs > 0)
}

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub mount_point: String,
    pub file_system: String,
}

/// `/proc/self/mounts` (the `fstab` format, with spaces and other awkward characters escaped as `\ooo`).
pub fn mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some(Mount {
                source: unescape_octal(fields.next()?),
                mount_point: unescape_octal(fields.next()?),
                file_system: fields.next()?.to_owned(),
            })
        })
        .collect()
}

/// Undoes the kernel's `\ooo` escapes (`\040` is a space); anything that is not one is kept as it is.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes.get(i + 1..i + 4).filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(value) => {
                out.push(value);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// File systems never worth reporting as a volume even when a device backs them: snaps' and images' read-only
/// layers.
const IMAGE_FILE_SYSTEMS: &[&str] = &["squashfs", "erofs", "cramfs"];

/// The mounts that are the host's own storage: file systems on a block device (ZFS datasets too, whose source is
/// a pool name), one per device (a btrfs subvolume or a bind mount of the same device would repeat it). Network,
/// FUSE and in-memory file systems are left out, and that is also what keeps a hung NFS server from hanging the
/// `statvfs` calls made on these.
pub fn local_volumes(mounts: &[Mount]) -> Vec<Mount> {
    let mut seen = BTreeSet::new();
    mounts
        .iter()
        .filter(|m| {
            let device = m.source.starts_with("/dev/") && !m.source.starts_with("/dev/loop");
            let fs = m.file_system.as_str();
            (device || fs == "zfs") && !IMAGE_FILE_SYSTEMS.contains(&fs) && !fs.starts_with("fuse.")
        })
        .filter(|m| seen.insert(m.source.clone()))
        .cloned()
        .collect()
}

/// Undoes udev's `\xHH` escapes in `/dev/disk/by-label` names (`My\x20Disk`).
pub fn unescape_udev(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes.get(i + 2..i + 4).filter(|_| b == b'\\' && bytes.get(i + 1) == Some(&b'x'));
        match hex.and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()) {
            Some(value) => {
                out.push(value);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a `/sys/block` entry is a disk worth reporting: SCSI/SATA/USB (`sd`), IDE (`hd`), virtio (`vd`), Xen
/// (`xvd`), NVMe namespaces, MMC/SD cards and software RAID (`md`). Loop, RAM, zram, device-mapper and optical
/// devices are not disks; nor are an eMMC's boot and RPMB partitions or NVMe's hidden per-path devices.
pub fn keep_block_device(name: &str) -> bool {
    let kept = ["sd", "hd", "vd", "xvd", "nvme", "mmcblk", "md"].iter().any(|prefix| name.starts_with(prefix));
    let mmc_extra = name.starts_with("mmcblk") && (name.contains("boot") || name.contains("rpmb"));
    let nvme_path = name.strip_prefix("nvme").is_some_and(|rest| rest.contains('c'));
    kept && !mmc_extra && !nvme_path
}

/// The bus a disk hangs off, from its name and its resolved sysfs path; empty when neither tells.
pub fn disk_bus(name: &str, sysfs_path: &str) -> String {
    let bus = if sysfs_path.contains("/usb") {
        "usb"
    } else if name.starts_with("nvme") {
        "nvme"
    } else if name.starts_with("vd") {
        "virtio"
    } else if name.starts_with("xvd") {
        "xen"
    } else if name.starts_with("mmcblk") {
        "mmc"
    } else if sysfs_path.contains("/ata") {
        "sata"
    } else if sysfs_path.contains("/virtio") {
        "virtio"
    } else if name.starts_with("sd") && sysfs_path.contains("/host") {
        "scsi"
    } else {
        ""
    };
    bus.to_owned()
}

/// `queue/rotational` as media: spinning or not.
pub fn disk_media(rotational: &str) -> String {
    match rotational.trim() {
        "1" => "hdd".to_owned(),
        "0" => "ssd".to_owned(),
        _ => String::new(),
    }
}

/// A block device's `size` file (512-byte sectors, whatever the device's own sector size) in bytes.
pub fn sectors_to_bytes(text: &str) -> u64 {
    text.trim().parse::<u64>().map_or(0, |sectors| sectors.saturating_mul(512))
}

/// A MAC address as sysfs shows it, lowercase; empty for the all-zero address of tunnels and the like.
pub fn mac(text: &str) -> String {
    let mac = text.trim().to_ascii_lowercase();
    if mac.chars().all(|c| c == '0' || c == ':') { String::new() } else { mac }
}

/// The default IPv4 gateways of `/proc/net/route` as (interface, gateway). The kernel prints each address as the
/// hexadecimal of a native-endian `u32` holding the bytes in network order.
pub fn default_gateways_v4(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [iface, destination, gateway, _flags, _, _, _, mask, ..] = fields.as_slice() else { continue };
        if *destination != "00000000" || *mask != "00000000" {
            continue;
        }
        let Ok(raw) = u32::from_str_radix(gateway, 16) else { continue };
        let address = Ipv4Addr::from(raw.to_ne_bytes());
        let entry = ((*iface).to_owned(), address.to_string());
        if !address.is_unspecified() && !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// The default IPv6 gateways of `/proc/net/ipv6_route` as (interface, gateway): routes to `::/0` through a next
/// hop.
pub fn default_gateways_v6(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [destination, prefix, _, _, next_hop, .., iface] = fields.as_slice() else { continue };
        let parse = |hex: &str| u128::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 32).map(Ipv6Addr::from);
        let (Some(destination), Some(next_hop)) = (parse(destination), parse(next_hop)) else { continue };
        if !destination.is_unspecified() || *prefix != "00" || next_hop.is_unspecified() {
            continue;
        }
        let entry = ((*iface).to_owned(), next_hop.to_string());
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// The `nameserver` addresses of a `resolv.conf`, in order.
pub fn nameservers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(address) = words.next() else { continue };
        let without_zone = address.split('%').next().unwrap_or_default();
        if without_zone.parse::<IpAddr>().is_ok() && !out.iter().any(|a| a == address) {
            out.push(address.to_owned());
        }
    }
    out
}

/// The host's DNS domain, kept simple: the kernel's domain name when one is set, else the domain part of a fully
/// qualified host name in the kernel, in `/etc/hostname`, or in `/etc/hosts` next to the short name.
pub fn dns_domain(kernel_domain: &str, hostname: &str, etc_hostname: &str, hosts: &str) -> String {
    let kernel_domain = kernel_domain.trim();
    if !kernel_domain.is_empty() && kernel_domain != "(none)" {
        return kernel_domain.to_owned();
    }
    let hostname = hostname.trim();
    let short = hostname.split('.').next().unwrap_or_default();
    let domain_of = |name: &str| {
        let name = name.trim_end_matches('.');
        name.split_once('.').filter(|(host, domain)| *host == short && !domain.is_empty()).map(|(_, d)| d.to_owned())
    };
    let from_etc_hostname = etc_hostname.lines().map(|l| l.split('#').next().unwrap_or_default().trim());
    let from_hosts = hosts.lines().flat_map(|l| l.split('#').next().unwrap_or_default().split_whitespace().skip(1));
    std::iter::once(hostname)
        .chain(from_etc_hostname)
        .chain(from_hosts)
        .filter(|_| !short.is_empty())
        .find_map(domain_of)
        .unwrap_or_default()
}

/// An IANA zone name from where `/etc/localtime` points (`/usr/share/zoneinfo/Europe/Berlin`) or from a `TZ`
/// value naming a file or a zone.
pub fn timezone_from_path(target: &str) -> Option<String> {
    let target = target.trim().trim_start_matches(':');
    let zone = match target.rsplit_once("zoneinfo/") {
        Some((_, zone)) => zone.trim_start_matches("posix/").trim_start_matches("right/"),
        None if target.starts_with('/') => return None,
        None => target,
    };
    (!zone.is_empty() && !zone.contains(char::is_whitespace)).then(|| zone.to_owned())
}

/// `/etc/timezone` (Debian's): its first line.
pub fn timezone_file(text: &str) -> Option<String> {
    let zone = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'))?;
    (!zone.contains(char::is_whitespace)).then(|| zone.to_owned())
}

/// One memory module from an SMBIOS type 17 ("Memory Device") structure, as `/sys/firmware/dmi/entries/17-*/raw`
/// holds it: the formatted area (its length in byte 1) followed by the NUL-terminated strings it refers to by
/// number. `None` for an empty slot or anything that is not a well-formed type 17 structure.
pub fn smbios_memory_device(raw: &[u8]) -> Option<MemoryModule> {
    if *raw.first()? != 17 {
        return None;
    }
    let length = usize::from(*raw.get(1)?);
    let formatted = raw.get(..length)?;
    let strings = raw.get(length..).unwrap_or_default();
    let byte = |offset: usize| formatted.get(offset).copied();
    let word = |offset: usize| Some(u16::from_le_bytes(formatted.get(offset..offset + 2)?.try_into().ok()?));
    let dword = |offset: usize| Some(u32::from_le_bytes(formatted.get(offset..offset + 4)?.try_into().ok()?));
    let text = |offset: usize| byte(offset).map(|index| smbios_string(strings, index)).unwrap_or_default();
    let size_bytes = smbios_module_size(word(0x0C)?, dword(0x1C))?;
    let speed = match word(0x15).unwrap_or(0) {
        0xFFFF => dword(0x54).unwrap_or(0),
        speed => u32::from(speed),
    };
    let locator = text(0x10);
    Some(MemoryModule {
        slot: if locator.is_empty() { text(0x11) } else { locator },
        size_bytes,
        speed_mts: speed,
        manufacturer: text(0x17),
        part_number: text(0x1A),
    })
}

/// The Size field (and Extended Size when Size says `0x7FFF`) in bytes; `None` when no module is installed,
/// `Some(0)` when one is but its size is unknown.
fn smbios_module_size(size: u16, extended: Option<u32>) -> Option<u64> {
    match size {
        0 => None,
        0xFFFF => Some(0),
        0x7FFF => Some(u64::from(extended? & 0x7FFF_FFFF) * MIB).filter(|&bytes| bytes > 0),
        // Bit 15 set: the size is in KiB rather than MiB.
        size if size & 0x8000 != 0 => Some(u64::from(size & 0x7FFF) * KIB),
        size => Some(u64::from(size) * MIB),
    }
}

/// String number `index` (1-based; 0 means none) of an SMBIOS structure's string set.
fn smbios_string(strings: &[u8], index: u8) -> String {
    let Some(position) = usize::from(index).checked_sub(1) else { return String::new() };
    let raw = strings.split(|&b| b == 0).take_while(|s| !s.is_empty()).nth(position).unwrap_or_default();
    dmi_text(&String::from_utf8_lossy(raw))
}

/// Size of one `struct utmp` record of glibc on Linux (x86_64, aarch64 and the 32-bit ABIs alike).
pub const UTMP_RECORD_BYTES: usize = 384;
/// `ut_type` of a logged-in user's session.
const USER_PROCESS: i16 = 7;

/// The logged-on users of a `utmp` file: its `USER_PROCESS` records, with the terminal as the session and the
/// login time. A trailing partial record is ignored.
pub fn utmp_users(bytes: &[u8]) -> Vec<LoggedOnUser> {
    bytes.chunks_exact(UTMP_RECORD_BYTES).filter_map(utmp_user).collect()
}

/// One `struct utmp`: `ut_type` (i16, padded to 4), `ut_pid` (i32), `ut_line[32]`, `ut_id[4]`, `ut_user[32]`,
/// `ut_host[256]`, `ut_exit` (2 × i16), `ut_session` (i32), `ut_tv` (2 × i32 seconds and microseconds), ... in the
/// host's byte order.
fn utmp_user(record: &[u8]) -> Option<LoggedOnUser> {
    let kind = i16::from_ne_bytes(record.get(0..2)?.try_into().ok()?);
    if kind != USER_PROCESS {
        return None;
    }
    let name = c_string(record.get(44..76)?);
    if name.is_empty() {
        return None;
    }
    // glibc keeps a 32-bit `tv_sec` here; read unsigned, it lasts until 2106.
    let secs = u32::from_ne_bytes(record.get(340..344)?.try_into().ok()?);
    Some(LoggedOnUser {
        name,
        session: c_string(record.get(8..40)?),
        since: DateTime::from_timestamp(i64::from(secs), 0).filter(|_| secs > 0),
    })
}

/// A fixed-size, NUL-padded C string field as text.
fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(field.get(..end).unwrap_or_default()).trim().to_owned()
}

/// A user session from one of systemd-logind's `/run/systemd/sessions/<id>` files (`KEY=value` lines; the
/// format sd-login itself reads): only people's sessions (`CLASS=user`) that are not closing. The session is the
/// terminal, else the X display, else the service that opened it.
pub fn logind_session(text: &str) -> Option<LoggedOnUser> {
    let fields = os_release(text);
    let field = |key: &str| fields.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    if field("CLASS").is_some_and(|class| class != "user") || field("STATE") == Some("closing") {
        return None;
    }
    let since = field("REALTIME").and_then(|us| us.parse::<i64>().ok()).filter(|&us| us > 0);
    Some(LoggedOnUser {
        name: field("USER")?.to_owned(),
        session: field("TTY").or_else(|| field("DISPLAY")).or_else(|| field("SERVICE")).unwrap_or_default().to_owned(),
        since: since.and_then(|us| DateTime::from_timestamp(us / 1_000_000, 0)),
    })
}

/// A PCI id file (`/sys/bus/pci/devices/*/vendor`: `0x10de`).
pub fn pci_id(text: &str) -> Option<u16> {
    let text = text.trim();
    u16::from_str_radix(text.strip_prefix("0x").unwrap_or(text), 16).ok()
}

/// Vendors of the display adapters one meets in PCs, servers and virtual machines, for when `pci.ids` is not
/// installed.
pub fn pci_vendor_name(vendor: u16) -> &'static str {
    match vendor {
        0x10de => "NVIDIA",
        0x1002 | 0x1022 => "AMD",
        0x8086 => "Intel",
        0x1af4 | 0x1b36 => "Red Hat (virtio)",
        0x1234 => "QEMU",
        0x15ad => "VMware",
        0x1414 => "Microsoft",
        0x80ee => "VirtualBox",
        0x1a03 => "ASPEED",
        0x102b => "Matrox",
        _ => "",
    }
}

/// The vendor's and the device's names in a `pci.ids` database (`vvvv  Vendor` lines, each followed by
/// tab-indented `dddd  Device` lines).
pub fn pci_ids_names(text: &str, vendor: u16, device: u16) -> (Option<String>, Option<String>) {
    let vendor_hex = format!("{vendor:04x}");
    let device_hex = format!("{device:04x}");
    let mut vendor_name = None;
    for line in text.lines() {
        if line.starts_with("C ") {
            break;
        }
        if let Some(name) = line.strip_prefix(vendor_hex.as_str()).and_then(|rest| rest.strip_prefix("  ")) {
            vendor_name = Some(name.trim().to_owned());
            continue;
        }
        if vendor_name.is_none() {
            continue;
        }
        if !line.starts_with('\t') && !line.starts_with('#') && !line.is_empty() {
            break; // the next vendor: the device is not listed
        }
        let device_line = line.strip_prefix('\t').filter(|l| !l.starts_with('\t'));
        if let Some(name) = device_line.and_then(|l| l.strip_prefix(device_hex.as_str())?.strip_prefix("  ")) {
            return (vendor_name, Some(name.trim().to_owned()));
        }
    }
    (vendor_name, None)
}

/// A display adapter's name from its `pci.ids` device name: the marketing name in brackets when there is one
/// (`GA106 [GeForce RTX 3060]` is a `GeForce RTX 3060`).
pub fn gpu_name(device_name: &str) -> String {
    let bracketed = device_name.rsplit_once('[').and_then(|(_, rest)| rest.split_once(']')).map(|(inner, _)| inner);
    bracketed.filter(|b| !b.trim().is_empty()).unwrap_or(device_name).trim().to_owned()
}

/// What tells whether an interface got its address from DHCP: the lease files of the DHCP clients a host may run,
/// gathered by the collector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpEvidence {
    /// NetworkManager, dhclient or dhcpcd keeps state on this host.
    pub client_present: bool,
    /// NetworkManager's lease file names (`internal-<uuid>-eth0.lease`).
    pub network_manager_leases: Vec<String>,
    /// NetworkManager's per-device state (`/run/NetworkManager/devices/<ifindex>`), by interface index.
    pub network_manager_devices: BTreeMap<String, String>,
    /// dhclient's lease files' contents.
    pub dhclient_leases: Vec<String>,
    /// dhcpcd's lease file names (`eth0.lease`, `wlan0-home.lease`).
    pub dhcpcd_leases: Vec<String>,
    /// Interface indexes systemd-networkd manages (its `links/<ifindex>` says `ADMIN_STATE=configured`): its
    /// state directory exists wherever systemd is installed, so only these say networkd is in charge.
    pub networkd_managed: Vec<String>,
    /// systemd-networkd's lease file names: interface indexes.
    pub networkd_leases: Vec<String>,
}

/// Whether a systemd-networkd `links/<ifindex>` state file says networkd manages the link.
pub fn networkd_manages(link_state: &str) -> bool {
    link_state.lines().any(|l| matches!(l.trim(), "ADMIN_STATE=configured" | "ADMIN_STATE=configuring"))
}

/// Whether interface `name` (index `ifindex`) has a DHCP lease; `None` when no DHCP client known here is in
/// charge of it, so nothing can be said.
pub fn dhcp_in_use(name: &str, ifindex: &str, evidence: &DhcpEvidence) -> Option<bool> {
    let networkd = !ifindex.is_empty() && evidence.networkd_managed.iter().any(|i| i == ifindex);
    if !evidence.client_present && !networkd {
        return None;
    }
    let nm_lease = evidence.network_manager_leases.iter().any(|f| f.ends_with(&format!("-{name}.lease")));
    let nm_device = evidence
        .network_manager_devices
        .get(ifindex)
        .is_some_and(|state| state.lines().any(|l| matches!(l.trim(), "[dhcp4]" | "[dhcp6]")));
    let dhclient = evidence.dhclient_leases.iter().any(|text| text.contains(&format!("interface \"{name}\";")));
    let dhcpcd = evidence.dhcpcd_leases.iter().any(|f| {
        let stem = f.strip_suffix(".lease").or_else(|| f.strip_suffix(".lease6")).unwrap_or_default();
        stem == name || stem.strip_prefix(name).is_some_and(|rest| rest.starts_with('-'))
    });
    let networkd_lease = networkd && evidence.networkd_leases.iter().any(|f| f == ifindex);
    Some(nm_lease || nm_device || dhclient || dhcpcd || networkd_lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_names_the_distribution_and_its_version() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n\
                    # NAME=commented\nVARIANT='Server Edition'\nBAD KEY=x\nQUOTED=\"a \\\"b\\\" \\\\c\"\n";
        let release = os_release(text);
        assert_eq!(release.get("QUOTED").map(String::as_str), Some("a \"b\" \\c"));
        assert!(!release.contains_key("BAD KEY"));
        let os = os_info(&release, "6.1.0-18-amd64\n", "x86_64");
        assert_eq!(
            os,
            OsInfo {
                name: "Debian GNU/Linux".into(),
                version: "12".into(),
                build: "6.1.0-18-amd64".into(),
                edition: "Server Edition".into(),
                arch: "x86_64".into(),
            }
        );
        let pretty_only = os_release("PRETTY_NAME=Alpine\n");
        assert_eq!(os_info(&pretty_only, "", "").name, "Alpine");
        assert_eq!(os_info(&os_release(""), "", "").name, "Linux");
        assert_eq!(os_release("\"\nNAME=\"\n=x\n"), BTreeMap::from([("NAME".to_owned(), "\"".to_owned())]));
    }

    #[test]
    fn dmi_placeholders_are_blank_and_dates_are_normalised() {
        assert_eq!(dmi_text("  LENOVO\n"), "LENOVO");
        assert_eq!(dmi_text("To Be Filled By O.E.M.\n"), "");
        assert_eq!(dmi_text("Default string"), "");
        assert_eq!(dmi_date("04/01/2014\n"), "2014-04-01");
        assert_eq!(dmi_date("13/45/2014"), "13/45/2014");
        assert_eq!(dmi_date("04/01/14"), "04/01/14");
        assert_eq!(dmi_date("2014-04-01"), "2014-04-01");
        assert_eq!(dmi_date("1/2/3/4"), "1/2/3/4");
        assert_eq!(dmi_date(""), "");
    }

    const CPUINFO_TWO_SOCKETS: &str = "\
processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6230\ncpu MHz\t\t: 2100.000\n\
physical id\t: 0\ncore id\t\t: 0\ncpu cores\t: 2\n\n\
processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6230\ncpu MHz\t\t: 3900.4\n\
physical id\t: 0\ncore id\t\t: 0\ncpu cores\t: 2\n\n\
processor\t: 2\nphysical id\t: 0\ncore id\t\t: 1\n\n\
processor\t: 3\nphysical id\t: 1\ncore id\t\t: 0\n\n\
processor\t: 4\nphysical id\t: 1\ncore id\t\t: 1\n";

    #[test]
    fn cpuinfo_counts_sockets_cores_and_threads() {
        let cpu = cpu_info(CPUINFO_TWO_SOCKETS);
        assert_eq!(
            cpu,
            CpuInfo {
                model: "Intel(R) Xeon(R) Gold 6230".into(),
                vendor: "GenuineIntel".into(),
                sockets: 2,
                cores: 4,
                threads: 5,
                max_mhz: 3900,
            }
        );
    }

    #[test]
    fn cpuinfo_of_an_arm_machine_names_the_implementer_and_leaves_cores_to_the_caller() {
        let text =
            "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n\nprocessor\t: 1\nCPU implementer\t: 0x41\n";
        let cpu = cpu_info(text);
        assert_eq!((cpu.vendor.as_str(), cpu.sockets, cpu.cores, cpu.threads), ("ARM", 1, 0, 2));
        assert_eq!(cpu.model, "");
    }

    #[test]
    fn cpuinfo_without_core_ids_multiplies_cores_per_socket() {
        let text = "processor: 0\nphysical id: 0\ncpu cores: 4\n\nprocessor: 1\nphysical id: 1\ncpu cores: 4\n";
        assert_eq!(cpu_info(text).cores, 8);
    }

    #[test]
    fn cpuinfo_survives_garbage() {
        assert_eq!(cpu_info(""), CpuInfo::default());
        assert_eq!(cpu_info(&"x".repeat(1 << 20)), CpuInfo::default());
        let weird = cpu_info("processor: nope\ncpu MHz: NaN\n\n\n::::\nprocessor: 0\ncpu MHz: 1e400\n");
        assert_eq!((weird.threads, weird.max_mhz), (1, u32::MAX));
        assert_eq!(khz_to_mhz("3900000\n"), Some(3900));
        assert_eq!(khz_to_mhz("0"), None);
        assert_eq!(khz_to_mhz("-5"), None);
    }

    #[test]
    fn meminfo_total_is_in_bytes() {
        assert_eq!(mem_total_bytes("MemTotal:       24683772 kB\nMemFree: 1 kB\n"), Some(24_683_772 * 1024));
        assert_eq!(mem_total_bytes("MemTotal: 18446744073709551615 kB"), None);
        assert_eq!(mem_total_bytes("MemFree: 1 kB"), None);
        assert_eq!(mem_total_bytes("MemTotal: 5 MB"), None);
    }

    #[test]
    fn boot_time_comes_from_btime() {
        let stat = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        assert_eq!(boot_time(stat), DateTime::from_timestamp(1_700_000_000, 0));
        assert_eq!(boot_time("btime x\n"), None);
        assert_eq!(boot_time("btime -5\n"), None);
        assert_eq!(boot_time(""), None);
    }

    const MOUNTS: &str = "\
proc /proc proc rw,relatime 0 0
/dev/vda / ext4 rw,relatime 0 0
tmpfs /run tmpfs rw 0 0
/dev/nvme0n1p1 /boot/efi vfat rw 0 0
/dev/mapper/vg-home /home/my\\040files btrfs rw 0 0
/dev/vda /etc/hosts ext4 rw 0 0
/dev/loop3 /snap/core/1 squashfs ro 0 0
/dev/sdb1 /media/usb fuseblk rw 0 0
sshfs#me@host: /mnt/remote fuse.sshfs rw 0 0
server:/export /mnt/nfs nfs4 rw 0 0
rpool/ROOT /tank zfs rw 0 0
overlay /var/lib/docker/x overlay rw 0 0
broken-line
";

    #[test]
    fn local_volumes_are_block_devices_once_each() {
        let volumes = local_volumes(&mounts(MOUNTS));
        let points: Vec<_> = volumes.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, ["/", "/boot/efi", "/home/my files", "/media/usb", "/tank"]);
        assert_eq!(volumes[2].file_system, "btrfs");
        assert_eq!(unescape_octal("a\\134b\\9\\04"), "a\\b\\9\\04");
        assert_eq!(unescape_udev("My\\x20Disk\\xZZ\\x4"), "My Disk\\xZZ\\x4");
        assert!(mounts("").is_empty());
    }

    #[test]
    fn block_devices_are_disks_or_not() {
        for disk in ["sda", "nvme0n1", "vda", "xvda", "mmcblk0", "md0", "hda"] {
            assert!(keep_block_device(disk), "{disk}");
        }
        for other in ["loop0", "ram0", "zram0", "dm-0", "sr0", "mmcblk0boot0", "mmcblk0rpmb", "nvme0c0n1", "nbd0"] {
            assert!(!keep_block_device(other), "{other}");
        }
        assert_eq!(disk_bus("nvme0n1", "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1"), "nvme");
        assert_eq!(disk_bus("sdb", "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0"), "usb");
        assert_eq!(disk_bus("sda", "/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0"), "sata");
        assert_eq!(disk_bus("vda", "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda"), "virtio");
        assert_eq!(disk_bus("md0", "/sys/devices/virtual/block/md0"), "");
        assert_eq!((disk_media("1\n"), disk_media("0"), disk_media("")), ("hdd".into(), "ssd".into(), String::new()));
        assert_eq!(sectors_to_bytes("536870912\n"), 536_870_912 * 512);
        assert_eq!(sectors_to_bytes("18446744073709551615"), u64::MAX);
        assert_eq!(sectors_to_bytes("x"), 0);
        assert_eq!(mac("02:FC:00:00:00:01\n"), "02:fc:00:00:00:01");
        assert_eq!(mac("00:00:00:00:00:00"), "");
    }

    #[test]
    fn default_gateways_come_from_both_routing_tables() {
        let gateway = u32::from_ne_bytes([192, 0, 2, 1]);
        let v4 = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t{gateway:08X}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
             wg0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n\
             bad\t00000000\tZZ\t0003\t0\t0\t0\t00000000\t0\t0\t0\nshort line\n"
        );
        assert_eq!(default_gateways_v4(&v4), [("eth0".to_owned(), "192.0.2.1".to_owned())]);
        let v6 = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd00000000000000000000000000001 00000400 00000002 00000000 00000003     bad
";
        assert_eq!(default_gateways_v6(v6), [("eth0".to_owned(), "fd00::1".to_owned())]);
        assert!(default_gateways_v4("").is_empty() && default_gateways_v6("garbage\n").is_empty());
    }

    #[test]
    fn resolv_conf_lists_valid_nameservers_once() {
        let text = "# generated\nsearch example.com\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\n\
                    nameserver not-an-ip\nnameserver 10.255.255.53\nnameserver\n";
        assert_eq!(nameservers(text), ["10.255.255.53", "fe80::1%eth0"]);
    }

    #[test]
    fn the_dns_domain_comes_from_the_kernel_or_a_qualified_name() {
        assert_eq!(dns_domain("corp.example\n", "pc1", "", ""), "corp.example");
        assert_eq!(dns_domain("(none)\n", "pc1.example.com", "", ""), "example.com");
        assert_eq!(dns_domain("(none)", "pc1", "pc1.lan\n", ""), "lan");
        let hosts = "127.0.0.1 localhost\n127.0.1.1 pc1.example.org pc1 # me\n10.0.0.1 pc10.other.org\n";
        assert_eq!(dns_domain("(none)", "pc1", "pc1\n", hosts), "example.org");
        assert_eq!(dns_domain("(none)", "vm", "vm\n", "127.0.0.1 localhost\n127.0.0.1 vm\n"), "");
        assert_eq!(dns_domain("", "", "", ". .x x."), "");
    }

    #[test]
    fn time_zones_come_from_the_localtime_link_or_the_timezone_file() {
        assert_eq!(timezone_from_path("/usr/share/zoneinfo/Europe/Berlin").as_deref(), Some("Europe/Berlin"));
        assert_eq!(timezone_from_path("../usr/share/zoneinfo/posix/Asia/Tokyo").as_deref(), Some("Asia/Tokyo"));
        assert_eq!(timezone_from_path(":America/New_York").as_deref(), Some("America/New_York"));
        assert_eq!(timezone_from_path("/etc/some/file"), None);
        assert_eq!(timezone_from_path("/usr/share/zoneinfo/"), None);
        assert_eq!(timezone_file("# x\nEtc/UTC\n").as_deref(), Some("Etc/UTC"));
        assert_eq!(timezone_file("not a zone\n"), None);
    }

    /// A type 17 structure as SMBIOS 3.3 lays it out (0x5C bytes), with `strings` after it.
    fn memory_device(size: u16, extended: u32, speed: u16, strings: &[&str]) -> Vec<u8> {
        let mut raw = vec![0_u8; 0x5C];
        raw[0] = 17;
        raw[1] = 0x5C;
        raw[0x0C..0x0E].copy_from_slice(&size.to_le_bytes());
        raw[0x10] = 1; // device locator
        raw[0x11] = 2; // bank locator
        raw[0x15..0x17].copy_from_slice(&speed.to_le_bytes());
        raw[0x17] = 3; // manufacturer
        raw[0x1A] = 4; // part number
        raw[0x1C..0x20].copy_from_slice(&extended.to_le_bytes());
        raw[0x54..0x58].copy_from_slice(&8000_u32.to_le_bytes());
        for s in strings {
            raw.extend_from_slice(s.as_bytes());
            raw.push(0);
        }
        raw.push(0);
        raw
    }

    #[test]
    fn smbios_memory_devices_give_slot_size_speed_and_maker() {
        let raw = memory_device(16384, 0, 3200, &["DIMM_A1", "BANK 0", "Samsung", "M378A2K43EB1-CWE    "]);
        assert_eq!(
            smbios_memory_device(&raw),
            Some(MemoryModule {
                slot: "DIMM_A1".into(),
                size_bytes: 16 * 1024 * MIB,
                speed_mts: 3200,
                manufacturer: "Samsung".into(),
                part_number: "M378A2K43EB1-CWE".into(),
            })
        );
        let extended = memory_device(0x7FFF, 65536, 0xFFFF, &["", "", ""]);
        let module = smbios_memory_device(&extended).unwrap();
        assert_eq!((module.size_bytes, module.speed_mts, module.slot.as_str()), (64 * 1024 * MIB, 8000, ""));
        let kib = memory_device(0x8000 | 512, 0, 0, &["A", "B", "Unknown", "Not Specified"]);
        let module = smbios_memory_device(&kib).unwrap();
        assert_eq!((module.size_bytes, module.manufacturer.as_str(), module.part_number.as_str()), (512 * KIB, "", ""));
        assert_eq!(smbios_memory_device(&memory_device(0, 0, 0, &["empty slot"])), None, "no module installed");
        assert_eq!(smbios_memory_device(&memory_device(0xFFFF, 0, 0, &[])).unwrap().size_bytes, 0);
    }

    #[test]
    fn smbios_survives_hostile_bytes() {
        let good = memory_device(1024, 0, 2400, &["DIMM 0"]);
        for cut in 0..good.len() {
            let _ = smbios_memory_device(&good[..cut]);
        }
        let mut lying = good.clone();
        lying[1] = 0xFF; // a length beyond the end
        assert_eq!(smbios_memory_device(&lying), None);
        let mut short = good.clone();
        short[1] = 0x0D; // too short to hold the size in full
        assert_eq!(smbios_memory_device(&short), None);
        let mut wrong_strings = good;
        wrong_strings[0x10] = 200;
        assert_eq!(smbios_memory_device(&wrong_strings).unwrap().slot, "");
        assert_eq!(smbios_memory_device(&[]), None);
        assert_eq!(smbios_memory_device(&[16, 4, 0, 0]), None);
    }

    /// One glibc `struct utmp` record.
    fn utmp_record(kind: i16, line: &str, user: &str, secs: u32) -> Vec<u8> {
        let mut record = vec![0_u8; UTMP_RECORD_BYTES];
        record[0..2].copy_from_slice(&kind.to_ne_bytes());
        record[4..8].copy_from_slice(&1234_i32.to_ne_bytes());
        record[8..8 + line.len()].copy_from_slice(line.as_bytes());
        record[44..44 + user.len()].copy_from_slice(user.as_bytes());
        record[76..85].copy_from_slice(b"10.0.0.9\0");
        record[340..344].copy_from_slice(&secs.to_ne_bytes());
        record
    }

    #[test]
    fn utmp_lists_user_processes_with_their_terminal_and_login_time() {
        let mut bytes = utmp_record(2, "~", "reboot", 1_700_000_000); // BOOT_TIME
        bytes.extend(utmp_record(7, "pts/0", "alice", 1_700_000_100));
        bytes.extend(utmp_record(8, "pts/1", "bob", 1_700_000_200)); // DEAD_PROCESS
        bytes.extend(utmp_record(7, "tty1", &"x".repeat(32), 0));
        bytes.extend(utmp_record(7, "tty2", "", 5));
        bytes.extend_from_slice(&[7, 0, 0]); // a torn last record
        let users = utmp_users(&bytes);
        assert_eq!(
            users[0],
            LoggedOnUser {
                name: "alice".into(),
                session: "pts/0".into(),
                since: DateTime::from_timestamp(1_700_000_100, 0)
            }
        );
        assert_eq!(users[1].name, "x".repeat(32), "a full-width name has no NUL");
        assert_eq!(users[1].since, None);
        assert_eq!(users.len(), 2);
        assert!(utmp_users(&[0xFF; UTMP_RECORD_BYTES * 3]).is_empty());
        let mut invalid = utmp_record(7, "tty3", "xbad", 1);
        invalid[44] = 0xFF;
        assert_eq!(utmp_users(&invalid)[0].name, "\u{FFFD}bad");
    }

    #[test]
    fn logind_sessions_of_people_are_users() {
        let text = "# This is private data. Do not parse.\nUID=1000\nUSER=alice\nSTATE=active\nCLASS=user\n\
                    TTY=tty2\nREALTIME=1700000000123456\n";
        assert_eq!(
            logind_session(text),
            Some(LoggedOnUser {
                name: "alice".into(),
                session: "tty2".into(),
                since: DateTime::from_timestamp(1_700_000_000, 0)
            })
        );
        assert_eq!(logind_session("USER=gdm\nCLASS=greeter\n"), None);
        assert_eq!(logind_session("USER=bob\nSTATE=closing\n"), None);
        assert_eq!(logind_session("USER=bob\nSERVICE=sshd\nREALTIME=x\n").unwrap().session, "sshd");
        assert_eq!(logind_session(""), None);
    }

    #[test]
    fn pci_ids_name_vendors_and_devices() {
        let ids = "# comment\n10de  NVIDIA Corporation\n\t2503  GA106 [GeForce RTX 3060]\n\t\t1043 87f3  ROG\n\
                   \t2504  GA106 [GeForce RTX 3060 Lite Hash Rate]\n1234  Technical Corp.\n\t1111  QEMU VGA\n\
                   8086  Intel Corporation\n\t3e92  CoffeeLake-S GT2 [UHD Graphics 630]\nC 03  Display controller\n\
                   \t00  VGA compatible controller\n";
        let (vendor, device) = pci_ids_names(ids, 0x10de, 0x2504);
        assert_eq!(vendor.as_deref(), Some("NVIDIA Corporation"));
        assert_eq!(gpu_name(&device.unwrap()), "GeForce RTX 3060 Lite Hash Rate");
        assert_eq!(pci_ids_names(ids, 0x10de, 0x1043), (Some("NVIDIA Corporation".into()), None), "not a subsystem");
        assert_eq!(pci_ids_names(ids, 0x1234, 0x1111).1.as_deref(), Some("QEMU VGA"));
        assert_eq!(pci_ids_names(ids, 0x10de, 0x9999).1, None);
        assert_eq!(pci_ids_names(ids, 0x0003, 0x0000), (None, None));
        assert_eq!(gpu_name("QEMU VGA"), "QEMU VGA");
        assert_eq!(gpu_name("odd ] [ name"), "odd ] [ name");
        assert_eq!((pci_id("0x10de\n"), pci_id("1af4"), pci_id("0xzz")), (Some(0x10de), Some(0x1af4), None));
        assert_eq!(pci_vendor_name(0x1002), "AMD");
    }

    #[test]
    fn dhcp_is_told_by_lease_files_and_unknown_without_a_client() {
        assert_eq!(dhcp_in_use("eth0", "2", &DhcpEvidence::default()), None);
        let idle_networkd = DhcpEvidence { networkd_leases: vec!["2".into()], ..Default::default() };
        assert_eq!(dhcp_in_use("eth0", "2", &idle_networkd), None, "networkd installed but not in charge");
        let none = DhcpEvidence { client_present: true, ..Default::default() };
        assert_eq!(dhcp_in_use("eth0", "2", &none), Some(false));
        let cases = [
            DhcpEvidence { network_manager_leases: vec!["internal-1f2e-eth0.lease".into()], ..none.clone() },
            DhcpEvidence {
                network_manager_devices: BTreeMap::from([("2".into(), "[device]\nmanaged=true\n[dhcp4]\n".into())]),
                ..none.clone()
            },
            DhcpEvidence { dhclient_leases: vec!["lease {\n  interface \"eth0\";\n}\n".into()], ..none.clone() },
            DhcpEvidence { dhcpcd_leases: vec!["eth0-home.lease".into()], ..none.clone() },
            DhcpEvidence {
                networkd_managed: vec!["2".into(), "3".into()],
                networkd_leases: vec!["2".into()],
                ..none.clone()
            },
        ];
        for evidence in &cases {
            assert_eq!(dhcp_in_use("eth0", "2", evidence), Some(true), "{evidence:?}");
            assert_eq!(dhcp_in_use("eth1", "3", evidence), Some(false), "{evidence:?}");
        }
        let other = DhcpEvidence { dhcpcd_leases: vec!["eth00.lease".into()], ..none };
        assert_eq!(dhcp_in_use("eth0", "", &other), Some(false));
        assert!(networkd_manages("# This is private data.\nADMIN_STATE=configured\nOPER_STATE=routable\n"));
        assert!(!networkd_manages("ADMIN_STATE=unmanaged\n"));
    }
}
