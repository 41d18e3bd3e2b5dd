//! The agents' timelines end to end: a real agent's start and its outbox filling and draining reach
//! `GET /api/agents/{pc}/events` through `OBS` and SQL, on SQLite and on PostgreSQL; hostile events are refused or
//! capped without stopping the projector; a redelivered or re-published event is stored once; pages and the
//! fleet-wide query by kind hold together; hostile queries get a clear error.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, publish::PublishAck};
use chrono::{DateTime, SecondsFormat, Utc};
use kanade_shared::PcId;
use kanade_shared::resources::{CONSUMER_OBS_PROJECTOR, STREAM_OBS, STREAM_RESULTS};
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{ObsEvent, ObsKind};
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, eventually, fleet, init_logging};
use serde_json::{Value, json};

mod support;

use support::http::{SseStream, assert_error, get};
use support::postgres;

const PATIENCE: Duration = Duration::from_secs(30);

fn pc(id: &str) -> PcId {
    PcId::new(id).expect("test pc id")
}

/// One page of `path`, which must succeed: its entries and its `next` cursor.
async fn page(backend: &TestBackend, path: &str) -> (Vec<Value>, Option<String>) {
    let (status, body) = backend.get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    let items = body["items"].as_array().unwrap_or_else(|| panic!("{path}: no items in {body}")).clone();
    (items, body["next"].as_str().map(str::to_owned))
}

