//! Server-sent event streams: `GET /api/events` (what changed, so the dashboard refetches it; see `crate::live`) and
//! `GET /api/executions/{id}/output?pc_id=` (a running job's stdout and stderr as the agent sends it).
//!
//! A caller scoped to groups is told only which topics changed, never the ids (which would name PCs and executions
//! outside its scope), and may follow the output of the PCs in its scope only.
//!
//! Both hold one of the replica's [`crate::live::MAX_STREAMS`] slots while open, send a keep-alive comment every
//! [`KEEP_ALIVE`] (so proxies do not close an idle stream) and end when the client goes away or the backend stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive};
use axum::response::{IntoResponse, Response, Sse};
use futures::{Stream, StreamExt};
use kanade_shared::api::{ClientChange, ErrorBody, OutputQuery};
use kanade_shared::wire::OutputChunk;
use kanade_shared::{ExecId, PcId, subject};
use tokio::sync::OwnedSemaphorePermit;

use super::{ApiError, ApiQuery, AppState, ErrorCode, PathId};
use crate::caller::Caller;

pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// An output tail ends after this, whatever the run does: a forgotten browser tab does not hold a slot forever.
pub const OUTPUT_MAX: Duration = Duration::from_secs(60 * 60);

pub(super) fn slot(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    state.hub.stream_slot().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TooManyStreams,
            format!("this backend already serves {} live streams; close one or try later", crate::live::MAX_STREAMS),
        )
    })
}

pub(super) fn sse<S>(stream: S) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    // A comment first, so the client sees the stream open at once rather than at the first change or keep-alive
    // (a proxy may hold the headers back until body bytes flow).
    let opened = futures::stream::once(std::future::ready(Ok(Event::default().comment("open"))));
    Sse::new(opened.chain(stream)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response()
}

/// `GET /api/events`: `event: change` with `{"topic", "ids"}` whenever something the dashboard shows changed.
#[utoipa::path(get, path = "/api/events", tag = "live", operation_id = "live_events", responses((status = 200, description = "server-sent events: `event: change` with a `Change`; `event: open` first", content_type = "text/event-stream", body = ClientChange), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn events(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Response, ApiError> {
    let slot = slot(&state)?;
    let changes = if caller.scope.is_fleet() { state.hub.subscribe() } else { without_ids(&state) };
    Ok(sse(crate::live::change_events(changes, slot, state.shutdown.clone())))
}

/// The hub's changes with their ids taken out (a change without ids means "refetch the topic"), for a caller scoped
/// to groups: the ids of agents, results, executions, timelines, inventory and perf would name what is outside the
/// scope. Jobs and schedules are not per PC and keep theirs. The relay ends when the client's stream is dropped (at
/// the next change), the hub closes, or the backend stops.
fn without_ids(state: &AppState) -> tokio::sync::broadcast::Receiver<kanade_shared::wire::Change> {
    use tokio::sync::broadcast::error::RecvError;
    let mut from = state.hub.subscribe();
    let (to, receiver) = tokio::sync::broadcast::channel(64);
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                received = from.recv() => match received {
                    Ok(change) => change,
                    // Missed some: tell the client to refetch everything, as the hub would.
                    Err(RecvError::Lagged(_)) => kanade_shared::wire::Change {
                        topic: crate::live::TOPIC_ALL.to_owned(),
                        ids: Vec::new(),
                    },
                    Err(RecvError::Closed) => return,
                },
                () = shutdown.cancelled() => return,
            };
            let keeps_ids = [crate::live::Topic::Jobs, crate::live::Topic::Schedules]
                .iter()
                .any(|topic| topic.as_str() == change.topic);
            let ids = if keeps_ids { change.ids } else { Vec::new() };
            if to.send(kanade_shared::wire::Change { topic: change.topic, ids }).is_err() {
                return;
            }
        }
    });
    receiver
}

/// `GET /api/executions/{id}/output?pc_id=`: `event: chunk` with each [`OutputChunk`] (`{"seq", "stream", "data"}`)
/// from then on. Output is live only (core NATS): what was printed before the client connected is in the result.
#[utoipa::path(get, path = "/api/executions/{exec_id}/output", tag = "live", operation_id = "live_output", params(("exec_id" = String, Path, description = "the execution id"), OutputQuery), responses((status = 200, description = "server-sent events: `event: chunk` with an `OutputChunk`", content_type = "text/event-stream", body = OutputChunk), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub async fn output(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(exec): PathId<ExecId>,
    ApiQuery(query): ApiQuery<OutputQuery>,
) -> Result<Response, ApiError> {
    let raw = query
        .pc_id
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidQuery, "pc_id is required: whose output to follow"))?;
    let pc = PcId::new(raw).map_err(|err| ApiError::bad_request(ErrorCode::InvalidQuery, format!("pc_id: {err}")))?;
    super::agents::in_scope(&state, &caller, &pc).await?;
    let slot = slot(&state)?;
    let chunks = state.nats.subscribe(subject::output(&pc, &exec)).await.map_err(|err| {
        tracing::error!(error = %err, "cannot subscribe to output");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::BrokerUnavailable, "cannot subscribe to the output")
    })?;
    let (exec_id, pc_id) = (exec.clone(), pc.clone());
    let events = chunks
        .filter_map(move |message| {
            let chunk = serde_json::from_slice::<OutputChunk>(&message.payload);
            if let Err(err) = &chunk {
                tracing::debug!(exec_id = %exec_id, pc_id = %pc_id, error = %err, "malformed output chunk skipped");
            }
            std::future::ready(
                chunk.ok().map(|chunk| Ok(Event::default().event("chunk").json_data(&chunk).unwrap_or_default())),
            )
        })
        // The slot is held until the stream is dropped: when the client goes away, or the stream ends.
        .map(move |event| {
            let _held = &slot;
            event
        })
        .take_until(tokio::time::sleep(OUTPUT_MAX))
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(sse(events))
}
