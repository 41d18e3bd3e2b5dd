//! `kanade-bench identities`: what every agent having its own NATS identity (issue #18) costs the broker. The same
//! N agents — the real agent code with the simulator's emulated scripts, as `kanade-agent simulate` runs them — are
//! measured in three setups, each on a fresh broker (operator mode, TLS), in the same invocation: each agent on its
//! own connection with its own credential and inbox prefix, as real PCs connect; all of them sharing a few
//! connections with the simulator's credential, as the fleet simulator does; and, to tell the cost of the
//! connections from that of the credentials, each on its own connection but all with the simulator's credential.
//! For each: how long until every
//! connection is up (TLS and auth) and every agent subscribed, the broker's CPU to get there, the idle fleet's broker
//! CPU and RSS, and a broadcast's fan-out with every result back, with the broker's CPU per broadcast. The agents run
//! in a process of their own (`kanade-bench identity-agents`); the broker's figures come from `/proc/<pid>`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream;
use futures::StreamExt as _;
use kanade_agent::connection::{self, Identity};
use kanade_shared::config::{AgentConfig, DEFAULT_OUTPUT_LIMIT_BYTES, NatsConfig};
use kanade_shared::security::permissions::{SIMULATOR_INBOX_PREFIX, agent_inbox_prefix};
use kanade_shared::subject::{self, Target};
use kanade_shared::{ExecId, GroupName, JobId, PcId};
use kanade_testkit::NatsServer;
use serde::Serialize;

use crate::procs::{self, Proc};
use crate::stats::median_by_key;

/// The agents are spread over this many groups (`g0` ...), so each subscribes to one group's commands as well.
const GROUPS: usize = 10;

/// Request timeouts the agents' process waits for the broker to confirm each connection's subscriptions (as the
/// simulator does: a connection busy with the fleet's start-up catch-up may take longer than one).
const READY_ATTEMPTS: u32 = 6;

#[derive(Debug, Clone, clap::Args)]
pub struct IdentitiesArgs {
    /// Agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Connections the agents share in the reference setup (with the simulator's credential).
    #[arg(long, default_value_t = 10)]
    shared_connections: usize,
    /// Rounds: each measures both setups, each on a fresh broker, the order alternating between rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Broadcasts measured per setup and round, after one warm-up; the round's figure is their median.
    #[arg(long, default_value_t = 3)]
    broadcasts: usize,
    /// How long to measure the connected, idle fleet (heartbeats every 30 s: one round of them).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    idle_window: Duration,
    /// After every agent is subscribed, how long to let the start-up catch-up and first heartbeats finish.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// The agents' catch-up jitter (as `kanade-agent simulate --catch-up-jitter`).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    catch_up_jitter: Duration,
    /// Start the broker with `jetstream.sync_interval: always`, as deployed (default: nats-server's default).
    #[arg(long)]
    sync_always: bool,
    /// Where the built binaries are [default: build the release binaries].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also write every measurement as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// How the agents reach the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Setup {
    /// A few connections shared by all, with the simulator's credential.
    Shared,
    /// One connection per agent, all with the simulator's credential.
    EachSimulator,
    /// One connection per agent, each with its own credential.
    Own,
}

impl Setup {
    const ALL: [Self; 3] = [Self::Shared, Self::EachSimulator, Self::Own];

    fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::EachSimulator => "each-simulator",
            Self::Own => "own",
        }
    }
}

