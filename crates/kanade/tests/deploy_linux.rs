//! `deploy/linux/*.sh` against a temporary root (`--root DIR`): the broker, the backend and the agent installed with
//! a real `kanade security init` folder, their users made in the root's own user database (`useradd --prefix`),
//! every file with its owner and mode, the units accepted by `systemd-analyze verify --root`, a second run keeping
//! configs (and `--force-config` replacing them), bad arguments refused with their exit codes before anything is
//! touched, and `undeploy.sh` removing only each component's files, again and again. Needs root (as the scripts do).
#![cfg(unix)]

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn script(name: &str) -> PathBuf {
    repo().join("deploy/linux").join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(name: &str, args: &[&str]) -> Output {
    Command::new("sh").arg(script(name)).args(args).output().expect("run sh")
}

fn ok(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    assert!(out.status.success(), "{name} {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn fails(name: &str, args: &[&str], code: i32, wanted: &str) {
    let out = run(name, args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{name} {args:?}: {stderr}");
    assert!(stderr.contains(wanted), "{name} {args:?}: stderr does not say `{wanted}`: {stderr}");
}

/// A root with an empty system: the user database with root alone.
fn new_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
    std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(etc.join("gshadow"), "root:*::\n").unwrap();
    root
}

/// The numeric id of `name` in the root's passwd (or group) file.
fn id_in(root: &Path, file: &str, name: &str) -> Option<u32> {
    std::fs::read_to_string(root.join("etc").join(file))
        .unwrap()
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .and_then(|l| l.split(':').nth(2))
        .and_then(|id| id.parse().ok())
}

/// Asserts `path` (inside `root`) has `mode` and belongs to `user`:`group` of the root's own user database.
fn owned(root: &Path, path: &str, mode: u32, user: &str, group: &str) {
    let meta = std::fs::metadata(root.join(path.trim_start_matches('/'))).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}: mode {:o}", meta.permissions().mode());
    assert_eq!(Some(meta.uid()), id_in(root, "passwd", user), "{path}: owner");
    assert_eq!(Some(meta.gid()), id_in(root, "group", group), "{path}: group");
}

fn exists(root: &Path, path: &str) -> bool {
    root.join(path.trim_start_matches('/')).exists()
}

/// A `kanade security init` folder for a broker at /etc/nats keeping account JWTs under /var/lib/nats.
fn security(dir: &Path, broker_dir: &str, resolver_dir: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_kanade"))
        .args(["security", "init", "--dir", dir.to_str().unwrap(), "--broker-dir", broker_dir])
        .args(["--resolver-dir", resolver_dir])
        .output()
        .unwrap();
    assert!(out.status.success(), "security init: {}", text(&out.stderr));
}

/// `systemd-analyze verify --root` of the installed units, the root given what they name: the targets and `kill`.
/// Where systemd-analyze is not installed (no systemd), the test says so on stderr and goes on.
#[allow(clippy::print_stderr)]
fn verify_units(root: &Path) {
    if which::which("systemd-analyze").is_err() {
        eprintln!("systemd-analyze is not installed here: the units were not verified");
        return;
    }
    let units = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for entry in std::fs::read_dir("/usr/lib/systemd/system").unwrap().flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".target") && entry.path().is_file() {
            std::fs::copy(entry.path(), units.join(&name)).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy(which::which("kill").unwrap(), root.join("usr/bin/kill")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(
            ["kanade-agent.service", "kanade-backend.service", "nats-server.service"]
                .map(|u| format!("/etc/systemd/system/{u}")),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn the_broker_backend_and_agent_install_into_a_root_and_undeploy_leaves_nothing_of_theirs() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the deploy scripts need root (useradd, chown); so does this test"
    );
    let root = new_root();
    let r = root.path().to_str().unwrap();
    let sec = tempfile::tempdir().unwrap();
    security(sec.path(), "/etc/nats", "/var/lib/nats/jwt");
    let s = sec.path().to_str().unwrap();
    let bin = tempfile::tempdir().unwrap();
    for name in ["nats-server", "kanade-backend", "kanade-agent", "kanade-client"] {
        std::fs::copy("/bin/true", bin.path().join(name)).unwrap();
    }
    let b = |name: &str| bin.path().join(name).display().to_string();
    let trust_root = std::fs::read_to_string(sec.path().join("trust-root.pub")).unwrap().trim().to_owned();

    ok("deploy-nats.sh", &["--root", r, "--binary", &b("nats-server"), "--security-dir", s]);
    ok(
        "deploy-backend.sh",
        &[
            "--root",
            r,
            "--binary",
            &b("kanade-backend"),
            "--security-dir",
            s,
            "--static-token",
            "bootstrap-token-0123456789",
        ],
    );
    let agent = ["--root", r, "--binary", &b("kanade-agent"), "--nats-url", "nats://broker.example:4222", "--ca"];
    let ca = format!("{s}/ca.pem");
    let boot = format!("{s}/bootstrap.creds");
    let agent_args: Vec<&str> = agent
        .iter()
        .copied()
        .chain([
            ca.as_str(),
            "--bootstrap-creds",
            boot.as_str(),
            "--trust-root",
            trust_root.as_str(),
            "--enroll-token",
            "kanade_enroll_abc",
            "--groups",
            "office,lab",
        ])
        .collect();
    ok("deploy-agent.sh", &agent_args);
    ok("deploy-client.sh", &["--root", r, "--binary", &b("kanade-client")]);

    // Users of their own, in the root's database only; files with their owners and modes.
    assert!(id_in(root.path(), "passwd", "nats").is_some() && id_in(root.path(), "passwd", "kanade").is_some());
    owned(root.path(), "/usr/local/bin/nats-server", 0o755, "root", "root");
    owned(root.path(), "/etc/nats", 0o750, "root", "nats");
    owned(root.path(), "/etc/nats/nats-security.conf", 0o640, "root", "nats");
    owned(root.path(), "/etc/nats/nats-server-key.pem", 0o640, "root", "nats");
    owned(root.path(), "/var/lib/nats", 0o750, "nats", "nats");
    owned(root.path(), "/etc/kanade/backend.toml", 0o640, "root", "kanade");
    owned(root.path(), "/etc/kanade/security", 0o750, "root", "kanade");
    owned(root.path(), "/etc/kanade/security/backend-signing.key", 0o640, "root", "kanade");
    owned(root.path(), "/etc/kanade/backend.env", 0o640, "root", "kanade");
    owned(root.path(), "/var/lib/kanade/backend", 0o750, "kanade", "kanade");
    owned(root.path(), "/etc/kanade/agent.toml", 0o600, "root", "root");
    owned(root.path(), "/etc/kanade/agent.env", 0o600, "root", "root");
    owned(root.path(), "/etc/kanade/bootstrap.creds", 0o600, "root", "root");
    assert!(!exists(root.path(), "/etc/kanade/security/trust-root.key"), "the trust root stays offline");
    owned(root.path(), "/usr/local/bin/kanade-client", 0o755, "root", "root");
    owned(root.path(), "/etc/xdg/autostart/kanade-client.desktop", 0o644, "root", "root");
    let entry = std::fs::read_to_string(root.path().join("etc/xdg/autostart/kanade-client.desktop")).unwrap();
    assert!(entry.lines().any(|l| l == "Exec=/usr/local/bin/kanade-client"), "{entry}");
    let env = std::fs::read_to_string(root.path().join("etc/kanade/agent.env")).unwrap();
    for line in [
        "KANADE_NATS_URL=nats://broker.example:4222",
        "KANADE_ENROLL_TOKEN=kanade_enroll_abc",
        "KANADE_AGENT_GROUPS=office,lab",
        "KANADE_BOOTSTRAP_CREDS=/etc/kanade/bootstrap.creds",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in {env}");
    }
    assert!(env.contains(&format!("KANADE_TRUST_ROOT={trust_root}")));
    verify_units(root.path());

    // Again: configs kept; --force-config replaces them.
    let mine = root.path().join("etc/kanade/backend.toml");
    std::fs::write(&mine, "# edited by the operator\n").unwrap();
    let again = ok("deploy-backend.sh", &["--root", r, "--binary", &b("kanade-backend")]);
    assert!(again.contains("config /etc/kanade/backend.toml: kept"), "{again}");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "# edited by the operator\n");
    ok("deploy-backend.sh", &["--root", r, "--binary", &b("kanade-backend"), "--force-config"]);
    assert_ne!(std::fs::read_to_string(&mine).unwrap(), "# edited by the operator\n");

    // Undeploy: the service and binary; with --purge the rest, secrets kept on request; twice is fine.
    let out = ok("undeploy.sh", &["nats", "--root", r]);
    assert!(out.contains("binary /usr/local/bin/nats-server: removed"), "{out}");
    assert!(exists(root.path(), "/etc/nats/nats-server.conf"), "configs stay without --purge");
    ok("undeploy.sh", &["nats", "--root", r, "--purge", "--keep-secrets"]);
    assert!(exists(root.path(), "/etc/nats/nats-server-key.pem") && !exists(root.path(), "/etc/nats/nats-server.conf"));
    assert!(id_in(root.path(), "passwd", "nats").is_none());
    assert!(exists(root.path(), "/etc/kanade/backend.toml"), "another component's files are not touched");
    for component in ["nats", "backend", "agent", "client"] {
        ok("undeploy.sh", &[component, "--root", r, "--purge"]);
        let out = ok("undeploy.sh", &[component, "--root", r, "--purge"]);
        assert!(out.contains("not present, skipping") && !out.contains(": removed"), "{component} again: {out}");
    }
    let mut left: Vec<String> = walk(root.path())
        .into_iter()
        .map(|p| p.strip_prefix(root.path()).unwrap().display().to_string())
        .filter(|p| !p.starts_with("etc/") && !p.starts_with("usr/lib/systemd") && p != "usr/bin/kill")
        .collect();
    left.sort();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!exists(root.path(), "/etc/xdg/autostart/kanade-client.desktop"));
    assert_eq!(std::fs::read_to_string(root.path().join("etc/passwd")).unwrap(), "root:x:0:0:root:/root:/bin/sh\n");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn bad_arguments_are_refused_before_anything_is_touched() {
    let root = new_root();
    let r = root.path().to_str().unwrap();
    let before = walk(root.path());
    fails("deploy-nats.sh", &["--root", r], 2, "--binary is required");
    fails("deploy-nats.sh", &["--root", r, "--binary", "/bin/true", "--bogus"], 2, "unknown argument: --bogus");
    fails("deploy-backend.sh", &["--root", r, "--binary"], 2, "--binary needs a path");
    fails(
        "deploy-backend.sh",
        &["--root", r, "--binary", "/nonexistent/kanade-backend"],
        1,
        "is not an executable file",
    );
    fails("deploy-backend.sh", &["--root", r, "--binary", "/bin/true", "--static-token", "short"], 1, "at least 16");
    fails(
        "deploy-backend.sh",
        &["--root", r, "--binary", "/bin/true", "--static-token", "abcdefghijklmnop$(id)"],
        1,
        "letters, digits",
    );
    fails(
        "deploy-agent.sh",
        &["--root", r, "--binary", "/bin/true", "--nats-url", "nats://x\nKANADE_TRUST_ROOT=evil"],
        1,
        "cannot carry",
    );
    fails("deploy-agent.sh", &["--root", r, "--binary", "/bin/true", "--trust-root", "not-a-key"], 1, "ed25519");
    fails("deploy-agent.sh", &["--root", "/nonexistent/root", "--binary", "/bin/true"], 1, "is not a directory");
    let huge = "x".repeat(100_000);
    fails(
        "deploy-agent.sh",
        &["--root", r, "--binary", "/bin/true", "--groups", &format!("a;{huge}")],
        1,
        "cannot carry",
    );
    fails("deploy-client.sh", &["--root", r, "--binary", "/bin/true", "--force-config"], 2, "does not apply");
    fails("deploy-client.sh", &["--root", r], 2, "--binary is required");
    fails("undeploy.sh", &["--root", r], 2, "name the component");
    fails("undeploy.sh", &["agent", "backend", "--root", r], 2, "one component at a time");
    fails("undeploy.sh", &["agent", "--keep-secrets", "--root", r], 2, "goes with --purge");
    assert_eq!(walk(root.path()), before, "nothing was written");

    // A security folder made for another broker folder: refused, with how to make the right one.
    if nix::unistd::Uid::effective().is_root() {
        let sec = tempfile::tempdir().unwrap();
        security(sec.path(), "/opt/broker", "/opt/broker/jwt");
        let s = sec.path().to_str().unwrap();
        fails(
            "deploy-nats.sh",
            &["--root", r, "--binary", "/bin/true", "--security-dir", s],
            1,
            "--broker-dir /etc/nats",
        );
    }
}

/// The documents' `build-release -Roles ...` runs `cargo xtask dist` with the same options (a stand-in `cargo`
/// records what it was given: building the bundles themselves is `cargo xtask dist`'s test), and refuses what it does
/// not know before running anything.
#[test]
fn build_release_runs_xtask_dist_with_the_documents_options() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = dir.path().join("cargo");
    let said = dir.path().join("args");
    std::fs::write(&cargo, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", said.display())).unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(repo().join("build-release")).args(args).env("CARGO", &cargo).output().unwrap()
    };
    let out = run(&["-Roles", "nats,backend", "-Roles", "agent", "-Target", "x86_64-pc-windows-msvc", "-Out", "b d"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let args = std::fs::read_to_string(&said).unwrap();
    assert_eq!(args, "xtask\ndist\n--roles\nnats,backend,agent\n--target\nx86_64-pc-windows-msvc\n--out\nb d\n");
    std::fs::remove_file(&said).unwrap();
    for (args, wanted) in [(&["-Roles"][..], "needs a list"), (&["-Bogus"][..], "unknown argument: -Bogus")] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(wanted), "{args:?}: {}", text(&out.stderr));
        assert!(!said.exists(), "{args:?} ran cargo");
    }
}
