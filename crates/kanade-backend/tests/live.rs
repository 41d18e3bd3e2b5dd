//! Live streams for the dashboard over a real nats-server: change notes reach the clients of every backend replica,
//! a stream outlives the request timeout and ends when the backend stops, streams are bounded, and a running job's
//! output is relayed as it is printed.

use std::time::Duration;

use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, init_logging};
use reqwest::Method;
use serde_json::{Value, json};

mod support;

use support::http::{Knobbed, SseStream, assert_error, get, post_json, request};

const PATIENCE: Duration = Duration::from_secs(20);

fn manifest(id: &str, script: &str) -> String {
    format!(
        "id: {id}\nversion: \"1.0\"\ndescription: test\nexecute:\n  shell: sh\n  script: '{script}'\n  timeout: 30s\ntarget:\n  all: true\n"
    )
}

/// Whether `change` is about `id` in `topic` (naming no ids means "all of it").
fn names(change: &Value, topic: &str, id: &str) -> bool {
    change["topic"] == topic
        && change["ids"].as_array().is_some_and(|ids| ids.is_empty() || ids.iter().any(|i| i == id))
}

/// Waits on `stream` for a change in `topic` that names `id`.
async fn change_naming(stream: &mut SseStream, topic: &str, id: &str) -> Value {
    changes_naming(stream, &[(topic, id)]).await.remove(0)
}

/// Waits on `stream` until each `(topic, id)` was named by some change, in whatever order they come (one flush
/// sends its topics in name order, not in the order they happened); returns the change that named each.
async fn changes_naming(stream: &mut SseStream, wanted: &[(&str, &str)]) -> Vec<Value> {
    let mut found: Vec<Option<Value>> = vec![None; wanted.len()];
    let what = format!("changes naming {wanted:?}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = stream.until(left, &what, |event| event.event == "change").await;
        let change = event.json();
        for (slot, (topic, id)) in found.iter_mut().zip(wanted) {
            if slot.is_none() && names(&change, topic, id) {
                *slot = Some(change.clone());
            }
        }
    }
    found.into_iter().flatten().collect()
}

#[tokio::test]
async fn changes_made_through_one_replica_reach_the_clients_of_another() {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let a = TestBackend::start(&nats.url()).await;
    let b = TestBackend::start(&nats.url()).await;
    let mut events = SseStream::open(&b.url(), "/api/events").await;

    let created = post_json(&a.url(), "/api/jobs", &json!({ "manifest": manifest("live-job", "echo hi") })).await;
    assert_eq!(created.status, 201, "{}", created.raw);
    let changes = changes_naming(&mut events, &[("jobs", "live-job"), ("audit", "")]).await;
    assert_eq!(changes[0], json!({ "topic": "jobs", "ids": ["live-job"] }), "exactly the shape clients get");

    let _agent = TestAgent::start(&nats.url(), "pc-live", &["lab"]).await;
    change_naming(&mut events, "agents", "pc-live").await;
    a.wait_for_agents(1).await;

    let fired = post_json(&a.url(), "/api/exec/live-job", &json!({ "pcs": ["pc-live"] })).await;
    assert_eq!(fired.status, 201, "{}", fired.raw);
    let exec = fired.body["exec_id"].as_str().unwrap().to_owned();
    changes_naming(&mut events, &[("executions", &exec), ("results", &exec)]).await;

    let revoked = post_json(&b.url(), "/api/jobs/live-job/revoke", &json!({})).await;
    assert_eq!(revoked.status, 200, "{}", revoked.raw);
    change_naming(&mut events, "jobs", "live-job").await;
}

#[tokio::test]
async fn a_stream_outlives_the_request_timeout_and_ends_when_the_backend_stops() {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let backend = Knobbed::start(&nats.url(), |bound| bound.with_request_timeout(Duration::from_millis(300))).await;
    let base = backend.url();
    let mut events = SseStream::open(&base, "/api/events").await;
    // Well past the timeout, the stream still carries news.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let created = post_json(&base, "/api/jobs", &json!({ "manifest": manifest("after-timeout", "true") })).await;
    assert_eq!(created.status, 201, "{}", created.raw);
    change_naming(&mut events, "jobs", "after-timeout").await;

    backend.stop_within(Duration::from_secs(10)).await;
    let rest = tokio::time::timeout(PATIENCE, async { while events.next(PATIENCE).await.is_some() {} }).await;
    assert!(rest.is_ok(), "the stream ended with the backend");
}

