//! Jobs fired through the backend at real agents over a real nats-server: the catalogue over HTTP, executions and
//! their progress, wave rollouts with delays, halting on failures, a backend restarted between waves, the
//! two-person approval rule, supersession, and the errors bad requests get.

use std::time::Duration;

use futures::StreamExt;
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, eventually, init_logging, operator_token};
use reqwest::Method;
use serde_json::{Value, json};

mod support;

use support::postgres;

const PATIENCE: Duration = Duration::from_secs(20);
const ALL: &str = "target:\n  all: true\n";

/// A job for `sh` with the given extra YAML (target, rollout, ...).
fn manifest(id: &str, version: &str, script: &str, extra: &str) -> String {
    format!(
        "id: {id}\nversion: \"{version}\"\ndescription: test job\nexecute:\n  shell: sh\n  script: '{script}'\n  timeout: 30s\n{extra}"
    )
}

async fn create_job(backend: &TestBackend, manifest: &str) {
    let (status, body) = backend.post("/api/jobs", &json!({ "manifest": manifest })).await;
    assert!(status == 201 || status == 200, "job create: {status} {body}");
}

async fn exec(backend: &TestBackend, job: &str, body: Value) -> Value {
    let (status, view) = backend.post(&format!("/api/exec/{job}"), &body).await;
    assert_eq!(status, 201, "exec {job}: {view}");
    view
}

fn millis(at: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(at.as_str().unwrap_or_else(|| panic!("not a time: {at}")))
        .expect("RFC 3339 time")
        .timestamp_millis()
}

#[tokio::test]
async fn a_job_fired_at_pcs_runs_and_its_execution_reports_progress() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _a = TestAgent::start(&url, "pc-a", &["lab"]).await;
    let _b = TestAgent::start(&url, "pc-b", &["lab"]).await;
    backend.wait_for_agents(2).await;
    create_job(&backend, &manifest("hello", "1.0", "echo hello from $(hostname)", "target:\n  groups: [lab]\n")).await;

    let view = exec(&backend, "hello", json!({ "pcs": ["pc-a"] })).await;
    assert_eq!(view["job_id"], "hello");
    assert_eq!(view["version"], "1.0");
    assert_eq!(view["target_count"], 1, "only pc-a was named: {view}");
    let exec_id = view["exec_id"].as_str().unwrap().to_owned();
    let done = backend.execution_until(&exec_id, "pc-a's result", |v| v["status"] == "completed").await;
    assert_eq!(done["by_status"], json!({ "ok": 1 }));
    assert_eq!(done["pending"], 0);
    assert_eq!(done["settled"], true, "completed is settled: {done}");
    assert_eq!(done["requested_by"], "anonymous", "the shared token with no operator header");

    let (status, results) = backend.get(&format!("/api/executions/{exec_id}/results")).await;

    let results = results["items"].clone();
    assert_eq!(status, 200);
    assert_eq!(results.as_array().unwrap().len(), 1);
    assert_eq!(results[0]["pc_id"], "pc-a");

    // The job's own target: the whole group.
    let view = exec(&backend, "hello", json!({})).await;
    assert_eq!(view["target_count"], 2);
    let group_exec = view["exec_id"].as_str().unwrap().to_owned();
    backend.execution_until(&group_exec, "both results", |v| v["status"] == "completed").await;

    // A target set no known agent matches is fired, with a count of 0, not refused.
    let view = exec(&backend, "hello", json!({ "groups": ["nobody-here"] })).await;
    assert_eq!(view["target_count"], 0);
    assert_eq!(view["status"], "completed");
    assert_eq!(view["settled"], true, "nothing to wait for: {view}");

    let (status, list) = backend.get("/api/executions?job_id=hello").await;

    let list = list["items"].clone();
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    assert_eq!(list[2]["exec_id"], exec_id.as_str(), "newest first");
    let (_, completed) = backend.get("/api/executions?status=completed").await;
    let completed = completed["items"].clone();
    assert_eq!(completed.as_array().unwrap().len(), 3, "completed is a status one can list by: {completed}");
    assert!(completed.as_array().unwrap().iter().all(|v| v["settled"] == true), "{completed}");
    let (_, running) = backend.get("/api/executions?status=running").await;
    let running = running["items"].clone();
    assert_eq!(running, json!([]), "running lists only executions still waiting for a target");

    // The catalogue over HTTP.
    let (status, jobs) = backend.get("/api/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(jobs[0]["job"]["id"], "hello");
    let (status, job) = backend.get("/api/jobs/hello").await;
    assert_eq!((status, job["job"]["version"].clone()), (200, json!("1.0")));
    let (status, _) = backend.send(Method::DELETE, "/api/jobs/hello", kanade_testkit::TEST_TOKEN, None).await;
    assert_eq!(status, 204);
    let (status, body) = backend.get("/api/jobs/hello").await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("job_not_found")));
    let (status, body) = backend.post("/api/exec/hello", &json!({})).await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("job_not_found")), "{body}");
}

