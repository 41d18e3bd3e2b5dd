//! The backend and agents, in-process, over a test's own nats-server.

use std::net::SocketAddr;
use std::time::Duration;

use kanade_backend::config::{AuthConfig, BackendConfig, OperatorToken};
use kanade_shared::config::{AgentConfig, NatsConfig};
use kanade_shared::{GroupName, PcId};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// How long the helpers below wait for the system to get somewhere.
const PATIENCE: Duration = Duration::from_secs(20);

/// The shared bearer token test backends accept (the caller names itself with `X-Kanade-Operator`).
pub const TEST_TOKEN: &str = "test-token-0123456789abcdef";

/// Per-operator tokens test backends also accept: each proves who is calling.
pub const OPERATORS: &[(&str, &str)] =
    &[("alice", "alice-token-0123456789abcdef"), ("bob", "bob-token-0123456789abcdef")];

/// The token of test operator `name`.
pub fn operator_token(name: &str) -> &'static str {
    OPERATORS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).expect("a test operator")
}

/// A plain client connection to the test server, with JetStream set up as `kanade jetstream setup` would.
pub async fn connect(url: &str) -> (async_nats::Client, async_nats::jetstream::Context) {
    let client = client(url).await;
    let js = async_nats::jetstream::new(client.clone());
    kanade_ops::jetstream::setup(&js, 1).await.expect("jetstream setup");
    crate::security::fleet().push_trust(&client).await;
    (client, js)
}

/// A client of the test server at `url` as the backend connects (TLS, the backend's credential): what a test
/// uses to look at or set up the broker directly.
pub async fn client(url: &str) -> async_nats::Client {
    let nats = crate::security::fleet().backend_nats(url);
    kanade_ops::nats::options(&nats, "kanade-test")
        .connect(nats.urls.as_slice())
        .await
        .expect("connect to test nats-server")
}

/// An agent config for tests: short heartbeat, its own data dir, and its own credential (for `pc` in `groups`)
/// written there as enrolment would.
pub fn agent_config(url: &str, pc: &str, groups: &[&str], data_dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        pc_id: PcId::new(pc).expect("test pc id"),
        hostname: format!("{pc}.test"),
        groups: groups.iter().map(|g| GroupName::new(*g).expect("test group")).collect(),
        data_dir: Some(data_dir.to_owned()),
        heartbeat_interval: Duration::from_millis(500),
        output_limit_bytes: kanade_shared::config::DEFAULT_OUTPUT_LIMIT_BYTES,
        output_max_bytes: kanade_shared::config::DEFAULT_OUTPUT_MAX_BYTES,
        catch_up_jitter: Duration::from_millis(100),
        max_local_concurrent: kanade_shared::config::DEFAULT_MAX_LOCAL_CONCURRENT,
        outbox_max_bytes: kanade_shared::config::DEFAULT_OUTBOX_MAX_BYTES,
        nats: {
            let fleet = crate::security::fleet();
            fleet.issue_agent(
                pc,
                groups,
                crate::security::TEST_CREDENTIAL_TTL,
                &data_dir.join(kanade_agent::CREDS_FILE),
            );
            NatsConfig::secure(vec![url.to_owned()], None, fleet.ca())
        },
        log: kanade_shared::config::LogConfig::default(),
        // Off unless a test turns it on: a real collection reads the machine's package databases, which a test
        // about something else should not wait on or be slowed by.
        inventory: kanade_shared::config::InventoryConfig { enabled: false, ..Default::default() },
        // No rollups unless a test turns them on (live streams still work: they start on a viewer's lease).
        perf: kanade_shared::config::PerfConfig { rollup_interval: Duration::ZERO, ..Default::default() },
        enroll_token: None,
        bootstrap_creds: None,
        trust_root: Some(crate::security::fleet().trust_root()),
        run_as_user: None,
        client_socket: None,
    }
}

