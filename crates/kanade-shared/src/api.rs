//! The HTTP API's contract: every request body, query and response of `kanade-backend`'s `/api`, and the
//! exhaustive list of error codes. The backend serves these types, the CLI reads them, and the OpenAPI document
//! generated from them (`schema/openapi.json`, `GET /api/openapi.json`) is what the dashboard's types are made
//! from. Times are RFC 3339 strings; durations in requests are human (`30s`, `5m`, `24h`), in responses
//! milliseconds.
//!
//! Requests are strict (an unknown field is a 400 naming it); responses are read leniently by the CLI, so an older
//! CLI reads a newer backend's answers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::manifest::StoredJob;
use crate::wire::KillAck;

/// Every error code the API answers with, as `{"error": {"code", "message"}}`. Stable: clients branch on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No or a wrong bearer token (401).
    Unauthorized,
    /// `x-kanade-operator` is not plain ASCII (400).
    InvalidOperator,
    /// A query parameter is malformed or out of range (400).
    InvalidQuery,
    /// A body is not the JSON the route takes, or too large (400, 413).
    InvalidBody,
    /// The body is not `application/json` (415).
    UnsupportedMediaType,
    /// A field of an exec request is wrong: targets, waves, durations (400).
    InvalidRequest,
    /// A job manifest does not validate (400).
    InvalidManifest,
    /// A pc id in the path is malformed (400).
    InvalidPcId,
    /// A job id in the path is malformed (400).
    InvalidJobId,
    /// An exec id in the path is malformed (400).
    InvalidExecId,
    /// A package name or version in the path is malformed (400).
    InvalidPackage,
    /// No such API route (404).
    NotFound,
    /// The route does not take this method (405).
    MethodNotAllowed,
    /// No agent with this pc id has reported (404).
    AgentNotFound,
    /// No agent with this pc id answers on the broker now (404).
    AgentNotConnected,
    /// The agent did not answer a ping in time (504).
    PingTimeout,
    /// The agent answered with something that is not a heartbeat (502).
    BadAgentReply,
    /// No such job in the catalogue (404).
    JobNotFound,
    /// The job is revoked and cannot be fired (409).
    JobRevoked,
    /// No such execution (404).
    ExecutionNotFound,
    /// The execution is not waiting for approval (409).
    NotPendingApproval,
    /// The requester of an execution cannot approve it (403).
    SelfApproval,
    /// The caller's group scope does not cover what the action reaches: `all`, a group or a PC outside it, or an
    /// action on every PC (revoking a job) by a caller scoped to groups (403). The message names what is outside.
    OutOfScope,
    /// The job cannot be fired as it is (its command does not validate, no targets) (422).
    CannotExec,
    /// No such published package (404).
    PackageNotFound,
    /// The broker refused what was asked (422).
    Invalid,
    /// A JetStream resource is missing: run `kanade jetstream setup` (503).
    NotSetUp,
    /// The broker cannot be reached (503).
    BrokerUnavailable,
    /// This replica serves as many live streams as it may (503).
    TooManyStreams,
    /// This replica relays live performance of as many PCs as `perf_max_watches` allows (503).
    TooManyWatches,
    /// The job has no target of its own and the request names none: name pcs, groups or all (400).
    TargetsRequired,
    /// A result id in the path is malformed (400).
    InvalidResultId,
    /// No result with this id is stored (404).
    ResultNotFound,
    /// The result's whole output is no longer in the `result_output` store (aged out or deleted) (404).
    OutputGone,
    /// A list's `cursor` is not one this list handed out (garbage, tampered with, from another list or an older
    /// backend): start again without one (400).
    InvalidCursor,
    /// A schedule does not validate, or its job is not in the catalogue (400).
    InvalidSchedule,
    /// A schedule id in the path is malformed (400).
    InvalidScheduleId,
    /// No such schedule (404).
    ScheduleNotFound,
    /// Enrolment is not set up on this backend: its config has no `[security]` (503).
    SecurityNotConfigured,
    /// A token id in the path (an enrolment token's or an API token's) is malformed (400).
    InvalidTokenId,
    /// No such enrolment token (404).
    TokenNotFound,
    /// No PC with this pc id has asked to enrol (404).
    EnrollmentNotFound,
    /// The PC's enrolment is not waiting for approval (409).
    NotPendingEnrollment,
    /// The PC's credential is revoked: it has to enrol again first (409).
    EnrollmentRevoked,
    /// The revocation is stored, but the broker has not taken it yet; the backend keeps trying (503).
    RevocationPending,
    /// The caller's role is below the one the route needs (403). Every route declares its role.
    Forbidden,
    /// Sign-in refused: an unknown name, a wrong password or TOTP code, or a disabled account (401).
    LoginFailed,
    /// The password was right, and the account also needs its TOTP code: send `totp` (401).
    TotpRequired,
    /// Too many failed sign-ins for this name: wait as long as `Retry-After` says (429).
    TooManyAttempts,
    /// The session token expired: refresh it (`POST /api/refresh`) or sign in again (401).
    TokenExpired,
    /// The setup token is wrong or used, or accounts exist already (403).
    SetupRefused,
    /// The caller is no operator account (the static token, a config token, auth disabled): sign in as a user (409).
    NoAccount,
    /// No user with this name (404).
    UserNotFound,
    /// A user with this name exists already (409).
    UserExists,
    /// No such API token (among the caller's own, unless an admin asks) (404).
    ApiTokenNotFound,
    /// The change would leave no enabled admin (409).
    LastAdmin,
    /// A request that uses the refresh cookie must carry the `X-Kanade-Csrf` header (403).
    CsrfHeaderMissing,
    /// A failure of the backend's own; the message is generic and the cause is in its log (500).
    Internal,
}

