//! Made-up inventories for the fleet simulator: each simulated PC has a stable hardware record and a software list
//! drawn from a fleet-wide catalogue of titles (so titles are shared across PCs, as in a real fleet), and every
//! collection after the first changes a few items (an upgrade, an install, a removal), so change-only reporting
//! and the backend's change log are exercised at fleet scale. Deterministic per pc id.

use std::sync::atomic::{AtomicU64, Ordering};

use kanade_shared::inventory::{
    CpuInfo, Disk, Hardware, MemoryInfo, NetworkAdapter, OsInfo, Software, SoftwareList, Status, SystemInfo, Volume,
    VolumeUsage,
};

use super::Kinds;
use super::collect::Collected;

/// Titles in the fleet-wide catalogue each PC draws its software from.
const CATALOGUE: u64 = 2_000;

/// One simulated PC's inventory.
pub struct SyntheticPc {
    seed: u64,
    name: String,
    items: usize,
    churn: usize,
    cycle: AtomicU64,
}

impl SyntheticPc {
    /// `items` software items; `churn` of them change with every collection after the first.
    pub fn new(pc: &str, items: usize, churn: usize) -> Self {
        Self { seed: fnv(pc.as_bytes()), name: pc.to_owned(), items, churn, cycle: AtomicU64::new(0) }
    }

    pub fn collect(&self) -> Kinds {
        let cycle = self.cycle.fetch_add(1, Ordering::Relaxed);
        Kinds {
            hardware: Collected::new(self.hardware()),
            software: Collected::new(self.software(cycle)),
            status: Collected::new(Status {
                boot_time: None,
                users: Vec::new(),
                volumes: vec![VolumeUsage {
                    mount: "C:".into(),
                    size_bytes: 256 << 30,
                    free_bytes: (64 << 30) + (self.seed % 1024) * (1 << 20),
                }],
            }),
        }
    }

    fn hardware(&self) -> Hardware {
        let models = ["Latitude 5440", "ThinkPad T14 Gen 4", "EliteBook 840 G10", "OptiPlex 7010"];
        let builds = ["22631.4602", "22631.4751", "19045.5247", "26100.2605"];
        let pick = |list: &[&str], salt: u64| list[((self.seed ^ salt) % list.len() as u64) as usize].to_owned();
        Hardware {
            os: OsInfo {
                name: "Microsoft Windows 11 Pro".into(),
                version: "10.0".into(),
                build: pick(&builds, 1),
                edition: "Professional".into(),
                arch: "x86_64".into(),
            },
            hostname: self.name.clone(),
            workgroup: "WORKGROUP".into(),
            system: SystemInfo {
                manufacturer: "Simulated".into(),
                model: pick(&models, 2),
                serial: format!("SIM{:010X}", self.seed & 0xff_ffff_ffff),
                uuid: String::new(),
            },
            cpu: CpuInfo {
                model: "Simulated CPU @ 2.40GHz".into(),
                sockets: 1,
                cores: 4,
                threads: 8,
                ..Default::default()
            },
            memory: MemoryInfo { total_bytes: [8u64, 16, 32][(self.seed % 3) as usize] << 30, modules: Vec::new() },
            disks: vec![Disk {
                name: "disk0".into(),
                model: "SIM NVMe".into(),
                size_bytes: 256 << 30,
                ..Default::default()
            }],
            volumes: vec![Volume {
                mount: "C:".into(),
                file_system: "NTFS".into(),
                size_bytes: 256 << 30,
                ..Default::default()
            }],
            network: vec![NetworkAdapter {
                name: "Ethernet".into(),
                mac: format!(
                    "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
                    self.seed as u8,
                    (self.seed >> 8) as u8,
                    (self.seed >> 16) as u8,
                    (self.seed >> 24) as u8
                ),
                dhcp: Some(true),
                ..Default::default()
            }],
            timezone: "Europe/Berlin".into(),
            ..Default::default()
        }
    }

    /// The PC's titles are `items` consecutive catalogue entries from a start of its own; in cycle `c` the first
    /// `churn` of them have moved on `c` versions, so each collection changes exactly `churn` items.
    fn software(&self, cycle: u64) -> SoftwareList {
        let start = self.seed % CATALOGUE;
        let items = (0..self.items as u64)
            .map(|i| {
                let title = (start + i) % CATALOGUE;
                let bumped = if (i as usize) < self.churn { cycle } else { 0 };
                Software {
                    source: "registry".into(),
                    id: format!("HKLM64\\{{SIM-{title:05}}}"),
                    name: format!("Simulated App {title:05}"),
                    version: format!("{}.{}.{}", 1 + title % 7, (self.seed + title) % 3, bumped),
                    publisher: format!("Vendor {}", title % 50),
                    install_date: "2026-01-15".into(),
                    arch: "x64".into(),
                    scope: "machine".into(),
                    ..Default::default()
                }
            })
            .collect();
        SoftwareList { items, ..Default::default() }
    }
}

/// FNV-1a: a stable hash of the pc id, the same in every build (std's hasher is seeded per process).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_collection_changes_exactly_churn_items() {
        let pc = SyntheticPc::new("sim-1", 200, 3);
        let first = pc.collect().software.data;
        let second = pc.collect().software.data;
        assert_eq!(first.items.len(), 200);
        let changed = first.items.iter().zip(&second.items).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 3);
        assert_eq!(SyntheticPc::new("sim-1", 200, 3).collect().software.data, first, "deterministic per pc");
        assert_eq!(pc.collect().hardware.data, SyntheticPc::new("sim-1", 1, 0).collect().hardware.data);
    }
}
