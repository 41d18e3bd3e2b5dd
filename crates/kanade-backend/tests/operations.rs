//! The operator actions the dashboard takes over HTTP, against real agents over a real nats-server: who am I, ping,
//! an agent's effective config, kill, revoke and unrevoke, the preview of a fire, and every target's state (pending,
//! running, done) — and what each answers to bad, hostile and oversized input.

use std::time::Duration;

use kanade_ops::agent_config::AgentConfigStore;
use kanade_shared::layered::{self, Scope};
use kanade_shared::{GroupName, PcId};
use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, init_logging};
use reqwest::Method;
use serde_json::json;

mod support;

use support::http::{Reply, assert_error, get, post_json, request};
use support::postgres;

const PATIENCE: Duration = Duration::from_secs(20);

fn manifest(id: &str, script: &str, extra: &str) -> String {
    format!(
        "id: {id}\nversion: \"1.0\"\ndescription: test job\nexecute:\n  shell: sh\n  script: '{script}'\n  timeout: 60s\n{extra}"
    )
}

async fn create_job(base: &str, manifest: &str) {
    let reply = post_json(base, "/api/jobs", &json!({ "manifest": manifest })).await;
    assert!(reply.status == 201 || reply.status == 200, "job create: {} {}", reply.status, reply.raw);
}

