//! Messages on the wire, as JSON. New fields get serde defaults and are skipped when empty, so an older agent
//! decodes a newer backend's message and the other way round; unknown fields are ignored.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{Actor, ExecId, GroupName, JobId, NoticeId, PcId, ResultId};

/// Largest script a command may carry, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 512 * 1024;
/// Longest timeout a command may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The interpreter a script runs under. An unknown name decodes to [`Shell::Other`], so an older agent answers a
/// newer shell with `skipped`/`unsupported_shell` instead of dropping the command as malformed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Shell {
    /// Windows PowerShell 5.1.
    Powershell,
    /// PowerShell 7+.
    Pwsh,
    Cmd,
    Sh,
    Bash,
    Other(String),
}

impl Shell {
    pub fn as_str(&self) -> &str {
        match self {
            Shell::Powershell => "powershell",
            Shell::Pwsh => "pwsh",
            Shell::Cmd => "cmd",
            Shell::Sh => "sh",
            Shell::Bash => "bash",
            Shell::Other(name) => name,
        }
    }

    pub fn parse(name: &str) -> Self {
        match name {
            "powershell" => Shell::Powershell,
            "pwsh" => Shell::Pwsh,
            "cmd" => Shell::Cmd,
            "sh" => Shell::Sh,
            "bash" => Shell::Bash,
            other => Shell::Other(other.to_owned()),
        }
    }

    /// The shells kanade knows how to run, for help texts and validation of operator input.
    pub const KNOWN: &'static [&'static str] = &["powershell", "pwsh", "cmd", "sh", "bash"];
}

impl fmt::Display for Shell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Shell {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A shell is a name on the wire; an unknown one decodes too (see [`Shell::Other`]).
impl utoipa::PartialSchema for Shell {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .examples(Shell::KNOWN.iter().map(|s| serde_json::Value::from(*s)))
            .into()
    }
}

impl utoipa::ToSchema for Shell {}

impl<'de> Deserialize<'de> for Shell {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Shell::parse(&String::deserialize(deserializer)?))
    }
}

/// The identity a script runs as (DESIGN.md, Scripts on the endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunAs {
    #[default]
    System,
    /// The logged-in user.
    User,
    /// System, in the user's session.
    SystemGui,
    /// A newer identity this agent does not know.
    #[serde(other)]
    Unknown,
}

/// A command for agents to run, published on `commands.*` into stream `EXEC`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub exec_id: ExecId,
    pub job_id: JobId,
    /// The job's version; empty for ad-hoc runs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub shell: Shell,
    pub script: String,
    /// How long the script may run before its process tree is killed.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    pub issued_at: DateTime<Utc>,
    /// A run that has not started by then is skipped as `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// The agent waits a random time up to this before it starts the run.
    #[serde(rename = "jitter_ms", default, skip_serializing_if = "Option::is_none", with = "millis_opt")]
    pub jitter: Option<Duration>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub run_as: RunAs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Ask the PC's user first (the job's `client.consent`); none: run when the gate says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
}

/// A run that waits for its PC's user (a job's `client.consent`): the agent holds it until the user runs it now or
/// puts it off (`max_defer` times at most), and runs it whatever the answer `deadline` after the PC received it. In
/// `quiet_hours` (the PC's local time) the user is not asked and a put-off run does not start; the deadline still
/// holds. A PC whose agent serves no kanade-client has nobody to ask and runs it at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The name the user knows the job by (its `client.title`).
    pub title: String,
    /// What the user is told.
    pub message: String,
    pub max_defer: u32,
    #[serde(rename = "deadline_ms", with = "millis")]
    pub deadline: Duration,
    /// `HH:MM-HH:MM`, as the manifest wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<String>,
}

impl Consent {
    /// The manifest's limits, checked again on what arrives.
    pub fn validate(&self) -> Result<(), String> {
        let text = |field: &str, value: &str, max: usize| {
            let chars = value.trim().chars().count();
            if chars == 0 || chars > max || value.chars().any(|c| c.is_control() && c != '\n') {
                return Err(format!("{field} must be 1-{max} characters, without control characters"));
            }
            Ok(())
        };
        text("title", &self.title, 80)?;
        text("message", &self.message, 500)?;
        if self.max_defer > crate::manifest::MAX_DEFERRALS {
            return Err(format!("max_defer must be 0-{}", crate::manifest::MAX_DEFERRALS));
        }
        if self.deadline < crate::manifest::MIN_CONSENT_DEADLINE || self.deadline > crate::manifest::MAX_DEADLINE {
            return Err(format!(
                "deadline must be between 1m and {}",
                humantime::format_duration(crate::manifest::MAX_DEADLINE)
            ));
        }
        if let Some(quiet) = &self.quiet_hours {
            crate::manifest::QuietHours::parse(quiet).map_err(|err| format!("quiet_hours: {err}"))?;
        }
        Ok(())
    }

    /// The quiet hours, if any (checked by [`Consent::validate`]).
    pub fn quiet(&self) -> Option<crate::manifest::QuietHours> {
        self.quiet_hours.as_deref().and_then(|q| crate::manifest::QuietHours::parse(q).ok())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("script is empty")]
    EmptyScript,
    #[error("script is {size} bytes; the limit is {MAX_SCRIPT_BYTES}")]
    ScriptTooLarge { size: usize },
    #[error("timeout must be greater than zero")]
    ZeroTimeout,
    #[error("timeout `{}` is longer than the limit of {}", humantime::format_duration(*.0), humantime::format_duration(MAX_TIMEOUT))]
    TimeoutTooLong(Duration),
    #[error("consent: {0}")]
    BadConsent(String),
}

