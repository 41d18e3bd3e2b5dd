//! The `kanade-backend` binary as an operator runs it: it refuses unsafe or broken configuration with exit code 2
//! and a message naming the problem, and a good one serves until SIGTERM and then exits 0.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kanade_testkit::{NatsServer, TEST_TOKEN, eventually};

const BINARY: &str = env!("CARGO_BIN_EXE_kanade-backend");
const PATIENCE: Duration = Duration::from_secs(15);

/// The binary with nothing inherited from the developer's environment but what a test sets, pointed at a test
/// nats-server so nothing touches the default port, its data in `data_dir` and its log in `data_dir/stderr.log`.
fn backend(nats: &NatsServer, data_dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("KANADE_NATS_URL", nats.url())
        .envs(kanade_testkit::fleet().backend_env())
        .env("KANADE_BACKEND_DATA_DIR", data_dir)
        .env("KANADE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data_dir.join("stderr.log")).expect("stderr log file"));
    command
}

fn stderr_of(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("stderr.log")).unwrap_or_default()
}

/// Waits for `child` to exit, killing it and failing if it does not within `PATIENCE`.
fn wait_for_exit(child: &mut Child, what: &str) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for kanade-backend") {
            return status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kanade-backend did not exit within {PATIENCE:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary to its end and asserts it refused to start with exit code 2 and a message containing `needle`.
fn assert_refuses(mut command: Command, data_dir: &Path, needle: &str, what: &str) {
    let mut child = command.spawn().expect("start kanade-backend");
    let status = wait_for_exit(&mut child, what);
    let stderr = stderr_of(data_dir);
    assert_eq!(status.code(), Some(2), "{what}: exit status {status}; stderr:\n{stderr}");
    assert!(stderr.contains(needle), "{what}: stderr does not mention `{needle}`:\n{stderr}");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

#[test]
fn refuses_to_serve_an_unauthenticated_api_on_a_non_loopback_address() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = backend(&nats, dir.path());
    command.env("KANADE_AUTH_DISABLE", "1").env("KANADE_BIND_ADDR", "0.0.0.0:0");
    assert_refuses(command, dir.path(), "loopback", "auth disabled on 0.0.0.0");
}

/// Without a static token, operator accounts are the only way in: a backend with no user prints a one-time setup
/// token on stderr with the command to use (never a default password), and that token makes the first admin.
#[tokio::test]
async fn without_a_static_token_it_prints_a_setup_token_that_makes_the_first_admin() {
    let nats = NatsServer::start();
    kanade_testkit::connect(&nats.url()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut command = backend(&nats, dir.path());
    command.env("KANADE_BIND_ADDR", &addr);
    let mut child = command.spawn().expect("start kanade-backend");
    let http = reqwest::Client::new();
    eventually("kanade-backend answers /health", PATIENCE, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("kanade-backend exited early with {status}:\n{}", stderr_of(dir.path()));
        }
        let request = http.get(format!("http://{addr}/health"));
        async move { (request.send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    let stderr = stderr_of(dir.path());
    assert!(stderr.contains("user add <name> --role admin --setup-token kanade_setup_"), "{stderr}");
    let token = stderr
        .split_whitespace()
        .find(|word| word.starts_with("kanade_setup_"))
        .expect("the setup token on stderr")
        .to_owned();
    assert_eq!(http.get(format!("http://{addr}/api/agents")).send().await.unwrap().status(), 401);
    let body = serde_json::json!({"setup_token": token, "name": "root", "password": "correct horse battery"});
    let setup = http.post(format!("http://{addr}/api/setup")).json(&body).send().await.unwrap();
    assert_eq!(setup.status(), 201);
    let login = serde_json::json!({"name": "root", "password": "correct horse battery"});
    let tokens: serde_json::Value =
        http.post(format!("http://{addr}/api/login")).json(&login).send().await.unwrap().json().await.unwrap();
    let bearer = tokens["access_token"].as_str().expect("a session token");
    let agents = http.get(format!("http://{addr}/api/agents")).bearer_auth(bearer).send().await.unwrap();
    assert_eq!(agents.status(), 200);
    let signalled = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(signalled.success(), "kill -TERM failed");
    assert_eq!(wait_for_exit(&mut child, "after SIGTERM").code(), Some(0));
}

#[test]
fn refuses_a_token_too_short_to_protect_anything() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = backend(&nats, dir.path());
    command.env("KANADE_BIND_ADDR", "127.0.0.1:0").env("KANADE_AUTH_STATIC_TOKEN", "short");
    assert_refuses(command, dir.path(), "auth.static_token", "a 5-character token");
}

#[test]
fn refuses_a_config_file_with_an_unknown_key_and_names_it() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    for (what, file, key) in [
        ("top-level key", "[backend]\nlisten_addr = \"127.0.0.1:0\"\n[backnd]\n", "line 3, column 2: `backnd`"),
        (
            "key in [backend]",
            "[backend]\nlisten_addr = \"127.0.0.1:0\"\nlisten_adress = \"127.0.0.1:0\"\n",
            "line 3, column 1: `backend.listen_adress`",
        ),
        ("the old flat layout", "bind_addr = \"127.0.0.1:0\"\n", "line 1, column 1: `bind_addr`"),
        ("key in [auth]", "[auth]\nstatic_tokn = \"0123456789abcdef0123\"\n", "`auth.static_tokn`"),
        ("key in [nats]", "[nats]\nurll = \"nats://127.0.0.1:1\"\n", "`nats.urll`"),
        ("key in [log]", "[log]\nlevel = \"info\"\ndir = \"/tmp\"\n", "line 3, column 1: `log.dir`"),
        ("a bad log level", "[log]\nlevel = \"loud\"\n", "log.level: `loud`"),
    ] {
        let config = dir.path().join("backend.toml");
        std::fs::write(&config, file).expect("write config");
        let mut command = backend(&nats, dir.path());
        // The file's `[log] level` is in force only without KANADE_LOG.
        command.env_remove("KANADE_LOG").env("KANADE_AUTH_STATIC_TOKEN", TEST_TOKEN).arg("--config").arg(&config);
        assert_refuses(command, dir.path(), key, what);
    }
}

#[test]
fn refuses_a_config_file_that_does_not_exist() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-backend.toml");
    let mut command = backend(&nats, dir.path());
    command.env("KANADE_AUTH_STATIC_TOKEN", TEST_TOKEN).arg("--config").arg(&missing);
    assert_refuses(command, dir.path(), "no-such-backend.toml", "--config naming a missing file");
}

#[tokio::test]
async fn serves_health_and_the_api_then_exits_0_on_sigterm() {
    let nats = NatsServer::start();
    kanade_testkit::connect(&nats.url()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut command = backend(&nats, dir.path());
    command.env("KANADE_AUTH_STATIC_TOKEN", TEST_TOKEN).env("KANADE_BIND_ADDR", &addr);
    let mut child = command.spawn().expect("start kanade-backend");

    // A client that keeps its connection open, as a dashboard would; it must not hold up shutdown.
    let http = reqwest::Client::new();
    let health = eventually("kanade-backend answers /health", PATIENCE, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("kanade-backend exited early with {status}:\n{}", stderr_of(dir.path()));
        }
        let request = http.get(format!("http://{addr}/health"));
        async move {
            let response = request.send().await.ok()?;
            if response.status() != 200 {
                return None;
            }
            response.json::<serde_json::Value>().await.ok()
        }
    })
    .await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"], "ok", "{health}");
    assert!(dir.path().join("backend.db").exists(), "the SQLite database lives in KANADE_BACKEND_DATA_DIR");

    let api = format!("http://{addr}/api/agents");
    let refused = http.get(&api).send().await.expect("GET /api/agents");
    assert_eq!(refused.status(), 401, "the token from KANADE_AUTH_STATIC_TOKEN is required");
    let allowed = http.get(&api).bearer_auth(TEST_TOKEN).send().await.expect("GET /api/agents");
    assert_eq!(allowed.status(), 200);
    let stderr = stderr_of(dir.path());
    assert!(stderr.contains("for bootstrap and development"), "the static token is marked as such: {stderr}");

    let signalled = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(signalled.success(), "kill -TERM failed");
    let status = wait_for_exit(&mut child, "after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr:\n{}", stderr_of(dir.path()));
}

