//! The projectors end to end: real agents' results and heartbeats reach the API through JetStream and SQL, on
//! SQLite and on PostgreSQL; re-reading the stream, duplicates and malformed messages change nothing they should not.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, publish::PublishAck};
use chrono::{DateTime, Utc};
use kanade_backend::db::Dialect;
use kanade_shared::resources::{CONSUMER_RESULTS_PROJECTOR, STREAM_RESULTS};
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Command, ExecResult, Heartbeat, ResultStatus, RunAs};
use kanade_shared::{ExecId, GroupName, JobId, PcId, ResultId};
use kanade_testkit::fleet::{self, ResultWatch};
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::Value;

mod support;

use support::postgres;

const PATIENCE: Duration = Duration::from_secs(20);

fn pc(id: &str) -> PcId {
    PcId::new(id).expect("test pc id")
}

/// The rows of `GET /api/results?<query>`'s first page, which must succeed.
async fn results(backend: &TestBackend, query: &str) -> Vec<Value> {
    let (status, body) = backend.get(&format!("/api/results?{query}")).await;
    assert_eq!(status, 200, "/api/results?{query}: {body}");
    body["items"].as_array().unwrap_or_else(|| panic!("/api/results?{query} is not a page: {body}")).clone()
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|row| row["result_id"].as_str().unwrap_or_default().to_owned()).collect()
}

async fn wait_for_result_count(backend: &TestBackend, count: usize) {
    eventually(&format!("{count} results in /api/results"), PATIENCE, || async {
        (results(backend, "limit=1000").await.len() == count).then_some(())
    })
    .await;
}

/// Waits until the backend's durable consumer has acknowledged (or terminated) every message in `RESULTS`: after
/// that, everything in the stream has been through the projector and its rows are committed.
async fn wait_until_projected(js: &jetstream::Context) {
    eventually("the results projector acknowledged the whole RESULTS stream", PATIENCE, || {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream(STREAM_RESULTS).await.ok()?;
            let last = stream.info().await.ok()?.state.last_sequence;
            let consumer = stream.consumer_info(CONSUMER_RESULTS_PROJECTOR).await.ok()?;
            let done = consumer.ack_floor.stream_sequence >= last
                && consumer.num_ack_pending == 0
                && consumer.num_pending == 0;
            done.then_some(())
        }
    })
    .await;
}

/// Publishes raw bytes into `RESULTS` under `msg_id` and returns the broker's ack.
async fn publish_result_bytes(js: &jetstream::Context, subject: String, body: Vec<u8>, msg_id: &str) -> PublishAck {
    js.send_publish(subject, PublishMessage::build().payload(body.into()).message_id(msg_id))
        .await
        .expect("publish into RESULTS")
        .await
        .expect("RESULTS stored the message")
}

