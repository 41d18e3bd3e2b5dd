//! Every operator action becomes an [`AuditEvent`] on `audit.<actor>.<action>` in stream `AUDIT`, published with
//! its event id as `Nats-Msg-Id` so a retried publish is stored once. An [`Auditor`] records the actions of one
//! operator from one place; the CLI and the backend differ only in how they report a record that could not be made.
//!
//! Each event carries the hash of the stream's last event (`kanade_shared::audit_chain`). Many writers publish at
//! once (every CLI process, every backend replica), so [`record`] reads the last message, links to it, and publishes
//! with `Nats-Expected-Last-Sequence`: the broker stores the event only if nothing came in between, and otherwise the
//! writer reads again and retries. [`read_stream`] is the other half: one pass over the stream for `kanade audit
//! verify`.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream::RawMessageErrorKind};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use kanade_shared::audit_chain::{self, Entry};
use kanade_shared::resources::{CONSUMER_AUDIT_PROJECTOR, STREAM_AUDIT};
use kanade_shared::subject;
use kanade_shared::wire::AuditEvent;
use kanade_shared::{Action, Actor, ExecId};

use crate::OpsError;

/// Where an action was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cli,
    Backend,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cli => "cli",
            Source::Backend => "backend",
        }
    }
}

/// Tries at linking an event to the stream's end before [`record`] gives up. Each try that loses costs a few
/// round trips; fifty covers dozens of writers auditing in the same instant.
pub const MAX_TRIES: u32 = 50;
/// The longest pause between two tries (each is a random part of a cap that doubles from 2 ms).
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Records `action` by `actor` on `target`, linked to the event before it, and waits for the broker's ack.
pub async fn record(
    client: &async_nats::Client,
    source: Source,
    actor: &Actor,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<(), OpsError> {
    let action =
        Action::new(action).map_err(|err| OpsError::Invalid(format!("`{action}` is not an audit action: {err}")))?;
    let what = format!("`{action}` on `{target}` could not be audited");
    let mut event = AuditEvent {
        event_id: ExecId::generate().to_string(),
        actor: actor.clone(),
        action,
        target: target.to_owned(),
        // As the stream and the database will give it back, so both hash what this writer hashed.
        details: audit_chain::normalise_details(details),
        at: audit_chain::truncate_to_millis(Utc::now()),
        source: source.as_str().into(),
        prev_hash: String::new(),
        hash: String::new(),
    };
    let js = jetstream::new(client.clone());
    let stream = js.get_stream_no_info(STREAM_AUDIT).await.map_err(|e| OpsError::nats(what.clone(), e))?;
    let subject_name = subject::audit(&event.actor, &event.action);
    let mut lost = None;
    for attempt in 0..MAX_TRIES {
        let (last_seq, last) = last_message(&stream).await.map_err(|e| OpsError::nats(what.clone(), e))?;
        // An earlier try was stored but its ack never came back.
        if last.as_ref().is_some_and(|last| last.event_id == event.event_id) {
            return Ok(());
        }
        audit_chain::seal(&mut event, &audit_chain::next_link(last.as_ref()));
        let body = serde_json::to_vec(&event).map_err(|source| OpsError::Encode { what: "audit event", source })?;
        let message = PublishMessage::build()
            .payload(body.into())
            .message_id(event.event_id.as_str())
            .expected_last_sequence(last_seq);
        let stored = match js.send_publish(subject_name.clone(), message).await {
            Ok(ack) => ack.await,
            Err(err) => Err(err),
        };
        match stored {
            // Also when the broker says "duplicate": an earlier try was stored after all.
            Ok(_) => return Ok(()),
            // Another writer got there first, or the ack was lost (the next read tells which).
            Err(err) if matches!(err.kind(), PublishErrorKind::WrongLastSequence | PublishErrorKind::TimedOut) => {
                tracing::debug!(attempt, error = %err, event_id = %event.event_id, "audit event not linked; trying again");
                lost = Some(err);
                tokio::time::sleep(pause(attempt)).await;
            }
            Err(err) => return Err(OpsError::nats(what, err)),
        }
    }
    let why = format!("{what}: the end of `{STREAM_AUDIT}` moved under each of {MAX_TRIES} tries (too many writers)");
    Err(match lost {
        Some(err) => OpsError::nats(why, err),
        None => OpsError::Invalid(why),
    })
}

/// A random pause of up to 2 ms doubled per try, at most [`MAX_PAUSE`], so writers that collided do not collide
/// again in step.
fn pause(attempt: u32) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u32(attempt);
    let cap = (Duration::from_millis(2) * 2u32.saturating_pow(attempt.min(10))).min(MAX_PAUSE);
    let cap_micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX).max(1);
    Duration::from_micros(random.finish() % cap_micros)
}

/// The stream's last sequence and the audit event stored there: `None` when the stream holds no message there
/// (empty, or the last one was deleted) or it is not an audit event. The JetStream API's message get, since `AUDIT`
/// allows no direct get.
async fn last_message<I>(
    stream: &jetstream::stream::Stream<I>,
) -> Result<(u64, Option<AuditEvent>), async_nats::Error> {
    let info = stream.get_info().await?;
    let last_seq = info.state.last_sequence;
    if info.state.messages == 0 {
        return Ok((last_seq, None));
    }
    match stream.get_raw_message(last_seq).await {
        Ok(message) => Ok((last_seq, audit_chain::decode_message(message.subject.as_str(), &message.payload).ok())),
        Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => Ok((last_seq, None)),
        Err(err) => Err(err.into()),
    }
}

