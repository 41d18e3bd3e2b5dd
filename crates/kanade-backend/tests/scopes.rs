//! Group scopes (issue #19), through the backend over a real nats-server: an operator scoped to `office` cannot fire
//! at `all`, a lab group or a lab PC (preview and fire give the same refusal, and nothing is recorded), but can at
//! an office group or PC; it approves and kills only what its scope covers, revokes nothing, refreshes and schedules
//! only within it, and a schedule fires with its creator's scope, checked again at every fire. Every list shows it
//! its own PCs only (agents, results, executions, targets, timelines, inventory, facts), keyset paging still works,
//! and a PC or execution outside its scope answers exactly as a missing one does; a fleet operator sees everything.
//! A PC's groups are its active credential's when it has one. Lists run on SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kanade_backend::config::{AuthConfig, OperatorToken};
use kanade_backend::db::{Db, InventoryData, NewAgentEvent, NewExecution, NewFacts, NewInventory, NewWave};
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::inventory::{Hardware, Software, SoftwareList};
use kanade_shared::manifest::Targets;
use kanade_shared::wire::{ExecResult, Heartbeat, ResultStatus};
use kanade_shared::{Actor, ExecId, GroupName, JobId, PcId, ResultId, subject};
use kanade_testkit::{NatsServer, TestBackend, connect, eventually, init_logging, operator_token};
use reqwest::Method;
use serde_json::{Value, json};

mod support;

use support::postgres;

const PATIENCE: Duration = Duration::from_secs(30);

/// An operator scoped to `office`.
const OLIVE: &str = "olive-token-0123456789abcdef";
/// An approver scoped to `office`.
const OSCAR: &str = "oscar-token-0123456789abcdef";

/// The PCs the `office` scope reaches, of those [`seed_agents`] writes: by heartbeat (office-1, office-2, both-1),
/// by an active credential whose heartbeat says nothing (cred-1), and by heartbeat while its credential waits for
/// approval (pending-1). Not: the lab PCs, moved-1 (reports office, its active credential says lab) and revoked-1
/// (reports office, its credential is revoked).
const OFFICE_PCS: [&str; 5] = ["both-1", "cred-1", "office-1", "office-2", "pending-1"];
const ALL_PCS: [&str; 9] =
    ["both-1", "cred-1", "lab-1", "lab-2", "moved-1", "office-1", "office-2", "pending-1", "revoked-1"];

fn g(name: &str) -> GroupName {
    GroupName::new(name).expect("test group")
}

fn pc(name: &str) -> PcId {
    PcId::new(name).expect("test pc")
}

fn office() -> GroupScope {
    GroupScope::parse_list("office").expect("scope")
}

struct Setup {
    backend: TestBackend,
    nats: NatsServer,
    _pg: Option<postgres::TestDatabase>,
}

/// A broker and a backend (on SQLite, or PostgreSQL) that knows olive and oscar besides the test kit's operators.
async fn setup(on_postgres: bool) -> Setup {
    init_logging();
    let nats = NatsServer::start();
    connect(&nats.url()).await;
    let pg = if on_postgres { Some(postgres::TestDatabase::create().await) } else { None };
    let backend = TestBackend::start_tuned(
        &nats.url(),
        tempfile::tempdir().expect("temp dir"),
        pg.as_ref().map(|d| d.url.clone()),
        |mut config| {
            if let AuthConfig::Tokens { operators, .. } = &mut config.auth {
                for (name, token, role) in [("olive", OLIVE, Role::Operator), ("oscar", OSCAR, Role::Approver)] {
                    let mut scoped = OperatorToken::admin(Actor::new(name).expect("name"), token);
                    scoped.role = role;
                    scoped.scope = office();
                    operators.push(scoped);
                }
            }
            config
        },
        |bound| bound,
    )
    .await;
    Setup { backend, nats, _pg: pg }
}

fn heartbeat(pc_id: &str, groups: &[&str]) -> Heartbeat {
    Heartbeat {
        hostname: format!("{pc_id}.example"),
        os: "linux".into(),
        groups: groups.iter().map(|name| g(name)).collect(),
        ..Heartbeat::minimal(pc(pc_id), Utc::now())
    }
}

