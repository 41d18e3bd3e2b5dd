//! The runs this agent holds — waiting on their jitter or a slot, or running — each with its kill switch, so a
//! kill reaches queued runs as well as running ones (DESIGN.md guarantee 3).

use std::collections::HashMap;
use std::sync::Mutex;

use kanade_shared::{ExecId, JobId, subject};
use tokio_util::sync::CancellationToken;

/// What a kill request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillTarget {
    /// `kill.<exec>`: one execution.
    Exec(ExecId),
    /// `kill.job.<job>`: every run of the job.
    Job(JobId),
}

impl KillTarget {
    /// What a kill subject names; `None` for a subject that does not end in a valid exec or job id.
    pub fn of_subject(subject_name: &str) -> Option<Self> {
        if let Some(job) = subject::job_of_kill(subject_name) {
            Some(Self::Job(job))
        } else {
            subject::exec_of_kill(subject_name).map(Self::Exec)
        }
    }
}

#[derive(Default)]
pub struct Running {
    runs: Mutex<HashMap<ExecId, (JobId, CancellationToken)>>,
}

impl Running {
    /// Holds the run of `exec` from now on and returns its kill switch.
    pub fn hold(&self, exec: &ExecId, job: &JobId) -> CancellationToken {
        let cancel = CancellationToken::new();
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(exec.clone(), (job.clone(), cancel.clone()));
        }
        cancel
    }

    /// The run of `exec` has ended (or was handed back).
    pub fn forget(&self, exec: &ExecId) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.remove(exec);
        }
    }

    /// How many runs are held now.
    pub fn count(&self) -> u32 {
        self.runs.lock().map(|r| u32::try_from(r.len()).unwrap_or(u32::MAX)).unwrap_or(0)
    }

    /// The runs held now, in exec id order (ids are time-ordered UUIDs: oldest first).
    pub fn list(&self) -> Vec<(ExecId, JobId)> {
        let Ok(runs) = self.runs.lock() else { return Vec::new() };
        let mut list: Vec<(ExecId, JobId)> = runs.iter().map(|(exec, (job, _))| (exec.clone(), job.clone())).collect();
        list.sort();
        list
    }

    /// Kills the held runs `target` names and says which, in exec id order.
    pub fn kill(&self, target: &KillTarget) -> Vec<ExecId> {
        let Ok(runs) = self.runs.lock() else { return Vec::new() };
        let mut killed: Vec<ExecId> = runs
            .iter()
            .filter(|(exec, (job, _))| match target {
                KillTarget::Exec(wanted) => *exec == wanted,
                KillTarget::Job(wanted) => job == wanted,
            })
            .map(|(exec, (_, cancel))| {
                cancel.cancel();
                exec.clone()
            })
            .collect();
        killed.sort();
        killed
    }

    /// Kills every held run (a stopping agent whose grace period ran out).
    pub fn kill_all(&self) {
        if let Ok(runs) = self.runs.lock() {
            runs.values().for_each(|(_, cancel)| cancel.cancel());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_reaches_exactly_the_runs_it_names() {
        let running = Running::default();
        let (exec, job) = (|s: &str| ExecId::new(s).unwrap(), |s: &str| JobId::new(s).unwrap());
        let a1 = running.hold(&exec("a1"), &job("a"));
        let a2 = running.hold(&exec("a2"), &job("a"));
        let b1 = running.hold(&exec("b1"), &job("b"));
        assert_eq!(running.count(), 3);
        assert_eq!(running.list(), [(exec("a1"), job("a")), (exec("a2"), job("a")), (exec("b1"), job("b"))]);

        assert_eq!(running.kill(&KillTarget::Exec(exec("zz"))), Vec::<ExecId>::new(), "a run not held");
        assert_eq!(running.kill(&KillTarget::Job(job("a"))), [exec("a1"), exec("a2")]);
        assert!(a1.is_cancelled() && a2.is_cancelled() && !b1.is_cancelled(), "another job is untouched");
        assert_eq!(running.kill(&KillTarget::Exec(exec("b1"))), [exec("b1")]);
        assert!(b1.is_cancelled());

        running.forget(&exec("a1"));
        assert_eq!(running.count(), 2);
    }

    #[test]
    fn kill_subjects_name_an_exec_or_a_job() {
        assert_eq!(KillTarget::of_subject("kill.e-1"), Some(KillTarget::Exec(ExecId::new("e-1").unwrap())));
        assert_eq!(KillTarget::of_subject("kill.job.backup"), Some(KillTarget::Job(JobId::new("backup").unwrap())));
        assert_eq!(KillTarget::of_subject("kill.Not Valid"), None);
    }
}
