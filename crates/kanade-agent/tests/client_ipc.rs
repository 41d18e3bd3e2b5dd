//! kanade-client's local IPC against a real agent on a real socket, with real accounts the test creates (so it needs
//! root, as the agent's service runs): the signed-in user (here the agent's `run_as_user`, standing for logind's
//! active session, which this machine has none of) is greeted and told what runs on the PC as it changes; another
//! local user and root are refused; a malformed, oversized, flooding, silent or surplus client is closed with an
//! error that says why, and the agent goes on serving clients and running commands. The clients are
//! `kanade_testkit::ipc_client` processes (python3) running as those accounts. Unix only.
#![cfg(unix)]

use std::path::PathBuf;
use std::time::Duration;

use kanade_shared::PcId;
use kanade_shared::client_ipc::{FromAgent, MAX_CLIENTS, Outcome, Push, Response};
use kanade_shared::subject::Target;
use kanade_shared::wire::ResultStatus;
use kanade_testkit::accounts::TestAccount;
use kanade_testkit::fleet::{ResultWatch, command, publish};
use kanade_testkit::ipc_client::Client;
use kanade_testkit::{NatsServer, TestAgent, agent_config, connect, init_logging};

const PC: &str = "desk-pc";
const HELLO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[1],"client":"ipc test"}}"#;
const STATUS: &str = r#"{"jsonrpc":"2.0","id":2,"method":"status"}"#;
const PATIENCE: Duration = Duration::from_secs(20);

fn reason(response: &Response) -> &str {
    match &response.outcome {
        Outcome::Error(err) => err.reason(),
        Outcome::Result(_) => "",
    }
}

/// An agent for `user` with its client socket in a folder every account can reach.
async fn agent(url: &str, user: &TestAccount) -> (TestAgent, tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let sockets = tempfile::tempdir().unwrap();
    std::fs::set_permissions(sockets.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = sockets.path().join("client.sock");
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = agent_config(url, PC, &[], data_dir.path());
    config.run_as_user = Some(user.name.clone());
    config.client_socket = Some(socket.clone());
    (TestAgent::start_with(config, data_dir).await, sockets, socket)
}

#[tokio::test]
async fn the_signed_in_user_is_greeted_and_told_what_runs_and_others_are_refused() {
    init_logging();
    let (ann, bob) = (TestAccount::create("ann"), TestAccount::create("bob"));
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let (agent, _sockets, socket) = agent(&nats.url(), &ann).await;
    let mode = std::fs::metadata(&socket).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions())).unwrap();
    assert_eq!(mode & 0o777, 0o666, "anyone may connect; the peer check decides");

    let mut desk = Client::connect(&socket, Some(&ann));
    desk.line(HELLO).await;
    let hello: kanade_shared::client_ipc::Hello = desk.next_response().await.into_result().unwrap();
    assert_eq!((hello.protocol, hello.user.as_str(), hello.pc_id.as_str()), (1, ann.name.as_str(), PC));
    assert_eq!(hello.agent_version, kanade_agent::version());
    // Connected within a tick of the agent's status.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let status = loop {
        desk.line(STATUS).await;
        let status: kanade_shared::client_ipc::AgentStatus = desk.next_response().await.into_result().unwrap();
        if status.connected {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "the agent never said it is connected: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.hostname, format!("{PC}.test"));
    assert!(status.running.is_empty());

    // A command runs: the client is told as it starts, how it ended, and that it is no longer running, without
    // asking.
    let mut results = ResultWatch::new(&client).await;
    let run = command("sleep 2; echo done");
    publish(&js, &Target::Pc(PcId::new(PC).unwrap()), &run).await;
    // The two pushes at its end come in either order.
    let (mut seen_running, mut emptied, mut finished) = (false, false, None);
    while !(emptied && finished.is_some()) {
        let FromAgent::Push(Push { method, params, .. }) = desk.next_message().await else { continue };
        if method == "run.finished" {
            finished = Some(params);
            continue;
        }
        assert_eq!(method, "status.changed");
        let running = params["running"].as_array().unwrap().clone();
        if running.iter().any(|r| r["exec_id"] == run.exec_id.as_str()) {
            seen_running = true;
        } else if seen_running && running.is_empty() {
            emptied = true;
        }
    }
    let finished = finished.unwrap();
    assert_eq!((finished["exec_id"].as_str(), finished["status"].as_str()), (Some(run.exec_id.as_str()), Some("ok")));
    assert_eq!(finished["exit_code"], 0, "{finished}");
    assert_eq!(results.next_for(&run.exec_id, PATIENCE).await.status, ResultStatus::Ok);

    // Another account, and root, are refused before a word is read, and told why.
    let mut other = Client::connect(&socket, Some(&bob));
    other.line(HELLO).await;
    let (why, end) = other.closing().await;
    assert_eq!(why, "not_the_signed_in_user");
    // Closed with what it sent unread: the kernel may tell the client so (a reset) after the error.
    assert!(end == "<closed>" || end == "<reset>", "{end}");
    let mut root = Client::connect(&socket, None);
    root.line(HELLO).await;
    assert_eq!(root.closing().await.0, "not_the_signed_in_user");

    // The signed-in user's client was not disturbed by them.
    desk.line(STATUS).await;
    assert!(desk.next_response().await.into_result::<serde_json::Value>().is_ok());
    desk.end().await;
    agent.stop().await;
}

