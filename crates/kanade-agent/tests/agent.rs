//! The agent against a real nats-server: exit codes, timeouts that take the whole process tree, kill, unsupported
//! shells, malformed input, output limits and streaming, exactly-once runs, and the outbox across a broker restart.
//!
//! Unix only: the scripts are `sh`, and processes are watched and ended with POSIX signals (`nix`).
#![cfg(unix)]

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Heartbeat, OutputChunk, Reason, ResultStatus, Shell};
use kanade_shared::{GroupName, PcId};
use kanade_testkit::fleet::{ResultWatch, command, publish};
use kanade_testkit::{NatsServer, TestAgent, TestBackend, connect, eventually, init_logging};

const PATIENCE: Duration = Duration::from_secs(20);

/// A server, a client with JetStream set up, one agent `pc-1`, and a watch on every result.
struct World {
    _nats: NatsServer,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    results: ResultWatch,
    _agent: TestAgent,
}

impl World {
    async fn one_agent() -> Self {
        Self::one_agent_with(|_| {}).await
    }

    /// One agent `pc-1` whose test config `adjust` changes first.
    async fn one_agent_with(adjust: impl FnOnce(&mut kanade_shared::config::AgentConfig)) -> Self {
        init_logging();
        let nats = NatsServer::start();
        let (client, js) = connect(&nats.url()).await;
        let data = tempfile::tempdir().unwrap();
        let mut config = kanade_testkit::agent_config(&nats.url(), "pc-1", &[], data.path());
        adjust(&mut config);
        let agent = TestAgent::start_with(config, data).await;
        let results = ResultWatch::new(&client).await;
        Self { _nats: nats, client, js, results, _agent: agent }
    }
}

/// Waits until `pc` reports `n` runs under way (running, or held back by jitter or the queue).
async fn wait_until_running(client: &async_nats::Client, pc: &str, n: u32) {
    let pc = PcId::new(pc).unwrap();
    eventually(&format!("{pc} holds {n} run(s)"), PATIENCE, || {
        let (client, pc) = (client.clone(), pc.clone());
        async move {
            let (hb, _) = kanade_ops::agents::ping(&client, &pc, Duration::from_secs(2)).await.ok()?;
            (hb.running == n).then_some(())
        }
    })
    .await;
}

fn pc(name: &str) -> Target {
    Target::Pc(PcId::new(name).unwrap())
}

fn process_alive(pid: i32) -> bool {
    // Signal 0 checks existence; a zombie has exited and counts as gone once reaped, so look at /proc too.
    let exists = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.split_whitespace().nth(2) == Some("Z"))
        .unwrap_or(false);
    exists && !zombie
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn exit_codes_and_output_come_back() {
    let World { _nats, client: _client, js, mut results, _agent } = World::one_agent().await;

    let ok = command("echo hello; echo oops >&2");
    publish(&js, &pc("pc-1"), &ok).await;
    let result = results.next_for(&ok.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Ok);
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(result.stdout, "hello\n");
    assert_eq!(result.stderr, "oops\n");
    assert!(result.started_at.is_some() && result.finished_at >= result.started_at.unwrap());

    let three = command("exit 3");
    publish(&js, &pc("pc-1"), &three).await;
    let result = results.next_for(&three.exec_id, PATIENCE).await;
    assert_eq!((result.status, result.exit_code), (ResultStatus::Failed, Some(3)));

    let mut bash = command("echo ${BASH_VERSION:+bash}");
    bash.shell = Shell::Bash;
    publish(&js, &pc("pc-1"), &bash).await;
    assert_eq!(results.next_for(&bash.exec_id, PATIENCE).await.stdout, "bash\n");
}

