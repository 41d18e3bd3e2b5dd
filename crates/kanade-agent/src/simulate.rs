//! The fleet simulator: many agents in one process over the real agent code — the same subscriptions, gate,
//! ledger, outbox, result path, heartbeats and ping — with only the script executor replaced by
//! [`Emulated`](crate::executor::Emulated). Agents share a few connections, so 10,000 fit on one machine; each has its
//! own pc_id (`sim-00001`, ...) and its own data dir.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kanade_shared::config::{AgentConfig, DEFAULT_OUTPUT_LIMIT_BYTES, NatsConfig};
use kanade_shared::{GroupName, PcId};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::executor::{Emulated, Executor};
use crate::heartbeat::HeartbeatSource;

/// How many request timeouts the simulator waits for the server to confirm each connection's subscriptions.
const READY_ATTEMPTS: u32 = 6;

/// `kanade-agent simulate`: run many emulated agents in this process.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// How many agents.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
    /// Prefix of the agents' pc_ids, followed by a zero-padded number from 1.
    #[arg(long, default_value = "sim-")]
    pub id_prefix: String,
    /// Groups: `g1,g2` puts every agent in both; `canary:1%,wave1:20%,wave2:rest` splits the agents in order.
    #[arg(long, default_value = "", value_parser = GroupSpread::parse)]
    pub groups: GroupSpread,
    /// How long each emulated script runs.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub exec_time: Duration,
    /// The exit code each emulated script returns.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub exit_code: i32,
    /// Bytes of stdout each emulated script prints.
    #[arg(long, default_value_t = 64)]
    pub output_bytes: usize,
    /// NATS connections the agents share [default: one per 100 agents].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: Option<u32>,
    /// Longest random wait before an agent reads back missed commands after a (re)connect.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub catch_up_jitter: Duration,
    /// Heartbeat interval of every agent.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Where the agents' data dirs go [default: a fresh dir under /dev/shm (tmpfs, as if each agent had its own
    /// disk), else under the temp dir]. Removed at exit unless --keep-data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the agents' data dirs at exit.
    #[arg(long)]
    pub keep_data: bool,
    /// Append each emulated run's exec id to `<data-dir>/<pc_id>/runs.log` as it starts (for counting runs).
    #[arg(long)]
    pub record_runs: bool,
    /// Software items in each agent's made-up inventory; 0 turns inventory off.
    #[arg(long, default_value_t = 0)]
    pub inventory_items: usize,
    /// Software items that change with every inventory after the first.
    #[arg(long, default_value_t = 3)]
    pub inventory_churn: usize,
    /// How often each agent reports inventory.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub inventory_interval: Duration,
    /// Longest random wait before an agent's first inventory, and added to each interval.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub inventory_jitter: Duration,
    /// How often each agent sends a performance rollup (made-up figures); 0s for none.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub host_perf_interval: Duration,
    /// Give each agent kanade-client's desk, without a socket: it takes notifications (kept in its data dir) and
    /// holds runs that ask for consent, which nobody answers, until their deadline.
    #[arg(long)]
    pub client_desk: bool,
    /// How often a watched agent sends live performance samples.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub perf_interval: Duration,
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "KANADE_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Token for the NATS server.
    #[arg(long, env = "KANADE_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// The simulator's NATS credential (`simulator.creds` from `kanade security init`).
    #[arg(long, env = "KANADE_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// The fleet's trust root (the key in `trust-root.pub`): every simulated agent checks command signatures
    /// against the trust list it signed, as a real one does. Without it every command is refused.
    #[arg(long, env = "KANADE_TRUST_ROOT")]
    pub trust_root: Option<kanade_shared::authority::PublicKey>,
    /// The fleet's CA certificate: TLS is required and pinned to it.
    #[arg(long, env = "KANADE_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Connect without TLS (a development broker only).
    #[arg(long)]
    pub insecure: bool,
}

