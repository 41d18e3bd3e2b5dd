//! The agent's own NATS credential (DESIGN.md, Identity): enrolment when it has none, renewal halfway through its
//! life, and what it says — which PC, which groups, until when.
//!
//! Enrolment: the agent makes its own key pair (kept in `agent.nk` until the credential arrives, so a restart while
//! an operator has yet to approve asks again with the same key), connects with the bootstrap credential, which may
//! only ask, and sends its token. The backend answers with a user JWT for that key and this PC only; the agent
//! writes it with its seed as a standard `.creds` file, readable by the agent's account only, and never needs the
//! token again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::Client;
use kanade_shared::config::AgentConfig;
use kanade_shared::enroll::{EnrollReply, EnrollRequest, RenewRequest};
use kanade_shared::security::{self, creds, jwt, permissions};
use kanade_shared::{GroupName, PcId, subject};
use nkeys::KeyPair;
use tokio_util::sync::CancellationToken;

/// The key of an enrolment in progress, in the data dir.
pub const PENDING_KEY_FILE: &str = "agent.nk";

/// How long the agent waits for the backend's answer to one request.
const ANSWER_PATIENCE: Duration = Duration::from_secs(10);
/// How often an agent waiting for an operator's approval asks again.
const PENDING_POLL: Duration = Duration::from_secs(30);
/// How long after a refusal the agent asks again (an operator may revoke the old PC or issue a new token).
const REFUSED_RETRY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the credential `{}`: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write `{}`: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the credential `{}` is not valid: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
    #[error("the credential `{}` is for `{found}`, but this agent is `{expected}`", path.display())]
    OtherPc { path: PathBuf, found: String, expected: String },
    #[error("the backend sent a credential that is not for this agent's key and PC: {0}")]
    WrongIssue(String),
    #[error("stopped before enrolment finished")]
    Cancelled,
    #[error("cannot connect with the bootstrap credential: {0}")]
    Bootstrap(String),
}

/// What the agent's credential says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub pc: String,
    pub groups: Vec<GroupName>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; `None`: it does not expire.
    pub expires_at: Option<i64>,
    pub public_key: String,
}

impl Held {
    fn from_claims(claims: &jwt::Claims<jwt::User>) -> Self {
        Self {
            pc: claims.name.clone(),
            groups: security::groups_of(&claims.nats.tags),
            issued_at: claims.iat,
            expires_at: claims.exp,
            public_key: claims.sub.clone(),
        }
    }
}

/// Reads the credential at `path`: its JWT's claims, and the seed it signs with.
pub fn read(path: &Path) -> Result<(Held, creds::Creds), CredentialError> {
    let text = read_bounded(path)?;
    let parsed =
        creds::parse(&text).map_err(|err| CredentialError::Invalid { path: path.to_owned(), why: err.to_string() })?;
    let claims: jwt::Claims<jwt::User> = jwt::decode(&parsed.jwt)
        .map_err(|err| CredentialError::Invalid { path: path.to_owned(), why: err.to_string() })?;
    Ok((Held::from_claims(&claims), parsed))
}

/// Reads the credential and checks it names `pc`.
pub fn read_for(path: &Path, pc: &PcId) -> Result<Held, CredentialError> {
    let (held, _) = read(path)?;
    if held.pc != pc.as_str() {
        return Err(CredentialError::OtherPc { path: path.to_owned(), found: held.pc, expected: pc.to_string() });
    }
    Ok(held)
}

fn read_bounded(path: &Path) -> Result<String, CredentialError> {
    use std::io::Read as _;
    let err = |source| CredentialError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut text = String::new();
    file.take(creds::MAX_CREDS_BYTES as u64 + 1).read_to_string(&mut text).map_err(err)?;
    Ok(text)
}

/// How long until the agent should ask for a new credential (zero: now); `None` when it never expires.
pub fn renew_in(held: &Held, now: i64) -> Option<Duration> {
    let expires_at = held.expires_at?;
    let at = kanade_shared::enroll::renew_at(held.issued_at, expires_at);
    Some(Duration::from_secs(u64::try_from(at.saturating_sub(now)).unwrap_or(0)))
}

