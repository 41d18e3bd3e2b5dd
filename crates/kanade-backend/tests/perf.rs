//! Live performance and its history through the backend, over a real nats-server and a real agent sampling this
//! machine: browsers watching one PC share one lease; the lease goes with the last browser; a broker restart
//! resumes the stream without a new request; malformed samples are counted and dropped; watches are bounded; the
//! rollups are projected (hostile ones bounded) and read back as points, as JSON and CSV, on SQLite and PostgreSQL;
//! and the agents list sorts by the heartbeats' host figures.

use std::time::Duration;

use kanade_shared::perf::{LeaseReply, LeaseRequest};
use kanade_shared::{PcId, subject};
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::json;

mod support;

use support::http::{Knobbed, SseStream, assert_error, get};

const PATIENCE: Duration = Duration::from_secs(30);

fn agent_config(url: &str, pc: &str, dir: &std::path::Path, rollups: Duration) -> kanade_shared::config::AgentConfig {
    let mut config = kanade_testkit::agent_config(url, pc, &[], dir);
    config.perf.interval = Duration::from_millis(300);
    config.perf.rollup_interval = rollups;
    config
}

/// How many viewers hold a lease on `pc`, as the agent counts them (a probe's own zero lease counts none).
async fn viewers(client: &async_nats::Client, pc: &str) -> u32 {
    let probe = LeaseRequest { viewer: "probe".into(), lease_ms: 0, history: false };
    let body = serde_json::to_vec(&probe).unwrap();
    let reply = client.request(subject::perf_lease(&PcId::new(pc).unwrap()), body.into()).await.expect("answered");
    serde_json::from_slice::<LeaseReply>(&reply.payload).expect("a lease reply").viewers
}

/// The `at` of the next host sample on `stream`.
async fn next_host_at(stream: &mut SseStream) -> String {
    let event = stream.until(PATIENCE, "a host sample", |e| e.event == "host").await;
    event.json()["at"].as_str().expect("at").to_owned()
}

