//! A stand-in for kanade-client in tests: `support/ipc_client.py` run by python3 as a given account (root when
//! none), connected to an agent's socket; the test writes lines to it and reads what the agent sent back. Unix only.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kanade_shared::client_ipc::{FromAgent, Outcome, Response};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::accounts::TestAccount;

/// How long a read waits for the agent.
const PATIENCE: Duration = Duration::from_secs(20);

/// A client process, running as `account` (root when `None`).
pub struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Client {
    pub fn connect(socket: &Path, account: Option<&TestAccount>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/ipc_client.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg(socket)
            .arg("15")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(account) = account {
            command.uid(account.uid()).gid(account.gid());
        }
        let mut child = command.spawn().expect("python3 runs the test client");
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, stdin, lines }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        // The client may be gone already (closed by the agent): that is for the reads to tell.
        let _ = stdin.write_all(bytes).await;
        let _ = stdin.flush().await;
    }

    pub async fn line(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes()).await;
    }

    /// The next line the agent sent, or the client's `<closed>`-style ending.
    pub async fn next(&mut self) -> String {
        tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("the client printed something in time")
            .expect("read the client's output")
            .unwrap_or_else(|| "<eof>".to_owned())
    }

    pub async fn next_message(&mut self) -> FromAgent {
        let line = self.next().await;
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("not a message from the agent ({err}): {line}"))
    }

    pub async fn next_response(&mut self) -> Response {
        loop {
            match self.next_message().await {
                FromAgent::Response(response) => return response,
                FromAgent::Push(_) => {}
            }
        }
    }

    /// Reads to the end: the last error the agent sent (its reason) and how the connection ended.
    pub async fn closing(&mut self) -> (String, String) {
        let mut reason = String::new();
        loop {
            let line = self.next().await;
            if line.starts_with('<') {
                return (reason, line);
            }
            if let Ok(FromAgent::Response(Response { outcome: Outcome::Error(err), .. })) = serde_json::from_str(&line)
            {
                reason = err.reason().to_owned();
            }
        }
    }

    pub async fn end(mut self) {
        self.stdin.take();
        let _ = self.child.kill().await;
    }
}
