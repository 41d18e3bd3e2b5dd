//! `kanade-bench fanout`: starts its own nats-server, the backend and the fleet simulator as separate processes,
//! and measures, for each fleet size: a broadcast until every result is committed and counted through the HTTP
//! API, against the same fan-out done with raw NATS in the same run; a catalogued job fired through `POST
//! /api/exec`; the recovery from a broker killed under the fleet; the backend's CPU and projector lag under
//! heartbeats; memory per simulated agent; and a real agent's idle RSS and CPU. Linux only: it reads /proc for
//! memory and CPU.
//!
//! Every broker runs as production does (issue #18): operator mode, TLS, each client with its own credential from
//! the test fleet (`kanade_testkit::fleet()`). The benchmark itself and the backend connect as the backend, the
//! simulator and the raw reference agents with the simulator's credential, a real agent with one of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, message::PublishMessage};
use chrono::Utc;
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Command, Heartbeat, Shell};
use kanade_shared::{ExecId, JobId, PcId};
use kanade_testkit::NatsServer;
use serde::Serialize;
use sqlx::Row;

use crate::procs::{self, Proc};
use crate::raw;
use crate::stats::{Percentiles, median_by_key, percentiles};

pub(crate) const TOKEN: &str = "bench-token-0123456789abcdef";

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Fleet sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    agents: Vec<usize>,
    /// Measured broadcasts per fleet size and path (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Agents per NATS connection in the simulator and the raw reference.
    #[arg(long, default_value_t = 100)]
    agents_per_connection: usize,
    /// Heartbeat interval during the heartbeat-load window; the figure is scaled to the 30 s default.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// How long to measure the backend's CPU under heartbeats.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    heartbeat_window: Duration,
    /// How long to measure a real idle agent; 0 skips it.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_window: Duration,
    /// The simulated agents' catch-up jitter (see `kanade-agent simulate --help`).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    catch_up_jitter: Duration,
    /// Keep the simulator's data dirs on the real disk instead of tmpfs.
    #[arg(long)]
    disk: bool,
    /// Start the broker with `jetstream.sync_interval: always` (every acknowledged write on disk, as
    /// `deploy/nats-server.conf` runs it) instead of nats-server's default (a sync every 2 minutes). The quiet raw
    /// reference runs on a server of the same configuration.
    #[arg(long)]
    sync_always: bool,
    /// Phases to leave out, comma-separated: exec, storm, raw-busy, heartbeat, census.
    #[arg(long, value_delimiter = ',', value_enum)]
    skip: Vec<Phase>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A part of a fleet size's measurement that `--skip` can leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// The catalogued job fired through `POST /api/exec`.
    Exec,
    /// The broker SIGKILLed under the fleet.
    Storm,
    /// Raw NATS again on kanade's server after the kanade runs (the quiet reference always runs).
    RawBusy,
    /// Backend CPU, heartbeat lag and API latency under 1 s heartbeats.
    Heartbeat,
    /// One extra broadcast and exec with every message on the broker counted by subject.
    Census,
}

#[derive(Debug, Serialize)]
struct Figures {
    agents: usize,
    connections: usize,
    kanade_total_ms: u64,
    /// Raw NATS on a server of its own, before anything of kanade started: the reference the ratios use.
    raw_total_ms: u64,
    ratio: f64,
    kanade_latency_ms: Percentiles,
    raw_latency_ms: Percentiles,
    /// Raw NATS again on kanade's server once the kanade runs are over (the backend still connected).
    raw_busy_total_ms: Option<u64>,
    /// A catalogued job fired with `POST /api/exec` at every agent: until the API shows it completed.
    exec_api_total_ms: Option<u64>,
    /// Of that, the `POST` alone: the backend resolves N targets, records them and sends the command.
    exec_api_post_ms: Option<u64>,
    /// `GET /api/executions/{id}` of a completed N-target execution: what every poll for completion costs.
    exec_view_ms: Option<Percentiles>,
    sim_rss_per_agent_kb: f64,
    sim_state_per_agent_kb: f64,
    /// The broker's resident memory with the fleet connected and the runs done.
    broker_rss_mb: f64,
    backend_rss_mb: f64,
    load: Option<Load>,
    storm: Option<Storm>,
    census: Option<Census>,
}

/// The backend under 1 s heartbeats from the whole fleet.
#[derive(Debug, Serialize)]
struct Load {
    backend_cpu_pct_at_interval: f64,
    backend_cpu_pct_at_30s: f64,
    heartbeat_lag_ms: Percentiles,
    /// `GET /api/agents?limit=200` and `GET /api/executions?limit=50` under that load.
    agents_page_ms: Percentiles,
    executions_page_ms: Percentiles,
}

/// Every message the broker carried during one fired job, by subject class (a wildcard subscriber counts them).
#[derive(Debug, Serialize)]
struct Census {
    broadcast: Vec<(String, u64)>,
    exec: Vec<(String, u64)>,
}

