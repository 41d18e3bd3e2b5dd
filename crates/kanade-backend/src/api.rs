//! The HTTP API: JSON over axum. Every `/api` route needs `Authorization: Bearer <token>` unless auth is disabled;
//! every error, including a rejected query or path, has the same shape: `{"error": {"code", "message"}}`.
//! Everything outside `/api` and `/health` is the embedded web dashboard (`crate::web`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use kanade_shared::wire::ResultStatus;
use kanade_shared::{Actor, ExecId, JobId, PcId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;
use crate::db::{AgentRow, Db, ResultFilter, ResultRow};

pub const DEFAULT_RESULT_LIMIT: u32 = 100;
pub const MAX_RESULT_LIMIT: u32 = 1000;
/// How long a request may take to produce its response. tower-http's `TimeoutLayer` bounds the handler's future,
/// not the body it returns, so a live event stream is not cut off by it (`tests/live.rs` shows it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY_BYTES: usize = 1024 * 1024;

mod agents;
mod executions;
mod jobs;
mod streams;

pub struct AppState {
    pub db: Db,
    pub nats: async_nats::Client,
    pub auth: AuthConfig,
    pub offline_after: Duration,
    pub engine: Arc<crate::engine::Engine>,
    /// Announces changes to every replica's live clients.
    pub live: crate::live::Publisher,
    /// This replica's live clients.
    pub hub: Arc<crate::live::Hub>,
    /// Cancelled when the backend stops: live streams end with it.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl AppState {
    /// Records an operator's action on `AUDIT`. The action is done either way; a failure to record it is logged.
    pub async fn audit(&self, actor: &Actor, action: &str, target: &str, details: serde_json::Value) {
        let source = kanade_ops::audit::Source::Backend;
        if let Err(err) = kanade_ops::audit::record(&self.nats, source, actor, action, target, details).await {
            tracing::error!(error = %err, %action, %target, "action done but not audited");
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, REQUEST_TIMEOUT)
}

/// The whole HTTP surface, with `request_timeout` in place of [`REQUEST_TIMEOUT`].
pub fn router_with(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/session", get(session))
        .route("/agents", get(list_agents))
        .route("/agents/{pc_id}", get(get_agent))
        .route("/agents/{pc_id}/ping", post(agents::ping))
        .route("/agents/{pc_id}/config", get(agents::config))
        .route("/results", get(list_results))
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
        .route("/audit", get(list_audit))
        .route("/app-packages/{name}/{version}", get(crate::packages::serve).head(crate::packages::serve))
        .method_not_allowed_fallback(api_method_not_allowed)
        .fallback(api_not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .route("/health", get(health))
        .nest("/api", api)
        // The nested fallback matches `/api` and `/api/<anything>` but not `/api/` itself.
        .route("/api/", any(api_not_found))
        .merge(crate::web::router())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .with_state(state)
}

/// An error as the API reports it: a status, a stable snake_case code, and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A failure of ours: the cause goes to the log, the client gets a generic message.
    pub(crate) fn internal(err: &dyn std::error::Error) -> Self {
        tracing::error!(error = %err, source = ?err.source(), "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the backend log")
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: &self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(err: crate::db::DbError) -> Self {
        Self::internal(&err)
    }
}

/// `Query` whose rejection is an [`ApiError`].
struct ApiQuery<T>(T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))
    }
}

/// The header a client uses to say which operator it acts for. Believed only where no token proves it: with the
/// shared static token, or with auth disabled.
pub const OPERATOR_HEADER: &str = "x-kanade-operator";

/// Who is calling, as the auth layer established it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    /// True when a per-operator token proves the identity; false when it is only the client's claim.
    pub verified: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no caller identity; see the backend log")
        })
    }
}

fn claimed(request: &Request) -> Result<Caller, ApiError> {
    let actor = match request.headers().get(OPERATOR_HEADER) {
        None => Actor::from_login("anonymous"),
        // Recorded as `anonymous` instead, the action would be audited under a name nobody gave.
        Some(value) => Actor::from_login(value.to_str().map_err(|_| {
            ApiError::bad_request("invalid_operator", format!("`{OPERATOR_HEADER}` must be plain ASCII"))
        })?),
    };
    Ok(Caller { actor, verified: false })
}

