//! Catch-up on (re)connect: commands published while this agent was away are read back from `EXEC` with batch
//! direct get (`$JS.API.DIRECT.GET.EXEC`, `next_by_subj` + `batch`), one request per filter — all, each group,
//! this pc. Direct get leaves no state on the server, unlike a consumer per agent (DESIGN.md measured both).
//! De-duplication is the run ledger's: a command seen live and again here still runs once.
//!
//! [`CatchUp::read_back`] is the whole read after a (re)connect: a jittered wait (so a fleet that reconnects
//! together does not read together), the job state reloaded first (so what is read back is judged against the
//! current state), each filter read with retry and backoff, and everything merged oldest first.
//!
//! Each filter keeps its own position: the stream sequence its last complete read reached, in `catchup.json` in the
//! data dir. A filter with none — a group the agent joined since — is read from the start of the stream, so a
//! standing command published to a group before this PC joined it still reaches the PC (once-per-PC schedules rely
//! on it); the ledger is what makes reading from the start safe, and one catch-up still reads at most
//! `MAX_PER_FILTER` messages per filter. A filter's position moves only once what was read has been handed on
//! ([`CatchUp::handed_on`]); a filter the agent no longer has is forgotten. An older agent's single position
//! (`catchup.seq`) is taken over for every filter the agent has, a group it has just joined included.
//!
//! The two direct gets are here too, for every read of the broker an agent makes: [`fetch_batch`] (by sequence and
//! a filter in the request body, on streams every agent may read whole: `EXEC`, the job-state buckets, the chunks of
//! agent releases) and [`last_for_subject`] (the last message on one subject named in the API subject, which the
//! broker's permissions can limit to the agent's own: its `agent_config` keys, its inventory, a release's info).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;
use kanade_shared::resources::STREAM_EXEC;
use kanade_shared::subject;
use tokio_util::sync::CancellationToken;

