//! What the browser tests share: where the dashboard and Chromium are, what a run needs (each with how to get it),
//! and one run of a `web/e2e/*.test.mjs` script under `node --test`, bounded in time, failing with its output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The whole browser run, building nothing: a hung browser must not hang the suite.
const BROWSER_PATIENCE: Duration = Duration::from_secs(300);

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

pub fn web() -> PathBuf {
    workspace().join("web")
}

fn chromium() -> PathBuf {
    std::env::var_os("KANADE_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails the test, saying what is missing and how to get it, unless the built dashboard, its npm packages, Chromium
/// and Node.js are all there: a browser test never passes without having run the browser.
pub fn require_prerequisites() {
    let web = web();
    let mut missing = Vec::new();
    if !web.join("dist/index.html").is_file() {
        missing.push("the built dashboard (web/dist)".to_owned());
    }
    if !web.join("node_modules/playwright-core").is_dir() {
        missing.push("web/node_modules (npm ci)".to_owned());
    }
    if !chromium().is_file() {
        missing.push(format!("Chromium at {} (Debian package `chromium`)", chromium().display()));
    }
    if std::process::Command::new("node").arg("--version").output().is_err() {
        missing.push("Node.js 20+ on PATH".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the browser test cannot run without {}; run `cargo xtask web` (it installs them), then the test again",
        missing.join(", ")
    );
}

/// Runs `web/<script>` with `env` (plus the artifacts dir and Chromium) and fails the test when a step fails or the
/// run outlasts its patience. Screenshots land in `target/dashboard-artifacts/`.
pub async fn run(script: &str, env: &[(&str, String)]) {
    let artifacts = workspace().join("target/dashboard-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let mut browser = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "--test-concurrency=1", script])
        .current_dir(web())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("KANADE_ARTIFACTS", &artifacts)
        .env("KANADE_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let status = match tokio::time::timeout(BROWSER_PATIENCE, browser.wait()).await {
        Ok(status) => status.expect("wait for node"),
        Err(_) => {
            let _ = browser.kill().await;
            panic!("the browser run did not finish within {BROWSER_PATIENCE:?}");
        }
    };
    assert!(status.success(), "browser steps failed ({status}); see the output above and {}", artifacts.display());
}
