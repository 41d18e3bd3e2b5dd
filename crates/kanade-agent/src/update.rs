//! Self-update: when the effective `target_version` (KV `agent_config`) differs from this agent's version, wait a
//! random time within `target_version_jitter`, download `<version>/<os>-<arch>` from `agent_releases`, check its
//! SHA-256 and its embedded version, swap it in, and exit with [`EXIT_UPDATED`] so the service manager starts the
//! new binary.
//!
//! The swap never leaves the executable's path holding a partial file: the download is written and synced as
//! `<exe>.new`, then `<exe>` is renamed to `<exe>.old` and `<exe>.new` to `<exe>` (a rename is atomic, and a
//! running executable may be renamed on Linux, macOS and Windows).
//!
//! A boot sentinel (`<exe>.update-sentinel.json`: from, to, boots), armed before the swap, follows the new
//! binary's first starts: each start counts a boot before the config is read; running connected for a while with
//! its subscriptions in place clears the sentinel and removes `<exe>.old`. A binary that fails [`MAX_BOOTS`] starts
//! in a row puts `<exe>.old` back and exits 64, and the old version, starting again, records
//! `agent_update_rolled_back` and does not try that version again until the target changes. A binary fetched as
//! one version that comes up as another is refused the same way (the loop guard: it would otherwise download and
//! restart forever).
//!
//! Only the real agent process updates itself ([`enable`] from `main`): an agent in a test or in the simulator
//! shares its process with others and must never replace the executable it runs in.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_nats::jetstream;
use kanade_shared::resources::OBJ_AGENT_RELEASES;
use kanade_shared::wire::ObsEvent;
use kanade_shared::{PcId, subject};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// The exit code that asks the service manager for a restart into the new binary.
pub const EXIT_UPDATED: u8 = 64;
/// Largest agent binary accepted.
const MAX_BINARY: u64 = 512 * 1024 * 1024;

/// Starts a new binary gets before it is rolled back.
pub const MAX_BOOTS: u32 = 3;

static EXE: OnceLock<PathBuf> = OnceLock::new();
static UPDATED: AtomicBool = AtomicBool::new(false);
/// A timeline event decided at start (before there is a connection), published once connected.
static PENDING_EVENT: Mutex<Option<(String, serde_json::Value)>> = Mutex::new(None);

/// The event [`UpdateState::on_start`] left for the agent to record once connected.
pub fn take_pending_event() -> Option<(String, serde_json::Value)> {
    PENDING_EVENT.lock().ok().and_then(|mut e| e.take())
}

fn leave_event(event: &str, details: serde_json::Value) {
    if let Ok(mut pending) = PENDING_EVENT.lock() {
        *pending = Some((event.to_owned(), details));
    }
}

/// What the boot sentinel holds while a new binary proves itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Sentinel {
    from: String,
    to: String,
    boots: u32,
}

/// What the start found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Go on.
    Run,
    /// The new binary failed too often and the old one is back in place: exit 64 now, without connecting.
    RestartIntoOld,
}

/// Allows this process to replace `exe` (the running executable).
pub fn enable(exe: PathBuf) {
    let _ = EXE.set(exe);
}

fn exe() -> Option<&'static Path> {
    EXE.get().map(PathBuf::as_path)
}

/// True once a new binary is in place and the agent stopped for it: `main` exits with [`EXIT_UPDATED`].
pub fn updated() -> bool {
    UPDATED.load(Ordering::SeqCst)
}