/// An agent running in-process until dropped or stopped.
pub struct TestAgent {
    pub config: AgentConfig,
    data_dir: Option<TempDir>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestAgent {
    pub async fn start(url: &str, pc: &str, groups: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let config = agent_config(url, pc, groups, data_dir.path());
        Self::start_with(config, data_dir).await
    }

    pub async fn start_with(config: AgentConfig, data_dir: TempDir) -> Self {
        Self::start_logging_to(config, data_dir, None).await
    }

    /// An agent that serves `log_files` as its own log on `agents.<pc>.logs` (the test writes them; the agent's
    /// own tracing goes to the test's).
    pub async fn start_logging_to(
        config: AgentConfig,
        data_dir: TempDir,
        log_files: Option<kanade_agent::logtail::LogFiles>,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(kanade_agent::run_logging_to(config.clone(), shutdown.clone(), None, log_files));
        let agent = Self { config, data_dir: Some(data_dir), shutdown, task: Some(task) };
        agent.wait_until_reachable().await;
        agent
    }

    /// Waits until the agent answers a ping, so a test's first command cannot race its subscriptions.
    async fn wait_until_reachable(&self) {
        let client = client(self.config.nats.urls[0].as_str()).await;
        let pc = self.config.pc_id.clone();
        crate::eventually("agent answers ping", Duration::from_secs(15), || {
            let (client, pc) = (client.clone(), pc.clone());
            async move { kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok() }
        })
        .await;
    }

    /// Stops the agent gracefully and waits for it.
    pub async fn stop(mut self) -> TempDir {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("agent task panicked").expect("agent failed");
        }
        self.data_dir.take().expect("data dir")
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.as_ref().expect("data dir").path()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A test backend's config: `127.0.0.1:0`, `data_dir`, the shared [`TEST_TOKEN`] and the [`OPERATORS`]' tokens,
/// agents offline after 5 s.
pub fn backend_config(nats_url: &str, data_dir: &std::path::Path, database_url: Option<String>) -> BackendConfig {
    BackendConfig {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: Some(data_dir.to_owned()),
        database_url,
        offline_after: Duration::from_secs(5),
        stale_after: kanade_backend::config::DEFAULT_STALE_AFTER,
        perf_retention: kanade_backend::config::DEFAULT_PERF_RETENTION,
        perf_max_watches: kanade_backend::config::DEFAULT_PERF_MAX_WATCHES,
        instance: None,
        auth: AuthConfig::Tokens {
            shared: Some(TEST_TOKEN.to_owned()),
            operators: OPERATORS
                .iter()
                .map(|(name, token)| {
                    OperatorToken::admin(kanade_shared::Actor::new(*name).expect("operator name"), *token)
                })
                .collect(),
        },
        sessions: Default::default(),
        nats: crate::security::fleet().backend_nats(nats_url),
        log: kanade_shared::config::LogConfig::default(),
    }
}

/// A backend running in-process on `127.0.0.1:0` with a temp SQLite database (or `database_url`).
pub struct TestBackend {
    pub addr: SocketAddr,
    pub db: kanade_backend::db::Db,
    data_dir: Option<TempDir>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    http: reqwest::Client,
}

impl TestBackend {
    pub async fn start(url: &str) -> Self {
        Self::start_in(url, tempfile::tempdir().expect("temp dir"), None).await
    }

    /// Starts a backend on an existing data dir (to restart one) and an optional database URL.
    pub async fn start_in(url: &str, data_dir: TempDir, database_url: Option<String>) -> Self {
        Self::start_tuned(url, data_dir, database_url, |config| config, |bound| bound).await
    }

    /// [`TestBackend::start_in`] with its config and its bound server adjusted first (an instance name, a test
    /// knob).
    pub async fn start_tuned(
        url: &str,
        data_dir: TempDir,
        database_url: Option<String>,
        configure: impl FnOnce(BackendConfig) -> BackendConfig,
        tune: impl FnOnce(kanade_backend::Bound) -> kanade_backend::Bound,
    ) -> Self {
        let config = configure(backend_config(url, data_dir.path(), database_url));
        let bound = kanade_backend::Backend::bind(config).await.expect("backend binds");
        let bound = tune(
            bound.with_signing_key(&crate::security::fleet().backend_signer_file()).expect("the backend's signing key"),
        );
        let addr = bound.local_addr();
        let db = bound.db();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(bound.serve(shutdown.clone()));
        Self { addr, db, data_dir: Some(data_dir), shutdown, task: Some(task), http: reqwest::Client::new() }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// GETs an API path with the test token; returns the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response =
            self.http.get(format!("{}{path}", self.url())).bearer_auth(TEST_TOKEN).send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Waits until the backend has heard from `n` agents, so an exec counts them as targets.
    pub async fn wait_for_agents(&self, n: usize) {
        crate::eventually(&format!("{n} agents in /api/agents"), PATIENCE, || async {
            (self.get_all("/api/agents?limit=1000").await.len() == n).then_some(())
        })
        .await;
    }

    /// Every row of a list (`path` may carry a query), following each page's `next`; each page must succeed.
    pub async fn get_all(&self, path: &str) -> Vec<serde_json::Value> {
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page_path = match &cursor {
                Some(cursor) => format!("{path}{sep}cursor={cursor}"),
                None => path.to_owned(),
            };
            let (status, body) = self.get(&page_path).await;
            assert_eq!(status, 200, "{page_path}: {body}");
            rows.extend(body["items"].as_array().unwrap_or_else(|| panic!("{page_path}: not a page: {body}")).clone());
            match body["next"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return rows,
            }
        }
    }

    /// `GET /api/executions/{exec}`, which must succeed.
    pub async fn execution(&self, exec: &str) -> serde_json::Value {
        let (status, view) = self.get(&format!("/api/executions/{exec}")).await;
        assert_eq!(status, 200, "/api/executions/{exec}: {view}");
        view
    }

    /// Polls the execution until `ready` says so, or panics naming `what`.
    pub async fn execution_until(
        &self,
        exec: &str,
        what: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        crate::eventually(what, PATIENCE, || async {
            let view = self.execution(exec).await;
            ready(&view).then_some(view)
        })
        .await
    }

    /// POSTs JSON to an API path with the shared test token.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, TEST_TOKEN, Some(body)).await
    }

    /// Any request with any token (e.g. an [`operator_token`]); returns the status and the JSON body (or null).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url())).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Stops the backend gracefully and returns its data dir, for a restart.
    pub async fn stop(mut self) -> TempDir {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("backend task panicked").expect("backend failed");
        }
        self.data_dir.take().expect("data dir")
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The real `kanade` binary (a test passes its `env!("CARGO_BIN_EXE_kanade")`) pointed at `nats_url` and nothing
/// else from the caller's environment: no backend, no tokens, no operator name.
pub fn kanade_cli(binary: &str, nats_url: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env("KANADE_NATS_URL", nats_url)
        .envs(crate::security::fleet().cli_env())
        .env_remove("KANADE_BACKEND_URL")
        .env_remove("KANADE_AUTH_TOKEN")
        .env_remove("KANADE_NATS_TOKEN")
        .env_remove("KANADE_OPERATOR")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}
