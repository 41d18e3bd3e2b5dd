//! `kanade security init`: creates a fleet's identities and the broker's TLS, as files in one folder, each secret
//! written readable by its owner only. What each file is and where it belongs is [`FILES`]; the README's "Security
//! model" says the same. Besides the NATS identities it makes the authority of signed commands (DESIGN.md,
//! Authority): the offline trust root, the backend's signing key, and the first root-signed trust list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::TimeZone as _;
use kanade_shared::Actor;
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::authority::{KeyError, PublicKey, SignedTrustList, SigningKey, TrustError, TrustList, TrustedKey};
use kanade_shared::security::{self, FleetAccount, creds, jwt, permissions};
use nkeys::KeyPair;

/// Who needs a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Kept offline (a vault, a USB key): needed only to re-create what it signed.
    Offline,
    Broker,
    Backend,
    /// The operator's machine, for the `kanade` CLI.
    Cli,
    /// Every agent (with its installer).
    Agents,
    /// A benchmark machine running the fleet simulator.
    Simulator,
}

impl Holder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Broker => "broker",
            Self::Backend => "backend",
            Self::Cli => "cli",
            Self::Agents => "agents",
            Self::Simulator => "simulator",
        }
    }
}

/// One file `init` writes.
pub struct FileSpec {
    pub name: &'static str,
    pub secret: bool,
    pub holders: &'static [Holder],
    pub what: &'static str,
}

pub const OPERATOR_KEY: &str = "operator.nk";
pub const OPERATOR_JWT: &str = "operator.jwt";
pub const OPERATOR_SIGNING_KEY: &str = "operator-signing.nk";
pub const SYSTEM_KEY: &str = "system-account.nk";
pub const SYSTEM_CREDS: &str = "system.creds";
pub const ACCOUNT_KEY: &str = "account.nk";
pub const ACCOUNT_JWT: &str = "account.jwt";
pub const AGENT_SIGNING_KEY: &str = "agent-signing.nk";
pub const USER_SIGNING_KEY: &str = "user-signing.nk";
pub const BACKEND_CREDS: &str = "backend.creds";
pub const CLI_CREDS: &str = "cli.creds";
pub const BOOTSTRAP_CREDS: &str = "bootstrap.creds";
pub const SIMULATOR_CREDS: &str = "simulator.creds";
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const SERVER_CERT: &str = "nats-server.pem";
pub const SERVER_KEY: &str = "nats-server-key.pem";
pub const SERVER_INCLUDE: &str = "nats-security.conf";
pub const TRUST_ROOT_KEY: &str = "trust-root.key";
pub const TRUST_ROOT_PUB: &str = "trust-root.pub";
pub const BACKEND_SIGNING_KEY: &str = "backend-signing.key";
pub const TRUST_LIST: &str = "trust-list.json";

/// The name the backend's signing key has in the trust list.
pub const BACKEND_KEY_NAME: &str = "backend";

use Holder::{Agents, Backend, Broker, Cli, Offline, Simulator};

