//! `kanade-bench lists`: the lists at fleet size. nats-server, the backend and the simulator with N agents as
//! separate processes, one execution fired at all of them; then the latency of `GET /api/agents` and an
//! execution's targets page by page (first page, a page deep into the list, a filtered page), and in headless
//! Chromium (playwright-core, as `web/e2e` drives it) the Agents page and the execution's page: time to the first
//! rows and the page's JS heap, first page and after loading more; and the Fleet page, which reads every agent
//! (as the Agents page did before it paged), for comparison.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kanade_shared::api::{KeyPart, encode_cursor};
use kanade_testkit::NatsServer;

use crate::fanout::{self, TOKEN};
use crate::procs::{self, Proc};
use crate::stats::percentiles;

#[derive(Debug, clap::Args)]
pub struct ListsArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Requests per API figure.
    #[arg(long, default_value_t = 30)]
    pub samples: usize,
    /// Use the binaries in this directory (e.g. target/debug) instead of building release ones.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// The browser; playwright-core does not download one.
    #[arg(long, default_value = "/usr/bin/chromium")]
    pub chromium: PathBuf,
}

/// Builds (or takes) the binaries, then measures.
pub fn main(args: ListsArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let bin = match &args.bin_dir {
        Some(dir) => dir.canonicalize().with_context(|| format!("--bin-dir `{}`", dir.display()))?,
        None => procs::build_binaries()?,
    };
    runtime.block_on(run(&args, &bin))
}

