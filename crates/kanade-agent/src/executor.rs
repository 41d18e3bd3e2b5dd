//! Runs one command's script: stages it, starts it through the platform's launcher in its own process tree,
//! streams and caps its output, enforces the timeout and kill by killing the whole tree, and cleans up.
//!
//! Each output stream keeps its first `output_limit_bytes` in memory for the result. A stream that outgrows them is
//! spooled whole (up to `output_max_bytes`, hashed on the way) to a file in the outbox's spool dir, never held in
//! memory; the outbox publishes that file, in chunks, to stream `OUTPUT` before it publishes the result.
//!
//! The executor knows nothing of NATS: output chunks go to a channel and the outcome is returned, so the fleet
//! simulator puts [`Emulated`] in its place and keeps everything else of the agent as it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kanade_shared::wire::{Command, OutputChunk, OutputStream, Reason, ResultStatus, RunAs};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::platform;

/// How long to wait for output pipes to close after the tree is killed. Only a process that left the tree on
/// purpose (setsid, a service) can hold a pipe open past the kill.
const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(3);
/// Size of one read from a pipe, and so the largest live output chunk.
const READ_CHUNK: usize = 16 * 1024;

/// How a run ended, before it is addressed as a result.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: ResultStatus,
    pub exit_code: Option<i32>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub reason: Option<Reason>,
}

impl Outcome {
    fn not_run(reason: Reason, message: String) -> Self {
        let status = match reason {
            Reason::SpawnFailed => ResultStatus::Failed,
            _ => ResultStatus::Skipped,
        };
        Self {
            status,
            exit_code: None,
            stdout: Captured::default(),
            stderr: Captured { text: message, ..Captured::default() },
            started_at: None,
            finished_at: Utc::now(),
            reason: Some(reason),
        }
    }
}

/// Output kept for the result: at most the configured limit per stream inline, and the whole stream spooled when it
/// outgrew that.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Captured {
    pub text: String,
    /// `text` is the beginning of a longer stream.
    pub truncated: bool,
    pub spooled: Option<Spooled>,
}

/// A whole output stream written to a spool file (synced), waiting for the outbox to upload it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spooled {
    pub path: PathBuf,
    /// Bytes in the file.
    pub size: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// The stream went on past the ceiling; the file holds its first `size` bytes.
    pub capped: bool,
    /// The spool file could not be written (why); whatever it holds is not to be uploaded.
    pub failed: Option<String>,
}

/// How much of each output stream a run keeps, and where a long one is spooled.
#[derive(Debug, Clone)]
pub struct OutputLimits {
    /// Bytes kept inline in the result (`output_limit_bytes`).
    pub inline: usize,
    /// Bytes kept in all (`output_max_bytes`); at least `inline`.
    pub max: u64,
    /// Where whole streams are spooled (the outbox's spool dir).
    pub spool_dir: PathBuf,
}

/// What turns a command into an outcome: real scripts, or the fleet simulator's stand-in.
pub enum Executor {
    Script(ScriptRunner),
    Emulated(Emulated),
}

impl Executor {
    pub async fn run(
        &self,
        command: &Command,
        chunks: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Outcome {
        match self {
            Executor::Script(runner) => runner.run(command, chunks, cancel).await,
            Executor::Emulated(emulated) => emulated.run(command, chunks, cancel).await,
        }
    }
}

/// Pretends to run a script: waits `exec_time` (or until killed), prints `output_bytes` and exits `exit_code`.
#[derive(Debug, Clone)]
pub struct Emulated {
    pub exec_time: Duration,
    pub exit_code: i32,
    pub output_bytes: usize,
    /// Appends each run's exec id to this file as it starts, so a test can count how often each command really ran
    /// (the script's own side effect, for a script that has none).
    pub record_runs: Option<PathBuf>,
}

impl Emulated {
    async fn run(
        &self,
        command: &Command,
        chunks: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Outcome {
        let started_at = Utc::now();
        if let Some(path) = &self.record_runs {
            use std::io::Write;
            let line = format!("{}\n", command.exec_id);
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| file.write_all(line.as_bytes()));
            if let Err(err) = appended {
                tracing::warn!(file = %path.display(), error = %err, "cannot record the emulated run");
            }
        }
        let killed = tokio::select! {
            () = tokio::time::sleep(self.exec_time) => false,
            () = cancel.cancelled() => true,
        };
        let text = "x".repeat(self.output_bytes);
        if let Some(tx) = chunks
            && !text.is_empty()
        {
            let _ = tx.try_send(OutputChunk { seq: 0, stream: OutputStream::Stdout, data: text.clone() });
        }
        let status = match (killed, self.exit_code) {
            (true, _) => ResultStatus::Killed,
            (false, 0) => ResultStatus::Ok,
            (false, _) => ResultStatus::Failed,
        };
        Outcome {
            status,
            exit_code: (!killed).then_some(self.exit_code),
            stdout: Captured { text, ..Captured::default() },
            stderr: Captured::default(),
            started_at: Some(started_at),
            finished_at: Utc::now(),
            reason: None,
        }
    }
}

/// Runs real scripts under real shells.
pub struct ScriptRunner {
    staging_root: PathBuf,
    limits: OutputLimits,
    /// The account `run_as: user` runs as (`agent.run_as_user`); `None`: the user at the PC's screen.
    run_as_user: Option<String>,
}

impl ScriptRunner {
    pub fn new(staging_root: PathBuf, limits: OutputLimits, run_as_user: Option<String>) -> Self {
        Self { staging_root, limits, run_as_user }
    }

