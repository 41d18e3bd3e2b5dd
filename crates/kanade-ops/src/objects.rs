//! Versioned objects in the `scripts` and `app_packages` object stores, keyed `name/version`, each with its
//! SHA-256 recorded in the object's metadata at publish time.

use async_nats::jetstream::object_store::{InfoErrorKind, ObjectInfo, ObjectStore};
use base64::Engine as _;
use futures::StreamExt;
use kanade_shared::JobId;
use kanade_shared::resources::{OBJ_AGENT_RELEASES, OBJ_APP_PACKAGES, OBJ_SCRIPTS};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::OpsError;

/// Metadata key under which kanade keeps an object's SHA-256 (lowercase hex).
pub const SHA256_KEY: &str = kanade_shared::resources::OBJECT_SHA256_KEY;

/// Which object store, and its size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Scripts,
    Apps,
    /// Agent binaries, keyed `<version>/<os>-<arch>`.
    Agents,
}

impl Store {
    pub fn bucket(self) -> &'static str {
        match self {
            Store::Scripts => OBJ_SCRIPTS,
            Store::Apps => OBJ_APP_PACKAGES,
            Store::Agents => OBJ_AGENT_RELEASES,
        }
    }

    pub fn max_bytes(self) -> u64 {
        match self {
            Store::Scripts => kanade_shared::wire::MAX_SCRIPT_BYTES as u64,
            Store::Apps => 8 * 1024 * 1024 * 1024,
            Store::Agents => 512 * 1024 * 1024,
        }
    }
}

/// A published object as kanade describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub name: String,
    pub version: String,
    pub size: u64,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
}

pub async fn open(client: &async_nats::Client, store: Store) -> Result<ObjectStore, OpsError> {
    async_nats::jetstream::new(client.clone())
        .get_object_store(store.bucket())
        .await
        .map_err(|_| OpsError::Missing { kind: "object store", name: store.bucket() })
}

/// The object's key: `name/version`.
pub fn key(name: &JobId, version: &str) -> String {
    format!("{name}/{version}")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The broker's digest (`SHA-256=<base64url>`) as lowercase hex.
pub fn broker_sha256(info: &ObjectInfo) -> Option<String> {
    let encoded = info.digest.as_deref()?.strip_prefix("SHA-256=")?;
    let raw = base64::engine::general_purpose::URL_SAFE.decode(encoded).ok()?;
    Some(hex(&raw))
}

fn describe(info: &ObjectInfo) -> Published {
    let (name, version) = info.name.split_once('/').unwrap_or((info.name.as_str(), ""));
    Published {
        name: name.to_owned(),
        version: version.to_owned(),
        size: info.size as u64,
        sha256: info.metadata.get(SHA256_KEY).cloned().or_else(|| broker_sha256(info)).unwrap_or_default(),
        action: None,
    }
}

/// The published object `key`, if there is one.
pub async fn find(objects: &ObjectStore, key: &str) -> Result<Option<Published>, OpsError> {
    match objects.info(key).await {
        Ok(info) if !info.deleted => Ok(Some(describe(&info))),
        Ok(_) => Ok(None),
        Err(err) if err.kind() == InfoErrorKind::NotFound => Ok(None),
        Err(err) => Err(OpsError::nats(format!("cannot look up `{key}`"), err)),
    }
}

pub async fn list(objects: &ObjectStore) -> Result<Vec<Published>, OpsError> {
    let mut entries = objects.list().await.map_err(|e| OpsError::nats("cannot list objects", e))?;
    let mut out = Vec::new();
    while let Some(info) = entries.next().await {
        let info = info.map_err(|e| OpsError::nats("cannot list objects", e))?;
        if !info.deleted {
            out.push(describe(&info));
        }
    }
    out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    Ok(out)
}

/// Reads `key` whole (at most `store`'s limit) and checks it against `expected_sha256`: what is used is exactly
/// what was published (DESIGN.md, guarantee 4).
pub async fn read_verified(
    objects: &ObjectStore,
    store: Store,
    key: &str,
    expected_sha256: &str,
) -> Result<Vec<u8>, OpsError> {
    let mut object = objects.get(key).await.map_err(|e| OpsError::nats(format!("cannot read `{key}`"), e))?;
    let mut bytes = Vec::new();
    let mut limited = (&mut object).take(store.max_bytes() + 1);
    limited.read_to_end(&mut bytes).await.map_err(|e| OpsError::nats(format!("cannot read `{key}`"), e))?;
    if bytes.len() as u64 > store.max_bytes() {
        return Err(OpsError::Invalid(format!("`{key}` is larger than the limit of {} bytes", store.max_bytes())));
    }
    let actual = hex(&Sha256::digest(&bytes));
    if actual != expected_sha256 {
        return Err(OpsError::Invalid(format!(
            "`{key}` has SHA-256 {actual}, not the {expected_sha256} recorded when the job was created; refusing to use it"
        )));
    }
    Ok(bytes)
}
