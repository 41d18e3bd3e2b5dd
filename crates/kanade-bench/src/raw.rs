//! The reference: the same fan-out and fan-in done with plain NATS and nothing of kanade. One core broadcast;
//! every subscriber publishes one JetStream result and awaits its ack; one pull consumer batches them into
//! SQLite (WAL, synchronous=NORMAL, as the backend uses). What kanade adds on top — validation, the gate, the
//! ledger's claim file, the outbox's durable write, the projector's checks and its HTTP count — is the difference.
//!
//! The raw agents connect as the fleet simulator does (TLS pinned to the fleet's CA, the simulator's credential and
//! inbox prefix), so the reference pays the same broker-side TLS, auth and permission checks as kanade's agents.
//! That credential allows only agent subjects, so the raw fleet uses two of them that no kanade stream or process
//! listens on: the command on `agents.bench-raw.cmd` (agents may subscribe `agents.*.>`), the results on
//! `output.bench-raw.<index>` (agents may publish `output.*.>`; kanade's `OUTPUT` stream takes only five-token
//! `output` subjects, and the live tail is core).

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use kanade_shared::config::NatsConfig;
use kanade_shared::security::permissions::SIMULATOR_INBOX_PREFIX;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

pub const COMMAND_SUBJECT: &str = "agents.bench-raw.cmd";
const STREAM: &str = "BENCHRAW";
const RESULTS_ROOT: &str = "output.bench-raw";

/// `kanade-bench raw-agents`: `count` subscribers over `connections` connections, each connection as the fleet
/// simulator (`creds`, TLS pinned to `ca`); prints a JSON line when ready.
#[allow(clippy::print_stdout)]
pub async fn agents(url: &str, count: usize, connections: usize, creds: &Path, ca: &Path) -> anyhow::Result<()> {
    let nats = NatsConfig::secure(vec![url.to_owned()], Some(creds.to_owned()), ca.to_owned());
    let mut clients = Vec::new();
    for i in 0..connections.max(1) {
        let client = kanade_ops::nats::options(&nats, &format!("kanade-bench raw {i}"))
            .custom_inbox_prefix(SIMULATOR_INBOX_PREFIX)
            .connect(url)
            .await
            .context("connect")?;
        clients.push(client);
    }
    for index in 0..count {
        let client = clients[index % clients.len()].clone();
        let mut subscription = client.subscribe(COMMAND_SUBJECT).await?;
        let js = jetstream::new(client);
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let run = String::from_utf8_lossy(&message.payload).into_owned();
                let body = format!(r#"{{"run":"{run}","agent":{index}}}"#);
                let publish = jetstream::message::PublishMessage::build()
                    .payload(body.into())
                    .message_id(format!("{run}.{index}"));
                // Like the outbox: retry until the broker has it.
                loop {
                    if let Ok(ack) = js.send_publish(format!("{RESULTS_ROOT}.{index}"), publish.clone()).await
                        && ack.await.is_ok()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    for client in &clients {
        kanade_agent::connection::round_trip(client).await?;
    }
    println!("{}", serde_json::json!({"ready": count, "pid": std::process::id()}));
    // Run until killed by the benchmark.
    std::future::pending::<()>().await;
    Ok(())
}

/// The raw projector: a durable pull consumer into one SQLite table, acked after each committed batch.
pub struct Projector {
    db: SqlitePool,
    task: tokio::task::JoinHandle<()>,
}

impl Projector {
    pub async fn start(js: &jetstream::Context, db_path: &std::path::Path) -> anyhow::Result<Self> {
        let stream = js
            .get_or_create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec![format!("{RESULTS_ROOT}.*")],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(60 * 60),
                ..Default::default()
            })
            .await?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                "raw-projector",
                pull::Config {
                    durable_name: Some("raw-projector".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    max_ack_pending: 20_000,
                    ..Default::default()
                },
            )
            .await?;
        let options = SqliteConnectOptions::new()
            .filename(db_path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let db = SqlitePoolOptions::new().max_connections(2).connect_with(options).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS results (id TEXT PRIMARY KEY, run TEXT NOT NULL, body TEXT NOT NULL, recorded_at_ms BIGINT NOT NULL)")
            .execute(&db)
            .await?;
        let mut messages = consumer.messages().await?.ready_chunks(500);
        let task = tokio::spawn({
            let db = db.clone();
            async move {
                while let Some(batch) = messages.next().await {
                    let batch: Vec<_> = batch.into_iter().flatten().collect();
                    let now = chrono::Utc::now().timestamp_millis();
                    let Ok(mut tx) = db.begin().await else { continue };
                    for message in &batch {
                        let body = String::from_utf8_lossy(&message.payload).into_owned();
                        let run = serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["run"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        let id = message.subject.to_string() + "." + &run;
                        let _ = sqlx::query("INSERT INTO results (id, run, body, recorded_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
                            .bind(id)
                            .bind(run)
                            .bind(body)
                            .bind(now)
                            .execute(&mut *tx)
                            .await;
                    }
                    if tx.commit().await.is_ok() {
                        for message in &batch {
                            let _ = message.ack().await;
                        }
                    }
                }
            }
        });
        Ok(Self { db, task })
    }

    /// How many results of `run` are committed.
    pub async fn count(&self, run: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM results WHERE run = $1")
            .bind(run)
            .fetch_one(&self.db)
            .await?
            .try_get("n")?)
    }

    /// When each result of `run` was committed, in epoch milliseconds.
    pub async fn recorded(&self, run: &str) -> anyhow::Result<Vec<i64>> {
        let rows =
            sqlx::query("SELECT recorded_at_ms FROM results WHERE run = $1").bind(run).fetch_all(&self.db).await?;
        rows.iter().map(|r| Ok(r.try_get("recorded_at_ms")?)).collect()
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
