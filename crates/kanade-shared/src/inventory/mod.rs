//! Inventory on the wire: what an agent reports about its PC on `inventory.<pc>.<kind>` (stream `INVENTORY`, the
//! newest per subject), one message per kind holding that kind's whole current content. The agent sends a kind
//! only when its content hash changed since the broker acknowledged the last one, or when asked for a full report;
//! the backend diffs each report against what it holds ([`diff`]) to keep normalised current state and an
//! append-only change log.
//!
//! Three kinds, split by how often they change: [`Hardware`] (what the PC is: rarely changes, every change is
//! logged), [`SoftwareList`] (what it has installed: every install, removal and version change is logged) and
//! [`Status`] (boot time, logged-on users, free space: changes all the time, kept as current state only).
//!
//! Everything here is lenient to decode (an agent is not trusted, and a newer one may send more) and bounded by
//! [`Bounded::bound`]: the agent bounds what it sends, and the backend bounds it again, so a hostile report (a
//! 100,000-item list, a megabyte name, control characters) costs a fixed amount and is counted, never stored whole.

pub mod diff;
pub mod version;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{InventoryKind, PcId};

/// `hardware`: what the PC is.
pub const KIND_HARDWARE: &str = "hardware";
/// `software`: what it has installed.
pub const KIND_SOFTWARE: &str = "software";
/// `status`: what it is doing now (boot time, logged-on users, free space).
pub const KIND_STATUS: &str = "status";
/// Every kind an agent reports, in the order it reports them.
pub const KINDS: &[&str] = &[KIND_HARDWARE, KIND_SOFTWARE, KIND_STATUS];

/// The largest inventory message an agent sends, in bytes: below nats-server's default `max_payload` (1 MiB) with
/// room for headers. A software list that would be larger is cut (and says so) rather than refused by the broker.
pub const MAX_REPORT_BYTES: usize = 960 * 1024;
/// Software items one report may carry; more are dropped and counted in [`SoftwareList::dropped`].
pub const MAX_SOFTWARE_ITEMS: usize = 10_000;
/// Entries of each hardware list (disks, volumes, adapters, modules, GPUs, users) kept; more are dropped.
pub const MAX_LIST_ITEMS: usize = 256;
/// Longest text field kept, in characters (names, versions, publishers, models).
pub const MAX_TEXT_CHARS: usize = 256;
/// Longest path kept (install locations, mount points), in characters.
pub const MAX_PATH_CHARS: usize = 1024;
/// Addresses kept per network adapter.
pub const MAX_ADDRESSES: usize = 32;

/// The envelope of every inventory message: whose, which kind, when it was collected, the content's hash, and the
/// content itself (`T` is [`Hardware`], [`SoftwareList`] or [`Status`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryReport<T> {
    pub pc_id: PcId,
    pub kind: InventoryKind,
    pub collected_at: DateTime<Utc>,
    /// SHA-256 (hex) of `data` as the agent serialised it: what it compares to decide whether the kind changed.
    #[serde(default)]
    pub hash: String,
    /// Sent because someone asked (or the broker had lost the last one), not because it changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
    /// Parts the agent could not collect, in words (`rpm: not installed` is not one; `dpkg status: permission
    /// denied` is). Shown with the PC's inventory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    pub data: T,
}

