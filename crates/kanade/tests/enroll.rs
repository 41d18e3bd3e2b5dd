//! The real `kanade enroll` and `kanade agent revoke|groups` against a real backend with enrolment on, over a real
//! nats-server in operator mode: a token created (alone on stdout), listed without its secret, used by a PC asking
//! with the bootstrap credential, revoked; a PC held for approval listed and approved; a credential's groups set
//! and revoked (only with --yes); and bad input refused with the usage exit code.

use std::process::Output;
use std::time::Duration;

use kanade_backend::config::SecurityConfig;
use kanade_ops::security as files;
use kanade_shared::config::NatsConfig;
use kanade_shared::enroll::{EnrollReply, EnrollRequest, Token};
use kanade_shared::security::{self, jwt, permissions};
use kanade_shared::{PcId, subject};
use kanade_testkit::{NatsServer, TEST_TOKEN, TestBackend, connect, eventually, fleet, init_logging};
use serde_json::Value;
use tokio::process::Command;

mod common;
use common::{ok, ok_json, refused, text};

const PATIENCE: Duration = Duration::from_secs(30);

/// The CLI pointed at a test's nats-server and backend with the shared test token.
fn kanade(nats_url: &str, backend_url: &str) -> Command {
    let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url);
    cmd.env("KANADE_BACKEND_URL", backend_url).env("KANADE_AUTH_TOKEN", TEST_TOKEN).env("KANADE_OPERATOR", "alice");
    cmd
}

async fn run(nats_url: &str, backend_url: &str, args: &[&str]) -> Output {
    kanade(nats_url, backend_url).args(args).output().await.expect("run kanade")
}

async fn started(approve: bool) -> (NatsServer, String, TestBackend) {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let security = SecurityConfig { approve_enrollments: approve, ..SecurityConfig::new(fleet().dir()) };
    let backend = TestBackend::start_tuned(
        &url,
        tempfile::tempdir().unwrap(),
        None,
        |c| c,
        |b| b.with_security(&security).expect("enrolment on"),
    )
    .await;
    (nats, url, backend)
}

/// A PC asking to enrol as an agent does: its own new key, the bootstrap credential, `token`.
async fn enrol(url: &str, token: &str, pc: &str) -> EnrollReply {
    let signer = files::read_seed(&fleet().file(files::USER_SIGNING_KEY)).expect("the test fleet's user key");
    let (key, _) = security::issue_creds(&signer, |user| {
        security::user_claims(user, "k", jwt::UserLimits::default(), "", 0, None)
    })
    .expect("a key");
    let nats = NatsConfig::secure(vec![url.to_owned()], Some(fleet().file(files::BOOTSTRAP_CREDS)), fleet().ca());
    let client = kanade_ops::nats::options(&nats, "test-bootstrap")
        .custom_inbox_prefix(permissions::ENROLL_INBOX_PREFIX)
        .connect(url)
        .await
        .expect("bootstrap connection");
    let request = EnrollRequest {
        token: token.to_owned(),
        pc_id: PcId::new(pc).unwrap(),
        public_key: key.public_key(),
        hostname: pc.to_owned(),
        os: "linux".into(),
        groups: vec![],
    };
    let body = serde_json::to_vec(&request).unwrap();
    let reply = eventually("a backend answers", PATIENCE, || {
        let (client, body) = (client.clone(), body.clone());
        async move { client.request(subject::ENROLL_REQUEST, body.into()).await.ok() }
    })
    .await;
    serde_json::from_slice(&reply.payload).expect("an answer")
}

