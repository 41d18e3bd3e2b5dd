//! Enrolment over a real nats-server in operator mode: a test's own key pair asks with the real bootstrap
//! credential and a token from the API, and the credential it gets connects to the broker as that PC only; expired,
//! used-up, revoked and malformed tokens, oversized and non-JSON requests are refused with reasons; two backends on
//! one PostgreSQL database never spend a use twice; approval holds a PC at `pending`; renewal, revocation (the
//! broker closes the connection, refuses it afterwards, and a broker that missed the revocation is told once it is
//! back), group changes (the agent is told to renew, and the renewal carries them), and hostile HTTP input.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use kanade_backend::config::SecurityConfig;
use kanade_ops::security as files;
use kanade_shared::config::NatsConfig;
use kanade_shared::enroll::{EnrollReply, EnrollRequest, RenewRequest, Token};
use kanade_shared::security::{self, creds, jwt, permissions};
use kanade_shared::{GroupName, PcId, subject};
use kanade_testkit::{NatsServer, TestBackend, connect, eventually, fleet, init_logging};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row as _;

mod support;

use support::postgres;

const PATIENCE: Duration = Duration::from_secs(30);

/// A key pair the test made, as a PC makes its own: the public key it asks with, the seed it keeps.
struct Key {
    public: String,
    seed: String,
}

/// A fresh user key pair (made by nkeys through `security::issue_creds`, which draws a new user key).
fn new_key() -> Key {
    let signer = files::read_seed(&fleet().file(files::USER_SIGNING_KEY)).expect("the test fleet's user key");
    let (key, _) = security::issue_creds(&signer, |user| {
        security::user_claims(user, "throwaway", jwt::UserLimits::default(), "", 0, None)
    })
    .expect("a key");
    Key { public: key.public_key(), seed: key.seed().expect("seed") }
}

fn enrolling(approve: bool) -> SecurityConfig {
    SecurityConfig { approve_enrollments: approve, ..SecurityConfig::new(fleet().dir()) }
}

/// A broker and a backend with enrolment on over it.
async fn started(approve: bool) -> (NatsServer, String, TestBackend) {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = start_backend(&url, None, approve).await;
    (nats, url, backend)
}

async fn start_backend(url: &str, database_url: Option<String>, approve: bool) -> TestBackend {
    let security = enrolling(approve);
    TestBackend::start_tuned(
        url,
        tempfile::tempdir().unwrap(),
        database_url,
        |c| c,
        |b| b.with_security(&security).expect("enrolment on"),
    )
    .await
}

/// A connection as an agent's installer makes one: the bootstrap credential, which may only ask.
async fn bootstrap(url: &str) -> Client {
    let nats = NatsConfig::secure(vec![url.to_owned()], Some(fleet().file(files::BOOTSTRAP_CREDS)), fleet().ca());
    kanade_ops::nats::options(&nats, "test-bootstrap")
        .custom_inbox_prefix(permissions::ENROLL_INBOX_PREFIX)
        .connect(url)
        .await
        .expect("connect with the bootstrap credential")
}

/// Sends `body` to `subject` and reads the answer; retried while no backend listens yet.
async fn ask_raw(client: &Client, subject: String, body: Vec<u8>) -> EnrollReply {
    let reply = eventually("a backend answers", PATIENCE, || {
        let (client, subject, body) = (client.clone(), subject.clone(), body.clone());
        async move { client.request(subject, body.into()).await.ok() }
    })
    .await;
    serde_json::from_slice(&reply.payload).unwrap_or_else(|err| panic!("not an answer ({err}): {:?}", reply.payload))
}

async fn ask(client: &Client, request: &EnrollRequest) -> EnrollReply {
    ask_raw(client, subject::ENROLL_REQUEST.to_owned(), serde_json::to_vec(request).unwrap()).await
}

