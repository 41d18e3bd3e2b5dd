//! The Windows service control manager half (`windows-service`). This file cannot be compiled on the Linux machines
//! the project is built on; it is written against the documented API of `windows-service` 0.8 and Microsoft's
//! service documentation, and its decisions are [`super::service_end`], tested everywhere.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult, ServiceStatusHandle};

use super::{ServiceBody, ServiceEnd};

/// The service's name, its restart exit and its body, for [`service_main`] (the SCM calls it with no context).
static NAME: OnceLock<&'static str> = OnceLock::new();
static RESTART_EXIT: OnceLock<Option<u8>> = OnceLock::new();
static BODY: Mutex<Option<ServiceBody>> = Mutex::new(None);
/// The body's exit code, for [`run`] once the dispatcher returns.
static EXIT_CODE: AtomicU8 = AtomicU8::new(0);
/// The status handle, for the control handler to report `StopPending` from (it is registered before the handle
/// exists).
static STATUS: OnceLock<ServiceStatusHandle> = OnceLock::new();

/// Hands the process to the SCM, which calls [`service_main`] on a thread of its own; returns once the service has
/// stopped, with the body's exit code.
pub fn run(name: &'static str, restart_exit: Option<u8>, body: ServiceBody) -> u8 {
    let _ = NAME.set(name);
    let _ = RESTART_EXIT.set(restart_exit);
    if let Ok(mut slot) = BODY.lock() {
        *slot = Some(body);
    }
    match entry::dispatch(name) {
        Ok(()) => EXIT_CODE.load(Ordering::SeqCst),
        Err(err) => {
            // Started from a console rather than by the SCM (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT).
            tracing::error!(error = %err, "cannot connect to the service control manager; run without `service` from a console");
            1
        }
    }
}

// The macro expands to the `extern "system"` entry point the SCM calls; it parses the service arguments from raw
// pointers, which is the crate's documented use.
#[allow(unsafe_code)]
mod entry {
    windows_service::define_windows_service!(ffi_service_main, service_main);

    fn service_main(_arguments: Vec<std::ffi::OsString>) {
        super::service_main();
    }

    /// Blocks in the service control dispatcher until the service has stopped.
    pub(super) fn dispatch(name: &str) -> windows_service::Result<()> {
        windows_service::service_dispatcher::start(name, ffi_service_main)
    }
}

/// Reports `state`: pending states with a checkpoint and [`super::WAIT_HINT`], Running accepting stop and
/// shutdown, Stopped with `exit_code`.
fn report(state: ServiceState, exit_code: ServiceExitCode, checkpoint: u32) {
    let Some(status) = STATUS.get() else { return };
    let pending = matches!(state, ServiceState::StartPending | ServiceState::StopPending);
    let reported = status.set_service_status(ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code,
        checkpoint,
        wait_hint: if pending { super::WAIT_HINT } else { std::time::Duration::ZERO },
        process_id: None,
    });
    if let Err(err) = reported {
        tracing::warn!(error = %err, ?state, "cannot report the service state");
    }
}

fn service_main() {
    let name = NAME.get().copied().unwrap_or("kanade");
    let stop = CancellationToken::new();
    let handler = {
        let stop = stop.clone();
        move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                // Microsoft's documented pattern: report STOP_PENDING from the handler and return at once.
                report(ServiceState::StopPending, ServiceExitCode::NO_ERROR, 1);
                stop.cancel();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        }
    };
    match service_control_handler::register(name, handler) {
        Ok(status) => {
            let _ = STATUS.set(status);
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot register with the service control manager");
            EXIT_CODE.store(1, Ordering::SeqCst);
            return;
        }
    }
    report(ServiceState::StartPending, ServiceExitCode::NO_ERROR, 1);
    report(ServiceState::Running, ServiceExitCode::NO_ERROR, 0);
    // The start and stop lines also go to the Application Event Log (`crate::event_log`: this crate's own lines).
    tracing::info!(service = name, "service started");
    let body = BODY.lock().ok().and_then(|mut slot| slot.take());
    let code = body.map_or(1, |body| body(stop.clone()));
    EXIT_CODE.store(code, Ordering::SeqCst);
    match super::service_end(code, RESTART_EXIT.get().copied().flatten(), stop.is_cancelled()) {
        // End without reporting Stopped, so the SCM sees the service die and runs its restart action now.
        ServiceEnd::Vanish(code) => {
            tracing::info!(service = name, exit_code = code, "service ends to be started again at once");
            std::process::exit(i32::from(code))
        }
        ServiceEnd::Stopped(0) => {
            tracing::info!(service = name, "service stopped");
            report(ServiceState::Stopped, ServiceExitCode::NO_ERROR, 0);
        }
        ServiceEnd::Stopped(code) => {
            tracing::info!(service = name, exit_code = code, "service stopped");
            report(ServiceState::Stopped, ServiceExitCode::ServiceSpecific(u32::from(code)), 0);
        }
    }
}
