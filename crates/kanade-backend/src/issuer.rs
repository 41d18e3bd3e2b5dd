//! The backend as the fleet's credential issuer (DESIGN.md, Identity): the keys `[security]` names, read and
//! checked when the backend binds; the NATS service that answers enrolment (`enroll.request`) and renewal
//! (`enroll.renew.<pc>`) requests, on every replica in the backend queue group; and the fleet account's revocation
//! list, pushed to the broker after a revocation, at start, again whenever the system connection (re)connects, and
//! every 30 s while what is stored differs from what this replica last pushed. Pushing the same list twice is
//! harmless, so every replica does it. What may be issued is decided in `crate::enrollment`, on the facts
//! `db::enrollment` reads; this module signs, answers, audits and counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::{Client, Message, Subscriber};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use kanade_ops::security as files;
use kanade_shared::config::NatsConfig;
use kanade_shared::enroll::{self, EnrollReply, EnrollRequest, MAX_REQUEST_BYTES, RenewRequest, Token};
use kanade_shared::resources::BACKEND_QUEUE_GROUP;
use kanade_shared::security::jwt::{self, Account, Claims, JwtError, User};
use kanade_shared::security::{self, FleetAccount, creds};
use kanade_shared::{Actor, GroupName, PcId, subject};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::config::SecurityConfig;
use crate::db::{Db, DbError, Enrolled, Issue};

/// How often each replica compares the stored revocations with what it last pushed.
pub const PUSH_EVERY: Duration = Duration::from_secs(30);
/// Requests answered at once per replica: each is a short transaction and an audit record.
const CONCURRENT_ANSWERS: usize = 16;
/// The actor enrolments and renewals are audited as: the agents ask, the backend's enrolment service decides.
pub const ENROLL_ACTOR: &str = "enroll";
/// What an agent is told when this backend has no `[security]`.
pub const NOT_CONFIGURED: &str = "enrolment is not configured on this backend";

type Sign<T> = Box<dyn Fn(&Claims<T>) -> Result<String, JwtError> + Send + Sync>;

/// The keys and settings of an enrolling backend.
pub struct Issuer {
    fleet: FleetAccount,
    /// Signs agent credentials with the agent signing key (whatever it signs can only be an agent).
    sign_agent: Sign<User>,
    /// Signs new versions of the fleet account with the operator signing key.
    sign_account: Sign<Account>,
    credential_ttl: Duration,
    approve: bool,
    /// The system account's connection, which pushes account updates: made at its first use.
    system_nats: NatsConfig,
    system: tokio::sync::OnceCell<Client>,
    /// Set when the system connection (re)connects: the broker may have restarted from an older account.
    reconnected: Arc<AtomicBool>,
    /// The revocation list the broker last took from this replica; held while a push is under way, so this
    /// replica's pushes never overtake each other.
    pushed: tokio::sync::Mutex<Option<BTreeMap<String, i64>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("[security] dir: {0}")]
    Files(#[from] files::SecurityError),
    #[error("[security] dir: `{}` is not a NATS credential: {source}", path.display())]
    Creds {
        path: PathBuf,
        #[source]
        source: creds::CredsError,
    },
    #[error("[security] dir: `{}` is the key `{found}`, but {expected}", path.display())]
    Mismatch { path: PathBuf, found: String, expected: String },
}