use crate::jobstate::JobStates;
use crate::ledger::sync_dir;

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
    #[error("cannot ask the broker for stored messages")]
    Request(#[source] async_nats::Error),
    #[error("the broker did not answer a direct get within {PATIENCE:?}")]
    TimedOut,
    #[error("the broker refused a direct get: {0}")]
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
    let mut out = Read::default();
    let mut next = from.max(1);
    loop {
        let batch = fetch_batch(client, stream, filter, next, BATCH).await?;
        out.complete_to = batch.last_seq;
        let received = batch.messages.len() as u64;
        if let Some(last) = batch.messages.last() {
            next = last.seq + 1;
        }
        out.commands.extend(batch.messages);
        if batch.nothing_more {
            return Ok(out);
        }
        let more = match batch.pending {
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

/// What one batch direct get answered.
#[derive(Debug, Default)]
pub struct Batch {
    /// The messages, oldest first.
    pub messages: Vec<Fetched>,
    /// How many more messages on the filter follow the last one (`Nats-Num-Pending`), when the broker said.
    pub pending: Option<u64>,
    /// The stream's last sequence at the end of the batch (`Nats-Last-Sequence`), when the broker said.
    pub last_seq: Option<u64>,
    /// The broker answered that nothing (more) is stored on the filter from the sequence asked for.
    pub nothing_more: bool,
}

/// One batch direct get (`$JS.API.DIRECT.GET.<stream>`, `next_by_subj` + `batch`): up to `batch` messages of
/// `stream` on `filter` from sequence `from` on. The catch-up reads `EXEC` with it, and self-update an agent
/// release's chunks.
pub async fn fetch_batch(
    client: &Client,
    stream: &str,
    filter: &str,
    from: u64,
    batch: u64,
) -> Result<Batch, CatchUpError> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| CatchUpError::Request(e.into()))?;
    let request = serde_json::json!({ "seq": from.max(1), "next_by_subj": filter, "batch": batch.max(1) });
    client
        .publish_with_reply(subject::direct_get(stream), inbox, request.to_string().into())
        .await
        .map_err(|e| CatchUpError::Request(e.into()))?;
    let mut out = Batch::default();
    loop {
        let message = match tokio::time::timeout(PATIENCE, replies.next()).await {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => return Err(CatchUpError::TimedOut),
        };
        match message.status.map(|s| s.as_u16()) {
            None | Some(200) => {
                if let Some(fetched) = stored(message) {
                    out.pending = header_u64(fetched.headers.as_ref(), "Nats-Num-Pending");
                    out.messages.push(fetched);
                }
            }
            // End of batch.
            Some(204) => {
                out.last_seq = header_u64(message.headers.as_ref(), "Nats-Last-Sequence");
                return Ok(out);
            }
            // Nothing (more) on this filter.
            Some(404) => {
                out.last_seq = header_u64(message.headers.as_ref(), "Nats-Last-Sequence");
                out.nothing_more = true;
                return Ok(out);
            }
            Some(code) => {
                return Err(CatchUpError::Refused(format!("{code} {}", message.description.unwrap_or_default())));
            }
        }
    }
}

/// A direct get's answer as the message it returns: `None` without the subject and sequence headers every
/// stored message comes with.
fn stored(message: async_nats::Message) -> Option<Fetched> {
    let headers = message.headers.as_ref();
    let subject = headers.and_then(|h| h.get("Nats-Subject")).map(|v| v.as_str().to_owned())?;
    let seq = header_u64(headers, "Nats-Sequence")?;
    Some(Fetched { seq, subject, payload: message.payload, headers: message.headers })
}

/// The last message of `stream` stored on `on` (`$JS.API.DIRECT.GET.<stream>.<on>`, no request body); `None` when
/// there is none. The subject is in the API subject, so the broker's permissions decide which subjects an agent may
/// read this way (its own inventory and config keys), where the body of a batch direct get is invisible to them.
pub async fn last_for_subject(client: &Client, stream: &str, on: &str) -> Result<Option<Fetched>, CatchUpError> {
    let request = client.request(subject::direct_get_last(stream, on), Bytes::new());
    let message = match tokio::time::timeout(PATIENCE, request).await {
        Ok(Ok(message)) => message,
        Ok(Err(err)) if err.kind() == async_nats::client::RequestErrorKind::TimedOut => {
            return Err(CatchUpError::TimedOut);
        }
        Ok(Err(err)) => return Err(CatchUpError::Request(err.into())),
        Err(_) => return Err(CatchUpError::TimedOut),
    };
    match message.status.map(|s| s.as_u16()) {
        None | Some(200) => stored(message)
            .map(Some)
            .ok_or_else(|| CatchUpError::Refused("a direct get answer without its subject and sequence".into())),
        Some(404) => Ok(None),
        Some(code) => Err(CatchUpError::Refused(format!("{code} {}", message.description.unwrap_or_default()))),
    }
}

/// What one catch-up read on all filters, oldest first.
#[derive(Debug, Default)]
pub struct ReadBack {
    pub commands: Vec<Fetched>,
    /// How far each filter was read to: its position once these commands are handed on. `None` when the filter's
    /// end was not known (its position then stays).
    reached: Vec<(String, Option<u64>)>,
}

/// Merges what each filter read: one list in stream order, and how far each filter got.
pub fn merge(reads: Vec<(String, Read)>) -> ReadBack {
    let mut commands = Vec::new();
    let mut reached = Vec::with_capacity(reads.len());
    for (filter, read) in reads {
        commands.extend(read.commands);
        reached.push((filter, read.complete_to));
    }
    commands.sort_by_key(|f| f.seq);
    ReadBack { commands, reached }
}

/// One agent's catch-up: its filters, where it got to on each, and how long it may wait before reading.
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

    /// Reads back the commands published since each filter's last complete catch-up (from the start of the stream
    /// for a filter never read), retrying each filter until it is read. `job_state_read` is called once the job
    /// state is reloaded (the agent starts its config reload there, after the same jitter). `None` when cut short
    /// by `shutdown` (a stop, or a reconnect that starts a fresh catch-up): the positions only move at the end and
    /// the ledger keeps what was already handed on from running twice.
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
        let positions = self.position.load(&self.filters);
        let mut reads = Vec::with_capacity(self.filters.len());
        for filter in &self.filters {
            let from = positions.start(filter);
            if from == 1 {
                tracing::info!(filter, "no catch-up position for this filter; reading it from the start of the stream");
            }
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
            reads.push((filter.clone(), read));
        }
        let read = merge(reads);
        if !read.commands.is_empty() {
            tracing::info!(commands = read.commands.len(), "caught up on commands published while away");
        }
        Some(read)
    }

    /// Everything `read` returned has been handed to the pipeline (claimed or about to be): the next catch-up
    /// starts after it on every filter whose end was known. Filters the agent no longer reads are forgotten.
    pub fn handed_on(&self, read: &ReadBack) {
        let recorded = self.position.load(&self.filters);
        let advanced = recorded.advanced(read);
        if advanced != recorded {
            self.position.save(&advanced);
        }
    }
}

