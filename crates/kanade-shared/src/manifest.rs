//! Job manifests (`jobs/*.yaml`), parsed in two steps: the serde file type [`ManifestFile`] (strict: an unknown key
//! is an error with its path, line and column; documented for the JSON schema) and [`ManifestFile::validate`],
//! which checks what no single field can — exactly one script source, a target that names someone (or none at all,
//! to be chosen at fire time), sane durations — and yields the checked [`Job`] the rest of the system uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_saphyr::Spanned;

use crate::ids::{GroupName, JobId, PcId};
use crate::waves::{WaveError, WaveSpec};
use crate::wire::{MAX_SCRIPT_BYTES, MAX_TIMEOUT, RunAs, Shell};

/// Largest manifest file accepted.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Timeout when the manifest names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Longest deadline: `EXEC` keeps a command 30 days, so a later deadline could never be honoured.
pub const MAX_DEADLINE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Longest jitter and wave delay.
pub const MAX_SPREAD: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A job manifest as written by an operator.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "kanade job manifest")]
pub struct ManifestFile {
    /// The job's id: lowercase a-z, 0-9, `_` and `-`, 1 to 64 characters.
    pub id: JobId,
    /// The job's version, e.g. `0.43.0`. A newer version supersedes an older one not yet run.
    pub version: Version,
    /// What the job does, for people.
    #[serde(default)]
    pub description: String,
    /// Which agents it runs on. Leave it out (or `null`) for a job whose targets are chosen each time it is fired
    /// (`kanade exec <job> --pcs|--groups|--all`); firing such a job without naming targets is refused.
    #[serde(default)]
    #[schemars(with = "Option<TargetFile>")]
    pub target: Option<Spanned<TargetFile>>,
    /// What runs.
    #[schemars(with = "ExecuteFile")]
    pub execute: Spanned<ExecuteFile>,
    /// Each agent waits a random time up to this before it starts (e.g. `5m`).
    #[serde(default)]
    pub jitter: Option<HumanDuration>,
    /// A run that has not started this long after the exec is skipped as expired (e.g. `24h`).
    #[serde(default)]
    pub deadline: Option<HumanDuration>,
    /// Roll out in waves, one group after another.
    #[serde(default)]
    #[schemars(with = "Option<RolloutFile>")]
    pub rollout: Option<Spanned<RolloutFile>>,
    /// An exec of this job waits for a second operator's approval before anything is published.
    #[serde(default)]
    pub require_approval: bool,
    /// This job reports facts: its script prints one JSON object (or an array of them) on stdout, and the
    /// backend keeps the fields per PC; `display` names the columns of its facts table, `summary` the fields
    /// counted across the fleet.
    #[serde(default)]
    pub inventory: Option<InventoryFile>,
    /// This job as the PCs' users see it in kanade-client: in the self-service catalogue of the PCs it targets,
    /// which a user may start there; with `consent`, a run an operator fires waits on each PC for its user (run now,
    /// or later up to the limits), and runs at the deadline whatever the answer.
    #[serde(default)]
    pub client: Option<ClientFile>,
}

/// A job's `client:` block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// The name users see, e.g. `7-Zip`: 1-80 characters.
    pub title: String,
    /// What it does, for users: at most 1,000 characters.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Where it is listed, e.g. `Utilities`: at most 40 characters.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub category: String,
    /// Ask the PC's user before a run an operator fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentFile>,
}

/// A job's `client.consent:` block: how long a run may wait for the PC's user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentFile {
    /// What the user is told, e.g. `Updates will install and the PC restarts.`: 1-500 characters.
    pub message: String,
    /// How often the user may put it off (0-10; 0: run now or at the deadline).
    #[serde(default = "default_max_defer")]
    pub max_defer: u32,
    /// How long after a PC receives the run it runs whatever the answer, e.g. `48h` (1m-30d; within the job's own
    /// `deadline` when it has one).
    #[schemars(with = "String")]
    #[schema(value_type = String)]
    pub deadline: HumanDuration,
    /// When the PC's user is not asked and a put-off run does not start, in the PC's local time, e.g.
    /// `22:00-07:00` (may cross midnight). The deadline still holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<String>,
}

fn default_max_defer() -> u32 {
    3
}

/// The most a user may put a run off.
pub const MAX_DEFERRALS: u32 = 10;
/// The shortest and longest consent deadline.
pub const MIN_CONSENT_DEADLINE: Duration = Duration::from_secs(60);

/// Quiet hours, checked: from and to as minutes after local midnight (from > to crosses midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub from: u16,
    pub to: u16,
}

impl QuietHours {
    /// `HH:MM-HH:MM`, 24-hour; the two ends differ.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("`{}` is not `HH:MM-HH:MM` (24-hour, two different times)", crate::ids::shorten(text));
        let (from, to) = text.trim().split_once('-').ok_or_else(bad)?;
        let minutes = |part: &str| -> Option<u16> {
            let (h, m) = part.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (from, to) = (minutes(from).ok_or_else(bad)?, minutes(to).ok_or_else(bad)?);
        if from == to {
            return Err(bad());
        }
        Ok(Self { from, to })
    }

