//! `GET /api/results`: results by pc, exec, job and status, newest first.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use kanade_shared::api::{ErrorBody, ResultQuery, ResultRow};
use kanade_shared::wire::ResultStatus;
use kanade_shared::{ExecId, JobId, PcId};

use super::{ApiError, ApiQuery, AppState, ErrorCode};
use crate::db::ResultFilter;

pub const DEFAULT_RESULT_LIMIT: u32 = 100;
pub const MAX_RESULT_LIMIT: u32 = 1000;

pub(crate) fn parse_filter(query: ResultQuery) -> Result<ResultFilter, ApiError> {
    fn id<T>(
        raw: Option<String>,
        parse: impl Fn(String) -> Result<T, kanade_shared::IdError>,
    ) -> Result<Option<T>, ApiError> {
        raw.filter(|v| !v.is_empty())
            .map(parse)
            .transpose()
            .map_err(|err| ApiError::bad_request(ErrorCode::InvalidQuery, err.to_string()))
    }
    let status = match query.status.filter(|s| !s.is_empty()) {
        Some(raw) => match ResultStatus::parse(&raw) {
            Some(status) => Some(status.as_str().to_owned()),
            None => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!(
                        "status `{}` is not one of ok, failed, timeout, killed, skipped",
                        raw.chars().take(40).collect::<String>()
                    ),
                ));
            }
        },
        None => None,
    };
    let limit = query.limit.unwrap_or(DEFAULT_RESULT_LIMIT);
    if !(1..=MAX_RESULT_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and {MAX_RESULT_LIMIT}"),
        ));
    }
    Ok(ResultFilter {
        pc_id: id(query.pc_id, PcId::new)?,
        exec_id: id(query.exec_id, ExecId::new)?,
        job_id: id(query.job_id, JobId::new)?,
        status,
        limit,
    })
}

#[utoipa::path(get, path = "/api/results", tag = "results", operation_id = "results_list", params(ResultQuery), responses((status = 200, description = "newest first", body = [ResultRow]), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ResultQuery>,
) -> Result<Json<Vec<ResultRow>>, ApiError> {
    let filter = parse_filter(query)?;
    Ok(Json(state.db.list_results(&filter).await?))
}
