//! `kanade-bench schedules`: schedules at fleet size (issue #17). nats-server (syncing every write, as deployed),
//! the backend on SQLite or PostgreSQL and `kanade-agent simulate` run as separate processes, and the benchmark
//! measures from the outside (`/proc`, the API, the database's rows, the broker's stream and consumer state):
//!
//! - **timed**: a schedule `cron: "*/10 * * * * *"` at every agent (`overlap: allow`) for `--fires` occurrences:
//!   per fire, how late the leader decided it, when the first and the last of the N results were stored after the
//!   occurrence, the CPU of the backend and the broker; that every occurrence fired exactly once, gap-free, and
//!   every execution completed with N `ok`. Reference in the same run, same fleet: the same job fired by hand with
//!   `POST /api/exec/{job}` as often, 10 s apart. Then the backend's idle CPU with no schedule, with the schedule
//!   paused, and with `--never-due` schedules that never fall due during the run (the leader looking at them every
//!   second).
//! - **once_per_pc**: a once-per-PC schedule at the fleet's group: until every agent ran it once; then
//!   `--agents-late` new PCs join the group: until each of them ran it once and the standing execution counts them
//!   all as targets. Then `--standing-checks` of the leader's 30 s standing checks, against the same fleet with the
//!   schedule paused (the difference is the checks' cost); what the schedule left in `EXEC` and on the broker
//!   (consumers on every stream before and after: no per-agent consumer); and how often each PC ran it (the
//!   simulator's run log) and how many results each PC stored (exactly one each).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt as _;
use kanade_shared::resources::STREAM_EXEC;
use kanade_shared::schedule::{ScheduleId, occurrence_id};
use kanade_testkit::NatsServer;

use crate::database::Store;
use crate::fanout::{self, TOKEN};
use crate::procs::{self, Proc};
use crate::stats::percentiles;

/// The backend's `scheduler::STANDING_EVERY`: how often the leader looks after a standing execution.
const STANDING_EVERY: Duration = Duration::from_secs(30);
/// The group every simulated agent is in.
const GROUP: &str = "bench";
/// The job the timed schedule and the reference fire (`fanout::create_bench_job`: target all).
const TIMED_JOB: &str = "bench-exec";
const TIMED_ID: &str = "bench-every-10s";
const ONCE_JOB: &str = "bench-once";
const ONCE_ID: &str = "bench-once-per-pc";
const NEVER_PREFIX: &str = "bench-never-";
/// The pc_id prefix of the PCs that join later.
const LATE_PREFIX: &str = "late-";
/// How long the benchmark waits for a fleet's results before it reports what is missing.
const PATIENCE: Duration = Duration::from_secs(300);

const ONCE_JOB_MANIFEST: &str = "id: bench-once\nversion: \"1.0\"\ndescription: kanade-bench, once per PC\n\
    target:\n  groups: [bench]\nexecute:\n  shell: sh\n  script: emulated\n  timeout: 60s\n";

#[derive(Debug, clap::Args)]
pub struct SchedulesArgs {
    /// Simulated agents, all in one group.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// PCs that join the group later (a second simulator), for the once-per-PC part.
    #[arg(long, default_value_t = 1_000)]
    pub agents_late: usize,
    /// Occurrences of the timed schedule measured, and manual fires of the reference.
    #[arg(long, default_value_t = 12)]
    pub fires: usize,
    /// Seconds between the timed schedule's occurrences (its cron is `*/N * * * * *`; N divides 60), and between
    /// the reference's fires.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub every: u64,
    /// Schedules defined that never fall due during the run (`cron: "0 0 1 1 *"`), for the idle figure.
    #[arg(long, default_value_t = 100)]
    pub never_due: usize,
    /// How long each idle figure is measured: no schedule (before and after), one paused, the never-due ones.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_window: Duration,
    /// Standing checks (one every 30 s) held and measured, with the once-per-PC schedule and again paused.
    #[arg(long, default_value_t = 3)]
    pub standing_checks: u32,
    /// `sqlite`, `postgres`, or both, comma-separated: each runs a fleet of its own.
    #[arg(long, default_value = "sqlite,postgres", value_delimiter = ',')]
    pub databases: Vec<String>,
    /// Where PostgreSQL is: a database is created there for the run and dropped after it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// Parts to leave out, comma-separated.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub skip: Vec<Part>,
    /// Use the binaries in this directory (e.g. target/debug) instead of building release ones.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// A part of the benchmark that `--skip` can leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The `*/10 s` schedule against firing by hand, and the idle leader.
    Timed,
    /// The once-per-PC schedule, PCs that join later, the standing checks.
    #[value(name = "once_per_pc", alias = "once-per-pc")]
    OncePerPc,
}

pub fn main(args: SchedulesArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let bin = match &args.bin_dir {
        Some(dir) => dir.canonicalize().with_context(|| format!("--bin-dir `{}`", dir.display()))?,
        None => procs::build_binaries()?,
    };
    anyhow::ensure!(!args.databases.is_empty(), "--databases names none");
    anyhow::ensure!(args.fires >= 1, "--fires must be at least 1");
    anyhow::ensure!(60 % args.every == 0, "--every must divide 60 (the cron is `*/N * * * * *`)");
    let started = Instant::now();
    let command: Vec<String> = std::env::args().collect();
    let version = std::process::Command::new(kanade_testkit::nats_server_binary()).arg("--version").output()?;
    let mut out = vec![format!(
        "Run of {} on {}; {}; load average (1/5/15 min) {} at the start\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        procs::machine(),
        String::from_utf8_lossy(&version.stdout).trim(),
        load_averages(),
    )];
    for database in &args.databases {
        out.push(runtime.block_on(fleet(&args, &bin, database))?);
    }
    out.push(format!(
        "Load average (1/5/15 min) {} at the end; the whole run took {:.1} minutes.\n\nCommand: `{}`\n",
        load_averages(),
        started.elapsed().as_secs_f64() / 60.0,
        command.join(" ")
    ));
    println!();
    for part in out {
        println!("{part}");
    }
    Ok(())
}

/// `/proc/loadavg`'s three figures.
fn load_averages() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" / ")
}

/// The processes a fleet run measures.
struct Meters {
    backend: u32,
    broker: u32,
    simulator: u32,
    /// Also add up every `postgres` process (the server is shared: anything else using it counts too).
    postgres: bool,
}