/// One setup in one round.
#[derive(Debug, Clone, Serialize)]
struct Measured {
    setup: Setup,
    round: usize,
    connections: usize,
    /// From the first connect until every connection is up (TLS handshake, auth), in the agents' process.
    connect_ms: f64,
    /// The median connection's time to be up.
    connect_p50_ms: f64,
    /// From the first connect until every agent is subscribed and the broker has confirmed it.
    subscribed_ms: f64,
    /// The broker's CPU from the agents' start until settled (connects, subscriptions, catch-up, first heartbeats).
    start_broker_cpu_s: f64,
    /// The agents' process's CPU for the same.
    start_agents_cpu_s: f64,
    /// The broker's RSS with the fleet connected and settled.
    broker_rss_mb: f64,
    /// The broker's CPU over the idle window, in percent of one core.
    idle_broker_cpu_pct: f64,
    /// Each measured broadcast until every agent's result was seen, in ms.
    broadcasts_ms: Vec<f64>,
    /// Their median.
    broadcast_ms: f64,
    /// The broker's CPU per broadcast (each with 0.5 s after the last result, for the acks).
    broadcast_broker_cpu_s: f64,
    /// The broker's RSS after the broadcasts.
    broker_rss_after_mb: f64,
    /// The agents' process's RSS after the broadcasts.
    agents_rss_mb: f64,
    /// 1-minute load average before and after.
    load: (f64, f64),
    /// Permission violations in the broker's log (`Subscription Violation`, `Publish Violation`), and the first few
    /// distinct ones.
    broker_violations: usize,
    violation_samples: Vec<String>,
    /// The same as the agents heard them (`Permissions Violation` errors in their log).
    agent_violations: usize,
}

/// Builds (or takes) the binaries, then measures.
pub fn main(args: IdentitiesArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let bin = match &args.bin_dir {
        Some(dir) => dir.canonicalize().with_context(|| format!("--bin-dir `{}`", dir.display()))?,
        None => procs::build_binaries()?,
    };
    runtime.block_on(run(&args, &bin))
}

/// The agents' pc ids and groups: `id-00001` in `g0`, `id-00002` in `g1`, ...
fn fleet_ids(n: usize) -> anyhow::Result<Vec<(PcId, GroupName)>> {
    (0..n)
        .map(|i| Ok((kanade_agent::simulate::pc_id("id-", i, n)?, GroupName::new(format!("g{}", i % GROUPS))?)))
        .collect()
}

fn creds_path(dir: &Path, pc: &PcId) -> PathBuf {
    dir.join(format!("{pc}.creds"))
}

async fn run(args: &IdentitiesArgs, bin: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0 && args.broadcasts > 0, "--rounds and --broadcasts must be at least 1");
    let n = args.agents;
    let work = tempfile::tempdir()?;
    let version = std::process::Command::new(kanade_testkit::nats_server_binary()).arg("--version").output()?;
    let header = format!(
        "{}; {}, {}, operator mode with TLS; {n} agents, {} shared connections; started {} UTC, load {:.2}",
        procs::machine(),
        String::from_utf8_lossy(&version.stdout).trim(),
        if args.sync_always { "sync_interval: always" } else { "default sync" },
        args.shared_connections,
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        procs::load_average(),
    );
    eprintln!("bench: {header}");

    // Every agent's own credential, issued as the backend issues one at enrolment (the fleet's agent signing key,
    // the PC's name and group tags).
    let creds = work.path().join("creds");
    std::fs::create_dir_all(&creds)?;
    let fleet = kanade_testkit::fleet();
    let issuing = Instant::now();
    for (pc, group) in fleet_ids(n)? {
        fleet.issue_agent(
            pc.as_str(),
            &[group.as_str()],
            kanade_testkit::security::TEST_CREDENTIAL_TTL,
            &creds_path(&creds, &pc),
        );
    }
    let issued = issuing.elapsed();
    eprintln!("bench: {n} agent credentials issued in {} ms", issued.as_millis());

    let mut all = Vec::new();
    for round in 0..args.rounds {
        // Each round starts with the next setup, so drift on a shared machine does not always hit the same one.
        for k in 0..Setup::ALL.len() {
            let setup = Setup::ALL[(round + k) % Setup::ALL.len()];
            eprintln!("bench: round {}, {} connections", round + 1, setup.name());
            let measured = one(args, bin, setup, round, &creds, work.path())
                .await
                .with_context(|| format!("round {}, {}", round + 1, setup.name()))?;
            eprintln!("bench:   {}", serde_json::to_string(&measured)?);
            all.push(measured);
        }
    }

    println!("\n{header}; ended with load {:.2}\n", procs::load_average());
    println!(
        "{n} agent credentials issued (ed25519 key, user JWT signed by the agent signing key, file written): {} ms\n",
        issued.as_millis()
    );
    print_table(&all, n);
    if let Some(path) = &args.json {
        let doc = serde_json::json!({ "machine": header, "issued_ms": issued.as_millis() as u64, "runs": all });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}

