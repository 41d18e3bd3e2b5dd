//! The audit trail cannot be quietly edited: concurrent writers form one hash chain in `AUDIT`, and the real
//! `kanade audit verify` finds a row edited in the backend's SQLite file, an event forged onto the stream, and keeps
//! its head (as does the projector) when the stream holds garbage. Against real nats-server and backend.

use std::process::Output;
use std::time::Duration;

use kanade_ops::audit::{self, Source};
use kanade_shared::audit_chain::{self, Anchor, Entry, Verifier};
use kanade_shared::wire::AuditEvent;
use kanade_shared::{Action, Actor};
use kanade_testkit::{NatsServer, TEST_TOKEN, TestBackend, TestDatabase, connect, eventually, init_logging};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(20);

/// `kanade audit verify <args> -o json` with the backend and NATS of the test.
async fn verify(nats_url: &str, backend: &TestBackend, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = verify_as(nats_url, backend, args, "json").await;
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("-o json is JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn verify_as(nats_url: &str, backend: &TestBackend, args: &[&str], format: &str) -> Output {
    kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url)
        .args(["audit", "verify", "-o", format])
        .args(args)
        .env("KANADE_BACKEND_URL", backend.url())
        .env("KANADE_AUTH_TOKEN", TEST_TOKEN)
        .output()
        .await
        .expect("run kanade audit verify")
}

async fn record(client: &async_nats::Client, who: &str, target: &str, details: Value) {
    audit::record(client, Source::Cli, &Actor::new(who).unwrap(), "test", target, details).await.expect("audited");
}

/// Waits until the backend has projected `n` audit events.
async fn projected(backend: &TestBackend, n: usize) -> Vec<Value> {
    eventually(&format!("{n} audit events projected"), PATIENCE, || async {
        let rows = backend.get_all("/api/audit/chain?limit=1000").await;
        (rows.len() == n).then_some(rows)
    })
    .await
}

/// The stream's chain, as `kanade audit verify` reads it.
async fn stream_chain(client: &async_nats::Client) -> audit_chain::ChainReport {
    let mut verifier = Verifier::new();
    audit::read_stream(client, None, |seq, entry| verifier.push(seq, &entry)).await.expect("read AUDIT");
    verifier.finish()
}

