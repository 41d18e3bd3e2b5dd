//! Inventory on Linux (and any other Unix but macOS): reads `/etc`, `/proc`, `/sys`, `/run` and dpkg's database
//! under a [`HostRoot`], asks the package managers that keep no readable database (rpm, snap, flatpak) through
//! the bounded [`run`], and leaves every format to the pure parsers in `crate::inventory::parse`. `sysinfo` only
//! fills what the files did not say, and only for the real host.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use kanade_shared::inventory::{
    BiosInfo, CpuInfo, Disk, Gpu, Hardware, LoggedOnUser, MemoryInfo, MemoryModule, NetworkAdapter, OsInfo, Software,
    SoftwareList, Status, SystemInfo, Volume, VolumeUsage,
};
use sysinfo::{CpuRefreshKind, Networks, System};

use crate::inventory::collect::{COMMAND_MAX_BYTES, COMMAND_TIMEOUT, Collected, CommandError, HostRoot, run};
use crate::inventory::parse::linux::{self, DhcpEvidence, Mount};
use crate::inventory::parse::{dpkg, flatpak, rpm, snap};

/// The most read of a one-line sysfs or procfs attribute, or a small configuration file.
const SMALL_FILE: u64 = 64 * 1024;
/// The most read of `/proc/cpuinfo` (about 1.5 KiB per logical processor), the mount table or `/etc/hosts`.
const LARGE_FILE: u64 = 8 * 1024 * 1024;
/// The most read of dpkg's status file (about 2.5 KiB per package).
const DPKG_STATUS_MAX: u64 = 64 * 1024 * 1024;
/// The most read of a `utmp` file: thousands of sessions.
const UTMP_MAX: u64 = 4 * 1024 * 1024;
/// The most read of `pci.ids` (about 1.4 MiB today).
const PCI_IDS_MAX: u64 = 8 * 1024 * 1024;
/// The most entries looked at in one directory.
const MAX_DIR_ENTRIES: usize = 4096;
/// How long one `statvfs` may take before its volume is reported without sizes.
const STATVFS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the PC is.
pub fn hardware(root: &HostRoot) -> Collected<Hardware> {
    let mut host = Host::new(root);
    let hostname = hostname(&mut host);
    let data = Hardware {
        os: os(&mut host),
        domain: domain(&host, &hostname),
        hostname,
        workgroup: String::new(),
        system: system(&host),
        bios: bios(&host),
        cpu: cpu(&mut host),
        memory: memory(&mut host),
        disks: disks(&host),
        volumes: volumes(&mut host),
        network: network(&mut host),
        gpus: gpus(&host),
        timezone: timezone(&host),
    };
    Collected { data, errors: host.errors }
}

/// What the PC has installed: dpkg's database, and what rpm, snap and flatpak say where they are installed. A
/// source that exists but cannot be read is named in `failed_sources`, so the backend keeps what it last had
/// from it rather than seeing every one of its packages removed.
pub fn software(root: &HostRoot) -> Collected<SoftwareList> {
    let mut list = SoftwareList::default();
    let mut errors = Vec::new();
    let mut add = |source: &str, found: Result<Vec<Software>, String>| match found {
        Ok(items) => list.items.extend(items),
        Err(error) => {
            list.failed_sources.push(source.to_owned());
            errors.push(error);
        }
    };
    add("dpkg", dpkg_packages(root));
    // The package managers' programs read the real host whatever the root; a test's fake root has none of them.
    if root.is_real() {
        add("rpm", rpm_packages(root));
        add("snap", snaps(root));
        add("flatpak", flatpaks());
    }
    Collected { data: list, errors }
}

/// What the PC is doing now.
pub fn status(root: &HostRoot) -> Collected<Status> {
    let mut host = Host::new(root);
    let boot_time = host.text("/proc/stat", LARGE_FILE).and_then(|text| linux::boot_time(&text));
    let boot_time = boot_time.or_else(|| {
        let secs = System::boot_time().ok().filter(|_| root.is_real())?;
        DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)
    });
    let users = users(&mut host);
    let volumes = local_mounts(&mut host)
        .into_iter()
        .map(|mount| {
            let (size_bytes, free_bytes) = host.statvfs(&mount.mount_point).unwrap_or_default();
            VolumeUsage { mount: mount.mount_point, size_bytes, free_bytes }
        })
        .collect();
    Collected { data: Status { boot_time, users, volumes }, errors: host.errors }
}

/// Reads the host under its root, and keeps in words what it could not read.
struct Host<'a> {
    root: &'a HostRoot,
    errors: Vec<String>,
}

impl<'a> Host<'a> {
    fn new(root: &'a HostRoot) -> Self {
        Self { root, errors: Vec::new() }
    }

    /// A file that should be readable: `None` when it does not exist, an error entry when it cannot be read.
    fn text(&mut self, path: &str, max: u64) -> Option<String> {
        match self.root.read(path, max) {
            Ok(text) => text,
            Err(err) => {
                self.errors.push(format!("cannot read `{path}`: {err}"));
                None
            }
        }
    }

    /// A file that may well be unreadable without anything being wrong (a sysfs attribute a device does not
    /// implement, a root-only DMI field): any failure is `None`.
    fn quiet(&self, path: &str) -> Option<String> {
        self.root.read(path, SMALL_FILE).ok().flatten()
    }

    /// `quiet`, trimmed, and `None` when empty.
    fn attribute(&self, path: &str) -> Option<String> {
        self.quiet(path).map(|text| text.trim().to_owned()).filter(|text| !text.is_empty())
    }

