//! The agent's NATS connection: outbound only, over TLS pinned to the fleet's CA, as its own NATS user (the
//! `.creds` file it received at enrolment, read again at every reconnect so a renewed credential takes over),
//! with replies to its requests on an inbox prefix only it may read; unlimited reconnects with jittered backoff,
//! every state change logged, and a signal on each (re)connect so the outbox drains and a heartbeat goes out at
//! once. Several agents (the fleet simulator's) may share one connection; each watches the same signal.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{AuthError, Client, ConnectOptions, Event};
use kanade_shared::config::NatsConfig;
use tokio::sync::watch;

/// Who the connection is: the credential file (none for a development broker without auth) and the inbox prefix
/// its permissions allow.
#[derive(Debug, Clone)]
pub struct Identity {
    pub creds: Option<PathBuf>,
    pub inbox_prefix: String,
}

/// Delay before reconnect attempt `attempts`: doubling from 100 ms to 5 s, with up to 50% random extra so that a
/// fleet that lost its broker together does not come back in lockstep.
pub fn reconnect_delay(attempts: usize) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).min(6)).unwrap_or(6);
    let base = Duration::from_millis(100).saturating_mul(2u32.pow(exponent)).min(Duration::from_secs(5));
    let jitter = rand::random_range(0.0..0.5);
    base.mul_f64(1.0 + jitter)
}

/// Options that authenticate with the `.creds` file at `path`, read again at every connect (a renewed credential is
/// used from the next reconnect on).
pub fn with_creds_file(path: PathBuf) -> ConnectOptions {
    ConnectOptions::with_auth_callback(move |nonce| {
        let path = path.clone();
        async move {
            let (jwt, signature) =
                kanade_shared::security::creds::answer_file(&path, &nonce).map_err(AuthError::new)?;
            let mut auth = async_nats::Auth::new();
            auth.jwt = Some(jwt);
            auth.signature = Some(signature);
            Ok(auth)
        }
    })
}

/// Counts (re)connects; every agent on the connection wakes when it changes.
pub type Connects = watch::Receiver<u64>;

/// Connects (or keeps trying in the background: the agent starts without a broker) and returns the client and
/// the connect counter.
pub async fn connect(
    nats: &NatsConfig,
    name: &str,
    identity: &Identity,
) -> Result<(Client, Connects), async_nats::ConnectError> {
    let (on_connect, connects) = watch::channel(0u64);
    let on_connect = std::sync::Arc::new(on_connect);
    let options = match identity.creds.clone() {
        Some(path) => with_creds_file(path),
        None => ConnectOptions::new(),
    };
    let mut options = options
        .name(name)
        .custom_inbox_prefix(&identity.inbox_prefix)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(20))
        .event_callback(move |event| {
            let on_connect = on_connect.clone();
            async move {
                match &event {
                    Event::Connected => {
                        tracing::info!("connected to NATS");
                        on_connect.send_modify(|n| *n += 1);
                    }
                    Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                    Event::SlowConsumer(sid) => tracing::warn!(subscription = sid, "slow consumer: messages dropped"),
                    other => tracing::info!(event = %other, "NATS connection event"),
                }
            }
        });
    if let Some(ca) = &nats.ca {
        // Only the fleet's CA: async-nats loads the system's roots only when none is given.
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some(token) = &nats.token {
        options = options.token(token.clone());
    }
    let client = options.connect(nats.urls.as_slice()).await?;
    Ok((client, connects))
}

/// Waits until the server has processed everything this client sent before: a request nobody answers comes back
/// as "no responders" only after the server handled it, and a connection's protocol is handled in order. (The
/// client's `flush` only empties its own write buffer.)
pub async fn round_trip(client: &Client) -> Result<(), async_nats::RequestError> {
    match client.request(client.new_inbox(), bytes::Bytes::new()).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(reconnect_delay(1) < Duration::from_millis(151));
        assert!(reconnect_delay(3) >= Duration::from_millis(400));
        for attempts in [10, 1_000, usize::MAX] {
            let delay = reconnect_delay(attempts);
            assert!(delay >= Duration::from_secs(5) && delay <= Duration::from_millis(7_500), "{delay:?}");
        }
    }
}
