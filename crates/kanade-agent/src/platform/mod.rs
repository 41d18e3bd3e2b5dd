//! Everything that differs between operating systems, behind one interface: how a script's process tree is
//! created and killed, which shells exist and how each is launched, and where the agent keeps its data. Nothing
//! outside this module mentions `cfg(windows)` or `cfg(unix)`.

use std::path::{Path, PathBuf};

use kanade_shared::inventory::{Hardware, SoftwareList, Status};
use kanade_shared::wire::{Reason, RunAs, Shell};

use crate::inventory::collect::{Collected, HostRoot};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

// kanade-client's local IPC: a Unix domain socket, or a named pipe on Windows.
#[cfg(unix)]
mod client_ipc_unix;
#[cfg(unix)]
use client_ipc_unix as client_ipc_imp;
#[cfg(windows)]
mod client_ipc_windows;
#[cfg(windows)]
use client_ipc_windows as client_ipc_imp;

// Who sits at the screen: systemd-logind (Linux).
#[cfg(all(unix, not(target_os = "macos")))]
mod logind;

// Scripts in the console's session on Windows (`run_as: user | system_gui`): the decisions (who, the command line,
// the environment block, the staging dir's access rule) are plain functions compiled and tested on every OS; the
// calls that act on them (the session's token, CreateProcessAsUserW) exist on Windows only.
mod windows_plan;
#[cfg(windows)]
mod windows_session;

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

/// Who a script runs as (`run_as`), resolved on this host when its run starts.
pub use imp::Identity;

/// Why a run cannot take the identity it asks for: it is skipped with `reason`; `message` says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub reason: Reason,
    pub message: String,
}

/// Resolves `run_as` for a run starting now: `system` is the agent's own account; `user` is `configured` (the
/// agent's `run_as_user`) or else whoever is signed in at the PC's screen; `system_gui` is the agent's account in
/// that person's session. Nobody at the screen: [`Reason::NoUserSession`]. Windows refuses `configured`
/// ([`Reason::UnsupportedRunAs`]: a named account cannot be started without its password) and takes the console
/// session's user. Blocking (it may ask the session manager and the user database).
pub fn identity(run_as: &RunAs, configured: Option<&str>) -> Result<Identity, Unavailable> {
    imp::identity(run_as, configured)
}

/// Where kanade-client connects: [`ClientListener::bind`] listens (a Unix socket at the configured path; the named
/// pipe on Windows) and [`ClientListener::accept`] yields each connection ([`ClientStream`]) with its [`Peer`].
pub use client_ipc_imp::{ClientListener, ClientStream};

/// An account of this PC as the OS names it for comparison: `uid:<n>` on Unix, the SID on Windows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey(String);

impl UserKey {
    pub fn unix(uid: u32) -> Self {
        Self(format!("uid:{uid}"))
    }

    pub fn sid(sid: &str) -> Self {
        Self(sid.to_owned())
    }
}

/// Who is on the other end of a client connection, as the OS says (never as the client says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub key: UserKey,
    /// The account's name, for logs and for `hello`.
    pub name: String,
    pub pid: Option<u32>,
}

/// The account that may use kanade-client on this PC now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUser {
    pub key: UserKey,
    pub name: String,
}

/// The user kanade-client must be running as: `configured` (the agent's `run_as_user`, Unix only) or whoever is
/// signed in at the PC's screen (logind's active seat on Linux, the console's owner on macOS, the console session on
/// Windows). `None`: nobody is. Blocking.
pub fn signed_in_user(configured: Option<&str>) -> Result<Option<LocalUser>, String> {
    client_ipc_imp::signed_in_user(configured)
}

/// One output stream of a started script, read as it comes.
pub type Output = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// A started script: its output streams, its process tree and its first process.
pub struct Spawned {
    pub stdout: Output,
    pub stderr: Output,
    /// Everything the script starts, to kill as a whole; an error when it could not be tracked (then only the first
    /// process can be killed, with [`Process::start_kill`]).
    pub tree: std::io::Result<ProcessTree>,
    pub process: Process,
}

/// A script's first process: what its run waits for, and whose exit code it reports.
pub struct Process(ProcessKind);