/// Every file, in the order `init` reports them.
pub const FILES: &[FileSpec] = &[
    FileSpec {
        name: OPERATOR_KEY,
        secret: true,
        holders: &[Offline],
        what: "the operator's identity: re-signs the operator JWT",
    },
    FileSpec {
        name: OPERATOR_JWT,
        secret: false,
        holders: &[Broker],
        what: "the operator JWT (also inlined in the broker include)",
    },
    FileSpec {
        name: OPERATOR_SIGNING_KEY,
        secret: true,
        holders: &[Backend],
        what: "signs new versions of the fleet account (revocations)",
    },
    FileSpec { name: SYSTEM_KEY, secret: true, holders: &[Offline], what: "the system account's identity" },
    FileSpec { name: SYSTEM_CREDS, secret: true, holders: &[Backend], what: "pushes account updates to the broker" },
    FileSpec { name: ACCOUNT_KEY, secret: true, holders: &[Offline], what: "the fleet account's identity" },
    FileSpec {
        name: ACCOUNT_JWT,
        secret: false,
        holders: &[Backend],
        what: "the fleet account as issued (its public keys)",
    },
    FileSpec {
        name: AGENT_SIGNING_KEY,
        secret: true,
        holders: &[Backend],
        what: "issues agent credentials, which can only be agents",
    },
    FileSpec {
        name: USER_SIGNING_KEY,
        secret: true,
        holders: &[Offline],
        what: "issues the backend's, CLI's, bootstrap and simulator credentials",
    },
    FileSpec { name: BACKEND_CREDS, secret: true, holders: &[Backend], what: "the backend's NATS credential" },
    FileSpec { name: CLI_CREDS, secret: true, holders: &[Cli], what: "the CLI's NATS credential" },
    FileSpec {
        name: BOOTSTRAP_CREDS,
        secret: false,
        holders: &[Agents],
        what: "may only ask to enrol; ships with the agent installer",
    },
    FileSpec {
        name: SIMULATOR_CREDS,
        secret: true,
        holders: &[Simulator],
        what: "the fleet simulator's: every PC's agent subjects, nothing else",
    },
    FileSpec {
        name: CA_CERT,
        secret: false,
        holders: &[Broker, Backend, Cli, Agents, Simulator],
        what: "the fleet's CA, pinned by every client",
    },
    FileSpec { name: CA_KEY, secret: true, holders: &[Offline], what: "signs broker certificates" },
    FileSpec { name: SERVER_CERT, secret: false, holders: &[Broker], what: "the broker's TLS certificate" },
    FileSpec { name: SERVER_KEY, secret: true, holders: &[Broker], what: "the broker's TLS key" },
    FileSpec {
        name: SERVER_INCLUDE,
        secret: false,
        holders: &[Broker],
        what: "include from nats-server.conf: operator, resolver, TLS",
    },
    FileSpec {
        name: TRUST_ROOT_KEY,
        secret: true,
        holders: &[Offline],
        what: "the trust root: signs trust lists; only on the machine where they are signed",
    },
    FileSpec {
        name: TRUST_ROOT_PUB,
        secret: false,
        holders: &[Agents, Cli, Backend],
        what: "the trust root's public key: agents take only lists it signed",
    },
    FileSpec {
        name: BACKEND_SIGNING_KEY,
        secret: true,
        holders: &[Backend],
        what: "signs what dashboard users, schedules and waves fire",
    },
    FileSpec {
        name: TRUST_LIST,
        secret: false,
        holders: &[Cli],
        what: "trust list version 1 (the backend's key): `kanade trust push` it",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("`{}` already holds a fleet (`{OPERATOR_KEY}` exists); refusing to overwrite its keys", .0.display())]
    Exists(PathBuf),
    #[error("cannot write `{}`", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read `{}`", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not {what}", .path.display())]
    Invalid { path: PathBuf, what: &'static str },
    #[error("cannot sign a JWT")]
    Jwt(#[from] jwt::JwtError),
    #[error("cannot create the TLS certificates")]
    Tls(#[from] rcgen::Error),
    #[error("`{0}` is not a host name or IP address for the broker's certificate")]
    Host(String),
    #[error("`{}` is not {what}", .path.display())]
    Key {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: KeyError,
    },
    // Boxed: a trust error holds public keys, and this error travels inside others.
    #[error("`{}` is not a signed trust list", .path.display())]
    TrustFile {
        path: PathBuf,
        #[source]
        source: Box<TrustError>,
    },
    #[error("cannot make the first trust list")]
    Trust(#[source] Box<TrustError>),
}

/// What `init` is told.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Where the files are written (created owner-only if missing).
    pub dir: PathBuf,
    /// Names and addresses the broker is reached at: its certificate's subject alternative names.
    pub hosts: Vec<String>,
    /// The folder the broker reads the certificate and key from, as the include names them (default: `dir`).
    pub broker_dir: Option<PathBuf>,
    /// Where the broker keeps account JWTs it receives (default: `<broker_dir>/jwt`).
    pub resolver_dir: Option<PathBuf>,
}

/// The default names in the broker's certificate: enough for one machine.
pub const DEFAULT_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// An operator's key to trust as an admin from the first trust list on (`security init --admin-key`), so that
/// someone can sign from the start.
#[derive(Debug, Clone)]
pub struct FirstAdmin {
    pub name: Actor,
    pub key: PublicKey,
}

/// Creates a fleet in `options.dir`. Refuses a folder that already holds one.
pub fn init(options: &InitOptions, now: i64) -> Result<(), SecurityError> {
    init_with(options, None, now)
}

/// [`init`], with `admin` trusted as an admin, fleet-wide, in the first trust list beside the backend's key.
pub fn init_with(options: &InitOptions, admin: Option<&FirstAdmin>, now: i64) -> Result<(), SecurityError> {
    let dir = &options.dir;
    if dir.join(OPERATOR_KEY).exists() {
        return Err(SecurityError::Exists(dir.clone()));
    }
    for host in &options.hosts {
        let valid = host.parse::<std::net::IpAddr>().is_ok()
            || (!host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
                }));
        if !valid {
            return Err(SecurityError::Host(host.clone()));
        }
    }
    private_dir(dir)?;

    let operator = KeyPair::new_operator();
    let operator_signing = KeyPair::new_operator();
    let system = KeyPair::new_account();
    let account = KeyPair::new_account();
    let agent_signing = KeyPair::new_account();
    let user_signing = KeyPair::new_account();
    let seed = |key: &KeyPair| key.seed().map_err(jwt::JwtError::Sign);

    let operator_jwt = jwt::encode(
        &security::operator_claims(&operator.public_key(), &operator_signing.public_key(), &system.public_key(), now),
        &operator,
    )?;
    let system_jwt = jwt::encode(&security::system_account_claims(&system.public_key(), now), &operator_signing)?;
    let fleet = FleetAccount {
        account: account.public_key(),
        agent_signing: agent_signing.public_key(),
        user_signing: user_signing.public_key(),
    };
    let account_jwt = jwt::encode(&fleet.claims(BTreeMap::new(), now), &operator_signing)?;

    let system_user = {
        let key = KeyPair::new_user();
        let claims = security::user_claims(&key.public_key(), "system", permissions::full_access(), "", now, None);
        creds::format(&jwt::encode(&claims, &system)?, &seed(&key)?)
    };
    let user = |name: &str, limits: jwt::UserLimits| -> Result<String, SecurityError> {
        let key = KeyPair::new_user();
        let claims = security::user_claims(&key.public_key(), name, limits, &fleet.account, now, None);
        Ok(creds::format(&jwt::encode(&claims, &user_signing)?, &seed(&key)?))
    };

    let trust_root = SigningKey::generate();
    let backend_signing = SigningKey::generate();
    let trust_list = first_trust_list(&trust_root, &backend_signing.public_key(), admin, now)?;

    let (ca_pem, ca_key_pem, server_pem, server_key_pem) = tls(&options.hosts)?;
    let broker_dir = options.broker_dir.clone().unwrap_or_else(|| dir.clone());
    let resolver_dir = options.resolver_dir.clone().unwrap_or_else(|| broker_dir.join("jwt"));
    let include = server_include(&ServerInclude {
        operator_jwt: &operator_jwt,
        system_account: &system.public_key(),
        accounts: &[(system.public_key(), system_jwt.clone()), (fleet.account.clone(), account_jwt.clone())],
        resolver_dir: &resolver_dir,
        cert: &broker_dir.join(SERVER_CERT),
        key: &broker_dir.join(SERVER_KEY),
    });

    let contents: Vec<(&str, String)> = vec![
        (OPERATOR_KEY, seed(&operator)?),
        (OPERATOR_JWT, operator_jwt),
        (OPERATOR_SIGNING_KEY, seed(&operator_signing)?),
        (SYSTEM_KEY, seed(&system)?),
        (SYSTEM_CREDS, system_user),
        (ACCOUNT_KEY, seed(&account)?),
        (ACCOUNT_JWT, account_jwt),
        (AGENT_SIGNING_KEY, seed(&agent_signing)?),
        (USER_SIGNING_KEY, seed(&user_signing)?),
        (BACKEND_CREDS, user("kanade-backend", permissions::full_access())?),
        (CLI_CREDS, user("kanade-cli", permissions::full_access())?),
        (BOOTSTRAP_CREDS, user("kanade-bootstrap", permissions::bootstrap_limits())?),
        (
            SIMULATOR_CREDS,
            user("kanade-fleet-simulator", permissions::simulator_limits(permissions::SIMULATOR_INBOX_PREFIX))?,
        ),
        (CA_CERT, ca_pem),
        (CA_KEY, ca_key_pem),
        (SERVER_CERT, server_pem),
        (SERVER_KEY, server_key_pem),
        (SERVER_INCLUDE, include),
        (TRUST_ROOT_KEY, trust_root.to_pem()),
        (TRUST_ROOT_PUB, format!("{}\n", trust_root.public_key())),
        (BACKEND_SIGNING_KEY, backend_signing.to_pem()),
        (TRUST_LIST, format!("{}\n", String::from_utf8_lossy(&trust_list.encode()))),
    ];
    // The operator key last: its presence is what says "this folder holds a complete fleet".
    for (name, text) in contents.iter().rev() {
        let spec = FILES.iter().find(|f| f.name == *name).expect("every file is in FILES");
        write_file(&dir.join(name), text.as_bytes(), spec.secret)?;
    }
    Ok(())
}

/// Version 1 of the trust list, signed by `root`: the backend's key as an operator of the whole fleet (it fires
/// only what a signed-in dashboard user, a schedule or a wave asked for, and the backend checks their roles), and
/// the first admin's key if there is one.
fn first_trust_list(
    root: &SigningKey,
    backend: &PublicKey,
    admin: Option<&FirstAdmin>,
    now: i64,
) -> Result<SignedTrustList, SecurityError> {
    let now = chrono::Utc.timestamp_opt(now, 0).single().unwrap_or_else(chrono::Utc::now);
    let backend_name = Actor::new(BACKEND_KEY_NAME).expect("`backend` is a valid actor");
    let entry = |name: Actor, key: PublicKey, role: Role| TrustedKey::new(name, key, role, GroupScope::Fleet, now);
    let mut keys = vec![entry(backend_name, *backend, Role::Operator)];
    if let Some(admin) = admin {
        keys.push(entry(admin.name.clone(), admin.key, Role::Admin));
    }
    SignedTrustList::sign(&TrustList::first(keys, now), root).map_err(|err| SecurityError::Trust(Box::new(err)))
}

/// A signing key file (PKCS#8 PEM), read bounded: a huge or garbled file is a clear error.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, SecurityError> {
    let text = read_small(path)?;
    let what = "an Ed25519 signing key (PKCS#8 PEM)";
    SigningKey::from_pem(&text).map_err(|source| SecurityError::Key { path: path.to_owned(), what, source })
}

