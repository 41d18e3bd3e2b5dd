//! How a kanade component (the agent, the backend) runs as a service. On Windows the process is handed to the
//! service control manager, which calls the body on a thread of its own, passes its stop and shutdown requests as a
//! cancellation, and hears the body's exit code; elsewhere the body simply runs (systemd and launchd supervise a
//! foreground process). What the SCM is told at the end is decided here, on every OS, by [`service_end`].

use tokio_util::sync::CancellationToken;

pub mod event_log;
pub mod secrets;
#[cfg(windows)]
mod windows;

pub use event_log::event_log_layer;

/// A service's body: given the token a stop request cancels, it runs the component and returns its exit code.
pub type ServiceBody = Box<dyn FnOnce(CancellationToken) -> u8 + Send>;

/// How a service ends once its body returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceEnd {
    /// Report the service stopped with this exit code (0: a clean stop; otherwise a service-specific error, which
    /// the failure actions count only where the "failure flag" is in force).
    Stopped(u8),
    /// End the process without reporting the service stopped: the SCM sees a crash and runs its restart action at
    /// once. Windows applies `sc.exe failureflag` (count a reported non-zero stop as a failure) only from the next
    /// boot, so a fresh install would not restart after an exit that asks for it and was reported.
    Vanish(u8),
}

/// What the body's exit `code` means to the service manager: the component's `restart_exit` (the agent's 64 after
/// a self-update) must bring the service back, whatever the failure flag says, unless a stop was asked for
/// meanwhile (the service then stays stopped, as asked); anything else is reported as it is.
pub fn service_end(code: u8, restart_exit: Option<u8>, stop_requested: bool) -> ServiceEnd {
    if restart_exit == Some(code) && !stop_requested { ServiceEnd::Vanish(code) } else { ServiceEnd::Stopped(code) }
}

/// How long the service manager should wait for a start or a stop before it gives up on it: start reads the config
/// and the data dir; stop lets running work settle (the agent's results reach its outbox).
pub const WAIT_HINT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `body` as the service `name` (as registered: `kanade-agent`, `kanade-backend`) and returns its exit code.
/// `restart_exit`: the exit code that asks to be started again at once (see [`service_end`]).
pub fn run(name: &'static str, restart_exit: Option<u8>, body: ServiceBody) -> u8 {
    #[cfg(windows)]
    {
        windows::run(name, restart_exit, body)
    }
    #[cfg(not(windows))]
    {
        let _ = (name, restart_exit);
        body(CancellationToken::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_exit_ends_the_service_as_a_crash_and_every_other_exit_is_reported() {
        assert_eq!(service_end(64, Some(64), false), ServiceEnd::Vanish(64));
        assert_eq!(service_end(64, Some(64), true), ServiceEnd::Stopped(64), "a stop asked for wins");
        assert_eq!(service_end(64, None, false), ServiceEnd::Stopped(64), "the backend has no restart exit");
        assert_eq!(service_end(0, Some(64), false), ServiceEnd::Stopped(0));
        assert_eq!(service_end(1, Some(64), false), ServiceEnd::Stopped(1));
    }

    #[cfg(not(windows))]
    #[test]
    fn elsewhere_the_body_runs_in_the_foreground_and_its_code_is_the_exit() {
        assert_eq!(run("kanade-test", None, Box::new(|stop| u8::from(stop.is_cancelled()) + 7)), 7);
    }
}
