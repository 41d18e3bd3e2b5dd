//! Schedules (`schedules/*.yaml`): when a job fires on its own. Parsed like job manifests, in two steps: the strict
//! serde file type [`ScheduleFile`] (an unknown key is an error with its path; documented for the JSON schema in
//! `schema/schedule.schema.json`) and [`ScheduleFile::validate`], which yields the checked [`Schedule`] (and the
//! inline job, when the file carries one).
//!
//! A schedule says *when* as a cron pattern (5 fields, or 6 with seconds), an interval (`every: 10m`), one time
//! (`at:`), or not at all: `mode: once_per_pc` fires the job once at every PC in its targets (those that come later
//! too) and `once_per_version` once per version of the job. [`Timing`] turns the first three into occurrences —
//! instants in UTC, in the schedule's time zone's terms — and [`occurrence_id`] names each one, so the execution an
//! occurrence creates has the same id whichever backend creates it, however often.
//!
//! Cron semantics are croner's (the version in Cargo.lock), including across daylight-saving changes: a pattern
//! with a fixed time of day that falls into a spring-forward gap fires at the first instant after the gap; in a
//! repeated fall-back hour a fixed-time pattern fires once (the earlier instant) and an interval or wildcard
//! pattern (`*/15 * * * *`) fires on both. The tests below pin both transitions in Europe/Berlin.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, SubsecRound, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_saphyr::Spanned;

use crate::ids::{ExecId, GroupName, JobId};
use crate::manifest::{
    self, HumanDuration, Job, MAX_DEADLINE, MAX_SPREAD, ManifestError, ManifestFile, TargetFile, Targets, Wave,
    WaveFile,
};
use crate::waves::{WaveError, WaveSpec};

/// The longest schedule id: an occurrence id (`<schedule>-<YYYYMMDD>t<HHMMSS>z`) is an exec id and must stay within
/// 64 characters.
pub const MAX_SCHEDULE_ID_LEN: usize = 40;
/// The shortest and the longest `every:`.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 24 * 60 * 60);
/// How late an occurrence may be decided and still count as on time (it fires whatever `misfire` says): a failover
/// or a restart shorter than this loses nothing. Later than this it was missed, and `misfire` decides.
pub const LATE_AFTER: Duration = Duration::from_secs(60);
/// How late a missed occurrence may still run with `misfire: run_once` when the schedule gives no `grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60 * 60);
/// The longest `grace`.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How many occurrences one look at a schedule walks through at most (a 1 s schedule after a month away would
/// otherwise be 2.6 million steps); past it the rest are counted as one jump.
pub const MAX_STEPS: usize = 10_000;

/// A schedule's id: lowercase `[a-z0-9_-]`, 1 to [`MAX_SCHEDULE_ID_LEN`] characters. Its own type, not a
/// [`JobId`], because it is shorter: occurrence ids are built from it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ScheduleId(String);

impl ScheduleId {
    pub fn new(value: impl Into<String>) -> Result<Self, crate::IdError> {
        let value = value.into();
        if value.len() > MAX_SCHEDULE_ID_LEN
            && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            let value = crate::ids::shorten(&value);
            return Err(crate::IdError::LongerThan { kind: "schedule id", value, max: MAX_SCHEDULE_ID_LEN });
        }
        crate::ids::validate("schedule id", &value)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ScheduleId {
    type Err = crate::IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for ScheduleId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ScheduleId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ScheduleId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[a-z0-9_-]{1,40}$" })
    }
}

impl utoipa::PartialSchema for ScheduleId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[a-z0-9_-]{1,40}$"))
            .into()
    }
}

impl utoipa::ToSchema for ScheduleId {}

/// The id of one occurrence of `schedule`, and of the execution it creates: `<schedule>-<YYYYMMDD>t<HHMMSS>z`, the
/// occurrence's time in UTC to the second. The same on every backend, so an occurrence decided twice (a retry, a
/// crash mid-fire, a failover) lands on one execution.
pub fn occurrence_id(schedule: &ScheduleId, at: DateTime<Utc>) -> ExecId {
    let id = format!("{schedule}-{}", at.format("%Y%m%dt%H%M%Sz"));
    ExecId::new(id).unwrap_or_else(|_| unreachable_id())
}

