//! Inventory on macOS: hardware from `sysctl`, `sw_vers` and one `system_profiler -json` call; software from the
//! app bundles in `/Applications` and in each user's `~/Applications`; status from `kern.boottime`, `who` and
//! `system_profiler`'s storage report.
//!
//! This file cannot be compiled on the Linux machines the project is built on. It uses only the standard library,
//! `nix`'s re-export of `libc` and `collect::run`, and holds only the I/O: every parser is in
//! `crate::inventory::parse::macos`, compiled and tested on every OS against recorded samples.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kanade_shared::inventory::{Hardware, Software, SoftwareList, Status};

use crate::inventory::collect::{self, Collected, CommandError, HostRoot};
use crate::inventory::parse::macos::{self as parse, InfoPlistError, SwVers, Sysctl, SystemProfiler};

/// `sysctl`, `sw_vers` and `who` answer at once and print a few lines.
const SHORT_TIMEOUT: Duration = Duration::from_secs(10);
const SHORT_MAX_BYTES: u64 = 64 * 1024;
/// App bundles read; more are counted as dropped.
const MAX_BUNDLES: usize = 5_000;
/// Largest `Info.plist` read; real ones are a few kilobytes.
const MAX_PLIST_BYTES: u64 = 1024 * 1024;
/// Entries of one folder looked at, so a folder of a million files costs a bounded walk.
const MAX_DIR_ENTRIES: usize = 20_000;
/// Unreadable bundles named one by one in the report's errors; the rest are counted.
const MAX_BUNDLE_ERRORS: usize = 10;

pub fn hardware(root: &HostRoot) -> Collected<Hardware> {
    let mut errors = Vec::new();
    let sysctl = sysctl(&mut errors);
    let sw_vers = run("sw_vers", &[], &mut errors).map(|text| SwVers::parse(&text)).unwrap_or_default();
    let profiler = system_profiler(parse::PROFILER_TYPES, &mut errors);
    // `/etc/localtime` links to `/var/db/timezone/zoneinfo/<IANA name>`; `systemsetup -gettimezone` would need a
    // process and says the same.
    let link = std::fs::read_link(root.join("/etc/localtime")).ok();
    let link = link.as_deref().map(Path::to_string_lossy);
    Collected { data: parse::hardware(&sysctl, &sw_vers, &profiler, link.as_deref()), errors }
}

pub fn software(root: &HostRoot) -> Collected<SoftwareList> {
    let mut errors = Vec::new();
    let mut bundles = Bundles::default();
    // Apps sit at the top of `/Applications` or one folder down (`Utilities`, suites such as `Microsoft Office`).
    bundles.find(root, "/Applications", "machine", 2, &mut errors);
    for home in list_dir(root, "/Users", &mut errors).unwrap_or_default() {
        if let Some(scope) = parse::home_scope(&home) {
            bundles.find(root, &format!("/Users/{home}/Applications"), &scope, 2, &mut errors);
        }
    }
    let mut list = SoftwareList { dropped: bundles.over as u64, ..SoftwareList::default() };
    // A folder that could not be listed hides its apps this time: the backend keeps what it had rather than log
    // them removed. One unreadable bundle is only left out (and named below): a broken one would otherwise hold
    // every other app's changes back for good.
    if bundles.unlisted {
        list.failed_sources.push("app".to_owned());
    }
    let mut unreadable = 0usize;
    for (path, scope) in &bundles.found {
        match read_bundle(root, path, scope) {
            Ok(Some(item)) => list.items.push(item),
            Ok(None) => {}
            Err(err) => {
                unreadable += 1;
                if unreadable <= MAX_BUNDLE_ERRORS {
                    errors.push(err);
                }
            }
        }
    }
    if unreadable > MAX_BUNDLE_ERRORS {
        errors.push(format!("{} more app bundles could not be read", unreadable - MAX_BUNDLE_ERRORS));
    }
    Collected { data: list, errors }
}

pub fn status(_root: &HostRoot) -> Collected<Status> {
    let mut errors = Vec::new();
    let boot = run("sysctl", &["kern.boottime"], &mut errors).map(|text| Sysctl::parse(&text)).unwrap_or_default();
    let who = run("who", &[], &mut errors);
    let storage = system_profiler(&["SPStorageDataType"], &mut errors);
    // `who` prints local times without a year; the offset now reads them.
    let offset = *chrono::Local::now().offset();
    Collected { data: parse::status(&boot, who.as_deref(), &storage, Utc::now(), offset), errors }
}

/// A short helper program's output, or `None` with the reason in `errors`.
fn run(program: &str, args: &[&str], errors: &mut Vec<String>) -> Option<String> {
    collect::run(program, args, SHORT_TIMEOUT, SHORT_MAX_BYTES).map_err(|err| errors.push(err.to_string())).ok()
}

