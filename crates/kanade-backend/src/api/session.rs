//! `GET /api/session` (who the caller is: name, role, scope, and how it proved it) and `GET /health` (whether the
//! backend can serve).

use std::sync::Arc;

use crate::config::AuthConfig;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kanade_shared::api::{ErrorBody, Health, Session};

use super::AppState;
use crate::caller::Caller;

#[utoipa::path(get, path = "/api/session", tag = "session", operation_id = "session", responses((status = 200, body = Session), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn session(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    credential: super::auth::Credential,
) -> Json<Session> {
    let auth = match state.auth {
        AuthConfig::Disabled => "disabled",
        AuthConfig::Tokens { .. } => "token",
    };
    Json(Session {
        actor: caller.actor.to_string(),
        verified: caller.verified,
        auth: auth.to_owned(),
        version: crate::version::version().to_owned(),
        role: caller.role,
        scope: caller.scope,
        method: credential.method.as_str().to_owned(),
        user: credential.user,
        expires_at: credential.expires_at_ms.and_then(chrono::DateTime::from_timestamp_millis),
    })
}

#[utoipa::path(get, path = "/health", tag = "session", operation_id = "health", security(), responses((status = 200, body = Health), (status = 503, description = "the database does not answer", body = Health)))]
pub(super) async fn health(State(state): State<Arc<AppState>>) -> Response {
    let nats = match state.nats.connection_state() {
        async_nats::connection::State::Connected => "connected",
        _ => "disconnected",
    };
    let database = if state.db.ping().await.is_ok() { "ok" } else { "unavailable" };
    let healthy = database == "ok";
    let body = Health {
        status: if healthy { "ok" } else { "degraded" }.to_owned(),
        version: crate::version::version().to_owned(),
        nats: nats.to_owned(),
        database: database.to_owned(),
        instance: state.leadership.instance().to_owned(),
        leader: state.leadership.holder(),
        leading: state.leadership.leading(),
    };
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}