    /// Runs `command` to its end. `chunks` receives live output (best effort: a full channel drops a chunk, and the
    /// gap shows in `seq`); `cancel` kills the run.
    pub async fn run(
        &self,
        command: &Command,
        chunks: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Outcome {
        // Who it runs as, decided now: the person at the screen may have changed since the command was sent.
        // `system` needs no lookup (and no hop to a blocking thread).
        let resolved = if command.run_as == RunAs::System {
            platform::identity(&RunAs::System, None)
        } else {
            let (run_as, configured) = (command.run_as.clone(), self.run_as_user.clone());
            match tokio::task::spawn_blocking(move || platform::identity(&run_as, configured.as_deref())).await {
                Ok(resolved) => resolved,
                Err(err) => return Outcome::not_run(Reason::SpawnFailed, format!("cannot resolve run_as: {err}")),
            }
        };
        let identity = match resolved {
            Ok(identity) => identity,
            Err(unavailable) => return Outcome::not_run(unavailable.reason, unavailable.message),
        };
        let staging = match new_staging(&self.staging_root, command.exec_id.as_str(), &identity).await {
            Ok(staging) => staging,
            Err(err) => {
                return Outcome::not_run(
                    Reason::SpawnFailed,
                    format!("cannot make a staging dir in `{}`: {err}", self.staging_root.display()),
                );
            }
        };
        let Some(launch) = platform::launch(&command.shell, &command.script, &staging) else {
            let _ = remove_staging(&staging, &[]).await;
            return Outcome::not_run(
                Reason::UnsupportedShell,
                format!("shell `{}` is not available on this host", command.shell),
            );
        };
        if let Err(err) = stage(&staging, &launch.files, &identity).await {
            let _ = remove_staging(&staging, &[]).await;
            return Outcome::not_run(
                Reason::SpawnFailed,
                format!("cannot stage script in `{}`: {err}", staging.display()),
            );
        }
        let outcome = self.spawn_and_wait(command, &launch, &staging, &identity, chunks, cancel).await;
        if let Err(err) = remove_staging(&staging, STAGING_REMOVE_DELAYS).await {
            tracing::warn!(dir = %staging.display(), error = %err, "cannot remove staging dir");
        }
        outcome
    }

    async fn spawn_and_wait(
        &self,
        command: &Command,
        launch: &platform::Launch,
        staging: &Path,
        identity: &platform::Identity,
        chunks: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Outcome {
        let cwd = command.cwd.as_deref().map_or(staging, Path::new);
        let env = [("KANADE_EXEC_ID", command.exec_id.as_str()), ("KANADE_JOB_ID", command.job_id.as_str())];
        let spawned = match platform::spawn(launch, cwd, &env, identity).await {
            Ok(spawned) => spawned,
            Err(err) => {
                return Outcome::not_run(
                    Reason::SpawnFailed,
                    format!("cannot start `{}`: {err}", launch.program.display()),
                );
            }
        };
        let platform::Spawned { stdout, stderr, tree, mut process } = spawned;
        let started_at = Utc::now();
        let tree = match tree {
            Ok(tree) => Some(tree),
            Err(err) => {
                tracing::warn!(exec_id = %command.exec_id, error = %err, "cannot track the script's process tree");
                None
            }
        };

        let seq = Arc::new(AtomicU64::new(0));
        let spool = |stream| crate::outbox::spool_file(&self.limits.spool_dir, &command.exec_id, stream);
        let stdout = {
            let sink =
                Sink { stream: OutputStream::Stdout, spool: Some(spool(OutputStream::Stdout)), chunks: chunks.clone() };
            Some(tokio::spawn(read_pipe(stdout, sink, self.limits.clone(), seq.clone())))
        };
        let stderr = {
            let sink = Sink { stream: OutputStream::Stderr, spool: Some(spool(OutputStream::Stderr)), chunks };
            Some(tokio::spawn(read_pipe(stderr, sink, self.limits.clone(), seq.clone())))
        };

        enum End {
            /// The exit code, `None` when the process has none (ended by a signal).
            Exited(std::io::Result<Option<i32>>),
            TimedOut,
            Killed,
        }
        let end = tokio::select! {
            status = process.wait() => End::Exited(status),
            () = tokio::time::sleep(command.timeout) => End::TimedOut,
            () = cancel.cancelled() => End::Killed,
        };
        // Whatever ended the run, nothing it started outlives it.
        if let Some(tree) = &tree {
            tree.kill();
        }
        let (exit, ended_by) = match end {
            End::Exited(status) => (status, None),
            End::TimedOut | End::Killed => {
                if tree.is_none() {
                    process.start_kill();
                }
                let by = if matches!(end, End::TimedOut) { ResultStatus::Timeout } else { ResultStatus::Killed };
                (process.wait().await, Some(by))
            }
        };

        let stdout = collect(stdout).await;
        let stderr = collect(stderr).await;
        // A killed or timed-out run has no exit code of its own on any OS: Unix reports the signal, Windows the code
        // the job was terminated with, which the script never chose.
        let exit_code = if ended_by.is_some() { None } else { exit.ok().flatten() };
        let status = match ended_by {
            Some(status) => status,
            None if exit_code == Some(0) => ResultStatus::Ok,
            None => ResultStatus::Failed,
        };
        Outcome {
            status,
            exit_code,
            stdout,
            stderr,
            started_at: Some(started_at),
            finished_at: Utc::now(),
            reason: None,
        }
    }
}

/// The waits between attempts to remove a run's staging dir: on Windows a process of the killed tree may still hold
/// a file open for a moment after the Job Object closed (deleting an open file fails there).
const STAGING_REMOVE_DELAYS: &[Duration] =
    &[Duration::from_millis(50), Duration::from_millis(200), Duration::from_millis(500), Duration::from_secs(1)];

/// Removes `staging`, trying again after each of `delays` while it fails; gone already counts as removed.
async fn remove_staging(staging: &Path, delays: &[Duration]) -> std::io::Result<()> {
    let mut delays = delays.iter();
    loop {
        match tokio::fs::remove_dir_all(staging).await {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => match delays.next() {
                Some(delay) => tokio::time::sleep(*delay).await,
                None => return Err(err),
            },
        }
    }
}

/// A new, empty staging dir for the run `exec` as `identity` (`platform::new_staging`).
async fn new_staging(staging_root: &Path, exec: &str, identity: &platform::Identity) -> std::io::Result<PathBuf> {
    let (staging_root, exec, identity) = (staging_root.to_owned(), exec.to_owned(), identity.clone());
    tokio::task::spawn_blocking(move || platform::new_staging(&staging_root, &exec, &identity))
        .await
        .map_err(std::io::Error::other)?
}

/// Writes the run's files into its fresh staging dir and opens them to the run's identity, in one blocking call:
/// each `tokio::fs` call would be a hand-off to the blocking pool of its own, a thread wake-up.
async fn stage(staging: &Path, files: &[(String, String)], identity: &platform::Identity) -> std::io::Result<()> {
    let (staging, files, identity) = (staging.to_owned(), files.to_vec(), identity.clone());
    tokio::task::spawn_blocking(move || {
        for (name, contents) in &files {
            std::fs::write(staging.join(name), contents)?;
        }
        platform::share_staging(&staging, &identity)
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn collect(reader: Option<tokio::task::JoinHandle<Captured>>) -> Captured {
    let Some(mut reader) = reader else { return Captured::default() };
    match tokio::time::timeout(PIPE_DRAIN_GRACE, &mut reader).await {
        Ok(Ok(captured)) => captured,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "output reader failed");
            Captured::default()
        }
        Err(_) => {
            // A process outside the tree still holds the pipe; what was read so far is lost with the task, so
            // say so rather than return silence.
            reader.abort();
            Captured {
                text: "[output unavailable: a detached process kept the pipe open]".into(),
                truncated: true,
                spooled: None,
            }
        }
    }
}

/// Where one pipe's bytes go besides the result's inline part.
struct Sink {
    stream: OutputStream,
    /// The spool file to open once the stream outgrows the inline part; `None` keeps only the inline part.
    spool: Option<PathBuf>,
    chunks: Option<mpsc::Sender<OutputChunk>>,
}

/// A spool file being written.
struct Spooling {
    file: tokio::fs::File,
    path: PathBuf,
    size: u64,
    hash: Sha256,
    capped: bool,
    failed: Option<String>,
}

impl Spooling {
    async fn open(path: PathBuf) -> Result<Self, (PathBuf, String)> {
        if let Some(dir) = path.parent()
            && let Err(err) = tokio::fs::create_dir_all(dir).await
        {
            return Err((path, format!("cannot create the spool dir: {err}")));
        }
        match tokio::fs::File::create(&path).await {
            Ok(file) => Ok(Self { file, path, size: 0, hash: Sha256::new(), capped: false, failed: None }),
            Err(err) => Err((path, format!("cannot create the spool file: {err}"))),
        }
    }

    /// Appends what fits under `max`; a write error stops the spooling (the pipe is still drained).
    async fn write(&mut self, bytes: &[u8], max: u64) {
        if self.failed.is_some() || self.capped {
            return;
        }
        let room = usize::try_from(max.saturating_sub(self.size)).unwrap_or(usize::MAX);
        let take = bytes.len().min(room);
        if take < bytes.len() {
            self.capped = true;
        }
        if take == 0 {
            return;
        }
        match self.file.write_all(&bytes[..take]).await {
            Ok(()) => {
                self.hash.update(&bytes[..take]);
                self.size += take as u64;
            }
            Err(err) => self.failed = Some(format!("cannot write the spool file: {err}")),
        }
    }

    /// Flushes and syncs the file: once the result that points at it is in the outbox, both survive a crash.
    async fn finish(mut self) -> Spooled {
        if self.failed.is_none() {
            let synced = async {
                self.file.flush().await?;
                self.file.sync_all().await
            };
            if let Err(err) = synced.await {
                self.failed = Some(format!("cannot sync the spool file: {err}"));
            }
        }
        Spooled {
            path: self.path,
            size: self.size,
            sha256: format!("{:x}", self.hash.finalize()),
            capped: self.capped,
            failed: self.failed,
        }
    }
}

/// Reads one pipe to its end: keeps up to `limits.inline` bytes, streams the same bytes as chunks, spools the whole
/// stream (up to `limits.max`) once it outgrows the inline part, and discards (but keeps draining) the rest so the
/// script never blocks on a full pipe.
async fn read_pipe(
    mut pipe: impl AsyncRead + Unpin,
    sink: Sink,
    limits: OutputLimits,
    seq: Arc<AtomicU64>,
) -> Captured {
    let Sink { stream, mut spool, chunks } = sink;
    let limit = limits.inline;
    let mut kept: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut spooling: Option<Spooling> = None;
    let mut spool_failed: Option<Spooled> = None;
    // The kept text and the live chunks are one decoding, so they are the same text in one encoding per stream
    // (UTF-8, else the OEM code page on Windows: `crate::output_text`).
    let mut decoder = crate::output_text::OutputDecoder::new(platform::oem_code_page());
    let mut text = String::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = limit.saturating_sub(kept.len());
        let take = n.min(room);
        if take < n {
            truncated = true;
            // The first byte past the inline part: from here on the whole stream goes to the spool file.
            if let Some(path) = spool.take() {
                match Spooling::open(path).await {
                    Ok(mut file) => {
                        file.write(&kept, limits.max).await;
                        spooling = Some(file);
                    }
                    Err((path, why)) => {
                        tracing::warn!(file = %path.display(), error = %why, "cannot spool the whole output");
                        let sha256 = String::new();
                        spool_failed = Some(Spooled { path, size: 0, sha256, capped: false, failed: Some(why) });
                    }
                }
            }
        }
        if let Some(file) = &mut spooling {
            file.write(&buf[..n], limits.max).await;
        }
        if take == 0 {
            continue;
        }
        kept.extend_from_slice(&buf[..take]);
        let data = decoder.push(&buf[..take]);
        text.push_str(&data);
        if let Some(tx) = &chunks
            && !data.is_empty()
        {
            let chunk = OutputChunk { seq: seq.fetch_add(1, Ordering::Relaxed), stream, data };
            let _ = tx.try_send(chunk);
        }
    }
    let data = decoder.finish();
    text.push_str(&data);
    if let Some(tx) = &chunks
        && !data.is_empty()
    {
        let _ = tx.try_send(OutputChunk { seq: seq.fetch_add(1, Ordering::Relaxed), stream, data });
    }
    let spooled = match spooling {
        Some(file) => Some(file.finish().await),
        None => spool_failed,
    };
    Captured { text, truncated, spooled }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_staging_dir_that_cannot_be_removed_yet_is_tried_again() {
        // Something in the way for a moment (on Windows: a file still open by a process of the killed tree). Here: a
        // file where the dir should be, which remove_dir_all refuses, gone a moment later.
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("exec-1");
        std::fs::write(&staging, b"in the way").unwrap();
        assert!(remove_staging(&staging, &[]).await.is_err(), "no second try: the error");
        let in_the_way = staging.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            std::fs::remove_file(in_the_way).unwrap();
        });
        let delays = [Duration::from_millis(100), Duration::from_millis(100)];
        remove_staging(&staging, &delays).await.expect("removed on a later try");
        remove_staging(&staging, &[]).await.expect("gone already is removed");
    }