    /// Whether `minute` (after local midnight) falls within the quiet hours.
    pub fn contains(self, minute: u16) -> bool {
        if self.from < self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

impl ClientFile {
    fn check(&self, job_deadline: Option<Duration>) -> Result<(), (&'static str, String)> {
        let text = |field: &'static str, value: &str, min: usize, max: usize| -> Result<(), (&'static str, String)> {
            let chars = value.chars().count();
            if chars < min || chars > max || value.chars().any(|c| c.is_control() && c != '\n') {
                let range = if min == 0 { format!("at most {max}") } else { format!("{min}-{max}") };
                return Err((field, format!("must be {range} characters, without control characters")));
            }
            Ok(())
        };
        text("client.title", self.title.trim(), 1, 80)?;
        text("client.description", &self.description, 0, 1_000)?;
        text("client.category", &self.category, 0, 40)?;
        if let Some(consent) = &self.consent {
            text("client.consent.message", consent.message.trim(), 1, 500)?;
            if consent.max_defer > MAX_DEFERRALS {
                return Err(("client.consent.max_defer", format!("must be 0-{MAX_DEFERRALS}")));
            }
            let deadline = consent.deadline.0;
            if deadline < MIN_CONSENT_DEADLINE || deadline > MAX_DEADLINE {
                return Err((
                    "client.consent.deadline",
                    format!("must be between 1m and {}", humantime::format_duration(MAX_DEADLINE)),
                ));
            }
            if job_deadline.is_some_and(|d| deadline > d) {
                return Err((
                    "client.consent.deadline",
                    "is later than the job's `deadline`: the run would expire while it waits for the user".to_owned(),
                ));
            }
            if let Some(quiet) = &consent.quiet_hours {
                QuietHours::parse(quiet).map_err(|err| ("client.consent.quiet_hours", err))?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    /// Every agent.
    #[serde(default)]
    pub all: bool,
    /// Agents in any of these groups.
    #[serde(default)]
    pub groups: Vec<GroupName>,
    /// These agents.
    #[serde(default)]
    pub pcs: Vec<PcId>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteFile {
    /// `powershell`, `pwsh`, `cmd`, `sh` or `bash`.
    pub shell: KnownShell,
    /// The script itself.
    #[serde(default)]
    pub script: Option<String>,
    /// A file holding the script, relative to the manifest; inlined when the job is created.
    #[serde(default)]
    pub script_file: Option<PathBuf>,
    /// A script in the `scripts` object store, as `name/version`; its SHA-256 is recorded at create time.
    #[serde(default)]
    pub script_object: Option<ObjectRef>,
    /// Kill the run's process tree after this long (default 10m).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// `system` (default), `user` (the logged-in user) or `system_gui` (system, in the user's session).
    #[serde(default)]
    pub run_as: Option<KnownRunAs>,
    /// Working directory of the script.
    #[serde(default)]
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutFile {
    /// Only `wave` exists.
    pub strategy: Strategy,
    /// The waves, in order.
    pub waves: Vec<WaveFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Wave,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaveFile {
    /// The group this wave targets.
    pub group: GroupName,
    /// How long after the previous wave this one starts (default `0s`).
    #[serde(default)]
    pub delay: Option<HumanDuration>,
    /// Halt the rollout when more than this percentage of the wave's runs fail (default 100: never).
    #[serde(default)]
    pub max_failure_pct: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// Columns of the job's facts table, one per PC (or per row, when the script prints an array): each a field of
    /// the one JSON object the script prints on stdout, and its heading.
    #[serde(default)]
    pub display: Vec<InventoryField>,
    /// Fields counted across the fleet by value (`version`: how many PCs have each).
    #[serde(default)]
    pub summary: Vec<InventoryField>,
}

/// One field of an inventory job's output, and how it is headed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryField {
    /// A top-level key of the JSON object the script prints: 1-64 of `A-Z a-z 0-9 _ . -`.
    pub field: String,
    /// The heading shown for it; the field's name when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl InventoryField {
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.field)
    }
}

/// Fields one `inventory:` list may name.
pub const MAX_INVENTORY_FIELDS: usize = 32;

impl InventoryFile {
    fn check(&self) -> Result<(), String> {
        if self.display.is_empty() && self.summary.is_empty() {
            return Err("names no field: give `display`, `summary` or both a `{field, label}` list".into());
        }
        for (list, fields) in [("display", &self.display), ("summary", &self.summary)] {
            if fields.len() > MAX_INVENTORY_FIELDS {
                return Err(format!("{list} names {} fields; at most {MAX_INVENTORY_FIELDS}", fields.len()));
            }
            for (i, f) in fields.iter().enumerate() {
                let ok = (1..=64).contains(&f.field.len())
                    && f.field.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
                if !ok {
                    let shown: String = f.field.chars().take(64).collect();
                    return Err(format!("{list}[{i}].field `{shown}` is not 1-64 of `A-Z a-z 0-9 _ . -`"));
                }
                if f.label.as_ref().is_some_and(|l| l.chars().count() > 128 || l.chars().any(char::is_control)) {
                    return Err(format!("{list}[{i}].label is longer than 128 characters or holds control characters"));
                }
            }
        }
        Ok(())
    }
}

/// A duration written for people: `30s`, `5m`, `1h 30m`, `24h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub struct HumanDuration(pub Duration);

/// Written back as humantime writes it (`48h` as `2days`), which reads back as the same duration.
impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        humantime::parse_duration(&raw).map(HumanDuration).map_err(|err| {
            serde::de::Error::custom(format!("`{raw}` is not a duration ({err}); write e.g. `30s`, `5m` or `24h`"))
        })
    }
}

/// A version label: 1 to 64 characters of `A-Z a-z 0-9 . _ + -`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(with = "String")]
pub struct Version(String);

impl Version {
    pub fn new(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "version `{}` must be 1-64 characters of A-Z, a-z, 0-9, `.`, `_`, `+`, `-`",
                raw.chars().take(80).collect::<String>()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A YAML `1.0` is a number; a version is still what the operator meant.
        let raw = match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => return Err(serde::de::Error::custom(format!("version must be a string, not `{other}`"))),
        };
        Self::new(&raw).map_err(serde::de::Error::custom)
    }
}

/// `name/version` of a script object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(with = "String")]
pub struct ObjectRef {
    pub name: JobId,
    pub version: String,
}

impl<'de> Deserialize<'de> for ObjectRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        let bad = || serde::de::Error::custom(format!("script_object `{raw}` must be `name/version`"));
        let (name, version) = raw.split_once('/').ok_or_else(bad)?;
        let name = JobId::new(name).map_err(serde::de::Error::custom)?;
        let version = Version::new(version).map_err(serde::de::Error::custom)?;
        Ok(Self { name, version: version.0 })
    }
}

