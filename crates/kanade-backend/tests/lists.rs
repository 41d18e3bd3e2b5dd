//! The five lists (`/api/agents`, `/api/results`, `/api/audit`, `/api/executions`, an execution's targets) page
//! by keyset cursor on SQLite and on PostgreSQL: paging through thousands of rows in small pages while rows are
//! being added shows every row that was there once and never one twice; a cursor that is not the list's own is a
//! 400; limits are bounded; agents filter on the server (status with `stale`, group, OS, version, words); and
//! forgetting an agent (`DELETE /api/agents/{pc}`) is audited, purges its own config on request, and a heartbeat
//! afterwards brings it back as new.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use kanade_backend::db::{Db, NewExecution};
use kanade_ops::agent_config::AgentConfigStore;
use kanade_shared::layered::Scope;
use kanade_shared::wire::{AuditEvent, ExecResult, Heartbeat, ResultStatus};
use kanade_shared::{Action, Actor, ExecId, GroupName, JobId, PcId, ResultId, subject};
use kanade_testkit::{NatsServer, TEST_TOKEN, TestBackend, connect, eventually, init_logging};
use serde_json::{Value, json};

mod support;

use support::postgres;

const PATIENCE: Duration = Duration::from_secs(30);
/// Rows in each list before paging starts; more arrive while it pages.
const ROWS: usize = 2_500;
/// A page size that divides nothing evenly.
const PAGE: usize = 97;

fn pc(id: &str) -> PcId {
    PcId::new(id).expect("test pc id")
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().expect("time")
}

/// A backend on SQLite (`None`) or on a fresh PostgreSQL database, with its NATS server.
struct Setup {
    backend: TestBackend,
    nats: NatsServer,
    _pg: Option<postgres::TestDatabase>,
}

async fn setup(on_postgres: bool) -> Setup {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let pg = if on_postgres { Some(postgres::TestDatabase::create().await) } else { None };
    let backend =
        TestBackend::start_in(&nats.url(), tempfile::tempdir().expect("temp dir"), pg.as_ref().map(|d| d.url.clone()))
            .await;
    Setup { backend, nats, _pg: pg }
}

fn heartbeat(pc_id: &str, groups: &[&str], os: &str, version: &str) -> Heartbeat {
    Heartbeat {
        hostname: format!("{pc_id}.example"),
        os: os.into(),
        arch: "x86_64".into(),
        agent_version: version.into(),
        groups: groups.iter().map(|g| GroupName::new(*g).expect("group")).collect(),
        ..Heartbeat::minimal(pc(pc_id), Utc::now())
    }
}

fn result(exec: &ExecId, pc_id: &str, finished_ms: i64) -> ExecResult {
    let pc_id = pc(pc_id);
    ExecResult {
        result_id: ResultId::for_run(exec, &pc_id),
        exec_id: exec.clone(),
        job_id: JobId::new("patch").expect("job"),
        version: "1.0".into(),
        pc_id,
        status: ResultStatus::Ok,
        exit_code: Some(0),
        stdout: String::new(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        started_at: None,
        finished_at: at(finished_ms),
        reason: None,
        stdout_full: None,
        stderr_full: None,
    }
}

fn audit_event(id: &str, at_ms: i64) -> AuditEvent {
    AuditEvent {
        event_id: id.to_owned(),
        actor: Actor::new("alice").expect("actor"),
        action: Action::new("run").expect("action"),
        target: "pc-1".into(),
        details: Value::Null,
        at: at(at_ms),
        source: "cli".into(),
        prev_hash: String::new(),
        hash: String::new(),
    }
}

async fn insert_execution(db: &Db, exec: &ExecId, created: DateTime<Utc>, targets: Vec<(String, i64)>) {
    db.insert_execution(&NewExecution {
        exec_id: exec,
        job_id: &JobId::new("patch").expect("job"),
        version: "1.0",
        status: kanade_backend::db::ExecStatus::Running,
        targets_json: "{}".into(),
        command_json: "{}".into(),
        deadline_ms: None,
        ends_at: None,
        requested_by: "alice",
        now: created,
        targets,
        waves: vec![],
        fire: None,
    })
    .await
    .expect("insert execution");
}

/// Pages through `path` `PAGE` rows at a time, calling `between` after each page (to add rows meanwhile);
/// returns every row's `key` in the order listed.
async fn page_through<F, Fut>(backend: &TestBackend, path: &str, key: &str, mut between: F) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}limit={PAGE}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let (status, body) = backend.get(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        let items = body["items"].as_array().unwrap_or_else(|| panic!("{url}: not a page: {body}"));
        assert!(items.len() <= PAGE, "{url}: {} rows for limit {PAGE}", items.len());
        keys.extend(items.iter().map(|row| row[key].as_str().unwrap_or_else(|| panic!("{key} of {row}")).to_owned()));
        match body["next"].as_str() {
            Some(next) => {
                assert_eq!(items.len(), PAGE, "{url}: a page short of its limit says the list goes on");
                cursor = Some(next.to_owned());
            }
            None => break,
        }
        between(page).await;
    }
    keys
}

