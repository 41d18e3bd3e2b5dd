//! The backend's own config: where it listens and keeps its data, its database, when an agent counts as offline
//! and stale, who may call the API (a shared token, per-operator tokens, or nothing on a loopback address), its NATS
//! connection and its log. Loaded the way every kanade config is (`kanade_shared::config`: teravars template ->
//! strict TOML -> environment overrides), then checked here. The file has `[backend]`, `[auth]`, `[log]`, `[nats]`,
//! `[security]` and `[vars]`; [`SecurityConfig::load`] reads `[security]` (enrolment of agents' credentials), which
//! is off without it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kanade_shared::access::{GroupScope, Role};
use kanade_shared::config::{
    ConfigError, EnvSource, LogConfig, LogFile, NatsConfig, NatsFile, checked_duration, env_first, load_file,
};
use kanade_shared::enroll::{DEFAULT_CREDENTIAL_TTL, MAX_CREDENTIAL_TTL, MIN_CREDENTIAL_TTL};
use kanade_shared::{Actor, GroupName};
use serde::Deserialize;

pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(90);
/// An agent not seen for this long shows `stale`: probably gone for good, not just switched off for the night.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_OFFLINE_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);
const MAX_STALE_AFTER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Performance rollups are kept this long unless `backend.perf_retention` says otherwise (1h to 400d).
pub const DEFAULT_PERF_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_PERF_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);
/// PCs one backend relays live performance of at once, unless `backend.perf_max_watches` says otherwise.
pub const DEFAULT_PERF_MAX_WATCHES: usize = 100;
const MAX_PERF_WATCHES: usize = 10_000;

/// The backend's checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub listen_addr: std::net::SocketAddr,
    /// Where the default database lives; `None`: the working directory.
    pub data_dir: Option<PathBuf>,
    /// `None`: the SQLite file `backend.db` in the data dir (`db::default_url`).
    pub database_url: Option<String>,
    /// An agent is shown offline when its last heartbeat is older than this.
    pub offline_after: Duration,
    /// An agent is shown stale when its last heartbeat is older than this (longer than `offline_after`).
    pub stale_after: Duration,
    /// How long performance rollups are kept.
    pub perf_retention: Duration,
    /// PCs this backend relays live performance of at once (each watched PC is one NATS subscription and one
    /// lease, shared by every browser watching it).
    pub perf_max_watches: usize,
    /// This backend's name among replicas (the leadership lease says who holds it); `None`: `<hostname>-<random>`,
    /// new at every start.
    pub instance: Option<Actor>,
    pub auth: AuthConfig,
    /// Operator accounts' sign-in sessions: the key that signs their tokens and how long those live.
    pub sessions: SessionConfig,
    pub nats: NatsConfig,
    pub log: LogConfig,
}

/// How long a session token (JWT) lives unless `auth.access_ttl` says otherwise (1m to 1h).
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a sign-in lasts, refreshed or not, unless `auth.refresh_ttl` says otherwise (1h to 90d).
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_ACCESS_TTL: Duration = Duration::from_secs(3600);
const MAX_REFRESH_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Sign-in sessions of operator accounts (`[auth] jwt_secret`, `access_ttl`, `refresh_ttl`).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The key session tokens are signed with (HS256, at least 32 bytes). `None`: 32 random bytes made by the first
    /// backend to start and kept in its database, so replicas sharing it share the key; never a built-in one.
    pub jwt_secret: Option<String>,
    /// How long one session token is good for; the client refreshes it before then.
    pub access_ttl: Duration,
    /// How long a sign-in lasts from the login, however often it is refreshed.
    pub refresh_ttl: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { jwt_secret: None, access_ttl: DEFAULT_ACCESS_TTL, refresh_ttl: DEFAULT_REFRESH_TTL }
    }
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish()
    }
}

impl SessionConfig {
    fn resolve(
        file_secret: Option<String>,
        access_ttl: Option<&str>,
        refresh_ttl: Option<&str>,
        env: &dyn EnvSource,
    ) -> Result<Self, ConfigError> {
        let jwt_secret = env_first(env, &["KANADE_AUTH_JWT_SECRET"])
            .map(|(_, secret)| ("KANADE_AUTH_JWT_SECRET", secret))
            .or(file_secret.map(|secret| ("auth.jwt_secret", secret)))
            .filter(|(_, secret)| !secret.is_empty());
        if let Some((key, secret)) = &jwt_secret
            && secret.len() < crate::accounts::MIN_JWT_SECRET_BYTES
        {
            return Err(ConfigError::Invalid(format!(
                "{key} is {} bytes; use at least {} (or leave it out: the backend makes one and keeps it in its \
                 database)",
                secret.len(),
                crate::accounts::MIN_JWT_SECRET_BYTES
            )));
        }
        let access_ttl = checked_duration(
            "auth.access_ttl",
            access_ttl,
            DEFAULT_ACCESS_TTL,
            Duration::from_secs(60)..=MAX_ACCESS_TTL,
        )?;
        let refresh_ttl = checked_duration(
            "auth.refresh_ttl",
            refresh_ttl,
            DEFAULT_REFRESH_TTL,
            Duration::from_secs(3600)..=MAX_REFRESH_TTL,
        )?;
        Ok(Self { jwt_secret: jwt_secret.map(|(_, secret)| secret), access_ttl, refresh_ttl })
    }
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
    /// What the operator may do (`role`, default admin: a token from before roles keeps every right).
    pub role: Role,
    /// Which PCs the operator's actions and reads reach (`groups`, default the whole fleet).
    pub scope: GroupScope,
}

