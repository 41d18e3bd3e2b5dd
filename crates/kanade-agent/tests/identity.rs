//! A stolen agent credential against a real broker (issue #18): whoever copies `agent.creds` off a PC may act as
//! that PC and nothing else. The thief is `tests/identity/stolen_credential.py`, written against nats-py so that
//! no kanade code is on the client side; every refusal asserted here is the broker's own permissions violation,
//! and every refusal has an allowed control beside it, so that a probe that cannot succeed cannot pass.
//!
//! nats-py comes from `.tools/python` (`cargo xtask python`, which `cargo xtask ci` runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kanade_ops::security::{BACKEND_CREDS, BOOTSTRAP_CREDS};
use kanade_shared::resources::STREAM_RESULTS;
use kanade_shared::security::permissions::{ENROLL_INBOX_PREFIX, agent_inbox_prefix};
use kanade_testkit::security::TEST_CREDENTIAL_TTL;
use kanade_testkit::{NatsServer, TestAgent, connect, fleet, init_logging};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

/// The script's own steps time out long before this; it is the last guard against a hung interpreter.
const SCRIPT_PATIENCE: Duration = Duration::from_secs(180);

/// What a probe should meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allowed,
    /// Refused by a permissions violation the broker reported for the probe's subject.
    Violation,
    /// Refused in any way (a connection the broker would not have).
    Refused,
}

fn publish(subject: &str) -> Value {
    json!({ "publish": subject })
}

fn subscribe(subject: &str) -> Value {
    json!({ "subscribe": subject })
}

fn connection(kind: &str) -> Value {
    json!({ "connect": kind })
}

/// An ephemeral consumer on `RESULTS`: with it, a thief would read every PC's results.
fn consumer_on_results() -> Value {
    let config =
        json!({ "stream_name": STREAM_RESULTS, "config": { "ack_policy": "explicit", "deliver_policy": "all" } });
    json!({ "request": format!("$JS.API.CONSUMER.CREATE.{STREAM_RESULTS}"), "data": config.to_string() })
}

/// `.tools/python`, where `cargo xtask python` installs nats-py, or a failure saying to run it.
fn nats_py() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/python");
    assert!(
        dir.join("nats/__init__.py").is_file() && dir.join("nkeys/__init__.py").is_file(),
        "nats-py is not installed in {}: run `cargo xtask python`",
        dir.display()
    );
    dir
}

/// One line the thief printed.
#[derive(Debug, serde::Deserialize)]
struct Report {
    probe: Value,
    outcome: String,
    violation: bool,
    detail: String,
}

/// Runs the thief against `url` holding `creds` (or none), with replies asked to `inbox_prefix`, and returns its
/// report per probe.
async fn thief(url: &str, creds: Option<&Path>, inbox_prefix: Option<&str>, probes: &[Value]) -> Vec<Report> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/identity/stolen_credential.py");
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(&script)
        .args(["--url", url, "--ca"])
        .arg(fleet().ca())
        .env("PYTHONPATH", nats_py())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(creds) = creds {
        command.arg("--creds").arg(creds);
    }
    if let Some(prefix) = inbox_prefix {
        command.args(["--inbox-prefix", prefix]);
    }
    let mut child = command.spawn().expect("run python3 (install Python 3)");
    let mut stdin = child.stdin.take().expect("the thief's stdin");
    stdin.write_all(Value::from(probes.to_vec()).to_string().as_bytes()).await.expect("hand the thief its probes");
    drop(stdin);
    let output = tokio::time::timeout(SCRIPT_PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} ran longer than {SCRIPT_PATIENCE:?}", script.display()))
        .expect("wait for the thief");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{} failed ({}):\n{stderr}", script.display(), output.status);
    let reports: Vec<Report> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("a report line `{line}`: {err}")))
        .collect();
    assert_eq!(reports.len(), probes.len(), "one report per probe; stderr:\n{stderr}");
    reports
}