#[cfg_attr(not(windows), allow(dead_code))] // Unix starts every script through tokio.
enum ProcessKind {
    /// Started by tokio: every run on Unix, the agent's own account's on Windows.
    Tokio(tokio::process::Child),
    /// Started by the platform itself: on Windows a run in the console's session (CreateProcessAsUserW).
    Native(imp::NativeProcess),
}

impl Process {
    /// Waits for the process to end: its exit code, or `None` when it has none (ended by a signal). Cancel-safe:
    /// waiting again after a wait was dropped goes on waiting for the same end.
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        match &mut self.0 {
            ProcessKind::Tokio(child) => child.wait().await.map(|status| status.code()),
            ProcessKind::Native(process) => process.wait().await,
        }
    }

    /// Starts killing the process alone (not its tree): for a run whose tree could not be tracked.
    pub fn start_kill(&mut self) {
        match &mut self.0 {
            ProcessKind::Tokio(child) => {
                let _ = child.start_kill();
            }
            ProcessKind::Native(process) => process.start_kill(),
        }
    }
}

/// Starts `launch` in `cwd` as `identity`, with `env` set over the environment `identity` gets (the agent's own, or
/// that account's), no input, and its output piped, in a process tree of its own. Dropping the [`Spawned`] kills the
/// first process (on Windows the whole tree, its Job Object closing). Unix: tokio's process API on the calling
/// thread, the identity taken in the child before it runs the shell. Windows: the same for the agent's own account;
/// for the console session's user and `system_gui`, the session's token and CreateProcessAsUserW on tokio's blocking
/// pool (they ask the session manager and read the user's registry hive), the process put in its Job Object before
/// it runs where Windows lets it.
pub async fn spawn(launch: &Launch, cwd: &Path, env: &[(&str, &str)], identity: &Identity) -> std::io::Result<Spawned> {
    imp::spawn(launch, cwd, env, identity).await
}

/// Serialises the agent's process creation with the moments a child's handles are inheritable. On Windows a process
/// started through the standard library (tokio's included) inherits every inheritable handle the agent holds, and a
/// run in the console's session makes its child's pipe ends inheritable for the few calls that create it: a process
/// started meanwhile would keep that run's output open until it ends. Held there from the moment the handles become
/// inheritable until the agent's copies are closed, and around every other process the agent starts, on every OS
/// (on Unix it only orders the spawns, each held for the spawn call alone).
static SPAWN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`SPAWN_LOCK`] until the guard is dropped: around every process the agent starts. Never held across an
/// `.await`. A thread that panicked holding it left nothing half-done behind (the lock guards no data), so a
/// poisoned lock is taken all the same.
pub fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`spawn`] through tokio's process API, `prepare` applied first (taking another account's identity replaces the
/// environment, which the run's own variables are then set over).
fn spawn_with_tokio(
    launch: &Launch,
    cwd: &Path,
    env: &[(&str, &str)],
    prepare: impl FnOnce(&mut tokio::process::Command),
) -> std::io::Result<Spawned> {
    let mut command = tokio::process::Command::new(&launch.program);
    prepare(&mut command);
    command
        .args(&launch.args)
        .current_dir(cwd)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    isolate(&mut command);
    let mut child = {
        let _spawning = spawn_lock();
        command.spawn()?
    };
    let tree = ProcessTree::attach(&child);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        // Piped above, so both are there; a child without them is not a run this agent can report.
        let _ = child.start_kill();
        return Err(std::io::Error::other("the child's output pipes are missing"));
    };
    Ok(Spawned {
        stdout: Box::new(stdout),
        stderr: Box::new(stderr),
        tree,
        process: Process(ProcessKind::Tokio(child)),
    })
}

/// A new, empty directory to stage the run `exec` as `identity` in: under the agent's private `staging_root` for
/// its own account; on Unix elsewhere (made so that nobody can have placed it) for another, on Windows under the
/// same root (any account may pass through a folder it cannot open, by the bypass-traverse right everyone holds).
/// Blocking.
pub fn new_staging(staging_root: &Path, exec: &str, identity: &Identity) -> std::io::Result<PathBuf> {
    imp::new_staging(staging_root, exec, identity)
}

