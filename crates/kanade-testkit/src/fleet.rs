//! Talking to agents the way the CLI and backend do: build a command, publish it into `EXEC`, watch results.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Command, ExecResult, Shell};
use kanade_shared::{ExecId, JobId};

/// An ad-hoc `sh` command with a 30 s timeout.
pub fn command(script: &str) -> Command {
    let exec = ExecId::generate();
    Command {
        job_id: JobId::adhoc(&exec),
        exec_id: exec,
        version: String::new(),
        shell: Shell::Sh,
        script: script.to_owned(),
        timeout: Duration::from_secs(30),
        issued_at: chrono::Utc::now(),
        deadline: None,
        jitter: None,
        run_as: Default::default(),
        cwd: None,
        consent: None,
    }
}

/// Publishes `command` into `EXEC` for `target`, signed by the test fleet's operator, and waits for the broker's
/// ack.
pub async fn publish(js: &jetstream::Context, target: &Target, command: &Command) {
    publish_signed(js, target, command, Some(crate::security::fleet().signer())).await;
}

/// The message that carries `body` to `subject_name`, signed by `signer` (or not at all) as the CLI and the backend
/// sign commands.
pub fn command_message(
    subject_name: &str,
    body: Vec<u8>,
    signer: Option<&kanade_shared::authority::SigningKey>,
) -> PublishMessage {
    let mut message = PublishMessage::build();
    if let Some(signer) = signer {
        message = message.headers(kanade_ops::signing::signed_headers(
            signer,
            subject_name,
            &body,
            kanade_ops::signing::COMMAND_LIFETIME,
        ));
    }
    message.payload(body.into())
}

/// Publishes `command` into `EXEC` for `target`, signed by `signer` (or not at all), and waits for the broker's ack.
pub async fn publish_signed(
    js: &jetstream::Context,
    target: &Target,
    command: &Command,
    signer: Option<&kanade_shared::authority::SigningKey>,
) {
    let body = serde_json::to_vec(command).expect("encode command");
    let subject_name = subject::command(target, &command.job_id);
    let message = command_message(&subject_name, body, signer).message_id(command.exec_id.as_str());
    js.send_publish(subject_name, message).await.expect("publish command").await.expect("command stored");
}

/// Every result published on the server, collected from the moment it was created.
pub struct ResultWatch {
    subscription: async_nats::Subscriber,
    seen: Vec<ExecResult>,
}

impl ResultWatch {
    pub async fn new(client: &async_nats::Client) -> Self {
        let subscription = client.subscribe(subject::RESULTS_ALL).await.expect("subscribe to results");
        client.flush().await.expect("flush");
        Self { subscription, seen: Vec::new() }
    }

    /// Waits for the first result of `exec`, or panics after `patience`.
    pub async fn next_for(&mut self, exec: &ExecId, patience: Duration) -> ExecResult {
        if let Some(found) = self.seen.iter().find(|r| &r.exec_id == exec) {
            return found.clone();
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let message = tokio::time::timeout_at(deadline, self.subscription.next())
                .await
                .unwrap_or_else(|_| panic!("no result for exec `{exec}` within {patience:?}"))
                .expect("results subscription ended");
            let result: ExecResult = serde_json::from_slice(&message.payload).expect("decode result");
            self.seen.push(result.clone());
            if &result.exec_id == exec {
                return result;
            }
        }
    }

    /// How many results for `exec` have been seen so far (duplicates included).
    pub fn seen_for(&self, exec: &ExecId) -> usize {
        self.seen.iter().filter(|r| &r.exec_id == exec).count()
    }

    /// Collects results for `exec` until `count` distinct pcs answered, or panics after `patience`.
    pub async fn all_for(&mut self, exec: &ExecId, count: usize, patience: Duration) -> HashMap<String, ExecResult> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut found: HashMap<String, ExecResult> =
            self.seen.iter().filter(|r| &r.exec_id == exec).map(|r| (r.pc_id.to_string(), r.clone())).collect();
        while found.len() < count {
            let message = tokio::time::timeout_at(deadline, self.subscription.next())
                .await
                .unwrap_or_else(|_| panic!("only {} of {count} results for `{exec}` within {patience:?}", found.len()))
                .expect("results subscription ended");
            let result: ExecResult = serde_json::from_slice(&message.payload).expect("decode result");
            self.seen.push(result.clone());
            if &result.exec_id == exec {
                found.insert(result.pc_id.to_string(), result);
            }
        }
        found
    }
}
