//! The real `kanade user`, `login`, `logout`, `whoami` and `token` against a real backend and broker: the first
//! admin from the setup token, a session kept owner-only in the config folder (`KANADE_CONFIG_DIR`) and refreshed
//! when its session token has expired, sent only to the backend that made it; accounts managed, API tokens made,
//! used, listed and revoked; and wrong passwords, missing terminals and roles too low refused with their exit codes.

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use kanade_testkit::{NatsServer, TestBackend, connect, init_logging};
use serde_json::Value;
use tokio::process::Command;

mod common;
use common::{ok, ok_json, refused, text};

const PASSWORD: &str = "correct horse battery staple";

/// The CLI pointed at a test's broker and backend, with its config folder in `config` and no token of its own.
fn kanade(nats_url: &str, backend_url: &str, config: &Path) -> Command {
    let mut cmd = kanade_testkit::kanade_cli(env!("CARGO_BIN_EXE_kanade"), nats_url);
    cmd.env("KANADE_BACKEND_URL", backend_url).env("KANADE_CONFIG_DIR", config).env("KANADE_OPERATOR", "root");
    cmd
}

/// How long one CLI run may take (it hashes passwords and talks to a real backend).
const CLI_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs the CLI with `stdin` written to it.
async fn run_with(cmd: Command, args: &[&str], stdin: Option<&str>) -> Output {
    common::run_with(cmd, args, stdin, CLI_PATIENCE).await
}

struct System {
    _nats: NatsServer,
    nats_url: String,
    backend: TestBackend,
    setup_token: String,
    config: tempfile::TempDir,
}

impl System {
    async fn start() -> Self {
        init_logging();
        let nats = NatsServer::start();
        let nats_url = nats.url();
        connect(&nats_url).await;
        let slot = Arc::new(Mutex::new(None));
        let seen = slot.clone();
        let backend = TestBackend::start_tuned(
            &nats_url,
            tempfile::tempdir().unwrap(),
            None,
            |c| c,
            move |b| {
                *seen.lock().unwrap() = b.setup_token().map(str::to_owned);
                b
            },
        )
        .await;
        let setup_token = slot.lock().unwrap().clone().expect("a setup token");
        Self { _nats: nats, nats_url, backend, setup_token, config: tempfile::tempdir().unwrap() }
    }

    fn cmd(&self) -> Command {
        kanade(&self.nats_url, &self.backend.url(), self.config.path())
    }

    async fn run(&self, args: &[&str]) -> Output {
        run_with(self.cmd(), args, None).await
    }

    async fn run_in(&self, args: &[&str], stdin: &str) -> Output {
        run_with(self.cmd(), args, Some(stdin)).await
    }

    /// The first admin `root`, signed in.
    async fn signed_in_admin(&self) {
        let setup = ["user", "add", "root", "--role", "admin", "--setup-token", &self.setup_token, "--password-stdin"];
        ok(&self.run_in(&setup, &format!("{PASSWORD}\n")).await, "user add --setup-token");
        let login = self.run_in(&["login", "--name", "root", "--password-stdin"], &format!("{PASSWORD}\n")).await;
        ok(&login, "login");
    }

    fn session_file(&self) -> std::path::PathBuf {
        self.config.path().join("session.json")
    }
}

