//! `kanade key` and `kanade trust`, the real binary against a real nats-server, and the trust files `kanade security
//! init` writes: a key is created owner-only and never overwritten by accident; the first list opens under the
//! root only; push, add and revoke move the stored list forward one root-signed version at a time, audited, never
//! backwards and never under another root; a key is rotated without a gap; hostile input gets a clear error and
//! the documented exit code. Every command runs with its own `KANADE_CONFIG_DIR` so nothing touches a real home.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use async_nats::jetstream;
use kanade_ops::security as files;
use kanade_shared::Actor;
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::authority::{PublicKey, SignedTrustList, SigningKey, TrustList, TrustedKey};
use kanade_shared::wire::AuditEvent;
use kanade_testkit::{NatsServer, eventually, fleet, init_logging};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::Command;

mod common;
use common::{audited, failed, shown, text};

const PATIENCE: Duration = Duration::from_secs(30);

/// One operator's machine: a config folder of its own, talking to one test server.
struct Operator {
    url: String,
    home: TempDir,
}

impl Operator {
    fn new(url: &str) -> Self {
        Self { url: url.to_owned(), home: tempfile::tempdir().unwrap() }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("config")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), &self.url);
        cmd.env("KANADE_CONFIG_DIR", self.config_dir())
            .env_remove("KANADE_SIGNING_KEY")
            .env("KANADE_OPERATOR", "trust-keeper")
            .args(args);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_command(self.command(args)).await
    }

    async fn run_command(&self, mut cmd: Command) -> Output {
        tokio::time::timeout(PATIENCE, cmd.output()).await.expect("kanade finished in time").expect("run kanade")
    }

    /// Runs `args`, insists it succeeded, and returns stdout and stderr.
    async fn ok(&self, args: &[&str]) -> (String, String) {
        audited(&self.run(args).await, &shown(args))
    }

    async fn ok_json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let (stdout, _) = self.ok(&args).await;
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{} printed no JSON ({e}): {stdout}", shown(&args)))
    }

    /// Runs `args`, insists it failed with `code`, printed nothing on stdout and did not panic; returns stderr.
    async fn fails(&self, args: &[&str], code: i32) -> String {
        failed(&self.run(args).await, code, &shown(args))
    }

    /// `kanade key create --out <name>`: a new key, its public half.
    async fn new_key(&self, name: &str) -> PublicKey {
        let path = self.path(name);
        let (stdout, _) = self.ok(&["key", "create", "--out", path.to_str().unwrap()]).await;
        stdout.trim().parse().unwrap()
    }

    /// The stored list as `trust show -o json` prints it, verified under the fleet's root.
    async fn show(&self) -> Value {
        self.ok_json(&["trust", "show", "--root-file", &root_pub()]).await
    }
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn fleet_file(name: &str) -> String {
    fleet().file(name).display().to_string()
}

fn root_pub() -> String {
    fleet_file(files::TRUST_ROOT_PUB)
}

fn root_key() -> String {
    fleet_file(files::TRUST_ROOT_KEY)
}

/// A file's Unix permission bits (Windows keeps these files under ACLs, which these tests do not read).
#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The entry for `name`'s key `key` in a shown list.
fn entry<'a>(list: &'a Value, key: &PublicKey) -> &'a Value {
    list["keys"].as_array().unwrap().iter().find(|k| k["key"] == key.to_string()).unwrap_or_else(|| {
        panic!("{key} is not in {list:#}");
    })
}

/// A test server's JetStream as `kanade jetstream setup` makes it, with no trust list stored (the test kit's
/// `connect` stores the fleet's first one; these tests store it themselves, through the CLI).
async fn bare_broker(url: &str) -> jetstream::Context {
    let js = jetstream::new(kanade_testkit::client(url).await);
    kanade_ops::jetstream::setup(&js, 1).await.expect("jetstream setup");
    js
}

/// Every audit event recorded so far, oldest first.
async fn audit_events(js: &jetstream::Context) -> Vec<AuditEvent> {
    let stream = js.get_stream("AUDIT").await.unwrap();
    let count = stream.get_info().await.unwrap().state.messages;
    let mut events = Vec::new();
    for seq in 1..=count {
        if let Ok(message) = stream.get_raw_message(seq).await {
            events.push(serde_json::from_slice(&message.payload).unwrap());
        }
    }
    events
}

