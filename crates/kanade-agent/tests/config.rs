//! The layered `agent_config` reaches a real agent live: scopes override each other as DESIGN.md says, a change
//! applies without a restart, a change made while the agent was away applies when it returns, and the agent keeps
//! listening after a broker restart.

use std::time::Duration;

use futures::StreamExt;
use kanade_ops::agent_config::AgentConfigStore;
use kanade_shared::layered::{self, Scope};
use kanade_shared::wire::ResultStatus;
use kanade_shared::{GroupName, PcId};
use kanade_testkit::fleet::{self, ResultWatch};
use kanade_testkit::{NatsServer, TestAgent, connect, eventually, init_logging};

const PATIENCE: Duration = Duration::from_secs(20);

async fn set(store: &AgentConfigStore, scope: &Scope, key: &str, raw: &str) {
    store.change(scope, key, Some(layered::parse(key, raw).unwrap())).await.unwrap();
}

/// Waits until no heartbeat has come for `quiet` (the 500 ms test interval was replaced by a long one).
async fn heartbeats_stop(beats: &mut async_nats::Subscriber, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout(quiet, beats.next()).await {
            Err(_) => return,
            Ok(Some(_)) => assert!(tokio::time::Instant::now() < deadline, "heartbeats never stopped"),
            Ok(None) => panic!("heartbeat subscription ended"),
        }
    }
}

/// Waits until `n` heartbeats arrive in a row, each within `gap` of the last.
async fn heartbeats_every(beats: &mut async_nats::Subscriber, n: usize, gap: Duration) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut run = 0;
    while run < n {
        match tokio::time::timeout(gap, beats.next()).await {
            Ok(Some(_)) => run += 1,
            Ok(None) => panic!("heartbeat subscription ended"),
            Err(_) => run = 0,
        }
        assert!(tokio::time::Instant::now() < deadline, "no {n} heartbeats {gap:?} apart");
    }
}

#[tokio::test]
async fn the_heartbeat_interval_follows_the_layers_live_across_restarts() {
    init_logging();
    let mut nats = NatsServer::start();
    let url = nats.url();
    let (client, _) = connect(&url).await;
    let store = AgentConfigStore::open(&client).await.unwrap();
    let pc = PcId::new("pc-1").unwrap();
    let (lab, global, own) = (Scope::Group(GroupName::new("lab").unwrap()), Scope::Global, Scope::Pc(pc.clone()));
    let agent = TestAgent::start(&url, "pc-1", &["lab"]).await;
    let mut beats = client.subscribe("heartbeat.pc-1").await.unwrap();
    client.flush().await.unwrap();
    heartbeats_every(&mut beats, 3, Duration::from_secs(2)).await;

    // Global says 1h: the agent's own 500 ms gives way.
    set(&store, &global, "heartbeat_interval", "1h").await;
    heartbeats_stop(&mut beats, Duration::from_secs(3)).await;
    // Its group says 1s: a group beats global.
    set(&store, &lab, "heartbeat_interval", "1s").await;
    heartbeats_every(&mut beats, 3, Duration::from_secs(3)).await;
    // The pc says 1h: the pc beats its groups.
    set(&store, &own, "heartbeat_interval", "1h").await;
    heartbeats_stop(&mut beats, Duration::from_secs(3)).await;
    // Unset at the pc: the group's 1s is back.
    store.change(&own, "heartbeat_interval", None).await.unwrap();
    heartbeats_every(&mut beats, 3, Duration::from_secs(3)).await;

    // Changed while the agent is away: it applies when the agent starts.
    let config = agent.config.clone();
    let data_dir = agent.stop().await;
    set(&store, &own, "heartbeat_interval", "1h").await;
    let agent = TestAgent::start_with(config, data_dir).await;
    heartbeats_stop(&mut beats, Duration::from_secs(3)).await;

    // After a broker restart the agent still hears changes.
    nats.restart();
    let pinged = kanade_testkit::client(&url).await;
    eventually("the agent is back after the broker restart", PATIENCE, || {
        let (client, pc) = (pinged.clone(), pc.clone());
        async move { kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok() }
    })
    .await;
    let client = kanade_testkit::client(&url).await;
    let store = AgentConfigStore::open(&client).await.unwrap();
    let mut beats = client.subscribe("heartbeat.pc-1").await.unwrap();
    client.flush().await.unwrap();
    store.change(&own, "heartbeat_interval", None).await.unwrap();
    heartbeats_every(&mut beats, 3, Duration::from_secs(3)).await;
    drop(agent);
}