/// What one pass over `AUDIT` covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamRead {
    /// The stream's first sequence when it was read (everything before it is gone).
    pub first_seq: u64,
    /// The stream's last sequence when the read began.
    pub last_seq: u64,
    /// The first sequence the read covered (`last_seq + 1` when it found nothing).
    pub from_seq: u64,
    /// The last sequence the read covered (`from_seq - 1` when it found nothing).
    pub to_seq: u64,
    /// Every event up to this sequence has been stored (or refused) by the backend's projector: its durable
    /// consumer's acknowledged floor; 0 when it has none.
    pub projected_to: u64,
}

/// How long a pass over the stream waits for its next message before it gives up.
const READ_IDLE: Duration = Duration::from_secs(10);

/// Reads `AUDIT` in stream order from its first message (or the first stored at or after `since`) to the last one
/// it held when the read began, handing each message to `each` as an [`Entry`]. An ordered consumer, which ends
/// with the read.
pub async fn read_stream(
    client: &async_nats::Client,
    since: Option<DateTime<Utc>>,
    mut each: impl FnMut(u64, Entry),
) -> Result<StreamRead, OpsError> {
    let what = || format!("cannot read stream `{STREAM_AUDIT}`");
    let js = jetstream::new(client.clone());
    let stream = js.get_stream_no_info(STREAM_AUDIT).await.map_err(|e| OpsError::nats(what(), e))?;
    let info = stream.get_info().await.map_err(|e| OpsError::nats(what(), e))?;
    let projected_to = match stream.consumer_info(CONSUMER_AUDIT_PROJECTOR).await {
        Ok(consumer) => consumer.ack_floor.stream_sequence,
        Err(err) => {
            tracing::debug!(error = %err, "no audit projector consumer");
            0
        }
    };
    let (first_seq, last_seq) = (info.state.first_sequence, info.state.last_sequence);
    let nothing = StreamRead { first_seq, last_seq, from_seq: last_seq + 1, to_seq: last_seq, projected_to };
    if info.state.messages == 0 {
        return Ok(nothing);
    }
    let deliver_policy = match since {
        None => jetstream::consumer::DeliverPolicy::All,
        Some(since) => {
            // The broker counts time in i64 nanoseconds: a time past 2262 would wrap around to the stream's start.
            let nanos = since.timestamp_nanos_opt().unwrap_or(if since.timestamp() > 0 { i64::MAX } else { 0 }).max(0);
            let start_time =
                async_nats::datetime::from_nanos(i128::from(nanos)).map_err(|e| OpsError::nats(what(), e))?;
            jetstream::consumer::DeliverPolicy::ByStartTime { start_time }
        }
    };
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            description: Some("kanade audit verify".into()),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| OpsError::nats(what(), e))?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(nothing);
    }
    let mut messages = consumer.messages().await.map_err(|e| OpsError::nats(what(), e))?;
    let mut read = StreamRead { from_seq: 0, ..nothing };
    loop {
        let message = match tokio::time::timeout(READ_IDLE, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(err))) => return Err(OpsError::nats(what(), err)),
            Ok(None) => return Err(OpsError::Invalid(format!("{}: the read ended early", what()))),
            Err(_) => {
                return Err(OpsError::Invalid(format!("{}: no message came for {}s", what(), READ_IDLE.as_secs())));
            }
        };
        let (seq, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(err) => return Err(OpsError::nats(what(), err)),
        };
        if read.from_seq == 0 {
            read.from_seq = seq;
        }
        read.to_seq = seq;
        each(seq, Entry::from_message(message.subject.as_str(), &message.payload));
        if pending == 0 || seq >= last_seq {
            return Ok(read);
        }
    }
}

/// The stream's last sequence now.
pub async fn last_sequence(client: &async_nats::Client) -> Result<u64, OpsError> {
    let what = || format!("cannot read stream `{STREAM_AUDIT}`");
    let js = jetstream::new(client.clone());
    let stream = js.get_stream_no_info(STREAM_AUDIT).await.map_err(|e| OpsError::nats(what(), e))?;
    Ok(stream.get_info().await.map_err(|e| OpsError::nats(what(), e))?.state.last_sequence)
}

/// What to do when an action was done but could not be audited: `(action, target, why)`. The action is not undone;
/// the CLI warns on stderr, the backend logs an error.
pub type Unaudited = fn(&str, &str, &OpsError);

/// Records the actions of one operator (`actor`) taken through one `source`.
#[derive(Clone)]
pub struct Auditor {
    client: async_nats::Client,
    source: Source,
    actor: Actor,
    unaudited: Unaudited,
}

impl Auditor {
    pub fn new(client: async_nats::Client, source: Source, actor: Actor, unaudited: Unaudited) -> Self {
        Self { client, source, actor, unaudited }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Records `action` on `target`, after the action succeeded. Never fails: a record that cannot be made goes to
    /// the `unaudited` hook, since the action itself is done either way.
    pub async fn record(&self, action: &str, target: &str, details: serde_json::Value) {
        if let Err(err) = record(&self.client, self.source, &self.actor, action, target, details).await {
            (self.unaudited)(action, target, &err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_random_and_bounded() {
        for attempt in 0..MAX_TRIES {
            assert!(pause(attempt) <= MAX_PAUSE, "{attempt}");
        }
        assert!(pause(0) <= Duration::from_millis(2));
        let pauses: std::collections::BTreeSet<Duration> = (0..20).map(|_| pause(8)).collect();
        assert!(pauses.len() > 1, "{pauses:?}");
    }
}
