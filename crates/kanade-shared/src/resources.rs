//! Every JetStream stream, KV bucket and object store in DESIGN.md, as plain data. `kanade jetstream setup` turns
//! these into server configuration; nothing else names a stream or bucket by string.

use std::time::Duration;

/// Largest message any stream accepts. Scripts and results above this are refused at the broker; the agent caps
/// captured output well below it.
pub const MAX_MESSAGE_BYTES: i32 = 1024 * 1024;

pub const STREAM_EXEC: &str = "EXEC";
pub const STREAM_RESULTS: &str = "RESULTS";
pub const STREAM_EVENTS: &str = "EVENTS";
pub const STREAM_INVENTORY: &str = "INVENTORY";
pub const STREAM_OBS: &str = "OBS";
pub const STREAM_PERF: &str = "PERF";
pub const STREAM_AUDIT: &str = "AUDIT";
pub const STREAM_NOTIFICATIONS: &str = "NOTIFICATIONS";
pub const STREAM_OUTPUT: &str = "OUTPUT";

/// The most bytes one message of stream `OUTPUT` holds: an agent stores a whole output stream as chunks of this
/// size (the last one shorter), well under [`MAX_MESSAGE_BYTES`].
pub const OUTPUT_CHUNK_BYTES: usize = 128 * 1024;

pub const KV_SCRIPT_CURRENT: &str = "script_current";
pub const KV_SCRIPT_STATUS: &str = "script_status";
pub const KV_AGENT_CONFIG: &str = "agent_config";
pub const KV_AGENT_GROUPS: &str = "agent_groups";
pub const KV_JOBS: &str = "jobs";
pub const KV_SCHEDULES: &str = "schedules";
pub const KV_LEASES: &str = "leases";
/// The root-signed trust list (`kanade_shared::authority`), one key: [`TRUST_KEY`].
pub const KV_TRUST: &str = "trust_list";
/// The one key of [`KV_TRUST`].
pub const TRUST_KEY: &str = "current";

pub const OBJ_AGENT_RELEASES: &str = "agent_releases";
/// Metadata key under which every kanade object keeps its SHA-256 (lowercase hex), written at publish time.
pub const OBJECT_SHA256_KEY: &str = "sha256";
pub const OBJ_APP_PACKAGES: &str = "app_packages";
pub const OBJ_SCRIPTS: &str = "scripts";
pub const OBJ_RESULT_OUTPUT: &str = "result_output";

/// The durable consumer through which the backend projects `RESULTS` into SQL; shared by backend replicas.
pub const CONSUMER_RESULTS_PROJECTOR: &str = "backend-results";
/// The durable consumer through which the backend projects `AUDIT` into SQL.
pub const CONSUMER_AUDIT_PROJECTOR: &str = "backend-audit";
/// The durable consumer through which the backend projects `events.started.>` of `EVENTS` (a run began) into SQL.
pub const CONSUMER_EVENTS_PROJECTOR: &str = "backend-events";
/// The durable consumer through which the backend projects `events.consent.>` of `EVENTS` (where runs held for
/// their user's consent stand) into SQL.
pub const CONSUMER_CONSENT_PROJECTOR: &str = "backend-consent";
/// The durable consumer through which the backend projects `OBS` (the agents' timelines) into SQL.
pub const CONSUMER_OBS_PROJECTOR: &str = "backend-obs";
pub const CONSUMER_INVENTORY_PROJECTOR: &str = "backend-inventory";
/// The durable consumer through which the backend projects `PERF` (the agents' rollups) into SQL.
pub const CONSUMER_PERF_PROJECTOR: &str = "backend-perf";
pub const CONSUMER_JOB_FACTS_PROJECTOR: &str = "backend-job-facts";
/// The queue group backend replicas share for core subscriptions (heartbeats), so each message is handled once.
pub const BACKEND_QUEUE_GROUP: &str = "kanade-backend";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub subjects: &'static [&'static str],
    /// 0 means no per-subject limit.
    pub max_msgs_per_subject: i64,
    pub max_age: Duration,
    /// 0 means no size limit; otherwise the oldest messages go when the stream would outgrow it.
    pub max_bytes: i64,
    /// Window in which a repeated `Nats-Msg-Id` is dropped by the broker.
    pub duplicate_window: Duration,
    /// Allow direct get (any replica answers, no consumer needed); the agents' catch-up reads `EXEC` this way.
    pub allow_direct: bool,
}

