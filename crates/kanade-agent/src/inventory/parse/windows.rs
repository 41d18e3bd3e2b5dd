//! Windows inventory, the pure half: the WMI rows and registry values `crate::platform::inventory_windows` reads,
//! and their conversion into the wire types. Compiled and tested on every OS against recorded samples, so the
//! Windows-only file keeps nothing but the queries.
//!
//! Every WMI property is read into a [`Loose`] value, whatever type it arrives as: WMI hands a `uint64` over as a
//! string (the `wmi` crate converts it back, PowerShell's JSON does not), drivers leave properties null, and a
//! property of the wrong type must cost that one field, never the whole row or the whole report.

use std::fmt;
use std::net::Ipv4Addr;

use chrono::{DateTime, Datelike as _, FixedOffset, NaiveDate, NaiveDateTime, TimeDelta, TimeZone as _, Utc};
use kanade_shared::inventory::{
    BiosInfo, CpuInfo, Disk, Gpu, Hardware, LoggedOnUser, MemoryInfo, MemoryModule, NetworkAdapter, OsInfo, Software,
    Status, SystemInfo, Volume, VolumeUsage,
};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Elements of one array property kept (addresses of an adapter); the wire keeps fewer still.
const MAX_LOOSE_LIST: usize = 256;
/// 2^64, the first float a `u64` cannot hold.
const U64_LIMIT: f64 = 18_446_744_073_709_551_616.0;

/// One WMI property as it arrived: the conversions below read it as text, a number or a flag, and anything that
/// does not fit reads as empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Loose {
    /// Null, missing, or a shape no property we read has (a nested object, bytes).
    #[default]
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
    List(Vec<Loose>),
}

impl Loose {
    /// As text, trimmed (WMI pads part numbers and serials with spaces); numbers print as numbers.
    pub fn text(&self) -> String {
        match self {
            Loose::Text(text) => text.trim().to_owned(),
            Loose::Unsigned(n) => n.to_string(),
            Loose::Signed(n) => n.to_string(),
            Loose::Float(n) if n.is_finite() => n.to_string(),
            _ => String::new(),
        }
    }