/// Writes `jwt` and `seed` as a `.creds` file at `path`, readable by the agent's account only, atomically.
fn write_creds(path: &Path, jwt: &str, seed: &str) -> Result<(), CredentialError> {
    crate::platform::write_private(path, creds::format(jwt, seed).as_bytes())
        .map_err(|source| CredentialError::Write { path: path.to_owned(), source })
}

/// Checks that an issued JWT is for `key` and `pc`, and returns what it says.
fn check_issued(jwt_text: &str, key: &str, pc: &PcId) -> Result<Held, CredentialError> {
    let claims: jwt::Claims<jwt::User> =
        jwt::decode(jwt_text).map_err(|err| CredentialError::WrongIssue(err.to_string()))?;
    if claims.sub != key || claims.name != pc.as_str() {
        return Err(CredentialError::WrongIssue(format!("it names `{}` with key `{}`", claims.name, claims.sub)));
    }
    Ok(Held::from_claims(&claims))
}

/// The key of an enrolment in progress: the one saved in `data_dir`, else a new one, saved before it is used.
fn pending_key(data_dir: &Path) -> Result<KeyPair, CredentialError> {
    let path = data_dir.join(PENDING_KEY_FILE);
    if let Ok(text) = read_bounded(&path)
        && let Ok(key) = KeyPair::from_seed(text.trim())
        && matches!(key.key_pair_type(), nkeys::KeyPairType::User)
    {
        return Ok(key);
    }
    let key = KeyPair::new_user();
    let seed = key.seed().map_err(|err| CredentialError::Invalid { path: path.clone(), why: err.to_string() })?;
    crate::platform::write_private(&path, seed.as_bytes())
        .map_err(|source| CredentialError::Write { path: path.clone(), source })?;
    Ok(key)
}

/// Enrols this agent: asks with `token` over a bootstrap connection until the backend issues a credential, which
/// is then written to `creds_path`. Waits (and asks again) while an operator has to approve; after a refusal it
/// logs why and asks again later. Returns what the credential says.
pub async fn enroll(
    config: &AgentConfig,
    token: &str,
    bootstrap: &Path,
    creds_path: &Path,
    data_dir: &Path,
    shutdown: &CancellationToken,
) -> Result<Held, CredentialError> {
    let key = pending_key(data_dir)?;
    let seed = key
        .seed()
        .map_err(|err| CredentialError::Invalid { path: data_dir.join(PENDING_KEY_FILE), why: err.to_string() })?;
    let client = bootstrap_client(config, bootstrap).await?;
    let request = EnrollRequest {
        token: token.to_owned(),
        pc_id: config.pc_id.clone(),
        public_key: key.public_key(),
        hostname: config.hostname.clone(),
        os: std::env::consts::OS.to_owned(),
        groups: config.groups.clone(),
    };
    let body = serde_json::to_vec(&request).unwrap_or_default();
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = match ask(&client, subject::ENROLL_REQUEST.to_owned(), body.clone()).await {
            Ok(EnrollReply::Issued { jwt }) => {
                let held = check_issued(&jwt, &key.public_key(), &config.pc_id)?;
                write_creds(creds_path, &jwt, &seed)?;
                let _ = std::fs::remove_file(data_dir.join(PENDING_KEY_FILE));
                tracing::info!(pc = %config.pc_id, groups = ?held.groups, "enrolled: this agent has its own credential now");
                let _ = client.drain().await;
                return Ok(held);
            }
            Ok(EnrollReply::Pending) => {
                tracing::info!(pc = %config.pc_id, "enrolment waits for an operator's approval (`kanade enroll approve`)");
                PENDING_POLL
            }
            Ok(EnrollReply::Refused { reason }) => {
                tracing::error!(pc = %config.pc_id, reason, retry_in = ?REFUSED_RETRY, "enrolment refused");
                REFUSED_RETRY
            }
            Err(why) => {
                tracing::warn!(error = %why, retry_in = ?backoff, "cannot reach the backend to enrol yet");
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return Err(CredentialError::Cancelled),
        }
    }
}