/// Waits until pc-1's heartbeat says `n` run slots are in force.
async fn slots_in_force(client: &async_nats::Client, n: u32) {
    let pc = PcId::new("pc-1").unwrap();
    eventually(&format!("pc-1 runs {n} at once"), PATIENCE, || {
        let (client, pc) = (client.clone(), pc.clone());
        async move {
            let (hb, _) = kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok()?;
            (hb.max_local_concurrent == n).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn max_local_concurrent_changes_live() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, js) = connect(&url).await;
    let store = AgentConfigStore::open(&client).await.unwrap();
    let _agent = TestAgent::start(&url, "pc-1", &[]).await;
    slots_in_force(&client, kanade_shared::config::DEFAULT_MAX_LOCAL_CONCURRENT as u32).await;
    let mut results = ResultWatch::new(&client).await;
    let mut started = client.subscribe("events.started.pc-1.*").await.unwrap();
    client.flush().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let gate = scratch.path().join("go");
    let hold = format!("while [ ! -f {} ]; do sleep 0.05; done", gate.display());

    set(&store, &Scope::Pc(PcId::new("pc-1").unwrap()), "max_local_concurrent", "1").await;
    slots_in_force(&client, 1).await;
    let first = fleet::command(&hold);
    let second = fleet::command("echo second");
    let target = kanade_shared::subject::Target::Pc(PcId::new("pc-1").unwrap());
    fleet::publish(&js, &target, &first).await;
    tokio::time::timeout(PATIENCE, started.next()).await.expect("first run started");
    fleet::publish(&js, &target, &second).await;
    // A quick run announces no start, so its result is what would show it ran.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), results.next_for(&second.exec_id, PATIENCE)).await.is_err(),
        "a second run ran with max_local_concurrent = 1"
    );
    // Back to the default (4): the queued run starts while the first still holds its slot.
    store.change(&Scope::Pc(PcId::new("pc-1").unwrap()), "max_local_concurrent", None).await.unwrap();
    let result = results.next_for(&second.exec_id, PATIENCE).await;
    assert_eq!((result.status, result.stdout.as_str()), (ResultStatus::Ok, "second\n"));
    std::fs::write(&gate, "").unwrap();
    assert_eq!(results.next_for(&first.exec_id, PATIENCE).await.status, ResultStatus::Ok);
}

#[tokio::test]
async fn an_agent_started_before_jetstream_setup_takes_its_config_once_the_bucket_exists() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    // No `kanade jetstream setup` yet: the agent_config bucket does not exist when the agent starts.
    let _agent = TestAgent::start(&url, "pc-1", &["lab"]).await;
    let raw = kanade_testkit::client(&url).await;
    let mut beats = raw.subscribe("heartbeat.pc-1").await.unwrap();
    raw.flush().await.unwrap();
    heartbeats_every(&mut beats, 2, Duration::from_secs(2)).await;

    let (client, _) = connect(&url).await;
    let store = AgentConfigStore::open(&client).await.unwrap();
    set(&store, &Scope::Group(GroupName::new("lab").unwrap()), "heartbeat_interval", "1h").await;
    heartbeats_stop(&mut beats, Duration::from_secs(3)).await;
    let pc = PcId::new("pc-1").unwrap();
    let (heartbeat, _) = kanade_ops::agents::ping(&client, &pc, Duration::from_secs(2)).await.unwrap();
    assert_eq!(heartbeat.heartbeat_interval_ms, 3_600_000, "the agent did not restart and took the setting");
}
