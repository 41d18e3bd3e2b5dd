//! Windows: a script runs inside a Job Object with kill-on-close, so closing the job kills the whole tree (a run in
//! the console's session only where Windows lets the agent's job hold it: `windows_session`). The agent's own runs
//! start through tokio; runs in the console's session (`user`, `system_gui`) through `windows_session`, with the
//! decisions about them in `windows_plan`.
//!
//! This file cannot be compiled on the Linux machines the project is built on; it is written against the
//! documented APIs of `win32job` and `tokio::process` and kept as small as possible. It has been type-checked on
//! Linux against the `windows` crate's sources (their `cfg(windows)` gates lifted), `win32job`'s signatures, and
//! Unix stand-ins for its few `std::os::windows` and tokio Windows-only calls.

use std::path::Path;

use kanade_shared::wire::Shell;

use super::{Launch, cmd_script, find, posix_script, powershell_launch, windows_shell_paths};

/// `CREATE_NO_WINDOW`: a service has no console, and the script must not pop one up.
const CREATE_NO_WINDOW: u32 = 0x0800_0000;

pub fn isolate(command: &mut tokio::process::Command) {
    command.creation_flags(CREATE_NO_WINDOW);
}

#[derive(Debug)]
pub struct ProcessTree {
    job: std::sync::Mutex<Option<win32job::Job>>,
}

impl ProcessTree {
    /// The tree of a child tokio started. The child runs for a moment before it is assigned; anything it starts in
    /// that window escapes the job. Scripts begin by loading their interpreter, so in practice the window holds no
    /// child processes. (Runs in the console's session are created suspended and have no such window.)
    pub fn attach(child: &tokio::process::Child) -> std::io::Result<Self> {
        let handle =
            child.raw_handle().ok_or_else(|| std::io::Error::other("child exited before it could be tracked"))?;
        Self::contain(handle as isize)
    }

    /// A new Job Object that kills everything in it when closed, with `process` (a raw process handle the caller
    /// keeps open for the call) in it. The job is made in the agent's session (0); Microsoft documents that all
    /// processes of a job must run in the job's session, so for a process in the console's session this may fail
    /// (`AssignProcessToJobObject`: access denied), and the caller then runs the script without a tree.
    pub(super) fn contain(process: isize) -> std::io::Result<Self> {
        // `win32job`'s errors carry the OS error inside; `From<JobError> for io::Error` keeps its text.
        let job = win32job::Job::create()?;
        let mut info = job.query_extended_limit_info()?;
        info.limit_kill_on_job_close();
        job.set_extended_limit_info(&info)?;
        job.assign_process(process)?;
        Ok(Self { job: std::sync::Mutex::new(Some(job)) })
    }

    /// Closes the job, which kills every process in it.
    pub fn kill(&self) {
        if let Ok(mut job) = self.job.lock() {
            job.take();
        }
    }
}

/// The first of the shell's known install locations that exists (`super::windows_shell_paths`); `pwsh` is also
/// looked for on `PATH`.
fn shell_program(shell: &Shell) -> Option<std::path::PathBuf> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    windows_shell_paths(shell, &var)
        .into_iter()
        .find(|path| path.is_file())
        .or_else(|| matches!(shell, Shell::Pwsh).then(|| find("pwsh.exe")).flatten())
}

pub fn launch(shell: &Shell, script: &str, staging: &Path) -> Option<Launch> {
    let program = shell_program(shell)?;
    match shell {
        Shell::Powershell | Shell::Pwsh => Some(powershell_launch(program, script, staging)),
        Shell::Cmd => {
            let path = staging.join("script.cmd");
            Some(Launch {
                program,
                args: vec!["/d".into(), "/c".into(), path.display().to_string()],
                files: vec![("script.cmd".into(), cmd_script(script))],
            })
        }
        Shell::Sh | Shell::Bash => {
            let path = staging.join("script.sh");
            Some(Launch {
                program,
                args: vec![path.display().to_string()],
                files: vec![("script.sh".into(), posix_script(script))],
            })
        }
        Shell::Other(_) => None,
    }
}

