//! Projectors: the only writers of the read model. `RESULTS`, `AUDIT`, the run-started events of `EVENTS` and the
//! agents' timelines on `OBS` are each read through one durable pull consumer shared by every backend replica and acknowledged only after their
//! rows are committed; heartbeats arrive on core NATS in a queue group and are folded to the newest per agent before
//! each write. After each commit a projector announces what changed (`crate::live`) so dashboards refetch it.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kanade_shared::resources::{
    BACKEND_QUEUE_GROUP, CONSUMER_AUDIT_PROJECTOR, CONSUMER_CONSENT_PROJECTOR, CONSUMER_EVENTS_PROJECTOR,
    CONSUMER_INVENTORY_PROJECTOR, CONSUMER_JOB_FACTS_PROJECTOR, CONSUMER_OBS_PROJECTOR, CONSUMER_PERF_PROJECTOR,
    CONSUMER_RESULTS_PROJECTOR, STREAM_AUDIT, STREAM_EVENTS, STREAM_INVENTORY, STREAM_OBS, STREAM_PERF, STREAM_RESULTS,
};
use kanade_shared::subject;
use kanade_shared::wire::{AuditEvent, ExecResult, Heartbeat, ObsEvent, RunHeld, RunStarted};
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::live::{self, Publisher, Topic};

/// Messages taken from a stream per database transaction, at most.
const BATCH: usize = 500;
const RETRY_MAX: Duration = Duration::from_secs(10);
/// On shutdown, messages already delivered are stored until none arrives for `DRAIN_IDLE`, for `DRAIN_MAX` at most.
const DRAIN_IDLE: Duration = Duration::from_millis(200);
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// One JetStream stream projected into one table through a durable pull consumer shared by backend replicas.
pub trait Projection: Send + Sync + 'static {
    type Row: Send + Sync;
    const STREAM: &'static str;
    const CONSUMER: &'static str;
    /// The part of the stream this projection reads; `None` for all of it.
    const FILTER_SUBJECT: Option<&'static str> = None;
    /// Decodes and checks one message; an `Err` is logged and the message terminated (it stays in the stream).
    fn decode(subject: &str, payload: &[u8]) -> Result<Self::Row, String>;
    /// Adds to a decoded batch what only the broker knows (a job's manifest), before it is committed; nothing by
    /// default. An `Err` interrupts the projector, which starts over and is sent the batch again.
    fn enrich(_parts: &Parts, _rows: &mut [(Self::Row, u64)]) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }
    /// Stores a batch in one transaction, idempotently (a redelivered message lands on the same row).
    fn commit(db: &Db, rows: &[(Self::Row, u64)]) -> impl Future<Output = Result<(), crate::db::DbError>> + Send;
    /// What a committed batch changed, for live dashboards: a topic and the ids in it (none: "something").
    fn changed(rows: &[(Self::Row, u64)]) -> (Topic, Vec<String>);
}

/// `RESULTS` -> `results`.
pub struct Results;

impl Projection for Results {
    type Row = ExecResult;
    const STREAM: &'static str = STREAM_RESULTS;
    const CONSUMER: &'static str = CONSUMER_RESULTS_PROJECTOR;

    fn decode(subject: &str, payload: &[u8]) -> Result<ExecResult, String> {
        decode_result(subject, payload)
    }

    async fn commit(db: &Db, rows: &[(ExecResult, u64)]) -> Result<(), crate::db::DbError> {
        db.insert_results(rows, Utc::now()).await
    }

    fn changed(rows: &[(ExecResult, u64)]) -> (Topic, Vec<String>) {
        (Topic::Results, distinct(rows.iter().map(|(r, _)| r.exec_id.as_str())))
    }
}

/// `EVENTS` (`events.started.>`) -> `runs_started`: which runs have begun.
pub struct Events;

impl Projection for Events {
    type Row = RunStarted;
    const STREAM: &'static str = STREAM_EVENTS;
    const CONSUMER: &'static str = CONSUMER_EVENTS_PROJECTOR;
    const FILTER_SUBJECT: Option<&'static str> = Some(subject::EVENTS_STARTED_ALL);

    fn decode(subject_name: &str, payload: &[u8]) -> Result<RunStarted, String> {
        let started: RunStarted = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        if subject::event_started(&started.pc_id, &started.exec_id) != subject_name {
            return Err(format!("start of `{}` on `{}` arrived on `{subject_name}`", started.exec_id, started.pc_id));
        }
        Ok(started)
    }