/// One setup on a fresh broker.
async fn one(
    args: &IdentitiesArgs,
    bin: &Path,
    setup: Setup,
    round: usize,
    creds: &Path,
    work: &Path,
) -> anyhow::Result<Measured> {
    let n = args.agents;
    let fleet = kanade_testkit::fleet();
    let nats = if args.sync_always { NatsServer::start_durable() } else { NatsServer::start() };
    let url = nats.url();
    let client = kanade_testkit::client(&url).await;
    let js = jetstream::new(client.clone());
    kanade_ops::jetstream::setup(&js, 1).await?;
    kanade_testkit::fleet().push_trust(&client).await;
    let broker = nats.pid().context("no broker pid")?;

    let data =
        PathBuf::from(format!("/dev/shm/kanade-bench-identities-{}-{round}-{}", std::process::id(), setup.name()));
    std::fs::create_dir_all(&data)?;
    let log = work.join(format!("agents-{round}-{}.log", setup.name()));
    let mut command = tokio::process::Command::new(bin.join("kanade-bench"));
    command
        .args(["identity-agents", "--nats-url", &url, "--count", &n.to_string()])
        .args(["--catch-up-jitter", &humantime::format_duration(args.catch_up_jitter).to_string()])
        .arg("--nats-ca")
        .arg(fleet.ca())
        .arg("--data-dir")
        .arg(&data)
        // The connection module logs the broker's errors (a permission refused, say) at info.
        .env("KANADE_LOG", "warn,kanade_agent::connection=info");
    match setup {
        Setup::Own => command.arg("--own-creds-dir").arg(creds),
        Setup::Shared | Setup::EachSimulator => {
            let connections = if setup == Setup::Shared { args.shared_connections } else { n };
            command
                .arg("--nats-creds")
                .arg(fleet.file(kanade_ops::security::SIMULATOR_CREDS))
                .args(["--connections", &connections.to_string()])
        }
    };

    let load_before = procs::load_average();
    let broker_cpu = procs::cpu_seconds(broker);
    let mut agents = Proc::spawn(command, &log)?;
    let ready = agents.ready_line(Duration::from_secs(600)).await.context("the agents did not get ready")?;
    tokio::time::sleep(args.settle).await;
    let start_broker_cpu_s = procs::cpu_seconds(broker) - broker_cpu;
    let start_agents_cpu_s = agents.cpu_seconds();
    let broker_rss = procs::rss_bytes(broker);

    let idle_cpu = procs::cpu_seconds(broker);
    let idle_started = Instant::now();
    tokio::time::sleep(args.idle_window).await;
    let idle_broker_cpu_pct =
        (procs::cpu_seconds(broker) - idle_cpu) / idle_started.elapsed().as_secs_f64().max(1e-9) * 100.0;

    let job = JobId::new("bench-identities")?;
    broadcast(&client, &js, &job, n).await.context("warm-up broadcast")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let broadcast_cpu = procs::cpu_seconds(broker);
    let mut broadcasts_ms = Vec::new();
    for _ in 0..args.broadcasts {
        let took = broadcast(&client, &js, &job, n).await?;
        broadcasts_ms.push(took.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let broadcast_broker_cpu_s = (procs::cpu_seconds(broker) - broadcast_cpu) / args.broadcasts as f64;
    let broker_rss_after = procs::rss_bytes(broker);
    let agents_rss = agents.rss_bytes();
    agents.stop(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&data);
    let (broker_violations, violation_samples) = violations(&nats.store_dir().join("nats.log"), "violation");
    let (agent_violations, _) = violations(&log, "permissions violation");
    drop(nats);

    let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let field = |key: &str| ready[key].as_f64().unwrap_or(0.0);
    Ok(Measured {
        setup,
        round: round + 1,
        connections: ready["connections"].as_u64().unwrap_or(0) as usize,
        connect_ms: field("connect_ms"),
        connect_p50_ms: field("connect_p50_ms"),
        subscribed_ms: field("subscribed_ms"),
        start_broker_cpu_s,
        start_agents_cpu_s,
        broker_rss_mb: mb(broker_rss),
        idle_broker_cpu_pct,
        broadcast_ms: median_by_key(broadcasts_ms.clone(), |ms| (ms * 1000.0) as u64),
        broadcasts_ms,
        broadcast_broker_cpu_s,
        broker_rss_after_mb: mb(broker_rss_after),
        agents_rss_mb: mb(agents_rss),
        load: (load_before, procs::load_average()),
        broker_violations,
        violation_samples,
        agent_violations,
    })
}

/// One command published into `EXEC` for every agent; returns once every agent's result was seen on the broker.
async fn broadcast(
    client: &async_nats::Client,
    js: &jetstream::Context,
    job: &JobId,
    n: usize,
) -> anyhow::Result<Duration> {
    let exec = ExecId::generate();
    let mut results = client.subscribe(format!("results.*.{exec}")).await?;
    let body = serde_json::to_vec(&crate::fanout::bench_command(&exec, job))?;
    let started = Instant::now();
    js.send_publish(
        subject::command(&Target::All, job),
        crate::fanout::signed(&Target::All, job, body).message_id(exec.as_str()),
    )
    .await?
    .await?;
    let mut seen = HashSet::new();
    while seen.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(120), results.next())
            .await
            .with_context(|| format!("{} of {n} results after 2 minutes", seen.len()))?
            .context("the results subscription ended")?;
        if let Some(pc) = message.subject.split('.').nth(1) {
            seen.insert(pc.to_owned());
        }
    }
    Ok(started.elapsed())
}

