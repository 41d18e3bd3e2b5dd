//! Self-update end to end on Linux: the agent relabelled as two more versions (one of them broken on purpose), real
//! agent processes under a small supervisor that restarts them as `deploy/kanade-agent.service` makes systemd do
//! (on exit 64 and on failure), a rollout to one PC, a rollback, a corrupt release refused, a release that cannot
//! run here refused before the swap, a group rollout spread over its jitter, and a release that never comes up
//! healthy rolled back by the boot sentinel. And the download alone, in-process: by direct get only, a release of
//! many chunks byte for byte, a chunk changed at the broker refused by its SHA-256 and never installed, a missing,
//! deleted or oversized release reported as such.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::object_store::ObjectMetadata;
use clap::Parser as _;
use kanade_agent::update::{UpdateError, download};
use kanade_shared::resources::{OBJ_AGENT_RELEASES, STREAM_OBS, object_store_stream_name};
use kanade_shared::wire::ObsEvent;
use kanade_shared::{PcId, subject};
use kanade_testkit::{NatsServer, connect, eventually, init_logging};
use sha2::Digest as _;

const V1: &str = kanade_agent::BUILD_VERSION;
/// The second release's version.
const V2: &str = "0.99.0";
/// A third release that exits before it connects.
const BROKEN: &str = "0.97.0";
const PATIENCE: Duration = Duration::from_secs(60);