impl OperatorToken {
    /// An admin's token, fleet-wide: what `[[auth.operators]]` without `role` and `groups` gives.
    pub fn admin(name: Actor, token: impl Into<String>) -> Self {
        Self { name, token: token.into(), role: Role::Admin, scope: GroupScope::Fleet }
    }
}

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorToken")
            .field("name", &self.name)
            .field("token", &"***")
            .field("role", &self.role)
            .field("scope", &self.scope)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendFile {
    #[serde(default)]
    backend: BackendSection,
    #[serde(default)]
    auth: AuthFile,
    #[serde(default)]
    log: LogFile,
    #[serde(default)]
    nats: NatsFile,
    security: Option<SecurityFile>,
    #[serde(default)]
    #[allow(dead_code)]
    vars: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityFile {
    dir: Option<PathBuf>,
    /// The backend's signing key (default: `backend-signing.key` in `dir`).
    signing_key: Option<PathBuf>,
    credential_ttl: Option<String>,
    #[serde(default)]
    approve_enrollments: bool,
}

/// Where the backend's signing key is (DESIGN.md, Authority: everything the backend sends to agents is signed with
/// it): `KANADE_BACKEND_SIGNING_KEY`, else `[security] signing_key` (relative to the config file's folder), else
/// `backend-signing.key` in the `[security]` folder (or `KANADE_SECURITY_DIR`) when that file exists. `None`: the
/// backend refuses to fire anything, saying why.
pub fn signing_key_path(path: Option<&Path>, env: &dyn EnvSource) -> Result<Option<PathBuf>, ConfigError> {
    if let Some((_, key)) = env_first(env, &["KANADE_BACKEND_SIGNING_KEY"]).filter(|(_, k)| !k.is_empty()) {
        return Ok(Some(PathBuf::from(key)));
    }
    let file: BackendFile = load_file(path)?;
    let base = path.and_then(Path::parent);
    let relative = |p: PathBuf| base.map_or_else(|| p.clone(), |base| base.join(&p));
    let security = file.security.unwrap_or_default();
    if let Some(key) = security.signing_key.filter(|k| !k.as_os_str().is_empty()) {
        return Ok(Some(relative(key)));
    }
    let dir = match env_first(env, &["KANADE_SECURITY_DIR"]) {
        Some((_, dir)) => Some(PathBuf::from(dir)),
        None => security.dir.filter(|d| !d.as_os_str().is_empty()).map(relative),
    };
    Ok(dir.map(|dir| dir.join(kanade_ops::security::BACKEND_SIGNING_KEY)).filter(|key| key.exists()))
}

/// `[security]`: the backend issues agents their credentials (DESIGN.md, Identity). Without it, enrolment is off:
/// requests are refused and the enrolment routes answer 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// The folder `kanade security init` wrote: the backend reads `account.jwt`, `agent-signing.nk`,
    /// `operator-signing.nk` and `system.creds` from it.
    pub dir: PathBuf,
    /// How long an issued credential is valid; agents renew halfway through.
    pub credential_ttl: Duration,
    /// A new PC waits for an operator's approval (`kanade enroll approve <pc>`) before it gets a credential.
    pub approve_enrollments: bool,
}

