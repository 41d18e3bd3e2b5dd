//! The fleet simulator at small scale: 200 agents over a few shared connections each answer a broadcast exactly
//! once, group commands reach exactly their share, and every agent answers its own ping.

use std::time::Duration;

use clap::Parser;
use kanade_agent::simulate::{SimulateArgs, Simulation};
use kanade_shared::subject::Target;
use kanade_shared::wire::ResultStatus;
use kanade_shared::{GroupName, PcId};
use kanade_testkit::fleet::{ResultWatch, command, publish};
use kanade_testkit::{NatsServer, connect, init_logging};

const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: SimulateArgs,
}

fn args(url: &str, extra: &[&str]) -> SimulateArgs {
    let fleet = kanade_testkit::fleet().simulator_args();
    let mut argv = vec!["simulate", "--nats-url", url];
    argv.extend(fleet.iter().map(String::as_str));
    argv.extend_from_slice(extra);
    Wrapper::parse_from(argv).args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_simulated_agents_each_answer_exactly_once() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("sim");
    let sim = Simulation::start(&args(
        &nats.url(),
        &[
            "--count",
            "200",
            "--connections",
            "4",
            "--groups",
            "canary:5%,wave1:rest",
            "--exit-code",
            "7",
            "--output-bytes",
            "10",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
    ))
    .await
    .unwrap();
    assert_eq!((sim.count, sim.connections), (200, 4));
    let mut results = ResultWatch::new(&client).await;

    let broadcast = command("emulated");
    publish(&js, &Target::All, &broadcast).await;
    let got = results.all_for(&broadcast.exec_id, 200, PATIENCE).await;
    assert!(got.values().all(|r| r.status == ResultStatus::Failed && r.exit_code == Some(7)));
    assert!(got.values().all(|r| r.stdout == "xxxxxxxxxx"));
    assert!(got.contains_key("sim-00001") && got.contains_key("sim-00200"));

    let canary = command("emulated");
    publish(&js, &Target::Group(GroupName::new("canary").unwrap()), &canary).await;
    let got = results.all_for(&canary.exec_id, 10, PATIENCE).await;
    let mut pcs: Vec<&String> = got.keys().collect();
    pcs.sort();
    assert_eq!(pcs.first().map(|s| s.as_str()), Some("sim-00001"));
    assert_eq!(pcs.last().map(|s| s.as_str()), Some("sim-00010"));

    // A second broadcast that everyone answered means every earlier answer has arrived too (one connection per
    // agent keeps order), so any duplicate of the first would have shown by now.
    let second = command("emulated");
    publish(&js, &Target::All, &second).await;
    results.all_for(&second.exec_id, 200, PATIENCE).await;
    assert_eq!(results.seen_for(&broadcast.exec_id), 200, "a simulated agent answered twice");
    assert_eq!(results.seen_for(&canary.exec_id), 10, "a non-canary agent ran a canary command");

    for pc in ["sim-00001", "sim-00137", "sim-00200"] {
        let (hb, _) = kanade_ops::agents::ping(&client, &PcId::new(pc).unwrap(), Duration::from_secs(5)).await.unwrap();
        assert_eq!(hb.pc_id.as_str(), pc);
    }
    assert!(data_dir.join("sim-00001").join("runs").is_dir(), "each agent keeps its own state");

    sim.stop().await;
    assert!(!data_dir.exists(), "the simulator cleans up its data dirs");
}

#[tokio::test]
async fn bad_simulator_arguments_are_refused() {
    let bad = [
        vec!["simulate", "--count", "0"],
        vec!["simulate", "--count", "200000"],
        vec!["simulate", "--count", "5", "--groups", "a:80%,b:30%"],
        vec!["simulate", "--count", "5", "--exec-time", "soon"],
        vec!["simulate", "--count", "5", "--connections", "0"],
    ];
    for argv in bad {
        assert!(Wrapper::try_parse_from(&argv).is_err(), "{argv:?} was accepted");
    }
    let nats = NatsServer::start();
    let err = Simulation::start(&args(&nats.url(), &["--count", "3", "--id-prefix", "Bad."]))
        .await
        .err()
        .expect("an invalid prefix is refused");
    assert!(format!("{err:#}").contains("--id-prefix"), "{err:#}");
    let err = Simulation::start(&args(&nats.url(), &["--count", "3", "--output-bytes", "100000000"]))
        .await
        .err()
        .expect("output beyond the limit is refused");
    assert!(err.to_string().contains("--output-bytes"), "{err}");
}