#[tokio::test]
async fn streams_are_bounded_and_a_closed_one_frees_its_slot() {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let backend = Knobbed::start(&nats.url(), |bound| bound.with_stream_limit(2)).await;
    let base = backend.url();
    let first = SseStream::open(&base, "/api/events").await;
    let _second = SseStream::open(&base, "/api/executions/e-1/output?pc_id=pc-a").await;
    assert_error(&get(&base, "/api/events").await, 503, "too_many_streams", "a third stream");
    assert_error(&get(&base, "/api/executions/e-1/output?pc_id=pc-a").await, 503, "too_many_streams", "a third tail");
    // Other requests are not streams and go on.
    assert_eq!(get(&base, "/api/agents").await.status, 200);

    drop(first);
    kanade_testkit::eventually("the closed stream's slot is free again", PATIENCE, || async {
        let bearer = format!("Bearer {TEST_TOKEN}");
        let headers = [("authorization", bearer.as_str())];
        let reply = request(&base, Method::GET, "/api/events", &headers, None);
        // A 200 stream never ends on its own: give up waiting for its body once the status is known.
        match tokio::time::timeout(Duration::from_millis(500), reply).await {
            Err(_) => Some(()),
            Ok(reply) => {
                assert_eq!(reply.status, 503, "{}", reply.raw);
                None
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_running_jobs_output_is_relayed_chunk_by_chunk() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();

    // Chunks as an agent publishes them, and a malformed one in between that is skipped.
    let mut tail = SseStream::open(&base, "/api/executions/e-out/output?pc_id=pc-a").await;
    let chunk = |seq: u64, data: &str| json!({ "seq": seq, "stream": "stdout", "data": data });
    let first = tokio::time::timeout(PATIENCE, async {
        loop {
            // The subscription reaches the broker a moment after the stream opens: repeat until it arrives.
            let body = serde_json::to_vec(&chunk(0, "hello\n")).unwrap();
            client.publish("output.pc-a.e-out", body.into()).await.unwrap();
            if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(300), tail.next(PATIENCE)).await {
                break event;
            }
        }
    })
    .await
    .expect("the first chunk");
    assert_eq!(first.event, "chunk");
    assert_eq!(first.json(), chunk(0, "hello\n"));
    client.publish("output.pc-a.e-out", "not a chunk".into()).await.unwrap();
    client.publish("output.pc-b.e-out", serde_json::to_vec(&chunk(5, "other pc\n")).unwrap().into()).await.unwrap();
    client.publish("output.pc-a.e-out", serde_json::to_vec(&chunk(1, "world\n")).unwrap().into()).await.unwrap();
    let next = tail.until(PATIENCE, "the second chunk", |e| e.json()["seq"] != 0).await;
    assert_eq!(next.json(), chunk(1, "world\n"), "the malformed chunk and the other pc's are not relayed");

    // A real agent's run, followed from before it was sent: the job waits for approval, which comes (from another
    // operator) only once the tail is open, so nothing the script prints can come before the tail.
    let _agent = TestAgent::start(&nats.url(), "pc-a", &["lab"]).await;
    backend.wait_for_agents(1).await;
    // It runs past the agent's ANNOUNCE_AFTER (1 s): a run done sooner sends only its result, no live output.
    let guarded = format!("{}require_approval: true\n", manifest("talk", "echo from-agent; sleep 2"));
    let created = post_json(&base, "/api/jobs", &json!({ "manifest": guarded })).await;
    assert_eq!(created.status, 201, "{}", created.raw);
    let fired = post_json(&base, "/api/exec/talk", &json!({ "pcs": ["pc-a"] })).await;
    let exec = fired.body["exec_id"].as_str().unwrap().to_owned();
    let mut live = SseStream::open(&base, &format!("/api/executions/{exec}/output?pc_id=pc-a")).await;
    let alice = format!("Bearer {}", kanade_testkit::operator_token("alice"));
    let approved =
        request(&base, Method::POST, &format!("/api/executions/{exec}/approve"), &[("authorization", &alice)], None)
            .await;
    assert_eq!(approved.status, 200, "{}", approved.raw);
    let said = live.until(PATIENCE, "the agent's output", |e| e.data.contains("from-agent")).await;
    assert_eq!(said.event, "chunk");
    assert_eq!(said.json()["stream"], "stdout");

    for (path, status, code) in [
        ("/api/executions/e-out/output", 400, "invalid_query"),
        ("/api/executions/e-out/output?pc_id=", 400, "invalid_query"),
        ("/api/executions/e-out/output?pc_id=NOT%20VALID", 400, "invalid_query"),
        ("/api/executions/e-out/output?pc_id=pc-a&follow=1", 400, "invalid_query"),
        ("/api/executions/E.OUT/output?pc_id=pc-a", 400, "invalid_exec_id"),
    ] {
        assert_error(&get(&base, path).await, status, code, path);
    }
    let anonymous = request(&base, Method::GET, "/api/executions/e-out/output?pc_id=pc-a", &[], None).await;
    assert_error(&anonymous, 401, "unauthorized", "no token");
    let events_anonymous = request(&base, Method::GET, "/api/events", &[], None).await;
    assert_error(&events_anonymous, 401, "unauthorized", "no token for /api/events");
}
