//! Config loading for every component: an optional TOML file, rendered as a template first, then environment
//! overrides, then validation into a checked config. This module holds that machinery, the tables every component
//! shares (`[nats]`, `[log]`) and the agent's config; the backend's own keys are checked in `kanade-backend`'s
//! `config`.
//!
//! Files are sectioned: the agent's has `[agent]` (id, nats_url, data_dir, groups and its tuning), `[log]`,
//! `[inventory]` and `[nats]` (the token); the backend's `[backend]`, `[auth]`, `[log]` and `[nats]`. Each thing is
//! said in one place; the environment overrides it, a `KANADE_*` variable over its generic twin (`DATABASE_URL`,
//! `RUST_LOG`).
//!
//! Templating uses `teravars` (tera plus a `[vars]` table), which is what the seed's config files were written
//! for: `{{ system.host }}`, `{{ env(name="X", default="Y") }}`, `{{ vars.name }}`. Evaluated against writing our
//! own: it is small, maintained, strips TOML comments before rendering (so a commented-out sample cannot break a
//! load) and leaves everything else to `toml`. The file is strict: an unknown key is an error naming the key's
//! dotted path, its line and its column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::ids::{GroupName, IdError, PcId};

/// Largest config file accepted; anything bigger is not a config file.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_OUTPUT_LIMIT_BYTES: usize = 256 * 1024;
pub const DEFAULT_MAX_LOCAL_CONCURRENT: usize = 4;
/// Bytes of results an agent's outbox holds before new results are kept without their output: 64 MiB, some hundreds
/// of results with full output, or tens of thousands without.
pub const DEFAULT_OUTBOX_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes of one stream of one run kept whole (spooled, then put into `result_output`). A quarter of the default
/// outbox, so a few such runs fit while the broker is away.
pub const DEFAULT_OUTPUT_MAX_BYTES: u64 = 16 * 1024 * 1024;
const MIN_OUTBOX_MAX_BYTES: u64 = 64 * 1024;
const MAX_OUTBOX_MAX_BYTES: u64 = 64 * 1024 * 1024 * 1024;
pub const DEFAULT_CATCH_UP_JITTER: Duration = Duration::from_secs(3);
const MAX_CATCH_UP_JITTER: Duration = Duration::from_secs(600);
/// How often an agent reports its full inventory, and the random spread around it, unless `[inventory]` says
/// otherwise.
pub const DEFAULT_INVENTORY_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_INVENTORY_JITTER: Duration = Duration::from_secs(600);
const MIN_INVENTORY_INTERVAL: Duration = Duration::from_secs(60);
const MAX_INVENTORY_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);
/// How often a watched agent samples, and the bounds of `agent.perf_interval` / `perf_interval`.
pub const DEFAULT_PERF_INTERVAL: Duration = Duration::from_secs(1);
pub const MIN_PERF_INTERVAL: Duration = Duration::from_millis(250);
pub const MAX_PERF_INTERVAL: Duration = Duration::from_secs(60);
/// How often every agent sends a performance rollup, and the bounds of `agent.host_perf_interval` /
/// `host_perf_interval`; `0s` sends none.
pub const DEFAULT_HOST_PERF_INTERVAL: Duration = Duration::from_secs(60);
pub const MIN_HOST_PERF_INTERVAL: Duration = Duration::from_secs(10);
pub const MAX_HOST_PERF_INTERVAL: Duration = Duration::from_secs(3600);
/// The log filter when neither `[log] level`, `KANADE_LOG` nor `RUST_LOG` gives one.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Daily log files kept by `[log] file` (and the agent's `--log-dir`); older ones are deleted at rotation.
pub const LOG_FILES_KEPT: usize = 14;
/// The longest log filter accepted: a filter is a few directives, not a document.
const MAX_LOG_LEVEL_BYTES: usize = 1024;

/// Where environment variables come from; tests pass a map instead of touching the process environment.
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// The process environment, and beneath it values kept elsewhere for this process (a Windows service's secrets in
/// the registry): a variable set to something other than the empty string in the environment wins.
pub struct EnvWithFallback {
    pub fallback: HashMap<String, String>,
}

impl EnvSource for EnvWithFallback {
    fn var(&self, name: &str) -> Option<String> {
        match std::env::var(name) {
            Ok(value) if !value.is_empty() => Some(value),
            set => self.fallback.get(name).cloned().or(set.ok()),
        }
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The first of `names` set to something other than the empty string, with its name: `X= kanade-agent` means X is
/// not set, as shells and service managers use it.
pub fn env_first(env: &dyn EnvSource, names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|name| env.var(name).filter(|value| !value.is_empty()).map(|value| (*name, value)))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file `{}` is larger than {MAX_CONFIG_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("config file `{}`: template error: {message}", path.display())]
    Template { path: PathBuf, message: String },
    /// `message` says where: the line, the column and the key's path (`agent.heartbeat_interval`).
    #[error("config file `{}`: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {source}")]
    InvalidId {
        key: String,
        #[source]
        source: IdError,
    },
    #[error("{key}: `{value}` {problem}")]
    InvalidValue { key: String, value: String, problem: String },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(key: &str, value: impl std::fmt::Display, problem: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue { key: key.to_owned(), value: value.to_string(), problem: problem.into() }
}

/// Connection settings shared by every component that talks to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// One or more server URLs; the client picks among them and fails over.
    pub urls: Vec<String>,
    pub token: Option<String>,
    /// The `.creds` file (a user JWT and its nkey seed) this component connects with. An agent's default is the
    /// credential it received at enrolment, in its data dir.
    pub creds: Option<PathBuf>,
    /// The fleet's CA certificate (PEM): TLS is required and the broker's certificate must chain to it alone.
    pub ca: Option<PathBuf>,
    /// No CA, plaintext allowed: only for a development broker without TLS.
    pub insecure: bool,
}

impl NatsConfig {
    /// A development connection: no TLS, no credentials.
    pub fn insecure(urls: Vec<String>) -> Self {
        Self { urls, token: None, creds: None, ca: None, insecure: true }
    }