    async fn commit(db: &Db, rows: &[(RunStarted, u64)]) -> Result<(), crate::db::DbError> {
        db.insert_started(rows).await
    }

    fn changed(rows: &[(RunStarted, u64)]) -> (Topic, Vec<String>) {
        (Topic::Results, distinct(rows.iter().map(|(r, _)| r.exec_id.as_str())))
    }
}

/// `EVENTS` (`events.consent.>`) -> `runs_held`: where runs held for their user's consent stand.
pub struct Consents;

/// The longest user name kept with a deferral (an account name; Windows' `DOMAIN\\name` included).
pub const MAX_HELD_BY_CHARS: usize = 256;

impl Projection for Consents {
    type Row = RunHeld;
    const STREAM: &'static str = STREAM_EVENTS;
    const CONSUMER: &'static str = CONSUMER_CONSENT_PROJECTOR;
    const FILTER_SUBJECT: Option<&'static str> = Some(subject::EVENTS_CONSENT_ALL);

    fn decode(subject_name: &str, payload: &[u8]) -> Result<RunHeld, String> {
        let held: RunHeld = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        if subject::event_consent(&held.pc_id, &held.exec_id) != subject_name {
            return Err(format!("consent of `{}` on `{}` arrived on `{subject_name}`", held.exec_id, held.pc_id));
        }
        if held.by.as_ref().is_some_and(|by| by.chars().count() > MAX_HELD_BY_CHARS || by.chars().any(char::is_control))
        {
            return Err("the user's name is too long or has control characters".into());
        }
        if held.until > held.deadline {
            return Err(format!("held until {} past its deadline {}", held.until, held.deadline));
        }
        Ok(held)
    }

    async fn commit(db: &Db, rows: &[(RunHeld, u64)]) -> Result<(), crate::db::DbError> {
        db.upsert_held(rows).await
    }

    fn changed(rows: &[(RunHeld, u64)]) -> (Topic, Vec<String>) {
        (Topic::Results, distinct(rows.iter().map(|(r, _)| r.exec_id.as_str())))
    }
}

fn distinct<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    ids.collect::<BTreeSet<_>>().into_iter().map(str::to_owned).collect()
}

/// `AUDIT` -> `audit`.
pub struct Audit;

impl Projection for Audit {
    type Row = AuditEvent;
    const STREAM: &'static str = STREAM_AUDIT;
    const CONSUMER: &'static str = CONSUMER_AUDIT_PROJECTOR;

    /// The same check a verifier of the chain makes (`kanade_shared::audit_chain::decode_message`), so what is
    /// projected and what `kanade audit verify` counts as an event never disagree.
    fn decode(subject: &str, payload: &[u8]) -> Result<AuditEvent, String> {
        kanade_shared::audit_chain::decode_message(subject, payload)
    }

    async fn commit(db: &Db, rows: &[(AuditEvent, u64)]) -> Result<(), crate::db::DbError> {
        db.upsert_audit(rows, Utc::now()).await
    }

    fn changed(_rows: &[(AuditEvent, u64)]) -> (Topic, Vec<String>) {
        (Topic::Audit, Vec::new())
    }
}

/// `OBS` -> `agent_events`: each agent's timeline.
pub struct Timeline;

/// The most of an event's `details` a timeline row keeps, as JSON text; a larger one is replaced by a note saying
/// how large it was (the broker's payload limit bounds what arrives; this bounds what is kept per row).
pub const MAX_DETAILS_BYTES: usize = 4096;
/// The longest kind name kept; kinds are `[a-z0-9_]`, as `ObsKind`'s are.
pub const MAX_KIND_CHARS: usize = 64;

impl Projection for Timeline {
    type Row = crate::db::NewAgentEvent;
    const STREAM: &'static str = STREAM_OBS;
    const CONSUMER: &'static str = CONSUMER_OBS_PROJECTOR;

    fn decode(subject: &str, payload: &[u8]) -> Result<crate::db::NewAgentEvent, String> {
        decode_obs(subject, payload)
    }

    async fn commit(db: &Db, rows: &[(crate::db::NewAgentEvent, u64)]) -> Result<(), crate::db::DbError> {
        db.insert_agent_events(rows, Utc::now()).await
    }

