//! Windows: a script runs inside a Job Object with kill-on-close, so closing the job kills the whole tree.
//!
//! This file cannot be compiled on the Linux machines the project is built on; it is written against the
//! documented APIs of `win32job` and `tokio::process` and kept as small as possible.

use std::path::Path;

use kanade_shared::wire::Shell;

use super::{Launch, find, powershell_launch};

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
    let _ = tokio::signal::ctrl_c().await;
}

/// Windows runs any `.exe` the service account can read; there is no execute bit to set.
pub fn make_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