impl ErrorCode {
    /// Every code, in the order above.
    pub const ALL: &'static [ErrorCode] = &[
        Self::Unauthorized,
        Self::InvalidOperator,
        Self::InvalidQuery,
        Self::InvalidBody,
        Self::UnsupportedMediaType,
        Self::InvalidRequest,
        Self::InvalidManifest,
        Self::InvalidPcId,
        Self::InvalidJobId,
        Self::InvalidExecId,
        Self::InvalidPackage,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::AgentNotFound,
        Self::AgentNotConnected,
        Self::PingTimeout,
        Self::BadAgentReply,
        Self::JobNotFound,
        Self::JobRevoked,
        Self::ExecutionNotFound,
        Self::NotPendingApproval,
        Self::SelfApproval,
        Self::OutOfScope,
        Self::CannotExec,
        Self::PackageNotFound,
        Self::Invalid,
        Self::NotSetUp,
        Self::BrokerUnavailable,
        Self::TooManyStreams,
        Self::TooManyWatches,
        Self::TargetsRequired,
        Self::InvalidResultId,
        Self::ResultNotFound,
        Self::OutputGone,
        Self::InvalidCursor,
        Self::InvalidSchedule,
        Self::InvalidScheduleId,
        Self::ScheduleNotFound,
        Self::SecurityNotConfigured,
        Self::InvalidTokenId,
        Self::TokenNotFound,
        Self::EnrollmentNotFound,
        Self::NotPendingEnrollment,
        Self::EnrollmentRevoked,
        Self::RevocationPending,
        Self::Forbidden,
        Self::LoginFailed,
        Self::TotpRequired,
        Self::TooManyAttempts,
        Self::TokenExpired,
        Self::SetupRefused,
        Self::NoAccount,
        Self::UserNotFound,
        Self::UserExists,
        Self::ApiTokenNotFound,
        Self::LastAdmin,
        Self::CsrfHeaderMissing,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::InvalidOperator => "invalid_operator",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidBody => "invalid_body",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidManifest => "invalid_manifest",
            Self::InvalidPcId => "invalid_pc_id",
            Self::InvalidJobId => "invalid_job_id",
            Self::InvalidExecId => "invalid_exec_id",
            Self::InvalidPackage => "invalid_package",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::AgentNotFound => "agent_not_found",
            Self::AgentNotConnected => "agent_not_connected",
            Self::PingTimeout => "ping_timeout",
            Self::BadAgentReply => "bad_agent_reply",
            Self::JobNotFound => "job_not_found",
            Self::JobRevoked => "job_revoked",
            Self::ExecutionNotFound => "execution_not_found",
            Self::NotPendingApproval => "not_pending_approval",
            Self::SelfApproval => "self_approval",
            Self::OutOfScope => "out_of_scope",
            Self::CannotExec => "cannot_exec",
            Self::PackageNotFound => "package_not_found",
            Self::Invalid => "invalid",
            Self::NotSetUp => "not_set_up",
            Self::BrokerUnavailable => "broker_unavailable",
            Self::TooManyStreams => "too_many_streams",
            Self::TooManyWatches => "too_many_watches",
            Self::TargetsRequired => "targets_required",
            Self::InvalidResultId => "invalid_result_id",
            Self::ResultNotFound => "result_not_found",
            Self::OutputGone => "output_gone",
            Self::InvalidCursor => "invalid_cursor",
            Self::InvalidSchedule => "invalid_schedule",
            Self::InvalidScheduleId => "invalid_schedule_id",
            Self::ScheduleNotFound => "schedule_not_found",
            Self::SecurityNotConfigured => "security_not_configured",
            Self::InvalidTokenId => "invalid_token_id",
            Self::TokenNotFound => "token_not_found",
            Self::EnrollmentNotFound => "enrollment_not_found",
            Self::NotPendingEnrollment => "not_pending_enrollment",
            Self::EnrollmentRevoked => "enrollment_revoked",
            Self::RevocationPending => "revocation_pending",
            Self::Forbidden => "forbidden",
            Self::LoginFailed => "login_failed",
            Self::TotpRequired => "totp_required",
            Self::TooManyAttempts => "too_many_attempts",
            Self::TokenExpired => "token_expired",
            Self::SetupRefused => "setup_refused",
            Self::NoAccount => "no_account",
            Self::UserNotFound => "user_not_found",
            Self::UserExists => "user_exists",
            Self::ApiTokenNotFound => "api_token_not_found",
            Self::LastAdmin => "last_admin",
            Self::CsrfHeaderMissing => "csrf_header_missing",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error's body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people; may change between versions.
    pub message: String,
}

/// `GET /api/session`: who the caller is, as the auth layer established it. The dashboard calls it to check a login.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub actor: String,
    /// True when a token proves the name (a session, an API token, a per-operator token); false when it is the
    /// client's claim (`x-kanade-operator`, with the static token or auth disabled).
    pub verified: bool,
    /// `token`, or `disabled` (loopback only; every name is a claim).
    pub auth: String,
    /// The backend's version.
    pub version: String,
    /// What the caller may do. A backend from before accounts treats every caller as `admin`.
    #[serde(default = "admin_role")]
    pub role: crate::access::Role,
    /// Which PCs its actions and reads reach.
    #[serde(default = "fleet_scope")]
    #[schema(schema_with = scope_schema)]
    pub scope: crate::access::GroupScope,
    /// How it proved who it is: `session` (signed in), `api_token`, `operator_token` (`[[auth.operators]]`),
    /// `static_token` (bootstrap and development) or `disabled`.
    #[serde(default)]
    pub method: String,
    /// The account it acts as: a user's name for a session or an API token; none otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// When the session token or API token presented expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

fn admin_role() -> crate::access::Role {
    crate::access::Role::Admin
}

fn fleet_scope() -> crate::access::GroupScope {
    crate::access::GroupScope::Fleet
}

/// A group scope in the OpenAPI document: `"fleet"`, or a list of group names.
fn scope_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["fleet"])))
            .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)).min_items(Some(1)))
            .description(Some("`fleet` (every PC), or the groups whose PCs it reaches"))
            .build(),
    )
}

/// `GET /health`: 200 when the backend can serve (its database answers), else 503.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    pub version: String,
    /// `connected` or `disconnected`.
    pub nats: String,
    /// `ok` or `unavailable`.
    pub database: String,
    /// This backend's instance id (`[backend] instance`).
    #[serde(default)]
    pub instance: String,
    /// The instance holding the leadership lease, as this backend last saw it; none while nobody holds it.
    #[serde(default)]
    pub leader: Option<String>,
    /// Whether this backend leads now: it alone ticks rollouts and fires schedules.
    #[serde(default)]
    pub leading: bool,
}

/// An agent as its latest heartbeat described it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentRow {
    pub pc_id: String,
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub arch: String,
    pub agent_version: String,
    pub groups: Vec<String>,
    pub uptime_secs: i64,
    pub rss_bytes: i64,
    pub cpu_percent: f64,
    pub running: i64,
    pub outbox_pending: i64,
    /// Bytes in the agent's outbox, and whether it is over its cap (new results then go without their output).
    pub outbox_bytes: i64,
    pub outbox_full: bool,
    pub malformed_messages: i64,
    /// The host's CPU busy time (all cores, 0-100) and memory in use (0-100 of its total) in its latest
    /// heartbeat; absent from agents that do not sample them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mem_percent: Option<f64>,
    pub first_seen: DateTime<Utc>,
    /// When the backend received its latest heartbeat (the backend's clock).
    pub last_seen: DateTime<Utc>,
}

/// `GET /api/agents[/{pc}]`: the stored row plus whether the agent is online now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    #[serde(flatten)]
    pub agent: AgentRow,
    /// Its latest heartbeat arrived within the backend's `offline_after`.
    pub online: bool,
    /// `online`, `offline` (silent longer than `offline_after`) or `stale` (silent longer than `stale_after`: most
    /// likely gone for good; `kanade agent rm` forgets it).
    #[serde(default)]
    pub status: String,
}

