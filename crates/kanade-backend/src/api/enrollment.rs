//! Agents' credentials through the API (DESIGN.md, Identity): `POST|GET /api/enroll/tokens` (create a token — its
//! secret shown once — and list them), `DELETE /api/enroll/tokens/{id}` (revoke one), `GET /api/enrollments` (the
//! PCs that asked, by status), `POST /api/enrollments/{pc}/approve`, `POST /api/agents/{pc}/revoke` (the key goes
//! into the fleet account's revocations, pushed to the broker at once) and `PUT /api/agents/{pc}/groups` (the agent
//! is told to renew at once). Every change is audited. Without `[security]` every route answers 503
//! `security_not_configured`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kanade_shared::api::{
    AgentGroupsBody, CreatedEnrollToken, EnrollTokenBody, EnrollTokenView, EnrollTokensQuery, EnrollmentView,
    EnrollmentsQuery, ErrorBody, NoBody, Page,
};
use kanade_shared::enroll::Token;
use kanade_shared::{PcId, subject};

use super::{ApiError, ApiJson, ApiQuery, AppState, ErrorCode, OptionalJson, PathId, fleet_wide, paging};
use crate::caller::Caller;
use crate::db::{Changed, CredentialRow, NewToken, TokenRow};
use crate::enrollment::{self, CredentialStatus};
use crate::issuer::Issuer;

/// The largest body these routes take: a token order or a group list is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

fn issuer(state: &AppState) -> Result<&Issuer, ApiError> {
    state.issuer.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::SecurityNotConfigured,
            "enrolment is not configured on this backend: add [security] (the folder `kanade security init` wrote) \
             to its config",
        )
    })
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

fn token_view(row: TokenRow, now: DateTime<Utc>) -> EnrollTokenView {
    let state =
        enrollment::token_state(row.revoked_at_ms.is_some(), row.expires_at_ms, row.uses_left, now.timestamp_millis());
    EnrollTokenView {
        id: row.id,
        groups: row.groups,
        uses: row.uses,
        uses_left: row.uses_left,
        state: state.to_owned(),
        expires_at: time(row.expires_at_ms),
        created_at: time(row.created_at_ms),
        created_by: row.created_by,
        revoked_at: row.revoked_at_ms.map(time),
        enrolled: row.enrolled,
    }
}

fn enrollment_view(row: CredentialRow) -> EnrollmentView {
    EnrollmentView {
        pc_id: row.pc_id,
        status: row.status.as_str().to_owned(),
        groups: row.groups,
        hostname: row.hostname,
        os: row.os,
        public_key: row.public_key,
        token_id: row.token_id,
        requested_at: time(row.requested_at_ms),
        enrolled_at: row.enrolled_at_ms.map(time),
        issued_at: row.issued_at_ms.map(time),
        expires_at: row.expires_at_ms.map(time),
        revoked_at: row.revoked_at_ms.map(time),
    }
}

fn enrollment_not_found(pc: &PcId) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::EnrollmentNotFound, format!("no PC `{pc}` has asked to enrol"))
}

fn token_not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::TokenNotFound, format!("no enrolment token `{id}`"))
}

#[utoipa::path(post, path = "/api/enroll/tokens", tag = "enrollment", operation_id = "enroll_tokens_create", request_body = EnrollTokenBody, responses((status = 201, description = "created; `token` is shown this once", body = CreatedEnrollToken), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<EnrollTokenBody>,
) -> Result<(StatusCode, Json<CreatedEnrollToken>), ApiError> {
    issuer(&state)?;
    let order = enrollment::token_order(&body.groups, body.uses, body.ttl.as_deref())
        .map_err(|message| ApiError::bad_request(ErrorCode::InvalidRequest, message))?;
    let now = Utc::now();
    let expires_at = now + chrono::Duration::from_std(order.ttl).unwrap_or_default();
    // 50 random bits of id: a clash is rare, and simply means another draw.
    let mut attempts = 0;
    let token = loop {
        let token = Token::from_random(&rand::random());
        let new = NewToken {
            id: token.id.clone(),
            secret_hash: token.secret_hash(),
            groups: order.groups.clone(),
            uses: order.uses,
            expires_at,
            created_at: now,
            created_by: caller.actor.to_string(),
        };
        if state.db.insert_enroll_token(&new).await? {
            break token;
        }
        attempts += 1;
        if attempts >= 3 {
            tracing::error!("three random enrolment token ids in a row were taken");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "internal error; see the backend log",
            ));
        }
    };
    let details = serde_json::json!({
        "groups": order.groups, "uses": order.uses, "expires_at": expires_at, "identity": caller.identity(),
    });
    caller.auditor(&state.nats).record("enroll-token-create", &token.id, details).await;
    let row = state.db.enroll_token(&token.id).await?.ok_or_else(|| token_not_found(&token.id))?;
    let view = token_view(row, now);
    Ok((StatusCode::CREATED, Json(CreatedEnrollToken { token: token.to_string(), view })))
}

