//! The test fleet's identities: one fleet made by the real `kanade security init`, shared by every test server and
//! client, so that every test runs the broker in operator mode with TLS, each agent with a credential of its own.
//!
//! The fleet lives in the temp dir under a name derived from the agent template and the account's shape: made
//! once, then reused by every test process (made in a scratch folder and renamed into place, so concurrent test
//! processes never see half of one), and made anew when the permissions change.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kanade_ops::security as ops;
use kanade_shared::authority::{PublicKey, SignedTrustList, SigningKey};
use kanade_shared::config::NatsConfig;
use kanade_shared::security::{self, FleetAccount, permissions};
use kanade_shared::{GroupName, PcId};
use nkeys::KeyPair;

/// The test fleet: its folder and the keys tests issue agent credentials with.
pub struct TestFleet {
    dir: PathBuf,
    account: FleetAccount,
    agent_signing: KeyPair,
    /// The test operator's signing key: `tester`, an admin in the first trust list.
    signer: SigningKey,
    trust_root: PublicKey,
}

/// The test operator's signing key, in the fleet's folder.
pub const TESTER_KEY: &str = "tester.key";

static FLEET: OnceLock<TestFleet> = OnceLock::new();

/// The fleet every test in this process uses.
pub fn fleet() -> &'static TestFleet {
    FLEET.get_or_init(TestFleet::make_or_reuse)
}