/// `POST /api/agents/{pc}/ping`: the agent's fresh heartbeat, and how long it took.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PingView {
    pub pc_id: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub uptime_secs: u64,
    /// Round trip, backend -> broker -> agent -> back.
    pub rtt_ms: f64,
}

/// `GET /api/agents/{pc}/config`: every key the layers of `agent_config` set for this agent, with the layer that
/// won, in the order DESIGN.md gives (global < groups sorted by name < pc). Built-in defaults that no layer
/// overrides are not listed: they are the agent's own (its config file or compiled-in values), which the backend
/// does not know. The groups are the ones the agent last reported in its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigView {
    pub pc_id: String,
    pub groups: Vec<String>,
    pub values: Vec<ConfigValue>,
    /// One sentence per key that two of the agent's groups set differently, naming the group that wins.
    pub conflicts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigValue {
    pub key: String,
    pub value: serde_json::Value,
    /// The layer it came from: `global`, `group:<name>` or `pc`.
    pub from: String,
}

/// One run's result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResultRow {
    pub result_id: String,
    pub exec_id: String,
    pub job_id: String,
    pub version: String,
    pub pc_id: String,
    /// `ok`, `failed`, `timeout`, `killed` or `skipped` (a newer agent may report another).
    pub status: String,
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// Why it was skipped or failed without running: `superseded`, `revoked`, `expired`, `interrupted`, ...
    pub reason: Option<String>,
    /// When the backend stored it.
    pub recorded_at: DateTime<Utc>,
    /// Where the whole stdout is kept, when it outgrew `stdout`.
    #[serde(default)]
    pub stdout_full: Option<FullOutputInfo>,
    /// Where the whole stderr is kept, when it outgrew `stderr`.
    #[serde(default)]
    pub stderr_full: Option<FullOutputInfo>,
}

// ---- Whole outputs: `GET /api/results/{result_id}/output` ----

/// A result's output stream kept whole (up to the agent's `output_max_bytes`) because it outgrew the inline part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FullOutputInfo {
    /// Bytes of the whole stream kept; `GET /api/results/{result_id}/output` serves them.
    pub size: u64,
    /// Their SHA-256, lowercase hex.
    pub sha256: String,
    /// The stream outgrew the agent's `output_max_bytes`: what is kept is its beginning.
    pub capped: bool,
    /// Why only the inline part exists (the agent's outbox was full, the store refused it, ...), if so.
    #[serde(default)]
    pub unavailable: Option<String>,
}

/// `GET /api/results/{result_id}/output`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResultOutputQuery {
    /// `stdout` (the default) or `stderr`.
    pub stream: Option<String>,
}

/// Response header of `GET /api/results/{result_id}/output`: `object` (the whole stream, from the object store) or
/// `inline` (the result's own text).
pub const OUTPUT_SOURCE_HEADER: &str = "x-kanade-output-source";
/// Response header of `GET /api/results/{result_id}/output`: `true` when the body is the stream as the script
/// wrote it, `false` when it is only its beginning (cut at the agent's limit or ceiling).
pub const OUTPUT_COMPLETE_HEADER: &str = "x-kanade-output-complete";

/// `GET /api/results` (and `GET /api/executions/{id}/results`, which takes `status` and `limit` only).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResultQuery {
    pub pc_id: Option<String>,
    pub exec_id: Option<String>,
    pub job_id: Option<String>,
    /// `ok`, `failed`, `timeout`, `killed` or `skipped`.
    pub status: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}

/// `GET /api/executions/{id}/results`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExecutionResultsQuery {
    /// `ok`, `failed`, `timeout`, `killed` or `skipped`.
    pub status: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}

/// An operator action, as recorded on `AUDIT`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditRow {
    pub event_id: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
    /// `cli` or `backend`.
    pub source: String,
    pub at: DateTime<Utc>,
}

/// `GET /api/audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// How far back: a duration (`1h`, `7d`) or an RFC 3339 time.
    pub since: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}

/// An operator action as the backend's database holds it, with every field its hash covers, exactly as stored: what
/// `kanade audit verify` recomputes the chain from (`kanade_shared::audit_chain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditChainRow {
    /// Its sequence in stream `AUDIT`: the chain's order.
    pub stream_seq: u64,
    pub event_id: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// `details` as stored: JSON text.
    pub details_json: String,
    /// `cli` or `backend`.
    pub source: String,
    /// `at` in Unix milliseconds, as hashed.
    pub at_ms: i64,
    /// The hash of the event before it; null for an event from before the chain existed.
    pub prev_hash: Option<String>,
    /// Its own hash; null for an event from before the chain existed.
    pub hash: Option<String>,
}

/// `GET /api/audit/chain`: the audit trail in stream order, from a sequence or a time on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditChainQuery {
    /// The first stream sequence to list (default: the first there is).
    pub from_seq: Option<u64>,
    /// Start at the first event, in stream order, whose time is at or after this: a duration (`7d`) or an RFC 3339
    /// time. With `from_seq` too, whichever starts later.
    pub since: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}

/// A manifest as the API takes it (`POST /api/jobs`, `POST /api/deploy`): the YAML text, and the files its
/// `script_file` names (a client cannot make the server read its disk).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestBody {
    pub manifest: String,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Store (and fire) the job as this version instead of the manifest's own (`kanade deploy --version`); checked
    /// as a manifest's version is. The stored manifest text stays as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `POST /api/jobs`: the job as stored, and whether it was `created`, `updated` or `unchanged`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoredView {
    #[serde(flatten)]
    pub job: StoredJob,
    pub action: String,
}

/// `GET /api/jobs[/{id}]`: a stored job, and whether it is revoked now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub job: StoredJob,
    pub revoked: bool,
}

/// `POST /api/jobs/{id}/revoke` and `/unrevoke`: the job's status now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokeView {
    pub job_id: String,
    pub revoked: bool,
}

/// `POST /api/exec/{job}` and `POST /api/jobs/{job}/preview`: targets default to the job's own (with its
/// rollout); naming any fires them all at once, unless `waves` gives a rollout of its own (over the groups named,
/// or over the waves' groups when none are). A job without a target of its own must be given some (else
/// `targets_required`), and its own rollout then runs over the groups (or all) named. `all` stands alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveBody>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pcs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// A duration: `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    /// A duration after sending: `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

/// One wave of a request's own rollout, with a manifest's wave fields and defaults.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaveBody {
    pub group: String,
    /// How long after the previous wave this one is sent: `1h` (default: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Halt the rollout when more than this percentage of the wave's targets fail (default 100: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_pct: Option<f64>,
}

