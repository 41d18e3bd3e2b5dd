//! Whole outputs against a real nats-server: a stream that outgrows the inline part is spooled and put into the
//! `result_output` object store before the result goes out; the ceiling cuts and flags it; an agent killed between
//! the run and the upload uploads at its next start; a store that refuses the object does not hold the result back.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kanade_shared::PcId;
use kanade_shared::resources::OBJ_RESULT_OUTPUT;
use kanade_shared::subject::Target;
use kanade_shared::wire::{ExecResult, FullOutput, ResultStatus};
use kanade_testkit::fleet::{ResultWatch, command, publish};
use kanade_testkit::{NatsServer, TestAgent, connect, eventually, init_logging};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

const PATIENCE: Duration = Duration::from_secs(30);

fn pc(name: &str) -> Target {
    Target::Pc(PcId::new(name).unwrap())
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The object's bytes, read back from the store.
async fn object(js: &async_nats::jetstream::Context, name: &str) -> Vec<u8> {
    let store = js.get_object_store(OBJ_RESULT_OUTPUT).await.unwrap();
    let mut object = store.get(name).await.unwrap_or_else(|err| panic!("object `{name}`: {err}"));
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.unwrap();
    bytes
}

fn spool_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("outbox").join("output")).map(|d| d.flatten().count()).unwrap_or(0)
}

fn full(result: &ExecResult) -> &FullOutput {
    result.stdout_full.as_ref().unwrap_or_else(|| panic!("no full stdout in {result:?}"))
}

#[tokio::test]
async fn a_long_stdout_is_kept_whole_in_the_object_store_and_the_inline_part_stays() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let data = tempfile::tempdir().unwrap();
    let config = kanade_testkit::agent_config(&nats.url(), "pc-1", &[], data.path());
    let agent = TestAgent::start_with(config, data).await;
    let mut results = ResultWatch::new(&client).await;
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("stdout");

    // 1 MiB of base64 (text, so the inline part compares as it is), and some stderr.
    let long =
        command(&format!("head -c 786432 /dev/urandom | base64 -w0 | tee {}; echo 'a warning' >&2", copy.display()));
    publish(&js, &pc("pc-1"), &long).await;
    let result = results.next_for(&long.exec_id, PATIENCE).await;
    let printed = std::fs::read(&copy).unwrap();
    assert_eq!(printed.len(), 1024 * 1024);
    assert_eq!(result.status, ResultStatus::Ok, "{}", result.stderr);
    assert!(result.stdout_truncated);
    assert_eq!(result.stdout.as_bytes(), &printed[..kanade_shared::config::DEFAULT_OUTPUT_LIMIT_BYTES]);
    let full = full(&result);
    assert_eq!(full.object, format!("{}/stdout", result.result_id));
    assert_eq!(
        (full.size, full.sha256.as_str(), full.capped),
        (printed.len() as u64, sha256(&printed).as_str(), false)
    );
    assert_eq!(full.unavailable, None);
    assert_eq!(result.stderr, "a warning\n");
    assert_eq!(result.stderr_full, None, "a short stream has no object");

    // The result went out after the upload, so the object is there now.
    assert_eq!(sha256(&object(&js, &full.object).await), full.sha256);
    eventually("the spool file is gone once the result is acknowledged", PATIENCE, || {
        let n = spool_files(agent.data_dir());
        async move { (n == 0).then_some(()) }
    })
    .await;

    // A short output has neither spool file nor object.
    let short = command("echo short");
    publish(&js, &pc("pc-1"), &short).await;
    let result = results.next_for(&short.exec_id, PATIENCE).await;
    assert_eq!((result.stdout.as_str(), result.stdout_full.clone()), ("short\n", None));
}

#[tokio::test]
async fn past_the_ceiling_the_stream_is_cut_and_flagged() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let data = tempfile::tempdir().unwrap();
    let mut config = kanade_testkit::agent_config(&nats.url(), "pc-1", &[], data.path());
    config.output_limit_bytes = 1000;
    config.output_max_bytes = 300_000;
    let _agent = TestAgent::start_with(config, data).await;
    let mut results = ResultWatch::new(&client).await;

    let flood = command("head -c 2000000 /dev/zero | tr '\\0' y; head -c 400000 /dev/zero | tr '\\0' e >&2");
    publish(&js, &pc("pc-1"), &flood).await;
    let result = results.next_for(&flood.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Ok, "the script was never blocked by the cut");
    assert_eq!(result.stdout.len(), 1000);
    for (full, byte) in [(full(&result), b'y'), (result.stderr_full.as_ref().unwrap(), b'e')] {
        assert!(full.capped, "{full:?}");
        assert_eq!(full.size, 300_000);
        let stored = object(&js, &full.object).await;
        assert_eq!(stored, vec![byte; 300_000]);
        assert_eq!(sha256(&stored), full.sha256);
    }
}

