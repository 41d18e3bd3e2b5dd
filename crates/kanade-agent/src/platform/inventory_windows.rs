//! Inventory on Windows: hardware and status from WMI, installed software from the registry's Uninstall keys, and
//! logged-on sessions from `quser`.
//!
//! This file cannot be compiled on the Linux machines the project is built on. It is written against the APIs of
//! `wmi` 0.18 and `winreg` 0.56 and holds only the calls themselves: the WMI row types and every conversion are in
//! `crate::inventory::parse::windows`, compiled and tested on every OS against recorded samples.
//!
//! Store (Appx/MSIX) apps are not listed. The only complete source is `Get-AppxPackage -AllUsers`, which needs an
//! elevated PowerShell (seconds to start, more to run) and returns hundreds of framework and system packages per
//! user; the Uninstall keys hold what is installed on a managed PC, per-user installs included.

use std::collections::HashMap;
use std::time::Duration;

use kanade_shared::inventory::{Hardware, MAX_SOFTWARE_ITEMS, SoftwareList, Status};
use serde::de::DeserializeOwned;
use winreg::enums::{HKEY_LOCAL_MACHINE, HKEY_USERS, KEY_READ, KEY_WOW64_64KEY, RegType};
use winreg::{RegKey, RegValue};
use wmi::{FilterValue, WMIConnection};

use crate::inventory::collect::{self, Collected, CommandError, HostRoot};
use crate::inventory::parse::windows::{self as parse, RegData, RegKind, UninstallView, WmiClass};

/// What 64-bit installers (and all installers on 32-bit Windows) register.
const UNINSTALL: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
/// What 32-bit installers register on 64-bit Windows. Named outright rather than reached with `KEY_WOW64_32KEY`:
/// on 32-bit Windows that flag is ignored and would read the native key a second time, where this path is absent.
const UNINSTALL_32: &str = r"SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";
/// One subkey per user profile on the PC, named by the user's SID, whether or not the user is signed in.
const PROFILE_LIST: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList";
/// Under each user's hive in `HKU`.
const USER_UNINSTALL: &str = r"Software\Microsoft\Windows\CurrentVersion\Uninstall";
/// Every key is opened through the 64-bit view, so a 32-bit build of the agent reads what a 64-bit one does.
const READ: u32 = KEY_READ | KEY_WOW64_64KEY;
/// Values read from one Uninstall entry; real ones have a dozen or two.
const MAX_VALUES_PER_ENTRY: usize = 256;
/// Loaded hives under `HKU` looked at; a terminal server has one per signed-in user.
const MAX_USER_HIVES: usize = 1_000;
const QUSER_TIMEOUT: Duration = Duration::from_secs(10);
const QUSER_MAX_BYTES: u64 = 256 * 1024;

pub fn hardware(_root: &HostRoot) -> Collected<Hardware> {
    let mut errors = Vec::new();
    let Some(wmi) = connect(r"ROOT\CIMV2", &mut errors) else {
        return Collected { data: Hardware::default(), errors };
    };
    let rows = parse::WmiHardware {
        os: query(&wmi, &mut errors),
        computer: query(&wmi, &mut errors),
        product: query(&wmi, &mut errors),
        bios: query(&wmi, &mut errors),
        processors: query(&wmi, &mut errors),
        memory: query(&wmi, &mut errors),
        disks: query(&wmi, &mut errors),
        // Only the storage namespace tells an SSD from a disk and NVMe from SATA.
        physical_disks: connect(r"ROOT\Microsoft\Windows\Storage", &mut errors)
            .map(|storage| query(&storage, &mut errors))
            .unwrap_or_default(),
        logical_disks: local_disks(&wmi, &mut errors),
        adapters: filtered_query(&wmi, "IPEnabled", FilterValue::Bool(true), &mut errors),
        video: query(&wmi, &mut errors),
        time_zone: query(&wmi, &mut errors),
        registry: registry_facts(),
    };
    Collected { data: parse::hardware(&rows), errors }
}

