//! kanade's backend: projects JetStream into SQL and serves the HTTP API.
//!
//! [`Backend::bind`] opens the database, connects to NATS and binds the listener (so tests can bind port 0 and
//! read the address); [`Bound::with_security`] turns enrolment on (`[security]`: the fleet's keys, read and checked
//! then); [`Bound::serve`] runs the projectors, the enrolment service and the server until shutdown.

pub mod accounts;
pub mod api;
pub mod caller;
pub mod config;
pub mod db;
pub mod engine;
pub mod enrollment;
pub mod facts;
pub mod issuer;
pub mod leader;
pub mod live;
pub mod metrics;
pub mod perf_history;
pub mod perf_live;
pub mod projector;
pub mod rollout;
pub mod scheduler;
pub mod scope;
pub mod selfservice;
pub mod version;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::config::{AuthConfig, BackendConfig, SecurityConfig};
use crate::db::Db;

pub struct Backend;

pub struct Bound {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    js: async_nats::jetstream::Context,
    request_timeout: std::time::Duration,
    perf_retention: std::time::Duration,
    standing_every: std::time::Duration,
    /// The enrolment service's subscriptions, made at bind.
    requests: issuer::Requests,
    /// kanade-client's self-service requests, subscribed at bind.
    selfservice: async_nats::Subscriber,
    /// The backend's NATS connection settings: the system connection of [`Bound::with_security`] shares its URLs
    /// and CA.
    nats_config: kanade_shared::config::NatsConfig,
    /// The one-time setup token printed at bind, when the database has no user.
    setup_token: Option<String>,
}

impl Backend {
    pub async fn bind(config: BackendConfig) -> anyhow::Result<Bound> {
        let url = match (&config.database_url, &config.data_dir) {
            (Some(url), _) => url.clone(),
            (None, Some(dir)) => {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create data dir `{}`", dir.display()))?;
                db::default_url(dir)
            }
            (None, None) => db::DEFAULT_URL.to_owned(),
        };
        let db = Db::connect(&url).await.with_context(|| format!("database `{}`", db::redact_url(&url)))?;
        let options = kanade_ops::nats::options(&config.nats, "kanade-backend")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(|event| async move { tracing::info!(event = %event, "NATS connection event") });
        let nats = options.connect(config.nats.urls.as_slice()).await.context("cannot set up the NATS connection")?;
        // Subscribed before the backend is handed out, so requests are answered from the moment it serves (the
        // flush makes sure the broker has the subscriptions when it is up; it waits for nothing when it is not).
        let requests = issuer::subscribe(&nats).await.context("cannot subscribe to enrolment requests")?;
        let selfservice = selfservice::subscribe(&nats).await.context("cannot subscribe to self-service requests")?;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), nats.flush()).await;
        let listener = tokio::net::TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("cannot listen on `{}`", config.listen_addr))?;
        tracing::info!(
            addr = %listener.local_addr()?,
            database = %db::redact_url(&url),
            nats = ?config.nats.urls,
            auth = match &config.auth {
                AuthConfig::Disabled => "disabled".to_owned(),
                AuthConfig::Tokens { shared, operators } => format!(
                    "{}{} operator token(s)",
                    if shared.is_some() { "shared token, " } else { "" },
                    operators.len()
                ),
            },
            "kanade-backend listening"
        );
        if let AuthConfig::Tokens { shared: Some(_), .. } = &config.auth {
            tracing::warn!(
                "the static token (auth.static_token, KANADE_AUTH_STATIC_TOKEN) acts as admin on the whole fleet and \
                 proves no one's identity: it is for bootstrap and development; sign in with operator accounts \
                 (`kanade login`) and API tokens instead"
            );
        }
        let session_key = api::session_signing_key(&config.sessions, &db)
            .await
            .context("cannot read or store the key session tokens are signed with")?;
        if let Err(err) = db.prune_sessions(chrono::Utc::now().timestamp_millis()).await {
            tracing::warn!(error = %err, "cannot delete ended sessions; trying again at the next start");
        }
        let setup_token = match &config.auth {
            AuthConfig::Disabled => None,
            AuthConfig::Tokens { .. } => first_admin_setup(&db, listener.local_addr()?).await?,
        };
        let js = async_nats::jetstream::new(nats.clone());
        let live = live::Publisher::new(nats.clone());
        let engine = engine::Engine::new(db.clone(), nats.clone(), live.clone());
        let shutdown = CancellationToken::new();
        let watches = Arc::new(perf_live::Watches::new(nats.clone(), config.perf_max_watches, shutdown.clone()));
        let instance = config.instance.as_ref().map_or_else(default_instance, ToString::to_string);
        let leadership = Arc::new(leader::Leadership::new(instance));
        let state = Arc::new(AppState {
            db,
            nats,
            auth: config.auth,
            offline_after: config.offline_after,
            stale_after: config.stale_after,
            engine,
            live,
            hub: Arc::new(live::Hub::default()),
            shutdown,
            metrics: Arc::new(metrics::Metrics::new()),
            watches,
            leadership,
            issuer: None,
            sessions: Arc::new(api::Sessions::new(&config.sessions, session_key)),
        });
        Ok(Bound {
            listener,
            state,
            js,
            request_timeout: api::REQUEST_TIMEOUT,
            perf_retention: config.perf_retention,
            standing_every: scheduler::STANDING_EVERY,
            requests,
            selfservice,
            nats_config: config.nats,
            setup_token,
        })
    }
}

