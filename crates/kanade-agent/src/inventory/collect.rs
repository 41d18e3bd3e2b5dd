//! What every platform's collectors share: the shape of what they return, and the one way they run a helper
//! program (bounded in time and in output, killed when it overruns), so a hung `rpm` or `system_profiler` can never
//! hold up the agent.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one collector found, and what it could not read (in words, for the PC's inventory page). A missing
/// optional source (no `rpm` on a Debian machine, no snapd) is not an error; an unreadable one is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected<T> {
    pub data: T,
    pub errors: Vec<String>,
}

impl<T> Collected<T> {
    pub fn new(data: T) -> Self {
        Self { data, errors: Vec::new() }
    }
}

/// Where a collector reads the host from: `/` for the real host. Tests point it at a folder laid out like one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot(PathBuf);

impl Default for HostRoot {
    fn default() -> Self {
        Self(PathBuf::from("/"))
    }
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }

    /// `path` (absolute, as on the host) under this root.
    pub fn join(&self, path: &str) -> PathBuf {
        self.0.join(path.trim_start_matches('/'))
    }

    pub fn is_real(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// A file's contents as text, at most `max` bytes (lossy UTF-8); `None` when it does not exist.
    pub fn read(&self, path: &str, max: u64) -> std::io::Result<Option<String>> {
        read_bounded(&self.join(path), max)
    }
}

/// A file's contents as text, at most `max` bytes (lossy UTF-8); `None` when it does not exist.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Option<String>> {
    match std::fs::File::open(path) {
        Ok(file) => {
            let mut bytes = Vec::new();
            file.take(max).read_to_end(&mut bytes)?;
            Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// How long one helper program may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of a helper program's output read (an rpm database of 5,000 packages prints ~1 MB).
pub const COMMAND_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Why a helper program gave no output.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program is not installed: the source it reads does not exist on this host.
    #[error("`{0}` is not installed")]
    NotFound(String),
    #[error("cannot start `{program}`")]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` ran longer than {}s and was killed", .timeout.as_secs())]
    TimedOut { program: String, timeout: Duration },
    #[error("`{program}` failed ({status}): {stderr}")]
    Failed { program: String, status: String, stderr: String },
}

/// Runs `program` with `args` and returns its stdout (lossy UTF-8, at most `max_bytes`), killing it after
/// `timeout`. Its stdin is closed and its stderr kept (a little of it) for the error. Blocking: collectors run on a
/// blocking thread.
pub fn run(program: &str, args: &[&str], timeout: Duration, max_bytes: u64) -> Result<String, CommandError> {
    let Ok(path) = which::which(program) else { return Err(CommandError::NotFound(program.to_owned())) };
    let mut command = Command::new(path);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Machine-readable output, whatever the host's locale.
        .env("LC_ALL", "C");
    // Under the agent's spawn lock, so the helper inherits no pipe end a script's start holds inheritable.
    let spawned = {
        let _spawning = crate::platform::spawn_lock();
        command.spawn()
    };
    let mut child = spawned.map_err(|source| CommandError::Start { program: program.to_owned(), source })?;
    // Read both pipes on threads of their own, so a child that fills one is never blocked by us waiting on it.
    let pipe = |reader: Option<Box<dyn std::io::Read + Send>>, max: u64| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(reader) = reader {
                let mut reader = reader.take(max);
                let _ = reader.read_to_end(&mut bytes);
                // Drain the rest, so the child is not stuck writing into a full pipe.
                let _ = std::io::copy(&mut reader.into_inner(), &mut std::io::sink());
            }
            bytes
        })
    };
    let stdout = pipe(child.stdout.take().map(|r| Box::new(r) as _), max_bytes);
    let stderr = pipe(child.stderr.take().map(|r| Box::new(r) as _), 4096);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CommandError::TimedOut { program: program.to_owned(), timeout });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(source) => return Err(CommandError::Start { program: program.to_owned(), source }),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr).trim().chars().take(300).collect();
        return Err(CommandError::Failed { program: program.to_owned(), status: status.to_string(), stderr });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_program_is_bounded_in_time_and_output() {
        let out = run("sh", &["-c", "echo hello"], COMMAND_TIMEOUT, 1024).unwrap();
        assert_eq!(out, "hello\n");
        let big = run("sh", &["-c", "head -c 100000 /dev/zero | tr '\\0' x"], COMMAND_TIMEOUT, 10).unwrap();
        assert_eq!(big, "xxxxxxxxxx");
        let slow = run("sleep", &["30"], Duration::from_millis(200), 1024).unwrap_err();
        assert!(matches!(slow, CommandError::TimedOut { .. }), "{slow}");
        let failed = run("sh", &["-c", "echo boom >&2; exit 3"], COMMAND_TIMEOUT, 1024).unwrap_err();
        assert!(failed.to_string().contains("boom"), "{failed}");
        assert!(matches!(
            run("kanade-no-such-program", &[], COMMAND_TIMEOUT, 1).unwrap_err(),
            CommandError::NotFound(_)
        ));
    }

    #[test]
    fn files_are_read_bounded_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "abcdef").unwrap();
        let root = HostRoot::new(dir.path());
        assert_eq!(root.read("/f", 3).unwrap().as_deref(), Some("abc"));
        assert_eq!(root.read("/missing", 3).unwrap(), None);
        assert!(HostRoot::default().is_real());
    }
}
