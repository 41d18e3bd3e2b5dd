//! Unix: a script runs in its own process group, and the whole group is killed with SIGKILL.

use std::path::{Path, PathBuf};

use kanade_shared::wire::{Reason, RunAs, Shell};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{Launch, Unavailable, find, posix_script, powershell_launch};

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
            files: vec![("script.sh".into(), posix_script(script))],
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

/// Who a script runs as on Unix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The agent's own account (root, as the service runs), with the agent's environment.
    Agent,
    /// The agent's account with a graphical session's display in its environment (`system_gui`).
    AgentInSession { display: Vec<(String, String)> },
    /// Another account (`user`): its ids, its supplementary groups and a clean environment of its own.
    Account(Account),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Its supplementary groups, looked up before the fork (the child may only make system calls).
    pub groups: Vec<u32>,
    pub env: Vec<(String, String)>,
}

/// The environment a script of `user` (its home, shell and uid) gets: nothing of the agent's but the locale, its
/// own names and home, a standard `PATH`, and its session's runtime dir, bus and display when they exist.
pub fn account_env(
    name: &str,
    uid: u32,
    home: &Path,
    shell: &Path,
    session_display: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOME".to_owned(), home.display().to_string()),
        ("USER".to_owned(), name.to_owned()),
        ("LOGNAME".to_owned(), name.to_owned()),
        ("SHELL".to_owned(), shell.display().to_string()),
        ("PATH".to_owned(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()),
    ];
    for locale in ["LANG", "LC_ALL"] {
        if let Ok(value) = std::env::var(locale) {
            env.push((locale.to_owned(), value));
        }
    }
    let runtime = PathBuf::from(format!("/run/user/{uid}"));
    if runtime.is_dir() {
        env.push(("XDG_RUNTIME_DIR".to_owned(), runtime.display().to_string()));
        if runtime.join("bus").exists() {
            env.push(("DBUS_SESSION_BUS_ADDRESS".to_owned(), format!("unix:path={}/bus", runtime.display())));
        }
    }
    env.extend(session_display.iter().cloned());
    env
}

/// The display variables of a graphical session: `DISPLAY` for X11, `WAYLAND_DISPLAY` (the usual `wayland-0`) for
/// Wayland, where logind knows them.
#[cfg(not(target_os = "macos"))]
fn session_display(session: &super::logind::SessionUser) -> EnvVars {
    let mut display = Vec::new();
    if let Some(x11) = &session.display {
        display.push(("DISPLAY".to_owned(), x11.clone()));
    }
    if session.kind == "wayland" {
        display.push(("WAYLAND_DISPLAY".to_owned(), "wayland-0".to_owned()));
    }
    display
}

/// Environment variables, in order.
type EnvVars = Vec<(String, String)>;

/// The user at the screen: logind's active graphical session on `seat0` (Linux), the owner of `/dev/console`
/// (macOS, where the login window owns it as root).
#[cfg(not(target_os = "macos"))]
fn screen_user() -> Result<Option<(String, EnvVars)>, String> {
    Ok(super::logind::active_user()?.map(|session| {
        let display = session_display(&session);
        (session.name, display)
    }))
}

#[cfg(target_os = "macos")]
fn screen_user() -> Result<Option<(String, EnvVars)>, String> {
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::metadata("/dev/console").map_err(|err| format!("/dev/console: {err}"))?.uid();
    if owner == 0 {
        return Ok(None);
    }
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner)).map_err(|err| err.to_string())?;
    Ok(user.map(|user| (user.name, Vec::new())))
}

/// The name of the user at the screen, if anyone is signed in there (blocking).
pub(super) fn screen_user_name() -> Result<Option<String>, String> {
    Ok(screen_user()?.map(|(name, _)| name))
}

/// Resolves `run_as` for a run starting now (blocking: it may ask logind and the user database).
pub fn identity(run_as: &RunAs, configured: Option<&str>) -> Result<Identity, Unavailable> {
    let no_session = |message: String| Unavailable { reason: Reason::NoUserSession, message };
    match run_as {
        RunAs::System => Ok(Identity::Agent),
        RunAs::SystemGui => match screen_user() {
            Ok(Some((_, display))) => Ok(Identity::AgentInSession { display }),
            Ok(None) => Err(no_session("nobody is signed in at this PC's screen".to_owned())),
            Err(err) => Err(no_session(format!("cannot tell who is signed in at this PC's screen: {err}"))),
        },
        RunAs::User => {
            let (name, display) = match configured {
                Some(name) => (name.to_owned(), Vec::new()),
                None => match screen_user() {
                    Ok(Some(user)) => user,
                    Ok(None) => {
                        return Err(no_session(
                            "nobody is signed in at this PC's screen (and no `agent.run_as_user` is set)".to_owned(),
                        ));
                    }
                    Err(err) => {
                        return Err(no_session(format!(
                            "cannot tell who is signed in at this PC's screen ({err}), and no `agent.run_as_user` is set"
                        )));
                    }
                },
            };
            account(&name, &display).map(Identity::Account)
        }
        RunAs::Unknown => Err(Unavailable {
            reason: Reason::UnsupportedRunAs,
            message: "this agent does not know the identity the command asks for".to_owned(),
        }),
    }
}