/// A public key file (`ed25519:...`, as `trust-root.pub`), read bounded.
pub fn read_public_key(path: &Path) -> Result<PublicKey, SecurityError> {
    let text = read_small(path)?;
    let what = "a public key (`ed25519:...`)";
    text.trim().parse().map_err(|source| SecurityError::Key { path: path.to_owned(), what, source })
}

/// A signed trust list file (as `trust-list.json`), read bounded and decoded, not yet checked against a root.
pub fn read_trust_list(path: &Path) -> Result<SignedTrustList, SecurityError> {
    use std::io::Read as _;
    let limit = kanade_shared::authority::trust::MAX_TRUST_LIST_BYTES as u64;
    let read_err = |source| SecurityError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    if size > limit {
        let source = Box::new(TrustError::TooLarge(usize::try_from(size).unwrap_or(usize::MAX)));
        return Err(SecurityError::TrustFile { path: path.to_owned(), source });
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(read_err)?;
    SignedTrustList::decode(&bytes)
        .map_err(|source| SecurityError::TrustFile { path: path.to_owned(), source: Box::new(source) })
}

/// The broker's part: operator mode with a full resolver (account updates pushed by the backend are kept across
/// restarts; no server reload per enrolment or revocation), and TLS required of every client.
pub struct ServerInclude<'a> {
    pub operator_jwt: &'a str,
    pub system_account: &'a str,
    pub accounts: &'a [(String, String)],
    pub resolver_dir: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

pub fn server_include(include: &ServerInclude<'_>) -> String {
    let quote = |p: &Path| format!("{:?}", p.display().to_string());
    let mut preload = String::new();
    for (key, token) in include.accounts {
        preload.push_str(&format!("  {key}: \"{token}\"\n"));
    }
    format!(
        "# Written by `kanade security init`. Include it from nats-server.conf: `include \"{SERVER_INCLUDE}\"`.\n\
         # Operator mode: every client presents a JWT signed for the fleet account; no user is listed here, and\n\
         # enrolling or revoking an agent never needs a reload.\n\
         operator: \"{operator}\"\n\
         system_account: {system}\n\
         resolver: {{\n  type: full\n  dir: {resolver}\n  allow_delete: false\n  interval: \"2m\"\n  timeout: \"5s\"\n}}\n\
         resolver_preload: {{\n{preload}}}\n\
         # TLS on every client connection; clients pin the fleet's CA (ca.pem).\n\
         tls {{\n  cert_file: {cert}\n  key_file: {key}\n  timeout: 5\n}}\n",
        operator = include.operator_jwt,
        system = include.system_account,
        resolver = quote(include.resolver_dir),
        cert = quote(include.cert),
        key = quote(include.key),
    )
}

/// A CA and a broker certificate for `hosts` (ECDSA P-256).
fn tls(hosts: &[String]) -> Result<(String, String, String, String), SecurityError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair as TlsKey,
        KeyUsagePurpose,
    };
    let year = chrono::Datelike::year(&chrono::Utc::now());
    let ca_key = TlsKey::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "kanade fleet CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    ca.not_after = rcgen::date_time_ymd(year + 20, 1, 1);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = TlsKey::generate()?;
    let mut server = CertificateParams::new(hosts.to_vec())?;
    server.distinguished_name.push(DnType::CommonName, hosts.first().map_or("kanade broker", String::as_str));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    server.not_after = rcgen::date_time_ymd(year + 5, 1, 1);
    let server_cert = server.signed_by(&server_key, &issuer)?;
    Ok((ca_cert.pem(), ca_key.serialize_pem(), server_cert.pem(), server_key.serialize_pem()))
}

