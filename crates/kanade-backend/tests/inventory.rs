//! Inventory end to end: a real agent's inventory of this machine reaches `GET /api/agents/{pc}/inventory`, the
//! titles, the software query and the hardware lists through `INVENTORY` and SQL; installing and removing a real
//! Debian package shows up in the change log after a refresh; reports published by hand fold into the right
//! changes, counts and version-range answers on SQLite and on PostgreSQL; hostile reports are refused or bounded
//! without stopping the projector; hostile queries get a clear error; CSV exports hold every row.

use std::time::Duration;

use kanade_shared::inventory::{
    Hardware, InventoryReport, KIND_HARDWARE, KIND_SOFTWARE, Software, SoftwareList, Status,
};
use kanade_shared::{InventoryKind, PcId, subject};
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::Value;

mod support;

use support::postgres;

const PATIENCE: Duration = Duration::from_secs(60);

fn pc(id: &str) -> PcId {
    PcId::new(id).expect("test pc id")
}

/// Publishes a report of `kind` into `INVENTORY` as an agent would, and waits for the broker's ack.
async fn publish<T: serde::Serialize>(
    js: &async_nats::jetstream::Context,
    pc_id: &str,
    kind: &str,
    hash: &str,
    at: chrono::DateTime<chrono::Utc>,
    data: T,
) {
    let report = InventoryReport {
        pc_id: pc(pc_id),
        kind: InventoryKind::new(kind).unwrap(),
        collected_at: at,
        hash: hash.to_owned(),
        full: false,
        errors: Vec::new(),
        data,
    };
    let subject = subject::inventory(&pc(pc_id), &InventoryKind::new(kind).unwrap());
    publish_raw(js, &subject, serde_json::to_vec(&report).unwrap()).await;
}

async fn publish_raw(js: &async_nats::jetstream::Context, subject: &str, body: Vec<u8>) {
    js.publish(subject.to_owned(), body.into()).await.expect("publish").await.expect("INVENTORY stored it");
}

fn item(id: &str, name: &str, version: &str, source: &str) -> Software {
    Software {
        source: source.into(),
        id: id.into(),
        name: name.into(),
        version: version.into(),
        scope: "machine".into(),
        ..Default::default()
    }
}

fn list(items: Vec<Software>) -> SoftwareList {
    let mut list = SoftwareList { items, ..Default::default() };
    list.normalise();
    list
}

/// Polls `path` until `ready` accepts its body.
async fn until(backend: &TestBackend, what: &str, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(what, PATIENCE, || async {
        let (status, body) = backend.get(path).await;
        (status == 200 && ready(&body)).then_some(body)
    })
    .await
}

fn names(rows: &[Value], field: &str) -> Vec<String> {
    rows.iter().map(|r| r[field].as_str().unwrap_or_default().to_owned()).collect()
}

