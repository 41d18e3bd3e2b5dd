//! The agent's persistent record of which execs it has taken on, so a command never runs twice on this PC —
//! across redelivery, reconnects and agent restarts (DESIGN.md guarantee 1).
//!
//! One small file per exec id in `<data>/runs/`: created exclusively (so two deliveries racing in one process
//! cannot both win) and flushed to disk before the script starts. It goes through three states:
//!
//! - `claimed`: taken on, not started (waiting on its jitter or a slot). Found at start, the agent died before
//!   the run began: the claim is dropped and the catch-up reads the command again, so it runs after all.
//! - `started`: the script was started (the record says what is needed to report on it). Found at start, the
//!   agent died while the script ran: the run is reported `failed` with reason `interrupted`, never run again.
//!   A run that can start the moment it arrives is created in this state directly, one durable write instead of
//!   two.
//! - `finished`: its result is in the outbox. The file stays as the claim, until it is pruned, and still says
//!   which job the run was, so a result that is lost from the outbox (a damaged file) can be reported as lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use kanade_shared::wire::{ExecResult, Reason, ResultStatus};
use kanade_shared::{ExecId, JobId, PcId, ResultId};

/// Markers older than this are pruned at start: `EXEC` keeps commands for 30 days, so an older exec can never be
/// delivered again.
const RETENTION: Duration = Duration::from_secs(45 * 24 * 60 * 60);

pub struct RunLedger {
    dir: PathBuf,
}

const CLAIMED: &[u8] = b"claimed\n";
/// What an earlier agent wrote for a finished run, before the record kept the job.
const FINISHED: &[u8] = b"finished\n";

/// What the ledger keeps of a run once it started: enough to report it if the agent dies meanwhile, or if its
/// result is lost from the outbox afterwards.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Started {
    pub exec_id: ExecId,
    pub job_id: JobId,
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// Set once the result is in the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl Started {
    /// The record of `command`'s run starting `at`.
    pub fn begun(command: &kanade_shared::wire::Command, at: DateTime<Utc>) -> Self {
        Self {
            exec_id: command.exec_id.clone(),
            job_id: command.job_id.clone(),
            version: command.version.clone(),
            started_at: at,
            finished_at: None,
        }
    }

    /// The finished record of the run `result` reports.
    pub fn finished(result: &ExecResult) -> Self {
        Self {
            exec_id: result.exec_id.clone(),
            job_id: result.job_id.clone(),
            version: result.version.clone(),
            started_at: result.started_at.unwrap_or(result.finished_at),
            finished_at: Some(result.finished_at),
        }
    }
}

/// What a previous life of the agent left unfinished.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unfinished {
    /// Claimed but never started.
    pub not_started: Vec<ExecId>,
    /// Started, with no result recorded.
    pub interrupted: Vec<Started>,
}

/// What recovery did with what a previous life of the agent left unfinished, and what is left to report.
#[derive(Debug, Default, PartialEq)]
pub struct Recovery {
    /// Runs that were claimed but never started: their claims are dropped, so the catch-up reads them again (from
    /// the start: the caller resets its position) and they run after all, within their deadline.
    pub handed_back: Vec<ExecId>,
    /// A `failed` / `interrupted` result for each run whose script was running: what it did is unknown, and it is
    /// never run again. The caller records them like any result.
    pub interrupted: Vec<ExecResult>,
}

/// The result of a run the agent died in.
pub fn interrupted(run: &Started, pc: &PcId, now: DateTime<Utc>) -> ExecResult {
    ExecResult {
        result_id: ResultId::for_run(&run.exec_id, pc),
        exec_id: run.exec_id.clone(),
        job_id: run.job_id.clone(),
        version: run.version.clone(),
        pc_id: pc.clone(),
        status: ResultStatus::Failed,
        exit_code: None,
        stdout: String::new(),
        stderr: "the agent stopped while this script ran (killed, crashed or the machine lost power); what the \
                 script did is unknown, and it is not run again"
            .into(),
        stdout_truncated: false,
        stderr_truncated: false,
        started_at: Some(run.started_at),
        finished_at: now,
        reason: Some(Reason::Interrupted),
        stdout_full: None,
        stderr_full: None,
    }
}