#[tokio::test]
async fn malformed_oversized_flooding_silent_and_surplus_clients_are_closed_and_the_agent_carries_on() {
    init_logging();
    let ann = TestAccount::create("ann");
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let (agent, _sockets, socket) = agent(&nats.url(), &ann).await;

    // Not JSON before `hello`; JSON that is not `hello`; a protocol the agent does not speak.
    for (first, why) in [
        ("\u{1}\u{2} garbage", "parse_error"),
        (STATUS, "hello_first"),
        (r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[99]}}"#, "unsupported_protocol"),
    ] {
        let mut c = Client::connect(&socket, Some(&ann));
        c.line(first).await;
        assert_eq!(c.closing().await, (why.to_owned(), "<closed>".to_owned()), "{first}");
    }
    // Bytes that are not UTF-8.
    let mut c = Client::connect(&socket, Some(&ann));
    c.send(b"\xff\xfe\xfd\n").await;
    assert_eq!(c.closing().await.0, "parse_error");

    // Once greeted, a broken request is answered and the connection stays; an unknown method likewise.
    let mut c = Client::connect(&socket, Some(&ann));
    c.line(HELLO).await;
    assert_eq!(reason(&c.next_response().await), "");
    c.line(r#"{"jsonrpc":"2.0","id":3,"method":"status""#).await;
    assert_eq!(reason(&c.next_response().await), "parse_error");
    c.line(r#"{"jsonrpc":"2.0","id":4,"method":"format.disk"}"#).await;
    let unknown = c.next_response().await;
    assert_eq!(
        (reason(&unknown), unknown.id.clone()),
        ("method_not_found", Some(kanade_shared::client_ipc::RequestId::Number(4)))
    );
    // A line over 64 KiB ends it.
    let long =
        format!(r#"{{"jsonrpc":"2.0","id":5,"method":"status","params":{{"pad":"{}"}}}}"#, "x".repeat(70 * 1024));
    c.line(&long).await;
    assert_eq!(c.closing().await.0, "line_too_long");

    // A flood: far more requests at once than the burst allows.
    let mut flood = Client::connect(&socket, Some(&ann));
    let many = std::iter::once(HELLO).chain(std::iter::repeat_n(STATUS, 500)).collect::<Vec<_>>().join("\n") + "\n";
    flood.send(many.as_bytes()).await;
    let (why, _) = flood.closing().await;
    assert_eq!(why, "too_fast");

    // A client that never says hello is closed after a few seconds.
    let mut silent = Client::connect(&socket, Some(&ann));
    assert_eq!(silent.closing().await.0, "hello_first");

    // More clients than allowed: the ones over the limit are turned away, the others keep their connection.
    let mut held = Vec::new();
    for _ in 0..MAX_CLIENTS {
        let mut c = Client::connect(&socket, Some(&ann));
        c.line(HELLO).await;
        assert_eq!(reason(&c.next_response().await), "");
        held.push(c);
    }
    let mut surplus = Client::connect(&socket, Some(&ann));
    surplus.line(HELLO).await;
    assert_eq!(surplus.closing().await.0, "too_many_clients");
    for mut c in held {
        c.line(STATUS).await;
        assert_eq!(reason(&c.next_response().await), "");
        c.end().await;
    }

    // After all of it the agent still serves a client and still runs commands.
    let mut results = ResultWatch::new(&client).await;
    let run = command("echo still here");
    publish(&js, &Target::Pc(PcId::new(PC).unwrap()), &run).await;
    assert_eq!(results.next_for(&run.exec_id, PATIENCE).await.stdout.trim(), "still here");
    let mut c = kanade_testkit::eventually("a client is served again", PATIENCE, || {
        let socket = socket.clone();
        let ann = &ann;
        async move {
            let mut c = Client::connect(&socket, Some(ann));
            c.line(HELLO).await;
            (reason(&c.next_response().await).is_empty()).then_some(c)
        }
    })
    .await;
    c.line(STATUS).await;
    assert!(c.next_response().await.into_result::<serde_json::Value>().is_ok());
    c.end().await;
    agent.stop().await;
}
