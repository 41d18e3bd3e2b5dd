//! Signing in: `POST /api/setup` (the first admin, with the one-time setup token a backend with no user prints),
//! `POST /api/login` (name, password and TOTP code -> a short-lived session token and a refresh token),
//! `POST /api/refresh` (a refresh token -> the next session token; the refresh token is replaced) and
//! `POST /api/logout`. These four are public: they are how a caller gets a token. Failed sign-ins slow the name down
//! (`accounts::LoginThrottle`); password hashing runs off the async threads, a few at a time.
//!
//! The dashboard asks for its refresh token in an HttpOnly, SameSite=Strict cookie (`cookie: true`) and keeps the
//! session token in memory; a request that uses the cookie must carry `X-Kanade-Csrf`. The CLI and scripts get both
//! tokens in the body.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use kanade_shared::Actor;
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::api::{ErrorBody, LoginBody, SessionRefreshBody, SessionTokens, SetupBody, UserView};

use super::{ApiError, ApiJson, AppState, ErrorCode, OptionalJson};
use crate::accounts::{self, Claims, LoginThrottle, SecretToken, TokenKind};
use crate::caller::auditor;
use crate::config::SessionConfig;
use crate::db::{NewUser, SessionRow, Setup, UserRow};

/// The largest body these routes take: a name, a password and a code.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Password hashes computed at once: each takes 19 MiB and tens of milliseconds, so a flood of sign-ins queues
/// instead of eating the machine.
const HASHING_AT_ONCE: usize = 4;

/// What signing in needs: the key session tokens are signed with, their lifetimes, the failed-sign-in counts and
/// the hashing queue.
pub struct Sessions {
    key: Vec<u8>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    throttle: Mutex<LoginThrottle>,
    hashing: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("access_ttl", &self.access_ttl).finish_non_exhaustive()
    }
}

impl Sessions {
    /// Session settings signing with `key` (the config's, or the one kept in the database).
    pub fn new(config: &SessionConfig, key: Vec<u8>) -> Self {
        Self {
            key,
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            throttle: Mutex::new(LoginThrottle::default()),
            hashing: Arc::new(tokio::sync::Semaphore::new(HASHING_AT_ONCE)),
        }
    }

    pub(super) fn key(&self) -> &[u8] {
        &self.key
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        // A panic while holding it loses nothing worth refusing every sign-in for.
        self.throttle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `work` (a password hash or check) on a blocking thread, a few at a time.
    pub(super) async fn hashing<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        // The permit goes with the work: a cancelled request leaves the hash running, and it still counts.
        let permit = self.hashing.clone().acquire_owned().await;
        let work = move || {
            let _permit = permit;
            work()
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(value) => value,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }

    /// Whether `name` may try a password now (how long it has to wait if not); the try counts as a failure until
    /// [`Self::succeeded`].
    pub(super) fn may_try(&self, name: &str) -> Result<(), Refusal> {
        self.throttle().attempt(name, Instant::now()).map_err(|wait| Refusal::Wait { name: short(name), wait })
    }

    pub(super) fn succeeded(&self, name: &str) {
        self.throttle().succeeded(name);
    }

    /// The attempt [`Self::may_try`] counted was refused: its wait runs from now.
    pub(super) fn refused(&self, name: &str) {
        self.throttle().refused(name, Instant::now());
    }

    /// Checks `password` against `user`'s hash, or against a decoy when there is no such user, so both take as
    /// long.
    pub(super) async fn verify(&self, user: Option<&UserRow>, password: &str) -> bool {
        let hash = user.map_or_else(|| accounts::decoy_hash().to_owned(), |u| u.password_hash.clone());
        let password = password.to_owned();
        let matched = self.hashing(move || accounts::verify_password(&password, &hash)).await;
        matched && user.is_some()
    }

    /// Hashes a new password.
    pub(super) async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let password = password.to_owned();
        self.hashing(move || accounts::hash_password(&password))
            .await
            .map_err(|err| ApiError::bad_request(ErrorCode::InvalidRequest, err.to_string()))
    }