fn request(token: &str, pc: &str, key: &Key, groups: &[&str]) -> EnrollRequest {
    EnrollRequest {
        token: token.to_owned(),
        pc_id: PcId::new(pc).unwrap(),
        public_key: key.public.clone(),
        hostname: format!("{}.test", pc.to_uppercase()),
        os: "linux".into(),
        groups: groups.iter().map(|g| GroupName::new(*g).unwrap()).collect(),
    }
}

fn issued(reply: EnrollReply) -> jwt::Claims<jwt::User> {
    match reply {
        EnrollReply::Issued { jwt } => jwt::decode(&jwt).expect("a valid user JWT"),
        other => panic!("not issued: {other:?}"),
    }
}

fn jwt_of(reply: &EnrollReply) -> String {
    match reply {
        EnrollReply::Issued { jwt } => jwt.clone(),
        other => panic!("not issued: {other:?}"),
    }
}

fn refusal(reply: EnrollReply) -> String {
    match reply {
        EnrollReply::Refused { reason } => reason,
        other => panic!("not refused: {other:?}"),
    }
}

/// `POST /api/enroll/tokens`; returns the token text and the view.
async fn create_token(backend: &TestBackend, body: Value) -> (String, Value) {
    let (status, view) = backend.post("/api/enroll/tokens", &body).await;
    assert_eq!(status, 201, "{view}");
    (view["token"].as_str().expect("the token").to_owned(), view)
}

/// Everything a connection's event callback saw, as text.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    fn saw(&self, words: &[&str]) -> bool {
        let seen = self.0.lock().unwrap();
        seen.iter().any(|e| words.iter().all(|w| e.to_lowercase().contains(&w.to_lowercase())))
    }
}

/// The issued credential and its seed as a `.creds` file in `dir`.
fn creds_file(dir: &Path, jwt: &str, key: &Key) -> PathBuf {
    let path = dir.join("agent.creds");
    std::fs::write(&path, creds::format(jwt, &key.seed)).unwrap();
    path
}

fn agent_options(url: &str, pc: &str, creds: &Path, events: &Events) -> async_nats::ConnectOptions {
    let nats = NatsConfig::secure(vec![url.to_owned()], Some(creds.to_owned()), fleet().ca());
    let events = events.clone();
    kanade_ops::nats::options(&nats, "test-agent")
        .custom_inbox_prefix(permissions::agent_inbox_prefix(pc))
        .event_callback(move |event| {
            let events = events.clone();
            async move { events.0.lock().unwrap().push(event.to_string()) }
        })
}

/// Connects as the agent the credential names.
async fn connect_as(url: &str, pc: &str, creds: &Path, events: &Events) -> Client {
    agent_options(url, pc, creds, events).connect(url).await.expect("connect with the issued credential")
}

async fn renew(client: &Client, pc: &str, key: &Key) -> EnrollReply {
    let request = RenewRequest { pc_id: PcId::new(pc).unwrap(), public_key: key.public.clone() };
    ask_raw(client, subject::enroll_renew(&PcId::new(pc).unwrap()), serde_json::to_vec(&request).unwrap()).await
}

