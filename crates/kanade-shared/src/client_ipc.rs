//! The local IPC between the agent and kanade-client, the app in the signed-in user's session (protocol 1). Both
//! sides compile against these types; `docs/CLIENT-IPC.md` is the same contract in prose.
//!
//! - **Transport.** A Unix domain socket (Linux, macOS: `agent.client_socket`, by default
//!   [`DEFAULT_SOCKET`]) or a named pipe (Windows: [`PIPE_NAME`]). Only the user signed in at the PC's screen may
//!   connect: the agent reads the peer's account from the socket (`SO_PEERCRED`) or the pipe client's token and
//!   refuses anyone else. A client acts as that account, and nothing it sends can change that.
//! - **Framing.** JSON-RPC 2.0 messages, one per line: UTF-8 JSON ended by `\n`, at most [`MAX_LINE_BYTES`] with
//!   the newline. No batches.
//! - **Session.** The client's first request is [`HELLO`], naming the protocol versions it speaks; the agent picks
//!   one (or refuses with `unsupported_protocol` and closes) and says who the client is. Anything else first is
//!   refused with `hello_first` and closed.
//! - **Requests** carry an `id` (a number or a string) and get exactly one response with that id, `result` or
//!   `error` (`code`, `message`, and `data.reason`, a stable snake_case word). **Pushes** are JSON-RPC
//!   notifications from the agent (no `id`), sent only after `hello`.
//! - **Bounds.** An over-long line, more than [`MAX_REQUESTS_PER_SECOND`] requests a second sustained (bursts of
//!   [`REQUEST_BURST`]), a client that reads its pushes too slowly, or more than [`MAX_CLIENTS`] clients at once:
//!   the agent answers with an error saying which, then closes that connection. Nothing a client sends can stop the
//!   agent or hold up another client.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{ExecId, JobId, NoticeId, PcId};
use crate::wire::{HeldState, Notice, Reason, ResultStatus};

/// The protocol version this build speaks.
pub const PROTOCOL: u32 = 1;
/// The longest message, with its newline.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Requests a client may send per second, sustained.
pub const MAX_REQUESTS_PER_SECOND: u32 = 20;
/// Requests a client may send at once before the sustained rate applies.
pub const REQUEST_BURST: u32 = 40;
/// Clients connected at once (a user's app, perhaps a second window or a script).
pub const MAX_CLIENTS: usize = 8;
/// Pushes waiting for one client to read them; more and the client is too slow, and is closed.
pub const MAX_PENDING_PUSHES: usize = 256;
/// How long a new connection has to say `hello`.
pub const HELLO_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);
/// The socket's default path on Linux and macOS.
pub const DEFAULT_SOCKET: &str = "/run/kanade-agent/client.sock";
/// The named pipe on Windows.
pub const PIPE_NAME: &str = r"\\.\pipe\kanade-agent";
/// The longest client name `hello` accepts.
pub const MAX_CLIENT_NAME: usize = 128;

/// Methods a client may call.
pub const HELLO: &str = "hello";
pub const STATUS: &str = "status";
pub const NOTIFICATIONS_LIST: &str = "notifications.list";
pub const NOTIFICATIONS_ACK: &str = "notifications.ack";
pub const CATALOGUE_LIST: &str = "catalogue.list";
pub const CATALOGUE_RUN: &str = "catalogue.run";
pub const MAINTENANCE_LIST: &str = "maintenance.list";
pub const MAINTENANCE_RUN_NOW: &str = "maintenance.run_now";
pub const MAINTENANCE_DEFER: &str = "maintenance.defer";

/// Pushes the agent sends.
pub const STATUS_CHANGED: &str = "status.changed";
pub const NOTIFICATION_NEW: &str = "notification.new";
pub const MAINTENANCE_CHANGED: &str = "maintenance.changed";
pub const RUN_FINISHED: &str = "run.finished";

/// JSON-RPC 2.0's error codes, and the one this protocol uses for everything the agent refuses.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Refused by the agent; `data.reason` says why.
    pub const REFUSED: i64 = -32000;
}

/// The `"2.0"` every message carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonRpc2;

impl Serialize for JsonRpc2 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("2.0")
    }
}

impl<'de> Deserialize<'de> for JsonRpc2 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "2.0" {
            Ok(JsonRpc2)
        } else {
            Err(serde::de::Error::custom(format!("`jsonrpc` is `{text}`, not `2.0`")))
        }
    }
}

/// A request's id: a number or a string, echoed in its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(u64),
    Text(String),
}

/// A request, client to agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub jsonrpc: JsonRpc2,
    pub id: RequestId,
    pub method: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