/// The scenario both databases run: two PCs' reports by hand, then what each query answers.
async fn folds_reports_into_state_changes_and_answers(backend: &TestBackend, js: &async_nats::jetstream::Context) {
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(10);
    let first = list(vec![
        item("openssl:amd64", "openssl", "3.0.11-1~deb12u2", "dpkg"),
        item("libfoo:amd64", "libfoo", "1.0-1", "dpkg"),
        item("HKLM64\\{7zip}", "7-Zip 23.01 (x64)", "23.01", "registry"),
    ]);
    publish(js, "inv-a", KIND_SOFTWARE, "s1", t0, first).await;
    let b = list(vec![
        item("openssl:amd64", "openssl", "3.0.15-1~deb12u1", "dpkg"),
        item("HKLM64\\{7zip}", "7-Zip 24.08 (x64)", "24.08", "registry"),
    ]);
    publish(js, "inv-b", KIND_SOFTWARE, "b1", t0, b).await;
    let mut hw = Hardware::default();
    hw.os.name = "Debian GNU/Linux".into();
    hw.os.build = "6.1.0-18-amd64".into();
    hw.system.model = "Standard PC".into();
    hw.memory.total_bytes = 8 << 30;
    publish(js, "inv-a", KIND_HARDWARE, "h1", t0, hw.clone()).await;
    publish(js, "inv-a", "status", "t1", t0, Status::default()).await;

    until(backend, "inv-a's first reports", "/api/agents/inv-a/inventory", |b| {
        b["software"].as_array().is_some_and(|s| s.len() == 3) && b["hardware"]["os"]["name"] == "Debian GNU/Linux"
    })
    .await;
    until(backend, "inv-b's software", "/api/agents/inv-b/inventory", |b| {
        b["software"].as_array().is_some_and(|s| s.len() == 2)
    })
    .await;

    // The second report: an upgrade, a removal, an install; and new hardware.
    let second = list(vec![
        item("openssl:amd64", "openssl", "3.0.15-1~deb12u1", "dpkg"),
        item("HKLM64\\{7zip}", "7-Zip 23.01 (x64)", "23.01", "registry"),
        item("curl:amd64", "curl", "7.88.1-10+deb12u8", "dpkg"),
    ]);
    let t1 = t0 + chrono::Duration::minutes(1);
    publish(js, "inv-a", KIND_SOFTWARE, "s2", t1, second).await;
    hw.memory.total_bytes = 16 << 30;
    hw.os.build = "6.1.0-21-amd64".into();
    publish(js, "inv-a", KIND_HARDWARE, "h2", t1, hw).await;
    // A redelivered or re-published older report changes nothing.
    publish(js, "inv-a", KIND_SOFTWARE, "s1", t0, list(vec![])).await;

    let changes = until(backend, "inv-a's changes", "/api/inventory/changes?pc_id=inv-a&kind=software", |b| {
        b["items"].as_array().is_some_and(|i| i.len() == 4)
    })
    .await;
    let mut logged: Vec<(String, String, Option<String>, Option<String>)> = changes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_owned(),
                c["name"].as_str().unwrap().to_owned(),
                c["old"].as_str().map(str::to_owned),
                c["new"].as_str().map(str::to_owned),
            )
        })
        .collect();
    logged.sort();
    assert_eq!(
        logged,
        vec![
            ("first_report".into(), "software".into(), None, Some("3 items".into())),
            ("installed".into(), "curl".into(), None, Some("7.88.1-10+deb12u8".into())),
            ("removed".into(), "libfoo".into(), Some("1.0-1".into()), None),
            (
                "version_changed".into(),
                "openssl".into(),
                Some("3.0.11-1~deb12u2".into()),
                Some("3.0.15-1~deb12u1".into())
            ),
        ]
    );
    let hardware = until(backend, "hardware changes", "/api/inventory/changes?pc_id=inv-a&kind=hardware", |b| {
        b["items"].as_array().is_some_and(|i| i.len() == 3)
    })
    .await;
    let fields = names(hardware["items"].as_array().unwrap(), "name");
    assert!(fields.contains(&"memory.total_bytes".to_owned()) && fields.contains(&"os.build".to_owned()), "{fields:?}");
    let (_, by_name) = backend.get("/api/inventory/changes?name=OPENSSL").await;
    assert_eq!(by_name["items"].as_array().unwrap().len(), 1, "titles match case-insensitively: {by_name}");

    // Which PCs have openssl below 3.0.15 by dpkg's rules (`~deb12u2` of 3.0.11 is older): none now; below 3.1:
    // both.
    let (status, below) = backend.get("/api/inventory/software?name=openssl&version=%3C3.0.15").await;
    assert_eq!(status, 200, "{below}");
    assert_eq!(below["items"].as_array().unwrap().len(), 0, "{below}");
    let (_, both) = backend.get("/api/inventory/software?name=openssl&version=%3E%3D3.0,%3C3.1").await;
    assert_eq!(names(both["items"].as_array().unwrap(), "pc_id"), ["inv-a", "inv-b"]);
    let (_, wildcard) = backend.get("/api/inventory/software?name=7-zip*&version=%3C24").await;
    assert_eq!(names(wildcard["items"].as_array().unwrap(), "pc_id"), ["inv-a"], "{wildcard}");

    // Titles with their versions and installs, moved with every change.
    let titles = backend.get_all("/api/inventory/titles?search=ssl").await;
    assert_eq!(titles.len(), 1);
    assert_eq!(titles[0]["installs"], 2);
    assert_eq!(titles[0]["versions"].as_array().unwrap().len(), 1, "{titles:?}");
    let all_titles = backend.get_all("/api/inventory/titles?limit=1").await;
    assert_eq!(names(&all_titles, "name"), ["7-Zip 23.01 (x64)", "7-Zip 24.08 (x64)", "curl", "openssl"]);

    // Hardware filters and counts.
    let small = backend.get_all("/api/inventory/hardware?memory_below=32GiB&os=Debian%20GNU/Linux").await;
    assert_eq!(names(&small, "pc_id"), ["inv-a"]);
    assert!(backend.get_all("/api/inventory/hardware?memory_below=16GiB").await.is_empty());
    let (_, builds) = backend.get("/api/inventory/hardware/summary?field=os_build").await;
    assert_eq!(builds, serde_json::json!([{ "value": "6.1.0-21-amd64", "pcs": 1 }]));

    // CSV holds every row, whatever the page size.
    let response = reqwest::Client::new()
        .get(format!("{}/api/inventory/titles?format=csv&limit=1", backend.url()))
        .bearer_auth(kanade_testkit::TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = response.text().await.unwrap();
    assert_eq!(csv.lines().count(), 5, "a header and four title versions: {csv}");
    assert!(csv.lines().next().unwrap().starts_with("name,version,installs"), "{csv}");

    // A source the agent could not read, and a signed-out user's scope: what they held stays, nothing is logged
    // as removed.
    let zoom =
        Software { scope: "user:S-1-5-21-9".into(), ..item("HKU\\S-1-5-21-9\\Zoom", "Zoom", "5.17", "registry") };
    let t2 = t1 + chrono::Duration::minutes(1);
    let with_zoom = list(vec![
        item("openssl:amd64", "openssl", "3.0.15-1~deb12u1", "dpkg"),
        item("HKLM64\\{7zip}", "7-Zip 24.08 (x64)", "24.08", "registry"),
        zoom,
    ]);
    publish(js, "inv-b", KIND_SOFTWARE, "b2", t2, with_zoom).await;
    until(backend, "inv-b's user-scope item", "/api/agents/inv-b/inventory", |b| {
        b["software"].as_array().is_some_and(|s| s.len() == 3)
    })
    .await;
    let mut partial = list(vec![item("openssl:amd64", "openssl", "3.0.15-1~deb12u1", "dpkg")]);
    partial.unread_scopes = vec!["user:S-1-5-21-9".into()];
    partial.failed_sources = vec!["registry".into()];
    publish(js, "inv-b", KIND_SOFTWARE, "b3", t2 + chrono::Duration::minutes(1), partial).await;
    until(backend, "inv-b's partial report stored", "/api/agents/inv-b/inventory", |b| {
        b["reports"].as_array().is_some_and(|r| r.iter().any(|r| r["failed_sources"][0] == "registry"))
    })
    .await;
    let (_, kept) = backend.get("/api/agents/inv-b/inventory").await;
    assert_eq!(kept["software"].as_array().unwrap().len(), 3, "nothing unread is removed: {kept}");
    let (_, removed) = backend.get("/api/inventory/changes?pc_id=inv-b&change=removed").await;
    assert!(removed["items"].as_array().unwrap().is_empty(), "{removed}");

    // Entries older than the retention are not kept: a PC whose first report was collected 500 days ago has its
    // report stored and no change-log entry.
    let long_ago = chrono::Utc::now() - chrono::Duration::days(500);
    publish(js, "inv-old", KIND_HARDWARE, "o1", long_ago, Hardware::default()).await;
    until(backend, "inv-old's report", "/api/agents/inv-old/inventory", |b| b["reports"].is_array()).await;
    let (_, old) = backend.get("/api/inventory/changes?pc_id=inv-old").await;
    assert!(old["items"].as_array().unwrap().is_empty(), "{old}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_fold_into_state_changes_and_answers_on_sqlite() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    folds_reports_into_state_changes_and_answers(&backend, &js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_fold_into_state_changes_and_answers_on_postgres() {
    init_logging();
    let database = postgres::TestDatabase::create().await;
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start_in(&nats.url(), tempfile::tempdir().unwrap(), Some(database.url.clone())).await;
    folds_reports_into_state_changes_and_answers(&backend, &js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_reports_are_refused_or_bounded_and_the_projector_goes_on() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let now = chrono::Utc::now();

    // Garbage, a report on another PC's subject, an unknown kind, a wrong type: each is refused and logged.
    publish_raw(&js, "inventory.evil.software", b"{not json".to_vec()).await;
    publish_raw(&js, "inventory.evil.software", vec![0xff, 0xfe, 0x00]).await;
    let forged = InventoryReport {
        pc_id: pc("victim"),
        kind: InventoryKind::new(KIND_SOFTWARE).unwrap(),
        collected_at: now,
        hash: "x".into(),
        full: false,
        errors: vec![],
        data: list(vec![item("x", "x", "1", "dpkg")]),
    };
    publish_raw(&js, "inventory.evil.software", serde_json::to_vec(&forged).unwrap()).await;
    publish_raw(&js, "inventory.evil.teleporter", b"{}".to_vec()).await;
    publish_raw(
        &js,
        "inventory.evil.software",
        br#"{"pc_id":"evil","kind":"software","collected_at":"2026-01-01T00:00:00Z","data":{"items":7}}"#.to_vec(),
    )
    .await;

    // 45,000 items (about as many as fit one message), a name of markup and control characters, a long error list
    // with a very long error: kept to the limits, the cut counted.
    let mut items: Vec<Value> = (0..45_000).map(|i| serde_json::json!({ "id": format!("p{i}") })).collect();
    items[0] = serde_json::json!({ "id": "a-markup", "source": "dpkg", "name": "<img src=x onerror=alert(1)>\u{0}\u{7}", "version": "1" });
    let mut errors = vec!["e".repeat(300); 300];
    errors[0] = "e".repeat(5_000);
    let body = serde_json::json!({
        "pc_id": "evil", "kind": "software", "collected_at": now, "hash": "h".repeat(10_000),
        "errors": errors, "data": { "items": items }
    });
    publish_raw(&js, "inventory.evil.software", serde_json::to_vec(&body).unwrap()).await;

    // Then an honest report: the projector is still going.
    publish(&js, "honest", KIND_SOFTWARE, "ok", now, list(vec![item("ok:amd64", "ok", "1", "dpkg")])).await;
    until(&backend, "the honest report", "/api/agents/honest/inventory", |b| {
        b["software"].as_array().is_some_and(|s| s.len() == 1)
    })
    .await;
    let (status, evil) = backend.get("/api/agents/evil/inventory").await;
    assert_eq!(status, 200, "{evil}");
    let software = evil["software"].as_array().unwrap();
    assert_eq!(software.len(), kanade_shared::inventory::MAX_SOFTWARE_ITEMS);
    let report = &evil["reports"][0];
    assert_eq!(report["dropped"], 45_000 - kanade_shared::inventory::MAX_SOFTWARE_ITEMS as u64);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), kanade_shared::inventory::MAX_LIST_ITEMS);
    assert_eq!(errors[0].as_str().unwrap().len(), kanade_shared::inventory::MAX_PATH_CHARS);
    let markup = software.iter().find(|s| s["id"] == "a-markup").expect("the markup item");
    assert_eq!(markup["name"], "<img src=x onerror=alert(1)>", "kept as text, control characters gone");
    let (status, victim) = backend.get("/api/agents/victim/inventory").await;
    assert_eq!(status, 404, "a forged report is not stored for its victim: {victim}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_get_a_clear_error() {
    init_logging();
    let nats = NatsServer::start();
    let _conn = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    for (path, expected) in [
        ("/api/inventory/software", "name is required"),
        ("/api/inventory/software?name=x&version=%3C%3C2", "version"),
        ("/api/inventory/software?name=x&version=,", "version"),
        ("/api/inventory/software?name=x&format=xml", "format `xml`"),
        ("/api/inventory/software?name=x&pc_id=Not%20A%20Pc", "pc_id"),
        ("/api/inventory/software?name=x&cursor=garbage", "cursor"),
        ("/api/inventory/software?name=x&bogus=1", "bogus"),
        ("/api/inventory/changes?since=yesterday", "`yesterday`"),
        ("/api/inventory/changes?kind=perf", "`perf`"),
        ("/api/inventory/changes?change=exploded", "`exploded`"),
        ("/api/inventory/hardware?memory_below=lots", "`lots`"),
        ("/api/inventory/hardware/summary?field=password", "`password`"),
        ("/api/inventory/titles?limit=0", "limit"),
        ("/api/agents/NOT%20A%20PC/inventory", "pc"),
    ] {
        let (status, body) = backend.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{path}: `{message}` does not mention `{expected}`");
    }
    let long = format!("/api/inventory/software?name={}", "x".repeat(10_000));
    assert_eq!(backend.get(&long).await.0, 400);
    let (status, body) = backend.get("/api/agents/never-reported/inventory").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("agent_not_found")));
    let (status, body) = backend.post("/api/inventory/refresh", &serde_json::json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("targets_required")), "{body}");
    let (status, _) = backend.post("/api/inventory/refresh", &serde_json::json!({ "pcs": ["Bad PC"] })).await;
    assert_eq!(status, 400);
}

