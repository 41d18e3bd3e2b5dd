//! `kanade-bench client`: what kanade-client's side of the agent costs at fleet scale (issue #21). N simulated agents
//! (the real agent code, `kanade-agent simulate`) on one broker and backend, in the same invocation: first without
//! kanade-client's desk (the reference), then with it (`--client-desk`: every agent takes notifications and holds
//! runs that ask for consent, which nobody answers here). Measured:
//! - the idle fleet, each way: the broker's and the simulator's CPU and RSS over a window;
//! - a notification to every PC: how long until every PC keeps it (its `notices.json`), and the broker's CPU;
//! - read-back: with the simulator stopped, K notifications sent; after it starts again, how long until every PC
//!   keeps them;
//! - a job asking for consent fired at every PC: how long until every PC has said it holds the run
//!   (`events.consent`) and the backend has stored that (`runs_held`), and, at the deadline (1 min) with nobody
//!   answering, until every result is in.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream;
use chrono::Utc;
use kanade_shared::subject::Target;
use kanade_shared::wire::{Notice, NoticeLevel};
use kanade_shared::{Actor, NoticeId, PcId};
use kanade_testkit::NatsServer;

use crate::fanout::{self, TOKEN};
use crate::procs::{self, Proc};

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// How long the idle fleet is measured, each way.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    idle_window: Duration,
    /// Notifications sent while the simulator is stopped, read back when it starts.
    #[arg(long, default_value_t = 3)]
    read_back: usize,
    /// Use the release binaries in this folder instead of building them.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

pub fn main(args: ClientArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let bin = match &args.bin_dir {
        Some(dir) => dir.canonicalize().with_context(|| format!("--bin-dir `{}`", dir.display()))?,
        None => procs::build_binaries()?,
    };
    let version = std::process::Command::new(kanade_testkit::nats_server_binary()).arg("--version").output()?;
    println!(
        "Run of {} on {}; {}, load average {:.2} at the start\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        procs::machine(),
        String::from_utf8_lossy(&version.stdout).trim(),
        procs::load_average(),
    );
    println!("{}", runtime.block_on(run(&args, &bin))?);
    Ok(())
}

/// CPU seconds and RSS of the processes measured.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    broker_cpu: f64,
    simulator_cpu: f64,
}

struct Meters {
    broker: u32,
    simulator: u32,
}

impl Meters {
    fn read(&self) -> Reading {
        Reading {
            at: Instant::now(),
            broker_cpu: procs::cpu_seconds(self.broker),
            simulator_cpu: procs::cpu_seconds(self.simulator),
        }
    }