/// What the PC is. Every field may be empty: a platform that cannot tell leaves it so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Hardware {
    pub os: OsInfo,
    pub hostname: String,
    /// The Active Directory / DNS domain the PC is joined to, if any.
    pub domain: String,
    /// The workgroup of a PC that is not domain-joined (Windows), if known.
    pub workgroup: String,
    pub system: SystemInfo,
    pub bios: BiosInfo,
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
    pub disks: Vec<Disk>,
    /// Volumes as mounted: mount point, file system, size. Their free space is in [`Status`].
    pub volumes: Vec<Volume>,
    pub network: Vec<NetworkAdapter>,
    pub gpus: Vec<Gpu>,
    /// IANA name where the platform has one (`Europe/Berlin`), else the platform's own (`W. Europe Standard Time`).
    pub timezone: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct OsInfo {
    /// `Microsoft Windows 11 Pro`, `Debian GNU/Linux`, `macOS`.
    pub name: String,
    /// `10.0.22631`, `12`, `14.5`.
    pub version: String,
    /// `22631.3447`, `6.1.0-18-amd64`, `23F79`: what changes with every update.
    pub build: String,
    /// `Professional`, `Enterprise`, `Server`; empty where the platform has none.
    pub edition: String,
    /// `x86_64`, `aarch64`.
    pub arch: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct SystemInfo {
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    /// The SMBIOS system UUID, where readable.
    pub uuid: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct BiosInfo {
    pub vendor: String,
    pub version: String,
    /// As the firmware states it, normalised to `YYYY-MM-DD` where it parses.
    pub date: String,
    /// `uefi` or `bios`; empty when unknown.
    pub firmware: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CpuInfo {
    pub model: String,
    pub vendor: String,
    pub sockets: u32,
    /// Physical cores, all sockets.
    pub cores: u32,
    /// Logical processors, all sockets.
    pub threads: u32,
    pub max_mhz: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct MemoryInfo {
    /// Usable physical memory as the OS reports it.
    pub total_bytes: u64,
    /// The installed modules, where the platform can list them (SMBIOS, WMI); empty where it cannot.
    pub modules: Vec<MemoryModule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct MemoryModule {
    pub slot: String,
    pub size_bytes: u64,
    /// MT/s.
    pub speed_mts: u32,
    pub manufacturer: String,
    pub part_number: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Disk {
    /// `sda`, `nvme0n1`, `\\.\PHYSICALDRIVE0`.
    pub name: String,
    pub model: String,
    pub serial: String,
    pub size_bytes: u64,
    /// `ssd`, `hdd`, or empty when unknown.
    pub media: String,
    /// `nvme`, `sata`, `usb`, `virtio`, ...; empty when unknown.
    pub bus: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Volume {
    /// `/`, `/home`, `C:`.
    pub mount: String,
    pub file_system: String,
    pub size_bytes: u64,
    pub label: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct NetworkAdapter {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`, lowercase.
    pub mac: String,
    /// IPv4 and IPv6 addresses with their prefix length (`192.168.1.20/24`).
    pub addresses: Vec<String>,
    /// Whether the address came from DHCP; `None` when the platform cannot tell.
    pub dhcp: Option<bool>,
    pub gateways: Vec<String>,
    pub dns_servers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Gpu {
    pub name: String,
    pub vendor: String,
    pub driver_version: String,
    pub memory_bytes: u64,
}

/// What the PC has installed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct SoftwareList {
    pub items: Vec<Software>,
    /// Items the agent found but did not send (over [`MAX_SOFTWARE_ITEMS`] or [`MAX_REPORT_BYTES`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: u64,
    /// Sources that exist on the PC but could not be read this time (`rpm` with a broken database): the backend
    /// keeps what it had from them instead of logging every one of their items as removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_sources: Vec<String>,
    /// Scopes the agent could not look at this time (`user:<SID>` of a Windows user who is signed out, whose
    /// registry hive is not loaded): the backend keeps the items of these scopes as they were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unread_scopes: Vec<String>,
}

/// One installed product or package.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Software {
    /// Where it was found: `dpkg`, `rpm`, `snap`, `flatpak`, `registry`, `msi`, `appx`, `app` (macOS bundles).
    pub source: String,
    /// Stable within its source on this PC: a package name with its architecture (`libc6:amd64`), a registry key
    /// (`HKLM64\{GUID}`, `HKU\<sid>\Zoom`), a bundle path. A report's items are unique by (`source`, `id`).
    pub id: String,
    /// The product's name as shown to people (`7-Zip 23.01 (x64)`, `openssl`).
    pub name: String,
    pub version: String,
    pub publisher: String,
    /// `YYYY-MM-DD` where the source says, else empty.
    pub install_date: String,
    pub location: String,
    /// `x64`, `x86`, `amd64`, `all`, ...; as the source says.
    pub arch: String,
    /// `machine`, or `user:<name or SID>` for a per-user install.
    pub scope: String,
}

/// What the PC is doing now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Status {
    pub boot_time: Option<DateTime<Utc>>,
    pub users: Vec<LoggedOnUser>,
    pub volumes: Vec<VolumeUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct LoggedOnUser {
    pub name: String,
    /// `console`, `rdp`, `tty1`, `pts/0`, ...
    pub session: String,
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct VolumeUsage {
    pub mount: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What [`Bounded::bound`] had to cut from a report, so the caller can count and log it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cuts {
    /// List entries dropped over their limit.
    pub items: u64,
    /// Text fields shortened or cleaned of control characters.
    pub fields: u64,
}

impl Cuts {
    pub fn any(&self) -> bool {
        self.items > 0 || self.fields > 0
    }
}

/// Content that can be cut down to the limits above.
pub trait Bounded {
    /// Cuts every list and text field to its limit, removes control characters from text, and says what it cut.
    fn bound(&mut self) -> Cuts;
}

/// Cuts `text` to `max` characters and drops control characters (a NUL cannot be stored in PostgreSQL text, and
/// none belongs in a name); counts a change in `cuts`.
fn text(value: &mut String, max: usize, cuts: &mut Cuts) {
    let clean = value.chars().count() <= max && !value.chars().any(char::is_control);
    if clean {
        return;
    }
    *value = value.chars().filter(|c| !c.is_control()).take(max).collect();
    cuts.fields += 1;
}

fn list<T>(items: &mut Vec<T>, max: usize, cuts: &mut Cuts) {
    if items.len() > max {
        cuts.items += (items.len() - max) as u64;
        items.truncate(max);
    }
}

/// Bounds each named text field of `$value` to `$max` characters.
macro_rules! texts {
    ($cuts:expr, $max:expr; $($field:expr),+ $(,)?) => {
        $( text(&mut $field, $max, $cuts); )+
    };
}

/// Bounds a report's `errors`: at most [`MAX_LIST_ITEMS`] of them, each at most [`MAX_PATH_CHARS`] characters.
pub fn bound_errors(errors: &mut Vec<String>) -> Cuts {
    let mut cuts = Cuts::default();
    list(errors, MAX_LIST_ITEMS, &mut cuts);
    for error in errors.iter_mut() {
        text(error, MAX_PATH_CHARS, &mut cuts);
    }
    cuts
}

impl Bounded for Hardware {
    fn bound(&mut self) -> Cuts {
        let mut cuts = Cuts::default();
        let c = &mut cuts;
        let os = &mut self.os;
        texts!(c, MAX_TEXT_CHARS; os.name, os.version, os.build, os.edition, os.arch);
        texts!(c, MAX_TEXT_CHARS; self.hostname, self.domain, self.workgroup, self.timezone);
        let system = &mut self.system;
        texts!(c, MAX_TEXT_CHARS; system.manufacturer, system.model, system.serial, system.uuid);
        let bios = &mut self.bios;
        texts!(c, MAX_TEXT_CHARS; bios.vendor, bios.version, bios.date, bios.firmware);
        texts!(c, MAX_TEXT_CHARS; self.cpu.model, self.cpu.vendor);
        list(&mut self.memory.modules, MAX_LIST_ITEMS, c);
        for m in &mut self.memory.modules {
            texts!(c, MAX_TEXT_CHARS; m.slot, m.manufacturer, m.part_number);
        }
        list(&mut self.disks, MAX_LIST_ITEMS, c);
        for d in &mut self.disks {
            texts!(c, MAX_TEXT_CHARS; d.name, d.model, d.serial, d.media, d.bus);
        }
        list(&mut self.volumes, MAX_LIST_ITEMS, c);
        for v in &mut self.volumes {
            texts!(c, MAX_PATH_CHARS; v.mount);
            texts!(c, MAX_TEXT_CHARS; v.file_system, v.label);
        }
        list(&mut self.network, MAX_LIST_ITEMS, c);
        for n in &mut self.network {
            texts!(c, MAX_TEXT_CHARS; n.name, n.mac);
            for addresses in [&mut n.addresses, &mut n.gateways, &mut n.dns_servers] {
                list(addresses, MAX_ADDRESSES, c);
                for a in addresses.iter_mut() {
                    text(a, MAX_TEXT_CHARS, c);
                }
            }
        }
        list(&mut self.gpus, MAX_LIST_ITEMS, c);
        for g in &mut self.gpus {
            texts!(c, MAX_TEXT_CHARS; g.name, g.vendor, g.driver_version);
        }
        cuts
    }
}

impl Bounded for SoftwareList {
    fn bound(&mut self) -> Cuts {
        let mut cuts = Cuts::default();
        let c = &mut cuts;
        list(&mut self.items, MAX_SOFTWARE_ITEMS, c);
        self.dropped = self.dropped.saturating_add(c.items);
        for names in [&mut self.failed_sources, &mut self.unread_scopes] {
            list(names, MAX_LIST_ITEMS, c);
            for name in names.iter_mut() {
                text(name, MAX_TEXT_CHARS, c);
            }
        }
        for s in &mut self.items {
            texts!(c, MAX_TEXT_CHARS; s.source, s.name, s.version, s.publisher, s.install_date, s.arch, s.scope);
            // The id is part of the backend's key and of list cursors: a name's length, not a path's.
            texts!(c, MAX_TEXT_CHARS; s.id);
            texts!(c, MAX_PATH_CHARS; s.location);
        }
        cuts
    }
}

impl SoftwareList {
    /// Sorts the items by (`source`, `id`) and keeps the first of any (`source`, `id`) seen twice, so equal content
    /// hashes equal and the backend can key rows by it. Returns how many duplicates went.
    pub fn normalise(&mut self) -> u64 {
        self.items.sort();
        let before = self.items.len();
        self.items.dedup_by(|b, a| a.source == b.source && a.id == b.id);
        (before - self.items.len()) as u64
    }
}

impl Bounded for Status {
    fn bound(&mut self) -> Cuts {
        let mut cuts = Cuts::default();
        let c = &mut cuts;
        list(&mut self.users, MAX_LIST_ITEMS, c);
        for u in &mut self.users {
            texts!(c, MAX_TEXT_CHARS; u.name, u.session);
        }
        list(&mut self.volumes, MAX_LIST_ITEMS, c);
        for v in &mut self.volumes {
            texts!(c, MAX_PATH_CHARS; v.mount);
        }
        cuts
    }
}

/// `agents.<pc>.inventory`: core request/reply, asking the agent to collect and report now. The agent answers
/// with [`RefreshAck`] at once and reports in the background.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RefreshRequest {
    /// Report every kind, changed or not (otherwise only what changed is sent).
    pub full: bool,
}

/// The agent's answer to a [`RefreshRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshAck {
    pub pc_id: PcId,
    /// False when inventory is disabled in the agent's config (`[inventory] enabled = false`).
    #[serde(default)]
    pub accepted: bool,
    /// A collection was already under way; this request joins it (a full one is done after it when asked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_running: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounding_cuts_lists_and_text_and_counts_what_it_cut() {
        let mut list = SoftwareList {
            items: (0..MAX_SOFTWARE_ITEMS + 5)
                .map(|i| Software { source: "dpkg".into(), id: format!("p{i}"), ..Default::default() })
                .collect(),
            dropped: 0,
            failed_sources: Vec::new(),
            unread_scopes: Vec::new(),
        };
        list.items[0].name = format!("<b>{}</b>\u{0}\u{7}", "x".repeat(1000));
        let cuts = list.bound();
        assert_eq!(list.items.len(), MAX_SOFTWARE_ITEMS);
        assert_eq!(list.dropped, 5);
        assert_eq!(cuts, Cuts { items: 5, fields: 1 });
        assert_eq!(list.items[0].name.chars().count(), MAX_TEXT_CHARS);
        assert!(list.items[0].name.starts_with("<b>"), "markup is text, kept as it came");
        assert!(!list.items[0].name.contains('\u{0}'));

        let mut clean = Software { name: "ok".into(), ..Default::default() };
        let before = clean.clone();
        assert!(!SoftwareList { items: vec![clean.clone()], ..Default::default() }.bound().any());
        clean.name = "a\u{0}b".into();
        let mut one = SoftwareList { items: vec![clean], ..Default::default() };
        one.bound();
        assert_eq!(one.items[0].name, "ab");
        assert_ne!(one.items[0], before);
    }

    #[test]
    fn bounding_cuts_multibyte_text_on_character_boundaries() {
        let mut hw = Hardware { hostname: "奏".repeat(MAX_TEXT_CHARS + 10), ..Default::default() };
        hw.network.push(NetworkAdapter { addresses: vec!["::1/128".into(); 100], ..Default::default() });
        let cuts = hw.bound();
        assert_eq!(hw.hostname.chars().count(), MAX_TEXT_CHARS);
        assert_eq!(hw.network[0].addresses.len(), MAX_ADDRESSES);
        assert_eq!(cuts.items, 100 - MAX_ADDRESSES as u64);
    }

    #[test]
    fn normalising_sorts_and_drops_duplicate_keys() {
        let item = |source: &str, id: &str, version: &str| Software {
            source: source.into(),
            id: id.into(),
            version: version.into(),
            ..Default::default()
        };
        let mut list = SoftwareList {
            items: vec![item("rpm", "b", "1"), item("dpkg", "z", "1"), item("rpm", "b", "2"), item("dpkg", "a", "1")],
            dropped: 0,
            failed_sources: Vec::new(),
            unread_scopes: Vec::new(),
        };
        assert_eq!(list.normalise(), 1);
        let keys: Vec<_> = list.items.iter().map(|s| (s.source.as_str(), s.id.as_str())).collect();
        assert_eq!(keys, [("dpkg", "a"), ("dpkg", "z"), ("rpm", "b")]);
    }

    #[test]
    fn reports_decode_leniently() {
        let raw = r#"{"pc_id":"pc-1","kind":"software","collected_at":"2026-12-01T00:00:00Z",
            "data":{"items":[{"source":"dpkg","id":"x:amd64","name":"x","version":"1","new_field":3}]},"extra":1}"#;
        let report: InventoryReport<SoftwareList> = serde_json::from_str(raw).unwrap();
        assert_eq!(report.data.items[0].version, "1");
        assert_eq!(report.hash, "");
        let wrong: Result<InventoryReport<SoftwareList>, _> =
            serde_json::from_str(r#"{"pc_id":"pc-1","kind":"software","collected_at":"x","data":{"items":3}}"#);
        assert!(wrong.is_err());
    }
}
