//! `GET /metrics` after real traffic — an agent's heartbeats and start, an execution and its result, API calls, a
//! live stream — parsed as the OpenMetrics text it is and checked value by value; requests to routes that do not
//! exist, with invented methods or with ids in the path, add no label value; the endpoint needs the API's token.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, init_logging};
use reqwest::Method;
use serde_json::json;

mod support;

use support::http::{Reply, SseStream, assert_error, get, post_json, request};

const PATIENCE: Duration = Duration::from_secs(30);

/// One sample: its name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the OpenMetrics text format: `# HELP`/`# TYPE`/`# EOF` lines, then `name{k="v",...} value` samples.
/// Panics on a line that is neither, so a malformed exposition fails the test.
fn parse(text: &str) -> Vec<Sample> {
    assert!(text.trim_end().ends_with("# EOF"), "an OpenMetrics exposition ends with `# EOF`:\n{text}");
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in `{line}`"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            other => other.parse().unwrap_or_else(|_| panic!("value of `{line}`")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in `{line}`"));
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("label `{pair}` in `{line}`"));
                    labels.insert(key.to_owned(), value.trim_end_matches('"').to_owned());
                }
                (name.to_owned(), labels)
            }
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "metric name `{name}`");
        samples.push(Sample { name, labels, value });
    }
    samples
}

/// The value of the one sample named `name` with exactly these labels (besides none other); `None` if absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let found: Vec<_> = samples.iter().filter(|s| s.name == name && s.labels == wanted).collect();
    assert!(found.len() <= 1, "{name}{wanted:?} appears {} times", found.len());
    found.first().map(|s| s.value)
}

async fn scrape(base: &str) -> Vec<Sample> {
    let reply =
        request(base, Method::GET, "/metrics", &[("authorization", &format!("Bearer {TEST_TOKEN}"))], None).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(reply.header("content-type"), kanade_backend::metrics::CONTENT_TYPE);
    parse(&reply.raw)
}

fn route_labels(samples: &[Sample]) -> BTreeSet<(String, String)> {
    samples
        .iter()
        .filter(|s| s.name == "kanade_http_request_duration_seconds_count")
        .map(|s| (s.labels["method"].clone(), s.labels["route"].clone()))
        .collect()
}

#[tokio::test]
async fn metrics_after_real_traffic_show_what_happened() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, _js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    let _agent = TestAgent::start(&nats.url(), "pc-m", &[]).await;
    backend.wait_for_agents(1).await;

    // An execution with one target, and its result.
    let manifest = "id: hello\nversion: \"1.0\"\ndescription: test job\nexecute:\n  shell: sh\n  script: 'echo hi'\n  timeout: 60s\ntarget:\n  pcs: [pc-m]\n";
    let created = post_json(&base, "/api/jobs", &json!({ "manifest": manifest })).await;
    assert!(created.status == 201 || created.status == 200, "{}", created.raw);
    let fired = post_json(&base, "/api/exec/hello", &json!({ "pcs": ["pc-m"] })).await;
    assert_eq!(fired.status, 201, "{}", fired.raw);
    let exec = fired.body["exec_id"].as_str().expect("exec id").to_owned();
    eventually("the result stored", PATIENCE, || async {
        let (_, rows) = backend.get(&format!("/api/results?exec_id={exec}")).await;
        (rows["items"].as_array()?.len() == 1).then_some(())
    })
    .await;

    // API calls: three of one route (which the waits above called too), two of a route with an id in it.
    let agents_route = [("method", "GET"), ("route", "/api/agents")];
    let before =
        value(&scrape(&base).await, "kanade_http_request_duration_seconds_count", &agents_route).unwrap_or(0.0);
    for _ in 0..3 {
        assert_eq!(get(&base, "/api/agents").await.status, 200);
    }
    assert_eq!(get(&base, "/api/agents/pc-m").await.status, 200);
    assert_eq!(get(&base, "/api/agents/pc-nobody").await.status, 404);
    let _live = SseStream::open(&base, "/api/events").await;

    let samples = eventually("every projector caught up and the agent's start stored", PATIENCE, || async {
        let samples = scrape(&base).await;
        let caught_up = kanade_backend::metrics::PROJECTORS.iter().all(|(stream, consumer)| {
            value(&samples, "kanade_projector_pending", &[("stream", stream), ("consumer", consumer)]) == Some(0.0)
        });
        let obs = [("stream", "OBS"), ("consumer", "backend-obs")];
        let started = value(&samples, "kanade_projector_batch_size_count", &obs).unwrap_or(0.0) >= 1.0;
        (caught_up && started).then_some(samples)
    })
    .await;
    assert_eq!(value(&samples, "kanade_agents", &[("state", "online")]), Some(1.0));
    assert_eq!(value(&samples, "kanade_agents", &[("state", "offline")]), Some(0.0));
    assert_eq!(value(&samples, "kanade_agents", &[("state", "stale")]), Some(0.0));
    let settled_or_running = value(&samples, "kanade_executions", &[("state", "running")]);
    assert_eq!(settled_or_running, Some(1.0), "{samples:#?}");
    for state in ["pending_approval", "rejected", "starting", "rolling_out", "halted", "superseded"] {
        assert_eq!(value(&samples, "kanade_executions", &[("state", state)]), Some(0.0), "{state}");
    }
    let results = [("stream", "RESULTS"), ("consumer", "backend-results")];
    let results_batches = value(&samples, "kanade_projector_batch_size_count", &results);
    assert!(results_batches >= Some(1.0), "{results_batches:?}");
    let results_sum = value(&samples, "kanade_projector_batch_size_sum", &results).unwrap_or(0.0);
    assert!(results_sum >= 1.0, "at least the one result went through a batch");
    let count = |route: &str| {
        value(&samples, "kanade_http_request_duration_seconds_count", &[("method", "GET"), ("route", route)])
    };
    assert_eq!(count("/api/agents"), Some(before + 3.0));
    assert_eq!(count("/api/agents/{pc_id}"), Some(2.0), "both ids under one route template");
    let inf = value(
        &samples,
        "kanade_http_request_duration_seconds_bucket",
        &[("method", "GET"), ("route", "/api/agents"), ("le", "+Inf")],
    );
    assert_eq!(inf, Some(before + 3.0), "every request falls in the +Inf bucket");
    assert_eq!(value(&samples, "kanade_sse_streams_open", &[]), Some(1.0));
    assert_eq!(value(&samples, "kanade_leader", &[]), Some(1.0), "a lone backend leads");
    backend.stop().await;
}

