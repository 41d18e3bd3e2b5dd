//! The agents: `GET /api/agents[/{pc}]` (their stored rows and whether each is online), `POST /api/agents/{pc}/ping`
//! (is it connected right now?) and `GET /api/agents/{pc}/config` (what its layered config resolves to).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kanade_ops::agent_config::AgentConfigStore;
use kanade_ops::agents::PingError;
use kanade_shared::layered::Scope;
use kanade_shared::{GroupName, PcId};
use serde::Serialize;

use super::{ApiError, AppState, NoBody, OptionalJson, PathId, ops_error};
use crate::db::AgentRow;

/// How long an agent has to answer a ping from the dashboard.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// An agent as the API shows it: the stored row plus whether it is online now.
#[derive(Serialize)]
pub struct AgentView {
    #[serde(flatten)]
    agent: AgentRow,
    online: bool,
}

fn view(agent: AgentRow, now: DateTime<Utc>, offline_after: Duration) -> AgentView {
    AgentView { online: is_online(agent.last_seen, now, offline_after), agent }
}

/// An agent is online while its last heartbeat arrived at most `offline_after` ago.
pub(crate) fn is_online(last_seen: DateTime<Utc>, now: DateTime<Utc>, offline_after: Duration) -> bool {
    now.signed_duration_since(last_seen).to_std().unwrap_or_default() <= offline_after
}

pub(super) async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<AgentView>>, ApiError> {
    let now = Utc::now();
    let agents = state.db.list_agents().await?;
    Ok(Json(agents.into_iter().map(|a| view(a, now, state.offline_after)).collect()))
}

pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AgentView>, ApiError> {
    // A path that is not UTF-8 is rejected by the extractor; give it the same shape as any other bad id.
    let Path(raw) = path.map_err(|rejection| ApiError::bad_request("invalid_pc_id", rejection.body_text()))?;
    let pc = PcId::new(raw).map_err(|err| ApiError::bad_request("invalid_pc_id", err.to_string()))?;
    let agent = state.db.get_agent(&pc).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "agent_not_found", format!("no agent `{pc}` has reported"))
    })?;
    Ok(Json(view(agent, Utc::now(), state.offline_after)))
}

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
