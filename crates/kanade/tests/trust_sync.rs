//! `kanade trust sync`, the real binary against a real nats-server and a real backend: the backend's operator
//! accounts become the trust list — a registered key trusted with its account's role and group scope, a new role or
//! scope carried over, a disabled or removed account's key and a replaced key revoked, never deleted — while the
//! backend's own key and keys added by hand are left alone; `--dry-run` stores nothing; a caller that is not an
//! admin, a root key the stored list does not open under, and an unreachable backend are refused with exit 1.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use kanade_ops::security as files;
use kanade_shared::authority::{PublicKey, SigningKey};
use kanade_shared::wire::AuditEvent;
use kanade_testkit::{NatsServer, TestBackend, connect, eventually, fleet, init_logging};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::Command;

mod common;
use common::{audited, shown, text};

const PATIENCE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery staple";

/// A broker holding the fleet's first trust list (the backend's key and `tester`'s, an admin added by hand), a
/// backend on it, and the CLI as the root key holder: an admin through the backend's shared token.
struct System {
    _nats: NatsServer,
    nats_url: String,
    backend: TestBackend,
    home: TempDir,
}

impl System {
    async fn start() -> Self {
        init_logging();
        let nats = NatsServer::start();
        let nats_url = nats.url();
        connect(&nats_url).await;
        let backend = TestBackend::start(&nats_url).await;
        Self { _nats: nats, nats_url, backend, home: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// The CLI with its own config folder `config` and no credential for the backend.
    fn bare(&self, config: &str) -> Command {
        let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), &self.nats_url);
        cmd.env("KANADE_BACKEND_URL", self.backend.url())
            .env("KANADE_CONFIG_DIR", self.path(config))
            .env("KANADE_OPERATOR", "trust-keeper")
            .env_remove("KANADE_SIGNING_KEY");
        cmd
    }

    /// The CLI as the admin who holds the root key.
    fn admin(&self) -> Command {
        let mut cmd = self.bare("admin");
        cmd.env("KANADE_AUTH_TOKEN", kanade_testkit::TEST_TOKEN);
        cmd
    }

    async fn ok(&self, args: &[&str]) -> (String, String) {
        audited(&run(self.admin(), args, None).await, &shown(args))
    }

    async fn ok_json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let (stdout, _) = self.ok(&args).await;
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {stdout}"))
    }

    /// `kanade trust sync --root-key trust-root.key -o json`, plus `extra`.
    async fn sync(&self, extra: &[&str]) -> Value {
        let root = root_key();
        let mut args = vec!["trust", "sync", "--root-key", &root];
        args.extend(extra);
        self.ok_json(&args).await
    }

    /// The stored list, verified under the fleet's root.
    async fn show(&self) -> Value {
        let root = fleet().file(files::TRUST_ROOT_PUB).display().to_string();
        self.ok_json(&["trust", "show", "--root-file", &root]).await
    }

    /// An account made by the admin, with a password (for signing in).
    async fn user(&self, name: &str, role: &str, groups: Option<&str>) {
        let mut args = vec!["user", "add", name, "--role", role, "--password-stdin"];
        if let Some(groups) = groups {
            args.extend(["--groups", groups]);
        }
        let out = run(self.admin(), &args, Some(&format!("{PASSWORD}\n"))).await;
        assert_eq!(out.status.code(), Some(0), "user add {name}: {}", text(&out.stderr));
    }

    /// A new signing key (`kanade key create`), registered as `name`'s (`kanade user key`).
    async fn register_new_key(&self, name: &str) -> PublicKey {
        let path = self.path(&format!("{name}-{}.key", rand_suffix()));
        let (stdout, _) = self.ok(&["key", "create", "--out", path.to_str().unwrap()]).await;
        let key: PublicKey = stdout.trim().parse().unwrap();
        self.ok(&["user", "key", name, &key.to_string()]).await;
        key
    }
}

async fn run(cmd: Command, args: &[&str], stdin: Option<&str>) -> Output {
    common::run_with(cmd, args, stdin, PATIENCE).await
}

fn rand_suffix() -> String {
    SigningKey::generate().public_key().to_string().chars().rev().filter(char::is_ascii_alphanumeric).take(8).collect()
}

fn root_key() -> String {
    fleet().file(files::TRUST_ROOT_KEY).display().to_string()
}

/// The entry for `key` in a shown list.
fn entry<'a>(list: &'a Value, key: &PublicKey) -> &'a Value {
    list["keys"].as_array().unwrap().iter().find(|k| k["key"] == key.to_string()).unwrap_or_else(|| {
        panic!("{key} is not in {list:#}");
    })
}

/// `(name, role, scope, revoked)` of `key` in a shown list.
fn listed(list: &Value, key: &PublicKey) -> (String, String, Value, bool) {
    let e = entry(list, key);
    (
        e["name"].as_str().unwrap().to_owned(),
        e["role"].as_str().unwrap().to_owned(),
        e["scope"].clone(),
        e["revoked"].as_bool().unwrap(),
    )
}