/// Asks for a new credential over the agent's own connection and writes it over the old one. The caller then
/// reconnects so the broker sees the new one (and its groups).
pub async fn renew(client: &Client, pc: &PcId, creds_path: &Path) -> Result<Held, String> {
    let (held, current) = read(creds_path).map_err(|err| err.to_string())?;
    let seed = current.key.seed().map_err(|err| err.to_string())?;
    let request = RenewRequest { pc_id: pc.clone(), public_key: held.public_key.clone() };
    let body = serde_json::to_vec(&request).unwrap_or_default();
    match ask(client, subject::enroll_renew(pc), body).await? {
        EnrollReply::Issued { jwt } => {
            let renewed = check_issued(&jwt, &held.public_key, pc).map_err(|err| err.to_string())?;
            write_creds(creds_path, &jwt, &seed).map_err(|err| err.to_string())?;
            Ok(renewed)
        }
        EnrollReply::Pending => Err("the backend says the enrolment is pending".to_owned()),
        EnrollReply::Refused { reason } => Err(format!("renewal refused: {reason}")),
    }
}

/// One request to the backend and its parsed answer.
async fn ask(client: &Client, subject: String, body: Vec<u8>) -> Result<EnrollReply, String> {
    let reply = tokio::time::timeout(ANSWER_PATIENCE, client.request(subject, body.into()))
        .await
        .map_err(|_| format!("no answer within {ANSWER_PATIENCE:?}"))?
        .map_err(|err| err.to_string())?;
    serde_json::from_slice(&reply.payload).map_err(|err| format!("the backend's answer is not one: {err}"))
}

/// A connection that may only ask to enrol: the bootstrap credential, the shared enrolment inbox, TLS pinned to
/// the fleet's CA.
async fn bootstrap_client(config: &AgentConfig, bootstrap: &Path) -> Result<Client, CredentialError> {
    let mut options = crate::connection::with_creds_file(bootstrap.to_owned())
        .name(format!("kanade-agent {} (enrolling)", config.pc_id))
        .custom_inbox_prefix(permissions::ENROLL_INBOX_PREFIX)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(crate::connection::reconnect_delay)
        .connection_timeout(Duration::from_secs(5));
    if let Some(ca) = &config.nats.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    options.connect(config.nats.urls.as_slice()).await.map_err(|err| CredentialError::Bootstrap(err.to_string()))
}

/// The renewal of the agent's credential, as the main loop drives it: when the next one is due, one at a time, and
/// what a finished one changed.
pub struct Renewal {
    path: PathBuf,
    pc: PcId,
    held: Held,
    in_flight: bool,
    failures: u32,
}

/// What a finished renewal means for the agent.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewed {
    /// A new credential is on disk: reconnect so the broker sees it. `regroup`: its groups differ from the ones the
    /// agent subscribed for.
    Fresh { regroup: bool },
    /// It failed; the next try is due in `retry_in`.
    Failed { retry_in: Duration },
}

/// The longest wait between two tries after failures.
const MAX_RETRY: Duration = Duration::from_secs(30 * 60);

impl Renewal {
    pub fn new(path: PathBuf, pc: PcId, held: Held) -> Self {
        Self { path, pc, held, in_flight: false, failures: 0 }
    }

    /// How long until the next try: halfway through the credential's life, or after a failure a backoff of one
    /// minute doubling to 30, but never later than the credential's expiry.
    pub fn wait(&self, now: i64) -> Duration {
        let due = renew_in(&self.held, now).unwrap_or(Duration::from_secs(365 * 24 * 3600));
        if self.failures == 0 {
            return due;
        }
        let backoff = Duration::from_secs(60).saturating_mul(1 << self.failures.min(5)).min(MAX_RETRY);
        let left = self
            .held
            .expires_at
            .map_or(backoff, |exp| Duration::from_secs(u64::try_from(exp.saturating_sub(now)).unwrap_or(0)));
        due.max(backoff.min(left))
    }