/// One `sysctl` call per key: a call naming a key this Mac lacks (`hw.cpufrequency_max` on Apple silicon) fails
/// as a whole, and that must cost only that key.
fn sysctl(errors: &mut Vec<String>) -> Sysctl {
    let mut text = String::new();
    for key in parse::SYSCTL_KEYS {
        match collect::run("sysctl", &[*key], SHORT_TIMEOUT, SHORT_MAX_BYTES) {
            Ok(out) => text.push_str(&out),
            Err(CommandError::Failed { .. }) => {}
            Err(err) => {
                errors.push(err.to_string());
                break;
            }
        }
    }
    Sysctl::parse(&text)
}

/// `system_profiler -json <types>`: slow (seconds, for the displays and network types), so bounded by the
/// collectors' long timeout.
fn system_profiler(types: &[&str], errors: &mut Vec<String>) -> SystemProfiler {
    let args: Vec<&str> = std::iter::once("-json").chain(types.iter().copied()).collect();
    let text = match collect::run("system_profiler", &args, collect::COMMAND_TIMEOUT, collect::COMMAND_MAX_BYTES) {
        Ok(text) => text,
        Err(err) => {
            errors.push(err.to_string());
            return SystemProfiler::default();
        }
    };
    SystemProfiler::parse(&text).unwrap_or_else(|err| {
        errors.push(format!("`system_profiler` printed no JSON: {err}"));
        SystemProfiler::default()
    })
}

/// The app bundles found: host paths (`/Applications/Slack.app`) with their scope, at most [`MAX_BUNDLES`].
#[derive(Default)]
struct Bundles {
    found: Vec<(String, String)>,
    /// Bundles seen past the limit.
    over: usize,
    /// A folder could not be listed.
    unlisted: bool,
}

impl Bundles {
    /// Adds the bundles in `dir`, looking `depth - 1` folders further into folders that are not bundles.
    fn find(&mut self, root: &HostRoot, dir: &str, scope: &str, depth: u8, errors: &mut Vec<String>) {
        let Some(names) = list_dir(root, dir, errors) else {
            self.unlisted = true;
            return;
        };
        for name in names {
            let path = format!("{dir}/{name}");
            if parse::is_app_bundle(&name) {
                if self.found.len() < MAX_BUNDLES {
                    self.found.push((path, scope.to_owned()));
                } else {
                    self.over += 1;
                }
            } else if depth > 1 && !name.starts_with('.') && root.join(&path).is_dir() {
                self.find(root, &path, scope, depth - 1, errors);
            }
        }
    }
}

/// The names in a folder, sorted (so the bundles kept under the limit are the same every time) and bounded; none
/// when it does not exist, and `None` (the reason in `errors`) when it cannot be listed.
fn list_dir(root: &HostRoot, dir: &str, errors: &mut Vec<String>) -> Option<Vec<String>> {
    match std::fs::read_dir(root.join(dir)) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .take(MAX_DIR_ENTRIES)
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect();
            names.sort();
            Some(names)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
        Err(err) => {
            errors.push(format!("cannot list `{dir}`: {err}"));
            None
        }
    }
}

/// One bundle as a [`Software`] item; `None` for a `.app` folder without an `Info.plist` (a broken download, a
/// wrapper), which is not an app to report.
fn read_bundle(root: &HostRoot, path: &str, scope: &str) -> Result<Option<Software>, String> {
    let plist = format!("{path}/Contents/Info.plist");
    let bytes = match read_regular_file(&root.join(&plist), MAX_PLIST_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(err) => return Err(format!("cannot read `{plist}`: {err}")),
    };
    if bytes.len() as u64 > MAX_PLIST_BYTES {
        return Err(format!("`{plist}` is larger than {MAX_PLIST_BYTES} bytes"));
    }
    let modified = std::fs::metadata(root.join(path)).and_then(|meta| meta.modified()).ok().map(DateTime::<Utc>::from);
    match parse::software_from_info_plist(&bytes, path, scope, modified) {
        Ok(item) => Ok(Some(item)),
        Err(err @ InfoPlistError::Parse { .. }) => {
            let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
            Err(format!("{err}: {cause}"))
        }
        Err(err) => Err(err.to_string()),
    }
}

/// A regular file's first `max + 1` bytes (one more than allowed, so the caller can tell it was larger); `None`
/// when it does not exist. `~/Applications` is its user's to fill, and the agent reads it as root: the file is
/// opened without blocking and checked after opening, so a FIFO or a device left where an `Info.plist` should be
/// can neither hang the collector nor feed it endlessly.
fn read_regular_file(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}