impl Command {
    /// The limits every command must respect, checked by whoever builds one and again by the agent.
    pub fn validate(&self) -> Result<(), CommandError> {
        if self.script.trim().is_empty() {
            return Err(CommandError::EmptyScript);
        }
        if self.script.len() > MAX_SCRIPT_BYTES {
            return Err(CommandError::ScriptTooLarge { size: self.script.len() });
        }
        if self.timeout.is_zero() {
            return Err(CommandError::ZeroTimeout);
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(CommandError::TimeoutTooLong(self.timeout));
        }
        if let Some(consent) = &self.consent {
            consent.validate().map_err(CommandError::BadConsent)?;
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    Ok,
    Failed,
    Timeout,
    Killed,
    Skipped,
    /// A newer status this backend does not know yet; kept rather than dropped.
    #[serde(other)]
    Unknown,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Ok => "ok",
            ResultStatus::Failed => "failed",
            ResultStatus::Timeout => "timeout",
            ResultStatus::Killed => "killed",
            ResultStatus::Skipped => "skipped",
            ResultStatus::Unknown => "unknown",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "ok" => ResultStatus::Ok,
            "failed" => ResultStatus::Failed,
            "timeout" => ResultStatus::Timeout,
            "killed" => ResultStatus::Killed,
            "skipped" => ResultStatus::Skipped,
            _ => return None,
        })
    }
}

impl fmt::Display for ResultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run was skipped or failed without running the script to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    UnsupportedShell,
    UnsupportedRunAs,
    /// The run asks for the user at the PC's screen (`run_as: user` or `system_gui`) and nobody is signed in there
    /// (or the named account does not exist).
    NoUserSession,
    Expired,
    Superseded,
    Revoked,
    /// The agent stopped while the script ran.
    Interrupted,
    /// The shell could not be started.
    SpawnFailed,
    /// The command broke a limit (size, timeout) the agent enforces.
    Invalid,
    /// The run's result was written but could not be read back from the agent's outbox (the file was damaged).
    ResultLost,
    /// The command is not signed, or its signature is not a valid one (forged, altered, moved, expired).
    BadSignature,
    /// The command is validly signed by a key that may not do this here: not in the trust list, revoked, its role
    /// too low or its group scope not covering this PC.
    NotAuthorised,
    Other(String),
}

impl Reason {
    pub fn as_str(&self) -> &str {
        match self {
            Reason::UnsupportedShell => "unsupported_shell",
            Reason::UnsupportedRunAs => "unsupported_run_as",
            Reason::NoUserSession => "no_user_session",
            Reason::Expired => "expired",
            Reason::Superseded => "superseded",
            Reason::Revoked => "revoked",
            Reason::Interrupted => "interrupted",
            Reason::SpawnFailed => "spawn_failed",
            Reason::Invalid => "invalid",
            Reason::ResultLost => "result_lost",
            Reason::BadSignature => "bad_signature",
            Reason::NotAuthorised => "not_authorised",
            Reason::Other(other) => other,
        }
    }

    pub fn parse(value: &str) -> Self {
        match value {
            "unsupported_shell" => Reason::UnsupportedShell,
            "unsupported_run_as" => Reason::UnsupportedRunAs,
            "no_user_session" => Reason::NoUserSession,
            "expired" => Reason::Expired,
            "superseded" => Reason::Superseded,
            "revoked" => Reason::Revoked,
            "interrupted" => Reason::Interrupted,
            "spawn_failed" => Reason::SpawnFailed,
            "invalid" => Reason::Invalid,
            "result_lost" => Reason::ResultLost,
            "bad_signature" => Reason::BadSignature,
            "not_authorised" => Reason::NotAuthorised,
            other => Reason::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Reason::parse(&String::deserialize(deserializer)?))
    }
}

/// The one result of one run, published on `results.<pc>.<exec_id>` into stream `RESULTS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    pub result_id: ResultId,
    pub exec_id: ExecId,
    pub job_id: JobId,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub pc_id: PcId,
    pub status: ResultStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// The captured stdout was cut at the agent's output limit.
    #[serde(default, skip_serializing_if = "is_default")]
    pub stdout_truncated: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pub stderr_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Where the whole stdout is, when it outgrew the inline part (`stdout` then holds its beginning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_full: Option<FullOutput>,
    /// Where the whole stderr is, when it outgrew the inline part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_full: Option<FullOutput>,
}

/// One output stream of a run kept whole (up to the agent's `output_max_bytes`), because it outgrew what a result
/// carries inline: as `chunks` messages on stream `OUTPUT`, or, from an agent older than that, as an object in the
/// `result_output` object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullOutput {
    /// The output's name, `<result_id>/stdout` or `<result_id>/stderr`
    /// ([`crate::resources::result_output_object`]), whichever way it is stored: with `chunks` 0 the object's name in
    /// `result_output`; otherwise only what the result calls it (its chunks are found from the result's own pc and
    /// exec id, never from this field). The backend serves a result only the output named after it.
    pub object: String,
    /// Bytes the output holds.
    pub size: u64,
    /// SHA-256 of those bytes, lowercase hex.
    pub sha256: String,
    /// The stream went on past `output_max_bytes`: the object holds its first `size` bytes, the rest was dropped.
    #[serde(default, skip_serializing_if = "is_default")]
    pub capped: bool,
    /// Set when the object could not be stored (the outbox was full, the store refused it, the spooled file was
    /// lost): why. Then only the inline part exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// How many messages of stream `OUTPUT` hold the bytes, in order: [`crate::subject::output_chunk`] of the
    /// result's pc, exec id and this stream, numbered `0..chunks`, each at most
    /// [`crate::resources::OUTPUT_CHUNK_BYTES`]. 0: an older agent stored it as the object `object` in
    /// `result_output`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub chunks: u32,
}

