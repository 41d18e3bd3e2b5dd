//! The layered agent config in KV `agent_config`: partial settings per scope (`global`, `groups.<g>`,
//! `pcs.<pc>`), merged into an agent's effective settings as DESIGN.md says: built-in default < global < groups
//! (sorted by name, later wins, conflicts reported) < pc.
//!
//! A layer is a JSON object of known keys. Writers (the CLI) accept only the keys and values in [`KEYS`]; readers
//! (agents) skip what they do not know, so an older agent keeps working next to a newer CLI.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::config;
use crate::ids::{GroupName, PcId};
use crate::manifest::Version;

/// Where a layer lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Global,
    Group(GroupName),
    Pc(PcId),
}

impl Scope {
    /// The layer's key in `agent_config`.
    pub fn key(&self) -> String {
        match self {
            Scope::Global => "global".into(),
            Scope::Group(group) => format!("groups.{group}"),
            Scope::Pc(pc) => format!("pcs.{pc}"),
        }
    }

    /// The scope a KV key names; `None` for a key that is not a layer.
    pub fn from_key(key: &str) -> Option<Self> {
        if key == "global" {
            return Some(Scope::Global);
        }
        if let Some(group) = key.strip_prefix("groups.") {
            return GroupName::new(group).ok().map(Scope::Group);
        }
        PcId::new(key.strip_prefix("pcs.")?).ok().map(Scope::Pc)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Group(group) => write!(f, "group {group}"),
            Scope::Pc(pc) => write!(f, "pc {pc}"),
        }
    }
}

/// One scope's settings: key -> value, as stored.
pub type Layer = BTreeMap<String, Value>;

/// A key an operator may set, with how its value is written and checked.
pub struct KeySpec {
    pub name: &'static str,
    pub help: &'static str,
    parse: fn(&str) -> Result<Value, String>,
}

/// `raw` as it may appear in a message: at most 40 characters of it.
fn shown(raw: &str) -> String {
    if raw.chars().count() > 40 { format!("{}...", raw.chars().take(40).collect::<String>()) } else { raw.to_owned() }
}

fn duration_within(raw: &str, min: Duration, max: Duration) -> Result<Value, String> {
    let raw_shown = shown(raw);
    let value = humantime::parse_duration(raw.trim()).map_err(|e| format!("`{raw_shown}` is not a duration: {e}"))?;
    if value < min || value > max {
        return Err(format!(
            "`{raw_shown}` is outside {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(Value::String(humantime::format_duration(value).to_string()))
}

/// Every key of the layered config.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "target_version",
        help: "the agent version this scope should run (set by `kanade agent rollout`)",
        parse: |raw| {
            Version::new(raw).map(|v| Value::String(v.as_str().to_owned())).map_err(|e| e.chars().take(200).collect())
        },
    },
    KeySpec {
        name: "target_version_jitter",
        help: "agents wait a random time up to this before they update (0s to 7d)",
        parse: |raw| duration_within(raw, Duration::ZERO, Duration::from_secs(7 * 24 * 3600)),
    },
    KeySpec {
        name: "heartbeat_interval",
        help: "how often agents report (1s to 1h)",
        parse: |raw| duration_within(raw, Duration::from_secs(1), Duration::from_secs(3600)),
    },
    KeySpec {
        name: "inventory_interval",
        help: "how often agents gather inventory (1m to 7d)",
        parse: |raw| duration_within(raw, Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600)),
    },
    KeySpec {
        name: "inventory_jitter",
        help: "agents add a random time up to this to each inventory wait (0s to 7d; at most the interval)",
        parse: |raw| duration_within(raw, Duration::ZERO, Duration::from_secs(7 * 24 * 3600)),
    },
    KeySpec {
        name: "perf_interval",
        help: "how often a watched agent samples its host's performance (250ms to 1m)",
        parse: |raw| duration_within(raw, config::MIN_PERF_INTERVAL, config::MAX_PERF_INTERVAL),
    },
    KeySpec {
        name: "host_perf_interval",
        help: "how often every agent sends a performance rollup (0s for none, or 10s to 1h)",
        parse: |raw| match humantime::parse_duration(raw.trim()) {
            Ok(d) if d.is_zero() => Ok(Value::String("0s".into())),
            _ => duration_within(raw, config::MIN_HOST_PERF_INTERVAL, config::MAX_HOST_PERF_INTERVAL),
        },
    },
    KeySpec {
        name: "max_local_concurrent",
        help: "runs an agent starts at once; the rest queue (1 to 64)",
        parse: |raw| match raw.trim().parse::<u32>() {
            Ok(n) if (1..=64).contains(&n) => Ok(Value::from(n)),
            _ => Err(format!("`{}` is not a whole number from 1 to 64", shown(raw))),
        },
    },
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("unknown config key `{key}` (known: {known})")]
    UnknownKey { key: String, known: String },
    #[error("{key}: {problem}")]
    InvalidValue { key: String, problem: String },
}

