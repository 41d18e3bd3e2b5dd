//! The agent's copy of the layers of KV `agent_config` that apply to it (`global`, `groups.<g>` for each of its
//! groups, `pcs.<pc>`), kept current like the job state: core subscriptions on exactly those keys' subjects and a
//! direct get of each key's last value on every (re)connect. No KV watch: a watch is a consumer per agent
//! (DESIGN.md).
//!
//! [`Applied`] is what of it is in force; [`Applied::update`] says what a new set of settings changes, and the
//! agent's main loop carries that out.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::HeaderMap;
use kanade_shared::config::AgentConfig;
use kanade_shared::layered::{self, Layer, Scope, Settings};
use kanade_shared::resources::{KV_AGENT_CONFIG, kv_stream_name};
use kanade_shared::{GroupName, PcId, subject};

use crate::catchup::{self, CatchUpError};
use crate::jobstate::is_removal;

/// The subject `scope`'s key of `agent_config` is stored on.
fn key_subject(scope: &Scope) -> String {
    subject::kv_entry(KV_AGENT_CONFIG, &scope.key())
}

pub struct LiveConfig {
    pc: PcId,
    groups: Vec<GroupName>,
    layers: Mutex<Layers>,
}

#[derive(Default)]
struct Layers {
    by_scope: BTreeMap<Scope, Layer>,
    /// Scopes changed by a live message, with the count of live changes then: a reload that began earlier keeps
    /// their live value (it may have read the store before the change).
    touched: BTreeMap<Scope, u64>,
    changes: u64,
}

impl LiveConfig {
    pub fn new(pc: PcId, groups: Vec<GroupName>) -> Self {
        Self { pc, groups, layers: Mutex::default() }
    }

    /// The scopes that apply to this agent.
    fn scopes(&self) -> Vec<Scope> {
        let mut scopes = vec![Scope::Global];
        scopes.extend(self.groups.iter().cloned().map(Scope::Group));
        scopes.push(Scope::Pc(self.pc.clone()));
        scopes
    }

    /// The subjects to subscribe to: one per scope that applies.
    pub fn subjects(&self) -> Vec<String> {
        self.scopes().iter().map(key_subject).collect()
    }

    /// Applies one KV change. `Err` for a message that is not a layer of ours (it changes nothing).
    pub fn apply(&self, subject_name: &str, headers: Option<&HeaderMap>, payload: &[u8]) -> Result<(), String> {
        let key = subject::kv_key(KV_AGENT_CONFIG, subject_name).ok_or("not an agent_config subject")?;
        let scope = Scope::from_key(key).ok_or("not a config scope")?;
        if !self.scopes().contains(&scope) {
            return Err(format!("`{key}` does not apply to this agent"));
        }
        let layer = if is_removal(headers) {
            None
        } else {
            Some(layered::decode(payload).ok_or_else(|| format!("`{key}` is not a JSON object"))?)
        };
        let Ok(mut layers) = self.layers.lock() else { return Err("config state poisoned".into()) };
        layers.changes += 1;
        let changes = layers.changes;
        layers.touched.insert(scope.clone(), changes);
        match layer {
            Some(layer) => layers.by_scope.insert(scope, layer),
            None => layers.by_scope.remove(&scope),
        };
        Ok(())
    }

    /// Re-reads every layer that applies: the last value of each key, by the subject form of direct get
    /// (`$JS.API.DIRECT.GET.KV_agent_config.$KV.agent_config.<key>`), the one form an agent's permissions allow
    /// on this bucket, and only for its own keys. A key never written, deleted or purged is no layer.
    pub async fn reload(&self, client: &async_nats::Client) -> Result<(), CatchUpError> {
        let since = self.layers.lock().map(|layers| layers.changes).unwrap_or(u64::MAX);
        let stream = kv_stream_name(KV_AGENT_CONFIG);
        let mut fresh = BTreeMap::new();
        for scope in self.scopes() {
            let Some(last) = catchup::last_for_subject(client, &stream, &key_subject(&scope)).await? else {
                continue;
            };
            if !is_removal(last.headers.as_ref())
                && let Some(layer) = layered::decode(&last.payload)
            {
                fresh.insert(scope, layer);
            }
        }
        self.install(fresh, since);
        Ok(())
    }

    /// Puts what a reload read in place, except for scopes that changed live after it began (`since`).
    fn install(&self, mut fresh: BTreeMap<Scope, Layer>, since: u64) {
        let Ok(mut layers) = self.layers.lock() else { return };
        for scope in self.scopes() {
            if layers.touched.get(&scope).is_some_and(|at| *at > since) {
                match layers.by_scope.get(&scope) {
                    Some(live) => fresh.insert(scope, live.clone()),
                    None => fresh.remove(&scope),
                };
            }
        }
        layers.by_scope = fresh;
    }

