//! macOS inventory, the pure half: what `sysctl`, `sw_vers`, `system_profiler -json` and `who` print and what an
//! app bundle's `Info.plist` holds, converted into the wire types. Compiled and tested on every OS against
//! recorded samples; `crate::platform::inventory_macos` only runs the programs and reads the files.
//!
//! `system_profiler`'s JSON is read as a loose tree rather than into typed structs: its keys differ between Intel
//! and Apple silicon Macs and between releases, and a missing or oddly typed key must cost that one field.

use std::collections::BTreeMap;
use std::io::Cursor;

use chrono::{DateTime, Datelike as _, FixedOffset, NaiveDateTime, TimeDelta, TimeZone as _, Utc};
use kanade_shared::inventory::{
    BiosInfo, CpuInfo, Disk, Gpu, Hardware, LoggedOnUser, MemoryInfo, MemoryModule, NetworkAdapter, OsInfo, Software,
    Status, SystemInfo, Volume, VolumeUsage,
};
use serde_json::Value;

use super::windows::address_with_prefix;

/// The `sysctl` keys the collector asks for, one call each: a key this Mac does not have (`hw.cpufrequency_max`
/// on Apple silicon, `machdep.cpu.vendor` too) fails only its own call.
pub const SYSCTL_KEYS: &[&str] = &[
    "kern.hostname",
    "kern.boottime",
    "hw.memsize",
    "hw.packages",
    "hw.physicalcpu",
    "hw.logicalcpu",
    "hw.cpufrequency_max",
    "machdep.cpu.brand_string",
    "machdep.cpu.vendor",
];

/// The `system_profiler` data types the hardware report reads, asked for in one `-json` call.
pub const PROFILER_TYPES: &[&str] =
    &["SPHardwareDataType", "SPMemoryDataType", "SPStorageDataType", "SPDisplaysDataType", "SPNetworkDataType"];

/// `sysctl <key>...` output: `name: value` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sysctl(BTreeMap<String, String>);

impl Sysctl {
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter_map(|line| line.split_once(':'))
                .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                .filter(|(key, _)| !key.is_empty())
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }

    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key).parse().ok()
    }

    /// `kern.boottime: { sec = 1700000000, usec = 123456 } Tue Nov 14 22:13:20 2023`.
    pub fn boot_time(&self) -> Option<DateTime<Utc>> {
        let text = self.get("kern.boottime");
        let field = |name: &str| -> Option<i64> {
            let (_, rest) = text.split_once(&format!("{name} ="))?;
            let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let micros = u32::try_from(field("usec").unwrap_or(0)).ok().filter(|u| *u < 1_000_000)?;
        DateTime::from_timestamp(field("sec")?, micros * 1000)
    }
}

/// `sw_vers` output: `ProductName:\tmacOS`, `ProductVersion:\t14.5`, `BuildVersion:\t23F79`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwVers {
    pub name: String,
    pub version: String,
    pub build: String,
}

impl SwVers {
    pub fn parse(text: &str) -> Self {
        let lines = Sysctl::parse(text);
        Self {
            name: lines.get("ProductName").to_owned(),
            version: lines.get("ProductVersion").to_owned(),
            build: lines.get("BuildVersion").to_owned(),
        }
    }
}

/// `system_profiler -json ...` output: `{"SPHardwareDataType": [{...}], ...}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemProfiler(Value);

