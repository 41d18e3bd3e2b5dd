//! `kanade notify` end to end: the real CLI binary sends, an agent (in-process, with kanade-client's socket) shows,
//! a client running as the signed-in user (a real account the test creates, so it needs root) reads and
//! acknowledges, and `kanade notify --acks` lists who did. A notification sent while the PC is off arrives when it is
//! back; one for another PC, one not signed by a key in the trust list and one outside the signer's reach are not
//! shown; bad arguments are refused before anything is sent. Unix only.
#![cfg(unix)]

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use kanade_shared::client_ipc::{FromAgent, NoticeList, Push, ShownNotice};
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Notice, NoticeAck, NoticeLevel};
use kanade_shared::{Actor, NoticeId, PcId};
use kanade_testkit::accounts::TestAccount;
use kanade_testkit::ipc_client::Client;
use kanade_testkit::{NatsServer, TestAgent, agent_config, connect, eventually, init_logging};

const PC: &str = "notice-pc";
const HELLO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[1],"client":"notify test"}}"#;
const PATIENCE: Duration = Duration::from_secs(30);

async fn kanade(url: &str, args: &[&str]) -> std::process::Output {
    kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), url)
        .env("KANADE_OPERATOR", "ops")
        .args(args)
        .output()
        .await
        .expect("run kanade")
}

/// Sends a notification with the CLI; its id.
async fn notify(url: &str, args: &[&str]) -> NoticeId {
    let out = kanade(url, &[&["-o", "json", "notify"], args].concat()).await;
    assert!(out.status.success(), "kanade notify {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    NoticeId::new(sent["id"].as_str().unwrap()).unwrap()
}

async fn list(client: &mut Client, id: u64) -> Vec<ShownNotice> {
    client.line(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"notifications.list"}}"#)).await;
    client.next_response().await.into_result::<NoticeList>().unwrap().notices
}

async fn start_agent(url: &str, user: &TestAccount, data_dir: tempfile::TempDir, socket: &Path) -> TestAgent {
    let mut config = agent_config(url, PC, &["office"], data_dir.path());
    config.run_as_user = Some(user.name.clone());
    config.client_socket = Some(socket.to_owned());
    TestAgent::start_with(config, data_dir).await
}