/// A JSON body whose rejection is an [`ApiError`] naming what is wrong and where.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request, state).await?;
        decode(&bytes).map(Self)
    }
}

/// Like [`ApiJson`], but an empty body is the type's default.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;
    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(&request);
        let bytes = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), "invalid_body", rejection.body_text()))?;
        // No body at all (`curl -X POST` sends a form content type with it) means "the defaults".
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        decode(&bytes).map(Self)
    }
}

/// A body is taken as JSON when it says so, or says nothing.
fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")))
}

fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as `Content-Type: application/json`",
    )
}

async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<bytes::Bytes, ApiError> {
    if !is_json(&request) {
        return Err(not_json());
    }
    bytes::Bytes::from_request(request, state)
        .await
        .map_err(|rejection| ApiError::new(rejection.status(), "invalid_body", rejection.body_text()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let at = if path == "." { String::new() } else { format!("{path}: ") };
        ApiError::bad_request("invalid_body", format!("{at}{inner}"))
    })
}

/// An id in the path, validated by its type; a bad one is a 400 with code `invalid_<kind>`.
pub struct PathId<T>(pub T);

pub trait PathIdKind: Sized {
    const CODE: &'static str;
    fn parse(raw: String) -> Result<Self, kanade_shared::IdError>;
}

impl PathIdKind for JobId {
    const CODE: &'static str = "invalid_job_id";
    fn parse(raw: String) -> Result<Self, kanade_shared::IdError> {
        JobId::new(raw)
    }
}

impl PathIdKind for PcId {
    const CODE: &'static str = "invalid_pc_id";
    fn parse(raw: String) -> Result<Self, kanade_shared::IdError> {
        PcId::new(raw)
    }
}

impl PathIdKind for ExecId {
    const CODE: &'static str = "invalid_exec_id";
    fn parse(raw: String) -> Result<Self, kanade_shared::IdError> {
        ExecId::new(raw)
    }
}

impl<T: PathIdKind, S: Send + Sync> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection: PathRejection| ApiError::bad_request(T::CODE, rejection.body_text()))?;
        T::parse(raw).map(Self).map_err(|err| ApiError::bad_request(T::CODE, err.to_string()))
    }
}

