//! Catch-up on (re)connect: commands published while this agent was away are read back from `EXEC` with batch
//! direct get (`$JS.API.DIRECT.GET.EXEC`, `next_by_subj` + `batch`), one request per filter — all, each group,
//! this pc. Direct get leaves no state on the server, unlike a consumer per agent (DESIGN.md measured both).
//! De-duplication is the run ledger's: a command seen live and again here still runs once.
//!
//! [`CatchUp::read_back`] is the whole read after a (re)connect: a jittered wait (so a fleet that reconnects
//! together does not read together), the job state reloaded first (so what is read back is judged against the
//! current state), each filter read with retry and backoff, and everything merged oldest first. The position moves
//! only once what was read has been handed on ([`CatchUp::handed_on`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;
use kanade_shared::resources::STREAM_EXEC;
use tokio_util::sync::CancellationToken;

use crate::jobstate::JobStates;

/// Messages asked for per request.
const BATCH: u64 = 256;
/// How long to wait for the next message of a batch before giving up on the request.
const PATIENCE: Duration = Duration::from_secs(5);
/// Stop after this many messages per filter in one catch-up: a bounded amount of work however large `EXEC` is.
const MAX_PER_FILTER: usize = 10_000;
/// How a failed filter read is tried again: never given up while the connection lasts (a reconnect starts a
/// fresh catch-up and cancels this one), since a command published while the agent was away reaches it by no
/// other path. Giving up after ~30 s, as an earlier agent did, lost commands for a whole fleet whose catch-ups
/// kept timing out against a broker swamped by a reconnect storm.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// The first wait; it doubles up to `max`.
    pub first: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self { first: Duration::from_millis(500), max: Duration::from_secs(30) }
    }
}

impl Retry {
    /// The wait after `wait`: doubled, at most `max`.
    fn next(self, wait: Duration) -> Duration {
        (wait * 2).min(self.max)
    }

    /// `wait` spread over its upper half, so agents that failed together do not all ask again together.
    fn jittered(wait: Duration) -> Duration {
        wait.mul_f64(rand::random_range(0.5..=1.0))
    }
}

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

/// What one catch-up read on all filters, oldest first.
#[derive(Debug, Default)]
pub struct ReadBack {
    pub commands: Vec<Fetched>,
    /// How far every filter was read to: the position once these commands are handed on. `None` when a filter's
    /// end was not known (the position then stays).
    complete_to: Option<u64>,
}

/// Merges what each filter read: one list in stream order, complete only as far as the least complete filter.
pub fn merge(reads: Vec<Read>) -> ReadBack {
    let mut complete_to = Some(u64::MAX);
    let mut commands = Vec::new();
    for read in reads {
        complete_to = complete_to.zip(read.complete_to).map(|(a, b)| a.min(b));
        commands.extend(read.commands);
    }
    commands.sort_by_key(|f| f.seq);
    ReadBack { commands, complete_to: complete_to.filter(|s| *s != u64::MAX) }
}

/// One agent's catch-up: its filters, where it got to, and how long it may wait before reading.
pub struct CatchUp {
    filters: Vec<String>,
    position: Position,
    jitter: Duration,
    retry: Retry,
}

impl CatchUp {
    pub fn new(filters: Vec<String>, position: Position, jitter: Duration) -> Self {
        Self { filters, position, jitter, retry: Retry::default() }
    }

    /// The same with its own retry timing (tests).
    pub fn with_retry(self, retry: Retry) -> Self {
        Self { retry, ..self }
    }

    /// The subjects the agent takes commands on: all, its groups, itself.
    pub fn filters(&self) -> &[String] {
        &self.filters
    }

    /// Reads back the commands published since the last complete catch-up, retrying each filter until it is read.
    /// `job_state_read` is called once the job state is reloaded (the agent starts its config reload there, after
    /// the same jitter). `None` when cut short by `shutdown` (a stop, or a reconnect that starts a fresh catch-up):
    /// the position only moves at the end and the ledger keeps what was already handed on from running twice.
    pub async fn read_back(
        &self,
        client: &Client,
        jobs: &JobStates,
        shutdown: &CancellationToken,
        job_state_read: impl FnOnce(),
    ) -> Option<ReadBack> {
        let jitter = self.jitter.mul_f64(rand::random_range(0.0..=1.0));
        tokio::select! {
            () = tokio::time::sleep(jitter) => {}
            () = shutdown.cancelled() => return None,
        }
        if let Err(err) = jobs.reload(client).await {
            tracing::warn!(error = %err, "cannot re-read job state; live updates still apply");
        }
        job_state_read();
        let from = self.position.load() + 1;
        let mut reads = Vec::with_capacity(self.filters.len());
        for filter in &self.filters {
            let mut backoff = self.retry.first;
            let read = loop {
                match fetch(client, filter, from).await {
                    Ok(read) => break read,
                    Err(err) => {
                        let wait = Retry::jittered(backoff);
                        tracing::warn!(filter, error = %err, retry_in = ?wait, "catch-up failed; trying again");
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = shutdown.cancelled() => return None,
                        }
                        backoff = self.retry.next(backoff);
                    }
                }
            };
            reads.push(read);
        }
        let read = merge(reads);
        if !read.commands.is_empty() {
            tracing::info!(commands = read.commands.len(), from, "caught up on commands published while away");
        }
        Some(read)
    }

    /// Everything `read` returned has been handed to the pipeline (claimed or about to be): the next catch-up
    /// starts after it.
    pub fn handed_on(&self, read: &ReadBack) {
        if let Some(seq) = read.complete_to {
            self.position.save(seq);
        }
    }
}