#[cold]
fn unreachable_id() -> ExecId {
    // A schedule id is at most 40 of the id characters and the suffix 17 more of them, so this cannot happen;
    // a fresh id is still an execution of its own rather than a panic.
    ExecId::generate()
}

/// A schedule as written by an operator.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "kanade schedule")]
pub struct ScheduleFile {
    /// The schedule's id: lowercase a-z, 0-9, `_` and `-`, 1 to 40 characters.
    pub id: ScheduleId,
    /// What the schedule is for, for people.
    #[serde(default)]
    pub description: String,
    /// The job to fire: a job id from the catalogue, or a whole job manifest (registered with the schedule).
    pub job: JobRefFile,
    /// When, as a cron pattern: 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first
    /// (`*/10 * * * * *`: every 10 seconds), or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. In `timezone`.
    #[serde(default)]
    pub cron: Option<String>,
    /// When, as an interval: `10m`, `1h`, `30s` (at least 1s). Counted from `not_before`, else from the Unix epoch
    /// in UTC, so `every: 10m` fires at :00, :10, :20, ...
    #[serde(default)]
    pub every: Option<HumanDuration>,
    /// When, once: `2026-12-24T18:00:00Z`, `2026-12-24T18:00:00+01:00`, or a time without offset
    /// (`2026-12-24 18:00`) read in `timezone`.
    #[serde(default)]
    pub at: Option<String>,
    /// `once_per_pc`: fire the job once at every PC in the targets, including PCs that come online or join the
    /// targets later, until the schedule ends. `once_per_version`: the same, once for every version of the job.
    /// Neither takes `cron`, `every` or `at`. Leave it out for a timed schedule.
    #[serde(default)]
    pub mode: Option<ModeFile>,
    /// The IANA time zone `cron` and times without an offset are read in, e.g. `Europe/Berlin` (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Whom to fire at; the job's own target when left out.
    #[serde(default)]
    #[schemars(with = "Option<TargetFile>")]
    pub target: Option<Spanned<TargetFile>>,
    /// Roll out in waves, one group after another, as `kanade exec --wave`; the job's own rollout when left out.
    #[serde(default)]
    pub waves: Option<Vec<WaveFile>>,
    /// Each agent waits a random time up to this before it starts (the job's own when left out).
    #[serde(default)]
    pub jitter: Option<HumanDuration>,
    /// A run that has not started this long after its fire is skipped as expired (the job's own when left out).
    #[serde(default)]
    pub deadline: Option<HumanDuration>,
    /// A disabled schedule fires nothing until it is resumed (`kanade schedule resume`).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Nothing fires before this time.
    #[serde(default)]
    pub not_before: Option<String>,
    /// Nothing fires after this time; the schedule has ended.
    #[serde(default)]
    pub not_after: Option<String>,
    /// What to do with occurrences missed while no backend was running (decided more than a minute late): `skip`
    /// (default) records them as missed; `run_once` fires the latest of them if it is no more than `grace` late.
    #[serde(default)]
    pub misfire: Option<Misfire>,
    /// With `misfire: run_once`: how late a missed occurrence may still run (default `1h`).
    #[serde(default)]
    pub grace: Option<HumanDuration>,
    /// `skip` (default): an occurrence does not fire while this schedule's previous execution is unfinished (still
    /// sending, or a reachable target has not answered); `allow`: it fires anyway.
    #[serde(default)]
    pub overlap: Option<Overlap>,
}

fn enabled_by_default() -> bool {
    true
}

/// `job:` in a schedule file: an id, or a manifest.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum JobRefFile {
    /// A job in the catalogue.
    Id(JobId),
    /// A job manifest, registered in the catalogue with the schedule.
    Inline(Box<ManifestFile>),
}

