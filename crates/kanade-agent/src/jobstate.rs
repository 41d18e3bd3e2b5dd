//! The agent's local copy of the KV state it gates on: `script_current` (job -> the version that may run) and
//! `script_status` (job -> `ACTIVE` | `REVOKED`). Kept current by core subscriptions on the buckets' own subjects
//! and re-read with batch direct get on every (re)connect, so a fleet-wide check costs no KV reads and no
//! consumers (DESIGN.md).
//!
//! Every value must be signed by a key the trust list allows to act on this PC (`crate::authority`): a forged
//! `REVOKED` or version would stop the fleet's work as surely as a forged kill. A value signed before the one held
//! for its key is an older one played back, and is ignored; so is a removal, which nothing signs (kanade never
//! deletes these keys; it writes `ACTIVE`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use kanade_shared::JobId;
use kanade_shared::authority::Act;
use kanade_shared::resources::{KV_SCRIPT_CURRENT, KV_SCRIPT_STATUS, kv_stream_name};
use kanade_shared::subject;

use crate::authority::Authority;
use crate::catchup::{self, CatchUpError, Fetched};
use crate::gate::JobView;

/// The value that marks a job revoked in `script_status`.
pub const REVOKED: &str = "REVOKED";

pub struct JobStates {
    inner: Mutex<Inner>,
    authority: Arc<Authority>,
}

#[derive(Default)]
struct Inner {
    current: HashMap<JobId, String>,
    revoked: HashSet<JobId>,
    /// When the value held for each key (by subject) was signed.
    signed_at: HashMap<String, DateTime<Utc>>,
    /// Keys changed by a live message, with the count of live changes at that moment: a reload that began before
    /// a key's live change must not put back the older value it read (see [`JobStates::reload`]).
    touched: HashMap<String, u64>,
    changes: u64,
}

/// A KV message is a delete or purge when its `KV-Operation` header says so.
pub(crate) fn is_removal(headers: Option<&HeaderMap>) -> bool {
    headers.and_then(|h| h.get("KV-Operation")).is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
}

/// Where a message came from: the live subscription, or a read-back that began when `changes` live changes had
/// been seen.
#[derive(Clone, Copy)]
enum Origin {
    Live,
    ReadBack { since: u64 },
}

impl JobStates {
    pub fn new(authority: Arc<Authority>) -> Self {
        JobStates { inner: Mutex::new(Inner::default()), authority }
    }

    /// Who decides what this agent obeys.
    pub fn authority(&self) -> &Arc<Authority> {
        &self.authority
    }

    /// What the gate needs to know about `job` now.
    pub fn view(&self, job: &JobId) -> JobView {
        let Ok(inner) = self.inner.lock() else { return JobView::default() };
        JobView { current_version: inner.current.get(job).cloned(), revoked: inner.revoked.contains(job) }
    }

    /// Applies one live KV change. Returns false for a message that is not one of ours.
    pub fn apply(&self, subject_name: &str, headers: Option<&HeaderMap>, payload: &[u8]) -> bool {
        self.apply_from(Origin::Live, subject_name, headers, payload)
    }