    fn changed(rows: &[(crate::db::NewAgentEvent, u64)]) -> (Topic, Vec<String>) {
        (Topic::Timeline, distinct(rows.iter().map(|(e, _)| e.pc_id.as_str())))
    }
}

/// Decodes a timeline event and checks it belongs on its subject. The subject is what the broker's permissions will
/// guard (each agent may publish only on its own `obs.<pc>`), so an event naming another agent is refused, not
/// re-labelled. A kind outside `[a-z0-9_]{1,64}` is refused; an unknown well-formed kind is kept as it came. An
/// event id unfit to keep (empty, over 64 characters, or not `[A-Za-z0-9_.:-]`) is replaced by the stream
/// sequence, so the event is still stored once.
pub fn decode_obs(subject_name: &str, payload: &[u8]) -> Result<crate::db::NewAgentEvent, String> {
    let event: ObsEvent = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if subject::obs(&event.pc_id) != subject_name {
        return Err(format!("timeline event of `{}` arrived on `{subject_name}`", event.pc_id));
    }
    let kind_ok = (1..=MAX_KIND_CHARS).contains(&event.event.len())
        && event.event.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !kind_ok {
        let shown: String = event.event.chars().take(MAX_KIND_CHARS).collect();
        return Err(format!("timeline event kind `{shown}` is not 1-{MAX_KIND_CHARS} of `[a-z0-9_]`"));
    }
    let id_ok = (1..=64).contains(&event.event_id.len())
        && event.event_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    let mut details_json = event.details.to_string();
    if details_json.len() > MAX_DETAILS_BYTES {
        details_json = serde_json::json!({ "truncated": true, "bytes": details_json.len() }).to_string();
    }
    Ok(crate::db::NewAgentEvent {
        event_id: id_ok.then_some(event.event_id),
        pc_id: event.pc_id.to_string(),
        kind: event.event,
        at: event.at,
        details_json,
    })
}

/// `INVENTORY` -> the inventory tables: each report folded into its PC's stored state, the difference logged.
pub struct Inventory;

impl Projection for Inventory {
    type Row = crate::db::NewInventory;
    const STREAM: &'static str = STREAM_INVENTORY;
    const CONSUMER: &'static str = CONSUMER_INVENTORY_PROJECTOR;

    fn decode(subject: &str, payload: &[u8]) -> Result<crate::db::NewInventory, String> {
        decode_inventory(subject, payload)
    }

    async fn commit(db: &Db, rows: &[(crate::db::NewInventory, u64)]) -> Result<(), crate::db::DbError> {
        db.apply_inventory(rows, Utc::now()).await
    }

    fn changed(rows: &[(crate::db::NewInventory, u64)]) -> (Topic, Vec<String>) {
        (Topic::Inventory, distinct(rows.iter().map(|(r, _)| r.pc_id.as_str())))
    }
}

/// `PERF` -> `perf_rollups`: each agent's summary of every `host_perf_interval`.
pub struct Perf;

impl Projection for Perf {
    type Row = kanade_shared::perf::PerfRollup;
    const STREAM: &'static str = STREAM_PERF;
    const CONSUMER: &'static str = CONSUMER_PERF_PROJECTOR;

    fn decode(subject: &str, payload: &[u8]) -> Result<kanade_shared::perf::PerfRollup, String> {
        decode_rollup(subject, payload)
    }

    async fn commit(db: &Db, rows: &[(kanade_shared::perf::PerfRollup, u64)]) -> Result<(), crate::db::DbError> {
        db.insert_perf_rollups(rows, Utc::now()).await
    }

    fn changed(rows: &[(kanade_shared::perf::PerfRollup, u64)]) -> (Topic, Vec<String>) {
        (Topic::Perf, distinct(rows.iter().map(|(r, _)| r.pc_id.as_str())))
    }
}

/// Decodes a rollup, checks it belongs on its subject (`perf.rollup.<its pc>`) and bounds it: a figure that is not
/// a finite, non-negative number becomes 0, lists and names are cut, so a hostile rollup stores as a harmless row.
pub fn decode_rollup(subject_name: &str, payload: &[u8]) -> Result<kanade_shared::perf::PerfRollup, String> {
    let mut rollup: kanade_shared::perf::PerfRollup = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if subject::perf_rollup(&rollup.pc_id) != subject_name {
        return Err(format!("a rollup of `{}` arrived on `{subject_name}`", rollup.pc_id));
    }
    if rollup.end < rollup.start {
        return Err(format!("a rollup of `{}` ends before it starts", rollup.pc_id));
    }
    let cuts = rollup.bound();
    if cuts > 0 {
        tracing::debug!(pc_id = %rollup.pc_id, cuts, "rollup bounded");
    }
    Ok(rollup)
}