/// Starts the backend, waits for `/health` to report the database `ok`, and stops it with SIGTERM.
async fn serves_then_stops(mut command: Command, log_dir: &Path, what: &str) {
    let addr = format!("127.0.0.1:{}", free_port());
    command.env("KANADE_AUTH_STATIC_TOKEN", TEST_TOKEN).env("KANADE_LISTEN_ADDR", &addr);
    let mut child = command.spawn().expect("start kanade-backend");
    let http = reqwest::Client::new();
    let health = eventually(&format!("kanade-backend answers /health ({what})"), PATIENCE, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what}: kanade-backend exited early with {status}:\n{}", stderr_of(log_dir));
        }
        let request = http.get(format!("http://{addr}/health"));
        async move { request.send().await.ok()?.json::<serde_json::Value>().await.ok() }
    })
    .await;
    assert_eq!(health["database"], "ok", "{what}: {health}");
    let signalled = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(signalled.success(), "kill -TERM failed");
    let status = wait_for_exit(&mut child, what);
    assert_eq!(status.code(), Some(0), "{what}: exit after SIGTERM; stderr:\n{}", stderr_of(log_dir));
}

/// Regression: a sqlite URL named by the operator made the backend exit with "unable to open database file" when
/// the file did not exist yet; only the built-in default created it. Every form now opens or creates, keeping the
/// operator's own query options, and with no URL and no data dir the file is `backend.db` in the working directory.
#[tokio::test]
async fn a_sqlite_file_named_by_the_operator_is_created_in_every_url_form() {
    let nats = NatsServer::start();
    kanade_testkit::connect(&nats.url()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("work dir");
    std::fs::create_dir_all(work.join("sub")).expect("work dir");
    let absolute = dir.path().join("state.db");
    let cases: [(&str, String, std::path::PathBuf); 5] = [
        ("KANADE_DATABASE_URL", format!("sqlite://{}", absolute.display()), absolute.clone()),
        ("KANADE_DATABASE_URL", "sqlite://relative.db".into(), work.join("relative.db")),
        ("DATABASE_URL", "sqlite:sub/path.db?cache=shared".into(), work.join("sub/path.db")),
        ("KANADE_DATABASE_URL", "sqlite:with%20space.db".into(), work.join("with space.db")),
        ("", String::new(), work.join("backend.db")),
    ];
    for (variable, url, file) in cases {
        let mut command = backend(&nats, dir.path());
        command.env_remove("KANADE_BACKEND_DATA_DIR").current_dir(&work);
        if !variable.is_empty() {
            command.env(variable, &url);
        }
        let what = format!("{variable}={url}");
        serves_then_stops(command, dir.path(), &what).await;
        assert!(file.is_file(), "{what}: `{}` was not created", file.display());
    }
}

#[test]
fn a_sqlite_file_in_a_missing_or_unwritable_folder_is_refused_naming_the_folder() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no/such/folder");
    for (url, needle) in [
        (format!("sqlite://{}/state.db", missing.display()), format!("the folder `{}`", missing.display())),
        // Root may write anywhere but in sysfs, so this holds for every user that runs the tests.
        ("sqlite:///sys/kanade-state.db".to_owned(), "the folder `/sys` for the SQLite database".to_owned()),
    ] {
        let mut command = backend(&nats, dir.path());
        command
            .env("KANADE_AUTH_STATIC_TOKEN", TEST_TOKEN)
            .env("KANADE_LISTEN_ADDR", "127.0.0.1:0")
            .env("KANADE_DATABASE_URL", &url);
        let mut child = command.spawn().expect("start kanade-backend");
        let status = wait_for_exit(&mut child, &url);
        let stderr = stderr_of(dir.path());
        assert_eq!(status.code(), Some(1), "{url}: {status}; stderr:\n{stderr}");
        assert!(stderr.contains(&needle), "{url}: stderr does not mention `{needle}`:\n{stderr}");
        assert!(!missing.exists(), "nothing is created on the way");
    }
}