pub fn software(_root: &HostRoot) -> Collected<SoftwareList> {
    let mut list = SoftwareList::default();
    let mut errors = Vec::new();
    let machine = RegKey::predef(HKEY_LOCAL_MACHINE);
    let mut complete = read_uninstall(&machine, UNINSTALL, UninstallView::Machine64, &mut list, &mut errors);
    complete &= read_uninstall(&machine, UNINSTALL_32, UninstallView::Machine32, &mut list, &mut errors);
    // Per-user installs live in each user's own hive, loaded while that user is signed in (or a service runs as
    // them). The hives of users who are not are files in their profiles, locked or not ours to load: those
    // users' installs are reported the next time they are signed in during a collection.
    let users = RegKey::predef(HKEY_USERS);
    let sids: Vec<String> =
        users.enum_keys().filter_map(Result::ok).filter(|sid| parse::is_user_hive(sid)).take(MAX_USER_HIVES).collect();
    for sid in &sids {
        let path = format!(r"{sid}\{USER_UNINSTALL}");
        complete &= read_uninstall(&users, &path, UninstallView::User { sid: sid.as_str() }, &mut list, &mut errors);
    }
    // The users with a profile whose hive is not loaded: their installs are unknown this time, not removed.
    let profiles: Vec<String> = machine
        .open_subkey_with_flags(PROFILE_LIST, READ)
        .map(|key| key.enum_keys().filter_map(Result::ok).take(MAX_USER_HIVES).collect())
        .unwrap_or_default();
    list.unread_scopes = parse::unread_user_scopes(&profiles, &sids);
    // Both sources come from the same keys: when one could not be read, the backend keeps what it had from them
    // rather than log that key's products as removed.
    if !complete {
        list.failed_sources.extend(["msi".to_owned(), "registry".to_owned()]);
    }
    Collected { data: list, errors }
}

pub fn status(_root: &HostRoot) -> Collected<Status> {
    let mut errors = Vec::new();
    let (os, computer, disks): (Vec<parse::OperatingSystemRow>, Vec<parse::ComputerSystemRow>, Vec<_>) =
        match connect(r"ROOT\CIMV2", &mut errors) {
            Some(wmi) => (query(&wmi, &mut errors), query(&wmi, &mut errors), local_disks(&wmi, &mut errors)),
            None => Default::default(),
        };
    let sessions = match collect::run("quser", &[], QUSER_TIMEOUT, QUSER_MAX_BYTES) {
        Ok(text) => Some(text),
        // Home editions have no quser, and it exits 1 when no one is signed in ("No User exists for *"): either
        // way the console user from WMI is all there is.
        Err(CommandError::NotFound(_) | CommandError::Failed { .. }) => None,
        Err(err) => {
            errors.push(err.to_string());
            None
        }
    };
    // quser prints local times; the offset now reads them (a logon before a DST change is an hour off).
    let offset = *chrono::Local::now().offset();
    Collected { data: parse::status(&os, &computer, &disks, sessions.as_deref(), offset), errors }
}

fn connect(namespace: &str, errors: &mut Vec<String>) -> Option<WMIConnection> {
    // Initialises COM for this (blocking) thread if it is not yet, and leaves it so: the crate's documented use.
    WMIConnection::with_namespace_path(namespace)
        .map_err(|err| errors.push(format!("cannot connect to WMI `{namespace}`: {err}")))
        .ok()
}

/// Every row of `T`'s class: `SELECT <T's fields> FROM <T's class>`, as the `wmi` crate builds it from the serde
/// names.
fn query<T: DeserializeOwned + WmiClass>(wmi: &WMIConnection, errors: &mut Vec<String>) -> Vec<T> {
    wmi.query::<T>().unwrap_or_else(|err| {
        errors.push(format!("cannot query WMI `{}`: {err}", T::CLASS));
        Vec::new()
    })
}

