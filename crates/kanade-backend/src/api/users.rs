//! Operator accounts through the API (admins only, but a user's own password): `POST|GET /api/users`,
//! `GET|PATCH|DELETE /api/users/{name}` (role, groups, disabled), `POST /api/users/{name}/password`,
//! `POST|DELETE /api/users/{name}/totp`, `PUT|DELETE /api/users/{name}/key` (the operator's Ed25519 public key) and
//! `POST /api/session/password` (the signed-in user's own). Every change is audited; a disabled or removed user, a
//! new password, take effect on the user's next request (`api::auth` checks the rows every time). The last enabled
//! admin cannot be disabled, demoted or removed.

use std::str::FromStr as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::api::{
    ErrorBody, OwnPasswordBody, Page, PasswordBody, SigningKeyBody, TotpView, UserBody, UserPatch, UserView, UsersQuery,
};
use kanade_shared::{Actor, GroupName};

use super::auth::{AuthMethod, Credential};
use super::login::{user_name, user_view};
use super::{ApiError, ApiJson, ApiQuery, AppState, ErrorCode, paging};
use crate::accounts;
use crate::caller::Caller;
use crate::db::{NewUser, UserChange, UserRow};

/// The largest body these routes take.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The users list, as its cursors name it.
const USERS: &str = "users";

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidRequest, message)
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::UserNotFound, format!("no user `{name}`"))
}

fn last_admin(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::LastAdmin,
        format!("`{name}` is the last enabled admin: make another admin first, or nobody could manage users"),
    )
}

/// The user name in the path.
fn path_name(path: Result<Path<String>, PathRejection>) -> Result<Actor, ApiError> {
    let Path(raw) = path.map_err(|rejection| invalid(rejection.body_text()))?;
    user_name(&raw)
}

/// A scope from `groups` (empty: the fleet), checked against `role`.
fn scope_of(groups: &[String], role: Role) -> Result<GroupScope, ApiError> {
    let names = groups
        .iter()
        .map(|g| GroupName::new(g.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(format!("groups: {err}")))?;
    let scope = GroupScope::from_groups(names).map_err(|err| invalid(format!("groups: {err}")))?;
    scope.check_role(role).map_err(|err| invalid(err.to_string()))?;
    Ok(scope)
}

fn password_ok(name: &str, password: &str) -> Result<(), ApiError> {
    accounts::check_password(name, password).map_err(|err| invalid(err.to_string()))
}

async fn found(state: &AppState, name: &Actor) -> Result<UserRow, ApiError> {
    state.db.user(name.as_str()).await?.ok_or_else(|| not_found(name.as_str()))
}

#[utoipa::path(post, path = "/api/users", tag = "accounts", operation_id = "users_create", request_body = UserBody, responses((status = 201, body = UserView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<UserBody>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let name = user_name(&body.name)?;
    let scope = scope_of(&body.groups, body.role)?;
    password_ok(name.as_str(), &body.password)?;
    let password_hash = state.sessions.hash(&body.password).await?;
    let new = NewUser {
        name: name.to_string(),
        role: body.role,
        scope: scope.clone(),
        password_hash,
        created_by: caller.actor.to_string(),
        now_ms: Utc::now().timestamp_millis(),
    };
    if !state.db.insert_user(&new).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, ErrorCode::UserExists, format!("user `{name}` exists")));
    }
    let details = serde_json::json!({ "role": body.role, "scope": scope, "identity": caller.identity() });
    caller.auditor(&state.nats).record("user-add", name.as_str(), details).await;
    Ok((StatusCode::CREATED, Json(user_view(&found(&state, &name).await?))))
}

#[utoipa::path(get, path = "/api/users", tag = "accounts", operation_id = "users_list", params(UsersQuery), responses((status = 200, description = "one page of the users, by name", body = Page<UserView>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<UsersQuery>,
) -> Result<Json<Page<UserView>>, ApiError> {
    let limit = paging::limit(query.limit)?;
    let after = paging::after_id(USERS, query.cursor.as_deref(), Actor::new)?;
    let page = state.db.list_users(after.as_ref().map(Actor::as_str), limit).await?;
    Ok(Json(Page { items: page.items.iter().map(user_view).collect(), next: paging::next_id(USERS, page.next) }))
}

