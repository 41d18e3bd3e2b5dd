//! A real agent's own identity, end to end: it enrols with a token and the bootstrap credential, keeps its
//! credential to itself, renews it before it expires, takes the groups an operator gives it, and once revoked is
//! cut off and stays off. A broker in operator mode with TLS, a backend with enrolment on.

use std::time::Duration;

use kanade_backend::config::SecurityConfig;
use kanade_shared::subject::Target;
use kanade_shared::wire::ResultStatus;
use kanade_shared::{GroupName, PcId};
use kanade_testkit::fleet::{ResultWatch, command, publish};
use kanade_testkit::{NatsServer, TEST_TOKEN, TestAgent, TestBackend, connect, eventually, fleet, init_logging};

const PATIENCE: Duration = Duration::from_secs(30);

async fn backend(url: &str, credential_ttl: Duration) -> TestBackend {
    let security = SecurityConfig { credential_ttl, ..SecurityConfig::new(fleet().dir()) };
    TestBackend::start_tuned(
        url,
        tempfile::tempdir().unwrap(),
        None,
        |c| c,
        |b| b.with_security(&security).expect("enrolment on"),
    )
    .await
}

/// A token from the backend, as `kanade enroll create` gets one.
async fn token(backend: &TestBackend, groups: &[&str], uses: u32) -> String {
    let (status, body) =
        backend.post("/api/enroll/tokens", &serde_json::json!({ "groups": groups, "uses": uses })).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("the token").to_owned()
}

/// An agent with no credential yet, told only the token and where the bootstrap credential is.
fn enrolling_config(url: &str, pc: &str, token: &str, dir: &std::path::Path) -> kanade_shared::config::AgentConfig {
    let mut config = kanade_testkit::agent_config(url, pc, &[], dir);
    std::fs::remove_file(dir.join(kanade_agent::CREDS_FILE)).expect("no credential to start with");
    config.enroll_token = Some(token.to_owned());
    config.bootstrap_creds = Some(fleet().file(kanade_ops::security::BOOTSTRAP_CREDS));
    config
}

async fn groups_in_heartbeat(client: &async_nats::Client, pc: &PcId) -> Vec<String> {
    let (beat, _) = kanade_ops::agents::ping(client, pc, Duration::from_secs(2)).await.expect("the agent answers");
    beat.groups.iter().map(ToString::to_string).collect()
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrols_takes_new_groups_when_told_and_is_cut_off_when_revoked() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, js) = connect(&url).await;
    let backend = backend(&url, Duration::from_secs(3600)).await;
    let token = token(&backend, &["office"], 1).await;
    let mut results = ResultWatch::new(&client).await;

    let data = tempfile::tempdir().unwrap();
    let config = enrolling_config(&url, "pc-1", &token, data.path());
    let agent = TestAgent::start_with(config, data).await;
    let pc = PcId::new("pc-1").unwrap();
    let creds = agent.data_dir().join(kanade_agent::CREDS_FILE);

    // Enrolled: its own credential, for this PC, in the token's groups; the key it made never left the PC.
    let (held, _) = kanade_agent::credential::read(&creds).expect("an enrolled credential");
    assert_eq!((held.pc.as_str(), held.groups.clone()), ("pc-1", vec![GroupName::new("office").unwrap()]));
    assert!(!agent.data_dir().join(kanade_agent::credential::PENDING_KEY_FILE).exists());
    #[cfg(unix)]
    {
        assert_eq!(mode(&creds), 0o600, "the credential is the agent's alone");
        assert_eq!(mode(agent.data_dir()), 0o700, "so is its data dir");
    }
    assert_eq!(groups_in_heartbeat(&client, &pc).await, ["office"]);
    let to_office = command("echo office");
    publish(&js, &Target::Group(GroupName::new("office").unwrap()), &to_office).await;
    assert_eq!(results.next_for(&to_office.exec_id, PATIENCE).await.status, ResultStatus::Ok);

    // The token enrolled one PC: it is used up.
    let (_, tokens) = backend.get("/api/enroll/tokens").await;
    assert_eq!(tokens["items"][0]["uses_left"], 0, "{tokens}");

    // An operator moves the PC to `lab`: the agent renews at once and its subscriptions follow its credential.
    let response = reqwest::Client::new()
        .put(format!("{}/api/agents/pc-1/groups", backend.url()))
        .bearer_auth(TEST_TOKEN)
        .json(&serde_json::json!({ "groups": ["lab"] }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{:?}", response.text().await);
    eventually("the agent takes its new groups", PATIENCE, || {
        let (client, pc) = (client.clone(), pc.clone());
        async move {
            let groups = kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok()?.0.groups;
            (groups.iter().map(ToString::to_string).collect::<Vec<_>>() == ["lab"]).then_some(())
        }
    })
    .await;
    let to_lab = command("echo lab");
    publish(&js, &Target::Group(GroupName::new("lab").unwrap()), &to_lab).await;
    assert_eq!(results.next_for(&to_lab.exec_id, PATIENCE).await.stdout, "lab\n");
    let (held, _) = kanade_agent::credential::read(&creds).unwrap();
    assert_eq!(held.groups, [GroupName::new("lab").unwrap()]);

    // Revoked: the broker closes its connection, and its credential opens no new one.
    let (status, body) = backend.post("/api/agents/pc-1/revoke", &serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    eventually("the revoked agent is cut off", PATIENCE, || {
        let (client, pc) = (client.clone(), pc.clone());
        async move { kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.is_err().then_some(()) }
    })
    .await;
    // Its reconnect backoff tops out at 5 s (plus jitter): give it several tries, none of which may get in.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.is_err(),
            "a revoked agent got back onto the broker"
        );
    }
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_renews_its_credential_before_it_expires_and_stays_connected() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let (client, _js) = connect(&url).await;
    // A lifetime far below what a backend's config allows, so the test sees renewals (halfway: every 4 s).
    let backend = backend(&url, Duration::from_secs(8)).await;
    let token = token(&backend, &[], 1).await;

    let data = tempfile::tempdir().unwrap();
    let config = enrolling_config(&url, "pc-r", &token, data.path());
    let agent = TestAgent::start_with(config, data).await;
    let creds = agent.data_dir().join(kanade_agent::CREDS_FILE);
    let (first, _) = kanade_agent::credential::read(&creds).unwrap();
    let first_expiry = first.expires_at.expect("it expires");

    // Past the first credential's expiry the agent still answers: it renewed (more than once) and reconnected.
    let pc = PcId::new("pc-r").unwrap();
    eventually("the agent answers past its first credential's expiry", PATIENCE, || {
        let (client, pc) = (client.clone(), pc.clone());
        async move {
            (chrono::Utc::now().timestamp() > first_expiry + 2).then_some(())?;
            kanade_ops::agents::ping(&client, &pc, Duration::from_millis(500)).await.ok()
        }
    })
    .await;
    let (now, _) = kanade_agent::credential::read(&creds).unwrap();
    assert!(now.expires_at.unwrap() > first_expiry, "renewed: {first:?} -> {now:?}");
    assert_eq!(now.public_key, first.public_key, "renewal keeps the key");
}

#[tokio::test]
async fn an_agent_without_a_credential_or_a_token_refuses_to_start_and_says_how_to_enrol() {
    init_logging();
    let nats = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let config = kanade_testkit::agent_config(&nats.url(), "pc-x", &[], data.path());
    std::fs::remove_file(data.path().join(kanade_agent::CREDS_FILE)).unwrap();
    let err = kanade_agent::run(config, tokio_util::sync::CancellationToken::new(), None).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("no NATS credential") && text.contains("enroll_token"), "{text}");
}
