//! Config loading for every component: an optional TOML file, rendered as a template first, then environment
//! overrides, then validation into a checked config. This module holds that machinery, the `[nats]` table every
//! component shares and the agent's config; the backend's own keys are checked in `kanade-backend`'s `config`.
//!
//! Templating uses `teravars` (tera plus a `[vars]` table), which is what the seed's config files were written
//! for: `{{ system.host }}`, `{{ env(name="X", default="Y") }}`, `{{ vars.name }}`. Evaluated against writing our
//! own: it is small, maintained, strips TOML comments before rendering (so a commented-out sample cannot break a
//! load) and leaves everything else to `toml`. The file is strict: an unknown key is an error naming the key and
//! its line.

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

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
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

/// Connection settings shared by every component that talks to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// One or more server URLs; the client picks among them and fails over.
    pub urls: Vec<String>,
    pub token: Option<String>,
}

/// The `[nats]` table of a config file, as written; [`NatsFile::resolve`] applies the environment and checks it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsFile {
    url: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
    token: Option<String>,
}

impl NatsFile {
    /// `KANADE_NATS_URL` (a comma list) over the file's `urls` and `url`, the default when none; `KANADE_NATS_TOKEN`
    /// over the file's `token`.
    pub fn resolve(self, env: &dyn EnvSource) -> Result<NatsConfig, ConfigError> {
        let urls = match env.var("KANADE_NATS_URL") {
            Some(list) => split_list(&list),
            None => {
                let mut urls = self.urls;
                urls.extend(self.url);
                urls
            }
        };
        let urls = if urls.is_empty() { vec![DEFAULT_NATS_URL.to_owned()] } else { urls };
        for url in &urls {
            validate_nats_url(url)?;
        }
        let token = env.var("KANADE_NATS_TOKEN").or(self.token).filter(|t| !t.is_empty());
        Ok(NatsConfig { urls, token })
    }
}

fn validate_nats_url(url: &str) -> Result<(), ConfigError> {
    let invalid = |problem: &str| ConfigError::InvalidValue {
        key: "nats.url".into(),
        value: url.to_owned(),
        problem: problem.to_owned(),
    };
    let rest = ["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| invalid("is not a NATS URL (expected nats://host:port)"))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(invalid("has no host"));
    }
    Ok(())
}

/// A comma-separated list from an environment variable; blanks are dropped.
fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// A humantime duration (`30s`, `5m`) for `key`, or an error naming the key and the value.
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|err| ConfigError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        problem: format!("is not a duration ({err}); write e.g. `30s` or `5m`"),
    })
}

/// Reads, renders and parses a config file into its serde file type (strict: the type denies unknown fields); no
/// file is the type's default.
pub fn load_file<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(path) = path else { return Ok(T::default()) };
    let read_err = |source| ConfigError::Read { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { path: path.to_owned() });
    }
    let raw = std::fs::read_to_string(path).map_err(read_err)?;
    let rendered = render(&raw).map_err(|message| ConfigError::Template { path: path.to_owned(), message })?;
    toml::from_str(&rendered).map_err(|err| ConfigError::Parse { path: path.to_owned(), message: err.to_string() })
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    pc_id: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    data_dir: Option<PathBuf>,
    heartbeat_interval: Option<String>,
    output_limit_bytes: Option<usize>,
    output_max_bytes: Option<u64>,
    catch_up_jitter: Option<String>,
    max_local_concurrent: Option<usize>,
    outbox_max_bytes: Option<u64>,
    #[serde(default)]
    nats: NatsFile,
    /// teravars' variables, already used by rendering.
    #[serde(default)]
    #[allow(dead_code)]
    vars: toml::Table,
}

