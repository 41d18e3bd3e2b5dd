//! Self-update: when the effective `target_version` (KV `agent_config`) differs from this agent's version, wait a
//! random time within `target_version_jitter`, download `<version>/<os>-<arch>` from `agent_releases` (by direct
//! get, no consumer: see [`download`]), check its SHA-256 and its embedded version, swap it in, and exit with
//! [`EXIT_UPDATED`] so the service manager starts the new binary.
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
//! Only the real agent process updates itself: `main` builds the one [`SelfUpdate`] of the process from its
//! executable's path and hands it to the agent, which follows the target with an [`Updater`]. An agent in a test
//! or in the simulator gets none: it shares its process with others and must never replace the executable it runs
//! in.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::object_store::ObjectInfo;
use kanade_shared::layered::Settings;
use kanade_shared::resources::{OBJ_AGENT_RELEASES, object_store_stream_name};
use kanade_shared::wire::ObsKind;
use kanade_shared::{PcId, subject};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catchup;
use crate::liveconfig::LiveConfig;
use crate::obs::record as obs;
use crate::version;

/// The exit code that asks the service manager for a restart into the new binary.
pub const EXIT_UPDATED: u8 = 64;
/// Largest agent binary accepted.
const MAX_BINARY: u64 = 512 * 1024 * 1024;

/// Starts a new binary gets before it is rolled back.
pub const MAX_BOOTS: u32 = 3;

/// How long an updated agent runs connected before it counts as healthy (and cannot be rolled back any more).
const PROVEN_AFTER: Duration = Duration::from_secs(5);

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

/// This process's right to replace its own executable, and what it knows about doing so. Built once, by `main`,
/// from the running executable's path; an agent without one (in a test or the simulator, which share their
/// process with others) never touches the executable it runs in.
pub struct SelfUpdate {
    exe: PathBuf,
    /// Set once a new binary is in place (or the old one put back) and the agent stopped for it: `main` exits
    /// with [`EXIT_UPDATED`].
    updated: AtomicBool,
    /// A timeline event decided at start (before there is a connection), published once connected.
    pending_event: Mutex<Option<(String, serde_json::Value)>>,
    /// The version this process was updated from, when it is a new binary on probation (for its `agent_started`).
    updated_from: Mutex<Option<String>>,
    /// One swap (or sentinel change) at a time, and none after one succeeded.
    swapping: Mutex<()>,
    /// Held by whoever is fetching, staging and swapping a version, from the download to the swap: `<exe>.new`
    /// is written by one update at a time.
    fetching: tokio::sync::Mutex<()>,
    /// The version an update is scheduled or under way for, so a repeated config change does not start another.
    target: Mutex<Option<String>>,
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

impl SelfUpdate {
    /// Allows this process to replace `exe` (the running executable).
    pub fn new(exe: PathBuf) -> Self {
        Self {
            exe,
            updated: AtomicBool::new(false),
            pending_event: Mutex::new(None),
            updated_from: Mutex::new(None),
            swapping: Mutex::new(()),
            fetching: tokio::sync::Mutex::const_new(()),
            target: Mutex::new(None),
        }
    }

    /// True once a new binary is in place and the agent stopped for it: `main` exits with [`EXIT_UPDATED`].
    pub fn updated(&self) -> bool {
        self.updated.load(Ordering::SeqCst)
    }

    /// The event [`SelfUpdate::on_start`] left for the agent to record once connected.
    fn take_pending_event(&self) -> Option<(String, serde_json::Value)> {
        self.pending_event.lock().ok().and_then(|mut e| e.take())
    }

    /// The version this process replaced, when it is a new binary's start after a self-update.
    pub fn updated_from(&self) -> Option<String> {
        self.updated_from.lock().ok().and_then(|from| from.clone())
    }

    fn leave_event(&self, event: &str, details: serde_json::Value) {
        if let Ok(mut pending) = self.pending_event.lock() {
            *pending = Some((event.to_owned(), details));
        }
    }

