//! Extractors whose rejections are [`ApiError`]s: queries, JSON bodies (required, optional or empty), ids in the
//! path, and the caller's identity that the auth layer left on the request.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{StatusCode, header, request::Parts};
use kanade_shared::{ExecId, JobId, PcId};
use serde::de::DeserializeOwned;

use super::{ApiError, ErrorCode};
use crate::caller::Caller;

/// `Query` whose rejection is an [`ApiError`].
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| ApiError::bad_request(ErrorCode::InvalidQuery, rejection.body_text()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "no caller identity; see the backend log",
            )
        })
    }
}

/// A JSON body whose rejection is an [`ApiError`] naming what is wrong and where.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request, state).await?;
        decode(&bytes).map(Self)
    }
}

/// Like [`ApiJson`], but an empty body is the type's default.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;
    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(&request);
        let bytes = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), ErrorCode::InvalidBody, rejection.body_text()))?;
        // No body at all (`curl -X POST` sends a form content type with it) means "the defaults".
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        decode(&bytes).map(Self)
    }
}

/// A body is taken as JSON when it says so, or says nothing.
fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")))
}

fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::UnsupportedMediaType,
        "send the body as `Content-Type: application/json`",
    )
}

async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<bytes::Bytes, ApiError> {
    if !is_json(&request) {
        return Err(not_json());
    }
    bytes::Bytes::from_request(request, state)
        .await
        .map_err(|rejection| ApiError::new(rejection.status(), ErrorCode::InvalidBody, rejection.body_text()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let at = if path == "." { String::new() } else { format!("{path}: ") };
        ApiError::bad_request(ErrorCode::InvalidBody, format!("{at}{inner}"))
    })
}

/// An id in the path, validated by its type; a bad one is a 400 with code `invalid_<kind>`.
pub struct PathId<T>(pub T);

pub trait PathIdKind: Sized {
    const CODE: ErrorCode;
    fn parse(raw: String) -> Result<Self, kanade_shared::IdError>;
}

impl PathIdKind for JobId {
    const CODE: ErrorCode = ErrorCode::InvalidJobId;
    fn parse(raw: String) -> Result<Self, kanade_shared::IdError> {
        JobId::new(raw)
    }
}

impl PathIdKind for PcId {
    const CODE: ErrorCode = ErrorCode::InvalidPcId;
    fn parse(raw: String) -> Result<Self, kanade_shared::IdError> {
        PcId::new(raw)
    }
}

impl PathIdKind for ExecId {
    const CODE: ErrorCode = ErrorCode::InvalidExecId;
    fn parse(raw: String) -> Result<Self, kanade_shared::IdError> {
        ExecId::new(raw)
    }
}

impl<T: PathIdKind, S: Send + Sync> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection: PathRejection| ApiError::bad_request(T::CODE, rejection.body_text()))?;
        T::parse(raw).map(Self).map_err(|err| ApiError::bad_request(T::CODE, err.to_string()))
    }
}