/// A shell named in a manifest: only the ones kanade knows (an agent would skip anything else).
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(with = "ShellName")]
pub struct KnownShell(pub Shell);

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum ShellName {
    Powershell,
    Pwsh,
    Cmd,
    Sh,
    Bash,
}

impl<'de> Deserialize<'de> for KnownShell {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        match Shell::parse(&raw) {
            Shell::Other(_) => {
                Err(serde::de::Error::custom(format!("unknown shell `{raw}`: use one of {}", Shell::KNOWN.join(", "))))
            }
            shell => Ok(Self(shell)),
        }
    }
}

/// A run-as identity named in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KnownRunAs {
    System,
    User,
    SystemGui,
}

/// Where a job's script comes from, once checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ScriptSource {
    Inline {
        script: String,
    },
    /// Relative to the manifest's directory until [`Job::inline_script_file`] reads it.
    File {
        #[schema(value_type = String)]
        path: PathBuf,
    },
    Object {
        name: JobId,
        version: String,
    },
}

/// Who a job runs on, once checked: all agents, or the union of some groups and pcs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Targets {
    pub all: bool,
    pub groups: Vec<GroupName>,
    pub pcs: Vec<PcId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Wave {
    pub group: GroupName,
    /// Milliseconds after the previous wave.
    #[serde(with = "crate::wire::millis")]
    #[schema(value_type = u64)]
    pub delay: Duration,
    pub max_failure_pct: f64,
}

/// A checked job: what `kanade job create` stores and every other part reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: JobId,
    pub version: String,
    pub description: String,
    /// Whom the job runs on when fired without naming targets; none: they are named each time it is fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    pub shell: Shell,
    pub source: ScriptSource,
    /// Milliseconds.
    #[serde(with = "crate::wire::millis")]
    #[schema(value_type = u64)]
    pub timeout: Duration,
    pub run_as: RunAs,
    pub cwd: Option<String>,
    /// Milliseconds.
    #[serde(with = "crate::wire::millis_opt")]
    #[schema(value_type = Option<u64>)]
    pub jitter: Option<Duration>,
    /// Milliseconds.
    #[serde(with = "crate::wire::millis_opt")]
    #[schema(value_type = Option<u64>)]
    pub deadline: Option<Duration>,
    pub waves: Vec<Wave>,
    pub require_approval: bool,
    pub inventory: Option<InventoryFile>,
    /// How kanade-client shows it: the self-service catalogue, and consent before a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientFile>,
}

/// A job as kept in the `jobs` KV bucket: the checked job, the manifest as written, and when and by whom it was
/// stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredJob {
    pub job: Job,
    /// The manifest's YAML as the operator wrote it.
    pub manifest: String,
    /// For a `script_object`: the SHA-256 (lowercase hex) the object had when the job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_sha256: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub created_by: String,
}

/// A manifest that cannot be used: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", source_name.as_ref().map(|s| format!("{s}: ")).unwrap_or_default())]
pub struct ManifestError {
    /// The file, when the manifest came from one.
    pub source_name: Option<String>,
    /// What is wrong, with the field path and, where known, `line L column C` and the offending lines.
    pub message: String,
}

impl ManifestError {
    pub(crate) fn at(field: &str, location: Option<&serde_saphyr::Location>, problem: impl std::fmt::Display) -> Self {
        let place = location.map(|l| format!(" (line {} column {})", l.line(), l.column())).unwrap_or_default();
        let message = if field.is_empty() && place.is_empty() {
            problem.to_string()
        } else {
            format!("{field}{place}: {problem}")
        };
        Self { source_name: None, message }
    }

    pub(crate) fn named(mut self, name: &str) -> Self {
        self.source_name = Some(name.to_owned());
        self
    }
}