/// Every row that was there before paging began is listed exactly once, and no row is listed twice.
fn assert_once_each(list: &str, listed: &[String], before: &BTreeSet<String>) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for key in listed {
        *counts.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).map(|(k, _)| *k).collect();
    assert!(twice.is_empty(), "{list}: listed twice: {twice:?}");
    let missed: Vec<_> = before.iter().filter(|k| !counts.contains_key(k.as_str())).collect();
    assert!(missed.is_empty(), "{list}: {} rows that were there all along were skipped: {:?}", missed.len(), missed);
}

async fn every_list_pages_without_skipping_or_repeating_while_rows_arrive(on_postgres: bool) {
    let Setup { backend, nats: _nats, _pg } = setup(on_postgres).await;
    let db = backend.db.clone();
    let base_ms = Utc::now().timestamp_millis() - 3_600_000;

    // Agents by pc id; new ones arrive before and after the cursor.
    let agents: Vec<(Heartbeat, DateTime<Utc>)> =
        (0..ROWS).map(|i| (heartbeat(&format!("pc-{i:05}"), &["lab"], "linux", "1.0"), Utc::now())).collect();
    db.upsert_agents(&agents).await.expect("agents");
    let before: BTreeSet<String> = agents.iter().map(|(hb, _)| hb.pc_id.to_string()).collect();
    let listed = page_through(&backend, "/api/agents", "pc_id", |page| {
        let db = db.clone();
        async move {
            let new: Vec<_> = ["pc-0", "pc-5", "pc-9", "pc-a"]
                .iter()
                .map(|p| (heartbeat(&format!("{p}{page:04}x"), &[], "linux", "1.0"), Utc::now()))
                .collect();
            db.upsert_agents(&new).await.expect("more agents");
        }
    })
    .await;
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "agents are listed by pc id, strictly");
    assert_once_each("agents", &listed, &before);

    // Results newest first, over all executions and within one; new ones finish at any time (agents' clocks).
    let exec = ExecId::generate();
    let rows: Vec<(ExecResult, u64)> =
        (0..ROWS).map(|i| (result(&exec, &format!("pc-{i:05}"), base_ms + (i as i64 % 50) * 1000), 1)).collect();
    db.insert_results(&rows, Utc::now()).await.expect("results");
    let before: BTreeSet<String> = rows.iter().map(|(r, _)| r.result_id.to_string()).collect();
    for path in
        ["/api/results".to_owned(), format!("/api/executions/{exec}/results"), format!("/api/results?exec_id={exec}")]
    {
        let listed = page_through(&backend, &path, "result_id", |page| {
            let db = db.clone();
            let exec = exec.clone();
            async move {
                let new: Vec<_> = [-1, 25, 60]
                    .iter()
                    .map(|s| (result(&exec, &format!("new-{page}-{s}-{}", ExecId::generate()), base_ms + s * 1000), 1))
                    .collect();
                db.insert_results(&new, Utc::now()).await.expect("more results");
            }
        })
        .await;
        assert_once_each(&path, &listed, &before);
    }

    // Audit newest first.
    let events: Vec<(AuditEvent, u64)> =
        (0..ROWS).map(|i| (audit_event(&format!("ev-{i:05}"), base_ms + (i as i64 % 40) * 1000), 1)).collect();
    db.upsert_audit(&events, Utc::now()).await.expect("audit");
    let before: BTreeSet<String> = events.iter().map(|(e, _)| e.event_id.clone()).collect();
    let listed = page_through(&backend, "/api/audit", "event_id", |page| {
        let db = db.clone();
        async move {
            let new: Vec<_> =
                [-1, 20, 50].iter().map(|s| (audit_event(&format!("new-{page}-{s}"), base_ms + s * 1000), 1)).collect();
            db.upsert_audit(&new, Utc::now()).await.expect("more audit");
        }
    })
    .await;
    assert_once_each("audit", &listed, &before);

    // An execution's targets by pc id (the 2,500 above are its results; these are its targets).
    let fired = ExecId::generate();
    let targets: Vec<(String, i64)> = (0..ROWS).map(|i| (format!("pc-{i:05}"), 0)).collect();
    insert_execution(&db, &fired, Utc::now(), targets.clone()).await;
    let before: BTreeSet<String> = targets.iter().map(|(p, _)| p.clone()).collect();
    let listed = page_through(&backend, &format!("/api/executions/{fired}/targets"), "pc_id", |_| async {}).await;
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "targets are listed by pc id, strictly");
    assert_once_each("targets", &listed, &before);

    // Executions newest first; several share a creation time, so the exec id breaks the tie.
    let mut before = BTreeSet::new();
    for i in 0..300 {
        let exec = ExecId::generate();
        insert_execution(&db, &exec, at(base_ms + (i % 7) * 1000), vec![]).await;
        before.insert(exec.to_string());
    }
    before.insert(fired.to_string());
    let listed = page_through(&backend, "/api/executions", "exec_id", |page| {
        let db = db.clone();
        async move {
            for s in [-1, 3, 9] {
                insert_execution(&db, &ExecId::generate(), at(base_ms + s * 1000 + page as i64), vec![]).await;
            }
        }
    })
    .await;
    assert_once_each("executions", &listed, &before);
    backend.stop().await;
}