/// Hands a new version of an account JWT to the broker (`$SYS.REQ.CLAIMS.UPDATE`, as the system account's user).
/// The broker keeps it in its resolver folder across restarts, passes it to the other servers of a cluster, and
/// closes at once the connections of users it revokes.
pub async fn push_account(system: &async_nats::Client, account_jwt: &str) -> Result<(), PushError> {
    #[derive(serde::Deserialize)]
    struct Reply {
        data: Option<Status>,
        error: Option<Failure>,
    }
    #[derive(serde::Deserialize)]
    struct Status {
        code: u16,
    }
    #[derive(serde::Deserialize)]
    struct Failure {
        description: String,
    }
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        system.request(ACCOUNT_UPDATE_SUBJECT, account_jwt.to_owned().into()),
    )
    .await
    .map_err(|_| PushError::NoAnswer("no broker answered within 10 s".to_owned()))?
    .map_err(|err| PushError::NoAnswer(err.to_string()))?;
    match serde_json::from_slice::<Reply>(&reply.payload) {
        Ok(Reply { data: Some(Status { code: 200 }), .. }) => Ok(()),
        Ok(Reply { error: Some(Failure { description }), .. }) => Err(PushError::Refused(description)),
        _ => Err(PushError::Refused(String::from_utf8_lossy(&reply.payload).chars().take(200).collect())),
    }
}

