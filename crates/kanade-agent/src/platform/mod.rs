//! Everything that differs between operating systems, behind one interface: how a script's process tree is
//! created and killed, which shells exist and how each is launched, and where the agent keeps its data. Nothing
//! outside this module mentions `cfg(windows)` or `cfg(unix)`.

use std::path::{Path, PathBuf};

use kanade_shared::inventory::{Hardware, SoftwareList, Status};
use kanade_shared::wire::Shell;

use crate::inventory::collect::{Collected, HostRoot};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

// Inventory collectors: Linux (and any other Unix but macOS) reads /proc, /sys and the package databases; macOS
// asks sysctl and system_profiler and reads bundles; Windows asks WMI and the registry.
#[cfg(all(unix, not(target_os = "macos")))]
mod inventory_linux;
#[cfg(all(unix, not(target_os = "macos")))]
use inventory_linux as inventory_imp;
#[cfg(target_os = "macos")]
mod inventory_macos;
#[cfg(target_os = "macos")]
use inventory_macos as inventory_imp;
#[cfg(windows)]
mod inventory_windows;
#[cfg(windows)]
use inventory_windows as inventory_imp;

// Per-disk I/O counters for live performance: Linux reads /proc/diskstats, Windows asks each physical drive,
// macOS takes what sysinfo reads per volume.
#[cfg(all(unix, not(target_os = "macos")))]
mod perf_linux;
#[cfg(all(unix, not(target_os = "macos")))]
use perf_linux as perf_imp;
#[cfg(target_os = "macos")]
mod perf_macos;
#[cfg(target_os = "macos")]
use perf_macos as perf_imp;
#[cfg(windows)]
mod perf_windows;
#[cfg(windows)]
use perf_windows as perf_imp;

/// A spawned script and everything it starts, killable as a whole.
pub use imp::ProcessTree;

/// Prepares `command` so that the child and all its descendants can later be killed as one tree.
pub fn isolate(command: &mut tokio::process::Command) {
    imp::isolate(command);
}

/// Gives a freshly written agent binary the permission to run (a no-op where files carry none).
pub fn make_executable(path: &Path) -> std::io::Result<()> {
    imp::make_executable(path)
}

/// Makes `dir` (created if missing) the agent's own: readable and writable by the agent's account only. Unix: mode
/// 0700. Windows: a protected ACL granting full control to SYSTEM and Administrators alone, by SID (names are
/// localised), inherited by everything inside; ProgramData's own ACL would let any user create files there — a
/// forged result in the outbox, a run's claim planted to suppress it, a staged script SYSTEM then runs.
pub fn protect_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    imp::protect_dir(dir)
}

/// The access rule [`protect_dir`] sets on Windows, in SDDL: protected (`P`), auto-inherited (`AI`), full access
/// (`FA`) for LocalSystem (`SY`, S-1-5-18) and the Administrators group (`BA`, S-1-5-32-544), inherited by files
/// and subfolders (`OICI`).
pub const PROTECTED_DIR_SDDL: &str = "D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/// Writes a secret (a credential, a key) atomically: a temp file readable by the agent's account only, synced,
/// renamed over `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut file = imp::create_private(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// How to run a script under one shell: the file name to stage it as, and the program line that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Files to write into the staging dir before starting: (file name, contents).
    pub files: Vec<(String, String)>,
}

/// The launch plan for `script` under `shell` in `staging`, or `None` when this host cannot run that shell.
pub fn launch(shell: &Shell, script: &str, staging: &Path) -> Option<Launch> {
    imp::launch(shell, script, staging)
}