/// The fleet: PCs by heartbeat, and credentials as enrolment stores them.
async fn seed_agents(db: &Db) {
    let now = Utc::now();
    let reported: [(&str, &[&str]); 9] = [
        ("office-1", &["office"]),
        ("office-2", &["office"]),
        ("lab-1", &["lab"]),
        ("lab-2", &["lab"]),
        ("both-1", &["lab", "office"]),
        ("moved-1", &["office"]),
        ("cred-1", &[]),
        ("revoked-1", &["office"]),
        ("pending-1", &["office"]),
    ];
    let rows: Vec<(Heartbeat, DateTime<Utc>)> = reported.iter().map(|(p, gs)| (heartbeat(p, gs), now)).collect();
    db.upsert_agents(&rows).await.expect("agents");
    for (pc_id, status, groups) in [
        ("moved-1", "active", "[\"lab\"]"),
        ("cred-1", "active", "[\"office\"]"),
        ("revoked-1", "revoked", "[\"office\"]"),
        ("pending-1", "pending", "[\"lab\"]"),
    ] {
        sqlx::query(
            "INSERT INTO agent_credentials (pc_id, public_key, groups_json, status, token_id, hostname, os,
                requested_at_ms) VALUES ($1, $2, $3, $4, 'seed', $1, 'linux', 0)",
        )
        .bind(pc_id)
        .bind(format!("U{pc_id}"))
        .bind(groups)
        .bind(status)
        .execute(db.pool())
        .await
        .expect("credential");
    }
}

fn result(exec: &ExecId, pc_id: &str, finished: DateTime<Utc>) -> ExecResult {
    let pc_id = pc(pc_id);
    ExecResult {
        result_id: ResultId::for_run(exec, &pc_id),
        exec_id: exec.clone(),
        job_id: JobId::new("patch").expect("job"),
        version: "1.0".into(),
        pc_id,
        status: ResultStatus::Ok,
        exit_code: Some(0),
        stdout: "done".into(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        started_at: None,
        finished_at: finished,
        reason: None,
        stdout_full: None,
        stderr_full: None,
    }
}

async fn insert_execution(db: &Db, exec: &ExecId, targets: &Targets, rows: &[&str], waves: &[&str], at: DateTime<Utc>) {
    db.insert_execution(&NewExecution {
        exec_id: exec,
        job_id: &JobId::new("patch").expect("job"),
        version: "1.0",
        status: kanade_backend::db::ExecStatus::Running,
        targets_json: serde_json::to_string(targets).expect("targets"),
        command_json: "{}".into(),
        deadline_ms: None,
        ends_at: None,
        requested_by: "alice",
        now: at,
        targets: rows.iter().map(|p| ((*p).to_owned(), 0)).collect(),
        waves: waves.iter().map(|w| NewWave { group: (*w).to_owned(), delay_ms: 0, max_failure_pct: 100.0 }).collect(),
        fire: None,
    })
    .await
    .expect("execution");
}

fn targets(all: bool, groups: &[&str], pcs: &[&str]) -> Targets {
    Targets { all, groups: groups.iter().map(|n| g(n)).collect(), pcs: pcs.iter().map(|n| pc(n)).collect() }
}

/// Every row of a list as `token` sees it, `limit` at a time, following each page's cursor.
async fn pages(backend: &TestBackend, token: &str, path: &str, limit: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let (status, body) = backend.send(Method::GET, &url, token, None).await;
        assert_eq!(status, 200, "{url}: {body}");
        let items = body["items"].as_array().unwrap_or_else(|| panic!("{url}: not a page: {body}"));
        assert!(items.len() <= limit, "{url}");
        rows.extend(items.iter().cloned());
        match body["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return rows,
        }
    }
}