fn spec(key: &str) -> Result<&'static KeySpec, LayerError> {
    KEYS.iter().find(|k| k.name == key).ok_or_else(|| LayerError::UnknownKey {
        key: key.chars().take(64).collect(),
        known: KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
    })
}

/// Checks `key` is known and `raw` a valid value for it; returns the value as it is stored.
pub fn parse(key: &str, raw: &str) -> Result<Value, LayerError> {
    let spec = spec(key)?;
    (spec.parse)(raw).map_err(|problem| LayerError::InvalidValue { key: key.to_owned(), problem })
}

/// Checks that `key` is a known key (for `unset` and `get`).
pub fn known(key: &str) -> Result<(), LayerError> {
    spec(key).map(|_| ())
}

/// A value and the scope it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced {
    pub value: Value,
    pub from: Scope,
}

/// An agent's merged settings: each set key with the scope that won, and the conflicts between its groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effective {
    pub values: BTreeMap<String, Sourced>,
    /// `key: group a says x, group b says y; b wins` for each key two of the agent's groups set differently.
    pub conflicts: Vec<String>,
}

/// Merges the layers that apply to one agent. `groups` may come in any order; they apply sorted by name.
pub fn effective(global: Option<&Layer>, groups: &[(GroupName, Layer)], pc: Option<(&PcId, &Layer)>) -> Effective {
    let mut out = Effective::default();
    let apply = |layer: &Layer, from: Scope, out: &mut Effective| {
        for (key, value) in layer {
            if let (Some(previous), Scope::Group(group)) = (out.values.get(key), &from)
                && matches!(previous.from, Scope::Group(_))
                && previous.value != *value
            {
                out.conflicts.push(format!(
                    "{key}: {} says {}, group {group} says {value}; group {group} wins",
                    previous.from, previous.value
                ));
            }
            out.values.insert(key.clone(), Sourced { value: value.clone(), from: from.clone() });
        }
    };
    if let Some(layer) = global {
        apply(layer, Scope::Global, &mut out);
    }
    let mut sorted: Vec<&(GroupName, Layer)> = groups.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (group, layer) in sorted {
        apply(layer, Scope::Group(group.clone()), &mut out);
    }
    if let Some((pc, layer)) = pc {
        apply(layer, Scope::Pc(pc.clone()), &mut out);
    }
    out
}

/// The settings an agent applies, read leniently from an [`Effective`]: a value that does not parse (written by
/// something else than the CLI) is left out and named in `rejected`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub target_version: Option<String>,
    pub target_version_jitter: Option<Duration>,
    pub heartbeat_interval: Option<Duration>,
    pub inventory_interval: Option<Duration>,
    pub inventory_jitter: Option<Duration>,
    pub perf_interval: Option<Duration>,
    pub host_perf_interval: Option<Duration>,
    pub max_local_concurrent: Option<usize>,
    pub rejected: Vec<String>,
}

impl Settings {
    pub fn from_effective(effective: &Effective) -> Self {
        let mut out = Settings::default();
        for (key, sourced) in &effective.values {
            let raw = match &sourced.value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let checked = parse(key, &raw);
            let Ok(value) = checked else {
                if !matches!(checked, Err(LayerError::UnknownKey { .. })) {
                    out.rejected.push(format!("{key} = {raw} (from {})", sourced.from));
                }
                continue;
            };
            let duration = || value.as_str().and_then(|s| humantime::parse_duration(s).ok());
            match key.as_str() {
                "target_version" => out.target_version = value.as_str().map(str::to_owned),
                "target_version_jitter" => out.target_version_jitter = duration(),
                "heartbeat_interval" => out.heartbeat_interval = duration(),
                "inventory_interval" => out.inventory_interval = duration(),
                "inventory_jitter" => out.inventory_jitter = duration(),
                "perf_interval" => out.perf_interval = duration(),
                "host_perf_interval" => out.host_perf_interval = duration(),
                "max_local_concurrent" => out.max_local_concurrent = value.as_u64().map(|n| n as usize),
                _ => {}
            }
        }
        out
    }
}

