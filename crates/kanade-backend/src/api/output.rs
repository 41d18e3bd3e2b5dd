//! `GET /api/results/{result_id}/output?stream=stdout|stderr`: one output stream of a result, whole. From the
//! `result_output` object store when the stream outgrew the result's inline part (streamed through a bounded buffer,
//! with `Content-Length`, single `Range` requests, and its SHA-256 checked on the way: a body that does not match
//! is cut off, not completed), from the result's own text otherwise.
//!
//! Two headers say what the body is: `x-kanade-output-source` (`object` | `inline`) and `x-kanade-output-complete`
//! (`false` when it is only the stream's beginning: the agent's ceiling cut it, or its object is unavailable).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kanade_shared::ResultId;
use kanade_shared::api::{ErrorBody, OUTPUT_COMPLETE_HEADER, OUTPUT_SOURCE_HEADER, ResultOutputQuery};
use kanade_shared::resources::OBJ_RESULT_OUTPUT;
use kanade_shared::wire::OutputStream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::packages::{Requested, requested};
use super::{ApiError, ApiQuery, AppState, ErrorCode};

/// Bytes read from the object store at a time, and so the most one response holds in memory.
const READ_BUFFER: usize = 64 * 1024;

/// Which stream `raw` names; `stdout` when it names none.
pub fn stream_of(raw: Option<&str>) -> Result<OutputStream, ApiError> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(OutputStream::Stdout),
        Some(raw) => OutputStream::parse(raw).ok_or_else(|| {
            let shown: String = raw.chars().take(40).collect();
            ApiError::bad_request(ErrorCode::InvalidQuery, format!("stream `{shown}` is not one of stdout, stderr"))
        }),
    }
}

#[utoipa::path(get, path = "/api/results/{result_id}/output", tag = "results", operation_id = "results_output",
    params(("result_id" = String, Path, description = "`<exec_id>.<pc_id>`"), ResultOutputQuery,
        ("Range" = Option<String>, Header, description = "one byte range")),
    responses(
        (status = 200, description = "the whole stream (see `x-kanade-output-source` and `x-kanade-output-complete`)", content_type = "text/plain"),
        (status = 206, description = "the range asked for", content_type = "text/plain"),
        (status = 416, description = "the range is outside the stream"),
        (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn output(
    State(state): State<Arc<AppState>>,
    Path(result_id): Path<String>,
    ApiQuery(query): ApiQuery<ResultOutputQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let result = ResultId::parse(&result_id)
        .map_err(|err| ApiError::bad_request(ErrorCode::InvalidResultId, err.to_string()))?;
    let stream = stream_of(query.stream.as_deref())?;
    let Some(stored) = state.db.result_output(&result, stream).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ResultNotFound, format!("no result `{result}`")));
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (Some(object), Some(full)) = (stored.object, stored.full.clone()) else {
        // No object: the inline text is all there is.
        let complete = !stored.inline_cut;
        let bytes = Bytes::from(stored.inline.into_bytes());
        let size = bytes.len() as u64;
        let (status, start, length) = match span(range, size)? {
            Ok(span) => span,
            Err(response) => return Ok(response),
        };
        let body = bytes.slice(start as usize..(start + length) as usize);
        let headers = response_headers("inline", complete, status, start, length, size);
        return Ok((status, headers, Body::from(body)).into_response());
    };

    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return Err(broker_down("the broker cannot be reached"));
    }
    let js = async_nats::jetstream::new(state.nats.clone());
    let store = js.get_object_store(OBJ_RESULT_OUTPUT).await.map_err(|err| {
        tracing::warn!(error = %err, "cannot open the result_output store");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotSetUp,
            "the result_output store is not there: run `kanade jetstream setup`",
        )
    })?;
    let gone = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::OutputGone,
            format!("the whole {stream} of `{result}` is no longer stored (it ages out with its result)"),
        )
    };
    let info = match store.info(&object).await {
        Ok(info) if !info.deleted => info,
        Ok(_) => return Err(gone()),
        Err(err) if err.kind() == async_nats::jetstream::object_store::InfoErrorKind::NotFound => return Err(gone()),
        Err(err) => {
            tracing::warn!(error = %err, object, "cannot read the output object's info");
            return Err(broker_down("the broker did not answer"));
        }
    };
    let size = info.size as u64;
    if size != full.size {
        tracing::error!(
            object,
            stored = size,
            expected = full.size,
            "output object has another size than its result says"
        );
        return Err(gone());
    }
    let (status, start, length) = match span(range, size)? {
        Ok(span) => span,
        Err(response) => return Ok(response),
    };
    let mut reader = store.get(&object).await.map_err(|err| {
        tracing::warn!(error = %err, object, "cannot open the output object");
        broker_down("the broker did not answer")
    })?;
    // The object store reads front to back; a range starts by skipping what comes before it.
    if start > 0 {
        let skipped = tokio::io::copy(&mut (&mut reader).take(start), &mut tokio::io::sink())
            .await
            .map_err(|e| ApiError::internal(&e))?;
        if skipped != start {
            return Err(gone());
        }
    }
    let whole = status == StatusCode::OK;
    let expected = full.sha256.clone();
    let chunks = tokio_util::io::ReaderStream::with_capacity(reader.take(length), READ_BUFFER);
    // The hash is checked on whole bodies: the end of one that does not match becomes an error, which cuts the
    // connection, so a client never takes corrupt output for complete.
    let checked = ChecksAtEnd::new(chunks, whole.then_some(expected), object.clone());
    let headers = response_headers("object", !full.capped, status, start, length, size);
    Ok((status, headers, Body::from_stream(checked)).into_response())
}