impl<'de> Deserialize<'de> for JobRefFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = JobRefFile;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a job id, or a job manifest (a mapping with id, version, execute, ...)")
            }

            fn visit_str<E: serde::de::Error>(self, raw: &str) -> Result<JobRefFile, E> {
                JobId::new(raw).map(JobRefFile::Id).map_err(E::custom)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<JobRefFile, A::Error> {
                // The map's values go through the same (strict, located) deserializer as the rest of the file.
                ManifestFile::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|m| JobRefFile::Inline(Box::new(m)))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeFile {
    OncePerPc,
    OncePerVersion,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    #[default]
    Skip,
    RunOnce,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    #[default]
    Skip,
    Allow,
}

impl Misfire {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::RunOnce => "run_once",
        }
    }
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Allow => "allow",
        }
    }
}

/// When a checked schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum When {
    /// A cron pattern, read in the schedule's time zone.
    Cron { pattern: String },
    /// Every `every_ms` milliseconds from the anchor (`not_before`, else the Unix epoch).
    Every { every_ms: u64 },
    /// Once.
    At { at: DateTime<Utc> },
    /// Once at every PC in the targets.
    OncePerPc,
    /// Once at every PC in the targets, for every version of the job.
    OncePerVersion,
}

impl When {
    /// `cron`, `every`, `at`, `once_per_pc` or `once_per_version`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cron { .. } => "cron",
            Self::Every { .. } => "every",
            Self::At { .. } => "at",
            Self::OncePerPc => "once_per_pc",
            Self::OncePerVersion => "once_per_version",
        }
    }

    /// Whether the schedule fires once per PC (per version) rather than at times.
    pub fn is_once(&self) -> bool {
        matches!(self, Self::OncePerPc | Self::OncePerVersion)
    }
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cron { pattern } => write!(f, "cron `{pattern}`"),
            Self::Every { every_ms } => {
                write!(f, "every {}", humantime::format_duration(Duration::from_millis(*every_ms)))
            }
            Self::At { at } => write!(f, "at {}", at.to_rfc3339()),
            Self::OncePerPc => f.write_str("once per PC"),
            Self::OncePerVersion => f.write_str("once per PC and job version"),
        }
    }
}

/// A checked schedule: what `kanade schedule create` stores and the scheduler reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    pub id: ScheduleId,
    pub description: String,
    pub job_id: JobId,
    pub when: When,
    /// An IANA time zone name.
    pub timezone: String,
    /// Whom to fire at; none: the job's own target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// The rollout's waves; none: the job's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<Vec<Wave>>,
    /// Milliseconds; none: the job's own.
    #[serde(default, with = "crate::wire::millis_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub jitter: Option<Duration>,
    /// Milliseconds; none: the job's own.
    #[serde(default, with = "crate::wire::millis_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub deadline: Option<Duration>,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<DateTime<Utc>>,
    pub misfire: Misfire,
    /// Milliseconds.
    #[serde(with = "crate::wire::millis")]
    #[schema(value_type = u64)]
    pub grace: Duration,
    pub overlap: Overlap,
}

/// A schedule as kept in the `schedules` KV bucket: the checked schedule, the file as written, and who stored and
/// last changed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredSchedule {
    pub schedule: Schedule,
    /// The schedule file's YAML as the operator wrote it (`enabled` there is as written; pause and resume change
    /// the schedule's own).
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// A checked schedule file: the schedule, and the job it carries inline, if it does.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedSchedule {
    pub schedule: Schedule,
    pub inline_job: Option<Job>,
}