    /// Re-reads the layers like [`LiveConfig::reload`], retrying with backoff while the bucket is not there (a
    /// broker set up after the agent started) or the broker does not answer. Returns once they are read.
    pub async fn reload_until_read(&self, client: &async_nats::Client) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.reload(client).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "cannot read agent_config yet; live changes still apply");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// The merged settings now, with any conflicts between groups.
    pub fn settings(&self) -> (Settings, Vec<String>) {
        let Ok(layers) = self.layers.lock() else { return (Settings::default(), Vec::new()) };
        let layers = &layers.by_scope;
        let global = layers.get(&Scope::Global);
        let groups: Vec<(GroupName, Layer)> = self
            .groups
            .iter()
            .filter_map(|g| layers.get(&Scope::Group(g.clone())).map(|l| (g.clone(), l.clone())))
            .collect();
        let own = layers.get(&Scope::Pc(self.pc.clone())).map(|l| (&self.pc, l));
        let effective = layered::effective(global, &groups, own);
        (Settings::from_effective(&effective), effective.conflicts)
    }
}

/// The `agent_config` values in force. The local config file's values are the defaults the layers override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub heartbeat_interval: Duration,
    pub slots: usize,
    pub inventory: InventorySchedule,
    pub perf: PerfSchedule,
}

/// How often the agent samples its host: every `interval` while watched, and a rollup every `rollup_interval`
/// (zero: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfSchedule {
    pub interval: Duration,
    pub rollup_interval: Duration,
}

/// How often the agent gathers inventory: every `interval` plus a random time up to `jitter` (never more than the
/// interval, so a layer's long jitter cannot stretch the schedule to twice its interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventorySchedule {
    pub interval: Duration,
    pub jitter: Duration,
}

/// What putting new settings in force changes: each as (from, to).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub heartbeat_interval: Option<(Duration, Duration)>,
    pub slots: Option<(usize, usize)>,
    pub inventory: Option<(InventorySchedule, InventorySchedule)>,
    pub perf: Option<(PerfSchedule, PerfSchedule)>,
}

impl Applied {
    /// What the config file says, before any layer is read.
    pub fn from_config(config: &AgentConfig) -> Self {
        Self {
            heartbeat_interval: config.heartbeat_interval,
            slots: config.max_local_concurrent.max(1),
            inventory: InventorySchedule { interval: config.inventory.interval, jitter: config.inventory.jitter },
            perf: PerfSchedule { interval: config.perf.interval, rollup_interval: config.perf.rollup_interval },
        }
    }