fn sibling(exe: &Path, suffix: &str) -> PathBuf {
    let mut name = exe.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// This platform's half of a release key, as `kanade agent publish` names it.
pub fn platform() -> String {
    let os = match std::env::consts::OS {
        "macos" => "macos",
        "windows" => "windows",
        _ => "linux",
    };
    format!("{os}-{}", std::env::consts::ARCH)
}

/// The updater's own files, beside the executable (`<exe>.update-sentinel.json`, `<exe>.update-rolled-back`,
/// `<exe>.update-blocked`) rather than in the data dir: they belong to the binary being swapped, and the start of a
/// new binary is counted before its configuration is read, so a release that rejects the config file is rolled back
/// like one that crashes.
fn state_file(exe: &Path, name: &str) -> PathBuf {
    sibling(exe, &format!(".update-{name}"))
}

/// The version this agent will not try again until the target changes.
pub fn blocked() -> Option<String> {
    let exe = exe()?;
    std::fs::read_to_string(state_file(exe, "blocked")).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Remembers not to try `version` again (until the target moves to another version and back).
pub fn block(version: &str, why: &str) {
    tracing::error!(version, why, "not updating to this version again until the target changes");
    if let Some(exe) = exe()
        && let Err(err) = std::fs::write(state_file(exe, "blocked"), version)
    {
        tracing::warn!(error = %err, "cannot remember the blocked version; it may be tried again after a restart");
    }
}

fn sentinel(exe: &Path) -> Option<Sentinel> {
    serde_json::from_slice(&std::fs::read(state_file(exe, "sentinel.json")).ok()?).ok()
}

/// Written to a temporary file, synced and renamed into place, so a power loss leaves the old sentinel or the new
/// one, never a torn one (which would read as none, and lose the rollback).
fn write_sentinel(exe: &Path, sentinel: &Sentinel) -> std::io::Result<()> {
    use std::io::Write;
    let body = serde_json::to_vec(sentinel).map_err(std::io::Error::other)?;
    let temp = state_file(exe, "sentinel.json.tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&body)?;
    file.sync_all()?;
    std::fs::rename(&temp, state_file(exe, "sentinel.json"))?;
    if let Some(dir) = exe.parent() {
        sync_dir(dir);
    }
    Ok(())
}

fn disarm(exe: &Path) {
    let _ = std::fs::remove_file(state_file(exe, "sentinel.json"));
}

/// First thing at start, before the config is read or anything connects: clears a half-done swap, counts this
/// boot of a new binary, and rolls a failing one back.
pub fn on_start(running: &str) -> Start {
    let Some(exe) = exe() else { return Start::Run };
    let Ok(_one) = SWAPPING.lock() else { return Start::Run };
    let (new, old) = (sibling(exe, ".new"), sibling(exe, ".old"));
    remove_quietly(&new);
    // What a rollback could not delete while the bad binary was running (Windows keeps a running image).
    remove_quietly(&sibling(exe, ".bad"));
    let rolled_back_file = state_file(exe, "rolled-back");
    if let Ok(failed) = std::fs::read_to_string(&rolled_back_file) {
        let _ = std::fs::remove_file(&rolled_back_file);
        block(failed.trim(), "it did not come up healthy; rolled back");
        leave_event("agent_update_rolled_back", serde_json::json!({ "from": failed.trim(), "to": running }));
        remove_quietly(&old);
        return Start::Run;
    }
    let Some(mut armed) = sentinel(exe) else {
        remove_quietly(&old);
        return Start::Run;
    };
    if armed.from == running && armed.to != running {
        // Armed, but the swap never happened (the agent stopped between the two): nothing to judge.
        disarm(exe);
        remove_quietly(&old);
        return Start::Run;
    }
    if armed.to != running {
        disarm(exe);
        block(&armed.to, &format!("the binary fetched as {} runs as {running}", armed.to));
        leave_event("agent_update_refused", serde_json::json!({ "expected": armed.to, "running": running }));
        remove_quietly(&old);
        return Start::Run;
    }
    armed.boots += 1;
    if armed.boots <= MAX_BOOTS {
        tracing::info!(from = %armed.from, to = running, boot = armed.boots, "starting the updated binary");
        if let Err(err) = write_sentinel(exe, &armed) {
            tracing::error!(error = %err, "cannot count this start of the updated binary");
        }
        return Start::Run;
    }
    tracing::error!(to = running, boots = armed.boots - 1, "the updated binary never came up healthy; rolling back");
    let bad = sibling(exe, ".bad");
    let rolled = std::fs::rename(exe, &bad).and_then(|()| std::fs::rename(&old, exe));
    if let Err(err) = rolled {
        // Nothing to roll back to: keep running what is there and stop counting.
        tracing::error!(error = %err, "cannot put the previous binary back");
        let _ = std::fs::rename(&bad, exe);
        disarm(exe);
        return Start::Run;
    }
    let _ = std::fs::write(&rolled_back_file, running);
    disarm(exe);
    remove_quietly(&bad);
    UPDATED.store(true, Ordering::SeqCst);
    Start::RestartIntoOld
}

/// The agent is connected and working: if this binary (`running`) is a new one on probation, it has proven itself.
/// A sentinel armed for a later swap (this process already fetched the next version) is left alone: it belongs to
/// the binary about to start.
pub fn healthy(running: &str) {
    let Some(exe) = exe() else { return };
    let Ok(_one) = SWAPPING.lock() else { return };
    if updated() {
        return;
    }
    let Some(armed) = sentinel(exe) else { return };
    if armed.to != running {
        return;
    }
    disarm(exe);
    remove_quietly(&sibling(exe, ".old"));
    tracing::info!(from = %armed.from, to = %armed.to, "the updated agent is healthy");
}

/// The agent stopped because it was asked to (a service stop, SIGTERM), not because it failed: a start of a new
/// binary on probation that ends so is not held against it.
pub fn stopped_cleanly(running: &str) {
    let Some(exe) = exe() else { return };
    let Ok(_one) = SWAPPING.lock() else { return };
    if updated() {
        return;
    }
    let Some(mut armed) = sentinel(exe) else { return };
    if armed.to != running || armed.boots == 0 {
        return;
    }
    armed.boots -= 1;
    if let Err(err) = write_sentinel(exe, &armed) {
        tracing::warn!(error = %err, "cannot record that this start of the updated binary ended cleanly");
    }
}

fn remove_quietly(path: &Path) {
    if path.exists() {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(file = %path.display(), "removed what an update left"),
            Err(err) => tracing::warn!(file = %path.display(), error = %err, "cannot remove"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("release `{key}` is not in `{OBJ_AGENT_RELEASES}`")]
    Missing { key: String },
    #[error("cannot download `{key}`: {reason}")]
    Download { key: String, reason: String },
    #[error("release `{key}` has SHA-256 {actual}, but {expected} was published: refusing it")]
    Corrupt { key: String, expected: String, actual: String },
    #[error("release `{key}` has no SHA-256 recorded: refusing it")]
    Unverifiable { key: String },
    #[error("release `{key}` is version {actual} by its own account, not {expected}: refusing it")]
    WrongVersion { key: String, expected: String, actual: String },
    #[error("release `{key}` does not run on this machine: {reason}; refusing it")]
    WontRun { key: String, reason: String },
    #[error("cannot put the new binary in place: {0}")]
    Swap(#[source] std::io::Error),
}

impl UpdateError {
    /// Errors that trying again cannot fix (the object is what it is); the others are retried.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Corrupt { .. } | Self::Unverifiable { .. } | Self::WrongVersion { .. } | Self::WontRun { .. }
        )
    }
}

/// Downloads `version` for this platform and checks it is exactly what was published, and that version.
pub async fn download(client: &async_nats::Client, version: &str) -> Result<Vec<u8>, UpdateError> {
    let key = format!("{version}/{}", platform());
    let download = |reason: String| UpdateError::Download { key: key.clone(), reason };
    let store = jetstream::new(client.clone())
        .get_object_store(OBJ_AGENT_RELEASES)
        .await
        .map_err(|e| download(e.to_string()))?;
    let info = match store.info(&key).await {
        Ok(info) if !info.deleted => info,
        _ => return Err(UpdateError::Missing { key }),
    };
    let expected = info
        .metadata
        .get(kanade_shared::resources::OBJECT_SHA256_KEY)
        .cloned()
        .ok_or_else(|| UpdateError::Unverifiable { key: key.clone() })?;
    let mut object = store.get(&key).await.map_err(|e| download(e.to_string()))?;
    let mut bytes = Vec::new();
    (&mut object).take(MAX_BINARY + 1).read_to_end(&mut bytes).await.map_err(|e| download(e.to_string()))?;
    let actual: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if actual != expected {
        return Err(UpdateError::Corrupt { key, expected, actual });
    }
    match kanade_shared::release::marker_version(&bytes) {
        Ok(Some(found)) if found == version => Ok(bytes),
        Ok(found) => Err(UpdateError::WrongVersion {
            key,
            expected: version.to_owned(),
            actual: found.unwrap_or_else(|| "unknown".into()),
        }),
        Err(conflict) => {
            Err(UpdateError::WrongVersion { key, expected: version.to_owned(), actual: conflict.to_string() })
        }
    }
}

/// One swap at a time in this process, and none after one succeeded.
static SWAPPING: Mutex<()> = Mutex::new(());

/// Held by whoever is fetching, staging and swapping a version, from the download to the swap: `<exe>.new` is
/// written by one update at a time.
pub static UPDATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the staged binary gets to print its version.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `binary` as `<exe>.new`, synced and executable, ready for [`probe`] and [`swap`].
pub fn stage(binary: &[u8]) -> Result<PathBuf, UpdateError> {
    use std::io::Write;
    let Some(exe) = exe() else {
        return Err(UpdateError::Swap(std::io::Error::other("self-update is not enabled in this process")));
    };
    let new = sibling(exe, ".new");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&new)?;
        file.write_all(binary)?;
        file.sync_all()?;
        drop(file);
        crate::platform::make_executable(&new)
    };
    write().map_err(UpdateError::Swap)?;
    Ok(new)
}

/// Runs the staged binary with `--version` and expects it to name `version`: a release that cannot start here at
/// all (another architecture, a missing library, a crash before `main`) is refused before anything is swapped,
/// since no boot sentinel could count its starts.
pub async fn probe(staged: &Path, key: &str, version: &str) -> Result<(), UpdateError> {
    let wont_run = |reason: String| UpdateError::WontRun { key: key.to_owned(), reason };
    let mut command = tokio::process::Command::new(staged);
    command.arg("--version").stdin(std::process::Stdio::null()).kill_on_drop(true);
    crate::platform::isolate(&mut command);
    let output = match tokio::time::timeout(PROBE_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => return Err(wont_run(format!("cannot start it: {err}"))),
        Err(_) => return Err(wont_run(format!("`--version` did not finish in {PROBE_TIMEOUT:?}"))),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || stdout.split_whitespace().last() != Some(version) {
        let mut said = format!("{}{}", stdout.trim(), String::from_utf8_lossy(&output.stderr).trim());
        said.truncate(said.floor_char_boundary(200));
        return Err(wont_run(format!("`--version` exited with {} and printed {said:?}", output.status)));
    }
    Ok(())
}

/// Puts the staged `<exe>.new` (version `to`) in place of the running executable: the boot sentinel is armed
/// first, then `exe` -> `.old`, `.new` -> `exe`. On success the process is marked updated.
pub fn swap(from: &str, to: &str) -> Result<(), UpdateError> {
    let Some(exe) = exe() else {
        return Err(UpdateError::Swap(std::io::Error::other("self-update is not enabled in this process")));
    };
    let Ok(_one) = SWAPPING.lock() else {
        return Err(UpdateError::Swap(std::io::Error::other("the swap lock is poisoned")));
    };
    if updated() {
        return Err(UpdateError::Swap(std::io::Error::other("another version was already swapped in")));
    }
    let (new, old) = (sibling(exe, ".new"), sibling(exe, ".old"));
    if !new.is_file() {
        return Err(UpdateError::Swap(std::io::Error::other(format!("`{}` is not there", new.display()))));
    }
    write_sentinel(exe, &Sentinel { from: from.to_owned(), to: to.to_owned(), boots: 0 }).map_err(UpdateError::Swap)?;
    let renames = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&old);
        std::fs::rename(exe, &old)?;
        if let Err(err) = std::fs::rename(&new, exe) {
            // Put the running binary back where the service manager will look for it.
            let _ = std::fs::rename(&old, exe);
            return Err(err);
        }
        Ok(())
    };
    match renames() {
        Ok(()) => {
            if let Some(dir) = exe.parent() {
                sync_dir(dir);
            }
            UPDATED.store(true, Ordering::SeqCst);
            Ok(())
        }
        Err(err) => {
            disarm(exe);
            Err(UpdateError::Swap(err))
        }
    }
}

/// Makes renames in `dir` durable where the OS allows it (a directory cannot be opened for syncing everywhere).
fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Records an event on the agent's timeline and waits (briefly) for the broker to store it.
pub async fn obs(client: &async_nats::Client, pc: &PcId, event: &str, details: serde_json::Value) {
    let body = ObsEvent { pc_id: pc.clone(), event: event.to_owned(), details, at: chrono::Utc::now() };
    let Ok(body) = serde_json::to_vec(&body) else { return };
    let sent = async {
        jetstream::new(client.clone()).publish(subject::obs(pc), body.into()).await?.await?;
        Ok::<(), async_nats::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(5), sent).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(event, error = %err, "timeline event not recorded"),
        Err(_) => tracing::warn!(event, "timeline event not recorded in time"),
    }
}

/// Whether this process may update itself at all.
pub fn enabled() -> bool {
    exe().is_some()
}