/// A well-formed result as an agent would publish it.
fn result_for(pc_id: &str, stdout: &str) -> ExecResult {
    let exec = ExecId::generate();
    let pc_id = pc(pc_id);
    let finished_at = Utc::now();
    ExecResult {
        result_id: ResultId::for_run(&exec, &pc_id),
        job_id: JobId::adhoc(&exec),
        exec_id: exec,
        version: String::new(),
        pc_id,
        status: ResultStatus::Ok,
        exit_code: Some(0),
        stdout: stdout.to_owned(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        started_at: Some(finished_at - chrono::Duration::milliseconds(5)),
        finished_at,
        reason: None,
        stdout_full: None,
        stderr_full: None,
    }
}

fn millis_of(value: &Value, what: &str) -> Option<i64> {
    let text = value.as_str()?;
    let parsed = DateTime::parse_from_rfc3339(text).unwrap_or_else(|err| panic!("{what} `{text}`: {err}"));
    Some(parsed.timestamp_millis())
}

/// Asserts that an API row shows `result` field by field (times to the millisecond the read model keeps; NUL, which
/// PostgreSQL cannot store, replaced the same way on every database).
fn assert_row_shows(row: &Value, result: &ExecResult) {
    let id = result.result_id.as_str();
    let text = |s: &str| s.replace('\0', "\u{fffd}");
    assert_eq!(row["result_id"], id, "{row}");
    assert_eq!(row["exec_id"], result.exec_id.as_str(), "{id}: exec_id");
    assert_eq!(row["job_id"], result.job_id.as_str(), "{id}: job_id");
    assert_eq!(row["version"], result.version, "{id}: version");
    assert_eq!(row["pc_id"], result.pc_id.as_str(), "{id}: pc_id");
    assert_eq!(row["status"], result.status.as_str(), "{id}: status");
    assert_eq!(row["exit_code"], serde_json::json!(result.exit_code), "{id}: exit_code");
    assert_eq!(row["stdout"], text(&result.stdout), "{id}: stdout");
    assert_eq!(row["stderr"], text(&result.stderr), "{id}: stderr");
    assert_eq!(row["stdout_truncated"], result.stdout_truncated, "{id}: stdout_truncated");
    assert_eq!(row["stderr_truncated"], result.stderr_truncated, "{id}: stderr_truncated");
    assert_eq!(
        millis_of(&row["started_at"], "started_at"),
        result.started_at.map(|t| t.timestamp_millis()),
        "{id}: started_at"
    );
    assert_eq!(
        millis_of(&row["finished_at"], "finished_at"),
        Some(result.finished_at.timestamp_millis()),
        "{id}: finished_at"
    );
    assert_eq!(row["reason"], serde_json::json!(result.reason.as_ref().map(|r| r.as_str())), "{id}: reason");
    assert!(millis_of(&row["recorded_at"], "recorded_at").is_some(), "{id}: recorded_at missing in {row}");
}

/// Publishes `command` to `target` and waits until `count` agents answered it.
async fn run(
    js: &jetstream::Context,
    watch: &mut ResultWatch,
    target: &Target,
    command: Command,
    count: usize,
) -> Vec<ExecResult> {
    fleet::publish(js, target, &command).await;
    let mut answered: Vec<ExecResult> = watch.all_for(&command.exec_id, count, PATIENCE).await.into_values().collect();
    answered.sort_by(|a, b| a.pc_id.cmp(&b.pc_id));
    answered
}

fn named_job(script: &str, job: &str) -> Command {
    let mut command = fleet::command(script);
    command.job_id = JobId::new(job).expect("test job id");
    command
}

/// The scenario both databases must pass: two real agents run a mix of commands; every result shows in the API
/// with every filter; the agents show with their heartbeat data; and a backend restart that re-reads the whole
/// stream from a fresh consumer creates no duplicates and changes no row.
async fn agents_and_results_scenario(database_url: Option<String>) {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, js) = connect(&url).await;
    let backend = TestBackend::start_in(&url, tempfile::tempdir().expect("temp dir"), database_url.clone()).await;
    let dialect = if database_url.is_some() { Dialect::Postgres } else { Dialect::Sqlite };
    assert_eq!(backend.db.dialect(), dialect);
    let _agent_a = TestAgent::start(&url, "pc-a", &["lab"]).await;
    let _agent_b = TestAgent::start(&url, "pc-b", &["ops"]).await;
    let mut watch = ResultWatch::new(&client).await;
    let (to_a, to_b) = (Target::Pc(pc("pc-a")), Target::Pc(pc("pc-b")));

    // One command at a time, so that finish times differ and newest-first is a real order.
    let mut ran = Vec::new();
    ran.extend(run(&js, &mut watch, &to_a, fleet::command("echo one"), 1).await);
    ran.extend(run(&js, &mut watch, &to_b, fleet::command("echo two"), 1).await);
    ran.extend(run(&js, &mut watch, &to_a, named_job("echo bad >&2; exit 3", "nightly-check"), 1).await);
    ran.extend(run(&js, &mut watch, &to_b, named_job(r"printf 'nul:\000:end'", "nightly-check"), 1).await);
    let everyone = run(&js, &mut watch, &Target::All, fleet::command("echo everyone"), 2).await;
    let everyone_exec = everyone[0].exec_id.clone();
    ran.extend(everyone);
    let mut as_user = fleet::command("echo never runs");
    as_user.run_as = RunAs::User;
    ran.extend(run(&js, &mut watch, &Target::Group(GroupName::new("lab").expect("group")), as_user, 1).await);

    // The scenario is what the filters below assume it is.
    let statuses: Vec<&str> = ran.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["ok", "ok", "failed", "ok", "ok", "ok", "skipped"], "{ran:#?}");
    assert_eq!(ran[2].exit_code, Some(3));
    assert_eq!(ran[3].stdout, "nul:\0:end", "the agent keeps a NUL its script printed");

    wait_for_result_count(&backend, ran.len()).await;
    let mut newest_first = ran.clone();
    newest_first.sort_by(|a, b| {
        (b.finished_at.timestamp_millis(), &b.result_id).cmp(&(a.finished_at.timestamp_millis(), &a.result_id))
    });
    let all = results(&backend, "").await;
    let expected_ids: Vec<String> = newest_first.iter().map(|r| r.result_id.to_string()).collect();
    assert_eq!(ids(&all), expected_ids, "newest first");
    for (row, result) in all.iter().zip(&newest_first) {
        assert_row_shows(row, result);
    }

    type Filter = (String, usize, Box<dyn Fn(&ExecResult) -> bool>);
    let filters: Vec<Filter> = vec![
        ("pc_id=pc-a".into(), 4, Box::new(|r| r.pc_id.as_str() == "pc-a")),
        ("pc_id=pc-b".into(), 3, Box::new(|r| r.pc_id.as_str() == "pc-b")),
        ("pc_id=pc-c".into(), 0, Box::new(|_| false)),
        (format!("exec_id={everyone_exec}"), 2, Box::new(move |r| r.exec_id == everyone_exec)),
        ("job_id=nightly-check".into(), 2, Box::new(|r| r.job_id.as_str() == "nightly-check")),
        ("status=ok".into(), 5, Box::new(|r| r.status == ResultStatus::Ok)),
        ("status=failed".into(), 1, Box::new(|r| r.status == ResultStatus::Failed)),
        ("status=skipped".into(), 1, Box::new(|r| r.status == ResultStatus::Skipped)),
        ("status=timeout".into(), 0, Box::new(|r| r.status == ResultStatus::Timeout)),
        ("pc_id=pc-b&status=ok".into(), 3, Box::new(|r| r.pc_id.as_str() == "pc-b" && r.status == ResultStatus::Ok)),
        (
            "job_id=nightly-check&pc_id=pc-a".into(),
            1,
            Box::new(|r| r.job_id.as_str() == "nightly-check" && r.pc_id.as_str() == "pc-a"),
        ),
        ("limit=2".into(), 2, Box::new(|_| true)),
        ("limit=1&pc_id=pc-b".into(), 1, Box::new(|r| r.pc_id.as_str() == "pc-b")),
    ];
    for (query, count, keep) in &filters {
        let limit =
            query.split('&').find_map(|kv| kv.strip_prefix("limit=")).map_or(usize::MAX, |n| n.parse().unwrap());
        let expected: Vec<String> =
            newest_first.iter().filter(|r| keep(r)).take(limit).map(|r| r.result_id.to_string()).collect();
        assert_eq!(expected.len(), *count, "the scenario gives `{query}` {count} results");
        assert_eq!(ids(&results(&backend, query).await), expected, "/api/results?{query}");
    }

    let agents = eventually("both agents listed online", PATIENCE, || async {
        let (status, body) = backend.get("/api/agents").await;
        assert_eq!(status, 200, "{body}");
        let listed = body["items"].as_array()?.clone();
        let online = listed.iter().filter(|a| a["online"] == true).count();
        (listed.len() == 2 && online == 2).then_some(listed)
    })
    .await;
    let now = Utc::now().timestamp_millis();
    for (agent, (pc_id, group)) in agents.iter().zip([("pc-a", "lab"), ("pc-b", "ops")]) {
        assert_eq!(agent["pc_id"], pc_id, "sorted by pc_id: {agent}");
        assert_eq!(agent["hostname"], format!("{pc_id}.test"), "{agent}");
        assert_eq!(agent["os"], std::env::consts::OS, "{agent}");
        assert_eq!(agent["arch"], std::env::consts::ARCH, "{agent}");
        assert_eq!(agent["agent_version"], kanade_agent::BUILD_VERSION, "{agent}");
        assert_eq!(agent["groups"], serde_json::json!([group]), "{agent}");
        let last_seen = millis_of(&agent["last_seen"], "last_seen").expect("last_seen");
        let first_seen = millis_of(&agent["first_seen"], "first_seen").expect("first_seen");
        assert!(first_seen <= last_seen && (0..60_000).contains(&(now - last_seen)), "{agent}");

        let (status, one) = backend.get(&format!("/api/agents/{pc_id}")).await;
        assert_eq!(status, 200, "{one}");
        for field in ["pc_id", "hostname", "os", "arch", "agent_version", "groups", "first_seen", "online"] {
            assert_eq!(one[field], agent[field], "/api/agents/{pc_id}: {field}");
        }
    }

    // Re-read the whole stream: stop the backend, drop its consumer, and let a result arrive while it is down.
    wait_until_projected(&js).await;
    let before = results(&backend, "").await;
    let count_before = backend.db.count_results().await.expect("count results");
    assert_eq!(count_before, 7);
    let data_dir = backend.stop().await;
    let stream = js.get_stream(STREAM_RESULTS).await.expect("RESULTS stream");
    assert!(stream.delete_consumer(CONSUMER_RESULTS_PROJECTOR).await.expect("delete the projector's consumer").success);
    let late = run(&js, &mut watch, &to_b, fleet::command("echo while the backend was down"), 1).await.remove(0);

    let backend = TestBackend::start_in(&url, data_dir, database_url).await;
    wait_until_projected(&js).await;
    assert_eq!(backend.db.count_results().await.expect("count results"), count_before + 1, "no duplicates");
    let mut after = results(&backend, "").await;
    let late_row = after.iter().position(|row| row["result_id"] == late.result_id.as_str()).expect("late result");
    assert_row_shows(&after.remove(late_row), &late);
    assert_eq!(after, before, "re-reading the stream changed no row");
    backend.stop().await;
}

