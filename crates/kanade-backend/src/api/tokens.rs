//! API tokens, long-lived credentials of an account for automation: `POST /api/tokens` (made by a signed-in user,
//! shown once), `GET /api/tokens` (the caller's own; every user's with `all=true`, for admins) and
//! `DELETE /api/tokens/{id}` (revoke: the caller's own, or any for an admin). A token's role is at most its owner's
//! and it acts within the owner's scope; a revoked or expired token, or one whose owner is disabled or removed, is
//! refused at its next request.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kanade_shared::access::Role;
use kanade_shared::api::{ApiTokenBody, ApiTokenView, ApiTokensQuery, CreatedApiToken, ErrorBody, Page};

use super::auth::{AuthMethod, Credential};
use super::{ApiError, ApiJson, ApiQuery, AppState, ErrorCode, paging};
use crate::accounts::{self, SecretToken, TokenKind};
use crate::caller::Caller;
use crate::db::{ApiTokenRow, TokenInsert};

/// The largest body these routes take.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The tokens list, as its cursors name it.
const API_TOKENS: &str = "api_tokens";

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

fn view(row: &ApiTokenRow, now_ms: i64) -> ApiTokenView {
    ApiTokenView {
        id: row.id.clone(),
        name: row.name.clone(),
        user: row.user_name.clone(),
        role: row.role,
        state: accounts::api_token_state(row.revoked_at_ms.is_some(), row.expires_at_ms, now_ms).to_owned(),
        created_at: time(row.created_at_ms),
        expires_at: time(row.expires_at_ms),
        last_used_at: row.last_used_at_ms.map(time),
        revoked_at: row.revoked_at_ms.map(time),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ApiTokenNotFound, format!("no API token `{id}` of yours"))
}

#[utoipa::path(post, path = "/api/tokens", tag = "accounts", operation_id = "tokens_create", request_body = ApiTokenBody, responses((status = 201, description = "created; `token` is shown this once", body = CreatedApiToken), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    credential: Credential,
    ApiJson(body): ApiJson<ApiTokenBody>,
) -> Result<(StatusCode, Json<CreatedApiToken>), ApiError> {
    let owner = credential.account("an API token")?.to_owned();
    // A token making tokens could outlive its own revocation; a person signs in for it.
    if credential.method != AuthMethod::Session {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NoAccount,
            "API tokens are made in a signed-in session (`kanade login`), not with another API token",
        ));
    }
    let role = accounts::api_token_role(body.role, caller.role).map_err(|err| match err {
        accounts::ApiTokenError::RoleAboveOwner { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, err.to_string())
        }
        _ => ApiError::bad_request(ErrorCode::InvalidRequest, err.to_string()),
    })?;
    let ttl = accounts::api_token_ttl(body.ttl.as_deref())
        .map_err(|err| ApiError::bad_request(ErrorCode::InvalidRequest, err.to_string()))?;
    let name = accounts::api_token_name(body.name.as_deref(), "token")
        .map_err(|err| ApiError::bad_request(ErrorCode::InvalidRequest, err.to_string()))?;
    let now_ms = Utc::now().timestamp_millis();
    let mut attempts = 0;
    let (token, row) = loop {
        let token = SecretToken::generate(TokenKind::Api);
        let row = ApiTokenRow {
            id: token.id.clone(),
            secret_hash: token.secret_hash(),
            user_name: owner.clone(),
            name: name.clone(),
            role,
            created_at_ms: now_ms,
            expires_at_ms: now_ms + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2),
            last_used_at_ms: None,
            revoked_at_ms: None,
        };
        match state.db.insert_api_token(&row, now_ms).await? {
            TokenInsert::Done => break (token, row),
            TokenInsert::TooMany => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidRequest,
                    format!(
                        "you hold {} live API tokens, the most one user may: revoke some first",
                        accounts::MAX_API_TOKENS_PER_USER
                    ),
                ));
            }
            TokenInsert::NoUser => return Err(not_found(owner.as_str())),
            TokenInsert::Taken if attempts < 3 => attempts += 1,
            TokenInsert::Taken => {
                tracing::error!("four random API token ids in a row were taken");
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error; see the backend log",
                ));
            }
        }
    };
    let details = serde_json::json!({
        "name": row.name, "role": role, "expires_at": time(row.expires_at_ms), "identity": caller.identity(),
    });
    caller.auditor(&state.nats).record("token-create", &row.id, details).await;
    Ok((StatusCode::CREATED, Json(CreatedApiToken { token: token.to_string(), view: view(&row, now_ms) })))
}

#[utoipa::path(get, path = "/api/tokens", tag = "accounts", operation_id = "tokens_list", params(ApiTokensQuery), responses((status = 200, description = "one page, newest first: by created_at, then id", body = Page<ApiTokenView>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    credential: Credential,
    ApiQuery(query): ApiQuery<ApiTokensQuery>,
) -> Result<Json<Page<ApiTokenView>>, ApiError> {
    let owner = if query.all.unwrap_or(false) {
        if !caller.role.allows(Role::Admin) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "every user's API tokens are listed for admins only; leave out `all` for your own",
            ));
        }
        None
    } else {
        Some(credential.account("listing your API tokens")?.to_owned())
    };
    let limit = paging::limit(query.limit)?;
    let before = paging::before_time_id(API_TOKENS, query.cursor.as_deref(), |id: String| {
        if accounts::is_token_id(&id) { Ok(id) } else { Err("not a token id") }
    })?;
    let page = state.db.list_api_tokens(owner.as_deref(), before, limit).await?;
    let now_ms = Utc::now().timestamp_millis();
    Ok(Json(Page {
        items: page.items.iter().map(|row| view(row, now_ms)).collect(),
        next: paging::next_time_id(API_TOKENS, page.next),
    }))
}

#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "accounts", operation_id = "tokens_revoke", params(("id" = String, Path, description = "the token's id: the part between `kanade_api_` and the next `_`")), responses((status = 200, description = "revoked (now or before)", body = ApiTokenView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    credential: Credential,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ApiTokenView>, ApiError> {
    let Path(raw) =
        path.map_err(|rejection| ApiError::bad_request(ErrorCode::InvalidTokenId, rejection.body_text()))?;
    let id = match SecretToken::parse(TokenKind::Api, &raw) {
        Some(whole) => whole.id,
        None => raw.trim().to_owned(),
    };
    if !accounts::is_token_id(&id) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidTokenId,
            format!("not an API token id: {} characters of a-z and 2-7", accounts::TOKEN_ID_LEN),
        ));
    }
    // An admin revokes anyone's; everyone else only their own (another's is "not found", as if it were not there).
    let owner = if caller.role.allows(Role::Admin) { None } else { credential.user.as_deref() };
    if owner.is_none() && !caller.role.allows(Role::Admin) {
        return Err(not_found(&id));
    }
    let now_ms = Utc::now().timestamp_millis();
    let (row, revoked_now) = state.db.revoke_api_token(&id, owner, now_ms).await?.ok_or_else(|| not_found(&id))?;
    if revoked_now {
        let details = serde_json::json!({ "user": row.user_name, "identity": caller.identity() });
        caller.auditor(&state.nats).record("token-revoke", &id, details).await;
    }
    Ok(Json(view(&row, now_ms)))
}
