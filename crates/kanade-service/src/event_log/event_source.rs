//! The Windows half of the Event Log layer: an event source opened with `RegisterEventSourceW` and records written
//! with `ReportEventW`. This file cannot be compiled on the Linux machines the project is built on; it is written
//! against the signatures of `windows` 0.62.2 (`Win32::System::EventLog`), and what it writes is decided in
//! [`super`], tested everywhere.

use std::ffi::c_void;

use windows::Win32::Foundation::HANDLE;
use windows::Win32::System::EventLog::{
    DeregisterEventSource, EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE, REPORT_EVENT_TYPE,
    RegisterEventSourceW, ReportEventW,
};
use windows::core::PCWSTR;

use super::{EVENT_ID, EventKind};

/// An open event source. The handle is kept as an integer because `HANDLE` (a raw pointer) is not `Send`; the
/// Event Log's handles may be used from any thread, and the layer is called from every thread that logs.
pub(super) struct EventSource {
    handle: usize,
}

impl EventSource {
    /// Opens the event source `name` on this machine. Windows opens one even when `name` is not registered (the
    /// records then go to the Application log without their message file); `None` only when it refuses.
    pub(super) fn register(name: &str) -> Option<Self> {
        let name = wide(name);
        // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call; a null server name means this
        // machine.
        let handle = unsafe { RegisterEventSourceW(PCWSTR::null(), PCWSTR(name.as_ptr())) }.ok()?;
        Some(Self { handle: handle.0 as usize })
    }

    /// Writes one record: `message` is its one insertion string (already cut to the Event Log's limit). A failure
    /// is dropped: it cannot be logged from inside the logger, and the log file has the line anyway.
    pub(super) fn report(&self, kind: EventKind, message: &str) {
        let message = wide(message);
        let strings = [PCWSTR(message.as_ptr())];
        // SAFETY: the handle is open until `drop`; `strings` holds one NUL-terminated UTF-16 string that outlives
        // the call; no user SID and no raw data are passed.
        let _ =
            unsafe { ReportEventW(self.handle(), event_type(kind), 0, EVENT_ID, None, 0, Some(&strings[..]), None) };
    }

    fn handle(&self) -> HANDLE {
        HANDLE(self.handle as *mut c_void)
    }
}

impl Drop for EventSource {
    fn drop(&mut self) {
        // SAFETY: the handle came from `RegisterEventSourceW` and is closed only here.
        let _ = unsafe { DeregisterEventSource(self.handle()) };
    }
}

fn event_type(kind: EventKind) -> REPORT_EVENT_TYPE {
    match kind {
        EventKind::Error => EVENTLOG_ERROR_TYPE,
        EventKind::Warning => EVENTLOG_WARNING_TYPE,
        EventKind::Information => EVENTLOG_INFORMATION_TYPE,
    }
}

/// `text` as a NUL-terminated UTF-16 string (an inner NUL would end it early; log lines have none).
fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}
