//! `cargo xtask dist [--roles agent,backend,nats] [--target TRIPLE] [--out DIR] [--nats-server PATH]`: release bundles,
//! one folder (and `.tar.gz`) per role, each with its binaries, example configs, install and undeploy scripts, the
//! runbook, the installer job manifests with their scripts, and `SHA256SUMS` (as `sha256sum -c` reads it) over every
//! file in it.
//!
//! The build is `cargo build --profile dist --locked` (the release build without debug info, stripped; with
//! `--target` when given) into `target/[<target>/]dist`; the bundles go to `target/bundles` and are put together
//! by [`assemble`], which the tests run on stand-in binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

/// What can be bundled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Agent,
    Backend,
    Nats,
}

impl Role {
    fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "agent" => Ok(Role::Agent),
            "backend" => Ok(Role::Backend),
            "nats" => Ok(Role::Nats),
            "client" => bail!("role `client`: kanade-client does not exist yet (issue #21), so it has no bundle"),
            other => bail!("unknown role `{}`: use agent, backend, nats", other.chars().take(40).collect::<String>()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Backend => "backend",
            Role::Nats => "nats",
        }
    }

    /// The kanade binaries in the bundle (the broker's comes from elsewhere).
    fn binaries(self) -> &'static [&'static str] {
        match self {
            Role::Agent => &["kanade-agent"],
            // The CLI travels with the backend: `kanade jetstream setup`, `kanade user add`, the runbook's steps.
            Role::Backend => &["kanade-backend", "kanade"],
            Role::Nats => &[],
        }
    }

    /// Files of the repository copied into the bundle, at the same relative paths.
    fn files(self) -> &'static [&'static str] {
        const LINUX: [&str; 2] = ["deploy/linux/common.sh", "deploy/linux/undeploy.sh"];
        const WINDOWS: [&str; 2] = ["deploy/windows/Kanade.Deploy.psm1", "deploy/windows/undeploy.ps1"];
        match self {
            Role::Agent => &[
                "deploy/agent.example.toml",
                "deploy/kanade-agent.service",
                "deploy/install-agent.ps1",
                "deploy/linux/deploy-agent.sh",
                LINUX[0],
                LINUX[1],
                "deploy/windows/deploy-agent.ps1",
                WINDOWS[0],
                WINDOWS[1],
                "docs/INSTALL.md",
            ],
            Role::Backend => &[
                "deploy/backend.example.toml",
                "deploy/kanade-backend.service",
                "deploy/linux/deploy-backend.sh",
                "deploy/linux/deploy-client.sh",
                LINUX[0],
                LINUX[1],
                "deploy/windows/deploy-backend.ps1",
                "deploy/windows/deploy-client.ps1",
                WINDOWS[0],
                WINDOWS[1],
                "docs/INSTALL.md",
                "docs/RELIABILITY.md",
            ],
            Role::Nats => &[
                "deploy/nats-server.conf",
                "deploy/nats-server.service",
                "deploy/linux/deploy-nats.sh",
                LINUX[0],
                LINUX[1],
                "deploy/windows/deploy-nats.ps1",
                WINDOWS[0],
                WINDOWS[1],
                "docs/INSTALL.md",
            ],
        }
    }
}

/// What `dist` was asked for.
#[derive(Debug)]
pub struct Options {
    pub roles: Vec<Role>,
    pub target: Option<String>,
    pub out: PathBuf,
    pub nats_server: Option<PathBuf>,
}

impl Options {
    pub fn parse(args: &[String], repo: &Path) -> anyhow::Result<Self> {
        let mut options = Options {
            roles: vec![Role::Agent, Role::Backend, Role::Nats],
            target: None,
            out: repo.join("target/bundles"),
            nats_server: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| args.next().cloned().with_context(|| format!("{flag} needs a value"));
            match arg.as_str() {
                "--roles" => {
                    let list = value("--roles")?;
                    let roles = list.split(',').map(|r| Role::parse(r.trim())).collect::<anyhow::Result<Vec<_>>>()?;
                    if roles.is_empty() {
                        bail!("--roles names no role");
                    }
                    options.roles = roles;
                }
                "--target" => {
                    let target = value("--target")?;
                    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    {
                        bail!("--target `{}` is not a target triple", target.chars().take(60).collect::<String>());
                    }
                    options.target = Some(target);
                }
                "--out" => options.out = PathBuf::from(value("--out")?),
                "--nats-server" => options.nats_server = Some(PathBuf::from(value("--nats-server")?)),
                other => bail!("unknown argument `{}`", other.chars().take(60).collect::<String>()),
            }
        }
        Ok(options)
    }
}