/// The lines of `log` that mention `what` (in lower case): how many, and up to five distinct ones, each from its
/// last two ` - ` parts on (the broker's words, `Subscription Violation - Subject "x", SID 1`, without the time and
/// the client's name).
fn violations(log: &Path, what: &str) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.to_ascii_lowercase().contains(what)).collect();
    let mut samples: Vec<String> = Vec::new();
    for line in &lines {
        let from = line.rmatch_indices(" - ").nth(1).map_or(0, |(at, _)| at + 3);
        let said = line[from..].to_owned();
        if samples.len() < 5 && !samples.contains(&said) {
            samples.push(said);
        }
    }
    (lines.len(), samples)
}

/// One figure of a measurement, as a table row shows it.
type Figure = fn(&Measured) -> f64;

fn print_table(all: &[Measured], n: usize) {
    let of = |setup: Setup, value: Figure| -> Vec<f64> { all.iter().filter(|m| m.setup == setup).map(value).collect() };
    let median = |mut values: Vec<f64>| -> f64 {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    let cell = |values: Vec<f64>, decimals: usize| -> String {
        let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let m = median(values);
        format!("{m:.decimals$} ({lo:.decimals$}-{hi:.decimals$})")
    };
    let rows: [(String, Figure, usize); 12] = [
        ("connections".to_owned(), |m| m.connections as f64, 0),
        ("all connections up: TLS + auth (ms)".to_owned(), |m| m.connect_ms, 0),
        ("the median connection up (ms)".to_owned(), |m| m.connect_p50_ms, 0),
        (format!("all {n} agents subscribed, confirmed by the broker (ms)"), |m| m.subscribed_ms, 0),
        ("broker CPU from start to settled (s)".to_owned(), |m| m.start_broker_cpu_s, 2),
        ("broker RSS, fleet connected (MB)".to_owned(), |m| m.broker_rss_mb, 1),
        ("broker CPU idle, % of one core".to_owned(), |m| m.idle_broker_cpu_pct, 2),
        (format!("broadcast -> all {n} results back (ms)"), |m| m.broadcast_ms, 0),
        ("broker CPU per broadcast (s)".to_owned(), |m| m.broadcast_broker_cpu_s, 3),
        ("broker RSS after the broadcasts (MB)".to_owned(), |m| m.broker_rss_after_mb, 1),
        ("agents' process CPU from start to settled (s)".to_owned(), |m| m.start_agents_cpu_s, 2),
        ("agents' process RSS after the broadcasts (MB)".to_owned(), |m| m.agents_rss_mb, 1),
    ];
    let rounds = all.iter().filter(|m| m.setup == Setup::Own).count();
    let shared_connections = all.iter().find(|m| m.setup == Setup::Shared).map_or(0, |m| m.connections);
    println!(
        "| {n} agents, median of {rounds} rounds (min-max) | {shared_connections} shared connections, simulator \
         credential | {n} connections, simulator credential | {n} connections, own credential each | own / shared | \
         own / {n} simulator |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}x", a / b) } else { "—".to_owned() };
    for (what, value, decimals) in rows {
        let (shared, each, own) = (of(Setup::Shared, value), of(Setup::EachSimulator, value), of(Setup::Own, value));
        let (s, e, o) = (median(shared.clone()), median(each.clone()), median(own.clone()));
        println!(
            "| {what} | {} | {} | {} | {} | {} |",
            cell(shared, decimals),
            cell(each, decimals),
            cell(own, decimals),
            ratio(o, s),
            ratio(o, e)
        );
    }
    for m in all {
        println!(
            "\nround {} {}: broadcasts {:?} ms; load {:.2} -> {:.2}; permission violations: broker {}, agents {}{}",
            m.round,
            m.setup.name(),
            m.broadcasts_ms.iter().map(|ms| ms.round() as u64).collect::<Vec<_>>(),
            m.load.0,
            m.load.1,
            m.broker_violations,
            m.agent_violations,
            if m.violation_samples.is_empty() { String::new() } else { format!(": {:?}", m.violation_samples) }
        );
    }
}