#[tokio::test]
async fn a_rollout_sends_its_second_wave_after_the_delay() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _c = TestAgent::start(&url, "pc-canary", &["canary"]).await;
    let _w1 = TestAgent::start(&url, "pc-w1", &["wave1"]).await;
    let _w2 = TestAgent::start(&url, "pc-w2", &["wave1"]).await;
    backend.wait_for_agents(3).await;
    let rollout = "target:\n  groups: [canary, wave1]\nrollout:\n  strategy: wave\n  waves:\n    - group: canary\n\
                   \x20     max_failure_pct: 0\n    - group: wave1\n      delay: 2s\n";
    create_job(&backend, &manifest("waves", "1.0", "echo ok", rollout)).await;
    let mut sent = client.subscribe("commands.group.*.waves").await.unwrap();
    client.flush().await.unwrap();

    let view = exec(&backend, "waves", json!({})).await;
    let exec_id = view["exec_id"].as_str().unwrap().to_owned();
    assert_eq!(view["target_count"], 3);
    assert_eq!(view["waves"].as_array().unwrap().len(), 2);

    let first =
        backend.execution_until(&exec_id, "the canary's result", |v| v["waves"][0]["by_status"]["ok"] == 1).await;
    assert_eq!(first["status"], "rolling_out");
    assert_eq!(first["waves"][1]["state"], "pending", "wave1 waits for its delay: {first}");
    assert!(first["waves"][1]["due_at"].is_string());

    let done = backend.execution_until(&exec_id, "every wave's results", |v| v["status"] == "completed").await;
    let gap = millis(&done["waves"][1]["sent_at"]) - millis(&done["waves"][0]["sent_at"]);
    assert!(gap >= 2000, "wave1 went {gap} ms after the canary, before its 2 s delay");
    assert_eq!(done["waves"][1]["targets"], 2);
    assert_eq!(done["by_status"], json!({ "ok": 3 }));
    let (_, results) = backend.get(&format!("/api/executions/{exec_id}/results")).await;
    let results = results["items"].clone();
    for result in results.as_array().unwrap() {
        if result["pc_id"] != "pc-canary" {
            let started = millis(&result["started_at"]);
            assert!(started >= millis(&done["waves"][0]["sent_at"]) + 2000, "a wave1 agent ran early: {result}");
        }
    }
    let subjects: Vec<String> = sent.by_ref().take(2).map(|m| m.subject.to_string()).collect().await;
    assert_eq!(subjects, ["commands.group.canary.waves", "commands.group.wave1.waves"]);
}