#[tokio::test]
async fn a_token_is_created_alone_on_stdout_listed_without_its_secret_used_and_revoked() {
    let (_nats, url, backend) = started(false).await;
    let burl = backend.url();

    let created = run(&url, &burl, &["enroll", "create", "--groups", "office,lab", "--uses", "2", "--ttl", "2h"]).await;
    let token = ok(&created, "enroll create");
    assert_eq!(token.lines().count(), 1, "the token alone: {token}");
    let token = token.trim().to_owned();
    let parsed = Token::parse(&token).expect("a token");
    let stderr = text(&created.stderr);
    assert!(stderr.contains(&parsed.id) && stderr.contains("2 use(s)") && stderr.contains("lab,office"), "{stderr}");

    let json = ok_json(&run(&url, &burl, &["enroll", "create", "-o", "json"]).await, "enroll create -o json");
    assert!(json["token"].as_str().is_some_and(|t| t.starts_with("kanade_enroll_")), "{json}");
    assert_eq!((json["uses"].as_u64(), json["state"].as_str()), (Some(1), Some("active")), "{json}");

    assert!(matches!(enrol(&url, &token, "pc-1").await, EnrollReply::Issued { .. }));
    let listed = ok(&run(&url, &burl, &["enroll", "list"]).await, "enroll list");
    let row = listed.lines().find(|l| l.starts_with(&parsed.id)).unwrap_or_else(|| panic!("listed: {listed}"));
    assert!(row.contains("active") && row.contains("1/2") && row.contains("pc-1"), "{row}");
    assert!(!listed.contains(&parsed.secret), "the secret is never shown again: {listed}");
    let page = ok_json(&run(&url, &burl, &["enroll", "list", "-o", "json"]).await, "enroll list -o json");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");

    // Revoked by its id or by the whole token; an unknown id is an error, a malformed one bad input.
    let out = run(&url, &burl, &["enroll", "revoke", &token]).await;
    ok(&out, "enroll revoke");
    assert!(text(&out.stderr).contains("1 it enrolled stay enrolled"), "{}", text(&out.stderr));
    assert!(matches!(enrol(&url, &token, "pc-2").await, EnrollReply::Refused { reason } if reason.contains("revoked")));
    ok(&run(&url, &burl, &["enroll", "revoke", &parsed.id]).await, "revoking twice");
    refused(&run(&url, &burl, &["enroll", "revoke", "abcdefghij"]).await, 1, "no enrolment token", "unknown id");
    refused(&run(&url, &burl, &["enroll", "revoke", "nope"]).await, 2, "not a token id", "malformed id");
    let audit = eventually("the CLI's token actions are audited as alice", PATIENCE, || async {
        let (_, page) = backend.get("/api/audit?actor=alice").await;
        let actions: Vec<String> =
            page["items"].as_array()?.iter().filter_map(|e| e["action"].as_str().map(str::to_owned)).collect();
        (actions.iter().filter(|a| *a == "enroll-token-create").count() == 2
            && actions.iter().any(|a| a == "enroll-token-revoke"))
        .then_some(actions)
    })
    .await;
    assert!(!audit.is_empty());
}

#[tokio::test]
async fn bad_token_orders_are_refused_before_the_backend_is_asked() {
    let (_nats, url, backend) = started(false).await;
    let burl = backend.url();
    for (args, wanted) in [
        (vec!["enroll", "create", "--uses", "0"], "--uses"),
        (vec!["enroll", "create", "--uses", "100001"], "--uses"),
        (vec!["enroll", "create", "--ttl", "0s"], "between 1m and"),
        (vec!["enroll", "create", "--ttl", "91d"], "between 1m and"),
        (vec!["enroll", "create", "--groups", "Bad Group"], "--groups"),
        (vec!["enroll", "approve", "PC 1"], "pc_id `PC 1`"),
    ] {
        refused(&run(&url, &burl, &args).await, 2, wanted, &args.join(" "));
    }
    // With one group too many the backend's own limit speaks, as bad input.
    let max = kanade_shared::api::MAX_CREDENTIAL_GROUPS;
    let many: Vec<String> = (0..=max).map(|i| format!("g{i}")).collect();
    let out = run(&url, &burl, &["enroll", "create", "--groups", &many.join(",")]).await;
    refused(&out, 2, &format!("at most {max}"), "too many groups");
}