#[tokio::test]
async fn every_list_pages_without_skipping_or_repeating_while_rows_arrive_on_sqlite() {
    every_list_pages_without_skipping_or_repeating_while_rows_arrive(false).await;
}

#[tokio::test]
async fn every_list_pages_without_skipping_or_repeating_while_rows_arrive_on_postgres() {
    every_list_pages_without_skipping_or_repeating_while_rows_arrive(true).await;
}

async fn result_1001_of_an_execution_is_on_the_second_page(on_postgres: bool) {
    let Setup { backend, nats: _nats, _pg } = setup(on_postgres).await;
    let exec = ExecId::generate();
    let base_ms = Utc::now().timestamp_millis();
    // Finished one millisecond apart, newest first: the 1,001st is the one finished 1,000 ms before the newest.
    let rows: Vec<(ExecResult, u64)> =
        (0..1_500).map(|i| (result(&exec, &format!("pc-{i:05}"), base_ms - i as i64), 1)).collect();
    backend.db.insert_results(&rows, Utc::now()).await.expect("results");
    for path in [format!("/api/executions/{exec}/results"), format!("/api/results?exec_id={exec}")] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (_, first) = backend.get(&format!("{path}{sep}limit=1000")).await;
        assert_eq!(first["items"].as_array().map(Vec::len), Some(1000), "{path}");
        let next = first["next"].as_str().unwrap_or_else(|| panic!("{path}: a second page follows"));
        let (_, second) = backend.get(&format!("{path}{sep}limit=1000&cursor={next}")).await;
        assert_eq!(second["items"].as_array().map(Vec::len), Some(500), "{path}");
        assert_eq!(second["items"][0]["pc_id"], "pc-01000", "{path}: result 1,001");
        assert_eq!(second["next"], Value::Null, "{path}: the last page says so");
    }
    backend.stop().await;
}

#[tokio::test]
async fn result_1001_of_an_execution_is_on_the_second_page_on_sqlite() {
    result_1001_of_an_execution_is_on_the_second_page(false).await;
}

