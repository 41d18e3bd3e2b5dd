//! The agent's performance reporting against a real nats-server, sampling this machine: nothing is streamed until a
//! viewer asks; a lease brings host and process samples at the live interval and the kept history; two viewers
//! share one stream; a released or lapsed lease stops it; rollups land in stream `PERF` with their window's figures;
//! heartbeats carry the host's CPU and memory; a garbage request is refused and counted, never fatal.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kanade_shared::perf::{HostSample, LeaseReply, LeaseRequest, PerfRollup, ProcSample};
use kanade_shared::resources::STREAM_PERF;
use kanade_shared::wire::Heartbeat;
use kanade_shared::{PcId, subject};
use kanade_testkit::{NatsServer, TestAgent, connect, eventually, init_logging};

const PATIENCE: Duration = Duration::from_secs(30);
const PC: &str = "perf-pc";

fn pc() -> PcId {
    PcId::new(PC).unwrap()
}

async fn lease(client: &async_nats::Client, viewer: &str, lease_ms: u64, history: bool) -> LeaseReply {
    let request = LeaseRequest { viewer: viewer.into(), lease_ms, history };
    let body = serde_json::to_vec(&request).unwrap();
    let reply = client.request(subject::perf_lease(&pc()), body.into()).await.expect("the agent answers");
    serde_json::from_slice(&reply.payload).expect("a lease reply")
}