#[utoipa::path(get, path = "/api/users/{name}", tag = "accounts", operation_id = "users_get", params(("name" = String, Path, description = "the user's name")), responses((status = 200, body = UserView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserView>, ApiError> {
    let name = path_name(path)?;
    Ok(Json(user_view(&found(&state, &name).await?)))
}

#[utoipa::path(patch, path = "/api/users/{name}", tag = "accounts", operation_id = "users_update", params(("name" = String, Path, description = "the user's name")), request_body = UserPatch, responses((status = 200, description = "the user as it is now", body = UserView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    let name = path_name(path)?;
    let current = found(&state, &name).await?;
    let role = body.role.unwrap_or(current.role);
    let scope = match &body.groups {
        Some(groups) => scope_of(groups, role)?,
        // A new role with the old scope: an admin's must be the fleet.
        None => {
            current.scope.check_role(role).map_err(|err| {
                invalid(format!("{err}; pass `groups: []` with role `admin` to make the scope the whole fleet"))
            })?;
            current.scope.clone()
        }
    };
    let now_ms = Utc::now().timestamp_millis();
    let user = match state.db.update_user(name.as_str(), body.role, Some(&scope), body.disabled, now_ms).await? {
        UserChange::Done(user) => user,
        UserChange::NotFound => return Err(not_found(name.as_str())),
        UserChange::LastAdmin => return Err(last_admin(name.as_str())),
    };
    let details = serde_json::json!({
        "role": body.role, "scope": body.groups.as_ref().map(|_| &scope), "disabled": body.disabled,
        "identity": caller.identity(),
    });
    caller.auditor(&state.nats).record("user-update", name.as_str(), details).await;
    Ok(Json(user_view(&user)))
}

#[utoipa::path(delete, path = "/api/users/{name}", tag = "accounts", operation_id = "users_delete", params(("name" = String, Path, description = "the user's name")), responses((status = 200, description = "removed, with its sessions and API tokens: the user as it was", body = UserView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserView>, ApiError> {
    let name = path_name(path)?;
    let user = match state.db.delete_user(name.as_str()).await? {
        UserChange::Done(user) => user,
        UserChange::NotFound => return Err(not_found(name.as_str())),
        UserChange::LastAdmin => return Err(last_admin(name.as_str())),
    };
    let details = serde_json::json!({ "role": user.role, "identity": caller.identity() });
    caller.auditor(&state.nats).record("user-remove", name.as_str(), details).await;
    Ok(Json(user_view(&user)))
}

#[utoipa::path(post, path = "/api/users/{name}/password", tag = "accounts", operation_id = "users_password", params(("name" = String, Path, description = "the user's name")), request_body = PasswordBody, responses((status = 200, description = "set; every session and API token of the user ended", body = UserView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn set_password(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Json<UserView>, ApiError> {
    let name = path_name(path)?;
    password_ok(name.as_str(), &body.password)?;
    found(&state, &name).await?;
    let hash = state.sessions.hash(&body.password).await?;
    if !state.db.set_password(name.as_str(), &hash, None, Utc::now().timestamp_millis()).await? {
        return Err(not_found(name.as_str()));
    }
    let details = serde_json::json!({ "identity": caller.identity() });
    caller.auditor(&state.nats).record("user-password", name.as_str(), details).await;
    Ok(Json(user_view(&found(&state, &name).await?)))
}