#[tokio::test]
async fn a_request_may_bring_its_own_waves_checked_as_a_manifest_s_are() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _c = TestAgent::start(&url, "pc-canary", &["canary"]).await;
    let _w = TestAgent::start(&url, "pc-w1", &["wave1"]).await;
    let _other = TestAgent::start(&url, "pc-other", &["other"]).await;
    backend.wait_for_agents(3).await;
    // The job itself fires at everyone at once; the request rolls it out canary first.
    create_job(&backend, &manifest("plain", "1.0", "echo ok", ALL)).await;
    let body = json!({ "waves": [
        { "group": "canary", "max_failure_pct": 0 },
        { "group": "wave1", "delay": "1h" },
    ] });

    let (status, preview) = backend.post("/api/jobs/plain/preview", &body).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["target_count"], 2, "only the waves' groups: {preview}");
    assert_eq!(
        preview["waves"],
        json!([{ "wave": 1, "group": "canary", "targets": 1 }, { "wave": 2, "group": "wave1", "targets": 1 }])
    );

    let view = exec(&backend, "plain", body).await;
    assert_eq!(view["target_count"], 2);
    assert_eq!(view["targets"], json!({ "all": false, "groups": ["canary", "wave1"], "pcs": [] }));
    let exec_id = view["exec_id"].as_str().unwrap().to_owned();
    let first =
        backend.execution_until(&exec_id, "the canary's result", |v| v["waves"][0]["by_status"]["ok"] == 1).await;
    assert_eq!(first["status"], "rolling_out");
    assert_eq!(first["waves"][1]["state"], "pending", "wave1 waits an hour: {first}");
    assert_eq!(first["waves"][0]["max_failure_pct"], 0.0);
    assert_eq!(first["waves"][1]["delay_ms"], 3_600_000);

    // Waves over groups named with them must be among those groups; with `all`, any group.
    let (status, view) =
        backend.post("/api/jobs/plain/preview", &json!({ "all": true, "waves": [{ "group": "other" }] })).await;
    assert_eq!((status, &view["target_count"]), (200, &json!(1)), "{view}");

    let many: Vec<Value> = (0..51).map(|i| json!({ "group": format!("g{i}") })).collect();
    for (body, says) in [
        (json!({ "waves": many }), "51 waves given; the limit is 50"),
        (
            json!({ "waves": [{ "group": "canary" }, { "group": "canary" }] }),
            "waves[1]: group `canary` has a wave already",
        ),
        (json!({ "pcs": ["pc-w1"], "waves": [{ "group": "canary" }] }), "not pcs"),
        (json!({ "groups": ["wave1"], "waves": [{ "group": "canary" }] }), "waves[0]: group `canary` is not among"),
        (json!({ "waves": [{ "group": "Canary" }] }), "waves[0].group"),
        (json!({ "waves": [{ "group": "canary", "delay": "soon" }] }), "waves[0].delay: `soon` is not a duration"),
        (json!({ "waves": [{ "group": "canary", "delay": "30d" }] }), "is longer than"),
        (json!({ "waves": [{ "group": "canary", "max_failure_pct": 101 }] }), "between 0 and 100"),
        (json!({ "waves": [{ "group": "canary", "max_failure_pct": -1 }] }), "between 0 and 100"),
        (json!({ "waves": [{ "group": "canary", "halt": true }] }), "unknown field `halt`"),
        (json!({ "waves": { "group": "canary" } }), "waves: invalid type"),
    ] {
        for path in ["/api/exec/plain", "/api/jobs/plain/preview"] {
            let (status, reply) = backend.post(path, &body).await;
            assert_eq!(status, 400, "{path} {body}: {reply}");
            let message = reply["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{path} {body}: `{message}` should say `{says}`");
        }
    }
    let (_, list) = backend.get("/api/executions?job_id=plain").await;
    let list = list["items"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1, "no refused request created an execution");
}

