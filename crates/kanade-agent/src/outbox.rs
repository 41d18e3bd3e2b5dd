//! The crash-safe outbox (DESIGN.md guarantee 2): every result is written to disk before it is published, published
//! to `RESULTS` with `Nats-Msg-Id` = result id, and deleted only after the broker's ack. It drains whenever a result
//! is added and on every reconnect, oldest first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use kanade_shared::subject;
use kanade_shared::wire::ExecResult;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ledger::sync_dir;

const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long the agent keeps trying to empty the outbox when it shuts down; the rest goes out at the next start.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);

pub struct Outbox {
    dir: PathBuf,
    tmp: PathBuf,
    pending: AtomicU64,
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
}

impl Outbox {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        // A write cut short by a crash never got renamed into place; it was never acknowledged to anyone.
        for entry in std::fs::read_dir(&tmp)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let outbox = Self { dir, tmp, pending: AtomicU64::new(0), wake: Notify::new() };
        let count = outbox.entries()?.len();
        outbox.pending.store(count as u64, Ordering::Relaxed);
        Ok(outbox)
    }

    /// Results written but not yet acknowledged by the broker.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Writes `result` durably, then wakes the publisher.
    pub async fn put(self: &Arc<Self>, result: &ExecResult) -> std::io::Result<()> {
        let body = serde_json::to_vec(result).map_err(std::io::Error::other)?;
        // Millisecond time first so a directory listing sorts oldest first; the result id makes it unique.
        let name = format!("{:020}-{}.json", result.finished_at.timestamp_millis().max(0), result.result_id);
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.write_entry(&name, &body)).await.map_err(std::io::Error::other)??;
        self.pending.fetch_add(1, Ordering::Relaxed);
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
        self.entries().is_ok_and(|entries| {
            entries.iter().any(|p| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.get(21..)) == Some(&name))
        })
    }

    /// Wakes the publisher, for example after a reconnect.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn entries(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
            .collect();
        entries.sort();
        Ok(entries)
    }

    /// Publishes every pending result, oldest first, deleting each after its ack. Stops at the first publish that
    /// fails; the rest stay for the next try.
    pub async fn drain(&self, js: &jetstream::Context) -> Result<usize, DrainError> {
        let mut sent = 0;
        for path in self.entries()? {
            let body = match tokio::fs::read(&path).await {
                Ok(body) => body,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err.into()),
            };
            let result: ExecResult = match serde_json::from_slice(&body) {
                Ok(result) => result,
                Err(err) => {
                    self.quarantine(&path, &err.to_string()).await;
                    continue;
                }
            };
            let message = PublishMessage::build().payload(body.into()).message_id(result.result_id.as_str());
            let publish = async {
                js.send_publish(subject::result(&result.pc_id, &result.exec_id), message).await?.await?;
                Ok::<(), async_nats::Error>(())
            };
            if let Err(source) = publish.await {
                return Err(DrainError::Publish { result_id: result.result_id.to_string(), source });
            }
            tokio::fs::remove_file(&path).await?;
            self.pending.fetch_sub(1, Ordering::Relaxed);
            sent += 1;
        }
        Ok(sent)
    }

    /// Moves an unreadable entry aside so it can neither block the queue nor vanish without a trace.
    async fn quarantine(&self, path: &Path, why: &str) {
        let target = path.with_extension("corrupt");
        tracing::error!(file = %path.display(), reason = why, "outbox entry is corrupt; moved aside and skipped");
        if let Err(err) = tokio::fs::rename(path, &target).await {
            tracing::error!(file = %path.display(), error = %err, "cannot move corrupt outbox entry");
        } else {
            self.pending.fetch_sub(1, Ordering::Relaxed);
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