#[utoipa::path(post, path = "/api/session/password", tag = "accounts", operation_id = "session_password", request_body = OwnPasswordBody, responses((status = 204, description = "changed; the user's other sessions ended"), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn own_password(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    credential: Credential,
    ApiJson(body): ApiJson<OwnPasswordBody>,
) -> Result<StatusCode, ApiError> {
    let name = credential.account("changing your password")?.to_owned();
    if credential.method != AuthMethod::Session {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NoAccount,
            "a password is changed in a signed-in session (`kanade login`), not with an API token",
        ));
    }
    if state.sessions.may_try(&name).is_err() {
        // The same slowdown as a sign-in: this route checks a password too.
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyAttempts,
            "too many wrong passwords; wait and try again",
        ));
    }
    let user = state.db.user(&name).await?.ok_or_else(|| not_found(&name))?;
    if !state.sessions.verify(Some(&user), &body.current_password).await {
        return Err(ApiError::new(StatusCode::FORBIDDEN, ErrorCode::LoginFailed, "the current password is wrong"));
    }
    state.sessions.succeeded(&name);
    password_ok(&name, &body.password)?;
    let hash = state.sessions.hash(&body.password).await?;
    let keep = credential.session.as_deref();
    if !state.db.set_password(&name, &hash, keep, Utc::now().timestamp_millis()).await? {
        return Err(not_found(&name));
    }
    caller.auditor(&state.nats).record("user-password", &name, serde_json::json!({ "own": true })).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/users/{name}/totp", tag = "accounts", operation_id = "users_totp_enable", params(("name" = String, Path, description = "the user's name")), responses((status = 200, description = "a new TOTP secret, shown this once; sign-in needs its codes from now on", body = TotpView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn enable_totp(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TotpView>, ApiError> {
    let name = path_name(path)?;
    let secret = accounts::new_totp_secret(&rand::random());
    let url = accounts::otpauth_url(&secret, name.as_str())
        .ok_or_else(|| ApiError::internal(&std::io::Error::other("cannot make an otpauth URL")))?;
    if !state.db.set_totp(name.as_str(), Some(&secret), Utc::now().timestamp_millis()).await? {
        return Err(not_found(name.as_str()));
    }
    let details = serde_json::json!({ "identity": caller.identity() });
    caller.auditor(&state.nats).record("user-totp-enable", name.as_str(), details).await;
    Ok(Json(TotpView { name: name.to_string(), otpauth_url: url, secret }))
}

#[utoipa::path(delete, path = "/api/users/{name}/totp", tag = "accounts", operation_id = "users_totp_disable", params(("name" = String, Path, description = "the user's name")), responses((status = 200, description = "sign-in needs no code any more", body = UserView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn disable_totp(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserView>, ApiError> {
    let name = path_name(path)?;
    if !state.db.set_totp(name.as_str(), None, Utc::now().timestamp_millis()).await? {
        return Err(not_found(name.as_str()));
    }
    let details = serde_json::json!({ "identity": caller.identity() });
    caller.auditor(&state.nats).record("user-totp-disable", name.as_str(), details).await;
    Ok(Json(user_view(&found(&state, &name).await?)))
}

#[utoipa::path(put, path = "/api/users/{name}/key", tag = "accounts", operation_id = "users_key_set", params(("name" = String, Path, description = "the user's name")), request_body = SigningKeyBody, responses((status = 200, description = "registered: the trust list is built from these keys", body = UserView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn set_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<SigningKeyBody>,
) -> Result<Json<UserView>, ApiError> {
    let name = path_name(path)?;
    let key = kanade_shared::authority::PublicKey::from_str(&body.public_key)
        .map_err(|err| invalid(format!("public_key: {err}")))?;
    let key = key.to_string();
    if !state.db.set_signing_key(name.as_str(), Some(&key), Utc::now().timestamp_millis()).await? {
        return Err(not_found(name.as_str()));
    }
    let details = serde_json::json!({ "public_key": key, "identity": caller.identity() });
    caller.auditor(&state.nats).record("user-key", name.as_str(), details).await;
    Ok(Json(user_view(&found(&state, &name).await?)))
}

#[utoipa::path(delete, path = "/api/users/{name}/key", tag = "accounts", operation_id = "users_key_clear", params(("name" = String, Path, description = "the user's name")), responses((status = 200, description = "no key registered any more", body = UserView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn clear_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserView>, ApiError> {
    let name = path_name(path)?;
    if !state.db.set_signing_key(name.as_str(), None, Utc::now().timestamp_millis()).await? {
        return Err(not_found(name.as_str()));
    }
    let details = serde_json::json!({ "public_key": null, "identity": caller.identity() });
    caller.auditor(&state.nats).record("user-key", name.as_str(), details).await;
    Ok(Json(user_view(&found(&state, &name).await?)))
}
