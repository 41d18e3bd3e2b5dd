//! The crash-safe outbox (DESIGN.md guarantee 2): every result is written to disk before it is published, published
//! to `RESULTS` with `Nats-Msg-Id` = result id, and deleted only after the broker's ack. It drains whenever a result
//! is added and on every reconnect, oldest first.
//!
//! The outbox is capped (`outbox_max_bytes`) so that an agent cut off from the broker for long cannot fill its
//! disk with script output. The policy when it is over the cap: a new result is still written, without its stdout
//! and stderr (both flagged truncated, stderr saying why). What a run did — status, exit code, times, reason — is
//! never dropped, so the outbox can exceed the cap only by such small results. The state is logged, and reported
//! in every heartbeat (`outbox_pending`, `outbox_bytes`, `outbox_full`) and in `/api/agents`.
//!
//! A result whose output outgrew the inline part comes with spool files (`output/<exec_id>.stdout|stderr`, written
//! and synced by the executor before the result is put here). They count against the cap like the entry itself; over
//! the cap they are deleted and the result says its full output is unavailable. The publisher uploads them before it
//! publishes the result: each file as chunks of at most [`OUTPUT_CHUNK_BYTES`] published to stream `OUTPUT` on the
//! agent's own subjects (`output.<pc>.<exec_id>.<stream>.<n>`, so its credential needs no right over any other PC's
//! output), a few acks in flight at a time; and it deletes them only after the result's ack. An upload the broker
//! keeps refusing while connected (stream full, not set up) is given up after [`MAX_UPLOAD_TRIES`] (and for a minute
//! after that at its first refusal): the result goes out flagged `unavailable` rather than block the outbox.
//!
//! The outbox keeps an ordered index of its pending entries in memory: read from the directory once when it opens,
//! then kept by `put` and `drain`, so a drain neither lists the directory nor (for a result this process wrote)
//! reads the entry back. The disk stays the truth across a crash; the index only saves looking at it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use kanade_shared::resources::OUTPUT_CHUNK_BYTES;
use kanade_shared::wire::{ExecResult, FullOutput, OutputStream};
use kanade_shared::{ExecId, PcId, ResultId, subject};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ledger::sync_dir;

const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long the agent keeps trying to empty the outbox when it shuts down; the rest goes out at the next start.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);
/// The outbox's subdirectory holding whole output streams waiting to be uploaded.
pub const SPOOL_DIR: &str = "output";
/// Uploads of one output the broker may refuse, while the connection is up, before the result goes out without it.
pub const MAX_UPLOAD_TRIES: u32 = 5;
/// After an output was given up, outputs refused within this long are given up at their first refusal, so a full
/// store costs each waiting result one try rather than five with backoff.
const REFUSING_WINDOW: Duration = Duration::from_secs(60);
/// Chunks of one output published and not yet acknowledged, at most: enough to keep the link busy, few enough that
/// an upload holds at most a megabyte.
const CHUNK_ACKS_IN_FLIGHT: usize = 8;
const STREAMS: [OutputStream; 2] = [OutputStream::Stdout, OutputStream::Stderr];

/// How many chunks of [`OUTPUT_CHUNK_BYTES`] a whole output of `size` bytes is published as. At least one: an empty
/// output is one empty chunk, since a result saying 0 chunks means an older agent's `result_output` object.
pub fn chunks_for(size: u64) -> u32 {
    u32::try_from(size.div_ceil(OUTPUT_CHUNK_BYTES as u64).max(1)).unwrap_or(u32::MAX)
}

/// The spool file of one run's output stream, in `spool_dir` (the outbox's [`SPOOL_DIR`]).
pub fn spool_file(spool_dir: &Path, exec: &ExecId, stream: OutputStream) -> PathBuf {
    spool_dir.join(format!("{exec}.{stream}"))
}