/// Parses a manifest's text into its file type: strict, with the field path, line and column of any error.
pub fn parse(text: &str) -> Result<ManifestFile, ManifestError> {
    parse_strict(text)
}

/// Parses an operator-written YAML file (a job manifest, a schedule) into its serde file type: strict, with the
/// field path, line and column of any error.
pub(crate) fn parse_strict<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError {
            source_name: None,
            message: format!("the manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES}", text.len()),
        });
    }
    let mut path = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|err| {
            path = err.path().to_string();
            err.into_inner()
        })
    });
    parsed.map_err(|err| {
        // `Spanned` fields add a `value` step of their own; the operator never wrote it.
        let path = path.replace(".value.", ".").trim_end_matches(".value").to_owned();
        let field = if path.is_empty() || path == "." { String::new() } else { format!("{path}: ") };
        let text = err.to_string();
        let text = text.strip_prefix("error: ").unwrap_or(&text);
        ManifestError { source_name: None, message: format!("{field}{text}") }
    })
}

impl ManifestFile {
    /// Checks what the fields cannot check alone and returns the job.
    pub fn validate(self) -> Result<Job, ManifestError> {
        let targets = match self.target {
            Some(target) => Some(checked_target(target)?),
            None => None,
        };

        let execute = self.execute.value;
        let execute_at = Some(&self.execute.defined);
        let source = match (execute.script, execute.script_file, execute.script_object) {
            (Some(script), None, None) => {
                if script.trim().is_empty() {
                    return Err(ManifestError::at("execute.script", execute_at, "is empty"));
                }
                if script.len() > MAX_SCRIPT_BYTES {
                    return Err(ManifestError::at(
                        "execute.script",
                        execute_at,
                        format!("is {} bytes; the limit is {MAX_SCRIPT_BYTES}", script.len()),
                    ));
                }
                ScriptSource::Inline { script }
            }
            (None, Some(path), None) => {
                if path.as_os_str().is_empty() {
                    return Err(ManifestError::at("execute.script_file", execute_at, "is empty"));
                }
                ScriptSource::File { path }
            }
            (None, None, Some(object)) => ScriptSource::Object { name: object.name, version: object.version },
            (None, None, None) => {
                return Err(ManifestError::at(
                    "execute",
                    execute_at,
                    "has no script: set exactly one of `script`, `script_file`, `script_object`",
                ));
            }
            _ => {
                return Err(ManifestError::at(
                    "execute",
                    execute_at,
                    "has more than one script source: set exactly one of `script`, `script_file`, `script_object`",
                ));
            }
        };
        let timeout = execute.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(ManifestError::at(
                "execute.timeout",
                execute_at,
                format!("must be between 1s and {}", humantime::format_duration(MAX_TIMEOUT)),
            ));
        }
        let run_as = match execute.run_as {
            None | Some(KnownRunAs::System) => RunAs::System,
            Some(KnownRunAs::User) => RunAs::User,
            Some(KnownRunAs::SystemGui) => RunAs::SystemGui,
        };

        let jitter = self.jitter.map(|j| j.0);
        let deadline = self.deadline.map(|d| d.0);
        if jitter.is_some_and(|j| j > MAX_SPREAD) {
            return Err(ManifestError::at(
                "jitter",
                None,
                format!("is longer than {}", humantime::format_duration(MAX_SPREAD)),
            ));
        }
        if let Some(deadline) = deadline {
            if deadline.is_zero() || deadline > MAX_DEADLINE {
                return Err(ManifestError::at(
                    "deadline",
                    None,
                    format!("must be between 1s and {}", humantime::format_duration(MAX_DEADLINE)),
                ));
            }
            if jitter.is_some_and(|j| j >= deadline) {
                return Err(ManifestError::at(
                    "jitter",
                    None,
                    "must be shorter than the deadline, or no run could start in time",
                ));
            }
        }

        let mut waves = Vec::new();
        if let Some(rollout) = self.rollout {
            let at = Some(&rollout.defined);
            let specs = rollout
                .value
                .waves
                .into_iter()
                .map(|w| WaveSpec { group: w.group, delay: w.delay.map(|d| d.0), max_failure_pct: w.max_failure_pct })
                .collect();
            // Without a target the waves are checked against the targets named when the job is fired.
            let within = targets.as_ref().filter(|t| !t.all).map(|t| t.groups.as_slice());
            waves = crate::waves::check(specs, within).map_err(|err| {
                let field = format!("rollout.waves{}", err.field());
                match err {
                    WaveError::NotTargeted { group, .. } => ManifestError::at(
                        &field,
                        at,
                        format!("group `{group}` is not in target.groups (or set target.all)"),
                    ),
                    other => ManifestError::at(&field, at, other),
                }
            })?;
        }

        Ok(Job {
            id: self.id,
            version: self.version.0,
            description: self.description,
            targets,
            shell: execute.shell.0,
            source,
            timeout,
            run_as,
            cwd: execute.cwd,
            jitter,
            deadline,
            waves,
            require_approval: self.require_approval,
            inventory: match self.inventory {
                Some(inventory) => {
                    inventory.check().map_err(|problem| ManifestError::at("inventory", None, problem))?;
                    Some(inventory)
                }
                None => None,
            },
            client: match self.client {
                Some(client) => {
                    client.check(deadline).map_err(|(field, problem)| ManifestError::at(field, None, problem))?;
                    Some(client)
                }
                None => None,
            },
        })
    }
}

