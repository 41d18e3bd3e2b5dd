//! The agent's gate: may this command run now? A pure function over the command and the clock, so every rule is
//! unit-tested without a broker. Later rules (revocation, superseded versions) join here.

use chrono::{DateTime, Utc};
use kanade_shared::wire::{Command, Reason, RunAs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Run,
    Skip(Reason),
}

/// What the agent knows about a command's job from the KV state it mirrors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobView {
    /// The version that may run (`script_current`), if one is set.
    pub current_version: Option<String>,
    /// `script_status` says `REVOKED`.
    pub revoked: bool,
}

/// Decides whether `command` may start now. Called when it arrives and again right before it starts, after any
/// jitter or queue wait, so a revocation or a newer version in between still stops it.
pub fn decide(command: &Command, now: DateTime<Utc>, job: &JobView) -> Decision {
    if command.validate().is_err() {
        return Decision::Skip(Reason::Invalid);
    }
    if job.revoked {
        return Decision::Skip(Reason::Revoked);
    }
    // Ad-hoc runs carry no version; a versioned run of a job whose current version is another one is stale.
    if !command.version.is_empty() && job.current_version.as_ref().is_some_and(|current| current != &command.version) {
        return Decision::Skip(Reason::Superseded);
    }
    if command.deadline.is_some_and(|deadline| deadline < now) {
        return Decision::Skip(Reason::Expired);
    }
    if command.run_as == RunAs::Unknown {
        // A newer identity than this agent knows. `user` and `system_gui` are resolved when the run starts (who is
        // at the screen then), by `platform::identity`.
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
            jitter: None,
            run_as: RunAs::System,
            cwd: None,
            consent: None,
        }
    }

    #[test]
    fn a_plain_command_runs() {
        let now = Utc::now();
        assert_eq!(decide(&command(now), now, &JobView::default()), Decision::Run);
    }

    #[test]
    fn past_deadline_is_expired() {
        let now = Utc::now();
        let mut cmd = command(now);
        cmd.deadline = Some(now - chrono::Duration::seconds(1));
        assert_eq!(decide(&cmd, now, &JobView::default()), Decision::Skip(Reason::Expired));
        cmd.deadline = Some(now + chrono::Duration::seconds(1));
        assert_eq!(decide(&cmd, now, &JobView::default()), Decision::Run);
    }

    #[test]
    fn revoked_and_superseded_jobs_do_not_start() {
        let now = Utc::now();
        let mut cmd = command(now);
        cmd.version = "1.0".into();
        let revoked = JobView { current_version: Some("1.0".into()), revoked: true };
        assert_eq!(decide(&cmd, now, &revoked), Decision::Skip(Reason::Revoked));
        let newer = JobView { current_version: Some("2.0".into()), revoked: false };
        assert_eq!(decide(&cmd, now, &newer), Decision::Skip(Reason::Superseded));
        let same = JobView { current_version: Some("1.0".into()), revoked: false };
        assert_eq!(decide(&cmd, now, &same), Decision::Run);
        cmd.version.clear();
        assert_eq!(decide(&cmd, now, &newer), Decision::Run, "ad-hoc runs have no version to supersede");
    }

    #[test]
    fn limits_and_identities_are_enforced() {
        let now = Utc::now();
        let mut cmd = command(now);
        cmd.timeout = Duration::ZERO;
        assert_eq!(decide(&cmd, now, &JobView::default()), Decision::Skip(Reason::Invalid));
        let mut cmd = command(now);
        cmd.run_as = RunAs::Unknown;
        assert_eq!(decide(&cmd, now, &JobView::default()), Decision::Skip(Reason::UnsupportedRunAs));
        cmd.run_as = RunAs::User;
        assert_eq!(decide(&cmd, now, &JobView::default()), Decision::Run, "decided when the run starts");
    }
}