fn column(rows: &[Value], key: &str) -> Vec<String> {
    rows.iter().map(|row| row[key].as_str().unwrap_or_else(|| panic!("{key} of {row}")).to_owned()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// What `token` gets for `path`: the status and the error code, and the message with `name` taken out (so that the
/// answers about two ids can be compared).
async fn answer(backend: &TestBackend, method: Method, path: &str, token: &str, name: &str) -> (u16, Value, String) {
    let (status, body) = backend.send(method, path, token, None).await;
    let message = body["error"]["message"].as_str().unwrap_or_default().replace(name, "<id>");
    (status, body["error"]["code"].clone(), message)
}

async fn lists_show_a_scoped_operator_only_its_groups(on_postgres: bool) {
    let Setup { backend, nats: _nats, _pg } = setup(on_postgres).await;
    let db = backend.db.clone();
    let alice = operator_token("alice");
    seed_agents(&db).await;

    // Agents: the scope's, by the same rule a single read applies, and paging one at a time still works.
    let listed = column(&pages(&backend, OLIVE, "/api/agents", 1).await, "pc_id");
    assert_eq!(listed, OFFICE_PCS, "olive's agents, in pc order");
    assert_eq!(column(&pages(&backend, alice, "/api/agents", 4).await, "pc_id"), ALL_PCS, "the fleet sees all");
    let by_cpu = column(&pages(&backend, OLIVE, "/api/agents?sort=cpu", 2).await, "pc_id");
    assert_eq!(by_cpu.iter().cloned().collect::<BTreeSet<_>>(), set(&OFFICE_PCS), "another order, the same PCs");
    // Filters narrow within the scope, never widen it: `group=lab` (as reported) leaves both-1 only.
    assert_eq!(column(&pages(&backend, OLIVE, "/api/agents?group=lab", 10).await, "pc_id"), ["both-1"]);
    assert!(pages(&backend, OLIVE, "/api/agents?search=lab-1", 10).await.is_empty());
    for name in ALL_PCS {
        let (status, _) = backend.send(Method::GET, &format!("/api/agents/{name}"), OLIVE, None).await;
        assert_eq!(status == 200, OFFICE_PCS.contains(&name), "GET /api/agents/{name} as olive: {status}");
    }

    // Results: one execution over the whole fleet; olive sees its PCs' results, newest first, a page at a time.
    let exec = ExecId::generate();
    let base = Utc::now() - chrono::Duration::minutes(5);
    let results: Vec<(ExecResult, u64)> = ALL_PCS
        .iter()
        .enumerate()
        .map(|(i, p)| (result(&exec, p, base + chrono::Duration::seconds(i as i64)), 1))
        .collect();
    db.insert_results(&results, Utc::now()).await.expect("results");
    for path in
        ["/api/results".to_owned(), format!("/api/executions/{exec}/results"), format!("/api/results?exec_id={exec}")]
    {
        let seen = column(&pages(&backend, OLIVE, &path, 2).await, "pc_id");
        assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), set(&OFFICE_PCS), "{path}");
        assert_eq!(seen.len(), OFFICE_PCS.len(), "{path}: each once");
        assert_eq!(pages(&backend, alice, &path, 3).await.len(), ALL_PCS.len(), "{path} as alice");
    }
    assert!(pages(&backend, OLIVE, "/api/results?pc_id=lab-1", 5).await.is_empty(), "asking by pc does not widen it");

    // Executions: those that fire at all, name an office group (a target or a wave) or target an office PC.
    let at = |s: i64| Utc::now() - chrono::Duration::minutes(1) + chrono::Duration::seconds(s);
    let e_lab = ExecId::generate();
    insert_execution(&db, &e_lab, &targets(false, &["lab"], &[]), &["lab-1", "lab-2"], &[], at(1)).await;
    let e_office = ExecId::generate();
    insert_execution(&db, &e_office, &targets(false, &["office"], &[]), &[], &[], at(2)).await;
    let e_all = ExecId::generate();
    insert_execution(&db, &e_all, &targets(true, &[], &[]), &ALL_PCS, &[], at(3)).await;
    let e_pc = ExecId::generate();
    insert_execution(&db, &e_pc, &targets(false, &[], &["both-1", "lab-1"]), &["both-1", "lab-1"], &[], at(4)).await;
    let e_wave = ExecId::generate();
    insert_execution(&db, &e_wave, &targets(false, &["canary"], &[]), &[], &["canary", "office"], at(5)).await;
    let e_moved = ExecId::generate();
    insert_execution(&db, &e_moved, &targets(false, &[], &["moved-1"]), &["moved-1"], &[], at(6)).await;
    let e_canary = ExecId::generate();
    insert_execution(&db, &e_canary, &targets(false, &["canary"], &[]), &[], &["canary"], at(7)).await;
    let shown = column(&pages(&backend, OLIVE, "/api/executions", 1).await, "exec_id");
    let want: Vec<String> = [&e_wave, &e_pc, &e_all, &e_office].iter().map(|e| e.to_string()).collect();
    assert_eq!(shown, want, "newest first, one page each");
    let running = column(&pages(&backend, OLIVE, "/api/executions?status=running", 2).await, "exec_id");
    assert_eq!(running, [e_pc.to_string(), e_all.to_string()], "filters still apply (with unanswered targets)");
    assert_eq!(pages(&backend, alice, "/api/executions?job_id=patch", 3).await.len(), 7, "the fleet sees all");

    // An execution's targets and results: the scope's PCs only.
    let rows = column(&pages(&backend, OLIVE, &format!("/api/executions/{e_all}/targets"), 2).await, "pc_id");
    assert_eq!(rows, OFFICE_PCS);
    let rows = column(&pages(&backend, OLIVE, &format!("/api/executions/{e_pc}/targets"), 2).await, "pc_id");
    assert_eq!(rows, ["both-1"]);
    assert_eq!(pages(&backend, alice, &format!("/api/executions/{e_pc}/targets"), 5).await.len(), 2);

    // An execution fired straight over NATS shows when one of the scope's PCs reported it.
    let external_lab = ExecId::generate();
    let external_office = ExecId::generate();
    db.insert_results(
        &[(result(&external_lab, "lab-1", Utc::now()), 1), (result(&external_office, "office-2", Utc::now()), 1)],
        Utc::now(),
    )
    .await
    .expect("external results");
    let (status, view) = backend.send(Method::GET, &format!("/api/executions/{external_office}"), OLIVE, None).await;
    assert_eq!((status, view["status"].as_str()), (200, Some("external")), "{view}");

    // Hostile: ids of executions outside the scope answer exactly as ids that do not exist.
    let ghost = ExecId::generate();
    for (hidden, method, tail, token) in [
        (&e_lab, Method::GET, "", OLIVE),
        (&e_moved, Method::GET, "", OLIVE),
        (&e_canary, Method::GET, "", OLIVE),
        (&external_lab, Method::GET, "", OLIVE),
        (&e_lab, Method::GET, "/targets", OLIVE),
        (&e_lab, Method::GET, "/results", OLIVE),
        (&external_lab, Method::GET, "/targets", OLIVE),
        (&e_lab, Method::POST, "/kill", OLIVE),
        (&e_lab, Method::POST, "/approve", OSCAR),
        (&e_lab, Method::POST, "/reject", OSCAR),
    ] {
        let path = |exec: &ExecId| format!("/api/executions/{exec}{tail}");
        let hidden_answer = answer(&backend, method.clone(), &path(hidden), token, hidden.as_str()).await;
        let ghost_answer = answer(&backend, method, &path(&ghost), token, ghost.as_str()).await;
        assert_eq!(hidden_answer, ghost_answer, "{tail}: an execution outside the scope is as one that is not");
        assert_eq!(hidden_answer.0, 404, "{tail}: {hidden_answer:?}");
    }
    let (status, _) = backend.send(Method::GET, &format!("/api/executions/{e_lab}"), alice, None).await;
    assert_eq!(status, 200, "the fleet sees it");

    // Timelines.
    let now = Utc::now();
    let events: Vec<(NewAgentEvent, u64)> = ["office-1", "lab-1", "moved-1"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let event = NewAgentEvent {
                event_id: Some(format!("ev-{p}")),
                pc_id: (*p).to_owned(),
                kind: "agent_started".into(),
                at: now - chrono::Duration::seconds(i as i64),
                details_json: "{}".into(),
            };
            (event, i as u64 + 1)
        })
        .collect();
    db.insert_agent_events(&events, now).await.expect("timeline");
    let (_, fleet) = backend.send(Method::GET, "/api/agent-events", OLIVE, None).await;
    assert_eq!(column(fleet["items"].as_array().expect("items"), "pc_id"), ["office-1"], "{fleet}");
    let (_, fleet) = backend.send(Method::GET, "/api/agent-events?distinct=pc", alice, None).await;
    assert_eq!(fleet["items"].as_array().expect("items").len(), 3, "{fleet}");

    // Inventory: hardware, its summary, titles, installs and the change log, counted over the scope's PCs only.
    let report = |p: &str, data: InventoryData| NewInventory {
        pc_id: p.to_owned(),
        collected_at: now,
        hash: format!("{p}-{}", data.kind()),
        errors: Vec::new(),
        dropped: 0,
        data,
    };
    let hardware = |model: &str| {
        let mut hw = Hardware::default();
        hw.system.model = model.to_owned();
        InventoryData::Hardware(Box::new(hw))
    };
    let software = |items: &[(&str, &str)]| {
        let mut items: Vec<Software> = items
            .iter()
            .map(|(name, version)| Software {
                source: "dpkg".into(),
                id: name.to_lowercase(),
                name: (*name).to_owned(),
                version: (*version).to_owned(),
                ..Software::default()
            })
            .collect();
        items.sort();
        InventoryData::Software(SoftwareList { items, ..SoftwareList::default() })
    };
    let reports = vec![
        (report("office-1", hardware("Office Box")), 1),
        (report("lab-1", hardware("Lab Rig")), 2),
        (report("office-1", software(&[("Firefox", "128.0")])), 3),
        (report("lab-1", software(&[("Firefox", "115.0"), ("LabTool", "2.0")])), 4),
    ];
    db.apply_inventory(&reports, now).await.expect("inventory");
    let hw = column(&pages(&backend, OLIVE, "/api/inventory/hardware", 1).await, "pc_id");
    assert_eq!(hw, ["office-1"]);
    let (_, summary) = backend.send(Method::GET, "/api/inventory/hardware/summary?field=model", OLIVE, None).await;
    assert_eq!(summary, json!([{ "value": "Office Box", "pcs": 1 }]));
    let (_, summary) = backend.send(Method::GET, "/api/inventory/hardware/summary?field=model", alice, None).await;
    assert_eq!(summary.as_array().map(Vec::len), Some(2), "{summary}");
    let titles = pages(&backend, OLIVE, "/api/inventory/titles", 1).await;
    assert_eq!(
        titles,
        [json!({ "name": "Firefox", "installs": 1, "versions": [{ "version": "128.0", "installs": 1 }] })]
    );
    let titles = pages(&backend, alice, "/api/inventory/titles", 1).await;
    assert_eq!(column(&titles, "name"), ["Firefox", "LabTool"]);
    assert_eq!(titles[0]["installs"], 2, "{titles:?}");
    let installs = column(&pages(&backend, OLIVE, "/api/inventory/software?name=*", 1).await, "pc_id");
    assert_eq!(installs, ["office-1"]);
    let changes = column(&pages(&backend, OLIVE, "/api/inventory/changes", 1).await, "pc_id");
    assert!(!changes.is_empty() && changes.iter().all(|p| p == "office-1"), "{changes:?}");
    let (status, _) = backend.send(Method::GET, "/api/inventory/changes?format=csv", OLIVE, None).await;
    assert_eq!(status, 200);

    // A job's facts, and their summary, over the scope's PCs.
    let manifest = "id: client-version\nversion: \"1\"\nexecute:\n  shell: sh\n  script: 'echo {}'\n  timeout: 30s\n\
                    inventory:\n  display: [{field: version}]\n  summary: [{field: version}]\n";
    let (status, body) = backend.send(Method::POST, "/api/jobs", alice, Some(&json!({ "manifest": manifest }))).await;
    assert_eq!(status, 201, "{body}");
    let facts: Vec<(NewFacts, u64)> = [("office-1", "3.1"), ("lab-1", "2.9")]
        .iter()
        .map(|(p, v)| {
            let row = kanade_backend::facts::FactRow::from([("version".to_owned(), (*v).to_owned())]);
            let facts = NewFacts {
                job_id: "client-version".into(),
                pc_id: (*p).to_owned(),
                result_id: format!("x.{p}"),
                finished_at: now,
                facts: Ok(vec![row]),
            };
            (facts, 1)
        })
        .collect();
    db.store_facts(&facts, now).await.expect("facts");
    let (_, view) = backend.send(Method::GET, "/api/inventory?app=client-version", OLIVE, None).await;
    assert_eq!(column(view["items"].as_array().expect("items"), "pc_id"), ["office-1"], "{view}");
    assert_eq!(view["summary"][0]["counts"], json!([{ "value": "3.1", "pcs": 1 }]), "{view}");
    let (_, view) = backend.send(Method::GET, "/api/inventory?app=client-version", alice, None).await;
    assert_eq!(view["items"].as_array().map(Vec::len), Some(2), "{view}");

    // Hostile: a PC outside the scope answers, on every route about one PC, exactly as a PC that does not exist.
    let result_of = |p: &str| format!("/api/results/{exec}.{p}/output");
    for (method, template) in [
        (Method::GET, "/api/agents/{pc}"),
        (Method::GET, "/api/agents/{pc}/config"),
        (Method::GET, "/api/agents/{pc}/events"),
        (Method::GET, "/api/agents/{pc}/inventory"),
        (Method::GET, "/api/agents/{pc}/perf"),
        (Method::GET, "/api/agents/{pc}/perf/live"),
        (Method::POST, "/api/agents/{pc}/ping"),
        (Method::GET, "/api/results/{exec}.{pc}/output"),
        (Method::GET, "/api/executions/{exec}/output?pc_id={pc}"),
    ] {
        for hidden in ["lab-1", "moved-1", "revoked-1"] {
            let path = |p: &str| template.replace("{pc}", p).replace("{exec}", exec.as_str());
            let hidden_answer = answer(&backend, method.clone(), &path(hidden), OLIVE, hidden).await;
            let ghost_answer = answer(&backend, method.clone(), &path("ghost-pc"), OLIVE, "ghost-pc").await;
            assert_eq!(hidden_answer, ghost_answer, "{method} {template} for {hidden}");
            assert_eq!(hidden_answer.0, 404, "{method} {template} for {hidden}: {hidden_answer:?}");
        }
    }
    for path in
        ["/api/agents/lab-1", "/api/agents/lab-1/inventory", "/api/agents/lab-1/perf", "/api/agents/lab-1/events"]
    {
        let (status, body) = backend.send(Method::GET, path, alice, None).await;
        assert_eq!(status, 200, "{path} as alice: {body}");
    }
    let (status, _) = backend.send(Method::GET, &result_of("lab-1"), alice, None).await;
    assert_eq!(status, 200, "the fleet reads a lab result's output");
    let (status, _) = backend.send(Method::GET, &result_of("office-1"), OLIVE, None).await;
    assert_eq!(status, 200, "olive reads an office result's output");
    // Lists that show every PC whatever their filter (the audit trail, enrolments, enrolment tokens) are the fleet's.
    for path in ["/api/audit", "/api/audit/chain", "/api/enrollments", "/api/enroll/tokens"] {
        let (status, body) = backend.send(Method::GET, path, OLIVE, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{path}: {body}");
        let (status, body) = backend.send(Method::GET, path, alice, None).await;
        assert_ne!(status, 403, "{path} as alice: {body}");
    }
    backend.stop().await;
}

