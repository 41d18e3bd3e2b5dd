//! Jobs without a target of their own (the documents' installer jobs), fired through the backend at real agents
//! over a real nats-server: firing one without naming targets is refused with `targets_required` by exec, preview
//! and deploy alike, naming them fires it, its rollout runs over the groups named; and `POST /api/deploy` with a
//! `version` stores and fires that version instead of the manifest's.

use std::time::Duration;

use kanade_shared::resources::KV_SCRIPT_CURRENT;
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(20);

/// An installer job in the documents' exact shape: id, version, execute {shell, script, timeout, run_as},
/// require_approval and inventory, and no target.
fn installer(id: &str, extra: &str) -> String {
    format!(
        "id: {id}\nversion: \"0.43.0\"\nexecute:\n  shell: sh\n  script: 'echo installed $KANADE_JOB_ID'\n  \
         timeout: 30s\n  run_as: system\nrequire_approval: false\ninventory:\n  display: [{{field: version}}]\n{extra}"
    )
}

async fn create_job(backend: &TestBackend, manifest: &str) -> Value {
    let (status, body) = backend.post("/api/jobs", &json!({ "manifest": manifest })).await;
    assert!(status == 201 || status == 200, "job create: {status} {body}");
    body
}

/// POSTs and expects a refusal with `status` and `code`; returns the message.
async fn refused(backend: &TestBackend, path: &str, body: Value, status: u16, code: &str) -> String {
    let (got, reply) = backend.post(path, &body).await;
    assert_eq!((got, reply["error"]["code"].as_str()), (status, Some(code)), "POST {path} {body}: {reply}");
    reply["error"]["message"].as_str().unwrap_or_default().to_owned()
}

async fn fired(backend: &TestBackend, job: &str, body: Value) -> Value {
    let (status, view) = backend.post(&format!("/api/exec/{job}"), &body).await;
    assert_eq!(status, 201, "exec {job} {body}: {view}");
    let exec = view["exec_id"].as_str().unwrap().to_owned();
    backend.execution_until(&exec, "every target's result", |v| v["status"] == "completed").await
}

async fn executions_of(backend: &TestBackend, job: &str) -> usize {
    let (status, list) = backend.get(&format!("/api/executions?job_id={job}")).await;
    assert_eq!(status, 200, "{list}");
    list["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_job_without_a_target_is_refused_until_targets_are_named_then_runs_on_them() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _a = TestAgent::start(&url, "host-a", &["lab"]).await;
    let _b = TestAgent::start(&url, "host-b", &["lab"]).await;
    let _c = TestAgent::start(&url, "host-c", &["office"]).await;
    backend.wait_for_agents(3).await;
    let stored = create_job(&backend, &installer("install-kanade-client", "")).await;
    assert!(stored["job"].get("targets").is_none(), "no target is stored as none: {stored}");

    // Exec and preview agree: no targets named is refused, and nothing is recorded.
    for path in ["/api/exec/install-kanade-client", "/api/jobs/install-kanade-client/preview"] {
        for body in [json!({}), json!({ "pcs": [] }), json!({ "groups": [], "all": false }), json!({ "jitter": "1s" })]
        {
            let message = refused(&backend, path, body, 400, "targets_required").await;
            assert!(message.contains("`install-kanade-client` has no target"), "{message}");
            assert!(message.contains("pcs, groups or all"), "{message}");
        }
    }
    // `curl -X POST` with no body at all is the same request.
    let reply = reqwest::Client::new()
        .post(format!("{}/api/exec/install-kanade-client", backend.url()))
        .bearer_auth(kanade_testkit::TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 400);
    assert_eq!(executions_of(&backend, "install-kanade-client").await, 0);

    // Hostile target lists get the request's own errors, not a fire.
    let exec = "/api/exec/install-kanade-client";
    let message = refused(&backend, exec, json!({ "pcs": [""] }), 400, "invalid_request").await;
    assert!(message.starts_with("pcs:"), "{message}");
    for body in [json!({ "all": true, "pcs": ["host-a"] }), json!({ "all": true, "groups": ["lab"] })] {
        let message = refused(&backend, exec, body, 400, "invalid_request").await;
        assert!(message.contains("`all` cannot be combined with pcs or groups"), "{message}");
    }
    refused(&backend, exec, json!({ "pcs": null }), 400, "invalid_body").await;
    refused(&backend, exec, json!({ "pcs": "host-a" }), 400, "invalid_body").await;
    assert_eq!(executions_of(&backend, "install-kanade-client").await, 0, "nothing hostile was fired");

    // Named, it runs on exactly those.
    let done = fired(&backend, "install-kanade-client", json!({ "pcs": ["host-a"] })).await;
    assert_eq!((done["target_count"].clone(), done["by_status"].clone()), (json!(1), json!({ "ok": 1 })), "{done}");
    let exec_id = done["exec_id"].as_str().unwrap();
    let (_, results) = backend.get(&format!("/api/executions/{exec_id}/results")).await;
    let results = results["items"].clone();
    assert_eq!(results[0]["pc_id"], "host-a", "{results}");
    assert_eq!(results[0]["version"], "0.43.0", "{results}");

    let (status, preview) =
        backend.post("/api/jobs/install-kanade-client/preview", &json!({ "groups": ["lab"] })).await;
    assert_eq!((status, preview["target_count"].clone()), (200, json!(2)), "{preview}");
    let done = fired(&backend, "install-kanade-client", json!({ "groups": ["lab"] })).await;
    assert_eq!(done["by_status"], json!({ "ok": 2 }), "{done}");
    let done = fired(&backend, "install-kanade-client", json!({ "all": true })).await;
    assert_eq!(done["by_status"], json!({ "ok": 3 }), "{done}");
    assert_eq!(executions_of(&backend, "install-kanade-client").await, 3);
}

#[tokio::test]
async fn a_job_without_a_target_rolls_its_waves_out_over_the_groups_named() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _c = TestAgent::start(&url, "pc-canary", &["canary"]).await;
    let _w = TestAgent::start(&url, "pc-wave1", &["wave1"]).await;
    let _o = TestAgent::start(&url, "pc-office", &["office"]).await;
    backend.wait_for_agents(3).await;
    let rollout = "rollout:\n  strategy: wave\n  waves:\n    - group: canary\n    - group: wave1\n";
    create_job(&backend, &installer("staged", rollout)).await;
    let preview = "/api/jobs/staged/preview";

    refused(&backend, preview, json!({}), 400, "targets_required").await;
    // The job's waves over the groups named, by the one waves rule: every wave's group must be among them.
    let message = refused(&backend, preview, json!({ "groups": ["canary"] }), 422, "cannot_exec").await;
    assert!(message.contains("rollout.waves[1]: group `wave1` is not among the groups named"), "{message}");
    let message = refused(&backend, preview, json!({ "pcs": ["pc-office"] }), 422, "cannot_exec").await;
    assert!(message.contains("name groups or all, not pcs"), "{message}");
    for body in [json!({ "groups": ["wave1", "canary"] }), json!({ "all": true })] {
        let (status, view) = backend.post(preview, &body).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["target_count"], 2, "only the waves' groups are reached: {view}");
        assert_eq!(view["waves"].as_array().map(Vec::len), Some(2), "{view}");
    }

    let done = fired(&backend, "staged", json!({ "groups": ["canary", "wave1"] })).await;
    assert_eq!(done["waves"].as_array().map(Vec::len), Some(2), "{done}");
    assert_eq!(done["by_status"], json!({ "ok": 2 }), "{done}");
    // Waves of the request's own replace the job's.
    let done = fired(&backend, "staged", json!({ "waves": [{ "group": "office" }] })).await;
    assert_eq!((done["target_count"].clone(), done["waves"][0]["group"].clone()), (json!(1), json!("office")));
}