    /// As a non-negative whole number, from a number or a numeric string (`"17179869184"`).
    pub fn u64(&self) -> Option<u64> {
        match self {
            Loose::Unsigned(n) => Some(*n),
            Loose::Signed(n) => u64::try_from(*n).ok(),
            // Only whole values in range get here, so `as` is exact.
            Loose::Float(n) if (0.0..U64_LIMIT).contains(n) && n.fract() == 0.0 => Some(*n as u64),
            Loose::Text(text) => text.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn u32(&self) -> Option<u32> {
        self.u64().and_then(|n| u32::try_from(n).ok())
    }

    /// As a flag, from a boolean, `0`/`1` or `true`/`false` in any case.
    pub fn flag(&self) -> Option<bool> {
        match self {
            Loose::Bool(b) => Some(*b),
            Loose::Unsigned(0) | Loose::Signed(0) => Some(false),
            Loose::Unsigned(1) | Loose::Signed(1) => Some(true),
            Loose::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// As a list of non-empty texts; a single value counts as a list of one.
    pub fn texts(&self) -> Vec<String> {
        match self {
            Loose::List(items) => items.iter().map(Loose::text).filter(|t| !t.is_empty()).collect(),
            single => Some(single.text()).filter(|t| !t.is_empty()).into_iter().collect(),
        }
    }
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any WMI property value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Loose, E> {
        Ok(Loose::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose, E> {
        Ok(Loose::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose, E> {
        Ok(Loose::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Loose, E> {
        Ok(Loose::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose, E> {
        Ok(Loose::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Loose, E> {
        Ok(Loose::Text(v))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Loose, E> {
        Ok(Loose::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Loose, E> {
        Ok(Loose::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
        Ok(Loose::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Loose, D::Error> {
        Loose::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Loose>()? {
            if items.len() < MAX_LOOSE_LIST {
                items.push(item);
            }
        }
        Ok(Loose::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Null)
    }
}

/// The WMI class a row type is read from, for the collector's error messages. Each row type's serde name is the
/// same class: the `wmi` crate builds its `SELECT <fields> FROM <name>` from the serde names (a test checks both).
pub trait WmiClass {
    const CLASS: &'static str;
}

/// Declares a WMI row type: every property a [`Loose`], missing ones default, names as WMI spells them.
macro_rules! wmi_row {
    ($(#[$doc:meta])* $name:ident = $class:literal { $($(#[$field_attr:meta])* $field:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
        #[serde(rename = $class, rename_all = "PascalCase", default)]
        pub struct $name {
            $($(#[$field_attr])* pub $field: Loose,)+
        }

        impl WmiClass for $name {
            const CLASS: &'static str = $class;
        }
    };
}

wmi_row!(OperatingSystemRow = "Win32_OperatingSystem" {
    caption,
    version,
    build_number,
    #[serde(rename = "OSArchitecture")]
    os_architecture,
    last_boot_up_time,
    #[serde(rename = "OperatingSystemSKU")]
    operating_system_sku,
    product_type,
});

wmi_row!(ComputerSystemRow = "Win32_ComputerSystem" {
    name,
    #[serde(rename = "DNSHostName")]
    dns_host_name,
    domain,
    part_of_domain,
    workgroup,
    manufacturer,
    model,
    user_name,
    total_physical_memory,
    number_of_processors,
});

wmi_row!(ComputerSystemProductRow = "Win32_ComputerSystemProduct" {
    identifying_number,
    #[serde(rename = "UUID")]
    uuid,
});

wmi_row!(BiosRow = "Win32_BIOS" {
    manufacturer,
    #[serde(rename = "SMBIOSBIOSVersion")]
    smbios_bios_version,
    release_date,
    serial_number,
});

wmi_row!(ProcessorRow = "Win32_Processor" {
    name,
    manufacturer,
    number_of_cores,
    number_of_logical_processors,
    max_clock_speed,
    architecture,
});

wmi_row!(PhysicalMemoryRow = "Win32_PhysicalMemory" {
    device_locator,
    capacity,
    speed,
    configured_clock_speed,
    manufacturer,
    part_number,
});

wmi_row!(DiskDriveRow = "Win32_DiskDrive" {
    #[serde(rename = "DeviceID")]
    device_id,
    index,
    model,
    serial_number,
    size,
    interface_type,
    media_type,
});

wmi_row!(
    /// `ROOT\Microsoft\Windows\Storage`: the only class that tells an SSD from a disk and NVMe from SATA. Joined
    /// to [`DiskDriveRow`] by `DeviceId` = `Index`.
    PhysicalDiskRow = "MSFT_PhysicalDisk" {
        device_id,
        friendly_name,
        serial_number,
        media_type,
        bus_type,
        size,
    }
);

wmi_row!(LogicalDiskRow = "Win32_LogicalDisk" {
    #[serde(rename = "DeviceID")]
    device_id,
    drive_type,
    file_system,
    size,
    free_space,
    volume_name,
});

wmi_row!(NetworkAdapterConfigurationRow = "Win32_NetworkAdapterConfiguration" {
    description,
    #[serde(rename = "IPEnabled")]
    ip_enabled,
    #[serde(rename = "MACAddress")]
    mac_address,
    #[serde(rename = "IPAddress")]
    ip_address,
    #[serde(rename = "IPSubnet")]
    ip_subnet,
    #[serde(rename = "DHCPEnabled")]
    dhcp_enabled,
    #[serde(rename = "DefaultIPGateway")]
    default_ip_gateway,
    #[serde(rename = "DNSServerSearchOrder")]
    dns_server_search_order,
});

wmi_row!(VideoControllerRow = "Win32_VideoController" {
    name,
    adapter_compatibility,
    driver_version,
    #[serde(rename = "AdapterRAM")]
    adapter_ram,
});

wmi_row!(TimeZoneRow = "Win32_TimeZone" {
    caption,
    standard_name,
});

/// The few facts WMI does not have, read from `HKLM` by the collector.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct RegistryFacts {
    /// `SOFTWARE\Microsoft\Windows NT\CurrentVersion\UBR`: the update build revision (`3447` of `22631.3447`).
    pub ubr: Option<u64>,
    /// `...\CurrentVersion\EditionID` (`Professional`), used when the SKU number is one we do not know.
    pub edition_id: String,
    /// `SYSTEM\CurrentControlSet\Control\PEFirmwareType`: 1 BIOS, 2 UEFI.
    pub firmware_type: Option<u64>,
    /// `SYSTEM\CurrentControlSet\Control\TimeZoneInformation\TimeZoneKeyName` (`W. Europe Standard Time`): the
    /// time zone's stable, unlocalised name, where `Win32_TimeZone` only has display names in the UI language.
    pub time_zone_key: String,
}

/// Everything the hardware report is made from, as the collector gathered it. Deserialisable (keyed by class
/// name) so a recorded sample can stand in for a PC.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct WmiHardware {
    #[serde(rename = "Win32_OperatingSystem")]
    pub os: Vec<OperatingSystemRow>,
    #[serde(rename = "Win32_ComputerSystem")]
    pub computer: Vec<ComputerSystemRow>,
    #[serde(rename = "Win32_ComputerSystemProduct")]
    pub product: Vec<ComputerSystemProductRow>,
    #[serde(rename = "Win32_BIOS")]
    pub bios: Vec<BiosRow>,
    #[serde(rename = "Win32_Processor")]
    pub processors: Vec<ProcessorRow>,
    #[serde(rename = "Win32_PhysicalMemory")]
    pub memory: Vec<PhysicalMemoryRow>,
    #[serde(rename = "Win32_DiskDrive")]
    pub disks: Vec<DiskDriveRow>,
    #[serde(rename = "MSFT_PhysicalDisk")]
    pub physical_disks: Vec<PhysicalDiskRow>,
    #[serde(rename = "Win32_LogicalDisk")]
    pub logical_disks: Vec<LogicalDiskRow>,
    #[serde(rename = "Win32_NetworkAdapterConfiguration")]
    pub adapters: Vec<NetworkAdapterConfigurationRow>,
    #[serde(rename = "Win32_VideoController")]
    pub video: Vec<VideoControllerRow>,
    #[serde(rename = "Win32_TimeZone")]
    pub time_zone: Vec<TimeZoneRow>,
    #[serde(rename = "Registry")]
    pub registry: RegistryFacts,
}

/// `Win32_LogicalDisk.DriveType` of a local fixed disk; removable, network and optical drives are not volumes of
/// the PC's own.
const DRIVE_TYPE_LOCAL_DISK: u64 = 3;

/// The hardware report from one collection's WMI rows and registry facts. A class that could not be queried is an
/// empty list, and leaves its fields empty.
pub fn hardware(rows: &WmiHardware) -> Hardware {
    let os = rows.os.first().cloned().unwrap_or_default();
    let computer = rows.computer.first().cloned().unwrap_or_default();
    let product = rows.product.first().cloned().unwrap_or_default();
    let bios = rows.bios.first().cloned().unwrap_or_default();
    let joined = computer.part_of_domain.flag();
    Hardware {
        os: os_info(&os, rows.processors.first(), &rows.registry),
        hostname: Some(computer.dns_host_name.text()).filter(|n| !n.is_empty()).unwrap_or_else(|| computer.name.text()),
        // `Domain` holds the workgroup's name when the PC is not joined; `Workgroup` is only set then.
        domain: if joined == Some(true) { computer.domain.text() } else { String::new() },
        workgroup: match joined {
            Some(false) => {
                Some(computer.workgroup.text()).filter(|w| !w.is_empty()).unwrap_or_else(|| computer.domain.text())
            }
            _ => String::new(),
        },
        system: SystemInfo {
            manufacturer: meaningful(&computer.manufacturer.text()),
            model: meaningful(&computer.model.text()),
            serial: Some(meaningful(&bios.serial_number.text()))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| meaningful(&product.identifying_number.text())),
            uuid: meaningful(&product.uuid.text()),
        },
        bios: BiosInfo {
            vendor: meaningful(&bios.manufacturer.text()),
            version: bios.smbios_bios_version.text(),
            date: cim_date(&bios.release_date.text()),
            firmware: match rows.registry.firmware_type {
                Some(1) => "bios".into(),
                Some(2) => "uefi".into(),
                _ => String::new(),
            },
        },
        cpu: cpu_info(&rows.processors),
        memory: MemoryInfo {
            total_bytes: computer.total_physical_memory.u64().unwrap_or(0),
            modules: rows.memory.iter().map(memory_module).collect(),
        },
        disks: rows.disks.iter().map(|d| disk(d, &rows.physical_disks)).collect(),
        volumes: local_disks(&rows.logical_disks)
            .map(|v| Volume {
                mount: v.device_id.text(),
                file_system: v.file_system.text(),
                size_bytes: v.size.u64().unwrap_or(0),
                label: v.volume_name.text(),
            })
            .collect(),
        network: rows.adapters.iter().filter(|a| a.ip_enabled.flag() != Some(false)).map(network_adapter).collect(),
        gpus: rows
            .video
            .iter()
            .map(|v| Gpu {
                name: v.name.text(),
                vendor: v.adapter_compatibility.text(),
                driver_version: v.driver_version.text(),
                // A uint32: cards with 4 GiB or more report about 4 GiB. The true size is only in the display
                // driver's registry key (`HardwareInformation.qwMemorySize`), which is not worth a walk of its own.
                memory_bytes: v.adapter_ram.u64().unwrap_or(0),
            })
            .collect(),
        timezone: Some(rows.registry.time_zone_key.trim().to_owned())
            .filter(|z| !z.is_empty())
            .or_else(|| rows.time_zone.first().map(|z| z.standard_name.text()))
            .unwrap_or_default(),
    }
}

fn os_info(os: &OperatingSystemRow, cpu: Option<&ProcessorRow>, registry: &RegistryFacts) -> OsInfo {
    let build = os.build_number.text();
    OsInfo {
        name: os.caption.text(),
        version: os.version.text(),
        build: match registry.ubr {
            Some(ubr) if !build.is_empty() => format!("{build}.{ubr}"),
            _ => build,
        },
        edition: os
            .operating_system_sku
            .u64()
            .and_then(edition)
            .map(str::to_owned)
            .or_else(|| Some(registry.edition_id.trim().to_owned()).filter(|e| !e.is_empty()))
            .or_else(|| matches!(os.product_type.u64(), Some(2 | 3)).then(|| "Server".to_owned()))
            .unwrap_or_default(),
        arch: os_arch(cpu.and_then(|c| c.architecture.u64()), &os.os_architecture.text()),
    }
}

/// `OperatingSystemSKU` (the `PRODUCT_*` values of `GetProductInfo`) to an edition name, for the editions a fleet
/// has; the rest fall back to the registry's `EditionID`.
fn edition(sku: u64) -> Option<&'static str> {
    Some(match sku {
        1 => "Ultimate",
        2 | 5 => "Home Basic",
        3 | 26 => "Home Premium",
        4 | 27 | 70 | 72 => "Enterprise",
        6 | 16 => "Business",
        7 | 13 | 79 => "Server Standard",
        8 | 12 | 80 => "Server Datacenter",
        10 | 14 => "Server Enterprise",
        48 | 49 => "Professional",
        98..=101 => "Home",
        121 | 122 => "Education",
        125 | 126 => "Enterprise LTSC",
        161 | 162 => "Professional for Workstations",
        164 | 165 => "Professional Education",
        175 => "Enterprise multi-session",
        _ => return None,
    })
}

/// The OS's architecture: the processor's (`Win32_Processor.Architecture`: 0 x86, 5 ARM, 9 x64, 12 ARM64), unless
/// the OS is a 32-bit one on a 64-bit processor. `OSArchitecture` alone is localised (`64 bits`), but always has
/// its bit count in digits.
fn os_arch(processor: Option<u64>, os_architecture: &str) -> String {
    let os_32_bit = os_architecture.contains("32");
    match processor {
        Some(9) if os_32_bit => "x86",
        Some(9) => "x86_64",
        Some(12) if os_32_bit => "arm",
        Some(12) => "aarch64",
        Some(0) => "x86",
        Some(5) => "arm",
        _ if os_architecture.contains("64") => "x86_64",
        _ if os_32_bit => "x86",
        _ => "",
    }
    .to_owned()
}

/// One row per socket.
fn cpu_info(processors: &[ProcessorRow]) -> CpuInfo {
    let Some(first) = processors.first() else { return CpuInfo::default() };
    let sum = |field: fn(&ProcessorRow) -> &Loose| {
        processors.iter().filter_map(|p| field(p).u32()).fold(0u32, u32::saturating_add)
    };
    CpuInfo {
        model: first.name.text(),
        vendor: first.manufacturer.text(),
        sockets: u32::try_from(processors.len()).unwrap_or(u32::MAX),
        cores: sum(|p| &p.number_of_cores),
        threads: sum(|p| &p.number_of_logical_processors),
        max_mhz: processors.iter().filter_map(|p| p.max_clock_speed.u32()).max().unwrap_or(0),
    }
}

fn memory_module(row: &PhysicalMemoryRow) -> MemoryModule {
    MemoryModule {
        slot: row.device_locator.text(),
        size_bytes: row.capacity.u64().unwrap_or(0),
        // The speed the module runs at, rather than the fastest it could.
        speed_mts: row.configured_clock_speed.u32().filter(|s| *s > 0).or_else(|| row.speed.u32()).unwrap_or(0),
        manufacturer: meaningful(&row.manufacturer.text()),
        part_number: meaningful(&row.part_number.text()),
    }
}

fn disk(row: &DiskDriveRow, physical: &[PhysicalDiskRow]) -> Disk {
    let index = row.index.text();
    let storage = physical.iter().find(|p| !index.is_empty() && p.device_id.text() == index);
    let serial = meaningful(&row.serial_number.text());
    Disk {
        name: row.device_id.text(),
        model: row.model.text(),
        serial: match storage {
            Some(p) if serial.is_empty() => meaningful(&p.serial_number.text()),
            _ => serial,
        },
        size_bytes: row.size.u64().or_else(|| storage.and_then(|p| p.size.u64())).unwrap_or(0),
        media: match storage.and_then(|p| p.media_type.u64()) {
            Some(3) => "hdd".into(),
            Some(4) => "ssd".into(),
            Some(5) => "scm".into(),
            _ => String::new(),
        },
        bus: storage
            .and_then(|p| p.bus_type.u64())
            .and_then(bus_type)
            .map(str::to_owned)
            // `Win32_DiskDrive` calls NVMe and SAS disks `SCSI` and SATA ones `IDE`: a last resort.
            .unwrap_or_else(|| row.interface_type.text().to_ascii_lowercase()),
    }
}

/// `MSFT_PhysicalDisk.BusType`.
fn bus_type(bus: u64) -> Option<&'static str> {
    Some(match bus {
        1 => "scsi",
        2 => "atapi",
        3 => "ata",
        4 => "1394",
        5 => "ssa",
        6 => "fibre-channel",
        7 => "usb",
        8 => "raid",
        9 => "iscsi",
        10 => "sas",
        11 => "sata",
        12 => "sd",
        13 => "mmc",
        14 | 15 => "virtual",
        16 => "storage-spaces",
        17 => "nvme",
        18 => "scm",
        19 => "ufs",
        _ => return None,
    })
}

fn local_disks(rows: &[LogicalDiskRow]) -> impl Iterator<Item = &LogicalDiskRow> {
    rows.iter().filter(|v| v.drive_type.u64().is_none_or(|t| t == DRIVE_TYPE_LOCAL_DISK))
}

fn network_adapter(row: &NetworkAdapterConfigurationRow) -> NetworkAdapter {
    let masks = row.ip_subnet.texts();
    NetworkAdapter {
        name: row.description.text(),
        mac: row.mac_address.text().to_ascii_lowercase(),
        addresses: row
            .ip_address
            .texts()
            .iter()
            .enumerate()
            .map(|(i, address)| address_with_prefix(address, masks.get(i).map(String::as_str)))
            .collect(),
        dhcp: row.dhcp_enabled.flag(),
        gateways: row.default_ip_gateway.texts(),
        dns_servers: row.dns_server_search_order.texts(),
    }
}

/// `192.168.1.20` and its mask (`255.255.255.0`, or a prefix length such as `64` for IPv6) as `192.168.1.20/24`;
/// the address alone when the mask is missing or not a mask.
pub fn address_with_prefix(address: &str, mask: Option<&str>) -> String {
    let address = address.trim();
    let prefix = mask.map(str::trim).and_then(|mask| {
        if let Ok(bits) = mask.parse::<u8>() {
            return (bits <= 128).then_some(bits);
        }
        let mask = u32::from(mask.parse::<Ipv4Addr>().ok()?);
        let ones = mask.leading_ones();
        // A mask's ones are contiguous: `255.0.255.0` is not one.
        (mask.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
    });
    match prefix {
        Some(prefix) => format!("{address}/{prefix}"),
        None => address.to_owned(),
    }
}

/// SMBIOS strings that vendors leave as placeholders and that would make every unbranded PC look alike.
const PLACEHOLDERS: &[&str] = &[
    "to be filled by o.e.m.",
    "to be filled by oem",
    "default string",
    "system serial number",
    "system product name",
    "system manufacturer",
    "chassis serial number",
    "base board serial number",
    "not specified",
    "not applicable",
    "not available",
    "none",
    "n/a",
    "unknown",
    "invalid",
    "o.e.m.",
    "oem",
    "0",
    "0123456789",
];

/// `text`, or empty when it is a placeholder (`To Be Filled By O.E.M.`, `0000000`, an all-zero or all-F UUID).
pub fn meaningful(text: &str) -> String {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let digits: Vec<char> = lower.chars().filter(|c| *c != '-' && *c != ' ').collect();
    let filler = !digits.is_empty() && (digits.iter().all(|c| *c == '0') || digits.iter().all(|c| *c == 'f'));
    if PLACEHOLDERS.contains(&lower.as_str()) || filler { String::new() } else { text.to_owned() }
}

/// A CIM_DATETIME (`20240115083012.500000+060`: local time, then its offset from UTC in minutes) as UTC. `None`
/// for anything else, including the wildcard form (`2024011508****.******+060`) WMI uses for unknown parts.
pub fn cim_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    let bytes = text.as_bytes();
    if bytes.len() != 25 || !text.is_ascii() || bytes[14] != b'.' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[range];
        if part.bytes().all(|b| b.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    let date = NaiveDate::from_ymd_opt(i32::try_from(number(0..4)?).ok()?, number(4..6)?, number(6..8)?)?;
    let local: NaiveDateTime =
        date.and_hms_micro_opt(number(8..10)?, number(10..12)?, number(12..14)?, number(15..21)?)?;
    let minutes = i64::from(number(22..25)?);
    let offset = match bytes[21] {
        b'+' => TimeDelta::try_minutes(minutes)?,
        b'-' => TimeDelta::try_minutes(-minutes)?,
        _ => return None,
    };
    Some(local.checked_sub_signed(offset)?.and_utc())
}

/// The date part of a CIM_DATETIME (`20230512000000.000000+000`) as `2023-05-12`; empty when it is not a date.
/// Firmware release dates carry a meaningless time and offset, so only the first eight digits count.
pub fn cim_date(text: &str) -> String {
    text.trim()
        .get(..8)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// What the PC is doing now: boot time from `Win32_OperatingSystem`, free space of the local disks, and the
/// logged-on users from `quser`'s output (`None` when it could not run), with `Win32_ComputerSystem.UserName`
/// (the console user) added when `quser` does not list it. `offset` is the PC's UTC offset now, which `quser`'s
/// local logon times are read in.
pub fn status(
    os: &[OperatingSystemRow],
    computer: &[ComputerSystemRow],
    logical_disks: &[LogicalDiskRow],
    quser: Option<&str>,
    offset: FixedOffset,
) -> Status {
    let mut users = quser.map(|text| parse_quser(text, offset)).unwrap_or_default();
    if let Some(console) = computer.first().map(|c| c.user_name.text()).filter(|n| !n.is_empty()) {
        // `CONTOSO\alice` at the console is `alice` to quser: keep quser's session and time, with the full name.
        let bare = console.rsplit('\\').next().unwrap_or(&console).to_owned();
        match users.iter_mut().find(|u| u.name.eq_ignore_ascii_case(&bare)) {
            Some(user) => user.name = console,
            None => users.push(LoggedOnUser { name: console, session: "console".into(), since: None }),
        }
    }
    Status {
        boot_time: os.first().and_then(|o| cim_datetime(&o.last_boot_up_time.text())),
        users,
        volumes: local_disks(logical_disks)
            .map(|v| VolumeUsage {
                mount: v.device_id.text(),
                size_bytes: v.size.u64().unwrap_or(0),
                free_bytes: v.free_space.u64().unwrap_or(0),
            })
            .collect(),
    }
}

/// The sessions `quser` (`query user`) lists:
///
/// ```text
///  USERNAME              SESSIONNAME        ID  STATE   IDLE TIME  LOGON TIME
/// >alice                 console             1  Active      none   1/15/2024 8:30 AM
///  bob                                       2  Disc        1:05   1/14/2024 5:12 PM
/// ```
///
/// The header is in the UI language, but the columns are fixed: the user name (which may hold spaces) is cut at
/// the column where the header's second word starts; after it come the session name (blank for a disconnected
/// session), the id, the state, the idle time and the logon time. Session names become `console`, `rdp`
/// (`rdp-tcp#3`) or `disconnected`; others (`ica-cgp#0`) are kept as they are.
pub fn parse_quser(text: &str, offset: FixedOffset) -> Vec<LoggedOnUser> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else { return Vec::new() };
    let header: Vec<char> = header.chars().skip(1).collect();
    let column = header
        .iter()
        .enumerate()
        .skip_while(|(_, c)| c.is_whitespace())
        .skip_while(|(_, c)| !c.is_whitespace())
        .find(|(_, c)| !c.is_whitespace())
        .map(|(i, _)| i);
    lines.filter_map(|line| quser_session(line, column, offset)).collect()
}

fn quser_session(line: &str, column: Option<usize>, offset: FixedOffset) -> Option<LoggedOnUser> {
    // The first character marks the caller's own session with `>`.
    let body: Vec<char> = line.chars().skip(1).collect();
    let by_column = column.filter(|&c| c > 0 && c < body.len() && body[c - 1].is_whitespace());
    let (name, rest): (String, String) = match by_column {
        Some(c) => (body[..c].iter().collect(), body[c..].iter().collect()),
        None => {
            let body: String = body.iter().collect();
            let body = body.trim_start();
            let split = body.find(char::is_whitespace).unwrap_or(body.len());
            (body[..split].to_owned(), body[split..].to_owned())
        }
    };
    let name = name.trim().to_owned();
    if name.is_empty() {
        return None;
    }
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    let (session, after) = match tokens.split_first() {
        Some((first, after)) if first.parse::<u32>().is_err() => (*first, after),
        _ => ("", &tokens[..]),
    };
    let session = match session.to_ascii_lowercase() {
        s if s.is_empty() => "disconnected".to_owned(),
        s if s.starts_with("rdp-tcp") => "rdp".to_owned(),
        s => s,
    };
    // After the id come the state and the idle time, each one word; the logon time is the rest.
    let since = after.get(3..).filter(|t| !t.is_empty()).and_then(|t| local_time(&t.join(" "), offset));
    Some(LoggedOnUser { name, session, since })
}

/// A logon time in the short date format of the PC's locale, read in `offset`. US (`1/15/2024 8:30 AM`), German
/// (`15.01.2024 08:30`), ISO-like (`2024/01/15 8:30`) and day-first (`15/01/2024 08:30`) forms are understood; a
/// slashed date with both parts 12 or under is read month-first with AM/PM and day-first without, as the
/// locales that print each do.
fn local_time(text: &str, offset: FixedOffset) -> Option<DateTime<Utc>> {
    const TWELVE_HOUR: &[&str] = &["%m/%d/%Y %I:%M %p", "%d/%m/%Y %I:%M %p"];
    const TWENTY_FOUR_HOUR: &[&str] =
        &["%d.%m.%Y %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M", "%d-%m-%Y %H:%M"];
    let text = text.trim();
    let naive = TWELVE_HOUR
        .iter()
        .chain(TWENTY_FOUR_HOUR)
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())?;
    Some(offset.from_local_datetime(&naive).single()?.with_timezone(&Utc))
}

/// Which Uninstall key an entry was found under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UninstallView<'a> {
    /// `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall`, read through the 64-bit view.
    Machine64,
    /// `HKLM\SOFTWARE\WOW6432Node\...\Uninstall`: what 32-bit installers registered.
    Machine32,
    /// `HKU\<sid>\Software\Microsoft\Windows\CurrentVersion\Uninstall`: a per-user install (Teams, Zoom, VS Code's
    /// user installer), visible only while that user's hive is loaded.
    User { sid: &'a str },
}

/// The type of a registry value, as far as the conversion cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegKind {
    /// `REG_SZ`, `REG_EXPAND_SZ` (not expanded: `InstallLocation` is shown as written).
    Text,
    /// `REG_DWORD`, little-endian.
    Dword,
    /// `REG_QWORD`, little-endian.
    Qword,
    Other,
}

/// A registry value read into what the conversion needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegData {
    Text(String),
    Number(u64),
    Other,
}

/// Longest registry string decoded, in UTF-16 units; the wire keeps far less, and a value can be megabytes.
const MAX_REG_TEXT_UNITS: usize = 4096;

impl RegData {
    /// Decodes a value's raw bytes: UTF-16LE up to the first NUL for text (unpaired surrogates replaced), the
    /// little-endian number for a DWORD or QWORD of the right length, [`RegData::Other`] for anything else.
    pub fn decode(kind: RegKind, bytes: &[u8]) -> RegData {
        match kind {
            RegKind::Text => {
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                    .take_while(|unit| *unit != 0)
                    .take(MAX_REG_TEXT_UNITS)
                    .collect();
                RegData::Text(String::from_utf16_lossy(&units))
            }
            RegKind::Dword => match <[u8; 4]>::try_from(bytes) {
                Ok(raw) => RegData::Number(u64::from(u32::from_le_bytes(raw))),
                Err(_) => RegData::Other,
            },
            RegKind::Qword => match <[u8; 8]>::try_from(bytes) {
                Ok(raw) => RegData::Number(u64::from_le_bytes(raw)),
                Err(_) => RegData::Other,
            },
            RegKind::Other => RegData::Other,
        }
    }

    /// As text, trimmed; a number prints as one.
    pub fn text(&self) -> String {
        match self {
            RegData::Text(text) => text.trim().to_owned(),
            RegData::Number(n) => n.to_string(),
            RegData::Other => String::new(),
        }
    }

    /// As a number; a numeric string (`"1"`, as some installers write flags) reads as one.
    pub fn number(&self) -> Option<u64> {
        match self {
            RegData::Number(n) => Some(*n),
            RegData::Text(text) => text.trim().parse().ok(),
            RegData::Other => None,
        }
    }
}

/// Whether a subkey of `HKU` is a user's hive: not `.DEFAULT` (the logon screen's) and not a `<sid>_Classes` hive,
/// which holds file associations rather than `Software\Microsoft\...`.
pub fn is_user_hive(name: &str) -> bool {
    !name.is_empty() && !name.eq_ignore_ascii_case(".default") && !name.to_ascii_lowercase().ends_with("_classes")
}

/// The scopes (`user:<SID>`) of the users who have a profile on the PC (`ProfileList`'s subkeys) but whose hive is
/// not loaded now (`loaded`, the user hives under `HKU`): signed out, so their per-user installs cannot be read this
/// time. The report names them, and the backend keeps those users' items as they were instead of logging them as
/// removed at every sign-out and installed again at every sign-in. Only real accounts' profiles count
/// (`S-1-5-21-…`, and Azure AD's `S-1-12-1-…`); the service accounts' (`S-1-5-18/19/20`) never hold installs.
pub fn unread_user_scopes(profiles: &[String], loaded: &[String]) -> Vec<String> {
    let account = |sid: &str| sid.starts_with("S-1-5-21-") || sid.starts_with("S-1-12-1-");
    let mut scopes: Vec<String> = profiles
        .iter()
        .filter(|sid| account(sid) && !loaded.iter().any(|l| l.eq_ignore_ascii_case(sid)))
        .map(|sid| format!("user:{sid}"))
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// One subkey of an Uninstall key as a [`Software`] item: `values` are the subkey's values as read (names in any
/// case). `None` for what Programs and Features does not show either: entries without a `DisplayName`, those
/// marked `SystemComponent` (runtimes' and drivers' own parts), and updates and patches, which name their product
/// in `ParentKeyName` (Office's and Visual Studio's hotfixes; they belong to an update inventory, and would swamp
/// this one). `WindowsInstaller` = 1 makes the source `msi`, else `registry`.
pub fn software_from_uninstall_key(
    view: UninstallView<'_>,
    key_name: &str,
    values: &[(String, RegData)],
) -> Option<Software> {
    let value = |name: &str| values.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v);
    let text = |name: &str| value(name).map(RegData::text).unwrap_or_default();
    let number = |name: &str| value(name).and_then(RegData::number);
    let name = text("DisplayName");
    if name.is_empty() || number("SystemComponent") == Some(1) || !text("ParentKeyName").is_empty() {
        return None;
    }
    let (id, arch, scope) = match view {
        UninstallView::Machine64 => (format!("HKLM64\\{key_name}"), "x64", "machine".to_owned()),
        UninstallView::Machine32 => (format!("HKLM32\\{key_name}"), "x86", "machine".to_owned()),
        UninstallView::User { sid } => (format!("HKU\\{sid}\\{key_name}"), "", format!("user:{sid}")),
    };
    let version = Some(text("DisplayVersion")).filter(|v| !v.is_empty()).unwrap_or_else(|| {
        // Some installers leave only the numeric pair.
        match (number("VersionMajor"), number("VersionMinor")) {
            (Some(major), Some(minor)) => format!("{major}.{minor}"),
            (Some(major), None) => major.to_string(),
            _ => String::new(),
        }
    });
    Some(Software {
        source: if number("WindowsInstaller") == Some(1) { "msi" } else { "registry" }.to_owned(),
        id,
        name,
        version,
        publisher: text("Publisher"),
        install_date: install_date(&text("InstallDate")),
        location: text("InstallLocation").trim_matches('"').to_owned(),
        arch: arch.to_owned(),
        scope,
    })
}

/// `InstallDate` as `YYYY-MM-DD`. It should be `YYYYMMDD`; installers also write `2024-01-15`, `2024/01/15`, a
/// locale's short date or junk. Only the year-first forms are unambiguous, so only those are kept.
fn install_date(text: &str) -> String {
    ["%Y%m%d", "%Y-%m-%d", "%Y/%m/%d"]
        .iter()
        .find_map(|format| NaiveDate::parse_from_str(text.trim(), format).ok())
        .filter(|date| (1980..=2100).contains(&date.year()))
        .map(|date| date.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATITUDE: &str = include_str!("../../../tests/fixtures/inventory/windows/wmi-latitude-7420.json");
    const QUSER: &str = include_str!("../../../tests/fixtures/inventory/windows/quser.txt");

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn plus_one_hour() -> FixedOffset {
        FixedOffset::east_opt(3600).unwrap()
    }

    #[test]
    fn a_recorded_laptop_converts_to_hardware() {
        let rows: WmiHardware = serde_json::from_str(LATITUDE).unwrap();
        let hw = hardware(&rows);
        assert_eq!(
            hw.os,
            OsInfo {
                name: "Microsoft Windows 11 Pro".into(),
                version: "10.0.22631".into(),
                build: "22631.3447".into(),
                edition: "Professional".into(),
                arch: "x86_64".into(),
            }
        );
        assert_eq!(hw.hostname, "PC-0042");
        assert_eq!((hw.domain.as_str(), hw.workgroup.as_str()), ("corp.contoso.com", ""));
        assert_eq!(
            hw.system,
            SystemInfo {
                manufacturer: "Dell Inc.".into(),
                model: "Latitude 7420".into(),
                serial: "8XK2Q93".into(),
                uuid: "4C4C4544-0058-4B10-8032-B8C04F513933".into(),
            }
        );
        assert_eq!(
            hw.bios,
            BiosInfo {
                vendor: "Dell Inc.".into(),
                version: "1.31.1".into(),
                date: "2023-11-08".into(),
                firmware: "uefi".into()
            }
        );
        assert_eq!(
            hw.cpu,
            CpuInfo {
                model: "11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz".into(),
                vendor: "GenuineIntel".into(),
                sockets: 1,
                cores: 4,
                threads: 8,
                max_mhz: 1805,
            }
        );
        assert_eq!(hw.memory.total_bytes, 16_856_256_512);
        assert_eq!(hw.memory.modules.len(), 2);
        assert_eq!(
            hw.memory.modules[0],
            MemoryModule {
                slot: "DIMM A".into(),
                size_bytes: 8_589_934_592,
                speed_mts: 3200,
                manufacturer: "Micron".into(),
                part_number: "MTC8C1084S1SC32BA1".into(),
            }
        );
        assert_eq!(hw.memory.modules[1].manufacturer, "", "`Unknown` is no manufacturer");
        assert_eq!(
            hw.disks,
            vec![
                Disk {
                    name: r"\\.\PHYSICALDRIVE0".into(),
                    model: "PM9A1 NVMe Samsung 512GB".into(),
                    serial: "0025_3881_0142_1234.".into(),
                    size_bytes: 512_105_932_800,
                    media: "ssd".into(),
                    bus: "nvme".into(),
                },
                Disk {
                    name: r"\\.\PHYSICALDRIVE1".into(),
                    model: "SanDisk Extreme USB Device".into(),
                    serial: "".into(),
                    size_bytes: 61_530_000_000,
                    media: "".into(),
                    bus: "usb".into(),
                },
            ]
        );
        assert_eq!(
            hw.volumes,
            vec![Volume {
                mount: "C:".into(),
                file_system: "NTFS".into(),
                size_bytes: 510_770_802_688,
                label: "Windows".into()
            }],
            "only local disks: the USB stick (2) and the network drive (4) are not"
        );
        assert_eq!(hw.network.len(), 2, "the adapter without IP is left out");
        assert_eq!(
            hw.network[0],
            NetworkAdapter {
                name: "Intel(R) Wi-Fi 6 AX201 160MHz".into(),
                mac: "a4:c3:f0:12:34:56".into(),
                addresses: vec!["192.168.1.23/24".into(), "fe80::1c2d:3e4f:5a6b:7c8d/64".into()],
                dhcp: Some(true),
                gateways: vec!["192.168.1.1".into()],
                dns_servers: vec!["192.168.1.1".into(), "1.1.1.1".into()],
            }
        );
        assert_eq!(hw.network[1].dhcp, Some(false));
        assert_eq!(hw.network[1].gateways, Vec::<String>::new(), "a null gateway list is an empty one");
        assert_eq!(
            hw.gpus,
            vec![Gpu {
                name: "Intel(R) Iris(R) Xe Graphics".into(),
                vendor: "Intel Corporation".into(),
                driver_version: "31.0.101.4502".into(),
                memory_bytes: 1_073_741_824,
            }]
        );
        assert_eq!(hw.timezone, "W. Europe Standard Time");
    }

    #[test]
    fn a_workgroup_pc_reports_its_workgroup_and_no_domain() {
        let rows = WmiHardware {
            computer: vec![ComputerSystemRow {
                name: Loose::Text("KIOSK-1".into()),
                domain: Loose::Text("WORKGROUP".into()),
                part_of_domain: Loose::Bool(false),
                ..Default::default()
            }],
            ..Default::default()
        };
        let hw = hardware(&rows);
        assert_eq!((hw.hostname.as_str(), hw.domain.as_str(), hw.workgroup.as_str()), ("KIOSK-1", "", "WORKGROUP"));
    }

    #[test]
    fn cim_datetimes_are_read_as_utc() {
        assert_eq!(cim_datetime("20240115083012.500000+060"), Some(utc("2024-01-15T07:30:12.5Z")));
        assert_eq!(cim_datetime("20240115083012.000000-300"), Some(utc("2024-01-15T13:30:12Z")));
        assert_eq!(cim_datetime(" 20240101003000.000000+120 "), Some(utc("2023-12-31T22:30:00Z")));
        for bad in [
            "",
            "2024011508****.******+060",
            "20241315083012.000000+060",
            "20240115083012.000000*060",
            "20240115083012,000000+060",
            "2024-01-15T08:30:12Z",
            "20240115083012.000000+06",
            "２０２４0115083012.000000+060",
            "99999999999999.999999+999",
        ] {
            assert_eq!(cim_datetime(bad), None, "{bad:?}");
        }
        assert_eq!(cim_date("20230512000000.000000+000"), "2023-05-12");
        assert_eq!(cim_date("20231108"), "2023-11-08");
        assert_eq!(cim_date("11/08/2023"), "");
        assert_eq!(cim_date("é"), "");
    }

    #[test]
    fn masks_become_prefix_lengths() {
        assert_eq!(address_with_prefix("10.1.2.3", Some("255.255.254.0")), "10.1.2.3/23");
        assert_eq!(address_with_prefix("10.1.2.3", Some("0.0.0.0")), "10.1.2.3/0");
        assert_eq!(address_with_prefix("10.1.2.3", Some("255.255.255.255")), "10.1.2.3/32");
        assert_eq!(address_with_prefix("fe80::1", Some("64")), "fe80::1/64");
        assert_eq!(address_with_prefix("10.1.2.3", Some("255.0.255.0")), "10.1.2.3");
        assert_eq!(address_with_prefix("10.1.2.3", Some("200")), "10.1.2.3");
        assert_eq!(address_with_prefix("10.1.2.3", Some("mask")), "10.1.2.3");
        assert_eq!(address_with_prefix("10.1.2.3", None), "10.1.2.3");
    }

    #[test]
    fn placeholders_are_no_values() {
        for placeholder in ["To Be Filled By O.E.M.", "Default string", "  0 ", "00000000-0000-0000-0000-000000000000"]
        {
            assert_eq!(meaningful(placeholder), "", "{placeholder:?}");
        }
        assert_eq!(meaningful("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"), "");
        assert_eq!(meaningful(" 8XK2Q93 "), "8XK2Q93");
        assert_eq!(meaningful("VMware-56 4d 1a 2b"), "VMware-56 4d 1a 2b");
    }

    #[test]
    fn hostile_rows_cost_their_fields_not_the_report() {
        for raw in [
            "{}",
            r#"{"Win32_OperatingSystem":[{}],"Win32_Processor":[{},{}],"Win32_DiskDrive":[{"Size":null}]}"#,
            r#"{"Win32_OperatingSystem":[{"Caption":{"a":[1,2]},"Version":[1],"BuildNumber":true,
                "OperatingSystemSKU":"forty-eight","LastBootUpTime":12}],
               "Win32_ComputerSystem":[{"TotalPhysicalMemory":-5,"PartOfDomain":"maybe","Domain":7}],
               "Win32_PhysicalMemory":[{"Capacity":1e300,"Speed":"fast","ConfiguredClockSpeed":99999999999}],
               "Win32_Processor":[{"NumberOfCores":4294967295},{"NumberOfCores":4294967295,"MaxClockSpeed":-1}],
               "Win32_LogicalDisk":[{"DeviceID":"C:","DriveType":"3","Size":"12x"}],
               "Win32_NetworkAdapterConfiguration":[{"IPAddress":"10.0.0.1","IPSubnet":[null,{}],
                "DHCPEnabled":2,"MACAddress":["AA"]}],
               "Registry":{"ubr":null}}"#,
        ] {
            let rows: WmiHardware = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            let hw = hardware(&rows);
            let _ = status(&rows.os, &rows.computer, &rows.logical_disks, Some(""), plus_one_hour());
            if raw.contains("forty-eight") {
                assert_eq!(hw.os.name, "");
                assert_eq!(hw.os.version, "");
                assert_eq!(hw.os.edition, "");
                assert_eq!(hw.memory.total_bytes, 0);
                assert_eq!(hw.memory.modules[0].size_bytes, 0, "1e300 is no size");
                assert_eq!(hw.cpu.cores, u32::MAX, "sums saturate");
                assert_eq!(hw.cpu.sockets, 2);
                assert_eq!(hw.volumes[0].size_bytes, 0);
                assert_eq!(hw.network[0].addresses, ["10.0.0.1"]);
                assert_eq!(hw.network[0].dhcp, None);
                assert_eq!(hw.network[0].mac, "");
            }
        }
        let huge = format!(r#"{{"Win32_BIOS":[{{"SMBIOSBIOSVersion":"{}"}}]}}"#, "x".repeat(1 << 20));
        let rows: WmiHardware = serde_json::from_str(&huge).unwrap();
        assert_eq!(hardware(&rows).bios.version.len(), 1 << 20, "cut later, by the wire's `bound`");
        let many = format!(
            r#"{{"Win32_NetworkAdapterConfiguration":[{{"IPAddress":[{}]}}]}}"#,
            ["\"10.0.0.1\""; 5000].join(",")
        );
        let rows: WmiHardware = serde_json::from_str(&many).unwrap();
        assert_eq!(hardware(&rows).network[0].addresses.len(), MAX_LOOSE_LIST);
    }

    #[test]
    fn loose_values_read_numbers_from_strings_and_strings_from_numbers() {
        assert_eq!(Loose::Text(" 17179869184 ".into()).u64(), Some(17_179_869_184));
        assert_eq!(Loose::Text("-1".into()).u64(), None);
        assert_eq!(Loose::Signed(-1).u64(), None);
        assert_eq!(Loose::Float(2.5).u64(), None);
        assert_eq!(Loose::Float(f64::NAN).u64(), None);
        assert_eq!(Loose::Float(f64::INFINITY).text(), "");
        assert_eq!(Loose::Unsigned(u64::MAX).u32(), None);
        assert_eq!(Loose::Unsigned(1234).text(), "1234");
        assert_eq!(Loose::Text("TRUE".into()).flag(), Some(true));
        assert_eq!(Loose::Unsigned(1).flag(), Some(true));
        assert_eq!(Loose::Text("yes".into()).flag(), None);
        assert_eq!(Loose::Text(" a ".into()).texts(), ["a"]);
        assert_eq!(Loose::Null.texts(), Vec::<String>::new());
    }

    #[test]
    fn row_types_select_what_wmi_names() {
        // The `wmi` crate queries `SELECT <serde field names> FROM <serde struct name>`; a misspelt name would only
        // fail on a Windows PC, so both are pinned here.
        assert_eq!(
            select::<OperatingSystemRow>(),
            "SELECT Caption, Version, BuildNumber, OSArchitecture, LastBootUpTime, OperatingSystemSKU, ProductType \
             FROM Win32_OperatingSystem"
        );
        assert_eq!(
            select::<NetworkAdapterConfigurationRow>(),
            "SELECT Description, IPEnabled, MACAddress, IPAddress, IPSubnet, DHCPEnabled, DefaultIPGateway, \
             DNSServerSearchOrder FROM Win32_NetworkAdapterConfiguration"
        );
        assert_eq!(
            select::<BiosRow>(),
            "SELECT Manufacturer, SMBIOSBIOSVersion, ReleaseDate, SerialNumber FROM Win32_BIOS"
        );
        assert_eq!(
            select::<ComputerSystemProductRow>(),
            "SELECT IdentifyingNumber, UUID FROM Win32_ComputerSystemProduct"
        );
        assert_eq!(
            select::<PhysicalDiskRow>(),
            "SELECT DeviceId, FriendlyName, SerialNumber, MediaType, BusType, Size FROM MSFT_PhysicalDisk"
        );
        assert_eq!(
            select::<DiskDriveRow>(),
            "SELECT DeviceID, Index, Model, SerialNumber, Size, InterfaceType, MediaType FROM Win32_DiskDrive"
        );
        assert_eq!(
            select::<VideoControllerRow>(),
            "SELECT Name, AdapterCompatibility, DriverVersion, AdapterRAM FROM Win32_VideoController"
        );
        for (select, class) in [
            (select::<ComputerSystemRow>(), ComputerSystemRow::CLASS),
            (select::<ProcessorRow>(), ProcessorRow::CLASS),
            (select::<PhysicalMemoryRow>(), PhysicalMemoryRow::CLASS),
            (select::<LogicalDiskRow>(), LogicalDiskRow::CLASS),
            (select::<TimeZoneRow>(), TimeZoneRow::CLASS),
        ] {
            assert!(select.ends_with(&format!(" FROM {class}")), "{select}");
            let fields = select.trim_start_matches("SELECT ").split(" FROM ").next().unwrap();
            assert!(fields.split(", ").all(|f| f.starts_with(|c: char| c.is_ascii_uppercase())), "{select}");
        }
    }

    /// The query the `wmi` crate builds for `T`, found the way it finds it: a deserializer that only records the
    /// struct's name and fields.
    fn select<T: serde::de::DeserializeOwned>() -> String {
        struct Names<'a>(&'a mut Option<(&'static str, &'static [&'static str])>);
        impl<'de> Deserializer<'de> for Names<'_> {
            type Error = serde::de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("names only"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                name: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                *self.0 = Some((name, fields));
                Err(de::Error::custom("names only"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 char str string bytes byte_buf option unit unit_struct
                newtype_struct seq tuple tuple_struct map enum identifier ignored_any
            }
        }
        let mut names = None;
        let _ = T::deserialize(Names(&mut names));
        let (name, fields) = names.unwrap();
        format!("SELECT {} FROM {name}", fields.join(", "))
    }

    #[test]
    fn quser_sessions_are_console_rdp_or_disconnected() {
        let users = parse_quser(QUSER, plus_one_hour());
        assert_eq!(
            users,
            vec![
                LoggedOnUser {
                    name: "alice".into(),
                    session: "console".into(),
                    since: Some(utc("2024-01-15T07:30:00Z"))
                },
                LoggedOnUser {
                    name: "bob".into(),
                    session: "disconnected".into(),
                    since: Some(utc("2024-01-14T16:12:00Z"))
                },
                LoggedOnUser {
                    name: "carol smith".into(),
                    session: "rdp".into(),
                    since: Some(utc("2024-01-15T08:02:00Z"))
                },
                LoggedOnUser {
                    name: "svc-citrix".into(),
                    session: "ica-cgp#0".into(),
                    since: Some(utc("2024-01-15T11:45:00Z"))
                },
            ]
        );
    }

    #[test]
    fn quser_in_german_reads_day_first_times() {
        let text = " BENUTZERNAME          SITZUNGSNAME       ID  STATUS  LEERLAUF   ANMELDEZEIT\n\
                    >max                   console             1  Aktiv       Kein   15.01.2024 08:30\n";
        let users = parse_quser(text, plus_one_hour());
        assert_eq!(users[0].name, "max");
        assert_eq!(users[0].since, Some(utc("2024-01-15T07:30:00Z")));
    }

    #[test]
    fn quser_garbage_yields_what_it_can() {
        assert_eq!(parse_quser("", plus_one_hour()), vec![]);
        assert_eq!(parse_quser("No User exists for *\n", plus_one_hour()), vec![]);
        let odd = parse_quser("x\n>ü\n  \n  dave\n>eve rdp-tcp#1 3 Active . 13/13/2024 99:99\n", plus_one_hour());
        assert_eq!(odd.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["ü", "dave", "eve"]);
        assert_eq!(odd[2].session, "rdp");
        assert_eq!(odd[2].since, None);
        let long = format!(" USERNAME SESSIONNAME\n {} console 1 Active none 1/1/2024 1:00 AM\n", "n".repeat(100_000));
        assert_eq!(parse_quser(&long, plus_one_hour())[0].name.len(), 100_000);
    }

    #[test]
    fn status_adds_the_console_user_quser_did_not_list() {
        let computer =
            vec![ComputerSystemRow { user_name: Loose::Text(r"CONTOSO\alice".into()), ..Default::default() }];
        let os = vec![OperatingSystemRow {
            last_boot_up_time: Loose::Text("20240115080000.000000+060".into()),
            ..Default::default()
        }];
        let disks = vec![
            LogicalDiskRow {
                device_id: Loose::Text("C:".into()),
                drive_type: Loose::Unsigned(3),
                size: Loose::Text("510770802688".into()),
                free_space: Loose::Unsigned(123_456_789),
                ..Default::default()
            },
            LogicalDiskRow {
                device_id: Loose::Text("Z:".into()),
                drive_type: Loose::Unsigned(4),
                ..Default::default()
            },
        ];
        let without = status(&os, &computer, &disks, None, plus_one_hour());
        assert_eq!(without.boot_time, Some(utc("2024-01-15T07:00:00Z")));
        assert_eq!(
            without.users,
            vec![LoggedOnUser { name: r"CONTOSO\alice".into(), session: "console".into(), since: None }]
        );
        assert_eq!(
            without.volumes,
            vec![VolumeUsage { mount: "C:".into(), size_bytes: 510_770_802_688, free_bytes: 123_456_789 }]
        );
        let with = status(&os, &computer, &disks, Some(QUSER), plus_one_hour());
        assert_eq!(with.users.len(), 4, "alice is quser's console session, not a fifth user");
        assert_eq!(with.users[0].name, r"CONTOSO\alice");
        assert_eq!(with.users[0].since, Some(utc("2024-01-15T07:30:00Z")));
    }

    fn text(value: &str) -> RegData {
        RegData::Text(value.into())
    }

    fn values(pairs: &[(&str, RegData)]) -> Vec<(String, RegData)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect()
    }

    #[test]
    fn uninstall_entries_become_software() {
        let seven_zip = values(&[
            ("DisplayName", text("7-Zip 23.01 (x64)")),
            ("DisplayVersion", text("23.01")),
            ("Publisher", text("Igor Pavlov")),
            ("InstallLocation", text("C:\\Program Files\\7-Zip\\")),
            ("NoModify", RegData::Number(1)),
        ]);
        assert_eq!(
            software_from_uninstall_key(UninstallView::Machine64, "7-Zip", &seven_zip),
            Some(Software {
                source: "registry".into(),
                id: "HKLM64\\7-Zip".into(),
                name: "7-Zip 23.01 (x64)".into(),
                version: "23.01".into(),
                publisher: "Igor Pavlov".into(),
                install_date: "".into(),
                location: "C:\\Program Files\\7-Zip\\".into(),
                arch: "x64".into(),
                scope: "machine".into(),
            })
        );
        let reader = values(&[
            ("displayname", text("Adobe Acrobat Reader DC")),
            ("DisplayVersion", text("23.008.20470")),
            ("InstallDate", text("20240115")),
            ("WindowsInstaller", RegData::Number(1)),
            ("InstallLocation", text("\"C:\\Program Files (x86)\\Adobe\\\"")),
        ]);
        let item =
            software_from_uninstall_key(UninstallView::Machine32, "{AC76BA86-7AD7-1033-7B44-AC0F074E4100}", &reader)
                .unwrap();
        assert_eq!(item.source, "msi");
        assert_eq!(item.id, "HKLM32\\{AC76BA86-7AD7-1033-7B44-AC0F074E4100}");
        assert_eq!((item.arch.as_str(), item.install_date.as_str()), ("x86", "2024-01-15"));
        assert_eq!(item.location, "C:\\Program Files (x86)\\Adobe\\");
        let sid = "S-1-5-21-1004336348-1177238915-682003330-1001";
        let zoom = values(&[
            ("DisplayName", text("Zoom")),
            ("VersionMajor", RegData::Number(5)),
            ("VersionMinor", RegData::Number(17)),
        ]);
        let item = software_from_uninstall_key(UninstallView::User { sid }, "ZoomUMX", &zoom).unwrap();
        assert_eq!(item.id, format!("HKU\\{sid}\\ZoomUMX"));
        assert_eq!(item.scope, format!("user:{sid}"));
        assert_eq!((item.arch.as_str(), item.version.as_str()), ("", "5.17"));
    }

    #[test]
    fn hidden_entries_updates_and_nameless_keys_are_skipped() {
        let view = UninstallView::Machine64;
        assert_eq!(software_from_uninstall_key(view, "k", &values(&[("DisplayVersion", text("1"))])), None);
        assert_eq!(software_from_uninstall_key(view, "k", &values(&[("DisplayName", text("   "))])), None);
        let component = values(&[("DisplayName", text("Runtime part")), ("SystemComponent", RegData::Number(1))]);
        assert_eq!(software_from_uninstall_key(view, "k", &component), None);
        let as_text = values(&[("DisplayName", text("Runtime part")), ("SystemComponent", text("1"))]);
        assert_eq!(software_from_uninstall_key(view, "k", &as_text), None);
        let patch = values(&[("DisplayName", text("Update for Office (KB5002)")), ("ParentKeyName", text("OFFICE16"))]);
        assert_eq!(software_from_uninstall_key(view, "k", &patch), None);
        let shown = values(&[("DisplayName", text("Visible")), ("SystemComponent", RegData::Number(0))]);
        assert!(software_from_uninstall_key(view, "k", &shown).is_some());
    }

    #[test]
    fn install_dates_are_kept_only_when_unambiguous() {
        for (raw, date) in [
            ("20240115", "2024-01-15"),
            ("2024-01-15", "2024-01-15"),
            ("2024/1/5", "2024-01-05"),
            ("1/15/2024", ""),
            ("20241301", ""),
            ("00000000", ""),
            ("19000101", ""),
            ("yesterday", ""),
            ("", ""),
        ] {
            assert_eq!(install_date(raw), date, "{raw:?}");
        }
    }

    #[test]
    fn registry_values_decode_from_raw_bytes() {
        let utf16 = |s: &str| s.encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>();
        assert_eq!(RegData::decode(RegKind::Text, &utf16("Zoom\0")), text("Zoom"));
        assert_eq!(RegData::decode(RegKind::Text, &utf16("Zoom")), text("Zoom"), "a missing NUL is fine");
        assert_eq!(RegData::decode(RegKind::Text, &utf16("a\0junk")), text("a"));
        assert_eq!(RegData::decode(RegKind::Text, &[0x41, 0x00, 0x42]), text("A"), "an odd byte is dropped");
        assert_eq!(RegData::decode(RegKind::Text, &[0x00, 0xD8, 0x41, 0x00]), text("\u{FFFD}A"));
        assert_eq!(RegData::decode(RegKind::Text, &[]), text(""));
        let long = utf16(&"x".repeat(100_000));
        assert_eq!(RegData::decode(RegKind::Text, &long), text(&"x".repeat(MAX_REG_TEXT_UNITS)));
        assert_eq!(RegData::decode(RegKind::Dword, &[1, 0, 0, 0]), RegData::Number(1));
        assert_eq!(RegData::decode(RegKind::Dword, &[1, 0, 0]), RegData::Other);
        assert_eq!(RegData::decode(RegKind::Qword, &[0, 0, 0, 0, 1, 0, 0, 0]), RegData::Number(1 << 32));
        assert_eq!(RegData::decode(RegKind::Qword, &[0; 4]), RegData::Other);
        assert_eq!(RegData::decode(RegKind::Other, &[1, 2, 3]), RegData::Other);
    }

    #[test]
    fn only_users_own_hives_are_read() {
        assert!(is_user_hive("S-1-5-21-1004336348-1177238915-682003330-1001"));
        assert!(is_user_hive("S-1-5-18"));
        assert!(!is_user_hive("S-1-5-21-1004336348-1177238915-682003330-1001_Classes"));
        let profiles: Vec<String> =
            ["S-1-5-18", "S-1-5-21-1-2-3-1001", "S-1-5-21-1-2-3-1002", "S-1-12-1-9-9-9-9"].map(String::from).to_vec();
        let loaded = vec!["s-1-5-21-1-2-3-1001".to_owned(), ".DEFAULT".to_owned()];
        assert_eq!(
            unread_user_scopes(&profiles, &loaded),
            ["user:S-1-12-1-9-9-9-9", "user:S-1-5-21-1-2-3-1002"],
            "signed-out accounts, not the service accounts, not the signed-in one"
        );
        assert!(!is_user_hive(".DEFAULT"));
        assert!(!is_user_hive(""));
    }
}
