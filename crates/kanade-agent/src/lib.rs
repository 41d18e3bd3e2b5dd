//! kanade's endpoint agent. `run` connects to NATS (outbound only), answers pings, publishes heartbeats, takes
//! commands addressed to all agents, to its groups and to itself, runs them through the gate and the executor,
//! and hands every result to the on-disk outbox, which publishes it to `RESULTS`.
//!
//! This file only wires the parts together: [`main_loop`] turns every source into one event and handles it,
//! [`pipeline`] takes each command from claim to result, [`catchup`] reads back what was missed, [`ledger`] and
//! [`outbox`] keep what must survive a crash, and [`update`] replaces the agent's own binary.

pub mod authority;
pub mod catchup;
pub mod client_ipc;
pub mod connection;
pub mod consent;
pub mod credential;
pub mod executor;
pub mod gate;
pub mod heartbeat;
pub mod inventory;
pub mod jobstate;
pub mod ledger;
pub mod liveconfig;
pub mod logtail;
pub mod main_loop;
pub mod notices;
pub mod obs;
pub mod outbox;
pub mod output_text;
pub mod perf;
pub mod pipeline;
pub mod platform;
pub mod running;
pub mod simulate;
pub mod update;
mod version;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::{Client, jetstream};
use kanade_shared::config::AgentConfig;
use kanade_shared::resources::{KV_SCRIPT_CURRENT, KV_SCRIPT_STATUS, KV_TRUST, TRUST_KEY};
use kanade_shared::subject::{self, Target};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::version::{BUILD_VERSION, FAULT_FLAG, FAULT_PREFIX, VERSION_MARKER, broken_on_purpose, version};

use crate::executor::{Executor, OutputLimits, ScriptRunner};
use crate::heartbeat::{HeartbeatSource, Heartbeats, Malformed};
use crate::ledger::RunLedger;
use crate::main_loop::{MainLoop, Subscriptions};
use crate::outbox::Outbox;
use crate::pipeline::{Pipeline, PipelineParts};

/// How long a stopping agent waits to hand what it sent to the broker.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// The agent's own NATS credential in its data dir (written at enrolment, replaced at renewal), unless the config
/// names another (`nats.creds`).
pub const CREDS_FILE: &str = "agent.creds";

/// Runs the agent until `shutdown` is cancelled: its own connection, real scripts. `update` is the process's right
/// to replace its own executable (`main` has it; an agent in a test, sharing its process, does not).
pub async fn run(
    config: AgentConfig,
    shutdown: CancellationToken,
    update: Option<Arc<update::SelfUpdate>>,
) -> anyhow::Result<()> {
    run_logging_to(config, shutdown, update, None).await
}