/// Where account updates go (nats-server's system account API).
pub const ACCOUNT_UPDATE_SUBJECT: &str = "$SYS.REQ.CLAIMS.UPDATE";

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the broker did not take the account update: {0}")]
    NoAnswer(String),
    #[error("the broker refused the account update: {0}")]
    Refused(String),
}

/// The fleet account's public keys, from `account.jwt`.
pub fn read_fleet(path: &Path) -> Result<FleetAccount, SecurityError> {
    let text = read_small(path)?;
    let claims: jwt::Claims<jwt::Account> = jwt::decode(text.trim())
        .map_err(|_| SecurityError::Invalid { path: path.to_owned(), what: "an account JWT" })?;
    let agent_signing = claims.nats.signing_keys.iter().find_map(|key| match key {
        jwt::SigningKey::Scoped(scope) if scope.role == security::AGENT_ROLE => Some(scope.key.clone()),
        _ => None,
    });
    let user_signing = claims.nats.signing_keys.iter().find_map(|key| match key {
        jwt::SigningKey::Plain(key) => Some(key.clone()),
        jwt::SigningKey::Scoped(_) => None,
    });
    match (agent_signing, user_signing) {
        (Some(agent_signing), Some(user_signing)) => {
            Ok(FleetAccount { account: claims.sub, agent_signing, user_signing })
        }
        _ => Err(SecurityError::Invalid { path: path.to_owned(), what: "a kanade fleet account (its signing keys)" }),
    }
}