    /// A session token for `user` in session `sid`, with its expiry.
    fn access_token(&self, user: &UserRow, sid: &str, now: DateTime<Utc>) -> Result<(String, DateTime<Utc>), ApiError> {
        let expires_at = now + chrono::Duration::from_std(self.access_ttl).unwrap_or_default();
        let claims = Claims {
            sub: user.name.clone(),
            role: user.role,
            scope: user.scope.clone(),
            sid: sid.to_owned(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            iss: accounts::ISSUER.to_owned(),
        };
        let token = accounts::sign_session(&claims, &self.key).map_err(|err| ApiError::internal(&err))?;
        Ok((token, expires_at))
    }
}

/// Why a sign-in (or a password check) was refused.
#[derive(Debug)]
pub(super) enum Refusal {
    Api(ApiError),
    /// Too many failures for `name`: a 429 with `Retry-After`.
    Wait {
        name: String,
        wait: Duration,
    },
}

impl From<ApiError> for Refusal {
    fn from(err: ApiError) -> Self {
        Refusal::Api(err)
    }
}

impl From<crate::db::DbError> for Refusal {
    fn from(err: crate::db::DbError) -> Self {
        Refusal::Api(err.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Api(err) => err.into_response(),
            Refusal::Wait { name, wait } => {
                let secs = wait.as_secs().max(1);
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::TooManyAttempts,
                    format!("too many failed sign-ins for `{name}`; try again in {secs} s"),
                )
                .into_response();
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                response
            }
        }
    }
}

/// The key session tokens are signed with: the config's, else the one kept in the database, made now (32 bytes
/// from the OS's CSPRNG) if this is the first backend to start on it.
pub async fn signing_key(config: &SessionConfig, db: &crate::db::Db) -> Result<Vec<u8>, crate::db::DbError> {
    use base64::Engine as _;
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let mut random = [0u8; 32];
    argon2::password_hash::rand_core::RngCore::fill_bytes(&mut argon2::password_hash::rand_core::OsRng, &mut random);
    let engine = base64::engine::general_purpose::STANDARD;
    let stored = db.jwt_secret_or(&engine.encode(random)).await?;
    match engine.decode(&stored) {
        Ok(key) if key.len() >= accounts::MIN_JWT_SECRET_BYTES => Ok(key),
        _ => Err(crate::db::DbError::Unreadable { what: "session signing key", value: "(hidden)".to_owned() }),
    }
}

fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

fn login_failed(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::LoginFailed, message)
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// A user as the API shows it.
pub(super) fn user_view(user: &UserRow) -> UserView {
    UserView {
        name: user.name.clone(),
        role: user.role,
        scope: user.scope.clone(),
        disabled: user.disabled,
        totp: user.totp_secret.is_some(),
        signing_key: user.signing_key.clone(),
        created_at: time(user.created_at_ms),
        updated_at: time(user.updated_at_ms),
        created_by: user.created_by.clone(),
    }
}

/// A user name from a request: an actor id.
pub(super) fn user_name(raw: &str) -> Result<Actor, ApiError> {
    Actor::new(raw).map_err(|err| ApiError::bad_request(ErrorCode::InvalidRequest, format!("name: {err}")))
}

/// Whether the request came over HTTPS (directly or through a proxy that says so): the cookie is `Secure` then.
fn over_https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    // A response that sets or clears a credential is nobody's to keep.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The refresh token of a request: the body's, else the cookie's, which needs the CSRF header. `from_cookie` says
/// which.
fn presented_refresh(body: &SessionRefreshBody, headers: &HeaderMap) -> Result<Option<(String, bool)>, ApiError> {
    if let Some(token) = body.refresh_token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some((token.to_owned(), false)));
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| accounts::cookie_value(h, accounts::REFRESH_COOKIE).map(str::to_owned))
        .filter(|v| !v.is_empty());
    let Some(cookie) = cookie else { return Ok(None) };
    if !headers.contains_key(accounts::CSRF_HEADER) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::CsrfHeaderMissing,
            format!("a request that uses the refresh cookie must carry the `{}` header", accounts::CSRF_HEADER),
        ));
    }
    Ok(Some((cookie, true)))
}