/// A manifest's `target:` block, checked: it names someone, and `all` stands alone. An empty block is a mistake
/// rather than "no target" (which is written by leaving `target:` out).
pub(crate) fn checked_target(target: Spanned<TargetFile>) -> Result<Targets, ManifestError> {
    let at = Some(&target.defined);
    let target = target.value;
    if target.all && !(target.groups.is_empty() && target.pcs.is_empty()) {
        return Err(ManifestError::at("target", at, "`all: true` cannot be combined with groups or pcs"));
    }
    if !target.all && target.groups.is_empty() && target.pcs.is_empty() {
        return Err(ManifestError::at(
            "target",
            at,
            "names no agents: set `all: true`, `groups` or `pcs`, or leave `target:` out to choose at fire time",
        ));
    }
    let mut groups = target.groups;
    groups.sort();
    groups.dedup();
    let mut pcs = target.pcs;
    pcs.sort();
    pcs.dedup();
    Ok(Targets { all: target.all, groups, pcs })
}

impl Job {
    /// Parses and validates a manifest's text.
    pub fn from_yaml(text: &str) -> Result<Self, ManifestError> {
        parse(text)?.validate()
    }

    /// Reads a manifest file, validates it and inlines a `script_file` (read relative to the manifest).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let name = path.display().to_string();
        let io = |what: &str, err: std::io::Error| ManifestError {
            source_name: Some(name.clone()),
            message: format!("{what}: {err}"),
        };
        let size = std::fs::metadata(path).map_err(|e| io("cannot read", e))?.len();
        if size > MAX_MANIFEST_BYTES as u64 {
            return Err(ManifestError::at(
                "",
                None,
                format!("the manifest is {size} bytes; the limit is {MAX_MANIFEST_BYTES}"),
            )
            .named(&name));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io("cannot read", e))?;
        let mut job = Self::from_yaml(&text).map_err(|e| e.named(&name))?;
        job.inline_script_file(path.parent().unwrap_or_else(|| Path::new("."))).map_err(|e| e.named(&name))?;
        Ok(job)
    }

    /// Reads a `script_file` (relative to `base`, the manifest's directory) into the job as its inline script.
    pub fn inline_script_file(&mut self, base: &Path) -> Result<(), ManifestError> {
        if let ScriptSource::File { path: relative } = &self.source {
            let file = base.join(relative);
            let io = |err: std::io::Error| {
                ManifestError::at("execute.script_file", None, format!("`{}`: {err}", file.display()))
            };
            let script = std::fs::read(&file).map_err(io)?;
            if script.len() > MAX_SCRIPT_BYTES {
                return Err(ManifestError::at(
                    "execute.script_file",
                    None,
                    format!("`{}` is {} bytes; the limit is {MAX_SCRIPT_BYTES}", file.display(), script.len()),
                ));
            }
            let script = String::from_utf8(script).map_err(|_| {
                ManifestError::at("execute.script_file", None, format!("`{}` is not UTF-8", file.display()))
            })?;
            self.source = ScriptSource::Inline { script };
        }
        Ok(())
    }
}