/// `POST /api/jobs/{job}/preview`: what `POST /api/exec/{job}` with the same body would fire at, worked out by the
/// same code at this moment; nothing is sent or stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PreviewView {
    pub job_id: String,
    pub version: String,
    pub require_approval: bool,
    /// A revoked job cannot be fired until it is unrevoked.
    pub revoked: bool,
    /// Known agents the targets match: the `target_count` a fire right now would report.
    pub target_count: usize,
    /// How many of those are online now.
    pub online: usize,
    /// Per rollout wave, how many of the targets it reaches first; empty without a rollout.
    pub waves: Vec<PreviewWave>,
    /// The first 200 targets, sorted.
    pub pcs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PreviewWave {
    pub wave: i64,
    pub group: String,
    pub targets: usize,
}

/// An execution as the API shows it: what was fired, its state, and its progress overall and per wave.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecutionView {
    pub exec_id: String,
    pub job_id: String,
    pub version: String,
    /// `pending_approval`, `rejected`, `starting`, `rolling_out`, `running`, `completed` (every target answered),
    /// `halted`, `superseded`; `external` for a run fired straight over NATS (`kanade run`).
    pub status: String,
    /// Whether nothing the backend sends or waits for is left: `completed`, `halted`, `rejected`, `superseded` or
    /// `external`. Runs a halted or superseded rollout already sent may still be going (`by_status.running`).
    /// Clients stop following an execution when this is true rather than deciding from `status` themselves.
    pub settled: bool,
    pub status_reason: Option<String>,
    /// The targets as fired (`{all, groups, pcs}`); null for an `external` run.
    #[schema(value_type = Option<crate::manifest::Targets>)]
    pub targets: serde_json::Value,
    /// Known agents the targets matched when it was created.
    pub target_count: i64,
    /// Results received (from targets, and from agents that joined a targeted group later).
    pub results: i64,
    /// Targets whose run has neither begun nor reported a result.
    pub pending: i64,
    /// Results per status, and `running`: runs that began and have no result yet.
    pub by_status: BTreeMap<String, i64>,
    pub requested_by: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub waves: Vec<WaveView>,
}

/// One wave of an execution's rollout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WaveView {
    pub wave: i64,
    pub group: String,
    pub delay_ms: i64,
    pub max_failure_pct: f64,
    /// `pending`, `sending`, `sent`, or `cancelled` when the rollout stopped before it.
    pub state: String,
    pub sent_at: Option<DateTime<Utc>>,
    /// When a pending wave will be sent.
    pub due_at: Option<DateTime<Utc>>,
    pub targets: i64,
    pub by_status: BTreeMap<String, i64>,
    pub failure_pct: f64,
}

/// `GET /api/executions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExecutionsQuery {
    pub job_id: Option<String>,
    /// `pending_approval`, `rejected`, `starting`, `rolling_out`, `running`, `completed`, `halted` or
    /// `superseded`.
    pub status: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}

/// `POST /api/executions/{id}/reject`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Why (kept in the execution and the audit trail; up to 500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One target of an execution and where its run is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TargetRow {
    pub pc_id: String,
    /// The 1-based wave that reaches it, 0 without waves; null for a run the backend did not record.
    pub wave: Option<i64>,
    /// `pending` (not begun), `running` (begun, no result yet), or the result's status.
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// A `pending` run held on its PC for its user's consent: where it stands, as the agent last said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldView>,
}

/// Where a run held for its user's consent stands (`client.consent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeldView {
    /// `asking` (the user is asked), `deferred` (put off by `by`), or `quiet` (quiet hours).
    pub state: String,
    /// When it runs at the latest as things stand: the end of the deferral, else the deadline.
    pub until: DateTime<Utc>,
    /// When it runs whatever the user says.
    pub deadline: DateTime<Utc>,
    /// Who put it off last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub deferrals: i64,
    /// When the agent said so.
    pub at: DateTime<Utc>,
}

/// `GET /api/executions/{id}/targets`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TargetsQuery {
    /// `pending`, `running`, or a result status.
    pub status: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}

/// `POST /api/executions/{id}/kill`: what `kanade kill <exec_id>` does, audited the same way.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KillView {
    pub exec_id: String,
    /// The agents that had a running or queued run of it, as they confirmed within the wait.
    pub killed: Vec<KillAck>,
}

/// `GET /api/executions/{id}/output`: whose output to follow (default every target's).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    pub pc_id: Option<String>,
}

/// `GET /api/events`: a change as a client receives it (`event: change`), ids always present (empty: refetch the
/// topic). `topic` is `agents`, `results`, `executions`, `audit`, `jobs`, or `all` (refetch everything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientChange {
    pub topic: String,
    pub ids: Vec<String>,
}

// ---- Lists: keyset pages ----------------------------------------------------------------------------------------

/// One page of a list, in the list's fixed order. `next` is there when more rows may follow: pass it back as
/// `cursor` (with the same filters) for the next page. Paging by the last row's key, not by an offset, means a
/// row is never shown twice or skipped while rows are being added, and every page costs one index range scan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque: only ever pass back what a page gave.
    #[serde(default)]
    pub next: Option<String>,
}

/// The largest `limit` of every list, and the default.
pub const MAX_PAGE_LIMIT: u32 = 1000;
pub const DEFAULT_PAGE_LIMIT: u32 = 100;

/// One part of a row's sort key, inside a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyPart {
    Int(i64),
    Text(String),
}

/// Why a cursor was refused. The offending value is not echoed: a cursor is opaque, and may be long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("cursor is {0} characters; a cursor is at most {MAX_CURSOR_LEN}")]
    TooLong(usize),
    #[error("cursor is not base64url")]
    NotBase64,
    #[error("cursor is not one this backend hands out")]
    Malformed,
    #[error("cursor has version `{0}`; this backend reads version {CURSOR_VERSION}: start again without it")]
    Version(u64),
    #[error("cursor belongs to the `{found}` list, not `{expected}`")]
    WrongList { expected: String, found: String },
}

/// Cursors carry their format's version, so a backend can refuse one an older or newer backend made.
pub const CURSOR_VERSION: u64 = 1;
/// Longer than any key a list hands out (two parts, the longest a 256-character text).
pub const MAX_CURSOR_LEN: usize = 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorBody {
    v: u64,
    l: String,
    k: Vec<KeyPart>,
}