/// CPU seconds of each process at one moment.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    backend: f64,
    broker: f64,
    simulator: f64,
    postgres: f64,
}

/// What the processes used between two readings.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    seconds: f64,
    backend: f64,
    broker: f64,
    simulator: f64,
    postgres: f64,
}

impl Meters {
    fn read(&self) -> Reading {
        Reading {
            at: Instant::now(),
            backend: procs::cpu_seconds(self.backend),
            broker: procs::cpu_seconds(self.broker),
            simulator: procs::cpu_seconds(self.simulator),
            postgres: if self.postgres { procs::cpu_seconds_of_command("postgres") } else { 0.0 },
        }
    }

    fn since(&self, before: Reading) -> Usage {
        let now = self.read();
        Usage {
            seconds: now.at.duration_since(before.at).as_secs_f64(),
            backend: now.backend - before.backend,
            broker: now.broker - before.broker,
            simulator: now.simulator - before.simulator,
            postgres: now.postgres - before.postgres,
        }
    }

    /// The usage over `window` from now.
    async fn window(&self, window: Duration) -> Usage {
        let before = self.read();
        tokio::time::sleep(window).await;
        self.since(before)
    }

    /// The usage over `window`, and the backend's (plus PostgreSQL's) CPU seconds in each second of it.
    async fn sampled(&self, window: Duration) -> (Usage, Vec<f64>) {
        let before = self.read();
        let mut last = before;
        let mut seconds = Vec::new();
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        while last.at.duration_since(before.at) + Duration::from_millis(500) < window {
            tick.tick().await;
            let now = self.read();
            seconds.push(now.backend - last.backend + now.postgres - last.postgres);
            last = now;
        }
        (self.since(before), seconds)
    }
}

impl Usage {
    /// The sum of several windows.
    fn plus(self, other: Usage) -> Usage {
        Usage {
            seconds: self.seconds + other.seconds,
            backend: self.backend + other.backend,
            broker: self.broker + other.broker,
            simulator: self.simulator + other.simulator,
            postgres: self.postgres + other.postgres,
        }
    }

    /// This usage less what `idle` used in the same time.
    fn net_of(self, idle: Usage) -> Usage {
        let scale = self.seconds / idle.seconds.max(0.001);
        Usage {
            seconds: self.seconds,
            backend: self.backend - idle.backend * scale,
            broker: self.broker - idle.broker * scale,
            simulator: self.simulator - idle.simulator * scale,
            postgres: self.postgres - idle.postgres * scale,
        }
    }

    /// Divided by `n` (per fire, per check).
    fn per(self, n: f64) -> Usage {
        Usage {
            seconds: self.seconds / n,
            backend: self.backend / n,
            broker: self.broker / n,
            simulator: self.simulator / n,
            postgres: self.postgres / n,
        }
    }
}

/// Percent of one core.
fn pct(cpu_seconds: f64, seconds: f64) -> f64 {
    cpu_seconds / seconds.max(0.001) * 100.0
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn opt_secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "not within the patience".to_owned(), secs)
}

/// Sleeps until the wall clock reads `at` (at once if it is past).
async fn sleep_until_utc(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

fn chrono_of(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or_default()
}

/// The first multiple of `period` after `after`, to the second.
fn next_boundary(after: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    let period = i64::try_from(period.as_secs()).unwrap_or(10).max(1);
    let secs = after.timestamp() + 1;
    let boundary = secs + (period - secs.rem_euclid(period)) % period;
    DateTime::from_timestamp(boundary, 0).unwrap_or(after)
}

/// What a fleet run works with.
struct Rig<'a> {
    args: &'a SchedulesArgs,
    store: &'a Store,
    api: String,
    http: reqwest::Client,
    js: jetstream::Context,
    meters: Meters,
    /// The load average at each step, for the report.
    loads: std::sync::Mutex<Vec<f64>>,
}

