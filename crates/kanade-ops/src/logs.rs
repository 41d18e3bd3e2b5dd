//! Asking one agent for the tail of its own log: `agents.<pc>.logs`, core request/reply, no server state. Shared by
//! `kanade logs`; the agent answers from its own log files only (the request names no path).

use std::time::Duration;

use async_nats::{Client, Request, RequestErrorKind};
use kanade_shared::PcId;
use kanade_shared::subject;
use kanade_shared::wire::{LogsReply, LogsRequest};

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("no agent `{0}` is connected: nobody answered the log request")]
    NoAgent(PcId),
    #[error("agent `{0}` did not answer within {1}")]
    TimedOut(PcId, String),
    #[error("agent `{0}` answered with an unreadable reply")]
    Malformed(PcId, #[source] serde_json::Error),
    /// The agent answered, but not with lines: `code` is the agent's (`no_log_file`, `invalid_request`, `busy`,
    /// `unreadable`, or a newer one), `message` says why.
    #[error("agent `{pc}`: {message}")]
    Refused { pc: PcId, code: String, message: String },
    #[error("cannot encode the log request")]
    Encode(#[source] serde_json::Error),
    #[error("log request to `{0}` failed")]
    Other(PcId, #[source] async_nats::RequestError),
}

/// Asks `pc` for its log as `request` says and waits up to `timeout` for the answer.
pub async fn request(
    client: &Client,
    pc: &PcId,
    request: &LogsRequest,
    timeout: Duration,
) -> Result<LogsReply, LogsError> {
    let body = serde_json::to_vec(request).map_err(LogsError::Encode)?;
    let reply = client
        .send_request(subject::logs(pc), Request::new().payload(body.into()).timeout(Some(timeout)))
        .await
        .map_err(|err| match err.kind() {
            RequestErrorKind::NoResponders => LogsError::NoAgent(pc.clone()),
            RequestErrorKind::TimedOut => {
                LogsError::TimedOut(pc.clone(), humantime::format_duration(timeout).to_string())
            }
            _ => LogsError::Other(pc.clone(), err),
        })?;
    let reply: LogsReply =
        serde_json::from_slice(&reply.payload).map_err(|err| LogsError::Malformed(pc.clone(), err))?;
    match reply.refused {
        Some(refusal) => Err(LogsError::Refused { pc: pc.clone(), code: refusal.code, message: refusal.message }),
        None => Ok(reply),
    }
}
