//! `kanade-bench inventory`: inventory at fleet size. nats-server (syncing every write, as deployed), the backend
//! on SQLite or PostgreSQL and the simulator with N agents as separate processes, each simulated PC with a made-up
//! inventory of `--items` software items (titles drawn from a fleet-wide catalogue of 2,000). Measured, per
//! database: the fleet's first full reports (every kind of every PC) from the simulator's start until all are
//! stored, the backend's CPU and the database's size; a day's change-only round (every agent asked to report,
//! `--churn` items changed on each, so only software is sent) until every change is logged; and the queries at
//! that size — "which PCs have title X below version Y", a title's PCs without a range, the titles list, the change
//! log — as p50/p99 over `--samples` requests. The reference, in the same run: reading the same `INVENTORY`
//! messages back raw from the broker and decoding them, with no SQL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use kanade_shared::resources::STREAM_INVENTORY;
use kanade_testkit::NatsServer;

use crate::database::{Store, until_count};
use crate::fanout::{self, TOKEN};
use crate::procs::{self, Proc};
use crate::stats::percentiles;

#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Software items per agent.
    #[arg(long, default_value_t = 200)]
    pub items: usize,
    /// Items that change on each agent in the change-only round.
    #[arg(long, default_value_t = 3)]
    pub churn: usize,
    /// Longest random wait before each agent's first report (0: the whole fleet at once, the worst case).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub jitter: Duration,
    /// `sqlite`, `postgres`, or both, comma-separated. With PostgreSQL the backend's CPU leaves out the database
    /// server's own.
    #[arg(long, default_value = "sqlite,postgres", value_delimiter = ',')]
    pub databases: Vec<String>,
    /// Where PostgreSQL is: a database is created there for the run and dropped after it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// Requests per query figure.
    #[arg(long, default_value_t = 30)]
    pub samples: usize,
    /// Use the binaries in this directory (e.g. target/debug) instead of building release ones.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

pub fn main(args: InventoryArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let bin = match &args.bin_dir {
        Some(dir) => dir.canonicalize().with_context(|| format!("--bin-dir `{}`", dir.display()))?,
        None => procs::build_binaries()?,
    };
    let mut reports = Vec::new();
    for database in &args.databases {
        reports.push(runtime.block_on(one_database(&args, &bin, database))?);
    }
    println!(
        "\n{} simulated agents, {} software items each ({} titles in the fleet's catalogue), {} changed per agent \
         in the change-only round; first reports with jitter {}\n",
        args.agents,
        args.items,
        2_000,
        args.churn,
        humantime::format_duration(args.jitter)
    );
    for report in reports {
        println!("{report}");
    }
    Ok(())
}

