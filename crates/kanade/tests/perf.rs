//! `kanade top` and `kanade perf` with the real binary against a real nats-server, backend and in-process agent
//! sampling this machine: `top -o json` prints host events whose time advances and, with a CPU-burning job
//! running, a process event led by the burner; piped, it prints plain lines and no terminal control; on a real
//! pseudo-terminal (util-linux `script`) it draws full screen, quits on `q` and on a lost backend, and gives the
//! terminal back in both cases; `perf` lists a point once a rollup was projected, as a table, JSON and CSV; an
//! unknown PC and bad flags are clear errors.

use std::process::{Output, Stdio};
use std::time::Duration;

use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, init_logging};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

/// Rollups travel agent → `PERF` → projector: the first takes a rollup interval (10 s) or two. The burner leads
/// the CPU order within a few samples on a quiet machine; on a busy one (other builds, other tests) it shares the
/// cores with every other busy process and leads only now and then.
const PATIENCE: Duration = Duration::from_secs(90);
/// The longest one `kanade` run may take before the test calls it hung.
const RUN_LIMIT: Duration = Duration::from_secs(60);
const PC: &str = "perf-pc";
/// The CPU burner's process name: a copy of `yes` under this name, so it is known in the process table.
const BURNER: &str = "kanade-burn";

fn kanade(nats_url: &str, backend_url: &str) -> Command {
    let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url);
    cmd.env("KANADE_BACKEND_URL", backend_url).env("KANADE_AUTH_TOKEN", TEST_TOKEN).env_remove("NO_COLOR");
    cmd
}

async fn run(nats_url: &str, backend_url: &str, args: &[&str]) -> Output {
    let out = kanade(nats_url, backend_url).args(args).output();
    tokio::time::timeout(RUN_LIMIT, out).await.unwrap_or_else(|_| panic!("kanade {args:?} hung")).expect("run kanade")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON lines of a `top -o json`, each of which must be an object with an `event`.
fn events(out: &Output) -> Vec<Value> {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(value["event"].is_string(), "{line}");
            value
        })
        .collect()
}

/// A nats-server, a backend and the agent `perf-pc` sampling this machine: live every 500 ms, rolling up every 10 s.
struct World {
    _nats: NatsServer,
    url: String,
    backend: TestBackend,
    burl: String,
    _agent: TestAgent,
}

impl World {
    async fn start() -> Self {
        init_logging();
        let nats = NatsServer::start();
        let url = nats.url();
        let _ = connect(&url).await;
        let backend = TestBackend::start(&url).await;
        let burl = backend.url();
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = kanade_testkit::agent_config(&url, PC, &["lab"], data_dir.path());
        config.perf = kanade_shared::config::PerfConfig {
            interval: Duration::from_millis(500),
            rollup_interval: Duration::from_secs(10),
            top: 10,
        };
        let agent = TestAgent::start_with(config, data_dir).await;
        backend.wait_for_agents(1).await;
        Self { _nats: nats, url, backend, burl, _agent: agent }
    }

    /// Creates a job running `script` and fires it at the agent through the API; returns the execution's id.
    async fn fire(&self, id: &str, script: &str) -> String {
        let script: String = script.lines().map(|l| format!("    {l}\n")).collect();
        let manifest = format!(
            "id: {id}\nversion: \"1\"\ndescription: {id} (kanade top test)\nexecute:\n  shell: sh\n  script: |\n{script}  timeout: 5m\n"
        );
        let (status, body) = self.backend.post("/api/jobs", &json!({ "manifest": manifest })).await;
        assert!(status == 200 || status == 201, "job create {id}: {status} {body}");
        let (status, body) = self.backend.post(&format!("/api/exec/{id}"), &json!({ "pcs": [PC] })).await;
        assert!(status == 200 || status == 201, "exec {id}: {status} {body}");
        body["exec_id"].as_str().expect("exec id").to_owned()
    }