    /// The renewal to run now, unless one is already running.
    pub fn start(
        &mut self,
        client: &Client,
    ) -> Option<impl std::future::Future<Output = Result<Held, String>> + use<>> {
        if self.in_flight {
            return None;
        }
        self.in_flight = true;
        let (client, pc, path) = (client.clone(), self.pc.clone(), self.path.clone());
        Some(async move { renew(&client, &pc, &path).await })
    }

    /// Takes in what a renewal returned.
    pub fn finished(&mut self, result: Result<Held, String>, now: i64) -> Renewed {
        self.in_flight = false;
        match result {
            Ok(held) => {
                let regroup = held.groups != self.held.groups;
                tracing::info!(expires_at = ?held.expires_at, groups = ?held.groups, "credential renewed");
                self.held = held;
                self.failures = 0;
                Renewed::Fresh { regroup }
            }
            Err(why) => {
                self.failures = self.failures.saturating_add(1);
                let retry_in = self.wait(now);
                tracing::warn!(error = %why, ?retry_in, expires_at = ?self.held.expires_at, "cannot renew the credential yet");
                Renewed::Failed { retry_in }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(issued_at: i64, expires_at: Option<i64>) -> Held {
        Held { pc: "pc-1".into(), groups: vec![], issued_at, expires_at, public_key: "U".into() }
    }

    #[test]
    fn renewal_comes_halfway_and_at_once_when_late() {
        assert_eq!(renew_in(&held(1_000, Some(3_000)), 1_500), Some(Duration::from_secs(500)));
        assert_eq!(renew_in(&held(1_000, Some(3_000)), 2_500), Some(Duration::ZERO));
        assert_eq!(renew_in(&held(1_000, None), 2_500), None);
    }

    #[test]
    fn after_a_failure_renewal_backs_off_but_never_past_expiry() {
        let pc = PcId::new("pc-1").unwrap();
        let mut renewal = Renewal::new("x".into(), pc, held(1_000, Some(3_000)));
        assert_eq!(renewal.wait(2_000), Duration::ZERO);
        assert_eq!(renewal.finished(Err("down".into()), 2_000), Renewed::Failed { retry_in: Duration::from_secs(120) });
        for _ in 0..10 {
            renewal.finished(Err("down".into()), 2_000);
        }
        assert_eq!(renewal.wait(2_000), Duration::from_secs(1_000), "capped by what is left of the credential");
        let regrouped = Held { groups: vec![GroupName::new("lab").unwrap()], ..held(2_000, Some(4_000)) };
        assert_eq!(renewal.finished(Ok(regrouped), 2_000), Renewed::Fresh { regroup: true });
        assert_eq!(renewal.wait(2_000), Duration::from_secs(1_000));
    }

    #[test]
    fn an_issued_jwt_must_name_this_key_and_pc() {
        let account = KeyPair::new_account();
        let user = KeyPair::new_user();
        let pc = PcId::new("pc-1").unwrap();
        let fleet = security::FleetAccount {
            account: account.public_key(),
            agent_signing: account.public_key(),
            user_signing: account.public_key(),
        };
        let token =
            jwt::encode(&security::agent_claims(&fleet, &user.public_key(), &pc, &[], 10, 20), &account).unwrap();
        assert!(check_issued(&token, &user.public_key(), &pc).is_ok());
        assert!(check_issued(&token, &KeyPair::new_user().public_key(), &pc).is_err());
        assert!(check_issued(&token, &user.public_key(), &PcId::new("pc-2").unwrap()).is_err());
        assert!(check_issued("not a jwt", &user.public_key(), &pc).is_err());
    }

    #[test]
    fn a_pending_key_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = pending_key(dir.path()).unwrap();
        let again = pending_key(dir.path()).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        std::fs::write(dir.path().join(PENDING_KEY_FILE), "garbage").unwrap();
        assert_ne!(pending_key(dir.path()).unwrap().public_key(), first.public_key());
    }
}
