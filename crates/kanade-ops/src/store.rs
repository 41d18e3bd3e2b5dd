//! Any KV bucket and object store on the broker, read and changed by hand: what `kanade jetstream kv` and
//! `kanade jetstream object` do for the runbooks. Names are checked by NATS's rules before anything is sent; which
//! buckets and stores are kanade's own (and so need `--yes` to change) comes from `kanade_shared::resources`.
//!
//! Object reads are streamed: [`open_object`] hands back a reader, never the whole object in memory.

use std::fmt;
use std::str::FromStr;

use async_nats::jetstream::kv::{self, EntryErrorKind, Operation};
use async_nats::jetstream::object_store::{self, InfoErrorKind, ObjectInfo};
use async_nats::jetstream::{self, context::KeyValueErrorKind, context::ObjectStoreErrorKind};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use kanade_shared::resources;
use serde::Serialize;

/// Longest key or object name taken: far beyond any kanade uses, well below a subject's practical size.
pub const MAX_NAME_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("there is no KV bucket `{0}` (`kanade jetstream kv ls` lists them)")]
    NoBucket(String),
    #[error("bucket `{bucket}` has no key `{key}`")]
    NoKey { bucket: String, key: String },
    #[error("there is no object store `{0}` (`kanade jetstream object ls` lists them)")]
    NoStore(String),
    #[error("object store `{store}` has no object `{name}`")]
    NoObject { store: String, name: String },
    #[error("the value is {size} bytes; bucket `{bucket}` takes at most {limit}")]
    TooLarge { bucket: String, size: usize, limit: usize },
    #[error("{what}")]
    Nats {
        what: String,
        #[source]
        source: async_nats::Error,
    },
}

fn nats(what: impl Into<String>, source: impl Into<async_nats::Error>) -> StoreError {
    StoreError::Nats { what: what.into(), source: source.into() }
}

/// A name that breaks NATS's rules for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind}: {rule}")]
pub struct NameError {
    kind: &'static str,
    value: String,
    rule: &'static str,
}

/// A KV bucket's or object store's name: letters, digits, `_` and `-` (what NATS allows in a stream name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BucketName(String);

impl FromStr for BucketName {
    type Err = NameError;

    fn from_str(value: &str) -> Result<Self, NameError> {
        let ok = !value.is_empty()
            && value.len() <= 255
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(NameError {
                kind: "bucket or store name",
                value: value.to_owned(),
                rule: "use 1-255 letters, digits, `_` and `-`",
            })
        }
    }
}

impl BucketName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// One of the KV buckets kanade itself creates and relies on.
    pub fn is_kanade_bucket(&self) -> bool {
        resources::KV_BUCKETS.iter().any(|b| b.name == self.0)
    }

    /// One of the object stores kanade itself creates and relies on.
    pub fn is_kanade_store(&self) -> bool {
        resources::OBJECT_STORES.iter().any(|s| s.name == self.0)
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A KV key: letters, digits and `-/_=.`, not starting or ending with `.`, no empty token (`..`): it becomes
/// part of a subject, so no wildcard and no space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct KvKey(String);

impl FromStr for KvKey {
    type Err = NameError;

    fn from_str(value: &str) -> Result<Self, NameError> {
        let ok = !value.is_empty()
            && value.len() <= MAX_NAME_BYTES
            && !value.starts_with('.')
            && !value.ends_with('.')
            && !value.contains("..")
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(NameError {
                kind: "key",
                value: value.to_owned(),
                rule: "use letters, digits and `-/_=.`, not starting or ending with `.` and without `..`",
            })
        }
    }
}

impl KvKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object's name: any text the store keeps (it is encoded before it goes into a subject), but not empty, not
/// over [`MAX_NAME_BYTES`], and without control characters or surrounding whitespace, which no runbook can type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ObjectName(String);

impl FromStr for ObjectName {
    type Err = NameError;

    fn from_str(value: &str) -> Result<Self, NameError> {
        let ok = !value.is_empty()
            && value.len() <= MAX_NAME_BYTES
            && value.trim() == value
            && !value.chars().any(char::is_control);
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(NameError {
                kind: "object name",
                value: value.escape_debug().to_string(),
                rule: "use 1-1024 bytes without control characters or surrounding spaces",
            })
        }
    }
}

impl ObjectName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A KV bucket or object store as listed: its name, how many values (or chunks) and bytes its stream holds, and
/// whether it is one of kanade's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub name: String,
    pub values: u64,
    pub bytes: u64,
    pub kanade: bool,
}

