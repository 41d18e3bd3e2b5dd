//! `GET /api/results/{result_id}/output` end to end, on SQLite and PostgreSQL: a real agent's 1 MiB stdout comes back
//! byte for byte from its chunks on `OUTPUT` (whole and in ranges), a short stream from the result itself; chunks
//! sent twice are served once; a result that points at another result's output is not served it; an older agent's
//! result still shows, and one whose output is an object in `result_output` still reads; a missing chunk, chunks that
//! do not add up to the result's size, or bytes that do not match its SHA-256 are never served as good; the refusals
//! (bad ids, streams, ranges, a vanished object, the broker down) are clear errors.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use chrono::Utc;
use futures::TryStreamExt;
use kanade_shared::resources::{
    OBJ_RESULT_OUTPUT, OBJECT_SHA256_KEY, OUTPUT_CHUNK_BYTES, STREAM_OUTPUT, result_output_object,
};
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{ExecResult, FullOutput, OutputStream, ResultStatus};
use kanade_shared::{ExecId, PcId};
use kanade_testkit::fleet::{command, publish};
use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, init_logging};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use serde_json::Value;
use sha2::{Digest, Sha256};

mod support;

use support::postgres;

const PATIENCE: Duration = Duration::from_secs(30);

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

async fn result_row(backend: &TestBackend, exec: &ExecId) -> Value {
    eventually(&format!("the result of {exec} is stored"), PATIENCE, || async {
        let (status, body) = backend.get(&format!("/api/results?exec_id={exec}")).await;
        (status == 200).then(|| body["items"].as_array().and_then(|rows| rows.first().cloned())).flatten()
    })
    .await
}

