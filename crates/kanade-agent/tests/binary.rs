//! The real `kanade-agent` binary as a child process: runs with no config file, answers pings, stops cleanly on
//! SIGTERM, and refuses bad configuration with a clear message.
//!
//! Unix only: the scripts are `sh`, and processes are watched and ended with POSIX signals (`nix`).
#![cfg(unix)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kanade_shared::PcId;
use kanade_testkit::{NatsServer, connect, eventually, init_logging};

fn agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kanade-agent"));
    cmd.env_remove("KANADE_AGENT_CONFIG")
        .env_remove("KANADE_LOG_DIR")
        .env_remove("RUST_LOG")
        .env("KANADE_LOG", "info")
        .env("KANADE_NATS_CA", kanade_testkit::fleet().ca())
        .env("KANADE_TRUST_ROOT", kanade_testkit::fleet().trust_root().to_string())
        .stdin(Stdio::null());
    cmd
}

fn terminate(child: &Child) {
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
}

#[tokio::test]
async fn runs_from_environment_alone_and_stops_on_sigterm() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _js) = connect(&nats.url()).await;
    let data = tempfile::tempdir().unwrap();
    kanade_testkit::fleet().agent_env("bin-pc", &["canary", "wave1"], data.path());
    let mut child = agent()
        .env("KANADE_NATS_URL", nats.url())
        .env("KANADE_AGENT_ID", "bin-pc")
        .env("KANADE_AGENT_GROUPS", "canary,wave1")
        .env("KANADE_AGENT_DATA_DIR", data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let pc = PcId::new("bin-pc").unwrap();
    let hb = eventually("the agent binary answers a ping", Duration::from_secs(20), || {
        let (client, pc) = (client.clone(), pc.clone());
        async move { kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok() }
    })
    .await
    .0;
    assert_eq!(hb.groups.len(), 2);
    assert!(data.path().join("outbox").is_dir() && data.path().join("runs").is_dir());

    terminate(&child);
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut log = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
        (status, log)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "agent exited with {:?}", status.0);
    assert!(status.1.contains("connected to NATS"), "connection state changes are logged:\n{}", status.1);
    assert!(status.1.contains("kanade-agent stopped"));
}