/// Where the agent remembers how far it has caught up, so the next catch-up reads only what is newer. Losing it
/// costs a longer read, never a second run (the ledger de-duplicates).
#[derive(Debug, Clone)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(seq: u64) -> Fetched {
        Fetched { seq, subject: format!("commands.all.j{seq}"), payload: Bytes::new(), headers: None }
    }

    #[test]
    fn a_read_back_is_in_stream_order_and_complete_as_far_as_its_least_complete_filter() {
        let all = Read { commands: vec![fetched(2), fetched(9)], complete_to: Some(12) };
        let own = Read { commands: vec![fetched(5)], complete_to: Some(10) };
        let read = merge(vec![all, own]);
        assert_eq!(read.commands.iter().map(|f| f.seq).collect::<Vec<_>>(), [2, 5, 9]);
        assert_eq!(read.complete_to, Some(10));

        let unknown = Read { commands: vec![fetched(3)], complete_to: None };
        let read = merge(vec![Read { commands: vec![], complete_to: Some(4) }, unknown]);
        assert_eq!(read.complete_to, None, "a filter whose end is not known keeps the position where it was");
        assert_eq!(merge(Vec::new()).complete_to, None, "nothing read, nothing to record");
    }

    #[tokio::test]
    async fn a_catch_up_that_keeps_failing_keeps_trying_until_the_broker_answers() {
        use kanade_shared::subject::{self, Target};
        let nats = kanade_testkit::NatsServer::start();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        // Far more tries than the old agent's give-up allowed (it stopped once the wait reached its maximum).
        let retry = Retry { first: Duration::from_millis(10), max: Duration::from_millis(40) };
        let catch_up =
            CatchUp::new(vec![subject::commands_for(&Target::All)], Position::new(tmp.path()), Duration::ZERO)
                .with_retry(retry);
        let shutdown = CancellationToken::new();
        let jobs = JobStates::default();
        let reading = catch_up.read_back(&client, &jobs, &shutdown, || {});
        tokio::pin!(reading);
        // No streams yet: every read fails for a good while.
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), &mut reading).await.is_err(),
            "gave up or read nothing"
        );
        let js = async_nats::jetstream::new(client.clone());
        kanade_ops::jetstream::setup(&js, 1).await.unwrap();
        js.publish("commands.all.job-1", "missed".into()).await.unwrap().await.unwrap();
        let read =
            tokio::time::timeout(Duration::from_secs(20), reading).await.expect("caught up").expect("not cut short");
        assert_eq!(read.commands.iter().map(|c| c.payload.as_ref()).collect::<Vec<_>>(), [b"missed".as_slice()]);
    }

    #[tokio::test]
    async fn a_catch_up_cut_short_returns_nothing() {
        let nats = kanade_testkit::NatsServer::start();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let catch_up = CatchUp::new(vec!["commands.all.>".into()], Position::new(tmp.path()), Duration::ZERO)
            .with_retry(Retry { first: Duration::from_millis(10), max: Duration::from_millis(20) });
        let shutdown = CancellationToken::new();
        let jobs = JobStates::default();
        let reading = catch_up.read_back(&client, &jobs, &shutdown, || {});
        tokio::pin!(reading);
        assert!(tokio::time::timeout(Duration::from_millis(300), &mut reading).await.is_err());
        shutdown.cancel();
        assert!(tokio::time::timeout(Duration::from_secs(5), reading).await.unwrap().is_none());
    }

    #[test]
    fn retry_waits_double_up_to_their_maximum_and_are_spread() {
        let retry = Retry::default();
        assert_eq!(retry.next(Duration::from_millis(500)), Duration::from_secs(1));
        assert_eq!(retry.next(Duration::from_secs(20)), Duration::from_secs(30));
        assert_eq!(retry.next(Duration::from_secs(30)), Duration::from_secs(30));
        for _ in 0..100 {
            let wait = Retry::jittered(Duration::from_secs(10));
            assert!(wait >= Duration::from_secs(5) && wait <= Duration::from_secs(10));
        }
    }

    #[test]
    fn the_position_moves_only_when_handed_on() {
        let tmp = tempfile::tempdir().unwrap();
        let catch_up = CatchUp::new(Vec::new(), Position::new(tmp.path()), Duration::ZERO);
        assert_eq!(catch_up.position.load(), 0);
        catch_up.handed_on(&merge(vec![Read { commands: vec![fetched(7)], complete_to: Some(8) }]));
        assert_eq!(catch_up.position.load(), 8);
        catch_up.handed_on(&merge(vec![Read { commands: vec![], complete_to: None }]));
        assert_eq!(catch_up.position.load(), 8);
        catch_up.position.reset();
        assert_eq!(catch_up.position.load(), 0);
    }
}
