//! The trust list: every key that may sign for the fleet, with the name, role and group scope it signs with, and
//! whether it is revoked. Each version is signed by the root key, which `kanade security init` creates and which
//! stays offline; agents take a list only if the root signed it and it is newer than the one they hold.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::keys::{PublicKey, SigningKey};
use crate::access::{AccessError, GroupScope, Role};
use crate::ids::Actor;

/// The most keys one list holds, revoked ones included.
pub const MAX_TRUSTED_KEYS: usize = 1000;
/// The largest signed list accepted, in bytes.
pub const MAX_TRUST_LIST_BYTES: usize = 512 * 1024;

/// What the root signs over, before the list's bytes: a trust-list signature is never a message signature.
const DOMAIN: &[u8] = b"kanade-trust-list-v1\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("the trust list is {0} bytes; the limit is {MAX_TRUST_LIST_BYTES}")]
    TooLarge(usize),
    #[error("the trust list is not readable: {0}")]
    Malformed(String),
    #[error("the trust list is signed by `{found}`, not by the fleet's root `{expected}`")]
    WrongRoot { found: PublicKey, expected: PublicKey },
    #[error("the trust list's signature does not verify")]
    BadSignature,
    #[error("the trust list holds {0} keys; the limit is {MAX_TRUSTED_KEYS}")]
    TooManyKeys(usize),
    #[error("key `{0}` is in the trust list twice")]
    DuplicateKey(PublicKey),
    #[error("key `{key}` ({name}): {source}")]
    Scope { key: PublicKey, name: Actor, source: AccessError },
    #[error("trust list version {offered} is not newer than version {held}, which is held")]
    NotNewer { offered: u64, held: u64 },
}

/// One key the fleet trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKey {
    /// Whose key: an operator's name, or `backend`.
    pub name: Actor,
    pub key: PublicKey,
    pub role: Role,
    pub scope: GroupScope,
    /// A revoked key stays listed, so a list cannot quietly forget a revocation by leaving the key out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    pub added_at: DateTime<Utc>,
}

impl TrustedKey {
    /// A key trusted from `added_at` on, not revoked.
    pub fn new(name: Actor, key: PublicKey, role: Role, scope: GroupScope, added_at: DateTime<Utc>) -> Self {
        TrustedKey { name, key, role, scope, revoked: false, added_at }
    }
}

/// One version of the trust list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustList {
    /// Grows by one with every change; agents take only a newer version than theirs.
    pub version: u64,
    pub issued_at: DateTime<Utc>,
    pub keys: Vec<TrustedKey>,
}

impl TrustList {
    /// The first version, trusting `keys`.
    pub fn first(keys: Vec<TrustedKey>, now: DateTime<Utc>) -> Self {
        TrustList { version: 1, issued_at: now, keys }
    }