/// How far each command filter has been caught up on: the stream sequence its last complete read reached. A filter
/// without one has never been read (a group the agent joined since) and is read from the start of the stream. So is
/// a filter nothing was ever published on, since the broker's "nothing found" answer does not say where the stream
/// ends: one quick request per catch-up.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Positions {
    #[serde(default)]
    filters: BTreeMap<String, u64>,
}

impl Positions {
    /// The stream sequence a read of `filter` starts at.
    pub fn start(&self, filter: &str) -> u64 {
        self.filters.get(filter).map_or(1, |seq| seq.saturating_add(1))
    }

    /// The single position an older agent kept for all its filters (`catchup.seq`), given to every filter it has
    /// now. Which filters it had then is not recorded, so a group joined together with the upgrade gets it too and
    /// misses what was published to it before: the conservative choice, since reading every filter from the start
    /// would have every agent of a fleet re-read the whole stream on its upgrade.
    fn single(seq: u64, filters: &[String]) -> Self {
        Self { filters: filters.iter().map(|filter| (filter.clone(), seq)).collect() }
    }

    /// The positions once `read` has been handed on: each filter it read to a known end moves there, the others
    /// keep theirs, and a filter it did not read (one the agent no longer has) is dropped.
    fn advanced(&self, read: &ReadBack) -> Self {
        let filters = read
            .reached
            .iter()
            .filter_map(|(filter, reached)| {
                let seq = reached.or_else(|| self.filters.get(filter).copied())?;
                Some((filter.clone(), seq))
            })
            .collect();
        Self { filters }
    }

    fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The file the positions are kept in: `{"filters": {"commands.all.*": 123, ...}}`.
const POSITIONS_FILE: &str = "catchup.json";
/// The single position of an agent from before positions were kept per filter: one number.
const SINGLE_POSITION_FILE: &str = "catchup.seq";
/// A positions file larger than this is not read (one holds a few filters, a few hundred bytes): a damaged or
/// planted file costs a longer read, not the agent's memory.
const MAX_POSITIONS_BYTES: u64 = 1024 * 1024;

/// Where the agent remembers how far it has caught up on each filter, so the next catch-up reads only what is newer.
/// Losing it costs a longer read, never a second run (the ledger de-duplicates); so an unreadable file is read as
/// no file at all.
#[derive(Debug, Clone)]
pub struct Position {
    dir: PathBuf,
}

impl Position {
    pub fn new(data_dir: &Path) -> Self {
        Self { dir: data_dir.to_owned() }
    }

    /// The recorded positions; an older agent's single position, given to all of `filters`, when there are none.
    pub fn load(&self, filters: &[String]) -> Positions {
        let path = self.dir.join(POSITIONS_FILE);
        match read_bounded(&path) {
            Ok(Some(bytes)) => match Positions::decode(&bytes) {
                Ok(positions) => return positions,
                Err(err) => tracing::warn!(
                    file = %path.display(),
                    error = %err,
                    "the catch-up positions are unreadable; reading as if there were none"
                ),
            },
            Ok(None) => {}
            Err(err) => tracing::warn!(
                file = %path.display(),
                error = %err,
                "cannot read the catch-up positions; reading as if there were none"
            ),
        }
        let path = self.dir.join(SINGLE_POSITION_FILE);
        match read_bounded(&path) {
            Ok(Some(bytes)) => match decode_single(&bytes) {
                Some(seq) => return Positions::single(seq, filters),
                None => tracing::warn!(file = %path.display(), "the old catch-up position is not a number; ignored"),
            },
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(file = %path.display(), error = %err, "cannot read the old catch-up position; ignored");
            }
        }
        Positions::default()
    }

