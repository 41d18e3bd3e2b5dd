//! The backend's own config: where it listens and keeps its data, its database, when an agent counts as offline,
//! who may call the API (a shared token, per-operator tokens, or nothing on a loopback address), and its NATS
//! connection. Loaded the way every kanade config is (`kanade_shared::config`: teravars template -> strict TOML ->
//! environment overrides), then checked here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kanade_shared::Actor;
use kanade_shared::config::{ConfigError, EnvSource, NatsConfig, NatsFile, load_file, parse_duration};
use serde::Deserialize;

pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(90);
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// The backend's checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub bind_addr: std::net::SocketAddr,
    /// `None`: the backend picks its per-OS default.
    pub data_dir: Option<PathBuf>,
    /// `None`: a SQLite file in the data dir.
    pub database_url: Option<String>,
    /// An agent is shown offline when its last heartbeat is older than this.
    pub offline_after: Duration,
    /// An agent is shown stale (probably gone for good; `kanade agent rm` forgets it) when its last heartbeat is
    /// older than this. Longer than `offline_after`.
    pub stale_after: Duration,
    pub auth: AuthConfig,
    pub nats: NatsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>` on every `/api` route: a shared token, per-operator tokens, or both.
    Tokens {
        /// Whoever holds it acts as the operator the client names (`X-Kanade-Operator`), so actions are attributed
        /// but not proven; the two-person rule for approvals is only enforced between [`OperatorToken`]s.
        shared: Option<String>,
        operators: Vec<OperatorToken>,
    },
    /// No auth at all; only allowed on a loopback address.
    Disabled,
}

impl AuthConfig {
    /// One shared token and no per-operator tokens.
    pub fn static_token(token: impl Into<String>) -> Self {
        Self::Tokens { shared: Some(token.into()), operators: Vec::new() }
    }
}

/// A token that identifies one operator: actions taken with it are that operator's, whatever the client claims.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorToken {
    pub name: Actor,
    pub token: String,
}

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorToken").field("name", &self.name).field("token", &"***").finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendFile {
    bind_addr: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    offline_after: Option<String>,
    stale_after: Option<String>,
    #[serde(default)]
    auth: AuthFile,
    #[serde(default)]
    nats: NatsFile,
    #[serde(default)]
    #[allow(dead_code)]
    vars: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    static_token: Option<String>,
    #[serde(default)]
    disable: bool,
    #[serde(default)]
    operators: Vec<OperatorFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorFile {
    name: String,
    token: String,
}

/// Checks `[[auth.operators]]`: valid names, long enough tokens, no name or token twice.
fn operator_tokens(raw: Vec<OperatorFile>) -> Result<Vec<OperatorToken>, ConfigError> {
    let mut out: Vec<OperatorToken> = Vec::new();
    for (index, operator) in raw.into_iter().enumerate() {
        let field = format!("auth.operators[{index}]");
        let name = Actor::new(operator.name.clone()).map_err(|err| ConfigError::InvalidValue {
            key: format!("{field}.name"),
            value: operator.name.clone(),
            problem: err.to_string(),
        })?;
        if operator.token.len() < MIN_TOKEN_LEN {
            return Err(ConfigError::Invalid(format!(
                "{field}.token is {} characters; use at least {MIN_TOKEN_LEN}",
                operator.token.len()
            )));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(ConfigError::Invalid(format!("{field}: operator `{name}` is listed twice")));
        }
        if out.iter().any(|o| o.token == operator.token) {
            return Err(ConfigError::Invalid(format!("{field}: operator `{name}` has another operator's token")));
        }
        out.push(OperatorToken { name, token: operator.token });
    }
    Ok(out)
}

/// Shortest static token accepted: a guessable token is worse than none, because it looks like protection.
pub const MIN_TOKEN_LEN: usize = 16;

impl BackendConfig {
    /// Loads the backend's config: the file (if any), then `KANADE_BIND_ADDR`, `KANADE_BACKEND_DATA_DIR`,
    /// `KANADE_DATABASE_URL`, `KANADE_AUTH_STATIC_TOKEN`, `KANADE_AUTH_DISABLE=1`, `KANADE_NATS_URL`,
    /// `KANADE_NATS_TOKEN`.
    pub fn load(path: Option<&Path>, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let file: BackendFile = load_file(path)?;
        let raw_bind = env.var("KANADE_BIND_ADDR").or(file.bind_addr).unwrap_or_else(|| DEFAULT_BIND_ADDR.into());
        let bind_addr = raw_bind.parse().map_err(|_| ConfigError::InvalidValue {
            key: "bind_addr".into(),
            value: raw_bind.clone(),
            problem: "is not an address of the form ip:port".into(),
        })?;
        let offline_after = match file.offline_after {
            Some(raw) => parse_duration("offline_after", &raw)?,
            None => DEFAULT_OFFLINE_AFTER,
        };
        let stale_after = match file.stale_after {
            Some(raw) => parse_duration("stale_after", &raw)?,
            None => DEFAULT_STALE_AFTER,
        };
        if stale_after <= offline_after {
            return Err(ConfigError::InvalidValue {
                key: "stale_after".into(),
                value: humantime::format_duration(stale_after).to_string(),
                problem: format!("must be longer than offline_after ({})", humantime::format_duration(offline_after)),
            });
        }

        let disable = match env.var("KANADE_AUTH_DISABLE") {
            Some(v) => match v.as_str() {
                "1" | "true" => true,
                "0" | "false" | "" => false,
                _ => {
                    return Err(ConfigError::InvalidValue {
                        key: "KANADE_AUTH_DISABLE".into(),
                        value: v,
                        problem: "must be 1 or 0".into(),
                    });
                }
            },
            None => file.auth.disable,
        };
        let token = env.var("KANADE_AUTH_STATIC_TOKEN").or(file.auth.static_token).filter(|t| !t.is_empty());
        let operators = operator_tokens(file.auth.operators)?;
        let auth = match (disable, token) {
            (true, _) => AuthConfig::Disabled,
            (false, Some(token)) if token.len() < MIN_TOKEN_LEN => {
                return Err(ConfigError::Invalid(format!(
                    "auth.static_token is {} characters; use at least {MIN_TOKEN_LEN}",
                    token.len()
                )));
            }
            (false, Some(token)) if operators.iter().any(|o| o.token == token) => {
                return Err(ConfigError::Invalid("auth.static_token is also an operator's token".into()));
            }
            (false, shared) if shared.is_some() || !operators.is_empty() => AuthConfig::Tokens { shared, operators },
            (false, _) => {
                return Err(ConfigError::Invalid(
                    "no auth configured: set auth.static_token (or KANADE_AUTH_STATIC_TOKEN) or [[auth.operators]], \
                     or KANADE_AUTH_DISABLE=1 on a loopback address"
                        .into(),
                ));
            }
        };
        if auth == AuthConfig::Disabled && !std::net::SocketAddr::ip(&bind_addr).is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "auth is disabled but bind_addr `{bind_addr}` is not a loopback address; refusing to serve an open API"
            )));
        }

        Ok(Self {
            bind_addr,
            data_dir: env.var("KANADE_BACKEND_DATA_DIR").map(PathBuf::from).or(file.data_dir),
            database_url: env.var("KANADE_DATABASE_URL").or(file.database_url).filter(|u| !u.is_empty()),
            offline_after,
            stale_after,
            auth,
            nats: file.nats.resolve(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn backend_refuses_unsafe_auth() {
        let err = BackendConfig::load(None, &env(&[])).unwrap_err().to_string();
        assert!(err.starts_with("no auth configured"), "{err}");
        let err = BackendConfig::load(None, &env(&[("KANADE_AUTH_DISABLE", "1"), ("KANADE_BIND_ADDR", "0.0.0.0:80")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a loopback address"), "{err}");
        let err = BackendConfig::load(None, &env(&[("KANADE_AUTH_STATIC_TOKEN", "short")])).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        let cfg = BackendConfig::load(None, &env(&[("KANADE_AUTH_DISABLE", "1")])).unwrap();
        assert_eq!(cfg.auth, AuthConfig::Disabled);
        let cfg = BackendConfig::load(
            None,
            &env(&[("KANADE_AUTH_STATIC_TOKEN", "0123456789abcdef"), ("KANADE_BIND_ADDR", "0.0.0.0:8081")]),
        )
        .unwrap();
        assert_eq!(cfg.auth, AuthConfig::static_token("0123456789abcdef"));
        assert_eq!(cfg.bind_addr.port(), 8081);
    }

    #[test]
    fn operator_tokens_are_checked() {
        let load = |text: &str| {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), text).unwrap();
            BackendConfig::load(Some(file.path()), &env(&[])).map(|c| c.auth).map_err(|e| e.to_string())
        };
        let ok = load("[[auth.operators]]\nname = \"alice\"\ntoken = \"alice-0123456789abcdef\"\n").unwrap();
        let AuthConfig::Tokens { shared: None, operators } = ok else { panic!("{ok:?}") };
        assert_eq!(operators[0].name.as_str(), "alice");
        assert!(!format!("{:?}", operators[0]).contains("0123456789"), "a token must not reach the log");
        let two = "[[auth.operators]]\nname = \"alice\"\ntoken = \"same-0123456789abcdef\"\n\
                   [[auth.operators]]\nname = \"bob\"\ntoken = \"same-0123456789abcdef\"\n";
        assert!(load(two).unwrap_err().contains("another operator's token"));
        let short = "[[auth.operators]]\nname = \"alice\"\ntoken = \"short\"\n";
        assert!(load(short).unwrap_err().contains("auth.operators[0].token is 5 characters"));
        let bad = "[[auth.operators]]\nname = \"Alice Smith\"\ntoken = \"alice-0123456789abcdef\"\n";
        assert!(load(bad).unwrap_err().contains("auth.operators[0].name"));
        let unknown = "[[auth.operators]]\nname = \"alice\"\ntoken = \"alice-0123456789abcdef\"\nrole = \"x\"\n";
        assert!(load(unknown).unwrap_err().contains("role"));
    }

    #[test]
    fn the_example_config_loads() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let backend =
            BackendConfig::load(Some(&deploy.join("backend.example.toml")), &env(&[("KANADE_AUTH_DISABLE", "1")]))
                .unwrap();
        assert_eq!(backend.offline_after, Duration::from_secs(90));
    }

    #[test]
    fn stale_after_is_read_and_must_outlast_offline_after() {
        let load = |text: &str| {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), text).unwrap();
            BackendConfig::load(Some(file.path()), &env(&[("KANADE_AUTH_DISABLE", "1")])).map_err(|e| e.to_string())
        };
        assert_eq!(load("").unwrap().stale_after, DEFAULT_STALE_AFTER);
        assert_eq!(load("stale_after = \"2d\"\n").unwrap().stale_after, Duration::from_secs(2 * 24 * 3600));
        let err = load("offline_after = \"10m\"\nstale_after = \"5m\"\n").unwrap_err();
        assert!(err.contains("stale_after") && err.contains("longer than offline_after"), "{err}");
        let err = load("stale_after = \"soon\"\n").unwrap_err();
        assert!(err.contains("stale_after"), "{err}");
        let err = load("stale_afterr = \"2d\"\n").unwrap_err();
        assert!(err.contains("stale_afterr"), "{err}");
    }

    #[test]
    fn backend_rejects_bad_addresses() {
        let err = BackendConfig::load(None, &env(&[("KANADE_AUTH_DISABLE", "1"), ("KANADE_BIND_ADDR", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bind_addr: `localhost` is not an address"), "{err}");
    }
}