    /// A binary file, at most `max` bytes; any failure is `None`.
    fn bytes(&self, path: &str, max: u64) -> Option<Vec<u8>> {
        let file = std::fs::File::open(self.root.join(path)).ok()?;
        let mut bytes = Vec::new();
        file.take(max).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    fn exists(&self, path: &str) -> bool {
        self.root.join(path).exists()
    }

    /// The names in a directory, sorted, at most [`MAX_DIR_ENTRIES`]; empty when it cannot be listed.
    fn list(&self, dir: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.root.join(dir)) else { return Vec::new() };
        let mut names: Vec<String> =
            entries.take(MAX_DIR_ENTRIES).filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        names
    }

    /// Where a path (sysfs is made of symbolic links) really is, as text; empty when it cannot be resolved. The
    /// kernel gives up on a symbolic-link loop, so this cannot hang.
    fn resolve(&self, path: &str) -> String {
        std::fs::canonicalize(self.root.join(path)).map(|p| p.display().to_string()).unwrap_or_default()
    }

    /// The file name a symbolic link points to (`/sys/.../driver` -> `amdgpu`).
    fn link_name(&self, path: &str) -> Option<String> {
        let target = std::fs::read_link(self.root.join(path)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// The size and the space free to users of the file system mounted at `mount_point`, asked on a thread of its
    /// own so a file system that does not answer cannot hold up collection. Such a thread is left behind; while it
    /// waits, its mount point is not asked again, so a mount that never answers costs one thread, not one per
    /// collection.
    fn statvfs(&mut self, mount_point: &str) -> Option<(u64, u64)> {
        let path = self.root.join(mount_point);
        if !lock_pending().insert(path.clone()) {
            self.errors.push(format!("`{mount_point}` still has not answered"));
            return None;
        }
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let result = nix::sys::statvfs::statvfs(&path).map(|stat| sizes(&stat));
            lock_pending().remove(&path);
            let _ = sender.send(result);
        });
        match receiver.recv_timeout(STATVFS_TIMEOUT) {
            Ok(Ok(sizes)) => Some(sizes),
            // A FUSE file system mounted without `allow_other` refuses even root: nothing is wrong with the host.
            Ok(Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM)) => None,
            Ok(Err(err)) => {
                self.errors.push(format!("cannot measure `{mount_point}`: {err}"));
                None
            }
            Err(_) => {
                self.errors.push(format!("`{mount_point}` did not answer within {}s", STATVFS_TIMEOUT.as_secs()));
                None
            }
        }
    }
}

/// Mount points whose `statvfs` has been asked and has not answered yet.
static STATVFS_PENDING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn lock_pending() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    // The set stays consistent whatever a panicking holder was doing: it only inserts and removes.
    STATVFS_PENDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A file system's size and the space free to users, in bytes.
