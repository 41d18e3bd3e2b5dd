//! What this agent obeys (DESIGN.md, Authority): its copy of the root-signed trust list and the check every command,
//! kill and job-state value passes before it has any effect.
//!
//! The list is mirrored as the agent's config is: a core subscription on the list's KV subject and a direct get of
//! the current value on every (re)connect, no consumer. Only a list the configured root signed, newer than the one
//! held, is taken; the newest seen is kept in the data dir (`trust.json`), so a restart cannot be fed an older
//! list in which a key since revoked was still good. Without a configured root, or before any list arrives, every
//! command is refused. The decision itself is `kanade_shared::authority::authorise`; this adds the state around it:
//! the list, the kills already obeyed (a kill's id is obeyed once), and the count of refusals.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use async_nats::{Client, HeaderMap};
use chrono::{DateTime, Utc};
use kanade_shared::authority::{
    Act, Agent, Approval, PublicKey, Refusal, Signature, SignatureError, SignedTrustList, TrustList, authorise, trust,
};
use kanade_shared::resources::{KV_TRUST, TRUST_KEY, kv_stream_name};
use kanade_shared::{Actor, GroupName, PcId, subject};

use crate::catchup::{self, CatchUpError};

/// The file the newest trust list is kept in, in the data dir.
pub const TRUST_FILE: &str = "trust.json";
/// Kill ids remembered at most; a kill is valid for minutes, so this bounds a flood, not normal use.
const MAX_SEEN_KILLS: usize = 10_000;

/// A message that passed: who signed it, and the signature's id and expiry (for replay checks).
#[derive(Debug, Clone)]
pub struct Authorised {
    pub name: Actor,
    pub id: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub struct Authority {
    root: Option<PublicKey>,
    pc: PcId,
    groups: Vec<GroupName>,
    /// Where the newest list is kept; `None` keeps it in memory only (tests).
    file: Option<PathBuf>,
    list: RwLock<Option<TrustList>>,
    kills: Mutex<HashMap<String, DateTime<Utc>>>,
    refused: AtomicU64,
}

impl Authority {
    /// The authority of `pc` in `groups` under `root`, with the list kept in `data_dir` (read from there now).
    pub fn new(pc: PcId, groups: Vec<GroupName>, root: Option<PublicKey>, data_dir: Option<&Path>) -> Self {
        let file = data_dir.map(|dir| dir.join(TRUST_FILE));
        let authority = Authority {
            root,
            pc,
            groups,
            file,
            list: RwLock::new(None),
            kills: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        };
        if root.is_none() {
            tracing::warn!("no trust root configured (agent.trust_root): every command will be refused");
        }
        if let Some(bytes) = authority.file.as_ref().and_then(|f| std::fs::read(f).ok()) {
            match authority.open(&bytes) {
                Ok(list) => {
                    tracing::info!(version = list.version, "trust list read from the data dir");
                    if let Ok(mut held) = authority.list.write() {
                        *held = Some(list);
                    }
                }
                Err(why) => tracing::warn!(error = %why, "ignoring the trust list kept in the data dir"),
            }
        }
        authority
    }

    /// The version of the list held.
    pub fn version(&self) -> Option<u64> {
        self.list.read().ok()?.as_ref().map(|l| l.version)
    }

    /// How many messages were refused since the agent started.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn open(&self, bytes: &[u8]) -> Result<TrustList, String> {
        let root = self.root.as_ref().ok_or("no trust root is configured")?;
        SignedTrustList::decode(bytes).and_then(|signed| signed.open(root)).map_err(|err| err.to_string())
    }

