//! Whole outputs against a real nats-server: a stream that outgrows the inline part is spooled and published in
//! chunks to stream `OUTPUT` before the result goes out (nothing in the `result_output` object store any more); the
//! ceiling cuts and flags it; an agent killed between the run and the upload uploads at its next start; an upload
//! sent again (its result did not get out) is stored once; an older agent's outbox entry goes out in chunks too; a
//! stream that refuses the chunks does not hold the result back.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kanade_shared::resources::{OBJ_RESULT_OUTPUT, OUTPUT_CHUNK_BYTES, STREAM_OUTPUT, STREAM_RESULTS};
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{ExecResult, FullOutput, OutputStream, ResultStatus};
use kanade_shared::{ExecId, PcId};
use kanade_testkit::fleet::{ResultWatch, command, publish};
use kanade_testkit::{NatsServer, TestAgent, connect, eventually, init_logging};
use sha2::{Digest, Sha256};

const PATIENCE: Duration = Duration::from_secs(30);

fn pc(name: &str) -> Target {
    Target::Pc(PcId::new(name).unwrap())
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The whole `stream` of `result`, read back from its chunks on `OUTPUT`; every chunk but the last is full.
async fn stored(js: &async_nats::jetstream::Context, result: &ExecResult, stream: OutputStream) -> Vec<u8> {
    let full = match stream {
        OutputStream::Stdout => full(result),
        OutputStream::Stderr => result.stderr_full.as_ref().unwrap(),
    };
    assert!(full.chunks > 0, "{full:?}");
    let output = js.get_stream(STREAM_OUTPUT).await.unwrap();
    let mut bytes = Vec::new();
    for n in 0..full.chunks {
        let chunk = subject::output_chunk(&result.pc_id, &result.exec_id, stream, n);
        let message = output.direct_get_last_for_subject(&chunk).await.unwrap_or_else(|err| panic!("{chunk}: {err}"));
        let last = n + 1 == full.chunks;
        assert!(message.payload.len() == OUTPUT_CHUNK_BYTES || last, "{chunk}: {} bytes", message.payload.len());
        bytes.extend_from_slice(&message.payload);
    }
    bytes
}

/// The chunk subjects `OUTPUT` holds of `exec`'s `stream` on `pc`, with the messages on each.
async fn chunks_held(
    js: &async_nats::jetstream::Context,
    pc: &PcId,
    exec: &ExecId,
    stream: OutputStream,
) -> Vec<usize> {
    let output = js.get_stream(STREAM_OUTPUT).await.unwrap();
    let held: Vec<(String, usize)> =
        output.info_with_subjects(subject::output_chunks(pc, exec, stream)).await.unwrap().try_collect().await.unwrap();
    held.into_iter().map(|(_, count)| count).collect()
}

/// Whether the old object store holds anything by `name` (agents no longer write there).
async fn in_object_store(js: &async_nats::jetstream::Context, name: &str) -> bool {
    js.get_object_store(OBJ_RESULT_OUTPUT).await.unwrap().info(name).await.is_ok()
}

fn spool_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("outbox").join("output")).map(|d| d.flatten().count()).unwrap_or(0)
}

fn full(result: &ExecResult) -> &FullOutput {
    result.stdout_full.as_ref().unwrap_or_else(|| panic!("no full stdout in {result:?}"))
}

#[tokio::test]
async fn a_long_stdout_is_kept_whole_in_chunks_and_the_inline_part_stays() {
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
    assert_eq!(full.chunks, 8, "1 MiB in chunks of 128 KiB");
    assert_eq!(result.stderr, "a warning\n");
    assert_eq!(result.stderr_full, None, "a short stream has no object");

    // The result went out after the upload, so the chunks are there now, each once, and nothing in the old store.
    assert_eq!(sha256(&stored(&js, &result, OutputStream::Stdout).await), full.sha256);
    assert_eq!(chunks_held(&js, &result.pc_id, &result.exec_id, OutputStream::Stdout).await, vec![1; 8]);
    assert!(!in_object_store(&js, &full.object).await);
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
    for (stream, full, byte) in [
        (OutputStream::Stdout, full(&result), b'y'),
        (OutputStream::Stderr, result.stderr_full.as_ref().unwrap(), b'e'),
    ] {
        assert!(full.capped, "{full:?}");
        assert_eq!((full.size, full.chunks), (300_000, 3));
        let stored = stored(&js, &result, stream).await;
        assert_eq!(stored, vec![byte; 300_000]);
        assert_eq!(sha256(&stored), full.sha256);
    }
}

