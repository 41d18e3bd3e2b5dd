//! The fault-injection harness: the real `kanade-backend` and `kanade-agent` binaries (and the agent's fleet
//! simulator) as child processes over real `nats-server`s, so a fault can be a SIGKILL of any of them; a rollout
//! fired through the backend's API; and a tally that counts, for every target, the result rows in the backend's
//! database (lost) against how often the command really ran on that PC (duplicated: each real agent's script and
//! each emulated run append the exec id to a file as they start).
//!
//! A backend keeps its SQLite database in its own dir, or shares a throwaway PostgreSQL database
//! ([`TestDatabase`]) with other backends under a leader lease ([`BackendOptions`]).
//!
//! The suite itself is `tests/faults.rs`, `tests/cluster.rs` and `tests/leader.rs`; `cargo xtask faults` runs it
//! alone, and docs/RELIABILITY.md records what it measured.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::ops::AddAssign;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use kanade_testkit::{eventually, free_port};
use tempfile::TempDir;

/// How long the helpers wait for the system to get somewhere.
pub const PATIENCE: Duration = Duration::from_secs(90);
/// The backend's API token in these tests.
pub const TOKEN: &str = "fault-suite-token-0123456789";

/// The binaries under test.
pub struct Bins {
    pub agent: PathBuf,
    pub backend: PathBuf,
}

/// Builds the agent and backend binaries once per test process (a no-op when `cargo test` built them already)
/// and returns where they are: the same target dir and profile as the running test. The whole workspace's bins, as
/// `cargo test --workspace` and the sandbox build them: `-p kanade-agent -p kanade-backend` alone unifies features
/// differently, recompiles tokio, sqlx and axum for a minute, and swaps the binaries under tests running beside it.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        // target/<profile>/deps/<test>-<hash>
        let profile_dir = exe.parent().and_then(Path::parent).expect("a target/<profile> dir").to_owned();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--locked", "--workspace", "--bins"]).current_dir(&root);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building kanade-agent and kanade-backend failed");
        let bins = Bins { agent: profile_dir.join("kanade-agent"), backend: profile_dir.join("kanade-backend") };
        for bin in [&bins.agent, &bins.backend] {
            assert!(bin.exists(), "`{}` is not there after the build", bin.display());
        }
        bins
    })
}

fn log_to(path: &Path) -> Stdio {
    std::fs::OpenOptions::new().create(true).append(true).open(path).map(Stdio::from).expect("open a log file")
}

