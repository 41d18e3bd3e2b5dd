//! The agent-mediated update of the backend (issue #20), end to end on Linux: a new backend build is published with
//! `kanade app publish`, the shipped installer script (jobs/scripts/install-kanade.sh, knobs filled in as an
//! operator fills them) is published with `kanade script publish` and fired as the shipped job
//! (jobs/install-kanade-backend-sh.yaml) at the agent on the backend's host. The script downloads the package from
//! the backend it is about to stop, checks it, stops the service, swaps the binary and starts it: the backend comes
//! back as the new version over the same database, with every result from before, the installer's own result
//! (published while the backend was away) and new work. A package whose hash is not the one given is refused before
//! anything is touched.
//!
//! The host has no systemd here: the script's `systemctl` is a stand-in on the agent's PATH that starts and stops
//! the backend from an environment file, as systemd would from the unit (the shipped unit itself is checked by
//! crates/kanade/tests/deploy_linux.rs).
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Parser as _;
use kanade_faults::{Agent, Backend, PATIENCE, TOKEN, Tally, bins, manifest};
use kanade_testkit::{NatsServer, connect, eventually, init_logging};

/// systemd's `systemctl start|stop|is-active [--quiet] kanade-backend[.service]`, for this test only: the service
/// runs `$dir/exec` in a session of its own with the variables of `$dir/env` (as `EnvironmentFile=`), its pid in
/// `$dir/pid`. A process is gone once it is a zombie: this machine's init does not reap orphans.
const SYSTEMCTL: &str = r#"#!/bin/sh
set -eu
dir=$KANADE_TEST_SERVICE_DIR
cmd=$1; shift
unit=''
for arg; do case "$arg" in -*) ;; *) unit=$arg ;; esac; done
case "$unit" in kanade-backend|kanade-backend.service) ;; *) echo "systemctl: unknown unit '$unit'" >&2; exit 5 ;; esac
alive() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat")" != Z ]; }
pid=$(cat "$dir/pid" 2>/dev/null || true)
case "$cmd" in
    start)
        if [ -n "$pid" ] && alive "$pid"; then exit 0; fi
        setsid -f env -u KANADE_DATABASE_URL -u DATABASE_URL -u KANADE_BACKEND_INSTANCE sh -c \
            'echo $$ > "$1/pid"; set -a; . "$1/env"; exec "$(cat "$1/exec")" >>"$1/backend.log" 2>&1' sh "$dir" </dev/null
        for _ in $(seq 50); do [ -s "$dir/pid" ] && [ "$(cat "$dir/pid")" != "$pid" ] && exit 0; sleep 0.1; done
        exit 1 ;;
    stop)
        [ -n "$pid" ] || exit 0
        kill -TERM "$pid" 2>/dev/null || exit 0
        while alive "$pid"; do sleep 0.1; done ;;
    is-active)
        [ -n "$pid" ] && alive "$pid" ;;
    *) echo "systemctl: $cmd is not supported here" >&2; exit 1 ;;
esac
"#;

/// The backend as a "service" of [`SYSTEMCTL`]; stopped when dropped.
struct Service {
    dir: tempfile::TempDir,
}

impl Service {
    fn new(backend: &Backend, binary: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        write_executable(&bin.join("systemctl"), SYSTEMCTL);
        let env: String = backend.service_env().iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
        std::fs::write(dir.path().join("env"), env).unwrap();
        std::fs::write(dir.path().join("exec"), binary.display().to_string()).unwrap();
        Self { dir }
    }

