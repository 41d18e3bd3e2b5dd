//! The dashboard's live performance end to end: the real backend (with the dashboard embedded), a real nats-server,
//! a real agent sampling this machine (rollups every 10 s, so a history exists), a job burning a CPU under a name of
//! its own and a job writing to disk with `fsync`, both fired through the API; and two PCs whose heartbeats are
//! published by hand, one with high CPU and one with no figures, for the Agents page's order. Driven in headless
//! Chromium by `web/e2e/perf.test.mjs` (playwright-core). Screenshots land in `target/dashboard-artifacts/perf-*.png`.
//!
//! It needs Node.js, `web/node_modules` and Chromium, as `tests/dashboard.rs` does: `cargo xtask web` obtains them.
//! Without them the test fails and says so; it never passes without having run the browser.

use std::time::Duration;

use kanade_shared::wire::Heartbeat;
use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::{Value, json};

mod support;

use support::browser;

/// Rollups travel agent → `PERF` → projector; the first one that saw the burner takes a rollup interval or two.
const PATIENCE: Duration = Duration::from_secs(90);
/// The agent sampling this machine.
const PERF_PC: &str = "perf-pc";
/// PCs whose heartbeats are published by hand: one says its host is busy, one says nothing of it.
const HOT_PC: &str = "hot-pc";
const QUIET_PC: &str = "quiet-pc";
/// Full: ties sort by pc id, so `hot-pc` heads the CPU order even while the burner fills this machine too.
const HOT_CPU: f32 = 100.0;
/// The CPU burner's process name: a copy of `yes` under this name, so it is recognisable in the process table.
const BURNER: &str = "kanade-uiburn";
/// How long each load runs at most; the test ends both when it ends, well before.
const LOAD_SECS: u32 = 280;

/// A job running `script` on whichever PCs it is fired at.
fn job(id: &str, script: &str) -> String {
    let script = script.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "id: {id}\nversion: \"1\"\ndescription: {id} (perf dashboard test)\nexecute:\n  shell: sh\n  script: |\n{script}  timeout: 5m\n"
    )
}

/// The loads' process groups, ended when the test ends however it ends. A run's shell leads its process group and
/// writes its pid here first; an agent dropped with the test ends its shells but not what they started, and a
/// burner left behind would burn into the next test.
struct Loads {
    pids: tempfile::TempDir,
}

impl Loads {
    /// Creates the job and fires it at `PERF_PC`; its script starts by noting its process group.
    async fn fire(&self, backend: &TestBackend, id: &str, script: &str) {
        let note = format!("echo $$ > '{}/{id}.pid'\n", self.pids.path().display());
        let (status, body) = backend.post("/api/jobs", &json!({ "manifest": job(id, &(note + script)) })).await;
        assert!(status == 200 || status == 201, "job create {id}: {status} {body}");
        let (status, body) = backend.post(&format!("/api/exec/{id}"), &json!({ "pcs": [PERF_PC] })).await;
        assert!(status == 200 || status == 201, "exec {id}: {status} {body}");
    }
}

impl Drop for Loads {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(self.pids.path()).into_iter().flatten().flatten() {
            let pid = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let pid = pid.trim();
            if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                let _ = std::process::Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).status();
            }
        }
    }
}

/// Polls `path` until `ready` accepts its body.
async fn until(backend: &TestBackend, what: &str, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(what, PATIENCE, || async {
        let (status, body) = backend.get(path).await;
        (status == 200 && ready(&body)).then_some(body)
    })
    .await
}