#[tokio::test]
async fn lists_show_a_scoped_operator_only_its_groups_on_sqlite() {
    lists_show_a_scoped_operator_only_its_groups(false).await;
}

#[tokio::test]
async fn lists_show_a_scoped_operator_only_its_groups_on_postgres() {
    lists_show_a_scoped_operator_only_its_groups(true).await;
}

fn manifest(id: &str, extra: &str) -> String {
    format!("id: {id}\nversion: \"1.0\"\nexecute:\n  shell: sh\n  script: 'echo ok'\n  timeout: 30s\n{extra}")
}

async fn create_job(backend: &TestBackend, manifest: &str) {
    let (status, body) =
        backend.send(Method::POST, "/api/jobs", operator_token("alice"), Some(&json!({ "manifest": manifest }))).await;
    assert!(status == 201 || status == 200, "job create: {status} {body}");
}

async fn executions_of(backend: &TestBackend, job: &str) -> usize {
    pages(backend, operator_token("alice"), &format!("/api/executions?job_id={job}"), 100).await.len()
}

#[tokio::test]
async fn a_scoped_operator_fires_approves_kills_and_schedules_only_within_its_groups() {
    let Setup { backend, nats: _nats, _pg } = setup(false).await;
    let alice = operator_token("alice");
    seed_agents(&backend.db).await;
    create_job(&backend, &manifest("patch", "")).await;

    // Outside the scope: preview and fire refuse alike, with `out_of_scope` naming what is outside; nothing runs.
    let refusals = [
        (json!({ "all": true }), "all (the whole fleet)"),
        (json!({ "groups": ["lab"] }), "group `lab`"),
        (json!({ "groups": ["office", "lab"] }), "group `lab`"),
        (json!({ "groups": ["office", "lab"], "waves": [{ "group": "office" }, { "group": "lab" }] }), "group `lab`"),
        (json!({ "pcs": ["office-1", "lab-1"] }), "pc `lab-1`"),
        (json!({ "pcs": ["ghost-pc"] }), "pc `ghost-pc`"),
        (json!({ "pcs": ["moved-1"] }), "pc `moved-1`"),
        (json!({ "pcs": ["revoked-1"] }), "pc `revoked-1`"),
    ];
    for (body, outside) in &refusals {
        let (preview_status, preview) = backend.send(Method::POST, "/api/jobs/patch/preview", OLIVE, Some(body)).await;
        let (fire_status, fire) = backend.send(Method::POST, "/api/exec/patch", OLIVE, Some(body)).await;
        assert_eq!((preview_status, &preview), (fire_status, &fire), "{body}: preview and fire agree");
        assert_eq!((fire_status, fire["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}: {fire}");
        let message = fire["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("outside your scope (office): ") && message.contains(outside), "{message}");
    }
    assert_eq!(executions_of(&backend, "patch").await, 0, "nothing refused was recorded");

    // Inside it: a group and PCs; the group reaches the PCs whose groups the scope sees (moved-1's credential says
    // lab, so a fire at office does not count it, as the broker would not deliver it there).
    let (status, preview) =
        backend.send(Method::POST, "/api/jobs/patch/preview", OLIVE, Some(&json!({ "groups": ["office"] }))).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["pcs"], json!(OFFICE_PCS), "{preview}");
    let (status, view) =
        backend.send(Method::POST, "/api/exec/patch", OLIVE, Some(&json!({ "groups": ["office"] }))).await;
    assert_eq!((status, view["target_count"].clone()), (201, json!(5)), "{view}");
    let office_exec = view["exec_id"].as_str().expect("exec id").to_owned();
    let (status, view) =
        backend.send(Method::POST, "/api/exec/patch", OLIVE, Some(&json!({ "pcs": ["office-1", "cred-1"] }))).await;
    assert_eq!((status, view["target_count"].clone()), (201, json!(2)), "{view}");
    let (status, _) = backend.send(Method::POST, "/api/exec/patch", alice, Some(&json!({ "all": true }))).await;
    assert_eq!(status, 201, "the fleet fires at all");

    // A job whose own target is the fleet: firing it as it is, and deploying one like it, are refused; a deploy is
    // refused before anything is stored.
    create_job(&backend, &manifest("fleetwide", "target:\n  all: true\n")).await;
    let (status, body) = backend.send(Method::POST, "/api/exec/fleetwide", OLIVE, Some(&json!({}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}");
    let deploy = json!({ "manifest": manifest("sneaky", "target:\n  groups: [office, lab]\n") });
    let (status, body) = backend.send(Method::POST, "/api/deploy", OLIVE, Some(&deploy)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}");
    let (status, _) = backend.send(Method::GET, "/api/jobs/sneaky", alice, None).await;
    assert_eq!(status, 404, "a refused deploy stores nothing");
    let deploy = json!({ "manifest": manifest("office-only", "target:\n  groups: [office]\n") });
    let (status, body) = backend.send(Method::POST, "/api/deploy", OLIVE, Some(&deploy)).await;
    assert_eq!(status, 201, "{body}");

    // A stored job is no one's, and a fleet-wide schedule fires whatever the catalogue holds: a scoped operator
    // replaces (by create or by deploy) and deletes none that exists; the job stays as it was.
    let replace = json!({ "manifest": manifest("patch", "") });
    let (status, body) = backend.send(Method::POST, "/api/jobs", OLIVE, Some(&replace)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}");
    let (status, body) = backend.send(Method::POST, "/api/deploy", OLIVE, Some(&deploy)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "a second deploy: {body}");
    let (status, body) = backend.send(Method::DELETE, "/api/jobs/patch", OLIVE, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}");
    let (status, _) = backend.send(Method::GET, "/api/jobs/patch", alice, None).await;
    assert_eq!(status, 200, "a refused delete deletes nothing");

    // Revoking a job stops it on every PC: the fleet's to do.
    let (status, body) = backend.send(Method::POST, "/api/jobs/patch/revoke", OLIVE, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}");
    let (status, body) = backend.send(Method::POST, "/api/jobs/patch/unrevoke", OLIVE, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}");

    // Inventory refreshes: checked as a fire is.
    for body in [json!({ "all": true }), json!({ "groups": ["lab"] }), json!({ "pcs": ["lab-1"] })] {
        let (status, reply) = backend.send(Method::POST, "/api/inventory/refresh", OLIVE, Some(&body)).await;
        assert_eq!((status, reply["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}: {reply}");
    }
    let (status, reply) =
        backend.send(Method::POST, "/api/inventory/refresh", OLIVE, Some(&json!({ "groups": ["office"] }))).await;
    assert_eq!((status, reply["asked"].clone()), (200, json!(5)), "{reply}");

    // Approvals: an approver approves what its scope covers, and is refused what reaches beyond it.
    create_job(&backend, &manifest("guarded", "require_approval: true\n")).await;
    let request = |body: Value| {
        let backend = &backend;
        async move {
            let (status, view) = backend.send(Method::POST, "/api/exec/guarded", alice, Some(&body)).await;
            assert_eq!((status, view["status"].as_str()), (201, Some("pending_approval")), "{view}");
            view["exec_id"].as_str().expect("exec id").to_owned()
        }
    };
    let wide = request(json!({ "groups": ["office", "lab"] })).await;
    let (status, body) = backend.send(Method::POST, &format!("/api/executions/{wide}/approve"), OSCAR, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("group `lab`"), "{body}");
    let (status, body) = backend.send(Method::POST, &format!("/api/executions/{wide}/reject"), OSCAR, None).await;
    assert_eq!(status, 403, "deciding either way needs the scope: {body}");
    // At the lab PCs only (a fire at group lab would reach both-1, in office too, and so be shown): not shown.
    let lab_only = request(json!({ "pcs": ["lab-1", "lab-2"] })).await;
    let (status, body) = backend.send(Method::POST, &format!("/api/executions/{lab_only}/approve"), OSCAR, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("execution_not_found")), "not even shown");
    let narrow = request(json!({ "groups": ["office"] })).await;
    let (status, body) = backend.send(Method::POST, &format!("/api/executions/{narrow}/approve"), OSCAR, None).await;
    assert_eq!((status, body["decided_by"].as_str()), (200, Some("oscar")), "{body}");

    // Kills: what the scope covers only.
    let (status, body) = backend.send(Method::POST, &format!("/api/executions/{wide}/kill"), OLIVE, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}");
    let (status, body) = backend.send(Method::POST, &format!("/api/executions/{office_exec}/kill"), OLIVE, None).await;
    assert_eq!(status, 200, "{body}");
    // One fired straight over NATS: what reported it decides.
    let (mixed, office_only) = (ExecId::generate(), ExecId::generate());
    let reported = [
        (result(&mixed, "office-2", Utc::now()), 1),
        (result(&mixed, "lab-2", Utc::now()), 1),
        (result(&office_only, "office-2", Utc::now()), 1),
    ];
    backend.db.insert_results(&reported, Utc::now()).await.expect("results");
    let (status, body) = backend.send(Method::POST, &format!("/api/executions/{mixed}/kill"), OLIVE, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().ends_with("pc `lab-2`"), "{body}");
    let (status, body) = backend.send(Method::POST, &format!("/api/executions/{office_only}/kill"), OLIVE, None).await;
    assert_eq!(status, 200, "{body}");

    // Schedules: created only within the scope, stored with it, and every fire checks it again.
    create_job(&backend, &manifest("office-tick", "target:\n  groups: [office]\n")).await;
    let schedule = |id: &str, job: &str, target: &str| json!({ "schedule": format!("id: {id}\njob: {job}\ncron: \"* * * * * *\"\noverlap: allow\n{target}") });
    let (status, body) = backend
        .send(Method::POST, "/api/schedules", OLIVE, Some(&schedule("lab-tick", "patch", "target:\n  groups: [lab]\n")))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{body}");
    let (status, body) =
        backend.send(Method::POST, "/api/schedules", OLIVE, Some(&schedule("tick", "office-tick", ""))).await;
    assert_eq!(status, 201, "{body}");
    let stored: String = sqlx::query_scalar("SELECT scope_json FROM schedule_scopes WHERE schedule_id = 'tick'")
        .fetch_one(backend.db.pool())
        .await
        .expect("the schedule's scope");
    assert_eq!(stored, "[\"office\"]");
    let fires = |outcome: &'static str| {
        let backend = &backend;
        async move {
            let (_, view) = backend.send(Method::GET, "/api/schedules/tick", alice, None).await;
            view["fires"].as_array()?.iter().find(|f| f["outcome"] == outcome).cloned()
        }
    };
    eventually("the schedule fires within its scope", PATIENCE, || fires("fired")).await;
    // Someone with the fleet scope points the job at every PC: the schedule's next fire is refused, recorded.
    create_job(&backend, &manifest("office-tick", "target:\n  all: true\n").replace("\"1.0\"", "\"2.0\"")).await;
    let failed = eventually("a fire beyond the schedule's scope fails", PATIENCE, || fires("failed")).await;
    assert!(failed["reason"].as_str().unwrap_or_default().contains("outside your scope (office)"), "{failed}");

    // And a schedule the fleet made reaches beyond olive's scope: olive may not pause, run or delete it.
    let (status, body) = backend
        .send(Method::POST, "/api/schedules", alice, Some(&schedule("nightly", "patch", "target:\n  all: true\n")))
        .await;
    assert_eq!(status, 201, "{body}");
    for (method, path) in [
        (Method::POST, "/api/schedules/nightly/pause"),
        (Method::POST, "/api/schedules/nightly/run-now"),
        (Method::DELETE, "/api/schedules/nightly"),
    ] {
        let (status, body) = backend.send(method, path, OLIVE, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "{path}: {body}");
    }
    let (status, body) = backend
        .send(
            Method::POST,
            "/api/schedules",
            OLIVE,
            Some(&schedule("nightly", "patch", "target:\n  groups: [office]\n")),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("out_of_scope")), "no taking it over: {body}");
    let (status, _) = backend.send(Method::DELETE, "/api/schedules/nightly", alice, None).await;
    assert_eq!(status, 204);
    // Olive's own schedule now fires at every PC (its job's new target): that is beyond olive's scope to change too.
    let (status, _) = backend.send(Method::DELETE, "/api/schedules/tick", OLIVE, None).await;
    assert_eq!(status, 403, "what it reaches now decides, not who made it");
    create_job(&backend, &manifest("office-tick", "target:\n  groups: [office]\n").replace("\"1.0\"", "\"3.0\"")).await;
    let (status, _) = backend.send(Method::DELETE, "/api/schedules/tick", OLIVE, None).await;
    assert_eq!(status, 204, "back within its scope, it is olive's to delete");
    backend.stop().await;
}

/// Reads `event: change` data off an open event stream until `wanted` says so.
async fn change_until(response: &mut reqwest::Response, buffer: &mut String, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if !block.lines().any(|l| l == "event: change") {
                continue;
            }
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            let change: Value = serde_json::from_str(&data).expect("change JSON");
            if wanted(&change) {
                return change;
            }
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await.expect("a change in time");
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("stream").expect("stream open")));
    }
}