/// A tiny real Debian package, built with dpkg-deb, installed with dpkg on this machine and removed again (also
/// when the test fails).
struct ProbePackage {
    name: &'static str,
    _dir: tempfile::TempDir,
    deb: std::path::PathBuf,
}

impl ProbePackage {
    fn build(version: &str) -> Self {
        let name = "kanade-inventory-probe";
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pkg");
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(root.join("usr/share/doc").join(name)).unwrap();
        std::fs::write(root.join("usr/share/doc").join(name).join("README"), "kanade's inventory test\n").unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            format!(
                "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: kanade tests <tests@kanade.invalid>\n\
                 Description: a package kanade's inventory test installs and removes\n"
            ),
        )
        .unwrap();
        let deb = dir.path().join(format!("{name}_{version}_all.deb"));
        run("dpkg-deb", &["--build", "--root-owner-group", root.to_str().unwrap(), deb.to_str().unwrap()]);
        Self { name, _dir: dir, deb }
    }

    fn install(&self) {
        run("dpkg", &["-i", self.deb.to_str().unwrap()]);
    }

    fn remove(&self) {
        run("dpkg", &["--purge", self.name]);
    }
}

impl Drop for ProbePackage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("dpkg").args(["--purge", self.name]).output();
    }
}

fn run(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("`{program}` cannot run ({err}); this test needs Debian's dpkg and root"));
    assert!(
        output.status.success(),
        "`{program} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_machines_real_inventory_and_a_real_package_install_and_removal() {
    init_logging();
    let nats = NatsServer::start();
    let _conn = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = kanade_testkit::agent_config(&nats.url(), "real-pc", &["lab"], data_dir.path());
    config.inventory = kanade_shared::config::InventoryConfig {
        enabled: true,
        interval: Duration::from_secs(3600),
        jitter: Duration::ZERO,
    };
    let agent = TestAgent::start_with(config, data_dir).await;

    // Its first inventory, at start: this machine as it is.
    let libc6 = String::from_utf8(
        std::process::Command::new("dpkg-query").args(["-W", "-f", "${Version}", "libc6"]).output().unwrap().stdout,
    )
    .unwrap();
    let inventory = until(&backend, "real-pc's inventory", "/api/agents/real-pc/inventory", |b| {
        b["reports"].as_array().is_some_and(|r| r.len() == 3)
    })
    .await;
    let hw = &inventory["hardware"];
    assert!(!hw["os"]["name"].as_str().unwrap_or_default().is_empty(), "{hw}");
    assert!(hw["memory"]["total_bytes"].as_u64().unwrap_or_default() > 0, "{hw}");
    let software = inventory["software"].as_array().unwrap();
    let libc = software.iter().find(|s| s["name"] == "libc6").expect("libc6 in the software list");
    assert_eq!(libc["version"], libc6.as_str());
    assert_eq!(libc["source"], "dpkg");
    let encoded = libc6.replace('+', "%2B");
    let (_, found) = backend.get(&format!("/api/inventory/software?name=libc6&version=%3D{encoded}")).await;
    assert_eq!(names(found["items"].as_array().unwrap(), "pc_id"), ["real-pc"], "{found}");
    let hardware = backend.get_all("/api/inventory/hardware").await;
    assert_eq!(names(&hardware, "pc_id"), ["real-pc"]);

    // A real package installed: after a refresh it is in the change log and in the software query.
    let probe = ProbePackage::build("1.2.3-1");
    probe.install();
    let (status, asked) = backend.post("/api/inventory/refresh", &serde_json::json!({ "groups": ["lab"] })).await;
    assert_eq!((status, asked["asked"].as_u64()), (200, Some(1)), "{asked}");
    let changes = until(&backend, "the probe's install", "/api/inventory/changes?name=kanade-inventory-probe", |b| {
        b["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    assert_eq!(changes["items"][0]["change"], "installed", "{changes}");
    assert_eq!(changes["items"][0]["new"], "1.2.3-1");
    let (_, has) = backend.get("/api/inventory/software?name=kanade-inventory-probe&version=%3C1.2.3-2").await;
    assert_eq!(names(has["items"].as_array().unwrap(), "pc_id"), ["real-pc"]);

    // And removed.
    probe.remove();
    let (status, _) = backend.post("/api/inventory/refresh", &serde_json::json!({ "pcs": ["real-pc"] })).await;
    assert_eq!(status, 200);
    let changes = until(&backend, "the probe's removal", "/api/inventory/changes?name=kanade-inventory-probe", |b| {
        b["items"].as_array().is_some_and(|i| i.len() == 2)
    })
    .await;
    assert_eq!(changes["items"][0]["change"], "removed", "newest first: {changes}");
    assert_eq!(changes["items"][0]["old"], "1.2.3-1");
    let (_, gone) = backend.get("/api/inventory/software?name=kanade-inventory-probe").await;
    assert!(gone["items"].as_array().unwrap().is_empty(), "{gone}");
    drop(agent);
}

/// The seeds' example: an installer job whose script prints `{"version", "path"}`, with `display` and `summary`.
const CLIENT_JOB: &str = r#"
id: client-facts
version: "1"
execute:
  shell: sh
  script: |
    if false; then echo "not json"; exit 0; fi
    printf '{"version":"%s","path":"/opt/kanade/client","extra":{"n":1}}\n' 0.43.0
  timeout: 30s
inventory:
  display:
    - {field: version, label: Version}
    - {field: path, label: Path}
  summary:
    - {field: version, label: Client version}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_inventory_block_turns_its_output_into_facts() {
    init_logging();
    let nats = NatsServer::start();
    let _conn = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let _a = TestAgent::start(&nats.url(), "fact-a", &[]).await;
    let _b = TestAgent::start(&nats.url(), "fact-b", &[]).await;
    backend.wait_for_agents(2).await;

    let manifest = CLIENT_JOB;
    let (status, body) = backend.post("/api/jobs", &serde_json::json!({ "manifest": manifest })).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        backend.post("/api/exec/client-facts", &serde_json::json!({ "pcs": ["fact-a", "fact-b"] })).await;
    assert!(status == 200 || status == 201, "{status}: {body}");

    let facts = until(&backend, "both PCs' facts", "/api/inventory?app=client-facts", |b| {
        b["items"].as_array().is_some_and(|i| i.len() == 2)
    })
    .await;
    assert_eq!(facts["display"][0]["label"], "Version");
    let rows = facts["items"].as_array().unwrap();
    assert_eq!(rows[0]["pc_id"], "fact-a");
    assert_eq!(rows[0]["rows"][0]["path"], "/opt/kanade/client");
    assert_eq!(rows[0]["rows"][0]["extra"], r#"{"n":1}"#);
    assert_eq!(rows[0]["error"], Value::Null);
    let counts = &facts["summary"][0];
    assert_eq!(counts["label"], "Client version");
    assert_eq!(counts["counts"], serde_json::json!([{ "value": "0.43.0", "pcs": 2 }]));

    // CSV: a column per display field.
    let csv = reqwest::Client::new()
        .get(format!("{}/api/inventory?app=client-facts&format=csv", backend.url()))
        .bearer_auth(kanade_testkit::TEST_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().next(), Some("pc_id,row,Version,Path,error"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // A run whose stdout is not the promised JSON: the result stays as it is, the PC's facts say why, and the
    // facts of the run before stay.
    let broken = manifest.replace("version: \"1\"", "version: \"2\"").replace("if false", "if true");
    let (status, body) = backend.post("/api/jobs", &serde_json::json!({ "manifest": broken })).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    let (status, fired) = backend.post("/api/exec/client-facts", &serde_json::json!({ "pcs": ["fact-a"] })).await;
    assert!(status == 200 || status == 201, "{status}: {fired}");
    let facts = until(&backend, "the parse error on fact-a", "/api/inventory?app=client-facts", |b| {
        b["items"][0]["error"].is_string()
    })
    .await;
    assert!(facts["items"][0]["error"].as_str().unwrap().contains("not JSON"), "{facts}");
    assert_eq!(facts["items"][0]["rows"][0]["path"], "/opt/kanade/client", "the facts before stay");
    let exec = fired["exec_id"].as_str().unwrap();
    let (_, results) = backend.get(&format!("/api/results?exec_id={exec}")).await;
    assert_eq!(results["items"][0]["status"], "ok", "the result is kept as it is: {results}");
    assert_eq!(results["items"][0]["stdout"], "not json\n");

    // A job without the block, and one that does not exist.
    let (status, body) = backend.get("/api/inventory?app=no-such-job").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("job_not_found")));
    let (status, body) = backend.get("/api/inventory").await;
    assert_eq!(status, 400, "{body}");
}