/// PowerShell launcher: UTF-8 output, the script called with `&` so `[CmdletBinding()]`/`param()` work, and the
/// script's own exit code (or 1 after a terminating error) as the process exit code.
fn powershell_launcher(script_path: &Path) -> String {
    let quoted = script_path.display().to_string().replace('\'', "''");
    format!(
        "$ErrorActionPreference = 'Continue'\n\
         [Console]::OutputEncoding = [System.Text.UTF8Encoding]::new($false)\n\
         $OutputEncoding = [System.Text.UTF8Encoding]::new($false)\n\
         try {{\n\
         \x20   & '{quoted}'\n\
         \x20   if ($LASTEXITCODE) {{ exit $LASTEXITCODE }}\n\
         \x20   if (-not $?) {{ exit 1 }}\n\
         \x20   exit 0\n\
         }} catch {{\n\
         \x20   [Console]::Error.WriteLine($_.ToString())\n\
         \x20   exit 1\n\
         }}\n"
    )
}

fn powershell_launch(program: PathBuf, script: &str, staging: &Path) -> Launch {
    let script_path = staging.join("script.ps1");
    let launcher_path = staging.join("launcher.ps1");
    Launch {
        program,
        args: [
            "-NoLogo",
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-File",
            &launcher_path.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec(),
        files: vec![
            // A BOM makes Windows PowerShell 5.1 read the script as UTF-8 rather than the ANSI code page.
            ("script.ps1".into(), format!("\u{feff}{script}")),
            ("launcher.ps1".into(), format!("\u{feff}{}", powershell_launcher(&script_path))),
        ],
    }
}

fn find(program: &str) -> Option<PathBuf> {
    which::which(program).ok()
}

/// Resolves when the service manager or the user asks the agent to stop (Ctrl-C; SIGTERM on Unix).
pub async fn shutdown_signal() {
    imp::shutdown_signal().await;
}

/// The agent's body as a service: given the token a stop request from the service manager cancels, it runs the
/// agent and returns the process's exit code.
pub type ServiceBody = Box<dyn FnOnce(tokio_util::sync::CancellationToken) -> u8 + Send>;

/// Runs `body` as this OS's service manager expects and returns its exit code. On Windows the process is handed
/// to the service control manager, which calls the body on a thread of its own and hears the exit code as the
/// service's; elsewhere the body simply runs (systemd and launchd supervise a foreground process).
pub fn run_service(body: ServiceBody) -> u8 {
    imp::run_service(body)
}

/// What the PC is: OS, system, firmware, CPU, memory, disks, volumes, network adapters, GPUs, time zone.
/// Blocking; bounded in time by the helper programs' own limits (`crate::inventory::collect::run`).
pub fn collect_hardware(root: &HostRoot) -> Collected<Hardware> {
    inventory_imp::hardware(root)
}

/// What the PC has installed, from every package source this platform has.
pub fn collect_software(root: &HostRoot) -> Collected<SoftwareList> {
    inventory_imp::software(root)
}

/// What the PC is doing now: boot time, logged-on users, each volume's free space.
pub fn collect_status(root: &HostRoot) -> Collected<Status> {
    inventory_imp::status(root)
}

/// Each whole disk's I/O counters since boot (empty where the platform gives none). Blocking, and cheap: one
/// small procfs read, or one query per physical drive.
pub fn disk_counters() -> Vec<crate::perf::sample::DiskCounters> {
    perf_imp::disk_counters()
}

/// What a process's read and write figures count on this platform.
pub const PROCESS_IO: kanade_shared::perf::IoScope = perf_imp::PROCESS_IO;

/// The OS name reported in heartbeats: `windows`, `linux`, `macos`, ...
pub fn os_name() -> &'static str {
    std::env::consts::OS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powershell_launcher_quotes_the_path() {
        let text = powershell_launcher(Path::new("/tmp/it's/script.ps1"));
        assert!(text.contains("& '/tmp/it''s/script.ps1'"), "{text}");
        assert!(text.contains("exit $LASTEXITCODE"));
    }

    #[test]
    fn unknown_shells_cannot_launch() {
        assert_eq!(launch(&Shell::Other("python9".into()), "x", Path::new("/tmp")), None);
    }
}