    /// Puts `settings` in force over `defaults` (the config file's, [`Applied::from_config`]), and says what
    /// changed. A run needs a slot, so there is always at least one.
    pub fn update(&mut self, settings: &Settings, defaults: Applied) -> Changes {
        let heartbeat_interval = settings.heartbeat_interval.unwrap_or(defaults.heartbeat_interval);
        let slots = settings.max_local_concurrent.unwrap_or(defaults.slots).max(1);
        let interval = settings.inventory_interval.unwrap_or(defaults.inventory.interval);
        let jitter = settings.inventory_jitter.unwrap_or(defaults.inventory.jitter).min(interval);
        let inventory = InventorySchedule { interval, jitter };
        let perf = PerfSchedule {
            interval: settings.perf_interval.unwrap_or(defaults.perf.interval),
            rollup_interval: settings.host_perf_interval.unwrap_or(defaults.perf.rollup_interval),
        };
        let changes = Changes {
            heartbeat_interval: (heartbeat_interval != self.heartbeat_interval)
                .then_some((self.heartbeat_interval, heartbeat_interval)),
            slots: (slots != self.slots).then_some((self.slots, slots)),
            inventory: (inventory != self.inventory).then_some((self.inventory, inventory)),
            perf: (perf != self.perf).then_some((self.perf, perf)),
        };
        *self = Self { heartbeat_interval, slots, inventory, perf };
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_agents_layers_apply_and_removals_clear() {
        let live = LiveConfig::new(PcId::new("pc-1").unwrap(), vec![GroupName::new("lab").unwrap()]);
        assert_eq!(
            live.subjects(),
            ["$KV.agent_config.global", "$KV.agent_config.groups.lab", "$KV.agent_config.pcs.pc-1"]
        );
        live.apply("$KV.agent_config.global", None, br#"{"heartbeat_interval":"10s"}"#).unwrap();
        live.apply("$KV.agent_config.pcs.pc-1", None, br#"{"heartbeat_interval":"5s"}"#).unwrap();
        assert!(live.apply("$KV.agent_config.pcs.pc-2", None, br#"{"heartbeat_interval":"1s"}"#).is_err());
        assert!(live.apply("$KV.agent_config.groups.lab", None, b"[]").is_err());
        assert_eq!(live.settings().0.heartbeat_interval, Some(std::time::Duration::from_secs(5)));
        let mut del = HeaderMap::new();
        del.insert("KV-Operation", "DEL");
        live.apply("$KV.agent_config.pcs.pc-1", Some(&del), b"").unwrap();
        assert_eq!(live.settings().0.heartbeat_interval, Some(std::time::Duration::from_secs(10)));
    }

    #[test]
    fn a_reload_keeps_what_changed_live_while_it_read() {
        let live = LiveConfig::new(PcId::new("pc-1").unwrap(), vec![GroupName::new("lab").unwrap()]);
        let layer = |raw: &str| layered::decode(raw.as_bytes()).unwrap();
        live.apply("$KV.agent_config.global", None, br#"{"heartbeat_interval":"10s"}"#).unwrap();
        let since = live.layers.lock().unwrap().changes;
        // While the reload reads: the pc layer is set and the global one removed, live.
        live.apply("$KV.agent_config.pcs.pc-1", None, br#"{"heartbeat_interval":"5s"}"#).unwrap();
        let mut del = HeaderMap::new();
        del.insert("KV-Operation", "DEL");
        live.apply("$KV.agent_config.global", Some(&del), b"").unwrap();
        // The reload read the store before both changes, and the group layer it did not know yet.
        let mut fresh = BTreeMap::new();
        fresh.insert(Scope::Global, layer(r#"{"heartbeat_interval":"10s"}"#));
        fresh.insert(Scope::Group(GroupName::new("lab").unwrap()), layer(r#"{"max_local_concurrent":3}"#));
        live.install(fresh, since);
        let (settings, _) = live.settings();
        assert_eq!(settings.heartbeat_interval, Some(std::time::Duration::from_secs(5)));
        assert_eq!(settings.max_local_concurrent, Some(3));
        assert!(!live.layers.lock().unwrap().by_scope.contains_key(&Scope::Global), "the live removal stands");
    }

    #[test]
    fn applied_settings_fall_back_to_the_config_file_and_say_what_changed() {
        let day = InventorySchedule { interval: Duration::from_secs(86_400), jitter: Duration::from_secs(600) };
        let minute = PerfSchedule { interval: Duration::from_secs(1), rollup_interval: Duration::from_secs(60) };
        let config = Applied { heartbeat_interval: Duration::from_secs(30), slots: 1, inventory: day, perf: minute };
        let mut applied = config;

        let mut settings = Settings { max_local_concurrent: Some(0), ..Settings::default() };
        assert_eq!(applied.update(&settings, config), Changes::default(), "always one slot");
        assert_eq!(applied.update(&settings, config), Changes::default());
        settings.heartbeat_interval = Some(Duration::from_secs(5));
        settings.max_local_concurrent = Some(4);
        let changes = applied.update(&settings, config);
        assert_eq!(changes.heartbeat_interval, Some((Duration::from_secs(30), Duration::from_secs(5))));
        assert_eq!(changes.slots, Some((1, 4)));
        assert_eq!(applied.update(&settings, config), Changes::default(), "the same settings again change nothing");

        // A layer removed: back to the file's values.
        let changes = applied.update(&Settings::default(), config);
        assert_eq!(changes.heartbeat_interval, Some((Duration::from_secs(5), Duration::from_secs(30))));
        assert_eq!(changes.slots, Some((4, 1)));

        // The inventory schedule: a layer's interval and jitter, the jitter never longer than the interval.
        let settings = Settings {
            inventory_interval: Some(Duration::from_secs(3600)),
            inventory_jitter: Some(Duration::from_secs(7200)),
            ..Settings::default()
        };
        let hour = InventorySchedule { interval: Duration::from_secs(3600), jitter: Duration::from_secs(3600) };
        assert_eq!(applied.update(&settings, config).inventory, Some((day, hour)));
        assert_eq!(applied.update(&Settings::default(), config).inventory, Some((hour, day)));

        // The perf schedule: each key on its own, back to the file's values when the layer goes.
        let settings = Settings { host_perf_interval: Some(Duration::ZERO), ..Settings::default() };
        let off = PerfSchedule { rollup_interval: Duration::ZERO, ..minute };
        assert_eq!(applied.update(&settings, config).perf, Some((minute, off)));
        assert_eq!(applied.update(&Settings::default(), config).perf, Some((off, minute)));
    }
}