/// Decodes an inventory report, checks it belongs on its subject (`inventory.<its pc>.<its kind>`: the subject is
/// what the broker's permissions will guard), and bounds it to the limits of `kanade_shared::inventory`, logging
/// what had to be cut: a hostile report costs a fixed amount, and its PC's page says how much was left out.
pub fn decode_inventory(subject_name: &str, payload: &[u8]) -> Result<crate::db::NewInventory, String> {
    use kanade_shared::inventory::{Bounded, InventoryReport, KIND_HARDWARE, KIND_SOFTWARE, KIND_STATUS};

    use crate::db::InventoryData;
    fn report<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<InventoryReport<T>, String> {
        serde_json::from_slice(payload).map_err(|e| e.to_string())
    }
    let kind = subject_name.rsplit('.').next().unwrap_or_default();
    let (pc_id, collected_at, hash, errors, mut data) = match kind {
        KIND_HARDWARE => {
            let r = report(payload)?;
            (r.pc_id, r.collected_at, r.hash, r.errors, InventoryData::Hardware(Box::new(r.data)))
        }
        KIND_SOFTWARE => {
            let r = report(payload)?;
            (r.pc_id, r.collected_at, r.hash, r.errors, InventoryData::Software(r.data))
        }
        KIND_STATUS => {
            let r = report(payload)?;
            (r.pc_id, r.collected_at, r.hash, r.errors, InventoryData::Status(r.data))
        }
        other => {
            return Err(format!(
                "inventory kind `{}` is not one this backend knows",
                other.chars().take(64).collect::<String>()
            ));
        }
    };
    let expected = kanade_shared::InventoryKind::new(kind).map(|kind| subject::inventory(&pc_id, &kind));
    if expected.as_deref() != Ok(subject_name) {
        return Err(format!("inventory of `{pc_id}` arrived on `{subject_name}`"));
    }
    let mut errors = errors;
    let mut cuts = kanade_shared::inventory::bound_errors(&mut errors);
    let mut dropped = 0;
    let more = match &mut data {
        InventoryData::Hardware(hw) => hw.bound(),
        InventoryData::Status(status) => status.bound(),
        InventoryData::Software(list) => {
            let more = list.bound();
            let duplicates = list.normalise();
            dropped = list.dropped;
            kanade_shared::inventory::Cuts { items: more.items + duplicates, fields: more.fields }
        }
    };
    cuts.items += more.items;
    cuts.fields += more.fields;
    if cuts.any() {
        tracing::warn!(
            subject = subject_name,
            items = cuts.items,
            fields = cuts.fields,
            "inventory report cut to its limits"
        );
    }
    let hash: String = hash.chars().take(128).collect();
    Ok(crate::db::NewInventory { pc_id: pc_id.to_string(), collected_at, hash, errors, dropped, data })
}

/// `RESULTS` -> `job_facts`: the stdout of each successful run of a job whose manifest has an `inventory:` block,
/// as that PC's facts of the job. Its own durable consumer, so facts never hold up results.
pub struct JobFacts;

/// A result, and (after `enrich`) whether its job reports facts.
pub struct FactsRow {
    result: ExecResult,
    reports_facts: bool,
}

impl Projection for JobFacts {
    type Row = FactsRow;
    const STREAM: &'static str = STREAM_RESULTS;
    const CONSUMER: &'static str = CONSUMER_JOB_FACTS_PROJECTOR;

    fn decode(subject: &str, payload: &[u8]) -> Result<FactsRow, String> {
        Ok(FactsRow { result: decode_result(subject, payload)?, reports_facts: false })
    }

