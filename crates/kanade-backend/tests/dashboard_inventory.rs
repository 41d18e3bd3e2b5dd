//! The dashboard's inventory pages end to end: the real backend (with the dashboard embedded), a real nats-server, a
//! real agent reporting this machine's inventory, a second PC whose reports are published by hand (one of its software
//! names is markup), and a job with an `inventory:` block run on two agents (its second version printing no JSON on
//! one), driven in headless Chromium by `web/e2e/inventory.test.mjs` (playwright-core). Screenshots land in
//! `target/dashboard-artifacts/inventory-*.png`.
//!
//! It needs Node.js, `web/node_modules` and Chromium, as `tests/dashboard.rs` does: `cargo xtask web` obtains them.
//! Without them the test fails and says so; it never passes without having run the browser.

use std::time::Duration;

use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::{Value, json};

mod support;

use support::browser;

/// The real agent's first inventory (dpkg's whole database) and the facts travel through NATS and two projectors.
const PATIENCE: Duration = Duration::from_secs(90);
/// The agent with inventory on, reporting this machine.
const REAL_PC: &str = "real-pc";
/// An agent without inventory, so the facts table has a PC whose facts are fine.
const PLAIN_PC: &str = "plain-pc";
/// A PC that never ran an agent here: its reports are published by hand.
const HAND_PC: &str = "hand-pc";
/// A software name a careless page would turn into an element that runs script.
const MARKUP: &str = "<img src=x onerror=alert(1)>";

/// Publishes one inventory report of `hand-pc` into `INVENTORY` as an agent would, and waits for the broker's ack.
async fn publish(js: &async_nats::jetstream::Context, kind: &str, errors: &[&str], data: Value) {
    let report = json!({
        "pc_id": HAND_PC,
        "kind": kind,
        "collected_at": chrono::Utc::now() - chrono::Duration::minutes(5),
        "hash": format!("{kind}-1"),
        "full": true,
        "errors": errors,
        "data": data,
    });
    js.publish(format!("inventory.{HAND_PC}.{kind}"), serde_json::to_vec(&report).unwrap().into())
        .await
        .expect("publish")
        .await
        .expect("INVENTORY stored it");
}

/// Polls `path` until `ready` accepts its body.
async fn until(backend: &TestBackend, what: &str, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(what, PATIENCE, || async {
        let (status, body) = backend.get(path).await;
        (status == 200 && ready(&body)).then_some(body)
    })
    .await
}