    /// The version this agent will not try again until the target changes.
    fn blocked(&self) -> Option<String> {
        std::fs::read_to_string(state_file(&self.exe, "blocked"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// Remembers not to try `version` again (until the target moves to another version and back).
    fn block(&self, version: &str, why: &str) {
        tracing::error!(version, why, "not updating to this version again until the target changes");
        if let Err(err) = std::fs::write(state_file(&self.exe, "blocked"), version) {
            tracing::warn!(error = %err, "cannot remember the blocked version; it may be tried again after a restart");
        }
    }

    /// First thing at start, before the config is read or anything connects: clears a half-done swap, counts this
    /// boot of a new binary, and rolls a failing one back.
    pub fn on_start(&self, running: &str) -> Start {
        let exe = self.exe.as_path();
        let Ok(_one) = self.swapping.lock() else { return Start::Run };
        let (new, old) = (sibling(exe, ".new"), sibling(exe, ".old"));
        remove_quietly(&new);
        // What a rollback could not delete while the bad binary was running (Windows keeps a running image).
        remove_quietly(&sibling(exe, ".bad"));
        let rolled_back_file = state_file(exe, "rolled-back");
        if let Ok(failed) = std::fs::read_to_string(&rolled_back_file) {
            let _ = std::fs::remove_file(&rolled_back_file);
            self.block(failed.trim(), "it did not come up healthy; rolled back");
            self.leave_event(
                ObsKind::AgentUpdateRolledBack.as_str(),
                serde_json::json!({ "from": failed.trim(), "to": running }),
            );
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
            self.block(&armed.to, &format!("the binary fetched as {} runs as {running}", armed.to));
            self.leave_event(
                ObsKind::AgentUpdateRefused.as_str(),
                serde_json::json!({ "expected": armed.to, "running": running }),
            );
            remove_quietly(&old);
            return Start::Run;
        }
        armed.boots += 1;
        if armed.boots <= MAX_BOOTS {
            tracing::info!(from = %armed.from, to = running, boot = armed.boots, "starting the updated binary");
            if let Ok(mut from) = self.updated_from.lock() {
                *from = Some(armed.from.clone());
            }
            if let Err(err) = write_sentinel(exe, &armed) {
                tracing::error!(error = %err, "cannot count this start of the updated binary");
            }
            return Start::Run;
        }
        tracing::error!(
            to = running,
            boots = armed.boots - 1,
            "the updated binary never came up healthy; rolling back"
        );
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
        self.updated.store(true, Ordering::SeqCst);
        Start::RestartIntoOld
    }

    /// The agent is connected and working: if this binary (`running`) is a new one on probation, it has proven
    /// itself. A sentinel armed for a later swap (this process already fetched the next version) is left alone: it
    /// belongs to the binary about to start.
    fn healthy(&self, running: &str) {
        let exe = self.exe.as_path();
        let Ok(_one) = self.swapping.lock() else { return };
        if self.updated() {
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

    /// The agent stopped because it was asked to (a service stop, SIGTERM), not because it failed: a start of a
    /// new binary on probation that ends so is not held against it.
    pub fn stopped_cleanly(&self, running: &str) {
        let exe = self.exe.as_path();
        let Ok(_one) = self.swapping.lock() else { return };
        if self.updated() {
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

    /// Writes `binary` as `<exe>.new`, synced and executable, ready for [`probe`] and [`SelfUpdate::swap`].
    fn stage(&self, binary: &[u8]) -> Result<PathBuf, UpdateError> {
        use std::io::Write;
        let new = sibling(&self.exe, ".new");
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

    /// Puts the staged `<exe>.new` (version `to`) in place of the running executable: the boot sentinel is armed
    /// first, then `exe` -> `.old`, `.new` -> `exe`. On success the process is marked updated.
    fn swap(&self, from: &str, to: &str) -> Result<(), UpdateError> {
        let exe = self.exe.as_path();
        let Ok(_one) = self.swapping.lock() else {
            return Err(UpdateError::Swap(std::io::Error::other("the swap lock is poisoned")));
        };
        if self.updated() {
            return Err(UpdateError::Swap(std::io::Error::other("another version was already swapped in")));
        }
        let (new, old) = (sibling(exe, ".new"), sibling(exe, ".old"));
        if !new.is_file() {
            return Err(UpdateError::Swap(std::io::Error::other(format!("`{}` is not there", new.display()))));
        }
        write_sentinel(exe, &Sentinel { from: from.to_owned(), to: to.to_owned(), boots: 0 })
            .map_err(UpdateError::Swap)?;
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
                self.updated.store(true, Ordering::SeqCst);
                Ok(())
            }
            Err(err) => {
                disarm(exe);
                Err(UpdateError::Swap(err))
            }
        }
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
    #[error("release `{key}` is {size} bytes, more than the {MAX_BINARY} bytes an agent takes: refusing it")]
    TooLarge { key: String, size: u64 },
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
            Self::Corrupt { .. }
                | Self::Unverifiable { .. }
                | Self::TooLarge { .. }
                | Self::WrongVersion { .. }
                | Self::WontRun { .. }
        )
    }
}

/// Chunks asked for per batch direct get: 4 MiB at the object store's default chunk size (128 KiB).
const CHUNK_BATCH: u64 = 32;

/// Downloads `version` for this platform and checks it is exactly what was published, and that version.
///
/// By direct get only, never through the object store's client: the object's info is the last message on
/// `$O.agent_releases.M.<name>` (the subject form of direct get, which the agent's permissions allow on this stream),
/// and its chunks are read in order with batch direct get on `$O.agent_releases.C.<nuid>`. The object store's own
/// `get` asks for the stream's info and creates an ordered push consumer, both of which an agent's permissions
/// refuse (a push consumer's deliver subject is not checked against its creator's permissions, so creating one
/// would let an agent have the server republish stored bytes on any subject). It also leaves no state on the
/// server: a fleet-wide rollout no longer opens a consumer per downloading agent, against the stream's consumer
/// limit (DESIGN.md), and a download that fails is tried again with backoff like any other.
pub async fn download(client: &async_nats::Client, version: &str) -> Result<Vec<u8>, UpdateError> {
    let key = format!("{version}/{}", platform());
    let download = |reason: String| UpdateError::Download { key: key.clone(), reason };
    let stream = object_store_stream_name(OBJ_AGENT_RELEASES);
    let meta = catchup::last_for_subject(client, &stream, &subject::object_meta(OBJ_AGENT_RELEASES, &key))
        .await
        .map_err(|e| download(e.to_string()))?;
    let Some(meta) = meta else { return Err(UpdateError::Missing { key }) };
    let info: ObjectInfo =
        serde_json::from_slice(&meta.payload).map_err(|e| download(format!("its info is not readable: {e}")))?;
    if info.deleted {
        return Err(UpdateError::Missing { key });
    }
    let expected = info
        .metadata
        .get(kanade_shared::resources::OBJECT_SHA256_KEY)
        .cloned()
        .ok_or_else(|| UpdateError::Unverifiable { key: key.clone() })?;
    if info.size as u64 > MAX_BINARY {
        return Err(UpdateError::TooLarge { key, size: info.size as u64 });
    }
    let chunks = subject::object_chunks(OBJ_AGENT_RELEASES, &info.nuid)
        .ok_or_else(|| download(format!("its info names its chunks `{}`", info.nuid.escape_debug())))?;
    let bytes = read_chunks(client, &stream, &chunks, info.chunks, info.size).await.map_err(download)?;
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

/// The first `count` messages on `subject` (an object's chunks), oldest first, joined: exactly `size` bytes or an
/// error. Each request asks for no more than the chunks still missing, so nothing after the object's own chunks is
/// read, and the bytes never outgrow `size` (at most [`MAX_BINARY`]).
async fn read_chunks(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
    count: usize,
    size: usize,
) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(size);
    let (mut read, mut next) = (0usize, 1u64);
    while read < count {
        let want = u64::try_from(count - read).unwrap_or(u64::MAX).min(CHUNK_BATCH);
        let batch = catchup::fetch_batch(client, stream, subject, next, want).await.map_err(|e| e.to_string())?;
        if batch.messages.is_empty() {
            return Err(format!("its chunks end after {read} of {count}"));
        }
        for chunk in batch.messages.into_iter().take(count - read) {
            if chunk.subject != subject {
                return Err(format!("the broker answered with `{}` for its chunks", chunk.subject.escape_debug()));
            }
            if bytes.len() + chunk.payload.len() > size {
                return Err(format!("its chunks hold more than the {size} bytes its info says"));
            }
            bytes.extend_from_slice(&chunk.payload);
            next = chunk.seq + 1;
            read += 1;
        }
    }
    if bytes.len() != size {
        return Err(format!("its {count} chunks hold {} bytes, not the {size} its info says", bytes.len()));
    }
    Ok(bytes)
}

/// How long the staged binary gets to print its version.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the staged binary with `--version` and expects it to name `version`: a release that cannot start here at
/// all (another architecture, a missing library, a crash before `main`) is refused before anything is swapped,
/// since no boot sentinel could count its starts.
pub async fn probe(staged: &Path, key: &str, version: &str) -> Result<(), UpdateError> {
    let wont_run = |reason: String| UpdateError::WontRun { key: key.to_owned(), reason };
    let mut command = tokio::process::Command::new(staged);
    command
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    crate::platform::isolate(&mut command);
    // Started under the agent's spawn lock (not held across the wait), so it inherits no pipe end a script's start
    // holds inheritable.
    let spawned = {
        let _spawning = crate::platform::spawn_lock();
        command.spawn()
    };
    let child = spawned.map_err(|err| wont_run(format!("cannot start it: {err}")))?;
    let output = match tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => return Err(wont_run(format!("cannot read its output: {err}"))),
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

/// Makes renames in `dir` durable where the OS allows it (a directory cannot be opened for syncing everywhere).
fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// One agent's side of self-update: it proves a new binary healthy once connected, and follows the effective
/// `target_version`. Every task it starts is tracked by the agent and ends on shutdown.
#[derive(Clone)]
pub struct Updater {
    update: Arc<SelfUpdate>,
    client: async_nats::Client,
    pc: PcId,
    live: Arc<LiveConfig>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Updater {
    pub fn new(
        update: Arc<SelfUpdate>,
        client: async_nats::Client,
        pc: PcId,
        live: Arc<LiveConfig>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Self { update, client, pc, live, shutdown, tasks }
    }

    /// The version this process was updated from, when it is a new binary's start after a self-update.
    pub fn updated_from(&self) -> Option<String> {
        self.update.updated_from()
    }

    /// Starts the probation check: a new binary has proven itself once it has run connected, subscribed and
    /// answering a round trip, for a while; then the boot sentinel is cleared, and what the start decided goes on
    /// the timeline.
    pub fn prove_healthy(&self) {
        let this = self.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(PROVEN_AFTER) => {}
                    () = this.shutdown.cancelled() => return,
                }
                if this.client.connection_state() == async_nats::connection::State::Connected
                    && tokio::time::timeout(Duration::from_secs(10), this.client.flush()).await.is_ok_and(|f| f.is_ok())
                {
                    break;
                }
            }
            this.update.healthy(version());
            if let Some((event, details)) = this.update.take_pending_event() {
                obs(&this.client, &this.pc, &event, details).await;
            }
        });
    }

    /// Starts fetching the target version when it differs from this agent's own (once per target).
    pub fn consider(&self, settings: &Settings) {
        let Some(target) = settings.target_version.clone() else { return };
        if target == version() {
            return;
        }
        if self.update.blocked().as_deref() == Some(target.as_str()) {
            return;
        }
        let Ok(mut scheduled) = self.update.target.lock() else { return };
        if scheduled.as_deref() == Some(target.as_str()) {
            return;
        }
        *scheduled = Some(target.clone());
        let jitter = settings.target_version_jitter.unwrap_or_default();
        self.tasks.spawn(self.clone().update_to(target, jitter));
    }

    /// Waits out the jitter, then fetches, checks and swaps in `target` and stops the agent for the restart;
    /// retries what may pass (the broker away, the release not there yet) and gives up on what cannot (a
    /// corrupt or mislabelled release) until the target changes.
    async fn update_to(self, target: String, jitter: Duration) {
        let wait = jitter.mul_f64(rand::random_range(0.0..=1.0));
        tracing::info!(from = version(), to = %target, wait = ?wait, "agent update scheduled");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.shutdown.cancelled() => return,
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            let one_at_a_time = tokio::select! {
                guard = self.update.fetching.lock() => guard,
                () = self.shutdown.cancelled() => return,
            };
            if self.live.settings().0.target_version.as_deref() != Some(target.as_str()) {
                tracing::info!(to = %target, "target version changed before the update; not updating to it");
                break;
            }
            // A stop does not wait for a download: cut short, nothing has moved yet (`<exe>.new` is cleared at the
            // next start), and the swap itself happens in one step that is never cut.
            let swapped = tokio::select! {
                swapped = self.fetch_and_swap(&target) => swapped,
                () = self.shutdown.cancelled() => return,
            };
            drop(one_at_a_time);
            match swapped {
                Ok(()) => {
                    tracing::info!(from = version(), to = %target, "new agent binary in place; restarting into it");
                    let details = serde_json::json!({ "from": version(), "to": target });
                    obs(&self.client, &self.pc, ObsKind::AgentUpdate.as_str(), details).await;
                    self.shutdown.cancel();
                    return;
                }
                Err(err) if err.is_final() => {
                    self.update.block(&target, &err.to_string());
                    let details = serde_json::json!({ "to": target, "error": err.to_string() });
                    obs(&self.client, &self.pc, ObsKind::AgentUpdateRefused.as_str(), details).await;
                    break;
                }
                Err(err) => {
                    tracing::warn!(to = %target, error = %err, retry_in = ?backoff, "agent update failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
            }
        }
        if let Ok(mut scheduled) = self.update.target.lock()
            && scheduled.as_deref() == Some(target.as_str())
        {
            *scheduled = None;
        }
    }

    /// Downloads and checks `target`, stages it as `<exe>.new`, makes sure it runs here, and swaps it in.
    async fn fetch_and_swap(&self, target: &str) -> Result<(), UpdateError> {
        let bytes = download(&self.client, target).await?;
        let staged = self.update.stage(&bytes)?;
        drop(bytes);
        if let Err(err) = probe(&staged, &format!("{target}/{}", platform()), target).await {
            let _ = std::fs::remove_file(&staged);
            return Err(err);
        }
        self.update.swap(version(), target)
    }
}
