//! Asking one agent directly: `agents.<pc>.ping`, which the agent answers with a fresh heartbeat. Shared by
//! `kanade ping`, `kanade run` (which pings before it fires) and the backend's `POST /api/agents/{pc}/ping`.

use std::time::{Duration, Instant};

use async_nats::{Client, Request, RequestErrorKind};
use kanade_shared::PcId;
use kanade_shared::subject;
use kanade_shared::wire::Heartbeat;

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("no agent `{0}` is connected: nobody answered its ping")]
    NoAgent(PcId),
    #[error("agent `{0}` did not answer within {1}")]
    TimedOut(PcId, String),
    #[error("agent `{0}` answered with an unreadable heartbeat")]
    Malformed(PcId, #[source] serde_json::Error),
    #[error("ping to `{0}` failed")]
    Other(PcId, #[source] async_nats::RequestError),
}

/// Pings `pc` and returns its heartbeat and the round-trip time.
pub async fn ping(client: &Client, pc: &PcId, timeout: Duration) -> Result<(Heartbeat, Duration), PingError> {
    let started = Instant::now();
    let reply =
        client.send_request(subject::ping(pc), Request::new().timeout(Some(timeout))).await.map_err(|err| match err
            .kind()
        {
            // The server says at once that nobody subscribes: the agent is not connected (not merely slow).
            RequestErrorKind::NoResponders => PingError::NoAgent(pc.clone()),
            RequestErrorKind::TimedOut => {
                PingError::TimedOut(pc.clone(), humantime::format_duration(timeout).to_string())
            }
            _ => PingError::Other(pc.clone(), err),
        })?;
    let rtt = started.elapsed();
    let heartbeat = serde_json::from_slice(&reply.payload).map_err(|err| PingError::Malformed(pc.clone(), err))?;
    Ok((heartbeat, rtt))
}
