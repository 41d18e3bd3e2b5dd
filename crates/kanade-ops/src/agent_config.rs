//! The layered agent config in KV `agent_config` (see `kanade_shared::layered`): read, change one key of one
//! scope with a compare-and-set (two operators changing the same scope at once never lose each other's key), and
//! merge what applies to one agent.

use async_nats::jetstream::kv::{self, Store};
use futures::StreamExt;
use kanade_shared::layered::{self, Effective, Layer, Scope};
use kanade_shared::resources::KV_AGENT_CONFIG;
use kanade_shared::{GroupName, PcId};

use crate::OpsError;

/// How often a changed-underneath write is retried (after a short random pause) before giving up.
const CAS_ATTEMPTS: usize = 30;

pub struct AgentConfigStore {
    kv: Store,
}

impl AgentConfigStore {
    pub async fn open(client: &async_nats::Client) -> Result<Self, OpsError> {
        let kv = async_nats::jetstream::new(client.clone())
            .get_key_value(KV_AGENT_CONFIG)
            .await
            .map_err(|_| OpsError::Missing { kind: "KV bucket", name: KV_AGENT_CONFIG })?;
        Ok(Self { kv })
    }

    /// The layer of `scope` and its revision (0: none stored).
    async fn read(&self, scope: &Scope) -> Result<(Layer, u64), OpsError> {
        let key = scope.key();
        match self.kv.entry(&key).await.map_err(|e| OpsError::nats(format!("cannot read `{key}`"), e))? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let layer = layered::decode(&entry.value)
                    .ok_or_else(|| OpsError::Invalid(format!("`{key}` in `{KV_AGENT_CONFIG}` is not a JSON object")))?;
                Ok((layer, entry.revision))
            }
            Some(entry) => Ok((Layer::new(), entry.revision)),
            None => Ok((Layer::new(), 0)),
        }
    }

    pub async fn get(&self, scope: &Scope) -> Result<Layer, OpsError> {
        Ok(self.read(scope).await?.0)
    }

    /// Sets (`Some`) or removes (`None`) one key of `scope`; returns the layer as stored.
    pub async fn change(&self, scope: &Scope, key: &str, value: Option<serde_json::Value>) -> Result<Layer, OpsError> {
        self.change_many(scope, &[(key, value)]).await
    }

    /// Changes several keys of `scope` in one write, so an agent never sees half of them (a target version without
    /// its jitter). A write that finds the layer changed since it was read is re-applied to the new layer.
    pub async fn change_many(
        &self,
        scope: &Scope,
        changes: &[(&str, Option<serde_json::Value>)],
    ) -> Result<Layer, OpsError> {
        let name = scope.key();
        for attempt in 0..CAS_ATTEMPTS {
            let (mut layer, revision) = self.read(scope).await.map_err(|err| match err {
                OpsError::Invalid(message) => {
                    OpsError::Invalid(format!("{message}; clear it with `kanade config reset {}`", reset_flags(scope)))
                }
                other => other,
            })?;
            let before = layer.clone();
            for (key, value) in changes {
                match value {
                    Some(value) => layer.insert((*key).to_owned(), value.clone()),
                    None => layer.remove(*key),
                };
            }
            if layer == before && revision != 0 {
                return Ok(layer);
            }
            let body =
                serde_json::to_vec(&layer).map_err(|source| OpsError::Encode { what: "config layer", source })?;
            let written = if revision == 0 {
                self.kv.create(&name, body.into()).await.map(|_| ()).map_err(|e| e.to_string())
            } else {
                self.kv.update(&name, body.into(), revision).await.map(|_| ()).map_err(|e| e.to_string())
            };
            match written {
                Ok(()) => return Ok(layer),
                Err(err) => {
                    // Someone else wrote the scope in between: wait a moment (random, so writers spread) and
                    // re-apply these keys to what is there now.
                    tracing::debug!(scope = %name, attempt, error = %err, "config changed underneath; retrying");
                    let pause = rand_millis(5 + 5 * attempt as u64);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
            }
        }
        Err(OpsError::Invalid(format!("`{name}` kept changing underneath; try again")))
    }

    /// Removes the whole layer of `scope` (also one that is not readable); false if there was none.
    pub async fn reset(&self, scope: &Scope) -> Result<bool, OpsError> {
        let key = scope.key();
        let existed = matches!(
            self.kv.entry(&key).await.map_err(|e| OpsError::nats(format!("cannot read `{key}`"), e))?,
            Some(entry) if entry.operation == kv::Operation::Put
        );
        if existed {
            self.kv.delete(&key).await.map_err(|e| OpsError::nats(format!("cannot remove `{key}`"), e))?;
        }
        Ok(existed)
    }

    /// Every stored layer, by scope.
    pub async fn all(&self) -> Result<Vec<(Scope, Layer)>, OpsError> {
        let mut keys = self.kv.keys().await.map_err(|e| OpsError::nats("cannot list agent_config", e))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| OpsError::nats("cannot list agent_config", e))?;
            let Some(scope) = Scope::from_key(&key) else { continue };
            match self.get(&scope).await {
                Ok(layer) if !layer.is_empty() => out.push((scope, layer)),
                Ok(_) => {}
                // Agents skip such a layer too; say so rather than hide every other scope.
                Err(OpsError::Invalid(message)) => tracing::warn!(%message, "skipping an unreadable layer"),
                Err(err) => return Err(err),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// What applies to `pc` in `groups`.
    /// An unreadable layer is left out, as agents leave it out.
    pub async fn effective(&self, pc: &PcId, groups: &[GroupName]) -> Result<Effective, OpsError> {
        let global = self.readable(&Scope::Global).await?;
        let mut by_group = Vec::new();
        for group in groups {
            by_group.push((group.clone(), self.readable(&Scope::Group(group.clone())).await?));
        }
        let own = self.readable(&Scope::Pc(pc.clone())).await?;
        Ok(layered::effective(Some(&global), &by_group, Some((pc, &own))))
    }

    async fn readable(&self, scope: &Scope) -> Result<Layer, OpsError> {
        match self.get(scope).await {
            Err(OpsError::Invalid(message)) => {
                tracing::warn!(%message, "leaving out an unreadable layer, as agents do");
                Ok(Layer::new())
            }
            other => other,
        }
    }
}

/// The `kanade config` flags that name `scope`.
fn reset_flags(scope: &Scope) -> String {
    match scope {
        Scope::Global => "--global".into(),
        Scope::Group(group) => format!("--group {group}"),
        Scope::Pc(pc) => format!("--pc {pc}"),
    }
}

/// A pseudo-random number of milliseconds below `below` (spreads retrying writers; needs no quality).
fn rand_millis(below: u64) -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    u64::from(nanos) % below.max(1)
}
