//! `GET /api/results`: results by pc, exec, job and status, newest first, a page at a time; a caller scoped to groups
//! sees the results of the PCs in them only.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use kanade_shared::api::{ErrorBody, Page, ResultQuery, ResultRow};
use kanade_shared::wire::ResultStatus;
use kanade_shared::{ExecId, JobId, PcId, ResultId};

use super::{ApiError, ApiQuery, AppState, ErrorCode, paging};
use crate::caller::Caller;
use crate::db::{Paged, ResultFilter};

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
    let limit = paging::limit(query.limit)?;
    let before = paging::before_time_id(paging::RESULTS, query.cursor.as_deref(), |id| {
        ResultId::parse(&id).map(|id| id.to_string())
    })?;
    Ok(ResultFilter {
        pc_id: id(query.pc_id, PcId::new)?,
        exec_id: id(query.exec_id, ExecId::new)?,
        job_id: id(query.job_id, JobId::new)?,
        status,
        before,
        limit,
    })
}

/// A page of results as the API answers it.
pub(crate) fn page(paged: Paged<ResultRow, (i64, String)>) -> Page<ResultRow> {
    Page { items: paged.items, next: paging::next_time_id(paging::RESULTS, paged.next) }
}

#[utoipa::path(get, path = "/api/results", tag = "results", operation_id = "results_list", params(ResultQuery), responses((status = 200, description = "one page, newest first: by finished_at, then result_id", body = Page<ResultRow>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ResultQuery>,
) -> Result<Json<Page<ResultRow>>, ApiError> {
    let filter = parse_filter(query)?;
    Ok(Json(page(state.db.list_results(&filter, &caller.scope).await?)))
}
