//! An agent's performance: `GET /api/agents/{pc}/perf/live` (server-sent events relayed from the agent while the
//! stream is open; see `crate::perf_live`) and `GET /api/agents/{pc}/perf` (its rollups over a time range, merged
//! into points; see `crate::perf_history`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::StreamExt as _;
use kanade_shared::PcId;
use kanade_shared::api::{ErrorBody, PerfHistory, PerfHistoryEvent, PerfLiveState, PerfQuery};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, ApiQuery, AppState, ErrorCode, PathId, agents, inventory, streams};
use crate::caller::Caller;
use crate::perf_live::{LiveEvent, WatchError};

fn event(live: &LiveEvent) -> Event {
    let built = match live {
        LiveEvent::State(state) => Event::default().event("state").json_data(state),
        LiveEvent::History(samples, processes) => Event::default().event("history").json_data(PerfHistoryEvent {
            samples: samples.as_ref().clone(),
            processes: processes.as_deref().cloned(),
        }),
        LiveEvent::Host(sample) => Event::default().event("host").json_data(sample.as_ref()),
        LiveEvent::Proc(sample) => Event::default().event("proc").json_data(sample.as_ref()),
    };
    built.unwrap_or_default()
}

/// `GET /api/agents/{pc}/perf/live`: `event: state` (`waiting`, `live`, `unreachable`), `event: history` (the
/// samples the agent kept, oldest first), then `event: host` and `event: proc` at the agent's `perf_interval` for
/// as long as the stream is open. Every browser watching one PC shares one lease and one subscription.
#[utoipa::path(get, path = "/api/agents/{pc_id}/perf/live", tag = "live", operation_id = "perf_live", params(("pc_id" = String, Path, description = "the agent's pc id")), responses((status = 200, description = "server-sent events: `state` (a `PerfLiveState`), `history` (a `PerfHistoryEvent`), `host` (a `HostSample`), `proc` (a `ProcSample`)", content_type = "text/event-stream", body = PerfHistoryEvent), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn live(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(pc): PathId<PcId>,
) -> Result<Response, ApiError> {
    agents::in_scope(&state, &caller, &pc).await?;
    if state.db.get_agent(&pc).await?.is_none() {
        return Err(agents::not_found(&pc));
    }
    let slot = streams::slot(&state)?;
    let watch = state.watches.watch(&pc).await.map_err(|err| match err {
        WatchError::TooMany(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooManyWatches, err.to_string())
        }
        WatchError::Broker(_) => {
            tracing::error!(error = %err, "cannot relay live performance");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::BrokerUnavailable, "cannot reach the broker")
        }
    })?;
    let (receiver, first) = watch.join();
    let waiting = LiveEvent::State(PerfLiveState { state: "waiting".into(), interval_ms: 0, message: String::new() });
    let first =
        if first.iter().any(|e| matches!(e, LiveEvent::State(_))) { first } else { [vec![waiting], first].concat() };
    let opening = futures::stream::iter(first.iter().map(event).map(Ok::<_, Infallible>).collect::<Vec<_>>());
    let following = futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(live) => return Some((Ok::<_, Infallible>(event(&live)), receiver)),
                // A browser too slow for the stream skips what it missed; the next samples draw on.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let events = opening
        .chain(following)
        // The watch and the slot live as long as the stream: when the browser goes, both are released.
        .map(move |event| {
            let _held = (&watch, &slot);
            event
        })
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(streams::sse(events))
}

/// `GET /api/agents/{pc}/perf?since=&until=&step=`: the agent's rollups in the range, one point per step.
#[utoipa::path(get, path = "/api/agents/{pc_id}/perf", tag = "agents", operation_id = "perf_history", params(("pc_id" = String, Path, description = "the agent's pc id"), PerfQuery), responses((status = 200, description = "the points in time order; `format=csv` gives one CSV row per point", body = PerfHistory), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn history(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(pc): PathId<PcId>,
    ApiQuery(query): ApiQuery<PerfQuery>,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::bad_request(ErrorCode::InvalidQuery, m);
    let csv = inventory::csv_wanted(query.format.as_deref())?;
    let range =
        crate::perf_history::range(query.since.as_deref(), query.until.as_deref(), query.step.as_deref(), Utc::now())
            .map_err(bad)?;
    agents::in_scope(&state, &caller, &pc).await?;
    if state.db.get_agent(&pc).await?.is_none() {
        return Err(agents::not_found(&pc));
    }
    let rows = state.db.perf_rollups(pc.as_str(), range.since, range.until).await?;
    let history = PerfHistory {
        pc_id: pc.to_string(),
        since: range.since,
        until: range.until,
        step_secs: range.step.as_secs(),
        points: crate::perf_history::downsample(&rows, &range),
    };
    if !csv {
        return Ok(Json(history).into_response());
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    for point in &history.points {
        let top = |list: &[kanade_shared::perf::ProcSummary]| list.first().map(|p| p.name.clone()).unwrap_or_default();
        writer
            .serialize(CsvPoint {
                at: point.at.to_rfc3339(),
                rollups: point.rollups,
                cpu_avg: point.cpu_percent.avg,
                cpu_max: point.cpu_percent.max,
                mem_used_avg: point.mem_used_bytes.avg,
                mem_used_max: point.mem_used_bytes.max,
                mem_total: point.mem_total_bytes,
                disk_read_avg: point.disk_read_bytes_per_sec.avg,
                disk_read_max: point.disk_read_bytes_per_sec.max,
                disk_write_avg: point.disk_write_bytes_per_sec.avg,
                disk_write_max: point.disk_write_bytes_per_sec.max,
                net_rx_avg: point.net_rx_bytes_per_sec.avg,
                net_rx_max: point.net_rx_bytes_per_sec.max,
                net_tx_avg: point.net_tx_bytes_per_sec.avg,
                net_tx_max: point.net_tx_bytes_per_sec.max,
                top_cpu: top(&point.top_cpu),
                top_memory: top(&point.top_memory),
            })
            .map_err(|err| ApiError::internal(&err))?;
    }
    inventory::download(&format!("perf-{pc}"), writer)
}

/// One CSV row of the history: the point's figures and the names of its top processes.
#[derive(Serialize)]
struct CsvPoint {
    at: String,
    rollups: u32,
    cpu_avg: f64,
    cpu_max: f64,
    mem_used_avg: f64,
    mem_used_max: f64,
    mem_total: u64,
    disk_read_avg: f64,
    disk_read_max: f64,
    disk_write_avg: f64,
    disk_write_max: f64,
    net_rx_avg: f64,
    net_rx_max: f64,
    net_tx_avg: f64,
    net_tx_max: f64,
    top_cpu: String,
    top_memory: String,
}
