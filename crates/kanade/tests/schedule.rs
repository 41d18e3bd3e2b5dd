//! The real `kanade schedule` against a real backend and agent over a real nats-server: the documents'
//! every-10-seconds sample created, listed, shown and fired; pause, resume, run-now `--wait` and delete; an inline
//! job with a `script_file` beside the schedule; and hostile files and ids refused with a clear error and the
//! usage exit code, without the backend.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::json;
use tokio::process::Command;

mod common;
use common::{ok, ok_json, refused, text};

/// Long enough for the leader lease and a 10-second occurrence.
const PATIENCE: Duration = Duration::from_secs(40);
/// A backend nobody listens on: a command that must not need the backend gets this.
const NO_BACKEND: &str = "http://127.0.0.1:1";

/// The CLI pointed at a test's nats-server and backend with the shared test token.
fn kanade(nats_url: &str, backend_url: &str) -> Command {
    let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url);
    cmd.env("KANADE_BACKEND_URL", backend_url).env("KANADE_AUTH_TOKEN", TEST_TOKEN);
    cmd
}

async fn run(nats_url: &str, backend_url: &str, args: &[&str]) -> Output {
    kanade(nats_url, backend_url).args(args).output().await.expect("run kanade")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

#[tokio::test]
async fn the_every_ten_seconds_sample_is_created_listed_shown_fired_paused_run_now_and_deleted() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let burl = backend.url();
    let _agent = TestAgent::start(&url, "pc-1", &["lab"]).await;
    backend.wait_for_agents(1).await;

    // A schedule whose job is not in the catalogue yet: the backend's refusal, in its words, as bad input.
    let sample = repo("schedules/echo-every-10s.yaml");
    let early = run(&url, &burl, &["schedule", "create", arg(&sample)]).await;
    refused(&early, 2, "job `echo` is not in the catalogue", "a schedule of an unknown job");

    ok(&run(&url, &burl, &["job", "create", arg(&repo("jobs/echo.yaml"))]).await, "job create");
    let created = run(&url, &burl, &["schedule", "create", arg(&sample)]).await;
    let stdout = ok(&created, "schedule create");
    assert!(text(&created.stderr).contains("created schedule `echo-every-10s`"), "{}", text(&created.stderr));
    for line in ["schedule:    echo-every-10s", "job:         echo", "when:        cron */10 * * * * * (UTC)"] {
        assert!(stdout.contains(line), "`{line}` in:\n{stdout}");
    }
    assert!(stdout.contains("state:       active") && stdout.contains("deadline:    10s"), "{stdout}");
    let next = stdout.lines().skip_while(|l| !l.starts_with("next:")).count();
    assert_eq!(next, 5, "five next occurrences: {stdout}");

    let again = run(&url, &burl, &["schedule", "create", arg(&sample), "-o", "json"]).await;
    let again = ok_json(&again, "schedule create again");
    assert_eq!(again["action"], "unchanged", "{again}");
    assert_eq!(
        (again["schedule"]["schedule"]["id"].clone(), again["schedule"]["state"].clone()),
        (json!("echo-every-10s"), json!("active"))
    );
    assert_eq!(again["schedule"]["next"].as_array().map(Vec::len), Some(5), "{again}");

    // Fired on its own within a 10-second mark or two (and the leader lease), and seen by list and show.
    let shown = eventually("a fire of the sample", PATIENCE, || async {
        let out = run(&url, &burl, &["schedule", "show", "echo-every-10s", "-o", "json"]).await;
        let view = ok_json(&out, "schedule show -o json");
        view["fires"].as_array()?.iter().any(|f| f["outcome"] == "fired").then_some(view)
    })
    .await;
    assert_eq!((shown["schedule"]["job_id"].clone(), shown["state"].clone()), (json!("echo"), json!("active")));
    let fire = &shown["fires"][0];
    let exec = fire["exec_id"].as_str().expect("a fire's execution").to_owned();
    assert!(exec.starts_with("echo-every-10s-"), "{fire}");

    let table = ok(&run(&url, &burl, &["schedule", "show", "echo-every-10s"]).await, "schedule show");
    assert!(table.contains("OCCURRENCE") && table.contains("DECIDED BY") && table.contains("REASON"), "{table}");
    assert!(table.lines().any(|l| l.contains(" fired ") && l.contains(&exec)), "{table}");

    let listed = ok_json(&run(&url, &burl, &["schedule", "list", "-o", "json"]).await, "schedule list -o json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["schedule"]["id"], "echo-every-10s");
    assert_eq!(listed[0]["fires"].as_array().map(Vec::len), Some(1), "the latest fire: {listed}");
    let table = ok(&run(&url, &burl, &["schedule", "list"]).await, "schedule list");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["ID", "JOB", "WHEN", "STATE", "NEXT", "LAST"], "{table}");
    let row = lines.next().unwrap_or_default();
    assert!(row.starts_with("echo-every-10s  echo  cron */10 * * * * * (UTC)  active  20"), "{table}");
    assert!(row.contains("Z  fired 20") || row.contains("Z  skipped_overlap 20"), "NEXT then LAST: {table}");

    // Paused: nothing fires, and list and show say so; run-now fires it all the same.
    let paused = run(&url, &burl, &["schedule", "pause", "echo-every-10s"]).await;
    assert!(ok(&paused, "pause").is_empty(), "the table mode says it on stderr only");
    assert!(text(&paused.stderr).contains("paused schedule `echo-every-10s`"), "{}", text(&paused.stderr));
    let table = ok(&run(&url, &burl, &["schedule", "list"]).await, "schedule list");
    assert!(table.contains("  paused  "), "{table}");
    let view = ok_json(&run(&url, &burl, &["schedule", "show", "echo-every-10s", "-o", "json"]).await, "show");
    assert_eq!((view["state"].clone(), view["next"].clone()), (json!("paused"), json!([])), "{view}");
    // Run now in the second of the last fire would be that fire (`already_fired`): start in a later one.
    let last: DateTime<Utc> = serde_json::from_value(view["fires"][0]["occurrence_at"].clone()).expect("a time");
    eventually("a second after the last fire", PATIENCE, || async {
        (Utc::now() >= last + chrono::Duration::seconds(1)).then_some(())
    })
    .await;

    let now = run(&url, &burl, &["schedule", "run-now", "echo-every-10s", "--wait"]).await;
    let stdout = ok(&now, "run-now --wait");
    let stderr = text(&now.stderr);
    let fired = stdout.trim();
    assert!(fired.starts_with("echo-every-10s-") && !fired.contains('\n'), "only the exec id: {stdout}");
    assert!(stderr.contains(&format!("fired schedule `echo-every-10s` now: execution `{fired}`")), "{stderr}");
    assert!(stderr.contains("1/1 done, 1 ok, 0 failed [completed]"), "{stderr}");
    assert_eq!(backend.execution(fired).await["by_status"], json!({ "ok": 1 }));
    let view = ok_json(&run(&url, &burl, &["schedule", "show", "echo-every-10s", "-o", "json"]).await, "show");
    assert_eq!(
        (view["fires"][0]["outcome"].clone(), view["fires"][0]["exec_id"].clone()),
        (json!("run_now"), json!(fired))
    );

    let resumed = run(&url, &burl, &["schedule", "resume", "echo-every-10s", "-o", "json"]).await;
    let resumed = ok_json(&resumed, "resume -o json");
    assert_eq!(resumed["state"], "active", "{resumed}");
    assert_eq!(resumed["next"].as_array().map(Vec::len), Some(5), "{resumed}");

    // An inline job and its script_file beside the schedule, created from another directory.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/hello.sh"), "echo \"from the file\"\n").unwrap();
    let inline = dir.path().join("inline.yaml");
    std::fs::write(
        &inline,
        "id: inline-hello\nevery: 1h\ntarget:\n  pcs: [pc-1]\njob:\n  id: inline-hello\n  version: \"1\"\n  \
         execute:\n    shell: sh\n    script_file: scripts/hello.sh\n    timeout: 30s\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let created = kanade(&url, &burl)
        .args(["schedule", "create", arg(&inline)])
        .current_dir(elsewhere.path())
        .output()
        .await
        .unwrap();
    let stdout = ok(&created, "create with an inline job");
    let stderr = text(&created.stderr);
    assert!(stderr.contains("created schedule `inline-hello`"), "{stderr}");
    assert!(stderr.contains("created job `inline-hello` (inline in the schedule)"), "{stderr}");
    assert!(stdout.contains("when:        every 1h") && stdout.contains("target:      pc:pc-1"), "{stdout}");
    let now = run(&url, &burl, &["schedule", "run-now", "inline-hello", "--wait", "-o", "json"]).await;
    let last = ok_json(&now, "run-now --wait -o json");
    assert_eq!((last["status"].clone(), last["by_status"].clone()), (json!("completed"), json!({ "ok": 1 })), "{last}");
    let exec = last["exec_id"].as_str().unwrap();
    let (_, results) = backend.get(&format!("/api/executions/{exec}/results")).await;
    assert_eq!(results["items"][0]["stdout"], "from the file\n", "{results}");
    let json_now = ok_json(&run(&url, &burl, &["schedule", "run-now", "inline-hello", "-o", "json"]).await, "run-now");
    assert!(json_now["outcome"] == "fired" || json_now["outcome"] == "already_fired", "{json_now}");
    assert!(json_now["exec_id"].as_str().is_some_and(|e| e.starts_with("inline-hello-")), "{json_now}");

    // Run now is refused for once-per-PC schedules by the backend, as bad input.
    let once = dir.path().join("once.yaml");
    std::fs::write(&once, "id: once\njob: echo\nmode: once_per_pc\ntarget:\n  groups: [nobody]\n").unwrap();
    ok(&run(&url, &burl, &["schedule", "create", arg(&once)]).await, "create once");
    let table = ok(&run(&url, &burl, &["schedule", "list"]).await, "schedule list");
    assert!(table.lines().any(|l| l.starts_with("once ") && l.contains("once per PC")), "{table}");
    refused(&run(&url, &burl, &["schedule", "run-now", "once"]).await, 2, "fires once per PC", "run-now once");

    // Deleted: gone, and every command on it exits with the not-found code and the backend's message.
    let deleted = run(&url, &burl, &["schedule", "delete", "echo-every-10s", "-o", "json"]).await;
    assert!(ok(&deleted, "delete").is_empty(), "delete prints nothing on stdout");
    assert!(text(&deleted.stderr).contains("deleted schedule `echo-every-10s`"), "{}", text(&deleted.stderr));
    for args in [
        vec!["schedule", "show", "echo-every-10s"],
        vec!["schedule", "show", "echo-every-10s", "-o", "json"],
        vec!["schedule", "delete", "echo-every-10s"],
        vec!["schedule", "pause", "echo-every-10s"],
        vec!["schedule", "resume", "echo-every-10s"],
        vec!["schedule", "run-now", "echo-every-10s", "--wait"],
    ] {
        refused(&run(&url, &burl, &args).await, 1, "no schedule `echo-every-10s`", &format!("{args:?}"));
    }
    let listed = ok_json(&run(&url, &burl, &["schedule", "list", "-o", "json"]).await, "list");
    let ids: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|v| v["schedule"]["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(!ids.contains(&"echo-every-10s"), "{listed}");

    refused(&run(&url, NO_BACKEND, &["schedule", "list"]).await, 1, "cannot reach the backend", "no backend");
}

#[tokio::test]
async fn hostile_schedule_files_and_ids_are_clear_usage_errors_without_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let good = "id: fine\njob: echo\nevery: 10m\n";
    let binary = write("binary.yaml", &[0x89, b'P', b'N', b'G', 0xff, 0xfe, 0, 0, 0x80]);
    let nul = write("nul.yaml", b"id: fine\0\x01\x02");
    let huge = write("huge.yaml", format!("{good}description: {}\n", "x".repeat(1024 * 1024)).as_bytes());
    let yaml = write("broken.yaml", b"id: [fine\njob: echo\n");
    let unknown = write("unknown.yaml", format!("{good}colour: blue\n").as_bytes());
    let nested = write("nested.yaml", b"id: fine\nevery: 10m\njob:\n  id: j\n  version: \"1\"\n  execute:\n    shell: sh\n    script: echo\n    retries: 3\n");
    let long_id = write("long.yaml", format!("id: {}\njob: echo\nevery: 10m\n", "a".repeat(41)).as_bytes());
    let no_when = write("nowhen.yaml", b"id: fine\njob: echo\n");
    let bad_cron = write("cron.yaml", b"id: fine\njob: echo\ncron: \"61 * * * *\"\n");
    let missing_script = write(
        "script.yaml",
        b"id: fine\nevery: 10m\njob:\n  id: j\n  version: \"1\"\n  execute:\n    shell: sh\n    script_file: nothere.sh\n",
    );
    let cases: Vec<(PathBuf, &str)> = vec![
        (dir.path().join("nothere.yaml"), "cannot read"),
        (dir.path().to_owned(), "is a directory, not a schedule file"),
        (binary, "is not UTF-8 text"),
        (nul, "nul.yaml"),
        (huge, "the file is over 1048576 bytes, the limit"),
        (yaml, "line"),
        (unknown, "colour"),
        (nested, "job.execute.retries"),
        (long_id, "longer than 40 characters"),
        (no_when, "says not when"),
        (bad_cron, "is not a cron pattern"),
        (missing_script, "job.execute.script_file: `"),
    ];
    for (path, wanted) in &cases {
        for command in ["validate", "create"] {
            let out = run("nats://127.0.0.1:1", NO_BACKEND, &["schedule", command, arg(path)]).await;
            refused(&out, 2, wanted, &format!("{command} {}", path.display()));
            assert!(!text(&out.stderr).contains("cannot reach the backend"), "checked here first");
        }
    }

    // A good file validates without anything running, and says when it fires next.
    let fine = write("fine.yaml", good.as_bytes());
    let out = run("nats://127.0.0.1:1", NO_BACKEND, &["schedule", "validate", arg(&fine)]).await;
    let stdout = ok(&out, "validate a good file");
    assert!(stdout.contains("fine") && stdout.contains("every 10m"), "{stdout}");
    let checked = ok_json(
        &run("nats://127.0.0.1:1", NO_BACKEND, &["schedule", "validate", arg(&fine), "-o", "json"]).await,
        "validate -o json",
    );
    assert_eq!(checked["schedule"]["when"], json!({ "kind": "every", "every_ms": 600_000 }), "{checked}");
    assert_eq!(checked["next"].as_array().map(Vec::len), Some(5), "{checked}");
    let schema = ok(&run("nats://127.0.0.1:1", NO_BACKEND, &["schedule", "schema"]).await, "schema");
    assert_eq!(schema, kanade_shared::schedule::json_schema());

    // Ids that are not ids are refused before anything is asked.
    let long = "a".repeat(41);
    let huge = "a".repeat(10_000);
    for id in [long.as_str(), huge.as_str(), "Bad Id", "", "../etc", "a/b"] {
        for command in ["show", "delete", "pause", "resume", "run-now"] {
            let out = run("nats://127.0.0.1:1", NO_BACKEND, &["schedule", command, id]).await;
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {id:.50}: {stderr}");
            assert!(stderr.contains("schedule id"), "{command} {id:.50}: {stderr}");
            assert!(!stderr.contains("panicked") && !stderr.contains("cannot reach"), "{stderr}");
        }
    }
    let out = run("nats://127.0.0.1:1", NO_BACKEND, &["schedule", "show", &long]).await;
    assert!(text(&out.stderr).contains("is longer than 40 characters"), "{}", text(&out.stderr));
}
