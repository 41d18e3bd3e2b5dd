//! The HTTP API: JSON over axum. Every `/api` route needs `Authorization: Bearer <token>` unless auth is disabled
//! (the sign-in routes excepted) and a role: the router is built from one table, [`endpoints`], in which every route
//! names the role it needs, so none can be added without one; `tests/roles.rs` walks the table with every role.
//! Every error, including a rejected query or path, has the same shape: `{"error": {"code", "message"}}`.
//! Everything outside `/api` and `/health` is the embedded web dashboard (`crate::web`).

use std::sync::Arc;
use std::time::Duration;

use crate::config::AuthConfig;
use axum::Router;
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, any, get, on};
use kanade_shared::access::Role;

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
mod login;
mod openapi;
mod output;
mod packages;
mod paging;
mod perf;
mod results;
mod schedules;
mod session;
mod streams;
mod tokens;
mod users;

pub use auth::{AuthMethod, Credential, OPERATOR_HEADER};
pub use error::{ApiError, ErrorCode, ops_error};
pub use extract::{ApiJson, ApiQuery, OptionalJson, PathId, PathIdKind};
pub use login::{Sessions, signing_key as session_signing_key};
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
    /// Operator accounts' sign-in: the session-signing key, lifetimes, failed sign-ins.
    pub sessions: Arc<Sessions>,
}

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: how a caller gets a token, and what describes the API.
    Public,
    /// An authenticated caller whose role is this one or above.
    Role(Role),
}

const PUBLIC: Need = Need::Public;
const VIEWER: Need = Need::Role(Role::Viewer);
const OPERATOR: Need = Need::Role(Role::Operator);
const APPROVER: Need = Need::Role(Role::Approver);
const ADMIN: Need = Need::Role(Role::Admin);

/// The methods routes take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Head => Method::HEAD,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Patch => Method::PATCH,
            Verb::Delete => Method::DELETE,
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Head => MethodFilter::HEAD,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// One method on one `/api` path, the role it needs and its handler: a row of [`endpoints`].
struct Endpoint {
    verb: Verb,
    path: &'static str,
    need: Need,
    service: MethodRouter<Arc<AppState>>,
}

impl Endpoint {
    /// Takes bodies up to `bytes` instead of the API's default.
    fn body_limit(mut self, bytes: usize) -> Self {
        self.service = self.service.layer(axum::extract::DefaultBodyLimit::max(bytes));
        self
    }
}

/// Every API answer is private and of the moment (tokens, secrets, what PCs hold): no browser or proxy keeps it.
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Refuses (403 `out_of_scope`) a caller scoped to groups `action`, which reaches or shows every PC.
fn fleet_wide(caller: &crate::caller::Caller, action: &'static str) -> Result<(), ApiError> {
    crate::scope::fleet_only(&caller.scope, action).map_err(|err| executions::exec_error(err.into()))
}

/// The only way a route is made: with the role it needs.
fn route<H, T>(verb: Verb, path: &'static str, need: Need, handler: H) -> Endpoint
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    Endpoint { verb, path, need, service: on(verb.filter(), handler) }
}

/// A route as the table declares it, with its whole path: what tests walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Method,
    pub path: String,
    pub need: Need,
}

/// Every route of the backend and the role each needs: the `/api` table, plus `/metrics`, `/health` and the
/// OpenAPI document outside it.
pub fn routes() -> Vec<RouteSpec> {
    let mut specs: Vec<RouteSpec> = endpoints()
        .into_iter()
        .map(|e| RouteSpec { method: e.verb.method(), path: format!("/api{}", e.path), need: e.need })
        .collect();
    specs.push(RouteSpec { method: Method::GET, path: "/metrics".to_owned(), need: VIEWER });
    specs.push(RouteSpec { method: Method::GET, path: "/health".to_owned(), need: PUBLIC });
    specs.push(RouteSpec { method: Method::GET, path: "/api/openapi.json".to_owned(), need: PUBLIC });
    specs
}