#[utoipa::path(get, path = "/api/enroll/tokens", tag = "enrollment", operation_id = "enroll_tokens_list", params(EnrollTokensQuery), responses((status = 200, description = "one page, newest first: by created_at, then id", body = Page<EnrollTokenView>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list_tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EnrollTokensQuery>,
) -> Result<Json<Page<EnrollTokenView>>, ApiError> {
    fleet_wide(&caller, "reading the enrolment tokens")?;
    issuer(&state)?;
    let limit = paging::limit(query.limit)?;
    let before = paging::before_time_id(paging::ENROLL_TOKENS, query.cursor.as_deref(), enrollment::token_id)?;
    let page = state.db.list_enroll_tokens(before, limit).await?;
    let now = Utc::now();
    Ok(Json(Page {
        items: page.items.into_iter().map(|row| token_view(row, now)).collect(),
        next: paging::next_time_id(paging::ENROLL_TOKENS, page.next),
    }))
}

/// `DELETE /api/enroll/tokens/{id}`: the token enrols nothing more; PCs it enrolled stay enrolled. Revoking a
/// revoked token changes nothing.
#[utoipa::path(delete, path = "/api/enroll/tokens/{token_id}", tag = "enrollment", operation_id = "enroll_tokens_revoke", params(("token_id" = String, Path, description = "the token's id: the part after `kanade_enroll_`")), responses((status = 200, description = "revoked (now or before)", body = EnrollTokenView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EnrollTokenView>, ApiError> {
    issuer(&state)?;
    let Path(raw) =
        path.map_err(|rejection| ApiError::bad_request(ErrorCode::InvalidTokenId, rejection.body_text()))?;
    let id = enrollment::token_id(raw).map_err(|message| ApiError::bad_request(ErrorCode::InvalidTokenId, message))?;
    let now = Utc::now();
    let (row, revoked_now) = state.db.revoke_enroll_token(&id, now).await?.ok_or_else(|| token_not_found(&id))?;
    if revoked_now {
        let details = serde_json::json!({ "uses_left": row.uses_left, "identity": caller.identity() });
        caller.auditor(&state.nats).record("enroll-token-revoke", &id, details).await;
    }
    Ok(Json(token_view(row, now)))
}

#[utoipa::path(get, path = "/api/enrollments", tag = "enrollment", operation_id = "enrollments_list", params(EnrollmentsQuery), responses((status = 200, description = "one page of the PCs that asked to enrol, by pc id", body = Page<EnrollmentView>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list_enrollments(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EnrollmentsQuery>,
) -> Result<Json<Page<EnrollmentView>>, ApiError> {
    fleet_wide(&caller, "reading the enrolments")?;
    issuer(&state)?;
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(CredentialStatus::parse(raw).ok_or_else(|| {
            let shown: String = raw.chars().take(40).collect();
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("status `{shown}` is not one of pending, active, revoked"),
            )
        })?),
    };
    let limit = paging::limit(query.limit)?;
    let after = paging::after_id(paging::ENROLLMENTS, query.cursor.as_deref(), PcId::new)?;
    let page = state.db.list_agent_credentials(status, after.as_ref(), limit).await?;
    Ok(Json(Page {
        items: page.items.into_iter().map(enrollment_view).collect(),
        next: paging::next_id(paging::ENROLLMENTS, page.next),
    }))
}

/// `POST /api/enrollments/{pc}/approve`: a PC waiting for approval becomes active; the agent gets its credential
/// the next time it asks (it asks every 30 s while it waits).
#[utoipa::path(post, path = "/api/enrollments/{pc_id}/approve", tag = "enrollment", operation_id = "enrollments_approve", params(("pc_id" = String, Path, description = "the PC's pc id")), request_body(content = Option<NoBody>), responses((status = 200, body = EnrollmentView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn approve(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(pc): PathId<PcId>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<Json<EnrollmentView>, ApiError> {
    issuer(&state)?;
    match state.db.approve_enrollment(&pc, Utc::now()).await? {
        Changed::Done(row) => {
            let details = serde_json::json!({
                "public_key": row.public_key, "groups": row.groups, "token_id": row.token_id,
                "identity": caller.identity(),
            });
            caller.auditor(&state.nats).record("enroll-approve", pc.as_str(), details).await;
            Ok(Json(enrollment_view(row)))
        }
        Changed::Refused(row) | Changed::Already(row) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NotPendingEnrollment,
            format!("`{pc}` is {}, not waiting for approval", row.status.as_str()),
        )),
        Changed::NotFound => Err(enrollment_not_found(&pc)),
    }
}

