//! `GET /metrics`: the backend in the Prometheus (OpenMetrics) text format, for Prometheus or any scraper.
//!
//! One [`Metrics`] per backend (no process-wide recorder, so the backends of one test process do not count into
//! each other), built on `prometheus-client`. Two kinds of series:
//! - kept as things happen: API latency by method and matched route template (`kanade_http_request_duration_seconds`;
//!   only routes the router matched are recorded, and unknown methods count as `other`, so no request can create a
//!   label value), each projector's batch sizes (`kanade_projector_batch_size`, by stream), and the enrolment and
//!   renewal requests this replica answered, by kind and outcome (`kanade_enroll_requests_total`);
//! - computed at scrape time: agents by state from one counting query (`kanade_agents`), executions by stored
//!   status (`kanade_executions`), each projector's backlog from its durable consumer (`kanade_projector_pending`),
//!   the live streams open on this replica (`kanade_sse_streams_open`) and `kanade_leader` (1 on the replica
//!   holding the leadership lease, else 0).
//!
//! None has a per-agent label: the cost at 10,000 agents is the same as at ten.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use kanade_shared::resources::{
    CONSUMER_AUDIT_PROJECTOR, CONSUMER_CONSENT_PROJECTOR, CONSUMER_EVENTS_PROJECTOR, CONSUMER_INVENTORY_PROJECTOR,
    CONSUMER_JOB_FACTS_PROJECTOR, CONSUMER_OBS_PROJECTOR, CONSUMER_PERF_PROJECTOR, CONSUMER_RESULTS_PROJECTOR,
    STREAM_AUDIT, STREAM_EVENTS, STREAM_INVENTORY, STREAM_OBS, STREAM_PERF, STREAM_RESULTS,
};

use crate::api::AppState;
use crate::db::ExecStatus;

/// The content type of the OpenMetrics text format, which Prometheus asks for and reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// An agent not heard from for this long counts as `stale`, not `offline`: retired or lost, not just switched off.
pub const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How long a scrape waits for one consumer's state before it leaves that stream's backlog out.
const CONSUMER_PATIENCE: Duration = Duration::from_secs(2);

