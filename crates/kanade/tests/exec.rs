//! The real `kanade` binary firing catalogued jobs through a real backend at real agents over a real nats-server:
//! `exec` and `deploy` with `--wait` and their exit codes, the two-person rule with `approve` and `reject`,
//! `kill --job` with and without the backend, and `executions`.

use std::process::Output;
use std::time::Duration;

use futures::StreamExt;
use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::{Value, json};
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(20);

/// The CLI pointed at a test's nats-server and backend, as an operator holding `token`.
fn kanade(nats_url: &str, backend_url: &str, token: &str) -> Command {
    let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url);
    cmd.env("KANADE_BACKEND_URL", backend_url).env("KANADE_AUTH_TOKEN", token);
    cmd
}

/// Runs the CLI with the shared test token.
async fn run(nats_url: &str, backend_url: &str, args: &[&str]) -> Output {
    kanade(nats_url, backend_url, TEST_TOKEN).args(args).output().await.expect("run kanade")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a zero exit and returns the exec id a firing command prints as its first stdout line.
fn exec_id_of(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default().trim().to_owned();
    assert!(!first.is_empty(), "no exec id on stdout; stderr: {}", text(&out.stderr));
    first
}

/// A nats-server, a backend and agents in group `lab`, all known to the backend.
struct World {
    nats: NatsServer,
    url: String,
    client: async_nats::Client,
    backend: TestBackend,
    burl: String,
    agents: Vec<TestAgent>,
}

impl World {
    async fn start(pcs: &[&str]) -> Self {
        init_logging();
        let nats = NatsServer::start();
        let url = nats.url();
        let (client, _) = connect(&url).await;
        let backend = TestBackend::start(&url).await;
        let burl = backend.url();
        let mut agents = Vec::new();
        for pc in pcs {
            agents.push(TestAgent::start(&url, pc, &["lab"]).await);
        }
        backend.wait_for_agents(pcs.len()).await;
        Self { nats, url, client, backend, burl, agents }
    }
}

/// A job for `sh` with the given target (and any further YAML).
fn manifest(id: &str, script: &str, extra: &str) -> String {
    format!(
        "id: {id}\nversion: \"1.0\"\ndescription: test job\nexecute:\n  shell: sh\n  script: '{script}'\n  timeout: 30s\n{extra}"
    )
}

/// Writes the manifests into a temp dir and stores them all with `kanade job create <dir>`.
async fn create_jobs(nats_url: &str, manifests: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in manifests {
        std::fs::write(dir.path().join(format!("{name}.yaml")), body).unwrap();
    }
    let created = run(nats_url, "http://127.0.0.1:1", &["job", "create", dir.path().to_str().unwrap()]).await;
    assert_eq!(created.status.code(), Some(0), "job create: {}", text(&created.stderr));
}

/// Waits for the `events.started` of `exec` on `pc`, so a kill finds the script running.
async fn started(events: &mut async_nats::Subscriber, pc: &str, exec: &str) {
    let want = format!("events.started.{pc}.{exec}");
    tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.next().await {
            if event.subject.as_str() == want {
                return;
            }
        }
        panic!("the started events ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no {want} within {PATIENCE:?}"));
}