    /// A connection over TLS pinned to `ca`, authenticated by `creds`.
    pub fn secure(urls: Vec<String>, creds: Option<PathBuf>, ca: PathBuf) -> Self {
        Self { urls, token: None, creds, ca: Some(ca), insecure: false }
    }
}

/// The `[nats]` table of a config file: the connection's credentials, which every component shares. The URL is the
/// component's own `nats_url` (`[agent]`, `[backend]`), so there is one place to say it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsFile {
    token: Option<String>,
    /// Relative paths are taken from the config file's folder.
    creds: Option<PathBuf>,
    ca: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

impl NatsFile {
    /// The connection: `KANADE_NATS_URL` over the file's `url_key` (both a comma list), the default when neither
    /// is given; `KANADE_NATS_TOKEN` over the file's `nats.token`; `KANADE_NATS_CREDS` / `KANADE_NATS_CA` over
    /// `nats.creds` / `nats.ca` (relative file paths are from `base`, the config file's folder). Without a CA the
    /// connection is refused unless `nats.insecure` is set.
    pub fn resolve(
        self,
        env: &dyn EnvSource,
        url: Option<String>,
        url_key: &str,
        base: Option<&Path>,
    ) -> Result<NatsConfig, ConfigError> {
        let (key, urls) = match env_first(env, &["KANADE_NATS_URL"]) {
            Some((name, list)) => (name, Some(list)),
            None => (url_key, url),
        };
        let urls = match urls {
            None => vec![DEFAULT_NATS_URL.to_owned()],
            Some(list) => {
                let urls = split_list(&list);
                if urls.is_empty() {
                    return Err(invalid(key, list, "names no NATS URL (expected nats://host:port)"));
                }
                urls
            }
        };
        for url in &urls {
            validate_nats_url(key, url)?;
        }
        let token = env_first(env, &["KANADE_NATS_TOKEN"]).map(|(_, t)| t).or(self.token).filter(|t| !t.is_empty());
        let from_file = |path: Option<PathBuf>| path.map(|p| base.map_or_else(|| p.clone(), |b| b.join(&p)));
        let creds = env_first(env, &["KANADE_NATS_CREDS"]).map(|(_, p)| PathBuf::from(p)).or(from_file(self.creds));
        let ca = env_first(env, &["KANADE_NATS_CA"]).map(|(_, p)| PathBuf::from(p)).or(from_file(self.ca));
        if ca.is_none() && !self.insecure {
            return Err(ConfigError::Invalid(format!(
                "nats.ca: not set; kanade connects to NATS only over TLS with the fleet's CA pinned (`kanade \
                 security init` writes {CA_FILE_NAME}); set KANADE_NATS_CA or `[nats] ca`, or `insecure = true` for a \
                 development broker without TLS"
            )));
        }
        let insecure = self.insecure && ca.is_none();
        Ok(NatsConfig { urls, token, creds, ca, insecure })
    }
}

/// The CA file `kanade security init` writes.
pub const CA_FILE_NAME: &str = "ca.pem";

fn validate_nats_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = ["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| invalid(key, url, "is not a NATS URL (expected nats://host:port)"))?;
    if rest.is_empty() || rest.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(invalid(key, url, "has no host"));
    }
    Ok(())
}

/// A comma-separated list from an environment variable; blanks are dropped.
fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// A humantime duration (`30s`, `5m`) for `key`, or an error naming the key and the value.
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value)
        .map_err(|err| invalid(key, value, format!("is not a duration ({err}); write e.g. `30s` or `5m`")))
}

/// `raw` as a duration within `range`, `default` when absent; errors name `key` and the bound crossed.
pub fn checked_duration(
    key: &str,
    raw: Option<&str>,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    let value = parse_duration(key, raw)?;
    let show = |d: Duration| humantime::format_duration(d).to_string();
    if value < *range.start() {
        return Err(invalid(key, raw, format!("is shorter than the minimum of {}", show(*range.start()))));
    }
    if value > *range.end() {
        return Err(invalid(key, raw, format!("is longer than the maximum of {}", show(*range.end()))));
    }
    Ok(value)
}

/// A path from the file that must not be empty.
fn non_empty_path(key: &str, path: PathBuf) -> Result<PathBuf, ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(invalid(key, "", "is empty; leave the key out for the default"));
    }
    Ok(path)
}

/// Reads, renders and parses a config file into its serde file type (strict: the type denies unknown fields); no
/// file is the type's default. A parse error names the line, the column and the key's dotted path.
pub fn load_file<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(path) = path else { return Ok(T::default()) };
    let read_err = |source| ConfigError::Read { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { path: path.to_owned() });
    }
    let raw = std::fs::read_to_string(path).map_err(read_err)?;
    let rendered = render(&raw).map_err(|message| ConfigError::Template { path: path.to_owned(), message })?;
    parse_toml(&rendered).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })
}

/// Parses rendered TOML into `T`, an error saying `line L, column C: key.path: what`. Rendering keeps the file's
/// line structure (teravars blanks comments rather than removing their lines), so the line is the file's own.
fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let located = |err: &toml::de::Error, key: Option<String>| {
        let at = err.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        let key = key.filter(|k| !k.is_empty() && k != ".").map(|k| format!("`{k}`: ")).unwrap_or_default();
        format!("{}{key}{}", at.unwrap_or_default(), err.message().trim_end())
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|err| located(&err, None))?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| located(err.inner(), Some(err.path().to_string())))
}

/// Renders a TOML template with `system`, `env()` and the file's own `[vars]`.
fn render(raw: &str) -> Result<String, String> {
    let mut engine = teravars::Engine::new();
    let mut vars = teravars::extract_vars(raw).map_err(|e| e.to_string())?;
    teravars::resolve(&mut vars, &mut engine).map_err(|e| e.to_string())?;
    let mut ctx = teravars::system_context();
    ctx.insert("vars", &vars);
    engine.render_toml(raw, &ctx).map_err(|e| e.to_string())
}

/// The `[log]` table, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    level: Option<String>,
    file: Option<PathBuf>,
}

/// Where a component logs and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing` filter: a level (`info`) or directives (`info,kanade_agent=debug`), already checked.
    pub level: String,
    /// `None`: stderr. Otherwise daily rolling files named after this path; see [`LogConfig::rolling`].
    pub file: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: DEFAULT_LOG_LEVEL.to_owned(), file: None }
    }
}

/// Daily rolling log files: `<dir>/<prefix>.<YYYY-MM-DD>.<suffix>` (UTC date; without a suffix
/// `<prefix>.<YYYY-MM-DD>`), a new one at each UTC midnight, the newest [`LOG_FILES_KEPT`] kept. The current file
/// is the one with today's date, which is also the newest by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollingFiles {
    pub dir: PathBuf,
    pub prefix: String,
    /// Empty when the configured file has no extension.
    pub suffix: String,
}

impl LogConfig {
    /// `KANADE_LOG` over `RUST_LOG` over the file's `level`, `default_level` when none; the file's `file`.
    pub fn resolve(env: &dyn EnvSource, file: LogFile, default_level: &str) -> Result<Self, ConfigError> {
        let (key, level) = match env_first(env, &["KANADE_LOG", "RUST_LOG"]) {
            Some((name, level)) => (name, level),
            None => ("log.level", file.level.unwrap_or_else(|| default_level.to_owned())),
        };
        check_log_level(key, &level)?;
        let file = file.file.map(|path| non_empty_path("log.file", path)).transpose()?;
        let config = Self { level, file };
        if let Some(path) = &config.file
            && config.rolling().is_none()
        {
            return Err(invalid("log.file", path.display(), "names no file (write e.g. `/var/log/kanade/agent.log`)"));
        }
        Ok(config)
    }