/// Every fleet size in `args.agents`, then the idle agent; the figures as Markdown tables on stdout.
pub async fn run(args: FanoutArgs, bin: &Path) -> anyhow::Result<()> {
    let version = std::process::Command::new(kanade_testkit::nats_server_binary()).arg("--version").output()?;
    let header = format!(
        "machine: {} cores, {:.1} GiB RAM; {}, operator mode with TLS, {}; simulator state on {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        total_ram_gib(),
        String::from_utf8_lossy(&version.stdout).trim(),
        if args.sync_always { "sync_interval: always" } else { "default sync (every 2 min)" },
        if args.disk { "the real disk" } else { "tmpfs (/dev/shm)" },
    );
    eprintln!("bench: {header}");
    let mut all = Vec::new();
    for &n in &args.agents {
        all.push(one_size(&args, bin, n).await.with_context(|| format!("fleet of {n}"))?);
    }
    let idle = if args.idle_window.is_zero() { None } else { Some(idle_agent(bin, args.idle_window).await?) };

    println!("\n{header}\n");
    print_tables(&all, &args);
    if let Some(idle) = &idle {
        println!(
            "\nreal agent, idle for {}: RSS {:.1} MB, CPU {:.3}% of one core",
            humantime::format_duration(args.idle_window),
            idle.0 as f64 / (1024.0 * 1024.0),
            idle.1
        );
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "machine": header,
            "sizes": all,
            "idle_agent": idle.map(|(rss, cpu)| serde_json::json!({"rss_bytes": rss, "cpu_pct": cpu})),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
}

fn ratio(value: Option<u64>, reference: u64) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{:.2}x", v as f64 / (reference as f64).max(1e-9)))
}

fn print_tables(all: &[Figures], args: &FanoutArgs) {
    println!(
        "| agents | kanade: broadcast -> all in DB (API) | raw NATS, quiet | ratio | raw NATS on kanade's server after | kanade latency p50/p99/max | raw latency p50/p99/max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for f in all {
        println!(
            "| {} | {} ms | {} ms | {:.2}x | {} | {}/{}/{} ms | {}/{}/{} ms |",
            f.agents,
            f.kanade_total_ms,
            f.raw_total_ms,
            f.ratio,
            ms(f.raw_busy_total_ms),
            f.kanade_latency_ms.p50,
            f.kanade_latency_ms.p99,
            f.kanade_latency_ms.max,
            f.raw_latency_ms.p50,
            f.raw_latency_ms.p99,
            f.raw_latency_ms.max,
        );
    }
    println!(
        "\n| agents | exec of a catalogued job via `POST /api/exec` -> completed (API) | of which the POST | one poll of its view p50/p99 | raw NATS, quiet | ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for f in all {
        println!(
            "| {} | {} | {} | {} | {} ms | {} |",
            f.agents,
            ms(f.exec_api_total_ms),
            ms(f.exec_api_post_ms),
            f.exec_view_ms.map_or_else(|| "-".to_owned(), |p| format!("{}/{} ms", p.p50, p.p99)),
            f.raw_total_ms,
            ratio(f.exec_api_total_ms, f.raw_total_ms)
        );
    }
    println!("\n| agents | sim RSS / agent | sim state / agent | broker RSS | backend RSS |");
    println!("|---:|---:|---:|---:|---:|");
    for f in all {
        println!(
            "| {} | {:.1} KB | {:.1} KB | {:.0} MB | {:.0} MB |",
            f.agents, f.sim_rss_per_agent_kb, f.sim_state_per_agent_kb, f.broker_rss_mb, f.backend_rss_mb
        );
    }
    println!(
        "\n| agents | heartbeat every | backend CPU (of one core) | scaled to 30 s | heartbeat -> API lag p50/p99/max | agents page p50/p99 | executions page p50/p99 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (f, load) in all.iter().filter_map(|f| Some((f, f.load.as_ref()?))) {
        println!(
            "| {} | {} | {:.1}% | {:.2}% | {}/{}/{} ms | {}/{} ms | {}/{} ms |",
            f.agents,
            humantime::format_duration(args.heartbeat_interval),
            load.backend_cpu_pct_at_interval,
            load.backend_cpu_pct_at_30s,
            load.heartbeat_lag_ms.p50,
            load.heartbeat_lag_ms.p99,
            load.heartbeat_lag_ms.max,
            load.agents_page_ms.p50,
            load.agents_page_ms.p99,
            load.executions_page_ms.p50,
            load.executions_page_ms.p99,
        );
    }
    println!(
        "\n| agents | broker killed, down 2 s, restarted: all answer pings | results of a command published at restart all in DB | lost | duplicated |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for (f, storm) in all.iter().filter_map(|f| Some((f, f.storm.as_ref()?))) {
        println!(
            "| {} | {} ms | {} ms | {} | {} |",
            f.agents, storm.back_online_ms, storm.caught_up_ms, storm.lost, storm.duplicated
        );
    }
    for (f, census) in all.iter().filter_map(|f| Some((f, f.census.as_ref()?))) {
        println!(
            "\n| {} agents: messages on the broker per fired job, by subject | broadcast | per agent | exec via the API | per agent |",
            f.agents
        );
        println!("|---|---:|---:|---:|---:|");
        let mut classes: Vec<&String> = census.broadcast.iter().chain(&census.exec).map(|(c, _)| c).collect();
        classes.sort();
        classes.dedup();
        let of = |list: &[(String, u64)], class: &String| list.iter().find(|(c, _)| c == class).map_or(0, |(_, n)| *n);
        for class in classes {
            let (b, e) = (of(&census.broadcast, class), of(&census.exec, class));
            let per = |n: u64| n as f64 / f.agents as f64;
            println!("| `{class}` | {b} | {:.2} | {e} | {:.2} |", per(b), per(e));
        }
    }
}

