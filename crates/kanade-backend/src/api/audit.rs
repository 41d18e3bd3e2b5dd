//! `GET /api/audit`: who did what, by actor, action and since when, newest first, a page at a time. `GET
//! /api/audit/chain`: the same trail in stream order with every field its hash covers, as stored, for `kanade audit
//! verify` (`kanade_shared::audit_chain`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use kanade_shared::api::{AuditChainQuery, AuditChainRow, AuditQuery, AuditRow, ErrorBody, KeyPart, Page};

use super::{ApiError, ApiQuery, AppState, ErrorCode, paging};
use crate::caller::Caller;

/// The chain's cursors, as they name their list.
const AUDIT_CHAIN: &str = "audit_chain";

fn invalid(message: String) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidQuery, message)
}

/// `since`: a duration back from now (`1h`, `7d`) or an RFC 3339 time.
fn parse_since(raw: &str) -> Result<DateTime<Utc>, ApiError> {
    match humantime::parse_duration(raw) {
        Ok(ago) => Ok(Utc::now() - chrono::Duration::from_std(ago).map_err(|e| invalid(e.to_string()))?),
        Err(_) => DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|_| {
            invalid(format!(
                "since `{}` is neither a duration (`1h`) nor an RFC 3339 time",
                raw.chars().take(40).collect::<String>()
            ))
        }),
    }
}

#[utoipa::path(get, path = "/api/audit", tag = "audit", operation_id = "audit_list", params(AuditQuery), responses((status = 200, description = "one page, newest first: by at, then event_id", body = Page<AuditRow>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditRow>>, ApiError> {
    super::fleet_wide(&caller, "reading the audit trail")?;
    let since = match query.since.as_deref().filter(|s| !s.is_empty()) {
        None => DateTime::<Utc>::MIN_UTC,
        Some(raw) => parse_since(raw)?,
    };
    let limit = paging::limit(query.limit)?;
    let before = paging::before_time_id(paging::AUDIT, query.cursor.as_deref(), paging::any_text)?;
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
        before,
        limit,
    };
    let page = state.db.list_audit(&filter).await?;
    Ok(Json(Page { items: page.items, next: paging::next_time_id(paging::AUDIT, page.next) }))
}

#[utoipa::path(get, path = "/api/audit/chain", tag = "audit", operation_id = "audit_chain", params(AuditChainQuery), responses((status = 200, description = "one page in stream order: by stream_seq, then event_id; every field as stored", body = Page<AuditChainRow>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn chain(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditChainQuery>,
) -> Result<Json<Page<AuditChainRow>>, ApiError> {
    super::fleet_wide(&caller, "reading the audit trail")?;
    let since = query.since.as_deref().filter(|s| !s.is_empty()).map(parse_since).transpose()?;
    let from_seq = i64::try_from(query.from_seq.unwrap_or(0)).map_err(|_| {
        invalid(format!("from_seq `{}` is past the last sequence there can be", query.from_seq.unwrap_or(0)))
    })?;
    let limit = paging::limit(query.limit)?;
    let after = match paging::key_parts(AUDIT_CHAIN, query.cursor.as_deref(), 2)? {
        None => None,
        Some(parts) => match <[KeyPart; 2]>::try_from(parts) {
            Ok([KeyPart::Int(seq), KeyPart::Text(id)]) => Some((seq, id)),
            _ => return Err(paging::wrong()),
        },
    };
    let filter = crate::db::AuditChainFilter { from_seq, since, after, limit };
    let page = state.db.list_audit_chain(&filter).await?;
    let next = paging::next_key(AUDIT_CHAIN, page.next.map(|(seq, id)| vec![KeyPart::Int(seq), KeyPart::Text(id)]));
    Ok(Json(Page { items: page.items, next }))
}