#[tokio::test]
async fn a_wave_that_fails_too_much_halts_the_rollout() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _c1 = TestAgent::start(&url, "pc-c1", &["canary"]).await;
    let _c2 = TestAgent::start(&url, "pc-c2", &["canary"]).await;
    let _w = TestAgent::start(&url, "pc-w", &["wave1"]).await;
    backend.wait_for_agents(3).await;
    // Every canary fails: 100% > 10%.
    let rollout = "target:\n  groups: [canary, wave1]\nrollout:\n  strategy: wave\n  waves:\n    - group: canary\n\
                   \x20     max_failure_pct: 10\n    - group: wave1\n      delay: 3s\n";
    create_job(&backend, &manifest("risky", "1.0", "exit 7", rollout)).await;

    let view = exec(&backend, "risky", json!({})).await;
    let exec_id = view["exec_id"].as_str().unwrap().to_owned();
    let halted = backend.execution_until(&exec_id, "the rollout halts", |v| v["status"] == "halted").await;
    let reason = halted["status_reason"].as_str().unwrap();
    assert!(reason.contains("wave 1 (group `canary`)") && reason.contains("max_failure_pct 10"), "{reason}");
    assert_eq!(halted["waves"][1]["state"], "cancelled");
    assert_eq!(halted["settled"], true, "halted is settled: {halted}");

    // Well past the second wave's delay, its agent has still not been sent anything.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = backend.execution(&exec_id).await;
    assert_eq!(after["status"], "halted");
    assert_eq!(after["waves"][1]["state"], "cancelled");
    assert!(after["waves"][1]["sent_at"].is_null());
    let (_, results) = backend.get("/api/results?pc_id=pc-w").await;
    let results = results["items"].clone();
    assert_eq!(results, json!([]), "the halted wave's agent ran anyway");

    eventually("the halt is audited", PATIENCE, || async {
        let (_, audit) = backend.get("/api/audit?action=rollout-halt").await;
        let audit = audit["items"].clone();
        (audit.as_array()?.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_rollout_survives_a_backend_restart_between_waves_and_sends_each_wave_once() {
    restart_between_waves(None).await;
}

#[tokio::test]
async fn a_rollout_survives_a_backend_restart_between_waves_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    restart_between_waves(Some(database.url.clone())).await;
}

async fn restart_between_waves(database_url: Option<String>) {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _) = connect(&url).await;
    let backend = TestBackend::start_in(&url, tempfile::tempdir().unwrap(), database_url.clone()).await;
    let _c = TestAgent::start(&url, "pc-canary", &["canary"]).await;
    let _w = TestAgent::start(&url, "pc-w1", &["wave1"]).await;
    backend.wait_for_agents(2).await;
    let rollout = "target:\n  groups: [canary, wave1]\nrollout:\n  strategy: wave\n  waves:\n    - group: canary\n\
                   \x20   - group: wave1\n      delay: 3s\n";
    create_job(&backend, &manifest("restart", "1.0", "echo ran", rollout)).await;
    let mut sent = client.subscribe("commands.>").await.unwrap();
    client.flush().await.unwrap();

    let view = exec(&backend, "restart", json!({})).await;
    let exec_id = view["exec_id"].as_str().unwrap().to_owned();
    backend.execution_until(&exec_id, "the canary wave is sent", |v| v["waves"][0]["state"] == "sent").await;
    let data_dir = backend.stop().await;

    // Down through the second wave's due time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let backend = TestBackend::start_in(&url, data_dir, database_url).await;
    let done = backend
        .execution_until(&exec_id, "the rollout finishes after the restart", |v| v["status"] == "completed")
        .await;
    assert_eq!(done["by_status"], json!({ "ok": 2 }));

    // Every publication on the wire, counted: each wave exactly once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut subjects = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(200), sent.next()).await {
        subjects.push(message.subject.to_string());
    }
    assert_eq!(subjects, ["commands.group.canary.restart", "commands.group.wave1.restart"]);
    let (_, results) = backend.get(&format!("/api/executions/{exec_id}/results")).await;
    let results = results["items"].clone();
    assert_eq!(results.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn approval_needs_a_second_operator() {
    approval(None).await;
}

#[tokio::test]
async fn approval_needs_a_second_operator_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    approval(Some(database.url.clone())).await;
}

async fn approval(database_url: Option<String>) {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _) = connect(&url).await;
    let backend = TestBackend::start_in(&url, tempfile::tempdir().unwrap(), database_url).await;
    let _a = TestAgent::start(&url, "pc-lab", &["lab"]).await;
    backend.wait_for_agents(1).await;
    let extra = "target:\n  groups: [lab]\nrequire_approval: true\n";
    create_job(&backend, &manifest("guarded", "1.0", "echo approved", extra)).await;
    let mut sent = client.subscribe("commands.>").await.unwrap();
    client.flush().await.unwrap();
    let (alice, bob) = (operator_token("alice"), operator_token("bob"));

    let (status, view) = backend.send(Method::POST, "/api/exec/guarded", alice, Some(&json!({}))).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["status"], "pending_approval");
    assert_eq!(view["settled"], false, "an approval may still come: {view}");
    assert_eq!(view["requested_by"], "alice");
    let exec_id = view["exec_id"].as_str().unwrap().to_owned();
    let approve = format!("/api/executions/{exec_id}/approve");

    // Alice cannot approve her own request, whatever name her client claims.
    let (status, body) = backend.send(Method::POST, &approve, alice, None).await;
    assert_eq!((status, body["error"]["code"].clone()), (403, json!("self_approval")), "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(tokio::time::timeout(Duration::from_millis(100), sent.next()).await.is_err(), "sent before approval");
    assert_eq!(backend.execution(&exec_id).await["status"], "pending_approval");

    let (status, view) = backend.send(Method::POST, &approve, bob, None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["decided_by"], "bob");
    let done = backend.execution_until(&exec_id, "the approved run", |v| v["status"] == "completed").await;
    assert_eq!(done["by_status"], json!({ "ok": 1 }));
    let (status, body) = backend.send(Method::POST, &approve, bob, None).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("not_pending_approval")));

    // A rejection: nothing is ever sent.
    let (_, view) = backend.send(Method::POST, "/api/exec/guarded", alice, Some(&json!({}))).await;
    let rejected = view["exec_id"].as_str().unwrap().to_owned();
    let (status, view) = backend
        .send(Method::POST, &format!("/api/executions/{rejected}/reject"), bob, Some(&json!({ "reason": "not today" })))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "rejected");
    assert!(view["status_reason"].as_str().unwrap().contains("not today"));
    assert_eq!(view["settled"], true, "a rejection is final: {view}");
    let (status, _) = backend.send(Method::POST, &format!("/api/executions/{rejected}/approve"), bob, None).await;
    assert_eq!(status, 409);

    eventually("exec, approve-refused, approve and reject are audited", PATIENCE, || async {
        let (_, audit) = backend.get("/api/audit").await;
        let audit = audit["items"].clone();
        let actions: Vec<String> = audit
            .as_array()?
            .iter()
            .map(|e| format!("{} {}", e["actor"].as_str().unwrap_or(""), e["action"].as_str().unwrap_or("")))
            .collect();
        let want = ["alice exec", "alice approve-refused", "bob approve", "bob reject"];
        want.iter().all(|w| actions.iter().any(|a| a == w)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_newer_version_supersedes_an_unfinished_rollout() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _c = TestAgent::start(&url, "pc-canary", &["canary"]).await;
    backend.wait_for_agents(1).await;
    let rollout = "target:\n  groups: [canary, wave1]\nrollout:\n  strategy: wave\n  waves:\n    - group: canary\n\
                   \x20   - group: wave1\n      delay: 1h\n";
    create_job(&backend, &manifest("patch", "1.0", "echo v1", rollout)).await;
    let old = exec(&backend, "patch", json!({})).await["exec_id"].as_str().unwrap().to_owned();
    backend.execution_until(&old, "v1's canary ran", |v| v["by_status"]["ok"] == 1).await;

    create_job(&backend, &manifest("patch", "2.0", "echo v2", rollout)).await;
    let new = exec(&backend, "patch", json!({})).await["exec_id"].as_str().unwrap().to_owned();
    let superseded = backend.execution_until(&old, "v1 superseded", |v| v["status"] == "superseded").await;
    assert!(superseded["status_reason"].as_str().unwrap().contains(&new), "{superseded}");
    assert_eq!(superseded["waves"][1]["state"], "cancelled");
    assert_eq!(superseded["settled"], true, "superseded is settled: {superseded}");
    backend.execution_until(&new, "v2's canary ran", |v| v["waves"][0]["by_status"]["ok"] == 1).await;
}

#[tokio::test]
async fn a_revoked_job_is_not_fired_and_bad_requests_get_precise_errors() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    create_job(&backend, &manifest("stoppable", "1.0", "true", "target:\n  all: true\n")).await;

    kanade_ops::control::set_revoked(
        &client,
        kanade_testkit::fleet().signer(),
        &kanade_shared::JobId::new("stoppable").unwrap(),
        true,
    )
    .await
    .unwrap();
    let (status, body) = backend.post("/api/exec/stoppable", &json!({})).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("job_revoked")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("kanade unrevoke stoppable"));
    kanade_ops::control::set_revoked(
        &client,
        kanade_testkit::fleet().signer(),
        &kanade_shared::JobId::new("stoppable").unwrap(),
        false,
    )
    .await
    .unwrap();

    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        ("/api/exec/stoppable", json!({ "pcs": ["Not A Pc"] }), 400, "invalid_request", "pcs:"),
        (
            "/api/exec/stoppable",
            json!({ "jitter": "soon" }),
            400,
            "invalid_request",
            "jitter: `soon` is not a duration",
        ),
        ("/api/exec/stoppable", json!({ "deadline": "400d" }), 400, "invalid_request", "deadline: `400d` is longer"),
        ("/api/exec/stoppable", json!({ "pc": ["a"] }), 400, "invalid_body", "unknown field `pc`"),
        ("/api/exec/stoppable", json!({ "pcs": "a" }), 400, "invalid_body", "pcs: invalid type"),
        ("/api/exec/stoppable", json!({ "pcs": vec!["a"; 10_001] }), 400, "invalid_request", "the limit is 10000"),
        ("/api/exec/NOPE", json!({}), 400, "invalid_job_id", ""),
        ("/api/jobs", json!({ "manifest": "id: x\nversion: 1\nbogus: 1\n" }), 400, "invalid_manifest", "bogus"),
        (
            "/api/jobs",
            json!({ "manifest": manifest("two", "1", "true", ALL).replace("timeout: 30s", "timeout: 30s\n  script_file: x.sh") }),
            400,
            "invalid_manifest",
            "more than one script source",
        ),
        (
            "/api/jobs",
            json!({ "manifest": manifest("dur", "1", "true", ALL).replace("timeout: 30s", "timeout: soon") }),
            400,
            "invalid_manifest",
            "execute.timeout",
        ),
        (
            "/api/jobs",
            json!({ "manifest": manifest("obj", "1", "true", ALL).replace("script: 'true'", "script_object: missing/1.0") }),
            400,
            "invalid_manifest",
            "`missing/1.0` is not in the `scripts` object store",
        ),
        (
            "/api/jobs",
            json!({ "manifest": manifest("file", "1", "true", ALL).replace("script: 'true'", "script_file: run.sh") }),
            400,
            "invalid_manifest",
            "`run.sh` was not sent with the manifest",
        ),
        ("/api/jobs", json!({ "manifest": "x".repeat(2 * 1024 * 1024) }), 413, "invalid_body", ""),
        ("/api/deploy", json!({}), 400, "invalid_body", "missing field `manifest`"),
        ("/api/executions/nope/approve", json!({}), 404, "execution_not_found", "no execution `nope`"),
    ];
    for (path, body, want_status, want_code, want_text) in cases {
        let (status, reply) = backend.post(path, &body).await;
        let shown: String = body.to_string().chars().take(80).collect();
        assert_eq!(status, want_status, "POST {path} {shown}: {reply}");
        assert_eq!(reply["error"]["code"], want_code, "POST {path} {shown}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(want_text), "POST {path} {shown}: `{message}` lacks `{want_text}`");
    }
    // Bodies that are not JSON at all.
    let http = reqwest::Client::new();
    let raw = |path: &str, content_type: &str, body: Vec<u8>| {
        http.post(format!("{}{path}", backend.url()))
            .bearer_auth(kanade_testkit::TEST_TOKEN)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };
    let raw_cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("/api/jobs", "application/json", b"{".to_vec(), 400, "invalid_body"),
        ("/api/jobs", "application/json", vec![0xff, 0xfe, 0x00], 400, "invalid_body"),
        ("/api/jobs", "text/yaml", b"id: x".to_vec(), 415, "unsupported_media_type"),
        ("/api/exec/stoppable", "application/x-www-form-urlencoded", b"pcs=a".to_vec(), 415, "unsupported_media_type"),
        ("/api/exec/stoppable", "application/json", b"[1, 2]".to_vec(), 400, "invalid_body"),
    ];
    for (path, content_type, body, want_status, want_code) in raw_cases {
        let reply = raw(path, content_type, body.clone()).await.unwrap();
        let status = reply.status().as_u16();
        let reply: Value = reply.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{path} {body:?}: {reply}"
        );
    }
    // `curl -X POST` with no body (and a form content type) fires with the job's own targets.
    let reply = raw("/api/exec/stoppable", "application/x-www-form-urlencoded", Vec::new()).await.unwrap();
    assert_eq!(reply.status().as_u16(), 201);

    // A script_file sent along is inlined.
    let with_file = manifest("file", "1", "true", ALL).replace("script: 'true'", "script_file: run.sh");
    let (status, stored) =
        backend.post("/api/jobs", &json!({ "manifest": with_file, "files": { "run.sh": "echo from file" } })).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["job"]["source"], json!({ "kind": "inline", "script": "echo from file" }));
    // Nothing invalid was stored.
    let (_, jobs) = backend.get("/api/jobs").await;
    let ids: Vec<&str> = jobs.as_array().unwrap().iter().map(|j| j["job"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["file", "stoppable"]);
}

