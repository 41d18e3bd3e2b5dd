//! `run_as: user` against a real nats-server, with a real unprivileged account the test creates (`useradd`, so it
//! needs root, as the agent's service runs): the script runs as that account with its supplementary groups and its
//! own environment (nothing of the agent's), can read its staged script but not write beside it, and leaves no
//! staging behind. With no account configured and nobody signed in at the screen (no logind seat here), `user` and
//! `system_gui` runs are skipped `no_user_session`, saying why. Unix only.
#![cfg(unix)]

use std::time::Duration;

use kanade_shared::PcId;
use kanade_shared::subject::Target;
use kanade_shared::wire::{Reason, ResultStatus, RunAs};
use kanade_testkit::accounts::TestAccount;
use kanade_testkit::fleet::{ResultWatch, command, publish};
use kanade_testkit::{NatsServer, TestAgent, agent_config, connect, init_logging};

#[tokio::test]
async fn a_user_run_takes_the_account_its_groups_and_nothing_of_the_agent() {
    init_logging();
    let account = TestAccount::create("user");
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = agent_config(&nats.url(), "run-as-pc", &[], data_dir.path());
    config.run_as_user = Some(account.name.clone());
    let agent = TestAgent::start_with(config, data_dir).await;
    let target = Target::Pc(PcId::new("run-as-pc").unwrap());
    let mut results = ResultWatch::new(&client).await;

    // The agent's own environment holds its trust root and the like: none of it may reach another account.
    let script = r#"echo "uid=$(id -u) user=$(id -un)"
echo "groups=$(id -G)"
echo "home=$HOME logname=$LOGNAME"
env | grep -c '^KANADE_TRUST\|^KANADE_NATS\|^RUST_' || true
cat "$0" >/dev/null && echo "script readable"
if touch "$(dirname "$0")/planted" 2>/dev/null; then echo "staging writable"; else echo "staging read-only"; fi
echo "staged=$(dirname "$0")"
"#;
    let mut user_run = command(script);
    user_run.run_as = RunAs::User;
    publish(&js, &target, &user_run).await;
    let result = results.next_for(&user_run.exec_id, Duration::from_secs(30)).await;
    assert_eq!(result.status, ResultStatus::Ok, "{result:?}");
    let out = result.stdout.as_str();
    assert!(out.contains(&format!("uid={} user={}", account.uid(), account.name)), "{out}");
    let groups: Vec<u32> = out
        .lines()
        .find_map(|l| l.strip_prefix("groups="))
        .expect("groups line")
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(groups.contains(&account.gid_of_group()), "supplementary groups kept: {groups:?} in {out}");
    assert!(!groups.contains(&0), "none of root's groups: {groups:?}");
    assert!(out.contains(&format!("logname={}", account.name)), "{out}");
    assert!(out.lines().any(|l| l.trim() == "0"), "no agent variable leaked: {out}");
    assert!(out.contains("script readable") && out.contains("staging read-only"), "{out}");
    let staged = out.lines().find_map(|l| l.strip_prefix("staged=")).expect("staged line").to_owned();
    assert!(!std::path::Path::new(&staged).exists(), "the staging dir {staged} is removed after the run");

    // The same script as the agent's own account: root, and the agent's private staging under its data dir.
    let system_run = command("id -u");
    publish(&js, &target, &system_run).await;
    let result = results.next_for(&system_run.exec_id, Duration::from_secs(30)).await;
    assert_eq!(result.stdout.trim(), "0", "{result:?}");
    agent.stop().await;
}

#[tokio::test]
async fn with_nobody_at_the_screen_user_and_system_gui_runs_are_skipped_saying_why() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let agent = TestAgent::start(&nats.url(), "headless-pc", &[]).await;
    let target = Target::Pc(PcId::new("headless-pc").unwrap());
    let mut results = ResultWatch::new(&client).await;
    for run_as in [RunAs::User, RunAs::SystemGui] {
        let mut run = command("echo should not run");
        run.run_as = run_as.clone();
        publish(&js, &target, &run).await;
        let result = results.next_for(&run.exec_id, Duration::from_secs(30)).await;
        assert_eq!((result.status, result.reason.clone()), (ResultStatus::Skipped, Some(Reason::NoUserSession)));
        assert!(result.stderr.contains("signed in at this PC's screen"), "{run_as:?}: {}", result.stderr);
        assert!(!result.stdout.contains("should not run"));
    }
    agent.stop().await;
}