#[cfg(unix)]
#[tokio::test]
async fn key_create_writes_an_owner_only_key_prints_only_its_public_half_and_never_overwrites_by_accident() {
    init_logging();
    let me = Operator::new("nats://127.0.0.1:1");

    let (stdout, stderr) = me.ok(&["key", "create"]).await;
    let public: PublicKey = stdout.trim().parse().expect("stdout is the public key alone");
    assert_eq!(stdout, format!("{public}\n"));
    assert!(stderr.contains(&format!("kanade trust add trust-keeper --key {public}")), "{stderr}");
    let path = me.config_dir().join("signing.key");
    assert_eq!(mode(&path), 0o600, "the key is its owner's alone");
    assert_eq!(mode(&me.config_dir()), 0o700, "the config folder it made too");
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    assert!(!stdout.contains("PRIVATE") && !stderr.contains("PRIVATE"), "the private key is never printed");

    let (shown_key, _) = me.ok(&["key", "show"]).await;
    assert_eq!(shown_key.trim(), public.to_string());
    let json = me.ok_json(&["key", "show"]).await;
    assert_eq!(json, json!({ "key": public.to_string(), "path": path.display().to_string() }));

    // Never replaced without --force: same bytes afterwards.
    let refused = me.fails(&["key", "create"], 2).await;
    assert!(refused.contains("already exists") && refused.contains("--force"), "{refused}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
    let (stdout, _) = me.ok(&["key", "create", "--force"]).await;
    let replaced: PublicKey = stdout.trim().parse().unwrap();
    assert_ne!(replaced, public);
    assert_eq!(me.ok(&["key", "show"]).await.0.trim(), replaced.to_string());
    assert_eq!(mode(&path), 0o600, "still owner-only after --force");

    // KANADE_SIGNING_KEY names the file; --out and --key name one for this command only.
    let env_path = me.path("from-env.key");
    let mut cmd = me.command(&["key", "create"]);
    cmd.env("KANADE_SIGNING_KEY", &env_path);
    let out = me.run_command(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(mode(&env_path), 0o600);
    let from_env = text(&out.stdout);
    let other = me.new_key("other.key").await;
    let other_path = me.path("other.key");
    assert_eq!(me.ok(&["key", "show", "--key", other_path.to_str().unwrap()]).await.0.trim(), other.to_string());
    assert_eq!(
        me.ok(&["key", "show", "--key", env_path.to_str().unwrap()]).await.0,
        from_env,
        "the key written through KANADE_SIGNING_KEY"
    );

    // Hostile or missing files: a clear error, exit 1.
    let missing = me.path("missing.key");
    let err = me.fails(&["key", "show", "--key", missing.to_str().unwrap()], 1).await;
    assert!(err.contains("kanade key create"), "{err}");
    let garbage = me.path("garbage.key");
    std::fs::write(&garbage, "ed25519:not-a-private-key").unwrap();
    let err = me.fails(&["key", "show", "--key", garbage.to_str().unwrap()], 1).await;
    assert!(err.contains("is not an Ed25519 signing key"), "{err}");
    let huge = me.path("huge.key");
    std::fs::write(&huge, vec![b'A'; 3 * 1024 * 1024]).unwrap();
    let err = me.fails(&["key", "show", "--key", huge.to_str().unwrap()], 1).await;
    assert!(err.contains("1 MiB") && err.len() < 1000, "{err}");
    // A folder in the way: refused without --force, and a write error (not a panic) with it.
    let folder = me.path("a-folder");
    std::fs::create_dir(&folder).unwrap();
    me.fails(&["key", "create", "--out", folder.to_str().unwrap()], 2).await;
    me.fails(&["key", "create", "--out", folder.to_str().unwrap(), "--force"], 1).await;
    assert!(folder.is_dir());
}

#[cfg(unix)]
#[tokio::test]
async fn security_init_writes_the_offline_root_the_backend_key_and_a_first_list_only_the_root_opens() {
    init_logging();
    let me = Operator::new("nats://127.0.0.1:1");
    let admin = SigningKey::generate().public_key();
    let dir = me.path("fleet");
    let dir_text = dir.to_str().unwrap();
    let rows = me
        .ok_json(&["security", "init", "--dir", dir_text, "--admin-key", &admin.to_string(), "--admin-name", "alice"])
        .await;
    let row = |name: &str| -> Value {
        let file = dir.join(name).display().to_string();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["file"] == file)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {rows:#}"))
    };
    assert_eq!(row(files::TRUST_ROOT_KEY)["secret"], true);
    assert_eq!(row(files::TRUST_ROOT_KEY)["holders"], json!(["offline"]));
    assert_eq!(row(files::TRUST_ROOT_PUB)["secret"], false);
    assert_eq!(row(files::TRUST_ROOT_PUB)["holders"], json!(["agents", "cli", "backend"]));
    assert_eq!(row(files::BACKEND_SIGNING_KEY)["secret"], true);
    assert_eq!(row(files::BACKEND_SIGNING_KEY)["holders"], json!(["backend"]));
    assert_eq!(row(files::TRUST_LIST)["secret"], false);
    for name in [files::TRUST_ROOT_KEY, files::BACKEND_SIGNING_KEY] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    for name in [files::TRUST_ROOT_PUB, files::TRUST_LIST] {
        assert_eq!(mode(&dir.join(name)), 0o644, "{name}");
    }

    let root = files::read_signing_key(&dir.join(files::TRUST_ROOT_KEY)).unwrap();
    assert_eq!(files::read_public_key(&dir.join(files::TRUST_ROOT_PUB)).unwrap(), root.public_key());
    let backend = files::read_signing_key(&dir.join(files::BACKEND_SIGNING_KEY)).unwrap().public_key();
    let signed = files::read_trust_list(&dir.join(files::TRUST_LIST)).unwrap();
    let list = signed.open(&root.public_key()).expect("the first list opens under the root");
    assert_eq!(list.version, 1);
    let listed = |key: &PublicKey| {
        let e = list.find(key).unwrap();
        (e.name.to_string(), e.role, e.scope.clone(), e.revoked)
    };
    assert_eq!(listed(&backend), ("backend".to_owned(), Role::Operator, GroupScope::Fleet, false));
    assert_eq!(listed(&admin), ("alice".to_owned(), Role::Admin, GroupScope::Fleet, false));
    assert!(signed.open(&SigningKey::generate().public_key()).is_err(), "no other root opens it");
    // The test kit's own fleet, made by the same code, holds the same files.
    for name in [files::TRUST_ROOT_KEY, files::TRUST_ROOT_PUB, files::BACKEND_SIGNING_KEY, files::TRUST_LIST] {
        assert!(fleet().file(name).is_file(), "{name}");
    }

    // Bad arguments: exit 2 and nothing written.
    for (args, says) in [
        (vec!["--admin-key", "ed25519:garbage"], "is not a public key"),
        (vec!["--admin-key", &admin.to_string(), "--admin-name", "Not A Name"], "actor"),
        (vec!["--admin-name", "bob"], "--admin-key"),
    ] {
        let other = me.path("refused");
        let mut full = vec!["security", "init", "--dir", other.to_str().unwrap()];
        full.extend(args);
        let err = me.fails(&full, 2).await;
        assert!(err.contains(says), "{err}");
        assert!(!other.exists());
    }
}

#[tokio::test]
async fn push_add_revoke_and_show_move_the_list_forward_one_audited_version_at_a_time() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    let js = bare_broker(&url).await;
    let me = Operator::new(&url);
    let list_file = fleet_file(files::TRUST_LIST);

    let err = me.fails(&["trust", "show", "--root-file", &root_pub()], 1).await;
    assert!(err.contains("no trust list is stored") && err.contains("kanade trust push"), "{err}");

    let (_, note) = me.ok(&["trust", "push", &list_file, "--root-file", &root_pub()]).await;
    assert!(note.contains("version 1"), "{note}");
    let v1 = me.show().await;
    assert_eq!((v1["version"].as_u64(), &v1["verified"]), (Some(1), &json!(true)));
    let backend = files::read_signing_key(&fleet().file(files::BACKEND_SIGNING_KEY)).unwrap().public_key();
    let listed = entry(&v1, &backend);
    assert_eq!(
        (&listed["name"], &listed["role"], &listed["scope"], &listed["revoked"]),
        (&json!("backend"), &json!("operator"), &json!("fleet"), &json!(false))
    );
    let err = me.fails(&["trust", "push", &list_file, "--root-file", &root_pub()], 1).await;
    assert!(err.contains("not newer"), "{err}");

    // An operator's key, scoped to two groups; the same again changes nothing.
    let alice = me.new_key("alice.key").await;
    let add = |key: PublicKey, role: &str, groups: Option<&str>| {
        let mut args = vec!["trust".to_owned(), "add".into(), "alice".into(), "--key".into(), key.to_string()];
        args.extend(["--role".into(), role.into(), "--root-key".into(), root_key()]);
        if let Some(groups) = groups {
            args.extend(["--groups".into(), groups.into()]);
        }
        args
    };
    let args = add(alice, "operator", Some("office,lab"));
    let added = me.ok_json(&refs(&args)).await;
    assert_eq!(added["version"], 2);
    let v2 = me.show().await;
    assert_eq!(entry(&v2, &alice)["scope"], json!(["lab", "office"]));
    assert_eq!(entry(&v2, &alice)["role"], "operator");
    let (_, note) = me.ok(&refs(&args)).await;
    assert!(note.contains("nothing changed"), "{note}");
    assert_eq!(me.show().await["version"], 2);

    // Its role and scope replaced.
    me.ok(&refs(&add(alice, "approver", None))).await;
    let v3 = me.show().await;
    assert_eq!(
        (&v3["version"], &entry(&v3, &alice)["role"], &entry(&v3, &alice)["scope"]),
        (&json!(3), &json!("approver"), &json!("fleet"))
    );

    // Rotation: the new key added while the old one still works, then the old one revoked; never a gap.
    let rotated = me.new_key("alice-2.key").await;
    me.ok(&refs(&add(rotated, "approver", None))).await;
    let v4 = me.show().await;
    assert_eq!(v4["version"], 4);
    assert_eq!((&entry(&v4, &alice)["revoked"], &entry(&v4, &rotated)["revoked"]), (&json!(false), &json!(false)));
    let revoked = me.ok_json(&["trust", "revoke", &alice.to_string(), "--root-key", &root_key()]).await;
    assert_eq!(revoked, json!({ "version": 5, "revoked": [alice.to_string()] }));
    let v5 = me.show().await;
    assert_eq!((&entry(&v5, &alice)["revoked"], &entry(&v5, &rotated)["revoked"]), (&json!(true), &json!(false)));

    // By name: every key of it; a revoked key stays listed and is never trusted again.
    me.ok(&["trust", "revoke", "alice", "--root-key", &root_key()]).await;
    let v6 = me.show().await;
    assert_eq!(v6["version"], 6);
    let first = v1["keys"].as_array().unwrap().len();
    assert_eq!(v6["keys"].as_array().unwrap().len(), first + 2, "nothing is deleted");
    assert_eq!(entry(&v6, &rotated)["revoked"], true);
    assert_eq!(entry(&v6, &backend)["revoked"], false);
    let (_, note) = me.ok(&["trust", "revoke", "alice", "--root-key", &root_key()]).await;
    assert!(note.contains("nothing changed"), "{note}");
    let err = me.fails(&refs(&add(alice, "operator", None)), 1).await;
    assert!(err.contains("revoked"), "{err}");
    let err = me.fails(&["trust", "revoke", "carol", "--root-key", &root_key()], 1).await;
    assert!(err.contains("`carol` is not in the trust list"), "{err}");
    // The first version again: an old list cannot be played back.
    let err = me.fails(&["trust", "push", &list_file, "--root-file", &root_pub()], 1).await;
    assert!(err.contains("version 1 is not newer than version 6"), "{err}");
    assert_eq!(me.show().await["version"], 6);

    // The table for people: the version line, then a row per key.
    let (table, _) = me.ok(&["trust", "show", "--root-file", &root_pub()]).await;
    let mut lines = table.lines();
    let summary = lines.next().unwrap();
    assert!(summary.contains("version 6") && summary.contains("(verified)"), "{summary}");
    assert!(lines.next().unwrap().starts_with("NAME"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains("revoked")).count(), 2, "{table}");
    let (csv, _) = me.ok(&["trust", "show", "--root-file", &root_pub(), "-o", "csv"]).await;
    assert!(csv.starts_with("NAME,KEY,ROLE,SCOPE,REVOKED,ADDED\n") && csv.lines().count() == first + 3, "{csv}");

    // Every change audited with the version it made.
    let events = eventually("the trust changes are audited", PATIENCE, || async {
        let events: Vec<AuditEvent> =
            audit_events(&js).await.into_iter().filter(|e| e.action.as_str().starts_with("trust-")).collect();
        (events.len() == 6).then_some(events)
    })
    .await;
    let seen: Vec<(&str, &str, u64)> =
        events.iter().map(|e| (e.action.as_str(), e.target.as_str(), e.details["version"].as_u64().unwrap())).collect();
    let alice_text = alice.to_string();
    assert_eq!(
        seen,
        vec![
            ("trust-push", "trust_list/current", 1),
            ("trust-add", "alice", 2),
            ("trust-add", "alice", 3),
            ("trust-add", "alice", 4),
            ("trust-revoke", alice_text.as_str(), 5),
            ("trust-revoke", "alice", 6),
        ]
    );
    assert!(events.iter().all(|e| e.actor.as_str() == "trust-keeper" && e.source == "cli"));
    assert_eq!(events[1].details["scope"], json!(["lab", "office"]));
    assert_eq!(events[5].details["keys"], json!([rotated.to_string()]));
}

#[tokio::test]
async fn a_list_under_another_root_is_refused_by_push_show_and_add() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    bare_broker(&url).await;
    let me = Operator::new(&url);
    me.ok(&["trust", "push", &fleet_file(files::TRUST_LIST), "--root-file", &root_pub()]).await;

    // Another root's list, however new, is not the fleet's.
    let impostor = SigningKey::generate();
    let mallory = TrustedKey::new(
        Actor::new("mallory").unwrap(),
        SigningKey::generate().public_key(),
        Role::Admin,
        GroupScope::Fleet,
        chrono::Utc::now(),
    );
    let forged = TrustList { version: 99, issued_at: chrono::Utc::now(), keys: vec![mallory] };
    let forged_file = me.path("forged.json");
    std::fs::write(&forged_file, SignedTrustList::sign(&forged, &impostor).unwrap().encode()).unwrap();
    let forged_path = forged_file.to_str().unwrap();
    let err = me.fails(&["trust", "push", forged_path, "--root-file", &root_pub()], 1).await;
    assert!(err.contains("not by the fleet's root"), "{err}");
    // Named as the root on the command line, it still does not replace the fleet's list.
    let impostor_pub = impostor.public_key().to_string();
    let err = me.fails(&["trust", "push", forged_path, "--root", &impostor_pub], 1).await;
    assert!(err.contains("signed by another root"), "{err}");
    let err = me.fails(&["trust", "show", "--root", &impostor_pub], 1).await;
    assert!(err.contains("not the fleet's"), "{err}");
    let impostor_key = me.path("impostor.key");
    std::fs::write(&impostor_key, impostor.to_pem()).unwrap();
    let someone = SigningKey::generate().public_key().to_string();
    let args =
        ["trust", "add", "mallory", "--key", &someone, "--role", "admin", "--root-key", impostor_key.to_str().unwrap()];
    let err = me.fails(&args, 1).await;
    assert!(err.contains("does not open under this root key"), "{err}");
    let err = me.fails(&["trust", "revoke", "backend", "--root-key", impostor_key.to_str().unwrap()], 1).await;
    assert!(err.contains("does not open under this root key"), "{err}");

    // The fleet's own list, changed after it was signed.
    let mut tampered = files::read_trust_list(&fleet().file(files::TRUST_LIST)).unwrap();
    tampered.list = tampered.list.replace("\"version\":1", "\"version\":7").replace("operator", "admin");
    let tampered_file = me.path("tampered.json");
    std::fs::write(&tampered_file, tampered.encode()).unwrap();
    let err = me.fails(&["trust", "push", tampered_file.to_str().unwrap(), "--root-file", &root_pub()], 1).await;
    assert!(err.contains("does not verify"), "{err}");

    // Still version 1, the fleet's. Without a root it is shown only when asked, and said to be unchecked.
    assert_eq!(me.show().await["version"], 1);
    let err = me.fails(&["trust", "show"], 2).await;
    assert!(err.contains("--root-file") && err.contains("--unverified"), "{err}");
    let out = me.run(&["trust", "show", "--unverified", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("NOT verified"), "{}", text(&out.stderr));
    let unverified: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&unverified["version"], &unverified["verified"]), (&json!(1), &json!(false)));
}

