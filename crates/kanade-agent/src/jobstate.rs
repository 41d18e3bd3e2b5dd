//! The agent's local copy of the KV state it gates on: `script_current` (job -> the version that may run) and
//! `script_status` (job -> `ACTIVE` | `REVOKED`). Kept current by core subscriptions on the buckets' own subjects
//! and re-read with batch direct get on every (re)connect, so a fleet-wide check costs no KV reads and no
//! consumers (DESIGN.md).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_nats::HeaderMap;
use kanade_shared::JobId;
use kanade_shared::resources::{KV_SCRIPT_CURRENT, KV_SCRIPT_STATUS, kv_stream_name};
use kanade_shared::subject;

use crate::catchup::{self, CatchUpError};
use crate::gate::JobView;

/// The value that marks a job revoked in `script_status`.
pub const REVOKED: &str = "REVOKED";

#[derive(Default)]
pub struct JobStates {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    current: HashMap<JobId, String>,
    revoked: HashSet<JobId>,
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
        let removal = is_removal(headers);
        let Ok(mut inner) = self.inner.lock() else { return false };
        let (bucket, key) = if let Some(key) = subject::kv_key(KV_SCRIPT_CURRENT, subject_name) {
            (KV_SCRIPT_CURRENT, key)
        } else if let Some(key) = subject::kv_key(KV_SCRIPT_STATUS, subject_name) {
            (KV_SCRIPT_STATUS, key)
        } else {
            return false;
        };
        let Ok(job) = JobId::new(key) else { return false };
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
        if bucket == KV_SCRIPT_CURRENT {
            match (removal, std::str::from_utf8(payload)) {
                (false, Ok(version)) if !version.is_empty() => {
                    inner.current.insert(job, version.to_owned());
                }
                _ => {
                    inner.current.remove(&job);
                }
            }
        } else if !removal && payload == REVOKED.as_bytes() {
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
    pub async fn reload(&self, client: &async_nats::Client) -> Result<(), CatchUpError> {
        let origin = self.read_back_origin();
        for bucket in [KV_SCRIPT_CURRENT, KV_SCRIPT_STATUS] {
            let read = catchup::fetch_from(client, &kv_stream_name(bucket), &subject::kv_changes(bucket), 1).await?;
            for message in read.commands {
                self.apply_from(origin, &message.subject, message.headers.as_ref(), &message.payload);
            }
        }
        Ok(())
    }

    /// Re-reads `job`'s current version alone (its short history; the last value wins), like [`Self::reload`].
    pub async fn refresh(&self, client: &async_nats::Client, job: &JobId) -> Result<(), CatchUpError> {
        let origin = self.read_back_origin();
        let filter = format!("$KV.{KV_SCRIPT_CURRENT}.{job}");
        let read = catchup::fetch_from(client, &kv_stream_name(KV_SCRIPT_CURRENT), &filter, 1).await?;
        for message in read.commands {
            self.apply_from(origin, &message.subject, message.headers.as_ref(), &message.payload);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_and_removals_clear() {
        let states = JobStates::default();
        let job = JobId::new("deploy").unwrap();
        assert!(states.apply("$KV.script_current.deploy", None, b"2.0"));
        assert!(states.apply("$KV.script_status.deploy", None, b"REVOKED"));
        assert_eq!(states.view(&job), JobView { current_version: Some("2.0".into()), revoked: true });
        assert!(states.apply("$KV.script_status.deploy", None, b"ACTIVE"));
        let mut del = HeaderMap::new();
        del.insert("KV-Operation", "DEL");
        assert!(states.apply("$KV.script_current.deploy", Some(&del), b""));
        assert_eq!(states.view(&job), JobView::default());
        assert!(!states.apply("$KV.other.deploy", None, b"x"));
        assert!(!states.apply("$KV.script_current.Bad.Key", None, b"x"));
    }

    #[test]
    fn a_read_back_never_puts_an_older_value_over_a_live_change() {
        let states = JobStates::default();
        let job = JobId::new("deploy").unwrap();
        states.apply("$KV.script_current.deploy", None, b"1.0");
        // A reconnect's read-back starts, and reads the store as it was...
        let origin = states.read_back_origin();
        // ...while a revoke and a new version arrive live...
        states.apply("$KV.script_status.deploy", None, b"REVOKED");
        states.apply("$KV.script_current.deploy", None, b"2.0");
        // ...and then the read-back applies what it read: the older values.
        states.apply_from(origin, "$KV.script_status.deploy", None, b"ACTIVE");
        states.apply_from(origin, "$KV.script_current.deploy", None, b"1.0");
        states.apply_from(origin, "$KV.script_current.other", None, b"3.0");
        assert_eq!(states.view(&job), JobView { current_version: Some("2.0".into()), revoked: true });
        assert_eq!(states.view(&JobId::new("other").unwrap()).current_version.as_deref(), Some("3.0"));
        // A later read-back (after those live changes) applies in full.
        let later = states.read_back_origin();
        states.apply_from(later, "$KV.script_status.deploy", None, b"ACTIVE");
        assert!(!states.view(&job).revoked);
    }
}
