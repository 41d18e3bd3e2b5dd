//! What every CLI test asserts about a finished `kanade` run: exit code, stdout, stderr, no panic. Each test file
//! is its own crate and uses a part of this, hence the allowance.
#![allow(dead_code)]

use std::process::Output;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use serde_json::Value;

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Arguments as a failure message shows them: a hostile megabyte cut short.
pub fn shown(args: &[&str]) -> String {
    format!("{:?}", args.iter().map(|a| a.chars().take(60).collect::<String>()).collect::<Vec<_>>())
}

/// Asserts exit 0 and returns stdout.
pub fn ok(out: &Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(0), "{what}\nstdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Asserts exit 0 and reads stdout as JSON.
pub fn ok_json(out: &Output, what: &str) -> Value {
    serde_json::from_str(&ok(out, what)).unwrap_or_else(|err| panic!("{what}: stdout is not JSON: {err}"))
}

/// Asserts exit 0 with the action audited, and returns stdout and stderr.
pub fn audited(out: &Output, what: &str) -> (String, String) {
    let (stdout, stderr) = (ok(out, what), text(&out.stderr));
    assert!(!stderr.contains("could not be audited"), "{what}: {stderr}");
    (stdout, stderr)
}

/// Asserts a failure with `code`, nothing on stdout and no panic, and returns stderr.
pub fn failed(out: &Output, code: i32, what: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: {stderr}");
    assert!(out.stdout.is_empty(), "{what}: nothing on stdout: {}", text(&out.stdout));
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    stderr
}

/// Asserts a failure with `code` whose message names `wanted`, nothing on stdout and no panic.
pub fn refused(out: &Output, code: i32, wanted: &str, what: &str) {
    let stderr = failed(out, code, what);
    assert!(stderr.contains(wanted), "{what}: stderr does not say `{wanted}`: {stderr}");
}

/// Runs `cmd` with `args` (and `stdin` written to it), and returns what it printed; gives up after `patience`.
pub async fn run_with(mut cmd: Command, args: &[&str], stdin: Option<&str>, patience: Duration) -> Output {
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().expect("run kanade");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    tokio::time::timeout(patience, child.wait_with_output()).await.expect("kanade finished in time").expect("output")
}
