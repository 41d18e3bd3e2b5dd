//! Per-disk I/O counters on Windows: `DeviceIoControl(IOCTL_DISK_PERFORMANCE)` on each `\\.\PhysicalDriveN`,
//! the counters Task Manager and `diskperf` show.
//!
//! This file cannot be compiled on the Linux machines the project is built on. It is written against the
//! `windows` 0.62 API (the version sysinfo uses, whose own disk code makes the same two calls) and holds only the
//! calls; the rates are computed in `crate::perf::sample`, tested on every OS.

use kanade_shared::perf::IoScope;
use windows::Win32::Foundation::{CloseHandle, HANDLE};
use windows::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAGS_AND_ATTRIBUTES, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows::Win32::System::IO::DeviceIoControl;
use windows::Win32::System::Ioctl::{DISK_PERFORMANCE, IOCTL_DISK_PERFORMANCE};
use windows::core::PCWSTR;

use crate::perf::sample::DiskCounters;

/// What sysinfo's per-process figures count here: `GetProcessIoCounters`, every read and write the process made
/// (files, network, devices), not only disk.
pub const PROCESS_IO: IoScope = IoScope::AllIo;

/// Physical drive numbers tried. Numbers are not reused densely (a removed USB disk leaves a gap), so every number
/// up to this is tried rather than stopping at the first missing one; opening a drive that does not exist fails
/// at once, without touching any device.
const MAX_PHYSICAL_DRIVES: u32 = 32;

/// Each physical drive's counters since boot.
pub fn disk_counters() -> Vec<DiskCounters> {
    (0..MAX_PHYSICAL_DRIVES).filter_map(drive_counters).collect()
}

/// A handle closed when dropped.
struct Handle(HANDLE);

impl Drop for Handle {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful `CreateFileW` and is closed only here, once.
        let _ = unsafe { CloseHandle(self.0) };
    }
}

#[allow(unsafe_code)]
fn drive_counters(number: u32) -> Option<DiskCounters> {
    let name = format!("PhysicalDrive{number}");
    let path: Vec<u16> = format!(r"\\.\{name}").encode_utf16().chain(std::iter::once(0)).collect();
    // No access rights asked (0): `IOCTL_DISK_PERFORMANCE` is a `FILE_ANY_ACCESS` control code, so an open for
    // querying works for any account that may see the device, and never locks it or waits for I/O.
    // SAFETY: `path` is NUL-terminated and outlives the call; no security attributes and no template file.
    let handle = unsafe {
        CreateFileW(
            PCWSTR::from_raw(path.as_ptr()),
            0,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            None,
            OPEN_EXISTING,
            FILE_FLAGS_AND_ATTRIBUTES::default(),
            None,
        )
    }
    .ok()?;
    let handle = Handle(handle);
    let mut performance = DISK_PERFORMANCE::default();
    let mut returned = 0u32;
    // SAFETY: the output buffer is a `DISK_PERFORMANCE` of the size passed, alive for the call; the control code
    // takes no input buffer; the call is synchronous (no OVERLAPPED), so nothing is written after it returns.
    unsafe {
        DeviceIoControl(
            handle.0,
            IOCTL_DISK_PERFORMANCE,
            None,
            0,
            Some(std::ptr::from_mut(&mut performance).cast()),
            u32::try_from(size_of::<DISK_PERFORMANCE>()).ok()?,
            Some(&mut returned),
            None,
        )
    }
    .ok()?;
    Some(DiskCounters {
        name,
        // LARGE_INTEGER byte counts, never negative in practice; a negative one would be a driver's error.
        read_bytes: u64::try_from(performance.BytesRead).unwrap_or(0),
        write_bytes: u64::try_from(performance.BytesWritten).unwrap_or(0),
        // 32-bit counts that wrap; a wrap reads as a counter going backwards, a zero rate for that one interval.
        reads: Some(u64::from(performance.ReadCount)),
        writes: Some(u64::from(performance.WriteCount)),
    })
}