    /// The log file that `--log-dir <dir>` means: `<dir>/<component>.log`, so daily `<component>.<date>.log`.
    pub fn file_in_dir(dir: &Path, component: &str) -> PathBuf {
        dir.join(format!("{component}.log"))
    }

    /// Installs the process's log subscriber: stderr, or the daily rolling files `file` stands for
    /// ([`LogConfig::rolling`], the newest [`LOG_FILES_KEPT`] kept). The one way the agent and the backend log.
    pub fn init_tracing(&self) -> Result<(), String> {
        self.init_tracing_with(None::<tracing_subscriber::layer::Identity>)
    }

    /// [`LogConfig::init_tracing`] with one more layer beside the log, when there is one: a Windows service's Event
    /// Log (`kanade_service::event_log_layer`). It sees the events the level lets through.
    pub fn init_tracing_with<L>(&self, extra: Option<L>) -> Result<(), String>
    where
        L: tracing_subscriber::Layer<
                tracing_subscriber::layer::Layered<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
            > + Send
            + Sync
            + 'static,
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let filter = tracing_subscriber::EnvFilter::try_new(&self.level)
            .map_err(|err| format!("log.level: `{}` is not a log filter ({err})", self.level))?;
        let base = tracing_subscriber::registry().with(filter).with(extra);
        let log = tracing_subscriber::fmt::layer();
        match self.rolling() {
            Some(files) => {
                let dir = &files.dir;
                let cannot = |err: &dyn std::fmt::Display| format!("cannot write logs to `{}`: {err}", dir.display());
                std::fs::create_dir_all(dir).map_err(|err| cannot(&err))?;
                let files = tracing_appender::rolling::Builder::new()
                    .rotation(tracing_appender::rolling::Rotation::DAILY)
                    .filename_prefix(&files.prefix)
                    .filename_suffix(&files.suffix)
                    .max_log_files(LOG_FILES_KEPT)
                    .build(dir)
                    .map_err(|err| cannot(&err))?;
                base.with(log.with_writer(files).with_ansi(false)).init();
            }
            None => {
                let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
                base.with(log.with_writer(std::io::stderr).with_ansi(ansi)).init();
            }
        }
        Ok(())
    }

    /// The rolling files `file` stands for: `file = "/var/log/kanade/agent.log"` is `agent.2026-12-01.log`,
    /// `agent.2026-12-02.log`, ... in `/var/log/kanade`. `None` for stderr, or a path with no file name.
    pub fn rolling(&self) -> Option<RollingFiles> {
        let file = self.file.as_deref()?;
        let name = Path::new(file.file_name()?);
        let prefix = name.file_stem()?.to_str()?.to_owned();
        let suffix = name.extension().map_or(Some(""), |ext| ext.to_str())?.to_owned();
        let dir = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        Some(RollingFiles { dir, prefix, suffix })
    }
}

/// A `tracing` filter, as `EnvFilter` reads it, where a bare word must be a level: `verbose` alone would otherwise
/// pass as "everything from a module named verbose", which is never what an operator meant.
fn check_log_level(key: &str, level: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if level.len() > MAX_LOG_LEVEL_BYTES {
        return Err(invalid(
            key,
            format!("{}...", &level[..level.floor_char_boundary(40)]),
            "is too long for a log filter",
        ));
    }
    if level.trim().is_empty() || level.contains(char::is_control) {
        return Err(invalid(key, level, "is not a log filter (write e.g. `info` or `info,kanade_agent=debug`)"));
    }
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains(['=', '[']) && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                key,
                level,
                format!(
                    "has `{directive}`, which is no level (trace, debug, info, warn, error, off) nor `target=level`"
                ),
            ));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map_err(|err| invalid(key, level, format!("is not a log filter ({err})")))?;
    Ok(())
}

/// The `[inventory]` table, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    enabled: Option<bool>,
    interval: Option<String>,
    jitter: Option<String>,
}

/// When the agent gathers and reports its inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryConfig {
    pub enabled: bool,
    /// Between two full inventories.
    pub interval: Duration,
    /// Each inventory waits a random time up to this, so a fleet started together does not report together; never
    /// more than `interval`.
    pub jitter: Duration,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self { enabled: true, interval: DEFAULT_INVENTORY_INTERVAL, jitter: DEFAULT_INVENTORY_JITTER }
    }
}

impl InventoryFile {
    fn check(self) -> Result<InventoryConfig, ConfigError> {
        let interval = checked_duration(
            "inventory.interval",
            self.interval.as_deref(),
            DEFAULT_INVENTORY_INTERVAL,
            MIN_INVENTORY_INTERVAL..=MAX_INVENTORY_INTERVAL,
        )?;
        let jitter = checked_duration(
            "inventory.jitter",
            self.jitter.as_deref(),
            DEFAULT_INVENTORY_JITTER,
            Duration::ZERO..=interval,
        )
        .map_err(|err| match err {
            ConfigError::InvalidValue { key, value, problem } if problem.starts_with("is longer") => {
                ConfigError::InvalidValue {
                    key,
                    value,
                    problem: format!(
                        "is longer than inventory.interval ({}); the jitter spreads reports within one interval",
                        humantime::format_duration(interval)
                    ),
                }
            }
            other => other,
        })?;
        Ok(InventoryConfig { enabled: self.enabled.unwrap_or(true), interval, jitter })
    }
}

/// The agent's checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub pc_id: PcId,
    /// The machine's own name, for display.
    pub hostname: String,
    pub groups: Vec<GroupName>,
    /// `None`: the agent picks its per-OS default.
    pub data_dir: Option<PathBuf>,
    pub heartbeat_interval: Duration,
    /// Captured bytes kept per stream (stdout, stderr) of one run inside its result.
    pub output_limit_bytes: usize,
    /// Bytes kept per stream of one run in all: what outgrows `output_limit_bytes` is spooled to disk and put into
    /// the `result_output` object store, up to this ceiling; beyond it the stream is cut and flagged `capped`.
    pub output_max_bytes: u64,
    /// After each (re)connect the agent waits a random time up to this before reading back missed commands, so a
    /// fleet that reconnects together does not ask together.
    pub catch_up_jitter: Duration,
    /// Runs started at once; the rest wait in arrival order.
    pub max_local_concurrent: usize,
    /// Bytes of results the outbox holds while the broker is away before new results are kept without their
    /// output (status, exit code and times are always kept).
    pub outbox_max_bytes: u64,
    pub nats: NatsConfig,
    /// Where the agent logs: `[log]`, or `--log-dir` (which sets `file` to `<dir>/kanade-agent.log`).
    pub log: LogConfig,
    pub inventory: InventoryConfig,
    pub perf: PerfConfig,
    /// The enrolment token an agent without a credential asks with (`agent.enroll_token`, `KANADE_ENROLL_TOKEN`);
    /// checked for shape here, used once.
    pub enroll_token: Option<String>,
    /// The credential that may only ask to enrol (`agent.bootstrap_creds`, `KANADE_BOOTSTRAP_CREDS`); default
    /// `bootstrap.creds` in the data dir.
    pub bootstrap_creds: Option<PathBuf>,
    /// The fleet's trust root (`agent.trust_root`, `KANADE_TRUST_ROOT`: the public key in `trust-root.pub`): the
    /// agent takes only trust lists it signed, and obeys only commands signed by a key in such a list. Without it
    /// the agent refuses every command.
    pub trust_root: Option<crate::authority::PublicKey>,
    /// The account a `run_as: user` script runs as (`agent.run_as_user`, `KANADE_RUN_AS_USER`); unset, the user
    /// signed in at the PC's screen. Unix only; an account name, not root.
    pub run_as_user: Option<String>,
    /// Where kanade-client reaches the agent (`agent.client_socket`, `KANADE_CLIENT_SOCKET`): a Unix socket path,
    /// by default [`crate::client_ipc::DEFAULT_SOCKET`]; `off` (or empty) for none. On Windows the agent listens on
    /// the named pipe [`crate::client_ipc::PIPE_NAME`] unless this is `off`.
    pub client_socket: Option<PathBuf>,
}

