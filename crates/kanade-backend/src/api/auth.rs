//! Bearer-token authentication: resolves who is calling (a per-operator token proves it; the shared token or
//! disabled auth only carry the name the client claims) and leaves a [`Caller`] on the request.

use std::sync::Arc;

use crate::config::AuthConfig;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kanade_shared::Actor;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState, ErrorCode};
use crate::caller::Caller;

/// The header a client uses to say which operator it acts for. Believed only where no token proves it: with the
/// shared static token, or with auth disabled.
pub const OPERATOR_HEADER: &str = "x-kanade-operator";

fn claimed(request: &Request) -> Result<Caller, ApiError> {
    let actor = match request.headers().get(OPERATOR_HEADER) {
        None => Actor::from_login("anonymous"),
        // Recorded as `anonymous` instead, the action would be audited under a name nobody gave.
        Some(value) => Actor::from_login(value.to_str().map_err(|_| {
            ApiError::bad_request(ErrorCode::InvalidOperator, format!("`{OPERATOR_HEADER}` must be plain ASCII"))
        })?),
    };
    Ok(Caller::admin(actor, false))
}

pub(super) async fn require_auth(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
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
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing `Authorization: Bearer <token>`",
        )
        .into_response();
    };
    let matches = |expected: &str| bool::from(token.as_bytes().ct_eq(expected.as_bytes()));
    // Every token is compared, so the time taken does not tell which one nearly matched.
    let operator = operators.iter().fold(None, |found, o| if matches(&o.token) { Some(o) } else { found });
    let caller = match (operator, shared.as_deref().is_some_and(matches)) {
        (Some(operator), _) => Caller::admin(operator.name.clone(), true),
        (None, true) => match claimed(&request) {
            Ok(caller) => caller,
            Err(err) => return err.into_response(),
        },
        (None, false) => {
            return ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "invalid bearer token")
                .into_response();
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}
