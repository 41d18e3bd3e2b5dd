//! The schedules: KV bucket `schedules`, schedule id -> [`StoredSchedule`]. The backend writes it (its API is the
//! one way to create, change or delete a schedule, so every change is checked and audited there) and its leader
//! reads it; [`ScheduleStore::changed_since`] lets a reader reload only when something changed.

use async_nats::jetstream::kv::{self, Store as KvStore};
use futures::StreamExt;
use kanade_shared::resources::KV_SCHEDULES;
use kanade_shared::schedule::{ScheduleId, StoredSchedule};

use crate::OpsError;

#[derive(Clone)]
pub struct ScheduleStore {
    kv: KvStore,
}

impl ScheduleStore {
    pub async fn open(client: &async_nats::Client) -> Result<Self, OpsError> {
        let kv = async_nats::jetstream::new(client.clone())
            .get_key_value(KV_SCHEDULES)
            .await
            .map_err(|_| OpsError::Missing { kind: "KV bucket", name: KV_SCHEDULES })?;
        Ok(Self { kv })
    }

    /// The schedule and its revision (for a compare-and-set), if there is one.
    pub async fn get(&self, id: &ScheduleId) -> Result<Option<(StoredSchedule, u64)>, OpsError> {
        let entry =
            self.kv.entry(id.as_str()).await.map_err(|e| OpsError::nats(format!("cannot read schedule `{id}`"), e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else { return Ok(None) };
        let stored: StoredSchedule = serde_json::from_slice(&entry.value).map_err(|err| {
            OpsError::Invalid(format!("schedule `{id}` in the `schedules` bucket is unreadable: {err}"))
        })?;
        // Written by hand under another key, it would be a second copy of that schedule.
        if stored.schedule.id != *id {
            return Err(OpsError::Invalid(format!(
                "the `schedules` bucket's key `{id}` holds schedule `{}`",
                stored.schedule.id
            )));
        }
        Ok(Some((stored, entry.revision)))
    }

    /// Stores `stored`: created when `revision` is none (and nobody created it meanwhile), else replacing exactly
    /// that revision. An error of kind [`OpsError::Invalid`] when someone else changed it first.
    pub async fn put(&self, stored: &StoredSchedule, revision: Option<u64>) -> Result<u64, OpsError> {
        let id = stored.schedule.id.as_str();
        let body = serde_json::to_vec(stored).map_err(|source| OpsError::Encode { what: "schedule", source })?;
        match revision {
            None => self.kv.create(id, body.into()).await.map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => {
                    OpsError::Invalid(format!("schedule `{id}` was created meanwhile; try again"))
                }
                _ => OpsError::nats(format!("cannot store schedule `{id}`"), e),
            }),
            Some(revision) => self.kv.update(id, body.into(), revision).await.map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => {
                    OpsError::Invalid(format!("schedule `{id}` was changed meanwhile; try again"))
                }
                _ => OpsError::nats(format!("cannot store schedule `{id}`"), e),
            }),
        }
    }

    /// Removes `id`; false if it was not there.
    pub async fn delete(&self, id: &ScheduleId) -> Result<bool, OpsError> {
        if self.get(id).await?.is_none() {
            return Ok(false);
        }
        self.kv.delete(id.as_str()).await.map_err(|e| OpsError::nats(format!("cannot delete schedule `{id}`"), e))?;
        Ok(true)
    }

    /// Every readable schedule, sorted by id, and the keys of those that are not readable.
    pub async fn list(&self) -> Result<(Vec<StoredSchedule>, Vec<String>), OpsError> {
        let mut keys = self.kv.keys().await.map_err(|e| OpsError::nats("cannot list schedules", e))?;
        let (mut out, mut unreadable) = (Vec::new(), Vec::new());
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| OpsError::nats("cannot list schedules", e))?;
            let Ok(id) = ScheduleId::new(key.clone()) else {
                unreadable.push(key);
                continue;
            };
            match self.get(&id).await {
                Ok(Some((stored, _))) => out.push(stored),
                Ok(None) => {}
                Err(OpsError::Invalid(_)) => unreadable.push(key),
                Err(err) => return Err(err),
            }
        }
        out.sort_by(|a, b| a.schedule.id.cmp(&b.schedule.id));
        Ok((out, unreadable))
    }

    /// The bucket's last sequence: it moves whenever any schedule is created, changed or deleted.
    pub async fn sequence(&mut self) -> Result<u64, OpsError> {
        // Asked of the server each time: `kv::Store::status` answers from the stream info cached when the bucket was
        // opened (async-nats 0.51), so a reader polling it never saw a schedule created later.
        let info = self.kv.stream.info().await.map_err(|e| OpsError::nats("cannot read the `schedules` bucket", e))?;
        Ok(info.state.last_sequence)
    }
}
