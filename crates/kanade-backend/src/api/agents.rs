//! Asking about one agent beyond its stored row: `POST /api/agents/{pc}/ping` (is it connected right now?) and
//! `GET /api/agents/{pc}/config` (what its layered config resolves to).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use kanade_ops::agent_config::AgentConfigStore;
use kanade_ops::agents::PingError;
use kanade_shared::layered::Scope;
use kanade_shared::{GroupName, PcId};
use serde::Serialize;

use super::{ApiError, AppState, NoBody, OptionalJson, PathId, ops_error};

/// How long an agent has to answer a ping from the dashboard.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// `POST /api/agents/{pc}/ping`: the agent's own fresh answer, as `kanade ping -o json` prints it.
#[derive(Debug, Serialize)]
pub struct PingView {
    pub pc_id: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub uptime_secs: u64,
    pub rtt_ms: f64,
}

pub async fn ping(
    State(state): State<Arc<AppState>>,
    PathId(pc): PathId<PcId>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<Json<PingView>, ApiError> {
    let (heartbeat, rtt) = kanade_ops::agents::ping(&state.nats, &pc, PING_TIMEOUT).await.map_err(|err| match err {
        PingError::NoAgent(_) => ApiError::new(StatusCode::NOT_FOUND, "agent_not_connected", err.to_string()),
        PingError::TimedOut(..) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "ping_timeout", err.to_string()),
        PingError::Malformed(..) => {
            tracing::warn!(pc_id = %pc, error = %err, "unreadable ping answer");
            ApiError::new(StatusCode::BAD_GATEWAY, "bad_agent_reply", err.to_string())
        }
        PingError::Other(..) => {
            tracing::error!(pc_id = %pc, error = %err, source = ?std::error::Error::source(&err), "ping failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable", err.to_string())
        }
    })?;
    Ok(Json(PingView {
        pc_id: heartbeat.pc_id.to_string(),
        hostname: heartbeat.hostname,
        os: heartbeat.os,
        agent_version: heartbeat.agent_version,
        uptime_secs: heartbeat.uptime_secs,
        rtt_ms: rtt.as_secs_f64() * 1000.0,
    }))
}

/// `GET /api/agents/{pc}/config`: every key the layers of `agent_config` set for this agent, with the layer that
/// won, in the order DESIGN.md gives (global < groups sorted by name < pc). Built-in defaults that no layer
/// overrides are not listed: they are the agent's own (its config file or compiled-in values), which the backend
/// does not know. The groups are the ones the agent last reported in its heartbeat.
#[derive(Debug, Serialize)]
pub struct ConfigView {
    pub pc_id: String,
    pub groups: Vec<String>,
    pub values: Vec<ConfigValue>,
    /// One sentence per key that two of the agent's groups set differently, naming the group that wins.
    pub conflicts: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ConfigValue {
    pub key: String,
    pub value: serde_json::Value,
    /// The layer it came from: `global`, `group:<name>` or `pc`.
    pub from: String,
}

/// How a layer is named in [`ConfigValue::from`].
pub fn layer_name(scope: &Scope) -> String {
    match scope {
        Scope::Global => "global".to_owned(),
        Scope::Group(group) => format!("group:{group}"),
        Scope::Pc(_) => "pc".to_owned(),
    }
}

pub async fn config(
    State(state): State<Arc<AppState>>,
    PathId(pc): PathId<PcId>,
) -> Result<Json<ConfigView>, ApiError> {
    let agent = state.db.get_agent(&pc).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "agent_not_found", format!("no agent `{pc}` has reported"))
    })?;
    // The projector stored what the agent said; a name that is not a valid group cannot name a layer.
    let groups: Vec<GroupName> = agent.groups.iter().filter_map(|g| GroupName::new(g.as_str()).ok()).collect();
    let store = AgentConfigStore::open(&state.nats).await.map_err(ops_error)?;
    let effective = store.effective(&pc, &groups).await.map_err(ops_error)?;
    let values = effective
        .values
        .into_iter()
        .map(|(key, sourced)| ConfigValue { key, value: sourced.value, from: layer_name(&sourced.from) })
        .collect();
    Ok(Json(ConfigView {
        pc_id: pc.to_string(),
        groups: groups.iter().map(ToString::to_string).collect(),
        values,
        conflicts: effective.conflicts,
    }))
}