    fn limits(inline: usize, max: u64, dir: &Path) -> OutputLimits {
        OutputLimits { inline, max, spool_dir: dir.to_owned() }
    }

    fn sink(spool: Option<PathBuf>) -> Sink {
        Sink { stream: OutputStream::Stdout, spool, chunks: None }
    }

    #[tokio::test]
    async fn output_beyond_the_limit_is_dropped_and_flagged_without_a_spool() {
        let data = vec![b'x'; 10_000];
        let dir = tempfile::tempdir().unwrap();
        let captured = read_pipe(&data[..], sink(None), limits(100, 1000, dir.path()), Arc::default()).await;
        assert_eq!(captured.text.len(), 100);
        assert!(captured.truncated);
        assert_eq!(captured.spooled, None);
    }

    #[tokio::test]
    async fn output_within_the_inline_part_writes_no_spool_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool").join("x.stdout");
        let captured =
            read_pipe(&b"short"[..], sink(Some(path.clone())), limits(100, 1000, dir.path()), Arc::default()).await;
        assert_eq!((captured.text.as_str(), captured.truncated, captured.spooled), ("short", false, None));
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_long_stream_is_spooled_whole_with_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool").join("x.stdout");
        // Many reads of odd sizes, so the inline boundary falls inside one.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let reader = tokio::io::BufReader::with_capacity(7_777, &data[..]);
        let captured =
            read_pipe(reader, sink(Some(path.clone())), limits(1000, 1 << 20, dir.path()), Arc::default()).await;
        assert!(captured.truncated);
        assert_eq!(captured.text, String::from_utf8_lossy(&data[..1000]));
        let spooled = captured.spooled.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(spooled.size, data.len() as u64);
        assert_eq!(spooled.sha256, format!("{:x}", Sha256::digest(&data)));
        assert!(!spooled.capped && spooled.failed.is_none());
    }

    #[tokio::test]
    async fn a_stream_past_the_ceiling_is_cut_there_and_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.stdout");
        let data = vec![b'y'; 300_000];
        let captured =
            read_pipe(&data[..], sink(Some(path.clone())), limits(10, 100_000, dir.path()), Arc::default()).await;
        let spooled = captured.spooled.unwrap();
        assert!(spooled.capped);
        assert_eq!(spooled.size, 100_000);
        assert_eq!(std::fs::read(&path).unwrap(), &data[..100_000]);
        assert_eq!(spooled.sha256, format!("{:x}", Sha256::digest(&data[..100_000])));
    }

    #[tokio::test]
    async fn a_spool_that_cannot_be_created_is_reported_and_the_pipe_still_drains() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the spool dir should be.
        std::fs::write(dir.path().join("blocked"), b"").unwrap();
        let path = dir.path().join("blocked").join("x.stdout");
        let data = vec![b'z'; 50_000];
        let captured = read_pipe(&data[..], sink(Some(path)), limits(10, 100_000, dir.path()), Arc::default()).await;
        assert_eq!(captured.text.len(), 10);
        let failed = captured.spooled.unwrap().failed.unwrap();
        assert!(failed.starts_with("cannot create the spool"), "{failed}");
    }
}