#[tokio::test]
async fn commands_reach_all_groups_and_the_pc_but_no_one_else() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let _a = TestAgent::start(&nats.url(), "pc-a", &["canary"]).await;
    let _b = TestAgent::start(&nats.url(), "pc-b", &["wave1"]).await;
    let mut results = ResultWatch::new(&client).await;

    let all = command("echo all");
    publish(&js, &Target::All, &all).await;
    let got = results.all_for(&all.exec_id, 2, PATIENCE).await;
    assert_eq!(got.len(), 2);

    let canary = command("echo canary");
    publish(&js, &Target::Group(GroupName::new("canary").unwrap()), &canary).await;
    let only_b = command("echo b");
    publish(&js, &pc("pc-b"), &only_b).await;
    assert_eq!(results.next_for(&canary.exec_id, PATIENCE).await.pc_id.as_str(), "pc-a");
    assert_eq!(results.next_for(&only_b.exec_id, PATIENCE).await.pc_id.as_str(), "pc-b");
    // Give a stray delivery time to show up before asserting it did not.
    let later = command("true");
    publish(&js, &Target::All, &later).await;
    results.all_for(&later.exec_id, 2, PATIENCE).await;
    assert_eq!(results.seen_for(&canary.exec_id), 1, "only the canary agent runs a canary command");
    assert_eq!(results.seen_for(&only_b.exec_id), 1, "only pc-b runs its own command");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_tree() {
    let World { _nats, client: _client, js, mut results, _agent } = World::one_agent().await;
    let scratch = tempfile::tempdir().unwrap();
    let pid_file = scratch.path().join("grandchild.pid");

    let mut slow = command(&format!("sleep 1000 & echo $! > {}; sleep 1000", pid_file.display()));
    slow.timeout = Duration::from_millis(1500);
    publish(&js, &pc("pc-1"), &slow).await;
    let result = results.next_for(&slow.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Timeout);
    assert_eq!(result.exit_code, None);
    let grandchild = read_pid(&pid_file);
    eventually("the backgrounded grandchild is gone", Duration::from_secs(5), || async move {
        (!process_alive(grandchild)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn nothing_a_finished_script_started_outlives_it() {
    let World { _nats, client: _client, js, mut results, _agent } = World::one_agent().await;
    let scratch = tempfile::tempdir().unwrap();
    let pid_file = scratch.path().join("leftover.pid");

    let quick = command(&format!("sleep 1000 > /dev/null 2>&1 & echo $! > {}; echo done", pid_file.display()));
    publish(&js, &pc("pc-1"), &quick).await;
    let result = results.next_for(&quick.exec_id, PATIENCE).await;
    assert_eq!((result.status, result.stdout.as_str()), (ResultStatus::Ok, "done\n"));
    let leftover = read_pid(&pid_file);
    eventually("the leftover background process is gone", Duration::from_secs(5), || async move {
        (!process_alive(leftover)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn kill_stops_a_running_script_and_its_children() {
    let World { _nats, client, js, mut results, _agent } = World::one_agent().await;
    let mut started = client.subscribe("events.started.pc-1.*").await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let pid_file = scratch.path().join("child.pid");

    let long = command(&format!("sleep 1000 & echo $! > {}; wait", pid_file.display()));
    publish(&js, &pc("pc-1"), &long).await;
    tokio::time::timeout(PATIENCE, started.next()).await.expect("run started");
    eventually("the child wrote its pid", Duration::from_secs(5), || {
        let exists = pid_file.exists() && std::fs::metadata(&pid_file).map(|m| m.len() > 0).unwrap_or(false);
        async move { exists.then_some(()) }
    })
    .await;

    let killed_on = pcs(kanade_ops::control::kill(
        &client,
        kanade_testkit::fleet().signer(),
        &long.exec_id,
        Duration::from_secs(1),
    )
    .await
    .unwrap());
    assert_eq!(killed_on, vec!["pc-1".to_owned()]);
    let result = results.next_for(&long.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Killed);
    let child = read_pid(&pid_file);
    assert!(!process_alive(child), "the script's child survived the kill");

    // A kill for an exec nobody runs is answered by nobody and harms nothing.
    let none = kanade_ops::control::kill(
        &client,
        kanade_testkit::fleet().signer(),
        &kanade_shared::ExecId::generate(),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_shell_the_host_lacks_is_skipped_not_hung() {
    let World { _nats, client: _client, js, mut results, _agent } = World::one_agent().await;

    for shell in [Shell::Powershell, Shell::Cmd, Shell::Other("python9".into())] {
        let mut cmd = command("Write-Output hi");
        cmd.shell = shell.clone();
        publish(&js, &pc("pc-1"), &cmd).await;
        let result = results.next_for(&cmd.exec_id, PATIENCE).await;
        assert_eq!(result.status, ResultStatus::Skipped, "{shell}");
        assert_eq!(result.reason, Some(Reason::UnsupportedShell), "{shell}");
    }
}

#[tokio::test]
async fn expired_and_invalid_commands_are_skipped_with_a_reason() {
    let World { _nats, client: _client, js, mut results, _agent } = World::one_agent().await;

    let mut expired = command("echo too late");
    expired.deadline = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    publish(&js, &pc("pc-1"), &expired).await;
    assert_eq!(results.next_for(&expired.exec_id, PATIENCE).await.reason, Some(Reason::Expired));

    let mut zero = command("echo never");
    zero.timeout = Duration::ZERO;
    publish(&js, &pc("pc-1"), &zero).await;
    assert_eq!(results.next_for(&zero.exec_id, PATIENCE).await.reason, Some(Reason::Invalid));
}

#[tokio::test]
async fn malformed_messages_are_counted_and_change_nothing() {
    let World { _nats, client, js, mut results, _agent } = World::one_agent().await;

    let valid = command("echo fine");
    let wrong_subject = serde_json::to_vec(&valid).unwrap();
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("commands.pc.pc-1.x", b"{not json".to_vec()),
        ("commands.all.x", vec![0xff; 64]),
        ("commands.pc.pc-1.x", br#"{"exec_id":"../../etc","job_id":"x","shell":"sh","script":"id","timeout_ms":1,"issued_at":"2026-01-01T00:00:00Z"}"#.to_vec()),
        ("commands.pc.pc-1.x", b"[]".to_vec()),
        ("commands.pc.pc-1.x", vec![b'x'; 900 * 1024]),
        // A valid command on a subject whose job does not match its own.
        ("commands.pc.pc-1.some-other-job", wrong_subject),
        ("kill.NOT-VALID", Vec::new()),
    ];
    let count = garbage.len() as u64;
    for (subject, payload) in garbage {
        client.publish(subject, payload.into()).await.unwrap();
    }
    client.flush().await.unwrap();

    let pc1 = PcId::new("pc-1").unwrap();
    let heartbeat = eventually("the agent counted every malformed message", PATIENCE, || {
        let client = client.clone();
        let pc1 = pc1.clone();
        async move {
            let reply = client.request(subject::ping(&pc1), "".into()).await.ok()?;
            let hb: Heartbeat = serde_json::from_slice(&reply.payload).ok()?;
            (hb.malformed_messages >= count).then_some(hb)
        }
    })
    .await;
    // `EXEC` stores what is published on command subjects, garbage included, so the start-up catch-up may read a
    // malformed command a second time; it is counted again, never acted on.
    assert!(heartbeat.malformed_messages <= 2 * count, "{} malformed counted", heartbeat.malformed_messages);

    publish(&js, &pc("pc-1"), &valid).await;
    assert_eq!(results.next_for(&valid.exec_id, PATIENCE).await.stdout, "fine\n");
}

#[tokio::test]
async fn output_is_capped_and_streamed_before_the_result() {
    let World { _nats, client, js, mut results, _agent } = World::one_agent_with(|c| c.output_limit_bytes = 1000).await;

    // Still running when the agent announces it: a quicker run streams nothing, its result carries the output.
    let chatty = command("i=0; while [ $i -lt 500 ]; do echo line-$i; i=$((i+1)); done; echo tail >&2; sleep 2");
    let mut chunks = client.subscribe(subject::output(&PcId::new("pc-1").unwrap(), &chatty.exec_id)).await.unwrap();
    client.flush().await.unwrap();
    publish(&js, &pc("pc-1"), &chatty).await;
    let result = results.next_for(&chatty.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Ok);
    assert_eq!(result.stdout.len(), 1000);
    assert!(result.stdout_truncated && !result.stderr_truncated);
    assert!(result.stdout.starts_with("line-0\nline-1\n"));
    assert_eq!(result.stderr, "tail\n");

    let mut streamed = String::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(200), chunks.next()).await {
        let chunk: OutputChunk = serde_json::from_slice(&message.payload).unwrap();
        if chunk.stream == kanade_shared::wire::OutputStream::Stdout {
            streamed.push_str(&chunk.data);
        }
    }
    assert_eq!(streamed, result.stdout, "live chunks carry the same capped output");
}

#[tokio::test]
async fn a_command_runs_once_even_when_delivered_again_or_after_a_restart() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let agent = TestAgent::start(&nats.url(), "pc-1", &[]).await;
    let mut results = ResultWatch::new(&client).await;
    let scratch = tempfile::tempdir().unwrap();
    let counter = scratch.path().join("runs");

    let once = command(&format!("echo run >> {}", counter.display()));
    publish(&js, &pc("pc-1"), &once).await;
    results.next_for(&once.exec_id, PATIENCE).await;
    // The same command again, as a redelivery or a replay would bring it, on a core subject the broker does not
    // de-duplicate.
    let body = serde_json::to_vec(&once).unwrap();
    client.publish(subject::command(&pc("pc-1"), &once.job_id), body.clone().into()).await.unwrap();

    let config = agent.config.clone();
    let data = agent.stop().await;
    let agent = TestAgent::start_with(config, data).await;
    client.publish(subject::command(&pc("pc-1"), &once.job_id), body.into()).await.unwrap();
    let marker = command("true");
    publish(&js, &pc("pc-1"), &marker).await;
    results.next_for(&marker.exec_id, PATIENCE).await;
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "run\n", "the script ran more than once");
    drop(agent);
}

#[tokio::test]
async fn a_result_survives_a_broker_restart_and_arrives_exactly_once() {
    init_logging();
    let mut nats = NatsServer::start();
    let url = nats.url();
    let (client, js) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let agent = TestAgent::start(&url, "pc-1", &[]).await;
    let mut started = client.subscribe("events.started.pc-1.*").await.unwrap();
    client.flush().await.unwrap();

    let slow = command("sleep 2; echo survived");
    publish(&js, &pc("pc-1"), &slow).await;
    tokio::time::timeout(PATIENCE, started.next()).await.expect("run started");
    drop(started);
    drop(client);

    // The broker dies while the script runs, and comes back on the same port and store after the script ended,
    // so the agent has to keep the result in its outbox and publish it on reconnect.
    nats.kill();
    let outbox = agent.data_dir().join("outbox");
    eventually("the result is waiting in the outbox", PATIENCE, || {
        let waiting = std::fs::read_dir(&outbox)
            .map(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "json")))
            .unwrap_or(false);
        async move { waiting.then_some(()) }
    })
    .await;
    nats.start_again();

    let (client, js) = connect(&url).await;
    let stream = js.get_stream(kanade_shared::resources::STREAM_RESULTS).await.unwrap();
    let result_subject = subject::result(&PcId::new("pc-1").unwrap(), &slow.exec_id);
    let message = eventually("the result reached RESULTS", PATIENCE, || {
        let (stream, result_subject) = (stream.clone(), result_subject.clone());
        async move { stream.direct_get_last_for_subject(result_subject).await.ok() }
    })
    .await;
    let result: kanade_shared::wire::ExecResult = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!((result.status, result.stdout.as_str()), (ResultStatus::Ok, "survived\n"));
    eventually("the outbox is empty", PATIENCE, || {
        let empty = std::fs::read_dir(&outbox)
            .map(|entries| !entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "json")))
            .unwrap_or(false);
        async move { empty.then_some(()) }
    })
    .await;
    let info = js.get_stream(kanade_shared::resources::STREAM_RESULTS).await.unwrap();
    let subjects = info.info_with_subjects(&result_subject).await.unwrap();
    let count: usize = subjects.map(|s| s.map(|(_, n)| n).unwrap_or(0)).collect::<Vec<_>>().await.iter().sum();
    assert_eq!(count, 1, "the result was stored more than once");

    // And the backend, which lost its broker too, projects it exactly once.
    let path = format!("/api/results?exec_id={}", slow.exec_id);
    let rows = eventually("the result reached the database", PATIENCE, || async {
        let (_, body) = backend.get(&path).await;
        body["items"].as_array().filter(|rows| !rows.is_empty()).cloned()
    })
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["stdout"], "survived\n");
    assert_eq!(backend.db.count_results().await.unwrap(), 1);
    drop(client);
    drop(agent);
}

#[tokio::test]
async fn ping_answers_with_a_fresh_heartbeat() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _js) = connect(&nats.url()).await;
    let _agent = TestAgent::start(&nats.url(), "pc-1", &["canary", "wave1"]).await;
    let (hb, rtt) =
        kanade_ops::agents::ping(&client, &PcId::new("pc-1").unwrap(), Duration::from_secs(2)).await.unwrap();
    assert!(rtt < Duration::from_secs(2));
    assert_eq!(hb.agent_version, kanade_agent::BUILD_VERSION);
    assert_eq!(hb.os, std::env::consts::OS);
    assert_eq!(hb.hostname, "pc-1.test");
    assert_eq!(hb.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(), ["canary", "wave1"]);
    assert!(hb.rss_bytes > 0, "the agent reports its own memory");

    let mut beats = client.subscribe("heartbeat.pc-1").await.unwrap();
    let beat = tokio::time::timeout(PATIENCE, beats.next()).await.unwrap().unwrap();
    let beat: Heartbeat = serde_json::from_slice(&beat.payload).unwrap();
    assert_eq!(beat.pc_id.as_str(), "pc-1");

    let err =
        kanade_ops::agents::ping(&client, &PcId::new("nobody").unwrap(), Duration::from_secs(2)).await.unwrap_err();
    assert!(err.to_string().contains("no agent `nobody` is connected"), "{err}");
}