/// Builds the release binaries and the bundles; returns the bundles' folders.
pub fn run(args: &[String], repo: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let options = Options::parse(args, repo)?;
    let version = workspace_version(repo)?;
    let target = options.target.clone().unwrap_or_else(host_target);
    let windows = target.contains("windows");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.current_dir(repo).args(["build", "--profile", "dist", "--locked"]);
    for package in ["kanade-agent", "kanade-backend", "kanade"] {
        build.args(["-p", package]);
    }
    let mut binaries = repo.join("target/dist");
    if let Some(target) = &options.target {
        build.args(["--target", target]);
        binaries = repo.join("target").join(target).join("dist");
    }
    eprintln!("dist: cargo build --profile dist for {target}");
    let status = build.status().context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build --profile dist failed for {target}");
    }
    let nats = if options.roles.contains(&Role::Nats) {
        Some(match &options.nats_server {
            Some(path) => path.clone(),
            None if options.target.is_none() => crate::nats_server()?,
            None => bail!("role nats for {target}: pass --nats-server with that platform's nats-server binary"),
        })
    } else {
        None
    };
    let mut out = Vec::new();
    for role in &options.roles {
        let bundle = assemble(&Bundle {
            role: *role,
            version: &version,
            target: &target,
            windows,
            repo,
            binaries: &binaries,
            nats_server: nats.as_deref(),
            out: &options.out,
        })?;
        archive(&bundle)?;
        eprintln!("dist: {}", bundle.display());
        out.push(bundle);
    }
    Ok(out)
}

/// The version every crate shares (`[workspace.package] version`).
fn workspace_version(repo: &Path) -> anyhow::Result<String> {
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).context("cannot read Cargo.toml")?;
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package && let Some(value) = line.strip_prefix("version") {
            let value = value.trim_start().trim_start_matches('=').trim().trim_matches('"');
            return Ok(value.to_owned());
        }
    }
    bail!("Cargo.toml has no [workspace.package] version")
}

fn host_target() -> String {
    let out = Command::new("rustc").arg("-vV").output().ok();
    out.and_then(|o| {
        String::from_utf8_lossy(&o.stdout).lines().find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
    })
    .unwrap_or_else(|| format!("{}-unknown-{}", std::env::consts::ARCH, std::env::consts::OS))
}

/// One bundle to put together.
pub struct Bundle<'a> {
    pub role: Role,
    pub version: &'a str,
    pub target: &'a str,
    pub windows: bool,
    pub repo: &'a Path,
    /// Where the built kanade binaries are.
    pub binaries: &'a Path,
    /// The nats-server for the `nats` role.
    pub nats_server: Option<&'a Path>,
    pub out: &'a Path,
}

/// Puts `bundle` together in `<out>/kanade-<role>-<version>-<target>/` (replacing an older one) and writes its
/// `SHA256SUMS`; returns the folder.
pub fn assemble(bundle: &Bundle<'_>) -> anyhow::Result<PathBuf> {
    let name = format!("kanade-{}-{}-{}", bundle.role.name(), bundle.version, bundle.target);
    let dir = bundle.out.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("bin"))?;
    let exe = if bundle.windows { ".exe" } else { "" };
    for binary in bundle.role.binaries() {
        let from = bundle.binaries.join(format!("{binary}{exe}"));
        copy(&from, &dir.join("bin").join(format!("{binary}{exe}")))?;
    }
    if bundle.role == Role::Nats {
        let from = bundle.nats_server.context("the nats role needs a nats-server binary")?;
        copy(from, &dir.join("bin").join(format!("nats-server{exe}")))?;
    }
    for file in bundle.role.files() {
        copy(&bundle.repo.join(file), &dir.join(file))?;
    }
    // The installer jobs (and the scripts they name) for what this role installs elsewhere: the backend's admin
    // fires them at the hosts to update.
    if bundle.role == Role::Backend {
        for entry in std::fs::read_dir(bundle.repo.join("jobs"))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("install-kanade-") && name.ends_with(".yaml") {
                copy(&entry.path(), &dir.join("jobs").join(&name))?;
            }
        }
        let scripts = bundle.repo.join("jobs/scripts");
        if scripts.is_dir() {
            for entry in std::fs::read_dir(&scripts)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("install-kanade.") {
                    copy(&entry.path(), &dir.join("jobs/scripts").join(&name))?;
                }
            }
        }
    }
    write_sums(&dir)?;
    Ok(dir)
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} into the bundle", from.display()))?;
    Ok(())
}

/// `SHA256SUMS` in `dir`: one `<hex>  <relative path>` line per file, sorted, as `sha256sum -c` checks them.
fn write_sums(dir: &Path) -> anyhow::Result<()> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let mut sums = String::new();
    for file in files {
        let relative = file.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
        let digest = Sha256::digest(std::fs::read(&file)?);
        sums.push_str(&format!("{digest:x}  {relative}\n"));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums)?;
    Ok(())
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.file_name().is_some_and(|n| n != "SHA256SUMS") {
            files.push(path);
        }
    }
    Ok(())
}