/// `KANADE_BACKEND_CONFIG` names the file; its `[backend]` and `[log]` are in force: the log goes to daily files
/// named after `[log] file`, nothing to stderr.
#[tokio::test]
async fn the_config_named_by_the_environment_is_read_and_logs_to_rolling_files() {
    let nats = NatsServer::start();
    kanade_testkit::connect(&nats.url()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    let config = dir.path().join("backend.toml");
    std::fs::write(
        &config,
        format!(
            "[backend]\nnats_url = {:?}\ndatabase_url = {:?}\n[log]\nlevel = \"info\"\nfile = {:?}\n",
            nats.url(),
            format!("sqlite://{}", dir.path().join("from-config.db").display()),
            logs.join("backend.log"),
        ),
    )
    .expect("write config");
    let mut command = backend(&nats, dir.path());
    command.env_remove("KANADE_NATS_URL").env_remove("KANADE_LOG").env("KANADE_BACKEND_CONFIG", &config);
    serves_then_stops(command, dir.path(), "KANADE_BACKEND_CONFIG").await;
    assert!(dir.path().join("from-config.db").is_file(), "backend.database_url is used");
    assert_eq!(stderr_of(dir.path()), "", "with [log] file nothing goes to stderr");
    let files: Vec<_> = std::fs::read_dir(&logs).expect("log dir").map(|e| e.expect("entry").path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().expect("name").to_string_lossy().into_owned();
    assert!(
        name.starts_with("backend.") && name.ends_with(".log") && name.len() == "backend.YYYY-MM-DD.log".len(),
        "{name}"
    );
    let log = std::fs::read_to_string(&files[0]).expect("read log");
    assert!(log.contains("kanade-backend listening"), "{log}");
}

#[test]
fn a_log_file_that_cannot_be_written_is_refused() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, "x").expect("write");
    let config = dir.path().join("backend.toml");
    std::fs::write(&config, format!("[log]\nfile = {:?}\n", not_a_dir.join("backend.log"))).expect("write config");
    let mut command = backend(&nats, dir.path());
    command.env("KANADE_AUTH_STATIC_TOKEN", TEST_TOKEN).arg("--config").arg(&config);
    assert_refuses(command, dir.path(), "cannot write logs to", "[log] file under a plain file");
}

/// `kanade-backend service` outside Windows is the backend in the foreground: it serves, and SIGTERM stops it with
/// exit 0 (on Windows the same body runs under the service control manager, `kanade_service`).
#[tokio::test]
async fn the_service_subcommand_serves_in_the_foreground_here() {
    let nats = NatsServer::start();
    kanade_testkit::connect(&nats.url()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = backend(&nats, dir.path());
    command.arg("service");
    serves_then_stops(command, dir.path(), "kanade-backend service").await;
}
