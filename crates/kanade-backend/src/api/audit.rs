//! `GET /api/audit`: who did what, by actor, action and since when, newest first, a page at a time.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use kanade_shared::api::{AuditQuery, AuditRow, ErrorBody, Page};

use super::{ApiError, ApiQuery, AppState, ErrorCode, paging};

#[utoipa::path(get, path = "/api/audit", tag = "audit", operation_id = "audit_list", params(AuditQuery), responses((status = 200, description = "one page, newest first: by at, then event_id", body = Page<AuditRow>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditRow>>, ApiError> {
    let invalid = |message: String| ApiError::bad_request(ErrorCode::InvalidQuery, message);
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