impl ExecResult {
    /// A result for a run that never started.
    pub fn skipped(command: &Command, pc: &PcId, reason: Reason, now: DateTime<Utc>) -> Self {
        Self::not_started(command, pc, ResultStatus::Skipped, Some(reason), now)
    }

    /// A result for a run that ended before its script started: skipped, or killed while it waited.
    pub fn not_started(
        command: &Command,
        pc: &PcId,
        status: ResultStatus,
        reason: Option<Reason>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            result_id: ResultId::for_run(&command.exec_id, pc),
            exec_id: command.exec_id.clone(),
            job_id: command.job_id.clone(),
            version: command.version.clone(),
            pc_id: pc.clone(),
            status,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            started_at: None,
            finished_at: now,
            reason,
            stdout_full: None,
            stderr_full: None,
        }
    }
}

/// An agent's periodic "I am alive", on `heartbeat.<pc>`, and its answer to `agents.<pc>.ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub pc_id: PcId,
    #[serde(default)]
    pub hostname: String,
    /// `windows`, `linux`, `macos`.
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os_version: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub groups: Vec<GroupName>,
    /// Seconds since the agent process started.
    #[serde(default)]
    pub uptime_secs: u64,
    /// Seconds since the host booted.
    #[serde(default)]
    pub host_uptime_secs: u64,
    /// The agent's own resident memory.
    #[serde(default)]
    pub rss_bytes: u64,
    /// The agent's own CPU use since the previous heartbeat, in percent of one core.
    #[serde(default)]
    pub cpu_percent: f32,
    /// Runs in progress.
    #[serde(default)]
    pub running: u32,
    /// Results waiting in the on-disk outbox for the broker's ack.
    #[serde(default)]
    pub outbox_pending: u64,
    /// Bytes those results take on disk.
    #[serde(default)]
    pub outbox_bytes: u64,
    /// The outbox is over its cap (`outbox_max_bytes`): new results are kept without their output.
    #[serde(default)]
    pub outbox_full: bool,
    /// Messages the agent could not decode since it started.
    #[serde(default)]
    pub malformed_messages: u64,
    /// Commands, kills and job-state values refused for their signature since the agent started (not signed, or
    /// by a key the trust list does not let act here).
    #[serde(default)]
    pub refused_messages: u64,
    /// The heartbeat interval in force (the local config, or `agent_config` over it); 0 from older agents.
    #[serde(rename = "heartbeat_interval_ms", default)]
    pub heartbeat_interval_ms: u64,
    /// Runs started at once, as in force; 0 from older agents.
    #[serde(default)]
    pub max_local_concurrent: u32,
    /// The host's CPU busy time (all cores, 0-100) over the agent's latest sample; absent from older agents and
    /// until the first sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cpu_percent: Option<f32>,
    /// The host's memory in use, 0-100 of its total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mem_percent: Option<f32>,
    pub sent_at: DateTime<Utc>,
}

impl Heartbeat {
    /// A heartbeat that says only who and when; every other field is empty or zero.
    pub fn minimal(pc_id: PcId, sent_at: DateTime<Utc>) -> Self {
        Self {
            pc_id,
            hostname: String::new(),
            os: String::new(),
            os_version: String::new(),
            arch: String::new(),
            agent_version: String::new(),
            groups: Vec::new(),
            uptime_secs: 0,
            host_uptime_secs: 0,
            rss_bytes: 0,
            cpu_percent: 0.0,
            running: 0,
            outbox_pending: 0,
            outbox_bytes: 0,
            outbox_full: false,
            malformed_messages: 0,
            refused_messages: 0,
            heartbeat_interval_ms: 0,
            max_local_concurrent: 0,
            host_cpu_percent: None,
            host_mem_percent: None,
            sent_at,
        }
    }
}

/// Which stream an output chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }

    /// `stdout` or `stderr`; anything else is `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "stdout" => Some(OutputStream::Stdout),
            "stderr" => Some(OutputStream::Stderr),
            _ => None,
        }
    }
}

impl fmt::Display for OutputStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A piece of a running script's output, on `output.<pc>.<exec_id>`; best effort, the result carries the whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutputChunk {
    /// Counts from 0 per run across both streams, so a tail can tell that it missed a chunk.
    pub seq: u64,
    pub stream: OutputStream,
    pub data: String,
}

/// A run began, on `events.started.<pc>.<exec_id>` (captured by stream `EVENTS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStarted {
    pub exec_id: ExecId,
    pub job_id: JobId,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub pc_id: PcId,
    pub started_at: DateTime<Utc>,
}

