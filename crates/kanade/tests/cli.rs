//! The real `kanade` binary against a real nats-server, backend and agent: the walking system end to end, exit
//! codes, live output, kill, JetStream setup, and bad input.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kanade_shared::wire::ExecResult;
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, eventually, init_logging};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(20);

fn kanade(nats_url: &str) -> Command {
    kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url)
}

async fn run(nats_url: &str, args: &[&str]) -> Output {
    kanade(nats_url).args(args).output().await.expect("run kanade")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_script_sent_from_the_cli_runs_on_an_agent_and_its_result_lands_in_the_backend() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _agent = TestAgent::start(&url, "pc-1", &["canary"]).await;

    let hello = run(&url, &["run", "pc-1", "--", "echo hello"]).await;
    assert_eq!(hello.status.code(), Some(0), "{}", text(&hello.stderr));
    assert_eq!(text(&hello.stdout), "hello\n");

    let three = run(&url, &["run", "pc-1", "--", "exit 3"]).await;
    assert_eq!(three.status.code(), Some(3), "{}", text(&three.stderr));

    let json = run(&url, &["run", "pc-1", "-o", "json", "--", "echo from json; echo err >&2"]).await;
    assert_eq!(json.status.code(), Some(0));
    let result: ExecResult = serde_json::from_slice(&json.stdout).expect("-o json prints the result");
    assert_eq!((result.stdout.as_str(), result.stderr.as_str()), ("from json\n", "err\n"));

    let results = eventually("all three results are in /api/results", PATIENCE, || async {
        let (status, body) = backend.get("/api/results?pc_id=pc-1").await;
        let body = body["items"].clone();
        assert_eq!(status, 200, "{body}");
        (body.as_array()?.len() == 3).then_some(body)
    })
    .await;
    let by_status: Vec<(&str, i64)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["status"].as_str().unwrap(), r["exit_code"].as_i64().unwrap()))
        .collect();
    assert_eq!(by_status, vec![("ok", 0), ("failed", 3), ("ok", 0)], "newest first");
    assert_eq!(results[2]["stdout"], "hello\n");
    assert_eq!(results[0]["result_id"], format!("{}.pc-1", result.exec_id));

    let (status, execution) = backend.get(&format!("/api/executions/{}", result.exec_id)).await;
    assert_eq!(status, 200);
    assert_eq!(execution["results"], 1);
    assert_eq!(execution["by_status"], serde_json::json!({"ok": 1}));

    let (status, agent) = backend.get("/api/agents/pc-1").await;
    assert_eq!(status, 200);
    assert_eq!(agent["online"], true);
    assert_eq!(agent["groups"], serde_json::json!(["canary"]));
    assert_eq!(agent["agent_version"], kanade_agent::BUILD_VERSION);
}