// The block counts and sizes are 32-bit on 32-bit targets: the conversions are not useless there.
#[allow(clippy::useless_conversion)]
fn sizes(stat: &nix::sys::statvfs::Statvfs) -> (u64, u64) {
    let fragment = u64::from(stat.fragment_size());
    let blocks = u64::from(stat.blocks());
    let available = u64::from(stat.blocks_available());
    (blocks.saturating_mul(fragment), available.saturating_mul(fragment))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn hostname(host: &mut Host<'_>) -> String {
    let kernel = host.text("/proc/sys/kernel/hostname", SMALL_FILE).map(|t| t.trim().to_owned());
    let file = || host_name_file(host);
    let name = kernel.filter(|n| !n.is_empty()).or_else(file);
    name.or_else(|| System::host_name().ok().filter(|_| host.root.is_real())).unwrap_or_default()
}

/// The first name in `/etc/hostname`.
fn host_name_file(host: &Host<'_>) -> Option<String> {
    let text = host.quiet("/etc/hostname")?;
    text.lines().map(|l| l.split('#').next().unwrap_or_default().trim().to_owned()).find(|l| !l.is_empty())
}

fn os(host: &mut Host<'_>) -> OsInfo {
    // `/usr/lib/os-release` is where os-release(5) says to look when `/etc/os-release` is missing.
    let release = host.text("/etc/os-release", SMALL_FILE).or_else(|| host.text("/usr/lib/os-release", SMALL_FILE));
    let kernel = host.text("/proc/sys/kernel/osrelease", SMALL_FILE);
    let kernel = kernel.or_else(|| System::kernel_version().ok().filter(|_| host.root.is_real())).unwrap_or_default();
    // `/proc/sys/kernel/arch` is the kernel's machine (Linux 6.1 and later); the agent's own is a fair guess.
    let arch = host.attribute("/proc/sys/kernel/arch");
    let arch = arch.or_else(|| host.root.is_real().then(System::cpu_arch)).filter(|a| !a.is_empty());
    let arch = arch.unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    linux::os_info(&linux::os_release(&release.unwrap_or_default()), &kernel, &arch)
}

fn domain(host: &Host<'_>, hostname: &str) -> String {
    let read = |path: &str| host.root.read(path, LARGE_FILE).ok().flatten().unwrap_or_default();
    linux::dns_domain(&read("/proc/sys/kernel/domainname"), hostname, &read("/etc/hostname"), &read("/etc/hosts"))
}

/// A DMI field of `/sys/class/dmi/id`; serial numbers and the UUID are root-only, and unreadable is just empty.
fn dmi(host: &Host<'_>, field: &str) -> String {
    host.quiet(&format!("/sys/class/dmi/id/{field}")).map(|t| linux::dmi_text(&t)).unwrap_or_default()
}

fn system(host: &Host<'_>) -> SystemInfo {
    SystemInfo {
        manufacturer: dmi(host, "sys_vendor"),
        model: dmi(host, "product_name"),
        serial: dmi(host, "product_serial"),
        uuid: dmi(host, "product_uuid").to_ascii_lowercase(),
    }
}

fn bios(host: &Host<'_>) -> BiosInfo {
    // UEFI firmware shows itself under /sys/firmware/efi; a PC BIOS only through the SMBIOS tables it provides.
    // A virtual machine started without firmware has neither, and is reported as unknown.
    let firmware = if host.exists("/sys/firmware/efi") {
        "uefi"
    } else if host.exists("/sys/class/dmi/id") {
        "bios"
    } else {
        ""
    };
    BiosInfo {
        vendor: dmi(host, "bios_vendor"),
        version: dmi(host, "bios_version"),
        date: host.quiet("/sys/class/dmi/id/bios_date").map(|t| linux::dmi_date(&t)).unwrap_or_default(),
        firmware: firmware.to_owned(),
    }
}

fn cpu(host: &mut Host<'_>) -> CpuInfo {
    let mut cpu = host.text("/proc/cpuinfo", LARGE_FILE).map(|text| linux::cpu_info(&text)).unwrap_or_default();
    let max = host.quiet("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq");
    if let Some(mhz) = max.and_then(|text| linux::khz_to_mhz(&text)) {
        cpu.max_mhz = mhz;
    }
    if host.root.is_real() {
        fill_cpu_from_sysinfo(&mut cpu);
    }
    cpu
}

/// What `/proc/cpuinfo` did not say (an ARM machine names no model and no cores there), as sysinfo sees it.
fn fill_cpu_from_sysinfo(cpu: &mut CpuInfo) {
    if (cpu.model.is_empty() || cpu.vendor.is_empty() || cpu.threads == 0)
        && let Ok(mut system) = System::new()
    {
        system.refresh_cpu_list(CpuRefreshKind::nothing());
        let first = system.cpus().first();
        if cpu.model.is_empty() {
            cpu.model = first.map(|c| c.brand().trim().to_owned()).unwrap_or_default();
        }
        if cpu.vendor.is_empty() {
            cpu.vendor = first.map(|c| c.vendor_id().trim().to_owned()).unwrap_or_default();
        }
        if cpu.threads == 0 {
            cpu.threads = count(system.cpus().len());
        }
    }
    if cpu.cores == 0 {
        cpu.cores = System::physical_core_count().map(count).unwrap_or(cpu.threads);
    }
}

fn memory(host: &mut Host<'_>) -> MemoryInfo {
    let total = host.text("/proc/meminfo", SMALL_FILE).and_then(|text| linux::mem_total_bytes(&text));
    let total = total.or_else(|| {
        let mut system = host.root.is_real().then(System::new)?.ok()?;
        system.refresh_memory();
        Some(system.total_memory())
    });
    MemoryInfo { total_bytes: total.unwrap_or_default(), modules: memory_modules(host) }
}

/// The memory modules from the SMBIOS type 17 structures the kernel exposes one by one (root-only; without root,
/// or on a machine without SMBIOS, the list is empty), in table order.
fn memory_modules(host: &Host<'_>) -> Vec<MemoryModule> {
    let dir = "/sys/firmware/dmi/entries";
    let mut entries: Vec<(u32, String)> =
        host.list(dir).into_iter().filter_map(|name| Some((name.strip_prefix("17-")?.parse().ok()?, name))).collect();
    entries.sort();
    entries
        .iter()
        .filter_map(|(_, name)| host.bytes(&format!("{dir}/{name}/raw"), SMALL_FILE))
        .filter_map(|raw| linux::smbios_memory_device(&raw))
        .collect()
}

fn disks(host: &Host<'_>) -> Vec<Disk> {
    host.list("/sys/block")
        .into_iter()
        .filter(|name| linux::keep_block_device(name))
        .filter_map(|name| disk(host, name))
        .collect()
}

fn disk(host: &Host<'_>, name: String) -> Option<Disk> {
    let dir = format!("/sys/block/{name}");
    let attribute = |file: &str| host.attribute(&format!("{dir}/{file}")).map(|t| linux::dmi_text(&t));
    let size_bytes = linux::sectors_to_bytes(&attribute("size").unwrap_or_default());
    // An empty card reader or a drive that is going away has no size: not a disk worth listing.
    if size_bytes == 0 {
        return None;
    }
    let model = attribute("device/model").or_else(|| attribute("device/name")).or_else(|| attribute("md/level"));
    let serial = attribute("device/serial").or_else(|| attribute("serial"));
    Some(Disk {
        model: model.unwrap_or_default(),
        serial: serial.unwrap_or_default(),
        size_bytes,
        media: linux::disk_media(&attribute("queue/rotational").unwrap_or_default()),
        bus: linux::disk_bus(&name, &host.resolve(&dir)),
        name,
    })
}

/// The mounts that are the host's own storage (see [`linux::local_volumes`]).
fn local_mounts(host: &mut Host<'_>) -> Vec<Mount> {
    let text = host.text("/proc/self/mounts", LARGE_FILE).unwrap_or_default();
    linux::local_volumes(&linux::mounts(&text))
}

fn volumes(host: &mut Host<'_>) -> Vec<Volume> {
    let labels = volume_labels(host);
    let mounts = local_mounts(host);
    mounts
        .into_iter()
        .map(|mount| Volume {
            size_bytes: host.statvfs(&mount.mount_point).map(|(size, _)| size).unwrap_or_default(),
            label: labels.get(&host.resolve(&mount.source)).cloned().unwrap_or_default(),
            mount: mount.mount_point,
            file_system: mount.file_system,
        })
        .collect()
}

/// File system labels by the device they are on, from udev's `/dev/disk/by-label` links.
fn volume_labels(host: &Host<'_>) -> BTreeMap<String, String> {
    let dir = "/dev/disk/by-label";
    host.list(dir)
        .into_iter()
        .filter_map(|name| {
            let device = host.resolve(&format!("{dir}/{name}"));
            (!device.is_empty()).then(|| (device, linux::unescape_udev(&name)))
        })
        .collect()
}

fn network(host: &mut Host<'_>) -> Vec<NetworkAdapter> {
    let addresses = if host.root.is_real() { interface_addresses() } else { BTreeMap::new() };
    let table = |path: &str| host.root.read(path, LARGE_FILE).ok().flatten().unwrap_or_default();
    let mut gateways = linux::default_gateways_v4(&table("/proc/net/route"));
    gateways.extend(linux::default_gateways_v6(&table("/proc/net/ipv6_route")));
    let dhcp = dhcp_evidence(host);
    let mut adapters = Vec::new();
    for name in host.list("/sys/class/net") {
        let dir = format!("/sys/class/net/{name}");
        let addresses = addresses.get(&name).cloned().unwrap_or_default();
        // Loopback is no adapter; veth pairs come and go with every container. Other virtual interfaces (bridges,
        // VPN tunnels) count while they carry an address.
        let physical = host.exists(&format!("{dir}/device"));
        if name == "lo" || name.starts_with("veth") || (!physical && addresses.is_empty()) {
            continue;
        }
        let ifindex = host.attribute(&format!("{dir}/ifindex")).unwrap_or_default();
        adapters.push(NetworkAdapter {
            mac: linux::mac(&host.quiet(&format!("{dir}/address")).unwrap_or_default()),
            addresses,
            dhcp: linux::dhcp_in_use(&name, &ifindex, &dhcp),
            gateways: gateways.iter().filter(|(iface, _)| *iface == name).map(|(_, gw)| gw.clone()).collect(),
            dns_servers: Vec::new(),
            name,
        });
    }
    add_dns_servers(host, &mut adapters);
    adapters
}

/// Puts the resolver's name servers on the adapters with a default route (where queries leave), or on every
/// adapter with an address when none has one. systemd-resolved's own list names the real servers rather than its
/// local stub.
fn add_dns_servers(host: &Host<'_>, adapters: &mut [NetworkAdapter]) {
    let resolv = host.quiet("/run/systemd/resolve/resolv.conf").or_else(|| host.quiet("/etc/resolv.conf"));
    let servers = linux::nameservers(&resolv.unwrap_or_default());
    let any_gateway = adapters.iter().any(|a| !a.gateways.is_empty());
    for adapter in adapters.iter_mut() {
        let routed = if any_gateway { !adapter.gateways.is_empty() } else { !adapter.addresses.is_empty() };
        if routed {
            adapter.dns_servers.clone_from(&servers);
        }
    }
}

/// Each interface's addresses with their prefix length, IPv4 first, as the kernel has them now.
fn interface_addresses() -> BTreeMap<String, Vec<String>> {
    let Ok(networks) = Networks::new_with_refreshed_list() else { return BTreeMap::new() };
    (&networks)
        .into_iter()
        .map(|(name, data)| {
            let mut addresses: Vec<(bool, String)> =
                data.ip_networks().iter().map(|n| (n.addr.is_ipv6(), format!("{}/{}", n.addr, n.prefix))).collect();
            addresses.sort();
            (name.to_string_lossy().into_owned(), addresses.into_iter().map(|(_, a)| a).collect())
        })
        .collect()
}

/// The DHCP clients' lease files and state, for [`linux::dhcp_in_use`].
fn dhcp_evidence(host: &Host<'_>) -> DhcpEvidence {
    let client_dirs =
        ["/var/lib/NetworkManager", "/run/NetworkManager", "/var/lib/dhcp", "/var/lib/dhclient", "/var/lib/dhcpcd"];
    let read_all = |dir: &str, suffix: &str| -> Vec<String> {
        let names = host.list(dir).into_iter().filter(|n| n.ends_with(suffix));
        names.filter_map(|n| host.root.read(&format!("{dir}/{n}"), SMALL_FILE * 4).ok().flatten()).collect()
    };
    let mut dhclient_leases = read_all("/var/lib/dhcp", ".leases");
    dhclient_leases.extend(read_all("/var/lib/dhclient", ".leases"));
    dhclient_leases.extend(read_all("/var/lib/dhclient", ".lease"));
    let nm_devices = "/run/NetworkManager/devices";
    let networkd_links = "/run/systemd/netif/links";
    DhcpEvidence {
        client_present: client_dirs.iter().any(|dir| host.exists(dir)),
        network_manager_leases: host.list("/var/lib/NetworkManager"),
        network_manager_devices: host
            .list(nm_devices)
            .into_iter()
            .filter_map(|index| Some((index.clone(), host.quiet(&format!("{nm_devices}/{index}"))?)))
            .collect(),
        dhclient_leases,
        dhcpcd_leases: host.list("/var/lib/dhcpcd"),
        networkd_managed: host
            .list(networkd_links)
            .into_iter()
            .filter(|index| {
                host.quiet(&format!("{networkd_links}/{index}")).is_some_and(|s| linux::networkd_manages(&s))
            })
            .collect(),
        networkd_leases: host.list("/run/systemd/netif/leases"),
    }
}

/// Display adapters: every PCI device of the display class (named from `pci.ids`, else from a small table of
/// vendors), then any DRM card that is not on PCI (a system-on-chip's GPU, named by its driver).
fn gpus(host: &Host<'_>) -> Vec<Gpu> {
    let mut pci_ids = None;
    let mut gpus = Vec::new();
    for slot in host.list("/sys/bus/pci/devices") {
        let dir = format!("/sys/bus/pci/devices/{slot}");
        if !host.quiet(&format!("{dir}/class")).is_some_and(|class| class.trim().starts_with("0x03")) {
            continue;
        }
        let pci_ids = pci_ids.get_or_insert_with(|| read_pci_ids(host));
        gpus.push(pci_gpu(host, &dir, pci_ids));
    }
    for card in host.list("/sys/class/drm") {
        let is_card = card.strip_prefix("card").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let device = format!("/sys/class/drm/{card}/device");
        if is_card && !host.resolve(&device).contains("/pci") {
            let driver = host.link_name(&format!("{device}/driver")).unwrap_or_default();
            gpus.push(Gpu {
                name: driver.clone(),
                driver_version: driver_version(host, &driver),
                ..Default::default()
            });
        }
    }
    gpus
}

/// The first `pci.ids` database found where distributions install it; empty when there is none.
fn read_pci_ids(host: &Host<'_>) -> String {
    ["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"]
        .iter()
        .find_map(|path| host.root.read(path, PCI_IDS_MAX).ok().flatten())
        .unwrap_or_default()
}

fn pci_gpu(host: &Host<'_>, dir: &str, pci_ids: &str) -> Gpu {
    let vendor = host.quiet(&format!("{dir}/vendor")).and_then(|t| linux::pci_id(&t)).unwrap_or_default();
    let device = host.quiet(&format!("{dir}/device")).and_then(|t| linux::pci_id(&t)).unwrap_or_default();
    let (vendor_name, device_name) = linux::pci_ids_names(pci_ids, vendor, device);
    let table_vendor = Some(linux::pci_vendor_name(vendor).to_owned()).filter(|v| !v.is_empty());
    let vendor_name = table_vendor.or(vendor_name).unwrap_or_else(|| format!("{vendor:04x}"));
    let driver = host.link_name(&format!("{dir}/driver")).unwrap_or_default();
    Gpu {
        name: device_name.map_or_else(|| format!("{vendor_name} {vendor:04x}:{device:04x}"), |d| linux::gpu_name(&d)),
        vendor: vendor_name,
        driver_version: driver_version(host, &driver),
        // amdgpu says how much video memory the card has; other drivers do not through sysfs.
        memory_bytes: host
            .attribute(&format!("{dir}/mem_info_vram_total"))
            .and_then(|t| t.parse().ok())
            .unwrap_or_default(),
    }
}

/// A display driver's name and, for an out-of-tree module such as `nvidia`, its version (`nvidia 550.54.14`);
/// in-tree drivers (`i915`, `amdgpu`) have the kernel's.
fn driver_version(host: &Host<'_>, driver: &str) -> String {
    if driver.is_empty() {
        return String::new();
    }
    match host.attribute(&format!("/sys/module/{driver}/version")) {
        Some(version) => format!("{driver} {version}"),
        None => driver.to_owned(),
    }
}

/// The IANA time zone: Debian's `/etc/timezone`, else where `/etc/localtime` points, else `TZ`.
fn timezone(host: &Host<'_>) -> String {
    let file = host.quiet("/etc/timezone").and_then(|t| linux::timezone_file(&t));
    let link = || {
        let target = std::fs::read_link(host.root.join("/etc/localtime")).ok()?;
        linux::timezone_from_path(&target.to_string_lossy())
    };
    let env = || std::env::var("TZ").ok().filter(|_| host.root.is_real()).and_then(|tz| linux::timezone_from_path(&tz));
    file.or_else(link).or_else(env).unwrap_or_default()
}

/// dpkg's installed packages, each dated by when its file list was last written (its install or upgrade).
fn dpkg_packages(root: &HostRoot) -> Result<Vec<Software>, String> {
    let path = "/var/lib/dpkg/status";
    let status = root.read(path, DPKG_STATUS_MAX).map_err(|err| format!("cannot read `{path}`: {err}"))?;
    let mut items = dpkg::dpkg_status(&status.unwrap_or_default());
    for item in &mut items {
        let files = dpkg::dpkg_list_files(&item.name, &item.arch);
        let modified = files.iter().find_map(|file| modified(&root.join(&format!("/var/lib/dpkg/info/{file}"))));
        item.install_date = modified.map(|time| time.format("%Y-%m-%d").to_string()).unwrap_or_default();
    }
    Ok(items)
}

fn modified(path: &Path) -> Option<DateTime<Utc>> {
    let time: SystemTime = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(time.into())
}

/// Runs a package manager's program: its output, empty when it is not installed.
fn command(program: &str, args: &[&str]) -> Result<String, String> {
    match run(program, args, COMMAND_TIMEOUT, COMMAND_MAX_BYTES) {
        Ok(output) => Ok(output),
        Err(CommandError::NotFound(_)) => Ok(String::new()),
        Err(err) => Err(err.to_string()),
    }
}

/// rpm's packages, when an rpm database exists: Debian and Ubuntu can install the `rpm` program without one, and
/// asking it then is pointless.
fn rpm_packages(root: &HostRoot) -> Result<Vec<Software>, String> {
    let databases = ["/var/lib/rpm", "/usr/lib/sysimage/rpm"];
    let files = ["Packages", "Packages.db", "rpmdb.sqlite"];
    let has_database =
        databases.iter().any(|dir| files.iter().any(|file| root.join(&format!("{dir}/{file}")).exists()));
    if !has_database {
        return Ok(Vec::new());
    }
    let format = format!("--queryformat={}", rpm::RPM_QUERY_FORMAT);
    command("rpm", &["-qa", &format]).map(|out| rpm::rpm_query(&out))
}

/// The installed snaps, when snapd is running (its socket exists): in a container snapd is often installed but
/// not running, and the command would only fail.
fn snaps(root: &HostRoot) -> Result<Vec<Software>, String> {
    if !root.join("/run/snapd.socket").exists() {
        return Ok(Vec::new());
    }
    command("snap", &["list", "--unicode=never", "--color=never"]).map(|out| snap::snap_list(&out))
}

/// The system-wide flatpaks, and the agent user's own.
fn flatpaks() -> Result<Vec<Software>, String> {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "root".to_owned());
    let output = command("flatpak", &["list", flatpak::FLATPAK_COLUMNS])?;
    Ok(flatpak::flatpak_list(&output, &format!("user:{user}")))
}