/// A job whose script prints `{"version", "path"}`, shown and counted as facts; `broken` prints no JSON instead.
fn facts_job(version: &str, broken: bool) -> String {
    format!(
        "id: client-facts\nversion: \"{version}\"\ndescription: the client's version, as facts\nexecute:\n  shell: sh\n  \
         script: |\n    if {broken}; then echo \"not json\"; exit 0; fi\n    \
         printf '{{\"version\":\"%s\",\"path\":\"/opt/kanade/client\"}}\\n' 0.43.0\n  timeout: 30s\n\
         inventory:\n  display:\n    - {{field: version, label: Version}}\n    - {{field: path, label: Path}}\n  \
         summary:\n    - {{field: version, label: Client version}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_pages_work_in_a_real_browser() {
    init_logging();
    browser::require_prerequisites();

    let nats = NatsServer::start();
    let url = nats.url();
    let (_client, js) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let page = reqwest::get(format!("{}/", backend.url())).await.expect("GET /").text().await.expect("page");
    assert!(
        page.contains("id=\"root\""),
        "the backend serves no built dashboard (was kanade-backend compiled before `cargo xtask web`?):\n{page}"
    );

    // The real agent, reporting this machine's inventory at start.
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = kanade_testkit::agent_config(&url, REAL_PC, &["lab"], data_dir.path());
    config.inventory = kanade_shared::config::InventoryConfig {
        enabled: true,
        interval: Duration::from_secs(3600),
        jitter: Duration::ZERO,
    };
    let _real = TestAgent::start_with(config, data_dir).await;
    let _plain = TestAgent::start(&url, PLAIN_PC, &["lab"]).await;
    backend.wait_for_agents(2).await;
    let libc6 = String::from_utf8(
        std::process::Command::new("dpkg-query").args(["-W", "-f", "${Version}", "libc6"]).output().unwrap().stdout,
    )
    .unwrap();
    assert!(!libc6.is_empty(), "this machine has libc6 (dpkg)");

    // The hand-published PC: an older libc6, a name of markup, hardware of its own (a model of markup too), and a
    // part of the hardware it could not read.
    publish(
        &js,
        "software",
        &[],
        json!({ "items": [
            { "source": "dpkg", "id": "libc6:amd64", "name": "libc6", "version": "2.31-13+deb11u5", "arch": "amd64", "scope": "machine" },
            { "source": "registry", "id": "HKLM64\\{markup}", "name": MARKUP, "version": "1.0", "publisher": "<b>Evil</b> Corp", "scope": "machine" },
            { "source": "registry", "id": "HKLM64\\{7zip}", "name": "7-Zip 23.01 (x64)", "version": "23.01", "publisher": "Igor Pavlov", "scope": "machine" },
        ] }),
    )
    .await;
    publish(
        &js,
        "hardware",
        &["smbios: permission denied"],
        json!({
            "os": { "name": "Microsoft Windows 11 Pro", "version": "10.0.22631", "build": "22631.4602", "edition": "Professional", "arch": "x86_64" },
            "hostname": "HAND-PC", "workgroup": "WORKGROUP",
            "system": { "manufacturer": "Dell Inc.", "model": "<b>Latitude</b> 7440", "serial": "ABC1234" },
            "cpu": { "model": "13th Gen Intel(R) Core(TM) i7-1365U", "vendor": "GenuineIntel", "sockets": 1, "cores": 10, "threads": 12 },
            "memory": { "total_bytes": 8_u64 << 30, "modules": [ { "slot": "DIMM A", "size_bytes": 8_u64 << 30, "speed_mts": 5200 } ] },
            "volumes": [ { "mount": "C:", "file_system": "NTFS", "size_bytes": 256_u64 << 30 } ],
            "timezone": "Tokyo Standard Time",
        }),
    )
    .await;
    publish(
        &js,
        "status",
        &[],
        json!({ "volumes": [ { "mount": "C:", "size_bytes": 256_u64 << 30, "free_bytes": 64_u64 << 30 } ] }),
    )
    .await;

    // A job with facts, run on both agents; then its second version, which prints no JSON, on the real one only.
    for (manifest, pcs) in [(facts_job("1", false), vec![REAL_PC, PLAIN_PC]), (facts_job("2", true), vec![REAL_PC])] {
        let (status, body) = backend.post("/api/jobs", &json!({ "manifest": manifest })).await;
        assert!(status == 200 || status == 201, "job create: {status} {body}");
        let (status, body) = backend.post("/api/exec/client-facts", &json!({ "pcs": pcs })).await;
        assert!(status == 200 || status == 201, "exec client-facts: {status} {body}");
        let done = |b: &Value| {
            let items = b["items"].as_array().map(Vec::as_slice).unwrap_or_default();
            items.len() == 2
                && (pcs.len() == 2 || items.iter().any(|i| i["pc_id"] == REAL_PC && i["error"].is_string()))
        };
        until(&backend, "the facts of client-facts", "/api/inventory?app=client-facts", done).await;
    }
    // A job to hand PCs to (it has targets of its own: the hand-off must replace them).
    let hello = "id: hello\nversion: \"1\"\ntarget:\n  all: true\nexecute:\n  shell: sh\n  script: 'echo hello'\n  \
                 timeout: 30s\n";
    let (status, body) = backend.post("/api/jobs", &json!({ "manifest": hello })).await;
    assert!(status == 200 || status == 201, "job create: {status} {body}");

    let inventory = until(&backend, "real-pc's inventory", &format!("/api/agents/{REAL_PC}/inventory"), |b| {
        b["reports"].as_array().is_some_and(|r| r.len() == 3)
    })
    .await;
    let os_name = inventory["hardware"]["os"]["name"].as_str().unwrap_or_default().to_owned();
    assert!(!os_name.is_empty(), "the real machine's OS has a name: {inventory}");
    until(&backend, "hand-pc's reports", &format!("/api/agents/{HAND_PC}/inventory"), |b| {
        b["reports"].as_array().is_some_and(|r| r.len() == 3)
    })
    .await;

    let env = [
        ("KANADE_URL", backend.url()),
        ("KANADE_TOKEN", TEST_TOKEN.to_owned()),
        ("KANADE_REAL_PC", REAL_PC.to_owned()),
        ("KANADE_PLAIN_PC", PLAIN_PC.to_owned()),
        ("KANADE_HAND_PC", HAND_PC.to_owned()),
        ("KANADE_MARKUP", MARKUP.to_owned()),
        ("KANADE_LIBC6", libc6.clone()),
        ("KANADE_OS_NAME", os_name.clone()),
    ];
    browser::run("e2e/inventory.test.mjs", &env).await;
}