/// [`run`], for an agent whose log goes to `log_files` (`--log-dir`), which it then serves on
/// `agents.<pc>.logs`; `None`: it logs to stderr only and says so.
pub async fn run_logging_to(
    mut config: AgentConfig,
    shutdown: CancellationToken,
    update: Option<Arc<update::SelfUpdate>>,
    log_files: Option<logtail::LogFiles>,
) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone().unwrap_or_else(|| kanade_shared::config::default_data_dir("agent"));
    config.data_dir = Some(data_dir.clone());
    // Before anything is written into it: the outbox, the run ledger, staged scripts and the credential must be
    // the agent account's alone.
    platform::protect_dir(&data_dir)
        .with_context(|| format!("cannot make the data dir `{}` the agent's own", data_dir.display()))?;

    // Its own credential, enrolling first when it has none; none at all only for a development broker.
    let creds = (!config.nats.insecure || config.nats.creds.is_some())
        .then(|| config.nats.creds.clone().unwrap_or_else(|| data_dir.join(CREDS_FILE)));
    if let Some(path) = &creds
        && !path.exists()
    {
        let Some(token) = config.enroll_token.clone() else {
            anyhow::bail!(
                "no NATS credential at `{}`: set `agent.enroll_token` (or KANADE_ENROLL_TOKEN) to a token from `kanade \
                 enroll create` so the agent enrols, or `nats.creds` to a credential",
                path.display()
            );
        };
        let bootstrap = config.bootstrap_creds.clone().unwrap_or_else(|| data_dir.join(BOOTSTRAP_CREDS_FILE));
        match credential::enroll(&config, &token, &bootstrap, path, &data_dir, &shutdown).await {
            Ok(_) => {}
            Err(credential::CredentialError::Cancelled) => return Ok(()),
            Err(err) => return Err(err).context("cannot enrol"),
        }
    }

    // kanade-client's socket lives as long as the process, across the restarts of `serve` a renewal makes.
    let client_desk = config.client_socket.as_deref().and_then(|path| match platform::ClientListener::bind(path) {
        Ok(listener) => {
            let notices = notices::Notices::open(Some(&data_dir));
            let presence = consent::Presence::Screen { configured: config.run_as_user.clone() };
            let consents = consent::ConsentBook::open(Some(&data_dir), presence);
            let desk = client_ipc::ClientDesk::new(config.pc_id.clone(), config.hostname.clone(), notices, consents);
            tracing::info!(socket = %path.display(), "kanade-client may connect");
            let server = client_ipc::serve(listener, desk.clone(), config.run_as_user.clone(), shutdown.clone());
            Some((desk, tokio::spawn(server)))
        }
        Err(err) => {
            tracing::warn!(socket = %path.display(), error = %err, "kanade-client cannot connect: no socket");
            None
        }
    });

    let identity = connection::Identity {
        creds: creds.clone(),
        inbox_prefix: kanade_shared::security::permissions::agent_inbox_prefix(config.pc_id.as_str()),
    };
    let (client, connects) = connection::connect(&config.nats, &format!("kanade-agent {}", config.pc_id), &identity)
        .await
        .context("cannot set up the NATS connection")?;
    let result = loop {
        // The groups are the credential's: the broker lets the agent read no other group's commands.
        let renewal = match &creds {
            Some(path) => {
                let held = credential::read_for(path, &config.pc_id)?;
                if held.groups != config.groups {
                    tracing::info!(
                        credential = ?held.groups,
                        config = ?config.groups,
                        "the groups are the credential's (`kanade agent groups` changes them)"
                    );
                    config.groups = held.groups.clone();
                }
                Some(credential::Renewal::new(path.clone(), config.pc_id.clone(), held))
            }
            None => None,
        };
        let limits = OutputLimits {
            inline: config.output_limit_bytes,
            max: config.output_max_bytes,
            spool_dir: data_dir.join("outbox").join(outbox::SPOOL_DIR),
        };
        let parts = Parts {
            executor: Executor::Script(ScriptRunner::new(
                data_dir.join("agent-scripts"),
                limits,
                config.run_as_user.clone(),
            )),
            heartbeat: Arc::new(HeartbeatSource::new()),
            client: client.clone(),
            connects: connects.clone(),
            ready: None,
            update: update.clone(),
            log_files: log_files.clone(),
            inventory: inventory::Source::Host(inventory::collect::HostRoot::default()),
            perf: perf::Source::Host(Box::new(perf::sample::HostSampler::new())),
            renewal,
            client_desk: client_desk.as_ref().map(|(desk, _)| desk.clone()),
        };
        match serve(config.clone(), parts, shutdown.clone()).await {
            Ok(main_loop::Exit::Regroup) if !shutdown.is_cancelled() => continue,
            Ok(main_loop::Exit::Regroup) => break Ok(()),
            Ok(main_loop::Exit::Stopped) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    // Bounded: with the broker away a flush waits for a reconnect that may never come, and a stop must not hang.
    let _ = tokio::time::timeout(FINAL_FLUSH, client.flush()).await;
    if let Some((_, server)) = client_desk {
        // It ends with `shutdown`, and closes every client as it does.
        let _ = server.await;
    }
    result
}

/// How long an agent waits for the trust list when it starts.
const TRUST_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The bootstrap credential's default place, in the data dir.
pub const BOOTSTRAP_CREDS_FILE: &str = "bootstrap.creds";

/// What an agent is served with by whoever hosts it: the real process (`run`) or the fleet simulator.
pub struct Parts {
    /// Real scripts, or the simulator's stand-in.
    pub executor: Executor,
    /// Shared by all agents of a process, which sample the same process.
    pub heartbeat: Arc<HeartbeatSource>,
    /// The connection, perhaps shared with other agents, and its (re)connect signal.
    pub client: Client,
    pub connects: connection::Connects,
    /// Given a permit once this agent's subscriptions are queued on the connection.
    pub ready: Option<Arc<tokio::sync::Semaphore>>,
    /// Self-update; `None` for every agent that shares its process with others.
    pub update: Option<Arc<update::SelfUpdate>>,
    /// Where this agent's own log files are, to answer `agents.<pc>.logs`; `None` when it logs to stderr only.
    pub log_files: Option<logtail::LogFiles>,
    /// Where its inventory comes from: the host, or the simulator's made-up PC.
    pub inventory: inventory::Source,
    /// Where its performance figures come from: the host's counters, or the simulator's made-up ones.
    pub perf: perf::Source,
    /// Renews the agent's own credential; `None` without one (the simulator's agents share its credential).
    pub renewal: Option<credential::Renewal>,
    /// What kanade-client is shown of this agent; `None` without a client socket (and in the simulator).
    pub client_desk: Option<Arc<client_ipc::ClientDesk>>,
}

/// Runs one agent until `shutdown`, and returns once every task it started has ended. The connection may be
/// shared with other agents (the fleet simulator); everything else — subscriptions, gate, ledger, outbox,
/// heartbeats — is this agent's own.
pub async fn serve(config: AgentConfig, parts: Parts, shutdown: CancellationToken) -> anyhow::Result<main_loop::Exit> {
    let Parts {
        executor,
        heartbeat,
        client,
        connects,
        ready,
        update,
        log_files,
        inventory,
        perf,
        renewal,
        client_desk,
    } = parts;
    // This agent's own stop: the process's, or its main loop's when a renewed credential makes it start again.
    let shutdown = shutdown.child_token();
    let data_dir = config.data_dir.clone().unwrap_or_else(|| kanade_shared::config::default_data_dir("agent"));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create data dir `{}`", data_dir.display()))?;
    let outbox = Arc::new(
        Outbox::open(data_dir.join("outbox"), config.outbox_max_bytes)
            .with_context(|| format!("cannot open outbox in `{}`", data_dir.display()))?,
    );
    let ledger = RunLedger::open(data_dir.join("runs"))
        .with_context(|| format!("cannot open run ledger in `{}`", data_dir.display()))?;
    let runs_dir = data_dir.join("runs");
    outbox.set_salvage(Box::new(move |result_id, why| RunLedger::lost_result(&runs_dir, result_id, why)));
    tracing::info!(
        pc_id = %config.pc_id,
        groups = ?config.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        data_dir = %data_dir.display(),
        nats = ?config.nats.urls,
        version = version(),
        pending_results = outbox.pending(),
        "kanade-agent starting"
    );

    let position = catchup::Position::new(&data_dir);
    let mut command_filters =
        vec![subject::commands_for(&Target::All), subject::commands_for(&Target::Pc(config.pc_id.clone()))];
    command_filters.extend(config.groups.iter().map(|g| subject::commands_for(&Target::Group(g.clone()))));
    let catch_up = Arc::new(catchup::CatchUp::new(command_filters, position.clone(), config.catch_up_jitter));
    let malformed = Arc::new(Malformed::default());
    let authority = Arc::new(authority::Authority::new(
        config.pc_id.clone(),
        config.groups.clone(),
        config.trust_root,
        Some(&data_dir),
    ));
    let pipeline = Arc::new(Pipeline::new(PipelineParts {
        pc: config.pc_id.clone(),
        authority: authority.clone(),
        client: client.clone(),
        outbox: outbox.clone(),
        ledger,
        executor,
        slots: config.max_local_concurrent.max(1),
        position,
        shutdown: shutdown.clone(),
        malformed: malformed.clone(),
        desk: client_desk.clone(),
    }));
    pipeline.recover().await;
    // The trust list before anything else is read: job-state values and commands that arrive live are judged
    // against it at once. Bounded: with the broker away the list kept in the data dir stands until a reconnect.
    match tokio::time::timeout(TRUST_READ_TIMEOUT, pipeline.authority().reload(&client)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "cannot read the trust list yet; the one kept here stands"),
        Err(_) => tracing::warn!("no answer for the trust list yet; the one kept here stands"),
    }

    let live = Arc::new(liveconfig::LiveConfig::new(config.pc_id.clone(), config.groups.clone()));
    let subscriptions = subscribe(&client, catch_up.filters(), &config, &live.subjects()).await?;
    let background = TaskTracker::new();
    let updater = update.map(|update| {
        let pc = config.pc_id.clone();
        update::Updater::new(update, client.clone(), pc, live.clone(), shutdown.clone(), background.clone())
    });

    let publisher_stop = CancellationToken::new();
    let publisher = TaskTracker::new();
    publisher.spawn(outbox.clone().run_publisher(jetstream::new(client.clone()), publisher_stop.clone()));
    publisher.close();

    let inventory = Arc::new(inventory::Inventory::new(
        config.pc_id.clone(),
        client.clone(),
        inventory,
        &data_dir,
        config.inventory.enabled,
    ));
    if let Some(desk) = client_desk {
        desk.attach(client.clone());
        // Notifications are for kanade-client: an agent that serves none takes none.
        let shown = desk.clone();
        background.spawn(notices::run(notices::Parts {
            notices: desk.notices().clone(),
            client: client.clone(),
            authority: authority.clone(),
            pc: config.pc_id.clone(),
            groups: config.groups.clone(),
            connects: connects.clone(),
            shown: Box::new(move |notice| shown.notice_shown(notice)),
            shutdown: shutdown.clone(),
        }));
        background.spawn(client_status(desk, client.clone(), pipeline.clone(), shutdown.clone()));
    }
    let perf_source = perf;
    let perf = Arc::new(perf::Perf::new(config.pc_id.clone(), client.clone(), &config.perf));
    background.spawn(perf.clone().run(perf_source, shutdown.clone()));
    let main_loop = MainLoop::new(main_loop::Parts {
        inventory,
        perf,
        heartbeats: Heartbeats::new(heartbeat, client.clone(), config.clone()),
        config,
        client,
        pipeline,
        outbox: outbox.clone(),
        malformed,
        live,
        catch_up,
        updater,
        log_tail: logtail::LogTail::new(log_files),
        subscriptions,
        connects,
        background,
        shutdown,
        renewal,
    });
    if let Some(ready) = ready {
        // Subscriptions are queued on the connection; the caller confirms them with a round trip.
        ready.add_permits(1);
    }
    let exit = main_loop.run().await;

    // The outbox publisher stops last, after every run has put its result in the outbox.
    publisher_stop.cancel();
    publisher.wait().await;
    tracing::info!(pending_results = outbox.pending(), "kanade-agent stopped");
    Ok(exit)
}

