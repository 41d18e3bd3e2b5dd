//! Catch-up on (re)connect: commands published while this agent was away are read back from `EXEC` with batch
//! direct get (`$JS.API.DIRECT.GET.EXEC`, `next_by_subj` + `batch`), one request per filter — all, each group,
//! this pc. Direct get leaves no state on the server, unlike a consumer per agent (DESIGN.md measured both).
//! De-duplication is the run ledger's: a command seen live and again here still runs once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;
use kanade_shared::resources::STREAM_EXEC;

/// Messages asked for per request.
const BATCH: u64 = 256;
/// How long to wait for the next message of a batch before giving up on the request.
const PATIENCE: Duration = Duration::from_secs(5);
/// Stop after this many messages per filter in one catch-up: a bounded amount of work however large `EXEC` is.
const MAX_PER_FILTER: usize = 10_000;

/// A message read back from a stream.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub seq: u64,
    pub subject: String,
    pub payload: Bytes,
    pub headers: Option<HeaderMap>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error("cannot ask the broker for missed commands")]
    Request(#[source] async_nats::Error),
    #[error("the broker did not answer the catch-up request within {PATIENCE:?}")]
    TimedOut,
    #[error("the broker refused the catch-up request: {0}")]
    Refused(String),
}

fn header_u64(headers: Option<&HeaderMap>, name: &str) -> Option<u64> {
    headers?.get(name)?.as_str().parse().ok()
}

/// What one filter's catch-up read.
#[derive(Debug, Default)]
pub struct Read {
    pub commands: Vec<Fetched>,
    /// The stream's last sequence when the read ended: everything up to it on this filter has been read. `None`
    /// when the broker did not say.
    pub complete_to: Option<u64>,
}

/// Every message of `EXEC` on `filter` from stream sequence `from` on, oldest first.
pub async fn fetch(client: &Client, filter: &str, from: u64) -> Result<Read, CatchUpError> {
    fetch_from(client, STREAM_EXEC, filter, from).await
}

/// Every message of `stream` on `filter` from sequence `from` on, oldest first (batch direct get).
pub async fn fetch_from(client: &Client, stream: &str, filter: &str, from: u64) -> Result<Read, CatchUpError> {
    let api = format!("$JS.API.DIRECT.GET.{stream}");
    let mut out = Read::default();
    let mut next = from.max(1);
    loop {
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| CatchUpError::Request(e.into()))?;
        let request = serde_json::json!({ "seq": next, "next_by_subj": filter, "batch": BATCH });
        client
            .publish_with_reply(api.clone(), inbox, request.to_string().into())
            .await
            .map_err(|e| CatchUpError::Request(e.into()))?;
        let mut received = 0u64;
        let mut pending_after = None;
        loop {
            let message = match tokio::time::timeout(PATIENCE, replies.next()).await {
                Ok(Some(message)) => message,
                Ok(None) | Err(_) => return Err(CatchUpError::TimedOut),
            };
            match message.status.map(|s| s.as_u16()) {
                None | Some(200) => {
                    let headers = message.headers.as_ref();
                    let subject = headers.and_then(|h| h.get("Nats-Subject")).map(|v| v.as_str().to_owned());
                    let seq = header_u64(headers, "Nats-Sequence");
                    if let (Some(subject), Some(seq)) = (subject, seq) {
                        pending_after = header_u64(message.headers.as_ref(), "Nats-Num-Pending");
                        next = seq + 1;
                        received += 1;
                        out.commands.push(Fetched { seq, subject, payload: message.payload, headers: message.headers });
                    }
                }
                // End of batch.
                Some(204) => {
                    out.complete_to = header_u64(message.headers.as_ref(), "Nats-Last-Sequence");
                    break;
                }
                // Nothing (more) on this filter.
                Some(404) => {
                    out.complete_to = header_u64(message.headers.as_ref(), "Nats-Last-Sequence");
                    return Ok(out);
                }
                Some(code) => {
                    return Err(CatchUpError::Refused(format!("{code} {}", message.description.unwrap_or_default())));
                }
            }
        }
        let more = match pending_after {
            Some(pending) => pending > 0,
            None => received == BATCH,
        };
        if !more || received == 0 {
            return Ok(out);
        }
        if out.commands.len() >= MAX_PER_FILTER {
            // Cut short: only what was read counts as done.
            out.complete_to = Some(next - 1);
            return Ok(out);
        }
    }
}

/// Where the agent remembers how far it has caught up, so the next catch-up reads only what is newer. Losing it
/// costs a longer read, never a second run (the ledger de-duplicates).
pub struct Position {
    path: PathBuf,
}

impl Position {
    pub fn new(data_dir: &Path) -> Self {
        Self { path: data_dir.join("catchup.seq") }
    }

    pub fn load(&self) -> u64 {
        std::fs::read_to_string(&self.path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }

    /// Forgets the position: the next catch-up reads from the start.
    pub fn reset(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    pub fn save(&self, seq: u64) {
        if let Err(err) = std::fs::write(&self.path, seq.to_string()) {
            tracing::warn!(file = %self.path.display(), error = %err, "cannot record the catch-up position");
        }
    }
}