impl Rig<'_> {
    fn note_load(&self) {
        if let Ok(mut loads) = self.loads.lock() {
            loads.push(procs::load_average());
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let reply = self.http.get(format!("{}{path}", self.api)).bearer_auth(TOKEN).send().await?;
        let status = reply.status();
        let text = reply.text().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    async fn post(&self, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<serde_json::Value> {
        let mut request = self.http.post(format!("{}{path}", self.api)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await?;
        let status = reply.status();
        let text = reply.text().await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let reply = self.http.delete(format!("{}{path}", self.api)).bearer_auth(TOKEN).send().await?;
        let status = reply.status();
        anyhow::ensure!(status.is_success(), "DELETE {path}: {status}: {}", reply.text().await?);
        Ok(())
    }

    async fn create_schedule(&self, yaml: &str) -> anyhow::Result<serde_json::Value> {
        self.post("/api/schedules", Some(serde_json::json!({ "schedule": yaml }))).await
    }

    async fn count(&self, sql: &str) -> i64 {
        self.store.count(sql).await.unwrap_or(-1)
    }

    /// Waits until `sql` counts at least `target`, polling every 250 ms: how long it took, or `None` after
    /// `patience` (reported as missing rather than failing the run).
    async fn until_count(&self, sql: &str, target: i64, patience: Duration) -> Option<Duration> {
        let started = Instant::now();
        loop {
            let n = self.count(sql).await;
            if n >= target {
                return Some(started.elapsed());
            }
            if started.elapsed() > patience {
                eprintln!("bench: `{sql}` counted {n} of {target} after {} s", patience.as_secs());
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// One execution's results as stored.
    async fn results_of(&self, exec: &str) -> anyhow::Result<Stored> {
        let of = format!("FROM results WHERE exec_id = '{exec}'");
        let view = self.get(&format!("/api/executions/{exec}")).await?;
        Ok(Stored {
            results: self.count(&format!("SELECT COUNT(*) {of}")).await,
            pcs: self.count(&format!("SELECT COUNT(DISTINCT pc_id) {of}")).await,
            ok: self.count(&format!("SELECT COUNT(*) {of} AND status = 'ok'")).await,
            first_ms: self.count(&format!("SELECT COALESCE(MIN(recorded_at_ms), 0) {of}")).await,
            last_ms: self.count(&format!("SELECT COALESCE(MAX(recorded_at_ms), 0) {of}")).await,
            status: view["status"].as_str().unwrap_or("?").to_owned(),
            target_count: view["target_count"].as_i64().unwrap_or(-1),
            api_ok: view["by_status"]["ok"].as_i64().unwrap_or(0),
            created_at: view["created_at"].as_str().and_then(|t| t.parse().ok()),
        })
    }
}

/// An execution's results and state.
#[derive(Debug, Clone)]
struct Stored {
    results: i64,
    pcs: i64,
    ok: i64,
    first_ms: i64,
    last_ms: i64,
    status: String,
    target_count: i64,
    api_ok: i64,
    created_at: Option<DateTime<Utc>>,
}

impl Stored {
    /// Completed with `n` targets and `n` results, one per PC, all `ok`.
    fn clean(&self, n: usize) -> bool {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.status == "completed"
            && self.target_count == n
            && self.results == n
            && self.pcs == n
            && self.ok == n
            && self.api_ok == n
    }
}

/// A schedule's decision of one occurrence as the API shows it: outcome, occurrence time, decision time.
type Decision = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// One fire: its execution, and the instant it counts from (the occurrence, or the manual POST's send).
#[derive(Debug, Clone)]
struct Fire {
    exec: String,
    at: DateTime<Utc>,
    /// The schedule's decision time (from the API), or the POST's answer time.
    decided: Option<DateTime<Utc>>,
    outcome: String,
    stored: Option<Stored>,
}

impl Fire {
    fn ms_after(&self, ms: i64) -> i64 {
        ms - self.at.timestamp_millis()
    }

    fn decided_ms(&self) -> Option<i64> {
        self.decided.map(|d| (d - self.at).num_milliseconds())
    }

    fn created_ms(&self) -> Option<i64> {
        self.stored.as_ref().and_then(|s| s.created_at).map(|c| (c - self.at).num_milliseconds())
    }
}

/// One fleet on one database, both parts; markdown on return.
async fn fleet(args: &SchedulesArgs, bin: &Path, kind: &str) -> anyhow::Result<String> {
    let work = tempfile::tempdir()?;
    let store = Store::create(kind, work.path(), &args.postgres, "schedules").await?;
    let sims = PathBuf::from(format!("/dev/shm/kanade-bench-schedules-{}", std::process::id()));
    let result = fleet_in(args, bin, kind, work.path(), &store, &sims).await;
    let _ = std::fs::remove_dir_all(&sims);
    store.drop_database().await;
    result
}

async fn fleet_in(
    args: &SchedulesArgs,
    bin: &Path,
    kind: &str,
    work: &Path,
    store: &Store,
    sims: &Path,
) -> anyhow::Result<String> {
    let n = args.agents;
    eprintln!("bench: {kind}: {n} simulated agents in group `{GROUP}`");
    let nats = NatsServer::start_durable();
    let url = nats.url();
    let client = kanade_testkit::client(&url).await;
    let js = jetstream::new(client.clone());
    kanade_ops::jetstream::setup(&js, 1).await?;
    kanade_testkit::fleet().push_trust(&client).await;
    let backend = fanout::start_backend_on(bin, &url, work, store.url()).await?;
    let http = reqwest::Client::new();
    wait_leading(&http, &backend.url).await?;
    let sim = start_simulator(bin, &url, &sims.join("main"), "sim-", n).await?;
    fanout::wait_for_agents(&http, &backend.url, n).await?;
    fanout::create_bench_job(&http, &backend.url).await?;
    let rig = Rig {
        args,
        store,
        api: backend.url.clone(),
        http,
        js,
        meters: Meters {
            backend: backend.proc.pid,
            broker: nats.pid().context("no broker pid")?,
            simulator: sim.pid,
            postgres: kind == "postgres",
        },
        loads: std::sync::Mutex::new(vec![procs::load_average()]),
    };
    // Let the fleet's start (first heartbeats, registrations) settle before anything is measured.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let mut out = format!("### {kind}\n\n");
    if !args.skip.contains(&Part::Timed) {
        out.push_str(&timed(&rig).await?);
    }
    if args.skip.contains(&Part::OncePerPc) {
        sim.stop(Duration::from_secs(60)).await;
    } else {
        out.push_str(&once_per_pc(&rig, bin, &url, sims).await?);
        sim.stop(Duration::from_secs(60)).await;
        out.push_str(&quiet(&rig).await?);
    }
    rig.note_load();
    let loads = rig.loads.lock().map(|l| l.clone()).unwrap_or_default();
    let (low, high) = loads.iter().fold((f64::MAX, 0.0f64), |(lo, hi), l| (lo.min(*l), hi.max(*l)));
    out.push_str(&format!(
        "1-minute load average during this fleet's run: {low:.2}-{high:.2} ({} samples); backend RSS at the end \
         {:.0} MB, broker {:.0} MB.\n\n",
        loads.len(),
        mb(procs::rss_bytes(rig.meters.backend)),
        mb(procs::rss_bytes(rig.meters.broker)),
    ));

    backend.proc.stop(Duration::from_secs(10)).await;
    drop(nats);
    Ok(out)
}

/// Waits until the backend says it leads (it is the only replica: it takes the lease within seconds).
async fn wait_leading(http: &reqwest::Client, api: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let health: serde_json::Value = http.get(format!("{api}/health")).send().await?.json().await?;
        if health["leading"] == true {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the backend does not lead after 60 s: {health}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_simulator(bin: &Path, url: &str, data: &Path, prefix: &str, count: usize) -> anyhow::Result<Proc> {
    std::fs::create_dir_all(data)?;
    let mut command = tokio::process::Command::new(bin.join("kanade-agent"));
    command
        .args(["simulate", "--count", &count.to_string(), "--connections", &count.div_ceil(100).max(1).to_string()])
        .args(["--id-prefix", prefix, "--groups", GROUP, "--heartbeat-interval", "30s", "--record-runs"])
        .args(kanade_testkit::fleet().simulator_args())
        .arg("--data-dir")
        .arg(data)
        .env("KANADE_NATS_URL", url)
        .env("KANADE_LOG", "warn");
    let mut sim = Proc::spawn(command, &data.join("simulator.log"))?;
    sim.ready_line(Duration::from_secs(600)).await.context("the simulator did not get ready")?;
    Ok(sim)
}

/// The timed part: idle with no schedule, the schedule's fires, the same fired by hand, idle with the schedule
/// paused and with the never-due ones, idle with none again.
async fn timed(rig: &Rig<'_>) -> anyhow::Result<String> {
    let args = rig.args;
    let (n, fires) = (args.agents, args.fires);
    let fires_u32 = u32::try_from(fires)?;
    let period = Duration::from_secs(args.every);
    let cron = format!("*/{} * * * * *", args.every);
    eprintln!("bench: timed: idle with no schedule, {}", humantime::format_duration(args.idle_window));
    rig.note_load();
    let none_before = rig.meters.window(args.idle_window).await;

    // The schedule, bounded to exactly `fires` occurrences: the first a few seconds from now.
    let first = next_boundary(Utc::now() + chrono::Duration::seconds(5), period);
    let last = first + chrono_of(period * (fires_u32 - 1));
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let yaml = format!(
        "id: {TIMED_ID}\ndescription: kanade-bench\njob: {TIMED_JOB}\ncron: \"{cron}\"\ntarget:\n  all: true\n\
         overlap: allow\nnot_before: \"{}\"\nnot_after: \"{}\"\n",
        stamp(first),
        if fires > 1 { stamp(last) } else { stamp(last + chrono::Duration::seconds(1)) }
    );
    rig.create_schedule(&yaml).await?;
    eprintln!("bench: timed: {fires} fires from {} to {}", first.format("%H:%M:%S"), last.format("%H:%M:%S"));
    rig.note_load();
    sleep_until_utc(first - chrono::Duration::milliseconds(500)).await;
    let before = rig.meters.read();
    sleep_until_utc(first + chrono_of(period * fires_u32) - chrono::Duration::milliseconds(500)).await;
    let all = i64::try_from(n * fires)?;
    let settled = rig
        .until_count(&format!("SELECT COUNT(*) FROM results WHERE exec_id LIKE '{TIMED_ID}-%'"), all, PATIENCE)
        .await;
    let scheduled_usage = rig.meters.since(before);
    rig.note_load();
    let id = ScheduleId::new(TIMED_ID)?;
    let view = rig.get(&format!("/api/schedules/{TIMED_ID}")).await?;
    let mut decided: HashMap<String, Decision> = HashMap::new();
    for fire in view["fires"].as_array().cloned().unwrap_or_default() {
        let occurrence = fire["occurrence_id"].as_str().unwrap_or_default().to_owned();
        decided.insert(
            occurrence,
            (
                fire["outcome"].as_str().unwrap_or("?").to_owned(),
                fire["occurrence_at"].as_str().and_then(|t| t.parse().ok()),
                fire["decided_at"].as_str().and_then(|t| t.parse().ok()),
            ),
        );
    }
    let mut scheduled = Vec::new();
    for k in 0..fires_u32 {
        let at = first + chrono_of(period * k);
        let exec = occurrence_id(&id, at).to_string();
        let (outcome, occurrence_at, decided_at) = decided.get(&exec).cloned().unwrap_or(("none".into(), None, None));
        let stored = rig.results_of(&exec).await.ok();
        scheduled.push(Fire { exec, at: occurrence_at.unwrap_or(at), decided: decided_at, outcome, stored });
    }
    let fire_rows = rig.count(&format!("SELECT COUNT(*) FROM schedule_fires WHERE schedule_id = '{TIMED_ID}'")).await;
    let distinct_rows = rig
        .count(&format!("SELECT COUNT(DISTINCT occurrence_id) FROM schedule_fires WHERE schedule_id = '{TIMED_ID}'"))
        .await;
    let executions = rig.count(&format!("SELECT COUNT(*) FROM executions WHERE exec_id LIKE '{TIMED_ID}-%'")).await;
    let gap_free = {
        let mut ats: Vec<DateTime<Utc>> = decided.values().filter_map(|(_, at, _)| *at).collect();
        ats.sort();
        ats.len() == fires && ats.windows(2).all(|w| w[1] - w[0] == chrono_of(period)) && ats.first() == Some(&first)
    };

    // The reference: the same job fired by hand as often, 10 s apart, on the same boundaries.
    eprintln!("bench: timed: the reference, {fires} x POST /api/exec/{TIMED_JOB}, {} s apart", args.every);
    let start = next_boundary(Utc::now() + chrono::Duration::seconds(3), period);
    sleep_until_utc(start - chrono::Duration::milliseconds(500)).await;
    let before = rig.meters.read();
    let mut manual = Vec::new();
    let mut post_ms = Vec::new();
    for k in 0..fires_u32 {
        sleep_until_utc(start + chrono_of(period * k)).await;
        let sent = Utc::now();
        let timer = Instant::now();
        let view = rig.post(&format!("/api/exec/{TIMED_JOB}"), Some(serde_json::json!({}))).await?;
        post_ms.push(i64::try_from(timer.elapsed().as_millis())?);
        let exec = view["exec_id"].as_str().context("the exec answer has no exec_id")?.to_owned();
        manual.push(Fire { exec, at: sent, decided: Some(Utc::now()), outcome: "posted".into(), stored: None });
    }
    sleep_until_utc(start + chrono_of(period * fires_u32) - chrono::Duration::milliseconds(500)).await;
    let ids: Vec<String> = manual.iter().map(|f| format!("'{}'", f.exec)).collect();
    let manual_settled = rig
        .until_count(&format!("SELECT COUNT(*) FROM results WHERE exec_id IN ({})", ids.join(", ")), all, PATIENCE)
        .await;
    let manual_usage = rig.meters.since(before);
    rig.note_load();
    for fire in &mut manual {
        fire.stored = rig.results_of(&fire.exec).await.ok();
    }

    // The idle leader: the schedule paused; then no schedule at all; then the never-due ones (each compared with the
    // window with none next to it, in the same state of the database).
    rig.post(&format!("/api/schedules/{TIMED_ID}/pause"), None).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("bench: timed: idle with the schedule paused");
    rig.note_load();
    let paused = rig.meters.window(args.idle_window).await;
    rig.delete(&format!("/api/schedules/{TIMED_ID}")).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("bench: timed: idle with no schedule again");
    rig.note_load();
    let none_after = rig.meters.window(args.idle_window).await;
    let create_time = create_never_due(rig).await?;
    eprintln!("bench: timed: idle with {} never-due schedules", args.never_due);
    rig.note_load();
    let never = rig.meters.window(args.idle_window).await;
    delete_never_due(rig).await?;
    let idle = none_before.plus(none_after);

    // The report.
    let mut out = format!(
        "#### Timed: `cron: \"{cron}\"` at all {n} agents (`overlap: allow`), {fires} occurrences\n\n\
         | occurrence (UTC) | outcome | decided after | execution created after | first / last result stored after \
         | results / PCs / ok | status |\n|---|---|---:|---:|---:|---:|---|\n"
    );
    for fire in &scheduled {
        out.push_str(&fire_row(fire, &fire.at.format("%H:%M:%S").to_string()));
    }
    out.push_str(
        "\n| reference: `POST /api/exec` (sent at) | | answered after | execution created after | first / last \
         result stored after | results / PCs / ok | status |\n|---|---|---:|---:|---:|---:|---|\n",
    );
    for fire in &manual {
        out.push_str(&fire_row(fire, &fire.at.format("%H:%M:%S%.3f").to_string()));
    }

    let lag: Vec<i64> = scheduled.iter().filter_map(Fire::decided_ms).collect();
    let last_of = |fires: &[Fire]| -> Vec<i64> {
        fires
            .iter()
            .filter_map(|f| f.stored.as_ref().filter(|s| s.last_ms > 0).map(|s| f.ms_after(s.last_ms)))
            .collect()
    };
    // From the decision (the schedule's) or the POST's answer: what the same work took once it was asked for.
    let last_after_decision = |fires: &[Fire]| -> Vec<i64> {
        fires
            .iter()
            .filter_map(|f| {
                let s = f.stored.as_ref().filter(|s| s.last_ms > 0)?;
                Some(s.last_ms - f.decided?.timestamp_millis())
            })
            .collect()
    };
    let created_of = |fires: &[Fire]| -> Vec<i64> { fires.iter().filter_map(Fire::created_ms).collect() };
    let (s_last, m_last) = (percentiles(last_of(&scheduled)), percentiles(last_of(&manual)));
    let (s_decided_last, m_answered_last) =
        (percentiles(last_after_decision(&scheduled)), percentiles(last_after_decision(&manual)));
    let (s_created, m_created) = (percentiles(created_of(&scheduled)), percentiles(created_of(&manual)));
    let clean = |fires: &[Fire]| fires.iter().filter(|f| f.stored.as_ref().is_some_and(|s| s.clean(n))).count();
    let fired = scheduled.iter().filter(|f| f.outcome == "fired").count();
    let (s_use, m_use) = (scheduled_usage.per(fires as f64), manual_usage.per(fires as f64));
    let (s_net, m_net) = (scheduled_usage.net_of(idle).per(fires as f64), manual_usage.net_of(idle).per(fires as f64));
    let ratio = |a: f64, b: f64| if b.abs() > 1e-9 { format!("{:.2}", a / b) } else { "—".into() };
    let p = |v: crate::stats::Percentiles| format!("{} / {} ms", v.p50, v.max);
    let mut table = String::from(
        "\n| per fire, 10,000-agent fleet | schedule | `POST /api/exec` by hand | schedule / by hand |\n|---|---:|---:|---:|\n",
    );
    let mut row =
        |what: &str, a: String, b: String, r: String| table.push_str(&format!("| {what} | {a} | {b} | {r} |\n"));
    row(
        "occurrences fired / expected; decisions in SQL (distinct); executions",
        format!("{fired} / {fires}; {fire_rows} ({distinct_rows}); {executions}"),
        format!("{} POSTs", manual.len()),
        "—".into(),
    );
    row(
        &format!("occurrences gap-free, {} s apart from the first", args.every),
        if gap_free { "yes" } else { "NO" }.into(),
        "—".into(),
        "—".into(),
    );
    row(
        &format!("executions completed with {n} `ok`, one per PC"),
        format!("{} of {fires}", clean(&scheduled)),
        format!("{} of {fires}", clean(&manual)),
        "—".into(),
    );
    row(
        "decided after the occurrence (p50 / max)",
        p(percentiles(lag)),
        format!("POST answered: {}", p(percentiles(post_ms))),
        "—".into(),
    );
    row(
        "execution created after the occurrence / the POST was sent (p50 / max)",
        p(s_created),
        p(m_created),
        "—".into(),
    );
    row(
        &format!("all {n} results stored after the occurrence / the POST was sent (p50 / max)"),
        p(s_last),
        p(m_last),
        ratio(s_last.p50 as f64, m_last.p50 as f64),
    );
    row(
        &format!("all {n} results stored after the decision / the POST's answer (p50 / max)"),
        p(s_decided_last),
        p(m_answered_last),
        ratio(s_decided_last.p50 as f64, m_answered_last.p50 as f64),
    );
    row(
        "backend CPU per fire: all / net of idle",
        format!("{:.2} s / {:.2} s", s_use.backend, s_net.backend),
        format!("{:.2} s / {:.2} s", m_use.backend, m_net.backend),
        ratio(s_net.backend, m_net.backend),
    );
    if rig.meters.postgres {
        row(
            "PostgreSQL server CPU per fire: all / net",
            format!("{:.2} s / {:.2} s", s_use.postgres, s_net.postgres),
            format!("{:.2} s / {:.2} s", m_use.postgres, m_net.postgres),
            ratio(s_net.postgres, m_net.postgres),
        );
    }
    row(
        "broker CPU per fire: all / net",
        format!("{:.2} s / {:.2} s", s_use.broker, s_net.broker),
        format!("{:.2} s / {:.2} s", m_use.broker, m_net.broker),
        ratio(s_net.broker, m_net.broker),
    );
    row(
        &format!("simulator ({n} agents) CPU per fire: all / net"),
        format!("{:.2} s / {:.2} s", s_use.simulator, s_net.simulator),
        format!("{:.2} s / {:.2} s", m_use.simulator, m_net.simulator),
        "—".into(),
    );
    row(
        "measured window (from 0.5 s before the first fire until the last result)",
        format!("{:.1} s{}", scheduled_usage.seconds, if settled.is_some() { "" } else { ", results missing" }),
        format!("{:.1} s{}", manual_usage.seconds, if manual_settled.is_some() { "" } else { ", results missing" }),
        "—".into(),
    );
    out.push_str(&table);

    out.push_str(&idle_table(
        &format!(
            "backend idle, {n} agents heartbeating every 30 s ({} windows)",
            humantime::format_duration(args.idle_window)
        ),
        &[
            ("no schedule (before the fires)", &none_before),
            ("the timed schedule paused", &paused),
            ("no schedule (the timed one deleted): the reference of the rows around it", &none_after),
            (&format!("{} never-due schedules (`0 0 1 1 *`)", args.never_due)[..], &never),
        ],
        &none_after,
        rig.meters.postgres,
    ));
    out.push_str(&format!(
        "\nCreating the {} never-due schedules (`POST /api/schedules`, one after another) took {:.1} s.\n\n",
        args.never_due,
        create_time.as_secs_f64()
    ));
    Ok(out)
}

/// The leader's own cost with no traffic: the simulators stopped (every PC still known to the backend), the
/// once-per-PC schedule paused (the reference), resumed for `--standing-checks` checks, paused again with the
/// never-due schedules defined.
async fn quiet(rig: &Rig<'_>) -> anyhow::Result<String> {
    let args = rig.args;
    let known = args.agents + args.agents_late;
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("bench: quiet: the simulators stopped, {known} PCs known; the once-per-PC schedule paused");
    rig.note_load();
    let paused = rig.meters.window(args.idle_window).await;
    // Resumed, the schedule is looked after at once and then every 30 s: a window from half a period later holds
    // `standing_checks` whole checks.
    rig.post(&format!("/api/schedules/{ONCE_ID}/resume"), None).await?;
    tokio::time::sleep(STANDING_EVERY / 2).await;
    let hold = STANDING_EVERY * args.standing_checks;
    eprintln!("bench: quiet: {} standing checks ({} s)", args.standing_checks, hold.as_secs());
    rig.note_load();
    let (checks, seconds) = rig.meters.sampled(hold).await;
    rig.post(&format!("/api/schedules/{ONCE_ID}/pause"), None).await?;
    let create_time = create_never_due(rig).await?;
    eprintln!("bench: quiet: {} never-due schedules", args.never_due);
    rig.note_load();
    let never = rig.meters.window(args.idle_window).await;
    delete_never_due(rig).await?;

    let n_checks = f64::from(args.standing_checks);
    let per_check = checks.net_of(paused).per(n_checks);
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let top: Vec<String> =
        sorted.iter().rev().take(usize::try_from(args.standing_checks)? + 2).map(|s| format!("{:.2}", s)).collect();
    let mut out = format!("#### The leader with no traffic: the simulators stopped, {known} PCs known\n");
    out.push_str(&idle_table(
        &format!("window (the once-per-PC execution has {known} targets)"),
        &[
            ("the once-per-PC schedule paused: the reference", &paused),
            (
                &format!("the once-per-PC schedule: {} standing checks in {} s", args.standing_checks, hold.as_secs())
                    [..],
                &checks,
            ),
            (&format!("{} never-due schedules (and the paused one)", args.never_due)[..], &never),
        ],
        &paused,
        rig.meters.postgres,
    ));
    out.push_str(&format!(
        "\nPer standing check (difference from the reference / checks): backend {:.3} s, PostgreSQL server {:.3} s, \
         broker {:.3} s. Backend (+PostgreSQL) CPU in each second of the checks' window: median {median:.2} s, \
         largest {}. Looking at {} never-due schedules every second: {:+.2} ms of backend CPU per second \
         (creating them took {:.1} s).\n\n",
        per_check.backend,
        per_check.postgres,
        per_check.broker,
        top.join(", "),
        args.never_due,
        (never.backend / never.seconds.max(0.001) - paused.backend / paused.seconds.max(0.001)) * 1000.0,
        create_time.as_secs_f64()
    ));
    Ok(out)
}

/// Creates the never-due schedules; how long that took.
async fn create_never_due(rig: &Rig<'_>) -> anyhow::Result<Duration> {
    let created = Instant::now();
    for k in 1..=rig.args.never_due {
        let yaml = format!("id: {NEVER_PREFIX}{k:03}\njob: {TIMED_JOB}\ncron: \"0 0 1 1 *\"\n");
        rig.create_schedule(&yaml).await?;
    }
    let took = created.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(took)
}

async fn delete_never_due(rig: &Rig<'_>) -> anyhow::Result<()> {
    for k in 1..=rig.args.never_due {
        rig.delete(&format!("/api/schedules/{NEVER_PREFIX}{k:03}")).await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

/// Idle windows side by side: the backend's CPU, its difference from `reference` in ms of CPU per second, the
/// broker's (and the PostgreSQL server's).
fn idle_table(title: &str, windows: &[(&str, &Usage)], reference: &Usage, postgres: bool) -> String {
    let rate = |cpu: f64, u: &Usage| cpu / u.seconds.max(0.001);
    let mut out = format!(
        "\n| {title} | backend, % of one core | backend CPU per minute | backend less the reference, ms/s |{} broker, \
         % of one core |\n|---|---:|---:|---:|{}---:|\n",
        if postgres { " PostgreSQL server, % of one core | PostgreSQL less the reference, ms/s |" } else { "" },
        if postgres { "---:|---:|" } else { "" }
    );
    for (what, u) in windows {
        let postgres = if postgres {
            format!(
                " {:.2}% | {:+.2} |",
                pct(u.postgres, u.seconds),
                (rate(u.postgres, u) - rate(reference.postgres, reference)) * 1000.0
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {what} | {:.2}% | {:.2} s | {:+.2} |{postgres} {:.2}% |\n",
            pct(u.backend, u.seconds),
            rate(u.backend, u) * 60.0,
            (rate(u.backend, u) - rate(reference.backend, reference)) * 1000.0,
            pct(u.broker, u.seconds)
        ));
    }
    out
}

fn fire_row(fire: &Fire, when: &str) -> String {
    let ms = |v: Option<i64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v} ms"));
    match &fire.stored {
        Some(s) => format!(
            "| {when} | {} | {} | {} | {} / {} ms | {} / {} / {} | {} |\n",
            fire.outcome,
            ms(fire.decided_ms()),
            ms(fire.created_ms()),
            if s.first_ms > 0 { fire.ms_after(s.first_ms).to_string() } else { "—".into() },
            if s.last_ms > 0 { fire.ms_after(s.last_ms).to_string() } else { "—".into() },
            s.results,
            s.pcs,
            s.ok,
            s.status
        ),
        None => format!("| {when} | {} | {} | — | — | — | no execution |\n", fire.outcome, ms(fire.decided_ms())),
    }
}

/// The broker's state: `EXEC`'s messages and last sequence, the consumers on every stream, the account's totals and
/// the broker's memory.
#[derive(Debug, Clone, Default)]
struct BrokerState {
    exec_messages: u64,
    exec_last: u64,
    consumers: BTreeMap<String, usize>,
    account_consumers: usize,
    account_streams: usize,
    rss: u64,
}

async fn broker_state(rig: &Rig<'_>) -> anyhow::Result<BrokerState> {
    let exec = rig.js.get_stream(STREAM_EXEC).await?.get_info().await?.state;
    let mut consumers = BTreeMap::new();
    let names: Vec<String> = rig.js.stream_names().filter_map(|n| async move { n.ok() }).collect().await;
    for name in names {
        let info = rig.js.get_stream(&name).await?.get_info().await?;
        consumers.insert(name, info.state.consumer_count);
    }
    let account = rig.js.query_account().await?;
    Ok(BrokerState {
        exec_messages: exec.messages,
        exec_last: exec.last_sequence,
        consumers,
        account_consumers: account.consumers,
        account_streams: account.streams,
        rss: procs::rss_bytes(rig.meters.broker),
    })
}

/// How many PCs' run logs under `dir` say they ran `exec` once, twice, ... (zero: never), and the runs of other
/// executions they logged, by exec id.
fn runs_of(dir: &Path, exec: &str) -> (BTreeMap<usize, usize>, BTreeMap<String, usize>) {
    let mut histogram = BTreeMap::new();
    let mut others = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return (histogram, others) };
    for entry in entries.flatten() {
        if !entry.path().is_dir() {
            continue;
        }
        let log = std::fs::read_to_string(entry.path().join("runs.log")).unwrap_or_default();
        let mut mine = 0;
        for line in log.lines() {
            if line == exec {
                mine += 1;
            } else {
                *others.entry(line.to_owned()).or_insert(0) += 1;
            }
        }
        *histogram.entry(mine).or_insert(0) += 1;
    }
    (histogram, others)
}

/// What `after` counts beyond `before`, as `exec x count` pairs; `none` if nothing.
fn runs_added(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> String {
    let added: Vec<String> = after
        .iter()
        .filter_map(|(exec, n)| {
            let more = n.saturating_sub(before.get(exec).copied().unwrap_or(0));
            (more > 0).then(|| format!("`{exec}` x {more}"))
        })
        .collect();
    if added.is_empty() { "none".to_owned() } else { added.join(", ") }
}

/// The once-per-PC part.
async fn once_per_pc(rig: &Rig<'_>, bin: &Path, url: &str, sims: &Path) -> anyhow::Result<String> {
    let args = rig.args;
    let (n, late_n) = (args.agents, args.agents_late);
    rig.post("/api/jobs", Some(serde_json::json!({ "manifest": ONCE_JOB_MANIFEST }))).await?;
    let before = broker_state(rig).await?;
    // Runs the first fleet logged before (the timed part's), so that the report counts only what came after.
    let (_, logged_before) = runs_of(&sims.join("main"), "");
    eprintln!("bench: once_per_pc: the schedule at group `{GROUP}` ({n} PCs)");
    rig.note_load();
    let yaml = format!(
        "id: {ONCE_ID}\ndescription: kanade-bench\njob: {ONCE_JOB}\nmode: once_per_pc\ntarget:\n  groups: [{GROUP}]\n"
    );
    let created = Instant::now();
    let created_at = Utc::now();
    rig.create_schedule(&yaml).await?;
    let (exec, decided_at) = loop {
        let view = rig.get(&format!("/api/schedules/{ONCE_ID}")).await?;
        let fire = &view["fires"][0];
        if let Some(exec) = fire["exec_id"].as_str() {
            break (exec.to_owned(), fire["decided_at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()));
        }
        if created.elapsed() > Duration::from_secs(60) {
            bail!("the once-per-PC schedule did not fire within 60 s: {view}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let fired_after = decided_at.map(|d| (d - created_at).num_milliseconds());
    let of = format!("FROM results WHERE exec_id = '{exec}'");
    let all_ran = rig
        .until_count(&format!("SELECT COUNT(DISTINCT pc_id) {of}"), i64::try_from(n)?, PATIENCE)
        .await
        .map(|_| created.elapsed());
    let after_fire = broker_state(rig).await?;
    let fleet_ran = rig.results_of(&exec).await?;

    eprintln!("bench: once_per_pc: {late_n} PCs join the group");
    rig.note_load();
    let late_started = Instant::now();
    let late = start_simulator(bin, url, &sims.join("late"), LATE_PREFIX, late_n).await?;
    let late_ready = late_started.elapsed();
    let late_sql = format!("SELECT COUNT(DISTINCT pc_id) {of} AND pc_id LIKE '{LATE_PREFIX}%'");
    let want = i64::try_from(n + late_n)?;
    let (mut late_all, mut targeted, mut target_count) = (None, None, 0);
    let mut last_look = Instant::now() - Duration::from_secs(1);
    while late_all.is_none() || targeted.is_none() {
        if late_all.is_none() && rig.count(&late_sql).await >= i64::try_from(late_n)? {
            late_all = Some(late_started.elapsed());
        }
        if targeted.is_none() && last_look.elapsed() >= Duration::from_secs(1) {
            last_look = Instant::now();
            target_count = rig.get(&format!("/api/executions/{exec}")).await?["target_count"].as_i64().unwrap_or(0);
            if target_count >= want {
                targeted = Some(late_started.elapsed());
            }
        }
        if late_started.elapsed() > PATIENCE {
            eprintln!("bench: once_per_pc: late PCs not all in after {} s", PATIENCE.as_secs());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let meters = &rig.meters;
    let after_late = broker_state(rig).await?;

    // The standing checks: a window that starts half a period after the check that added the late PCs, so it holds
    // `standing_checks` whole checks; then the same with the schedule paused.
    let hold = STANDING_EVERY * args.standing_checks;
    tokio::time::sleep(STANDING_EVERY / 2).await;
    eprintln!("bench: once_per_pc: holding {} standing checks ({} s)", args.standing_checks, hold.as_secs());
    rig.note_load();
    let exec_before_hold = broker_state(rig).await?.exec_last;
    let (with, with_seconds) = meters.sampled(hold).await;
    let exec_after_hold = broker_state(rig).await?.exec_last;
    rig.post(&format!("/api/schedules/{ONCE_ID}/pause"), None).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("bench: once_per_pc: the same fleet with the schedule paused ({} s)", hold.as_secs());
    rig.note_load();
    let (without, without_seconds) = meters.sampled(hold).await;
    let after = broker_state(rig).await?;

    let stored = rig.results_of(&exec).await?;
    let (main_runs, main_others) = runs_of(&sims.join("main"), &exec);
    let (late_runs, late_others) = runs_of(&sims.join("late"), &exec);
    late.stop(Duration::from_secs(60)).await;
    let spikes = |seconds: &[f64]| {
        let mut sorted = seconds.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let top: Vec<f64> = sorted.iter().rev().take(3).copied().collect();
        (median, top)
    };
    let (with_median, with_top) = spikes(&with_seconds);
    let (without_median, without_top) = spikes(&without_seconds);

    let checks = f64::from(args.standing_checks);
    let per_check = with.net_of(without).per(checks);
    let mut out = format!(
        "#### Once per PC: `mode: once_per_pc` at group `{GROUP}` ({n} PCs), then {late_n} PCs join it\n\n\
         | figure | value |\n|---|---:|\n"
    );
    let mut row = |what: &str, value: String| out.push_str(&format!("| {what} | {value} |\n"));
    row(
        "schedule created -> standing execution fired (decided_at)",
        fired_after.map_or_else(|| "—".into(), |ms| format!("{ms} ms")),
    );
    row(&format!("schedule created -> all {n} ran it (results stored)"), opt_secs(all_ran));
    row(
        "the fleet's results: rows / PCs / ok; execution status, target_count",
        format!(
            "{} / {} / {}; {}, {}",
            fleet_ran.results, fleet_ran.pcs, fleet_ran.ok, fleet_ran.status, fleet_ran.target_count
        ),
    );
    row(&format!("second simulator ({late_n} new PCs) started -> ready (connected, subscribed)"), secs(late_ready));
    row(&format!("-> all {late_n} ran it (results stored)"), opt_secs(late_all));
    row(
        &format!("-> the standing execution's target_count is {want}"),
        format!("{} (last seen {target_count})", opt_secs(targeted)),
    );
    let histogram = |h: &BTreeMap<usize, usize>| {
        h.iter().map(|(runs, pcs)| format!("{pcs} PCs ran it {runs}x")).collect::<Vec<_>>().join(", ")
    };
    row("runs of the standing execution per PC (the simulators' run logs): first fleet", histogram(&main_runs));
    row("the same: PCs that joined later", histogram(&late_runs));
    row(
        "results stored for it: rows / distinct PCs / ok (duplicates)",
        format!("{} / {} / {} ({})", stored.results, stored.pcs, stored.ok, stored.results - stored.pcs),
    );
    row(
        "other runs in the logs meanwhile: first fleet / PCs that joined later",
        format!("{} / {}", runs_added(&logged_before, &main_others), runs_added(&BTreeMap::new(), &late_others)),
    );
    row(
        &format!("backend CPU over {} s: with the schedule ({} checks) / paused", hold.as_secs(), args.standing_checks),
        format!("{:.2} s / {:.2} s", with.backend, without.backend),
    );
    row("backend CPU per standing check (difference / checks)", format!("{:.3} s", per_check.backend));
    if rig.meters.postgres {
        row(
            "PostgreSQL server CPU: with / paused; per check",
            format!("{:.2} s / {:.2} s; {:.3} s", with.postgres, without.postgres, per_check.postgres),
        );
    }
    row(
        "broker CPU: with / paused; per check",
        format!("{:.2} s / {:.2} s; {:.3} s", with.broker, without.broker, per_check.broker),
    );
    let list = |v: &[f64]| v.iter().map(|s| format!("{:.2}", s)).collect::<Vec<_>>().join(", ");
    row(
        "backend (+PostgreSQL) CPU per second: median; three largest seconds — with the schedule",
        format!("{with_median:.2} s; {}", list(&with_top)),
    );
    row("the same, paused", format!("{without_median:.2} s; {}", list(&without_top)));
    row(
        "`EXEC` messages added by the schedule (last sequence before -> after the fire); during the checks",
        format!(
            "{} ({} -> {}); {}",
            after_fire.exec_last - before.exec_last,
            before.exec_last,
            after_fire.exec_last,
            exec_after_hold - exec_before_hold
        ),
    );
    row(
        "`EXEC` messages: before / after the fire / after the late PCs / at the end",
        format!(
            "{} / {} / {} / {}",
            before.exec_messages, after_fire.exec_messages, after_late.exec_messages, after.exec_messages
        ),
    );
    let durable = |s: &BrokerState| {
        s.consumers.iter().filter(|(name, _)| !name.starts_with("KV_")).map(|(_, c)| c).sum::<usize>()
    };
    let consumers = |s: &BrokerState| {
        s.consumers
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(name, c)| format!("{name} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    row(
        "consumers per stream before (streams not listed have none)",
        format!(
            "{} (account: {} consumers, {} streams)",
            consumers(&before),
            before.account_consumers,
            before.account_streams
        ),
    );
    row(
        &format!("after the fire / after the {late_n} late PCs / at the end: consumers on the account"),
        format!("{} / {} / {}", after_fire.account_consumers, after_late.account_consumers, after.account_consumers),
    );
    row(
        "consumers per stream at the end",
        if after.consumers == before.consumers { "unchanged".to_owned() } else { consumers(&after) },
    );
    row(
        "consumers per stream, the projectors' (not `KV_`): before / at the end",
        format!("{} / {}", durable(&before), durable(&after)),
    );
    row(
        "broker RSS: before / after the fire / after the late PCs / at the end",
        format!(
            "{:.0} / {:.0} / {:.0} / {:.0} MB",
            mb(before.rss),
            mb(after_fire.rss),
            mb(after_late.rss),
            mb(after.rss)
        ),
    );
    out.push('\n');
    Ok(out)
}