async fn metrics(backend: &TestBackend) -> String {
    reqwest::Client::new()
        .get(format!("{}/metrics", backend.url()))
        .bearer_auth(kanade_testkit::TEST_TOKEN)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

fn counter(metrics: &str, labels: &str) -> u64 {
    let prefix = format!("kanade_enroll_requests_total{{{labels}}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn assert_error(status: u16, body: &Value, wanted: u16, code: &str) {
    assert_eq!((status, body["error"]["code"].as_str()), (wanted, Some(code)), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn a_token_enrols_a_pc_whose_credential_acts_as_that_pc_only_and_renews() {
    let (_nats, url, backend) = started(false).await;
    let (token, view) = create_token(&backend, json!({ "groups": ["office"], "uses": 2 })).await;
    assert!(token.starts_with("kanade_enroll_"), "{token}");
    assert_eq!(
        (view["uses"].as_u64(), view["uses_left"].as_u64(), view["state"].as_str()),
        (Some(2), Some(2), Some("active"))
    );
    let id = view["id"].as_str().unwrap().to_owned();

    let boot = bootstrap(&url).await;
    let key = new_key();
    let reply = ask(&boot, &request(&token, "pc-1", &key, &["lab"])).await;
    let jwt = jwt_of(&reply);
    let claims = issued(reply);
    assert_eq!((claims.name.as_str(), claims.sub.as_str()), ("pc-1", key.public.as_str()));
    assert_eq!(claims.nats.tags, ["group:office"], "the token's groups, not what the agent asked for");
    assert_eq!(claims.iss, fleet().account().agent_signing, "signed by the agent key");
    let ttl = claims.exp.unwrap() - claims.iat;
    assert_eq!(ttl, 7 * 24 * 3600, "the default credential lifetime");

    // The same PC and key again (its answer was lost): issued again, the token not used again.
    issued(ask(&boot, &request(&token, "pc-1", &key, &[])).await);
    let (_, tokens) = backend.get("/api/enroll/tokens").await;
    let listed = &tokens["items"][0];
    assert_eq!((listed["id"].as_str(), listed["uses_left"].as_u64()), (Some(id.as_str()), Some(1)), "{tokens}");
    assert_eq!(listed["enrolled"], json!(["pc-1"]));
    assert!(listed.get("token").is_none() && !tokens.to_string().contains(&token), "the secret is never shown again");

    // The credential connects as pc-1: its own heartbeat goes through, another PC's is refused by the broker.
    let watcher = kanade_testkit::client(&url).await;
    let mut heartbeats = watcher.subscribe("heartbeat.>").await.unwrap();
    watcher.flush().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = creds_file(dir.path(), &jwt, &key);
    let events = Events::default();
    let agent = connect_as(&url, "pc-1", &creds, &events).await;
    agent.publish("heartbeat.pc-2", "forged".into()).await.unwrap();
    agent.publish("heartbeat.pc-1", "mine".into()).await.unwrap();
    agent.flush().await.unwrap();
    let first = tokio::time::timeout(PATIENCE, futures::StreamExt::next(&mut heartbeats)).await.unwrap().unwrap();
    assert_eq!(first.subject.as_str(), "heartbeat.pc-1", "the forged heartbeat never reaches anyone");
    eventually("the broker refuses another PC's heartbeat", PATIENCE, || async {
        events.saw(&["permissions violation", "heartbeat.pc-2"]).then_some(())
    })
    .await;

    // Renewal over its own connection: a later expiry, the same PC and groups.
    let renewed = eventually("a renewal issues a later expiry", PATIENCE, || {
        let (agent, key, claims) = (agent.clone(), &key, &claims);
        async move {
            let renewed = issued(renew(&agent, "pc-1", key).await);
            (renewed.exp > claims.exp).then_some(renewed)
        }
    })
    .await;
    assert_eq!((renewed.name.as_str(), renewed.nats.tags.clone()), ("pc-1", vec!["group:office".to_owned()]));

    let (status, enrollments) = backend.get("/api/enrollments?status=active").await;
    assert_eq!(status, 200, "{enrollments}");
    let row = &enrollments["items"][0];
    assert_eq!((row["pc_id"].as_str(), row["public_key"].as_str()), (Some("pc-1"), Some(key.public.as_str())));
    assert_eq!((row["hostname"].as_str(), row["token_id"].as_str()), (Some("PC-1.test"), Some(id.as_str())));
    let metrics = metrics(&backend).await;
    assert!(counter(&metrics, "kind=\"enroll\",outcome=\"issued\"") >= 2, "{metrics}");
    assert!(counter(&metrics, "kind=\"renew\",outcome=\"issued\"") >= 1, "{metrics}");
}

#[tokio::test]
async fn expired_used_up_revoked_and_malformed_tokens_and_requests_are_refused_with_reasons() {
    let (_nats, url, backend) = started(false).await;
    let boot = bootstrap(&url).await;

    let (one_use, _) = create_token(&backend, json!({})).await;
    issued(ask(&boot, &request(&one_use, "pc-a", &new_key(), &[])).await);
    let used_up = refusal(ask(&boot, &request(&one_use, "pc-b", &new_key(), &[])).await);
    assert!(used_up.contains("no uses left"), "{used_up}");

    let (expired, view) = create_token(&backend, json!({ "uses": 5 })).await;
    sqlx::query("UPDATE enroll_tokens SET expires_at_ms = 0 WHERE id = $1")
        .bind(view["id"].as_str().unwrap())
        .execute(backend.db.pool())
        .await
        .unwrap();
    let reason = refusal(ask(&boot, &request(&expired, "pc-c", &new_key(), &[])).await);
    assert!(reason.contains("expired"), "{reason}");

    let (revoked, view) = create_token(&backend, json!({ "uses": 5 })).await;
    let id = view["id"].as_str().unwrap();
    let (status, body) =
        backend.send(Method::DELETE, &format!("/api/enroll/tokens/{id}"), kanade_testkit::TEST_TOKEN, None).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("revoked")), "{body}");
    let reason = refusal(ask(&boot, &request(&revoked, "pc-d", &new_key(), &[])).await);
    assert!(reason.contains("revoked"), "{reason}");

    // A token of the right shape with the wrong secret, and texts that are not tokens at all.
    let (good, _) = create_token(&backend, json!({ "uses": 5 })).await;
    let parsed = Token::parse(&good).unwrap();
    let wrong = Token { secret: "a".repeat(parsed.secret.len()), ..parsed }.to_string();
    let reason = refusal(ask(&boot, &request(&wrong, "pc-e", &new_key(), &[])).await);
    assert!(reason.contains("unknown or its secret does not match"), "{reason}");
    for bad in ["", "kanade_enroll_", "hello", &good.to_uppercase()] {
        let reason = refusal(ask(&boot, &request(bad, "pc-e", &new_key(), &[])).await);
        assert!(reason.contains("looks like"), "{bad}: {reason}");
    }
    let reason = refusal(
        ask(&boot, &EnrollRequest { public_key: "not-a-key".into(), ..request(&good, "pc-e", &new_key(), &[]) }).await,
    );
    assert!(reason.contains("not a user public key"), "{reason}");

    // Oversized, not JSON, a pc id that is not one: refused, counted, and the service goes on.
    let mut big = serde_json::to_value(request(&good, "pc-f", &new_key(), &[])).unwrap();
    big["hostname"] = json!("x".repeat(9 * 1024));
    let reason = refusal(ask_raw(&boot, subject::ENROLL_REQUEST.into(), serde_json::to_vec(&big).unwrap()).await);
    assert!(reason.contains("the limit is 8192"), "{reason}");
    let reason = refusal(ask_raw(&boot, subject::ENROLL_REQUEST.into(), b"{not json".to_vec()).await);
    assert!(reason.contains("not what this subject takes"), "{reason}");
    let mut bad_pc = serde_json::to_value(request(&good, "pc-f", &new_key(), &[])).unwrap();
    bad_pc["pc_id"] = json!("PC F");
    let reason = refusal(ask_raw(&boot, subject::ENROLL_REQUEST.into(), serde_json::to_vec(&bad_pc).unwrap()).await);
    assert!(reason.contains("pc_id `PC F`"), "{reason}");
    issued(ask(&boot, &request(&good, "pc-f", &new_key(), &[])).await);
    let metrics = metrics(&backend).await;
    assert!(counter(&metrics, "kind=\"enroll\",outcome=\"malformed\"") >= 3, "{metrics}");
    assert!(counter(&metrics, "kind=\"enroll\",outcome=\"refused\"") >= 8, "{metrics}");

    // A known PC's refusal is audited; the token never is written anywhere.
    let reason = refusal(ask(&boot, &request(&good, "pc-a", &new_key(), &[])).await);
    assert!(reason.contains("already enrolled with another key"), "{reason}");
    let audit = eventually("the refusal is audited", PATIENCE, || async {
        let (_, page) = backend.get("/api/audit?actor=enroll&action=enroll-refuse").await;
        (page["items"].as_array().is_some_and(|i| !i.is_empty())).then_some(page)
    })
    .await;
    assert_eq!(audit["items"][0]["target"], "pc-a", "{audit}");
    let (_, all) = backend.get("/api/audit?limit=1000").await;
    assert!(!all.to_string().contains(&Token::parse(&good).unwrap().secret), "a secret in the audit trail");
}

#[tokio::test]
async fn without_security_enrolment_is_refused_and_its_routes_answer_503() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let boot = bootstrap(&url).await;
    let token = Token::from_random(&[1; 30]).to_string();
    let reason = refusal(ask(&boot, &request(&token, "pc-1", &new_key(), &[])).await);
    assert_eq!(reason, kanade_backend::issuer::NOT_CONFIGURED);
    let (status, body) = backend.get("/api/enroll/tokens").await;
    assert_error(status, &body, 503, "security_not_configured");
    let (status, body) = backend.post("/api/agents/pc-1/revoke", &json!({})).await;
    assert_error(status, &body, 503, "security_not_configured");
}

#[tokio::test]
async fn a_wrong_fleet_folder_fails_the_backend_at_start_naming_the_file() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let bound = |dir: PathBuf| {
        let url = url.clone();
        async move {
            let data = tempfile::tempdir().unwrap();
            let bound = kanade_backend::Backend::bind(kanade_testkit::backend_config(&url, data.path(), None))
                .await
                .expect("binds");
            match bound.with_security(&SecurityConfig::new(dir)) {
                Ok(_) => panic!("a wrong fleet folder was taken"),
                Err(err) => format!("{err:#}"),
            }
        }
    };
    let empty = tempfile::tempdir().unwrap();
    let err = bound(empty.path().to_owned()).await;
    assert!(err.contains("account.jwt"), "{err}");
    // A copy of the fleet with another key in place of the agent signing key.
    let copy = tempfile::tempdir().unwrap();
    for name in [files::ACCOUNT_JWT, files::OPERATOR_SIGNING_KEY, files::SYSTEM_CREDS] {
        std::fs::copy(fleet().file(name), copy.path().join(name)).unwrap();
    }
    std::fs::copy(fleet().file(files::USER_SIGNING_KEY), copy.path().join(files::AGENT_SIGNING_KEY)).unwrap();
    let err = bound(copy.path().to_owned()).await;
    assert!(err.contains("agent-signing.nk") && err.contains("agent signing key"), "{err}");
    std::fs::copy(fleet().file(files::AGENT_SIGNING_KEY), copy.path().join(files::AGENT_SIGNING_KEY)).unwrap();
    std::fs::write(copy.path().join(files::SYSTEM_CREDS), "not a credential").unwrap();
    let err = bound(copy.path().to_owned()).await;
    assert!(err.contains("system.creds"), "{err}");
}

