//! The agents: `GET /api/agents[/{pc}]` (their stored rows and whether each is online, offline or stale; the list a
//! page at a time, filtered on the server), `DELETE /api/agents/{pc}` (forget one), `POST /api/agents/{pc}/ping`
//! (is it connected right now?) and `GET /api/agents/{pc}/config` (what its layered config resolves to). A caller
//! scoped to groups sees and reaches the agents in them only; any other answers as an agent that never reported.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kanade_ops::agent_config::AgentConfigStore;
use kanade_ops::agents::PingError;
use kanade_shared::api::{
    AgentRow, AgentView, AgentsQuery, ConfigValue, ConfigView, ErrorBody, KeyPart, NoBody, Page, PingView,
    RemoveAgentQuery, RemovedAgent,
};
use kanade_shared::layered::Scope;
use kanade_shared::{GroupName, PcId};

use super::{ApiError, ApiQuery, AppState, ErrorCode, OptionalJson, PathId, ops_error, paging};
use crate::caller::Caller;
use crate::db::{AgentFilter, AgentSort, AgentStatus, Liveness};

/// How long an agent has to answer a ping from the dashboard.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest `search` of `GET /api/agents`, and the most words in it.
pub const MAX_SEARCH_CHARS: usize = 200;
pub const MAX_SEARCH_WORDS: usize = 8;

fn view(agent: AgentRow, liveness: &Liveness) -> AgentView {
    let status = liveness.status(agent.last_seen.timestamp_millis());
    AgentView { online: status == AgentStatus::Online, status: status.as_str().to_owned(), agent }
}

fn liveness(state: &AppState) -> Liveness {
    Liveness::new(Utc::now(), state.offline_after, state.stale_after)
}

/// The query of `GET /api/agents` as the database filters it.
fn agent_filter(query: AgentsQuery, liveness: Liveness) -> Result<AgentFilter, ApiError> {
    let bad = |m: String| ApiError::bad_request(ErrorCode::InvalidQuery, m);
    let shown = |raw: &str| raw.chars().take(40).collect::<String>();
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let status = match nonempty(query.status) {
        None => None,
        Some(raw) => Some(
            AgentStatus::parse(&raw)
                .ok_or_else(|| bad(format!("status `{}` is not one of online, offline, stale", shown(&raw))))?,
        ),
    };
    let group = nonempty(query.group).map(GroupName::new).transpose().map_err(|e| bad(format!("group: {e}")))?;
    // OS and version are compared exactly; anything longer than a heartbeat's field cannot match.
    let exact = |field: &str, raw: Option<String>| match nonempty(raw) {
        Some(raw) if raw.chars().count() > 64 || raw.contains('\0') => {
            Err(bad(format!("{field} `{}` is longer than 64 characters or holds NUL", shown(&raw))))
        }
        other => Ok(other),
    };
    let search = query.search.unwrap_or_default();
    if search.chars().count() > MAX_SEARCH_CHARS || search.contains('\0') {
        return Err(bad(format!("search is longer than {MAX_SEARCH_CHARS} characters or holds NUL")));
    }
    let words: Vec<String> = search.split_whitespace().map(str::to_lowercase).collect();
    if words.len() > MAX_SEARCH_WORDS {
        return Err(bad(format!("search has {} words; at most {MAX_SEARCH_WORDS}", words.len())));
    }
    let sort = match nonempty(query.sort) {
        None => AgentSort::PcId,
        Some(raw) => AgentSort::parse(&raw)
            .ok_or_else(|| bad(format!("sort `{}` is not one of pc_id, cpu, memory", shown(&raw))))?,
    };
    let after = match sort {
        AgentSort::PcId => paging::after_id(paging::AGENTS, query.cursor.as_deref(), PcId::new)?.map(|pc| (None, pc)),
        figure => match paging::key_parts(cursor_list(figure), query.cursor.as_deref(), 2)? {
            None => None,
            Some(parts) => match <[KeyPart; 2]>::try_from(parts) {
                Ok([KeyPart::Int(value), KeyPart::Text(pc)]) => {
                    Some((Some(value), PcId::new(pc).map_err(|_| paging::wrong())?))
                }
                _ => return Err(paging::wrong()),
            },
        },
    };
    Ok(AgentFilter {
        liveness,
        status,
        group,
        os: exact("os", query.os)?,
        version: exact("version", query.version)?,
        words,
        sort,
        after,
        limit: paging::limit(query.limit)?,
    })
}

/// The list a cursor names: each order has its own, so a cursor of one order is refused by another.
fn cursor_list(sort: AgentSort) -> &'static str {
    match sort {
        AgentSort::PcId => paging::AGENTS,
        AgentSort::Cpu => paging::AGENTS_BY_CPU,
        AgentSort::Memory => paging::AGENTS_BY_MEMORY,
    }
}