/// The JSON schema of [`ManifestFile`], as committed in `schema/job-manifest.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ManifestFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = "id: echo\nversion: 1.0.0\ntarget:\n  all: true\nexecute:\n  shell: sh\n  script: echo hi\n";

    fn error(text: &str) -> String {
        Job::from_yaml(text).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_manifest_validates_with_defaults() {
        let job = Job::from_yaml(ECHO).unwrap();
        assert_eq!(job.id.as_str(), "echo");
        assert_eq!(job.timeout, DEFAULT_TIMEOUT);
        assert_eq!(job.run_as, RunAs::System);
        assert_eq!(job.source, ScriptSource::Inline { script: "echo hi".into() });
        assert!(job.targets.as_ref().is_some_and(|t| t.all) && job.waves.is_empty() && !job.require_approval);
    }

    #[test]
    fn a_full_manifest_validates() {
        let text = r#"
id: install-kanade-backend
version: "0.43.0"
description: Install the backend
target:
  groups: [canary, wave1, canary]
  pcs: [host-1]
execute:
  shell: powershell
  script_object: deploy-backend/0.43.0
  timeout: 15m
  run_as: system_gui
  cwd: 'C:\kanade'
jitter: 5m
deadline: 24h
rollout:
  strategy: wave
  waves:
    - group: canary
      max_failure_pct: 10
    - group: wave1
      delay: 1h
require_approval: true
inventory:
  display:
    - {field: version, label: Version}
    - {field: path}
  summary:
    - {field: version, label: Client version}
"#;
        let job = Job::from_yaml(text).unwrap();
        let inventory = job.inventory.as_ref().unwrap();
        assert_eq!(inventory.display[1].label(), "path");
        assert_eq!(inventory.summary[0].label(), "Client version");
        assert_eq!(job.targets.as_ref().map(|t| t.groups.len()), Some(2));
        assert_eq!(
            job.source,
            ScriptSource::Object { name: JobId::new("deploy-backend").unwrap(), version: "0.43.0".into() }
        );
        assert_eq!(job.waves[1].delay, Duration::from_secs(3600));
        assert_eq!(job.waves[1].max_failure_pct, 100.0);
        assert_eq!(job.jitter, Some(Duration::from_secs(300)));
        assert!(job.require_approval);
    }

    /// The installer jobs of the documents, in their exact shape: no `target:`, chosen when fired.
    const INSTALL_CLIENT: &str = r#"
id: install-kanade-client
version: "0.43.0"
execute:
  shell: powershell
  script_object: deploy-client/0.43.0
  timeout: 15m
  run_as: system
require_approval: false
inventory:
  display: [{field: version, label: Version}, {field: path, label: Path}]
  summary: [{field: version, label: Version}]
"#;

    #[test]
    fn an_inventory_block_is_checked() {
        let with = |block: &str| {
            INSTALL_CLIENT.replace(
            "inventory:\n  display: [{field: version, label: Version}, {field: path, label: Path}]\n  summary: [{field: version, label: Version}]\n",
            block,
        )
        };
        assert!(Job::from_yaml(&with("inventory:\n  summary: [{field: os.build}]\n")).is_ok());
        for (block, needle) in [
            ("inventory: {}\n", "names no field"),
            ("inventory:\n  display: [{field: \"a b\"}]\n", "display[0].field `a b`"),
            ("inventory:\n  display: [{field: \"\"}]\n", "display[0].field"),
            ("inventory:\n  summary: [{field: v, colour: red}]\n", "colour"),
            ("inventory:\n  display: {columns: [name]}\n", "display"),
        ] {
            let err = error(&with(block));
            assert!(err.contains(needle), "{block}: {err}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("{{field: f{i}}}")).collect();
        let err = error(&with(&format!("inventory:\n  display: [{}]\n", many.join(", "))));
        assert!(err.contains("at most 32"), "{err}");
    }

    #[test]
    fn a_client_block_is_checked() {
        let with = |block: &str| format!("{INSTALL_CLIENT}{block}");
        let job = Job::from_yaml(&with(
            "client:\n  title: 7-Zip\n  description: A file archiver.\n  category: Utilities\n  consent:\n    message: Your PC restarts.\n    deadline: 48h\n    quiet_hours: \"22:00-07:00\"\n",
        ))
        .unwrap();
        let client = job.client.unwrap();
        assert_eq!((client.title.as_str(), client.category.as_str()), ("7-Zip", "Utilities"));
        let consent = client.consent.unwrap();
        assert_eq!(
            (consent.max_defer, consent.deadline.0),
            (3, Duration::from_secs(48 * 3600)),
            "three deferrals by default"
        );
        assert!(Job::from_yaml(&with("client: {title: Notepad++}\n")).is_ok());
        // Kept in KV as JSON and read back the same.
        let stored = serde_json::to_string(
            &Job::from_yaml(&with("client: {title: a, consent: {message: m, deadline: 90m}}\n")).unwrap(),
        )
        .unwrap();
        let back: Job = serde_json::from_str(&stored).unwrap();
        assert_eq!(back.client.unwrap().consent.unwrap().deadline.0, Duration::from_secs(90 * 60));
        let long = "x".repeat(81);
        for (block, needle) in [
            ("client: {}\n", "title"),
            ("client: {title: \"  \"}\n", "client.title: must be 1-80"),
            (&format!("client: {{title: {long}}}\n"), "client.title: must be 1-80"),
            ("client: {title: a, category: \"x\\u0007\"}\n", "client.category"),
            ("client: {title: a, icon: x.png}\n", "icon"),
            ("client: {title: a, consent: {message: m}}\n", "deadline"),
            ("client: {title: a, consent: {message: \"\", deadline: 1h}}\n", "client.consent.message"),
            ("client: {title: a, consent: {message: m, deadline: 30s}}\n", "between 1m"),
            ("client: {title: a, consent: {message: m, deadline: 31d}}\n", "between 1m"),
            ("client: {title: a, consent: {message: m, deadline: 1h, max_defer: 11}}\n", "0-10"),
            ("client: {title: a, consent: {message: m, deadline: 1h, quiet_hours: \"22-7\"}}\n", "HH:MM-HH:MM"),
            ("client: {title: a, consent: {message: m, deadline: 1h, quiet_hours: \"25:00-07:00\"}}\n", "HH:MM"),
            (
                "client: {title: a, consent: {message: m, deadline: 1h, quiet_hours: \"07:00-07:00\"}}\n",
                "two different",
            ),
        ] {
            let err = error(&with(block));
            assert!(err.contains(needle), "{block}: {err}");
        }
        // A run must not expire while it waits for the user.
        let err = error(&with("deadline: 24h\nclient: {title: a, consent: {message: m, deadline: 48h}}\n"));
        assert!(err.contains("later than the job's `deadline`"), "{err}");
    }

    #[test]
    fn quiet_hours_may_cross_midnight() {
        let night = QuietHours::parse("22:00-07:00").unwrap();
        assert_eq!(night, QuietHours { from: 22 * 60, to: 7 * 60 });
        assert!(night.contains(23 * 60) && night.contains(0) && night.contains(6 * 60 + 59));
        assert!(!night.contains(7 * 60) && !night.contains(12 * 60) && !night.contains(21 * 60 + 59));
        let lunch = QuietHours::parse(" 12:00-13:30 ").unwrap();
        assert!(lunch.contains(12 * 60 + 15) && !lunch.contains(13 * 60 + 30) && !lunch.contains(11 * 60));
        for bad in ["", "22:00", "22:00-7:00", "24:00-01:00", "10:60-11:00", "aa:bb-cc:dd", "10:00-10:00"] {
            assert!(QuietHours::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_manifest_without_a_target_leaves_it_to_fire_time() {
        let job = Job::from_yaml(INSTALL_CLIENT).unwrap();
        assert_eq!(job.targets, None);
        assert_eq!(job.run_as, RunAs::System);
        // Stored without the key, so the catalogue's JSON says "no target" by leaving it out.
        let json = serde_json::to_value(&job).unwrap();
        assert!(json.get("targets").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<Job>(json).unwrap(), job);
        // `target: null` and a bare `target:` are the same as leaving it out.
        for null in ["target: null\n", "target:\n", "target: ~\n"] {
            let job = Job::from_yaml(&format!("{INSTALL_CLIENT}{null}")).unwrap();
            assert_eq!(job.targets, None, "{null}");
        }
        let script_file = INSTALL_CLIENT.replace("script_object: deploy-client/0.43.0", "script_file: install.ps1");
        assert_eq!(Job::from_yaml(&script_file).unwrap().targets, None);
    }

    #[test]
    fn an_empty_target_block_is_a_mistake_not_no_target() {
        for empty in ["target: {}\n", "target:\n  all: false\n", "target:\n  pcs: []\n  groups: []\n"] {
            let err = error(&format!("{INSTALL_CLIENT}{empty}"));
            assert!(err.contains("target") && err.contains("names no agents"), "{err}");
            assert!(err.contains("leave `target:` out to choose at fire time"), "{err}");
        }
        for hostile in ["target: all\n", "target: [a]\n", "target: 7\n", "target:\n  everyone: true\n"] {
            let err = error(&format!("{INSTALL_CLIENT}{hostile}"));
            assert!(err.starts_with("target"), "{hostile}: {err}");
        }
    }

    #[test]
    fn waves_without_a_target_take_any_group_until_fire_time() {
        let text =
            format!("{INSTALL_CLIENT}rollout:\n  strategy: wave\n  waves:\n  - group: canary\n  - group: rest\n");
        let job = Job::from_yaml(&text).unwrap();
        assert_eq!((job.targets, job.waves.len()), (None, 2));
        // The rest of the waves rule still holds.
        let twice = format!("{INSTALL_CLIENT}rollout:\n  strategy: wave\n  waves:\n  - group: a\n  - group: a\n");
        assert!(error(&twice).contains("rollout.waves[1]"), "{}", error(&twice));
    }

    proptest::proptest! {
        /// Whatever target block is written (or none), validation either yields exactly its agents, sorted and
        /// de-duplicated, or refuses the two shapes that cannot be a target; it never invents one.
        #[test]
        fn any_target_block_is_kept_exactly_or_refused(
            block in proptest::option::of((
                proptest::option::of(proptest::bool::ANY),
                proptest::option::of(proptest::collection::vec("[a-c]{1,2}", 0..4)),
                proptest::option::of(proptest::collection::vec("(pc|host)-[0-3]", 0..4)),
            ))
        ) {
            let mut text = INSTALL_CLIENT.to_owned();
            if let Some((all, groups, pcs)) = &block {
                text.push_str("target:\n");
                if let Some(all) = all { text.push_str(&format!("  all: {all}\n")); }
                if let Some(groups) = groups { text.push_str(&format!("  groups: [{}]\n", groups.join(", "))); }
                if let Some(pcs) = pcs { text.push_str(&format!("  pcs: [{}]\n", pcs.join(", "))); }
                if all.is_none() && groups.is_none() && pcs.is_none() { text.push_str("  {}\n"); }
            }
            let checked = Job::from_yaml(&text);
            match block {
                None => proptest::prop_assert_eq!(checked.map(|j| j.targets), Ok(None)),
                Some((all, groups, pcs)) => {
                    let (all, groups, pcs) = (all.unwrap_or(false), groups.unwrap_or_default(), pcs.unwrap_or_default());
                    let sorted = |mut v: Vec<String>| { v.sort(); v.dedup(); v };
                    let (groups, pcs) = (sorted(groups), sorted(pcs));
                    if all && !(groups.is_empty() && pcs.is_empty()) || !all && groups.is_empty() && pcs.is_empty() {
                        let err = checked.unwrap_err().to_string();
                        proptest::prop_assert!(err.starts_with("target"), "{}", err);
                    } else {
                        let t = checked.unwrap().targets.unwrap();
                        proptest::prop_assert_eq!(t.all, all);
                        proptest::prop_assert_eq!(t.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>(), groups);
                        proptest::prop_assert_eq!(t.pcs.iter().map(|p| p.to_string()).collect::<Vec<_>>(), pcs);
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_keys_name_their_path_line_and_column() {
        let err =
            error("id: echo\nversion: 1\ntarget: {all: true}\nexecute:\n  shell: sh\n  script: x\n  timout: 5s\n");
        assert!(err.contains("execute.timout"), "{err}");
        assert!(err.contains("line 7 column 3"), "{err}");
        assert!(err.contains("unknown field `timout`"), "{err}");
        let err = error(&format!("{ECHO}colour: red\n"));
        assert!(err.contains("unknown field `colour`") && err.contains("line 8"), "{err}");
    }

    #[test]
    fn script_sources_are_exactly_one() {
        let two = ECHO.replace("  script: echo hi\n", "  script: echo hi\n  script_file: x.sh\n");
        assert!(error(&two).contains("more than one script source"), "{}", error(&two));
        let none = ECHO.replace("  script: echo hi\n", "");
        let err = error(&none);
        assert!(err.contains("execute (line 6 column 3): has no script"), "{err}");
    }

    #[test]
    fn bad_values_are_precise() {
        let cases = [
            (ECHO.replace("shell: sh", "shell: fish"), "execute.shell", "unknown shell `fish`"),
            (format!("{ECHO}  timeout: soon\n"), "execute.timeout", "`soon` is not a duration"),
            (format!("{ECHO}  timeout: 8days\n"), "execute.timeout", "must be between"),
            (format!("{ECHO}deadline: 0s\n"), "deadline", "must be between"),
            (format!("{ECHO}jitter: 2h\ndeadline: 1h\n"), "jitter", "shorter than the deadline"),
            (ECHO.replace("id: echo", "id: Echo"), "id", "job id `Echo`"),
            (ECHO.replace("version: 1.0.0", "version: 'a b'"), "version", "must be 1-64 characters"),
            (ECHO.replace("all: true", "all: false"), "target", "names no agents"),
            (ECHO.replace("all: true", "all: true\n  pcs: [a]"), "target", "cannot be combined"),
            (ECHO.replace("all: true", "groups: [Bad]"), "target.groups[0]", "group name `Bad`"),
            (
                ECHO.replace("script: echo hi", "script_object: noversion"),
                "execute.script_object",
                "must be `name/version`",
            ),
            (ECHO.replace("script: echo hi", "script: '  '"), "execute.script", "is empty"),
            (format!("{ECHO}rollout:\n  strategy: canary\n  waves: []\n"), "rollout.strategy", "unknown variant"),
            (format!("{ECHO}rollout:\n  strategy: wave\n  waves: []\n"), "rollout.waves", "is empty"),
            (
                format!("{ECHO}rollout:\n  strategy: wave\n  waves:\n  - group: a\n  - group: a\n"),
                "rollout.waves[1]",
                "has a wave already",
            ),
            (
                format!("{ECHO}rollout:\n  strategy: wave\n  waves:\n  - group: a\n    max_failure_pct: 101\n"),
                "max_failure_pct",
                "between 0 and 100",
            ),
        ];
        for (text, path, problem) in cases {
            let err = error(&text);
            assert!(err.contains(path) && err.contains(problem), "expected `{path}` and `{problem}` in:\n{err}");
        }
        let groups = "id: j\nversion: 1\ntarget:\n  groups: [a]\nexecute: {shell: sh, script: x}\nrollout:\n  strategy: wave\n  waves:\n  - group: b\n";
        assert!(error(groups).contains("group `b` is not in target.groups"), "{}", error(groups));
    }

    #[test]
    fn hostile_and_oversized_input_is_refused_cleanly() {
        assert!(error(&"a: ".repeat(MAX_MANIFEST_BYTES)).contains("the limit is"));
        for text in ["", "[", "- - - -", "id: &a [*a]", "{{{{{{{{", "\u{0}", "id: !!binary AAAA"] {
            let _ = Job::from_yaml(text).unwrap_err();
        }
        // An alias bomb stays within the parser's budget instead of eating memory.
        let bomb = "a: &a [x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f]\n";
        assert!(Job::from_yaml(bomb).is_err());
    }

    #[test]
    fn script_files_are_inlined_relative_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        std::fs::write(dir.path().join("scripts/x.sh"), "echo from file\n").unwrap();
        let manifest = dir.path().join("job.yaml");
        std::fs::write(&manifest, ECHO.replace("script: echo hi", "script_file: scripts/x.sh")).unwrap();
        let job = Job::load(&manifest).unwrap();
        assert_eq!(job.source, ScriptSource::Inline { script: "echo from file\n".into() });
        std::fs::write(&manifest, ECHO.replace("script: echo hi", "script_file: missing.sh")).unwrap();
        let err = Job::load(&manifest).unwrap_err().to_string();
        assert!(err.contains("job.yaml") && err.contains("missing.sh"), "{err}");
    }

    #[test]
    fn the_committed_schema_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/job-manifest.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != json_schema() {
            if std::env::var_os("KANADE_BLESS").is_some() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, json_schema()).unwrap();
            } else {
                panic!(
                    "schema/job-manifest.schema.json is stale: run `KANADE_BLESS=1 cargo test -p kanade-shared` and commit it"
                );
            }
        }
    }

    #[test]
    fn the_sample_manifests_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../jobs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                Job::load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 4, "expected the sample manifests in jobs/");
    }
}