/// `POST /api/agents/{pc}/revoke`: the PC's credential is revoked: it renews no more, its key goes into the fleet
/// account's revocations and the broker, given the new account at once, closes its connections and refuses it from
/// then on. If the broker cannot be told now, the revocation is still stored (503 `revocation_pending`) and the
/// backend tells it within 30 s of its return. Revoking a revoked PC changes nothing (and tells the broker again if
/// it had not taken it). To use the PC again it enrols anew with a new key and a new token.
#[utoipa::path(post, path = "/api/agents/{pc_id}/revoke", tag = "enrollment", operation_id = "agents_revoke", params(("pc_id" = String, Path, description = "the agent's pc id")), request_body(content = Option<NoBody>), responses((status = 200, description = "revoked, and the broker has taken it", body = EnrollmentView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn revoke_agent(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(pc): PathId<PcId>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<Json<EnrollmentView>, ApiError> {
    let issuer = issuer(&state)?;
    let row = match state.db.revoke_agent_credential(&pc, Utc::now()).await? {
        Changed::Done(row) => {
            let details = serde_json::json!({
                "public_key": row.public_key, "identity": caller.identity(),
            });
            caller.auditor(&state.nats).record("agent-revoke", pc.as_str(), details).await;
            tracing::info!(pc_id = %pc, "agent credential revoked");
            row
        }
        Changed::Already(row) | Changed::Refused(row) => row,
        Changed::NotFound => return Err(enrollment_not_found(&pc)),
    };
    if let Err(err) = issuer.push_revocations(&state.db, false).await {
        tracing::warn!(pc_id = %pc, error = %err, source = ?std::error::Error::source(&err), "revocation not pushed yet");
        // Only a credential that was issued has anything for the broker to refuse.
        if row.expires_at_ms.is_some() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::RevocationPending,
                format!(
                    "`{pc}`'s revocation is stored, but the broker has not taken it yet ({err}); the backend tells it \
                     again every 30 s until it does, and `{pc}` cannot renew meanwhile"
                ),
            ));
        }
    }
    Ok(Json(enrollment_view(row)))
}

/// `PUT /api/agents/{pc}/groups`: the groups the PC's credential carries from now on (the whole list). An active
/// agent is told on `agents.<pc>.renew` to renew at once, so its new credential carries them.
#[utoipa::path(put, path = "/api/agents/{pc_id}/groups", tag = "enrollment", operation_id = "agents_set_groups", params(("pc_id" = String, Path, description = "the agent's pc id")), request_body = AgentGroupsBody, responses((status = 200, body = EnrollmentView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn set_groups(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(pc): PathId<PcId>,
    ApiJson(body): ApiJson<AgentGroupsBody>,
) -> Result<Json<EnrollmentView>, ApiError> {
    issuer(&state)?;
    let groups = enrollment::checked_groups(&body.groups)
        .map_err(|message| ApiError::bad_request(ErrorCode::InvalidRequest, message))?;
    let row = match state.db.set_credential_groups(&pc, &groups).await? {
        Changed::Done(row) => row,
        Changed::Refused(_) | Changed::Already(_) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::EnrollmentRevoked,
                format!("`{pc}`'s credential is revoked; it has to enrol again before it can be given groups"),
            ));
        }
        Changed::NotFound => return Err(enrollment_not_found(&pc)),
    };
    let details = serde_json::json!({ "groups": groups, "identity": caller.identity() });
    caller.auditor(&state.nats).record("agent-groups", pc.as_str(), details).await;
    if row.status == CredentialStatus::Active {
        // Core NATS: an agent that is offline now renews on its own schedule, or when told next time.
        if let Err(err) = state.nats.publish(subject::renew_now(&pc), bytes::Bytes::new()).await {
            tracing::warn!(pc_id = %pc, error = %err, "cannot tell the agent to renew now");
        }
    }
    Ok(Json(enrollment_view(row)))
}