/// POST with the shared token and a raw body of any content type (or none).
async fn post_raw(base: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> Reply {
    let bearer = format!("Bearer {TEST_TOKEN}");
    request(base, Method::POST, path, &[("authorization", &bearer)], body).await
}

/// A body of a content type, and the status and code it must get.
type Refusal = ((&'static str, Vec<u8>), u16, &'static str);

/// The hostile bodies every action refuses, each with the code it gets.
async fn assert_refuses_bodies(base: &str, path: &str) {
    let cases: Vec<Refusal> = vec![
        (("application/json", br#"{"unexpected": 1}"#.to_vec()), 400, "invalid_body"),
        (("application/json", b"{not json".to_vec()), 400, "invalid_body"),
        (("text/plain", b"kill it".to_vec()), 415, "unsupported_media_type"),
        (("application/json", vec![b' '; 2 * 1024 * 1024]), 413, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let what = format!("{path} with {} bytes of {}", body.1.len(), body.0);
        assert_error(&post_raw(base, path, Some(body)).await, status, code, &what);
    }
}

#[tokio::test]
async fn session_says_who_is_calling_and_how_it_is_known() {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    let shared = format!("Bearer {TEST_TOKEN}");
    let claimed = request(
        &base,
        Method::GET,
        "/api/session",
        &[("authorization", &shared), ("x-kanade-operator", "Carol")],
        None,
    )
    .await;
    assert_eq!(claimed.status, 200, "{}", claimed.raw);
    assert_eq!(
        claimed.body,
        json!({
            "actor": "carol", "verified": false, "auth": "token", "version": env!("CARGO_PKG_VERSION"),
            "role": "admin", "scope": "fleet", "method": "static_token",
        })
    );
    let alice = format!("Bearer {}", kanade_testkit::operator_token("alice"));
    // A per-operator token proves the name; a claimed header cannot override it.
    let proven =
        request(&base, Method::GET, "/api/session", &[("authorization", &alice), ("x-kanade-operator", "bob")], None)
            .await;
    assert_eq!((proven.body["actor"].clone(), proven.body["verified"].clone()), (json!("alice"), json!(true)));
    assert_eq!(proven.body["method"], "operator_token");
    let anonymous = get(&base, "/api/session").await;
    assert_eq!(anonymous.body["actor"], "anonymous");
    // A name that is not ASCII (Latin-1 bytes here) is refused, not recorded as `anonymous`.
    let latin1 = reqwest::Client::new()
        .get(format!("{base}/api/session"))
        .header("authorization", &shared)
        .header("x-kanade-operator", reqwest::header::HeaderValue::from_bytes(b"Jos\xe9").unwrap())
        .send()
        .await
        .expect("HTTP request");
    assert_eq!(latin1.status(), 400);
    let body: serde_json::Value = latin1.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "invalid_operator", "{body}");
    assert_error(&request(&base, Method::GET, "/api/session", &[], None).await, 401, "unauthorized", "no token");
    let wrong = [("authorization", "Bearer wrong-token")];
    assert_error(&request(&base, Method::GET, "/api/session", &wrong, None).await, 401, "unauthorized", "bad token");
    assert_error(&post_json(&base, "/api/session", &json!({})).await, 405, "method_not_allowed", "POST /api/session");
}

#[tokio::test]
async fn ping_answers_for_a_connected_agent_and_says_why_not_for_others() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    let _agent = TestAgent::start(&nats.url(), "pc-a", &["lab"]).await;
    backend.wait_for_agents(1).await;

    // An agent answers pings once its subscription reaches the broker, which a busy machine may take a moment for.
    let reply = kanade_testkit::eventually("pc-a answers a ping", Duration::from_secs(20), || async {
        let reply = post_raw(&base, "/api/agents/pc-a/ping", None).await;
        (reply.status == 200).then_some(reply)
    })
    .await;
    let mut keys: Vec<&String> = reply.body.as_object().unwrap().keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["agent_version", "hostname", "os", "pc_id", "rtt_ms", "uptime_secs"]);
    assert_eq!(reply.body["pc_id"], "pc-a");
    assert_eq!(reply.body["hostname"], "pc-a.test");
    assert!(reply.body["rtt_ms"].as_f64().is_some_and(|ms| (0.0..3000.0).contains(&ms)), "{}", reply.raw);
    // `{}` is an empty body too.
    assert_eq!(post_json(&base, "/api/agents/pc-a/ping", &json!({})).await.status, 200);

    assert_error(&post_raw(&base, "/api/agents/pc-gone/ping", None).await, 404, "agent_not_connected", "nobody");

    // Something answers to the subject but never replies: a hung agent.
    // `flush` only writes the subscription out; until the server has it, the ping finds nobody (404): try again.
    let _hung = client.subscribe("agents.pc-hung.ping").await.unwrap();
    client.flush().await.unwrap();
    let (reply, took) = kanade_testkit::eventually("the hung subscriber is known", Duration::from_secs(20), || async {
        let started = std::time::Instant::now();
        let reply = post_raw(&base, "/api/agents/pc-hung/ping", None).await;
        (reply.status != 404).then(|| (reply, started.elapsed()))
    })
    .await;
    assert_error(&reply, 504, "ping_timeout", "hung");
    assert!(took >= Duration::from_secs(3), "the timeout is 3 s");

    for bad in ["UPPER", "a.b", "a%20b", "..%2f..", &"a".repeat(65)] {
        let path = format!("/api/agents/{bad}/ping");
        assert_error(&post_raw(&base, &path, None).await, 400, "invalid_pc_id", &path);
    }
    assert_refuses_bodies(&base, "/api/agents/pc-a/ping").await;
    let get_ping = get(&base, "/api/agents/pc-a/ping").await;
    assert_error(&get_ping, 405, "method_not_allowed", "GET ping");
}

#[tokio::test]
async fn an_agents_config_shows_each_key_with_the_layer_it_came_from() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    let _agent = TestAgent::start(&nats.url(), "pc-a", &["lab", "canary"]).await;
    backend.wait_for_agents(1).await;

    let store = AgentConfigStore::open(&client).await.unwrap();
    let set = |scope: Scope, key: &'static str, raw: &'static str| {
        let store = &store;
        async move { store.change(&scope, key, Some(layered::parse(key, raw).unwrap())).await.unwrap() }
    };
    let group = |g: &str| Scope::Group(GroupName::new(g).unwrap());
    set(Scope::Global, "target_version_jitter", "1m").await;
    set(Scope::Global, "inventory_interval", "1h").await;
    set(group("canary"), "inventory_interval", "2m").await;
    set(group("lab"), "inventory_interval", "3m").await;
    set(group("elsewhere"), "max_local_concurrent", "9").await;
    set(Scope::Pc(PcId::new("pc-a").unwrap()), "max_local_concurrent", "2").await;
    set(Scope::Pc(PcId::new("pc-b").unwrap()), "max_local_concurrent", "7").await;

    let reply = get(&base, "/api/agents/pc-a/config").await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(reply.body["pc_id"], "pc-a");
    assert_eq!(reply.body["groups"], json!(["lab", "canary"]));
    assert_eq!(
        reply.body["values"],
        json!([
            { "key": "inventory_interval", "value": "3m", "from": "group:lab" },
            { "key": "max_local_concurrent", "value": 2, "from": "pc" },
            { "key": "target_version_jitter", "value": "1m", "from": "global" },
        ]),
        "groups apply sorted by name, so lab (later) beats canary; pc beats everything"
    );
    let conflicts = reply.body["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(conflicts[0].as_str().unwrap().starts_with("inventory_interval: group canary says"), "{conflicts:?}");

    assert_error(&get(&base, "/api/agents/pc-never/config").await, 404, "agent_not_found", "unknown agent");
    assert_error(&get(&base, "/api/agents/Not%20Valid/config").await, 400, "invalid_pc_id", "bad id");
    assert_error(&get(&base, "/api/agents/pc-a/config/extra").await, 404, "not_found", "extra segment");
}

#[tokio::test]
async fn a_run_is_pending_then_running_and_a_kill_over_http_stops_it_and_is_audited() {
    run_and_kill(None).await;
}

#[tokio::test]
async fn a_run_is_running_then_killed_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    run_and_kill(Some(database.url.clone())).await;
}

async fn run_and_kill(database_url: Option<String>) {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let backend = TestBackend::start_in(&nats.url(), tempfile::tempdir().unwrap(), database_url).await;
    let base = backend.url();
    let _a = TestAgent::start(&nats.url(), "pc-a", &["lab"]).await;
    backend.wait_for_agents(1).await;
    create_job(&base, &manifest("slow", "sleep 60", "target:\n  groups: [lab]\n")).await;

    let fired = post_json(&base, "/api/exec/slow", &json!({ "pcs": ["pc-a", "pc-unknown"] })).await;
    assert_eq!(fired.status, 201, "{}", fired.raw);
    let exec = fired.body["exec_id"].as_str().unwrap().to_owned();
    let running = backend.execution_until(&exec, "pc-a's run began", |v| v["by_status"]["running"] == 1).await;
    assert_eq!(running["pending"], 0, "pc-unknown was never a known agent, so not a target: {running}");
    assert_eq!(running["results"], 0);
    assert_eq!(running["status"], "running", "a running target is not an answer: {running}");

    let targets = get(&base, &format!("/api/executions/{exec}/targets")).await;
    assert_eq!(targets.status, 200, "{}", targets.raw);
    let row = &targets.body["items"][0];
    assert_eq!(
        (row["pc_id"].clone(), row["wave"].clone(), row["state"].clone()),
        (json!("pc-a"), json!(0), json!("running"))
    );
    assert!(row["started_at"].is_string() && row["finished_at"].is_null(), "{row}");

    let killed = post_raw(&base, &format!("/api/executions/{exec}/kill"), None).await;
    assert_eq!(killed.status, 200, "{}", killed.raw);
    assert_eq!(killed.body["exec_id"], exec.as_str());
    // The agent's confirmation is collected for 2 s; on a loaded machine it may come later, and the kill still
    // happens (the result below says so). What did arrive must be pc-a's.
    let acks = killed.body["killed"].as_array().expect("killed is a list");
    assert!(acks.iter().all(|a| *a == json!({ "pc_id": "pc-a", "exec_id": exec })), "{}", killed.raw);

    let done = backend.execution_until(&exec, "the kill's result", |v| v["status"] == "completed").await;
    assert_eq!(done["by_status"], json!({ "killed": 1 }));
    let targets = get(&base, &format!("/api/executions/{exec}/targets?status=killed")).await;
    assert_eq!(targets.body["items"].as_array().map(Vec::len), Some(1), "{}", targets.raw);
    assert_eq!(targets.body["items"][0]["state"], "killed");
    assert!(targets.body["items"][0]["finished_at"].is_string());
    let none = get(&base, &format!("/api/executions/{exec}/targets?status=running")).await;
    assert_eq!(none.body, json!({ "items": [], "next": null }));

    let audit = eventually("the kill is audited", PATIENCE, || async {
        let (_, audit) = backend.get("/api/audit?action=kill").await;
        (audit["items"].as_array()?.len() == 1).then_some(audit["items"].clone())
    })
    .await;
    assert_eq!(audit[0]["target"], exec.as_str());
    assert_eq!(audit[0]["details"], json!({ "killed_on": ["pc-a"] }));
    assert_eq!(audit[0]["source"], "backend");

    // A kill of something no agent runs is not an error: nobody confirms.
    let nothing = post_raw(&base, "/api/executions/nothing-here/kill", None).await;
    assert_eq!(nothing.body, json!({ "exec_id": "nothing-here", "killed": [] }));
    assert_error(&post_raw(&base, "/api/executions/NOT.AN.ID/kill", None).await, 400, "invalid_exec_id", "bad id");
    assert_refuses_bodies(&base, &format!("/api/executions/{exec}/kill")).await;
    backend.stop().await;
}

#[tokio::test]
async fn revoke_and_unrevoke_over_http_gate_the_job_and_are_audited() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    create_job(&base, &manifest("risky", "echo hi", "target:\n  all: true\n")).await;
    assert_eq!(get(&base, "/api/jobs").await.body[0]["revoked"], false);

    let revoked = post_raw(&base, "/api/jobs/risky/revoke", None).await;
    assert_eq!(revoked.status, 200, "{}", revoked.raw);
    assert_eq!(revoked.body, json!({ "job_id": "risky", "revoked": true }));
    assert!(kanade_ops::control::is_revoked(&client, &kanade_shared::JobId::new("risky").unwrap()).await.unwrap());
    let job = get(&base, "/api/jobs/risky").await;
    assert_eq!((job.body["revoked"].clone(), job.body["job"]["id"].clone()), (json!(true), json!("risky")));
    assert_eq!(get(&base, "/api/jobs").await.body[0]["revoked"], true);
    assert_error(&post_json(&base, "/api/exec/risky", &json!({})).await, 409, "job_revoked", "fire a revoked job");
    assert_eq!(post_raw(&base, "/api/jobs/risky/preview", None).await.body["revoked"], true);

    let allowed = post_json(&base, "/api/jobs/risky/unrevoke", &json!({})).await;
    assert_eq!(allowed.body, json!({ "job_id": "risky", "revoked": false }));
    assert_eq!(get(&base, "/api/jobs/risky").await.body["revoked"], false);

    eventually("both actions are audited", PATIENCE, || async {
        let (_, revokes) = backend.get("/api/audit?action=revoke").await;
        let (_, unrevokes) = backend.get("/api/audit?action=unrevoke").await;
        (revokes["items"].as_array()?.len() == 1 && unrevokes["items"].as_array()?.len() == 1).then_some(())
    })
    .await;

    assert_error(&post_raw(&base, "/api/jobs/no-such-job/revoke", None).await, 404, "job_not_found", "unknown job");
    assert_error(&post_raw(&base, "/api/jobs/Bad.Id/unrevoke", None).await, 400, "invalid_job_id", "bad id");
    assert_refuses_bodies(&base, "/api/jobs/risky/revoke").await;
}