    /// The variables that make a script's `systemctl` this one.
    fn script_env(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            ("PATH".into(), format!("{}:{path}", self.dir.path().join("bin").display())),
            ("KANADE_TEST_SERVICE_DIR".into(), self.dir.path().display().to_string()),
        ]
    }

    fn systemctl(&self, command: &str) {
        let status = Command::new(self.dir.path().join("bin/systemctl"))
            .args([command, "kanade-backend.service"])
            .env("KANADE_TEST_SERVICE_DIR", self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "systemctl {command}: {status}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("backend.log")).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new(self.dir.path().join("bin/systemctl"))
            .args(["stop", "kanade-backend.service"])
            .env("KANADE_TEST_SERVICE_DIR", self.dir.path())
            .status();
    }
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A copy of the backend binary whose embedded version (`\0KANADE-BACKEND-VERSION:` and a 64-byte slot) is
/// `version`, as another build of it would be.
fn relabelled(built: &str, version: &str, to: &Path) {
    let mut bytes = std::fs::read(&bins().backend).unwrap();
    let marker = [b"\0KANADE-BACKEND-VERSION:".as_slice(), built.as_bytes(), b"\0"].concat();
    let at = bytes.windows(marker.len()).position(|w| w == marker.as_slice()).expect("the backend's version marker");
    let slot = at + marker.len() - built.len() - 1;
    bytes[slot..slot + 64].fill(0);
    bytes[slot..slot + version.len()].copy_from_slice(version.as_bytes());
    write_executable(to, "");
    std::fs::write(to, bytes).unwrap();
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

async fn kanade(url: &str, args: &[&str]) -> ExitCode {
    let fleet = kanade_testkit::fleet().cli_args();
    let fleet: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let cli = kanade::Cli::try_parse_from([&["kanade", "--nats-url", url], fleet.as_slice(), args].concat()).unwrap();
    kanade::run(cli).await.unwrap()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// The shipped installer script with its knobs set, as an operator sets them in a copy.
fn filled_script(knobs: &[(&str, String)]) -> String {
    let mut script = std::fs::read_to_string(repo("jobs/scripts/install-kanade.sh")).unwrap();
    for (name, value) in knobs {
        let line = script.lines().find(|l| l.starts_with(&format!("{name}="))).expect("the knob").to_owned();
        script = script.replacen(&line, &format!("{name}='{value}'"), 1);
    }
    script
}

/// The shipped job as `id`, for the script object `<id>/<version>`, fired at `pc`.
fn installer_job(id: &str, version: &str, pc: &str) -> String {
    let yaml = std::fs::read_to_string(repo("jobs/install-kanade-backend-sh.yaml")).unwrap();
    let yaml = yaml
        .replace("id: install-kanade-backend-sh\n", &format!("id: {id}\n"))
        .replace("install-kanade-backend-sh/0.43.0", &format!("{id}/{version}"))
        .replace("\"0.43.0\"", &format!("\"{version}\""));
    format!("{yaml}target:\n  pcs: [{pc}]\n")
}

#[tokio::test]
async fn an_installer_job_updates_the_backend_on_its_host_and_nothing_is_lost() {
    init_logging();
    let nats = NatsServer::start_durable();
    let url = nats.url();
    let _ = connect(&url).await;
    let host = tempfile::tempdir().unwrap();
    let installed = host.path().join("kanade-backend");
    std::fs::copy(&bins().backend, &installed).unwrap();

    // The backend runs from `installed` as a service, over the database a first start made.
    let mut backend = Backend::start(&url).await;
    let built = backend.health().await.unwrap()["version"].as_str().unwrap().to_owned();
    assert!(backend.stop(PATIENCE).await.is_some_and(|s| s.success()));
    let service = Service::new(&backend, &installed);
    service.systemctl("start");
    eventually("the service's backend answers", PATIENCE, || async { backend.health().await }).await;
    let agent = Agent::start_with_env(&url, "host-1", "servers", service.script_env());
    backend.wait_for_agents(1).await;

    // Work from before the update.
    let before = backend.deploy(&manifest("before-update", 0, &[("servers", "0s")])).await;
    let view = backend.wait_until_answered(&before, PATIENCE).await;
    assert_eq!(view["by_status"]["ok"], 1, "{view}");

    // The next build, published as an operator publishes it.
    let next = "9.9.9";
    let package = host.path().join("kanade-backend-next");
    relabelled(&built, next, &package);
    assert_eq!(
        kanade(&url, &["app", "publish", "kanade-backend", next, package.to_str().unwrap()]).await,
        ExitCode::SUCCESS
    );
    // A build that names itself but does not run: the service does not come back, so the previous one is put back.
    let broken_version = "9.9.8";
    let broken = host.path().join("kanade-backend-broken");
    write_executable(&broken, "#!/bin/sh\n[ \"$1\" = --version ] && echo 'kanade-backend 9.9.8' && exit 0\nexit 3\n");
    assert_eq!(
        kanade(&url, &["app", "publish", "kanade-backend", broken_version, broken.to_str().unwrap()]).await,
        ExitCode::SUCCESS
    );
    let knobs = |version: &str, sha: String| {
        vec![
            ("Component", "kanade-backend".to_owned()),
            ("AgentSourceUrl", format!("{}/api/app-packages/kanade-backend/{version}", backend.base_url())),
            ("AgentSourceVersion", version.to_owned()),
            ("AgentSourceSha256", sha),
            ("AgentSourceAuthToken", TOKEN.to_owned()),
            ("InstallPath", installed.display().to_string()),
            ("HealthUrl", format!("{}/health", backend.base_url())),
            ("StartTimeout", "5".to_owned()),
            ("SettleSeconds", "1".to_owned()),
        ]
    };
    let fire = |id: &'static str, version: &'static str, script: String| {
        let (url, backend) = (url.clone(), &backend);
        async move {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), script).unwrap();
            let published = kanade(&url, &["script", "publish", id, version, file.path().to_str().unwrap()]).await;
            assert_eq!(published, ExitCode::SUCCESS);
            let exec = backend.deploy(&installer_job(id, version, "host-1")).await;
            (exec.clone(), backend.wait_until_answered(&exec, PATIENCE).await)
        }
    };

    // A package that is not the one asked for is refused, and nothing changes.
    let untouched = sha256(&installed);
    let (_, view) = fire("install-wrong-hash", next, filled_script(&knobs(next, "0".repeat(64)))).await;
    assert_eq!(view["by_status"]["failed"], 1, "{view}");
    assert_eq!(sha256(&installed), untouched);
    assert_eq!(backend.health().await.unwrap()["version"], built.as_str());

    // One that does not come up: rolled back, the job failed, the previous backend serving again.
    let (exec, view) =
        fire("install-broken", broken_version, filled_script(&knobs(broken_version, sha256(&broken)))).await;
    assert_eq!(view["by_status"]["failed"], 1, "{view}\n{}", service.log());
    let results = backend.get(&format!("/api/executions/{exec}/results")).await.unwrap();
    assert!(results.to_string().contains("the previous version was restored"), "{results}");
    assert_eq!(sha256(&installed), untouched);
    eventually("the previous backend serves again", PATIENCE, || async {
        (backend.health().await?["version"] == built.as_str()).then_some(())
    })
    .await;

    // The real one: the backend stops, is swapped and comes back as the new version.
    let (exec, view) = fire("install-kanade-backend-sh", next, filled_script(&knobs(next, sha256(&package)))).await;
    assert_eq!(view["by_status"]["ok"], 1, "{view}\n{}", service.log());
    assert_eq!(sha256(&installed), sha256(&package));
    assert_eq!(backend.health().await.unwrap()["version"], next, "{}", service.log());
    let results = backend.get(&format!("/api/executions/{exec}/results")).await.unwrap();
    assert!(results.to_string().contains(&format!("{next} installed")), "the script's own output: {results}");
    let tally = Tally::count(&backend.database(), &exec, &["host-1".to_owned()], |_| 1).await;
    tally.report("an installer job stops, swaps and restarts the backend it came through");
    assert_eq!((tally.lost, tally.duplicated), (0, 0), "{tally:?}");
    let before_view = backend.execution(&before).await.unwrap();
    assert_eq!(before_view["by_status"]["ok"], 1, "results from before the update are kept: {before_view}");

    // And new work, on the new backend.
    let after = backend.deploy(&manifest("after-update", 0, &[("servers", "0s")])).await;
    let view = backend.wait_until_answered(&after, PATIENCE).await;
    assert_eq!(view["by_status"]["ok"], 1, "{view}");
    assert_eq!(agent.runs(&after), 1);
}

/// The installer's knobs are checked before anything is downloaded or touched: each bad value is refused by name,
/// and a value that would break out of its quotes in the script never reaches a command line.
#[test]
fn the_installer_refuses_bad_knobs_before_touching_anything() {
    let host = tempfile::tempdir().unwrap();
    let installed = host.path().join("kanade-backend");
    write_executable(&installed, "#!/bin/sh\nexit 0\n");
    let good = |name: &str| -> String {
        match name {
            "Component" => "kanade-backend".into(),
            "AgentSourceUrl" => "http://127.0.0.1:1/api/app-packages/kanade-backend/1.0.0".into(),
            "AgentSourceVersion" => "1.0.0".into(),
            "AgentSourceSha256" => "a".repeat(64),
            "AgentSourceAuthToken" => "kanade_api_token".into(),
            "InstallPath" => installed.display().to_string(),
            _ => String::new(),
        }
    };
    let names = ["Component", "AgentSourceUrl", "AgentSourceVersion", "AgentSourceSha256", "AgentSourceAuthToken"];
    let cases: &[(&str, &str, &str)] = &[
        ("Component", "kanade-agent", "Component must be"),
        ("AgentSourceUrl", "file:///etc/shadow", "AgentSourceUrl must be"),
        ("AgentSourceVersion", "1.0 beta", "AgentSourceVersion must be"),
        ("AgentSourceVersion", "", "AgentSourceVersion must be"),
        ("AgentSourceSha256", &"A".repeat(64), "64 lowercase hex"),
        ("AgentSourceSha256", &"a".repeat(63), "64 lowercase hex"),
        ("AgentSourceAuthToken", "", "AgentSourceAuthToken is empty"),
        ("AgentSourceAuthToken", "x\nHost: evil", "characters a token does not"),
        ("AgentSourceAuthToken", "$(touch pwned)", "characters a token does not"),
        ("InstallPath", "/nonexistent/kanade-backend", "install the component first"),
        ("StartTimeout", "soon", "StartTimeout must be"),
        ("SettleSeconds", "-1", "SettleSeconds must be"),
        ("HealthUrl", "ftp://x", "HealthUrl must be"),
    ];
    for (name, value, wanted) in cases {
        let mut knobs: Vec<(&str, String)> = names.iter().map(|n| (*n, good(n))).collect();
        knobs.push(("InstallPath", good("InstallPath")));
        knobs.retain(|(n, _)| n != name);
        // A value with a quote of its own is written as the operator would have to: escaped for sh.
        knobs.push((name, value.replace('\'', "'\\''")));
        let script = host.path().join("install.sh");
        std::fs::write(&script, filled_script(&knobs)).unwrap();
        let out = Command::new("sh").arg(&script).current_dir(host.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}={value:?}: {stderr}");
        assert!(stderr.contains(wanted), "{name}={value:?}: {stderr}");
    }
    let mut left: Vec<String> = std::fs::read_dir(host.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["install.sh", "kanade-backend"], "nothing downloaded, created or swapped");
}