/// The rows of `T`'s class `WHERE <property> = <value>`.
fn filtered_query<T: DeserializeOwned + WmiClass>(
    wmi: &WMIConnection,
    property: &str,
    value: FilterValue,
    errors: &mut Vec<String>,
) -> Vec<T> {
    let filters = HashMap::from([(property.to_owned(), value)]);
    wmi.filtered_query::<T>(&filters).unwrap_or_else(|err| {
        errors.push(format!("cannot query WMI `{}` where `{property}`: {err}", T::CLASS));
        Vec::new()
    })
}

/// Local fixed disks only (`DriveType = 3`): not removable, network or optical drives.
fn local_disks(wmi: &WMIConnection, errors: &mut Vec<String>) -> Vec<parse::LogicalDiskRow> {
    filtered_query(wmi, "DriveType", FilterValue::Number(3), errors)
}

fn registry_facts() -> parse::RegistryFacts {
    let machine = RegKey::predef(HKEY_LOCAL_MACHINE);
    let open = |path: &str| machine.open_subkey_with_flags(path, READ).ok();
    let current = open(r"SOFTWARE\Microsoft\Windows NT\CurrentVersion");
    let control = open(r"SYSTEM\CurrentControlSet\Control");
    let time_zone = open(r"SYSTEM\CurrentControlSet\Control\TimeZoneInformation");
    parse::RegistryFacts {
        ubr: current.as_ref().and_then(|key| value(key, "UBR").number()),
        edition_id: current.as_ref().map(|key| value(key, "EditionID").text()).unwrap_or_default(),
        firmware_type: control.as_ref().and_then(|key| value(key, "PEFirmwareType").number()),
        time_zone_key: time_zone.as_ref().map(|key| value(key, "TimeZoneKeyName").text()).unwrap_or_default(),
    }
}

fn value(key: &RegKey, name: &str) -> RegData {
    key.get_raw_value(name).map(|raw| decode(&raw)).unwrap_or(RegData::Other)
}

/// A value's type for the pure decoder, which reads the raw bytes itself.
fn decode(raw: &RegValue<'_>) -> RegData {
    let kind = match raw.vtype {
        RegType::REG_SZ | RegType::REG_EXPAND_SZ => RegKind::Text,
        RegType::REG_DWORD => RegKind::Dword,
        RegType::REG_QWORD => RegKind::Qword,
        _ => RegKind::Other,
    };
    RegData::decode(kind, &raw.bytes)
}

/// Adds one Uninstall key's entries to `list`; false when the key exists but could not be read. A key that does
/// not exist (no 32-bit view on 32-bit Windows, no per-user installs for most accounts) adds nothing and is no
/// error.
fn read_uninstall(
    base: &RegKey,
    path: &str,
    view: UninstallView<'_>,
    list: &mut SoftwareList,
    errors: &mut Vec<String>,
) -> bool {
    let key = match base.open_subkey_with_flags(path, READ) {
        Ok(key) => key,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return true,
        Err(err) => {
            errors.push(format!("cannot open `{path}`: {err}"));
            return false;
        }
    };
    let mut names = key.enum_keys();
    for name in names.by_ref().take(MAX_SOFTWARE_ITEMS) {
        // An entry that vanished mid-walk (an uninstall running) or that we may not read is skipped; the rest are
        // still worth reporting.
        let Ok(name) = name else { continue };
        let Ok(entry) = key.open_subkey_with_flags(&name, READ) else { continue };
        let values: Vec<(String, RegData)> = entry
            .enum_values()
            .take(MAX_VALUES_PER_ENTRY)
            .filter_map(Result::ok)
            .map(|(value_name, raw)| (value_name, decode(&raw)))
            .collect();
        if let Some(item) = parse::software_from_uninstall_key(view, &name, &values) {
            list.items.push(item);
        }
    }
    let skipped = names.count();
    if skipped > 0 {
        list.dropped = list.dropped.saturating_add(skipped as u64);
        errors.push(format!("`{path}` has over {MAX_SOFTWARE_ITEMS} entries; {skipped} were not read"));
    }
    true
}
