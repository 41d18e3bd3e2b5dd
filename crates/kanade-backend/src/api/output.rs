//! `GET /api/results/{result_id}/output?stream=stdout|stderr`: one output stream of a result, whole. When the stream
//! outgrew the result's inline part, from where the agent stored it: its chunks on stream `OUTPUT` (read one by one
//! by subject, built from the result's own pc and exec id, a few ahead), or, for an older agent's result, the
//! `result_output` object store (through a bounded buffer); with `Content-Length`, single `Range` requests, and its
//! size and SHA-256 checked on the way: a body that does not match is cut off, not completed. From the result's own
//! text otherwise.
//!
//! Two headers say what the body is: `x-kanade-output-source` (`object`: the stored whole, either way | `inline`) and
//! `x-kanade-output-complete` (`false` when it is only the stream's beginning: the agent's ceiling cut it, or its
//! stored whole is unavailable).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use kanade_shared::api::{ErrorBody, OUTPUT_COMPLETE_HEADER, OUTPUT_SOURCE_HEADER, ResultOutputQuery};
use kanade_shared::resources::{OBJ_RESULT_OUTPUT, STREAM_OUTPUT};
use kanade_shared::wire::OutputStream;
use kanade_shared::{ExecId, PcId, ResultId, subject};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::packages::{Requested, requested};
use super::{ApiError, ApiQuery, AppState, ErrorCode};
use crate::caller::Caller;

/// Bytes read from the object store at a time, and so the most one response from it holds in memory.
const READ_BUFFER: usize = 64 * 1024;
/// Chunks of `OUTPUT` asked for ahead of the one being sent, so a response holds at most this many plus one
/// ([`kanade_shared::resources::OUTPUT_CHUNK_BYTES`] each).
const CHUNKS_AHEAD: usize = 2;

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
    caller: Caller,
    Path(result_id): Path<String>,
    ApiQuery(query): ApiQuery<ResultOutputQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let result = ResultId::parse(&result_id)
        .map_err(|err| ApiError::bad_request(ErrorCode::InvalidResultId, err.to_string()))?;
    let stream = stream_of(query.stream.as_deref())?;
    let missing = || ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ResultNotFound, format!("no result `{result}`"));
    // A PC outside the caller's scope has no results it can see: asked for one, it answers as a missing one.
    let (_, pc) = run_of(&result)?;
    if !state.db.pc_in_scope(&pc, &caller.scope).await? {
        return Err(missing());
    }
    let Some(stored) = state.db.result_output(&result, stream).await? else {
        return Err(missing());
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
    if stored.chunks > 0 {
        return from_chunks(&js, &result, stream, &full, stored.chunks, range).await;
    }
    from_object(&js, &result, stream, &full, object, range).await
}

fn gone(result: &ResultId, stream: OutputStream) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::OutputGone,
        format!("the whole {stream} of `{result}` is no longer stored (it ages out with its result)"),
    )
}

/// The run a result id names: (exec, pc). A parsed [`ResultId`] always has both.
fn run_of(result: &ResultId) -> Result<(ExecId, PcId), ApiError> {
    let malformed = || ApiError::bad_request(ErrorCode::InvalidResultId, format!("result id `{result}` is malformed"));
    let (exec, pc) = result.as_str().split_once('.').ok_or_else(malformed)?;
    Ok((ExecId::new(exec).map_err(|_| malformed())?, PcId::new(pc).map_err(|_| malformed())?))
}

