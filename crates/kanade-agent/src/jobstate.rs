//! The agent's local copy of the KV state it gates on: `script_current` (job -> the version that may run) and
//! `script_status` (job -> `ACTIVE` | `REVOKED`). Kept current by core subscriptions on the buckets' own subjects
//! and re-read with batch direct get on every (re)connect, so a fleet-wide check costs no KV reads and no
//! consumers (DESIGN.md).

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

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
    current: RwLock<HashMap<JobId, String>>,
    revoked: RwLock<HashSet<JobId>>,
}

/// A KV message is a delete or purge when its `KV-Operation` header says so.
pub(crate) fn is_removal(headers: Option<&HeaderMap>) -> bool {
    headers.and_then(|h| h.get("KV-Operation")).is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
}

impl JobStates {
    /// What the gate needs to know about `job` now.
    pub fn view(&self, job: &JobId) -> JobView {
        JobView {
            current_version: self.current.read().ok().and_then(|c| c.get(job).cloned()),
            revoked: self.revoked.read().is_ok_and(|r| r.contains(job)),
        }
    }

    /// Applies one KV change. Returns false for a message that is not one of ours.
    pub fn apply(&self, subject_name: &str, headers: Option<&HeaderMap>, payload: &[u8]) -> bool {
        let removal = is_removal(headers);
        if let Some(key) = subject::kv_key(KV_SCRIPT_CURRENT, subject_name) {
            let Ok(job) = JobId::new(key) else { return false };
            let Ok(mut current) = self.current.write() else { return false };
            match (removal, std::str::from_utf8(payload)) {
                (false, Ok(version)) if !version.is_empty() => {
                    current.insert(job, version.to_owned());
                }
                _ => {
                    current.remove(&job);
                }
            }
            return true;
        }
        if let Some(key) = subject::kv_key(KV_SCRIPT_STATUS, subject_name) {
            let Ok(job) = JobId::new(key) else { return false };
            let Ok(mut revoked) = self.revoked.write() else { return false };
            if !removal && payload == REVOKED.as_bytes() {
                revoked.insert(job);
            } else {
                revoked.remove(&job);
            }
            return true;
        }
        false
    }

    /// Re-reads both buckets from the start (each key's history is short; the last value wins).
    pub async fn reload(&self, client: &async_nats::Client) -> Result<(), CatchUpError> {
        for bucket in [KV_SCRIPT_CURRENT, KV_SCRIPT_STATUS] {
            let read = catchup::fetch_from(client, &kv_stream_name(bucket), &subject::kv_changes(bucket), 1).await?;
            for message in read.commands {
                self.apply(&message.subject, message.headers.as_ref(), &message.payload);
            }
        }
        Ok(())
    }
}

impl JobStates {
    /// Re-reads `job`'s current version alone (its short history; the last value wins).
    pub async fn refresh(&self, client: &async_nats::Client, job: &JobId) -> Result<(), CatchUpError> {
        let filter = format!("$KV.{KV_SCRIPT_CURRENT}.{job}");
        let read = catchup::fetch_from(client, &kv_stream_name(KV_SCRIPT_CURRENT), &filter, 1).await?;
        for message in read.commands {
            self.apply(&message.subject, message.headers.as_ref(), &message.payload);
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
}