/// Host samples that arrive within `window`.
async fn samples_within(subscriber: &mut async_nats::Subscriber, window: Duration) -> Vec<HostSample> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + window;
    while let Ok(Some(message)) = tokio::time::timeout_at(end, subscriber.next()).await {
        out.push(serde_json::from_slice(&message.payload).expect("a host sample"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_samples_flow_only_while_a_lease_is_held() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _js) = connect(&nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = kanade_testkit::agent_config(&nats.url(), PC, &[], dir.path());
    config.perf.interval = Duration::from_millis(300);
    config.perf.top = 5;
    let _agent = TestAgent::start_with(config, dir).await;
    let mut hosts = client.subscribe(subject::perf_host(&pc())).await.unwrap();
    let mut procs = client.subscribe(subject::perf_proc(&pc())).await.unwrap();
    client.flush().await.unwrap();

    // Unwatched (and no rollups): nothing at all.
    assert!(samples_within(&mut hosts, Duration::from_secs(2)).await.is_empty(), "nothing sampled unwatched");

    // A lease: samples every 300 ms, each covering about its interval.
    let reply = lease(&client, "viewer-a", 3_000, true).await;
    assert!(reply.accepted, "{reply:?}");
    assert_eq!((reply.lease_ms, reply.interval_ms, reply.viewers), (3_000, 300, 1));
    let streamed = samples_within(&mut hosts, Duration::from_secs(2)).await;
    assert!(streamed.len() >= 4, "about six samples in two seconds, got {}", streamed.len());
    let last = streamed.last().unwrap();
    assert_eq!(last.pc_id, pc());
    assert!(last.mem_total_bytes > 0 && !last.cores.is_empty() && last.uptime_secs > 0, "{last:?}");
    assert!((0.0..=100.0).contains(&last.cpu_percent));
    assert!((200..=1_500).contains(&last.span_ms), "a sample covers its interval: {}", last.span_ms);
    assert!(streamed.windows(2).all(|w| w[0].at < w[1].at), "samples in time order");
    let processes: ProcSample = serde_json::from_slice(&procs.next().await.unwrap().payload).unwrap();
    assert!(!processes.processes.is_empty() && processes.processes.len() <= 10, "top 5 by CPU and by memory");
    assert!(processes.total as usize >= processes.processes.len());

    // A second viewer shares the stream (one sample per interval, not two) and gets the kept history.
    let second = lease(&client, "viewer-b", 3_000, true).await;
    assert_eq!(second.viewers, 2);
    assert!(second.history.len() >= 4, "the last two minutes: {} samples", second.history.len());
    assert!(second.processes.is_some());
    let shared = samples_within(&mut hosts, Duration::from_secs(2)).await;
    assert!((4..=9).contains(&shared.len()), "one stream for two viewers: {} samples in 2 s", shared.len());

    // Both give up: the stream stops at once.
    assert_eq!(lease(&client, "viewer-a", 0, false).await.viewers, 1);
    let released = lease(&client, "viewer-b", 0, false).await;
    assert_eq!((released.accepted, released.lease_ms, released.viewers), (true, 0, 0));
    // What was in flight at the release arrives within a moment; after that, nothing.
    samples_within(&mut hosts, Duration::from_millis(700)).await;
    assert!(samples_within(&mut hosts, Duration::from_secs(2)).await.is_empty(), "stopped after the release");

    // A lease that is not renewed lapses, and the stream stops within a few seconds of it.
    let reply = lease(&client, "forgetful", 1_000, false).await;
    assert_eq!(reply.lease_ms, 1_000);
    let began = Instant::now();
    let mut last_at = Instant::now();
    while began.elapsed() < Duration::from_secs(6) {
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), hosts.next()).await {
            last_at = Instant::now();
        }
    }
    let streamed_for = last_at.duration_since(began);
    assert!(streamed_for < Duration::from_secs(3), "stopped within the one-second lease: {streamed_for:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_go_to_the_perf_stream_and_heartbeats_carry_the_hosts_figures() {
    init_logging();
    let nats = NatsServer::start();
    let (client, js) = connect(&nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = kanade_testkit::agent_config(&nats.url(), PC, &[], dir.path());
    config.perf.rollup_interval = Duration::from_secs(10);
    let mut heartbeats = client.subscribe(subject::heartbeat(&pc())).await.unwrap();
    client.flush().await.unwrap();
    let _agent = TestAgent::start_with(config, dir).await;

    // Within a rollup window the heartbeat already has the idle samples' figures.
    let heartbeat = tokio::time::timeout(PATIENCE, async {
        loop {
            let message = heartbeats.next().await.expect("heartbeats");
            let heartbeat: Heartbeat = serde_json::from_slice(&message.payload).expect("a heartbeat");
            if heartbeat.host_cpu_percent.is_some() {
                return heartbeat;
            }
        }
    })
    .await
    .expect("a heartbeat with host figures");
    let memory = heartbeat.host_mem_percent.expect("memory with CPU");
    assert!(memory > 0.0 && memory <= 100.0, "{memory}");

    // The second rollup covers a whole window: on the clock's ten seconds, with samples and processes.
    let stream = js.get_stream(STREAM_PERF).await.expect("PERF");
    let rollup: PerfRollup = eventually("a whole window's rollup", PATIENCE, || async {
        let message = stream.get_last_raw_message_by_subject(&subject::perf_rollup(&pc())).await.ok()?;
        let rollup: PerfRollup = serde_json::from_slice(&message.payload).ok()?;
        (rollup.start.timestamp_millis() % 10_000 == 0).then_some(rollup)
    })
    .await;
    assert_eq!((rollup.end - rollup.start).num_seconds(), 10);
    assert!(rollup.samples >= 2, "idle samples every 5 s: {}", rollup.samples);
    assert!(rollup.mem_total_bytes > 0 && rollup.mem_used_bytes.avg > 0.0);
    assert!(rollup.cpu_percent.max >= rollup.cpu_percent.avg);
    assert!(!rollup.top_memory.is_empty(), "the top processes by memory: {rollup:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_lease_requests_are_refused_and_counted() {
    init_logging();
    let nats = NatsServer::start();
    let (client, _js) = connect(&nats.url()).await;
    let _agent = TestAgent::start(&nats.url(), PC, &[]).await;
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        br#"{"lease_ms": 1000}"#.to_vec(),
        br#"{"viewer": "", "lease_ms": 1000}"#.to_vec(),
        format!(r#"{{"viewer": "{}"}}"#, "v".repeat(10_000)).into_bytes(),
        vec![b'['; 100_000],
    ];
    for body in bodies {
        let reply = client.request(subject::perf_lease(&pc()), body.clone().into()).await.expect("answered");
        let reply: LeaseReply = serde_json::from_slice(&reply.payload).expect("a lease reply");
        assert!(
            !reply.accepted && !reply.error.is_empty(),
            "{}: {reply:?}",
            String::from_utf8_lossy(&body[..20.min(body.len())])
        );
    }
    // Still serving: a good request after all that is granted, and pings count the garbage.
    assert!(lease(&client, "good", 1_000, false).await.accepted);
    let ping = client.request(subject::ping(&pc()), "".into()).await.unwrap();
    let heartbeat: Heartbeat = serde_json::from_slice(&ping.payload).unwrap();
    assert!(heartbeat.malformed_messages >= 3, "{}", heartbeat.malformed_messages);
}