/// Where a run held for its user's consent stands, on `events.consent.<pc>.<exec_id>` (captured by stream
/// `EVENTS`): what the operator sees in the execution's targets until the run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHeld {
    pub exec_id: ExecId,
    pub job_id: JobId,
    pub pc_id: PcId,
    pub state: HeldState,
    /// When it runs at the latest as things stand: the end of the deferral, else the deadline.
    pub until: DateTime<Utc>,
    /// When it runs whatever the user says.
    pub deadline: DateTime<Utc>,
    /// The user who put it off last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// How often it was put off.
    pub deferrals: u32,
    /// When the agent said so; a later word replaces an earlier one.
    pub at: DateTime<Utc>,
}

/// Why a held run has not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldState {
    /// The user is being asked.
    Asking,
    /// The user put it off until `until`.
    Deferred,
    /// Quiet hours: the user is not asked, and it does not start.
    Quiet,
    /// A state a newer agent knows and this build does not.
    #[serde(other)]
    Other,
}

impl HeldState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asking => "asking",
            Self::Deferred => "deferred",
            Self::Quiet => "quiet",
            Self::Other => "other",
        }
    }
}

/// Something in an agent's life worth a timeline entry, on `obs.<pc>` (stream `OBS`). The kinds the agent sends
/// are [`ObsKind`]'s; the field stays a string so that a kind a newer agent invents still decodes, is stored as it
/// came and shown by its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObsEvent {
    /// Unique per event (a UUIDv7); also the `Nats-Msg-Id`, so a retried publish is stored once by the broker and
    /// a redelivery once in SQL. Empty from agents older than the timeline: the backend then keys the event by its
    /// stream sequence.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    pub pc_id: PcId,
    /// One of [`ObsKind`]'s names, or a newer one.
    pub event: String,
    #[serde(default)]
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl ObsEvent {
    /// A new event with a fresh id, stamped now.
    pub fn new(pc_id: PcId, kind: &str, details: serde_json::Value) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7().hyphenated().to_string(),
            pc_id,
            event: kind.to_owned(),
            details,
            at: Utc::now(),
        }
    }
}

/// The timeline kinds the agent sends. Closed for senders, open for readers: [`ObsKind::parse`] gives `None` for a
/// name it does not know, and such an event is kept and shown by its raw name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObsKind {
    /// The agent process started and connected; details `version`, `after_update` (true when this start is a new
    /// binary's first after a self-update) and, then, `from`.
    AgentStarted,
    /// A new binary is in place and the agent restarts into it; details `from`, `to`.
    AgentUpdate,
    /// A release was not taken (corrupt, mislabelled, or it runs as another version); details `to` or `expected`,
    /// and `error` or `running`.
    AgentUpdateRefused,
    /// The new binary never came up healthy and the previous one is back; details `from` (the failed version), `to`.
    AgentUpdateRolledBack,
    /// The outbox went over `outbox_max_bytes`: results are kept without their output until it drains; details
    /// `bytes`, `pending`. Sent on the transition, not with every heartbeat.
    OutboxFull,
    /// The outbox is back under its cap; details `bytes`, `pending`.
    OutboxRecovered,
}

impl ObsKind {
    pub const ALL: [ObsKind; 6] = [
        ObsKind::AgentStarted,
        ObsKind::AgentUpdate,
        ObsKind::AgentUpdateRefused,
        ObsKind::AgentUpdateRolledBack,
        ObsKind::OutboxFull,
        ObsKind::OutboxRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObsKind::AgentStarted => "agent_started",
            ObsKind::AgentUpdate => "agent_update",
            ObsKind::AgentUpdateRefused => "agent_update_refused",
            ObsKind::AgentUpdateRolledBack => "agent_update_rolled_back",
            ObsKind::OutboxFull => "outbox_full",
            ObsKind::OutboxRecovered => "outbox_recovered",
        }
    }

    pub fn parse(name: &str) -> Option<ObsKind> {
        ObsKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for ObsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One operator action, on `audit.<actor>.<action>` (stream `AUDIT`). Each carries the hash of the event before it
/// in the stream, so an edit, a deletion or an insertion shows as a break (`crate::audit_chain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique; also the `Nats-Msg-Id`, so a retried publish is stored once.
    pub event_id: String,
    pub actor: crate::ids::Actor,
    pub action: crate::ids::Action,
    /// What the action was about: a pc, a job, an exec, an object.
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub details: serde_json::Value,
    /// Whole milliseconds (`crate::audit_chain::truncate_to_millis`), so the database's `at_ms` holds it exactly.
    pub at: DateTime<Utc>,
    /// `cli` or `backend`.
    #[serde(default)]
    pub source: String,
    /// The `hash` of the event before this one in `AUDIT` (64 zeros for the first; `crate::audit_chain`). Empty in
    /// events written before the chain existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prev_hash: String,
    /// SHA-256 of this event's fields and `prev_hash`, lowercase hex (`crate::audit_chain::hash_of`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// An agent's answer to `kill.<exec_id>` when it had that run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KillAck {
    pub pc_id: PcId,
    pub exec_id: ExecId,
}

/// The most characters a notification's text may hold.
pub const MAX_NOTICE_CHARS: usize = 2_000;
/// How long a notification is shown when its sender does not say.
pub const DEFAULT_NOTICE_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The longest a notification may be shown: `NOTIFICATIONS` keeps none longer.
pub const MAX_NOTICE_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How much a notification asks of its reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeLevel {
    #[default]
    Info,
    Warning,
    Critical,
}

impl NoticeLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeLevel::Info => "info",
            NoticeLevel::Warning => "warning",
            NoticeLevel::Critical => "critical",
        }
    }
}

