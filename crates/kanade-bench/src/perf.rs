//! `kanade-bench perf`: live performance at fleet size (issue #16). nats-server (syncing every write, as deployed),
//! the backend on SQLite or PostgreSQL and `kanade-agent simulate` run as separate processes, and the benchmark
//! measures from the outside (`/proc`, the broker's consumer state, the database's own counts and sizes):
//!
//! - **rollups**: every simulated PC sends one rollup per `--rollup-interval`, all at the same wall-clock boundary
//!   (as a real fleet does: windows end on the interval's multiples). Over `--windows` whole windows: rollups
//!   stored per second, how long after each boundary the broker held and the backend had stored all of them, the
//!   largest projector backlog, the CPU of the backend, the broker and the simulator, and what the table grows by.
//!   Then the rollups are switched off through `agent_config` and the same fleet is measured with heartbeats only,
//!   so the rollups' own cost is the difference. Reference, in the same run: the same messages read back from
//!   `PERF` by a plain consumer and decoded, with no SQL.
//! - **history**: a week of one-minute rollups for `--history-pcs` PCs published to `PERF` while the backend is
//!   stopped; the backend restarted onto that backlog (its projector's top speed, against the raw read of the same
//!   messages); then `GET /api/agents/{pc}/perf` over 1 h, 24 h and 7 d.
//! - **live**: `--watched` PCs each watched by one, then two, server-sent-event streams; the broker's and the
//!   backend's CPU and memory against the same fleet with no stream open, the samples delivered, and the lease
//!   requests the agents saw (one viewer per PC whatever the number of browsers).
//! - **agent**: one real `kanade-agent` (release) sampling this machine: its CPU and memory idle with a rollup a
//!   minute, and while a viewer holds a lease at 1 s; against a loop that reads the same `/proc` files once a second.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use kanade_shared::PcId;
use kanade_shared::layered::Scope;
use kanade_shared::perf::{LeaseReply, LeaseRequest, PerfRollup};
use kanade_shared::resources::{CONSUMER_PERF_PROJECTOR, STREAM_PERF};
use kanade_shared::subject;
use kanade_shared::wire::Heartbeat;
use kanade_testkit::NatsServer;

use crate::database::{Store, until_count};
use crate::fanout::{self, TOKEN};
use crate::procs::{self, Proc};
use crate::stats::percentiles;

/// Rollups per PC in the history part: a week of minutes less five, so that the backend's 7-day retention sweep,
/// which runs when it starts, deletes none of them.
const WEEK_ROWS: usize = 7 * 24 * 60 - 5;
/// The prefix of the PCs the history part invents (not simulated: no live rollup lands among theirs).
const HISTORY_PREFIX: &str = "bench-history-";
/// Rollups published at once when the benchmark fills `PERF` itself.
const IN_FLIGHT: usize = 256;
/// The live interval of the watched agents, simulated and real.
const LIVE_INTERVAL: &str = "1s";

#[derive(Debug, clap::Args)]
pub struct PerfArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// How often each simulated agent sends a rollup: 60s as deployed; 10s gives six windows per minute of wall
    /// time (the figures per 10,000 rollups stay comparable).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub rollup_interval: Duration,
    /// Whole rollup windows measured, after the first (partial) window's burst.
    #[arg(long, default_value_t = 3)]
    pub windows: usize,
    /// `sqlite`, `postgres`, or both, comma-separated. The live part runs on the first one's fleet only (it does
    /// not touch the database).
    #[arg(long, default_value = "sqlite,postgres", value_delimiter = ',')]
    pub databases: Vec<String>,
    /// Where PostgreSQL is: a database is created there for the run and dropped after it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// PCs given a week of rollups for the history queries.
    #[arg(long, default_value_t = 5)]
    pub history_pcs: usize,
    /// Requests per history query figure.
    #[arg(long, default_value_t = 30)]
    pub samples: usize,
    /// PCs watched live at once: first one browser each, then two.
    #[arg(long, default_value_t = 50)]
    pub watched: usize,
    /// How long each live figure is measured: no stream open, one browser per PC, two per PC. The first of these
    /// is also the heartbeats-only reference of the rollups part.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub live_window: Duration,
    /// How long the real agent is measured idle, and again while watched.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub agent_window: Duration,
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
    /// The fleet's rollups: storage rate, backlog, CPU, table growth.
    Rollups,
    /// A week of rollups for a few PCs, the projector's top speed and the history queries.
    History,
    /// Server-sent-event streams of watched PCs.
    Live,
    /// One real agent's own CPU and memory.
    Agent,
}

