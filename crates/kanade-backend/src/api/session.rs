//! `GET /api/session` (who the caller is) and `GET /health` (whether the backend can serve).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kanade_shared::config::AuthConfig;
use serde::Serialize;

use super::AppState;
use crate::caller::Caller;

/// `GET /api/session`: who the caller is, as the auth layer established it. The dashboard calls it to check a login.
#[derive(Serialize)]
pub struct Session {
    actor: String,
    /// True when a per-operator token proves the name; false when it is the client's claim (`x-kanade-operator`).
    verified: bool,
    /// `token`, or `disabled` (loopback only; every name is a claim).
    auth: &'static str,
    /// The backend's version.
    version: &'static str,
}

pub(super) async fn session(State(state): State<Arc<AppState>>, caller: Caller) -> Json<Session> {
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
pub struct Health {
    status: &'static str,
    version: &'static str,
    nats: &'static str,
    database: &'static str,
}

pub(super) async fn health(State(state): State<Arc<AppState>>) -> Response {
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
