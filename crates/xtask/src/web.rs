//! `cargo xtask web`: everything the dashboard needs, from the registries this project may use — the npm
//! packages pinned in `web/package-lock.json` (`npm ci`), the production build in `web/dist/` that kanade-backend
//! embeds, and, for the browser tests, Debian's `chromium` (playwright-core cannot download its own browser here).
//! Node.js itself must be installed; without it the backend still builds and serves a page saying how to build
//! the dashboard.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::workspace_root;

/// Vite 8 needs Node 20.19 or newer.
const MIN_NODE: (u32, u32) = (20, 19);
const CHROMIUM: &str = "/usr/bin/chromium";

/// Node's version, if `node` runs.
fn node_version() -> Option<(u32, u32)> {
    let out = Command::new("node").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().trim_start_matches('v').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether the dashboard can be built here.
pub fn node_available() -> bool {
    node_version().is_some_and(|v| v >= MIN_NODE)
}

fn npm(web: &Path, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("xtask: npm {} (in web/)", args.join(" "));
    let status = Command::new("npm")
        .args(args)
        .args(["--no-audit", "--no-fund"].iter().filter(|_| args.first() == Some(&"ci")))
        .current_dir(web)
        .status()
        .context("cannot run npm")?;
    if !status.success() {
        bail!("`npm {}` failed in web/", args.join(" "));
    }
    Ok(())
}

/// Installs the pinned packages when `package-lock.json` changed since the last install, then builds `web/dist`.
pub fn build() -> anyhow::Result<()> {
    let Some(version) = node_version() else {
        bail!("Node.js is not installed: install Node.js {}.{}+ to build the dashboard", MIN_NODE.0, MIN_NODE.1)
    };
    if version < MIN_NODE {
        bail!(
            "Node.js {}.{} is too old to build the dashboard: {}.{}+ is needed",
            version.0,
            version.1,
            MIN_NODE.0,
            MIN_NODE.1
        );
    }
    let web = workspace_root().join("web");
    let lock = web.join("package-lock.json");
    // npm ci writes node_modules/.package-lock.json; when it is at least as new as the lock file, nothing changed.
    let installed = web.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&installed).is_none_or(|i| modified(&lock).is_some_and(|l| l > i)) {
        npm(&web, &["ci"])?;
    }
    // A build rewrites every file in dist/, which makes cargo re-embed and relink the backend: skip it when
    // nothing it is built from changed since.
    if newest_source(&web)
        .is_some_and(|source| modified(&web.join("dist/index.html")).is_some_and(|built| built > source))
    {
        eprintln!("xtask: web/dist is up to date");
        return Ok(());
    }
    npm(&web, &["run", "build"])
}

/// When the newest file the build reads was last changed: `src/`, `index.html`, the configs, the lock file, and the
/// API's OpenAPI document, which the dashboard's types are generated from.
fn newest_source(web: &Path) -> Option<std::time::SystemTime> {
    fn walk(path: &Path, newest: &mut Option<std::time::SystemTime>) {
        let Ok(meta) = std::fs::metadata(path) else { return };
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(at) = meta.modified() {
            *newest = (*newest).max(Some(at));
        }
    }
    let mut newest = None;
    for part in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "tsconfig.json",
        "vite.config.ts",
        "../schema/openapi.json",
    ] {
        walk(&web.join(part), &mut newest);
    }
    newest
}

/// Debian's Chromium for the browser tests: installed with apt when missing and this user may.
pub fn chromium() -> anyhow::Result<()> {
    if Path::new(CHROMIUM).is_file() {
        return Ok(());
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root || !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "the browser tests need Chromium at {CHROMIUM}: install Debian's `chromium` package (apt-get install chromium)"
        );
    }
    eprintln!("xtask: installing Debian's chromium for the browser tests");
    let install = |update: bool| -> anyhow::Result<bool> {
        if update {
            Command::new("apt-get").args(["update", "-q"]).status().context("cannot run apt-get update")?;
        }
        Ok(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get install")?
            .success())
    };
    // The package lists may be stale on a fresh machine: update them only if the first try fails.
    if !install(false)? && !install(true)? {
        bail!("`apt-get install chromium` failed");
    }
    Ok(())
}

/// The front-end unit tests (Vitest); returns how many passed.
pub fn unit_tests() -> anyhow::Result<usize> {
    let web = workspace_root().join("web");
    eprintln!("xtask: npx vitest run (in web/)");
    let out = Command::new("npx")
        .args([
            "vitest",
            "run",
            "--reporter=default",
            "--reporter=json",
            "--outputFile.json=node_modules/.vitest-report.json",
        ])
        .current_dir(&web)
        .status()
        .context("cannot run vitest")?;
    if !out.success() {
        bail!("front-end unit tests failed");
    }
    let report = std::fs::read_to_string(web.join("node_modules/.vitest-report.json"))
        .context("cannot read the vitest report")?;
    let json: serde_json::Value = serde_json::from_str(&report).context("the vitest report is not JSON")?;
    Ok(json["numPassedTests"].as_u64().unwrap_or(0) as usize)
}
