//! The agent binary as `kanade agent publish` sees it: its version, OS and architecture read from the file itself,
//! a `--version` that disagrees refused, and a rollout only to what is published.

use std::process::ExitCode;

use clap::Parser as _;
use kanade_ops::agent_config::AgentConfigStore;
use kanade_ops::objects::{self, Store};
use kanade_ops::release;
use kanade_shared::layered::Scope;
use kanade_testkit::{NatsServer, connect, init_logging};

const AGENT: &str = env!("CARGO_BIN_EXE_kanade-agent");

async fn kanade(url: &str, args: &[&str]) -> anyhow::Result<ExitCode> {
    let fleet = kanade_testkit::fleet().cli_args();
    let fleet: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let cli = kanade::Cli::try_parse_from([&["kanade", "--nats-url", url], fleet.as_slice(), args].concat())?;
    kanade::run(cli).await
}

/// The agent binary with its embedded version replaced by `version` (of the same length).
fn relabelled(dir: &std::path::Path, version: &str) -> std::path::PathBuf {
    let mut bytes = std::fs::read(AGENT).unwrap();
    let marker = [release::MARKER_PREFIX, kanade_agent::BUILD_VERSION.as_bytes(), b"\0"].concat();
    let at = bytes.windows(marker.len()).position(|w| w == marker.as_slice()).expect("the marker");
    assert_eq!(version.len(), kanade_agent::BUILD_VERSION.len());
    let start = at + release::MARKER_PREFIX.len();
    bytes[start..start + version.len()].copy_from_slice(version.as_bytes());
    let path = dir.join(format!("kanade-agent-{version}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn the_built_agent_says_what_it_is() {
    let info = release::inspect(&std::fs::read(AGENT).unwrap()).unwrap();
    assert_eq!(info.version, kanade_agent::BUILD_VERSION);
    assert_eq!(info.os, "linux");
    assert_eq!(info.arch, std::env::consts::ARCH);
}

#[tokio::test]
async fn publish_reads_the_binary_refuses_a_wrong_label_and_rollout_needs_a_release() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _) = connect(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let version = kanade_agent::BUILD_VERSION;

    // A label that disagrees with the binary is refused, and nothing is stored.
    let other: String = version.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
    let err = kanade(&url, &["agent", "publish", AGENT, "--version", &other]).await.unwrap_err().to_string();
    assert!(err.contains(&format!("is version {version} by its own account, not {other}")), "{err}");
    let store = objects::open(&client, Store::Agents).await.unwrap();
    assert!(objects::list(&store).await.unwrap().is_empty());

    // Published under what it says it is.
    assert_eq!(kanade(&url, &["agent", "publish", AGENT, "--version", version]).await.unwrap(), ExitCode::SUCCESS);
    let relabelled = relabelled(dir.path(), &other);
    assert_eq!(kanade(&url, &["agent", "publish", relabelled.to_str().unwrap()]).await.unwrap(), ExitCode::SUCCESS);
    let listed: Vec<(String, String)> =
        objects::list(&store).await.unwrap().into_iter().map(|p| (p.name, p.version)).collect();
    let platform = format!("linux-{}", std::env::consts::ARCH);
    let mut want = vec![(version.to_owned(), platform.clone()), (other.clone(), platform.clone())];
    want.sort();
    assert_eq!(listed, want);

    // Not an agent at all; a binary with two markers that disagree.
    let script = dir.path().join("not-an-agent.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let err = kanade(&url, &["agent", "publish", script.to_str().unwrap()]).await.unwrap_err().to_string();
    assert!(err.contains("not an executable"), "{err}");
    let mut two = std::fs::read(AGENT).unwrap();
    two.extend([release::MARKER_PREFIX, other.as_bytes(), b"\0"].concat());
    let two_path = dir.path().join("two-markers");
    std::fs::write(&two_path, two).unwrap();
    let err = kanade(&url, &["agent", "publish", two_path.to_str().unwrap()]).await.unwrap_err().to_string();
    assert!(err.contains("two version markers disagree"), "{err}");

    // A rollout names a published version, or is refused.
    let err = kanade(&url, &["agent", "rollout", "7.7.7", "--pcs", "pc-1"]).await.unwrap_err().to_string();
    assert!(err.contains("agent version 7.7.7 is not published"), "{err}");
    let code = kanade(&url, &["agent", "rollout", &other, "--groups", "canary", "--jitter", "30m"]).await.unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    let layer = AgentConfigStore::open(&client)
        .await
        .unwrap()
        .get(&Scope::Group(kanade_shared::GroupName::new("canary").unwrap()))
        .await
        .unwrap();
    assert_eq!(layer["target_version"], serde_json::json!(other));
    assert_eq!(layer["target_version_jitter"], serde_json::json!("30m"));
}