impl std::str::FromStr for NoticeLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(NoticeLevel::Info),
            "warning" => Ok(NoticeLevel::Warning),
            "critical" => Ok(NoticeLevel::Critical),
            other => Err(format!("`{}` is not a level: info, warning or critical", crate::ids::shorten(other))),
        }
    }
}

/// An operator's notification to the users of some PCs (`kanade notify`), on `notifications.<target>.<id>`,
/// signed like a command. Agents keep it until it expires and show it through kanade-client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notice {
    pub id: NoticeId,
    #[serde(default)]
    pub level: NoticeLevel,
    /// What the user reads: plain text (line breaks kept), at most [`MAX_NOTICE_CHARS`].
    pub text: String,
    /// Who sent it.
    pub from: Actor,
    pub sent_at: DateTime<Utc>,
    /// Not shown after this.
    pub expires_at: DateTime<Utc>,
}

/// What is wrong with a notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("the text is empty")]
    Empty,
    #[error("the text is {0} characters; the limit is {MAX_NOTICE_CHARS}")]
    TooLong(usize),
    #[error("the text holds control characters (other than line breaks and tabs)")]
    ControlCharacters,
    #[error("it expires before it was sent, or more than {} after", humantime::format_duration(MAX_NOTICE_TTL))]
    BadExpiry,
}

impl Notice {
    /// The checks every notification passes, by whoever builds one and again by the agent.
    pub fn validate(&self) -> Result<(), NoticeError> {
        let chars = self.text.chars().count();
        if self.text.trim().is_empty() {
            return Err(NoticeError::Empty);
        }
        if chars > MAX_NOTICE_CHARS {
            return Err(NoticeError::TooLong(chars));
        }
        if self.text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
            return Err(NoticeError::ControlCharacters);
        }
        let ttl = (self.expires_at - self.sent_at).to_std().map_err(|_| NoticeError::BadExpiry)?;
        if ttl.is_zero() || ttl > MAX_NOTICE_TTL {
            return Err(NoticeError::BadExpiry);
        }
        Ok(())
    }
}

/// A PC's user acknowledged a notification: on `events.notice_ack.<pc>.<id>`, from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoticeAck {
    pub id: NoticeId,
    pub pc_id: PcId,
    /// The account that acknowledged it (the one kanade-client ran as).
    pub user: String,
    pub acknowledged_at: DateTime<Utc>,
}

/// A job a PC's user may start from kanade-client (its manifest's `client:` block, and it targets the PC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CatalogueItem {
    pub job_id: JobId,
    pub version: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub category: String,
    /// A run waits for a second operator's approval before it is sent.
    #[serde(default)]
    pub require_approval: bool,
}

/// The backend's answer to `selfservice.<pc>.catalogue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueReply {
    pub items: Vec<CatalogueItem>,
}

/// `selfservice.<pc>.run`'s request: the job, and the account that asked (as the agent saw it on its socket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfServiceRun {
    pub job_id: JobId,
    pub user: String,
}

/// The backend's answer to `selfservice.<pc>.run`: the execution started here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfServiceStarted {
    pub exec_id: ExecId,
    /// It waits for an operator's approval before it is sent.
    #[serde(default)]
    pub pending_approval: bool,
}

/// Every answer of the backend to a self-service request: `{"ok": ...}` or `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfServiceAnswer<T> {
    Ok(T),
    Error { code: String, message: String },
}

/// Something in the backend's read model or the job catalogue changed, on `backend.changes` (core, backend ->
/// every backend replica). Each replica passes it on to its live dashboard clients, which refetch what it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// `agents`, `results`, `executions`, `audit` or `jobs`; a replica passes on a topic it does not know.
    pub topic: String,
    /// What changed: pc ids for `agents`, exec ids for `results` and `executions`, job ids for `jobs`. Empty means
    /// "something in this topic; refetch it all".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
}

// --- `agents.<pc>.logs`: the tail of an agent's own log file (kanade logs) ---

/// Lines a [`LogsRequest`] asks for when it names no number.
pub const DEFAULT_LOG_LINES: u32 = 100;
/// Most lines one [`LogsReply`] carries, and the most a request may ask for.
pub const MAX_LOG_LINES: u32 = 10_000;
/// Most bytes of lines (as encoded in JSON) one [`LogsReply`] carries, well under NATS's 1 MiB `max_payload`.
pub const MAX_LOG_REPLY_BYTES: usize = 512 * 1024;
/// Longest `since` a request may ask for: far longer than the agent keeps its files.
pub const MAX_LOG_SINCE: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// A request for the tail of an agent's log, on `agents.<pc>.logs`. It names no path: the agent answers only
/// from its own log files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsRequest {
    /// The newest this many lines ([`DEFAULT_LOG_LINES`] when absent; at most [`MAX_LOG_LINES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u32>,
    /// Only lines written within this long before the agent's now.
    #[serde(rename = "since_ms", default, skip_serializing_if = "Option::is_none", with = "millis_opt")]
    pub since: Option<Duration>,
    /// Follow: the lines written after this position (from an earlier reply), oldest first, instead of the tail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<LogPosition>,
}

/// Where a reply stopped reading: a file of the agent's own (by name, never a path) and a byte offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    pub file: String,
    pub offset: u64,
}

/// Why an agent did not answer a [`LogsRequest`] with lines. `code` is `no_log_file` (it logs to stderr only),
/// `invalid_request`, `busy` or `unreadable`; an older CLI shows a code it does not know by its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsRefusal {
    pub code: String,
    pub message: String,
}