/// `(name, key)` of each change of `kind` (`added`, `updated`, `revoked`) a sync printed.
fn changed(sync: &Value, kind: &str) -> Vec<(String, String)> {
    sync[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no `{kind}` in {sync:#}"))
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["key"].as_str().unwrap().to_owned()))
        .collect()
}

fn pair(name: &str, key: &PublicKey) -> (String, String) {
    (name.to_owned(), key.to_string())
}

#[tokio::test]
async fn sync_builds_the_trust_list_from_the_accounts_and_revokes_what_they_no_longer_vouch_for() {
    let system = System::start().await;
    let v1 = system.show().await;
    assert_eq!(v1["version"], 1);
    let backend = files::read_signing_key(&fleet().file(files::BACKEND_SIGNING_KEY)).unwrap().public_key();
    let tester = fleet().signer().public_key();
    let before = |key: &PublicKey| entry(&v1, key).clone();

    // Two operators with keys, one limited to a group; one account without a key.
    system.user("alice", "operator", Some("lab")).await;
    system.user("bob", "approver", None).await;
    system.user("carol", "viewer", None).await;
    let alice = system.register_new_key("alice").await;
    let bob = system.register_new_key("bob").await;

    // A dry run prints the changes and stores nothing.
    let dry = system.sync(&["--dry-run"]).await;
    assert_eq!(
        (&dry["dry_run"], &dry["stored"], &dry["from_version"], &dry["version"]),
        (&json!(true), &json!(false), &json!(1), &json!(2))
    );
    assert_eq!(changed(&dry, "added"), vec![pair("alice", &alice), pair("bob", &bob)]);
    assert_eq!(system.show().await["version"], 1, "--dry-run stored nothing");

    let (table, note) = system.ok(&["trust", "sync", "--root-key", &root_key()]).await;
    assert!(note.contains("stored trust list version 2") && note.contains("2 added"), "{note}");
    assert!(table.starts_with("CHANGE") && table.lines().count() == 3, "{table}");
    assert!(table.lines().any(|l| l.starts_with("add") && l.contains("alice") && l.contains("lab")), "{table}");
    let v2 = system.show().await;
    assert_eq!(v2["version"], 2);
    assert_eq!(listed(&v2, &alice), ("alice".into(), "operator".into(), json!(["lab"]), false));
    assert_eq!(listed(&v2, &bob), ("bob".into(), "approver".into(), json!("fleet"), false));
    assert_eq!(v2["keys"].as_array().unwrap().len(), 4, "carol has no key to trust");
    assert_eq!(entry(&v2, &backend), &before(&backend), "the backend's key is not an account's");
    assert_eq!(entry(&v2, &tester), &before(&tester), "a key added by hand under a name that is no account");

    // The same accounts again: nothing to change, nothing stored.
    let (stdout, note) = system.ok(&["trust", "sync", "--root-key", &root_key()]).await;
    assert!(note.contains("nothing to change") && stdout.is_empty(), "{note} / {stdout}");
    let again = system.sync(&[]).await;
    assert_eq!((&again["stored"], &again["version"]), (&json!(false), &json!(2)));

    // A key added by hand under a name that is no account stays through every sync.
    let robot = SigningKey::generate().public_key().to_string();
    system.ok(&["trust", "add", "robot", "--key", &robot, "--role", "operator", "--root-key", &root_key()]).await;

    // A new role and scope are carried over; a disabled account's key is revoked.
    system.ok(&["user", "set", "alice", "--role", "approver", "--groups", "lab,office"]).await;
    system.ok(&["user", "disable", "bob"]).await;
    let synced = system.sync(&[]).await;
    assert_eq!(synced["version"], 4);
    assert_eq!(changed(&synced, "updated"), vec![pair("alice", &alice)]);
    assert_eq!(synced["updated"][0]["was_role"], "operator");
    assert_eq!(changed(&synced, "revoked"), vec![pair("bob", &bob)]);
    assert_eq!(synced["revoked"][0]["reason"], "account_disabled");
    let v4 = system.show().await;
    assert_eq!(listed(&v4, &alice), ("alice".into(), "approver".into(), json!(["lab", "office"]), false));
    assert_eq!(listed(&v4, &bob), ("bob".into(), "approver".into(), json!("fleet"), true), "revoked, not deleted");

    // A changed key: the old one revoked, the new one trusted, in one version.
    let rotated = system.register_new_key("alice").await;
    let synced = system.sync(&[]).await;
    assert_eq!(changed(&synced, "added"), vec![pair("alice", &rotated)]);
    assert_eq!(changed(&synced, "revoked"), vec![pair("alice", &alice)]);
    assert_eq!(synced["revoked"][0]["reason"], "key_replaced");
    let v5 = system.show().await;
    assert_eq!(v5["version"], 5);
    assert!(entry(&v5, &alice)["revoked"] == true && entry(&v5, &rotated)["revoked"] == false);
    assert_eq!(listed(&v5, &rotated).2, json!(["lab", "office"]));

    // Re-enabled, bob's revoked key is not trusted again: skipped, with why, and nothing else changes.
    system.ok(&["user", "enable", "bob"]).await;
    let out = run(system.admin(), &["trust", "sync", "--root-key", &root_key(), "-o", "json"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("1 account(s) skipped"), "{}", text(&out.stderr));
    let skipped: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&skipped["stored"], &skipped["skipped"][0]["name"]), (&json!(false), &json!("bob")));
    assert!(skipped["skipped"][0]["reason"].as_str().unwrap().contains("never trusted again"), "{skipped:#}");

    // A removed account's key is revoked (the backend's audit says the name was an account).
    system.ok(&["user", "rm", "alice"]).await;
    let synced = system.sync(&[]).await;
    assert_eq!(changed(&synced, "revoked"), vec![pair("alice", &rotated)]);
    assert_eq!(synced["revoked"][0]["reason"], "account_removed");
    let v6 = system.show().await;
    assert_eq!(v6["version"], 6);
    assert_eq!(v6["keys"].as_array().unwrap().len(), 6, "nothing was ever deleted");
    assert_eq!(entry(&v6, &backend), &before(&backend));
    assert_eq!(entry(&v6, &tester), &before(&tester));
    assert_eq!(entry(&v6, &robot.parse().unwrap())["revoked"], false);

    // Each sync that stored audited as `trust-sync` with its version.
    let js = async_nats::jetstream::new(kanade_testkit::client(&system.nats_url).await);
    let syncs = eventually("the syncs are audited", PATIENCE, || async {
        let stream = js.get_stream("AUDIT").await.unwrap();
        let count = stream.get_info().await.unwrap().state.messages;
        let mut events = Vec::new();
        for seq in 1..=count {
            if let Ok(message) = stream.get_raw_message(seq).await {
                let event: AuditEvent = serde_json::from_slice(&message.payload).unwrap();
                if event.action.as_str() == "trust-sync" {
                    events.push(event);
                }
            }
        }
        (events.len() == 4).then_some(events)
    })
    .await;
    let versions: Vec<u64> = syncs.iter().map(|e| e.details["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, vec![2, 4, 5, 6]);
    assert!(syncs.iter().all(|e| e.target == "trust_list/current" && e.actor.as_str() == "trust-keeper"));
    assert_eq!(syncs[3].details["revoked"], json!([rotated.to_string()]));
}

#[tokio::test]
async fn sync_is_refused_to_a_caller_who_is_not_an_admin_under_another_root_and_without_a_backend() {
    let system = System::start().await;
    system.user("otto", "operator", None).await;
    system.register_new_key("otto").await;

    // otto signs in with a config folder of its own: an operator may not read the accounts.
    let login =
        run(system.bare("otto"), &["login", "--name", "otto", "--password-stdin"], Some(&format!("{PASSWORD}\n")))
            .await;
    assert_eq!(login.status.code(), Some(0), "{}", text(&login.stderr));
    let out = run(system.bare("otto"), &["trust", "sync", "--root-key", &root_key()], None).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs role `admin`") && out.stdout.is_empty(), "{stderr}");
    // Nobody signed in at all.
    let out = run(system.bare("nobody"), &["trust", "sync", "--root-key", &root_key()], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("kanade login"), "{}", text(&out.stderr));

    // The stored list is the fleet's, not this root's.
    let impostor = system.path("impostor.key");
    std::fs::write(&impostor, SigningKey::generate().to_pem()).unwrap();
    let out = run(system.admin(), &["trust", "sync", "--root-key", impostor.to_str().unwrap()], None).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not open under this root key"), "{stderr}");

    // No backend to read the accounts from.
    let mut away = system.admin();
    away.env("KANADE_BACKEND_URL", "http://127.0.0.1:9");
    let out = run(away, &["trust", "sync", "--root-key", &root_key()], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot reach the backend"), "{}", text(&out.stderr));

    // Bad arguments.
    let out = run(system.admin(), &["trust", "sync"], None).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--root-key"));

    // None of it stored anything; the admin's sync does.
    assert_eq!(system.show().await["version"], 1);
    assert_eq!(system.sync(&[]).await["version"], 2);
}

#[test]
fn the_help_text_says_when_to_run_sync_what_it_changes_and_its_exit_codes() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kanade"))
        .args(["trust", "sync", "--help"])
        .output()
        .expect("run kanade");
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for words in
        ["--root-key", "--dry-run", "disabling", "removing", "`backend`", "admin", "Exit codes", "Nothing is deleted"]
    {
        assert!(help.contains(words), "`trust sync --help` lacks `{words}`:\n{help}");
    }
}