/// The test's own agent relabelled as `version`, and broken on purpose if asked: the version marker's slot and the
/// fault flag are bytes of the file that the agent reads at run time, so no second build is needed.
fn relabelled(dir: &Path, version: &str, broken: bool) -> PathBuf {
    fn find(bytes: &[u8], what: &[u8]) -> usize {
        let mut found = bytes.windows(what.len()).enumerate().filter(|(_, w)| *w == what).map(|(at, _)| at);
        let at = found.next().expect("the marker is in the binary");
        assert_eq!(found.next(), None, "the marker is in the binary once");
        at
    }
    let mut bytes = std::fs::read(env!("CARGO_BIN_EXE_kanade-agent")).unwrap();
    let slot = find(&bytes, &kanade_agent::VERSION_MARKER) + kanade_shared::release::MARKER_PREFIX.len();
    bytes[slot..slot + kanade_shared::release::MARKER_SLOT].fill(0);
    bytes[slot..slot + version.len()].copy_from_slice(version.as_bytes());
    if broken {
        let flag = find(&bytes, &kanade_agent::FAULT_FLAG) + kanade_agent::FAULT_PREFIX.len();
        bytes[flag] = b'1';
    }
    let path = dir.join(format!("kanade-agent-{version}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs a `kanade` command in-process; it must succeed.
async fn kanade(url: &str, args: &[&str]) {
    let fleet = kanade_testkit::fleet().cli_args();
    let fleet: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let cli = kanade::Cli::try_parse_from([&["kanade", "--nats-url", url], fleet.as_slice(), args].concat()).unwrap();
    let code = kanade::run(cli).await.unwrap_or_else(|err| panic!("kanade {args:?}: {err:#}"));
    assert_eq!(code, std::process::ExitCode::SUCCESS, "kanade {args:?}");
}

type Exits = Arc<Mutex<HashMap<String, Vec<(Instant, i32)>>>>;

/// One agent process per PC, restarted whenever it exits 64; records when each restart happened.
struct Supervisor {
    /// Every exit, with its code, per PC.
    restarts: Exits,
    stop: tokio_util::sync::CancellationToken,
}

impl Supervisor {
    fn new() -> Self {
        Self { restarts: Arc::default(), stop: tokio_util::sync::CancellationToken::new() }
    }

    /// Installs the v1 binary in `dir/bin` and runs it as `pc`, in `groups`.
    fn start(&self, url: &str, dir: &Path, pc: &str, groups: &str) -> PathBuf {
        let exe = dir.join("bin/kanade-agent");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_kanade-agent"), &exe).unwrap();
        let (url, pc, groups, data) = (url.to_owned(), pc.to_owned(), groups.to_owned(), dir.join("data"));
        // Its own credential, for its groups, as enrolment would have left it.
        let group_list: Vec<&str> = groups.split(',').map(str::trim).filter(|g| !g.is_empty()).collect();
        let ca = kanade_testkit::fleet().agent_env(&pc, &group_list, &data);
        let (restarts, stop, exe_path) = (self.restarts.clone(), self.stop.clone(), exe.clone());
        let log = dir.join("agent.log");
        tokio::spawn(async move {
            loop {
                let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
                let mut child = tokio::process::Command::new(&exe_path)
                    .env_clear()
                    .env("KANADE_AGENT_ID", &pc)
                    .env("KANADE_AGENT_GROUPS", &groups)
                    .env("KANADE_NATS_URL", &url)
                    .envs(ca.clone())
                    .env("KANADE_AGENT_DATA_DIR", &data)
                    .env("KANADE_CLIENT_SOCKET", "off")
                    .env("KANADE_LOG", "info")
                    .stdout(log_file.try_clone().unwrap())
                    .stderr(log_file)
                    .kill_on_drop(true)
                    .spawn()
                    .expect("start the agent");
                let status = tokio::select! {
                    status = child.wait() => status.expect("wait for the agent"),
                    () = stop.cancelled() => {
                        let _ = child.kill().await;
                        return;
                    }
                };
                let code = status.code().unwrap_or(-1);
                let exits = {
                    let mut all = restarts.lock().unwrap();
                    let history = all.entry(pc.clone()).or_default();
                    history.push((Instant::now(), code));
                    history.len()
                };
                // Restart=on-failure with RestartForceExitStatus=64: a clean exit stays stopped.
                if code == 0 || exits > 30 {
                    tracing::warn!(%pc, %status, "supervisor: not restarting");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        exe
    }

    /// When `pc` exited 64 (updated).
    fn restarts(&self, pc: &str) -> Vec<Instant> {
        self.exits(pc).into_iter().filter(|(_, code)| *code == 64).map(|(at, _)| at).collect()
    }

    fn exits(&self, pc: &str) -> Vec<(Instant, i32)> {
        self.restarts.lock().unwrap().get(pc).cloned().unwrap_or_default()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn version_of(client: &async_nats::Client, pc: &str) -> Option<String> {
    let pc = PcId::new(pc).unwrap();
    let (heartbeat, _) = kanade_ops::agents::ping(client, &pc, Duration::from_millis(500)).await.ok()?;
    Some(heartbeat.agent_version)
}

async fn runs_version(client: &async_nats::Client, pc: &str, version: &str) {
    eventually(&format!("{pc} runs {version}"), PATIENCE, || async {
        (version_of(client, pc).await.as_deref() == Some(version)).then_some(())
    })
    .await;
}

/// The newest timeline event of `pc`.
async fn last_event(js: &async_nats::jetstream::Context, pc: &str) -> Option<ObsEvent> {
    let stream = js.get_stream(STREAM_OBS).await.ok()?;
    let message = stream.get_last_raw_message_by_subject(&format!("obs.{pc}")).await.ok()?;
    serde_json::from_slice(&message.payload).ok()
}

/// Every timeline event of `pc` still in the stream, oldest first.
async fn events(js: &async_nats::jetstream::Context, pc: &str) -> Vec<ObsEvent> {
    let Ok(mut stream) = js.get_stream(STREAM_OBS).await else { return Vec::new() };
    let Ok(info) = stream.info().await else { return Vec::new() };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut found = Vec::new();
    for seq in first..=last {
        if let Ok(message) = stream.get_raw_message(seq).await
            && message.subject.as_str() == format!("obs.{pc}")
            && let Ok(event) = serde_json::from_slice(&message.payload)
        {
            found.push(event);
        }
    }
    found
}

#[tokio::test]
async fn agents_update_roll_back_refuse_a_corrupt_release_and_spread_a_group_rollout() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let (v2_binary, broken_binary) = (relabelled(dir.path(), V2, false), relabelled(dir.path(), BROKEN, true));
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, js) = connect(&url).await;
    let supervisor = Supervisor::new();
    let pcs = ["pc-a", "pc-b", "pc-c", "pc-d", "pc-e"];
    let mut exes = HashMap::new();
    for pc in pcs {
        exes.insert(pc, supervisor.start(&url, &dir.path().join(pc), pc, "lab"));
    }
    for pc in pcs {
        runs_version(&client, pc, V1).await;
    }
    kanade(&url, &["agent", "publish", env!("CARGO_BIN_EXE_kanade-agent")]).await;
    kanade(&url, &["agent", "publish", v2_binary.to_str().unwrap()]).await;

    // One PC moves to v2; the others stay.
    kanade(&url, &["agent", "rollout", V2, "--pcs", "pc-a"]).await;
    runs_version(&client, "pc-a", V2).await;
    assert_eq!(version_of(&client, "pc-b").await.as_deref(), Some(V1));
    assert_eq!(supervisor.restarts("pc-a").len(), 1);
    assert_eq!(
        kanade_shared::release::marker_version(&std::fs::read(&exes["pc-a"]).unwrap()).unwrap().as_deref(),
        Some(V2)
    );
    // The old binary said it updated; the new one, that it started after an update, once it had.
    let started = eventually("pc-a's new binary on its timeline", PATIENCE, || async {
        let all = events(&js, "pc-a").await;
        let update = all.iter().position(|e| e.event == "agent_update")?;
        let started = all[update..].iter().find(|e| e.event == "agent_started")?.clone();
        Some((all[update].clone(), started))
    })
    .await;
    assert_eq!(started.0.details, serde_json::json!({ "from": V1, "to": V2 }));
    assert_eq!(started.1.details, serde_json::json!({ "version": V2, "after_update": true, "from": V1 }));
    let first_start = &events(&js, "pc-a").await[0];
    assert_eq!(first_start.event, "agent_started");
    assert_eq!(first_start.details, serde_json::json!({ "version": V1, "after_update": false }));
    eventually("the new binary removed .old", PATIENCE, || async {
        (!exes["pc-a"].with_extension("old").exists()).then_some(())
    })
    .await;

    // And back.
    kanade(&url, &["agent", "rollout", V1, "--pcs", "pc-a"]).await;
    runs_version(&client, "pc-a", V1).await;
    assert_eq!(supervisor.restarts("pc-a").len(), 2);

    // A release whose bytes are not what was published is refused; the agent keeps running v1.
    let corrupt = "0.98.0";
    let store = js.get_object_store(OBJ_AGENT_RELEASES).await.unwrap();
    let mut bytes = std::fs::read(&v2_binary).unwrap();
    bytes.truncate(bytes.len() / 2);
    let metadata = ObjectMetadata {
        name: format!("{corrupt}/{}", kanade_agent::update::platform()),
        metadata: [("sha256".to_owned(), "00".repeat(32))].into(),
        ..Default::default()
    };
    store.put(metadata, &mut bytes.as_slice()).await.unwrap();
    kanade(&url, &["agent", "rollout", corrupt, "--pcs", "pc-b"]).await;
    eventually("pc-b refuses the corrupt release", PATIENCE, || async {
        let event = last_event(&js, "pc-b").await?;
        (event.event == "agent_update_refused").then_some(())
    })
    .await;
    assert_eq!(version_of(&client, "pc-b").await.as_deref(), Some(V1));
    assert!(supervisor.restarts("pc-b").is_empty());

    // A release that is what was published but cannot run here (a script standing in for a binary of another
    // architecture) is refused before the swap: `--version` must name its version.
    let unrunnable = "0.96.0";
    let mut script = b"#!/bin/sh\necho 'cannot execute binary file' >&2\nexit 126\n".to_vec();
    script.extend_from_slice(kanade_shared::release::MARKER_PREFIX);
    script.extend_from_slice(format!("{unrunnable}\0").as_bytes());
    let sha: String = sha2::Sha256::digest(&script).iter().map(|b| format!("{b:02x}")).collect();
    let metadata = ObjectMetadata {
        name: format!("{unrunnable}/{}", kanade_agent::update::platform()),
        metadata: [("sha256".to_owned(), sha)].into(),
        ..Default::default()
    };
    store.put(metadata, &mut script.as_slice()).await.unwrap();
    kanade(&url, &["agent", "rollout", unrunnable, "--pcs", "pc-d"]).await;
    let refused = eventually("pc-d refuses the release that does not run", PATIENCE, || async {
        let event = last_event(&js, "pc-d").await?;
        (event.event == "agent_update_refused").then_some(event)
    })
    .await;
    let error = refused.details["error"].as_str().unwrap();
    assert!(error.contains("does not run on this machine") && error.contains("exit status: 126"), "{error}");
    assert_eq!(version_of(&client, "pc-d").await.as_deref(), Some(V1));
    assert!(supervisor.restarts("pc-d").is_empty());
    assert!(!exes["pc-d"].with_extension("new").exists(), "the staged binary is removed");

    // Everyone in the group, spread over an 8 s jitter.
    for pc in ["pc-a", "pc-b", "pc-d"] {
        kanade(&url, &["config", "unset", "--pc", pc, "target_version"]).await;
    }
    let rolled = Instant::now();
    kanade(&url, &["agent", "rollout", V2, "--groups", "lab", "--jitter", "8s"]).await;
    for pc in pcs {
        runs_version(&client, pc, V2).await;
    }
    let swaps: Vec<Duration> = pcs.iter().map(|pc| *supervisor.restarts(pc).last().unwrap() - rolled).collect();
    let (first, last) = (swaps.iter().min().unwrap(), swaps.iter().max().unwrap());
    tracing::info!(?swaps, "group rollout: swaps after the rollout");
    // Spread, which is what the jitter is for. How soon after the window the last swap comes is a matter of speed
    // (a busy machine here took 29 s for a 8 s window), which is for benchmarks, not tests.
    assert!(*last - *first >= Duration::from_secs(1), "five swaps within 1 s of each other: not spread: {swaps:?}");

    // A release that never comes up healthy: after MAX_BOOTS failed starts the previous binary is put back.
    kanade(&url, &["agent", "publish", broken_binary.to_str().unwrap()]).await;
    kanade(&url, &["agent", "rollout", BROKEN, "--pcs", "pc-c"]).await;
    eventually("pc-c rolls back", PATIENCE, || async {
        let event = last_event(&js, "pc-c").await?;
        (event.event == "agent_update_rolled_back").then_some(event)
    })
    .await;
    runs_version(&client, "pc-c", V2).await;
    let codes: Vec<i32> = supervisor.exits("pc-c").iter().map(|(_, code)| *code).collect();
    let failed = codes.iter().filter(|c| **c != 64).count();
    assert_eq!(failed, kanade_agent::update::MAX_BOOTS as usize, "exits of pc-c: {codes:?}");
    assert_eq!(codes.last(), Some(&64), "the rollback restarts into the old binary: {codes:?}");
    let event = last_event(&js, "pc-c").await.unwrap();
    assert_eq!(event.details, serde_json::json!({ "from": BROKEN, "to": V2 }));
    assert_eq!(
        kanade_shared::release::marker_version(&std::fs::read(&exes["pc-c"]).unwrap()).unwrap().as_deref(),
        Some(V2)
    );
    // It does not try that version again while it stays the target.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(version_of(&client, "pc-c").await.as_deref(), Some(V2));
}

/// A made-up release of `version`: `len` bytes of noise, then the version marker every agent binary embeds.
fn release_bytes(version: &str, len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ len as u64;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    bytes.extend_from_slice(kanade_shared::release::MARKER_PREFIX);
    bytes.extend_from_slice(format!("{version}\0").as_bytes());
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn release_key(version: &str) -> String {
    format!("{version}/{}", kanade_agent::update::platform())
}

/// Publishes `bytes` as `version` for this platform, in chunks of `chunk_size` (the store's default if `None`),
/// with its SHA-256 as `kanade agent publish` records it.
async fn publish_release(
    js: &async_nats::jetstream::Context,
    version: &str,
    bytes: &[u8],
    chunk_size: Option<usize>,
) -> async_nats::jetstream::object_store::ObjectInfo {
    let store = js.get_object_store(OBJ_AGENT_RELEASES).await.unwrap();
    let metadata = ObjectMetadata {
        name: release_key(version),
        metadata: [("sha256".to_owned(), sha256_hex(bytes))].into(),
        chunk_size,
        ..Default::default()
    };
    store.put(metadata, &mut &bytes[..]).await.unwrap()
}

#[tokio::test]
async fn a_release_of_many_chunks_downloads_byte_for_byte_by_direct_get() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;

    // The store's default chunks (128 KiB): several of them, the last one short.
    let big = release_bytes("0.95.0", 5 * 128 * 1024 + 12_345);
    let info = publish_release(&js, "0.95.0", &big, None).await;
    assert!(info.chunks > 5, "{} chunks", info.chunks);
    assert_eq!(download(&client, "0.95.0").await.unwrap(), big);

    // Small chunks: many more than one batch direct get asks for, read in several.
    let many = release_bytes("0.94.0", 300 * 1024 + 7);
    let info = publish_release(&js, "0.94.0", &many, Some(1024)).await;
    assert!(info.chunks > 300, "{} chunks", info.chunks);
    assert_eq!(download(&client, "0.94.0").await.unwrap(), many);

    // Published again under the same name: the new object, not a mix of both.
    let again = release_bytes("0.94.0", 200 * 1024);
    publish_release(&js, "0.94.0", &again, Some(4096)).await;
    assert_eq!(download(&client, "0.94.0").await.unwrap(), again);

    // The encoding of the info's subject is the object store's own.
    let stream = js.get_stream(object_store_stream_name(OBJ_AGENT_RELEASES)).await.unwrap();
    let meta = subject::object_meta(OBJ_AGENT_RELEASES, &release_key("0.94.0"));
    assert!(stream.direct_get_last_for_subject(meta).await.is_ok());
}

#[tokio::test]
async fn a_chunk_changed_at_the_broker_fails_the_sha256_check_and_is_not_installed() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let version = "0.93.0";
    let chunk = 64 * 1024;
    let bytes = release_bytes(version, 6 * chunk + 100);
    let info = publish_release(&js, version, &bytes, Some(chunk)).await;
    assert_eq!(download(&client, version).await.unwrap(), bytes, "intact, it downloads");

    // Someone with write access to the stream replaces the object's chunks with the same number of the same
    // sizes, one of them different: only the SHA-256 can tell.
    let chunks = subject::object_chunks(OBJ_AGENT_RELEASES, &info.nuid).unwrap();
    let stream = js.get_stream(object_store_stream_name(OBJ_AGENT_RELEASES)).await.unwrap();
    let mut parts = Vec::new();
    let mut next = 1;
    while parts.len() < info.chunks {
        let stored = stream.direct_get_next_for_subject(chunks.clone(), Some(next)).await.unwrap();
        next = stored.sequence + 1;
        parts.push(stored.payload.to_vec());
    }
    assert_eq!(parts.concat(), bytes);
    parts[3][17] ^= 0x5a;
    stream.purge().filter(&chunks).await.unwrap();
    for part in parts {
        js.publish(chunks.clone(), part.into()).await.unwrap().await.unwrap();
    }
    let err = download(&client, version).await.unwrap_err();
    assert!(matches!(err, UpdateError::Corrupt { .. }), "{err}");
    assert!(err.is_final(), "a corrupt release is not tried again");

    // An agent that follows a target of that version refuses it, says so, and keeps its executable.
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("kanade-agent");
    std::fs::write(&exe, b"the running binary").unwrap();
    let pc = PcId::new("pc-tampered").unwrap();
    let live = Arc::new(kanade_agent::liveconfig::LiveConfig::new(pc.clone(), Vec::new()));
    let layer = serde_json::json!({ "target_version": version }).to_string();
    live.apply(&subject::kv_entry("agent_config", "pcs.pc-tampered"), None, layer.as_bytes()).unwrap();
    let update = Arc::new(kanade_agent::update::SelfUpdate::new(exe.clone()));
    let (shutdown, tasks) = (tokio_util::sync::CancellationToken::new(), tokio_util::task::TaskTracker::new());
    let updater = kanade_agent::update::Updater::new(
        update.clone(),
        client.clone(),
        pc,
        live.clone(),
        shutdown.clone(),
        tasks.clone(),
    );
    updater.consider(&live.settings().0);
    let refused = eventually("the tampered release refused", PATIENCE, || async {
        let event = last_event(&js, "pc-tampered").await?;
        (event.event == "agent_update_refused").then_some(event)
    })
    .await;
    let error = refused.details["error"].as_str().unwrap();
    assert!(error.contains("SHA-256") && error.contains(&sha256_hex(&bytes)), "{error}");
    assert!(!update.updated());
    assert!(!shutdown.is_cancelled(), "the agent did not stop for an update");
    assert_eq!(std::fs::read(&exe).unwrap(), b"the running binary");
    assert!(!dir.path().join("kanade-agent.new").exists(), "nothing was staged");
    assert_eq!(std::fs::read_to_string(dir.path().join("kanade-agent.update-blocked")).unwrap(), version);
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}

#[tokio::test]
async fn a_missing_deleted_or_oversized_release_is_reported_and_tried_again_or_refused() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;

    // Never published: missing, and tried again (it may be published later).
    let err = download(&client, "0.92.0").await.unwrap_err();
    assert!(matches!(&err, UpdateError::Missing { key } if *key == release_key("0.92.0")), "{err}");
    assert!(!err.is_final());

    // Published, then deleted: missing too.
    publish_release(&js, "0.92.0", &release_bytes("0.92.0", 1000), None).await;
    assert!(download(&client, "0.92.0").await.is_ok());
    js.get_object_store(OBJ_AGENT_RELEASES).await.unwrap().delete(release_key("0.92.0")).await.unwrap();
    let err = download(&client, "0.92.0").await.unwrap_err();
    assert!(matches!(err, UpdateError::Missing { .. }), "{err}");

    // An info claiming more than an agent takes is refused before a byte of it is read.
    let meta = subject::object_meta(OBJ_AGENT_RELEASES, &release_key("0.91.0"));
    let info = serde_json::json!({
        "name": release_key("0.91.0"),
        "bucket": OBJ_AGENT_RELEASES,
        "nuid": "AbCdEfGhIjKlMnOpQrStUv",
        "size": 4_u64 << 30,
        "chunks": 32_768,
        "metadata": { "sha256": "00".repeat(32) },
    });
    js.publish(meta, info.to_string().into()).await.unwrap().await.unwrap();
    let err = download(&client, "0.91.0").await.unwrap_err();
    assert!(matches!(err, UpdateError::TooLarge { .. }) && err.is_final(), "{err}");

    // An info whose chunks hold more than it says is a failed download (tried again), not a longer binary.
    let real = publish_release(&js, "0.90.0", &release_bytes("0.90.0", 5000), Some(1000)).await;
    let meta = subject::object_meta(OBJ_AGENT_RELEASES, &release_key("0.90.0"));
    let mut lying = serde_json::to_value(&real).unwrap();
    lying["size"] = serde_json::json!(3000);
    js.publish(meta, lying.to_string().into()).await.unwrap().await.unwrap();
    let err = download(&client, "0.90.0").await.unwrap_err();
    assert!(matches!(err, UpdateError::Download { .. }) && !err.is_final(), "{err}");

    // No object store at all (a broker set up without it): a failed download, tried again.
    js.delete_object_store(OBJ_AGENT_RELEASES).await.unwrap();
    let err = download(&client, "0.92.0").await.unwrap_err();
    assert!(matches!(err, UpdateError::Download { .. }) && !err.is_final(), "{err}");
}