#[tokio::test]
async fn concurrent_writers_form_one_unbroken_chain() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    // Four writers, each on its own connection as separate CLI processes and backend replicas are.
    let mut writers = Vec::new();
    for writer in 0..4 {
        let client = kanade_testkit::client(&url).await;
        writers.push(tokio::spawn(async move {
            for n in 0..25 {
                record(
                    &client,
                    &format!("writer-{writer}"),
                    &format!("t-{writer}-{n}"),
                    json!({ "n": n, "x": 0.1 + 0.2 }),
                )
                .await;
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let (client, _js) = connect(&url).await;
    let report = stream_chain(&client).await;
    assert!(report.intact(), "{report:?}");
    assert_eq!((report.checked, report.first_seq, report.last_seq), (100, Some(1), Some(100)));
    assert_eq!(report.anchor, Some(Anchor::Genesis));

    // The backend's copy pages in stream order and matches, and the real CLI says both are intact.
    let backend = TestBackend::start(&url).await;
    let rows = projected(&backend, 100).await;
    let paged = backend.get_all("/api/audit/chain?limit=7").await;
    assert_eq!(paged, rows);
    let seqs: Vec<u64> = rows.iter().map(|r| r["stream_seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    let (code, report, stderr) = verify(&url, &backend, &[]).await;
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
    assert_eq!(report["intact"], true);
    assert_eq!((report["stream"]["checked"].as_u64(), report["database"]["compared"].as_u64()), (Some(100), Some(100)));
    let table = verify_as(&url, &backend, &[], "table").await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("stream AUDIT: 100 events checked, seq 1-100\n  from the chain's start\n  intact"), "{text}");
    assert!(text.ends_with("intact\n"), "{text}");
    // From a time on: the first event at or after it is the anchor, taken on trust.
    let (code, report, _) = verify(&url, &backend, &["--since", "1h"]).await;
    assert_eq!((code, report["stream"]["checked"].as_u64()), (Some(0), Some(100)));
    let (code, report, _) = verify(&url, &backend, &["--since", "2999-01-01T00:00:00Z"]).await;
    assert_eq!(
        (code, report["stream"]["checked"].as_u64(), report["database"]["checked"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
}

#[tokio::test]
async fn a_row_edited_in_sqlite_is_the_first_break_of_the_database() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _js) = connect(&url).await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let file = data_dir.path().join("backend.db");
    let backend = TestBackend::start_in(&url, data_dir, None).await;
    for n in 1..=5 {
        record(&client, "alice", &format!("job-{n}"), json!({ "n": n })).await;
    }
    let rows = projected(&backend, 5).await;
    let (code, report, stderr) = verify(&url, &backend, &[]).await;
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");

    // Behind the backend's back, as someone covering their tracks would.
    let sqlite = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display())).await.expect("open backend.db");
    sqlx::query("UPDATE audit SET target = 'nothing-to-see' WHERE stream_seq = 3")
        .execute(&sqlite)
        .await
        .expect("edit a row");
    let (code, report, stderr) = verify(&url, &backend, &[]).await;
    assert_eq!(code, Some(1), "{report:#}\n{stderr}");
    assert_eq!(report["intact"], false);
    assert_eq!(report["stream"]["first_break"], Value::Null, "the stream is untouched: {report:#}");
    let found = &report["database"]["first_break"];
    assert_eq!((found["seq"].as_u64(), found["kind"].as_str()), (Some(3), Some("altered")), "{report:#}");
    assert_eq!(found["event_id"], rows[2]["event_id"]);
    let table = verify_as(&url, &backend, &[], "table").await;
    assert_eq!(table.status.code(), Some(1));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("FIRST BREAK at seq 3"), "{text}");
    assert!(text.ends_with("BROKEN\n"), "{text}");

    // Edited and re-hashed so the row is consistent in itself: the next row's link and the stream both disagree.
    let row: kanade_shared::api::AuditChainRow = serde_json::from_value(rows[2].clone()).unwrap();
    let Entry::Event(mut event) = Entry::from(&row) else { panic!("a chained row") };
    event.target = "nothing-to-see".into();
    let rehashed = audit_chain::hash_of(&event);
    sqlx::query("UPDATE audit SET hash = ? WHERE stream_seq = 3").bind(&rehashed).execute(&sqlite).await.unwrap();
    let (code, report, _) = verify(&url, &backend, &[]).await;
    assert_eq!(code, Some(1));
    let found = &report["database"]["first_break"];
    assert_eq!((found["seq"].as_u64(), found["kind"].as_str()), (Some(3), Some("differs")), "{report:#}");

    // A row deleted instead: the stream's projected event has no row.
    sqlx::query("UPDATE audit SET target = 'job-3', hash = ? WHERE stream_seq = 3")
        .bind(rows[2]["hash"].as_str())
        .execute(&sqlite)
        .await
        .unwrap();
    assert_eq!(verify(&url, &backend, &[]).await.0, Some(0), "restored");
    sqlx::query("DELETE FROM audit WHERE stream_seq = 4").execute(&sqlite).await.unwrap();
    let (code, report, _) = verify(&url, &backend, &[]).await;
    assert_eq!(code, Some(1));
    let found = &report["database"]["first_break"];
    assert_eq!(found["seq"].as_u64(), Some(4), "{report:#}");
    assert_eq!(report["database"]["breaks"].as_u64(), Some(2), "its chain misses it and so does the cross-check");
}

#[tokio::test]
async fn an_event_forged_onto_the_stream_is_a_break_of_the_stream() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, js) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    for n in 1..=3 {
        record(&client, "alice", &format!("job-{n}"), json!({})).await;
    }
    // A well-formed event with a hash of its own, published straight onto the stream with a made-up link.
    let mut forged = AuditEvent {
        event_id: "forged-1".into(),
        actor: Actor::new("mallory").unwrap(),
        action: Action::new("revoke").unwrap(),
        target: "everything".into(),
        details: json!({}),
        at: audit_chain::truncate_to_millis(chrono::Utc::now()),
        source: "cli".into(),
        prev_hash: String::new(),
        hash: String::new(),
    };
    audit_chain::seal(&mut forged, &"ab".repeat(32));
    js.publish("audit.mallory.revoke", serde_json::to_vec(&forged).unwrap().into())
        .await
        .unwrap()
        .await
        .expect("stored");
    // Later writers link to whatever is last, the forgery included: one break, where it was inserted.
    record(&client, "alice", "job-5", json!({})).await;
    projected(&backend, 5).await;
    let (code, report, stderr) = verify(&url, &backend, &[]).await;
    assert_eq!(code, Some(1), "{report:#}\n{stderr}");
    let found = &report["stream"]["first_break"];
    assert_eq!((found["seq"].as_u64(), found["kind"].as_str()), (Some(4), Some("broken_link")), "{report:#}");
    assert_eq!(found["event_id"], "forged-1");
    assert_eq!(found["found"], "ab".repeat(32));
    assert_eq!(report["stream"]["breaks"].as_u64(), Some(1));
}

#[tokio::test]
async fn events_deleted_from_the_stream_are_reported_lost_by_the_databases_copy() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, js) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    for n in 1..=5 {
        record(&client, "alice", &format!("job-{n}"), json!({})).await;
    }
    projected(&backend, 5).await;
    let stream = js.get_stream(kanade_shared::resources::STREAM_AUDIT).await.unwrap();
    // The newest event: the stream's own chain cannot show it, the backend's copy can.
    assert!(stream.delete_message(5).await.unwrap());
    let (code, report, stderr) = verify(&url, &backend, &[]).await;
    assert_eq!(code, Some(1), "{report:#}\n{stderr}");
    let found = &report["stream"]["first_break"];
    assert_eq!((found["seq"].as_u64(), found["kind"].as_str()), (Some(5), Some("lost_from_stream")), "{report:#}");
    assert_eq!(report["database"]["first_break"], Value::Null, "{report:#}");
    // One from the middle: its successor's link and the database both tell.
    assert!(stream.delete_message(2).await.unwrap());
    let (_, report, _) = verify(&url, &backend, &[]).await;
    let found = &report["stream"]["first_break"];
    assert_eq!((found["seq"].as_u64(), found["kind"].as_str()), (Some(2), Some("lost_from_stream")), "{report:#}");
    assert_eq!(report["stream"]["breaks"].as_u64(), Some(3), "3 missing after 1, and 2 and 5 lost: {report:#}");
    // The next writer cannot link to the deleted newest event and starts over: a break, not a quiet repair.
    record(&client, "alice", "job-6", json!({})).await;
    let (code, report, _) = verify(&url, &backend, &[]).await;
    assert_eq!(code, Some(1));
    assert_eq!(report["stream"]["breaks"].as_u64(), Some(4), "{report:#}");
    // The oldest: the stream alone would take it for aged out; the database's row says it is seconds old.
    assert!(stream.delete_message(1).await.unwrap());
    let (_, report, _) = verify(&url, &backend, &[]).await;
    let found = &report["stream"]["first_break"];
    assert_eq!((found["seq"].as_u64(), found["kind"].as_str()), (Some(1), Some("lost_from_stream")), "{report:#}");
}

