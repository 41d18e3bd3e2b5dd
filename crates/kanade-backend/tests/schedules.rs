//! Schedules through the backend at real agents over a real nats-server: the documents' every-10-seconds sample,
//! once-per-PC reaching a PC that comes online later exactly once, overlap, misfire after an absence, pause,
//! resume, run-now and delete, hostile schedule files, and two backends on one PostgreSQL database of which only
//! the leader fires.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, eventually, init_logging};
use reqwest::Method;
use serde_json::{Value, json};

mod support;

use support::postgres;

const PATIENCE: Duration = Duration::from_secs(40);

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)).expect("repo file")
}

/// A broker and a backend over it; `standing_every` in place of the scheduler's 30 s look at once-per-PC schedules.
async fn started(standing_every: Option<Duration>) -> (NatsServer, String, TestBackend) {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let data = tempfile::tempdir().expect("temp dir");
    let backend = TestBackend::start_tuned(
        &url,
        data,
        None,
        |c| c,
        |b| match standing_every {
            Some(every) => b.with_standing_every(every),
            None => b,
        },
    )
    .await;
    (nats, url, backend)
}

async fn create_job(backend: &TestBackend, manifest: &str) {
    let (status, body) = backend.post("/api/jobs", &json!({ "manifest": manifest })).await;
    assert!(status == 201 || status == 200, "job create: {status} {body}");
}

async fn create_schedule(backend: &TestBackend, yaml: &str) -> Value {
    let (status, body) = backend.post("/api/schedules", &json!({ "schedule": yaml })).await;
    assert!(status == 201 || status == 200, "schedule create: {status} {body}");
    body
}

async fn schedule(backend: &TestBackend, id: &str) -> Value {
    let (status, body) = backend.get(&format!("/api/schedules/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn assert_error_json(status: u16, body: &Value, wanted: u16, code: &str) {
    assert_eq!((status, body["error"]["code"].as_str()), (wanted, Some(code)), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

async fn metrics(backend: &TestBackend) -> String {
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", backend.url()))
        .bearer_auth(kanade_testkit::TEST_TOKEN)
        .send()
        .await
        .expect("GET /metrics");
    response.text().await.expect("metrics text")
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("not a time: {value}")))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// The schedule's fires with this outcome, oldest first.
fn fires(view: &Value, outcome: &str) -> Vec<Value> {
    let mut out: Vec<Value> =
        view["fires"].as_array().expect("fires").iter().filter(|f| f["outcome"] == outcome).cloned().collect();
    out.reverse();
    out
}

fn sh_job(id: &str, version: &str, script: &str, extra: &str) -> String {
    format!("id: {id}\nversion: \"{version}\"\nexecute:\n  shell: sh\n  script: '{script}'\n  timeout: 30s\n{extra}")
}

#[tokio::test]
async fn the_documents_every_ten_seconds_sample_fires_every_ten_seconds() {
    let (_nats, url, backend) = started(None).await;
    let _a = TestAgent::start(&url, "pc-a", &[]).await;
    let _b = TestAgent::start(&url, "pc-b", &[]).await;
    backend.wait_for_agents(2).await;
    create_job(&backend, &repo("jobs/echo.yaml")).await;
    let created = create_schedule(&backend, &repo("schedules/echo-every-10s.yaml")).await;
    assert_eq!(created["action"], "created");
    assert_eq!(created["schedule"]["state"], "active");
    let next: Vec<DateTime<Utc>> = created["schedule"]["next"].as_array().unwrap().iter().map(time).collect();
    assert_eq!(next.len(), 5);
    for pair in next.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(10), "{next:?}");
    }

    let view = eventually("three fires of the sample", PATIENCE, || async {
        let view = schedule(&backend, "echo-every-10s").await;
        (fires(&view, "fired").len() >= 3).then_some(view)
    })
    .await;
    let fired = fires(&view, "fired");
    let times: Vec<DateTime<Utc>> = fired.iter().map(|f| time(&f["occurrence_at"])).collect();
    for (fire, at) in fired.iter().zip(&times) {
        assert_eq!(at.timestamp() % 10, 0, "on the 10-second marks: {fire}");
        let id = format!("echo-every-10s-{}", at.format("%Y%m%dt%H%M%Sz"));
        assert_eq!(fire["occurrence_id"], id.as_str());
        assert_eq!(fire["exec_id"], id.as_str(), "the execution is keyed by the occurrence");
        // Decided on time (a `fired`, not a `missed`, says so too): within the minute an occurrence may be late.
        let lag = time(&fire["decided_at"]) - *at;
        assert!(lag < chrono::Duration::seconds(60), "decided {lag} after its time: {fire}");
    }
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(10), "every 10 s, none skipped: {times:?}");
    }
    for fire in &fired[..2] {
        let exec = fire["exec_id"].as_str().unwrap();
        let done = backend.execution_until(exec, "both agents answered", |v| v["status"] == "completed").await;
        assert_eq!(done["by_status"], json!({ "ok": 2 }), "{done}");
        assert_eq!(done["requested_by"], "schedule-echo-every-10s");
    }
    let (status, list) = backend.get("/api/schedules").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["fires"].as_array().unwrap().len(), 1, "the list shows the latest decision: {list}");
    let (status, audit) = backend.get("/api/audit?action=schedule-create").await;
    assert_eq!(status, 200);
    assert!(audit["items"].as_array().unwrap().iter().any(|e| e["target"] == "echo-every-10s"), "{audit}");
}