impl Request {
    pub fn new(id: u64, method: &str, params: Value) -> Self {
        Self { jsonrpc: JsonRpc2, id: RequestId::Number(id), method: method.to_owned(), params }
    }

    /// The params as `T`; no params reads as `{}`.
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, RpcError> {
        let params = if self.params.is_null() { Value::Object(serde_json::Map::new()) } else { self.params.clone() };
        serde_json::from_value(params)
            .map_err(|err| RpcError::new(code::INVALID_PARAMS, "invalid_params", err.to_string()))
    }
}

/// A response, agent to client: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: JsonRpc2,
    /// `null` when the request could not be read far enough to find its id.
    pub id: Option<RequestId>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Result(Value),
    Error(RpcError),
}

impl Response {
    pub fn ok(id: RequestId, result: impl Serialize) -> Self {
        let result = serde_json::to_value(result).unwrap_or(Value::Null);
        Self { jsonrpc: JsonRpc2, id: Some(id), outcome: Outcome::Result(result) }
    }

    pub fn error(id: Option<RequestId>, error: RpcError) -> Self {
        Self { jsonrpc: JsonRpc2, id, outcome: Outcome::Error(error) }
    }

    /// The result as `T`, or the error.
    pub fn into_result<T: serde::de::DeserializeOwned>(self) -> Result<T, RpcError> {
        match self.outcome {
            Outcome::Result(value) => serde_json::from_value(value)
                .map_err(|err| RpcError::new(code::INTERNAL_ERROR, "bad_response", err.to_string())),
            Outcome::Error(err) => Err(err),
        }
    }
}

/// A push, agent to client (a JSON-RPC notification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    pub jsonrpc: JsonRpc2,
    pub method: String,
    pub params: Value,
}

impl Push {
    pub fn new(method: &str, params: impl Serialize) -> Self {
        Self {
            jsonrpc: JsonRpc2,
            method: method.to_owned(),
            params: serde_json::to_value(params).unwrap_or(Value::Null),
        }
    }
}

/// What the agent sends: a response or a push. Read by a client line by line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FromAgent {
    Response(Response),
    Push(Push),
}

/// An error as JSON-RPC carries it, with the stable reason in `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({})", self.reason())]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<ErrorData>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorData {
    /// A stable snake_case word: `hello_first`, `not_the_signed_in_user`, `line_too_long`, `too_fast`, ...
    pub reason: String,
}

impl RpcError {
    pub fn new(code: i64, reason: &str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: Some(ErrorData { reason: reason.to_owned() }) }
    }

    /// Refused by the agent for `reason`.
    pub fn refused(reason: &str, message: impl Into<String>) -> Self {
        Self::new(code::REFUSED, reason, message)
    }

    pub fn reason(&self) -> &str {
        self.data.as_ref().map_or("", |d| d.reason.as_str())
    }
}

/// Reads one line from a client as a request, or says what is wrong with it (its id, when it could be read).
pub fn parse_request(line: &str) -> Result<Request, (Option<RequestId>, RpcError)> {
    let value: Value = serde_json::from_str(line)
        .map_err(|err| (None, RpcError::new(code::PARSE_ERROR, "parse_error", format!("not JSON: {err}"))))?;
    if value.is_array() {
        return Err((None, RpcError::new(code::INVALID_REQUEST, "invalid_request", "batches are not supported")));
    }
    let id = value.get("id").and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
    serde_json::from_value(value).map_err(|err| {
        (id, RpcError::new(code::INVALID_REQUEST, "invalid_request", format!("not a JSON-RPC 2.0 request: {err}")))
    })
}

/// `hello`'s params: the protocol versions the client speaks, and what it is (for the agent's log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    pub protocols: Vec<u32>,
    #[serde(default)]
    pub client: String,
}

/// `hello`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The version chosen for this connection.
    pub protocol: u32,
    pub agent_version: String,
    pub pc_id: PcId,
    pub hostname: String,
    /// The account the client acts as (the peer's, from the socket or the pipe).
    pub user: String,
}

/// `status`'s result, and the params of the `status.changed` push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub pc_id: PcId,
    pub hostname: String,
    pub agent_version: String,
    /// Whether the agent is connected to the broker now.
    pub connected: bool,
    /// The runs the agent holds now (waiting or running), oldest first.
    #[serde(default)]
    pub running: Vec<RunningRun>,
    /// Notifications shown and not yet acknowledged (the tray's badge).
    #[serde(default)]
    pub unread_notifications: usize,
    /// Maintenance waiting for the user (the tray's badge too).
    #[serde(default)]
    pub pending_maintenance: usize,
}

