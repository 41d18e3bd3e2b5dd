//! The agent's inventory against a real nats-server, collected from this machine: every kind reported at start;
//! a restart with nothing changed sends nothing; a broker that lost the reports, or did not take them, gets them
//! again; a refresh request is answered, and `full` resends every kind; a disabled inventory says so; a garbage
//! request changes nothing.

use std::time::Duration;

use kanade_shared::inventory::{KINDS, RefreshAck, RefreshRequest};
use kanade_shared::resources::STREAM_INVENTORY;
use kanade_shared::{PcId, subject};
use kanade_testkit::{NatsServer, TestAgent, connect, eventually, init_logging};

const PATIENCE: Duration = Duration::from_secs(30);

/// The stream sequence of the newest report of each kind the broker holds for `pc` (absent kinds left out).
async fn held(js: &async_nats::jetstream::Context, pc: &str) -> Vec<(String, u64)> {
    let stream = js.get_stream(STREAM_INVENTORY).await.expect("INVENTORY");
    let mut out = Vec::new();
    for kind in KINDS {
        if let Ok(message) = stream.get_last_raw_message_by_subject(&format!("inventory.{pc}.{kind}")).await {
            out.push(((*kind).to_owned(), message.sequence));
        }
    }
    out
}

fn config(url: &str, dir: &std::path::Path, enabled: bool) -> kanade_shared::config::AgentConfig {
    let mut config = kanade_testkit::agent_config(url, "inv-pc", &[], dir);
    config.inventory =
        kanade_shared::config::InventoryConfig { enabled, interval: Duration::from_secs(3600), jitter: Duration::ZERO };
    config
}

async fn refresh(client: &async_nats::Client, pc: &str, body: &[u8]) -> RefreshAck {
    let reply = client
        .request(subject::inventory_refresh(&PcId::new(pc).unwrap()), body.to_vec().into())
        .await
        .expect("the agent answers");
    serde_json::from_slice(&reply.payload).expect("a refresh ack")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_changed_or_was_lost_is_sent_again() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start_with(config(&nats.url(), dir.path(), true), dir).await;

    // At start (jitter 0): every kind.
    let first = eventually("every kind reported", PATIENCE, || async {
        let held = held(&js, "inv-pc").await;
        (held.len() == KINDS.len()).then_some(held)
    })
    .await;
    eventually("the acknowledged hashes kept", PATIENCE, || async {
        let state = std::fs::read_to_string(agent.data_dir().join("inventory.json")).ok()?;
        KINDS.iter().all(|kind| state.contains(kind)).then_some(())
    })
    .await;

    // A restart with the same data dir: collected again, nothing new sent for hardware and software (status holds
    // free space and may have moved).
    let dir = agent.stop().await;
    let agent = TestAgent::start_with(config(&nats.url(), dir.path(), true), dir).await;
    let ack = refresh(&client, "inv-pc", b"").await;
    assert!(ack.accepted);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_restart = held(&js, "inv-pc").await;
    for kind in ["hardware", "software"] {
        let seq = |held: &[(String, u64)]| held.iter().find(|(k, _)| k == kind).map(|(_, s)| *s);
        assert_eq!(seq(&after_restart), seq(&first), "{kind} unchanged, not sent again");
    }

    // The broker loses them (a purged stream): the next collection sends every kind again.
    js.get_stream(STREAM_INVENTORY).await.unwrap().purge().await.unwrap();
    assert!(held(&js, "inv-pc").await.is_empty());
    let ack = refresh(&client, "inv-pc", &serde_json::to_vec(&RefreshRequest { full: false }).unwrap()).await;
    assert_eq!(ack.pc_id.as_str(), "inv-pc");
    eventually("every kind sent again after the loss", PATIENCE, || async {
        (held(&js, "inv-pc").await.len() == KINDS.len()).then_some(())
    })
    .await;

    // A full refresh sends every kind, changed or not.
    let before = held(&js, "inv-pc").await;
    refresh(&client, "inv-pc", br#"{"full":true}"#).await;
    eventually("a full report", PATIENCE, || async {
        let now = held(&js, "inv-pc").await;
        now.iter().zip(&before).all(|((_, a), (_, b))| a > b).then_some(())
    })
    .await;

    // Garbage in a request is a request with defaults: answered, nothing breaks.
    let ack = refresh(&client, "inv-pc", b"\xff{not json").await;
    assert!(ack.accepted);
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_inventory_says_so_and_sends_nothing() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let _agent = TestAgent::start_with(config(&nats.url(), dir.path(), false), dir).await;
    let ack = refresh(&client, "inv-pc", br#"{"full":true}"#).await;
    assert!(!ack.accepted, "{ack:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(held(&js, "inv-pc").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_broker_did_not_take_is_sent_again() {
    init_logging();
    let mut nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    // No stream to take the reports: the agent's first round publishes into nothing and is not acknowledged.
    js.delete_stream(STREAM_INVENTORY).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start_with(config(&nats.url(), dir.path(), true), dir).await;
    // A publish with no stream behind its subject is refused at once (no responders), so the first round is over
    // well within this; nothing was acknowledged, so nothing is kept.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!agent.data_dir().join("inventory.json").exists());

    // The stream is back (and the connection drops and returns): the agent sends what it could not, by its
    // retries or at the reconnect.
    nats.restart();
    let (_client, js) = connect(&nats.url()).await;
    eventually("every kind sent after the reconnect", PATIENCE, || async {
        (held(&js, "inv-pc").await.len() == KINDS.len()).then_some(())
    })
    .await;
    drop(agent);
}