#[test]
fn bad_configuration_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[agent]\nid = \"a\"\nheartbeat = \"5s\"\n").unwrap();
    let tiny_outbox = dir.path().join("outbox.toml");
    std::fs::write(&tiny_outbox, "[agent]\noutbox_max_bytes = 10\n").unwrap();
    let negative_outbox = dir.path().join("negative.toml");
    std::fs::write(&negative_outbox, "[agent]\noutbox_max_bytes = -1\n").unwrap();
    let bad_group = dir.path().join("group.toml");
    std::fs::write(&bad_group, "[agent]\ngroups = [\"Not OK\"]\n").unwrap();
    let flat = dir.path().join("flat.toml");
    std::fs::write(&flat, "pc_id = \"a\"\n[nats]\nurl = \"nats://127.0.0.1:1\"\n").unwrap();
    let bad_log = dir.path().join("log.toml");
    std::fs::write(&bad_log, "[log]\nlevel = \"loud\"\n").unwrap();
    let log_in_a_file = dir.path().join("log-file.toml");
    std::fs::write(&log_in_a_file, format!("[log]\nfile = {:?}\n", dir.path().join("unknown.toml/agent.log"))).unwrap();
    struct Case {
        env: Vec<(&'static str, String)>,
        args: Vec<String>,
        expected: &'static str,
    }
    let case = |env: Vec<(&'static str, String)>, args: Vec<String>, expected| Case { env, args, expected };
    let cases = vec![
        case(
            vec![],
            vec!["--config".into(), unknown.display().to_string()],
            "line 3, column 1: `agent.heartbeat`: unknown field",
        ),
        case(
            vec![],
            vec!["--config".into(), flat.display().to_string()],
            "line 3, column 1: `nats.url`: unknown field",
        ),
        // The file's level counts only without KANADE_LOG (empty is unset).
        case(
            vec![("KANADE_LOG", String::new())],
            vec!["--config".into(), bad_log.display().to_string()],
            "log.level: `loud`",
        ),
        case(vec![], vec!["--config".into(), log_in_a_file.display().to_string()], "cannot write logs to"),
        case(vec![("KANADE_AGENT_CONFIG", unknown.display().to_string())], vec![], "`agent.heartbeat`"),
        case(vec![("KANADE_LOG", "verbose".into())], vec![], "KANADE_LOG: `verbose`"),
        case(vec![], vec!["--config".into(), bad_group.display().to_string()], "group name `Not OK`"),
        case(vec![], vec!["--config".into(), tiny_outbox.display().to_string()], "outbox_max_bytes"),
        case(vec![], vec!["--config".into(), negative_outbox.display().to_string()], "outbox_max_bytes"),
        case(vec![], vec!["--config".into(), "/nonexistent/agent.toml".into()], "cannot read config file"),
        case(vec![("KANADE_AGENT_ID", "has.dot".into())], vec![], "pc_id `has.dot`"),
        case(vec![("KANADE_NATS_URL", "http://x".into())], vec![], "is not a NATS URL"),
        case(vec![("KANADE_AGENT_ID", "x".repeat(100_000))], vec![], "pc_id `xxxx"),
    ];
    for Case { env, args, expected } in cases {
        let mut cmd = agent();
        // Never the developer's broker, should a case be accepted after all.
        cmd.env("KANADE_NATS_URL", "nats://127.0.0.1:1").args(&args);
        for (key, value) in &env {
            cmd.env(key, value);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("{args:?} {env:?}: the agent accepted this configuration and ran");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in:\n{stderr}");
        assert!(stderr.len() < 2_000, "the error message is bounded");
    }
}

/// `service` on Linux runs in the foreground (systemd supervises it); `--log-dir` puts the log in a daily file,
/// which the agent serves on `agents.<pc>.logs`.
#[tokio::test]
async fn service_mode_logs_to_files_and_stops_on_sigterm() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _js) = connect(&nats.url()).await;
    let data = tempfile::tempdir().unwrap();
    let logs = data.path().join("logs");
    kanade_testkit::fleet().agent_env("svc-pc", &[], &data.path().join("data"));
    let mut child = agent()
        .args(["service", "--log-dir"])
        .arg(&logs)
        .env("KANADE_NATS_URL", nats.url())
        .env("KANADE_AGENT_ID", "svc-pc")
        .env("KANADE_AGENT_DATA_DIR", data.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pc = PcId::new("svc-pc").unwrap();
    eventually("the agent in service mode answers a ping", Duration::from_secs(20), || {
        let (client, pc) = (client.clone(), pc.clone());
        async move { kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok() }
    })
    .await;
    // The agent serves the files `--log-dir` writes, in tracing's own format (`--since` reads its timestamps).
    let request = kanade_shared::wire::LogsRequest { since: Some(Duration::from_secs(3600)), ..Default::default() };
    let tail = kanade_ops::logs::request(&client, &pc, &request, Duration::from_secs(5)).await.unwrap();
    assert!(tail.lines.iter().any(|line| line.contains("kanade-agent starting")), "{tail:?}");
    let position = tail.position.expect("a position to follow from");
    assert!(position.file.starts_with("kanade-agent.") && position.offset > 0, "{position:?}");
    terminate(&child);
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    assert!(status.success(), "agent exited with {status:?}");
    assert!(stderr.is_empty(), "with --log-dir nothing goes to stderr: {stderr}");
    let files: Vec<_> = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("kanade-agent.") && name.ends_with(".log"), "{name}");
    let log = std::fs::read_to_string(&files[0]).unwrap();
    assert!(log.contains("kanade-agent starting") && log.contains("kanade-agent stopped"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a log file");
}

#[test]
fn a_log_dir_that_cannot_be_written_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = agent().arg("--log-dir").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot write logs to"), "{stderr}");
}

/// The config file named by `KANADE_AGENT_CONFIG` (no `--config`) sets the id, the broker and `[log]`: the log goes
/// to daily files named after `[log] file`, at `[log] level`, and nothing to stderr.
#[tokio::test]
async fn the_config_named_by_the_environment_logs_to_the_file_it_names() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _js) = connect(&nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let config = dir.path().join("agent.toml");
    kanade_testkit::fleet().agent_env("file-pc", &[], &dir.path().join("data"));
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"file-pc\"\nnats_url = {:?}\ndata_dir = {:?}\n[log]\nlevel = \"debug\"\nfile = {:?}\n",
            nats.url(),
            dir.path().join("data"),
            logs.join("agent.log")
        ),
    )
    .unwrap();
    let mut child = agent()
        .env_remove("KANADE_LOG")
        .env("KANADE_AGENT_CONFIG", &config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pc = PcId::new("file-pc").unwrap();
    eventually("the agent configured by its file answers a ping", Duration::from_secs(20), || {
        let (client, pc) = (client.clone(), pc.clone());
        async move { kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok() }
    })
    .await;
    // `kanade logs` reads the same files: the agent serves the rolling files of `[log] file` on `agents.<pc>.logs`.
    let request = kanade_shared::wire::LogsRequest { lines: Some(50), ..Default::default() };
    let reply = kanade_ops::logs::request(&client, &pc, &request, Duration::from_secs(5)).await.unwrap();
    assert!(reply.lines.iter().any(|line| line.contains("kanade-agent starting")), "{:?}", reply.lines);
    terminate(&child);
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    assert!(status.success(), "agent exited with {status:?}");
    assert!(stderr.is_empty(), "with [log] file nothing goes to stderr: {stderr}");
    let files: Vec<_> = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    assert!(name == format!("agent.{today}.log") || name == format!("agent.{yesterday}.log"), "{name}");
    let log = std::fs::read_to_string(&files[0]).unwrap();
    assert!(log.contains("kanade-agent starting") && log.contains("kanade-agent stopped"), "{log}");
    assert!(log.contains("DEBUG"), "[log] level = debug is in force:\n{log}");
}

