//! Maintenance with consent end to end: a backend and agents over a real nats-server, the agent's client socket,
//! and a client (python3) running as the signed-in user, a real account the test creates (so it needs root). A job
//! whose manifest asks for consent is held on the PC with a client until its user runs it or puts it off; put off as
//! often as allowed, it runs at its deadline and not before, and the operator sees "deferred by <user> until …" in
//! the execution's targets meanwhile. A PC whose agent serves no client has nobody to ask and runs it at once.
//! Unix only.
#![cfg(unix)]

use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, Utc};
use kanade_shared::client_ipc::{MaintenanceList, Outcome, PendingRun};
use kanade_shared::wire::HeldState;
use kanade_testkit::accounts::{ClientAgent, TestAccount};
use kanade_testkit::ipc_client::Client;
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::{Value, json};

const PC: &str = "desk-pc";
const UNATTENDED: &str = "server-pc";
const HELLO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[1],"client":"consent test"}}"#;
/// The shortest consent deadline a manifest may give.
const DEADLINE: Duration = Duration::from_secs(60);
const PATIENCE: Duration = Duration::from_secs(40);

const MANIFEST: &str = "id: updates\nversion: \"1\"\nexecute:\n  shell: sh\n  script: 'echo updated'\n  timeout: 30s\n\
    client:\n  title: Monthly updates\n  consent:\n    message: Updates install and apps may close.\n    \
    max_defer: 1\n    deadline: 1m\n";

async fn ask(client: &mut Client, id: u64, method: &str, params: Value) -> kanade_shared::client_ipc::Response {
    let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    client.line(&line).await;
    client.next_response().await
}

async fn fire(backend: &TestBackend, pcs: &[&str]) -> String {
    let (status, body) = backend.post("/api/exec/updates", &json!({ "pcs": pcs })).await;
    assert!(status == 200 || status == 201, "exec updates: {status} {body}");
    body["exec_id"].as_str().expect("an exec id").to_owned()
}

/// A client of `account`'s, greeted.
async fn greeted(socket: &std::path::Path, account: &TestAccount) -> Client {
    let mut desk = Client::connect(socket, Some(account));
    desk.line(HELLO).await;
    desk.next_response().await.into_result::<Value>().unwrap();
    desk
}