/// The answer to a sign-in or refresh: the tokens, and the refresh token in a cookie instead of the body when asked.
fn tokens_response(
    sessions: &Sessions,
    user: &UserRow,
    session: &SessionRow,
    refresh: &SecretToken,
    cookie: bool,
    headers: &HeaderMap,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (access_token, expires_at) = sessions.access_token(user, &session.id, now)?;
    let body = SessionTokens {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_at,
        expires_in: sessions.access_ttl.as_secs(),
        refresh_token: (!cookie).then(|| refresh.to_string()),
        refresh_expires_at: time(session.expires_at_ms),
        user: user.name.clone(),
        role: user.role,
        scope: user.scope.clone(),
    };
    let mut response = (status, Json(body)).into_response();
    if cookie {
        let left = Duration::from_millis(u64::try_from(session.expires_at_ms - now.timestamp_millis()).unwrap_or(0));
        set_cookie(&mut response, &accounts::refresh_cookie(&refresh.to_string(), left, over_https(headers)));
    } else {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

#[utoipa::path(post, path = "/api/setup", tag = "accounts", operation_id = "setup", security(), request_body = SetupBody, responses((status = 201, description = "the first admin; sign in with it now", body = UserView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn setup(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<SetupBody>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::SetupRefused,
            "setup refused: the setup token is wrong or used, or users exist already (an admin adds users with \
             `kanade user add`)",
        )
    };
    let token = SecretToken::parse(TokenKind::Setup, &body.setup_token).ok_or_else(refused)?;
    // Cheap refusals first: a password is hashed only for a token that may work.
    if state.db.count_users().await? > 0 || !state.db.setup_token_known(&token.secret_hash()).await? {
        return Err(refused());
    }
    let name = user_name(&body.name)?;
    accounts::check_password(name.as_str(), &body.password)
        .map_err(|err| ApiError::bad_request(ErrorCode::InvalidRequest, err.to_string()))?;
    let password_hash = state.sessions.hash(&body.password).await?;
    let new = NewUser {
        name: name.to_string(),
        role: Role::Admin,
        scope: GroupScope::Fleet,
        password_hash,
        created_by: "setup".to_owned(),
        now_ms: Utc::now().timestamp_millis(),
    };
    let Setup::Created(user) = state.db.create_first_admin(&token.secret_hash(), &new).await? else {
        return Err(refused());
    };
    tracing::warn!(name = %name, "first admin created with the setup token; the setup token is spent");
    let details = serde_json::json!({ "role": "admin", "scope": "fleet", "via": "setup-token" });
    auditor(&state.nats, &name).record("user-add", name.as_str(), details).await;
    Ok((StatusCode::CREATED, Json(user_view(&user))))
}

#[utoipa::path(post, path = "/api/login", tag = "accounts", operation_id = "login", security(), request_body = LoginBody, responses((status = 200, description = "signed in: the session token, and the refresh token (in the body, or with `cookie: true` as an HttpOnly cookie)", body = SessionTokens), (status = 401, description = "`login_failed` or `totp_required`", body = ErrorBody), (status = 429, description = "`too_many_attempts`: see `Retry-After`", body = ErrorBody), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, Refusal> {
    let sessions = &state.sessions;
    sessions.may_try(&body.name)?;
    // A name that cannot exist is checked against the decoy all the same: its answer takes as long.
    let user = match Actor::new(body.name.as_str()) {
        Ok(name) => state.db.user(name.as_str()).await?,
        Err(_) => None,
    };
    if !sessions.verify(user.as_ref(), &body.password).await {
        tracing::warn!(name = %short(&body.name), "sign-in refused: wrong name or password");
        sessions.refused(&body.name);
        return Err(login_failed("wrong name or password").into());
    }
    let Some(user) = user else { return Err(login_failed("wrong name or password").into()) };
    if user.disabled {
        return Err(login_failed(format!("account `{}` is disabled", user.name)).into());
    }
    if let Some(secret) = &user.totp_secret {
        let Some(code) = body.totp.as_deref().filter(|c| !c.trim().is_empty()) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::TotpRequired,
                "this account needs its TOTP code: send `totp` (`kanade login --totp <code>`)",
            )
            .into());
        };
        let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
        let last = user.totp_last_step.and_then(|s| u64::try_from(s).ok());
        let used = match accounts::totp_step(secret, code, now, last) {
            Some(step) => state.db.use_totp_step(&user.name, i64::try_from(step).unwrap_or(i64::MAX)).await?,
            None => false,
        };
        if !used {
            tracing::warn!(name = %user.name, "sign-in refused: wrong or reused TOTP code");
            sessions.refused(&body.name);
            return Err(login_failed("wrong TOTP code (or one used already)").into());
        }
    }
    sessions.succeeded(&body.name);
    let refresh = SecretToken::generate(TokenKind::Refresh);
    let now_ms = Utc::now().timestamp_millis();
    let session = SessionRow {
        id: refresh.id.clone(),
        user_name: user.name.clone(),
        refresh_hash: refresh.secret_hash(),
        created_at_ms: now_ms,
        refreshed_at_ms: now_ms,
        expires_at_ms: now_ms + i64::try_from(sessions.refresh_ttl.as_millis()).unwrap_or(i64::MAX / 2),
        revoked_at_ms: None,
    };
    if !state.db.insert_session(&session).await? {
        return Err(login_failed(format!("account `{}` was removed", user.name)).into());
    }
    if let Ok(actor) = Actor::new(user.name.as_str()) {
        let details = serde_json::json!({ "session": session.id, "cookie": body.cookie });
        auditor(&state.nats, &actor).record("login", &user.name, details).await;
    }
    Ok(tokens_response(sessions, &user, &session, &refresh, body.cookie, &headers, StatusCode::OK)?)
}