impl RunLedger {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let ledger = Self { dir };
        ledger.prune(SystemTime::now());
        Ok(ledger)
    }

    fn path(&self, exec: &ExecId) -> PathBuf {
        // Exec ids are validated to `[a-z0-9_-]`, so this cannot leave the directory.
        self.dir.join(exec.as_str())
    }

    /// Records that this agent takes on `exec`. `Ok(false)` when it already had: the caller must not run it.
    pub fn claim(&self, exec: &ExecId) -> std::io::Result<bool> {
        self.create(exec, CLAIMED)
    }

    /// Claims `run` and records it started in one durable write, for a run that starts the moment it arrives (no
    /// jitter, a free slot, the gate's go): it never has a `claimed` state to write first. The record is the one
    /// [`started`](Self::started) writes, so recovery treats it alike. `Ok(false)` when the run was already taken
    /// on: the caller must not run it.
    pub fn claim_started(&self, run: &Started) -> std::io::Result<bool> {
        let body = serde_json::to_vec(run).map_err(std::io::Error::other)?;
        self.create(&run.exec_id, &body)
    }

    /// Creates the claim file of `exec` exclusively with `body`, synced with its directory.
    fn create(&self, exec: &ExecId, body: &[u8]) -> std::io::Result<bool> {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(self.path(exec)) {
            Ok(mut file) => {
                file.write_all(body)?;
                file.sync_all()?;
                sync_dir(&self.dir);
                Ok(true)
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Drops the claim of a run that never started, so a later delivery runs it.
    pub fn release(&self, exec: &ExecId) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(exec)) {
            Ok(()) => {
                sync_dir(&self.dir);
                Ok(())
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Records, durably, that the script of `run` is about to start: from here on a crash means `interrupted`,
    /// never a second run.
    pub fn started(&self, run: &Started) -> std::io::Result<()> {
        let body = serde_json::to_vec(run).map_err(std::io::Error::other)?;
        self.replace(&run.exec_id, &body, true)
    }

    /// Records that the run's result is in the outbox. Not synced: if this mark is lost in a crash, the run is
    /// reported `interrupted` after the restart with the same result id, and the broker and the backend keep the
    /// result that came first.
    pub fn finished(&self, run: &Started) -> std::io::Result<()> {
        let body = serde_json::to_vec(run).map_err(std::io::Error::other)?;
        self.replace(&run.exec_id, &body, false)
    }

    /// Replaces the claim file's contents by writing a sibling and renaming it over the claim, so a crash leaves
    /// the old state or the new one.
    fn replace(&self, exec: &ExecId, body: &[u8], durable: bool) -> std::io::Result<()> {
        let temp = self.dir.join(format!("{exec}.tmp"));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(body)?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&temp, self.path(exec))?;
        if durable {
            sync_dir(&self.dir);
        }
        Ok(())
    }

    /// The runs a previous life of the agent took on and did not finish. Read once at start, before any new claim.
    pub fn unfinished(&self) -> std::io::Result<Unfinished> {
        let mut found = Unfinished::default();
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                // A state change cut short: the claim file itself still holds the state before it.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Ok(exec) = ExecId::new(name) else { continue };
            let body = match std::fs::read(&path) {
                Ok(body) => body,
                Err(err) => {
                    tracing::warn!(file = %path.display(), error = %err, "cannot read a run record");
                    continue;
                }
            };
            if body == CLAIMED || body.is_empty() {
                // Empty: the claim was created but its first write was lost; the script had not started.
                found.not_started.push(exec);
            } else if body != FINISHED {
                match serde_json::from_slice::<Started>(&body) {
                    Ok(run) if run.exec_id == exec && run.finished_at.is_none() => found.interrupted.push(run),
                    Ok(run) if run.exec_id == exec => {}
                    _ => tracing::error!(
                        file = %path.display(),
                        "unreadable run record; the run is not run again and cannot be reported"
                    ),
                }
            }
        }
        found.not_started.sort();
        found.interrupted.sort_by(|a, b| a.exec_id.cmp(&b.exec_id));
        Ok(found)
    }

    /// Settles what a previous life of this agent (`pc`) left unfinished (it was killed, or the machine lost power).
    /// A run that had not started is released; a run whose result the outbox already holds (`has_result`) only
    /// lost its `finished` mark, which is put back; every other started run is returned as `interrupted`. Called
    /// once at start, before any new claim.
    pub fn recover(
        &self,
        pc: &PcId,
        has_result: impl Fn(&ResultId) -> bool,
        now: DateTime<Utc>,
    ) -> std::io::Result<Recovery> {
        let unfinished = self.unfinished()?;
        for exec in &unfinished.not_started {
            tracing::info!(exec_id = %exec, "a run taken on before a crash never started; it runs after all");
            if let Err(err) = self.release(exec) {
                tracing::error!(exec_id = %exec, error = %err, "cannot release the run; it will not run");
            }
        }
        let mut interrupted_runs = Vec::new();
        for run in unfinished.interrupted {
            if has_result(&ResultId::for_run(&run.exec_id, pc)) {
                // Its result was written; only the ledger's mark was lost.
                let _ = self.finished(&Started { finished_at: Some(now), ..run });
                continue;
            }
            tracing::warn!(exec_id = %run.exec_id, job_id = %run.job_id, "the agent stopped while this run's script ran; reporting it interrupted");
            interrupted_runs.push(interrupted(&run, pc, now));
        }
        Ok(Recovery { handed_back: unfinished.not_started, interrupted: interrupted_runs })
    }

    /// A result for the run `result_id` names whose result was written to the outbox but cannot be read back:
    /// `failed` with reason `result_lost`, built from the ledger's record of the run. `None` when the ledger does
    /// not know the run (then nothing can say which job it was).
    pub fn lost_result(dir: &Path, result_id: &str, why: &str) -> Option<ExecResult> {
        let (exec, pc) = result_id.split_once('.')?;
        let (exec, pc) = (ExecId::new(exec).ok()?, PcId::new(pc).ok()?);
        let run: Started = serde_json::from_slice(&std::fs::read(dir.join(exec.as_str())).ok()?).ok()?;
        (run.exec_id == exec).then(|| ExecResult {
            result_id: ResultId::for_run(&exec, &pc),
            exec_id: exec,
            job_id: run.job_id,
            version: run.version,
            pc_id: pc,
            status: ResultStatus::Failed,
            exit_code: None,
            stdout: String::new(),
            stderr: format!(
                "the run's result was lost: its file in the agent's outbox could not be read back ({why}); what \
                 the script did is unknown"
            ),
            stdout_truncated: false,
            stderr_truncated: false,
            started_at: Some(run.started_at),
            finished_at: run.finished_at.unwrap_or_else(Utc::now),
            reason: Some(Reason::ResultLost),
            stdout_full: None,
            stderr_full: None,
        })
    }

    pub fn is_claimed(&self, exec: &ExecId) -> bool {
        self.path(exec).exists()
    }

    fn prune(&self, now: SystemTime) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|age| age > RETENTION));
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Makes a rename or create in `dir` durable. Directories cannot be opened for syncing on every OS; where they
/// cannot, the file's own sync is what the OS offers.
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_is_claimed_once_even_across_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let exec = ExecId::new("e-1").unwrap();
        let ledger = RunLedger::open(tmp.path().join("runs")).unwrap();
        assert!(ledger.claim(&exec).unwrap());
        assert!(!ledger.claim(&exec).unwrap());
        drop(ledger);
        let reopened = RunLedger::open(tmp.path().join("runs")).unwrap();
        assert!(!reopened.claim(&exec).unwrap());
        assert!(reopened.is_claimed(&exec));
        reopened.release(&exec).unwrap();
        assert!(reopened.claim(&exec).unwrap(), "a released run can be claimed again");
    }

    #[test]
    fn recovery_hands_back_what_never_started_and_reports_what_was_running() {
        let tmp = tempfile::tempdir().unwrap();
        let ledger = RunLedger::open(tmp.path().join("runs")).unwrap();
        let (id, pc) = (|s: &str| ExecId::new(s).unwrap(), PcId::new("pc-1").unwrap());
        let started_at = Utc::now();
        let run = |exec: &str| Started {
            exec_id: id(exec),
            job_id: JobId::new("job").unwrap(),
            version: "7".into(),
            started_at,
            finished_at: None,
        };
        for exec in ["waiting", "running", "written", "done"] {
            assert!(ledger.claim(&id(exec)).unwrap());
        }
        for exec in ["running", "written", "done"] {
            ledger.started(&run(exec)).unwrap();
        }
        ledger.finished(&Started { finished_at: Some(Utc::now()), ..run("done") }).unwrap();
        // `written` has its result in the outbox: its `finished` mark is what a crash lost.
        let in_outbox = ResultId::for_run(&id("written"), &pc);

        let now = Utc::now();
        let recovery = ledger.recover(&pc, |result| *result == in_outbox, now).unwrap();
        assert_eq!(recovery.handed_back, [id("waiting")]);
        assert_eq!(recovery.interrupted, [interrupted(&run("running"), &pc, now)]);
        let result = &recovery.interrupted[0];
        assert_eq!((result.status, result.reason.clone()), (ResultStatus::Failed, Some(Reason::Interrupted)));
        assert_eq!((result.result_id.as_str(), result.version.as_str()), ("running.pc-1", "7"));

        assert!(ledger.claim(&id("waiting")).unwrap(), "a handed-back run can be taken on again");
        let left = ledger.unfinished().unwrap();
        let left: Vec<&str> = left.interrupted.iter().map(|r| r.exec_id.as_str()).collect();
        assert_eq!(left, ["running"], "the written one is marked finished; the caller records the running one");
        for exec in ["running", "written", "done"] {
            assert!(!ledger.claim(&id(exec)).unwrap(), "{exec} never runs again");
        }
    }

    #[test]
    fn a_run_claimed_straight_into_started_is_one_write_and_recovers_like_any_started_run() {
        let tmp = tempfile::tempdir().unwrap();
        let ledger = RunLedger::open(tmp.path().join("runs")).unwrap();
        let pc = PcId::new("pc-1").unwrap();
        let run = Started {
            exec_id: ExecId::new("at-once").unwrap(),
            job_id: JobId::new("job").unwrap(),
            version: "3".into(),
            started_at: Utc::now(),
            finished_at: None,
        };
        assert!(ledger.claim_started(&run).unwrap());
        // Written once, in place: no `claimed` file came first, and no replacement went through a sibling.
        let files: Vec<_> =
            std::fs::read_dir(tmp.path().join("runs")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(files, ["at-once"]);
        let on_disk: Started =
            serde_json::from_slice(&std::fs::read(tmp.path().join("runs/at-once")).unwrap()).unwrap();
        assert_eq!(on_disk, run);
        assert!(!ledger.claim(&run.exec_id).unwrap(), "a redelivery is already handled");
        assert!(!ledger.claim_started(&run).unwrap(), "so is a second start at once");

        let now = Utc::now();
        let recovery = ledger.recover(&pc, |_| false, now).unwrap();
        assert_eq!(recovery.handed_back, Vec::<ExecId>::new());
        assert_eq!(recovery.interrupted, [interrupted(&run, &pc, now)]);
    }

    #[test]
    fn what_a_crash_left_is_found_by_state() {
        let tmp = tempfile::tempdir().unwrap();
        let ledger = RunLedger::open(tmp.path().join("runs")).unwrap();
        let id = |s: &str| ExecId::new(s).unwrap();
        let run = |exec: &str| Started {
            exec_id: id(exec),
            job_id: JobId::new("job").unwrap(),
            version: "1".into(),
            started_at: Utc::now(),
            finished_at: None,
        };
        for exec in ["waiting", "running", "done"] {
            assert!(ledger.claim(&id(exec)).unwrap());
        }
        ledger.started(&run("running")).unwrap();
        ledger.started(&run("done")).unwrap();
        ledger.finished(&Started { finished_at: Some(Utc::now()), ..run("done") }).unwrap();
        std::fs::write(tmp.path().join("runs/cut.tmp"), b"half").unwrap();
        std::fs::write(tmp.path().join("runs/garbled"), b"{not json").unwrap();
        let found = RunLedger::open(tmp.path().join("runs")).unwrap().unfinished().unwrap();
        assert_eq!(found.not_started, [id("waiting")]);
        let interrupted: Vec<&str> = found.interrupted.iter().map(|r| r.exec_id.as_str()).collect();
        assert_eq!(interrupted, ["running"]);
        assert!(!tmp.path().join("runs/cut.tmp").exists());
        // Every state is still a claim: nothing runs twice.
        for exec in ["waiting", "running", "done", "garbled"] {
            assert!(!ledger.claim(&id(exec)).unwrap(), "{exec}");
        }
    }
}
