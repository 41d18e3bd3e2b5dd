//! `GET /api/audit`: who did what, by actor, action and since when.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use kanade_shared::api::{AuditQuery, AuditRow, ErrorBody};

use super::results::{DEFAULT_RESULT_LIMIT, MAX_RESULT_LIMIT};
use super::{ApiError, ApiQuery, AppState, ErrorCode};

#[utoipa::path(get, path = "/api/audit", tag = "audit", operation_id = "audit_list", params(AuditQuery), responses((status = 200, description = "newest first", body = [AuditRow]), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditRow>>, ApiError> {
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
    let limit = query.limit.unwrap_or(DEFAULT_RESULT_LIMIT);
    if !(1..=MAX_RESULT_LIMIT).contains(&limit) {
        return Err(invalid(format!("limit must be between 1 and {MAX_RESULT_LIMIT}")));
    }
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
        limit,
    };
    Ok(Json(state.db.list_audit(&filter).await?))
}
