//! Bearer-token authentication: resolves who is calling (a per-operator token proves it; the shared token or
//! disabled auth only carry the name the client claims) and leaves a [`Caller`] on the request.
//!
//! Any other bearer token is an operator account's: a session token (an HS256 JWT from `POST /api/login`) or an API
//! token (`kanade_api_<id>_<secret>`). Either is checked against its row in the database on every request — the
//! session or token must be live and its user present and enabled — and the caller gets the user's role and scope
//! as they are now (an API token's role capped by its owner's), so a logout, a revocation, a disabled or removed
//! user and a changed role take effect at the next request, on every replica. No cache: the check is one or two
//! reads by primary key. [`require_role`] then holds every route to the role it declares (`api::endpoints`).

use std::sync::Arc;

use crate::config::AuthConfig;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kanade_shared::Actor;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState, ErrorCode};
use crate::accounts::{self, SecretToken, TokenKind};
use crate::caller::Caller;
use kanade_shared::access::Role;

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
        request.extensions_mut().insert(Credential::of(AuthMethod::Disabled));
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
    let mut account = None;
    let caller = match (operator, shared.as_deref().is_some_and(matches)) {
        (Some(operator), _) => {
            Caller { actor: operator.name.clone(), verified: true, role: operator.role, scope: operator.scope.clone() }
        }
        (None, true) => match claimed(&request) {
            Ok(caller) => caller,
            Err(err) => return err.into_response(),
        },
        (None, false) => match account_caller(&state, token).await {
            Ok((caller, credential)) => {
                account = Some(credential);
                caller
            }
            Err(err) => return err.into_response(),
        },
    };
    let credential = account.unwrap_or_else(|| {
        Credential::of(if operator.is_some() { AuthMethod::OperatorToken } else { AuthMethod::StaticToken })
    });
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(credential);
    next.run(request).await
}

/// How the caller proved who it is: beside the [`Caller`] on every authenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A session token from `POST /api/login`.
    Session,
    /// An API token of an account.
    ApiToken,
    /// A `[[auth.operators]]` token from the config.
    OperatorToken,
    /// The shared static token: bootstrap and development.
    StaticToken,
    /// Auth is off (loopback only).
    Disabled,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Session => "session",
            AuthMethod::ApiToken => "api_token",
            AuthMethod::OperatorToken => "operator_token",
            AuthMethod::StaticToken => "static_token",
            AuthMethod::Disabled => "disabled",
        }
    }
}

/// The credential a request came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub method: AuthMethod,
    /// The account it acts as (a session's or an API token's user).
    pub user: Option<String>,
    /// The session's id, for a session token.
    pub session: Option<String>,
    /// When the session token or API token expires.
    pub expires_at_ms: Option<i64>,
}

impl Credential {
    fn of(method: AuthMethod) -> Self {
        Self { method, user: None, session: None, expires_at_ms: None }
    }

    /// The account's name, or a 409 `no_account` saying that `what` needs one.
    pub fn account(&self, what: &str) -> Result<&str, ApiError> {
        self.user.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::NoAccount,
                format!(
                    "{what} needs an operator account, and this caller has none (it used the {}): sign in with \
                     `kanade login`",
                    self.method.as_str().replace('_', " ")
                ),
            )
        })
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Credential {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Credential>().cloned().ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "no credential; see the backend log")
        })
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The caller an account's bearer token stands for: an API token, or a session token.
async fn account_caller(state: &AppState, token: &str) -> Result<(Caller, Credential), ApiError> {
    if let Some(api) = SecretToken::parse(TokenKind::Api, token) {
        return api_token_caller(state, &api).await;
    }
    if accounts::looks_like_jwt(token) {
        return session_caller(state, token).await;
    }
    Err(refused(ErrorCode::Unauthorized, "invalid bearer token"))
}

fn account_actor(name: &str) -> Result<Actor, ApiError> {
    // Names are checked when a user is made; one that is not an actor id now was stored by something else.
    Actor::new(name).map_err(|err| ApiError::internal(&err))
}

async fn session_caller(state: &AppState, token: &str) -> Result<(Caller, Credential), ApiError> {
    let claims = accounts::verify_session(token, state.sessions.key()).map_err(|err| match err {
        accounts::SessionTokenError::Expired => refused(ErrorCode::TokenExpired, err.to_string()),
        accounts::SessionTokenError::Invalid(_) => refused(ErrorCode::Unauthorized, err.to_string()),
    })?;
    let ended =
        || refused(ErrorCode::Unauthorized, "the session ended (signed out, revoked or expired): sign in again");
    let Some((session, user)) = state.db.session_with_user(&claims.sid).await? else { return Err(ended()) };
    let now_ms = chrono::Utc::now().timestamp_millis();
    if session.user_name != claims.sub {
        return Err(ended());
    }
    // Said first: disabling a user also ends its sessions, and this is the reason worth telling.
    if user.disabled {
        return Err(refused(ErrorCode::Unauthorized, format!("account `{}` is disabled", user.name)));
    }
    if session.revoked_at_ms.is_some() || session.expires_at_ms <= now_ms {
        return Err(ended());
    }
    let caller = Caller { actor: account_actor(&user.name)?, verified: true, role: user.role, scope: user.scope };
    let credential = Credential {
        method: AuthMethod::Session,
        user: Some(user.name),
        session: Some(session.id),
        expires_at_ms: Some(claims.exp.saturating_mul(1000)),
    };
    Ok((caller, credential))
}

/// How stale an API token's `last_used_at` may get before a request writes it again: a busy script does not write
/// on every call.
const LAST_USED_EVERY_MS: i64 = 60_000;

async fn api_token_caller(state: &AppState, presented: &SecretToken) -> Result<(Caller, Credential), ApiError> {
    let invalid = || refused(ErrorCode::Unauthorized, "invalid bearer token");
    let Some((token, user)) = state.db.api_token_with_user(&presented.id).await? else { return Err(invalid()) };
    if !presented.matches(&token.secret_hash) {
        return Err(invalid());
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    if token.revoked_at_ms.is_some() {
        return Err(refused(ErrorCode::Unauthorized, format!("API token `{}` is revoked", token.id)));
    }
    if token.expires_at_ms <= now_ms {
        return Err(refused(ErrorCode::Unauthorized, format!("API token `{}` expired", token.id)));
    }
    if user.disabled {
        return Err(refused(ErrorCode::Unauthorized, format!("account `{}` is disabled", user.name)));
    }
    if token.last_used_at_ms.is_none_or(|at| now_ms - at >= LAST_USED_EVERY_MS)
        && let Err(err) = state.db.touch_api_token(&token.id, now_ms).await
    {
        tracing::warn!(error = %err, token = %token.id, "cannot record an API token's use");
    }
    let caller = Caller {
        actor: account_actor(&user.name)?,
        verified: true,
        role: accounts::effective_role(token.role, user.role),
        scope: user.scope,
    };
    let credential = Credential {
        method: AuthMethod::ApiToken,
        user: Some(user.name),
        session: None,
        expires_at_ms: Some(token.expires_at_ms),
    };
    Ok((caller, credential))
}

/// Holds a route to the role it declares: a caller below it gets 403 `forbidden`.
pub(super) async fn require_role(State(needed): State<Role>, request: Request, next: Next) -> Response {
    let Some(caller) = request.extensions().get::<Caller>() else {
        tracing::error!("a route that needs a role was reached without a caller");
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; see the backend log",
        )
        .into_response();
    };
    if caller.role.allows(needed) {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        format!("this needs role `{needed}` or above; `{}` has `{}`", caller.actor, caller.role),
    )
    .into_response()
}