/// The agent's answer to a [`LogsRequest`]: oldest line first, bounded by [`MAX_LOG_LINES`] and
/// [`MAX_LOG_REPLY_BYTES`] (`truncated` says when more was there), or a refusal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsReply {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    /// Where to continue from to follow the log; absent when the agent has no log file yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<LogPosition>,
    /// More lines matched than the reply could carry (or a line was cut at its maximum length).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<LogsRefusal>,
}

/// The limits a [`LogsRequest`] must respect; the agent answers anything else with `invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogsRequestError {
    #[error("lines must be at least 1")]
    NoLines,
    #[error("lines `{0}` is over the limit of {MAX_LOG_LINES}")]
    TooManyLines(u32),
    #[error("since `{}` is longer than the limit of {}", humantime::format_duration(*.0), humantime::format_duration(MAX_LOG_SINCE))]
    SinceTooLong(Duration),
}

impl LogsRequest {
    /// The number of lines asked for, once checked.
    pub fn validate(&self) -> Result<u32, LogsRequestError> {
        let lines = self.lines.unwrap_or(DEFAULT_LOG_LINES);
        if lines == 0 {
            return Err(LogsRequestError::NoLines);
        }
        if lines > MAX_LOG_LINES {
            return Err(LogsRequestError::TooManyLines(lines));
        }
        if let Some(since) = self.since.filter(|since| *since > MAX_LOG_SINCE) {
            return Err(LogsRequestError::SinceTooLong(since));
        }
        Ok(lines)
    }
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// The value of the backends' leadership lease in KV `leases` (key `resources::LEADER_KEY`): who holds it, since
/// when, and its last renewal. What counts is the key's revision (a compare-and-set); this is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderLease {
    pub holder: String,
    pub since: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
}

/// A [`Duration`] as whole milliseconds, so every language can read it.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