impl ScheduleFile {
    /// Parses a schedule's text: strict, with the field path, line and column of any error.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        manifest::parse_strict(text)
    }

    /// Checks what the fields cannot check alone.
    pub fn validate(self) -> Result<CheckedSchedule, ManifestError> {
        let at = |field: &str, problem: String| ManifestError::at(field, None, problem);
        let timezone = self.timezone.unwrap_or_else(|| "UTC".to_owned());
        let tz = parse_timezone(&timezone).map_err(|p| at("timezone", p))?;

        let (job_id, inline_job) = match self.job {
            JobRefFile::Id(id) => (id, None),
            JobRefFile::Inline(manifest) => {
                let job = manifest
                    .validate()
                    .map_err(|err| ManifestError { source_name: None, message: format!("job.{}", err.message) })?;
                (job.id.clone(), Some(job))
            }
        };

        let not_before = self.not_before.as_deref().map(|t| parse_time(t, tz)).transpose();
        let not_before = not_before.map_err(|p| at("not_before", p))?;
        let not_after = self.not_after.as_deref().map(|t| parse_time(t, tz)).transpose();
        let not_after = not_after.map_err(|p| at("not_after", p))?;
        if let (Some(from), Some(to)) = (not_before, not_after)
            && to <= from
        {
            return Err(at("not_after", "must be later than not_before".into()));
        }

        let given: Vec<&str> = [
            ("cron", self.cron.is_some()),
            ("every", self.every.is_some()),
            ("at", self.at.is_some()),
            ("mode", self.mode.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
        let when = match (self.cron, self.every, self.at, self.mode) {
            (Some(pattern), None, None, None) => {
                let pattern = pattern.trim().to_owned();
                Timing::compile_cron(&pattern).map_err(|p| at("cron", p))?;
                When::Cron { pattern }
            }
            (None, Some(every), None, None) => {
                if every.0 < MIN_EVERY || every.0 > MAX_EVERY {
                    return Err(at(
                        "every",
                        format!("must be between 1s and {}", humantime::format_duration(MAX_EVERY)),
                    ));
                }
                if every.0.subsec_millis() != 0 {
                    return Err(at("every", "must be whole seconds".into()));
                }
                When::Every { every_ms: u64::try_from(every.0.as_millis()).unwrap_or(u64::MAX) }
            }
            (None, None, Some(time), None) => {
                let time = parse_time(&time, tz).map_err(|p| at("at", p))?;
                if not_before.is_some() || not_after.is_some() {
                    return Err(at("at", "fires once: leave out not_before and not_after".into()));
                }
                When::At { at: time }
            }
            (None, None, None, Some(ModeFile::OncePerPc)) => When::OncePerPc,
            (None, None, None, Some(ModeFile::OncePerVersion)) => When::OncePerVersion,
            _ if given.is_empty() => {
                return Err(at(
                    "",
                    "says not when: give one of `cron`, `every`, `at`, or `mode: once_per_pc|once_per_version`".into(),
                ));
            }
            _ => {
                return Err(at(
                    given[1],
                    format!(
                        "cannot be combined with `{}`: give exactly one of `cron`, `every`, `at` and `mode`",
                        given[0]
                    ),
                ));
            }
        };

        let targets = self.target.map(manifest::checked_target).transpose()?;
        let waves = match self.waves {
            None => None,
            Some(waves) => {
                let specs = waves
                    .into_iter()
                    .map(|w| WaveSpec {
                        group: w.group,
                        delay: w.delay.map(|d| d.0),
                        max_failure_pct: w.max_failure_pct,
                    })
                    .collect();
                let within: Option<&[GroupName]> = targets.as_ref().filter(|t| !t.all).map(|t| t.groups.as_slice());
                if targets.as_ref().is_some_and(|t| !t.all && !t.pcs.is_empty()) {
                    return Err(at("waves", "reach groups: target groups or all, not pcs".into()));
                }
                let waves = crate::waves::check(specs, within).map_err(|err| {
                    let field = format!("waves{}", err.field());
                    match err {
                        WaveError::NotTargeted { group, .. } => {
                            at(&field, format!("group `{group}` is not in target.groups (or set target.all)"))
                        }
                        other => at(&field, other.to_string()),
                    }
                })?;
                Some(waves)
            }
        };

        let jitter = self.jitter.map(|j| j.0);
        if jitter.is_some_and(|j| j > MAX_SPREAD) {
            return Err(at("jitter", format!("is longer than {}", humantime::format_duration(MAX_SPREAD))));
        }
        let deadline = self.deadline.map(|d| d.0);
        if let Some(deadline) = deadline {
            if deadline.is_zero() || deadline > MAX_DEADLINE {
                let max = humantime::format_duration(MAX_DEADLINE);
                return Err(at("deadline", format!("must be between 1s and {max}")));
            }
            if jitter.is_some_and(|j| j >= deadline) {
                return Err(at("jitter", "must be shorter than the deadline, or no run could start in time".into()));
            }
        }

        let misfire = self.misfire.unwrap_or_default();
        if self.grace.is_some() && misfire != Misfire::RunOnce {
            return Err(at("grace", "applies only with `misfire: run_once`".into()));
        }
        let grace = self.grace.map_or(DEFAULT_GRACE, |g| g.0);
        if grace > MAX_GRACE {
            return Err(at("grace", format!("is longer than {}", humantime::format_duration(MAX_GRACE))));
        }
        if when.is_once() && (self.misfire.is_some() || self.overlap.is_some()) {
            let field = if self.misfire.is_some() { "misfire" } else { "overlap" };
            return Err(at(field, "does not apply to a once-per-PC schedule, which has one standing fire".into()));
        }

        if self.description.chars().count() > 1024 {
            return Err(at("description", "is longer than 1024 characters".into()));
        }
        let schedule = Schedule {
            id: self.id,
            description: self.description,
            job_id,
            when,
            timezone,
            targets,
            waves,
            jitter,
            deadline,
            enabled: self.enabled,
            not_before,
            not_after,
            misfire,
            grace,
            overlap: self.overlap.unwrap_or_default(),
        };
        Ok(CheckedSchedule { schedule, inline_job })
    }
}

impl CheckedSchedule {
    /// Parses and validates a schedule's text.
    pub fn from_yaml(text: &str) -> Result<Self, ManifestError> {
        ScheduleFile::parse(text)?.validate()
    }

    /// Reads a schedule file and validates it; an inline job's `script_file` is read relative to the file.
    pub fn load(path: &std::path::Path) -> Result<Self, ManifestError> {
        Ok(read(path)?.checked)
    }
}

/// A schedule file as read from disk: its text (what a client sends), the checked schedule, and the `script_file`
/// its inline job names with that file's text (sent beside it, since a server cannot read the client's disk).
#[derive(Debug, Clone)]
pub struct ScheduleText {
    pub text: String,
    pub checked: CheckedSchedule,
    pub script_file: Option<(String, String)>,
}

/// Reads a schedule file once (bounded: a file that grows while it is read is cut at the limit and refused), checks
/// it, and reads its inline job's `script_file` relative to it. Every error names the file; an inline job's errors
/// are under `job.`.
pub fn read(path: &std::path::Path) -> Result<ScheduleText, ManifestError> {
    use std::io::Read as _;
    let name = path.display().to_string();
    let fail = |message: String| ManifestError { source_name: Some(name.clone()), message };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if meta.is_dir() {
        return Err(fail("is a directory, not a schedule file".into()));
    }
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    let limit = manifest::MAX_MANIFEST_BYTES;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() > limit {
        return Err(fail(format!("the file is over {limit} bytes, the limit")));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8 text".into()))?;
    let mut checked = CheckedSchedule::from_yaml(&text).map_err(|e| e.named(&name))?;
    let mut script_file = None;
    if let Some(job) = &mut checked.inline_job {
        let relative = match &job.source {
            manifest::ScriptSource::File { path } => Some(path.to_string_lossy().into_owned()),
            _ => None,
        };
        job.inline_script_file(path.parent().unwrap_or_else(|| std::path::Path::new(".")))
            .map_err(|e| fail(format!("job.{}", e.message)))?;
        if let (Some(relative), manifest::ScriptSource::Inline { script }) = (relative, &job.source) {
            script_file = Some((relative, script.clone()));
        }
    }
    Ok(ScheduleText { text, checked, script_file })
}

/// An IANA time zone, by name.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        format!("`{shown}` is not an IANA time zone name (e.g. `UTC`, `Europe/Berlin`, `America/New_York`)")
    })
}