/// How often kanade-client's view of the agent (connected, running) is brought up to date.
const CLIENT_STATUS_EVERY: Duration = Duration::from_secs(1);

/// Keeps kanade-client's view of this agent current until `shutdown`: a comparison a second, pushed only when
/// something changed.
async fn client_status(
    desk: Arc<client_ipc::ClientDesk>,
    client: Client,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(CLIENT_STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held = desk.consents().watch();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            _ = held.changed() => {}
        }
        // Held runs change state with the clock too (a deferral ends, quiet hours begin): compared every time.
        desk.pending_changed();
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        let running = pipeline
            .running_list()
            .into_iter()
            .map(|(exec_id, job_id)| kanade_shared::client_ipc::RunningRun { exec_id, job_id, since: None })
            .collect();
        let unread = desk.notices().unread(chrono::Utc::now());
        desk.update_status(|status| {
            status.connected = connected;
            status.running = running;
            status.unread_notifications = unread;
        });
    }
    desk.update_status(|status| status.connected = false);
}

/// Subscribes to everything the agent listens to: its command filters, kills, its pings, log and inventory requests, the job-state buckets
/// and its `agent_config` layers.
async fn subscribe(
    client: &Client,
    command_filters: &[String],
    config: &AgentConfig,
    config_subjects: &[String],
) -> anyhow::Result<Subscriptions> {
    let each = |filters: Vec<String>| async move {
        let mut subscribers = Vec::with_capacity(filters.len());
        for filter in filters {
            let subscriber =
                client.subscribe(filter.clone()).await.with_context(|| format!("cannot subscribe to `{filter}`"))?;
            subscribers.push(subscriber);
        }
        anyhow::Ok(futures::stream::select_all(subscribers))
    };
    let commands = each(command_filters.to_vec()).await?;
    let kills = futures::stream::select(
        client.subscribe(subject::KILL_ALL).await.context("cannot subscribe to kill requests")?,
        client.subscribe(subject::KILL_JOB_ALL).await.context("cannot subscribe to kill requests")?,
    );
    let pings = client.subscribe(subject::ping(&config.pc_id)).await.context("cannot subscribe to pings")?;
    let logs = client.subscribe(subject::logs(&config.pc_id)).await.context("cannot subscribe to log requests")?;
    let perf = client.subscribe(subject::perf_lease(&config.pc_id)).await.context("cannot subscribe to perf leases")?;
    let inventory = client
        .subscribe(subject::inventory_refresh(&config.pc_id))
        .await
        .context("cannot subscribe to inventory requests")?;
    let config_changes = each(config_subjects.to_vec()).await?;
    let renew = client.subscribe(subject::renew_now(&config.pc_id)).await.context("cannot subscribe to renewals")?;
    let trust =
        client.subscribe(subject::kv_entry(KV_TRUST, TRUST_KEY)).await.context("cannot subscribe to the trust list")?;
    let job_changes = futures::stream::select(
        client.subscribe(subject::kv_changes(KV_SCRIPT_CURRENT)).await.context("cannot subscribe to script_current")?,
        client.subscribe(subject::kv_changes(KV_SCRIPT_STATUS)).await.context("cannot subscribe to script_status")?,
    );
    Ok(Subscriptions { commands, kills, pings, logs, inventory, perf, job_changes, config_changes, trust, renew })
}
