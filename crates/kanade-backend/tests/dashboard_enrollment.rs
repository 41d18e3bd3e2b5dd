//! The dashboard's Enrolment page end to end: the real backend (with the dashboard embedded) with enrolment on and
//! `approve_enrollments`, a real nats-server in operator mode, and PCs that ask to enrol over NATS with the real
//! bootstrap credential and keys of their own; driven in headless Chromium by `web/e2e/enrollment.test.mjs`
//! (playwright-core), which approves one waiting PC, refuses another, revokes a third that is connected, creates a
//! token (shown once, copied) and revokes it, and reads a second backend's page without `[security]`. Afterwards the
//! PCs ask again: the approved one is issued its credential, the refused and revoked ones are refused, and the
//! revoked one's connection was closed by the broker. Screenshots land in
//! `target/dashboard-artifacts/enrollment-*.png`.
//!
//! It needs Node.js, `web/node_modules` and Chromium, as `tests/dashboard.rs` does: `cargo xtask web` obtains them.
//! Without them the test fails and says so; it never passes without having run the browser.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use async_nats::Client;
use kanade_backend::config::SecurityConfig;
use kanade_ops::security as files;
use kanade_shared::config::NatsConfig;
use kanade_shared::enroll::{EnrollReply, EnrollRequest};
use kanade_shared::security::{self, creds, jwt, permissions};
use kanade_shared::{GroupName, PcId, subject};
use kanade_testkit::{NatsServer, TEST_TOKEN, TestBackend, connect, eventually, fleet, init_logging};
use serde_json::{Value, json};

mod support;

use support::browser;

/// The PC the page approves: the test sees it issued afterwards.
const PC_APPROVE: &str = "pc-waiting";
/// The PC the page refuses while it waits.
const PC_REFUSE: &str = "pc-unknown";
/// The PC that is active and connected before the page revokes it.
const PC_ACTIVE: &str = "pc-enrolled";
/// The operator the browser signs in as.
const OPERATOR: &str = "dora";
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

/// A connection as an agent's installer makes one: the bootstrap credential, which may only ask.
async fn bootstrap(url: &str) -> Client {
    let nats = NatsConfig::secure(vec![url.to_owned()], Some(fleet().file(files::BOOTSTRAP_CREDS)), fleet().ca());
    kanade_ops::nats::options(&nats, "test-bootstrap")
        .custom_inbox_prefix(permissions::ENROLL_INBOX_PREFIX)
        .connect(url)
        .await
        .expect("connect with the bootstrap credential")
}

/// Asks to enrol `pc` with `key` and `token` (as `<PC>.test`, linux, asking for `groups`); retried while no backend
/// listens yet.
async fn ask(client: &Client, token: &str, pc: &str, key: &Key, groups: &[&str]) -> EnrollReply {
    let request = EnrollRequest {
        token: token.to_owned(),
        pc_id: PcId::new(pc).unwrap(),
        public_key: key.public.clone(),
        hostname: format!("{}.test", pc.to_uppercase()),
        os: "linux".into(),
        groups: groups.iter().map(|g| GroupName::new(*g).unwrap()).collect(),
    };
    let body = serde_json::to_vec(&request).unwrap();
    let reply = eventually("a backend answers", PATIENCE, || {
        let (client, body) = (client.clone(), body.clone());
        async move { client.request(subject::ENROLL_REQUEST, body.into()).await.ok() }
    })
    .await;
    serde_json::from_slice(&reply.payload).unwrap_or_else(|err| panic!("not an answer ({err}): {:?}", reply.payload))
}

fn issued(reply: EnrollReply) -> String {
    match reply {
        EnrollReply::Issued { jwt } => jwt,
        other => panic!("not issued: {other:?}"),
    }
}

fn refusal(reply: EnrollReply) -> String {
    match reply {
        EnrollReply::Refused { reason } => reason,
        other => panic!("not refused: {other:?}"),
    }
}

/// Connects as the agent an issued credential names, as the agent would.
async fn connect_as(url: &str, pc: &str, jwt: &str, key: &Key, dir: &Path) -> Client {
    let path = dir.join("agent.creds");
    std::fs::write(&path, creds::format(jwt, &key.seed)).unwrap();
    let nats = NatsConfig::secure(vec![url.to_owned()], Some(path), fleet().ca());
    kanade_ops::nats::options(&nats, "test-agent")
        .custom_inbox_prefix(permissions::agent_inbox_prefix(pc))
        .connect(url)
        .await
        .expect("connect with the issued credential")
}