/// A time as a schedule file gives it: RFC 3339 with an offset, or a date and time without one read in `tz`. A
/// local time that does not exist there (a spring-forward gap) is refused; one that exists twice (the repeated
/// fall-back hour) is the earlier instant, as croner reads a fixed-time pattern.
pub fn parse_time(raw: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    let shown: String = raw.chars().take(64).collect();
    if let Ok(time) = DateTime::parse_from_rfc3339(raw) {
        return Ok(time.with_timezone(&Utc).trunc_subsecs(0));
    }
    let formats = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"];
    let naive = formats.iter().find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok()).ok_or_else(|| {
        format!(
            "`{shown}` is not a time: write `2026-12-24T18:00:00Z`, `2026-12-24T18:00:00+01:00` or `2026-12-24 18:00`"
        )
    })?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(time) => Ok(time.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, _) => Ok(earlier.with_timezone(&Utc)),
        LocalResult::None => Err(format!("`{shown}` does not exist in {tz} (the clocks skip it for daylight saving)")),
    }
}

/// A schedule's times, compiled: the occurrences of a `cron`, `every` or `at` schedule within its active window.
#[derive(Debug, Clone)]
pub struct Timing {
    kind: Kind,
    tz: chrono_tz::Tz,
    not_before: Option<DateTime<Utc>>,
    not_after: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(Box<croner::Cron>),
    Every {
        every_secs: i64,
        anchor: i64,
    },
    At(DateTime<Utc>),
    /// Once-per-PC schedules have no times.
    None,
}