/// `kanade-bench identity-agents`: the agents of one setup, in a process of their own.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentsArgs {
    #[arg(long)]
    nats_url: String,
    /// The fleet's CA: TLS is required and pinned to it.
    #[arg(long)]
    nats_ca: PathBuf,
    #[arg(long)]
    count: usize,
    /// Each agent on its own connection, with the credential `<dir>/<pc_id>.creds` and its own inbox prefix.
    #[arg(long)]
    own_creds_dir: Option<PathBuf>,
    /// Otherwise: the credential the shared connections use (the simulator's).
    #[arg(long)]
    nats_creds: Option<PathBuf>,
    /// Otherwise: how many connections the agents share.
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// The agents' data dirs go here.
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    catch_up_jitter: Duration,
}

/// Connects, starts every agent over the real agent code, prints a JSON line with the timings once every agent is
/// subscribed, and runs until killed.
#[allow(clippy::print_stdout)]
pub async fn agents(args: AgentsArgs) -> anyhow::Result<()> {
    let ids = fleet_ids(args.count)?;
    let nats = NatsConfig::secure(vec![args.nats_url.clone()], None, args.nats_ca.clone());
    // Who each connection is: an agent (its own credential and inbox), or the simulator shared by many.
    let plan: Vec<(String, Identity)> = match (&args.own_creds_dir, &args.nats_creds) {
        (Some(dir), _) => ids
            .iter()
            .map(|(pc, _)| {
                let identity =
                    Identity { creds: Some(creds_path(dir, pc)), inbox_prefix: agent_inbox_prefix(pc.as_str()) };
                (format!("kanade-agent {pc}"), identity)
            })
            .collect(),
        (None, Some(creds)) => (0..args.connections.clamp(1, args.count.max(1)))
            .map(|i| {
                let identity = Identity { creds: Some(creds.clone()), inbox_prefix: SIMULATOR_INBOX_PREFIX.to_owned() };
                (format!("kanade-sim {i}"), identity)
            })
            .collect(),
        (None, None) => bail!("--own-creds-dir or --nats-creds is required"),
    };

    // Every connection at once, as a fleet coming online together (or back after a broker restart) would.
    let started = Instant::now();
    let connected =
        futures::future::try_join_all(plan.iter().map(|(name, identity)| connection::connect(&nats, name, identity)))
            .await
            .context("cannot set up the NATS connections")?;
    let up = tokio::time::timeout(
        Duration::from_secs(300),
        futures::future::join_all(connected.iter().map(|(_, connects)| {
            let mut connects = connects.clone();
            async move {
                let _ = connects.wait_for(|n| *n > 0).await;
                started.elapsed()
            }
        })),
    )
    .await
    .context("not every connection was up within 5 minutes")?;
    let connect = up.iter().max().copied().unwrap_or_default();
    let connect_p50 = median_by_key(up, |d| *d);

    let heartbeat = Arc::new(kanade_agent::heartbeat::HeartbeatSource::new());
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    for (index, (pc, group)) in ids.into_iter().enumerate() {
        let own = args.own_creds_dir.as_deref().map(|dir| creds_path(dir, &pc));
        let renewal = match &own {
            Some(path) => {
                let held = kanade_agent::credential::read_for(path, &pc)?;
                Some(kanade_agent::credential::Renewal::new(path.clone(), pc.clone(), held))
            }
            None => None,
        };
        let (client, connects) = &connected[index % connected.len()];
        let agent_dir = args.data_dir.join(pc.as_str());
        let config = AgentConfig {
            hostname: pc.to_string(),
            data_dir: Some(agent_dir),
            groups: vec![group],
            heartbeat_interval: Duration::from_secs(30),
            output_limit_bytes: DEFAULT_OUTPUT_LIMIT_BYTES,
            output_max_bytes: kanade_shared::config::DEFAULT_OUTPUT_MAX_BYTES,
            catch_up_jitter: args.catch_up_jitter,
            max_local_concurrent: kanade_shared::config::DEFAULT_MAX_LOCAL_CONCURRENT,
            outbox_max_bytes: kanade_shared::config::DEFAULT_OUTBOX_MAX_BYTES,
            nats: NatsConfig { creds: own, ..nats.clone() },
            log: kanade_shared::config::LogConfig::default(),
            inventory: kanade_shared::config::InventoryConfig { enabled: false, ..Default::default() },
            perf: kanade_shared::config::PerfConfig { rollup_interval: Duration::ZERO, ..Default::default() },
            enroll_token: None,
            bootstrap_creds: None,
            trust_root: Some(kanade_testkit::fleet().trust_root()),
            run_as_user: None,
            client_socket: None,
            pc_id: pc,
        };
        let parts = kanade_agent::Parts {
            executor: kanade_agent::executor::Executor::Emulated(kanade_agent::executor::Emulated {
                exec_time: Duration::ZERO,
                exit_code: 0,
                output_bytes: 64,
                record_runs: None,
            }),
            heartbeat: heartbeat.clone(),
            client: client.clone(),
            connects: connects.clone(),
            ready: Some(ready.clone()),
            update: None,
            log_files: None,
            inventory: kanade_agent::inventory::Source::Synthetic(
                kanade_agent::inventory::synthetic::SyntheticPc::new(config.pc_id.as_str(), 0, 0),
            ),
            perf: kanade_agent::perf::Source::Synthetic(kanade_agent::perf::synthetic::SyntheticHost::new()),
            renewal,
            client_desk: None,
        };
        // Never cancelled: the benchmark kills this process.
        let task = kanade_agent::serve(config, parts, Default::default());
        tokio::spawn(async move {
            if let Err(err) = task.await {
                tracing::error!(error = format!("{err:#}"), "agent failed");
            }
        });
    }
    let _ = ready.acquire_many(u32::try_from(args.count)?).await.context("the agents did not start")?;
    for (client, _) in &connected {
        let mut attempt = 1;
        while let Err(err) = connection::round_trip(client).await {
            if attempt == READY_ATTEMPTS || err.kind() != async_nats::RequestErrorKind::TimedOut {
                return Err(err).context("the broker did not confirm the subscriptions");
            }
            attempt += 1;
        }
    }
    let subscribed = started.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "ready": args.count,
            "connections": connected.len(),
            "connect_ms": ms(connect),
            "connect_p50_ms": ms(connect_p50),
            "subscribed_ms": ms(subscribed),
        })
    );
    std::future::pending::<()>().await;
    Ok(())
}
