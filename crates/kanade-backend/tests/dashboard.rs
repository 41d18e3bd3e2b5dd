//! The web dashboard end to end: the real backend (with the dashboard embedded), a real nats-server and a real
//! agent, driven in headless Chromium by `web/e2e/dashboard.test.mjs` (playwright-core). This test sets the system
//! up — jobs in the catalogue, an execution waiting for approval requested by another operator — then runs the
//! browser script and fails with its output if any step fails. Screenshots land in `target/dashboard-artifacts/`.
//!
//! It needs Node.js, `web/node_modules` and Chromium: `cargo xtask web` obtains them (`cargo xtask ci` does it
//! first). Without them the test fails and says so; it never passes without having run the browser.

use kanade_testkit::{NatsServer, TEST_TOKEN, TestBackend, connect, init_logging, operator_token};
use std::time::Duration;

use serde_json::json;

mod support;

use support::browser;

const PC: &str = "pc-web";

fn manifest(id: &str, script: &str, extra: &str) -> String {
    format!(
        "id: {id}\nversion: \"1.0\"\ndescription: {id} (dashboard test)\ntarget:\n  all: true\nexecute:\n  shell: sh\n  \
         script: '{script}'\n  timeout: 60s\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    init_logging();
    browser::require_prerequisites();

    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    // The page embedded in this build must be the dashboard, not the "not built" page: a stale build of the
    // backend from before `npm run build` would otherwise fail every step below with a confusing message.
    let page = reqwest::get(format!("{}/", backend.url())).await.expect("GET /").text().await.expect("page");
    assert!(
        page.contains("id=\"root\""),
        "the backend serves no built dashboard (was kanade-backend compiled before `cargo xtask web`?):\n{page}"
    );
    // A value from the lab group's config layer, for the agent page's effective config.
    let (client, _) = connect(&url).await;
    let configs = kanade_ops::agent_config::AgentConfigStore::open(&client).await.expect("agent_config bucket");
    let lab = kanade_shared::layered::Scope::Group(kanade_shared::GroupName::new("lab").expect("group"));
    configs.change(&lab, "max_local_concurrent", Some(json!(3))).await.expect("set max_local_concurrent");
    // With a client channel and a user at the screen (a real account; the agent's `run_as_user`), so a job asking
    // for consent is held for that user (whose client never connects here).
    let user = kanade_testkit::accounts::TestAccount::create("dash");
    let _agent = kanade_testkit::accounts::ClientAgent::start(&url, PC, &["lab"], &user).await;
    backend.wait_for_agents(1).await;

    for manifest in [
        manifest("hello", "echo hello from kanade", ""),
        manifest("ticker", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do echo tick $i; sleep 0.5; done", ""),
        manifest("guarded", "echo approved and ran", "require_approval: true\n"),
        // More stdout than a result carries inline (256 KiB): the rest is kept whole in stream OUTPUT.
        manifest("chatty", "head -c 600000 /dev/zero | tr -c x a; echo; echo END", ""),
        // Markup where text belongs: the page must show it as text and run none of it.
        "id: hostile\nversion: \"1.0\"\ndescription: '<img src=x onerror=\"window.__pwned=1\">'\ntarget:\n  all: true\n\
         execute:\n  shell: sh\n  script: 'echo \"<script>window.__pwned=1</script>\"'\n  timeout: 60s\n"
            .to_owned(),
        // No target of its own, in the installer jobs' shape: the Run dialog makes the operator choose.
        "id: installer\nversion: \"1.0\"\nexecute:\n  shell: sh\n  script: 'echo installed by the dashboard'\n  \
         timeout: 60s\n  run_as: system\nrequire_approval: false\n"
            .to_owned(),
        // Two waves: `lab` (this agent) at once, `later` (nobody) an hour after.
        manifest(
            "rolling",
            "echo rolled",
            "rollout:\n  strategy: wave\n  waves:\n    - group: lab\n      max_failure_pct: 50\n    - group: later\n      \
             delay: 1h\n      max_failure_pct: 50\n",
        ),
    ] {
        let (status, body) = backend.post("/api/jobs", &json!({ "manifest": manifest })).await;
        assert!(status == 201 || status == 200, "job create: {status} {body}");
    }
    // Requested by alice (her own token proves it), so bob may approve it from the page.
    let (status, pending) =
        backend.send(reqwest::Method::POST, "/api/exec/guarded", operator_token("alice"), Some(&json!({}))).await;
    assert_eq!(status, 201, "exec guarded: {pending}");
    assert_eq!(pending["status"], "pending_approval", "{pending}");

    // A run held on the PC for its user's consent (the agent says it asks), then put off by its user: that word is
    // the agent's too, sent here as the agent would send it (no user is signed in to answer).
    let consent = "client:\n  title: Updates\n  consent:\n    message: Apps may close.\n    deadline: 48h\n";
    let (status, body) =
        backend.post("/api/jobs", &json!({ "manifest": manifest("consented", "echo updated", consent) })).await;
    assert!(status == 201 || status == 200, "job create: {status} {body}");
    let (status, held) = backend.post("/api/exec/consented", &json!({ "pcs": [PC] })).await;
    assert_eq!(status, 201, "exec consented: {held}");
    let held_exec = held["exec_id"].as_str().expect("exec id").to_owned();
    let targets = format!("/api/executions/{held_exec}/targets");
    let asking = kanade_testkit::eventually("the agent says it asks its user", Duration::from_secs(30), || async {
        let (_, body) = backend.get(&targets).await;
        (body["items"][0]["held"]["state"] == "asking").then(|| body["items"][0]["held"].clone())
    })
    .await;
    let now = chrono::Utc::now();
    let word = kanade_shared::wire::RunHeld {
        exec_id: kanade_shared::ExecId::new(held_exec.clone()).expect("exec id"),
        job_id: kanade_shared::JobId::new("consented").expect("job id"),
        pc_id: kanade_shared::PcId::new(PC).expect("pc id"),
        state: kanade_shared::wire::HeldState::Deferred,
        until: now + chrono::Duration::hours(2),
        deadline: asking["deadline"].as_str().and_then(|t| t.parse().ok()).expect("a deadline"),
        by: Some("ann".into()),
        deferrals: 1,
        at: now,
    };
    let js = async_nats::jetstream::new(client.clone());
    js.publish(
        kanade_shared::subject::event_consent(&word.pc_id, &word.exec_id),
        serde_json::to_vec(&word).unwrap().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    kanade_testkit::eventually("the deferral is projected", Duration::from_secs(30), || async {
        let (_, body) = backend.get(&targets).await;
        (body["items"][0]["held"]["state"] == "deferred").then_some(())
    })
    .await;

    let env = [
        ("KANADE_URL", backend.url()),
        ("KANADE_TOKEN", TEST_TOKEN.to_owned()),
        ("KANADE_PC", PC.to_owned()),
        ("KANADE_PENDING_EXEC", pending["exec_id"].as_str().expect("exec id").to_owned()),
        ("KANADE_HELD_EXEC", held_exec),
    ];
    browser::run("e2e/dashboard.test.mjs", &env).await;
}