#[tokio::test]
async fn approval_holds_a_pc_at_pending_until_an_operator_approves() {
    let (_nats, url, backend) = started(true).await;
    let (token, _) = create_token(&backend, json!({ "uses": 1 })).await;
    let boot = bootstrap(&url).await;
    let key = new_key();
    assert_eq!(ask(&boot, &request(&token, "pc-1", &key, &["lab"])).await, EnrollReply::Pending);
    assert_eq!(ask(&boot, &request(&token, "pc-1", &key, &["lab"])).await, EnrollReply::Pending, "asking again");
    let other = refusal(ask(&boot, &request(&token, "pc-1", &new_key(), &[])).await);
    assert!(other.contains("waits for approval"), "{other}");

    let (status, pending) = backend.get("/api/enrollments?status=pending").await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["items"][0]["pc_id"], "pc-1", "{pending}");
    assert_eq!(pending["items"][0]["groups"], json!(["lab"]), "{pending}");
    let (status, body) = backend.post("/api/enrollments/pc-2/approve", &json!({})).await;
    assert_error(status, &body, 404, "enrollment_not_found");
    let (status, body) = backend.post("/api/enrollments/pc-1/approve", &json!({})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")), "{body}");
    let (status, body) = backend.post("/api/enrollments/pc-1/approve", &json!({})).await;
    assert_error(status, &body, 409, "not_pending_enrollment");

    let claims = issued(ask(&boot, &request(&token, "pc-1", &key, &["lab"])).await);
    assert_eq!((claims.name.as_str(), claims.nats.tags.clone()), ("pc-1", vec!["group:lab".to_owned()]));
    let (_, tokens) = backend.get("/api/enroll/tokens").await;
    assert_eq!(tokens["items"][0]["uses_left"], 0, "the first request used the token, once: {tokens}");
}

