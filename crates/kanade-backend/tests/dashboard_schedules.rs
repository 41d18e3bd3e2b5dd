//! The dashboard's Schedules pages end to end: the real backend (with the dashboard embedded), a real nats-server
//! and a real agent, the echo job in the catalogue; driven in headless Chromium by `web/e2e/schedules.test.mjs`
//! (playwright-core), which creates the documents' every-10-seconds sample from its YAML pasted into the New
//! schedule form, sees a bad file refused with the backend's own message, watches a fire complete, pauses, runs
//! it now, resumes and deletes it. Screenshots land in `target/dashboard-artifacts/schedules-*.png`.
//!
//! It needs Node.js, `web/node_modules` and Chromium, as `tests/dashboard.rs` does: `cargo xtask web` obtains them.
//! Without them the test fails and says so; it never passes without having run the browser.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::json;

mod support;

use support::browser;

const PC: &str = "pc-schedules";
/// The sample's id, as `schedules/echo-every-10s.yaml` writes it.
const SCHEDULE: &str = "echo-every-10s";
/// The operator the browser signs in as.
const OPERATOR: &str = "dora";

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path))
        .unwrap_or_else(|err| panic!("read {path}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedules_pages_work_in_a_real_browser() {
    init_logging();
    browser::require_prerequisites();

    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let page = reqwest::get(format!("{}/", backend.url())).await.expect("GET /").text().await.expect("page");
    assert!(
        page.contains("id=\"root\""),
        "the backend serves no built dashboard (was kanade-backend compiled before `cargo xtask web`?):\n{page}"
    );
    let _agent = TestAgent::start(&url, PC, &["lab"]).await;
    backend.wait_for_agents(1).await;

    let (status, body) = backend.post("/api/jobs", &json!({ "manifest": repo("jobs/echo.yaml") })).await;
    assert!(status == 201 || status == 200, "job create: {status} {body}");
    let sample = repo("schedules/echo-every-10s.yaml");
    assert!(sample.contains(&format!("id: {SCHEDULE}\n")), "the sample's id is {SCHEDULE}:\n{sample}");

    let env = [
        ("KANADE_URL", backend.url()),
        ("KANADE_TOKEN", TEST_TOKEN.to_owned()),
        ("KANADE_PC", PC.to_owned()),
        ("KANADE_OPERATOR", OPERATOR.to_owned()),
        ("KANADE_SCHEDULE_ID", SCHEDULE.to_owned()),
        ("KANADE_SCHEDULE_YAML", sample),
    ];
    browser::run("e2e/schedules.test.mjs", &env).await;

    // What the page did, as the backend saw it: the schedule is gone, and each change is on record as the
    // operator's, once.
    let (status, body) = backend.get(&format!("/api/schedules/{SCHEDULE}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("schedule_not_found")), "{body}");
    let wanted: BTreeSet<&str> =
        ["schedule-create", "schedule-pause", "schedule-run-now", "schedule-resume", "schedule-delete"].into();
    let audited = eventually("the page's changes audited", Duration::from_secs(10), || async {
        let (_, audit) = backend.get("/api/audit?limit=200").await;
        let rows: Vec<(String, String, String)> = audit["items"]
            .as_array()?
            .iter()
            .filter(|e| e["action"].as_str().is_some_and(|a| a.starts_with("schedule-")))
            .map(|e| {
                let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                (field("action"), field("target"), field("actor"))
            })
            .collect();
        let actions: BTreeSet<&str> = rows.iter().map(|(action, ..)| action.as_str()).collect();
        (actions == wanted).then_some(rows)
    })
    .await;
    assert_eq!(audited.len(), wanted.len(), "each change once: {audited:?}");
    for (action, target, actor) in &audited {
        assert_eq!((target.as_str(), actor.as_str()), (SCHEDULE, OPERATOR), "{action}: {audited:?}");
    }
}