    /// Records `positions` (write, sync, rename: never a torn file), and drops an older agent's single position,
    /// which they replace.
    pub fn save(&self, positions: &Positions) {
        let written = serde_json::to_vec(positions)
            .map_err(std::io::Error::other)
            .and_then(|body| write_atomically(&self.dir, POSITIONS_FILE, &body));
        match written {
            Ok(()) => remove(&self.dir.join(SINGLE_POSITION_FILE)),
            Err(err) => tracing::warn!(
                file = %self.dir.join(POSITIONS_FILE).display(),
                error = %err,
                "cannot record the catch-up positions"
            ),
        }
    }

    /// Forgets every position: the next catch-up reads every filter from the start.
    pub fn reset(&self) {
        remove(&self.dir.join(POSITIONS_FILE));
        remove(&self.dir.join(SINGLE_POSITION_FILE));
    }
}

/// An older agent's `catchup.seq`: a number, perhaps with a line end.
fn decode_single(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// The contents of `path`, `None` when there is no such file; an error when it is larger than
/// [`MAX_POSITIONS_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut bytes = Vec::new();
    file.take(MAX_POSITIONS_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_POSITIONS_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_POSITIONS_BYTES} bytes"),
        ));
    }
    Ok(Some(bytes))
}

/// Replaces `dir/name` by writing a sibling, syncing it and renaming it over the file, so a crash leaves the old
/// contents or the new ones.
fn write_atomically(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let temp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(body)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join(name))?;
    sync_dir(dir);
    Ok(())
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(file = %path.display(), error = %err, "cannot remove a catch-up position file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(seq: u64) -> Fetched {
        Fetched { seq, subject: format!("commands.all.j{seq}"), payload: Bytes::new(), headers: None }
    }

    fn filter_read(seqs: &[u64], complete_to: Option<u64>) -> Read {
        Read { commands: seqs.iter().copied().map(fetched).collect(), complete_to }
    }

    fn filters(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn positions(entries: &[(&str, u64)]) -> Positions {
        Positions { filters: entries.iter().map(|(filter, seq)| ((*filter).to_owned(), *seq)).collect() }
    }

    #[test]
    fn a_read_back_is_in_stream_order_and_knows_how_far_each_filter_got() {
        let read = merge(vec![
            ("commands.all.*".into(), filter_read(&[2, 9], Some(12))),
            ("commands.pc.pc-1.*".into(), filter_read(&[5], Some(10))),
            ("commands.group.lab.*".into(), filter_read(&[3], None)),
        ]);
        assert_eq!(read.commands.iter().map(|f| f.seq).collect::<Vec<_>>(), [2, 3, 5, 9]);
        assert_eq!(
            read.reached,
            [
                ("commands.all.*".to_owned(), Some(12)),
                ("commands.pc.pc-1.*".to_owned(), Some(10)),
                ("commands.group.lab.*".to_owned(), None),
            ]
        );
        assert!(merge(Vec::new()).reached.is_empty(), "nothing read, nothing to record");
    }

    #[test]
    fn a_filter_never_read_starts_at_the_beginning_of_the_stream_and_a_known_one_after_its_position() {
        let known = positions(&[("commands.all.*", 41), ("commands.group.early.*", 0)]);
        assert_eq!(known.start("commands.all.*"), 42);
        assert_eq!(known.start("commands.group.early.*"), 1);
        assert_eq!(known.start("commands.group.late.*"), 1, "a group joined since is read from the start");
        assert_eq!(positions(&[("commands.all.*", u64::MAX)]).start("commands.all.*"), u64::MAX, "no overflow");
    }

    #[test]
    fn each_filter_moves_to_its_own_end_and_one_whose_end_is_unknown_keeps_its_position() {
        let before = positions(&[("commands.all.*", 10), ("commands.pc.pc-1.*", 10), ("commands.group.lab.*", 7)]);
        let read = merge(vec![
            ("commands.all.*".into(), filter_read(&[11], Some(20))),
            ("commands.pc.pc-1.*".into(), filter_read(&[], None)),
            ("commands.group.lab.*".into(), filter_read(&[], Some(18))),
            ("commands.group.new.*".into(), filter_read(&[3], Some(19))),
        ]);
        assert_eq!(
            before.advanced(&read),
            positions(&[
                ("commands.all.*", 20),
                ("commands.pc.pc-1.*", 10),
                ("commands.group.lab.*", 18),
                ("commands.group.new.*", 19),
            ])
        );
        // A new filter whose end was not known stays without a position: it is read from the start again.
        let unknown = merge(vec![("commands.group.new.*".into(), filter_read(&[3], None))]);
        assert_eq!(Positions::default().advanced(&unknown).start("commands.group.new.*"), 1);
    }

    #[test]
    fn a_filter_the_agent_no_longer_has_is_dropped() {
        let before = positions(&[("commands.all.*", 10), ("commands.group.left.*", 10)]);
        let read = merge(vec![("commands.all.*".into(), filter_read(&[], None))]);
        assert_eq!(before.advanced(&read), positions(&[("commands.all.*", 10)]));
    }

    #[test]
    fn the_positions_file_looks_like_its_documentation() {
        let tmp = tempfile::tempdir().unwrap();
        let position = Position::new(tmp.path());
        position.save(&positions(&[("commands.all.*", 123), ("commands.pc.pc-1.*", 120)]));
        let text = std::fs::read_to_string(tmp.path().join(POSITIONS_FILE)).unwrap();
        assert_eq!(text, r#"{"filters":{"commands.all.*":123,"commands.pc.pc-1.*":120}}"#);
        assert!(!tmp.path().join("catchup.json.tmp").exists(), "the temporary file is renamed into place");
    }

    #[test]
    fn an_older_agents_single_position_applies_to_every_filter_and_is_replaced_once_positions_are_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(SINGLE_POSITION_FILE), "57\n").unwrap();
        let position = Position::new(tmp.path());
        let now = filters(&["commands.all.*", "commands.pc.pc-1.*", "commands.group.lab.*", "commands.group.new.*"]);
        let loaded = position.load(&now);
        for filter in &now {
            assert_eq!(loaded.start(filter), 58, "{filter}: an upgrade does not re-read the whole stream");
        }

        // The next catch-up records per-filter positions, and the old file is gone with it.
        let catch_up = CatchUp::new(now.clone(), position.clone(), Duration::ZERO);
        catch_up.handed_on(&merge(now.iter().map(|f| (f.clone(), filter_read(&[], Some(60)))).collect()));
        assert!(!tmp.path().join(SINGLE_POSITION_FILE).exists());
        assert_eq!(position.load(&now).start("commands.group.new.*"), 61);

        // Recorded positions win over an old file that is still there.
        std::fs::write(tmp.path().join(SINGLE_POSITION_FILE), "5").unwrap();
        assert_eq!(position.load(&now).start("commands.all.*"), 61);
    }

    #[test]
    fn an_unreadable_positions_file_is_read_as_none_without_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let position = Position::new(tmp.path());
        let now = filters(&["commands.all.*", "commands.pc.pc-1.*"]);
        let mut huge = br#"{"filters":{"commands.all.*":"#.to_vec();
        huge.extend(std::iter::repeat_n(b'9', 10 * 1024 * 1024));
        huge.extend(b"}}");
        let hostile: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("not json", b"{\"filters\": {\"commands.all.*\": 1".to_vec()),
            ("not utf-8", vec![0xff, 0xfe, 0x7b, 0x80, 0x00]),
            ("a number past u64", br#"{"filters":{"commands.all.*":18446744073709551616}}"#.to_vec()),
            ("a negative number", br#"{"filters":{"commands.all.*":-1}}"#.to_vec()),
            ("a fraction", br#"{"filters":{"commands.all.*":1.5}}"#.to_vec()),
            ("a string", br#"{"filters":{"commands.all.*":"12"}}"#.to_vec()),
            ("a list", br#"{"filters":[1,2,3]}"#.to_vec()),
            ("nested deep", [vec![b'['; 100_000], vec![b']'; 100_000]].concat()),
            ("10 MB", huge),
        ];
        for (what, bytes) in hostile {
            std::fs::write(tmp.path().join(POSITIONS_FILE), &bytes).unwrap();
            assert_eq!(position.load(&now), Positions::default(), "{what}");
        }

        // Read as none, an old single position is still taken over.
        std::fs::write(tmp.path().join(POSITIONS_FILE), b"\x00garbage").unwrap();
        std::fs::write(tmp.path().join(SINGLE_POSITION_FILE), "9").unwrap();
        assert_eq!(position.load(&now).start("commands.all.*"), 10);
        for bad in [b"-3".as_slice(), b"99999999999999999999999", b"\xff\xfe", b""] {
            std::fs::write(tmp.path().join(SINGLE_POSITION_FILE), bad).unwrap();
            assert_eq!(position.load(&now), Positions::default());
        }
    }

    #[test]
    fn thousands_of_recorded_filters_shrink_to_the_agents_own() {
        let tmp = tempfile::tempdir().unwrap();
        let position = Position::new(tmp.path());
        let planted: BTreeMap<String, u64> =
            (0..5000).map(|i| (format!("commands.group.g{i}.*"), u64::MAX - i)).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "filters": planted })).unwrap();
        std::fs::write(tmp.path().join(POSITIONS_FILE), body).unwrap();
        let now = filters(&["commands.all.*", "commands.group.g7.*"]);
        assert_eq!(position.load(&now).start("commands.group.g7.*"), u64::MAX - 6);
        assert_eq!(position.load(&now).start("commands.all.*"), 1);

        let catch_up = CatchUp::new(now.clone(), position.clone(), Duration::ZERO);
        catch_up.handed_on(&merge(now.iter().map(|f| (f.clone(), filter_read(&[], Some(30)))).collect()));
        assert_eq!(position.load(&now), positions(&[("commands.all.*", 30), ("commands.group.g7.*", 30)]));
    }

    #[tokio::test]
    async fn a_catch_up_that_keeps_failing_keeps_trying_until_the_broker_answers() {
        use kanade_shared::subject::{self, Target};
        let nats = kanade_testkit::NatsServer::start();
        let client = kanade_testkit::client(&nats.url()).await;
        let tmp = tempfile::tempdir().unwrap();
        // Far more tries than the old agent's give-up allowed (it stopped once the wait reached its maximum).
        let retry = Retry { first: Duration::from_millis(10), max: Duration::from_millis(40) };
        let catch_up =
            CatchUp::new(vec![subject::commands_for(&Target::All)], Position::new(tmp.path()), Duration::ZERO)
                .with_retry(retry);
        let shutdown = CancellationToken::new();
        let jobs = JobStates::new(std::sync::Arc::new(crate::authority::tests::TestKeys::new().authority(None)));
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
        let client = kanade_testkit::client(&nats.url()).await;
        let tmp = tempfile::tempdir().unwrap();
        let catch_up = CatchUp::new(vec!["commands.all.*".into()], Position::new(tmp.path()), Duration::ZERO)
            .with_retry(Retry { first: Duration::from_millis(10), max: Duration::from_millis(20) });
        let shutdown = CancellationToken::new();
        let jobs = JobStates::new(std::sync::Arc::new(crate::authority::tests::TestKeys::new().authority(None)));
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
    fn the_positions_move_only_when_handed_on_and_a_reset_forgets_them() {
        let tmp = tempfile::tempdir().unwrap();
        let now = filters(&["commands.all.*", "commands.pc.pc-1.*"]);
        let catch_up = CatchUp::new(now.clone(), Position::new(tmp.path()), Duration::ZERO);
        assert_eq!(catch_up.position.load(&now), Positions::default());
        catch_up.handed_on(&merge(vec![
            ("commands.all.*".into(), filter_read(&[7], Some(8))),
            ("commands.pc.pc-1.*".into(), filter_read(&[], Some(8))),
        ]));
        assert_eq!(catch_up.position.load(&now), positions(&[("commands.all.*", 8), ("commands.pc.pc-1.*", 8)]));
        catch_up.handed_on(&merge(vec![
            ("commands.all.*".into(), filter_read(&[], None)),
            ("commands.pc.pc-1.*".into(), filter_read(&[9], Some(9))),
        ]));
        assert_eq!(catch_up.position.load(&now), positions(&[("commands.all.*", 8), ("commands.pc.pc-1.*", 9)]));

        std::fs::write(tmp.path().join(SINGLE_POSITION_FILE), "5").unwrap();
        catch_up.position.reset();
        assert_eq!(catch_up.position.load(&now), Positions::default(), "neither file is left");
    }
}
