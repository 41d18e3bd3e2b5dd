//! The API's one error shape: a status, a stable snake_case code and a message for people, as
//! `{"error": {"code", "message"}}`; 5xx bodies are generic and their cause goes to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use kanade_shared::api::ErrorCode;
use kanade_shared::api::{ErrorBody, ErrorDetail};

/// An error as the API reports it: a status, a stable snake_case code, and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub(crate) fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A failure of ours: the cause goes to the log, the client gets a generic message.
    pub(crate) fn internal(err: &dyn std::error::Error) -> Self {
        tracing::error!(error = %err, source = ?err.source(), "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error; see the backend log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(err: crate::db::DbError) -> Self {
        Self::internal(&err)
    }
}

/// How a broker-side failure looks to a client.
pub fn ops_error(err: kanade_ops::OpsError) -> ApiError {
    use kanade_ops::OpsError;
    match err {
        OpsError::Missing { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotSetUp, err.to_string())
        }
        OpsError::Invalid(message) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::Invalid, message),
        OpsError::Nats { .. } => {
            tracing::error!(error = %err, source = ?std::error::Error::source(&err), "broker request failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::BrokerUnavailable, err.to_string())
        }
        OpsError::Encode { .. } => ApiError::internal(&err),
    }
}

pub(super) async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such API route")
}

pub(super) async fn api_method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed, "method not allowed on this API route")
}