impl AgentConfig {
    /// Loads the agent's config: the file (if any), then `KANADE_AGENT_ID`, `KANADE_AGENT_GROUPS`,
    /// `KANADE_AGENT_DATA_DIR`, `KANADE_NATS_URL`, `KANADE_NATS_TOKEN`. `hostname` is the machine's name, used for
    /// the default pc id.
    pub fn load(path: Option<&Path>, env: &dyn EnvSource, hostname: &str) -> Result<Self, ConfigError> {
        let file: AgentFile = load_file(path)?;

        let pc_id = match env.var("KANADE_AGENT_ID").or(file.pc_id) {
            Some(raw) => PcId::new(raw).map_err(|source| ConfigError::InvalidId { key: "pc_id".into(), source })?,
            None => PcId::from_hostname(hostname).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "cannot derive a pc_id from hostname `{hostname}`; set `pc_id` or KANADE_AGENT_ID"
                ))
            })?,
        };
        let raw_groups = env.var("KANADE_AGENT_GROUPS").map(|list| split_list(&list)).unwrap_or(file.groups);
        let mut groups = raw_groups
            .into_iter()
            .map(|g| GroupName::new(g).map_err(|source| ConfigError::InvalidId { key: "groups".into(), source }))
            .collect::<Result<Vec<_>, _>>()?;
        groups.sort();
        groups.dedup();

        let heartbeat_interval = match file.heartbeat_interval {
            Some(raw) => parse_duration("heartbeat_interval", &raw)?,
            None => DEFAULT_HEARTBEAT_INTERVAL,
        };
        if heartbeat_interval < Duration::from_millis(100) {
            return Err(ConfigError::InvalidValue {
                key: "heartbeat_interval".into(),
                value: humantime::format_duration(heartbeat_interval).to_string(),
                problem: "is shorter than the minimum of 100ms".into(),
            });
        }
        let output_limit_bytes = file.output_limit_bytes.unwrap_or(DEFAULT_OUTPUT_LIMIT_BYTES);
        // Results travel inside one JetStream message, so the two captured streams must fit one with room to spare.
        let max_output = usize::try_from(crate::resources::MAX_MESSAGE_BYTES).unwrap_or(usize::MAX) / 4;
        if output_limit_bytes == 0 || output_limit_bytes > max_output {
            return Err(ConfigError::InvalidValue {
                key: "output_limit_bytes".into(),
                value: output_limit_bytes.to_string(),
                problem: format!("must be between 1 and {max_output}"),
            });
        }
        let data_dir = env.var("KANADE_AGENT_DATA_DIR").map(PathBuf::from).or(file.data_dir);
        let catch_up_jitter = match file.catch_up_jitter {
            Some(raw) => parse_duration("catch_up_jitter", &raw)?,
            None => DEFAULT_CATCH_UP_JITTER,
        };
        if catch_up_jitter > Duration::from_secs(600) {
            return Err(ConfigError::InvalidValue {
                key: "catch_up_jitter".into(),
                value: humantime::format_duration(catch_up_jitter).to_string(),
                problem: "is longer than the maximum of 10m".into(),
            });
        }

        let max_local_concurrent = file.max_local_concurrent.unwrap_or(DEFAULT_MAX_LOCAL_CONCURRENT);
        if !(1..=256).contains(&max_local_concurrent) {
            return Err(ConfigError::InvalidValue {
                key: "max_local_concurrent".into(),
                value: max_local_concurrent.to_string(),
                problem: "must be between 1 and 256".into(),
            });
        }

        let outbox_max_bytes = file.outbox_max_bytes.unwrap_or(DEFAULT_OUTBOX_MAX_BYTES);
        if !(MIN_OUTBOX_MAX_BYTES..=MAX_OUTBOX_MAX_BYTES).contains(&outbox_max_bytes) {
            return Err(ConfigError::InvalidValue {
                key: "outbox_max_bytes".into(),
                value: outbox_max_bytes.to_string(),
                problem: format!("must be between {MIN_OUTBOX_MAX_BYTES} and {MAX_OUTBOX_MAX_BYTES}"),
            });
        }

        // The whole output is counted against the outbox while it waits there, so one run's stream must fit it.
        // Unset, it is the default bounded by the outbox (and never below the inline part, which is kept anyway).
        let inline = output_limit_bytes as u64;
        let output_max_bytes =
            file.output_max_bytes.unwrap_or_else(|| DEFAULT_OUTPUT_MAX_BYTES.min(outbox_max_bytes).max(inline));
        if file.output_max_bytes.is_some() && !(inline..=outbox_max_bytes).contains(&output_max_bytes) {
            return Err(ConfigError::InvalidValue {
                key: "output_max_bytes".into(),
                value: output_max_bytes.to_string(),
                problem: format!(
                    "must be between output_limit_bytes ({output_limit_bytes}) and outbox_max_bytes ({outbox_max_bytes})"
                ),
            });
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
            nats: file.nats.resolve(env)?,
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

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn agent_runs_with_no_file_at_all() {
        let cfg = AgentConfig::load(None, &env(&[]), "My-Host.corp").unwrap();
        assert_eq!(cfg.pc_id.as_str(), "my-host");
        assert_eq!(cfg.nats.urls, vec![DEFAULT_NATS_URL]);
        assert_eq!(cfg.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL);
        assert!(cfg.groups.is_empty());
    }

    #[test]
    fn env_overrides_the_file() {
        let file = write("pc_id = \"from-file\"\ngroups = [\"a\"]\n[nats]\nurl = \"nats://file:4222\"\n");
        let e = env(&[
            ("KANADE_AGENT_ID", "from-env"),
            ("KANADE_AGENT_GROUPS", "canary, wave1,,canary"),
            ("KANADE_NATS_URL", "nats://a:1,nats://b:2"),
            ("KANADE_NATS_TOKEN", "secret"),
            ("KANADE_AGENT_DATA_DIR", "/tmp/x"),
        ]);
        let cfg = AgentConfig::load(Some(file.path()), &e, "h").unwrap();
        assert_eq!(cfg.pc_id.as_str(), "from-env");
        assert_eq!(cfg.groups.iter().map(GroupName::as_str).collect::<Vec<_>>(), ["canary", "wave1"]);
        assert_eq!(cfg.nats.urls, ["nats://a:1", "nats://b:2"]);
        assert_eq!(cfg.nats.token.as_deref(), Some("secret"));
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/tmp/x")));
    }

    #[test]
    fn templates_render_system_env_and_vars() {
        let file = write(concat!(
            "# a commented sample is never rendered: {{ nope }}\n",
            "pc_id = '{{ vars.site }}-{{ env(name=\"KANADE_TEST_SURELY_UNSET_VAR\", default=\"pc\") }}'\n",
            "groups = [\"{{ system.os }}\"]\n",
            "[vars]\nsite = \"tokyo\"\n",
        ));
        let cfg = AgentConfig::load(Some(file.path()), &env(&[]), "h").unwrap();
        assert_eq!(cfg.pc_id.as_str(), "tokyo-pc");
        assert_eq!(cfg.groups[0].as_str(), std::env::consts::OS);
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let file = write("pc_id = \"a\"\n[nats]\nurll = \"nats://x:1\"\n");
        let err = AgentConfig::load(Some(file.path()), &env(&[]), "h").unwrap_err().to_string();
        assert!(err.contains("unknown field `urll`"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let cases = [
            ("pc_id = \"Not Valid\"", "pc_id: pc_id `Not Valid` contains `N`"),
            ("heartbeat_interval = \"soon\"", "heartbeat_interval: `soon` is not a duration"),
            ("heartbeat_interval = \"1ms\"", "shorter than the minimum"),
            ("output_limit_bytes = 0", "output_limit_bytes: `0` must be between"),
            ("catch_up_jitter = \"1h\"", "catch_up_jitter: `1h` is longer than the maximum"),
            ("output_max_bytes = 1000", "output_max_bytes: `1000` must be between output_limit_bytes (262144)"),
            ("output_max_bytes = 68719476736", "and outbox_max_bytes (67108864)"),
            ("output_max_bytes = -1", "invalid value"),
            ("output_max_bytes = \"big\"", "invalid type"),
            ("max_local_concurrent = 0", "max_local_concurrent: `0` must be between 1 and 256"),
            ("groups = [\"a.b\"]", "groups: group name `a.b`"),
            ("[nats]\nurl = \"http://x\"", "is not a NATS URL"),
            ("pc_id = 3", "invalid type"),
            ("pc_id = \"{{ unclosed\"", "template error"),
        ];
        for (text, want) in cases {
            let file = write(text);
            let err = AgentConfig::load(Some(file.path()), &env(&[]), "h").unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn missing_and_oversized_files_are_clear_errors() {
        let err = AgentConfig::load(Some(Path::new("/nonexistent/agent.toml")), &env(&[]), "h").unwrap_err();
        assert!(err.to_string().contains("cannot read config file `/nonexistent/agent.toml`"));
        let file = write(&"#".repeat(usize::try_from(MAX_CONFIG_BYTES).unwrap() + 1));
        let err = AgentConfig::load(Some(file.path()), &env(&[]), "h").unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn the_example_agent_config_loads() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let agent = AgentConfig::load(Some(&deploy.join("agent.example.toml")), &env(&[]), "h").unwrap();
        assert_eq!(agent.groups.iter().map(GroupName::as_str).collect::<Vec<_>>(), ["tokyo", "wave1"]);
    }
}