    async fn kill(&self, exec: &str) {
        let (status, body) = self.backend.post(&format!("/api/executions/{exec}/kill"), &json!({})).await;
        assert_eq!(status, 200, "kill {exec}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_streams_json_lines_plain_lines_and_the_burner_leads_by_cpu() {
    let world = World::start().await;
    let (url, burl) = (&world.url, &world.burl);

    let out = run(url, burl, &["top", PC, "-o", "json", "--count", "3"]).await;
    let streamed = events(&out);
    assert_eq!(streamed[0]["event"], "state", "the stream opens with its state: {streamed:?}");
    let hosts: Vec<&Value> = streamed.iter().filter(|e| e["event"] == "host").collect();
    assert_eq!(hosts.len(), 3, "--count 3 stops after three host samples: {streamed:?}");
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        hosts.iter().map(|h| h["at"].as_str().expect("at").parse().expect("an RFC 3339 time")).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "each sample is later than the one before: {times:?}");
    for host in &hosts {
        assert_eq!(host["pc_id"], PC);
        let cpu = host["cpu_percent"].as_f64().expect("cpu_percent");
        assert!((0.0..=100.0).contains(&cpu), "{host}");
        assert!(host["mem_total_bytes"].as_u64().unwrap_or_default() > 0, "{host}");
    }

    // Piped without -o json: a summary line per host sample and the process table, no terminal control at all.
    let out = run(url, burl, &["top", PC, "--count", "2", "--top", "3"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains('\u{1b}'), "no escape sequence to a pipe: {stdout:?}");
    let summaries: Vec<&str> = stdout.lines().filter(|l| l.contains(&format!(" {PC} cpu "))).collect();
    assert_eq!(summaries.len(), 2, "{stdout}");
    assert!(
        summaries.iter().all(|l| l.contains(" mem ") && l.contains(" disk r ") && l.contains(" net rx ")),
        "{stdout}"
    );

    // A job burning a CPU: within a few samples, the burner heads the process table sorted by CPU.
    let burn = world
        .fire(
            "burn-cpu",
            &format!(
                "dir=$(mktemp -d)\ncp \"$(command -v yes)\" \"$dir/{BURNER}\"\n\
                 timeout 120 \"$dir/{BURNER}\" > /dev/null || true\nrm -rf \"$dir\""
            ),
        )
        .await;
    let led = eventually("a process sample led by the burner", PATIENCE, || async {
        let out = run(url, burl, &["top", PC, "-o", "json", "--count", "6", "--sort", "cpu", "--top", "5"]).await;
        let procs: Vec<Value> = events(&out).into_iter().filter(|e| e["event"] == "proc").collect();
        for sample in &procs {
            let cpu: Vec<f64> =
                sample["processes"].as_array().unwrap().iter().map(|p| p["cpu_percent"].as_f64().unwrap()).collect();
            assert!(cpu.windows(2).all(|w| w[0] >= w[1]), "--sort cpu: busiest first: {sample}");
        }
        procs.into_iter().find(|e| e["processes"][0]["name"] == BURNER)
    })
    .await;
    assert!(led["processes"].as_array().unwrap().len() <= 5, "--top 5: {led}");
    assert!(led["processes"][0]["cpu_percent"].as_f64().unwrap() > 10.0, "{led}");
    world.kill(&burn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_lists_a_point_once_a_rollup_was_projected() {
    let world = World::start().await;
    let (url, burl) = (&world.url, &world.burl);

    let history = eventually("a point in the last hour", PATIENCE, || async {
        let out = run(url, burl, &["perf", PC, "--since", "1h", "-o", "json"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let history: Value = serde_json::from_slice(&out.stdout).expect("-o json is the history");
        history["points"].as_array().is_some_and(|p| !p.is_empty()).then_some(history)
    })
    .await;
    assert_eq!(history["pc_id"], PC);
    let point = &history["points"][0];
    assert!(point["rollups"].as_u64().unwrap() >= 1 && point["cpu_percent"]["max"].is_number(), "{point}");

    let table = run(url, burl, &["perf", PC, "--since", "1h", "--step", "1m"]).await;
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    let stdout = text(&table.stdout);
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("AT") && header.contains("CPU AVG") && header.contains("TOP CPU"), "{stdout}");
    assert!(lines.next().is_some_and(|row| row.contains('%') && row.contains("/s")), "{stdout}");
    assert!(text(&table.stderr).contains("point(s) of 1m"), "{}", text(&table.stderr));

    let csv = run(url, burl, &["perf", PC, "--since", "1h", "-o", "csv"]).await;
    assert_eq!(csv.status.code(), Some(0), "{}", text(&csv.stderr));
    let csv = text(&csv.stdout);
    assert!(csv.starts_with("at,rollups,cpu_avg,cpu_max"), "the API's CSV: {csv}");
    assert!(csv.lines().count() >= 2, "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_pc_and_bad_flags_are_clear_errors() {
    let world = World::start().await;
    let (url, burl) = (&world.url, &world.burl);

    for args in [&["top", "never-seen"][..], &["top", "never-seen", "-o", "json"], &["perf", "never-seen"]] {
        let out = run(url, burl, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("404") && stderr.contains("no agent `never-seen` has reported"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let unreachable = run(url, "http://127.0.0.1:1", &["top", PC]).await;
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(text(&unreachable.stderr).contains("cannot reach the backend at `http://127.0.0.1:1`"));

    for (args, needle) in [
        (&["perf", PC, "--since", "garbage"][..], "neither a duration"),
        (&["perf", PC, "--until", "tomorrow-ish"], "neither a duration"),
        (&["perf", PC, "--step", "0s"], "at least 1s"),
        (&["top", PC, "--count", "0"], "--count"),
        (&["top", PC, "--top", "0"], "--top"),
        (&["top", PC, "--sort", "name"], "--sort"),
        (&["top", "Not A PC"], "pc_id"),
    ] {
        let out = run(url, burl, args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let help = run(url, burl, &["top", "--help"]).await;
    assert!(text(&help.stdout).contains("Exit codes: 0 stopped with q"), "{}", text(&help.stdout));
}

/// `kanade top` on a real pseudo-terminal: util-linux `script` runs a shell there that runs kanade, then prints
/// whether the terminal is back in its usual mode (`stty -a` shows `icanon` and `echo`, not `-icanon -echo`).
struct OnTerminal {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    output: Vec<u8>,
}

impl OnTerminal {
    fn start(world: &World) -> Self {
        let kanade = env!("CARGO_BIN_EXE_kanade");
        let shell = format!("stty rows 30 cols 100; '{kanade}' top {PC}; code=$?; echo; stty -a; exit $code");
        let mut child = Command::new("script")
            .args(["-qefc", &shell, "/dev/null"])
            .env("KANADE_BACKEND_URL", &world.burl)
            .env("KANADE_AUTH_TOKEN", TEST_TOKEN)
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("util-linux `script` runs");
        let stdin = child.stdin.take().unwrap();
        Self { child, stdin, output: Vec::new() }
    }

    /// Reads the terminal's output until it contains `needle`, for at most `patience`.
    async fn wait_for(&mut self, needle: &str, patience: Duration) {
        let stdout = self.child.stdout.as_mut().unwrap();
        let read = async {
            let mut buffer = [0_u8; 8192];
            while !text(&self.output).contains(needle) {
                let n = stdout.read(&mut buffer).await.expect("read the terminal");
                assert!(n > 0, "the terminal closed before {needle:?} showed: {}", text(&self.output));
                self.output.extend_from_slice(&buffer[..n]);
            }
        };
        if tokio::time::timeout(patience, read).await.is_err() {
            panic!("{needle:?} did not show within {patience:?}: {}", text(&self.output));
        }
    }

    /// Waits for the end; returns the exit code and everything the terminal showed.
    async fn finish(mut self) -> (Option<i32>, String) {
        let mut rest = Vec::new();
        let stdout = self.child.stdout.as_mut().unwrap();
        tokio::time::timeout(RUN_LIMIT, stdout.read_to_end(&mut rest)).await.expect("the terminal closes").unwrap();
        self.output.extend_from_slice(&rest);
        let status = tokio::time::timeout(RUN_LIMIT, self.child.wait()).await.expect("script ends").unwrap();
        (status.code(), text(&self.output))
    }
}

/// What a full-screen run showed must have: the alternate screen entered and left, the cursor shown again, and the
/// terminal back in cooked mode with echo afterwards.
fn assert_restored(screen: &str) {
    let entered =
        screen.find("\u{1b}[?1049h").unwrap_or_else(|| panic!("never entered the alternate screen: {screen:?}"));
    let left = screen.rfind("\u{1b}[?1049l").unwrap_or_else(|| panic!("never left the alternate screen: {screen:?}"));
    assert!(entered < left, "{screen:?}");
    assert!(screen[left.saturating_sub(32)..].contains("\u{1b}[?25h"), "the cursor is shown again: {screen:?}");
    let stty = &screen[left..];
    assert!(stty.contains(" icanon") && stty.contains(" echo") && !stty.contains("-icanon"), "raw mode ended: {stty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_top_draws_full_screen_quits_on_q_and_gives_the_terminal_back() {
    let world = World::start().await;
    let mut terminal = OnTerminal::start(&world);
    terminal.wait_for(&format!("kanade top  {PC}  live"), PATIENCE).await;
    terminal.wait_for("PID", PATIENCE).await;
    terminal.wait_for("q quit  c sort by CPU", PATIENCE).await;
    terminal.stdin.write_all(b"m").await.unwrap();
    terminal.stdin.flush().await.unwrap();
    terminal.wait_for("(sorted by memory)", PATIENCE).await;
    terminal.stdin.write_all(b"q").await.unwrap();
    terminal.stdin.flush().await.unwrap();
    let (code, screen) = terminal.finish().await;
    assert_eq!(code, Some(0), "{screen:?}");
    assert_restored(&screen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_a_lost_backend_ends_top_with_an_error_and_the_terminal_given_back() {
    let world = World::start().await;
    let mut terminal = OnTerminal::start(&world);
    terminal.wait_for(&format!("kanade top  {PC}  live"), PATIENCE).await;
    let World { backend, _nats, _agent, .. } = world;
    let _data_dir = backend.stop().await;
    // Three reconnections, 1 + 2 + 4 s apart, then the error after the screen is given back.
    terminal.wait_for("reconnecting", PATIENCE).await;
    let (code, screen) = terminal.finish().await;
    assert_eq!(code, Some(1), "{screen:?}");
    assert_restored(&screen);
    let after = &screen[screen.rfind("\u{1b}[?1049l").unwrap()..];
    assert!(
        after.contains("error: lost the live stream") && after.contains("gave up after 3 reconnections"),
        "{after:?}"
    );
}