/// Starts the agent binary as `pc` over `url` with its data in `data` (catch-up after 100 ms).
fn spawn_agent(url: &str, pc: &str, data: &std::path::Path) -> Child {
    let config = data.join("agent.toml");
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(&config, "[agent]\ncatch_up_jitter = \"100ms\"\nheartbeat_interval = \"1s\"\n").unwrap();
    kanade_testkit::fleet().agent_env(pc, &[], &data.join("data"));
    agent()
        .arg("--config")
        .arg(&config)
        .env("KANADE_NATS_URL", url)
        .env("KANADE_AGENT_ID", pc)
        .env("KANADE_AGENT_DATA_DIR", data.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigkill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// SIGKILL while a script runs: after the restart the run is reported `failed` / `interrupted` and not run again.
/// SIGKILL while a run waits on its jitter: after the restart it runs (once).
#[tokio::test]
async fn a_run_cut_short_by_sigkill_is_reported_interrupted_and_a_waiting_one_runs_after_the_restart() {
    use kanade_shared::subject::Target;
    use kanade_shared::wire::{Reason, ResultStatus};
    use kanade_testkit::fleet::{ResultWatch, command, publish};
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let (runs, pid) = (dir.path().join("runs"), dir.path().join("pid"));
    let mut results = ResultWatch::new(&client).await;
    let mut child = spawn_agent(&nats.url(), "crash-pc", dir.path());
    let pc = PcId::new("crash-pc").unwrap();
    let target = Target::Pc(pc.clone());
    eventually("the agent is up", Duration::from_secs(20), || async {
        kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok()
    })
    .await;

    // The run is recorded before the pid appears (whole, by a rename), so the kill below cannot land between the two.
    let long = command(&format!(
        "echo run >> {runs}; echo $$ > {pid}.tmp; mv {pid}.tmp {pid}; sleep 60",
        runs = runs.display(),
        pid = pid.display()
    ));
    publish(&js, &target, &long).await;
    eventually("the script is running", Duration::from_secs(20), || async { pid.exists().then_some(()) }).await;
    sigkill(&mut child);
    // A SIGKILLed agent cannot take its script with it on Linux (a Job Object does on Windows): end it here.
    let script = std::fs::read_to_string(&pid).unwrap().trim().parse::<i32>().unwrap();
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(script), nix::sys::signal::Signal::SIGKILL);

    // A run waiting on its jitter when the agent dies.
    let mut waiting = command(&format!("echo waited >> {}", runs.display()));
    waiting.jitter = Some(Duration::from_secs(2));
    let claim = dir.path().join("data/runs").join(waiting.exec_id.as_str());
    let mut child = spawn_agent(&nats.url(), "crash-pc", dir.path());
    let interrupted = results.next_for(&long.exec_id, Duration::from_secs(20)).await;
    assert_eq!((interrupted.status, interrupted.reason.clone()), (ResultStatus::Failed, Some(Reason::Interrupted)));
    assert!(interrupted.started_at.is_some() && interrupted.stderr.contains("not run again"), "{interrupted:?}");
    publish(&js, &target, &waiting).await;
    eventually("the waiting run is claimed", Duration::from_secs(20), || async { claim.exists().then_some(()) }).await;
    sigkill(&mut child);
    assert_eq!(results.seen_for(&waiting.exec_id), 0, "killed during the jitter");

    let mut child = spawn_agent(&nats.url(), "crash-pc", dir.path());
    let ran = results.next_for(&waiting.exec_id, Duration::from_secs(20)).await;
    assert_eq!(ran.status, ResultStatus::Ok, "{ran:?}");
    // A last command through the same agent, so anything run twice would have shown by now.
    let marker = command("true");
    publish(&js, &target, &marker).await;
    results.next_for(&marker.exec_id, Duration::from_secs(20)).await;
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "run\nwaited\n", "each script ran exactly once");
    assert_eq!((results.seen_for(&long.exec_id), results.seen_for(&waiting.exec_id)), (1, 1));
    terminate(&child);
    child.wait().unwrap();
}

/// Asked to stop while its broker is gone (and a result waits in the outbox), the agent still stops.
#[tokio::test]
async fn an_agent_stops_when_asked_even_with_the_broker_gone() {
    init_logging();
    let mut nats = NatsServer::start();
    let (client, _js) = connect(&nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_agent(&nats.url(), "lonely-pc", dir.path());
    let pc = PcId::new("lonely-pc").unwrap();
    eventually("the agent is up", Duration::from_secs(20), || async {
        kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok()
    })
    .await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    terminate(&child);
    let exited = eventually("the agent exits after SIGTERM with no broker", Duration::from_secs(40), || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(exited.success(), "{exited:?}");
}