#[utoipa::path(post, path = "/api/refresh", tag = "accounts", operation_id = "refresh", security(), request_body(content = Option<SessionRefreshBody>, description = "the refresh token; none: the refresh cookie, with the `X-Kanade-Csrf` header"), responses((status = 200, description = "the next session token and a new refresh token (the one presented is spent)", body = SessionTokens), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn refresh(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<SessionRefreshBody>,
) -> Result<Response, ApiError> {
    let Some((presented, from_cookie)) = presented_refresh(&body, &headers)? else {
        return Err(unauthorized("no refresh token: send `refresh_token`, or the refresh cookie with `X-Kanade-Csrf`"));
    };
    let ended = || unauthorized("the refresh token is not valid (used, revoked or expired): sign in again");
    let token = SecretToken::parse(TokenKind::Refresh, &presented).ok_or_else(ended)?;
    let Some((session, user)) = state.db.session_with_user(&token.id).await? else { return Err(ended()) };
    let now_ms = Utc::now().timestamp_millis();
    if !token.matches(&session.refresh_hash)
        || session.revoked_at_ms.is_some()
        || session.expires_at_ms <= now_ms
        || user.disabled
    {
        return Err(ended());
    }
    let next = SecretToken { id: session.id.clone(), ..SecretToken::generate(TokenKind::Refresh) };
    if !state.db.rotate_refresh(&session.id, &session.refresh_hash, &next.secret_hash(), now_ms).await? {
        return Err(ended());
    }
    tokens_response(&state.sessions, &user, &session, &next, from_cookie, &headers, StatusCode::OK)
}

#[utoipa::path(post, path = "/api/logout", tag = "accounts", operation_id = "logout", security(), request_body(content = Option<SessionRefreshBody>, description = "the refresh token; none: the refresh cookie (with `X-Kanade-Csrf`) or the session token in `Authorization`"), responses((status = 204, description = "the session ended (the cookie, if any, is cleared)"), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<SessionRefreshBody>,
) -> Result<Response, ApiError> {
    let now_ms = Utc::now().timestamp_millis();
    let session = match presented_refresh(&body, &headers)? {
        Some((presented, _)) => {
            let token = SecretToken::parse(TokenKind::Refresh, &presented);
            match token {
                Some(token) => state
                    .db
                    .session_with_user(&token.id)
                    .await?
                    .filter(|(s, _)| token.matches(&s.refresh_hash))
                    .map(|(s, u)| (s.id, u.name)),
                None => None,
            }
        }
        // No refresh token: the session token in `Authorization`, if it is a valid one.
        None => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| accounts::verify_session(t.trim(), state.sessions.key()).ok())
            .map(|claims| (claims.sid, claims.sub)),
    };
    let Some((sid, name)) = session else {
        return Err(unauthorized("no valid refresh or session token to end"));
    };
    if state.db.revoke_session(&sid, now_ms).await?
        && let Ok(actor) = Actor::new(name.as_str())
    {
        auditor(&state.nats, &actor).record("logout", &name, serde_json::json!({ "session": sid })).await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &accounts::clear_refresh_cookie(over_https(&headers)));
    Ok(response)
}