async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(kanade_testkit::TEST_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("`{name}` not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_share_one_lease_that_ends_with_the_last_and_survives_a_broker_restart() {
    init_logging();
    let mut nats = NatsServer::start_durable();
    let (client, _js) = connect(&nats.url()).await;
    let backend = Knobbed::start(&nats.url(), |bound| bound.with_perf_watch_limit(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let _agent = TestAgent::start_with(agent_config(&nats.url(), "live-pc", dir.path(), Duration::ZERO), dir).await;
    let other_dir = tempfile::tempdir().unwrap();
    let _other =
        TestAgent::start_with(agent_config(&nats.url(), "other-pc", other_dir.path(), Duration::ZERO), other_dir).await;
    eventually("both agents known", PATIENCE, || async {
        let reply = get(&backend.url(), "/api/agents").await;
        (reply.body["items"].as_array().map_or(0, Vec::len) == 2).then_some(())
    })
    .await;

    // The first browser: waiting, then the agent's kept history (empty: nobody watched) and live samples.
    let mut first = SseStream::open(&backend.url(), "/api/agents/live-pc/perf/live").await;
    let opened = first.next(PATIENCE).await.expect("a first event");
    assert_eq!((opened.event.as_str(), opened.json()["state"].as_str()), ("state", Some("waiting")));
    let live = first.until(PATIENCE, "live", |e| e.event == "state" && e.json()["state"] == "live").await;
    assert_eq!(live.json()["interval_ms"], 300);
    let (a, b) = (next_host_at(&mut first).await, next_host_at(&mut first).await);
    assert!(b > a, "the latest point moves: {a} then {b}");
    let procs = first.until(PATIENCE, "processes", |e| e.event == "proc").await.json();
    assert!(!procs["processes"].as_array().unwrap().is_empty());

    // A second browser shares it: history drawn at once, and still one viewer at the agent.
    let mut second = SseStream::open(&backend.url(), "/api/agents/live-pc/perf/live").await;
    let history = second.until(PATIENCE, "history", |e| e.event == "history").await.json();
    assert!(!history["samples"].as_array().unwrap().is_empty(), "the watch's kept samples: {history}");
    next_host_at(&mut second).await;
    assert_eq!(viewers(&client, "live-pc").await, 1, "one lease for two browsers");
    assert_eq!(metric(&backend.url(), "kanade_perf_watches").await, 1.0);

    // Watches are bounded: another PC is refused while this one is watched; an unknown PC is a 404.
    let refused = get(&backend.url(), "/api/agents/other-pc/perf/live").await;
    assert_error(&refused, 503, "too_many_watches", "a second watched PC over the limit of one");
    assert_error(&get(&backend.url(), "/api/agents/nobody/perf/live").await, 404, "agent_not_found", "unknown pc");

    // Malformed samples on the PC's subjects are counted and dropped; the stream goes on.
    for garbage in [&b"not json"[..], br#"{"pc_id":"other-pc","cpu_percent":5}"#, br#"{"pc_id":"live-pc","cores":"x"}"#]
    {
        client.publish(subject::perf_host(&PcId::new("live-pc").unwrap()), garbage.to_vec().into()).await.unwrap();
    }
    client.flush().await.unwrap();
    eventually("three malformed samples counted", PATIENCE, || async {
        (metric(&backend.url(), "kanade_perf_malformed_samples").await >= 3.0).then_some(())
    })
    .await;
    next_host_at(&mut second).await;

    // The broker restarts: both streams stay open and live samples come again, with no new request.
    drop(first);
    nats.restart();
    let before = next_host_at(&mut second).await;
    let after = next_host_at(&mut second).await;
    assert!(after > before, "samples after the restart: {before} then {after}");

    // The last browser goes: the backend gives the lease up (at once, not after 30 s).
    drop(second);
    eventually("the lease given up", Duration::from_secs(10), || async {
        (viewers(&client, "live-pc").await == 0).then_some(())
    })
    .await;
    eventually("no PC watched", Duration::from_secs(10), || async {
        (metric(&backend.url(), "kanade_perf_watches").await == 0.0).then_some(())
    })
    .await;
    // And the slot is free for another PC.
    let mut other = SseStream::open(&backend.url(), "/api/agents/other-pc/perf/live").await;
    next_host_at(&mut other).await;
}

async fn history_and_sorting(backend: &TestBackend, nats_url: &str) {
    let (_client, js) = connect(nats_url).await;
    let dir = tempfile::tempdir().unwrap();
    let _agent =
        TestAgent::start_with(agent_config(nats_url, "hist-pc", dir.path(), Duration::from_secs(10)), dir).await;
    let _quiet = TestAgent::start(nats_url, "quiet-pc", &[]).await;
    backend.wait_for_agents(2).await;

    // A hostile rollup from an impostor, and a bounded one of this PC, published straight to PERF.
    let hostile = json!({
        "pc_id": "hist-pc", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:01:00Z", "samples": 12,
        "cpu_percent": {"avg": 1e300, "max": -5}, "mem_used_bytes": {"avg": 5, "max": 10}, "mem_total_bytes": 100,
        "top_cpu": (0..50).map(|n| json!({"pid": n, "name": format!("p\u{0}{}", "x".repeat(5000)), "cpu_percent": 1e9})).collect::<Vec<_>>(),
    });
    let wrong_subject = json!({"pc_id": "quiet-pc", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:01:00Z"});
    let subject = subject::perf_rollup(&PcId::new("hist-pc").unwrap());
    for body in [hostile, wrong_subject, json!("garbage")] {
        js.publish(subject.clone(), serde_json::to_vec(&body).unwrap().into()).await.unwrap().await.unwrap();
    }
    let long_ago = "/api/agents/hist-pc/perf?since=2025-12-31T23:00:00Z&until=2026-01-01T01:00:00Z&step=1h";
    let stored = eventually("the hostile rollup stored, bounded", PATIENCE, || async {
        let (_, body) = backend.get(long_ago).await;
        body["points"].as_array().filter(|p| !p.is_empty()).cloned()
    })
    .await;
    assert_eq!(stored.len(), 1, "the impostor's rollup was not stored: {stored:?}");
    let refused = r#"kanade_projector_malformed_total{stream="PERF",consumer="backend-perf"}"#;
    eventually("the impostor's and the garbage rollup counted", PATIENCE, || async {
        (metric(&backend.url(), refused).await >= 2.0).then_some(())
    })
    .await;
    assert_eq!(stored[0]["cpu_percent"], json!({"avg": 100.0, "max": 100.0}));
    let top = stored[0]["top_cpu"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    assert!(top[0]["name"].as_str().unwrap().len() <= 128 && !top[0]["name"].as_str().unwrap().contains('\0'));

    // The agent's own rollups, every 10 s: points of one hour in 10-second steps, JSON and CSV.
    let points = eventually("two rollups projected", PATIENCE, || async {
        let (_, body) = backend.get("/api/agents/hist-pc/perf?since=10m&step=10s").await;
        body["points"].as_array().filter(|p| p.len() >= 2).cloned()
    })
    .await;
    let latest = points.last().unwrap();
    assert_eq!(latest["rollups"], 1);
    assert!(latest["mem_total_bytes"].as_u64().unwrap() > 0 && !latest["top_memory"].as_array().unwrap().is_empty());
    let (status, history) = backend.get("/api/agents/hist-pc/perf").await;
    assert_eq!((status, history["step_secs"].as_u64()), (200, Some(60)), "an hour in minutes by default");
    let csv = reqwest::Client::new()
        .get(format!("{}/api/agents/hist-pc/perf?since=10m&step=10s&format=csv", backend.url()))
        .bearer_auth(kanade_testkit::TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("at,rollups,cpu_avg,cpu_max,"), "{csv}");
    assert!(csv.lines().count() >= 3, "a header and a row per point: {csv}");

    // Bad queries and unknown agents.
    for (query, want) in [
        ("since=yesterday", "since `yesterday`"),
        ("since=1h&until=2h", "is not before until"),
        ("since=30d&step=1s", "ask for a longer step"),
        ("format=xml", "format `xml`"),
        ("bogus=1", "bogus"),
    ] {
        let reply = get(&backend.url(), &format!("/api/agents/hist-pc/perf?{query}")).await;
        assert_error(&reply, 400, "invalid_query", query);
        assert!(reply.raw.contains(want), "{query}: {}", reply.raw);
    }
    assert_error(&get(&backend.url(), "/api/agents/nobody/perf").await, 404, "agent_not_found", "unknown pc");

    // The agents list sorts by the heartbeats' host figures: the PC that samples first, the quiet one last.
    let sorted = eventually("host figures in the agents list", PATIENCE, || async {
        let (_, body) = backend.get("/api/agents?sort=cpu").await;
        let items = body["items"].as_array()?.clone();
        items[0]["host_cpu_percent"].is_number().then_some(items)
    })
    .await;
    let order: Vec<&str> = sorted.iter().map(|a| a["pc_id"].as_str().unwrap()).collect();
    assert_eq!(order, ["hist-pc", "quiet-pc"]);
    assert!(sorted[1].get("host_cpu_percent").is_none());
    let (_, page) = backend.get("/api/agents?sort=memory&limit=1").await;
    assert_eq!(page["items"][0]["pc_id"], "hist-pc");
    let next = page["next"].as_str().expect("a second page").to_owned();
    let (_, rest) = backend.get(&format!("/api/agents?sort=memory&limit=1&cursor={next}")).await;
    assert_eq!(rest["items"][0]["pc_id"], "quiet-pc");
    let (status, refused) = backend.get(&format!("/api/agents?sort=cpu&limit=1&cursor={next}")).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_cursor")), "another order's cursor");
    let (status, refused) = backend.get("/api/agents?sort=disk").await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_query")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_are_points_of_history_on_sqlite() {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    history_and_sorting(&backend, &nats.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_are_points_of_history_on_postgres() {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let database = support::postgres::TestDatabase::create().await;
    let backend = TestBackend::start_in(&nats.url(), tempfile::tempdir().unwrap(), Some(database.url.clone())).await;
    history_and_sorting(&backend, &nats.url()).await;
}