/// Decodes a stored layer; `None` for something that is not a JSON object.
pub fn decode(bytes: &[u8]) -> Option<Layer> {
    serde_json::from_slice::<Layer>(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(pairs: &[(&str, &str)]) -> Layer {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), parse(k, v).unwrap())).collect()
    }

    #[test]
    fn scopes_round_trip_through_their_keys() {
        for scope in
            [Scope::Global, Scope::Group(GroupName::new("wave1").unwrap()), Scope::Pc(PcId::new("pc-1").unwrap())]
        {
            assert_eq!(Scope::from_key(&scope.key()), Some(scope));
        }
        assert_eq!(Scope::from_key("groups.Bad Name"), None);
        assert_eq!(Scope::from_key("other"), None);
    }

    #[test]
    fn values_are_checked_and_stored_canonically() {
        assert_eq!(parse("heartbeat_interval", "90s").unwrap(), Value::String("1m 30s".into()));
        assert_eq!(parse("max_local_concurrent", "8").unwrap(), Value::from(8));
        assert_eq!(parse("target_version", "0.44.0").unwrap(), Value::String("0.44.0".into()));
        let err = parse("heartbeat_interval", "0s").unwrap_err().to_string();
        assert!(err.starts_with("heartbeat_interval: `0s` is outside 1s to 1h"), "{err}");
        assert!(parse("max_local_concurrent", "65").unwrap_err().to_string().contains("1 to 64"));
        assert!(parse("max_local_concurrent", "-1").is_err());
        assert!(parse("heartbeat_interval", "soon").unwrap_err().to_string().contains("not a duration"));
        assert!(parse("target_version", "1.0/../x").is_err());
        assert_eq!(parse("inventory_jitter", "0s").unwrap(), Value::String("0s".into()));
        assert!(parse("inventory_jitter", "8d").unwrap_err().to_string().contains("outside 0s to 7days"));
        assert!(parse("inventory_interval", "30s").unwrap_err().to_string().contains("outside 1m to 7days"));
        assert_eq!(parse("perf_interval", "500ms").unwrap(), Value::String("500ms".into()));
        assert!(parse("perf_interval", "100ms").unwrap_err().to_string().contains("outside 250ms to 1m"));
        assert_eq!(parse("host_perf_interval", "0s").unwrap(), Value::String("0s".into()));
        assert_eq!(parse("host_perf_interval", "5m").unwrap(), Value::String("5m".into()));
        assert!(parse("host_perf_interval", "5s").unwrap_err().to_string().contains("outside 10s to 1h"));
        let err = parse("hearbeat_interval", "30s").unwrap_err().to_string();
        assert!(err.starts_with("unknown config key `hearbeat_interval` (known: target_version,"), "{err}");
    }

    #[test]
    fn pc_beats_groups_beat_global_and_later_groups_win_with_a_conflict_reported() {
        let pc = PcId::new("pc-1").unwrap();
        let global = layer(&[("heartbeat_interval", "30s"), ("max_local_concurrent", "4")]);
        let groups = vec![
            (GroupName::new("wave1").unwrap(), layer(&[("heartbeat_interval", "20s")])),
            (GroupName::new("canary").unwrap(), layer(&[("heartbeat_interval", "10s"), ("target_version", "2.0")])),
        ];
        let own = layer(&[("max_local_concurrent", "1")]);
        let merged = effective(Some(&global), &groups, Some((&pc, &own)));
        let from = |key: &str| merged.values[key].from.to_string();
        assert_eq!(merged.values["heartbeat_interval"].value, Value::String("20s".into()));
        assert_eq!(from("heartbeat_interval"), "group wave1", "groups apply sorted by name; the later wins");
        assert_eq!(from("target_version"), "group canary");
        assert_eq!(from("max_local_concurrent"), "pc pc-1");
        assert_eq!(merged.conflicts.len(), 1);
        assert!(
            merged.conflicts[0].starts_with("heartbeat_interval: group canary says \"10s\""),
            "{:?}",
            merged.conflicts
        );

        let settings = Settings::from_effective(&merged);
        assert_eq!(settings.heartbeat_interval, Some(Duration::from_secs(20)));
        assert_eq!(settings.max_local_concurrent, Some(1));
        assert_eq!(settings.target_version.as_deref(), Some("2.0"));
    }

    #[test]
    fn agents_skip_what_they_cannot_use() {
        let mut hostile = Layer::new();
        hostile.insert("heartbeat_interval".into(), Value::String("0s".into()));
        hostile.insert("max_local_concurrent".into(), Value::from(1_000_000));
        hostile.insert("from_the_future".into(), Value::Bool(true));
        let settings = Settings::from_effective(&effective(Some(&hostile), &[], None));
        assert_eq!(settings.heartbeat_interval, None);
        assert_eq!(settings.max_local_concurrent, None);
        assert_eq!(settings.rejected.len(), 2, "{:?}", settings.rejected);
        assert_eq!(decode(b"[1,2]"), None);
        assert_eq!(decode(b"not json"), None);
    }
}