/// Console Ctrl-C or Ctrl-Break. Running under the service control manager, the service wrapper turns a stop
/// request into the same cancellation.
pub async fn shutdown_signal() {
    let break_signal = async {
        match tokio::signal::windows::ctrl_break() {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No console to hear Ctrl-C from (a service): the service's own stop request is the only way to stop.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = break_signal => {}
    }
}

/// Windows runs any `.exe` the service account can read; there is no execute bit to set.
pub fn make_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Sets [`super::PROTECTED_DIR_SDDL`] on `dir`: SYSTEM and Administrators only, inherited by what is inside, the
/// parent's (ProgramData's) rules no longer inherited.
pub fn protect_dir(dir: &Path) -> std::io::Result<()> {
    set_protected_dacl(dir, super::PROTECTED_DIR_SDDL)
}

/// Sets the DACL of the SDDL rule `sddl` on `dir` as its own, protected from its parent's; SetNamedSecurityInfoW
/// hands its inheritable entries on to what is inside already. Written against the documented Win32 calls
/// (ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityDescriptorDacl, SetNamedSecurityInfoW);
/// verified on Linux only by type-checking elsewhere, never run here.
#[allow(unsafe_code)]
fn set_protected_dacl(dir: &Path, sddl: &str) -> std::io::Result<()> {
    use windows::Win32::Foundation::{HLOCAL, LocalFree};
    use windows::Win32::Security::Authorization::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1, SE_FILE_OBJECT, SetNamedSecurityInfoW,
    };
    use windows::Win32::Security::{
        ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorDacl, PROTECTED_DACL_SECURITY_INFORMATION,
        PSECURITY_DESCRIPTOR,
    };
    use windows::core::HSTRING;

    let sddl = HSTRING::from(sddl);
    let mut descriptor = PSECURITY_DESCRIPTOR::default();
    // SAFETY: `sddl` is a valid NUL-terminated wide string for the call; `descriptor` receives a LocalAlloc'd
    // descriptor, freed below with LocalFree.
    unsafe { ConvertStringSecurityDescriptorToSecurityDescriptorW(&sddl, SDDL_REVISION_1, &mut descriptor, None) }
        .map_err(std::io::Error::other)?;
    let mut present = windows::core::BOOL::default();
    let mut defaulted = windows::core::BOOL::default();
    let mut dacl: *mut ACL = std::ptr::null_mut();
    // SAFETY: `descriptor` is the valid descriptor made above; the out-pointers are live locals. `dacl` points
    // into `descriptor`, which outlives its use.
    let result =
        unsafe { GetSecurityDescriptorDacl(descriptor, &mut present, &mut dacl, &mut defaulted) }.and_then(|()| {
            let name = HSTRING::from(dir.as_os_str());
            // SAFETY: `name` is a valid wide path; `dacl` is the DACL read above, alive until LocalFree.
            unsafe {
                SetNamedSecurityInfoW(
                    &name,
                    SE_FILE_OBJECT,
                    DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                    None,
                    None,
                    Some(dacl.cast_const()),
                    None,
                )
            }
            .ok()
        });
    // SAFETY: `descriptor` was allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW with LocalAlloc.
    unsafe { LocalFree(Some(HLOCAL(descriptor.0))) };
    result.map_err(std::io::Error::other)
}

/// A new file; it inherits the protected ACL of the agent's data dir (see [`protect_dir`]).
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)
}

/// Who a script runs as on Windows: the agent (LocalSystem), the console's user, or the agent in the console's
/// session (`windows_plan`).
pub use super::windows_plan::Identity;

/// Resolves `run_as` (`windows_plan::decide`), asking the session manager who is signed in at the console.
pub fn identity(run_as: &kanade_shared::wire::RunAs, configured: Option<&str>) -> Result<Identity, super::Unavailable> {
    super::windows_plan::decide(run_as, configured, super::windows_session::console_user)
}

/// Starts a script: the agent's own runs through tokio on the calling thread, as on Unix; runs in the console's
/// session through CreateProcessAsUserW (`windows_session`) on tokio's blocking pool, since taking the session's
/// token asks the session manager (an RPC), building the user's environment reads their registry hive, and creating
/// the process waits on the session too: none of it may hold up a runtime thread.
pub async fn spawn(
    launch: &Launch,
    cwd: &Path,
    env: &[(&str, &str)],
    identity: &Identity,
) -> std::io::Result<super::Spawned> {
    match identity {
        Identity::Agent => super::spawn_with_tokio(launch, cwd, env, |_| {}),
        Identity::SessionUser(_) | Identity::AgentInSession { .. } => {
            let (launch, cwd, identity) = (launch.clone(), cwd.to_owned(), identity.clone());
            let env: Vec<(String, String)> =
                env.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
            tokio::task::spawn_blocking(move || {
                let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
                super::windows_session::spawn(&launch, &cwd, &env, &identity)
            })
            .await
            .map_err(|err| std::io::Error::other(format!("the script's start failed: {err}")))?
        }
    }
}

/// A script started in the console's session, waited for by `windows_session`.
pub use super::windows_session::SessionProcess as NativeProcess;

/// Reads a pipe's parent end as tokio reads a child's output on Windows: blocking reads on tokio's blocking pool (an
/// anonymous pipe cannot do overlapped I/O). The standard library reads the broken pipe at its end as end of file.
///
/// # Safety
/// `handle` is an open pipe handle, owned by the caller and given up here (the reader closes it).
#[allow(unsafe_code)]
pub(super) unsafe fn pipe_reader(handle: windows::Win32::Foundation::HANDLE) -> super::Output {
    use std::os::windows::io::FromRawHandle as _;
    // SAFETY: per this function's contract, `handle` is open and now the file's alone.
    let file = unsafe { std::fs::File::from_raw_handle(handle.0) };
    Box::new(tokio::fs::File::from_std(file))
}

/// The agent's own environment as UTF-16, as Windows holds it (for `system_gui`, which gets it as `system` does).
pub(super) fn agent_environment() -> Vec<super::windows_plan::WideVar> {
    use std::os::windows::ffi::OsStrExt as _;
    std::env::vars_os().map(|(name, value)| (name.encode_wide().collect(), value.encode_wide().collect())).collect()
}

/// `<staging_root>/<exec>` inside the agent's protected data dir (a leftover of an interrupted run removed first),
/// for every identity: a user passes through the folders above it by the bypass-traverse right everyone holds, and
/// reads it by the rule [`share_staging`] sets.
pub fn new_staging(staging_root: &Path, exec: &str, _identity: &Identity) -> std::io::Result<std::path::PathBuf> {
    let staging = staging_root.join(exec);
    if staging.try_exists()? {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    Ok(staging)
}

/// Opens `staging` to the console user a run is for, to read and execute only (`windows_plan::staging_sddl`); its
/// files take the rule from it. The agent's own runs, in or out of a session, need nothing.
pub fn share_staging(staging: &Path, identity: &Identity) -> std::io::Result<()> {
    let Identity::SessionUser(user) = identity else { return Ok(()) };
    let sddl = super::windows_plan::staging_sddl(&user.sid)
        .ok_or_else(|| std::io::Error::other(format!("`{}` is not a SID", user.sid)))?;
    set_protected_dacl(staging, &sddl)
}