#[tokio::test]
async fn a_scoped_caller_is_told_what_changed_but_not_which_pcs() {
    let Setup { backend, nats, _pg } = setup(false).await;
    let client = kanade_testkit::client(&nats.url()).await;
    let open = |token: &'static str| {
        let url = format!("{}/api/events", backend.url());
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("GET /api/events") }
    };
    let (mut scoped, mut fleet) = (open(OLIVE).await, open(operator_token("alice")).await);
    let (mut scoped_buffer, mut fleet_buffer) = (String::new(), String::new());
    // The hub may start listening a moment after the streams open: announce until both hear it.
    let note = json!({ "topic": "agents", "ids": ["lab-1"] });
    let announce = tokio::spawn({
        let client = client.clone();
        async move {
            loop {
                let body = serde_json::to_vec(&note).expect("note");
                client.publish(subject::backend_changes(), body.into()).await.expect("publish");
                let body = serde_json::to_vec(&json!({ "topic": "jobs", "ids": ["patch"] })).expect("note");
                client.publish(subject::backend_changes(), body.into()).await.expect("publish");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let seen = change_until(&mut fleet, &mut fleet_buffer, |c| c["topic"] == "agents").await;
    assert_eq!(seen["ids"], json!(["lab-1"]), "the fleet is told which agent");
    let seen = change_until(&mut scoped, &mut scoped_buffer, |c| c["topic"] == "agents").await;
    assert_eq!(seen["ids"], json!([]), "a scoped caller refetches the topic instead: {seen}");
    let seen = change_until(&mut scoped, &mut scoped_buffer, |c| c["topic"] == "jobs").await;
    assert_eq!(seen["ids"], json!(["patch"]), "jobs are not per PC: {seen}");
    announce.abort();
    backend.stop().await;
}