/// Why the revocation list did not reach the broker.
#[derive(Debug, thiserror::Error)]
pub enum PushFailure {
    #[error("cannot read the revoked keys")]
    Db(#[from] DbError),
    #[error("cannot sign the fleet account")]
    Sign(#[from] JwtError),
    #[error(transparent)]
    Broker(#[from] files::PushError),
    #[error("the backend is stopping")]
    Stopping,
}

impl Issuer {
    /// Reads and checks the fleet folder: `account.jwt` (the fleet's public keys), `agent-signing.nk` (must be the
    /// account's agent key), `operator-signing.nk` (must be the key that signed `account.jwt`) and `system.creds`
    /// (a credential). The system connection uses `nats`' URLs and CA.
    pub fn open(config: &SecurityConfig, nats: &NatsConfig) -> Result<Self, IssuerError> {
        let path = |name: &str| config.dir.join(name);
        let account_path = path(files::ACCOUNT_JWT);
        let fleet = files::read_fleet(&account_path)?;
        let agent_path = path(files::AGENT_SIGNING_KEY);
        let agent_signing = files::read_seed(&agent_path)?;
        if agent_signing.public_key() != fleet.agent_signing {
            return Err(IssuerError::Mismatch {
                path: agent_path,
                found: agent_signing.public_key(),
                expected: format!("`{}` names `{}` as its agent signing key", files::ACCOUNT_JWT, fleet.agent_signing),
            });
        }
        let operator_path = path(files::OPERATOR_SIGNING_KEY);
        let operator_signing = files::read_seed(&operator_path)?;
        let issuer_of_account = account_issuer(&account_path)?;
        if operator_signing.public_key() != issuer_of_account {
            return Err(IssuerError::Mismatch {
                path: operator_path,
                found: operator_signing.public_key(),
                expected: format!("`{}` was signed by `{issuer_of_account}`", files::ACCOUNT_JWT),
            });
        }
        let system_path = path(files::SYSTEM_CREDS);
        read_creds(&system_path)?;
        let system_nats = NatsConfig { creds: Some(system_path), token: None, ..nats.clone() };
        Ok(Self {
            fleet,
            sign_agent: Box::new(move |claims| jwt::encode(claims, &agent_signing)),
            sign_account: Box::new(move |claims| jwt::encode(claims, &operator_signing)),
            credential_ttl: config.credential_ttl,
            approve: config.approve_enrollments,
            system_nats,
            system: tokio::sync::OnceCell::new(),
            reconnected: Arc::new(AtomicBool::new(true)),
            pushed: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether new PCs wait for an operator's approval.
    pub fn approves(&self) -> bool {
        self.approve
    }

    /// A credential issued at `now`: when it expires.
    pub fn issue_at(&self, now: DateTime<Utc>) -> Issue {
        let ttl = i64::try_from(self.credential_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        Issue { now_ms: now.timestamp_millis(), expires_at_ms: now.timestamp_millis().saturating_add(ttl) }
    }

    /// The credential of `pc` for `key` in `groups`: a user JWT signed by the agent key, valid until the issue's
    /// expiry.
    pub fn sign(&self, pc: &PcId, key: &str, groups: &[GroupName], issue: Issue) -> Result<String, JwtError> {
        let claims = security::agent_claims(
            &self.fleet,
            key,
            pc,
            groups,
            issue.now_ms.div_euclid(1000),
            issue.expires_at_ms.div_euclid(1000),
        );
        (self.sign_agent)(&claims)
    }

    async fn system(&self) -> Result<&Client, files::PushError> {
        self.system
            .get_or_try_init(|| async {
                let reconnected = self.reconnected.clone();
                kanade_ops::nats::options(&self.system_nats, "kanade-backend-system")
                    .retry_on_initial_connect()
                    .max_reconnects(None)
                    .event_callback(move |event| {
                        let reconnected = reconnected.clone();
                        async move {
                            if matches!(event, async_nats::Event::Connected) {
                                reconnected.store(true, Ordering::SeqCst);
                            }
                            tracing::info!(event = %event, "NATS system connection event");
                        }
                    })
                    .connect(self.system_nats.urls.as_slice())
                    .await
                    .map_err(|err| files::PushError::NoAnswer(format!("cannot set up the system connection: {err}")))
            })
            .await
    }

    /// Pushes the fleet account with every stored revocation still in force, if it differs from what this replica
    /// pushed last, or the broker may hold an older account (`always`, or the system connection reconnected since).
    /// True if it pushed.
    pub async fn push_revocations(&self, db: &Db, always: bool) -> Result<bool, PushFailure> {
        let mut pushed = self.pushed.lock().await;
        let now = Utc::now().timestamp();
        let revocations = enroll::account_revocations(&db.revoked_agent_keys().await?, now);
        let stale = self.reconnected.swap(false, Ordering::SeqCst);
        if !always && !stale && pushed.as_ref() == Some(&revocations) {
            return Ok(false);
        }
        let result = async {
            let account = (self.sign_account)(&self.fleet.claims(revocations.clone(), now))?;
            files::push_account(self.system().await?, &account).await?;
            Ok::<(), PushFailure>(())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(revocations = revocations.len(), "fleet account pushed to the broker");
                *pushed = Some(revocations);
                Ok(true)
            }
            Err(err) => {
                // Pushed again at the next look, whatever the list is then.
                self.reconnected.store(true, Ordering::SeqCst);
                Err(err)
            }
        }
    }
}

/// Who signed `account.jwt`.
fn account_issuer(path: &Path) -> Result<String, IssuerError> {
    let invalid = || files::SecurityError::Invalid { path: path.to_owned(), what: "an account JWT" };
    let text =
        std::fs::read_to_string(path).map_err(|source| files::SecurityError::Read { path: path.to_owned(), source })?;
    let claims: Claims<Account> = jwt::decode(text.trim()).map_err(|_| invalid())?;
    Ok(claims.iss)
}

/// Checks that `path` holds a `.creds` file (the connection reads it again at every connect).
fn read_creds(path: &Path) -> Result<(), IssuerError> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).map_err(|source| files::SecurityError::Read { path: path.to_owned(), source })?;
    let mut text = String::new();
    file.take(creds::MAX_CREDS_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|source| files::SecurityError::Read { path: path.to_owned(), source })?;
    creds::parse(&text).map(drop).map_err(|source| IssuerError::Creds { path: path.to_owned(), source })
}

/// Re-pushes the revocation list when it changed, now and every [`PUSH_EVERY`], until `shutdown`.
pub async fn keep_pushed(issuer: Arc<Issuer>, db: Db, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            pushed = issuer.push_revocations(&db, false) => {
                if let Err(err) = pushed {
                    tracing::warn!(
                        error = %err,
                        source = ?std::error::Error::source(&err),
                        "cannot push the fleet account's revocations to the broker; trying again in 30 s"
                    );
                }
            }
            () = shutdown.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(PUSH_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The enrolment service's subscriptions, made when the backend binds so that requests are answered as soon as it
/// serves.
pub struct Requests {
    enrol: Subscriber,
    renew: Subscriber,
}

pub async fn subscribe(client: &Client) -> Result<Requests, async_nats::SubscribeError> {
    let group = BACKEND_QUEUE_GROUP.to_owned();
    Ok(Requests {
        enrol: client.queue_subscribe(subject::ENROLL_REQUEST, group.clone()).await?,
        renew: client.queue_subscribe(subject::ENROLL_RENEW_ALL, group).await?,
    })
}

/// One request, by the subject it came on.
enum Asked {
    Enrol(Message),
    Renew(Message),
}

impl Asked {
    /// The `kind` label of `kanade_enroll_requests_total`.
    fn kind(&self) -> &'static str {
        match self {
            Self::Enrol(_) => "enroll",
            Self::Renew(_) => "renew",
        }
    }

    fn message(&self) -> &Message {
        match self {
            Self::Enrol(message) | Self::Renew(message) => message,
        }
    }
}

/// How a request was answered, as `kanade_enroll_requests_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Issued,
    Pending,
    Refused,
    Malformed,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Pending => "pending",
            Self::Refused => "refused",
            Self::Malformed => "malformed",
            Self::Failed => "failed",
        }
    }
}

/// Answers enrolment and renewal requests until `shutdown`; the answers under way are finished first.
pub async fn answer_requests(state: Arc<AppState>, requests: Requests, shutdown: CancellationToken) {
    let asked = futures::stream::select(requests.enrol.map(Asked::Enrol), requests.renew.map(Asked::Renew));
    asked
        .take_until(shutdown.cancelled_owned())
        .for_each_concurrent(CONCURRENT_ANSWERS, |asked| {
            let state = state.clone();
            async move { answer(&state, asked).await }
        })
        .await;
}

async fn answer(state: &AppState, asked: Asked) {
    let (kind, message) = (asked.kind(), asked.message());
    let Some(reply) = message.reply.clone() else {
        tracing::debug!(subject = %message.subject, "an enrolment request without a reply subject; dropped");
        state.metrics.enroll_request(kind, Outcome::Malformed.as_str());
        return;
    };
    let (answer, outcome) = match &asked {
        Asked::Enrol(message) => enrol(state, &message.payload).await,
        Asked::Renew(message) => renew(state, message.subject.as_str(), &message.payload).await,
    };
    state.metrics.enroll_request(kind, outcome.as_str());
    if let EnrollReply::Refused { reason } = &answer {
        tracing::debug!(kind, %reason, outcome = outcome.as_str(), "request refused");
    }
    match serde_json::to_vec(&answer) {
        Ok(body) => {
            if let Err(err) = state.nats.publish(reply, body.into()).await {
                tracing::warn!(error = %err, kind, "cannot send the answer to an enrolment request");
            }
        }
        Err(err) => tracing::error!(error = %err, "cannot encode an enrolment answer"),
    }
}

fn refused(reason: impl Into<String>, outcome: Outcome) -> (EnrollReply, Outcome) {
    (EnrollReply::Refused { reason: reason.into() }, outcome)
}

/// A request's body: bounded, then JSON of its type. The reason says which.
fn read<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    if payload.len() > MAX_REQUEST_BYTES {
        return Err(format!("the request is {} bytes; the limit is {MAX_REQUEST_BYTES}", payload.len()));
    }
    serde_json::from_slice(payload).map_err(|err| format!("the request is not what this subject takes: {err}"))
}

fn auditor(state: &AppState) -> kanade_ops::audit::Auditor {
    crate::caller::auditor(&state.nats, &Actor::from_login(ENROLL_ACTOR))
}

async fn enrol(state: &AppState, payload: &[u8]) -> (EnrollReply, Outcome) {
    let Some(issuer) = state.issuer.as_deref() else { return refused(NOT_CONFIGURED, Outcome::Refused) };
    let request: EnrollRequest = match read(payload) {
        Ok(request) => request,
        Err(reason) => return refused(reason, Outcome::Malformed),
    };
    let token = match Token::parse(&request.token) {
        Ok(token) => token,
        Err(err) => return refused(err.to_string(), Outcome::Refused),
    };
    let issue = issuer.issue_at(Utc::now());
    let pc = &request.pc_id;
    let enrolled = match state.db.enrol(&request, &token, issuer.approves(), issue).await {
        Ok(enrolled) => enrolled,
        Err(err) => {
            tracing::error!(error = %err, source = ?std::error::Error::source(&err), pc_id = %pc, "cannot enrol");
            return refused("the backend cannot enrol now; ask again later", Outcome::Failed);
        }
    };
    let details = |extra: serde_json::Value| {
        let mut details = serde_json::json!({
            "token_id": token.id, "public_key": request.public_key, "hostname": request.hostname.chars().take(255).collect::<String>(),
        });
        if let (Some(details), Some(extra)) = (details.as_object_mut(), extra.as_object()) {
            details.extend(extra.clone());
        }
        details
    };
    match enrolled {
        Enrolled::Raced => {
            refused("another enrolment of this PC was recorded at the same moment; ask again", Outcome::Refused)
        }
        Enrolled::Refused { refusal, known } => {
            if known {
                let details = details(serde_json::json!({ "reason": refusal.to_string() }));
                auditor(state).record("enroll-refuse", pc.as_str(), details).await;
            }
            refused(refusal.to_string(), Outcome::Refused)
        }
        Enrolled::Pending { first } => {
            if first {
                tracing::info!(pc_id = %pc, token_id = %token.id, "enrolment waits for approval");
                auditor(state).record("enroll-pending", pc.as_str(), details(serde_json::json!({}))).await;
            }
            (EnrollReply::Pending, Outcome::Pending)
        }
        Enrolled::Issue { groups, first } => match issuer.sign(pc, &request.public_key, &groups, issue) {
            Ok(jwt) => {
                let via = if first { "enrolment" } else { "enrolment again" };
                tracing::info!(pc_id = %pc, via, "credential issued");
                let details = details(serde_json::json!({
                    "via": via, "groups": groups, "expires_at": millis(issue.expires_at_ms),
                }));
                auditor(state).record("credential-issue", pc.as_str(), details).await;
                (EnrollReply::Issued { jwt }, Outcome::Issued)
            }
            Err(err) => {
                tracing::error!(error = %err, pc_id = %pc, "cannot sign a credential");
                refused("the backend cannot issue credentials now; ask again later", Outcome::Failed)
            }
        },
    }
}

async fn renew(state: &AppState, subject_name: &str, payload: &[u8]) -> (EnrollReply, Outcome) {
    let Some(issuer) = state.issuer.as_deref() else { return refused(NOT_CONFIGURED, Outcome::Refused) };
    let Some(subject_pc) = crate::enrollment::renewal_subject_pc(subject_name) else {
        return refused("not a renewal subject (`enroll.renew.<pc>`)", Outcome::Malformed);
    };
    let request: RenewRequest = match read(payload) {
        Ok(request) => request,
        Err(reason) => return refused(reason, Outcome::Malformed),
    };
    let issue = issuer.issue_at(Utc::now());
    let renewed = match state.db.renew(subject_pc, &request, issue).await {
        Ok(renewed) => renewed,
        Err(err) => {
            tracing::error!(error = %err, source = ?std::error::Error::source(&err), pc_id = %subject_pc, "cannot renew");
            return refused("the backend cannot renew now; ask again later", Outcome::Failed);
        }
    };
    match renewed {
        Err((refusal, known)) => {
            if known {
                let details = serde_json::json!({
                    "via": "renewal", "public_key": request.public_key, "reason": refusal.to_string(),
                });
                auditor(state).record("enroll-refuse", subject_pc, details).await;
            }
            refused(refusal.to_string(), Outcome::Refused)
        }
        Ok(groups) => match issuer.sign(&request.pc_id, &request.public_key, &groups, issue) {
            Ok(jwt) => {
                tracing::debug!(pc_id = %request.pc_id, "credential renewed");
                let details = serde_json::json!({
                    "via": "renewal", "public_key": request.public_key, "groups": groups,
                    "expires_at": millis(issue.expires_at_ms),
                });
                auditor(state).record("credential-issue", request.pc_id.as_str(), details).await;
                (EnrollReply::Issued { jwt }, Outcome::Issued)
            }
            Err(err) => {
                tracing::error!(error = %err, pc_id = %request.pc_id, "cannot sign a credential");
                refused("the backend cannot issue credentials now; ask again later", Outcome::Failed)
            }
        },
    }
}

fn millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}