#[tokio::test]
async fn a_notification_sent_while_the_pc_is_off_is_shown_when_it_is_back_and_its_acknowledgement_reaches_the_operator()
{
    use std::os::unix::fs::PermissionsExt as _;
    init_logging();
    let ann = TestAccount::create("ann");
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _) = connect(&url).await;
    let sockets = tempfile::tempdir().unwrap();
    std::fs::set_permissions(sockets.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = sockets.path().join("client.sock");

    // The PC is off: its agent has never run. One notification for it, one for its group, one for another PC.
    let for_pc =
        notify(&url, &["--pcs", PC, "--level", "warning", "Your PC restarts tonight at 22:00.\nSave your work."]).await;
    let for_group = notify(&url, &["--groups", "office", "--ttl", "1h", "Printer on floor 2 is back."]).await;
    let elsewhere = notify(&url, &["--pcs", "other-pc", "Not for you."]).await;
    // Published straight onto the broker by someone who may publish but holds no key in the trust list.
    let forged_id = NoticeId::generate();
    let forged = Notice {
        id: forged_id.clone(),
        level: NoticeLevel::Critical,
        text: "Call 555-0100 and read out your password.".into(),
        from: Actor::new("helpdesk").unwrap(),
        sent_at: chrono::Utc::now(),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let js = jetstream::new(client.clone());
    js.publish(
        subject::notice(&Target::Pc(PcId::new(PC).unwrap()), &forged_id),
        serde_json::to_vec(&forged).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let data_dir = tempfile::tempdir().unwrap();
    let agent = start_agent(&url, &ann, data_dir, &socket).await;
    let mut desk = Client::connect(&socket, Some(&ann));
    desk.line(HELLO).await;
    desk.next_response().await.into_result::<serde_json::Value>().unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut n = 10;
    let shown = loop {
        n += 1;
        let shown = list(&mut desk, n).await;
        if shown.len() >= 2 {
            break shown;
        }
        assert!(tokio::time::Instant::now() < deadline, "both notifications for this PC are shown: {shown:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let ids: Vec<&NoticeId> = shown.iter().map(|s| &s.notice.id).collect();
    assert_eq!(ids, [&for_group, &for_pc], "newest first, and nothing else: {shown:?}");
    assert!(!ids.contains(&&elsewhere) && !ids.contains(&&forged_id));
    let restart = &shown[1];
    assert_eq!(restart.notice.text, "Your PC restarts tonight at 22:00.\nSave your work.");
    assert_eq!((restart.notice.level, restart.notice.from.as_str()), (NoticeLevel::Warning, "ops"));
    assert_eq!(restart.acknowledged_at, None);

    // The user acknowledges it; the operator sees who, on which PC.
    desk.line(&format!(r#"{{"jsonrpc":"2.0","id":2,"method":"notifications.ack","params":{{"id":"{for_pc}"}}}}"#))
        .await;
    let acked: ShownNotice = desk.next_response().await.into_result().unwrap();
    assert_eq!(acked.acknowledged_by.as_deref(), Some(ann.name.as_str()));
    desk.line(r#"{"jsonrpc":"2.0","id":3,"method":"notifications.ack","params":{"id":"no-such-notice"}}"#).await;
    let unknown = desk.next_response().await.into_result::<ShownNotice>().unwrap_err();
    assert_eq!(unknown.reason(), "unknown_notification");
    let acks: Vec<NoticeAck> = eventually("the acknowledgement reaches the broker", PATIENCE, || async {
        let out = kanade(&url, &["-o", "json", "notify", "--acks", for_pc.as_str()]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let acks: Vec<NoticeAck> = serde_json::from_slice(&out.stdout).unwrap();
        (!acks.is_empty()).then_some(acks)
    })
    .await;
    assert_eq!(acks.len(), 1);
    assert_eq!((acks[0].pc_id.as_str(), acks[0].user.as_str()), (PC, ann.name.as_str()));

    // While the PC is on, a new one is pushed to the client as it arrives.
    let live = notify(&url, &["--all", "--level", "critical", "Fire drill at 15:00."]).await;
    loop {
        let FromAgent::Push(Push { method, params, .. }) = desk.next_message().await else { continue };
        if method == "notification.new" {
            let pushed: ShownNotice = serde_json::from_value(params).unwrap();
            assert_eq!((pushed.notice.id, pushed.notice.level), (live, NoticeLevel::Critical));
            break;
        }
    }
    desk.end().await;

    // A restart keeps what was shown and acknowledged, and shows nothing twice.
    let data_dir = agent.stop().await;
    let agent = start_agent(&url, &ann, data_dir, &socket).await;
    let mut again = Client::connect(&socket, Some(&ann));
    again.line(HELLO).await;
    again.next_response().await.into_result::<serde_json::Value>().unwrap();
    let shown = list(&mut again, 2).await;
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown.iter().any(|s| s.notice.id == for_pc && s.acknowledged_by.as_deref() == Some(ann.name.as_str())));
    again.end().await;
    agent.stop().await;
}

#[tokio::test]
async fn bad_notifications_are_refused_before_anything_is_sent() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    for (args, says) in [
        (vec!["notify", "hello"], "--pcs, --groups or --all"),
        (vec!["notify", "--all", "   "], "the text is empty"),
        (vec!["notify", "--all", &"x".repeat(2_001)], "2001 characters"),
        (vec!["notify", "--all", "bell \u{7}"], "control characters"),
        (vec!["notify", "--all", "--ttl", "31d", "hi"], "at most 30days"),
        (vec!["notify", "--all", "--ttl", "0s", "hi"], "more than 0s"),
        (vec!["notify", "--all", "--level", "loud", "hi"], "info, warning or critical"),
        (vec!["notify", "--pcs", "Bad.PC", "hi"], "pc_id"),
        (vec!["notify", "--all", "--acks", "x", "hi"], "cannot be used with"),
    ] {
        let out = kanade(&url, &args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // Nothing reached the stream.
    let (client, _) = connect(&url).await;
    let stream = jetstream::new(client).get_stream(kanade_shared::resources::STREAM_NOTIFICATIONS).await;
    if let Ok(mut stream) = stream {
        assert_eq!(stream.info().await.unwrap().state.messages, 0);
    }
}