    /// Broker and simulator CPU since `before`, in % of one core, and both RSS now, in MB.
    fn since(&self, before: Reading) -> String {
        let now = self.read();
        let seconds = now.at.duration_since(before.at).as_secs_f64().max(0.001);
        format!(
            "broker {:.1}% CPU, {:.0} MB; simulator {:.1}% CPU, {:.0} MB",
            100.0 * (now.broker_cpu - before.broker_cpu) / seconds,
            mb(procs::rss_bytes(self.broker)),
            100.0 * (now.simulator_cpu - before.simulator_cpu) / seconds,
            mb(procs::rss_bytes(self.simulator)),
        )
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

fn secs(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// Starts the simulator on `data` (kept between starts) and waits for its ready line; how long that took.
async fn simulator(bin: &Path, url: &str, n: usize, data: &Path, desk: bool) -> anyhow::Result<(Proc, Duration)> {
    let mut command = tokio::process::Command::new(bin.join("kanade-agent"));
    command
        .args(["simulate", "--count", &n.to_string(), "--connections", &n.div_ceil(100).max(1).to_string()])
        .args(["--heartbeat-interval", "30s", "--keep-data"])
        .args(kanade_testkit::fleet().simulator_args())
        .arg("--data-dir")
        .arg(data)
        .env("KANADE_NATS_URL", url)
        .env("KANADE_LOG", "warn");
    if desk {
        command.arg("--client-desk");
    }
    let started = Instant::now();
    let mut sim = Proc::spawn(command, &data.with_extension(format!("{}.log", u8::from(desk))))?;
    sim.ready_line(Duration::from_secs(600)).await.context("the simulator did not get ready")?;
    Ok((sim, started.elapsed()))
}

/// Waits until every PC's `notices.json` in `data` holds every one of `ids`; how long that took from `since`.
async fn until_kept(data: &Path, pcs: &[PcId], ids: &[NoticeId], since: Instant) -> anyhow::Result<Duration> {
    let mut waiting: HashSet<&PcId> = pcs.iter().collect();
    loop {
        waiting.retain(|pc| {
            let kept = std::fs::read_to_string(data.join(pc.as_str()).join("notices.json")).unwrap_or_default();
            !ids.iter().all(|id| kept.contains(id.as_str()))
        });
        if waiting.is_empty() {
            return Ok(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(300) {
            bail!("{} of {} PCs do not keep the notifications after 5 minutes", waiting.len(), pcs.len());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn notice(text: &str) -> anyhow::Result<Notice> {
    let now = Utc::now();
    Ok(Notice {
        id: NoticeId::generate(),
        level: NoticeLevel::Info,
        text: text.to_owned(),
        from: Actor::new("bench")?,
        sent_at: now,
        expires_at: now + chrono::Duration::days(1),
    })
}

async fn run(args: &ClientArgs, bin: &Path) -> anyhow::Result<String> {
    let n = args.agents;
    let work = tempfile::tempdir()?;
    let nats = NatsServer::start_durable();
    let url = nats.url();
    let client = kanade_testkit::client(&url).await;
    let js = jetstream::new(client.clone());
    kanade_ops::jetstream::setup(&js, 1).await?;
    let fleet = kanade_testkit::fleet();
    fleet.push_trust(&client).await;
    let backend = fanout::start_backend_on(bin, &url, work.path(), None).await?;
    let http = reqwest::Client::new();
    let pcs: Vec<PcId> = (0..n).map(|i| kanade_agent::simulate::pc_id("sim-", i, n)).collect::<Result<_, _>>()?;
    let broker = nats.pid().context("no broker pid")?;
    let mut out = format!("### {n} simulated agents\n\n| step | figure |\n|---|---|\n");

    // The reference: no desk.
    let reference = PathBuf::from(format!("/dev/shm/kanade-bench-client-{}-ref", std::process::id()));
    std::fs::create_dir_all(&reference)?;
    eprintln!("bench: {n} agents without kanade-client's desk");
    let (sim, ready) = simulator(bin, &url, n, &reference, false).await?;
    fanout::wait_for_agents(&http, &backend.url, n).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let meters = Meters { broker, simulator: sim.pid };
    let before = meters.read();
    tokio::time::sleep(args.idle_window).await;
    out.push_str(&format!("| without the desk: simulator ready | {} |\n", secs(ready)));
    out.push_str(&format!("| without the desk: idle for {} | {} |\n", secs(args.idle_window), meters.since(before)));
    sim.stop(Duration::from_secs(60)).await;
    let _ = std::fs::remove_dir_all(&reference);

    // With the desk.
    let data = PathBuf::from(format!("/dev/shm/kanade-bench-client-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    eprintln!("bench: {n} agents with kanade-client's desk");
    let (sim, ready) = simulator(bin, &url, n, &data, true).await?;
    let meters = Meters { broker, simulator: sim.pid };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = meters.read();
    tokio::time::sleep(args.idle_window).await;
    out.push_str(&format!("| with the desk: simulator ready | {} |\n", secs(ready)));
    out.push_str(&format!("| with the desk: idle for {} | {} |\n", secs(args.idle_window), meters.since(before)));

    eprintln!("bench: a notification to every PC");
    let live = notice("The bench says hello to everyone.")?;
    let before = meters.read();
    let sent = Instant::now();
    kanade_ops::notify::publish(&client, fleet.signer(), &Target::All, &live).await?;
    let kept = until_kept(&data, &pcs, std::slice::from_ref(&live.id), sent).await?;
    out.push_str(&format!(
        "| one notification to all: every PC keeps it | {} ({}) |\n",
        secs(kept),
        meters.since(before)
    ));

    eprintln!("bench: {} notifications while the simulator is stopped", args.read_back);
    sim.stop(Duration::from_secs(60)).await;
    let mut missed = Vec::new();
    for k in 0..args.read_back {
        let notice = notice(&format!("Sent while you were away ({k})."))?;
        kanade_ops::notify::publish(&client, fleet.signer(), &Target::All, &notice).await?;
        missed.push(notice.id);
    }
    let restarted = Instant::now();
    let (sim, ready) = simulator(bin, &url, n, &data, true).await?;
    let meters = Meters { broker, simulator: sim.pid };
    let read_back = until_kept(&data, &pcs, &missed, restarted).await?;
    out.push_str(&format!(
        "| read-back of {} notifications after a restart: every PC keeps them | {} from the start (ready after {}) |\n",
        args.read_back,
        secs(read_back),
        secs(ready)
    ));

    eprintln!("bench: a job asking for consent, fired at every PC");
    let manifest = "id: bench-consent\nversion: \"1\"\ntarget:\n  all: true\nexecute:\n  shell: sh\n  script: 'true'\n  \
                    timeout: 30s\nclient:\n  title: Bench\n  consent:\n    message: The bench asks.\n    deadline: 1m\n";
    let created = http
        .post(format!("{}/api/jobs", backend.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "manifest": manifest }))
        .send()
        .await?;
    anyhow::ensure!(created.status().is_success(), "job create: {}", created.text().await?);
    let told = crate::perf::count_messages(&client, kanade_shared::subject::EVENTS_CONSENT_ALL.to_owned()).await?;
    let before = meters.read();
    let fired = Instant::now();
    let reply: serde_json::Value = http
        .post(format!("{}/api/exec/bench-consent", backend.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await?
        .json()
        .await?;
    let exec = reply["exec_id"].as_str().context("no exec id")?.to_owned();
    while told.load(Ordering::Relaxed) < n as u64 {
        if fired.elapsed() > Duration::from_secs(55) {
            bail!("{} of {n} PCs said they hold the run within 55 s", told.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_told = fired.elapsed();
    let events = js.get_stream(kanade_shared::resources::STREAM_EVENTS).await?;
    loop {
        let mut consumer: jetstream::consumer::PullConsumer = events
            .get_consumer(kanade_shared::resources::CONSUMER_CONSENT_PROJECTOR)
            .await
            .map_err(|err| anyhow::anyhow!("the consent projector's consumer: {err}"))?;
        let info = consumer.info().await.map_err(|err| anyhow::anyhow!("consumer info: {err}"))?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        if fired.elapsed() > Duration::from_secs(55) {
            bail!("the backend had not stored every held run within 55 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_stored = fired.elapsed();
    out.push_str(&format!(
        "| consent job fired at all: every PC says it holds the run | {} ({} messages; {}) |\n",
        secs(all_told),
        told.load(Ordering::Relaxed),
        meters.since(before)
    ));
    out.push_str(&format!("| … and the backend has stored where each stands (`runs_held`) | {} |\n", secs(all_stored)));
    let before = meters.read();
    loop {
        let view: serde_json::Value =
            http.get(format!("{}/api/executions/{exec}", backend.url)).bearer_auth(TOKEN).send().await?.json().await?;
        if view["results"].as_u64().unwrap_or(0) >= n as u64 {
            break;
        }
        if fired.elapsed() > Duration::from_secs(300) {
            bail!("not every held run ended within 5 minutes of the fire: {view}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out.push_str(&format!(
        "| … nobody answers: at the 1 min deadline every PC runs it; every result in | {} after the fire ({} from then to the last result) |\n",
        secs(fired.elapsed()),
        meters.since(before)
    ));
    sim.stop(Duration::from_secs(60)).await;
    let _ = std::fs::remove_dir_all(&data);
    backend.proc.stop(Duration::from_secs(10)).await;
    Ok(out)
}