#[tokio::test]
async fn deploy_refuses_a_manifest_without_a_target_and_fires_another_as_the_version_given() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _a = TestAgent::start(&url, "host-a", &["lab"]).await;
    backend.wait_for_agents(1).await;

    let message =
        refused(&backend, "/api/deploy", json!({ "manifest": installer("loose", "") }), 400, "targets_required").await;
    assert!(message.contains("`loose` has no target"), "{message}");
    let (status, _) = backend.get("/api/jobs/loose").await;
    assert_eq!(status, 404, "a refused deploy stores nothing");

    let targeted = installer("pinned", "target:\n  pcs: [host-a]\n");
    for (version, why) in [
        (json!("a b"), "must be 1-64 characters"),
        (json!(""), "must be 1-64 characters"),
        (json!("9".repeat(65)), "must be 1-64 characters"),
        (json!("../../etc/passwd"), "must be 1-64 characters"),
        (json!("1.0\n"), "must be 1-64 characters"),
    ] {
        let body = json!({ "manifest": targeted, "version": version });
        let message = refused(&backend, "/api/deploy", body, 400, "invalid_request").await;
        assert!(message.starts_with("version: ") && message.contains(why), "{message}");
    }
    refused(&backend, "/api/deploy", json!({ "manifest": targeted, "version": 2 }), 400, "invalid_body").await;
    let (status, _) = backend.get("/api/jobs/pinned").await;
    assert_eq!(status, 404, "a bad version stores nothing");

    let (status, view) = backend.post("/api/deploy", &json!({ "manifest": targeted, "version": "0.44.0-rc.1" })).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["version"], "0.44.0-rc.1", "{view}");
    let exec = view["exec_id"].as_str().unwrap().to_owned();
    backend.execution_until(&exec, "host-a's result", |v| v["status"] == "completed").await;
    let (_, results) = backend.get(&format!("/api/executions/{exec}/results")).await;
    let results = results["items"].clone();
    assert_eq!((results[0]["version"].clone(), results[0]["status"].clone()), (json!("0.44.0-rc.1"), json!("ok")));
    let (_, job) = backend.get("/api/jobs/pinned").await;
    assert_eq!(job["job"]["version"], "0.44.0-rc.1", "{job}");
    assert!(job["manifest"].as_str().unwrap().contains("version: \"0.43.0\""), "the text stays as written: {job}");
    let current = eventually("script_current of pinned", PATIENCE, || async {
        let kv = async_nats::jetstream::new(client.clone()).get_key_value(KV_SCRIPT_CURRENT).await.ok()?;
        kv.get("pinned").await.ok().flatten()
    })
    .await;
    assert_eq!(current.as_ref(), b"0.44.0-rc.1");

    // `POST /api/jobs` takes the same field: the catalogue says the version given, not the file's.
    let (status, stored) =
        backend.post("/api/jobs", &json!({ "manifest": installer("loose", ""), "version": "7" })).await;
    assert_eq!((status, stored["job"]["version"].clone()), (201, json!("7")), "{stored}");
}