async fn summaries(
    js: &jetstream::Context,
    of: fn(&str) -> Option<&str>,
    own: fn(&BucketName) -> bool,
) -> Result<Vec<Summary>, StoreError> {
    let mut streams = js.streams();
    let mut out = Vec::new();
    while let Some(info) = streams.next().await {
        let info = info.map_err(|e| nats("cannot list the streams", e))?;
        let Some(name) = of(&info.config.name) else { continue };
        let kanade = name.parse::<BucketName>().is_ok_and(|name| own(&name));
        out.push(Summary { name: name.to_owned(), values: info.state.messages, bytes: info.state.bytes, kanade });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every KV bucket on the broker, kanade's own and any other.
pub async fn buckets(js: &jetstream::Context) -> Result<Vec<Summary>, StoreError> {
    summaries(js, resources::bucket_of_kv_stream, BucketName::is_kanade_bucket).await
}

/// Every object store on the broker.
pub async fn stores(js: &jetstream::Context) -> Result<Vec<Summary>, StoreError> {
    summaries(js, resources::store_of_object_stream, BucketName::is_kanade_store).await
}

async fn bucket(js: &jetstream::Context, name: &BucketName) -> Result<kv::Store, StoreError> {
    js.get_key_value(name.as_str()).await.map_err(|err| match err.kind() {
        KeyValueErrorKind::GetBucket => StoreError::NoBucket(name.to_string()),
        _ => nats(format!("cannot open bucket `{name}`"), err),
    })
}

/// The bucket's keys that hold a value, sorted.
pub async fn keys(js: &jetstream::Context, name: &BucketName) -> Result<Vec<String>, StoreError> {
    let store = bucket(js, name).await?;
    let mut keys = store.keys().await.map_err(|e| nats(format!("cannot list the keys of `{name}`"), e))?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        out.push(key.map_err(|e| nats(format!("cannot list the keys of `{name}`"), e))?);
    }
    out.sort();
    Ok(out)
}

/// A key's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub value: Bytes,
    pub revision: u64,
    pub created: DateTime<Utc>,
}

async fn entry(store: &kv::Store, name: &BucketName, key: &KvKey) -> Result<Option<kv::Entry>, StoreError> {
    match store.entry(key.as_str()).await {
        Ok(Some(entry)) if entry.operation == Operation::Put => Ok(Some(entry)),
        Ok(_) => Ok(None),
        Err(err) if err.kind() == EntryErrorKind::InvalidKey => Ok(None),
        Err(err) => Err(nats(format!("cannot read `{key}` in `{name}`"), err)),
    }
}

/// The broker's time as chrono's (async-nats keeps it as `time::OffsetDateTime`).
fn to_chrono(at: async_nats::datetime::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(i64::try_from(at.unix_timestamp_nanos()).unwrap_or(i64::MAX))
}

/// The current value of `key`.
pub async fn get(js: &jetstream::Context, name: &BucketName, key: &KvKey) -> Result<Value, StoreError> {
    let store = bucket(js, name).await?;
    let entry = entry(&store, name, key)
        .await?
        .ok_or_else(|| StoreError::NoKey { bucket: name.to_string(), key: key.to_string() })?;
    Ok(Value { value: entry.value.clone(), revision: entry.revision, created: to_chrono(entry.created) })
}

/// The largest value `store` takes: its own limit, and never more than the server's `max_payload`.
fn value_limit(js: &jetstream::Context, store: &kv::Store) -> usize {
    let server = js.client().server_info().max_payload;
    match usize::try_from(store.stream.cached_info().config.max_message_size) {
        Ok(own) if own > 0 => own.min(server),
        _ => server,
    }
}

/// Puts `value` under `key` and returns its revision. A value over the bucket's limit is refused before it is sent.
pub async fn put(js: &jetstream::Context, name: &BucketName, key: &KvKey, value: Bytes) -> Result<u64, StoreError> {
    let store = bucket(js, name).await?;
    let limit = value_limit(js, &store);
    if value.len() > limit {
        return Err(StoreError::TooLarge { bucket: name.to_string(), size: value.len(), limit });
    }
    store.put(key.as_str(), value).await.map_err(|e| nats(format!("cannot put `{key}` in `{name}`"), e))
}

/// Deletes `key` (its history stays, as KV deletes do); a key that holds no value is an error.
pub async fn delete(js: &jetstream::Context, name: &BucketName, key: &KvKey) -> Result<u64, StoreError> {
    let store = bucket(js, name).await?;
    let current = entry(&store, name, key)
        .await?
        .ok_or_else(|| StoreError::NoKey { bucket: name.to_string(), key: key.to_string() })?;
    store
        .delete_expect_revision(key.as_str(), Some(current.revision))
        .await
        .map_err(|e| nats(format!("cannot delete `{key}` in `{name}`"), e))?;
    Ok(current.revision)
}

/// An object as listed: name, size, when it was last written, and its digest as the broker has it
/// (`SHA-256=<base64url>`) and as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Object {
    pub name: String,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
    pub digest: Option<String>,
    pub sha256: Option<String>,
    pub chunks: u64,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn describe(info: &ObjectInfo) -> Object {
    Object {
        name: info.name.clone(),
        size: info.size as u64,
        modified: info.modified.map(to_chrono),
        digest: info.digest.clone(),
        sha256: crate::objects::broker_sha256(info),
        chunks: info.chunks as u64,
        metadata: info.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        description: info.description.clone().filter(|d| !d.is_empty()),
    }
}

