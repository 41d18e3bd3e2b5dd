//! `kanade logs <pc>`: the real binary asks a real agent (in-process, serving a real log folder the test writes)
//! over a real nats-server for the tail of its own log: --lines, --since, -o json, --follow across a rotation,
//! the stderr-only agent, a huge file, hostile requests straight over NATS, and a pc that does not answer.

use std::io::Write as _;
use std::process::{Output, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use kanade_agent::logtail::{LogFiles, STDERR_ONLY};
use kanade_shared::wire::{AuditEvent, LogPosition, LogsReply, LogsRequest};
use kanade_shared::{PcId, subject};
use kanade_testkit::{NatsServer, TestAgent, connect, eventually, init_logging};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(20);

fn kanade(nats_url: &str) -> Command {
    let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url);
    cmd.env("KANADE_OPERATOR", "night-shift");
    cmd
}

async fn run(nats_url: &str, args: &[&str]) -> Output {
    kanade(nats_url).args(args).output().await.expect("run kanade")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Today's file as `--log-dir` names it.
fn todays_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(format!("kanade-agent.{}.log", Utc::now().format("%Y-%m-%d")))
}

/// A line as the agent's tracing writes it, logged `ago` before now.
fn logged(ago: chrono::Duration, message: &str) -> String {
    format!("{}  INFO kanade_agent: {message}\n", (Utc::now() - ago).format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

fn append(path: &std::path::Path, text: &str) {
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
}

async fn agent_logging_to(url: &str, pc: &str, dir: &std::path::Path) -> TestAgent {
    let data_dir = tempfile::tempdir().unwrap();
    let config = kanade_testkit::agent_config(url, pc, &[], data_dir.path());
    let files = LogFiles { dir: dir.to_owned(), prefix: "kanade-agent".into(), suffix: "log".into() };
    TestAgent::start_logging_to(config, data_dir, Some(files)).await
}

async fn audit_events(js: &jetstream::Context) -> Vec<AuditEvent> {
    let stream = js.get_stream("AUDIT").await.unwrap();
    let count = stream.get_info().await.unwrap().state.messages;
    let mut events = Vec::new();
    for seq in 1..=count {
        if let Ok(message) = stream.get_raw_message(seq).await {
            events.push(serde_json::from_slice(&message.payload).unwrap());
        }
    }
    events
}

#[tokio::test]
async fn logs_prints_the_tail_by_lines_and_since_and_is_audited() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (_client, js) = connect(&url).await;
    let logs = tempfile::tempdir().unwrap();
    let file = todays_file(logs.path());
    let old: String = (0..150).map(|i| logged(chrono::Duration::hours(3), &format!("old {i}"))).collect();
    append(&file, &old);
    append(&file, &logged(chrono::Duration::minutes(20), "recent one"));
    append(&file, "  a continuation line of recent one\n");
    append(&file, &logged(chrono::Duration::minutes(1), "recent two"));
    let _agent = agent_logging_to(&url, "pc-1", logs.path()).await;

    let tail = run(&url, &["logs", "pc-1"]).await;
    assert_eq!(tail.status.code(), Some(0), "{}", text(&tail.stderr));
    let lines: Vec<String> = text(&tail.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 100, "the default is 100 lines");
    assert!(lines[0].ends_with("old 53"), "{}", lines[0]);
    assert!(lines[99].ends_with("recent two"), "{}", lines[99]);

    let three = run(&url, &["logs", "pc-1", "--lines", "3"]).await;
    let three: Vec<String> = text(&three.stdout).lines().map(str::to_owned).collect();
    assert_eq!(three.len(), 3);
    assert!(three[0].ends_with("recent one") && three[1] == "  a continuation line of recent one", "{three:?}");

    let since = run(&url, &["logs", "pc-1", "--since", "1h"]).await;
    assert_eq!(since.status.code(), Some(0), "{}", text(&since.stderr));
    assert_eq!(text(&since.stdout).lines().count(), 3, "{}", text(&since.stdout));
    let none = run(&url, &["logs", "pc-1", "--since", "30s"]).await;
    assert_eq!((none.status.code(), text(&none.stdout)), (Some(0), String::new()));

    let json = run(&url, &["logs", "pc-1", "--lines", "2", "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["pc_id"], "pc-1");
    assert_eq!(json["lines"].as_array().unwrap().len(), 2);
    assert_eq!(json["truncated"], false);
    assert_eq!(json["position"]["file"], file.file_name().unwrap().to_str().unwrap());
    assert_eq!(json["position"]["offset"], std::fs::metadata(&file).unwrap().len());

    let events = eventually("five log requests audited", PATIENCE, || async {
        let events = audit_events(&js).await;
        (events.len() == 5).then_some(events)
    })
    .await;
    assert!(
        events
            .iter()
            .all(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str()) == ("night-shift", "logs", "pc-1"))
    );
    assert_eq!(events[2].details["since"], "1h");
    assert_eq!(events[2].details["lines"], 10_000, "--since alone asks for every line in that time");
}

#[tokio::test]
async fn follow_prints_lines_appended_later_and_carries_on_into_the_next_daily_file() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let logs = tempfile::tempdir().unwrap();
    let file = todays_file(logs.path());
    append(&file, &logged(chrono::Duration::minutes(5), "before the follow"));
    let _agent = agent_logging_to(&url, "pc-1", logs.path()).await;

    let mut child = kanade(&url)
        .args(["logs", "pc-1", "--follow", "--lines", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(PATIENCE, stdout.next_line()).await.expect("a line within patience").unwrap().unwrap()
    };
    assert!(next_line().await.ends_with("before the follow"));
    append(&file, &logged(chrono::Duration::zero(), "appended later"));
    assert!(next_line().await.ends_with("appended later"));
    // A line half-written is printed only once it is complete.
    append(&file, "2026-12-01T00:00:00.000000Z  INFO kanade_agent: written in ");
    append(&file, "two parts\n");
    assert_eq!(next_line().await, "2026-12-01T00:00:00.000000Z  INFO kanade_agent: written in two parts");
    // The daily rotation: the next file sorts after today's.
    let tomorrow = logs.path().join("kanade-agent.2999-01-01.log");
    append(&tomorrow, "first line of the next day\n");
    assert_eq!(next_line().await, "first line of the next day");
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[tokio::test]
async fn an_agent_that_logs_to_stderr_only_says_so_and_the_cli_exits_1() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (_client, js) = connect(&url).await;
    let _agent = TestAgent::start(&url, "pc-1", &[]).await;
    let out = run(&url, &["logs", "pc-1"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(STDERR_ONLY), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    eventually("the refused request is audited too", PATIENCE, || async {
        audit_events(&js).await.iter().any(|e| e.action.as_str() == "logs").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_huge_log_file_answers_its_tail_without_being_read_whole() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let logs = tempfile::tempdir().unwrap();
    let file = todays_file(logs.path());
    // 10 GB (sparse: no disk used) of no newline at all, then a few real lines.
    std::fs::File::create(&file).unwrap().set_len(10 * 1024 * 1024 * 1024).unwrap();
    let tail: String = (0..5).map(|i| logged(chrono::Duration::zero(), &format!("after the gap {i}"))).collect();
    append(&file, &format!("\n{tail}"));
    let _agent = agent_logging_to(&url, "pc-1", logs.path()).await;

    let five = run(&url, &["logs", "pc-1", "--lines", "5"]).await;
    assert_eq!(five.status.code(), Some(0), "{}", text(&five.stderr));
    let lines: Vec<&str> = std::str::from_utf8(&five.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[4].ends_with("after the gap 4"));

    // Asking for more walks back into the gap: one line cut at its maximum, the scan stopped, and said so.
    let all = run(&url, &["logs", "pc-1", "--lines", "10000", "-o", "json"]).await;
    assert_eq!(all.status.code(), Some(0), "{}", text(&all.stderr));
    assert!(all.stdout.len() < 1024 * 1024, "bounded: {} bytes", all.stdout.len());
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all["truncated"], true);
    let lines = all["lines"].as_array().unwrap();
    assert!(lines.len() <= 6 && lines.last().unwrap().as_str().unwrap().ends_with("after the gap 4"), "{lines:?}");
}

#[tokio::test]
async fn hostile_log_requests_get_error_replies_and_are_counted_as_malformed() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _js) = connect(&url).await;
    let logs = tempfile::tempdir().unwrap();
    append(&todays_file(logs.path()), "mine\n");
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "secret\n").unwrap();
    // A link planted in the folder under a log file's name is not followed.
    #[cfg(unix)]
    std::os::unix::fs::symlink(secret.path(), logs.path().join("kanade-agent.2999-01-01.log")).unwrap();
    let _agent = agent_logging_to(&url, "pc-1", logs.path()).await;
    let pc = PcId::new("pc-1").unwrap();

    let hostile: Vec<Vec<u8>> = vec![
        b"garbage".to_vec(),
        br#""a string""#.to_vec(),
        br#"{"lines": 99999999}"#.to_vec(),
        br#"{"lines": 18446744073709551616}"#.to_vec(),
        br#"{"lines": 0}"#.to_vec(),
        br#"{"since_ms": -3600000}"#.to_vec(),
        br#"{"since_ms": 18446744073709551615}"#.to_vec(),
        br#"{"after": {"file": 7}}"#.to_vec(),
        vec![b'{'; 512 * 1024],
    ];
    for payload in &hostile {
        let reply = client.request(subject::logs(&pc), payload.clone().into()).await.expect("an answer");
        let reply: LogsReply = serde_json::from_slice(&reply.payload).unwrap();
        let refused =
            reply.refused.unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&payload[..payload.len().min(40)])));
        assert_eq!(refused.code, "invalid_request", "{}", String::from_utf8_lossy(&payload[..payload.len().min(40)]));
        assert!(reply.lines.is_empty());
    }
    // Without a reply subject there is nobody to answer: only counted.
    client.publish(subject::logs(&pc), "garbage".into()).await.unwrap();
    let expected = hostile.len() as u64 + 1;
    eventually("every hostile request counted", PATIENCE, || {
        let client = client.clone();
        let pc = pc.clone();
        async move {
            let (heartbeat, _) = kanade_ops::agents::ping(&client, &pc, Duration::from_secs(2)).await.ok()?;
            (heartbeat.malformed_messages == expected).then_some(())
        }
    })
    .await;

    // A position that names a path gets nothing from outside the folder; the agent still answers well.
    for file in ["../../../etc/passwd", "/etc/passwd", "kanade-agent.2999-01-01.log"] {
        let request = LogsRequest { after: Some(LogPosition { file: file.into(), offset: 0 }), ..Default::default() };
        let reply = client.request(subject::logs(&pc), serde_json::to_vec(&request).unwrap().into()).await.unwrap();
        let reply: LogsReply = serde_json::from_slice(&reply.payload).unwrap();
        assert!(!reply.lines.iter().any(|l| l.contains("secret") || l.contains("root:")), "{file}: {reply:?}");
    }
    let out = run(&url, &["logs", "pc-1"]).await;
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "mine\n".to_owned()), "{}", text(&out.stderr));
}

