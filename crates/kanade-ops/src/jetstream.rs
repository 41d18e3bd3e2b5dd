//! Creates, updates and reports every stream, KV bucket and object store in `kanade_shared::resources`.
//! Idempotent: a second `setup` finds everything as wanted and changes nothing.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use kanade_shared::resources::{
    self, BucketSpec, MAX_MESSAGE_BYTES, OBJECT_STORES, ObjectStoreSpec, STREAMS, StreamSpec,
};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Stream,
    KeyValue,
    ObjectStore,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Stream => "stream",
            Kind::KeyValue => "kv",
            Kind::ObjectStore => "object store",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "fields")]
pub enum Action {
    Created,
    Updated(Vec<String>),
    Unchanged,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{kind} `{name}`: {message}")]
    Resource { kind: &'static str, name: String, message: String },
}

fn fail(kind: Kind, name: &str, err: impl std::fmt::Display) -> SetupError {
    SetupError::Resource { kind: kind.label(), name: name.to_owned(), message: err.to_string() }
}

/// The fields of a stream's config that kanade owns; anything else the server or an operator set is left alone.
#[derive(Debug, Clone, PartialEq)]
struct Owned {
    description: Option<String>,
    subjects: Option<Vec<String>>,
    max_messages_per_subject: i64,
    max_age: Duration,
    /// Stream size limit; 0 for none.
    max_bytes: i64,
    duplicate_window: Option<Duration>,
    allow_direct: bool,
    max_message_size: Option<i32>,
    num_replicas: usize,
}

impl Owned {
    /// Names of the fields where `config` differs from this, after applying this onto it.
    fn apply(&self, config: &mut stream::Config) -> Vec<String> {
        let mut changed = Vec::new();
        let mut set = |name: &str, differs: bool| {
            if differs {
                changed.push(name.to_owned());
            }
        };
        set("description", config.description != self.description);
        config.description = self.description.clone();
        if let Some(subjects) = &self.subjects {
            set("subjects", &config.subjects != subjects);
            config.subjects = subjects.clone();
        }
        // The server reports "no limit" as -1 or 0 depending on version; both mean the same.
        let per_subject = |v: i64| if v <= 0 { -1 } else { v };
        set(
            "max_messages_per_subject",
            per_subject(config.max_messages_per_subject) != per_subject(self.max_messages_per_subject),
        );
        config.max_messages_per_subject = per_subject(self.max_messages_per_subject);
        set("max_age", config.max_age != self.max_age);
        config.max_age = self.max_age;
        // Like the per-subject limit: "no limit" is -1 or 0 depending on version. KV buckets and object stores keep
        // whatever size limit an operator set on them.
        if self.max_bytes > 0 || self.subjects.is_some() {
            let limit = |v: i64| if v <= 0 { -1 } else { v };
            set("max_bytes", limit(config.max_bytes) != limit(self.max_bytes));
            config.max_bytes = limit(self.max_bytes);
        }
        if let Some(window) = self.duplicate_window {
            set("duplicate_window", config.duplicate_window != window);
            config.duplicate_window = window;
        }
        set("allow_direct", config.allow_direct != self.allow_direct);
        config.allow_direct = self.allow_direct;
        if let Some(size) = self.max_message_size {
            set("max_message_size", config.max_message_size != size);
            config.max_message_size = size;
        }
        set("num_replicas", config.num_replicas != self.num_replicas);
        config.num_replicas = self.num_replicas;
        changed
    }
}

fn stream_owned(spec: &StreamSpec, replicas: usize) -> Owned {
    Owned {
        description: Some(spec.description.to_owned()),
        subjects: Some(spec.subjects.iter().map(|s| (*s).to_owned()).collect()),
        max_messages_per_subject: spec.max_msgs_per_subject,
        max_age: spec.max_age,
        max_bytes: spec.max_bytes,
        duplicate_window: Some(spec.duplicate_window),
        allow_direct: spec.allow_direct,
        max_message_size: Some(MAX_MESSAGE_BYTES),
        num_replicas: replicas,
    }
}

fn bucket_owned(spec: &BucketSpec, replicas: usize) -> Owned {
    Owned {
        description: Some(spec.description.to_owned()),
        subjects: None,
        max_messages_per_subject: spec.history,
        max_age: spec.max_age,
        max_bytes: 0,
        duplicate_window: None,
        // KV reads go through direct get, so any replica can answer.
        allow_direct: true,
        max_message_size: Some(MAX_MESSAGE_BYTES),
        num_replicas: replicas,
    }
}

fn object_store_owned(spec: &ObjectStoreSpec, replicas: usize) -> Owned {
    Owned {
        description: Some(spec.description.to_owned()),
        subjects: None,
        max_messages_per_subject: 0,
        max_age: spec.max_age,
        max_bytes: 0,
        duplicate_window: None,
        allow_direct: true,
        max_message_size: None,
        num_replicas: replicas,
    }
}

/// Brings an existing stream's owned fields to `owned`; `None` when the stream does not exist.
async fn reconcile(
    js: &jetstream::Context,
    kind: Kind,
    stream_name: &str,
    owned: &Owned,
) -> Result<Option<Action>, SetupError> {
    let stream = match js.get_stream(stream_name).await {
        Ok(stream) => stream,
        Err(err) if is_not_found(&err) => return Ok(None),
        Err(err) => return Err(fail(kind, stream_name, err)),
    };
    let mut config = stream.cached_info().config.clone();
    let changed = owned.apply(&mut config);
    if changed.is_empty() {
        return Ok(Some(Action::Unchanged));
    }
    let taken = fit_to_broker(stream_name, config, |config| async { js.update_stream(config).await })
        .await
        .map_err(|err| fail(kind, stream_name, err))?;
    // A cap the broker could not take in full may end where it already was: then nothing changed.
    let changed = owned_with_cap(owned, taken.max_bytes).apply(&mut stream.cached_info().config.clone());
    Ok(Some(if changed.is_empty() { Action::Unchanged } else { Action::Updated(changed) }))
}

/// The smallest size cap [`fit_to_broker`] goes down to: below it a stream could not buffer even minutes of a large
/// fleet's traffic, and the broker needs more disk instead.
pub const MIN_STREAM_BYTES: i64 = 64 * 1024 * 1024;

/// Creates or updates a stream with `config` (`put`); when the broker cannot reserve the stream's size cap (a
/// broker's store defaults to 75% of the disk that was free when it started, so a small or full disk refuses a
/// 4 GiB `PERF`), halves the cap until the broker can, down to [`MIN_STREAM_BYTES`], and says so. A buffer smaller
/// than planned only means that a backend away for long loses the oldest messages sooner; refusing to start would
/// lose them all. Returns the config the broker took.
async fn fit_to_broker<F, Fut, T>(
    name: &str,
    mut config: stream::Config,
    mut put: F,
) -> Result<stream::Config, jetstream::context::CreateStreamError>
where
    F: FnMut(stream::Config) -> Fut,
    Fut: std::future::Future<Output = Result<T, jetstream::context::CreateStreamError>>,
{
    let wanted = config.max_bytes;
    loop {
        match put(config.clone()).await {
            Ok(_) => {
                if config.max_bytes != wanted {
                    tracing::warn!(
                        stream = name,
                        wanted,
                        capped = config.max_bytes,
                        "the broker cannot reserve this stream's size cap, so it keeps a smaller buffer (give \
                         nats-server more disk or a larger jetstream max_file_store, then run setup again)"
                    );
                }
                return Ok(config);
            }
            Err(err) if is_storage_refusal(&err) && config.max_bytes / 2 >= MIN_STREAM_BYTES => config.max_bytes /= 2,
            Err(err) => return Err(err),
        }
    }
}

/// The broker has not the storage that a stream's size cap asks it to reserve.
fn is_storage_refusal(err: &jetstream::context::CreateStreamError) -> bool {
    use jetstream::ErrorCode;
    matches!(
        err.kind(),
        jetstream::context::CreateStreamErrorKind::JetStream(inner)
            if [ErrorCode::STORAGE_RESOURCES_EXCEEDED, ErrorCode::INSUFFICIENT_RESOURCES].contains(&inner.error_code())
    )
}

/// `owned` with the size cap the broker could reserve.
fn owned_with_cap(owned: &Owned, max_bytes: i64) -> Owned {
    let mut owned = owned.clone();
    if owned.max_bytes > 0 {
        owned.max_bytes = max_bytes;
    }
    owned
}

fn is_not_found(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Creates or updates everything DESIGN.md lists, with `replicas` copies each.
pub async fn setup(js: &jetstream::Context, replicas: usize) -> Result<Vec<Change>, SetupError> {
    let mut changes = Vec::new();
    for spec in STREAMS {
        let owned = stream_owned(spec, replicas);
        let action = match reconcile(js, Kind::Stream, spec.name, &owned).await? {
            Some(action) => action,
            None => {
                let mut config = stream::Config {
                    name: spec.name.to_owned(),
                    storage: stream::StorageType::File,
                    retention: stream::RetentionPolicy::Limits,
                    discard: stream::DiscardPolicy::Old,
                    ..Default::default()
                };
                owned.apply(&mut config);
                fit_to_broker(spec.name, config, |config| async { js.create_stream(config).await })
                    .await
                    .map_err(|err| fail(Kind::Stream, spec.name, err))?;
                Action::Created
            }
        };
        changes.push(Change { kind: Kind::Stream, name: spec.name.to_owned(), action });
    }
    for spec in resources::KV_BUCKETS {
        let owned = bucket_owned(spec, replicas);
        let stream_name = resources::kv_stream_name(spec.name);
        let action = match reconcile(js, Kind::KeyValue, &stream_name, &owned).await? {
            Some(action) => action,
            None => {
                js.create_key_value(kv::Config {
                    bucket: spec.name.to_owned(),
                    description: spec.description.to_owned(),
                    history: spec.history,
                    max_age: spec.max_age,
                    max_value_size: MAX_MESSAGE_BYTES,
                    storage: stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|err| fail(Kind::KeyValue, spec.name, err))?;
                Action::Created
            }
        };
        changes.push(Change { kind: Kind::KeyValue, name: spec.name.to_owned(), action });
    }
    for spec in OBJECT_STORES {
        let owned = object_store_owned(spec, replicas);
        let stream_name = resources::object_store_stream_name(spec.name);
        let action = match reconcile(js, Kind::ObjectStore, &stream_name, &owned).await? {
            Some(action) => action,
            None => {
                js.create_object_store(object_store::Config {
                    bucket: spec.name.to_owned(),
                    description: Some(spec.description.to_owned()),
                    max_age: spec.max_age,
                    storage: stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|err| fail(Kind::ObjectStore, spec.name, err))?;
                Action::Created
            }
        };
        changes.push(Change { kind: Kind::ObjectStore, name: spec.name.to_owned(), action });
    }
    Ok(changes)
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub kind: Kind,
    pub name: String,
    pub exists: bool,
    pub messages: u64,
    pub bytes: u64,
    pub replicas: usize,
    pub consumers: usize,
    /// Replicas that are current, out of `replicas`, when the server runs clustered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The cluster's name, when the server runs clustered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Peers holding a replica that are offline or behind.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lagging: Vec<String>,
    /// The resource did not answer (on a cluster: no leader right now, for example while one is elected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// For the `leases` bucket: the backends' leadership lease as it stands (none: no backend leads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<kanade_shared::wire::LeaderLease>,
}

impl Status {
    /// A resource known only by name: nothing read about it.
    fn unknown(kind: Kind, name: String) -> Self {
        Self {
            kind,
            name,
            exists: true,
            messages: 0,
            bytes: 0,
            replicas: 0,
            consumers: 0,
            current_replicas: None,
            leader: None,
            cluster: None,
            lagging: Vec::new(),
            unavailable: None,
            lease: None,
        }
    }
}

/// Reports every resource: whether it exists, its size and replication.
pub async fn status(js: &jetstream::Context) -> Result<Vec<Status>, SetupError> {
    let mut wanted: Vec<(Kind, String, String)> =
        STREAMS.iter().map(|s| (Kind::Stream, s.name.to_owned(), s.name.to_owned())).collect();
    wanted.extend(
        resources::KV_BUCKETS.iter().map(|b| (Kind::KeyValue, b.name.to_owned(), resources::kv_stream_name(b.name))),
    );
    wanted.extend(
        OBJECT_STORES
            .iter()
            .map(|o| (Kind::ObjectStore, o.name.to_owned(), resources::object_store_stream_name(o.name))),
    );
    let mut out = Vec::new();
    for (kind, name, stream_name) in wanted {
        let status = match js.get_stream(&stream_name).await {
            Ok(stream) => {
                let info = stream.cached_info();
                let current_replicas = info
                    .cluster
                    .as_ref()
                    .filter(|c| c.leader.is_some())
                    .map(|c| 1 + c.replicas.iter().filter(|peer| peer.current && !peer.offline).count());
                Status {
                    kind,
                    name,
                    exists: true,
                    messages: info.state.messages,
                    bytes: info.state.bytes,
                    replicas: info.config.num_replicas,
                    consumers: info.state.consumer_count,
                    current_replicas,
                    leader: info.cluster.as_ref().and_then(|c| c.leader.clone()),
                    cluster: info.cluster.as_ref().and_then(|c| c.name.clone()),
                    unavailable: None,
                    lagging: info
                        .cluster
                        .as_ref()
                        .map(|c| {
                            c.replicas.iter().filter(|p| !p.current || p.offline).map(|p| p.name.clone()).collect()
                        })
                        .unwrap_or_default(),
                    lease: None,
                }
            }
            Err(err) if is_not_found(&err) => Status { exists: false, ..Status::unknown(kind, name) },
            // One resource without an answer does not hide the others: that is when the report is wanted most.
            Err(err) => Status { unavailable: Some(err.to_string()), ..Status::unknown(kind, name) },
        };
        out.push(status);
    }
    if let Some(leases) =
        out.iter_mut().find(|s| s.kind == Kind::KeyValue && s.name == resources::KV_LEASES && s.exists)
        && let Ok(kv) = js.get_key_value(resources::KV_LEASES).await
        && let Ok(Some(entry)) = kv.entry(resources::LEADER_KEY).await
        && entry.operation == kv::Operation::Put
    {
        leases.lease = serde_json::from_slice(&entry.value).ok();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applying_owned_fields_twice_changes_nothing_the_second_time() {
        let owned = stream_owned(&STREAMS[0], 1);
        let mut config = stream::Config { name: "EXEC".into(), ..Default::default() };
        assert!(!owned.apply(&mut config).is_empty());
        assert!(owned.apply(&mut config).is_empty());
        let more = stream_owned(&STREAMS[0], 3);
        assert_eq!(more.apply(&mut config), vec!["num_replicas".to_owned()]);
    }
}