#[tokio::test]
async fn add_with_no_list_stored_starts_version_one_and_concurrent_adds_lose_nothing() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    bare_broker(&url).await;
    let me = Operator::new(&url);

    let err = me.fails(&["trust", "revoke", "alice", "--root-key", &root_key()], 1).await;
    assert!(err.contains("no trust list is stored"), "{err}");
    let alice = me.new_key("alice.key").await.to_string();
    let (_, note) =
        me.ok(&["trust", "add", "alice", "--key", &alice, "--role", "admin", "--root-key", &root_key()]).await;
    assert!(note.contains("no trust list is stored yet") && note.contains("version 1"), "{note}");
    let v1 = me.show().await;
    assert_eq!((&v1["version"], v1["keys"].as_array().unwrap().len()), (&json!(1), 1));
    // `security init`'s version 1 is now too old: the backend's key has to be added by hand.
    me.fails(&["trust", "push", &fleet_file(files::TRUST_LIST), "--root-file", &root_pub()], 1).await;

    // Several admins at once: each add reads version n and offers n + 1, so at most one per version is stored and
    // the others are refused (compare-and-set), never silently lost.
    let mut keys = Vec::new();
    for i in 0..4 {
        keys.push((format!("op{i}"), me.new_key(&format!("op{i}.key")).await.to_string()));
    }
    let runs = keys.iter().map(|(name, key)| {
        me.run_command(me.command(&[
            "trust",
            "add",
            name,
            "--key",
            key,
            "--role",
            "operator",
            "--root-key",
            &root_key(),
        ]))
    });
    let outs = futures::future::join_all(runs).await;
    let mut stored = Vec::new();
    for ((name, key), out) in keys.iter().zip(&outs) {
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        match out.status.code() {
            Some(0) => stored.push(key.clone()),
            Some(1) => {
                assert!(stderr.contains("not newer") || stderr.contains("changed meanwhile"), "{name}: {stderr}")
            }
            other => panic!("{name}: exit {other:?}: {stderr}"),
        }
    }
    assert!(!stored.is_empty());
    let list = me.show().await;
    assert_eq!(list["version"].as_u64(), Some(1 + stored.len() as u64));
    let listed: Vec<&str> = list["keys"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 1 + stored.len());
    for key in &stored {
        assert!(listed.contains(&key.as_str()), "{key} was stored and then lost");
    }
}