/// An nkey seed file.
pub fn read_seed(path: &Path) -> Result<KeyPair, SecurityError> {
    let text = read_small(path)?;
    KeyPair::from_seed(text.trim()).map_err(|_| SecurityError::Invalid { path: path.to_owned(), what: "an nkey seed" })
}

/// Key, JWT and certificate files are small; a huge one is refused rather than read.
fn read_small(path: &Path) -> Result<String, SecurityError> {
    use std::io::Read as _;
    const LIMIT: u64 = 1024 * 1024;
    let file = std::fs::File::open(path).map_err(|source| SecurityError::Read { path: path.to_owned(), source })?;
    let mut text = String::new();
    file.take(LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(|source| SecurityError::Read { path: path.to_owned(), source })?;
    if text.len() as u64 > LIMIT {
        return Err(SecurityError::Invalid { path: path.to_owned(), what: "a file under 1 MiB" });
    }
    Ok(text)
}

/// Creates `dir` readable by its owner only (0700 on Unix).
pub fn private_dir(dir: &Path) -> Result<(), SecurityError> {
    let err = |source| SecurityError::Write { path: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    restrict(dir, true).map_err(err)
}

/// Writes `bytes` to `path` (atomically: a temp file renamed over it); secrets are created owner-only.
pub fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), SecurityError> {
    use std::io::Write as _;
    let err = |source| SecurityError::Write { path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(err)?;
    drop(file);
    if secret {
        restrict(&tmp, false).map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

/// Owner-only permissions. On Windows a new file inherits its folder's ACL: `init` writes into a folder it
/// creates in the operator's profile or one the README says to protect; the agent sets its own ACL (platform).
fn restrict(path: &Path, dir: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(if dir { 0o700 } else { 0o600 }))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, dir);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> InitOptions {
        InitOptions {
            dir: dir.to_owned(),
            hosts: DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
            broker_dir: None,
            resolver_dir: None,
        }
    }

    #[test]
    fn init_writes_every_file_secrets_owner_only_and_refuses_to_run_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("fleet");
        init(&options(&dir), 1_700_000_000).unwrap();
        for spec in FILES {
            let path = dir.join(spec.name);
            assert!(path.is_file(), "{}", spec.name);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, if spec.secret { 0o600 } else { 0o644 }, "{}", spec.name);
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        }
        assert!(matches!(init(&options(&dir), 1_700_000_000), Err(SecurityError::Exists(_))));
    }

    #[test]
    fn the_fleet_reads_back_and_every_creds_file_parses() {
        let tmp = tempfile::tempdir().unwrap();
        init(&options(tmp.path()), 1_700_000_000).unwrap();
        let fleet = read_fleet(&tmp.path().join(ACCOUNT_JWT)).unwrap();
        assert_eq!(read_seed(&tmp.path().join(AGENT_SIGNING_KEY)).unwrap().public_key(), fleet.agent_signing);
        for name in [BACKEND_CREDS, CLI_CREDS, BOOTSTRAP_CREDS, SIMULATOR_CREDS, SYSTEM_CREDS] {
            creds::parse(&std::fs::read_to_string(tmp.path().join(name)).unwrap()).unwrap();
        }
        let include = std::fs::read_to_string(tmp.path().join(SERVER_INCLUDE)).unwrap();
        assert!(include.contains(&fleet.account) && include.contains("type: full") && include.contains("tls {"));
    }

    #[test]
    fn init_makes_the_trust_root_the_backend_key_and_a_first_list_only_the_root_opens() {
        let tmp = tempfile::tempdir().unwrap();
        init(&options(tmp.path()), 1_700_000_000).unwrap();
        for name in [TRUST_ROOT_KEY, BACKEND_SIGNING_KEY] {
            let spec = FILES.iter().find(|f| f.name == name).unwrap();
            assert!(spec.secret, "{name}");
        }
        assert_eq!(FILES.iter().find(|f| f.name == TRUST_ROOT_KEY).unwrap().holders, &[Holder::Offline]);
        assert!(!FILES.iter().find(|f| f.name == TRUST_ROOT_PUB).unwrap().secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for name in [TRUST_ROOT_KEY, BACKEND_SIGNING_KEY] {
                let mode = std::fs::metadata(tmp.path().join(name)).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{name}");
            }
        }
        let root = read_signing_key(&tmp.path().join(TRUST_ROOT_KEY)).unwrap();
        assert_eq!(read_public_key(&tmp.path().join(TRUST_ROOT_PUB)).unwrap(), root.public_key());
        let backend = read_signing_key(&tmp.path().join(BACKEND_SIGNING_KEY)).unwrap();
        assert_ne!(backend.public_key(), root.public_key(), "the backend never holds the root");

        let signed = read_trust_list(&tmp.path().join(TRUST_LIST)).unwrap();
        let list = signed.open(&root.public_key()).unwrap();
        assert_eq!(list.version, 1);
        assert_eq!(list.issued_at.timestamp(), 1_700_000_000);
        assert_eq!(list.keys.len(), 1, "no admin was named");
        let entry = list.find(&backend.public_key()).expect("the backend's key is trusted");
        assert_eq!((entry.name.as_str(), entry.role, &entry.scope), ("backend", Role::Operator, &GroupScope::Fleet));
        assert!(!entry.revoked);
        let impostor = SigningKey::generate();
        assert!(matches!(signed.open(&impostor.public_key()), Err(TrustError::WrongRoot { .. })));
    }

    #[test]
    fn init_trusts_the_first_admin_fleet_wide() {
        let tmp = tempfile::tempdir().unwrap();
        let admin = SigningKey::generate().public_key();
        let first = FirstAdmin { name: Actor::new("alice").unwrap(), key: admin };
        init_with(&options(tmp.path()), Some(&first), 1_700_000_000).unwrap();
        let root = read_public_key(&tmp.path().join(TRUST_ROOT_PUB)).unwrap();
        let list = read_trust_list(&tmp.path().join(TRUST_LIST)).unwrap().open(&root).unwrap();
        assert_eq!(list.keys.len(), 2);
        let entry = list.find(&admin).unwrap();
        assert_eq!((entry.name.as_str(), entry.role, &entry.scope), ("alice", Role::Admin, &GroupScope::Fleet));
    }

    #[test]
    fn hostile_key_and_list_files_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x");
        std::fs::write(&path, "ed25519:garbage").unwrap();
        assert!(matches!(read_signing_key(&path), Err(SecurityError::Key { .. })));
        assert!(matches!(read_public_key(&path), Err(SecurityError::Key { .. })));
        assert!(matches!(read_trust_list(&path), Err(SecurityError::TrustFile { .. })));
        std::fs::write(&path, vec![b'A'; 2 * 1024 * 1024]).unwrap();
        assert!(matches!(read_signing_key(&path), Err(SecurityError::Invalid { .. })));
        assert!(matches!(read_public_key(&path), Err(SecurityError::Invalid { .. })));
        let err = read_trust_list(&path).unwrap_err();
        assert!(
            matches!(&err, SecurityError::TrustFile { source, .. } if matches!(**source, TrustError::TooLarge(_))),
            "{err:?}"
        );
        assert!(matches!(read_trust_list(&tmp.path().join("missing")), Err(SecurityError::Read { .. })));
    }

    #[test]
    fn a_host_that_is_not_a_name_or_address_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("fleet");
        for bad in ["", "a b", "x\"; include evil", &"a".repeat(300)] {
            let mut opts = options(&dir);
            opts.hosts = vec![bad.to_owned()];
            assert!(matches!(init(&opts, 0), Err(SecurityError::Host(_))), "{bad}");
        }
        assert!(!dir.exists());
    }

    #[test]
    fn bad_key_and_account_files_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x");
        std::fs::write(&path, "not a seed").unwrap();
        assert!(matches!(read_seed(&path), Err(SecurityError::Invalid { .. })));
        assert!(matches!(read_fleet(&path), Err(SecurityError::Invalid { .. })));
        assert!(matches!(read_seed(&tmp.path().join("missing")), Err(SecurityError::Read { .. })));
    }
}