/// `<bundle>.tar.gz` beside the folder, with the system's tar.
fn archive(dir: &Path) -> anyhow::Result<()> {
    let (parent, name) = (dir.parent().context("bundle has no parent")?, dir.file_name().context("bundle name")?);
    let archive = format!("{}.tar.gz", name.to_string_lossy());
    let status = Command::new("tar")
        .current_dir(parent)
        .args(["-czf", &archive])
        .arg(name)
        .status()
        .context("cannot run tar")?;
    if !status.success() {
        bail!("tar failed for {}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
    }

    #[test]
    fn each_bundle_has_its_binaries_configs_scripts_and_checksums() {
        let repo = repo();
        let built = tempfile::tempdir().unwrap();
        for name in ["kanade-agent", "kanade-backend", "kanade", "nats-server"] {
            std::fs::write(built.path().join(name), format!("stand-in {name}")).unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let nats = built.path().join("nats-server");
        for role in [Role::Agent, Role::Backend, Role::Nats] {
            let dir = assemble(&Bundle {
                role,
                version: "1.2.3",
                target: "x86_64-unknown-linux-gnu",
                windows: false,
                repo: &repo,
                binaries: built.path(),
                nats_server: Some(&nats),
                out: out.path(),
            })
            .unwrap();
            assert_eq!(
                dir.file_name().unwrap().to_string_lossy(),
                format!("kanade-{}-1.2.3-x86_64-unknown-linux-gnu", role.name())
            );
            let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
            // `sha256sum -c` agrees with every line.
            let check = Command::new("sha256sum")
                .arg("-c")
                .arg("--quiet")
                .arg("SHA256SUMS")
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(check.status.success(), "{role:?}: {}", String::from_utf8_lossy(&check.stdout));
            for file in role.files() {
                assert!(sums.contains(&format!("  {file}\n")), "{role:?} lacks {file}: {sums}");
            }
            for binary in role.binaries() {
                assert!(sums.contains(&format!("  bin/{binary}\n")), "{role:?} lacks {binary}");
            }
            assert_eq!(role == Role::Nats, dir.join("bin/nats-server").exists());
            for installer in [
                "jobs/install-kanade-backend.yaml",
                "jobs/install-kanade-nats-sh.yaml",
                "jobs/scripts/install-kanade.sh",
                "jobs/scripts/install-kanade.ps1",
            ] {
                assert_eq!(role == Role::Backend, sums.contains(&format!("  {installer}\n")), "{role:?} {installer}");
            }
            assert!(!sums.contains("trust-root.key") && !sums.contains(".creds"), "no secrets in a bundle");
        }
        // Again: the bundle is replaced, not merged into.
        let stale = out.path().join("kanade-agent-1.2.3-x86_64-unknown-linux-gnu/stale");
        std::fs::write(&stale, "old").unwrap();
        let bundle = Bundle {
            role: Role::Agent,
            version: "1.2.3",
            target: "x86_64-pc-windows-msvc",
            windows: true,
            repo: &repo,
            binaries: built.path(),
            nats_server: None,
            out: out.path(),
        };
        assert!(assemble(&bundle).unwrap_err().to_string().contains("kanade-agent.exe"), "a Windows bundle takes .exe");
        std::fs::write(built.path().join("kanade-agent.exe"), "stand-in").unwrap();
        let dir = assemble(&bundle).unwrap();
        assert!(dir.join("bin/kanade-agent.exe").exists() && dir.join("deploy/install-agent.ps1").exists());
    }

    #[test]
    fn arguments_are_checked() {
        let repo = repo();
        let parse = |args: &[&str]| Options::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), &repo);
        let all = parse(&[]).unwrap();
        assert_eq!(all.roles, [Role::Agent, Role::Backend, Role::Nats]);
        assert_eq!(parse(&["--roles", "agent, nats"]).unwrap().roles, [Role::Agent, Role::Nats]);
        assert!(parse(&["--roles", "client"]).unwrap_err().to_string().contains("issue #21"));
        assert!(parse(&["--roles", "agent,x"]).unwrap_err().to_string().contains("unknown role `x`"));
        assert!(parse(&["--roles"]).unwrap_err().to_string().contains("needs a value"));
        assert!(parse(&["--target", "x86_64; rm -rf /"]).unwrap_err().to_string().contains("not a target triple"));
        assert!(parse(&["--bogus"]).unwrap_err().to_string().contains("unknown argument"));
        assert_eq!(
            parse(&["--target", "x86_64-pc-windows-msvc"]).unwrap().target.as_deref(),
            Some("x86_64-pc-windows-msvc")
        );
        assert_eq!(workspace_version(&repo).unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
