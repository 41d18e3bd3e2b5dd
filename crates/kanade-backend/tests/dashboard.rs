//! The web dashboard end to end: the real backend (with the dashboard embedded), a real nats-server and a real
//! agent, driven in headless Chromium by `web/e2e/dashboard.test.mjs` (playwright-core). This test sets the system
//! up — jobs in the catalogue, an execution waiting for approval requested by another operator — then runs the
//! browser script and fails with its output if any step fails. Screenshots land in `target/dashboard-artifacts/`.
//!
//! It needs Node.js, `web/node_modules` and Chromium: `cargo xtask web` obtains them (`cargo xtask ci` does it
//! first). Without them the test fails and says so; it never passes without having run the browser.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, init_logging, operator_token};
use serde_json::json;

/// The whole browser run, building nothing: a hung browser must not hang the suite.
const BROWSER_PATIENCE: Duration = Duration::from_secs(300);
const PC: &str = "pc-web";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn chromium() -> PathBuf {
    std::env::var_os("KANADE_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What the browser run needs, each with how to get it.
fn missing_prerequisites(web: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !web.join("dist/index.html").is_file() {
        missing.push("the built dashboard (web/dist)".to_owned());
    }
    if !web.join("node_modules/playwright-core").is_dir() {
        missing.push("web/node_modules (npm ci)".to_owned());
    }
    if !chromium().is_file() {
        missing.push(format!("Chromium at {} (Debian package `chromium`)", chromium().display()));
    }
    if std::process::Command::new("node").arg("--version").output().is_err() {
        missing.push("Node.js 20+ on PATH".to_owned());
    }
    missing
}

fn manifest(id: &str, script: &str, extra: &str) -> String {
    format!(
        "id: {id}\nversion: \"1.0\"\ndescription: {id} (dashboard test)\ntarget:\n  all: true\nexecute:\n  shell: sh\n  \
         script: '{script}'\n  timeout: 60s\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    init_logging();
    let web = workspace().join("web");
    let missing = missing_prerequisites(&web);
    assert!(
        missing.is_empty(),
        "the browser test cannot run without {}; run `cargo xtask web` (it installs them), then the test again",
        missing.join(", ")
    );

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
    let _agent = TestAgent::start(&url, PC, &["lab"]).await;
    backend.wait_for_agents(1).await;

    for manifest in [
        manifest("hello", "echo hello from kanade", ""),
        manifest("ticker", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do echo tick $i; sleep 0.5; done", ""),
        manifest("guarded", "echo approved and ran", "require_approval: true\n"),
        // More stdout than a result carries inline (256 KiB): the rest is in the result_output store.
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

    let artifacts = workspace().join("target/dashboard-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let mut browser = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "--test-concurrency=1", "e2e/dashboard.test.mjs"])
        .current_dir(&web)
        .env("KANADE_URL", backend.url())
        .env("KANADE_TOKEN", TEST_TOKEN)
        .env("KANADE_PC", PC)
        .env("KANADE_PENDING_EXEC", pending["exec_id"].as_str().expect("exec id"))
        .env("KANADE_ARTIFACTS", &artifacts)
        .env("KANADE_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let status = match tokio::time::timeout(BROWSER_PATIENCE, browser.wait()).await {
        Ok(status) => status.expect("wait for node"),
        Err(_) => {
            let _ = browser.kill().await;
            panic!("the browser run did not finish within {BROWSER_PATIENCE:?}");
        }
    };
    assert!(status.success(), "browser steps failed ({status}); see the output above and {}", artifacts.display());
}