/// How agents are put into groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupSpread(Vec<(GroupName, Share)>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Share {
    /// Every agent.
    All,
    /// This percentage of the agents, taken in order after the shares before it.
    Percent(f64),
    /// Whatever the percentages left.
    Rest,
}

impl GroupSpread {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        let mut percent_total = 0.0;
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, share) = match item.split_once(':') {
                None => (item, Share::All),
                Some((name, "rest")) => (name, Share::Rest),
                Some((name, pct)) => {
                    let value: f64 = pct
                        .strip_suffix('%')
                        .and_then(|v| v.parse().ok())
                        .filter(|v: &f64| v.is_finite() && *v > 0.0 && *v <= 100.0)
                        .ok_or_else(|| format!("`{item}`: a share is `N%` (0 < N <= 100) or `rest`"))?;
                    percent_total += value;
                    (name, Share::Percent(value))
                }
            };
            let name = GroupName::new(name).map_err(|e| e.to_string())?;
            out.push((name, share));
        }
        if percent_total > 100.0 + f64::EPSILON {
            return Err(format!("the shares add up to {percent_total}%, more than 100%"));
        }
        if out.iter().filter(|(_, s)| *s == Share::Rest).count() > 1 {
            return Err("only one group can take the `rest`".into());
        }
        Ok(Self(out))
    }

    /// The groups of each of `count` agents, in pc_id order.
    pub fn assign(&self, count: usize) -> Vec<Vec<GroupName>> {
        let mut groups = vec![Vec::new(); count];
        let mut next = 0;
        for (name, share) in &self.0 {
            if let Share::Percent(pct) = share {
                // Rounded, but a non-zero share of a non-empty fleet gets at least one agent.
                let n = ((count as f64 * pct / 100.0).round() as usize).max(1).min(count - next.min(count));
                for agent in groups.iter_mut().skip(next).take(n) {
                    agent.push(name.clone());
                }
                next += n;
            }
        }
        for (name, share) in &self.0 {
            match share {
                Share::All => groups.iter_mut().for_each(|g| g.push(name.clone())),
                Share::Rest => groups.iter_mut().skip(next).for_each(|g| g.push(name.clone())),
                Share::Percent(_) => {}
            }
        }
        for agent in &mut groups {
            agent.sort();
            agent.dedup();
        }
        groups
    }
}

/// The pc_id of agent `index` (from 0) of `count`: `sim-00001`, ...
pub fn pc_id(prefix: &str, index: usize, count: usize) -> Result<PcId, kanade_shared::IdError> {
    let width = count.to_string().len().max(5);
    PcId::new(format!("{prefix}{:0width$}", index + 1))
}