    /// Takes a trust list as stored in KV if the root signed it and it is newer than the one held. `Ok(Some(v))`:
    /// version `v` is now held; `Ok(None)`: not newer (a repeat), nothing changed; `Err`: refused, with why.
    pub fn offer(&self, bytes: &[u8]) -> Result<Option<u64>, String> {
        let offered = self.open(bytes)?;
        let Ok(mut held) = self.list.write() else { return Err("the trust list lock is poisoned".into()) };
        let list = match trust::accept(held.as_ref(), offered) {
            Ok(list) => list,
            Err(trust::TrustError::NotNewer { offered, held }) if offered == held => return Ok(None),
            Err(err) => return Err(err.to_string()),
        };
        let version = list.version;
        if let Some(file) = &self.file
            && let Err(err) = crate::platform::write_private(file, bytes)
        {
            // Held in memory all the same; only a restart before the next read-back would fall back to the older.
            tracing::warn!(error = %err, file = %file.display(), "cannot keep the trust list in the data dir");
        }
        tracing::info!(version, keys = list.keys.len(), "trust list updated");
        *held = Some(list);
        Ok(Some(version))
    }

    /// Applies a live change of the list's KV subject, as [`Authority::offer`]. A removal changes nothing: a list is
    /// only ever replaced by a newer one.
    pub fn changed(&self, headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Option<u64>, String> {
        if crate::jobstate::is_removal(headers) {
            return Err("a removal of the trust list is ignored".into());
        }
        self.offer(payload)
    }

    /// Reads the current list from KV (a direct get of its one key) and takes it if newer.
    pub async fn reload(&self, client: &Client) -> Result<(), CatchUpError> {
        let on = subject::kv_entry(KV_TRUST, TRUST_KEY);
        if let Some(message) = catchup::last_for_subject(client, &kv_stream_name(KV_TRUST), &on).await?
            && !crate::jobstate::is_removal(message.headers.as_ref())
            && let Err(why) = self.offer(&message.payload)
        {
            tracing::warn!(error = %why, "ignoring the trust list in KV");
        }
        Ok(())
    }

    /// Whether this agent obeys `act` on `subject_name` with `headers` and `payload` now.
    pub fn check(
        &self,
        act: Act,
        subject_name: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Result<Authorised, Refusal> {
        let held = self.list.read().map_err(|_| Refusal::NoTrustList)?;
        let agent = Agent { pc: &self.pc, groups: &self.groups };
        let approval =
            authorise(act, subject_name, payload, read_signature(headers), agent, held.as_ref(), Utc::now())?;
        let Approval { key, signature } = approval;
        Ok(Authorised {
            name: key.name.clone(),
            id: signature.id,
            issued_at: signature.issued_at,
            expires_at: signature.expires_at,
        })
    }

    /// Counts and logs a refusal.
    pub fn refuse(&self, act: Act, subject_name: &str, refusal: &Refusal) {
        let total = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            act = act.as_str(),
            subject = subject_name,
            reason = refusal.label(),
            error = %refusal,
            total,
            "refused: not signed by a key that may"
        );
    }

    /// Whether the kill `authorised` is the first with its id (obeyed once; a replay is refused). Ids are forgotten
    /// once expired.
    pub fn first_kill(&self, authorised: &Authorised) -> bool {
        let Ok(mut seen) = self.kills.lock() else { return false };
        let now = Utc::now();
        if seen.len() >= MAX_SEEN_KILLS {
            seen.retain(|_, expires| *expires + kanade_shared::authority::check::skew() > now);
        }
        if seen.len() >= MAX_SEEN_KILLS {
            // Full of unexpired ids: a flood of valid kills. Refusing one more is safer than forgetting a used one.
            return false;
        }
        seen.insert(authorised.id.clone(), authorised.expires_at).is_none()
    }
}

fn read_signature(headers: Option<&HeaderMap>) -> Result<Option<Signature>, SignatureError> {
    match headers {
        None => Ok(None),
        Some(headers) => Signature::from_headers(|name| headers.get(name).map(|v| v.as_str())),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use kanade_shared::access::{GroupScope, Role};
    use kanade_shared::authority::{SigningKey, TrustedKey};

    use super::*;

    /// A trust root and an operator it trusts, fleet-wide, for this crate's unit tests.
    pub struct TestKeys {
        pub root: SigningKey,
        pub operator: SigningKey,
    }

    impl TestKeys {
        pub fn new() -> Self {
            TestKeys { root: SigningKey::generate(), operator: SigningKey::generate() }
        }

        pub fn list(&self, version: u64, revoked: bool) -> Vec<u8> {
            let entry = TrustedKey {
                revoked,
                ..TrustedKey::new(
                    Actor::new("ops").unwrap(),
                    self.operator.public_key(),
                    Role::Operator,
                    GroupScope::Fleet,
                    Utc::now(),
                )
            };
            let list = TrustList { version, issued_at: Utc::now(), keys: vec![entry] };
            SignedTrustList::sign(&list, &self.root).unwrap().encode()
        }

        /// An authority of `pc1` holding version 1 of the list.
        pub fn authority(&self, dir: Option<&Path>) -> Authority {
            let authority = Authority::new(PcId::new("pc1").unwrap(), vec![], Some(self.root.public_key()), dir);
            authority.offer(&self.list(1, false)).unwrap();
            authority
        }

        pub fn headers(&self, subject_name: &str, payload: &[u8]) -> HeaderMap {
            kanade_ops::signing::signed_headers(&self.operator, subject_name, payload, Duration::from_secs(60))
        }
    }

    #[test]
    fn only_newer_lists_signed_by_the_root_are_taken_and_kept_across_restarts() {
        let keys = TestKeys::new();
        let dir = tempfile::tempdir().unwrap();
        let authority = keys.authority(Some(dir.path()));
        assert_eq!(authority.version(), Some(1));
        assert_eq!(authority.offer(&keys.list(1, false)), Ok(None), "a repeat changes nothing");
        assert_eq!(authority.offer(&keys.list(3, false)), Ok(Some(3)));
        assert!(authority.offer(&keys.list(2, false)).unwrap_err().contains("not newer"));
        let impostor = TestKeys::new();
        assert!(authority.offer(&impostor.list(9, false)).unwrap_err().contains("not by the fleet's root"));
        assert!(authority.offer(b"garbage").is_err());
        assert!(authority.offer(&vec![b'x'; 2 << 20]).unwrap_err().contains("limit"));

        // A restart reads version 3 back, and so refuses version 2 from a broker playing an old list.
        let again = Authority::new(PcId::new("pc1").unwrap(), vec![], Some(keys.root.public_key()), Some(dir.path()));
        assert_eq!(again.version(), Some(3));
        assert!(again.offer(&keys.list(2, false)).is_err());
    }

    #[test]
    fn without_a_root_nothing_is_taken_and_nothing_obeyed() {
        let keys = TestKeys::new();
        let authority = Authority::new(PcId::new("pc1").unwrap(), vec![], None, None);
        assert!(authority.offer(&keys.list(1, false)).is_err());
        let headers = keys.headers("kill.e1", b"");
        assert_eq!(authority.check(Act::Kill, "kill.e1", Some(&headers), b"").unwrap_err(), Refusal::NoTrustList);
    }

    #[test]
    fn a_kill_is_obeyed_once_and_a_revoked_key_not_at_all() {
        let keys = TestKeys::new();
        let authority = keys.authority(None);
        let headers = keys.headers("kill.e1", b"");
        let authorised = authority.check(Act::Kill, "kill.e1", Some(&headers), b"").unwrap();
        assert_eq!(authorised.name.as_str(), "ops");
        assert!(authority.first_kill(&authorised));
        assert!(!authority.first_kill(&authorised), "the same kill again is a replay");
        assert!(matches!(authority.check(Act::Kill, "kill.e1", None, b""), Err(Refusal::Unsigned(_))));
        authority.offer(&keys.list(2, true)).unwrap();
        assert!(matches!(authority.check(Act::Kill, "kill.e1", Some(&headers), b""), Err(Refusal::Revoked(_))));
    }
}