#[tokio::test]
async fn agents_and_results_are_projected_and_survive_a_replay_on_sqlite() {
    agents_and_results_scenario(None).await;
}

#[tokio::test]
async fn agents_and_results_are_projected_and_survive_a_replay_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    agents_and_results_scenario(Some(database.url.clone())).await;
}

#[tokio::test]
async fn a_result_republished_under_another_msg_id_is_stored_once() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;

    let result = result_for("pc-dup", "twice");
    let body = serde_json::to_vec(&result).expect("encode result");
    for msg_id in ["first-copy", "second-copy"] {
        let ack =
            publish_result_bytes(&js, subject::result(&result.pc_id, &result.exec_id), body.clone(), msg_id).await;
        assert!(!ack.duplicate, "the broker must keep both copies, or the backend never sees the second");
    }
    wait_until_projected(&js).await;

    assert_eq!(backend.db.count_results().await.expect("count results"), 1);
    let rows = results(&backend, &format!("exec_id={}", result.exec_id)).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_row_shows(&rows[0], &result);
}

#[tokio::test]
async fn malformed_results_are_not_projected_and_do_not_block_later_ones() {
    init_logging();
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;

    let forged_id = {
        let mut result = result_for("pc-m", "forged id");
        result.result_id = ResultId::for_run(&ExecId::generate(), &result.pc_id);
        result
    };
    let other_subject = result_for("pc-m", "on another agent's subject");
    let bad_pc = {
        let result = result_for("pc-m", "uppercase pc id");
        serde_json::to_string(&result).expect("encode").replace("\"pc-m\"", "\"PC-M\"")
    };
    let garbage_exec = ExecId::generate();
    let malformed: Vec<(&str, String, Vec<u8>)> = vec![
        ("garbage bytes", subject::result(&pc("pc-m"), &garbage_exec), b"\xff\xfe\x00not json at all".to_vec()),
        ("empty object", subject::result(&pc("pc-m"), &garbage_exec), b"{}".to_vec()),
        ("truncated JSON", subject::result(&pc("pc-m"), &garbage_exec), br#"{"result_id":"x.pc-m","exec_"#.to_vec()),
        (
            "result id not matching its exec and pc",
            subject::result(&forged_id.pc_id, &forged_id.exec_id),
            serde_json::to_vec(&forged_id).expect("encode"),
        ),
        (
            "result on another agent's subject",
            subject::result(&pc("pc-other"), &other_subject.exec_id),
            serde_json::to_vec(&other_subject).expect("encode"),
        ),
        ("invalid pc id", format!("results.pc-m.{}", ExecId::generate()), bad_pc.into_bytes()),
    ];
    for (i, (_what, subject, body)) in malformed.iter().enumerate() {
        publish_result_bytes(&js, subject.clone(), body.clone(), &format!("malformed-{i}")).await;
    }
    let valid = result_for("pc-m", "valid, after the rest");
    publish_result_bytes(
        &js,
        subject::result(&valid.pc_id, &valid.exec_id),
        serde_json::to_vec(&valid).expect("encode"),
        valid.result_id.as_str(),
    )
    .await;

    wait_for_result_count(&backend, 1).await;
    // Every message was settled, so the malformed ones are not redelivered forever ahead of new work.
    wait_until_projected(&js).await;
    let rows = results(&backend, "").await;
    assert_eq!(ids(&rows), [valid.result_id.to_string()]);
    assert_row_shows(&rows[0], &valid);
    assert_eq!(backend.db.count_results().await.expect("count results"), 1);
    let mut stream = js.get_stream(STREAM_RESULTS).await.expect("RESULTS stream");
    let kept = stream.info().await.expect("stream info").state.messages;
    assert_eq!(kept, malformed.len() as u64 + 1, "malformed results stay in the stream for inspection");
}

fn heartbeat_for(pc_id: &str, sent_at: DateTime<Utc>) -> Heartbeat {
    Heartbeat {
        hostname: format!("{pc_id}.example"),
        os: "linux".into(),
        arch: "x86_64".into(),
        agent_version: "9.9.9".into(),
        uptime_secs: u64::MAX,
        ..Heartbeat::minimal(pc(pc_id), sent_at)
    }
}

#[tokio::test]
async fn malformed_heartbeats_are_ignored_and_agents_still_show() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _js) = connect(&nats.url()).await;
    let backend = TestBackend::start(&nats.url()).await;
    let _agent = TestAgent::start(&nats.url(), "pc-live", &[]).await;
    // Once the live agent shows, the backend's heartbeat subscription is in place.
    eventually("pc-live listed", PATIENCE, || async {
        (backend.get("/api/agents/pc-live").await.0 == 200).then_some(())
    })
    .await;

    let well_formed_y = serde_json::to_vec(&heartbeat_for("y", Utc::now())).expect("encode");
    let no_sent_at = br#"{"pc_id":"x","hostname":"x"}"#.to_vec();
    let uppercase = serde_json::to_string(&heartbeat_for("x", Utc::now())).expect("encode").replace("\"x\"", "\"X\"");
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("heartbeat.x", b"\xff\xfe garbage".to_vec()),
        ("heartbeat.x", b"{}".to_vec()),
        ("heartbeat.x", b"null".to_vec()),
        ("heartbeat.x", no_sent_at),
        ("heartbeat.x", well_formed_y),
        ("heartbeat.x", uppercase.clone().into_bytes()),
        ("heartbeat.X", uppercase.into_bytes()),
    ];
    for (subject, body) in malformed {
        client.publish(subject, body.into()).await.expect("publish heartbeat");
    }
    // From the same connection, so it arrives after the malformed ones; its clock is far off.
    let after = heartbeat_for("pc-after", "2100-01-01T00:00:00Z".parse().expect("time"));
    client
        .publish(subject::heartbeat(&after.pc_id), serde_json::to_vec(&after).expect("encode").into())
        .await
        .expect("publish heartbeat");
    client.flush().await.expect("flush");

    let listed = eventually("pc-after listed", PATIENCE, || async {
        let (_, body) = backend.get("/api/agents").await;
        let listed = body["items"].as_array()?.clone();
        listed.iter().any(|a| a["pc_id"] == "pc-after").then_some(listed)
    })
    .await;
    let pcs: Vec<&str> = listed.iter().filter_map(|a| a["pc_id"].as_str()).collect();
    assert_eq!(pcs, ["pc-after", "pc-live"], "only well-formed heartbeats on their own subject count");
    for pc_id in ["x", "y"] {
        let (status, body) = backend.get(&format!("/api/agents/{pc_id}")).await;
        assert_eq!(status, 404, "{pc_id}: {body}");
    }
    let pc_after = &listed[0];
    assert_eq!(pc_after["uptime_secs"], i64::MAX, "a u64 beyond SQL's range is clamped: {pc_after}");
    let last_seen = millis_of(&pc_after["last_seen"], "last_seen").expect("last_seen");
    let skew = (Utc::now().timestamp_millis() - last_seen).abs();
    assert!(skew < 60_000, "last_seen is when the backend heard it, not the agent's clock: {pc_after}");
    assert_eq!(listed[1]["online"], true, "{}", listed[1]);
}
