//! `GET /api/results`: results by pc, exec, job and status, newest first.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use kanade_shared::wire::ResultStatus;
use kanade_shared::{ExecId, JobId, PcId};
use serde::Deserialize;

use super::{ApiError, ApiQuery, AppState};
use crate::db::{ResultFilter, ResultRow};

pub const DEFAULT_RESULT_LIMIT: u32 = 100;
pub const MAX_RESULT_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultQuery {
    pub(crate) pc_id: Option<String>,
    pub(crate) exec_id: Option<String>,
    pub(crate) job_id: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) limit: Option<u32>,
}

pub(crate) fn parse_filter(query: ResultQuery) -> Result<ResultFilter, ApiError> {
    fn id<T>(
        raw: Option<String>,
        parse: impl Fn(String) -> Result<T, kanade_shared::IdError>,
    ) -> Result<Option<T>, ApiError> {
        raw.filter(|v| !v.is_empty())
            .map(parse)
            .transpose()
            .map_err(|err| ApiError::bad_request("invalid_query", err.to_string()))
    }
    let status = match query.status.filter(|s| !s.is_empty()) {
        Some(raw) => match ResultStatus::parse(&raw) {
            Some(status) => Some(status.as_str().to_owned()),
            None => {
                return Err(ApiError::bad_request(
                    "invalid_query",
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
        return Err(ApiError::bad_request("invalid_query", format!("limit must be between 1 and {MAX_RESULT_LIMIT}")));
    }
    Ok(ResultFilter {
        pc_id: id(query.pc_id, PcId::new)?,
        exec_id: id(query.exec_id, ExecId::new)?,
        job_id: id(query.job_id, JobId::new)?,
        status,
        limit,
    })
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ResultQuery>,
) -> Result<Json<Vec<ResultRow>>, ApiError> {
    let filter = parse_filter(query)?;
    Ok(Json(state.db.list_results(&filter).await?))
}