/// With no user in the database, a one-time setup token, stored as a hash and printed with the command that makes
/// the first admin (never a default password); with users, any setup token left from before is deleted. Each start
/// without users prints a new one; any of them works, once, until the first admin exists.
async fn first_admin_setup(db: &Db, addr: SocketAddr) -> anyhow::Result<Option<String>> {
    if db.count_users().await.context("cannot count operator accounts")? > 0 {
        db.clear_setup_tokens().await.context("cannot delete spent setup tokens")?;
        return Ok(None);
    }
    let token = accounts::SecretToken::generate(accounts::TokenKind::Setup);
    db.add_setup_token(&token.secret_hash(), chrono::Utc::now().timestamp_millis())
        .await
        .context("cannot store the setup token")?;
    let command = format!("kanade --backend-url http://{addr} user add <name> --role admin --setup-token {token}");
    // Through the log, which is stderr unless `[log] file` says otherwise: where the person starting it looks, and
    // where a service's output goes. A warning, so the default level shows it.
    tracing::warn!(
        setup_token = %token,
        "\n{rule}\nno operator account exists yet: create the first admin, once, with\n\n    {command}\n\n\
         (the setup token works until the first admin exists; behind a proxy, use its URL)\n{rule}",
        rule = "=".repeat(100),
    );
    Ok(Some(token.to_string()))
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// How long a request may take to produce its response (not its body: a live stream goes on). For tests that
    /// show a stream outlives it.
    pub fn with_request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How many live streams this replica serves at once, in place of [`live::MAX_STREAMS`]. For tests.
    pub fn with_stream_limit(mut self, streams: usize) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.hub = Arc::new(live::Hub::new(streams));
        }
        self
    }

    /// How many PCs this replica relays live performance of at once, in place of the config's. For tests.
    pub fn with_perf_watch_limit(mut self, watches: usize) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.watches = Arc::new(perf_live::Watches::new(state.nats.clone(), watches, state.shutdown.clone()));
        }
        self
    }

    /// How often the leader looks after once-per-PC schedules, in place of [`scheduler::STANDING_EVERY`]. For tests.
    pub fn with_standing_every(mut self, every: std::time::Duration) -> Self {
        self.standing_every = every;
        self
    }

    /// Turns enrolment on (`[security]`): reads the fleet's keys from `security.dir` and checks that they belong
    /// together; the system connection that pushes revocations is made when the backend serves. Fails, naming the
    /// file, when one is missing or wrong.
    pub fn with_security(mut self, security: &SecurityConfig) -> anyhow::Result<Self> {
        let issuer = issuer::Issuer::open(security, &self.nats_config)?;
        let state = Arc::get_mut(&mut self.state).context("the backend's state is shared before it serves")?;
        state.issuer = Some(Arc::new(issuer));
        tracing::info!(
            dir = %security.dir.display(),
            credential_ttl = %humantime::format_duration(security.credential_ttl),
            approve_enrollments = security.approve_enrollments,
            "enrolment on"
        );
        Ok(self)
    }

    /// Gives the backend its signing key (PKCS#8 PEM at `path`): what it fires, kills and revokes is signed with it,
    /// and agents obey it as far as the trust list lets the key (`backend`) act.
    pub fn with_signing_key(self, path: &std::path::Path) -> anyhow::Result<Self> {
        let key = kanade_ops::signing::read_key(path)?;
        tracing::info!(key = %key.public_key(), file = %path.display(), "signing what the backend sends with this key");
        self.state.engine.set_signer(key);
        Ok(self)
    }

    /// The one-time setup token this backend printed (the database had no user), for tests that make the first
    /// admin.
    pub fn setup_token(&self) -> Option<&str> {
        self.setup_token.as_deref()
    }

    /// The read model, for tests that count rows.
    pub fn db(&self) -> Db {
        self.state.db.clone()
    }

    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let db = self.state.db.clone();
        let live = self.state.live.clone();
        // Live streams end when the backend stops, or graceful shutdown would wait for their clients forever.
        let streams_end = self.state.shutdown.clone();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                streams_end.cancel();
            }
        });
        let notes = live::Hub::subscribe_notes(&self.state.nats).await.context("cannot subscribe to change notes")?;
        let hub = tokio::spawn(self.state.hub.clone().run(self.state.nats.clone(), notes, shutdown.clone()));
        let (js, token) = (&self.js, &shutdown);
        let parts = projector::Parts {
            client: self.state.nats.clone(),
            js: js.clone(),
            db: db.clone(),
            live: live.clone(),
            metrics: self.state.metrics.clone(),
        };
        let results = tokio::spawn(projector::project::<projector::Results>(parts.clone(), token.clone()));
        let events = tokio::spawn(projector::project::<projector::Events>(parts.clone(), token.clone()));
        let consents = tokio::spawn(projector::project::<projector::Consents>(parts.clone(), token.clone()));
        let audit = tokio::spawn(projector::project::<projector::Audit>(parts.clone(), token.clone()));
        let timeline = tokio::spawn(projector::project::<projector::Timeline>(parts.clone(), token.clone()));
        let inventory = tokio::spawn(projector::project::<projector::Inventory>(parts.clone(), token.clone()));
        let facts = tokio::spawn(projector::project::<projector::JobFacts>(parts.clone(), token.clone()));
        let perf = tokio::spawn(projector::project::<projector::Perf>(parts, token.clone()));
        let perf_sweep = tokio::spawn(perf_sweep(db.clone(), self.perf_retention, shutdown.clone()));
        let heartbeats = tokio::spawn({
            let (client, db, live, shutdown) = (self.state.nats.clone(), db.clone(), live.clone(), shutdown.clone());
            let offline_after = self.state.offline_after;
            async move {
                if let Err(err) = projector::heartbeats(client, db, live, offline_after, shutdown).await {
                    tracing::error!(error = format!("{err:#}"), "heartbeat projector stopped");
                }
            }
        });
        let leadership = self.state.leadership.clone();
        let lease = tokio::spawn({
            let (leadership, nats, shutdown) = (leadership.clone(), self.state.nats.clone(), shutdown.clone());
            async move { leadership.run(nats, shutdown).await }
        });
        let engine = tokio::spawn(self.state.engine.clone().run(leadership.clone(), shutdown.clone()));
        let scheduler =
            tokio::spawn(scheduler::Scheduler::new(self.state.clone(), self.standing_every).run(shutdown.clone()));
        let enrollment = tokio::spawn(issuer::answer_requests(self.state.clone(), self.requests, shutdown.clone()));
        let selfservice =
            tokio::spawn(selfservice::answer_requests(self.state.clone(), self.selfservice, shutdown.clone()));
        let revocations = self
            .state
            .issuer
            .clone()
            .map(|issuer| tokio::spawn(issuer::keep_pushed(issuer, db.clone(), shutdown.clone())));
        let app = api::router_with(self.state.clone(), self.request_timeout);
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).await?;
        let _ = results.await;
        let _ = events.await;
        let _ = consents.await;
        let _ = audit.await;
        let _ = timeline.await;
        let _ = inventory.await;
        let _ = facts.await;
        let _ = perf.await;
        let _ = perf_sweep.await;
        let _ = heartbeats.await;
        let _ = engine.await;
        let _ = scheduler.await;
        let _ = enrollment.await;
        let _ = selfservice.await;
        if let Some(revocations) = revocations {
            let _ = revocations.await;
        }
        // Given up last, once nothing decides any more, so a follower takes over at once.
        let _ = lease.await;
        let _ = hub.await;
        // With the broker gone too (a whole host stopping), a flush would wait for a reconnect that never comes.
        if tokio::time::timeout(std::time::Duration::from_secs(2), self.state.nats.flush()).await.is_err() {
            tracing::warn!("NATS unreachable at shutdown; acks not yet sent are redelivered later");
        }
        db.close().await;
        tracing::info!("kanade-backend stopped");
        Ok(())
    }
}