#[tokio::test]
async fn garbage_on_the_stream_is_reported_and_stops_neither_the_projector_nor_the_verifier() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, js) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    record(&client, "alice", "before", json!({})).await;
    let mut wrong_subject = serde_json::to_value(AuditEvent {
        event_id: "e".into(),
        actor: Actor::new("bob").unwrap(),
        action: Action::new("run").unwrap(),
        target: String::new(),
        details: Value::Null,
        at: chrono::Utc::now(),
        source: String::new(),
        prev_hash: String::new(),
        hash: String::new(),
    })
    .unwrap();
    let junk: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        serde_json::to_vec(&json!({ "blob": "x".repeat(512 * 1024) })).unwrap(),
        serde_json::to_vec(&wrong_subject).unwrap(),
        {
            wrong_subject["actor"] = json!("x");
            wrong_subject["action"] = json!("y");
            wrong_subject["hash"] = json!("zz");
            wrong_subject["prev_hash"] = json!("zz");
            serde_json::to_vec(&wrong_subject).unwrap()
        },
        vec![b'['; 100_000],
    ];
    for body in junk {
        js.publish("audit.x.y", body.into()).await.unwrap().await.expect("stored");
    }
    // A writer after the junk starts over at genesis; the projector stores it.
    record(&client, "alice", "after", json!({})).await;
    let rows = projected(&backend, 2).await;
    assert_eq!((rows[0]["target"].as_str(), rows[1]["target"].as_str()), (Some("before"), Some("after")));
    let (code, report, stderr) = verify(&url, &backend, &[]).await;
    assert_eq!(code, Some(1), "{report:#}\n{stderr}");
    let found = &report["stream"]["first_break"];
    assert_eq!((found["seq"].as_u64(), found["kind"].as_str()), (Some(2), Some("malformed")), "{report:#}");
    assert_eq!(report["stream"]["checked"].as_u64(), Some(8));
    assert_eq!(report["database"]["first_break"], Value::Null, "the database stored what it should: {report:#}");
    let table = verify_as(&url, &backend, &[], "table").await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("not an audit event"));
    // Nothing the stream holds can make a verify panic or hang, from any point on.
    let (code, _, _) = verify(&url, &backend, &["--since", "1m"]).await;
    assert_eq!(code, Some(1));

    // Hostile arguments and queries are refused, not obeyed.
    for since in ["garbage", "", "9999999999999y", "2026-02-30T00:00:00Z"] {
        let out = verify_as(&url, &backend, &["--since", since], "json").await;
        assert_eq!(out.status.code(), Some(2), "--since {since:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for bad in [
        "from_seq=-1",
        "from_seq=99999999999999999999",
        "from_seq=18446744073709551615",
        "since=yesterday",
        "cursor=abc",
        "limit=0",
        "colour=red",
    ] {
        let (status, body) = backend.get(&format!("/api/audit/chain?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn a_postgresql_backend_reproduces_every_hash() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _js) = connect(&url).await;
    let database = TestDatabase::create().await;
    let backend = TestBackend::start_in(&url, tempfile::tempdir().unwrap(), Some(database.url.clone())).await;
    // What PostgreSQL could change on the way: NUL (it refuses it in text), floats, large and negative numbers,
    // key order, non-ASCII text.
    record(&client, "alice", "a\0b", json!({ "z": 1, "a": [0.1, 1e300, -0.0, u64::MAX, i64::MIN], "s": "\u{0}é😀" }))
        .await;
    record(&client, "bob", "plain", json!(null)).await;
    record(&client, "carol", "", json!({ "nested": { "b": true, "a": "x" } })).await;
    let rows = projected(&backend, 3).await;
    assert_eq!(rows[0]["target"], "a\u{fffd}b", "stored as hashed");
    // Paged one row at a time, from a time or a sequence on, in PostgreSQL's SQL too.
    assert_eq!(backend.get_all("/api/audit/chain?limit=1&since=1h").await, rows);
    assert_eq!(backend.get_all("/api/audit/chain?limit=1&from_seq=2").await, rows[1..]);
    assert_eq!(backend.get_all("/api/audit/chain?since=2999-01-01T00:00:00Z").await, Vec::<Value>::new());
    let (code, report, stderr) = verify(&url, &backend, &[]).await;
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
    assert_eq!(report["database"]["compared"].as_u64(), Some(3));
}
