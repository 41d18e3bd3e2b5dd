//! kanade-client's self-service catalogue end to end: a backend and an agent over a real nats-server, the agent's
//! client socket, and a client (python3) running as the signed-in user, a real account the test creates (so it needs
//! root). The catalogue lists exactly the jobs with a `client:` block whose own targets include the PC; running one
//! starts an execution on that PC alone, requested by `self-service` and audited with the user and the PC; a job
//! not offered here is refused, and with the backend gone the client is told so. Unix only.
#![cfg(unix)]

use std::time::Duration;

use kanade_shared::client_ipc::Outcome;
use kanade_shared::wire::{CatalogueReply, SelfServiceStarted};
use kanade_testkit::accounts::{ClientAgent, TestAccount};
use kanade_testkit::ipc_client::Client;
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, init_logging};
use serde_json::json;

const PC: &str = "kiosk-pc";
const HELLO: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[1],"client":"selfservice test"}}"#;

fn manifest(id: &str, extra: &str) -> String {
    format!(
        "id: {id}\nversion: \"1.0\"\nexecute:\n  shell: sh\n  script: 'echo installed {id}'\n  timeout: 30s\n{extra}"
    )
}

async fn create_job(backend: &TestBackend, manifest: &str) {
    let (status, body) = backend.post("/api/jobs", &json!({ "manifest": manifest })).await;
    assert!(status == 201 || status == 200, "job create: {status} {body}");
}

async fn ask(
    client: &mut Client,
    id: u64,
    method: &str,
    params: serde_json::Value,
) -> kanade_shared::client_ipc::Response {
    let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    client.line(&line).await;
    client.next_response().await
}

#[tokio::test]
async fn the_catalogue_lists_what_targets_this_pc_and_a_run_starts_here_alone_audited_as_self_service() {
    init_logging();
    let ann = TestAccount::create("ann");
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    // Kept whole: its folder (and the socket in it) goes with it.
    let at_desk = ClientAgent::start(&url, PC, &["office"], &ann).await;
    let socket = at_desk.socket.clone();
    let _other = TestAgent::start(&url, "other-pc", &["office"]).await;
    backend.wait_for_agents(2).await;

    let client_block = "client:\n  title: 7-Zip\n  description: A file archiver.\n  category: Utilities\n";
    create_job(&backend, &manifest("seven-zip", &format!("target:\n  groups: [office]\n{client_block}"))).await;
    create_job(&backend, &manifest("notepad", "target:\n  all: true\nclient: {title: Notepad++, category: Editors}\n"))
        .await;
    create_job(&backend, &manifest("lab-tool", "target:\n  groups: [lab]\nclient: {title: Lab tool}\n")).await;
    create_job(&backend, &manifest("no-block", "target:\n  all: true\n")).await;

    let mut desk = Client::connect(&socket, Some(&ann));
    desk.line(HELLO).await;
    desk.next_response().await.into_result::<serde_json::Value>().unwrap();
    let catalogue: CatalogueReply = ask(&mut desk, 2, "catalogue.list", json!({})).await.into_result().unwrap();
    let listed: Vec<(&str, &str, &str)> =
        catalogue.items.iter().map(|i| (i.category.as_str(), i.title.as_str(), i.job_id.as_str())).collect();
    assert_eq!(listed, [("Editors", "Notepad++", "notepad"), ("Utilities", "7-Zip", "seven-zip")]);
    assert_eq!(catalogue.items[1].description, "A file archiver.");

    // Run: an execution of that job on this PC alone, which completes.
    let started: SelfServiceStarted =
        ask(&mut desk, 3, "catalogue.run", json!({"job_id": "seven-zip"})).await.into_result().unwrap();
    assert!(!started.pending_approval);
    let exec = started.exec_id.to_string();
    let done = backend.execution_until(&exec, "the self-service run", |v| v["status"] == "completed").await;
    assert_eq!(done["target_count"], 1, "this PC alone, though the job targets the whole group: {done}");
    assert_eq!(done["requested_by"], "self-service", "{done}");
    let (status, results) = backend.get(&format!("/api/results?exec_id={exec}")).await;
    assert_eq!(status, 200, "{results}");
    let results = results["items"].as_array().unwrap().clone();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!((results[0]["pc_id"].as_str(), results[0]["status"].as_str()), (Some(PC), Some("ok")));
    assert_eq!(results[0]["stdout"].as_str().map(str::trim), Some("installed seven-zip"));

    // Audited as self-service by the user on the PC.
    let said = format!("self-service by {} on {PC}", ann.name);
    let audited = kanade_testkit::eventually("the self-service audit record", Duration::from_secs(20), || async {
        let (_, audit) = backend.get("/api/audit?action=self-service").await;
        audit["items"].as_array().and_then(|items| {
            items.iter().find(|e| e["target"] == exec.as_str() && e["details"]["said"] == said.as_str()).cloned()
        })
    })
    .await;
    assert_eq!(audited["details"]["user"], ann.name.as_str());

    // Not offered here: another group's job, a job without a client block, one that does not exist; bad params.
    for (id, job) in [(4, "lab-tool"), (5, "no-block"), (6, "nothing-here")] {
        let refused = ask(&mut desk, id, "catalogue.run", json!({"job_id": job})).await;
        let Outcome::Error(err) = refused.outcome else { panic!("{job} ran") };
        assert_eq!(err.reason(), "not_offered", "{job}: {err:?}");
    }
    let bad = ask(&mut desk, 7, "catalogue.run", json!({"job_id": "Not A Job"})).await;
    let Outcome::Error(err) = bad.outcome else { panic!("a bad job id ran") };
    assert_eq!(err.reason(), "invalid_params");

    // With no backend, the client is told the catalogue is not available, and the agent goes on.
    backend.stop().await;
    let gone = ask(&mut desk, 8, "catalogue.list", json!({})).await;
    let Outcome::Error(err) = gone.outcome else { panic!("a catalogue without a backend") };
    assert_eq!(err.reason(), "catalogue_unavailable", "{err:?}");
    desk.line(r#"{"jsonrpc":"2.0","id":9,"method":"status"}"#).await;
    assert!(desk.next_response().await.into_result::<serde_json::Value>().is_ok());
    desk.end().await;
    at_desk.agent.stop().await;
}