async fn object_store(js: &jetstream::Context, name: &BucketName) -> Result<object_store::ObjectStore, StoreError> {
    js.get_object_store(name.as_str()).await.map_err(|err| match err.kind() {
        ObjectStoreErrorKind::GetStore => StoreError::NoStore(name.to_string()),
        _ => nats(format!("cannot open object store `{name}`"), err),
    })
}

/// The store's objects (not the deleted), by name.
pub async fn objects(js: &jetstream::Context, store: &BucketName) -> Result<Vec<Object>, StoreError> {
    let objects = object_store(js, store).await?;
    let mut list = objects.list().await.map_err(|e| nats(format!("cannot list `{store}`"), e))?;
    let mut out = Vec::new();
    while let Some(info) = list.next().await {
        let info = info.map_err(|e| nats(format!("cannot list `{store}`"), e))?;
        if !info.deleted {
            out.push(describe(&info));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

async fn info_of(
    objects: &object_store::ObjectStore,
    store: &BucketName,
    name: &ObjectName,
) -> Result<ObjectInfo, StoreError> {
    let missing = || StoreError::NoObject { store: store.to_string(), name: name.to_string() };
    match objects.info(name.as_str()).await {
        Ok(info) if !info.deleted => Ok(info),
        Ok(_) => Err(missing()),
        Err(err) if err.kind() == InfoErrorKind::NotFound => Err(missing()),
        Err(err) => Err(nats(format!("cannot look up `{name}` in `{store}`"), err)),
    }
}

/// One object's description.
pub async fn object(js: &jetstream::Context, store: &BucketName, name: &ObjectName) -> Result<Object, StoreError> {
    let objects = object_store(js, store).await?;
    Ok(describe(&info_of(&objects, store, name).await?))
}

/// An object's description and a reader of its bytes, which checks the digest once the last byte is read (a
/// mismatch is a read error).
pub async fn open_object(
    js: &jetstream::Context,
    store: &BucketName,
    name: &ObjectName,
) -> Result<(Object, object_store::Object), StoreError> {
    let objects = object_store(js, store).await?;
    let info = info_of(&objects, store, name).await?;
    let reader = objects.get(name.as_str()).await.map_err(|e| nats(format!("cannot read `{name}` in `{store}`"), e))?;
    Ok((describe(&info), reader))
}

/// Deletes an object and returns what it was.
pub async fn delete_object(
    js: &jetstream::Context,
    store: &BucketName,
    name: &ObjectName,
) -> Result<Object, StoreError> {
    let objects = object_store(js, store).await?;
    let info = info_of(&objects, store, name).await?;
    objects.delete(name.as_str()).await.map_err(|e| nats(format!("cannot delete `{name}` in `{store}`"), e))?;
    Ok(describe(&info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_nats_rules() {
        for good in ["agent_config", "my-bucket", "B1"] {
            assert!(good.parse::<BucketName>().is_ok(), "{good}");
        }
        for bad in ["", "a b", "a.b", "a*", "a>", "ä", &"x".repeat(256)] {
            let err = bad.parse::<BucketName>().unwrap_err();
            assert!(err.to_string().contains("is not a valid bucket or store name"), "{err}");
        }
        for good in ["global", "groups.canary", "pcs.pc-1", "a/b=c_d"] {
            assert!(good.parse::<KvKey>().is_ok(), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a*", "a.>", "tab\there", &"k".repeat(MAX_NAME_BYTES + 1)] {
            assert!(bad.parse::<KvKey>().is_err(), "{bad}");
        }
        for good in ["1.2.0/linux-x86_64", "echo/1.0", "with space inside"] {
            assert!(good.parse::<ObjectName>().is_ok(), "{good}");
        }
        for bad in ["", " lead", "trail ", "nl\nx", "nul\0", &"o".repeat(MAX_NAME_BYTES + 1)] {
            assert!(bad.parse::<ObjectName>().is_err(), "{bad:?}");
        }
        let err = "nl\nx".parse::<ObjectName>().unwrap_err().to_string();
        assert!(err.contains("`nl\\nx`"), "the control character is shown escaped: {err}");
    }

    #[test]
    fn kanade_s_own_buckets_and_stores_come_from_resources() {
        assert!("agent_config".parse::<BucketName>().unwrap().is_kanade_bucket());
        assert!(!"notes".parse::<BucketName>().unwrap().is_kanade_bucket());
        assert!("agent_releases".parse::<BucketName>().unwrap().is_kanade_store());
        assert!(!"agent_config".parse::<BucketName>().unwrap().is_kanade_store());
    }
}
