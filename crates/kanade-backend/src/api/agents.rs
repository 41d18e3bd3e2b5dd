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
use kanade_shared::api::{AgentRow, AgentView, ConfigValue, ConfigView, ErrorBody, NoBody, PingView};
use kanade_shared::layered::Scope;
use kanade_shared::{GroupName, PcId};

use super::{ApiError, AppState, ErrorCode, OptionalJson, PathId, ops_error};

/// How long an agent has to answer a ping from the dashboard.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

fn view(agent: AgentRow, now: DateTime<Utc>, offline_after: Duration) -> AgentView {
    AgentView { online: is_online(agent.last_seen, now, offline_after), agent }
}

/// An agent is online while its last heartbeat arrived at most `offline_after` ago.
pub(crate) fn is_online(last_seen: DateTime<Utc>, now: DateTime<Utc>, offline_after: Duration) -> bool {
    now.signed_duration_since(last_seen).to_std().unwrap_or_default() <= offline_after
}

#[utoipa::path(get, path = "/api/agents", tag = "agents", operation_id = "agents_list", responses((status = 200, description = "every agent that has reported", body = [AgentView]), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<AgentView>>, ApiError> {
    let now = Utc::now();
    let agents = state.db.list_agents().await?;
    Ok(Json(agents.into_iter().map(|a| view(a, now, state.offline_after)).collect()))
}

#[utoipa::path(get, path = "/api/agents/{pc_id}", tag = "agents", operation_id = "agents_get", params(("pc_id" = String, Path, description = "the agent's pc id")), responses((status = 200, body = AgentView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AgentView>, ApiError> {
    // A path that is not UTF-8 is rejected by the extractor; give it the same shape as any other bad id.
    let Path(raw) = path.map_err(|rejection| ApiError::bad_request(ErrorCode::InvalidPcId, rejection.body_text()))?;
    let pc = PcId::new(raw).map_err(|err| ApiError::bad_request(ErrorCode::InvalidPcId, err.to_string()))?;
    let agent = state.db.get_agent(&pc).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::AgentNotFound, format!("no agent `{pc}` has reported"))
    })?;
    Ok(Json(view(agent, Utc::now(), state.offline_after)))
}

#[utoipa::path(post, path = "/api/agents/{pc_id}/ping", tag = "agents", operation_id = "agents_ping", params(("pc_id" = String, Path, description = "the agent's pc id")), request_body(content = Option<NoBody>), responses((status = 200, body = PingView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn ping(
    State(state): State<Arc<AppState>>,
    PathId(pc): PathId<PcId>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<Json<PingView>, ApiError> {
    let (heartbeat, rtt) = kanade_ops::agents::ping(&state.nats, &pc, PING_TIMEOUT).await.map_err(|err| match err {
        PingError::NoAgent(_) => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::AgentNotConnected, err.to_string()),
        PingError::TimedOut(..) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::PingTimeout, err.to_string()),
        PingError::Malformed(..) => {
            tracing::warn!(pc_id = %pc, error = %err, "unreadable ping answer");
            ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::BadAgentReply, err.to_string())
        }
        PingError::Other(..) => {
            tracing::error!(pc_id = %pc, error = %err, source = ?std::error::Error::source(&err), "ping failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::BrokerUnavailable, err.to_string())
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

/// How a layer is named in [`ConfigValue::from`].
pub fn layer_name(scope: &Scope) -> String {
    match scope {
        Scope::Global => "global".to_owned(),
        Scope::Group(group) => format!("group:{group}"),
        Scope::Pc(_) => "pc".to_owned(),
    }
}

#[utoipa::path(get, path = "/api/agents/{pc_id}/config", tag = "agents", operation_id = "agents_config", params(("pc_id" = String, Path, description = "the agent's pc id")), responses((status = 200, body = ConfigView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn config(
    State(state): State<Arc<AppState>>,
    PathId(pc): PathId<PcId>,
) -> Result<Json<ConfigView>, ApiError> {
    let agent = state.db.get_agent(&pc).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::AgentNotFound, format!("no agent `{pc}` has reported"))
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