#[tokio::test]
async fn the_first_admin_signs_in_and_the_session_is_kept_owner_only_and_refreshed() {
    let system = System::start().await;
    let wrong = system
        .run_in(
            &["user", "add", "root", "--role", "admin", "--setup-token", "kanade_setup_nope", "--password-stdin"],
            &format!("{PASSWORD}\n"),
        )
        .await;
    refused(&wrong, 1, "setup refused", "a wrong setup token");
    let viewer = system
        .run_in(
            &["user", "add", "root", "--role", "viewer", "--setup-token", &system.setup_token, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        )
        .await;
    refused(&viewer, 2, "--role admin", "the setup token makes an admin only");
    system.signed_in_admin().await;

    let file = system.session_file();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "owner-only");
    }
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored["backend_url"], system.backend.url());
    assert!(stored["refresh_token"].as_str().unwrap().starts_with("kanade_refresh_"));

    let me = ok_json(&system.run(&["whoami", "-o", "json"]).await, "whoami");
    assert_eq!(
        (me["actor"].as_str(), me["role"].as_str(), me["method"].as_str()),
        (Some("root"), Some("admin"), Some("session"))
    );
    let table = ok(&system.run(&["whoami"]).await, "whoami table");
    assert!(table.contains("root") && table.contains("admin") && table.contains("fleet"), "{table}");

    // An expired session token is refreshed on the next command, and the file holds the new tokens.
    let mut expired = stored.clone();
    expired["expires_at"] = Value::String("2000-01-01T00:00:00Z".into());
    std::fs::write(&file, serde_json::to_vec(&expired).unwrap()).unwrap();
    ok(&system.run(&["agents"]).await, "agents with an expired session token");
    let renewed: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_ne!(renewed["refresh_token"], stored["refresh_token"]);
    assert_ne!(renewed["expires_at"], expired["expires_at"]);

    // The session goes to the backend that made it only.
    let elsewhere =
        run_with(kanade(&system.nats_url, "http://127.0.0.1:9", system.config.path()), &["whoami"], None).await;
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(!text(&elsewhere.stderr).contains("panicked"));

    ok(&system.run(&["logout"]).await, "logout");
    assert!(!file.exists(), "logout removes the stored session");
    let out = system.run(&["whoami"]).await;
    refused(&out, 1, "kanade login", "signed out");
    // The session ended on the backend too: its refresh token is spent.
    let reply = reqwest::Client::new()
        .post(format!("{}/api/refresh", system.backend.url()))
        .json(&serde_json::json!({"refresh_token": renewed["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 401);
    ok(&system.run(&["logout"]).await, "logout when signed out");
}

#[tokio::test]
async fn sign_in_refuses_wrong_passwords_and_needs_a_terminal_or_stdin() {
    let system = System::start().await;
    system.signed_in_admin().await;
    let wrong = system.run_in(&["login", "--name", "root", "--password-stdin"], "not the password at all\n").await;
    refused(&wrong, 1, "wrong name or password", "a wrong password");
    // stdin is not a terminal and no --password-stdin: nothing to ask on.
    let no_tty = system.run(&["login", "--name", "root"]).await;
    refused(&no_tty, 2, "--password-stdin", "no terminal");
    let empty = system.run_in(&["login", "--name", "root", "--password-stdin"], "").await;
    refused(&empty, 1, "stdin ended", "nothing on stdin");
}

#[tokio::test]
async fn an_admin_manages_accounts_and_a_user_makes_uses_and_revokes_api_tokens() {
    let system = System::start().await;
    system.signed_in_admin().await;
    let pw = format!("{PASSWORD}\n");
    let added = system
        .run_in(
            &["user", "add", "otto", "--role", "operator", "--groups", "office,lab", "--password-stdin", "-o", "json"],
            &pw,
        )
        .await;
    let added = ok_json(&added, "user add otto");
    assert_eq!(
        (added["role"].as_str(), added["scope"].clone()),
        (Some("operator"), serde_json::json!(["lab", "office"]))
    );
    let short = system.run_in(&["user", "add", "weak", "--role", "viewer", "--password-stdin"], "short\n").await;
    refused(&short, 2, "at least 12", "a short password");
    let scoped_admin =
        system.run_in(&["user", "add", "boss", "--role", "admin", "--groups", "office", "--password-stdin"], &pw).await;
    refused(&scoped_admin, 2, "whole fleet", "an admin limited to groups");
    let bad_name = system.run_in(&["user", "add", "Bad Name", "--role", "viewer", "--password-stdin"], &pw).await;
    assert_eq!(bad_name.status.code(), Some(2), "{}", text(&bad_name.stderr));

    let listed = ok(&system.run(&["user", "list"]).await, "user list");
    assert!(listed.contains("otto") && listed.contains("lab,office") && listed.contains("root"), "{listed}");
    let listed = ok_json(&system.run(&["user", "list", "-o", "json"]).await, "user list -o json");
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    let set =
        ok_json(&system.run(&["user", "set", "otto", "--role", "approver", "--fleet", "-o", "json"]).await, "user set");
    assert_eq!((set["role"].as_str(), set["scope"].as_str()), (Some("approver"), Some("fleet")));
    let key = kanade_shared::authority::SigningKey::generate().public_key().to_string();
    let keyed = ok_json(&system.run(&["user", "key", "otto", &key, "-o", "json"]).await, "user key");
    assert_eq!(keyed["signing_key"], key.as_str());
    refused(&system.run(&["user", "key", "otto", "ed25519:nope"]).await, 2, "ed25519", "a malformed key");
    let totp = ok(&system.run(&["user", "totp", "otto"]).await, "user totp");
    assert!(totp.trim().starts_with("otpauth://totp/kanade:otto?"), "{totp}");
    ok(&system.run(&["user", "totp", "otto", "--disable"]).await, "user totp --disable");
    ok(
        &system.run_in(&["user", "passwd", "otto", "--password-stdin"], "another long passphrase\n").await,
        "passwd otto",
    );

    // otto signs in in a config folder of its own and makes an API token.
    let otto_config = tempfile::tempdir().unwrap();
    let otto = || kanade(&system.nats_url, &system.backend.url(), otto_config.path());
    ok(
        &run_with(otto(), &["login", "--name", "otto", "--password-stdin"], Some("another long passphrase\n")).await,
        "otto login",
    );
    let above = run_with(otto(), &["token", "create", "--role", "admin"], None).await;
    refused(&above, 1, "above its owner", "a token above its owner's role");
    let made = run_with(otto(), &["token", "create", "--role", "viewer", "--ttl", "2h", "--name", "ci"], None).await;
    let token = ok(&made, "token create");
    assert_eq!(token.lines().count(), 1, "the token alone: {token}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("kanade_api_"));
    assert!(text(&made.stderr).contains("role viewer"), "{}", text(&made.stderr));
    refused(&run_with(otto(), &["token", "create", "--ttl", "5m"], None).await, 2, "between 1h and 366d", "too short");

    // The token works as `--token`, as a viewer acting as otto, from anywhere.
    let mut with_token = kanade(&system.nats_url, &system.backend.url(), tempfile::tempdir().unwrap().path());
    with_token.env("KANADE_AUTH_TOKEN", &token);
    let me = ok_json(&run_with(with_token, &["whoami", "-o", "json"], None).await, "whoami with the token");
    assert_eq!(
        (me["actor"].as_str(), me["role"].as_str(), me["method"].as_str()),
        (Some("otto"), Some("viewer"), Some("api_token"))
    );
    let list = ok(&run_with(otto(), &["token", "list"], None).await, "token list");
    assert!(list.contains("ci") && list.contains("viewer") && list.contains("active"), "{list}");
    let everyone = ok_json(&system.run(&["token", "list", "--everyone", "-o", "json"]).await, "token list --all");
    assert_eq!(everyone["items"][0]["user"], "otto");
    refused(
        &run_with(otto(), &["token", "list", "--everyone"], None).await,
        1,
        "admins only",
        "--everyone, not an admin",
    );

    ok(&run_with(otto(), &["token", "revoke", &token], None).await, "token revoke (the whole token)");
    let mut with_token = kanade(&system.nats_url, &system.backend.url(), tempfile::tempdir().unwrap().path());
    with_token.env("KANADE_AUTH_TOKEN", &token);
    refused(&run_with(with_token, &["whoami"], None).await, 1, "revoked", "a revoked token");
    refused(&run_with(otto(), &["token", "revoke", "not/an/id"], None).await, 2, "not an API token id", "a bad id");

    // Disabled, otto's session stops at once; removed, otto is gone.
    ok(&system.run(&["user", "disable", "otto"]).await, "user disable");
    refused(&run_with(otto(), &["whoami"], None).await, 1, "disabled", "a disabled user's session");
    ok(&system.run(&["user", "enable", "otto"]).await, "user enable");
    ok(&system.run(&["user", "rm", "otto"]).await, "user rm");
    let gone = system.run(&["user", "rm", "otto"]).await;
    refused(&gone, 1, "no user `otto`", "removing twice");
    // The last admin stays.
    refused(&system.run(&["user", "disable", "root"]).await, 1, "last enabled admin", "disabling the last admin");
    // A viewer cannot manage users.
    ok(&system.run_in(&["user", "add", "vera", "--role", "viewer", "--password-stdin"], &pw).await, "add vera");
    let vera_config = tempfile::tempdir().unwrap();
    let vera = || kanade(&system.nats_url, &system.backend.url(), vera_config.path());
    ok(&run_with(vera(), &["login", "--name", "vera", "--password-stdin"], Some(&pw)).await, "vera login");
    refused(&run_with(vera(), &["user", "list"], None).await, 1, "needs role `admin`", "a viewer listing users");
    // Their own password, with the current one first.
    let own = run_with(
        vera(),
        &["user", "passwd", "--password-stdin"],
        Some(&format!("{PASSWORD}\nyet another passphrase\n")),
    )
    .await;
    ok(&own, "own passwd");
    ok(&run_with(vera(), &["whoami"], None).await, "the session that changed it goes on");
}

#[test]
fn the_help_texts_name_the_roles_the_session_file_and_the_exit_codes() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kanade")).args(args).output().expect("run kanade");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let user = help(&["user", "add", "--help"]);
    for word in ["viewer", "operator", "approver", "admin", "--setup-token", "--password-stdin", "Exit codes"] {
        assert!(user.contains(word), "user add --help lacks `{word}`:\n{user}");
    }
    let login = help(&["login", "--help"]);
    assert!(login.contains("config folder") && login.contains("--totp"), "{login}");
    let token = help(&["token", "create", "--help"]);
    assert!(token.to_lowercase().contains("shown this once") && token.contains("90d"), "{token}");
    let top = help(&["--help"]);
    for command in ["login", "logout", "whoami", "user", "token"] {
        assert!(top.contains(command), "`{command}` is listed:\n{top}");
    }
}
