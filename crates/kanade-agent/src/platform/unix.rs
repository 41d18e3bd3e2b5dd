//! Unix: a script runs in its own process group, and the whole group is killed with SIGKILL.

use std::path::Path;

use kanade_shared::wire::Shell;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{Launch, find, powershell_launch};

pub fn isolate(command: &mut tokio::process::Command) {
    // A new process group whose id is the child's pid; everything the script starts inherits it unless it calls
    // setsid on purpose (a daemon it means to leave running).
    command.process_group(0);
}

#[derive(Debug)]
pub struct ProcessTree {
    group: Pid,
}

impl ProcessTree {
    pub fn attach(child: &tokio::process::Child) -> std::io::Result<Self> {
        let pid = child.id().ok_or_else(|| std::io::Error::other("child exited before it could be tracked"))?;
        let pid = i32::try_from(pid).map_err(|_| std::io::Error::other("pid out of range"))?;
        Ok(Self { group: Pid::from_raw(pid) })
    }

    /// Kills every process still in the tree. Killing an empty group is not an error.
    pub fn kill(&self) {
        match killpg(self.group, Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(err) => tracing::warn!(group = self.group.as_raw(), error = %err, "cannot kill process group"),
        }
    }
}

pub fn launch(shell: &Shell, script: &str, staging: &Path) -> Option<Launch> {
    let posix = |name: &str| {
        let program = find(name)?;
        let path = staging.join("script.sh");
        Some(Launch {
            program,
            args: vec![path.display().to_string()],
            files: vec![("script.sh".into(), script.into())],
        })
    };
    match shell {
        Shell::Sh => posix("sh"),
        Shell::Bash => posix("bash"),
        Shell::Pwsh => Some(powershell_launch(find("pwsh")?, script, staging)),
        // Windows PowerShell 5.1 and cmd exist only on Windows.
        Shell::Powershell | Shell::Cmd | Shell::Other(_) => None,
    }
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            if tokio::signal::ctrl_c().await.is_err() {
                // No way to hear a stop request: only the caller's own token stops the agent.
                std::future::pending::<()>().await;
            }
        }
    }
}

pub fn run_service(body: super::ServiceBody) -> u8 {
    body(tokio_util::sync::CancellationToken::new())
}

pub fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// Mode 0700: only the agent's account may list, read or create anything inside.
pub fn protect_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A new file with mode 0600 (whatever the umask).
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // An existing file keeps its old mode through `open`: set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}