    fn apply_from(&self, origin: Origin, subject_name: &str, headers: Option<&HeaderMap>, payload: &[u8]) -> bool {
        let (bucket, key) = if let Some(key) = subject::kv_key(KV_SCRIPT_CURRENT, subject_name) {
            (KV_SCRIPT_CURRENT, key)
        } else if let Some(key) = subject::kv_key(KV_SCRIPT_STATUS, subject_name) {
            (KV_SCRIPT_STATUS, key)
        } else {
            return false;
        };
        let Ok(job) = JobId::new(key) else { return false };
        if is_removal(headers) {
            tracing::warn!(subject = subject_name, "ignoring the removal of a job-state value: nothing signs one");
            return true;
        }
        let signed_at = match self.authority.check(Act::JobState, subject_name, headers, payload) {
            Ok(authorised) => authorised.issued_at,
            Err(refusal) => {
                self.authority.refuse(Act::JobState, subject_name, &refusal);
                return true;
            }
        };
        let Ok(mut inner) = self.inner.lock() else { return false };
        if inner.signed_at.get(subject_name).is_some_and(|held| signed_at < *held) {
            tracing::warn!(subject = subject_name, "ignoring a job-state value signed before the one held");
            return true;
        }
        match origin {
            Origin::Live => {
                inner.changes += 1;
                let changes = inner.changes;
                inner.touched.insert(subject_name.to_owned(), changes);
            }
            // A live change to this key arrived after the read-back began: it is at least as new as anything the
            // read-back holds for the key (the server delivers one subject's changes in order).
            Origin::ReadBack { since } if inner.touched.get(subject_name).is_some_and(|at| *at > since) => {
                return true;
            }
            Origin::ReadBack { .. } => {}
        }
        inner.signed_at.insert(subject_name.to_owned(), signed_at);
        if bucket == KV_SCRIPT_CURRENT {
            match std::str::from_utf8(payload) {
                Ok(version) if !version.is_empty() => {
                    inner.current.insert(job, version.to_owned());
                }
                _ => {
                    inner.current.remove(&job);
                }
            }
        } else if payload == REVOKED.as_bytes() {
            inner.revoked.insert(job);
        } else {
            inner.revoked.remove(&job);
        }
        true
    }

    /// Where a read-back starts: live changes seen after this win over what it reads.
    fn read_back_origin(&self) -> Origin {
        Origin::ReadBack { since: self.inner.lock().map(|inner| inner.changes).unwrap_or(u64::MAX) }
    }

    /// Re-reads both buckets from the start (each key's history is short; the last value wins). A key that changes
    /// live while the read is under way keeps its live value: the read may have seen the store before the change.
    /// The trust list is re-read first, so the values are judged against the current one.
    pub async fn reload(&self, client: &async_nats::Client) -> Result<(), CatchUpError> {
        if let Err(err) = self.authority.reload(client).await {
            tracing::warn!(error = %err, "cannot re-read the trust list; the one held stays");
        }
        let origin = self.read_back_origin();
        for bucket in [KV_SCRIPT_CURRENT, KV_SCRIPT_STATUS] {
            let read = catchup::fetch_from(client, &kv_stream_name(bucket), &subject::kv_changes(bucket), 1).await?;
            self.apply_last(origin, read.commands);
        }
        Ok(())
    }

    /// Applies the last of `messages` on each subject: the value that stands (each one's signature is checked, so
    /// the history before it is skipped rather than verified for nothing).
    fn apply_last(&self, origin: Origin, messages: Vec<Fetched>) {
        let mut last: HashMap<String, Fetched> = HashMap::new();
        for message in messages {
            last.insert(message.subject.clone(), message);
        }
        for message in last.into_values() {
            self.apply_from(origin, &message.subject, message.headers.as_ref(), &message.payload);
        }
    }