/// Looks `name` up: its ids, groups and environment. Root is refused (that is `system`).
fn account(name: &str, display: &[(String, String)]) -> Result<Account, Unavailable> {
    let unavailable = |message: String| Unavailable { reason: Reason::NoUserSession, message };
    let user = nix::unistd::User::from_name(name)
        .map_err(|err| unavailable(format!("cannot look up user `{name}`: {err}")))?
        .ok_or_else(|| unavailable(format!("user `{name}` does not exist on this PC")))?;
    if user.uid.is_root() {
        return Err(unavailable(format!("user `{name}` is root: run it as `system`")));
    }
    Ok(Account {
        name: user.name.clone(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups: supplementary_groups(&user),
        env: account_env(&user.name, user.uid.as_raw(), &user.dir, &user.shell, display),
    })
}

#[cfg(not(target_os = "macos"))]
fn supplementary_groups(user: &nix::unistd::User) -> Vec<u32> {
    let Ok(name) = std::ffi::CString::new(user.name.as_bytes()) else { return vec![user.gid.as_raw()] };
    match nix::unistd::getgrouplist(&name, user.gid) {
        Ok(groups) => groups.iter().map(|g| g.as_raw()).collect(),
        Err(_) => vec![user.gid.as_raw()],
    }
}

/// macOS has no `getgrouplist` in `nix`: the primary group only.
#[cfg(target_os = "macos")]
fn supplementary_groups(user: &nix::unistd::User) -> Vec<u32> {
    vec![user.gid.as_raw()]
}

/// Starts a script with tokio's process API, as `identity` ([`take_identity`]), on the calling thread: the fork
/// and exec do not wait on anything else.
pub async fn spawn(
    launch: &Launch,
    cwd: &Path,
    env: &[(&str, &str)],
    identity: &Identity,
) -> std::io::Result<super::Spawned> {
    super::spawn_with_tokio(launch, cwd, env, |command| take_identity(command, identity))
}

/// Unix starts every script through tokio: there is no process of another kind to wait for.
pub enum NativeProcess {}

impl NativeProcess {
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        match *self {}
    }

    pub fn start_kill(&mut self) {
        match *self {}
    }
}

/// Makes `command` run as `identity`: groups, group and user set in the child before it runs the shell, and that
/// user's own environment instead of the agent's.
#[allow(unsafe_code)]
fn take_identity(command: &mut tokio::process::Command, identity: &Identity) {
    match identity {
        Identity::Agent => {}
        Identity::AgentInSession { display } => {
            command.envs(display.iter().map(|(k, v)| (k, v)));
        }
        Identity::Account(account) => {
            command.env_clear().envs(account.env.iter().map(|(k, v)| (k, v)));
            let (uid, gid) = (nix::unistd::Uid::from_raw(account.uid), nix::unistd::Gid::from_raw(account.gid));
            let groups: Vec<nix::unistd::Gid> = account.groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
            // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe calls are
            // allowed: setgroups, setgid and setuid are plain system calls on memory prepared before the fork
            // (`groups` is moved in whole; nothing is allocated or locked here). Groups first, then the group, then
            // the user: once the user is dropped none of the others may change.
            unsafe {
                command.pre_exec(move || {
                    #[cfg(not(target_os = "macos"))]
                    nix::unistd::setgroups(&groups)?;
                    #[cfg(target_os = "macos")]
                    let _ = &groups;
                    nix::unistd::setgid(gid)?;
                    nix::unistd::setuid(uid)?;
                    Ok(())
                });
            }
        }
    }
}

/// A new, empty directory to stage a run as `identity` in. The agent's own runs: `<staging_root>/<exec>` inside its
/// private data dir (a leftover of an interrupted run removed first). Another account's: a directory made with a
/// random name in the system's temp dir (mkdtemp, so nobody can have placed one there), which
/// [`share_staging`] then opens to that account for reading only.
pub fn new_staging(staging_root: &Path, exec: &str, identity: &Identity) -> std::io::Result<PathBuf> {
    match identity {
        Identity::Agent | Identity::AgentInSession { .. } => {
            let staging = staging_root.join(exec);
            if staging.try_exists()? {
                std::fs::remove_dir_all(&staging)?;
            }
            std::fs::create_dir_all(&staging)?;
            Ok(staging)
        }
        Identity::Account(_) => {
            let template = std::env::temp_dir().join(format!("kanade-run-{exec}-XXXXXX"));
            nix::unistd::mkdtemp(&template).map_err(std::io::Error::from)
        }
    }
}

/// Lets `identity` read what was staged in `staging` and nothing more: for another account the directory and its
/// files belong to root with that account's primary group, which may read (and enter the directory) but not write
/// (0750 and 0640). The agent's own runs need nothing.
pub fn share_staging(staging: &Path, identity: &Identity) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let Identity::Account(account) = identity else { return Ok(()) };
    for entry in std::fs::read_dir(staging)? {
        let path = entry?.path();
        std::os::unix::fs::chown(&path, Some(0), Some(account.gid))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))?;
    }
    std::os::unix::fs::chown(staging, Some(0), Some(account.gid))?;
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o750))
}