/// The opaque cursor of `list` positioned after the row whose sort key is `key`: base64url (no padding) of
/// `{"v":1,"l":"<list>","k":[...]}`.
pub fn encode_cursor(list: &str, key: Vec<KeyPart>) -> String {
    use base64::Engine as _;
    let body = CursorBody { v: CURSOR_VERSION, l: list.to_owned(), k: key };
    // A struct of integers and strings always encodes.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The sort key inside a cursor `list` handed out. The list checks the parts' number and kinds itself.
pub fn decode_cursor(list: &str, raw: &str) -> Result<Vec<KeyPart>, CursorError> {
    use base64::Engine as _;
    if raw.len() > MAX_CURSOR_LEN {
        return Err(CursorError::TooLong(raw.len()));
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).map_err(|_| CursorError::NotBase64)?;
    let body: CursorBody = serde_json::from_slice(&json).map_err(|_| CursorError::Malformed)?;
    if body.v != CURSOR_VERSION {
        return Err(CursorError::Version(body.v));
    }
    if body.l != list {
        return Err(CursorError::WrongList { expected: list.to_owned(), found: body.l.chars().take(40).collect() });
    }
    Ok(body.k)
}

/// `GET /api/agents`: the fleet by pc id, filtered on the server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentsQuery {
    /// `online`, `offline` or `stale`.
    pub status: Option<String>,
    /// Agents in this group (as their heartbeat reports it).
    pub group: Option<String>,
    /// Agents on this OS (`windows`, `linux`, `macos`), exactly.
    pub os: Option<String>,
    /// Agents of this version, exactly.
    pub version: Option<String>,
    /// Words, each found (case-insensitively) in the pc id, hostname, OS, OS version, arch, version or a group,
    /// or naming the status (`offline win`). Up to 200 characters and 8 words.
    pub search: Option<String>,
    /// `pc_id` (default, A to Z), `cpu` or `memory` (the host's figures in the latest heartbeat, highest first;
    /// agents without them last).
    pub sort: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}

/// `DELETE /api/agents/{pc}`: what was forgotten.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveAgentQuery {
    /// Also delete the agent's own `agent_config` layer (`pcs.<pc>`) and its `agent_groups` entry.
    #[serde(default)]
    pub purge: Option<bool>,
}

/// `DELETE /api/agents/{pc}`: the agent is out of the read model; a heartbeat from it later makes it new again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RemovedAgent {
    pub pc_id: String,
    /// Whether its `agent_config` layer and `agent_groups` entry were deleted too.
    pub purged: bool,
}

/// A request body that must be empty, or an empty JSON object: an action that takes no arguments refuses any.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoBody {}

// --- The agent's timeline: `GET /api/agents/{pc_id}/events` and `GET /api/agent-events` ---

/// One entry of an agent's timeline, as projected from `OBS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentEventRow {
    pub event_id: String,
    pub pc_id: String,
    /// `agent_started`, `agent_update`, `agent_update_refused`, `agent_update_rolled_back`, `outbox_full`,
    /// `outbox_recovered`, or a kind a newer agent sends (kept as it came).
    pub kind: String,
    /// When it happened, by the agent's clock (never later than `recorded_at`).
    pub at: DateTime<Utc>,
    /// When the backend stored it, by its own clock.
    pub recorded_at: DateTime<Utc>,
    /// What the kind carries (see `kanade_shared::wire::ObsKind`); a large one is replaced by
    /// `{"truncated": true, "bytes": <n>}`.
    pub details: serde_json::Value,
}