    /// Re-reads `job`'s current version alone (its short history; the last value wins), like [`Self::reload`].
    pub async fn refresh(&self, client: &async_nats::Client, job: &JobId) -> Result<(), CatchUpError> {
        let origin = self.read_back_origin();
        let filter = format!("$KV.{KV_SCRIPT_CURRENT}.{job}");
        let read = catchup::fetch_from(client, &kv_stream_name(KV_SCRIPT_CURRENT), &filter, 1).await?;
        self.apply_last(origin, read.commands);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::tests::TestKeys;

    struct Signed {
        keys: TestKeys,
        states: JobStates,
    }

    impl Signed {
        fn new() -> Self {
            let keys = TestKeys::new();
            let states = JobStates::new(Arc::new(keys.authority(None)));
            Signed { keys, states }
        }

        fn apply(&self, subject_name: &str, payload: &[u8]) -> bool {
            self.states.apply(subject_name, Some(&self.keys.headers(subject_name, payload)), payload)
        }

        fn apply_from(&self, origin: Origin, subject_name: &str, payload: &[u8]) -> bool {
            self.states.apply_from(origin, subject_name, Some(&self.keys.headers(subject_name, payload)), payload)
        }
    }

    #[test]
    fn signed_changes_apply_and_removals_are_ignored() {
        let signed = Signed::new();
        let job = JobId::new("deploy").unwrap();
        assert!(signed.apply("$KV.script_current.deploy", b"2.0"));
        assert!(signed.apply("$KV.script_status.deploy", b"REVOKED"));
        assert_eq!(signed.states.view(&job), JobView { current_version: Some("2.0".into()), revoked: true });
        let mut del = HeaderMap::new();
        del.insert("KV-Operation", "DEL");
        assert!(signed.states.apply("$KV.script_status.deploy", Some(&del), b""));
        assert!(signed.states.view(&job).revoked, "an unsigned removal does not un-revoke");
        assert!(signed.apply("$KV.script_status.deploy", b"ACTIVE"));
        assert!(!signed.states.view(&job).revoked);
        assert!(!signed.apply("$KV.other.deploy", b"x"));
        assert!(!signed.apply("$KV.script_current.Bad.Key", b"x"));
    }

    #[test]
    fn forged_values_change_nothing_and_are_counted() {
        let signed = Signed::new();
        let job = JobId::new("deploy").unwrap();
        assert!(signed.apply("$KV.script_current.deploy", b"1.0"));
        // Unsigned, signed by a stranger, or signed for another key: all ignored.
        assert!(signed.states.apply("$KV.script_status.deploy", None, b"REVOKED"));
        let stranger = TestKeys::new();
        let forged = stranger.headers("$KV.script_status.deploy", b"REVOKED");
        assert!(signed.states.apply("$KV.script_status.deploy", Some(&forged), b"REVOKED"));
        let moved = signed.keys.headers("$KV.script_status.other", b"REVOKED");
        assert!(signed.states.apply("$KV.script_status.deploy", Some(&moved), b"REVOKED"));
        let older = signed.keys.headers("$KV.script_current.deploy", b"0.9");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(signed.apply("$KV.script_current.deploy", b"2.0"));
        // A value signed before the one held is an old one played back.
        assert!(signed.states.apply("$KV.script_current.deploy", Some(&older), b"0.9"));
        assert_eq!(signed.states.view(&job), JobView { current_version: Some("2.0".into()), revoked: false });
        assert_eq!(signed.states.authority().refused(), 3);
    }

    #[test]
    fn a_read_back_never_puts_an_older_value_over_a_live_change() {
        let signed = Signed::new();
        let job = JobId::new("deploy").unwrap();
        signed.apply("$KV.script_current.deploy", b"1.0");
        // A reconnect's read-back starts, and reads the store as it was...
        let origin = signed.states.read_back_origin();
        // ...while a revoke and a new version arrive live...
        signed.apply("$KV.script_status.deploy", b"REVOKED");
        signed.apply("$KV.script_current.deploy", b"2.0");
        // ...and then the read-back applies what it read: the older values.
        signed.apply_from(origin, "$KV.script_status.deploy", b"ACTIVE");
        signed.apply_from(origin, "$KV.script_current.deploy", b"1.0");
        signed.apply_from(origin, "$KV.script_current.other", b"3.0");
        assert_eq!(signed.states.view(&job), JobView { current_version: Some("2.0".into()), revoked: true });
        assert_eq!(signed.states.view(&JobId::new("other").unwrap()).current_version.as_deref(), Some("3.0"));
        // A later read-back (after those live changes) applies in full.
        let later = signed.states.read_back_origin();
        signed.apply_from(later, "$KV.script_status.deploy", b"ACTIVE");
        assert!(!signed.states.view(&job).revoked);
    }
}