impl Timing {
    fn compile_cron(pattern: &str) -> Result<croner::Cron, String> {
        let fields = pattern.split_whitespace().count();
        if !pattern.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "`{}` has {fields} fields: give 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)",
                pattern.chars().take(120).collect::<String>()
            ));
        }
        if pattern.len() > 256 {
            return Err("is longer than 256 characters".into());
        }
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|err| format!("`{pattern}` is not a cron pattern: {err}"))
    }

    /// Compiles `schedule`'s times. Fails only for a schedule that was not checked by [`ScheduleFile::validate`]
    /// (a stored one from a newer backend, or a hand edit).
    pub fn of(schedule: &Schedule) -> Result<Self, String> {
        let tz = parse_timezone(&schedule.timezone)?;
        let kind = match &schedule.when {
            When::Cron { pattern } => Kind::Cron(Box::new(Self::compile_cron(pattern)?)),
            When::Every { every_ms } => {
                let every_secs = i64::try_from(*every_ms / 1000).unwrap_or(i64::MAX).max(1);
                Kind::Every { every_secs, anchor: schedule.not_before.map_or(0, |t| t.timestamp()) }
            }
            When::At { at } => Kind::At(*at),
            When::OncePerPc | When::OncePerVersion => Kind::None,
        };
        Ok(Self { kind, tz, not_before: schedule.not_before, not_after: schedule.not_after })
    }

    /// The first occurrence strictly after `after` (within `not_before`..=`not_after`); none when there is no more.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Occurrences before `not_before` do not count: start looking just before it.
        let after = match self.not_before {
            Some(from) if after < from => from - chrono::Duration::seconds(1),
            _ => after,
        };
        let next = match &self.kind {
            Kind::Cron(cron) => {
                let local = after.with_timezone(&self.tz);
                cron.find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
            }
            Kind::Every { every_secs, anchor } => {
                let since = after.timestamp() - anchor;
                let steps = since.div_euclid(*every_secs) + 1;
                Utc.timestamp_opt(anchor + steps.saturating_mul(*every_secs), 0).single()
            }
            Kind::At(at) => (*at > after).then_some(*at),
            Kind::None => None,
        }?;
        match self.not_after {
            Some(until) if next > until => None,
            _ => Some(next),
        }
    }

    /// Up to `n` occurrences after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = after;
        while out.len() < n {
            match self.next_after(cursor) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }

    /// The last occurrence at or before `at`, looking back from it (for a jump over a long absence); none if there
    /// is none after `after`.
    pub fn last_between(&self, after: DateTime<Utc>, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let found = match &self.kind {
            Kind::Cron(cron) => {
                let local = at.with_timezone(&self.tz);
                cron.find_previous_occurrence(&local, true).ok().map(|t| t.with_timezone(&Utc))
            }
            Kind::Every { every_secs, anchor } => {
                let steps = (at.timestamp() - anchor).div_euclid(*every_secs);
                Utc.timestamp_opt(anchor + steps.saturating_mul(*every_secs), 0).single()
            }
            Kind::At(time) => (*time <= at).then_some(*time),
            Kind::None => None,
        }?;
        let inside = found > after
            && self.not_before.is_none_or(|from| found >= from)
            && self.not_after.is_none_or(|until| found <= until);
        inside.then_some(found)
    }
}