/// A notification as the client shows it: the operator's, and whether (and by whom) it was acknowledged. The
/// params of the `notification.new` push, and the items of `notifications.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownNotice {
    #[serde(flatten)]
    pub notice: Notice,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
}

/// `notifications.list`'s result: those shown now, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeList {
    pub notices: Vec<ShownNotice>,
}

/// `catalogue.run`'s params; its result is [`crate::wire::SelfServiceStarted`]. `catalogue.list`'s result is
/// [`crate::wire::CatalogueReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    pub job_id: JobId,
}

/// `notifications.ack`'s params; its result is the [`ShownNotice`], acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckParams {
    pub id: NoticeId,
}

/// Maintenance held for the user's consent, as `maintenance.list` and the `maintenance.changed` push show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRun {
    pub exec_id: ExecId,
    pub job_id: JobId,
    /// The job's name for users.
    pub title: String,
    /// What the operator tells the user.
    pub message: String,
    /// `asking`: waiting for the user's answer; `deferred`: put off; `quiet`: quiet hours.
    pub state: HeldState,
    /// When it runs at the latest as things stand.
    pub until: DateTime<Utc>,
    /// When it runs whatever the answer.
    pub deadline: DateTime<Utc>,
    /// How often the user may still put it off.
    pub deferrals_left: u32,
}

/// `maintenance.list`'s result and the `maintenance.changed` push's params: soonest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceList {
    pub items: Vec<PendingRun>,
}

/// `maintenance.run_now`'s params; its result is the [`MaintenanceList`] after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunNowParams {
    pub exec_id: ExecId,
}

/// `maintenance.defer`'s params: put it off for `minutes` (1-10,080; to the deadline at most). Its result is the
/// [`MaintenanceList`] after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeferParams {
    pub exec_id: ExecId,
    pub minutes: u32,
}

/// The `run.finished` push: a run on this PC ended (a self-service run's result, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedRun {
    pub exec_id: ExecId,
    pub job_id: JobId,
    pub status: ResultStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub finished_at: DateTime<Utc>,
}

/// A run the agent holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningRun {
    pub exec_id: ExecId,
    pub job_id: JobId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_read_and_their_faults_are_told_apart() {
        let hello = parse_request(r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocols":[1]}}"#).unwrap();
        assert_eq!(hello.id, RequestId::Number(1));
        assert_eq!(hello.params::<HelloParams>().unwrap().protocols, vec![1]);
        let status = parse_request(r#"{"jsonrpc":"2.0","id":"a","method":"status"}"#).unwrap();
        assert_eq!(status.id, RequestId::Text("a".into()));
        assert!(status.params::<serde_json::Map<String, Value>>().unwrap().is_empty());

        let code_of = |line: &str| parse_request(line).unwrap_err();
        assert_eq!(code_of("{not json").1.code, code::PARSE_ERROR);
        assert_eq!(code_of("[]").1.reason(), "invalid_request");
        let (id, err) = code_of(r#"{"jsonrpc":"1.0","id":7,"method":"status"}"#);
        assert_eq!((id, err.code), (Some(RequestId::Number(7)), code::INVALID_REQUEST));
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","method":"status"}"#).1.code, code::INVALID_REQUEST, "no id");
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","id":1,"method":"x","extra":1}"#).1.code, code::INVALID_REQUEST);
        assert_eq!(code_of(r#"{"jsonrpc":"2.0","id":-1,"method":"x"}"#).0, None, "an id that is no id is not echoed");
        let bad = hello.clone();
        let bad = Request { params: json!({"protocols": "one"}), ..bad };
        assert_eq!(bad.params::<HelloParams>().unwrap_err().code, code::INVALID_PARAMS);
    }

    #[test]
    fn responses_and_pushes_have_json_rpcs_shape() {
        let ok = Response::ok(RequestId::Number(3), json!({"a": 1}));
        assert_eq!(serde_json::to_value(&ok).unwrap(), json!({"jsonrpc": "2.0", "id": 3, "result": {"a": 1}}));
        let err = Response::error(None, RpcError::refused("too_fast", "slow down"));
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32000, "message": "slow down", "data": {"reason": "too_fast"}}})
        );
        let push = Push::new(STATUS_CHANGED, json!({"connected": true}));
        let line = serde_json::to_string(&push).unwrap();
        assert_eq!(serde_json::from_str::<FromAgent>(&line).unwrap(), FromAgent::Push(push));
        let line = serde_json::to_string(&err).unwrap();
        assert!(matches!(serde_json::from_str::<FromAgent>(&line).unwrap(), FromAgent::Response(r) if r.id.is_none()));
        assert_eq!(ok.into_result::<serde_json::Map<String, Value>>().unwrap()["a"], 1);
    }
}
