//! The agent's persistent record of which execs it has taken on, so a command never runs twice on this PC —
//! across redelivery, reconnects and agent restarts (DESIGN.md guarantee 1).
//!
//! One small file per exec id in `<data>/runs/`: created exclusively (so two deliveries racing in one process
//! cannot both win) and flushed to disk before the script starts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kanade_shared::ExecId;

/// Markers older than this are pruned at start: `EXEC` keeps commands for 30 days, so an older exec can never be
/// delivered again.
const RETENTION: Duration = Duration::from_secs(45 * 24 * 60 * 60);

pub struct RunLedger {
    dir: PathBuf,
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
        let path = self.path(exec);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(b"claimed\n")?;
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
}