/// What a look at a timed schedule finds due, in order, as [`due`] works it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// An occurrence to fire (overlap permitting): on time, or the one `misfire: run_once` runs late.
    Fire(DateTime<Utc>),
    /// Occurrences missed (decided more than [`LATE_AFTER`] late) that `misfire` does not run: the first, the last
    /// and how many (`at_least` when the walk stopped counting at [`MAX_STEPS`]).
    Missed { first: DateTime<Utc>, last: DateTime<Utc>, count: u64, at_least: bool },
}

impl Due {
    /// The occurrence time the schedule's cursor moves to once this is decided.
    pub fn cursor(&self) -> DateTime<Utc> {
        match self {
            Self::Fire(at) => *at,
            Self::Missed { last, .. } => *last,
        }
    }
}

/// What is due of a timed schedule at `now`, every occurrence after `cursor` (the last one decided): each on-time
/// occurrence fires; a run of missed ones is recorded as missed, except that with `misfire: run_once` the latest
/// of them fires if it is at most `grace` late. A pure function of its inputs, so every backend decides the same.
pub fn due(timing: &Timing, cursor: DateTime<Utc>, now: DateTime<Utc>, misfire: Misfire, grace: Duration) -> Vec<Due> {
    let late_after = chrono::Duration::from_std(LATE_AFTER).unwrap_or_default();
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let mut out = Vec::new();
    let mut cursor = cursor;
    let mut steps = 0;
    while let Some(next) = timing.next_after(cursor) {
        if next > now || steps >= MAX_STEPS {
            break;
        }
        if now - next <= late_after {
            out.push(Due::Fire(next));
            cursor = next;
            steps += 1;
            continue;
        }
        // A run of missed occurrences: walk it to its end (the last one more than `late_after` late).
        let (first, mut last, mut count, mut at_least) = (next, next, 1u64, false);
        while let Some(following) = timing.next_after(last) {
            if now - following <= late_after {
                break;
            }
            steps += 1;
            if steps >= MAX_STEPS {
                // Jump over the rest of the absence rather than walk it.
                if let Some(jump) = timing.last_between(last, now - late_after) {
                    last = jump;
                }
                at_least = true;
                break;
            }
            last = following;
            count += 1;
        }
        let run_late = misfire == Misfire::RunOnce && now - last <= grace;
        if run_late {
            if count > 1 || at_least {
                let before_last = timing_before(timing, first, last);
                out.push(Due::Missed { first, last: before_last, count: count - 1, at_least });
            }
            out.push(Due::Fire(last));
        } else {
            out.push(Due::Missed { first, last, count, at_least });
        }
        cursor = last;
        steps += 1;
    }
    out
}

/// The occurrence before `last` in a run starting at `first` (for a run whose last one fires): walks from
/// `first`, bounded; `first` if the walk is too long to be worth it.
fn timing_before(timing: &Timing, first: DateTime<Utc>, last: DateTime<Utc>) -> DateTime<Utc> {
    let mut previous = first;
    let mut cursor = first;
    for _ in 0..MAX_STEPS {
        match timing.next_after(cursor) {
            Some(next) if next < last => {
                previous = next;
                cursor = next;
            }
            _ => return previous,
        }
    }
    previous
}

/// The JSON schema of [`ScheduleFile`], as committed in `schema/schedule.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ScheduleFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests;