pub const STREAMS: &[StreamSpec] = &[
    StreamSpec {
        name: STREAM_EXEC,
        description: "commands to agents; the newest instruction per job per target",
        subjects: &["commands.>"],
        max_msgs_per_subject: 1,
        max_age: Duration::from_secs(30 * 24 * 60 * 60),
        max_bytes: 0,
        duplicate_window: Duration::from_secs(2 * 60),
        allow_direct: true,
    },
    StreamSpec {
        name: STREAM_RESULTS,
        description: "one result per run, from the agents' outboxes",
        subjects: &["results.>"],
        max_msgs_per_subject: 0,
        max_age: Duration::from_secs(30 * 24 * 60 * 60),
        max_bytes: 0,
        // Long enough to cover an outbox retrying through a broker restart; the backend's idempotent upsert covers
        // anything older.
        duplicate_window: Duration::from_secs(60 * 60),
        allow_direct: true,
    },
    StreamSpec {
        name: STREAM_EVENTS,
        description: "run lifecycle events (a run began)",
        subjects: &["events.>"],
        max_msgs_per_subject: 0,
        max_age: Duration::from_secs(7 * 24 * 60 * 60),
        max_bytes: 0,
        duplicate_window: Duration::from_secs(2 * 60),
        allow_direct: false,
    },
    StreamSpec {
        name: STREAM_INVENTORY,
        description: "the latest inventory record per agent and kind",
        subjects: &["inventory.>"],
        max_msgs_per_subject: 1,
        max_age: Duration::ZERO,
        max_bytes: 0,
        duplicate_window: Duration::from_secs(2 * 60),
        allow_direct: true,
    },
    StreamSpec {
        name: STREAM_PERF,
        description: "each agent's performance rollup of every host_perf_interval, until the backend projects it",
        subjects: &[crate::subject::PERF_ROLLUPS_ALL],
        max_msgs_per_subject: 0,
        // A buffer between the agents and the backend's projector, not the history (SQL keeps that): a day, or
        // 4 GiB, whichever ends first. The broker keeps ~1.6 KB a rollup (BENCHMARKS.md), so 4 GiB is about four
        // and a half hours of 10,000 agents at one rollup a minute: a backend away longer loses the oldest.
        max_age: Duration::from_secs(24 * 60 * 60),
        max_bytes: 4 * 1024 * 1024 * 1024,
        duplicate_window: Duration::from_secs(2 * 60),
        allow_direct: false,
    },
    StreamSpec {
        name: STREAM_OBS,
        description: "agent timeline events (online, self-update, ...)",
        subjects: &["obs.>"],
        max_msgs_per_subject: 0,
        max_age: Duration::from_secs(30 * 24 * 60 * 60),
        max_bytes: 0,
        duplicate_window: Duration::from_secs(2 * 60),
        allow_direct: false,
    },
    StreamSpec {
        name: STREAM_OUTPUT,
        description: "whole run outputs too large to inline, in chunks: output.<pc>.<exec_id>.<stdout|stderr>.<n>",
        // Five tokens: the core live-tail subjects `output.<pc>.<exec_id>` are not captured. Per-PC subjects, so a
        // broker permission `output.<pc>.>` lets an agent write its own outputs and nobody else's (an object
        // store's subjects cannot say whose an object is).
        subjects: &[crate::subject::OUTPUT_CHUNKS_ALL],
        // A chunk sent again (an upload retried after its result did not get out) replaces the earlier copy.
        max_msgs_per_subject: 1,
        // As long as `RESULTS` keeps the results that point at them. Its size is bounded by the server's JetStream
        // storage; a `max_bytes` an operator sets (setup leaves it alone) makes the oldest outputs go first.
        max_age: Duration::from_secs(30 * 24 * 60 * 60),
        max_bytes: 0,
        duplicate_window: Duration::from_secs(2 * 60),
        // The backend reads a result's chunks one by one by subject.
        allow_direct: true,
    },
    StreamSpec {
        name: STREAM_NOTIFICATIONS,
        description: "operators' notifications to PCs' users, kept until they expire so an offline PC gets them",
        subjects: &[crate::subject::NOTICES_ALL],
        // One notification per subject (its id ends the subject): a retried send is stored once.
        max_msgs_per_subject: 1,
        // The longest a notification may be shown (`kanade notify --ttl`).
        max_age: crate::wire::MAX_NOTICE_TTL,
        max_bytes: 256 * 1024 * 1024,
        duplicate_window: Duration::from_secs(2 * 60),
        // Agents read back what they missed by batch direct get, as they do commands.
        allow_direct: true,
    },
    StreamSpec {
        name: STREAM_AUDIT,
        description: "every operator action",
        subjects: &["audit.>"],
        max_msgs_per_subject: 0,
        max_age: Duration::from_secs(365 * 24 * 60 * 60),
        max_bytes: 0,
        duplicate_window: Duration::from_secs(2 * 60),
        allow_direct: false,
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// Values kept per key.
    pub history: i64,
    /// A value older than this is gone (zero: kept). For `leases`, the lease's time to live: a holder that stops
    /// renewing loses its key this long after its last renewal.
    pub max_age: Duration,
}

/// How long the backends' leadership lease lasts without a renewal: a leader that dies is replaced this long (plus
/// a follower's next try) after its last renewal.
pub const LEADER_TTL: Duration = Duration::from_secs(15);
/// The key of the backends' leadership lease in `leases`.
pub const LEADER_KEY: &str = "backend";

const fn bucket(name: &'static str, description: &'static str, history: i64) -> BucketSpec {
    BucketSpec { name, description, history, max_age: Duration::ZERO }
}

pub const KV_BUCKETS: &[BucketSpec] = &[
    bucket(KV_SCRIPT_CURRENT, "job id -> the version that may run", 5),
    bucket(KV_SCRIPT_STATUS, "job id -> ACTIVE | REVOKED", 5),
    bucket(KV_AGENT_CONFIG, "layered agent config: global, groups.<g>, pcs.<pc>", 5),
    bucket(KV_AGENT_GROUPS, "pc -> operator-assigned groups", 5),
    bucket(KV_JOBS, "job id -> manifest", 10),
    bucket(KV_SCHEDULES, "schedule id -> schedule", 5),
    bucket(KV_TRUST, "the root-signed trust list of signing keys (key `current`)", 10),
    BucketSpec {
        name: KV_LEASES,
        description: "backend leadership leases, each gone LEADER_TTL after its last renewal",
        history: 1,
        max_age: LEADER_TTL,
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStoreSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// Objects older than this are removed by the broker; zero keeps them.
    pub max_age: Duration,
}

pub const OBJECT_STORES: &[ObjectStoreSpec] = &[
    ObjectStoreSpec {
        name: OBJ_AGENT_RELEASES,
        description: "agent binaries: <version>/<os>-<arch>",
        max_age: Duration::ZERO,
    },
    ObjectStoreSpec {
        name: OBJ_APP_PACKAGES,
        description: "application packages: <name>/<version>",
        max_age: Duration::ZERO,
    },
    ObjectStoreSpec { name: OBJ_SCRIPTS, description: "script objects: <name>/<version>", max_age: Duration::ZERO },
    ObjectStoreSpec {
        name: OBJ_RESULT_OUTPUT,
        description: "whole run outputs of older agents: <result_id>/stdout|stderr (agents now write stream OUTPUT)",
        // Agents no longer write here (an object store's subjects cannot be scoped to one PC, so writing would need
        // rights over every PC's objects); kept so the outputs of older agents' results still read. As long as
        // `RESULTS` keeps the results that point at them. Its size is bounded by the server's JetStream storage
        // (or a `max_bytes` an operator sets on `OBJ_result_output`, which setup leaves alone).
        max_age: Duration::from_secs(30 * 24 * 60 * 60),
    },
];

/// The name of a run's whole output stream in `result_output`: `<result_id>/stdout` or `<result_id>/stderr`. A result
/// id is `[a-z0-9_.-]` only, so the name is a safe object name and says whose output it is.
pub fn result_output_object(result: &crate::ResultId, stream: crate::wire::OutputStream) -> String {
    format!("{result}/{stream}")
}

/// The stream behind a KV bucket, as the server names it.
pub fn kv_stream_name(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The stream behind an object store, as the server names it.
pub fn object_store_stream_name(store: &str) -> String {
    format!("OBJ_{store}")
}

/// The KV bucket a stream holds, if it is one (`KV_<bucket>`).
pub fn bucket_of_kv_stream(stream: &str) -> Option<&str> {
    stream.strip_prefix("KV_").filter(|bucket| !bucket.is_empty())
}

/// The object store a stream holds, if it is one (`OBJ_<store>`).
pub fn store_of_object_stream(stream: &str) -> Option<&str> {
    stream.strip_prefix("OBJ_").filter(|store| !store.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_subjects_do_not_overlap() {
        let roots: Vec<&str> = STREAMS.iter().map(|s| s.subjects[0].split('.').next().unwrap()).collect();
        let mut unique = roots.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(roots.len(), unique.len());
    }

    #[test]
    fn stream_names_map_back_to_their_bucket_or_store() {
        assert_eq!(bucket_of_kv_stream(&kv_stream_name(KV_JOBS)), Some(KV_JOBS));
        assert_eq!(store_of_object_stream(&object_store_stream_name(OBJ_SCRIPTS)), Some(OBJ_SCRIPTS));
        assert_eq!(bucket_of_kv_stream(STREAM_EXEC), None);
        assert_eq!(bucket_of_kv_stream("KV_"), None);
    }

    #[test]
    fn output_keeps_one_message_per_chunk_and_not_the_live_tail() {
        let output = STREAMS.iter().find(|s| s.name == STREAM_OUTPUT).unwrap();
        assert_eq!((output.max_msgs_per_subject, output.allow_direct), (1, true));
        assert_eq!(output.subjects, &["output.*.*.*.*"]);
        let (pc, exec) = (crate::PcId::new("pc-1").unwrap(), crate::ExecId::new("e1").unwrap());
        assert_eq!(crate::subject::output(&pc, &exec).split('.').count(), 3, "the live tail stays core");
        assert!(OUTPUT_CHUNK_BYTES < MAX_MESSAGE_BYTES as usize / 2);
    }

    #[test]
    fn exec_keeps_one_message_per_subject() {
        let exec = STREAMS.iter().find(|s| s.name == STREAM_EXEC).unwrap();
        assert_eq!(exec.max_msgs_per_subject, 1);
        assert!(exec.allow_direct);
    }
}