/// Opens the staged files to `identity` for reading, and nothing more (not writing): on Unix by their owner and
/// mode, on Windows by the staging dir's access rule (`windows_plan::staging_sddl`), which the files inherit.
/// Blocking.
pub fn share_staging(staging: &Path, identity: &Identity) -> std::io::Result<()> {
    imp::share_staging(staging, identity)
}

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

/// Reads JSON the agent kept with [`write_private`]: `None` when there is no file; an error (to log, and start
/// afresh) when it is larger than `max_bytes` or does not read as `T`.
pub fn read_kept<T: serde::de::DeserializeOwned>(path: &Path, max_bytes: u64) -> Result<Option<T>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    if meta.len() > max_bytes {
        return Err(format!("{} bytes; at most {max_bytes} are read", meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
    serde_json::from_slice(&bytes).map(Some).map_err(|err| err.to_string())
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

/// The global the marked copy of a staged PowerShell script sets on its last line, so the launcher can tell a
/// script that ran to its end from one that left with `exit` (both leave `$LASTEXITCODE` set, by `exit N` or by a
/// native command).
const POWERSHELL_ENDED: &str = "$global:KanadeScriptEnded";

/// PowerShell launcher: UTF-8 output, the script called with `&` (so `[CmdletBinding()]`/`param()` work), and the
/// process's exit code as `powershell -File` gives it: the script's own `exit N`; 0 when it runs to its end (the
/// last native command's `$LASTEXITCODE` is not propagated: robocopy's 1 means success); 1 after an error that
/// ends it (no `try` here: one would turn every statement-terminating error inside the script into the end of it).
///
/// Which copy runs is decided from the script's syntax tree: a plain script (statements only, no `begin`,
/// `process`, `end` or `dynamicparam` block, no parse error) runs as `script-marked.ps1`, whose added last line says
/// it ran to its end; any other runs as it is, and then only a script with an `exit` statement somewhere exits with
/// `$LASTEXITCODE`.
fn powershell_launcher(script_path: &Path, marked_path: &Path) -> String {
    let quote = |path: &Path| path.display().to_string().replace('\'', "''");
    let (script, marked) = (quote(script_path), quote(marked_path));
    format!(
        "$ErrorActionPreference = 'Continue'\n\
         [Console]::OutputEncoding = [System.Text.UTF8Encoding]::new($false)\n\
         $OutputEncoding = [System.Text.UTF8Encoding]::new($false)\n\
         $kanadeTokens = $null\n\
         $kanadeErrors = $null\n\
         $kanadeAst = [System.Management.Automation.Language.Parser]::ParseFile('{script}', [ref]$kanadeTokens, [ref]$kanadeErrors)\n\
         $kanadePlain = ($kanadeErrors.Count -eq 0) -and -not ($kanadeAst.BeginBlock -or $kanadeAst.ProcessBlock -or \
         $kanadeAst.DynamicParamBlock -or $kanadeAst.CleanBlock -or ($kanadeAst.EndBlock -and -not $kanadeAst.EndBlock.Unnamed))\n\
         $kanadeExits = @($kanadeAst.FindAll({{ param($node) $node -is [System.Management.Automation.Language.ExitStatementAst] }}, $true)).Count -gt 0\n\
         {POWERSHELL_ENDED} = $false\n\
         $global:LASTEXITCODE = 0\n\
         if ($kanadePlain) {{ & '{marked}' }} else {{ & '{script}' }}\n\
         if ({POWERSHELL_ENDED} -or -not $kanadeExits) {{ exit 0 }}\n\
         exit $LASTEXITCODE\n"
    )
}

/// The script as staged for PowerShell: one BOM (Windows PowerShell 5.1 reads a file without one in the ANSI code
/// page; a script published from a file that had one must not get two, or `param()` stops being first), then the
/// text.
fn powershell_script(script: &str) -> String {
    let script = script.strip_prefix('\u{feff}').unwrap_or(script);
    format!("\u{feff}{script}")
}

/// The same with a last line that says it ran to its end, for the launcher to run when the script is plain.
fn powershell_marked_script(script: &str) -> String {
    format!("{}\n{POWERSHELL_ENDED} = $true\n", powershell_script(script))
}

/// A `sh`/`bash` script as staged: LF line ends (a script saved on Windows with CRLF would hand every command a
/// trailing carriage return).
fn posix_script(script: &str) -> String {
    script.replace("\r\n", "\n")
}

fn powershell_launch(program: PathBuf, script: &str, staging: &Path) -> Launch {
    let script_path = staging.join("script.ps1");
    let marked_path = staging.join("script-marked.ps1");
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
            ("script.ps1".into(), powershell_script(script)),
            ("script-marked.ps1".into(), powershell_marked_script(script)),
            ("launcher.ps1".into(), format!("\u{feff}{}", powershell_launcher(&script_path, &marked_path))),
        ],
    }
}

#[cfg_attr(not(windows), allow(dead_code))]
/// A `cmd` script as staged: commands not echoed, the UTF-8 code page (so output decodes as every other shell's),
/// and CRLF line ends throughout (`cmd` finds labels for `goto` and `call :label` only on CRLF lines).
fn cmd_script(script: &str) -> String {
    let script = script.strip_prefix('\u{feff}').unwrap_or(script);
    let mut staged = String::from("@echo off\r\n@chcp 65001 >nul\r\n");
    for line in script.lines() {
        staged.push_str(line);
        staged.push_str("\r\n");
    }
    staged
}

/// Where each shell is looked for on Windows, in order, given the environment (`var`). Known install locations
/// rather than `PATH`: a service sees the `PATH` of boot time, and `bash.exe` on it is System32's WSL launcher,
/// which cannot run as LocalSystem. `sh` and `bash` are Git for Windows'; only `pwsh` may also be found on `PATH`
/// afterwards (it has no fixed home across its installers).
#[cfg_attr(not(windows), allow(dead_code))]
fn windows_shell_paths(shell: &Shell, var: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let system_root = var("SystemRoot").unwrap_or_else(|| r"C:\Windows".to_owned());
    let program_dirs: Vec<String> = ["ProgramFiles", "ProgramW6432", "ProgramFiles(x86)"]
        .iter()
        .filter_map(|name| var(name))
        .fold(Vec::new(), |mut dirs, dir| {
            if !dirs.iter().any(|d: &String| d.eq_ignore_ascii_case(&dir)) {
                dirs.push(dir);
            }
            dirs
        });
    let in_programs = |tails: &[&str]| -> Vec<PathBuf> {
        program_dirs
            .iter()
            .flat_map(|dir| tails.iter().map(move |tail| PathBuf::from(format!(r"{dir}\{tail}"))))
            .collect()
    };
    match shell {
        Shell::Powershell => {
            vec![PathBuf::from(format!(r"{system_root}\System32\WindowsPowerShell\v1.0\powershell.exe"))]
        }
        Shell::Pwsh => in_programs(&[r"PowerShell\7\pwsh.exe", r"PowerShell\7-preview\pwsh.exe"]),
        Shell::Cmd => vec![PathBuf::from(var("ComSpec").unwrap_or_else(|| format!(r"{system_root}\System32\cmd.exe")))],
        Shell::Bash => in_programs(&[r"Git\bin\bash.exe", r"Git\usr\bin\bash.exe"]),
        Shell::Sh => in_programs(&[r"Git\bin\sh.exe", r"Git\usr\bin\sh.exe"]),
        Shell::Other(_) => Vec::new(),
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
pub use kanade_service::ServiceBody;

/// The name the install script registers the agent's service under (`deploy/install-agent.ps1`).
pub const SERVICE_NAME: &str = "kanade-agent";

/// Runs `body` as this OS's service manager expects and returns its exit code (`kanade_service`): on Windows under
/// the SCM, where a self-update's exit (64) ends the process as a crash so that the restart action starts the new
/// binary at once; elsewhere in the foreground.
pub fn run_service(body: ServiceBody) -> u8 {
    kanade_service::run(SERVICE_NAME, Some(crate::update::EXIT_UPDATED), body)
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

/// The OS version reported in heartbeats: its long name and its build (Windows' `CurrentBuildNumber`, which tells
/// feature updates apart: `Windows 11 Pro (build 22631)`), or elsewhere its kernel (`Linux 12 Debian GNU/Linux
/// (kernel 6.1.0-18-amd64)`). Read once, at start.
pub fn os_version() -> String {
    use sysinfo::System;
    describe_os(os_name(), System::long_os_version().ok(), System::kernel_version().ok())
}

/// [`os_version`]'s text from what the OS says (either part may be missing or empty).
fn describe_os(os: &str, long: Option<String>, kernel: Option<String>) -> String {
    let long = long.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty());
    let kernel = kernel.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
    let label = if os == "windows" { "build" } else { "kernel" };
    match (long, kernel) {
        (Some(long), Some(kernel)) if !long.contains(&kernel) => format!("{long} ({label} {kernel})"),
        (Some(long), _) => long,
        (None, Some(kernel)) => format!("{label} {kernel}"),
        (None, None) => String::new(),
    }
}

/// The OS name reported in heartbeats: `windows`, `linux`, `macos`, ...
pub fn os_name() -> &'static str {
    std::env::consts::OS
}

/// The system's OEM code page (437, 850, 932, ...), in which Windows console tools write into a pipe: what
/// `crate::output_text` reads output in that is not UTF-8. `None` elsewhere, where there is no such code page.
#[allow(unsafe_code)]
pub fn oem_code_page() -> Option<u16> {
    #[cfg(windows)]
    {
        // SAFETY: GetOEMCP takes nothing and reads a setting of the system.
        let code_page = unsafe { ::windows::Win32::Globalization::GetOEMCP() };
        u16::try_from(code_page).ok()
    }
    #[cfg(not(windows))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powershell_launcher_quotes_the_path() {
        let text = powershell_launcher(Path::new("/tmp/it's/script.ps1"), Path::new("/tmp/it's/script-marked.ps1"));
        assert!(text.contains("& '/tmp/it''s/script-marked.ps1'") && text.contains("& '/tmp/it''s/script.ps1'"));
        assert!(text.contains("ParseFile('/tmp/it''s/script.ps1'"), "{text}");
    }

    #[test]
    fn a_powershell_script_exits_as_powershell_file_would() {
        let launcher = powershell_launcher(Path::new("C:\\s\\script.ps1"), Path::new("C:\\s\\script-marked.ps1"));
        // No `if ($LASTEXITCODE) { exit $LASTEXITCODE }` before the script's end is known, and no try/catch that
        // would end a script at its first statement-terminating error.
        assert!(!launcher.contains("if ($LASTEXITCODE)") && !launcher.contains("try"), "{launcher}");
        let ended = launcher.find("if ($global:KanadeScriptEnded -or -not $kanadeExits) { exit 0 }").expect("exit 0");
        let exit_code = launcher.find("exit $LASTEXITCODE").expect("a script's own `exit N`");
        assert!(ended < exit_code, "{launcher}");
        // Named blocks (begin/process/end) cannot take a statement after them: such scripts run unmarked.
        for block in ["BeginBlock", "ProcessBlock", "DynamicParamBlock", "CleanBlock", "EndBlock.Unnamed"] {
            assert!(launcher.contains(block), "{block}: {launcher}");
        }
        let marked = powershell_marked_script("robocopy a b\n");
        assert!(marked.ends_with("robocopy a b\n\n$global:KanadeScriptEnded = $true\n"), "{marked:?}");
        assert!(!powershell_script("robocopy a b\n").contains("KanadeScriptEnded"), "the script itself is unchanged");
        let launch = powershell_launch(PathBuf::from("pwsh"), "exit 3", Path::new("/s"));
        let names: Vec<&str> = launch.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["script.ps1", "script-marked.ps1", "launcher.ps1"]);
    }

    #[test]
    fn posix_scripts_are_staged_with_lf() {
        assert_eq!(posix_script("echo a\r\necho b\r\n"), "echo a\necho b\n");
        assert_eq!(posix_script("echo a\n"), "echo a\n");
    }

    #[test]
    fn a_script_published_with_a_bom_is_staged_with_exactly_one() {
        for text in ["param($x)\nWrite-Output $x", "\u{feff}param($x)\nWrite-Output $x"] {
            let staged = powershell_script(text);
            assert!(staged.starts_with("\u{feff}param($x)"), "{staged:?}");
            assert_eq!(staged.matches('\u{feff}').count(), 1);
            assert_eq!(cmd_script(text).matches('\u{feff}').count(), 0);
        }
    }

    #[test]
    fn windows_shells_are_looked_for_where_they_are_installed_never_in_system32_bash() {
        let env = |name: &str| match name {
            "SystemRoot" => Some(r"C:\WINDOWS".to_owned()),
            "ProgramFiles" | "ProgramW6432" => Some(r"C:\Program Files".to_owned()),
            "ProgramFiles(x86)" => Some(r"C:\Program Files (x86)".to_owned()),
            "ComSpec" => Some(r"C:\WINDOWS\system32\cmd.exe".to_owned()),
            _ => None,
        };
        let shown = |shell| -> Vec<String> {
            windows_shell_paths(&shell, &env).iter().map(|p| p.display().to_string()).collect()
        };
        assert_eq!(shown(Shell::Powershell), [r"C:\WINDOWS\System32\WindowsPowerShell\v1.0\powershell.exe"]);
        assert_eq!(shown(Shell::Cmd), [r"C:\WINDOWS\system32\cmd.exe"]);
        assert_eq!(
            shown(Shell::Bash),
            [
                r"C:\Program Files\Git\bin\bash.exe",
                r"C:\Program Files\Git\usr\bin\bash.exe",
                r"C:\Program Files (x86)\Git\bin\bash.exe",
                r"C:\Program Files (x86)\Git\usr\bin\bash.exe",
            ]
        );
        assert!(shown(Shell::Sh).iter().all(|p| p.contains(r"\Git\") && p.ends_with("sh.exe")));
        for shell in [Shell::Bash, Shell::Sh] {
            assert!(shown(shell).iter().all(|p| !p.to_ascii_lowercase().contains("system32")));
        }
        assert_eq!(shown(Shell::Pwsh)[0], r"C:\Program Files\PowerShell\7\pwsh.exe");
        // A bare environment (a service started early) still has the system's own shells.
        let bare = |_: &str| None;
        assert_eq!(windows_shell_paths(&Shell::Cmd, &bare), [PathBuf::from(r"C:\Windows\System32\cmd.exe")]);
        assert!(windows_shell_paths(&Shell::Bash, &bare).is_empty());
    }

    #[test]
    fn cmd_scripts_are_quiet_utf8_and_crlf_throughout() {
        let staged = cmd_script("goto :end\necho skipped\r\n:end\necho done");
        assert_eq!(staged, "@echo off\r\n@chcp 65001 >nul\r\ngoto :end\r\necho skipped\r\n:end\r\necho done\r\n");
        assert!(!staged.replace("\r\n", "").contains('\n'), "no bare LF: {staged:?}");
    }

    #[test]
    fn the_os_version_carries_the_build_or_the_kernel() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(describe_os("windows", some("Windows 11 Pro"), some("22631")), "Windows 11 Pro (build 22631)");
        assert_eq!(
            describe_os("linux", some("Linux 12 Debian GNU/Linux"), some("6.1.0-18-amd64")),
            "Linux 12 Debian GNU/Linux (kernel 6.1.0-18-amd64)"
        );
        assert_eq!(describe_os("windows", some("Windows 10 (19045)"), some("19045")), "Windows 10 (19045)");
        assert_eq!(describe_os("windows", None, some("22631")), "build 22631");
        assert_eq!(describe_os("macos", some(" macOS 14.4 "), some(" ")), "macOS 14.4");
        assert_eq!(describe_os("linux", None, None), "");
        // What a live Linux host says: its kernel, at least.
        assert!(os_version().contains("kernel"), "{}", os_version());
    }

    #[test]
    fn unknown_shells_cannot_launch() {
        assert_eq!(launch(&Shell::Other("python9".into()), "x", Path::new("/tmp")), None);
    }
}
