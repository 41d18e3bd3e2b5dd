//! What changed between two reports of one PC: pure functions the backend's inventory projector folds each report
//! through. Software is compared item by item, keyed by (`source`, `id`); hardware is flattened into named facts
//! (`os.build`, `memory.total_bytes`, `disk[nvme0n1].size_bytes`, ...) and compared fact by fact, so the change log
//! says which field moved from what to what.

use std::collections::BTreeMap;

use super::{Hardware, Software};

/// One software item's change between two reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoftwareChange<'a> {
    Installed(&'a Software),
    Removed(&'a Software),
    /// Same (`source`, `id`), another version.
    VersionChanged {
        old: &'a Software,
        new: &'a Software,
    },
    /// Same key and version; some other field (publisher, location, date) differs. Stored, not logged.
    Updated {
        old: &'a Software,
        new: &'a Software,
    },
}

/// Compares two normalised lists (sorted and unique by (`source`, `id`), as `SoftwareList::normalise` leaves them);
/// every item that is not identical in both yields one change, in key order.
pub fn software<'a>(old: &'a [Software], new: &'a [Software]) -> Vec<SoftwareChange<'a>> {
    let key = |s: &'a Software| (s.source.as_str(), s.id.as_str());
    let old_by_key: BTreeMap<_, _> = old.iter().map(|s| (key(s), s)).collect();
    let new_by_key: BTreeMap<_, _> = new.iter().map(|s| (key(s), s)).collect();
    let mut changes = Vec::new();
    for (k, n) in &new_by_key {
        match old_by_key.get(k) {
            None => changes.push(SoftwareChange::Installed(n)),
            Some(o) if o.version != n.version => changes.push(SoftwareChange::VersionChanged { old: o, new: n }),
            Some(o) if o != n => changes.push(SoftwareChange::Updated { old: o, new: n }),
            Some(_) => {}
        }
    }
    for (k, o) in &old_by_key {
        if !new_by_key.contains_key(k) {
            changes.push(SoftwareChange::Removed(o));
        }
    }
    changes.sort_by(|a, b| change_key(a).cmp(&change_key(b)));
    changes
}

fn change_key<'a>(change: &SoftwareChange<'a>) -> (&'a str, &'a str) {
    let s = match change {
        SoftwareChange::Installed(s) | SoftwareChange::Removed(s) => s,
        SoftwareChange::VersionChanged { new, .. } | SoftwareChange::Updated { new, .. } => new,
    };
    (s.source.as_str(), s.id.as_str())
}

/// A hardware fact that differs between two reports; `None` on a side where the fact is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// The hardware's facts by name, for the change log: scalar fields by their path, list entries under a key that
/// names the entry (a disk by name, a volume by mount point, an adapter by MAC or name, a memory module by slot, a
/// GPU by name) so that a reordered list is not a change. Empty values and zeros are left out: a platform that
/// cannot read a field does not log it as removed and re-added.
pub fn hardware_facts(hw: &Hardware) -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    let mut put = |field: String, value: String| {
        if !value.is_empty() && value != "0" {
            facts.insert(field, value);
        }
    };
    let os = &hw.os;
    for (name, value) in [
        ("os.name", &os.name),
        ("os.version", &os.version),
        ("os.build", &os.build),
        ("os.edition", &os.edition),
        ("os.arch", &os.arch),
        ("hostname", &hw.hostname),
        ("domain", &hw.domain),
        ("workgroup", &hw.workgroup),
        ("system.manufacturer", &hw.system.manufacturer),
        ("system.model", &hw.system.model),
        ("system.serial", &hw.system.serial),
        ("system.uuid", &hw.system.uuid),
        ("bios.vendor", &hw.bios.vendor),
        ("bios.version", &hw.bios.version),
        ("bios.date", &hw.bios.date),
        ("bios.firmware", &hw.bios.firmware),
        ("cpu.model", &hw.cpu.model),
        ("cpu.vendor", &hw.cpu.vendor),
        ("timezone", &hw.timezone),
    ] {
        put(name.to_owned(), value.clone());
    }
    put("cpu.sockets".into(), hw.cpu.sockets.to_string());
    put("cpu.cores".into(), hw.cpu.cores.to_string());
    put("cpu.threads".into(), hw.cpu.threads.to_string());
    put("memory.total_bytes".into(), hw.memory.total_bytes.to_string());
    for m in &hw.memory.modules {
        let at = format!("memory.module[{}]", m.slot);
        put(format!("{at}.size_bytes"), m.size_bytes.to_string());
        put(format!("{at}.speed_mts"), m.speed_mts.to_string());
        put(format!("{at}.part_number"), m.part_number.clone());
    }
    for d in &hw.disks {
        let at = format!("disk[{}]", d.name);
        put(format!("{at}.model"), d.model.clone());
        put(format!("{at}.serial"), d.serial.clone());
        put(format!("{at}.size_bytes"), d.size_bytes.to_string());
    }
    for v in &hw.volumes {
        let at = format!("volume[{}]", v.mount);
        put(format!("{at}.file_system"), v.file_system.clone());
        put(format!("{at}.size_bytes"), v.size_bytes.to_string());
    }
    for n in &hw.network {
        let at = format!("network[{}]", if n.mac.is_empty() { &n.name } else { &n.mac });
        put(format!("{at}.name"), n.name.clone());
        put(format!("{at}.addresses"), n.addresses.join(" "));
        put(format!("{at}.gateways"), n.gateways.join(" "));
        put(format!("{at}.dhcp"), n.dhcp.map(|d| d.to_string()).unwrap_or_default());
    }
    for g in &hw.gpus {
        let at = format!("gpu[{}]", g.name);
        put(format!("{at}.driver_version"), g.driver_version.clone());
        put(format!("{at}.memory_bytes"), g.memory_bytes.to_string());
    }
    facts
}