/// A running simulation.
pub struct Simulation {
    pub count: usize,
    pub connections: usize,
    pub data_dir: PathBuf,
    keep_data: bool,
    clients: Vec<async_nats::Client>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Simulation {
    /// Starts every agent and returns once all of them are subscribed on the server.
    pub async fn start(args: &SimulateArgs) -> anyhow::Result<Self> {
        let count = usize::try_from(args.count)?;
        let connections = args.connections.map_or_else(|| count.div_ceil(100), |c| c as usize).clamp(1, count);
        if args.output_bytes > DEFAULT_OUTPUT_LIMIT_BYTES {
            bail!("--output-bytes is more than the agent's output limit of {DEFAULT_OUTPUT_LIMIT_BYTES}");
        }
        let ids: Vec<PcId> = (0..count)
            .map(|i| pc_id(&args.id_prefix, i, count))
            .collect::<Result<_, _>>()
            .context("--id-prefix makes invalid pc_ids")?;
        let data_dir = match &args.data_dir {
            Some(dir) => dir.clone(),
            None => {
                let shm = PathBuf::from("/dev/shm");
                let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
                base.join(format!("kanade-sim-{}", std::process::id()))
            }
        };
        std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create `{}`", data_dir.display()))?;
        let urls = args.nats_url.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
        let nats = match &args.nats_ca {
            Some(ca) => NatsConfig::secure(urls, args.nats_creds.clone(), ca.clone()),
            None if args.insecure => NatsConfig::insecure(urls),
            None => bail!("--nats-ca is required (the fleet's CA), or --insecure for a development broker without TLS"),
        };
        let nats = NatsConfig { token: args.nats_token.clone(), ..nats };
        // One connection carries many agents, so it cannot be any one of them: the simulator's credential covers
        // every PC's agent subjects, with an inbox of its own (BENCHMARKS.md says so beside the figures).
        let identity = crate::connection::Identity {
            creds: args.nats_creds.clone(),
            inbox_prefix: kanade_shared::security::permissions::SIMULATOR_INBOX_PREFIX.to_owned(),
        };

        let mut clients = Vec::with_capacity(connections);
        let mut connects = Vec::with_capacity(connections);
        for i in 0..connections {
            let (client, watch) = crate::connection::connect(&nats, &format!("kanade-sim {i}"), &identity)
                .await
                .context("cannot set up a NATS connection")?;
            clients.push(client);
            connects.push(watch);
        }

        let heartbeat = Arc::new(HeartbeatSource::new());
        let emulated = Emulated {
            exec_time: args.exec_time,
            exit_code: args.exit_code,
            output_bytes: args.output_bytes,
            record_runs: None,
        };
        let ready = Arc::new(Semaphore::new(0));
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        for (index, (pc, groups)) in ids.into_iter().zip(args.groups.assign(count)).enumerate() {
            let agent_dir = data_dir.join(pc.as_str());
            let config = AgentConfig {
                hostname: pc.to_string(),
                data_dir: Some(agent_dir.clone()),
                pc_id: pc,
                groups,
                heartbeat_interval: args.heartbeat_interval,
                output_limit_bytes: DEFAULT_OUTPUT_LIMIT_BYTES,
                output_max_bytes: kanade_shared::config::DEFAULT_OUTPUT_MAX_BYTES,
                catch_up_jitter: args.catch_up_jitter,
                max_local_concurrent: kanade_shared::config::DEFAULT_MAX_LOCAL_CONCURRENT,
                outbox_max_bytes: kanade_shared::config::DEFAULT_OUTBOX_MAX_BYTES,
                nats: nats.clone(),
                log: kanade_shared::config::LogConfig::default(),
                inventory: kanade_shared::config::InventoryConfig {
                    enabled: args.inventory_items > 0,
                    interval: args.inventory_interval,
                    jitter: args.inventory_jitter.min(args.inventory_interval),
                },
                perf: kanade_shared::config::PerfConfig {
                    interval: args.perf_interval,
                    rollup_interval: args.host_perf_interval,
                    top: kanade_shared::perf::DEFAULT_TOP,
                },
                enroll_token: None,
                bootstrap_creds: None,
                trust_root: args.trust_root,
                run_as_user: None,
                client_socket: None,
            };
            let inventory = crate::inventory::Source::Synthetic(crate::inventory::synthetic::SyntheticPc::new(
                config.pc_id.as_str(),
                args.inventory_items,
                args.inventory_churn,
            ));
            let slot = index % connections;
            let parts = crate::Parts {
                executor: Executor::Emulated(Emulated {
                    record_runs: args.record_runs.then(|| agent_dir.join("runs.log")),
                    ..emulated.clone()
                }),
                heartbeat: heartbeat.clone(),
                client: clients[slot].clone(),
                connects: connects[slot].clone(),
                ready: Some(ready.clone()),
                // Agents sharing a process never replace its executable.
                update: None,
                // Simulated agents log with the simulator, to its stderr.
                log_files: None,
                inventory,
                perf: crate::perf::Source::Synthetic(crate::perf::synthetic::SyntheticHost::new()),
                // They share the simulator's credential, which nothing renews.
                renewal: None,
                client_desk: args.client_desk.then(|| {
                    crate::client_ipc::ClientDesk::new(
                        config.pc_id.clone(),
                        config.hostname.clone(),
                        crate::notices::Notices::open(Some(&agent_dir)),
                        crate::consent::ConsentBook::open(Some(&agent_dir), crate::consent::Presence::Always),
                    )
                }),
            };
            let task = crate::serve(config, parts, shutdown.clone());
            tasks.spawn(async move {
                if let Err(err) = task.await {
                    tracing::error!(error = format!("{err:#}"), "simulated agent failed");
                }
            });
        }
        tasks.close();
        let all = u32::try_from(count)?;
        let _ = ready.acquire_many(all).await.context("simulated agents did not start")?;
        // Subscribed means the server has the subscriptions, not just our socket: one round trip per connection.
        // Agents that started first are already catching up (and a fresh fleet replays every command `EXEC` still
        // holds), so a connection may be busy for longer than one request's timeout: a timeout is asked again, up
        // to `READY_ATTEMPTS` times, before the simulation counts as failed.
        for client in &clients {
            let mut attempt = 1;
            while let Err(err) = crate::connection::round_trip(client).await {
                if attempt == READY_ATTEMPTS || err.kind() != async_nats::RequestErrorKind::TimedOut {
                    return Err(err).context("the server did not confirm the subscriptions");
                }
                tracing::warn!(attempt, error = %err, "the server has not confirmed the subscriptions yet; asking again");
                attempt += 1;
            }
        }
        Ok(Self { count, connections, data_dir, keep_data: args.keep_data, clients, shutdown, tasks })
    }

    /// Stops every agent (each finishes its runs and drains its outbox as a real one would) and cleans up.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.wait().await;
        for client in &self.clients {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.flush()).await;
        }
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(groups: &[GroupName]) -> Vec<&str> {
        groups.iter().map(GroupName::as_str).collect()
    }