/// Each projector's stream and durable consumer.
pub const PROJECTORS: [(&str, &str); 8] = [
    (STREAM_RESULTS, CONSUMER_RESULTS_PROJECTOR),
    (STREAM_EVENTS, CONSUMER_EVENTS_PROJECTOR),
    (STREAM_EVENTS, CONSUMER_CONSENT_PROJECTOR),
    (STREAM_AUDIT, CONSUMER_AUDIT_PROJECTOR),
    (STREAM_OBS, CONSUMER_OBS_PROJECTOR),
    (STREAM_INVENTORY, CONSUMER_INVENTORY_PROJECTOR),
    (STREAM_RESULTS, CONSUMER_JOB_FACTS_PROJECTOR),
    (STREAM_PERF, CONSUMER_PERF_PROJECTOR),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: &'static str,
    /// The projector's durable consumer: `RESULTS` has two (results, and jobs' facts).
    consumer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnrollLabels {
    /// `enroll` or `renew`.
    kind: &'static str,
    /// `issued`, `pending`, `refused`, `malformed` (over the size limit, not JSON, no reply subject) or `failed`
    /// (the backend's own failure).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn batch_histogram() -> Histogram {
    // 1 .. 512 messages (a batch is at most 500).
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// The backend's metrics registry and the series kept as things happen.
pub struct Metrics {
    registry: Registry,
    requests: HistogramFamily<RouteLabels>,
    batches: HistogramFamily<StreamLabels>,
    malformed: Family<StreamLabels, Counter>,
    enroll_requests: Family<EnrollLabels, Counter>,
    agents: Family<StateLabels, Gauge>,
    executions: Family<StateLabels, Gauge>,
    pending: Family<StreamLabels, Gauge>,
    streams_open: Gauge,
    perf_watches: Gauge,
    perf_malformed: Gauge,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kanade");
        let requests = HistogramFamily::<RouteLabels>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and matched route template",
            requests.clone(),
        );
        let batches = HistogramFamily::<StreamLabels>::new_with_constructor(batch_histogram as fn() -> Histogram);
        registry.register(
            "projector_batch_size",
            "Messages a projector took from its stream per database transaction",
            batches.clone(),
        );
        let malformed = Family::<StreamLabels, Counter>::default();
        registry.register(
            "projector_malformed",
            "Messages a projector refused (not decodable, on another agent's subject) and terminated, by stream",
            malformed.clone(),
        );
        let enroll_requests = Family::<EnrollLabels, Counter>::default();
        registry.register(
            "enroll_requests",
            "Enrolment and renewal requests this replica answered, by kind (enroll, renew) and outcome (issued, \
             pending, refused, malformed, failed)",
            enroll_requests.clone(),
        );
        let agents = Family::<StateLabels, Gauge>::default();
        registry.register(
            "agents",
            "Agents by state: online (heard from within offline_after), offline, stale (not heard from for 7 days)",
            agents.clone(),
        );
        let executions = Family::<StateLabels, Gauge>::default();
        registry.register("executions", "Executions by stored status", executions.clone());
        let pending = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "projector_pending",
            "Messages in a projector's stream not yet stored (undelivered plus unacknowledged)",
            pending.clone(),
        );
        let streams_open = Gauge::default();
        registry.register("sse_streams_open", "Live event streams open on this replica", streams_open.clone());
        let perf_watches = Gauge::default();
        registry.register(
            "perf_watches",
            "PCs whose live performance this replica relays now (one lease and one subscription each)",
            perf_watches.clone(),
        );
        let perf_malformed = Gauge::default();
        registry.register(
            "perf_malformed_samples",
            "Live performance samples and lease replies this replica dropped as malformed since it started",
            perf_malformed.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 on the backend that holds the leadership lease (it ticks rollouts and fires schedules), else 0",
            leader.clone(),
        );
        Self {
            registry,
            requests,
            batches,
            malformed,
            enroll_requests,
            agents,
            executions,
            pending,
            streams_open,
            perf_watches,
            perf_malformed,
            leader,
        }
    }

    /// Records one projector batch of `messages` taken from `stream` by `consumer`.
    pub fn projector_batch(&self, stream: &'static str, consumer: &'static str, messages: usize) {
        self.batches.get_or_create(&StreamLabels { stream, consumer }).observe(messages as f64);
    }

    /// Counts one message a projector refused and terminated.
    pub fn projector_malformed(&self, stream: &'static str, consumer: &'static str) {
        self.malformed.get_or_create(&StreamLabels { stream, consumer }).inc();
    }

    /// Counts one enrolment (`kind` `enroll`) or renewal (`renew`) request answered with `outcome`.
    pub fn enroll_request(&self, kind: &'static str, outcome: &'static str) {
        self.enroll_requests.get_or_create(&EnrollLabels { kind, outcome }).inc();
    }

    fn request(&self, method: &Method, route: &str, took: Duration) {
        let labels = RouteLabels { method: method_label(method), route: route.to_owned() };
        self.requests.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Brings the scrape-time series up to date and encodes every series.
    async fn render(&self, state: &AppState) -> Result<String, crate::db::DbError> {
        let counts = state.db.count_agents(Utc::now(), state.offline_after, STALE_AFTER).await?;
        for (name, value) in [("online", counts.online), ("offline", counts.offline), ("stale", counts.stale)] {
            self.agents.get_or_create(&StateLabels { state: name }).set(value);
        }
        let by_status = state.db.count_executions_by_status().await?;
        for status in ExecStatus::ALL {
            let n = by_status.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
            self.executions.get_or_create(&StateLabels { state: status.as_str() }).set(n);
        }
        let js = async_nats::jetstream::new(state.nats.clone());
        for (stream, consumer) in PROJECTORS {
            match tokio::time::timeout(CONSUMER_PATIENCE, backlog(&js, stream, consumer)).await {
                Ok(Ok(n)) => {
                    self.pending.get_or_create(&StreamLabels { stream, consumer }).set(n);
                }
                Ok(Err(err)) => {
                    tracing::debug!(stream, error = %err, "projector backlog unknown");
                    self.pending.remove(&StreamLabels { stream, consumer });
                }
                Err(_) => {
                    tracing::debug!(stream, "projector backlog unknown: the broker did not answer in time");
                    self.pending.remove(&StreamLabels { stream, consumer });
                }
            }
        }
        self.streams_open.set(i64::try_from(state.hub.open_streams()).unwrap_or(i64::MAX));
        self.perf_watches.set(i64::try_from(state.watches.watched()).unwrap_or(i64::MAX));
        self.perf_malformed.set(i64::try_from(state.watches.malformed()).unwrap_or(i64::MAX));
        self.leader.set(i64::from(state.leadership.leading()));
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %err, "cannot encode metrics");
            let _ = writeln!(text, "# EOF");
        }
        Ok(text)
    }
}

/// How many messages of `stream` its projector's consumer has not yet stored.
async fn backlog(js: &async_nats::jetstream::Context, stream: &str, consumer: &str) -> Result<i64, async_nats::Error> {
    let stream = js.get_stream(stream).await?;
    let info = stream.consumer_info(consumer).await?;
    Ok(i64::try_from(info.num_pending).unwrap_or(i64::MAX).saturating_add(i64::try_from(info.num_ack_pending)?))
}

/// Methods a label may name; anything else is `other`, so a client inventing methods cannot add label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Times every request that matched a route, labelled by the route's template (never the raw path).
pub async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(&method, &route, started.elapsed());
    response
}

/// `GET /metrics`.
pub async fn serve(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.render(&state).await {
        Ok(text) => ([(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], text).into_response(),
        Err(err) => {
            tracing::error!(error = %err, source = ?std::error::Error::source(&err), "cannot read metrics");
            (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable: the database cannot be read; see the backend log\n")
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"FROB").unwrap()), "other");
    }
}