/// Serves a whole output an agent published as `chunks` messages on `OUTPUT`. Every chunk must be there before the
/// answer starts (one that aged out or was deleted is `output_gone`, not a body cut short); each one's bytes are
/// counted as they pass, and a body longer or shorter than the result says, or with another SHA-256, is cut off.
async fn from_chunks(
    js: &async_nats::jetstream::Context,
    result: &ResultId,
    stream: OutputStream,
    full: &kanade_shared::api::FullOutputInfo,
    chunks: u32,
    range: Option<&str>,
) -> Result<Response, ApiError> {
    let (exec, pc) = run_of(result)?;
    let output = js.get_stream(STREAM_OUTPUT).await.map_err(|err| {
        if matches!(err.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
        {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NotSetUp,
                "stream OUTPUT is not there: run `kanade jetstream setup`",
            )
        } else {
            tracing::warn!(error = %err, "cannot open stream OUTPUT");
            broker_down("the broker did not answer")
        }
    })?;
    // The chunks the broker holds, by subject: only counted, so a result claiming more than it has costs nothing.
    let held = output.info_with_subjects(subject::output_chunks(&pc, &exec, stream)).await.map_err(|err| {
        tracing::warn!(error = %err, %result, "cannot list the output's chunks");
        broker_down("the broker did not answer")
    })?;
    let present = held
        .try_fold(0u32, |present, (name, _)| async move {
            Ok(present + u32::from(subject::chunk_of_output(&name).is_some_and(|n| n < chunks)))
        })
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, %result, "cannot list the output's chunks");
            broker_down("the broker did not answer")
        })?;
    if present != chunks {
        tracing::warn!(%result, %stream, chunks, present, "the output's chunks are not all stored");
        return Err(gone(result, stream));
    }
    let size = full.size;
    let (status, start, length) = match span(range, size)? {
        Ok(span) => span,
        Err(response) => return Ok(response),
    };
    let fetched = futures::stream::iter(0..chunks)
        .map(move |n| {
            let (output, subject) = (output.clone(), subject::output_chunk(&pc, &exec, stream, n));
            async move {
                let fetched = output.direct_get_last_for_subject(subject).await;
                (n, fetched.map(|message| message.payload).map_err(|err| err.to_string()))
            }
        })
        .buffered(CHUNKS_AHEAD);
    let name = kanade_shared::resources::result_output_object(result, stream);
    let body =
        ChunkBody { fetched: Box::pin(fetched), passed: 0, start, end: start + length, size, name: name.clone() };
    let whole = status == StatusCode::OK;
    let checked = ChecksAtEnd::new(body.into_stream(), whole.then(|| full.sha256.clone()), name);
    let headers = response_headers("object", !full.capped, status, start, length, size);
    Ok((status, headers, Body::from_stream(checked)).into_response())
}

/// Chunk `n` of an output as the broker answered: its bytes, or why not.
type FetchedChunk = (u32, Result<Bytes, String>);

/// The bytes `start..end` of an output read chunk by chunk, checked against the `size` its result gives it.
struct ChunkBody {
    fetched: std::pin::Pin<Box<dyn futures::Stream<Item = FetchedChunk> + Send>>,
    /// Bytes of the output in the chunks read so far.
    passed: u64,
    start: u64,
    end: u64,
    size: u64,
    /// The output's name, for the log.
    name: String,
}

impl ChunkBody {
    fn into_stream(self) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
        futures::stream::try_unfold(self, |mut body| async move {
            loop {
                // A range ends with its last byte; a body reaching the end reads every chunk, so that one more than
                // the result says is caught too.
                if body.passed >= body.end && body.end < body.size {
                    return Ok(None);
                }
                let Some((n, fetched)) = body.fetched.next().await else {
                    if body.passed >= body.end {
                        return Ok(None);
                    }
                    tracing::error!(output = %body.name, stored = body.passed, expected = body.size, "the output's chunks hold fewer bytes than its result says");
                    return Err(std::io::Error::other("the output is shorter than its result says"));
                };
                let payload = match fetched {
                    Ok(payload) => payload,
                    Err(err) => {
                        tracing::error!(output = %body.name, chunk = n, error = %err, "cannot read a chunk of the output");
                        return Err(std::io::Error::other(format!("chunk {n} of the output cannot be read")));
                    }
                };
                let first = body.passed;
                body.passed += payload.len() as u64;
                if body.passed > body.size {
                    tracing::error!(output = %body.name, chunk = n, expected = body.size, "the output's chunks hold more bytes than its result says");
                    return Err(std::io::Error::other("the output is longer than its result says"));
                }
                // What of this chunk falls in `start..end`.
                let from = body.start.saturating_sub(first);
                let to = (body.end - first).min(payload.len() as u64);
                if from < to {
                    return Ok(Some((payload.slice(from as usize..to as usize), body)));
                }
            }
        })
    }
}

/// Serves a whole output an older agent put into the `result_output` object store as `object`.
async fn from_object(
    js: &async_nats::jetstream::Context,
    result: &ResultId,
    stream: OutputStream,
    full: &kanade_shared::api::FullOutputInfo,
    object: String,
    range: Option<&str>,
) -> Result<Response, ApiError> {
    let gone = || gone(result, stream);
    let store = js.get_object_store(OBJ_RESULT_OUTPUT).await.map_err(|err| {
        tracing::warn!(error = %err, "cannot open the result_output store");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotSetUp,
            "the result_output store is not there: run `kanade jetstream setup`",
        )
    })?;
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
///
/// With a hash to check it holds each piece back until the next one comes, so the last piece goes out only once the
/// hash matched: a server stops reading a body once it has sent `Content-Length` bytes, and an error after the last
/// byte would never reach the client. Cut one piece short, the body ends in an error the client sees.
struct ChecksAtEnd<S> {
    inner: std::pin::Pin<Box<S>>,
    hash: Sha256,
    expected: Option<String>,
    held: Option<Bytes>,
    /// The end was reached (and checked): what is held goes out, then nothing more.
    ended: bool,
    object: String,
}