/// The logged-on users from `utmp`; where a distribution no longer keeps one, from systemd-logind's sessions.
fn users(host: &mut Host<'_>) -> Vec<LoggedOnUser> {
    for path in ["/run/utmp", "/var/run/utmp"] {
        match std::fs::File::open(host.root.join(path)) {
            Ok(file) => {
                let mut bytes = Vec::new();
                if let Err(err) = file.take(UTMP_MAX).read_to_end(&mut bytes) {
                    host.errors.push(format!("cannot read `{path}`: {err}"));
                }
                return linux::utmp_users(&bytes);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                host.errors.push(format!("cannot read `{path}`: {err}"));
                return Vec::new();
            }
        }
    }
    let sessions = "/run/systemd/sessions";
    host.list(sessions)
        .into_iter()
        .filter(|name| !name.ends_with(".ref"))
        .filter_map(|name| linux::logind_session(&host.quiet(&format!("{sessions}/{name}"))?))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::platform::{collect_hardware, collect_software, collect_status};

    /// Writes `contents` at `path` (absolute, as on the host) under `root`, creating folders on the way.
    fn put(root: &Path, path: &str, contents: impl AsRef<[u8]>) {
        let file = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, contents).unwrap();
    }

    fn make_dir(root: &Path, path: &str) {
        fs::create_dir_all(root.join(path.trim_start_matches('/'))).unwrap();
    }

    /// An SMBIOS 2.7 type 17 structure: 8 GiB at 3200 MT/s in `DIMM 0`, made by `Micron`.
    fn memory_device() -> Vec<u8> {
        let mut raw = vec![0_u8; 0x22];
        raw[0] = 17;
        raw[1] = 0x22;
        raw[0x0C..0x0E].copy_from_slice(&8192_u16.to_le_bytes());
        raw[0x10] = 1;
        raw[0x15..0x17].copy_from_slice(&3200_u16.to_le_bytes());
        raw[0x17] = 2;
        raw[0x1A] = 3;
        raw.extend_from_slice(b"DIMM 0\0Micron\08ATF1G64AZ-3G2\0\0");
        raw
    }

    /// A host laid out as a small Debian PC: every file the collectors read, with known contents.
    fn fake_host() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(
            root,
            "/etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n",
        );
        put(root, "/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        put(root, "/proc/sys/kernel/arch", "x86_64\n");
        put(root, "/proc/sys/kernel/hostname", "pc1\n");
        put(root, "/proc/sys/kernel/domainname", "(none)\n");
        put(root, "/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 pc1.corp.example pc1\n");
        for (field, value) in [
            ("sys_vendor", "LENOVO\n"),
            ("product_name", "20XW00ABGE\n"),
            ("product_serial", "PF2ABCDE\n"),
            ("product_uuid", "4C4C4544-0042-3510-8052-B4C04F595631\n"),
            ("bios_vendor", "LENOVO\n"),
            ("bios_version", "N2XET33W (1.23 )\n"),
            ("bios_date", "03/15/2023\n"),
        ] {
            put(root, &format!("/sys/class/dmi/id/{field}"), value);
        }
        make_dir(root, "/sys/firmware/efi");
        put(root, "/sys/firmware/dmi/entries/17-0/raw", memory_device());
        put(root, "/sys/firmware/dmi/entries/16-0/raw", [16_u8, 4, 0, 0, 0, 0]);
        let stanza = |n: u32, core: u32| {
            format!(
                "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: 11th Gen Intel(R) Core(TM) i7-1165G7\n\
                 physical id\t: 0\ncore id\t\t: {core}\ncpu MHz\t\t: 1200.000\n\n"
            )
        };
        put(root, "/proc/cpuinfo", [stanza(0, 0), stanza(1, 1), stanza(2, 0), stanza(3, 1)].concat());
        put(root, "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "4700000\n");
        put(root, "/proc/meminfo", "MemTotal:       16000000 kB\nMemFree:         1000 kB\n");
        put(root, "/sys/block/nvme0n1/size", "1000215216\n");
        put(root, "/sys/block/nvme0n1/queue/rotational", "0\n");
        put(root, "/sys/block/nvme0n1/device/model", "SAMSUNG MZVL2512HCJQ-00BL7              \n");
        put(root, "/sys/block/nvme0n1/device/serial", "  S64KNX0R123456\n");
        put(root, "/sys/block/loop0/size", "100\n");
        put(root, "/sys/block/sr0/size", "0\n");
        put(
            root,
            "/proc/self/mounts",
            "proc /proc proc rw 0 0\n/dev/nvme0n1p2 / ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n\
             /dev/loop0 /snap/core/1 squashfs ro 0 0\n",
        );
        let gateway = u32::from_ne_bytes([192, 168, 1, 1]);
        put(
            root,
            "/proc/net/route",
            format!(
                "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t00000000\t{gateway:08X}\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
            ),
        );
        put(root, "/etc/resolv.conf", "nameserver 192.168.1.1\n");
        put(root, "/sys/class/net/eth0/address", "9C:2D:CD:00:11:22\n");
        put(root, "/sys/class/net/eth0/ifindex", "2\n");
        make_dir(root, "/sys/class/net/eth0/device");
        put(root, "/sys/class/net/lo/address", "00:00:00:00:00:00\n");
        put(root, "/sys/class/net/docker0/address", "02:42:00:00:00:01\n");
        put(root, "/run/systemd/netif/links/2", "ADMIN_STATE=configured\n");
        put(root, "/run/systemd/netif/leases/2", "ADDRESS=192.168.1.20\n");
        let gpu = "/sys/bus/pci/devices/0000:00:02.0";
        put(root, &format!("{gpu}/class"), "0x030000\n");
        put(root, &format!("{gpu}/vendor"), "0x8086\n");
        put(root, &format!("{gpu}/device"), "0x9a49\n");
        put(root, "/sys/bus/pci/devices/0000:00:1f.0/class", "0x060100\n");
        put(root, "/usr/share/misc/pci.ids", "8086  Intel Corporation\n\t9a49  TigerLake-LP GT2 [Iris Xe Graphics]\n");
        put(root, "/etc/timezone", "Europe/Berlin\n");
        put(
            root,
            "/var/lib/dpkg/status",
            "Package: libc6\nStatus: install ok installed\nMaintainer: GNU Libc Maintainers <x@y>\n\
             Architecture: amd64\nVersion: 2.36-9+deb12u4\n\n\
             Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n\
             Package: adduser\nStatus: install ok installed\nArchitecture: all\nVersion: 3.134\n",
        );
        put(root, "/var/lib/dpkg/info/libc6:amd64.list", "/.\n");
        let list = fs::File::options().write(true).open(root.join("var/lib/dpkg/info/libc6:amd64.list")).unwrap();
        list.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)).unwrap();
        put(root, "/proc/stat", "cpu 1 2 3\nbtime 1700000000\n");
        let mut utmp = vec![0_u8; linux::UTMP_RECORD_BYTES];
        utmp[0..2].copy_from_slice(&7_i16.to_ne_bytes());
        utmp[8..13].copy_from_slice(b"pts/0");
        utmp[44..49].copy_from_slice(b"alice");
        utmp[340..344].copy_from_slice(&1_700_000_100_u32.to_ne_bytes());
        put(root, "/run/utmp", utmp);
        dir
    }

    #[test]
    fn a_fake_host_is_read_exactly() {
        let dir = fake_host();
        let root = HostRoot::new(dir.path());
        let Collected { data: hw, errors } = hardware(&root);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            hw.os,
            OsInfo {
                name: "Debian GNU/Linux".into(),
                version: "12".into(),
                build: "6.1.0-18-amd64".into(),
                edition: String::new(),
                arch: "x86_64".into(),
            }
        );
        assert_eq!((hw.hostname.as_str(), hw.domain.as_str()), ("pc1", "corp.example"));
        assert_eq!(
            hw.system,
            SystemInfo {
                manufacturer: "LENOVO".into(),
                model: "20XW00ABGE".into(),
                serial: "PF2ABCDE".into(),
                uuid: "4c4c4544-0042-3510-8052-b4c04f595631".into(),
            }
        );
        assert_eq!(
            hw.bios,
            BiosInfo {
                vendor: "LENOVO".into(),
                version: "N2XET33W (1.23 )".into(),
                date: "2023-03-15".into(),
                firmware: "uefi".into(),
            }
        );
        assert_eq!(
            hw.cpu,
            CpuInfo {
                model: "11th Gen Intel(R) Core(TM) i7-1165G7".into(),
                vendor: "GenuineIntel".into(),
                sockets: 1,
                cores: 2,
                threads: 4,
                max_mhz: 4700,
            }
        );
        assert_eq!(hw.memory.total_bytes, 16_000_000 * 1024);
        assert_eq!(
            hw.memory.modules,
            [MemoryModule {
                slot: "DIMM 0".into(),
                size_bytes: 8 << 30,
                speed_mts: 3200,
                manufacturer: "Micron".into(),
                part_number: "8ATF1G64AZ-3G2".into(),
            }]
        );
        assert_eq!(
            hw.disks,
            [Disk {
                name: "nvme0n1".into(),
                model: "SAMSUNG MZVL2512HCJQ-00BL7".into(),
                serial: "S64KNX0R123456".into(),
                size_bytes: 1_000_215_216 * 512,
                media: "ssd".into(),
                bus: "nvme".into(),
            }]
        );
        assert_eq!(hw.volumes.len(), 1);
        assert_eq!((hw.volumes[0].mount.as_str(), hw.volumes[0].file_system.as_str()), ("/", "ext4"));
        assert!(hw.volumes[0].size_bytes > 0, "the fake root's own file system is measured");
        assert_eq!(
            hw.network,
            [NetworkAdapter {
                name: "eth0".into(),
                mac: "9c:2d:cd:00:11:22".into(),
                addresses: Vec::new(),
                dhcp: Some(true),
                gateways: vec!["192.168.1.1".into()],
                dns_servers: vec!["192.168.1.1".into()],
            }],
            "loopback, and a virtual interface without an address, are left out"
        );
        assert_eq!(
            hw.gpus,
            [Gpu {
                name: "Iris Xe Graphics".into(),
                vendor: "Intel".into(),
                driver_version: String::new(),
                memory_bytes: 0,
            }]
        );
        assert_eq!(hw.timezone, "Europe/Berlin");
    }

    #[test]
    fn a_fake_hosts_packages_and_status_are_read_exactly() {
        let dir = fake_host();
        let root = HostRoot::new(dir.path());
        let Collected { data: software, errors } = software(&root);
        assert_eq!(errors, Vec::<String>::new());
        assert!(software.failed_sources.is_empty());
        let libc = Software {
            source: "dpkg".into(),
            id: "libc6:amd64".into(),
            name: "libc6".into(),
            version: "2.36-9+deb12u4".into(),
            publisher: "GNU Libc Maintainers".into(),
            install_date: "2023-11-14".into(),
            arch: "amd64".into(),
            scope: "machine".into(),
            ..Default::default()
        };
        assert_eq!(software.items[0], libc);
        assert_eq!(software.items[1].id, "adduser:all");
        assert_eq!(software.items[1].install_date, "", "no file list, no date");
        assert_eq!(software.items.len(), 2);

        let Collected { data: status, errors } = status(&root);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(status.boot_time, DateTime::from_timestamp(1_700_000_000, 0));
        assert_eq!(
            status.users,
            [LoggedOnUser {
                name: "alice".into(),
                session: "pts/0".into(),
                since: DateTime::from_timestamp(1_700_000_100, 0),
            }]
        );
        assert_eq!(status.volumes.len(), 1);
        assert_eq!(status.volumes[0].mount, "/");
        assert!(status.volumes[0].size_bytes >= status.volumes[0].free_bytes);
    }

    #[test]
    fn an_unreadable_dpkg_database_is_a_failed_source_and_an_empty_root_is_no_error() {
        let empty = tempfile::tempdir().unwrap();
        let root = HostRoot::new(empty.path());
        let collected = software(&root);
        assert_eq!((collected.data.items.len(), collected.errors.len()), (0, 0));
        let hw = hardware(&root);
        assert_eq!(hw.errors, Vec::<String>::new());
        assert_eq!((hw.data.os.name.as_str(), hw.data.bios.firmware.as_str()), ("Linux", ""));
        assert!(status(&root).errors.is_empty());

        // A directory where the status file should be cannot be read as one.
        make_dir(empty.path(), "/var/lib/dpkg/status");
        let broken = software(&root);
        assert_eq!(broken.data.failed_sources, ["dpkg"]);
        assert!(broken.errors[0].contains("/var/lib/dpkg/status"), "{:?}", broken.errors);
    }

    /// Every regular file under `dir`, recursively (a test's own tree: no links to follow).
    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { out.extend(files(&path)) } else { out.push(path) }
        }
        out
    }

    #[test]
    fn a_host_full_of_garbage_gives_empty_values_not_panics() {
        let dir = fake_host();
        let mut seed = 0x2545_f491_u32;
        for (n, file) in files(dir.path()).into_iter().enumerate() {
            // Invalid UTF-8, NULs, a long line without a newline: whatever a broken or hostile host might hold.
            let garbage: Vec<u8> = (0..(n % 3) * 40_000 + 7)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed.to_le_bytes()[0]
                })
                .collect();
            fs::write(file, garbage).unwrap();
        }
        let root = HostRoot::new(dir.path());
        let hw = hardware(&root);
        assert_eq!(hw.errors, Vec::<String>::new());
        assert_eq!(hw.data.cpu.threads, 0);
        let sw = software(&root);
        assert!(sw.data.items.iter().all(|s| s.source == "dpkg"));
        let _ = status(&root);
    }

    #[test]
    fn a_mount_that_has_not_answered_is_not_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        let mut host = Host::new(&root);
        assert!(host.statvfs("/").is_some_and(|(size, free)| size >= free && size > 0));
        assert!(!lock_pending().contains(&root.join("/")), "an answered mount is no longer pending");
        lock_pending().insert(root.join("/"));
        assert_eq!(host.statvfs("/"), None);
        lock_pending().remove(&root.join("/"));
        assert_eq!(host.errors, ["`/` still has not answered"]);
    }

    #[test]
    fn the_real_host_has_an_os_a_cpu_memory_and_a_root_volume() {
        let Collected { data: hw, errors } = collect_hardware(&HostRoot::default());
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!hw.os.name.is_empty() && !hw.os.build.is_empty() && !hw.os.arch.is_empty(), "{:?}", hw.os);
        assert!(!hw.hostname.is_empty());
        assert!(!hw.cpu.model.is_empty() && hw.cpu.threads > 0 && hw.cpu.cores > 0, "{:?}", hw.cpu);
        assert!(hw.memory.total_bytes > 0);
        assert!(hw.volumes.iter().any(|v| v.mount == "/" && v.size_bytes > 0), "{:?}", hw.volumes);
        assert!(hw.network.iter().all(|a| a.name != "lo"));

        let Collected { data: status, errors } = collect_status(&HostRoot::default());
        assert!(errors.is_empty(), "{errors:?}");
        assert!(status.boot_time.is_some_and(|t| t < Utc::now()));
        assert!(status.volumes.iter().any(|v| v.mount == "/" && v.free_bytes > 0 && v.size_bytes >= v.free_bytes));
    }

    #[test]
    fn the_real_hosts_dpkg_packages_match_dpkg_query() {
        let Collected { data: software, errors } = collect_software(&HostRoot::default());
        assert!(errors.is_empty(), "{errors:?}");
        let dpkg_item = |name: &str| software.items.iter().find(|s| s.source == "dpkg" && s.name == name).cloned();
        let dpkg = dpkg_item("dpkg").expect("dpkg lists itself");
        assert_eq!(dpkg.scope, "machine");
        assert_eq!(dpkg.install_date.len(), "YYYY-MM-DD".len(), "{dpkg:?}");
        let query =
            std::process::Command::new("dpkg-query").args(["-W", "-f", "${Version}", "libc6"]).output().unwrap();
        assert!(query.status.success());
        let libc = dpkg_item("libc6").expect("libc6 is installed");
        assert_eq!(libc.version, String::from_utf8(query.stdout).unwrap());
        assert!(libc.id.starts_with("libc6:"), "{libc:?}");
        assert!(!libc.publisher.contains('<'), "{libc:?}");
    }
}