    /// Looks up each job of the batch's successful results in the catalogue, once per batch.
    async fn enrich(parts: &Parts, rows: &mut [(FactsRow, u64)]) -> anyhow::Result<()> {
        let jobs: BTreeSet<kanade_shared::JobId> = rows
            .iter()
            .filter(|(row, _)| row.result.status == kanade_shared::wire::ResultStatus::Ok)
            .map(|(row, _)| row.result.job_id.clone())
            .collect();
        if jobs.is_empty() {
            return Ok(());
        }
        let catalogue = kanade_ops::catalogue::Catalogue::open(&parts.client).await?;
        let mut reporting = BTreeSet::new();
        for job in jobs {
            if catalogue.get(&job).await?.is_some_and(|stored| stored.job.inventory.is_some()) {
                reporting.insert(job);
            }
        }
        for (row, _) in rows.iter_mut() {
            row.reports_facts =
                row.result.status == kanade_shared::wire::ResultStatus::Ok && reporting.contains(&row.result.job_id);
        }
        Ok(())
    }

    async fn commit(db: &Db, rows: &[(FactsRow, u64)]) -> Result<(), crate::db::DbError> {
        let facts: Vec<(crate::db::NewFacts, u64)> = rows
            .iter()
            .filter(|(row, _)| row.reports_facts)
            .map(|(row, seq)| {
                let r = &row.result;
                let facts = crate::facts::parse(&r.stdout, r.stdout_truncated || r.stdout_full.is_some());
                if let Err(why) = &facts {
                    tracing::warn!(job_id = %r.job_id, pc_id = %r.pc_id, error = why, "inventory job output is not its facts");
                }
                let new = crate::db::NewFacts {
                    job_id: r.job_id.to_string(),
                    pc_id: r.pc_id.to_string(),
                    result_id: r.result_id.to_string(),
                    finished_at: r.finished_at,
                    facts,
                };
                (new, *seq)
            })
            .collect();
        if facts.is_empty() {
            return Ok(());
        }
        db.store_facts(&facts, Utc::now()).await
    }

    fn changed(rows: &[(FactsRow, u64)]) -> (Topic, Vec<String>) {
        let pcs = rows.iter().filter(|(row, _)| row.reports_facts).map(|(row, _)| row.result.pc_id.as_str());
        (Topic::Inventory, distinct(pcs))
    }
}