#[tokio::test]
async fn an_agent_that_was_away_runs_what_it_missed_exactly_once() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let mut results = ResultWatch::new(&client).await;
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("runs");

    let agent = TestAgent::start(&nats.url(), "pc-1", &["canary"]).await;
    let config = agent.config.clone();
    let data = agent.stop().await;

    // Published while the agent is away.
    let to_pc = command(&format!("echo pc >> {}", log.display()));
    let to_group = command(&format!("echo group >> {}", log.display()));
    let to_all = command(&format!("echo all >> {}", log.display()));
    let mut expired = command(&format!("echo expired >> {}", log.display()));
    expired.deadline = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    let elsewhere = command(&format!("echo elsewhere >> {}", log.display()));
    publish(&js, &pc("pc-1"), &to_pc).await;
    publish(&js, &Target::Group(GroupName::new("canary").unwrap()), &to_group).await;
    publish(&js, &Target::All, &to_all).await;
    publish(&js, &pc("pc-1"), &expired).await;
    publish(&js, &pc("pc-2"), &elsewhere).await;

    let agent = TestAgent::start_with(config.clone(), data).await;
    for missed in [&to_pc, &to_group, &to_all] {
        assert_eq!(results.next_for(&missed.exec_id, PATIENCE).await.status, ResultStatus::Ok);
    }
    assert_eq!(results.next_for(&expired.exec_id, PATIENCE).await.reason, Some(Reason::Expired));

    // Back again: the stream still holds every command, and none of them runs a second time.
    let data = agent.stop().await;
    std::fs::remove_file(data.path().join("catchup.json")).unwrap();
    let agent = TestAgent::start_with(config, data).await;
    let position = agent.data_dir().join("catchup.json");
    eventually("the agent caught up again", PATIENCE, || {
        let done = position.exists();
        async move { done.then_some(()) }
    })
    .await;
    let marker = command("true");
    publish(&js, &pc("pc-1"), &marker).await;
    results.next_for(&marker.exec_id, PATIENCE).await;
    let mut lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["all", "group", "pc"]);
    assert_eq!(results.seen_for(&elsewhere.exec_id), 0);
    assert_eq!(results.seen_for(&to_pc.exec_id), 1);
}