/// Whether `name` is an account name as `useradd` takes them (and nothing that could surprise a lookup): letters,
/// digits, `.`, `_`, `-`, a trailing `$`; not starting with `-`; at most 32 bytes.
pub fn is_account_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    !body.is_empty()
        && name.len() <= 32
        && !body.starts_with('-')
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What the agent samples of its host's performance, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfConfig {
    /// Between two live samples while a viewer holds a lease.
    pub interval: Duration,
    /// Between two rollups; zero sends none.
    pub rollup_interval: Duration,
    /// Processes in each top list (by CPU, by memory) of a live sample.
    pub top: usize,
}

impl Default for PerfConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_PERF_INTERVAL,
            rollup_interval: DEFAULT_HOST_PERF_INTERVAL,
            top: crate::perf::DEFAULT_TOP,
        }
    }
}

/// `agent.host_perf_interval`: `0s` (no rollups) or 10s to 1h.
fn host_perf_interval(raw: Option<&str>) -> Result<Duration, ConfigError> {
    const KEY: &str = "agent.host_perf_interval";
    match raw {
        Some(raw) if parse_duration(KEY, raw)? == Duration::ZERO => Ok(Duration::ZERO),
        raw => checked_duration(KEY, raw, DEFAULT_HOST_PERF_INTERVAL, MIN_HOST_PERF_INTERVAL..=MAX_HOST_PERF_INTERVAL),
    }
}

/// An agent config file: `[agent]`, `[log]`, `[inventory]`, `[nats]` and teravars' `[vars]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    #[serde(default)]
    agent: AgentSection,
    #[serde(default)]
    log: LogFile,
    #[serde(default)]
    inventory: InventoryFile,
    #[serde(default)]
    nats: NatsFile,
    /// teravars' variables, already used by rendering.
    #[serde(default)]
    #[allow(dead_code)]
    vars: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    id: Option<String>,
    nats_url: Option<String>,
    data_dir: Option<PathBuf>,
    groups: Option<Vec<String>>,
    heartbeat_interval: Option<String>,
    catch_up_jitter: Option<String>,
    max_local_concurrent: Option<usize>,
    output_limit_bytes: Option<usize>,
    output_max_bytes: Option<u64>,
    outbox_max_bytes: Option<u64>,
    perf_interval: Option<String>,
    host_perf_interval: Option<String>,
    perf_top: Option<usize>,
    enroll_token: Option<String>,
    bootstrap_creds: Option<PathBuf>,
    trust_root: Option<String>,
    run_as_user: Option<String>,
    client_socket: Option<String>,
}