/// An instance id for a backend whose config names none: its host name and a random suffix, new at every start.
fn default_instance() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let suffix: u16 = rand::random();
    let id = kanade_shared::Actor::from_login(&host);
    format!("{}-{suffix:04x}", id.as_str().chars().take(58).collect::<String>())
}

/// How often rollups older than the retention are deleted: often enough that each sweep deletes a few minutes'
/// worth (at 10,000 agents, about 170,000 rows), never a whole day at once.
const PERF_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Deletes performance rollups older than `retention`, now and every [`PERF_SWEEP_EVERY`], until `shutdown`. Every
/// replica sweeps; a delete of what another already deleted is no work.
async fn perf_sweep(db: Db, retention: std::time::Duration, shutdown: CancellationToken) {
    let Ok(retention) = chrono::Duration::from_std(retention) else { return };
    loop {
        match db.prune_perf_rollups(chrono::Utc::now() - retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "performance rollups past their retention deleted"),
            Err(err) => tracing::warn!(error = %err, "cannot delete old performance rollups; trying again later"),
        }
        tokio::select! {
            () = tokio::time::sleep(PERF_SWEEP_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Runs the backend until `shutdown`; with `security`, enrolment is on; with `signing_key`, it can fire.
pub async fn run(
    config: BackendConfig,
    security: Option<SecurityConfig>,
    signing_key: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut bound = Backend::bind(config).await?;
    if let Some(security) = &security {
        bound = bound.with_security(security)?;
    }
    match &signing_key {
        Some(path) => bound = bound.with_signing_key(path)?,
        None => tracing::warn!(
            "no signing key (`[security] signing_key`, KANADE_BACKEND_SIGNING_KEY): firing, killing and revoking are \
             refused, since agents would refuse what this backend sends"
        ),
    }
    bound.serve(shutdown).await
}