/// Whether this machine has a real block device with I/O on it (`/proc/diskstats`): in some containers and VMs
/// every device is a loop, RAM or zram device, or none is listed at all, and no disk figure can be non-zero.
fn has_real_disk() -> bool {
    let Ok(stats) = std::fs::read_to_string("/proc/diskstats") else { return false };
    stats.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let name = fields.get(2).copied().unwrap_or_default();
        let virtual_device = ["loop", "ram", "zram", "dm-", "md", "sr"].iter().any(|p| name.starts_with(p));
        // Sectors written (field 10) or read (field 6): the device is in use.
        let used = [5, 9].iter().any(|&i| fields.get(i).is_some_and(|v| *v != "0"));
        !virtual_device && used
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_performance_tab_works_in_a_real_browser() {
    init_logging();
    browser::require_prerequisites();

    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _js) = connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let page = reqwest::get(format!("{}/", backend.url())).await.expect("GET /").text().await.expect("page");
    assert!(
        page.contains("id=\"root\""),
        "the backend serves no built dashboard (was kanade-backend compiled before `cargo xtask web`?):\n{page}"
    );

    // The real agent: live samples every second while watched, a rollup every 10 s (the shortest allowed).
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = kanade_testkit::agent_config(&url, PERF_PC, &["lab"], data_dir.path());
    config.perf = kanade_shared::config::PerfConfig {
        interval: Duration::from_secs(1),
        rollup_interval: Duration::from_secs(10),
        top: 20,
    };
    let _agent = TestAgent::start_with(config, data_dir).await;

    // Two PCs that only ever sent one heartbeat: one says its host is busy, one (an older agent) says nothing.
    for (pc, cpu) in [(HOT_PC, Some(HOT_CPU)), (QUIET_PC, None)] {
        let heartbeat = Heartbeat {
            hostname: format!("{pc}.example"),
            os: "linux".into(),
            arch: "x86_64".into(),
            agent_version: "0.1.0".into(),
            host_cpu_percent: cpu,
            host_mem_percent: cpu.map(|_| 42.0),
            ..Heartbeat::minimal(kanade_shared::PcId::new(pc).unwrap(), chrono::Utc::now())
        };
        let subject = kanade_shared::subject::heartbeat(&heartbeat.pc_id);
        client.publish(subject, serde_json::to_vec(&heartbeat).unwrap().into()).await.expect("publish heartbeat");
    }
    client.flush().await.expect("flush");
    backend.wait_for_agents(3).await;

    // The loads. The burner is `yes` copied under a name of its own, in the run's process group (not under
    // `timeout`, which takes a group of its own and so outlives a killed run), ended by its script after
    // LOAD_SECS; the writer rewrites a small file with fsync, pausing between rounds, so the disk sees steady writes.
    let loads = Loads { pids: tempfile::tempdir().unwrap() };
    loads
        .fire(
            &backend,
            "burn-cpu",
            &format!(
                "dir=$(mktemp -d)\ncp \"$(command -v yes)\" \"$dir/{BURNER}\"\n\"$dir/{BURNER}\" > /dev/null &\n\
                 sleep {LOAD_SECS}\nkill $! 2>/dev/null\nrm -rf \"$dir\""
            ),
        )
        .await;
    loads
        .fire(
            &backend,
            "write-disk",
            &format!(
                "f=$(mktemp)\nend=$(( $(date +%s) + {LOAD_SECS} ))\nwhile [ \"$(date +%s)\" -lt \"$end\" ]; do\n  \
                 dd if=/dev/zero of=\"$f\" bs=1M count=8 conv=fsync 2>/dev/null\n  sleep 0.3\ndone\nrm -f \"$f\""
            ),
        )
        .await;

    // A rollup whose busiest process was the burner, so the 1 h history has a point that says so.
    until(
        &backend,
        "a rollup with the burner as its busiest process",
        &format!("/api/agents/{PERF_PC}/perf?since=1h"),
        |b| b["points"].as_array().is_some_and(|points| points.iter().any(|p| p["top_cpu"][0]["name"] == BURNER)),
    )
    .await;
    // The heartbeat carries the host's CPU: the Agents page has a figure to show for the real agent.
    until(&backend, "the agent's heartbeat with its host's CPU", &format!("/api/agents/{PERF_PC}"), |b| {
        b["host_cpu_percent"].is_number()
    })
    .await;

    let real_disk = has_real_disk();
    if !real_disk {
        tracing::warn!("this machine lists no real disk in /proc/diskstats: the disk figure is not checked");
    }
    let env = [
        ("KANADE_URL", backend.url()),
        ("KANADE_TOKEN", TEST_TOKEN.to_owned()),
        ("KANADE_PERF_PC", PERF_PC.to_owned()),
        ("KANADE_HOT_PC", HOT_PC.to_owned()),
        ("KANADE_QUIET_PC", QUIET_PC.to_owned()),
        ("KANADE_BURNER", BURNER.to_owned()),
        ("KANADE_REAL_DISK", if real_disk { "1" } else { "0" }.to_owned()),
    ];
    browser::run("e2e/perf.test.mjs", &env).await;
    // The loads end here with `loads`, whether the browser steps passed or not.
    drop(loads);
}