#[tokio::test]
async fn timeouts_skips_and_kills_have_their_own_exit_codes() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _js) = connect(&url).await;
    let _agent = TestAgent::start(&url, "pc-1", &[]).await;

    let timeout = run(&url, &["run", "pc-1", "--timeout", "1s", "--", "sleep 30"]).await;
    assert_eq!(timeout.status.code(), Some(124), "{}", text(&timeout.stderr));
    assert!(text(&timeout.stderr).contains("timed out after 1s"), "{}", text(&timeout.stderr));

    let skipped = run(&url, &["run", "pc-1", "--shell", "powershell", "--", "Write-Output hi"]).await;
    assert_eq!(skipped.status.code(), Some(125));
    assert!(text(&skipped.stderr).contains("skipped the run (unsupported_shell)"), "{}", text(&skipped.stderr));

    let mut started = client.subscribe("events.started.pc-1.*").await.unwrap();
    client.flush().await.unwrap();
    let long = kanade(&url)
        .args(["run", "pc-1", "--", "sleep 30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let event = tokio::time::timeout(PATIENCE, started.next()).await.unwrap().unwrap();
    let exec = event.subject.rsplit('.').next().unwrap().to_owned();
    let kill = run(&url, &["kill", &exec, "-o", "json"]).await;
    assert_eq!(kill.status.code(), Some(0), "{}", text(&kill.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&kill.stdout).unwrap();
    assert_eq!(answer["killed"], serde_json::json!([{ "pc_id": "pc-1", "exec_id": exec }]));
    let killed = tokio::time::timeout(PATIENCE, long.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(killed.status.code(), Some(137), "{}", text(&killed.stderr));
}

#[tokio::test]
async fn output_is_printed_while_the_script_still_runs() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let _agent = TestAgent::start(&url, "pc-1", &[]).await;
    let scratch = tempfile::tempdir().unwrap();
    let flag = scratch.path().join("go-on");

    // The script cannot finish until the test has seen its first line, so the line must have come live.
    let script = format!("echo first; while [ ! -f {} ]; do sleep 0.05; done; echo second", flag.display());
    let mut child = kanade(&url).args(["run", "pc-1", "--", &script]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap();
    assert_eq!(first.as_deref(), Some("first"));
    std::fs::write(&flag, "").unwrap();
    let second = tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap();
    assert_eq!(second.as_deref(), Some("second"));
    assert_eq!(
        tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap(),
        None,
        "nothing printed twice"
    );
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn with_no_live_agent_run_fails_fast_and_says_why() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;

    let started = Instant::now();
    let out = run(&url, &["run", "nobody", "--", "echo hi"]).await;
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("no agent `nobody` is connected"), "{}", text(&out.stderr));

    let out = run("nats://127.0.0.1:1", &["run", "pc-1", "--", "echo hi"]).await;
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("cannot connect to NATS at `nats://127.0.0.1:1`"), "{}", text(&out.stderr));

    let out = run(&url, &["ping", "nobody"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no agent `nobody` is connected"));
}

#[tokio::test]
async fn bad_command_lines_are_usage_errors_that_name_the_problem() {
    // No server is needed: every one of these is refused before anything connects.
    let url = "nats://127.0.0.1:1";
    // One argument may hold at most 128 KiB on Linux, so the oversized script comes in five parts.
    let part = "x".repeat(120 * 1024);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "Bad.PC", "--", "echo"], "pc_id `Bad.PC` contains `B`"),
        (vec!["run", "pc-1"], "missing script"),
        (vec!["run", "pc-1", "--"], "missing script"),
        (vec!["run", "pc-1", "--", "  "], "missing script"),
        (vec!["run", "pc-1", "--timeout", "0s", "--", "x"], "greater than zero"),
        (vec!["run", "pc-1", "--timeout", "soon", "--", "x"], "write e.g."),
        (vec!["run", "pc-1", "--shell", "fish", "--", "x"], "possible values"),
        (vec!["run", "pc-1", "--", &part, &part, &part, &part, &part], "the limit is"),
        (vec!["kill", "not.valid"], "exec id `not.valid`"),
        (vec!["ping", ""], "must not be empty"),
        (vec!["jetstream", "setup", "--replicas", "9"], "9 is not in 1..=5"),
        (vec!["-o", "yaml", "jetstream", "status"], "possible values"),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, expected) in cases {
        let out = run(url, &args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{:?}: {stderr}", &args[..args.len().min(4)]);
        assert!(stderr.contains(expected), "{:?}: expected {expected:?} in {stderr}", &args[..args.len().min(4)]);
        assert!(out.stdout.is_empty(), "errors go to stderr");
    }
}

/// A broker whose store cannot hold `PERF`'s 4 GiB cap (one on a small or full disk) still gets every resource:
/// `PERF` keeps the largest halving of its cap that fits, and a second setup finds nothing to change.
#[tokio::test]
async fn jetstream_setup_fits_the_perf_buffer_to_a_small_broker() {
    init_logging();
    let nats = NatsServer::start_with_max_store(1536 * 1024 * 1024);
    let url = nats.url();
    let first = run(&url, &["jetstream", "setup", "-o", "json"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert!(first.as_array().unwrap().iter().all(|c| c["action"] == "created"), "{first}");
    let js = async_nats::jetstream::new(kanade_testkit::client(&url).await);
    let perf = js.get_stream("PERF").await.unwrap().cached_info().config.clone();
    assert_eq!(perf.max_bytes, 1024 * 1024 * 1024);
    let second = run(&url, &["jetstream", "setup", "-o", "json"]).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    assert!(text(&second.stderr).contains("cannot reserve this stream's size cap"), "{}", text(&second.stderr));
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert!(second.as_array().unwrap().iter().all(|c| c["action"] == "unchanged"), "{second}");
}

#[tokio::test]
async fn jetstream_setup_is_idempotent_and_status_reports_every_resource() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();

    let status = run(&url, &["jetstream", "status"]).await;
    assert_eq!(status.status.code(), Some(1));
    assert!(text(&status.stderr).contains("missing: run `kanade jetstream setup`"));

    let first = run(&url, &["jetstream", "setup", "-o", "json"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let total = kanade_shared::resources::STREAMS.len()
        + kanade_shared::resources::KV_BUCKETS.len()
        + kanade_shared::resources::OBJECT_STORES.len();
    assert_eq!(first.as_array().unwrap().len(), total);
    assert!(first.as_array().unwrap().iter().all(|c| c["action"] == "created"), "{first}");

    let second = run(&url, &["jetstream", "setup", "-o", "json"]).await;
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert!(second.as_array().unwrap().iter().all(|c| c["action"] == "unchanged"), "{second}");

    // Drift is repaired and reported field by field.
    let client = kanade_testkit::client(&url).await;
    let js = async_nats::jetstream::new(client);
    let mut exec = js.get_stream("EXEC").await.unwrap().cached_info().config.clone();
    exec.max_age = Duration::from_secs(2 * 60 * 60);
    js.update_stream(exec).await.unwrap();
    let third = run(&url, &["jetstream", "setup", "-o", "json"]).await;
    let third: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    let exec_change = third.as_array().unwrap().iter().find(|c| c["name"] == "EXEC").unwrap();
    assert_eq!(exec_change["action"], "updated");
    assert_eq!(exec_change["fields"], serde_json::json!(["max_age"]));

    let status = run(&url, &["jetstream", "status", "-o", "json"]).await;
    assert_eq!(status.status.code(), Some(0));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status.as_array().unwrap().len(), total);
    assert!(status.as_array().unwrap().iter().all(|s| s["exists"] == true && s["replicas"] == 1));
    let table = run(&url, &["jetstream", "status"]).await;
    assert!(text(&table.stderr).contains("no backend leads"), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    for name in ["EXEC", "RESULTS", "script_current", "agent_releases"] {
        assert!(table.contains(name), "{name} missing from:\n{table}");
    }

    // A `leases` bucket from before leadership (no time to live) is given its TTL.
    let mut leases = js.get_stream("KV_leases").await.unwrap().cached_info().config.clone();
    assert_eq!(leases.max_age, kanade_shared::resources::LEADER_TTL);
    leases.max_age = Duration::ZERO;
    js.update_stream(leases).await.unwrap();
    let fourth = run(&url, &["jetstream", "setup", "-o", "json"]).await;
    let fourth: serde_json::Value = serde_json::from_slice(&fourth.stdout).unwrap();
    let change = fourth.as_array().unwrap().iter().find(|c| c["name"] == "leases").unwrap();
    assert_eq!(
        (&change["action"], &change["fields"]),
        (&serde_json::json!("updated"), &serde_json::json!(["max_age"]))
    );

    // Which backend leads.
    let backend = kanade_testkit::TestBackend::start(&url).await;
    let lease = kanade_testkit::eventually("a backend leads", Duration::from_secs(20), || async {
        let status = run(&url, &["jetstream", "status", "-o", "json"]).await;
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).ok()?;
        status.as_array()?.iter().find(|s| s["name"] == "leases")?.get("lease").cloned()
    })
    .await;
    let (_, health) = backend.get("/health").await;
    assert_eq!(lease["holder"], health["instance"], "{lease} {health}");
    let table = run(&url, &["jetstream", "status"]).await;
    let note = text(&table.stderr);
    assert!(note.contains(&format!("backend `{}` leads", health["instance"].as_str().unwrap())), "{note}");
}

#[tokio::test]
async fn ping_prints_version_uptime_and_round_trip() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let _agent = TestAgent::start(&url, "pc-1", &[]).await;
    let table = run(&url, &["ping", "pc-1"]).await;
    assert_eq!(table.status.code(), Some(0));
    let table = text(&table.stdout);
    assert!(table.starts_with("PC    VERSION"), "{table}");
    assert!(table.contains(kanade_agent::BUILD_VERSION) && table.contains("ms"), "{table}");
    let json = run(&url, &["ping", "pc-1", "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["pc_id"], "pc-1");
    assert!(json["rtt_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(json["agent_version"], kanade_agent::BUILD_VERSION);
}

#[tokio::test]
async fn a_closed_stdout_is_not_a_panic() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    // `true` exits at once, so every write kanade makes hits a closed pipe.
    let script = format!("{} jetstream status | true; exit ${{PIPESTATUS[0]}}", env!("CARGO_BIN_EXE_kanade"));
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("KANADE_NATS_URL", &url)
        .envs(kanade_testkit::fleet().cli_env())
        .output()
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[tokio::test]
async fn job_manifests_validate_with_precise_errors_and_the_schema_is_printed() {
    // No server: validation is local.
    let url = "nats://127.0.0.1:1";
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ok = run(url, &["job", "validate", root.join("jobs").to_str().unwrap()]).await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("wave-test"), "{}", text(&ok.stdout));

    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown.yaml",
            "id: a\nversion: 1\ntarget: {all: true}\nexecute: {shell: sh, script: x}\nretries: 3\n",
            "unknown field `retries`",
        ),
        (
            "two.yaml",
            "id: a\nversion: 1\ntarget: {all: true}\nexecute: {shell: sh, script: x, script_object: s/1}\n",
            "more than one script source",
        ),
        (
            "duration.yaml",
            "id: a\nversion: 1\ntarget: {all: true}\nexecute: {shell: sh, script: x, timeout: forever}\n",
            "execute.timeout: line 4 column",
        ),
        ("nosource.yaml", "id: a\nversion: 1\ntarget: {all: true}\nexecute: {shell: sh}\n", "has no script"),
    ];
    for (name, body, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let out = run(url, &["job", "validate", path.to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(name) && stderr.contains(expected), "{name}: expected {expected:?} in {stderr}");
    }

    let schema = run(url, &["job", "schema"]).await;
    let committed = std::fs::read_to_string(root.join("schema/job-manifest.schema.json")).unwrap();
    assert_eq!(text(&schema.stdout), committed);
}

#[tokio::test]
async fn scripts_are_published_once_and_jobs_are_stored_all_or_nothing() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("deploy.ps1");
    std::fs::write(&script, "Write-Output deploy\n").unwrap();
    // sha256("Write-Output deploy\n")
    let expected = {
        use std::io::Write;
        let mut child =
            std::process::Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(b"Write-Output deploy\n").unwrap();
        text(&child.wait_with_output().unwrap().stdout).split_whitespace().next().unwrap().to_owned()
    };

    let published = run(&url, &["script", "publish", "deploy-backend", "0.43.0", script.to_str().unwrap()]).await;
    assert_eq!(published.status.code(), Some(0), "{}", text(&published.stderr));
    assert_eq!(text(&published.stdout).trim(), expected);
    let again = run(&url, &["script", "publish", "deploy-backend", "0.43.0", script.to_str().unwrap()]).await;
    assert_eq!(again.status.code(), Some(0));
    assert!(text(&again.stderr).contains("already published with these bytes"));
    std::fs::write(&script, "Write-Output changed\n").unwrap();
    let changed = run(&url, &["script", "publish", "deploy-backend", "0.43.0", script.to_str().unwrap()]).await;
    assert_eq!(changed.status.code(), Some(1));
    assert!(text(&changed.stderr).contains("never changes"), "{}", text(&changed.stderr));
    let listed = run(&url, &["script", "list", "-o", "json"]).await;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["sha256"], expected);

    let huge = dir.path().join("huge.ps1");
    std::fs::write(&huge, vec![b'x'; 600 * 1024]).unwrap();
    let refused = run(&url, &["script", "publish", "huge", "1", huge.to_str().unwrap()]).await;
    assert!(text(&refused.stderr).contains("the limit for scripts"), "{}", text(&refused.stderr));
    let bad_version = run(&url, &["script", "publish", "x", "1 0", script.to_str().unwrap()]).await;
    assert_eq!(bad_version.status.code(), Some(2));

    // A manifest naming a script object that does not exist stores nothing, not even its valid neighbours.
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    let install = "id: install\nversion: 0.43.0\ntarget: {pcs: [host-1]}\nexecute: {shell: powershell, script_object: deploy-backend/0.43.0}\n";
    std::fs::write(jobs.join("a-install.yaml"), install).unwrap();
    std::fs::write(
        jobs.join("b-missing.yaml"),
        install.replace("id: install", "id: other").replace("0.43.0}", "9.9.9}"),
    )
    .unwrap();
    let refused = run(&url, &["job", "create", jobs.to_str().unwrap()]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("`deploy-backend/9.9.9` is not in the `scripts` object store"),
        "{}",
        text(&refused.stderr)
    );
    let listed = run(&url, &["job", "list", "-o", "json"]).await;
    assert_eq!(text(&listed.stdout).trim(), "[]");

    std::fs::remove_file(jobs.join("b-missing.yaml")).unwrap();
    let created = run(&url, &["job", "create", jobs.to_str().unwrap()]).await;
    assert_eq!(created.status.code(), Some(0), "{}", text(&created.stderr));
    assert!(text(&created.stdout).contains("created"));
    let shown = run(&url, &["job", "show", "install", "-o", "json"]).await;
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["script_sha256"], expected);
    assert_eq!(shown["manifest"], install);
    let yaml = run(&url, &["job", "show", "install"]).await;
    assert_eq!(text(&yaml.stdout), install);
    let updated = run(&url, &["job", "create", jobs.join("a-install.yaml").to_str().unwrap()]).await;
    assert!(text(&updated.stdout).contains("updated"));
    let deleted = run(&url, &["job", "delete", "install"]).await;
    assert_eq!(deleted.status.code(), Some(0));
    let gone = run(&url, &["job", "show", "install"]).await;
    assert!(text(&gone.stderr).contains("no job `install`"));
}

#[tokio::test]
async fn revoke_and_unrevoke_set_the_job_status_without_a_backend() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (_client, js) = connect(&url).await;
    let kv = js.get_key_value(kanade_shared::resources::KV_SCRIPT_STATUS).await.unwrap();

    let revoked = run(&url, &["revoke", "patch"]).await;
    assert_eq!(revoked.status.code(), Some(0), "{}", text(&revoked.stderr));
    assert!(text(&revoked.stderr).contains("revoked `patch`"));
    assert_eq!(kv.get("patch").await.unwrap().unwrap(), "REVOKED");
    let allowed = run(&url, &["unrevoke", "patch"]).await;
    assert_eq!(allowed.status.code(), Some(0));
    assert_eq!(kv.get("patch").await.unwrap().unwrap(), "ACTIVE");
    let bad = run(&url, &["revoke", "Not.A.Job"]).await;
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn operator_actions_are_audited_and_listed_by_the_backend() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _agent = TestAgent::start(&url, "pc-1", &[]).await;
    let as_operator = |who: &'static str, args: &'static [&'static str]| {
        let mut cmd = kanade(&url);
        cmd.env("KANADE_OPERATOR", who).args(args);
        cmd
    };
    assert!(as_operator("Jane.Doe", &["revoke", "patch"]).output().await.unwrap().status.success());
    assert!(as_operator("bob", &["run", "pc-1", "--", "true"]).output().await.unwrap().status.success());
    assert!(as_operator("bob", &["unrevoke", "patch"]).output().await.unwrap().status.success());

    let events = eventually("three audit events", PATIENCE, || async {
        let (status, body) = backend.get("/api/audit").await;
        let body = body["items"].clone();
        assert_eq!(status, 200, "{body}");
        (body.as_array()?.len() == 3).then_some(body)
    })
    .await;
    let summary: Vec<(&str, &str, &str)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(summary, vec![("bob", "unrevoke", "patch"), ("bob", "run", "pc-1"), ("jane-doe", "revoke", "patch")]);
    assert_eq!(events[1]["source"], "cli");
    assert!(events[1]["details"]["exec_id"].is_string());

    let (_, only) = backend.get("/api/audit?actor=jane-doe").await;
    let only = only["items"].clone();
    assert_eq!(only.as_array().unwrap().len(), 1);
    let (_, runs) = backend.get("/api/audit?action=run&since=1h").await;
    let runs = runs["items"].clone();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    let (_, future) = backend.get("/api/audit?since=2999-01-01T00:00:00Z").await;
    let future = future["items"].clone();
    assert_eq!(future.as_array().unwrap().len(), 0);
    let listed = kanade(&url)
        .args(["audit", "--action", "revoke", "-o", "json"])
        .env("KANADE_BACKEND_URL", backend.url())
        .env("KANADE_AUTH_TOKEN", kanade_testkit::TEST_TOKEN)
        .output()
        .await
        .unwrap();
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["items"][0]["actor"], "jane-doe");
    let refused = kanade(&url).args(["audit"]).env("KANADE_BACKEND_URL", backend.url()).output().await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("401"), "{}", text(&refused.stderr));
    let table = kanade(&url)
        .args(["audit", "--since", "1h"])
        .env("KANADE_BACKEND_URL", backend.url())
        .env("KANADE_AUTH_TOKEN", kanade_testkit::TEST_TOKEN)
        .output()
        .await
        .unwrap();
    assert!(text(&table.stdout).contains("jane-doe"), "{}", text(&table.stdout));
    for bad in ["since=yesterday", "actor=Bad.Actor", "limit=0", "colour=red"] {
        let (status, body) = backend.get(&format!("/api/audit?{bad}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")), "{bad}");
    }
}