impl AgentConfig {
    /// Loads the agent's config: the file (if any), then the environment: `KANADE_AGENT_ID`, `KANADE_AGENT_GROUPS`,
    /// `KANADE_AGENT_DATA_DIR`, `KANADE_NATS_URL`, `KANADE_NATS_TOKEN`, `KANADE_LOG` / `RUST_LOG`. `hostname` is the
    /// machine's name, used for the default pc id.
    pub fn load(path: Option<&Path>, env: &dyn EnvSource, hostname: &str) -> Result<Self, ConfigError> {
        let file: AgentFile = load_file(path)?;
        let agent = file.agent;

        let pc_id = match env_first(env, &["KANADE_AGENT_ID"]).or(agent.id.map(|id| ("agent.id", id))) {
            Some((key, raw)) => PcId::new(raw).map_err(|source| ConfigError::InvalidId { key: key.into(), source })?,
            None => PcId::from_hostname(hostname).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "cannot derive a pc id from hostname `{hostname}`; set `agent.id` or KANADE_AGENT_ID"
                ))
            })?,
        };
        let (groups_key, raw_groups) = match env_first(env, &["KANADE_AGENT_GROUPS"]) {
            Some((name, list)) => (name, split_list(&list)),
            None => ("agent.groups", agent.groups.unwrap_or_default()),
        };
        let mut groups = raw_groups
            .into_iter()
            .map(|g| GroupName::new(g).map_err(|source| ConfigError::InvalidId { key: groups_key.into(), source }))
            .collect::<Result<Vec<_>, _>>()?;
        groups.sort();
        groups.dedup();

        let heartbeat_interval = checked_duration(
            "agent.heartbeat_interval",
            agent.heartbeat_interval.as_deref(),
            DEFAULT_HEARTBEAT_INTERVAL,
            MIN_HEARTBEAT_INTERVAL..=MAX_HEARTBEAT_INTERVAL,
        )?;
        let output_limit_bytes = agent.output_limit_bytes.unwrap_or(DEFAULT_OUTPUT_LIMIT_BYTES);
        // Results travel inside one JetStream message, so the two captured streams must fit one with room to spare.
        let max_output = usize::try_from(crate::resources::MAX_MESSAGE_BYTES).unwrap_or(usize::MAX) / 4;
        if output_limit_bytes == 0 || output_limit_bytes > max_output {
            return Err(invalid(
                "agent.output_limit_bytes",
                output_limit_bytes,
                format!("must be between 1 and {max_output}"),
            ));
        }
        let data_dir = match env_first(env, &["KANADE_AGENT_DATA_DIR"]) {
            Some((_, dir)) => Some(PathBuf::from(dir)),
            None => agent.data_dir.map(|dir| non_empty_path("agent.data_dir", dir)).transpose()?,
        };
        let catch_up_jitter = checked_duration(
            "agent.catch_up_jitter",
            agent.catch_up_jitter.as_deref(),
            DEFAULT_CATCH_UP_JITTER,
            Duration::ZERO..=MAX_CATCH_UP_JITTER,
        )?;

        let max_local_concurrent = agent.max_local_concurrent.unwrap_or(DEFAULT_MAX_LOCAL_CONCURRENT);
        if !(1..=256).contains(&max_local_concurrent) {
            return Err(invalid("agent.max_local_concurrent", max_local_concurrent, "must be between 1 and 256"));
        }

        let outbox_max_bytes = agent.outbox_max_bytes.unwrap_or(DEFAULT_OUTBOX_MAX_BYTES);
        if !(MIN_OUTBOX_MAX_BYTES..=MAX_OUTBOX_MAX_BYTES).contains(&outbox_max_bytes) {
            return Err(invalid(
                "agent.outbox_max_bytes",
                outbox_max_bytes,
                format!("must be between {MIN_OUTBOX_MAX_BYTES} and {MAX_OUTBOX_MAX_BYTES}"),
            ));
        }

        let perf_top = agent.perf_top.unwrap_or(crate::perf::DEFAULT_TOP);
        if !(1..=crate::perf::MAX_TOP).contains(&perf_top) {
            return Err(invalid("agent.perf_top", perf_top, format!("must be between 1 and {}", crate::perf::MAX_TOP)));
        }
        let perf = PerfConfig {
            interval: checked_duration(
                "agent.perf_interval",
                agent.perf_interval.as_deref(),
                DEFAULT_PERF_INTERVAL,
                MIN_PERF_INTERVAL..=MAX_PERF_INTERVAL,
            )?,
            rollup_interval: host_perf_interval(agent.host_perf_interval.as_deref())?,
            top: perf_top,
        };

        let enroll_token =
            match env_first(env, &["KANADE_ENROLL_TOKEN"]).or(agent.enroll_token.map(|t| ("agent.enroll_token", t))) {
                Some((_, token)) if token.trim().is_empty() => None,
                Some((key, token)) => {
                    crate::enroll::Token::parse(&token).map_err(|err| invalid(key, "<hidden>", err.to_string()))?;
                    Some(token.trim().to_owned())
                }
                None => None,
            };
        let trust_root =
            match env_first(env, &["KANADE_TRUST_ROOT"]).or(agent.trust_root.map(|t| ("agent.trust_root", t))) {
                Some((_, root)) if root.trim().is_empty() => None,
                Some((key, root)) => Some(root.parse().map_err(|err: crate::authority::KeyError| {
                    invalid(key, crate::ids::shorten(&root), err.to_string())
                })?),
                None => None,
            };
        let run_as_user =
            match env_first(env, &["KANADE_RUN_AS_USER"]).or(agent.run_as_user.map(|u| ("agent.run_as_user", u))) {
                Some((_, user)) if user.trim().is_empty() => None,
                Some((key, user)) if !is_account_name(user.trim()) || user.trim() == "root" => {
                    return Err(invalid(
                        key,
                        crate::ids::shorten(&user),
                        "must be an account name (letters, digits, `.`, `_`, `-`; at most 32) other than root",
                    ));
                }
                Some((_, user)) => Some(user.trim().to_owned()),
                None => None,
            };
        let client_socket = match env_first(env, &["KANADE_CLIENT_SOCKET"])
            .or(agent.client_socket.map(|s| ("agent.client_socket", s)))
        {
            None => Some(PathBuf::from(crate::client_ipc::DEFAULT_SOCKET)),
            Some((_, raw)) if raw.trim().is_empty() || raw.trim().eq_ignore_ascii_case("off") => None,
            Some((key, raw)) if !Path::new(raw.trim()).is_absolute() || raw.len() > 100 || raw.contains('\0') => {
                // 108 bytes is the most a Unix socket address holds; a relative path would depend on the service's cwd.
                return Err(invalid(
                    key,
                    crate::ids::shorten(&raw),
                    "must be an absolute path of at most 100 bytes, or `off`",
                ));
            }
            Some((_, raw)) => Some(PathBuf::from(raw.trim())),
        };
        let base = path.and_then(Path::parent);
        let bootstrap_creds = match env_first(env, &["KANADE_BOOTSTRAP_CREDS"]) {
            Some((_, p)) => Some(PathBuf::from(p)),
            None => agent
                .bootstrap_creds
                .map(|p| non_empty_path("agent.bootstrap_creds", p))
                .transpose()?
                .map(|p| base.map_or_else(|| p.clone(), |b| b.join(&p))),
        };

        // The whole output is counted against the outbox while it waits there, so one run's stream must fit it.
        // Unset, it is the default bounded by the outbox (and never below the inline part, which is kept anyway).
        let inline = output_limit_bytes as u64;
        let output_max_bytes =
            agent.output_max_bytes.unwrap_or_else(|| DEFAULT_OUTPUT_MAX_BYTES.min(outbox_max_bytes).max(inline));
        if agent.output_max_bytes.is_some() && !(inline..=outbox_max_bytes).contains(&output_max_bytes) {
            return Err(invalid(
                "agent.output_max_bytes",
                output_max_bytes,
                format!(
                    "must be between output_limit_bytes ({output_limit_bytes}) and outbox_max_bytes ({outbox_max_bytes})"
                ),
            ));
        }

        Ok(Self {
            pc_id,
            hostname: hostname.to_owned(),
            groups,
            data_dir,
            heartbeat_interval,
            output_limit_bytes,
            output_max_bytes,
            catch_up_jitter,
            max_local_concurrent,
            outbox_max_bytes,
            nats: file.nats.resolve(env, agent.nats_url, "agent.nats_url", path.and_then(Path::parent))?,
            log: LogConfig::resolve(env, file.log, DEFAULT_LOG_LEVEL)?,
            inventory: file.inventory.check()?,
            perf,
            enroll_token,
            bootstrap_creds,
            trust_root,
            run_as_user,
            client_socket,
        })
    }
}

/// Candidate data directories for `component`, best first; the caller takes the first it can create. A service
/// runs as root/SYSTEM and wants the machine-wide place; a developer's run falls back to the user's data dir.
pub fn data_dir_candidates(component: &str, env: &dyn EnvSource) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if cfg!(windows) {
        let program_data = env.var("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
        out.push(PathBuf::from(program_data).join("kanade").join(component));
    } else if cfg!(target_os = "macos") {
        out.push(PathBuf::from("/Library/Application Support/kanade").join(component));
        if let Some(home) = env.var("HOME") {
            out.push(PathBuf::from(home).join("Library/Application Support/kanade").join(component));
        }
    } else {
        out.push(PathBuf::from("/var/lib/kanade").join(component));
        if let Some(xdg) = env.var("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            out.push(PathBuf::from(xdg).join("kanade").join(component));
        } else if let Some(home) = env.var("HOME") {
            out.push(PathBuf::from(home).join(".local/share/kanade").join(component));
        }
    }
    out
}