#[tokio::test]
async fn bad_flags_are_usage_errors_and_a_silent_pc_is_a_clear_error() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _js) = connect(&url).await;
    for args in [
        &["logs", "pc-1", "--lines", "0"][..],
        &["logs", "pc-1", "--lines", "10001"],
        &["logs", "pc-1", "--lines", "-5"],
        &["logs", "pc-1", "--since", "-1h"],
        &["logs", "pc-1", "--since", "yesterday"],
        &["logs", "pc-1", "--since", "400d"],
        &["logs", "Bad.PC"],
        &["logs"],
    ] {
        let out = run(&url, args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
    }
    let too_long = run(&url, &["logs", "pc-1", "--since", "400d"]).await;
    assert!(text(&too_long.stderr).contains("is longer than the limit"), "{}", text(&too_long.stderr));

    let nobody = run(&url, &["logs", "ghost"]).await;
    assert_eq!(nobody.status.code(), Some(1));
    assert!(text(&nobody.stderr).contains("no agent `ghost` is connected"), "{}", text(&nobody.stderr));
    // Someone holds the subject but never answers: the request times out, and says so.
    let _silent = client.subscribe(subject::logs(&PcId::new("mute").unwrap())).await.unwrap();
    client.flush().await.unwrap();
    let silent = run(&url, &["logs", "mute", "--timeout", "1s"]).await;
    assert_eq!(silent.status.code(), Some(1));
    assert!(text(&silent.stderr).contains("agent `mute` did not answer within 1s"), "{}", text(&silent.stderr));
}
