//! `kanade inventory` with the real binary against a real nats-server and backend: reports published as an agent
//! would are shown by `show`, found by `software` with a version range, listed by `titles`, `changes` and
//! `hardware` as tables, `-o json` and `-o csv`; `refresh` reaches a real agent; bad input gets a clear error.

use std::process::Output;
use std::time::Duration;

use kanade_shared::inventory::{Hardware, InventoryReport, KIND_HARDWARE, KIND_SOFTWARE, Software, SoftwareList};
use kanade_shared::{InventoryKind, PcId, subject};
use kanade_testkit::{NatsServer, TEST_TOKEN, TestBackend, connect, eventually, init_logging};

const PATIENCE: Duration = Duration::from_secs(30);

async fn run(nats_url: &str, backend_url: &str, args: &[&str]) -> Output {
    let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url);
    cmd.env("KANADE_BACKEND_URL", backend_url).env("KANADE_AUTH_TOKEN", TEST_TOKEN);
    cmd.args(args).output().await.expect("run kanade")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn report<T: serde::Serialize>(js: &async_nats::jetstream::Context, pc: &str, kind: &str, hash: &str, data: T) {
    let kind_id = InventoryKind::new(kind).unwrap();
    let report = InventoryReport {
        pc_id: PcId::new(pc).unwrap(),
        kind: kind_id.clone(),
        collected_at: chrono::Utc::now(),
        hash: hash.into(),
        full: false,
        errors: vec![],
        data,
    };
    let subject = subject::inventory(&PcId::new(pc).unwrap(), &kind_id);
    js.publish(subject, serde_json::to_vec(&report).unwrap().into()).await.unwrap().await.unwrap();
}

fn software(items: &[(&str, &str)]) -> SoftwareList {
    let mut list = SoftwareList {
        items: items
            .iter()
            .map(|(name, version)| Software {
                source: "dpkg".into(),
                id: format!("{name}:amd64"),
                name: (*name).into(),
                version: (*version).into(),
                arch: "amd64".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    list.normalise();
    list
}

#[tokio::test]
async fn inventory_commands_show_find_list_and_export() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (_client, js) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let base = backend.url();

    let mut hw = Hardware { hostname: "pc-1".into(), ..Default::default() };
    hw.os.name = "Debian GNU/Linux".into();
    hw.os.build = "6.1.0-18-amd64".into();
    hw.system.model = "ThinkPad, \"T14\"".into();
    hw.memory.total_bytes = 16 << 30;
    report(&js, "pc-1", KIND_HARDWARE, "h", hw).await;
    report(&js, "pc-1", KIND_SOFTWARE, "s1", software(&[("openssl", "3.0.11-1"), ("curl", "7.88.1-10")])).await;
    report(&js, "pc-2", KIND_SOFTWARE, "s2", software(&[("openssl", "3.0.15-1")])).await;
    eventually("both PCs' software", PATIENCE, || async {
        let (_, body) = backend.get("/api/inventory/software?name=openssl").await;
        (body["items"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;

    let found = run(&url, &base, &["inventory", "software", "openssl", "--version", "<3.0.15"]).await;
    assert_eq!(found.status.code(), Some(0), "{}", text(&found.stderr));
    let stdout = text(&found.stdout);
    assert!(stdout.starts_with("PC"), "{stdout}");
    assert!(stdout.contains("pc-1") && stdout.contains("3.0.11-1") && !stdout.contains("pc-2"), "{stdout}");

    let json = run(&url, &base, &["inventory", "software", "openssl", "-o", "json"]).await;
    let page: serde_json::Value = serde_json::from_slice(&json.stdout).expect("-o json is a page");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);

    let csv = run(&url, &base, &["inventory", "hardware", "--memory-below", "32GiB", "-o", "csv"]).await;
    assert_eq!(csv.status.code(), Some(0), "{}", text(&csv.stderr));
    let csv = text(&csv.stdout);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("PC,OS,BUILD,MANUFACTURER,MODEL,CPU,MEMORY"));
    assert_eq!(lines.next(), Some(r#"pc-1,Debian GNU/Linux,6.1.0-18-amd64,,"ThinkPad, ""T14""",,16.0 GiB"#));

    let titles = run(&url, &base, &["inventory", "titles", "ssl"]).await;
    assert!(text(&titles.stdout).contains("3.0.15-1 (1), 3.0.11-1 (1)"), "{}", text(&titles.stdout));

    report(&js, "pc-1", KIND_SOFTWARE, "s3", software(&[("openssl", "3.0.15-1"), ("curl", "7.88.1-10")])).await;
    let changes = eventually("the upgrade in the change log", PATIENCE, || async {
        let out = run(&url, &base, &["inventory", "changes", "--pc", "pc-1", "--change", "version_changed"]).await;
        let stdout = text(&out.stdout);
        stdout.contains("3.0.15-1").then_some(stdout)
    })
    .await;
    assert!(changes.contains("openssl") && changes.contains("3.0.11-1"), "{changes}");

    let shown = run(&url, &base, &["inventory", "show", "pc-1"]).await;
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown.stderr));
    let stdout = text(&shown.stdout);
    assert!(stdout.contains("6.1.0-18-amd64") && stdout.contains("16.0 GiB") && stdout.contains("curl"), "{stdout}");

    let refresh = run(&url, &base, &["inventory", "refresh", "--all", "-o", "json"]).await;
    assert_eq!(refresh.status.code(), Some(0), "{}", text(&refresh.stderr));
    let view: serde_json::Value = serde_json::from_slice(&refresh.stdout).unwrap();
    assert_eq!(view["full"], false);

    // Bad input: a clear error on stderr, nothing on stdout.
    for (args, needle) in [
        (&["inventory", "software", "openssl", "--version", "<<1"][..], "version"),
        (&["inventory", "show", "never-seen"][..], "has not reported any inventory"),
        (&["inventory", "hardware", "--memory-below", "lots"][..], "`lots`"),
        (&["inventory", "changes", "--since", "yesterday"][..], "`yesterday`"),
    ] {
        let out = run(&url, &base, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let usage = run(&url, &base, &["inventory", "refresh"]).await;
    assert_eq!(usage.status.code(), Some(2), "refresh needs pcs, --groups or --all: {}", text(&usage.stderr));
}