#[tokio::test]
async fn once_per_pc_reaches_a_pc_that_comes_online_later_exactly_once() {
    let (_nats, url, backend) = started(Some(Duration::from_secs(1))).await;
    let runs = tempfile::tempdir().expect("temp dir");
    let log = runs.path().join("runs.log");
    let a = TestAgent::start(&url, "pc-a", &["office"]).await;
    backend.wait_for_agents(1).await;
    let script = format!("echo $KANADE_EXEC_ID >> {}", log.display());
    let yaml = format!(
        "id: welcome\nmode: once_per_pc\ntarget:\n  groups: [office]\njob:\n  id: welcome-note\n  version: 1\n  \
         execute:\n    shell: sh\n    script: '{script}'\n"
    );
    let created = create_schedule(&backend, &yaml).await;
    assert_eq!(created["job_action"], "created", "the inline job is registered with the schedule");
    assert_eq!(created["schedule"]["next"], json!([]), "no times: {created}");

    let view = eventually("the standing fire", PATIENCE, || async {
        let view = schedule(&backend, "welcome").await;
        fires(&view, "fired").first().cloned()
    })
    .await;
    let exec = view["exec_id"].as_str().unwrap().to_owned();
    backend.execution_until(&exec, "pc-a ran it", |v| v["by_status"]["ok"] == 1).await;

    // A PC that comes online later, in the group: it picks the standing command up in its catch-up, and the
    // leader adds it to the execution's targets.
    let b = TestAgent::start(&url, "pc-b", &["office"]).await;
    let _elsewhere = TestAgent::start(&url, "pc-c", &["lab"]).await;
    let done = backend
        .execution_until(&exec, "pc-b ran it and is a target", |v| v["by_status"]["ok"] == 2 && v["target_count"] == 2)
        .await;
    assert_eq!(done["status"], "completed", "{done}");

    // Restarted, both stay at one run each; pc-c is not in the group and never runs it.
    let a_dir = a.stop().await;
    let b_dir = b.stop().await;
    let config_a = kanade_testkit::agent_config(&url, "pc-a", &["office"], a_dir.path());
    let config_b = kanade_testkit::agent_config(&url, "pc-b", &["office"], b_dir.path());
    let _a = TestAgent::start_with(config_a, a_dir).await;
    let _b = TestAgent::start_with(config_b, b_dir).await;
    backend.wait_for_agents(3).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // time for a wrongly repeated run to show up
    let text = std::fs::read_to_string(&log).expect("runs log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, [exec.as_str(), exec.as_str()], "one run per PC in the group, pc-c none: {text}");
    let (_, results) = backend.get(&format!("/api/executions/{exec}/results")).await;
    let pcs: BTreeSet<&str> = results["items"].as_array().unwrap().iter().filter_map(|r| r["pc_id"].as_str()).collect();
    assert_eq!(pcs, BTreeSet::from(["pc-a", "pc-b"]), "{results}");
    let view = schedule(&backend, "welcome").await;
    assert_eq!(fires(&view, "fired").len(), 1, "one standing fire, never a fleet-wide one per check: {view}");

    // Deleting it takes the standing command out of EXEC: a PC that joins afterwards does not run it.
    let (status, _) = backend.send(Method::DELETE, "/api/schedules/welcome", kanade_testkit::TEST_TOKEN, None).await;
    assert_eq!(status, 204);
    let deleted = eventually("the delete audited", PATIENCE, || async {
        let (_, audit) = backend.get("/api/audit?action=schedule-delete").await;
        audit["items"].as_array().and_then(|items| items.first().cloned())
    })
    .await;
    assert_eq!(deleted["details"]["withdrawn"].as_array().map(Vec::len), Some(1), "{deleted}");
    let _d = TestAgent::start(&url, "pc-d", &["office"]).await;
    backend.wait_for_agents(4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2, "pc-d joined after the delete");
}

#[tokio::test]
async fn an_occurrence_is_skipped_while_the_previous_fire_runs() {
    let (_nats, url, backend) = started(None).await;
    let _a = TestAgent::start(&url, "pc-a", &[]).await;
    backend.wait_for_agents(1).await;
    create_job(&backend, &sh_job("slow", "1", "sleep 3", "target:\n  all: true\n")).await;
    create_schedule(&backend, "id: slow-every-second\njob: slow\ncron: \"* * * * * *\"\n").await;
    let view = eventually("a fire, then skips while it runs, then another fire", PATIENCE, || async {
        let view = schedule(&backend, "slow-every-second").await;
        (fires(&view, "fired").len() >= 2 && fires(&view, "skipped_overlap").len() >= 2).then_some(view)
    })
    .await;
    let skipped = fires(&view, "skipped_overlap");
    assert!(skipped[0]["reason"].as_str().unwrap().contains("unfinished"), "{view}");
    assert!(skipped[0].get("exec_id").is_none(), "a skip creates no execution");
    // `overlap: allow` fires every second regardless.
    create_schedule(&backend, "id: slow-every-second\njob: slow\ncron: \"* * * * * *\"\noverlap: allow\n").await;
    let before = fires(&schedule(&backend, "slow-every-second").await, "fired").len();
    eventually("three fires in a row", PATIENCE, || async {
        let view = schedule(&backend, "slow-every-second").await;
        (fires(&view, "fired").len() >= before + 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn occurrences_missed_while_no_backend_ran_are_skipped_or_run_once() {
    let (_nats, url, backend) = started(None).await;
    let _a = TestAgent::start(&url, "pc-a", &[]).await;
    backend.wait_for_agents(1).await;
    create_job(&backend, &sh_job("tick", "1", "true", "target:\n  all: true\n")).await;
    create_schedule(&backend, "id: skipper\njob: tick\nevery: 1m\n").await;
    create_schedule(&backend, "id: runner\njob: tick\nevery: 1m\nmisfire: run_once\ngrace: 1h\n").await;
    let dir = backend.stop().await;
    // As if the backend had been away for ten minutes: the schedules were made, and last decided, ten minutes ago.
    let (_, js) = connect(&url).await;
    let kv = js.get_key_value("schedules").await.unwrap();
    let made = Utc::now() - chrono::Duration::minutes(10);
    for id in ["skipper", "runner"] {
        let mut stored: Value = serde_json::from_slice(&kv.get(id).await.unwrap().unwrap()).unwrap();
        stored["created_at"] = json!(made.to_rfc3339());
        stored["updated_at"] = json!(made.to_rfc3339());
        kv.put(id, serde_json::to_vec(&stored).unwrap().into()).await.unwrap();
    }
    let db = kanade_backend::db::Db::connect(&kanade_backend::db::default_url(dir.path())).await.unwrap();
    let past = (Utc::now() - chrono::Duration::minutes(10)).timestamp_millis() / 60_000 * 60_000;
    for id in ["skipper", "runner"] {
        sqlx::query("INSERT INTO schedule_cursors (schedule_id, cursor_ms, updated_at_ms) VALUES ($1, $2, $2)")
            .bind(id)
            .bind(past)
            .execute(db.pool())
            .await
            .unwrap();
    }
    db.close().await;
    let backend = TestBackend::start_in(&url, dir, None).await;
    let skipper = eventually("the skipped run recorded", PATIENCE, || async {
        let view = schedule(&backend, "skipper").await;
        fires(&view, "missed").first().cloned()
    })
    .await;
    let count = skipper["count"].as_i64().unwrap();
    assert!((8..=10).contains(&count), "about ten minutes of a 1-minute schedule: {skipper}");
    assert!(skipper["reason"].as_str().unwrap().contains("misfire: skip"), "{skipper}");
    let view = schedule(&backend, "skipper").await;
    let recent = Utc::now() - chrono::Duration::minutes(2);
    assert!(fires(&view, "fired").iter().all(|f| time(&f["occurrence_at"]) > recent), "only on-time ones fire: {view}");

    let runner = eventually("the latest missed one fired late", PATIENCE, || async {
        let view = schedule(&backend, "runner").await;
        let late: Vec<Value> = fires(&view, "fired")
            .into_iter()
            .filter(|f| time(&f["decided_at"]) - time(&f["occurrence_at"]) > chrono::Duration::seconds(60))
            .collect();
        (late.len() == 1 && !fires(&view, "missed").is_empty()).then_some(view)
    })
    .await;
    let missed = &fires(&runner, "missed")[0];
    assert!(missed["reason"].as_str().unwrap().contains("run_once"), "{missed}");
}

#[tokio::test]
async fn schedules_are_paused_resumed_run_now_and_deleted_and_every_change_is_audited() {
    let (_nats, url, backend) = started(None).await;
    let _a = TestAgent::start(&url, "pc-a", &[]).await;
    backend.wait_for_agents(1).await;
    create_job(&backend, &sh_job("nightly", "1", "echo patched", "target:\n  all: true\n")).await;
    let yaml = "id: nightly\njob: nightly\ncron: \"0 3 * * *\"\ntimezone: Europe/Berlin\n";
    assert_eq!(create_schedule(&backend, yaml).await["action"], "created");
    assert_eq!(create_schedule(&backend, yaml).await["action"], "unchanged");
    let updated = create_schedule(&backend, &format!("{yaml}description: patch\n")).await;
    assert_eq!(updated["action"], "updated");
    for next in updated["schedule"]["next"].as_array().unwrap() {
        assert_eq!(time(next).format("%M:%S").to_string(), "00:00");
    }

    let (status, paused) = backend.post("/api/schedules/nightly/pause", &json!({})).await;
    assert_eq!((status, paused["state"].as_str()), (200, Some("paused")), "{paused}");
    assert_eq!(paused["next"], json!([]));
    let (status, resumed) = backend.post("/api/schedules/nightly/resume", &json!({})).await;
    assert_eq!((status, resumed["state"].as_str()), (200, Some("active")), "{resumed}");

    let (status, ran) = backend.post("/api/schedules/nightly/run-now", &json!({})).await;
    assert_eq!(status, 201, "{ran}");
    assert_eq!(ran["outcome"], "fired");
    let exec = ran["exec_id"].as_str().unwrap();
    assert!(exec.starts_with("nightly-"), "{ran}");
    backend.execution_until(exec, "the run-now fire ran", |v| v["status"] == "completed").await;
    let view = schedule(&backend, "nightly").await;
    let runs = fires(&view, "run_now");
    assert_eq!(runs.len(), 1, "{view}");
    assert_eq!(runs[0]["exec_status"], "completed");
    assert_eq!(runs[0]["reason"], "run now by `anonymous`");

    let (status, _) = backend.send(Method::DELETE, "/api/schedules/nightly", kanade_testkit::TEST_TOKEN, None).await;
    assert_eq!(status, 204);
    let (status, body) = backend.get("/api/schedules/nightly").await;
    assert_error_json(status, &body, 404, "schedule_not_found");
    let (status, body) = backend.post("/api/schedules/nightly/run-now", &json!({})).await;
    assert_error_json(status, &body, 404, "schedule_not_found");

    let actions: BTreeMap<String, usize> = {
        let (_, audit) = backend.get("/api/audit?limit=200").await;
        let mut out = BTreeMap::new();
        for event in audit["items"].as_array().unwrap() {
            if event["target"] == "nightly" {
                *out.entry(event["action"].as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
        out
    };
    for action in [
        "schedule-create",
        "schedule-update",
        "schedule-pause",
        "schedule-resume",
        "schedule-run-now",
        "schedule-delete",
    ] {
        assert_eq!(actions.get(action), Some(&1), "{action} audited once: {actions:?}");
    }
}

#[tokio::test]
async fn bad_and_hostile_schedules_are_refused_with_a_clear_error() {
    let (_nats, url, backend) = started(None).await;
    create_job(&backend, &sh_job("loose", "1", "true", "")).await;
    create_job(
        &backend,
        &sh_job("waved", "1", "true", "rollout:\n  strategy: wave\n  waves:\n  - group: a\n  - group: b\n"),
    )
    .await;
    let cases: Vec<(String, &str)> = vec![
        ("id: s\njob: nope\nevery: 1m\n".into(), "not in the catalogue"),
        ("id: s\njob: loose\nevery: 1m\n".into(), "name the pcs, groups or all"),
        ("id: s\njob: waved\nevery: 1m\ntarget:\n  pcs: [pc-1]\n".into(), "would be refused"),
        ("id: s\njob: loose\nevery: 1m\ntarget: {all: true}\nsurprise: 1\n".into(), "surprise"),
        ("id: s\njob: loose\ncron: \"61 * * * *\"\ntarget: {all: true}\n".into(), "cron"),
        ("id: S!\njob: loose\nevery: 1m\n".into(), "id"),
        ("id: s\njob: loose\nat: 2020-01-01T00:00:00Z\ntarget: {all: true}\n".into(), "in the past"),
        ("[[[[".into(), ""),
        ("".into(), ""),
        (format!("id: s\njob: loose\nevery: 1m\ndescription: \"{}\"\n", "x".repeat(700 * 1024)), "limit"),
        ("id: s\njob:\n  id: inline\n  version: 1\n  execute:\n    shell: sh\n    script_file: missing.sh\nevery: 1m\ntarget: {all: true}\n".into(), "was not sent"),
    ];
    for (yaml, wanted) in &cases {
        let (status, body) = backend.post("/api/schedules", &json!({ "schedule": yaml })).await;
        assert_error_json(status, &body, 400, "invalid_schedule");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(wanted), "{wanted}: {message}");
    }
    let (status, body) = backend.post("/api/schedules", &json!({ "schedule": 5 })).await;
    assert_error_json(status, &body, 400, "invalid_body");
    let (status, body) = backend.post("/api/schedules", &json!({ "schedule": "id: s\n", "extra": true })).await;
    assert_error_json(status, &body, 400, "invalid_body");
    let (status, body) = backend.get("/api/schedules/Not%20An%20Id").await;
    assert_error_json(status, &body, 400, "invalid_schedule_id");
    let (status, body) = backend.get(&format!("/api/schedules/{}", "a".repeat(41))).await;
    assert_error_json(status, &body, 400, "invalid_schedule_id");
    let (_, list) = backend.get("/api/schedules").await;
    assert_eq!(list, json!([]), "nothing was stored");

    // Whatever someone writes into the bucket by hand is skipped, not fired and not a failure of the list.
    let (_, js) = connect(&url).await;
    let kv = js.get_key_value("schedules").await.unwrap();
    kv.put("junk", "not json at all".into()).await.unwrap();
    kv.put("empty", "".into()).await.unwrap();
    kv.put("huge", vec![b'['; 900 * 1024].into()).await.unwrap();
    create_job(&backend, &sh_job("tick", "1", "true", "target:\n  all: true\n")).await;
    let good = create_schedule(&backend, "id: good\njob: tick\nevery: 1h\n").await;
    let mut copy = good["schedule"].clone();
    for field in ["state", "next", "fires"] {
        copy.as_object_mut().unwrap().remove(field);
    }
    kv.put("impostor", serde_json::to_vec(&copy).unwrap().into()).await.unwrap();
    let (status, list) = backend.get("/api/schedules").await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list.as_array().unwrap().iter().filter_map(|s| s["schedule"]["id"].as_str()).collect();
    assert_eq!(ids, ["good"], "{list}");
    let (status, body) = backend.get("/api/schedules/junk").await;
    assert_eq!(status, 422, "an unreadable one is named as such: {body}");

    // An inline job's script file travels in `files`, as with `POST /api/jobs`.
    let yaml = "id: s\njob:\n  id: inline\n  version: 1\n  execute:\n    shell: sh\n    script_file: hi.sh\nevery: 1h\ntarget: {all: true}\n";
    let (status, body) =
        backend.post("/api/schedules", &json!({ "schedule": yaml, "files": { "hi.sh": "echo hi\n" } })).await;
    assert_eq!(status, 201, "{body}");
    let (_, job) = backend.get("/api/jobs/inline").await;
    assert_eq!(job["job"]["source"]["script"], "echo hi\n", "{job}");
}

#[tokio::test]
async fn two_backends_on_one_postgres_database_only_the_leader_fires() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let database = postgres::TestDatabase::create().await;
    let named = |name: &'static str| {
        move |mut config: kanade_backend::config::BackendConfig| {
            config.instance = Some(kanade_shared::Actor::new(name).unwrap());
            config
        }
    };
    let one =
        TestBackend::start_tuned(&url, tempfile::tempdir().unwrap(), Some(database.url.clone()), named("one"), |b| b)
            .await;
    eventually("one leads", PATIENCE, || async { (one.get("/health").await.1["leading"] == true).then_some(()) }).await;
    let two =
        TestBackend::start_tuned(&url, tempfile::tempdir().unwrap(), Some(database.url.clone()), named("two"), |b| b)
            .await;
    let (_, health) = two.get("/health").await;
    assert_eq!((health["instance"].as_str(), health["leading"].as_bool()), (Some("two"), Some(false)), "{health}");
    eventually("two sees who leads", PATIENCE, || async {
        (two.get("/health").await.1["leader"] == "one").then_some(())
    })
    .await;

    let _a = TestAgent::start(&url, "pc-a", &[]).await;
    one.wait_for_agents(1).await;
    create_job(&one, &sh_job("tick", "1", "true", "target:\n  all: true\n")).await;
    create_schedule(&two, "id: tick\njob: tick\ncron: \"* * * * * *\"\noverlap: allow\n").await;
    let view = eventually("five fires", PATIENCE, || async {
        let view = schedule(&two, "tick").await;
        (fires(&view, "fired").len() >= 5).then_some(view)
    })
    .await;
    let fired = fires(&view, "fired");
    assert!(fired.iter().all(|f| f["decided_by"] == "one"), "only the leader decides: {view}");
    let times: Vec<DateTime<Utc>> = fired.iter().map(|f| time(&f["occurrence_at"])).collect();
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(1), "none twice, none skipped: {times:?}");
    }

    // The leader stops (gracefully: it gives the lease up); the other takes over at once and goes on.
    let last_of_one = *times.last().unwrap();
    one.stop().await;
    eventually("two leads", PATIENCE, || async { (two.get("/health").await.1["leading"] == true).then_some(()) }).await;
    let view = eventually("two fires", PATIENCE, || async {
        let view = schedule(&two, "tick").await;
        fires(&view, "fired").iter().any(|f| f["decided_by"] == "two").then_some(view)
    })
    .await;
    let mut seen = BTreeSet::new();
    for fire in fires(&view, "fired") {
        assert!(seen.insert(fire["occurrence_id"].as_str().unwrap().to_owned()), "fired twice: {fire}");
        if fire["decided_by"] == "two" {
            assert!(time(&fire["occurrence_at"]) > last_of_one, "two decides only what one did not: {fire}");
        }
    }
    let text = metrics(&two).await;
    assert!(text.contains("kanade_leader 1"), "{text}");
}

#[tokio::test]
async fn once_per_version_fires_each_version_once_and_once_per_pc_follows_the_job_s_version() {
    let (_nats, url, backend) = started(Some(Duration::from_secs(1))).await;
    let runs = tempfile::tempdir().expect("temp dir");
    let log = runs.path().join("runs.log");
    let _a = TestAgent::start(&url, "pc-a", &["lab"]).await;
    backend.wait_for_agents(1).await;
    let job = |id: &str, version: &str| {
        sh_job(id, version, &format!("echo {id} {version} $KANADE_EXEC_ID >> {}", log.display()), "")
    };
    create_job(&backend, &job("agent-tool", "1")).await;
    create_job(&backend, &job("vpn", "1")).await;
    create_schedule(&backend, "id: tool\njob: agent-tool\nmode: once_per_version\ntarget: {groups: [lab]}\n").await;
    create_schedule(&backend, "id: vpn\njob: vpn\nmode: once_per_pc\ntarget: {groups: [lab]}\n").await;
    // Waits until the log holds exactly `wanted`; a failure shows what it held instead.
    let ran = |wanted: &'static [&'static str]| {
        let log = log.clone();
        async move {
            let deadline = std::time::Instant::now() + PATIENCE;
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let mut seen: Vec<String> =
                    text.lines().map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")).collect();
                seen.sort();
                if seen == wanted {
                    return text;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "runs {wanted:?} after {PATIENCE:?}; the log holds:\n{text}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    ran(&["agent-tool 1", "vpn 1"]).await;

    // A new version of each job: once-per-version fires again (a new execution); once-per-PC gives its standing
    // execution the new version, which pc-a, having run it, does not run again.
    create_job(&backend, &job("agent-tool", "2")).await;
    create_job(&backend, &job("vpn", "2")).await;
    ran(&["agent-tool 1", "agent-tool 2", "vpn 1"]).await;
    let tool = schedule(&backend, "tool").await;
    assert_eq!(fires(&tool, "fired").len(), 2, "{tool}");
    let vpn = schedule(&backend, "vpn").await;
    let standing = fires(&vpn, "fired");
    assert_eq!(standing.len(), 1, "{vpn}");
    let exec = standing[0]["exec_id"].as_str().unwrap().to_owned();
    backend.execution_until(&exec, "the standing execution follows v2", |v| v["version"] == "2").await;

    // A PC that joins later runs the current version of each, once.
    let _b = TestAgent::start(&url, "pc-b", &["lab"]).await;
    let text = ran(&["agent-tool 1", "agent-tool 2", "agent-tool 2", "vpn 1", "vpn 2"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // time for a wrongly repeated run to show up
    assert_eq!(std::fs::read_to_string(&log).unwrap(), text, "nothing ran twice");
}

/// Regression: the leader read the `schedules` bucket's sequence from the stream info cached when it opened the
/// bucket, so it never saw a schedule created (or paused) after its first look.
#[tokio::test]
async fn a_schedule_created_or_paused_long_after_the_leader_started_is_seen() {
    let (_nats, url, backend) = started(None).await;
    let _a = TestAgent::start(&url, "pc-a", &[]).await;
    backend.wait_for_agents(1).await;
    create_job(&backend, &sh_job("tick", "1", "true", "target:\n  all: true\n")).await;
    eventually("the backend leads", PATIENCE, || async {
        (backend.get("/health").await.1["leading"] == true).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the scheduler has looked at the (empty) bucket since
    create_schedule(&backend, "id: late\njob: tick\ncron: \"* * * * * *\"\noverlap: allow\n").await;
    eventually("a fire of the late schedule", PATIENCE, || async {
        (!fires(&schedule(&backend, "late").await, "fired").is_empty()).then_some(())
    })
    .await;
    let (status, _) = backend.post("/api/schedules/late/pause", &json!({})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(4)).await; // a fire decided before the pause was seen may still land
    let paused = fires(&schedule(&backend, "late").await, "fired").len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(fires(&schedule(&backend, "late").await, "fired").len(), paused, "nothing fires while paused");
}