/// Waits until the catch-up positions recorded in `data_dir` have every filter of `filters` past stream sequence
/// `seq`.
async fn wait_until_caught_up_past(data_dir: &Path, filters: &[String], seq: u64) {
    let file = data_dir.join("catchup.json");
    eventually(&format!("{filters:?} caught up past {seq}"), PATIENCE, || {
        let recorded: Option<serde_json::Value> =
            std::fs::read(&file).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let done = recorded.is_some_and(|recorded| {
            filters.iter().all(|filter| recorded["filters"][filter].as_u64().is_some_and(|at| at > seq))
        });
        async move { done.then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_group_added_later_reads_its_commands_from_the_start() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let mut results = ResultWatch::new(&client).await;
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("runs");
    let (early, late) = (GroupName::new("early").unwrap(), GroupName::new("late").unwrap());

    // A standing command for group `late`, published before this PC is in it (as a once-per-PC schedule does).
    let mut standing = command(&format!("echo late >> {}", log.display()));
    standing.job_id = kanade_shared::JobId::new("welcome-pack").unwrap();
    publish(&js, &Target::Group(late.clone()), &standing).await;
    let mut exec = js.get_stream(kanade_shared::resources::STREAM_EXEC).await.unwrap();
    let standing_seq = exec.info().await.unwrap().state.last_sequence;
    // Then one on each filter the agent has from the start, so each of them is caught up past the standing command
    // (a single position for all filters would skip it once the group is added).
    let later = [Target::All, pc("pc-1"), Target::Group(early.clone())].map(|target| (target, command("true")));
    for (target, later) in &later {
        publish(&js, target, later).await;
    }

    let data = tempfile::tempdir().unwrap();
    let config = kanade_testkit::agent_config(&nats.url(), "pc-1", &["early"], data.path());
    let agent = TestAgent::start_with(config.clone(), data).await;
    for (_, later) in &later {
        results.next_for(&later.exec_id, PATIENCE).await;
    }
    let own = later.iter().map(|(target, _)| subject::commands_for(target)).collect::<Vec<_>>();
    wait_until_caught_up_past(agent.data_dir(), &own, standing_seq).await;
    let data = agent.stop().await;
    assert!(!log.exists(), "an agent outside group `late` ran its command");

    // The operator adds the group (the agent's renewed credential carries it): its filter has no position yet and
    // is read from the start.
    let mut joined = config;
    joined.groups.push(late.clone());
    let creds = data.path().join(kanade_agent::CREDS_FILE);
    kanade_testkit::fleet().issue_agent(
        "pc-1",
        &["early", "late"],
        kanade_testkit::security::TEST_CREDENTIAL_TTL,
        &creds,
    );
    let agent = TestAgent::start_with(joined.clone(), data).await;
    let result = results.next_for(&standing.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Ok);
    let late_filter = subject::commands_for(&Target::Group(late.clone()));
    wait_until_caught_up_past(agent.data_dir(), &[late_filter], standing_seq - 1).await;
    let data = agent.stop().await;

    // Restarted once more, it reads `late` from its own position on and runs nothing again. A marker published
    // to `late` while it is away comes back through the same read, after where the standing command is.
    let marker = command("true");
    publish(&js, &Target::Group(late), &marker).await;
    let agent = TestAgent::start_with(joined, data).await;
    results.next_for(&marker.exec_id, PATIENCE).await;
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "late\n", "the standing command ran more than once");
    assert_eq!(results.seen_for(&standing.exec_id), 1);
    drop(agent);
}

/// A versioned command for job `job`, as an exec of a catalogued job would publish it.
fn versioned(job: &str, version: &str, script: &str) -> kanade_shared::wire::Command {
    let mut cmd = command(script);
    cmd.job_id = kanade_shared::JobId::new(job).unwrap();
    cmd.version = version.to_owned();
    cmd
}

/// Sets `job`'s current version as an operator does: signed, in `script_current`.
async fn set_current(js: &async_nats::jetstream::Context, job: &str, version: &str) {
    let job = kanade_shared::JobId::new(job).unwrap();
    kanade_ops::control::set_current(&js.client(), kanade_testkit::fleet().signer(), &job, version).await.unwrap();
}

#[tokio::test]
async fn kill_wakes_a_run_waiting_on_its_jitter_and_revoke_then_unrevoke_gate_new_runs() {
    let World { _nats, client, js, mut results, _agent } = World::one_agent().await;
    let scratch = tempfile::tempdir().unwrap();
    let ran = |name: &str| scratch.path().join(name);
    let job = kanade_shared::JobId::new("patch").unwrap();

    let mut slow_start = versioned("patch", "1.0", &format!("touch {}", ran("a").display()));
    slow_start.jitter = Some(Duration::from_secs(30));
    publish(&js, &pc("pc-1"), &slow_start).await;
    let killed = pcs(kanade_ops::control::kill(
        &client,
        kanade_testkit::fleet().signer(),
        &slow_start.exec_id,
        Duration::from_millis(500),
    )
    .await
    .unwrap());
    assert_eq!(killed, vec!["pc-1".to_owned()], "a run waiting on its jitter can be killed");
    let result = results.next_for(&slow_start.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Killed);
    assert!(result.started_at.is_none());

    kanade_ops::control::set_revoked(&client, kanade_testkit::fleet().signer(), &job, true).await.unwrap();
    let refused = versioned("patch", "1.0", &format!("touch {}", ran("b").display()));
    publish(&js, &pc("pc-1"), &refused).await;
    assert_eq!(results.next_for(&refused.exec_id, PATIENCE).await.reason, Some(Reason::Revoked));

    kanade_ops::control::set_revoked(&client, kanade_testkit::fleet().signer(), &job, false).await.unwrap();
    let allowed = versioned("patch", "1.0", &format!("touch {}", ran("c").display()));
    publish(&js, &pc("pc-1"), &allowed).await;
    assert_eq!(results.next_for(&allowed.exec_id, PATIENCE).await.status, ResultStatus::Ok);
    assert_eq!((ran("a").exists(), ran("b").exists(), ran("c").exists()), (false, false, true));
}

#[tokio::test]
async fn a_revocation_during_the_jitter_is_seen_before_the_run_starts() {
    let World { _nats, client, js, mut results, _agent } = World::one_agent().await;
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    let mut held = versioned("patch", "1.0", &format!("touch {}", marker.display()));
    // Long enough that only the revocation can end the wait within the test's patience.
    held.jitter = Some(Duration::from_secs(3600));
    publish(&js, &pc("pc-1"), &held).await;
    // The agent holds the run back (it counts it as running) for up to an hour of jitter; then the job is revoked.
    wait_until_running(&client, "pc-1", 1).await;
    kanade_ops::control::set_revoked(
        &client,
        kanade_testkit::fleet().signer(),
        &kanade_shared::JobId::new("patch").unwrap(),
        true,
    )
    .await
    .unwrap();
    let result = results.next_for(&held.exec_id, PATIENCE).await;
    assert_eq!((result.status, result.reason), (ResultStatus::Skipped, Some(Reason::Revoked)));
    assert!(!marker.exists(), "a revoked run started");
}

#[tokio::test]
async fn an_older_version_is_superseded_and_the_current_one_runs() {
    let World { _nats, client: _client, js, mut results, _agent } = World::one_agent().await;
    set_current(&js, "deploy", "2.0").await;
    let stale = versioned("deploy", "1.0", "echo old");
    publish(&js, &pc("pc-1"), &stale).await;
    assert_eq!(results.next_for(&stale.exec_id, PATIENCE).await.reason, Some(Reason::Superseded));
    let current = versioned("deploy", "2.0", "echo new");
    publish(&js, &pc("pc-1"), &current).await;
    assert_eq!(results.next_for(&current.exec_id, PATIENCE).await.stdout, "new\n");
}

#[tokio::test]
async fn max_local_concurrent_queues_runs_in_order_and_a_queued_run_can_be_killed() {
    let World { _nats, client, js, mut results, _agent } = World::one_agent_with(|c| c.max_local_concurrent = 1).await;
    let scratch = tempfile::tempdir().unwrap();
    let gate = scratch.path().join("go");
    let queued_marker = scratch.path().join("queued-ran");

    let mut started = client.subscribe("events.started.pc-1.*").await.unwrap();
    let first = command(&format!("while [ ! -f {} ]; do sleep 0.05; done; echo first", gate.display()));
    publish(&js, &pc("pc-1"), &first).await;
    tokio::time::timeout(PATIENCE, started.next()).await.expect("first run started");
    let queued = command(&format!("touch {}", queued_marker.display()));
    publish(&js, &pc("pc-1"), &queued).await;
    let third = command("echo third");
    publish(&js, &pc("pc-1"), &third).await;

    let killed = pcs(kanade_ops::control::kill(
        &client,
        kanade_testkit::fleet().signer(),
        &queued.exec_id,
        Duration::from_millis(500),
    )
    .await
    .unwrap());
    assert_eq!(killed, vec!["pc-1".to_owned()]);
    let result = results.next_for(&queued.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Killed);
    assert!(!queued_marker.exists(), "a killed queued run started anyway");
    assert_eq!(results.seen_for(&third.exec_id), 0, "the third run waits for the one slot");

    std::fs::write(&gate, "").unwrap();
    assert_eq!(results.next_for(&first.exec_id, PATIENCE).await.stdout, "first\n");
    assert_eq!(results.next_for(&third.exec_id, PATIENCE).await.stdout, "third\n");
}

#[tokio::test]
async fn kill_by_job_stops_its_running_and_queued_runs_and_nothing_else() {
    let World { _nats, client, js, mut results, _agent } = World::one_agent_with(|c| c.max_local_concurrent = 2).await;
    let mut started = client.subscribe("events.started.pc-1.*").await.unwrap();
    let running = versioned("patch", "1.0", "sleep 30");
    // Long enough to be announced: the test waits for its `events.started`.
    let other = versioned("other", "1.0", "sleep 3; echo other");
    let queued = versioned("patch", "1.0", "echo never");
    set_current(&js, "patch", "1.0").await;
    set_current(&js, "other", "1.0").await;
    for command in [&running, &other] {
        publish(&js, &pc("pc-1"), command).await;
        tokio::time::timeout(PATIENCE, started.next()).await.expect("run started");
    }
    // Both slots are taken: the second run of `patch` waits in the queue.
    publish(&js, &pc("pc-1"), &queued).await;
    wait_until_running(&client, "pc-1", 3).await;

    let job = kanade_shared::JobId::new("patch").unwrap();
    let killed =
        kanade_ops::control::kill_job(&client, kanade_testkit::fleet().signer(), &job, Duration::from_millis(500))
            .await
            .unwrap();
    let mut execs: Vec<String> = killed.iter().map(|ack| ack.exec_id.to_string()).collect();
    execs.sort();
    let mut want = vec![running.exec_id.to_string(), queued.exec_id.to_string()];
    want.sort();
    assert_eq!(execs, want, "both runs of the job, and only those");
    assert_eq!(results.next_for(&running.exec_id, PATIENCE).await.status, ResultStatus::Killed);
    assert_eq!(results.next_for(&queued.exec_id, PATIENCE).await.status, ResultStatus::Killed);
    assert_eq!(results.next_for(&other.exec_id, PATIENCE).await.stdout, "other\n", "another job is untouched");
}

#[tokio::test]
async fn a_run_still_waiting_when_the_agent_stops_is_taken_up_again_after_the_restart() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let agent = TestAgent::start(&nats.url(), "pc-1", &[]).await;
    let mut results = ResultWatch::new(&client).await;
    // An hour of jitter: the run is certainly still waiting when the agent stops.
    let mut held = command("echo ran");
    held.jitter = Some(Duration::from_secs(3600));
    held.deadline = Some(chrono::Utc::now() + chrono::Duration::hours(2));
    publish(&js, &pc("pc-1"), &held).await;
    wait_until_running(&client, "pc-1", 1).await;
    let config = agent.config.clone();
    let data = agent.stop().await;
    assert!(!data.path().join("runs").join(held.exec_id.as_str()).exists(), "the claim was given back");

    // After the restart the agent reads the command back and holds it again; a kill now gets its one result.
    let _agent = TestAgent::start_with(config, data).await;
    wait_until_running(&client, "pc-1", 1).await;
    assert_eq!(results.seen_for(&held.exec_id), 0, "stopping produced no result");
    let killed = pcs(kanade_ops::control::kill(
        &client,
        kanade_testkit::fleet().signer(),
        &held.exec_id,
        Duration::from_millis(500),
    )
    .await
    .unwrap());
    assert_eq!(killed, vec!["pc-1".to_owned()]);
    assert_eq!(results.next_for(&held.exec_id, PATIENCE).await.status, ResultStatus::Killed);
}

/// The PCs that confirmed a kill.
fn pcs(acks: Vec<kanade_shared::wire::KillAck>) -> Vec<String> {
    acks.into_iter().map(|ack| ack.pc_id.to_string()).collect()
}

/// The outbox over its cap while the broker is away: every result still arrives, those over the cap without their
/// output (and saying so), and the agent reports the state in its heartbeat once the backlog is gone.
#[tokio::test]
async fn over_its_cap_the_outbox_keeps_every_result_and_drops_only_output() {
    init_logging();
    let mut nats = NatsServer::start();
    let url = nats.url();
    let (client, js) = connect(&url).await;
    let data = tempfile::tempdir().unwrap();
    let mut config = kanade_testkit::agent_config(&url, "pc-1", &[], data.path());
    config.outbox_max_bytes = 64 * 1024;
    let agent = TestAgent::start_with(config, data).await;
    let mut started = client.subscribe("events.started.pc-1.*").await.unwrap();
    client.flush().await.unwrap();
    let big: Vec<_> = (0..3).map(|_| command("sleep 2; head -c 40000 /dev/zero | tr '\\0' x")).collect();
    for c in &big {
        publish(&js, &pc("pc-1"), c).await;
    }
    for _ in &big {
        tokio::time::timeout(PATIENCE, started.next()).await.expect("run started");
    }
    drop((started, client));
    nats.kill();
    let outbox = agent.data_dir().join("outbox");
    eventually("three results wait in the outbox", PATIENCE, || {
        let n = std::fs::read_dir(&outbox)
            .map(|entries| entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
            .unwrap_or(0);
        async move { (n == 3).then_some(()) }
    })
    .await;
    nats.start_again();

    // Read back from `RESULTS`, not a core subscription: the agent may reconnect and drain its outbox before a
    // subscription made now would exist (regression: this test missed results when the agent was quicker).
    let (client, js) = connect(&url).await;
    let stream = js.get_stream(kanade_shared::resources::STREAM_RESULTS).await.unwrap();
    let mut full_output = 0;
    for c in &big {
        let result_subject = subject::result(&PcId::new("pc-1").unwrap(), &c.exec_id);
        let message = eventually("the result reached RESULTS", PATIENCE, || {
            let (stream, result_subject) = (stream.clone(), result_subject.clone());
            async move { stream.direct_get_last_for_subject(result_subject).await.ok() }
        })
        .await;
        let result: kanade_shared::wire::ExecResult = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!((result.status, result.exit_code), (ResultStatus::Ok, Some(0)), "{}", result.stderr);
        if result.stdout.len() == 40_000 {
            full_output += 1;
        } else {
            assert!(result.stdout.is_empty() && result.stdout_truncated, "{result:?}");
            assert!(result.stderr.contains("outbox is full"), "{}", result.stderr);
        }
    }
    assert_eq!(full_output, 1, "64 KiB holds one 40 KB result with its output");
    let beat = eventually("a heartbeat with the outbox empty", PATIENCE, || async {
        let pc = PcId::new("pc-1").unwrap();
        let (beat, _) = kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok()?;
        (beat.outbox_pending == 0).then_some(beat)
    })
    .await;
    assert_eq!((beat.outbox_bytes, beat.outbox_full), (0, false));
    drop(agent);
}

/// Unreadable outbox entries (truncated by a crash, or garbage) are moved aside with a log line; the others drain.
/// A damaged entry whose name says whose result it was is reported as `failed` / `result_lost` from the run
/// ledger's record, not dropped.
#[tokio::test]
async fn corrupt_and_truncated_outbox_entries_are_set_aside_and_the_rest_drain() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _js) = connect(&nats.url()).await;
    let data = tempfile::tempdir().unwrap();
    let config = kanade_testkit::agent_config(&nats.url(), "pc-1", &[], data.path());
    let (outbox, runs) = (data.path().join("outbox"), data.path().join("runs"));
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::create_dir_all(&runs).unwrap();
    let pc = PcId::new("pc-1").unwrap();
    let result_of = |c: &kanade_shared::wire::Command, stdout: &str| {
        let mut result =
            kanade_shared::wire::ExecResult::not_started(c, &pc, ResultStatus::Ok, None, chrono::Utc::now());
        result.stdout = stdout.to_owned();
        result
    };
    let good: Vec<_> = (0..2).map(|_| command("true")).collect();
    for (i, c) in good.iter().enumerate() {
        let result = result_of(c, &format!("kept {i}"));
        let name = format!("{:020}-{}.json", 1000 + i * 2, result.result_id);
        std::fs::write(outbox.join(name), serde_json::to_vec(&result).unwrap()).unwrap();
    }
    // A run whose result was written, then damaged on disk: the ledger knows the run.
    let lost = command("true");
    let result = result_of(&lost, "never seen");
    let record = serde_json::json!({
        "exec_id": lost.exec_id, "job_id": lost.job_id, "version": "", "started_at": result.finished_at,
        "finished_at": result.finished_at,
    });
    std::fs::write(runs.join(lost.exec_id.as_str()), record.to_string()).unwrap();
    let body = serde_json::to_vec(&result).unwrap();
    let damaged = format!("{:020}-{}", 1001, result.result_id);
    std::fs::write(outbox.join(format!("{damaged}.json")), &body[..body.len() / 2]).unwrap();
    std::fs::write(outbox.join("00000000000000000999-garbage.json"), b"\xff\xfe not json at all").unwrap();

    let mut results = ResultWatch::new(&client).await;
    let agent = TestAgent::start_with(config, data).await;
    for (i, c) in good.iter().enumerate() {
        assert_eq!(results.next_for(&c.exec_id, PATIENCE).await.stdout, format!("kept {i}"));
    }
    let reported = results.next_for(&lost.exec_id, PATIENCE).await;
    assert_eq!((reported.status, reported.reason.clone()), (ResultStatus::Failed, Some(Reason::ResultLost)));
    assert!(reported.stderr.contains("could not be read back"), "{}", reported.stderr);
    let outbox = agent.data_dir().join("outbox");
    eventually("only the damaged files are left", PATIENCE, || {
        let mut left: Vec<String> = std::fs::read_dir(&outbox)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let expected = ["00000000000000000999-garbage.corrupt".to_owned(), format!("{damaged}.corrupt")];
        async move { (left == expected).then_some(()) }
    })
    .await;
    drop(agent);
}

