//! Signing on the operator's side: signing keys as files, the signature headers a command, kill or job-state value
//! is published with, and the trust list in KV `trust_list` (read, and replaced only by a newer version the root
//! signed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use kanade_shared::authority::{PublicKey, Signature, SignedTrustList, SigningKey, TrustList, trust};
use kanade_shared::resources::{KV_TRUST, TRUST_KEY};

use crate::OpsError;

/// The folder of the operator's own kanade files (signing key, sign-in): `KANADE_CONFIG_DIR`, else the platform's
/// per-user config folder (`~/.config/kanade`, `%APPDATA%\kanade`).
pub fn user_config_dir() -> Option<PathBuf> {
    match std::env::var_os("KANADE_CONFIG_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => dirs::config_dir().map(|dir| dir.join("kanade")),
    }
}

/// The operator's signing key file in [`user_config_dir`].
pub const USER_KEY_FILE: &str = "signing.key";

/// Where the operator's signing key is: `KANADE_SIGNING_KEY`, else `signing.key` in [`user_config_dir`].
pub fn default_key_path() -> Option<PathBuf> {
    match std::env::var_os("KANADE_SIGNING_KEY").filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => user_config_dir().map(|dir| dir.join(USER_KEY_FILE)),
    }
}

/// Reads a signing key (PKCS#8 PEM), bounded ([`crate::security::read_signing_key`]).
pub fn read_key(path: &Path) -> Result<SigningKey, OpsError> {
    crate::security::read_signing_key(path).map_err(|err| OpsError::Invalid(err.to_string()))
}

/// Writes `key` to `path`, readable by its owner only, creating the folder (owner-only too) if it does not exist;
/// an existing folder's permissions are left as they are.
pub fn write_key(path: &Path, key: &SigningKey) -> Result<(), OpsError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        crate::security::private_dir(dir).map_err(|err| OpsError::Invalid(err.to_string()))?;
    }
    crate::security::write_file(path, key.to_pem().as_bytes(), true).map_err(|err| OpsError::Invalid(err.to_string()))
}

/// How long a signed command stays valid when its own deadline does not say: `EXEC`'s age limit.
pub const COMMAND_LIFETIME: Duration = kanade_shared::authority::check::MAX_COMMAND_LIFETIME;
/// How long a signed kill stays valid.
pub const KILL_LIFETIME: Duration = Duration::from_secs(2 * 60);
/// How long a signed job-state value stays valid: until replaced (a century).
pub const STATE_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The headers that sign `payload` on `subject` with `key` for `lifetime` from now.
pub fn signed_headers(key: &SigningKey, subject: &str, payload: &[u8], lifetime: Duration) -> HeaderMap {
    let signature = Signature::sign(key, subject, payload, chrono::Utc::now(), lifetime);
    let mut headers = HeaderMap::new();
    for (name, value) in signature.headers() {
        headers.insert(name, value.as_str());
    }
    headers
}

async fn trust_bucket(client: &async_nats::Client) -> Result<jetstream::kv::Store, OpsError> {
    jetstream::new(client.clone())
        .get_key_value(KV_TRUST)
        .await
        .map_err(|_| OpsError::Missing { kind: "KV bucket", name: KV_TRUST })
}

/// The trust list KV holds now, as stored (not checked), with its revision; `None` when there is none yet.
pub async fn fetch_trust(client: &async_nats::Client) -> Result<Option<(SignedTrustList, u64)>, OpsError> {
    let entry = trust_bucket(client)
        .await?
        .entry(TRUST_KEY)
        .await
        .map_err(|e| OpsError::nats("cannot read the trust list", e))?;
    let Some(entry) = entry.filter(|e| e.operation == jetstream::kv::Operation::Put) else {
        return Ok(None);
    };
    let signed = SignedTrustList::decode(&entry.value).map_err(|err| OpsError::Invalid(err.to_string()))?;
    Ok(Some((signed, entry.revision)))
}

/// The trust list KV holds now, checked against `root`; `None` when there is none yet.
pub async fn current_trust(client: &async_nats::Client, root: &PublicKey) -> Result<Option<TrustList>, OpsError> {
    match fetch_trust(client).await? {
        None => Ok(None),
        Some((signed, _)) => signed.open(root).map(Some).map_err(|err| OpsError::Invalid(err.to_string())),
    }
}

/// Stores `signed` as the trust list: only if `root` signed it and it is newer than the list held (or none is),
/// and only if nobody stored another meanwhile (compare-and-set on the revision read). Returns its version.
pub async fn push_trust(
    client: &async_nats::Client,
    signed: &SignedTrustList,
    root: &PublicKey,
) -> Result<u64, OpsError> {
    let offered = signed.open(root).map_err(|err| OpsError::Invalid(err.to_string()))?;
    let version = offered.version;
    let bucket = trust_bucket(client).await?;
    let held = fetch_trust(client).await?;
    let held_list = match &held {
        // A list held that does not open under this root is replaced: it was never trusted by any agent.
        Some((stored, _)) => stored.open(root).ok(),
        None => None,
    };
    trust::accept(held_list.as_ref(), offered).map_err(|err| OpsError::Invalid(err.to_string()))?;
    let body = signed.encode().into();
    let what = "cannot store the trust list (changed meanwhile? read it and try again)";
    match held {
        Some((_, revision)) => bucket.update(TRUST_KEY, body, revision).await.map_err(|e| OpsError::nats(what, e))?,
        None => bucket.create(TRUST_KEY, body).await.map_err(|e| OpsError::nats(what, e))?,
    };
    Ok(version)
}