    /// The entry for `key`, revoked or not.
    pub fn find(&self, key: &PublicKey) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.key == *key)
    }

    /// The limits every list keeps: bounded, each key once, each scope valid for its role.
    pub fn validate(&self) -> Result<(), TrustError> {
        if self.keys.len() > MAX_TRUSTED_KEYS {
            return Err(TrustError::TooManyKeys(self.keys.len()));
        }
        for (i, entry) in self.keys.iter().enumerate() {
            if self.keys[..i].iter().any(|k| k.key == entry.key) {
                return Err(TrustError::DuplicateKey(entry.key));
            }
            entry.scope.check_role(entry.role).map_err(|source| TrustError::Scope {
                key: entry.key,
                name: entry.name.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The next version: `change` applied to a copy, the version bumped, stamped `now`.
    pub fn next(&self, now: DateTime<Utc>, change: impl FnOnce(&mut Vec<TrustedKey>)) -> Result<Self, TrustError> {
        let mut keys = self.keys.clone();
        change(&mut keys);
        let next = TrustList { version: self.version + 1, issued_at: now, keys };
        next.validate()?;
        Ok(next)
    }
}

/// A trust list as it is stored and sent: the list's exact JSON, the root that signed it and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTrustList {
    /// The list, as the JSON text the root signed.
    pub list: String,
    pub root: PublicKey,
    /// Ed25519, base64url.
    pub signature: String,
}

impl SignedTrustList {
    /// Signs `list` with the root key. Fails if the list breaks a limit.
    pub fn sign(list: &TrustList, root: &SigningKey) -> Result<Self, TrustError> {
        list.validate()?;
        let text = serde_json::to_string(list).map_err(|err| TrustError::Malformed(err.to_string()))?;
        let signature = URL_SAFE_NO_PAD.encode(root.sign(&signed_bytes(&text)));
        Ok(SignedTrustList { list: text, root: root.public_key(), signature })
    }

    /// Reads a stored list (bounded; not yet checked).
    pub fn decode(bytes: &[u8]) -> Result<Self, TrustError> {
        if bytes.len() > MAX_TRUST_LIST_BYTES {
            return Err(TrustError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|err| TrustError::Malformed(err.to_string()))
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The list inside, if `root` signed it and it keeps every limit.
    pub fn open(&self, root: &PublicKey) -> Result<TrustList, TrustError> {
        if self.root != *root {
            return Err(TrustError::WrongRoot { found: self.root, expected: *root });
        }
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(TrustError::BadSignature)?;
        if !root.verifies(&signed_bytes(&self.list), &signature) {
            return Err(TrustError::BadSignature);
        }
        let list: TrustList = serde_json::from_str(&self.list).map_err(|err| TrustError::Malformed(err.to_string()))?;
        list.validate()?;
        Ok(list)
    }
}

fn signed_bytes(list: &str) -> Vec<u8> {
    [DOMAIN, list.as_bytes()].concat()
}

/// Whether an agent holding `held` takes `offered` (already opened): only a newer version, so an old list with a
/// key since revoked cannot be played back.
pub fn accept(held: Option<&TrustList>, offered: TrustList) -> Result<TrustList, TrustError> {
    match held {
        Some(held) if offered.version <= held.version => {
            Err(TrustError::NotNewer { offered: offered.version, held: held.version })
        }
        _ => Ok(offered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, key: &SigningKey, role: Role, scope: GroupScope) -> TrustedKey {
        TrustedKey::new(Actor::new(name).unwrap(), key.public_key(), role, scope, Utc::now())
    }

    #[test]
    fn a_list_signed_by_the_root_opens_and_no_other_does() {
        let root = SigningKey::generate();
        let alice = SigningKey::generate();
        let list = TrustList::first(vec![entry("alice", &alice, Role::Operator, GroupScope::Fleet)], Utc::now());
        let signed = SignedTrustList::sign(&list, &root).unwrap();
        let back = SignedTrustList::decode(&signed.encode()).unwrap();
        assert_eq!(back.open(&root.public_key()).unwrap(), list);

        let impostor = SigningKey::generate();
        let forged = SignedTrustList::sign(&list, &impostor).unwrap();
        assert!(matches!(forged.open(&root.public_key()), Err(TrustError::WrongRoot { .. })));
        // The root named, but the list changed after signing.
        let mut tampered = signed.clone();
        tampered.list = tampered.list.replace("operator", "admin");
        assert_eq!(tampered.open(&root.public_key()), Err(TrustError::BadSignature));
        let mut garbled = signed;
        garbled.signature = "x".into();
        assert_eq!(garbled.open(&root.public_key()), Err(TrustError::BadSignature));
    }

    #[test]
    fn only_a_newer_version_is_taken() {
        let root = SigningKey::generate();
        let v1 = TrustList::first(vec![], Utc::now());
        let v2 = v1.next(Utc::now(), |keys| keys.push(entry("bob", &root, Role::Viewer, GroupScope::Fleet))).unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(accept(Some(&v2), v1.clone()), Err(TrustError::NotNewer { offered: 1, held: 2 }));
        assert_eq!(accept(Some(&v2), v2.clone()), Err(TrustError::NotNewer { offered: 2, held: 2 }));
        assert_eq!(accept(Some(&v1), v2.clone()).unwrap(), v2);
        assert_eq!(accept(None, v1.clone()).unwrap(), v1);
    }

    #[test]
    fn hostile_lists_are_refused() {
        let root = SigningKey::generate();
        let key = SigningKey::generate();
        let twice = TrustList::first(
            vec![
                entry("a", &key, Role::Operator, GroupScope::Fleet),
                entry("b", &key, Role::Viewer, GroupScope::Fleet),
            ],
            Utc::now(),
        );
        assert!(matches!(SignedTrustList::sign(&twice, &root), Err(TrustError::DuplicateKey(_))));
        let scoped_admin = TrustList::first(
            vec![entry("a", &key, Role::Admin, GroupScope::parse_list("office").unwrap())],
            Utc::now(),
        );
        assert!(matches!(SignedTrustList::sign(&scoped_admin, &root), Err(TrustError::Scope { .. })));
        assert!(matches!(SignedTrustList::decode(&vec![b' '; MAX_TRUST_LIST_BYTES + 1]), Err(TrustError::TooLarge(_))));
        assert!(matches!(SignedTrustList::decode(b"{\"list\": 1}"), Err(TrustError::Malformed(_))));
        // A list the root signed whose text is not a list is refused after the signature, not trusted.
        let text = "[1,2,3]".to_owned();
        let signature = URL_SAFE_NO_PAD.encode(root.sign(&signed_bytes(&text)));
        let odd = SignedTrustList { list: text, root: root.public_key(), signature };
        assert!(matches!(odd.open(&root.public_key()), Err(TrustError::Malformed(_))));
    }
}