#[tokio::test]
async fn kanade_agent_events_shows_a_timeline_and_the_fleet_by_kind() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let _ = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let _agent = TestAgent::start(&url, "pc-1", &[]).await;
    let events = |args: &[&str]| {
        let mut command = kanade(&url);
        command
            .arg("agent")
            .arg("events")
            .args(args)
            .env("KANADE_BACKEND_URL", backend.url())
            .env("KANADE_AUTH_TOKEN", kanade_testkit::TEST_TOKEN);
        command
    };
    let listed = eventually("the agent's start listed by the CLI", PATIENCE, || async {
        let output = events(&["pc-1", "-o", "json"]).output().await.ok()?;
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        (listed.as_array()?.len() == 1).then_some(listed)
    })
    .await;
    assert_eq!(listed[0]["kind"], "agent_started");
    assert_eq!(listed[0]["details"]["after_update"], false);

    let fleet = events(&["--all", "--kind", "agent_started", "--since", "1h", "--distinct", "--limit", "700"])
        .output()
        .await
        .unwrap();
    assert_eq!(fleet.status.code(), Some(0), "{}", text(&fleet.stderr));
    let table = text(&fleet.stdout);
    assert!(table.starts_with("AT") && table.contains("pc-1") && table.contains("agent_started"), "{table}");

    // Refused by the CLI itself, or by the backend with its message: exit 2 (usage) or 1, never a panic.
    for (args, code, said) in [
        (&["PC ONE"][..], 2, "invalid"),
        (&[][..], 2, "required"),
        (&["pc-1", "--all"][..], 2, "cannot be used with"),
        (&["pc-1", "--distinct"][..], 1, "--all"),
        (&["pc-1", "--limit", "0"][..], 2, "0"),
        (&["pc-1", "--kind", "Agent Started"][..], 1, "not a timeline kind"),
        (&["pc-1", "--since", "last tuesday"][..], 1, "neither a duration"),
    ] {
        let output = events(args).output().await.unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
}