impl<S> ChecksAtEnd<S> {
    fn new(inner: S, expected: Option<String>, object: String) -> Self {
        Self { inner: Box::pin(inner), hash: Sha256::new(), expected, held: None, ended: false, object }
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
        loop {
            if self.ended {
                return Poll::Ready(self.held.take().map(Ok));
            }
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    if self.expected.is_none() {
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                    self.hash.update(&bytes);
                    if let Some(previous) = self.held.replace(bytes) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    self.ended = true;
                    let Some(expected) = self.expected.take() else { continue };
                    let got = format!("{:x}", std::mem::take(&mut self.hash).finalize());
                    if got != expected {
                        self.held = None;
                        tracing::error!(object = %self.object, %expected, %got, "output does not match its sha256");
                        return Poll::Ready(Some(Err(std::io::Error::other("the output does not match its sha256"))));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    (self.ended, self.held) = (true, None);
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures::StreamExt;

    /// What a body yields: its bytes, and whether it ended in an error.
    async fn drain(body: impl futures::Stream<Item = std::io::Result<Bytes>>) -> (Vec<u8>, bool) {
        let mut body = std::pin::pin!(body);
        let mut bytes = Vec::new();
        while let Some(piece) = body.next().await {
            match piece {
                Ok(piece) => bytes.extend_from_slice(&piece),
                Err(_) => return (bytes, true),
            }
        }
        (bytes, false)
    }

    fn chunk_body(chunks: Vec<Result<&'static [u8], String>>, start: u64, end: u64, size: u64) -> ChunkBody {
        let fetched = chunks.into_iter().enumerate().map(|(n, c)| (n as u32, c.map(Bytes::from_static)));
        ChunkBody { fetched: Box::pin(futures::stream::iter(fetched)), passed: 0, start, end, size, name: "o".into() }
    }

    #[tokio::test]
    async fn chunks_are_served_in_order_and_a_range_takes_only_its_bytes() {
        let chunks = || vec![Ok(&b"01234"[..]), Ok(&b"56789"[..]), Ok(&b"abc"[..])];
        assert_eq!(drain(chunk_body(chunks(), 0, 13, 13).into_stream()).await, (b"0123456789abc".to_vec(), false));
        assert_eq!(drain(chunk_body(chunks(), 3, 7, 13).into_stream()).await, (b"3456".to_vec(), false));
        assert_eq!(drain(chunk_body(chunks(), 5, 10, 13).into_stream()).await, (b"56789".to_vec(), false));
        assert_eq!(drain(chunk_body(chunks(), 12, 13, 13).into_stream()).await, (b"c".to_vec(), false));
        // A range that ends early reads no further, so what lies beyond it does not matter.
        let broken_after = vec![Ok(&b"01234"[..]), Err("gone".to_owned())];
        assert_eq!(drain(chunk_body(broken_after, 0, 4, 13).into_stream()).await, (b"0123".to_vec(), false));
    }

    #[tokio::test]
    async fn chunks_that_do_not_add_up_to_the_size_end_in_an_error() {
        let shorter = vec![Ok(&b"01234"[..]), Ok(&b"567"[..])];
        assert_eq!(drain(chunk_body(shorter, 0, 10, 10).into_stream()).await, (b"01234567".to_vec(), true));
        let longer = vec![Ok(&b"01234"[..]), Ok(&b"56789"[..]), Ok(&b"x"[..])];
        assert_eq!(drain(chunk_body(longer, 0, 10, 10).into_stream()).await, (b"0123456789".to_vec(), true));
        let missing = vec![Ok(&b"01234"[..]), Err("not found".to_owned()), Ok(&b"abc"[..])];
        assert_eq!(drain(chunk_body(missing, 0, 13, 13).into_stream()).await, (b"01234".to_vec(), true));
    }

    #[tokio::test]
    async fn a_hash_that_does_not_match_keeps_the_last_piece_back() {
        let pieces = || futures::stream::iter(["ab", "cd", "ef"].map(|p| Ok(Bytes::from_static(p.as_bytes()))));
        let right = format!("{:x}", Sha256::digest(b"abcdef"));
        let checked = ChecksAtEnd::new(pieces(), Some(right), "o".into());
        assert_eq!(drain(checked).await, (b"abcdef".to_vec(), false));
        let wrong = format!("{:x}", Sha256::digest(b"abcdeF"));
        let checked = ChecksAtEnd::new(pieces(), Some(wrong), "o".into());
        assert_eq!(drain(checked).await, (b"abcd".to_vec(), true), "the body ends short, in an error");
        // A range is not checked, and passes as it comes.
        assert_eq!(drain(ChecksAtEnd::new(pieces(), None, "o".into())).await, (b"abcdef".to_vec(), false));
    }

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