/// A page of timeline entries, newest first. `next` is an opaque cursor for the page after this one (pass it as
/// `cursor` with the same filters); absent on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentEventPage {
    pub items: Vec<AgentEventRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /api/agents/{pc_id}/events`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentEventsQuery {
    /// Only this kind (`agent_update_rolled_back`, ...).
    pub kind: Option<String>,
    /// From when: a duration back from now (`1h`, `7d`) or an RFC 3339 time.
    pub since: Option<String>,
    /// Until when (exclusive): a duration back from now or an RFC 3339 time.
    pub until: Option<String>,
    /// 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /api/agent-events`: the same filters across the fleet, and `distinct=pc` for one entry per agent (its
/// newest that matches): "which agents rolled back this week".
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FleetEventsQuery {
    /// Only this kind (`agent_update_rolled_back`, ...).
    pub kind: Option<String>,
    /// From when: a duration back from now (`1h`, `7d`) or an RFC 3339 time.
    pub since: Option<String>,
    /// Until when (exclusive): a duration back from now or an RFC 3339 time.
    pub until: Option<String>,
    /// 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// `pc`: only each agent's newest matching entry.
    pub distinct: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_with_passwords_never_show_them_when_logged() {
        let login = LoginBody { name: "alice".into(), password: "hunter2-hunter2".into(), totp: None, cookie: true };
        let shown = format!("{login:?}");
        assert!(shown.contains("alice") && !shown.contains("hunter2"), "{shown}");
        let own = OwnPasswordBody { current_password: "old-secret-1".into(), password: "new-secret-2".into() };
        assert!(!format!("{own:?}").contains("secret"));
    }

    #[test]
    fn every_error_code_serialises_as_its_name() {
        // The list a client can branch on; `as_str` and serde must never disagree.
        for &code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(code.as_str()));
            assert_eq!(serde_json::from_value::<ErrorCode>(serde_json::json!(code.as_str())).unwrap(), code);
        }
    }

    #[test]
    fn a_cursor_reads_back_only_in_its_own_list() {
        let key = vec![KeyPart::Int(-5), KeyPart::Text("pc-1".into())];
        let cursor = encode_cursor("results", key.clone());
        assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{cursor}");
        assert_eq!(decode_cursor("results", &cursor).unwrap(), key);
        assert!(matches!(decode_cursor("audit", &cursor), Err(CursorError::WrongList { .. })));
    }

    #[test]
    fn a_garbage_or_tampered_cursor_is_an_error() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let cases = [
            ("".to_owned(), CursorError::Malformed),
            ("not base64!".to_owned(), CursorError::NotBase64),
            ("x".repeat(MAX_CURSOR_LEN + 1), CursorError::TooLong(MAX_CURSOR_LEN + 1)),
            (b64("{}"), CursorError::Malformed),
            (b64("[1]"), CursorError::Malformed),
            (b64(r#"{"v":2,"l":"agents","k":[]}"#), CursorError::Version(2)),
            (b64(r#"{"v":1,"l":"agents","k":[1.5]}"#), CursorError::Malformed),
            (b64(r#"{"v":1,"l":"agents","k":[],"x":1}"#), CursorError::Malformed),
            (b64(r#"{"v":1,"l":"agents","k":[null]}"#), CursorError::Malformed),
        ];
        for (raw, expected) in cases {
            assert_eq!(decode_cursor("agents", &raw), Err(expected), "{raw}");
        }
        assert_eq!(
            decode_cursor("agents", &b64(r#"{"v":1,"l":"agents","k":["a"]}"#)).unwrap(),
            [KeyPart::Text("a".into())]
        );
    }

    #[test]
    fn an_exec_body_leaves_out_what_it_does_not_set() {
        assert_eq!(serde_json::to_value(ExecBody::default()).unwrap(), serde_json::json!({}));
        let body: ExecBody = serde_json::from_value(serde_json::json!({ "groups": ["a"], "all": false })).unwrap();
        assert_eq!(body.groups, ["a"]);
        assert!(serde_json::from_value::<ExecBody>(serde_json::json!({ "group": ["a"] })).is_err());
    }
}

// --- Inventory: `/api/agents/{pc_id}/inventory`, `/api/inventory/...` ---

/// What every inventory list may be asked for as: JSON pages (the default) or `format=csv`, the whole list as one
/// CSV download (up to [`MAX_CSV_ROWS`] rows; narrow the query for more).
pub const MAX_CSV_ROWS: usize = 200_000;

/// `GET /api/agents/{pc_id}/inventory`: the PC's latest report of each kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentInventory {
    pub pc_id: String,
    /// When each kind was last reported, and what the agent could not collect.
    #[serde(default)]
    pub reports: Vec<InventoryReportInfo>,
    #[serde(default)]
    pub hardware: Option<crate::inventory::Hardware>,
    #[serde(default)]
    pub status: Option<crate::inventory::Status>,
    /// Everything installed, by source and id.
    #[serde(default)]
    pub software: Vec<SoftwareRow>,
}

/// One kind's latest report of one PC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InventoryReportInfo {
    /// `hardware`, `software` or `status`.
    pub kind: String,
    /// The agent's clock.
    pub collected_at: DateTime<Utc>,
    /// The backend's clock.
    pub received_at: DateTime<Utc>,
    /// Parts the agent could not collect, in its words.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Items the agent or the backend left out over the limits.
    #[serde(default)]
    pub dropped: u64,
    /// Software sources that could not be read in this report; their items are kept as they were.
    #[serde(default)]
    pub failed_sources: Vec<String>,
}

/// One installed item on one PC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SoftwareRow {
    pub pc_id: String,
    pub source: String,
    pub id: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub publisher: String,
    #[serde(default)]
    pub install_date: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub scope: String,
    /// When the backend first saw this item at this version.
    pub since: DateTime<Utc>,
}

/// `GET /api/inventory/titles`: the software titles of the fleet, by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TitlesQuery {
    /// Words, each found (case-insensitively) in the title's name. Up to 200 characters.
    pub search: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
    /// `json` (default) or `csv` (the whole list).
    pub format: Option<String>,
}

/// A software title: every item of that name (case-insensitively) across the fleet, by version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TitleRow {
    pub name: String,
    /// Installs across the fleet (a PC with two of them, say x86 and x64, counts twice).
    pub installs: i64,
    /// Each version with its installs, newest first by the generic version order.
    pub versions: Vec<TitleVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TitleVersion {
    pub version: String,
    pub installs: i64,
}

/// `GET /api/inventory/software`: the PCs that have a title, with their versions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SoftwareQuery {
    /// The title, case-insensitively; `*` matches any run of characters (`7-Zip*`). Required.
    pub name: Option<String>,
    /// A version range, every clause of which must hold: `<2.0`, `>=1.4.2,<1.5`, `=1.2.3`, `!=1.0`. Versions
    /// compare by their source's rules: dpkg's, rpm's, or dotted numbers for everything else.
    pub version: Option<String>,
    /// Only items from this source (`dpkg`, `rpm`, `registry`, ...).
    pub source: Option<String>,
    /// Only this PC.
    pub pc_id: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
    /// `json` (default) or `csv` (every matching row).
    pub format: Option<String>,
}

/// `GET /api/inventory/changes`: the change log, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// From this time on: a duration back from now (`7d`) or an RFC 3339 time.
    pub since: Option<String>,
    /// Before this time, the same way.
    pub until: Option<String>,
    /// Only this PC.
    pub pc_id: Option<String>,
    /// Only this software title (case-insensitively, `*` as in `/api/inventory/software`) or hardware field
    /// (`os.build`, `memory.total_bytes`).
    pub name: Option<String>,
    /// `software` or `hardware`.
    pub kind: Option<String>,
    /// `installed`, `removed`, `version_changed`, `changed` (hardware) or `first_report`.
    pub change: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
    /// `json` (default) or `csv` (every matching row).
    pub format: Option<String>,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeRow {
    pub pc_id: String,
    /// `software` or `hardware`.
    pub kind: String,
    /// `installed`, `removed`, `version_changed`, `changed` or `first_report`.
    pub change: String,
    /// The software title, or the hardware field.
    pub name: String,
    /// The software item's source and id; empty for hardware.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub item_id: String,
    /// The version or value before; none for an install or a new field.
    #[serde(default)]
    pub old: Option<String>,
    /// The version or value after; none for a removal.
    #[serde(default)]
    pub new: Option<String>,
    /// When the agent collected the report that showed the change.
    pub at: DateTime<Utc>,
}

/// `GET /api/inventory/hardware`: each PC's hardware summary, by pc id, filtered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HardwareQuery {
    /// OS name, exactly (`Microsoft Windows 11 Pro`).
    pub os: Option<String>,
    /// OS build, exactly (`22631.4602`).
    pub os_build: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    /// Memory strictly below this: bytes or a size (`16GiB`, `8 GB`).
    pub memory_below: Option<String>,
    /// Memory at least this.
    pub memory_at_least: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
    /// `json` (default) or `csv` (every matching row).
    pub format: Option<String>,
}

/// One PC's hardware, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HardwareRow {
    pub pc_id: String,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub os_build: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub cpu_model: String,
    pub cpu_cores: i64,
    pub cpu_threads: i64,
    pub memory_bytes: i64,
    pub collected_at: DateTime<Utc>,
}

/// `GET /api/inventory/hardware/summary`: how many PCs have each value of one field.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HardwareSummaryQuery {
    /// `os`, `os_build`, `manufacturer`, `model` or `memory`.
    pub field: Option<String>,
}

/// How many PCs have one value of a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValueCount {
    pub value: String,
    pub pcs: i64,
}

/// `POST /api/inventory/refresh`: ask agents to report now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    #[serde(default)]
    pub pcs: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub all: bool,
    /// Report every kind, changed or not.
    #[serde(default)]
    pub full: bool,
}

/// What `POST /api/inventory/refresh` did: the known agents it asked (connected or not: one that is offline
/// reports at its next start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RefreshView {
    pub asked: u64,
    pub full: bool,
}

/// `GET /api/inventory?app=<job id>`: a job's facts, from the stdout of its successful runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobFactsQuery {
    /// The job (its manifest has an `inventory:` block). Required.
    pub app: Option<String>,
    /// 1 to 1000 PCs a page (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
    /// `json` (default) or `csv` (a row per PC and fact row, a column per `display` field).
    pub format: Option<String>,
}

/// A job's facts: its `display` columns with a page of PCs, and its `summary` fields counted across the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobFactsView {
    pub job_id: String,
    pub display: Vec<crate::manifest::InventoryField>,
    pub summary: Vec<FactSummary>,
    /// PCs by pc id.
    pub items: Vec<JobFactRow>,
    #[serde(default)]
    pub next: Option<String>,
}