fn full_mut(result: &mut ExecResult, stream: OutputStream) -> Option<&mut FullOutput> {
    match stream {
        OutputStream::Stdout => result.stdout_full.as_mut(),
        OutputStream::Stderr => result.stderr_full.as_mut(),
    }
}

fn remove_quietly(path: &Path) {
    if let Err(err) = std::fs::remove_file(path)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %err, "cannot remove a spooled output");
    }
}

/// Why an output was not uploaded.
enum UploadFailed {
    /// Try again with the next drain (the broker is away, or refused fewer than [`MAX_UPLOAD_TRIES`] times).
    Retry(async_nats::Error),
    /// Publish the result without it: why.
    GiveUp(String),
}

/// Whose output an upload publishes: the subjects and message ids of its chunks.
#[derive(Clone, Copy)]
struct Run<'a> {
    result: &'a ResultId,
    pc: &'a PcId,
    exec: &'a ExecId,
    stream: OutputStream,
}

/// Builds a stand-in for a result whose outbox entry cannot be read back: (result id, what was wrong).
pub type Salvage = Box<dyn Fn(&str, &str) -> Option<ExecResult> + Send + Sync>;

/// One pending entry as the index knows it.
struct Pending {
    /// Bytes of the entry's file.
    size: u64,
    /// Bytes its spool files took when it was put (or found when the outbox opened); zero when it has none, so its
    /// spool files are looked for only when there are some.
    spooled: u64,
    /// The entry as written, for one this process wrote (the cap bounds these bytes with the rest); `None` for one
    /// found on disk at open, read back when it is drained.
    body: Option<bytes::Bytes>,
}

/// The exec id in an entry's file name `<20-digit millis>-<exec id>.<pc id>.json`.
fn exec_of_entry(name: &str) -> Option<&str> {
    name.get(21..)?.split('.').next()
}