/// A backend that serves the built dashboard, or a failure saying to build it first.
async fn require_dashboard(backend: &TestBackend) {
    let page = reqwest::get(format!("{}/", backend.url())).await.expect("GET /").text().await.expect("page");
    assert!(
        page.contains("id=\"root\""),
        "the backend serves no built dashboard (was kanade-backend compiled before `cargo xtask web`?):\n{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrollment_page_works_in_a_real_browser() {
    init_logging();
    browser::require_prerequisites();

    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let security = SecurityConfig { approve_enrollments: true, ..SecurityConfig::new(fleet().dir()) };
    let backend = TestBackend::start_tuned(
        &url,
        tempfile::tempdir().unwrap(),
        None,
        |c| c,
        |b| b.with_security(&security).expect("enrolment on"),
    )
    .await;
    require_dashboard(&backend).await;
    // A backend without `[security]`, on a broker of its own so that the two never share a consumer.
    let plain_nats = NatsServer::start();
    connect(&plain_nats.url()).await;
    let plain = TestBackend::start(&plain_nats.url()).await;

    // One token for three PCs, each asking with a key of its own: all three wait for approval.
    let (status, created) = backend.post("/api/enroll/tokens", &json!({ "uses": 3, "ttl": "1h" })).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().expect("the token").to_owned();
    let token_id = created["id"].as_str().expect("its id").to_owned();
    let boot = bootstrap(&url).await;
    let (waiting, unknown, enrolled) = (new_key(), new_key(), new_key());
    assert_eq!(ask(&boot, &token, PC_APPROVE, &waiting, &["lab"]).await, EnrollReply::Pending);
    assert_eq!(ask(&boot, &token, PC_REFUSE, &unknown, &["lab"]).await, EnrollReply::Pending);
    assert_eq!(ask(&boot, &token, PC_ACTIVE, &enrolled, &["office"]).await, EnrollReply::Pending);
    // The third is approved here and connects with its credential: the page revokes a PC that is online.
    let (status, body) = backend.post(&format!("/api/enrollments/{PC_ACTIVE}/approve"), &json!({})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")), "{body}");
    let jwt = issued(ask(&boot, &token, PC_ACTIVE, &enrolled, &["office"]).await);
    let dir = tempfile::tempdir().unwrap();
    let agent = connect_as(&url, PC_ACTIVE, &jwt, &enrolled, dir.path()).await;
    agent.flush().await.expect("the enrolled PC is connected");

    let env = [
        ("KANADE_URL", backend.url()),
        ("KANADE_PLAIN_URL", plain.url()),
        ("KANADE_TOKEN", TEST_TOKEN.to_owned()),
        ("KANADE_OPERATOR", OPERATOR.to_owned()),
        ("KANADE_PC_APPROVE", PC_APPROVE.to_owned()),
        ("KANADE_PC_REFUSE", PC_REFUSE.to_owned()),
        ("KANADE_PC_ACTIVE", PC_ACTIVE.to_owned()),
        ("KANADE_FIRST_TOKEN", token_id),
    ];
    browser::run("e2e/enrollment.test.mjs", &env).await;

    // What the page did, as the PCs see it. The approved PC, asking again as it does every 30 s while it waits, is
    // issued a credential that names it and the group it asked for.
    let claims: jwt::Claims<jwt::User> =
        jwt::decode(&issued(ask(&boot, &token, PC_APPROVE, &waiting, &["lab"]).await)).expect("a user JWT");
    assert_eq!((claims.name.as_str(), claims.sub.as_str()), (PC_APPROVE, waiting.public.as_str()));
    assert_eq!(claims.nats.tags, ["group:lab"]);
    // The refused and the revoked PC are turned away; the revoked one's connection was closed by the broker.
    let reason = refusal(ask(&boot, &token, PC_REFUSE, &unknown, &["lab"]).await);
    assert!(reason.contains("revoked"), "{reason}");
    let reason = refusal(ask(&boot, &token, PC_ACTIVE, &enrolled, &["office"]).await);
    assert!(reason.contains("revoked"), "{reason}");
    eventually("the broker closes the revoked PC's connection", PATIENCE, || async {
        (agent.connection_state() != async_nats::connection::State::Connected).then_some(())
    })
    .await;
    // Its client would go on trying, and logging each refusal, until the test ends.
    drop(agent);

    // And as the audit log has it: each change once, as the operator's.
    let wanted: BTreeSet<(&str, String)> = [
        ("enroll-approve", PC_APPROVE.to_owned()),
        ("agent-revoke", PC_REFUSE.to_owned()),
        ("agent-revoke", PC_ACTIVE.to_owned()),
        ("enroll-token-create", String::new()),
        ("enroll-token-revoke", String::new()),
    ]
    .into();
    let audited = eventually("the page's changes audited", Duration::from_secs(10), || async {
        let (_, audit) = backend.get(&format!("/api/audit?actor={OPERATOR}&limit=200")).await;
        let rows: Vec<(String, String)> =
            audit["items"].as_array()?.iter().map(|e| (field(e, "action"), field(e, "target"))).collect();
        let seen: BTreeSet<(&str, String)> = rows
            .iter()
            .map(|(action, target)| {
                // A token's id is drawn by the backend: the page's own token is the one whose target is not known.
                let target = if action.starts_with("enroll-token-") { String::new() } else { target.clone() };
                (action.as_str(), target)
            })
            .collect();
        (seen == wanted).then_some(rows)
    })
    .await;
    assert_eq!(audited.len(), wanted.len(), "each change once: {audited:?}");
    let tokens: BTreeSet<&str> =
        audited.iter().filter(|(action, _)| action.starts_with("enroll-token-")).map(|(_, t)| t.as_str()).collect();
    assert_eq!(tokens.len(), 1, "one token created and revoked: {audited:?}");
    let (_, listed) = backend.get("/api/enroll/tokens").await;
    let page_token = listed["items"].as_array().unwrap().iter().find(|t| tokens.contains(t["id"].as_str().unwrap()));
    assert_eq!(page_token.map(|t| t["state"].clone()), Some(json!("revoked")), "{listed}");
}

fn field(row: &Value, key: &str) -> String {
    row[key].as_str().unwrap_or_default().to_owned()
}
