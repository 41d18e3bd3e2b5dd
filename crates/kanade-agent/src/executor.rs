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
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kanade_shared::wire::{Command, OutputChunk, OutputStream, Reason, ResultStatus};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::platform::{self, ProcessTree};

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
}

impl ScriptRunner {
    pub fn new(staging_root: PathBuf, limits: OutputLimits) -> Self {
        Self { staging_root, limits }
    }

    /// Runs `command` to its end. `chunks` receives live output (best effort: a full channel drops a chunk, and the
    /// gap shows in `seq`); `cancel` kills the run.
    pub async fn run(
        &self,
        command: &Command,
        chunks: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Outcome {
        let staging = self.staging_root.join(command.exec_id.as_str());
        let Some(launch) = platform::launch(&command.shell, &command.script, &staging) else {
            return Outcome::not_run(
                Reason::UnsupportedShell,
                format!("shell `{}` is not available on this host", command.shell),
            );
        };
        if let Err(err) = stage(&staging, &launch.files).await {
            return Outcome::not_run(
                Reason::SpawnFailed,
                format!("cannot stage script in `{}`: {err}", staging.display()),
            );
        }
        let outcome = self.spawn_and_wait(command, &launch, &staging, chunks, cancel).await;
        if let Err(err) = tokio::fs::remove_dir_all(&staging).await {
            tracing::warn!(dir = %staging.display(), error = %err, "cannot remove staging dir");
        }
        outcome
    }

    async fn spawn_and_wait(
        &self,
        command: &Command,
        launch: &platform::Launch,
        staging: &Path,
        chunks: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Outcome {
        let mut process = tokio::process::Command::new(&launch.program);
        process
            .args(&launch.args)
            .current_dir(command.cwd.as_deref().map_or(staging, Path::new))
            .env("KANADE_EXEC_ID", command.exec_id.as_str())
            .env("KANADE_JOB_ID", command.job_id.as_str())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        platform::isolate(&mut process);

        let mut child = match process.spawn() {
            Ok(child) => child,
            Err(err) => {
                return Outcome::not_run(
                    Reason::SpawnFailed,
                    format!("cannot start `{}`: {err}", launch.program.display()),
                );
            }
        };
        let started_at = Utc::now();
        let tree = match ProcessTree::attach(&child) {
            Ok(tree) => Some(tree),
            Err(err) => {
                tracing::warn!(exec_id = %command.exec_id, error = %err, "cannot track the script's process tree");
                None
            }
        };

        let seq = Arc::new(AtomicU64::new(0));
        let spool = |stream| crate::outbox::spool_file(&self.limits.spool_dir, &command.exec_id, stream);
        let stdout = child.stdout.take().map(|pipe| {
            let sink =
                Sink { stream: OutputStream::Stdout, spool: Some(spool(OutputStream::Stdout)), chunks: chunks.clone() };
            tokio::spawn(read_pipe(pipe, sink, self.limits.clone(), seq.clone()))
        });
        let stderr = child.stderr.take().map(|pipe| {
            let sink = Sink { stream: OutputStream::Stderr, spool: Some(spool(OutputStream::Stderr)), chunks };
            tokio::spawn(read_pipe(pipe, sink, self.limits.clone(), seq.clone()))
        });

        enum End {
            Exited(std::io::Result<ExitStatus>),
            TimedOut,
            Killed,
        }
        let end = tokio::select! {
            status = child.wait() => End::Exited(status),
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
                    let _ = child.start_kill();
                }
                let by = if matches!(end, End::TimedOut) { ResultStatus::Timeout } else { ResultStatus::Killed };
                (child.wait().await, Some(by))
            }
        };

        let stdout = collect(stdout).await;
        let stderr = collect(stderr).await;
        let exit_code = exit.as_ref().ok().and_then(ExitStatus::code);
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

/// Writes the run's files into a fresh staging dir, in one blocking call: each `tokio::fs` call would be a hand-off
/// to the blocking pool of its own, a thread wake-up.
async fn stage(staging: &Path, files: &[(String, String)]) -> std::io::Result<()> {
    let (staging, files) = (staging.to_owned(), files.to_vec());
    tokio::task::spawn_blocking(move || {
        // A leftover dir from an interrupted run of the same exec must not leak old files into this one.
        if staging.try_exists()? {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        for (name, contents) in &files {
            std::fs::write(staging.join(name), contents)?;
        }
        Ok(())
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
    let mut undecoded: Vec<u8> = Vec::new();
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
        if let Some(tx) = &chunks {
            undecoded.extend_from_slice(&buf[..take]);
            let data = take_decodable(&mut undecoded);
            if !data.is_empty() {
                let chunk = OutputChunk { seq: seq.fetch_add(1, Ordering::Relaxed), stream, data };
                let _ = tx.try_send(chunk);
            }
        }
    }
    if let Some(tx) = &chunks
        && !undecoded.is_empty()
    {
        let data = String::from_utf8_lossy(&undecoded).into_owned();
        let _ = tx.try_send(OutputChunk { seq: seq.fetch_add(1, Ordering::Relaxed), stream, data });
    }
    let spooled = match spooling {
        Some(file) => Some(file.finish().await),
        None => spool_failed,
    };
    Captured { text: String::from_utf8_lossy(&kept).into_owned(), truncated, spooled }
}

/// Takes the longest prefix of `pending` that is complete UTF-8, leaving a character split across two reads for
/// the next call. Invalid bytes are replaced, not carried.
fn take_decodable(pending: &mut Vec<u8>) -> String {
    let cut = match std::str::from_utf8(pending) {
        Ok(_) => pending.len(),
        Err(err) if err.error_len().is_none() => err.valid_up_to(),
        Err(_) => pending.len(),
    };
    let text = String::from_utf8_lossy(&pending[..cut]).into_owned();
    pending.drain(..cut);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_wait_for_their_second_half() {
        let bytes = "aé".as_bytes();
        let mut pending = bytes[..2].to_vec();
        assert_eq!(take_decodable(&mut pending), "a");
        pending.extend_from_slice(&bytes[2..]);
        assert_eq!(take_decodable(&mut pending), "é");
        assert!(pending.is_empty());
    }

    #[test]
    fn invalid_bytes_are_replaced_not_carried() {
        let mut pending = vec![b'a', 0xff, b'b'];
        assert_eq!(take_decodable(&mut pending), "a\u{fffd}b");
        assert!(pending.is_empty());
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
