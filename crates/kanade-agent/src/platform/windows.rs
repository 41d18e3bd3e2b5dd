//! Windows: a script runs inside a Job Object with kill-on-close, so closing the job kills the whole tree.
//!
//! This file cannot be compiled on the Linux machines the project is built on; it is written against the
//! documented APIs of `win32job` and `tokio::process` and kept as small as possible.

use std::path::Path;

use kanade_shared::wire::Shell;

use tokio_util::sync::CancellationToken;

use super::{Launch, ServiceBody, find, powershell_launch};

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
    pub fn attach(child: &tokio::process::Child) -> std::io::Result<Self> {
        let handle =
            child.raw_handle().ok_or_else(|| std::io::Error::other("child exited before it could be tracked"))?;
        let job = win32job::Job::create().map_err(std::io::Error::other)?;
        let mut info = job.query_extended_limit_info().map_err(std::io::Error::other)?;
        info.limit_kill_on_job_close();
        job.set_extended_limit_info(&info).map_err(std::io::Error::other)?;
        // The child runs for a moment before it is assigned; anything it starts in that window escapes the job.
        // Scripts begin by loading their interpreter, so in practice the window holds no child processes.
        job.assign_process(handle as isize).map_err(std::io::Error::other)?;
        Ok(Self { job: std::sync::Mutex::new(Some(job)) })
    }

    /// Closes the job, which kills every process in it.
    pub fn kill(&self) {
        if let Ok(mut job) = self.job.lock() {
            job.take();
        }
    }
}

pub fn launch(shell: &Shell, script: &str, staging: &Path) -> Option<Launch> {
    match shell {
        Shell::Powershell => Some(powershell_launch(find("powershell.exe")?, script, staging)),
        Shell::Pwsh => Some(powershell_launch(find("pwsh.exe")?, script, staging)),
        Shell::Cmd => {
            let path = staging.join("script.cmd");
            Some(Launch {
                program: find("cmd.exe")?,
                args: vec!["/d".into(), "/c".into(), path.display().to_string()],
                // UTF-8 code page first so output decodes the same as every other shell's.
                files: vec![("script.cmd".into(), format!("@chcp 65001 >nul\r\n{script}"))],
            })
        }
        Shell::Sh => {
            let path = staging.join("script.sh");
            Some(Launch {
                program: find("sh.exe")?,
                args: vec![path.display().to_string()],
                files: vec![("script.sh".into(), script.into())],
            })
        }
        Shell::Bash => {
            let path = staging.join("script.sh");
            Some(Launch {
                program: find("bash.exe")?,
                args: vec![path.display().to_string()],
                files: vec![("script.sh".into(), script.into())],
            })
        }
        Shell::Other(_) => None,
    }
}

/// Console Ctrl-C / Ctrl-Break. Running under the service control manager, the service wrapper turns a stop request
/// into the same cancellation.
pub async fn shutdown_signal() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No console to hear Ctrl-C from (a service): the service's own stop request is the only way to stop.
        std::future::pending::<()>().await;
    }
}

/// The name the install script registers the agent's service under (`deploy/install-agent.ps1`).
pub const SERVICE_NAME: &str = "kanade-agent";

/// The agent's body while the service control manager runs it; taken once by [`service_main`].
static BODY: std::sync::Mutex<Option<ServiceBody>> = std::sync::Mutex::new(None);
/// The body's exit code, for `main` once the dispatcher returns.
static EXIT_CODE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Hands the process to the service control manager, which calls [`service_main`] on a thread of its own; returns
/// once the service has stopped, with the body's exit code.
pub fn run_service(body: ServiceBody) -> u8 {
    if let Ok(mut slot) = BODY.lock() {
        *slot = Some(body);
    }
    match entry::dispatch() {
        Ok(()) => EXIT_CODE.load(std::sync::atomic::Ordering::SeqCst),
        Err(err) => {
            // Started from a console rather than by the SCM (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT).
            tracing::error!(error = %err, "cannot connect to the service control manager; run without `service` from a console");
            1
        }
    }
}

// The macro expands to the `extern "system"` entry point the SCM calls; it parses the service arguments from raw
// pointers, which is the crate's documented use.
#[allow(unsafe_code)]
mod entry {
    windows_service::define_windows_service!(ffi_service_main, service_main);

    fn service_main(_arguments: Vec<std::ffi::OsString>) {
        super::service_main();
    }

    /// Blocks in the service control dispatcher until the service has stopped.
    pub(super) fn dispatch() -> windows_service::Result<()> {
        windows_service::service_dispatcher::start(super::SERVICE_NAME, ffi_service_main)
    }
}

fn service_main() {
    use windows_service::service::{
        ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};

    let stop = CancellationToken::new();
    let handler = {
        let stop = stop.clone();
        move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                stop.cancel();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        }
    };
    let status = match service_control_handler::register(SERVICE_NAME, handler) {
        Ok(status) => status,
        Err(err) => {
            tracing::error!(error = %err, "cannot register with the service control manager");
            EXIT_CODE.store(1, std::sync::atomic::Ordering::SeqCst);
            return;
        }
    };
    let report = |state: ServiceState, exit_code: ServiceExitCode| {
        let controls = if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        };
        let reported = status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: controls,
            exit_code,
            checkpoint: 0,
            wait_hint: std::time::Duration::ZERO,
            process_id: None,
        });
        if let Err(err) = reported {
            tracing::warn!(error = %err, ?state, "cannot report the service state");
        }
    };
    report(ServiceState::Running, ServiceExitCode::NO_ERROR);
    let body = BODY.lock().ok().and_then(|mut slot| slot.take());
    let code = body.map_or(1, |body| body(stop));
    EXIT_CODE.store(code, std::sync::atomic::Ordering::SeqCst);
    // A non-zero code makes the SCM run the failure actions (`sc.exe failureflag <name> 1`): exit 64 after a
    // self-update is reported as service-specific error 64, and the `restart` action starts the new binary.
    let exit_code =
        if code == 0 { ServiceExitCode::NO_ERROR } else { ServiceExitCode::ServiceSpecific(u32::from(code)) };
    report(ServiceState::Stopped, exit_code);
}

/// Windows runs any `.exe` the service account can read; there is no execute bit to set.
pub fn make_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Sets [`super::PROTECTED_DIR_SDDL`] on `dir`: SYSTEM and Administrators only, inherited by what is inside, the
/// parent's (ProgramData's) rules no longer inherited. Written against the documented Win32 calls
/// (ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityDescriptorDacl, SetNamedSecurityInfoW);
/// verified on Linux only by type-checking elsewhere, never run here.
#[allow(unsafe_code)]
pub fn protect_dir(dir: &Path) -> std::io::Result<()> {
    use windows::Win32::Foundation::{HLOCAL, LocalFree};
    use windows::Win32::Security::Authorization::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1, SE_FILE_OBJECT, SetNamedSecurityInfoW,
    };
    use windows::Win32::Security::{
        ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorDacl, PROTECTED_DACL_SECURITY_INFORMATION,
        PSECURITY_DESCRIPTOR,
    };
    use windows::core::HSTRING;

    let sddl = HSTRING::from(super::PROTECTED_DIR_SDDL);
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