pub fn main(args: PerfArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let bin = match &args.bin_dir {
        Some(dir) => dir.canonicalize().with_context(|| format!("--bin-dir `{}`", dir.display()))?,
        None => procs::build_binaries()?,
    };
    let skip = |part| args.skip.contains(&part);
    let started = Instant::now();
    let version = std::process::Command::new(kanade_testkit::nats_server_binary()).arg("--version").output()?;
    let mut out = vec![format!(
        "Run of {} on {}; {}, load average {:.2} at the start\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        procs::machine(),
        String::from_utf8_lossy(&version.stdout).trim(),
        procs::load_average(),
    )];
    let fleet_parts = !skip(Part::Rollups) || !skip(Part::History);
    anyhow::ensure!(!args.databases.is_empty(), "--databases names none");
    let databases: &[String] = if fleet_parts { &args.databases } else { &args.databases[..1] };
    if fleet_parts || !skip(Part::Live) {
        for (index, database) in databases.iter().enumerate() {
            let live = index == 0 && !skip(Part::Live);
            out.push(runtime.block_on(fleet(&args, &bin, database, live))?);
        }
    }
    if !skip(Part::Agent) {
        out.push(runtime.block_on(real_agent(&args, &bin))?);
    }
    out.push(format!("The whole run took {:.1} minutes.", started.elapsed().as_secs_f64() / 60.0));
    println!();
    for part in out {
        println!("{part}");
    }
    Ok(())
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

/// What the processes used between two readings, with their memory at the end.
#[derive(Debug, Clone, Copy)]
struct Usage {
    seconds: f64,
    backend: f64,
    broker: f64,
    simulator: f64,
    postgres: f64,
    backend_rss: u64,
    broker_rss: u64,
    simulator_rss: u64,
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
            backend_rss: procs::rss_bytes(self.backend),
            broker_rss: procs::rss_bytes(self.broker),
            simulator_rss: procs::rss_bytes(self.simulator),
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

/// Sleeps until the wall clock reads `at` (at once if it is past).
async fn sleep_until_utc(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

fn chrono_of(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or_default()
}

/// One fleet on one database: rollups, then (rollups off) the heartbeats-only reference and the live streams, then
/// the week of history. Markdown on return.
async fn fleet(args: &PerfArgs, bin: &Path, kind: &str, live: bool) -> anyhow::Result<String> {
    let n = args.agents;
    let rollups = !args.skip.contains(&Part::Rollups);
    let history = !args.skip.contains(&Part::History);
    eprintln!("bench: {kind}: {n} simulated agents");
    let work = tempfile::tempdir()?;
    let store = Store::create(kind, work.path(), &args.postgres, "perf").await?;
    let nats = NatsServer::start_durable();
    let url = nats.url();
    let client = kanade_testkit::client(&url).await;
    let js = jetstream::new(client.clone());
    kanade_ops::jetstream::setup(&js, 1).await?;
    kanade_testkit::fleet().push_trust(&client).await;
    let backend = fanout::start_backend_on(bin, &url, work.path(), store.url()).await?;
    let http = reqwest::Client::new();

    let sim_data = PathBuf::from(format!("/dev/shm/kanade-bench-perf-{}", std::process::id()));
    std::fs::create_dir_all(&sim_data)?;
    let rollup_interval = if rollups { args.rollup_interval } else { Duration::ZERO };
    let mut command = tokio::process::Command::new(bin.join("kanade-agent"));
    command
        .args(["simulate", "--count", &n.to_string(), "--connections", &n.div_ceil(100).max(1).to_string()])
        .args(["--heartbeat-interval", "30s", "--perf-interval", LIVE_INTERVAL])
        .args(["--host-perf-interval", &humantime::format_duration(rollup_interval).to_string()])
        .args(kanade_testkit::fleet().simulator_args())
        .arg("--data-dir")
        .arg(&sim_data)
        .env("KANADE_NATS_URL", &url)
        .env("KANADE_LOG", "warn");
    let mut sim = Proc::spawn(command, &sim_data.join("simulator.log"))?;
    sim.ready_line(Duration::from_secs(600)).await.context("the simulator did not get ready")?;
    fanout::wait_for_agents(&http, &backend.url, n).await?;
    let meters = Meters {
        backend: backend.proc.pid,
        broker: nats.pid().context("no broker pid")?,
        simulator: sim.pid,
        postgres: kind == "postgres",
    };

    let mut out = format!("### {kind}\n\n");
    let measured =
        if rollups { Some(rollup_windows(args, &js, &store, &backend.url, &http, &meters).await?) } else { None };
    if rollups {
        // Everything after this measures the fleet without rollups: heartbeats only, plus whatever is watched.
        kanade_ops::agent_config::AgentConfigStore::open(&client)
            .await?
            .change(&Scope::Global, "host_perf_interval", Some(serde_json::json!("0s")))
            .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let idle = if rollups || live {
        if !rollups {
            // Right after the fleet's start: let its first heartbeats settle, as the rollup windows do otherwise.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        eprintln!("bench: {kind}: no rollups, no stream open, for {}", humantime::format_duration(args.live_window));
        let before = meters.read();
        tokio::time::sleep(args.live_window).await;
        Some(meters.since(before))
    } else {
        None
    };
    if let (Some(measured), Some(idle)) = (&measured, &idle) {
        let raw = raw_read(&js, 1, args.windows * n, n).await?;
        out.push_str(&measured.markdown(args, n, idle, &raw));
    }
    if let (true, Some(idle)) = (live, &idle) {
        out.push_str(&live_streams(args, n, &client, &http, &backend.url, &meters, idle).await?);
    }
    sim.stop(Duration::from_secs(60)).await;
    let _ = std::fs::remove_dir_all(&sim_data);
    let backend = if history {
        let (markdown, backend) = history_part(
            &HistoryRig { args, bin, work: work.path(), store: &store, nats_url: &url, js: &js, client: &client },
            backend,
        )
        .await?;
        out.push_str(&markdown);
        backend
    } else {
        backend
    };
    backend.proc.stop(Duration::from_secs(10)).await;
    drop(nats);
    store.drop_database().await;
    Ok(out)
}

/// One window's burst as the broker and the projector saw it.
#[derive(Debug, Clone, Copy)]
struct Burst {
    /// From the boundary until the stream held every PC's rollup of the window.
    published: Option<Duration>,
    /// Until the projector's consumer had acknowledged (stored) all of them.
    stored: Option<Duration>,
    /// The largest backlog seen: `kanade_projector_pending{stream="PERF"}`, as the backend computes it.
    max_backlog: u64,
}

/// The rollups part's measurements.
struct Windows {
    usage: Usage,
    rollups: i64,
    bursts: Vec<Burst>,
    table_bytes: Option<u64>,
    used_bytes: i64,
    file_bytes: i64,
    /// What `PERF` grew by per message meanwhile: the rollup, its subject and headers as the broker stores them.
    stream_bytes_per_rollup: f64,
    pending_metric: Option<f64>,
}

/// Waits for the first (partial) window's burst, then measures `args.windows` whole windows, from the middle of one
/// window to the middle of another so each burst falls inside.
async fn rollup_windows(
    args: &PerfArgs,
    js: &jetstream::Context,
    store: &Store,
    api: &str,
    http: &reqwest::Client,
    meters: &Meters,
) -> anyhow::Result<Windows> {
    let n = args.agents;
    let every = args.rollup_interval;
    let first = kanade_agent::perf::rollup::window_end(Utc::now() + chrono::Duration::seconds(1), every);
    let start = first + chrono_of(every / 2);
    eprintln!(
        "bench: rollups: first burst at {}, measuring {} windows from {}",
        first.format("%H:%M:%S"),
        args.windows,
        start.format("%H:%M:%S")
    );
    sleep_until_utc(start).await;
    let rows_before = store.count("SELECT COUNT(*) FROM perf_rollups").await?;
    let table_before = store.table_bytes("perf_rollups").await?;
    let used_before = store.used_bytes().await?;
    let file_before = store.bytes().await?;
    let stream = js.get_stream(STREAM_PERF).await?;
    let stream_before = stream.get_info().await?.state;
    let before = meters.read();
    let mut bursts = Vec::new();
    for k in 1..=args.windows {
        let boundary = first + chrono_of(every * u32::try_from(k)?);
        let burst = watch_burst(js, boundary, n, every).await?;
        eprintln!("bench: rollups: window {k}: {burst:?}");
        bursts.push(burst);
    }
    sleep_until_utc(start + chrono_of(every * u32::try_from(args.windows)?)).await;
    let usage = meters.since(before);
    let rows = store.count("SELECT COUNT(*) FROM perf_rollups").await? - rows_before;
    let table_bytes = match (table_before, store.table_bytes("perf_rollups").await?) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let used_bytes = i64::try_from(store.used_bytes().await?)? - i64::try_from(used_before)?;
    let file_bytes = i64::try_from(store.bytes().await?)? - i64::try_from(file_before)?;
    let stream_after = stream.get_info().await?.state;
    let stream_bytes_per_rollup = stream_after.bytes.saturating_sub(stream_before.bytes) as f64
        / stream_after.messages.saturating_sub(stream_before.messages).max(1) as f64;
    let pending_metric = projector_pending(http, api).await.ok();
    Ok(Windows {
        usage,
        rollups: rows,
        bursts,
        table_bytes,
        used_bytes,
        file_bytes,
        stream_bytes_per_rollup,
        pending_metric,
    })
}

/// From just before `boundary`: until `PERF` holds `n` more messages and the projector has stored them, polling the
/// broker every 200 ms; gives up a few seconds before the next window's burst.
async fn watch_burst(
    js: &jetstream::Context,
    boundary: DateTime<Utc>,
    n: usize,
    every: Duration,
) -> anyhow::Result<Burst> {
    sleep_until_utc(boundary - chrono::Duration::seconds(1)).await;
    let stream = js.get_stream(STREAM_PERF).await?;
    let target = stream.get_info().await?.state.last_sequence + n as u64;
    sleep_until_utc(boundary).await;
    let since = Instant::now();
    let patience = every.saturating_sub(Duration::from_secs(3));
    let mut burst = Burst { published: None, stored: None, max_backlog: 0 };
    while burst.stored.is_none() && since.elapsed() < patience {
        let last = stream.get_info().await?.state.last_sequence;
        let consumer = stream.consumer_info(CONSUMER_PERF_PROJECTOR).await?;
        burst.max_backlog = burst.max_backlog.max(consumer.num_pending + consumer.num_ack_pending as u64);
        if burst.published.is_none() && last >= target {
            burst.published = Some(since.elapsed());
        }
        if consumer.ack_floor.stream_sequence >= target {
            burst.stored = Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(burst)
}

/// `kanade_projector_pending{stream="PERF"}` from the backend's `/metrics`.
async fn projector_pending(http: &reqwest::Client, api: &str) -> anyhow::Result<f64> {
    metric(http, api, "kanade_projector_pending{", "stream=\"PERF\"").await
}

/// The value of the first series in `/metrics` that starts with `name` and whose line holds `label`.
async fn metric(http: &reqwest::Client, api: &str, name: &str, label: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("{api}/metrics")).bearer_auth(TOKEN).send().await?.text().await?;
    text.lines()
        .find(|line| line.starts_with(name) && line.contains(label))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .with_context(|| format!("no `{name}` with `{label}` in /metrics"))
}

/// A plain read of `PERF`: how long the first `first` and all `count` messages from `start_sequence` took to come
/// back and decode (each bounded, as the projector does), with no SQL.
struct RawRead {
    first: Duration,
    all: Duration,
    count: usize,
}

async fn raw_read(js: &jetstream::Context, start_sequence: u64, count: usize, first: usize) -> anyhow::Result<RawRead> {
    let stream = js.get_stream(STREAM_PERF).await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence },
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages = consumer.messages().await?;
    let (mut read, mut first_at) = (0, None);
    while read < count {
        let Some(message) = tokio::time::timeout(Duration::from_secs(30), messages.next()).await? else { break };
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut rollup: PerfRollup = serde_json::from_slice(&message.payload)?;
        rollup.bound();
        read += 1;
        if read == first {
            first_at = Some(started.elapsed());
        }
    }
    anyhow::ensure!(read == count, "read {read} of {count} rollups back");
    let all = started.elapsed();
    Ok(RawRead { first: first_at.unwrap_or(all), all, count })
}

impl Windows {
    fn markdown(&self, args: &PerfArgs, n: usize, idle: &Usage, raw: &RawRead) -> String {
        let u = &self.usage;
        let every = args.rollup_interval.as_secs_f64();
        let per_10k = |cpu: f64| cpu / (self.rollups.max(1) as f64) * 10_000.0;
        // The heartbeats-only reference, scaled to the same length: what the rollups add is the rest.
        let scale = u.seconds / idle.seconds.max(0.001);
        let net_backend = u.backend - idle.backend * scale;
        let net_broker = u.broker - idle.broker * scale;
        let net_postgres = u.postgres - idle.postgres * scale;
        let mut out = format!(
            "#### Rollups: {n} agents, one rollup each every {}, {} windows measured ({:.0} s)\n\n\
             | figure | value |\n|---|---:|\n",
            humantime::format_duration(args.rollup_interval),
            args.windows,
            u.seconds
        );
        let row = |out: &mut String, what: &str, value: String| out.push_str(&format!("| {what} | {value} |\n"));
        row(
            &mut out,
            "rollups stored (expected)",
            format!("{} ({})", self.rollups, (u.seconds / every).round() as usize * n),
        );
        row(&mut out, "rollups stored per second", format!("{:.0}", self.rollups as f64 / u.seconds));
        let fmt =
            |d: Option<Duration>| d.map_or("not within the window".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
        for (k, burst) in self.bursts.iter().enumerate() {
            row(
                &mut out,
                &format!("window {}: all {n} in `PERF` / all stored, after the boundary; largest backlog", k + 1),
                format!("{} / {}; {}", fmt(burst.published), fmt(burst.stored), burst.max_backlog),
            );
        }
        row(
            &mut out,
            "`kanade_projector_pending{stream=\"PERF\"}` mid-window",
            self.pending_metric.map_or("unknown".into(), |v| format!("{v:.0}")),
        );
        row(
            &mut out,
            "reference: one window's rollups read back raw from `PERF` and decoded, no SQL",
            format!("{:.2} s ({} of them: {:.2} s)", raw.first.as_secs_f64(), raw.count, raw.all.as_secs_f64()),
        );
        row(
            &mut out,
            "backend CPU, % of one core (heartbeats-only reference)",
            format!("{:.1} ({:.1})", pct(u.backend, u.seconds), pct(idle.backend, idle.seconds)),
        );
        row(
            &mut out,
            "backend CPU per 10,000 rollups = per minute of 10,000 PCs at 60 s: all / net of heartbeats",
            format!("{:.2} s / {:.2} s", per_10k(u.backend), per_10k(net_backend)),
        );
        row(
            &mut out,
            "broker CPU per 10,000 rollups: all / net of heartbeats",
            format!("{:.2} s / {:.2} s", per_10k(u.broker), per_10k(net_broker)),
        );
        if args.databases.iter().any(|d| d == "postgres") && u.postgres > 0.0 {
            row(
                &mut out,
                "PostgreSQL server CPU per 10,000 rollups: all / net of heartbeats",
                format!("{:.2} s / {:.2} s", per_10k(u.postgres), per_10k(net_postgres)),
            );
        }
        row(&mut out, "simulator CPU per 10,000 rollups", format!("{:.2} s", per_10k(u.simulator)));
        let per_row = |bytes: f64| bytes / self.rollups.max(1) as f64;
        if let Some(table) = self.table_bytes {
            let b = per_row(table as f64);
            row(
                &mut out,
                "`perf_rollups` growth (table and indexes): per rollup / per 10,000 / per day at 60 s (14.4 M rows)",
                format!("{b:.0} B / {:.2} MB / {:.2} GB", b * 10_000.0 / 1e6, b * 14_400_000.0 / 1e9),
            );
        }
        row(
            &mut out,
            "database growth (pages in use; files incl. WAL) per 10,000 rollups",
            format!(
                "{:.2} MB; {:.2} MB",
                per_row(self.used_bytes as f64) * 10_000.0 / 1e6,
                per_row(self.file_bytes as f64) * 10_000.0 / 1e6
            ),
        );
        let b = self.stream_bytes_per_rollup;
        row(
            &mut out,
            "`PERF` per rollup as the broker stores it; hours of 10,000 PCs at 60 s its 1 GiB limit holds",
            format!("{b:.0} B; {:.1} h", 1024.0 * 1024.0 * 1024.0 / (b.max(1.0) * 10_000.0 * 60.0)),
        );
        row(
            &mut out,
            "RSS at the end: backend / broker / simulator",
            format!("{:.0} / {:.0} / {:.0} MB", mb(u.backend_rss), mb(u.broker_rss), mb(u.simulator_rss)),
        );
        out.push('\n');
        out
    }
}

/// One server-sent-event stream the benchmark holds open, and what it counted.
struct Follower {
    host: Arc<AtomicU64>,
    unreachable: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Follower {
    fn open(http: &reqwest::Client, api: &str, pc: &PcId) -> Self {
        let host = Arc::new(AtomicU64::new(0));
        let unreachable = Arc::new(AtomicU64::new(0));
        let (counted, lost) = (host.clone(), unreachable.clone());
        let request = http.get(format!("{api}/api/agents/{pc}/perf/live")).bearer_auth(TOKEN);
        let task = tokio::spawn(async move {
            let mut response = request.send().await?;
            anyhow::ensure!(response.status().is_success(), "live stream: {}", response.status());
            let mut pending: Vec<u8> = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let line = line.trim_ascii_end();
                    if line == b"event: host" {
                        counted.fetch_add(1, Ordering::Relaxed);
                    } else if line.starts_with(b"data:") && line.windows(13).any(|w| w == b"\"unreachable\"") {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        });
        Self { host, unreachable, task }
    }
}

fn host_events(followers: &[Follower]) -> u64 {
    followers.iter().map(|f| f.host.load(Ordering::Relaxed)).sum()
}

/// Waits until every stream has had a host sample.
async fn until_streaming(followers: &[Follower]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while followers.iter().any(|f| f.host.load(Ordering::Relaxed) == 0) {
        if let Some(ended) = followers.iter().find(|f| f.task.is_finished()) {
            bail!("a live stream ended early ({} samples)", ended.host.load(Ordering::Relaxed));
        }
        if started.elapsed() > Duration::from_secs(30) {
            let waiting = followers.iter().filter(|f| f.host.load(Ordering::Relaxed) == 0).count();
            bail!("{waiting} live streams had no sample after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(started.elapsed())
}

/// Viewers each PC's agent counts, asked with a zero lease from a viewer that holds none (which changes nothing).
async fn viewers(client: &async_nats::Client, pcs: &[PcId]) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for pc in pcs {
        let probe = LeaseRequest { viewer: "bench-probe".into(), lease_ms: 0, history: false };
        let reply = client.request(subject::perf_lease(pc), serde_json::to_vec(&probe)?.into()).await?;
        out.push(serde_json::from_slice::<LeaseReply>(&reply.payload)?.viewers);
    }
    Ok(out)
}

/// Counts the messages on `subject` from now on.
/// Counts the messages on `subject` from now on.
pub(crate) async fn count_messages(client: &async_nats::Client, subject: String) -> anyhow::Result<Arc<AtomicU64>> {
    let mut subscriber = client.subscribe(subject).await?;
    let counter = Arc::new(AtomicU64::new(0));
    let counted = counter.clone();
    tokio::spawn(async move {
        while subscriber.next().await.is_some() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(counter)
}

/// One live figure: the streams open, measured for the live window.
struct LiveFigure {
    streams: usize,
    usage: Usage,
    samples_per_sec: f64,
    /// Host samples one watched agent published on `perf.host.<pc>`.
    published_per_sec: f64,
    /// The fewest and most host samples one stream received in the window.
    per_stream: (u64, u64),
    lease_requests: u64,
    viewers: Vec<u32>,
    watches: Option<f64>,
    unreachable: u64,
    first_sample: Duration,
}

/// What the live part measures with.
struct LiveRig<'a> {
    window: Duration,
    client: &'a async_nats::Client,
    http: &'a reqwest::Client,
    api: &'a str,
    meters: &'a Meters,
    pcs: &'a [PcId],
}

async fn measure_live(rig: &LiveRig<'_>, followers: &[Follower], first_sample: Duration) -> anyhow::Result<LiveFigure> {
    let LiveRig { window, client, http, api, meters, pcs } = *rig;
    let leases = count_messages(client, "agents.*.perf".into()).await?;
    // One watched agent's own samples, straight from the broker (one more delivery a second, not fifty).
    let published = count_messages(client, subject::perf_host(&pcs[0])).await?;
    client.flush().await?;
    let per_stream = |f: &Follower| f.host.load(Ordering::Relaxed);
    let streams_before: Vec<u64> = followers.iter().map(per_stream).collect();
    let (samples_before, leases_before) = (host_events(followers), leases.load(Ordering::Relaxed));
    let published_before = published.load(Ordering::Relaxed);
    let before = meters.read();
    tokio::time::sleep(window).await;
    let usage = meters.since(before);
    let samples = host_events(followers) - samples_before;
    let lease_requests = leases.load(Ordering::Relaxed) - leases_before;
    let published = published.load(Ordering::Relaxed) - published_before;
    let each: Vec<u64> = followers.iter().zip(&streams_before).map(|(f, before)| per_stream(f) - before).collect();
    Ok(LiveFigure {
        streams: followers.len(),
        usage,
        samples_per_sec: samples as f64 / usage.seconds,
        published_per_sec: published as f64 / usage.seconds,
        per_stream: (each.iter().min().copied().unwrap_or(0), each.iter().max().copied().unwrap_or(0)),
        lease_requests,
        viewers: viewers(client, pcs).await?,
        watches: metric(http, api, "kanade_perf_watches", "").await.ok(),
        unreachable: followers.iter().map(|f| f.unreachable.load(Ordering::Relaxed)).sum(),
        first_sample,
    })
}

/// `--watched` PCs spread over the fleet, each watched by one browser, then by two; the streams closed at the end.
async fn live_streams(
    args: &PerfArgs,
    n: usize,
    client: &async_nats::Client,
    http: &reqwest::Client,
    api: &str,
    meters: &Meters,
    idle: &Usage,
) -> anyhow::Result<String> {
    let w = args.watched.min(n).max(1);
    let pcs: Vec<PcId> =
        (0..w).map(|i| kanade_agent::simulate::pc_id("sim-", i * n / w, n)).collect::<Result<_, _>>()?;
    let mut followers: Vec<Follower> = pcs.iter().map(|pc| Follower::open(http, api, pc)).collect();
    let first = until_streaming(&followers).await?;
    eprintln!("bench: live: {} streams on {w} PCs", followers.len());
    let rig = LiveRig { window: args.live_window, client, http, api, meters, pcs: &pcs };
    let one = measure_live(&rig, &followers, first).await?;
    let second: Vec<Follower> = pcs.iter().map(|pc| Follower::open(http, api, pc)).collect();
    let first = until_streaming(&second).await?;
    followers.extend(second);
    eprintln!("bench: live: {} streams on {w} PCs", followers.len());
    let two = measure_live(&rig, &followers, first).await?;
    for follower in &followers {
        follower.task.abort();
    }
    let closed = Instant::now();
    let mut watches_after = None;
    while closed.elapsed() < Duration::from_secs(30) {
        let watches = metric(http, api, "kanade_perf_watches", "").await?;
        watches_after = Some(watches);
        if watches == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let released_after = closed.elapsed();
    let viewers_after: u32 = viewers(client, &pcs).await?.into_iter().sum();

    let mut out = format!(
        "#### Live: {w} PCs of the {n} watched at once, samples every {LIVE_INTERVAL}, {:.0} s per figure\n\n\
         | streams open | backend CPU | broker CPU | simulator CPU | backend RSS | broker RSS | samples one agent \
         published/s | delivered/s, all streams (fewest-most one stream received) | lease requests seen (per PC per minute) | viewers \
         per agent (max) | `kanade_perf_watches` |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        args.live_window.as_secs_f64()
    );
    out.push_str(&format!(
        "| none (reference) | {:.1}% | {:.1}% | {:.1}% | {:.0} MB | {:.0} MB | — | — | — | — | — |\n",
        pct(idle.backend, idle.seconds),
        pct(idle.broker, idle.seconds),
        pct(idle.simulator, idle.seconds),
        mb(idle.backend_rss),
        mb(idle.broker_rss)
    ));
    for figure in [&one, &two] {
        let u = &figure.usage;
        out.push_str(&format!(
            "| {} ({} per PC) | {:.1}% | {:.1}% | {:.1}% | {:.0} MB | {:.0} MB | {:.2} | {:.1} ({}-{}) | {} ({:.1}) | {} | {} |\n",
            figure.streams,
            figure.streams / w,
            pct(u.backend, u.seconds),
            pct(u.broker, u.seconds),
            pct(u.simulator, u.seconds),
            mb(u.backend_rss),
            mb(u.broker_rss),
            figure.published_per_sec,
            figure.samples_per_sec,
            figure.per_stream.0,
            figure.per_stream.1,
            figure.lease_requests,
            figure.lease_requests as f64 / w as f64 / (u.seconds / 60.0),
            figure.viewers.iter().max().copied().unwrap_or(0),
            figure.watches.map_or("?".into(), |v| format!("{v:.0}")),
        ));
    }
    out.push_str(&format!(
        "\nFirst sample on every stream within {:.1} s (one per PC) and {:.1} s (the second browsers, joining a live \
         watch); `unreachable` states seen: {}. After all streams closed: `kanade_perf_watches` {} after {:.1} s, \
         viewers left on the agents: {viewers_after}.\n\n",
        one.first_sample.as_secs_f64(),
        two.first_sample.as_secs_f64(),
        one.unreachable + two.unreachable,
        watches_after.map_or("?".into(), |v| format!("{v:.0}")),
        released_after.as_secs_f64(),
    ));
    Ok(out)
}

/// A week of one-minute rollups of `pc`, ending at `end`, made by the agent's own rollup code over the simulator's
/// made-up figures (the same shape and size as a simulated agent's).
fn week_of(pc: &PcId, end: DateTime<Utc>) -> Vec<PerfRollup> {
    let mut host = kanade_agent::perf::synthetic::SyntheticHost::new();
    let minute = chrono::Duration::minutes(1);
    (0..WEEK_ROWS)
        .map(|k| {
            let start = end - minute * i32::try_from(WEEK_ROWS - k).unwrap_or(0);
            let mut rollup = kanade_agent::perf::rollup::Rollup::new(start);
            rollup.add_host(&host.host(pc));
            rollup.add_processes(Duration::from_secs(60), &host.processes().list);
            rollup.finish(pc, start + minute)
        })
        .collect()
}

/// What the history part works with: the fleet's broker, database and work dir, to restart the backend on.
struct HistoryRig<'a> {
    args: &'a PerfArgs,
    bin: &'a Path,
    work: &'a Path,
    store: &'a Store,
    nats_url: &'a str,
    js: &'a jetstream::Context,
    client: &'a async_nats::Client,
}

/// The history part: the backend stopped, a week of rollups for a few PCs published, the backend restarted onto that
/// backlog; then the history queries. Returns the restarted backend.
async fn history_part(rig: &HistoryRig<'_>, backend: fanout::Backend) -> anyhow::Result<(String, fanout::Backend)> {
    let HistoryRig { args, bin, work, store, nats_url, js, client } = *rig;
    let http = reqwest::Client::new();
    let pcs: Vec<PcId> =
        (1..=args.history_pcs.max(1)).map(|i| PcId::new(format!("{HISTORY_PREFIX}{i}"))).collect::<Result<_, _>>()?;
    // The history API answers only for PCs the backend knows: one heartbeat each.
    for pc in &pcs {
        let heartbeat =
            Heartbeat { hostname: pc.to_string(), os: "windows".into(), ..Heartbeat::minimal(pc.clone(), Utc::now()) };
        client.publish(subject::heartbeat(pc), serde_json::to_vec(&heartbeat)?.into()).await?;
    }
    client.flush().await?;
    let known = Instant::now();
    for pc in &pcs {
        while !http
            .get(format!("{}/api/agents/{pc}", backend.url))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .status()
            .is_success()
        {
            if known.elapsed() > Duration::from_secs(30) {
                bail!("the backend did not register `{pc}`");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    backend.proc.stop(Duration::from_secs(10)).await;

    let now = Utc::now();
    let end = DateTime::from_timestamp(now.timestamp() - now.timestamp().rem_euclid(60), 0).unwrap_or(now);
    let rollups: Vec<PerfRollup> = pcs.iter().flat_map(|pc| week_of(pc, end)).collect();
    let total = rollups.len();
    let bytes: usize = rollups.iter().map(|r| serde_json::to_vec(r).map_or(0, |b| b.len())).sum();
    let first_sequence = js.get_stream(STREAM_PERF).await?.get_info().await?.state.last_sequence + 1;
    eprintln!("bench: history: publishing {total} rollups ({:.1} MB) with the backend stopped", mb(bytes as u64));
    let published = Instant::now();
    let acks = futures::stream::iter(rollups)
        .map(|rollup| {
            let js = js.clone();
            async move {
                let body = serde_json::to_vec(&rollup)?;
                js.publish(subject::perf_rollup(&rollup.pc_id), body.into()).await?.await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    acks.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let publish_time = published.elapsed();
    let raw = raw_read(js, first_sequence, total, total).await?;

    let rows_sql = format!("SELECT COUNT(*) FROM perf_rollups WHERE pc_id LIKE '{HISTORY_PREFIX}%'");
    let table_before = store.table_bytes("perf_rollups").await?;
    let used_before = store.used_bytes().await?;
    eprintln!("bench: history: restarting the backend onto the backlog");
    let restarted = Instant::now();
    let backend = fanout::start_backend_on(bin, nats_url, work, store.url()).await?;
    until_count(store, &rows_sql, i64::try_from(total)?, Duration::from_secs(1800)).await?;
    let drain = restarted.elapsed();
    let drain_cpu = backend.proc.cpu_seconds();
    let table = match (table_before, store.table_bytes("perf_rollups").await?) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let used = store.used_bytes().await?.saturating_sub(used_before);

    let pc = &pcs[0];
    let queries = [
        ("1 hour (`since=1h`, 1-minute points)", "since=1h"),
        ("24 hours (`since=24h`, default step)", "since=24h"),
        ("24 hours, every minute (`since=24h&step=1m`)", "since=24h&step=1m"),
        ("7 days (`since=7d`, default step)", "since=7d"),
    ];
    let mut rows_out = Vec::new();
    for (what, query) in queries {
        let url = format!("{}/api/agents/{pc}/perf?{query}", backend.url);
        let mut samples = Vec::new();
        let (mut size, mut points, mut rolled) = (0, 0, 0);
        for _ in 0..args.samples.max(1) {
            let started = Instant::now();
            let reply = http.get(&url).bearer_auth(TOKEN).send().await?;
            anyhow::ensure!(reply.status().is_success(), "{url}: {}", reply.status());
            let body = reply.bytes().await?;
            samples.push(started.elapsed().as_micros() as i64);
            size = body.len();
            let history: serde_json::Value = serde_json::from_slice(&body)?;
            let list = history["points"].as_array().cloned().unwrap_or_default();
            points = list.len();
            rolled = list.iter().filter_map(|p| p["rollups"].as_u64()).sum::<u64>();
        }
        let p = percentiles(samples);
        rows_out.push(format!(
            "| {what} | {rolled} | {points} | {:.1} KB | {:.1} ms | {:.1} ms |\n",
            size as f64 / 1024.0,
            p.p50 as f64 / 1000.0,
            p.p99 as f64 / 1000.0
        ));
    }

    let mut out = format!(
        "#### History: a week of one-minute rollups for {} PCs ({total} rollups, {:.1} MB of JSON)\n\n\
         | figure | value |\n|---|---:|\n",
        pcs.len(),
        mb(bytes as u64)
    );
    out.push_str(&format!(
        "| published to `PERF` with the backend stopped ({IN_FLIGHT} in flight) | {:.1} s |\n",
        publish_time.as_secs_f64()
    ));
    out.push_str(&format!(
        "| backend restarted onto the backlog: until all {total} are stored | {:.1} s ({:.0} rollups/s; {:.1}x the raw read) |\n",
        drain.as_secs_f64(),
        total as f64 / drain.as_secs_f64(),
        drain.as_secs_f64() / raw.all.as_secs_f64().max(0.001)
    ));
    out.push_str(&format!(
        "| reference: the same {total} read back raw from `PERF` and decoded, no SQL | {:.2} s ({:.0} rollups/s) |\n",
        raw.all.as_secs_f64(),
        total as f64 / raw.all.as_secs_f64().max(0.001)
    ));
    out.push_str(&format!(
        "| backend CPU for it (start included) | {drain_cpu:.1} s ({:.2} s per 10,000 rollups) |\n",
        drain_cpu / total as f64 * 10_000.0
    ));
    if let Some(table) = table {
        let b = table as f64 / total as f64;
        out.push_str(&format!(
            "| `perf_rollups` growth: per rollup / per 10,000 / per day at 60 s (14.4 M rows) | {b:.0} B / {:.2} MB / {:.2} GB |\n",
            b * 10_000.0 / 1e6,
            b * 14_400_000.0 / 1e9
        ));
    }
    out.push_str(&format!(
        "| database growth (pages in use) per 10,000 rollups | {:.2} MB |\n",
        used as f64 / total as f64 * 10_000.0 / 1e6
    ));
    out.push_str(&format!(
        "\n`GET /api/agents/{pc}/perf`, {} requests each:\n\n| range | rollups read | points | body | p50 | p99 |\n|---|---:|---:|---:|---:|---:|\n",
        args.samples.max(1)
    ));
    for row in rows_out {
        out.push_str(&row);
    }
    out.push('\n');
    Ok((out, backend))
}

/// A real agent's CPU seconds, RSS and peak RSS over one window, and what it sent meanwhile.
struct AgentWindow {
    seconds: f64,
    cpu: f64,
    rss: u64,
    peak_rss: u64,
    host_samples: u64,
    rollups: u64,
}

/// One real `kanade-agent` process sampling this machine, with a rollup a minute and a 1 s live interval: idle,
/// then while the benchmark holds a lease (renewed every 10 s, as the backend does); then the `/proc` reading loop.
async fn real_agent(args: &PerfArgs, bin: &Path) -> anyhow::Result<String> {
    let window = args.agent_window;
    eprintln!("bench: real agent: idle, then watched, {} each", humantime::format_duration(window));
    let nats = NatsServer::start_durable();
    let client = kanade_testkit::client(&nats.url()).await;
    kanade_ops::jetstream::setup(&jetstream::new(client.clone()), 1).await?;
    kanade_testkit::fleet().push_trust(&client).await;
    let data = tempfile::tempdir()?;
    let pc = PcId::new("perf-agent")?;
    let config = data.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"{pc}\"\nnats_url = \"{}\"\ndata_dir = \"{}\"\nperf_interval = \"{LIVE_INTERVAL}\"\n\
             host_perf_interval = \"60s\"\n\n[inventory]\nenabled = false\n",
            nats.url(),
            data.path().join("state").display()
        ),
    )?;
    let mut command = tokio::process::Command::new(bin.join("kanade-agent"));
    // Its own credential in its data dir, as enrolment leaves it, and the fleet's CA.
    let identity = kanade_testkit::fleet().agent_env(pc.as_str(), &[], &data.path().join("state"));
    command.env_clear().envs(identity).arg("--config").arg(&config).env("KANADE_LOG", "warn");
    let agent = Proc::spawn(command, &data.path().join("agent.log"))?;
    let started = Instant::now();
    while kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the agent never answered a ping; see {}", data.path().join("agent.log").display());
        }
    }
    let host = count_messages(&client, subject::perf_host(&pc)).await?;
    let rollups = count_messages(&client, subject::perf_rollup(&pc)).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let processes = procs::all_pids().len();

    let pid = agent.pid;
    let measure = |window: Duration| {
        let (host, rollups) = (host.clone(), rollups.clone());
        async move {
            let (cpu, host0, rollups0) =
                (procs::cpu_seconds(pid), host.load(Ordering::Relaxed), rollups.load(Ordering::Relaxed));
            let at = Instant::now();
            tokio::time::sleep(window).await;
            AgentWindow {
                seconds: at.elapsed().as_secs_f64(),
                cpu: procs::cpu_seconds(pid) - cpu,
                rss: procs::rss_bytes(pid),
                peak_rss: procs::peak_rss_bytes(pid),
                host_samples: host.load(Ordering::Relaxed) - host0,
                rollups: rollups.load(Ordering::Relaxed) - rollups0,
            }
        }
    };
    let idle = measure(window).await;

    // A viewer holding a lease: asked now and renewed every 10 s, as the backend's relay does.
    let renew = {
        let (client, pc) = (client.clone(), pc.clone());
        tokio::spawn(async move {
            loop {
                let request = LeaseRequest { viewer: "bench".into(), lease_ms: 30_000, history: false };
                if let Ok(body) = serde_json::to_vec(&request) {
                    let _ = client.request(subject::perf_lease(&pc), body.into()).await;
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        })
    };
    let asked = Instant::now();
    while host.load(Ordering::Relaxed) == 0 {
        if asked.elapsed() > Duration::from_secs(10) {
            bail!("no live sample 10 s after the lease");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_sample = asked.elapsed();
    let watched = measure(window).await;
    renew.abort();
    let release = LeaseRequest { viewer: "bench".into(), lease_ms: 0, history: false };
    client.request(subject::perf_lease(&pc), serde_json::to_vec(&release)?.into()).await?;
    agent.stop(Duration::from_secs(10)).await;

    // The reference: the same kind of reading (machine, disks, network, every process) once a second, no more.
    let mut command = tokio::process::Command::new(bin.join("kanade-bench"));
    command.arg("proc-reader");
    let reader = Proc::spawn(command, &data.path().join("reader.log"))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = reader.cpu_seconds();
    let at = Instant::now();
    tokio::time::sleep(window).await;
    let (reader_cpu, reader_seconds, reader_rss) =
        (reader.cpu_seconds() - cpu, at.elapsed().as_secs_f64(), reader.rss_bytes());
    reader.stop(Duration::from_secs(5)).await;

    let mut out = format!(
        "#### One real agent (release build) sampling this machine: {processes} processes running, {} cores\n\n\
         | state | CPU, % of one core | CPU seconds per hour | RSS (peak) | live samples/s | rollups sent |\n\
         |---|---:|---:|---:|---:|---:|\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    for (what, w) in [
        ("idle, a rollup every 60 s (a host sample every 5 s)", &idle),
        ("watched: a lease held, samples every 1 s", &watched),
    ] {
        out.push_str(&format!(
            "| {what} | {:.2}% | {:.1} s | {:.1} MB ({:.1} MB) | {:.2} | {} |\n",
            pct(w.cpu, w.seconds),
            w.cpu / w.seconds * 3600.0,
            mb(w.rss),
            mb(w.peak_rss),
            w.host_samples as f64 / w.seconds,
            w.rollups
        ));
    }
    out.push_str(&format!(
        "| reference: a loop reading `/proc/stat`, `meminfo`, `diskstats`, `net/dev` and every process's `stat`, \
         `status` and `io` once a second | {:.2}% | {:.1} s | {:.1} MB | — | — |\n",
        pct(reader_cpu, reader_seconds),
        reader_cpu / reader_seconds * 3600.0,
        mb(reader_rss)
    ));
    out.push_str(&format!(
        "\nFirst live sample {:.2} s after the lease was asked for. CPU time comes from `/proc/<pid>/stat` in clock \
         ticks of 10 ms.\n\n",
        first_sample.as_secs_f64()
    ));
    Ok(out)
}

/// `kanade-bench proc-reader`: reads what a host sampler reads — the machine's CPU, memory, disk and network
/// counters and every process's `stat`, `status` and `io` — once a second until killed. The reference for the
/// agent's own cost while watched.
pub fn proc_reader() -> ! {
    let mut bytes = 0usize;
    loop {
        for file in ["/proc/stat", "/proc/meminfo", "/proc/diskstats", "/proc/net/dev", "/proc/loadavg", "/proc/uptime"]
        {
            bytes += std::fs::read_to_string(file).map_or(0, |t| t.len());
        }
        for pid in procs::all_pids() {
            for file in ["stat", "status", "io"] {
                bytes += std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_or(0, |t| t.len());
            }
        }
        std::hint::black_box(bytes);
        std::thread::sleep(Duration::from_secs(1));
    }
}