pub struct Outbox {
    salvage: std::sync::OnceLock<Salvage>,
    dir: PathBuf,
    tmp: PathBuf,
    spool: PathBuf,
    /// Pending entries by file name: the name sorts oldest first (see `put`).
    index: std::sync::Mutex<BTreeMap<String, Pending>>,
    /// Failed uploads per output name (`FullOutput::object`), reset by a restart.
    upload_tries: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// When the broker last made the outbox give an output up.
    gave_up_at: std::sync::Mutex<Option<std::time::Instant>>,
    bytes: AtomicU64,
    max_bytes: u64,
    full: AtomicBool,
    wake: Notify,
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("cannot read the outbox")]
    Io(#[from] std::io::Error),
    #[error("cannot publish result `{result_id}`")]
    Publish {
        result_id: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot upload output `{object}`")]
    Upload {
        object: String,
        #[source]
        source: async_nats::Error,
    },
}

impl Outbox {
    pub fn open(dir: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        // A write cut short by a crash never got renamed into place; it was never acknowledged to anyone.
        for entry in std::fs::read_dir(&tmp)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let spool = dir.join(SPOOL_DIR);
        std::fs::create_dir_all(&spool)?;
        let mut outbox = Self {
            salvage: std::sync::OnceLock::new(),
            dir,
            tmp,
            spool,
            index: std::sync::Mutex::default(),
            upload_tries: std::sync::Mutex::default(),
            gave_up_at: std::sync::Mutex::default(),
            bytes: AtomicU64::new(0),
            max_bytes,
            full: AtomicBool::new(false),
            wake: Notify::new(),
        };
        let mut index = BTreeMap::new();
        for entry in std::fs::read_dir(&outbox.dir)?.flatten() {
            let Ok(name) = entry.file_name().into_string() else { continue };
            if name.ends_with(".json") {
                let size = entry.metadata().map(|m| m.len()).unwrap_or_default();
                index.insert(name, Pending { size, spooled: 0, body: None });
            }
        }
        let mut spooled = outbox.sweep_spool(&index)?;
        for (name, pending) in &mut index {
            // Counted once, with the oldest entry of the run, should two entries name it.
            pending.spooled = exec_of_entry(name).and_then(|exec| spooled.remove(exec)).unwrap_or_default();
        }
        let bytes: u64 = index.values().map(|p| p.size + p.spooled).sum();
        outbox.bytes.store(bytes, Ordering::Relaxed);
        outbox.full.store(bytes > max_bytes, Ordering::Relaxed);
        *outbox.index.get_mut().unwrap_or_else(|e| e.into_inner()) = index;
        Ok(outbox)
    }

    /// Deletes spool files no entry points at (a run that crashed, a spool whose result was acknowledged just
    /// before a crash) and returns the bytes the others take, per exec id. Only at open: later, no run in progress
    /// is an orphan, and a spool file is touched only with the result that has a full output.
    fn sweep_spool(&self, entries: &BTreeMap<String, Pending>) -> std::io::Result<HashMap<String, u64>> {
        let execs: std::collections::HashSet<&str> = entries.keys().filter_map(|name| exec_of_entry(name)).collect();
        let mut bytes = HashMap::new();
        for entry in std::fs::read_dir(&self.spool)?.flatten() {
            let name = entry.file_name();
            let exec = name.to_str().and_then(|n| n.split('.').next()).unwrap_or_default();
            if execs.contains(exec) {
                *bytes.entry(exec.to_owned()).or_default() += entry.metadata().map(|m| m.len()).unwrap_or_default();
            } else {
                tracing::info!(file = %entry.path().display(), "removing a spooled output no result points at");
                remove_quietly(&entry.path());
            }
        }
        Ok(bytes)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pending>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an entry just written to the index. One that replaced an entry of the same name on disk replaces it
    /// here too, and the bytes of the one replaced are given back.
    fn indexed(&self, name: String, pending: Pending) {
        let replaced = self.index().insert(name, pending);
        if let Some(old) = replaced {
            self.taken(old.size + old.spooled);
        }
    }

    /// The spool file of `exec`'s `stream`.
    pub fn spool_file(&self, exec: &ExecId, stream: OutputStream) -> PathBuf {
        spool_file(&self.spool, exec, stream)
    }

    /// Results written but not yet acknowledged by the broker.
    pub fn pending(&self) -> u64 {
        self.index().len() as u64
    }

    /// How to report a result whose entry turns out unreadable (the agent builds it from its run ledger).
    pub fn set_salvage(&self, salvage: Salvage) {
        let _ = self.salvage.set(salvage);
    }

    /// Bytes the pending results take.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Over the cap: new results are kept without their output.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Writes `result` durably (without its output when the outbox is over its cap), then wakes the publisher. Its
    /// spool files, if it has any, are on disk already; they count against the cap with it.
    pub async fn put(self: &Arc<Self>, result: &ExecResult) -> std::io::Result<()> {
        let mut result = result.clone();
        let mut spooled = 0;
        for stream in STREAMS {
            // A stream without a full output never had a spool file: the executor writes one only for a stream that
            // outgrew the inline part, and the result then says so.
            let path = spool_file(&self.spool, &result.exec_id, stream);
            let Some(full) = full_mut(&mut result, stream) else { continue };
            if full.unavailable.is_some() {
                remove_quietly(&path);
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(meta) if meta.len() == full.size => spooled += meta.len(),
                _ => {
                    full.unavailable = Some("the spooled output is missing or damaged".into());
                    remove_quietly(&path);
                }
            }
        }
        let mut body = serde_json::to_vec(&result).map_err(std::io::Error::other)?;
        // The room is reserved before the write, so results finishing together cannot all squeeze under the cap.
        let (max, len) = (self.max_bytes, body.len() as u64 + spooled);
        let reserved = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            held.checked_add(len).filter(|total| *total <= max)
        });
        let mut counted = len;
        if let Err(held) = reserved {
            let was_full = self.full.swap(true, Ordering::Relaxed);
            if !result.stdout.is_empty() || !result.stderr.is_empty() || spooled > 0 {
                let mut slim = result.clone();
                slim.stdout = String::new();
                slim.stderr = format!(
                    "output dropped: the agent's outbox is full ({held} bytes waiting for the broker, cap {max} bytes)"
                );
                slim.stdout_truncated = true;
                slim.stderr_truncated = true;
                for stream in STREAMS {
                    if let Some(full) = full_mut(&mut slim, stream)
                        && full.unavailable.is_none()
                    {
                        full.unavailable = Some("the agent's outbox was full".into());
                        remove_quietly(&self.spool_file(&slim.exec_id, stream));
                    }
                }
                body = serde_json::to_vec(&slim).map_err(std::io::Error::other)?;
                tracing::info!(result_id = %result.result_id, "result stored without its output: the outbox is full");
            }
            if !was_full {
                tracing::warn!(
                    bytes = held,
                    cap = max,
                    pending = self.pending(),
                    "outbox full: new results are kept without their output until the broker takes the backlog"
                );
            }
            // Kept whatever the cap says: what the run did is never dropped.
            counted = body.len() as u64;
            spooled = 0;
            self.bytes.fetch_add(counted, Ordering::Relaxed);
        }
        // Millisecond time first so a directory listing sorts oldest first; the result id makes it unique.
        let name = format!("{:020}-{}.json", result.finished_at.timestamp_millis().max(0), result.result_id);
        let body = bytes::Bytes::from(body);
        // The whole write in one blocking call: each hand-off to the blocking pool is a thread wake-up.
        let (this, written_name, written_body) = (Arc::clone(self), name.clone(), body.clone());
        let written = tokio::task::spawn_blocking(move || this.write_entry(&written_name, &written_body))
            .await
            .map_err(std::io::Error::other)
            .and_then(|written| written);
        if let Err(err) = written {
            let _ = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(counted)));
            return Err(err);
        }
        self.indexed(name, Pending { size: body.len() as u64, spooled, body: Some(body) });
        self.wake.notify_one();
        Ok(())
    }

    fn write_entry(&self, name: &str, body: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let tmp_path = self.tmp.join(name);
        let mut file = std::fs::File::create(&tmp_path)?;
        file.write_all(body)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp_path, self.dir.join(name))?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Whether a result with this id is waiting in the outbox.
    pub fn holds(&self, result_id: &kanade_shared::ResultId) -> bool {
        // Entries are named `<20-digit millis>-<result id>.json` (see `put`).
        let name = format!("{result_id}.json");
        self.index().keys().any(|entry| entry.get(21..) == Some(name.as_str()))
    }

    /// Wakes the publisher, for example after a reconnect.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes every pending result, oldest first, each after its spooled outputs are uploaded, deleting the entry
    /// and its spool files after the result's ack. Stops at the first publish that fails; the rest stay for the next
    /// try.
    pub async fn drain(&self, js: &jetstream::Context) -> Result<usize, DrainError> {
        let mut sent = 0;
        // What was pending when the drain began; a result put meanwhile wakes the publisher for the next one.
        let names: Vec<String> = self.index().keys().cloned().collect();
        for name in names {
            let Some((spooled, kept)) = self.index().get(&name).map(|p| (p.spooled, p.body.clone())) else {
                continue;
            };
            let path = self.dir.join(&name);
            let body = match kept {
                Some(body) => body,
                None => match tokio::fs::read(&path).await {
                    Ok(body) => bytes::Bytes::from(body),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        // Deleted behind the agent's back: nothing left to send.
                        if let Some(gone) = self.index().remove(&name) {
                            self.taken(gone.size + gone.spooled);
                        }
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                },
            };
            let mut result: ExecResult = match serde_json::from_slice(&body) {
                Ok(result) => result,
                Err(err) => {
                    self.quarantine(&name, &err.to_string()).await;
                    continue;
                }
            };
            // Whether the result to publish differs from the entry on disk.
            let mut rewritten = false;
            let (result_id, pc, exec) = (result.result_id.clone(), result.pc_id.clone(), result.exec_id.clone());
            for stream in STREAMS {
                let spool = self.spool_file(&exec, stream);
                let Some(full) = full_mut(&mut result, stream).filter(|full| full.unavailable.is_none()) else {
                    continue;
                };
                let run = Run { result: &result_id, pc: &pc, exec: &exec, stream };
                match self.upload(js, &spool, run, full).await {
                    // An entry an older agent wrote says no chunks (it meant `result_output`): it goes out saying how
                    // many there are now.
                    Ok(chunks) if chunks != full.chunks => {
                        full.chunks = chunks;
                        rewritten = true;
                    }
                    Ok(_) => {}
                    Err(UploadFailed::Retry(source)) => {
                        return Err(DrainError::Upload { object: full.object.clone(), source });
                    }
                    Err(UploadFailed::GiveUp(why)) => {
                        tracing::warn!(result_id = %result_id, object = %full.object, reason = %why, "full output given up; the result goes out without it");
                        full.unavailable = Some(why);
                        rewritten = true;
                    }
                }
            }
            // The entry on disk stays as it was: a crash before the ack uploads (or gives up) again.
            let payload =
                if rewritten { serde_json::to_vec(&result).map_err(std::io::Error::other)?.into() } else { body };
            let message = PublishMessage::build().payload(payload).message_id(result.result_id.as_str());
            let publish = async {
                js.send_publish(subject::result(&result.pc_id, &result.exec_id), message).await?.await?;
                Ok::<(), async_nats::Error>(())
            };
            if let Err(source) = publish.await {
                return Err(DrainError::Publish { result_id: result.result_id.to_string(), source });
            }
            // An unlink, unsynced (a crash that undoes it re-publishes, and the broker de-duplicates): done here
            // rather than handed to the blocking pool.
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err.into()),
            }
            for stream in STREAMS {
                let spool = self.spool_file(&result.exec_id, stream);
                if let Some(full) = full_mut(&mut result, stream) {
                    if spooled > 0 {
                        remove_quietly(&spool);
                    }
                    self.upload_tries.lock().unwrap_or_else(|e| e.into_inner()).remove(&full.object);
                }
            }
            if let Some(done) = self.index().remove(&name) {
                self.taken(done.size + done.spooled);
            }
            sent += 1;
        }
        Ok(sent)
    }

    /// Publishes one spool file to stream `OUTPUT` as chunks `0..n` of `run`'s subjects, each acknowledged, and
    /// returns `n`.
    ///
    /// Every try publishes every chunk. A try whose result did not get out may have stored them already, but an
    /// agent may not read `OUTPUT` to find out: its credential allows publishing on `output.<pc>.>` and no read of
    /// the stream (a batch direct get names its filter in the body, where the broker cannot check it, and a read by
    /// subject would bring each chunk's bytes back, costing what sending them does). Sending again is harmless:
    /// within the duplicate window the broker drops a chunk by its `Nats-Msg-Id`, and after it the new copy replaces
    /// the old (`max_msgs_per_subject` 1).
    async fn upload(
        &self,
        js: &jetstream::Context,
        spool: &Path,
        run: Run<'_>,
        full: &FullOutput,
    ) -> Result<u32, UploadFailed> {
        let unreadable =
            |err: std::io::Error| UploadFailed::GiveUp(format!("the spooled output cannot be read: {err}"));
        let mut file = tokio::fs::File::open(spool).await.map_err(unreadable)?;
        let refused = |err: async_nats::Error| {
            // Away from the broker nothing is refused yet: the next reconnect tries again, for as long as it takes.
            if js.client().connection_state() != async_nats::connection::State::Connected {
                return UploadFailed::Retry(err);
            }
            let mut gave_up_at = self.gave_up_at.lock().unwrap_or_else(|e| e.into_inner());
            let refusing = gave_up_at.is_some_and(|at| at.elapsed() < REFUSING_WINDOW);
            let mut tries = self.upload_tries.lock().unwrap_or_else(|e| e.into_inner());
            let count = tries.entry(full.object.clone()).or_default();
            *count += 1;
            if *count >= MAX_UPLOAD_TRIES || refusing {
                *gave_up_at = Some(std::time::Instant::now());
                UploadFailed::GiveUp(format!("the broker refused the output {count} time(s): {err}"))
            } else {
                UploadFailed::Retry(err)
            }
        };
        let mut acks = VecDeque::with_capacity(CHUNK_ACKS_IN_FLIGHT);
        let (mut sent, mut chunks) = (0u64, 0u32);
        loop {
            let mut chunk = Vec::with_capacity(OUTPUT_CHUNK_BYTES);
            (&mut file).take(OUTPUT_CHUNK_BYTES as u64).read_to_end(&mut chunk).await.map_err(unreadable)?;
            // The file ended on a chunk's edge; but an empty output is still one (empty) chunk.
            if chunk.is_empty() && chunks > 0 {
                break;
            }
            let last = chunk.len() < OUTPUT_CHUNK_BYTES;
            sent += chunk.len() as u64;
            if sent > full.size {
                return Err(UploadFailed::GiveUp(format!("the spooled output outgrew its {} bytes", full.size)));
            }
            let message = PublishMessage::build()
                .payload(chunk.into())
                .message_id(format!("{}.{}.{chunks}", run.result, run.stream));
            let subject = subject::output_chunk(run.pc, run.exec, run.stream, chunks);
            let ack = js.send_publish(subject, message).await.map_err(|err| refused(err.into()))?;
            acks.push_back(ack);
            if acks.len() >= CHUNK_ACKS_IN_FLIGHT
                && let Some(oldest) = acks.pop_front()
            {
                oldest.await.map_err(|err| refused(err.into()))?;
            }
            chunks += 1;
            if last {
                break;
            }
        }
        while let Some(ack) = acks.pop_front() {
            ack.await.map_err(|err| refused(err.into()))?;
        }
        if sent != full.size {
            return Err(UploadFailed::GiveUp(format!("the spooled output holds {sent} bytes, not its {}", full.size)));
        }
        Ok(chunks)
    }

    /// Moves the unreadable entry `name` aside so it can neither block the queue nor vanish without a trace.
    async fn quarantine(&self, name: &str, why: &str) {
        let path = self.dir.join(name);
        let target = path.with_extension("corrupt");
        tracing::error!(file = %path.display(), reason = why, "outbox entry is corrupt; moved aside and skipped");
        if let Err(err) = tokio::fs::rename(&path, &target).await {
            tracing::error!(file = %path.display(), error = %err, "cannot move corrupt outbox entry");
            return;
        }
        let Some(Pending { size, spooled, .. }) = self.index().remove(name) else { return };
        // The file name still says whose result it was: report the run as `result_lost` rather than not at all.
        let Some(result_id) = name.get(21..).and_then(|n| n.strip_suffix(".json")) else {
            self.taken(size + spooled);
            tracing::error!(file = %name, "the corrupt entry's name says no result id; nothing can be reported");
            return;
        };
        // Its spooled outputs cannot be reported without it.
        if spooled > 0
            && let Some(exec) = result_id.split('.').next().and_then(|e| ExecId::new(e).ok())
        {
            for stream in STREAMS {
                remove_quietly(&self.spool_file(&exec, stream));
            }
        }
        self.taken(size + spooled);
        let Some(lost) = self.salvage.get().and_then(|salvage| salvage(result_id, why)) else {
            tracing::error!(result_id, "the run ledger does not know this run; its lost result cannot be reported");
            return;
        };
        let name = format!("{:020}-{}.json", lost.finished_at.timestamp_millis().max(0), lost.result_id);
        let stored = serde_json::to_vec(&lost)
            .map_err(std::io::Error::other)
            .and_then(|body| self.write_entry(&name, &body).map(|()| bytes::Bytes::from(body)));
        match stored {
            Ok(body) => {
                let len = body.len() as u64;
                self.bytes.fetch_add(len, Ordering::Relaxed);
                self.indexed(name, Pending { size: len, spooled: 0, body: Some(body) });
                self.wake.notify_one();
                tracing::warn!(result_id, "the run is reported failed with reason result_lost");
            }
            Err(err) => tracing::error!(result_id, error = %err, "cannot write the result_lost report"),
        }
    }

    /// One entry left the outbox (acknowledged, or moved aside).
    fn taken(&self, size: u64) {
        let before = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(size)));
        let left = before.unwrap_or_default().saturating_sub(size);
        if left <= self.max_bytes && self.full.swap(false, Ordering::Relaxed) {
            tracing::info!(bytes = left, cap = self.max_bytes, "outbox below its cap again: results keep their output");
        }
    }

    /// Drains whenever woken, retrying failures with backoff, until `shutdown`; then one last bounded drain.
    pub async fn run_publisher(self: Arc<Self>, js: jetstream::Context, shutdown: CancellationToken) {
        let mut backoff = RETRY_MIN;
        loop {
            let wait = match self.drain(&js).await {
                Ok(sent) => {
                    if sent > 0 {
                        tracing::debug!(sent, "outbox drained");
                    }
                    backoff = RETRY_MIN;
                    None
                }
                Err(err) => {
                    tracing::warn!(error = %err, source = ?std::error::Error::source(&err), pending = self.pending(), retry_in = ?backoff, "outbox drain failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    Some(wait)
                }
            };
            let retry = async {
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = retry => {}
                () = shutdown.cancelled() => break,
            }
        }
        if self.pending() > 0 {
            match tokio::time::timeout(SHUTDOWN_DRAIN, self.drain(&js)).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, pending = self.pending(), "outbox not empty at shutdown"),
                Err(_) => {
                    tracing::warn!(pending = self.pending(), "outbox not empty at shutdown; it drains next start")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kanade_shared::wire::{Command, ResultStatus, Shell};
    use kanade_shared::{ExecId, JobId, PcId};

    use super::*;

    fn result(stdout_bytes: usize) -> ExecResult {
        let exec = ExecId::generate();
        let command = Command {
            job_id: JobId::adhoc(&exec),
            exec_id: exec,
            version: String::new(),
            shell: Shell::Sh,
            script: String::new(),
            timeout: Duration::from_secs(1),
            issued_at: chrono::Utc::now(),
            deadline: None,
            jitter: None,
            run_as: Default::default(),
            cwd: None,
            consent: None,
        };
        let mut result =
            ExecResult::not_started(&command, &PcId::new("pc").unwrap(), ResultStatus::Ok, None, chrono::Utc::now());
        result.exit_code = Some(0);
        result.stdout = "x".repeat(stdout_bytes);
        result
    }

    fn stored(dir: &Path) -> Vec<ExecResult> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
    }

    #[tokio::test]
    async fn over_its_cap_the_outbox_keeps_results_without_their_output_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Outbox::open(dir.path().to_owned(), 64 * 1024).unwrap());
        let (first, second, third) = (result(40_000), result(40_000), result(30_000));
        for r in [&first, &second, &third] {
            outbox.put(r).await.unwrap();
        }
        assert!(outbox.is_full());
        assert_eq!(outbox.pending(), 3);
        let kept = stored(dir.path());
        assert_eq!(kept.len(), 3, "no result is dropped");
        assert_eq!(kept[0].stdout.len(), 40_000);
        for slim in &kept[1..] {
            assert!(slim.stdout.is_empty() && slim.stdout_truncated && slim.stderr_truncated, "{slim:?}");
            assert!(slim.stderr.starts_with("output dropped: the agent's outbox is full"), "{}", slim.stderr);
            assert_eq!((slim.status, slim.exit_code), (ResultStatus::Ok, Some(0)), "what the run did is kept");
        }
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(outbox.bytes(), on_disk);
        // Reopened (the agent restarted), it knows its size and state from the disk.
        let reopened = Outbox::open(dir.path().to_owned(), 64 * 1024).unwrap();
        assert_eq!((reopened.pending(), reopened.bytes(), reopened.is_full()), (3, on_disk, false));
        let small = Outbox::open(dir.path().to_owned(), 40_000).unwrap();
        assert!(small.is_full());
    }

    /// A result with a spooled stdout as the pipeline hands it over: the spool file on disk, the result pointing at it.
    fn spooled(outbox: &Outbox, bytes: usize) -> ExecResult {
        let mut result = result(1000);
        let path = outbox.spool_file(&result.exec_id, OutputStream::Stdout);
        std::fs::write(&path, vec![b's'; bytes]).unwrap();
        result.stdout_truncated = true;
        result.stdout_full = Some(FullOutput {
            object: kanade_shared::resources::result_output_object(&result.result_id, OutputStream::Stdout),
            size: bytes as u64,
            sha256: "00".repeat(32),
            capped: false,
            unavailable: None,
            chunks: chunks_for(bytes as u64),
        });
        result
    }

    #[tokio::test]
    async fn spooled_outputs_count_against_the_cap_and_over_it_are_dropped_and_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Outbox::open(dir.path().to_owned(), 200_000).unwrap());
        let (first, second) = (spooled(&outbox, 150_000), spooled(&outbox, 150_000));
        outbox.put(&first).await.unwrap();
        assert!(!outbox.is_full());
        assert!(outbox.bytes() > 150_000, "the spool file counts: {}", outbox.bytes());
        outbox.put(&second).await.unwrap();
        assert!(outbox.is_full());
        assert!(outbox.spool_file(&first.exec_id, OutputStream::Stdout).exists());
        assert!(!outbox.spool_file(&second.exec_id, OutputStream::Stdout).exists(), "over the cap it is deleted");
        let kept = stored(dir.path());
        assert_eq!(kept[0].stdout_full, first.stdout_full);
        let slim = kept.iter().find(|r| r.result_id == second.result_id).unwrap();
        assert_eq!(slim.stdout_full.as_ref().unwrap().unavailable.as_deref(), Some("the agent's outbox was full"));
        assert_eq!(slim.status, ResultStatus::Ok);

        // Reopened, it counts the spool files again and deletes the ones no entry points at.
        let orphan = outbox.spool_file(&ExecId::generate(), OutputStream::Stderr);
        std::fs::write(&orphan, b"left by a crash").unwrap();
        let bytes = outbox.bytes();
        drop(outbox);
        let reopened = Outbox::open(dir.path().to_owned(), 200_000).unwrap();
        assert_eq!(reopened.bytes(), bytes);
        assert!(!orphan.exists());
    }

    #[test]
    fn an_output_is_published_as_whole_chunks_and_never_as_none() {
        let chunk = OUTPUT_CHUNK_BYTES as u64;
        assert_eq!(chunks_for(0), 1, "0 would mean an older agent's object");
        assert_eq!((chunks_for(1), chunks_for(chunk), chunks_for(chunk + 1)), (1, 1, 2));
        assert_eq!(chunks_for(16 * 1024 * 1024), 128);
    }

    #[tokio::test]
    async fn a_result_whose_spool_file_vanished_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Outbox::open(dir.path().to_owned(), 200_000).unwrap());
        let result = spooled(&outbox, 10_000);
        std::fs::remove_file(outbox.spool_file(&result.exec_id, OutputStream::Stdout)).unwrap();
        outbox.put(&result).await.unwrap();
        let kept = stored(dir.path());
        let why = kept[0].stdout_full.as_ref().unwrap().unavailable.clone().unwrap();
        assert!(why.contains("missing"), "{why}");
    }
}
