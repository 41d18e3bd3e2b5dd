//! The agent's gate: may this command run now? A pure function over the command and the clock, so every rule is
//! unit-tested without a broker. Later rules (revocation, superseded versions) join here.

use chrono::{DateTime, Utc};
use kanade_shared::wire::{Command, Reason, RunAs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Run,
    Skip(Reason),
}

pub fn decide(command: &Command, now: DateTime<Utc>) -> Decision {
    if command.validate().is_err() {
        return Decision::Skip(Reason::Invalid);
    }
    if command.deadline.is_some_and(|deadline| deadline < now) {
        return Decision::Skip(Reason::Expired);
    }
    if command.run_as != RunAs::System {
        // Running as the logged-in user needs the platform's session APIs; until they exist, say so.
        return Decision::Skip(Reason::UnsupportedRunAs);
    }
    Decision::Run
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kanade_shared::wire::Shell;
    use kanade_shared::{ExecId, JobId};

    use super::*;

    fn command(now: DateTime<Utc>) -> Command {
        Command {
            exec_id: ExecId::new("e").unwrap(),
            job_id: JobId::new("j").unwrap(),
            version: String::new(),
            shell: Shell::Sh,
            script: "true".into(),
            timeout: Duration::from_secs(1),
            issued_at: now,
            deadline: None,
            run_as: RunAs::System,
            cwd: None,
        }
    }

    #[test]
    fn a_plain_command_runs() {
        let now = Utc::now();
        assert_eq!(decide(&command(now), now), Decision::Run);
    }

    #[test]
    fn past_deadline_is_expired() {
        let now = Utc::now();
        let mut cmd = command(now);
        cmd.deadline = Some(now - chrono::Duration::seconds(1));
        assert_eq!(decide(&cmd, now), Decision::Skip(Reason::Expired));
        cmd.deadline = Some(now + chrono::Duration::seconds(1));
        assert_eq!(decide(&cmd, now), Decision::Run);
    }

    #[test]
    fn limits_and_identities_are_enforced() {
        let now = Utc::now();
        let mut cmd = command(now);
        cmd.timeout = Duration::ZERO;
        assert_eq!(decide(&cmd, now), Decision::Skip(Reason::Invalid));
        let mut cmd = command(now);
        cmd.run_as = RunAs::User;
        assert_eq!(decide(&cmd, now), Decision::Skip(Reason::UnsupportedRunAs));
    }
}