#[tokio::test]
async fn an_agent_offline_during_an_exec_runs_it_when_it_returns_unless_its_deadline_passed() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let agent = TestAgent::start(&url, "pc-away", &["lab"]).await;
    backend.wait_for_agents(1).await;
    create_job(&backend, &manifest("later", "1.0", "echo caught up", "target:\n  groups: [lab]\n")).await;
    // Another job: `EXEC` keeps the newest command per job and target, so a second exec of `later` would replace
    // the first for an agent that has not read it yet (as it should).
    create_job(&backend, &manifest("too-late", "1.0", "echo too late", "target:\n  groups: [lab]\n")).await;
    let config = agent.config.clone();
    let data_dir = agent.stop().await;

    let view = exec(&backend, "later", json!({})).await;
    let exec_id = view["exec_id"].as_str().unwrap().to_owned();
    assert_eq!(view["target_count"], 1, "a known agent counts while it is offline");
    let short = exec(&backend, "too-late", json!({ "deadline": "1s" })).await;
    let short_id = short["exec_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(backend.execution(&exec_id).await["status"], "running");

    let _agent = TestAgent::start_with(config, data_dir).await;
    let done = backend.execution_until(&exec_id, "the returning agent's result", |v| v["status"] == "completed").await;
    assert_eq!(done["by_status"], json!({ "ok": 1 }));
    let expired =
        backend.execution_until(&short_id, "the expired command's skip", |v| v["status"] == "completed").await;
    assert_eq!(expired["by_status"], json!({ "skipped": 1 }));
    let (_, results) = backend.get(&format!("/api/executions/{short_id}/results")).await;
    let results = results["items"].clone();
    assert_eq!(results[0]["reason"], "expired");
}