async fn one_database(args: &InventoryArgs, bin: &Path, kind: &str) -> anyhow::Result<String> {
    let n = args.agents;
    let work = tempfile::tempdir()?;
    let store = Store::create(kind, work.path(), &args.postgres, "inventory").await?;
    let nats = NatsServer::start_durable();
    let url = nats.url();
    let client = kanade_testkit::client(&url).await;
    let js = async_nats::jetstream::new(client.clone());
    kanade_ops::jetstream::setup(&js, 1).await?;
    kanade_testkit::fleet().push_trust(&client).await;
    let backend = fanout::start_backend_on(bin, &url, work.path(), store.url()).await?;
    let cpu_before = backend.proc.cpu_seconds();

    let sim_data = PathBuf::from(format!("/dev/shm/kanade-bench-inventory-{}", std::process::id()));
    std::fs::create_dir_all(&sim_data)?;
    let mut command = tokio::process::Command::new(bin.join("kanade-agent"));
    command
        .args(["simulate", "--count", &n.to_string(), "--connections", &n.div_ceil(100).max(1).to_string()])
        .args(["--heartbeat-interval", "60s", "--inventory-items", &args.items.to_string()])
        .args(["--inventory-churn", &args.churn.to_string(), "--inventory-interval", "24h"])
        .args(["--inventory-jitter", &humantime::format_duration(args.jitter).to_string()])
        .args(kanade_testkit::fleet().simulator_args())
        .arg("--data-dir")
        .arg(&sim_data)
        .env("KANADE_NATS_URL", &url)
        .env("KANADE_LOG", "warn");
    let started = Instant::now();
    let mut sim = Proc::spawn(command, &sim_data.join("simulator.log"))?;
    sim.ready_line(Duration::from_secs(600)).await.context("the simulator did not get ready")?;
    let reports = i64::try_from(3 * n)?;
    until_count(&store, "SELECT COUNT(*) FROM inventory_reports", reports, Duration::from_secs(1800)).await?;
    let first = started.elapsed();
    let cpu_first = backend.proc.cpu_seconds() - cpu_before;
    let rows = store.count("SELECT COUNT(*) FROM inventory_software").await?;
    let size_first = store.bytes().await?;
    eprintln!("bench: {kind}: {reports} first reports ({rows} software rows) stored after {} ms", first.as_millis());

    // The reference: the same messages read back raw and decoded, no SQL.
    let raw = raw_read(&js, 3 * n).await?;

    // A day's round: every agent asked, each sends only its changed software.
    let http = reqwest::Client::new();
    let api = backend.url.clone();
    let cpu_before = backend.proc.cpu_seconds();
    let changes = i64::try_from(n * args.churn)?;
    let asked = Instant::now();
    let reply = http
        .post(format!("{api}/api/inventory/refresh"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "all": true }))
        .send()
        .await?;
    anyhow::ensure!(reply.status().is_success(), "refresh: {}", reply.status());
    let changed_sql = "SELECT COUNT(*) FROM inventory_changes WHERE change = 'version_changed'";
    until_count(&store, changed_sql, changes, Duration::from_secs(1800)).await?;
    let round = asked.elapsed();
    let cpu_round = backend.proc.cpu_seconds() - cpu_before;
    let size_round = store.bytes().await?;

    // Queries at that size.
    let title = "simulated app 00042";
    let figures = [
        (
            "PCs with a title below a version (`software?name=…&version=<3`)",
            format!("/api/inventory/software?name={title}&version=%3C3&limit=100"),
        ),
        ("PCs with a title, no range (`software?name=…`)", format!("/api/inventory/software?name={title}&limit=100")),
        ("the same, every page as CSV (`format=csv`)", format!("/api/inventory/software?name={title}&format=csv")),
        ("titles, first page (`titles?limit=100`)", "/api/inventory/titles?limit=100".to_owned()),
        ("titles matching a word (`titles?search=00042`)", "/api/inventory/titles?search=00042".to_owned()),
        ("change log, newest 100 (`changes?limit=100`)", "/api/inventory/changes?limit=100".to_owned()),
        ("one PC's inventory (`agents/{pc}/inventory`)", "/api/agents/sim-00042/inventory".to_owned()),
    ];
    let mut rows_out = Vec::new();
    for (what, path) in &figures {
        let mut samples = Vec::new();
        let mut bytes = 0;
        for _ in 0..args.samples {
            let t = Instant::now();
            let reply = http.get(format!("{api}{path}")).bearer_auth(TOKEN).send().await?;
            anyhow::ensure!(reply.status().is_success(), "{path}: {}", reply.status());
            bytes = reply.bytes().await?.len();
            samples.push(t.elapsed().as_micros() as i64);
        }
        let p = percentiles(samples);
        rows_out.push(format!(
            "| {what} | {:.1} ms | {:.1} ms | {:.1} KB |",
            p.p50 as f64 / 1000.0,
            p.p99 as f64 / 1000.0,
            bytes as f64 / 1024.0
        ));
    }
    let has_title = store.count(&format!("SELECT COUNT(*) FROM inventory_software WHERE name_key = '{title}'")).await?;

    sim.stop(Duration::from_secs(60)).await;
    let _ = std::fs::remove_dir_all(&sim_data);
    let backend_rss = backend.proc.rss_bytes();
    backend.proc.stop(Duration::from_secs(10)).await;
    drop(nats);
    store.drop_database().await;

    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut out = format!("### {kind}\n\n| step | time | backend CPU | database size |\n|---|---:|---:|---:|\n");
    out.push_str(&format!(
        "| first full reports: {reports} messages, {rows} software rows | {:.1} s ({:.1}x the raw read) | {:.1} s | {:.0} MB |\n",
        first.as_secs_f64(),
        first.as_secs_f64() / raw.as_secs_f64().max(0.001),
        cpu_first,
        mb(size_first)
    ));
    out.push_str(&format!(
        "| change-only round: {n} software reports, {changes} version changes logged | {:.1} s | {:.1} s | {:.0} MB |\n",
        round.as_secs_f64(),
        cpu_round,
        mb(size_round)
    ));
    out.push_str(&format!(
        "| reference: the same {} messages read back raw from `INVENTORY` and decoded, no SQL | {:.1} s | — | — |\n",
        3 * n,
        raw.as_secs_f64()
    ));
    out.push_str(&format!(
        "\n{} samples per query; the title queried is on {has_title} PCs; backend RSS at the end {:.0} MB\n\n\
         | query | p50 | p99 | body |\n|---|---:|---:|---:|\n",
        args.samples,
        mb(backend_rss)
    ));
    for row in rows_out {
        out.push_str(&row);
        out.push('\n');
    }
    Ok(out)
}

/// Reads `count` messages of `INVENTORY` from the start with an ephemeral consumer and decodes each as JSON: what
/// moving and parsing the reports costs without storing them.
async fn raw_read(js: &async_nats::jetstream::Context, count: usize) -> anyhow::Result<Duration> {
    let stream = js.get_stream(STREAM_INVENTORY).await?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages = consumer.messages().await?;
    let mut read = 0;
    while read < count {
        let Some(message) = tokio::time::timeout(Duration::from_secs(30), messages.next()).await? else { break };
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        let _: serde_json::Value = serde_json::from_slice(&message.payload)?;
        read += 1;
    }
    anyhow::ensure!(read == count, "read {read} of {count} messages back");
    Ok(started.elapsed())
}
