//! A 3-node JetStream cluster on loopback ports: `kanade jetstream setup --replicas 3`, the backend, real and
//! simulated agents all given the three URLs, a rollout during which the node leading `RESULTS` is SIGKILLed,
//! every result counted (lost 0, duplicated 0), and the node back with every replica current again.

use async_nats::ServerAddr;
use clap::Parser as _;
use kanade_faults::{Agent, Backend, Fleet, PATIENCE, Tally, manifest};
use kanade_testkit::{NatsCluster, eventually, init_logging};

/// Runs a `kanade` command in-process; true when it succeeded.
async fn kanade(urls: &str, args: &[&str]) -> bool {
    let fleet = kanade_testkit::fleet().cli_args();
    let fleet: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let cli = kanade::Cli::try_parse_from([&["kanade", "--nats-url", urls], fleet.as_slice(), args].concat()).unwrap();
    match kanade::run(cli).await {
        Ok(code) => code == std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::info!(?args, error = format!("{err:#}"), "kanade failed");
            false
        }
    }
}

async fn connect(urls: &str) -> async_nats::jetstream::Context {
    let nats = kanade_testkit::fleet().backend_nats(urls);
    let addrs: Vec<ServerAddr> = nats.urls.iter().map(|u| u.parse().unwrap()).collect();
    let client =
        kanade_ops::nats::options(&nats, "kanade-test").retry_on_initial_connect().connect(addrs).await.unwrap();
    async_nats::jetstream::new(client)
}

#[tokio::test]
async fn a_node_killed_mid_rollout_loses_and_repeats_nothing() {
    init_logging();
    let mut cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    // The cluster elects its JetStream meta leader in its own time; setup succeeds once it has.
    eventually("kanade jetstream setup --replicas 3", PATIENCE, || async {
        kanade(&urls, &["jetstream", "setup", "--replicas", "3"]).await.then_some(())
    })
    .await;
    let js = connect(&urls).await;
    kanade_testkit::fleet().push_trust(&js.client()).await;
    let statuses = kanade_ops::jetstream::status(&js).await.unwrap();
    assert!(statuses.iter().all(|s| s.exists && s.replicas == 3), "{statuses:?}");

    let backend = Backend::start(&urls).await;
    let agents = [
        Agent::start(&urls, "real-1", "wave-a"),
        Agent::start(&urls, "real-2", "wave-a"),
        Agent::start(&urls, "real-3", "wave-b"),
    ];
    let fleet = Fleet::start(&urls, "sim-", 30, "wave-a:50%,wave-b:rest", "2s").await;
    backend.wait_for_agents(33).await;

    let exec = backend.deploy(&manifest("cluster-rollout", 2, &[("wave-a", "0s"), ("wave-b", "3s")])).await;
    eventually("the rollout is under way", PATIENCE, || async {
        let view = backend.execution(&exec).await?;
        (view["results"].as_u64()? >= 5).then_some(())
    })
    .await;
    // The node that leads RESULTS, where every result is being written right now.
    let results = js.get_stream(kanade_shared::resources::STREAM_RESULTS).await.unwrap();
    let leader = results.cached_info().cluster.as_ref().and_then(|c| c.leader.clone()).expect("a leader");
    let victim: usize = leader.trim_start_matches('n').parse::<usize>().unwrap() - 1;
    cluster.nodes[victim].kill();

    backend.wait_until_answered(&exec, PATIENCE).await;
    let mut targets: Vec<String> = agents.iter().map(|a| a.pc.clone()).collect();
    targets.extend(fleet.pcs().iter().cloned());
    let runs = |pc: &str| match agents.iter().find(|a| a.pc == pc) {
        Some(agent) => agent.runs(&exec),
        None => fleet.runs(pc, &exec),
    };
    let tally = Tally::count(&backend.database(), &exec, &targets, runs).await;
    tally.report(&format!("3-node cluster, node {leader} (leader of RESULTS) SIGKILLed mid-rollout"));
    assert_eq!((tally.lost, tally.duplicated), (0, 0), "{tally:?}");
    assert_eq!(tally.statuses.get("ok"), Some(&targets.len()), "{tally:?}");

    // Degraded while it is gone, healthy once it is back and has caught up.
    eventually(&format!("status shows {leader} offline"), PATIENCE, || async {
        let statuses = kanade_ops::jetstream::status(&js).await.ok()?;
        statuses.iter().any(|s| s.lagging.contains(&leader)).then_some(())
    })
    .await;
    cluster.nodes[victim].start_again();
    eventually("every replica is current again", PATIENCE, || async {
        let statuses = kanade_ops::jetstream::status(&js).await.ok()?;
        statuses
            .iter()
            .all(|s| s.unavailable.is_none() && s.current_replicas == Some(3) && s.lagging.is_empty())
            .then_some(())
    })
    .await;
    assert!(kanade(&urls, &["jetstream", "status"]).await);
}