impl TestFleet {
    fn make_or_reuse() -> Self {
        let shape = serde_json::to_string(&(
            permissions::agent_template(),
            permissions::full_access(),
            permissions::bootstrap_limits(),
            permissions::simulator_limits(permissions::SIMULATOR_INBOX_PREFIX),
            ops::FILES.iter().map(|f| f.name).collect::<Vec<_>>(),
            TESTER_KEY,
        ))
        .expect("fleet shape");
        let digest = {
            use sha2::Digest as _;
            sha2::Sha256::digest(shape.as_bytes())
        };
        let name = format!("kanade-test-fleet-{}", &hex(&digest)[..16]);
        let dir = std::env::temp_dir().join(name);
        if !dir.join(ops::OPERATOR_KEY).exists() {
            let scratch = std::env::temp_dir().join(format!("{}.{}", dir.display(), std::process::id()));
            let _ = std::fs::remove_dir_all(&scratch);
            let options = ops::InitOptions {
                dir: scratch.clone(),
                hosts: ops::DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
                broker_dir: Some(dir.clone()),
                resolver_dir: None,
            };
            let tester = SigningKey::generate();
            let admin =
                ops::FirstAdmin { name: kanade_shared::Actor::new("tester").expect("name"), key: tester.public_key() };
            ops::init_with(&options, Some(&admin), chrono::Utc::now().timestamp())
                .expect("kanade security init for tests");
            kanade_ops::signing::write_key(&scratch.join(TESTER_KEY), &tester).expect("write the tester's key");
            // Another test process may have won the race; either fleet is complete, and the loser's is dropped.
            if std::fs::rename(&scratch, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&scratch);
            }
        }
        let account = ops::read_fleet(&dir.join(ops::ACCOUNT_JWT)).expect("test fleet account");
        let agent_signing = ops::read_seed(&dir.join(ops::AGENT_SIGNING_KEY)).expect("test fleet agent key");
        let signer = kanade_ops::signing::read_key(&dir.join(TESTER_KEY)).expect("test fleet operator key");
        let trust_root = std::fs::read_to_string(dir.join(ops::TRUST_ROOT_PUB))
            .expect("test fleet trust root")
            .parse()
            .expect("test fleet trust root");
        Self { dir, account, agent_signing, signer, trust_root }
    }

    /// The test operator `tester`'s signing key (admin, fleet-wide, in the first trust list).
    pub fn signer(&self) -> &SigningKey {
        &self.signer
    }

    /// The file of [`TestFleet::signer`], as the CLI reads it (`KANADE_SIGNING_KEY`).
    pub fn signer_file(&self) -> PathBuf {
        self.file(TESTER_KEY)
    }

    /// The fleet's trust root, which agents are configured with.
    pub fn trust_root(&self) -> PublicKey {
        self.trust_root
    }

    /// The root's private key (kept offline in a real fleet).
    pub fn root_key(&self) -> SigningKey {
        kanade_ops::signing::read_key(&self.file(ops::TRUST_ROOT_KEY)).expect("test fleet root key")
    }

    /// The backend's signing key, trusted as `backend` (operator, fleet-wide).
    pub fn backend_signer_file(&self) -> PathBuf {
        self.file(ops::BACKEND_SIGNING_KEY)
    }

    /// Stores the fleet's first trust list in the test server's KV (as `kanade trust push` does), unless a list is
    /// there already.
    pub async fn push_trust(&self, client: &async_nats::Client) {
        if kanade_ops::signing::fetch_trust(client).await.expect("read the trust list").is_some() {
            return;
        }
        let bytes = std::fs::read(self.file(ops::TRUST_LIST)).expect("test fleet trust list");
        let signed = SignedTrustList::decode(&bytes).expect("test fleet trust list");
        match kanade_ops::signing::push_trust(client, &signed, &self.trust_root).await {
            Ok(_) => {}
            // Another client of the same server stored it meanwhile.
            Err(_) if kanade_ops::signing::fetch_trust(client).await.ok().flatten().is_some() => {}
            Err(err) => panic!("cannot store the test trust list: {err}"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the fleet's (`kanade_ops::security::CA_CERT`, ...).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.file(ops::CA_CERT)
    }

    /// The broker include (`nats-security.conf`).
    pub fn server_include(&self) -> PathBuf {
        self.file(ops::SERVER_INCLUDE)
    }

    /// The backend's connection to `url`.
    pub fn backend_nats(&self, url: &str) -> NatsConfig {
        NatsConfig::secure(split(url), Some(self.file(ops::BACKEND_CREDS)), self.ca())
    }

    /// The environment the `kanade` binary needs to reach a test server as the CLI, signing as `tester`.
    pub fn cli_env(&self) -> [(&'static str, PathBuf); 3] {
        [
            ("KANADE_NATS_CREDS", self.file(ops::CLI_CREDS)),
            ("KANADE_NATS_CA", self.ca()),
            ("KANADE_SIGNING_KEY", self.signer_file()),
        ]
    }

    /// Arguments that make the `kanade` CLI (or `kanade-agent simulate`, with `creds` = the simulator's) reach a
    /// test server: `--nats-creds <creds> --nats-ca <ca>`.
    pub fn nats_args(&self, creds: &str) -> Vec<String> {
        vec![
            "--nats-creds".to_owned(),
            self.file(creds).display().to_string(),
            "--nats-ca".to_owned(),
            self.ca().display().to_string(),
        ]
    }

    /// [`TestFleet::nats_args`] for the CLI's own credential, signing as `tester` (`--signing-key`).
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = self.nats_args(ops::CLI_CREDS);
        args.extend(["--signing-key".to_owned(), self.signer_file().display().to_string()]);
        args
    }

    /// [`TestFleet::nats_args`] for the fleet simulator's credential, with the trust root its agents check
    /// commands against (`--trust-root`).
    pub fn simulator_args(&self) -> Vec<String> {
        let mut args = self.nats_args(ops::SIMULATOR_CREDS);
        args.extend(["--trust-root".to_owned(), self.trust_root.to_string()]);
        args
    }

    /// The environment the `kanade-backend` binary needs to reach a test server as the backend, signing with its
    /// own key.
    pub fn backend_env(&self) -> [(&'static str, PathBuf); 3] {
        [
            ("KANADE_NATS_CREDS", self.file(ops::BACKEND_CREDS)),
            ("KANADE_NATS_CA", self.ca()),
            ("KANADE_BACKEND_SIGNING_KEY", self.backend_signer_file()),
        ]
    }

    /// The environment the `kanade-agent` binary needs to reach a test server as `pc` in `groups`, with
    /// `data_dir` its data dir: its own credential is written there (`agent.creds`, as enrolment would), and
    /// the CA is named. Pass `KANADE_AGENT_DATA_DIR` (or `agent.data_dir`) too.
    pub fn agent_env(&self, pc: &str, groups: &[&str], data_dir: &Path) -> [(&'static str, PathBuf); 2] {
        std::fs::create_dir_all(data_dir).expect("create the agent's data dir");
        self.issue_agent(pc, groups, TEST_CREDENTIAL_TTL, &data_dir.join(kanade_agent::CREDS_FILE));
        [("KANADE_NATS_CA", self.ca()), ("KANADE_TRUST_ROOT", PathBuf::from(self.trust_root.to_string()))]
    }

    /// Issues `pc` its own credential, in groups `groups`, valid for `ttl`, as the backend does at enrolment, and
    /// writes it to `path`. Returns the credential's user public key.
    pub fn issue_agent(&self, pc: &str, groups: &[&str], ttl: std::time::Duration, path: &Path) -> String {
        let pc = PcId::new(pc).expect("test pc id");
        let groups: Vec<GroupName> = groups.iter().map(|g| GroupName::new(*g).expect("test group")).collect();
        let now = chrono::Utc::now().timestamp();
        let exp = now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let (key, text) = security::issue_creds(&self.agent_signing, |user| {
            security::agent_claims(&self.account, user, &pc, &groups, now, exp)
        })
        .expect("sign an agent credential");
        ops::write_file(path, text.as_bytes(), true).expect("write agent credential");
        key.public_key()
    }

    /// The fleet account's public keys.
    pub fn account(&self) -> &FleetAccount {
        &self.account
    }
}

/// The default lifetime of test agents' credentials: longer than any test.
pub const TEST_CREDENTIAL_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

fn split(url: &str) -> Vec<String> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
