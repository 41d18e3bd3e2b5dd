//! The CLI in the shell around it: the completion script of each shell, and who the operator is when the
//! environment does not say (a service or a container has no `USER`).

use std::time::Duration;

use kanade_testkit::{NatsServer, TestBackend, connect, eventually, init_logging};

const BINARY: &str = env!("CARGO_BIN_EXE_kanade");

#[test]
fn each_shell_gets_a_completion_script_naming_the_subcommands() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef kanade"),
        ("fish", "complete -c kanade"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out =
            std::process::Command::new(BINARY).args(["completions", shell]).env_clear().output().expect("run kanade");
        let script = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(script.contains(marker), "{shell}: no `{marker}` in:\n{script}");
        for subcommand in ["run", "deploy", "executions", "jetstream", "completions"] {
            assert!(script.contains(subcommand), "{shell}: the script does not mention `{subcommand}`");
        }
        assert!(script.contains("nats-url"), "{shell}: global flags are completed too");
    }
    for bad in [
        &["completions"][..],
        &["completions", "tcsh"],
        &["completions", "bash", "zsh"],
        &["completions", &"x".repeat(10_000)],
    ] {
        let out = std::process::Command::new(BINARY).args(bad).env_clear().output().expect("run kanade");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{bad:?}: nothing on stdout");
        // clap echoes a bad value back (the OS bounds an argument's length); what matters is exit 2 and a hint.
        assert!(stderr.contains("error:"), "{bad:?}: {stderr}");
        if bad.len() == 2 {
            assert!(stderr.contains("possible values: bash, elvish, fish, powershell, zsh"), "{bad:?}: {stderr}");
        }
    }
}

/// Regression: with `USER` unset the CLI recorded the operator as `unknown`. It now asks the OS for the account.
#[tokio::test]
async fn without_user_variables_the_operator_is_the_os_account() {
    init_logging();
    let nats = NatsServer::start();
    let url = nats.url();
    connect(&url).await;
    let backend = TestBackend::start(&url).await;
    let account = std::process::Command::new("id").arg("-un").output().expect("run id -un");
    let account = String::from_utf8_lossy(&account.stdout).trim().to_owned();
    assert!(!account.is_empty(), "this machine names its account");
    let out = kanade_testkit::kanade_cli(BINARY, &url)
        .args(["revoke", "patch"])
        .env_remove("USER")
        .env_remove("USERNAME")
        .env_remove("LOGNAME")
        .output()
        .await
        .expect("run kanade");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let events = eventually("the revoke is audited", Duration::from_secs(20), || async {
        let (status, body) = backend.get("/api/audit?action=revoke").await;
        assert_eq!(status, 200, "{body}");
        (body["items"].as_array()?.len() == 1).then_some(body["items"].clone())
    })
    .await;
    let expected = kanade_shared::Actor::from_login(&account);
    assert_eq!(events[0]["actor"], expected.as_str(), "{events}");
    assert_ne!(events[0]["actor"], "unknown");
}