/// The `/api` routes, each with the role it needs. Reads are for viewers; running, killing and revoking jobs,
/// publishing, schedules and inventory refreshes for operators; approving others' executions for approvers; users,
/// enrolment, agents' credentials and groups, and forgetting agents for admins. A user's own password, session and
/// API tokens are any signed-in role's.
fn endpoints() -> Vec<Endpoint> {
    use Verb::{Delete, Get, Head, Patch, Post, Put};
    vec![
        // Signing in: public, since this is how a caller gets a token.
        route(Post, "/setup", PUBLIC, login::setup).body_limit(login::MAX_BODY_BYTES),
        route(Post, "/login", PUBLIC, login::login).body_limit(login::MAX_BODY_BYTES),
        route(Post, "/refresh", PUBLIC, login::refresh).body_limit(login::MAX_BODY_BYTES),
        route(Post, "/logout", PUBLIC, login::logout).body_limit(login::MAX_BODY_BYTES),
        route(Get, "/session", VIEWER, session::session),
        route(Post, "/session/password", VIEWER, users::own_password).body_limit(users::MAX_BODY_BYTES),
        // Accounts.
        route(Get, "/users", ADMIN, users::list),
        route(Post, "/users", ADMIN, users::create).body_limit(users::MAX_BODY_BYTES),
        route(Get, "/users/{name}", ADMIN, users::get),
        route(Patch, "/users/{name}", ADMIN, users::update).body_limit(users::MAX_BODY_BYTES),
        route(Delete, "/users/{name}", ADMIN, users::delete),
        route(Post, "/users/{name}/password", ADMIN, users::set_password).body_limit(users::MAX_BODY_BYTES),
        route(Post, "/users/{name}/totp", ADMIN, users::enable_totp),
        route(Delete, "/users/{name}/totp", ADMIN, users::disable_totp),
        route(Put, "/users/{name}/key", ADMIN, users::set_key).body_limit(users::MAX_BODY_BYTES),
        route(Delete, "/users/{name}/key", ADMIN, users::clear_key),
        route(Get, "/tokens", VIEWER, tokens::list),
        route(Post, "/tokens", VIEWER, tokens::create).body_limit(tokens::MAX_BODY_BYTES),
        route(Delete, "/tokens/{id}", VIEWER, tokens::revoke),
        // The fleet.
        route(Get, "/agents", VIEWER, agents::list),
        route(Get, "/agents/{pc_id}", VIEWER, agents::get),
        route(Delete, "/agents/{pc_id}", ADMIN, agents::remove),
        // A ping changes nothing: a fresh heartbeat is a read.
        route(Post, "/agents/{pc_id}/ping", VIEWER, agents::ping),
        route(Get, "/agents/{pc_id}/config", VIEWER, agents::config),
        route(Get, "/agents/{pc_id}/events", VIEWER, agent_events::of_agent),
        route(Get, "/agents/{pc_id}/inventory", VIEWER, inventory::of_agent),
        route(Get, "/agents/{pc_id}/perf", VIEWER, perf::history),
        route(Get, "/agents/{pc_id}/perf/live", VIEWER, perf::live),
        route(Post, "/agents/{pc_id}/revoke", ADMIN, enrollment::revoke_agent),
        route(Put, "/agents/{pc_id}/groups", ADMIN, enrollment::set_groups).body_limit(enrollment::MAX_BODY_BYTES),
        // Enrolment.
        route(Get, "/enroll/tokens", VIEWER, enrollment::list_tokens),
        route(Post, "/enroll/tokens", ADMIN, enrollment::create_token).body_limit(enrollment::MAX_BODY_BYTES),
        route(Delete, "/enroll/tokens/{token_id}", ADMIN, enrollment::revoke_token),
        route(Get, "/enrollments", VIEWER, enrollment::list_enrollments),
        route(Post, "/enrollments/{pc_id}/approve", ADMIN, enrollment::approve),
        route(Get, "/agent-events", VIEWER, agent_events::fleet),
        // Inventory.
        route(Get, "/inventory", VIEWER, inventory::job_facts),
        route(Get, "/inventory/titles", VIEWER, inventory::titles),
        route(Get, "/inventory/software", VIEWER, inventory::software),
        route(Get, "/inventory/changes", VIEWER, inventory::changes),
        route(Get, "/inventory/hardware", VIEWER, inventory::hardware),
        route(Get, "/inventory/hardware/summary", VIEWER, inventory::hardware_summary),
        route(Post, "/inventory/refresh", OPERATOR, inventory::refresh),
        // Results, jobs and executions.
        route(Get, "/results", VIEWER, results::list),
        route(Get, "/results/{result_id}/output", VIEWER, output::output),
        route(Get, "/jobs", VIEWER, jobs::list),
        route(Post, "/jobs", OPERATOR, jobs::create),
        route(Get, "/jobs/{job_id}", VIEWER, jobs::get),
        route(Delete, "/jobs/{job_id}", OPERATOR, jobs::delete),
        route(Post, "/jobs/{job_id}/revoke", OPERATOR, jobs::revoke),
        route(Post, "/jobs/{job_id}/unrevoke", OPERATOR, jobs::unrevoke),
        // A preview fires nothing: it says which PCs an exec would reach.
        route(Post, "/jobs/{job_id}/preview", VIEWER, executions::preview),
        route(Post, "/exec/{job_id}", OPERATOR, executions::exec),
        route(Post, "/deploy", OPERATOR, executions::deploy),
        route(Get, "/executions", VIEWER, executions::list),
        route(Get, "/executions/{exec_id}", VIEWER, executions::get),
        route(Get, "/executions/{exec_id}/results", VIEWER, executions::results),
        route(Get, "/executions/{exec_id}/targets", VIEWER, executions::targets),
        route(Get, "/executions/{exec_id}/output", VIEWER, streams::output),
        route(Post, "/executions/{exec_id}/approve", APPROVER, executions::approve),
        route(Post, "/executions/{exec_id}/reject", APPROVER, executions::reject),
        route(Post, "/executions/{exec_id}/kill", OPERATOR, executions::kill),
        route(Get, "/events", VIEWER, streams::events),
        route(Get, "/audit", VIEWER, audit::list),
        route(Get, "/audit/chain", VIEWER, audit::chain),
        // Schedules.
        route(Get, "/schedules", VIEWER, schedules::list),
        route(Post, "/schedules", OPERATOR, schedules::create),
        route(Get, "/schedules/{schedule_id}", VIEWER, schedules::get),
        route(Delete, "/schedules/{schedule_id}", OPERATOR, schedules::delete),
        route(Post, "/schedules/{schedule_id}/pause", OPERATOR, schedules::pause),
        route(Post, "/schedules/{schedule_id}/resume", OPERATOR, schedules::resume),
        route(Post, "/schedules/{schedule_id}/run-now", OPERATOR, schedules::run_now),
        // Packages, as agents and installers download them.
        route(Get, "/app-packages/{name}/{version}", VIEWER, packages::serve),
        route(Head, "/app-packages/{name}/{version}", VIEWER, packages::serve),
    ]
}

pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, REQUEST_TIMEOUT)
}

/// The whole HTTP surface, with `request_timeout` in place of [`REQUEST_TIMEOUT`].
pub fn router_with(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let (mut authed, mut public) = (Router::new(), Router::new());
    for endpoint in endpoints() {
        match endpoint.need {
            Need::Public => public = public.route(endpoint.path, endpoint.service),
            Need::Role(role) => {
                let service = endpoint.service.route_layer(middleware::from_fn_with_state(role, auth::require_role));
                authed = authed.route(endpoint.path, service);
            }
        }
    }
    let api = authed
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_auth))
        .merge(public)
        .method_not_allowed_fallback(error::api_method_not_allowed)
        .fallback(error::api_not_found)
        // Outside auth, so refused requests are timed too; a route layer, so only matched routes are labels.
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(middleware::map_response(no_store));
    Router::new()
        .route("/health", get(session::health))
        // Scraped by Prometheus: a viewer's token (or the static token), as `/api`, unless auth is disabled.
        .route(
            "/metrics",
            get(crate::metrics::serve)
                .route_layer(middleware::from_fn_with_state(Role::Viewer, auth::require_role))
                .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_auth)),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_route_table_and_the_openapi_document_name_the_same_routes() {
        let doc: serde_json::Value = serde_json::from_str(&openapi::document()).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        // `/metrics` is Prometheus text, not the JSON API; a HEAD is documented with its GET.
        let routed: BTreeSet<(String, String)> = routes()
            .into_iter()
            .filter(|r| r.path != "/metrics" && r.method != Method::HEAD)
            .map(|r| (r.method.to_string(), r.path))
            .collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
        assert!(unrouted.is_empty(), "documented routes the router does not serve: {unrouted:?}");
    }

    #[test]
    fn only_signing_in_and_the_api_description_are_public() {
        let public: BTreeSet<String> = routes()
            .into_iter()
            .filter(|r| r.need == Need::Public)
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        let expected: BTreeSet<String> = [
            "POST /api/setup",
            "POST /api/login",
            "POST /api/refresh",
            "POST /api/logout",
            "GET /health",
            "GET /api/openapi.json",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert_eq!(public, expected);
    }
}