/// How a broker-side failure looks to a client.
pub fn ops_error(err: kanade_ops::OpsError) -> ApiError {
    use kanade_ops::OpsError;
    match err {
        OpsError::Missing { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_set_up", err.to_string()),
        OpsError::Invalid(message) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
        OpsError::Nats { .. } => {
            tracing::error!(error = %err, source = ?std::error::Error::source(&err), "broker request failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable", err.to_string())
        }
        OpsError::Encode { .. } => ApiError::internal(&err),
    }
}

async fn require_auth(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let AuthConfig::Tokens { shared, operators } = &state.auth else {
        let caller = match claimed(&request) {
            Ok(caller) => caller,
            Err(err) => return err.into_response(),
        };
        request.extensions_mut().insert(caller);
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = presented else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing `Authorization: Bearer <token>`")
            .into_response();
    };
    let matches = |expected: &str| bool::from(token.as_bytes().ct_eq(expected.as_bytes()));
    // Every token is compared, so the time taken does not tell which one nearly matched.
    let operator = operators.iter().fold(None, |found, o| if matches(&o.token) { Some(o) } else { found });
    let caller = match (operator, shared.as_deref().is_some_and(matches)) {
        (Some(operator), _) => Caller { actor: operator.name.clone(), verified: true },
        (None, true) => match claimed(&request) {
            Ok(caller) => caller,
            Err(err) => return err.into_response(),
        },
        (None, false) => {
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "invalid bearer token").into_response();
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
}

async fn api_method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this API route")
}

/// A request body that must be empty, or an empty JSON object: an action that takes no arguments refuses any.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoBody {}

/// `GET /api/session`: who the caller is, as the auth layer established it. The dashboard calls it to check a login.
#[derive(Serialize)]
struct Session {
    actor: String,
    /// True when a per-operator token proves the name; false when it is the client's claim (`x-kanade-operator`).
    verified: bool,
    /// `token`, or `disabled` (loopback only; every name is a claim).
    auth: &'static str,
    /// The backend's version.
    version: &'static str,
}

async fn session(State(state): State<Arc<AppState>>, caller: Caller) -> Json<Session> {
    let auth = match state.auth {
        AuthConfig::Disabled => "disabled",
        AuthConfig::Tokens { .. } => "token",
    };
    Json(Session {
        actor: caller.actor.to_string(),
        verified: caller.verified,
        auth,
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    nats: &'static str,
    database: &'static str,
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let nats = match state.nats.connection_state() {
        async_nats::connection::State::Connected => "connected",
        _ => "disconnected",
    };
    let database = if state.db.ping().await.is_ok() { "ok" } else { "unavailable" };
    let healthy = database == "ok";
    let body =
        Health { status: if healthy { "ok" } else { "degraded" }, version: env!("CARGO_PKG_VERSION"), nats, database };
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

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

async fn list_agents(State(state): State<Arc<AppState>>) -> Result<Json<Vec<AgentView>>, ApiError> {
    let now = Utc::now();
    let agents = state.db.list_agents().await?;
    Ok(Json(agents.into_iter().map(|a| view(a, now, state.offline_after)).collect()))
}

async fn get_agent(
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultQuery {
    pub(crate) pc_id: Option<String>,
    pub(crate) exec_id: Option<String>,
    pub(crate) job_id: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) limit: Option<u32>,
}

pub(crate) fn parse_filter(query: ResultQuery) -> Result<ResultFilter, ApiError> {
    fn id<T>(
        raw: Option<String>,
        parse: impl Fn(String) -> Result<T, kanade_shared::IdError>,
    ) -> Result<Option<T>, ApiError> {
        raw.filter(|v| !v.is_empty())
            .map(parse)
            .transpose()
            .map_err(|err| ApiError::bad_request("invalid_query", err.to_string()))
    }
    let status = match query.status.filter(|s| !s.is_empty()) {
        Some(raw) => match ResultStatus::parse(&raw) {
            Some(status) => Some(status.as_str().to_owned()),
            None => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!(
                        "status `{}` is not one of ok, failed, timeout, killed, skipped",
                        raw.chars().take(40).collect::<String>()
                    ),
                ));
            }
        },
        None => None,
    };
    let limit = query.limit.unwrap_or(DEFAULT_RESULT_LIMIT);
    if !(1..=MAX_RESULT_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit must be between 1 and {MAX_RESULT_LIMIT}")));
    }
    Ok(ResultFilter {
        pc_id: id(query.pc_id, PcId::new)?,
        exec_id: id(query.exec_id, ExecId::new)?,
        job_id: id(query.job_id, JobId::new)?,
        status,
        limit,
    })
}

async fn list_results(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ResultQuery>,
) -> Result<Json<Vec<ResultRow>>, ApiError> {
    let filter = parse_filter(query)?;
    Ok(Json(state.db.list_results(&filter).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    /// How far back: a duration (`1h`, `7d`) or an RFC 3339 time.
    since: Option<String>,
    limit: Option<u32>,
}

async fn list_audit(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<crate::db::AuditRow>>, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_query", message);
    let since = match query.since.as_deref().filter(|s| !s.is_empty()) {
        None => DateTime::<Utc>::MIN_UTC,
        Some(raw) => match humantime::parse_duration(raw) {
            Ok(ago) => Utc::now() - chrono::Duration::from_std(ago).map_err(|e| invalid(e.to_string()))?,
            Err(_) => DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                invalid(format!(
                    "since `{}` is neither a duration (`1h`) nor an RFC 3339 time",
                    raw.chars().take(40).collect::<String>()
                ))
            })?,
        },
    };
    let limit = query.limit.unwrap_or(DEFAULT_RESULT_LIMIT);
    if !(1..=MAX_RESULT_LIMIT).contains(&limit) {
        return Err(invalid(format!("limit must be between 1 and {MAX_RESULT_LIMIT}")));
    }
    let filter = crate::db::AuditFilter {
        actor: query
            .actor
            .filter(|a| !a.is_empty())
            .map(kanade_shared::Actor::new)
            .transpose()
            .map_err(|e| invalid(e.to_string()))?,
        action: query
            .action
            .filter(|a| !a.is_empty())
            .map(kanade_shared::Action::new)
            .transpose()
            .map_err(|e| invalid(e.to_string()))?,
        since,
        limit,
    };
    Ok(Json(state.db.list_audit(&filter).await?))
}