#[tokio::test]
async fn a_quick_run_announces_nothing_but_its_result_and_a_long_one_its_start_and_output_too() {
    let World { _nats, client, js, mut results, _agent } = World::one_agent().await;
    let mut started = client.subscribe("events.started.pc-1.*").await.unwrap();
    let mut chunks = client.subscribe("output.pc-1.*").await.unwrap();
    client.flush().await.unwrap();

    let quick = command("echo quick");
    publish(&js, &pc("pc-1"), &quick).await;
    let result = results.next_for(&quick.exec_id, PATIENCE).await;
    assert_eq!((result.status, result.stdout.as_str()), (ResultStatus::Ok, "quick\n"));
    assert!(result.started_at.is_some(), "the result says when it started");

    let slow = command("echo slow; sleep 2");
    publish(&js, &pc("pc-1"), &slow).await;
    let event = tokio::time::timeout(PATIENCE, started.next()).await.expect("the long run is announced").unwrap();
    assert_eq!(results.seen_for(&slow.exec_id), 0, "announced while it runs");
    let event: kanade_shared::wire::RunStarted = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(event.exec_id, slow.exec_id, "the quick run sent no started event");
    let chunk = tokio::time::timeout(PATIENCE, chunks.next()).await.expect("the long run's output").unwrap();
    assert_eq!(chunk.subject.as_str(), subject::output(&PcId::new("pc-1").unwrap(), &slow.exec_id));
    let chunk: OutputChunk = serde_json::from_slice(&chunk.payload).unwrap();
    assert_eq!((chunk.seq, chunk.data.as_str()), (0, "slow\n"), "held back until the announcement, then sent");

    let result = results.next_for(&slow.exec_id, PATIENCE).await;
    assert_eq!(result.stdout, "slow\n");
    // The event says when the run really started, not when it was announced a second later.
    let lag = result.started_at.unwrap() - event.started_at;
    assert!(lag >= chrono::Duration::zero() && lag < chrono::Duration::milliseconds(500), "{lag}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), started.next()).await.is_err(),
        "one event, the long run's"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), chunks.next()).await.is_err(),
        "one chunk, the long run's"
    );
}