/// Runs the thief and checks every probe against what it should meet, naming every one that did not.
async fn expect(url: &str, creds: Option<&Path>, inbox_prefix: Option<&str>, who: &str, cases: &[(Value, Expect)]) {
    let probes: Vec<Value> = cases.iter().map(|(probe, _)| probe.clone()).collect();
    let reports = thief(url, creds, inbox_prefix, &probes).await;
    let by_probe: BTreeMap<String, &Report> = reports.iter().map(|r| (r.probe.to_string(), r)).collect();
    let mut wrong = Vec::new();
    for (probe, expected) in cases {
        let report = by_probe.get(&probe.to_string()).unwrap_or_else(|| panic!("{who}: no report for {probe}"));
        let met = match expected {
            Expect::Allowed => report.outcome == "allowed",
            Expect::Violation => report.outcome == "refused" && report.violation,
            Expect::Refused => report.outcome == "refused",
        };
        if !met {
            wrong.push(format!(
                "{who}: {probe} should be {expected:?}, was {} (violation: {}): {}",
                report.outcome, report.violation, report.detail
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A broker with JetStream set up, pc-1's agent running in group `office` on its own credential, and a
/// credential for pc-2 (another PC of the fleet) in `dir`.
async fn fleet_with_pc1(dir: &Path) -> (NatsServer, TestAgent, PathBuf) {
    init_logging();
    let server = NatsServer::start();
    let _ = connect(&server.url()).await;
    let agent = TestAgent::start(&server.url(), "pc-1", &["office"]).await;
    let pc2 = dir.join("pc-2.creds");
    fleet().issue_agent("pc-2", &["lab"], TEST_CREDENTIAL_TTL, &pc2);
    (server, agent, pc2)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stolen_agent_credential_acts_as_its_own_pc_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, pc2) = fleet_with_pc1(dir.path()).await;
    let url = server.url();
    let pc1 = agent.data_dir().join(kanade_agent::CREDS_FILE);
    use Expect::{Allowed, Violation};
    expect(
        &url,
        Some(&pc1),
        Some(&agent_inbox_prefix("pc-1")),
        "pc-1's credential",
        &[
            // Commands come from operators only: not to everyone, not to another PC, not to its own group.
            (publish("commands.all.x"), Violation),
            (publish("commands.pc.pc-2.x"), Violation),
            (publish("commands.pc.pc-1.x"), Violation),
            (publish("commands.group.office.x"), Violation),
            // Another PC's results and heartbeat cannot be forged.
            (publish("results.pc-2.x"), Violation),
            (publish("heartbeat.pc-2"), Violation),
            // Job state and kills are the operators'.
            (publish("$KV.script_status.x"), Violation),
            (publish("$KV.agent_config.pcs.pc-1"), Violation),
            (publish("kill.x"), Violation),
            (consumer_on_results(), Violation),
            // Nobody else's traffic can be read.
            (subscribe("results.>"), Violation),
            (subscribe("commands.pc.pc-2.>"), Violation),
            (subscribe("commands.group.lab.>"), Violation),
            (subscribe("_INBOX.>"), Violation),
            (subscribe("_INBOX_pc-2.>"), Violation),
            (subscribe("agents.pc-2.>"), Violation),
            // What the agent does as itself stays allowed: the controls that make the refusals above mean something.
            (publish("heartbeat.pc-1"), Allowed),
            (publish("results.pc-1.x"), Allowed),
            (subscribe("commands.pc.pc-1.>"), Allowed),
            (subscribe("commands.group.office.>"), Allowed),
            (subscribe("commands.all.>"), Allowed),
            (subscribe("kill.>"), Allowed),
            (subscribe("_INBOX_pc-1.>"), Allowed),
        ],
    )
    .await;

    // pc-2 is a real PC of the fleet: what pc-1 was refused is pc-2's own, and pc-1's is refused to it.
    expect(
        &url,
        Some(&pc2),
        Some(&agent_inbox_prefix("pc-2")),
        "pc-2's credential",
        &[
            (publish("heartbeat.pc-2"), Allowed),
            (subscribe("commands.pc.pc-2.>"), Allowed),
            (subscribe("commands.group.lab.>"), Allowed),
            (subscribe("_INBOX_pc-2.>"), Allowed),
            (publish("heartbeat.pc-1"), Violation),
            (subscribe("commands.pc.pc-1.>"), Violation),
            (subscribe("commands.group.office.>"), Violation),
        ],
    )
    .await;

    // The probes themselves work: the backend's credential may do what both agents were refused.
    expect(
        &url,
        Some(&fleet().file(BACKEND_CREDS)),
        None,
        "the backend's credential",
        &[(consumer_on_results(), Allowed), (subscribe("results.>"), Allowed), (subscribe("_INBOX.>"), Allowed)],
    )
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_needs_tls_and_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, _) = fleet_with_pc1(dir.path()).await;
    let pc1 = agent.data_dir().join(kanade_agent::CREDS_FILE);
    use Expect::{Allowed, Refused};
    expect(
        &server.url(),
        Some(&pc1),
        Some(&agent_inbox_prefix("pc-1")),
        "pc-1's credential",
        &[
            (connection("plaintext"), Refused),
            (connection("tls_without_credential"), Refused),
            (connection("tls_with_credential"), Allowed),
        ],
    )
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_credential_may_only_ask_to_enrol() {
    init_logging();
    let server = NatsServer::start();
    let _ = connect(&server.url()).await;
    use Expect::{Allowed, Violation};
    expect(
        &server.url(),
        Some(&fleet().file(BOOTSTRAP_CREDS)),
        Some(ENROLL_INBOX_PREFIX),
        "the bootstrap credential",
        &[
            (publish("enroll.request"), Allowed),
            (subscribe(&format!("{ENROLL_INBOX_PREFIX}.>")), Allowed),
            (publish("heartbeat.pc-1"), Violation),
            (publish("enroll.renew.pc-1"), Violation),
            (publish("results.pc-1.x"), Violation),
            (subscribe("commands.all.>"), Violation),
            (subscribe("_INBOX.>"), Violation),
            (consumer_on_results(), Violation),
        ],
    )
    .await;
}
