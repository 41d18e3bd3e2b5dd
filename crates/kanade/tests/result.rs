//! `kanade result show` with the real binary against a real nats-server, backend and agent: the fields and the
//! inline output, `-o json`, `--full` printing exactly the bytes the script wrote, and bad input.

use std::process::Output;
use std::time::Duration;

use kanade_shared::PcId;
use kanade_shared::api::ResultRow;
use kanade_shared::subject::Target;
use kanade_testkit::fleet::{command, publish};
use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, init_logging};
use sha2::{Digest, Sha256};

const PATIENCE: Duration = Duration::from_secs(30);

async fn run(nats_url: &str, backend_url: &str, args: &[&str]) -> Output {
    let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url);
    cmd.env("KANADE_BACKEND_URL", backend_url).env("KANADE_AUTH_TOKEN", TEST_TOKEN);
    cmd.args(args).output().await.expect("run kanade")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[tokio::test]
async fn result_show_prints_the_inline_part_and_full_prints_every_byte() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (_client, js) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _agent = TestAgent::start(&url, "pc-1", &[]).await;
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("stdout");

    let long = command(&format!("head -c 786432 /dev/urandom | base64 -w0 | tee {}; echo careful >&2", copy.display()));
    publish(&js, &Target::Pc(PcId::new("pc-1").unwrap()), &long).await;
    let id = format!("{}.pc-1", long.exec_id);
    eventually("the result is stored", PATIENCE, || async {
        let (_, body) = backend.get(&format!("/api/results?exec_id={}", long.exec_id)).await;
        body["items"].as_array().filter(|rows| !rows.is_empty()).map(|_| ())
    })
    .await;
    let printed = std::fs::read(&copy).unwrap();
    let base = backend.url();

    let shown = run(&url, &base, &["result", "show", &id]).await;
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown.stderr));
    let stdout = text(&shown.stdout);
    assert!(stdout.contains(&format!("result:    {id}")), "{stdout}");
    assert!(stdout.contains("status:    ok (exit 0)"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "--- stdout (first 256.0 KiB of 1.0 MiB; all of it: kanade result show {id} --full) ---"
        )),
        "{}",
        &stdout[..400.min(stdout.len())]
    );
    assert!(stdout.contains("--- stderr ---\ncareful\n"));

    let json = run(&url, &base, &["result", "show", &id, "-o", "json"]).await;
    assert_eq!(json.status.code(), Some(0));
    let row: ResultRow = serde_json::from_slice(&json.stdout).expect("-o json is a result row");
    assert_eq!(row.stdout_full.as_ref().map(|f| f.size), Some(1024 * 1024));
    assert_eq!(row.stdout.len(), 256 * 1024);

    let full = run(&url, &base, &["result", "show", &id, "--full"]).await;
    assert_eq!(full.status.code(), Some(0), "{}", text(&full.stderr));
    assert_eq!(sha256(&full.stdout), sha256(&printed), "--full prints exactly what the script wrote");
    assert_eq!(text(&full.stderr), "careful\n", "stderr goes to stderr");
    let only = run(&url, &base, &["result", "show", &id, "--full", "--stream", "stderr"]).await;
    assert_eq!((only.status.code(), text(&only.stdout)), (Some(0), "careful\n".to_owned()));

    // Bad input: clear errors, exit codes, nothing printed on stdout.
    for (args, needle, code) in [
        (vec!["result", "show", "nope"], "result id", 2),
        (vec!["result", "show", "A.B"], "contains `A`", 2),
        (vec!["result", "show", &id, "--stream", "stdout"], "--full", 2),
        (vec!["result", "show", &id, "--full", "--stream", "stdin"], "stdin", 2),
        (vec!["result", "show", &id, "--full", "-o", "json"], "does not combine with `-o json`", 1),
    ] {
        let out = run(&url, &base, &args).await;
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // `kanade run` says where the rest of a long output is.
    let ran = run(&url, &base, &["run", "pc-1", "--", "head -c 300000 /dev/zero | tr -c x r"]).await;
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    assert_eq!(ran.stdout.len(), 256 * 1024);
    assert!(text(&ran.stderr).contains("all of it: kanade result show "), "{}", text(&ran.stderr));

    let unknown = format!("{}.pc-1", kanade_shared::ExecId::generate());
    let out = run(&url, &base, &["result", "show", &unknown]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no result"), "{}", text(&out.stderr));
}