#[tokio::test]
async fn a_run_that_starts_at_once_is_recorded_in_one_write_and_a_queued_one_in_two() {
    let World { _nats, client, js, mut results, _agent: agent } =
        World::one_agent_with(|c| c.max_local_concurrent = 1).await;
    let runs = agent.data_dir().join("runs");
    // The second write, `started` after `claimed`, goes through `<exec>.tmp`: a directory there makes it fail, and
    // the run is then not started. A run claimed straight into `started` never writes it.
    let block_second_write =
        |c: &kanade_shared::wire::Command| std::fs::create_dir(runs.join(format!("{}.tmp", c.exec_id))).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let gate = scratch.path().join("go");

    let at_once = command(&format!(
        "cat {}/$KANADE_EXEC_ID; while [ ! -f {} ]; do sleep 0.05; done",
        runs.display(),
        gate.display()
    ));
    block_second_write(&at_once);
    publish(&js, &pc("pc-1"), &at_once).await;
    wait_until_running(&client, "pc-1", 1).await;
    let queued = command("echo queued");
    block_second_write(&queued);
    publish(&js, &pc("pc-1"), &queued).await;
    wait_until_running(&client, "pc-1", 2).await;
    assert_eq!(std::fs::read(runs.join(queued.exec_id.as_str())).unwrap(), b"claimed\n", "queued behind the one slot");

    std::fs::write(&gate, "").unwrap();
    let result = results.next_for(&at_once.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Ok, "{}", result.stderr);
    let record: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
    assert_eq!(record["exec_id"], at_once.exec_id.as_str(), "the script ran with its start on record: {record}");
    assert!(record["started_at"].is_string() && record.get("finished_at").is_none(), "{record}");

    let result = results.next_for(&queued.exec_id, PATIENCE).await;
    assert_eq!(result.status, ResultStatus::Failed, "the queued run needed its second write");
    assert!(result.stderr.contains("could not record the run's start"), "{}", result.stderr);
}