#[tokio::test]
async fn exec_prints_the_exec_id_and_wait_exits_by_the_outcome() {
    let World { nats: _nats, url, backend, burl, agents: _agents, .. } = World::start(&["pc-1", "pc-2"]).await;
    let lab = "target:\n  groups: [lab]\n";
    create_jobs(
        &url,
        &[("hello", manifest("hello", "echo hello", lab)), ("broken", manifest("broken", "exit 3", lab))],
    )
    .await;

    let ok = run(&url, &burl, &["exec", "hello", "--pcs", "pc-1", "--wait"]).await;
    let exec = exec_id_of(&ok);
    assert_eq!(text(&ok.stdout), format!("{exec}\n"), "table mode prints only the id on stdout");
    let stderr = text(&ok.stderr);
    assert!(stderr.contains(&format!("execution `{exec}` of `hello`")), "{stderr}");
    assert!(stderr.contains("1/1 done, 1 ok, 0 failed [completed]"), "{stderr}");
    let view = backend.execution(&exec).await;
    assert_eq!(view["exec_id"], exec.as_str());
    assert_eq!((view["status"].clone(), view["target_count"].clone()), (json!("completed"), json!(1)), "{view}");
    assert_eq!(view["by_status"], json!({ "ok": 1 }));

    // `-o json --wait` prints the final view, and only that.
    let json_out = run(&url, &burl, &["exec", "hello", "-o", "json", "--wait"]).await;
    assert_eq!(json_out.status.code(), Some(0), "{}", text(&json_out.stderr));
    let last: Value = serde_json::from_slice(&json_out.stdout).expect("-o json --wait prints one JSON view");
    assert_eq!((last["status"].clone(), last["target_count"].clone()), (json!("completed"), json!(2)), "{last}");
    assert_eq!(last["by_status"], json!({ "ok": 2 }), "the job's own target: the whole group");

    let failed = run(&url, &burl, &["exec", "broken", "--pcs", "pc-1,pc-2", "--wait"]).await;
    let stderr = text(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2/2 done, 0 ok, 2 failed [completed]"), "{stderr}");
    let broken = text(&failed.stdout).trim().to_owned();
    assert_eq!(backend.execution(&broken).await["by_status"], json!({ "failed": 2 }));
    let (_, results) = backend.get(&format!("/api/executions/{broken}/results")).await;
    let results = results["items"].clone();
    let codes: Vec<i64> = results.as_array().unwrap().iter().map(|r| r["exit_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [3, 3]);

    // Without --wait the same failure is not the CLI's: it only fired.
    let fired = run(&url, &burl, &["exec", "broken", "--pcs", "pc-1"]).await;
    let fired = exec_id_of(&fired);
    backend.execution_until(&fired, "the unwaited run's result", |v| v["status"] == "completed").await;

    // Waves of the operator's own: the lab group first, then a group nobody is in an hour later.
    let rolled = run(&url, &burl, &["exec", "hello", "--wave", "lab::0", "--wave", "later:1h"]).await;
    let rolled = exec_id_of(&rolled);
    let view = backend.execution(&rolled).await;
    let waves: Vec<(Value, Value, Value)> = view["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["group"].clone(), w["delay_ms"].clone(), w["max_failure_pct"].clone()))
        .collect();
    assert_eq!(
        waves,
        [(json!("lab"), json!(0), json!(0.0)), (json!("later"), json!(3_600_000), json!(100.0))],
        "{view}"
    );
    let bad = run(&url, &burl, &["exec", "hello", "--wave", "lab:1h:150"]).await;
    assert_eq!(bad.status.code(), Some(2), "a bad --wave is a usage error: {}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("`150` is not a number from 0 to 100"), "{}", text(&bad.stderr));

    let unknown = run(&url, &burl, &["exec", "nothere"]).await;
    let stderr = text(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no job `nothere`"), "{stderr}");
    assert!(unknown.stdout.is_empty(), "nothing was fired, so no id: {}", text(&unknown.stdout));

    let no_backend = run(&url, "http://127.0.0.1:1", &["exec", "hello"]).await;
    assert_eq!(no_backend.status.code(), Some(1));
    assert!(text(&no_backend.stderr).contains("cannot reach the backend at `http://127.0.0.1:1`"));
}

#[tokio::test]
async fn deploy_sends_the_script_file_beside_the_manifest_and_fires_it() {
    let World { nats: _nats, url, backend, burl, agents: _agents, .. } = World::start(&["pc-1"]).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/x.sh"), "echo \"from the file\"\necho second line\n").unwrap();
    let manifest = "id: from-file\nversion: \"2.0\"\ndescription: a script beside the manifest\ntarget:\n  \
                    groups: [lab]\nexecute:\n  shell: sh\n  script_file: scripts/x.sh\n  timeout: 30s\n";
    let path = dir.path().join("from-file.yaml");
    std::fs::write(&path, manifest).unwrap();
    // Run from elsewhere: the script is found relative to the manifest, not the working directory.
    let elsewhere = tempfile::tempdir().unwrap();

    let out = kanade(&url, &burl, TEST_TOKEN)
        .args(["deploy", path.to_str().unwrap(), "--wait"])
        .current_dir(elsewhere.path())
        .output()
        .await
        .unwrap();
    let exec = exec_id_of(&out);
    let view = backend.execution(&exec).await;
    assert_eq!((view["job_id"].clone(), view["version"].clone()), (json!("from-file"), json!("2.0")), "{view}");
    assert_eq!(view["by_status"], json!({ "ok": 1 }));
    let (status, results) = backend.get(&format!("/api/executions/{exec}/results")).await;
    let results = results["items"].clone();
    assert_eq!(status, 200, "{results}");
    assert_eq!(results.as_array().unwrap().len(), 1, "{results}");
    assert_eq!(results[0]["pc_id"], "pc-1");
    assert_eq!(results[0]["stdout"], "from the file\nsecond line\n");

    // The job is in the catalogue now, so a plain exec fires the stored script.
    let again = run(&url, &burl, &["exec", "from-file", "--wait"]).await;
    exec_id_of(&again);

    // A missing script file is refused locally, naming the file, and nothing is fired.
    std::fs::remove_file(dir.path().join("scripts/x.sh")).unwrap();
    let missing = run(&url, &burl, &["deploy", path.to_str().unwrap()]).await;
    let stderr = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("x.sh"), "{stderr}");
    let (_, list) = backend.get("/api/executions?job_id=from-file").await;
    let list = list["items"].clone();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn approval_from_the_cli_needs_a_second_operator() {
    let World { nats: _nats, url, backend, burl, agents: _agents, .. } = World::start(&["pc-1"]).await;
    let guarded = manifest("guarded", "echo approved", "target:\n  groups: [lab]\nrequire_approval: true\n");
    create_jobs(&url, &[("guarded", guarded)]).await;
    let (alice, bob) = (kanade_testkit::operator_token("alice"), kanade_testkit::operator_token("bob"));
    let as_token = |token: &str, args: &[&str]| {
        let mut cmd = kanade(&url, &burl, token);
        cmd.args(args);
        cmd
    };

    // Per-operator tokens: identity is proven, whatever name the client claims.
    let requested = as_token(alice, &["exec", "guarded"]).env("KANADE_OPERATOR", "bob").output().await.unwrap();
    let exec = exec_id_of(&requested);
    assert!(text(&requested.stderr).contains("pending approval"), "{}", text(&requested.stderr));
    let view = backend.execution(&exec).await;
    assert_eq!((view["status"].clone(), view["requested_by"].clone()), (json!("pending_approval"), json!("alice")));

    let own = as_token(alice, &["approve", &exec]).env("KANADE_OPERATOR", "bob").output().await.unwrap();
    let stderr = text(&own.stderr);
    assert_eq!(own.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("403") && stderr.contains("`alice` requested execution"), "{stderr}");
    assert!(stderr.contains("cannot approve it"), "{stderr}");
    assert_eq!(backend.execution(&exec).await["status"], "pending_approval");

    // `--wait` on a request nobody has approved says what it waits for, and gives up when told to.
    let waiting = as_token(alice, &["exec", "guarded", "--wait", "--wait-timeout", "1s"]).output().await.unwrap();
    let stderr = text(&waiting.stderr);
    assert_eq!(waiting.status.code(), Some(124), "{stderr}");
    assert!(stderr.contains("waiting for another operator: `kanade approve"), "{stderr}");
    assert!(stderr.contains("stopped waiting"), "{stderr}");
    let abandoned = text(&waiting.stdout).trim().to_owned();
    assert_eq!(backend.execution(&abandoned).await["status"], "pending_approval", "it goes on");

    let approved = as_token(bob, &["approve", &exec]).output().await.unwrap();
    assert_eq!(approved.status.code(), Some(0), "{}", text(&approved.stderr));
    let done = backend.execution_until(&exec, "the approved run", |v| v["status"] == "completed").await;
    assert_eq!((done["decided_by"].clone(), done["by_status"].clone()), (json!("bob"), json!({ "ok": 1 })));
    let twice = as_token(bob, &["approve", &exec]).output().await.unwrap();
    assert_eq!(twice.status.code(), Some(1));
    assert!(text(&twice.stderr).contains("not pending approval"), "{}", text(&twice.stderr));

    // The shared token: the backend takes the operator's word from KANADE_OPERATOR.
    let as_shared = |who: &str, args: &[&str]| {
        let mut cmd = kanade(&url, &burl, TEST_TOKEN);
        cmd.env("KANADE_OPERATOR", who).args(args);
        cmd
    };
    let carols = exec_id_of(&as_shared("carol", &["exec", "guarded"]).output().await.unwrap());
    assert_eq!(backend.execution(&carols).await["requested_by"], "carol");
    let own = as_shared("carol", &["approve", &carols]).output().await.unwrap();
    assert_eq!(own.status.code(), Some(1));
    assert!(text(&own.stderr).contains("`carol` requested execution"), "{}", text(&own.stderr));
    let approved = as_shared("dave", &["approve", &carols, "-o", "json"]).output().await.unwrap();
    assert_eq!(approved.status.code(), Some(0), "{}", text(&approved.stderr));
    let view: Value = serde_json::from_slice(&approved.stdout).expect("-o json prints the view");
    assert_eq!(view["decided_by"], "dave");
    backend.execution_until(&carols, "dave's approved run", |v| v["status"] == "completed").await;

    // A rejection: nothing is sent, the reason is kept.
    let doomed = exec_id_of(&as_token(alice, &["exec", "guarded"]).output().await.unwrap());
    let rejected = as_token(bob, &["reject", &doomed, "--reason", "not today"]).output().await.unwrap();
    assert_eq!(rejected.status.code(), Some(0), "{}", text(&rejected.stderr));
    assert!(text(&rejected.stderr).contains("rejected"), "{}", text(&rejected.stderr));
    let view = backend.execution(&doomed).await;
    assert_eq!((view["status"].clone(), view["decided_by"].clone()), (json!("rejected"), json!("bob")), "{view}");
    assert!(view["status_reason"].as_str().unwrap_or_default().contains("not today"), "{view}");
    let late = as_token(bob, &["approve", &doomed]).output().await.unwrap();
    assert_eq!(late.status.code(), Some(1));
    let (_, results) = backend.get(&format!("/api/executions/{doomed}/results")).await;
    let results = results["items"].clone();
    assert_eq!(results, json!([]), "a rejected execution ran");
}

#[tokio::test]
async fn kill_job_stops_every_run_of_a_job_with_or_without_the_backend() {
    let World { nats: _nats, url, client, backend, burl, agents: _agents } = World::start(&["pc-1"]).await;
    create_jobs(&url, &[("long", manifest("long", "sleep 30", "target:\n  pcs: [pc-1]\n"))]).await;
    let mut events = client.subscribe("events.started.pc-1.*").await.unwrap();
    client.flush().await.unwrap();

    let first = exec_id_of(&run(&url, &burl, &["exec", "long", "--pcs", "pc-1"]).await);
    started(&mut events, "pc-1", &first).await;
    let kill = run(&url, &burl, &["kill", "--job", "long", "-o", "json"]).await;
    assert_eq!(kill.status.code(), Some(0), "{}", text(&kill.stderr));
    let answer: Value = serde_json::from_slice(&kill.stdout).unwrap();
    assert_eq!(answer, json!({ "job_id": "long", "killed": [{ "pc_id": "pc-1", "exec_id": first }] }));
    let view = backend.execution_until(&first, "the killed result", |v| v["status"] == "completed").await;
    assert_eq!(view["by_status"], json!({ "killed": 1 }));

    // A run still waiting out its jitter is killed too, before it ever starts.
    let waiting = exec_id_of(&run(&url, &burl, &["exec", "long", "--jitter", "1h"]).await);
    let answer = eventually("the waiting run is killed", PATIENCE, || async {
        let kill = run(&url, &burl, &["kill", "--job", "long", "--wait", "300ms", "-o", "json"]).await;
        assert_eq!(kill.status.code(), Some(0), "{}", text(&kill.stderr));
        let answer: Value = serde_json::from_slice(&kill.stdout).unwrap();
        (!answer["killed"].as_array()?.is_empty()).then_some(answer)
    })
    .await;
    assert_eq!(answer["killed"], json!([{ "pc_id": "pc-1", "exec_id": waiting }]));
    let view = backend.execution_until(&waiting, "the waiting run's result", |v| v["results"] == 1).await;
    assert_eq!(view["by_status"], json!({ "killed": 1 }), "{view}");

    // A second run, fired while the backend was up, killed with it down: the kill goes over NATS only.
    let second = exec_id_of(&run(&url, &burl, &["exec", "long"]).await);
    started(&mut events, "pc-1", &second).await;
    let data_dir = backend.stop().await;
    let kill = run(&url, &burl, &["kill", "--job", "long", "-o", "json"]).await;
    assert_eq!(kill.status.code(), Some(0), "{}", text(&kill.stderr));
    let answer: Value = serde_json::from_slice(&kill.stdout).unwrap();
    assert_eq!(answer["killed"], json!([{ "pc_id": "pc-1", "exec_id": second }]), "{answer}");
    let table = run(&url, &burl, &["kill", "--job", "long"]).await;
    assert_eq!(table.status.code(), Some(0));
    assert!(text(&table.stderr).contains("no agent reported a running or queued run"), "{}", text(&table.stderr));

    // Back up, the backend catches up on the result it missed.
    let backend = TestBackend::start_in(&url, data_dir, None).await;
    let view = backend.execution_until(&second, "the killed result after the restart", |v| v["results"] == 1).await;
    assert_eq!(view["by_status"], json!({ "killed": 1 }), "{view}");
}

#[tokio::test]
async fn executions_lists_and_shows_what_was_fired() {
    let World { nats: _nats, url, backend, burl, agents: _agents, .. } = World::start(&["pc-1"]).await;
    let lab = "target:\n  groups: [lab]\n";
    create_jobs(
        &url,
        &[
            ("hello", manifest("hello", "echo hello", lab)),
            ("guarded", manifest("guarded", "true", &format!("{lab}require_approval: true\n"))),
        ],
    )
    .await;
    let hello = exec_id_of(&run(&url, &burl, &["exec", "hello", "--wait"]).await);
    let guarded = exec_id_of(&run(&url, &burl, &["exec", "guarded"]).await);

    let table = run(&url, &burl, &["executions"]).await;
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    let stdout = text(&table.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("EXEC") && lines[0].contains("STATUS"), "{stdout}");
    assert_eq!(lines.len(), 3, "a header and two executions: {stdout}");
    assert!(lines[1].starts_with(&guarded) && lines[1].contains("pending_approval"), "newest first: {stdout}");
    assert!(lines[2].starts_with(&hello) && lines[2].contains("1/1 done, 1 ok"), "{stdout}");

    let only = run(&url, &burl, &["executions", "--job", "hello", "-o", "json"]).await;
    let only: Value = serde_json::from_slice(&only.stdout).unwrap();
    let ids: Vec<&str> = only["items"].as_array().unwrap().iter().map(|v| v["exec_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [hello.as_str()]);
    let pending = run(&url, &burl, &["executions", "--status", "pending_approval", "-o", "json"]).await;
    let pending: Value = serde_json::from_slice(&pending.stdout).unwrap();
    assert_eq!(pending["items"].as_array().unwrap().len(), 1, "{pending}");
    assert_eq!(pending["items"][0]["exec_id"], guarded.as_str());

    // One page at a time, from a cursor, or all of them.
    let first = run(&url, &burl, &["executions", "--limit", "1"]).await;
    assert_eq!(text(&first.stdout).lines().count(), 2, "a header and one execution: {}", text(&first.stdout));
    assert!(text(&first.stderr).contains("1 shown; more follow: --all, or --cursor "), "{}", text(&first.stderr));
    let first = run(&url, &burl, &["executions", "--limit", "1", "-o", "json"]).await;
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["items"][0]["exec_id"], guarded.as_str());
    let next = first["next"].as_str().expect("a second page");
    let second = run(&url, &burl, &["executions", "--limit", "1", "--cursor", next, "-o", "json"]).await;
    let second: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!((second["items"][0]["exec_id"].clone(), second["next"].clone()), (json!(hello), Value::Null));
    let all = run(&url, &burl, &["executions", "--all", "-o", "json"]).await;
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!((all["items"].as_array().map(Vec::len), all["next"].clone()), (Some(2), Value::Null));
    for (args, says) in [
        (&["executions", "--limit", "0"][..], "0 is not in 1..=1000"),
        (&["executions", "--limit", "-3"][..], "unexpected argument"),
        (&["executions", "--limit", "1001"][..], "1001 is not in 1..=1000"),
        (&["executions", "--all", "--limit", "5"][..], "cannot be used with"),
        (&["executions", "--cursor", "not a cursor!"][..], "not a cursor"),
    ] {
        let refused = run(&url, &burl, args).await;
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {}", text(&refused.stderr));
        assert!(text(&refused.stderr).contains(says), "{args:?}: {}", text(&refused.stderr));
    }
    let forged = run(&url, &burl, &["executions", "--cursor", "AAAA"]).await;
    assert_eq!(forged.status.code(), Some(1));
    assert!(text(&forged.stderr).contains("cursor is not one this backend hands out"), "{}", text(&forged.stderr));
    // An execution's targets, paged the same way.
    let targets = run(&url, &burl, &["executions", &hello, "--limit", "1"]).await;
    let stdout = text(&targets.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("PC") && l.contains("STATE")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("pc-1") && l.contains("ok")), "{stdout}");

    let shown = run(&url, &burl, &["executions", &hello, "-o", "json"]).await;
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown.stderr));
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown, backend.execution(&hello).await);
    assert_eq!((shown["job_id"].clone(), shown["status"].clone()), (json!("hello"), json!("completed")));
    let described = run(&url, &burl, &["executions", &guarded]).await;
    assert_eq!(described.status.code(), Some(0));
    let stderr = text(&described.stderr);
    assert!(
        stderr.contains(&format!("execution `{guarded}` of `guarded` 1.0: 1 target(s), pending approval")),
        "{stderr}"
    );

    let bogus = run(&url, &burl, &["executions", "--status", "bogus"]).await;
    let stderr = text(&bogus.stderr);
    assert_eq!(bogus.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("status `bogus` is not one of") && stderr.contains("pending_approval"), "{stderr}");
    assert!(bogus.stdout.is_empty(), "{}", text(&bogus.stdout));
    let missing = run(&url, &burl, &["executions", "nothing-here"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no execution `nothing-here`"), "{}", text(&missing.stderr));
    let refused = kanade(&url, &burl, "wrong-token-0123456789abcdef").args(["executions"]).output().await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("401"), "{}", text(&refused.stderr));
}

/// An installer job in the documents' exact shape (id, version, execute {shell, script_file or script_object,
/// timeout, run_as}, require_approval, inventory) and no target.
fn installer(id: &str, source: &str) -> String {
    format!(
        "id: {id}\nversion: \"0.43.0\"\nexecute:\n  shell: sh\n  {source}\n  timeout: 15m\n  run_as: system\n\
         require_approval: false\ninventory:\n  display: [{{field: version, label: Version}}, {{field: path}}]\n"
    )
}

#[tokio::test]
async fn installer_jobs_without_a_target_are_created_and_fired_only_at_the_targets_named() {
    let World { nats: _nats, url, backend, burl, agents: _agents, .. } = World::start(&["host-1", "host-2"]).await;
    // One from the `scripts` object store, one from a file beside the manifest, as the documents' jobs are.
    let script = std::env::temp_dir().join(format!("kanade-installer-{}.sh", std::process::id()));
    std::fs::write(&script, "echo installing the client\n").unwrap();
    let published = run(&url, &burl, &["script", "publish", "deploy-client", "0.43.0", script.to_str().unwrap()]).await;
    assert_eq!(published.status.code(), Some(0), "script publish: {}", text(&published.stderr));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/install-nats.sh"), "echo installing nats\n").unwrap();
    let jobs = [
        ("install-kanade-client", installer("install-kanade-client", "script_object: deploy-client/0.43.0")),
        ("install-kanade-nats", installer("install-kanade-nats", "script_file: scripts/install-nats.sh")),
    ];
    for (name, body) in &jobs {
        std::fs::write(dir.path().join(format!("{name}.yaml")), body).unwrap();
    }
    let created = run(&url, &burl, &["job", "create", dir.path().to_str().unwrap()]).await;
    assert_eq!(created.status.code(), Some(0), "job create: {}", text(&created.stderr));
    let listed = run(&url, &burl, &["job", "list"]).await;
    let stdout = text(&listed.stdout);
    assert_eq!(stdout.matches("none: choose at fire time").count(), 2, "{stdout}");
    let shown = run(&url, &burl, &["job", "show", "install-kanade-nats"]).await;
    assert!(text(&shown.stderr).contains("target: none: choose at fire time"), "{}", text(&shown.stderr));

    // Fired without targets: exit 2, the flags named, and nothing recorded or sent.
    let bare = run(&url, &burl, &["exec", "install-kanade-client"]).await;
    let stderr = text(&bare.stderr);
    assert_eq!(bare.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("job `install-kanade-client` has no target of its own"), "{stderr}");
    assert!(stderr.contains("--pcs") && stderr.contains("--groups") && stderr.contains("--all"), "{stderr}");
    assert!(text(&bare.stdout).is_empty(), "no exec id: {}", text(&bare.stdout));
    let (_, list) = backend.get("/api/executions?job_id=install-kanade-client").await;
    assert_eq!(list["items"], json!([]), "nothing was fired");

    // Hostile flags are refused by the CLI itself (exit 2, clap's usage errors).
    for args in [
        vec!["exec", "install-kanade-client", "--pcs", ""],
        vec!["exec", "install-kanade-client", "--pcs", "host-1,"],
        vec!["exec", "install-kanade-client", "--pcs", "Host 1"],
        vec!["exec", "install-kanade-client", "--groups", ""],
        vec!["exec", "install-kanade-client", "--all", "--pcs", "host-1"],
        vec!["exec", "install-kanade-client", "--all", "--groups", "lab"],
    ] {
        let out = run(&url, &burl, &args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
    }

    // Named, each runs where it was told to on a real agent.
    let one = run(&url, &burl, &["exec", "install-kanade-client", "--pcs", "host-1", "--wait"]).await;
    let exec = exec_id_of(&one);
    assert!(text(&one.stderr).contains("1/1 done, 1 ok"), "{}", text(&one.stderr));
    let (_, results) = backend.get(&format!("/api/executions/{exec}/results")).await;
    let results = results["items"].clone();
    assert_eq!(
        (results[0]["pc_id"].clone(), results[0]["stdout"].clone()),
        (json!("host-1"), json!("installing the client\n"))
    );
    let group = run(&url, &burl, &["exec", "install-kanade-nats", "--groups", "lab", "--wait"]).await;
    let exec = exec_id_of(&group);
    assert!(text(&group.stderr).contains("2/2 done, 2 ok"), "{}", text(&group.stderr));
    let (_, results) = backend.get(&format!("/api/executions/{exec}/results")).await;
    let results = results["items"].clone();
    assert!(results.as_array().unwrap().iter().all(|r| r["stdout"] == "installing nats\n"), "{results}");
    let all = run(&url, &burl, &["exec", "install-kanade-nats", "--all", "--wait"]).await;
    exec_id_of(&all);

    // `kanade deploy` of such a manifest is refused before anything is stored.
    let path = dir.path().join("install-kanade-client.yaml");
    std::fs::write(&path, installer("install-kanade-backend", "script: 'echo backend'")).unwrap();
    let deploy = run(&url, &burl, &["deploy", path.to_str().unwrap()]).await;
    let stderr = text(&deploy.stderr);
    assert_eq!(deploy.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--pcs") && stderr.contains("kanade job create"), "{stderr}");
    let missing = run(&url, &burl, &["job", "show", "install-kanade-backend"]).await;
    assert_eq!(missing.status.code(), Some(1), "not stored: {}", text(&missing.stdout));
    std::fs::remove_file(&script).ok();
}

#[tokio::test]
async fn deploy_version_stores_and_fires_that_version_instead_of_the_file_s() {
    let World { nats: _nats, url, backend, burl, agents: _agents, .. } = World::start(&["pc-1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pinned.yaml");
    std::fs::write(&path, manifest("pinned", "echo $KANADE_JOB_ID", "target:\n  pcs: [pc-1]\n")).unwrap();
    let path = path.to_str().unwrap();

    for bad in ["", "a b", "1.0/2", &"9".repeat(65), "--"] {
        let out = run(&url, &burl, &["deploy", path, "--version", bad]).await;
        assert_eq!(out.status.code(), Some(2), "--version {bad:?}: {}", text(&out.stderr));
    }
    let out = run(&url, &burl, &["deploy", path, "--version", "a b"]).await;
    assert!(text(&out.stderr).contains("must be 1-64 characters"), "{}", text(&out.stderr));
    let (status, _) = backend.get("/api/jobs/pinned").await;
    assert_eq!(status, 404, "nothing was stored");

    let out = run(&url, &burl, &["deploy", path, "--version", "1.1.0+hotfix", "--wait"]).await;
    let exec = exec_id_of(&out);
    let view = backend.execution(&exec).await;
    assert_eq!((view["version"].clone(), view["by_status"].clone()), (json!("1.1.0+hotfix"), json!({ "ok": 1 })));
    let (_, results) = backend.get(&format!("/api/executions/{exec}/results")).await;
    let results = results["items"].clone();
    assert_eq!(results[0]["version"], "1.1.0+hotfix", "the file's `1.0` is not what ran: {results}");
    let listed = run(&url, &burl, &["job", "list", "-o", "json"]).await;
    let jobs: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(jobs[0]["job"]["version"], "1.1.0+hotfix", "{jobs}");
    let shown = run(&url, &burl, &["job", "show", "pinned"]).await;
    assert!(text(&shown.stderr).contains("stored as version `1.1.0+hotfix` (the manifest says `1.0`)"));

    // Without --version the file's own version is deployed again; `kanade --version` is still the CLI's own.
    let out = run(&url, &burl, &["deploy", path, "--wait"]).await;
    assert_eq!(backend.execution(&exec_id_of(&out)).await["version"], "1.0");
    let version = run(&url, &burl, &["--version"]).await;
    assert!(text(&version.stdout).starts_with("kanade "), "{}", text(&version.stdout));
}

#[tokio::test]
async fn agents_results_and_agent_rm_go_through_the_backend() {
    let World { nats: _nats, url, client, backend, burl, agents: _agents } =
        World::start(&["pc-1", "pc-2", "pc-3"]).await;
    let listed = run(&url, &burl, &["agents", "--limit", "2", "-o", "json"]).await;
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let pcs: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|a| a["pc_id"].as_str().unwrap()).collect();
    assert_eq!(pcs, ["pc-1", "pc-2"]);
    assert!(listed["next"].is_string());
    let table =
        run(&url, &burl, &["agents", "--all", "--status", "online", "--group", "lab", "--search", "PC-3"]).await;
    let stdout = text(&table.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.lines().nth(1).unwrap().starts_with("pc-3") && stdout.contains("online"), "{stdout}");
    for (args, says) in [
        (&["agents", "--status", "gone"][..], "invalid value 'gone'"),
        (&["agents", "--group", "Bad.Group"][..], "group"),
        (&["agent", "rm", "PC 1"][..], "pc_id `pc 1`"),
    ] {
        let refused = run(&url, &burl, args).await;
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {}", text(&refused.stderr));
        assert!(text(&refused.stderr).to_lowercase().contains(says), "{args:?}: {}", text(&refused.stderr));
    }
    let too_long = run(&url, &burl, &["agents", "--search", &"x".repeat(300)]).await;
    assert_eq!(too_long.status.code(), Some(1));
    assert!(text(&too_long.stderr).contains("longer than 200"), "{}", text(&too_long.stderr));

    let hello = "id: hello\nversion: \"1.0\"\ndescription: d\nexecute:\n  shell: sh\n  script: echo hi\n  timeout: 30s\ntarget:\n  groups: [lab]\n";
    create_jobs(&url, &[("hello", hello.to_owned())]).await;
    let exec = exec_id_of(&run(&url, &burl, &["exec", "hello", "--wait"]).await);
    let results = run(&url, &burl, &["result", "ls", "--exec", &exec, "--status", "ok", "--all", "-o", "json"]).await;
    assert_eq!(results.status.code(), Some(0), "{}", text(&results.stderr));
    let results: Value = serde_json::from_slice(&results.stdout).unwrap();
    assert_eq!(results["items"].as_array().map(Vec::len), Some(3), "{results}");
    let one = run(&url, &burl, &["result", "ls", "--pc", "pc-2", "--limit", "1"]).await;
    let stdout = text(&one.stdout);
    assert!(stdout.lines().nth(1).is_some_and(|l| l.contains("pc-2") && l.contains(&exec)), "{stdout}");
    let bad = run(&url, &burl, &["result", "ls", "--status", "great"]).await;
    assert_eq!(bad.status.code(), Some(2));

    // Forget an agent that heartbeated once (and never will again); forgetting it twice is an error.
    let ghost =
        kanade_shared::wire::Heartbeat::minimal(kanade_shared::PcId::new("pc-ghost").unwrap(), chrono::Utc::now());
    let payload = serde_json::to_vec(&ghost).unwrap();
    client.publish(kanade_shared::subject::heartbeat(&ghost.pc_id), payload.into()).await.unwrap();
    client.flush().await.unwrap();
    backend.wait_for_agents(4).await;
    let removed = run(&url, &burl, &["agent", "rm", "pc-ghost", "--purge"]).await;
    assert_eq!(removed.status.code(), Some(0), "{}", text(&removed.stderr));
    assert!(text(&removed.stderr).contains("forgot `pc-ghost`"), "{}", text(&removed.stderr));
    assert_eq!(backend.get("/api/agents/pc-ghost").await.0, 404);
    let again = run(&url, &burl, &["agent", "rm", "pc-ghost"]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("no agent `pc-ghost`"), "{}", text(&again.stderr));
    let left = run(&url, &burl, &["agents", "--all", "-o", "json"]).await;
    let left: Value = serde_json::from_slice(&left.stdout).unwrap();
    assert_eq!(left["items"].as_array().map(Vec::len), Some(3), "{left}");
}