/// `OUTPUT` refuses the chunks (here: it is full, and an operator made it refuse new messages rather than drop old
/// ones): the upload is given up after a few tries and the result goes out with its inline part and a flag saying
/// the full output is unavailable; the outbox is not blocked.
#[tokio::test]
async fn a_stream_that_refuses_the_output_does_not_hold_the_result_back() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let mut stream = js.get_stream(STREAM_OUTPUT).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.max_bytes = 100_000;
    config.discard = async_nats::jetstream::stream::DiscardPolicy::New;
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
    let ca = kanade_testkit::fleet().agent_env(pc, &[], &dir.join("data"));
    Command::new(env!("CARGO_BIN_EXE_kanade-agent"))
        .arg("--config")
        .arg(&config)
        .env("KANADE_NATS_URL", url)
        .envs(ca)
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
    assert_eq!((full.size, full.unavailable.clone(), full.chunks), (700_000, None, 6));
    assert_eq!(stored(&js, &result, OutputStream::Stdout).await, vec![b'k'; 700_000]);
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

/// The broker takes the chunks but not the result (here: `RESULTS` is missing), so the outbox tries again and
/// publishes every chunk again each time: once `RESULTS` is back the result goes out, and `OUTPUT` holds each chunk
/// once, reading back exactly what the script printed.
#[tokio::test]
async fn an_upload_sent_again_because_its_result_did_not_get_out_is_stored_once() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    js.delete_stream(STREAM_RESULTS).await.unwrap();
    let agent = TestAgent::start(&nats.url(), "pc-1", &[]).await;
    let pc_id = PcId::new("pc-1").unwrap();
    // Every chunk publish, as the broker receives it, the ones sent again included.
    let mut sent = client.subscribe(subject::OUTPUT_CHUNKS_ALL).await.unwrap();
    client.flush().await.unwrap();

    let long = command("head -c 300000 /dev/zero | tr '\\0' r");
    publish(&js, &pc("pc-1"), &long).await;
    let filter = subject::output_chunks(&pc_id, &long.exec_id, OutputStream::Stdout);
    let mut seen = 0;
    while seen < 6 {
        let message = tokio::time::timeout(PATIENCE, sent.next()).await.expect("chunks sent twice").unwrap();
        seen += usize::from(message.subject.as_str().starts_with(filter.trim_end_matches('*')));
    }
    kanade_ops::jetstream::setup(&js, 1).await.unwrap();
    let results = js.get_stream(STREAM_RESULTS).await.unwrap();
    let result_subject = subject::result(&pc_id, &long.exec_id);
    let message = eventually("the result is stored", PATIENCE, || async {
        results.get_last_raw_message_by_subject(&result_subject).await.ok()
    })
    .await;
    let result: ExecResult = serde_json::from_slice(&message.payload).unwrap();
    let full = full(&result);
    assert_eq!((full.size, full.chunks, full.unavailable.clone()), (300_000, 3, None));
    assert_eq!(chunks_held(&js, &pc_id, &long.exec_id, OutputStream::Stdout).await, vec![1; 3], "each chunk once");
    let output = js.get_stream(STREAM_OUTPUT).await.unwrap();
    let everything: Vec<(String, usize)> =
        output.info_with_subjects(subject::OUTPUT_CHUNKS_ALL).await.unwrap().try_collect().await.unwrap();
    assert_eq!(everything.len(), 3, "no chunk under another name: {everything:?}");
    let bytes = stored(&js, &result, OutputStream::Stdout).await;
    assert_eq!(bytes, vec![b'r'; 300_000]);
    assert_eq!(sha256(&bytes), full.sha256);
    eventually("the spool file is gone once the result is acknowledged", PATIENCE, || {
        let n = spool_files(agent.data_dir());
        async move { (n == 0).then_some(()) }
    })
    .await;
}

/// An outbox entry written by an agent of the version before chunks (its `stdout_full` says no chunks: it meant
/// `result_output`), drained by this one: the output goes to `OUTPUT` and the result says how many chunks it took.
#[tokio::test]
async fn an_older_agents_outbox_entry_goes_out_in_chunks_and_says_so() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = std::sync::Arc::new(kanade_agent::outbox::Outbox::open(dir.path().to_owned(), 1 << 20).unwrap());
    let pc_id = PcId::new("pc-old").unwrap();
    let mut result = ExecResult::not_started(&command("true"), &pc_id, ResultStatus::Ok, None, chrono::Utc::now());
    let bytes = vec![b'o'; 200_000];
    std::fs::write(outbox.spool_file(&result.exec_id, OutputStream::Stdout), &bytes).unwrap();
    result.stdout_truncated = true;
    result.stdout_full = Some(FullOutput {
        object: kanade_shared::resources::result_output_object(&result.result_id, OutputStream::Stdout),
        size: bytes.len() as u64,
        sha256: sha256(&bytes),
        capped: false,
        unavailable: None,
        chunks: 0,
    });
    outbox.put(&result).await.unwrap();
    assert_eq!(outbox.drain(&js).await.unwrap(), 1);

    let results = js.get_stream(STREAM_RESULTS).await.unwrap();
    let message = results.get_last_raw_message_by_subject(&subject::result(&pc_id, &result.exec_id)).await.unwrap();
    let sent: ExecResult = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(full(&sent).chunks, 2);
    assert_eq!(stored(&js, &sent, OutputStream::Stdout).await, bytes);
    assert!(!in_object_store(&js, &full(&sent).object).await);
}