#[tokio::test]
async fn revocation_disconnects_the_agent_at_once_and_it_can_neither_reconnect_nor_renew() {
    let (_nats, url, backend) = started(false).await;
    let (token, _) = create_token(&backend, json!({ "uses": 2 })).await;
    let boot = bootstrap(&url).await;
    let key = new_key();
    let reply = ask(&boot, &request(&token, "pc-1", &key, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = creds_file(dir.path(), &jwt_of(&reply), &key);
    let events = Events::default();
    let agent = connect_as(&url, "pc-1", &creds, &events).await;
    agent.flush().await.unwrap();

    let (status, body) = backend.post("/api/agents/pc-1/revoke", &json!({})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("revoked")), "{body}");
    eventually("the broker closes the revoked agent's connection", PATIENCE, || async {
        (agent.connection_state() != async_nats::connection::State::Connected).then_some(())
    })
    .await;
    let again = agent_options(&url, "pc-1", &creds, &Events::default()).connect(&url).await;
    assert!(again.is_err(), "a revoked credential connects again");

    // The backend (which may publish any PC's renewal subject) asks as pc-1: refused.
    let backend_client = kanade_testkit::client(&url).await;
    let reason = refusal(renew(&backend_client, "pc-1", &key).await);
    assert!(reason.contains("revoked"), "{reason}");
    // Revoking again changes nothing; an unknown PC is a 404.
    let (status, body) = backend.post("/api/agents/pc-1/revoke", &json!({})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("revoked")), "{body}");
    let (status, body) = backend.post("/api/agents/pc-9/revoke", &json!({})).await;
    assert_error(status, &body, 404, "enrollment_not_found");

    // Enrolling again: not with the revoked key, not with the token that enrolled it, but with a new key and token.
    let reason = refusal(ask(&boot, &request(&token, "pc-1", &key, &[])).await);
    assert!(reason.contains("key was revoked"), "{reason}");
    let fresh = new_key();
    let reason = refusal(ask(&boot, &request(&token, "pc-1", &fresh, &[])).await);
    assert!(reason.contains("already enrolled this PC"), "{reason}");
    let (second, _) = create_token(&backend, json!({})).await;
    let claims = issued(ask(&boot, &request(&second, "pc-1", &fresh, &[])).await);
    assert_eq!(claims.sub, fresh.public);
    let audit = eventually("the revocation is audited", PATIENCE, || async {
        let (_, page) = backend.get("/api/audit?action=agent-revoke").await;
        (page["items"].as_array().is_some_and(|i| i.len() == 1)).then_some(page)
    })
    .await;
    assert_eq!(audit["items"][0]["target"], "pc-1", "{audit}");
}