    #[test]
    fn shares_split_the_fleet_in_order() {
        let spread = GroupSpread::parse("canary:1%,wave1:20%,wave2:rest,all").unwrap();
        let groups = spread.assign(200);
        assert_eq!(names(&groups[0]), ["all", "canary"]);
        assert_eq!(names(&groups[1]), ["all", "canary"]);
        assert_eq!(names(&groups[2]), ["all", "wave1"]);
        assert_eq!(names(&groups[41]), ["all", "wave1"]);
        assert_eq!(names(&groups[42]), ["all", "wave2"]);
        assert_eq!(names(&groups[199]), ["all", "wave2"]);
        let canary = groups.iter().filter(|g| g.iter().any(|n| n.as_str() == "canary")).count();
        assert_eq!(canary, 2);
    }

    #[test]
    fn a_tiny_fleet_still_gets_its_canary() {
        let groups = GroupSpread::parse("canary:1%,rest:rest").unwrap().assign(3);
        assert_eq!(names(&groups[0]), ["canary"]);
        assert_eq!(names(&groups[2]), ["rest"]);
    }

    #[test]
    fn bad_spreads_are_refused() {
        assert!(GroupSpread::parse("a:60%,b:50%").unwrap_err().contains("more than 100%"));
        assert!(GroupSpread::parse("a:rest,b:rest").unwrap_err().contains("only one"));
        assert!(GroupSpread::parse("a:0%").unwrap_err().contains("0 < N"));
        assert!(GroupSpread::parse("a:x%").is_err());
        assert!(GroupSpread::parse("Bad:10%").unwrap_err().contains("group name `Bad`"));
        assert_eq!(GroupSpread::parse("").unwrap(), GroupSpread::default());
    }

    #[test]
    fn pc_ids_are_zero_padded_from_one() {
        assert_eq!(pc_id("sim-", 0, 10).unwrap().as_str(), "sim-00001");
        assert_eq!(pc_id("sim-", 9_999, 10_000).unwrap().as_str(), "sim-10000");
        assert_eq!(pc_id("s", 0, 100_000).unwrap().as_str(), "s000001");
        assert!(pc_id("Bad-", 0, 1).is_err());
    }
}