impl SecurityConfig {
    /// The settings of an enrolling backend using the fleet folder `dir`, with the default lifetime and no approval.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), credential_ttl: DEFAULT_CREDENTIAL_TTL, approve_enrollments: false }
    }

    /// Reads `[security]` of the backend's config file (parsed and checked as [`BackendConfig::load`] does) and
    /// `KANADE_SECURITY_DIR`, which names the folder (and so turns enrolment on) without the file saying so.
    /// `None`: enrolment is off. A relative `dir` in the file is taken from the file's folder.
    pub fn load(path: Option<&Path>, env: &dyn EnvSource) -> Result<Option<Self>, ConfigError> {
        let file: BackendFile = load_file(path)?;
        Self::resolve(file.security, env, path.and_then(Path::parent))
    }

    fn resolve(
        file: Option<SecurityFile>,
        env: &dyn EnvSource,
        base: Option<&Path>,
    ) -> Result<Option<Self>, ConfigError> {
        let env_dir = env_first(env, &["KANADE_SECURITY_DIR"]).map(|(_, dir)| PathBuf::from(dir));
        let (file, dir) = match (file, env_dir) {
            (None, None) => return Ok(None),
            (file, Some(dir)) => (file.unwrap_or_default(), dir),
            (Some(file), None) => {
                let dir = match file.dir.clone() {
                    Some(dir) if dir.as_os_str().is_empty() => {
                        return Err(ConfigError::InvalidValue {
                            key: "security.dir".into(),
                            value: String::new(),
                            problem: "is empty; name the folder `kanade security init` wrote".into(),
                        });
                    }
                    Some(dir) => base.map_or_else(|| dir.clone(), |base| base.join(&dir)),
                    None => {
                        return Err(ConfigError::Invalid(
                            "security.dir: not set; name the folder `kanade security init` wrote (or set \
                             KANADE_SECURITY_DIR), or leave [security] out to keep enrolment off"
                                .into(),
                        ));
                    }
                };
                (file, dir)
            }
        };
        let credential_ttl = checked_duration(
            "security.credential_ttl",
            file.credential_ttl.as_deref(),
            DEFAULT_CREDENTIAL_TTL,
            MIN_CREDENTIAL_TTL..=MAX_CREDENTIAL_TTL,
        )?;
        Ok(Some(Self { dir, credential_ttl, approve_enrollments: file.approve_enrollments }))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendSection {
    listen_addr: Option<String>,
    nats_url: Option<String>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    offline_after: Option<String>,
    stale_after: Option<String>,
    perf_retention: Option<String>,
    perf_max_watches: Option<usize>,
    instance: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    disable: bool,
    static_token: Option<String>,
    #[serde(default)]
    operators: Vec<OperatorFile>,
    jwt_secret: Option<String>,
    access_ttl: Option<String>,
    refresh_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorFile {
    name: String,
    token: String,
    /// viewer | operator | approver | admin (default admin).
    role: Option<String>,
    /// The groups the operator is scoped to; left out, the whole fleet. Never empty.
    groups: Option<Vec<String>>,
}

/// Checks `[[auth.operators]]`: valid names, long enough tokens, no name or token twice, a known role and valid
/// groups (an admin is fleet-wide).
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
        let role = match &operator.role {
            None => Role::Admin,
            Some(raw) => raw.parse::<Role>().map_err(|err| ConfigError::InvalidValue {
                key: format!("{field}.role"),
                value: raw.clone(),
                problem: err.to_string(),
            })?,
        };
        let scope = match &operator.groups {
            None => GroupScope::Fleet,
            // Never read as "every group": leaving `groups` out is how the whole fleet is said.
            Some(groups) if groups.is_empty() => {
                return Err(ConfigError::Invalid(format!(
                    "{field}.groups is empty; leave it out for the whole fleet, or name the groups"
                )));
            }
            Some(groups) => {
                let names = groups
                    .iter()
                    .map(|g| {
                        GroupName::new(g.as_str()).map_err(|err| ConfigError::InvalidValue {
                            key: format!("{field}.groups"),
                            value: g.clone(),
                            problem: err.to_string(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                GroupScope::from_groups(names).map_err(|err| ConfigError::Invalid(format!("{field}.groups: {err}")))?
            }
        };
        scope.check_role(role).map_err(|err| {
            ConfigError::Invalid(format!("{field}: {err}; give `role` (viewer, operator or approver) with `groups`"))
        })?;
        out.push(OperatorToken { name, token: operator.token, role, scope });
    }
    Ok(out)
}

/// Shortest static token accepted: a guessable token is worse than none, because it looks like protection.
pub const MIN_TOKEN_LEN: usize = 16;

impl BackendConfig {
    /// Loads the backend's config: the file (if any), then the environment: `KANADE_LISTEN_ADDR` (or its older
    /// name `KANADE_BIND_ADDR`), `KANADE_BACKEND_DATA_DIR`, `KANADE_DATABASE_URL` (else `DATABASE_URL`),
    /// `KANADE_AUTH_STATIC_TOKEN`, `KANADE_AUTH_DISABLE=1`, `KANADE_NATS_URL`, `KANADE_NATS_TOKEN`,
    /// `KANADE_BACKEND_INSTANCE`, `KANADE_LOG` (else `RUST_LOG`). `[security]` is [`SecurityConfig::load`]'s.
    pub fn load(path: Option<&Path>, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let file: BackendFile = load_file(path)?;
        let backend = file.backend;
        let listen_env = env_first(env, &["KANADE_LISTEN_ADDR"]);
        if let (Some((_, listen)), Some((_, bind))) = (&listen_env, env_first(env, &["KANADE_BIND_ADDR"]))
            && *listen != bind
        {
            return Err(ConfigError::Invalid(format!(
                "KANADE_LISTEN_ADDR `{listen}` and KANADE_BIND_ADDR `{bind}` disagree; set only KANADE_LISTEN_ADDR"
            )));
        }
        let (listen_key, raw_listen) = listen_env
            .or_else(|| env_first(env, &["KANADE_BIND_ADDR"]))
            .or(backend.listen_addr.map(|addr| ("backend.listen_addr", addr)))
            .unwrap_or(("backend.listen_addr", DEFAULT_LISTEN_ADDR.to_owned()));
        let listen_addr = raw_listen.parse().map_err(|_| ConfigError::InvalidValue {
            key: listen_key.into(),
            value: raw_listen.clone(),
            problem: "is not an address of the form ip:port".into(),
        })?;
        let offline_after = checked_duration(
            "backend.offline_after",
            backend.offline_after.as_deref(),
            DEFAULT_OFFLINE_AFTER,
            Duration::from_secs(1)..=MAX_OFFLINE_AFTER,
        )?;
        let stale_after = checked_duration(
            "backend.stale_after",
            backend.stale_after.as_deref(),
            DEFAULT_STALE_AFTER,
            Duration::from_secs(1)..=MAX_STALE_AFTER,
        )?;
        if stale_after <= offline_after {
            return Err(ConfigError::Invalid(format!(
                "backend.stale_after ({}) must be longer than backend.offline_after ({}): an agent goes offline first",
                humantime::format_duration(stale_after),
                humantime::format_duration(offline_after)
            )));
        }

        let perf_retention = checked_duration(
            "backend.perf_retention",
            backend.perf_retention.as_deref(),
            DEFAULT_PERF_RETENTION,
            Duration::from_secs(3600)..=MAX_PERF_RETENTION,
        )?;
        let perf_max_watches = backend.perf_max_watches.unwrap_or(DEFAULT_PERF_MAX_WATCHES);
        if !(1..=MAX_PERF_WATCHES).contains(&perf_max_watches) {
            return Err(ConfigError::InvalidValue {
                key: "backend.perf_max_watches".into(),
                value: perf_max_watches.to_string(),
                problem: format!("must be between 1 and {MAX_PERF_WATCHES}"),
            });
        }

        let disable = match env_first(env, &["KANADE_AUTH_DISABLE"]) {
            Some((_, v)) => match v.as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
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
        let token = env_first(env, &["KANADE_AUTH_STATIC_TOKEN"])
            .map(|(_, t)| t)
            .or(file.auth.static_token)
            .filter(|t| !t.is_empty());
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
            // Without either, operator accounts are the only way in (a backend with none prints a setup token).
            (false, shared) => AuthConfig::Tokens { shared, operators },
        };
        let sessions = SessionConfig::resolve(
            file.auth.jwt_secret,
            file.auth.access_ttl.as_deref(),
            file.auth.refresh_ttl.as_deref(),
            env,
        )?;
        if auth == AuthConfig::Disabled && !std::net::SocketAddr::ip(&listen_addr).is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "auth is disabled but listen address `{listen_addr}` is not a loopback address; refusing to serve an \
                 open API"
            )));
        }

        let data_dir = match env_first(env, &["KANADE_BACKEND_DATA_DIR"]) {
            Some((_, dir)) => Some(PathBuf::from(dir)),
            None => match backend.data_dir {
                Some(dir) if dir.as_os_str().is_empty() => {
                    return Err(ConfigError::InvalidValue {
                        key: "backend.data_dir".into(),
                        value: String::new(),
                        problem: "is empty; leave the key out for the working directory".into(),
                    });
                }
                dir => dir,
            },
        };
        let database_url = match env_first(env, &["KANADE_DATABASE_URL", "DATABASE_URL"]) {
            Some((key, url)) => Some((key, url)),
            None => backend.database_url.map(|url| ("backend.database_url", url)),
        };
        if let Some((key, url)) = &database_url
            && !["sqlite:", "postgres:", "postgresql:"].iter().any(|scheme| url.starts_with(scheme))
        {
            return Err(ConfigError::InvalidValue {
                key: (*key).into(),
                value: crate::db::redact_url(url),
                problem: "is not a database URL: write sqlite://FILE, sqlite:FILE or postgres://...; leave it out for \
                          the SQLite file backend.db"
                    .into(),
            });
        }
        let database_url = database_url.map(|(_, url)| url);
        let instance = match env_first(env, &["KANADE_BACKEND_INSTANCE"]) {
            Some((key, raw)) => Some((key, raw)),
            None => backend.instance.map(|raw| ("backend.instance", raw)),
        };
        let instance = instance
            .map(|(key, raw)| {
                Actor::new(raw.clone()).map_err(|err| ConfigError::InvalidValue {
                    key: key.into(),
                    value: raw,
                    problem: err.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            listen_addr,
            data_dir,
            database_url,
            offline_after,
            stale_after,
            perf_retention,
            perf_max_watches,
            instance,
            auth,
            sessions,
            nats: file.nats.resolve(
                env,
                backend.nats_url,
                "backend.nats_url",
                path.and_then(std::path::Path::parent),
            )?,
            log: LogConfig::resolve(env, file.log, kanade_shared::config::DEFAULT_LOG_LEVEL)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const TOKEN: &str = "0123456789abcdef";

    /// The environment of a test: `pairs`, over a CA path (every connection needs one, or `insecure`), so that each
    /// test is about what it sets.
    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        std::iter::once(("KANADE_NATS_CA", "/etc/kanade/ca.pem"))
            .chain(pairs.iter().copied())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn load(text: &str, e: &[(&str, &str)]) -> Result<BackendConfig, String> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        BackendConfig::load(Some(file.path()), &env(e)).map_err(|e| e.to_string())
    }

    #[test]
    fn backend_refuses_unsafe_auth() {
        // Neither token nor `disable`: operator accounts are the only way in.
        let accounts_only = BackendConfig::load(None, &env(&[])).unwrap();
        assert_eq!(accounts_only.auth, AuthConfig::Tokens { shared: None, operators: Vec::new() });
        let err = BackendConfig::load(None, &env(&[("KANADE_AUTH_DISABLE", "1"), ("KANADE_BIND_ADDR", "0.0.0.0:80")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a loopback address"), "{err}");
        let err = load("[backend]\nlisten_addr = \"0.0.0.0:80\"\n[auth]\ndisable = true\n", &[]).unwrap_err();
        assert!(err.contains("`0.0.0.0:80` is not a loopback address"), "{err}");
        let err = BackendConfig::load(None, &env(&[("KANADE_AUTH_STATIC_TOKEN", "short")])).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        let cfg = BackendConfig::load(None, &env(&[("KANADE_AUTH_DISABLE", "1")])).unwrap();
        assert_eq!(cfg.auth, AuthConfig::Disabled);
        let cfg = BackendConfig::load(
            None,
            &env(&[("KANADE_AUTH_STATIC_TOKEN", TOKEN), ("KANADE_BIND_ADDR", "0.0.0.0:8081")]),
        )
        .unwrap();
        assert_eq!(cfg.auth, AuthConfig::static_token(TOKEN));
        assert_eq!(cfg.listen_addr.port(), 8081);
        let err = BackendConfig::load(None, &env(&[("KANADE_AUTH_DISABLE", "yes")])).unwrap_err().to_string();
        assert!(err.contains("KANADE_AUTH_DISABLE: `yes` must be 1 or 0"), "{err}");
    }

    #[test]
    fn every_section_is_read() {
        let cfg = load(
            concat!(
                "[backend]\nlisten_addr = \"127.0.0.1:9000\"\nnats_url = \"nats://n1:4222,nats://n2:4222\"\n",
                "database_url = \"postgres://kanade:secret@db:5432/kanade\"\ndata_dir = \"/srv/backend\"\n",
                "offline_after = \"2m\"\nstale_after = \"30d\"\n",
                "[auth]\nstatic_token = \"0123456789abcdef\"\n",
                "[log]\nlevel = \"debug\"\nfile = \"/var/log/kanade/backend.log\"\n",
                "[nats]\ntoken = \"nats-token\"\n",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(cfg.listen_addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(cfg.nats.urls, ["nats://n1:4222", "nats://n2:4222"]);
        assert_eq!(cfg.nats.token.as_deref(), Some("nats-token"));
        assert_eq!(cfg.database_url.as_deref(), Some("postgres://kanade:secret@db:5432/kanade"));
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/srv/backend")));
        assert_eq!(cfg.offline_after, Duration::from_secs(120));
        assert_eq!(cfg.stale_after, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(cfg.auth, AuthConfig::static_token(TOKEN));
        assert_eq!(cfg.log.level, "debug");
        assert_eq!(cfg.log.file, Some(PathBuf::from("/var/log/kanade/backend.log")));
        let defaults = BackendConfig::load(None, &env(&[("KANADE_AUTH_DISABLE", "1")])).unwrap();
        assert_eq!(defaults.listen_addr, DEFAULT_LISTEN_ADDR.parse().unwrap());
        assert_eq!((defaults.offline_after, defaults.stale_after), (DEFAULT_OFFLINE_AFTER, DEFAULT_STALE_AFTER));
        assert_eq!((defaults.data_dir, defaults.database_url), (None, None));
        assert_eq!(defaults.log, LogConfig::default());
    }

    #[test]
    fn the_environment_wins_and_kanade_names_win_over_generic_ones() {
        let text = "[backend]\nlisten_addr = \"127.0.0.1:9000\"\ndatabase_url = \"sqlite://file.db\"\n\
                    [auth]\ndisable = true\n[log]\nlevel = \"error\"\n";
        let cfg = load(text, &[("DATABASE_URL", "sqlite://generic.db"), ("RUST_LOG", "warn")]).unwrap();
        assert_eq!(cfg.database_url.as_deref(), Some("sqlite://generic.db"));
        assert_eq!(cfg.log.level, "warn");
        let cfg = load(
            text,
            &[
                ("DATABASE_URL", "sqlite://generic.db"),
                ("KANADE_DATABASE_URL", "sqlite://kanade.db"),
                ("RUST_LOG", "warn"),
                ("KANADE_LOG", "debug"),
                ("KANADE_LISTEN_ADDR", "127.0.0.1:9001"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.database_url.as_deref(), Some("sqlite://kanade.db"));
        assert_eq!(cfg.log.level, "debug");
        assert_eq!(cfg.listen_addr.port(), 9001);
        // KANADE_BIND_ADDR is the listen address's older name: alone it works, agreeing it is fine, disagreeing not.
        assert_eq!(load(text, &[("KANADE_BIND_ADDR", "127.0.0.1:9002")]).unwrap().listen_addr.port(), 9002);
        let same = [("KANADE_BIND_ADDR", "127.0.0.1:9003"), ("KANADE_LISTEN_ADDR", "127.0.0.1:9003")];
        assert_eq!(load(text, &same).unwrap().listen_addr.port(), 9003);
        let err =
            load(text, &[("KANADE_BIND_ADDR", "127.0.0.1:1"), ("KANADE_LISTEN_ADDR", "127.0.0.1:2")]).unwrap_err();
        assert!(err.contains("disagree"), "{err}");
        // Empty variables are unset.
        let cfg = load(text, &[("KANADE_DATABASE_URL", ""), ("KANADE_LISTEN_ADDR", "")]).unwrap();
        assert_eq!(cfg.database_url.as_deref(), Some("sqlite://file.db"));
        assert_eq!(cfg.listen_addr.port(), 9000);
    }

    #[test]
    fn operator_tokens_are_checked() {
        let auth = |text: &str| load(text, &[]).map(|c| c.auth);
        let ok = auth("[[auth.operators]]\nname = \"alice\"\ntoken = \"alice-0123456789abcdef\"\n").unwrap();
        let AuthConfig::Tokens { shared: None, operators } = ok else { panic!("{ok:?}") };
        assert_eq!(operators[0].name.as_str(), "alice");
        assert!(!format!("{:?}", operators[0]).contains("0123456789"), "a token must not reach the log");
        let two = "[[auth.operators]]\nname = \"alice\"\ntoken = \"same-0123456789abcdef\"\n\
                   [[auth.operators]]\nname = \"bob\"\ntoken = \"same-0123456789abcdef\"\n";
        assert!(auth(two).unwrap_err().contains("another operator's token"));
        let short = "[[auth.operators]]\nname = \"alice\"\ntoken = \"short\"\n";
        assert!(auth(short).unwrap_err().contains("auth.operators[0].token is 5 characters"));
        let bad = "[[auth.operators]]\nname = \"Alice Smith\"\ntoken = \"alice-0123456789abcdef\"\n";
        assert!(auth(bad).unwrap_err().contains("auth.operators[0].name"));
        let unknown = "[[auth.operators]]\nname = \"alice\"\ntoken = \"alice-0123456789abcdef\"\nrank = \"x\"\n";
        let err = auth(unknown).unwrap_err();
        assert!(err.contains("line 4") && err.contains("`auth.operators[0].rank`"), "{err}");
    }

    #[test]
    fn an_operator_token_carries_a_role_and_a_group_scope_checked_together() {
        let operators = |tail: &str| {
            let text = format!("[[auth.operators]]\nname = \"carol\"\ntoken = \"carol-0123456789abcdef\"\n{tail}");
            match load(&text, &[]).map(|c| c.auth) {
                Ok(AuthConfig::Tokens { operators, .. }) => Ok(operators),
                Ok(other) => panic!("{other:?}"),
                Err(err) => Err(err),
            }
        };
        // Without either: an admin of the whole fleet, as every token was before roles.
        let before = operators("").unwrap();
        assert_eq!((before[0].role, &before[0].scope), (Role::Admin, &GroupScope::Fleet));
        assert_eq!(before[0], OperatorToken::admin(Actor::new("carol").unwrap(), "carol-0123456789abcdef"));
        let scoped = operators("role = \"operator\"\ngroups = [\"office\", \"branch-2\"]\n").unwrap();
        assert_eq!(scoped[0].role, Role::Operator);
        assert_eq!(scoped[0].scope, GroupScope::parse_list("branch-2,office").unwrap());
        assert!(format!("{:?}", scoped[0]).contains("Operator"), "the role and scope are shown, the token not");
        let viewer = operators("role = \"viewer\"\n").unwrap();
        assert_eq!((viewer[0].role, &viewer[0].scope), (Role::Viewer, &GroupScope::Fleet));
        let cases = [
            ("groups = [\"office\"]\n", "auth.operators[0]: an admin acts on the whole fleet"),
            ("role = \"admin\"\ngroups = [\"office\"]\n", "give `role` (viewer, operator or approver)"),
            ("role = \"root\"\n", "auth.operators[0].role: `root`"),
            ("role = \"operator\"\ngroups = []\n", "auth.operators[0].groups is empty; leave it out"),
            ("role = \"operator\"\ngroups = [\"Office HQ\"]\n", "auth.operators[0].groups: `Office HQ`"),
            ("role = \"operator\"\ngroups = \"office\"\n", "`auth.operators[0].groups`: invalid type"),
        ];
        for (tail, want) in cases {
            let err = operators(tail).unwrap_err();
            assert!(err.contains(want), "{tail:?}: {err}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("\"g{i}\"")).collect();
        let err = operators(&format!("role = \"operator\"\ngroups = [{}]\n", many.join(", "))).unwrap_err();
        assert!(err.contains("at most 64 groups"), "{err}");
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_values_are_named() {
        let cases = [
            ("[backend]\nbind_addr = \"127.0.0.1:0\"\n", "line 2, column 1: `backend.bind_addr`: unknown field"),
            ("bind_addr = \"127.0.0.1:0\"\n", "line 1, column 1: `bind_addr`: unknown field"),
            ("[auth]\nstatic_tokn = \"x\"\n", "line 2, column 1: `auth.static_tokn`: unknown field"),
            ("[log]\nlevl = \"x\"\n", "`log.levl`: unknown field"),
            ("[nats]\nurl = \"nats://x:1\"\n", "`nats.url`: unknown field"),
            ("[auth]\ndisable = \"yes\"\n", "`auth.disable`: invalid type"),
            ("[backend]\noffline_after = 90\n", "`backend.offline_after`: invalid type"),
            ("[backend\n", "line 1"),
            ("[backend]\nlisten_addr = \"localhost\"\n", "backend.listen_addr: `localhost` is not an address"),
            ("[backend]\nlisten_addr = \"\"\n", "backend.listen_addr: `` is not an address"),
            ("[backend]\noffline_after = \"0s\"\n", "backend.offline_after: `0s` is shorter than the minimum"),
            ("[backend]\noffline_after = \"1000000000000y\"\n", "backend.offline_after: `1000000000000y`"),
            ("[backend]\nstale_after = \"100y\"\n", "backend.stale_after: `100y` is longer than the maximum"),
            ("[backend]\nstale_after = \"1m\"\n", "backend.stale_after (1m) must be longer than backend.offline_after"),
            ("[backend]\ndatabase_url = \"\"\n", "backend.database_url: `` is not a database URL"),
            ("[backend]\ndatabase_url = \"mysql://u:pw@h/db\"\n", "`mysql://u:***@h/db` is not a database URL"),
            ("[backend]\ndata_dir = \"\"\n", "backend.data_dir: `` is empty"),
            ("[backend]\nnats_url = \"http://x\"\n", "backend.nats_url: `http://x` is not a NATS URL"),
            ("[log]\nlevel = \"shouty\"\n", "log.level: `shouty`"),
            ("[log]\nfile = \"\"\n", "log.file: `` is empty"),
        ];
        for (text, want) in cases {
            let err = load(text, &[("KANADE_AUTH_STATIC_TOKEN", TOKEN)]).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let err = BackendConfig::load(None, &env(&[("KANADE_AUTH_DISABLE", "1"), ("KANADE_BIND_ADDR", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("KANADE_BIND_ADDR: `localhost` is not an address"), "{err}");
        let err = BackendConfig::load(None, &env(&[("KANADE_AUTH_DISABLE", "1"), ("DATABASE_URL", "redis://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_URL: `redis://x` is not a database URL"), "{err}");
    }

    #[test]
    fn the_example_config_loads() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let backend =
            BackendConfig::load(Some(&deploy.join("backend.example.toml")), &env(&[("KANADE_AUTH_DISABLE", "1")]))
                .unwrap();
        assert_eq!(backend.offline_after, Duration::from_secs(90));
        assert_eq!(backend.stale_after, DEFAULT_STALE_AFTER);
        assert_eq!(backend.listen_addr, DEFAULT_LISTEN_ADDR.parse().unwrap());
        assert_eq!(backend.database_url, None);
        assert_eq!(backend.instance, None, "a new name at every start unless one is given");
        let example = deploy.join("backend.example.toml");
        assert_eq!(backend.nats.creds, Some(deploy.join("fleet/backend.creds")), "relative to the file's folder");
        assert_eq!(SecurityConfig::load(Some(&example), &env(&[])).unwrap(), None, "enrolment is off unless set");
    }

    fn security(text: &str, e: &[(&str, &str)]) -> Result<Option<SecurityConfig>, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backend.toml");
        std::fs::write(&file, text).unwrap();
        let found = SecurityConfig::load(Some(&file), &env(e)).map_err(|e| e.to_string())?;
        // Relative to the file's folder, which is gone after this: shown relative to it for the assertions.
        Ok(found.map(|mut s| {
            s.dir = s.dir.strip_prefix(dir.path()).map(Path::to_path_buf).unwrap_or(s.dir);
            s
        }))
    }

    #[test]
    fn security_is_off_without_its_section_and_checked_with_it() {
        assert_eq!(security("", &[]).unwrap(), None);
        assert_eq!(SecurityConfig::load(None, &env(&[])).unwrap(), None);
        let on = security("[security]\ndir = \"fleet\"\n", &[]).unwrap().unwrap();
        assert_eq!(on, SecurityConfig::new("fleet"));
        let full = "[security]\ndir = \"/etc/kanade/fleet\"\ncredential_ttl = \"1d\"\napprove_enrollments = true\n";
        let on = security(full, &[]).unwrap().unwrap();
        assert_eq!(
            on,
            SecurityConfig {
                dir: PathBuf::from("/etc/kanade/fleet"),
                credential_ttl: Duration::from_secs(24 * 3600),
                approve_enrollments: true
            }
        );
        // The environment names the folder, with or without the section.
        let on = security("", &[("KANADE_SECURITY_DIR", "/srv/fleet")]).unwrap().unwrap();
        assert_eq!(on.dir, PathBuf::from("/srv/fleet"));
        let on = security(full, &[("KANADE_SECURITY_DIR", "/srv/fleet")]).unwrap().unwrap();
        assert_eq!((on.dir, on.approve_enrollments), (PathBuf::from("/srv/fleet"), true));
        let cases = [
            ("[security]\n", "security.dir: not set"),
            ("[security]\ndir = \"\"\n", "security.dir: `` is empty"),
            ("[security]\ndir = \"f\"\ncredential_ttl = \"10s\"\n", "security.credential_ttl: `10s` is shorter"),
            ("[security]\ndir = \"f\"\ncredential_ttl = \"2y\"\n", "security.credential_ttl: `2y` is longer"),
            ("[security]\ndir = \"f\"\napprove = true\n", "`security.approve`: unknown field"),
            (
                "[security]\ndir = \"f\"\napprove_enrollments = \"yes\"\n",
                "`security.approve_enrollments`: invalid type",
            ),
        ];
        for (text, want) in cases {
            let err = security(text, &[]).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        // The backend's own load accepts the section too.
        assert!(load("[auth]\ndisable = true\n[security]\ndir = \"f\"\n", &[]).is_ok());
    }

    #[test]
    fn an_instance_name_follows_the_id_rule_and_the_environment_wins() {
        let text = "[backend]\ninstance = \"backend-1\"\n";
        let cfg = load(text, &[("KANADE_AUTH_DISABLE", "1")]).unwrap();
        assert_eq!(cfg.instance.as_ref().map(Actor::as_str), Some("backend-1"));
        let cfg = load(text, &[("KANADE_AUTH_DISABLE", "1"), ("KANADE_BACKEND_INSTANCE", "b2")]).unwrap();
        assert_eq!(cfg.instance.as_ref().map(Actor::as_str), Some("b2"));
        for bad in ["Backend One", "", "a.b", &"x".repeat(65)] {
            let text = format!("[backend]\ninstance = \"{bad}\"\n");
            let err = load(&text, &[("KANADE_AUTH_DISABLE", "1")]).unwrap_err();
            assert!(err.contains("backend.instance"), "{bad}: {err}");
        }
        let err = load("", &[("KANADE_AUTH_DISABLE", "1"), ("KANADE_BACKEND_INSTANCE", "a b")]).unwrap_err();
        assert!(err.contains("KANADE_BACKEND_INSTANCE"), "{err}");
    }

    #[test]
    fn session_settings_have_safe_defaults_bounds_and_no_built_in_key() {
        let cfg = load("", &[]).unwrap();
        assert_eq!(cfg.sessions, SessionConfig::default());
        assert_eq!(cfg.sessions.jwt_secret, None, "made at first start, never built in");
        let text =
            "[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\naccess_ttl = \"5m\"\nrefresh_ttl = \"1d\"\n";
        let cfg = load(text, &[]).unwrap();
        assert_eq!(cfg.sessions.jwt_secret.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(cfg.sessions.access_ttl, Duration::from_secs(300));
        assert_eq!(cfg.sessions.refresh_ttl, Duration::from_secs(86_400));
        assert!(!format!("{:?}", cfg.sessions).contains("0123456789abcdef"), "Debug hides the key");
        let cfg = load(text, &[("KANADE_AUTH_JWT_SECRET", "from-the-environment-0123456789abcdef")]).unwrap();
        assert_eq!(cfg.sessions.jwt_secret.as_deref(), Some("from-the-environment-0123456789abcdef"));
        for (text, want) in [
            ("[auth]\njwt_secret = \"too-short\"\n", "auth.jwt_secret is 9 bytes"),
            ("[auth]\naccess_ttl = \"2h\"\n", "auth.access_ttl"),
            ("[auth]\naccess_ttl = \"10s\"\n", "auth.access_ttl"),
            ("[auth]\nrefresh_ttl = \"1y\"\n", "auth.refresh_ttl"),
            ("[auth]\nrefresh_ttl = \"soon\"\n", "auth.refresh_ttl"),
        ] {
            let err = load(text, &[]).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