fn millis(time: &Value) -> i64 {
    let text = time.as_str().unwrap_or_else(|| panic!("not a time: {time}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|err| panic!("`{text}`: {err}")).timestamp_millis()
}

fn kinds(items: &[Value]) -> Vec<String> {
    items.iter().map(|item| item["kind"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Publishes raw bytes on `subject` into `OBS` under `msg_id` and returns the broker's ack.
async fn publish_obs(js: &jetstream::Context, subject: &str, body: Vec<u8>, msg_id: &str) -> PublishAck {
    js.send_publish(subject.to_owned(), PublishMessage::build().payload(body.into()).message_id(msg_id))
        .await
        .expect("publish into OBS")
        .await
        .expect("OBS stored the message")
}

/// A well-formed event, as an agent would send it, at `at`.
fn event(pc_id: &str, kind: &str, details: Value, at: DateTime<Utc>) -> ObsEvent {
    let mut event = ObsEvent::new(pc(pc_id), kind, details);
    event.at = at;
    event
}

async fn publish_event(js: &jetstream::Context, event: &ObsEvent) {
    let body = serde_json::to_vec(event).expect("encode event");
    publish_obs(js, &subject::obs(&event.pc_id), body, &event.event_id).await;
}

/// Waits until the timeline projector has acknowledged (or terminated) every message in `OBS`.
async fn wait_until_projected(js: &jetstream::Context) {
    eventually("the timeline projector went through the whole OBS stream", PATIENCE, || {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream(STREAM_OBS).await.ok()?;
            let last = stream.info().await.ok()?.state.last_sequence;
            let consumer = stream.consumer_info(CONSUMER_OBS_PROJECTOR).await.ok()?;
            let done = consumer.ack_floor.stream_sequence >= last
                && consumer.num_ack_pending == 0
                && consumer.num_pending == 0;
            done.then_some(())
        }
    })
    .await;
}

async fn agent_start_scenario(database_url: Option<String>) {
    init_logging();
    let nats = NatsServer::start();
    let (_client, _js) = connect(&nats.url()).await;
    let backend = TestBackend::start_in(&nats.url(), tempfile::tempdir().expect("temp dir"), database_url).await;
    let path = "/api/agents/pc-start/events";

    let agent = TestAgent::start(&nats.url(), "pc-start", &[]).await;
    let (items, _) = eventually("the agent's start on its timeline", PATIENCE, || async {
        let (items, next) = page(&backend, path).await;
        (!items.is_empty()).then_some((items, next))
    })
    .await;
    assert_eq!(kinds(&items), ["agent_started"], "{items:?}");
    assert_eq!(items[0]["pc_id"], "pc-start");
    assert_eq!(items[0]["details"], json!({ "version": kanade_agent::BUILD_VERSION, "after_update": false }));
    let at = DateTime::parse_from_rfc3339(items[0]["at"].as_str().expect("at")).expect("RFC 3339");
    let recorded = DateTime::parse_from_rfc3339(items[0]["recorded_at"].as_str().expect("recorded_at")).expect("time");
    assert!(at <= recorded, "{items:?}");

    // A restart is a second start, newest first; heartbeats in between added nothing.
    let data_dir = agent.stop().await;
    let config = kanade_testkit::agent_config(&nats.url(), "pc-start", &[], data_dir.path());
    let again = TestAgent::start_with(config, data_dir).await;
    let items = eventually("the second start on the timeline", PATIENCE, || async {
        let (items, _) = page(&backend, path).await;
        (items.len() == 2).then_some(items)
    })
    .await;
    assert_eq!(kinds(&items), ["agent_started", "agent_started"]);
    assert!(millis(&items[0]["at"]) >= millis(&items[1]["at"]), "newest first: {items:?}");
    assert_ne!(items[0]["event_id"], items[1]["event_id"]);

    let (fleet, _) = page(&backend, "/api/agent-events?kind=agent_started&since=1h&distinct=pc").await;
    assert_eq!(fleet.len(), 1, "one entry per agent: {fleet:?}");
    assert_eq!(fleet[0]["event_id"], items[0]["event_id"], "the agent's newest");
    again.stop().await;
    backend.stop().await;
}

#[tokio::test]
async fn an_agent_start_is_on_its_timeline_on_sqlite() {
    agent_start_scenario(None).await;
}

#[tokio::test]
async fn an_agent_start_is_on_its_timeline_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    agent_start_scenario(Some(database.url.clone())).await;
}

async fn hostile_events_scenario(database_url: Option<String>) {
    init_logging();
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start_in(&nats.url(), tempfile::tempdir().expect("temp dir"), database_url).await;
    let now = Utc::now();
    let on = subject::obs(&pc("pc-h"));
    let an_hour_ago = now - chrono::Duration::hours(1);

    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\xff\xfe\x00 not json".to_vec()),
        ("truncated", br#"{"pc_id":"pc-h","event":"agent_st"#.to_vec()),
        (
            "another agent's event",
            serde_json::to_vec(&event("pc-other", "agent_started", json!({}), an_hour_ago)).unwrap(),
        ),
        (
            "a kind that is no name",
            serde_json::to_vec(&event("pc-h", "DROP TABLE agents", json!({}), an_hour_ago)).unwrap(),
        ),
        ("a huge kind", serde_json::to_vec(&event("pc-h", &"k".repeat(100_000), json!({}), an_hour_ago)).unwrap()),
        ("an invalid pc id", br#"{"pc_id":"PC H","event":"agent_started","at":"2026-01-01T00:00:00Z"}"#.to_vec()),
    ];
    for (what, body) in &refused {
        publish_obs(&js, &on, body.clone(), &format!("refused-{what}")).await;
    }

    let huge = event("pc-h", "agent_update", json!({ "blob": "x".repeat(200_000) }), an_hour_ago);
    let future =
        event("pc-h", "agent_update_refused", json!({ "to": "9.9.9" }), now + chrono::Duration::days(365 * 70));
    let unknown = event("pc-h", "agent_teleported", json!({ "to": "mars" }), an_hour_ago);
    let twice = event("pc-h", "outbox_full", json!({ "bytes": 1 }), an_hour_ago);
    for copy in ["first", "second"] {
        // Two copies the broker does not de-duplicate (another msg id): SQL must.
        let ack =
            publish_obs(&js, &on, serde_json::to_vec(&twice).unwrap(), &format!("{}-{copy}", twice.event_id)).await;
        assert!(!ack.duplicate);
    }
    let older_agent =
        br#"{"pc_id":"pc-h","event":"agent_update","details":{"from":"0.1","to":"0.2"},"at":"2026-11-30T00:00:00Z"}"#;
    publish_obs(&js, &on, older_agent.to_vec(), "older-agent").await;
    for kept in [&huge, &future, &unknown] {
        publish_event(&js, kept).await;
    }
    let last = event("pc-h", "agent_started", json!({ "version": "1" }), an_hour_ago);
    publish_event(&js, &last).await;
    wait_until_projected(&js).await;

    let (items, next) = page(&backend, "/api/agents/pc-h/events?limit=500").await;
    assert_eq!(next, None);
    let mut stored = kinds(&items);
    stored.sort();
    assert_eq!(
        stored,
        ["agent_started", "agent_teleported", "agent_update", "agent_update", "agent_update_refused", "outbox_full"],
        "{items:?}"
    );
    let by_id = |id: &str| items.iter().find(|i| i["event_id"] == id).unwrap_or_else(|| panic!("`{id}` in {items:?}"));
    assert_eq!(by_id(&huge.event_id)["details"]["truncated"], true, "huge details are capped");
    assert!(by_id(&huge.event_id)["details"]["bytes"].as_u64().unwrap() > 200_000);
    let future_row = by_id(&future.event_id);
    assert!(millis(&future_row["at"]) <= millis(&future_row["recorded_at"]), "no entry dated ahead: {future_row}");
    assert_eq!(by_id(&unknown.event_id)["details"], json!({ "to": "mars" }));
    let keyed_by_seq: Vec<_> = items.iter().filter(|i| i["event_id"].as_str().unwrap().starts_with("seq-")).collect();
    assert_eq!(keyed_by_seq.len(), 1, "the older agent's event, keyed by its stream sequence: {items:?}");
    assert_eq!(keyed_by_seq[0]["details"], json!({ "from": "0.1", "to": "0.2" }));
    let (other, _) = page(&backend, "/api/agents/pc-other/events").await;
    assert!(other.is_empty(), "an event on another agent's subject is not that agent's: {other:?}");

    // Everything refused stays in the stream for inspection.
    let mut stream = js.get_stream(STREAM_OBS).await.expect("OBS");
    assert_eq!(stream.info().await.expect("info").state.messages, 13);
    backend.stop().await;
}

#[tokio::test]
async fn hostile_timeline_events_are_refused_or_capped_and_the_projector_goes_on_on_sqlite() {
    hostile_events_scenario(None).await;
}

#[tokio::test]
async fn hostile_timeline_events_are_refused_or_capped_and_the_projector_goes_on_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    hostile_events_scenario(Some(database.url.clone())).await;
}

#[tokio::test]
async fn a_timeline_replayed_from_the_start_changes_nothing() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let at = Utc::now() - chrono::Duration::minutes(5);
    for n in 0..5 {
        publish_event(&js, &event("pc-r", "agent_started", json!({ "n": n }), at)).await;
    }
    publish_obs(
        &js,
        "obs.pc-r",
        br#"{"pc_id":"pc-r","event":"agent_update","at":"2026-11-30T00:00:00Z"}"#.to_vec(),
        "old",
    )
    .await;
    wait_until_projected(&js).await;
    let (before, _) = page(&backend, "/api/agents/pc-r/events").await;
    assert_eq!(before.len(), 6);

    // The consumer gone, the backend reads the whole stream again: every event lands on its row once more.
    let data_dir = backend.stop().await;
    js.get_stream(STREAM_OBS).await.expect("OBS").delete_consumer(CONSUMER_OBS_PROJECTOR).await.expect("delete");
    let backend = TestBackend::start_in(&nats.url(), data_dir, None).await;
    wait_until_projected(&js).await;
    let (after, _) = page(&backend, "/api/agents/pc-r/events").await;
    assert_eq!(after, before);
    backend.stop().await;
}

#[tokio::test]
async fn pages_and_the_fleet_query_by_kind_hold_together() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = Utc::now() - chrono::Duration::hours(2);
    let mut published = Vec::new();
    for n in 0..7 {
        // Two share a time, so the cursor must tell them apart by id.
        let at = base + chrono::Duration::seconds(if n == 4 { 3 } else { n });
        let e = event("pc-p", "agent_started", json!({ "n": n }), at);
        publish_event(&js, &e).await;
        published.push(e);
    }
    let week_and_a_day = Utc::now() - chrono::Duration::days(8);
    publish_event(&js, &event("pc-p", "agent_update_rolled_back", json!({}), week_and_a_day)).await;
    let q_old = event("pc-q", "agent_update_rolled_back", json!({ "from": "2" }), base);
    let q_new = event("pc-q", "agent_update_rolled_back", json!({ "from": "3" }), base + chrono::Duration::minutes(1));
    let r = event("pc-r", "agent_update_rolled_back", json!({ "from": "3" }), base + chrono::Duration::minutes(2));
    for e in [&q_old, &q_new, &r] {
        publish_event(&js, e).await;
    }
    wait_until_projected(&js).await;

    // Three pages of at most 3 from pc-p's 8 entries: each entry once, newest first throughout.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/api/agents/pc-p/events?limit=3".to_owned(),
            Some(c) => format!("/api/agents/pc-p/events?limit=3&cursor={c}"),
        };
        let (items, next) = page(&backend, &path).await;
        assert!(items.len() <= 3);
        pages += 1;
        seen.extend(items);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 8);
    let ids: HashSet<_> = seen.iter().map(|i| i["event_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 8, "no entry twice: {seen:?}");
    let order: Vec<(i64, String)> =
        seen.iter().map(|i| (millis(&i["at"]), i["event_id"].as_str().unwrap().to_owned())).collect();
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, sorted, "newest first, ties by id");

    // "Which agents rolled back this week": pc-p's is older than a week.
    let (rolled, _) = page(&backend, "/api/agent-events?kind=agent_update_rolled_back&since=7d").await;
    let ids: Vec<_> = rolled.iter().map(|i| i["event_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, [r.event_id.clone(), q_new.event_id.clone(), q_old.event_id.clone()]);
    let (distinct, next) = page(&backend, "/api/agent-events?kind=agent_update_rolled_back&since=7d&distinct=pc").await;
    let pcs: Vec<_> =
        distinct.iter().map(|i| (i["pc_id"].as_str().unwrap(), i["event_id"].as_str().unwrap())).collect();
    assert_eq!(pcs, [("pc-r", r.event_id.as_str()), ("pc-q", q_new.event_id.as_str())]);
    assert_eq!(next, None);
    // One agent per page, the cursor carrying on after the first.
    let (first, next) =
        page(&backend, "/api/agent-events?kind=agent_update_rolled_back&since=7d&distinct=pc&limit=1").await;
    assert_eq!(first[0]["pc_id"], "pc-r");
    let next = next.expect("a second page");
    let path = format!("/api/agent-events?kind=agent_update_rolled_back&since=7d&distinct=pc&limit=1&cursor={next}");
    let (second, next) = page(&backend, &path).await;
    assert_eq!((second[0]["pc_id"].as_str(), next), (Some("pc-q"), None));

    // A window: since is inclusive, until exclusive.
    let t = |d: DateTime<Utc>| d.to_rfc3339_opts(SecondsFormat::Millis, true).replace('+', "%2B");
    let path = format!(
        "/api/agents/pc-p/events?since={}&until={}",
        t(base + chrono::Duration::seconds(1)),
        t(base + chrono::Duration::seconds(3))
    );
    let (window, _) = page(&backend, &path).await;
    let ns: Vec<_> = window.iter().map(|i| i["details"]["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, [2, 1], "{window:?}");
    backend.stop().await;
}

#[tokio::test]
async fn hostile_timeline_queries_get_a_clear_error() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, _js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    let long_cursor = "A".repeat(10_000);
    let cases: Vec<(&str, String, &str)> = vec![
        ("a kind that is no name", "/api/agents/pc-1/events?kind=Agent%20Started".into(), "invalid_query"),
        ("a huge kind", format!("/api/agent-events?kind={}", "k".repeat(5_000)), "invalid_query"),
        ("a cursor never given out", "/api/agents/pc-1/events?cursor=bm9wZQ".into(), "invalid_query"),
        ("a huge cursor", format!("/api/agents/pc-1/events?cursor={long_cursor}"), "invalid_query"),
        ("limit 0", "/api/agents/pc-1/events?limit=0".into(), "invalid_query"),
        ("limit over the cap", "/api/agent-events?limit=501".into(), "invalid_query"),
        ("limit not a number", "/api/agent-events?limit=lots".into(), "invalid_query"),
        ("limit past u32", "/api/agent-events?limit=99999999999999".into(), "invalid_query"),
        ("since not a time", "/api/agent-events?since=last%20tuesday".into(), "invalid_query"),
        ("since after until", "/api/agent-events?since=1h&until=2d".into(), "invalid_query"),
        ("since beyond the calendar", "/api/agent-events?since=99999999999y".into(), "invalid_query"),
        ("distinct by something else", "/api/agent-events?distinct=kind".into(), "invalid_query"),
        ("distinct on one agent", "/api/agents/pc-1/events?distinct=pc".into(), "invalid_query"),
        ("an unknown parameter", "/api/agent-events?kinds=agent_started".into(), "invalid_query"),
        ("a pc id that is no id", "/api/agents/PC%20ONE/events".into(), "invalid_pc_id"),
    ];
    for (what, path, code) in &cases {
        let reply = get(&base, path).await;
        assert_error(&reply, 400, code, what);
    }
    // A well-formed query about an agent nobody heard of is an empty page.
    let (items, next) = page(&backend, "/api/agents/pc-nobody/events?kind=agent_teleported&since=7d").await;
    assert!(items.is_empty() && next.is_none());
    let unauthenticated = support::http::request(&base, reqwest::Method::GET, "/api/agent-events", &[], None).await;
    assert_error(&unauthenticated, 401, "unauthorized", "no token");
    backend.stop().await;
}

#[tokio::test]
async fn new_timeline_entries_are_announced_to_live_clients() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let mut events = SseStream::open(&backend.url(), "/api/events").await;
    publish_event(&js, &event("pc-live", "agent_started", json!({}), Utc::now())).await;
    let change = events
        .until(PATIENCE, "a timeline change for pc-live", |e| e.event == "change" && e.json()["topic"] == "timeline")
        .await;
    assert_eq!(change.json()["ids"], json!(["pc-live"]));
    backend.stop().await;
}

/// An agent whose results cannot be stored (the `RESULTS` stream is gone) fills its small outbox: the timeline says
/// so once, however many heartbeats go by, and says so again once the stream is back and the outbox drains.
#[tokio::test]
async fn the_outbox_filling_and_draining_is_on_the_timeline_once_each() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = kanade_testkit::agent_config(&nats.url(), "pc-full", &[], dir.path());
    config.outbox_max_bytes = 1_000;
    let agent = TestAgent::start_with(config, dir).await;
    js.delete_stream(STREAM_RESULTS).await.expect("delete RESULTS");

    let path = "/api/agents/pc-full/events";
    let target = Target::Pc(pc("pc-full"));
    // Each result carries ~300 bytes of output: a few are over the 1,000-byte cap.
    for _ in 0..5 {
        fleet::publish(&js, &target, &fleet::command("printf '%0300d' 0")).await;
    }
    eventually("the outbox full on the timeline", PATIENCE, || async {
        let (items, _) = page(&backend, path).await;
        kinds(&items).contains(&"outbox_full".to_owned()).then_some(())
    })
    .await;
    // Several heartbeats (one every 500 ms) go by with the outbox still full: still one entry.
    let uptime = |row: &Value| row["uptime_secs"].as_u64().unwrap_or_default();
    let (_, then) = backend.get("/api/agents/pc-full").await;
    eventually("heartbeats 3 s on that still say full", PATIENCE, || async {
        let (_, row) = backend.get("/api/agents/pc-full").await;
        (row["outbox_full"] == true && uptime(&row) >= uptime(&then) + 3).then_some(())
    })
    .await;
    let (items, _) = page(&backend, path).await;
    assert_eq!(kinds(&items).iter().filter(|k| *k == "outbox_full").count(), 1, "{items:?}");

    kanade_ops::jetstream::setup(&js, 1).await.expect("RESULTS back");
    // A new result wakes the outbox, which drains now that the stream is back.
    fleet::publish(&js, &target, &fleet::command("true")).await;
    let items = eventually("the outbox recovered on the timeline", Duration::from_secs(90), || async {
        let (items, _) = page(&backend, path).await;
        kinds(&items).contains(&ObsKind::OutboxRecovered.as_str().to_owned()).then_some(items)
    })
    .await;
    assert_eq!(kinds(&items)[..2], ["outbox_recovered", "outbox_full"], "{items:?}");
    assert_eq!(items[1]["details"]["pending"].as_u64().map(|n| n > 0), Some(true), "{items:?}");
    agent.stop().await;
    backend.stop().await;
}