#[tokio::test]
async fn a_pending_pc_is_listed_and_approved() {
    let (_nats, url, backend) = started(true).await;
    let burl = backend.url();
    let token = ok(&run(&url, &burl, &["enroll", "create"]).await, "enroll create").trim().to_owned();
    assert_eq!(enrol(&url, &token, "pc-1").await, EnrollReply::Pending);
    let pending = ok(&run(&url, &burl, &["enroll", "list", "--pending"]).await, "enroll list --pending");
    assert!(pending.lines().any(|l| l.starts_with("pc-1")), "{pending}");
    let out = run(&url, &burl, &["enroll", "approve", "pc-1"]).await;
    ok(&out, "enroll approve");
    assert!(text(&out.stderr).contains("approved `pc-1`"), "{}", text(&out.stderr));
    let pending = ok(&run(&url, &burl, &["enroll", "list", "--pending", "-o", "json"]).await, "pending, json");
    assert_eq!(serde_json::from_str::<Value>(&pending).unwrap()["items"], serde_json::json!([]));
    refused(&run(&url, &burl, &["enroll", "approve", "pc-1"]).await, 1, "not waiting for approval", "approving twice");
    refused(&run(&url, &burl, &["enroll", "approve", "pc-9"]).await, 1, "no PC `pc-9` has asked", "unknown PC");
}

#[tokio::test]
async fn an_agent_credential_gets_new_groups_and_is_revoked_only_with_yes() {
    let (_nats, url, backend) = started(false).await;
    let burl = backend.url();
    let token = ok(&run(&url, &burl, &["enroll", "create"]).await, "enroll create").trim().to_owned();
    assert!(matches!(enrol(&url, &token, "pc-1").await, EnrollReply::Issued { .. }));

    let out = run(&url, &burl, &["agent", "groups", "pc-1", "office,lab", "-o", "json"]).await;
    let view = ok_json(&out, "agent groups");
    assert_eq!(view["groups"], serde_json::json!(["lab", "office"]), "{view}");
    assert!(text(&out.stderr).contains("told to renew"), "{}", text(&out.stderr));
    let view = ok_json(&run(&url, &burl, &["agent", "groups", "pc-1", "--none", "-o", "json"]).await, "--none");
    assert_eq!(view["groups"], serde_json::json!([]), "{view}");
    refused(&run(&url, &burl, &["agent", "groups", "pc-1", "Bad"]).await, 2, "group", "a bad group");
    refused(&run(&url, &burl, &["agent", "groups", "pc-1"]).await, 2, "<GROUPS>", "no groups named");
    refused(&run(&url, &burl, &["agent", "groups", "pc-9", "lab"]).await, 1, "no PC `pc-9`", "unknown PC");

    refused(&run(&url, &burl, &["agent", "revoke", "pc-1"]).await, 2, "--yes", "revoke without --yes");
    let (_, still) = backend.get("/api/enrollments?status=active").await;
    assert_eq!(still["items"][0]["pc_id"], "pc-1", "nothing was revoked: {still}");
    let out = run(&url, &burl, &["agent", "revoke", "pc-1", "--yes"]).await;
    ok(&out, "agent revoke --yes");
    assert!(text(&out.stderr).contains("revoked `pc-1`"), "{}", text(&out.stderr));
    let (_, revoked) = backend.get("/api/enrollments?status=revoked").await;
    assert_eq!(revoked["items"][0]["pc_id"], "pc-1", "{revoked}");
    refused(&run(&url, &burl, &["agent", "groups", "pc-1", "lab"]).await, 1, "revoked", "groups of a revoked PC");
    refused(&run(&url, &burl, &["agent", "revoke", "pc-9", "--yes"]).await, 1, "no PC `pc-9`", "unknown PC");
}

#[tokio::test]
async fn without_enrolment_on_the_backend_says_so() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let out = run(&url, &backend.url(), &["enroll", "create"]).await;
    refused(&out, 1, "enrolment is not configured on this backend", "no [security]");
    let out = run(&url, &backend.url(), &["agent", "revoke", "pc-1", "--yes"]).await;
    refused(&out, 1, "enrolment is not configured", "no [security]");
}