/// One `summary` field: how many PCs have each value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FactSummary {
    pub field: String,
    pub label: String,
    pub counts: Vec<ValueCount>,
}

/// One PC's facts of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobFactRow {
    pub pc_id: String,
    /// The result they came from (or, with `error`, the result whose output could not be read).
    pub result_id: String,
    /// When that run finished.
    pub at: DateTime<Utc>,
    /// Why the last successful run's stdout gave no facts; the rows are then those of the run before.
    #[serde(default)]
    pub error: Option<String>,
    /// One row when the script printed an object, one per element when it printed an array: field -> value.
    pub rows: Vec<BTreeMap<String, String>>,
}

/// `GET /api/agents/{pc}/perf`: the agent's performance rollups over a time range.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PerfQuery {
    /// Where the range starts: an RFC 3339 time, or a duration back from now (`1h`, `24h`, `7d`). Default `1h`.
    pub since: Option<String>,
    /// Where it ends: an RFC 3339 time, or a duration back from now. Default now.
    pub until: Option<String>,
    /// The length of one point (`1m`, `5m`, `1h`): rollups within it are merged (averages averaged, maxima kept).
    /// Default: the shortest of 1m, 5m, 15m, 1h, 6h, 1d that gives at most [`PERF_DEFAULT_POINTS`] points. At
    /// most [`PERF_MAX_POINTS`] points a request.
    pub step: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// Points a history has by default, and at most.
pub const PERF_DEFAULT_POINTS: u64 = 400;
pub const PERF_MAX_POINTS: u64 = 5000;

/// `GET /api/agents/{pc}/perf`: points in time order, each the rollups that started within its step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerfHistory {
    pub pc_id: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub step_secs: u64,
    pub points: Vec<PerfPoint>,
}

/// One point of a [`PerfHistory`]: the rollups that started in `[at, at + step)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerfPoint {
    pub at: DateTime<Utc>,
    /// Rollups merged into this point.
    pub rollups: u32,
    /// Averages are the rollups' averages weighted by their samples; maxima the largest.
    pub cpu_percent: crate::perf::Stat,
    pub mem_used_bytes: crate::perf::Stat,
    pub mem_total_bytes: u64,
    pub disk_read_bytes_per_sec: crate::perf::Stat,
    pub disk_write_bytes_per_sec: crate::perf::Stat,
    pub net_rx_bytes_per_sec: crate::perf::Stat,
    pub net_tx_bytes_per_sec: crate::perf::Stat,
    /// The top processes of the point's busiest rollup (by average CPU), and of its rollup with the most memory
    /// in use: "what was using the CPU then".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_cpu: Vec<crate::perf::ProcSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_memory: Vec<crate::perf::ProcSummary>,
}

/// `GET /api/agents/{pc}/perf/live`, `event: history`: the host samples the agent (or this backend's watch) kept
/// from before the stream, oldest first, and the latest process sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerfHistoryEvent {
    #[serde(default)]
    pub samples: Vec<crate::perf::HostSample>,
    #[serde(default)]
    pub processes: Option<crate::perf::ProcSample>,
}

/// `GET /api/agents/{pc}/perf/live`, `event: state`: how the live stream stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PerfLiveState {
    /// `waiting` (asking the agent), `live` (the agent streams), `unreachable` (the agent does not answer; the
    /// backend keeps asking).
    pub state: String,
    /// How often the agent samples, in ms, once live.
    #[serde(default)]
    pub interval_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `POST /api/schedules`: a schedule file's YAML as written, and the text of the `script_file` its inline job names,
/// by the name it gives (a client cannot make the server read its disk).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    pub schedule: String,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// A schedule as the API shows it: as stored, whether it is active now, its next occurrences and its recent fires.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    #[serde(flatten)]
    pub stored: crate::schedule::StoredSchedule,
    /// `active`, `paused` (disabled), `waiting` (before `not_before`) or `ended` (after `not_after`, or an `at` that
    /// has fired).
    pub state: String,
    /// The next occurrences (up to 5; none for a paused or once-per-PC schedule).
    pub next: Vec<DateTime<Utc>>,
    /// The most recent decisions, newest first (the last one in a list, up to 50 for one schedule).
    pub fires: Vec<FireView>,
}

/// One decision of a schedule: an occurrence fired (with the execution it created), skipped, or missed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FireView {
    /// `<schedule>-<YYYYMMDD>t<HHMMSS>z`: the occurrence's UTC time; the execution it fired has this id.
    pub occurrence_id: String,
    pub occurrence_at: DateTime<Utc>,
    /// `fired`, `run_now`, `skipped_overlap`, `missed` or `failed`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    /// Why it was skipped or failed, or that a missed entry stands for several occurrences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `missed`: how many occurrences this entry stands for (the first is `occurrence_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// The backend instance that decided it.
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
    /// The execution's status now, as `GET /api/executions/{id}` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_status: Option<String>,
    /// Known agents the execution targets (for once-per-PC: so far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_count: Option<i64>,
}

/// `POST /api/schedules`: the schedule as stored, whether it was `created`, `updated` or `unchanged`, and for an
/// inline job what happened to it in the catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleStoredView {
    pub schedule: ScheduleView,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_action: Option<String>,
}

/// `POST /api/schedules/{id}/run-now`: the occurrence fired now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunNowView {
    pub occurrence_id: String,
    pub exec_id: String,
    /// `fired`, or `already_fired` when this second's occurrence was fired before.
    pub outcome: String,
}

// ---- Enrolment and agent credentials (issue #18): `/api/enroll/tokens`, `/api/enrollments`,
// `/api/agents/{pc_id}/revoke` and `/api/agents/{pc_id}/groups` ----

/// The most groups one agent credential carries: the broker expands each into the agent's group subjects, and a
/// credential travels in one protocol line.
pub const MAX_CREDENTIAL_GROUPS: usize = crate::security::MAX_AGENT_GROUPS;

/// `POST /api/enroll/tokens`: a token that enrols up to `uses` PCs within `ttl`, into `groups` when it names any
/// (else each PC gets the groups its own config asks for).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollTokenBody {
    /// Group names; at most 16 (`MAX_CREDENTIAL_GROUPS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// How many PCs it may enrol: 1 (the default) to 100,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    /// How long it may be used: a duration from `1m` to `90d` (default `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// An enrolment token as the backend keeps it: never its secret, which it does not know.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrollTokenView {
    pub id: String,
    /// The groups every PC it enrols gets; empty: each gets what its config asks for.
    pub groups: Vec<String>,
    pub uses: u32,
    pub uses_left: u32,
    /// `active`, `expired`, `used_up` or `revoked`.
    pub state: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The PCs it enrolled, first first (up to 100).
    #[serde(default)]
    pub enrolled: Vec<String>,
}