fn total_ram_gib() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / (1024.0 * 1024.0))
}

pub(crate) struct Backend {
    pub(crate) proc: Proc,
    pub(crate) url: String,
    db_path: PathBuf,
}

pub(crate) async fn start_backend(bin: &Path, nats_url: &str, dir: &Path) -> anyhow::Result<Backend> {
    start_backend_on(bin, nats_url, dir, None).await
}

/// [`start_backend`] on `database_url` (PostgreSQL), or its data dir's SQLite file when `None`.
pub(crate) async fn start_backend_on(
    bin: &Path,
    nats_url: &str,
    dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<Backend> {
    let port = procs::free_port();
    let mut command = tokio::process::Command::new(bin.join("kanade-backend"));
    command
        .env_clear()
        .env("KANADE_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("KANADE_NATS_URL", nats_url)
        .envs(kanade_testkit::fleet().backend_env())
        .env("KANADE_AUTH_STATIC_TOKEN", TOKEN)
        .env("KANADE_BACKEND_DATA_DIR", dir)
        .envs(database_url.map(|url| ("KANADE_DATABASE_URL", url)))
        // `KANADE_BENCH_BACKEND_LOG=kanade_backend=debug` shows, among others, how long each exec's steps took.
        .env("KANADE_LOG", std::env::var("KANADE_BENCH_BACKEND_LOG").unwrap_or_else(|_| "warn".into()));
    let proc = Proc::spawn(command, &dir.join("backend.log"))?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{url}/health")).send().await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the backend did not come up; see {}", dir.join("backend.log").display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Backend { proc, url, db_path: dir.join("backend.db") })
}

async fn start_simulator(
    args: &FanoutArgs,
    bin: &Path,
    nats_url: &str,
    n: usize,
    heartbeat: Duration,
    data: &Path,
) -> anyhow::Result<Proc> {
    let connections = n.div_ceil(args.agents_per_connection).max(1);
    let mut command = tokio::process::Command::new(bin.join("kanade-agent"));
    command
        .args(["simulate", "--count", &n.to_string(), "--connections", &connections.to_string()])
        .args(["--heartbeat-interval", &humantime::format_duration(heartbeat).to_string()])
        .args(["--catch-up-jitter", &humantime::format_duration(args.catch_up_jitter).to_string()])
        .args(kanade_testkit::fleet().simulator_args())
        .arg("--data-dir")
        .arg(data)
        .env("KANADE_NATS_URL", nats_url)
        .env("KANADE_LOG", "warn");
    // The log lives in the data dir, which the simulator removes when it stops cleanly.
    std::fs::create_dir_all(data)?;
    let mut proc = Proc::spawn(command, &data.join("simulator.log"))?;
    proc.ready_line(Duration::from_secs(300)).await.context("the simulator did not get ready")?;
    Ok(proc)
}

fn start_nats(args: &FanoutArgs) -> NatsServer {
    if args.sync_always { NatsServer::start_durable() } else { NatsServer::start() }
}

/// The raw reference on a server of its own (configured as kanade's will be), before anything of kanade runs: the
/// machine is the raw fleet's alone. The median run, with its per-agent latencies.
async fn quiet_raw(args: &FanoutArgs, bin: &Path, n: usize, work: &Path) -> anyhow::Result<(Duration, Vec<i64>)> {
    let nats = start_nats(args);
    let client = kanade_testkit::client(&nats.url()).await;
    let js = jetstream::new(client.clone());
    let runs = raw_runs(args, bin, n, &nats.url(), &client, &js, &work.join("quiet")).await?;
    Ok(median_by_key(runs, |run| run.0))
}

/// One warm-up and `args.runs` measured raw broadcasts on the server at `url`.
async fn raw_runs(
    args: &FanoutArgs,
    bin: &Path,
    n: usize,
    url: &str,
    client: &async_nats::Client,
    js: &jetstream::Context,
    dir: &Path,
) -> anyhow::Result<Vec<(Duration, Vec<i64>)>> {
    std::fs::create_dir_all(dir)?;
    let connections = n.div_ceil(args.agents_per_connection).max(1);
    let mut raw_command = tokio::process::Command::new(bin.join("kanade-bench"));
    raw_command.args(["raw-agents", "--nats-url", url, "--count", &n.to_string()]);
    raw_command.args(["--connections", &connections.to_string()]);
    // The raw reference checks no signatures: the simulator's credential, without its trust root.
    raw_command.args(kanade_testkit::fleet().nats_args(kanade_ops::security::SIMULATOR_CREDS));
    let mut raw_agents = Proc::spawn(raw_command, &dir.join("raw.log"))?;
    raw_agents.ready_line(Duration::from_secs(300)).await?;
    let projector = raw::Projector::start(js, &dir.join("raw.db")).await?;
    let mut runs = Vec::new();
    for run in 0..=args.runs {
        let measured = raw_broadcast(client, &projector, n).await?;
        eprintln!("bench:   raw run {run}: {} ms{}", measured.0.as_millis(), if run == 0 { " (warm-up)" } else { "" });
        if run > 0 {
            runs.push(measured);
        }
    }
    drop(projector);
    raw_agents.stop(Duration::from_secs(5)).await;
    Ok(runs)
}

async fn one_size(args: &FanoutArgs, bin: &Path, n: usize) -> anyhow::Result<Figures> {
    eprintln!("bench: {n} agents");
    let work = tempfile::tempdir()?;
    let skip = |phase| args.skip.contains(&phase);
    eprintln!("bench:   raw NATS, quiet (a server of its own, nothing of kanade running)");
    let raw = quiet_raw(args, bin, n, work.path()).await?;

    let mut nats = start_nats(args);
    let url = nats.url();
    let client = kanade_testkit::client(&url).await;
    let js = jetstream::new(client.clone());
    kanade_ops::jetstream::setup(&js, 1).await?;
    kanade_testkit::fleet().push_trust(&client).await;
    let connections = n.div_ceil(args.agents_per_connection).max(1);

    let backend = start_backend(bin, &url, work.path()).await?;
    let sim_data = if args.disk {
        work.path().join("sim")
    } else {
        PathBuf::from(format!("/dev/shm/kanade-bench-{}", std::process::id()))
    };
    let sim = start_simulator(args, bin, &url, n, Duration::from_secs(30), &sim_data).await?;
    eprintln!("bench:   pids: nats-server {:?}, backend {}, simulator {}", nats.pid(), backend.proc.pid, sim.pid);
    let http = reqwest::Client::new();
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", backend.db_path.display())).await?;

    let mut kanade_runs = Vec::new();
    for run in 0..=args.runs {
        let measured = kanade_broadcast(&js, &http, &backend.url, &db, n).await?;
        let p = percentiles(measured.1.clone());
        eprintln!(
            "bench:   kanade run {run}: {} ms (latency p50 {} ms, max {} ms){}",
            measured.0.as_millis(),
            p.p50,
            p.max,
            if run == 0 { " (warm-up)" } else { "" }
        );
        if run > 0 {
            kanade_runs.push(measured);
        }
    }
    create_bench_job(&http, &backend.url).await?;
    wait_for_agents(&http, &backend.url, n).await?;
    let exec = if skip(Phase::Exec) {
        None
    } else {
        let mut exec_runs = Vec::new();
        for run in 0..=args.runs {
            let (total, post) = exec_through_api(&http, &backend.url).await?;
            eprintln!(
                "bench:   exec via API run {run}: {} ms (POST {} ms){}",
                total.as_millis(),
                post.as_millis(),
                if run == 0 { " (warm-up)" } else { "" }
            );
            if run > 0 {
                exec_runs.push((total, post));
            }
        }
        Some(median_by_key(exec_runs, |run| *run))
    };
    let exec_view = if skip(Phase::Exec) { None } else { Some(view_latency(&http, &backend.url).await?) };
    let census = if skip(Phase::Census) {
        None
    } else {
        Some(Census {
            broadcast: census(&url, || async { kanade_broadcast(&js, &http, &backend.url, &db, n).await.map(drop) })
                .await?,
            exec: census(&url, || async { exec_through_api(&http, &backend.url).await.map(drop) }).await?,
        })
    };
    let sim_rss = sim.rss_bytes();
    let sim_state = procs::dir_bytes(&sim_data);
    let broker_rss = nats.pid().map_or(0, procs::rss_bytes);
    let backend_rss = backend.proc.rss_bytes();
    let storm = if skip(Phase::Storm) {
        None
    } else {
        let storm = reconnect_storm(&mut nats, &js, &client, &http, &backend.url, &db, n).await?;
        eprintln!(
            "bench:   reconnect storm: all back {} ms, caught up {} ms, {} lost, {} duplicated",
            storm.back_online_ms, storm.caught_up_ms, storm.lost, storm.duplicated
        );
        Some(storm)
    };
    sim.stop(Duration::from_secs(30)).await;
    let _ = std::fs::remove_dir_all(&sim_data);

    let raw_busy = if skip(Phase::RawBusy) {
        None
    } else {
        eprintln!("bench:   raw NATS on kanade's server, the backend still connected");
        let runs = raw_runs(args, bin, n, &url, &client, &js, &work.path().join("busy")).await?;
        Some(median_by_key(runs, |run| run.0).0)
    };

    let load = if skip(Phase::Heartbeat) {
        None
    } else {
        // A fresh fleet would first replay every command `EXEC` still holds (each run's broadcast): that is the
        // storm's subject, not this one's, and at 50,000 agents it swamped the new simulator's readiness check.
        js.get_stream(kanade_shared::resources::STREAM_EXEC).await?.purge().await?;
        let sim_data = work.path().join("hb-sim");
        let measured = async {
            let sim = start_simulator(args, bin, &url, n, args.heartbeat_interval, &sim_data).await?;
            let load = heartbeat_load(args, &backend, &client).await;
            sim.stop(Duration::from_secs(30)).await;
            load
        };
        // The last phase: when it fails (50,000 agents heartbeating every second is more than two cores start),
        // what was measured before it is still reported.
        match measured.await {
            Ok(load) => Some(load),
            Err(err) => {
                eprintln!("bench:   heartbeat load not measured: {err:#}");
                None
            }
        }
    };
    backend.proc.stop(Duration::from_secs(10)).await;

    // The run with the median total time, with its per-agent latencies.
    let kanade = median_by_key(kanade_runs, |run| run.0);
    let ms = |d: Duration| d.as_millis() as u64;
    Ok(Figures {
        agents: n,
        connections,
        kanade_total_ms: ms(kanade.0),
        raw_total_ms: ms(raw.0),
        ratio: kanade.0.as_secs_f64() / raw.0.as_secs_f64().max(1e-9),
        kanade_latency_ms: percentiles(kanade.1),
        raw_latency_ms: percentiles(raw.1),
        raw_busy_total_ms: raw_busy.map(ms),
        exec_api_total_ms: exec.map(|e| ms(e.0)),
        exec_api_post_ms: exec.map(|e| ms(e.1)),
        exec_view_ms: exec_view,
        sim_rss_per_agent_kb: sim_rss as f64 / n as f64 / 1024.0,
        sim_state_per_agent_kb: sim_state as f64 / n as f64 / 1024.0,
        broker_rss_mb: broker_rss as f64 / (1024.0 * 1024.0),
        backend_rss_mb: backend_rss as f64 / (1024.0 * 1024.0),
        load,
        storm,
        census,
    })
}

/// The class a census counts a subject in: at most four tokens, with every token after the first that holds a
/// digit (a pc id, an exec id) written `*`, and every token of an inbox after its prefix (random names, which may
/// hold no digit): `results.*.*`, `$JS.API.DIRECT.GET`, `_INBOX_SIMULATOR.*.*`.
fn subject_class(subject: &str) -> String {
    let inbox = subject.starts_with("_INBOX");
    let tokens: Vec<&str> = subject
        .split('.')
        .take(4)
        .enumerate()
        .map(|(i, t)| if i > 0 && (inbox || t.bytes().any(|b| b.is_ascii_digit())) { "*" } else { t })
        .collect();
    tokens.join(".")
}

/// Every message the broker carries while `fire` runs (and for a second after, for stragglers), by subject class.
async fn census<F, Fut>(url: &str, fire: F) -> anyhow::Result<Vec<(String, u64)>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use futures::StreamExt;
    let nats = kanade_testkit::fleet().backend_nats(url);
    let client = kanade_ops::nats::options(&nats, "kanade-bench census")
        .subscription_capacity(1 << 20)
        .connect(nats.urls.as_slice())
        .await?;
    let mut all = client.subscribe(">").await?;
    client.flush().await?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let counting = tokio::spawn(async move {
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        loop {
            tokio::select! {
                message = all.next() => match message {
                    Some(message) => *counts.entry(subject_class(&message.subject)).or_default() += 1,
                    None => break,
                },
                _ = &mut stopped => break,
            }
        }
        counts
    });
    fire().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(());
    let counts = tokio::time::timeout(Duration::from_secs(10), counting).await??;
    Ok(counts.into_iter().collect())
}