/// The held run of `exec` once the client lists it.
async fn listed(client: &mut Client, exec: &str, next_id: &mut u64) -> PendingRun {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        *next_id += 1;
        let list: MaintenanceList = ask(client, *next_id, "maintenance.list", json!({})).await.into_result().unwrap();
        if let Some(item) = list.items.into_iter().find(|i| i.exec_id.as_str() == exec) {
            return item;
        }
        assert!(std::time::Instant::now() < deadline, "`{exec}` was never held for consent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `pc`'s result of `exec`, once there is one.
async fn result_of(backend: &TestBackend, exec: &str, pc: &str, patience: Duration) -> Value {
    eventually(&format!("{pc}'s result of {exec}"), patience, || async {
        let (_, results) = backend.get(&format!("/api/results?exec_id={exec}")).await;
        results["items"].as_array().and_then(|items| items.iter().find(|r| r["pc_id"] == pc).cloned())
    })
    .await
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("not a time: {value}"))
}

#[tokio::test]
async fn a_deferred_run_waits_for_its_deadline_a_run_now_goes_at_once_and_nobody_to_ask_means_no_wait() {
    init_logging();
    let ann = TestAccount::create("cons");
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    // Kept whole: its folder (and the socket in it) goes with it.
    let at_desk = ClientAgent::start(&url, PC, &["office"], &ann).await;
    let socket = at_desk.socket.clone();
    let _unattended = TestAgent::start(&url, UNATTENDED, &["office"]).await;
    backend.wait_for_agents(2).await;
    let (status, body) = backend.post("/api/jobs", &json!({ "manifest": MANIFEST })).await;
    assert!(status == 200 || status == 201, "job create: {status} {body}");

    let mut desk = greeted(&socket, &ann).await;
    let mut id = 1;

    // Fired at both: the PC without a client runs it at once; the one with a client asks its user.
    let exec = fire(&backend, &[PC, UNATTENDED]).await;
    let fired_at = Utc::now();
    let held = listed(&mut desk, &exec, &mut id).await;
    assert_eq!((held.state, held.deferrals_left), (HeldState::Asking, 1), "{held:?}");
    assert_eq!(held.title, "Monthly updates");
    assert_eq!(held.message, "Updates install and apps may close.");
    assert!(held.deadline <= fired_at + chrono::Duration::from_std(DEADLINE).unwrap() + chrono::Duration::seconds(5));
    let unattended = result_of(&backend, &exec, UNATTENDED, PATIENCE).await;
    assert_eq!(unattended["status"], "ok", "{unattended}");
    assert!(time(&unattended["started_at"]) < held.deadline, "nobody to ask there: it did not wait");
    id += 1;
    let status: Value = ask(&mut desk, id, "status", json!({})).await.into_result().unwrap();
    assert_eq!(status["pending_maintenance"], 1, "{status}");

    // Hostile or wrong answers are refused, each with its reason, and change nothing.
    for (params, reason) in [
        (json!({"exec_id": "no-such-run", "minutes": 60}), "unknown_maintenance"),
        (json!({"exec_id": exec, "minutes": 0}), "invalid_params"),
        (json!({"exec_id": exec, "minutes": 100_000}), "invalid_params"),
        (json!({"exec_id": exec, "minutes": 60, "run_as": "root"}), "invalid_params"),
        (json!({"exec_id": "../../etc", "minutes": 60}), "invalid_params"),
        (json!({"minutes": 60}), "invalid_params"),
    ] {
        id += 1;
        let Outcome::Error(err) = ask(&mut desk, id, "maintenance.defer", params.clone()).await.outcome else {
            panic!("{params} was taken")
        };
        assert_eq!(err.reason(), reason, "{params}: {err:?}");
    }

    // Put off (for longer than the deadline allows): held until the deadline, and the operator sees who and until when.
    id += 1;
    let after: MaintenanceList =
        ask(&mut desk, id, "maintenance.defer", json!({"exec_id": exec, "minutes": 120})).await.into_result().unwrap();
    let deferred = after.items.iter().find(|i| i.exec_id.as_str() == exec).expect("still held").clone();
    assert_eq!((deferred.state, deferred.deferrals_left, deferred.until), (HeldState::Deferred, 0, deferred.deadline));
    id += 1;
    let Outcome::Error(err) =
        ask(&mut desk, id, "maintenance.defer", json!({"exec_id": exec, "minutes": 5})).await.outcome
    else {
        panic!("put off more often than allowed")
    };
    assert_eq!(err.reason(), "no_deferrals_left", "{err:?}");
    let target = eventually("the operator sees the deferral", PATIENCE, || async {
        let (_, targets) = backend.get(&format!("/api/executions/{exec}/targets")).await;
        targets["items"]
            .as_array()
            .and_then(|items| items.iter().find(|t| t["pc_id"] == PC && t["held"]["state"] == "deferred").cloned())
    })
    .await;
    assert_eq!(target["state"], "pending", "{target}");
    assert_eq!(target["held"]["by"], ann.name.as_str(), "{target}");
    // Stored to the millisecond.
    assert_eq!(time(&target["held"]["until"]), deferred.deadline.trunc_subsecs(3), "{target}");

    // It runs at its deadline and not before. (The test's client gives up after 15 s without a word from the agent:
    // it leaves now, and a new one comes after.)
    desk.end().await;
    let (_, early) = backend.get(&format!("/api/results?exec_id={exec}")).await;
    assert!(
        early["items"].as_array().unwrap().iter().all(|r| r["pc_id"] != PC) || Utc::now() >= deferred.deadline,
        "ran before its deadline: {early}"
    );
    let ran = result_of(&backend, &exec, PC, DEADLINE + PATIENCE).await;
    assert_eq!(ran["status"], "ok", "{ran}");
    assert!(time(&ran["started_at"]) >= deferred.deadline, "started before its deadline {}: {ran}", deferred.deadline);
    let target = eventually("the target shows its result", PATIENCE, || async {
        let (_, targets) = backend.get(&format!("/api/executions/{exec}/targets")).await;
        targets["items"]
            .as_array()
            .and_then(|items| items.iter().find(|t| t["pc_id"] == PC && t["state"] == "ok").cloned())
    })
    .await;
    assert!(target.get("held").is_none(), "a run that started is not shown held: {target}");

    // Run now: it goes at once.
    let mut desk = greeted(&socket, &ann).await;
    let second = fire(&backend, &[PC]).await;
    let held = listed(&mut desk, &second, &mut id).await;
    id += 1;
    let after: MaintenanceList =
        ask(&mut desk, id, "maintenance.run_now", json!({"exec_id": second})).await.into_result().unwrap();
    assert!(after.items.iter().all(|i| i.exec_id.as_str() != second), "no longer waiting: {after:?}");
    let ran = result_of(&backend, &second, PC, PATIENCE).await;
    assert_eq!(ran["status"], "ok", "{ran}");
    assert!(time(&ran["started_at"]) < held.deadline, "run now did not wait for the deadline: {ran}");
    id += 1;
    let status: Value = ask(&mut desk, id, "status", json!({})).await.into_result().unwrap();
    assert_eq!(status["pending_maintenance"], 0, "{status}");

    desk.end().await;
    at_desk.agent.stop().await;
}