#[tokio::test]
async fn an_exec_at_a_large_fleet_records_every_target() {
    large_fleet(None).await;
}

#[tokio::test]
async fn an_exec_at_a_large_fleet_records_every_target_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    large_fleet(Some(database.url.clone())).await;
}

/// 1,000 known agents (as their heartbeats would record them; none runs anything), in two waves' groups.
async fn large_fleet(database_url: Option<String>) {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start_in(&url, tempfile::tempdir().unwrap(), database_url).await;
    let now = chrono::Utc::now();
    let heartbeats: Vec<_> = (0..1000)
        .map(|i| {
            let mut hb =
                kanade_shared::wire::Heartbeat::minimal(kanade_shared::PcId::new(format!("pc-{i:04}")).unwrap(), now);
            let group = if i < 10 { "canary" } else { "wave1" };
            hb.groups = vec![kanade_shared::GroupName::new(group).unwrap()];
            (hb, now)
        })
        .collect();
    backend.db.upsert_agents(&heartbeats).await.unwrap();
    let rollout = "target:\n  all: true\nrollout:\n  strategy: wave\n  waves:\n    - group: canary\n\
                   \x20   - group: wave1\n      delay: 1h\n";
    create_job(&backend, &manifest("fleetwide", "1.0", "true", rollout)).await;

    let view = exec(&backend, "fleetwide", json!({})).await;
    assert_eq!(view["target_count"], 1000);
    assert_eq!(view["pending"], 1000);
    assert_eq!((view["waves"][0]["targets"].clone(), view["waves"][1]["targets"].clone()), (json!(10), json!(990)));
    let view = exec(&backend, "fleetwide", json!({ "pcs": ["pc-0001", "pc-0999", "pc-unknown"] })).await;
    assert_eq!(view["target_count"], 2, "only known agents count: {view}");
}