/// An agent is online while its last heartbeat arrived at most `offline_after` ago.
pub(crate) fn is_online(last_seen: DateTime<Utc>, now: DateTime<Utc>, offline_after: Duration) -> bool {
    now.signed_duration_since(last_seen).to_std().unwrap_or_default() <= offline_after
}

#[utoipa::path(get, path = "/api/agents", tag = "agents", operation_id = "agents_list", params(AgentsQuery), responses((status = 200, description = "one page of the agents that have reported, by pc id", body = Page<AgentView>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AgentsQuery>,
) -> Result<Json<Page<AgentView>>, ApiError> {
    let liveness = liveness(&state);
    let filter = agent_filter(query, liveness)?;
    let page = state.db.list_agents(&filter, &caller.scope).await?;
    let next = page.next.map(|(value, pc)| match value {
        None => vec![KeyPart::Text(pc)],
        Some(value) => vec![KeyPart::Int(value), KeyPart::Text(pc)],
    });
    Ok(Json(Page {
        items: page.items.into_iter().map(|a| view(a, &liveness)).collect(),
        next: paging::next_key(cursor_list(filter.sort), next),
    }))
}

/// `DELETE /api/agents/{pc}`: forget an agent (the undeploy runbook's last step), audited. Its row leaves the read
/// model, so it no longer lists, counts or becomes a target; its results stay as history. `?purge=true` also
/// deletes its own `agent_config` layer and its `agent_groups` entry. A heartbeat from it afterwards makes it a new
/// agent again.
#[utoipa::path(delete, path = "/api/agents/{pc_id}", tag = "agents", operation_id = "agents_remove", params(("pc_id" = String, Path, description = "the agent's pc id"), RemoveAgentQuery), responses((status = 200, body = RemovedAgent), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(pc): PathId<PcId>,
    ApiQuery(query): ApiQuery<RemoveAgentQuery>,
) -> Result<Json<RemovedAgent>, ApiError> {
    let purge = query.purge.unwrap_or(false);
    in_scope(&state, &caller, &pc).await?;
    if state.db.get_agent(&pc).await?.is_none() {
        return Err(not_found(&pc));
    }
    // The broker's part first: if it fails, nothing is forgotten yet and the request can be repeated.
    let purged = if purge {
        kanade_ops::actions::purge_agent(&state.nats, &pc).await.map_err(ops_error)?
    } else {
        kanade_ops::actions::Purged::default()
    };
    let removed = state.db.delete_agent(&pc).await?;
    caller
        .auditor(&state.nats)
        .record(
            "agent-rm",
            pc.as_str(),
            serde_json::json!({ "purge": purge, "config_removed": purged.config, "groups_removed": purged.groups }),
        )
        .await;
    if removed {
        state.live.changed(crate::live::Topic::Agents, [pc.to_string()]).await;
    }
    Ok(Json(RemovedAgent { pc_id: pc.to_string(), purged: purge }))
}

pub(super) fn not_found(pc: &PcId) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::AgentNotFound, format!("no agent `{pc}` has reported"))
}

/// An agent outside the caller's scope answers as one that never reported ([`not_found`]).
pub(super) async fn in_scope(state: &AppState, caller: &Caller, pc: &PcId) -> Result<(), ApiError> {
    if state.db.pc_in_scope(pc, &caller.scope).await? { Ok(()) } else { Err(not_found(pc)) }
}

#[utoipa::path(get, path = "/api/agents/{pc_id}", tag = "agents", operation_id = "agents_get", params(("pc_id" = String, Path, description = "the agent's pc id")), responses((status = 200, body = AgentView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AgentView>, ApiError> {
    // A path that is not UTF-8 is rejected by the extractor; give it the same shape as any other bad id.
    let Path(raw) = path.map_err(|rejection| ApiError::bad_request(ErrorCode::InvalidPcId, rejection.body_text()))?;
    let pc = PcId::new(raw).map_err(|err| ApiError::bad_request(ErrorCode::InvalidPcId, err.to_string()))?;
    in_scope(&state, &caller, &pc).await?;
    let agent = state.db.get_agent(&pc).await?.ok_or_else(|| not_found(&pc))?;
    Ok(Json(view(agent, &liveness(&state))))
}

#[utoipa::path(post, path = "/api/agents/{pc_id}/ping", tag = "agents", operation_id = "agents_ping", params(("pc_id" = String, Path, description = "the agent's pc id")), request_body(content = Option<NoBody>), responses((status = 200, body = PingView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn ping(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(pc): PathId<PcId>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<Json<PingView>, ApiError> {
    // Outside the scope: what a ping nobody answers says, without asking the broker.
    if !state.db.pc_in_scope(&pc, &caller.scope).await? {
        let err = PingError::NoAgent(pc.clone());
        return Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::AgentNotConnected, err.to_string()));
    }
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
    caller: Caller,
    PathId(pc): PathId<PcId>,
) -> Result<Json<ConfigView>, ApiError> {
    in_scope(&state, &caller, &pc).await?;
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