/// The store refuses the object (here: it is full): the upload is given up after a few tries and the result goes
/// out with its inline part and a flag saying the full output is unavailable; the outbox is not blocked.
#[tokio::test]
async fn a_store_that_refuses_the_output_does_not_hold_the_result_back() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let mut stream =
        js.get_stream(kanade_shared::resources::object_store_stream_name(OBJ_RESULT_OUTPUT)).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.max_bytes = 100_000;
    js.update_stream(config).await.unwrap();
    let _agent = TestAgent::start(&nats.url(), "pc-1", &[]).await;
    let mut results = ResultWatch::new(&client).await;

    let big = command("head -c 600000 /dev/zero | tr '\\0' z");
    publish(&js, &pc("pc-1"), &big).await;
    let result = results.next_for(&big.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Ok);
    assert_eq!(result.stdout.len(), kanade_shared::config::DEFAULT_OUTPUT_LIMIT_BYTES, "the inline part stays");
    let why = full(&result).unavailable.clone().expect("flagged unavailable");
    assert!(why.contains("refused"), "{why}");
    // The next long one is given up at its first refusal, and a short one is not stuck behind either.
    let again = command("head -c 600000 /dev/zero | tr '\\0' z");
    publish(&js, &pc("pc-1"), &again).await;
    let why = full(&results.next_for(&again.exec_id, PATIENCE).await).unavailable.clone().expect("flagged");
    assert!(why.contains("refused the output 1 time(s)"), "{why}");
    let next = command("echo next");
    publish(&js, &pc("pc-1"), &next).await;
    assert_eq!(results.next_for(&next.exec_id, PATIENCE).await.stdout, "next\n");
}

fn spawn_agent(url: &str, pc: &str, dir: &Path) -> Child {
    let config = dir.join("agent.toml");
    std::fs::write(&config, "[agent]\ncatch_up_jitter = \"100ms\"\nheartbeat_interval = \"1s\"\n").unwrap();
    Command::new(env!("CARGO_BIN_EXE_kanade-agent"))
        .arg("--config")
        .arg(&config)
        .env("KANADE_NATS_URL", url)
        .env("KANADE_AGENT_ID", pc)
        .env("KANADE_AGENT_DATA_DIR", dir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The agent process is SIGKILLed after the run ended, with its result and spooled output in the outbox and the
/// broker away: at its next start it uploads the output and publishes the result, once.
#[tokio::test]
async fn an_agent_killed_between_the_run_and_the_upload_uploads_at_its_next_start() {
    init_logging();
    let mut nats = NatsServer::start();
    let url = nats.url();
    let (client, js) = connect(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let (running, go) = (dir.path().join("running"), dir.path().join("go"));
    let mut child = spawn_agent(&url, "crash-pc", dir.path());
    let pc_id = PcId::new("crash-pc").unwrap();
    eventually("the agent is up", PATIENCE, || async {
        kanade_ops::agents::ping(&client, &pc_id, Duration::from_millis(500)).await.ok()
    })
    .await;

    // The script prints, then waits for the test to take the broker away before it ends.
    let long = command(&format!(
        "touch {running}; while [ ! -e {go} ]; do sleep 0.05; done; head -c 700000 /dev/zero | tr '\\0' k",
        running = running.display(),
        go = go.display()
    ));
    publish(&js, &pc("crash-pc"), &long).await;
    eventually("the script is running", PATIENCE, || async { running.exists().then_some(()) }).await;
    drop((client, js));
    nats.kill();
    std::fs::write(&go, b"").unwrap();
    let outbox = dir.path().join("data").join("outbox");
    eventually("the result and its spool file wait in the outbox", PATIENCE, || {
        let entries = std::fs::read_dir(&outbox)
            .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
            .unwrap_or(0);
        let spooled = spool_files(&dir.path().join("data"));
        async move { (entries == 1 && spooled == 1).then_some(()) }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    nats.start_again();
    let (client, js) = connect(&url).await;
    let mut results = ResultWatch::new(&client).await;
    let mut child = spawn_agent(&url, "crash-pc", dir.path());
    let result = results.next_for(&long.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Ok, "{result:?}");
    let full = full(&result).clone();
    assert_eq!((full.size, full.unavailable.clone()), (700_000, None));
    assert_eq!(object(&js, &full.object).await, vec![b'k'; 700_000]);
    eventually("the outbox and its spool are empty", PATIENCE, || {
        let spooled = spool_files(&dir.path().join("data"));
        async move { (spooled == 0).then_some(()) }
    })
    .await;
    let stream = js.get_stream(kanade_shared::resources::STREAM_RESULTS).await.unwrap();
    let stored = stream.get_last_raw_message_by_subject(&kanade_shared::subject::result(&pc_id, &long.exec_id)).await;
    assert!(stored.is_ok(), "the result is in RESULTS");
    assert_eq!(stream.cached_info().state.messages, 1, "one result for the one run");
    let _ = child.kill();
    let _ = child.wait();
}