#[derive(Debug, Serialize)]
struct Storm {
    /// From the broker's restart until every agent answered a ping again.
    back_online_ms: u64,
    /// From the broker's restart until every result of the command published right after it is in the database.
    caught_up_ms: u64,
    /// Targets minus rows in the database.
    lost: i64,
    /// Copies of results stored in `RESULTS` beyond one per agent.
    duplicated: i64,
}

/// Kills nats-server under the connected fleet, starts it again on the same port and store, publishes a command
/// at once (most agents are still reconnecting, so they get it through catch-up), and times the recovery.
async fn reconnect_storm(
    nats: &mut NatsServer,
    js: &jetstream::Context,
    client: &async_nats::Client,
    http: &reqwest::Client,
    api: &str,
    db: &sqlx::SqlitePool,
    n: usize,
) -> anyhow::Result<Storm> {
    nats.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.start_again();
    let restarted = Instant::now();

    let exec = ExecId::generate();
    let job = JobId::new("bench-storm")?;
    let body = serde_json::to_vec(&bench_command(&exec, &job))?;
    loop {
        let sent = js
            .send_publish(
                subject::command(&Target::All, &job),
                signed(&Target::All, &job, body.clone()).message_id(exec.as_str()),
            )
            .await;
        if let Ok(ack) = sent
            && ack.await.is_ok()
        {
            break;
        }
        if restarted.elapsed() > Duration::from_secs(120) {
            bail!("the restarted broker did not take a command within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let online = tokio::spawn(ping_everyone(client.clone(), n, restarted));
    loop {
        let view = http.get(format!("{api}/api/executions/{exec}")).bearer_auth(TOKEN).send().await;
        if let Ok(reply) = view
            && let Ok(view) = reply.json::<serde_json::Value>().await
            && view["results"].as_u64().unwrap_or(0) >= n as u64
        {
            break;
        }
        if restarted.elapsed() > Duration::from_secs(300) {
            bail!("the fleet did not catch up within 5 minutes of the broker's restart");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caught_up = restarted.elapsed();
    let back_online = online.await??;

    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM results WHERE exec_id = $1")
        .bind(exec.as_str())
        .fetch_one(db)
        .await?
        .try_get("n")?;
    let stream = js.get_stream(kanade_shared::resources::STREAM_RESULTS).await?;
    let mut subjects = stream.info_with_subjects(format!("results.*.{exec}")).await?;
    let mut stored = 0usize;
    while let Some(entry) = futures::StreamExt::next(&mut subjects).await {
        stored += entry?.1;
    }
    Ok(Storm {
        back_online_ms: back_online.as_millis() as u64,
        caught_up_ms: caught_up.as_millis() as u64,
        lost: n as i64 - rows,
        duplicated: stored as i64 - n as i64,
    })
}

/// Pings every simulated agent until each has answered once; returns when the last one did, from `since`.
async fn ping_everyone(client: async_nats::Client, n: usize, since: Instant) -> anyhow::Result<Duration> {
    use futures::StreamExt;
    let ids: Vec<PcId> = (0..n).map(|i| kanade_agent::simulate::pc_id("sim-", i, n)).collect::<Result<_, _>>()?;
    let answered = futures::stream::iter(ids)
        .map(|pc| {
            let client = client.clone();
            async move {
                loop {
                    if kanade_ops::agents::ping(&client, &pc, Duration::from_secs(2)).await.is_ok() {
                        return Ok(since.elapsed());
                    }
                    if since.elapsed() > Duration::from_secs(300) {
                        bail!("`{pc}` did not come back within 5 minutes");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .buffer_unordered(500)
        .collect::<Vec<anyhow::Result<Duration>>>()
        .await;
    let mut last = Duration::ZERO;
    for one in answered {
        last = last.max(one?);
    }
    Ok(last)
}

pub(crate) fn bench_command(exec: &ExecId, job: &JobId) -> Command {
    Command {
        exec_id: exec.clone(),
        job_id: job.clone(),
        version: String::new(),
        shell: Shell::Sh,
        script: "emulated".into(),
        timeout: Duration::from_secs(60),
        issued_at: Utc::now(),
        deadline: None,
        jitter: None,
        run_as: Default::default(),
        cwd: None,
        consent: None,
    }
}

const BENCH_JOB: &str = "id: bench-exec\nversion: \"1.0\"\ndescription: kanade-bench\ntarget:\n  all: true\n\
    execute:\n  shell: sh\n  script: emulated\n  timeout: 60s\n";

pub(crate) async fn create_bench_job(http: &reqwest::Client, api: &str) -> anyhow::Result<()> {
    let reply = http
        .post(format!("{api}/api/jobs"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "manifest": BENCH_JOB }))
        .send()
        .await?;
    anyhow::ensure!(reply.status().is_success(), "cannot create the bench job: {}", reply.text().await?);
    Ok(())
}

/// Waits until the backend knows all `n` agents, so an exec counts every one as a target.
pub(crate) async fn wait_for_agents(http: &reqwest::Client, api: &str, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let known = count_agents(http, api).await?;
        if known >= n {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the backend knows {known} of {n} agents after 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many agents `GET /api/agents` lists, page by page.
pub async fn count_agents(http: &reqwest::Client, api: &str) -> anyhow::Result<usize> {
    let mut known = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut request = http.get(format!("{api}/api/agents")).bearer_auth(TOKEN).query(&[("limit", "1000")]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let page: serde_json::Value = request.send().await?.json().await?;
        known += page["items"].as_array().map_or(0, Vec::len);
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(known),
        }
    }
}

/// 20 timed `GET`s of `url`, `pause` apart, in microseconds; a failed one is an error.
async fn sample_get(http: &reqwest::Client, url: &str, pause: Duration) -> anyhow::Result<Vec<i64>> {
    let mut samples = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let reply = http.get(url).bearer_auth(TOKEN).send().await?;
        anyhow::ensure!(reply.status().is_success(), "{url}: {}", reply.status());
        reply.bytes().await?;
        samples.push(started.elapsed().as_micros() as i64);
        tokio::time::sleep(pause).await;
    }
    Ok(samples)
}

/// 20 reads of the newest execution's view (the poll a dashboard or the CLI makes for completion), in ms.
async fn view_latency(http: &reqwest::Client, api: &str) -> anyhow::Result<Percentiles> {
    let page: serde_json::Value =
        http.get(format!("{api}/api/executions?limit=1")).bearer_auth(TOKEN).send().await?.json().await?;
    let exec = page["items"][0]["exec_id"].as_str().context("no execution listed")?.to_owned();
    let samples = sample_get(http, &format!("{api}/api/executions/{exec}"), Duration::ZERO).await?;
    let p = percentiles(samples);
    eprintln!("bench:   GET /api/executions/{{id}} of a completed execution: p50 {} us, p99 {} us", p.p50, p.p99);
    Ok(Percentiles { p50: p.p50 / 1000, p99: p.p99 / 1000, max: p.max / 1000 })
}

/// A catalogued job fired at every agent through the backend: done when the API says `completed`.
async fn exec_through_api(http: &reqwest::Client, api: &str) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let reply =
        http.post(format!("{api}/api/exec/bench-exec")).bearer_auth(TOKEN).json(&serde_json::json!({})).send().await?;
    anyhow::ensure!(reply.status().is_success(), "exec refused: {}", reply.text().await?);
    let view: serde_json::Value = reply.json().await?;
    let post = started.elapsed();
    let exec = view["exec_id"].as_str().unwrap_or_default().to_owned();
    loop {
        let view: serde_json::Value =
            http.get(format!("{api}/api/executions/{exec}")).bearer_auth(TOKEN).send().await?.json().await?;
        if view["status"] == "completed" {
            return Ok((started.elapsed(), post));
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("exec {exec} not completed after 10 minutes: {view}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A command message for `target`, signed by the test fleet's operator as the CLI or the backend signs: every
/// simulated agent checks the signature, as a real one does, so the figures include that cost.
pub(crate) fn signed(target: &Target, job: &JobId, body: Vec<u8>) -> PublishMessage {
    kanade_testkit::fleet::command_message(&subject::command(target, job), body, Some(kanade_testkit::fleet().signer()))
}

/// One broadcast through kanade: published into `EXEC` for every agent, done when the API counts every result.
async fn kanade_broadcast(
    js: &jetstream::Context,
    http: &reqwest::Client,
    api: &str,
    db: &sqlx::SqlitePool,
    n: usize,
) -> anyhow::Result<(Duration, Vec<i64>)> {
    let exec = ExecId::generate();
    let job = JobId::new("bench-fanout")?;
    let command = bench_command(&exec, &job);
    let t0_ms = Utc::now().timestamp_millis();
    let started = Instant::now();
    js.send_publish(
        subject::command(&Target::All, &job),
        signed(&Target::All, &job, serde_json::to_vec(&command)?).message_id(exec.as_str()),
    )
    .await?
    .await?;
    loop {
        let view: serde_json::Value =
            http.get(format!("{api}/api/executions/{exec}")).bearer_auth(TOKEN).send().await?.json().await?;
        if view["results"].as_u64().unwrap_or(0) >= n as u64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {} of {n} results after 10 minutes", view["results"]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed();
    let rows = sqlx::query("SELECT recorded_at_ms, finished_at_ms, pc_id FROM results WHERE exec_id = $1")
        .bind(exec.as_str())
        .fetch_all(db)
        .await?;
    if let Some(worst) = rows.iter().max_by_key(|r| r.try_get::<i64, _>("recorded_at_ms").unwrap_or(0)) {
        let recorded: i64 = worst.try_get("recorded_at_ms")?;
        let finished: i64 = worst.try_get("finished_at_ms")?;
        let pc: String = worst.try_get("pc_id")?;
        eprintln!(
            "bench:   slowest ({pc}): finished {} ms after the broadcast, committed {} ms after that",
            finished - t0_ms,
            recorded - finished
        );
    }
    let latencies = rows.iter().filter_map(|r| r.try_get::<i64, _>("recorded_at_ms").ok()).map(|t| t - t0_ms).collect();
    Ok((total, latencies))
}

/// One broadcast with raw NATS: done when the raw projector has committed every result.
async fn raw_broadcast(
    client: &async_nats::Client,
    projector: &raw::Projector,
    n: usize,
) -> anyhow::Result<(Duration, Vec<i64>)> {
    let run = ExecId::generate().to_string();
    let t0_ms = Utc::now().timestamp_millis();
    let started = Instant::now();
    client.publish(raw::COMMAND_SUBJECT, run.clone().into()).await?;
    client.flush().await?;
    loop {
        if projector.count(&run).await? >= n as i64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("raw: only {} of {n} results after 10 minutes", projector.count(&run).await?);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed();
    let latencies = projector.recorded(&run).await?.into_iter().map(|t| t - t0_ms).collect();
    Ok((total, latencies))
}

/// The backend's CPU while the simulator heartbeats every `args.heartbeat_interval`, and how long a heartbeat
/// takes to show in the API under that load.
async fn heartbeat_load(args: &FanoutArgs, backend: &Backend, client: &async_nats::Client) -> anyhow::Result<Load> {
    // Let the first round of heartbeats (every agent at start) settle.
    tokio::time::sleep(args.heartbeat_interval * 3).await;
    let cpu_before = backend.proc.cpu_seconds();
    let started = Instant::now();
    tokio::time::sleep(args.heartbeat_window).await;
    let cpu_pct = (backend.proc.cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64() * 100.0;

    // Lag, measured after the CPU window so the probes' HTTP polling does not count as heartbeat cost.
    let http = reqwest::Client::new();
    let probe = PcId::new("bench-probe")?;
    let mut lag = Vec::new();
    for k in 0..20 {
        let heartbeat = Heartbeat {
            hostname: "probe".into(),
            os: "linux".into(),
            agent_version: format!("probe-{k}"),
            ..Heartbeat::minimal(probe.clone(), Utc::now())
        };
        let started = Instant::now();
        client.publish(subject::heartbeat(&probe), serde_json::to_vec(&heartbeat)?.into()).await?;
        client.flush().await?;
        loop {
            let reply = http.get(format!("{}/api/agents/{probe}", backend.url)).bearer_auth(TOKEN).send().await?;
            if reply.status().is_success() {
                let agent: serde_json::Value = reply.json().await?;
                if agent["agent_version"] == heartbeat.agent_version {
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("a heartbeat did not reach the API within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lag.push(started.elapsed().as_millis() as i64);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (http, api) = (&http, &backend.url);
    let page = |path: &'static str| async move {
        let samples = sample_get(http, &format!("{api}{path}"), Duration::from_millis(50)).await?;
        Ok::<_, anyhow::Error>(percentiles(samples.into_iter().map(|us| us / 1000).collect()))
    };
    Ok(Load {
        backend_cpu_pct_at_interval: cpu_pct,
        backend_cpu_pct_at_30s: cpu_pct * args.heartbeat_interval.as_secs_f64() / 30.0,
        heartbeat_lag_ms: percentiles(lag),
        agents_page_ms: page("/api/agents?limit=200").await?,
        executions_page_ms: page("/api/executions?limit=50").await?,
    })
}

/// A real agent process, idle with the default 30 s heartbeat: its RSS and CPU.
async fn idle_agent(bin: &Path, window: Duration) -> anyhow::Result<(u64, f64)> {
    eprintln!("bench: real agent idle for {}", humantime::format_duration(window));
    let nats = NatsServer::start();
    let client = kanade_testkit::client(&nats.url()).await;
    kanade_ops::jetstream::setup(&jetstream::new(client.clone()), 1).await?;
    kanade_testkit::fleet().push_trust(&client).await;
    let data = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(bin.join("kanade-agent"));
    command
        .env_clear()
        // Its own credential in its data dir, as enrolment leaves it, and the fleet's CA.
        .envs(kanade_testkit::fleet().agent_env("idle-agent", &[], data.path()))
        .env("KANADE_AGENT_ID", "idle-agent")
        .env("KANADE_AGENT_DATA_DIR", data.path())
        .env("KANADE_NATS_URL", nats.url())
        .env("KANADE_LOG", "warn");
    let agent = Proc::spawn(command, &data.path().join("agent.log"))?;
    let pc = PcId::new("idle-agent")?;
    let started = Instant::now();
    while kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the idle agent never answered a ping");
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu_before = agent.cpu_seconds();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let cpu_pct = (agent.cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
    let rss = agent.rss_bytes();
    agent.stop(Duration::from_secs(10)).await;
    Ok((rss, cpu_pct))
}

#[cfg(test)]
mod tests {
    use super::subject_class;

    #[test]
    fn a_census_class_hides_ids_and_every_inbox_name() {
        assert_eq!(subject_class("results.sim-00001.01JX2"), "results.*.*");
        assert_eq!(subject_class("$JS.API.DIRECT.GET.EXEC"), "$JS.API.DIRECT.GET");
        assert_eq!(subject_class("commands.all.bench-fanout"), "commands.all.bench-fanout");
        // The simulator's inbox names may hold no digit at all.
        assert_eq!(subject_class("_INBOX_SIMULATOR.korrMoSxRAqtofjJlBjgOg"), "_INBOX_SIMULATOR.*");
        assert_eq!(subject_class("_INBOX_SIMULATOR.abc.def"), "_INBOX_SIMULATOR.*.*");
    }
}
