//! `kanade-bench sync`: what `sync_interval: always` costs. Result publishes acknowledged by a nats-server that
//! syncs every write, against the same on a server with the default sync, in the same run (docs/RELIABILITY.md).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use kanade_shared::ExecId;
use kanade_testkit::NatsServer;

use crate::stats::median_by_key;

#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// Results published per measurement (each about `--bytes` long).
    #[arg(long, default_value_t = 5000)]
    results: usize,
    /// Size of each result.
    #[arg(long, default_value_t = 1024)]
    bytes: usize,
    /// Publishes in flight at once: 1 is one agent draining its outbox; more is a fleet.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    in_flight: Vec<usize>,
    /// Measured rounds per setting (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Publishes `n` results of `bytes` each to `RESULTS` with `in_flight` acks outstanding; returns the elapsed time.
async fn publish_results(
    js: &jetstream::Context,
    n: usize,
    bytes: usize,
    in_flight: usize,
) -> anyhow::Result<Duration> {
    use futures::StreamExt;
    let body = vec![b'x'; bytes];
    let started = Instant::now();
    let acks = futures::stream::iter(0..n)
        .map(|i| {
            let (js, body) = (js.clone(), body.clone());
            async move {
                let exec = ExecId::generate();
                let message = PublishMessage::build().payload(body.into()).message_id(format!("{exec}.bench-{i}"));
                js.send_publish(format!("results.bench-pc.{exec}"), message).await?.await?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(in_flight.max(1));
    futures::pin_mut!(acks);
    while let Some(ack) = acks.next().await {
        ack?;
    }
    Ok(started.elapsed())
}

/// Each `--in-flight` setting on both servers; the rates as a Markdown table on stdout.
pub async fn run(args: SyncArgs) -> anyhow::Result<()> {
    println!("| in flight | default sync (results/s) | sync_interval: always (results/s) | always / default |");
    println!("|---|---|---|---|");
    let default = NatsServer::start();
    let durable = NatsServer::start_durable();
    let (_, js_default) = kanade_testkit::connect(&default.url()).await;
    let (_, js_durable) = kanade_testkit::connect(&durable.url()).await;
    for in_flight in args.in_flight.iter().copied() {
        let mut default_times = Vec::new();
        let mut durable_times = Vec::new();
        // A warm-up each, then the rounds alternate so drift on a shared machine hits both alike.
        publish_results(&js_default, args.results / 10, args.bytes, in_flight).await?;
        publish_results(&js_durable, args.results / 10, args.bytes, in_flight).await?;
        for _ in 0..args.runs {
            default_times.push(publish_results(&js_default, args.results, args.bytes, in_flight).await?);
            durable_times.push(publish_results(&js_durable, args.results, args.bytes, in_flight).await?);
        }
        let rate = |d: Duration| args.results as f64 / d.as_secs_f64();
        let (d, a) = (rate(median_by_key(default_times, |t| *t)), rate(median_by_key(durable_times, |t| *t)));
        println!("| {in_flight} | {d:.0} | {a:.0} | {:.2} |", a / d);
    }
    Ok(())
}