impl SystemProfiler {
    /// Any JSON is accepted; what is not the expected shape reads as no data.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text).map(Self)
    }

    fn items(&self, data_type: &str) -> &[Value] {
        self.0.get(data_type).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A value as text: strings trimmed, numbers printed, anything else empty.
fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A value as a whole number, from a number or a numeric string.
fn number(value: &Value, key: &str) -> Option<u64> {
    match value.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A list of texts, from an array or a single string.
fn texts(value: &Value, key: &str) -> Vec<String> {
    match value.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(s.trim().to_owned()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .collect(),
        Some(_) => Some(text(value, key)).filter(|s| !s.is_empty()).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A size as `system_profiler` prints it (`16 GB`, `1536 MB`, `1.5 TB`) in bytes. Apple counts memory in binary
/// units, so `16 GB` of RAM is 16 GiB.
pub fn size_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',')).unwrap_or(text.len());
    let amount: f64 = text[..split].replace(',', ".").parse().ok()?;
    let unit: u64 = match text[split..].trim().to_ascii_uppercase().as_str() {
        "" | "B" | "BYTES" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    let bytes = amount * unit as f64;
    // 2^64: anything at or past it is not a size.
    (bytes.is_finite() && (0.0..18_446_744_073_709_551_616.0).contains(&bytes)).then_some(bytes as u64)
}

/// A speed as `system_profiler` prints it (`2.3 GHz`, `2667 MHz`) in MHz.
fn megahertz(text: &str) -> Option<u32> {
    let (amount, unit) = text.trim().split_once(' ')?;
    let amount: f64 = amount.replace(',', ".").parse().ok()?;
    let mhz = match unit.trim().to_ascii_uppercase().as_str() {
        "GHZ" => amount * 1000.0,
        "MHZ" => amount,
        _ => return None,
    };
    (mhz.is_finite() && (0.0..4_294_967_295.0).contains(&mhz)).then_some(mhz.round() as u32)
}

/// The time zone from where `/etc/localtime` links to (`/var/db/timezone/zoneinfo/Europe/Berlin`): its IANA name.
pub fn timezone_from_localtime_link(target: &str) -> String {
    let Some((_, name)) = target.rsplit_once("zoneinfo/") else { return String::new() };
    let valid = !name.is_empty()
        && !name.contains("..")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    if valid { name.to_owned() } else { String::new() }
}

/// The hardware report from `sysctl`, `sw_vers` and `system_profiler`'s output, and where `/etc/localtime` links.
/// What a program did not print leaves its fields empty.
pub fn hardware(
    sysctl: &Sysctl,
    sw_vers: &SwVers,
    profiler: &SystemProfiler,
    localtime_link: Option<&str>,
) -> Hardware {
    let overview = profiler.items("SPHardwareDataType").first().unwrap_or(&Value::Null);
    let chip = text(overview, "chip_type");
    let intel_cpu = text(overview, "cpu_type");
    let brand = sysctl.get("machdep.cpu.brand_string");
    let apple_silicon = !chip.is_empty() || brand.starts_with("Apple");
    let intel = !apple_silicon && (!intel_cpu.is_empty() || brand.contains("Intel"));
    let apple = if overview.is_object() { "Apple Inc." } else { "" };
    let machine = [text(overview, "machine_name"), text(overview, "machine_model")];
    Hardware {
        os: OsInfo {
            name: sw_vers.name.clone(),
            version: sw_vers.version.clone(),
            build: sw_vers.build.clone(),
            edition: String::new(),
            arch: if apple_silicon {
                "aarch64"
            } else if intel {
                "x86_64"
            } else {
                ""
            }
            .to_owned(),
        },
        hostname: sysctl.get("kern.hostname").to_owned(),
        // Binding a Mac to a directory is rare and lives in `dsconfigad`, not in anything read here.
        domain: String::new(),
        workgroup: String::new(),
        system: SystemInfo {
            manufacturer: apple.to_owned(),
            // `MacBook Pro (MacBookPro18,3)`: the name people know and the identifier that tells the models apart.
            model: match machine {
                [name, id] if !name.is_empty() && !id.is_empty() => format!("{name} ({id})"),
                [name, id] => name + &id,
            },
            serial: text(overview, "serial_number"),
            uuid: text(overview, "platform_UUID"),
        },
        bios: BiosInfo {
            vendor: apple.to_owned(),
            // The Boot ROM (Intel) or iBoot (Apple silicon) version; neither is dated, and iBoot is neither UEFI
            // nor BIOS, so both stay empty.
            version: text(overview, "boot_rom_version"),
            date: String::new(),
            firmware: String::new(),
        },
        cpu: CpuInfo {
            model: [brand.to_owned(), chip.clone(), intel_cpu]
                .into_iter()
                .find(|m| !m.is_empty() && !m.starts_with("VirtualApple"))
                .unwrap_or_default(),
            vendor: Some(sysctl.get("machdep.cpu.vendor").to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| if apple_silicon { "Apple".to_owned() } else { String::new() }),
            sockets: sysctl
                .number("hw.packages")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(u32::from(sysctl.number("hw.physicalcpu").is_some())),
            cores: sysctl.number("hw.physicalcpu").and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            threads: sysctl.number("hw.logicalcpu").and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            max_mhz: sysctl
                .number("hw.cpufrequency_max")
                .and_then(|hz| u32::try_from(hz / 1_000_000).ok())
                .or_else(|| megahertz(&text(overview, "current_processor_speed")))
                .unwrap_or(0),
        },
        memory: MemoryInfo {
            total_bytes: sysctl.number("hw.memsize").unwrap_or(0),
            modules: profiler.items("SPMemoryDataType").iter().flat_map(memory_modules).collect(),
        },
        disks: disks(profiler.items("SPStorageDataType")),
        volumes: profiler
            .items("SPStorageDataType")
            .iter()
            .filter(|v| !text(v, "mount_point").is_empty())
            .map(|v| Volume {
                mount: text(v, "mount_point"),
                file_system: text(v, "file_system"),
                size_bytes: number(v, "size_in_bytes").unwrap_or(0),
                label: text(v, "_name"),
            })
            .collect(),
        network: profiler.items("SPNetworkDataType").iter().map(network_service).collect(),
        gpus: profiler.items("SPDisplaysDataType").iter().map(gpu).collect(),
        timezone: localtime_link.map(timezone_from_localtime_link).unwrap_or_default(),
    }
}

/// Intel Macs list their slots under `_items`; Apple silicon has one unified memory entry instead, its size under
/// the data type's own name.
fn memory_modules(entry: &Value) -> Vec<MemoryModule> {
    match entry.get("_items").and_then(Value::as_array) {
        Some(slots) => slots
            .iter()
            .filter_map(|slot| {
                Some(MemoryModule {
                    slot: text(slot, "_name"),
                    // An empty slot's size is `empty`, which is no size.
                    size_bytes: size_bytes(&text(slot, "dimm_size"))?,
                    speed_mts: megahertz(&text(slot, "dimm_speed")).unwrap_or(0),
                    manufacturer: text(slot, "dimm_manufacturer"),
                    part_number: text(slot, "dimm_part_number"),
                })
            })
            .collect(),
        None => size_bytes(&text(entry, "SPMemoryDataType"))
            .map(|size| MemoryModule {
                slot: String::new(),
                size_bytes: size,
                speed_mts: 0,
                manufacturer: text(entry, "dimm_manufacturer"),
                part_number: String::new(),
            })
            .into_iter()
            .collect(),
    }
}

/// The physical drives behind the volumes, once each. `SPStorageDataType` lists volumes, each naming its drive,
/// but not the drive's size: that stays 0.
fn disks(volumes: &[Value]) -> Vec<Disk> {
    let mut disks: Vec<Disk> = Vec::new();
    for drive in volumes.iter().filter_map(|v| v.get("physical_drive")) {
        let name = text(drive, "device_name");
        if name.is_empty() || disks.iter().any(|d| d.name == name) {
            continue;
        }
        let bus = match text(drive, "protocol").to_ascii_lowercase().as_str() {
            "pci-express" | "pci" => "pcie".to_owned(),
            "nvmexpress" => "nvme".to_owned(),
            other => other.replace(' ', "-"),
        };
        disks.push(Disk {
            model: name.clone(),
            name,
            serial: String::new(),
            size_bytes: 0,
            media: match text(drive, "medium_type").as_str() {
                "ssd" => "ssd".into(),
                "rotational" => "hdd".into(),
                _ => String::new(),
            },
            bus,
        });
    }
    disks
}

/// One network service (`Wi-Fi`, `Thunderbolt Bridge`) with its interface, as `Wi-Fi (en0)`.
fn network_service(service: &Value) -> NetworkAdapter {
    let (name, interface) = (text(service, "_name"), text(service, "interface"));
    let ipv4 = service.get("IPv4").unwrap_or(&Value::Null);
    let ipv6 = service.get("IPv6").unwrap_or(&Value::Null);
    let pair = |family: &Value, prefixes: Vec<String>| -> Vec<String> {
        texts(family, "Addresses")
            .iter()
            .enumerate()
            .map(|(i, address)| address_with_prefix(address, prefixes.get(i).map(String::as_str)))
            .collect()
    };
    let mut addresses = pair(ipv4, texts(ipv4, "SubnetMasks"));
    addresses.extend(pair(ipv6, texts(ipv6, "PrefixLength")));
    NetworkAdapter {
        name: if interface.is_empty() { name } else { format!("{name} ({interface})") },
        mac: service.get("Ethernet").map(|e| text(e, "MAC Address")).unwrap_or_default().to_ascii_lowercase(),
        addresses,
        dhcp: match text(ipv4, "ConfigMethod").as_str() {
            "DHCP" | "BOOTP" => Some(true),
            "Manual" | "INFORM" => Some(false),
            _ => None,
        },
        gateways: [text(ipv4, "Router"), text(ipv6, "Router")].into_iter().filter(|r| !r.is_empty()).collect(),
        dns_servers: service.get("DNS").map(|d| texts(d, "ServerAddresses")).unwrap_or_default(),
    }
}

fn gpu(entry: &Value) -> Gpu {
    let vendor = text(entry, "spdisplays_vendor");
    let vendor = vendor.strip_prefix("sppci_vendor_").unwrap_or(&vendor);
    Gpu {
        name: Some(text(entry, "sppci_model")).filter(|n| !n.is_empty()).unwrap_or_else(|| text(entry, "_name")),
        vendor: match vendor.to_ascii_lowercase().as_str() {
            "apple" => "Apple".to_owned(),
            "amd" | "ati" => "AMD".to_owned(),
            "nvidia" => "NVIDIA".to_owned(),
            "intel" => "Intel".to_owned(),
            _ => vendor.to_owned(),
        },
        // macOS ships its GPU drivers with the OS: there is no version of their own to report.
        driver_version: String::new(),
        // Dedicated memory on Intel Macs; Apple silicon shares the system's and reports none.
        memory_bytes: ["spdisplays_vram", "_spdisplays_vram", "spdisplays_vram_shared"]
            .iter()
            .find_map(|key| size_bytes(&text(entry, key)))
            .unwrap_or(0),
    }
}

/// What the Mac is doing now: boot time from `kern.boottime`, users from `who` (`None` when it could not run), and
/// each mounted volume's free space. `now` and `offset` (the Mac's UTC offset) date `who`'s year-less times.
pub fn status(
    sysctl: &Sysctl,
    who: Option<&str>,
    profiler: &SystemProfiler,
    now: DateTime<Utc>,
    offset: FixedOffset,
) -> Status {
    Status {
        boot_time: sysctl.boot_time(),
        users: who.map(|text| parse_who(text, now, offset)).unwrap_or_default(),
        volumes: profiler
            .items("SPStorageDataType")
            .iter()
            .filter(|v| !text(v, "mount_point").is_empty())
            .map(|v| VolumeUsage {
                mount: text(v, "mount_point"),
                size_bytes: number(v, "size_in_bytes").unwrap_or(0),
                free_bytes: number(v, "free_space_in_bytes").unwrap_or(0),
            })
            .collect(),
    }
}

/// `who` on macOS: `alice    console  Jan 15 08:30`, `bob      ttys001  Jan  5 10:11 (192.168.1.5)`. The time has
/// no year: it is the current one, or the last one when that would put the logon in the future.
pub fn parse_who(text: &str, now: DateTime<Utc>, offset: FixedOffset) -> Vec<LoggedOnUser> {
    let year = now.with_timezone(&offset).year();
    text.lines()
        .filter_map(|line| {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            let (name, session) = (tokens.first()?, tokens.get(1)?);
            let when = tokens.get(2..5).map(|t| t.join(" "));
            let at = |year: i32| {
                let naive = NaiveDateTime::parse_from_str(&format!("{year} {}", when.as_deref()?), "%Y %b %d %H:%M");
                Some(offset.from_local_datetime(&naive.ok()?).single()?.with_timezone(&Utc))
            };
            let since = at(year).and_then(|t| if t > now + TimeDelta::days(1) { at(year - 1) } else { Some(t) });
            Some(LoggedOnUser { name: (*name).to_owned(), session: (*session).to_owned(), since })
        })
        .collect()
}

/// Whether a directory entry is an app bundle: `Slack.app`, not a hidden `.Foo.app`.
pub fn is_app_bundle(file_name: &str) -> bool {
    !file_name.starts_with('.') && file_name.len() > 4 && file_name.to_ascii_lowercase().ends_with(".app")
}

/// The scope of apps under `/Users/<name>/Applications`: `user:<name>`; `/Users/Shared` is everyone's, and hidden
/// entries (`.localized`) are no home.
pub fn home_scope(name: &str) -> Option<String> {
    match name {
        "" => None,
        n if n.starts_with('.') => None,
        "Shared" => Some("machine".to_owned()),
        n => Some(format!("user:{n}")),
    }
}

/// Why an `Info.plist` gave no [`Software`] item.
#[derive(Debug, thiserror::Error)]
pub enum InfoPlistError {
    #[error("cannot parse `{path}`")]
    Parse {
        path: String,
        #[source]
        source: plist::Error,
    },
    #[error("`{path}` is not a dictionary")]
    NotDictionary { path: String },
    /// Refused before parsing, because parsing it could exhaust the agent (see [`plist_shape_is_safe`]).
    #[error("`{path}` is not parsed: {reason}")]
    Refused { path: String, reason: &'static str },
}

/// The deepest nesting of arrays and dictionaries parsed. Real `Info.plist` files nest five or six levels.
const MAX_PLIST_DEPTH: usize = 32;
/// The most objects a binary plist may expand to (the parser copies an object once for every reference to it).
const MAX_PLIST_OBJECTS: u64 = 200_000;

/// Whether `bytes` can be handed to the `plist` crate without risk to the agent. The crate parses without
/// recursion but builds a tree that it drops recursively, so a file nested a hundred thousand levels deep (an
/// easy 1 MiB for any user to leave in `~/Applications`) would overflow the stack and abort the process; and it
/// copies a binary plist's shared objects once per reference, so a few kilobytes of objects referring twice to
/// the next can expand without end. Both are checked here without building anything.
pub fn plist_shape_is_safe(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.starts_with(b"bplist") {
        return binary_plist_shape(bytes);
    }
    // UTF-16 or UTF-32 text would hide its tags from the count below; bundles' plists are UTF-8.
    if bytes.contains(&0) {
        return Err("text plists must be UTF-8");
    }
    if text_plist_depth(bytes) > MAX_PLIST_DEPTH {
        return Err("nested too deeply");
    }
    Ok(())
}

/// The deepest nesting in an XML or ASCII (OpenStep) plist, counted generously: every `<array>` and `<dict>` tag
/// and every `(` and `{` counts, wherever it is. Brackets in string values may make a file look deeper than it is,
/// never shallower.
fn text_plist_depth(bytes: &[u8]) -> usize {
    let (mut tags, mut brackets, mut deepest) = (0usize, 0usize, 0usize);
    for (i, byte) in bytes.iter().enumerate() {
        match byte {
            b'(' | b'{' => brackets += 1,
            b')' | b'}' => brackets = brackets.saturating_sub(1),
            b'<' => {
                let rest = &bytes[i + 1..];
                let closing = rest.first() == Some(&b'/');
                let name: Vec<u8> =
                    rest[usize::from(closing)..].iter().take_while(|b| b.is_ascii_alphanumeric()).copied().collect();
                if name == b"array" || name == b"dict" {
                    // The tag ends at its `>`; stopping at the next `<` too keeps the scan linear on garbage.
                    let end = rest.iter().position(|b| *b == b'>' || *b == b'<');
                    let empty = end.is_some_and(|end| end > 0 && rest[end] == b'>' && rest[end - 1] == b'/');
                    if closing {
                        tags = tags.saturating_sub(1);
                    } else if !empty {
                        tags += 1;
                    }
                }
            }
            _ => {}
        }
        deepest = deepest.max(tags).max(brackets);
    }
    deepest
}

/// Checks a binary plist's object graph from its trailer and offset table: the containers reachable from the top
/// object must nest at most [`MAX_PLIST_DEPTH`] deep, form no cycle, and expand to at most [`MAX_PLIST_OBJECTS`].
/// Each object is visited once; anything malformed is refused (the parser would reject it too).
fn binary_plist_shape(bytes: &[u8]) -> Result<(), &'static str> {
    const MALFORMED: &str = "malformed binary plist";
    let big_endian = |b: &[u8]| b.iter().fold(0u64, |n, byte| (n << 8) | u64::from(*byte));
    let index = |b: &[u8]| usize::try_from(big_endian(b)).ok();
    let body_end = bytes.len().checked_sub(32).filter(|end| *end >= 8).ok_or(MALFORMED)?;
    let trailer = &bytes[body_end..];
    let (offset_size, ref_size) = (usize::from(trailer[6]), usize::from(trailer[7]));
    if !(1..=8).contains(&offset_size) || !(1..=8).contains(&ref_size) {
        return Err(MALFORMED);
    }
    let (count, top, table) = (index(&trailer[8..16]), index(&trailer[16..24]), index(&trailer[24..32]));
    let (Some(count), Some(top), Some(table)) = (count, top, table) else { return Err(MALFORMED) };
    let table_end = count.checked_mul(offset_size).and_then(|len| table.checked_add(len));
    if top >= count || table_end.is_none_or(|end| end > body_end) {
        return Err(MALFORMED);
    }
    if count as u64 > MAX_PLIST_OBJECTS {
        return Err("too many objects");
    }
    // The objects a container refers to (a dictionary's keys, then its values); none for anything else.
    let references = |object: usize| -> Option<Vec<usize>> {
        let at = index(&bytes[table + object * offset_size..][..offset_size]).filter(|at| *at < body_end)?;
        let marker = bytes[at];
        let per_entry = match marker >> 4 {
            0xA | 0xC => 1,
            0xD => 2,
            _ => return Some(Vec::new()),
        };
        let (entries, start) = if marker & 0x0f == 0x0f {
            // The count follows as an integer object of 2^n bytes, read the way the parser reads it.
            let width = 1usize << (bytes.get(at + 1)? & 0x03);
            (index(bytes.get(at + 2..)?.get(..width)?)?, at + 2 + width)
        } else {
            (usize::from(marker & 0x0f), at + 1)
        };
        let len = entries.checked_mul(per_entry)?.checked_mul(ref_size)?;
        let area = bytes.get(start..start.checked_add(len).filter(|end| *end <= body_end)?)?;
        area.chunks_exact(ref_size).map(|r| index(r).filter(|r| *r < count)).collect()
    };
    const UNSEEN: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![UNSEEN; count];
    let mut height = vec![0u8; count];
    let mut expanded = vec![0u64; count];
    // Depth-first: each frame is an object, the objects it refers to, and how many of those are done.
    let mut stack = vec![(top, references(top).ok_or(MALFORMED)?, 0usize)];
    state[top] = OPEN;
    while let Some(frame) = stack.last_mut() {
        let next = frame.1.get(frame.2).copied();
        frame.2 += 1;
        match next.map(|child| (child, state[child])) {
            Some((_, OPEN)) => return Err("a binary plist object contains itself"),
            Some((child, DONE)) => {
                if stack.len() + usize::from(height[child]) > MAX_PLIST_DEPTH {
                    return Err("nested too deeply");
                }
            }
            Some((child, _)) => {
                if stack.len() >= MAX_PLIST_DEPTH {
                    return Err("nested too deeply");
                }
                let children = references(child).ok_or(MALFORMED)?;
                state[child] = OPEN;
                stack.push((child, children, 0));
            }
            None => {
                let Some((object, children, _)) = stack.pop() else { break };
                height[object] = 1 + children.iter().map(|c| height[*c]).max().unwrap_or(0);
                expanded[object] = children.iter().fold(1u64, |sum, c| sum.saturating_add(expanded[*c]));
                if expanded[object] > MAX_PLIST_OBJECTS {
                    return Err("expands to too many objects");
                }
                state[object] = DONE;
            }
        }
    }
    Ok(())
}

/// An app bundle at `bundle_path` (`/Applications/Slack.app`, the id) from its `Contents/Info.plist` (XML or
/// binary): the name people see (`CFBundleDisplayName`, else `CFBundleName`, else the folder's), the marketing
/// version (`CFBundleShortVersionString`, else the build number `CFBundleVersion`), and `modified`, the bundle's
/// modification time, as the install date: it is when the app was installed or last updated. Bundles carry no
/// publisher and no architecture worth reporting (universal binaries run natively on both), so both stay empty.
pub fn software_from_info_plist(
    bytes: &[u8],
    bundle_path: &str,
    scope: &str,
    modified: Option<DateTime<Utc>>,
) -> Result<Software, InfoPlistError> {
    plist_shape_is_safe(bytes).map_err(|reason| InfoPlistError::Refused { path: bundle_path.to_owned(), reason })?;
    let value = plist::Value::from_reader(Cursor::new(bytes))
        .map_err(|source| InfoPlistError::Parse { path: bundle_path.to_owned(), source })?;
    let dict = value.as_dictionary().ok_or_else(|| InfoPlistError::NotDictionary { path: bundle_path.to_owned() })?;
    let field = |key: &str| -> String {
        match dict.get(key) {
            Some(plist::Value::String(s)) => s.trim().to_owned(),
            Some(plist::Value::Integer(n)) => n.to_string(),
            Some(plist::Value::Real(n)) if n.is_finite() => n.to_string(),
            _ => String::new(),
        }
    };
    let first = |keys: &[&str]| keys.iter().map(|k| field(k)).find(|v| !v.is_empty()).unwrap_or_default();
    let folder = bundle_path.trim_end_matches('/').rsplit('/').next().unwrap_or(bundle_path);
    let folder = folder.get(..folder.len().saturating_sub(4)).filter(|_| is_app_bundle(folder)).unwrap_or(folder);
    Ok(Software {
        source: "app".to_owned(),
        id: bundle_path.to_owned(),
        name: Some(first(&["CFBundleDisplayName", "CFBundleName"]))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| folder.to_owned()),
        version: first(&["CFBundleShortVersionString", "CFBundleVersion"]),
        publisher: String::new(),
        install_date: modified.map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default(),
        location: bundle_path.to_owned(),
        arch: String::new(),
        scope: scope.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1_PROFILER: &str =
        include_str!("../../../tests/fixtures/inventory/macos/system_profiler-macbookpro18-3.json");
    const INTEL_PROFILER: &str =
        include_str!("../../../tests/fixtures/inventory/macos/system_profiler-macbookpro16-1.json");
    const M1_SYSCTL: &str = include_str!("../../../tests/fixtures/inventory/macos/sysctl-macbookpro18-3.txt");
    const INTEL_SYSCTL: &str = include_str!("../../../tests/fixtures/inventory/macos/sysctl-macbookpro16-1.txt");
    const SW_VERS: &str = include_str!("../../../tests/fixtures/inventory/macos/sw_vers.txt");
    const WHO: &str = include_str!("../../../tests/fixtures/inventory/macos/who.txt");
    const SLACK_PLIST: &[u8] = include_bytes!("../../../tests/fixtures/inventory/macos/Slack-Info.plist");

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn plus_one_hour() -> FixedOffset {
        FixedOffset::east_opt(3600).unwrap()
    }

    #[test]
    fn an_apple_silicon_macbook_converts_to_hardware() {
        let profiler = SystemProfiler::parse(M1_PROFILER).unwrap();
        let hw = hardware(
            &Sysctl::parse(M1_SYSCTL),
            &SwVers::parse(SW_VERS),
            &profiler,
            Some("/var/db/timezone/zoneinfo/Europe/Berlin"),
        );
        assert_eq!(
            hw.os,
            OsInfo {
                name: "macOS".into(),
                version: "14.5".into(),
                build: "23F79".into(),
                edition: "".into(),
                arch: "aarch64".into()
            }
        );
        assert_eq!(hw.hostname, "Alices-MacBook-Pro.local");
        assert_eq!(
            hw.system,
            SystemInfo {
                manufacturer: "Apple Inc.".into(),
                model: "MacBook Pro (MacBookPro18,3)".into(),
                serial: "C02G71ABQ6L4".into(),
                uuid: "5B3A1C2D-8E9F-5A6B-9C0D-1E2F3A4B5C6D".into(),
            }
        );
        assert_eq!(hw.bios.version, "10151.121.1");
        assert_eq!(
            hw.cpu,
            CpuInfo {
                model: "Apple M1 Pro".into(),
                vendor: "Apple".into(),
                sockets: 1,
                cores: 10,
                threads: 10,
                max_mhz: 0
            }
        );
        assert_eq!(
            hw.memory,
            MemoryInfo {
                total_bytes: 17_179_869_184,
                modules: vec![MemoryModule {
                    slot: "".into(),
                    size_bytes: 17_179_869_184,
                    speed_mts: 0,
                    manufacturer: "Hynix".into(),
                    part_number: "".into(),
                }],
            }
        );
        assert_eq!(
            hw.disks,
            vec![Disk {
                name: "APPLE SSD AP0512R".into(),
                model: "APPLE SSD AP0512R".into(),
                serial: "".into(),
                size_bytes: 0,
                media: "ssd".into(),
                bus: "apple-fabric".into(),
            }],
            "one drive behind both volumes"
        );
        assert_eq!(
            hw.volumes,
            vec![
                Volume {
                    mount: "/".into(),
                    file_system: "APFS".into(),
                    size_bytes: 494_384_795_648,
                    label: "Macintosh HD".into()
                },
                Volume {
                    mount: "/System/Volumes/Data".into(),
                    file_system: "APFS".into(),
                    size_bytes: 494_384_795_648,
                    label: "Data".into()
                },
            ]
        );
        assert_eq!(
            hw.network[0],
            NetworkAdapter {
                name: "Wi-Fi (en0)".into(),
                mac: "a4:83:e7:1b:2c:3d".into(),
                addresses: vec!["192.168.1.42/24".into(), "fe80::1c8b:2f3e:4a5b:6c7d/64".into()],
                dhcp: Some(true),
                gateways: vec!["192.168.1.1".into()],
                dns_servers: vec!["192.168.1.1".into()],
            }
        );
        assert_eq!(hw.network[1].name, "Thunderbolt Bridge (bridge0)");
        assert_eq!((hw.network[1].addresses.len(), hw.network[1].dhcp), (0, None));
        assert_eq!(
            hw.gpus,
            vec![Gpu {
                name: "Apple M1 Pro".into(),
                vendor: "Apple".into(),
                driver_version: "".into(),
                memory_bytes: 0
            }]
        );
        assert_eq!(hw.timezone, "Europe/Berlin");
    }

    #[test]
    fn an_intel_macbook_converts_to_hardware() {
        let profiler = SystemProfiler::parse(INTEL_PROFILER).unwrap();
        let hw = hardware(&Sysctl::parse(INTEL_SYSCTL), &SwVers::default(), &profiler, None);
        assert_eq!(hw.os.arch, "x86_64");
        assert_eq!(hw.system.model, "MacBook Pro (MacBookPro16,1)");
        assert_eq!(
            hw.cpu,
            CpuInfo {
                model: "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz".into(),
                vendor: "GenuineIntel".into(),
                sockets: 1,
                cores: 8,
                threads: 16,
                max_mhz: 2300,
            }
        );
        assert_eq!(hw.memory.total_bytes, 34_359_738_368);
        assert_eq!(
            hw.memory.modules,
            vec![
                MemoryModule {
                    slot: "BANK 0/ChannelA-DIMM0".into(),
                    size_bytes: 17_179_869_184,
                    speed_mts: 2667,
                    manufacturer: "Micron".into(),
                    part_number: "MT40A2G8SA-062E:F".into(),
                },
                MemoryModule {
                    slot: "BANK 1/ChannelB-DIMM0".into(),
                    size_bytes: 17_179_869_184,
                    speed_mts: 2667,
                    manufacturer: "Micron".into(),
                    part_number: "MT40A2G8SA-062E:F".into(),
                },
            ]
        );
        assert_eq!(
            hw.gpus,
            vec![
                Gpu {
                    name: "AMD Radeon Pro 5500M".into(),
                    vendor: "AMD".into(),
                    driver_version: "".into(),
                    memory_bytes: 8 << 30
                },
                Gpu {
                    name: "Intel UHD Graphics 630".into(),
                    vendor: "Intel".into(),
                    driver_version: "".into(),
                    memory_bytes: 1536 << 20
                },
            ]
        );
        assert_eq!(hw.disks[0].bus, "pcie");
        assert_eq!(hw.timezone, "");
    }

    #[test]
    fn status_has_boot_time_users_and_free_space() {
        let profiler = SystemProfiler::parse(M1_PROFILER).unwrap();
        let now = utc("2024-01-15T12:00:00Z");
        let status = status(&Sysctl::parse(M1_SYSCTL), Some(WHO), &profiler, now, plus_one_hour());
        assert_eq!(status.boot_time, Some(utc("2024-01-15T07:10:00.250Z")));
        assert_eq!(
            status.users,
            vec![
                LoggedOnUser {
                    name: "alice".into(),
                    session: "console".into(),
                    since: Some(utc("2024-01-15T07:12:00Z"))
                },
                LoggedOnUser {
                    name: "alice".into(),
                    session: "ttys000".into(),
                    since: Some(utc("2024-01-15T08:02:00Z"))
                },
                LoggedOnUser {
                    name: "bob".into(),
                    session: "ttys001".into(),
                    since: Some(utc("2024-01-05T09:11:00Z"))
                },
                LoggedOnUser {
                    name: "carol".into(),
                    session: "ttys002".into(),
                    since: Some(utc("2023-12-31T22:30:00Z"))
                },
            ],
            "carol's `Dec 31` is last year's"
        );
        assert_eq!(
            status.volumes[0],
            VolumeUsage { mount: "/".into(), size_bytes: 494_384_795_648, free_bytes: 380_012_345_344 }
        );
        assert_eq!(status.volumes.len(), 2);
    }

    #[test]
    fn sysctl_and_sw_vers_output_parse() {
        let sysctl = Sysctl::parse(M1_SYSCTL);
        assert_eq!(sysctl.get("machdep.cpu.brand_string"), "Apple M1 Pro");
        assert_eq!(sysctl.number("hw.memsize"), Some(17_179_869_184));
        assert_eq!(sysctl.get("no.such.key"), "");
        let boot = |line: &str| Sysctl::parse(&format!("kern.boottime: {line}")).boot_time();
        assert_eq!(boot("{ sec = 1700000000, usec = 0 } Tue Nov 14 22:13:20 2023"), Some(utc("2023-11-14T22:13:20Z")));
        assert_eq!(boot("{ sec = 1700000000 }"), Some(utc("2023-11-14T22:13:20Z")));
        for bad in [
            "",
            "{ }",
            "{ sec = -5, usec = 0 }",
            "{ sec = 1700000000, usec = 5000000 }",
            "{ sec = 99999999999999999999 }",
        ] {
            assert_eq!(boot(bad), None, "{bad:?}");
        }
        assert_eq!(
            SwVers::parse("ProductName:\t\tmacOS\nProductVersion:\t\t14.5\nBuildVersion:\t\t23F79\n"),
            SwVers { name: "macOS".into(), version: "14.5".into(), build: "23F79".into() }
        );
        assert_eq!(SwVers::parse("garbage"), SwVers::default());
    }

    #[test]
    fn sizes_and_speeds_parse() {
        assert_eq!(size_bytes("16 GB"), Some(16 << 30));
        assert_eq!(size_bytes("1536 MB"), Some(1536 << 20));
        assert_eq!(size_bytes("1.5 TB"), Some(3 << 39));
        assert_eq!(size_bytes("1,5 GB"), Some(3 << 29));
        assert_eq!(size_bytes("512"), Some(512));
        for bad in ["", "empty", "GB", "16 XB", "-1 GB", "1e400 GB", "99999999999 TB", "1.2.3 GB"] {
            assert_eq!(size_bytes(bad), None, "{bad:?}");
        }
        assert_eq!(megahertz("2.3 GHz"), Some(2300));
        assert_eq!(megahertz("2667 MHz"), Some(2667));
        assert_eq!(megahertz("fast"), None);
        assert_eq!(megahertz("9e99 GHz"), None);
    }

    #[test]
    fn hostile_profiler_output_costs_fields_not_the_report() {
        assert!(SystemProfiler::parse("").is_err());
        assert!(SystemProfiler::parse("{\"SPHardwareDataType\": [").is_err());
        let (sysctl, sw) = (Sysctl::parse("\0\n:\n::::\nkern.hostname"), SwVers::default());
        for raw in [
            "null",
            "[]",
            "{}",
            r#"{"SPHardwareDataType": {}, "SPStorageDataType": "x", "SPNetworkDataType": [1, null, []]}"#,
            r#"{"SPHardwareDataType": [{"machine_model": 5, "serial_number": ["x"], "chip_type": null}],
                "SPMemoryDataType": [{"_items": "x"}, {"_items": [{"dimm_size": "empty"}, 7]}, {"SPMemoryDataType": "sixteen"}],
                "SPStorageDataType": [{"mount_point": "/", "size_in_bytes": -1, "physical_drive": "x"},
                                      {"mount_point": {"a": 1}, "physical_drive": {"device_name": 12}}],
                "SPNetworkDataType": [{"_name": "x", "IPv4": {"Addresses": "10.0.0.1", "SubnetMasks": [24]},
                                       "Ethernet": [], "DNS": {"ServerAddresses": [null, {}, "1.1.1.1"]}}],
                "SPDisplaysDataType": [{"spdisplays_vram": "lots", "spdisplays_vendor": "sppci_vendor_"}]}"#,
        ] {
            let profiler = SystemProfiler::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            let hw = hardware(&sysctl, &sw, &profiler, Some("zoneinfo/../../etc/passwd"));
            let _ = status(&sysctl, Some("\0 \n x"), &profiler, Utc::now(), plus_one_hour());
            assert_eq!(hw.timezone, "");
            if raw.contains("dimm_size") {
                assert_eq!(hw.system.model, "5");
                assert_eq!(hw.system.serial, "");
                assert_eq!(hw.memory.modules, vec![]);
                assert_eq!(hw.volumes.len(), 1);
                assert_eq!(hw.volumes[0].size_bytes, 0);
                assert_eq!(hw.disks[0].name, "12");
                assert_eq!(hw.network[0].addresses, ["10.0.0.1/24"]);
                assert_eq!(hw.network[0].dns_servers, ["1.1.1.1"]);
                assert_eq!(hw.gpus[0].memory_bytes, 0);
            }
        }
        let huge = format!(r#"{{"SPHardwareDataType": [{{"serial_number": "{}"}}]}}"#, "x".repeat(1 << 20));
        let hw = hardware(&sysctl, &sw, &SystemProfiler::parse(&huge).unwrap(), None);
        assert_eq!(hw.system.serial.len(), 1 << 20, "cut later, by the wire's `bound`");
    }

    #[test]
    fn who_output_parses_and_garbage_is_skipped() {
        let now = utc("2024-01-15T12:00:00Z");
        assert_eq!(parse_who("", now, plus_one_hour()), vec![]);
        let users = parse_who("root\nroot console\nroot console Foo 99 99:99\n", now, plus_one_hour());
        assert_eq!(users.len(), 2);
        assert_eq!(users[0], LoggedOnUser { name: "root".into(), session: "console".into(), since: None });
        assert_eq!(users[1].since, None);
    }

    #[test]
    fn time_zones_come_from_the_localtime_link() {
        assert_eq!(
            timezone_from_localtime_link("/var/db/timezone/zoneinfo/America/Argentina/Buenos_Aires"),
            "America/Argentina/Buenos_Aires"
        );
        assert_eq!(timezone_from_localtime_link("/usr/share/zoneinfo/Etc/GMT+5"), "Etc/GMT+5");
        assert_eq!(timezone_from_localtime_link("/usr/share/zoneinfo/"), "");
        assert_eq!(timezone_from_localtime_link("/etc/localtime"), "");
        assert_eq!(timezone_from_localtime_link("zoneinfo/Europe/Berlin; rm -rf /"), "");
    }

    #[test]
    fn an_xml_info_plist_becomes_software() {
        let modified = Some(utc("2024-01-10T15:00:00Z"));
        assert_eq!(
            software_from_info_plist(SLACK_PLIST, "/Applications/Slack.app", "machine", modified).unwrap(),
            Software {
                source: "app".into(),
                id: "/Applications/Slack.app".into(),
                name: "Slack".into(),
                version: "4.36.140".into(),
                publisher: "".into(),
                install_date: "2024-01-10".into(),
                location: "/Applications/Slack.app".into(),
                arch: "".into(),
                scope: "machine".into(),
            }
        );
    }

    #[test]
    fn a_binary_info_plist_becomes_software() {
        let mut dict = plist::Dictionary::new();
        dict.insert("CFBundleIdentifier".into(), "com.googlecode.iterm2".into());
        dict.insert("CFBundleName".into(), "iTerm2".into());
        dict.insert("CFBundleVersion".into(), plist::Value::Integer(20240110.into()));
        let mut bytes = Vec::new();
        plist::Value::Dictionary(dict).to_writer_binary(&mut bytes).unwrap();
        assert!(bytes.starts_with(b"bplist00"));
        let item = software_from_info_plist(&bytes, "/Users/alice/Applications/iTerm.app", "user:alice", None).unwrap();
        assert_eq!((item.name.as_str(), item.version.as_str()), ("iTerm2", "20240110"), "the build number, an integer");
        assert_eq!((item.scope.as_str(), item.install_date.as_str()), ("user:alice", ""));
    }

    #[test]
    fn a_bundle_without_names_is_named_after_its_folder() {
        let xml = br#"<?xml version="1.0"?><plist version="1.0"><dict><key>CFBundleName</key><true/></dict></plist>"#;
        let item = software_from_info_plist(xml, "/Applications/Utilities/Foo Bar.app/", "machine", None).unwrap();
        assert_eq!((item.name.as_str(), item.version.as_str()), ("Foo Bar", ""));
        let item = software_from_info_plist(xml, "odd", "machine", None).unwrap();
        assert_eq!(item.name, "odd");
    }

    #[test]
    fn broken_info_plists_are_errors_not_panics() {
        let mut truncated = Vec::new();
        plist::Value::Dictionary(plist::Dictionary::new()).to_writer_binary(&mut truncated).unwrap();
        truncated.truncate(truncated.len() - 5);
        let mut garbage = b"bplist00".to_vec();
        garbage.extend((0u8..=255).cycle().take(4096));
        let array = br#"<?xml version="1.0"?><plist version="1.0"><array><string>x</string></array></plist>"#;
        // A dictionary whose key is a number.
        let binary_garbage = binary_plist(&[vec![0xD1, 0x01, 0x01], vec![0x10, 0x05]], 1, 0);
        for (bytes, kind) in [
            (&b""[..], "parse"),
            (b"bplist", "refused"),
            (&truncated, "refused"),
            (&garbage, "refused"),
            (&binary_garbage, "parse"),
            (&SLACK_PLIST[..SLACK_PLIST.len() / 2], "parse"),
            (b"\xff\xfe<\x00?\x00", "refused"),
            (b"<plist><dict><key>a</key><string>b</string><garbage>", "parse"),
            (array, "dictionary"),
        ] {
            match software_from_info_plist(bytes, "/Applications/X.app", "machine", None) {
                Err(InfoPlistError::Parse { .. }) => assert_eq!(kind, "parse", "{bytes:?}"),
                Err(InfoPlistError::NotDictionary { .. }) => assert_eq!(kind, "dictionary", "{bytes:?}"),
                Err(InfoPlistError::Refused { .. }) => assert_eq!(kind, "refused", "{bytes:?}"),
                Ok(item) => panic!("{item:?} from {:?}", String::from_utf8_lossy(bytes)),
            }
        }
    }

    /// A binary plist of `objects` (each its marker and content, references `ref_size` bytes wide) with a 4-byte
    /// offset table, as the format lays them out.
    fn binary_plist(objects: &[Vec<u8>], ref_size: u8, top: u64) -> Vec<u8> {
        let mut bytes = b"bplist00".to_vec();
        let mut offsets = Vec::new();
        for object in objects {
            offsets.push(u32::try_from(bytes.len()).unwrap());
            bytes.extend(object);
        }
        let table = bytes.len() as u64;
        offsets.iter().for_each(|o| bytes.extend(o.to_be_bytes()));
        bytes.extend([0, 0, 0, 0, 0, 0, 4, ref_size]);
        bytes.extend((objects.len() as u64).to_be_bytes());
        bytes.extend(top.to_be_bytes());
        bytes.extend(table.to_be_bytes());
        bytes
    }

    // Regression: a 100,000-level plist parsed fine but overflowed the stack when dropped, aborting the agent.
    #[test]
    fn deeply_nested_plists_are_refused_before_parsing() {
        let refused = |bytes: &[u8]| {
            matches!(
                software_from_info_plist(bytes, "/Users/mallory/Applications/X.app", "user:mallory", None),
                Err(InfoPlistError::Refused { .. })
            )
        };
        let xml = format!("<plist>{}{}</plist>", "<array>".repeat(100_000), "</array>".repeat(100_000));
        assert!(refused(xml.as_bytes()));
        let inside = format!(
            "<plist><dict><key>CFBundleName</key><string>X</string><key>k</key>{}{}</dict></plist>",
            "<array >".repeat(40),
            "</array>".repeat(40)
        );
        assert!(refused(inside.as_bytes()));
        assert!(refused("(".repeat(100_000).as_bytes()));
        assert!(refused("<array<array<array".repeat(100_000).as_bytes()), "unclosed tags count, in linear time");
        let shallow = format!("<plist><dict><key>CFBundleName</key>{}<string>X</string>{}</dict></plist>", "", "");
        assert!(!refused(shallow.as_bytes()));
        let empties =
            format!("<plist><dict><key>a</key><array>{}</array></dict></plist>", "<array/><dict/>".repeat(100));
        assert_eq!(plist_shape_is_safe(empties.as_bytes()), Ok(()));

        // 10,000 arrays, each holding the next.
        let chain: Vec<Vec<u8>> = (0..10_000u16)
            .map(|i| if i == 9_999 { vec![0xA0] } else { [vec![0xA1], (i + 1).to_be_bytes().to_vec()].concat() })
            .collect();
        assert_eq!(plist_shape_is_safe(&binary_plist(&chain, 2, 0)), Err("nested too deeply"));
        // 30 levels (within the depth limit), each array holding the next level twice: 2^30 objects expanded.
        let laughs: Vec<Vec<u8>> =
            (0..31u8).map(|i| if i == 30 { vec![0x51, b'x'] } else { vec![0xA2, i + 1, i + 1] }).collect();
        assert_eq!(plist_shape_is_safe(&binary_plist(&laughs, 1, 0)), Err("expands to too many objects"));
        assert!(refused(&binary_plist(&laughs, 1, 0)));
        let cycle = binary_plist(&[vec![0xA1, 0x00]], 1, 0);
        assert_eq!(plist_shape_is_safe(&cycle), Err("a binary plist object contains itself"));
        let out_of_range = binary_plist(&[vec![0xA1, 0x07]], 1, 0);
        assert_eq!(plist_shape_is_safe(&out_of_range), Err("malformed binary plist"));
        let long_count = binary_plist(&[vec![0xAF, 0x13, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]], 1, 0);
        assert_eq!(plist_shape_is_safe(&long_count), Err("malformed binary plist"));
        let mut top_out_of_range = binary_plist(&[vec![0xA0]], 1, 0);
        let at = top_out_of_range.len() - 16;
        top_out_of_range[at..at + 8].copy_from_slice(&5u64.to_be_bytes());
        assert_eq!(plist_shape_is_safe(&top_out_of_range), Err("malformed binary plist"));

        // A real file from the writer passes, shared keys and all.
        let mut dict = plist::Dictionary::new();
        for key in ["a", "b", "c"] {
            dict.insert(
                key.into(),
                plist::Value::Array(vec!["x".into(), plist::Value::Dictionary(plist::Dictionary::new())]),
            );
        }
        let mut bytes = Vec::new();
        plist::Value::Dictionary(dict).to_writer_binary(&mut bytes).unwrap();
        assert_eq!(plist_shape_is_safe(&bytes), Ok(()));
        assert_eq!(plist_shape_is_safe(SLACK_PLIST), Ok(()));
    }

    #[test]
    fn bundles_and_homes_are_recognised() {
        assert!(is_app_bundle("Slack.app"));
        assert!(is_app_bundle("Microsoft Word.APP"));
        assert!(!is_app_bundle(".app"));
        assert!(!is_app_bundle(".Hidden.app"));
        assert!(!is_app_bundle("Utilities"));
        assert!(!is_app_bundle("é.ap"));
        assert_eq!(home_scope("alice").as_deref(), Some("user:alice"));
        assert_eq!(home_scope("Shared").as_deref(), Some("machine"));
        assert_eq!(home_scope(".localized"), None);
        assert_eq!(home_scope(""), None);
    }
}