/// The facts that differ between two hardware reports, by field name.
pub fn hardware(old: &Hardware, new: &Hardware) -> Vec<FactChange> {
    let (old, new) = (hardware_facts(old), hardware_facts(new));
    let mut changes = Vec::new();
    for (field, value) in &new {
        if old.get(field) != Some(value) {
            changes.push(FactChange { field: field.clone(), old: old.get(field).cloned(), new: Some(value.clone()) });
        }
    }
    for (field, value) in &old {
        if !new.contains_key(field) {
            changes.push(FactChange { field: field.clone(), old: Some(value.clone()), new: None });
        }
    }
    changes.sort_by(|a, b| a.field.cmp(&b.field));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Disk, NetworkAdapter};

    fn item(id: &str, version: &str) -> Software {
        Software {
            source: "dpkg".into(),
            id: id.into(),
            name: id.into(),
            version: version.into(),
            ..Default::default()
        }
    }

    #[test]
    fn software_changes_are_installs_removals_and_version_changes() {
        let old = [item("a", "1"), item("b", "1"), item("c", "1")];
        let mut c2 = item("c", "1");
        c2.publisher = "Someone".into();
        let new = [item("a", "1"), item("b", "2"), c2.clone(), item("d", "1")];
        let changes = software(&old, &new);
        assert_eq!(
            changes,
            vec![
                SoftwareChange::VersionChanged { old: &old[1], new: &new[1] },
                SoftwareChange::Updated { old: &old[2], new: &c2 },
                SoftwareChange::Installed(&new[3]),
            ]
        );
        assert_eq!(software(&new, &old).len(), 3);
        assert!(matches!(software(&new, &old)[2], SoftwareChange::Removed(s) if s.id == "d"));
        assert!(software(&old, &old).is_empty());
    }

    #[test]
    fn hardware_changes_name_the_field_and_ignore_order() {
        let disk = |name: &str, size: u64| Disk { name: name.into(), size_bytes: size, ..Default::default() };
        let mut old = Hardware::default();
        old.os.build = "22631.1".into();
        old.memory.total_bytes = 8 << 30;
        old.disks = vec![disk("sda", 100), disk("sdb", 200)];
        old.network = vec![NetworkAdapter { name: "eth0".into(), mac: "aa".into(), ..Default::default() }];
        let mut new = old.clone();
        new.disks.reverse();
        assert!(hardware(&old, &new).is_empty(), "a reordered list is not a change");

        new.os.build = "22631.2".into();
        new.memory.total_bytes = 16 << 30;
        new.disks.retain(|d| d.name != "sdb");
        new.network[0].addresses = vec!["10.0.0.2/24".into()];
        let fields: Vec<_> = hardware(&old, &new).into_iter().map(|c| (c.field, c.old, c.new)).collect();
        assert_eq!(
            fields,
            vec![
                ("disk[sdb].size_bytes".into(), Some("200".into()), None),
                ("memory.total_bytes".into(), Some((8u64 << 30).to_string()), Some((16u64 << 30).to_string())),
                ("network[aa].addresses".into(), None, Some("10.0.0.2/24".into())),
                ("os.build".into(), Some("22631.1".into()), Some("22631.2".into())),
            ]
        );
    }
}