/// An optional [`Duration`] as whole milliseconds.
pub(crate) mod millis_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::millis::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_notice_is_plain_bounded_text_with_a_sane_expiry() {
        let sent_at = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        let notice = |text: &str, ttl_hours: i64| Notice {
            id: NoticeId::generate(),
            level: NoticeLevel::Warning,
            text: text.to_owned(),
            from: Actor::new("ops").unwrap(),
            sent_at,
            expires_at: sent_at + chrono::Duration::hours(ttl_hours),
        };
        assert_eq!(notice("Reboot tonight.\nSave your work.\tThanks", 24).validate(), Ok(()));
        assert_eq!(notice("  \n ", 24).validate(), Err(NoticeError::Empty));
        assert_eq!(notice(&"x".repeat(MAX_NOTICE_CHARS + 1), 24).validate(), Err(NoticeError::TooLong(2001)));
        assert_eq!(notice("ring \u{7}", 24).validate(), Err(NoticeError::ControlCharacters));
        assert_eq!(notice("escape \u{1b}[31m", 24).validate(), Err(NoticeError::ControlCharacters));
        assert_eq!(notice("ok", 0).validate(), Err(NoticeError::BadExpiry));
        assert_eq!(notice("ok", -1).validate(), Err(NoticeError::BadExpiry));
        assert_eq!(notice("ok", 31 * 24).validate(), Err(NoticeError::BadExpiry));
        // The level defaults to info, and an unknown one is refused.
        let json = r#"{"id":"n-1","text":"hi","from":"ops","sent_at":"2026-12-07T09:00:00Z","expires_at":"2026-12-08T09:00:00Z"}"#;
        assert_eq!(serde_json::from_str::<Notice>(json).unwrap().level, NoticeLevel::Info);
        assert!(serde_json::from_str::<Notice>(&json.replace(r#""text""#, r#""level":"panic","text""#)).is_err());
        assert_eq!("critical".parse::<NoticeLevel>(), Ok(NoticeLevel::Critical));
        assert!("loud".parse::<NoticeLevel>().unwrap_err().contains("info, warning or critical"));
    }

    #[test]
    fn timeline_events_decode_leniently_and_kinds_round_trip() {
        for kind in ObsKind::ALL {
            assert_eq!(ObsKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ObsKind::parse("agent_teleported"), None);
        // An older agent's event (no id) and a newer one's (an unknown kind, an unknown field) both decode.
        let old: ObsEvent =
            serde_json::from_str(r#"{"pc_id":"pc-1","event":"agent_update","at":"2026-12-01T00:00:00Z"}"#).unwrap();
        assert!(old.event_id.is_empty());
        assert_eq!(old.details, serde_json::Value::Null);
        let newer: ObsEvent = serde_json::from_str(
            r#"{"event_id":"x","pc_id":"pc-1","event":"agent_teleported","at":"2026-12-01T00:00:00Z","new":1}"#,
        )
        .unwrap();
        assert_eq!(newer.event, "agent_teleported");
        let fresh = ObsEvent::new(PcId::new("pc-1").unwrap(), ObsKind::AgentStarted.as_str(), serde_json::json!({}));
        let again = ObsEvent::new(PcId::new("pc-1").unwrap(), ObsKind::AgentStarted.as_str(), serde_json::json!({}));
        assert_ne!(fresh.event_id, again.event_id, "every event has its own id");
        let back: ObsEvent = serde_json::from_slice(&serde_json::to_vec(&fresh).unwrap()).unwrap();
        assert_eq!(back, fresh);
    }

    fn command() -> Command {
        Command {
            exec_id: ExecId::new("0190a1b2-0000-7000-8000-000000000001").unwrap(),
            job_id: JobId::new("echo").unwrap(),
            version: "1.0.0".into(),
            shell: Shell::Sh,
            script: "echo hello".into(),
            timeout: Duration::from_secs(60),
            issued_at: Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap(),
            deadline: None,
            jitter: None,
            run_as: RunAs::System,
            cwd: None,
            consent: None,
        }
    }

    #[test]
    fn command_json_is_stable() {
        insta::assert_json_snapshot!(command(), @r#"
        {
          "exec_id": "0190a1b2-0000-7000-8000-000000000001",
          "job_id": "echo",
          "version": "1.0.0",
          "shell": "sh",
          "script": "echo hello",
          "timeout_ms": 60000,
          "issued_at": "2026-11-22T12:00:00Z"
        }
        "#);
    }

    #[test]
    fn newer_fields_and_values_decode() {
        let json = r#"{"exec_id":"e1","job_id":"j","shell":"python3","script":"x","timeout_ms":1,
            "issued_at":"2026-11-22T12:00:00Z","run_as":"tpm_enclave","some_future_field":{"a":1}}"#;
        let cmd: Command = serde_json::from_str(json).unwrap();
        assert_eq!(cmd.shell, Shell::Other("python3".into()));
        assert_eq!(cmd.run_as, RunAs::Unknown);
    }

    #[test]
    fn hostile_ids_in_commands_are_rejected() {
        let json = r#"{"exec_id":"e1.>","job_id":"j","shell":"sh","script":"x","timeout_ms":1,
            "issued_at":"2026-11-22T12:00:00Z"}"#;
        assert!(serde_json::from_str::<Command>(json).is_err());
    }

    #[test]
    fn command_limits() {
        let mut cmd = command();
        assert!(cmd.validate().is_ok());
        cmd.script = " ".into();
        assert_eq!(cmd.validate(), Err(CommandError::EmptyScript));
        cmd.script = "x".repeat(MAX_SCRIPT_BYTES + 1);
        assert!(matches!(cmd.validate(), Err(CommandError::ScriptTooLarge { .. })));
        cmd.script = "x".into();
        cmd.timeout = Duration::ZERO;
        assert_eq!(cmd.validate(), Err(CommandError::ZeroTimeout));
        cmd.timeout = MAX_TIMEOUT + Duration::from_secs(1);
        assert!(cmd.validate().unwrap_err().to_string().starts_with("timeout `7days 1s`"));
    }

    #[test]
    fn result_round_trips_and_tolerates_unknown_status() {
        let pc = PcId::new("pc-1").unwrap();
        let result = ExecResult::skipped(&command(), &pc, Reason::UnsupportedShell, command().issued_at);
        let json = serde_json::to_string(&result).unwrap();
        assert_eq!(serde_json::from_str::<ExecResult>(&json).unwrap(), result);
        let newer = json.replace("\"skipped\"", "\"quarantined\"");
        assert_eq!(serde_json::from_str::<ExecResult>(&newer).unwrap().status, ResultStatus::Unknown);
        insta::assert_json_snapshot!(result, @r#"
        {
          "result_id": "0190a1b2-0000-7000-8000-000000000001.pc-1",
          "exec_id": "0190a1b2-0000-7000-8000-000000000001",
          "job_id": "echo",
          "version": "1.0.0",
          "pc_id": "pc-1",
          "status": "skipped",
          "stdout": "",
          "stderr": "",
          "finished_at": "2026-11-22T12:00:00Z",
          "reason": "unsupported_shell"
        }
        "#);
    }

    #[test]
    fn whole_output_fields_are_skipped_when_empty_and_an_older_result_still_decodes() {
        let pc = PcId::new("pc-1").unwrap();
        let mut result = ExecResult::skipped(&command(), &pc, Reason::UnsupportedShell, command().issued_at);
        let older = serde_json::to_string(&result).unwrap();
        assert!(!older.contains("_full"), "{older}");
        assert_eq!(serde_json::from_str::<ExecResult>(&older).unwrap().stdout_full, None);
        result.stdout_full = Some(FullOutput {
            object: crate::resources::result_output_object(&result.result_id, OutputStream::Stdout),
            size: 1 << 20,
            sha256: "ab".repeat(32),
            capped: false,
            unavailable: None,
            chunks: 8,
        });
        let json = serde_json::to_value(&result).unwrap();
        insta::assert_json_snapshot!(json["stdout_full"], @r#"
        {
          "chunks": 8,
          "object": "0190a1b2-0000-7000-8000-000000000001.pc-1/stdout",
          "sha256": "abababababababababababababababababababababababababababababababab",
          "size": 1048576
        }
        "#);
        assert_eq!(serde_json::from_value::<ExecResult>(json).unwrap(), result);
        // A newer agent's extra fields inside it are ignored.
        let newer = r#"{"object": "x", "size": 1, "sha256": "", "capped": true, "compressed": "zstd"}"#;
        assert!(serde_json::from_str::<FullOutput>(newer).unwrap().capped);
        // An older agent's, stored in `result_output`: no chunks, and none written back.
        let older = r#"{"object": "x", "size": 1, "sha256": ""}"#;
        let older = serde_json::from_str::<FullOutput>(older).unwrap();
        assert_eq!(older.chunks, 0);
        assert!(!serde_json::to_string(&older).unwrap().contains("chunks"));
    }

    proptest::proptest! {
        #[test]
        fn commands_and_results_round_trip(
            script in ".{1,300}",
            shell in "[a-z0-9]{1,12}",
            timeout_ms in 1u64..=MAX_TIMEOUT.as_millis() as u64,
            version in "[ -~]{0,20}",
            stdout in ".{0,300}",
            exit_code in proptest::option::of(proptest::num::i32::ANY),
            truncated in proptest::bool::ANY,
        ) {
            let mut cmd = command();
            cmd.script = script;
            cmd.shell = Shell::parse(&shell);
            cmd.timeout = Duration::from_millis(timeout_ms);
            cmd.version = version;
            let json = serde_json::to_string(&cmd).unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), cmd.clone());

            let pc = PcId::new("pc-1").unwrap();
            let mut result = ExecResult::skipped(&cmd, &pc, Reason::parse(&shell), cmd.issued_at);
            result.status = ResultStatus::Failed;
            result.stdout = stdout;
            result.exit_code = exit_code;
            result.stdout_truncated = truncated;
            let json = serde_json::to_string(&result).unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<ExecResult>(&json).unwrap(), result);
        }
    }

    #[test]
    fn a_consent_block_round_trips_and_every_limit_is_checked_again_on_arrival() {
        let consent = Consent {
            title: "Monthly updates".into(),
            message: "Apps may close.".into(),
            max_defer: 3,
            deadline: Duration::from_secs(48 * 3600),
            quiet_hours: Some("22:00-07:00".into()),
        };
        let mut cmd = command();
        cmd.consent = Some(consent.clone());
        let json = serde_json::to_value(&cmd).unwrap();
        assert_eq!(json["consent"]["deadline_ms"], 48 * 3600 * 1000);
        assert_eq!(serde_json::from_value::<Command>(json).unwrap(), cmd);
        assert_eq!(cmd.validate(), Ok(()));
        assert!(serde_json::to_value(command()).unwrap().get("consent").is_none(), "absent when not asked for");

        let bad = [
            Consent { title: " ".into(), ..consent.clone() },
            Consent { title: "x".repeat(81), ..consent.clone() },
            Consent { message: "a\u{7}bell".into(), ..consent.clone() },
            Consent { message: "m".repeat(501), ..consent.clone() },
            Consent { max_defer: 11, ..consent.clone() },
            Consent { deadline: Duration::from_secs(59), ..consent.clone() },
            Consent { deadline: Duration::from_secs(31 * 24 * 3600), ..consent.clone() },
            Consent { quiet_hours: Some("25:00-07:00".into()), ..consent.clone() },
            Consent { quiet_hours: Some("07:00-07:00".into()), ..consent.clone() },
        ];
        for consent in bad {
            let cmd = Command { consent: Some(consent.clone()), ..command() };
            assert!(matches!(cmd.validate(), Err(CommandError::BadConsent(_))), "{consent:?}");
        }
    }

    #[test]
    fn minimal_heartbeat_decodes() {
        let hb: Heartbeat =
            serde_json::from_str(r#"{"pc_id":"pc-1","sent_at":"2026-11-22T12:00:00Z","new":true}"#).unwrap();
        assert_eq!(hb.pc_id.as_str(), "pc-1");
        assert!(hb.groups.is_empty());
    }
    #[test]
    fn logs_request_decodes_leniently_and_checks_its_limits() {
        let request: LogsRequest = serde_json::from_str(r#"{"lines": 5, "since_ms": 3600000, "newer": true}"#).unwrap();
        assert_eq!(request.validate(), Ok(5));
        assert_eq!(request.since, Some(Duration::from_secs(3600)));
        assert_eq!(serde_json::from_str::<LogsRequest>("{}").unwrap().validate(), Ok(DEFAULT_LOG_LINES));
        let too_many = LogsRequest { lines: Some(MAX_LOG_LINES + 1), ..LogsRequest::default() };
        assert_eq!(too_many.validate(), Err(LogsRequestError::TooManyLines(MAX_LOG_LINES + 1)));
        assert_eq!(LogsRequest { lines: Some(0), ..LogsRequest::default() }.validate(), Err(LogsRequestError::NoLines));
        let forever = LogsRequest { since: Some(Duration::from_secs(u64::MAX / 2)), ..LogsRequest::default() };
        assert!(matches!(forever.validate(), Err(LogsRequestError::SinceTooLong(_))));
        for hostile in
            [r#"{"since_ms": -5}"#, r#"{"lines": 99999999999}"#, r#"{"lines": "all"}"#, r#""a string""#, "garbage"]
        {
            assert!(serde_json::from_str::<LogsRequest>(hostile).is_err(), "{hostile}");
        }
    }

    #[test]
    fn logs_reply_json_is_stable() {
        let reply = LogsReply {
            lines: vec!["one".into()],
            position: Some(LogPosition { file: "kanade-agent.2026-12-01.log".into(), offset: 4 }),
            truncated: true,
            refused: None,
        };
        insta::assert_json_snapshot!(reply, @r#"
        {
          "lines": [
            "one"
          ],
          "position": {
            "file": "kanade-agent.2026-12-01.log",
            "offset": 4
          },
          "truncated": true
        }
        "#);
        assert_eq!(serde_json::from_str::<LogsReply>(r#"{"unknown": 1}"#).unwrap(), LogsReply::default());
    }
}
