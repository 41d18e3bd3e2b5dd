//! `GET|HEAD /api/app-packages/{name}/{version}`: streams a published package out of the `app_packages` object
//! store with `Content-Length`, `Accept-Ranges` and single-range `Range` requests, which Windows BITS needs to
//! download in pieces and resume. The package's SHA-256 is its `ETag`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kanade_shared::JobId;
use kanade_shared::manifest::Version;
use kanade_shared::resources::OBJ_APP_PACKAGES;
use tokio::io::AsyncReadExt;

use super::{ApiError, AppState, ErrorCode};
use kanade_shared::api::ErrorBody;

/// What a `Range` header asks for, against a body of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Requested {
    Whole,
    /// Inclusive byte positions.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// Parses a `Range` header. Only one range is served; a header kanade does not understand (another unit, several
/// ranges) is ignored and the whole body sent, as HTTP allows.
pub fn requested(range: Option<&str>, size: u64) -> Requested {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else { return Requested::Whole };
    if spec.contains(',') {
        return Requested::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else { return Requested::Unsatisfiable };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        // `bytes=-N`: the last N bytes.
        (true, false) => {
            last.parse::<u64>().ok().filter(|n| *n > 0).map(|n| (size.saturating_sub(n), size.saturating_sub(1)))
        }
        // `bytes=N-`: from N to the end.
        (false, true) => first.parse::<u64>().ok().map(|n| (n, size.saturating_sub(1))),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Some((a, b.min(size.saturating_sub(1)))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        Some((start, end)) if size > 0 && start < size && start <= end => Requested::Part { start, end },
        _ => Requested::Unsatisfiable,
    }
}

#[utoipa::path(get, path = "/api/app-packages/{name}/{version}", tag = "packages", operation_id = "packages_serve", params(("name" = String, Path), ("version" = String, Path), ("Range" = Option<String>, Header, description = "one byte range")), responses((status = 200, description = "the package", content_type = "application/octet-stream"), (status = 206, description = "the range asked for", content_type = "application/octet-stream"), (status = 416, description = "the range is outside the package"), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn serve(
    State(state): State<Arc<AppState>>,
    method: Method,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = JobId::new(name).map_err(|e| ApiError::bad_request(ErrorCode::InvalidPackage, e.to_string()))?;
    let version = Version::new(&version).map_err(|e| ApiError::bad_request(ErrorCode::InvalidPackage, e))?;
    let key = format!("{name}/{}", version.as_str());
    let js = async_nats::jetstream::new(state.nats.clone());
    let store = js.get_object_store(OBJ_APP_PACKAGES).await.map_err(|e| ApiError::internal(&e))?;
    let info = match store.info(&key).await {
        Ok(info) if !info.deleted => info,
        Ok(_) => return Err(not_found(&key)),
        Err(err) if err.kind() == async_nats::jetstream::object_store::InfoErrorKind::NotFound => {
            return Err(not_found(&key));
        }
        Err(err) => return Err(ApiError::internal(&err)),
    };
    let size = info.size as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, length) = match requested(range, size) {
        Requested::Whole => (StatusCode::OK, 0, size),
        Requested::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Requested::Unsatisfiable => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };

    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(sha) = info.metadata.get("sha256")
        && let Ok(value) = HeaderValue::from_str(&format!("\"{sha}\""))
    {
        response_headers.insert(header::ETAG, value);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + length - 1))
    {
        response_headers.insert(header::CONTENT_RANGE, value);
    }
    if method == Method::HEAD {
        return Ok((status, response_headers).into_response());
    }

    let mut object = store.get(&key).await.map_err(|e| ApiError::internal(&e))?;
    // The object store reads front to back; a range starts by skipping what comes before it.
    if start > 0 {
        let skipped = tokio::io::copy(&mut (&mut object).take(start), &mut tokio::io::sink())
            .await
            .map_err(|e| ApiError::internal(&e))?;
        if skipped != start {
            return Err(ApiError::internal(&std::io::Error::other("package shorter than its size")));
        }
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(object.take(length)));
    Ok((status, response_headers, body).into_response())
}

fn not_found(key: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::PackageNotFound, format!("no package `{key}` is published"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_http_says() {
        assert_eq!(requested(None, 100), Requested::Whole);
        assert_eq!(requested(Some("bytes=0-9"), 100), Requested::Part { start: 0, end: 9 });
        assert_eq!(requested(Some("bytes=90-"), 100), Requested::Part { start: 90, end: 99 });
        assert_eq!(requested(Some("bytes=-10"), 100), Requested::Part { start: 90, end: 99 });
        assert_eq!(requested(Some("bytes=-1000"), 100), Requested::Part { start: 0, end: 99 });
        assert_eq!(requested(Some("bytes=50-5000"), 100), Requested::Part { start: 50, end: 99 });
        assert_eq!(requested(Some("bytes=100-"), 100), Requested::Unsatisfiable);
        assert_eq!(requested(Some("bytes=9-1"), 100), Requested::Unsatisfiable);
        assert_eq!(requested(Some("bytes=x-1"), 100), Requested::Unsatisfiable);
        assert_eq!(requested(Some("bytes=-"), 100), Requested::Unsatisfiable);
        assert_eq!(requested(Some("bytes=0-0"), 0), Requested::Unsatisfiable);
        assert_eq!(requested(Some("bytes=0-1,5-6"), 100), Requested::Whole);
        assert_eq!(requested(Some("items=0-1"), 100), Requested::Whole);
    }
}
