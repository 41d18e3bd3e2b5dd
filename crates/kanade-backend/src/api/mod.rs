//! The HTTP API: JSON over axum. Every `/api` route needs `Authorization: Bearer <token>` unless auth is disabled;
//! every error, including a rejected query or path, has the same shape: `{"error": {"code", "message"}}`.
//! Everything outside `/api` and `/health` is the embedded web dashboard (`crate::web`).

use std::sync::Arc;
use std::time::Duration;

use crate::config::AuthConfig;
use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{any, get, post, put};

use crate::db::Db;

mod agent_events;
mod agents;
mod audit;
mod auth;
mod enrollment;
mod error;
mod executions;
mod extract;
mod inventory;
mod jobs;
mod openapi;
mod output;
mod packages;
mod paging;
mod perf;
mod results;
mod schedules;
mod session;
mod streams;

pub use auth::OPERATOR_HEADER;
pub use error::{ApiError, ErrorCode, ops_error};
pub use extract::{ApiJson, ApiQuery, OptionalJson, PathId, PathIdKind};
pub use openapi::{ApiDoc, document as openapi_document};

/// How long a request may take to produce its response. tower-http's `TimeoutLayer` bounds the handler's future,
/// not the body it returns, so a live event stream is not cut off by it (`tests/live.rs` shows it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub struct AppState {
    pub db: Db,
    pub nats: async_nats::Client,
    pub auth: AuthConfig,
    pub offline_after: Duration,
    /// An agent silent for longer than this is shown `stale` rather than `offline`.
    pub stale_after: Duration,
    pub engine: Arc<crate::engine::Engine>,
    /// Announces changes to every replica's live clients.
    pub live: crate::live::Publisher,
    /// This replica's live clients.
    pub hub: Arc<crate::live::Hub>,
    /// Cancelled when the backend stops: live streams end with it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// What `GET /metrics` reports.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The PCs whose live performance this replica relays.
    pub watches: Arc<crate::perf_live::Watches>,
    /// Whether this replica leads (ticks rollouts, fires schedules), and who does.
    pub leadership: Arc<crate::leader::Leadership>,
    /// The keys that issue agents' credentials; none without `[security]` (enrolment is off).
    pub issuer: Option<Arc<crate::issuer::Issuer>>,
}

pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, REQUEST_TIMEOUT)
}

/// The whole HTTP surface, with `request_timeout` in place of [`REQUEST_TIMEOUT`].
pub fn router_with(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/session", get(session::session))
        .route("/agents", get(agents::list))
        .route("/agents/{pc_id}", get(agents::get).delete(agents::remove))
        .route("/agents/{pc_id}/ping", post(agents::ping))
        .route("/agents/{pc_id}/config", get(agents::config))
        .route("/agents/{pc_id}/events", get(agent_events::of_agent))
        .route("/agents/{pc_id}/inventory", get(inventory::of_agent))
        .route("/agents/{pc_id}/perf", get(perf::history))
        .route("/agents/{pc_id}/perf/live", get(perf::live))
        .route("/agents/{pc_id}/revoke", post(enrollment::revoke_agent))
        .route(
            "/agents/{pc_id}/groups",
            put(enrollment::set_groups).layer(axum::extract::DefaultBodyLimit::max(enrollment::MAX_BODY_BYTES)),
        )
        .route(
            "/enroll/tokens",
            get(enrollment::list_tokens)
                .post(enrollment::create_token)
                .layer(axum::extract::DefaultBodyLimit::max(enrollment::MAX_BODY_BYTES)),
        )
        .route("/enroll/tokens/{token_id}", axum::routing::delete(enrollment::revoke_token))
        .route("/enrollments", get(enrollment::list_enrollments))
        .route("/enrollments/{pc_id}/approve", post(enrollment::approve))
        .route("/agent-events", get(agent_events::fleet))
        .route("/inventory", get(inventory::job_facts))
        .route("/inventory/titles", get(inventory::titles))
        .route("/inventory/software", get(inventory::software))
        .route("/inventory/changes", get(inventory::changes))
        .route("/inventory/hardware", get(inventory::hardware))
        .route("/inventory/hardware/summary", get(inventory::hardware_summary))
        .route("/inventory/refresh", post(inventory::refresh))
        .route("/results", get(results::list))
        .route("/results/{result_id}/output", get(output::output))
        .route("/jobs", get(jobs::list).post(jobs::create))
        .route("/jobs/{job_id}", get(jobs::get).delete(jobs::delete))
        .route("/jobs/{job_id}/revoke", post(jobs::revoke))
        .route("/jobs/{job_id}/unrevoke", post(jobs::unrevoke))
        .route("/jobs/{job_id}/preview", post(executions::preview))
        .route("/exec/{job_id}", post(executions::exec))
        .route("/deploy", post(executions::deploy))
        .route("/executions", get(executions::list))
        .route("/executions/{exec_id}", get(executions::get))
        .route("/executions/{exec_id}/results", get(executions::results))
        .route("/executions/{exec_id}/targets", get(executions::targets))
        .route("/executions/{exec_id}/output", get(streams::output))
        .route("/executions/{exec_id}/approve", post(executions::approve))
        .route("/executions/{exec_id}/reject", post(executions::reject))
        .route("/executions/{exec_id}/kill", post(executions::kill))
        .route("/events", get(streams::events))
        .route("/audit", get(audit::list))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route("/schedules/{schedule_id}", get(schedules::get).delete(schedules::delete))
        .route("/schedules/{schedule_id}/pause", post(schedules::pause))
        .route("/schedules/{schedule_id}/resume", post(schedules::resume))
        .route("/schedules/{schedule_id}/run-now", post(schedules::run_now))
        .route("/app-packages/{name}/{version}", get(packages::serve).head(packages::serve))
        .method_not_allowed_fallback(error::api_method_not_allowed)
        .fallback(error::api_not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_auth))
        // Outside auth, so refused requests are timed too; a route layer, so only matched routes are labels.
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::metrics::track));
    Router::new()
        .route("/health", get(session::health))
        // Scraped by Prometheus: the same bearer token as `/api` unless auth is disabled.
        .route(
            "/metrics",
            get(crate::metrics::serve).route_layer(middleware::from_fn_with_state(state.clone(), auth::require_auth)),
        )
        // The contract is public, as `/health` is: it describes the API and holds no data.
        .route("/api/openapi.json", get(openapi::openapi_json))
        .nest("/api", api)
        // The nested fallback matches `/api` and `/api/<anything>` but not `/api/` itself.
        .route("/api/", any(error::api_not_found))
        .merge(crate::web::router())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .with_state(state)
}