/// Status, first byte and length of what a `Range` asks of `size` bytes; or the 416 answer to give instead.
fn span(range: Option<&str>, size: u64) -> Result<Result<(StatusCode, u64, u64), Response>, ApiError> {
    Ok(match requested(range, size) {
        Requested::Whole => Ok((StatusCode::OK, 0, size)),
        Requested::Part { start, end } => Ok((StatusCode::PARTIAL_CONTENT, start, end - start + 1)),
        Requested::Unsatisfiable => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            Err(response)
        }
    })
}

fn response_headers(
    source: &'static str,
    complete: bool,
    status: StatusCode,
    start: u64,
    length: u64,
    size: u64,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(OUTPUT_SOURCE_HEADER, HeaderValue::from_static(source));
    headers.insert(OUTPUT_COMPLETE_HEADER, HeaderValue::from_static(if complete { "true" } else { "false" }));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + length - 1))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    headers
}

fn broker_down(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::BrokerUnavailable, message)
}

/// A body stream that hashes what passes and, at its end, turns into an error when the hash is not `expected`.
struct ChecksAtEnd<S> {
    inner: std::pin::Pin<Box<S>>,
    hash: Sha256,
    expected: Option<String>,
    object: String,
}

impl<S> ChecksAtEnd<S> {
    fn new(inner: S, expected: Option<String>, object: String) -> Self {
        Self { inner: Box::pin(inner), hash: Sha256::new(), expected, object }
    }
}

impl<S> futures::Stream for ChecksAtEnd<S>
where
    S: futures::Stream<Item = std::io::Result<Bytes>>,
{
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.hash.update(&bytes);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(None) => {
                let Some(expected) = self.expected.take() else { return Poll::Ready(None) };
                let got = format!("{:x}", std::mem::take(&mut self.hash).finalize());
                if got == expected {
                    Poll::Ready(None)
                } else {
                    tracing::error!(object = %self.object, %expected, %got, "output object does not match its sha256");
                    Poll::Ready(Some(Err(std::io::Error::other("the output does not match its sha256"))))
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_stdout_or_stderr_and_nothing_else() {
        assert_eq!(stream_of(None).unwrap(), OutputStream::Stdout);
        assert_eq!(stream_of(Some("")).unwrap(), OutputStream::Stdout);
        assert_eq!(stream_of(Some("stderr")).unwrap(), OutputStream::Stderr);
        for bad in ["STDOUT", "stdin", "stdout,stderr", &"x".repeat(10_000)] {
            assert!(stream_of(Some(bad)).is_err(), "{bad}");
        }
    }
}