#[tokio::test]
async fn a_preview_counts_what_a_fire_right_after_reports_and_stores_nothing() {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let base = backend.url();
    let _c = TestAgent::start(&nats.url(), "pc-c", &["canary"]).await;
    let _w2 = TestAgent::start(&nats.url(), "pc-w2", &["wave1"]).await;
    let _w1 = TestAgent::start(&nats.url(), "pc-w1", &["wave1"]).await;
    let _x = TestAgent::start(&nats.url(), "pc-x", &["other"]).await;
    backend.wait_for_agents(4).await;
    let rollout = "target:\n  groups: [canary, wave1]\nrequire_approval: true\nrollout:\n  strategy: wave\n  waves:\n\
                   \x20   - group: canary\n    - group: wave1\n      delay: 1h\n";
    create_job(&base, &manifest("waves", "echo hi", rollout)).await;

    let preview = post_raw(&base, "/api/jobs/waves/preview", None).await;
    assert_eq!(preview.status, 200, "{}", preview.raw);
    assert_eq!(
        preview.body,
        json!({
            "job_id": "waves", "version": "1.0", "require_approval": true, "revoked": false,
            "target_count": 3, "online": 3,
            "waves": [{ "wave": 1, "group": "canary", "targets": 1 }, { "wave": 2, "group": "wave1", "targets": 2 }],
            "pcs": ["pc-c", "pc-w1", "pc-w2"],
        })
    );
    let named = post_json(&base, "/api/jobs/waves/preview", &json!({ "pcs": ["pc-x", "pc-nobody"] })).await;
    assert_eq!((named.body["target_count"].clone(), named.body["waves"].clone()), (json!(1), json!([])));
    let everyone = post_json(&base, "/api/jobs/waves/preview", &json!({ "all": true })).await;
    assert_eq!(everyone.body["pcs"], json!(["pc-c", "pc-w1", "pc-w2", "pc-x"]));
    assert_eq!(get(&base, "/api/executions").await.body["items"], json!([]), "a preview stores nothing");

    let fired = post_raw(&base, "/api/exec/waves", None).await;
    assert_eq!(fired.status, 201, "{}", fired.raw);
    assert_eq!(fired.body["target_count"], preview.body["target_count"]);
    assert_eq!(fired.body["status"], "pending_approval");

    assert_error(&post_raw(&base, "/api/jobs/nope/preview", None).await, 404, "job_not_found", "unknown job");
    assert_error(&post_raw(&base, "/api/jobs/BAD/preview", None).await, 400, "invalid_job_id", "bad job id");
    let bad_pc = post_json(&base, "/api/jobs/waves/preview", &json!({ "pcs": ["NOT VALID"] })).await;
    assert_error(&bad_pc, 400, "invalid_request", "bad pc id in the body");
    let bad_jitter = post_json(&base, "/api/jobs/waves/preview", &json!({ "jitter": "soon" })).await;
    assert_error(&bad_jitter, 400, "invalid_request", "bad duration");
    let too_many: Vec<String> = (0..10_001).map(|i| format!("pc-{i}")).collect();
    let crowd = post_json(&base, "/api/jobs/waves/preview", &json!({ "pcs": too_many })).await;
    assert_error(&crowd, 400, "invalid_request", "too many pcs");
    assert_refuses_bodies(&base, "/api/jobs/waves/preview").await;
}