/// What every projector works with: its broker, its database, where it announces changes, what it counts.
#[derive(Clone)]
pub struct Parts {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub db: Db,
    pub live: Publisher,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Projects `P`'s stream into its table until `shutdown`, starting over after any interruption.
pub async fn project<P: Projection>(parts: Parts, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match project_once::<P>(&parts, &shutdown).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(stream = P::STREAM, error = format!("{err:#}"), retry_in = ?backoff, "projector interrupted");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

async fn project_once<P: Projection>(parts: &Parts, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let stream = parts.js.get_stream(P::STREAM).await.map_err(|err| {
        anyhow::anyhow!("stream `{}` unavailable ({err}); has `kanade jetstream setup` run?", P::STREAM)
    })?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            P::CONSUMER,
            pull::Config {
                durable_name: Some(P::CONSUMER.to_owned()),
                description: Some(format!("kanade-backend: {} projector", P::STREAM)),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: 20_000,
                filter_subject: P::FILTER_SUBJECT.unwrap_or_default().to_owned(),
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?.ready_chunks(BATCH);
    tracing::info!(consumer = P::CONSUMER, "projector running");
    loop {
        let batch = tokio::select! {
            batch = messages.next() => batch,
            () = shutdown.cancelled() => break,
        };
        let Some(batch) = batch else { anyhow::bail!("consumer message stream ended") };
        store::<P>(parts, batch, shutdown).await?;
    }
    // Messages the server has already handed to this client would otherwise wait out the ack timeout before another
    // backend (or this one, restarted) could have them: store what arrives until the stream is quiet.
    let until = tokio::time::Instant::now() + DRAIN_MAX;
    while let Ok(Some(batch)) =
        tokio::time::timeout_at(until.min(tokio::time::Instant::now() + DRAIN_IDLE), messages.next()).await
    {
        store::<P>(parts, batch, shutdown).await?;
    }
    Ok(())
}

/// Decodes a batch, commits its rows in one transaction, then acks them; a message that cannot decode is terminated.
async fn store<P: Projection>(
    parts: &Parts,
    batch: Vec<Result<jetstream::Message, pull::MessagesError>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Parts { db, live, metrics, .. } = parts;
    metrics.projector_batch(P::STREAM, P::CONSUMER, batch.len());
    let mut rows = Vec::with_capacity(batch.len());
    let mut acks = Vec::with_capacity(batch.len());
    for message in batch {
        let message = match message {
            Ok(message) => message,
            Err(err) => {
                tracing::debug!(error = %err, "consumer status");
                continue;
            }
        };
        let seq = message.info().map(|info| info.stream_sequence).unwrap_or_default();
        match P::decode(&message.subject, &message.payload) {
            Ok(row) => {
                rows.push((row, seq));
                acks.push(message);
            }
            Err(why) => {
                // Redelivering a message that can never decode would block nothing but waste work forever;
                // it stays in the stream for inspection.
                tracing::warn!(subject = %message.subject, seq, error = why, "malformed message; not projected");
                metrics.projector_malformed(P::STREAM, P::CONSUMER);
                let _ = message.ack_with(AckKind::Term).await;
            }
        }
    }
    P::enrich(parts, &mut rows).await?;
    commit_with_retry::<P>(db, &rows, shutdown).await?;
    for message in acks {
        if let Err(err) = message.ack().await {
            // The row is committed; a redelivery will upsert the same row again.
            tracing::debug!(error = %err, "ack failed after commit");
        }
    }
    if !rows.is_empty() {
        let (topic, ids) = P::changed(&rows);
        live.changed(topic, ids).await;
    }
    Ok(())
}

async fn commit_with_retry<P: Projection>(
    db: &Db,
    rows: &[(P::Row, u64)],
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        match P::commit(db, rows).await {
            Ok(()) => return Ok(()),
            Err(err) => {
                tracing::error!(stream = P::STREAM, error = %err, source = ?std::error::Error::source(&err), rows = rows.len(), "cannot store rows; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => anyhow::bail!("stopped before rows could be stored"),
                }
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Decodes a result and checks that it belongs on the subject it came on.
pub fn decode_result(subject_name: &str, payload: &[u8]) -> Result<ExecResult, String> {
    let result: ExecResult = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if subject::result(&result.pc_id, &result.exec_id) != subject_name {
        return Err(format!("result for `{}` arrived on `{subject_name}`", result.result_id));
    }
    if kanade_shared::ResultId::for_run(&result.exec_id, &result.pc_id) != result.result_id {
        return Err(format!("result id `{}` does not match its exec and pc", result.result_id));
    }
    Ok(result)
}

/// Projects heartbeats into the `agents` table until `shutdown`. The agents a batch updated are announced at most
/// once per [`live::AGENTS_EVERY`] (merged), since every agent reports every few seconds.
pub async fn heartbeats(
    client: async_nats::Client,
    db: Db,
    live: Publisher,
    offline_after: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut seen = Seen::new(offline_after);
    let subscription = client.queue_subscribe(subject::HEARTBEATS_ALL, BACKEND_QUEUE_GROUP.to_owned()).await?;
    let mut batches = subscription.ready_chunks(BATCH * 4);
    let mut announce = tokio::time::interval(live::AGENTS_EVERY);
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut updated: BTreeSet<String> = BTreeSet::new();
    loop {
        let batch = tokio::select! {
            batch = batches.next() => batch,
            _ = announce.tick(), if !updated.is_empty() => {
                live.changed(Topic::Agents, std::mem::take(&mut updated)).await;
                continue;
            }
            () = shutdown.cancelled() => return Ok(()),
        };
        let Some(batch) = batch else { anyhow::bail!("heartbeat subscription ended") };
        let now = Utc::now();
        let latest = fold_heartbeats(batch.iter().map(|m| (m.subject.as_str(), m.payload.as_ref())), now);
        if latest.is_empty() {
            continue;
        }
        // Heartbeats are a stream of "latest state"; one that cannot be stored is replaced by the next.
        match db.upsert_agents(&latest).await {
            Ok(new) => {
                // A new row is always news, also for an agent this replica's `seen` remembers from before it was
                // forgotten (`DELETE /api/agents/{pc}`).
                updated.extend(new);
                updated.extend(
                    latest
                        .iter()
                        .filter(|(hb, _)| seen.notable(hb, std::time::Instant::now()))
                        .map(|(hb, _)| hb.pc_id.to_string()),
                );
            }
            Err(err) => {
                tracing::error!(error = %err, source = ?std::error::Error::source(&err), agents = latest.len(), "cannot store heartbeats")
            }
        }
    }
}

/// What this replica last heard from each agent, so that a heartbeat is announced to dashboards only when it
/// changes what the agent lists show: a new agent, one back after being offline, or a changed version, OS, name,
/// group or full outbox. Announcing every heartbeat would have every open agent list refetch the whole fleet every
/// second. (Uptime, memory and "last seen" move with every heartbeat; the pages poll those.)
pub struct Seen {
    offline_after: Duration,
    agents: HashMap<String, (u64, std::time::Instant)>,
}

impl Seen {
    pub fn new(offline_after: Duration) -> Self {
        Self { offline_after, agents: HashMap::new() }
    }

    pub fn notable(&mut self, hb: &Heartbeat, now: std::time::Instant) -> bool {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&hb.hostname, &hb.os, &hb.os_version, &hb.arch, &hb.agent_version, &hb.groups, hb.outbox_full)
            .hash(&mut hasher);
        let shown = hasher.finish();
        let before = self.agents.insert(hb.pc_id.to_string(), (shown, now));
        match before {
            None => true,
            Some((was, at)) => was != shown || now.saturating_duration_since(at) > self.offline_after,
        }
    }
}

/// Keeps the newest valid heartbeat per agent from a batch; logs and drops the rest.
pub fn fold_heartbeats<'a>(
    messages: impl Iterator<Item = (&'a str, &'a [u8])>,
    now: DateTime<Utc>,
) -> Vec<(Heartbeat, DateTime<Utc>)> {
    let mut latest: HashMap<String, Heartbeat> = HashMap::new();
    for (subject_name, payload) in messages {
        let heartbeat: Heartbeat = match serde_json::from_slice(payload) {
            Ok(hb) => hb,
            Err(err) => {
                tracing::warn!(subject = subject_name, error = %err, "malformed heartbeat ignored");
                continue;
            }
        };
        if subject::heartbeat(&heartbeat.pc_id) != subject_name {
            tracing::warn!(subject = subject_name, pc_id = %heartbeat.pc_id, "heartbeat on another agent's subject ignored");
            continue;
        }
        match latest.get(heartbeat.pc_id.as_str()) {
            Some(seen) if seen.sent_at > heartbeat.sent_at => {}
            _ => {
                latest.insert(heartbeat.pc_id.to_string(), heartbeat);
            }
        }
    }
    latest.into_values().map(|hb| (hb, now)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(pc: &str, sent_at: &str) -> Vec<u8> {
        format!(r#"{{"pc_id":"{pc}","agent_version":"{sent_at}","sent_at":"{sent_at}"}}"#).into_bytes()
    }

    #[test]
    fn only_heartbeats_that_change_the_agent_lists_are_announced() {
        let mut seen = Seen::new(Duration::from_secs(30));
        let hb = |version: &str| -> Heartbeat {
            serde_json::from_str(&format!(
                r#"{{"pc_id":"a","agent_version":"{version}","sent_at":"2026-01-01T00:00:00Z"}}"#
            ))
            .unwrap()
        };
        let t0 = std::time::Instant::now();
        assert!(seen.notable(&hb("1.0"), t0), "a new agent");
        assert!(!seen.notable(&hb("1.0"), t0 + Duration::from_secs(10)), "the same again");
        assert!(seen.notable(&hb("1.1"), t0 + Duration::from_secs(20)), "a new version");
        assert!(!seen.notable(&hb("1.1"), t0 + Duration::from_secs(40)));
        assert!(seen.notable(&hb("1.1"), t0 + Duration::from_secs(80)), "back after longer than offline_after");
    }

    #[test]
    fn fold_keeps_the_newest_valid_heartbeat_per_agent() {
        let a1 = heartbeat("a", "2026-01-01T00:00:01Z");
        let a2 = heartbeat("a", "2026-01-01T00:00:02Z");
        let b = heartbeat("b", "2026-01-01T00:00:01Z");
        let batch: Vec<(&str, &[u8])> = vec![
            ("heartbeat.a", &a2),
            ("heartbeat.a", &a1),
            ("heartbeat.b", b"{not json"),
            ("heartbeat.c", &b),
            ("heartbeat.b", &b),
        ];
        let mut folded = fold_heartbeats(batch.into_iter(), Utc::now());
        folded.sort_by(|x, y| x.0.pc_id.cmp(&y.0.pc_id));
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[0].0.agent_version, "2026-01-01T00:00:02Z");
        assert_eq!(folded[1].0.pc_id.as_str(), "b");
    }

    #[test]
    fn timeline_events_are_checked_capped_and_keyed() {
        let body = |id: &str, pc: &str, kind: &str, details: &str| {
            format!(
                r#"{{"event_id":"{id}","pc_id":"{pc}","event":"{kind}","details":{details},"at":"2026-12-01T00:00:00Z"}}"#
            )
            .into_bytes()
        };
        let ok = decode_obs("obs.pc-1", &body("e-1", "pc-1", "agent_started", r#"{"version":"1"}"#)).unwrap();
        assert_eq!(ok.event_id.as_deref(), Some("e-1"));
        assert_eq!((ok.pc_id.as_str(), ok.kind.as_str()), ("pc-1", "agent_started"));
        assert_eq!(ok.details_json, r#"{"version":"1"}"#);
        assert_eq!(ok.key(7), "e-1");

        // Another agent's event on this subject, garbage, a kind that is not a name.
        let forged = decode_obs("obs.pc-2", &body("e-1", "pc-1", "agent_started", "{}")).unwrap_err();
        assert!(forged.contains("arrived on"), "{forged}");
        assert!(decode_obs("obs.pc-1", b"{not json").is_err());
        assert!(decode_obs("obs.pc-1", b"\xff\xfe").is_err());
        assert!(decode_obs("obs.pc-1", &body("e", "pc-1", "Agent Started", "{}")).is_err());
        assert!(decode_obs("obs.pc-1", &body("e", "pc-1", "", "{}")).is_err());
        assert!(decode_obs("obs.pc-1", &body("e", "pc-1", &"k".repeat(65), "{}")).is_err());
        // An unknown but well-formed kind is kept as it came.
        assert_eq!(
            decode_obs("obs.pc-1", &body("e", "pc-1", "agent_teleported", "{}")).unwrap().kind,
            "agent_teleported"
        );

        // No id, or one unfit to keep: keyed by the stream sequence, so a redelivery lands on the same row.
        let old = br#"{"pc_id":"pc-1","event":"agent_update","at":"2026-12-01T00:00:00Z"}"#;
        let old = decode_obs("obs.pc-1", old).unwrap();
        assert_eq!((old.event_id.clone(), old.key(42)), (None, "seq-42".to_owned()));
        assert_eq!(decode_obs("obs.pc-1", &body(&"x".repeat(65), "pc-1", "k", "{}")).unwrap().event_id, None);
        assert_eq!(decode_obs("obs.pc-1", &body("a b", "pc-1", "k", "{}")).unwrap().event_id, None);

        // Huge details are replaced by a note of their size.
        let huge = format!(r#"{{"blob":"{}"}}"#, "x".repeat(100_000));
        let capped = decode_obs("obs.pc-1", &body("e", "pc-1", "k", &huge)).unwrap();
        let note: serde_json::Value = serde_json::from_str(&capped.details_json).unwrap();
        assert_eq!(note["truncated"], true);
        assert!(note["bytes"].as_u64().unwrap() > 100_000);
    }

    #[test]
    fn run_starts_must_match_their_subject() {
        let body = br#"{"exec_id":"e1","job_id":"j","pc_id":"pc-1","started_at":"2026-01-01T00:00:00Z","new":1}"#;
        assert!(Events::decode("events.started.pc-1.e1", body).is_ok());
        assert!(Events::decode("events.started.pc-2.e1", body).unwrap_err().contains("arrived on"));
        assert!(Events::decode("events.started.pc-1.e1", b"{}").is_err());
    }

    #[test]
    fn results_must_match_their_subject() {
        let body = br#"{"result_id":"e1.pc-1","exec_id":"e1","job_id":"j","pc_id":"pc-1","status":"ok",
            "finished_at":"2026-01-01T00:00:00Z"}"#;
        assert!(decode_result("results.pc-1.e1", body).is_ok());
        assert!(decode_result("results.pc-2.e1", body).unwrap_err().contains("arrived on"));
        let forged = String::from_utf8_lossy(body).replace("\"e1.pc-1\"", "\"e2.pc-1\"");
        assert!(decode_result("results.pc-1.e1", forged.as_bytes()).unwrap_err().contains("does not match"));
        assert!(decode_result("results.pc-1.e1", b"\xff\xfe").is_err());
    }
}