#[tokio::test]
async fn result_1001_of_an_execution_is_on_the_second_page_on_postgres() {
    result_1001_of_an_execution_is_on_the_second_page(true).await;
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn bad_limits_and_foreign_or_tampered_cursors_are_refused_on_every_list() {
    let Setup { backend, nats: _nats, _pg } = setup(false).await;
    let db = backend.db.clone();
    let exec = ExecId::generate();
    insert_execution(&db, &exec, Utc::now(), vec![("pc-1".into(), 0), ("pc-2".into(), 0)]).await;
    db.upsert_agents(&[
        (heartbeat("pc-1", &[], "linux", "1"), Utc::now()),
        (heartbeat("pc-2", &[], "linux", "1"), Utc::now()),
    ])
    .await
    .expect("agents");
    let lists = [
        "/api/agents".to_owned(),
        "/api/results".to_owned(),
        "/api/audit".to_owned(),
        "/api/executions".to_owned(),
        format!("/api/executions/{exec}/targets"),
        format!("/api/executions/{exec}/results"),
    ];
    let agents_cursor = {
        let (_, page) = backend.get("/api/agents?limit=1").await;
        page["next"].as_str().expect("a second agent follows").to_owned()
    };
    let mut flipped = agents_cursor.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for list in &lists {
        let sep = if list.contains('?') { '&' } else { '?' };
        for limit in ["0", "1001", "-1", "99999999999999999999", "ten", "1.5", "%00"] {
            let (status, body) = backend.get(&format!("{list}{sep}limit={limit}")).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (400, Some("invalid_query")),
                "{list} limit={limit}: {body}"
            );
        }
        for limit in ["1", "1000", ""] {
            let (status, body) = backend.get(&format!("{list}{sep}limit={limit}")).await;
            let expected = if limit.is_empty() { 400 } else { 200 };
            assert_eq!(status, expected, "{list} limit=`{limit}`: {body}");
        }
        let foreign = if list == "/api/agents" {
            kanade_shared::api::encode_cursor("targets", vec![kanade_shared::api::KeyPart::Text("pc-1".into())])
        } else {
            agents_cursor.clone()
        };
        let cursors = [
            ("garbage", "!!!not-a-cursor!!!".to_owned()),
            ("base64 of nothing", b64("hello")),
            ("another list's", foreign),
            ("tampered", flipped.clone()),
            ("oversized", "A".repeat(10_000)),
            ("a later version", b64(r#"{"v":9,"l":"agents","k":["pc-1"]}"#)),
            ("a key of the wrong shape", b64(r#"{"v":1,"l":"agents","k":[1,2,3]}"#)),
            ("an id that is no id", b64(r#"{"v":1,"l":"agents","k":["PC 1' OR 1=1 --"]}"#)),
            ("a wrong time", b64(r#"{"v":1,"l":"results","k":["yesterday","x.y"]}"#)),
        ];
        for (what, cursor) in cursors {
            let (status, body) = backend.get(&format!("{list}{sep}cursor={cursor}")).await;
            if list == "/api/agents" && what == "tampered" && status == 200 {
                continue; // a flipped byte can still spell a valid cursor of this list: a position, not a wrong page
            }
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (400, Some("invalid_cursor")),
                "{list} with {what} cursor: {body}"
            );
        }
        let (status, _) = backend.get(&format!("{list}{sep}cursor=")).await;
        assert_eq!(status, 200, "{list}: an empty cursor is the first page");
    }
    backend.stop().await;
}

async fn agents_filter_on_the_server_and_show_stale(on_postgres: bool) {
    let Setup { backend, nats: _nats, _pg } = setup(on_postgres).await;
    let now = Utc::now();
    let hour_ago = now - chrono::Duration::hours(1);
    let week_ago = now - chrono::Duration::days(8);
    let rows = [
        (heartbeat("win-1", &["lab", "canary"], "windows", "1.2.0"), now),
        (heartbeat("win-2", &["lab"], "windows", "1.1.0"), hour_ago),
        (heartbeat("lin-1", &["ops"], "linux", "1.2.0"), week_ago),
        (heartbeat("lab_x", &["l_b"], "linux", "1.2.0"), now),
        (heartbeat("labyx", &["lxb"], "linux", "1.2.0"), now),
    ];
    let new = backend.db.upsert_agents(&rows).await.expect("agents");
    assert_eq!(new, ["win-1", "win-2", "lin-1", "lab_x", "labyx"], "every row is new");
    let later: Vec<_> = rows.iter().map(|(hb, seen)| (hb.clone(), *seen + chrono::Duration::milliseconds(1))).collect();
    assert_eq!(backend.db.upsert_agents(&later).await.expect("agents"), Vec::<String>::new(), "none is new twice");
    let pcs = |body: &Value| -> Vec<String> {
        body["items"].as_array().expect("page").iter().map(|a| a["pc_id"].as_str().unwrap().to_owned()).collect()
    };
    let (_, all) = backend.get("/api/agents").await;
    let status: HashMap<String, (String, bool)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (a["pc_id"].as_str().unwrap().to_owned(), (a["status"].as_str().unwrap().to_owned(), a["online"] == true))
        })
        .collect();
    assert_eq!(status["win-1"], ("online".into(), true));
    assert_eq!(status["win-2"], ("offline".into(), false));
    assert_eq!(status["lin-1"], ("stale".into(), false), "silent longer than stale_after (7 days)");
    assert_eq!(backend.get("/api/agents/lin-1").await.1["status"], "stale");
    for (query, expected) in [
        ("status=online", vec!["lab_x", "labyx", "win-1"]),
        ("status=offline", vec!["win-2"]),
        ("status=stale", vec!["lin-1"]),
        ("group=lab", vec!["win-1", "win-2"]),
        ("group=canary&status=online", vec!["win-1"]),
        // `_` in a group or a word is that character, not LIKE's wildcard.
        ("group=l_b", vec!["lab_x"]),
        ("search=b_x", vec!["lab_x"]),
        ("search=%25", vec![]),
        ("os=windows", vec!["win-1", "win-2"]),
        ("os=WINDOWS", vec![]),
        ("version=1.2.0", vec!["lab_x", "labyx", "lin-1", "win-1"]),
        ("search=offline%20WIN", vec!["win-2"]),
        ("search=stale", vec!["lin-1"]),
        ("search=CANARY", vec!["win-1"]),
        ("search=example%20lab%20online", vec!["lab_x", "labyx", "win-1"]),
        ("search=nothing-like-it", vec![]),
        ("search=&status=&group=&os=&version=", vec!["lab_x", "labyx", "lin-1", "win-1", "win-2"]),
    ] {
        let (status, body) = backend.get(&format!("/api/agents?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(pcs(&body), expected, "{query}");
    }
    let long = "x".repeat(201);
    let many = ["w"; 9].join("%20");
    for query in [
        "status=gone".to_owned(),
        "group=Bad.Group".to_owned(),
        format!("os={}", "o".repeat(65)),
        format!("version={}", "v".repeat(65)),
        format!("search={long}"),
        format!("search={many}"),
        "search=a%00b".to_owned(),
        "colour=red".to_owned(),
        "status=online&status=offline".to_owned(),
    ] {
        let (status, body) = backend.get(&format!("/api/agents?{query}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")), "{query}: {body}");
    }
    backend.stop().await;
}

#[tokio::test]
async fn agents_filter_on_the_server_and_show_stale_on_sqlite() {
    agents_filter_on_the_server_and_show_stale(false).await;
}

#[tokio::test]
async fn agents_filter_on_the_server_and_show_stale_on_postgres() {
    agents_filter_on_the_server_and_show_stale(true).await;
}

#[tokio::test]
async fn forgetting_an_agent_is_audited_purges_on_request_and_a_heartbeat_brings_it_back_new() {
    let Setup { backend, nats, _pg } = setup(false).await;
    let (client, _js) = connect(&nats.url()).await;
    let publish = |pc_id: &'static str| {
        let client = client.clone();
        async move {
            let hb = heartbeat(pc_id, &["lab"], "linux", "1.0");
            client.publish(subject::heartbeat(&hb.pc_id), serde_json::to_vec(&hb).unwrap().into()).await.unwrap();
            client.flush().await.unwrap();
        }
    };
    let listed = |pc_id: &'static str| {
        let backend = &backend;
        async move { backend.get(&format!("/api/agents/{pc_id}")).await }
    };
    for pc_id in ["pc-gone", "pc-kept"] {
        publish(pc_id).await;
    }
    let first = eventually("both agents listed", PATIENCE, || async {
        let (status, body) = listed("pc-gone").await;
        (status == 200 && listed("pc-kept").await.0 == 200).then_some(body)
    })
    .await;
    let store = AgentConfigStore::open(&client).await.unwrap();
    let scope = Scope::Pc(pc("pc-gone"));
    store.change(&scope, "heartbeat_interval", Some(json!("10s"))).await.unwrap();
    let groups = async_nats::jetstream::new(client.clone())
        .get_key_value(kanade_shared::resources::KV_AGENT_GROUPS)
        .await
        .unwrap();
    groups.put("pc-gone", br#"["lab"]"#.to_vec().into()).await.unwrap();

    let remove = |query: &'static str| {
        let backend = &backend;
        async move { backend.send(reqwest::Method::DELETE, &format!("/api/agents/pc-gone{query}"), TEST_TOKEN, None).await }
    };
    let (status, body) = remove("").await;
    assert_eq!((status, body.clone()), (200, json!({ "pc_id": "pc-gone", "purged": false })), "{body}");
    assert_eq!(listed("pc-gone").await.0, 404, "forgotten");
    assert_eq!(listed("pc-kept").await.0, 200, "only that one");
    assert!(!backend.get_all("/api/agents").await.iter().any(|a| a["pc_id"] == "pc-gone"));
    assert!(!store.get(&scope).await.unwrap().is_empty(), "without --purge its config stays");
    let (status, body) = remove("").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("agent_not_found")), "{body}");

    // It heartbeats again: a new agent, first seen after it was forgotten.
    let forgotten_at = Utc::now().timestamp_millis();
    publish("pc-gone").await;
    let again = eventually("pc-gone back", PATIENCE, || async {
        let (status, body) = listed("pc-gone").await;
        (status == 200).then_some(body)
    })
    .await;
    let first_seen =
        |v: &Value| DateTime::parse_from_rfc3339(v["first_seen"].as_str().unwrap()).unwrap().timestamp_millis();
    assert!(first_seen(&again) >= forgotten_at && first_seen(&first) < forgotten_at, "{again} after {first}");

    let (status, body) = remove("?purge=true").await;
    assert_eq!((status, body.clone()), (200, json!({ "pc_id": "pc-gone", "purged": true })), "{body}");
    assert!(store.get(&scope).await.unwrap().is_empty(), "--purge deletes its agent_config layer");
    assert!(groups.get("pc-gone").await.unwrap().is_none(), "--purge deletes its agent_groups entry");

    for (path, status, code) in [
        ("/api/agents/PC%20GONE", 400, "invalid_pc_id"),
        ("/api/agents/..%2f..", 400, "invalid_pc_id"),
        (&*format!("/api/agents/{}", "a".repeat(65)), 400, "invalid_pc_id"),
        ("/api/agents/pc-kept?purge=maybe", 400, "invalid_query"),
        ("/api/agents/pc-kept?force=true", 400, "invalid_query"),
        ("/api/agents/never-seen", 404, "agent_not_found"),
    ] {
        let (got, body) = backend.send(reqwest::Method::DELETE, path, TEST_TOKEN, None).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
    }
    assert_eq!(listed("pc-kept").await.0, 200, "no refused request removed anything");

    let audit = eventually("both removals audited", PATIENCE, || async {
        let (_, body) = backend.get("/api/audit?action=agent-rm").await;
        (body["items"].as_array()?.len() == 2).then_some(body["items"].clone())
    })
    .await;
    assert_eq!(audit[0]["target"], "pc-gone");
    assert_eq!(audit[0]["details"], json!({ "purge": true, "config_removed": true, "groups_removed": true }));
    assert_eq!(audit[1]["details"], json!({ "purge": false, "config_removed": false, "groups_removed": false }));
    backend.stop().await;
}