#[tokio::test]
async fn targets_of_a_run_fired_straight_over_nats_come_from_its_events_and_results() {
    external_targets(None).await;
}

#[tokio::test]
async fn targets_of_a_run_fired_straight_over_nats_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    external_targets(Some(database.url.clone())).await;
}

/// A run the backend did not fire (`kanade run`): one agent has begun it, another has finished it.
async fn external_targets(database_url: Option<String>) {
    init_logging();
    let nats = NatsServer::start();
    let (_, js) = connect(&nats.url()).await;
    let backend = TestBackend::start_in(&nats.url(), tempfile::tempdir().unwrap(), database_url).await;
    let base = backend.url();
    let started = |pc: &str| json!({ "exec_id": "ext-1", "job_id": "adhoc-ext-1", "pc_id": pc, "started_at": "2026-01-01T00:00:00Z" });
    for pc in ["pc-b", "pc-a"] {
        let subject = format!("events.started.{pc}.ext-1");
        js.publish(subject, serde_json::to_vec(&started(pc)).unwrap().into()).await.unwrap().await.unwrap();
    }
    // The same start again (a redelivery) and one on a subject that does not match it: neither adds a row.
    js.publish("events.started.pc-a.ext-1", serde_json::to_vec(&started("pc-a")).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish("events.started.pc-z.ext-1", serde_json::to_vec(&started("pc-a")).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let result = json!({
        "result_id": "ext-1.pc-b", "exec_id": "ext-1", "job_id": "adhoc-ext-1", "pc_id": "pc-b", "status": "failed",
        "exit_code": 3, "started_at": "2026-01-01T00:00:01Z", "finished_at": "2026-01-01T00:00:02Z",
    });
    js.publish("results.pc-b.ext-1", serde_json::to_vec(&result).unwrap().into()).await.unwrap().await.unwrap();

    // Until the first event is projected the execution is unknown (404), so poll by hand.
    let view = eventually("the start and the result", PATIENCE, || async {
        let (_, view) = backend.get("/api/executions/ext-1").await;
        (view["by_status"] == json!({ "failed": 1, "running": 1 })).then_some(view)
    })
    .await;
    assert_eq!(view["status"], "external");
    assert_eq!(view["job_id"], "adhoc-ext-1");
    assert_eq!(view["settled"], true, "the backend waits for nothing of a run it did not send: {view}");
    assert_eq!((view["results"].clone(), view["target_count"].clone()), (json!(1), json!(2)));

    let targets = get(&base, "/api/executions/ext-1/targets").await;
    assert_eq!(targets.status, 200, "{}", targets.raw);
    assert_eq!(
        targets.body["items"],
        json!([
            { "pc_id": "pc-a", "wave": null, "state": "running", "started_at": "2026-01-01T00:00:00Z",
              "finished_at": null, "exit_code": null, "reason": null },
            { "pc_id": "pc-b", "wave": null, "state": "failed", "started_at": "2026-01-01T00:00:01Z",
              "finished_at": "2026-01-01T00:00:02Z", "exit_code": 3, "reason": null },
        ])
    );
    let limited = get(&base, "/api/executions/ext-1/targets?limit=1&status=").await;
    assert_eq!(limited.body["items"].as_array().map(Vec::len), Some(1));
    assert!(limited.body["next"].is_string(), "a second target follows: {}", limited.raw);
    let failed = get(&base, "/api/executions/ext-1/targets?status=failed").await;
    assert_eq!(
        failed.body["items"].as_array().map(|rows| rows.iter().map(|r| r["pc_id"].clone()).collect()),
        Some(vec![json!("pc-b")])
    );
    let pending = get(&base, "/api/executions/ext-1/targets?status=pending").await;
    assert_eq!(pending.body["items"], json!([]));
    let at_max = get(&base, "/api/executions/ext-1/targets?limit=1000").await;
    assert_eq!(at_max.status, 200);

    for (query, what) in [
        ("limit=0", "limit 0"),
        ("limit=1001", "limit over the max"),
        ("limit=-1", "negative limit"),
        ("limit=many", "limit not a number"),
        ("status=exploded", "unknown status"),
        ("state=running", "unknown parameter"),
    ] {
        let reply = get(&base, &format!("/api/executions/ext-1/targets?{query}")).await;
        assert_error(&reply, 400, "invalid_query", what);
    }
    assert_error(&get(&base, "/api/executions/ext-none/targets").await, 404, "execution_not_found", "unknown exec");
    assert_error(&get(&base, "/api/executions/..%2f..%2f/targets").await, 400, "invalid_exec_id", "traversal id");
    backend.stop().await;
}