/// The data dir for `component` when the config names none: the first candidate that can be created.
pub fn default_data_dir(component: &str) -> PathBuf {
    let candidates = data_dir_candidates(component, &ProcessEnv);
    candidates
        .iter()
        .find(|dir| std::fs::create_dir_all(dir).is_ok())
        .or(candidates.last())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(format!("kanade-{component}-data")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment `pairs` give, with a CA unless they name one (every connection needs one).
    #[test]
    fn the_environment_wins_over_a_fallback_that_fills_what_it_leaves_unset() {
        let fallback: HashMap<String, String> =
            [("KANADE_TEST_SURELY_UNSET_VAR", "kept"), ("PATH", "not this")].map(|(k, v)| (k.into(), v.into())).into();
        let env = EnvWithFallback { fallback };
        assert_eq!(env.var("KANADE_TEST_SURELY_UNSET_VAR").as_deref(), Some("kept"));
        assert_eq!(env.var("PATH"), std::env::var("PATH").ok());
        assert_eq!(env.var("KANADE_TEST_OTHER_UNSET_VAR"), None);
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        env.entry("KANADE_NATS_CA".to_owned()).or_insert_with(|| "/etc/kanade/ca.pem".to_owned());
        env
    }

    #[test]
    fn without_a_ca_the_connection_is_refused_unless_insecure_is_said() {
        let err = AgentConfig::load(None, &HashMap::new(), "h").unwrap_err().to_string();
        assert!(err.contains("nats.ca: not set") && err.contains("insecure = true"), "{err}");
        let file = write("[nats]\ninsecure = true\n");
        let cfg = AgentConfig::load(Some(file.path()), &HashMap::new(), "h").unwrap();
        assert!(cfg.nats.insecure && cfg.nats.ca.is_none());
        // A CA wins over `insecure`: TLS is never dropped when a CA is known.
        let file = write("[nats]\ninsecure = true\nca = \"ca.pem\"\n");
        let cfg = AgentConfig::load(Some(file.path()), &HashMap::new(), "h").unwrap();
        assert!(!cfg.nats.insecure);
        assert_eq!(cfg.nats.ca, Some(file.path().parent().unwrap().join("ca.pem")));
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn load(text: &str, e: &[(&str, &str)]) -> Result<AgentConfig, String> {
        let file = write(text);
        AgentConfig::load(Some(file.path()), &env(e), "h").map_err(|err| err.to_string())
    }

    #[test]
    fn agent_runs_with_no_file_at_all() {
        let cfg = AgentConfig::load(None, &env(&[]), "My-Host.corp").unwrap();
        assert_eq!(cfg.pc_id.as_str(), "my-host");
        assert_eq!(cfg.nats.urls, vec![DEFAULT_NATS_URL]);
        assert_eq!(cfg.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL);
        assert!(cfg.groups.is_empty());
        assert_eq!(cfg.log, LogConfig::default());
        assert_eq!(cfg.inventory, InventoryConfig::default());
        assert_eq!(cfg.perf, PerfConfig::default());
        assert_eq!(
            (cfg.perf.interval, cfg.perf.rollup_interval, cfg.perf.top),
            (Duration::from_secs(1), Duration::from_secs(60), 20)
        );
        assert_eq!(cfg.inventory.interval, Duration::from_secs(24 * 3600));
        assert_eq!(cfg.inventory.jitter, Duration::from_secs(600));
        assert!(cfg.inventory.enabled);
    }

    #[test]
    fn every_section_is_read() {
        let cfg = load(
            concat!(
                "[agent]\nid = \"pc-7\"\nnats_url = \"nats://a:1, nats://b:2\"\ndata_dir = \"/srv/kanade\"\n",
                "groups = [\"lab\", \"canary\", \"lab\"]\nheartbeat_interval = \"5s\"\ncatch_up_jitter = \"0s\"\n",
                "max_local_concurrent = 2\noutput_limit_bytes = 1000\noutbox_max_bytes = 65536\n",
                "perf_interval = \"500ms\"\nhost_perf_interval = \"0s\"\nperf_top = 5\n",
                "[log]\nlevel = \"warn,kanade_agent=debug\"\nfile = \"/var/log/kanade/agent.log\"\n",
                "[inventory]\nenabled = false\ninterval = \"1h\"\njitter = \"1h\"\n",
                "[nats]\ntoken = \"t0k3n\"\ncreds = \"agent.creds\"\nca = \"/etc/kanade/ca.pem\"\n",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(cfg.pc_id.as_str(), "pc-7");
        assert_eq!(
            cfg.nats,
            NatsConfig {
                urls: vec!["nats://a:1".into(), "nats://b:2".into()],
                token: Some("t0k3n".into()),
                creds: Some(std::env::temp_dir().join("agent.creds")),
                ca: Some("/etc/kanade/ca.pem".into()),
                insecure: false,
            }
        );
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/srv/kanade")));
        assert_eq!(cfg.groups.iter().map(GroupName::as_str).collect::<Vec<_>>(), ["canary", "lab"]);
        assert_eq!(cfg.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(cfg.catch_up_jitter, Duration::ZERO);
        assert_eq!((cfg.max_local_concurrent, cfg.output_limit_bytes, cfg.outbox_max_bytes), (2, 1000, 65536));
        assert_eq!(cfg.log.level, "warn,kanade_agent=debug");
        assert_eq!(
            cfg.log.rolling(),
            Some(RollingFiles { dir: "/var/log/kanade".into(), prefix: "agent".into(), suffix: "log".into() })
        );
        assert_eq!(
            cfg.inventory,
            InventoryConfig { enabled: false, interval: Duration::from_secs(3600), jitter: Duration::from_secs(3600) }
        );
        assert_eq!(
            cfg.perf,
            PerfConfig { interval: Duration::from_millis(500), rollup_interval: Duration::ZERO, top: 5 }
        );
    }

    #[test]
    fn env_overrides_the_file() {
        let text = "[agent]\nid = \"from-file\"\ngroups = [\"a\"]\nnats_url = \"nats://file:4222\"\n\
                    [log]\nlevel = \"error\"\n[nats]\ntoken = \"file-token\"\n";
        let cfg = load(
            text,
            &[
                ("KANADE_AGENT_ID", "from-env"),
                ("KANADE_AGENT_GROUPS", "canary, wave1,,canary"),
                ("KANADE_NATS_URL", "nats://a:1,nats://b:2"),
                ("KANADE_NATS_TOKEN", "secret"),
                ("KANADE_AGENT_DATA_DIR", "/tmp/x"),
                ("RUST_LOG", "debug"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.pc_id.as_str(), "from-env");
        assert_eq!(cfg.groups.iter().map(GroupName::as_str).collect::<Vec<_>>(), ["canary", "wave1"]);
        assert_eq!(cfg.nats.urls, ["nats://a:1", "nats://b:2"]);
        assert_eq!(cfg.nats.token.as_deref(), Some("secret"));
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(cfg.log.level, "debug", "RUST_LOG over the file");
        // KANADE_LOG over RUST_LOG; an empty variable counts as unset.
        let cfg = load(text, &[("KANADE_LOG", "trace"), ("RUST_LOG", "debug"), ("KANADE_AGENT_ID", "")]).unwrap();
        assert_eq!(cfg.log.level, "trace");
        assert_eq!(cfg.pc_id.as_str(), "from-file");
        let cfg = load(text, &[("KANADE_LOG", ""), ("RUST_LOG", "")]).unwrap();
        assert_eq!(cfg.log.level, "error");
    }

    #[test]
    fn templates_render_system_env_and_vars() {
        let cfg = load(
            concat!(
                "# a commented sample is never rendered: {{ nope }}\n",
                "[agent]\n",
                "id = '{{ vars.site }}-{{ env(name=\"KANADE_TEST_SURELY_UNSET_VAR\", default=\"pc\") }}'\n",
                "groups = [\"{{ system.os }}\"]\n",
                "[vars]\nsite = \"tokyo\"\n",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(cfg.pc_id.as_str(), "tokyo-pc");
        assert_eq!(cfg.groups[0].as_str(), std::env::consts::OS);
    }

    #[test]
    fn unknown_keys_are_errors_with_their_path_and_line_at_every_level() {
        let cases = [
            ("[agent]\nid = \"a\"\n\nheartbeat = \"5s\"\n", "line 4", "`agent.heartbeat`"),
            ("# comment\n[log]\nlevel = \"info\"\nfiles = \"x\"\n", "line 4", "`log.files`"),
            ("[inventory]\nenabled = true\nintervall = \"1h\"\n", "line 3", "`inventory.intervall`"),
            ("[nats]\nurl = \"nats://x:1\"\n", "line 2", "`nats.url`"),
            ("[agent]\nid = \"a\"\n[agnet]\nid = \"b\"\n", "line 3", "`agnet`"),
            ("pc_id = \"a\"\n", "line 1", "`pc_id`"),
        ];
        for (text, line, key) in cases {
            let err = load(text, &[]).unwrap_err();
            assert!(err.contains("unknown field"), "{text:?}: {err}");
            assert!(err.contains(line), "{text:?}: {err}");
            assert!(err.contains(key), "{text:?}: {err}");
        }
    }

    #[test]
    fn malformed_toml_and_wrong_types_are_located() {
        let cases = [
            ("[agent\nid = \"a\"\n", "line 1"),
            ("[agent]\nid = \"a\"\nid = \"b\"\n", "line 3"),
            ("[agent]\nid = \"unterminated\n", "line 2"),
            ("[agent]\nid = 3\n", "`agent.id`: invalid type: integer `3`, expected a string"),
            ("[agent]\ngroups = \"lab\"\n", "`agent.groups`: invalid type"),
            ("[agent]\nmax_local_concurrent = -1\n", "`agent.max_local_concurrent`"),
            ("[agent]\noutbox_max_bytes = 1e99\n", "`agent.outbox_max_bytes`"),
            ("[inventory]\nenabled = \"yes\"\n", "`inventory.enabled`: invalid type"),
            ("agent = 1\n", "`agent`: invalid type"),
            ("[log]\nlevel = [\"info\"]\n", "`log.level`"),
        ];
        for (text, want) in cases {
            let err = load(text, &[]).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.starts_with("config file `"), "{text:?}: {err}");
        }
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let cases = [
            ("[agent]\nid = \"Not Valid\"", "agent.id: pc_id `Not Valid` contains `N`"),
            ("[agent]\nid = \"\"", "agent.id: pc_id must not be empty"),
            ("[agent]\nheartbeat_interval = \"soon\"", "agent.heartbeat_interval: `soon` is not a duration"),
            ("[agent]\nheartbeat_interval = \"1ms\"", "shorter than the minimum of 100ms"),
            ("[agent]\nheartbeat_interval = \"100000000y\"", "agent.heartbeat_interval: `100000000y`"),
            ("[agent]\nheartbeat_interval = \"2h\"", "longer than the maximum of 1h"),
            ("[agent]\noutput_limit_bytes = 0", "agent.output_limit_bytes: `0` must be between"),
            ("[agent]\ncatch_up_jitter = \"1h\"", "agent.catch_up_jitter: `1h` is longer than the maximum of 10m"),
            ("[agent]\nmax_local_concurrent = 0", "agent.max_local_concurrent: `0` must be between 1 and 256"),
            ("[agent]\noutbox_max_bytes = 10", "agent.outbox_max_bytes: `10` must be between"),
            ("[agent]\nperf_interval = \"100ms\"", "agent.perf_interval: `100ms` is shorter than the minimum of 250ms"),
            ("[agent]\nperf_interval = \"2m\"", "agent.perf_interval: `2m` is longer than the maximum of 1m"),
            (
                "[agent]\nhost_perf_interval = \"1s\"",
                "agent.host_perf_interval: `1s` is shorter than the minimum of 10s",
            ),
            ("[agent]\nhost_perf_interval = \"soon\"", "agent.host_perf_interval: `soon` is not a duration"),
            ("[agent]\nperf_top = 0", "agent.perf_top: `0` must be between 1 and 100"),
            ("[agent]\nperf_top = 101", "agent.perf_top: `101` must be between 1 and 100"),
            ("[agent]\ngroups = [\"a.b\"]", "agent.groups: group name `a.b`"),
            ("[agent]\ndata_dir = \"\"", "agent.data_dir: `` is empty"),
            ("[agent]\nnats_url = \"http://x\"", "agent.nats_url: `http://x` is not a NATS URL"),
            ("[agent]\nnats_url = \"\"", "agent.nats_url: `` names no NATS URL"),
            ("[agent]\nnats_url = \" , \"", "names no NATS URL"),
            ("[agent]\nnats_url = \"nats://\"", "has no host"),
            ("[agent]\nid = \"{{ unclosed\"", "template error"),
            ("[log]\nlevel = \"\"", "log.level: `` is not a log filter"),
            ("[log]\nlevel = \"verbose\"", "has `verbose`, which is no level"),
            ("[log]\nlevel = \"kanade_agent=loud\"", "log.level: `kanade_agent=loud` is not a log filter"),
            ("[log]\nfile = \"\"", "log.file: `` is empty"),
            ("[log]\nfile = \"/var/log/..\"", "log.file: `/var/log/..` names no file"),
            ("[inventory]\ninterval = \"0s\"", "inventory.interval: `0s` is shorter than the minimum of 1m"),
            ("[inventory]\ninterval = \"1000y\"", "inventory.interval: `1000y` is longer than the maximum"),
            (
                "[inventory]\ninterval = \"1h\"\njitter = \"2h\"",
                "inventory.jitter: `2h` is longer than inventory.interval (1h)",
            ),
            ("[inventory]\njitter = \"-1s\"", "inventory.jitter: `-1s` is not a duration"),
            (
                "[agent]\noutput_max_bytes = 1000",
                "agent.output_max_bytes: `1000` must be between output_limit_bytes (262144)",
            ),
            ("[agent]\noutput_max_bytes = 68719476736", "and outbox_max_bytes (67108864)"),
            ("[agent]\noutput_max_bytes = -1", "invalid value"),
            ("[agent]\noutput_max_bytes = \"big\"", "invalid type"),
        ];
        for (text, want) in cases {
            let err = load(text, &[]).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let cases = [
            (("KANADE_AGENT_ID", "has.dot"), "KANADE_AGENT_ID: pc_id `has.dot`"),
            (("KANADE_AGENT_GROUPS", "ok,Not OK"), "KANADE_AGENT_GROUPS: group name `Not OK`"),
            (("KANADE_NATS_URL", "http://x"), "KANADE_NATS_URL: `http://x` is not a NATS URL"),
            (("KANADE_NATS_URL", ",,"), "KANADE_NATS_URL: `,,` names no NATS URL"),
            (("KANADE_LOG", "info,=,x=y"), "KANADE_LOG: `info,=,x=y`"),
            (("RUST_LOG", "chatty"), "RUST_LOG: `chatty` has `chatty`"),
        ];
        for ((name, value), want) in cases {
            let err = AgentConfig::load(None, &env(&[(name, value)]), "h").unwrap_err().to_string();
            assert!(err.contains(want), "{name}={value:?}: {err}");
        }
        let huge = "x".repeat(100_000);
        let err = AgentConfig::load(None, &env(&[("KANADE_LOG", &huge)]), "h").unwrap_err().to_string();
        assert!(err.contains("too long") && err.len() < 200, "{err}");
    }

    #[test]
    fn missing_and_oversized_files_are_clear_errors() {
        let err = AgentConfig::load(Some(Path::new("/nonexistent/agent.toml")), &env(&[]), "h").unwrap_err();
        assert!(err.to_string().contains("cannot read config file `/nonexistent/agent.toml`"));
        let file = write(&"#".repeat(usize::try_from(MAX_CONFIG_BYTES).unwrap() + 1));
        let err = AgentConfig::load(Some(file.path()), &env(&[]), "h").unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }), "{err}");
        let file = write("[agent]\nid = \"\u{0}\"\n");
        assert!(AgentConfig::load(Some(file.path()), &env(&[]), "h").is_err());
        let binary = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(binary.path(), [0xff, 0xfe, 0x00, 0x41]).unwrap();
        let err = AgentConfig::load(Some(binary.path()), &env(&[]), "h").unwrap_err();
        assert!(err.to_string().contains("cannot read config file"), "{err}");
    }

    #[test]
    fn rolling_files_follow_the_configured_file_name() {
        let rolling = |file: &str| LogConfig { level: "info".into(), file: Some(file.into()) }.rolling();
        assert_eq!(
            rolling("agent"),
            Some(RollingFiles { dir: ".".into(), prefix: "agent".into(), suffix: String::new() })
        );
        assert_eq!(
            rolling("logs/backend.txt"),
            Some(RollingFiles { dir: "logs".into(), prefix: "backend".into(), suffix: "txt".into() })
        );
        assert_eq!(
            LogConfig { level: "info".into(), file: Some(LogConfig::file_in_dir(Path::new("/l"), "kanade-agent")) }
                .rolling(),
            Some(RollingFiles { dir: "/l".into(), prefix: "kanade-agent".into(), suffix: "log".into() })
        );
        assert_eq!(LogConfig::default().rolling(), None);
    }

    #[test]
    fn the_example_agent_config_loads() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let agent = AgentConfig::load(Some(&deploy.join("agent.example.toml")), &env(&[]), "h").unwrap();
        assert_eq!(agent.groups.iter().map(GroupName::as_str).collect::<Vec<_>>(), ["tokyo", "wave1"]);
        assert_eq!(agent.inventory, InventoryConfig::default());
        assert_eq!(agent.nats.urls, [DEFAULT_NATS_URL]);
        assert_eq!(agent.trust_root, None, "commented out in the example");
    }

    #[test]
    fn the_client_socket_is_an_absolute_path_the_default_or_off() {
        let load = |vars: &[(&str, &str)]| AgentConfig::load(None, &env(vars), "h");
        assert_eq!(load(&[]).unwrap().client_socket, Some(PathBuf::from(crate::client_ipc::DEFAULT_SOCKET)));
        assert_eq!(load(&[("KANADE_CLIENT_SOCKET", "off")]).unwrap().client_socket, None);
        assert_eq!(load(&[("KANADE_CLIENT_SOCKET", " ")]).unwrap().client_socket, None);
        assert_eq!(load(&[("KANADE_CLIENT_SOCKET", "/tmp/k.sock")]).unwrap().client_socket, Some("/tmp/k.sock".into()));
        for bad in ["relative.sock", &format!("/{}", "x".repeat(120)), "/a\0b"] {
            let err = load(&[("KANADE_CLIENT_SOCKET", bad)]).unwrap_err().to_string();
            assert!(err.contains("KANADE_CLIENT_SOCKET") && err.contains("absolute path"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_run_as_user_account_is_a_plain_name_other_than_root() {
        let agent = AgentConfig::load(None, &env(&[("KANADE_RUN_AS_USER", " kiosk ")]), "h").unwrap();
        assert_eq!(agent.run_as_user.as_deref(), Some("kiosk"));
        assert_eq!(AgentConfig::load(None, &env(&[]), "h").unwrap().run_as_user, None);
        let long = "x".repeat(10_000);
        for bad in ["root", "-rf", "a b", "../etc", "a:b", long.as_str()] {
            let err = AgentConfig::load(None, &env(&[("KANADE_RUN_AS_USER", bad)]), "h").unwrap_err().to_string();
            assert!(err.contains("KANADE_RUN_AS_USER") && err.len() < 400, "{bad}: {err}");
        }
        for good in ["alice", "bob.smith", "svc_1", "host$", "a-b"] {
            assert!(is_account_name(good), "{good}");
        }
        for bad in ["", "-x", "$", "ä", &"x".repeat(33)] {
            assert!(!is_account_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_trust_root_is_a_public_key_or_a_clear_error() {
        let root = crate::authority::SigningKey::generate().public_key();
        let text = root.to_string();
        let agent = AgentConfig::load(None, &env(&[("KANADE_TRUST_ROOT", text.as_str())]), "h").unwrap();
        assert_eq!(agent.trust_root, Some(root));
        assert_eq!(AgentConfig::load(None, &env(&[("KANADE_TRUST_ROOT", " ")]), "h").unwrap().trust_root, None);
        let huge = format!("ed25519:{}", "x".repeat(100_000));
        for bad in ["ed25519:nope", "trust-root.pub", huge.as_str()] {
            let err = AgentConfig::load(None, &env(&[("KANADE_TRUST_ROOT", bad)]), "h").unwrap_err().to_string();
            assert!(err.contains("KANADE_TRUST_ROOT") && err.len() < 400, "{err}");
        }
    }
}