#[tokio::test]
async fn hostile_input_gets_a_clear_error_and_the_documented_exit_code() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    bare_broker(&url).await;
    let me = Operator::new(&url);
    me.ok(&["trust", "push", &fleet_file(files::TRUST_LIST), "--root-file", &root_pub()]).await;
    let key = SigningKey::generate().public_key().to_string();
    let root = root_key();
    let huge_text = format!("ed25519:{}", "A".repeat(100_000));

    // Bad arguments: exit 2, before anything is read or sent.
    for (args, says) in [
        (
            vec!["trust", "add", "x", "--key", "garbage", "--role", "operator", "--root-key", &root],
            "is not a public key",
        ),
        (
            vec!["trust", "add", "x", "--key", "ed25519:AAAA", "--role", "operator", "--root-key", &root],
            "is not a public key",
        ),
        (
            vec!["trust", "add", "x", "--key", &huge_text, "--role", "operator", "--root-key", &root],
            "is not a public key",
        ),
        (vec!["trust", "add", "x", "--key", &key, "--role", "root", "--root-key", &root], "`root` is not a role"),
        (
            vec!["trust", "add", "x", "--key", &key, "--role", "admin", "--groups", "office", "--root-key", &root],
            "an admin acts on the whole fleet",
        ),
        (vec!["trust", "add", "Not A Name", "--key", &key, "--role", "operator", "--root-key", &root], "actor"),
        (
            vec![
                "trust",
                "add",
                "x",
                "--key",
                &key,
                "--role",
                "operator",
                "--groups",
                "Bad Group",
                "--root-key",
                &root,
            ],
            "group name",
        ),
        (vec!["trust", "add", "x", "--key", &key, "--role", "operator"], "--root-key"),
        (vec!["trust", "revoke", "ed25519:garbage", "--root-key", &root], "is not a public key"),
        (vec!["trust", "revoke", "x"], "--root-key"),
        (vec!["trust", "show", "--root", "ed25519:garbage"], "is not a public key"),
        (vec!["trust", "show", "--root", &key, "--root-file", "x"], "cannot be used with"),
        (vec!["trust", "push", "list.json"], "--root"),
        (vec!["trust", "push", "list.json", "--root", "nope"], "is not a public key"),
    ] {
        let err = me.fails(&args, 2).await;
        assert!(err.contains(says), "{}: {err}", shown(&args));
    }
    let root_pub_text = std::fs::read_to_string(fleet().file(files::TRUST_ROOT_PUB)).unwrap();
    let err = me
        .fails(&["trust", "add", "x", "--key", root_pub_text.trim(), "--role", "admin", "--root-key", &root], 2)
        .await;
    assert!(err.contains("trust root's own key"), "{err}");

    // Files that are not what they should be: exit 1 with the file named, bounded.
    let garbage = me.path("garbage");
    std::fs::write(&garbage, "{\"list\": 1}").unwrap();
    let huge = me.path("huge");
    std::fs::write(&huge, vec![b' '; kanade_shared::authority::trust::MAX_TRUST_LIST_BYTES + 1]).unwrap();
    let huge_key = me.path("huge.key");
    std::fs::write(&huge_key, vec![b'A'; 2 * 1024 * 1024]).unwrap();
    let garbage = garbage.to_str().unwrap();
    let huge = huge.to_str().unwrap();
    let huge_key = huge_key.to_str().unwrap();
    let missing = me.path("missing");
    let missing = missing.to_str().unwrap();
    for (args, says) in [
        (vec!["trust", "push", garbage, "--root-file", &root_pub()], "not readable"),
        (vec!["trust", "push", huge, "--root-file", &root_pub()], "the limit is"),
        (vec!["trust", "push", missing, "--root-file", &root_pub()], "cannot read"),
        (vec!["trust", "push", &fleet_file(files::TRUST_LIST), "--root-file", garbage], "is not a public key"),
        (vec!["trust", "push", &fleet_file(files::TRUST_LIST), "--root-file", huge], "is not a public key"),
        (vec!["trust", "push", &fleet_file(files::TRUST_LIST), "--root-file", huge_key], "1 MiB"),
        (vec!["trust", "show", "--root-file", missing], "cannot read"),
        (
            vec!["trust", "add", "x", "--key", &key, "--role", "operator", "--root-key", garbage],
            "is not an Ed25519 signing key",
        ),
        (vec!["trust", "add", "x", "--key", &key, "--role", "operator", "--root-key", huge_key], "1 MiB"),
        (vec!["trust", "revoke", "backend", "--root-key", missing], "cannot read"),
        // The public half where the private key belongs.
        (vec!["trust", "revoke", "backend", "--root-key", &root_pub()], "is not an Ed25519 signing key"),
    ] {
        let err = me.fails(&args, 1).await;
        assert!(err.contains(says) && err.len() < 2000, "{}: {err}", shown(&args));
    }
    // Nothing above changed the stored list.
    assert_eq!(me.show().await["version"], 1);
}