fn sigkill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// SIGTERM, then waits up to `patience` for the exit; `None` if it is still running (it is then killed).
async fn stop_within(child: &mut Option<Child>, patience: Duration) -> Option<std::process::ExitStatus> {
    let mut child = child.take()?;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// SIGTERM and a bounded wait, then SIGKILL: a teardown never hangs, even on a process that would.
fn sigterm(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(pid = child.id(), "did not stop within 30 s of SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// How a [`Backend`] is started beyond its broker. The default is a backend alone: SQLite in its own dir, and the
/// instance id it makes up for itself.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// `KANADE_DATABASE_URL`: a PostgreSQL database (shared with other backends) instead of SQLite in its dir.
    pub database_url: Option<String>,
    /// `KANADE_BACKEND_INSTANCE`: the id it holds the leader lease under and signs its decisions with.
    pub instance: Option<String>,
}

/// `kanade-backend` as a child process, with its SQLite database in its own dir unless told otherwise.
pub struct Backend {
    dir: TempDir,
    port: u16,
    nats: String,
    options: BackendOptions,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Backend {
    /// Starts the backend over `nats` (one URL or a comma-separated list) and waits until it answers.
    pub async fn start(nats: &str) -> Self {
        Self::start_with(nats, BackendOptions::default()).await
    }

    /// Starts the backend over `nats` (which may be a [`kanade_testkit::Proxy`]'s URL) as `options` say, and waits
    /// until it answers.
    pub async fn start_with(nats: &str, options: BackendOptions) -> Self {
        let mut backend = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            nats: nats.to_owned(),
            options,
            child: None,
            http: reqwest::Client::new(),
        };
        backend.start_again().await;
        backend
    }

    /// Starts the backend again (after [`Backend::kill`]) on the same port and database.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the backend is running");
        let mut command = Command::new(&bins().backend);
        command
            // Only what the test says: a database URL or instance id in the test's own environment is not ours.
            .env_remove("KANADE_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .env_remove("KANADE_BACKEND_INSTANCE")
            .envs(self.service_env());
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_to(&self.log_file()))
            .spawn()
            .expect("start kanade-backend");
        self.child = Some(child);
        eventually("the backend answers /health", PATIENCE, || async {
            let response = self.http.get(self.url("/health")).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }

    /// The environment it runs with (as a service manager's environment file would give it).
    pub fn service_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("KANADE_LISTEN_ADDR".into(), format!("127.0.0.1:{}", self.port)),
            ("KANADE_NATS_URL".into(), self.nats.clone()),
            ("KANADE_AUTH_STATIC_TOKEN".into(), TOKEN.into()),
            ("KANADE_BACKEND_DATA_DIR".into(), self.dir.path().display().to_string()),
            ("KANADE_LOG".into(), "info".into()),
        ];
        env.extend(kanade_testkit::fleet().backend_env().map(|(k, v)| (k.to_owned(), v.display().to_string())));
        if let Some(url) = &self.options.database_url {
            env.push(("KANADE_DATABASE_URL".into(), url.clone()));
        }
        if let Some(instance) = &self.options.instance {
            env.push(("KANADE_BACKEND_INSTANCE".into(), instance.clone()));
        }
        env
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.url("")
    }

    /// SIGKILL: no shutdown, no final flush.
    pub fn kill(&mut self) {
        sigkill(&mut self.child);
    }

    /// SIGTERM, then waits up to `patience` for the exit; `None` if it is still running (it is then killed).
    pub async fn stop(&mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        stop_within(&mut self.child, patience).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The instance id it was started with, if the test gave one.
    pub fn instance(&self) -> Option<&str> {
        self.options.instance.as_deref()
    }

    /// Its log (stderr), for a failing test to point at.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("backend.log")
    }

    /// The backend's SQLite database. Panics for a backend on PostgreSQL: use [`Backend::database_url`].
    pub fn database(&self) -> PathBuf {
        assert!(self.options.database_url.is_none(), "this backend's database is not SQLite: use database_url()");
        self.dir.path().join("backend.db")
    }

    /// Its database as a URL the [`Tally`] reads: the PostgreSQL database it was given, or its SQLite file
    /// (read-only).
    pub fn database_url(&self) -> String {
        match &self.options.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=ro", self.database().display()),
        }
    }

    /// `GET /health` (public), whatever its status; `None` when the backend does not answer within 5 s (polled in
    /// loops, so a backend that hangs fails the test's patience instead of holding it forever).
    pub async fn health(&self) -> Option<serde_json::Value> {
        let response = self.http.get(self.url("/health")).timeout(Duration::from_secs(5)).send().await.ok()?;
        response.json().await.ok()
    }

    /// Whether `/health` says this backend holds the leader lease; false when it does not answer.
    pub async fn is_leading(&self) -> bool {
        self.health().await.is_some_and(|health| health["leading"] == true)
    }

    pub async fn get(&self, path: &str) -> Option<serde_json::Value> {
        let response = self.http.get(self.url(path)).bearer_auth(TOKEN).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .header("x-kanade-operator", "fault-suite")
            .json(body)
            .send()
            .await
            .expect("POST to the backend");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `DELETE` on the API; the status.
    pub async fn delete(&self, path: &str) -> u16 {
        let response = self
            .http
            .delete(self.url(path))
            .bearer_auth(TOKEN)
            .header("x-kanade-operator", "fault-suite")
            .send()
            .await
            .expect("DELETE to the backend");
        response.status().as_u16()
    }

    /// Waits until the backend knows `n` agents (they heartbeat); execs target the agents it knows.
    pub async fn wait_for_agents(&self, n: usize) {
        eventually(&format!("the backend knows {n} agents"), PATIENCE, || async {
            // The fault suite runs tens of agents: one page holds them all.
            let agents = self.get("/api/agents?limit=1000").await?;
            (agents["items"].as_array()?.len() >= n).then_some(())
        })
        .await;
    }

    /// Registers the job in `manifest` and fires it with its own target and rollout; returns the exec id.
    pub async fn deploy(&self, manifest: &str) -> String {
        let (status, body) = self.post("/api/deploy", &serde_json::json!({ "manifest": manifest })).await;
        assert!(status == 200 || status == 201, "deploy: {status} {body}");
        body["exec_id"].as_str().expect("an exec id").to_owned()
    }

    /// Registers the job in `manifest` without firing it (`POST /api/jobs`).
    pub async fn create_job(&self, manifest: &str) {
        let (status, body) = self.post("/api/jobs", &serde_json::json!({ "manifest": manifest })).await;
        assert!(status == 200 || status == 201, "create job: {status} {body}");
    }

    /// Creates (or updates) the schedule in `yaml` (`POST /api/schedules`); returns the schedule as the API shows
    /// it.
    pub async fn create_schedule(&self, yaml: &str) -> serde_json::Value {
        let (status, body) = self.post("/api/schedules", &serde_json::json!({ "schedule": yaml })).await;
        assert!(status == 200 || status == 201, "create schedule: {status} {body}");
        body
    }

    /// The execution as the API shows it.
    pub async fn execution(&self, exec: &str) -> Option<serde_json::Value> {
        self.get(&format!("/api/executions/{exec}")).await
    }

    /// Waits until every target of `exec` has a result (or `patience` passes).
    pub async fn wait_until_answered(&self, exec: &str, patience: Duration) -> serde_json::Value {
        eventually(&format!("every target of {exec} answered"), patience, || async {
            let view = self.execution(exec).await?;
            (view["status"] == "completed").then_some(view)
        })
        .await
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        sigterm(&mut self.child);
    }
}

/// One real `kanade-agent` process. Its scripts find `KANADE_FAULT_RUNS` in their environment: the file where
/// the rollout's script records each run.
pub struct Agent {
    pub pc: String,
    dir: TempDir,
    nats: String,
    groups: String,
    /// More environment for the agent (and so for its scripts).
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Agent {
    pub fn start(nats: &str, pc: &str, groups: &str) -> Self {
        Self::start_with_env(nats, pc, groups, Vec::new())
    }

    /// Like [`Agent::start`], with `env` added to the agent's environment (its scripts inherit it).
    pub fn start_with_env(nats: &str, pc: &str, groups: &str, env: Vec<(String, String)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("agent.toml"),
            "[agent]\ncatch_up_jitter = \"500ms\"\nheartbeat_interval = \"1s\"\n",
        )
        .expect("write agent.toml");
        let mut agent =
            Self { pc: pc.to_owned(), dir, nats: nats.to_owned(), groups: groups.to_owned(), env, child: None };
        agent.start_again();
        agent
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the agent is running");
        // Its own credential, for its groups, as enrolment would have left it.
        let groups: Vec<&str> = self.groups.split(',').map(str::trim).filter(|g| !g.is_empty()).collect();
        let ca = kanade_testkit::fleet().agent_env(&self.pc, &groups, &self.dir.path().join("data"));
        let child = Command::new(&bins().agent)
            .envs(ca)
            .arg("--config")
            .arg(self.dir.path().join("agent.toml"))
            .env_remove("KANADE_AGENT_CONFIG")
            .env("KANADE_AGENT_ID", &self.pc)
            .env("KANADE_AGENT_GROUPS", &self.groups)
            .env("KANADE_NATS_URL", &self.nats)
            .env("KANADE_AGENT_DATA_DIR", self.dir.path().join("data"))
            // Many agents share this machine; none of them serves kanade-client.
            .env("KANADE_CLIENT_SOCKET", "off")
            .env("KANADE_FAULT_RUNS", self.runs_file())
            .env("KANADE_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_to(&self.dir.path().join("agent.log")))
            .spawn()
            .expect("start kanade-agent");
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        sigkill(&mut self.child);
    }

    fn runs_file(&self) -> PathBuf {
        self.dir.path().join("runs.log")
    }

    /// How many times `exec`'s script started on this agent.
    pub fn runs(&self, exec: &str) -> usize {
        count_lines(&self.runs_file(), exec)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        sigterm(&mut self.child);
    }
}

fn count_lines(file: &Path, exec: &str) -> usize {
    std::fs::read_to_string(file).map(|text| text.lines().filter(|l| l.trim() == exec).count()).unwrap_or(0)
}

/// `kanade-agent simulate`: many agents running the real agent code in one process, each recording its runs.
pub struct Fleet {
    dir: TempDir,
    pcs: Vec<String>,
    child: Option<Child>,
}

impl Fleet {
    /// Starts `count` agents named `<prefix>00001...`, grouped per `groups` (`simulate --groups`), whose runs
    /// take `exec_time`; returns once every one of them is subscribed.
    pub async fn start(nats: &str, prefix: &str, count: u32, groups: &str, exec_time: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(&bins().agent)
            .args(["simulate", "--count", &count.to_string(), "--id-prefix", prefix, "--groups", groups])
            .args(["--exec-time", exec_time, "--record-runs", "--keep-data", "--catch-up-jitter", "1s"])
            .args(["--heartbeat-interval", "1s", "--nats-url", nats])
            .args(kanade_testkit::fleet().simulator_args())
            .arg("--data-dir")
            .arg(dir.path().join("agents"))
            .env("KANADE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_to(&dir.path().join("simulate.log")))
            .spawn()
            .expect("start kanade-agent simulate");
        let stdout = child.stdout.take().expect("simulator stdout");
        let ready = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = tokio::time::timeout(PATIENCE, ready)
            .await
            .expect("the simulator did not get ready")
            .expect("read the simulator's ready line")
            .expect("read the simulator's ready line");
        let ready: serde_json::Value = serde_json::from_str(&line).expect("the ready line is JSON");
        assert_eq!(ready["ready"], count, "{line}");
        let width = count.to_string().len().max(5);
        let pcs = (1..=count).map(|i| format!("{prefix}{i:0width$}")).collect();
        Self { dir, pcs, child: Some(child) }
    }

    /// SIGTERM, then waits up to `patience` for the exit; `None` if it is still running (it is then killed).
    pub async fn stop(&mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        stop_within(&mut self.child, patience).await
    }

    pub fn pcs(&self) -> &[String] {
        &self.pcs
    }

    /// How many times `exec` ran on `pc`.
    pub fn runs(&self, pc: &str, exec: &str) -> usize {
        count_lines(&self.dir.path().join("agents").join(pc).join("runs.log"), exec)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        sigterm(&mut self.child);
    }
}

/// A job manifest for the suite: `sh` that records the run and takes `seconds`, rolled out in the waves given as
/// (group, delay).
pub fn manifest(job: &str, seconds: u32, waves: &[(&str, &str)]) -> String {
    let groups: Vec<&str> = waves.iter().map(|(g, _)| *g).collect();
    let mut yaml = format!(
        "id: {job}\nversion: \"1\"\ntarget:\n  groups: [{}]\n{}rollout:\n  strategy: wave\n  waves:\n",
        groups.join(", "),
        recording_script(seconds)
    );
    for (group, delay) in waves {
        yaml.push_str(&format!("    - group: {group}\n      delay: {delay}\n"));
    }
    yaml
}

/// A job manifest with no target of its own, for a schedule to fire at its targets: the same `sh` as
/// [`manifest`]'s, recording the run and taking `seconds`.
pub fn untargeted_manifest(job: &str, seconds: u32) -> String {
    format!("id: {job}\nversion: \"1\"\n{}", recording_script(seconds))
}

/// The `execute` and `deadline` of the suite's jobs: the script appends its exec id to `$KANADE_FAULT_RUNS` (the
/// real agents set it; the simulator records emulated runs itself) and takes `seconds`.
fn recording_script(seconds: u32) -> String {
    format!(
        "execute:\n  shell: sh\n  script: |\n    echo \"$KANADE_EXEC_ID\" >> \"$KANADE_FAULT_RUNS\"\n    \
         sleep {seconds}\n    echo done\n  timeout: 5m\ndeadline: 1h\n"
    )
}

/// What a fault cost: every target against its result rows in the database and its runs. Tallies of several
/// executions add up (`+=`), as a schedule's occurrences do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub targets: usize,
    /// Targets with a result row.
    pub results: usize,
    /// Targets with no result row.
    pub lost: usize,
    /// Runs beyond the first, over all targets.
    pub duplicated: usize,
    /// Result rows per `status` (`status/reason` when there is a reason).
    pub statuses: BTreeMap<String, usize>,
}

impl Tally {
    /// Counts `exec`'s results in the backend's SQLite database for each of `targets`, with `runs(pc)` the times
    /// the command ran there.
    pub async fn count(database: &Path, exec: &str, targets: &[String], runs: impl Fn(&str) -> usize) -> Self {
        Self::count_in(&format!("sqlite://{}?mode=ro", database.display()), exec, targets, runs).await
    }

    /// [`Tally::count`] in the database at `database_url`: SQLite or PostgreSQL ([`Backend::database_url`]).
    pub async fn count_in(database_url: &str, exec: &str, targets: &[String], runs: impl Fn(&str) -> usize) -> Self {
        use sqlx::Row;
        let pool = open(database_url).await;
        // `$1` is a parameter to both: SQLite reads a numbered `$N` as sqlx binds it.
        let rows = sqlx::query("SELECT pc_id, status, reason FROM results WHERE exec_id = $1")
            .bind(exec)
            .fetch_all(&pool)
            .await
            .expect("read results");
        pool.close().await;
        let mut by_pc: BTreeMap<String, usize> = BTreeMap::new();
        let mut statuses = BTreeMap::new();
        for row in &rows {
            let pc: String = row.get("pc_id");
            let status: String = row.get("status");
            let reason: Option<String> = row.get("reason");
            *by_pc.entry(pc).or_default() += 1;
            let key = reason.map_or(status.clone(), |r| format!("{status}/{r}"));
            *statuses.entry(key).or_default() += 1;
        }
        let strays: Vec<&String> = by_pc.keys().filter(|pc| !targets.contains(pc)).collect();
        assert!(strays.is_empty(), "results from PCs that were not targets: {strays:?}");
        let results = targets.iter().filter(|pc| by_pc.contains_key(*pc)).count();
        let duplicated = targets.iter().map(|pc| runs(pc).saturating_sub(1)).sum();
        Self { targets: targets.len(), results, lost: targets.len() - results, duplicated, statuses }
    }

    /// One line for the log and docs/RELIABILITY.md.
    #[allow(clippy::print_stderr)]
    pub fn report(&self, fault: &str) {
        eprintln!(
            "fault: {fault}: targets {} results {} lost {} duplicated {} statuses {:?}",
            self.targets, self.results, self.lost, self.duplicated, self.statuses
        );
    }
}

impl AddAssign for Tally {
    fn add_assign(&mut self, other: Self) {
        self.targets += other.targets;
        self.results += other.results;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
    }
}

/// A pool of one connection to a backend's database, SQLite or PostgreSQL, for reading what it stored.
async fn open(database_url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .unwrap_or_else(|err| panic!("open the backend's database `{}`: {err}", redact(database_url)))
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// One decision about one occurrence of a schedule, as the backend stored it (`schedule_fires`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    /// `<schedule>-<YYYYMMDD>t<HHMMSS>z`.
    pub occurrence_id: String,
    /// When the occurrence fell due (ms since the epoch).
    pub occurrence_at_ms: i64,
    /// `fired`, `skipped_overlap` or `missed`.
    pub outcome: String,
    /// The execution it created, when it fired.
    pub exec_id: Option<String>,
    /// The instance id of the backend that decided it.
    pub decided_by: Option<String>,
    /// When it was decided (ms since the epoch, the deciding backend's clock).
    pub decided_at_ms: i64,
}

/// Every stored decision about `schedule`'s occurrences, oldest occurrence first.
pub async fn schedule_fires(database_url: &str, schedule: &str) -> Vec<Fire> {
    use sqlx::Row;
    let pool = open(database_url).await;
    let rows = sqlx::query(
        "SELECT occurrence_id, occurrence_at_ms, outcome, exec_id, decided_by, decided_at_ms FROM schedule_fires \
         WHERE schedule_id = $1 ORDER BY occurrence_at_ms",
    )
    .bind(schedule)
    .fetch_all(&pool)
    .await
    .expect("read schedule_fires");
    pool.close().await;
    rows.iter()
        .map(|row| Fire {
            occurrence_id: row.get("occurrence_id"),
            occurrence_at_ms: row.get("occurrence_at_ms"),
            outcome: row.get("outcome"),
            exec_id: row.get("exec_id"),
            decided_by: row.get("decided_by"),
            decided_at_ms: row.get("decided_at_ms"),
        })
        .collect()
}

/// The exec ids of every execution of `job` in the backend's database, sorted.
pub async fn executions_of(database_url: &str, job: &str) -> Vec<String> {
    use sqlx::Row;
    let pool = open(database_url).await;
    let rows = sqlx::query("SELECT exec_id FROM executions WHERE job_id = $1 ORDER BY exec_id")
        .bind(job)
        .fetch_all(&pool)
        .await
        .expect("read executions");
    pool.close().await;
    rows.iter().map(|row| row.get("exec_id")).collect()
}

pub use kanade_testkit::TestDatabase;