/// A result as an agent publishes it, straight into `RESULTS`.
async fn publish_result(js: &async_nats::jetstream::Context, result: &ExecResult) {
    let body = serde_json::to_vec(result).unwrap();
    js.send_publish(
        subject::result(&result.pc_id, &result.exec_id),
        PublishMessage::build().payload(body.into()).message_id(result.result_id.as_str()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Publishes `bytes` as the whole stdout of `result`, as an agent does (chunks on the result's own subjects, each with
/// a `Nats-Msg-Id` starting with `try_name`), and returns the number of chunks.
async fn publish_chunks(js: &async_nats::jetstream::Context, result: &ExecResult, bytes: &[u8], try_name: &str) -> u32 {
    let mut chunks = 0;
    for piece in bytes.chunks(OUTPUT_CHUNK_BYTES) {
        let subject = subject::output_chunk(&result.pc_id, &result.exec_id, OutputStream::Stdout, chunks);
        let message = PublishMessage::build().payload(piece.to_vec().into()).message_id(format!("{try_name}.{chunks}"));
        js.send_publish(subject, message).await.unwrap().await.unwrap();
        chunks += 1;
    }
    chunks
}

/// A result whose stdout of `size` bytes with `sha` is kept whole in `chunks` chunks on `OUTPUT`.
fn chunked(pc: &str, size: usize, sha: String, chunks: u32) -> ExecResult {
    let mut result = hand_made(pc, "head");
    result.stdout_truncated = true;
    result.stdout_full = Some(FullOutput {
        object: result_output_object(&result.result_id, OutputStream::Stdout),
        size: size as u64,
        sha256: sha,
        capped: false,
        unavailable: None,
        chunks,
    });
    result
}

fn hand_made(pc: &str, stdout: &str) -> ExecResult {
    let command = command("true");
    let mut result = ExecResult::not_started(&command, &PcId::new(pc).unwrap(), ResultStatus::Ok, None, Utc::now());
    result.exit_code = Some(0);
    result.stdout = stdout.to_owned();
    result
}

async fn scenario(database_url: Option<String>) {
    init_logging();
    let mut nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start_in(&nats.url(), tempfile::tempdir().unwrap(), database_url).await;
    let _agent = TestAgent::start(&nats.url(), "pc-1", &[]).await;
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("stdout");
    let http = reqwest::Client::new();
    let get = |path: String, range: Option<&'static str>| {
        let mut request = http.get(format!("{}{path}", backend.url())).bearer_auth(TEST_TOKEN);
        if let Some(range) = range {
            request = request.header(RANGE, range);
        }
        request.send()
    };

    // A real agent, a real 1 MiB stdout.
    let long = command(&format!("head -c 786432 /dev/urandom | base64 -w0 | tee {}; echo warn >&2", copy.display()));
    publish(&js, &Target::Pc(PcId::new("pc-1").unwrap()), &long).await;
    let row = result_row(&backend, &long.exec_id).await;
    let printed = std::fs::read(&copy).unwrap();
    assert_eq!(row["stdout_full"]["size"], 1024 * 1024, "{row}");
    assert_eq!(row["stdout_full"]["sha256"], sha256(&printed));
    assert_eq!(
        (row["stdout_full"]["capped"].as_bool(), row["stdout_full"]["unavailable"].is_null()),
        (Some(false), true)
    );
    assert!(row["stderr_full"].is_null());
    let id = row["result_id"].as_str().unwrap().to_owned();
    let path = format!("/api/results/{id}/output");

    let whole = get(path.clone(), None).await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()[CONTENT_LENGTH], "1048576");
    assert_eq!(whole.headers()["x-kanade-output-source"], "object");
    assert_eq!(whole.headers()["x-kanade-output-complete"], "true");
    assert_eq!(sha256(&whole.bytes().await.unwrap()), sha256(&printed), "exactly the bytes the script printed");

    let stderr = get(format!("{path}?stream=stderr"), None).await.unwrap();
    assert_eq!(stderr.headers()["x-kanade-output-source"], "inline");
    assert_eq!(stderr.text().await.unwrap(), "warn\n");

    let part = get(path.clone(), Some("bytes=300000-300099")).await.unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()[CONTENT_RANGE], "bytes 300000-300099/1048576");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &printed[300_000..300_100]);
    let across = get(path.clone(), Some("bytes=131000-400000")).await.unwrap();
    assert_eq!(across.status(), StatusCode::PARTIAL_CONTENT, "a range over three chunks");
    assert_eq!(across.bytes().await.unwrap().as_ref(), &printed[131_000..400_001]);
    for huge in ["bytes=1048576-", "bytes=99999999999999999999999-", "bytes=0-99999999999999999999999"] {
        let refused = get(path.clone(), Some(huge)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{huge}");
    }
    let tail = get(path.clone(), Some("bytes=0-999999999999")).await.unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT, "an end past the stream is cut to it");
    assert_eq!(tail.bytes().await.unwrap().len(), 1024 * 1024);

    // Refusals.
    for (query, code) in [
        ("?stream=stdin", "invalid_query"),
        ("?stream=STDOUT", "invalid_query"),
        ("?stream=stdout&extra=1", "invalid_query"),
    ] {
        let (status, body) = backend.get(&format!("{path}{query}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)), "{query}: {body}");
    }
    let long_stream = format!("{path}?stream={}", "x".repeat(50_000));
    let (status, body) = backend.get(&long_stream).await;
    assert!(status == 400 || status == 414 || status == 431, "{status} {body}");
    for bad in ["not-a-result", "x..y", "a.b.c", "%00", "UPPER.pc-1"] {
        let (status, body) = backend.get(&format!("/api/results/{bad}/output")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_result_id")), "{bad}: {body}");
    }
    let unknown = format!("/api/results/{}.pc-1/output", ExecId::generate());
    let (status, body) = backend.get(&unknown).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("result_not_found")));
    let anonymous = http.get(format!("{}{path}", backend.url())).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // A result from an older agent: no object fields at all. It decodes, shows, and serves its inline text.
    let older = hand_made("pc-old", "old agent\n");
    let mut json = serde_json::to_value(&older).unwrap();
    assert!(json.get("stdout_full").is_none(), "an older agent sends no such field");
    json["an_unknown_future_field"] = Value::Bool(true);
    js.send_publish(
        subject::result(&older.pc_id, &older.exec_id),
        PublishMessage::build().payload(serde_json::to_vec(&json).unwrap().into()).message_id(older.result_id.as_str()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let row = result_row(&backend, &older.exec_id).await;
    assert!(row["stdout_full"].is_null(), "{row}");
    let served = get(format!("/api/results/{}/output", older.result_id), None).await.unwrap();
    assert_eq!(served.headers()["x-kanade-output-complete"], "true");
    assert_eq!(served.text().await.unwrap(), "old agent\n");

    // A hostile agent points its result at pc-1's object: the backend refuses the pointer and serves only its own.
    let mut thief = hand_made("pc-evil", "mine\n");
    thief.stdout_truncated = true;
    thief.stdout_full = Some(FullOutput {
        object: format!("{id}/stdout"),
        size: 1024 * 1024,
        sha256: sha256(&printed),
        capped: false,
        unavailable: None,
        chunks: 8,
    });
    publish_result(&js, &thief).await;
    let row = result_row(&backend, &thief.exec_id).await;
    let why = row["stdout_full"]["unavailable"].as_str().unwrap_or_default();
    assert!(why.contains("not this result's own"), "{row}");
    let served = get(format!("/api/results/{}/output", thief.result_id), None).await.unwrap();
    assert_eq!(served.headers()["x-kanade-output-source"], "inline");
    assert_eq!(served.headers()["x-kanade-output-complete"], "false");
    assert_eq!(served.text().await.unwrap(), "mine\n");

    // An older agent's capped stream, its own object put into `result_output` as those agents put it (no chunks):
    // served whole, but said to be incomplete.
    let mut capped = hand_made("pc-2", "cap");
    capped.stdout_truncated = true;
    let bytes = vec![b'c'; 200_000];
    let object = result_output_object(&capped.result_id, OutputStream::Stdout);
    let store = js.get_object_store(OBJ_RESULT_OUTPUT).await.unwrap();
    let meta = async_nats::jetstream::object_store::ObjectMetadata {
        name: object.clone(),
        metadata: [(OBJECT_SHA256_KEY.to_owned(), sha256(&bytes))].into(),
        ..Default::default()
    };
    store.put(meta, &mut &bytes[..]).await.unwrap();
    capped.stdout_full = Some(FullOutput {
        object: object.clone(),
        size: 200_000,
        sha256: sha256(&bytes),
        capped: true,
        unavailable: None,
        chunks: 0,
    });
    publish_result(&js, &capped).await;
    let row = result_row(&backend, &capped.exec_id).await;
    assert_eq!(row["stdout_full"]["capped"], true);
    let served = get(format!("/api/results/{}/output", capped.result_id), None).await.unwrap();
    assert_eq!(served.headers()["x-kanade-output-complete"], "false");
    assert_eq!(served.bytes().await.unwrap().as_ref(), &bytes[..]);

    // The object ages out (here: deleted): its own 404.
    store.delete(&object).await.unwrap();
    let (status, body) = backend.get(&format!("/api/results/{}/output", capped.result_id)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("output_gone")), "{body}");

    // An upload sent twice (its result did not get out the first time, and the second try came after the broker's
    // duplicate window, so every chunk was stored again): each chunk is held once and the output reads back once.
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let resent = chunked("pc-3", bytes.len(), sha256(&bytes), 3);
    assert_eq!(publish_chunks(&js, &resent, &bytes, "first").await, 3);
    assert_eq!(publish_chunks(&js, &resent, &bytes, "second").await, 3);
    publish_result(&js, &resent).await;
    result_row(&backend, &resent.exec_id).await;
    let served = get(format!("/api/results/{}/output", resent.result_id), None).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["x-kanade-output-source"], "object");
    assert_eq!(served.headers()["x-kanade-output-complete"], "true");
    let body = served.bytes().await.unwrap();
    assert_eq!((body.len(), sha256(&body)), (bytes.len(), sha256(&bytes)));
    let output = js.get_stream(STREAM_OUTPUT).await.unwrap();
    let filter = subject::output_chunks(&resent.pc_id, &resent.exec_id, OutputStream::Stdout);
    let held: Vec<(String, usize)> = output.info_with_subjects(&filter).await.unwrap().try_collect().await.unwrap();
    assert_eq!(held.iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![1, 1, 1], "{held:?}");

    // A chunk is missing (deleted here; aged out or lost in life): `output_gone`, before any byte is served.
    let holey = chunked("pc-4", bytes.len(), sha256(&bytes), 3);
    publish_chunks(&js, &holey, &bytes, "holey").await;
    output.purge().filter(subject::output_chunk(&holey.pc_id, &holey.exec_id, OutputStream::Stdout, 1)).await.unwrap();
    publish_result(&js, &holey).await;
    result_row(&backend, &holey.exec_id).await;
    let (status, body) = backend.get(&format!("/api/results/{}/output", holey.result_id)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("output_gone")), "{body}");

    // Bytes that do not match the SHA-256, the size right: the body is cut off before its end, never completed.
    let mut tampered = bytes.clone();
    tampered[299_999] ^= 1;
    let corrupt = chunked("pc-5", bytes.len(), sha256(&bytes), 3);
    publish_chunks(&js, &corrupt, &tampered, "corrupt").await;
    publish_result(&js, &corrupt).await;
    result_row(&backend, &corrupt.exec_id).await;
    let served = get(format!("/api/results/{}/output", corrupt.result_id), None).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK, "the hash is known only at the end");
    assert!(served.bytes().await.is_err(), "a body that does not match its SHA-256 is not served whole");

    // Chunks holding fewer bytes than the result says: cut off too, not padded or passed as whole.
    let short = chunked("pc-6", bytes.len() + 10, sha256(&bytes), 3);
    publish_chunks(&js, &short, &bytes, "short").await;
    publish_result(&js, &short).await;
    result_row(&backend, &short.exec_id).await;
    let served = get(format!("/api/results/{}/output", short.result_id), None).await.unwrap();
    assert!(served.bytes().await.is_err(), "a body shorter than its length is not served whole");
    // And more: the body never goes past the size the result gives.
    let long = chunked("pc-7", bytes.len() - 10, sha256(&bytes[..bytes.len() - 10]), 3);
    publish_chunks(&js, &long, &bytes, "long").await;
    publish_result(&js, &long).await;
    result_row(&backend, &long.exec_id).await;
    let served = get(format!("/api/results/{}/output", long.result_id), None).await.unwrap();
    assert!(served.bytes().await.is_err(), "chunks longer than the result says are not served as it");

    // The broker goes away: 503, and the inline outputs still come from SQL.
    drop(client);
    nats.kill();
    eventually("the output route says the broker is down", PATIENCE, || async {
        let (status, body) = backend.get(&path).await;
        (status == 503 && body["error"]["code"] == "broker_unavailable").then_some(())
    })
    .await;
    let (status, _) = backend.get(&format!("/api/results/{}/output", older.result_id)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn whole_outputs_are_served_on_sqlite() {
    scenario(None).await;
}

#[tokio::test]
async fn whole_outputs_are_served_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    scenario(Some(database.url.clone())).await;
}