/// `POST /api/enroll/tokens`: the token as an agent's installer takes it (`kanade_enroll_<id>_<secret>`) — shown
/// this once, never stored or logged — and the token as kept.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedEnrollToken {
    pub token: String,
    #[serde(flatten)]
    pub view: EnrollTokenView,
}

/// `GET /api/enroll/tokens`: newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EnrollTokensQuery {
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}

/// `GET /api/enrollments`: by pc id.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EnrollmentsQuery {
    /// `pending` (waiting for approval), `active` or `revoked`; none: all.
    pub status: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}

/// A PC's credential as the backend keeps it: who asked, with which key and token, and what was issued.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentView {
    pub pc_id: String,
    /// `pending` (waiting for approval), `active` or `revoked`.
    pub status: String,
    /// The groups its credential carries.
    pub groups: Vec<String>,
    /// As the agent reported them when it asked.
    pub hostname: String,
    pub os: String,
    /// The agent's own user public key (`U...`); its seed never left the PC.
    pub public_key: String,
    /// The token it enrolled with.
    pub token_id: String,
    pub requested_at: DateTime<Utc>,
    /// When it became active (at once, or when approved).
    #[serde(default)]
    pub enrolled_at: Option<DateTime<Utc>>,
    /// When its latest credential was issued, and when that one expires.
    #[serde(default)]
    pub issued_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `PUT /api/agents/{pc_id}/groups`: the whole list of groups the PC's credential carries from now on (its agent is
/// told to renew at once).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentGroupsBody {
    /// Group names; at most 16 (`MAX_CREDENTIAL_GROUPS`). empty: none.
    pub groups: Vec<String>,
}

// ---- Operator accounts: `/api/setup`, `/api/login`, `/api/refresh`, `/api/logout`, `/api/users`, `/api/tokens` ----

/// `Debug` for a body that carries a password or a token: its name and the fields that are not secret, so a logged
/// request never shows one.
macro_rules! debug_without_secrets {
    ($ty:ident { $($shown:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))$(.field(stringify!($shown), &self.$shown))*.finish_non_exhaustive()
            }
        }
    };
}

debug_without_secrets!(SetupBody { name });
debug_without_secrets!(LoginBody { name, cookie });
debug_without_secrets!(PasswordBody {});
debug_without_secrets!(OwnPasswordBody {});

/// `POST /api/setup`: the first admin, made with the setup token a backend with no user prints at start. Accepted
/// only while no user exists; the token is spent by it.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    /// `kanade_setup_...`, as the backend printed it.
    pub setup_token: String,
    /// The admin's name: lowercase letters, digits, `-` and `_`, 1 to 64.
    pub name: String,
    /// At least 12 characters.
    pub password: String,
}

/// `POST /api/login`: a name and password (and the TOTP code, for an account that has one).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub name: String,
    pub password: String,
    /// The 6-digit code of the account's authenticator app, when it has TOTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
    /// true (the dashboard): the refresh token is set as an HttpOnly, SameSite=Strict cookie for `/api` and left out
    /// of the body, so no script ever reads it. false (the CLI, scripts): it is in the body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cookie: bool,
}

/// `POST /api/refresh` and `POST /api/logout`: the refresh token, or none to use the refresh cookie (which then
/// needs the `X-Kanade-Csrf` header).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRefreshBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// A sign-in: the session token to send as `Authorization: Bearer <access_token>` until `expires_at`, and the
/// refresh token that trades for the next one until `refresh_expires_at` (in the body unless the cookie holds it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionTokens {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_at: DateTime<Utc>,
    /// Seconds from now until `expires_at`.
    pub expires_in: u64,
    /// `kanade_refresh_...`; absent when it went into the cookie. A refresh replaces it: keep the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the sign-in ends, refreshed or not.
    pub refresh_expires_at: DateTime<Utc>,
    pub user: String,
    pub role: crate::access::Role,
    #[schema(schema_with = scope_schema)]
    pub scope: crate::access::GroupScope,
}

/// `POST /api/users`: a new operator account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// Lowercase letters, digits, `-` and `_`, 1 to 64.
    pub name: String,
    pub role: crate::access::Role,
    /// The groups whose PCs it reaches; empty: the whole fleet (an admin always has the whole fleet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// At least 12 characters.
    pub password: String,
}

/// `PATCH /api/users/{name}`: what to change; what is left out stays.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::access::Role>,
    /// The new scope's groups; empty: the whole fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// true: it can no longer sign in, and its sessions and API tokens stop working at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// An operator account as the backend keeps it (never its password hash or TOTP secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub name: String,
    pub role: crate::access::Role,
    #[schema(schema_with = scope_schema)]
    pub scope: crate::access::GroupScope,
    pub disabled: bool,
    /// Whether sign-in needs a TOTP code.
    pub totp: bool,
    /// The operator's registered Ed25519 public key (`ed25519:...`), which commands it signs are checked against.
    #[serde(default)]
    pub signing_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: String,
}

/// `GET /api/users`: by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}

/// `POST /api/users/{name}/password`: an admin sets a user's password; every session and API token of the user ends.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub password: String,
}

/// `POST /api/session/password`: the signed-in user changes their own password; their other sessions end.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnPasswordBody {
    pub current_password: String,
    pub password: String,
}

/// `POST /api/users/{name}/totp`: the new TOTP secret, shown this once, as an authenticator app takes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TotpView {
    pub name: String,
    /// `otpauth://totp/kanade:<name>?secret=...&issuer=kanade`: scan it as a QR code or paste it.
    pub otpauth_url: String,
    /// The same secret in base32, for apps that take it typed in.
    pub secret: String,
}

/// `PUT /api/users/{name}/key`: the operator's Ed25519 public key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyBody {
    /// `ed25519:<43 characters of base64url>`, as `kanade key` prints it.
    pub public_key: String,
}

/// `POST /api/tokens`: a long-lived API token of the caller's own account, for automation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenBody {
    /// At most the owner's role (default: the owner's). The token acts within the owner's scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::access::Role>,
    /// How long it works: 1h to 366d (default 90d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// A name to know it by (default `token`), up to 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An API token as the backend keeps it: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenView {
    pub id: String,
    pub name: String,
    /// Its owner: the account it acts as.
    pub user: String,
    /// The most it may do (less if its owner's role was lowered since).
    pub role: crate::access::Role,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When it was last used, to the minute.
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `POST /api/tokens`: the token (`kanade_api_<id>_<secret>`) — shown this once, kept only as a hash — and the token
/// as kept.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiToken {
    pub token: String,
    #[serde(flatten)]
    pub view: ApiTokenView,
}

/// `GET /api/tokens`: newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApiTokensQuery {
    /// true: every user's tokens (admins only); else the caller's own.
    pub all: Option<bool>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before; none for the first page.
    pub cursor: Option<String>,
}