async fn run(args: &ListsArgs, bin: &Path) -> anyhow::Result<()> {
    let n = args.agents;
    let work = tempfile::tempdir()?;
    let nats = NatsServer::start();
    let url = nats.url();
    let client = kanade_testkit::client(&url).await;
    kanade_ops::jetstream::setup(&async_nats::jetstream::new(client.clone()), 1).await?;
    kanade_testkit::fleet().push_trust(&client).await;
    let backend = fanout::start_backend(bin, &url, work.path()).await?;
    let sim_data = PathBuf::from(format!("/dev/shm/kanade-bench-lists-{}", std::process::id()));
    std::fs::create_dir_all(&sim_data)?;
    let mut command = tokio::process::Command::new(bin.join("kanade-agent"));
    command
        .args(["simulate", "--count", &n.to_string(), "--connections", &n.div_ceil(100).max(1).to_string()])
        .args(["--heartbeat-interval", "30s"])
        .args(kanade_testkit::fleet().simulator_args())
        .arg("--data-dir")
        .arg(&sim_data)
        .env("KANADE_NATS_URL", &url)
        .env("KANADE_LOG", "warn");
    let mut sim = Proc::spawn(command, &sim_data.join("simulator.log"))?;
    sim.ready_line(Duration::from_secs(600)).await.context("the simulator did not get ready")?;
    let http = reqwest::Client::new();
    let api = backend.url.clone();
    let started = Instant::now();
    fanout::wait_for_agents(&http, &api, n).await?;
    eprintln!("bench: {n} agents in the API after {} ms", started.elapsed().as_millis());
    fanout::create_bench_job(&http, &api).await?;
    let exec = fire_and_wait(&http, &api).await?;
    eprintln!("bench: execution {exec} completed on {n} agents");

    let deep = encode_cursor("agents", vec![KeyPart::Text(format!("sim-{:05}", n * 9 / 10))]);
    let deep_target = encode_cursor("targets", vec![KeyPart::Text(format!("sim-{:05}", n * 9 / 10))]);
    let figures = [
        ("`GET /api/agents?limit=200` (first page)", "/api/agents?limit=200".to_owned()),
        ("`GET /api/agents?limit=200` 90% into the list", format!("/api/agents?limit=200&cursor={deep}")),
        (
            "`GET /api/agents?limit=200&search=sim-099&status=online`",
            "/api/agents?limit=200&search=sim-099&status=online".to_owned(),
        ),
        ("`GET /api/agents?limit=1000`", "/api/agents?limit=1000".to_owned()),
        (
            "`GET /api/executions/{id}/targets?limit=200` (first page)",
            format!("/api/executions/{exec}/targets?limit=200"),
        ),
        (
            "`GET /api/executions/{id}/targets?limit=200` 90% in",
            format!("/api/executions/{exec}/targets?limit=200&cursor={deep_target}"),
        ),
        ("`GET /api/executions/{id}/results?limit=200`", format!("/api/executions/{exec}/results?limit=200")),
    ];
    let mut api_rows = Vec::new();
    for (what, path) in &figures {
        let mut samples = Vec::new();
        for _ in 0..args.samples {
            let t = Instant::now();
            let reply = http.get(format!("{api}{path}")).bearer_auth(TOKEN).send().await?;
            anyhow::ensure!(reply.status().is_success(), "{path}: {}", reply.status());
            let body = reply.bytes().await?;
            samples.push(t.elapsed().as_micros() as i64);
            anyhow::ensure!(!body.is_empty(), "{path}: empty");
        }
        let p = percentiles(samples);
        api_rows.push(format!("| {what} | {:.1} ms | {:.1} ms |", p.p50 as f64 / 1000.0, p.p99 as f64 / 1000.0));
    }
    let backend_rss = backend.proc.rss_bytes();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/e2e/lists-bench.mjs").canonicalize()?;
    let web = script.parent().and_then(Path::parent).context("web dir")?.to_owned();
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(&web)
        .env("KANADE_URL", &api)
        .env("KANADE_TOKEN", TOKEN)
        .env("KANADE_EXEC", &exec)
        .env("KANADE_AGENTS", n.to_string())
        .env("KANADE_CHROMIUM", &args.chromium)
        .output()
        .await
        .context("cannot run node (cargo xtask web installs playwright-core)")?;
    if !out.status.success() {
        bail!("the browser part failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let browser: serde_json::Value = serde_json::from_slice(&out.stdout).context("the browser part's figures")?;

    println!("\n{n} simulated agents, one execution at all of them; {} samples per API figure\n", args.samples);
    println!("| request | p50 | p99 |\n|---|---:|---:|");
    for row in api_rows {
        println!("{row}");
    }
    println!("\nbackend RSS: {:.1} MB", backend_rss as f64 / (1024.0 * 1024.0));
    println!("\n| page (Chromium, headless) | rows shown | time to first rows | JS heap used |\n|---|---:|---:|---:|");
    for page in browser.as_array().into_iter().flatten() {
        let ms = page["ms"].as_i64().map_or_else(|| "—".to_owned(), |ms| format!("{ms} ms"));
        println!(
            "| {} | {} | {ms} | {:.1} MB |",
            page["page"].as_str().unwrap_or_default(),
            page["rows"],
            page["heap_bytes"].as_f64().unwrap_or_default() / (1024.0 * 1024.0)
        );
    }
    sim.stop(Duration::from_secs(60)).await;
    let _ = std::fs::remove_dir_all(&sim_data);
    backend.proc.stop(Duration::from_secs(10)).await;
    drop(nats);
    Ok(())
}

/// Fires the bench job at every agent through the API and waits until it is completed; returns its exec id.
async fn fire_and_wait(http: &reqwest::Client, api: &str) -> anyhow::Result<String> {
    let reply =
        http.post(format!("{api}/api/exec/bench-exec")).bearer_auth(TOKEN).json(&serde_json::json!({})).send().await?;
    anyhow::ensure!(reply.status().is_success(), "exec refused: {}", reply.text().await?);
    let view: serde_json::Value = reply.json().await?;
    let exec = view["exec_id"].as_str().context("exec id")?.to_owned();
    let started = Instant::now();
    loop {
        let view: serde_json::Value =
            http.get(format!("{api}/api/executions/{exec}")).bearer_auth(TOKEN).send().await?.json().await?;
        if view["status"] == "completed" {
            return Ok(exec);
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("exec {exec} not completed after 10 minutes: {view}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