#[tokio::test]
async fn a_broker_that_missed_a_revocation_is_told_when_it_is_back() {
    let (mut nats, url, backend) = started(false).await;
    let (token, _) = create_token(&backend, json!({})).await;
    let boot = bootstrap(&url).await;
    let key = new_key();
    let reply = ask(&boot, &request(&token, "pc-1", &key, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = creds_file(dir.path(), &jwt_of(&reply), &key);
    drop(boot);

    // The broker is down while the operator revokes: stored, and said so.
    nats.kill();
    let (status, body) = backend.post("/api/agents/pc-1/revoke", &json!({})).await;
    assert_error(status, &body, 503, "revocation_pending");
    assert!(body["error"]["message"].as_str().unwrap().contains("stored"), "{body}");
    // Back from its store, which never saw the revocation: the backend tells it again.
    nats.start_again();
    let events = Events::default();
    eventually("the revoked credential is refused by the restarted broker", Duration::from_secs(90), || {
        let options = agent_options(&url, "pc-1", &creds, &events);
        let url = url.clone();
        async move {
            match options.connect(&url).await {
                Err(_) => Some(()),
                Ok(client) => {
                    drop(client);
                    None
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn new_groups_tell_the_agent_to_renew_and_its_renewal_carries_them() {
    let (_nats, url, backend) = started(false).await;
    let (token, _) = create_token(&backend, json!({})).await;
    let boot = bootstrap(&url).await;
    let key = new_key();
    let reply = ask(&boot, &request(&token, "pc-1", &key, &["office"])).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = creds_file(dir.path(), &jwt_of(&reply), &key);
    let agent = connect_as(&url, "pc-1", &creds, &Events::default()).await;
    let mut told = agent.subscribe(subject::renew_now(&PcId::new("pc-1").unwrap())).await.unwrap();
    agent.flush().await.unwrap();

    let (status, body) = backend
        .send(
            Method::PUT,
            "/api/agents/pc-1/groups",
            kanade_testkit::TEST_TOKEN,
            Some(&json!({ "groups": ["lab", "office", "lab"] })),
        )
        .await;
    assert_eq!((status, body["groups"].clone()), (200, json!(["lab", "office"])), "{body}");
    let note = tokio::time::timeout(PATIENCE, futures::StreamExt::next(&mut told)).await.expect("told").unwrap();
    assert!(note.payload.is_empty());
    let claims = issued(renew(&agent, "pc-1", &key).await);
    assert_eq!(claims.nats.tags, ["group:lab", "group:office"]);
    assert_eq!(security::groups_of(&claims.nats.tags).len(), 2);

    let put = |body: Value| {
        let backend = &backend;
        async move { backend.send(Method::PUT, "/api/agents/pc-1/groups", kanade_testkit::TEST_TOKEN, Some(&body)).await }
    };
    let (status, body) = put(json!({ "groups": ["Not A Group"] })).await;
    assert_error(status, &body, 400, "invalid_request");
    let many: Vec<String> = (0..40).map(|i| format!("g{i}")).collect();
    let (status, body) = put(json!({ "groups": many })).await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = put(json!({ "group": [] })).await;
    assert_error(status, &body, 400, "invalid_body");
    let huge: Vec<String> = (0..2000).map(|i| format!("group-{i}")).collect();
    let (status, body) = put(json!({ "groups": huge })).await;
    assert_error(status, &body, 413, "invalid_body");
    let (status, body) = backend
        .send(Method::PUT, "/api/agents/pc-2/groups", kanade_testkit::TEST_TOKEN, Some(&json!({ "groups": [] })))
        .await;
    assert_error(status, &body, 404, "enrollment_not_found");
}

#[tokio::test]
async fn hostile_token_orders_ids_and_queries_are_refused_with_codes() {
    let (_nats, _url, backend) = started(false).await;
    for (body, code) in [
        (json!({ "uses": 0 }), "invalid_request"),
        (json!({ "uses": 100_001 }), "invalid_request"),
        (json!({ "uses": -1 }), "invalid_body"),
        (json!({ "ttl": "0s" }), "invalid_request"),
        (json!({ "ttl": "91d" }), "invalid_request"),
        (json!({ "ttl": "later" }), "invalid_request"),
        (json!({ "groups": ["UPPER"] }), "invalid_request"),
        (json!({ "groups": (0..33).map(|i| format!("g{i}")).collect::<Vec<_>>() }), "invalid_request"),
        (json!({ "secret": "mine" }), "invalid_body"),
    ] {
        let (status, reply) = backend.post("/api/enroll/tokens", &body).await;
        assert_error(status, &reply, 400, code);
    }
    let (status, reply) = backend.post("/api/enroll/tokens", &json!({ "groups": ["x".repeat(20 * 1024)] })).await;
    assert_error(status, &reply, 413, "invalid_body");
    let raw = reqwest::Client::new()
        .post(format!("{}/api/enroll/tokens", backend.url()))
        .bearer_auth(kanade_testkit::TEST_TOKEN)
        .header("content-type", "application/json")
        .body("{\"uses\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);

    let delete = |id: &str| {
        let path = format!("/api/enroll/tokens/{id}");
        let backend = &backend;
        async move { backend.send(Method::DELETE, &path, kanade_testkit::TEST_TOKEN, None).await }
    };
    let (status, reply) = delete("NOT-AN-ID").await;
    assert_error(status, &reply, 400, "invalid_token_id");
    let (status, reply) = delete("abcdefghij").await;
    assert_error(status, &reply, 404, "token_not_found");
    let (status, reply) = backend.get("/api/enrollments?status=lost").await;
    assert_error(status, &reply, 400, "invalid_query");
    let (status, reply) = backend.get("/api/enroll/tokens?cursor=garbage").await;
    assert_error(status, &reply, 400, "invalid_cursor");
    let (status, reply) = backend.post("/api/enrollments/PC%201/approve", &json!({})).await;
    assert_error(status, &reply, 400, "invalid_pc_id");

    // Tokens list newest first, a page at a time.
    for _ in 0..3 {
        create_token(&backend, json!({ "ttl": "1h" })).await;
    }
    let (_, first) = backend.get("/api/enroll/tokens?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2, "{first}");
    let all = backend.get_all("/api/enroll/tokens?limit=2").await;
    assert_eq!(all.len(), 3);
    // Compared as times: RFC 3339 text drops trailing zeros of the fraction, so it does not sort as text.
    let created: Vec<chrono::DateTime<chrono::Utc>> =
        all.iter().map(|t| t["created_at"].as_str().unwrap().parse().expect("an RFC 3339 time")).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first: {created:?}");
}

#[tokio::test]
async fn two_backends_on_one_postgres_database_never_spend_a_use_twice() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let database = postgres::TestDatabase::create().await;
    let one = start_backend(&url, Some(database.url.clone()), false).await;
    let _two = start_backend(&url, Some(database.url.clone()), false).await;
    let (token, view) = create_token(&one, json!({ "uses": 5 })).await;
    let id = view["id"].as_str().unwrap().to_owned();

    // Twelve PCs at once, answered by whichever backend the queue group picks.
    let boot = bootstrap(&url).await;
    let asks = (0..12).map(|i| {
        let (boot, request) = (boot.clone(), request(&token, &format!("pc-{i}"), &new_key(), &[]));
        async move { ask(&boot, &request).await }
    });
    let replies = futures::future::join_all(asks).await;
    let issued = replies.iter().filter(|r| matches!(r, EnrollReply::Issued { .. })).count();
    assert_eq!(issued, 5, "{replies:?}");
    for reply in replies.iter().filter(|r| !matches!(r, EnrollReply::Issued { .. })) {
        assert!(matches!(reply, EnrollReply::Refused { reason } if reason.contains("no uses left")), "{reply:?}");
    }
    // One PC asking four times at once with one key: one use at most.
    let (token, view) = create_token(&one, json!({ "uses": 3 })).await;
    let key = new_key();
    let same = (0..4).map(|_| {
        let (boot, request) = (boot.clone(), request(&token, "pc-same", &key, &[]));
        async move { ask(&boot, &request).await }
    });
    let replies = futures::future::join_all(same).await;
    assert!(replies.iter().any(|r| matches!(r, EnrollReply::Issued { .. })), "{replies:?}");
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let left = |id: String| {
        let pool = pool.clone();
        async move {
            let row = sqlx::query("SELECT uses_left FROM enroll_tokens WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
            row.get::<i64, _>(0)
        }
    };
    assert_eq!(left(id.clone()).await, 0);
    assert_eq!(left(view["id"].as_str().unwrap().to_owned()).await, 2, "{replies:?}");
    let used: i64 = sqlx::query("SELECT COUNT(*) FROM enroll_token_uses WHERE token_id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(used, 5);
    pool.close().await;
}