#[tokio::test]
async fn requests_to_no_route_add_no_label_value() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, _js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    let bearer = format!("Bearer {TEST_TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(get(&base, "/api/agents").await.status, 200);
    let before = route_labels(&scrape(&base).await);
    assert_eq!(before, BTreeSet::from([("GET".to_owned(), "/api/agents".to_owned())]));

    for n in 0..40 {
        let hostile: Vec<Reply> = vec![
            get(&base, &format!("/api/no-such-thing-{n}")).await,
            get(&base, &format!("/api/agents/pc-{n}/no-such-thing")).await,
            get(&base, &format!("/not-the-api-{n}")).await,
            request(&base, Method::from_bytes(format!("BREW{n}").as_bytes()).unwrap(), "/api/agents", &auth, None)
                .await,
            request(&base, Method::DELETE, "/api/agents", &auth, None).await,
        ];
        assert!(hostile.iter().all(|r| r.status != 200 || r.raw.contains("<")), "none of these is an API answer");
    }
    let after = route_labels(&scrape(&base).await);
    let new: Vec<_> = after.difference(&before).collect();
    // At most the two method labels a refused method on a real route can take; no path or method invented.
    for (method, route) in &new {
        assert!(["other", "DELETE"].contains(&method.as_str()), "method label `{method}`");
        assert_eq!(route, "/api/agents", "route label `{route}`");
    }
    assert!(after.len() <= 3, "{after:?}");
    backend.stop().await;
}

#[tokio::test]
async fn metrics_need_the_api_token() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, _js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    let none = request(&base, Method::GET, "/metrics", &[], None).await;
    assert_error(&none, 401, "unauthorized", "no token");
    let wrong = request(&base, Method::GET, "/metrics", &[("authorization", "Bearer not-the-token")], None).await;
    assert_error(&wrong, 401, "unauthorized", "a wrong token");
    let operator = kanade_testkit::operator_token("alice");
    let theirs =
        request(&base, Method::GET, "/metrics", &[("authorization", &format!("Bearer {operator}"))], None).await;
    assert_eq!(theirs.status, 200, "an operator's token will do: {}", theirs.raw);
    // What a scraper might send along changes nothing.
    let odd = request(
        &base,
        Method::GET,
        "/metrics?format=protobuf&x=1",
        &[("authorization", &format!("Bearer {TEST_TOKEN}"))],
        None,
    )
    .await;
    assert_eq!(odd.status, 200);
    parse(&odd.raw);
    backend.stop().await;
}
